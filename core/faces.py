"""Complex data on faces: the same small MLP VAE as on the digits, trained on 25x25 faces.

The faces are the first 100 images of ``skimage.data.lfw_subset()`` (scikit-image >= 0.26,
shipped inside its wheel, so no download): grey 25x25 crops of Labeled Faces in the Wild
(Huang et al. 2007); the other 100 images of that set are background crops and are not used.

``train_faces_vae`` trains the recipe the digits use (MLP encoder and decoder, 16 Gaussian
latents, Bernoulli likelihood on grey pixels, beta = 1) on 90 of the faces and keeps 10 held out. ``faces_evidence`` measures it the way ``core.limits`` measures
the digits: per-pixel squared error of reconstructions and the sharpness (variance of the
Laplacian, ``core.limits.sharpness_all``) kept by reconstructions and prior samples relative to
the real held-out faces.

Training runs once per process: ``trained_faces_vae`` memoises it (a lock makes concurrent
callers wait for the one run), and ``faces_ready`` says whether it has finished, so a page can
offer a button instead of making every visitor wait.
"""
from __future__ import annotations

import threading

import numpy as np

from core.data import Dataset
from core.jobs import Job, Jobs

N_FACES = 100           # the first 100 images of lfw_subset are faces
FACE_SHAPE = (25, 25)
HIDDEN_DIMS = (256, 128)
LATENT_DIM = 16
EPOCHS = 150
BATCH_SIZE = 30
LR = 2e-3


def load_faces() -> Dataset:
    """The 100 LFW faces of ``skimage.data.lfw_subset()`` as a ``Dataset``: x float32 (100, 625) in
    [0, 1], y all 0 (one class, "face"), image_shape (25, 25), name "lfw-faces".

    Raises ``RuntimeError`` with the fix when scikit-image is not installed."""
    try:
        from skimage import data as skdata
    except ImportError as exc:  # pragma: no cover (scikit-image is a requirement)
        raise RuntimeError("the faces need scikit-image: pip install scikit-image==0.26.0") from exc
    imgs = np.asarray(skdata.lfw_subset()[:N_FACES], dtype=np.float64)
    if imgs.shape != (N_FACES, *FACE_SHAPE):
        raise RuntimeError(f"lfw_subset() returned {imgs.shape}, expected ({N_FACES}, 25, 25)")
    x = np.clip(imgs, 0.0, 1.0).reshape(N_FACES, -1).astype(np.float32)
    return Dataset(x=x, y=np.zeros(N_FACES, dtype=np.int64), image_shape=FACE_SHAPE, name="lfw-faces",
                   class_names=("face",))


class FacesRun:
    """A trained faces VAE: ``model`` (eval mode), ``train_idx`` (90,), ``val_idx`` (10,),
    ``epochs``, ``history`` (mean training loss, recon and KL per epoch, nats per image)."""

    def __init__(self, model, train_idx, val_idx, epochs, history):
        self.model, self.train_idx, self.val_idx = model, train_idx, val_idx
        self.epochs, self.history = epochs, history


def train_faces_vae(seed: int = 0, epochs: int = EPOCHS, progress=None) -> FacesRun:
    """Train the small VAE on 90 of the faces (10 held out, chosen by ``seed``) with Adam, minibatches
    of ``BATCH_SIZE`` and the beta = 1 loss ``core.losses.elbo_terms`` (one reparameterized sample
    per image). A plain loop, not ``core.training.Trainer``: with 100 images its per-step
    bookkeeping would cost ten times the arithmetic. Deterministic for a seed. ``progress(f, text)``, if
    given, is called after every epoch with the finished fraction f."""
    import torch

    from core.losses import elbo_terms
    from core.models import ModelConfig, build_model
    from core.training import make_optimizer

    ds = load_faces()
    rng = np.random.default_rng(seed)
    perm = rng.permutation(ds.n)
    val_idx, train_idx = np.sort(perm[:ds.n // 10]), np.sort(perm[ds.n // 10:])
    mcfg = ModelConfig(kind="vae", input_dim=ds.dim, hidden_dims=HIDDEN_DIMS, latent_dim=LATENT_DIM,
                       likelihood="bernoulli")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(mcfg, device="cpu")
        opt = make_optimizer(model, LR)
        x = torch.as_tensor(ds.x[train_idx])
        g = torch.Generator().manual_seed(seed)
        history = []
        model.train()
        for _ in range(int(epochs)):
            order = torch.randperm(len(x), generator=g)
            tot = np.zeros(3)
            for i in range(0, len(x), BATCH_SIZE):
                xb = x[order[i:i + BATCH_SIZE]]
                eps = torch.randn((len(xb), LATENT_DIM), generator=g)
                t = elbo_terms(xb, model(xb, eps=eps), 1.0, "bernoulli")
                opt.zero_grad(set_to_none=True)
                t.loss.backward()
                opt.step()
                tot += np.array([t.loss.item(), t.recon.item(), t.kl.item()]) * len(xb)
            history.append(dict(zip(("loss", "recon", "kl"), tot / len(x))))
            if progress is not None:
                progress(len(history) / int(epochs), f"epoch {len(history)} of {int(epochs)}")
    model.eval()
    return FacesRun(model, train_idx, val_idx, int(epochs), history)


_LOCK = threading.Lock()
_DONE: dict[int, object] = {}


def trained_faces_vae(seed: int = 0):
    """``train_faces_vae(seed)``, trained once per process and shared (thread-safe)."""
    with _LOCK:
        if seed not in _DONE:
            _DONE[seed] = train_faces_vae(seed)
        return _DONE[seed]


# Training on demand runs in the background (core.jobs), one at a time; the page polls the job.
JOBS = Jobs(max_done=4, max_age_s=600, max_running=1)


def start_training(seed: int = 0) -> Job:
    """Train the faces VAE for ``seed`` on a background thread (once; the same job while it runs),
    storing it where ``trained_faces_vae`` finds it."""
    def work(report):
        run = train_faces_vae(seed, progress=report)
        with _LOCK:
            _DONE.setdefault(seed, run)
        return True
    return JOBS.submit(("faces", int(seed)), work)


def training_job(seed: int = 0) -> Job | None:
    return JOBS.get(("faces", int(seed)))


def faces_ready(seed: int = 0) -> bool:
    """Whether ``trained_faces_vae(seed)`` has finished in this process."""
    return seed in _DONE


def faces_evidence(seed: int = 0, n_show: int = 10) -> dict:
    """How far the small VAE is from real faces, on the 10 held-out faces.

    Returns {image_shape, n_train, n_val, n_params, epochs, ``mse_vae`` (mean per-pixel squared
    error of the reconstructions decode(mu(x))), ``sharp``: {"original", "vae", "sample"} -> mean
    variance of the Laplacian (``core.limits.sharpness_all``), ``kept_recon`` / ``kept_sample``:
    100 * model / real sharpness, ``neg_elbo`` (held-out -ELBO, nats per image, one sample; a
    Bernoulli cross-entropy on grey pixels, not a normalised likelihood), ``images``:
    {"original", "vae", "sample"} -> (n_show, 625) float32}.
    """
    from core.limits import sharpness_all
    from core.models import count_parameters
    from core.training import evaluate_model, reconstruct, sample_prior

    tr = trained_faces_vae(seed)
    ds = load_faces()
    x_val = ds.x[tr.val_idx]
    rec = reconstruct(tr.model, x_val)
    samples = sample_prior(tr.model, max(len(x_val), n_show), seed=seed)
    sharp = {k: float(sharpness_all(a, FACE_SHAPE)["laplacian"].mean())
             for k, a in (("original", x_val), ("vae", rec), ("sample", samples))}
    ev = evaluate_model(tr.model, x_val, 1.0, "bernoulli", seed=seed)
    return dict(image_shape=FACE_SHAPE, n_train=int(len(tr.train_idx)), n_val=int(len(tr.val_idx)),
                n_params=count_parameters(tr.model), epochs=tr.epochs,
                mse_vae=float(((rec - x_val) ** 2).mean()), sharp=sharp,
                kept_recon=100 * sharp["vae"] / sharp["original"], kept_sample=100 * sharp["sample"] / sharp["original"],
                neg_elbo=float(ev["neg_elbo"]),
                images={"original": np.asarray(x_val[:n_show], np.float32),
                        "vae": rec[:n_show].astype(np.float32), "sample": samples[:n_show].astype(np.float32)})
