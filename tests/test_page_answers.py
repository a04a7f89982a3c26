"""The model-answers page: AppTest (every section, live numbers equal to the core functions' and to
independent computations, presenter scenes, bad URLs) and real Chromium (links, the handout download,
presenter scenes at 1280x720)."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from core import answers as A
from core import units, zoo
from core.data import load_dataset
from core.training import encode_stats, evaluate_model
from tests.apptest_utils import assert_ok, page_app, plotly_specs, texts
from tests.conftest import assert_no_exception_box, screenshot, wait_drawn

PAGE = "pages/7_answers.py"
DS = "digits"


@pytest.fixture(scope="module")
def at():
    app = page_app(PAGE, query={"dataset": DS})
    assert_ok(app)
    return app


def test_every_question_is_answered_with_figures_equations_and_corrections(at):
    body = texts(at)
    for _, question in A.QUESTIONS:
        assert question in body
    headers = [h.value for h in at.header]
    assert [h for h in headers if h.startswith("Q")] == [
        "Q1 · How an autoencoder works", "Q2 · Why the reparameterization trick is essential",
        "Q3 · The KL term and the VAE's limitations"]
    assert any("Glossary" in h for h in headers)
    assert len(plotly_specs(at)) == 8
    assert len(at.latex) >= 10
    assert body.count("Weak answer:") == 9 and body.count("Correction:") == 9
    assert at.get("download_button")[0].proto.label.startswith("⬇️ Download the handout")
    # without app.py's navigation (AppTest runs the page alone) the links fall back to captions
    assert "Explore it in the lesson 🧠 How an autoencoder works." in body


def test_numbers_on_the_page_are_computed_live(at):
    body = texts(at)
    ds = load_dataset(DS)
    ae = zoo.pretrained(DS, "ae", 0.0, 16)
    recon = evaluate_model(ae.model, ds.x[ae.val_idx], 0.0, ae.config.likelihood, seed=0)["recon"]
    assert f"**{A.fmt(recon)} nats per image**" in body
    vae = zoo.pretrained(DS, "vae", 1.0, 16)
    assert f"**{units.heldout_activity(vae, ds).count} of 16**" in body
    # one image's KL term, ½ Σ (μ² + σ² − 1 − log σ²), against torch.distributions
    idx = int(re.search(r"one held-out image \(#(\d+)\)", body).group(1))
    mu, logvar = encode_stats(vae.model, ds.x[idx][None])
    kl = kl_divergence(Normal(torch.tensor(mu[0]).double(), torch.tensor(np.exp(0.5 * logvar[0])).double()),
                       Normal(torch.zeros(16).double(), torch.ones(16).double())).sum().item()
    assert f"**{A.fmt(kl, 2)} nats**" in body
    assert "-0.0" not in body and "−0.0 " not in body and "Infinity" not in body


def test_latent_dimensions_are_named_from_z1_as_on_every_other_page(at):
    """The KL and reparameterization pages name the 16 dimensions z1 to z16; the answers' charts and text did
    z0 to z15, so the same dimension had two names."""
    per_dim = [sp for sp in plotly_specs(at) if any(t.get("type") == "bar" and len(t.get("x") or []) == 16
                                                   for t in sp["data"])]
    assert per_dim
    for sp in per_dim:
        xs = [t["x"] for t in sp["data"] if t.get("type") == "bar"]
        assert all(x[0] == "z1" and x[-1] == "z16" for x in xs), xs
    assert A.dims([0, 4, 15]) == "z1, z5 and z16"
    assert not re.search(r"\bz0\b", texts(at))
    # The text names the image's largest KL share by the chart's name for its tallest bar.
    kl_chart = next(sp for sp in plotly_specs(at) if len(sp["data"]) == 1 and sp["data"][0].get("type") == "bar"
                    and len(sp["data"][0]["x"]) == 16)
    top = kl_chart["data"][0]["x"][int(np.argmax(_values(kl_chart["data"][0]["y"])))]
    assert f"is in $z_{{{top[1:]}}}$" in texts(at), top


def _values(y) -> np.ndarray:
    """A trace's numbers, from a list or Plotly 7's base64 {"dtype", "bdata"} encoding."""
    if isinstance(y, dict):
        import base64
        return np.frombuffer(base64.b64decode(y["bdata"]), dtype=np.dtype(y["dtype"]))
    return np.asarray(y, float)


def test_glossary_in_the_sidebar_and_on_the_page(at):
    assert "📖 Glossary" in [e.label for e in at.sidebar.expander]
    side = " ".join(m.value for m in at.sidebar.markdown)
    page = " ".join(m.value for m in at.main.markdown)
    for dl, prob, _ in A.GLOSSARY:
        assert f"**{dl}** = {prob}" in side
        assert f"| **{dl}** | {prob} |" in page
    for name in ("inference network", "−ELBO", "rate", "distortion", "aggregate posterior", "Burda et al. (2016)",
                 "posterior collapse", "amortisation", "Higgins et al., 2017", "nats"):
        assert name in page


def test_seed_changes_the_images_and_bad_url_values_are_refused():
    a = page_app(PAGE, query={"dataset": DS, "seed": "3"})
    assert_ok(a)
    assert a.session_state["g_seed"] == 3
    bad = page_app(PAGE, query={"dataset": "nope", "seed": "x"})
    assert_ok(bad)
    err = " ".join(e.value for e in bad.error)
    assert "dataset" in err and "seed" in err
    assert len(plotly_specs(bad)) == 8  # the page still draws, with the defaults


def test_presenter_mode_is_one_question_per_scene():
    a = page_app(PAGE, query={"dataset": DS, "present": "1"})
    assert_ok(a)
    body = texts(a)
    assert A.QUESTIONS[0][1] in body and A.QUESTIONS[1][1] not in body
    assert "Scene 1 of 4" in body
    assert "ans_handout" not in [d.key for d in a.get("download_button")]
    for k in (1, 2):
        a.button(key="_scene_ans_next").click().run()
        assert_ok(a)
        body = texts(a)
        assert A.QUESTIONS[k][1] in body and A.QUESTIONS[k - 1][1] not in body
    a.button(key="_scene_ans_next").click().run()
    assert "Scene 4 of 4: Glossary" in texts(a) and not plotly_specs(a)


@pytest.mark.browser
def test_answers_page_in_browser(watched_page, server_url):
    page = watched_page
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(server_url + "/answers?dataset=digits")
    wait_drawn(page)
    assert_no_exception_box(page)
    assert page.locator(".js-plotly-plot").count() == 8
    assert page.get_by_role("heading", name="Q2 · Why the reparameterization trick is essential").count() == 1
    # the glossary is in the sidebar
    page.locator('[data-testid="stSidebar"]').get_by_text("📖 Glossary").click()
    from playwright.sync_api import expect
    expect(page.locator('[data-testid="stSidebar"]').get_by_text("inference network").first).to_be_visible()
    # the handout downloads as one standalone HTML file
    with page.expect_download() as dl:
        page.get_by_role("button", name=re.compile("Download the handout")).click()
    html = open(dl.value.path(), encoding="utf-8").read()
    assert html.startswith("<!DOCTYPE html>") and html.count('class="weak"') == 9 and "Plotly.newPlot" in html
    assert not re.search(r"<(script|link)[^>]+(src|href)\s*=\s*[\"']?https?://", html)
    page.locator('[data-testid="stMain"]').evaluate("e => e.scrollTo(0, 0)")
    screenshot(page, "answers")
    # each question links to the page that explores it
    page.get_by_role("link", name=re.compile("Explore it: The reparameterization trick")).click()
    wait_drawn(page)
    expect(page.locator("h1").first).to_contain_text("reparameterization", ignore_case=True)


# Presenter mode at projector size (each of the 4 scenes' main figure inside 1280x720 and 1920x1080, no
# exception box, the walk reaches "Scene 4 of 4") and its screenshot answers-present.png: in
# tests/test_presenter.py (test_every_scene_fits_the_screen[answers]), which walks every page's scenes.
