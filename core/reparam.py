"""Two ways to differentiate an expectation: the reparameterization trick vs the score function.

We want the gradient of  L(mu, sigma) = E_{z ~ N(mu, sigma^2)}[ f(z) ]  with respect to
mu and sigma. The sample z is random, so we cannot backpropagate "through the sampler"
directly. There are two classic unbiased Monte Carlo estimators:

1. **Reparameterization (pathwise) gradient** (Kingma & Welling 2014, section 2.4;
   Rezende et al. 2014). Write z = mu + sigma * eps with eps ~ N(0, 1). The randomness
   now lives in eps, which does not depend on (mu, sigma), so

       d/dmu E[f(z)]    = E[ f'(z) * dz/dmu    ] = E[ f'(z) ]
       d/dsigma E[f(z)] = E[ f'(z) * dz/dsigma ] = E[ f'(z) * eps ]

   Autograd computes f'(z) * dz/dtheta for each sample. This requires f to be
   differentiable; for a piecewise-constant f (the ``"step"`` test function) f'(z) = 0
   almost everywhere, so the pathwise estimate is exactly 0 and **biased**: the
   true gradient comes from probability mass moving across the jump, which the
   derivative of f never sees. (Swapping d/dtheta and E is not allowed there.)

2. **Score-function / REINFORCE gradient** (Williams 1992):

       d/dtheta E[f(z)] = E[ f(z) * d/dtheta log q(z; theta) ]
       with d/dmu log q = (z - mu) / sigma^2,  d/dsigma log q = ((z - mu)^2 - sigma^2) / sigma^3

   It needs only f(z), not f', so it works for the step function too, but its
   variance is usually much larger (see ``tests/test_reparam.py``).

In a VAE, z = mu(x) + sigma(x) * eps is exactly trick 1: it is what lets the decoder's
loss gradient flow back into the encoder (see :func:`autograd_demo`).

All computations are in float64 with torch autograd. Seeding uses
``torch.random.fork_rng`` so the global torch RNG state is left untouched.
"""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Callable, NamedTuple, Union

import numpy as np
import torch
from torch.distributions import Normal

from core.jobs import Job, Jobs

__all__ = [
    "TestFunction",
    "TEST_FUNCTIONS",
    "analytic_expectation",
    "analytic_gradient",
    "gradient_estimates",
    "estimator_summary",
    "autograd_demo",
    "METHODS",
]

METHODS = ("reparam", "score")
_DTYPE = torch.float64


def _phi(x: float) -> float:
    """Standard normal density phi(x) = exp(-x^2/2) / sqrt(2 pi)."""
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _Phi(x: float) -> float:
    """Standard normal CDF Phi(x) = (1 + erf(x / sqrt 2)) / 2."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


class TestFunction(NamedTuple):
    """A test integrand f with the analytic gradient of E_{z~N(mu, sigma^2)}[f(z)].

    Unpacks as ``(f, dmu, dsigma, latex)``:

    * ``f(z, a)``: torch callable, elementwise on a float64 tensor ``z`` of shape (n,).
    * ``dmu(mu, sigma, a)`` / ``dsigma(mu, sigma, a)``: floats, the exact gradient.
    * ``latex``: label for plots, e.g. ``r"z^2"``.
    """

    __test__ = False  # not a pytest test class, despite the name

    f: Callable[[torch.Tensor, float], torch.Tensor]
    dmu: Callable[[float, float, float], float]
    dsigma: Callable[[float, float, float], float]
    latex: str


def _step(z: torch.Tensor, a: float) -> torch.Tensor:
    # 1[z > a]. The comparison has no gradient: autograd treats the result as a
    # constant, i.e. the derivative the pathwise estimator sees is 0 everywhere.
    return (z > a).to(z.dtype)


#: name -> TestFunction(f, dmu, dsigma, latex). E[f] in closed form:
#: z^2: mu^2 + sigma^2;  (z-a)^2: (mu-a)^2 + sigma^2;  sin z: sin(mu) e^{-sigma^2/2}
#: (from E[e^{iz}] = e^{i mu - sigma^2/2});  step 1[z > a]: Phi((mu - a) / sigma).
TEST_FUNCTIONS: dict[str, TestFunction] = {
    "z^2": TestFunction(
        f=lambda z, a: z**2,
        dmu=lambda mu, sigma, a: 2.0 * mu,
        dsigma=lambda mu, sigma, a: 2.0 * sigma,
        latex=r"z^2",
    ),
    "(z-a)^2": TestFunction(
        f=lambda z, a: (z - a) ** 2,
        dmu=lambda mu, sigma, a: 2.0 * (mu - a),
        dsigma=lambda mu, sigma, a: 2.0 * sigma,
        latex=r"(z-a)^2",
    ),
    "sin z": TestFunction(
        f=lambda z, a: torch.sin(z),
        dmu=lambda mu, sigma, a: math.cos(mu) * math.exp(-0.5 * sigma**2),
        dsigma=lambda mu, sigma, a: -sigma * math.sin(mu) * math.exp(-0.5 * sigma**2),
        latex=r"\sin z",
    ),
    "step": TestFunction(
        f=_step,
        dmu=lambda mu, sigma, a: _phi((mu - a) / sigma) / sigma,
        dsigma=lambda mu, sigma, a: -(mu - a) / sigma**2 * _phi((mu - a) / sigma),
        latex=r"\mathbb{1}[z > a]",
    ),
}

_EXPECTATIONS: dict[str, Callable[[float, float, float], float]] = {
    "z^2": lambda mu, sigma, a: mu**2 + sigma**2,
    "(z-a)^2": lambda mu, sigma, a: (mu - a) ** 2 + sigma**2,
    "sin z": lambda mu, sigma, a: math.sin(mu) * math.exp(-0.5 * sigma**2),
    "step": lambda mu, sigma, a: _Phi((mu - a) / sigma),
}


# --------------------------------------------------------------------------- validation
def _check_params(mu, sigma, a=0.0) -> tuple[float, float, float]:
    vals = []
    for name, v in (("mu", mu), ("sigma", sigma), ("a", a)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise ValueError(f"{name} must be a real number, got {v!r}")
        v = float(v)
        if not math.isfinite(v):
            raise ValueError(f"{name} must be finite, got {v}")
        vals.append(v)
    if vals[1] <= 0:
        raise ValueError(f"sigma must be > 0, got {vals[1]:g}")
    return vals[0], vals[1], vals[2]


def _lookup(fname: str) -> TestFunction:
    try:
        return TEST_FUNCTIONS[fname]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown test function {fname!r}; choose one of {sorted(TEST_FUNCTIONS)}"
        ) from None


def analytic_expectation(fname: str, mu: float, sigma: float, a: float = 0.0) -> float:
    """Exact E_{z~N(mu, sigma^2)}[f(z)] for a name in :data:`TEST_FUNCTIONS`."""
    _lookup(fname)
    mu, sigma, a = _check_params(mu, sigma, a)
    return float(_EXPECTATIONS[fname](mu, sigma, a))


def analytic_gradient(fname: str, mu: float, sigma: float, a: float = 0.0) -> tuple[float, float]:
    """Exact (d/dmu, d/dsigma) of E_{z~N(mu, sigma^2)}[f(z)] for a name in :data:`TEST_FUNCTIONS`."""
    tf = _lookup(fname)
    mu, sigma, a = _check_params(mu, sigma, a)
    return float(tf.dmu(mu, sigma, a)), float(tf.dsigma(mu, sigma, a))


# --------------------------------------------------------------------------- estimators
def _resolve_f(f: Union[str, Callable], a: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Turn a TEST_FUNCTIONS name or a torch callable f(z) / f(z, a) into g(z)."""
    if isinstance(f, str):
        tf = _lookup(f)
        return lambda z: tf.f(z, a)
    if not callable(f):
        raise ValueError(f"f must be a name in TEST_FUNCTIONS or a callable, got {f!r}")
    try:
        inspect.signature(f).bind(torch.zeros(1), a)
        takes_a = True
    except TypeError:
        takes_a = False
    except ValueError:  # builtins without a signature: assume f(z)
        takes_a = False
    return (lambda z: f(z, a)) if takes_a else f


def _eval_f(g: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    out = g(z)
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"f must return a torch.Tensor, got {type(out).__name__}")
    if out.shape != z.shape:
        raise ValueError(f"f must be elementwise: input shape {tuple(z.shape)}, output {tuple(out.shape)}")
    return out


def gradient_estimates(
    f: Union[str, Callable],
    mu: float,
    sigma: float,
    n: int = 1000,
    method: str = "reparam",
    seed: int = 0,
    a: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """n per-sample Monte Carlo estimates of the gradient of E_{z~N(mu, sigma^2)}[f(z)].

    Parameters
    ----------
    f : str or callable
        A key of :data:`TEST_FUNCTIONS` or a torch callable ``f(z)`` or ``f(z, a)``
        that maps a float64 tensor of shape (n,) elementwise to shape (n,).
    mu, sigma : float
        Parameters of q = N(mu, sigma^2); sigma > 0.
    n : int >= 1
        Number of samples.
    method : {"reparam", "score"}
        * ``"reparam"``: z = Normal(mu_vec, sigma_vec).rsample() = mu + sigma * eps,
          estimate_i = d f(z_i) / d(mu, sigma) by autograd (pathwise gradient).
        * ``"score"``: z = Normal(mu_vec, sigma_vec).sample() (no graph),
          estimate_i = f(z_i) * d log q(z_i) / d(mu, sigma) by autograd on ``log_prob``.
    seed : int
        Seeds torch inside ``torch.random.fork_rng`` (global RNG state is restored).
        With the same seed both methods draw the same z (common random numbers; checked
        in the tests), so any difference between them is the estimator's, not the draws'.
    a : float
        Extra parameter passed to the test functions ("(z-a)^2", "step").

    Returns
    -------
    (dmu, dsigma) : two float64 ndarrays of shape (n,)
        Their means are the gradient estimates; their spread is the estimator's noise.

    How per-sample gradients come from one backward pass: mu and sigma are expanded
    to leaf tensors ``mu_vec``, ``sigma_vec`` of shape (n,) holding n copies. Sample i
    depends only on copy i, so d(sum_j f(z_j)) / d mu_vec[i] = d f(z_i) / d mu.

    Caveat (on purpose, not hidden): for the ``"step"`` function the reparam estimate is
    identically 0, because autograd differentiates 1[z > a] as a constant. That is the
    correct pathwise derivative almost everywhere, yet E of it (0) is not the true
    gradient phi((mu-a)/sigma)/sigma: the pathwise estimator is biased for
    discontinuous f. The score-function estimator stays unbiased.

    Raises
    ------
    ValueError
        Unknown method or function name, sigma <= 0, non-finite parameters, n < 1, or
        an f that does not return an elementwise tensor.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    mu, sigma, a = _check_params(mu, sigma, a)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    n = int(n)
    g = _resolve_f(f, a)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        mu_vec = torch.full((n,), mu, dtype=_DTYPE, requires_grad=True)
        sigma_vec = torch.full((n,), sigma, dtype=_DTYPE, requires_grad=True)
        q = Normal(mu_vec, sigma_vec)
        if method == "reparam":
            z = q.rsample()  # = mu_vec + sigma_vec * eps, differentiable in mu/sigma
            out = _eval_f(g, z)
            if out.requires_grad:
                dmu, dsigma = torch.autograd.grad(
                    out.sum(), (mu_vec, sigma_vec), allow_unused=True
                )
            else:  # f is piecewise constant (e.g. the step): its derivative is 0 a.e.
                dmu = dsigma = None
            dmu = torch.zeros(n, dtype=_DTYPE) if dmu is None else dmu
            dsigma = torch.zeros(n, dtype=_DTYPE) if dsigma is None else dsigma
        else:
            z = q.sample()  # no graph back to mu/sigma
            with torch.no_grad():
                fz = _eval_f(g, z).detach()
            score_mu, score_sigma = torch.autograd.grad(
                q.log_prob(z).sum(), (mu_vec, sigma_vec)
            )
            dmu, dsigma = fz * score_mu, fz * score_sigma
    return dmu.detach().numpy().copy(), dsigma.detach().numpy().copy()


def _summ(x: np.ndarray) -> dict:
    x = np.asarray(x, dtype=np.float64).ravel()
    n = x.size
    if n == 0:
        raise ValueError("need at least one estimate")
    var = float(x.var(ddof=1)) if n > 1 else float("nan")
    return {
        "mean": float(x.mean()),
        "variance": var,
        "stderr": math.sqrt(var / n) if n > 1 else float("nan"),
        "n": n,
    }


def estimator_summary(dmu, dsigma) -> dict:
    """Summarise per-sample gradient estimates from :func:`gradient_estimates`.

    Returns ``{"dmu": {...}, "dsigma": {...}}`` where each inner dict has ``mean``
    (the gradient estimate), ``variance`` (per-sample variance, ddof=1), ``stderr``
    (= sqrt(variance / n), the standard error of the mean) and ``n``. With n = 1 the
    variance and stderr are nan (undefined).
    """
    return {"dmu": _summ(dmu), "dsigma": _summ(dsigma)}


# --------------------------------------------------------------------------- demo
def _graph_lines(fn, depth: int = 0, max_depth: int = 6) -> list[str]:
    """Indented names of an autograd graph, e.g. ['AddBackward0', '  AccumulateGrad', ...]."""
    if fn is None or depth > max_depth:
        return []
    lines = ["  " * depth + type(fn).__name__]
    for child, _ in getattr(fn, "next_functions", ()):
        lines.extend(_graph_lines(child, depth + 1, max_depth))
    return lines


def autograd_demo(mu: float = 0.0, sigma: float = 1.0, seed: int = 0) -> dict:
    """Run ``Normal(mu, sigma).sample()`` and ``.rsample()`` for real and report what autograd sees.

    mu and sigma are leaf tensors with ``requires_grad=True``. Returns a dict:

    * ``sample_repr``, ``rsample_repr``: ``repr`` of each drawn tensor.
    * ``sample_requires_grad`` (False), ``sample_grad_fn`` (None): sample() cuts the graph.
    * ``rsample_requires_grad`` (True), ``rsample_grad_fn`` (e.g. ``"AddBackward0"``):
      rsample() builds z = mu + sigma * eps inside the graph.
    * ``rsample_graph``: the autograd graph of z as indented node names.
    * ``eps``: the noise used by rsample, (z - mu) / sigma.
    * ``dz_dmu`` (= 1.0) and ``dz_dsigma`` (= eps): gradients after ``z.backward()``.
    * ``sample_backward_error``: the real RuntimeError text from calling
      ``backward()`` on the sample() result.
    """
    mu, sigma, _ = _check_params(mu, sigma)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        mu_t = torch.tensor(mu, dtype=_DTYPE, requires_grad=True)
        sigma_t = torch.tensor(sigma, dtype=_DTYPE, requires_grad=True)
        dist = Normal(mu_t, sigma_t)
        z_sample = dist.sample()
        z_rsample = dist.rsample()

    try:
        z_sample.backward()
        sample_error = None
    except RuntimeError as exc:
        sample_error = str(exc)

    z_rsample.backward()
    eps = (z_rsample.item() - mu) / sigma
    return {
        "mu": mu,
        "sigma": sigma,
        "sample_repr": repr(z_sample),
        "sample_value": z_sample.item(),
        "sample_requires_grad": bool(z_sample.requires_grad),
        "sample_grad_fn": None if z_sample.grad_fn is None else type(z_sample.grad_fn).__name__,
        "sample_backward_error": sample_error,
        "rsample_repr": repr(z_rsample),
        "rsample_value": z_rsample.item(),
        "rsample_requires_grad": bool(z_rsample.requires_grad),
        "rsample_grad_fn": None if z_rsample.grad_fn is None else type(z_rsample.grad_fn).__name__,
        "rsample_graph": _graph_lines(z_rsample.grad_fn),
        "eps": eps,
        "dz_dmu": mu_t.grad.item(),
        "dz_dsigma": sigma_t.grad.item(),
    }


# =========================================================================================
# Additions for the reparameterization page (pages/3_reparam.py): a side-by-side
# comparison of the two estimators, the single-sample backward pass drawn in the diagram,
# and backpropagation through a trained VAE's loss to (mu, logvar).
# =========================================================================================

def running_estimate(samples, points: int = 60) -> dict:
    """Running mean and standard error of per-sample estimates, at ~log-spaced sample counts.

    ``samples``: (n,) per-sample estimates, e.g. one array from :func:`gradient_estimates`.
    Returns ``{"n": (P,) int, "mean": (P,), "stderr": (P,)}`` for the first n[p] samples,
    P <= ``points``, n[-1] = n. ``stderr`` = sqrt(var_ddof1 / n[p]); nan where n[p] = 1.
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    n = x.size
    if n == 0:
        raise ValueError("need at least one estimate")
    if points < 2:
        raise ValueError(f"points must be >= 2, got {points}")
    ns = np.unique(np.round(np.geomspace(1, n, points)).astype(np.int64))
    y = x - x.mean()  # the variance is shift-invariant; centring keeps the cumulative sums accurate
    c1, c2 = np.cumsum(y)[ns - 1], np.cumsum(y * y)[ns - 1]
    mean = c1 / ns + x.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(ns > 1, (c2 - c1 * c1 / ns) / (ns - 1), np.nan)
    stderr = np.sqrt(np.maximum(var, 0.0) / ns)
    stderr[ns == 1] = np.nan
    return {"n": ns, "mean": mean, "stderr": stderr}


def _z_score(mean: float, exact: float, stderr: float) -> float:
    """(mean - exact) / stderr: how many standard errors the estimate is off.

    A zero stderr (every per-sample estimate equal, e.g. the pathwise estimator on the
    step function) gives 0 if the estimate is exact and +-inf otherwise; nan if n = 1.
    """
    if not math.isfinite(stderr):
        return float("nan")
    diff = mean - exact
    if stderr == 0.0:
        return 0.0 if abs(diff) <= 1e-12 * max(1.0, abs(exact)) else math.copysign(math.inf, diff)
    return diff / stderr


def compare_estimators(f: str, mu: float, sigma: float, n: int = 1000, seed: int = 0, a: float = 0.0,
                       points: int = 60) -> dict:
    """Both gradient estimators of E_{z~N(mu, sigma^2)}[f(z)] on the same n draws, next to the exact gradient.

    ``f`` is a key of :data:`TEST_FUNCTIONS`. Both methods use the same ``seed``, and
    ``Normal.rsample`` and ``Normal.sample`` consume torch's RNG identically, so they see the
    same z_1..z_n (common random numbers): the differences below are the estimators', not luck's.

    Returns a dict (``m`` is ``"reparam"`` or ``"score"``, ``p`` is ``"dmu"`` or ``"dsigma"``):

    * ``exact[p]``: the analytic gradient; ``expectation``: the analytic E[f(z)].
    * ``samples[m][p]``: (n,) per-sample estimates (from :func:`gradient_estimates`).
    * ``summary[m][p]``: ``mean``, ``variance`` (ddof=1), ``stderr``, ``n`` (:func:`estimator_summary`).
    * ``z_score[m][p]``: (mean - exact) / stderr; |z| < 4 is what an unbiased estimator gives
      almost always (see :func:`_z_score` for stderr = 0).
    * ``variance_ratio[p]``: variance(score) / variance(reparam); inf when the pathwise
      estimates do not vary at all (the step function), nan when both are constant.
    * ``convergence[m][p]``: :func:`running_estimate` of the samples (mean +- stderr vs n).
    """
    tf = _lookup(f)
    mu, sigma, a = _check_params(mu, sigma, a)
    exact_mu, exact_sigma = analytic_gradient(f, mu, sigma, a)
    exact = {"dmu": exact_mu, "dsigma": exact_sigma}
    out: dict = {"f": f, "latex": tf.latex, "mu": mu, "sigma": sigma, "a": a, "n": int(n), "seed": int(seed),
                 "exact": exact, "expectation": analytic_expectation(f, mu, sigma, a),
                 "samples": {}, "summary": {}, "z_score": {}, "convergence": {}}
    for m in METHODS:
        dmu, dsigma = gradient_estimates(f, mu, sigma, n, m, seed, a)
        out["samples"][m] = {"dmu": dmu, "dsigma": dsigma}
        out["summary"][m] = estimator_summary(dmu, dsigma)
        out["z_score"][m] = {p: _z_score(out["summary"][m][p]["mean"], exact[p], out["summary"][m][p]["stderr"])
                             for p in exact}
        out["convergence"][m] = {p: running_estimate(out["samples"][m][p], points) for p in exact}
    ratio = {}
    for p in exact:
        vr, vs = out["summary"]["reparam"][p]["variance"], out["summary"]["score"][p]["variance"]
        if not (math.isfinite(vr) and math.isfinite(vs)):
            ratio[p] = float("nan")
        elif vr == 0.0:
            ratio[p] = float("nan") if vs == 0.0 else math.inf
        else:
            ratio[p] = vs / vr
    out["variance_ratio"] = ratio
    return out


def one_sample_backward(f: str, mu: float, sigma: float, seed: int = 0, a: float = 0.0) -> dict:
    """One draw z = mu + sigma * eps and one real backward pass of L = f(z) (what the diagram animates).

    mu and sigma are float64 leaf tensors; z is kept in the graph with ``retain_grad`` so
    autograd reports dL/dz too. Returns floats ``mu, sigma, eps, z, f_z`` and the gradients
    ``dL_dz`` (= f'(z)), ``dL_dmu`` (= f'(z) * dz/dmu = f'(z)) and ``dL_dsigma``
    (= f'(z) * dz/dsigma = f'(z) * eps). For the step function f'(z) = 0: autograd sees a
    constant, so every gradient is 0.
    """
    tf = _lookup(f)
    mu, sigma, a = _check_params(mu, sigma, a)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        mu_t = torch.tensor(mu, dtype=_DTYPE, requires_grad=True)
        sigma_t = torch.tensor(sigma, dtype=_DTYPE, requires_grad=True)
        z = Normal(mu_t, sigma_t).rsample()  # = mu + sigma * eps
    z.retain_grad()
    loss = tf.f(z, a)
    if loss.requires_grad:
        loss.backward()
        dz = z.grad.item()
        dmu = mu_t.grad.item() if mu_t.grad is not None else 0.0
        dsigma = sigma_t.grad.item() if sigma_t.grad is not None else 0.0
    else:  # piecewise constant f: no graph, the derivative autograd uses is 0
        dz = dmu = dsigma = 0.0
    return {"f": f, "mu": mu, "sigma": sigma, "a": a, "eps": (z.item() - mu) / sigma, "z": z.item(),
            "f_z": loss.item(), "dL_dz": dz, "dL_dmu": dmu, "dL_dsigma": dsigma}


def standard_normal_draws(k: int, n: int = 1, seed: int = 0) -> torch.Tensor:
    """(n, k) float32 draws of eps ~ N(0, I) from a private generator seeded with ``seed``."""
    if k < 1 or n < 1:
        raise ValueError(f"k and n must be >= 1, got k={k}, n={n}")
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(n, k, generator=g)


def vae_gradients(model, x, eps, beta: float = 1.0, likelihood: str | None = None) -> dict:
    """Backpropagate a VAE's loss for one input through z = mu + sigma * eps to mu and logvar.

    Parameters
    ----------
    model : core.models.VAE
        A trained VAE (weights may have ``requires_grad=False``; they are not changed).
    x : tensor (D,) or (1, D)
        One input in [0, 1].
    eps : tensor (K,) or (S, K)
        One draw of the noise, or S draws; each draw is a separate one-sample loss.
    beta, likelihood
        As in :func:`core.losses.elbo_terms` (likelihood defaults to the model's).

    mu, logvar = encoder(x) are detached and made leaf tensors, so the gradients are
    dL/dmu and dL/dlogvar, the quantities backpropagation hands on to the encoder. The loss is
    L = recon + beta * KL with recon = -log p(x | z) at z = mu + exp(logvar / 2) * eps
    (:func:`core.models.reparameterize`) and KL = sum_j KL_j (:func:`core.losses.elbo_terms`).
    Each part is differentiated separately by autograd:

    * ``drecon_dmu``, ``drecon_dlogvar``: reconstruction part (through the decoder and z);
      by the chain rule d recon/dmu = d recon/dz and d recon/dlogvar = d recon/dz * eps * sigma / 2.
    * ``dkl_dmu``, ``dkl_dlogvar``: beta * KL part; analytically beta * mu and beta * (sigma^2 - 1) / 2.
    * ``dL_dmu``, ``dL_dlogvar``: the total, from ``loss.backward``-style autograd on the loss.

    Returns a dict of float64 numpy arrays: ``mu``, ``logvar``, ``sigma``, ``kl_per_dim`` (K,);
    ``eps``, ``z`` and the six gradients (K,) for one draw or (S, K) for S draws; ``recon_x``
    (D,) the decoder mean at the first draw's z; floats (one draw) or (S,) arrays of ``loss``,
    ``recon``, ``kl``. With S draws, ``mean_over_draws`` holds each gradient averaged over the
    draws, (K,): a Monte Carlo estimate of the expected gradient that training follows.
    """
    from core.losses import elbo_terms, kl_per_dim, reconstruction_nll
    from core.models import reparameterize

    if not getattr(model, "is_vae", False):
        raise ValueError("vae_gradients needs a VAE (an autoencoder has no sigma to differentiate)")
    likelihood = likelihood or model.cfg.likelihood
    if isinstance(x, torch.Tensor):
        x = x.detach().to(torch.float32).reshape(1, -1)
    else:  # a copy: dataset arrays are read-only, and torch wants writable memory
        x = torch.tensor(np.array(x, dtype=np.float32)).reshape(1, -1)
    eps = torch.as_tensor(eps, dtype=torch.float32)
    single = eps.dim() == 1
    eps = eps.reshape(1, -1) if single else eps
    if eps.dim() != 2 or eps.shape[1] != model.cfg.latent_dim:
        raise ValueError(f"eps must have shape (K,) or (S, K) with K={model.cfg.latent_dim}, got {tuple(eps.shape)}")
    if x.shape[1] != model.cfg.input_dim:
        raise ValueError(f"x must have {model.cfg.input_dim} values, got {x.shape[1]}")
    s = eps.shape[0]
    with torch.no_grad():
        mu0, logvar0 = model.encode(x)
    with torch.enable_grad():
        # S copies of (mu, logvar) as leaves: row i is the one-sample loss with eps[i]. elbo_terms
        # averages over the batch, so each row's gradient is scaled by 1/S; we undo that below.
        mu = mu0.detach().expand(s, -1).clone().requires_grad_(True)
        logvar = logvar0.detach().expand(s, -1).clone().requires_grad_(True)
        z = reparameterize(mu, logvar, eps)
        out = model.decoder_output(z, mu, logvar)
        xs = x.expand(s, -1)
        t = elbo_terms(xs, out, beta, likelihood)
        g_rec = torch.autograd.grad(t.recon, (mu, logvar), retain_graph=True)
        g_kl = torch.autograd.grad(beta * t.kl, (mu, logvar), retain_graph=True)
        g_tot = torch.autograd.grad(t.loss, (mu, logvar))
        with torch.no_grad():
            recon_rows = reconstruction_nll(xs, out, likelihood)
            kl_rows = kl_per_dim(mu, logvar).sum(1)

    def arr(v, scale=1.0):
        a = (v.detach().double() * scale).numpy()
        return a[0] if single else a

    res = {"mu": mu0.double().numpy()[0], "logvar": logvar0.double().numpy()[0],
           "sigma": torch.exp(0.5 * logvar0).double().numpy()[0],
           "kl_per_dim": kl_per_dim(mu0, logvar0).double().numpy()[0],
           "eps": arr(eps), "z": arr(z), "recon_x": out.recon[0].detach().double().numpy(),
           "drecon_dmu": arr(g_rec[0], s), "drecon_dlogvar": arr(g_rec[1], s),
           "dkl_dmu": arr(g_kl[0], s), "dkl_dlogvar": arr(g_kl[1], s),
           "dL_dmu": arr(g_tot[0], s), "dL_dlogvar": arr(g_tot[1], s),
           "recon": arr(recon_rows), "kl": arr(kl_rows), "loss": arr(recon_rows + beta * kl_rows)}
    if single:
        for key in ("recon", "kl", "loss"):
            res[key] = float(res[key])
    else:  # the expectation over eps that training follows on average, estimated by the S draws
        res["mean_over_draws"] = {k: res[k].mean(0) for k in ("drecon_dmu", "drecon_dlogvar", "dkl_dmu",
                                                               "dkl_dlogvar", "dL_dmu", "dL_dlogvar")}
    return res


# =========================================================================================
# A real encoder: the Jacobian check, the estimator race, and two short training runs
# (Kingma and Welling, 2014; Williams, 1992). f(z) = -log p_theta(x | z), the reconstruction
# term of the negative ELBO for one image x, in nats (summed over pixels).
# =========================================================================================

def fmt(v: float, digits: int = 3) -> str:
    """A number for the screen: ``digits`` decimals (3 significant figures from 10^4 on).

    Never "-0.000" (a value that rounds to zero shows as 0.000) and never an infinity or "nan":
    a non-finite value gives "n/a" (callers say what the undefined quantity means instead).
    """
    v = float(v)
    if not math.isfinite(v):
        return "n/a"
    s = f"{v:.{digits}f}" if abs(v) < 1e4 else f"{v:.3g}"
    return s[1:] if s.startswith("-") and float(s) == 0.0 else s


def clean(values, digits: int = 3) -> np.ndarray:
    """``values`` rounded to ``digits`` decimals with negative zeros made positive (for tables)."""
    a = np.round(np.asarray(values, dtype=np.float64), digits)
    return a + 0.0  # -0.0 + 0.0 == +0.0


def _encode_one(model, x) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (D,) -> (x (1, D) float32, mu (K,), sigma (K,)) from the encoder, without a graph."""
    if not getattr(model, "is_vae", False):
        raise ValueError("needs a VAE (an autoencoder has no sigma)")
    xt = (x.detach().to(torch.float32) if isinstance(x, torch.Tensor)
          else torch.tensor(np.array(x, dtype=np.float32))).reshape(1, -1)
    if xt.shape[1] != model.cfg.input_dim:
        raise ValueError(f"x must have {model.cfg.input_dim} values, got {xt.shape[1]}")
    with torch.no_grad():
        mu, logvar = model.encode(xt)
    return xt, mu[0], torch.exp(0.5 * logvar[0])


def _recon_nll(model, x: torch.Tensor, z: torch.Tensor, likelihood: str | None = None) -> torch.Tensor:
    """f(z) = -log p(x | z) for each row of z (S, K), x (1, D) -> (S,), through the decoder."""
    return _recon_batch(model, x.expand(len(z), -1), z, likelihood)


def encoder_jacobian_check(model, x, eps) -> dict:
    """The chain rule through z = mu + sigma * eps, checked on a real encoder output.

    ``model``: a VAE; ``x``: one image (D,); ``eps``: one draw (K,). mu and sigma (K,) are the
    encoder's outputs for x, made leaf tensors. f(z) = -log p(x | z) (the reconstruction term).
    Autograd computes df/dmu, df/dsigma (K,) and df/dz (K,) in one backward pass; the formula is
    df/dmu = df/dz (dz/dmu = I) and df/dsigma = df/dz * eps (dz/dsigma = diag(eps)). The Jacobians
    dz/dmu and dz/dsigma (K, K) are computed by ``torch.autograd.functional.jacobian``.

    Returns float64 arrays ``mu, sigma, eps, z, df_dz, df_dmu, df_dsigma`` (K,), ``J_mu, J_sigma``
    (K, K), floats ``f`` (nats), ``max_diff_mu`` = max_j |df/dmu_j - df/dz_j|, ``max_diff_sigma`` =
    max_j |df/dsigma_j - df/dz_j eps_j|, ``max_dev_J_mu`` = max |J_mu - I|, ``max_dev_J_sigma`` =
    max |J_sigma - diag(eps)|.
    """
    xt, mu0, sigma0 = _encode_one(model, x)
    eps = torch.as_tensor(eps, dtype=torch.float32).reshape(-1)
    if eps.shape[0] != mu0.shape[0]:
        raise ValueError(f"eps must have {mu0.shape[0]} values, got {eps.shape[0]}")
    with torch.enable_grad():
        mu = mu0.clone().requires_grad_(True)
        sigma = sigma0.clone().requires_grad_(True)
        z = mu + sigma * eps
        z.retain_grad()
        f = _recon_nll(model, xt, z[None])[0]
        f.backward()
    j_mu, j_sigma = torch.autograd.functional.jacobian(lambda m, s: m + s * eps, (mu0.clone(), sigma0.clone()))
    d = lambda t: t.detach().double().numpy().copy()  # noqa: E731
    out = {"mu": d(mu0), "sigma": d(sigma0), "eps": d(eps), "z": d(z), "f": float(f.detach()),
           "df_dz": d(z.grad), "df_dmu": d(mu.grad), "df_dsigma": d(sigma.grad), "J_mu": d(j_mu), "J_sigma": d(j_sigma)}
    out["max_diff_mu"] = float(np.max(np.abs(out["df_dmu"] - out["df_dz"])))
    out["max_diff_sigma"] = float(np.max(np.abs(out["df_dsigma"] - out["df_dz"] * out["eps"])))
    out["max_dev_J_mu"] = float(np.max(np.abs(out["J_mu"] - np.eye(len(out["mu"])))))
    out["max_dev_J_sigma"] = float(np.max(np.abs(out["J_sigma"] - np.diag(out["eps"]))))
    return out


RACE_METHODS = ("pathwise", "score", "score_loo")
RACE_NAMES = {"pathwise": "pathwise (reparameterization)", "score": "score function",
              "score_loo": "score function − leave-one-out baseline"}


def _stats(a: np.ndarray) -> dict:
    """Per-column mean, variance (ddof=1) and standard error of (n, K) per-sample estimates."""
    n = a.shape[0]
    var = a.var(axis=0, ddof=1)
    return {"mean": a.mean(0), "variance": var, "stderr": np.sqrt(var / n)}


def vae_estimator_race(model, x, n: int = 2000, seed: int = 0, likelihood: str | None = None) -> dict:
    """Three estimators of the gradient of E_q[f(z)], f(z) = -log p(x | z), w.r.t. the encoder's mu and sigma.

    q = N(mu, diag(sigma^2)) is the encoder's posterior for one image ``x`` (D,). From the same n
    draws eps_s ~ N(0, I) (K,), z_s = mu + sigma * eps_s, each estimator gives n per-sample
    estimates of the (K,) gradients (Kingma and Welling, 2014; Williams, 1992):

    * ``pathwise``: df(z_s)/dmu = f'(z_s) and df(z_s)/dsigma = f'(z_s) * eps_s (autograd).
    * ``score``: f(z_s) * dlog q(z_s)/d(mu, sigma) = f(z_s) * eps_s / sigma and
      f(z_s) * (eps_s^2 - 1) / sigma (autograd on ``Normal.log_prob``).
    * ``score_loo``: (f(z_s) - b_s) times the same score, b_s = mean of f over the other n - 1 draws
      (a baseline that does not depend on z_s, so the estimator stays unbiased).

    Returns ``n``, ``K``, ``mu``, ``sigma`` (K,), ``f_mean``, ``f_std`` (nats), ``samples[m][p]``
    (n, K) float64, ``stats[m][p]`` with ``mean``, ``variance``, ``stderr`` (K,) each, where m is in
    :data:`RACE_METHODS` and p is ``"dmu"`` or ``"dsigma"``; ``ratio[m][p]`` (K,) = variance(m) /
    variance(pathwise) per dimension; and ``agreement[m][p]`` (K,) = (mean_m - mean_pathwise) / its
    standard error, computed from the per-sample differences (the draws are shared, so the two
    means are correlated): |agreement| < 4 is what two unbiased estimators give almost always.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    xt, mu0, sigma0 = _encode_one(model, x)
    k = mu0.shape[0]
    eps = standard_normal_draws(k, int(n), seed)
    with torch.enable_grad():
        mu = mu0.expand(n, k).clone().requires_grad_(True)
        sigma = sigma0.expand(n, k).clone().requires_grad_(True)
        z = mu + sigma * eps
        f = _recon_nll(model, xt, z, likelihood)  # (n,)
        g_mu, g_sigma = torch.autograd.grad(f.sum(), (mu, sigma))  # row s: the gradient of f(z_s)
        s_mu, s_sigma = torch.autograd.grad(Normal(mu, sigma).log_prob(z.detach()).sum(), (mu, sigma))
    fd = f.detach().double()
    base = (fd.sum() - fd) / (n - 1)  # leave-one-out mean of f
    d = lambda t: t.detach().double().numpy()  # noqa: E731
    samples = {
        "pathwise": {"dmu": d(g_mu), "dsigma": d(g_sigma)},
        "score": {"dmu": fd[:, None].numpy() * d(s_mu), "dsigma": fd[:, None].numpy() * d(s_sigma)},
        "score_loo": {"dmu": (fd - base)[:, None].numpy() * d(s_mu), "dsigma": (fd - base)[:, None].numpy() * d(s_sigma)},
    }
    stats = {m: {p: _stats(samples[m][p]) for p in ("dmu", "dsigma")} for m in RACE_METHODS}
    ratio, agree = {}, {}
    for m in RACE_METHODS[1:]:
        ratio[m], agree[m] = {}, {}
        for p in ("dmu", "dsigma"):
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio[m][p] = stats[m][p]["variance"] / stats["pathwise"][p]["variance"]
            diff = _stats(samples[m][p] - samples["pathwise"][p])
            agree[m][p] = diff["mean"] / diff["stderr"]
    return {"n": int(n), "K": int(k), "seed": int(seed), "mu": d(mu0), "sigma": d(sigma0),
            "f_mean": float(fd.mean()), "f_std": float(fd.std()), "samples": samples, "stats": stats,
            "ratio": ratio, "agreement": agree}


def race_summary(race: dict) -> dict:
    """Median, smallest and largest per-dimension variance ratio of each score estimator, for mu and sigma."""
    out = {}
    for m in RACE_METHODS[1:]:
        out[m] = {}
        for p in ("dmu", "dsigma"):
            r = np.asarray(race["ratio"][m][p], dtype=np.float64)
            r = r[np.isfinite(r)]
            out[m][p] = {"median": float(np.median(r)), "min": float(r.min()), "max": float(r.max())}
    return out


def encoder_training_race(model, x_train, steps: int = 200, lr: float = 1e-3, batch: int = 64, draws: int = 1,
                          seed: int = 0, eval_every: int = 20, methods: tuple[str, ...] = ("pathwise", "score"),
                          likelihood: str | None = None, progress: Callable[[float, str], None] | None = None) -> dict:
    """Train a freshly initialised encoder against the trained, frozen decoder of ``model``, once per estimator.

    Every run starts from the same initial encoder weights (seeded), sees the same minibatches of
    ``x_train`` (N, D) and the same draws eps (batch, draws, K) at every step, and uses Adam with the
    same learning rate. The objective is the negative ELBO at beta = 1, per image:
    E_q[f(z)] + KL(q(z|x) || N(0, I)) with f(z) = -log p(x | z). The KL term has a closed form
    (Kingma and Welling, 2014, Appendix B) and is differentiated exactly in every run; only the
    gradient of E_q[f(z)] differs:

    * ``pathwise``: backpropagation through z = mu + sigma * eps (the SGVB estimator).
    * ``score``: surrogate mean_s f(z_s) log q(z_s) with f detached (Williams, 1992).
    * ``score_loo``: the same with f(z_s) - b_s, b_s the mean of f over the image's other draws
      (needs ``draws`` >= 2).

    With ``draws`` = 1 and the default minibatch of 64 images, the pathwise run is the SGVB
    estimator with L = 1 sample per image (Kingma and Welling, 2014, sec. 2.3).

    Returns ``steps``, ``lr``, ``batch``, ``draws``, ``n_images``, ``eval_step`` (E,) and, per method,
    ``curves[m]`` (E,): the negative ELBO in nats per image on all of ``x_train``, estimated with one
    fixed draw per image shared by every run and every evaluation (common random numbers), so the
    curves differ only by the encoders' weights. ``progress(f, text)``, if given, is called at every
    evaluation with the finished fraction f of all the runs' steps.
    """
    import copy

    from core.losses import kl_per_dim
    from torch import nn

    if not getattr(model, "is_vae", False):
        raise ValueError("needs a VAE")
    if steps < 1 or batch < 1 or draws < 1 or eval_every < 1 or not (lr > 0):
        raise ValueError("steps, batch, draws, eval_every >= 1 and lr > 0 are required")
    if any(m not in RACE_METHODS for m in methods) or ("score_loo" in methods and draws < 2):
        raise ValueError(f"methods must come from {RACE_METHODS}; score_loo needs draws >= 2")
    xs = torch.as_tensor(np.array(x_train, dtype=np.float32))
    n_img, k = len(xs), model.cfg.latent_dim
    gen = torch.Generator().manual_seed(int(seed))
    order = [torch.randint(0, n_img, (batch,), generator=gen) for _ in range(steps)]
    eps = torch.randn(steps, batch, draws, k, generator=gen)
    eval_eps = torch.randn(n_img, k, generator=gen)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        init = copy.deepcopy(model)
        for mod in (init.encoder, init.head_mu, init.head_logvar):
            for layer in mod.modules():
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()
    for p in init.parameters():
        p.requires_grad_(False)

    def neg_elbo(m) -> float:
        with torch.no_grad():
            mu, logvar = m.encode(xs)
            z = mu + torch.exp(0.5 * logvar) * eval_eps
            rec = _recon_batch(m, xs, z, likelihood)
            return float((rec + kl_per_dim(mu, logvar).sum(1)).mean())

    eval_step = [0] + [s for s in range(eval_every, steps + 1, eval_every)]
    if eval_step[-1] != steps:
        eval_step.append(steps)
    curves = {}
    with torch.enable_grad():
        for i_method, method in enumerate(methods):
            m = copy.deepcopy(init)
            enc = [p for mod in (m.encoder, m.head_mu, m.head_logvar) for p in mod.parameters()]
            for p in enc:
                p.requires_grad_(True)
            opt = torch.optim.Adam(enc, lr=lr, foreach=True)
            curve = [neg_elbo(m)]
            for step in range(steps):
                xb = xs[order[step]]
                mu, logvar = m.encode(xb)
                sigma = torch.exp(0.5 * logvar)
                z = mu[:, None, :] + sigma[:, None, :] * eps[step]  # (batch, draws, K)
                kl = kl_per_dim(mu, logvar).sum(1).mean()
                zf = z.reshape(-1, k)
                xr = xb[:, None, :].expand(-1, draws, -1).reshape(-1, xs.shape[1])
                if method == "pathwise":
                    f = _recon_batch(m, xr, zf, likelihood)
                    loss = f.mean() + kl
                else:
                    with torch.no_grad():
                        f = _recon_batch(m, xr, zf.detach(), likelihood).reshape(batch, draws)
                        if method == "score_loo":
                            f = f - (f.sum(1, keepdim=True) - f) / (draws - 1)
                    logq = Normal(mu[:, None, :], sigma[:, None, :]).log_prob(z.detach()).sum(-1)  # (batch, draws)
                    loss = (f * logq).mean() + kl
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if step + 1 in eval_step:
                    curve.append(neg_elbo(m))
                    if progress is not None:
                        progress((i_method * steps + step + 1) / (len(methods) * steps),
                                 f"{RACE_NAMES.get(method, method)}: step {step + 1} of {steps}")
            curves[method] = np.asarray(curve, dtype=np.float64)
    return {"steps": int(steps), "lr": float(lr), "batch": int(batch), "draws": int(draws), "n_images": int(n_img),
            "seed": int(seed), "methods": tuple(methods), "eval_step": np.asarray(eval_step), "curves": curves}


# The training race runs in the background (core.jobs), keyed by the page's settings: a cold visit
# draws the rest of the page at once; its result (two short curves) is kept for a day, shared by all.
TRAINING_JOBS = Jobs(max_done=16, max_age_s=24 * 3600, max_running=1)


TRAIN_RACE = dict(steps=200, lr=1e-3, batch=64, draws=1)  # the reparam page's two short training runs
N_TRAIN_IMAGES = 256  # the first training images (outside the model's held-out split) they train on


def start_training_race(key, model, x_train, **kwargs) -> Job:
    """``encoder_training_race(model, x_train, **kwargs)`` on a background thread, under ``key``
    (the same key while it runs or after gives the same job), reporting its progress."""
    return TRAINING_JOBS.submit(key, lambda report: encoder_training_race(model, x_train, progress=report, **kwargs))


def zoo_training_race_key(dataset: str, seed: int = 0, beta: float = 1.0, latent_dim: int = 16) -> tuple:
    return ("encoder-training-race", dataset, float(beta), int(latent_dim), int(seed), tuple(sorted(TRAIN_RACE.items())))


def start_zoo_training_race(dataset: str, seed: int = 0, beta: float = 1.0, latent_dim: int = 16,
                            loader=None) -> Job:
    """The reparam page's training race for the zoo's VAE (``loader(dataset, "vae", beta, latent_dim)``,
    default ``core.zoo.pretrained``) on its first ``N_TRAIN_IMAGES`` training images, in the background;
    a finished or running job for the same settings is returned as it is (a failed one is retried).
    A server's warm-up can call this so the page's first visitor finds the curves ready."""
    from core.data import load_dataset

    key = zoo_training_race_key(dataset, seed, beta, latent_dim)
    job = TRAINING_JOBS.get(key)
    if job is not None and job.state != "failed":
        return job
    if loader is None:
        from core.zoo import pretrained as loader
    pre = loader(dataset, "vae", beta, latent_dim)
    ds = load_dataset(dataset)
    train_idx = np.setdiff1d(np.arange(len(ds.x)), np.asarray(pre.val_idx))[:N_TRAIN_IMAGES]
    return start_training_race(key, pre.model, ds.x[train_idx], seed=int(seed), **TRAIN_RACE)


def _recon_batch(model, x: torch.Tensor, z: torch.Tensor, likelihood: str | None = None) -> torch.Tensor:
    """-log p(x_i | z_i) for paired rows x (B, D), z (B, K) -> (B,)."""
    from core.losses import reconstruction_nll

    return reconstruction_nll(x, model.decoder_output(z), likelihood or model.cfg.likelihood)
