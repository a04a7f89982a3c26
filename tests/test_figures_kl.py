"""core.figures.kl and the KL page's additions to core.kl, against independent references
(torch.distributions, scipy.stats, numerical integration) and Plotly's own validation."""
from __future__ import annotations

import base64
import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from scipy import stats
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from core import kl as K
from core.figures import kl as F


D = torch.float64


def arr(v) -> np.ndarray:
    """A trace array from ``fig.to_dict()``: a list, or Plotly 7's {"dtype", "bdata"} base64 encoding."""
    if isinstance(v, dict) and "bdata" in v:
        out = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        return out.reshape(v["shape"]) if "shape" in v and isinstance(v["shape"], (list, tuple)) else out
    return np.asarray(v, dtype=float)


def validated(fig: go.Figure) -> dict:
    """The figure as a dict, after Plotly's full property validation (the builders skip it for speed)."""
    d = fig.to_dict()
    go.Figure(d)  # raises ValueError on any invalid property
    return d


def torch_kl(mu_p, s_p, mu_q, s_q) -> float:
    t = lambda v: torch.tensor(float(v), dtype=torch.float64)  # noqa: E731
    return float(kl_divergence(Normal(t(mu_p), t(s_p)), Normal(t(mu_q), t(s_q))))


# ---- additions to core.kl ------------------------------------------------------------------------------

@pytest.mark.parametrize("params", [(0, 1, 1, 1.5), (1.3, 0.7, -2.1, 2.4), (-5, 0.1, 5, 5), (2, 3, 2, 3)])
def test_kl_normal_terms_sum_to_torch(params):
    terms = K.kl_normal_terms(*params)
    assert terms[2] == -0.5 and terms[0] == pytest.approx(math.log(params[3] / params[1]))
    assert sum(terms) == pytest.approx(torch_kl(*params), rel=1e-12, abs=1e-12)


def test_kl_normal_terms_rejects_bad_sigma():
    with pytest.raises(ValueError, match="sigma_q"):
        K.kl_normal_terms(0, 1, 0, 0)


def test_kl_mvn_terms_match_torch_and_definitions():
    mu0, mu1 = np.array([1.0, 0.5]), np.array([-0.3, 0.2])
    c0, c1 = K.cov_2d(1.5, 0.7, 0.6), K.cov_2d(0.9, 1.3, -0.4)
    t = K.kl_mvn_terms(mu0, c0, mu1, c1)
    inv1 = np.linalg.inv(c1)
    d = mu1 - mu0
    assert t["trace"] == pytest.approx(np.trace(inv1 @ c0))
    assert t["mahalanobis"] == pytest.approx(d @ inv1 @ d)
    assert t["logdet"] == pytest.approx(math.log(np.linalg.det(c1) / np.linalg.det(c0)))
    assert t["k"] == 2
    ref = float(kl_divergence(MultivariateNormal(torch.tensor(mu0), torch.tensor(c0)),
                              MultivariateNormal(torch.tensor(mu1), torch.tensor(c1))))
    assert t["kl"] == pytest.approx(ref, rel=1e-10)
    assert 0.5 * (t["trace"] + t["mahalanobis"] - t["k"] + t["logdet"]) == pytest.approx(ref, rel=1e-10)


def test_cov_2d_and_its_errors():
    c = K.cov_2d(2.0, 0.5, -0.3)
    np.testing.assert_allclose(c, [[4.0, -0.3], [-0.3, 0.25]])
    assert np.all(np.linalg.eigvalsh(c) > 0)
    for bad in ((0, 1, 0), (1, -1, 0), (1, 1, 1.0), (1, 1, -1.2), (1, 1, float("nan"))):
        with pytest.raises(ValueError):
            K.cov_2d(*bad)


def test_mixture_moments_match_sampling_reference():
    w, m, s = (0.3, 0.7), (-2.0, 1.5), (0.5, 1.2)
    mean, sd = K.mixture_moments(w, m, s)
    # Exact reference through scipy: E[x] and E[x^2] by numerical integration of the mixture density.
    from scipy.integrate import quad
    pdf = lambda x: sum(wi * stats.norm.pdf(x, mi, si) for wi, mi, si in zip(w, m, s))  # noqa: E731
    e1 = quad(lambda x: x * pdf(x), -30, 30)[0]
    e2 = quad(lambda x: x * x * pdf(x), -30, 30)[0]
    assert mean == pytest.approx(e1, abs=1e-8)
    assert sd == pytest.approx(math.sqrt(e2 - e1**2), abs=1e-8)


def test_forward_fit_reaches_moment_matching_and_reverse_a_mode():
    """The settings the page uses (300 Adam steps, lr 0.2) converge for its whole slider range corners."""
    for sep, start in ((6.0, -3.0), (4.0, 0.5), (1.0, 3.0)):
        mix = dict(weights=(0.5, 0.5), mus=(-sep / 2, sep / 2), sigmas=(0.6, 0.6))
        mean, sd = K.mixture_moments(**mix)
        fwd = K.fit_gaussian_to_mixture(**mix, direction="forward", steps=300, lr=0.2, init=(start, 0.5))
        assert fwd[-1][0] == pytest.approx(mean, abs=0.02) and fwd[-1][1] == pytest.approx(sd, rel=0.01)
        rev = K.fit_gaussian_to_mixture(**mix, direction="reverse", steps=300, lr=0.2, init=(start, 0.5))
        if sep >= 4:  # well separated: reverse KL sits on the mode on the side it started from
            assert rev[-1][0] == pytest.approx(math.copysign(sep / 2, start), abs=0.05)
            assert rev[-1][1] == pytest.approx(0.6, abs=0.05)
            assert rev[-1][2] == pytest.approx(math.log(2), abs=0.01)


# ---- formatting and LaTeX ------------------------------------------------------------------------------

def test_fmt():
    assert F.fmt(1.0) == "1" and F.fmt(-0.0) == "0" and F.fmt(1.25) == "1.25" and F.fmt(1.23456) == "1.235"
    assert F.fmt(-2.5) == "-2.5" and F.fmt(0.1) == "0.1" and F.fmt(-0.0004) == "0"


def test_latex_kl_normal_substitutes_numbers_and_total():
    tex = F.latex_kl_normal(1.3, 0.7, -2.1, 2.4, "p", "q")
    assert r"\log\frac{2.4}{0.7}" in tex
    assert "(1.3 - (-2.1))^2" in tex and r"2\cdot 2.4^2" in tex
    assert f"{torch_kl(1.3, 0.7, -2.1, 2.4):.4f}" in tex
    t = K.kl_normal_terms(1.3, 0.7, -2.1, 2.4)
    assert f"{t[0]:.4f}" in tex and f"{t[1]:.4f}" in tex
    swapped = F.latex_kl_normal(-2.1, 2.4, 1.3, 0.7, "q", "p")
    assert r"\mathrm{KL}(q\,\|\,p)" in swapped and f"{torch_kl(-2.1, 2.4, 1.3, 0.7):.4f}" in swapped


def test_latex_vae_kl_and_mvn():
    tex = F.latex_vae_kl(1.0, -1.0)
    ref = float(kl_divergence(Normal(torch.tensor(1.0, dtype=torch.float64), torch.tensor(math.exp(-0.5), dtype=torch.float64)),
                              Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))))
    assert f"{ref:.4f}" in tex and f"{math.exp(-1):.4f}" in tex and "(-1)" in tex
    c = K.cov_2d(1.5, 0.7, 0.6)
    tex = F.latex_kl_mvn([1, 0.5], c, [0, 0], np.eye(2))
    assert f"{K.kl_mvn([1, 0.5], c, [0, 0], np.eye(2)):.4f}" in tex and "- 2" in tex


# ---- figures ---------------------------------------------------------------------------------------------

def test_density_figure_curves_and_signed_area():
    mu_p, s_p, mu_q, s_q = 0.5, 0.8, -1.0, 1.7
    d = validated(F.density_figure(mu_p, s_p, mu_q, s_q))
    x = arr(d["data"][0]["x"]).astype(np.float64)  # sent as float32
    assert np.all(np.diff(x) > 0) and x[0] <= -1.0 - 4.5 * 1.7 + 1e-5 and x[-1] >= 0.5 + 4.5 * 0.8 - 1e-5
    np.testing.assert_allclose(arr(d["data"][0]["y"]), stats.norm.pdf(x, mu_p, s_p), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(arr(d["data"][1]["y"]), stats.norm.pdf(x, mu_q, s_q), rtol=1e-5, atol=1e-9)
    integrand = arr(d["data"][4]["y"]).astype(np.float64)
    np.testing.assert_allclose(integrand, stats.norm.pdf(x, mu_p, s_p) * (stats.norm.logpdf(x, mu_p, s_p)
                                                                         - stats.norm.logpdf(x, mu_q, s_q)), rtol=1e-4, atol=1e-7)
    pos, neg = arr(d["data"][2]["y"]), arr(d["data"][3]["y"])
    assert np.all(pos >= 0) and np.all(neg <= 0) and np.allclose(pos + neg, integrand)
    assert neg.min() < 0  # this pair has a region where q > p
    # The shaded signed area is the KL: trapezoid on the drawn grid vs torch.
    assert np.trapezoid(integrand, x) == pytest.approx(torch_kl(mu_p, s_p, mu_q, s_q), rel=2e-3)
    assert f"{torch_kl(mu_p, s_p, mu_q, s_q):.4f}" in d["layout"]["annotations"][1]["text"]
    assert d["data"][3]["fillpattern"]["shape"] == "/"  # the negative part is hatched, not only coloured


def test_density_grid_resolves_a_narrow_peak_next_to_a_wide_one():
    d = validated(F.density_figure(5.0, 0.1, -5.0, 5.0))
    x, p = arr(d["data"][0]["x"]).astype(np.float64), arr(d["data"][0]["y"]).astype(np.float64)
    assert np.sum(np.abs(x - 5.0) < 0.1) >= 20  # many points inside p's ±1σ
    assert p.max() == pytest.approx(stats.norm.pdf(0, 0, 0.1), rel=1e-3)
    assert np.trapezoid(arr(d["data"][4]["y"]).astype(np.float64), x) == pytest.approx(torch_kl(5, 0.1, -5, 5), rel=2e-3)


def test_density_figure_identical_distributions_have_zero_integrand():
    d = validated(F.density_figure(0, 1, 0, 1))
    assert np.allclose(arr(d["data"][4]["y"]), 0.0)
    assert "= 0.0000 nats" in d["layout"]["annotations"][1]["text"]


def test_mc_convergence_figure_band_and_current_point():
    res = K.kl_mc_convergence(0, 1, 1, 1.5, ns=[10, 100, 1000, 10000], seed=3)
    est, se = K.kl_monte_carlo(0, 1, 1, 1.5, n=1000, seed=3)
    d = validated(F.mc_convergence_figure(res["n"], res["estimate"], res["stderr"], K.kl_normal(0, 1, 1, 1.5), 1000, est))
    np.testing.assert_allclose(arr(d["data"][0]["y"]), res["estimate"] + 2 * res["stderr"])
    np.testing.assert_allclose(arr(d["data"][1]["y"]), res["estimate"] - 2 * res["stderr"])
    np.testing.assert_allclose(arr(d["data"][3]["y"]), [torch_kl(0, 1, 1, 1.5)] * 2)
    assert d["layout"]["xaxis"]["type"] == "log"
    assert arr(d["data"][4]["y"])[0] == pytest.approx(arr(d["data"][2]["y"])[2])  # the diamond sits on the curve
    assert se > 0


def test_fit_animation_frames_buttons_and_slider():
    mix = dict(weights=(0.5, 0.5), mus=(-2.0, 2.0), sigmas=(0.6, 0.6))
    fwd = K.fit_gaussian_to_mixture(**mix, direction="forward", steps=60, lr=0.2)
    rev = K.fit_gaussian_to_mixture(**mix, direction="reverse", steps=60, lr=0.2)
    d = validated(F.fit_animation_figure(mix["weights"], mix["mus"], mix["sigmas"], fwd, rev))
    idx = F.frame_indices(len(fwd))
    assert idx[0] == 0 and idx[-1] == len(fwd) - 1 and idx == sorted(set(idx))
    frames = d["frames"]
    assert [f["name"] for f in frames] == [str(i) for i in idx]
    assert all(f["traces"] == [2, 5] for f in frames)
    x = arr(d["data"][2]["x"]).astype(np.float64)
    np.testing.assert_allclose(arr(d["data"][0]["y"]), 0.5 * stats.norm.pdf(x, -2, 0.6) + 0.5 * stats.norm.pdf(x, 2, 0.6),
                               rtol=1e-5, atol=1e-9)
    last = frames[-1]
    np.testing.assert_allclose(arr(last["data"][0]["y"]), stats.norm.pdf(x, fwd[-1][0], fwd[-1][1]), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(arr(last["data"][1]["y"]), stats.norm.pdf(x, rev[-1][0], rev[-1][1]), rtol=1e-5, atol=1e-7)
    assert f"KL={rev[-1][2]:.3f}" in last["layout"]["annotations"][1]["text"]
    assert frames[0]["data"][0]["y"] != last["data"][0]["y"]  # the animation moves
    labels = [b["label"] for b in d["layout"]["updatemenus"][0]["buttons"]]
    assert any("Play" in s for s in labels) and any("Pause" in s for s in labels)
    assert len(d["layout"]["sliders"][0]["steps"]) == len(frames)
    with pytest.raises(ValueError):
        F.fit_animation_figure(mix["weights"], mix["mus"], mix["sigmas"], fwd, rev[:-1])


def test_ellipse_points_are_at_the_mahalanobis_radius():
    mu, cov = np.array([1.0, -0.5]), K.cov_2d(1.5, 0.4, 0.8)
    inv = np.linalg.inv(cov)
    for r in (1, 2):
        pts = F.ellipse_points(mu, cov, r) - mu
        np.testing.assert_allclose(np.einsum("ni,ij,nj->n", pts, inv, pts), r * r, rtol=1e-10)
    with pytest.raises(ValueError, match="positive definite"):
        F.ellipse_points(mu, np.array([[1.0, 2.0], [2.0, 1.0]]), 1)


def test_mvn_figure():
    d = validated(F.mvn_figure([1, 0.5], K.cov_2d(1.5, 0.7, 0.6), [0, 0], np.eye(2)))
    assert len(d["data"]) == 6 and d["layout"]["yaxis"]["scaleanchor"] == "x"
    q1 = np.stack([arr(d["data"][3]["x"]), arr(d["data"][3]["y"])], axis=1)
    np.testing.assert_allclose(np.linalg.norm(q1, axis=1), 1.0)  # q = N(0, I): the 1σ ellipse is the unit circle


def test_vae_kl_map_values_and_points():
    dims_mu, dims_lv = np.array([0.0, 1.5, -2.0]), np.array([0.0, -3.0, -7.5])
    d = validated(F.vae_kl_map(1.0, -1.0, dims_mu, dims_lv))
    c = d["data"][0]
    mg, lg = arr(c["x"]).astype(np.float64), arr(c["y"]).astype(np.float64)
    z = arr(c["z"]).reshape(len(lg), len(mg))
    for i, j in ((17, 53), (0, 0), (len(lg) - 1, len(mg) // 2)):
        ref = float(kl_divergence(Normal(torch.tensor(mg[j], dtype=D), torch.tensor(math.exp(lg[i] / 2), dtype=D)),
                                  Normal(torch.tensor(0.0, dtype=D), torch.tensor(1.0, dtype=D))))
        assert z[i, j] == pytest.approx(ref, rel=1e-5)
    assert z.min() >= 0 and lg.min() <= -8.0  # the range grew to include the dimension at log σ² = -7.5
    assert np.unravel_index(z.argmin(), z.shape) == (np.abs(lg).argmin(), np.abs(mg).argmin())  # minimum at the prior
    np.testing.assert_allclose(arr(d["data"][2]["x"]), dims_mu)
    star = d["data"][-1]
    assert star["x"] == [1.0] and star["y"] == [-1.0]
    assert f"{K.kl_to_standard_normal(1.0, -1.0):.3f}" in star["text"][0]


def test_posterior_vs_prior_intervals_and_small_kl_dimensions():
    mu = np.array([0.0, 1.2, -0.4])
    logvar = np.array([0.0, -2.0, -0.5])
    d = validated(F.posterior_vs_prior(mu, logvar, threshold=0.01))
    names = [t["name"] for t in d["data"]]
    active = d["data"][names.index("KL > 0.01 nats for this image: μ ± 1.96σ")]
    collapsed = d["data"][names.index("KL ≤ 0.01 nats: almost no information about this image")]
    assert list(active["y"]) == ["z2", "z3"] and list(collapsed["y"]) == ["z1"]
    # one image cannot show collapse (a property over the data): the figure never says it
    assert "collaps" not in str(d).lower() and "ignored" not in str(d).lower()
    np.testing.assert_allclose(arr(active["error_x"]["array"]), stats.norm.ppf(0.975) * np.exp(logvar[1:] / 2))
    rect = d["layout"]["shapes"][0]
    assert rect["x0"] == pytest.approx(-stats.norm.ppf(0.975)) and rect["x1"] == pytest.approx(stats.norm.ppf(0.975))


# ---- one image's KL in parts, the ELBO waterfall, the gap per beta, the shared KL bars -----------------

def test_kl_parts_figure_sums_to_the_closed_form_and_torch():
    rng = np.random.default_rng(0)
    mu, logvar = rng.normal(size=16), rng.normal(scale=1.5, size=16)
    d = validated(F.kl_parts_figure(mu, logvar))
    assert [t["name"] for t in d["data"][:4]] == list(K.KL_PART_NAMES) and d["layout"]["barmode"] == "relative"
    stacked = sum(arr(t["y"]) for t in d["data"][:4])
    ref = kl_divergence(Normal(torch.tensor(mu), torch.tensor(np.exp(logvar / 2))), Normal(0.0, 1.0)).numpy()
    np.testing.assert_allclose(stacked, ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(arr(d["data"][4]["y"]), ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(arr(d["data"][0]["y"]), mu**2 / 2)
    np.testing.assert_allclose(arr(d["data"][2]["y"]), -logvar / 2)


def test_elbo_waterfall_adds_up():
    d = validated(F.elbo_waterfall(recon=83.94, kl=18.29, log_px=-99.17, log_px_se=0.17, k=1000))
    wf, err = d["data"]
    assert list(wf["measure"]) == ["absolute", "relative", "total", "relative", "total"]
    y = arr(wf["y"])
    assert y[0] == -83.94 and y[1] == -18.29 and y[2] == pytest.approx(-83.94 - 18.29)
    assert y[0] + y[1] + y[3] == pytest.approx(y[4]) == pytest.approx(-99.17)  # ELBO + gap = log p(x)
    assert list(wf["text"]) == ["−83.94", "−18.29", "−102.23", "3.06", "−99.17"]
    assert arr(err["error_y"]["array"])[0] == pytest.approx(1.96 * 0.17)
    assert "k = 1,000" in wf["x"][-1] and wf["x"][3] == "+ gap"


def test_nats_never_shows_negative_zero():
    assert F.nats(-0.001) == "0.00" and F.nats(-0.0) == "0.00" and F.nats(-1.5) == "−1.50" and F.nats(2.345, 1) == "2.3"
    d = validated(F.gap_by_beta_figure([1.0, 4.0], [0.27, -0.001], [0.02, 0.001], current=4.0))
    assert list(d["data"][0]["text"]) == ["0.27", "0.00"]
    assert d["data"][0]["marker"]["color"][1] != d["data"][0]["marker"]["color"][0]  # the current beta stands out


def test_kl_bars_speak_of_one_image_not_collapse():
    from core.figures import kl_bars
    fig = kl_bars([0.0, 0.005, 0.01, 0.02, 1.5], threshold=0.01)
    d = validated(fig)
    assert "2 of 5 above 0.01 nats" in d["layout"]["title"]["text"]
    assert "collaps" not in str(d).lower()
    assert "0.01 nats" in d["layout"]["annotations"][0]["text"]
    hover = list(d["data"][0]["hovertemplate"])
    assert "almost no information about this image" in hover[0] and "almost no information" not in hover[4]
    assert list(d["data"][0]["marker"]["pattern"]["shape"]) == ["/", "/", "/", "", ""]


def test_latex_kl_parts_sum_writes_signs_and_matches_torch():
    mu = np.array([0.5, -1.0, 0.0])
    logvar = np.array([0.8, 0.4, 1.0])  # sigma > 1 everywhere: -sum 1/2 log sigma^2 is negative
    tex = F.latex_kl_parts_sum(mu, logvar)
    ref = float(kl_divergence(Normal(torch.tensor(mu), torch.tensor(np.exp(logvar / 2))), Normal(0.0, 1.0)).sum())
    assert f"0.625 + {0.5 * np.exp(logvar).sum():.3f} - 1.100 - 1.5 = {ref:.3f}" in tex
    assert "+ -" not in tex and "-0.000" not in tex
    zero = F.latex_kl_parts_sum(np.zeros(2), np.zeros(2))  # the prior itself: every part 0 or -1/2
    assert "= 0.000 + 1.000 + 0.000 - 1 = 0.000" in zero


def test_latent_ellipses_have_the_encoders_half_axes_and_the_prior_circles():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(6, 2))
    sigma = rng.uniform(0.05, 1.0, size=(6, 2))
    y = np.array([0, 0, 1, 1, 2, 2])
    panels = [dict(beta=b, mu=mu * (1 + b), sigma=sigma, y=y) for b in (0.0, 1.0)]
    drawn = [(np.array([0.5, -0.5]), np.array([0.3, 0.2])), None]
    fig = F.latent_ellipses_figure(panels, drawn=drawn)
    go.Figure(fig.to_dict())  # validates
    d = fig.to_dict()["data"]
    first = [t for t in d if t.get("xaxis", "x") == "x"]
    circles = [t for t in first if t.get("legendgroup") == "prior"]
    assert [round(float(np.nanmax(arr(t["x"]))), 3) for t in circles] == [1.0, 2.0, 3.0]
    outlines = [t for t in first if t.get("legendgroup", "").startswith("c") and t["mode"] == "lines"]
    xs = np.concatenate([arr(t["x"]) for t in outlines])
    ys = np.concatenate([arr(t["y"]) for t in outlines])
    # each ellipse: NaN-separated, centred on mu, half-axes sigma (points at angle 0 and pi/2 lie on the axes)
    segs_x = [s for s in np.split(xs, np.flatnonzero(np.isnan(xs))) if len(s[~np.isnan(s)])]
    segs_y = [s for s in np.split(ys, np.flatnonzero(np.isnan(ys))) if len(s[~np.isnan(s)])]
    got = sorted((round((np.nanmax(a) - np.nanmin(a)) / 2, 3), round((np.nanmax(b) - np.nanmin(b)) / 2, 3))
                 for a, b in zip(segs_x, segs_y))
    want = sorted((round(float(s[0]), 3), round(float(s[1]), 3)) for s in sigma)
    np.testing.assert_allclose(got, want, atol=2e-3)
    star = [t for t in d if t.get("name") == "your drawing: μ"]
    assert len(star) == 1 and star[0]["x"] == [0.5]
    ring = next(t for t in d if t.get("name") == "your drawing: q(z|x), 1σ")
    assert (np.nanmax(arr(ring["x"])) - np.nanmin(arr(ring["x"]))) / 2 == pytest.approx(0.3, abs=1e-3)
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis2.scaleanchor == "x2"
    assert [a.text for a in fig.layout.annotations] == ["<b>β = 0</b>", "<b>β = 1</b>"]
