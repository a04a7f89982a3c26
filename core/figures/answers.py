"""Small figures for the model answers (``core.answers``): pure functions, evidence dicts in, figures out.

The block diagram comes from ``core.figures.blockdiagram`` (the exam diagram every page shares); if that
module is missing, :func:`_minimal_block_diagram` draws a plain one.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from core.figures import OKABE_ITO, image_grid, style

BLUE, ORANGE, GREEN, RED, GREY = OKABE_ITO[0], OKABE_ITO[1], OKABE_ITO[2], OKABE_ITO[3], "#555555"
HEIGHT = 330


def _minimal_block_diagram(input_dim: int, hidden_dims, latent_dim: int, font_size: int = 14) -> go.Figure:
    """x -> encoder -> z -> decoder -> x_hat, and the loss comparing x with x_hat (boxes and arrows)."""
    fig = go.Figure()
    boxes = [(0.5, "x", f"input, {input_dim} numbers"), (2.5, "encoder f<sub>φ</sub>", " → ".join(map(str, hidden_dims))),
             (4.5, "z", f"code, {latent_dim} numbers"), (6.5, "decoder g<sub>θ</sub>",
                                                        " → ".join(map(str, reversed(hidden_dims)))),
             (8.5, "x̂", f"reconstruction, {input_dim}")]
    for x, t, sub in boxes:
        fig.add_shape(type="rect", x0=x - 0.8, x1=x + 0.8, y0=1.4, y1=2.6, line=dict(color=BLUE, width=2),
                      fillcolor="#E8F1F8")
        fig.add_annotation(x=x, y=2.0, text=f"<b>{t}</b>", showarrow=False)
        fig.add_annotation(x=x, y=1.3, text=sub, showarrow=False, yanchor="top", font=dict(size=font_size - 3))
    for a, b in ((1.3, 1.7), (3.3, 3.7), (5.3, 5.7), (7.3, 7.7)):
        fig.add_annotation(x=b, y=2.0, ax=a, ay=2.0, xref="x", yref="y", axref="x", ayref="y", text="",
                           showarrow=True, arrowhead=2, arrowwidth=2)
    fig.add_shape(type="rect", x0=2.5, x1=6.5, y0=-0.2, y1=0.5, line=dict(color=RED, width=2), fillcolor="#FBE3D6")
    fig.add_annotation(x=4.5, y=0.15, text="<b>loss L(x, x̂)</b>: the target is the input itself", showarrow=False)
    for a, b in ((0.5, 2.5), (8.5, 6.5)):
        fig.add_annotation(x=b, y=0.15, ax=a, ay=0.8, xref="x", yref="y", axref="x", ayref="y", text="",
                           showarrow=True, arrowhead=2, arrowcolor=RED)
    fig.update_xaxes(visible=False, range=[-0.5, 9.5])
    fig.update_yaxes(visible=False, range=[-0.5, 3.0])
    style(fig, height=300)
    fig.update_layout(font=dict(size=font_size), dragmode=False, hovermode=False)
    return fig


def block_diagram(e1: dict, font_size: int = 14, height: int = 330) -> go.Figure:
    """The labelled autoencoder block diagram with the shipped model's sizes (``e1``: ``q1_evidence``)."""
    try:
        from core.figures.blockdiagram import autoencoder_block_diagram
    except ImportError:
        return _minimal_block_diagram(e1["input_dim"], e1["hidden_dims"], e1["latent_dim"], font_size)
    return autoencoder_block_diagram(e1["input_dim"], list(e1["hidden_dims"]), e1["latent_dim"], kind="ae",
                                     image_shape=e1["image_shape"], font_size=font_size,
                                     likelihood=e1.get("likelihood"), height=height)


def recon_grid(e1: dict) -> go.Figure:
    """Held-out images, their AE reconstructions, and AE-decoded prior samples: three rows of n."""
    n = len(e1["original"])
    x = np.concatenate([e1["original"], e1["recon"], e1["samples"]])
    return image_grid(x, e1["image_shape"], ncols=n, row_titles=["original", "AE reconstruction",
                                                                 "AE: decoded z ~ N(0, I)"], height=300, gap=2)


def computation_graph(font_size: int = 13) -> go.Figure:
    """Two computation graphs side by side: z sampled (the backward pass stops at the sampler) and
    z = μ + σ ⊙ ε (the backward pass reaches φ). Forward edges grey, backward edges red."""
    fig = go.Figure()
    nodes = {  # (x, y, label, fill)
        "L0": (0.4, 2.0, "x", "#E8F1F8"), "L1": (1.6, 2.0, "encoder φ", "#D6E9F5"),
        "L2": (2.9, 2.0, "μ, σ", "#D6E9F5"), "L3": (4.2, 2.0, "z ~ 𝒩(μ, σ²)<br>(sampled)", "#EEEEEE"),
        "L4": (5.5, 2.0, "loss", "#FBE3D6"),
        "R0": (7.0, 2.0, "x", "#E8F1F8"), "R1": (8.2, 2.0, "encoder φ", "#D6E9F5"),
        "R2": (9.5, 2.0, "μ, σ", "#D6E9F5"), "Re": (10.8, 0.9, "ε ~ 𝒩(0, I)<br>(input)", "#FCEBC8"),
        "R3": (10.8, 2.0, "z = μ + σ⊙ε", "#FCEBC8"), "R4": (12.1, 2.0, "loss", "#FBE3D6"),
    }
    for x, y, t, fill in nodes.values():
        fig.add_shape(type="rect", x0=x - 0.55, x1=x + 0.55, y0=y - 0.32, y1=y + 0.32, fillcolor=fill,
                      line=dict(color=GREY, width=1.5))
        fig.add_annotation(x=x, y=y, text=t, showarrow=False, font=dict(size=font_size - 2))

    def arrow(a: str, b: str, color: str, dy: float = 0.0, dash: bool = False) -> None:
        (x0, y0, *_), (x1, y1, *_) = nodes[a], nodes[b]
        if abs(y0 - y1) < 1e-9:
            x0, x1 = (x0 + 0.55, x1 - 0.55) if x1 > x0 else (x0 - 0.55, x1 + 0.55)
        else:
            y0, y1 = y0 + 0.32, y1 - 0.32
        fig.add_annotation(x=x1, y=y1 + dy, ax=x0, ay=y0 + dy, xref="x", yref="y", axref="x", ayref="y", text="",
                           showarrow=True, arrowhead=2, arrowwidth=2, arrowcolor=color)

    for a, b in (("L0", "L1"), ("L1", "L2"), ("L2", "L3"), ("L3", "L4"), ("R0", "R1"), ("R1", "R2"),
                 ("R2", "R3"), ("Re", "R3"), ("R3", "R4")):
        arrow(a, b, GREY, dy=0.12)
    for a, b in (("L4", "L3"), ("R4", "R3"), ("R3", "R2"), ("R2", "R1")):
        arrow(a, b, RED, dy=-0.12)
    fig.add_annotation(x=3.55, y=1.55, text="<b>✗</b> no path back", showarrow=False,
                       font=dict(color=RED, size=font_size))
    fig.add_annotation(x=2.9, y=3.0, text="<b>Without the trick</b>", showarrow=False, font=dict(size=font_size + 1))
    fig.add_annotation(x=9.5, y=3.0, text="<b>With the trick</b>", showarrow=False, font=dict(size=font_size + 1))
    fig.add_annotation(x=9.4, y=1.2, text="∂z/∂μ = I, ∂z/∂σ = diag(ε)", showarrow=False,
                       font=dict(color=RED, size=font_size - 1))
    fig.add_shape(type="line", x0=6.25, x1=6.25, y0=0.4, y1=3.2, line=dict(color="#BBBBBB", dash="dot"))
    fig.update_xaxes(visible=False, range=[-0.3, 12.8], fixedrange=True)
    fig.update_yaxes(visible=False, range=[0.3, 3.3], fixedrange=True)
    style(fig, height=240)
    fig.update_layout(dragmode=False, hovermode=False, font=dict(size=font_size))
    return fig


def _num(v: float) -> str:
    """3 significant figures without exponent notation: 21.9, 98.2, 161,000."""
    return f"{float(f'{v:.3g}'):,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def variance_bars(e2: dict, height: int = HEIGHT) -> go.Figure:
    """Per-sample variance of the pathwise and score-function gradient estimates (log scale)."""
    fig = go.Figure()
    params = [("dmu", "∂/∂μ"), ("dsigma", "∂/∂σ")]
    for method, name, color in (("reparam", "pathwise (reparameterization)", BLUE),
                                ("score", "score function (REINFORCE)", ORANGE)):
        vals = [e2["est"][method][p]["variance"] for p, _ in params]
        fig.add_bar(x=[lab for _, lab in params], y=vals, name=name, marker_color=color,
                    text=[_num(v) for v in vals], textposition="outside", cliponaxis=False)
    fig.update_yaxes(type="log", title="per-sample variance (log scale)", exponentformat="power", dtick=1)
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=1.12, x=0))
    style(fig, height=height)
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=10))
    return fig


def kl_bars(e3: dict) -> go.Figure:
    """One held-out image's KL term per latent dimension (nats)."""
    kl = np.asarray(e3["one"]["kl"])
    fig = go.Figure(go.Bar(x=[f"z{j + 1}" for j in range(len(kl))], y=kl, marker_color=RED,
                           hovertemplate="%{x}: %{y:.3f} nats<extra></extra>"))
    fig.update_yaxes(title="KL per dimension (nats)", rangemode="tozero")
    style(fig, height=260)
    return fig


def sigma_bars(e3: dict, height: int = HEIGHT) -> go.Figure:
    """Median posterior σ_j per dimension for β = 0 and β = 1 (log scale)."""
    fig = go.Figure()
    for b, name, color in ((0.0, "β = 0 (no KL term)", GREY), (1.0, "β = 1", BLUE)):
        s = np.asarray(e3["sigma_median"][b])
        fig.add_bar(x=[f"z{j + 1}" for j in range(len(s))], y=s, name=name, marker_color=color,
                    hovertemplate="%{x}: median σ = %{y:.3g}<extra>" + name + "</extra>")
    fig.add_hline(y=1.0, line=dict(color=GREEN, dash="dash"), annotation_text="prior σ = 1",
                  annotation_position="top left")
    fig.update_yaxes(type="log", title="median σ<sub>j</sub> (log scale)", exponentformat="power", dtick=1)
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=1.14, x=0))
    style(fig, height=height)
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=10))
    return fig


def samples_grid(e3: dict) -> go.Figure:
    """Decoded prior samples of the β = 0 and β = 1 VAEs, one row each."""
    n = len(e3["samples"][1.0])
    x = np.concatenate([e3["samples"][0.0], e3["samples"][1.0]])
    return image_grid(x, e3["image_shape"], ncols=n, row_titles=["β = 0 (no KL)", "β = 1"], height=210, gap=2)


def rd_curve(e3: dict) -> go.Figure:
    """Rate (KL term) against distortion (reconstruction term) over the β sweep, β > 0 (β = 0 has a
    rate far off the chart)."""
    pts = sorted((p for p in e3["sweep"] if p["beta"] > 0), key=lambda p: p["beta"])
    k = e3["latent_dim"]
    fig = go.Figure(go.Scatter(
        x=[p["rate"] for p in pts], y=[p["distortion"] for p in pts], mode="lines+markers+text",
        text=[f"β={p['beta']:g} ({int(p['active_units'])}/{k})" for p in pts],
        textposition=["top left" if p["rate"] == max(q["rate"] for q in pts) else "top right" for p in pts],
        marker=dict(size=9, color=BLUE), line=dict(color=BLUE), cliponaxis=False,
        hovertemplate="rate %{x:.1f} nats, distortion %{y:.1f} nats<extra></extra>"))
    fig.update_xaxes(title="rate: KL term (nats per image)", rangemode="tozero")
    fig.update_yaxes(title="distortion: reconstruction (nats)")
    style(fig, height=HEIGHT)
    fig.update_layout(margin=dict(l=10, r=60, t=20, b=10))
    return fig


def figures(e1: dict, e2: dict, e3: dict, font_size: int = 14, height: int = HEIGHT) -> dict[str, go.Figure]:
    """Every figure the answers name (``core.answers`` blocks ("fig", key, caption)). ``height``: of the
    three main figures (presenter mode asks for less, as it scales them up)."""
    return {
        "q1_diagram": block_diagram(e1, font_size=font_size, height=height),
        "q1_recon": recon_grid(e1),
        "q2_graph": computation_graph(),
        "q2_variance": variance_bars(e2, height),
        "q3_kl": kl_bars(e3),
        "q3_sigma": sigma_bars(e3, height),
        "q3_samples": samples_grid(e3),
        "q3_rd": rd_curve(e3),
    }
