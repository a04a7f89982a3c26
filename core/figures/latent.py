"""Figures for the latent space explorer: the map with a selection and paths, the decoded
manifold, traversal strips and the AE-vs-VAE prior-sample maps.

Built on ``core.figures.latent_scatter`` and ``image_grid``; plain ``go.Scatter`` (SVG),
never ``Scattergl``: WebGL is unavailable in headless browsers and on some projector laptops.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from core.figures import OKABE_ITO, as_images, image_grid, latent_scatter

PATH_STYLES = {"linear": dict(color="#000000", dash="solid"), "spherical": dict(color="#D55E00", dash="dot")}
SELECT_COLOR = "#000000"


def explorer_map(xy: np.ndarray, labels: np.ndarray, title: str | None, axis_titles: tuple[str, str],
                 class_names: Sequence[str] | None = None, selected: int | None = None,
                 neighbours: Sequence[int] = (), paths: Mapping[str, np.ndarray] | None = None,
                 endpoints: tuple[int, int] | None = None, decoded_point: np.ndarray | None = None,
                 height: int = 560, marker_size: int | None = None, equal_axes: bool = True,
                 subset: np.ndarray | None = None) -> go.Figure:
    """The 2-D map ``xy`` (N, 2), one trace per class (hover: index and label, customdata = index).
    ``subset``: the indices of the points to draw (None: all); overlays may refer to any index.

    Overlays (each its own trace, drawn on top): ``paths`` name -> (M, 2) interpolation
    paths (lines with a dot per decoded step), ``endpoints`` (a, b) marked A and B, the
    ``neighbours`` of the ``selected`` point (open circles) and the selected point (a star),
    and ``decoded_point`` (2,), the point decoded by the sliders (a cross).
    """
    xy = np.asarray(xy, dtype=float)
    labels = np.asarray(labels)
    shown = np.arange(len(xy)) if subset is None else np.asarray(subset, dtype=np.int64)
    n = len(shown)
    size = marker_size or (4 if n > 3000 else 5 if n > 1000 else 7)
    fig = latent_scatter(xy[shown], labels[shown], title=title, axis_titles=axis_titles, height=height,
                         marker_size=size, class_names=class_names, customdata=shown)
    if not equal_axes:
        fig.update_yaxes(scaleanchor=None)
    for name, p in (paths or {}).items():
        p = np.asarray(p, dtype=float)
        sty = PATH_STYLES.get(name, dict(color=OKABE_ITO[0], dash="solid"))
        fig.add_trace(go.Scatter(x=p[:, 0], y=p[:, 1], mode="lines+markers", name=f"{name} path",
                                 line=dict(color=sty["color"], dash=sty["dash"], width=3),
                                 marker=dict(size=7, color=sty["color"]),
                                 hovertemplate=f"{name} path, step %{{pointNumber}}<extra></extra>"))
    if endpoints is not None:
        a, b = (int(i) for i in endpoints)
        fig.add_trace(go.Scatter(x=xy[[a, b], 0], y=xy[[a, b], 1], mode="markers+text", name="A and B",
                                 text=["A", "B"], textposition="top center", customdata=[a, b],
                                 textfont=dict(size=16, color="#000"),
                                 marker=dict(size=14, color="#FFFFFF", line=dict(color="#000", width=2.5)),
                                 hovertemplate="index %{customdata} (%{text})<extra></extra>"))
    if selected is not None:
        nb = np.asarray(list(neighbours), dtype=int)
        if nb.size:
            fig.add_trace(go.Scatter(x=xy[nb, 0], y=xy[nb, 1], mode="markers", name="neighbours",
                                     customdata=nb, marker=dict(size=12, color="rgba(0,0,0,0)",
                                                                line=dict(color=SELECT_COLOR, width=2)),
                                     hovertemplate="neighbour: index %{customdata}<extra></extra>"))
        s = int(selected)
        fig.add_trace(go.Scatter(x=[xy[s, 0]], y=[xy[s, 1]], mode="markers", name="selected", customdata=[s],
                                 marker=dict(size=20, symbol="star", color="#F0E442",
                                             line=dict(color=SELECT_COLOR, width=2)),
                                 hovertemplate="selected: index %{customdata}<extra></extra>"))
    if decoded_point is not None:
        d = np.asarray(decoded_point, dtype=float).reshape(2)
        fig.add_trace(go.Scatter(x=[d[0]], y=[d[1]], mode="markers", name="decoded point",
                                 marker=dict(size=16, symbol="x-thin-open", color="#CC79A7", line=dict(width=4)),
                                 hovertemplate="decoded point (%{x:.2f}, %{y:.2f})<extra></extra>"))
    # After a click or lasso, Plotly fades the points not selected: keep the map readable and the
    # overlays (paths, the selection, the decoded point) fully visible.
    n_classes = len(np.unique(labels[shown]))
    for i, t in enumerate(fig.data):
        t.unselected = dict(marker=dict(opacity=0.45 if i < n_classes else 1.0))
    # The legend starts below the x-axis title whatever the height: ~90 px (its ticks and title, more once
    # presenter mode scales the fonts) in units of the plot's height (paper coordinates).
    fig.update_layout(legend=dict(title="", orientation="h", yanchor="top", y=-min(0.3, 90 / max(height - 120, 100)),
                                  x=0, itemsizing="constant", font=dict(size=12)), dragmode="pan", hovermode="closest")
    return fig


def manifold_mosaic(images: np.ndarray, image_shape: Sequence[int], u: np.ndarray, v: np.ndarray,
                    axis_names: tuple[str, str], title: str | None = None, marker: np.ndarray | None = None,
                    height: int = 560) -> go.Figure:
    """Decoded grid (Kingma & Welling 2014, fig. 4): ``images`` (n*n, D) row-major, top row at
    the largest v; ``u`` (n,), ``v`` (n,) the grid values (ascending). Axis ticks show the
    latent values. Every tile has an invisible, clickable point whose customdata is its
    (u, v), so a click or box selection picks a code. ``marker`` (2,) marks a point (the
    slider code) by interpolating its position between tile centres."""
    n = len(u)
    h, w = (int(s) for s in image_shape)
    gap = 1
    fig = image_grid(images, image_shape, ncols=n, title=title, height=height, gap=gap)
    cx = np.arange(n) * (w + gap) + (w - 1) / 2
    cy = np.arange(n) * (h + gap) + (h - 1) / 2  # pixel rows: top row is the largest v
    vv = np.asarray(v)[::-1]
    gx, gy = np.meshgrid(cx, cy)
    gu, gv = np.meshgrid(np.asarray(u), vv)
    fig.add_trace(go.Scatter(
        x=gx.ravel(), y=gy.ravel(), mode="markers", name="grid", showlegend=False,
        customdata=np.stack([gu.ravel(), gv.ravel()], 1),
        marker=dict(size=max(6, min(30, 600 // n)), symbol="square", color="rgba(0,0,0,0)", opacity=0.01),
        hoverlabel=dict(bgcolor="#FFFFFF", font=dict(color="#000000")),
        hovertemplate=f"{axis_names[0]} = %{{customdata[0]:.2f}}<br>{axis_names[1]} = %{{customdata[1]:.2f}}"
                      "<br>click to decode here<extra></extra>"))
    every = max(1, n // 6)
    ticks = list(range(0, n, every))
    fig.update_xaxes(visible=True, showgrid=False, zeroline=False, showline=False, title=axis_names[0],
                     tickvals=cx[ticks], ticktext=[f"{u[i]:.1f}" for i in ticks])
    fig.update_yaxes(visible=True, showgrid=False, zeroline=False, showline=False, title=axis_names[1],
                     tickvals=cy[ticks], ticktext=[f"{vv[i]:.1f}" for i in ticks])
    if marker is not None:
        m = np.asarray(marker, dtype=float).reshape(2)
        px_ = float(np.interp(m[0], u, cx))
        py_ = float(np.interp(m[1], np.asarray(v), cy[::-1]))
        fig.add_trace(go.Scatter(x=[px_], y=[py_], mode="markers", name="slider code", showlegend=False,
                                 marker=dict(size=20, symbol="x-thin-open", color="#CC79A7", line=dict(width=4)),
                                 unselected=dict(marker=dict(opacity=1.0)), hoverinfo="skip"))
    fig.update_layout(margin=dict(l=60, r=10, t=50 if title else 10, b=50), dragmode="pan", hovermode="closest")
    # The axes pinned to the mosaic: the clickable tile markers (up to 30 px) made plotly.js pad the ranges, which
    # left a band between the tiles and the tick labels.
    return _pinned(fig, (n * (h + gap) - gap, n * (w + gap) - gap))


def strip_rows(rows: Mapping[str, np.ndarray], image_shape: Sequence[int], col_titles: Sequence[str] | None = None,
               title: str | None = None, height: int | None = None) -> go.Figure:
    """Equally long rows of images, labelled on the left (row names) and on top (``col_titles``)."""
    arrays = [as_images(v, image_shape) for v in rows.values()]
    n = min(len(a) for a in arrays)
    stacked = np.concatenate([a[:n] for a in arrays])
    return image_grid(stacked, image_shape, ncols=n, title=title, row_titles=list(rows),
                      col_titles=col_titles, height=height)


def wrapped_strips(rows: Mapping[str, np.ndarray], image_shape: Sequence[int], col_titles: Sequence[str],
                   per_row: int, title: str | None = None, height: int | None = None) -> go.Figure:
    """Like :func:`strip_rows`, but each strip wraps after ``per_row`` images onto further lines, so a long
    strip fills a screen-shaped box instead of a short wide band (presenter mode, issue 21). Each strip is a
    block of lines, named on the left; every image has its own title above it (``col_titles``, one per
    step: the second line of a strip starts mid-way), in a white band as high as about a fifth of an image;
    the blocks are one band apart. Images are read left to right, then line by line."""
    arrays = [as_images(v, image_shape) for v in rows.values()]
    n = min(len(a) for a in arrays)
    h, w = arrays[0].shape[1:]
    per_row = max(1, min(int(per_row), n))
    lines = int(np.ceil(n / per_row))
    band = max(2, round(0.22 * h))        # the title band above each line, in image pixels
    pitch = band + h + 1                  # one line: its band, its images, a 1-pixel gap
    block = lines * pitch
    canvas = np.ones((len(arrays) * block + (len(arrays) - 1) * band - 1, per_row * (w + 1) - 1), np.float32)
    tops = []                             # (strip, step) -> (top, left) of its image
    for k, a in enumerate(arrays):
        y0 = k * (block + band)
        for i in range(n):
            r, c = divmod(i, per_row)
            top, left = y0 + r * pitch + band, c * (w + 1)
            canvas[top:top + h, left:left + w] = a[i]
            tops.append((k, i, top, left))
    fig = image_grid(canvas[None], canvas.shape, ncols=1, title=title, height=height)
    for k, i, top, left in tops:
        if i < len(col_titles):
            fig.add_annotation(x=left + w / 2 - 0.5, y=top - 0.5, text=str(col_titles[i]), showarrow=False,
                               yanchor="bottom", font=dict(size=12))
    # A strip's name may run over lines ("\n"); the left margin fits its longest line at presenter size
    # (13 px x 1.45, about 11 px a character).
    names = [str(name).split("\n") for name in rows]
    for k, parts in enumerate(names):
        fig.add_annotation(x=-0.5, y=k * (block + band) + band + (block - band) / 2 - 0.5, text="<br>".join(parts),
                           showarrow=False, xanchor="right", xshift=-6, xref="x", yref="y", font=dict(size=13))
    left = max(115, 11 * max(len(t) for parts in names for t in parts) + 16)
    fig.update_layout(margin=dict(l=left, r=5, t=50 if title else 4, b=5))
    return _pinned(fig, canvas.shape)


def _pinned(fig: go.Figure, shape: Sequence[int]) -> go.Figure:
    """The axes of a one-image figure pinned to the image (``shape`` (H, W) in pixels): plotly.js otherwise
    widens an axis's range to take in the annotations that name the rows, on the left of the image, and the
    image then fills only part of its box (714 of 930 px of width at 1920x1080, in presenter mode). The names
    stay in the left margin, which is made for them (``wrapped_strips`` sizes it)."""
    h, w = (int(v) for v in shape[:2])
    fig.update_xaxes(range=[-0.5, w - 0.5], autorange=False)
    fig.update_yaxes(range=[h - 0.5, -0.5], autorange=False)
    return fig


def traversal_strips(images: np.ndarray, image_shape: Sequence[int], row_titles: Sequence[str], t: np.ndarray,
                     unit: str = "σ", title: str | None = None, height: int | None = None,
                     per_row: int | None = None, title_every: int = 1) -> go.Figure:
    """One strip per latent dimension: ``images`` (rows * steps, D), row-major, with the
    traversal offsets ``t`` (steps,) as column titles. ``per_row``: wrap each strip after that many
    images (:func:`wrapped_strips`; a title's " (" starts a new line of its name). ``title_every``: title
    only every that many columns, from the first (presenter mode, 16 rows at 1280x720: images about 30 px
    wide, under titles such as "-2.2σ" about 40 px wide at presenter size, which ran into each other)."""
    cols = [(f"{v:+.1f}{unit}" if abs(v) > 1e-9 else "0") if i % max(1, title_every) == 0 else ""
            for i, v in enumerate(t)]
    if per_row is not None:
        imgs = as_images(images, image_shape)
        steps = len(t)
        rows = {str(name).replace(" · ", "\n").replace(" (", "\n("): imgs[r * steps:(r + 1) * steps]
                for r, name in enumerate(row_titles)}
        return wrapped_strips(rows, image_shape, cols, per_row, title=title, height=height)
    return image_grid(images, image_shape, ncols=len(t), title=title, row_titles=row_titles, col_titles=cols,
                      height=height)


def samples_map(xy: np.ndarray, labels: np.ndarray, samples_xy: np.ndarray, title: str | None,
                axis_titles: tuple[str, str], class_names: Sequence[str] | None = None, height: int = 430,
                off: np.ndarray | None = None) -> go.Figure:
    """Codes of real images (coloured by class) with decoded-sample codes on top: black
    crosses, or, given ``off`` (M,) booleans, open red-orange diamonds for the samples whose
    image is off the decoder's manifold."""
    xy = np.asarray(xy, dtype=float)
    fig = latent_scatter(xy, labels, title=title, axis_titles=axis_titles, height=height,
                         marker_size=4 if len(xy) > 1000 else 6, class_names=class_names)
    s = np.asarray(samples_xy, dtype=float)
    off = np.zeros(len(s), bool) if off is None else np.asarray(off, bool)
    for mask, name, symbol, color in ((~off, "sample", "x-thin-open", "#000000"),
                                      (off, "sample off the manifold", "diamond-open", "#D55E00")):
        if mask.any():
            fig.add_trace(go.Scatter(x=s[mask, 0], y=s[mask, 1], mode="markers", name=name,
                                     marker=dict(size=7, symbol=symbol, color=color, opacity=0.85,
                                                 line=dict(width=1.5, color=color)),
                                     customdata=np.flatnonzero(mask),
                                     hovertemplate=f"{name} #%{{customdata}}<extra></extra>"))
    # Below the x-axis title whatever the height (as in explorer_map): -0.24 put it over the axis's ticks and
    # title once presenter mode enlarged them.
    fig.update_layout(legend=dict(title="", orientation="h", yanchor="top", y=-min(0.3, 90 / max(height - 120, 100)),
                                  x=0, font=dict(size=11), itemsizing="constant"))
    return fig
