"""A labelled block diagram of an (variational) autoencoder: the figure a student redraws in an exam.

    x (D numbers) -> encoder f_phi -> z (bottleneck, K numbers) -> decoder g_theta -> x_hat (D numbers)
                     \\_________________ loss L(x, x_hat) compares x and x_hat ________________/

Built from Plotly shapes and annotations only (no data traces), with the real sizes of a model:
``input_dim`` D, the encoder's ``hidden_dims`` (the decoder mirrors them) and ``latent_dim`` K.
The encoder and decoder are drawn as trapezoids that narrow to, and widen from, the bottleneck.
For ``kind="vae"`` the bottleneck is the encoder's two heads mu and sigma and the sample
z = mu + sigma * eps with eps ~ N(0, I) (Kingma and Welling, 2014), and the loss adds
KL(q(z|x) || N(0, I)).

Every text inherits the layout font (``font_size``), so presenter mode can scale it with one
number. ``fig.layout.meta`` records the sizes drawn (tests and alt texts read it).
"""
from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from core.figures import FONT

BLUE, ORANGE, GREEN, VERMILLION, GREY = "#0072B2", "#E69F00", "#009E73", "#D55E00", "#444444"
FILL = {"data": "#E8F1F8", "enc": "#D6E9F5", "code": "#FCEBC8", "dec": "#D5EFE6", "loss": "#FBE3D6"}
LOSS_TEXT = {
    None: "squared error or binary cross-entropy",
    "gaussian": "squared error ‖x − x̂‖²",
    "bernoulli": "binary cross-entropy (pixels in [0, 1])",
}


def _arrow(fig: go.Figure, x0: float, y0: float, x1: float, y1: float, color: str = GREY, dash: bool = False,
           width: float = 2.5) -> None:
    """An arrow from (x0, y0) to (x1, y1) in data coordinates (a dashed one is a line plus an arrowhead)."""
    if dash:  # the dashed line, then an arrowhead on its last 6 %
        fig.add_shape(type="line", x0=x0, y0=y0, x1=x1, y1=y1, line=dict(color=color, width=width, dash="dash"))
        x0, y0 = x1 - 0.06 * (x1 - x0), y1 - 0.06 * (y1 - y0)
    fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", text="",
                       showarrow=True, arrowhead=2, arrowsize=1.1, arrowwidth=width,
                       arrowcolor=color, standoff=0, startstandoff=0)


def _box(fig: go.Figure, cx: float, cy: float, w: float, h: float, fill: str, line: str, text: str = "") -> None:
    fig.add_shape(type="rect", x0=cx - w / 2, x1=cx + w / 2, y0=cy - h / 2, y1=cy + h / 2,
                  fillcolor=fill, line=dict(color=line, width=2), layer="below")
    if text:
        fig.add_annotation(x=cx, y=cy, text=text, showarrow=False, xanchor="center", yanchor="middle")


def _trapezoid(fig: go.Figure, x0: float, x1: float, cy: float, h0: float, h1: float, fill: str, line: str) -> None:
    """A trapezoid from x0 (height h0) to x1 (height h1), centred on cy."""
    path = (f"M {x0},{cy - h0 / 2} L {x1},{cy - h1 / 2} L {x1},{cy + h1 / 2} L {x0},{cy + h0 / 2} Z")
    fig.add_shape(type="path", path=path, fillcolor=fill, line=dict(color=line, width=2), layer="below")


def _chain(sizes: Sequence[int]) -> str:
    return " → ".join(f"{int(s):,}" for s in sizes)


# The β-VAE objective that the training loop minimises per image (core.losses; Kingma and Welling 2014 at
# β = 1, where it is the negative ELBO; Higgins et al. 2017 for β ≠ 1), in the vocabulary of the pages.
VAE_OBJECTIVE_LATEX = (r"\mathcal{L}_\beta(x) = \underbrace{\mathbb{E}_{q(z\mid x)}\big[-\log p(x\mid z)\big]}"
                       r"_{\text{reconstruction}} \;+\; \beta\,\underbrace{\mathrm{KL}\big(q(z\mid x)\,\|\,p(z)\big)}"
                       r"_{\text{KL}}")


def autoencoder_block_diagram(input_dim: int, hidden_dims: list[int], latent_dim: int, kind: str = "ae",
                              image_shape=None, font_size: int = 16, likelihood: str | None = None,
                              height: int | None = None) -> go.Figure:
    """The block diagram x -> encoder f_phi -> z -> decoder g_theta -> x_hat, with the loss L(x, x_hat).

    ``input_dim`` D, ``hidden_dims`` the encoder's hidden widths (e.g. [256, 128]; the decoder mirrors
    them), ``latent_dim`` K, ``kind`` "ae" or "vae"; ``image_shape`` (H, W), when given, is named
    under x and x_hat; ``likelihood`` ("bernoulli", "gaussian" or None) names the reconstruction
    loss (None: "squared error or binary cross-entropy"). Raises ValueError for sizes that do not
    describe an autoencoder (D, K and the widths must be positive integers).
    """
    if kind not in ("ae", "vae"):
        raise ValueError(f"kind must be 'ae' or 'vae', got {kind!r}")
    if likelihood not in LOSS_TEXT:
        raise ValueError(f"likelihood must be 'bernoulli', 'gaussian' or None, got {likelihood!r}")
    D, K = int(input_dim), int(latent_dim)
    hidden = [int(h) for h in hidden_dims]
    if D < 1 or K < 1 or any(h < 1 for h in hidden):
        raise ValueError(f"sizes must be positive, got D={input_dim}, hidden={hidden_dims}, K={latent_dim}")
    if image_shape is not None:
        hh, ww = (int(v) for v in image_shape)
        if hh * ww != D:
            raise ValueError(f"image_shape {tuple(image_shape)} does not have {D} pixels")
    vae = kind == "vae"

    fig = go.Figure()
    cy = 3.0  # the main row
    # input and output: tall boxes (D numbers)
    what = f"{D:,} numbers" + (f"<br>({hh}×{ww} image)" if image_shape is not None else "")
    _box(fig, 0.9, cy, 1.5, 2.4, FILL["data"], BLUE, "<b>x</b><br>input")
    fig.add_annotation(x=0.9, y=cy - 1.3, text=what, showarrow=False, yanchor="top")
    _box(fig, 13.1, cy, 1.5, 2.4, FILL["data"], BLUE, "<b>x̂</b><br>output")
    fig.add_annotation(x=13.1, y=cy - 1.3, text=f"reconstruction<br>{D:,} numbers", showarrow=False, yanchor="top")

    # encoder and decoder: trapezoids that narrow to / widen from the bottleneck
    _trapezoid(fig, 2.2, 5.0, cy, 2.4, 1.0, FILL["enc"], BLUE)
    fig.add_annotation(x=3.6, y=cy, text="<b>encoder</b><br>f<sub>φ</sub>", showarrow=False)
    fig.add_annotation(x=3.6, y=cy + 1.3, text=_chain([D, *hidden, K]), showarrow=False, yanchor="bottom")
    fig.add_annotation(x=3.6, y=cy - 1.3, text="ReLU hidden layers<br>" + ("linear heads μ, log σ²" if vae else
                                                                        "linear code layer"),
                       showarrow=False, yanchor="top")
    _trapezoid(fig, 9.0, 11.8, cy, 1.0, 2.4, FILL["dec"], GREEN)
    fig.add_annotation(x=10.4, y=cy, text="<b>decoder</b><br>g<sub>θ</sub>", showarrow=False)
    fig.add_annotation(x=10.4, y=cy + 1.3, text=_chain([K, *reversed(hidden), D]), showarrow=False,
                       yanchor="bottom")
    out_link = {"bernoulli": "sigmoid output", "gaussian": "linear output"}.get(likelihood, "output layer")
    fig.add_annotation(x=10.4, y=cy - 1.3, text=f"ReLU hidden layers<br>{out_link}", showarrow=False, yanchor="top")

    # the bottleneck
    if vae:
        _box(fig, 7.0, cy, 2.2, 1.0, FILL["code"], ORANGE, "<b>z = μ + σ⊙ε</b>")
        fig.add_annotation(x=7.0, y=cy + 0.6, text=f"<b>code z</b>: {K} numbers", showarrow=False, yanchor="bottom")
        fig.add_annotation(x=7.0, y=cy - 0.6, text="ε ~ N(0, I): noise,<br>an extra input", showarrow=False,
                           yanchor="top")
        code_l, code_r = 5.9, 8.1
    else:
        _box(fig, 7.0, cy, 1.4, 1.0, FILL["code"], ORANGE, "<b>z</b>")
        fig.add_annotation(x=7.0, y=cy + 0.6, text=f"<b>code</b> (bottleneck)<br>K = {K} numbers",
                           showarrow=False, yanchor="bottom")
        fig.add_annotation(x=7.0, y=cy - 0.6, text=f"z = f<sub>φ</sub>(x)<br>x̂ = g<sub>θ</sub>(z)",
                           showarrow=False, yanchor="top")
        code_l, code_r = 6.3, 7.7

    # the forward flow
    _arrow(fig, 1.65, cy, 2.2, cy, BLUE)
    _arrow(fig, 5.0, cy, code_l, cy, ORANGE)
    _arrow(fig, code_r, cy, 9.0, cy, ORANGE)
    _arrow(fig, 11.8, cy, 12.35, cy, GREEN)

    # the loss compares x and x_hat (unsupervised: the target is the input itself)
    ly = -0.3
    loss = LOSS_TEXT[likelihood]
    if vae:
        text = (f"<b>loss</b> = L(x, x̂) + KL(q(z|x) ‖ N(0, I))<br>"
                f"reconstruction L: {loss}<br>the target is the input x (unsupervised)")
    else:
        text = f"<b>loss L(x, x̂)</b>: {loss}<br>the target is the input x itself<br>(unsupervised)"
    _box(fig, 7.0, ly, 9.0, 1.3, FILL["loss"], VERMILLION, text)
    _arrow(fig, 0.9, cy - 2.5, 2.5, ly, VERMILLION, dash=True)
    _arrow(fig, 13.1, cy - 2.5, 11.5, ly, VERMILLION, dash=True)
    if vae:
        _arrow(fig, 7.0, cy - 1.3, 7.0, ly + 0.65, VERMILLION, dash=True)

    fig.update_xaxes(visible=False, range=[-0.1, 14.1], fixedrange=True)
    fig.update_yaxes(visible=False, range=[-1.05, 5.0], fixedrange=True)
    fig.update_layout(template="plotly_white", font=dict(FONT, size=int(font_size), color="#222222"),
                      margin=dict(l=5, r=5, t=5, b=5), height=height or int(20 * font_size + 60),
                      showlegend=False, hovermode=False, dragmode=False,
                      meta=dict(kind=kind, input_dim=D, hidden_dims=hidden, latent_dim=K,
                                image_shape=None if image_shape is None else [hh, ww], likelihood=likelihood))
    return fig
