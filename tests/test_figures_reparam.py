"""The reparameterization page's maths additions (core.reparam: compare_estimators, running_estimate,
one_sample_backward, vae_gradients) against independent references, and its figure builders
(core.figures.reparam) under plotly's full validation."""
from __future__ import annotations

import base64
import copy
import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
import torch.nn.functional as F

from core import reparam
from core.figures import reparam as rfig
from core.models import ModelConfig, build_model


# ---- running_estimate and compare_estimators ---------------------------------------------------

def test_running_estimate_matches_direct_mean_and_standard_error():
    x = np.random.default_rng(1).normal(3.0, 2.0, 5000) + 1e6  # a large offset tests the centring
    cv = reparam.running_estimate(x, points=40)
    assert cv["n"][0] == 1 and cv["n"][-1] == 5000 and np.all(np.diff(cv["n"]) > 0)
    for k, n in enumerate(cv["n"]):
        assert cv["mean"][k] == pytest.approx(x[:n].mean(), rel=1e-12)
        if n > 1:
            assert cv["stderr"][k] == pytest.approx(x[:n].std(ddof=1) / math.sqrt(n), rel=1e-6)
    assert math.isnan(cv["stderr"][0])
    with pytest.raises(ValueError):
        reparam.running_estimate([])


@pytest.mark.parametrize("f,mu,sigma,a", [("z^2", 0.5, 1.0, 0.0), ("z^2", -1.3, 0.4, 0.0), ("(z-a)^2", 0.2, 1.5, 1.0),
                                          ("sin z", 0.7, 0.8, 0.0), ("sin z", -2.0, 2.0, 0.0)])
def test_both_estimators_are_unbiased_within_four_standard_errors(f, mu, sigma, a):
    r = reparam.compare_estimators(f, mu, sigma, n=20_000, seed=3, a=a)
    exact = reparam.analytic_gradient(f, mu, sigma, a)
    assert (r["exact"]["dmu"], r["exact"]["dsigma"]) == exact
    for m in ("reparam", "score"):
        for p, e in zip(("dmu", "dsigma"), exact):
            s = r["summary"][m][p]
            assert abs(s["mean"] - e) < 4 * s["stderr"], (m, p, s, e)
            assert r["z_score"][m][p] == pytest.approx((s["mean"] - e) / s["stderr"])
            # the summary is the plain sample mean / variance of the returned per-sample estimates
            assert s["mean"] == pytest.approx(r["samples"][m][p].mean())
            assert s["variance"] == pytest.approx(r["samples"][m][p].var(ddof=1))


def test_reparam_variance_is_lower_for_z_squared_and_matches_theory():
    mu, sigma = 0.5, 1.0
    r = reparam.compare_estimators("z^2", mu, sigma, n=200_000, seed=0)
    # Pathwise d/dmu = 2z: variance 4 sigma^2. Score d/dmu = z^2 (z - mu) / sigma^2 with z = mu + sigma eps:
    # E[X^2] = E[(mu + sigma e)^4 e^2] / sigma^2, computed from the normal moments E e^2=1, e^4=3, e^6=15.
    ex2 = (mu**4 * 1 + 6 * mu**2 * sigma**2 * 3 + sigma**4 * 15) / sigma**2
    var_score = ex2 - (2 * mu) ** 2
    assert r["summary"]["reparam"]["dmu"]["variance"] == pytest.approx(4 * sigma**2, rel=0.02)
    assert r["summary"]["score"]["dmu"]["variance"] == pytest.approx(var_score, rel=0.05)
    assert r["variance_ratio"]["dmu"] == pytest.approx(var_score / (4 * sigma**2), rel=0.06)
    assert r["variance_ratio"]["dmu"] > 2 and r["variance_ratio"]["dsigma"] > 2


def test_both_methods_see_the_same_draws():
    # Pathwise d/dmu of z^2 is 2 z_i; the score term for f = 1 ... use (z-a)^2 with a=0: score d/dmu = z^2 (z-mu)/s^2.
    mu, sigma = 0.3, 1.7
    r = reparam.compare_estimators("z^2", mu, sigma, n=500, seed=11)
    z = r["samples"]["reparam"]["dmu"] / 2.0
    np.testing.assert_allclose(r["samples"]["score"]["dmu"], z**2 * (z - mu) / sigma**2, rtol=1e-10, atol=1e-12)


def test_step_function_pathwise_is_biased_and_score_is_not():
    mu, sigma, a = 0.5, 1.0, 1.0
    r = reparam.compare_estimators("step", mu, sigma, n=20_000, seed=5, a=a)
    assert not r["samples"]["reparam"]["dmu"].any() and not r["samples"]["reparam"]["dsigma"].any()
    assert r["exact"]["dmu"] > 0.2  # phi(-0.5) = 0.352
    assert r["z_score"]["reparam"]["dmu"] == -math.inf
    assert r["variance_ratio"]["dmu"] == math.inf
    s = r["summary"]["score"]["dmu"]
    assert abs(s["mean"] - r["exact"]["dmu"]) < 4 * s["stderr"]


def test_compare_estimators_rejects_bad_input():
    for bad in (dict(f="cube", mu=0.0, sigma=1.0), dict(f="z^2", mu=0.0, sigma=0.0),
                dict(f="z^2", mu=float("nan"), sigma=1.0), dict(f="z^2", mu=0.0, sigma=1.0, n=0)):
        with pytest.raises(ValueError):
            reparam.compare_estimators(**bad)


# ---- one_sample_backward ----------------------------------------------------------------------

@pytest.mark.parametrize("f,deriv", [("z^2", lambda z, a: 2 * z), ("(z-a)^2", lambda z, a: 2 * (z - a)),
                                     ("sin z", lambda z, a: math.cos(z)), ("step", lambda z, a: 0.0)])
def test_one_sample_backward_is_the_chain_rule(f, deriv):
    v = reparam.one_sample_backward(f, mu=0.4, sigma=1.3, seed=7, a=0.9)
    assert v["z"] == pytest.approx(0.4 + 1.3 * v["eps"])
    assert v["dL_dz"] == pytest.approx(deriv(v["z"], 0.9))
    assert v["dL_dmu"] == pytest.approx(v["dL_dz"])  # dz/dmu = 1
    assert v["dL_dsigma"] == pytest.approx(v["dL_dz"] * v["eps"])  # dz/dsigma = eps
    assert v["f_z"] == pytest.approx(float(reparam.TEST_FUNCTIONS[f].f(torch.tensor(v["z"], dtype=torch.float64), 0.9)))
    assert reparam.one_sample_backward(f, 0.4, 1.3, 7, 0.9) == v  # seeded
    assert reparam.one_sample_backward(f, 0.4, 1.3, 8, 0.9)["eps"] != v["eps"]


# ---- vae_gradients ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_vae():
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae", input_dim=12, hidden_dims=(10,), latent_dim=4), device="cpu")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(12, generator=torch.Generator().manual_seed(1))
    return model, x


def _independent_recon_grad_z(model, x, z):
    """d(-log p(x|z))/dz with the Bernoulli NLL written out by hand, z a fresh leaf."""
    z = z.clone().requires_grad_(True)
    p = torch.sigmoid(model.decoder(z.reshape(1, -1)))[0]
    nll = -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum()
    (g,) = torch.autograd.grad(nll, z)
    return g


def test_vae_gradients_match_an_independent_computation(small_vae):
    model, x = small_vae
    eps = torch.tensor([0.3, -1.2, 0.8, 2.0])
    beta = 0.7
    g = reparam.vae_gradients(model, x, eps, beta=beta)
    with torch.no_grad():
        mu, logvar = model.encode(x.reshape(1, -1))
    mu, logvar = mu[0].double().numpy(), logvar[0].double().numpy()
    sigma = np.exp(0.5 * logvar)
    np.testing.assert_allclose(g["mu"], mu, rtol=1e-6)
    np.testing.assert_allclose(g["sigma"], sigma, rtol=1e-6)
    np.testing.assert_allclose(g["z"], mu + sigma * eps.numpy(), rtol=1e-5, atol=1e-6)
    # KL part, analytic: d/dmu [beta/2 (mu^2 + e^lv - 1 - lv)] = beta mu; d/dlv = beta (e^lv - 1) / 2.
    np.testing.assert_allclose(g["dkl_dmu"], beta * mu, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(g["dkl_dlogvar"], beta * (np.exp(logvar) - 1) / 2, rtol=1e-5, atol=1e-7)
    # Reconstruction part: the gradient at z (by hand) times dz/dmu = 1 and dz/dlogvar = eps * sigma / 2.
    gz = _independent_recon_grad_z(model, x, torch.tensor(g["z"], dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(g["drecon_dmu"], gz, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g["drecon_dlogvar"], gz * eps.numpy() * sigma / 2, rtol=1e-4, atol=1e-6)
    # The total from backprop of the whole loss is the sum of its parts.
    np.testing.assert_allclose(g["dL_dmu"], g["drecon_dmu"] + g["dkl_dmu"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g["dL_dlogvar"], g["drecon_dlogvar"] + g["dkl_dlogvar"], rtol=1e-5, atol=1e-6)
    assert g["loss"] == pytest.approx(g["recon"] + beta * g["kl"], rel=1e-6)
    assert g["kl"] == pytest.approx(float(np.sum(0.5 * (mu**2 + sigma**2 - 1 - logvar))), rel=1e-5)
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())  # weights untouched


def test_vae_gradients_agree_with_finite_differences(small_vae):
    model, x = small_vae
    m64 = copy.deepcopy(model).double()
    eps = torch.tensor([0.5, 0.1, -0.7, 1.1], dtype=torch.float64)
    with torch.no_grad():
        mu0, lv0 = m64.encode(x.double().reshape(1, -1))

    def loss(mu, lv):
        z = mu + torch.exp(0.5 * lv) * eps
        rec = F.binary_cross_entropy_with_logits(m64.decode_logits(z), x.double().reshape(1, -1), reduction="sum")
        return float(rec + 0.5 * (mu**2 + lv.exp() - 1 - lv).sum())

    g = reparam.vae_gradients(model, x, eps.float(), beta=1.0)
    h = 1e-5
    for j in range(4):
        e = torch.zeros_like(mu0)
        e[0, j] = h
        fd_mu = (loss(mu0 + e, lv0) - loss(mu0 - e, lv0)) / (2 * h)
        fd_lv = (loss(mu0, lv0 + e) - loss(mu0, lv0 - e)) / (2 * h)
        assert g["dL_dmu"][j] == pytest.approx(fd_mu, rel=2e-3, abs=2e-4)
        assert g["dL_dlogvar"][j] == pytest.approx(fd_lv, rel=2e-3, abs=2e-4)


def test_vae_gradients_many_draws_equal_separate_single_draws(small_vae):
    model, x = small_vae
    eps = reparam.standard_normal_draws(4, 5, seed=2)
    assert eps.shape == (5, 4)
    many = reparam.vae_gradients(model, x, eps)
    for i in range(5):
        one = reparam.vae_gradients(model, x, eps[i])
        for k in ("dL_dmu", "dL_dlogvar", "drecon_dlogvar", "z"):
            np.testing.assert_allclose(many[k][i], one[k], rtol=1e-5, atol=1e-6)
        assert many["loss"][i] == pytest.approx(one["loss"], rel=1e-6)
    np.testing.assert_allclose(many["mean_over_draws"]["dL_dmu"], many["dL_dmu"].mean(0))
    with pytest.raises(ValueError):
        reparam.vae_gradients(model, x, torch.zeros(3))
    ae = build_model(ModelConfig(kind="ae", input_dim=12, hidden_dims=(10,), latent_dim=4), device="cpu")
    with pytest.raises(ValueError):
        reparam.vae_gradients(ae, x, torch.zeros(4))


# ---- figures ------------------------------------------------------------------------------------

def arr(v) -> np.ndarray:
    """A figure array as numpy: Plotly 7 encodes numpy arrays as {"dtype", "bdata"} (base64)."""
    if isinstance(v, dict) and "bdata" in v:
        out = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        return out.reshape(v["shape"]) if "shape" in v and isinstance(v["shape"], (list, tuple)) else out
    return np.asarray(v)


def _validated(fig: go.Figure) -> dict:
    """The figure's JSON after plotly's full validation (raises on any invalid property)."""
    return go.Figure(fig.to_dict()).to_dict()


def test_backward_pass_graphs_animate_a_real_backward_pass():
    v = reparam.one_sample_backward("z^2", 0.5, 1.0, seed=0)
    fig = _validated(rfig.backward_pass_graphs(dict(v, f_label="z²")))
    frames = fig["frames"]
    assert len(frames) == 13 and [f["name"] for f in frames] == [str(i) for i in range(13)]
    steps = fig["layout"]["sliders"][0]["steps"]
    assert [s["args"][0][0] for s in steps] == [f["name"] for f in frames]
    play = fig["layout"]["updatemenus"][0]["buttons"][0]
    assert play["method"] == "animate" and play["args"][0] == [f["name"] for f in frames]

    def trace(frame, k):  # dynamic traces: lit path, pulse, blocked crosses, nodes, labels, status
        return frame["data"][k]

    first, mid, last = frames[0], frames[3], frames[-1]
    assert not trace(first, 0)["x"] and not trace(first, 2)["x"]  # nothing lit, nothing blocked yet
    assert len(trace(mid, 1)["x"]) == 2  # one pulse per panel travelling from L to z
    assert len(trace(last, 2)["x"]) == 2  # the left panel's two blocked edges
    labels = " ".join(trace(last, 4)["text"])
    assert f"∂L/∂μ = {v['dL_dmu']:.3f}" in labels and f"∂L/∂σ = {v['dL_dsigma']:.3f}" in labels
    assert "∂L/∂μ: no path" in labels and f"∂L/∂z = {v['dL_dz']:.3f}" in labels
    lit_first = trace(first, 3)["marker"]["line"]["color"]
    lit_last = trace(last, 3)["marker"]["line"]["color"]
    assert rfig.GRAD_COLOR not in lit_first
    # Final frame: left panel (mu, sigma, z, L) -> only z, L reached; right panel -> mu, sigma, z, L but not eps.
    assert lit_last == ["#555555", "#555555", rfig.GRAD_COLOR, rfig.GRAD_COLOR,
                        rfig.GRAD_COLOR, rfig.GRAD_COLOR, "#555555", rfig.GRAD_COLOR, rfig.GRAD_COLOR]
    # The figure's own data shows the final frame (a still image tells the whole story).
    n_static = len(fig["data"]) - 6
    assert fig["data"][n_static + 4]["text"] == trace(last, 4)["text"]


def test_estimator_figures_show_the_numbers():
    r = reparam.compare_estimators("sin z", 0.3, 1.2, n=3000, seed=1)
    h = _validated(rfig.estimator_histograms(r))
    bars = [t for t in h["data"] if t["type"] == "bar"]
    assert len(bars) == 4
    for b in bars:
        assert arr(b["y"]).sum() == pytest.approx(1.0)
    # bars come per column (d/dmu, d/dsigma), pathwise then score: both rows of a column share the bins
    assert np.array_equal(arr(bars[0]["x"]), arr(bars[1]["x"])) and np.array_equal(arr(bars[2]["x"]), arr(bars[3]["x"]))
    assert [b["name"] for b in bars] == [rfig.METHOD_NAMES[m] for m in ("reparam", "score")] * 2
    exact_lines = [t for t in h["data"] if t.get("name") == "exact gradient"]
    assert {t["x"][0] for t in exact_lines} == {r["exact"]["dmu"], r["exact"]["dsigma"]}
    ci = _validated(rfig.estimate_intervals(r))
    pts = {(t["x"][0], t["error_x"]["value"]) for t in ci["data"] if t.get("error_x")}
    assert (r["summary"]["score"]["dmu"]["mean"], 2 * r["summary"]["score"]["dmu"]["stderr"]) in pts
    conv = _validated(rfig.convergence(r))
    lines = [t for t in conv["data"] if t.get("mode") == "lines" and t.get("name", "").startswith("pathwise")]
    np.testing.assert_allclose(arr(lines[0]["y"]), r["convergence"]["reparam"]["dmu"]["mean"])


def test_vae_figures(small_vae):
    model, x = small_vae
    g = reparam.vae_gradients(model, x, torch.tensor([0.3, -1.2, 0.8, 2.0]))
    post = _validated(rfig.vae_posterior(g["mu"], g["sigma"], g["eps"], g["z"]))
    np.testing.assert_allclose(arr(post["data"][0]["error_y"]["array"]), g["sigma"])
    np.testing.assert_allclose(arr(post["data"][1]["y"]), g["z"])
    bars = _validated(rfig.vae_gradient_bars(g))
    assert bars["layout"]["barmode"] == "relative"
    totals = [t for t in bars["data"] if t.get("name") == "total (backprop of L)"]
    np.testing.assert_allclose(arr(totals[0]["y"]), g["dL_dmu"])
    np.testing.assert_allclose(arr(totals[1]["y"]), g["dL_dlogvar"])


# ---- no negative zero, no infinity; the race figures (issue 19 item 10, issue 20) ------------------

def test_number_labels_never_show_negative_zero():
    assert rfig._fmt(-0.0) == "0.000" and rfig._fmt(-0.0002) == "0.000" and rfig._fmt(-0.002) == "-0.002"
    assert rfig.sig_figs(-0.0) == "0" and rfig.sig_figs(float("-inf")) == "n/a" and rfig.sig_figs(-1.5e-7) == "-1.5e-07"
    # sin z at mu = 0: the exact d/dsigma is -sigma sin(0) e^{-sigma^2/2} = -0.0
    r = reparam.compare_estimators("sin z", 0.0, 1.0, n=200, seed=0)
    assert math.copysign(1.0, r["exact"]["dsigma"]) == -1.0  # the cause: a negative zero from the formula
    ci = _validated(rfig.estimate_intervals(r))
    titles = " ".join(a["text"] for a in ci["layout"]["annotations"])
    assert "exact -0" not in titles and "exact 0" in titles
    g = _validated(rfig.backward_pass_graphs(dict(reparam.one_sample_backward("step", 0.0, 1.0, 0, 5.0), f_label="s")))
    labels = " ".join(str(t) for tr in g["data"] for t in (tr.get("text") or []) if isinstance(t, str))
    assert "-0.000" not in labels


@pytest.fixture(scope="module")
def mnist_race():
    from core import zoo
    from core.data import load_dataset
    pre = zoo.pretrained("mnist-5k", "vae", 1.0, 16)
    ds = load_dataset("mnist-5k")
    return pre, ds, reparam.vae_estimator_race(pre.model, ds.x[pre.val_idx[0]], n=500, seed=0)


def test_race_ratio_bars_show_the_ratios_on_a_log_axis(mnist_race):
    _, _, r = mnist_race
    fig = _validated(rfig.race_ratio_bars(r))
    bars = [t for t in fig["data"] if t["type"] == "bar"]
    assert len(bars) == 4 and [b["name"] for b in bars[:2]] == ["score function",
                                                                "score function − leave-one-out baseline"]
    np.testing.assert_allclose(arr(bars[0]["y"]), r["ratio"]["score"]["dmu"])
    np.testing.assert_allclose(arr(bars[3]["y"]), r["ratio"]["score_loo"]["dsigma"])
    assert list(bars[0]["x"]) == [f"z{j + 1}" for j in range(16)]
    assert fig["layout"]["yaxis"]["type"] == "log" and fig["layout"]["yaxis2"]["type"] == "log"
    top = np.log10(max(np.max(r["ratio"][m][p]) for m in ("score", "score_loo") for p in ("dmu", "dsigma")))
    assert fig["layout"]["yaxis"]["range"][1] >= top  # the tallest bar fits


def test_training_race_curves_side_by_side(mnist_race):
    pre, ds, _ = mnist_race
    train = ds.x[np.setdiff1d(np.arange(len(ds.x)), pre.val_idx)[:64]]
    t = reparam.encoder_training_race(pre.model, train, steps=20, batch=16, eval_every=10, seed=0)
    fig = _validated(rfig.training_race_curves(t))
    assert [a["text"] for a in fig["layout"]["annotations"]] == ["pathwise (reparameterization)", "score function"]
    bold = [tr for tr in fig["data"] if tr["line"]["width"] == 3]
    assert len(bold) == 2 and bold[0]["xaxis"] == "x" and bold[1]["xaxis"] == "x2"
    np.testing.assert_allclose(arr(bold[0]["y"]), t["curves"]["pathwise"])
    np.testing.assert_allclose(arr(bold[1]["y"]), t["curves"]["score"])
    assert list(arr(bold[0]["x"])) == [0, 10, 20]
    assert fig["layout"]["yaxis"]["range"] == fig["layout"]["yaxis2"]["range"]  # one shared scale
