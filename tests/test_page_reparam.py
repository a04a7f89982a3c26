"""The reparameterization page: AppTest (widgets change the numbers, URL round trip, bad URLs, presenter
scenes) and a real-browser test (the backward-pass animation plays, the μ slider moves a readout)."""
from __future__ import annotations

import pytest

from core import reparam
from tests.apptest_utils import assert_ok, page_app, plotly_specs, texts
from tests.conftest import assert_no_exception_box, screenshot, wait_drawn

PAGE = "pages/3_reparam.py"
READOUT = "Exact ∂/∂μ E[f(z)]"  # the numeric readout that follows the μ slider (also used by bench/)


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def code_blocks(at) -> str:
    return "\n".join(c.value for c in at.code)


@pytest.fixture(scope="module")
def default_app():
    at = page_app(PAGE, query={"dataset": "digits"})
    assert_ok(at)
    return at


def test_default_page_shows_every_section_with_real_numbers(default_app):
    at = default_app
    m = metrics(at)
    dmu, dsigma = reparam.analytic_gradient("z^2", 0.5, 1.0)
    assert m[READOUT] == f"{dmu:.4f}" and m["Exact ∂/∂σ E[f(z)]"] == f"{dsigma:.4f}"
    r = reparam.compare_estimators("z^2", 0.5, 1.0, 1000, 0, 1.0)
    assert m["Pathwise mean ∂/∂μ"] == f"{r['summary']['reparam']['dmu']['mean']:.3f}"
    assert m["Score-function mean ∂/∂μ"] == f"{r['summary']['score']['dmu']['mean']:.3f}"
    assert m["Variance ratio ∂/∂μ"] == f"{r['variance_ratio']['dmu']:.1f}×"
    specs = plotly_specs(at)
    assert len(specs) == 7  # graph, histograms, intervals, convergence, VAE image, posterior, gradients
    graph = specs[0]
    assert len(graph["frames"]) == 13 and graph["layout"]["updatemenus"][0]["buttons"][0]["method"] == "animate"
    body = texts(at)
    for phrase in ("The problem", "The trick", "score function", "Autograd, shown", "Inside a trained VAE",
                   "both estimators are unbiased", "Reading it"):
        assert phrase in body, phrase
    code = code_blocks(at)
    assert "RuntimeError: element 0 of tensors does not require grad" in code  # the real error text
    assert "(False, None)" in code and "(True, 'AddBackward0')" in code and "grad_fn=<AddBackward0>" in code
    d = reparam.autograd_demo(0.5, 1.0, 0)
    assert f"({d['dz_dmu']!r}, {d['dz_dsigma']!r})" in code and d["dz_dmu"] == 1.0
    assert any(e.value for e in at.latex)  # the derivation is typeset


def test_changing_f_changes_the_numbers_and_the_step_shows_the_bias():
    at = page_app(PAGE, query={"dataset": "digits"})
    before = metrics(at)
    at.selectbox(key="rp_f").set_value("sin z").run()
    assert_ok(at)
    after = metrics(at)
    dmu, _ = reparam.analytic_gradient("sin z", 0.5, 1.0)
    assert after[READOUT] == f"{dmu:.4f}" != before[READOUT]
    assert after["Pathwise mean ∂/∂μ"] != before["Pathwise mean ∂/∂μ"]
    assert not at.warning
    at.slider(key="rp_sigma").set_value(2.0).run()  # a wide q: here the score function is less noisy
    info = " ".join(i.value for i in at.info)
    assert "less* noisy" in info and "cos z" in info

    at.selectbox(key="rp_f").set_value("step").run()
    assert_ok(at)
    m = metrics(at)
    assert m["Pathwise mean ∂/∂μ"] == "0.000"
    assert m["Variance ratio ∂/∂μ"] == "∞"
    warn = " ".join(w.value for w in at.warning)
    assert "biased" in warn and "exactly 0" in warn
    assert at.slider(key="rp_a").disabled is False

    at.slider(key="rp_mu").set_value(1.2).run()  # the readout follows the μ slider
    assert metrics(at)[READOUT] == f"{reparam.analytic_gradient('step', 1.2, 2.0, 1.0)[0]:.4f}"
    at.radio(key="rp_n").set_value(10_000).run()
    assert_ok(at)
    assert "10,000" in " ".join(w.value for w in at.warning)


def test_url_parameters_set_the_widgets_and_the_vae_section_follows_them():
    q = {"dataset": "digits", "rp_f": "(z-a)^2", "rp_mu": "1.5", "rp_sigma": "0.5", "rp_a": "-1.0",
         "rp_n": "3000", "rp_idx": "7", "rp_eps": "3"}
    at = page_app(PAGE, query=q)
    assert_ok(at)
    assert not at.error
    assert at.selectbox(key="rp_f").value == "(z-a)^2"
    assert at.slider(key="rp_mu").value == 1.5 and at.slider(key="rp_sigma").value == 0.5
    assert at.slider(key="rp_a").value == -1.0 and at.radio(key="rp_n").value == 3000
    assert at.number_input(key="rp_idx").value == 7 and at.number_input(key="rp_eps").value == 3
    assert metrics(at)[READOUT] == f"{reparam.analytic_gradient('(z-a)^2', 1.5, 0.5, -1.0)[0]:.4f}"
    vae_before = plotly_specs(at)[6]
    at.number_input(key="rp_eps").set_value(4).run()
    assert_ok(at)
    assert plotly_specs(at)[6] != vae_before  # a new ε gives new gradients


def test_invalid_url_values_are_refused_with_a_message_and_defaults():
    q = {"dataset": "digits", "rp_f": "<b>cube</b>", "rp_mu": "abc", "rp_sigma": "0", "rp_n": "7", "rp_idx": "99999"}
    at = page_app(PAGE, query=q)
    assert_ok(at)
    err = " ".join(e.value for e in at.error)
    for name in ("rp_f", "rp_mu", "rp_sigma", "rp_n", "rp_idx"):
        assert name in err, name
    assert "<b>" not in err
    assert at.selectbox(key="rp_f").value == "z^2" and at.slider(key="rp_mu").value == 0.5
    assert at.slider(key="rp_sigma").value == 1.0 and at.radio(key="rp_n").value == 1000
    assert at.number_input(key="rp_idx").value == 0
    assert metrics(at)[READOUT] == "1.0000"


def test_an_image_index_from_a_larger_dataset_is_clamped():
    from streamlit.testing.v1 import AppTest

    from tests.apptest_utils import ROOT
    at = AppTest.from_file(str(ROOT / PAGE), default_timeout=60)
    at.query_params["dataset"] = "digits"
    at.session_state["_keep_rp_idx"] = 400  # chosen earlier on MNIST-5k (500 held-out images); digits has fewer
    at.run()
    assert_ok(at)
    from core import zoo
    n_val = len(zoo.pretrained("digits", "vae", 1.0, 16).val_idx)
    assert n_val < 400 and at.number_input(key="rp_idx").value == n_val - 1


def test_presenter_mode_walks_through_scenes():
    at = page_app(PAGE, query={"dataset": "digits", "present": "1"})
    assert_ok(at)
    assert "Scene 1 of 5" in texts(at)
    assert not plotly_specs(at) and not at.metric  # scene 1: the derivation only
    at.button(key="_scene_rp_next").click().run()
    assert_ok(at)
    specs = plotly_specs(at)
    assert "Scene 2 of 5" in texts(at) and len(specs) == 1 and specs[0]["frames"]  # the animated graphs
    for _ in range(3):
        at.button(key="_scene_rp_next").click().run()
    assert_ok(at)
    assert "Scene 5 of 5" in texts(at) and "Inside a trained VAE" in texts(at) and len(plotly_specs(at)) == 3


def test_self_check_reveals_answers(default_app):
    at = default_app
    assert "Check yourself" in texts(at)
    at.button(key="_reveal_rp_0_btn").click().run()
    assert any("RuntimeError" in s.value for s in at.success)


# ---- real browser ------------------------------------------------------------------------------

def _open(page, server_url: str, query: str = "", ready: str = "Inside a trained VAE") -> None:
    # The first session of a fresh server cannot open a deep link (Streamlit reports "page not found"
    # before app.py has registered its pages), so start at the home page as a student would.
    page.goto(server_url)
    wait_drawn(page)
    page.goto(server_url + "/reparam" + query)
    wait_drawn(page)
    page.get_by_text(ready).first.wait_for()
    wait_drawn(page)
    assert_no_exception_box(page)


def _metric_value(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


@pytest.mark.browser
def test_reparam_page_in_browser(watched_page, server_url):
    page = watched_page
    _open(page, server_url)
    graph = page.locator(".js-plotly-plot").filter(has=page.locator(".updatemenu-button")).first
    graph.scroll_into_view_if_needed()
    # Record the frames Plotly really draws when Play is pressed.
    graph.evaluate("gd => { window._rpFrames = []; gd.on('plotly_animatingframe', e => window._rpFrames.push(e.name)); }")
    graph.locator(".updatemenu-button").first.click()
    page.wait_for_function("window._rpFrames && window._rpFrames.length >= 13", timeout=30_000)
    seen = page.evaluate("window._rpFrames")
    assert seen[0] == "0" and seen[-1] == "12"
    assert "∂L/∂μ: no path" in graph.inner_text() or graph.locator("text").filter(has_text="no path").count() >= 1

    # Move the μ slider with the keyboard: the exact-gradient readout follows (z² → 2μ).
    assert _metric_value(page, READOUT) == "1.0000"
    slider = page.locator('[data-testid="stSlider"]', has_text="μ (mean of q)").get_by_role("slider")
    slider.focus()
    slider.press("ArrowRight")
    page.wait_for_function(
        """label => [...document.querySelectorAll('[data-testid="stMetric"]')]
               .some(m => m.innerText.includes(label) && m.innerText.includes('1.2000'))""", arg=READOUT,
        timeout=30_000)
    wait_drawn(page)
    assert_no_exception_box(page)
    graph.evaluate("e => e.scrollIntoView({block: 'center'})")
    page.wait_for_timeout(300)
    screenshot(page, "reparam")


@pytest.mark.browser
def test_reparam_page_presenter_mode_in_browser(watched_page, server_url):
    page = watched_page
    _open(page, server_url, "?present=1", ready="Scene 1 of 5")
    assert page.get_by_text("Scene 1 of 5").first.is_visible()
    page.get_by_role("button", name="Next ▶").click()
    page.get_by_text("Scene 2 of 5").first.wait_for()
    wait_drawn(page)
    page.locator(".updatemenu-button").first.wait_for()
    assert_no_exception_box(page)
    page.locator(".js-plotly-plot").first.evaluate("e => e.scrollIntoView({block: 'center'})")
    page.wait_for_timeout(300)
    screenshot(page, "reparam-present")
