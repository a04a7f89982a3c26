"""Figures for the reparameterization page (pure: numbers in, ``go.Figure`` out).

* :func:`backward_pass_graphs`: the two computational graphs side by side, with the backward
  pass animated as Plotly frames (Play / Pause / slider, no server round trips).
* :func:`estimator_histograms`, :func:`estimate_intervals`, :func:`convergence`: the live
  experiment, fed by ``core.reparam.compare_estimators``.
* :func:`vae_posterior`, :func:`vae_gradient_bars`: one input inside a trained VAE, fed by
  ``core.reparam.vae_gradients``.

Colours: Okabe-Ito (colour-blind safe). Pathwise (reparameterization) is blue, score function
is orange, exact values are black, the gradient flowing backwards is vermillion.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.figures import OKABE_ITO, style

METHOD_COLORS = {"reparam": OKABE_ITO[0], "score": OKABE_ITO[1]}
METHOD_NAMES = {"reparam": "pathwise (reparameterization)", "score": "score function (REINFORCE)"}
PARAM_NAMES = {"dmu": "∂/∂μ", "dsigma": "∂/∂σ"}
GRAD_COLOR = OKABE_ITO[3]  # vermillion: the backward pass
FORWARD_COLOR = "#9A9A9A"
PARAM_FILL = "#CFE6F5"  # light blue: parameters (mu, sigma)
RANDOM_FILL = "#F6D7A7"  # light orange: a random (sampled) node
DET_FILL = "#CDEBDD"  # light green: a deterministic node
INPUT_FILL = "#E6E6E6"  # grey: an outside input (eps)
BLOCK_COLOR = "#000000"


def _fmt(v: float) -> str:
    """3 decimals (3 significant figures from 10^4 on); never "-0.000", never an infinity."""
    v = float(v)
    if not np.isfinite(v):
        return "n/a"
    s = f"{v:.3f}" if abs(v) < 1e4 else f"{v:.3g}"
    return s[1:] if s.startswith("-") and float(s) == 0.0 else s


def sig_figs(v: float, digits: int = 4) -> str:
    """``digits`` significant figures, never "-0" and never an infinity."""
    v = float(v)
    if not np.isfinite(v):
        return "n/a"
    s = f"{v:.{digits}g}"
    return s[1:] if s.startswith("-") and float(s) == 0.0 else s


# ---- fast figure assembly ---------------------------------------------------------------------------
# The experiment redraws on every slider move (budget: 150 ms from slider to chart). Building plotly
# objects property by property costs 100-300 ms per figure here, so these builders assemble plain
# dicts on a layout that was styled and validated once (cached), and skip the per-property
# validation. tests/test_figures_reparam.py validates every figure in full instead.

@lru_cache(maxsize=32)
def _base_layout(rows: int, cols: int, hspace: float, vspace: float, shared_x: bool, height: int) -> dict:
    """The house-styled layout (``core.figures.style``) of an empty rows x cols grid, as a dict."""
    if rows * cols == 1:
        fig = go.Figure()
    else:
        fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=hspace, vertical_spacing=vspace,
                            shared_xaxes="columns" if shared_x else False, subplot_titles=[" "] * (rows * cols))
    style(fig, None, height)
    return fig.to_dict()["layout"]


def _layout(rows: int = 1, cols: int = 1, hspace: float = 0.08, vspace: float = 0.1, shared_x: bool = False,
            height: int = 400, titles: Sequence[str] | None = None) -> dict:
    """A fresh copy of :func:`_base_layout` with the subplot titles filled in."""
    lay = copy.deepcopy(_base_layout(rows, cols, hspace, vspace, shared_x, height))
    for ann, t in zip(lay.get("annotations", []), titles or []):
        ann["text"] = t
    return lay


def _axis(i: int) -> str:
    """Suffix of subplot i (1-based, row-major): "" for the first, then "2", "3", ..."""
    return "" if i == 1 else str(i)


def _set_axis(lay: dict, kind: str, i: int, **props) -> None:
    lay.setdefault(f"{kind}axis{_axis(i)}", {}).update(props)


def _figure(data: list[dict], layout: dict, frames: list[dict] | None = None) -> go.Figure:
    """A ``go.Figure`` from plain dicts, without per-property validation (see the note above)."""
    d = {"data": data, "layout": layout}
    if frames:
        d["frames"] = frames
    return go.Figure(d, _validate=False)


# ---- the computational graphs --------------------------------------------------------------------

def _graph_specs(v: Mapping) -> list[dict]:
    """Node layout, forward edges and backward stages of both panels, labelled with the real values.

    Each node: ``xy``, marker ``sym`` and ``fill``, the letter drawn inside (``text``), the value
    label (``info``) and where it goes (``pos``: "left", "below" (down and to the right) or "above").
    """
    f_lbl = v.get("f_label", "f(z)")
    dz, dmu, dsig = v["dL_dz"], v["dL_dmu"], v["dL_dsigma"]
    z_node = dict(xy=(6.2, 3.0), text="z", pos="below")
    l_node = dict(xy=(9.2, 3.0), sym="square", fill=DET_FILL, text="L", pos="above",
                  info=f"L = {f_lbl} = {_fmt(v['f_z'])}")
    left = {
        "title": "<b>Without the trick</b>: z is sampled",
        "nodes": {
            "mu": dict(xy=(2.8, 5.6), sym="circle", fill=PARAM_FILL, text="μ", pos="left", info=f"μ = {_fmt(v['mu'])}"),
            "sigma": dict(xy=(2.8, 0.4), sym="circle", fill=PARAM_FILL, text="σ", pos="left",
                          info=f"σ = {_fmt(v['sigma'])}"),
            "z": dict(z_node, sym="circle", fill=RANDOM_FILL,
                      info=f"z ~ 𝒩(μ, σ²) → {_fmt(v['z'])}<br><i>drawn by a sampler</i>"),
            "L": l_node,
        },
        "edges": [("mu", "z", ""), ("sigma", "z", ""), ("z", "L", "")],
        # backward stages: (from, to, blocked)
        "stages": [[("L", "z", False)], [("z", "mu", True), ("z", "sigma", True)]],
        "grad_info": {"z": f"∂L/∂z = {_fmt(dz)}", "mu": "∂L/∂μ: no path", "sigma": "∂L/∂σ: no path"},
        "status": ["Forward pass done: z was sampled, L computed.",
                   f"Backward: ∂L/∂z = f′(z) = {_fmt(dz)} reaches z …",
                   "… and stops (✕): sample() has no derivative in μ or σ."],
    }
    right = {
        "title": "<b>With the trick</b>: z = μ + σ·ε",
        "nodes": {
            "mu": dict(xy=(2.8, 5.6), sym="circle", fill=PARAM_FILL, text="μ", pos="left", info=f"μ = {_fmt(v['mu'])}"),
            "sigma": dict(xy=(2.8, 3.0), sym="circle", fill=PARAM_FILL, text="σ", pos="left",
                          info=f"σ = {_fmt(v['sigma'])}"),
            "eps": dict(xy=(2.8, 0.4), sym="diamond", fill=INPUT_FILL, text="ε", pos="left",
                        info=f"ε = {_fmt(v['eps'])}<br>~ 𝒩(0, 1)<br><i>outside input:</i><br><i>no gradient</i>"),
            "z": dict(z_node, sym="square", fill=DET_FILL, info=f"z = μ + σ·ε = {_fmt(v['z'])}<br><i>deterministic</i>"),
            "L": l_node,
        },
        "edges": [("mu", "z", "∂z/∂μ = 1"), ("sigma", "z", "∂z/∂σ = ε"), ("eps", "z", ""), ("z", "L", "")],
        "stages": [[("L", "z", False)], [("z", "mu", False), ("z", "sigma", False)]],
        "grad_info": {"z": f"∂L/∂z = {_fmt(dz)}", "mu": f"∂L/∂μ = {_fmt(dmu)}", "sigma": f"∂L/∂σ = {_fmt(dsig)}"},
        "status": ["Forward pass done: ε drawn, z = μ + σ·ε computed.",
                   f"Backward: ∂L/∂z = f′(z) = {_fmt(dz)} reaches z …",
                   "… and flows on: ∂L/∂μ = ∂L/∂z·1, ∂L/∂σ = ∂L/∂z·ε."],
    }
    return [left, right]


BLOCK_AT = 0.5  # where along a blocked edge the backward pass stops
PANEL_OFFSET = 13.0  # both graphs share one coordinate system (fewer traces, so frames build fast)
_LABEL_AT = {"left": ((-0.8, 0.0), "middle left"), "below": ((-0.45, -0.72), "bottom right"),
             "above": ((0.0, 0.72), "top center")}


def _state(spec: dict, stage: int, p: float, dx: float) -> dict:
    """What is lit at backward stage ``stage`` (0 = none yet) and progress p in [0, 1] within it."""
    nodes = spec["nodes"]
    lit_x: list = []
    lit_y: list = []
    pulse_x: list = []
    pulse_y: list = []
    block_x: list = []
    block_y: list = []
    reached = {"L"} if stage >= 1 else set()
    for s, edges in enumerate(spec["stages"], start=1):
        if s > stage:
            break
        prog = 1.0 if s < stage else p
        for a, b, blocked in edges:
            (x0, y0), (x1, y1) = nodes[a]["xy"], nodes[b]["xy"]
            x0, x1 = x0 + dx, x1 + dx
            q = min(prog, BLOCK_AT) if blocked else prog
            if q > 0:
                lit_x += [x0, x0 + q * (x1 - x0), None]
                lit_y += [y0, y0 + q * (y1 - y0), None]
            if s == stage and 0 < prog < 1 and not (blocked and prog >= BLOCK_AT):
                pulse_x.append(x0 + q * (x1 - x0))
                pulse_y.append(y0 + q * (y1 - y0))
            if blocked and prog >= BLOCK_AT:
                block_x.append(x0 + BLOCK_AT * (x1 - x0))
                block_y.append(y0 + BLOCK_AT * (y1 - y0))
            if not blocked and prog >= 1:
                reached.add(b)
    return dict(lit=(lit_x, lit_y), pulse=(pulse_x, pulse_y), block=(block_x, block_y), reached=reached)


def _frame_traces(specs: list[dict], stage: int, p: float, scale: float = 1.0) -> list[dict]:
    """The six traces (plain dicts) that change during the animation, for both panels at once:
    lit backward path, moving pulses, blocked crosses, nodes, value labels, status line.
    ``scale`` scales marker and text sizes (and the label offsets with them)."""
    c: dict[str, list] = {k: [] for k in ("lx", "ly", "px", "py", "bx", "by", "nx", "ny", "nt", "nsym", "nfill",
                                          "nlc", "nlw", "ix", "iy", "it", "ipos", "sx", "sy", "st")}
    for i, spec in enumerate(specs):
        dx = i * PANEL_OFFSET
        st = _state(spec, stage, p, dx)
        c["lx"] += st["lit"][0]
        c["ly"] += st["lit"][1]
        c["px"] += st["pulse"][0]
        c["py"] += st["pulse"][1]
        c["bx"] += st["block"][0]
        c["by"] += st["block"][1]
        for k, n in spec["nodes"].items():
            x, y = n["xy"]
            hit = k in st["reached"]
            c["nx"].append(x + dx)
            c["ny"].append(y)
            c["nt"].append(f"<b>{n['text']}</b>")
            c["nsym"].append(n["sym"])
            c["nfill"].append(n["fill"])
            c["nlc"].append(GRAD_COLOR if hit else "#555555")
            c["nlw"].append(5 if hit else 1.5)
            info = n["info"]
            if k in spec["grad_info"] and (hit or (k in ("mu", "sigma") and st["block"][0])):
                info += f"<br><b><span style='color:{GRAD_COLOR}'>{spec['grad_info'][k]}</span></b>"
            (ox, oy), tpos = _LABEL_AT[n["pos"]]
            c["ix"].append(x + dx + ox * scale)
            c["iy"].append(y + oy * scale)
            c["it"].append(info)
            c["ipos"].append(tpos)
        c["sx"].append(4.9 + dx)
        c["sy"].append(7.2)
        c["st"].append(f"<i>{spec['status'][min(stage, len(spec['status']) - 1)]}</i>")
    skip = dict(type="scatter", hoverinfo="skip", showlegend=False)
    return [
        dict(skip, x=c["lx"], y=c["ly"], mode="lines", line=dict(color=GRAD_COLOR, width=6), opacity=0.85),
        dict(skip, x=c["px"], y=c["py"], mode="markers",
             marker=dict(size=18 * scale, color=GRAD_COLOR, line=dict(color="white", width=2))),
        dict(skip, x=c["bx"], y=c["by"], mode="markers",
             marker=dict(size=26 * scale, symbol="x-thin", color=BLOCK_COLOR, line=dict(width=5, color=BLOCK_COLOR))),
        dict(skip, x=c["nx"], y=c["ny"], mode="markers+text", text=c["nt"], textposition="middle center",
             textfont=dict(size=round(20 * scale), color="#111111"),
             marker=dict(size=52 * scale, symbol=c["nsym"], color=c["nfill"], line=dict(color=c["nlc"], width=c["nlw"]))),
        dict(skip, x=c["ix"], y=c["iy"], mode="text", text=c["it"], textposition=c["ipos"],
             textfont=dict(size=round(13 * scale), color="#222222")),
        dict(skip, x=c["sx"], y=c["sy"], mode="text", text=c["st"],
             textfont=dict(size=round(13 * scale), color=GRAD_COLOR)),
    ]


def _timeline(steps_per_stage: int, n_stages: int = 2) -> list[tuple[int, float]]:
    """(stage, progress) for every frame: the forward state, then each stage in steps, ending complete."""
    out = [(0, 0.0)]
    for s in range(1, n_stages + 1):
        out += [(s, k / steps_per_stage) for k in range(1, steps_per_stage + 1)]
    return out


def backward_pass_graphs(values: Mapping, steps_per_stage: int = 6, height: int = 480,
                         frame_ms: int = 180, text_scale: float = 1.0) -> go.Figure:
    """Two computational graphs of L = f(z), without and with the reparameterization trick.

    ``values``: one real forward/backward pass, the dict of ``core.reparam.one_sample_backward``
    (``mu, sigma, eps, z, f_z, dL_dz, dL_dmu, dL_dsigma``) plus an optional ``f_label``.

    Left: z is drawn by a sampler from N(mu, sigma^2); the backward pass reaches z and is blocked
    there (✕). Right: z = mu + sigma * eps with eps an outside input; the backward pass reaches mu
    and sigma. The animation (frames ``"0"`` .. ``"N"``) moves the gradient backwards edge by edge;
    the figure's own data is the final frame, so a still image (PNG, print) shows the whole story.
    ``text_scale`` enlarges the nodes and their labels (presenter mode; layout fonts are scaled by
    ``core.figures.with_font_scale``).

    Speed: both panels share one coordinate system (the right one shifted by ``PANEL_OFFSET``), so
    a frame updates six traces; the frames are plain dicts attached without plotly's per-property
    validation (the unit tests validate the whole figure instead), which keeps a slider move fast.
    """
    specs = _graph_specs(values)
    k = float(text_scale)
    ann: list[dict] = []
    # Static layer: forward edges (grey) with arrowheads, and the local derivatives on the edges.
    ex, ey = [], []
    for i, spec in enumerate(specs):
        dx = i * PANEL_OFFSET
        nd = spec["nodes"]
        for a, b, lbl in spec["edges"]:
            (x0, y0), (x1, y1) = nd[a]["xy"], nd[b]["xy"]
            x0, x1 = x0 + dx, x1 + dx
            ex += [x0, x1, None]
            ey += [y0, y1, None]
            ann.append(dict(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", showarrow=True,
                            arrowhead=2, arrowsize=1.3, arrowwidth=2, arrowcolor=FORWARD_COLOR, standoff=28 * k,
                            startstandoff=28 * k, text=""))
            if lbl:
                mx, my = x0 + 0.45 * (x1 - x0), y0 + 0.5 * (y1 - y0)
                if y0 > y1:  # a descending edge: label up and to the right of its middle
                    ann.append(dict(x=mx + 0.25, y=my + 0.3, xref="x", yref="y", text=lbl, showarrow=False,
                                    xanchor="left", font=dict(size=12, color="#555555")))
                else:  # a level edge: label just above it, nearer its start (clear of the node it enters)
                    ann.append(dict(x=x0 + 0.38 * (x1 - x0), y=my + 0.45, xref="x", yref="y", text=lbl, showarrow=False,
                                    yanchor="bottom", font=dict(size=12, color="#555555")))
        ann.append(dict(x=4.9 + dx, y=8.2, xref="x", yref="y", showarrow=False, font=dict(size=16),
                        text=spec["title"]))
    static = [dict(type="scatter", x=ex, y=ey, mode="lines", line=dict(color=FORWARD_COLOR, width=2),
                   hoverinfo="skip", showlegend=False)]
    frames = []
    for i, (stage, p) in enumerate(_timeline(steps_per_stage)):
        data = _frame_traces(specs, stage, p, k)
        frames.append(dict(name=str(i), data=data, traces=list(range(len(static), len(static) + len(data)))))
    names = [f["name"] for f in frames]
    play = dict(frame=dict(duration=frame_ms, redraw=True), transition=dict(duration=0), mode="immediate",
                fromcurrent=False)
    lay = _layout(height=height)
    lay.update(
        annotations=ann,
        shapes=[dict(type="line", x0=PANEL_OFFSET - 1.6, x1=PANEL_OFFSET - 1.6, y0=-1.0, y1=8.5, xref="x", yref="y",
                     line=dict(color="#CCCCCC", width=1))],
        updatemenus=[dict(type="buttons", direction="left", x=0.0, y=-0.02, xanchor="left", yanchor="top",
                          pad=dict(t=0, r=6), showactive=False,
                          buttons=[dict(label="▶ Play backward pass", method="animate", args=[names, play]),
                                   dict(label="⏸ Pause", method="animate",
                                        args=[[None], dict(frame=dict(duration=0, redraw=False), mode="immediate",
                                                           transition=dict(duration=0))])])],
        # The slider starts right of the buttons, with its "frame" label at its right end: at presenter font
        # sizes (``text_scale`` > 1) the buttons are wider, and a label at the left touched them.
        sliders=[dict(active=len(frames) - 1, x=0.32 if k <= 1 else 0.4, len=0.68 if k <= 1 else 0.6, y=0.0,
                      yanchor="top", pad=dict(t=0, b=0),
                      currentvalue=dict(prefix="Backward-pass frame ", font=dict(size=12), xanchor="right"),
                      steps=[dict(label=str(i), method="animate",
                                  args=[[n], dict(frame=dict(duration=0, redraw=True), mode="immediate",
                                                  transition=dict(duration=0))]) for i, n in enumerate(names)])],
        xaxis=dict(range=[-0.8 - 2.5 * (k - 1), PANEL_OFFSET + 11.2], visible=False, fixedrange=True),
        yaxis=dict(range=[-1.2, 8.6], visible=False, fixedrange=True),
        margin=dict(l=5, r=5, t=10, b=70), showlegend=False, plot_bgcolor="white",
    )
    # The figure's own data is the final frame, so a still image shows the whole story.
    return _figure(static + copy.deepcopy(frames[-1]["data"]), lay, frames)


# ---- the live experiment --------------------------------------------------------------------------

def _clip_range(arrays: Sequence[np.ndarray], exact: float, q: float = 0.5) -> tuple[float, float]:
    """A common x range covering the central (100 - 2q)% of all estimates and the exact value."""
    allv = np.concatenate([np.asarray(a, float).ravel() for a in arrays])
    lo, hi = np.percentile(allv, [q, 100 - q])
    lo, hi = min(lo, exact), max(hi, exact)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.04 * (hi - lo)
    return float(lo - pad), float(hi + pad)


def estimator_histograms(result: Mapping, bins: int = 50, height: int = 520) -> go.Figure:
    """Histograms of the per-sample estimates: columns ∂/∂μ and ∂/∂σ, rows pathwise and score function.

    ``result`` is ``core.reparam.compare_estimators(...)``. Counts are binned here (a few hundred
    numbers go to the browser, not n samples). Both rows of a column share one x range (the
    central 99% of all estimates plus the exact value) and the same bins, so the spreads compare
    directly; estimates outside the range are counted in the edge bins. Black dashed line: the exact
    gradient; pink line: the estimator's mean. Traces come per column: pathwise bar, its two lines,
    score bar, its two lines.
    """
    lay = _layout(2, 2, hspace=0.07, vspace=0.12, shared_x=True, height=height,
                  titles=[f"{METHOD_NAMES[m]}: {PARAM_NAMES[p]}" for m in ("reparam", "score") for p in ("dmu", "dsigma")])
    data: list[dict] = []
    for c, p in enumerate(("dmu", "dsigma"), start=1):
        exact = result["exact"][p]
        lo, hi = _clip_range([result["samples"][m][p] for m in ("reparam", "score")], exact)
        edges = np.linspace(lo, hi, bins + 1)
        centers = 0.5 * (edges[:-1] + edges[1:])
        for r, m in enumerate(("reparam", "score"), start=1):
            i = (r - 1) * 2 + c
            xa, ya = f"x{_axis(i)}", f"y{_axis(i)}"
            counts, _ = np.histogram(np.clip(result["samples"][m][p], lo, hi), edges)
            frac = counts / max(1, counts.sum())
            mean = result["summary"][m][p]["mean"]
            ymax = max(float(frac.max()), 1e-3) * 1.12
            data += [
                dict(type="bar", x=centers, y=frac, width=(hi - lo) / bins, marker=dict(color=METHOD_COLORS[m]),
                     name=METHOD_NAMES[m], showlegend=c == 1, xaxis=xa, yaxis=ya,
                     hovertemplate="estimate ≈ %{x:.3g}<br>%{y:.1%} of samples<extra></extra>"),
                dict(type="scatter", x=[exact, exact], y=[0, ymax], mode="lines", name="exact gradient",
                     line=dict(color="black", dash="dash", width=2), showlegend=(r, c) == (1, 1), xaxis=xa, yaxis=ya,
                     hovertemplate=f"exact {sig_figs(exact)}<extra></extra>"),
                dict(type="scatter", x=[mean, mean], y=[0, ymax], mode="lines", name="estimator mean",
                     line=dict(color=OKABE_ITO[4], width=3), showlegend=(r, c) == (1, 1), xaxis=xa, yaxis=ya,
                     hovertemplate=f"mean {sig_figs(mean)}<extra></extra>"),
            ]
            _set_axis(lay, "y", i, tickformat=".0%", rangemode="tozero",
                      # one title for both rows (two, one above the other, ran into one line at projector size)
                      title=dict(text="fraction of samples") if (r, c) == (1, 1) else None)
        _set_axis(lay, "x", 2 + c, title=dict(text=f"per-sample estimate of {PARAM_NAMES[p]} E[f(z)]"))
    # The legend sits at the bottom of the figure (container coordinates), below the x-axis titles, however many
    # rows it takes: placed in plot-area coordinates, a one-row legend (presenter mode at 1920x1080) sat on the
    # titles, and after a window resize it kept the old plot area's position.
    lay.update(barmode="overlay", bargap=0, legend=dict(orientation="h", x=0, y=0, yref="container", yanchor="bottom"),
               uirevision="rp-hist",
               margin=dict(l=10, r=10, t=45, b=10))  # room for subplot titles at presenter font sizes
    return _figure(data, lay)


def estimate_intervals(result: Mapping, height: int = 300) -> go.Figure:
    """Mean ± 2 standard errors of each estimator next to the exact gradient (dashed), one panel per parameter."""
    lay = _layout(1, 2, hspace=0.12, height=height,
                  titles=[f"{PARAM_NAMES[p]} E[f(z)]: exact {sig_figs(result['exact'][p])}" for p in ("dmu", "dsigma")])
    cats = [METHOD_NAMES[m].split(" (")[0] for m in ("score", "reparam")]
    data: list[dict] = []
    for c, p in enumerate(("dmu", "dsigma"), start=1):
        xa, ya = f"x{_axis(c)}", f"y{_axis(c)}"
        exact = result["exact"][p]
        for m in ("score", "reparam"):
            s = result["summary"][m][p]
            se = s["stderr"] if np.isfinite(s["stderr"]) else 0.0
            data.append(dict(
                type="scatter", x=[s["mean"]], y=[METHOD_NAMES[m].split(" (")[0]], mode="markers", name=METHOD_NAMES[m],
                marker=dict(size=14, color=METHOD_COLORS[m]), showlegend=False, xaxis=xa, yaxis=ya,
                error_x=dict(type="constant", value=2 * se, thickness=3, width=8, color=METHOD_COLORS[m]),
                hovertemplate=f"mean {sig_figs(s['mean'])} ± {sig_figs(2 * se, 2)} (2 s.e.)<extra></extra>"))
        data.append(dict(type="scatter", x=[exact, exact], y=cats, mode="lines", showlegend=False, xaxis=xa, yaxis=ya,
                         line=dict(color="black", dash="dash", width=2), name="exact gradient",
                         hovertemplate=f"exact {sig_figs(exact)}<extra></extra>"))
        _set_axis(lay, "x", c, title=dict(text="estimate (mean ± 2 standard errors)"))
        _set_axis(lay, "y", c, range=[-0.5, 1.5], type="category", categoryorder="array", categoryarray=cats)
    lay.update(uirevision="rp-ci")
    return _figure(data, lay)


def convergence(result: Mapping, height: int = 360) -> go.Figure:
    """Running mean ± 2 standard errors of both estimators against the number of samples n (log axis)."""
    lay = _layout(1, 2, hspace=0.08, height=height,
                  titles=[f"{PARAM_NAMES[p]} E[f(z)] as n grows" for p in ("dmu", "dsigma")])
    data: list[dict] = []
    for c, p in enumerate(("dmu", "dsigma"), start=1):
        xa, ya = f"x{_axis(c)}", f"y{_axis(c)}"
        for m in ("score", "reparam"):
            cv = result["convergence"][m][p]
            n, mean, se = cv["n"], cv["mean"], np.nan_to_num(cv["stderr"], nan=0.0)
            color = METHOD_COLORS[m]
            data += [
                dict(type="scatter", x=np.concatenate([n, n[::-1]]),
                     y=np.concatenate([mean + 2 * se, (mean - 2 * se)[::-1]]), fill="toself", fillcolor=color,
                     opacity=0.2, line=dict(width=0), hoverinfo="skip", showlegend=False,
                     name=f"{METHOD_NAMES[m]} ± 2 s.e.", xaxis=xa, yaxis=ya),
                dict(type="scatter", x=n, y=mean, mode="lines", line=dict(color=color, width=2.5),
                     name=METHOD_NAMES[m], showlegend=c == 1, xaxis=xa, yaxis=ya,
                     hovertemplate="n = %{x}<br>mean %{y:.4g}<extra></extra>"),
            ]
        exact = result["exact"][p]
        data.append(dict(type="scatter", x=[1, result["n"]], y=[exact, exact], mode="lines", name="exact gradient",
                         line=dict(color="black", dash="dash", width=2), showlegend=c == 1, xaxis=xa, yaxis=ya,
                         hovertemplate=f"exact {sig_figs(exact)}<extra></extra>"))
        _set_axis(lay, "x", c, type="log", title=dict(text="number of samples n"))
        if c == 1:
            _set_axis(lay, "y", c, title=dict(text="running mean ± 2 s.e."))
    lay.update(legend=dict(orientation="h", y=-0.25, x=0), uirevision="rp-conv")
    return _figure(data, lay)


# ---- inside the trained VAE ---------------------------------------------------------------------

def _dim_labels(k: int) -> list[str]:
    return [f"z{j + 1}" for j in range(k)]


def _dim_axis(lab: list[str], short: bool) -> dict:
    """The x-axis of a per-dimension chart: its categories named z1, z2, ... or, with ``short`` (presenter
    mode), labelled 1, 2, ... so that 16 of them at projector size do not run into each other."""
    if not short:
        return dict(title=dict(text="latent dimension"), tickangle=0, tickfont=dict(size=11))
    return dict(title=dict(text="latent dimension j (zⱼ)"), tickangle=0, tickvals=lab,
                ticktext=[str(j + 1) for j in range(len(lab))])


def vae_posterior(mu: np.ndarray, sigma: np.ndarray, eps: np.ndarray, z: np.ndarray,
                  height: int = 360) -> go.Figure:
    """q(z|x) per latent dimension: mu_j ± sigma_j (bar), the drawn z_j = mu_j + sigma_j eps_j (diamond),
    and the prior's ±1 band (grey). Hover shows eps_j."""
    mu, sigma, eps, z = (np.asarray(a, float).ravel() for a in (mu, sigma, eps, z))
    lab = _dim_labels(len(mu))
    lay = _layout(height=height)
    data = [
        dict(type="scatter", x=lab, y=mu, mode="markers", name="μⱼ ± σⱼ (the encoder's q(zⱼ|x))",
             marker=dict(size=10, color=OKABE_ITO[0]),
             error_y=dict(type="data", array=sigma, thickness=3, width=6, color=OKABE_ITO[0]),
             customdata=np.stack([sigma, eps], 1),
             hovertemplate="%{x}: μ = %{y:.3f}, σ = %{customdata[0]:.3f}<extra></extra>"),
        dict(type="scatter", x=lab, y=z, mode="markers", name="zⱼ = μⱼ + σⱼ·εⱼ (one draw)",
             marker=dict(size=12, symbol="diamond", color=OKABE_ITO[3], line=dict(color="white", width=1)),
             customdata=eps, hovertemplate="%{x}: z = %{y:.3f} (ε = %{customdata:.3f})<extra></extra>"),
        dict(type="scatter", x=[None], y=[None], mode="markers", name="prior N(0, 1): ±1 band",
             marker=dict(size=12, symbol="square", color="#CCCCCC")),
    ]
    lay.update(shapes=[dict(type="rect", xref="paper", x0=0, x1=1, yref="y", y0=-1, y1=1, fillcolor="#DDDDDD",
                            opacity=0.45, line=dict(width=0), layer="below")],
               yaxis=dict(title=dict(text="latent value"), zeroline=True, zerolinecolor="#999"),
               xaxis=dict(title=dict(text="latent dimension")),
               legend=dict(orientation="h", y=-0.3, x=0), uirevision="rp-post")
    return _figure(data, lay)


def vae_gradient_bars(g: Mapping, height: int = 380, short_ticks: bool = False) -> go.Figure:
    """∂L/∂μ_j and ∂L/∂logvar_j as stacked bars of their two parts (reconstruction, β·KL), with the
    total from backpropagation of the whole loss as a black diamond. ``g`` is ``vae_gradients(...)``
    for one draw of eps. ``short_ticks``: dimensions labelled 1, 2, ... (presenter mode, see ``_dim_axis``)."""
    lab = _dim_labels(len(np.ravel(g["mu"])))
    lay = _layout(1, 2, hspace=0.08, height=height, titles=["∂L/∂μⱼ", "∂L/∂logσⱼ²  (∂L/∂logvarⱼ)"])
    data: list[dict] = []
    for c, (rec, kl, tot) in enumerate((("drecon_dmu", "dkl_dmu", "dL_dmu"),
                                        ("drecon_dlogvar", "dkl_dlogvar", "dL_dlogvar")), start=1):
        xa, ya = f"x{_axis(c)}", f"y{_axis(c)}"
        data += [
            dict(type="bar", x=lab, y=np.ravel(g[rec]), name="reconstruction part", marker=dict(color=OKABE_ITO[0]),
                 showlegend=c == 1, xaxis=xa, yaxis=ya, hovertemplate="%{x}: %{y:.3f}<extra>reconstruction</extra>"),
            dict(type="bar", x=lab, y=np.ravel(g[kl]), name="β·KL part", marker=dict(color=OKABE_ITO[1]),
                 showlegend=c == 1, xaxis=xa, yaxis=ya, hovertemplate="%{x}: %{y:.3f}<extra>β·KL</extra>"),
            dict(type="scatter", x=lab, y=np.ravel(g[tot]), mode="markers", name="total (backprop of L)",
                 marker=dict(symbol="diamond", size=10, color="black"), showlegend=c == 1, xaxis=xa, yaxis=ya,
                 hovertemplate="%{x}: %{y:.3f}<extra>total</extra>"),
        ]
        _set_axis(lay, "x", c, **_dim_axis(lab, short_ticks))
    _set_axis(lay, "y", 1, title=dict(text="gradient"))
    lay.update(barmode="relative", legend=dict(orientation="h", y=-0.3, x=0), uirevision="rp-grad",
               margin=dict(l=10, r=10, t=45, b=10))  # room for subplot titles at presenter font sizes
    return _figure(data, lay)


# ---- the estimator race on a real VAE ------------------------------------------------------------

RACE_COLORS = {"pathwise": OKABE_ITO[0], "score": OKABE_ITO[1], "score_loo": OKABE_ITO[4]}


def race_ratio_bars(race: Mapping, height: int = 380, short_ticks: bool = False) -> go.Figure:
    """Per-dimension variance ratios var(score) / var(pathwise) on a log axis, one panel for ∂/∂μⱼ and one
    for ∂/∂σⱼ; bars for the plain score function and for the one with a leave-one-out baseline.
    ``race`` is ``core.reparam.vae_estimator_race(...)``. A dashed line marks a ratio of 1. ``short_ticks``: as in
    :func:`vae_gradient_bars`."""
    k = int(race["K"])
    lab = _dim_labels(k)
    names = {"score": "score function", "score_loo": "score function − leave-one-out baseline"}
    lay = _layout(1, 2, hspace=0.08, height=height,
                  titles=["variance ratio for ∂/∂μⱼ", "variance ratio for ∂/∂σⱼ"])
    data: list[dict] = []
    top = 1.0
    for c, p in enumerate(("dmu", "dsigma"), start=1):
        xa, ya = f"x{_axis(c)}", f"y{_axis(c)}"
        for m in ("score", "score_loo"):
            r = np.asarray(race["ratio"][m][p], dtype=float)
            top = max(top, float(np.nanmax(r)))
            data.append(dict(type="bar", x=lab, y=r, name=names[m], marker=dict(color=RACE_COLORS[m]),
                             showlegend=c == 1, xaxis=xa, yaxis=ya,
                             hovertemplate="%{x}: variance ratio %{y:,.0f}×<extra>" + names[m] + "</extra>"))
        data.append(dict(type="scatter", x=[lab[0], lab[-1]], y=[1, 1], mode="lines", name="ratio 1 (equal variance)",
                         line=dict(color="black", dash="dash", width=1.5), showlegend=c == 1, xaxis=xa, yaxis=ya,
                         hoverinfo="skip"))
        _set_axis(lay, "x", c, **_dim_axis(lab, short_ticks))
        _set_axis(lay, "y", c, type="log", range=[-0.3, np.log10(top) + 0.3], dtick=1, exponentformat="power")
    _set_axis(lay, "y", 1, title=dict(text="var(score) / var(pathwise)"))
    for c in (1, 2):
        _set_axis(lay, "y", c, range=[-0.3, np.log10(top) + 0.3])
    lay.update(barmode="group", legend=dict(orientation="h", y=-0.25, x=0), uirevision="rp-race",
               margin=dict(l=10, r=10, t=45, b=10))  # room for subplot titles at presenter font sizes
    return _figure(data, lay)


def training_race_curves(train: Mapping, height: int = 360) -> go.Figure:
    """The negative ELBO (nats per image) of each training run against the step, side by side with a shared
    y axis. ``train`` is ``core.reparam.encoder_training_race(...)``."""
    methods = list(train["methods"])
    titles = {"pathwise": "pathwise (reparameterization)", "score": "score function",
              "score_loo": "score function − baseline"}
    lay = _layout(1, len(methods), hspace=0.06, height=height, titles=[titles[m] for m in methods])
    steps = np.asarray(train["eval_step"])
    allv = np.concatenate([np.asarray(train["curves"][m], float) for m in methods])
    lo, hi = float(allv.min()), float(allv.max())
    data: list[dict] = []
    for c, m in enumerate(methods, start=1):
        xa, ya = f"x{_axis(c)}", f"y{_axis(c)}"
        for other in methods:  # every run, faint, so each panel compares; its own run bold
            own = other == m
            data.append(dict(type="scatter", x=steps, y=np.asarray(train["curves"][other], float),
                             mode="lines+markers" if own else "lines", name=titles[other],
                             line=dict(color=RACE_COLORS[other], width=3 if own else 1.5, dash=None if own else "dot"),
                             opacity=1.0 if own else 0.45, showlegend=False, xaxis=xa, yaxis=ya,
                             hovertemplate="step %{x}: −ELBO %{y:.1f} nats<extra>" + titles[other] + "</extra>"))
        _set_axis(lay, "x", c, title=dict(text="training step"))
        _set_axis(lay, "y", c, range=[lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)])
    _set_axis(lay, "y", 1, title=dict(text="−ELBO (nats per image)"))
    lay.update(uirevision="rp-train",
               margin=dict(l=10, r=10, t=45, b=10))  # room for subplot titles at presenter font sizes
    return _figure(data, lay)
