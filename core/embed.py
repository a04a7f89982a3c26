"""2-D maps of latent codes: PCA and t-SNE (via openTSNE), plus a quality score.

* PCA (Pearson 1901; Hotelling 1933; scikit-learn's exact SVD): a linear projection onto the
  directions of largest variance. Fast and deterministic, preserves global geometry, blurs local
  clusters. :func:`pca` is the one PCA of the latent maps (``core.explore.latent_plane`` uses it).
* t-SNE (van der Maaten & Hinton, JMLR 2008) with openTSNE (Poličar, Stražar & Zupan,
  J. Stat. Softw. 2024): nonlinear, keeps local neighbourhoods, distorts global
  distances. Here openTSNE uses exact nearest neighbours (N <= 10,000; Annoy above) for
  the affinities and Barnes-Hut (N < 10,000, theta 0.8) or FFT-accelerated interpolation
  (larger N) for the gradient, on the cores that are idle.
* Trustworthiness (Venna & Kaski 2001; ``sklearn.manifold.trustworthiness``): in [0, 1],
  how much the k nearest neighbours in the map were also near in the original space.

The optimisation is run in openTSNE's two phases (as ``openTSNE.TSNE.fit`` does):
``early_exaggeration_iter`` steps with exaggeration 12, then ``n_iter`` normal steps.
Progress callbacks receive the number of gradient steps done across both phases.

No Streamlit here; pages cache results with ``st.cache_data``.
"""

from __future__ import annotations

import math
import numbers
import os
import time
from typing import Callable, NamedTuple, Optional

import numpy as np

__all__ = ["METHODS", "PCAFit", "pca", "embed_2d", "tsne_fit", "tsne_transform", "trustworthiness"]

METHODS = ("tsne", "pca")
MIN_POINTS = 5

#: callback(iteration, layout) with layout a float32 (N, 2) copy. Return True to stop early.
Callback = Callable[[int, np.ndarray], Optional[bool]]


class PCAFit(NamedTuple):
    """A fitted PCA: ``mean`` (D,), ``axes`` (k, D) orthonormal rows, ``explained`` (k,) each axis's
    share of the total variance. Each axis is flipped so that its largest loading is positive,
    which makes maps independent of the SVD's arbitrary signs."""

    mean: np.ndarray
    axes: np.ndarray
    explained: np.ndarray

    def transform(self, x) -> np.ndarray:
        """Coordinates of x (N, D) along the axes -> (N, k) float64."""
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.axes.T


def pca(x, n_components: int = 2) -> PCAFit:
    """Principal component analysis of x (N, D) with scikit-learn's exact (full) SVD, with the sign
    convention of :class:`PCAFit`. Needs N >= 2 and n_components <= min(N, D)."""
    from sklearn.decomposition import PCA

    x = np.asarray(x, dtype=np.float64)
    fit = PCA(n_components=int(n_components), svd_solver="full").fit(x)
    axes = fit.components_.copy()
    flip = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(1)])
    axes *= np.where(flip == 0, 1.0, flip)[:, None]
    return PCAFit(fit.mean_.copy(), axes, np.asarray(fit.explained_variance_ratio_, dtype=np.float64))


#: Barnes-Hut accuracy (openTSNE's and sklearn's default is 0.5). On 5,000 latents 0.8 is 1.6x
#: faster and gives the same trustworthiness to three decimals (0.992, k=10; measured).
BH_THETA = 0.8


def _cpu_times() -> tuple[float, float]:
    """(idle, total) jiffies of all CPUs since boot, from Linux's /proc/stat."""
    with open("/proc/stat") as f:
        fields = [float(v) for v in f.readline().split()[1:]]
    return fields[3] + fields[4], sum(fields)  # idle + iowait


def idle_cores(window: float = 0.05) -> float:
    """How many cores other processes left idle during the last ``window`` seconds (Linux: this
    process's own use, such as BLAS threads still spinning after the encoder ran, counts as idle,
    since t-SNE takes it over); elsewhere, the cores minus the 1-minute load average."""
    cores = os.cpu_count() or 1
    try:
        (i0, t0), p0, w0 = _cpu_times(), time.process_time(), time.perf_counter()
        time.sleep(window)
        (i1, t1), p1, w1 = _cpu_times(), time.process_time(), time.perf_counter()
        if t1 <= t0:
            return float(cores)
        return min(float(cores), cores * (i1 - i0) / (t1 - t0) + (p1 - p0) / (w1 - w0))
    except (OSError, ValueError, IndexError):
        try:
            return cores - os.getloadavg()[0]
        except OSError:  # no load average on this platform
            return 1.0


def default_n_jobs() -> int:
    """Threads for openTSNE: the cores that are idle now (rounded), at least 1.

    Measured on the 2-core target (5,000 latents, Barnes-Hut): on an idle machine 2 threads take
    8.3 s and 1 thread 13.3 s; but with the other core busy, 2 threads were up to 8x slower than 1
    (1,000 digits: 24.7 s against 3.2 s), because each iteration waits for its slowest thread.
    """
    return max(1, int(idle_cores() + 0.5))



def _check_latents(latents, name: str = "latents", min_points: int = MIN_POINTS) -> np.ndarray:
    """Return ``latents`` as a C-contiguous float64 (N, D) array, or raise ValueError."""
    try:
        x = np.asarray(latents, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric 2-D array, got {type(latents).__name__}") from exc
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (N, D), got shape {x.shape}")
    if x.shape[0] < min_points:
        raise ValueError(f"{name} needs at least {min_points} points, got {x.shape[0]}")
    if x.shape[1] < 1:
        raise ValueError(f"{name} needs at least one dimension, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if x.shape[1] == 1:  # a 1-D latent space: a zero column keeps distances unchanged
        x = np.hstack([x, np.zeros_like(x)])
    return np.ascontiguousarray(x)


def _check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_perplexity(perplexity) -> float:
    if isinstance(perplexity, bool) or not isinstance(perplexity, numbers.Real):
        raise ValueError(f"perplexity must be a number > 0, got {perplexity!r}")
    p = float(perplexity)
    if not math.isfinite(p) or p <= 0:
        raise ValueError(f"perplexity must be a finite number > 0, got {p}")
    return p


def _check_callback(callback) -> Optional[Callback]:
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be callable or None, got {type(callback).__name__}")
    return callback


class _StopOptimization(Exception):
    """Raised inside the t-SNE objective when the progress callback asks to stop."""


def _all_identical(x: np.ndarray) -> bool:
    return bool(np.all(x == x[0]))


def effective_perplexity(perplexity: float, n: int) -> float:
    """Perplexity actually used: min(perplexity, (N - 1) / 3), since t-SNE needs about
    3 x perplexity neighbours per point."""
    return min(_check_perplexity(perplexity), (n - 1) / 3.0)


def tsne_fit(
    latents,
    seed: int = 0,
    perplexity: float = 30,
    callback: Optional[Callback] = None,
    n_iter: int = 500,
    early_exaggeration_iter: int = 250,
    callbacks_every_iters: int = 25,
    n_jobs: Optional[int] = None,
):
    """Run openTSNE and return ``(layout, embedding)``.

    Parameters
    ----------
    latents : array_like, shape (N, D)
        Finite values, N >= 5. D = 1 is padded with a zero column.
    seed : int
        ``random_state`` for the PCA initialisation and the Annoy index; the same seed
        gives the same layout.
    perplexity : float > 0
        Clipped to (N - 1) / 3 for small N.
    callback : callable(iteration, layout) or None
        Called with iteration 0 and the initial (PCA) layout right away, before the
        neighbour search, so a page can draw a first map at once; then after every
        ``callbacks_every_iters`` gradient steps (and at the end of each phase) with a
        float32 (N, 2) copy of the current layout. ``iteration`` counts the steps done
        across both phases, so the last call is (early_exaggeration_iter + n_iter,
        final layout).
        If it returns True the optimisation stops and the current layout is returned
        (with ``embedding`` None if it stopped at iteration 0).
    n_iter : int >= 1
        Iterations of the main (non-exaggerated) phase.
    early_exaggeration_iter : int >= 0
        Iterations of the early-exaggeration phase (exaggeration 12).
    n_jobs : int or None
        Threads for openTSNE; default :func:`default_n_jobs` (the idle cores).

    Returns
    -------
    layout : np.ndarray, float32, shape (N, 2)
    embedding : openTSNE.TSNEEmbedding
        Keep it to place new points with :func:`tsne_transform`.
    """
    from openTSNE import TSNE
    from openTSNE import initialization as tsne_init
    from openTSNE.tsne import kl_divergence_bh, kl_divergence_fft

    x = _check_latents(latents)
    perp = effective_perplexity(perplexity, x.shape[0])
    n_iter = _check_positive_int(n_iter, "n_iter")
    early_exaggeration_iter = _check_positive_int(early_exaggeration_iter, "early_exaggeration_iter", 0)
    every = _check_positive_int(callbacks_every_iters, "callbacks_every_iters")
    callback = _check_callback(callback)
    n_jobs = None if n_jobs is None else _check_positive_int(n_jobs, "n_jobs")
    seed = int(seed)
    if _all_identical(x):
        raise ValueError(
            f"all {x.shape[0]} latent points are identical (a collapsed latent space?); "
            "t-SNE cannot spread them out. Use PCA, which maps them to one point."
        )

    # The PCA initialisation openTSNE would compute itself (scaled to std 1e-4);
    # computing it first lets the caller see a layout before the slow kNN search.
    init = tsne_init.pca(x, 2, random_state=seed)
    if callback is not None and callback(0, init.astype(np.float32, copy=True)):
        return init.astype(np.float32, copy=True), None
    if n_jobs is None:  # measured only now: the probe sleeps 50 ms, after the first map is shown
        n_jobs = default_n_jobs()

    # Barnes-Hut below 10,000 points, FFT interpolation above (openTSNE's "auto" rule).
    gradient_name = "bh" if x.shape[0] < 10_000 else "fft"
    total = early_exaggeration_iter + n_iter
    progress = {"offset": 0, "calls": 0, "last": 0}

    def objective_with_progress(embedding, P, **kwargs):
        # openTSNE evaluates the objective once per iteration *before* that iteration's
        # update, plus once after the last update of a phase. So at call c of a phase
        # the layout has had exactly offset + c steps: report it every `every` steps.
        done = progress["offset"] + progress["calls"]
        progress["calls"] += 1
        if done > progress["last"] and (done % every == 0 or done == total):
            progress["last"] = done
            if callback(done, np.array(embedding, dtype=np.float32)):
                raise _StopOptimization
        base = kl_divergence_bh if gradient_name == "bh" else kl_divergence_fft
        return base(embedding, P, **kwargs)

    tsne = TSNE(
        n_components=2,
        perplexity=perp,
        n_iter=n_iter,
        early_exaggeration_iter=early_exaggeration_iter,
        initialization=init,
        # Exact neighbours up to 10,000 points: on latent codes (at most 64 dimensions) a tree search
        # is both exact and faster than Annoy (5,000 x 16-D: 0.16 s against 1.5 s, measured).
        neighbors="exact" if x.shape[0] <= 10_000 else "annoy",
        theta=BH_THETA,
        negative_gradient_method=objective_with_progress if callback is not None else gradient_name,
        n_jobs=n_jobs,
        random_state=seed,
        verbose=False,
    )
    embedding = tsne.prepare_initial(x)
    # The same two phases as openTSNE.TSNE.fit; the optimiser state (gains, momentum
    # buffer) lives on the embedding, so splitting the phases changes nothing.
    phases = [(early_exaggeration_iter, tsne.early_exaggeration, tsne.initial_momentum)]
    phases.append((n_iter, tsne.exaggeration, tsne.final_momentum))
    try:
        for length, exaggeration, momentum in phases:
            if length == 0:
                continue
            progress["calls"] = 0
            try:
                embedding.optimize(
                    n_iter=length, exaggeration=exaggeration, momentum=momentum, inplace=True
                )
            except _StopOptimization:
                if exaggeration not in (None, 1):  # openTSNE scaled P in place: undo it
                    embedding.affinities.P.data /= exaggeration
                raise
            progress["offset"] += length
    except _StopOptimization:
        pass
    finally:
        # Plain method name from here on: transform() must not fire the callback, and
        # the embedding stays picklable (e.g. for st.cache_data).
        embedding.gradient_descent_params["negative_gradient_method"] = gradient_name
    return np.array(embedding, dtype=np.float32), embedding


def tsne_transform(embedding, new_latents) -> np.ndarray:
    """Place new points into an existing t-SNE map (openTSNE ``TSNEEmbedding.transform``).

    Each new point starts at the median position of its nearest reference points and
    is optimised against the fixed reference map (perplexity 5, 250 iterations:
    openTSNE's defaults). Used to draw e.g. a latent interpolation path on a t-SNE map.

    Parameters
    ----------
    embedding : openTSNE.TSNEEmbedding
        The second return value of :func:`tsne_fit`.
    new_latents : array_like, shape (M, D)
        Same D as the latents the map was made from; M >= 1.

    Returns
    -------
    np.ndarray, float32, shape (M, 2)
    """
    from openTSNE import TSNEEmbedding

    if not isinstance(embedding, TSNEEmbedding):
        raise ValueError(
            f"embedding must be the TSNEEmbedding returned by tsne_fit, got {type(embedding).__name__}"
        )
    x = _check_latents(new_latents, "new_latents", min_points=1)
    ref = getattr(getattr(embedding.affinities, "knn_index", None), "data", None)
    if ref is not None and ref.shape[1] != x.shape[1]:
        raise ValueError(
            f"new_latents has {x.shape[1]} dimensions but the map was built from {ref.shape[1]}"
        )
    return np.array(embedding.transform(x), dtype=np.float32)


def embed_2d(
    latents,
    method: str,
    seed: int = 0,
    perplexity: float = 30,
    callback: Optional[Callback] = None,
    n_iter: int = 500,
) -> np.ndarray:
    """Map latent codes to 2-D for plotting.

    Parameters
    ----------
    latents : array_like, shape (N, D)
        Finite values, N >= 5 (D = 1 is padded with a zero column).
    method : {"tsne", "pca"}
    seed : int
        Same seed, same layout.
    perplexity : float > 0
        t-SNE only; clipped to (N - 1) / 3.
    callback : callable(iteration, layout) or None
        t-SNE: intermediate float32 (N, 2) layouts (see :func:`tsne_fit`), starting with
        the initial layout at iteration 0. PCA: called once, with the final layout.
    n_iter : int
        t-SNE main-phase iterations (after 250 early-exaggeration iterations).

    Returns
    -------
    np.ndarray, float32, shape (N, 2)

    Raises
    ------
    ValueError
        Unknown method, latents not a finite 2-D array with N >= 5, perplexity <= 0,
        a non-callable callback, or (t-SNE only) all points identical.
        PCA maps identical points to the origin.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    x = _check_latents(latents)
    _check_perplexity(perplexity)
    callback = _check_callback(callback)
    if method == "tsne":
        layout, _ = tsne_fit(x, seed=seed, perplexity=perplexity, callback=callback, n_iter=n_iter)
        return layout

    if _all_identical(x):  # e.g. full posterior collapse: every code is the same point
        layout = np.zeros((x.shape[0], 2), dtype=np.float32)
    else:
        layout = pca(x, 2).transform(x).astype(np.float32)
    if callback is not None:
        callback(0, layout.copy())
    return layout


def trustworthiness(x, y, k: int = 10) -> float:
    """Trustworthiness of map ``y`` (N, 2) for data ``x`` (N, D), k nearest neighbours.

    Thin wrapper over ``sklearn.manifold.trustworthiness`` (Venna & Kaski 2001):
    1 means every map neighbour is also a neighbour in ``x``. Requires k < N / 2.
    """
    from sklearn.manifold import trustworthiness as _tw

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must be 2-D with the same number of rows, got {x.shape} and {y.shape}")
    k = _check_positive_int(k, "k")
    if k >= x.shape[0] / 2:
        raise ValueError(f"k must be < N / 2 = {x.shape[0] / 2:g}, got {k}")
    return float(_tw(x, y, n_neighbors=k))
