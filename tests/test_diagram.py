"""core.diagram and core.figures.diagram: the diagram's colours are the model's real activations,
its frames and labels are all there, and the page's experiments compute what they claim.

References are independent: ``model.activations`` / the model's own weights, torch's
``binary_cross_entropy``, brute-force numpy.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core import diagram as dg
from core.data import load_dataset
from core.figures.diagram import PENDING, SPEEDS, diagram_figure, error_histogram, image_strip
from core.models import ModelConfig, build_model
from core.zoo import pretrained


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module", params=["ae", "vae"])
def model_and_x(request, digits):
    p = pretrained("digits", request.param, 1.0, 16)
    return p.model, digits.x[p.val_idx[5]], digits


def _acts(model, x, eps):
    with torch.no_grad():
        return {k: v[0].numpy() for k, v in model.activations(torch.tensor(np.array(x))[None], eps)}


def _spec(fig) -> dict:
    return json.loads(fig.to_json())


def _decode(v):
    """Plotly 7 encodes numpy arrays as {"dtype", "bdata"} base64; plain lists stay lists."""
    import base64
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return v


def test_node_values_are_model_activations(model_and_x):
    model, x, ds = model_and_x
    d = dg.build_diagram(model, x, ds.image_shape, seed=3)
    eps = None if not model.is_vae else dg.noise_for(model, 3)
    ref = _acts(model, x, eps)
    assert [layer.key for layer in d.layers] == list(ref)
    for layer in d.layers:
        np.testing.assert_allclose(layer.values, ref[layer.key], rtol=1e-6, atol=1e-7)


def test_figure_colours_come_from_the_real_activations(model_and_x):
    model, x, ds = model_and_x
    d = dg.build_diagram(model, x, ds.image_shape, seed=3)
    eps = None if not model.is_vae else dg.noise_for(model, 3)
    ref = _acts(model, x, eps)
    spec = _spec(diagram_figure(d))
    by_name = {t["name"]: t for t in spec["data"] if t.get("mode") == "markers"}
    assert len(by_name) == len(d.layers)
    for layer in d.layers:
        colours = _decode(by_name[layer.label]["marker"]["color"])
        np.testing.assert_allclose(np.asarray(colours, float), ref[layer.key][layer.shown], rtol=1e-6, atol=1e-7)
    # Frame by frame: a layer is coloured by its activations once reached, and grey before.
    for s, frame in enumerate(spec["frames"]):
        nodes = [t for t in frame["data"] if t.get("mode") == "markers"]
        for layer, t in zip(d.layers, nodes):
            colours = _decode(t["marker"]["color"])
            if layer.stage <= s:
                np.testing.assert_allclose(np.asarray(colours, float), ref[layer.key][layer.shown], rtol=1e-6,
                                           atol=1e-7)
            else:
                assert list(colours) == [PENDING] * len(layer.shown)


def test_colours_change_with_the_input(digits):
    p = pretrained("digits", "ae", 1.0, 16)
    a = dg.build_diagram(p.model, digits.x[p.val_idx[0]], digits.image_shape)
    b = dg.build_diagram(p.model, digits.x[p.val_idx[1]], digits.image_shape)
    assert not np.allclose(a.layer("z").values, b.layer("z").values)
    assert not np.allclose(a.layer("encoder 1").shown_values, b.layer("encoder 1").shown_values)


def test_frames_labels_and_controls(model_and_x):
    model, x, ds = model_and_x
    d = dg.build_diagram(model, x, ds.image_shape)
    spec = _spec(diagram_figure(d))
    names = [f["name"] for f in spec["frames"]]
    assert names == [s.name for s in d.stages]
    expected = (["input", "encoder 1", "encoder 2"] + (["mu, sigma", "eps", "z"] if model.is_vae else ["z"])
                + ["decoder 1", "decoder 2", "output", "compare"])
    assert names == expected
    text = " ".join(a["text"] for a in spec["layout"]["annotations"])
    for label in ("<b>input</b><br>64<br>(32 shown)", "<b>encoder 1</b><br>128<br>(32 shown)",
                  "<b>encoder 2</b><br>64<br>(32 shown)", "<b>output</b><br>64<br>(32 shown)",
                  "ENCODER", "DECODER", "BOTTLENECK", "input x", "output x̂", "reconstruction x̂",
                  "error |x − x̂|", "strongest weights into each node"):
        assert label in text, label
    # Every frame has its own title, and the same number of annotations and shapes.
    titles = [f["layout"]["title"]["text"] for f in spec["frames"]]
    assert len(set(titles)) == len(titles) and all(f"Step {i + 1} of {len(titles)}" in t for i, t in enumerate(titles))
    assert len({len(f["layout"]["annotations"]) for f in spec["frames"]}) == 1
    assert len({len(f["layout"]["shapes"]) for f in spec["frames"]}) == 1
    # Play / Pause / speeds (different frame durations) and a slider with one step per frame.
    buttons = spec["layout"]["updatemenus"][0]["buttons"]
    labels = [b["label"] for b in buttons]
    assert labels[0] == "▶ Play" and "❚❚ Pause" in labels
    durations = {b["label"]: b["args"][1]["frame"]["duration"] for b in buttons if b["args"][0] is None}
    assert len({durations[k] for k in SPEEDS}) == len(SPEEDS) >= 3
    steps = spec["layout"]["sliders"][0]["steps"]
    assert [s["args"][0][0] for s in steps] == names
    # The images: input always, reconstruction and error only at the end.
    heat = [t for t in spec["data"] if t["type"] == "heatmap"]
    assert len(heat) == 5
    first = [t for t in spec["frames"][0]["data"] if t["type"] == "heatmap"]
    assert np.isnan(np.asarray(_decode(first[4]["z"]), float)).all()


def test_controls_sit_at_the_top_and_the_compact_figure_drops_secondary_text(digits):
    """Issue 21: ▶ Play and the step slider were under the figure, some 1,500 px down the page; they now sit
    above the plot area, inside the top margin, below the title. The compact (presenter) figure has no legend,
    no edge note and no "(32 shown)", so its labels do not collide at 16 px in a 611-px-tall figure."""
    model = pretrained("digits", "vae", 1.0, 16).model
    d = dg.build_diagram(model, digits.x[0], digits.image_shape)
    for compact, font in ((False, 14), (True, 16)):
        spec = _spec(diagram_figure(d, height=470 if compact else 820, font_size=font, compact=compact))
        lay = spec["layout"]
        menu, slider = lay["updatemenus"][0], lay["sliders"][0]
        assert menu["y"] >= 1.0 and menu["yanchor"] == "bottom" and slider["y"] >= 1.0 and slider["yanchor"] == "bottom"
        # The margin holds the title's two lines (about 3 font sizes), the slider (about 5.6) and the padding.
        assert lay["margin"]["t"] >= 3.0 * font + 5.6 * font + slider["pad"]["b"]
        assert lay["margin"]["b"] <= 30  # nothing left below the figure
        text = " ".join(a["text"] for a in lay["annotations"] if a.get("visible", True))
        assert ("(32 shown)" in text) is not compact and ("strongest weights" in text) is not compact
        assert lay.get("showlegend", True) is not compact
        for f in spec["frames"]:  # the frames keep the compact labels when Play runs
            ftext = " ".join(a["text"] for a in f["layout"]["annotations"] if a.get("visible", True))
            assert ("(32 shown)" in ftext) is not compact


def test_figure_can_open_on_any_step_and_exports_standalone_html(digits):
    from core.ui import figure_html

    model = pretrained("digits", "vae", 1.0, 16).model
    d = dg.build_diagram(model, digits.x[0], digits.image_shape)
    spec = _spec(diagram_figure(d, start=0))
    assert spec["layout"]["sliders"][0]["active"] == 0
    assert spec["layout"]["title"]["text"].startswith("<b>Step 1 of 10")
    nodes = [t for t in spec["data"] if t.get("mode") == "markers"]
    assert list(_decode(nodes[-1]["marker"]["color"])) == [PENDING] * len(d.layers[-1].shown)  # output not yet
    assert dg.stages_of(model) == d.stages
    html = figure_html(diagram_figure(d))
    import re
    assert not re.findall(r"<script[^>]*\ssrc=", html)  # no external script: plotly.js is inlined, works offline
    assert "addFrames" in html and html.count('"name":"compare"') >= 1


def test_vae_bottleneck_shows_mu_sigma_eps_and_z(digits):
    vae = pretrained("digits", "vae", 1.0, 16).model
    ae = pretrained("digits", "ae", 1.0, 16).model
    x = digits.x[3]
    dv, da = dg.build_diagram(vae, x, digits.image_shape), dg.build_diagram(ae, x, digits.image_shape)
    tv = " ".join(a["text"] for a in _spec(diagram_figure(dv))["layout"]["annotations"])
    ta = " ".join(a["text"] for a in _spec(diagram_figure(da))["layout"]["annotations"])
    for label in ("<b>μ</b><br>16", "<b>σ</b><br>16", "<b>ε ~ N(0, I)</b><br>16", "<b>z = μ + σ·ε</b><br>16"):
        assert label in tv and label not in ta, label
    assert "<b>z (code)</b><br>16" in ta
    # z = mu + sigma * eps holds for the drawn values, and sigma > 0.
    mu, sigma, eps, z = (dv.layer(k).values for k in ("mu", "sigma", "eps", "z"))
    np.testing.assert_allclose(z, mu + sigma * eps, rtol=1e-5, atol=1e-6)
    assert (sigma > 0).all()
    # The element-by-element links join dimension k to dimension k.
    elem = [e for e in dv.edges if e.kind == "elementwise"]
    assert {(dv.layers[e.src].key, dv.layers[e.dst].key) for e in elem} == {("mu", "z"), ("sigma", "eps"), ("eps", "z")}
    for e in elem:
        np.testing.assert_array_equal(dv.layers[e.src].shown[e.i], dv.layers[e.dst].shown[e.j])
    assert not any(e.kind == "elementwise" for e in da.edges)


def test_eps_is_fixed_by_the_seed(digits):
    vae = pretrained("digits", "vae", 1.0, 16).model
    x = digits.x[0]
    a, b = dg.build_diagram(vae, x, digits.image_shape, seed=1), dg.build_diagram(vae, x, digits.image_shape, seed=1)
    c = dg.build_diagram(vae, x, digits.image_shape, seed=2)
    np.testing.assert_array_equal(a.eps, b.eps)
    assert not np.allclose(a.eps, c.eps)
    np.testing.assert_allclose(a.eps, torch.randn((1, 16), generator=torch.Generator().manual_seed(1))[0].numpy())


def test_subsampling_is_shown_and_follows_the_rules(digits):
    model = pretrained("digits", "ae", 1.0, 16).model
    d = dg.build_diagram(model, digits.x[0], digits.image_shape, max_nodes=32)
    w1 = model.encoder[0].weight.detach().numpy()  # (128, 64)
    top = np.sort(np.argsort(-np.linalg.norm(w1, axis=0))[:32])
    np.testing.assert_array_equal(d.layer("input").shown, top)
    np.testing.assert_array_equal(d.layer("output").shown, top)  # the same pixels at both ends
    enc1 = d.layer("encoder 1")
    assert len(enc1.shown) == 32 and enc1.shown[0] == 0 and enc1.shown[-1] == 127
    assert set(np.diff(enc1.shown)) <= {4, 5}  # evenly spread: every 4th unit, give or take rounding
    assert enc1.label == "encoder 1: 128 (showing 32)" and enc1.subsampled
    assert d.layer("z").label == "z (code): 16" and not d.layer("z").subsampled
    assert d.layer("input").label == "input 64 (showing 32)"
    big = dg.build_diagram(model, digits.x[0], digits.image_shape, max_nodes=200)
    assert not any(layer.subsampled for layer in big.layers)


def test_edges_are_the_strongest_real_weights(digits):
    model = pretrained("digits", "ae", 1.0, 16).model
    d = dg.build_diagram(model, digits.x[0], digits.image_shape, edges_per_node=3)
    lins = dg.linear_layers(model)
    for e in d.edges:
        src, dst = d.layers[e.src], d.layers[e.dst]
        w = lins[dst.key].weight.detach().numpy()[np.ix_(dst.shown, src.shown)]
        np.testing.assert_allclose(e.w, w[e.j, e.i])
        for j in range(len(dst.shown)):
            chosen = e.i[e.j == j]
            assert len(chosen) == 3
            rest = np.setdiff1d(np.arange(len(src.shown)), chosen)
            assert np.abs(w[j, chosen]).min() >= np.abs(w[j, rest]).max()


def test_reconstruction_error_is_the_models_loss(model_and_x):
    model, x, ds = model_and_x
    d = dg.build_diagram(model, x, ds.image_shape, seed=0)
    xt = torch.tensor(np.array(x))
    ref = float(F.binary_cross_entropy(torch.tensor(d.recon), xt.double(), reduction="sum"))
    assert d.bce == pytest.approx(ref, rel=1e-3)
    assert d.mse == pytest.approx(float(np.mean((np.array(x) - d.recon) ** 2)), rel=1e-6)
    np.testing.assert_allclose(d.error, np.abs(np.array(x) - d.recon))
    if model.is_vae:
        mu, lv = (v.detach()[0] for v in model.encode(xt[None]))
        ref_kl = float(torch.distributions.kl_divergence(torch.distributions.Normal(mu, (0.5 * lv).exp()),
                                                         torch.distributions.Normal(0.0, 1.0)).sum())
        assert d.meta["kl"] == pytest.approx(ref_kl, rel=1e-4)


def test_build_diagram_rejects_bad_inputs():
    model = build_model(ModelConfig(kind="ae", input_dim=16, hidden_dims=(8,), latent_dim=2), device="cpu")
    with pytest.raises(ValueError, match="pixels"):
        dg.build_diagram(model, np.zeros(15), (4, 4))
    with pytest.raises(ValueError):
        dg.build_diagram(model, np.zeros(16), (3, 5))
    d = dg.build_diagram(model, np.zeros(16), (4, 4))  # one hidden layer works too
    assert [layer.key for layer in d.layers] == ["input", "encoder 1", "z", "decoder 1", "output"]
    assert len(diagram_figure(d).frames) == len(d.stages) == 6


# ---- the page's experiments ------------------------------------------------------------------------

def test_random_index_is_reproducible():
    picks = [dg.random_index(50, seed=3, draw=k) for k in range(20)]
    assert picks == [dg.random_index(50, seed=3, draw=k) for k in range(20)]
    assert all(0 <= p < 50 for p in picks) and len(set(picks)) > 5
    assert picks != [dg.random_index(50, seed=4, draw=k) for k in range(20)]


def test_add_noise_is_seeded_and_clipped():
    x = np.full(100, 0.5, np.float32)
    a, b = dg.add_noise(x, 0.3, seed=4), dg.add_noise(x, 0.3, seed=4)
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 0 and a.max() <= 1 and a.std() > 0.1
    np.testing.assert_array_equal(dg.add_noise(x, 0.0), x)
    with pytest.raises(ValueError):
        dg.add_noise(x, -1)


def test_anomaly_detection_flags_odd_inputs(digits):
    p = pretrained("digits", "ae", 1.0, 16)
    xv = digits.x[p.val_idx]
    errors = dg.reconstruction_mse(p.model, xv)
    with torch.no_grad():
        ref = ((p.model.decode(p.model.encode(torch.tensor(xv))[0]).numpy() - xv) ** 2).mean(1)
    np.testing.assert_allclose(errors, ref, rtol=1e-5)
    thr = dg.anomaly_threshold(errors)
    assert thr == pytest.approx(np.quantile(errors, 0.99))
    for name, img in dg.odd_inputs(xv[0]).items():
        assert float(dg.reconstruction_mse(p.model, img)) > thr, name
    assert dg.percentile_of(errors, np.inf) == 100.0 and dg.percentile_of(errors, -1.0) == 0.0


def test_denoise_measures_against_the_clean_image(digits):
    p = pretrained("digits", "ae", 1.0, 16)
    x = digits.x[p.val_idx[2]]
    r = dg.denoise(p.model, x, 0.5, seed=1)
    assert r.mse_noisy == pytest.approx(float(np.mean((r.noisy - x) ** 2)))
    assert r.mse_recon == pytest.approx(float(np.mean((r.recon - x) ** 2)))
    np.testing.assert_allclose(r.recon, dg.reconstruct(p.model, r.noisy))
    # Heavy noise: on average the trained decoder removes much of it (the model never saw noise).
    rs = [dg.denoise(p.model, digits.x[i], 1.0, seed=i) for i in p.val_idx[:20]]
    assert np.mean([r.mse_recon for r in rs]) < 0.7 * np.mean([r.mse_noisy for r in rs])


def test_decode_prior_and_nearest_mse(digits):
    p = pretrained("digits", "vae", 1.0, 16)
    z, imgs = dg.decode_prior(p.model, 5, seed=9)
    zr = torch.randn((5, 16), generator=torch.Generator().manual_seed(9))
    np.testing.assert_allclose(z, zr.numpy())
    with torch.no_grad():
        np.testing.assert_allclose(imgs, p.model.decode(zr).numpy(), rtol=1e-6)
    ref = digits.x[:50]
    brute = np.array([min(np.mean((a - b) ** 2) for b in ref) for a in imgs])
    np.testing.assert_allclose(dg.nearest_mse(imgs, ref), brute, rtol=1e-4, atol=1e-7)
    stats = dg.code_stats(p.model, ref, seed=4)
    assert stats["codes"].shape == (50, 16)
    np.testing.assert_allclose(stats["std"], stats["codes"].std(0))
    with torch.no_grad():  # a VAE's codes are samples z = mu + sigma * eps
        mu, lv = p.model.encode(torch.tensor(np.array(ref)))
        eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(4))
    np.testing.assert_allclose(stats["codes"], (mu + (0.5 * lv).exp() * eps).numpy(), rtol=1e-5, atol=1e-6)
    m, sd = stats["mean"], stats["std"]
    ref_kl = np.sum(np.log(1 / sd) + (sd ** 2 + m ** 2) / 2 - 0.5)  # KL(N(m, sd^2) || N(0, 1))
    assert stats["kl_to_prior"] == pytest.approx(ref_kl, rel=1e-6)
    ae = pretrained("digits", "ae", 1.0, 16).model
    assert dg.code_stats(ae, digits.x)["kl_to_prior"] > 3 * stats["kl_to_prior"]  # the AE ignores the prior


def test_drawing_is_prepared_like_the_dataset():
    canvas = np.zeros((280, 280, 4), np.uint8)
    canvas[..., 3] = 255
    canvas[30:150, 180:230, :3] = 255  # a tall bar, off centre (top right)
    img = dg.drawing_to_image(canvas, (28, 28), extent=20)
    assert img.shape == (784,) and img.dtype == np.float32
    assert img.min() >= 0 and img.max() == pytest.approx(1.0)
    a = img.reshape(28, 28)
    rows, cols = np.flatnonzero(a.sum(1) > 0.05), np.flatnonzero(a.sum(0) > 0.05)
    assert rows[-1] - rows[0] + 1 == pytest.approx(20, abs=1)  # longer side scaled to the extent
    ys, xs = np.mgrid[:28, :28]
    assert (ys * a).sum() / a.sum() == pytest.approx(13.5, abs=1.0)  # centred by centre of mass
    assert (xs * a).sum() / a.sum() == pytest.approx(13.5, abs=1.0)
    small = dg.drawing_to_image(canvas, (8, 8), extent=8)
    assert small.shape == (64,)
    blank = np.zeros((280, 280, 4), np.uint8)
    blank[..., 3] = 255
    assert dg.drawing_to_image(blank, (28, 28)) is None
    with pytest.raises(ValueError):
        dg.drawing_to_image(np.zeros((2, 2, 2, 2)), (28, 28))


def test_typical_extent_matches_the_datasets(digits):
    assert dg.typical_extent(digits.x, digits.image_shape) == 8
    assert dg.typical_extent(load_dataset("mnist-5k").x[:500], (28, 28)) == 20


def test_error_histogram_marks_inputs_and_threshold():
    errs = np.random.default_rng(0).lognormal(-4, 0.3, 200)
    fig = error_histogram(errs, [("this input", 0.02), ("random pixels", 0.3)], threshold=0.05)
    names = [t.name for t in fig.data]
    assert "held-out images" in names and any(n.startswith("random pixels") for n in names)
    assert any(s.x0 == pytest.approx(np.log10(0.05)) for s in fig.layout.shapes)


# ---- the block diagram (core.figures.blockdiagram) ------------------------------------------------

def _texts(fig) -> str:
    return " | ".join(a.text for a in fig.layout.annotations if a.text)


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_block_diagram_names_every_block_with_the_real_sizes(kind):
    from core.figures.blockdiagram import autoencoder_block_diagram

    fig = autoencoder_block_diagram(784, [256, 128], 16, kind=kind, image_shape=(28, 28), likelihood="bernoulli")
    t = _texts(fig)
    for part in ("<b>x</b><br>input", "<b>x̂</b><br>output", "reconstruction", "encoder", "f<sub>φ</sub>", "decoder", "g<sub>θ</sub>",
                 "784 → 256 → 128 → 16", "16 → 128 → 256 → 784", "784 numbers", "28×28 image",
                 "L(x, x̂)", "binary cross-entropy", "the input x", "sigmoid output"):
        assert part in t, part
    assert ("z = μ + σ⊙ε" in t and "KL(q(z|x) ‖ N(0, I))" in t) if kind == "vae" else ("K = 16 numbers" in t
                                                                                         and "KL" not in t)
    assert "linear " in t and "ReLU hidden layers" in t  # the code layer is linear, hidden layers ReLU
    assert fig.layout.meta["latent_dim"] == 16 and fig.layout.meta["hidden_dims"] == [256, 128]
    assert len(fig.data) == 0  # shapes and annotations only: nothing to hover
    shapes = [s.type for s in fig.layout.shapes]
    assert shapes.count("path") == 2 and shapes.count("rect") == 4
    # encoder narrows towards the code, decoder widens from it
    enc, dec = (s.path for s in fig.layout.shapes if s.type == "path")

    def heights(path):
        pts = [tuple(map(float, p.split(","))) for p in path.replace("M", "").replace("Z", "").split("L")]
        return pts[3][1] - pts[0][1], pts[2][1] - pts[1][1]
    assert heights(enc)[0] > heights(enc)[1] and heights(dec)[0] < heights(dec)[1]


def test_block_diagram_follows_its_arguments_and_refuses_bad_sizes():
    from core.figures.blockdiagram import autoencoder_block_diagram

    fig = autoencoder_block_diagram(64, [32], 2, font_size=11)
    t = _texts(fig)
    assert "64 → 32 → 2" in t and "K = 2 numbers" in t and "64 numbers" in t and "image" not in t
    assert "squared error or binary cross-entropy" in t
    assert fig.layout.font.size == 11
    assert "squared error ‖x − x̂‖²" in _texts(autoencoder_block_diagram(64, [32], 2, likelihood="gaussian"))
    for bad in (dict(kind="gan"), dict(image_shape=(8, 7)), dict(likelihood="poisson"), dict(latent_dim=0)):
        args = dict(input_dim=64, hidden_dims=[32], latent_dim=2) | bad
        with pytest.raises(ValueError):
            autoencoder_block_diagram(**args)


def test_prior_match_measures_what_the_kl_term_guarantees(digits):
    from scipy.stats import chi2
    from torch.distributions import Normal, kl_divergence

    p = pretrained("digits", "vae", 1.0, 2)
    x = digits.x[:400]
    r = dg.prior_match(p.model, x)
    with torch.no_grad():
        mu, logvar = p.model.encode(torch.tensor(x))
    mu, sd = mu.double(), torch.exp(0.5 * logvar.double())
    assert r["kl_mean"] == pytest.approx(kl_divergence(Normal(mu, sd), Normal(0.0, 1.0)).sum(1).mean().item(), rel=1e-6)
    np.testing.assert_allclose(r["agg_var"], (mu.var(0, unbiased=False) + (sd ** 2).mean(0)).numpy(), rtol=1e-6)
    assert r["radius"] == pytest.approx(3.0)  # in 2-D the 1.1 % tail of N(0, I) starts at radius 3
    assert r["prior_outside"] == pytest.approx(np.exp(-4.5))
    assert r["share_outside"] == pytest.approx((mu.pow(2).sum(1) > 9).double().mean().item())
    r16 = dg.prior_match(pretrained("digits", "vae", 1.0, 16).model, x)
    assert r16["prior_outside"] == pytest.approx(np.exp(-4.5)) and chi2.sf(r16["radius"] ** 2, 16) == pytest.approx(
        np.exp(-4.5))
    with pytest.raises(ValueError):
        dg.prior_match(pretrained("digits", "ae", 1.0, 2).model, x)


def test_stages_say_the_code_layer_is_linear():
    torch.manual_seed(0)  # (an unseeded random network gave all-positive codes for every input now and then)
    ae = build_model(ModelConfig(kind="ae", input_dim=64, hidden_dims=(32, 16), latent_dim=2), device="cpu")
    vae = build_model(ModelConfig(kind="vae", input_dim=64, hidden_dims=(32, 16), latent_dim=2), device="cpu")
    st_ae = {s.name: s for s in dg.stages_of(ae)}
    assert "ReLU" in st_ae["encoder 1"].formula and "ReLU" in st_ae["encoder 2"].formula
    assert "linear" in st_ae["z"].title and "ReLU" not in st_ae["z"].formula
    st_vae = {s.name: s for s in dg.stages_of(vae)}
    assert "linear" in st_vae["mu, sigma"].title and "ReLU" not in st_vae["mu, sigma"].formula
    # and the model really is so: the code equals head_mu of the last ReLU layer, negative values included
    with torch.no_grad():
        z = ae.encode(torch.rand(256, 64))[0]
    assert (z < 0).any()


def test_vae_bottleneck_columns_leave_room_for_their_labels(digits):
    """Issue 21: the μ/σ column and the ε and z columns sat 0.75 apart and their labels overlapped."""
    p = pretrained("digits", "vae", 1.0, 2)
    d = dg.build_diagram(p.model, digits.x[0], digits.image_shape)
    x = {layer.key: layer.x for layer in d.layers}
    assert x["mu"] == x["sigma"] and x["eps"] - x["sigma"] > 0.89 and x["z"] - x["eps"] > 0.89


# ---- the autoencoder page's numbers, in core (issue 22: pages only render) -------------------------------

def test_anomaly_report_scores_each_input_against_the_held_out_errors():
    """Independent reference: the model's decoder mean by hand (torch), numpy's quantile and a count."""
    from core import diagram as dg
    from core.data import load_dataset
    from core.zoo import pretrained

    ds = load_dataset("digits")
    p = pretrained("digits", "ae", 1.0, 16)
    held = ds.x[p.val_idx]
    with torch.no_grad():
        rec = p.model.decode(p.model.encode(torch.as_tensor(held))[0]).numpy()
    errors = ((held - rec) ** 2).mean(1)
    x = ds.x[p.val_idx[3]]
    thr, verdicts = dg.anomaly_report(p.model, x, errors, 0.4, seed=2)
    assert thr == pytest.approx(np.quantile(errors.astype(np.float64), 0.99))
    want = {"this input": x, "with noise σ = 0.40": dg.add_noise(x, 0.4, 2), **dg.odd_inputs(x, seed=2)}
    assert [v.name for v in verdicts] == list(want)
    for v, img in zip(verdicts, want.values()):
        with torch.no_grad():
            r = p.model.decode(p.model.encode(torch.as_tensor(img[None].astype(np.float32)))[0]).numpy()[0]
        mse = float(((img - r) ** 2).mean())
        assert v.error == pytest.approx(mse, rel=1e-5)
        assert v.percentile == pytest.approx(100 * np.sum(errors < v.error) / len(errors))
        assert v.flagged == (v.error > thr)
    by = {v.name: v for v in verdicts}
    assert by["random pixels"].flagged and not by["this input"].flagged


def test_per_image_mse_and_train_indices():
    from core import diagram as dg

    a = np.array([[0.0, 1.0], [1.0, 1.0]])
    b = np.array([[0.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(dg.per_image_mse(a, b), [0.5, 1.0])
    with pytest.raises(ValueError):
        dg.per_image_mse(a, b[:, :1])
    idx = dg.train_indices(6, [4, 1])
    assert list(idx) == [0, 2, 3, 5]


def test_grey_edges_are_only_the_ones_not_reached_yet(model_and_x):
    """Issue 21 (page open time): the grey trace under the edges holds only the edges not reached by the shown
    step, so the figure, which opens on its last step, draws every edge once, not twice."""
    model, x, ds = model_and_x
    d = dg.build_diagram(model, x, ds.image_shape)
    spec = _spec(diagram_figure(d))
    grey = spec["data"][0]
    assert grey["name"] == "not reached yet" and len(_decode(grey["x"])) == 0  # the last step: all reached
    n_edges = sum(len(e.i) for e in d.edges)
    for s, frame in enumerate(spec["frames"]):
        assert frame["traces"] == list(range(len(spec["data"])))
        g = np.asarray(_decode(frame["data"][0]["x"]), float)
        pending = sum(len(e.i) for e in d.edges if e.stage > s)
        assert len(g) == 3 * pending and (s > 0 or pending == n_edges)  # x0, x1, NaN per edge
        coloured = sum(len(_decode(t["x"])) for t in frame["data"][1:] if t.get("mode") == "lines")
        assert coloured == 3 * (n_edges - pending)  # every other edge is drawn in colour, once


def test_image_strip_enlarges_without_blurring():
    imgs = np.array([[0.0, 1.0, 0.5, 0.25], [1.0, 1.0, 0.0, 0.0]])
    out = image_strip(imgs, (2, 2), px=6, gap=2)
    assert out.dtype == np.uint8 and out.shape == (6, 3 * 2 * 2 + 2)
    np.testing.assert_array_equal(out[:3, :3], 0)
    np.testing.assert_array_equal(out[:3, 3:6], 255)
    np.testing.assert_array_equal(out[3:, :3], 128)
    np.testing.assert_array_equal(out[:, 6:8], 255)  # the gap
    np.testing.assert_array_equal(out[3:, 11:14], 0)
