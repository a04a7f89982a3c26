"""A linear autoencoder trained with squared error, compared with PCA (Baldi and Hornik, 1989).

A linear autoencoder has no nonlinearity: z = W_e x + b_e (K numbers) and x_hat = W_d z + b_d
(D numbers). Baldi and Hornik (1989) showed that, trained to minimise the squared error, every
minimum of its loss is global and projects onto the same K-dimensional subspace as PCA's top K
principal components: the columns of W_d span that subspace, but they need not be the
principal axes themselves (any invertible K x K mixing of them gives the same reconstructions).
This module trains one and measures both claims: the principal angles between W_d's column
space and PCA's (``scipy.linalg.subspace_angles``; 0 degrees means the same subspace), and the
reconstruction error of each on held-out images.

Training is full-batch gradient descent (Adam, Kingma and Ba, 2015) on the exact mean squared
error over the training images. The mean over images of ||x_hat - x||^2 depends on the data only
through its mean m (D,) and covariance C (D, D), so each step costs O(K D^2), whatever the number
of images:

    mean_n ||A (x_n - m) + c||^2 = tr(A C A^T) + ||c||^2,
    A = W_d W_e - I,  c = W_d (W_e m + b_e) + b_d - m,
    tr(A C A^T) = tr(C) - 2 tr(W_d W_e C) + tr(W_d^T W_d W_e C W_e^T).

Nothing here uses PCA to train the autoencoder; PCA (``sklearn.decomposition.PCA``) is fitted
separately, on the same training images, only to compare.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

MAX_STEPS = 20_000


@dataclass
class LinearAE:
    """Weights of a linear autoencoder: ``w_enc`` (K, D), ``b_enc`` (K,), ``w_dec`` (D, K), ``b_dec`` (D,).

    ``history``: the training mean squared error per pixel, one value per ``record_every`` steps
    (empty for an untrained one); ``steps``: how many Adam steps were taken.
    """

    w_enc: np.ndarray
    b_enc: np.ndarray
    w_dec: np.ndarray
    b_dec: np.ndarray
    steps: int = 0
    history: list[float] = field(default_factory=list)

    @property
    def latent_dim(self) -> int:
        return int(self.w_enc.shape[0])

    def encode(self, x) -> np.ndarray:
        """z = W_e x + b_e: (N, D) -> (N, K)."""
        return np.asarray(x, dtype=np.float64) @ self.w_enc.T + self.b_enc

    def decode(self, z) -> np.ndarray:
        """x_hat = W_d z + b_d: (N, K) -> (N, D)."""
        return np.asarray(z, dtype=np.float64) @ self.w_dec.T + self.b_dec

    def reconstruct(self, x) -> np.ndarray:
        """x_hat = W_d (W_e x + b_e) + b_d: (N, D) -> (N, D)."""
        return self.decode(self.encode(x))


def _check(x, k: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"x must be (N, D) with N >= 2 images, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x contains NaN or infinite values")
    if not 1 <= int(k) < x.shape[1]:
        raise ValueError(f"the code size K must be in 1..{x.shape[1] - 1} (fewer than the {x.shape[1]} inputs), "
                         f"got {k}")
    return x


def init_linear_ae(input_dim: int, latent_dim: int, seed: int = 0) -> LinearAE:
    """The untrained starting point: W_e ~ N(0, 1/D), W_d ~ N(0, 1/K) (seeded), zero biases."""
    g = torch.Generator().manual_seed(int(seed))
    d, k = int(input_dim), int(latent_dim)
    w_e = torch.randn(k, d, generator=g, dtype=torch.float64) / d ** 0.5
    w_d = torch.randn(d, k, generator=g, dtype=torch.float64) / k ** 0.5
    return LinearAE(w_e.numpy(), np.zeros(k), w_d.numpy(), np.zeros(d))


def mse_from_moments(w_e, b_e, w_d, b_d, mean, cov):
    """The exact mean over images of ||x_hat - x||^2 / D, from the data's mean (D,) and covariance (D, D)
    (biased, 1/N). Torch tensors in, a 0-d tensor out (differentiable); see the module docstring."""
    d = mean.shape[0]
    m = w_e @ cov  # (K, D)
    s = m @ w_e.T  # (K, K) = W_e C W_e^T
    c = w_d @ (w_e @ mean + b_e) + b_d - mean  # (D,)
    return (torch.trace(cov) - 2.0 * (w_d * m.T).sum() + ((w_d.T @ w_d) * s).sum() + c @ c) / d


def train_linear_ae(x, latent_dim: int, steps: int = 3000, lr: float = 0.01, seed: int = 0,
                    record_every: int = 50) -> LinearAE:
    """Train a linear autoencoder with K = ``latent_dim`` on images ``x`` (N, D) by full-batch Adam on
    the mean squared error (no nonlinearity, no PCA involved). Same seed, same result."""
    x = _check(x, latent_dim)
    if not 0 <= int(steps) <= MAX_STEPS:
        raise ValueError(f"steps must be in 0..{MAX_STEPS}, got {steps}")
    if not 0.0 < float(lr) <= 1.0:
        raise ValueError(f"lr must be in (0, 1], got {lr}")
    start = init_linear_ae(x.shape[1], latent_dim, seed)
    mean = torch.tensor(x.mean(0))
    cov = torch.tensor(np.cov(x.T, bias=True))
    params = [torch.tensor(a, requires_grad=True) for a in (start.w_enc, start.b_enc, start.w_dec, start.b_dec)]
    opt = torch.optim.Adam(params, lr=float(lr))
    history = []
    for step in range(int(steps)):
        loss = mse_from_moments(*params, mean, cov)
        if step % record_every == 0:
            history.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        history.append(float(mse_from_moments(*params, mean, cov)))
    w_e, b_e, w_d, b_d = (p.detach().numpy().copy() for p in params)
    return LinearAE(w_e, b_e, w_d, b_d, steps=int(steps), history=history)


def principal_angles_deg(a, b) -> np.ndarray:
    """Principal angles between the column spaces of a (D, K) and b (D, K'), in degrees, largest first
    (``scipy.linalg.subspace_angles``; all 0 when the two span the same subspace)."""
    from scipy.linalg import subspace_angles

    return np.degrees(subspace_angles(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)))


def per_image_mse(x, x_hat) -> np.ndarray:
    """Mean squared error per pixel of each image: (N, D), (N, D) -> (N,)."""
    x, x_hat = np.asarray(x, dtype=np.float64), np.asarray(x_hat, dtype=np.float64)
    return np.mean((x - x_hat) ** 2, axis=1)


@dataclass
class PCAComparison:
    """A trained linear AE against PCA with the same K, on the same training images.

    ``angles_trained`` / ``angles_untrained``: principal angles (degrees, (K,)) between the decoder's
    column space and PCA's top-K subspace, after and before training; ``axis_angles``: the angle
    (degrees, (K,)) between decoder column j and principal axis j, each as a line (0..90), to show
    that the axes themselves differ; ``mse_ae``, ``mse_pca``: per-pixel MSE on the held-out images
    (mean over images), and ``mse_train_ae``, ``mse_train_pca`` on the training images;
    ``recon_ae``, ``recon_pca``: (n_show, D) reconstructions of the first ``n_show`` held-out
    images, with ``show_mse_ae``, ``show_mse_pca`` (n_show,) their per-image MSEs;
    ``explained``: the share of the training variance PCA's K components keep.
    """

    latent_dim: int
    steps: int
    angles_trained: np.ndarray
    angles_untrained: np.ndarray
    axis_angles: np.ndarray
    mse_ae: float
    mse_pca: float
    mse_train_ae: float
    mse_train_pca: float
    explained: float
    shown: np.ndarray
    recon_ae: np.ndarray
    recon_pca: np.ndarray
    show_mse_ae: np.ndarray
    show_mse_pca: np.ndarray
    history: list[float]


def compare_with_pca(x_train, x_test, latent_dim: int, steps: int = 3000, lr: float = 0.01, seed: int = 0,
                     n_show: int = 6) -> PCAComparison:
    """Train a linear AE (``train_linear_ae``) and fit ``sklearn.decomposition.PCA`` with the same K on
    ``x_train`` (N, D); compare their subspaces and their reconstructions of ``x_test`` (M, D)."""
    from sklearn.decomposition import PCA

    x_train = _check(x_train, latent_dim)
    x_test = np.asarray(x_test, dtype=np.float64)
    if x_test.ndim != 2 or x_test.shape[1] != x_train.shape[1] or len(x_test) < 1:
        raise ValueError(f"x_test must be (M, {x_train.shape[1]}), got shape {x_test.shape}")
    k = int(latent_dim)
    ae = train_linear_ae(x_train, k, steps=steps, lr=lr, seed=seed)
    pca = PCA(n_components=k, svd_solver="full").fit(x_train)
    axes = pca.components_.T  # (D, K)
    untrained = init_linear_ae(x_train.shape[1], k, seed)
    cols = ae.w_dec / np.linalg.norm(ae.w_dec, axis=0, keepdims=True)
    cos = np.clip(np.abs(np.sum(cols * axes, axis=0)), 0.0, 1.0)

    def pca_recon(x):
        return pca.inverse_transform(pca.transform(x))

    r_ae, r_pca = ae.reconstruct(x_test), pca_recon(x_test)
    e_ae, e_pca = per_image_mse(x_test, r_ae), per_image_mse(x_test, r_pca)
    n = min(int(n_show), len(x_test))
    return PCAComparison(
        latent_dim=k, steps=ae.steps,
        angles_trained=principal_angles_deg(ae.w_dec, axes),
        angles_untrained=principal_angles_deg(untrained.w_dec, axes),
        axis_angles=np.degrees(np.arccos(cos)),
        mse_ae=float(e_ae.mean()), mse_pca=float(e_pca.mean()),
        mse_train_ae=float(per_image_mse(x_train, ae.reconstruct(x_train)).mean()),
        mse_train_pca=float(per_image_mse(x_train, pca_recon(x_train)).mean()),
        explained=float(np.sum(pca.explained_variance_ratio_)),
        shown=x_test[:n], recon_ae=r_ae[:n], recon_pca=r_pca[:n], show_mse_ae=e_ae[:n], show_mse_pca=e_pca[:n],
        history=ae.history)
