"""The network diagram of a real (variational) autoencoder, and the page's small experiments.

:func:`build_diagram` runs one input through a model with ``model.activations(x, eps)`` and
lays the network out as columns of nodes, one column per layer, in forward order::

    AE:   input -> encoder 1 .. L -> z (code) -> decoder 1 .. L -> output
    VAE:  input -> encoder 1 .. L -> mu, sigma -> z = mu + sigma * eps (eps ~ N(0, I)) -> decoder .. -> output

Every node's value is the real activation of that unit for that input (nothing is drawn
by hand). Layers wider than ``max_nodes`` are subsampled, and the diagram records which
units it shows so the figure can say so ("encoder 1: 256 (showing 32)"):

* input and output pixels: the ``max_nodes`` pixels with the largest outgoing weight norm
  ``||W1[:, p]||_2`` of the first encoder layer (the pixels the encoder relies on most);
  the output shows the same pixels, so input and output nodes correspond one to one;
* hidden layers: evenly spaced units (every k-th), an input-independent, unbiased sample.

Edges are the real weights ``W[j, i]`` of the ``nn.Linear`` between two shown layers; for
each shown destination node only the ``edges_per_node`` strongest (largest ``|W[j, i]|``)
among the shown sources are kept. In a VAE, mu, sigma and eps meet z element by element
(``z_k = mu_k + sigma_k * eps_k``), which has no weights: those edges are marked
``"elementwise"`` and drawn as mu_k -> z_k, sigma_k -> eps_k (the product) and eps_k -> z_k.

The rest of the module holds the page's experiments, so the page does no maths: noisy
inputs (denoising), per-image reconstruction error (anomaly detection), decoding codes
from N(0, I) (generation), and turning a drawing into a dataset-shaped image.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from core.models import AutoEncoder

@dataclass
class DiagramLayer:
    """One column of nodes.

    ``key``: the activation name from ``model.activations`` ("input", "encoder 1", "mu", ...);
    ``title``: the short display name ("μ", "ε ~ N(0, I)", ...); ``width``: the layer's full
    width W; ``shown``: int (S,) indices of the units drawn (S <= W); ``values``: float (W,),
    the real activations of every unit for this input; ``x``: column position;
    ``y``: float (S,) node positions; ``stage``: the animation stage at which it is computed.
    """

    key: str
    title: str
    width: int
    shown: np.ndarray
    values: np.ndarray
    x: float
    y: np.ndarray
    stage: int
    how: str = ""  # how the units were chosen, when subsampled

    @property
    def subsampled(self) -> bool:
        return len(self.shown) < self.width

    @property
    def shown_values(self) -> np.ndarray:
        """The activations of the drawn units, (S,)."""
        return self.values[self.shown]

    @property
    def scale(self) -> float:
        """Colour range +-scale: 1 for pixels (values in [0, 1]), else the layer's max |activation|."""
        if self.key in ("input", "output"):
            return 1.0
        m = float(np.max(np.abs(self.values))) if self.values.size else 0.0
        return m if m > 1e-8 else 1.0

    @property
    def label(self) -> str:
        """E.g. "input 784 (showing 32)", "encoder 1: 256 (showing 32)", "μ: 16"."""
        sep = " " if self.key in ("input", "output") else ": "
        s = f"{self.title}{sep}{self.width}"
        return f"{s} (showing {len(self.shown)})" if self.subsampled else s


@dataclass
class DiagramEdges:
    """Connections drawn between two layers (indices into ``Diagram.layers``).

    ``i``: int (E,) positions in the source layer's ``shown``; ``j``: int (E,) positions in the
    destination's ``shown``; ``w``: float (E,) the weights ``W[shown_dst[j], shown_src[i]]``
    (ones for ``"elementwise"`` links); ``stage``: the stage of the destination layer.
    """

    src: int
    dst: int
    i: np.ndarray
    j: np.ndarray
    w: np.ndarray
    kind: str  # "linear" or "elementwise"
    stage: int


@dataclass
class Stage:
    name: str
    title: str
    formula: str


@dataclass
class Diagram:
    """Everything the animated figure needs, all computed from the model for one input.

    ``x``, ``recon``: float (D,) input and output pixels; ``error``: float (D,) |x - recon|;
    ``bce``: -log p(x|z) summed over pixels (nats, the model's own reconstruction loss);
    ``mse``: mean squared error per pixel; ``eps``: (K,) the noise used (VAE) or None.
    """

    kind: str
    layers: list[DiagramLayer]
    edges: list[DiagramEdges]
    stages: list[Stage]
    x: np.ndarray
    recon: np.ndarray
    error: np.ndarray
    image_shape: tuple[int, int]
    bce: float
    mse: float
    eps: np.ndarray | None
    max_nodes: int
    edges_per_node: int
    meta: dict = field(default_factory=dict)

    def layer(self, key: str) -> DiagramLayer:
        for layer in self.layers:
            if layer.key == key:
                return layer
        raise KeyError(key)

    @property
    def input_dim(self) -> int:
        return self.layers[0].width

    @property
    def latent_dim(self) -> int:
        return self.layer("z").width


def linear_layers(model: AutoEncoder) -> dict[str, nn.Linear]:
    """The ``nn.Linear`` feeding each activation name (the weights the diagram's edges show)."""
    enc = [m for m in model.encoder if isinstance(m, nn.Linear)]
    dec = [m for m in model.decoder if isinstance(m, nn.Linear)]
    out = {f"encoder {i + 1}": lin for i, lin in enumerate(enc)}
    out["mu" if model.is_vae else "z"] = model.head_mu
    if model.is_vae:
        out["sigma"] = model.head_logvar  # sigma = exp(logvar / 2), a monotone function of this layer
    out.update({f"decoder {j + 1}": lin for j, lin in enumerate(dec[:-1])})
    out["output"] = dec[-1]
    return out


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _spread(n: int, lo: float, hi: float, max_gap: float) -> np.ndarray:
    """n positions evenly spaced and centred in [lo, hi], at most ``max_gap`` apart, (n,)."""
    if n == 1:
        return np.array([(lo + hi) / 2])
    gap = min((hi - lo) / (n - 1), max_gap)
    mid = (lo + hi) / 2
    return mid + gap * (np.arange(n) - (n - 1) / 2)


def pixel_subset(model: AutoEncoder, max_nodes: int) -> np.ndarray:
    """Sorted indices of the ``max_nodes`` input pixels with the largest ``||W1[:, p]||_2``."""
    w = linear_layers(model)["encoder 1"].weight.detach().float()  # (H1, D)
    d = w.shape[1]
    if d <= max_nodes:
        return np.arange(d)
    norms = w.norm(dim=0).cpu().numpy()
    return np.sort(np.argsort(-norms, kind="stable")[:max_nodes])


def unit_subset(width: int, max_nodes: int) -> np.ndarray:
    """Every k-th unit, ``max_nodes`` of them, evenly spread over 0..width-1 (all if narrow enough)."""
    if width <= max_nodes:
        return np.arange(width)
    return np.unique(np.round(np.linspace(0, width - 1, max_nodes)).astype(int))


def _strongest_edges(w: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For a (S_dst, S_src) weight block, the positions (i_src, j_dst) of the k largest |w| per row."""
    k = min(k, w.shape[1])
    top = np.argsort(-np.abs(w), axis=1, kind="stable")[:, :k]  # (S_dst, k)
    j = np.repeat(np.arange(w.shape[0]), k)
    return top.reshape(-1), j


TITLES = {"input": "input", "mu": "μ", "sigma": "σ", "eps": "ε ~ N(0, I)", "output": "output"}


def stages_of(model: AutoEncoder) -> list[Stage]:
    """The animation stages for ``model``, in forward order (the last one compares input and output)."""
    n_enc = sum(isinstance(m, nn.Linear) for m in model.encoder)
    n_dec = sum(isinstance(m, nn.Linear) for m in model.decoder) - 1
    link = "sigmoid" if model.cfg.likelihood == "bernoulli" else "identity"
    st = [Stage("input", "The input image, as a column of pixel values in [0, 1]", "x")]
    for i in range(n_enc):
        prev = "x" if i == 0 else f"h{i}"
        st.append(Stage(f"encoder {i + 1}", f"Encoder layer {i + 1}: a weighted sum of the layer before, then ReLU",
                        f"h{i + 1} = ReLU(W{i + 1}·{prev} + b{i + 1})"))
    h = f"h{n_enc}"
    if model.is_vae:
        st.append(Stage("mu, sigma", "Two linear heads (no ReLU): the mean μ and the spread σ of the code",
                        f"μ = W_μ·{h} + b_μ,  σ = exp(½(W_σ·{h} + b_σ))"))
        st.append(Stage("eps", "Noise ε is drawn from N(0, I): an input, not computed from x",
                        "ε ~ N(0, I)"))
        st.append(Stage("z", "The reparameterization trick: the code is z = μ + σ·ε", "z = μ + σ·ε"))
    else:
        st.append(Stage("z", "The bottleneck: a linear layer (no ReLU) of a few numbers z",
                        f"z = W_z·{h} + b_z"))
    for j in range(n_dec):
        prev = "z" if j == 0 else f"g{j}"
        st.append(Stage(f"decoder {j + 1}", f"Decoder layer {j + 1}: rebuilding the image from the code",
                        f"g{j + 1} = ReLU(V{j + 1}·{prev} + c{j + 1})"))
    st.append(Stage("output", "The decoder's output: one value per pixel, the reconstruction x̂",
                    f"x̂ = {link}(V{n_dec + 1}·g{n_dec} + c{n_dec + 1})"))
    st.append(Stage("compare", "Reconstruction beside the input, with the per-pixel error",
                    "error = |x − x̂|"))
    return st


def noise_for(model: AutoEncoder, seed: int) -> torch.Tensor | None:
    """The fixed eps ~ N(0, I) of shape (1, K) used for a VAE's diagram (None for an AE)."""
    if not model.is_vae:
        return None
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn((1, model.cfg.latent_dim), generator=g)


def _sources(model: AutoEncoder, names: list[str]) -> dict[str, list[str]]:
    """The drawn links into each activation name (``names`` in forward order).

    In a VAE, z_k = mu_k + sigma_k * eps_k is drawn as three element-by-element links per
    dimension k: mu_k -> z_k, sigma_k -> eps_k (the product sigma_k * eps_k) and eps_k -> z_k.
    """
    src: dict[str, list[str]] = {}
    enc = [n for n in names if n.startswith("encoder ")]
    dec = [n for n in names if n.startswith("decoder ")]
    chain = ["input", *enc]
    for a, b in zip(chain, chain[1:]):
        src[b] = [a]
    if model.is_vae:
        src["mu"] = src["sigma"] = [chain[-1]]
        src["eps"] = ["sigma"]
        src["z"] = ["mu", "eps"]
    else:
        src["z"] = [chain[-1]]
    chain = ["z", *dec, "output"]
    for a, b in zip(chain, chain[1:]):
        src[b] = [a]
    return src


@torch.no_grad()
def build_diagram(model: AutoEncoder, x, image_shape, eps: torch.Tensor | None = None, seed: int = 0,
                  max_nodes: int = 32, edges_per_node: int = 3) -> Diagram:
    """Run one input ``x`` (D,) through ``model`` and lay out the diagram.

    ``eps`` (1, K) fixes the VAE's noise; when None it is drawn from a generator seeded by
    ``seed`` (so the same seed always gives the same diagram). Node values are exactly
    ``model.activations(x[None], eps)``; the reconstruction loss is
    ``core.losses.reconstruction_nll`` of ``model(x, eps)``, the same z.
    """
    from core.losses import kl_per_dim, reconstruction_nll

    x_t = torch.as_tensor(np.array(x, dtype=np.float32)).reshape(1, -1)
    if x_t.shape[1] != model.cfg.input_dim:
        raise ValueError(f"the input has {x_t.shape[1]} pixels but the model expects {model.cfg.input_dim}")
    if int(np.prod(image_shape)) != model.cfg.input_dim:
        raise ValueError(f"image_shape {tuple(image_shape)} does not match the model's {model.cfg.input_dim} pixels")
    if max_nodes < 2 or edges_per_node < 1:
        raise ValueError("max_nodes must be >= 2 and edges_per_node >= 1")
    if model.is_vae and eps is None:
        eps = noise_for(model, seed)
    acts = {name: a[0].detach().cpu().numpy().astype(np.float64) for name, a in model.activations(x_t, eps)}
    lins = linear_layers(model)
    stages = stages_of(model)
    stage_of = {s.name: i for i, s in enumerate(stages)}
    if model.is_vae:
        stage_of["mu"] = stage_of["sigma"] = stage_of.pop("mu, sigma")

    pixels = pixel_subset(model, max_nodes)
    layers: list[DiagramLayer] = []
    col = 0.0
    for name, vals in acts.items():
        width = vals.shape[0]
        if name in ("input", "output"):
            shown = pixels
            how = "the pixels with the largest encoder weights" if len(shown) < width else ""
        else:
            shown = unit_subset(width, max_nodes)
            how = f"every {_ordinal(round(width / len(shown)))} unit" if len(shown) < width else ""
        # VAE bottleneck: mu and z share the top band and sigma and eps the bottom one, so that
        # dimension k's mu_k, sigma_k, eps_k and z_k line up and its links are parallel.
        top = name == "mu" or (name == "z" and model.is_vae)
        lo, hi = (0.56, 0.97) if top else (0.03, 0.44) if name in ("sigma", "eps") else (0.03, 0.97)
        if name == "sigma":
            x_pos = layers[-1].x  # mu and sigma share a column: the encoder's two heads
        elif name in ("eps",) or (name == "z" and model.is_vae):
            x_pos = layers[-1].x + 0.9  # room for the "ε ~ N(0, I)" and "z = μ + σ·ε" labels
        else:
            x_pos = col
        title = TITLES.get(name, name)
        if name == "z":
            title = "z = μ + σ·ε" if model.is_vae else "z (code)"
        layers.append(DiagramLayer(name, title, width, shown, vals, x_pos,
                                   _spread(len(shown), lo, hi, 0.12), stage_of[name], how))
        col = x_pos + 1.0
    idx = {layer.key: n for n, layer in enumerate(layers)}

    edges: list[DiagramEdges] = []
    for dst_key, src_keys in _sources(model, list(acts)).items():
        dst = layers[idx[dst_key]]
        for src_key in src_keys:
            src = layers[idx[src_key]]
            if dst_key in lins:
                w = lins[dst_key].weight.detach().cpu().numpy().astype(np.float64)[np.ix_(dst.shown, src.shown)]
                i, j = _strongest_edges(w, edges_per_node)
                edges.append(DiagramEdges(idx[src_key], idx[dst_key], i, j, w[j, i], "linear", dst.stage))
            else:  # z_k = mu_k + sigma_k * eps_k: unit k feeds unit k only
                pos = {int(u): p for p, u in enumerate(src.shown)}
                pairs = np.array([(pos[int(u)], p) for p, u in enumerate(dst.shown) if int(u) in pos], dtype=int)
                pairs = pairs.reshape(-1, 2)
                edges.append(DiagramEdges(idx[src_key], idx[dst_key], pairs[:, 0], pairs[:, 1],
                                          np.ones(len(pairs)), "elementwise", stage_of["z"]))

    out = model(x_t, eps=eps)
    nll = float(reconstruction_nll(x_t, out, model.cfg.likelihood)[0])
    meta = {"likelihood": model.cfg.likelihood}
    if model.is_vae:  # KL(q(z|x) || N(0, I)) of this input, nats (Kingma & Welling 2014, Appendix B)
        meta["kl"] = float(kl_per_dim(out.mu, out.logvar).sum())
    xv, recon = acts["input"], acts["output"]
    return Diagram(kind="vae" if model.is_vae else "ae", layers=layers, edges=edges, stages=stages, x=xv,
                   recon=recon, error=np.abs(xv - recon), image_shape=tuple(int(v) for v in image_shape),
                   bce=nll, mse=float(np.mean((xv - recon) ** 2)),
                   eps=None if eps is None else eps[0].cpu().numpy(), max_nodes=max_nodes,
                   edges_per_node=edges_per_node, meta=meta)


# ---- the page's experiments: denoising, anomaly detection, generation, drawings ---------------

def as_batch(x) -> torch.Tensor:
    """(D,) or (N, D) array -> float32 (N, D) tensor (a copy, so read-only arrays are fine)."""
    t = torch.as_tensor(np.array(x, dtype=np.float32))
    return t.reshape(1, -1) if t.ndim == 1 else t


def random_index(n: int, seed: int, draw: int = 0) -> int:
    """A reproducible random index in 0..n-1: the ``draw``-th pick for ``seed``."""
    return int(np.random.default_rng([int(seed), int(draw)]).integers(int(n)))


def add_noise(x, level: float, seed: int = 0) -> np.ndarray:
    """x + level * n with n ~ N(0, I) (seeded), clipped to [0, 1]; same shape as x."""
    if not 0.0 <= float(level) <= 10.0:
        raise ValueError(f"noise level must be in [0, 10], got {level}")
    x = np.asarray(x, dtype=np.float32)
    n = np.random.default_rng(int(seed)).standard_normal(x.shape).astype(np.float32)
    return np.clip(x + np.float32(level) * n, 0.0, 1.0)


@torch.no_grad()
def reconstruct(model: AutoEncoder, x) -> np.ndarray:
    """Deterministic reconstruction decode(mu(x)): (D,) -> (D,) or (N, D) -> (N, D)."""
    x = np.asarray(x, dtype=np.float32)
    mu, _ = model.encode(as_batch(x))
    r = model.decode(mu).cpu().numpy()
    return r[0] if x.ndim == 1 else r


def reconstruction_mse(model: AutoEncoder, x) -> np.ndarray:
    """Mean squared error per pixel between x and decode(mu(x)): (N, D) -> (N,) (or (D,) -> scalar)."""
    x = np.asarray(x, dtype=np.float32)
    r = reconstruct(model, x)
    return np.mean((x - r) ** 2, axis=-1)


@dataclass
class DenoiseResult:
    """``noisy``, ``recon``: (D,); ``mse_noisy`` = mean (noisy - clean)^2, ``mse_recon`` = mean (recon - clean)^2."""

    clean: np.ndarray
    noisy: np.ndarray
    recon: np.ndarray
    mse_noisy: float
    mse_recon: float


def denoise(model: AutoEncoder, x, level: float, seed: int = 0) -> DenoiseResult:
    """Add Gaussian noise of std ``level`` to the clean image x (D,), reconstruct the noisy
    image, and measure both against the clean one."""
    clean = np.asarray(x, dtype=np.float32)
    noisy = add_noise(clean, level, seed)
    rec = reconstruct(model, noisy)
    return DenoiseResult(clean, noisy, rec, float(np.mean((noisy - clean) ** 2)), float(np.mean((rec - clean) ** 2)))


def odd_inputs(x, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs unlike the training data, for the anomaly-detection demo, each (D,):
    the image with its colours inverted (1 - x), and uniformly random pixels."""
    x = np.asarray(x, dtype=np.float32)
    rng = np.random.default_rng(int(seed) + 7)
    return {"colours inverted": 1.0 - x, "random pixels": rng.random(x.shape, dtype=np.float32)}


def anomaly_threshold(errors, quantile: float = 0.99) -> float:
    """The error above which an input is flagged: the ``quantile`` of the held-out errors."""
    return float(np.quantile(np.asarray(errors, dtype=np.float64), quantile))


def percentile_of(errors, value: float) -> float:
    """The share (in %) of ``errors`` that are below ``value``."""
    e = np.asarray(errors, dtype=np.float64)
    return float(100.0 * np.mean(e < value))


@dataclass(frozen=True)
class AnomalyVerdict:
    """One input scored against the held-out errors: its reconstruction MSE per pixel, the share (%) of
    held-out images with a smaller error, and whether it is above the threshold (flagged)."""
    name: str
    error: float
    percentile: float
    flagged: bool


def anomaly_report(model: AutoEncoder, x, errors, level: float, seed: int = 0,
                   quantile: float = 0.99) -> tuple[float, list[AnomalyVerdict]]:
    """The anomaly-detection readout for input ``x`` (D,): the threshold (``quantile`` of the held-out
    ``errors``) and a verdict for the input itself, the input with Gaussian noise of std ``level``
    (:func:`add_noise`, ``seed``) and each of :func:`odd_inputs`, in that order."""
    thr = anomaly_threshold(errors, quantile)
    inputs = {"this input": x, f"with noise σ = {level:.2f}": add_noise(x, level, seed),
              **odd_inputs(x, seed=seed)}
    out = []
    for name, img in inputs.items():
        v = float(np.ravel(reconstruction_mse(model, img))[0])
        out.append(AnomalyVerdict(name, v, percentile_of(errors, v), v > thr))
    return thr, out


def per_image_mse(a, b) -> np.ndarray:
    """Mean squared error per image (row) between image batches ``a`` and ``b`` (N, D): (N,) float64."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"image batches of different shapes: {a.shape} and {b.shape}")
    return np.mean((a - b) ** 2, axis=-1)


def train_indices(n: int, val_idx) -> np.ndarray:
    """The images of a dataset of ``n`` that a zoo model trained on: all but its held-out ``val_idx``."""
    return np.setdiff1d(np.arange(int(n)), np.asarray(val_idx, dtype=np.int64))


@torch.no_grad()
def decode_prior(model: AutoEncoder, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Draw n codes z ~ N(0, I) (seeded) and decode them: returns z (n, K) and images (n, D)."""
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn((int(n), model.cfg.latent_dim), generator=g)
    return z.numpy(), model.decode(z).cpu().numpy()


@torch.no_grad()
def code_stats(model: AutoEncoder, x, seed: int = 0) -> dict:
    """Where the encoder puts real images, compared with the prior N(0, I) that generation samples.

    ``codes`` (N, K) for x (N, D): the codes the decoder is trained on: mu(x) for an AE, and for a
    VAE one sample z = mu + sigma * eps per image (eps seeded by ``seed``), so the statistics
    describe the aggregate posterior; ``mean``, ``std``: their per-dimension mean and
    standard deviation (K,); ``kl_to_prior``: sum over dimensions of KL(N(mean_k, std_k^2) ||
    N(0, 1)) in nats (core.kl.kl_normal). It compares moments only, one dimension at a time: it is
    0 whenever every dimension has mean 0 and standard deviation 1, however the codes are spread
    (holes in the cloud and correlations between dimensions do not show in it);
    ``origin_inside``: True when, in every dimension, the prior's centre 0 lies within one
    standard deviation of the codes' mean, so codes drawn from N(0, I) land inside the cloud.
    """
    from core.kl import kl_normal

    from core.models import reparameterize

    mu, logvar = model.encode(as_batch(x))
    if logvar is not None:
        g = torch.Generator().manual_seed(int(seed))
        mu = reparameterize(mu, logvar, torch.randn(mu.shape, generator=g))
    mu = mu.cpu().numpy().astype(np.float64)
    mean, std = mu.mean(0), mu.std(0)
    kl = float(np.sum(kl_normal(mean, np.maximum(std, 1e-3), 0.0, 1.0)))
    return {"codes": mu, "mean": mean, "std": std, "kl_to_prior": kl,
            "origin_inside": bool(np.all(np.abs(mean) < std))}


PRIOR_TAIL = float(np.exp(-4.5))  # P(||z|| > 3) for z ~ N(0, I) in 2-D: the chi-square(2) tail at 9


@torch.no_grad()
def prior_match(model: AutoEncoder, x) -> dict:
    """What a VAE's KL term does and does not guarantee about where its codes lie, measured on x (N, D).

    The KL term of one image, KL(q(z|x) || N(0, I)) = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)
    (Kingma and Welling, 2014, Appendix B), is 0 only when q(z|x) = N(0, I), that is when the code
    carries no information about x. Averaged over images it equals I(x; z) + KL(q(z) || p(z))
    (Hoffman and Johnson, 2016), so it bounds the mismatch KL(q(z) || p(z)) between the aggregate
    posterior q(z) = mean_x q(z|x) and the prior from above, but does not make it 0: the codes can
    still be spread unlike N(0, I). Returned (numpy, float64):

    ``kl_mean``: the mean KL term over x, nats per image (the bound on KL(q(z) || p(z)));
    ``var_mu`` (K,): Var_x(mu_j(x)), the spread of the posterior means per dimension;
    ``mean_sigma2`` (K,): E_x[sigma_j^2(x)]; ``agg_var`` (K,) = var_mu + mean_sigma2, the variance of
    q(z) per dimension (law of total variance; N(0, I) has 1);
    ``radius``: the radius that N(0, I) in K dimensions exceeds with probability ``PRIOR_TAIL``
    (1.1 %), i.e. 3 when K = 2 (sqrt of the chi-square(K) quantile);
    ``share_outside``: the share of the means mu(x) with ||mu(x)|| > radius; ``prior_outside``: the
    same share for N(0, I) (= PRIOR_TAIL); ``n``: the number of images.
    Raises ValueError for a plain autoencoder (it has no q(z|x)).
    """
    from scipy.stats import chi2

    if not model.is_vae:
        raise ValueError("prior_match needs a VAE: a plain autoencoder has no q(z|x) and no KL term")
    mu, logvar = model.encode(as_batch(x))
    mu, logvar = mu.cpu().numpy().astype(np.float64), logvar.cpu().numpy().astype(np.float64)
    s2 = np.exp(logvar)
    k = mu.shape[1]
    kl = 0.5 * np.sum(mu ** 2 + s2 - 1.0 - logvar, axis=1)
    radius = float(np.sqrt(chi2.isf(PRIOR_TAIL, k)))
    var_mu = mu.var(0)
    return {"kl_mean": float(kl.mean()), "var_mu": var_mu, "mean_sigma2": s2.mean(0),
            "agg_var": var_mu + s2.mean(0), "radius": radius,
            "share_outside": float(np.mean(np.sum(mu ** 2, axis=1) > radius ** 2)),
            "prior_outside": float(chi2.sf(radius ** 2, k)), "n": int(len(mu))}


def nearest_mse(images, reference) -> np.ndarray:
    """For each image (n, D), the mean squared error per pixel to its nearest image in
    ``reference`` (m, D): small when the image looks like some real image. (n,)."""
    a = np.asarray(images, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    d2 = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2.0 * a @ b.T  # ||a - b||^2, (n, m)
    return np.maximum(d2.min(1), 0.0) / a.shape[1]


def typical_extent(x, image_shape) -> int:
    """The median length (pixels) of the longer side of the digits' bounding boxes in x (N, D)."""
    h, w = image_shape
    ink = np.asarray(x).reshape(-1, h, w) > 0.1
    rows, cols = ink.any(2), ink.any(1)
    has = rows.any(1)
    if not has.any():
        return max(1, round(0.7 * min(h, w)))
    hh = h - np.argmax(rows[:, ::-1], 1) - np.argmax(rows, 1)
    ww = w - np.argmax(cols[:, ::-1], 1) - np.argmax(cols, 1)
    return int(np.median(np.maximum(hh, ww)[has]))


def drawing_to_image(rgba, image_shape, extent: int | None = None, threshold: float = 0.05) -> np.ndarray | None:
    """A drawing (H0, W0, 4) uint8 RGBA with white ink on black (or (H0, W0) greyscale) -> the
    dataset's format, (H*W,) float32 in [0, 1], prepared as MNIST was (LeCun et al.): crop the
    ink's bounding box, scale it (keeping its aspect ratio, with area averaging) so its longer
    side is ``extent`` pixels, and place it so its centre of mass is at the image centre.
    Returns None when nothing is drawn."""
    from PIL import Image

    a = np.asarray(rgba)
    if a.ndim == 3:
        rgb = a[..., :3].astype(np.float32).mean(-1)
        alpha = a[..., 3].astype(np.float32) / 255.0 if a.shape[-1] == 4 else 1.0
        g = rgb * alpha / 255.0
    elif a.ndim == 2:
        g = a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else 1.0)
    else:
        raise ValueError(f"a drawing must be (H, W) or (H, W, 3|4), got shape {a.shape}")
    ink = g > threshold
    if not ink.any():
        return None
    h, w = (int(v) for v in image_shape)
    extent = int(extent or round(min(h, w) * 20 / 28))
    extent = max(1, min(extent, h, w))
    r0, r1 = np.flatnonzero(ink.any(1))[[0, -1]]
    c0, c1 = np.flatnonzero(ink.any(0))[[0, -1]]
    crop = g[r0:r1 + 1, c0:c1 + 1]
    s = extent / max(crop.shape)
    nh, nw = max(1, round(crop.shape[0] * s)), max(1, round(crop.shape[1] * s))
    small = np.asarray(Image.fromarray((crop * 255).astype(np.uint8)).resize((nw, nh), Image.Resampling.BOX),
                       dtype=np.float32) / 255.0
    mass = small.sum()
    ys, xs = np.mgrid[:nh, :nw]
    cy, cx = ((ys * small).sum() / mass, (xs * small).sum() / mass) if mass > 0 else ((nh - 1) / 2, (nw - 1) / 2)
    top = int(np.clip(round((h - 1) / 2 - cy), 0, h - nh))
    left = int(np.clip(round((w - 1) / 2 - cx), 0, w - nw))
    out = np.zeros((h, w), np.float32)
    out[top:top + nh, left:left + nw] = small
    peak = out.max()
    if peak > 0:
        out = out / peak
    return out.reshape(-1)
