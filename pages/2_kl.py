"""KL divergence: between two Gaussians, by sampling, forward vs reverse, in 2-D, and inside a VAE.

Thin page: widgets -> core.kl (every number) -> core.figures.kl (every figure). Each section is a
``st.fragment``, so moving one of its sliders reruns only that section (see bench/).
"""
from pathlib import Path

import numpy as np
import streamlit as st
from streamlit.errors import StreamlitAPIException

from core import kl, ui
from core.data import load_dataset
from core.figures import kl_bars
from core.figures import kl as klfig
from core.units import SMALL_KL_NATS

ROOT = Path(__file__).resolve().parent.parent
LIMITS_PAGE = "pages/6_limits.py"

MU_RANGE, SIGMA_RANGE = (-5.0, 5.0), (0.1, 5.0)
N_CHOICES = [10, 30, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000]
MC_CURVE_NS = sorted(set(np.unique(np.geomspace(2, 100_000, 48).round().astype(int)).tolist()) | set(N_CHOICES))
FIT_STEPS, FIT_LR = 300, 0.2
BETAS = [0.5, 1.0, 4.0]
LATENT = 16
IWAE_K = 1000  # importance samples for log p(x)
MAP_BETAS = (0.0, 0.5, 1.0, 4.0)  # the 2-D VAEs of the latent map (β = 0: assets/zoo, the zoo's own recipe)
MAP_N = 300  # held-out images drawn on each panel
PRESETS = {  # name: (mu_p, sigma_p, mu_q, sigma_q)
    "🟰 Identical": (0.0, 1.0, 0.0, 1.0),
    "➡️ Shifted mean": (0.0, 1.0, 2.0, 1.0),
    "↔️ Wider q": (0.0, 1.0, 0.0, 2.0),
    "🎯 Narrower q": (0.0, 1.0, 0.0, 0.5),
}
ONE_D_KEYS = ("kl_mup", "kl_sp", "kl_muq", "kl_sq")
ONE_D_DEFAULTS = (0.0, 1.0, 1.0, 1.5)
# The density chart follows these sliders in the browser while they move (core/js/live_figure.js).
DENSITY_SLIDERS = dict(zip(("mu_p", "sigma_p", "mu_q", "sigma_q"), (f"{k}_sl" for k in ONE_D_KEYS)))

ctx = ui.page("KL divergence", "📐", "What is the KL divergence, and what does it do in a VAE?")
TEXT = 20 if ctx.present else klfig.TEXT_SIZE  # tick labels, axis titles, legends (projector: larger)
# Presenter mode: each scene's main figure comes right after its header, at this height (ui.figure grows it
# 1.3x: about 545 px), so it fills over half of a 1080-px screen and still ends above 720 px.
PRESENT_H = 418


def intro(text: str) -> None:
    """A section's opening paragraph: left out in presenter mode, where the scene bar says it and the
    figure must come right after the header."""
    if not ctx.present:
        st.markdown(text)
url_errors = st.container()  # filled at the end: the widgets below validate their URL values as they are made

SCENES = [
    ("Two Gaussians", "Move p and q: the shaded area is KL(p‖q), and the two directions differ."),
    ("KL by sampling", "Average log p/q over samples from p: the estimate homes in on the exact value."),
    ("Forward vs reverse", "Fit one Gaussian to two modes: forward KL covers both; reverse KL has several "
                           "local optima, and the start decides which one it reaches."),
    ("Two dimensions", "Correlated 2-D Gaussians: the same formula with matrices."),
    ("The ELBO", "log p(x) = ELBO + KL(q(z|x) ‖ p(z|x)): a real VAE's numbers for one image."),
    ("KL inside a VAE", "Each part of the KL term does a job: −log σ² keeps the noise on, μ² keeps codes near "
                        "the prior."),
    ("The KL on the latent map", "Each image's q(z|x) as an ellipse over the prior: the KL term pulls them in and "
                                 "keeps them wide; without it (β = 0) they shrink to points."),
]
scene = ui.scenes("kl", SCENES)


show = ui.scene_filter(scene)  # every section normally; one scene at a time in presenter mode


# ---- widgets ------------------------------------------------------------------------------------

def _copy(src: str, dst: str) -> None:
    st.session_state[dst] = st.session_state[src]


def linked_number(label: str, key: str, lo: float, hi: float, default: float, slider_step: float,
                  help: str | None = None) -> float:
    """A slider for quick moves plus an exact number input, sharing one value. The number input owns
    the state and the URL parameter ``key``; the slider (``key + "_sl"``) copies into it on change."""
    s_key = f"{key}_sl"
    c_slider, c_num = st.columns([3, 1.25], vertical_alignment="bottom")
    with c_num:
        value = ui.number(label, key, lo, hi, default, step=slider_step, format="%.3f",
                          label_visibility="collapsed", help=help)
    st.session_state[s_key] = value  # before the slider exists in this run: keeps the two in sync
    with c_slider:
        st.slider(label, lo, hi, step=slider_step, key=s_key, on_change=_copy, args=(s_key, key), help=help)
    return float(value)


def select_slider(label: str, key: str, options: list, default, **kw):
    """``st.select_slider`` bound to URL parameter ``key`` (core.ui has no select slider yet)."""
    ui.bind(key, default, choices=options)
    v = st.select_slider(label, options, key=key, **kw)
    ui.publish(key)
    return v


def apply_preset(values: tuple[float, float, float, float]) -> None:
    for k, v in zip(ONE_D_KEYS, values):
        st.session_state[k] = v
        st.session_state[f"{k}_sl"] = v


@st.cache_data(max_entries=64, show_spinner="Fitting q by forward and reverse KL (300 Adam steps each)…")
def fit_trajectories(separation: float, start: float):
    """Forward and reverse KL fits of N(mu, sigma^2) to 0.5 N(-d/2, 0.6^2) + 0.5 N(d/2, 0.6^2)."""
    ui.configure_torch()
    mix = dict(weights=(0.5, 0.5), mus=(-separation / 2, separation / 2), sigmas=(0.6, 0.6))
    runs = {d: kl.fit_gaussian_to_mixture(**mix, direction=d, steps=FIT_STEPS, lr=FIT_LR, init=(start, 0.5))
            for d in ("forward", "reverse")}
    return mix, runs["forward"], runs["reverse"]


# ---- 1 and 2: two univariate Gaussians, exactly and by sampling ------------------------------------

@st.fragment
def two_gaussians(show_exact: bool, show_mc: bool) -> None:
    if show_exact:
        st.header("1. Two Gaussians, p and q")
        intro(
            "The KL divergence $\\mathrm{KL}(p\\,\\|\\,q) = \\int p(x)\\log\\frac{p(x)}{q(x)}\\,dx$ measures how "
            "much **q** fails to explain data drawn from **p**, in nats. It is never negative, it is 0 only when "
            "p = q, and it is **not symmetric**. Set p and q below (slider, or type an exact value).")
    with ui.config_container("Set p and q"):
        cp, cq = st.columns(2, gap="large")
        with cp:
            st.markdown("**p = N(μ_p, σ_p²)**")
            mu_p = linked_number("Mean of p, μ_p", "kl_mup", *MU_RANGE, ONE_D_DEFAULTS[0], 0.1)
            s_p = linked_number("Standard deviation of p, σ_p", "kl_sp", *SIGMA_RANGE, ONE_D_DEFAULTS[1], 0.05)
        with cq:
            st.markdown("**q = N(μ_q, σ_q²)**")
            mu_q = linked_number("Mean of q, μ_q", "kl_muq", *MU_RANGE, ONE_D_DEFAULTS[2], 0.1)
            s_q = linked_number("Standard deviation of q, σ_q", "kl_sq", *SIGMA_RANGE, ONE_D_DEFAULTS[3], 0.05)
        st.caption("Presets (p stays N(0, 1)):")
        for col, (name, values) in zip(st.columns(len(PRESETS)), PRESETS.items()):
            col.button(name, key=f"kl_preset_{list(PRESETS).index(name)}", on_click=apply_preset, args=(values,),
                       width="stretch")

    kl_pq = kl.kl_normal(mu_p, s_p, mu_q, s_q)
    kl_qp = kl.kl_normal(mu_q, s_q, mu_p, s_p)
    if show_exact:
        # The chart is drawn above the numbers but sent after them: the browser then shows the new
        # numbers first and spends its time on Plotly afterwards.
        density_slot = st.container()
        with st.container(key="kl_readout"):
            c1, c2 = st.columns(2, gap="large")
            with c1:
                st.metric("KL(p‖q): expectation over p", f"{kl_pq:.4f} nats")
                st.latex(klfig.latex_kl_normal(mu_p, s_p, mu_q, s_q, "p", "q"))
            with c2:
                st.metric("KL(q‖p): expectation over q", f"{kl_qp:.4f} nats")
                st.latex(klfig.latex_kl_normal(mu_q, s_q, mu_p, s_p, "q", "p"))
        if kl_pq == 0 and kl_qp == 0:
            st.info("p and q are identical, so both divergences are exactly 0. Change q to see them grow.")
        else:
            bigger = "KL(q‖p)" if kl_qp > kl_pq else "KL(p‖q)"
            st.markdown(
                f"The two directions give **{kl_pq:.4f}** and **{kl_qp:.4f}** nats: swapping the arguments changes "
                f"the answer (here {bigger} is larger). The green area adds to KL(p‖q) where p > q; the hatched "
                "orange area, where q > p, subtracts. The green part always wins: KL ≥ 0 (Gibbs' inequality). "
                "The direction that averages over the **wider** distribution is usually larger, because its samples "
                "land in the other distribution's thin tails, where log p/q is big.")
        with density_slot:
            ui.live_figure(klfig.density_figure(mu_p, s_p, mu_q, s_q, text_size=TEXT,
                                                **({"height": PRESENT_H} if ctx.present else {})),
                           key="kl_fig_density",
                           updater="kl_density", watch=DENSITY_SLIDERS,
                           values=dict(mu_p=mu_p, sigma_p=s_p, mu_q=mu_q, sigma_q=s_q),
                           alt=f"Densities of p = N({mu_p:g}, {s_p:g}²) and q = N({mu_q:g}, {s_q:g}²), and below them the "
                               f"signed integrand p log(p/q) whose area is KL(p‖q) = {kl_pq:.4f} nats.")

    if show_mc:
        st.header("2. Estimating KL by sampling")
        mc_slot = st.container() if ctx.present else None  # presenter: the figure right under the header
        st.markdown(
            "KL is an expectation, so it can be estimated by averaging over samples $x_i \\sim p$. A VAE does this "
            "for the terms that have no closed form (the reconstruction term is always estimated with samples of z).")
        st.latex(r"\widehat{\mathrm{KL}}_n = \frac1n\sum_{i=1}^n \log\frac{p(x_i)}{q(x_i)},\qquad"
                 r"\text{standard error} = \frac{\operatorname{sd}_i\left[\log\frac{p(x_i)}{q(x_i)}\right]}{\sqrt n}")
        n = int(select_slider("Number of samples n (log scale)", "kl_n", N_CHOICES, 1_000,
                              format_func=lambda v: f"{v:,}"))
        est, se = kl.kl_monte_carlo(mu_p, s_p, mu_q, s_q, n=n, seed=ctx.seed)
        curve = kl.kl_mc_convergence(mu_p, s_p, mu_q, s_q, ns=MC_CURVE_NS, seed=ctx.seed)
        m1, m2, m3 = st.columns(3)
        m1.metric(f"MC estimate, n = {n:,}", f"{est:.4f} nats")
        m2.metric("Standard error", f"{se:.4f} nats")
        m3.metric("Closed form KL(p‖q)", f"{kl_pq:.4f} nats")
        with mc_slot or st.container():
            ui.figure(klfig.mc_convergence_figure(curve["n"], curve["estimate"], curve["stderr"], kl_pq, n, est,
                                                   text_size=TEXT, **({"height": PRESENT_H} if ctx.present else {})),
                      key="kl_fig_mc",
                  alt=f"Monte Carlo estimate of KL(p‖q) against the number of samples, converging to the closed form "
                      f"{kl_pq:.4f}; at n = {n} the estimate is {est:.4f} with standard error {se:.4f}.")
        inside = abs(est - kl_pq) <= 2 * se
        st.caption(
            f"Samples from p with seed {ctx.seed} (sidebar). The estimate at n = {n:,} is {est:.4f} ± {se:.4f}; "
            + ("the exact value lies inside its ±2 standard-error band. " if inside else
               "the exact value is just outside ±2 standard errors, which happens about 1 time in 20. ")
            + "Each 100× more samples shrinks the error 10× (it falls like 1/√n).")


# ---- 3: forward vs reverse KL -----------------------------------------------------------------------

FORWARD_TEXT = (
    "**Forward, KL(p‖q) = E_p[log p/q]: mode covering.** The average is over p, so q is punished heavily wherever p "
    "has mass and q has almost none: q stretches over **both** modes. Its optimum matches p's mean and standard "
    "deviation.")
REVERSE_TEXT = (
    "**Reverse, KL(q‖p) = E_q[log q/p]: mode seeking.** The average is over q, so q is punished only where *q* puts "
    "mass that p lacks, such as the gap between the modes. Reverse KL has **several local optima**: one on each mode "
    "(Bishop, 2006, Figure 10.3) and, for well-separated modes, a wide symmetric one between them (start at 0 to see "
    "it).")


@st.fragment
def forward_reverse() -> None:
    st.header("3. Forward vs reverse KL: covering or seeking modes")
    intro(
        "Let p have **two modes** and fit a single Gaussian q to it, by gradient descent (Adam, PyTorch autograd) on "
        "either direction of the KL.")
    if ctx.present:  # the scene's figure at once, right under its header
        fit_view()
    else:
        c1, c2 = st.columns(2, gap="large")
        c1.markdown(FORWARD_TEXT)
        c2.markdown(REVERSE_TEXT)
        # The animation (47 frames) and its controls: computed and drawn only once opened (issue 21).
        box = ui.lazy_expander("▶️ Watch both fits step by step: set the two modes and the start, then press Play",
                               "kl_fit_open", url_keys=("kl_sep", "kl_start"))
        with box:
            if box.open:
                fit_view()
    st.info("A VAE's encoder is trained by the ELBO, whose gap to log p(x) is KL(q(z|x) ‖ p(z|x)): the **reverse** "
            "direction (section 5). So a VAE's posterior tends to be mode-seeking and too narrow (over-confident), "
            "rather than covering every code that could explain an image.", icon="💡")


def fit_view() -> None:
    """Section 3's controls, the animation of both fits, and where each fit ends (with the general text in
    presenter mode, where it follows the figure)."""
    # (inside the lazy expander on the normal page: an expander cannot hold another)
    with ui.config_container("Set the two modes and the start") if ctx.present else st.container():
        c1, c2 = st.columns(2, gap="large")
        with c1:
            sep = ui.slider("Distance between the two modes of p", "kl_sep", 1.0, 6.0, 4.0, step=0.5,
                            help="p = ½ N(−d/2, 0.6²) + ½ N(d/2, 0.6²)")
        with c2:
            start = ui.slider("Starting mean of q (σ starts at 0.5)", "kl_start", -3.0, 3.0, 0.5, step=0.25)
    mix, fwd, rev = fit_trajectories(float(sep), float(start))
    target_mu, target_sd = kl.mixture_moments(**mix)
    ui.figure(klfig.fit_animation_figure(mix["weights"], mix["mus"], mix["sigmas"], fwd, rev, text_size=TEXT,
                                         **({"height": PRESENT_H} if ctx.present else {})),
              key="kl_fig_fit", html_name="kl-forward-vs-reverse",
              alt=f"Animation of fitting one Gaussian to a two-mode distribution with modes {sep:g} apart. Forward KL "
                  f"ends at mean {fwd[-1][0]:.2f}, sd {fwd[-1][1]:.2f}, covering both modes; reverse KL ends at mean "
                  f"{rev[-1][0]:.2f}, sd {rev[-1][1]:.2f}.")
    outcome = kl.reverse_fit_outcome(rev[-1][0], rev[-1][1], mix["mus"], mix["sigmas"], mix["weights"])
    if outcome["kind"] == "mode":
        reached = (f"This start reached the mode-seeking optimum on the **{outcome['side']}** mode "
                   f"(centred at {klfig.nats(outcome['target'])}).")
    elif outcome["peaks"] == 1:
        reached = ("Here the modes are so close that p has a single peak, and the fit is one Gaussian over it, "
                   f"centred at {klfig.nats(outcome['target'])}.")
    else:
        reached = ("This start reached the **symmetric** optimum between the modes: a wide q centred at "
                   f"{klfig.nats(outcome['target'])}, over the gap. Move the start off the centre and q ends on a mode.")
    c1, c2 = st.columns(2, gap="large")
    with c1:
        st.markdown(
            (FORWARD_TEXT + "\n\n" if ctx.present else "") +
            f"**Forward** ends at μ = {klfig.nats(fwd[-1][0])}, σ = {klfig.nats(fwd[-1][1])}, "
            f"KL = {klfig.nats(fwd[-1][2], 3)} nats; p's own mean and standard deviation are "
            f"{klfig.nats(target_mu)} and {klfig.nats(target_sd)}.")
    with c2:
        st.markdown(
            (REVERSE_TEXT + "\n\n" if ctx.present else "") +
            f"**Reverse** ends at μ = {klfig.nats(rev[-1][0])}, σ = {klfig.nats(rev[-1][1])}, "
            f"KL = {klfig.nats(rev[-1][2], 3)} nats. " + reached)


# ---- 4: two dimensions ------------------------------------------------------------------------------

def gaussian_2d_controls(name: str, prefix: str, defaults: tuple[float, float, float, float, float]):
    mx, my, sx, sy, r = defaults
    st.markdown(f"**{name}**")
    a, b = st.columns(2)
    with a:
        mx = ui.slider(f"{name}: mean z₁", f"{prefix}_mx", -3.0, 3.0, mx, step=0.1)
        sx = ui.slider(f"{name}: std z₁", f"{prefix}_sx", 0.2, 3.0, sx, step=0.05)
    with b:
        my = ui.slider(f"{name}: mean z₂", f"{prefix}_my", -3.0, 3.0, my, step=0.1)
        sy = ui.slider(f"{name}: std z₂", f"{prefix}_sy", 0.2, 3.0, sy, step=0.05)
    r = ui.slider(f"{name}: correlation ρ", f"{prefix}_r", -0.95, 0.95, r, step=0.05)
    return np.array([mx, my]), kl.cov_2d(sx, sy, r)


DIAGONAL_TEXT = ("A correlation ρ ≠ 0 tilts the ellipse. A VAE's encoder outputs a **diagonal** Gaussian (ρ = 0, one σ "
                 "per dimension), so its KL to N(0, I) splits into one term per dimension, as in section 6.")
TWO_D_KEYS = tuple(f"kl_{g}2_{v}" for g in "pq" for v in ("mx", "my", "sx", "sy", "r"))


@st.fragment
def two_dimensions() -> None:
    st.header("4. Two dimensions: correlated Gaussians")
    intro("The same idea for vectors: means become vectors and variances become covariance matrices. Here q "
          "starts as the standard normal N(0, I), the prior of a VAE's 2-D latent space.")
    if ctx.present:  # the scene's figure at once, right under its header
        two_d_view()
        return
    st.markdown(DIAGONAL_TEXT)
    # Ten sliders, the ellipses and both formulas: computed and drawn only once opened (issue 21).
    box = ui.lazy_expander("✏️ Set two 2-D Gaussians: their covariance ellipses and the KL in both directions",
                           "kl_2d_open", url_keys=TWO_D_KEYS)
    with box:
        if box.open:
            two_d_view()


def two_d_view() -> None:
    """Section 4's sliders, the ellipses, both KLs and both formulas with the numbers put in."""
    # (inside the lazy expander on the normal page: an expander cannot hold another)
    with ui.config_container("Set the two 2-D Gaussians") if ctx.present else st.container():
        c1, c2 = st.columns(2, gap="large")
        with c1:
            mu0, cov0 = gaussian_2d_controls("p", "kl_p2", (1.0, 0.5, 1.5, 0.7, 0.6))
        with c2:
            mu1, cov1 = gaussian_2d_controls("q", "kl_q2", (0.0, 0.0, 1.0, 1.0, 0.0))
    kl01 = kl.kl_mvn(mu0, cov0, mu1, cov1)
    kl10 = kl.kl_mvn(mu1, cov1, mu0, cov0)
    c1, c2 = st.columns([3, 2], gap="large")
    with c1:
        ui.figure(klfig.mvn_figure(mu0, cov0, mu1, cov1, text_size=TEXT,
                                   **({"height": PRESENT_H} if ctx.present else {})), key="kl_fig_mvn",
                  alt=f"Covariance ellipses of two 2-D Gaussians p and q; KL(p‖q) = {kl01:.4f}, KL(q‖p) = {kl10:.4f}.")
    with c2:
        st.metric("KL(p‖q)", f"{kl01:.4f} nats")
        st.metric("KL(q‖p)", f"{kl10:.4f} nats")
        if ctx.present:
            st.markdown(DIAGONAL_TEXT)
    st.latex(klfig.latex_kl_mvn(mu0, cov0, mu1, cov1, "p", "q"))
    st.latex(klfig.latex_kl_mvn(mu1, cov1, mu0, cov0, "q", "p"))


# ---- 5 and 6: the ELBO, and the VAE's KL term -------------------------------------------------------

@st.cache_data(max_entries=64, show_spinner="Estimating log p(x) by importance sampling (1,000 samples)…")
def image_numbers(dataset: str, beta: float, img: int) -> dict:
    """Everything sections 5 and 6 show about one held-out image under one zoo VAE (16-d): its posterior
    (mu, logvar (16,)), the ELBO's two terms, log p(x) by IWAE (k = IWAE_K) with its standard error,
    and the amortisation gap (q optimised for this image alone). Cached by model and image."""
    from core import elbo
    ui.configure_torch()
    info = ui.pretrained(dataset, "vae", beta, LATENT)
    x = np.array(load_dataset(dataset).x[int(info.val_idx[img])][None, :])
    q = kl.encode_posteriors(info.model, x)
    g = elbo.amortisation_gap(info.model, x, k=IWAE_K, steps=300, n=IWAE_K, seed=0)
    return {"mu": q["mu"][0], "logvar": q["logvar"][0], "gap": g, "likelihood": info.config.likelihood}


@st.cache_data(max_entries=64, show_spinner="Estimating the gap under every β…")
def gaps_by_beta(dataset: str, row: int) -> dict:
    """L_k − ELBO of image ``row`` of the dataset (held out by every zoo model: they share one split)
    under every 16-d zoo VAE (core.elbo.gaps_by_model leaves out β = 0, which has no KL term)."""
    from core import elbo, zoo
    ui.configure_torch()
    models = {s.beta: ui.pretrained(dataset, "vae", s.beta, LATENT).model
              for s in zoo.available(dataset, "vae", LATENT) if s.beta > 0}
    return elbo.gaps_by_model(models, load_dataset(dataset).x[row], k=IWAE_K, n=IWAE_K, seed=0)


@st.cache_data(max_entries=8, show_spinner=False)
def beta0_sigma(dataset: str) -> tuple[float, float]:
    """The β = 0 zoo model's posterior σ_j, median over its held-out images (``core.units``, the figure
    every page quotes): the smallest and the largest over the 16 dimensions."""
    s = ui.activity(dataset, "vae", 0.0, LATENT).sigma_median
    return float(s.min()), float(s.max())


def encoded_figures(dataset: str, beta: float, img: int, x: np.ndarray, mu: np.ndarray, logvar: np.ndarray) -> dict:
    """The figures that depend only on the chosen image and model. Kept for the last image in session
    state, so moving the point slider does not rebuild them."""
    from core.figures import paired_rows
    from core.training import reconstruct

    cache_key = (dataset, beta, img, TEXT)
    cached = st.session_state.get("_kl_encoded")
    if cached is not None and cached["key"] == cache_key:
        return cached
    model = ui.pretrained(dataset, "vae", beta, LATENT).model
    kl_dims = np.asarray(kl.kl_to_standard_normal(mu, logvar))
    out = {
        "key": cache_key,
        "fig_img": paired_rows({"input": x, "decoded from μ": reconstruct(model, x)}, ctx.dataset.image_shape,
                               height=210),
        "fig_parts": klfig.kl_parts_figure(mu, logvar, text_size=TEXT, height=PRESENT_H if ctx.present else 420),
        "fig_post": klfig.posterior_vs_prior(mu, logvar, threshold=SMALL_KL_NATS, text_size=TEXT),
        "fig_bars": kl_bars(kl_dims, threshold=SMALL_KL_NATS, height=160 + 26 * LATENT),
    }
    st.session_state["_kl_encoded"] = out
    return out


def dims_list(idx) -> str:
    """0-based dimension indices as 'z5, z7 and z14' (1-based, as the figures label them)."""
    names = [f"z{int(j) + 1}" for j in idx]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def activity_note(act, kl_dims: np.ndarray) -> str:
    """The model's active units (core.units.UnitActivity, Burda et al., 2016: a property over the held-out
    data) and, separately, what one image's per-dimension KL (K,) says (never 'collapsed')."""
    k = len(act.active)
    barely = [j for j in np.flatnonzero(act.active) if act.var_mu[j] <= 0.05]
    small = np.flatnonzero(kl_dims < SMALL_KL_NATS)
    out = (f"**This model: {act.count} of {k} dimensions active** (Burda et al., 2016: the variance over its "
           f"{act.n_images} held-out images of μ_j(x) is above {act.threshold:g}); ")
    if len(act.collapsed) == k:
        out += "every one has collapsed. "
    else:
        out += f"collapsed: {dims_list(act.collapsed)}. " if act.collapsed else "none has collapsed. "
    if barely:
        out += (f"Only barely active (variance ≤ 0.05): {dims_list(barely)}, so a traversal of them changes the "
                "image little. ")
    if len(small) == 0:
        return out + f"**For this image**, every dimension has KL above {SMALL_KL_NATS:g} nats."
    which = f"all {k} dimensions" if len(small) == k else (
        f"{len(small)} dimension{'s' if len(small) != 1 else ''} ({dims_list(small)})")
    one = len(small) == 1
    return out + (f"**For this image**, {which} {'has' if one else 'have'} KL below {SMALL_KL_NATS:g} nats: "
                  f"{'it carries' if one else 'they carry'} almost no information about this image.")


def choose_model():
    """The β radio and the held-out image number, shared by sections 5 and 6."""
    with ui.config_container("Choose a trained VAE and a held-out image"):
        c1, c2 = st.columns(2, gap="large")
        with c1:
            beta = ui.select("β of the pretrained VAE (16 latent dimensions)", "kl_beta", BETAS, 1.0, radio=True,
                             horizontal=True, format_func=lambda b: f"β = {b:g}")
        model_info = ui.pretrained(ctx.dataset_name, "vae", float(beta), LATENT)
        n_val = len(model_info.val_idx)
        if st.session_state.get("kl_img", 0) > n_val - 1:  # e.g. after switching to a smaller dataset
            st.session_state["kl_img"] = n_val - 1
        with c2:
            img = int(ui.number(f"Held-out image (0 to {n_val - 1}; never seen in training)", "kl_img", 0,
                                n_val - 1, 0, step=1))
    return float(beta), img, model_info


ELBO_IDENTITY = (
    r"\begin{aligned}"
    r"\log p(x) &= \mathbb E_{q(z|x)}\big[\log p(x)\big] &&\text{(}\log p(x)\text{ does not depend on } z\text{)}\\"
    r"&= \mathbb E_{q(z|x)}\Big[\log\frac{p(x,z)}{p(z|x)}\Big] &&\text{(Bayes: } p(x) = p(x,z)/p(z|x)\text{)}\\"
    r"&= \mathbb E_{q(z|x)}\Big[\log\frac{p(x,z)}{q(z|x)}\Big] + \mathbb E_{q(z|x)}\Big[\log\frac{q(z|x)}{p(z|x)}\Big]"
    r" &&\text{(multiply and divide by } q(z|x)\text{)}\\"
    r"&= \mathrm{ELBO}(x) + \mathrm{KL}\big(q(z|x)\,\|\,p(z|x)\big)\;\ge\;\mathrm{ELBO}(x) &&(\mathrm{KL}\ge 0)"
    r"\end{aligned}")
ELBO_TERMS = (
    r"\mathrm{ELBO}(x) = \mathbb E_{q}\Big[\log\frac{p(x|z)\,p(z)}{q(z|x)}\Big]"
    r" = \underbrace{\mathbb E_{q(z|x)}[\log p(x|z)]}_{-\,\text{reconstruction term}}"
    r" - \underbrace{\mathrm{KL}\big(q(z|x)\,\|\,p(z)\big)}_{\text{KL term}}")
LOSS = (r"\text{loss} = -\mathrm{ELBO} = \text{reconstruction} + \text{KL}\quad(\beta = 1);\qquad"
        r"\beta\text{-VAE: reconstruction} + \beta\cdot\text{KL}\ \ \text{(Higgins et al., 2017)}")
ELBO_SHORT = (r"\log p(x) = \underbrace{\mathbb E_{q(z|x)}[\log p(x|z)] - \mathrm{KL}\big(q(z|x)\,\|\,p(z)\big)}"
              r"_{\mathrm{ELBO}(x)} + \mathrm{KL}\big(q(z|x)\,\|\,p(z|x)\big)\;\ge\;\mathrm{ELBO}(x)")
ELBO_JENSEN = (
    r"\log p(x) = \log\int q(z|x)\,\frac{p(x,z)}{q(z|x)}\,dz = \log\,\mathbb E_{q(z|x)}\Big[\frac{p(x,z)}{q(z|x)}\Big]"
    r"\;\ge\;\mathbb E_{q(z|x)}\Big[\log\frac{p(x,z)}{q(z|x)}\Big] = \mathrm{ELBO}(x)")
IWAE = (
    r"L_k(x) = \log\frac1k\sum_{i=1}^{k}\frac{p(x|z_i)\,p(z_i)}{q(z_i|x)},\quad z_i\sim q(z|x);\qquad"
    r"\mathbb E[L_1] = \mathrm{ELBO}(x)\;\le\;\mathbb E[L_k]\;\le\;\mathbb E[L_{k+1}]\;\le\;\log p(x)")
KL_CLOSED = (
    r"\mathrm{KL}\big(q(z|x)\,\|\,\mathcal N(0, I)\big) = \sum_{j=1}^{K}\tfrac12\big(\underbrace{\mu_j^2}_{\text{keeps codes near 0}}"
    r" + \underbrace{\sigma_j^2 - 1 - \log\sigma_j^2}_{\ge 0,\ =0\text{ only at }\sigma_j = 1}\big)")
RATE = (r"\mathbb E_{x}\Big[\mathrm{KL}\big(q(z|x)\,\|\,p(z)\big)\Big] = \underbrace{I_q(x; z)}_{\text{information in the code}}"
        r" + \underbrace{\mathrm{KL}\big(q(z)\,\|\,p(z)\big)}_{q(z) = \mathbb E_x q(z|x)\text{ against the prior}}")


def scale_note(likelihood: str) -> str:
    if likelihood == "bernoulli":
        return ("The decoder's likelihood is the training loss's: a Bernoulli cross-entropy summed over pixels. On grey "
                "pixels (between 0 and 1) that is not the log of a normalised probability, so these \"log p(x)\" "
                "figures are on the loss's scale, comparable between models, not a true log-likelihood.")
    return ("The decoder's likelihood is the training loss's: ½ squared error, a unit-variance Gaussian without its "
            "constant −D/2·log 2π, so these figures are log p(x) up to that constant.")


@st.fragment
def elbo_explanation() -> None:
    """Section 5's text: what the ELBO is, its derivation two ways, and what raising it does."""
    st.markdown(
            "A VAE is a latent-variable model: draw a code z ~ p(z) = N(0, I), then an image x ~ p(x|z) (the "
            "decoder). Its likelihood log p(x) = log ∫ p(x|z) p(z) dz has no closed form, nor has the true posterior "
            "p(z|x). The encoder's q(z|x) = N(μ(x), diag σ²(x)) approximates p(z|x), and training maximises a lower "
            "bound on log p(x), the **evidence lower bound** (ELBO; Kingma and Welling, 2014).")
    # Collapsed, and drawn once opened: its four formulas are KaTeX the browser would otherwise typeset before
    # the page counts as drawn (issue 21: the page draws completely within 1.5 s).
    derivation = ui.lazy_expander("📝 The derivation, step by step (exact identity, and by Jensen's inequality)",
                                  "kl_deriv_open")
    with derivation:
        if derivation.open:
            derivation_steps()
    st.markdown(
        "**What raising the ELBO does.** log p(x) does not depend on the encoder, so raising the ELBO through "
        "the encoder can only shrink KL(q(z|x) ‖ p(z|x)): it **pulls q towards the true posterior**. Raising it "
        "through the decoder raises **log p(x)** (or closes the gap). Training does both at once. The KL it "
        "shrinks is the **reverse** direction, KL(q ‖ p), of section 3. The loss a VAE minimises is −ELBO = "
        "reconstruction term + KL term (β·KL term in a β-VAE; Higgins et al., 2017).")


def derivation_steps() -> None:
    """The ELBO derived two ways (in its expander), and the loss a VAE minimises."""
    st.markdown("**By an exact identity**, for any q(z|x):")
    st.latex(ELBO_IDENTITY)
    st.markdown("Splitting p(x, z) = p(x|z) p(z) gives the two terms a VAE computes:")
    st.latex(ELBO_TERMS)
    st.latex(LOSS)
    st.markdown("**By Jensen's inequality** (log is concave, so log E[·] ≥ E[log ·]):")
    st.latex(ELBO_JENSEN)
    st.markdown("Jensen says the ELBO is below log p(x); the identity says by exactly how much: "
                "KL(q(z|x) ‖ p(z|x)), the KL from the encoder's q to the **true** posterior.")


def elbo_numbers(g, img: int, label: str, beta: float) -> None:
    """Section 5's figure and readout for one image: the waterfall from the reconstruction term to
    log p(x), and the three numbers. ``g``: a core.elbo.AmortisationGap."""
    if not ctx.present:
        st.markdown(f"**This image (label {label}) under the β = {beta:g} model**, in nats. log p(x) is estimated "
                    "by importance sampling with q(z|x) as the proposal, the IWAE bound (Burda et al., 2016):")
        st.latex(IWAE)
    c1, c2 = st.columns([3, 2], gap="large")
    with c1:
        ui.figure(klfig.elbo_waterfall(g.recon_encoder, g.kl_encoder, g.log_px, g.log_px_se, IWAE_K,
                                       text_size=TEXT, height=PRESENT_H if ctx.present else 440),
                  key="kl_fig_elbo",
                  alt=f"Waterfall for held-out image {img}: E_q log p(x|z) = {-g.recon_encoder:.2f}, minus the KL "
                      f"term {g.kl_encoder:.2f}, gives the ELBO {g.elbo_encoder:.2f}; adding the gap {g.gap:.2f} "
                      f"gives log p(x) ≈ {g.log_px:.2f} ± {1.96 * g.log_px_se:.2f} nats.")
    with c2:
        with st.container(key="kl_elbo_readout"):
            st.metric("log p(x), IWAE estimate", f"{klfig.nats(g.log_px)} nats",
                      help=f"L_k with k = {IWAE_K:,}; ± {klfig.nats(g.log_px_se, 3)} standard error (delta method)")
            st.metric("ELBO = −reconstruction − KL term", f"{klfig.nats(g.elbo_encoder)} nats",
                      help=f"reconstruction term {klfig.nats(g.recon_encoder)} nats ({IWAE_K:,} samples of z), "
                           f"KL term {klfig.nats(g.kl_encoder)} nats (closed form)")
            st.metric("Gap log p(x) − ELBO ≈ KL(q(z|x) ‖ p(z|x))", f"{klfig.nats(g.gap)} nats")


@st.fragment
def vae_sections(show_elbo: bool, show_kl: bool) -> None:
    """Sections 5 (the ELBO) and 6 (the KL term): one fragment, since both use the same model and image.
    In presenter mode each scene's figure comes right after its header (the chooser below it)."""
    present = ctx.present
    slot5 = slot6 = None
    if show_elbo:
        st.header("5. The ELBO: a lower bound on log p(x)")
        if present:  # the figure first (it fits the projector's 720 px), the identity under it
            slot5 = st.container()
            st.latex(ELBO_SHORT)
        else:
            elbo_explanation()
    elif show_kl:
        st.header("6. The KL term inside a VAE")
        slot6 = st.container()
    beta, img, model_info = choose_model()
    ds = ctx.dataset
    row = int(model_info.val_idx[img])
    x = np.array(ds.x[row][None, :])  # a writable copy for torch
    label = ds.class_names[int(ds.y[row])] if ds.class_names else str(int(ds.y[row]))
    nums = image_numbers(ctx.dataset_name, beta, img)
    g = nums["gap"]
    if show_elbo:
        with slot5 or st.container():
            elbo_numbers(g, img, label, beta)
        if present:
            elbo_explanation()
        st.markdown(
            f"**How much of the gap is the encoder's fault?** Optimising q's μ and log σ² for this one image "
            f"(300 Adam steps; Cremer et al., 2018) raises its ELBO to **{klfig.nats(g.elbo_best)}**: the "
            f"*amortisation gap* (one encoder network for all images) is **{klfig.nats(g.amortisation)}** nats; "
            f"the rest, **{klfig.nats(g.approximation)}** nats, is the *approximation gap* (no diagonal Gaussian "
            "fits p(z|x) exactly)" + (" — negative here: L_k is only an estimate of a lower bound on log p(x), and "
                                      "here it falls below the optimised ELBO." if g.approximation < 0 else "."))
        st.caption(f"Reconstruction term −E_q[log p(x|z)] = {klfig.nats(g.recon_encoder)} nats per image, "
                   f"KL term KL(q(z|x) ‖ p(z)) = {klfig.nats(g.kl_encoder)} nats, −ELBO = "
                   f"{klfig.nats(-g.elbo_encoder)} nats. L_k is itself a lower bound on log p(x) (on average), so "
                   "L_k − ELBO can underestimate the true gap. " + scale_note(nums["likelihood"]))
        gaps_box = ui.lazy_expander("The gap under every β (16-d models)", "kl_gaps_open")
        with gaps_box:
            if gaps_box.open:  # estimated only once opened (a second of IWAE per model)
                gb = gaps_by_beta(ctx.dataset_name, row)
                ui.figure(klfig.gap_by_beta_figure(gb["beta"], gb["gap"], gb["se"], beta, text_size=TEXT),
                          key="kl_fig_gaps",
                          alt="The gap L_k − ELBO of this image under each zoo model: " +
                              ", ".join(f"β = {b:g}: {v:.2f} nats" for b, v in zip(gb["beta"], gb["gap"])) + ".")
                lo, hi = beta0_sigma(ctx.dataset_name)
                st.caption(
                    "Each bar: L_k − ELBO for this image, ± 1.96 standard errors. A model whose q fits the true posterior "
                    "well has a small gap; a model that pays almost no KL (large β, q ≈ p(z)) can have a small gap too, "
                    "because its decoder then hardly depends on z. Not shown: β = 0, trained without the KL term: its "
                    f"encoder's median σ_j is {lo:.2g} to {hi:.2g} over the dimensions, so q is nearly a point, and "
                    "importance sampling with it as the proposal gives an estimate far below log p(x).")

    if not show_kl:
        return
    if slot6 is None:
        st.header("6. The KL term inside a VAE")
        slot6 = st.container()
    mu_x, logvar_x = nums["mu"], nums["logvar"]
    figs = encoded_figures(ctx.dataset_name, beta, img, x, mu_x, logvar_x)
    parts = kl.kl_standard_normal_parts(mu_x, logvar_x)
    kl_dims = parts["total"]
    total = float(kl_dims.sum())
    lo, hi = beta0_sigma(ctx.dataset_name)
    beta0 = ui.pretrained(ctx.dataset_name, "vae", 0.0, LATENT).evaluation
    with slot6:
        if not present:
            st.markdown("The KL term of the ELBO has a closed form for a diagonal Gaussian q and the prior N(0, I) "
                        "(Kingma and Welling, 2014, Appendix B):")
            st.latex(KL_CLOSED)
        c1, c2 = st.columns([3, 2], gap="large")
        with c1:
            ui.figure(figs["fig_parts"], key="kl_fig_parts",
                      alt=f"This image's KL per latent dimension in four parts (½μ², ½σ², −½ log σ², −½); total "
                          f"{total:.3f} nats.")
        with c2:
            with st.container(key="kl_vae_readout"):
                st.metric(f"KL of this image (label {label}), β = {beta:g}", f"{total:.4f} nats",
                          help="Sum over the 16 latent dimensions of ½(μ²+σ²−1−log σ²).")
            st.latex(klfig.latex_kl_parts_sum(mu_x, logvar_x))
    if present:
        st.latex(KL_CLOSED)
    c1, c2 = st.columns([3, 2], gap="large")
    with c1:
        st.markdown(
            "**What each part does:**\n"
            f"- **−log σ²** grows without bound as σ → 0, so the encoder **cannot switch its noise off**. Without "
            f"the KL term it does: the zoo's β = 0 model has a median σ_j between **{lo:.2g}** and **{hi:.2g}** in "
            "every dimension, a plain autoencoder in all but name.\n"
            "- **The noise makes the space smooth.** The decoder is trained on z = μ + σ·ε, a different point near "
            "μ(x) each time, so every code within about σ of μ(x) must decode to an image like x: nearby codes "
            "decode to similar images.\n"
            "- **μ²** pulls every code towards 0, so the codes of the data sit where z ~ N(0, I) puts its samples, "
            "and decoding a prior sample tends to give a plausible image (where the codes leave gaps it does not: "
            f"the prior hole, on the Limits page). At β = 0 the codes drift: {beta0['kl']:.0f} nats of KL per "
            "image.")
    with c2:
        act = ui.activity(ctx.dataset_name, "vae", beta, LATENT)
        note = activity_note(act, kl_dims)
        with st.container(key="kl_activity"):
            st.markdown(note)

    if not present:
        map_box = ui.lazy_expander("🗺️ The KL term on the latent map: four 2-D VAEs, and a digit you draw", "kl_map_open")
        with map_box:
            if map_box.open:
                latent_map_view(np.array(x[0]))

    price_box = ui.lazy_expander("The price of one dimension, and this image's posterior against the prior",
                                 "kl_price_open", url_keys=("kl_vmu", "kl_vlv"))
    with price_box:
        if price_box.open:  # four charts: drawn only once opened
            with ui.config_container("Choose a point"):
                mu = ui.slider("Posterior mean μ", "kl_vmu", -3.0, 3.0, 1.0, step=0.1)
                logvar = ui.slider("Posterior log-variance log σ²", "kl_vlv", -6.0, 2.0, -1.0, step=0.1)
            with st.container(key="kl_vae_point"):
                st.latex(klfig.latex_vae_kl(mu, logvar))
            c1, c2 = st.columns([3, 2], gap="large")
            with c1:
                ui.live_figure(klfig.vae_kl_map(mu, logvar, mu_x, logvar_x, text_size=TEXT), key="kl_fig_map",
                               updater="kl_vae_point", watch={"mu": "kl_vmu", "logvar": "kl_vlv"},
                               values={"mu": mu, "logvar": logvar},
                               alt=f"Contour map of the VAE's KL term over mean and log-variance; zero at the prior (0, 0). "
                                   f"Your point μ={mu:g}, log σ²={logvar:g} costs "
                                   f"{float(kl.kl_to_standard_normal(mu, logvar)):.3f} nats; the {LATENT} dots are the "
                                   "latent dimensions of the chosen image.")
            with c2:
                st.markdown("**Your point** is the star. The **dots** are the 16 latent dimensions of this image, "
                            "encoded by the real model: a dot on the prior's circle costs no KL and carries almost no "
                            "information about this image.")
                ui.figure(figs["fig_img"], key="kl_fig_img", alt=f"Held-out image {img} (label {label}) and its "
                                                                  "reconstruction decoded from the posterior mean.")
            c1, c2 = st.columns(2, gap="large")
            with c1:
                ui.figure(figs["fig_post"], key="kl_fig_post",
                          alt=f"Per-dimension posterior mean ± 1.96 sd for the chosen image against the prior band; "
                              f"{int(np.sum(kl_dims > SMALL_KL_NATS))} of {LATENT} dimensions have KL above {SMALL_KL_NATS:g} nats.")
            with c2:
                ui.figure(figs["fig_bars"], key="kl_fig_bars",
                          alt=f"KL per latent dimension for the chosen image, total {total:.3f} nats.")

    st.markdown(
        "**Averaged over the data, the KL term limits the rate.** Hoffman and Johnson (2016) split the average KL "
        "term into the mutual information between an image and its code, and the distance of the aggregate "
        "posterior q(z) from the prior:")
    st.latex(RATE)
    st.markdown(
        "So the average KL term, the *rate* (Alemi et al., 2018), is an upper bound on how much information the "
        "code carries about x, I(x; z). β weights it (Higgins et al., 2017): a larger β buys a lower rate with a "
        "worse reconstruction, a rate–distortion trade-off. KL is not symmetric, and the VAE uses the reverse "
        "direction KL(q ‖ p) (section 3): the KL term is KL(q(z|x) ‖ p(z)), the gap is KL(q(z|x) ‖ p(z|x)).")

    rows, evals, acts = [], {}, {}
    for b in BETAS:
        info = ui.pretrained(ctx.dataset_name, "vae", b, LATENT)
        evals[b], acts[b] = info.evaluation, ui.activity(ctx.dataset_name, "vae", b, LATENT)
        this = kl.image_kl(info.model, x)
        name = f"**β = {b:g}**" if b == beta else f"β = {b:g}"
        rows.append(f"| {name} | {this:.2f} | {info.evaluation['kl']:.2f} | {acts[b].count} of {LATENT} | "
                    f"{info.evaluation['recon']:.2f} |")
    with st.expander("The same image under the three pretrained models", expanded=not ctx.present):
        st.markdown(f"Each model on all {len(model_info.val_idx)} held-out images (active: Burda et al.'s "
                    f"Var_x μ_j(x) > 0.01; reconstruction: mean −log p(x|z), nats per image):"
                    "\n\n| model | KL of this image | held-out mean KL | held-out active dimensions | "
                    "held-out reconstruction |\n|---|---|---|---|---|\n" + "\n".join(rows))
    lo_e, hi_e = evals[BETAS[0]], evals[BETAS[-1]]
    st.markdown(
        f"**Too much of it over-regularizes.** From β = {BETAS[0]:g} to β = {BETAS[-1]:g}, the held-out KL falls "
        f"from {lo_e['kl']:.2f} to {hi_e['kl']:.2f} nats, but the reconstruction error rises from "
        f"{lo_e['recon']:.2f} to {hi_e['recon']:.2f} nats (blurrier reconstructions), and the active dimensions go "
        f"from {acts[BETAS[0]].count} to {acts[BETAS[-1]].count} of {LATENT}. A dimension whose posterior stays at "
        "the prior for every input carries no information to the decoder: that is **posterior collapse**.")
    link_to_limits()


def link_to_limits() -> None:
    """A link to the limitations lesson when that page exists (and is in the navigation), else plain text."""
    label = "More on blur, over-regularization and posterior collapse: Limits of VAEs"
    if (ROOT / LIMITS_PAGE).is_file():
        try:
            st.page_link(LIMITS_PAGE, label=label, icon="⚠️")
            return
        except StreamlitAPIException:  # run without app.py's navigation (AppTest runs the page file alone)
            pass
    st.caption(label.replace(": ", ": see the lesson ", 1) + ".")


# ---- 6b: the KL term on the latent map (2-D VAEs) --------------------------------------------------

@st.cache_data(max_entries=4, show_spinner="Encoding held-out images with the four 2-D VAEs…")
def latent_map_panels(dataset: str) -> list[dict]:
    """Each 2-D zoo VAE's posteriors for the first MAP_N images of its held-out split."""
    ui.configure_torch()
    ds = load_dataset(dataset)
    out = []
    for b in MAP_BETAS:
        info = ui.pretrained(dataset, "vae", b, 2)
        idx = np.asarray(info.val_idx)[:MAP_N]
        out.append(kl.latent_map_panel(info.model, ds.x[idx], ds.y[idx], b))
    return out


@st.cache_data(max_entries=8, show_spinner=False)
def typical_extent(dataset: str) -> int:
    from core import diagram
    ds = load_dataset(dataset)
    return diagram.typical_extent(ds.x, ds.image_shape)


def drawing_input(fallback: np.ndarray) -> tuple[np.ndarray, str]:
    """The user's drawing as the dataset's image (core.diagram.drawing_to_image, as on the autoencoder
    page), or ``fallback`` (the chosen held-out image) until something is drawn."""
    from core import diagram
    ds = ctx.dataset
    try:
        from streamlit_drawable_canvas import st_canvas
    except Exception:  # the component failed to register: carry on with the held-out image
        st.warning("The drawing canvas is not available in this installation; the map shows the chosen "
                   "held-out image instead.")
        return fallback, "the chosen held-out image"
    st.markdown("**Draw a digit** (white on black):")
    st.space(24)  # the canvas's toolbar appears above it on hover
    canvas = st_canvas(stroke_width=22, stroke_color="#FFFFFF", background_color="#000000", height=280, width=280,
                       drawing_mode="freedraw", return_image_data=True, key="kl_canvas")
    img = canvas.image_data if canvas is not None else None
    drawn = None
    if img is not None:
        drawn = ui.run_safely(lambda: diagram.drawing_to_image(img, ds.image_shape, typical_extent(ctx.dataset_name)),
                              "The drawing could not be read", "Clear the canvas (🗑) and draw again.")
    if drawn is None:
        return fallback, "the chosen held-out image (draw to replace it)"
    return drawn, "your drawing"


def sigma_text(v: float) -> str:
    """σ for the table: 3 decimals, or 2 significant digits below 0.01 (β = 0's σ is ~0.0002, not 0.000)."""
    return f"{v:.3f}" if v >= 0.01 else f"{v:.2g}"


def latent_map_view(fallback: np.ndarray) -> None:
    """Every 2-D VAE's posteriors as ellipses over the prior, and one image's q(z|x) landing on them
    with the three parts of its KL (the mechanism of section 6, seen on the map)."""
    present = ctx.present
    if not present:  # presenter: the scene's header says it
        st.subheader("The KL term on the latent map")
    fig_slot = st.container()
    panels = latent_map_panels(ctx.dataset_name)
    # Not in a column, and 280 px as on the autoencoder page (a narrow column clipped it there, issue 21).
    x_in, what = drawing_input(fallback)
    on_maps = kl.image_on_maps({b: ui.pretrained(ctx.dataset_name, "vae", b, 2).model for b in MAP_BETAS}, x_in)
    posts = [(q["mu"], q["logvar"], q["sigma"]) for q in on_maps]
    with fig_slot:
        ui.figure(klfig.latent_ellipses_figure(panels, drawn=[(m, s) for m, _, s in posts],
                                               class_names=ctx.dataset.class_names, text_size=TEXT,
                                               height=PRESENT_H if present else 380),
                  key="kl_fig_latent_map",
                  alt="Four 2-D latent maps, β = 0, 0.5, 1 and 4: each held-out image's posterior as a one-standard-"
                      "deviation ellipse over the prior's circles; " + "; ".join(
                          f"β = {p['beta']:g}: mean σ {p['mean_sigma']:.3f}, {100 * p['inside2']:.0f}% of means within "
                          f"radius 2" for p in panels) + f". The black ellipse and star: {what}.")
        st.caption(f"Dotted circles: the prior N(0, I) at radius 1, 2, 3. Coloured ellipses: {len(panels[0]['mu'])} "
                   f"held-out images, one colour per class (hover for it). Black ellipse and ⭐: {what}. Each "
                   "panel has its own scale.")
    rows = []
    for q in on_maps:
        b, m, parts, sig = q["beta"], q["mu"], q["parts"], q["sigma"]
        rows.append(f"| β = {b:g} | ({klfig.nats(m[0])}, {klfig.nats(m[1])}) | ({sigma_text(sig[0])}, {sigma_text(sig[1])}) | "
                    f"{parts['mu2']:.3f} | {parts['sigma2']:.3f} | {klfig.nats(parts['neg_log_sigma2'], 3)} | "
                    f"{parts['total']:.3f} |")
    one = MAP_BETAS.index(1.0)
    with st.container(key="kl_map_parts"):
        st.markdown(f"**The KL of {what}** under each 2-D model, in nats, and its three parts "
                    "(each summed over z₁, z₂; the constant −K/2 = −1 completes the sum):\n\n"
                    "| model | μ | σ | ½Σμ² | ½Σσ² | −½Σ log σ² | KL term |\n|---|---|---|---|---|---|---|\n"
                    + "\n".join(rows))
        st.latex(r"\beta = 1:\quad" + klfig.latex_kl_parts_sum(posts[one][0], posts[one][1]))
    b0, b1 = panels[0], panels[one]
    last = panels[-1]
    end = (f"At β = {last['beta']:g} every ellipse is the prior's unit circle at the origin (mean σ "
           f"{last['mean_sigma']:.3f}): the code carries nothing, posterior collapse."
           if last["max_radius"] < 0.1 and abs(last["mean_sigma"] - 1) < 0.05 else
           f"At β = {last['beta']:g} the ellipses are wider still (mean σ {last['mean_sigma']:.3f}) and overlap more.")
    st.markdown(
        f"**👀 What you see.** Each ellipse is one held-out image's q(z|x), drawn at one standard deviation: "
        f"half-axes σ_j = exp(½ log σ_j²) from the encoder, axis-aligned because q is a diagonal Gaussian; the "
        f"dotted circles are the prior N(0, I) at radius 1, 2 and 3. At β = 0 (no KL term) the ellipses shrink to "
        f"points (mean σ {b0['mean_sigma']:.4f}) and the codes wander up to {b0['max_radius']:.0f} from the origin, "
        f"with only {100 * b0['inside2']:.0f}% within radius 2 (each panel has its own scale). With the KL term, the "
        f"−log σ² part keeps the ellipses open (β = 1: mean σ {b1['mean_sigma']:.3f}) and the μ² part pulls them in "
        f"({100 * b1['inside2']:.0f}% within radius 2, where the prior puts 86%). {end}")


def latent_map_section() -> None:
    """Presenter scene 7: the latent map alone (the chosen held-out image stands in until one is drawn);
    the image chooser goes under the figure, so the figure comes right after the header."""
    st.header("6. The KL term on the latent map")
    top = st.container()
    beta, img, model_info = choose_model()
    row = int(model_info.val_idx[img])
    with top:
        latent_map_view(np.array(ctx.dataset.x[row]))


# ---- the page ---------------------------------------------------------------------------------------

if show(0) or show(1):
    two_gaussians(show_exact=show(0), show_mc=show(1))
if show(2):
    forward_reverse()
if show(3):
    two_dimensions()
if show(4) or show(5):
    vae_sections(show_elbo=show(4), show_kl=show(5))
if ctx.present and show(6):
    st.fragment(latent_map_section)()

with url_errors:
    ui.show_url_errors()

wide_pq, wide_qp = kl.kl_normal(0, 1, 0, 2), kl.kl_normal(0, 2, 0, 1)
ui.self_check("kl", [
    ("p = N(0, 1) and q = N(0, 2²) (the 'Wider q' preset). Which is larger, KL(p‖q) or KL(q‖p)?",
     f"KL(q‖p) = {wide_qp:.3f} nats is larger than KL(p‖q) = {wide_pq:.3f}. KL(q‖p) averages over samples from the "
     "wide q, many of which land in the thin tails of p where log q/p is large."),
    ("You fit one Gaussian to a distribution with two well-separated modes by minimising KL(q‖p). Where does it end?",
     "It depends on the start: reverse KL has several local optima. From a start nearer one mode, q usually ends on "
     "that mode with roughly its width (mode seeking: q is punished for putting mass in the gap where p is near 0). "
     "From the exact centre (set the start to 0 in section 3) it ends at the wide symmetric optimum between the "
     "modes. Minimising KL(p‖q) instead has one optimum: a wide Gaussian over both modes (mode covering)."),
    ("A latent dimension has μ = 0 and σ = 1 for every input. What is its KL, and what does the decoder learn from it?",
     "Its KL is ½(0 + 1 − 1 − 0) = 0, and it tells the decoder nothing: z is pure prior noise, whatever the input. "
     "The dimension has collapsed. A large β makes more dimensions do this."),
])
