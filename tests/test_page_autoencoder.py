"""The "How an autoencoder works" page: AppTest (widgets, URL state, figures) and a real browser."""
from __future__ import annotations

import pytest

from core.figures.diagram import SPEEDS
from tests.apptest_utils import assert_ok, page_app, plotly_specs, texts
from tests.conftest import ConsoleWatch, assert_no_exception_box, screenshot, wait_drawn, wait_laid_out

PAGE = "pages/1_autoencoder.py"


def _diagram(at) -> dict:
    specs = [s for s in plotly_specs(at) if s.get("frames")]
    assert len(specs) == 1, "exactly one animated figure (the diagram)"
    return specs[0]


def _labels(spec: dict) -> str:
    return " ".join(a.get("text", "") for a in spec["layout"].get("annotations", []))


def _subheaders(at) -> str:
    return " ".join(s.value for s in at.subheader)


def _input_named(at) -> str:
    """The sentence above the animation that names its input ("The input is ...")."""
    return " ".join(m.value for m in at.markdown if m.value.startswith("The input is"))


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
    assert "nats with 2 numbers" in answers and "99th percentile" in answers and "at most" in answers
    assert "spread like N(0, I)" not in answers and "land where real ones lie" not in answers


def test_page_opens_with_the_key_idea_and_the_block_diagram_of_the_chosen_model():
    at = page_app(PAGE)
    assert_ok(at)
    specs = plotly_specs(at)
    block = specs[0]  # the first figure on the page
    assert not block.get("frames") and block["layout"]["meta"]["hidden_dims"] == [256, 128]
    assert block["layout"]["meta"]["latent_dim"] == 16 and block["layout"]["meta"]["input_dim"] == 784
    labels = _labels(block)
    assert "784 → 256 → 128 → 16" in labels and "encoder" in labels and "decoder" in labels and "L(x, x̂)" in labels
    key_idea = at.markdown[0].value
    assert key_idea.startswith("**The key idea.**") and key_idea.count(". ") <= 3
    at.radio(key="ae_kind").set_value("VAE").run()
    at.selectbox(key="ae_latent").set_value(2).run()
    block = plotly_specs(at)[0]
    assert block["layout"]["meta"]["kind"] == "vae" and block["layout"]["meta"]["latent_dim"] == 2
    assert "z = μ + σ⊙ε" in _labels(block)


def test_equations_and_the_readouts_match_an_independent_computation():
    """The metrics beside L_BCE and MSE are those formulas, recomputed here with torch on the shown image."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from core.data import load_dataset
    from core.zoo import pretrained

    at = page_app(PAGE, query={"ae_input": "by index", "ae_index": "3"})
    assert_ok(at)
    body = texts(at)
    assert r"z = f_\phi(x)" in body and r"\hat x = g_\theta(z)" in body
    assert r"x_i\log\hat x_i + (1-x_i)\log(1-\hat x_i)" in body and "unsupervised" in body
    assert "backpropagation" in body
    p = pretrained("mnist-5k", "ae", 1.0, 16)
    x = torch.tensor(load_dataset("mnist-5k").x[p.val_idx[3]])[None]
    with torch.no_grad():
        xh = torch.sigmoid(p.model.decoder(p.model.head_mu(torch.relu(p.model.encoder(x)))))
    bce = F.binary_cross_entropy(xh.double(), x.double(), reduction="sum").item()
    mse = ((xh - x) ** 2).mean().item()
    assert _metric(at, "Reconstruction error (this image)") == f"{bce:.1f} nats"
    assert _metric(at, "Mean squared error per pixel") == f"{mse:.4f}"
    # The encoder's code layer is linear: the page no longer says every encoder layer applies ReLU.
    assert "then a linear layer (no ReLU) gives the code" in body
    assert "784 → 256 → 128 → 16): each layer takes a weighted sum of the layer before and applies ReLU" not in body
    assert "Common wrong answer" in body and "coordinate system" in body and "to generate new data" in body
    assert np.isfinite(bce)


def test_linear_autoencoder_matches_pca_live():
    """The principal angles and MSEs shown are recomputed with numpy's SVD (PCA) and the same training."""
    import numpy as np

    from core import linear_ae
    from core.data import load_dataset
    from core.zoo import pretrained

    at = page_app(PAGE, query={"ae_latent": "2"})
    assert_ok(at)
    body = texts(at)
    for cite in ("Baldi and Hornik (1989)", "Vincent et al., 2008", "Rifai et al., 2011", "Ranzato et al., 2007",
                 "Ng, 2011", "Kingma and Welling, 2014", "Undercomplete", "Overcomplete"):
        assert cite in body, cite
    p = pretrained("digits", "ae", 1.0, 2)
    x = load_dataset("digits").x.astype(np.float64)
    train = np.setdiff1d(np.arange(len(x)), p.val_idx)
    ae = linear_ae.train_linear_ae(x[train], 2)
    m = x[train].mean(0)
    _, _, vt = np.linalg.svd(x[train] - m, full_matrices=False)
    q, _ = np.linalg.qr(ae.w_dec)
    angles = np.degrees(np.arccos(np.clip(np.linalg.svd(q.T @ vt[:2].T, compute_uv=False), -1, 1)))
    xv = x[p.val_idx]
    pca_mse = np.mean(((xv - m) @ vt[:2].T @ vt[:2] + m - xv) ** 2)
    ae_mse = np.mean((ae.reconstruct(xv) - xv) ** 2)
    assert _metric(at, "Largest principal angle, trained") == f"{angles.max():.2f}°"
    assert angles.max() < 1.0
    assert _metric(at, "Held-out MSE, PCA") == f"{pca_mse:.5f}"
    assert _metric(at, "Held-out MSE, linear AE") == f"{ae_mse:.5f}"
    assert float(_metric(at, "Largest principal angle, untrained").rstrip("°")) > 60
    # The reconstructions are four pictures, one row each (issue 21: images cost the browser less than a chart).
    assert any("held-out digits reconstructed from K = 2 numbers" in m.value for m in at.markdown)
    captions = [c for img in at.get("image") for c in img.captions]
    assert [c for c in captions if c in ("input", "linear AE", "PCA", "ReLU AE")] == ["input", "linear AE", "PCA",
                                                                                       "ReLU AE"]
    assert not any("reconstructed from K" in s["layout"].get("title", {}).get("text", "") for s in plotly_specs(at))
    # The details are Markdown tables (no st.dataframe: its browser code is large, issue 21's open time),
    # with the trained angles computed above.
    assert not at.get("arrow_data_frame") and not at.dataframe
    table = next(m.value for m in at.markdown if m.value.startswith("| angle i |"))
    shown = sorted(float(row.split("|")[2]) for row in table.splitlines()[2:])
    assert len(shown) == 2 and np.allclose(shown, np.sort(angles), atol=2e-3), (shown, angles)


def test_kl_guarantee_is_computed_not_claimed():
    """The 2-D beta=1 MNIST VAE: mean KL term, variances of q(z) and the share of means beyond radius 3,
    recomputed with torch.distributions on its training images."""
    import numpy as np
    import torch
    from torch.distributions import Normal, kl_divergence

    from core.data import load_dataset
    from core.zoo import pretrained

    at = page_app(PAGE, query={"ae_latent": "2"})
    assert_ok(at)
    p = pretrained("mnist-5k", "vae", 1.0, 2)
    x = load_dataset("mnist-5k").x
    train = np.setdiff1d(np.arange(len(x)), p.val_idx)
    with torch.no_grad():
        mu, logvar = p.model.encode(torch.tensor(x[train]))
    mu, sd = mu.double(), torch.exp(0.5 * logvar.double())
    kl = kl_divergence(Normal(mu, sd), Normal(0.0, 1.0)).sum(1).mean().item()
    agg = (mu.var(0, unbiased=False) + (sd ** 2).mean(0)).numpy()
    outside = (mu.pow(2).sum(1) > 9).double().mean().item()
    prior = float(np.exp(-4.5))  # P(chi-square(2) > 9)
    body = texts(at)
    assert f"at most {kl:.1f} nats" in body
    assert f"{agg[0]:.2f}, {agg[1]:.2f} (N(0, I): 1)" in body
    assert f"{100 * outside:.1f}% of the means μ(x) lie beyond radius 3, where N(0, I) puts {100 * prior:.1f}%" in body
    assert 1.8 < agg[0] < 2.1 and 0.10 < outside < 0.13  # the figures (1.93, 11.4 %)
    assert "random codes fall where real ones do" not in body
    assert "0 only when q(z|x) = N(0, I)" in body and "Hoffman and Johnson, 2016" in body
    helps = " ".join(m.proto.help for m in at.metric)
    assert "spread exactly like the random codes" not in helps and "do not show in it" in helps


def test_vae_switch_shows_the_reparameterized_bottleneck():
    at = page_app(PAGE)
    at.radio(key="ae_kind").set_value("VAE").run()
    assert_ok(at)
    spec = _diagram(at)
    labels = _labels(spec)
    for label in ("<b>μ</b><br>16", "<b>σ</b><br>16", "<b>ε ~ N(0, I)</b><br>16", "<b>z = μ + σ·ε</b><br>16"):
        assert label in labels
    assert [f["name"] for f in spec["frames"]][3:6] == ["mu, sigma", "eps", "z"]
    assert "KL =" in texts(at) and "Dotted lines join μ_j, σ_j and ε_j" in texts(at)  # the legend, also in presenter mode
    assert at.query_params["ae_kind"] in ("VAE", ["VAE"])  # written back to the URL


def test_inputs_and_widgets_change_the_numbers():
    # By class, from the URL (class 7, its third held-out example), with latent size 2.
    at = page_app(PAGE, query={"ae_input": "by class", "ae_class": "7", "ae_example": "3", "ae_latent": "2"})
    assert_ok(at)
    assert not at.error
    assert at.selectbox(key="ae_class").value == 7 and at.number_input(key="ae_example").value == 3
    assert "a held-out 7 (example 3 of" in _input_named(at)
    assert "<b>z (code)</b><br>2" in _labels(_diagram(at)) and _metric(at, "Compression") == "784 → 2"
    first = _diagram(at)["data"]
    noisy = _metric(at, "Noisy input vs clean")
    # The noise slider changes the denoising numbers and the anomaly histogram's marker.
    at.slider(key="ae_noise").set_value(0.9).run()
    assert _metric(at, "Noisy input vs clean") != noisy and "σ = 0.90" in texts(at)
    # One visible step control: the keyboard slider waits in a collapsed expander.
    exp = next(e for e in at.expander if "Step through with the keyboard" in e.label)
    assert exp.proto.expanded is False and exp.slider(key="ae_step")
    # The keyboard step slider chooses the frame the animation shows.
    assert _diagram(at)["layout"]["sliders"][0]["active"] == 7
    at.slider(key="ae_step").set_value(2).run()
    spec = _diagram(at)
    assert spec["layout"]["sliders"][0]["active"] == 1 and "Step 2 of 8" in spec["layout"]["title"]["text"]
    # Random: the dice button draws another held-out image.
    at.radio(key="ae_input").set_value("random").run()
    before = _input_named(at)
    at.button(key="ae_reroll").click().run()
    assert_ok(at)
    assert "random held-out image" in _input_named(at) and _input_named(at) != before
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
    # Issue 21: opened as a VAE, the diagram shows its whole forward pass (its last step), as the AE does.
    spec = _diagram(at)
    assert spec["layout"]["sliders"][0]["active"] == 9 and "Step 10 of 10" in spec["layout"]["title"]["text"]
    assert at.number_input(key="ae_index").value == 7
    assert "held-out image 7" in _input_named(at)
    labels = _labels(_diagram(at))
    assert "<b>z = μ + σ·ε</b><br>2" in labels and "<b>input</b><br>64<br>(32 shown)" in labels
    assert _metric(at, "Compression") == "64 → 2"
    # Widgets write their state back to the URL, so a copied link reopens this view.
    at.number_input(key="ae_index").set_value(9).run()
    assert at.query_params["ae_index"] in ("9", ["9"])
    assert "held-out image 9" in _input_named(at)


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
    specs = plotly_specs(at)
    assert len(specs) == 1 and not specs[0].get("frames")  # scene 1: the block diagram only
    # Issue 21: in presenter mode the main figure comes first, tall enough to fill half a 1080-pixel screen and
    # short enough to fit a 720-pixel one under the scene bar (about 80 px); the key idea follows it.
    assert 540 <= specs[0]["layout"]["height"] <= 640
    assert "The key idea" in texts(at)
    assert "Encoder, code, decoder" not in _subheaders(at)
    at.button(key="_scene_ae_next").click().run()
    assert_ok(at)
    spec = _diagram(at)  # scene 2: the animation, with no heading above it (the scene bar names it)
    assert not _subheaders(at) and 540 <= spec["layout"]["height"] <= 640
    at.button(key="_scene_ae_next").click().run()
    assert_ok(at)
    assert "Encoder, code, decoder" in _subheaders(at) and not plotly_specs(at)
    sliders = {}
    for scene in (3, 4, 5, 6):
        at.session_state["_scene_ae"] = scene
        at.run()
        assert_ok(at)
        specs = plotly_specs(at)
        assert specs and 540 <= specs[0]["layout"]["height"] <= 640, (scene, specs[0]["layout"].get("height"))
        assert all("Check yourself" in h.value for h in at.subheader), _subheaders(at)  # no section heading
        sliders[scene] = [s.key for s in at.slider]
        if scene == 5:  # anomaly detection on its own: the histogram and the two odd inputs
            assert len(specs) == 2 and "Reconstruction error of the" in specs[0]["layout"]["title"]["text"]
    assert "ae_noise" in sliders[4] and "ae_noise" not in sliders[5]  # the noise slider lives in scene 4
    assert "Check yourself" not in _subheaders(at)  # self-checks stay out of presenter mode (core.ui.self_check)


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
    # Issue 21: ▶ Play sits at the top of the animated figure (it was under it, about 1,500 px down the page).
    chart = page.locator(".st-key-ae_diagram .js-plotly-plot").first.bounding_box()
    play = page.locator(".st-key-ae_diagram .updatemenu-button").first.bounding_box()
    assert chart["y"] < play["y"] < chart["y"] + 160, (chart, play)
    page.locator(".updatemenu-button").first.click()  # ▶ Play: replays from the input
    _wait_frame(page, "t !== '' && !t.includes('compare')")  # the animation has started again
    n_before = len(watch.real_errors())
    page.locator(".updatemenu-button").nth(1).click()  # ❚❚ Pause
    page.wait_for_timeout(300)
    paused = _frame_label(page)
    page.wait_for_timeout(SPEEDS["▶ Play"] + 200)  # longer than one step of Play: a running animation would move
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
    page.get_by_text("Step through with the keyboard").first.click()  # the keyboard control's expander
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
    # The whole page at 1400 wide: Streamlit scrolls inside its main element, so grow the viewport to it.
    height = page.evaluate("() => Math.max(...['[data-testid=\"stMain\"]', '[data-testid=\"stAppViewContainer\"]']"
                           ".map(s => document.querySelector(s)).filter(Boolean).map(e => e.scrollHeight))")
    page.set_viewport_size({"width": 1400, "height": min(int(height) + 50, 16000)})
    wait_laid_out(page)  # the charts' own resize to the new viewport
    screenshot(page, "autoencoder")
    # Presenter mode at projector size (tests/test_presenter.py checks that every scene fits; here what it does
    # not): the VAE opens on its last step too (the whole forward pass), and ▶ Play is on screen.
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(server_url + "/autoencoder?present=1&ae_kind=VAE")
    wait_drawn(page)
    assert page.get_by_text("Scene 1 of 7").first.is_visible()
    page.locator("body").press("PageDown")  # scene 2: the animation
    page.get_by_text("Scene 2 of 7").first.wait_for()
    page.wait_for_selector(".js-plotly-plot .updatemenu-button")
    wait_drawn(page)
    assert_no_exception_box(page)
    assert _frame_label(page).strip() == "step: compare"
    assert page.locator(".updatemenu-button").first.is_visible()
    screenshot(page, "autoencoder-present")  # Streamlit scrolls inside its main element: this is the viewport
    errors = watch.real_errors()
    interrupted = [e for e in errors[n_before:] if e == "pageerror: undefined"]
    assert len(interrupted) <= 1, errors
    assert [e for e in errors if e not in interrupted] == [], errors


@pytest.mark.browser
def test_draw_your_own_digit_in_the_browser(watched_page, server_url):
    page = watched_page
    page.set_viewport_size({"width": 1000, "height": 1000})  # a narrow window: the canvas must not be clipped
    page.goto(server_url + "/autoencoder?ae_input=draw%20your%20own&dataset=mnist-5k")
    wait_drawn(page)
    page.wait_for_selector(".js-plotly-plot")
    page.get_by_text("Nothing drawn yet").first.wait_for()
    canvas = next(c for c in page.locator("canvas").all()
                  if (b := c.bounding_box()) and abs(b["width"] - 280) < 2 and abs(b["height"] - 280) < 2)
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    # Issue 21: in a narrow column the 280-pixel canvas was clipped; its far corner must be the canvas itself.
    # (the canvas lives in the component's shadow DOM, so the hit is its host, inside the keyed container)
    inside = page.evaluate(
        "([x, y]) => { const e = document.elementFromPoint(x, y); return !!(e && e.closest('.st-key-ae_canvas')); }",
        [box["x"] + box["width"] - 4, box["y"] + box["height"] - 4])
    assert inside, "the canvas's far corner is covered or clipped"
    # Issue 21: the canvas's toolbar (undo, redo, clear) appears above it on hover; it must cover nothing else.
    page.mouse.move(box["x"] + 100, box["y"] + 100)
    page.wait_for_function("""() => { const host = [...document.querySelectorAll('.st-key-ae_canvas *')].find(e => e.shadowRoot);
      const bar = host && host.shadowRoot.querySelector('.dc-toolbar-card');
      return !!bar && bar.getBoundingClientRect().width > 0; }""", timeout=10_000)  # the toolbar has appeared
    overlaps = page.evaluate("""() => {
      const host = [...document.querySelectorAll('.st-key-ae_canvas *')].find(e => e.shadowRoot);
      const bar = host.shadowRoot.querySelector('.dc-toolbar-card').getBoundingClientRect();
      if (bar.width === 0) return ['toolbar not shown'];
      const hit = (r) => r.left < bar.right && bar.left < r.right && r.top < bar.bottom && bar.top < r.bottom;
      return [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stElementContainer"]')]
        .filter(e => !e.classList.contains('st-key-ae_canvas') && !e.querySelector('.st-key-ae_canvas'))
        .filter(e => e.innerText.trim() !== '' || e.querySelector('input, button, canvas, img, svg'))  // not st.space
        .filter(e => e.getBoundingClientRect().height > 0 && hit(e.getBoundingClientRect()))
        .map(e => e.innerText.slice(0, 60)); }""")
    assert overlaps == [], overlaps
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


def test_switching_model_keeps_the_diagram_on_its_last_step():
    """Issue 21: the AE opened on its last step, but switching to the VAE (10 steps, not 8) showed step 1."""
    at = page_app(PAGE)
    assert at.slider(key="ae_step").value == 8
    at.radio(key="ae_kind").set_value("VAE").run()
    assert_ok(at)
    spec = _diagram(at)
    assert at.slider(key="ae_step").value == 10 and spec["layout"]["sliders"][0]["active"] == 9
    assert "Step 10 of 10" in spec["layout"]["title"]["text"]
    at.slider(key="ae_step").set_value(3).run()  # a step the user chose is kept when it exists in both
    at.radio(key="ae_kind").set_value("AE").run()
    assert at.slider(key="ae_step").value == 3 and _diagram(at)["layout"]["sliders"][0]["active"] == 2
