"""The KL divergence page: AppTest (numbers against torch.distributions, widgets, URL round trip,
presenter mode) and a real browser (keyboard slider, Plotly animation, screenshots)."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from playwright.sync_api import expect
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from core import kl as K
from tests.apptest_utils import assert_ok, page_app, plotly_specs, texts
from tests.conftest import assert_no_exception_box, screenshot, wait_drawn, wait_laid_out

PAGE = "pages/2_kl.py"
D = torch.float64


def torch_kl(mu_p, s_p, mu_q, s_q) -> float:
    return float(kl_divergence(Normal(torch.tensor(mu_p, dtype=D), torch.tensor(s_p, dtype=D)),
                               Normal(torch.tensor(mu_q, dtype=D), torch.tensor(s_q, dtype=D))))


def metric(at, label_start: str) -> float:
    """The number shown by the first metric whose label starts with ``label_start``."""
    for m in at.metric:
        if m.label.startswith(label_start):
            return float(m.value.split()[0].replace("−", "-"))
    raise AssertionError(f"no metric {label_start!r} in {[m.label for m in at.metric]}")


def set_number(at, key: str, value):
    at.number_input(key=key).set_value(value)
    return at.run()


LAZY = ("kl_fit_open", "kl_2d_open", "kl_gaps_open", "kl_map_open", "kl_price_open", "kl_deriv_open")  # drawn once opened


def open_lazy(at, keys=LAZY):
    """Open the page's lazy expanders (as a click on each would) and rerun."""
    for k in keys:
        at.session_state[k] = True
    return at.run()


@pytest.fixture(scope="module")
def at_digits():
    """One page session on the small dataset with every expander open, shared by the tests that only read
    its defaults."""
    at = page_app(PAGE, query={"dataset": "digits"})
    assert_ok(at)
    open_lazy(at)
    assert_ok(at)
    return at


def test_secondary_charts_are_drawn_only_once_their_expander_opens():
    """Issue 21 (pages that open at once): the first paint has the four main charts (densities, Monte Carlo,
    ELBO, the KL's parts); the forward/reverse animation, the 2-D ellipses, the gap under every β, the latent
    map and the price-of-a-dimension charts wait in collapsed expanders until opened."""
    at = page_app(PAGE, query={"dataset": "digits"})
    assert_ok(at)
    specs = plotly_specs(at)
    assert len(specs) == 4
    assert not any(sp.get("frames") for sp in specs)  # the animation waits
    assert not at.get("slider") or not {"kl_sep", "kl_start", "kl_p2_r"} & {w.key for w in at.slider}
    assert "several local optima" in texts(at) and "splits into one term per dimension" in texts(at)  # (the text stays)
    assert not any(t.get("name") == "your drawing: μ" for sp in specs for t in sp["data"])
    assert not [e for e in at.latex if r"\mathcal N(\mu,\sigma^2)\,\|\,\mathcal N(0,1)" in e.value]  # the point's KL
    assert not at.get("slider") or "kl_vmu" not in [w.key for w in at.slider]
    assert not [e for e in at.latex if r"\log\,\mathbb E_{q(z|x)}" in e.value]  # the derivation waits in its expander
    assert "The loss a VAE minimises is −ELBO" in texts(at)  # (said in words outside it)
    open_lazy(at, ["kl_gaps_open"])
    assert_ok(at)
    gaps = [sp for sp in plotly_specs(at) if "under each β" in str(sp["layout"].get("title", ""))]
    assert len(plotly_specs(at)) == 5 and len(gaps) == 1
    open_lazy(at, ["kl_fit_open", "kl_2d_open"])
    assert_ok(at)
    assert len(plotly_specs(at)) == 7 and sum(bool(sp.get("frames")) for sp in plotly_specs(at)) == 1
    assert {"kl_sep", "kl_start", "kl_p2_r", "kl_q2_sy"} <= {w.key for w in at.slider}
    open_lazy(at, ["kl_map_open", "kl_price_open"])
    assert len(plotly_specs(at)) == 12


# ---- section 1: closed form, both directions, against torch ----------------------------------------------

def test_defaults_draw_every_section_and_match_torch(at_digits):
    at = at_digits
    heads = [h.value for h in at.header]
    assert len(heads) == 6 and heads[0].startswith("1.") and heads[4].startswith("5. The ELBO")
    assert heads[5].startswith("6. The KL term")
    assert metric(at, "KL(p‖q): expectation") == pytest.approx(torch_kl(0.0, 1.0, 1.0, 1.5), abs=5e-5)
    assert metric(at, "KL(q‖p): expectation") == pytest.approx(torch_kl(1.0, 1.5, 0.0, 1.0), abs=5e-5)
    assert len(plotly_specs(at)) == 12  # every expander open: with the latent map (section 6)
    assert not at.error
    # nothing written by Streamlit's "magic" (a bare expression in the page, e.g. a tuple of list.append calls)
    assert not [m.value for m in at.markdown if "None" in m.value]
    assert not at.get("json") and not at.get("code") and not at.get("text")


def test_typed_values_show_the_torch_kl_in_both_directions():
    at = page_app(PAGE, query={"dataset": "digits"})
    values = {"kl_mup": 1.3, "kl_sp": 0.7, "kl_muq": -2.1, "kl_sq": 2.4}
    for k, v in values.items():
        at.number_input(key=k).set_value(v)
    at.run()
    assert_ok(at)
    ref_pq, ref_qp = torch_kl(1.3, 0.7, -2.1, 2.4), torch_kl(-2.1, 2.4, 1.3, 0.7)
    assert metric(at, "KL(p‖q): expectation") == pytest.approx(ref_pq, abs=5e-5)
    assert metric(at, "KL(q‖p): expectation") == pytest.approx(ref_qp, abs=5e-5)
    latex = " ".join(e.value for e in at.latex)
    assert f"{ref_pq:.4f}" in latex and f"{ref_qp:.4f}" in latex and r"\log\frac{2.4}{0.7}" in latex
    # The sliders follow the typed numbers (one value per parameter), and the URL holds them.
    assert at.slider(key="kl_mup_sl").value == pytest.approx(1.3)
    assert at.slider(key="kl_sq_sl").value == pytest.approx(2.4)
    assert at.query_params["kl_muq"] == ["-2.1"] or at.query_params["kl_muq"] == "-2.1"
    # The density figure's KL label agrees.
    dens = plotly_specs(at)[0]
    assert f"{ref_pq:.4f}" in dens["layout"]["annotations"][1]["text"]


    # Moving a slider moves its number input and the KL.
    at.slider(key="kl_sp_sl").set_value(0.5).run()
    assert_ok(at)
    assert at.number_input(key="kl_sp").value == pytest.approx(0.5)
    assert metric(at, "KL(p‖q): expectation") == pytest.approx(torch_kl(1.3, 0.5, -2.1, 2.4), abs=5e-5)


PRESETS = [(0, 1, 0, 1), (0, 1, 2, 1), (0, 1, 0, 2), (0, 1, 0, 0.5)]


def test_presets():
    at = page_app(PAGE, query={"dataset": "digits", "kl_mup": "3.0"})
    for i, params in enumerate(PRESETS):
        at.button(key=f"kl_preset_{i}").click().run()
        assert_ok(at)
        assert [at.number_input(key=k).value for k in ("kl_mup", "kl_sp", "kl_muq", "kl_sq")] == list(params)
        assert at.slider(key="kl_sq_sl").value == params[3]
        assert metric(at, "KL(p‖q): expectation") == pytest.approx(torch_kl(*params), abs=5e-5)
        back = torch_kl(params[2], params[3], params[0], params[1])
        assert metric(at, "KL(q‖p): expectation") == pytest.approx(back, abs=5e-5)
        assert any("identical" in e.value for e in at.info) == (i == 0)


# ---- section 2: Monte Carlo -------------------------------------------------------------------------

def test_monte_carlo_estimate_and_convergence_plot():
    at = page_app(PAGE, query={"dataset": "digits", "seed": "3"})
    est_1k = metric(at, "MC estimate")
    assert est_1k == pytest.approx(K.kl_monte_carlo(0.0, 1.0, 1.0, 1.5, n=1000, seed=3)[0], abs=5e-5)
    at.select_slider(key="kl_n").set_value(100_000).run()
    assert_ok(at)
    est, se = metric(at, "MC estimate"), metric(at, "Standard error")
    ref = torch_kl(0.0, 1.0, 1.0, 1.5)
    assert est != est_1k and abs(est - ref) < 4 * se and se < 0.003
    mc = next(s for s in plotly_specs(at) if "Monte Carlo" in str(s["layout"].get("title", "")))
    names = [t.get("name", "") for t in mc["data"]]
    assert any("your n = 100,000" in n for n in names) and any(f"closed form = {ref:.4f}" in n for n in names)


# ---- section 3: forward vs reverse ----------------------------------------------------------------------

def fit_spec(at) -> dict:
    return next(s for s in plotly_specs(at) if s.get("frames"))


def test_forward_reverse_animation_and_separation(at_digits):
    spec = fit_spec(at_digits)
    assert len(spec["frames"]) > 20 and spec["layout"]["updatemenus"][0]["buttons"][0]["method"] == "animate"
    body = texts(at_digits)
    mean, sd = K.mixture_moments((0.5, 0.5), (-2.0, 2.0), (0.6, 0.6))
    assert f"μ = {mean:.2f}, σ = {sd:.2f}" in body  # forward: moment matching
    assert "μ = 2.00, σ = 0.60" in body  # reverse: on the right-hand mode (q started at +0.5)
    assert any(b.label.startswith("⬇️ Download kl-forward-vs-reverse") for b in at_digits.get("download_button"))

    at = page_app(PAGE, query={"dataset": "digits", "kl_sep": "6.0", "kl_start": "-2.0"})
    assert_ok(at)
    body = texts(at)
    mean, sd = K.mixture_moments((0.5, 0.5), (-3.0, 3.0), (0.6, 0.6))
    assert f"σ = {sd:.2f}" in body and "μ = −3.00, σ = 0.60" in body  # reverse follows its start to the left mode
    assert "mode-seeking optimum on the **left** mode" in body
    assert fit_spec(at)["frames"][-1] != spec["frames"][-1]


def test_reverse_kl_from_the_centre_reaches_the_symmetric_optimum_and_says_so():
    at = page_app(PAGE, query={"dataset": "digits", "kl_start": "0.0"})
    assert_ok(at)
    body = texts(at)
    traj = K.fit_gaussian_to_mixture((0.5, 0.5), (-2.0, 2.0), (0.6, 0.6), direction="reverse", steps=300, lr=0.2,
                                     init=(0.0, 0.5))
    assert abs(traj[-1][0]) < 1e-3 and traj[-1][1] == pytest.approx(1.79, abs=0.01)
    assert f"μ = 0.00, σ = {traj[-1][1]:.2f}" in body  # not "-0.00"
    assert "several local optima" in body and "**symmetric** optimum between the modes" in body
    assert "mode-seeking optimum on the" not in body and "-0.00" not in body


def test_reverse_kl_off_centre_start_reaches_a_mode(at_digits):
    body = texts(at_digits)  # start 0.5 (the default)
    assert "several local optima" in body and "mode-seeking optimum on the **right** mode" in body
    assert "shrinks onto" not in body


# ---- section 4: two dimensions ------------------------------------------------------------------------

def test_two_dimensional_kl_matches_torch_both_ways():
    at = open_lazy(page_app(PAGE, query={"dataset": "digits"}), ["kl_2d_open"])
    for key, v in {"kl_p2_r": -0.5, "kl_p2_sx": 0.8, "kl_q2_mx": 1.0, "kl_q2_r": 0.3}.items():
        at.slider(key=key).set_value(v)
    at.run()
    assert_ok(at)
    mu0, mu1 = torch.tensor([1.0, 0.5], dtype=D), torch.tensor([1.0, 0.0], dtype=D)
    c0 = torch.tensor(K.cov_2d(0.8, 0.7, -0.5))
    c1 = torch.tensor(K.cov_2d(1.0, 1.0, 0.3))
    ref01 = float(kl_divergence(MultivariateNormal(mu0, c0), MultivariateNormal(mu1, c1)))
    ref10 = float(kl_divergence(MultivariateNormal(mu1, c1), MultivariateNormal(mu0, c0)))
    shown = [float(m.value.split()[0]) for m in at.metric if m.label in ("KL(p‖q)", "KL(q‖p)")]
    assert shown == pytest.approx([ref01, ref10], abs=5e-5)
    assert f"{ref01:.4f}" in " ".join(e.value for e in at.latex)


# ---- section 5: the VAE ---------------------------------------------------------------------------------

def vae_reference(dataset: str, beta: float, img: int) -> float:
    """KL(q(z|x) || N(0, I)) of held-out image ``img``, straight from the zoo model and torch."""
    from core import zoo
    from core.data import load_dataset
    info = zoo.pretrained(dataset, "vae", beta, 16)
    x = torch.as_tensor(np.array(load_dataset(dataset).x[info.val_idx[img]][None, :]))
    with torch.no_grad():
        mu, logvar = info.model.encode(x)
    return float(kl_divergence(Normal(mu.double(), (0.5 * logvar.double()).exp()), Normal(0.0, 1.0)).sum())


def test_vae_kl_of_a_real_image_matches_torch_and_responds_to_beta_and_image():
    at = open_lazy(page_app(PAGE, query={"dataset": "digits"}))
    shown = metric(at, "KL of this image")
    assert shown == pytest.approx(vae_reference("digits", 1.0, 0), abs=2e-3)
    bars = next(s for s in plotly_specs(at) if "KL per latent dimension" in str(s["layout"].get("title", "")))
    from tests.test_figures_kl import arr
    assert float(arr(bars["data"][0]["y"]).sum()) == pytest.approx(shown, abs=2e-3)

    at.radio(key="kl_beta").set_value(4.0).run()
    assert_ok(at)
    at.number_input(key="kl_img").set_value(7).run()
    assert_ok(at)
    shown4 = metric(at, "KL of this image")
    assert shown4 == pytest.approx(vae_reference("digits", 4.0, 7), abs=2e-3) and shown4 != shown
    body = texts(at)
    assert "**β = 4**" in body and "| β = 0.5 |" in body  # the three-model table, current one in bold
    assert "posterior collapse" in body and "Limits of VAEs" in body


def vae_image(dataset: str, beta: float, img: int):
    from core import zoo
    from core.data import load_dataset
    info = zoo.pretrained(dataset, "vae", beta, 16)
    return info, torch.as_tensor(np.array(load_dataset(dataset).x[info.val_idx[img]][None, :]))


def test_one_active_count_everywhere_for_the_same_model():
    """The caption, the three-model table and core.units (Burda et al.) give the same count per model; no
    per-image statement says 'collapsed' or 'ignored'."""
    from core.data import load_dataset
    from core.units import heldout_activity
    at = page_app(PAGE, query={"dataset": "digits", "kl_beta": "0.5"})
    assert_ok(at)
    body = texts(at)
    counts = {b: heldout_activity(vae_image("digits", b, 0)[0], load_dataset("digits")).count for b in (0.5, 1.0, 4.0)}
    assert f"This model: {counts[0.5]} of 16 dimensions active" in body
    table = next(m.value for m in at.markdown if "| model | KL of this image |" in m.value)
    shown = {float(b): int(n) for b, n in re.findall(r"β = ([\d.]+)\**? \| [\d.]+ \| [\d.]+ \| (\d+) of 16", table)}
    assert shown == counts
    # every "N of 16 ... active" on the page for this model agrees
    assert set(re.findall(r"(\d+) of 16 dimensions active", body)) == {str(counts[0.5])}
    for line in body.splitlines():
        if "this image" in line:
            assert "collapsed" not in line.split("this image")[0][-80:] or "Burda" in line
    assert "ignored" not in body


def reference_elbo_numbers(dataset: str, beta: float, img: int, k: int = 1000):
    """log p(x) (IWAE), the ELBO and its terms for one image, with torch.distributions: the same noise
    draws as core.elbo (seed 0 for the importance samples, seed 1 for the ELBO's), an independent formula."""
    from torch.distributions import Bernoulli
    info, x = vae_image(dataset, beta, img)
    m = info.model
    with torch.no_grad():
        mu, logvar = m.encode(x)
        sd = (0.5 * logvar).exp()
        eps = torch.randn((k, 1, 16), generator=torch.Generator().manual_seed(0))
        z = mu + sd * eps
        lpx = Bernoulli(logits=m.decode_logits(z), validate_args=False).log_prob(x).sum(-1)
        lw = (lpx + Normal(0.0, 1.0).log_prob(z).sum(-1) - Normal(mu, sd).log_prob(z).sum(-1)).double()
        log_px = float(torch.logsumexp(lw[:, 0], 0) - math.log(k))
        eps1 = torch.randn((k, 1, 16), generator=torch.Generator().manual_seed(1))
        recon = -float(Bernoulli(logits=m.decode_logits(mu + sd * eps1), validate_args=False).log_prob(x).sum(-1).double().mean())
        kl_term = float(kl_divergence(Normal(mu.double(), sd.double()), Normal(0.0, 1.0)).sum())
    return log_px, recon, kl_term


def test_elbo_section_numbers_match_an_independent_computation():
    at = open_lazy(page_app(PAGE, query={"dataset": "digits", "kl_img": "5"}))
    assert_ok(at)
    log_px, recon, kl_term = reference_elbo_numbers("digits", 1.0, 5)
    elbo_ref = -recon - kl_term
    assert metric(at, "log p(x), IWAE estimate") == pytest.approx(log_px, abs=0.011)
    assert metric(at, "ELBO = −reconstruction − KL term") == pytest.approx(elbo_ref, abs=0.011)
    assert metric(at, "Gap log p(x) − ELBO") == pytest.approx(log_px - elbo_ref, abs=0.011)
    assert log_px > elbo_ref  # the bound
    body = texts(at)
    assert f"Reconstruction term −E_q[log p(x|z)] = {recon:.2f} nats per image" in body
    assert f"KL term KL(q(z|x) ‖ p(z)) = {kl_term:.2f} nats" in body
    assert "not the log of a normalised probability" in body  # Bernoulli on grey pixels
    wf = next(s for s in plotly_specs(at) if s["data"] and s["data"][0].get("type") == "waterfall")
    from tests.test_figures_kl import arr
    y = arr(wf["data"][0]["y"])
    assert y[0] == pytest.approx(-recon, abs=1e-3) and y[1] == pytest.approx(-kl_term, abs=1e-6)
    assert y[4] == pytest.approx(log_px, abs=1e-3)
    # the derivation is on the page, in LaTeX, before the VAE section
    latex = " ".join(e.value for e in at.latex)
    assert r"\mathrm{ELBO}(x) + \mathrm{KL}\big(q(z|x)\,\|\,p(z|x)\big)" in latex and r"\log\,\mathbb E_{q(z|x)}" in latex
    assert "Jensen" in body and "pulls q towards the true posterior" in body
    # the amortisation gap: never negative, and the decomposition adds up
    amort = re.search(r"\*amortisation gap\* \(one encoder network for all images\) is \*\*([−\d.]+)\*\*", body)
    approx = re.search(r"the rest, \*\*([−\d.]+)\*\* nats", body)
    a, r = (float(v.group(1).replace("−", "-")) for v in (amort, approx))
    assert a >= 0 and a + r == pytest.approx(metric(at, "Gap log p(x) − ELBO"), abs=0.02)
    # the gap for every beta
    gaps = next(s for s in plotly_specs(at) if "under each β" in str(s["layout"].get("title", "")))
    assert list(gaps["data"][0]["x"]) == [f"β = {b:g}" for b in (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)]
    assert arr(gaps["data"][0]["y"])[3] == pytest.approx(log_px - elbo_ref, abs=0.02)


def test_kl_parts_on_the_page_sum_to_the_closed_form_and_torch():
    at = page_app(PAGE, query={"dataset": "digits", "kl_img": "3"})
    assert_ok(at)
    info, x = vae_image("digits", 1.0, 3)
    with torch.no_grad():
        mu, logvar = (t[0].double() for t in info.model.encode(x))
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).numpy()
    parts = next(s for s in plotly_specs(at) if "four parts" in str(s["layout"].get("title", "")))
    from tests.test_figures_kl import arr
    np.testing.assert_allclose(sum(arr(t["y"]) for t in parts["data"][:4]), ref, rtol=1e-5, atol=1e-6)
    sums = [0.5 * float((mu**2).sum()), 0.5 * float(logvar.exp().sum()), -0.5 * float(logvar.sum())]
    sign = "+" if sums[2] >= 0 else "-"
    line = f"{sums[0]:.3f} + {sums[1]:.3f} {sign} {abs(sums[2]):.3f} - 8 = {ref.sum():.3f}"
    assert any(line in e.value for e in at.latex), line
    body = texts(at)
    from core.data import load_dataset
    info0 = __import__("core.zoo", fromlist=["zoo"]).pretrained("digits", "vae", 0.0, 16)
    with torch.no_grad():  # independent: the median over held-out images of sigma_j = exp(logvar_j / 2)
        _, lv0 = info0.model.encode(torch.as_tensor(np.array(load_dataset("digits").x[info0.val_idx])))
    s0 = np.median(np.exp(0.5 * lv0.double().numpy()), axis=0)
    assert f"median σ_j between **{s0.min():.2g}** and **{s0.max():.2g}** in every dimension" in body
    assert s0.max() < 0.01  # the beta = 0 model switched its noise off
    assert "cannot switch its noise off" in body and "smooth and continuous" not in body
    assert "Hoffman and Johnson (2016)" in body and "Higgins et al., 2017" in body


def test_vae_point_formula():
    """A link with the point's parameters opens the expander that holds the point (and its chart)."""
    at = page_app(PAGE, query={"dataset": "digits", "kl_vmu": "-1.5", "kl_vlv": "-3.0"})
    assert_ok(at)
    ref = float(kl_divergence(Normal(torch.tensor(-1.5, dtype=D), torch.tensor(math.exp(-1.5), dtype=D)),
                              Normal(torch.tensor(0.0, dtype=D), torch.tensor(1.0, dtype=D))))
    assert any(f"{ref:.4f}" in e.value for e in at.latex)
    kl_map = next(s for s in plotly_specs(at) if s["data"][0].get("type") == "contour")
    assert kl_map["data"][-1]["x"] == [-1.5] and kl_map["data"][-1]["y"] == [-3.0]


def test_image_index_is_clamped_when_the_dataset_shrinks():
    at = page_app(PAGE, query={"dataset": "mnist-5k", "kl_img": "400"})
    assert_ok(at)
    assert at.number_input(key="kl_img").value == 400
    assert metric(at, "KL of this image") == pytest.approx(vae_reference("mnist-5k", 1.0, 400), abs=2e-3)
    at.sidebar.selectbox(key="_w_dataset").set_value("digits").run()
    assert_ok(at)
    n_val = len(__import__("core.zoo", fromlist=["zoo"]).pretrained("digits", "vae", 1.0, 16).val_idx)
    assert at.number_input(key="kl_img").value == n_val - 1


# ---- URL round trip and invalid links ----------------------------------------------------------------------

ROUND_TRIP = {"dataset": "digits", "kl_mup": "-1.25", "kl_sp": "0.4", "kl_muq": "3.5", "kl_sq": "2.25", "kl_n": "30000",
              "kl_sep": "5.5", "kl_start": "-1.0", "kl_p2_r": "-0.8", "kl_q2_sy": "2.0", "kl_vmu": "0.5",
              "kl_vlv": "-2.5", "kl_beta": "0.5", "kl_img": "12"}


def test_url_parameters_restore_every_widget_and_the_numbers():
    at = page_app(PAGE, query=ROUND_TRIP)
    assert_ok(at)
    assert not at.error
    assert at.number_input(key="kl_mup").value == -1.25 and at.slider(key="kl_mup_sl").value == -1.25
    assert at.number_input(key="kl_sq").value == 2.25
    assert at.select_slider(key="kl_n").value == 30000
    assert at.slider(key="kl_sep").value == 5.5 and at.slider(key="kl_start").value == -1.0
    assert at.slider(key="kl_p2_r").value == -0.8 and at.slider(key="kl_q2_sy").value == 2.0
    assert at.slider(key="kl_vmu").value == 0.5 and at.slider(key="kl_vlv").value == -2.5
    assert at.radio(key="kl_beta").value == 0.5 and at.number_input(key="kl_img").value == 12
    assert metric(at, "KL(p‖q): expectation") == pytest.approx(torch_kl(-1.25, 0.4, 3.5, 2.25), abs=5e-5)
    assert metric(at, "MC estimate, n = 30,000") == pytest.approx(K.kl_monte_carlo(-1.25, 0.4, 3.5, 2.25, 30000, 0)[0], abs=5e-5)
    assert metric(at, "KL of this image") == pytest.approx(vae_reference("digits", 0.5, 12), abs=2e-3)
    # The page writes every parameter back, so the link it shows reproduces the view.
    qp = {k: (v[0] if isinstance(v, list) else v) for k, v in dict(at.query_params).items()}
    for k, v in ROUND_TRIP.items():
        assert float(qp[k]) == float(v) if k != "dataset" else qp[k] == v, k
    again = page_app(PAGE, query=qp)
    assert_ok(again)
    assert metric(again, "KL(q‖p): expectation") == metric(at, "KL(q‖p): expectation")


def test_invalid_url_values_get_a_message_and_the_defaults():
    bad = {"dataset": "digits", "kl_mup": "abc", "kl_sp": "0", "kl_n": "7", "kl_beta": "3", "kl_img": "99999",
           "kl_p2_r": "1.5", "kl_sep": "nan", "kl_vlv": "<b>x</b>"}
    at = page_app(PAGE, query=bad)
    assert_ok(at)
    err = " ".join(e.value for e in at.error)
    for key in bad:
        if key != "dataset":
            assert key in err, key
    assert "<b>" not in err
    assert at.number_input(key="kl_mup").value == 0.0 and at.number_input(key="kl_sp").value == 1.0
    assert at.select_slider(key="kl_n").value == 1000 and at.radio(key="kl_beta").value == 1.0
    assert at.number_input(key="kl_img").value == 0 and at.slider(key="kl_p2_r").value == 0.6
    assert at.slider(key="kl_sep").value == 4.0 and at.slider(key="kl_vlv").value == -1.0
    assert metric(at, "KL(p‖q): expectation") == pytest.approx(torch_kl(0.0, 1.0, 1.0, 1.5), abs=5e-5)


# ---- presenter mode and self-check ----------------------------------------------------------------------

def test_presenter_mode_shows_one_scene_at_a_time():
    at = page_app(PAGE, query={"dataset": "digits", "present": "1"})
    assert_ok(at)
    assert [h.value for h in at.header] == ["1. Two Gaussians, p and q"]
    assert "Scene 1 of 7" in texts(at)
    for expected in ("2. Estimating KL by sampling", "3. Forward vs reverse", "4. Two dimensions", "5. The ELBO",
                     "6. The KL term"):
        at.button(key="_scene_kl_next").click().run()
        assert_ok(at)
        heads = [h.value for h in at.header]
        assert len(heads) == 1 and heads[0].startswith(expected)
    assert metric(at, "KL of this image") > 0


def test_latent_map_shows_each_2d_models_ellipses_and_the_images_kl_parts(at_digits):
    """Issue 20: the KL term's mechanism on a 2-D latent map. Until something is drawn, the chosen held-out
    image lands on the map; its KL under each 2-D model (β = 0, 0.5, 1, 4) matches torch.distributions."""
    from core import zoo
    from core.data import load_dataset
    at = at_digits
    spec = next(sp for sp in plotly_specs(at) if any(t.get("name") == "your drawing: μ" for t in sp["data"]))
    assert [a["text"] for a in spec["layout"]["annotations"]] == [f"<b>β = {b:g}</b>" for b in (0, 0.5, 1, 4)]
    ds = load_dataset("digits")
    info16 = zoo.pretrained("digits", "vae", 1.0, 16)
    x = torch.as_tensor(np.array(ds.x[int(info16.val_idx[0])][None, :]))
    table = next(m.value for m in at.markdown if "| model | μ | σ |" in m.value)
    assert "the chosen held-out image" in table
    for b in (0.0, 0.5, 1.0, 4.0):
        m2 = zoo.pretrained("digits", "vae", b, 2).model
        with torch.no_grad():
            mu, lv = (t[0].double() for t in m2.encode(x))
        ref = float(kl_divergence(Normal(mu, (0.5 * lv).exp()), Normal(0.0, 1.0)).sum())
        row = next(r for r in table.splitlines() if r.startswith(f"| β = {b:g} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[-1]) == pytest.approx(ref, abs=6e-4), (b, row)
        parts = [float(c.replace("−", "-")) for c in cells[3:6]]
        assert parts[0] == pytest.approx(0.5 * float((mu**2).sum()), abs=6e-4)
        assert parts[1] == pytest.approx(0.5 * float(lv.exp().sum()), abs=6e-4)
        assert parts[2] == pytest.approx(-0.5 * float(lv.sum()), abs=6e-4)
        sd = [math.exp(float(v) / 2) for v in lv]
        assert cells[2] == "(" + ", ".join(f"{v:.3f}" if v >= 0.01 else f"{v:.2g}" for v in sd) + ")"
        assert "-" not in cells[1]  # true minus signs, never "-0.00"
        if b == 1.0:  # the LaTeX sum under the table, for the β = 1 model
            assert any(f"= {ref:.3f}" in e.value and r"\beta = 1" in e.value for e in at.latex)
    body = texts(at)
    assert "At β = 0 (no KL term) the ellipses shrink to points" in body
    assert "where the prior puts 86%" in body and abs(1 - math.exp(-2) - 0.865) < 1e-3


def test_presenter_scene_7_is_the_latent_map():
    at = page_app(PAGE, query={"dataset": "digits", "present": "1"})
    assert_ok(at)
    for _ in range(6):
        at.button(key="_scene_kl_next").click().run()
    assert_ok(at)
    assert "Scene 7 of 7" in texts(at)
    assert [h.value for h in at.header] == ["6. The KL term on the latent map"]
    specs = plotly_specs(at)
    assert len(specs) == 1 and any(t.get("name") == "your drawing: μ" for t in specs[0]["data"])


def test_self_check_answers_are_revealed_with_real_numbers(at_digits):
    at = at_digits
    at.button(key="_reveal_kl_0_btn").click().run()
    assert_ok(at)
    answer = " ".join(s.value for s in at.success)
    assert f"{torch_kl(0, 2, 0, 1):.3f}" in answer and f"{torch_kl(0, 1, 0, 2):.3f}" in answer


# ---- real browser ------------------------------------------------------------------------------------

def _open(page, server_url: str, query: str = "") -> None:
    """Open the page by its deep link (as a shared link is opened), and wait until it is drawn."""
    page.goto(f"{server_url}/kl{query}")
    wait_drawn(page)
    page.get_by_text("6. The KL term inside a VAE").first.wait_for()
    assert_no_exception_box(page)


@pytest.mark.browser
def test_kl_page_in_browser_slider_url_and_animation(watched_page, server_url):
    page = watched_page
    _open(page, server_url, "?kl_muq=2.0&kl_sq=0.5")
    readout = page.locator('.st-key-kl_readout [data-testid="stMetricValue"]').first
    assert readout.inner_text().startswith(f"{torch_kl(0.0, 1.0, 2.0, 0.5):.4f}")  # the link set q

    thumb = page.locator('.st-key-kl_mup_sl input[type="range"]').first
    thumb.focus()
    thumb.press("ArrowRight")
    expected = f"{torch_kl(0.1, 1.0, 2.0, 0.5):.4f}"
    page.wait_for_function("([sel, want]) => { const e = document.querySelector(sel); return e && e.textContent.startsWith(want); }",
                           arg=['.st-key-kl_readout [data-testid="stMetricValue"]', expected])
    expect(page.locator(".st-key-kl_mup input").first).to_have_value("0.100")  # the number input followed
    page.wait_for_function("() => location.search.includes('kl_mup=0.1')")

    page.get_by_text("Watch both fits step by step").first.click()  # a lazy expander: the animation once opened
    fit = page.locator(".st-key-kl_fig_fit").first
    fit.wait_for(timeout=60_000)
    fit.scroll_into_view_if_needed()
    label = fit.locator(".slider-label").first
    assert label.text_content().strip() == "Adam step 0"
    fit.locator(".updatemenu-button").first.click()  # ▶ Play: frames run in the browser
    page.wait_for_function("() => { const e = document.querySelector('.st-key-kl_fig_fit .slider-label');"
                           " return e && e.textContent.trim() !== 'Adam step 0'; }")
    page.wait_for_function("() => document.querySelector('.st-key-kl_fig_fit .slider-label').textContent.trim()"
                           " === 'Adam step 300'", timeout=120_000)  # the animation ran to its last frame
    assert_no_exception_box(page)
    page.locator("h1").first.scroll_into_view_if_needed()
    # The whole page at 1400 wide: Streamlit scrolls inside its main element, so grow the viewport to it.
    height = page.evaluate("() => Math.max(...['[data-testid=\"stMain\"]', '[data-testid=\"stAppViewContainer\"]']"
                           ".map(s => document.querySelector(s)).filter(Boolean).map(e => e.scrollHeight))")
    page.set_viewport_size({"width": 1400, "height": int(height) + 50})
    wait_laid_out(page)  # the charts' own resize to the new viewport
    screenshot(page, "kl")

    # Presenter mode (tests/test_presenter.py checks that every scene fits; here the live density chart and the
    # projector-size screenshots): the density chart is drawn by the browser there too.
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(f"{server_url}/kl?present=1")
    wait_drawn(page)
    page.get_by_text("Scene 1 of 7").first.wait_for()
    assert_no_exception_box(page)
    expect(page.locator(".st-key-kl_fig_density .js-plotly-plot")).to_have_count(1, timeout=30_000)  # browser-drawn
    # Scenes 5 (the ELBO), 6 (the KL term's parts) and 7 (the latent map): the main figure fits 1280x720.
    current = 1
    for scene, key in ((5, "kl_fig_elbo"), (6, "kl_fig_parts"), (7, "kl_fig_latent_map")):
        while current < scene:  # PageDown, as a presentation clicker sends
            page.locator("body").press("PageDown")
            current += 1
            page.get_by_text(f"Scene {current} of 7").first.wait_for(timeout=60_000)
            wait_drawn(page)
        plot = page.locator(f".st-key-{key} .js-plotly-plot").first
        plot.wait_for()
        box = page.evaluate("(sel) => { const r = document.querySelector(sel).getBoundingClientRect();"
                            " return [r.top, r.bottom, r.right]; }", f".st-key-{key} .js-plotly-plot")
        assert box[0] >= 0 and box[1] <= 720 and box[2] <= 1280, (scene, box)
        if scene == 5:
            screenshot(page, "kl-present")  # the ELBO scene at projector size
        if scene == 7:
            screenshot(page, "kl-map-present")  # the latent map at projector size
    assert_no_exception_box(page)


_DENSITY = ".st-key-kl_fig_density"


@pytest.mark.browser
def test_density_chart_redraws_in_the_browser_and_matches_python(watched_page, server_url):
    """The density chart follows the slider in the browser (core/js/live_figure.js), before the
    server replies; what the browser computes equals core.figures.kl.density_figure."""
    from core.figures import kl as klfig

    page = watched_page
    _open(page, server_url, "?kl_mup=0&kl_sp=1&kl_muq=1&kl_sq=1.5&kl_vmu=1&kl_vlv=-1")  # (kl_vmu: its expander opens)
    page.wait_for_selector(f"{_DENSITY} .js-plotly-plot .main-svg")
    live = page.locator(f"{_DENSITY} .ll-live")
    expect(live).to_have_attribute("data-origin", "server")
    # The browser's updater against Python, on parameters the page never had (no server involved).
    params = dict(mu_p=-1.3, sigma_p=0.4, mu_q=2.2, sigma_q=3.1)
    got = page.evaluate("([sel, v]) => { const plot = document.querySelector(sel);"
                        " const fig = window.latentLabLiveUpdaters.kl_density({data: plot.data, layout: plot.layout}, v);"
                        " return {x: fig.data.map(t => Array.from(t.x)), y: fig.data.map(t => Array.from(t.y)),"
                        " names: fig.data.map(t => t.name), notes: fig.layout.annotations.map(a => a.text)}; }",
                        [f"{_DENSITY} .js-plotly-plot", params])
    want = klfig.density_figure(*params.values())
    for i in range(5):
        np.testing.assert_allclose(got["x"][i], np.asarray(want.data[i].x, float), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got["y"][i], np.asarray(want.data[i].y, float), rtol=1e-5, atol=1e-6)
    assert got["names"][:2] == [want.data[0].name, want.data[1].name] == ["p = N(-1.3, 0.4²)", "q = N(2.2, 3.1²)"]
    assert [a.text for a in want.layout.annotations] == got["notes"]
    assert f"= {torch_kl(*params.values()):.4f} nats" in got["notes"][1]
    # A key press on the μ_p slider: the chart shows the new KL (drawn by the browser or, once it has
    # replied, by the server; both say the same).
    thumb = page.locator('.st-key-kl_mup_sl input[type="range"]').first
    thumb.focus()
    thumb.press("ArrowRight")
    expect(live).to_have_attribute("data-values", '{"mu_p":0.1,"sigma_p":1,"mu_q":1,"sigma_q":1.5}')
    expect(page.locator(f"{_DENSITY} .annotation-text").nth(1)).to_contain_text(
        f"KL(p‖q) = {torch_kl(0.1, 1.0, 1.0, 1.5):.4f} nats")
    expect(page.locator(f"{_DENSITY} .legendtext").first).to_have_text("p = N(0.1, 1²)")
    # Each slider move redraws the chart about twice (the browser's figure, then the server's), however
    # many reruns came before: the component keeps one slider observer, not one per rerun (with one per
    # rerun the lag grew by ~30 ms, and on the contour map by ~140 ms, with every move).
    for _ in range(4):
        wait_drawn(page)
        thumb.focus()
        thumb.press("ArrowRight")
    wait_drawn(page)
    expect(live).to_have_attribute("data-origin", "server")
    before = int(live.get_attribute("data-draws"))
    thumb.focus()
    thumb.press("ArrowLeft")
    wait_drawn(page)
    expect(live).to_have_attribute("data-values", '{"mu_p":0.4,"sigma_p":1,"mu_q":1,"sigma_q":1.5}')
    assert int(live.get_attribute("data-draws")) - before <= 3
    # The VAE section's contour map: the browser moves the point and its KL label like vae_kl_map does.
    page.wait_for_selector(".st-key-kl_fig_map .js-plotly-plot .main-svg")
    got = page.evaluate("(v) => { const plot = document.querySelector('.st-key-kl_fig_map .js-plotly-plot');"
                        " const fig = window.latentLabLiveUpdaters.kl_vae_point({data: plot.data, layout: plot.layout}, v);"
                        " const t = fig.data[fig.data.length - 1]; return [t.x[0], t.y[0], t.text[0]]; }",
                        {"mu": -1.7, "logvar": 0.6})
    point = klfig.vae_kl_map(-1.7, 0.6).data[-1]
    assert got == [-1.7, 0.6, point.text[0]] and point.text[0] == f"  KL = {float(K.kl_to_standard_normal(-1.7, 0.6)):.3f}"


@pytest.mark.browser
def test_elbo_section_in_browser_follows_the_model_choice(watched_page, server_url):
    """Sections 5 and 6 in a real browser: the numbers of a linked image, then a click on another β."""
    page = watched_page
    _open(page, server_url, "?dataset=digits&kl_img=4")
    readout = page.locator('.st-key-kl_elbo_readout [data-testid="stMetricValue"]')
    log_px, recon, kl_term = reference_elbo_numbers("digits", 1.0, 4)
    expect(readout.first).to_have_text(f"{log_px:.2f} nats".replace("-", "−"))
    expect(readout.nth(1)).to_have_text(f"{-recon - kl_term:.2f} nats".replace("-", "−"))
    page.locator(".st-key-kl_fig_elbo .js-plotly-plot .main-svg").first.wait_for()
    page.get_by_text("β = 4", exact=True).first.click()
    log_px4, recon4, kl4 = reference_elbo_numbers("digits", 4.0, 4)
    expect(readout.nth(1)).to_have_text(f"{-recon4 - kl4:.2f} nats".replace("-", "−"), timeout=60_000)
    page.wait_for_function("() => location.search.includes('kl_beta=4')")
    act = page.locator(".st-key-kl_activity").first
    from core.data import load_dataset
    from core.units import heldout_activity
    count = heldout_activity(vae_image("digits", 4.0, 4)[0], load_dataset("digits")).count
    expect(act).to_contain_text(f"This model: {count} of 16 dimensions active")
    if count == 0:  # the digits beta = 4 model: a statement about the model, and one about this image
        expect(act).to_contain_text("every one has collapsed")
        expect(act).to_contain_text("all 16 dimensions have KL below 0.01 nats: they carry almost no information")
    assert_no_exception_box(page)


@pytest.mark.browser
def test_drawn_digit_lands_on_the_latent_map_in_the_browser(watched_page, server_url):
    """Issue 20: draw a digit in section 6; its q(z|x) lands on the four 2-D maps (the black ellipse and star
    move) and the table gives its KL's parts under each model."""
    page = watched_page
    _open(page, server_url, "?dataset=digits")
    page.get_by_text("The KL term on the latent map: four 2-D VAEs").first.click()  # a lazy expander
    table = page.locator(".st-key-kl_map_parts").first
    expect(table).to_contain_text("The KL of the chosen held-out image", timeout=60_000)
    before = table.inner_text()
    wait_drawn(page)

    def find_canvas():  # the drawing component loads after the expander's rerun
        return next((c for c in page.locator("canvas").all()
                     if (b := c.bounding_box()) and abs(b["width"] - 280) < 2 and abs(b["height"] - 280) < 2), None)

    for _ in range(60):
        if (canvas := find_canvas()) is not None:
            break
        page.wait_for_timeout(500)
    assert canvas is not None, "no 280-px drawing canvas in the latent map's expander"
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    inside = page.evaluate(
        "([x, y]) => { const e = document.elementFromPoint(x, y); return !!(e && e.closest('.st-key-kl_canvas')); }",
        [box["x"] + box["width"] - 4, box["y"] + box["height"] - 4])
    assert inside, "the canvas's far corner is covered or clipped"
    x0, y0 = box["x"] + 140, box["y"] + 40
    page.mouse.move(x0, y0)
    page.mouse.down()
    for i in range(1, 25):  # a "1"
        page.mouse.move(x0 + i, y0 + i * 8)
    page.mouse.up()
    expect(table).to_contain_text("The KL of your drawing", timeout=60_000)
    assert table.inner_text() != before
    wait_drawn(page)
    assert_no_exception_box(page)
    star = page.evaluate("() => { const g = document.querySelector('.st-key-kl_fig_latent_map .js-plotly-plot');"
                         " return g && g.data.filter(t => t.name === 'your drawing: μ').length; }")
    assert star == 4
