"""Figures for "How an autoencoder works": the animated network diagram and the anomaly histogram.

:func:`diagram_figure` turns a :class:`core.diagram.Diagram` (real activations of a real
model for one input) into a Plotly figure whose ``frames`` replay the forward pass stage by
stage in the browser: input -> encoder layers -> bottleneck -> decoder layers -> output,
then the reconstruction beside the input with the per-pixel error. Play, Pause, slow/fast
play buttons and a frame slider drive it; no server round trips.

Colours are colour-blind safe (Okabe & Ito 2008): blue for positive values and weights,
vermillion for negative ones, white for zero; images are greyscale, the error map uses
cividis (Nuñez et al. 2018), made for colour-vision deficiencies.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from core.diagram import Diagram, DiagramLayer
from core.figures import FONT, OKABE_ITO, style

POS, NEG = OKABE_ITO[0], OKABE_ITO[3]  # blue, vermillion
DIVERGING = [[0.0, NEG], [0.5, "#F7F7F7"], [1.0, POS]]
GREY_IMAGE = [[0.0, "#000000"], [1.0, "#FFFFFF"]]  # 0 = black, 1 = white, as in the other pages
PENDING = "#E4E4E4"
HIGHLIGHT = "rgba(240, 228, 66, 0.30)"  # Okabe-Ito yellow, the layer being computed now
STRENGTH = ((0.0, 0.7, 0.35), (1 / 3, 1.5, 0.6), (2 / 3, 2.6, 0.9))  # (|w|/max from, line width, opacity)
SPEEDS = {"▶ Play": 1100, "▶ Slow (×0.5)": 2200, "▶ Fast (×2)": 550}  # ms per step
SHORT = {"input": "input", "mu, sigma": "μ, σ", "eps": "ε", "z": "z", "output": "output", "compare": "compare"}


def _short(name: str) -> str:
    if name.startswith("encoder "):
        return "enc " + name.split()[-1]
    if name.startswith("decoder "):
        return "dec " + name.split()[-1]
    return SHORT.get(name, name)


def _hover(d: Diagram, layer: DiagramLayer) -> list[str]:
    h, w = d.image_shape
    out = []
    for u, v in zip(layer.shown, layer.shown_values):
        if layer.key in ("input", "output"):
            what = f"pixel {int(u)} (row {int(u) // w + 1}, col {int(u) % w + 1})"
        else:
            what = f"unit {int(u) + 1} of {layer.width}"
        out.append(f"{layer.title}, {what}<br>value {v:.3g}")
    return out


def _node_traces(d: Diagram, s: int, compact: bool = False) -> list[dict]:
    traces = []
    for n, layer in enumerate(d.layers):
        done = layer.stage <= s
        big = layer.key in ("mu", "sigma", "eps", "z")
        marker = dict(size=15 if big else 11, line=dict(color="#444444", width=1))
        if done:
            marker.update(color=layer.shown_values, colorscale=DIVERGING, cmin=-layer.scale, cmax=layer.scale,
                          cmid=0.0 if layer.key not in ("input", "output") else None)
            text = _hover(d, layer)
        else:
            marker.update(color=[PENDING] * len(layer.shown))
            text = [f"{layer.title}: not computed yet"] * len(layer.shown)
        if n == 0:
            marker.update(showscale=True, colorbar=dict(
                title=dict(text="value" if compact else "value<br>(each layer<br>scaled to<br>its max |a|)", side="top"),
                tickvals=[-1, 0, 1], ticktext=["−max", "0", "+max"], x=0.005, xanchor="left",
                y=0.14, yanchor="middle", len=0.26, thickness=14))
        traces.append(dict(type="scatter", x=np.full(len(layer.shown), layer.x), y=layer.y, mode="markers",
                                 marker=marker, text=text, hoverinfo="text", name=layer.label,
                                 showlegend=False, xaxis="x", yaxis="y", cliponaxis=False))
    return traces


def _segments(d: Diagram, edges) -> tuple[np.ndarray, np.ndarray]:
    """Line segments (x0, x1, NaN, ...) and (y0, y1, NaN, ...) for the selected edges, float32
    (NaN breaks the line, and float32 keeps the frames small)."""
    xs, ys = [], []
    for e, sel in edges:
        a, b = d.layers[e.src], d.layers[e.dst]
        i, j = e.i[sel], e.j[sel]
        k = len(i)
        xs.append(np.column_stack([np.full(k, a.x), np.full(k, b.x), np.full(k, np.nan)]).reshape(-1))
        ys.append(np.column_stack([a.y[i], b.y[j], np.full(k, np.nan)]).reshape(-1))
    if not xs:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.float32)


def _edge_traces(d: Diagram, s: int) -> list[dict]:
    traces = []
    linear = [e for e in d.edges if e.kind == "linear"]
    for sign, colour, name in ((1, POS, "weight > 0"), (-1, NEG, "weight < 0")):
        for b, (lo, width, opacity) in enumerate(STRENGTH):
            hi = STRENGTH[b + 1][0] if b + 1 < len(STRENGTH) else np.inf
            sel = []
            for e in linear:
                if e.stage > s or len(e.w) == 0:
                    continue
                r = np.abs(e.w) / max(np.abs(e.w).max(), 1e-12)
                sel.append((e, (np.sign(e.w) == sign) & (r >= lo) & (r < hi if b + 1 < len(STRENGTH) else True)))
            xs, ys = _segments(d, sel)
            traces.append(dict(type="scatter", x=xs, y=ys, mode="lines", line=dict(color=colour, width=width),
                                     opacity=opacity, hoverinfo="skip", name=name, legendgroup=name,
                                     showlegend=b == len(STRENGTH) - 1, xaxis="x", yaxis="y"))
    elem = [(e, np.ones(len(e.i), bool)) for e in d.edges if e.kind == "elementwise" and e.stage <= s]
    xs, ys = _segments(d, elem)
    traces.append(dict(type="scatter", x=xs, y=ys, mode="lines", line=dict(color="#555555", width=1.4, dash="dot"),
                             hoverinfo="skip", name="element by element: z = μ + σ·ε",
                             showlegend=d.kind == "vae", xaxis="x", yaxis="y"))
    return traces


def _pending_edges_trace(d: Diagram, s: int) -> dict:
    """The drawn edges not reached by stage ``s``, in light grey, beneath the rest. Only those: at the last
    stage, where the figure opens, it is empty, so the browser draws each edge once, not twice (issue 21:
    the edges are most of the diagram's drawing time, and the page must draw within 1.5 s)."""
    xs, ys = _segments(d, [(e, np.ones(len(e.i), bool)) for e in d.edges if e.stage > s])
    return dict(type="scatter", x=xs, y=ys, mode="lines", line=dict(color=PENDING, width=0.8), hoverinfo="skip",
                      name="not reached yet", showlegend=False, xaxis="x", yaxis="y")


def _image(z: np.ndarray | None, shape, axis: int, colorscale=GREY_IMAGE, name: str = "", colorbar=None,
           zmax: float = 1.0) -> dict:
    h, w = shape
    # A blank panel is a single transparent (NaN) cell: it keeps the frames small.
    img = np.full((1, 1), np.nan, np.float32) if z is None else np.asarray(z, dtype=np.float32).reshape(h, w)
    return dict(type="heatmap", z=img, colorscale=colorscale, zmin=0.0, zmax=zmax, showscale=colorbar is not None,
                      colorbar=colorbar, xaxis=f"x{axis}", yaxis=f"y{axis}", name=name,
                      hovertemplate=f"{name}<br>row %{{y}}, col %{{x}}: %{{z:.3f}}<extra></extra>",
                      xgap=0, ygap=0)


def _image_traces(d: Diagram, s: int) -> list[dict]:
    out_stage = next(i for i, st in enumerate(d.stages) if st.name == "output")
    compare = s >= len(d.stages) - 1
    err_bar = dict(title=dict(text="|x − x̂|", side="top"), x=0.71, xanchor="left", y=0.135,
                   yanchor="middle", len=0.26, thickness=14, tickvals=[0, 0.5, 1])
    return [
        _image(d.x, d.image_shape, 2, name="input x"),
        _image(d.recon if s >= out_stage else None, d.image_shape, 3, name="output x̂"),
        _image(d.x if compare else None, d.image_shape, 4, name="input x"),
        _image(d.recon if compare else None, d.image_shape, 5, name="reconstruction x̂"),
        _image(d.error if compare else None, d.image_shape, 6, colorscale="Cividis", name="error |x − x̂|",
               colorbar=err_bar if compare else None),
    ]


def _traces(d: Diagram, s: int, compact: bool = False) -> list:
    return _edge_traces(d, s) + _node_traces(d, s, compact) + _image_traces(d, s)


def _x_range(d: Diagram) -> tuple[float, float]:
    xs = [layer.x for layer in d.layers]
    return min(xs) - 0.45, max(xs) + 0.45


BOTTOM = {4: [0.17, 0.32], 5: [0.36, 0.51], 6: [0.55, 0.70]}  # paper x of the compare row's panels
BOTTOM_Y = [0.0, 0.27]
CONTROLS_PAD = 26  # px between the plot area's top and the controls (room for the legend and edge note)


def _stage_layout(d: Diagram, s: int, compact: bool = False) -> dict:
    """Title, annotations and shapes for stage ``s``. Every stage has the same number of
    annotations and shapes (unused ones invisible): Plotly merges frame layouts item by item."""
    stage = d.stages[s]
    compare = s >= len(d.stages) - 1
    ann = []
    for layer in d.layers:
        done = layer.stage <= s
        # Narrow labels (the columns are close together on a projector): name, width, and how many shown.
        lines = [f"<b>{layer.title}</b>", str(layer.width)]
        if layer.subsampled and not compact:
            lines.append(f"({len(layer.shown)} shown)")
        ann.append(dict(x=layer.x, y=float(layer.y.max()) + 0.025, xref="x", yref="y",
                        text="<br>".join(lines), showarrow=False, yanchor="bottom",
                        font=dict(color="#222222" if done else "#9A9A9A"),
                        bgcolor="rgba(255,255,255,0.85)"))
    enc = [layer.x for layer in d.layers if layer.key.startswith("encoder ")]
    dec = [layer.x for layer in d.layers if layer.key.startswith("decoder ")]
    mid = [layer.x for layer in d.layers if layer.key in ("mu", "sigma", "eps", "z")]
    for xs, name, what in ((enc, "ENCODER", "compresses"), (mid, "BOTTLENECK", "the code"),
                           (dec, "DECODER", "rebuilds")):
        ann.append(dict(x=(min(xs) + max(xs)) / 2, y=-0.035, xref="x", yref="y",
                        text=f"<b>{name}</b>" if compact else f"<b>{name}</b><br>{what}",
                        showarrow=False, yanchor="top", font=dict(color="#444444")))
    out_done = s >= len(d.stages) - 2
    ann += [dict(x=0.5, y=1.0, xref="x2 domain", yref="y2 domain", text="<b>input x</b>", showarrow=False,
                 yanchor="bottom", font=dict(color="#222222")),
            dict(x=0.5, y=1.0, xref="x3 domain", yref="y3 domain", text="<b>output x̂</b>", showarrow=False,
                 yanchor="bottom", font=dict(color="#222222" if out_done else "#9A9A9A"))]
    ann.append(dict(x=0.11, y=0.99, xref="paper", yref="paper", xanchor="left", yanchor="bottom", showarrow=False,
                    text=f"Edges: the {d.edges_per_node} strongest weights into each node; thicker = larger |w|",
                    font=dict(color="#444444"), visible=not compact))
    for ax, text in ((4, "input x"), (5, "reconstruction x̂"), (6, "error |x − x̂|")):
        ann.append(dict(x=0.5, y=1.0, xref=f"x{ax} domain", yref=f"y{ax} domain", text=f"<b>{text}</b>",
                        showarrow=False, yanchor="bottom", visible=compare, font=dict(color="#222222")))
    loss = "BCE" if d.meta.get("likelihood", "bernoulli") == "bernoulli" else "½‖x − x̂‖²"
    ann.append(dict(x=0.78, y=BOTTOM_Y[1] / 2, xref="paper", yref="paper", xanchor="left", yanchor="middle",
                    align="left", showarrow=False, visible=compare, font=dict(color="#222222"),
                    text=(f"<b>Reconstruction<br>error</b><br>{loss}: {d.bce:.1f} nats<br>"
                          f"MSE: {d.mse:.4f}<br>per pixel")))
    shapes = [dict(type="rect", xref="x", yref="y", x0=layer.x - 0.22, x1=layer.x + 0.22,
                   y0=float(layer.y.min()) - 0.03, y1=float(layer.y.max()) + 0.03, fillcolor=HIGHLIGHT,
                   line=dict(width=0), layer="below", visible=layer.stage == s) for layer in d.layers]
    shapes.append(dict(type="rect", xref="paper", yref="paper", x0=0.15, x1=0.99, y0=BOTTOM_Y[0] - 0.01,
                       y1=BOTTOM_Y[1] + 0.05, fillcolor=HIGHLIGHT, line=dict(width=0), layer="below",
                       visible=compare))
    title = (f"<b>Step {s + 1} of {len(d.stages)}: {stage.title}</b>"
             f"<br><span style='font-size:0.9em'>{stage.formula}</span>")
    return dict(title=dict(text=title, x=0.01, xanchor="left", yref="container", y=0.975, yanchor="top"),
                annotations=ann, shapes=shapes)


def _play_args(duration: int) -> list:
    return [None, {"frame": {"duration": duration, "redraw": True}, "fromcurrent": True,
                   "transition": {"duration": 0}, "mode": "immediate"}]


def diagram_figure(d: Diagram, height: int = 820, font_size: int = FONT["size"], start: int | None = None,
                   shown_font: float | None = None, compact: bool = False) -> go.Figure:
    """The animated forward pass of ``d`` (see the module docstring). The figure opens on stage
    ``start`` (default: the last, the whole network); Play replays it from the input. Every
    text inherits ``font_size`` (no text sets its own size), so scaling the layout font scales
    them all, in every frame. ``shown_font``: the size the text will be drawn at, when the caller
    scales the fonts afterwards (presenter mode); the top margin, which holds the title and the
    controls, is sized for it. ``compact`` (presenter mode, a short figure): no legend and no edge note
    (the page's caption says both), layer labels without "(32 shown)", one-word part labels."""
    n = len(d.stages)
    last = n - 1 if start is None else int(np.clip(start, 0, n - 1))
    # Top margin: the two-line title, then the controls' row (slider's current value, rail and step labels),
    # then the legend and the edge note just above the plot area; all in pixels, scaled with the font.
    fs = shown_font or font_size
    pad = 8 if compact else CONTROLS_PAD
    top = int(round(3.0 * fs + 2 + 5.6 * fs + pad))
    # Traces, frames and layout are built as plain dicts and validated once by go.Figure:
    # building hundreds of graph objects one by one takes seconds.
    data = [_pending_edges_trace(d, last), *_traces(d, last, compact)]
    frames = [dict(data=[_pending_edges_trace(d, s), *_traces(d, s, compact)], traces=list(range(len(data))),
                   name=st.name, layout=_stage_layout(d, s, compact)) for s, st in enumerate(d.stages)]
    lo, hi = _x_range(d)
    h, w = d.image_shape
    axes = {}
    domains = {2: ([0.0, 0.08], [0.52, 0.8]), 3: ([0.92, 1.0], [0.52, 0.8]),
               **{k: (dx, BOTTOM_Y) for k, dx in BOTTOM.items()}}
    for k, (dx, dy) in domains.items():
        axes[f"xaxis{k}"] = dict(visible=False, constrain="domain", domain=dx, anchor=f"y{k}", range=[-0.5, w - 0.5],
                                 fixedrange=True)
        axes[f"yaxis{k}"] = dict(visible=False, constrain="domain", domain=dy, anchor=f"x{k}", range=[h - 0.5, -0.5],
                                 scaleanchor=f"x{k}", fixedrange=True)
    steps = [dict(method="animate", label=_short(st.name),
                  args=[[st.name], {"mode": "immediate", "frame": {"duration": 0, "redraw": True},
                                    "transition": {"duration": 0}}]) for st in d.stages]
    pause = [[None], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate", "transition": {"duration": 0}}]
    buttons = [dict(label=list(SPEEDS)[0], method="animate", args=_play_args(SPEEDS["▶ Play"])),
               dict(label="❚❚ Pause", method="animate", args=pause),
               *[dict(label=k, method="animate", args=_play_args(v)) for k, v in list(SPEEDS.items())[1:]]]
    layout = dict(
        xaxis=dict(domain=[0.09, 0.91], range=[lo, hi], visible=False, fixedrange=True),
        yaxis=dict(domain=[0.38, 0.97] if compact else [0.36, 0.93], range=[-0.1, 1.19], visible=False,
                   fixedrange=True),
        **axes,
        # No legend title: a wide legend would make Plotly widen the margins and shrink the plot.
        legend=dict(orientation="h", x=0.11, y=0.935, xanchor="left", yanchor="bottom"), showlegend=not compact,
        hovermode="closest", height=height, template="plotly_white", font=dict(FONT, size=font_size, color="#222222"),
        # The controls (▶ Play and the step slider) sit at the top, under the title, so they are on screen
        # as soon as the figure is (issue 21: at the bottom they were some 1,500 px down the page).
        margin=dict(l=10, r=10, t=top, b=20),
        updatemenus=[dict(type="buttons", direction="left", showactive=False, x=0.0, y=1.0, xanchor="left",
                          yanchor="bottom", pad=dict(t=0, r=6, b=pad + 12), buttons=buttons)],
        sliders=[dict(active=last, steps=steps, x=0.47, len=0.51, y=1.0, yanchor="bottom",
                      pad=dict(t=0, b=pad), currentvalue=dict(prefix="step: "))],
        **_stage_layout(d, last, compact),
    )
    return go.Figure(dict(data=data, layout=layout, frames=frames))


def image_strip(images: np.ndarray, image_shape: Sequence[int], px: int = 112, gap: int = 4) -> np.ndarray:
    """Greyscale images (n, D) in [0, 1] side by side as one uint8 picture (0 black, 255 white), each
    enlarged by an integer factor (nearest neighbour, so pixels stay sharp) to about ``px`` pixels high,
    ``gap`` white pixels apart. For ``st.image``: a picture costs the browser far less than a Plotly chart,
    where hovering adds nothing (issue 21: pages draw within 1.5 s)."""
    h, w = (int(v) for v in image_shape)
    imgs = np.clip(np.asarray(images, dtype=np.float64).reshape(-1, h, w), 0.0, 1.0)
    k = max(1, int(round(px / h)))
    big = np.kron(imgs, np.ones((1, k, k)))
    n = len(big)
    out = np.full((h * k, n * w * k + (n - 1) * gap), 1.0)
    for i, im in enumerate(big):
        out[:, i * (w * k + gap): i * (w * k + gap) + w * k] = im
    return np.round(out * 255).astype(np.uint8)


def frame_node_colors(fig: go.Figure, frame: int | None = None) -> dict[str, list]:
    """The node colours per layer label in the figure (``frame`` None: the figure's own data)."""
    data = fig.data if frame is None else fig.frames[frame].data
    return {t.name: t.marker.color for t in data if isinstance(t, go.Scatter) and t.mode == "markers"}


def _log_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    vals, text = [], []
    for e in range(int(np.floor(lo)) - 1, int(np.ceil(hi)) + 1):
        for m in (1, 2, 5):
            v = np.log10(m) + e
            if lo - 0.05 <= v <= hi + 0.05:
                vals.append(float(v))
                text.append(f"{m * 10.0 ** e:g}")
    return vals, text


def error_histogram(errors: np.ndarray, marks: Sequence[tuple[str, float]], threshold: float,
                    title: str | None = None, height: int = 360) -> go.Figure:
    """Histogram of held-out reconstruction errors (log scale) with vertical markers for given
    inputs (label, error) and the anomaly threshold."""
    e = np.log10(np.maximum(np.asarray(errors, dtype=np.float64), 1e-6))
    vals = [np.log10(max(v, 1e-6)) for _, v in marks] + [np.log10(threshold)]
    lo, hi = min(e.min(), *vals) - 0.1, max(e.max(), *vals) + 0.15
    fig = go.Figure(go.Histogram(x=e, nbinsx=40, marker=dict(color="#999999", line=dict(color="#666666", width=0.5)),
                                 name="held-out images", hovertemplate="%{y} images<extra></extra>"))
    t = np.log10(threshold)
    fig.add_vline(x=t, line=dict(color="#000000", dash="dash", width=1.5))
    fig.add_annotation(x=t, y=1.0, yref="paper", text="flag above<br>(99th percentile)", showarrow=False,
                       xanchor="left", yanchor="top", font=dict(size=12), xshift=4)
    colours = [OKABE_ITO[0], OKABE_ITO[1], OKABE_ITO[3], OKABE_ITO[4], OKABE_ITO[2]]
    for k, (label, v) in enumerate(marks):
        c = colours[k % len(colours)]
        x = float(np.log10(max(v, 1e-6)))
        fig.add_trace(dict(type="scatter", x=[x, x], y=[0, 1], yaxis="y2", mode="lines", line=dict(color=c, width=3),
                                 name=f"{label}: {v:.3g}", hovertemplate=f"{label}: {v:.4f}<extra></extra>"))
    tv, tt = _log_ticks(lo, hi)
    fig.update_xaxes(title="reconstruction error (mean squared error per pixel, log scale)", range=[lo, hi],
                     tickvals=tv, ticktext=tt)
    fig.update_yaxes(title="held-out images")
    fig.update_layout(yaxis2=dict(overlaying="y", range=[0, 1], visible=False, fixedrange=True),
                      legend=dict(orientation="h", y=-0.3, x=0), bargap=0.05)
    return style(fig, title, height)


__all__ = ["diagram_figure", "error_histogram", "frame_node_colors", "image_strip"]
