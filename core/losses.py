"""The (beta-)VAE objective, split into named terms.

For one sample x with encoder q(z|x) = N(mu, diag(sigma^2)) and prior p(z) = N(0, I),
the negative ELBO is (Kingma & Welling 2014, eq. 3 and Appendix B)

    -ELBO(x) = E_q[-log p(x|z)] + KL(q(z|x) || p(z)),
    KL       = sum_j 1/2 (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)          (>= 0),

and the beta-VAE loss (Higgins et al. 2017) is  recon + beta * KL.
The reconstruction term uses one sample of z (the reparameterized one in ``out``):
- ``"bernoulli"``: -log p(x|z) = sum_d BCE(x_d, sigmoid(logit_d))  (x in [0, 1]),
- ``"gaussian"``:  -log p(x|z) = 1/2 sum_d (x_d - mean_d)^2, a unit-variance Gaussian
  up to the constant D/2 log(2 pi), which is dropped.
Every term is summed over pixels / latent dimensions and averaged over the batch.

Free bits (Kingma et al. 2016, "Improved Variational Inference with Inverse
Autoregressive Flow", eq. 15): the KL inside the objective becomes
sum_j max(lambda, KL_j), with KL_j averaged over the batch, so the optimiser gains
nothing from pushing a dimension's KL below lambda nats.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from core.models import LIKELIHOODS, ModelOutput


class LossTerms(NamedTuple):
    """All scalars are per-sample averages over the batch. ``kl_per_dim`` is (K,).

    ``loss = recon + beta * kl_objective``; ``kl_objective == kl`` when free bits is 0,
    so then ``loss = recon + beta * kl`` exactly.
    """

    loss: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor
    kl_per_dim: torch.Tensor
    kl_objective: torch.Tensor


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) elementwise, (B, K) -> (B, K). Kingma & Welling, Appendix B.

    Clamped at 0 to remove the tiny negative values rounding can give when mu=0, logvar=0.
    """
    return (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).clamp_min(0.0)


def reconstruction_nll(x: torch.Tensor, out: ModelOutput, likelihood: str) -> torch.Tensor:
    """-log p(x|z) summed over pixels, (B, D) -> (B,)."""
    if likelihood == "bernoulli":
        if out.logits is not None:
            return F.binary_cross_entropy_with_logits(out.logits, x, reduction="none").sum(1)
        return F.binary_cross_entropy(out.recon, x, reduction="none").sum(1)
    if likelihood == "gaussian":
        return 0.5 * (x - out.recon).pow(2).sum(1)
    raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")


def elbo_terms(x: torch.Tensor, out: ModelOutput, beta: float, likelihood: str, free_bits: float = 0.0) -> LossTerms:
    """Named terms of the beta-VAE objective for a batch ``x`` (B, D); see the module docstring.

    For an autoencoder (``out.logvar is None``) the KL terms are zero and loss = recon.
    """
    if not (math.isfinite(float(beta)) and beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0, got {beta}")
    recon = reconstruction_nll(x, out, likelihood).mean()
    if out.logvar is None:
        zeros = torch.zeros(out.mu.shape[1], device=x.device)
        zero = zeros.sum()
        return LossTerms(recon, recon, zero, zeros, zero)
    kl_dims = kl_per_dim(out.mu, out.logvar).mean(0)
    kl = kl_dims.sum()
    kl_obj = kl_dims.clamp_min(free_bits).sum() if free_bits > 0 else kl
    return LossTerms(recon + beta * kl_obj, recon, kl, kl_dims, kl_obj)
