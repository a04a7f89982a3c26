"""The "How an autoencoder works" page: AppTest (widgets, URL state, figures) and a real browser."""
from __future__ import annotations

import pytest

from tests.apptest_utils import assert_ok, page_app, plotly_specs, texts
from tests.conftest import ConsoleWatch, assert_no_exception_box, screenshot, wait_drawn

PAGE = "pages/1_autoencoder.py"


def _diagram(at) -> dict:
    specs = [s for s in plotly_specs(at) if s.get("frames")]
    assert len(specs) == 1, "exactly one animated figure (the diagram)"
    return specs[0]


def _labels(spec: dict) -> str:
    return " ".join(a.get("text", "") for a in spec["layout"].get("annotations", []))


def _subheaders(at) -> str:
    return " ".join(s.value for s in at.subheader)


def _metric(at, label_start: str) -> str:
    return next(m.value for m in at.metric if m.label.startswith(label_start))


def test_default_page_draws_the_animated_diagram_of_a_real_model():
    at = page_app(PAGE)
    assert_ok(at)
    spec = _diagram(at)
    assert [f["name"] for f in spec["frames"]] == ["input", "encoder 1", "encoder 2", "z", "decoder 1", "decoder 2",
                                                  "output", "compare"]
    labels = _labels(spec)
    for label in ("<b>input</b><br>784<br>(32 shown)", "<b>encoder 1</b><br>256<br>(32 shown)",
                  "<b>z (code)</b><br>16", "<b>output</b><br>784<br>(32 shown)", "ENCODER", "DECODER"):
        assert label in labels
    assert "<b>μ</b>" not in labels and "ε ~ N(0, I)" not in labels
    assert [b["label"] for b in spec["layout"]["updatemenus"][0]["buttons"]][:2] == ["▶ Play", "❚❚ Pause"]
    body = texts(at)
    assert "Compression (numbers) 784 → 16" in body and "49×" in body
    assert "Encoder" in body and "Decoder" in body and "latent space" in body
    for use in ("compression", "denoising", "anomaly detection", "generation"):
        assert use in body.lower()
    # The animation can be downloaded as a standalone HTML file.
    assert any(d.proto.label.endswith("autoencoder-animation (HTML)") for d in at.get("download_button"))
    # The readout quotes the model's real numbers: the diagram's own error equals the metric.
    err = _metric(at, "Reconstruction error")
    assert err.endswith("nats") and err.split()[0] in labels
    # Self-check answers (revealed) quote the models' numbers.
    for i in range(3):
        at.session_state[f"_reveal_ae_{i}"] = True
    at.run()
    answers = " ".join(s.value for s in at.success)
    assert "nats with 2 numbers" in answers and "99th percentile" in answers and "KL from its codes" in answers


def test_vae_switch_shows_the_reparameterized_bottleneck():
    at = page_app(PAGE)
    at.radio(key="ae_kind").set_value("VAE").run()
    assert_ok(at)
    spec = _diagram(at)
    labels = _labels(spec)
    for label in ("<b>μ</b><br>16", "<b>σ</b><br>16", "<b>ε ~ N(0, I)</b><br>16", "<b>z = μ + σ·ε</b><br>16"):
        assert label in labels
    assert [f["name"] for f in spec["frames"]][3:6] == ["mu, sigma", "eps", "z"]
    assert "KL =" in texts(at)
    assert at.query_params["ae_kind"] in ("VAE", ["VAE"])  # written back to the URL


def test_inputs_and_widgets_change_the_numbers():
    # By class, from the URL (class 7, its third held-out example), with latent size 2.
    at = page_app(PAGE, query={"ae_input": "by class", "ae_class": "7", "ae_example": "3", "ae_latent": "2"})
    assert_ok(at)
    assert not at.error
    assert at.selectbox(key="ae_class").value == 7 and at.number_input(key="ae_example").value == 3
    assert "a held-out 7 (example 3 of" in _subheaders(at)
    assert "<b>z (code)</b><br>2" in _labels(_diagram(at)) and _metric(at, "Compression") == "784 → 2"
    first = _diagram(at)["data"]
    noisy = _metric(at, "Noisy input vs clean")
    # The noise slider changes the denoising numbers and the anomaly histogram's marker.
    at.slider(key="ae_noise").set_value(0.9).run()
    assert _metric(at, "Noisy input vs clean") != noisy and "σ = 0.90" in texts(at)
    # The keyboard step slider chooses the frame the animation shows.
    assert _diagram(at)["layout"]["sliders"][0]["active"] == 7
    at.slider(key="ae_step").set_value(2).run()
    spec = _diagram(at)
    assert spec["layout"]["sliders"][0]["active"] == 1 and "Step 2 of 8" in spec["layout"]["title"]["text"]
    # Random: the dice button draws another held-out image.
    at.radio(key="ae_input").set_value("random").run()
    before = _subheaders(at)
    at.button(key="ae_reroll").click().run()
    assert_ok(at)
    assert "random held-out image" in _subheaders(at) and _subheaders(at) != before
    assert _diagram(at)["data"] != first
    # Draw your own: without a drawing the page says so and keeps working.
    at.radio(key="ae_input").set_value("draw your own").run()
    assert_ok(at)
    assert "Nothing drawn yet" in texts(at)


def test_url_round_trip_and_digits_dataset():
    at = page_app(PAGE, query={"dataset": "digits", "ae_kind": "VAE", "ae_latent": "2", "ae_input": "by index",
                               "ae_index": "7"})
    assert_ok(at)
    assert not at.error
    assert at.radio(key="ae_kind").value == "VAE"
    assert at.selectbox(key="ae_latent").value == 2
    assert at.number_input(key="ae_index").value == 7
    assert "held-out image 7" in _subheaders(at)
    labels = _labels(_diagram(at))
    assert "<b>z = μ + σ·ε</b><br>2" in labels and "<b>input</b><br>64<br>(32 shown)" in labels
    assert _metric(at, "Compression") == "64 → 2"
    # Widgets write their state back to the URL, so a copied link reopens this view.
    at.number_input(key="ae_index").set_value(9).run()
    assert at.query_params["ae_index"] in ("9", ["9"])
    assert "held-out image 9" in _subheaders(at)


def test_invalid_url_values_are_refused_with_a_message():
    at = page_app(PAGE, query={"ae_kind": "GAN", "ae_latent": "5", "ae_input": "by index", "ae_index": "99999",
                               "ae_noise": "<b>x</b>"})
    assert_ok(at)
    err = " ".join(e.value for e in at.error)
    for name in ("ae_kind", "ae_latent", "ae_index", "ae_noise"):
        assert name in err
    assert "<b>" not in err
    assert at.radio(key="ae_kind").value == "AE" and at.selectbox(key="ae_latent").value == 16
    assert at.number_input(key="ae_index").value == 0 and at.slider(key="ae_noise").value == 0.5


def test_presenter_mode_walks_through_scenes():
    at = page_app(PAGE, query={"present": "1"})
    assert_ok(at)
    assert len(plotly_specs(at)) == 1  # scene 1: the diagram only
    assert "Encoder, code, decoder" not in _subheaders(at)
    at.button(key="_scene_ae_next").click().run()
    assert_ok(at)
    assert "Encoder, code, decoder" in _subheaders(at) and not plotly_specs(at)
    at.session_state["_scene_ae"] = 3  # anomaly detection on its own (its noise slider lives in scene 3)
    at.run()
    assert_ok(at)
    assert "anomaly detection" in _subheaders(at) and "denoising" not in _subheaders(at)
    at.session_state["_scene_ae"] = 4
    at.run()
    assert_ok(at)
    assert "generation" in _subheaders(at).lower() and "Check yourself" in _subheaders(at)


# ---- real browser ----------------------------------------------------------------------------------

# The slider's "current value" text ("step: enc 1"); Plotly gives it the class slider-label.
CURRENT = "[...document.querySelectorAll('.js-plotly-plot .slider-label')].map(e => e.textContent)" \
          ".find(t => t.startsWith('step: ')) || ''"


def _frame_label(page) -> str:
    return page.evaluate(f"() => {CURRENT}")


def _wait_frame(page, js_test: str, timeout: float = 30_000) -> None:
    """Wait until ``js_test`` (an expression of the label text ``t``) is true."""
    page.wait_for_function(f"() => {{ const t = {CURRENT}; return {js_test}; }}", timeout=timeout)


@pytest.mark.browser
def test_autoencoder_page_plays_in_the_browser(page, server_url):
    # Not `watched_page`: pausing a running Plotly animation rejects the promise of the Play call
    # (plotly.js rejects an interrupted animate() with no reason and its buttons do not catch it),
    # which Chromium reports as "pageerror: undefined". That one error, once per Pause, is allowed;
    # any other console error fails the test.
    watch = ConsoleWatch(page)
    page.set_default_timeout(60_000)
    page.goto(server_url + "/autoencoder")
    wait_drawn(page)
    assert_no_exception_box(page)
    page.wait_for_selector(".js-plotly-plot .updatemenu-button")
    assert _frame_label(page).strip() == "step: compare"
    page.locator(".updatemenu-button").first.click()  # ▶ Play: replays from the input
    _wait_frame(page, "t !== '' && !t.includes('compare')")  # the animation has started again
    n_before = len(watch.real_errors())
    page.locator(".updatemenu-button").nth(1).click()  # ❚❚ Pause
    page.wait_for_timeout(300)
    paused = _frame_label(page)
    page.wait_for_timeout(2500)
    assert _frame_label(page) == paused and "compare" not in paused
    page.locator(".updatemenu-button").nth(3).click()  # ▶ Fast: plays on from the pause to the end
    _wait_frame(page, "t.includes('compare')")
    # The noise slider (keyboard): the denoising numbers change.
    metric = page.locator('[data-testid="stMetric"]', has_text="Noisy input vs clean")
    before = metric.locator('[data-testid="stMetricValue"]').inner_text()
    slider = page.locator('[data-testid="stSlider"]', has_text="Noise added").get_by_role("slider")
    slider.focus()
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "(b) => { const m = [...document.querySelectorAll('[data-testid=\"stMetric\"]')]"
        ".find(e => e.innerText.includes('Noisy input vs clean'));"
        " return m && !m.innerText.includes(b); }", arg=before, timeout=30_000)
    # The keyboard alternative to Play: the step slider redraws the diagram at another step.
    step = page.locator('[data-testid="stSlider"]', has_text="Step shown").get_by_role("slider")
    step.focus()
    page.keyboard.press("ArrowLeft")
    _wait_frame(page, "t.includes('output')", timeout=60_000)
    page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot .gtitle')]"
                           ".some(e => e.textContent.includes('Step 7 of 8'))", timeout=60_000)
    step.focus()
    page.keyboard.press("End")  # back to the last step for the screenshot
    _wait_frame(page, "t.includes('compare')", timeout=60_000)
    wait_drawn(page)
    assert_no_exception_box(page)
    page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
    screenshot(page, "autoencoder")
    errors = watch.real_errors()
    interrupted = [e for e in errors[n_before:] if e == "pageerror: undefined"]
    assert len(interrupted) <= 1, errors
    assert [e for e in errors if e not in interrupted] == [], errors


@pytest.mark.browser
def test_autoencoder_page_presenter_mode_in_browser(watched_page, server_url):
    page = watched_page
    page.goto(server_url + "/autoencoder?present=1&ae_kind=VAE")
    wait_drawn(page)
    page.wait_for_selector(".js-plotly-plot .updatemenu-button")
    assert_no_exception_box(page)
    assert page.get_by_text("Scene 1 of 5").first.is_visible()
    screenshot(page, "autoencoder-present")


@pytest.mark.browser
def test_draw_your_own_digit_in_the_browser(watched_page, server_url):
    page = watched_page
    page.goto(server_url + "/autoencoder?ae_input=draw%20your%20own&dataset=mnist-5k")
    wait_drawn(page)
    page.wait_for_selector(".js-plotly-plot")
    page.get_by_text("Nothing drawn yet").first.wait_for()
    canvas = next(c for c in page.locator("canvas").all()
                  if (b := c.bounding_box()) and abs(b["width"] - 280) < 2 and abs(b["height"] - 280) < 2)
    box = canvas.bounding_box()
    x0, y0 = box["x"] + 140, box["y"] + 40
    page.mouse.move(x0, y0)
    page.mouse.down()
    for i in range(1, 25):  # a "1": a stroke from top to bottom
        page.mouse.move(x0 + i, y0 + i * 8)
    page.mouse.up()
    page.get_by_text("your drawing").first.wait_for(timeout=30_000)
    wait_drawn(page)
    assert_no_exception_box(page)
    assert page.get_by_text("what the network sees").first.is_visible()
