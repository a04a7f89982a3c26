"""core.answers (evidence and text), core.figures.answers, and core.handout: the numbers match the core
functions the other pages use, every formula that shows numbers is checked against an independent
computation, and the handout works offline and prints on A4 in real Chromium."""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from core import answers as A
from core import handout as H
from core import limits, units, zoo
from core.data import load_dataset
from core.figures import answers as F
from core.training import encode_stats, evaluate_model

DS = "digits"


@pytest.fixture(scope="module")
def ev():
    e1, e2, e3 = A.q1_evidence(DS), A.q2_evidence(DS), A.q3_evidence(DS)
    return e1, e2, e3


@pytest.fixture(scope="module")
def sections(ev):
    return A.answers(*ev)


@pytest.fixture(scope="module")
def figs(ev):
    return F.figures(*ev)


@pytest.fixture(scope="module")
def handout_html(sections, figs):
    return H.build_handout(sections, figs, meta="Digits, seed 0.")


def all_text(sections) -> str:
    out = []
    for s in sections:
        out += [s["summary"], s["question"], s["title"]]
        for b in s["blocks"]:
            out += [str(x) for x in b[1:]]
    return "\n".join(out)


# ---- numbers: the same core functions as the other pages ------------------------------------------

def test_q1_reconstruction_term_is_evaluate_models(ev, sections):
    e1 = ev[0]
    ae = zoo.pretrained(DS, "ae", 0.0, 16)
    ds = load_dataset(DS)
    ref = evaluate_model(ae.model, ds.x[ae.val_idx], 0.0, ae.config.likelihood, seed=0)["recon"]
    assert e1["recon_nats"] == pytest.approx(ref, rel=1e-6)
    # the formula shown, ℓ_CE = −Σ_i [x_i log x̂_i + (1 − x_i) log(1 − x̂_i)], computed here from x and x̂
    x = torch.tensor(ds.x[ae.val_idx])
    with torch.no_grad():
        xhat = ae.model.decode(ae.model.encode(x)[0]).double().clamp(1e-7, 1 - 1e-7)
    ce = -(x * xhat.log() + (1 - x) * (1 - xhat).log()).sum(1).mean().item()
    assert ce == pytest.approx(e1["recon_nats"], rel=1e-3)
    assert f"**{A.fmt(ref)} nats per image**" in all_text(sections)
    assert e1["input_dim"] == 64 and e1["latent_dim"] == 16 and e1["original"].shape == e1["recon"].shape


def test_q3_kl_per_dimension_matches_torch_distributions(ev, sections):
    """The closed form ½(μ² + σ² − 1 − log σ²) shown on the page, against torch's own KL of two Normals."""
    e3 = ev[2]
    p = zoo.pretrained(DS, "vae", 1.0, 16)
    x = load_dataset(DS).x[e3["index"]]
    mu, logvar = encode_stats(p.model, x[None])
    ref = kl_divergence(Normal(torch.tensor(mu[0], dtype=torch.float64),
                               torch.tensor(np.exp(0.5 * logvar[0]), dtype=torch.float64)),
                        Normal(torch.zeros(16, dtype=torch.float64), torch.ones(16, dtype=torch.float64))).numpy()
    np.testing.assert_allclose(e3["one"]["kl"], ref, rtol=1e-6, atol=1e-9)
    assert f"**{A.fmt(ref.sum(), 2)} nats**" in all_text(sections)


def test_q3_active_units_and_sweep_are_the_limits_pages(ev, sections):
    e3 = ev[2]
    p = zoo.pretrained(DS, "vae", 1.0, 16)
    act = units.heldout_activity(p, load_dataset(DS))
    assert e3["activity"]["count"] == act.count
    assert f"**{act.count} of 16**" in all_text(sections)
    rd = limits.rate_distortion(DS)
    for mine, ref in zip(sorted(e3["sweep"], key=lambda q: q["beta"]), sorted(rd["sweep"], key=lambda q: q["beta"])):
        assert mine["beta"] == ref["beta"]
        assert mine["rate"] == pytest.approx(ref["rate"]) and mine["distortion"] == pytest.approx(ref["distortion"])
        assert mine["active_units"] == ref["active_units"]
    b1 = next(q for q in rd["sweep"] if q["beta"] == 1.0)
    assert f"β = 1 gives {A.fmt(b1['rate'])} and {A.fmt(b1['distortion'])}" in all_text(sections)
    # the β = 0 model's noise is switched off; β = 1 keeps it on
    assert np.median(e3["sigma_median"][0.0]) < 0.05 < np.median(e3["sigma_median"][1.0])


def test_q2_variance_ratio_recomputed_independently(ev, sections):
    """Pathwise and score-function per-sample gradients from their formulas (chain rule; the normal's
    score), on the same draws as core.reparam.gradient_estimates, against the ratio the answer states."""
    e2 = ev[1]
    p = zoo.pretrained(DS, "vae", 1.0, 16)
    x = torch.tensor(load_dataset(DS).x[e2["index"]], dtype=torch.float32)
    mu, logvar = encode_stats(p.model, x[None].numpy())
    base = torch.tensor(mu[0])
    j, m, s, n = e2["j"], e2["mu_j"], e2["sigma_j"], e2["n"]

    def f(t):  # -log p(x | z) with z_j = t, Bernoulli likelihood
        z = base.repeat(len(t), 1)
        z[:, j] = t.float()
        logits = p.model.decode_logits(z)
        return torch.nn.functional.binary_cross_entropy_with_logits(
            logits, x.expand(len(t), -1), reduction="none").sum(1).double()

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(e2["seed"])
        q = Normal(torch.full((n,), m, dtype=torch.float64), torch.full((n,), s, dtype=torch.float64))
        z = q.sample()
    eps = (z - m) / s
    zz = z.clone().requires_grad_(True)
    fz = f(zz)
    (df,) = torch.autograd.grad(fz.sum(), zz)
    path_mu, path_sig = df, df * eps
    fz = fz.detach()
    score_mu, score_sig = fz * (z - m) / s ** 2, fz * ((z - m) ** 2 - s ** 2) / s ** 3
    ratio = float(score_mu.var() / path_mu.var())
    assert e2["ratio"]["dmu"] == pytest.approx(ratio, rel=1e-3)
    assert e2["ratio"]["dsigma"] == pytest.approx(float(score_sig.var() / path_sig.var()), rel=1e-3)
    assert e2["est"]["reparam"]["dmu"]["mean"] == pytest.approx(float(path_mu.mean()), rel=1e-3, abs=1e-6)
    assert ratio > 10  # the point of the answer: the score function is far noisier
    assert f"**{A.fmt_sig(ratio, 2)}×**" in all_text(sections)


# ---- text ---------------------------------------------------------------------------------------------

def test_every_section_has_the_checklist(sections):
    kinds = {s["key"]: [b[0] for b in s["blocks"]] for s in sections}
    assert [s["key"] for s in sections] == ["q1", "q2", "q3"]
    for key, ks in kinds.items():
        assert ks.count("eq") >= 2 and "fig" in ks and "link" in ks and ks.count("weak") >= 2, key
    text = all_text(sections)
    for weak in ("to generate new data", "where the data is stored", "better tuning", "previous values can be changed",
                 "stability and performance", "smooth, continuous, structured", "blurry output",
                 "over-regularisation", "faces"):
        assert weak in text, weak
    for cite in ("Baldi and Hornik, 1989", "Kingma and Welling, 2014", "Williams, 1992", "Hoffman and Johnson, 2016",
                 "Higgins et al., 2017", "Alemi et al., 2018", "Bowman et al., 2016", "Lucas et al., 2019",
                 "Burda et al., 2016", "Cremer et al., 2018"):
        assert cite in text, cite
    for s in sections:  # the key idea: at most three sentences
        assert len(re.findall(r"[.!?](\s|$)", s["summary"])) <= 3, s["key"]


def test_no_negative_zero_or_infinity_in_text(sections):
    text = all_text(sections)
    assert not re.search(r"-0\.0+\b|−0\.0+\b|-Infinity|-inf\b", text)
    assert A.fmt(-0.00001) == "0.0" and A.fmt(-1.25, 1) == "−1.2" and A.fmt(float("inf")) == "∞"
    assert A.fmt_sig(7343.2) == "7,300" and A.fmt_sig(0.000163) == "0.00016"


def test_inline_maths_converts_to_html_without_latex(sections):
    for s in sections:
        for b in [("md", s["summary"])] + [b for b in s["blocks"] if b[0] == "md"]:
            out = A.inline_html(b[1])
            assert H.tex_free(out), (s["key"], re.findall(r"\\[A-Za-z]+|\$", out)[:5], b[1][:80])
    assert H.tex_free(H.glossary_html())
    assert A.inline_html("$\\mu_j^2$ and **b**") == '<p><span class="m">μ<sub>j</sub><sup>2</sup></span> and <b>b</b></p>'
    assert "&lt;script&gt;" in A.inline_html("<script>")


def test_figures_are_small_and_named(sections, figs):
    assert set(A.figure_keys(sections)) == set(figs)
    for key, fig in figs.items():
        assert (fig.layout.height or 450) <= 340, key
    bars = figs["q2_variance"]
    assert [t.name for t in bars.data] == ["pathwise (reparameterization)", "score function (REINFORCE)"]
    assert figs["q3_rd"].data[0].x[0] > figs["q3_rd"].data[0].x[-1]  # rate falls as beta grows


# ---- the handout ----------------------------------------------------------------------------------------

def test_handout_is_standalone(handout_html, sections, figs):
    h = handout_html
    assert h.startswith("<!DOCTYPE html>")
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)\s*=\s*[\"']?(https?:)?//", h, re.I)
    assert "@page { size: A4" in h and "break-inside: avoid" in h
    from plotly.offline import get_plotlyjs
    assert h.count(get_plotlyjs()[:200]) == 1  # plotly.js inlined exactly once
    for s in sections:
        assert f'id="{s["key"]}"' in h and s["question"].replace("'", "&#x27;") in h or s["question"] in h
    assert 'id="glossary"' in h and "inference network" in h
    for key in figs:
        assert f'data-fig="{key}"' in h
    assert h.count('class="weak"') == sum(b[0] == "weak" for s in sections for b in s["blocks"])
    body = re.sub(r"<script>.*?</script>", "", h, flags=re.S)
    assert H.tex_free(body)


def _pdf_pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page[^s]", pdf))


@pytest.mark.browser
def test_handout_offline_in_chromium_and_prints_on_a4(browser, handout_html, figs, tmp_path):
    path = tmp_path / "handout.html"
    path.write_text(handout_html, encoding="utf-8")
    page = browser.new_page(viewport={"width": 900, "height": 1200})
    errors, blocked = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def only_files(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_files)
    page.goto(path.as_uri())
    page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length === {len(figs)}", timeout=30_000)
    page.wait_for_timeout(500)
    assert not errors, errors
    assert not blocked, blocked
    # every figure fits the printable width and one A4 page, and may not be split across pages
    page.emulate_media(media="print")
    boxes = page.evaluate("""() => Array.from(document.querySelectorAll('figure')).map(f => {
        const r = f.getBoundingClientRect(); return [r.width, r.height, getComputedStyle(f).breakInside]; })""")
    assert len(boxes) == len(figs)
    for w, h, brk in boxes:
        assert w <= 681 and h < 1000 and brk == "avoid", (w, h, brk)
    pdf = page.pdf(format="A4", print_background=True)
    assert pdf.startswith(b"%PDF")
    n = _pdf_pages(pdf)
    assert 6 <= n <= 20, n  # three questions (a page break before each) and the glossary
    out = tmp_path / "handout.pdf"
    out.write_bytes(pdf)
    if shutil.which("pdftoppm"):  # the pages rasterise (and can be looked at)
        subprocess.run(["pdftoppm", "-png", "-r", "30", "-f", "1", "-l", "2", str(out), str(tmp_path / "p")],
                       check=True)
        assert len(list(tmp_path.glob("p-*.png"))) == 2
    page.close()


def test_fallback_block_diagram_when_the_shared_one_is_missing():
    fig = F._minimal_block_diagram(64, [128, 64], 16)
    text = " ".join(a.text for a in fig.layout.annotations)
    for label in ("<b>x</b>", "encoder", "<b>z</b>", "decoder", "x̂", "loss L(x, x̂)", "code, 16 numbers"):
        assert label in text, label
