"""Exploring a trained model's latent space: codes, neighbours, paths, grids and prior samples.

Functions of numpy / torch / scikit-learn values (plus one background-job class); the latent page draws
their results. Shapes: ``x`` is (N, D) images as rows, codes are (N, K).

* Codes are the encoder means mu(x) (for an AE, its deterministic code): the point an
  image is mapped to, without sampling noise.
* Nearest neighbours: Euclidean distance between codes (scikit-learn ``NearestNeighbors``).
* Paths between two codes: linear interpolation, and spherical linear interpolation
  (slerp; Shoemake 1985), which White (2016, "Sampling Generative Networks") recommends
  for Gaussian latent spaces because straight lines pass through the low-norm middle of
  the space, where a K-dimensional N(0, I) has almost no mass for large K (its norm concentrates
  near sqrt(K)).
* The decoded manifold (Kingma & Welling 2014, figure 4): a regular grid on the unit
  square pushed through the inverse normal CDF, so that the grid cells have equal prior
  probability, then decoded.
* Latent traversals (Higgins et al. 2017): vary one coordinate, hold the others fixed.
  Dimensions are ordered by their average KL(q(z_j|x) || N(0, 1)) for a VAE (an upper
  bound on the information the dimension carries: E_x KL_j = I(x; z_j) + KL(q(z_j) || p(z_j)),
  Hoffman and Johnson 2016) or by the variance of the codes for an AE. Which dimensions are
  active is core.units' one definition (Burda et al. 2016); :func:`barely_active` names the
  active ones whose means hardly move (their traversal rows change the image little).
* What the KL term does not guarantee: the aggregate posterior q(z) = E_x q(z|x) equals the
  prior. :func:`aggregate_spread` measures how far the codes' spread is from N(0, I).
* Prior samples: a VAE is sampled from its prior N(0, I). An AE has no prior; it is
  sampled from N(0, I) or, more generously, from a Gaussian fitted to its own codes.
  How often a sample lands in a "hole" is measured in image space (see
  :func:`off_manifold`).
* t-SNE maps are computed by :class:`TsneJob` in a background thread (openTSNE through
  ``core.embed.tsne_fit``) so that a page can redraw the layout as it forms; a
  :class:`TsneJobs` registry shares one run per model and parameters between viewers.

No Streamlit here: the page caches the results.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.distributions import MultivariateNormal, Normal

from core.losses import kl_per_dim as _kl_per_dim
from core.models import AutoEncoder, eval_mode

MAX_BATCH = 1024
SLERP_PARALLEL_TOL = 1e-6


BARELY_ACTIVE = 0.05  # Var_x(mu_j) in (0.01, 0.05]: active by Burda et al. (2016), but only barely


# ---- codes ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Codes:
    """Encoder outputs for a whole dataset: ``mu`` (N, K) float32, ``logvar`` (N, K) or None (AE)."""

    mu: np.ndarray
    logvar: np.ndarray | None

    @property
    def n(self) -> int:
        return int(self.mu.shape[0])

    @property
    def latent_dim(self) -> int:
        return int(self.mu.shape[1])


def _device(model: AutoEncoder) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_dataset(model: AutoEncoder, x: np.ndarray, batch_size: int = MAX_BATCH) -> Codes:
    """mu(x) and log sigma^2(x) for every row of ``x`` (N, D), in eval mode, in batches."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != model.cfg.input_dim:
        raise ValueError(f"x must be (N, {model.cfg.input_dim}), got {x.shape}")
    was = model.training
    model.eval()
    mus, lvs = [], []
    try:
        for i in range(0, len(x), batch_size):
            xb = torch.tensor(x[i:i + batch_size], device=_device(model))  # a copy: x may be read-only
            mu, lv = model.encode(xb)
            mus.append(mu.cpu().numpy())
            if lv is not None:
                lvs.append(lv.cpu().numpy())
    finally:
        model.train(was)
    mu = np.concatenate(mus).astype(np.float32)
    return Codes(mu, np.concatenate(lvs).astype(np.float32) if lvs else None)


@torch.no_grad()
def decode(model: AutoEncoder, z: np.ndarray, batch_size: int = MAX_BATCH) -> np.ndarray:
    """Decoder means for codes ``z`` (M, K) -> (M, D) float32 (eval mode, batched)."""
    z = np.asarray(z, dtype=np.float32)
    if z.ndim == 1:
        z = z[None]
    if z.ndim != 2 or z.shape[1] != model.cfg.latent_dim:
        raise ValueError(f"z must be (M, {model.cfg.latent_dim}), got {z.shape}")
    with eval_mode(model):
        out = [model.decode(torch.tensor(z[i:i + batch_size], device=_device(model))).cpu().numpy()
               for i in range(0, len(z), batch_size)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, model.cfg.input_dim), np.float32)


# ---- nearest neighbours ---------------------------------------------------------------------

def nearest_neighbours(codes: np.ndarray, query: int | np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` codes nearest (Euclidean) to ``query``.

    ``query`` is a row index into ``codes`` (N, K), in which case that row itself is left
    out, or a code (K,). Returns (indices (k,) int64, distances (k,) float64), nearest first.
    """
    from sklearn.neighbors import NearestNeighbors

    codes = np.asarray(codes, dtype=np.float64)
    n = len(codes)
    own = isinstance(query, (int, np.integer))
    if own and not 0 <= int(query) < n:
        raise ValueError(f"index {query} is outside 0..{n - 1}")
    k = int(k)
    if not 1 <= k <= n - (1 if own else 0):
        raise ValueError(f"k must be in 1..{n - (1 if own else 0)}, got {k}")
    q = codes[int(query)] if own else np.asarray(query, dtype=np.float64).reshape(-1)
    if q.shape != (codes.shape[1],):
        raise ValueError(f"query must have {codes.shape[1]} dimensions, got {q.shape}")
    nn = NearestNeighbors(n_neighbors=k + (1 if own else 0)).fit(codes)
    dist, idx = nn.kneighbors(q[None])
    dist, idx = dist[0], idx[0]
    if own:  # drop the query itself (it may not come first when duplicates tie at distance 0)
        keep = idx != int(query)
        dist, idx = dist[keep][:k], idx[keep][:k]
    return idx.astype(np.int64), dist


# ---- interpolation --------------------------------------------------------------------------

def _endpoints(z0, z1) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(z0, dtype=np.float64).reshape(-1)
    b = np.asarray(z1, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"the two codes differ in shape: {a.shape} and {b.shape}")
    return a, b


def _steps(n: int) -> np.ndarray:
    if int(n) < 2:
        raise ValueError(f"a path needs at least 2 points, got {n}")
    return np.linspace(0.0, 1.0, int(n))


def lerp(z0, z1, n: int) -> np.ndarray:
    """Linear path z(t) = (1 - t) z0 + t z1 at n equally spaced t in [0, 1]: (n, K)."""
    a, b = _endpoints(z0, z1)
    t = _steps(n)[:, None]
    return ((1 - t) * a + t * b).astype(np.float32)


def slerp(z0, z1, n: int) -> np.ndarray:
    """Spherical linear interpolation (Shoemake 1985; White 2016), (n, K):

        z(t) = sin((1 - t) W) / sin W * z0 + sin(t W) / sin W * z1,  cos W = z0.z1 / (|z0| |z1|).

    It follows the great circle between the directions of z0 and z1 while the norm goes
    smoothly between |z0| and |z1|. When the codes are (anti)parallel or one is zero the
    angle is undefined and the linear path is returned.
    """
    a, b = _endpoints(z0, z1)
    t = _steps(n)[:, None]
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < SLERP_PARALLEL_TOL or nb < SLERP_PARALLEL_TOL:
        return lerp(a, b, n)
    cos = float(np.clip(a @ b / (na * nb), -1.0, 1.0))
    omega = np.arccos(cos)
    so = np.sin(omega)
    if so < SLERP_PARALLEL_TOL:
        return lerp(a, b, n)
    return (np.sin((1 - t) * omega) / so * a + np.sin(t * omega) / so * b).astype(np.float32)


def interpolate(z0, z1, n: int, method: str) -> np.ndarray:
    """``method`` is "linear" or "spherical"; see :func:`lerp` and :func:`slerp`."""
    if method == "linear":
        return lerp(z0, z1, n)
    if method == "spherical":
        return slerp(z0, z1, n)
    raise ValueError(f"method must be 'linear' or 'spherical', got {method!r}")


# ---- planes: the raw 2-D latent, or the PCA plane of a higher-dimensional one ----------------

@dataclass(frozen=True)
class Plane:
    """An affine 2-D plane in latent space: z = origin + p @ axes, p = (z - origin) @ axes.T.

    ``axes`` (2, K) are orthonormal. For K = 2 the plane is the latent space itself
    (origin 0, identity axes); for K > 2 it is the plane of the first two principal
    components of the codes. ``scale`` (2,) is the standard deviation of the codes along
    each axis, ``center`` (2,) their mean in plane coordinates.
    """

    origin: np.ndarray
    axes: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    kind: str  # "raw" or "pca"
    explained: tuple[float, float] | None = None  # PCA: share of the codes' variance per axis

    def to_plane(self, z: np.ndarray) -> np.ndarray:
        """Codes (M, K) -> plane coordinates (M, 2) (orthogonal projection)."""
        z = np.asarray(z, dtype=np.float64).reshape(-1, self.axes.shape[1])
        return ((z - self.origin) @ self.axes.T).astype(np.float32)

    def from_plane(self, p: np.ndarray) -> np.ndarray:
        """Plane coordinates (M, 2) -> codes (M, K) on the plane."""
        p = np.asarray(p, dtype=np.float64).reshape(-1, 2)
        return (self.origin + p @ self.axes).astype(np.float32)

    @property
    def axis_names(self) -> tuple[str, str]:
        return ("z₁", "z₂") if self.kind == "raw" else ("PC 1", "PC 2")


def latent_plane(codes: np.ndarray, seed: int = 0, method: str = "auto") -> Plane:
    """A 2-D plane of the latent space fitted to ``codes`` (N, K).

    ``method="auto"``: the raw plane for 2-D codes, the PCA plane (scikit-learn) for K > 2;
    ``method="pca"``: always PCA (for K = 2 a rotation of the raw plane).
    Sign convention (PCA): each axis is flipped so that its largest loading is positive,
    which makes the map independent of the SVD solver's arbitrary signs.
    """
    from core.embed import pca

    if method not in ("auto", "pca"):
        raise ValueError(f"method must be 'auto' or 'pca', got {method!r}")
    z = np.asarray(codes, dtype=np.float64)
    if z.ndim != 2 or len(z) < 3:
        raise ValueError(f"codes must be (N >= 3, K), got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("codes contain NaN or infinite values")
    k = z.shape[1]
    if k == 1:
        raise ValueError("a 1-D latent space has no plane; use a model with latent_dim >= 2")
    if k == 2 and method == "auto":
        origin, axes = np.zeros(2), np.eye(2)
        p = z
        explained = None
    else:
        fit = pca(z, 2)  # the exact SVD: ``seed`` changes nothing
        origin, axes = fit.mean, fit.axes
        p = fit.transform(z)
        explained = tuple(float(v) for v in fit.explained)
    scale = p.std(0)
    scale = np.where(scale > 1e-8, scale, 1.0)
    return Plane(origin, axes, p.mean(0), scale, "pca" if explained is not None else "raw", explained)


def icdf_axis(n: int, mean: float = 0.0, std: float = 1.0) -> np.ndarray:
    """n values with equal N(mean, std^2) probability between them: the inverse normal CDF
    at the cell midpoints (i + 1/2) / n, i = 0..n-1 (Kingma & Welling 2014, fig. 4). (n,)"""
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not std > 0:
        raise ValueError(f"std must be > 0, got {std}")
    u = (torch.arange(int(n), dtype=torch.float64) + 0.5) / int(n)
    return Normal(torch.tensor(float(mean), dtype=torch.float64),
                  torch.tensor(float(std), dtype=torch.float64)).icdf(u).numpy()


def grid_frame(plane: Plane, is_vae: bool) -> tuple[np.ndarray, np.ndarray]:
    """(center (2,), scale (2,)) of the Gaussian whose inverse CDF spaces the decoded grid.

    A VAE's raw 2-D latent uses its prior N(0, I), exactly as Kingma & Welling do. An AE
    has no prior, and a PCA plane is a slice through the codes, so there the Gaussian
    fitted to the codes in plane coordinates is used.
    """
    if is_vae and plane.kind == "raw":
        return np.zeros(2), np.ones(2)
    return np.asarray(plane.center, dtype=np.float64), np.asarray(plane.scale, dtype=np.float64)


def manifold_grid(n: int, center=(0.0, 0.0), scale=(1.0, 1.0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The K&W figure-4 grid in plane coordinates.

    Returns (u (n,), v (n,), points (n * n, 2)) where ``points`` is row-major with the top
    row at the largest v (as an image is drawn) and the first column at the smallest u.
    A VAE's raw 2-D latent uses center 0, scale 1: the prior N(0, I).
    """
    u = icdf_axis(n, center[0], scale[0])
    v = icdf_axis(n, center[1], scale[1])
    uu, vv = np.meshgrid(u, v[::-1])
    return u, v, np.stack([uu.ravel(), vv.ravel()], 1).astype(np.float32)


# ---- traversals ------------------------------------------------------------------------------

def dimension_scores(codes: Codes) -> tuple[np.ndarray, str]:
    """Per-dimension importance (K,): the average KL(q(z_j|x) || N(0, 1)) over the dataset
    for a VAE (Kingma & Welling 2014, appendix B, via core.losses.kl_per_dim), in nats,
    or the variance of the codes for an AE. Returns (scores, "kl" or "variance")."""
    if codes.logvar is not None:
        kl = _kl_per_dim(torch.from_numpy(codes.mu.astype(np.float64)), torch.from_numpy(codes.logvar.astype(np.float64)))
        return kl.mean(0).numpy(), "kl"
    return codes.mu.astype(np.float64).var(0), "variance"


def barely_active(var_mu, active, upper: float = BARELY_ACTIVE) -> list[int]:
    """Indices (0-based) of the active dimensions whose activity Var_x(mu_j) (K,) is at most
    ``upper``: active by Burda et al.'s criterion (``active`` (K,) bool, from ``core.units``),
    yet their posterior means move so little over the images that a traversal of them changes
    the decoded image little."""
    v = np.asarray(var_mu, dtype=np.float64)
    a = np.asarray(active, dtype=bool)
    if v.shape != a.shape or v.ndim != 1:
        raise ValueError(f"var_mu and active must both be (K,), got {v.shape} and {a.shape}")
    return [int(j) for j in np.flatnonzero(a & (v <= upper))]


def dim_list(dims) -> str:
    """'z6, z8 and z15' for 0-based indices [5, 7, 14] (the app labels dimensions from z1)."""
    names = [f"z{int(j) + 1}" for j in dims]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1] if names else ""


@dataclass(frozen=True)
class AggregateSpread:
    """How the codes of a dataset spread, against the prior N(0, I_K).

    ``var_mu`` (K,): Var_x(mu_j(x)), the variance of the posterior means along each dimension.
    ``var_q`` (K,): Var_x(mu_j) + E_x sigma_j^2, the variance of the aggregate posterior
    q(z) = E_x q(z|x) along each dimension (law of total variance); it is 1 for every j when
    q(z) = p(z). ``radius``: the radius that holds ``coverage`` of the prior's samples,
    sqrt(chi2_K quantile). ``beyond``: share of codes drawn from q(z) (one z ~ q(z|x) per image;
    the means themselves for an autoencoder) farther than ``radius`` from 0; ``prior_beyond`` =
    1 - coverage, the prior's share. ``n``: number of images."""

    var_mu: np.ndarray
    var_q: np.ndarray
    radius: float
    beyond: float
    prior_beyond: float
    n: int


def aggregate_spread(mu, logvar=None, coverage: float = 0.99, seed: int = 0) -> AggregateSpread:
    """Compare the codes mu (N, K) (and logvar (N, K), when given) with the prior N(0, I_K).

    If q(z) matched p(z) = N(0, I), each dimension would have variance 1 and a share
    1 - ``coverage`` of codes would lie beyond the prior's ``coverage`` radius (the norm of
    z ~ N(0, I_K) is chi-distributed with K degrees of freedom). The KL term pulls each q(z|x)
    towards the prior, but nothing in it forces q(z) = p(z) (Hoffman and Johnson, 2016). One
    code z = mu + sigma * eps per image (eps from a generator seeded by ``seed``) stands for q(z)."""
    from scipy.stats import chi2

    m = np.asarray(mu, dtype=np.float64)
    if m.ndim != 2 or len(m) < 2:
        raise ValueError(f"need codes of at least 2 images, shape (N, K); got {m.shape}")
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must be in (0, 1), got {coverage}")
    var_mu = m.var(axis=0)
    z = m
    var_q = var_mu
    if logvar is not None:
        lv = np.asarray(logvar, dtype=np.float64)
        var_q = var_mu + np.exp(lv).mean(axis=0)
        z = m + np.exp(lv / 2) * np.random.default_rng(int(seed)).standard_normal(m.shape)  # z ~ q(z|x)
    radius = float(np.sqrt(chi2.ppf(coverage, m.shape[1])))
    beyond = float(np.mean(np.linalg.norm(z, axis=1) > radius))
    return AggregateSpread(var_mu, np.asarray(var_q, dtype=np.float64), radius, beyond, float(1 - coverage), int(len(m)))


def dimension_order(scores: np.ndarray) -> np.ndarray:
    """Dimension indices sorted by score, largest first (ties: lower index first)."""
    s = np.asarray(scores, dtype=np.float64)
    return np.lexsort((np.arange(len(s)), -s)).astype(np.int64)


def traversal_frame(codes: Codes, is_vae: bool) -> tuple[np.ndarray, np.ndarray]:
    """(center (K,), spread (K,)) for traversals: the prior N(0, 1) per dimension for a VAE;
    the mean and standard deviation of the codes for an AE (which has no prior)."""
    k = codes.latent_dim
    if is_vae:
        return np.zeros(k), np.ones(k)
    sd = codes.mu.astype(np.float64).std(0)
    return codes.mu.astype(np.float64).mean(0), np.where(sd > 1e-8, sd, 1.0)


def traversal_codes(base: np.ndarray, dims, center: np.ndarray, spread: np.ndarray,
                    steps: int = 9, span: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Codes for latent traversals: for each dimension j in ``dims``, ``steps`` copies of
    ``base`` (K,) with z_j set to center_j + spread_j * t, t evenly in [-span, span].

    For a VAE use center 0 and spread 1 (the prior's +-3 sigma); for an AE the mean and
    standard deviation of its codes. Returns (codes (len(dims) * steps, K) row-major by
    dimension, t (steps,)).
    """
    base = np.asarray(base, dtype=np.float64).reshape(-1)
    dims = np.asarray(list(dims), dtype=np.int64)
    k = base.shape[0]
    if dims.size and (dims.min() < 0 or dims.max() >= k):
        raise ValueError(f"dimensions must be in 0..{k - 1}")
    if int(steps) < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    t = np.linspace(-span, span, int(steps))
    center = np.broadcast_to(np.asarray(center, dtype=np.float64), (k,))
    spread = np.broadcast_to(np.asarray(spread, dtype=np.float64), (k,))
    out = np.repeat(base[None], len(dims) * len(t), 0)
    for r, j in enumerate(dims):
        out[r * len(t):(r + 1) * len(t), j] = center[j] + spread[j] * t
    return out.astype(np.float32), t


# ---- prior samples and holes ----------------------------------------------------------------

def sample_codes(n: int, latent_dim: int, seed: int, fit_to: np.ndarray | None = None) -> np.ndarray:
    """n codes (n, K) from N(0, I), or, with ``fit_to`` (N, K), from the Gaussian with the
    mean and covariance of those codes (a small ridge keeps it positive definite)."""
    g = torch.Generator().manual_seed(int(seed))
    if fit_to is None:
        return torch.randn((int(n), int(latent_dim)), generator=g, dtype=torch.float64).numpy().astype(np.float32)
    c = np.asarray(fit_to, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != latent_dim or len(c) < 2:
        raise ValueError(f"fit_to must be (N >= 2, {latent_dim}), got {c.shape}")
    mean = torch.from_numpy(c.mean(0))
    cov = torch.from_numpy(np.atleast_2d(np.cov(c.T)))
    cov = cov + (1e-6 * float(cov.diagonal().mean()) + 1e-9) * torch.eye(latent_dim, dtype=torch.float64)
    eps = torch.randn((int(n), int(latent_dim)), generator=g, dtype=torch.float64)
    mvn = MultivariateNormal(mean, covariance_matrix=cov)
    return (mean + eps @ mvn.scale_tril.T).numpy().astype(np.float32)


@dataclass(frozen=True)
class OffManifold:
    """``fraction``: share of samples whose decoded image is farther from every decoded
    training code than ``threshold``; ``threshold``: the ``quantile`` of the distances
    between decoded training codes and their nearest other decoded training code;
    ``distances`` (n,): each sample's distance to its nearest decoded training code."""

    fraction: float
    threshold: float
    quantile: float
    distances: np.ndarray


def off_manifold(samples: np.ndarray, reference: np.ndarray, quantile: float = 0.95,
                 n_reference_queries: int = 500, max_reference: int = 2000, seed: int = 0) -> OffManifold:
    """How many decoded samples (M, D) look unlike anything the decoder makes from real codes.

    ``reference`` (N, D) are the decoded codes of the training images (at most
    ``max_reference`` of them are used, chosen with ``seed``, to bound the cost). A sample
    is "off the manifold" when its Euclidean distance (in pixel space) to the nearest
    reference image is larger than the ``quantile`` of the reference images' own
    nearest-other-neighbour distances (estimated on ``n_reference_queries`` of them). By
    construction about 1 - quantile of the reference images themselves would be flagged.
    Measured in image space, so a latent dimension the decoder ignores cannot create
    fake holes.
    """
    from sklearn.neighbors import NearestNeighbors

    ref = np.asarray(reference, dtype=np.float32)
    s = np.asarray(samples, dtype=np.float32)
    if ref.ndim != 2 or s.ndim != 2 or ref.shape[1] != s.shape[1] or len(ref) < 3:
        raise ValueError(f"samples (M, D) and reference (N >= 3, D) must agree, got {s.shape} and {ref.shape}")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    rng = np.random.default_rng(int(seed))
    if len(ref) > max_reference:
        ref = ref[np.sort(rng.choice(len(ref), size=int(max_reference), replace=False))]
    nn = NearestNeighbors(n_neighbors=2, algorithm="brute").fit(ref)
    q_idx = rng.choice(len(ref), size=min(int(n_reference_queries), len(ref)), replace=False)
    d_ref, i_ref = nn.kneighbors(ref[q_idx])
    # The nearest neighbour of a reference image is itself (distance 0) unless it has a
    # duplicate; take the nearest *other* row.
    own = i_ref[:, 0] == q_idx
    d_other = np.where(own, d_ref[:, 1], d_ref[:, 0])
    # A floor keeps a fully collapsed decoder (every output identical) from flagging everything.
    threshold = max(float(np.quantile(d_other, quantile)), 1e-3)
    d_s, _ = nn.kneighbors(s, n_neighbors=1)
    d_s = d_s[:, 0]
    return OffManifold(float(np.mean(d_s > threshold)), threshold, float(quantile), d_s)


# ---- placing new codes on a map --------------------------------------------------------------

def place_by_neighbours(codes: np.ndarray, xy: np.ndarray, new_codes: np.ndarray, k: int = 10) -> np.ndarray:
    """Approximate map positions (M, 2) for new codes (M, K): the median map position of
    each one's k nearest codes, which is how openTSNE initialises ``transform`` before it
    optimises. Used when the t-SNE embedding object is not at hand."""
    from sklearn.neighbors import NearestNeighbors

    codes = np.asarray(codes, dtype=np.float64)
    k = max(1, min(int(k), len(codes)))
    nn = NearestNeighbors(n_neighbors=k).fit(codes)
    _, idx = nn.kneighbors(np.asarray(new_codes, dtype=np.float64).reshape(-1, codes.shape[1]))
    return np.median(np.asarray(xy, dtype=np.float64)[idx], axis=1).astype(np.float32)


# ---- chart selections --------------------------------------------------------------------

def _as_sequence(value):
    """Plotly sends a row of 2-D ``customdata`` as a list, or (for typed arrays) as a dict
    {"0": a, "1": b}; return a list in both cases, anything else unchanged."""
    if isinstance(value, dict) and value and all(str(k).isdigit() for k in value):
        return [value[k] for k in sorted(value, key=int)]
    return value


def _first_number(value):
    value = _as_sequence(value)
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if isinstance(value, bool) or value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def selected_indices(points, n: int) -> list[int]:
    """Dataset indices from a Plotly selection (Streamlit's ``event.selection.points``):
    each point's ``customdata`` (a number, or a list whose first item is the index).
    Points without a valid whole-number index in 0..n-1 (paths, grid cells) are ignored;
    order is kept, duplicates dropped."""
    out: list[int] = []
    for p in points or ():
        if not isinstance(p, dict):
            continue
        v = _first_number(p.get("customdata"))
        if v is None or v != int(v) or not 0 <= int(v) < n:
            continue
        if int(v) not in out:
            out.append(int(v))
    return out


def selected_grid_point(points) -> tuple[float, float] | None:
    """The (u, v) code of the first selected grid cell (``customdata`` = [u, v] or
    {"0": u, "1": v}), or None."""
    for p in points or ():
        cd = _as_sequence(p.get("customdata")) if isinstance(p, dict) else None
        if isinstance(cd, (list, tuple)) and len(cd) == 2:
            u, v = _first_number(cd[0]), _first_number(cd[1])
            if u is not None and v is not None:
                return u, v
    return None


# ---- export ----------------------------------------------------------------------------------

def coordinates_table(index: np.ndarray, labels: np.ndarray, xy: np.ndarray, codes: np.ndarray,
                      map_name: str) -> dict[str, list]:
    """Columns for a CSV: index, label, the map's x and y, then every code coordinate z1..zK."""
    index, labels = np.asarray(index), np.asarray(labels)
    xy, codes = np.asarray(xy, dtype=np.float64), np.asarray(codes, dtype=np.float64)
    n = len(index)
    if not (len(labels) == len(xy) == len(codes) == n) or xy.shape[1:] != (2,):
        raise ValueError("index, labels, xy (N, 2) and codes (N, K) must have the same N")
    cols: dict[str, list] = {"index": index.astype(int).tolist(), "label": labels.astype(int).tolist(),
                             f"{map_name}_x": np.round(xy[:, 0], 6).tolist(),
                             f"{map_name}_y": np.round(xy[:, 1], 6).tolist()}
    for j in range(codes.shape[1]):
        cols[f"z{j + 1}"] = np.round(codes[:, j], 6).tolist()
    return cols


# ---- t-SNE in the background, shared by every viewer -----------------------------------------

class TsneJob:
    """One t-SNE run (``core.embed.tsne_fit``) in a background thread, readable from any thread.

    Pages poll ``iteration``, ``total`` and ``layout`` (the latest (N, 2) layout, starting
    with the PCA initialisation) to draw the map as it forms, and call ``heartbeat()``
    while someone is watching. If nobody has called ``heartbeat()`` for ``lease`` seconds,
    the run stops at its next progress callback (``status`` "abandoned"), so no thread
    outlives the sessions that wanted it. ``slots`` (a semaphore shared by all jobs) limits
    how many runs use the CPU at once; a job waits for a slot with status "queued".
    """

    def __init__(self, latents: np.ndarray, seed: int, perplexity: float, n_iter: int,
                 early_exaggeration_iter: int = 250, every: int = 25, lease: float = 20.0,
                 slots: threading.Semaphore | None = None, clock=time.monotonic):
        self.latents = np.ascontiguousarray(latents, dtype=np.float32)
        self.seed, self.perplexity, self.n_iter = int(seed), float(perplexity), int(n_iter)
        self.early = int(early_exaggeration_iter)
        self.total = self.early + self.n_iter
        self.every = int(every)
        self.lease = float(lease)
        self.slots = slots
        self._clock = clock
        self._lock = threading.Lock()
        self._beat = clock()
        self.iteration = 0
        self.status = "new"  # new, queued, running, done, failed, abandoned
        self.error: str | None = None
        self._layout: np.ndarray | None = None
        self.result: tuple[np.ndarray, object] | None = None  # (layout (N, 2), openTSNE embedding)
        self._thread: threading.Thread | None = None
        self._stop_requested = False
        self.updates = 0  # layouts published so far (the initial one, then one per ``every`` iterations)
        self.finished_at: float | None = None  # clock() when the run ended (done, failed or abandoned)

    # -- called by pages --
    def start(self) -> "TsneJob":
        import core.embed  # noqa: F401  (import openTSNE here, not in the thread: see below)
        import openTSNE  # noqa: F401

        with self._lock:
            if self._thread is not None:
                return self
            self.status = "queued"
            # A daemon thread: a run nobody waits for must not keep the process alive at exit.
            # Every import it needs has happened above, so exiting cannot interrupt an import.
            self._thread = threading.Thread(target=self._run, name="latent-lab-tsne", daemon=True)
        self._thread.start()
        return self

    def heartbeat(self) -> None:
        with self._lock:
            self._beat = self._clock()

    @property
    def layout(self) -> np.ndarray | None:
        with self._lock:
            return None if self._layout is None else self._layout.copy()

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "abandoned")

    @property
    def progress(self) -> float:
        return min(1.0, self.iteration / max(1, self.total))

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the worker --
    def _abandoned(self) -> bool:
        with self._lock:
            return self._clock() - self._beat > self.lease

    def _callback(self, iteration: int, layout: np.ndarray):
        with self._lock:
            self.iteration = int(iteration)
            self._layout = layout
            self.updates += 1
        if self._abandoned():
            self._stop_requested = True
        return self._stop_requested

    def _run(self) -> None:
        from core.embed import tsne_fit

        acquired = False
        try:
            if self.slots is not None:
                while not (acquired := self.slots.acquire(timeout=0.25)):
                    if self._abandoned():
                        self.status = "abandoned"
                        return
            self.status = "running"
            layout, emb = tsne_fit(self.latents, seed=self.seed, perplexity=self.perplexity,
                                   callback=self._callback, n_iter=self.n_iter,
                                   early_exaggeration_iter=self.early, callbacks_every_iters=self.every)
            if self._stop_requested or emb is None:
                self.status = "abandoned"
                return
            with self._lock:
                self.result = (layout, emb)
                self._layout = layout
                self.iteration = self.total
            self.status = "done"
        except Exception as exc:  # reported to the page, which shows it with st.error
            self.error = f"{type(exc).__name__}: {exc}"
            self.status = "failed"
        finally:
            self.finished_at = self._clock()
            if acquired:
                self.slots.release()


class TsneJobs:
    """A registry of :class:`TsneJob` by key, shared by all sessions: one run per key, at
    most ``max_running`` running at once. A finished run (done or failed) is kept for the next
    viewer of the same key (a failure would only repeat itself), within bounds whether or not a
    page ever collects it: at most ``max_done`` finished runs (the oldest go first), none kept
    longer than ``max_age_s`` seconds after it ended. Abandoned runs go at once. Eviction happens
    on every call; a run in progress is never evicted."""

    def __init__(self, max_running: int = 1, lease: float = 20.0, max_done: int = 8,
                 max_age_s: float = 600.0, clock=time.monotonic):
        self._jobs: dict = {}
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(max(1, int(max_running)))
        self.lease = float(lease)
        self.max_done = max(0, int(max_done))
        self.max_age_s = float(max_age_s)
        self._clock = clock

    def get(self, key) -> TsneJob | None:
        with self._lock:
            self._evict_locked()
            return self._jobs.get(key)

    def get_or_start(self, key, latents: np.ndarray, seed: int, perplexity: float, n_iter: int) -> TsneJob:
        with self._lock:
            self._evict_locked(keep=key)
            job = self._jobs.get(key)
            if job is None or job.status == "abandoned":
                job = TsneJob(latents, seed, perplexity, n_iter, lease=self.lease, slots=self._slots,
                              clock=self._clock)
                self._jobs[key] = job
        job.heartbeat()
        return job.start()

    def discard(self, key) -> None:
        with self._lock:
            self._jobs.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            self._evict_locked()
            return len(self._jobs)

    def _evict_locked(self, keep=None) -> None:
        """Drop abandoned runs (but ``keep``'s, which is about to be replaced), finished runs older
        than ``max_age_s``, then the oldest finished runs beyond ``max_done``."""
        now = self._clock()
        ended = []
        for k, j in list(self._jobs.items()):
            if j.status == "abandoned" and k != keep:
                del self._jobs[k]  # nobody wanted it: free its latents
            elif j.status in ("done", "failed") and j.finished_at is not None:
                if now - j.finished_at > self.max_age_s:
                    del self._jobs[k]
                else:
                    ended.append((j.finished_at, k))
        ended.sort(key=lambda e: e[0])
        for _, k in ended[:max(0, len(ended) - self.max_done)]:
            del self._jobs[k]
