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


# ---- the real encoder: Jacobian check, estimator race, training race (issue 20) -------------------

from torch.distributions import Bernoulli, Normal, kl_divergence  # noqa: E402


@pytest.fixture(scope="module")
def mnist_vae():
    """The shipped MNIST VAE (beta = 1, 16-d) and held-out image 0, as the page uses them."""
    from core import zoo
    from core.data import load_dataset

    pre = zoo.pretrained("mnist-5k", "vae", 1.0, 16)
    ds = load_dataset("mnist-5k")
    return pre, ds, ds.x[pre.val_idx[0]], ds


def _nll(model, x, z):
    """-log p(x | z) for rows of z, written with torch.distributions (validate_args off: grey pixels)."""
    logits = model.decoder(z)
    return -Bernoulli(logits=logits, validate_args=False).log_prob(torch.as_tensor(x)).sum(-1)


def test_fmt_never_shows_negative_zero_or_infinity():
    assert R.fmt(-0.0) == "0.000" and R.fmt(-0.00001, 4) == "0.0000" and R.fmt(-0.0004) == "0.000"
    assert R.fmt(-0.0006) == "-0.001" and R.fmt(1.5, 1) == "1.5" and R.fmt(-12345.0) == "-1.23e+04"
    assert R.fmt(float("inf")) == R.fmt(float("-inf")) == R.fmt(float("nan")) == "n/a"
    c = R.clean([-0.0, -1e-9, 0.12345, -0.12345], 3)
    assert [str(v) for v in c] == ["0.0", "0.0", "0.123", "-0.123"]


def test_encoder_jacobian_check_matches_an_independent_gradient(mnist_vae):
    pre, _, x, _ = mnist_vae
    eps = R.standard_normal_draws(16, 1, 3)[0]
    j = R.encoder_jacobian_check(pre.model, x, eps)
    with torch.no_grad():
        mu, logvar = pre.model.encode(torch.tensor(x)[None])
    mu, sigma = mu[0].double(), torch.exp(0.5 * logvar[0]).double()
    np.testing.assert_allclose(j["mu"], mu.numpy(), rtol=1e-6)
    np.testing.assert_allclose(j["sigma"], sigma.numpy(), rtol=1e-6)
    # independent: differentiate f(mu + sigma * eps) by central differences in float64 weights
    m64 = __import__("copy").deepcopy(pre.model).double()
    x64 = torch.tensor(x, dtype=torch.float64)
    f = lambda m_, s_: float(_nll(m64, x64, (m_ + s_ * eps.double())[None])[0])  # noqa: E731
    h = 1e-5
    for k in (0, 5, 11):
        e = torch.zeros(16, dtype=torch.float64)
        e[k] = h
        fd_mu = (f(mu + e, sigma) - f(mu - e, sigma)) / (2 * h)
        fd_sigma = (f(mu, sigma + e) - f(mu, sigma - e)) / (2 * h)
        assert j["df_dmu"][k] == pytest.approx(fd_mu, rel=1e-3, abs=1e-3)
        assert j["df_dsigma"][k] == pytest.approx(fd_sigma, rel=1e-3, abs=1e-3)
    assert j["f"] == pytest.approx(f(mu, sigma), rel=1e-5)
    np.testing.assert_allclose(j["J_mu"], np.eye(16))
    np.testing.assert_allclose(j["J_sigma"], np.diag(eps.double().numpy()), rtol=1e-6)
    np.testing.assert_allclose(j["df_dsigma"], j["df_dz"] * j["eps"], rtol=1e-5, atol=1e-5)
    assert j["max_diff_mu"] < 1e-5 and j["max_diff_sigma"] < 1e-5


def test_vae_race_per_sample_estimates_are_the_formulas(mnist_vae):
    pre, _, x, _ = mnist_vae
    r = R.vae_estimator_race(pre.model, x, n=50, seed=4)
    eps = R.standard_normal_draws(16, 50, 4).double()
    mu, sigma = torch.tensor(r["mu"]), torch.tensor(r["sigma"])
    z = (mu + sigma * eps).float().requires_grad_(True)
    f = _nll(pre.model, torch.tensor(x), z)
    (gz,) = torch.autograd.grad(f.sum(), z)
    gz, f = gz.double().numpy(), f.detach().double().numpy()
    e = eps.numpy()
    np.testing.assert_allclose(r["samples"]["pathwise"]["dmu"], gz, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(r["samples"]["pathwise"]["dsigma"], gz * e, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(r["samples"]["score"]["dmu"], f[:, None] * e / r["sigma"], rtol=1e-4)
    np.testing.assert_allclose(r["samples"]["score"]["dsigma"], f[:, None] * (e ** 2 - 1) / r["sigma"], rtol=1e-4,
                               atol=1e-2)  # eps^2 - 1 cancels near eps = 1 (float32 log_prob)
    b = (f.sum() - f) / 49
    np.testing.assert_allclose(r["samples"]["score_loo"]["dmu"], (f - b)[:, None] * e / r["sigma"], rtol=1e-3,
                               atol=1e-2)  # f - b cancels: float32 rounding of f (about 1e-5 of 85 nats)


def test_vae_race_both_estimators_are_unbiased_and_the_score_function_is_far_noisier(mnist_vae):
    pre, _, x, _ = mnist_vae
    r = R.vae_estimator_race(pre.model, x, n=20_000, seed=1)
    for m in ("score", "score_loo"):
        for p in ("dmu", "dsigma"):
            # unbiasedness: each score-function mean agrees with the pathwise mean within its standard error
            assert np.all(np.abs(r["agreement"][m][p]) < 4.5), (m, p, r["agreement"][m][p])
            # independent check of the agreement statistic for one dimension
            d = r["samples"][m][p][:, 3] - r["samples"]["pathwise"][p][:, 3]
            assert r["agreement"][m][p][3] == pytest.approx(d.mean() / (d.std(ddof=1) / math.sqrt(len(d))))
    for p in ("dmu", "dsigma"):
        var_path = r["samples"]["pathwise"][p].var(0, ddof=1)
        var_score = r["samples"]["score"][p].var(0, ddof=1)
        np.testing.assert_allclose(r["ratio"]["score"][p], var_score / var_path)
        assert np.all(r["ratio"]["score"][p] > 10)  # the brief: variance ratio > 10 (measured: 10^3 to 10^4)
        assert np.median(r["ratio"]["score"][p]) > 1000
        assert np.all(r["ratio"]["score_loo"][p] < r["ratio"]["score"][p])  # the baseline helps
    s = R.race_summary(r)
    assert s["score"]["dmu"]["median"] == pytest.approx(float(np.median(r["ratio"]["score"]["dmu"])))
    assert s["score"]["dmu"]["min"] <= s["score"]["dmu"]["median"] <= s["score"]["dmu"]["max"]


def test_vae_race_rejects_bad_input(mnist_vae):
    pre, _, x, _ = mnist_vae
    with pytest.raises(ValueError, match="n must be"):
        R.vae_estimator_race(pre.model, x, n=1)
    with pytest.raises(ValueError, match="784 values"):
        R.vae_estimator_race(pre.model, x[:10], n=10)


def test_encoder_training_race_pathwise_learns_faster(mnist_vae):
    pre, ds, _, _ = mnist_vae
    train = ds.x[np.setdiff1d(np.arange(len(ds.x)), pre.val_idx)[:128]]
    before = [p.clone() for p in pre.model.parameters()]
    t = R.encoder_training_race(pre.model, train, steps=60, batch=32, eval_every=20, seed=2)
    assert all(torch.equal(a, b) for a, b in zip(before, pre.model.parameters()))  # the shipped model is untouched
    assert list(t["eval_step"]) == [0, 20, 40, 60] and t["methods"] == ("pathwise", "score")
    cp, cs = t["curves"]["pathwise"], t["curves"]["score"]
    assert cp[0] == cs[0]  # the same initial encoder, evaluated with the same draws
    assert cp[-1] < cp[0] - 50  # the pathwise run learns
    assert cp[-1] < cs[-1]  # and ends lower than the score-function run
    again = R.encoder_training_race(pre.model, train, steps=60, batch=32, eval_every=20, seed=2)
    np.testing.assert_array_equal(again["curves"]["score"], cs)  # seeded
    # the starting value is the negative ELBO of the initial encoder, computed independently
    import copy
    from torch import nn
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        m = copy.deepcopy(pre.model)
        for mod in (m.encoder, m.head_mu, m.head_logvar):
            for layer in mod.modules():
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()
    gen = torch.Generator().manual_seed(2)
    [torch.randint(0, 128, (32,), generator=gen) for _ in range(60)]
    torch.randn(60, 32, 1, 16, generator=gen)
    eval_eps = torch.randn(128, 16, generator=gen)
    with torch.no_grad():
        xt = torch.tensor(train)
        mu, logvar = m.encode(xt)
        sd = torch.exp(0.5 * logvar)
        rec = _nll(m, xt, mu + sd * eval_eps)
        kl = kl_divergence(Normal(mu, sd), Normal(0.0, 1.0)).sum(-1)
    assert cp[0] == pytest.approx(float((rec + kl).mean()), rel=1e-4)
    with pytest.raises(ValueError, match="score_loo needs draws"):
        R.encoder_training_race(pre.model, train, steps=2, methods=("score_loo",))


def test_encoder_training_race_reports_progress_and_runs_in_the_background(mnist_vae):
    pre, ds, _, _ = mnist_vae
    train = ds.x[np.setdiff1d(np.arange(len(ds.x)), pre.val_idx)[:64]]
    seen = []
    t = R.encoder_training_race(pre.model, train, steps=40, batch=16, eval_every=20, seed=3,
                                progress=lambda f, text: seen.append((f, text)))
    assert seen == [(0.25, "pathwise (reparameterization): step 20 of 40"),
                    (0.5, "pathwise (reparameterization): step 40 of 40"),
                    (0.75, "score function: step 20 of 40"), (1.0, "score function: step 40 of 40")]
    key = ("test-race", 3)
    R.TRAINING_JOBS.discard(key)
    job = R.start_training_race(key, pre.model, train, steps=40, batch=16, eval_every=20, seed=3)
    assert R.start_training_race(key, pre.model, train, steps=40) is job  # deduplicated by key
    assert job.wait(120) and job.state == "done", job.error
    for m in ("pathwise", "score"):  # the same numbers as the direct call
        np.testing.assert_array_equal(job.result["curves"][m], t["curves"][m])
    R.TRAINING_JOBS.discard(key)


def test_zoo_training_race_job_is_the_pages_run_and_starts_once():
    """start_zoo_training_race (what the page and a server's warm-up call) trains on the first 256 training
    images outside the zoo model's held-out split, with the page's settings, once per key."""
    from core import zoo
    from core.data import load_dataset
    key = R.zoo_training_race_key("digits", 11)
    R.TRAINING_JOBS.discard(key)
    job = R.start_zoo_training_race("digits", 11)
    assert R.start_zoo_training_race("digits", 11) is job and R.TRAINING_JOBS.get(key) is job
    assert job.wait(300) and job.state == "done", job.error
    pre, ds = zoo.pretrained("digits", "vae", 1.0, 16), load_dataset("digits")
    train = ds.x[np.setdiff1d(np.arange(len(ds.x)), pre.val_idx)[:256]]
    direct = R.encoder_training_race(pre.model, train, seed=11, **R.TRAIN_RACE)
    for m in ("pathwise", "score"):
        np.testing.assert_array_equal(job.result["curves"][m], direct["curves"][m])
    assert job.result["n_images"] == 256 and job.result["steps"] == 200
    R.TRAINING_JOBS.discard(key)
