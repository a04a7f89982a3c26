"""core.linear_ae: a linear autoencoder trained with squared error spans PCA's subspace (Baldi and
Hornik, 1989). References are independent: numpy's SVD for PCA and the angles, and the loss
computed directly from the images."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core import linear_ae as la
from core.data import load_dataset, train_val_split


@pytest.fixture(scope="module")
def split():
    x = load_dataset("digits").x.astype(np.float64)
    tr, va = train_val_split(len(x))
    return x[tr], x[va]


def _pca_axes_svd(x, k):
    """Top-k principal axes (D, k) by numpy's SVD of the centred data (not sklearn)."""
    _, _, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
    return vt[:k].T


def _angles_svd(a, b):
    """Principal angles (degrees) from the singular values of Q_a^T Q_b (Björck and Golub, 1973)."""
    qa, _ = np.linalg.qr(a)
    qb, _ = np.linalg.qr(b)
    s = np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), -1, 1)
    return np.sort(np.degrees(np.arccos(s)))[::-1]


def test_moment_loss_equals_the_mean_squared_error_over_images(split):
    x = split[0]
    ae = la.init_linear_ae(x.shape[1], 5, seed=3)
    ae.b_enc[:] = 0.1
    ae.b_dec[:] = -0.2
    direct = np.mean((ae.reconstruct(x) - x) ** 2)
    t = [torch.tensor(a) for a in (ae.w_enc, ae.b_enc, ae.w_dec, ae.b_dec)]
    moments = la.mse_from_moments(*t, torch.tensor(x.mean(0)), torch.tensor(np.cov(x.T, bias=True)))
    assert float(moments) == pytest.approx(direct, rel=1e-9)


@pytest.mark.parametrize("k", [2, 16])
def test_trained_linear_ae_spans_pcas_subspace_and_an_untrained_one_does_not(split, k):
    x_tr, x_va = split
    c = la.compare_with_pca(x_tr, x_va, k)
    ae = la.train_linear_ae(x_tr, k)  # same seed, same weights
    axes = _pca_axes_svd(x_tr, k)
    ref = _angles_svd(ae.w_dec, axes)
    np.testing.assert_allclose(c.angles_trained, ref, atol=0.05)
    assert c.angles_trained.max() < 2.0 and np.median(c.angles_trained) < 0.5
    np.testing.assert_allclose(c.angles_untrained, _angles_svd(la.init_linear_ae(x_tr.shape[1], k).w_dec, axes),
                               atol=0.05)
    assert c.angles_untrained.max() > 60.0
    # same subspace, not the same axes: some decoder column is far from its principal axis
    assert c.axis_angles.max() > 20.0
    # reconstruction errors: PCA is optimal on the training images, and the AE is within 1 % of it
    _, _, vt = np.linalg.svd(x_tr - x_tr.mean(0), full_matrices=False)
    p = vt[:k].T @ vt[:k]
    pca_train = np.mean(((x_tr - x_tr.mean(0)) @ p + x_tr.mean(0) - x_tr) ** 2)
    assert c.mse_train_pca == pytest.approx(pca_train, rel=1e-6)
    assert pca_train <= c.mse_train_ae <= 1.01 * pca_train
    pca_test = np.mean(((x_va - x_tr.mean(0)) @ p + x_tr.mean(0) - x_va) ** 2)
    assert c.mse_pca == pytest.approx(pca_test, rel=1e-6)
    assert c.mse_ae == pytest.approx(pca_test, rel=0.01)
    assert c.mse_ae == pytest.approx(np.mean((ae.reconstruct(x_va) - x_va) ** 2), rel=1e-9)
    # the shown reconstructions and their MSEs
    np.testing.assert_allclose(c.show_mse_ae, np.mean((c.recon_ae - c.shown) ** 2, axis=1))
    np.testing.assert_allclose(c.recon_pca, x_va[:6] @ p - x_tr.mean(0) @ p + x_tr.mean(0), atol=1e-9)
    # training lowered the error
    assert c.history[0] > 2 * c.history[-1]
    assert c.explained == pytest.approx(np.sum(np.var(x_tr @ vt[:k].T, 0)) / np.sum(np.var(x_tr, 0)), rel=1e-6)


def test_training_is_reproducible_and_inputs_are_checked(split):
    x = split[0][:200]
    a, b = la.train_linear_ae(x, 3, steps=50, seed=1), la.train_linear_ae(x, 3, steps=50, seed=1)
    np.testing.assert_array_equal(a.w_dec, b.w_dec)
    assert not np.array_equal(a.w_dec, la.train_linear_ae(x, 3, steps=50, seed=2).w_dec)
    for bad in (dict(latent_dim=0), dict(latent_dim=64), dict(steps=-1), dict(lr=0.0)):
        with pytest.raises(ValueError):
            la.train_linear_ae(**(dict(x=x, latent_dim=3) | bad))
    with pytest.raises(ValueError):
        la.train_linear_ae(np.full((5, 4), np.nan), 2)
    with pytest.raises(ValueError):
        la.compare_with_pca(x, x[:, :10], 2)
