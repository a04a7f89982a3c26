"""core.figures.training: live charts (against the shared Plotly builders), image mosaics, the
training timeline (frames, stable PCA axes) and the run comparison."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from PIL import Image
from sklearn.decomposition import PCA

from core import figures as F
from core.data import load_dataset
from core.figures import training as FT
from core.models import ModelConfig
from core.training import TrainConfig, Trainer
from core.units import active_mask

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained():
    ds = load_dataset("digits")
    t = Trainer(ModelConfig(kind="vae", input_dim=64, hidden_dims=(32, 16), latent_dim=5),
                TrainConfig(epochs=8, batch_size=64, snapshot_every=5, snapshot_points=120), ds)
    t.run_steps(60)
    t.set_beta(3.0)
    t.run_steps(10**6)
    return t, ds


def decode_typed(spec: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(spec["bdata"]), dtype=np.dtype(spec["dtype"]).newbyteorder("<"))


def plotly_y(trace) -> np.ndarray:
    y = trace.y
    return decode_typed(y) if isinstance(y, dict) else np.asarray(y, dtype=float)


# ---- live charts -------------------------------------------------------------------------------

def layers(spec: dict) -> list[dict]:
    return [layer for panel in spec["vconcat"] for layer in panel["layer"]]


def test_live_loss_chart_has_the_same_curves_as_the_shared_builder(trained):
    t, _ = trained
    table, spec = FT.live_loss_chart(t.history, t.eval_history, t.beta_changes, max_points=10**6)
    df = table.to_pandas()
    # placeholder rows keep every layer non-empty (no Vega "Infinite extent" warnings) and are never drawn
    hidden = df[~df["show"]]
    # (and, as β changed, one more in the upper panel above its curves: the β labels' band)
    assert sorted(hidden.set) == ["beta", "beta", "held-out", "held-out", "held-out"] and (hidden.step == 0).all()
    band = hidden[(hidden.set == "held-out") & (hidden.panel == "top")].value.max()
    assert band > df[df["show"] & (df.panel == "top")].value.max()
    # no placeholder in a panel's training lines: a line takes its first point's look
    line = next(l for l in layers(spec) if l["mark"]["type"] == "line")
    assert "opacity" not in line["encoding"]
    df = df[df["show"]]
    ref = F.loss_curves(t.history, t.eval_history, t.beta_changes)
    ceiling = {}
    for panel, names in FT.LOSS_PANELS.items():  # each panel's y-range, from its full training curves
        train = [tr for tr in ref.data if tr.name in [f"{n} (train)" for n in names]]
        ceiling[panel] = FT.y_ceiling(np.concatenate([plotly_y(tr) for tr in train]),
                                      np.concatenate([np.asarray(tr.x, dtype=float) for tr in train]))
    for trace in ref.data:
        name, kind = trace.name.rsplit(" (", 1)
        part = df[(df.term == name) & (df.set == ("train" if kind == "train)" else "held-out"))]
        y = plotly_y(trace)
        kept = ~(y > ceiling[part.panel.iloc[0]])
        # the same curve, less only the first steps above the panel's y-range
        assert np.allclose(part.value.to_numpy(), y[kept], rtol=1e-9, equal_nan=True), trace.name
        assert np.allclose(part.step.to_numpy(), np.asarray(trace.x, dtype=float)[kept])
    rules = df[df.set == "beta"]
    assert rules.step.tolist() == [60.0] and rules.label.tolist() == ["β=3"]
    assert len(ref.layout.shapes) == 1 and ref.layout.shapes[0].x0 == 60


def test_kl_has_its_own_panel_and_the_first_steps_do_not_set_the_y_range(trained):
    """Issue 21: KL and β·KL (a few nats) on their own axis, not flat under a reconstruction of 100+;
    the first steps' huge losses are cut from the y-range."""
    t, _ = trained
    df = FT.live_loss_chart(t.history, t.eval_history, t.beta_changes, max_points=10**6)[0].to_pandas()
    df = df[df["show"]]
    assert set(df[df.panel == "kl"].term) == {"KL", "β·KL"} and set(df[df.panel == "top"].term) == {"total", "reconstruction"}
    first = t.history[0]["recon"]
    late = [h["recon"] for h in t.history[len(t.history) // 5:]]
    recon = df[(df.term == "reconstruction") & (df.set == "train")]
    assert first > 1.2 * max(late) and recon.step.iloc[0] > 1 and recon.value.max() < first  # the early peak is out of range
    assert recon.step.iloc[-1] == t.step
    assert FT.y_ceiling(np.array([500.0, 200, 110, 105, 100, 100, 99, 98, 97, 96, 95]), np.arange(11)) == pytest.approx(200 * 1.05, rel=1e-6)
    assert FT.y_ceiling(np.array([np.nan]), np.array([1.0])) == float("inf")


def test_beta_labels_never_overlap_however_many_changes():
    """Five changes close together used to pile into one unreadable label; now each gets its own place."""
    for n in (2, 5, 12, 40):
        steps = list(np.linspace(100, 140, n))  # all within a few per cent of a 1,000-step axis
        labels = [f"β={b:g}" for b in np.resize([0.5, 4, 10, 1, 0.75], n)]
        places = FT.place_beta_labels(steps, labels, 1000, 12)
        assert places[-1][0] >= 0  # the newest change always keeps its label
        boxes = []
        for (row, side), x, text in zip(places, steps, labels):
            if row < 0:
                continue
            w = (len(text) * 0.62 * 12 + 6) / FT.ASSUMED_PLOT_WIDTH * 1000
            lo, hi = (x, x + w) if side == "left" else (x - w, x)
            assert all(r != row or hi <= a or lo >= b for r, a, b in boxes), (n, text)
            boxes.append((row, lo, hi))
        assert len(boxes) >= min(n, FT.BETA_LABEL_ROWS)
    # a label that would leave the plot on the right ends at its rule instead
    assert FT.place_beta_labels([995], ["β=10"], 1000, 12) == [(0, "right")]
    table, spec = FT.live_loss_chart([{"step": s, "loss": 1.0, "recon": 1.0, "kl": 0.5, "beta_kl": 0.5} for s in range(1, 200)],
                                     beta_changes=[(0, 1.0)] + [(100 + i, b) for i, b in enumerate([4, 0.5, 8, 1, 2])])
    df = table.to_pandas()
    shown = df[(df.set == "beta") & (df.label != "")]
    assert len(shown) == 5 and len(set(zip(shown.row, shown.side))) == 5
    # A short presenter chart (1280x720: 125 x 1.3 px, two panels) keeps its labels to one row, in a band of
    # their own above the curves (a hidden point raises the upper panel's y-range).
    table, _ = FT.live_loss_chart([{"step": s, "loss": 1.0 + s / 100, "recon": 1.0, "kl": 0.5, "beta_kl": 0.5}
                                   for s in range(1, 200)], beta_changes=[(0, 1.0), (150, 4.0)], height=125,
                                  font_scale=1.45)
    df = table.to_pandas()
    assert df[(df.set == "beta") & (df.label != "")].row.tolist() == [0]
    top = df[df.panel == "top"]
    lo, hi = top[top.show].value.min(), top[top.show].value.max()
    band_px = (top.value.max() - hi) / (top.value.max() - lo) * round(round(125 * 1.3) * 0.55)
    assert band_px >= round(12 * 1.45) + 3  # at least one label's height
    texts = [l for l in layers(spec) if l["mark"]["type"] == "text"]
    assert len(texts) == 2 and all(l in spec["vconcat"][0]["layer"] for l in texts)  # labelled once, in the top panel
    assert sum(l["mark"]["type"] == "rule" for l in layers(spec)) == 2  # the rule crosses both panels


def test_live_chart_specs_do_not_depend_on_the_data(trained):
    """The browser updates a Vega-Lite chart in place only while its spec stays the same."""
    t, _ = trained
    _, a = FT.live_loss_chart(t.history[:10], t.eval_history[:1])
    _, b = FT.live_loss_chart(t.history, t.eval_history, t.beta_changes)
    _, c = FT.live_loss_chart([], [])
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True) == json.dumps(c, sort_keys=True)
    _, k1 = FT.live_kl_chart([0.0, 1.0, 2.0, 0.001, 3.0], [False, True, True, False, True])
    _, k2 = FT.live_kl_chart([5.0, 0.0, 0.2, 0.4, 0.0], [True, True, True, True, True])
    _, k3 = FT.live_kl_chart([5.0, 0.0, 0.2, 0.4, 0.0], None)
    assert json.dumps(k1, sort_keys=True) == json.dumps(k2, sort_keys=True) == json.dumps(k3, sort_keys=True)
    _, l1 = FT.live_latent_chart(np.zeros((4, 2)), np.array([0, 1, 2, 3]))
    _, l2 = FT.live_latent_chart(np.ones((4, 2)), np.array([3, 2, 1, 0]))
    assert l1 == l2


def test_no_layer_of_the_loss_chart_is_ever_empty_and_placeholders_are_invisible(trained):
    t, _ = trained
    for hist, evals, changes in (([], [], []), (t.history[:3], [], [(0, 1.0)]), (t.history, t.eval_history, t.beta_changes)):
        table, spec = FT.live_loss_chart(hist, evals, changes)
        df = table.to_pandas()
        for layer in layers(spec):
            f = layer["transform"][0]["filter"]
            kind = f.split("'")[1]
            part = df[df.set == kind]
            if "datum.panel" in f:
                part = part[part.panel == f.split("datum.panel === '")[1].split("'")[0]]
            if "datum.side" in f:
                part = part[part.side == f.split("datum.side === '")[1].split("'")[0]]
            assert len(part), f  # an empty layer makes Vega warn "Infinite extent"
        for layer in [l for l in layers(spec) if l["mark"]["type"] in ("point", "rule")]:  # size/width and opacity 0 unless shown
            enc = layer["encoding"]
            for ch in ("opacity", "size", "strokeWidth"):
                if ch in enc:
                    assert enc[ch]["condition"]["test"] == "datum.show" and enc[ch]["value"] == 0
        if not hist:
            assert not df["show"].any()
    assert set(FT.live_loss_chart([], [])[0].to_pandas().label) == {""}  # no β text is drawn


def test_long_histories_are_thinned_but_keep_both_ends(trained):
    t, _ = trained
    df = FT.live_loss_chart(t.history, max_points=50)[0].to_pandas()
    total = df[(df.term == "total") & (df.set == "train") & df["show"]]
    assert len(total) <= 50 and total.step.iloc[-1] == t.step  # (the first steps may lie above the y-range)
    assert FT.thin(10, 3).tolist() == [0, 4, 9] and FT.thin(3, 10).tolist() == [0, 1, 2]


def test_kl_chart_colours_dimensions_by_burdas_mask_not_by_their_kl(trained):
    """The held-out evaluation's active mask (Var_x mu_j > 0.01) decides the colour, whatever the KL."""
    t, _ = trained
    ev = t.eval_history[-1]
    mu = t.encode_mu(t.x_val)
    assert ev["active"] == active_mask(mu).tolist() and np.allclose(ev["var_mu"], mu.astype(np.float64).var(0), rtol=1e-5)
    assert ev["active_units"] == sum(ev["active"])
    table, _ = FT.live_kl_chart(ev["kl_per_dim"], ev["active"])
    df = table.to_pandas()
    assert df.status.tolist() == ["active" if a else "collapsed" for a in ev["active"]]
    # A small KL does not make a dimension collapsed, nor a large one active: only the mask counts.
    kl = [0.0, 0.005, 0.01, 0.02, 1.5]
    table, spec = FT.live_kl_chart(kl, [True, False, True, False, False])
    df = table.to_pandas()
    assert df.status.tolist() == ["active", "collapsed", "active", "collapsed", "collapsed"]
    assert df.dim.tolist() == ["z1", "z2", "z3", "z4", "z5"]
    assert not any(l["mark"]["type"] == "rule" for l in spec["layer"])  # no KL threshold line any more
    # Before the first held-out evaluation there is no mask: nothing is called collapsed.
    assert set(FT.live_kl_chart(kl, None)[0].to_pandas().status) == {"not measured yet"}
    with pytest.raises(ValueError):
        FT.live_kl_chart(kl, [True, False])


def test_a_collapsed_dimension_is_visible_though_its_bar_has_no_height():
    table, spec = FT.live_kl_chart([0.0, 2.0, 0.0], [False, True, False])
    markers = [l for l in spec["layer"] if l["mark"]["type"] == "point"]
    assert len(markers) == 1
    m = markers[0]
    assert m["transform"] == [{"filter": "datum.status === 'collapsed'"}]
    assert m["mark"]["size"] >= 60 and m["mark"]["filled"] and m["encoding"]["y"] == {"datum": 0}
    df = table.to_pandas()
    assert df[df.status == "collapsed"].dim.tolist() == ["z1", "z3"]
    assert df.note.tolist() == ["collapsed", "", "collapsed"]


def test_kl_chart_labels_every_dimension_readably():
    """Issue 21: with 16 latent dimensions at 1280x720 only every other bar was labelled (Vega-Lite drops
    labels that would touch). The axis now lists every dimension up to KL_LABEL_ALL, with overlap removal
    off, and its labels are at least 16 px in presenter mode."""
    for k in (2, 5, 16, FT.KL_LABEL_ALL):
        table, spec = FT.live_kl_chart(np.linspace(0, 2, k), [True] * k, font_scale=1.45)
        axis = spec["layer"][0]["encoding"]["x"]["axis"]
        assert axis["values"] == table.to_pandas().dim.tolist() == [f"z{j + 1}" for j in range(k)], k
        assert axis["labelOverlap"] is False and axis["labelAngle"] == 0
        assert spec["config"]["axis"]["labelFontSize"] >= 16
    assert FT.live_kl_chart([1.0] * 16, None)[1]["config"]["axis"]["labelFontSize"] == 12  # normal size
    # More dimensions than can be read side by side: a regular subset, on its side, with the first and the last.
    axis = FT.live_kl_chart([1.0] * 64, None)[1]["layer"][0]["encoding"]["x"]["axis"]
    nums = [int(v[1:]) for v in axis["values"]]
    assert nums[0] == 1 and nums[-1] == 64 and axis["labelAngle"] == -90
    assert len(nums) <= FT.KL_LABEL_ALL and set(np.diff(nums[:-1])) == {3} and nums[-1] - nums[-2] <= 3


def test_latent_chart_uses_the_colour_blind_safe_class_colours():
    table, spec = FT.live_latent_chart(np.random.default_rng(0).normal(size=(30, 2)), np.arange(30) % 3,
                                       class_names=("zero", "one", "two"))
    df = table.to_pandas()
    scale = spec["encoding"]["color"]["scale"]
    assert scale["domain"] == ["zero", "one", "two"]
    assert scale["range"] == [F.class_color(c) for c in range(3)]
    assert set(df["class"]) == {"zero", "one", "two"}


def test_image_mosaic_is_sharp_and_round_trips_through_png():
    rng = np.random.default_rng(1)
    a, b = rng.random((3, 16)), rng.random((3, 16))
    img = FT.image_mosaic([a, b], (4, 4), target_width=150)
    k = 150 // (3 * 4 + 2)
    assert img.shape == (k * (4 + 2 + 4), k * 14)
    # Nearest-neighbour upscaling: the first input's pixel (0, 0) fills a k x k block.
    assert np.all(img[:k, :k] == np.float32(a[0, 0]))
    assert np.allclose(img[(4 + 2) * k: (4 + 2) * k + 4 * k: k, :4 * k: k], b[0].reshape(4, 4))
    uri = FT.mosaic_uri([a, b], (4, 4), target_width=150)
    assert uri.startswith("data:image/png;base64,")
    png = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    assert png.shape == img.shape and np.abs(png / 255.0 - img).max() <= 0.5 / 255 + 1e-6


def test_typed_arrays_decode_to_the_same_numbers():
    v = np.array([1.5, -2.25, 3e5, np.nan])
    assert np.allclose(decode_typed(FT.typed(v)), v.astype(np.float32), equal_nan=True)
    assert FT.typed([1, 2])["dtype"] == "f4"


# ---- the timeline -----------------------------------------------------------------------------

def test_timeline_frames_replay_the_snapshots(trained):
    t, ds = trained
    labels = t.y_val[t.snap_idx]
    fig = FT.timeline_figure(t.snapshots, labels, ds.x[t.val_idx[:8]], ds.image_shape, ds.class_names, max_frames=20)
    go.Figure(fig.to_dict())  # plotly's full validation accepts the figure built without it
    names = [f.name for f in fig.frames]
    assert 2 <= len(names) <= 20
    assert names[0] == str(t.snapshots[0]["step"]) and names[-1] == str(t.snapshots[-1]["step"])
    n_classes = len(np.unique(labels))
    for fr in fig.frames:
        assert len(fr.data) == n_classes + 1 and fr.data[-1].type == "image"
        assert fr.data[-1].source.startswith("data:image/png;base64,")
    sources = {fr.data[-1].source for fr in fig.frames}
    assert len(sources) > 1  # the reconstructions change during training
    menu = fig.layout.updatemenus[0]
    assert [b.label for b in menu.buttons] == ["▶ Play", "⏸ Pause"] and menu.buttons[0].method == "animate"
    slider = fig.layout.sliders[0]
    assert [s.label for s in slider.steps] == names and slider.active == len(names) - 1
    assert fig.data[-1].source == fig.frames[-1].data[-1].source  # opens on the last frame


def test_timeline_projects_every_snapshot_with_one_pca_fitted_on_the_last(trained):
    t, ds = trained
    lat = [s["latents"] for s in t.snapshots]
    coords, titles = FT.project_snapshots(lat)
    pca = PCA(n_components=2).fit(lat[-1])
    for z, c in zip(lat, coords):
        assert np.allclose(c, pca.transform(z), atol=1e-6)  # the same axes for every frame
    assert titles[0].startswith("PC1") and "%" in titles[0]
    xr, yr = FT.stable_range(coords, 0), FT.stable_range(coords, 1)
    inside = [np.mean((c[:, 0] >= xr[0]) & (c[:, 0] <= xr[1]) & (c[:, 1] >= yr[0]) & (c[:, 1] <= yr[1]))
              for c in coords]
    assert min(inside) >= 0.98
    two, t2 = FT.project_snapshots([z[:, :2] for z in lat])
    assert np.array_equal(two[-1], lat[-1][:, :2].astype(np.float64)) and t2 == ("z1", "z2")
    one, t1 = FT.project_snapshots([z[:, :1] for z in lat], labels=np.arange(len(lat[0])) % 10)
    assert np.array_equal(one[0][:, 0], lat[0][:, 0].astype(np.float64)) and t1[1].startswith("class")


def test_timeline_needs_snapshots():
    with pytest.raises(ValueError, match="no snapshots"):
        FT.timeline_figure([], np.zeros(0), np.zeros((1, 4)), (2, 2))


# ---- comparison ------------------------------------------------------------------------------

def test_compare_loss_curves_shows_neg_elbo_recon_and_kl_per_run(trained):
    t, _ = trained
    runs = [("run a", t.history, t.eval_history), ("run b", t.history[:40], t.eval_history[:1])]
    fig = FT.compare_loss_curves(runs)
    go.Figure(fig.to_dict())
    lines = [tr for tr in fig.data if tr.mode == "lines"]
    assert len(lines) == 6 and [tr.name for tr in lines if tr.showlegend] == ["run a", "run b"]
    win = max(1, len(t.history) // 60)
    expect = F.smooth(np.array([h["recon"] + h["kl"] for h in t.history]), win)
    assert np.allclose(plotly_y(lines[0]), expect[FT.thin(len(expect), FT.MAX_LINE_POINTS)], rtol=1e-6)
    held = [tr for tr in fig.data if tr.mode == "markers" and tr.xaxis == "x"]
    assert np.allclose(plotly_y(held[0]), [e["recon"] + e["kl"] for e in t.eval_history], rtol=1e-6)
    colours = {tr.name: tr.line.color for tr in lines}
    assert colours["run a"] == F.OKABE_ITO[0] and colours["run b"] == F.OKABE_ITO[1]
    # −ELBO and reconstruction start just below the curves (after their first steps), not at 0, so runs a few
    # nats apart look apart; KL starts at 0. Every point after the first steps is inside its panel's range.
    for p, (key, _) in enumerate(FT.COMPARE_PANELS):
        axis = fig.layout["yaxis" + ("" if p == 0 else str(p + 1))]
        panel = [tr for tr in lines if tr.yaxis == ("y" if p == 0 else f"y{p + 1}")]
        late = np.concatenate([plotly_y(tr)[len(plotly_y(tr)) // 5:] for tr in panel])
        assert axis.range[0] <= late.min() and late.max() <= axis.range[1]
        if key == "kl":
            assert axis.range[0] == 0
        else:
            assert 0 < axis.range[0] and (late.min() - axis.range[0]) < 0.25 * (axis.range[1] - axis.range[0])


def test_compare_reconstructions_labels_each_run(trained):
    t, ds = trained
    x = ds.x[t.val_idx[:6]]
    fig = FT.compare_reconstructions(x, {"a run with a very long name indeed": t.reconstruct(x), "b": x}, ds.image_shape)
    go.Figure(fig.to_dict())
    labels = [a.text for a in fig.layout.annotations]
    assert labels[0] == "input" and labels[1].endswith("…") and len(labels[1]) <= 22 and labels[2] == "b"
