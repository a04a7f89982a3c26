"""log p(x) by importance sampling, the ELBO, the gap between them, and the amortisation gap.

For a VAE with prior p(z) = N(0, I), decoder p(x|z) and encoder q(z|x) = N(mu(x), diag sigma^2(x)),
every quantity here is in nats per image, with the training loss's likelihood convention
(:mod:`core.losses`):

* ``"bernoulli"``: log p(x|z) = -sum_d BCE_with_logits(logit_d, x_d). On grey pixels (x_d strictly
  between 0 and 1) this is a cross-entropy, not the log of a normalised probability.
* ``"gaussian"``: log p(x|z) = -1/2 sum_d (x_d - mean_d)^2, a unit-variance Gaussian without its
  constant -D/2 log(2 pi).

The identity behind the page's derivation (Kingma and Welling, 2014; Jordan et al., 1999)::

    log p(x) = ELBO(x) + KL(q(z|x) || p(z|x)),
    ELBO(x)  = E_q[log p(x|z)] - KL(q(z|x) || p(z))  <=  log p(x).

The importance-weighted bound (Burda, Grosse and Salakhutdinov, 2016, "Importance Weighted
Autoencoders", eq. 8), with w_i = p(x|z_i) p(z_i) / q(z_i|x) and z_i ~ q(z|x)::

    L_k(x) = log (1/k) sum_i w_i,    E[L_1] = ELBO <= E[L_k] <= E[L_{k+1}] <= log p(x),

and L_k -> log p(x) as k grows. So ``log_likelihood`` is itself a (tight, for large k) lower
bound, and ``L_k - ELBO`` is a lower bound on the gap KL(q(z|x) || p(z|x)).

The amortisation gap (Cremer, Li and Duvenaud, 2018, "Inference Suboptimality in Variational
Autoencoders"): the encoder's q(z|x) is one network for all images; the best diagonal Gaussian
q*(z|x) for this one image has a higher ELBO. Then

    log p(x) - ELBO[q]  =  (log p(x) - ELBO[q*])  +  (ELBO[q*] - ELBO[q])
          gap                approximation gap         amortisation gap

No Streamlit here (pure PyTorch, no global RNG state: every draw uses a seeded generator).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from core.models import eval_mode

__all__ = ["log_likelihood", "log_weights", "log_likelihood_with_stderr", "elbo_estimate", "ElboEstimate",
           "optimise_posterior", "AmortisationGap", "amortisation_gap", "gap_estimate",
           "MAX_CHUNK_ELEMENTS"]

MAX_CHUNK_ELEMENTS = 1_000_000  # decoder outputs (samples x images x pixels) held at once: 4 MB in float32 (cache-friendly)
_LOG_2PI = math.log(2.0 * math.pi)


def _as_x(model, x) -> torch.Tensor:
    dev = next(model.parameters()).device
    if torch.is_tensor(x):
        xt = x.detach().to(dev, torch.float32)
    else:
        xt = torch.tensor(np.asarray(x, dtype=np.float32), device=dev)  # a copy: the input may be read-only
    if xt.ndim == 1:
        xt = xt[None, :]
    if xt.ndim != 2:
        raise ValueError(f"x must be (N, D) images, got shape {tuple(xt.shape)}")
    return xt


def log_px_given_z(model, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x|z) summed over pixels, the training loss's convention. ``logits`` (..., N, D) (the
    decoder's pre-activation output; the mean for a Gaussian decoder), ``x`` (N, D) -> (..., N)."""
    likelihood = model.cfg.likelihood
    if likelihood == "bernoulli":
        # -BCE_with_logits(l, x) = x l - softplus(l)
        return (x * logits - F.softplus(logits)).sum(-1)
    if likelihood == "gaussian":
        return -0.5 * (x - logits).pow(2).sum(-1)
    raise ValueError(f"unknown likelihood {likelihood!r}")


def _std_normal_logpdf(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last axis."""
    return -0.5 * (z.pow(2) + _LOG_2PI).sum(-1)


def _gauss_logpdf(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag exp(logvar)) summed over the last axis."""
    return -0.5 * ((z - mu).pow(2) * torch.exp(-logvar) + logvar + _LOG_2PI).sum(-1)


@torch.no_grad()
def _log_weights_given_q(model, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, k: int, seed: int,
                         max_elements: int = MAX_CHUNK_ELEMENTS) -> torch.Tensor:
    """log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x) for z_i ~ N(mu, diag exp(logvar)).

    x (N, D), mu and logvar (N, K) -> (N, k). Draws are made in chunks of samples so at most
    ``max_elements`` decoder outputs exist at once; the draws are the same whatever the chunk size
    (one generator, one (k, N, K) noise tensor drawn up front: k N K floats are small)."""
    n, d = x.shape
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    eps = torch.randn((k, n, mu.shape[1]), generator=gen, dtype=torch.float32).to(x.device)
    sigma = torch.exp(0.5 * logvar)
    per_chunk = max(1, int(max_elements // max(1, n * d)))
    out = []
    for s in range(0, k, per_chunk):
        e = eps[s:s + per_chunk]                       # (c, N, K)
        z = mu + sigma * e                             # (c, N, K)
        logits = model.decode_logits(z.reshape(-1, z.shape[-1])).reshape(len(e), n, d)
        lw = (log_px_given_z(model, logits, x) + _std_normal_logpdf(z)
              + 0.5 * (e.pow(2) + logvar + _LOG_2PI).sum(-1))  # -log q(z|x), with (z - mu)/sigma = e
        out.append(lw)
    return torch.cat(out, 0).T.contiguous()            # (N, k)


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    return int(k)


@torch.no_grad()
def log_weights(model, x, k: int = 1000, seed: int = 0) -> torch.Tensor:
    """Importance log-weights log p(x, z_i) - log q(z_i|x), z_i ~ q(z|x) from the encoder.
    ``x`` (N, D) array or tensor -> (N, k) float32 tensor (nats)."""
    k = _check_k(k)
    if not getattr(model, "is_vae", False):
        raise ValueError("log p(x) needs a VAE (a plain autoencoder has no q(z|x) or p(x|z))")
    with eval_mode(model):
        xt = _as_x(model, x)
        mu, logvar = model.encode(xt)
        return _log_weights_given_q(model, xt, mu, logvar, k, seed)


def _lse_mean(lw: torch.Tensor) -> torch.Tensor:
    """log (1/k) sum_i exp(lw_i) over the last axis."""
    return torch.logsumexp(lw, -1) - math.log(lw.shape[-1])


@torch.no_grad()
def log_likelihood(model, x, k: int = 1000, seed: int = 0) -> torch.Tensor:
    """log p(x) per image in nats, estimated by the IWAE bound L_k (Burda et al., 2016) with the
    encoder's q(z|x) as the proposal: L_k = log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x).

    ``x`` (N, D) in [0, 1] -> (N,) float32 tensor. Computed in chunks of samples, so memory stays
    bounded (:data:`MAX_CHUNK_ELEMENTS` decoder outputs at once). Same likelihood convention as the
    training loss (module docstring), so at k = 1 its mean over images equals the ELBO (minus the
    β = 1 training loss) up to sampling noise; E[L_k] does not decrease with k."""
    return _lse_mean(log_weights(model, x, k, seed))


@torch.no_grad()
def log_likelihood_with_stderr(model, x, k: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """L_k per image (N,) and its standard error (N,), by the delta method:
    se(log mean w) ~ sd(w) / (sqrt(k) mean(w)) = sd_i(w_i / mean w) / sqrt(k).
    Approximate: with heavy-tailed weights (a poor proposal) it underestimates the error."""
    lw = log_weights(model, x, k, seed).double()
    ll = _lse_mean(lw)
    k = lw.shape[-1]
    if k < 2:
        return ll.numpy(), np.full(len(ll), np.nan)
    ratio = torch.exp(lw - ll[:, None])
    return ll.numpy(), (ratio.std(-1, unbiased=True) / math.sqrt(k)).numpy()


@dataclass(frozen=True)
class ElboEstimate:
    """Per image (each (N,) float64, nats): ``recon`` = -E_q[log p(x|z)] (the reconstruction term,
    estimated with n samples), ``recon_se`` its standard error, ``kl`` = KL(q(z|x) || N(0, I)) in
    closed form, ``elbo`` = -recon - kl."""
    recon: np.ndarray
    recon_se: np.ndarray
    kl: np.ndarray
    elbo: np.ndarray


def _kl_closed(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """sum_j 1/2 (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2) (Kingma and Welling, 2014, Appendix B)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


@torch.no_grad()
def _elbo_given_q(model, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, n: int, seed: int) -> ElboEstimate:
    n_, d = x.shape
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    eps = torch.randn((n, n_, mu.shape[1]), generator=gen, dtype=torch.float32).to(x.device)
    per_chunk = max(1, int(MAX_CHUNK_ELEMENTS // max(1, n_ * d)))
    parts = []
    for s in range(0, n, per_chunk):
        z = mu + torch.exp(0.5 * logvar) * eps[s:s + per_chunk]
        logits = model.decode_logits(z.reshape(-1, z.shape[-1])).reshape(z.shape[0], n_, d)
        parts.append(log_px_given_z(model, logits, x))
    lp = torch.cat(parts, 0).double()                  # (n, N)
    recon = -lp.mean(0)
    se = lp.std(0, unbiased=True) / math.sqrt(n) if n > 1 else torch.full_like(recon, float("nan"))
    kl = _kl_closed(mu.double(), logvar.double())
    return ElboEstimate(recon.numpy(), se.numpy(), kl.numpy(), (-recon - kl).numpy())


@torch.no_grad()
def elbo_estimate(model, x, n: int = 1000, seed: int = 0) -> ElboEstimate:
    """The ELBO of each image ``x`` (N, D) under the encoder's q(z|x), split into its two terms:
    the reconstruction term by Monte Carlo with ``n`` reparameterised samples, the KL in closed form."""
    n = _check_k(n)
    with eval_mode(model):
        xt = _as_x(model, x)
        mu, logvar = model.encode(xt)
        return _elbo_given_q(model, xt, mu, logvar, n, seed)


def optimise_posterior(model, x, steps: int = 300, lr: float = 0.05, samples: int = 16,
                       seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The best diagonal Gaussian q*(z|x) for each image ``x`` (N, D) by itself (no encoder): start
    at the encoder's (mu, logvar) and maximise the ELBO over them with Adam, ``samples``
    reparameterised draws per step and a learning rate falling linearly to 0 (Cremer et al., 2018,
    optimise q per data point in the same way). The decoder stays fixed.
    Returns (mu*, logvar*), each (N, K), detached."""
    steps = _check_k(steps)
    with eval_mode(model):
        xt = _as_x(model, x)
        with torch.no_grad():
            mu0, lv0 = model.encode(xt)
        mu = mu0.clone().requires_grad_(True)
        lv = lv0.clone().requires_grad_(True)
        opt = torch.optim.Adam([mu, lv], lr=lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 - i / steps)  # linear decay: less noise at the end
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        n, d = xt.shape
        with torch.enable_grad():
            for _ in range(steps):
                eps = torch.randn((samples, n, mu.shape[1]), generator=gen).to(xt.device)
                z = mu + torch.exp(0.5 * lv) * eps
                logits = model.decode_logits(z.reshape(-1, z.shape[-1])).reshape(samples, n, d)
                neg_elbo = (-log_px_given_z(model, logits, xt).mean(0) + _kl_closed(mu, lv)).sum()
                opt.zero_grad()
                neg_elbo.backward()
                opt.step()
                sched.step()
        return mu.detach(), lv.detach()


@dataclass(frozen=True)
class AmortisationGap:
    """For one image (floats, nats): ``log_px`` (L_k with the encoder's q), ``log_px_se``;
    ``elbo_encoder`` = ELBO[q], ``elbo_best`` = ELBO[q*] (the optimised Gaussian), each estimated
    with the same n samples; ``gap`` = log_px - elbo_encoder; ``amortisation`` = elbo_best -
    elbo_encoder; ``approximation`` = log_px - elbo_best; ``kl_encoder`` and ``kl_best`` are
    KL(q || N(0, I)) of the two; ``recon_encoder`` and ``recon_best`` the reconstruction terms."""
    log_px: float
    log_px_se: float
    elbo_encoder: float
    elbo_best: float
    recon_encoder: float
    recon_best: float
    kl_encoder: float
    kl_best: float

    @property
    def gap(self) -> float:
        return self.log_px - self.elbo_encoder

    @property
    def amortisation(self) -> float:
        return self.elbo_best - self.elbo_encoder

    @property
    def approximation(self) -> float:
        return self.log_px - self.elbo_best


def amortisation_gap(model, x, k: int = 1000, steps: int = 300, lr: float = 0.05, n: int = 1000,
                     seed: int = 0) -> AmortisationGap:
    """All the numbers of the gap decomposition for ONE image ``x`` (D,) or (1, D) (see the module
    docstring). log p(x) is L_k with the encoder's proposal; both ELBOs use the same ``n`` noise draws.
    q* is the better (by that estimate) of the optimised Gaussian and the encoder's own q, so the
    amortisation gap is never negative."""
    xt = _as_x(model, x)
    if len(xt) != 1:
        raise ValueError(f"amortisation_gap takes one image, got {len(xt)}")
    ll, se = log_likelihood_with_stderr(model, xt, k=k, seed=seed)
    enc = elbo_estimate(model, xt, n=n, seed=seed + 1)
    mu_s, lv_s = optimise_posterior(model, xt, steps=steps, lr=lr, seed=seed + 2)
    with eval_mode(model):
        best = _elbo_given_q(model, xt, mu_s, lv_s, n, seed + 1)
    if best.elbo[0] < enc.elbo[0]:  # the optimiser found nothing better: the encoder's q is the best found
        best = enc
    return AmortisationGap(float(ll[0]), float(se[0]), float(enc.elbo[0]), float(best.elbo[0]),
                           float(enc.recon[0]), float(best.recon[0]), float(enc.kl[0]), float(best.kl[0]))


@torch.no_grad()
def gap_estimate(model, x, k: int = 1000, n: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The gap log p(x) - ELBO per image, estimated as L_k - ELBO (so itself a lower bound on
    KL(q(z|x) || p(z|x)), since L_k <= log p(x) on average), with its standard error
    sqrt(se(L_k)^2 + se(ELBO)^2). ``x`` (N, D) -> two (N,) float64 arrays (nats)."""
    ll, se_ll = log_likelihood_with_stderr(model, x, k=k, seed=seed)
    est = elbo_estimate(model, x, n=n, seed=seed + 1)
    return ll - est.elbo, np.sqrt(se_ll**2 + est.recon_se**2)


def gaps_by_model(models: dict, x, k: int = 1000, n: int = 1000, seed: int = 0) -> dict:
    """:func:`gap_estimate` of one image ``x`` (D,) or (1, D) under each VAE of ``models`` (beta -> model),
    in order of beta, leaving out beta = 0 (trained without the KL term, its q is nearly a point, so
    importance sampling with it as the proposal says nothing). ``{"beta": [...], "gap": [...], "se": [...]}``."""
    x1 = np.asarray(x, dtype=np.float32).reshape(1, -1)
    out = {"beta": [], "gap": [], "se": []}
    for beta in sorted(b for b in models if b > 0):
        gap, se = gap_estimate(models[beta], x1, k=k, n=n, seed=seed)
        out["beta"].append(float(beta))
        out["gap"].append(float(gap[0]))
        out["se"].append(float(se[0]))
    return out
