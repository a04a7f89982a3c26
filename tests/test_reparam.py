"""core.reparam: both gradient estimators against closed-form gradients of E[f(z)]."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core import reparam as R

N = 20_000
PARAMS = [(0.7, 1.3, 0.3), (-1.0, 0.5, 0.0), (0.0, 2.0, -0.5)]


@pytest.mark.parametrize("fname", sorted(R.TEST_FUNCTIONS))
@pytest.mark.parametrize("mu, sigma, a", PARAMS)
def test_analytic_gradient_matches_finite_differences(fname, mu, sigma, a):
    """The closed-form gradients agree with central differences of the closed-form E[f]."""
    h = 1e-6
    e = lambda m, s: R.analytic_expectation(fname, m, s, a)  # noqa: E731
    fd_mu = (e(mu + h, sigma) - e(mu - h, sigma)) / (2 * h)
    fd_sigma = (e(mu, sigma + h) - e(mu, sigma - h)) / (2 * h)
    dmu, dsigma = R.analytic_gradient(fname, mu, sigma, a)
    assert dmu == pytest.approx(fd_mu, rel=1e-6, abs=1e-7)
    assert dsigma == pytest.approx(fd_sigma, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("fname", ["z^2", "(z-a)^2", "sin z"])
@pytest.mark.parametrize("method", ["reparam", "score"])
@pytest.mark.parametrize("mu, sigma, a", PARAMS)
def test_estimators_are_unbiased_for_smooth_f(fname, method, mu, sigma, a):
    dmu, dsigma = R.gradient_estimates(fname, mu, sigma, N, method, seed=11, a=a)
    assert dmu.shape == dsigma.shape == (N,) and dmu.dtype == np.float64
    summary = R.estimator_summary(dmu, dsigma)
    true_mu, true_sigma = R.analytic_gradient(fname, mu, sigma, a)
    for key, truth in (("dmu", true_mu), ("dsigma", true_sigma)):
        s = summary[key]
        assert s["stderr"] > 0
        assert abs(s["mean"] - truth) < 4 * s["stderr"], (key, s, truth)


@pytest.mark.parametrize("mu, sigma, a", PARAMS)
def test_step_function_score_is_unbiased_but_reparam_is_biased(mu, sigma, a):
    """1[z > a] has derivative 0 a.e., so the pathwise gradient is exactly 0: biased."""
    true_mu, true_sigma = R.analytic_gradient("step", mu, sigma, a)
    assert true_mu > 0.05  # the true gradient is clearly not zero
    rp_mu, rp_sigma = R.gradient_estimates("step", mu, sigma, N, "reparam", seed=2, a=a)
    assert np.all(rp_mu == 0.0) and np.all(rp_sigma == 0.0)
    sf = R.estimator_summary(*R.gradient_estimates("step", mu, sigma, N, "score", seed=2, a=a))
    assert abs(sf["dmu"]["mean"] - true_mu) < 4 * sf["dmu"]["stderr"]
    assert abs(sf["dsigma"]["mean"] - true_sigma) < 4 * sf["dsigma"]["stderr"]


def test_per_sample_reparam_gradients_are_the_pathwise_derivatives():
    """For f = z^2: d f / d mu = 2 z and d f / d sigma = 2 z eps, with z = mu + sigma eps."""
    mu, sigma = 0.4, 1.7
    dmu, dsigma = R.gradient_estimates("z^2", mu, sigma, 50, "reparam", seed=5)
    z = dmu / 2
    eps = (z - mu) / sigma
    np.testing.assert_allclose(dsigma, 2 * z * eps, rtol=1e-12)
    # Same seed, same draws (common random numbers), so the score estimates can be checked
    # per sample: f(z) (z - mu) / sigma^2 and f(z) ((z - mu)^2 - sigma^2) / sigma^3.
    smu, ssigma = R.gradient_estimates("z^2", mu, sigma, 50, "score", seed=5)
    np.testing.assert_allclose(smu, z**2 * (z - mu) / sigma**2, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ssigma, z**2 * ((z - mu) ** 2 - sigma**2) / sigma**3, rtol=1e-10, atol=1e-12)


def test_score_function_has_higher_variance_for_z_squared():
    for mu, sigma, _ in PARAMS:
        rp = R.estimator_summary(*R.gradient_estimates("z^2", mu, sigma, N, "reparam", seed=0))
        sf = R.estimator_summary(*R.gradient_estimates("z^2", mu, sigma, N, "score", seed=0))
        assert sf["dmu"]["variance"] > rp["dmu"]["variance"]
        assert sf["dsigma"]["variance"] > rp["dsigma"]["variance"]


def test_determinism_and_global_rng_untouched():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = R.gradient_estimates("sin z", 0.2, 1.1, 500, "score", seed=4)
    b = R.gradient_estimates("sin z", 0.2, 1.1, 500, "score", seed=4)
    c = R.gradient_estimates("sin z", 0.2, 1.1, 500, "score", seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    r1 = R.gradient_estimates("z^2", 0.2, 1.1, 500, "reparam", seed=4)
    r2 = R.gradient_estimates("z^2", 0.2, 1.1, 500, "reparam", seed=4)
    np.testing.assert_array_equal(r1[0], r2[0])


def test_custom_callables():
    cube = R.gradient_estimates(lambda z: z**3, 0.5, 1.0, N, "reparam", seed=1)
    # E[z^3] = mu^3 + 3 mu sigma^2 -> d/dmu = 3 mu^2 + 3 sigma^2, d/dsigma = 6 mu sigma
    s = R.estimator_summary(*cube)
    assert abs(s["dmu"]["mean"] - (3 * 0.25 + 3)) < 4 * s["dmu"]["stderr"]
    assert abs(s["dsigma"]["mean"] - 3.0) < 4 * s["dsigma"]["stderr"]
    with_a = R.gradient_estimates(lambda z, a: (z - a) ** 2, 0.5, 1.0, 10, "reparam", seed=1, a=2.0)
    named = R.gradient_estimates("(z-a)^2", 0.5, 1.0, 10, "reparam", seed=1, a=2.0)
    np.testing.assert_allclose(with_a[0], named[0])
    builtin = R.gradient_estimates(torch.sin, 0.5, 1.0, 10, "reparam", seed=1)
    np.testing.assert_allclose(builtin[0], R.gradient_estimates("sin z", 0.5, 1.0, 10, "reparam", seed=1)[0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(method="finite-diff"), "method must be one of"),
        (dict(sigma=0.0), "sigma must be > 0"),
        (dict(sigma=-1.0), "sigma must be > 0"),
        (dict(mu=float("nan")), "mu must be finite"),
        (dict(n=0), "n must be an integer >= 1"),
        (dict(n=2.5), "n must be an integer >= 1"),
        (dict(f="z^3"), "unknown test function"),
        (dict(f=42), "f must be a name"),
        (dict(f=lambda z: z.sum()), "elementwise"),
        (dict(f=lambda z: 1.0), "must return a torch.Tensor"),
    ],
)
def test_gradient_estimates_rejects_bad_input(kwargs, message):
    args = dict(f="z^2", mu=0.0, sigma=1.0, n=10, method="reparam", seed=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        R.gradient_estimates(**args)


def test_estimator_summary_fields():
    s = R.estimator_summary(np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.0, 0.0]))
    assert s["dmu"] == {"mean": 2.0, "variance": 1.0, "stderr": pytest.approx(math.sqrt(1 / 3)), "n": 3}
    assert s["dsigma"]["variance"] == 0.0
    one = R.estimator_summary(np.array([1.0]), np.array([2.0]))
    assert math.isnan(one["dmu"]["variance"]) and one["dmu"]["mean"] == 1.0


def test_autograd_demo_facts():
    d = R.autograd_demo(0.5, 2.0, seed=0)
    assert d["sample_requires_grad"] is False and d["sample_grad_fn"] is None
    assert d["rsample_requires_grad"] is True and d["rsample_grad_fn"] is not None
    assert d["rsample_grad_fn"].endswith("Backward0")
    assert "grad_fn" in d["rsample_repr"] and "grad_fn" not in d["sample_repr"]
    assert d["dz_dmu"] == 1.0
    assert d["dz_dsigma"] == pytest.approx(d["eps"], rel=1e-12)
    assert d["rsample_value"] == pytest.approx(0.5 + 2.0 * d["eps"])
    assert "does not require grad" in d["sample_backward_error"]
    assert any("AccumulateGrad" in line for line in d["rsample_graph"])
    assert R.autograd_demo(0.5, 2.0, seed=0)["eps"] == d["eps"]
    with pytest.raises(ValueError, match="sigma must be > 0"):
        R.autograd_demo(0.0, -1.0)
