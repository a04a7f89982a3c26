"""The "Limits of VAEs" page: AppTest (controls change the figures and numbers, URL round trip,
presenter mode) and a real-browser test."""
from __future__ import annotations

import json

import pytest

from core import limits
from tests.apptest_utils import assert_ok, page_app, texts
from tests.conftest import assert_no_exception_box, screenshot, wait_drawn

PAGE = "pages/6_limits.py"


def figs(at) -> dict[str, dict]:
    """Figure JSON by widget key (the element id ends with the key given to ui.figure)."""
    return {c.proto.id.split("-", 2)[-1]: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def metric(at, label_start: str) -> str:
    return next(m.value for m in at.metric if m.label.startswith(label_start))


@pytest.fixture(scope="module")
def digits_at():
    at = page_app(PAGE, query={"dataset": "digits"}, timeout=180)
    assert_ok(at)
    return at


def test_page_draws_every_section_with_real_numbers(digits_at):
    at = digits_at
    keys = set(figs(at))
    assert {"lim_fig_images", "lim_fig_sharp", "lim_fig_rd", "lim_fig_au", "lim_fig_grid", "lim_fig_klbars",
            "lim_fig_curves", "lim_fig_hole", "lim_fig_complex", "lim_fig_strip_digits",
            "lim_fig_strip_mnist-5k"} <= keys
    body = texts(at)
    for head in ("1. Blurry outputs", "2. Over-regularisation", "3. The prior hole", "4. Complex data"):
        assert head in body
    assert body.count("What you see") >= 4 and body.count("Why it happens") == 4
    assert body.count("What people do about it") == 4
    # The numbers quoted are the models' own (freshly evaluated on the held-out split).
    rd = limits.rate_distortion("digits")
    low, high = rd["sweep"][0], rd["sweep"][-1]
    assert f"lowers the rate from {low['rate']:.1f} to {high['rate']:.2f} nats" in body
    blur = limits.blur_evidence("digits", 0, n_show=12)
    real = limits.summary_value(blur["summary"], "original", "laplacian")[0]
    assert metric(at, "Real images") == f"{real:.3f}"
    rd_fig = figs(at)["lim_fig_rd"]
    sweep = next(t for t in rd_fig["data"] if t.get("name") == "plain VAEs, β sweep")
    assert sweep["hovertemplate"].startswith("β=")
    for ref in ("Alemi", "Higgins", "Bowman", "van den Oord", "Vahdat", "Ho, J."):
        assert ref in body


def test_blur_controls_change_images_metrics_and_chart(digits_at):
    at = digits_at
    before = figs(at)
    vae_before = metric(at, "VAE β=1 reconstructions")
    at.selectbox(key="lim_beta").set_value(4.0).run()
    assert_ok(at)
    after = figs(at)
    assert metric(at, "VAE β=4 reconstructions") != vae_before
    assert after["lim_fig_images"] != before["lim_fig_images"]
    real_lap = metric(at, "Real images")
    at.radio(key="lim_measure").set_value("gradient").run()
    assert metric(at, "Real images") != real_lap
    assert "Mean gradient magnitude" in json.dumps(figs(at)["lim_fig_sharp"]["layout"]["yaxis"]["title"])
    at.slider(key="lim_n").set_value(5).run()
    assert figs(at)["lim_fig_images"] != after["lim_fig_images"]
    assert at.query_params["lim_beta"] == ["4.0"] or at.query_params["lim_beta"] == "4.0"


def test_rate_distortion_zoom_and_hole_controls(digits_at):
    at = digits_at
    rng_zoom = figs(at)["lim_fig_rd"]["layout"]["xaxis"]["range"]
    holes_before = metric(at, "Hole cells")
    hole_fig = figs(at)["lim_fig_hole"]
    at.toggle(key="lim_zoom").set_value(False)
    at.slider(key="lim_fill").set_value(50)
    at.run()
    assert_ok(at)
    assert figs(at)["lim_fig_rd"]["layout"]["xaxis"]["range"][1] > rng_zoom[1]
    assert metric(at, "Hole cells") != holes_before
    assert figs(at)["lim_fig_hole"] != hole_fig
    hole_fig = figs(at)["lim_fig_hole"]
    conf_text = texts(at)
    at.selectbox(key="lim_hbeta").set_value(0.5)
    at.toggle(key="lim_sigma").set_value(True)
    at.slider(key="lim_conf").set_value(0.6)
    at.run()
    assert_ok(at)
    assert figs(at)["lim_fig_hole"] != hole_fig
    assert "whole posterior" in texts(at) and "β = 0.5, counting" in texts(at)
    assert "p ≥ 0.60" in texts(at) and texts(at) != conf_text


def test_url_values_set_the_widgets_and_bad_ones_are_refused():
    at = page_app(PAGE, query={"dataset": "digits", "lim_beta": "0.5", "lim_measure": "gradient", "lim_cell": "0.5",
                               "lim_zoom": "0"}, timeout=180)
    assert_ok(at)
    assert at.selectbox(key="lim_beta").value == 0.5
    assert at.radio(key="lim_measure").value == "gradient"
    assert at.selectbox(key="lim_cell").value == 0.5
    assert at.toggle(key="lim_zoom").value is False
    at = page_app(PAGE, query={"dataset": "digits", "lim_beta": "7", "lim_n": "<b>x</b>", "lim_conf": "nan"},
                  timeout=180)
    assert_ok(at)
    err = " ".join(e.value for e in at.error)
    assert "lim_beta" in err and "lim_n" in err and "lim_conf" in err and "<b>" not in err
    assert at.selectbox(key="lim_beta").value == 1.0 and at.slider(key="lim_n").value == 8
    assert at.slider(key="lim_conf").value == 0.9


def test_default_dataset_mnist_runs():
    at = page_app(PAGE, timeout=180)
    assert_ok(at)
    assert "MNIST-5k" in texts(at)
    assert "lim_fig_hole" in figs(at)


def test_presenter_mode_shows_one_scene_at_a_time():
    at = page_app(PAGE, query={"dataset": "digits", "present": "1"}, timeout=180)
    assert_ok(at)
    body = texts(at)
    assert "1. Blurry outputs" in body and "3. The prior hole" not in body
    at.button(key="_scene_lim_next").click().run()
    body = texts(at)
    assert "2. Over-regularisation" in body and "1. Blurry outputs" not in body
    assert "lim_fig_rd" in figs(at)
    # The self-check closes every scene, with answers taken from the models.
    at.button(key="_reveal_lim_0_btn").click().run()
    rd = {p["beta"]: p for p in limits.rate_distortion("digits")["sweep"]}
    assert f"The rate falls from {rd[1.0]['rate']:.2f} to {rd[2.0]['rate']:.2f} nats" in " ".join(
        s.value for s in at.success)


def open_home_first(page, server_url: str) -> None:
    """On a fresh server, a deep link opened before any page has run shows Streamlit's "Page not
    found" dialog (and a console error) although the page then runs; opening the home page first
    avoids that race."""
    page.goto(server_url)
    wait_drawn(page)


@pytest.mark.browser
def test_limits_page_in_browser(watched_page, server_url):
    page = watched_page
    open_home_first(page, server_url)
    page.goto(server_url + "/limits")
    wait_drawn(page)
    assert_no_exception_box(page)
    page.get_by_text("4. Complex data").first.wait_for()
    page.wait_for_selector('[data-testid="stPlotlyChart"]')
    real = page.locator('[data-testid="stMetric"]').filter(has_text="Real images").first
    real.wait_for()
    before = real.inner_text()
    page.get_by_text("Mean gradient magnitude").first.click()  # the sharpness-measure radio
    page.wait_for_function("b => { const m = [...document.querySelectorAll('[data-testid=\"stMetric\"]')]"
                           ".find(e => e.innerText.includes('Real images')); return m && m.innerText !== b; }",
                           arg=before, timeout=60_000)
    wait_drawn(page)
    assert_no_exception_box(page)
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 10
    # Put the measure back so the screenshot shows the default view.
    page.get_by_text("Variance of the Laplacian").first.click()
    wait_drawn(page)
    screenshot(page, "limits")


@pytest.mark.browser
def test_limits_page_presenter_mode_in_browser(watched_page, server_url):
    page = watched_page
    open_home_first(page, server_url)
    page.goto(server_url + "/limits?present=1")
    wait_drawn(page)
    assert_no_exception_box(page)
    page.get_by_text("Scene 1 of 4").first.wait_for()
    page.get_by_role("button", name="Next ▶").click()
    page.get_by_text("Scene 2 of 4").first.wait_for()
    wait_drawn(page)
    page.get_by_text("2. Over-regularisation and posterior collapse").first.wait_for()
    assert_no_exception_box(page)
    screenshot(page, "limits-present")
