"""Plotly figure builders shared by the pages (pure functions: arrays in, ``go.Figure`` out).

Page-specific builders live in submodules (``core.figures.kl``, ...). Colours come from
colour-blind-safe palettes: Okabe & Ito (2008) for lines, CARTO "Safe" for classes.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.express as px
import plotly.graph_objects as go

# Okabe-Ito: distinguishable under the common colour-vision deficiencies.
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
CLASS_COLORS = px.colors.qualitative.Safe  # 11 colour-blind-safe colours
TERM_COLORS = {"loss": "#000000", "recon": "#0072B2", "beta_kl": "#D55E00", "kl": "#E69F00", "free": "#009E73"}
FONT = dict(family="DejaVu Sans, Arial, sans-serif", size=14)


def style(fig: go.Figure, title: str | None = None, height: int | None = None) -> go.Figure:
    """The house style: white template, readable fonts, tight margins."""
    fig.update_layout(template="plotly_white", font=FONT, margin=dict(l=10, r=10, t=50 if title else 20, b=10),
                      title=dict(text=title, x=0.01, xanchor="left") if title else None)
    if height:
        fig.update_layout(height=height)
    return fig


def class_color(label: int) -> str:
    return CLASS_COLORS[int(label) % len(CLASS_COLORS)]


def as_images(x: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """(N, D) or (N, H, W) -> (N, H, W), clipped to [0, 1]."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x.reshape(len(x), *image_shape)
    return np.clip(x, 0.0, 1.0)


def mosaic(images: np.ndarray, ncols: int, gap: int = 1, fill: float = 1.0) -> np.ndarray:
    """Tile (N, H, W) images into one (rows*(H+gap)-gap, ncols*(W+gap)-gap) array, row-major."""
    n, h, w = images.shape
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    out = np.full((nrows * (h + gap) - gap, ncols * (w + gap) - gap), fill, dtype=np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = img
    return out


def image_grid(x: np.ndarray, image_shape: Sequence[int], ncols: int = 8, title: str | None = None,
               col_titles: Sequence[str] | None = None, row_titles: Sequence[str] | None = None,
               height: int | None = None, gap: int = 1) -> go.Figure:
    """Images (N, D) or (N, H, W) in [0, 1] as one greyscale mosaic (a PNG inside the figure:
    small to send, sharp on a projector). ``row_titles`` label the rows on the left."""
    imgs = as_images(x, image_shape)
    h, w = imgs.shape[1:]
    grid = mosaic(imgs, ncols, gap=gap)
    fig = px.imshow((grid * 255).astype(np.uint8), binary_string=True, zmin=0, zmax=255)
    fig.update_traces(hoverinfo="skip", hovertemplate=None)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    ncols_eff = max(1, min(ncols, len(imgs)))
    nrows = int(np.ceil(len(imgs) / ncols_eff))
    for j, t in enumerate(col_titles or []):
        fig.add_annotation(x=j * (w + gap) + w / 2 - 0.5, y=-0.5, text=str(t), showarrow=False, yanchor="bottom",
                           font=dict(size=12))
    left = 0
    if row_titles:
        left = 110
        for r, t in enumerate(row_titles[:nrows]):
            fig.add_annotation(x=-0.5, y=r * (h + gap) + h / 2 - 0.5, text=str(t), showarrow=False, xanchor="right",
                               xref="x", yref="y", font=dict(size=13))
    style(fig, title, height)
    fig.update_layout(margin=dict(l=left + 5, r=5, t=(50 if title else 8) + (18 if col_titles else 0), b=5))
    return fig


def paired_rows(rows: Mapping[str, np.ndarray], image_shape: Sequence[int], title: str | None = None,
                height: int | None = None) -> go.Figure:
    """Several equally long image rows (e.g. "input", "reconstruction"), labelled on the left."""
    arrays = [as_images(v, image_shape) for v in rows.values()]
    n = min(len(a) for a in arrays)
    stacked = np.concatenate([a[:n] for a in arrays])
    return image_grid(stacked, image_shape, ncols=n, title=title, row_titles=list(rows), height=height)


def smooth(v: np.ndarray, win: int) -> np.ndarray:
    """Trailing moving average over ``win`` points (shorter at the start), (N,) -> (N,)."""
    if win <= 1 or len(v) == 0:
        return v
    c = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(1, len(v) + 1)
    lo = np.maximum(0, i - win)
    return (c[i] - c[lo]) / (i - lo)


def loss_curves(history: Sequence[Mapping], eval_history: Sequence[Mapping] = (),
                beta_changes: Sequence[tuple[int, float]] = (), title: str | None = "Loss terms per sample (nats)",
                height: int = 380, log_y: bool = False) -> go.Figure:
    """Training terms against step: total, reconstruction, beta*KL and raw KL (solid: train, a
    moving average; dots: held-out). Vertical lines mark where beta changed."""
    fig = go.Figure()
    if history:
        steps = np.array([h["step"] for h in history])
        win = max(1, len(history) // 60)
        for key, name in (("loss", "total"), ("recon", "reconstruction"), ("beta_kl", "β·KL"), ("kl", "KL")):
            vals = smooth(np.array([h.get(key, np.nan) for h in history], dtype=float), win)
            fig.add_trace(go.Scatter(x=steps, y=vals, name=f"{name} (train)", mode="lines",
                                     line=dict(color=TERM_COLORS[key], width=2.5, dash="dot" if key == "kl" else None)))
    if eval_history:
        es = [e["step"] for e in eval_history]
        for key, name in (("loss", "total"), ("recon", "reconstruction"), ("kl", "KL")):
            fig.add_trace(go.Scatter(x=es, y=[e[key] for e in eval_history], name=f"{name} (held-out)",
                                     mode="markers", marker=dict(color=TERM_COLORS[key], size=7, symbol="diamond")))
    for step, beta in list(beta_changes)[1:]:
        fig.add_vline(x=step, line=dict(color="#888", dash="dash", width=1.5))
        fig.add_annotation(x=step, y=1.0, yref="paper", text=f"β={beta:g}", showarrow=False, yanchor="bottom",
                           font=dict(size=12, color="#555"))
    fig.update_xaxes(title="step")
    fig.update_yaxes(title="nats per sample", type="log" if log_y else "linear")
    fig.update_layout(legend=dict(orientation="h", y=-0.25), uirevision="loss")
    return style(fig, title, height)


def kl_bars(kl_per_dim: Sequence[float], threshold: float = 0.01, title: str | None = "KL per latent dimension",
            height: int = 300) -> go.Figure:
    """Bars of one image's KL_j (nats). Dimensions at or below ``threshold`` nats (grey, hatched)
    carry almost no information about THIS image. That is not collapse: collapse is a property
    over the data (core.units, Burda et al., 2016), which one image cannot show."""
    kl = np.asarray(kl_per_dim, dtype=float)
    above = kl > threshold
    fig = go.Figure(go.Bar(
        x=[f"z{j + 1}" for j in range(len(kl))], y=kl,
        marker=dict(color=np.where(above, OKABE_ITO[0], "#BBBBBB"),
                    pattern=dict(shape=["" if a else "/" for a in above])),
        hovertemplate=[f"%{{x}}: %{{y:.3f}} nats{'' if a else '<br>almost no information about this image'}"
                       "<extra></extra>" for a in above]))
    fig.add_hline(y=threshold, line=dict(dash="dot", color="#D55E00"),
                  annotation_text=f"{threshold:g} nats", annotation_position="top right")
    fig.update_yaxes(title="KL (nats)", rangemode="tozero")
    fig.update_layout(showlegend=False, uirevision="klbars")
    return style(fig, f"{title}: {int(above.sum())} of {len(kl)} above {threshold:g} nats" if title else None, height)


def latent_scatter(coords: np.ndarray, labels: np.ndarray, title: str | None = None,
                   axis_titles: tuple[str, str] = ("dim 1", "dim 2"), height: int = 520,
                   marker_size: int = 6, customdata: np.ndarray | None = None,
                   class_names: Sequence[str] | None = None) -> go.Figure:
    """A 2-D map (N, 2) coloured by class: one trace per class so the legend can toggle classes.
    Hover shows the dataset index (``customdata``, default 0..N-1) and the label."""
    coords = np.asarray(coords, dtype=float)
    labels = np.asarray(labels)
    idx = np.arange(len(coords)) if customdata is None else np.asarray(customdata)
    fig = go.Figure()
    for c in np.unique(labels):
        m = labels == c
        name = class_names[int(c)] if class_names is not None and 0 <= int(c) < len(class_names) else str(c)
        fig.add_trace(go.Scatter(
            x=coords[m, 0], y=coords[m, 1], mode="markers", name=name,
            marker=dict(size=marker_size, color=class_color(c) if c >= 0 else "#666", opacity=0.8,
                        line=dict(width=0)),
            customdata=idx[m], hovertemplate=f"index %{{customdata}}<br>label {name}<extra></extra>"))
    fig.update_xaxes(title=axis_titles[0], zeroline=False)
    fig.update_yaxes(title=axis_titles[1], zeroline=False, scaleanchor="x", scaleratio=1)
    fig.update_layout(legend=dict(title="class", itemsizing="constant"), uirevision="latent", dragmode="pan")
    return style(fig, title, height)


def with_font_scale(fig: go.Figure, scale: float, min_size: float | None = None) -> go.Figure:
    """Enlarge the figure's text, in place, for presenter mode: the base font and every annotation (in the
    figure and in its animation frames, which would otherwise restore the old sizes on Play) are multiplied
    by ``scale``; tick labels, axis titles, the legend and colour bars follow the base font unless the figure
    sized them itself (a page may already pass presenter sizes: those are kept, not multiplied again). No
    such text ends up smaller than ``min_size`` px (by default 16 px when enlarging, else 0: issue 21's floor
    for a projector). A trace's own text with an explicit size (labels in bars, node labels, heatmap cells)
    is left as it is, so it still fits the space its figure gives it. The height, if set, grows by
    ``min(scale, 1.3)``. Returns ``fig``.

    Tick labels, axis titles, the legend and annotations get an explicit size where they had none: Streamlit
    draws charts with its own template, whose tick and legend sizes (12 px) win over ``layout.font``."""
    import re

    if min_size is None:
        min_size = 16 if scale > 1 else 0

    def scaled(obj, floor: float, grow: bool = False):
        """A copy of figure JSON in which every ``*font`` dict's ``size`` is at least ``floor`` (``min_size``
        inside a colour bar), and inside annotations (``grow``) also multiplied by ``scale``. Other explicit
        sizes are not multiplied: a page that already chose presenter sizes keeps them. Templates are left
        alone."""
        if isinstance(obj, dict):
            out = {}
            for k, v in obj.items():
                if k == "template":
                    out[k] = v
                    continue
                f = min_size if k == "colorbar" else floor
                v = scaled(v, f, grow or k == "annotations")
                size = v.get("size") if k.endswith("font") and isinstance(v, dict) else None
                if isinstance(size, (int, float)) and not isinstance(size, bool):
                    v = {**v, "size": max(round(size * scale) if grow else size, f)}
                out[k] = v
            return out
        if isinstance(obj, (list, tuple)):
            return [scaled(v, floor, grow) for v in obj]
        return obj

    def scale_trace(trace) -> None:
        parts = {k: v for k, v in trace.to_plotly_json().items() if k in ("marker", "colorbar")}
        trace.update(scaled(parts, 0))

    def explicit(layout: dict, size: int) -> None:
        for k in {"xaxis", "yaxis", *(k for k in layout if re.fullmatch(r"[xy]axis\d*", k))}:
            ax = layout.setdefault(k, {})
            ax["tickfont"] = {"size": size, **(ax.get("tickfont") or {})}
            title = ax.get("title")
            if isinstance(title, dict) and title.get("text"):
                ax["title"] = {**title, "font": {"size": size, **(title.get("font") or {})}}
        legend = layout.setdefault("legend", {})
        legend["font"] = {"size": size, **(legend.get("font") or {})}
        if layout.get("annotations"):
            layout["annotations"] = [{**a, "font": {"size": size, **(a.get("font") or {})}}
                                     for a in layout["annotations"]]
        title = layout.get("title")
        if isinstance(title, dict) and title.get("text"):
            layout["title"] = {**title, "font": {"size": round(size * 1.15), **(title.get("font") or {})}}

    base = fig.layout.font.size or FONT["size"]
    layout = scaled(fig.layout.to_plotly_json(), min_size)
    size = layout.setdefault("font", {})["size"] = max(round(base * scale), min_size)
    explicit(layout, size)
    fig.layout = layout
    for tr in fig.data:
        scale_trace(tr)
    for frame in fig.frames or ():
        if frame.layout is not None:
            frame.layout = scaled(frame.layout.to_plotly_json(), min_size)
        for tr in frame.data or ():
            scale_trace(tr)
    if fig.layout.height:
        fig.update_layout(height=round(fig.layout.height * min(scale, 1.3)))
    return fig
