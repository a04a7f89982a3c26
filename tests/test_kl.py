"""core.kl against independent references: torch.distributions and numerical integration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import (
    Categorical,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
    kl_divergence,
)

from core import kl as K


def _torch_kl_normal(mu_p, sigma_p, mu_q, sigma_q) -> np.ndarray:
    t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))  # noqa: E731
    return kl_divergence(Normal(t(mu_p), t(sigma_p)), Normal(t(mu_q), t(sigma_q))).numpy()


def _random_spd(rng: np.random.Generator, k: int) -> np.ndarray:
    a = rng.normal(size=(k, k))
    return a @ a.T + 0.1 * k * np.eye(k)


# --------------------------------------------------------------------------- kl_normal
def test_kl_normal_matches_torch_with_broadcasting():
    rng = np.random.default_rng(0)
    mu_p = rng.normal(size=(4, 1, 3))
    sigma_p = rng.uniform(0.1, 3.0, size=(1, 5, 1))
    mu_q = rng.normal(size=(5, 3))
    sigma_q = rng.uniform(0.1, 3.0, size=(3,))
    ours = K.kl_normal(mu_p, sigma_p, mu_q, sigma_q)
    ref = _torch_kl_normal(*np.broadcast_arrays(mu_p, sigma_p, mu_q, sigma_q))
    assert isinstance(ours, np.ndarray) and ours.shape == (4, 5, 3)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
    assert np.all(ours >= 0)


def test_kl_normal_scalar_returns_float_and_zero_for_identical():
    v = K.kl_normal(0.3, 1.2, 0.3, 1.2)
    assert isinstance(v, float) and v == pytest.approx(0.0, abs=1e-15)
    assert K.kl_normal(0.0, 1.0, 1.0, 2.0) == pytest.approx(float(_torch_kl_normal(0.0, 1.0, 1.0, 2.0)))


def test_kl_is_asymmetric():
    forward = K.kl_normal(0.0, 1.0, 1.0, 3.0)
    reverse = K.kl_normal(1.0, 3.0, 0.0, 1.0)
    assert forward > 0 and reverse > 0
    assert abs(forward - reverse) > 0.5


@pytest.mark.parametrize(
    "args, message",
    [
        ((0.0, -1, 0.0, 1.0), "sigma_p must be > 0, got -1"),
        ((0.0, 1.0, 0.0, 0.0), "sigma_q must be > 0, got 0"),
        ((0.0, [1.0, -2.0], 0.0, 1.0), "sigma_p must be > 0, got -2"),
        ((np.nan, 1.0, 0.0, 1.0), "mu_p must be finite"),
        ((0.0, 1.0, np.inf, 1.0), "mu_q must be finite"),
        ((0.0, 1.0, 0.0, np.inf), "sigma_q must be finite"),
        (("a", 1.0, 0.0, 1.0), "mu_p must be a number"),
        ((np.zeros(2), 1.0, np.zeros(3), 1.0), "do not broadcast"),
    ],
)
def test_kl_normal_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        K.kl_normal(*args)


# --------------------------------------------------------------------------- kl_mvn
@pytest.mark.parametrize("k", [1, 2, 5])
def test_kl_mvn_matches_torch(k):
    rng = np.random.default_rng(k)
    for _ in range(5):
        mu0, mu1 = rng.normal(size=k), rng.normal(size=k)
        s0, s1 = _random_spd(rng, k), _random_spd(rng, k)
        ref = kl_divergence(
            MultivariateNormal(torch.tensor(mu0), covariance_matrix=torch.tensor(s0)),
            MultivariateNormal(torch.tensor(mu1), covariance_matrix=torch.tensor(s1)),
        ).item()
        assert K.kl_mvn(mu0, s0, mu1, s1) == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_kl_mvn_one_dim_and_diagonal_reduce_to_kl_normal():
    assert K.kl_mvn([0.5], [[4.0]], [-1.0], [[0.25]]) == pytest.approx(K.kl_normal(0.5, 2.0, -1.0, 0.5))
    assert K.kl_mvn(0.5, 4.0, -1.0, 0.25) == pytest.approx(K.kl_normal(0.5, 2.0, -1.0, 0.5))
    # Independent dimensions: the KL of a diagonal Gaussian is the sum over dimensions.
    mu0, sd0 = np.array([0.1, -2.0, 1.0]), np.array([0.5, 1.5, 1.0])
    mu1, sd1 = np.array([0.0, 0.5, -1.0]), np.array([1.0, 0.7, 2.0])
    expected = float(np.sum(K.kl_normal(mu0, sd0, mu1, sd1)))
    assert K.kl_mvn(mu0, np.diag(sd0**2), mu1, np.diag(sd1**2)) == pytest.approx(expected, rel=1e-12)
    assert K.kl_mvn(mu0, np.diag(sd0**2), mu0, np.diag(sd0**2)) == 0.0


@pytest.mark.parametrize(
    "args, message",
    [
        (([0, 0], [[1, 2], [2, 1]], [0, 0], np.eye(2)), "cov0 is not positive definite"),
        (([0, 0], np.eye(2), [0, 0], [[1, 0], [0, 0]]), "cov1 is not positive definite"),
        (([0, 0], [[1, 0.5], [0, 1]], [0, 0], np.eye(2)), "cov0 must be symmetric"),
        (([0, 0], np.eye(3), [0, 0], np.eye(2)), "cov0 has shape"),
        (([0, 0], np.ones((2, 3)), [0, 0], np.eye(2)), "square"),
        (([0, 0], np.eye(2), [0, 0, 0], np.eye(3)), "same length"),
        (([0, np.nan], np.eye(2), [0, 0], np.eye(2)), "mu0 must be finite"),
    ],
)
def test_kl_mvn_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        K.kl_mvn(*args)


# --------------------------------------------------------------------------- Monte Carlo + integration
CASES = [(0.0, 1.0, 1.0, 2.0), (1.5, 0.5, -0.5, 1.0), (0.0, 2.0, 0.0, 1.0)]


@pytest.mark.parametrize("mu_p, sigma_p, mu_q, sigma_q", CASES)
def test_monte_carlo_within_four_stderr(mu_p, sigma_p, mu_q, sigma_q):
    exact = K.kl_normal(mu_p, sigma_p, mu_q, sigma_q)
    est, se = K.kl_monte_carlo(mu_p, sigma_p, mu_q, sigma_q, n=20_000, seed=1)
    assert isinstance(est, float) and se > 0
    assert abs(est - exact) < 4 * se


@pytest.mark.parametrize("mu_p, sigma_p, mu_q, sigma_q", CASES)
def test_integrand_integrates_to_closed_form(mu_p, sigma_p, mu_q, sigma_q):
    x = np.linspace(-40.0, 40.0, 200_001)
    integrand = K.kl_integrand(x, mu_p, sigma_p, mu_q, sigma_q)
    assert integrand.shape == x.shape and np.all(np.isfinite(integrand))
    assert np.trapezoid(K.normal_pdf(x, mu_p, sigma_p), x) == pytest.approx(1.0, abs=1e-9)
    assert np.trapezoid(integrand, x) == pytest.approx(K.kl_normal(mu_p, sigma_p, mu_q, sigma_q), abs=1e-8)


def test_integrand_is_signed():
    x = np.linspace(-10, 10, 2001)
    integrand = K.kl_integrand(x, 0.0, 1.0, 1.0, 1.0)
    assert integrand.min() < 0 < integrand.max()


def test_monte_carlo_validation_and_determinism():
    assert K.kl_monte_carlo(0, 1, 1, 1, n=100, seed=3) == K.kl_monte_carlo(0, 1, 1, 1, n=100, seed=3)
    assert K.kl_monte_carlo(0, 1, 1, 1, n=100, seed=3) != K.kl_monte_carlo(0, 1, 1, 1, n=100, seed=4)
    for bad_n in (1, 0, 2.5, "10", True):
        with pytest.raises(ValueError, match="n must be an integer >= 2"):
            K.kl_monte_carlo(0, 1, 1, 1, n=bad_n, seed=0)
    with pytest.raises(ValueError, match="sigma_q must be > 0"):
        K.kl_monte_carlo(0, 1, 1, -1, n=10, seed=0)
    with pytest.raises(ValueError, match="single number"):
        K.kl_monte_carlo([0, 1], 1, 1, 1, n=10, seed=0)


def test_mc_convergence_uses_one_stream():
    ns = [2, 10, 100, 1000, 10_000]
    res = K.kl_mc_convergence(0.0, 1.0, 1.0, 2.0, ns=ns, seed=7)
    assert list(res["n"]) == ns
    for i, n in enumerate(ns):
        est, se = K.kl_monte_carlo(0.0, 1.0, 1.0, 2.0, n=n, seed=7)
        assert res["estimate"][i] == pytest.approx(est, rel=1e-9, abs=1e-12)
        assert res["stderr"][i] == pytest.approx(se, rel=1e-6)
    assert res["stderr"][-1] < res["stderr"][1] / 10
    exact = K.kl_normal(0.0, 1.0, 1.0, 2.0)
    assert abs(res["estimate"][-1] - exact) < 4 * res["stderr"][-1]
    default = K.kl_mc_convergence(0.0, 1.0, 1.0, 2.0, seed=0)
    assert default["n"][0] == 2 and default["n"][-1] == 10_000
    with pytest.raises(ValueError):
        K.kl_mc_convergence(0.0, 1.0, 1.0, 2.0, ns=[1, 10])
    with pytest.raises(ValueError):
        K.kl_mc_convergence(0.0, 1.0, 1.0, 2.0, ns=[])


# --------------------------------------------------------------------------- VAE term
def test_kl_to_standard_normal_matches_kl_normal_and_torch():
    rng = np.random.default_rng(3)
    mu = rng.normal(size=(6, 4))
    logvar = rng.normal(scale=2.0, size=(6, 4))
    ours = K.kl_to_standard_normal(mu, logvar)
    np.testing.assert_allclose(ours, K.kl_normal(mu, np.exp(logvar / 2), 0.0, 1.0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ours, _torch_kl_normal(mu, np.exp(logvar / 2), np.zeros_like(mu), np.ones_like(mu)), rtol=1e-10)
    assert K.kl_to_standard_normal(0.0, 0.0) == 0.0
    with pytest.raises(ValueError, match="logvar must be finite"):
        K.kl_to_standard_normal(0.0, np.nan)


# --------------------------------------------------------------------------- fitting demo
MIX = dict(weights=(0.5, 0.5), mus=(-2.0, 2.0), sigmas=(0.6, 0.6))


def _torch_mixture():
    return MixtureSameFamily(
        Categorical(probs=torch.tensor([0.5, 0.5], dtype=torch.float64)),
        Normal(torch.tensor([-2.0, 2.0], dtype=torch.float64), torch.tensor([0.6, 0.6], dtype=torch.float64)),
    )


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_fit_quadrature_kl_matches_monte_carlo(direction):
    """The quadrature objective at the start agrees with a torch Monte Carlo estimate."""
    mu0, sigma0 = 0.5, 0.5
    traj = K.fit_gaussian_to_mixture(**MIX, direction=direction, steps=1, init=(mu0, sigma0))
    p, q = _torch_mixture(), Normal(torch.tensor(mu0, dtype=torch.float64), torch.tensor(sigma0, dtype=torch.float64))
    a, b = (p, q) if direction == "forward" else (q, p)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        x = a.sample((50_000,))
    r = (a.log_prob(x) - b.log_prob(x)).numpy()
    assert abs(traj[0][2] - r.mean()) < 4 * r.std(ddof=1) / math.sqrt(r.size)


def test_reverse_kl_seeks_a_mode():
    traj = K.fit_gaussian_to_mixture(**MIX, direction="reverse")
    assert len(traj) == 201 and traj[0][:2] == (0.5, 0.5)
    mu, sigma, kl = traj[-1]
    assert abs(abs(mu) - 2.0) < 0.05 and abs(sigma - 0.6) < 0.03
    assert kl < traj[0][2]
    assert kl == pytest.approx(math.log(2), abs=0.01)  # q = one component: KL ~ log 2
    assert K.fit_gaussian_to_mixture(**MIX, direction="reverse") == traj  # deterministic


def test_forward_kl_covers_both_modes_by_moment_matching():
    traj = K.fit_gaussian_to_mixture(**MIX, direction="forward")
    mu, sigma, kl = traj[-1]
    assert abs(mu) < 0.02
    assert sigma == pytest.approx(math.sqrt(0.6**2 + 2.0**2), abs=0.01)
    assert kl < traj[0][2]


def test_fit_validation():
    with pytest.raises(ValueError, match="direction"):
        K.fit_gaussian_to_mixture(direction="sideways")
    with pytest.raises(ValueError, match="same non-zero length"):
        K.fit_gaussian_to_mixture(weights=(1.0,), mus=(0.0, 1.0), sigmas=(1.0,))
    with pytest.raises(ValueError, match="sigmas must be > 0"):
        K.fit_gaussian_to_mixture(sigmas=(0.6, 0.0))
    with pytest.raises(ValueError, match="init sigma must be > 0"):
        K.fit_gaussian_to_mixture(init=(0.0, -1.0))
    with pytest.raises(ValueError, match="lr must be > 0"):
        K.fit_gaussian_to_mixture(lr=0.0)
    with pytest.raises(ValueError, match="steps"):
        K.fit_gaussian_to_mixture(steps=0)
    traj = K.fit_gaussian_to_mixture(init=None, seed=3, steps=5)
    assert traj == K.fit_gaussian_to_mixture(init=None, seed=3, steps=5)
    assert len(traj) == 6


def test_mixture_pdf_integrates_to_one():
    x = np.linspace(-15, 15, 30_001)
    dens = K.mixture_pdf(x, (1.0, 3.0), (-1.0, 2.0), (0.5, 1.5))
    assert np.trapezoid(dens, x) == pytest.approx(1.0, abs=1e-9)
    ref = torch.exp(
        MixtureSameFamily(
            Categorical(probs=torch.tensor([0.25, 0.75], dtype=torch.float64)),
            Normal(torch.tensor([-1.0, 2.0], dtype=torch.float64), torch.tensor([0.5, 1.5], dtype=torch.float64)),
        ).log_prob(torch.tensor(x[::1000]))
    ).numpy()
    np.testing.assert_allclose(dens[::1000], ref, rtol=1e-10, atol=1e-300)


# --------------------------------------------------------------------------- reverse KL's local optima
def test_reverse_kl_from_the_centre_ends_at_the_symmetric_optimum():
    """Started at mu = 0 (the page's start slider at 0), reverse KL does not pick a mode: by symmetry the
    gradient in mu is 0, and q widens to the local optimum between the modes (mu = 0, sigma ~ 1.79)."""
    traj = K.fit_gaussian_to_mixture(**MIX, direction="reverse", steps=300, lr=0.2, init=(0.0, 0.5))
    mu, sigma, kl = traj[-1]
    assert abs(mu) < 1e-3 and sigma == pytest.approx(1.79, abs=0.02) and kl == pytest.approx(1.14, abs=0.01)
    out = K.reverse_fit_outcome(mu, sigma, MIX["mus"], MIX["sigmas"])
    assert out["kind"] == "between" and out["side"] is None and out["target"] == 0.0 and out["peaks"] == 2
    # ... and that optimum is worse than the mode-seeking one (log 2): both are local optima
    assert kl > math.log(2) + 0.3


@pytest.mark.parametrize("start, side, target", [(0.5, "right", 2.0), (-1.25, "left", -2.0)])
def test_reverse_kl_from_off_centre_ends_on_the_nearer_mode(start, side, target):
    traj = K.fit_gaussian_to_mixture(**MIX, direction="reverse", steps=300, lr=0.2, init=(start, 0.5))
    mu, sigma, _ = traj[-1]
    out = K.reverse_fit_outcome(mu, sigma, MIX["mus"], MIX["sigmas"])
    assert out["kind"] == "mode" and out["side"] == side and out["target"] == target and out["distance"] < 0.05


def test_reverse_fit_outcome_counts_peaks_and_checks_input():
    assert K.reverse_fit_outcome(0.0, 1.0, (-0.5, 0.5), (0.6, 0.6))["peaks"] == 1  # 1 apart < 2 sigma: one peak
    assert K.reverse_fit_outcome(0.0, 1.0, (0.75, -0.75), (0.6, 0.6))["peaks"] == 2
    assert K.reverse_fit_outcome(0.9, 1.0, (1.0, -1.0))["side"] == "right"
    with pytest.raises(ValueError):
        K.reverse_fit_outcome(0.0, 1.0, (1.0, 2.0, 3.0))
    with pytest.raises(ValueError):
        K.reverse_fit_outcome(0.0, -1.0, (1.0, 2.0))


# --------------------------------------------------------------------------- the VAE KL term's parts
def test_kl_parts_sum_to_the_closed_form_and_to_torch():
    rng = np.random.default_rng(3)
    mu, logvar = rng.normal(size=16), rng.normal(scale=2.0, size=16)
    parts = K.kl_standard_normal_parts(mu, logvar)
    summed = parts["mu2"] + parts["sigma2"] + parts["neg_log_sigma2"] + parts["minus_one"]
    np.testing.assert_allclose(summed, parts["total"], rtol=1e-12)
    np.testing.assert_allclose(summed, K.kl_to_standard_normal(mu, logvar), rtol=1e-12)
    ref = kl_divergence(Normal(torch.tensor(mu), torch.tensor(np.exp(0.5 * logvar))), Normal(0.0, 1.0)).numpy()
    np.testing.assert_allclose(summed, ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(parts["mu2"], 0.5 * mu**2)
    np.testing.assert_allclose(parts["neg_log_sigma2"], -0.5 * logvar)
    assert np.all(parts["minus_one"] == -0.5)
    # the sigma parts alone are >= 0 and 0 only at sigma = 1; -log sigma^2 explodes as sigma -> 0
    s = K.kl_standard_normal_parts(0.0, np.array([-20.0, 0.0, 3.0]))
    noise = s["sigma2"] + s["neg_log_sigma2"] + s["minus_one"]
    assert noise[1] == 0 and noise[0] > 9 and noise[2] > 0


# ---- the KL term on the 2-D latent map -------------------------------------------------------------------

@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 4.0])
def test_ellipse_radii_are_exp_half_logvar_from_the_encoder(beta):
    from core import zoo
    from core.data import load_dataset
    p = zoo.pretrained("digits", "vae", beta, 2)
    x = load_dataset("digits").x[np.asarray(p.val_idx)[:50]]
    post = K.encode_posteriors(p.model, x)
    with torch.no_grad():
        mu, logvar = p.model.encode(torch.as_tensor(x))
    np.testing.assert_allclose(post["sigma"], torch.exp(0.5 * logvar.double()).numpy(), rtol=1e-6)
    np.testing.assert_allclose(post["mu"], mu.double().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(K.posterior_radii(post["logvar"]), post["sigma"])
    assert post["sigma"].shape == (50, 2)


def test_beta0_2d_model_shrinks_ellipses_to_points_and_the_kl_keeps_them_open():
    from core import zoo
    from core.data import load_dataset
    x = load_dataset("digits").x
    s = {b: K.latent_map_summary(**{k: v for k, v in K.encode_posteriors(
        zoo.pretrained("digits", "vae", b, 2).model, x[:300]).items() if k in ("mu", "sigma")}) for b in (0.0, 1.0)}
    assert s[0.0]["mean_sigma"] < 0.01 < 0.1 < s[1.0]["mean_sigma"]
    assert s[0.0]["max_radius"] > 5 and s[1.0]["inside2"] > s[0.0]["inside2"]


def test_a_drawn_images_kl_parts_sum_to_torch_distributions_kl():
    """A drawing (RGBA canvas, white on black) prepared as the autoencoder page does (core.diagram), encoded
    by the 2-D β = 1 VAE: its three parts plus −K/2 are torch.distributions' KL(q(z|x) ‖ N(0, I))."""
    from core import diagram, zoo
    from core.data import load_dataset
    canvas = np.zeros((196, 196, 4), np.uint8)
    canvas[40:160, 90:110, :] = 255  # a vertical stroke: a "1"
    canvas[40:60, 70:110, :] = 255
    ds = load_dataset("digits")
    x = diagram.drawing_to_image(canvas, ds.image_shape, diagram.typical_extent(ds.x, ds.image_shape))
    assert x is not None and x.shape == (64,)
    p = zoo.pretrained("digits", "vae", 1.0, 2)
    post = K.encode_posteriors(p.model, x[None])
    parts = K.kl_parts_sums(post["mu"][0], post["logvar"][0])
    with torch.no_grad():
        mu, logvar = (t[0].double() for t in p.model.encode(torch.as_tensor(x[None])))
    ref = float(kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum())
    assert parts["mu2"] + parts["sigma2"] + parts["neg_log_sigma2"] + parts["minus_half_k"] == pytest.approx(ref, rel=1e-6)
    assert parts["total"] == pytest.approx(ref, rel=1e-6)
    assert parts["mu2"] == pytest.approx(0.5 * float((mu**2).sum()), rel=1e-6)
    assert parts["sigma2"] == pytest.approx(0.5 * float(logvar.exp().sum()), rel=1e-6)
    assert parts["neg_log_sigma2"] == pytest.approx(-0.5 * float(logvar.sum()), rel=1e-6)
    assert parts["minus_half_k"] == -1.0


# ---- the KL page's encoding, in core (issue 22: pages only render) ----------------------------------------

def _torch_kl_of_image(model, x) -> float:
    with torch.no_grad():
        mu, logvar = (t[0].double() for t in model.encode(torch.as_tensor(np.asarray(x, np.float32)[None])))
    return float(kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum())


def test_image_kl_is_torch_distributions_kl_of_the_encoders_posterior():
    from core import zoo
    from core.data import load_dataset
    x = load_dataset("digits").x
    for beta in (0.5, 1.0, 4.0):
        m = zoo.pretrained("digits", "vae", beta, 16).model
        for i in (0, 17):
            assert K.image_kl(m, x[i]) == pytest.approx(_torch_kl_of_image(m, x[i]), rel=1e-6, abs=1e-9)
            assert K.image_kl(m, x[i][None]) == K.image_kl(m, x[i])  # (D,) or (1, D)


def test_latent_map_panel_and_image_on_maps():
    from core import zoo
    from core.data import load_dataset
    ds = load_dataset("digits")
    models = {b: zoo.pretrained("digits", "vae", b, 2).model for b in (0.0, 1.0)}
    panel = K.latent_map_panel(models[1.0], ds.x[:40], ds.y[:40], 1.0)
    with torch.no_grad():
        mu, logvar = (t.double().numpy() for t in models[1.0].encode(torch.as_tensor(ds.x[:40])))
    np.testing.assert_allclose(panel["mu"], mu, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(panel["sigma"], np.exp(0.5 * logvar), rtol=1e-6)
    assert panel["beta"] == 1.0 and list(panel["y"]) == list(ds.y[:40])
    assert panel["max_radius"] == pytest.approx(np.linalg.norm(mu, axis=1).max(), rel=1e-6)
    on = K.image_on_maps(models, ds.x[5])
    assert [q["beta"] for q in on] == [0.0, 1.0]
    for q, m in zip(on, models.values()):
        assert q["parts"]["total"] == pytest.approx(_torch_kl_of_image(m, ds.x[5]), rel=1e-6)
        np.testing.assert_allclose(q["sigma"], np.exp(0.5 * q["logvar"]))
