"""Figures for the live-training page: live views, the training timeline and run comparison.

Live views (redrawn twice a second while a model trains in a background thread of the same
process) are Vega-Lite charts built as (Arrow table, spec) pairs, and images are plain mosaics
for ``st.image``: both update in place in the browser, without flicker (see the note above
``live_loss_chart``). They are built with little Python, because Python code holding the GIL
stalls the training thread: the shared Plotly builders take 30-90 ms each through plotly's
validators (``core.figures.loss_curves`` 28 ms, ``paired_rows`` 48 ms, measured), which
cut training throughput to 40 % when redrawn twice a second.

The timeline (a Plotly animation: frames, Play/Pause, a step scrubber) and the comparison
figures are Plotly figures assembled from plain dicts (``lean_figure``, ``_validate=False``)
with arrays pre-encoded as typed arrays, which takes milliseconds instead of seconds.
Arrays: images are (N, D) with D = H * W and values in [0, 1]; latents are (N, K).
"""
from __future__ import annotations

import base64
import functools
import io
import re
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import pyarrow as pa
import plotly.io as pio
from PIL import Image

from core.figures import FONT, OKABE_ITO, TERM_COLORS, as_images, class_color, mosaic, smooth

MAX_LINE_POINTS = 400      # per line: longer (smoothed) curves are thinned evenly
MAX_TIMELINE_FRAMES = 60


# ---- plumbing --------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _template() -> dict:
    """The ``plotly_white`` template cut down to what these figures use (layout, scatter, bar,
    image): 3 kB instead of the 7 kB plotly would embed in every figure."""
    full = pio.templates["plotly_white"].to_plotly_json()
    return {"layout": full["layout"], "data": {k: v for k, v in full["data"].items() if k in ("scatter", "bar")}}


def _font(scale: float, size: int | None = None) -> dict:
    return {**FONT, "size": round((size or FONT["size"]) * scale)}


def lean_figure(data: list[dict], layout: dict, title: str | None = None, height: int = 380,
                font_scale: float = 1.0, frames: list[dict] | None = None) -> go.Figure:
    """A ``go.Figure`` from plain dicts, skipping plotly's (slow) validation. Adds the house
    style of :func:`core.figures.style` (white template, fonts, tight margins)."""
    base = {
        "template": _template(), "font": _font(font_scale),
        "margin": {"l": 10, "r": 10, "t": round((50 if title else 20) * font_scale), "b": 10},
        "height": round(height * min(font_scale, 1.3)),
    }
    if title:
        base["title"] = {"text": title, "x": 0.01, "xanchor": "left"}
    base.update(layout)
    if font_scale > 1:
        _presenter_fonts(base, font_scale)
    kw = {"frames": frames} if frames is not None else {}
    return go.Figure(data=data, layout=base, _validate=False, **kw)


def _presenter_fonts(layout: dict, font_scale: float) -> None:
    """Explicit font sizes for presenter mode (in place): Streamlit draws a chart with its own template,
    whose tick, legend and title sizes (12 px and so on) win over ``layout.font``, so without them a
    presenter figure kept 12 px ticks and legend entries (issue 21: at least 16 px). Ticks and the legend
    get ``12 * font_scale`` (at least 16 px), axis titles ``13 * font_scale``, the title ``16 * font_scale``;
    sizes the figure set itself are kept."""
    small, mid = max(16, round(12 * font_scale)), max(16, round(13 * font_scale))
    for k, ax in list(layout.items()):
        if re.fullmatch(r"[xy]axis\d*", k) and isinstance(ax, dict):
            ax = {**ax, "tickfont": {"size": small, **(ax.get("tickfont") or {})}}
            t = ax.get("title")
            if isinstance(t, dict):
                ax["title"] = {**t, "font": {"size": mid, **(t.get("font") or {})}}
            layout[k] = ax
    for k in {"legend", *(k for k in layout if re.fullmatch(r"legend\d+", k))}:
        leg = layout.get(k) or {}
        layout[k] = {**leg, "font": {"size": small, **(leg.get("font") or {})}}
        if isinstance(leg.get("title"), dict):
            layout[k]["title"] = {**leg["title"], "font": {"size": small, **(leg["title"].get("font") or {})}}
    if isinstance(layout.get("title"), dict):
        layout["title"] = {**layout["title"], "font": {"size": round(16 * font_scale),
                                                       **(layout["title"].get("font") or {})}}
    for sl in layout.get("sliders") or []:
        sl["font"] = {"size": small, **(sl.get("font") or {})}
    for um in layout.get("updatemenus") or []:
        um["font"] = {"size": small, **(um.get("font") or {})}


def png_data_uri(img: np.ndarray) -> str:
    """A greyscale image (H, W) in [0, 1] as a ``data:image/png;base64,...`` URI."""
    a = (np.clip(np.asarray(img, dtype=np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a, mode="L").save(buf, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def typed(a, dtype: str = "f4") -> dict:
    """A numeric array as Plotly's typed-array spec ``{"dtype", "bdata"}`` (base64 of the raw
    little-endian bytes), the form plotly 7 itself sends numpy arrays in. Encoding it here skips
    plotly's per-array conversion in ``to_dict`` (about 0.7 ms per array)."""
    arr = np.ascontiguousarray(np.asarray(a, dtype=np.dtype(dtype).newbyteorder("<")).ravel())
    return {"dtype": dtype, "bdata": base64.b64encode(arr.tobytes()).decode("ascii")}


def thin(n: int, limit: int) -> np.ndarray:
    """At most ``limit`` evenly spaced indices of range(n), always keeping the first and the last."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(int))


def _image_trace(grid: np.ndarray, xaxis: str = "x", yaxis: str = "y") -> dict:
    return {"type": "image", "source": png_data_uri(grid), "xaxis": xaxis, "yaxis": yaxis,
            "hoverinfo": "skip", "hovertemplate": None}


def _hidden_axis(**kw) -> dict:
    return {"visible": False, "showgrid": False, "zeroline": False, **kw}


# ---- live views (Vega-Lite: updated in place, no flicker) -------------------------------------------
#
# Streamlit 1.67 derives a Plotly chart's element id from its whole spec, so a Plotly chart whose
# data changes is unmounted and drawn again from scratch on every redraw (measured: a new DOM node
# on every tick, blank frames between, zoom lost). A Vega-Lite chart whose spec stays the same while
# only its data (passed separately) changes is updated in place (measured: one DOM node, no blank
# frame). So each live builder returns (data, spec): a table and a spec that does not depend on
# the data, drawn with ``st.vega_lite_chart(data, spec)``. The data is an Arrow table built straight
# from numpy (a pandas DataFrame and its conversion to Arrow cost 25 ms per redraw; this costs 1 ms).
# Colours are the palettes of core.figures.

TERM_NAMES = {"loss": "total", "recon": "reconstruction", "beta_kl": "β·KL", "kl": "KL"}


def _vl_config(font_scale: float) -> dict:
    f = lambda size: round(size * font_scale)  # noqa: E731
    return {"axis": {"labelFontSize": f(12), "titleFontSize": f(13)},
            "legend": {"labelFontSize": f(12), "titleFontSize": f(13), "orient": "bottom"},
            "title": {"fontSize": f(15), "anchor": "start"}, "view": {"stroke": None}}


#: The two panels of the live loss chart: reconstruction and total (100+ nats on MNIST) above,
#: KL and β·KL (a few to a few tens of nats) below, each with its own y-axis so the KL visibly
#: responds to β instead of lying flat at the bottom of a shared axis.
LOSS_PANELS = {"top": ("total", "reconstruction"), "kl": ("KL", "β·KL")}
BETA_LABEL_ROWS = 4        # β labels are stacked in up to this many rows so that they never overlap
ASSUMED_PLOT_WIDTH = 480   # px: a lower bound of the loss chart's width on the page (labels placed for it)
EARLY_FRACTION = 0.1       # the first 10 % of the steps do not set the y-range (their losses are huge)


def _after_start(values: np.ndarray, steps: np.ndarray, early: float) -> np.ndarray | None:
    """The finite values after the first ``early`` share of the steps (all finite ones if none is that
    late); None when none is finite."""
    v = np.asarray(values, dtype=float)
    x = np.asarray(steps, dtype=float)
    ok = np.isfinite(v)
    if not ok.any():
        return None
    late = ok & (x >= x[ok].min() + early * (x[ok].max() - x[ok].min()))
    return v[late] if late.any() else v[ok]


def y_ceiling(values: np.ndarray, steps: np.ndarray, early: float = EARLY_FRACTION) -> float:
    """The top of a panel's y-range: 5 % above the largest value after the first ``early`` share of
    the steps (``values`` (N,), ``steps`` (N,)), so the first steps' losses (hundreds of nats on
    MNIST) do not squash the rest of the curve; +inf when nothing is measured yet."""
    v = _after_start(values, steps, early)
    if v is None:
        return float("inf")
    top = float(np.max(v))
    return top + 0.05 * abs(top) + 1e-6


def y_floor(values: np.ndarray, steps: np.ndarray, early: float = EARLY_FRACTION) -> float:
    """The smallest value after the first ``early`` share of the steps (``values`` (N,), ``steps`` (N,)),
    the counterpart of ``y_ceiling``; +inf when nothing is measured yet."""
    v = _after_start(values, steps, early)
    return float("inf") if v is None else float(np.min(v))


def place_beta_labels(steps: Sequence[float], labels: Sequence[str], x_max: float, font_px: float,
                      rows: int = BETA_LABEL_ROWS, width_px: float = ASSUMED_PLOT_WIDTH) -> list[tuple[int, str]]:
    """(row, side) for each β label, so that no two overlap: a label starts at its rule and runs right
    ("left"-aligned) or ends at it ("right"), in the first row where it overlaps no other label. Its width is estimated
    as 0.62 em per character on a plot ``width_px`` wide spanning steps 0..``x_max``. The newest
    labels are placed first; a label with no free place gets row -1 (its rule and tooltip stay)."""
    n = len(steps)
    out: list[tuple[int, str]] = [(-1, "left")] * n
    taken: list[list[tuple[float, float]]] = [[] for _ in range(rows)]
    span = max(float(x_max), 1.0)
    for i in reversed(range(n)):
        w = (len(labels[i]) * 0.62 * font_px + 6) / width_px * span
        x = float(steps[i])
        options = [(r, sd) for r in range(rows) for sd in ("left", "right")
                   if (x + w <= span if sd == "left" else x - w >= 0) or (sd == "right" and x + w > span)]
        for r, sd in options:
            lo, hi = (x, x + w) if sd == "left" else (x - w, x)
            if all(hi <= a or lo >= b for a, b in taken[r]):
                taken[r].append((lo, hi))
                out[i] = (r, sd)
                break
    return out


def live_loss_chart(history: Sequence[Mapping], eval_history: Sequence[Mapping] = (),
                    beta_changes: Sequence[tuple[int, float]] = (), title: str = "Loss terms per sample (nats)",
                    height: int = 320, font_scale: float = 1.0,
                    max_points: int = MAX_LINE_POINTS) -> tuple[pa.Table, dict]:
    """Live loss curves as (long table, Vega-Lite spec) in two panels with their own y-axes
    (``LOSS_PANELS``): total and reconstruction above, KL and β·KL below, per step (lines: training
    batches, a moving average over len/60 steps as in :func:`core.figures.loss_curves`; diamonds:
    held-out), and a dashed rule in both panels where β changed, labelled "β=b" once (above), the
    labels stacked so they never overlap (``place_beta_labels``). Each panel's y-range ends at
    ``y_ceiling``: points above it (the first steps) are left out of the table. Columns: step, value,
    term, set ("train", "held-out" or "beta"), panel ("top", "kl"), label, row, side, show.

    Each filtered layer always gets at least one row: a layer with no data makes Vega log "Infinite
    extent" warnings on every redraw. So every layer gets one placeholder row with ``show`` False,
    drawn with size, width and opacity 0, at step 0 and a value inside its panel's range (so it
    changes no axis)."""
    steps, values, terms, sets, panels, labels, rows, sides, shows = [], [], [], [], [], [], [], [], []

    def add(x, y, term, kind, panel, label=None, row=None, side=None, show=True):
        x = np.asarray(x, dtype=np.float64)
        steps.append(x)
        values.append(np.asarray(y, dtype=np.float64))
        n = len(x)
        terms.extend([term] * n)
        sets.extend([kind] * n)
        panels.extend([panel] * n)
        labels.extend(label if label is not None else [""] * n)
        rows.extend(row if row is not None else [0] * n)
        sides.extend(side if side is not None else ["left"] * n)
        shows.extend([show] * n)

    panel_of = {name: panel for panel, names in LOSS_PANELS.items() for name in names}
    curves: dict[str, list[tuple[np.ndarray, np.ndarray, str, str]]] = {p: [] for p in LOSS_PANELS}
    if history:
        x = np.array([h["step"] for h in history], dtype=float)
        win = max(1, len(history) // 60)
        keep = thin(len(history), max_points)
        for key, name in TERM_NAMES.items():
            y = smooth(np.array([h.get(key, np.nan) for h in history], dtype=float), win)[keep]
            curves[panel_of[name]].append((x[keep], y, name, "train"))
    if eval_history:
        es = np.array([e["step"] for e in eval_history], dtype=float)
        for key in ("loss", "recon", "kl"):
            name = TERM_NAMES[key]
            curves[panel_of[name]].append((es, np.array([e[key] for e in eval_history], dtype=float), name, "held-out"))
    h = round(height * min(font_scale, 1.3))
    line_px = round(12 * font_scale) + 3
    top_px = round(h * 0.55)  # the upper panel's height; the β labels take at most 30 % of it
    label_rows = max(1, min(BETA_LABEL_ROWS, int(0.3 * top_px) // line_px))
    spans = {}  # panel -> (lowest, highest) value drawn
    for panel, parts in curves.items():
        train = [c for c in parts if c[3] == "train"] or parts
        top = y_ceiling(np.concatenate([c[1] for c in train]), np.concatenate([c[0] for c in train])) if train else 0.0
        inside = []
        for xs, ys, name, kind in parts:
            ok = ~(ys > top)  # NaN (a term not logged) stays: the line breaks there
            add(xs[ok], ys[ok], name, kind, panel)
            inside.append(ys[ok & np.isfinite(ys)])
        vals = np.concatenate(inside) if inside else np.zeros(0)
        filler = float(np.median(vals)) if len(vals) else 0.0
        if len(vals):
            spans[panel] = (float(np.min(vals)), float(np.max(vals)))
        # placeholders; a training line's would hide its whole line (a line takes the opacity of its first
        # point), so it is only added while the panel has no line, and a line of one point draws nothing
        for kind in ("held-out",) if any(c[3] == "train" for c in parts) else ("train", "held-out"):
            add([0.0], [filler], LOSS_PANELS[panel][0], kind, panel, show=False)
    for side in ("left", "right"):
        add([0.0], [np.nan], "β", "beta", "", label=[""], side=[side], show=False)
    changes = list(beta_changes)[1:]
    if changes:
        text = [f"β={c[1]:g}" for c in changes]
        x_max = max([float(np.max(s)) for s in steps if len(s)] + [float(c[0]) for c in changes] + [1.0])
        places = place_beta_labels([c[0] for c in changes], text, x_max, 12 * font_scale, rows=label_rows)
        add([c[0] for c in changes], np.full(len(changes), np.nan), "β", "beta", "",
            [t if r >= 0 else "" for t, (r, _) in zip(text, places)], [max(r, 0) for r, _ in places],
            [sd for _, sd in places])
        # Room for the labels above the curves: a hidden point raises the upper panel's y-range by the
        # labels' rows, so they sit in a band of their own instead of over the lines and diamonds.
        used = max((r + 1 for r, _ in places), default=0)
        if used and "top" in spans:
            lo, hi = spans["top"]
            band = used * line_px + 4
            add([0.0], [hi + max(hi - lo, 1e-6) * band / max(top_px - band, 1)], LOSS_PANELS["top"][0], "held-out",
                "top", show=False)
    cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0))
    table = pa.table({"step": cat(steps), "value": cat(values), "term": pa.array(terms, pa.string()),
                      "set": pa.array(sets, pa.string()), "panel": pa.array(panels, pa.string()),
                      "label": pa.array(labels, pa.string()), "row": pa.array(rows, pa.int32()),
                      "side": pa.array(sides, pa.string()), "show": pa.array(shows, pa.bool_())})
    hide = (lambda visible: {"condition": {"test": "datum.show", "value": visible}, "value": 0})
    names = list(TERM_NAMES.values())
    color = {"field": "term", "type": "nominal", "title": None,
             "scale": {"domain": names, "range": [TERM_COLORS[k] for k in TERM_NAMES]}}
    x = {"field": "step", "type": "quantitative", "title": "step", "scale": {"zero": True, "nice": False}}
    x_kl, x_top = x, {**x, "axis": {"title": None, "labels": False}}  # one step axis, under the lower panel
    tip = [{"field": "term"}, {"field": "step", "format": ".0f"}, {"field": "value", "format": ".2f"}]

    def panel_spec(panel: str, y_title: str, panel_height: int, zero: bool, with_labels: bool) -> dict:
        y = {"field": "value", "type": "quantitative", "title": y_title, "scale": {"zero": zero}}
        x = x_kl if panel == "kl" else x_top
        where = f"datum.panel === '{panel}'"
        layers = [
            {"transform": [{"filter": f"datum.set === 'train' && {where}"}],
             "mark": {"type": "line", "strokeWidth": 2.5},
             "encoding": {"x": x, "y": y, "color": color, "tooltip": tip,
                          "strokeDash": {"field": "term", "type": "nominal", "title": None,
                                         "scale": {"domain": names, "range": [[1, 0], [1, 0], [1, 0], [5, 3]]}}}},
            {"transform": [{"filter": f"datum.set === 'held-out' && {where}"}],
             "mark": {"type": "point", "shape": "diamond", "filled": True},
             "encoding": {"x": x, "y": y, "color": color, "tooltip": [{"field": "set"}, *tip],
                          "size": hide(70), "opacity": hide(1)}},
            {"transform": [{"filter": "datum.set === 'beta'"}],
             "mark": {"type": "rule", "strokeDash": [4, 4], "color": "#888"},
             "encoding": {"x": x, "tooltip": [{"field": "label", "title": "β changed to"},
                                              {"field": "step", "format": ".0f"}],
                          "strokeWidth": hide(1.5), "opacity": hide(1)}},
        ]
        if with_labels:
            for side, dx in (("left", 3), ("right", -3)):
                layers.append(
                    {"transform": [{"filter": f"datum.set === 'beta' && datum.side === '{side}'"},
                                   {"calculate": f"2 + datum.row * {line_px}", "as": "ypx"}],
                     "mark": {"type": "text", "align": side, "dx": dx, "baseline": "top", "color": "#444",
                              "fontSize": round(12 * font_scale)},
                     "encoding": {"x": x, "y": {"field": "ypx", "type": "quantitative", "scale": None},
                                  "text": {"field": "label"}}})
        return {"height": panel_height, "width": "container", "layer": layers}

    spec = {
        "title": title,
        "vconcat": [panel_spec("top", "total, reconstruction", top_px, False, True),
                    panel_spec("kl", "KL, β·KL", round(h * 0.45), True, False)],
        "spacing": round(8 * font_scale),
        "resolve": {"scale": {"x": "shared", "color": "shared", "strokeDash": "shared"}},
        "config": _vl_config(font_scale),
    }
    return table, spec


KL_STATUS = ("active", "collapsed", "not measured yet")
KL_AXIS_MIN = 0.5  # nats: the KL bars' y-axis goes at least this high
KL_LABEL_ALL = 24  # up to this many latent dimensions, every bar of the KL chart is labelled


def live_kl_chart(kl_per_dim: Sequence[float], active: Sequence[bool] | None = None,
                  title: str = "KL per latent dimension", height: int = 300,
                  font_scale: float = 1.0) -> tuple[pa.Table, dict]:
    """KL of each latent dimension as bars, coloured by whether the dimension is active, as (Arrow
    table, Vega-Lite spec). Columns: dim, index, kl, status, note.

    ``kl_per_dim`` (K,): KL(q(z_j|x) || N(0, 1)) averaged over images, in nats. ``active`` (K,) bools:
    Burda et al.'s (2016) criterion from the same held-out evaluation (``core.units.active_mask``:
    Var_x(mu_j) > 0.01), or None before the first evaluation ("not measured yet"). Whether a
    dimension is active is never judged from its KL. A collapsed dimension's bar can be too short
    to see, so every collapsed dimension also gets a grey diamond on the axis and, with at most
    8 dimensions, the word "collapsed" above it. The spec never depends on the data (the browser
    then updates the chart in place)."""
    kl = np.asarray(kl_per_dim, dtype=float)
    k = len(kl)
    if active is None:
        status = np.array(["not measured yet"] * k, dtype=object)
    else:
        a = np.asarray(active, dtype=bool)
        if a.shape != kl.shape:
            raise ValueError(f"active must have one entry per dimension ({k}), got shape {a.shape}")
        status = np.where(a, "active", "collapsed").astype(object)
    df = pa.table({"dim": [f"z{j + 1}" for j in range(k)], "index": np.arange(k), "kl": kl,
                   "status": status.tolist(), "note": np.where(status == "collapsed", "collapsed", "").tolist()})
    # Every dimension gets its label, its number (the tooltip says z3): Vega-Lite's default drops every other
    # label of an ordinal axis as soon as two would touch, which left 16 dimensions half-labelled at presenter
    # size (issue 21). Beyond KL_LABEL_ALL dimensions the numbers are too many to read side by side: every
    # step-th one is labelled, on its side, and the last (in place of the step-th one before it).
    step = 1 if k <= KL_LABEL_ALL else -(-k // KL_LABEL_ALL)
    labelled = list(range(0, k, step))
    labelled[-1] = k - 1 if len(labelled) > 1 else labelled[-1]
    x = {"field": "dim", "type": "ordinal", "title": "latent dimension", "sort": None,  # data order: z1, ..., zK
         "axis": {"values": [f"z{j + 1}" for j in labelled], "labelExpr": "slice(datum.value, 1)",
                  "labelOverlap": False, "labelAngle": 0 if step == 1 else -90, "labelPadding": 2}}
    # The y-axis reaches at least KL_AXIS_MIN nats: when every dimension has collapsed (KL of 0.001 nats or
    # less), the bars would otherwise fill the chart as if they carried information.
    y = {"field": "kl", "type": "quantitative", "title": "KL (nats)", "scale": {"domain": {"unionWith": [0, KL_AXIS_MIN]}}}
    color = {"field": "status", "type": "nominal", "title": None,
             "scale": {"domain": list(KL_STATUS), "range": [OKABE_ITO[0], "#777777", "#BBBBBB"]}}
    tooltip = [{"field": "dim"}, {"field": "kl", "format": ".3f", "title": "KL (nats)"}, {"field": "status"}]
    collapsed = {"filter": "datum.status === 'collapsed'"}
    layers = [
        {"mark": {"type": "bar"}, "encoding": {"x": x, "y": y, "color": color, "tooltip": tooltip}},
        {"transform": [collapsed],  # a visible marker even when the bar has (almost) zero height
         "mark": {"type": "point", "shape": "diamond", "filled": True, "size": round(90 * font_scale),
                  "color": "#777777", "stroke": "#333333", "strokeWidth": 1},
         "encoding": {"x": x, "y": {"datum": 0}, "tooltip": tooltip}},
    ]
    if k <= 8:
        layers.append({"transform": [collapsed],
                       "mark": {"type": "text", "baseline": "bottom", "dy": -8, "color": "#444",
                                "fontSize": round(10 * font_scale)},
                       "encoding": {"x": x, "y": {"datum": 0}, "text": {"field": "note"}}})
    spec = {"title": title, "height": round(height * min(font_scale, 1.3)), "layer": layers,
            "config": _vl_config(font_scale)}
    return df, spec


def live_latent_chart(coords: np.ndarray, labels: np.ndarray, class_names: Sequence[str] | None = None,
                      title: str = "Latent map of held-out images", height: int = 420, font_scale: float = 1.0,
                      axis_titles: tuple[str, str] = ("z1", "z2")) -> tuple[pa.Table, dict]:
    """A 2-D latent map (N, 2) coloured by class, as (Arrow table, Vega-Lite spec); the colours are
    :data:`core.figures.CLASS_COLORS` (colour-blind safe), as in :func:`core.figures.latent_scatter`."""
    coords = np.asarray(coords, dtype=float)
    labels = np.asarray(labels)
    classes = [int(c) for c in np.unique(labels)]

    def name(c: int) -> str:
        if c < 0:
            return "unlabelled"
        return class_names[c] if class_names is not None and c < len(class_names) else str(c)

    df = pa.table({"z1": coords[:, 0], "z2": coords[:, 1], "class": [name(int(c)) for c in labels]})
    spec = {
        "title": title, "height": round(height * min(font_scale, 1.3)),
        "mark": {"type": "circle", "size": 30, "opacity": 0.8},
        "encoding": {
            "x": {"field": "z1", "type": "quantitative", "title": axis_titles[0], "scale": {"zero": False}},
            "y": {"field": "z2", "type": "quantitative", "title": axis_titles[1], "scale": {"zero": False}},
            "color": {"field": "class", "type": "nominal", "title": "class",
                      "scale": {"domain": [name(c) for c in classes],
                                "range": [class_color(c) if c >= 0 else "#666666" for c in classes]}},
            "tooltip": [{"field": "class"}, {"field": "z1", "format": ".2f"}, {"field": "z2", "format": ".2f"}],
        },
        "config": _vl_config(font_scale),
    }
    return df, spec


def image_mosaic(rows: Sequence[np.ndarray], image_shape: Sequence[int], ncols: int | None = None,
                 target_width: int = 1) -> np.ndarray:
    """Rows of images (each (N, D) or (N, H, W) in [0, 1]) tiled into one greyscale picture in
    [0, 1], upscaled by an integer factor (nearest neighbour, so pixels stay sharp) to about
    ``target_width`` pixels (the default keeps the native size: the browser can scale it with
    ``image-rendering: pixelated``, which costs the server nothing). A wider gap separates the rows."""
    imgs = [as_images(r, image_shape) for r in rows]
    n = min(len(a) for a in imgs)
    ncols = ncols or n
    h = imgs[0].shape[1]
    parts = []
    for i, a in enumerate(imgs):
        if i:
            parts.append(np.ones((max(2, h // 4), parts[0].shape[1]), np.float32))
        parts.append(mosaic(a[:n], ncols))
    grid = np.vstack(parts)
    k = max(1, target_width // grid.shape[1])
    return np.kron(grid, np.ones((k, k), np.float32))


def mosaic_uri(rows: Sequence[np.ndarray], image_shape: Sequence[int], ncols: int | None = None,
               target_width: int = 1) -> str:
    """:func:`image_mosaic` as a PNG ``data:`` URI for ``st.image``: the browser swaps the picture
    in place (no flicker), and no media file is stored on the server (a media file replaced
    twice a second can be deleted before a slow browser has fetched it)."""
    return png_data_uri(image_mosaic(rows, image_shape, ncols, target_width))


# ---- the training timeline ------------------------------------------------------------------------

def _class_traces(coords: np.ndarray, labels: np.ndarray, class_names: Sequence[str] | None,
                  marker_size: int, xaxis: str = "x", yaxis: str = "y") -> list[dict]:
    """One Plotly scatter trace per class (so the legend toggles classes), in sorted label order."""
    out = []
    for c in np.unique(labels):
        m = labels == c
        name = class_names[int(c)] if class_names is not None and 0 <= int(c) < len(class_names) else (
            "unlabelled" if c < 0 else str(int(c)))
        out.append({"type": "scatter", "x": typed(coords[m, 0]), "y": typed(coords[m, 1]), "mode": "markers",
                    "name": name, "xaxis": xaxis, "yaxis": yaxis, "legendgroup": name,
                    "marker": {"size": marker_size, "color": class_color(c) if c >= 0 else "#666", "opacity": 0.8,
                               "line": {"width": 0}},
                    "hovertemplate": f"class {name}<br>(%{{x:.2f}}, %{{y:.2f}})<extra></extra>"})
    return out


def project_snapshots(latents: Sequence[np.ndarray], labels: np.ndarray | None = None,
                      seed: int = 0) -> tuple[list[np.ndarray], tuple[str, str]]:
    """2-D coordinates for every snapshot of the same points, with stable axes.

    K = 2: the latents themselves. K > 2: one PCA fitted on the LAST snapshot (the trained
    encoder) projects every snapshot, so a point moves only because its code moved.
    K = 1: z1 against the class label plus a little jitter (a strip plot).
    Returns (list of (P, 2) arrays, (x title, y title)).
    """
    lat = [np.asarray(z, dtype=np.float64) for z in latents]
    k = lat[-1].shape[1]
    if k == 2:
        return [z.copy() for z in lat], ("z1", "z2")
    if k == 1:
        n = len(lat[-1])
        jitter = np.random.default_rng(seed).uniform(-0.3, 0.3, n)
        y = (np.asarray(labels, dtype=float) if labels is not None and np.all(np.asarray(labels) >= 0)
             else np.zeros(n)) + jitter
        return [np.column_stack([z[:, 0], y]) for z in lat], ("z1", "class (jittered)")
    from sklearn.decomposition import PCA
    pca = PCA(n_components=2, random_state=seed).fit(lat[-1])
    ev = pca.explained_variance_ratio_ * 100
    return [pca.transform(z) for z in lat], (f"PC1 of z ({ev[0]:.0f}% of variance)", f"PC2 of z ({ev[1]:.0f}%)")


def stable_range(arrays: Sequence[np.ndarray], col: int, pad: float = 0.08) -> list[float]:
    """An axis range covering column ``col`` of every frame (0.5-99.5 % quantiles, padded)."""
    lo = min(float(np.quantile(a[:, col], 0.005)) for a in arrays)
    hi = max(float(np.quantile(a[:, col], 0.995)) for a in arrays)
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo < 1e-6:
        lo, hi = (lo - 1, hi + 1) if np.isfinite(lo) and np.isfinite(hi) else (-1.0, 1.0)
    span = hi - lo
    return [lo - pad * span, hi + pad * span]


def timeline_figure(snapshots: Sequence[Mapping], labels: np.ndarray, inputs: np.ndarray,
                    image_shape: Sequence[int], class_names: Sequence[str] | None = None,
                    title: str | None = "Training timeline", max_frames: int = MAX_TIMELINE_FRAMES,
                    height: int = 560, font_scale: float = 1.0, seed: int = 0) -> go.Figure:
    """A Plotly animation of training: left, the latent map of a fixed subset of held-out points
    (``snapshot["latents"]`` (P, K), coloured by ``labels`` (P,)); right, the fixed held-out
    ``inputs`` (I, D) above their reconstructions (``snapshot["recon"]`` (I, D)) at that step.

    Frames play in the browser (Play/Pause buttons and a step scrubber); at most ``max_frames``
    snapshots, evenly spaced, always with the first and the last. The figure opens on the last
    frame; Play replays from the start (and resumes from where Pause stopped it).
    """
    if not snapshots:
        raise ValueError("no snapshots to animate: train for at least one step")
    idx = thin(len(snapshots), max_frames)
    snaps = [snapshots[i] for i in idx]
    labels = np.asarray(labels)
    coords, (xt, yt) = project_snapshots([s["latents"] for s in snaps], labels, seed)
    xr, yr = stable_range(coords, 0), stable_range(coords, 1)
    inp = as_images(inputs, image_shape)
    h, w = inp.shape[1:]
    n_img = len(inp)
    ncols = n_img if n_img <= 4 else int(np.ceil(n_img / 2))  # 8 images: 2 rows of 4, a squarer panel

    def panel(recon) -> np.ndarray:
        rec = as_images(recon, image_shape)[:n_img]
        top, bottom = mosaic(inp, ncols), mosaic(rec, ncols)
        gap = np.ones((max(2, h // 2), top.shape[1]), np.float32)
        return np.vstack([top, gap, bottom])

    # Presenter mode: ten classes at presenter size are taller than the map, and the legend then scrolls
    # (classes 7 to 9 hidden at 1280x720); short class names go into two columns (a second legend) instead.
    n_classes = len(np.unique(labels))
    two_cols = font_scale > 1 and n_classes > 6 and (class_names is None or max(map(len, class_names)) <= 2)

    def traces(i: int) -> list[dict]:
        t = _class_traces(coords[i], labels, class_names, 5)
        if two_cols:
            for tr in t[(len(t) + 1) // 2:]:
                tr["legend"] = "legend2"
        t.append(_image_trace(panel(snaps[i]["recon"]), "x2", "y2"))
        return t

    names = [str(int(s["step"])) for s in snaps]
    per_frame = [traces(i) for i in range(len(snaps))]
    frames = [{"name": nm, "data": d, "traces": list(range(len(d)))} for nm, d in zip(names, per_frame)]
    last = len(snaps) - 1
    frame_opts = {"frame": {"duration": 350, "redraw": True}, "transition": {"duration": 0}, "fromcurrent": True,
                  "mode": "immediate"}
    layout = {
        "xaxis": {"domain": [0, 0.5], "range": xr, "title": {"text": xt}, "zeroline": False},
        "yaxis": {"domain": [0, 1], "range": yr, "title": {"text": yt}, "zeroline": False},
        "xaxis2": _hidden_axis(domain=[0.62, 1.0], anchor="y2"),
        "yaxis2": _hidden_axis(domain=[0.2, 0.95], anchor="x2", autorange="reversed", scaleanchor="x2"),
        "legend": {"title": {"text": "class"}, "itemsizing": "constant", "x": 0.51, "xanchor": "left", "y": 1,
                   "yanchor": "top"},
        **({"legend2": {"title": {"text": " "}, "itemsizing": "constant", "x": 0.565, "xanchor": "left", "y": 1,
                        "yanchor": "top"}} if two_cols else {}),
        "annotations": [
            {"text": "held-out inputs (top), reconstructions (bottom)", "x": 0.81, "y": 1.0,
             "xref": "paper", "yref": "paper", "showarrow": False, "yanchor": "bottom",
             "font": _font(font_scale, 13)},
        ],
        "updatemenus": [{
            "type": "buttons", "direction": "left", "x": 0.12, "y": 0, "xanchor": "right", "yanchor": "top",
            "pad": {"r": 10, "t": 87}, "showactive": False,
            "buttons": [
                {"label": "▶ Play", "method": "animate", "args": [None, frame_opts]},
                {"label": "⏸ Pause", "method": "animate",
                 "args": [[None], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate",
                                   "transition": {"duration": 0}}]},
            ],
        }],
        "sliders": [{
            "active": last, "x": 0.12, "len": 0.88, "y": 0, "xanchor": "left", "yanchor": "top",
            "pad": {"t": 50, "b": 10},
            "currentvalue": {"prefix": "step ", "visible": True, "xanchor": "right", "font": _font(font_scale, 14)},
            "steps": [{"label": nm, "method": "animate",
                       "args": [[nm], {"frame": {"duration": 0, "redraw": True}, "mode": "immediate",
                                       "transition": {"duration": 0}}]} for nm in names],
        }],
        "margin": {"l": 10, "r": 10, "t": round(60 * font_scale), "b": round(130 * font_scale)},
        "uirevision": "timeline",
    }
    return lean_figure(per_frame[last], layout, title, height, font_scale, frames=frames)


# ---- comparing runs ------------------------------------------------------------------------------

COMPARE_PANELS = (("neg_elbo", "−ELBO = recon + KL"), ("recon", "reconstruction"), ("kl", "KL"))


def compare_loss_curves(runs: Sequence[tuple[str, Sequence[Mapping], Sequence[Mapping]]],
                        title: str | None = "Runs compared (nats per sample)", height: int = 400,
                        font_scale: float = 1.0, max_points: int = MAX_LINE_POINTS) -> go.Figure:
    """Overlaid curves of 2-4 runs, one colour per run, in three panels: −ELBO (= recon + KL,
    which does not depend on beta, so runs with different beta are comparable), reconstruction
    and KL. ``runs``: (name, history, eval_history). Lines: training batches (moving average);
    diamonds: held-out."""
    data, axes, notes = [], {}, []
    n_panels = len(COMPARE_PANELS)
    gap = 0.06
    width = (1 - gap * (n_panels - 1)) / n_panels
    for p, (key, label) in enumerate(COMPARE_PANELS):
        sfx = "" if p == 0 else str(p + 1)
        d0 = p * (width + gap)
        axes[f"xaxis{sfx}"] = {"domain": [d0, d0 + width], "anchor": f"y{sfx}", "title": {"text": "step"},
                               "rangemode": "tozero"}
        axes[f"yaxis{sfx}"] = {"anchor": f"x{sfx}", "rangemode": "tozero",
                               **({"title": {"text": "nats per sample"}} if p == 0 else {})}
        notes.append({"text": f"<b>{label}</b>", "x": d0 + width / 2, "y": 1.0, "xref": "paper", "yref": "paper",
                      "showarrow": False, "xanchor": "center", "yanchor": "bottom", "font": _font(font_scale, 13)})
    # per panel: each run's y_ceiling and y_floor (the first steps do not set the range)
    tops, floors = [[] for _ in COMPARE_PANELS], [[] for _ in COMPARE_PANELS]
    for r, (name, history, eval_history) in enumerate(runs):
        color = OKABE_ITO[r % len(OKABE_ITO)]
        for p, (key, _) in enumerate(COMPARE_PANELS):
            sfx = "" if p == 0 else str(p + 1)
            if history:
                steps = np.array([h["step"] for h in history], dtype=float)
                if key == "neg_elbo":
                    vals = np.array([h["recon"] + h["kl"] for h in history], dtype=float)
                else:
                    vals = np.array([h[key] for h in history], dtype=float)
                vals = smooth(vals, max(1, len(history) // 60))
                tops[p].append(y_ceiling(vals, steps))
                floors[p].append(y_floor(vals, steps))
                keep = thin(len(history), max_points)
                data.append({"type": "scatter", "x": typed(steps[keep]), "y": typed(vals[keep]), "mode": "lines",
                             "name": name,
                             "legendgroup": name, "showlegend": p == 0, "xaxis": f"x{sfx}", "yaxis": f"y{sfx}",
                             "line": {"color": color, "width": 2.5},
                             "hovertemplate": f"{name}<br>step %{{x}}: %{{y:.2f}}<extra></extra>"})
            if eval_history:
                ev = [e for e in eval_history if key in e or key == "neg_elbo"]
                ys = [e["recon"] + e["kl"] if key == "neg_elbo" else e[key] for e in ev]
                ev_steps = np.array([e["step"] for e in ev], dtype=float)
                tops[p].append(y_ceiling(np.array(ys, dtype=float), ev_steps))
                floors[p].append(y_floor(np.array(ys, dtype=float), ev_steps))
                data.append({"type": "scatter", "x": typed([e["step"] for e in ev]), "y": typed(ys), "mode": "markers",
                             "name": f"{name} (held-out)", "legendgroup": name, "showlegend": False,
                             "xaxis": f"x{sfx}", "yaxis": f"y{sfx}",
                             "marker": {"color": color, "size": 7, "symbol": "diamond",
                                        "line": {"color": "white", "width": 0.5}},
                             "hovertemplate": f"{name} (held-out)<br>step %{{x}}: %{{y:.2f}}<extra></extra>"})
    for p, (found, low) in enumerate(zip(tops, floors)):
        top, bottom = max(found, default=float("inf")), min(low, default=float("inf"))
        if not (np.isfinite(top) and top > 0):
            continue
        # The KL panel starts at 0 (a KL near 0 is the collapse to look for). The −ELBO and reconstruction
        # panels start just below the curves: from 0, runs 5 nats apart at 100 nats would look the same.
        lo = 0.0 if COMPARE_PANELS[p][0] == "kl" or not np.isfinite(bottom) else \
            max(0.0, bottom - 0.15 * max(top - bottom, 0.05 * abs(top)))
        axes["yaxis" + ("" if p == 0 else str(p + 1))]["range"] = [lo, top]
        if lo > 0:
            axes["yaxis" + ("" if p == 0 else str(p + 1))].pop("rangemode", None)
    layout = {**axes, "annotations": notes, "legend": {"orientation": "h", "y": -0.22},
              "uirevision": "compare"}
    fig = lean_figure(data, layout, title, height, font_scale)
    fig.layout.margin.t = round(80 * font_scale)
    return fig


def compare_reconstructions(inputs: np.ndarray, recons: Mapping[str, np.ndarray], image_shape: Sequence[int],
                            title: str | None = "The same held-out inputs, reconstructed by each run",
                            font_scale: float = 1.0, label_chars: int = 22) -> go.Figure:
    """Rows: the inputs (N, D), then each run's reconstructions (N, D) of them, labelled by run."""
    rows = {"input": inputs}
    for name, rec in recons.items():
        label = name if len(name) <= label_chars else name[:label_chars - 1] + "…"
        while label in rows:
            label += " "
        rows[label] = rec
    return image_rows(rows, image_shape, title=title, font_scale=font_scale,
                      label_width=min(200, 8 * max(len(r) for r in rows)))


def image_rows(rows: Mapping[str, np.ndarray], image_shape: Sequence[int], title: str | None = None,
               height: int | None = None, font_scale: float = 1.0, label_width: int = 110) -> go.Figure:
    """The figure of :func:`core.figures.paired_rows`, built fast: equally long rows of images
    (e.g. "input", then one row per run) in one PNG, labelled on the left."""
    arrays = [as_images(v, image_shape) for v in rows.values()]
    n = min(len(a) for a in arrays)
    h, w = arrays[0].shape[1:]
    grid = mosaic(np.concatenate([a[:n] for a in arrays]), n)
    notes = [{"x": -0.5, "y": r * (h + 1) + h / 2 - 0.5, "xref": "x", "yref": "y", "text": str(name),
              "showarrow": False, "xanchor": "right", "font": _font(font_scale, 13)}
             for r, name in enumerate(rows)]
    # About 80 px per row: the height then binds (the image is as wide as that allows), so no blank band.
    height = height or round((50 if title else 8) * font_scale + 12 + 80 * len(arrays))
    layout = {"xaxis": _hidden_axis(), "yaxis": _hidden_axis(autorange="reversed", scaleanchor="x"),
              "annotations": notes,
              "margin": {"l": round(label_width * font_scale) + 5, "r": 5, "b": 5,
                         "t": round((50 if title else 8) * font_scale)}}
    return lean_figure([_image_trace(grid)], layout, title, height, font_scale)
