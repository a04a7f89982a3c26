"""Kullback-Leibler divergence: closed forms, Monte Carlo estimates and a fitting demo.

Everything here is NumPy (plus PyTorch autograd in :func:`fit_gaussian_to_mixture`)
and is pure: no Streamlit, no I/O, no global RNG state.

Definitions used throughout (natural logarithms, so KL is measured in nats)::

    KL(p || q) = E_{x~p}[ log p(x) - log q(x) ] = ∫ p(x) log(p(x) / q(x)) dx  >= 0

KL is *not* symmetric: KL(p||q) != KL(q||p) in general. That asymmetry is why
fitting q by forward KL(p||q) covers all the modes of p (one optimum: moment matching),
while reverse KL(q||p) (the direction a VAE's ELBO uses for the approximate posterior) has
several local optima for a two-mode p: a mode-seeking fit at each mode, and a wide symmetric
fit between them. Which one a fit reaches depends on where it starts
(:func:`reverse_fit_outcome` says which).

References
----------
* Univariate and multivariate normals: Kullback & Leibler (1951); the closed forms
  are listed at https://en.wikipedia.org/wiki/Kullback%E2%80%93Leibler_divergence
  (section "Multivariate normal distributions", whose k = 1 case is :func:`kl_normal`).
* VAE KL term: Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014,
  Appendix B.
* Mode seeking vs mode covering: Bishop, *Pattern Recognition and Machine Learning*
  (2006), section 10.1.2 and Figure 10.3 (reverse KL: "a number of local minima").
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np

__all__ = [
    "normal_pdf",
    "normal_logpdf",
    "kl_normal",
    "kl_mvn",
    "kl_monte_carlo",
    "kl_mc_convergence",
    "kl_integrand",
    "kl_to_standard_normal",
    "mixture_pdf",
    "fit_gaussian_to_mixture",
]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


# --------------------------------------------------------------------------- helpers
def _as_float_array(value, name: str) -> np.ndarray:
    """Convert ``value`` to a float64 array and check every entry is finite."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number or an array of numbers, got {value!r}") from exc
    if not np.all(np.isfinite(arr)):
        bad = arr[~np.isfinite(arr)].flat[0]
        raise ValueError(f"{name} must be finite, got {bad:g}")
    return arr


def _as_sigma(value, name: str) -> np.ndarray:
    """Like :func:`_as_float_array` and additionally require every entry > 0."""
    arr = _as_float_array(value, name)
    if np.any(arr <= 0):
        bad = arr[arr <= 0].flat[0]
        raise ValueError(f"{name} must be > 0, got {bad:g}")
    return arr


def _scalar_or_array(arr: np.ndarray):
    """Return a Python float for 0-d results and the ndarray otherwise."""
    return float(arr) if np.ndim(arr) == 0 else arr


def _check_n(n, name: str = "n", minimum: int = 2) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}")
    if n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n}")
    return int(n)


def _check_scalar(value, name: str) -> float:
    arr = _as_float_array(value, name)
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a single number, got shape {arr.shape}")
    return float(arr)


# --------------------------------------------------------------------------- densities
def normal_logpdf(x, mu, sigma):
    """log N(x; mu, sigma^2) = -log(sigma) - log(2 pi)/2 - (x - mu)^2 / (2 sigma^2).

    Broadcasts over numpy arrays; returns a float for scalar inputs.
    """
    x = _as_float_array(x, "x")
    mu = _as_float_array(mu, "mu")
    sigma = _as_sigma(sigma, "sigma")
    out = -np.log(sigma) - _LOG_SQRT_2PI - (x - mu) ** 2 / (2.0 * sigma**2)
    return _scalar_or_array(out)


def normal_pdf(x, mu, sigma):
    """Density of N(mu, sigma^2) at ``x``: exp(-(x-mu)^2 / (2 sigma^2)) / (sigma sqrt(2 pi)).

    Broadcasts over numpy arrays (e.g. ``x`` a grid of shape (G,)); returns a float for
    scalar inputs. ``sigma <= 0`` raises ValueError.
    """
    return _scalar_or_array(np.exp(np.asarray(normal_logpdf(x, mu, sigma))))


# --------------------------------------------------------------------------- closed forms
def kl_normal(mu_p, sigma_p, mu_q, sigma_q):
    """Closed-form KL(p || q) for univariate normals p = N(mu_p, sigma_p^2), q = N(mu_q, sigma_q^2).

    Formula (in nats)::

        KL(p || q) = log(sigma_q / sigma_p) + (sigma_p^2 + (mu_p - mu_q)^2) / (2 sigma_q^2) - 1/2

    All four arguments broadcast against each other with NumPy rules, so e.g. ``mu_p`` of
    shape (N, 1) and ``mu_q`` of shape (M,) give an (N, M) result. Returns a Python float
    when every input is a scalar, otherwise an ndarray of the broadcast shape.

    Raises
    ------
    ValueError
        If any input is not finite, or a sigma is <= 0 (message e.g.
        ``"sigma_p must be > 0, got -1"``), or the shapes do not broadcast.
    """
    mu_p = _as_float_array(mu_p, "mu_p")
    sigma_p = _as_sigma(sigma_p, "sigma_p")
    mu_q = _as_float_array(mu_q, "mu_q")
    sigma_q = _as_sigma(sigma_q, "sigma_q")
    try:
        np.broadcast_shapes(mu_p.shape, sigma_p.shape, mu_q.shape, sigma_q.shape)
    except ValueError as exc:
        raise ValueError(
            "kl_normal inputs do not broadcast: shapes "
            f"{mu_p.shape}, {sigma_p.shape}, {mu_q.shape}, {sigma_q.shape}"
        ) from exc
    kl = (
        np.log(sigma_q / sigma_p)
        + (sigma_p**2 + (mu_p - mu_q) ** 2) / (2.0 * sigma_q**2)
        - 0.5
    )
    return _scalar_or_array(kl)


def _check_mvn(mu, cov, name_mu: str, name_cov: str) -> tuple[np.ndarray, np.ndarray]:
    mu = _as_float_array(mu, name_mu)
    cov = _as_float_array(cov, name_cov)
    if mu.ndim == 0:
        mu = mu.reshape(1)
    if mu.ndim != 1:
        raise ValueError(f"{name_mu} must be a vector of shape (k,), got shape {mu.shape}")
    if cov.ndim == 0 and mu.shape[0] == 1:
        cov = cov.reshape(1, 1)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"{name_cov} must be a square (k, k) matrix, got shape {cov.shape}")
    if cov.shape[0] != mu.shape[0]:
        raise ValueError(
            f"{name_cov} has shape {cov.shape} but {name_mu} has length {mu.shape[0]}"
        )
    scale = max(1.0, float(np.max(np.abs(cov))))
    if not np.allclose(cov, cov.T, rtol=1e-8, atol=1e-10 * scale):
        raise ValueError(f"{name_cov} must be symmetric")
    return mu, cov


def _cholesky(cov: np.ndarray, name: str) -> np.ndarray:
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError as exc:
        raise ValueError(f"{name} is not positive definite") from exc


def kl_mvn(mu0, cov0, mu1, cov1) -> float:
    """KL(N0 || N1) between k-dimensional Gaussians N0 = N(mu0, S0), N1 = N(mu1, S1).

    Formula::

        KL = 1/2 [ tr(S1^-1 S0) + (mu1 - mu0)^T S1^-1 (mu1 - mu0) - k + ln(det S1 / det S0) ]

    Computed stably with Cholesky factors S = L L^T (no explicit inverse or determinant):

    * tr(S1^-1 S0)          = || L1^-1 L0 ||_F^2
    * Mahalanobis term      = || L1^-1 (mu1 - mu0) ||^2
    * ln det S              = 2 sum_i ln L_ii

    Parameters
    ----------
    mu0, mu1 : array_like, shape (k,)
    cov0, cov1 : array_like, shape (k, k)
        Symmetric positive-definite covariance matrices. For k = 1 a scalar
        variance is accepted too.

    Returns
    -------
    float
        The divergence in nats. Round-off below zero (e.g. for identical
        distributions) is clipped to 0, since KL >= 0.

    Raises
    ------
    ValueError
        Non-finite input, wrong shapes (not square, k mismatch), a non-symmetric matrix,
        or a covariance that is not positive definite (``"cov0 is not positive definite"``).
    """
    mu0, cov0 = _check_mvn(mu0, cov0, "mu0", "cov0")
    mu1, cov1 = _check_mvn(mu1, cov1, "mu1", "cov1")
    if mu0.shape != mu1.shape:
        raise ValueError(f"mu0 and mu1 must have the same length, got {mu0.shape[0]} and {mu1.shape[0]}")
    k = mu0.shape[0]
    l0 = _cholesky(cov0, "cov0")
    l1 = _cholesky(cov1, "cov1")
    # L1^-1 L0 and L1^-1 (mu1 - mu0) via a (triangular) linear solve.
    m = np.linalg.solve(l1, l0)
    d = np.linalg.solve(l1, mu1 - mu0)
    trace_term = float(np.sum(m * m))
    maha_term = float(d @ d)
    logdet_term = 2.0 * float(np.sum(np.log(np.diag(l1))) - np.sum(np.log(np.diag(l0))))
    kl = 0.5 * (trace_term + maha_term - k + logdet_term)
    return max(kl, 0.0)


# --------------------------------------------------------------------------- Monte Carlo
def _log_ratio(x: np.ndarray, mu_p: float, sigma_p: float, mu_q: float, sigma_q: float) -> np.ndarray:
    """log p(x) - log q(x) for p = N(mu_p, sigma_p^2), q = N(mu_q, sigma_q^2)."""
    return (
        math.log(sigma_q / sigma_p)
        - (x - mu_p) ** 2 / (2.0 * sigma_p**2)
        + (x - mu_q) ** 2 / (2.0 * sigma_q**2)
    )


def _check_mc_params(mu_p, sigma_p, mu_q, sigma_q) -> tuple[float, float, float, float]:
    mu_p = _check_scalar(mu_p, "mu_p")
    mu_q = _check_scalar(mu_q, "mu_q")
    sigma_p = _check_scalar(sigma_p, "sigma_p")
    sigma_q = _check_scalar(sigma_q, "sigma_q")
    _as_sigma(sigma_p, "sigma_p")
    _as_sigma(sigma_q, "sigma_q")
    return mu_p, sigma_p, mu_q, sigma_q


def kl_monte_carlo(mu_p, sigma_p, mu_q, sigma_q, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Monte Carlo estimate of KL(p || q) for univariate normals, with its standard error.

    Draws x_1..x_n ~ p with ``np.random.default_rng(seed)`` and averages the log ratio::

        KL_hat = (1/n) sum_i [ log p(x_i) - log q(x_i) ],   stderr = std(ddof=1) / sqrt(n)

    The estimate is unbiased; by the CLT it lies within a few stderr of :func:`kl_normal`.
    Note a single term can be negative (p(x_i) < q(x_i)) even though KL >= 0.

    Parameters are scalars; ``n`` must be an int >= 2. Returns ``(estimate, stderr)``
    as Python floats. The draws are the first ``n`` of the stream used by
    :func:`kl_mc_convergence` with the same seed.
    """
    mu_p, sigma_p, mu_q, sigma_q = _check_mc_params(mu_p, sigma_p, mu_q, sigma_q)
    n = _check_n(n)
    rng = np.random.default_rng(seed)
    x = rng.normal(mu_p, sigma_p, size=n)
    r = _log_ratio(x, mu_p, sigma_p, mu_q, sigma_q)
    return float(r.mean()), float(r.std(ddof=1) / math.sqrt(n))


def kl_mc_convergence(
    mu_p,
    sigma_p,
    mu_q,
    sigma_q,
    ns: Sequence[int] | None = None,
    seed: int = 0,
) -> dict:
    """Running Monte Carlo estimates of KL(p || q) for growing sample sizes.

    One stream of ``max(ns)`` draws from p is taken (``np.random.default_rng(seed)``);
    the estimate for each n uses its first n draws (a cumulative mean), so the curve
    shows one estimator converging rather than independent reruns. The stderr band
    shrinks like 1/sqrt(n).

    Parameters
    ----------
    ns : sequence of int, each >= 2
        Sample sizes to report (any order; results follow the given order). Default:
        40 log-spaced sizes from 2 to 10,000.

    Returns
    -------
    dict
        ``n``: int ndarray (len(ns),); ``estimate`` and ``stderr``: float ndarrays
        (len(ns),). ``estimate[i]`` equals ``kl_monte_carlo(..., n=ns[i], seed)[0]``
        (up to float round-off).
    """
    mu_p, sigma_p, mu_q, sigma_q = _check_mc_params(mu_p, sigma_p, mu_q, sigma_q)
    if ns is None:
        ns = np.unique(np.round(np.logspace(math.log10(2), 4, 40)).astype(int))
    ns_list = [_check_n(n, "each n in ns") for n in np.asarray(ns).ravel().tolist()]
    if not ns_list:
        raise ValueError("ns must contain at least one sample size")
    ns_arr = np.asarray(ns_list, dtype=np.int64)
    n_max = int(ns_arr.max())
    rng = np.random.default_rng(seed)
    r = _log_ratio(rng.normal(mu_p, sigma_p, size=n_max), mu_p, sigma_p, mu_q, sigma_q)
    # Shift by a constant before the running sums to avoid cancellation in the variance.
    c = r.mean()
    s1 = np.cumsum(r - c)
    s2 = np.cumsum((r - c) ** 2)
    idx = ns_arr - 1
    n_f = ns_arr.astype(np.float64)
    mean = c + s1[idx] / n_f
    var = np.maximum(s2[idx] - s1[idx] ** 2 / n_f, 0.0) / (n_f - 1.0)
    return {"n": ns_arr, "estimate": mean, "stderr": np.sqrt(var / n_f)}


def kl_integrand(x, mu_p, sigma_p, mu_q, sigma_q):
    """The KL integrand p(x) log(p(x) / q(x)) on a grid ``x`` (signed).

    Integrating it over x (e.g. ``np.trapezoid(kl_integrand(x, ...), x)`` on a wide grid)
    gives KL(p || q). It is negative where q(x) > p(x); the positive parts dominate.
    Computed from log densities, so it is exactly 0 (not nan) where p underflows.

    Shapes broadcast like :func:`kl_normal`; typically ``x`` is (G,) and the rest scalars.
    """
    x = _as_float_array(x, "x")
    mu_p = _as_float_array(mu_p, "mu_p")
    mu_q = _as_float_array(mu_q, "mu_q")
    sigma_p = _as_sigma(sigma_p, "sigma_p")
    sigma_q = _as_sigma(sigma_q, "sigma_q")
    logp = -np.log(sigma_p) - _LOG_SQRT_2PI - (x - mu_p) ** 2 / (2.0 * sigma_p**2)
    logq = -np.log(sigma_q) - _LOG_SQRT_2PI - (x - mu_q) ** 2 / (2.0 * sigma_q**2)
    return _scalar_or_array(np.exp(logp) * (logp - logq))


def kl_to_standard_normal(mu, logvar):
    """The VAE's KL term KL(N(mu, exp(logvar)) || N(0, 1)), elementwise.

    Kingma & Welling (2014), Appendix B (there written as -KL)::

        KL = 1/2 ( mu^2 + exp(logvar) - 1 - logvar )

    ``mu`` and ``logvar`` broadcast (usually both (N, latent_dim)); sum over the latent
    axis to get the per-sample KL of a diagonal Gaussian posterior. Returns a float for
    scalar inputs, else an ndarray. Non-finite input raises ValueError.
    """
    mu = _as_float_array(mu, "mu")
    logvar = _as_float_array(logvar, "logvar")
    return _scalar_or_array(0.5 * (mu**2 + np.exp(logvar) - 1.0 - logvar))


# --------------------------------------------------------------------------- KL fitting demo
def _check_mixture(weights, mus, sigmas) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w = _as_float_array(weights, "weights").ravel()
    m = _as_float_array(mus, "mus").ravel()
    s = _as_sigma(sigmas, "sigmas").ravel()
    if not (w.size == m.size == s.size) or w.size == 0:
        raise ValueError(
            f"weights, mus and sigmas must have the same non-zero length, got "
            f"{w.size}, {m.size}, {s.size}"
        )
    if np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be >= 0 and not all zero")
    return w / w.sum(), m, s


def mixture_pdf(x, weights, mus, sigmas):
    """Density of the 1-D Gaussian mixture sum_k w_k N(mus_k, sigmas_k^2) at ``x``.

    ``x`` has any shape; weights are normalised to sum to 1. Returns an array shaped
    like ``x`` (a float for scalar ``x``).
    """
    w, m, s = _check_mixture(weights, mus, sigmas)
    x = _as_float_array(x, "x")
    comp = np.exp(-((x[..., None] - m) ** 2) / (2 * s**2)) / (s * math.sqrt(2 * math.pi))
    return _scalar_or_array(comp @ w)


def fit_gaussian_to_mixture(
    weights=(0.5, 0.5),
    mus=(-2.0, 2.0),
    sigmas=(0.6, 0.6),
    direction: str = "reverse",
    steps: int = 200,
    lr: float = 0.05,
    init: tuple[float, float] | None = (0.5, 0.5),
    seed: int = 0,
    grid_points: int = 2001,
) -> list[tuple[float, float, float]]:
    """Fit one Gaussian q = N(mu, sigma^2) to a 1-D Gaussian mixture p by minimising a KL.

    * ``direction="forward"`` minimises KL(p || q) = ∫ p log(p/q): q is punished wherever
      p has mass and q does not, so q *covers* all modes. The optimum is moment matching:
      mu = E_p[x], sigma^2 = Var_p[x] (Bishop 2006, section 10.7 / Figure 10.3).
    * ``direction="reverse"`` minimises KL(q || p) = ∫ q log(q/p): q is punished for
      putting mass where p has none. For a two-mode p it has several local optima: one on
      each mode (mode seeking; Bishop 2006, Figure 10.3) and, for well-separated modes, a wide
      symmetric one between them (see Notes); where the fit ends depends on its start
      (:func:`reverse_fit_outcome`). This is the direction of the VAE's approximate posterior.

    The KL is evaluated by the trapezoid rule on a fixed grid of ``grid_points`` points
    spanning every component's mean ± 10 sigma and the initial q's mean ± 10 sigma, so
    the objective (and the whole trajectory) is deterministic. The parameters are
    (mu, log sigma), optimised with ``torch.optim.Adam(lr=lr)`` in float64 using autograd.
    log p is computed with logsumexp so the tails stay finite.

    Parameters
    ----------
    weights, mus, sigmas : sequences of equal length K
        The mixture p. The default is the bimodal 0.5 N(-2, 0.6^2) + 0.5 N(2, 0.6^2).
    direction : {"forward", "reverse"}
    steps : int >= 1
        Number of Adam steps.
    lr : float > 0
        Adam learning rate.
    init : (mu, sigma) or None
        Starting q. ``None`` draws mu ~ N(mean_p, sd_p^2) from ``seed`` with sigma = 1.
        (The optimisation itself has no randomness; ``seed`` only matters for ``init=None``.)

    Returns
    -------
    list of (mu, sigma, kl) tuples of floats, length ``steps + 1``
        Entry 0 is the initial q and its KL; entry i is the state after i Adam steps.
        Good for animating the fit. With the defaults, reverse ends near one mode
        (mu ~ 2.0, sigma ~ 0.60, KL ~ log 2) and forward near (mu ~ 0, sigma ~ 2.09,
        the mixture's mean and standard deviation sqrt(0.6^2 + 2^2)).

    Notes
    -----
    Reverse KL is not convex in (mu, sigma): for this p it also has a broad local
    minimum centred between the modes (mu = 0, sigma ~ 1.79, KL ~ 1.14). Starting at the
    centre (``init=(0.0, 0.5)``: the gradient in mu is 0 by symmetry) or from a wide q
    (e.g. ``init=(0.5, 1.0)``) Adam settles there instead of on a mode: the answer of
    reverse-KL fitting depends on the start.
    """
    import torch  # local import: the rest of this module is NumPy-only

    w, m, s = _check_mixture(weights, mus, sigmas)
    if direction not in ("forward", "reverse"):
        raise ValueError(f'direction must be "forward" or "reverse", got {direction!r}')
    steps = _check_n(steps, "steps", minimum=1)
    grid_points = _check_n(grid_points, "grid_points", minimum=101)
    lr = _check_scalar(lr, "lr")
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr:g}")
    if init is None:
        mean_p = float(w @ m)
        sd_p = math.sqrt(float(w @ (s**2 + m**2)) - mean_p**2)
        mu0 = float(np.random.default_rng(seed).normal(mean_p, sd_p))
        sigma0 = 1.0
    else:
        try:
            mu0, sigma0 = init
        except (TypeError, ValueError) as exc:
            raise ValueError(f"init must be a (mu, sigma) pair, got {init!r}") from exc
        mu0 = _check_scalar(mu0, "init mu")
        sigma0 = _check_scalar(sigma0, "init sigma")
        _as_sigma(sigma0, "init sigma")

    lo = min(float(np.min(m - 10 * s)), mu0 - 10 * sigma0)
    hi = max(float(np.max(m + 10 * s)), mu0 + 10 * sigma0)
    dt = torch.float64
    x = torch.linspace(lo, hi, grid_points, dtype=dt)
    tw, tm, ts = (torch.as_tensor(a, dtype=dt) for a in (w, m, s))
    # log p(x) on the grid: logsumexp_k [log w_k + log N(x; m_k, s_k^2)]  (constant)
    comp = torch.log(tw) - torch.log(ts) - _LOG_SQRT_2PI - (x[:, None] - tm) ** 2 / (2 * ts**2)
    logp = torch.logsumexp(comp, dim=1)
    p = torch.exp(logp)

    mu = torch.tensor(mu0, dtype=dt, requires_grad=True)
    log_sigma = torch.tensor(math.log(sigma0), dtype=dt, requires_grad=True)
    opt = torch.optim.Adam([mu, log_sigma], lr=lr)

    def objective() -> "torch.Tensor":
        sigma = torch.exp(log_sigma)
        logq = -log_sigma - _LOG_SQRT_2PI - (x - mu) ** 2 / (2 * sigma**2)
        if direction == "forward":
            integrand = p * (logp - logq)  # KL(p || q)
        else:
            integrand = torch.exp(logq) * (logq - logp)  # KL(q || p)
        return torch.trapezoid(integrand, x)

    trajectory: list[tuple[float, float, float]] = []
    for _ in range(steps):
        opt.zero_grad()
        kl = objective()
        trajectory.append((mu.item(), math.exp(log_sigma.item()), kl.item()))
        kl.backward()
        opt.step()
    with torch.no_grad():
        trajectory.append((mu.item(), math.exp(log_sigma.item()), objective().item()))
    return trajectory


# =========================================================================================
# Added for the KL divergence page (pages/2_kl.py, helper "page kl"):
# the terms of the closed forms, so formulas can be shown with their numbers; a 2-D
# covariance from (sigma_1, sigma_2, rho); and a mixture's moments (the forward-KL optimum).
# =========================================================================================
__all__ += ["kl_normal_terms", "kl_mvn_terms", "cov_2d", "mixture_moments"]


def kl_normal_terms(mu_p, sigma_p, mu_q, sigma_q) -> tuple[float, float, float]:
    """The three terms of :func:`kl_normal` for scalars, in formula order::

        log(sigma_q / sigma_p),  (sigma_p^2 + (mu_p - mu_q)^2) / (2 sigma_q^2),  -1/2

    Their sum is KL(p || q). Same validation as :func:`kl_normal` (sigma <= 0 raises ValueError).
    """
    mu_p, sigma_p, mu_q, sigma_q = _check_mc_params(mu_p, sigma_p, mu_q, sigma_q)
    return (math.log(sigma_q / sigma_p), (sigma_p**2 + (mu_p - mu_q) ** 2) / (2.0 * sigma_q**2), -0.5)


def kl_mvn_terms(mu0, cov0, mu1, cov1) -> dict:
    """The parts of :func:`kl_mvn`'s formula, KL = 1/2 [trace + mahalanobis - k + logdet]::

        trace       = tr(S1^-1 S0)
        mahalanobis = (mu1 - mu0)^T S1^-1 (mu1 - mu0)
        logdet      = ln(det S1 / det S0)

    Returns a dict with those three floats, ``k`` (int) and ``kl`` (= :func:`kl_mvn`, clipped at 0).
    Computed with Cholesky factors like :func:`kl_mvn`; same ValueErrors.
    """
    mu0, cov0 = _check_mvn(mu0, cov0, "mu0", "cov0")
    mu1, cov1 = _check_mvn(mu1, cov1, "mu1", "cov1")
    if mu0.shape != mu1.shape:
        raise ValueError(f"mu0 and mu1 must have the same length, got {mu0.shape[0]} and {mu1.shape[0]}")
    l0 = _cholesky(cov0, "cov0")
    l1 = _cholesky(cov1, "cov1")
    m = np.linalg.solve(l1, l0)
    d = np.linalg.solve(l1, mu1 - mu0)
    return {
        "trace": float(np.sum(m * m)),
        "mahalanobis": float(d @ d),
        "k": int(mu0.shape[0]),
        "logdet": 2.0 * float(np.sum(np.log(np.diag(l1))) - np.sum(np.log(np.diag(l0)))),
        "kl": kl_mvn(mu0, cov0, mu1, cov1),
    }


def cov_2d(sigma_1, sigma_2, rho) -> np.ndarray:
    """The 2x2 covariance [[s1^2, rho s1 s2], [rho s1 s2, s2^2]] (shape (2, 2)).

    Raises ValueError unless both sigmas are > 0 and -1 < rho < 1 (so the matrix is positive definite).
    """
    s1 = float(_as_sigma(_check_scalar(sigma_1, "sigma_1"), "sigma_1"))
    s2 = float(_as_sigma(_check_scalar(sigma_2, "sigma_2"), "sigma_2"))
    r = _check_scalar(rho, "rho")
    if not -1.0 < r < 1.0:
        raise ValueError(f"rho must be strictly between -1 and 1, got {r:g}")
    c = r * s1 * s2
    return np.array([[s1 * s1, c], [c, s2 * s2]])


def mixture_moments(weights, mus, sigmas) -> tuple[float, float]:
    """Mean and standard deviation of the 1-D mixture sum_k w_k N(mus_k, sigmas_k^2)::

        mean = sum_k w_k mu_k,   var = sum_k w_k (sigma_k^2 + mu_k^2) - mean^2

    The Gaussian minimising forward KL(p || q) has exactly these moments (moment matching,
    Bishop 2006, section 10.7), so this is the target of ``fit_gaussian_to_mixture(direction="forward")``.
    """
    w, m, s = _check_mixture(weights, mus, sigmas)
    mean = float(w @ m)
    return mean, math.sqrt(max(float(w @ (s**2 + m**2)) - mean**2, 0.0))


# =========================================================================================
# The VAE's KL term split into its parts, and which optimum a reverse-KL fit reached.
# =========================================================================================
__all__ += ["kl_standard_normal_parts", "reverse_fit_outcome", "KL_PART_NAMES"]

KL_PART_NAMES = ("½μ²", "½σ²", "−½ log σ²", "−½")


def kl_standard_normal_parts(mu, logvar) -> dict:
    """The parts of KL(N(mu, sigma^2) || N(0, 1)) = 1/2 (mu^2 + sigma^2 - 1 - log sigma^2), per element.

    ``mu``, ``logvar``: arrays of the same shape (usually (K,) for one image). Returns a dict of
    float64 arrays of that shape: ``mu2`` = mu^2 / 2, ``sigma2`` = sigma^2 / 2, ``neg_log_sigma2`` =
    -log(sigma^2) / 2, ``minus_one`` = -1/2, and ``total`` (their sum, = :func:`kl_to_standard_normal`).

    What each part does in training (the mechanism of the KL term): ``mu2`` grows as a code's mean
    leaves the origin, so codes stay where the prior puts its samples; ``sigma2 + neg_log_sigma2 +
    minus_one`` = (sigma^2 - 1 - log sigma^2) / 2 >= 0 is 0 only at sigma = 1, and ``neg_log_sigma2``
    grows without bound as sigma -> 0, so the encoder cannot switch its noise off.
    """
    mu = _as_float_array(mu, "mu")
    logvar = _as_float_array(logvar, "logvar")
    mu, logvar = np.broadcast_arrays(mu, logvar)
    parts = {"mu2": 0.5 * mu**2, "sigma2": 0.5 * np.exp(logvar), "neg_log_sigma2": -0.5 * logvar,
             "minus_one": np.full(mu.shape, -0.5)}
    parts["total"] = parts["mu2"] + parts["sigma2"] + parts["neg_log_sigma2"] + parts["minus_one"]
    return parts


def reverse_fit_outcome(mu_final: float, sigma_final: float, mus: Sequence[float],
                        sigmas: Sequence[float] | None = None, weights: Sequence[float] | None = None) -> dict:
    """Which local optimum a reverse-KL fit of one Gaussian to a two-mode mixture reached.

    ``mus``: the two component means (the modes' centres); ``mu_final``, ``sigma_final``: the fit's
    last state (from :func:`fit_gaussian_to_mixture`). The fit's mean is compared with the three
    candidate centres: the left mode, the midpoint, the right mode. Returns a dict with ``kind``
    ("mode" or "between"), ``side`` ("left", "right" or None), ``target`` (the centre it is
    nearest), ``distance`` (|mu_final - target|) and ``peaks``: the number of local maxima of p's
    density (counted on a fine grid; needs ``sigmas``, else None). Two equal components of equal
    sigma give one peak when their means are at most 2 sigma apart.

    A fit that ends near the midpoint with a wide sigma is the symmetric local optimum (or, when the
    modes are so close that p has a single peak, the one optimum); one that ends on a mode with
    about that mode's width is a mode-seeking optimum.
    """
    m_raw = _as_float_array(mus, "mus").ravel()
    order = np.argsort(m_raw)
    m = m_raw[order]
    if m.size != 2:
        raise ValueError(f"reverse_fit_outcome needs the two modes' means, got {m.size}")
    mu_final = _check_scalar(mu_final, "mu_final")
    _as_sigma(_check_scalar(sigma_final, "sigma_final"), "sigma_final")
    mid = float(m.mean())
    centres = [("mode", "left", float(m[0])), ("between", None, mid), ("mode", "right", float(m[1]))]
    kind, side, target = min(centres, key=lambda c: abs(mu_final - c[2]))
    peaks = None
    if sigmas is not None:
        w = np.asarray((0.5, 0.5) if weights is None else weights, dtype=np.float64).ravel()[order]
        s_ = _as_sigma(sigmas, "sigmas").ravel()[order]
        grid = np.linspace(m[0] - 3 * s_.max(), m[1] + 3 * s_.max(), 4001)
        dens = np.asarray(mixture_pdf(grid, w, m, s_))
        peaks = int(np.sum((dens[1:-1] > dens[:-2]) & (dens[1:-1] >= dens[2:])))
    return {"kind": kind, "side": side, "target": target, "distance": abs(mu_final - target), "peaks": peaks}


# ---- the KL term on a 2-D latent map ----------------------------------------------------------------

def posterior_radii(logvar) -> np.ndarray:
    """The one-standard-deviation ellipse of a diagonal Gaussian q(z|x) = N(mu, diag(sigma^2)) is
    axis-aligned with half-axes sigma_j = exp(logvar_j / 2). ``logvar`` (..., K) -> (..., K) float64."""
    return np.exp(0.5 * _as_float_array(logvar, "logvar"))


def encode_posteriors(model, x) -> dict:
    """q(z|x) of a VAE for images ``x`` (N, D) in [0, 1]: ``mu`` (N, K), ``logvar`` (N, K) and the
    ellipse half-axes ``sigma`` = exp(logvar / 2) (N, K), all float64 (core.training.encode_stats)."""
    from core.training import encode_stats

    mu, logvar = encode_stats(model, np.asarray(x, dtype=np.float32).reshape(len(x), -1))
    if logvar is None:
        raise ValueError("a plain autoencoder has no q(z|x): use a VAE")
    mu, logvar = mu.astype(np.float64), logvar.astype(np.float64)
    return dict(mu=mu, logvar=logvar, sigma=posterior_radii(logvar))


def kl_parts_sums(mu, logvar) -> dict:
    """One image's KL(q(z|x) || N(0, I)) split into its three parts, each summed over the K
    dimensions (Kingma & Welling 2014, Appendix B): ``mu2`` = sum mu_j^2 / 2, ``sigma2`` =
    sum sigma_j^2 / 2, ``neg_log_sigma2`` = -sum log sigma_j^2 / 2, the constant ``minus_half_k`` =
    -K/2, and ``total`` (their sum, the KL in nats). ``mu``, ``logvar``: (K,)."""
    p = kl_standard_normal_parts(np.asarray(mu, float).ravel(), np.asarray(logvar, float).ravel())
    return dict(mu2=float(p["mu2"].sum()), sigma2=float(p["sigma2"].sum()),
                neg_log_sigma2=float(p["neg_log_sigma2"].sum()), minus_half_k=float(p["minus_one"].sum()),
                total=float(p["total"].sum()))


def latent_map_summary(mu, sigma) -> dict:
    """Numbers a page quotes about one 2-D VAE's posteriors: ``mean_sigma`` (mean of sigma_j over
    images and dimensions), ``inside2`` (share of means mu(x) within radius 2 of the origin, where the
    prior N(0, I) in 2-D puts 1 - e^{-2} = 86.5% of its mass) and ``max_radius`` (largest |mu(x)|).
    ``mu``, ``sigma``: (N, 2)."""
    mu, sigma = np.asarray(mu, float), np.asarray(sigma, float)
    r = np.linalg.norm(mu, axis=1)
    return dict(mean_sigma=float(sigma.mean()), inside2=float(np.mean(r <= 2.0)), max_radius=float(r.max()))


def image_kl(model, x) -> float:
    """KL(q(z|x) || N(0, I)) in nats of one image ``x`` (D,) or (1, D) under a VAE: the KL term of its
    loss, summed over the latent dimensions."""
    q = encode_posteriors(model, np.asarray(x, dtype=np.float32).reshape(1, -1))
    return float(np.sum(kl_to_standard_normal(q["mu"][0], q["logvar"][0])))


def latent_map_panel(model, x, y, beta: float) -> dict:
    """One panel of the KL page's latent map: a 2-D VAE's posteriors of images ``x`` (N, D) with labels
    ``y`` (N,): ``beta``, ``mu``, ``sigma`` (N, 2), ``y``, and :func:`latent_map_summary`'s figures."""
    post = encode_posteriors(model, x)
    return dict(beta=float(beta), mu=post["mu"], sigma=post["sigma"], y=np.asarray(y),
                **latent_map_summary(post["mu"], post["sigma"]))


def image_on_maps(models: dict, x) -> list[dict]:
    """One image ``x`` (D,) under each VAE of ``models`` (beta -> model), in that order: ``beta``, its
    posterior ``mu``, ``logvar``, ``sigma`` (K,) and its KL's three parts (:func:`kl_parts_sums`)."""
    x1 = np.asarray(x, dtype=np.float32).reshape(1, -1)
    out = []
    for beta, model in models.items():
        q = encode_posteriors(model, x1)
        out.append(dict(beta=float(beta), mu=q["mu"][0], logvar=q["logvar"][0], sigma=q["sigma"][0],
                        parts=kl_parts_sums(q["mu"][0], q["logvar"][0])))
    return out
