"""Figures for the "Limits of VAEs" page (pure builders: numbers in, ``go.Figure`` out).

The numbers come from ``core.limits``; nothing here computes model outputs.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.figures import OKABE_ITO, image_grid, latent_scatter, style

VARIANT_LABELS = {"": "plain", "warmup": "KL warm-up", "freebits": "free bits"}
VARIANT_COLORS = {"": OKABE_ITO[3], "warmup": OKABE_ITO[1], "freebits": OKABE_ITO[2]}
VARIANT_SYMBOLS = {"": "circle", "warmup": "diamond", "freebits": "square"}
HOLE_COLOR = "#D55E00"


def beta_label(beta: float) -> str:
    return f"{beta:g}"


# ---- blur ------------------------------------------------------------------------------------

def sharpness_vs_beta(summary: Sequence[Mapping], betas: Sequence[float], measure: str, measure_label: str,
                      selected_beta: float | None = None, height: int = 380) -> go.Figure:
    """Mean sharpness (± 1 standard error) of VAE reconstructions and prior samples across the
    beta sweep (categorical x), with the real images and AE reconstructions as reference lines."""
    def row(src):
        for r in summary:
            if r["source"] == src and r["measure"] == measure:
                return r
        raise KeyError(src)

    xs = [beta_label(b) for b in betas]
    fig = go.Figure()
    for src, name, color, dash in (("original", "real images", "#000000", "solid"),
                                   ("ae", "AE reconstructions", OKABE_ITO[2], "dot")):
        r = row(src)
        fig.add_trace(go.Scatter(x=xs, y=[r["mean"]] * len(xs), mode="lines", name=name,
                                 line=dict(color=color, dash=dash, width=2.5),
                                 hovertemplate=f"{name}: %{{y:.4f}}<extra></extra>"))
    for kind, name, color, dash, symbol in (("vae", "VAE reconstructions", OKABE_ITO[0], "solid", "circle"),
                                            ("sample", "VAE prior samples", OKABE_ITO[3], "dash", "diamond")):
        rows = [row(f"{kind}_{b:g}") for b in betas]
        fig.add_trace(go.Scatter(
            x=xs, y=[r["mean"] for r in rows], name=name, mode="lines+markers",
            error_y=dict(type="data", array=[r["sem"] for r in rows], visible=True, thickness=1.2),
            line=dict(color=color, dash=dash, width=2.5), marker=dict(size=9, symbol=symbol),
            hovertemplate=f"β=%{{x}}<br>{name}: %{{y:.4f}}<extra></extra>"))
    if selected_beta is not None:
        fig.add_vrect(x0=xs.index(beta_label(selected_beta)) - 0.35, x1=xs.index(beta_label(selected_beta)) + 0.35,
                      fillcolor="#999999", opacity=0.15, line_width=0, layer="below")
    fig.update_xaxes(title="β (weight of the KL term)", type="category")
    fig.update_yaxes(title=measure_label, rangemode="tozero")
    fig.update_layout(legend=dict(orientation="h", y=-0.22), hovermode="x unified")
    return style(fig, f"{measure_label}: higher is sharper (± 1 standard error)", height)


# ---- over-regularisation ---------------------------------------------------------------------

def _merge_labels(points: Sequence[Mapping]) -> list[tuple[float, float, str]]:
    """Points that sit on top of each other (e.g. several collapsed models) share one label."""
    groups: dict[tuple[float, float], list[str]] = {}
    for p in points:
        key = (round(float(p["rate"]), 2), round(float(p["distortion"]), 2))
        groups.setdefault(key, []).append(beta_label(p["beta"]))
    return [(r, d, "β=" + ", ".join(bs)) for (r, d), bs in groups.items()]


# Conservative size of the rate-distortion plot area and its label text, in pixels: the chart sits in
# a 3/5 column (about 560 px wide at a 1400 px window) and presenter mode scales fonts up to ~1.35x.
RD_PLOT_PX = (440.0, 290.0)
RD_LABEL_FONT = 12
_CHAR_PX = 0.62  # average glyph width / font size (sans-serif digits and "β=,")
_MARKER_PX = 12.0  # half-size of a marker box (the "lowest −ELBO" ring is 22 px wide)


def _segment_hits_box(seg, box, margin: float = 1.5) -> bool:
    """Whether the segment ((x0, y0), (x1, y1)) passes through ``box`` (x0, y0, x1, y1) grown by
    ``margin`` px: Liang-Barsky clipping of the segment's parameter t in [0, 1] to the box."""
    (ax, ay), (bx, by) = seg
    dx, dy = bx - ax, by - ay
    lo, hi = 0.0, 1.0
    for p, q in ((-dx, ax - (box[0] - margin)), (dx, (box[2] + margin) - ax),
                 (-dy, ay - (box[1] - margin)), (dy, (box[3] + margin) - ay)):
        if p == 0:
            if q < 0:
                return False
            continue
        t = q / p
        if p < 0:
            lo = max(lo, t)
        else:
            hi = min(hi, t)
        if lo > hi:
            return False
    return True


def label_boxes(anchors_px: Sequence[tuple[float, float]], texts: Sequence[str], font_px: float,
                obstacles_px: Sequence[tuple[float, float]] = (), plot_px: tuple[float, float] = RD_PLOT_PX,
                lines_px: Sequence[tuple[tuple[float, float], tuple[float, float]]] = (),
                ) -> list[tuple[float, float, float, float] | None]:
    """Greedy placement of text labels next to their points so that no two overlap.

    ``anchors_px``: (x, y) of each labelled point in plot pixels (y up); ``obstacles_px``: other
    markers to keep clear of; ``lines_px``: line segments ((x0, y0), (x1, y1)) no label may cross
    (the chart's dashed guide lines). Each label tries positions around its point (right/left,
    above/below, straight above/below, then farther out) and takes the first whose box stays inside
    the plot and touches no earlier label, no marker and no line; failing that, the first that only
    crosses a line (a label matters more than a clear guide line). Returns per label its box
    (x0, y0, x1, y1) in plot pixels, or None when no position is free (that label is left to the
    hover text).
    """
    w_plot, h_plot = plot_px
    h = 1.25 * font_px
    placed: list[tuple[float, float, float, float]] = []
    markers = [(x - _MARKER_PX, y - _MARKER_PX, x + _MARKER_PX, y + _MARKER_PX)
               for x, y in [*anchors_px, *obstacles_px]]

    def hits(a, b) -> bool:
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    out: list[tuple[float, float, float, float] | None] = []
    for (x, y), text in zip(anchors_px, texts):
        w = _CHAR_PX * font_px * len(text)
        g = _MARKER_PX + 2
        fixed = [(x + g, y + 2), (x + g, y - h - 2), (x - g - w, y + 2), (x - g - w, y - h - 2),
                 (x - w / 2, y + g), (x - w / 2, y - g - h), (x + g, y + h + 4), (x + g, y - 2 * h - 4),
                 (x - g - w, y + h + 4), (x - g - w, y - 2 * h - 4),
                 (x - w / 2, y + g + h + 4), (x - w / 2, y - g - 2 * h - 4)]

        def near(x=x, y=y, w=w, g=g):
            """Then any box within about two label heights of the point, nearest first (between guide
            lines); built only when no fixed place is free."""
            grid = [(x + dx, y + dy) for dx in np.arange(-w - 3 * g, 3 * g, 4.0)
                    for dy in np.arange(-3 * h - g, 2 * h + g, 3.0)]
            yield from sorted(grid, key=lambda c: math.hypot(max(c[0] - x, 0, x - c[0] - w),
                                                             max(c[1] - y, 0, y - c[1] - h)))

        chosen = fallback = None
        for x0, y0 in itertools.chain(fixed, near()):
            box = (x0, y0, x0 + w, y0 + h)
            if box[0] < 0 or box[1] < 0 or box[2] > w_plot or box[3] > h_plot:
                continue
            if any(hits(box, o) for o in placed) or any(hits(box, m) for m in markers):
                continue
            if any(_segment_hits_box(seg, box) for seg in lines_px):
                fallback = fallback or box
                continue
            chosen = box
            break
        chosen = chosen or fallback
        out.append(chosen)
        if chosen is not None:
            placed.append(chosen)
    return out


def rate_distortion(sweep: Sequence[Mapping], variants: Mapping[str, Mapping] | None = None,
                    iso_levels: Sequence[float] = (), zoom: bool = True, height: int = 480,
                    compact: bool = False) -> go.Figure:
    """Alemi et al. (2018): distortion D against rate R for each model of the sweep (held-out,
    nats per image), with lines of equal -ELBO (D + R = c, slope -1). ``zoom`` fits the axes
    to the models with beta > 0 and points an arrow at any model left off the chart. ``compact``
    (presenter mode): short title and axis titles, and a legend for the marked runs only."""
    sweep = sorted(sweep, key=lambda p: p["beta"])
    r = np.array([p["rate"] for p in sweep], dtype=float)
    d = np.array([p["distortion"] for p in sweep], dtype=float)
    shown = np.array([p["beta"] > 0 for p in sweep]) if zoom else np.ones(len(sweep), bool)
    if not shown.any():
        shown[:] = True
    extra_r = [v["rate"] for v in (variants or {}).values()]
    extra_d = [v["distortion"] for v in (variants or {}).values()]
    r_max = max([*r[shown], *extra_r, 1.0]) * 1.12
    d_lo = min([*d[shown], *extra_d])
    d_hi = max([*d[shown], *extra_d])
    pad = max(0.6, 0.08 * (d_hi - d_lo))
    x_range = [-0.04 * r_max, r_max]
    y_range = [d_lo - pad, d_hi + pad]
    fig = go.Figure()
    for k, c in enumerate(iso_levels):
        xs = np.array(x_range)
        fig.add_trace(go.Scatter(x=xs, y=c - xs, mode="lines", line=dict(color="#999999", dash="dash", width=1.3),
                                 name="lines of equal −ELBO (D + R = const)", legendgroup="iso",
                                 showlegend=k == 0 and not compact,
                                 hovertemplate=f"−ELBO = {c:.2f} nats<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=r, y=d, mode="lines+markers", name="plain VAEs, β sweep", showlegend=not compact,
        line=dict(color=OKABE_ITO[0], width=2.5), marker=dict(size=11, color=OKABE_ITO[0]),
        customdata=np.array([[p["beta"], p["neg_elbo"], p["active_units"]] for p in sweep]),
        hovertemplate="β=%{customdata[0]:g}<br>rate R=%{x:.2f} nats<br>distortion D=%{y:.2f} nats"
                      "<br>−ELBO=%{customdata[1]:.2f}<br>active units %{customdata[2]}<extra></extra>"))
    labels = _merge_labels([p for p, s in zip(sweep, shown) if s])
    w_px, h_px = RD_PLOT_PX

    def to_px(rr, dd):
        return ((rr - x_range[0]) / (x_range[1] - x_range[0]) * w_px, (dd - y_range[0]) / (y_range[1] - y_range[0]) * h_px)

    anchors = [to_px(rr, dd) for rr, dd, _ in labels]
    others = [to_px(v["rate"], v["distortion"]) for k, v in (variants or {}).items() if k]
    font_px = RD_LABEL_FONT * 1.35  # sized for presenter mode's scaled fonts, the larger case
    iso_px = [(to_px(x_range[0], c - x_range[0]), to_px(x_range[1], c - x_range[1])) for c in iso_levels]
    boxes = label_boxes(anchors, [t for *_, t in labels], font_px, others, lines_px=iso_px)
    for (rr, dd, text), (ax, ay), box in zip(labels, anchors, boxes):
        if box is None:  # no free place: β stays in the hover text
            continue
        # the annotation's bottom-left corner goes to the box's, as a pixel shift from the point
        fig.add_annotation(x=rr, y=dd, text=text, showarrow=False, xanchor="left", yanchor="bottom",
                           xshift=(box[0] - ax) * 1.0, yshift=(box[1] - ay) * 1.0,
                           font=dict(size=RD_LABEL_FONT, color=OKABE_ITO[0]),
                           bgcolor="rgba(255,255,255,0.85)")  # legible where it must cross a dashed line
    best = min((p for p, s in zip(sweep, shown) if s), key=lambda p: p["neg_elbo"])
    fig.add_trace(go.Scatter(x=[best["rate"]], y=[best["distortion"]], mode="markers", hoverinfo="skip",
                             name=f"lowest −ELBO shown ({best['neg_elbo']:.1f}, β={beta_label(best['beta'])})",
                             marker=dict(size=22, symbol="circle-open", color="#000000", line=dict(width=2))))
    for p, s in zip(sweep, shown):
        if not s:  # an arrow from the empty top-right corner down to the edge the point lies beyond
            fig.add_annotation(x=x_range[1], y=min(max(p["distortion"], y_range[0]), y_range[1]),
                               ax=x_range[1] - 0.01 * r_max, ay=y_range[1] - 0.04 * (y_range[1] - y_range[0]),
                               axref="x", ayref="y", xanchor="right", yanchor="top", showarrow=True, arrowhead=2,
                               text=f"β={beta_label(p['beta'])} is off the chart →<br>R={p['rate']:.0f}, "
                                    f"D={p['distortion']:.1f} nats", font=dict(size=11), align="right",
                               bgcolor="rgba(255,255,255,0.85)")
    for v, p in (variants or {}).items():
        if not v:
            continue
        fig.add_trace(go.Scatter(
            x=[p["rate"]], y=[p["distortion"]], mode="markers", name=f"β={p['beta']:g}, {VARIANT_LABELS[v]}",
            marker=dict(size=15, symbol=VARIANT_SYMBOLS[v], color=VARIANT_COLORS[v], line=dict(color="white", width=1.5)),
            hovertemplate=f"{VARIANT_LABELS[v]}, β={p['beta']:g}<br>R=%{{x:.2f}}<br>D=%{{y:.2f}}<extra></extra>"))
    fig.add_vrect(x0=x_range[0], x1=0.0, fillcolor=HOLE_COLOR, opacity=0.12, line_width=0, layer="below")
    fig.add_annotation(x=x_range[0] / 2, y=y_range[0], text="R = 0: collapse", showarrow=False, textangle=-90,
                       xanchor="center", yanchor="bottom", font=dict(size=11, color=HOLE_COLOR))
    fig.update_xaxes(title="rate R (KL term), nats" if compact else "rate R = KL(q(z|x) ‖ p(z)), nats per image",
                     range=x_range, zeroline=True, zerolinecolor="#bbbbbb")
    fig.update_yaxes(title="distortion D, nats" if compact else "distortion D = −log p(x|z), nats per image",
                     range=y_range)
    fig.update_layout(legend=dict(orientation="h", y=-0.2))
    return style(fig, "Rate–distortion, β sweep" if compact else "Rate–distortion plane of the β sweep (held-out images)",
                 height)


def active_units(sweep: Sequence[Mapping], latent_dim: int, height: int = 340, compact: bool = False) -> go.Figure:
    """Active latent units against beta: Burda et al.'s (2016) count, Var_x(mu_j) > 0.01 on the
    held-out images (``core.units``), one point per model of the sweep. ``compact`` (presenter mode):
    a short title and no legend, for large fonts in a narrow column."""
    sweep = sorted(sweep, key=lambda p: p["beta"])
    xs = [beta_label(p["beta"]) for p in sweep]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=xs, y=[p["active_units"] for p in sweep], mode="lines+markers",
                             name="active: Var_x(μ_j) > 0.01 (Burda et al. 2016)",
                             line=dict(color=OKABE_ITO[0], width=2.5), marker=dict(size=10),
                             hovertemplate="β=%{x}: %{y} active units<extra></extra>"))
    fig.update_xaxes(title="β", type="category")
    fig.update_yaxes(title=f"active units (of {latent_dim})", range=[-0.5, latent_dim + 0.8], dtick=2)
    fig.update_layout(legend=dict(orientation="h", y=-0.3), showlegend=not compact)
    return style(fig, "Active units (Burda)" if compact else "Active units (Var over held-out images of μ_j > 0.01)",
                 height)


def recon_by_beta(original: np.ndarray, ae: np.ndarray | None, recons: Mapping[float, np.ndarray],
                  image_shape: Sequence[int], height: int | None = None) -> go.Figure:
    """Rows: the real held-out images, the AE's reconstructions, then the VAE's for each beta."""
    rows = [original] + ([ae] if ae is not None else []) + [recons[b] for b in sorted(recons)]
    titles = ["real"] + (["AE"] if ae is not None else []) + [f"VAE β={beta_label(b)}" for b in sorted(recons)]
    n = min(len(r) for r in rows)
    stacked = np.concatenate([np.asarray(r[:n]) for r in rows])
    h = height or int(60 + len(rows) * 58)
    return image_grid(stacked, image_shape, ncols=n, row_titles=titles, height=h)


def kl_per_dim_compare(points: Mapping[str, Mapping], free_bits: float | None = None,
                       height: int = 360) -> go.Figure:
    """Grouped bars: each variant's held-out mean KL per latent dimension (nats), with the
    free-bits floor. The legend gives each run's active units by Burda et al.'s criterion
    (Var_x(mu_j) > 0.01, ``core.units``), which the hover repeats per dimension."""
    fig = go.Figure()
    for v, p in points.items():
        kl = np.asarray(p["kl_per_dim"], dtype=float)
        var = np.asarray(p.get("var_mu", [float("nan")] * len(kl)), dtype=float)
        fig.add_trace(go.Bar(x=[f"z{j + 1}" for j in range(len(kl))], y=kl,
                             name=f"{VARIANT_LABELS[v]} ({p['active_units']} active)",
                             marker=dict(color=VARIANT_COLORS[v],
                                         pattern=dict(shape={"": "", "warmup": "/", "freebits": "."}[v])),
                             customdata=var,
                             hovertemplate=f"{VARIANT_LABELS[v]} %{{x}}: KL %{{y:.3f}} nats, "
                                           "Var_x(μ) %{customdata:.3f}<extra></extra>"))
    if free_bits:  # the floor's label goes in the legend: written on the chart it sat over the bars
        line = dict(dash="dash", color=VARIANT_COLORS["freebits"])
        fig.add_hline(y=free_bits, line=line)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=line, hoverinfo="skip",
                                 name=f"free-bits floor λ = {free_bits:g} nats"))
    fig.update_yaxes(title="mean KL per dimension (nats)", rangemode="tozero")
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=-0.2))
    return style(fig, "Held-out KL of each latent dimension (legend: active units, Var_x μ_j > 0.01)", height)


def training_compare(runs: Mapping[str, Mapping], height: int = 330) -> go.Figure:
    """Training curves of the variants: effective β, KL and reconstruction against step."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=("β used at each step", "KL (nats)", "reconstruction (nats)"),
                        horizontal_spacing=0.08)
    for v, run in runs.items():
        h = run["history"]
        for col, key in ((1, "beta"), (2, "kl"), (3, "recon")):
            fig.add_trace(go.Scatter(x=h["step"], y=h[key], mode="lines", name=VARIANT_LABELS[v], legendgroup=v,
                                     showlegend=col == 1, line=dict(color=VARIANT_COLORS[v], width=2.2,
                                                                    dash={"": "solid", "warmup": "dash", "freebits": "dot"}[v]),
                                     hovertemplate=f"{VARIANT_LABELS[v]} step %{{x}}: %{{y:.3f}}<extra></extra>"),
                          row=1, col=col)
    fig.update_xaxes(title="step")
    fig.update_layout(legend=dict(orientation="h", y=-0.3))
    style(fig, None, height)
    fig.update_layout(margin=dict(t=40))
    return fig


# ---- the prior hole --------------------------------------------------------------------------

def prior_hole(mu: np.ndarray, y: np.ndarray, holes: Mapping, class_names: Sequence[str] | None = None,
               height: int = 620, marker_size: int = 4, legend_below: bool = False, n_numbered: int = 12) -> go.Figure:
    """Encoded training means over the N(0, I) prior: filled density contours, the circles that
    hold 39 %, 86 % and 99 % of the prior's mass, and the hole cells, the first ``n_numbered`` (the
    decoded ones) numbered; every hole's counts are in its hover text. ``legend_below``
    (presenter mode): the legend in rows at the bottom of the figure instead of a column on the right,
    where its twelve entries at presenter size overflowed a 540-px figure (it scrolled, its last entry cut)."""
    ext = holes["extent"]
    mu = np.asarray(mu, dtype=float)
    # Show the codes beyond the grid too (up to radius 6), so a too-wide aggregate posterior is visible.
    lim = float(min(6.0, max(ext, np.quantile(np.abs(mu), 0.995) if len(mu) else ext))) + 0.15
    g = np.linspace(-lim, lim, 61)  # the Gaussian is smooth: 61 x 61 draws the same contours as 101 x 101
    dens = (np.exp(-0.5 * (g[None, :] ** 2 + g[:, None] ** 2)) / (2 * np.pi)).astype(np.float32)
    inside = (np.abs(mu[:, 0]) <= lim) & (np.abs(mu[:, 1]) <= lim)
    fig = latent_scatter(mu[inside], np.asarray(y)[inside], axis_titles=("z₁ (posterior mean)", "z₂ (posterior mean)"),
                         height=height, marker_size=marker_size, customdata=np.nonzero(inside)[0],
                         class_names=class_names, title="Encoded training images (posterior means μ) over the prior")
    fig.add_trace(go.Contour(x=g, y=g, z=dens, showscale=False, ncontours=10, opacity=0.55, hoverinfo="skip",
                             colorscale=[[0, "rgba(255,255,255,0)"], [1, "rgba(86,180,233,0.9)"]],
                             contours=dict(coloring="fill", showlines=False), name="prior N(0, I) density"))
    fig.data = (fig.data[-1],) + fig.data[:-1]  # density underneath the points
    for tr in fig.data[1:]:  # thousands of points: float32 coordinates and int32 indices halve what is sent
        tr.update(x=np.asarray(tr.x, dtype=np.float32), y=np.asarray(tr.y, dtype=np.float32),
                  customdata=np.asarray(tr.customdata, dtype=np.int32))
    t = np.linspace(0, 2 * np.pi, 200)
    for r in (1.0, 2.0, 3.0):
        mass = 1 - math.exp(-r * r / 2)
        fig.add_trace(go.Scatter(x=r * np.cos(t), y=r * np.sin(t), mode="lines", hoverinfo="skip", showlegend=r == 1.0,
                                 name="prior N(0, I): circles holding<br>39%, 86%, 99% of its mass",
                                 legendgroup="rings",
                                 line=dict(color="#0072B2", width=1, dash="dot")))
        fig.add_annotation(x=r * math.cos(math.pi / 4), y=r * math.sin(math.pi / 4), text=f"{100 * mass:.0f}%",
                           showarrow=False, font=dict(size=11, color="#0072B2"), bgcolor="rgba(255,255,255,0.7)")
    half = holes["cell"] / 2
    for k, (c1, c2) in enumerate(holes["holes"]):
        fig.add_shape(type="rect", x0=c1 - half, x1=c1 + half, y0=c2 - half, y1=c2 + half,
                      line=dict(color=HOLE_COLOR, width=2, dash="dash"), fillcolor="rgba(213,94,0,0.12)")
    if len(holes["holes"]):
        hz = np.asarray(holes["holes"])
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"hole: the encoder puts ≤ "
                                 f"{100 * holes['max_fill']:.0f}%<br>of the codes the prior expects",
                                 marker=dict(symbol="square-open", size=12, color=HOLE_COLOR, line=dict(width=2))))
        # (numbers on the decoded holes only: at small cells, numbers on every neighbouring hole ran together)
        fig.add_trace(go.Scatter(
            x=hz[:, 0], y=hz[:, 1], mode="text", showlegend=False,
            text=[str(k + 1) if k < n_numbered else "" for k in range(len(hz))],
            textfont=dict(size=12, color=HOLE_COLOR, family="DejaVu Sans Bold, Arial Black, sans-serif"),
            name="holes",
            customdata=np.stack([np.arange(1, len(hz) + 1), holes["hole_expected"], holes["hole_observed"]], axis=1),
            hovertemplate="hole %{customdata[0]:.0f}: the prior expects %{customdata[1]:.1f} codes here,"
                          "<br>the encoder puts %{customdata[2]:.2f}<extra></extra>"))
    if lim > ext + 0.2:
        fig.add_shape(type="rect", x0=-ext, x1=ext, y0=-ext, y1=ext, line=dict(color="#777777", width=1, dash="dot"))
        fig.add_annotation(x=-ext, y=ext, text="grid searched for holes", showarrow=False, xanchor="left",
                           yanchor="bottom", font=dict(size=11, color="#555555"))
    fig.update_xaxes(range=[-lim, lim])
    fig.update_yaxes(range=[-lim, lim])
    if legend_below:
        fig.update_layout(legend=dict(title=None, orientation="h", yref="container", y=0, yanchor="bottom", x=0))
    else:
        fig.update_layout(legend=dict(title=None, orientation="v", x=1.02, y=1))
    return fig


def hole_decodings(hole_images: np.ndarray, busy_images: np.ndarray, image_shape: Sequence[int],
                   max_cols: int = 12, height: int | None = None) -> go.Figure:
    """Two rows: decodings of the hole centres (numbered as on the map) and of the busiest cells."""
    n = min(len(hole_images), len(busy_images), max_cols)
    stacked = np.concatenate([hole_images[:n], busy_images[:n]])
    fig = image_grid(stacked, image_shape, ncols=n, row_titles=["hole centres", "busiest cells"],
                     col_titles=[str(k + 1) for k in range(n)], height=height or 260,
                     title="Decoded: the hole centres (numbered as on the map) and, below, the busiest cells")
    return fig


# ---- complex data ----------------------------------------------------------------------------

COMPLEX_METRICS = (
    ("sharpness kept, VAE recon (%)", "sharpness of<br>reconstructions"),
    ("sharpness kept, VAE samples (%)", "sharpness of<br>prior samples"),
    ("recon accuracy vs real (%)", "classifier accuracy<br>on reconstructions"),
    ("samples recognised vs real (%)", "prior samples<br>recognised<br>confidently"),
    # 2 × the error of a classifier trained to tell real images from samples (Lopez-Paz and Oquab, 2017)
    ("samples pass as real (%)", "prior samples<br>passing as real<br>(two-sample test)"),
)


def _bar_text_place(value: float) -> str:
    """Above the bar, except just under the dashed 100 % line, where the label would sit on the line:
    there it goes inside the bar's top."""
    return "inside" if 88.0 <= value < 100.0 else "outside"


def complex_bars(rows: Sequence[Mapping], height: int = 400) -> go.Figure:
    """Per dataset, how close the VAE's outputs come to real images (100 % = as real images)."""
    fig = go.Figure()
    colors = [OKABE_ITO[0], OKABE_ITO[3], OKABE_ITO[2], OKABE_ITO[4]]
    for k, r in enumerate(rows):
        vals = []
        for key, _ in COMPLEX_METRICS:
            if key == "recon accuracy vs real (%)":
                vals.append(100 * r["classifier accuracy, VAE recon (%)"] / r["classifier accuracy, real (%)"])
            else:
                vals.append(r[key])
        fig.add_trace(go.Bar(x=[lab for _, lab in COMPLEX_METRICS], y=vals, name=f"{r['dataset']} ({r['image size']})",
                             marker=dict(color=colors[k % len(colors)], pattern=dict(shape=["", "/", "x", "."][k % 4])),
                             text=[f"{v:.0f}%" for v in vals], textposition=[_bar_text_place(v) for v in vals],
                             insidetextanchor="end",
                             hovertemplate=f"{r['dataset']}: %{{y:.1f}}% of the real images' value<extra></extra>"))
    fig.add_hline(y=100, line=dict(color="#000000", dash="dash"))
    top = max([100.0] + [float(v) for tr in fig.data for v in tr.y if v is not None and np.isfinite(v)])
    fig.update_yaxes(title="% of the value for real images", range=[0, top * 1.18])
    # Horizontal category labels (rotated ones ran into the legend at presenter sizes); the legend and
    # the meaning of the dashed line sit above the plot, out of the bars' way.
    fig.update_xaxes(tickangle=0)
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=dict(color="#000000", dash="dash"),
                             name="real images = 100%", hoverinfo="skip"))  # (the dashed line's legend entry)
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=1.0, yanchor="bottom", x=0, xanchor="left"))
    fig = style(fig, "The same small VAE on small and on larger images", height)
    fig.update_layout(margin=dict(t=90))
    return fig


def dataset_strip(images: Mapping[str, np.ndarray], image_shape: Sequence[int], title: str | None = None,
                  height: int | None = None) -> go.Figure:
    """Rows of real images, VAE reconstructions and VAE prior samples for one dataset."""
    labels = {"original": "real", "vae": "VAE recon", "sample": "VAE samples"}
    arrays = [np.asarray(images[k]) for k in labels]
    n = min(len(a) for a in arrays)
    stacked = np.concatenate([a[:n] for a in arrays])
    return image_grid(stacked, image_shape, ncols=n, row_titles=list(labels.values()), title=title,
                      height=height or 270)


# ---- only a bound ----------------------------------------------------------------------------

def bound_curve(ks: Sequence[int], bounds: Mapping[int, float], height: int = 360) -> go.Figure:
    """The importance-weighted bounds L_k (Burda et al. 2016) against k (log axis), nats per image:
    L_1 is the ELBO; every L_k is below log p(x), so the rise from L_1 is a part of the gap
    KL(q(z|x) || p(z|x)) that the ELBO leaves."""
    ks = [int(k) for k in ks]
    ys = [float(bounds[k]) for k in ks]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=ks, y=ys, mode="lines+markers+text", name="L_k (importance-weighted bound)",
                             text=[f"{y:.2f}" for y in ys], textposition="top center",
                             line=dict(color=OKABE_ITO[0], width=2.5), marker=dict(size=10),
                             hovertemplate="k=%{x}: L_k = %{y:.3f} nats per image<extra></extra>"))
    fig.add_hline(y=ys[0], line=dict(color=OKABE_ITO[3], dash="dash"),
                  annotation_text=f"ELBO (k = 1): {ys[0]:.2f}", annotation_position="bottom right")
    lo, hi = min(ys), max(ys)
    pad = max(0.3, 0.25 * (hi - lo))
    fig.update_xaxes(title="k, samples of z per image (log scale)", type="log", tickvals=ks)
    fig.update_yaxes(title="L_k, nats per image (≤ log p(x))", range=[lo - pad, hi + pad])
    fig.update_layout(showlegend=False)
    return style(fig, "The ELBO is a bound: more samples, a tighter one", height)


# ---- posterior collapse: the three causes as runs (core.collapse) ---------------------------------

RUN_COLORS = (OKABE_ITO[3], OKABE_ITO[1], OKABE_ITO[2])
RUN_DASHES = ("solid", "dash", "dot")


def collapse_runs(results: Sequence, height: int = 360) -> go.Figure:
    """Two panels over training steps, one line per run (``core.collapse.RunResult``): held-out
    active units (Burda et al. 2016) and held-out rate (mean KL term, nats per image)."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=("active units (Var_x μ_j > 0.01)", "rate: KL term, nats per image"))
    for i, r in enumerate(results):
        c = r.curve
        style_kw = dict(color=RUN_COLORS[i % len(RUN_COLORS)], dash=RUN_DASHES[i % len(RUN_DASHES)], width=3)
        fig.add_trace(go.Scatter(x=c["step"], y=c["active_units"], mode="lines", name=r.spec.label, line=style_kw,
                                 legendgroup=r.spec.label, customdata=c["beta"],
                                 hovertemplate="step %{x}<br>β used %{customdata:.2f}<br>%{y} active<extra>"
                                               + r.spec.label + "</extra>"), 1, 1)
        fig.add_trace(go.Scatter(x=c["step"], y=c["rate"], mode="lines", name=r.spec.label, line=style_kw,
                                 legendgroup=r.spec.label, showlegend=False, customdata=c["beta"],
                                 hovertemplate="step %{x}<br>β used %{customdata:.2f}<br>rate %{y:.3f} nats<extra>"
                                               + r.spec.label + "</extra>"), 1, 2)
    k = results[0].latent_dim if results else 16
    fig.update_yaxes(range=[-0.5, k + 0.5], row=1, col=1)
    fig.update_yaxes(rangemode="tozero", row=1, col=2)
    fig.update_xaxes(title="training step")
    fig.update_layout(legend=dict(orientation="h", y=-0.28, x=0))
    return style(fig, None, height)
