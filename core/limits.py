"""Evidence for the VAE's limitations, measured on the shipped models (``core.zoo``).

Four limitations, each with numbers computed from real images and real models:

1. **Blur.** Two standard sharpness (focus) measures of an image I (H, W), both computed on
   the (H-2, W-2) interior so that no padding invents edges:

   * variance of the Laplacian (Pech-Pacheco et al. 2000, "Diatom autofocusing in
     brightfield microscopy: a comparative study", ICPR):
         L[i, j] = I[i-1, j] + I[i+1, j] + I[i, j-1] + I[i, j+1] - 4 I[i, j],
         S_lap   = Var_{i,j}(L[i, j])             (population variance over interior pixels);
   * mean gradient magnitude, with central differences:
         g_x = (I[i, j+1] - I[i, j-1]) / 2,   g_y = (I[i+1, j] - I[i-1, j]) / 2,
         S_grad = mean_{i,j} sqrt(g_x^2 + g_y^2).

   Both are in intensity units (pixels in [0, 1]); a blurred copy of an image scores lower.
   They are computed with ``torch.nn.functional.conv2d`` (cross-correlation, "valid", float32).

2. **Over-regularisation and posterior collapse.** Rate R = KL(q(z|x) || p(z)) and
   distortion D = E_q[-log p(x|z)] on the held-out split, per image in nats (Alemi et al.
   2018, "Fixing a Broken ELBO", ICML), so -ELBO = D + R, for every model of the beta sweep.
   Active units by the one definition of ``core.units`` (Burda et al. 2016, "Importance
   Weighted Autoencoders", ICLR): Var_x(E_q[z_j | x]) > 0.01 on held-out images. Also the
   -ELBO on the *training* images (``train_vs_heldout``), to tell an optimisation effect from
   evaluation noise when a beta below 1 has the lowest held-out -ELBO.

3. **The prior hole.** The aggregate posterior q(z) = (1/N) sum_n q(z|x_n) of a 2-D VAE
   against the prior N(0, I) (Hoffman & Johnson 2016, "ELBO surgery"): on a square grid,
   the number of the N training codes the prior expects in each cell, N * P_prior(cell),
   with the exact Gaussian cell probability P_prior(cell) = (Phi(b1) - Phi(a1)) (Phi(b2) -
   Phi(a2)), against the number the encoder puts there, N * q(cell), where each image
   contributes its whole posterior N(mu_n, diag(sigma_n^2)) (same formula, shifted and
   scaled). A *hole* is a cell where the prior expects at least ``min_expected`` codes and
   the encoder puts at most a fraction ``max_fill`` of them. Only with whole posteriors is the
   grid KL a lower bound on KL(q(z) || p(z)) (data-processing inequality); a histogram of the
   means mu_n alone is a different distribution, and its grid KL bounds nothing about q(z).

5. **Only a bound.** log p(x) = ELBO + KL(q(z|x) || p(z|x)); the importance-weighted bound
   L_k (Burda et al. 2016) rises towards log p(x) with k, so L_k - ELBO is a lower bound on
   the average gap KL(q(z|x) || p(z|x)) (``iwae_bounds``).

4. **Complex data.** The same small MLP VAE on 8x8 digits and on 28x28 MNIST: per-pixel
   reconstruction error, sharpness kept relative to the real images, and how often a
   simple classifier (scikit-learn ``LogisticRegression`` trained on the real training
   images) recognises the model's prior samples with confidence, and how easily another one
   tells samples from real images (a classifier two-sample test).

Every function returns plain numpy arrays, floats and dicts, so pages can cache them.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core.data import Dataset, load_dataset
from core.models import AutoEncoder, count_parameters
from core.training import decode, encode_stats, evaluate_model, reconstruct, sample_prior
from core.units import count_active

# ---- 1. sharpness ----------------------------------------------------------------------------

LAPLACIAN_KERNEL = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))
GRAD_X_KERNEL = ((0.0, 0.0, 0.0), (-0.5, 0.0, 0.5), (0.0, 0.0, 0.0))
GRAD_Y_KERNEL = ((0.0, -0.5, 0.0), (0.0, 0.0, 0.0), (0.0, 0.5, 0.0))

MEASURES = {
    "laplacian": "Variance of the Laplacian",
    "gradient": "Mean gradient magnitude",
}


def _images(x, image_shape: Sequence[int]) -> torch.Tensor:
    """(N, D) or (N, H, W) array -> float32 tensor (N, 1, H, W); needs H, W >= 3."""
    h, w = (int(v) for v in image_shape)
    if h < 3 or w < 3:
        raise ValueError(f"sharpness needs images of at least 3x3 pixels, got {h}x{w}")
    t = torch.from_numpy(np.array(x, dtype=np.float32))  # a copy: dataset arrays are read-only
    if t.ndim == 2:
        if t.shape[1] != h * w:
            raise ValueError(f"images have {t.shape[1]} pixels, but image_shape {h}x{w} needs {h * w}")
        t = t.reshape(-1, h, w)
    if t.ndim != 3 or tuple(t.shape[1:]) != (h, w):
        raise ValueError(f"expected images (N, {h * w}) or (N, {h}, {w}), got {tuple(t.shape)}")
    return t.unsqueeze(1)


_KERNELS = torch.tensor([LAPLACIAN_KERNEL, GRAD_X_KERNEL, GRAD_Y_KERNEL], dtype=torch.float32).unsqueeze(1)


@torch.no_grad()
def filter_responses(x, image_shape: Sequence[int]) -> torch.Tensor:
    """The Laplacian, g_x and g_y of every image, as one valid 3x3 cross-correlation
    (``torch.nn.functional.conv2d``, float32): (N, D) -> (N, 3, H-2, W-2)."""
    return F.conv2d(_images(x, image_shape), _KERNELS)


def laplacian(x, image_shape: Sequence[int]) -> np.ndarray:
    """The 4-neighbour Laplacian L of each image on its interior: (N, D) -> (N, H-2, W-2)."""
    return filter_responses(x, image_shape)[:, 0].numpy()


def _lap_var(r: torch.Tensor) -> np.ndarray:
    return r[:, 0].flatten(1).double().var(dim=1, unbiased=False).numpy()


def _grad_mag(r: torch.Tensor) -> np.ndarray:
    return torch.sqrt(r[:, 1].double().square() + r[:, 2].double().square()).flatten(1).mean(dim=1).numpy()


def laplacian_variance(x, image_shape: Sequence[int]) -> np.ndarray:
    """S_lap per image: population variance of the interior Laplacian, (N, D) -> (N,)."""
    return _lap_var(filter_responses(x, image_shape))


def gradient_magnitude(x, image_shape: Sequence[int]) -> np.ndarray:
    """S_grad per image: mean central-difference gradient magnitude on the interior, (N, D) -> (N,)."""
    return _grad_mag(filter_responses(x, image_shape))


def sharpness_all(x, image_shape: Sequence[int]) -> dict[str, np.ndarray]:
    """Both measures from one convolution: {"laplacian": (N,), "gradient": (N,)}."""
    r = filter_responses(x, image_shape)
    return {"laplacian": _lap_var(r), "gradient": _grad_mag(r)}


def sharpness(x, image_shape: Sequence[int], measure: str = "laplacian") -> np.ndarray:
    """Per-image sharpness (N,) by ``measure`` ("laplacian" or "gradient"); see the module docstring."""
    if measure == "laplacian":
        return laplacian_variance(x, image_shape)
    if measure == "gradient":
        return gradient_magnitude(x, image_shape)
    raise ValueError(f"measure must be one of {sorted(MEASURES)}, got {measure!r}")


def mean_sem(values) -> tuple[float, float]:
    """Mean and standard error of the mean (sample std / sqrt(n)) of a 1-D array."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("no values to summarise")
    sem = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else 0.0
    return float(v.mean()), sem


# ---- loading the evidence from the zoo -------------------------------------------------------

Loader = Callable[..., object]  # core.zoo.pretrained or a cached wrapper of it (same signature)


def _zoo_loader() -> Loader:
    from core import zoo
    return zoo.pretrained


def sweep_betas() -> tuple[float, ...]:
    """The betas of the rate-distortion sweep (VAEs with a 16-D latent)."""
    from core import zoo
    return tuple(float(b) for b in zoo.SWEEP_BETAS)


def split_indices(p) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx) of a zoo model: val_idx is stored with it, train is the rest."""
    val = np.asarray(p.val_idx, dtype=np.int64)
    n = load_dataset(p.spec.dataset).n
    return np.setdiff1d(np.arange(n), val), val


def show_indices(n_val: int, n_show: int, seed: int) -> np.ndarray:
    """Which held-out images to show: ``n_show`` positions in 0..n_val-1 chosen by ``seed``."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_val, size=min(n_show, n_val), replace=False))


def _likelihood(p) -> str:
    return p.config.likelihood


def blur_evidence(dataset: str, seed: int = 0, n_show: int = 12, latent_dim: int = 16,
                  loader: Loader | None = None) -> dict:
    """Sharpness of real held-out images, AE reconstructions, and VAE reconstructions and prior
    samples for every beta of the sweep (latent ``latent_dim``).

    Returns a dict:
      ``image_shape``; ``betas`` (B,); ``show`` (n_show,) positions in the held-out split;
      ``images``: {"original", "ae", "vae_<beta>", "sample_<beta>"} -> (n_show, D) float32;
      ``values``: {source: {measure: (N,) per-image sharpness}} for every source above
      (N = number of held-out images; prior samples: the same number, drawn with ``seed``);
      ``summary``: list of rows {source, kind, beta, measure, mean, sem}.
    """
    load = loader or _zoo_loader()
    ds = load_dataset(dataset)
    betas = sweep_betas()
    ae = load(dataset, "ae", 0.0, latent_dim)
    _, val = split_indices(ae)
    x_val = ds.x[val]
    show = show_indices(len(val), n_show, seed)
    outputs = {"original": x_val, "ae": reconstruct(ae.model, x_val)}
    for b in betas:
        p = load(dataset, "vae", b, latent_dim)
        if not np.array_equal(p.val_idx, val):
            raise ValueError(f"model beta={b:g} was evaluated on a different held-out split")
        outputs[f"vae_{b:g}"] = reconstruct(p.model, x_val)
        outputs[f"sample_{b:g}"] = sample_prior(p.model, len(val), seed=seed)
    values: dict[str, dict[str, np.ndarray]] = {}
    summary = []
    for src, imgs in outputs.items():
        values[src] = sharpness_all(imgs, ds.image_shape)
        kind, _, b = src.partition("_")
        for m, v in values[src].items():
            mean, sem = mean_sem(v)
            summary.append(dict(source=src, kind=kind, beta=float(b) if b else None, measure=m, mean=mean, sem=sem))
    # The same held-out images for every model; prior samples are simply the first few drawn.
    images = {src: np.asarray(imgs[:len(show)] if src.startswith("sample") else imgs[show], dtype=np.float32)
              for src, imgs in outputs.items()}
    return dict(image_shape=tuple(ds.image_shape), betas=np.array(betas), show=show, images=images,
                values=values, summary=summary, n_val=len(val))


def summary_value(summary: Sequence[Mapping], source: str, measure: str) -> tuple[float, float]:
    """(mean, sem) of one source and measure from ``blur_evidence(...)["summary"]``."""
    for row in summary:
        if row["source"] == source and row["measure"] == measure:
            return row["mean"], row["sem"]
    raise KeyError(f"no sharpness summary for {source!r} / {measure!r}")


# ---- 2. rate-distortion, active units, remedies ----------------------------------------------

def rd_point(p, x_val: np.ndarray, seed: int | None = None) -> dict:
    """One model's held-out terms, freshly evaluated with ``core.training.evaluate_model``.

    ``p`` is a ``zoo.Pretrained``; ``seed`` defaults to the training seed (as the zoo used).
    Returns {beta, variant, rate (= KL), distortion (= recon), neg_elbo, loss, kl_per_dim (K,),
    var_mu (K,): Var_x(mu_j) on these images, active_units: Burda et al.'s count
    (``core.units.count_active``, Var_x(mu_j) > 0.01), latent_dim}.
    """
    s = int(p.train_config.get("seed", 0)) if seed is None else int(seed)
    beta = float(p.spec.beta)
    ev = evaluate_model(p.model, x_val, beta, _likelihood(p), seed=s)
    mu, _ = encode_stats(p.model, x_val)
    return dict(beta=beta, variant=p.spec.variant, kind=p.spec.kind, rate=ev["kl"], distortion=ev["recon"],
                neg_elbo=ev["neg_elbo"], loss=ev["loss"], kl_per_dim=list(ev["kl_per_dim"]),
                var_mu=[float(v) for v in np.asarray(mu, np.float64).var(axis=0)],
                active_units=count_active(mu), latent_dim=int(p.config.latent_dim))


def rate_distortion(dataset: str, latent_dim: int = 16, loader: Loader | None = None,
                    variants: Sequence[str] = ("warmup", "freebits"), variant_beta: float = 4.0) -> dict:
    """Held-out rate and distortion of every model of the beta sweep, plus the remedy variants.

    Returns {"sweep": [rd_point per beta, ascending], "variants": {variant: rd_point}} where
    the plain model at ``variant_beta`` is under variant "" (plain).
    """
    load = loader or _zoo_loader()
    ds = load_dataset(dataset)
    sweep = []
    val = None
    for b in sweep_betas():
        p = load(dataset, "vae", b, latent_dim)
        val = np.asarray(p.val_idx) if val is None else val
        sweep.append(rd_point(p, ds.x[p.val_idx]))
    var = {}
    for v in ("", *variants):
        p = load(dataset, "vae", variant_beta, latent_dim, v)
        var[v] = rd_point(p, ds.x[p.val_idx])
    return {"sweep": sweep, "variants": var, "n_val": int(len(val))}


def train_vs_heldout(dataset: str, latent_dim: int = 16, n_seeds: int = 5, loader: Loader | None = None,
                     betas: Sequence[float] | None = None) -> dict:
    """-ELBO (nats per image, = reconstruction + KL) of every sweep model on its *training* and its
    *held-out* images, each the mean over ``n_seeds`` one-sample evaluations
    (``evaluate_model`` with seeds 0..n_seeds-1; seed 0 is the one ``rd_point`` uses).

    Returns {"rows": [{beta, train, train_sd, val, val_sd, var_mu (K,)}] ascending in beta,
    "epochs", "n_train", "n_val"}; ``*_sd`` is the standard deviation of the one-sample
    estimate over the seeds (its noise), ``var_mu`` is Var_x(mu_j) on the held-out images.
    """
    load = loader or _zoo_loader()
    ds = load_dataset(dataset)
    rows, epochs, n_tr, n_va = [], None, 0, 0
    for b in (sweep_betas() if betas is None else betas):
        p = load(dataset, "vae", float(b), latent_dim)
        tr, va = split_indices(p)
        est = {}
        for name, idx in (("train", tr), ("val", va)):
            v = np.array([evaluate_model(p.model, ds.x[idx], float(b), _likelihood(p), seed=s)["neg_elbo"]
                          for s in range(n_seeds)])
            est[name], est[f"{name}_sd"] = float(v.mean()), float(v.std(ddof=1)) if n_seeds > 1 else 0.0
        mu, _ = encode_stats(p.model, ds.x[va])
        rows.append(dict(beta=float(b), **est, var_mu=np.asarray(mu, np.float64).var(axis=0)))
        epochs, n_tr, n_va = p.train_config.get("epochs"), len(tr), len(va)
    return dict(rows=rows, epochs=epochs, n_train=n_tr, n_val=n_va)


def best_beta_reason(rows: Sequence[Mapping], best_beta: float, weak: float = 0.1) -> dict:
    """Why the beta with the lowest held-out -ELBO (``best_beta``, from the page's sweep) is not 1,
    judged from ``train_vs_heldout`` rows. Returns the two rows (``best``, ``one``), the
    held-out and training differences ``d_val``, ``d_train`` (beta=1 minus best, nats), their
    noise ``noise`` and ``train_noise`` (standard deviation of the difference of two one-sample
    estimates, sqrt(sd_best^2 + sd_1^2)), the number of units with Var_x(mu_j) below ``weak`` in
    each model (``weak_best``, ``weak_one``), and ``case``, checked in this order:

    * "beta1": beta = 1 is best (what perfect optimisation of the ELBO would give);
    * "optimisation": the other beta has a lower *training* -ELBO by more than 2 ``train_noise``,
      although beta = 1 minimises exactly that quantity: training stopped before beta = 1 got
      there (not overfitting, not evaluation noise);
    * "noise": otherwise, if the held-out difference is within 2 ``noise`` of 0;
    * "generalisation": otherwise (beta = 1 as good or better on the training images, worse on
      held-out ones).
    """
    by = {float(r["beta"]): r for r in rows}
    if 1.0 not in by or float(best_beta) not in by:
        raise ValueError("need rows for beta = 1 and for the best beta")
    best, one = by[float(best_beta)], by[1.0]
    d_val, d_train = one["val"] - best["val"], one["train"] - best["train"]
    noise = math.hypot(best["val_sd"], one["val_sd"])
    train_noise = math.hypot(best["train_sd"], one["train_sd"])
    if float(best_beta) == 1.0:
        case = "beta1"
    elif d_train > 2 * train_noise:
        case = "optimisation"
    elif abs(d_val) <= 2 * noise:
        case = "noise"
    else:
        case = "generalisation"
    return dict(case=case, best=best, one=one, d_val=float(d_val), d_train=float(d_train), noise=float(noise),
                train_noise=float(train_noise),
                weak=weak, weak_best=int((np.asarray(best["var_mu"]) < weak).sum()),
                weak_one=int((np.asarray(one["var_mu"]) < weak).sum()))


def iso_elbo_levels(points: Sequence[Mapping], n: int = 4) -> list[float]:
    """Values c of the lines D + R = c to draw: the best (lowest) -ELBO among the points and a
    few evenly spaced worse ones, up to the worst point that is not off the chart."""
    vals = sorted(float(p["neg_elbo"]) for p in points)
    if not vals:
        return []
    lo, hi = vals[0], vals[-1]
    if hi - lo < 1e-9:
        return [lo]
    return [lo + (hi - lo) * k / (n - 1) for k in range(n)]


def remedy_runs(dataset: str, beta: float = 4.0, latent_dim: int = 16, seed: int = 0, n_show: int = 8,
                loader: Loader | None = None) -> dict:
    """The plain, KL warm-up and free-bits models at one beta: held-out terms (``rd_point``),
    their training histories (step, kl, recon, beta), and reconstructions of ``n_show``
    held-out images (chosen by ``seed``)."""
    load = loader or _zoo_loader()
    ds = load_dataset(dataset)
    out = {}
    for v in ("", "warmup", "freebits"):
        p = load(dataset, "vae", beta, latent_dim, v)
        x_val = ds.x[p.val_idx]
        show = show_indices(len(x_val), n_show, seed)
        h = p.history
        out[v] = dict(point=rd_point(p, x_val), train_config=dict(p.train_config),
                      history={k: np.asarray(h.get(k, []), dtype=np.float64) for k in ("step", "kl", "recon", "beta")},
                      recon=reconstruct(p.model, x_val[show]).astype(np.float32),
                      original=np.asarray(x_val[show], dtype=np.float32))
    return out


# ---- 3. the prior hole -----------------------------------------------------------------------

def _std_normal_cdf(v: np.ndarray) -> np.ndarray:
    return torch.special.ndtr(torch.as_tensor(np.asarray(v, dtype=np.float64))).numpy()


def prior_cell_mass(edges: np.ndarray) -> np.ndarray:
    """P(z in cell) under N(0, I) in 2-D for a square grid with the given 1-D ``edges`` (G+1,):
    (G, G) array indexed [i (dim 1), j (dim 2)], exact: (Phi(b1)-Phi(a1)) (Phi(b2)-Phi(a2))."""
    p1 = np.diff(_std_normal_cdf(edges))
    return np.outer(p1, p1)


def prior_density_grid(extent: float = 3.0, n: int = 121) -> tuple[np.ndarray, np.ndarray]:
    """N(0, I) density on an n x n grid over [-extent, extent]^2: (axis (n,), density (n, n))."""
    g = np.linspace(-extent, extent, n)
    z1, z2 = np.meshgrid(g, g, indexing="xy")
    return g, np.exp(-0.5 * (z1 ** 2 + z2 ** 2)) / (2 * np.pi)


def posterior_cell_mass(mu, sigma, edges: np.ndarray) -> np.ndarray:
    """Mass of the aggregate posterior q(z) = (1/N) sum_n N(z; mu_n, diag(sigma_n^2)) in each cell
    of the square grid with 1-D ``edges`` (G+1,): (G, G), exact (products of normal CDF
    differences, one factor per dimension). ``sigma=None`` treats each code as a point
    (the share of the means mu_n in each cell)."""
    mu = np.asarray(mu, dtype=np.float64)
    if sigma is None:
        counts, _, _ = np.histogram2d(mu[:, 0], mu[:, 1], bins=[edges, edges])
        return counts / len(mu)
    sigma = np.asarray(sigma, dtype=np.float64)
    if sigma.shape != mu.shape or not np.all(sigma > 0):
        raise ValueError("sigma must be positive and shaped like mu")
    per_dim = [np.diff(_std_normal_cdf((edges[None, :] - mu[:, j:j + 1]) / sigma[:, j:j + 1]), axis=1)
               for j in range(2)]  # each (N, G)
    return per_dim[0].T @ per_dim[1] / len(mu)


# The prior-hole scene's starting settings (pages/6_limits.py). A hole is a cell that gets at most a
# quarter of the codes the prior expects there: prior samples land there at least 4 times as often as
# the encoder puts codes there. With a 10 % threshold the shipped β = 1 model of MNIST-5k has no hole
# (its least-filled cell gets 11 %), and the scene would show no evidence at its defaults; the
# mismatch is then in the tails (q(z) has variances near 2 where the prior has 1).
HOLE_DEFAULTS = {"beta": 1.0, "cell": 0.25, "min_expected": 3, "max_fill": 0.25}


def find_holes(mu, sigma=None, cell: float = 0.5, extent: float = 3.0, min_expected: float = 3.0,
               max_fill: float = 0.1) -> dict:
    """Cells of a grid over [-extent, extent]^2 where the prior expects codes and the encoder puts few.

    ``mu``, ``sigma``: posterior means and standard deviations of the N training images
    (N, 2). With ``sigma`` each image contributes its whole posterior N(mu_n, diag(sigma_n^2)),
    so q is the aggregate posterior q(z) = (1/N) sum_n q(z|x_n) (Hoffman & Johnson 2016);
    ``sigma=None`` uses the histogram of the means mu_n instead (a different distribution).
    For each cell, ``expected`` = N * P_prior(cell) is how many of the N codes the prior
    N(0, I) expects there and ``observed`` = N * q(cell) how many the encoder puts there. A
    cell is a *hole* when expected >= ``min_expected`` and observed <= ``max_fill`` * expected
    (with ``max_fill`` = 0: an empty cell).

    Returns a dict with ``edges`` (G+1,), ``expected``/``observed``/``counts``/``hole_mask``
    (G, G), indexed [i (z1), j (z2)] (``counts``: means mu_n in the cell); ``holes`` (H, 2)
    centres sorted by expected count (most surprising first) with ``hole_expected`` /
    ``hole_observed`` (H,); ``busy`` (H', 2) centres of the cells with the most mass of q (as
    many as holes, at least 1); ``hole_mass`` (prior probability of the holes: the share of
    samples from the prior that land in one); ``n_eligible`` cells where the prior expects >=
    ``min_expected``; ``min_fill`` (the smallest observed / expected among them) at
    ``min_fill_centre``; ``kl_grid``: sum_c q_c log(q_c / p_c) over the cells plus one
    "outside" cell. ``kl_grid_is_bound`` is True when ``sigma`` was given: then q_c are the
    aggregate posterior's exact cell masses and ``kl_grid`` <= KL(q(z) || p(z)) by the
    data-processing inequality (grouping z into cells can only lose divergence). With
    ``sigma=None`` it is the grid KL of the histogram of means, and bounds nothing about q(z).
    """
    mu = np.asarray(mu, dtype=np.float64)
    if mu.ndim != 2 or mu.shape[1] != 2 or len(mu) == 0:
        raise ValueError(f"the prior-hole analysis needs 2-D codes (N, 2), got {mu.shape}")
    if not (0.05 <= cell <= extent):
        raise ValueError(f"cell size must be in [0.05, {extent}], got {cell}")
    if not min_expected > 0:
        raise ValueError(f"min_expected must be > 0, got {min_expected}")
    if not 0 <= max_fill < 1:
        raise ValueError(f"max_fill must be in [0, 1), got {max_fill}")
    n = len(mu)
    g = int(round(2 * extent / cell))
    edges = np.linspace(-extent, extent, g + 1)
    counts, _, _ = np.histogram2d(mu[:, 0], mu[:, 1], bins=[edges, edges])
    p_mass = prior_cell_mass(edges)
    q_mass = posterior_cell_mass(mu, sigma, edges)
    expected, observed = n * p_mass, n * q_mass
    centres = (edges[:-1] + edges[1:]) / 2
    hole = (observed <= max_fill * expected) & (expected >= min_expected)
    ii, jj = np.nonzero(hole)
    order = np.argsort(-expected[ii, jj], kind="stable")
    ii, jj = ii[order], jj[order]
    holes = np.stack([centres[ii], centres[jj]], axis=1) if len(ii) else np.zeros((0, 2))
    flat = np.argsort(-q_mass, axis=None, kind="stable")[:max(1, len(ii))]
    bi, bj = np.unravel_index(flat, q_mass.shape)
    busy = np.stack([centres[bi], centres[bj]], axis=1)
    eligible = expected >= min_expected
    fill = np.where(eligible, observed / np.maximum(expected, 1e-300), np.inf)
    k_min = np.unravel_index(np.argmin(fill), fill.shape)
    p_all = np.append(p_mass.ravel(), max(0.0, 1.0 - p_mass.sum()))
    q_all = np.append(q_mass.ravel(), max(0.0, 1.0 - q_mass.sum()))
    nz = q_all > 0
    kl_grid = float(np.sum(q_all[nz] * (np.log(q_all[nz]) - np.log(np.maximum(p_all[nz], 1e-300)))))
    return dict(edges=edges, counts=counts, expected=expected, observed=observed, holes=holes, hole_mask=hole,
                max_fill=float(max_fill),
                hole_expected=expected[ii, jj], hole_observed=observed[ii, jj], busy=busy,
                busy_observed=observed[bi, bj], hole_mass=float(p_mass[hole].sum()), kl_grid=max(0.0, kl_grid),
                kl_grid_is_bound=sigma is not None,
                n=n, cell=float(cell), extent=float(extent), min_expected=float(min_expected),
                uses_sigma=sigma is not None, n_eligible=int(eligible.sum()),
                min_fill=float(fill[k_min]) if eligible.any() else float("nan"),
                min_fill_centre=(float(centres[k_min[0]]), float(centres[k_min[1]])))


def mass_outside(mu, sigma, radius: float = 3.0, n_draws: int = 16, seed: int = 0) -> float:
    """Share of the aggregate posterior q(z) = (1/N) sum_n N(mu_n, diag(sigma_n^2)) farther than
    ``radius`` from the origin, by Monte Carlo: ``n_draws`` samples of z per image (seeded),
    mu, sigma (N, K) -> float. (Under N(0, I) in 2-D the exact value is exp(-radius^2 / 2).)"""
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    rng = np.random.default_rng(seed)
    z = mu[None] + sigma[None] * rng.standard_normal((n_draws, *mu.shape))
    return float((np.linalg.norm(z, axis=-1) > radius).mean())


def aggregate_posterior(dataset: str, beta: float = 1.0, loader: Loader | None = None) -> dict:
    """Encoded means and standard deviations of every *training* image under the 2-D VAE at
    ``beta``: {mu (N, 2), sigma (N, 2), y (N,), image_shape, agg_var (2,)} where ``agg_var`` is
    the aggregate posterior's variance per dimension, Var(mu_j) + mean(sigma_j^2) (law of total
    variance; 1 under the prior), ``agg_mean`` (2,) its mean (0 under the prior).
    ``collapsed``: no unit is active by Burda et al.'s criterion (``core.units.count_active``).
    ``share_outside``: share of the means mu_n farther than 3 from the origin; ``agg_outside``:
    share of the aggregate posterior's mass there (``mass_outside``, Monte Carlo);
    ``prior_outside``: the prior's share, P(|z| > 3) = exp(-9/2) in 2-D. ``rate``: the KL term
    the training images pay, mean over n of KL(q(z|x_n) || N(0, I)) = 1/2 sum_j (mu^2 + sigma^2 -
    1 - log sigma^2) in nats per image, an upper bound on KL(q(z) || p(z)) (Hoffman & Johnson 2016)."""
    load = loader or _zoo_loader()
    ds = load_dataset(dataset)
    p = load(dataset, "vae", beta, 2)
    train, _ = split_indices(p)
    mu, logvar = encode_stats(p.model, ds.x[train])
    sigma = np.exp(0.5 * logvar)
    agg_var = mu.var(axis=0) + (sigma ** 2).mean(axis=0)
    return dict(mu=mu.astype(np.float64), sigma=sigma.astype(np.float64), y=np.asarray(ds.y[train]),
                image_shape=tuple(ds.image_shape), agg_var=agg_var.astype(np.float64),
                agg_mean=mu.mean(axis=0).astype(np.float64), class_names=ds.class_names,
                collapsed=count_active(mu) == 0, sigma_mean=sigma.mean(axis=0).astype(np.float64),
                share_outside=float((np.hypot(mu[:, 0], mu[:, 1]) > 3.0).mean()),
                agg_outside=mass_outside(mu, sigma, 3.0),
                rate=float((0.5 * (mu.astype(np.float64) ** 2 + np.exp(logvar.astype(np.float64)) - 1.0
                                   - logvar.astype(np.float64))).sum(axis=1).mean()),
                prior_outside=math.exp(-4.5))


def decode_points(dataset: str, beta: float, z, latent_dim: int = 2, loader: Loader | None = None) -> np.ndarray:
    """Decoder means of the 2-D VAE at ``beta`` for codes z (M, 2) -> (M, D)."""
    load = loader or _zoo_loader()
    z = np.asarray(z, dtype=np.float32).reshape(-1, latent_dim)
    if len(z) == 0:
        return np.zeros((0, load_dataset(dataset).dim), dtype=np.float32)
    return decode(load(dataset, "vae", beta, latent_dim).model, z)


# ---- 4. complex data -------------------------------------------------------------------------

def fit_classifier(ds: Dataset, train_idx: np.ndarray, seed: int = 0):
    """scikit-learn multinomial logistic regression on the real training images (pixels as
    features). Returns the fitted estimator.

    BLAS is limited to one thread while fitting: next to torch's OpenMP pool, OpenBLAS's
    threads oversubscribe two cores and the fit runs about 100 times slower.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    clf = LogisticRegression(max_iter=200, C=1.0, random_state=seed)
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(ds.x[train_idx], ds.y[train_idx])
    return clf


def predict_proba(clf, x) -> np.ndarray:
    """Class probabilities (N, C) from a fitted classifier, with BLAS on one thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return clf.predict_proba(np.asarray(x, dtype=np.float32))


def real_vs_fake_accuracy(real_train, fake_train, real_test, fake_test, seed: int = 0) -> float:
    """Classifier two-sample test (Lopez-Paz & Oquab 2017, "Revisiting Classifier Two-Sample
    Tests", ICLR): held-out accuracy of a logistic regression trained to tell real images (label 1)
    from generated ones (label 0). 0.5 means it cannot tell them apart; 1.0, always can.
    Inputs are (N, D) arrays; the test set should be balanced."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    xt = np.concatenate([real_train, fake_train]).astype(np.float32)
    yt = np.concatenate([np.ones(len(real_train)), np.zeros(len(fake_train))])
    xs = np.concatenate([real_test, fake_test]).astype(np.float32)
    ys = np.concatenate([np.ones(len(real_test)), np.zeros(len(fake_test))])
    clf = LogisticRegression(max_iter=200, C=1.0, random_state=seed)
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(xt, yt)
        return float((clf.predict(xs) == ys).mean())


def confident_fraction(max_prob, threshold: float) -> float:
    """Share of images whose top class probability is at least ``threshold``."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    p = np.asarray(max_prob, dtype=np.float64)
    return float((p >= threshold).mean()) if p.size else 0.0


def fit_judge(dataset: str, beta: float = 1.0, latent_dim: int = 16, loader: Loader | None = None):
    """The classifier that ``complex_data_evidence`` judges images with: ``fit_classifier`` on the
    training split of the zoo VAE (``dataset``, ``beta``, ``latent_dim``). It depends on no seed
    (L-BFGS is deterministic), so one fit can serve every seed and every session."""
    load = loader or _zoo_loader()
    train, _ = split_indices(load(dataset, "vae", beta, latent_dim))
    return fit_classifier(load_dataset(dataset), train)


def complex_data_evidence(dataset: str, beta: float = 1.0, latent_dim: int = 16, seed: int = 0,
                          n_show: int = 8, loader: Loader | None = None, judge=None) -> dict:
    """How far the small MLP VAE is from one dataset's real images (held-out split).

    Returns {dataset, image_shape, pixels, n_params (VAE), n_val,
    ``mse_ae`` / ``mse_vae``: mean per-pixel squared error of AE / VAE reconstructions,
    ``sharp``: {measure: {"original", "vae", "sample", "ae"} -> mean sharpness},
    ``acc_real`` / ``acc_vae``: classifier accuracy on real held-out images / on their VAE
    reconstructions (true labels), ``maxprob_real`` / ``maxprob_vae`` / ``maxprob_sample``:
    the classifier's top probability per image (real, reconstructions, prior samples),
    ``c2st_acc``: accuracy of a logistic regression telling real held-out images from as many
    prior samples (trained on other real images and other samples; 0.5 = indistinguishable),
    ``images``: {"original", "vae", "sample"} -> (n_show, D)}.
    ``judge``: the classifier from ``fit_judge`` with the same arguments, if the caller has one
    (fitting it is the costly part, about 0.2 s for MNIST-5k); otherwise it is fitted here.
    """
    load = loader or _zoo_loader()
    ds = load_dataset(dataset)
    vae = load(dataset, "vae", beta, latent_dim)
    ae = load(dataset, "ae", 0.0, latent_dim)
    train, val = split_indices(vae)
    x_val = ds.x[val]
    rec_vae = reconstruct(vae.model, x_val)
    rec_ae = reconstruct(ae.model, x_val)
    samples = sample_prior(vae.model, len(val), seed=seed)
    clf = judge if judge is not None else fit_classifier(ds, train)
    p_real, p_vae, p_samp = (predict_proba(clf, a) for a in (x_val, rec_vae, samples))
    n_c = min(len(train), 1000)
    c2st = real_vs_fake_accuracy(ds.x[train[:n_c]], sample_prior(vae.model, n_c, seed=seed + 1), x_val, samples, seed)
    per_src = {src: sharpness_all(a, ds.image_shape)
               for src, a in (("original", x_val), ("vae", rec_vae), ("sample", samples), ("ae", rec_ae))}
    sharp = {m: {src: float(v[m].mean()) for src, v in per_src.items()} for m in MEASURES}
    show = show_indices(len(val), n_show, seed)
    return dict(
        dataset=dataset, image_shape=tuple(ds.image_shape), pixels=int(ds.dim), n_val=int(len(val)),
        n_train=int(len(train)), n_params=count_parameters(vae.model),
        mse_ae=float(((rec_ae - x_val) ** 2).mean()), mse_vae=float(((rec_vae - x_val) ** 2).mean()),
        sharp=sharp, acc_real=float((p_real.argmax(1) == ds.y[val]).mean()),
        acc_vae=float((p_vae.argmax(1) == ds.y[val]).mean()), c2st_acc=c2st,
        maxprob_real=p_real.max(1), maxprob_vae=p_vae.max(1), maxprob_sample=p_samp.max(1),
        images={"original": np.asarray(x_val[show], np.float32), "vae": rec_vae[show].astype(np.float32),
                "sample": samples[:len(show)].astype(np.float32)})


def complex_rows(evidence: Sequence[Mapping], threshold: float, measure: str = "laplacian") -> list[dict]:
    """One table row per dataset from ``complex_data_evidence`` results: the headline ratios
    (model / real images) that compare datasets of different sizes fairly."""
    rows = []
    for e in evidence:
        s = e["sharp"][measure]
        real_conf = confident_fraction(e["maxprob_real"], threshold)
        samp_conf = confident_fraction(e["maxprob_sample"], threshold)
        rows.append({
            "dataset": e["dataset"],
            "image size": "{}×{}".format(*e["image_shape"]),
            "VAE parameters": e["n_params"],
            "per-pixel MSE, AE": e["mse_ae"],
            "per-pixel MSE, VAE": e["mse_vae"],
            "sharpness kept, VAE recon (%)": 100 * s["vae"] / s["original"],
            "sharpness kept, VAE samples (%)": 100 * s["sample"] / s["original"],
            "classifier accuracy, real (%)": 100 * e["acc_real"],
            "classifier accuracy, VAE recon (%)": 100 * e["acc_vae"],
            "confident, real (%)": 100 * real_conf,
            "confident, VAE samples (%)": 100 * samp_conf,
            "samples recognised vs real (%)": 100 * samp_conf / real_conf if real_conf > 0 else float("nan"),
            "real-vs-sample classifier accuracy (%)": 100 * e["c2st_acc"],
            "samples pass as real (%)": 100 * min(1.0, 2 * (1 - e["c2st_acc"])),
        })
    return rows


# ---- headline numbers the page quotes ---------------------------------------------------------

def blur_headline(summary: Sequence[Mapping], measure: str, beta: float) -> dict:
    """Mean sharpness of real images, AE reconstructions, and the beta-VAE's reconstructions and
    prior samples, each also as a percentage of the real images' value."""
    real = summary_value(summary, "original", measure)[0]
    out = {"original": real}
    for key, src in (("ae", "ae"), ("vae", f"vae_{beta:g}"), ("sample", f"sample_{beta:g}")):
        out[key] = summary_value(summary, src, measure)[0]
        out[f"{key}_pct"] = 100.0 * out[key] / real if real > 0 else float("nan")
    return out


def collapse_headline(sweep: Sequence[Mapping]) -> dict:
    """Facts about the sweep: the beta with the best (lowest) held-out -ELBO, the smallest beta at
    which every unit is inactive (None if none), and the distortion at the extremes."""
    pts = sorted(sweep, key=lambda p: p["beta"])
    best = min(pts, key=lambda p: p["neg_elbo"])
    collapsed = [p for p in pts if p["active_units"] == 0]
    return dict(best_beta=best["beta"], best_neg_elbo=best["neg_elbo"],
                first_collapsed=collapsed[0]["beta"] if collapsed else None,
                collapsed_distortion=collapsed[0]["distortion"] if collapsed else None,
                low=pts[0], high=pts[-1], latent_dim=len(pts[0]["kl_per_dim"]))


# ---- 5. only a bound ---------------------------------------------------------------------------

def iwae_bounds(model: AutoEncoder, x, ks: Sequence[int], seed: int = 0) -> dict[int, float]:
    """The importance-weighted bounds L_k = E[log (1/k) sum_i w_i] (Burda et al. 2016, eq. 8),
    mean over the images x (N, D), nats per image, for each k in ``ks``: {k: L_k}.

    One implementation of the weights: ``core.elbo.log_weights`` (the DESIGN.md contract behind
    ``core.elbo.log_likelihood``), with the training loss's likelihood convention. L_1 is the ELBO
    (one-sample estimate); L_k rises with k towards log p(x), so L_k - L_1 is a lower bound on the
    average gap E_x KL(q(z|x) || p(z|x)). The k draws are nested (L_10 uses the first 10 of the
    draws L_100 uses), so ``iwae_bounds(m, x, [k])[k]`` is the mean of ``elbo.log_likelihood(m, x, k)``.
    """
    from core import elbo

    ks = sorted(int(k) for k in ks)
    if not ks or ks[0] < 1:
        raise ValueError(f"every k must be >= 1, got {ks}")
    lw = elbo.log_weights(model, x, ks[-1], seed=seed).double()       # (N, k_max)
    return {k: float((torch.logsumexp(lw[:, :k], dim=1) - math.log(k)).mean()) for k in ks}


def bound_evidence(dataset: str, beta: float = 1.0, latent_dim: int = 16, ks: Sequence[int] = (1, 10, 100, 1000),
                   n_images: int = 200, seed: int = 0, loader: Loader | None = None) -> dict:
    """``iwae_bounds`` of the zoo VAE on the first ``n_images`` of its held-out split:
    {ks, bounds {k: L_k}, gap_lower (L_kmax - L_1), n_images, likelihood}."""
    load = loader or _zoo_loader()
    p = load(dataset, "vae", beta, latent_dim)
    x = load_dataset(dataset).x[np.asarray(p.val_idx)[:n_images]]
    b = iwae_bounds(p.model, x, ks, seed=seed)
    ks = sorted(b)
    return dict(ks=ks, bounds=b, gap_lower=b[ks[-1]] - b[ks[0]], n_images=int(len(x)), likelihood=_likelihood(p),
                beta=float(beta), latent_dim=int(latent_dim))
