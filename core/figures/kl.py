"""Figures and formula text for the KL divergence page (pure: numbers in, ``go.Figure`` or LaTeX out).

Every number drawn here comes from :mod:`core.kl` (closed forms, densities, the KL integrand),
so a figure can never disagree with the KL value printed next to it. Colours are Okabe-Ito
(colour-blind safe); the signed integrand also uses a hatch pattern for its negative part, so
the sign is readable without colour.

Builders
--------
* :func:`density_figure`: p and q, and the signed integrand p log(p/q) whose area is KL(p||q).
* :func:`mc_convergence_figure`: a Monte Carlo estimate against n, with a ±2 stderr band.
* :func:`fit_animation_figure`: forward vs reverse KL fits of one Gaussian to a mixture, as
  Plotly frames (Play/Pause and a step slider; plays in the browser).
* :func:`mvn_figure`: 2-D Gaussians as 1- and 2-sigma covariance ellipses.
* :func:`vae_kl_map`: KL(N(mu, sigma^2) || N(0, 1)) over (mu, log sigma^2), with points marked.
* :func:`posterior_vs_prior`: an encoder's per-dimension mu ± 1.96 sigma against the prior.
* ``latex_*``: the formulas with the current numbers substituted.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from core import kl as klm
from core.figures import FONT, OKABE_ITO

P_COLOR, Q_COLOR = OKABE_ITO[0], OKABE_ITO[3]  # blue p, vermillion q
POS_COLOR, NEG_COLOR = OKABE_ITO[2], OKABE_ITO[1]  # green: p > q, orange: p < q
FWD_COLOR, REV_COLOR = OKABE_ITO[0], OKABE_ITO[3]
GREY = "#9A9A9A"
Z95 = 1.959963984540054  # the 97.5% quantile of N(0, 1): mu ± Z95 sigma holds 95% of the mass


# ---- fast figure construction --------------------------------------------------------------------
# These figures are redrawn on every slider move, and Plotly's property validation (above all of the
# template) costs 20-60 ms per figure. So they are built unvalidated from plain dicts, in the house
# style of ``core.figures.style`` (template, font, margins); tests validate every figure instead.

@lru_cache(maxsize=1)
def _template() -> dict:
    """plotly_white, trimmed to its layout and the trace types drawn here (the full template is
    7 kB that every figure would deep-copy and send)."""
    full = pio.templates["plotly_white"].to_plotly_json()
    return {"layout": full["layout"], "data": {k: full["data"][k] for k in ("scatter", "contour", "bar")}}


def _f32(a) -> np.ndarray:
    """Curves are sent to the browser as float32 (half the bytes; far below what a screen resolves)."""
    return np.asarray(a, dtype=np.float32)


def _trace(kind: str, **props):
    return getattr(go, kind)(_validate=False, **props)


TEXT_SIZE = 13  # axis ticks, axis titles and legends; pass a larger ``text_size`` for a projector


def _figure(traces: list, layout: dict, title: str | None = None, height: int | None = None,
            fixed_margin: dict | None = None, text_size: int = TEXT_SIZE) -> go.Figure:
    """A figure in the house style.

    Tick labels, axis titles and legends get an explicit ``text_size``: Streamlit's chart theme sets
    their sizes in the template, so the figure-wide font (which presenter mode enlarges) does not
    reach them. ``fixed_margin`` (scaled with ``text_size``) turns off the axes' automatic margins:
    automargin makes Plotly lay the figure out twice, which doubles the time a browser takes to
    draw it (measured with plotly.js: 43 ms -> 21 ms for :func:`density_figure`)."""
    lay = dict(template=_template(), font=dict(FONT), margin=dict(l=10, r=10, t=50 if title else 20, b=10))
    if title:
        lay["title"] = dict(text=title, x=0.01, xanchor="left", font=dict(size=text_size + 2))
    if height:
        lay["height"] = height
    lay.update(layout)
    grow = text_size / TEXT_SIZE
    for name, axis in lay.items():
        if name.startswith(("xaxis", "yaxis")) and isinstance(axis, dict):
            axis["tickfont"] = dict(size=text_size)
            if isinstance(axis.get("title"), dict):
                axis["title"]["font"] = dict(size=text_size)
            if fixed_margin is not None:
                axis["automargin"] = False
    legend = lay.setdefault("legend", {})
    legend["font"] = dict(size=text_size)
    if fixed_margin is not None:
        lay["margin"] = {k: round(v * grow) if k in ("l", "b") else v for k, v in fixed_margin.items()}
    return go.Figure(data=traces, layout=lay, _validate=False)


# ---- number formatting for formulas -------------------------------------------------------------

def fmt(v: float, digits: int = 3) -> str:
    """A short exact-looking number: at most ``digits`` decimals, no trailing zeros, no "-0"."""
    s = f"{float(v):.{digits}f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _paren(v: float) -> str:
    """``fmt(v)``, in parentheses when negative (for use inside a power or a difference)."""
    s = fmt(v)
    return f"({s})" if s.startswith("-") else s


def _signed(v: float, digits: int = 4) -> str:
    """`` + 0.1234`` or `` - 0.1234`` (for a sum of terms)."""
    return f" - {abs(v):.{digits}f}" if v < 0 else f" + {v:.{digits}f}"


# ---- 1-D: densities and the signed integrand ------------------------------------------------------

def grid_for(mus: Sequence[float], sigmas: Sequence[float], width: float = 4.5, per_curve: int = 160,
             base: int = 160) -> np.ndarray:
    """A sorted x grid covering every mean ± ``width`` sigma: ``base`` even points over the whole span
    plus ``per_curve`` points inside each curve's own span, so a narrow peak next to a wide one is
    still drawn smoothly. Shape (<= base + per_curve * len(mus),)."""
    mus, sigmas = np.asarray(mus, float), np.asarray(sigmas, float)
    lo, hi = float(np.min(mus - width * sigmas)), float(np.max(mus + width * sigmas))
    parts = [np.linspace(lo, hi, base)] + [np.linspace(m - width * sd, m + width * sd, per_curve)
                                           for m, sd in zip(mus, sigmas)]
    return np.unique(np.concatenate(parts))


def density_figure(mu_p: float, sigma_p: float, mu_q: float, sigma_q: float, height: int = 520,
                   text_size: int = TEXT_SIZE) -> go.Figure:
    """Top: the densities of p = N(mu_p, sigma_p^2) and q = N(mu_q, sigma_q^2).
    Bottom: the integrand p(x) log(p(x)/q(x)), shaded green where it is positive (p > q) and
    orange, hatched, where it is negative (p < q); its signed area is KL(p||q).
    Traces: 0 p, 1 q, 2 positive part, 3 negative part, 4 the integrand (all on the same x grid)."""
    x = grid_for([mu_p, mu_q], [sigma_p, sigma_q])
    p = np.asarray(klm.normal_pdf(x, mu_p, sigma_p))
    q = np.asarray(klm.normal_pdf(x, mu_q, sigma_q))
    f = np.asarray(klm.kl_integrand(x, mu_p, sigma_p, mu_q, sigma_q))
    kl_pq = klm.kl_normal(mu_p, sigma_p, mu_q, sigma_q)
    lower = dict(xaxis="x2", yaxis="y2")
    x, p, q, f = _f32(x), _f32(p), _f32(q), _f32(f)
    traces = [
        _trace("Scatter", x=x, y=p, name=f"p = N({fmt(mu_p)}, {fmt(sigma_p)}²)", mode="lines",
               line=dict(color=P_COLOR, width=3), hovertemplate="p(x)=%{y:.4f}<extra></extra>"),
        _trace("Scatter", x=x, y=q, name=f"q = N({fmt(mu_q)}, {fmt(sigma_q)}²)", mode="lines",
               line=dict(color=Q_COLOR, width=3, dash="dash"), hovertemplate="q(x)=%{y:.4f}<extra></extra>"),
        _trace("Scatter", x=x, y=np.maximum(f, 0.0), name="p > q: adds to KL", mode="lines", fill="tozeroy",
               line=dict(color=POS_COLOR, width=0.5), fillcolor="rgba(0,158,115,0.45)", hoverinfo="skip", **lower),
        _trace("Scatter", x=x, y=np.minimum(f, 0.0), name="p < q: subtracts", mode="lines", fill="tozeroy",
               line=dict(color=NEG_COLOR, width=0.5), fillcolor="rgba(230,159,0,0.45)",
               fillpattern=dict(shape="/", fgcolor=NEG_COLOR, size=8, solidity=0.25), hoverinfo="skip", **lower),
        _trace("Scatter", x=x, y=f, name="integrand", mode="lines", line=dict(color="#222", width=1.5),
               showlegend=False, hovertemplate="p·log(p/q)=%{y:.4f}<extra></extra>", **lower),
    ]
    sub = dict(xref="paper", yref="paper", x=0.5, xanchor="center", yanchor="bottom", showarrow=False,
               font=dict(size=14))
    layout = dict(
        xaxis=dict(anchor="y", showticklabels=False),
        yaxis=dict(domain=[0.53, 1.0], title=dict(text="density"), rangemode="tozero"),
        xaxis2=dict(anchor="y2", matches="x", title=dict(text="x")),
        yaxis2=dict(domain=[0.0, 0.40], title=dict(text="p·log(p/q)"), zeroline=True, zerolinecolor="#666"),
        annotations=[dict(text="Densities", y=1.0, **sub),
                     dict(text=f"Integrand p(x)·log(p(x)/q(x)): its signed area is KL(p‖q) = {kl_pq:.4f} nats",
                          y=0.42, **sub)],
        legend=dict(orientation="h", y=1.08, x=0, yanchor="bottom"), hovermode="x unified",
        uirevision="kl-densities")
    return _figure(traces, layout, None, height, fixed_margin=dict(l=78, r=16, t=64, b=52), text_size=text_size)


# ---- Monte Carlo ------------------------------------------------------------------------------------

def mc_convergence_figure(ns: Sequence[int], estimates: Sequence[float], stderrs: Sequence[float],
                          closed_form: float, n_current: int | None = None, est_current: float | None = None,
                          height: int = 400, text_size: int = TEXT_SIZE) -> go.Figure:
    """The running MC estimate (ns,) against n on a log axis, a ±2 stderr band, the closed form
    as a dashed line, and the current n marked.
    Traces: 0 band top, 1 band bottom (filled to 0), 2 estimate, 3 closed form, [4 current n]."""
    ns = np.asarray(ns, dtype=float)
    est = np.asarray(estimates, dtype=float)
    se = np.asarray(stderrs, dtype=float)
    traces = [
        _trace("Scatter", x=ns, y=est + 2 * se, mode="lines", line=dict(width=0), showlegend=False, hoverinfo="skip"),
        _trace("Scatter", x=ns, y=est - 2 * se, mode="lines", line=dict(width=0), fill="tonexty",
               fillcolor="rgba(0,114,178,0.18)", name="±2 standard errors", hoverinfo="skip"),
        _trace("Scatter", x=ns, y=est, mode="lines+markers", name="MC estimate (first n samples)",
               line=dict(color=P_COLOR, width=2.5), marker=dict(size=5), customdata=se,
               hovertemplate="n=%{x:,}<br>estimate=%{y:.4f}<br>stderr=%{customdata:.4f}<extra></extra>"),
        _trace("Scatter", x=[float(ns.min()), float(ns.max())], y=[closed_form, closed_form], mode="lines",
               name=f"closed form = {closed_form:.4f}", line=dict(color="#000", dash="dash", width=2), hoverinfo="skip"),
    ]
    if n_current is not None and est_current is not None:
        traces.append(_trace("Scatter", x=[n_current], y=[est_current], mode="markers", name=f"your n = {n_current:,}",
                             marker=dict(symbol="diamond", size=14, color=Q_COLOR, line=dict(color="#000", width=1)),
                             hovertemplate="n=%{x:,}<br>estimate=%{y:.4f}<extra></extra>"))
    # dtick=1: one label per power of 10 (Plotly draws the in-between "2" and "5" labels at 3/4 size: too small)
    layout = dict(xaxis=dict(type="log", dtick=1, title=dict(text="number of samples n (log scale)")),
                  yaxis=dict(title=dict(text="KL(p‖q) estimate (nats)")),
                  legend=dict(orientation="h", y=-0.3), uirevision="kl-mc")
    return _figure(traces, layout, "Monte Carlo estimate approaching the closed form", height,
                   fixed_margin=dict(l=78, r=16, t=50, b=60), text_size=text_size)


# ---- forward vs reverse fit (animation) --------------------------------------------------------------

def frame_indices(n_states: int, dense: int = 40, every_dense: int = 2, every_sparse: int = 10) -> list[int]:
    """Which optimisation states to show as frames: dense at the start (where Adam moves fast),
    sparser later, always including the first and the last state."""
    idx = set(range(0, min(dense, n_states), every_dense)) | set(range(dense, n_states, every_sparse))
    idx |= {0, n_states - 1}
    return sorted(i for i in idx if 0 <= i < n_states)


def fit_animation_figure(weights: Sequence[float], mus: Sequence[float], sigmas: Sequence[float],
                         forward: Sequence[tuple[float, float, float]], reverse: Sequence[tuple[float, float, float]],
                         height: int = 480, frame_ms: int = 70, text_size: int = TEXT_SIZE) -> go.Figure:
    """Two panels: q fitted to the mixture p by forward KL(p||q) (left) and reverse KL(q||p) (right).

    ``forward`` and ``reverse`` are trajectories of (mu, sigma, kl) from
    :func:`core.kl.fit_gaussian_to_mixture` (same length). The figure's ``frames`` move both q's
    through the optimisation (traces 2 and 5); Play/Pause buttons and a step slider control it in
    the browser. A dotted curve shows where each fit ends, so a still image tells the story too.
    """
    if len(forward) != len(reverse) or not forward:
        raise ValueError("forward and reverse trajectories must be non-empty and equally long")
    mus_a, sig_a = np.asarray(mus, float), np.asarray(sigmas, float)
    ends = [forward[0], forward[-1], reverse[0], reverse[-1]]  # the view: p, and where each q starts and ends
    x = grid_for(np.concatenate([mus_a, [s[0] for s in ends]]), np.concatenate([sig_a, [s[1] for s in ends]]),
                 width=3.5, per_curve=25, base=150)
    p = _f32(klm.mixture_pdf(x, weights, mus, sigmas))

    def q_of(state):
        return _f32(klm.normal_pdf(x, state[0], state[1]))

    x_sent = _f32(x)
    narrowest = min(s[1] for s in list(forward) + list(reverse))
    ymax = 1.05 * max(float(p.max()), 1.0 / (narrowest * math.sqrt(2 * math.pi)))  # the tallest q ever drawn
    idx = frame_indices(len(forward))

    traces = []
    for col, traj, color, name in ((1, forward, FWD_COLOR, "forward"), (2, reverse, REV_COLOR, "reverse")):
        axes = dict(xaxis="x" if col == 1 else "x2", yaxis="y" if col == 1 else "y2")
        traces += [
            _trace("Scatter", x=x_sent, y=p, mode="lines", fill="tozeroy", name="p (two modes)",
                   line=dict(color=GREY, width=1.5), fillcolor="rgba(150,150,150,0.35)",
                   showlegend=col == 1, legendgroup="p", hoverinfo="skip", **axes),
            _trace("Scatter", x=x_sent, y=q_of(traj[-1]), mode="lines", name="where each q ends",
                   line=dict(color=color, width=1.5, dash="dot"), showlegend=col == 1,
                   legendgroup="end", hoverinfo="skip", **axes),
            _trace("Scatter", x=x_sent, y=q_of(traj[0]), mode="lines", name=f"q ({name} KL fit)",
                   line=dict(color=color, width=3.5), hoverinfo="skip", **axes),
        ]
    moving = [2, 5]  # trace indices of the two animated q curves

    def titles(i: int) -> list[dict]:
        f, r = forward[i], reverse[i]
        common = dict(xref="paper", yref="paper", y=1.0, yanchor="bottom", showarrow=False, font=dict(size=14))
        return [
            dict(text=f"<b>Forward KL(p‖q)</b>: mode covering<br>step {i}: μ={f[0]:.2f}, σ={f[1]:.2f}, KL={f[2]:.3f}",
                 x=0.2375, xanchor="center", **common),
            dict(text=f"<b>Reverse KL(q‖p)</b>: mode seeking<br>step {i}: μ={r[0]:.2f}, σ={r[1]:.2f}, KL={r[2]:.3f}",
                 x=0.7625, xanchor="center", **common),
        ]

    still = dict(frame=dict(duration=0, redraw=False), mode="immediate", transition=dict(duration=0))
    play = dict(frame=dict(duration=frame_ms, redraw=False), transition=dict(duration=0), fromcurrent=True,
                mode="immediate")
    xr = [float(x[0]), float(x[-1])]
    layout = dict(
        xaxis=dict(domain=[0.0, 0.475], range=xr),
        xaxis2=dict(domain=[0.525, 1.0], range=xr, anchor="y2"),
        yaxis=dict(range=[0, ymax], title=dict(text="density")),
        yaxis2=dict(range=[0, ymax], matches="y", anchor="x2", showticklabels=False),
        annotations=titles(0),
        updatemenus=[dict(type="buttons", direction="left", x=0.0, y=-0.17, xanchor="left", yanchor="top",
                          pad=dict(r=8, t=0), showactive=False,
                          buttons=[dict(label="▶ Play", method="animate", args=[None, play]),
                                   dict(label="⏸ Pause", method="animate", args=[[None], still])])],
        sliders=[dict(active=0, x=0.2, len=0.8, y=-0.09, yanchor="top", pad=dict(t=0),
                      currentvalue=dict(prefix="Adam step ", font=dict(size=13)),
                      steps=[dict(label=str(i), method="animate", args=[[str(i)], still]) for i in idx])],
        legend=dict(orientation="h", y=-0.42, x=0), uirevision="kl-fit", margin=dict(l=10, r=10, t=70, b=10))
    fig = _figure(traces, layout, None, height, text_size=text_size)
    fig.frames = [go.Frame(name=str(i), traces=moving, layout=dict(annotations=titles(i)), _validate=False,
                           data=[_trace("Scatter", y=q_of(forward[i])), _trace("Scatter", y=q_of(reverse[i]))])
                  for i in idx]
    return fig


# ---- 2-D Gaussians ------------------------------------------------------------------------------------

def ellipse_points(mu: Sequence[float], cov: np.ndarray, radius: float, points: int = 120) -> np.ndarray:
    """The ellipse {x : (x-mu)^T cov^-1 (x-mu) = radius^2} as (points, 2): mu + radius * L u for
    u on the unit circle, with cov = L L^T (Cholesky). Raises ValueError if cov is not positive definite."""
    cov = np.asarray(cov, float)
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError as exc:
        raise ValueError("the covariance is not positive definite") from exc
    t = np.linspace(0, 2 * np.pi, points)
    u = np.stack([np.cos(t), np.sin(t)])
    return (np.asarray(mu, float)[:, None] + radius * chol @ u).T


def mvn_figure(mu0: Sequence[float], cov0: np.ndarray, mu1: Sequence[float], cov1: np.ndarray,
               names: tuple[str, str] = ("p", "q"), height: int = 480, text_size: int = TEXT_SIZE) -> go.Figure:
    """Two 2-D Gaussians drawn as covariance ellipses at Mahalanobis radius 1 and 2 (they hold
    39% and 86% of the mass in 2-D), with their means. Equal axis scales, so shapes are true.
    Traces per Gaussian: 1σ ellipse, 2σ ellipse, mean."""
    traces = []
    for (mu, cov, color, dash, name, symbol) in ((mu0, cov0, P_COLOR, None, names[0], "x"),
                                                 (mu1, cov1, Q_COLOR, "dash", names[1], "circle")):
        for r, width in ((1, 3), (2, 1.5)):
            pts = ellipse_points(mu, cov, r)
            traces.append(_trace("Scatter", x=pts[:, 0], y=pts[:, 1], mode="lines", name=f"{name}: {r}σ ellipse",
                                 line=dict(color=color, width=width, dash=dash), legendgroup=name, hoverinfo="skip"))
        traces.append(_trace("Scatter", x=[float(mu[0])], y=[float(mu[1])], mode="markers", name=f"{name}: mean",
                             marker=dict(color=color, size=11, symbol=symbol), legendgroup=name,
                             hovertemplate=f"{name} mean (%{{x:.2f}}, %{{y:.2f}})<extra></extra>"))
    layout = dict(xaxis=dict(title=dict(text="z₁"), zeroline=True, zerolinecolor="#ccc"),
                  yaxis=dict(title=dict(text="z₂"), zeroline=True, zerolinecolor="#ccc", scaleanchor="x", scaleratio=1),
                  legend=dict(orientation="h", y=-0.2), uirevision="kl-mvn")
    return _figure(traces, layout, "Covariance ellipses (1σ solid, 2σ thin)", height,
                   fixed_margin=dict(l=64, r=16, t=50, b=60), text_size=text_size)


# ---- the VAE's KL term --------------------------------------------------------------------------------

def _nice_step(span: float, target: int = 12) -> float:
    raw = span / target
    mag = 10 ** np.floor(np.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return float(m * mag)
    return float(10 * mag)


def vae_kl_map(mu: float, logvar: float, dims_mu: Sequence[float] | None = None,
               dims_logvar: Sequence[float] | None = None, height: int = 480, text_size: int = TEXT_SIZE) -> go.Figure:
    """Contours of KL(N(mu, sigma^2) || N(0, 1)) = 1/2 (mu^2 + sigma^2 - 1 - log sigma^2) over
    (mu, log sigma^2), from :func:`core.kl.kl_to_standard_normal`. Marks the prior (0, 0) where the
    KL is 0, the current point (mu, logvar) (last trace), and optionally an encoder's dimensions (K,)
    as dots. Traces: 0 contour, 1 prior, [2 dimensions], last: the point."""
    pts_mu = [mu] + list(dims_mu if dims_mu is not None else [])
    pts_lv = [logvar] + list(dims_logvar if dims_logvar is not None else [])
    m_lo, m_hi = min(-3.0, min(pts_mu) - 0.5), max(3.0, max(pts_mu) + 0.5)
    l_lo, l_hi = min(-6.0, min(pts_lv) - 0.5), max(2.5, max(pts_lv) + 0.5)
    mg = np.linspace(m_lo, m_hi, 71)
    lg = np.linspace(l_lo, l_hi, 71)
    z = np.asarray(klm.kl_to_standard_normal(mg[None, :], lg[:, None]))  # (len(lg), len(mg))
    zmax = float(np.percentile(z, 90))
    step = _nice_step(zmax)
    traces = [
        _trace("Contour", x=_f32(mg), y=_f32(lg), z=_f32(z), colorscale="Cividis", reversescale=True, zmin=0, zmax=zmax,
               # No labels on the lines: Plotly places them on every redraw (~110 ms), and the point moves
               # with the slider in the browser. The colour bar's ticks are the contour levels instead.
               contours=dict(start=0, end=zmax, size=step, showlabels=False),
               colorbar=dict(title=dict(text="KL (nats)", side="right"), tick0=0, dtick=step),
               line=dict(width=0.8, color="rgba(0,0,0,0.35)"), name="KL",
               hovertemplate="μ=%{x:.2f}<br>log σ²=%{y:.2f}<br>KL=%{z:.3f} nats<extra></extra>"),
        _trace("Scatter", x=[0], y=[0], mode="markers", name="prior N(0, 1): KL = 0",
               marker=dict(symbol="circle-open", size=18, color="#000", line=dict(width=3)),
               hovertemplate="the prior N(0, 1): μ = 0, log σ² = 0, KL = 0<extra></extra>"),
    ]
    if dims_mu is not None and dims_logvar is not None:
        dm, dl = np.asarray(dims_mu, float), np.asarray(dims_logvar, float)
        kld = np.asarray(klm.kl_to_standard_normal(dm, dl))
        traces.append(_trace(
            "Scatter", x=dm, y=dl, mode="markers", name="this image's latent dimensions",
            marker=dict(size=9, color=OKABE_ITO[5], line=dict(color="#000", width=1)),
            customdata=np.stack([np.arange(1, len(dm) + 1), kld], axis=1),
            hovertemplate="z%{customdata[0]:.0f}: μ=%{x:.2f}, log σ²=%{y:.2f}<br>KL=%{customdata[1]:.3f} nats<extra></extra>"))
    cur = float(klm.kl_to_standard_normal(mu, logvar))
    traces.append(_trace("Scatter", x=[mu], y=[logvar], mode="markers+text", text=[f"  KL = {cur:.3f}"],
                         textposition="middle right", name="your point",
                         marker=dict(symbol="star", size=20, color=OKABE_ITO[3], line=dict(color="#000", width=1.5)),
                         textfont=dict(color="#000", size=14), hovertemplate="μ=%{x:.2f}<br>log σ²=%{y:.2f}<extra></extra>"))
    layout = dict(xaxis=dict(title=dict(text="μ (posterior mean)"), range=[m_lo, m_hi]),
                  yaxis=dict(title=dict(text="log σ² (posterior log-variance)"), range=[l_lo, l_hi]),
                  legend=dict(orientation="h", y=-0.2), uirevision="kl-map")
    return _figure(traces, layout, "KL(N(μ, σ²) ‖ N(0, 1)): the price of each latent dimension", height,
                   fixed_margin=dict(l=78, r=16, t=50, b=60), text_size=text_size)


def posterior_vs_prior(mu: Sequence[float], logvar: Sequence[float], threshold: float = 0.01,
                       height: int | None = None, text_size: int = TEXT_SIZE) -> go.Figure:
    """An encoder's posterior per latent dimension (mu and logvar, each (K,)): mu_j ± 1.96 sigma_j
    (its 95% interval) against the prior N(0, 1) (grey band: ± 1.96). Dimensions whose KL
    (:func:`core.kl.kl_to_standard_normal`) is at most ``threshold`` nats (the same rule as
    :func:`core.figures.kl_bars`) are grey: they carry almost no information about THIS image.
    (Whether a dimension has collapsed is a property over the data: core.units.)"""
    mu, logvar = np.asarray(mu, float).ravel(), np.asarray(logvar, float).ravel()
    sigma = np.exp(0.5 * logvar)
    kl = np.asarray(klm.kl_to_standard_normal(mu, logvar)).ravel()
    k = len(mu)
    names = np.array([f"z{j + 1}" for j in range(k)])
    active = kl > threshold
    traces = [_trace("Scatter", x=[None], y=[None], mode="markers", name="prior N(0,1): 95% interval",
                     marker=dict(symbol="square", size=14, color="rgba(150,150,150,0.5)"))]
    for flag, color, label in ((True, OKABE_ITO[0], f"KL > {threshold:g} nats for this image: μ ± 1.96σ"),
                               (False, "#8C8C8C", f"KL ≤ {threshold:g} nats: almost no information about this image")):
        m = active == flag
        if not m.any():
            continue
        traces.append(_trace(
            "Scatter", x=mu[m], y=names[m].tolist(), mode="markers", name=label,
            marker=dict(size=10, color=color, symbol="circle" if flag else "square"),
            error_x=dict(type="data", array=Z95 * sigma[m], color=color, thickness=2.5, width=6),
            customdata=np.stack([sigma[m], kl[m]], axis=1),
            hovertemplate="%{y}: μ=%{x:.3f}, σ=%{customdata[0]:.3f}<br>KL=%{customdata[1]:.3f} nats<extra></extra>"))
    lo = float(min(-2.5, np.min(mu - Z95 * sigma) - 0.2))
    hi = float(max(2.5, np.max(mu + Z95 * sigma) + 0.2))
    layout = dict(
        shapes=[dict(type="rect", xref="x", yref="paper", x0=-Z95, x1=Z95, y0=0, y1=1, layer="below",
                     fillcolor="rgba(150,150,150,0.25)", line=dict(width=0)),
                dict(type="line", xref="x", yref="paper", x0=0, x1=0, y0=0, y1=1, line=dict(color="#888", width=1))],
        xaxis=dict(title=dict(text="z value"), range=[lo, hi]),
        yaxis=dict(type="category", categoryorder="array", categoryarray=list(names[::-1])),
        legend=dict(orientation="h", y=-0.12, yanchor="top"), uirevision="kl-post")
    return _figure(traces, layout, "Encoder posterior q(z|x) per dimension vs the prior N(0, 1)", height or 160 + 26 * k,
                   text_size=text_size)


# ---- formulas with the numbers put in ------------------------------------------------------------------

def latex_kl_normal(mu_a: float, sigma_a: float, mu_b: float, sigma_b: float, a: str = "p", b: str = "q") -> str:
    """KL(a||b) for univariate normals, as LaTeX: the formula, the numbers substituted, the three
    terms (from :func:`core.kl.kl_normal_terms`) and the total (from :func:`core.kl.kl_normal`)."""
    t_log, t_quad, t_const = klm.kl_normal_terms(mu_a, sigma_a, mu_b, sigma_b)
    total = klm.kl_normal(mu_a, sigma_a, mu_b, sigma_b)
    return (
        rf"\begin{{aligned}}\mathrm{{KL}}({a}\,\|\,{b}) &= \log\frac{{\sigma_{b}}}{{\sigma_{a}}}"
        rf" + \frac{{\sigma_{a}^2 + (\mu_{a}-\mu_{b})^2}}{{2\sigma_{b}^2}} - \frac12 \\"
        rf" &= \log\frac{{{fmt(sigma_b)}}}{{{fmt(sigma_a)}}}"
        rf" + \frac{{{fmt(sigma_a)}^2 + ({fmt(mu_a)} - {_paren(mu_b)})^2}}{{2\cdot {fmt(sigma_b)}^2}} - \frac12 \\"
        rf" &= {t_log:.4f}{_signed(t_quad)}{_signed(t_const)} = \mathbf{{{total:.4f}}}\end{{aligned}}"
    )


def latex_vae_kl(mu: float, logvar: float) -> str:
    """The VAE's KL term for one dimension, with the numbers substituted (Kingma & Welling, App. B)."""
    total = float(klm.kl_to_standard_normal(mu, logvar))
    var = float(np.exp(logvar))
    return (
        r"\begin{aligned}\mathrm{KL}\big(\mathcal N(\mu,\sigma^2)\,\|\,\mathcal N(0,1)\big)"
        r" &= \tfrac12\left(\mu^2 + \sigma^2 - 1 - \log\sigma^2\right) \\"
        rf" &= \tfrac12\left({_paren(mu)}^2 + {var:.4f} - 1 - {_paren(logvar)}\right) = \mathbf{{{total:.4f}}}\end{{aligned}}"
    )


def latex_kl_mvn(mu0, cov0, mu1, cov1, a: str = "p", b: str = "q") -> str:
    """KL(a||b) for k-dimensional Gaussians: the formula and its terms, from :func:`core.kl.kl_mvn_terms`."""
    t = klm.kl_mvn_terms(mu0, cov0, mu1, cov1)
    return (
        rf"\begin{{aligned}}\mathrm{{KL}}({a}\,\|\,{b}) &= \tfrac12\Big[\operatorname{{tr}}(\Sigma_{b}^{{-1}}\Sigma_{a})"
        rf" + (\mu_{b}-\mu_{a})^\top\Sigma_{b}^{{-1}}(\mu_{b}-\mu_{a}) - k + \log\tfrac{{\det\Sigma_{b}}}{{\det\Sigma_{a}}}\Big] \\"
        rf" &= \tfrac12\big[{t['trace']:.4f} + {t['mahalanobis']:.4f} - {t['k']}{_signed(t['logdet'])}\big]"
        rf" = \mathbf{{{t['kl']:.4f}}}\end{{aligned}}"
    )


# ---- the VAE's KL term in parts, and the ELBO against log p(x) ------------------------------------------

PART_COLORS = {"mu2": OKABE_ITO[0], "sigma2": OKABE_ITO[5], "neg_log_sigma2": OKABE_ITO[3], "minus_one": GREY}


def nats(v: float, digits: int = 2) -> str:
    """``v`` with ``digits`` decimals and a true minus sign, never "-0.00"."""
    s = f"{float(v):.{digits}f}"
    if float(s) == 0:
        s = s.lstrip("-")
    return s.replace("-", "−")


def kl_parts_figure(mu: Sequence[float], logvar: Sequence[float], height: int | None = None,
                    text_size: int = TEXT_SIZE) -> go.Figure:
    """One image's KL per latent dimension split into its four parts (:func:`core.kl.kl_standard_normal_parts`):
    ½μ², ½σ², −½ log σ² and −½, stacked (positive parts up, negative parts down), and each dimension's
    total KL as a black diamond. ``mu``, ``logvar``: (K,). Traces 0-3 the parts, 4 the totals."""
    mu, logvar = np.asarray(mu, float).ravel(), np.asarray(logvar, float).ravel()
    parts = klm.kl_standard_normal_parts(mu, logvar)
    names = [f"z{j + 1}" for j in range(len(mu))]
    traces = [_trace("Bar", x=names, y=parts[key], name=label, marker=dict(color=PART_COLORS[key]),
                     hovertemplate=f"%{{x}}: {label} = %{{y:.3f}} nats<extra></extra>")
              for key, label in zip(("mu2", "sigma2", "neg_log_sigma2", "minus_one"), klm.KL_PART_NAMES)]
    traces.append(_trace("Scatter", x=names, y=parts["total"], mode="markers", name="KL_j (the sum)",
                         marker=dict(symbol="diamond", size=11, color="#000"),
                         hovertemplate="%{x}: KL = %{y:.3f} nats<extra></extra>"))
    layout = dict(barmode="relative", xaxis=dict(title=dict(text="latent dimension")),
                  yaxis=dict(title=dict(text="nats"), zeroline=True, zerolinecolor="#444"),
                  legend=dict(x=1.01, y=1, xanchor="left", yanchor="top"), uirevision="kl-parts")
    return _figure(traces, layout, "This image's KL per dimension, in its four parts", height or 420,
                   text_size=text_size)


def elbo_waterfall(recon: float, kl: float, log_px: float, log_px_se: float, k: int, height: int = 440,
                   text_size: int = TEXT_SIZE) -> go.Figure:
    """From the reconstruction term down to the ELBO and up to log p(x), in nats for one image (the bars
    are labelled briefly, so they stay apart on a projector):
    E_q[log p(x|z)] = −recon, − KL(q(z|x) ‖ p(z)), = ELBO, + the gap (≈ KL(q(z|x) ‖ p(z|x))),
    = log p(x) estimated by L_k with ± 1.96 standard errors. Trace 0 is the waterfall (its ``y``:
    −recon, −kl, ELBO, gap, log p(x)); trace 1 the error bar on log p(x)."""
    elbo = -recon - kl
    gap = log_px - elbo
    cats = ["E_q<br>log p(x|z)", "− KL", "ELBO", "+ gap", f"log p(x)<br>k = {k:,}"]
    ys = [-recon, -kl, elbo, gap, log_px]
    texts = [nats(v) for v in ys]
    wf = go.Waterfall(x=cats, y=ys, measure=["absolute", "relative", "total", "relative", "total"],
                      text=texts, textposition="outside", cliponaxis=False, name="nats",
                      increasing=dict(marker=dict(color=OKABE_ITO[2])), decreasing=dict(marker=dict(color=OKABE_ITO[3])),
                      totals=dict(marker=dict(color=OKABE_ITO[0])), connector=dict(line=dict(color="#888", dash="dot")),
                      hovertemplate="%{x}: %{y:.2f} nats<extra></extra>", textfont=dict(size=text_size))
    err = _trace("Scatter", x=[cats[-1]], y=[log_px], mode="markers", name="± 1.96 standard errors",
                 marker=dict(color="#000", size=6), error_y=dict(type="data", array=[1.96 * log_px_se], thickness=2.5,
                                                                 width=10, color="#000"),
                 hovertemplate=f"log p(x) = %{{y:.2f}} ± {1.96 * log_px_se:.2f} nats<extra></extra>")
    levels = [-recon, elbo, log_px]
    lo, hi = min(levels), max(levels)
    pad = max(4.0, 0.35 * (hi - lo))
    layout = dict(showlegend=False, xaxis=dict(title=dict(text=""), tickangle=0),
                  yaxis=dict(title=dict(text="nats (this image)"), range=[lo - pad, hi + pad]),
                  uirevision="elbo-wf")
    return _figure([wf, err], layout, "From the reconstruction term to the ELBO and to log p(x)", height,
                   text_size=text_size)


def gap_by_beta_figure(betas: Sequence[float], gaps: Sequence[float], gap_se: Sequence[float], current: float,
                       height: int = 360, text_size: int = TEXT_SIZE) -> go.Figure:
    """The gap log p(x) − ELBO (estimated as L_k − ELBO, a lower bound on KL(q(z|x) ‖ p(z|x))) of one
    image under each zoo model, with ± 1.96 standard errors; the current β is highlighted."""
    b = [f"β = {v:g}" for v in betas]
    g = np.asarray(gaps, float)
    colors = [OKABE_ITO[3] if float(v) == float(current) else OKABE_ITO[0] for v in betas]
    bar = _trace("Bar", x=b, y=g, marker=dict(color=colors), text=[nats(v) for v in g], textposition="inside",
                 insidetextanchor="start", textfont=dict(color="#fff", size=text_size), cliponaxis=False,
                 error_y=dict(type="data", array=1.96 * np.asarray(gap_se, float), color="#333"),
                 hovertemplate="%{x}: gap %{y:.2f} nats<extra></extra>", name="gap")
    layout = dict(showlegend=False, xaxis=dict(title=dict(text="model (16 latent dimensions)")),
                  yaxis=dict(title=dict(text="L_k − ELBO (nats)"), rangemode="tozero"), uirevision="gap-beta")
    return _figure([bar], layout, "The gap for this image under each β", height, text_size=text_size)


def latex_kl_parts_sum(mu: Sequence[float], logvar: Sequence[float]) -> str:
    """One image's KL as the sum of its parts over the K dimensions, with the numbers put in:
    Σ½μ² + Σ½σ² − Σ½ log σ² − K/2 = KL (each sum from :func:`core.kl.kl_standard_normal_parts`).
    Signs are written out, never "+ -x" or "-0.000"."""
    parts = klm.kl_standard_normal_parts(np.asarray(mu, float).ravel(), np.asarray(logvar, float).ravel())
    s = {k: float(np.sum(v)) for k, v in parts.items()}
    k = len(np.asarray(mu).ravel())
    neg = s["neg_log_sigma2"]  # = -Σ½ log σ², shown as its own signed term
    return (r"\begin{aligned}&\textstyle\sum_j \tfrac12\mu_j^2 + \sum_j\tfrac12\sigma_j^2"
            r" - \sum_j\tfrac12\log\sigma_j^2 - \tfrac{K}{2}\\ &= "
            + f"{nats(s['mu2'], 3)} + {nats(s['sigma2'], 3)} {'-' if neg < 0 and nats(neg, 3) != '0.000' else '+'} "
            f"{nats(abs(neg), 3)} - {k / 2:g} = {nats(s['total'], 3)}" + r"\end{aligned}")


# ---- the KL term on a 2-D latent map ----------------------------------------------------------------

DRAWN_COLOR = "#000000"


def _outline(cx: np.ndarray, cy: np.ndarray, rx: np.ndarray, ry: np.ndarray, points: int = 17):
    """Axis-aligned ellipses (centres cx, cy; half-axes rx, ry, each (N,)) as one polyline with
    None between the ellipses: x, y lists for one Scatter trace. ``points`` - 1 is a multiple of 4, so
    the four ends of the half-axes are drawn exactly."""
    t = np.linspace(0, 2 * np.pi, points)
    xs = cx[:, None] + rx[:, None] * np.cos(t)[None]
    ys = cy[:, None] + ry[:, None] * np.sin(t)[None]
    nan = np.full((len(cx), 1), np.nan)
    return (np.hstack([xs, nan]).ravel().astype(np.float32), np.hstack([ys, nan]).ravel().astype(np.float32))


def panel_ranges(mu: np.ndarray, sigma: np.ndarray, drawn: tuple | None = None) -> tuple[list, list]:
    """x and y ranges of a panel, of equal length (the panel keeps equal axis scales): they hold the
    prior's 3σ circle and the 1st to 99th percentile of the posteriors' 1σ boxes (and the drawn
    image's), so one far outlier does not squash the rest."""
    mu, sigma = np.asarray(mu, float), np.asarray(sigma, float)
    lo = np.minimum(np.quantile(mu - sigma, 0.01, axis=0), -3.3)
    hi = np.maximum(np.quantile(mu + sigma, 0.99, axis=0), 3.3)
    if drawn is not None:
        lo = np.minimum(lo, np.asarray(drawn[0]) - np.asarray(drawn[1]))
        hi = np.maximum(hi, np.asarray(drawn[0]) + np.asarray(drawn[1]))
    half = float(np.max(hi - lo)) / 2 * 1.06
    mid = (lo + hi) / 2
    return [float(mid[0] - half), float(mid[0] + half)], [float(mid[1] - half), float(mid[1] + half)]


def latent_ellipses_figure(panels: Sequence[dict], drawn: Sequence[tuple | None] | None = None,
                           class_names: Sequence[str] | None = None, height: int = 380,
                           text_size: int = TEXT_SIZE) -> go.Figure:
    """Small multiples, one per 2-D VAE: each image's posterior q(z|x) as its one-standard-deviation
    ellipse (half-axes sigma_j = exp(logvar_j / 2), axis-aligned: the posterior is diagonal) over the
    prior N(0, I)'s circles at radius 1, 2 and 3.

    ``panels``: dicts with ``beta``, ``mu`` (N, 2), ``sigma`` (N, 2), ``y`` (N,) class labels.
    ``drawn``: per panel, (mu (2,), sigma (2,)) of the user's drawing, or None; drawn thick in black
    with a star at its mean. Each panel has equal axis scales and its own range (``panel_ranges``).
    No legend (it would crowd four small panels): the page says what the marks are; hover names the class."""
    from core.figures import class_color

    n = len(panels)
    gap = 0.07
    width = (1 - gap * (n - 1)) / n
    traces, layout, annotations = [], {}, []
    t = np.linspace(0, 2 * np.pi, 90)
    for i, p in enumerate(panels):
        ax = "" if i == 0 else str(i + 1)
        xa, ya = f"x{ax}", f"y{ax}"
        mu, sigma, y = np.asarray(p["mu"], float), np.asarray(p["sigma"], float), np.asarray(p["y"])
        d = drawn[i] if drawn is not None else None
        xr, yr = panel_ranges(mu, sigma, d)
        for r in (1, 2, 3):
            traces.append(_trace("Scatter", x=_f32(r * np.cos(t)), y=_f32(r * np.sin(t)), mode="lines", xaxis=xa,
                                 yaxis=ya, line=dict(color=GREY, width=2.2 if r == 1 else 1.2, dash="dot"),
                                 name="prior N(0, I): radius 1, 2, 3", legendgroup="prior",
                                 showlegend=False, hoverinfo="skip"))
        # One outline trace per class (a line has one colour), and one trace for every mean of the panel
        # (markers take a colour each): 14 traces a panel, not 24, so the browser lays out fewer.
        for c in np.unique(y):
            m = y == c
            ex, ey = _outline(mu[m, 0], mu[m, 1], sigma[m, 0], sigma[m, 1])
            name = class_names[int(c)] if class_names else str(int(c))
            traces.append(_trace("Scatter", x=ex, y=ey, mode="lines", xaxis=xa, yaxis=ya, hoverinfo="skip",
                                 line=dict(color=class_color(int(c)), width=1.1), opacity=0.75, legendgroup=f"c{c}",
                                 name=f"class {name}", showlegend=False))
        names = [f"class {class_names[int(c)] if class_names else int(c)}" for c in y]
        traces.append(_trace("Scatter", x=_f32(mu[:, 0]), y=_f32(mu[:, 1]), mode="markers", xaxis=xa, yaxis=ya,
                             marker=dict(color=[class_color(int(c)) for c in y], size=3.5), legendgroup="means",
                             name="posterior means μ", showlegend=False, text=names,
                             customdata=np.stack([sigma[:, 0], sigma[:, 1]], 1).astype(np.float32),
                             hovertemplate="%{text}<br>μ = (%{x:.2f}, %{y:.2f})<br>σ = "
                                           "(%{customdata[0]:.3f}, %{customdata[1]:.3f})<extra></extra>"))
        if d is not None:
            dm, ds = np.asarray(d[0], float), np.asarray(d[1], float)
            ex, ey = _outline(dm[:1], dm[1:], ds[:1], ds[1:], points=97)
            traces.append(_trace("Scatter", x=ex, y=ey, mode="lines", xaxis=xa, yaxis=ya, hoverinfo="skip",
                                 line=dict(color=DRAWN_COLOR, width=3.5), name="your drawing: q(z|x), 1σ",
                                 legendgroup="drawn", showlegend=False))
            traces.append(_trace("Scatter", x=[float(dm[0])], y=[float(dm[1])], mode="markers", xaxis=xa, yaxis=ya,
                                 marker=dict(color="#FFD400", size=15, symbol="star",
                                             line=dict(color=DRAWN_COLOR, width=1.5)),
                                 name="your drawing: μ", legendgroup="drawn", showlegend=False,
                                 hovertemplate=f"your drawing<br>μ = (%{{x:.2f}}, %{{y:.2f}})<br>σ = ({ds[0]:.3f}, "
                                               f"{ds[1]:.3f})<extra></extra>"))
        x0 = i * (width + gap)
        layout[f"xaxis{ax}"] = dict(domain=[x0, x0 + width], range=xr, zeroline=False, nticks=5,
                                    title=dict(text="z₁"), anchor=ya)
        layout[f"yaxis{ax}"] = dict(range=yr, zeroline=False, scaleanchor=xa, scaleratio=1, anchor=xa, nticks=5,
                                    title=dict(text="z₂" if i == 0 else ""))
        annotations.append(dict(x=x0 + width / 2, y=1.0, xref="paper", yref="paper", yanchor="bottom",
                                showarrow=False, text=f"<b>β = {p['beta']:g}</b>",
                                font=dict(size=text_size + 1)))
    layout.update(annotations=annotations, showlegend=False, uirevision="kl-latent-map", hovermode="closest")
    return _figure(traces, layout, None, height, fixed_margin=dict(l=52, r=10, t=34, b=50), text_size=text_size)
