"""Shareable state (issue 10): every page's key parameters live in its URL, so a copied link, or a
saved settings file, reopens the same view.

* Browser, one test per page: a crafted deep link with non-default values shows them in the widgets
  and in a readout computed from them, and the page's own URL still carries them.
* Browser round trip: values changed in the browser give a URL that reproduces the view in a new
  browser context (a new session, as when a link is sent to someone else).
* Browser, settings file: the sidebar's JSON download holds the current view (also values changed
  by a fragment rerun), loading it restores a changed value, and a malformed file gives a clear
  message without breaking the page.
* AppTest: URL -> widgets -> URL for the parameters the per-page test files do not cover yet
  (the reparameterization page's parameters are all covered in test_page_reparam.py), and the
  settings file's content equals the URL the page wrote, run after run.

Every page is opened on the small digits dataset, which keeps the whole file fast.
"""
from __future__ import annotations

import json
import math
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import torch
from playwright.sync_api import expect
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from core.runs import DEFAULT_BATCH, DEFAULT_EPOCHS
from tests.apptest_utils import assert_ok, page_app, plotly_specs, texts
from tests.conftest import ConsoleWatch, assert_no_exception_box, wait_drawn, warm_server

D = torch.float64
DIGITS_N = 1797  # scikit-learn's digits
DIGITS_DIM = 64
WAIT = 30_000  # ms for each browser expectation: other work may share the two cores


# ---- reference numbers, computed independently of the app ------------------------------------------

def torch_kl(mu_p, s_p, mu_q, s_q) -> float:
    return float(kl_divergence(Normal(torch.tensor(mu_p, dtype=D), torch.tensor(s_p, dtype=D)),
                               Normal(torch.tensor(mu_q, dtype=D), torch.tensor(s_q, dtype=D))))


def torch_kl_2d(p: tuple, q: tuple) -> float:
    """KL between 2-D Gaussians given as (mean z1, mean z2, std z1, std z2, correlation)."""
    def mvn(mx, my, sx, sy, r):
        cov = torch.tensor([[sx * sx, r * sx * sy], [r * sx * sy, sy * sy]], dtype=D)
        return MultivariateNormal(torch.tensor([mx, my], dtype=D), covariance_matrix=cov)
    return float(kl_divergence(mvn(*p), mvn(*q)))


def digits_label(i: int) -> int:
    from sklearn.datasets import load_digits
    return int(load_digits().target[i])


def training_steps(n: int, batch: int, epochs: int, val_fraction: float = 0.1) -> int:
    n_train = n - min(max(round(n * val_fraction), 1), n - 1)
    return math.ceil(n_train / batch) * epochs


# ---- browser helpers --------------------------------------------------------------------------------

def open_link(page, server_url: str, link: str) -> None:
    """Open the deep link, as a student clicking a shared link would (on a server that has run app.py
    once: tests.conftest.warm_server)."""
    warm_server(page, server_url, timeout=WAIT)
    page.goto(server_url + link)
    wait_drawn(page)
    assert_no_exception_box(page)


def url_params(page) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(page.url).query).items()}


def widget(page, key: str):
    return page.locator(f".st-key-{key}").first


def expect_widget(page, kind: str, key: str, shown: str) -> None:
    """The widget with key ``key`` displays ``shown``: a slider's aria-valuetext, a number input's
    or select box's text, or the label of the checked radio option."""
    w = widget(page, key)
    if kind == "slider":
        expect(w.locator('input[type="range"]')).to_have_attribute("aria-valuetext", shown, timeout=WAIT)
    elif kind in ("number", "select"):
        expect(w.locator("input").first).to_have_value(shown, timeout=WAIT)
    elif kind == "radio":
        expect(w.locator('[data-testid="stRadioOption"]:has(input:checked)')).to_have_text(shown, timeout=WAIT)
    else:
        raise ValueError(kind)


def metric_value(page, label: str, scope=None) -> str:
    box = (scope or page).locator('[data-testid="stMetric"]').filter(has_text=label).first
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


def main_text(page) -> str:
    return page.locator('[data-testid="stMain"]').inner_text()


# ---- 1. a crafted deep link per page -----------------------------------------------------------------

def check_kl(page) -> None:
    readout = page.locator(".st-key-kl_readout")
    assert metric_value(page, "KL(p‖q): expectation", readout) == f"{torch_kl(-1.5, 1.0, 1.0, 2.5):.4f} nats"
    assert metric_value(page, "KL(q‖p): expectation", readout) == f"{torch_kl(1.0, 2.5, -1.5, 1.0):.4f} nats"
    vae = page.locator('.st-key-kl_vae_readout [data-testid="stMetric"]').first
    expect(vae).to_contain_text("β = 4", timeout=WAIT)


def check_reparam(page) -> None:
    # f(z) = (z - a)², z ~ N(μ, σ²): E f = (μ - a)² + σ², ∂/∂μ = 2(μ - a), ∂/∂σ = 2σ (a = 1, the default).
    mu, sigma, a = -1.5, 0.5, 1.0
    assert metric_value(page, "Exact E[f(z)]") == f"{(mu - a) ** 2 + sigma ** 2:.4f}"
    assert metric_value(page, "Exact ∂/∂μ E[f(z)]") == f"{2 * (mu - a):.4f}"
    assert metric_value(page, "Exact ∂/∂σ E[f(z)]") == f"{2 * sigma:.4f}"


def check_autoencoder(page) -> None:
    assert metric_value(page, "Compression") == f"{DIGITS_DIM} → 2"
    expect(page.locator('[data-testid="stMain"] h3').filter(has_text="A trained variational autoencoder").first
           ).to_be_visible(timeout=WAIT)
    # The denoising figure's column title carries the noise level (Plotly SVG text).
    expect(page.locator(".st-key-ae_denoise").get_by_text("noisy input (σ = 0.80)")).to_have_count(1, timeout=WAIT)


def expect_next_run(page, latent: int, epochs: int, batch: int) -> None:
    """The training page's summary of the run its configuration would start."""
    steps = training_steps(DIGITS_N, batch, epochs)
    caption = page.get_by_text(re.compile(r"^Next run: ")).first
    expect(caption).to_have_text(re.compile(
        rf"^Next run: VAE on digits, {DIGITS_DIM} → 256 → 128 → {latent} → … → {DIGITS_DIM}, {epochs} epochs ≈ "
        rf"{steps:,} steps of {batch} images\.$"), timeout=WAIT)


def check_train(page) -> None:
    expect_next_run(page, latent=2, epochs=3, batch=64)


def check_latent(page) -> None:
    expect(page.locator(".st-key-ls_selfig .gtitle")).to_have_text(f"Image #42: a {digits_label(42)}", timeout=WAIT)
    caption = page.get_by_text("Neighbours (index: label, distance in latent space):").first.inner_text()
    assert len(re.findall(r"#\d+: ", caption)) == 5, caption


def check_limits(page) -> None:
    expect(page.locator('[data-testid="stMetric"]').filter(has_text="VAE β=4 reconstructions")
           ).to_have_count(1, timeout=WAIT)
    body = main_text(page)
    assert "the mean gradient magnitude of the real images is" in body
    assert "encoded by the 2-D VAE with β = 0.5" in body


# Values the link also sets that are the defaults already: they keep the test fast if a default changes
# (the latent page's t-SNE map takes many seconds; the raw map of the 2-D model is instant).
PINNED = {"/latent": {"ls_map": "raw"}}

# (url path, non-default query values, [(widget kind, key, what the widget shows)], readout check)
PAGES = [
    pytest.param("/kl", {"kl_mup": "-1.5", "kl_sq": "2.5", "kl_beta": "4.0"},
                 [("number", "kl_mup", "-1.500"), ("slider", "kl_mup_sl", "-1.50"), ("number", "kl_sq", "2.500"),
                  ("slider", "kl_sq_sl", "2.50"), ("radio", "kl_beta", "β = 4")],
                 check_kl, id="kl"),
    pytest.param("/reparam", {"rp_f": "(z-a)^2", "rp_mu": "-1.5", "rp_sigma": "0.5"},
                 [("select", "rp_f", "(z − a)²"), ("slider", "rp_mu", "-1.50"), ("slider", "rp_sigma", "0.50")],
                 check_reparam, id="reparam"),
    pytest.param("/autoencoder", {"ae_kind": "VAE", "ae_latent": "2", "ae_noise": "0.8"},
                 [("radio", "ae_kind", "VAE"), ("select", "ae_latent", "2"), ("slider", "ae_noise", "0.80")],
                 check_autoencoder, id="autoencoder"),
    pytest.param("/train", {"tr_latent": "2", "tr_bs": "64", "tr_epochs": "3"},
                 [("number", "tr_latent", "2"), ("select", "tr_bs", "64"), ("number", "tr_epochs", "3")],
                 check_train, id="train"),
    pytest.param("/latent", {"ls_idx": "42", "ls_k": "5", "ls_grid": "9"},
                 [("number", "ls_idx", "42"), ("slider", "ls_k", "5"), ("slider", "ls_grid", "9")],
                 check_latent, id="latent"),
    pytest.param("/limits", {"lim_beta": "4.0", "lim_measure": "gradient", "lim_hbeta": "0.5"},
                 [("select", "lim_beta", "β = 4"), ("radio", "lim_measure", "Mean gradient magnitude"),
                  ("select", "lim_hbeta", "β = 0.5")],
                 check_limits, id="limits"),
]


@pytest.mark.browser
@pytest.mark.parametrize("path, query, widgets, check", PAGES)
def test_a_crafted_link_opens_the_page_in_that_state(watched_page, server_url, path, query, widgets, check):
    page = watched_page
    open_link(page, server_url, f"{path}?{urlencode({'dataset': 'digits', **PINNED.get(path, {}), **query})}")
    for kind, key, shown in widgets:
        expect_widget(page, kind, key, shown)
    check(page)
    assert urlsplit(page.url).path == path
    own_url = url_params(page)  # the URL the page published after it ran
    for k, v in {"dataset": "digits", **query}.items():
        assert own_url.get(k) == v, (k, page.url)
    assert_no_exception_box(page)


# ---- 2. change a value, copy the URL, open it in a new browser context -------------------------------

def nudge_slider(page, key: str, direction: str = "ArrowRight") -> None:
    """One keyboard step of a slider. Callers wait for its effect (and the end of the run) before the
    next change: a key pressed while an earlier change's rerun is still running can be dropped."""
    thumb = widget(page, key).locator('input[type="range"]')
    thumb.focus()
    thumb.press(direction)


def type_number(page, key: str, text: str) -> None:
    box = widget(page, key).locator("input")
    box.fill(text)
    box.press("Enter")


def idle(page) -> None:
    """The script (or fragment) run that the last change started has ended."""
    page.wait_for_function("() => document.querySelector('[data-testid=\"stApp\"]')"
                           "?.getAttribute('data-test-script-state') === 'notRunning'", timeout=WAIT, polling=100)


def wait_kl_readout(page, mu_p, s_p, mu_q, s_q) -> None:
    expect(page.locator('.st-key-kl_readout [data-testid="stMetricValue"]').first).to_have_text(
        f"{torch_kl(mu_p, s_p, mu_q, s_q):.4f} nats", timeout=WAIT)


@pytest.mark.browser
def test_a_url_copied_after_a_change_reopens_the_same_view_in_a_new_context(watched_page, server_url, browser):
    """On the training page: of the pages, the cheapest to draw in the browser (no Plotly chart
    before a run starts), so the two page loads of this test cost little."""
    page = watched_page
    open_link(page, server_url, "/train?dataset=digits")
    expect_next_run(page, latent=16, epochs=DEFAULT_EPOCHS["digits"], batch=DEFAULT_BATCH["digits"])  # the defaults
    type_number(page, "tr_latent", "4")
    expect_next_run(page, latent=4, epochs=DEFAULT_EPOCHS["digits"], batch=DEFAULT_BATCH["digits"])
    idle(page)
    widget(page, "tr_lik").get_by_text("Gaussian (MSE)").click()
    page.wait_for_function("() => new URLSearchParams(location.search).get('tr_lik') === 'gaussian'", timeout=WAIT)
    idle(page)
    type_number(page, "tr_epochs", "3")
    expect_next_run(page, latent=4, epochs=3, batch=DEFAULT_BATCH["digits"])
    idle(page)
    changed = {"tr_latent": "4", "tr_lik": "gaussian", "tr_epochs": "3"}
    assert {k: url_params(page).get(k) for k in changed} == changed, page.url
    link = page.url

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        other = context.new_page()  # a new session, as for someone the link was sent to
        watch = ConsoleWatch(other)
        other.set_default_timeout(60_000)
        other.goto(link)  # the server is warm: a pasted deep link opens directly
        wait_drawn(other)
        assert_no_exception_box(other)
        expect_widget(other, "number", "tr_latent", "4")
        expect_widget(other, "radio", "tr_lik", "Gaussian (MSE)")
        expect_widget(other, "number", "tr_epochs", "3")
        expect_next_run(other, latent=4, epochs=3, batch=DEFAULT_BATCH["digits"])
        assert {k: url_params(other).get(k) for k in changed} == changed, other.url
        watch.check()
    finally:
        context.close()


# ---- 3. the sidebar's settings file -------------------------------------------------------------------

def open_settings(page):
    sidebar = page.locator('[data-testid="stSidebar"]')
    if not sidebar.locator(".st-key-_dl_settings").is_visible():
        sidebar.get_by_text("Save or load settings").click()
    expect(sidebar.locator(".st-key-_dl_settings")).to_be_visible(timeout=WAIT)
    return sidebar


def download_settings(page, folder) -> tuple[dict, str]:
    """Click '⬇️ Settings (JSON)'; the file is saved under the name the browser suggests (the
    uploader accepts only .json files), and its content is returned with its path."""
    sidebar = open_settings(page)
    with page.expect_download(timeout=WAIT) as info:
        sidebar.get_by_role("button", name="Settings (JSON)").click()
    download = info.value
    assert download.suggested_filename == "latent-lab-settings.json"
    path = folder / download.suggested_filename
    download.save_as(path)
    return json.loads(path.read_text(encoding="utf-8")), str(path)


def upload_settings(page, files) -> None:
    sidebar = open_settings(page)
    sidebar.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(files)


@pytest.mark.browser
def test_settings_file_saves_the_view_and_loading_it_restores_a_changed_value(watched_page, server_url, tmp_path):
    """On the training page: its reruns are the cheapest to draw."""
    page = watched_page
    open_link(page, server_url, "/train?dataset=digits&tr_latent=2&tr_epochs=3")
    expect_next_run(page, latent=2, epochs=3, batch=DEFAULT_BATCH["digits"])
    widget(page, "tr_lik").get_by_text("Gaussian (MSE)").click()  # part of the view, not of the link
    page.wait_for_function("() => new URLSearchParams(location.search).get('tr_lik') === 'gaussian'", timeout=WAIT)
    idle(page)

    saved, path = download_settings(page, tmp_path)
    expected = {"dataset": "digits", "seed": "0", "tr_latent": "2", "tr_epochs": "3", "tr_lik": "gaussian",
                "tr_kind": "vae", "tr_bs": str(DEFAULT_BATCH["digits"]), "tr_beta": "1.0"}
    assert {k: saved.get(k) for k in expected} == expected, saved
    assert saved == shareable(url_params(page)), (saved, page.url)  # the whole view, less the private run links
    assert "runs" in url_params(page) and "runs" not in saved

    # Change the view, then load the file: the saved values come back.
    type_number(page, "tr_latent", "5")
    expect_next_run(page, latent=5, epochs=3, batch=DEFAULT_BATCH["digits"])
    idle(page)
    widget(page, "tr_lik").get_by_text("Bernoulli (BCE)").click()
    page.wait_for_function("() => new URLSearchParams(location.search).get('tr_lik') === 'bernoulli'", timeout=WAIT)
    idle(page)
    upload_settings(page, path)
    expect_widget(page, "number", "tr_latent", "2")
    expect_widget(page, "radio", "tr_lik", "Gaussian (MSE)")
    expect_next_run(page, latent=2, epochs=3, batch=DEFAULT_BATCH["digits"])
    idle(page)
    assert url_params(page)["tr_latent"] == "2" and url_params(page)["tr_lik"] == "gaussian", page.url
    assert_no_exception_box(page)

    # A malformed file: a clear message, the view is untouched, and the page keeps working.
    bad = tmp_path / "broken.json"
    bad.write_text('{"tr_latent": 7,', encoding="utf-8")
    upload_settings(page, str(bad))
    error = page.locator('[data-testid="stSidebar"] [data-testid="stAlertContentError"]')
    expect(error).to_contain_text("not valid JSON", timeout=WAIT)
    idle(page)
    assert_no_exception_box(page)
    expect_widget(page, "number", "tr_latent", "2")
    type_number(page, "tr_epochs", "4")
    expect_next_run(page, latent=2, epochs=4, batch=DEFAULT_BATCH["digits"])
    idle(page)
    assert_no_exception_box(page)


# ---- 4. AppTest: URL -> widgets -> URL for parameters the page tests do not cover ---------------------

def published(at) -> dict[str, str]:
    return {k: (v[-1] if isinstance(v, list) else v) for k, v in dict(at.query_params).items()}


from core.ui.url import shareable  # noqa: E402


def saved_view(at) -> dict[str, str]:
    """What '⬇️ Settings (JSON)' would save now: the URL without the private run links."""
    return shareable(at.session_state["_settings_view"])


def assert_republished(at, query: dict) -> None:
    pub = published(at)
    for k, v in query.items():
        assert pub.get(k) == v, (k, pub.get(k), v)


def metric_number(at, label: str) -> float:
    values = [m.value for m in at.metric if m.label == label]
    assert len(values) == 1, [m.label for m in at.metric]
    return float(values[0].split()[0])


def test_apptest_autoencoder_noise_and_step_come_from_the_url():
    query = {"dataset": "digits", "ae_noise": "0.85", "ae_step": "3"}
    at = page_app("pages/1_autoencoder.py", query)
    assert_ok(at)
    assert not at.error
    assert at.slider(key="ae_noise").value == 0.85 and at.slider(key="ae_step").value == 3
    specs = plotly_specs(at)
    assert "noisy input (σ = 0.85)" in [c for img in at.get("image") for c in img.captions]  # (pictures: issue 21)
    diagram = [s for s in specs if s.get("frames")]
    assert len(diagram) == 1 and diagram[0]["layout"]["sliders"][0]["active"] == 2  # step 3 = frame index 2
    assert "Step 3 of" in diagram[0]["layout"]["title"]["text"]
    assert_republished(at, query)


def test_apptest_kl_two_dimensional_gaussians_come_from_the_url():
    query = {"dataset": "digits", "kl_p2_mx": "-0.5", "kl_p2_sx": "1.2", "kl_q2_mx": "0.8", "kl_q2_r": "-0.4"}
    at = page_app("pages/2_kl.py", query)
    assert_ok(at)
    assert not at.error
    assert at.slider(key="kl_p2_mx").value == -0.5 and at.slider(key="kl_p2_sx").value == 1.2
    assert at.slider(key="kl_q2_mx").value == 0.8 and at.slider(key="kl_q2_r").value == -0.4
    p, q = (-0.5, 0.5, 1.2, 0.7, 0.6), (0.8, 0.0, 1.0, 1.0, -0.4)  # the other values are the page's defaults
    assert metric_number(at, "KL(p‖q)") == pytest.approx(torch_kl_2d(p, q), abs=6e-5)
    assert metric_number(at, "KL(q‖p)") == pytest.approx(torch_kl_2d(q, p), abs=6e-5)
    assert_republished(at, query)


def test_apptest_training_batch_seed_warmup_and_free_bits_come_from_the_url():
    query = {"dataset": "digits", "tr_bs": "64", "tr_seed": "7", "tr_warmup": "500", "tr_freebits": "0.25",
             "tr_epochs": "5"}
    at = page_app("pages/4_train.py", query)
    assert_ok(at)
    assert not at.error
    assert at.selectbox(key="tr_bs").value == 64 and at.number_input(key="tr_seed").value == 7
    assert at.number_input(key="tr_warmup").value == 500 and at.number_input(key="tr_freebits").value == 0.25
    assert f"5 epochs ≈ {training_steps(DIGITS_N, 64, 5):,} steps of 64 images." in texts(at)
    assert_republished(at, query)


def test_apptest_latent_explorer_settings_come_from_the_url():
    query = {"dataset": "digits", "ls_map": "raw", "ls_beta": "4.0", "ls_perp": "45", "ls_iter": "750",
             "ls_tseed": "5", "ls_grid": "9", "ls_steps": "7", "ls_showpath": "0", "ls_aes": "prior"}
    at = page_app("pages/5_latent.py", query, timeout=120)
    assert_ok(at)
    assert not at.error
    assert at.selectbox(key="ls_beta").value == 4.0
    assert at.slider(key="ls_perp").value == 45 and at.slider(key="ls_iter").value == 750
    assert at.number_input(key="ls_tseed").value == 5 and at.slider(key="ls_grid").value == 9
    assert at.slider(key="ls_steps").value == 7 and at.toggle(key="ls_showpath").value is False
    assert at.selectbox(key="ls_aes").value == "prior"
    assert "VAE (β = 4) with a 2-D latent" in texts(at)
    assert_republished(at, query)


def test_apptest_limits_hole_and_classifier_settings_come_from_the_url():
    query = {"dataset": "digits", "lim_n": "5", "lim_hbeta": "4.0", "lim_sigma": "1", "lim_minexp": "7",
             "lim_fill": "20", "lim_conf": "0.75"}
    at = page_app("pages/6_limits.py", query, timeout=180)
    assert_ok(at)
    assert not at.error
    assert at.slider(key="lim_n").value == 5 and at.selectbox(key="lim_hbeta").value == 4.0
    assert at.toggle(key="lim_sigma").value is True
    assert at.slider(key="lim_minexp").value == 7 and at.slider(key="lim_fill").value == 20
    assert at.slider(key="lim_conf").value == 0.75
    body = texts(at)
    assert "β = 4, counting each image's whole posterior N(μ, σ²)" in body
    assert "prior expects at least 7 codes" in body and "p ≥ 0.75" in body
    assert_republished(at, query)


SAVED_VIEW_CASES = [
    pytest.param("pages/4_train.py", {"dataset": "digits", "tr_latent": "2"},
                 [("select_slider", "tr_beta", 4.0, "4.0"), ("number_input", "tr_latent", 3, "3")], id="train"),
    pytest.param("pages/2_kl.py", {"dataset": "digits", "kl_mup": "-1.5", "kl_sep": "4.5"},  # (opens section 3)
                 [("number_input", "kl_mup", 2.5, "2.5"), ("slider", "kl_sep", 5.0, "5.0")], id="kl"),
]


@pytest.mark.parametrize("path, query, changes", SAVED_VIEW_CASES)
def test_apptest_the_settings_file_holds_the_url_the_page_wrote(path, query, changes):
    """What '⬇️ Settings (JSON)' saves (built as the run goes, read on click) equals the URL at the
    end of every run: after the first run, after a rerun with no change (the training page publishes
    β only when it changes) and after widget changes."""
    at = page_app(path, query)
    assert_ok(at)
    assert saved_view(at) == shareable(published(at))
    assert_republished(at, query)
    at.run()
    assert_ok(at)
    assert saved_view(at) == shareable(published(at))
    for kind, key, value, text in changes:
        getattr(at, kind)(key=key).set_value(value)
    at.run()
    assert_ok(at)
    view = saved_view(at)
    assert view == shareable(published(at))
    for _, key, _, text in changes:
        assert view[key] == text, (key, view.get(key))
