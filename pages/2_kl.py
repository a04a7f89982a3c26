"""KL divergence: between two Gaussians, by sampling, forward vs reverse, in 2-D, and inside a VAE.

Thin page: widgets -> core.kl (every number) -> core.figures.kl (every figure). Each section is a
``st.fragment``, so moving one of its sliders reruns only that section (see bench/).
"""
from pathlib import Path

import numpy as np
import streamlit as st
from streamlit.errors import StreamlitAPIException

from core import kl, ui
from core.figures import kl_bars
from core.figures import kl as klfig

ROOT = Path(__file__).resolve().parent.parent
LIMITS_PAGE = "pages/6_limits.py"

MU_RANGE, SIGMA_RANGE = (-5.0, 5.0), (0.1, 5.0)
N_CHOICES = [10, 30, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000]
MC_CURVE_NS = sorted(set(np.unique(np.geomspace(2, 100_000, 48).round().astype(int)).tolist()) | set(N_CHOICES))
FIT_STEPS, FIT_LR = 300, 0.2
BETAS = [0.5, 1.0, 4.0]
LATENT = 16
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
url_errors = st.container()  # filled at the end: the widgets below validate their URL values as they are made

SCENES = [
    ("Two Gaussians", "Move p and q: the shaded area is KL(p‖q), and the two directions differ."),
    ("KL by sampling", "Average log p/q over samples from p: the estimate homes in on the exact value."),
    ("Forward vs reverse", "Fit one Gaussian to two modes: forward KL covers both, reverse KL picks one."),
    ("Two dimensions", "Correlated 2-D Gaussians: the same formula with matrices."),
    ("KL inside a VAE", "Each latent dimension pays KL to stay close to N(0, 1); a real encoder shows the bill."),
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
    ui._bind(key, default, choices=options)
    v = st.select_slider(label, options, key=key, **kw)
    ui._publish(key)
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
        st.markdown(
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
            ui.live_figure(klfig.density_figure(mu_p, s_p, mu_q, s_q, text_size=TEXT), key="kl_fig_density",
                           updater="kl_density", watch=DENSITY_SLIDERS,
                           values=dict(mu_p=mu_p, sigma_p=s_p, mu_q=mu_q, sigma_q=s_q),
                           alt=f"Densities of p = N({mu_p:g}, {s_p:g}²) and q = N({mu_q:g}, {s_q:g}²), and below them the "
                               f"signed integrand p log(p/q) whose area is KL(p‖q) = {kl_pq:.4f} nats.")

    if show_mc:
        st.header("2. Estimating KL by sampling")
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
        ui.figure(klfig.mc_convergence_figure(curve["n"], curve["estimate"], curve["stderr"], kl_pq, n, est,
                                               text_size=TEXT),
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

@st.fragment
def forward_reverse() -> None:
    st.header("3. Forward vs reverse KL: covering or seeking modes")
    st.markdown(
        "Let p have **two modes** and fit a single Gaussian q to it, by gradient descent (Adam, PyTorch autograd) on "
        "either direction of the KL. Press ▶ Play to watch the optimisation.")
    with ui.config_container("Set the two modes and the start"):
        c1, c2 = st.columns(2, gap="large")
        with c1:
            sep = ui.slider("Distance between the two modes of p", "kl_sep", 1.0, 6.0, 4.0, step=0.5,
                            help="p = ½ N(−d/2, 0.6²) + ½ N(d/2, 0.6²)")
        with c2:
            start = ui.slider("Starting mean of q (σ starts at 0.5)", "kl_start", -3.0, 3.0, 0.5, step=0.25)
    mix, fwd, rev = fit_trajectories(float(sep), float(start))
    target_mu, target_sd = kl.mixture_moments(**mix)
    ui.figure(klfig.fit_animation_figure(mix["weights"], mix["mus"], mix["sigmas"], fwd, rev, text_size=TEXT),
              key="kl_fig_fit", html_name="kl-forward-vs-reverse",
              alt=f"Animation of fitting one Gaussian to a two-mode distribution with modes {sep:g} apart. Forward KL "
                  f"ends at mean {fwd[-1][0]:.2f}, sd {fwd[-1][1]:.2f}, covering both modes; reverse KL ends at mean "
                  f"{rev[-1][0]:.2f}, sd {rev[-1][1]:.2f}.")
    c1, c2 = st.columns(2, gap="large")
    with c1:
        st.markdown(
            f"**Forward, KL(p‖q) = E_p[log p/q]: mode covering.** The average is over p, so q is punished heavily "
            f"wherever p has mass and q has almost none: q stretches over **both** modes. Its optimum matches p's "
            f"mean and standard deviation ({target_mu:.2f} and {target_sd:.2f}); the fit ends at "
            f"μ = {fwd[-1][0]:.2f}, σ = {fwd[-1][1]:.2f}, KL = {fwd[-1][2]:.3f} nats.")
    with c2:
        st.markdown(
            f"**Reverse, KL(q‖p) = E_q[log q/p]: mode seeking.** The average is over q, so q is punished only where "
            f"*q* puts mass that p lacks, such as the gap between the modes: q shrinks onto **one** mode. It ends at "
            f"μ = {rev[-1][0]:.2f}, σ = {rev[-1][1]:.2f}, KL = {rev[-1][2]:.3f} nats. Which mode depends on where q "
            "starts; when the modes are close together, one wide q fits best either way.")
    st.info("A VAE's encoder is trained by the ELBO, whose gap to log p(x) is KL(q(z|x) ‖ p(z|x)): the **reverse** "
            "direction. So a VAE's posterior tends to be mode-seeking and too narrow (over-confident), rather than "
            "covering every code that could explain an image.", icon="💡")


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


@st.fragment
def two_dimensions() -> None:
    st.header("4. Two dimensions: correlated Gaussians")
    st.markdown("The same idea for vectors: means become vectors and variances become covariance matrices. Here q "
                "starts as the standard normal N(0, I), the prior of a VAE's 2-D latent space.")
    with ui.config_container("Set the two 2-D Gaussians"):
        c1, c2 = st.columns(2, gap="large")
        with c1:
            mu0, cov0 = gaussian_2d_controls("p", "kl_p2", (1.0, 0.5, 1.5, 0.7, 0.6))
        with c2:
            mu1, cov1 = gaussian_2d_controls("q", "kl_q2", (0.0, 0.0, 1.0, 1.0, 0.0))
    kl01 = kl.kl_mvn(mu0, cov0, mu1, cov1)
    kl10 = kl.kl_mvn(mu1, cov1, mu0, cov0)
    c1, c2 = st.columns([3, 2], gap="large")
    with c1:
        ui.figure(klfig.mvn_figure(mu0, cov0, mu1, cov1, text_size=TEXT), key="kl_fig_mvn",
                  alt=f"Covariance ellipses of two 2-D Gaussians p and q; KL(p‖q) = {kl01:.4f}, KL(q‖p) = {kl10:.4f}.")
    with c2:
        st.metric("KL(p‖q)", f"{kl01:.4f} nats")
        st.metric("KL(q‖p)", f"{kl10:.4f} nats")
        st.markdown("A correlation ρ ≠ 0 tilts the ellipse. A VAE's encoder outputs a **diagonal** Gaussian "
                    "(ρ = 0, one σ per dimension), so its KL to N(0, I) splits into one term per dimension, "
                    "as in section 5.")
    st.latex(klfig.latex_kl_mvn(mu0, cov0, mu1, cov1, "p", "q"))
    st.latex(klfig.latex_kl_mvn(mu1, cov1, mu0, cov0, "q", "p"))


# ---- 5: the VAE's KL term ---------------------------------------------------------------------------

def encoded_image(dataset: str, beta: float, img: int, x: np.ndarray) -> dict:
    """The encoder's posterior for one held-out image (mu, logvar, per-dimension KL, each (16,)) and
    the figures that depend only on it. Kept for the last image in session state, so moving the
    point slider does not rebuild them."""
    from core.figures import paired_rows
    from core.training import ACTIVE_UNIT_NATS, encode_stats, reconstruct

    cache_key = (dataset, beta, img, TEXT)
    cached = st.session_state.get("_kl_encoded")
    if cached is not None and cached["key"] == cache_key:
        return cached
    model = ui.pretrained(dataset, "vae", beta, LATENT).model
    mu, logvar = (a[0].astype(np.float64) for a in encode_stats(model, x))
    kl_dims = np.asarray(kl.kl_to_standard_normal(mu, logvar))
    out = {
        "key": cache_key, "mu": mu, "logvar": logvar, "kl": kl_dims,
        "fig_img": paired_rows({"input": x, "decoded from μ": reconstruct(model, x)},
                               ctx.dataset.image_shape,
                               height=210),
        "fig_post": klfig.posterior_vs_prior(mu, logvar, threshold=ACTIVE_UNIT_NATS, text_size=TEXT),
        "fig_bars": kl_bars(kl_dims, threshold=ACTIVE_UNIT_NATS, height=160 + 26 * LATENT),
    }
    st.session_state["_kl_encoded"] = out
    return out


@st.fragment
def vae_section() -> None:
    from core.training import ACTIVE_UNIT_NATS, count_active_units, encode_stats

    st.header("5. The KL term inside a VAE")
    st.markdown(
        "A VAE's encoder maps an image x to a Gaussian q(z|x) = N(μ(x), diag σ²(x)). Training maximises the "
        "evidence lower bound (ELBO). As a loss to minimise, that is the reconstruction error **plus the KL to the "
        "prior**; a β-VAE weights the KL by β (β = 1 is the plain ELBO):")
    st.latex(r"\log p(x) \;\ge\; \underbrace{\mathbb E_{q(z|x)}[\log p(x|z)]}_{\text{reconstruction}}"
             r" - \underbrace{\mathrm{KL}\big(q(z|x)\,\|\,\mathcal N(0, I)\big)}_{=\ \sum_j \frac12(\mu_j^2+\sigma_j^2-1-\log\sigma_j^2)},"
             r"\qquad \text{loss} = \text{recon} + \beta\cdot\text{KL}")
    st.markdown(
        "Each latent dimension pays the KL below for moving its μ away from 0 or its σ away from 1. "
        "Move the point, then pick an image to see what a trained encoder actually pays.")
    with ui.config_container("Choose a point and a real encoder"):
        c1, c2 = st.columns(2, gap="large")
        with c1:
            mu = ui.slider("Posterior mean μ", "kl_vmu", -3.0, 3.0, 1.0, step=0.1)
            logvar = ui.slider("Posterior log-variance log σ²", "kl_vlv", -6.0, 2.0, -1.0, step=0.1)
        with c2:
            beta = ui.select("β of the pretrained VAE (16 latent dimensions)", "kl_beta", BETAS, 1.0, radio=True,
                             horizontal=True, format_func=lambda b: f"β = {b:g}")
            model_info = ui.pretrained(ctx.dataset_name, "vae", float(beta), LATENT)
            n_val = len(model_info.val_idx)
            if st.session_state.get("kl_img", 0) > n_val - 1:  # e.g. after switching to a smaller dataset
                st.session_state["kl_img"] = n_val - 1
            img = int(ui.number(f"Held-out image (0 to {n_val - 1}; never seen in training)", "kl_img", 0,
                                n_val - 1, 0, step=1))

    ds = ctx.dataset
    row = int(model_info.val_idx[img])
    x = np.array(ds.x[row][None, :])  # a writable copy for torch
    label = ds.class_names[int(ds.y[row])] if ds.class_names else str(int(ds.y[row]))
    encoded = encoded_image(ctx.dataset_name, float(beta), img, x)
    mu_x, logvar_x, kl_dims = encoded["mu"], encoded["logvar"], encoded["kl"]
    total = float(kl_dims.sum())
    active = count_active_units(kl_dims)

    with st.container(key="kl_vae_point"):
        st.latex(klfig.latex_vae_kl(mu, logvar))
    c1, c2 = st.columns([3, 2], gap="large")
    with c1:
        ui.live_figure(klfig.vae_kl_map(mu, logvar, mu_x, logvar_x, text_size=TEXT), key="kl_fig_map",
                       updater="kl_vae_point", watch={"mu": "kl_vmu", "logvar": "kl_vlv"},
                       values={"mu": mu, "logvar": logvar},
                       alt=f"Contour map of the VAE's KL term over mean and log-variance; zero at the prior (0, 0). "
                           f"Your point μ={mu:g}, log σ²={logvar:g} costs "
                           f"{float(kl.kl_to_standard_normal(mu, logvar)):.3f} nats; the {LATENT} dots are the latent "
                           "dimensions of the chosen image.")
    with c2:
        st.markdown("**Your point** is the star. The **dots** are the 16 latent dimensions of this image, "
                    "encoded by the real model: the ones sitting on the prior's circle cost nothing and carry "
                    "no information.")
        ui.figure(encoded["fig_img"], key="kl_fig_img", alt=f"Held-out image {img} (label {label}) and its "
                                                              "reconstruction decoded from the posterior mean.")
        with st.container(key="kl_vae_readout"):
            st.metric(f"KL of this image (label {label}), β = {beta:g}", f"{total:.4f} nats",
                      help="Sum over the 16 latent dimensions of ½(μ²+σ²−1−log σ²).")
        st.caption(f"{active} of {LATENT} dimensions active (KL > {ACTIVE_UNIT_NATS:g} nats). The model's average KL "
                   f"over all held-out images is {model_info.evaluation['kl']:.2f} nats.")

    c1, c2 = st.columns(2, gap="large")
    with c1:
        ui.figure(encoded["fig_post"], key="kl_fig_post",
                  alt=f"Per-dimension posterior mean ± 1.96 sd for the chosen image against the prior band; {active} "
                      f"of {LATENT} dimensions differ from the prior.")
    with c2:
        ui.figure(encoded["fig_bars"], key="kl_fig_bars",
                  alt=f"KL per latent dimension for the chosen image, total {total:.3f} nats.")

    rows, evals = [], {}
    for b in BETAS:
        info = ui.pretrained(ctx.dataset_name, "vae", b, LATENT)
        evals[b] = info.evaluation
        m, lv = encode_stats(info.model, x)
        this = float(np.asarray(kl.kl_to_standard_normal(m[0].astype(np.float64), lv[0].astype(np.float64))).sum())
        name = f"**β = {b:g}**" if b == beta else f"β = {b:g}"
        rows.append(f"| {name} | {this:.2f} | {info.evaluation['kl']:.2f} | {info.evaluation['active_units']} of {LATENT} | "
                    f"{info.evaluation['recon']:.2f} |")
    st.markdown(f"**The same image under the three pretrained models**, and each model on all {n_val} held-out images "
                f"(active: mean KL above {ACTIVE_UNIT_NATS:g} nats; reconstruction: mean −log p(x|z), nats per image):"
                "\n\n| model | KL of this image | held-out mean KL | held-out active dimensions | held-out reconstruction |"
                "\n|---|---|---|---|---|\n" + "\n".join(rows))
    lo, hi = evals[BETAS[0]], evals[BETAS[-1]]
    beta0 = ui.pretrained(ctx.dataset_name, "vae", 0.0, LATENT).evaluation
    st.markdown(
        "**What the KL term does.** It pulls every image's posterior towards the prior N(0, I). The codes of "
        "different images then overlap and fill the space around the origin with few gaps, so the latent space is "
        "**smooth and continuous** (nearby codes decode to similar images), and you can **sample** new images by "
        "drawing z ~ N(0, I) and decoding. Without it the codes drift wherever reconstruction wants them: the zoo's "
        f"β = 0 model pays {beta0['kl']:.0f} nats of KL per image, so a z drawn from N(0, I) rarely lands where any "
        "training image's code lies.\n\n"
        f"**Too much of it over-regularizes.** From β = {BETAS[0]:g} to β = {BETAS[-1]:g}, the held-out KL falls from "
        f"{lo['kl']:.2f} to {hi['kl']:.2f} nats, but the reconstruction error rises from {lo['recon']:.2f} to "
        f"{hi['recon']:.2f} nats (blurrier reconstructions), and the active dimensions go from {lo['active_units']} to "
        f"{hi['active_units']} of {LATENT}. A dimension whose posterior equals the prior for every input (KL = 0) "
        "tells the decoder nothing: that is **posterior collapse**.")
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


# ---- the page ---------------------------------------------------------------------------------------

if show(0) or show(1):
    two_gaussians(show_exact=show(0), show_mc=show(1))
if show(2):
    forward_reverse()
if show(3):
    two_dimensions()
if show(4):
    vae_section()

with url_errors:
    ui.show_url_errors()

wide_pq, wide_qp = kl.kl_normal(0, 1, 0, 2), kl.kl_normal(0, 2, 0, 1)
ui.self_check("kl", [
    ("p = N(0, 1) and q = N(0, 2²) (the 'Wider q' preset). Which is larger, KL(p‖q) or KL(q‖p)?",
     f"KL(q‖p) = {wide_qp:.3f} nats is larger than KL(p‖q) = {wide_pq:.3f}. KL(q‖p) averages over samples from the "
     "wide q, many of which land in the thin tails of p where log q/p is large."),
    ("You fit one Gaussian to a distribution with two well-separated modes by minimising KL(q‖p). Where does it end?",
     "On one of the modes, with roughly that mode's width (mode seeking): q is punished for putting mass in the gap "
     "where p is near 0. Minimising KL(p‖q) instead gives one wide Gaussian over both modes (mode covering)."),
    ("A latent dimension has μ = 0 and σ = 1 for every input. What is its KL, and what does the decoder learn from it?",
     "Its KL is ½(0 + 1 − 1 − 0) = 0, and it tells the decoder nothing: z is pure prior noise, whatever the input. "
     "The dimension has collapsed. A large β makes more dimensions do this."),
])
