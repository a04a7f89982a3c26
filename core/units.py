"""Which latent dimensions a model uses: the one definition every page and every count calls.

Active unit (Burda, Grosse and Salakhutdinov, 2016, "Importance Weighted Autoencoders", sec. 5.2):
dimension j is active when its posterior mean varies with the input,

    A_j = Var_x( E_{q(z|x)}[z_j] ) = Var_x( mu_j(x) ) > 0.01,

measured on held-out images. A dimension that is not active has **collapsed**: whatever the image,
its posterior mean stays put (and, in a trained VAE, q(z_j|x) ~ p(z_j)). Collapse is a property
over the data. For one image, a dimension with almost no KL "carries almost no information about
this image"; it has not collapsed (see ``per_image_note``).

The held-out mean KL of a dimension, E_x KL(q(z_j|x) || N(0, 1)), is reported beside A_j. It is
an upper bound on the information the dimension carries: E_x KL_j = I(x; z_j) + KL(q(z_j) || p(z_j))
(Hoffman and Johnson, 2016), not the information itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.models import eval_mode

ACTIVE_THRESHOLD = 0.01  # Var_x(mu_j) above this: active (Burda et al., 2016)
BARELY_ACTIVE = 0.05     # Var_x(mu_j) in (0.01, 0.05]: active, but only barely (a traversal changes the image little)
SMALL_KL_NATS = 0.01     # one image's KL_j below this: "almost no information about this image"


def active_mask(mu, threshold: float = ACTIVE_THRESHOLD) -> np.ndarray:
    """Burda et al.'s criterion. ``mu``: posterior means (N, K) of held-out images -> bool (K,)."""
    mu = np.asarray(mu, dtype=np.float64)
    if mu.ndim != 2 or len(mu) < 2:
        raise ValueError(f"need posterior means of at least 2 images, shape (N, K); got shape {mu.shape}")
    return mu.var(axis=0, ddof=0) > threshold


def count_active(mu, threshold: float = ACTIVE_THRESHOLD) -> int:
    """Number of active units among the columns of ``mu`` (N, K)."""
    return int(active_mask(mu, threshold).sum())


@dataclass(frozen=True)
class UnitActivity:
    """Per-dimension activity of one model on one set of held-out images.

    ``var_mu`` (K,): Var_x(mu_j), the activity A_j. ``mean_kl`` (K,): E_x KL(q(z_j|x) || N(0, 1)) in
    nats (zeros for a plain autoencoder, which has no KL). ``active`` (K,) bool: var_mu > threshold.
    ``sigma_median`` (K,): the median over the images of the posterior standard deviation sigma_j(x)
    (NaN for a plain autoencoder): the one "how much noise does the encoder keep" figure every page
    quotes. ``n_images``: how many held-out images were encoded.
    """

    var_mu: np.ndarray
    mean_kl: np.ndarray
    active: np.ndarray
    n_images: int
    threshold: float = ACTIVE_THRESHOLD
    sigma_median: np.ndarray | None = None

    @property
    def count(self) -> int:
        return int(self.active.sum())

    @property
    def latent_dim(self) -> int:
        return int(len(self.active))

    @property
    def barely_active(self) -> list[int]:
        """Indices (0-based) of active dimensions with Var_x(mu_j) <= ``BARELY_ACTIVE``."""
        return [int(j) for j in np.flatnonzero(self.active & (self.var_mu <= BARELY_ACTIVE))]

    @property
    def collapsed(self) -> list[int]:
        """Indices (0-based) of the dimensions that are not active."""
        return [int(j) for j in np.flatnonzero(~self.active)]

    def summary(self) -> str:
        """E.g. '13 of 16 dimensions active (Var_x μ_j > 0.01 on 500 held-out images)'."""
        return (f"{self.count} of {self.latent_dim} dimensions active "
                f"(Var over images of μ_j > {self.threshold:g}, on {self.n_images} held-out images)")


@torch.no_grad()
def unit_activity(model, x, threshold: float = ACTIVE_THRESHOLD, batch_size: int = 1024) -> UnitActivity:
    """Encode held-out images ``x`` (N, D) with ``model`` (eval mode) and measure every unit.

    Works for a VAE (``encode`` returns (mu, logvar)) and a plain autoencoder (logvar None; its
    code plays the part of mu). KL per dimension: 1/2 (mu^2 + sigma^2 - 1 - log sigma^2)
    (Kingma and Welling, 2014, Appendix B), averaged over the images.
    """
    dev = next(model.parameters()).device
    # a copy: shared dataset arrays are read-only, and torch warns about wrapping those
    xt = x.to(dev).float() if torch.is_tensor(x) else torch.as_tensor(np.array(x, dtype=np.float32, copy=True)).to(dev)
    with eval_mode(model):
        mus, kls, sigmas = [], [], []
        for i in range(0, len(xt), batch_size):
            mu, logvar = model.encode(xt[i:i + batch_size])
            mus.append(mu.double().cpu())
            if logvar is not None:
                lv = logvar.double()
                sigmas.append((0.5 * lv).exp().cpu())
                kls.append((0.5 * (mu.double().pow(2) + lv.exp() - 1.0 - lv)).clamp_min(0.0).sum(0).cpu())
    mu = torch.cat(mus).numpy()
    mean_kl = (torch.stack(kls).sum(0) / len(mu)).numpy() if kls else np.zeros(mu.shape[1])
    var = mu.var(axis=0, ddof=0)
    sigma = np.median(torch.cat(sigmas).numpy(), axis=0) if sigmas else np.full(mu.shape[1], np.nan)
    return UnitActivity(var_mu=var, mean_kl=mean_kl, active=var > threshold, n_images=int(len(mu)),
                        threshold=float(threshold), sigma_median=sigma)


def heldout_activity(pretrained, dataset) -> UnitActivity:
    """Activity of a zoo model (``core.zoo.Pretrained``) on its own held-out split of ``dataset``
    (a ``core.data.Dataset``): the count every page shows for that model."""
    idx = np.asarray(pretrained.val_idx, dtype=np.int64)
    if len(idx) < 2:
        raise ValueError("this model has no held-out split recorded; rebuild it with scripts/build_zoo.py")
    return unit_activity(pretrained.model, dataset.x[idx])


def per_image_note(kl_one_image: float) -> str:
    """What one image's KL_j says about dimension j (never 'collapsed': that is a property over
    the data)."""
    if kl_one_image < SMALL_KL_NATS:
        return "carries almost no information about this image"
    return "carries information about this image"
