"""Limits of VAEs: blur, over-regularisation and posterior collapse, the prior hole, complex data,
and what the ELBO does not promise (only a bound; no disentanglement).

Every number on this page is measured live on the shipped models (core.zoo) by core.limits;
this file only reads widgets, calls core, and draws.
"""
import streamlit as st

from core import ui

ctx = ui.page("Limits of VAEs", "⚠️",
              "What are the VAE's limitations? Each one shown on real models, with the numbers, why it "
              "happens, and what people do about it.")
url_errors = st.container()  # this page's URL errors are found while its widgets bind, below
ui.configure_torch()

from core import limits  # noqa: E402  (after configure_torch: one torch thread per process)
from core.data import DATASETS  # noqa: E402
from core.figures import paired_rows  # noqa: E402
from core.figures import limits as lf  # noqa: E402

BETAS = limits.sweep_betas()
HOLE_BETAS = (0.5, 1.0, 4.0)
CELLS = (0.25, 0.5, 0.75, 1.0)
N_SHOW_MAX = 12
DATASET_NAMES = {"digits": "8×8 digits", "mnist-5k": "MNIST-5k"}
STRIP_TITLES = {"digits": "scikit-learn digits", "mnist-5k": "MNIST-5k"}
# Presenter mode: each scene's main figure at this height (ui.figure grows it 1.3x: about 540 px), so it fills
# half of a 1080-px screen and, starting under the header, still ends above 720 px.
PRESENT_H = 415


# ---- cached evidence (pure functions of the dataset and seed; shared by all sessions) ----------

@st.cache_data(max_entries=16, show_spinner="Measuring sharpness for every model of the β sweep…")
def blur_evidence(dataset: str, seed: int) -> dict:
    return limits.blur_evidence(dataset, seed, n_show=N_SHOW_MAX, loader=ui.pretrained)


@st.cache_data(max_entries=4, show_spinner="Evaluating the β sweep on held-out images…")
def rd_evidence(dataset: str) -> dict:
    return limits.rate_distortion(dataset, loader=ui.pretrained)


@st.cache_data(max_entries=16, show_spinner="Loading the warm-up and free-bits runs…")
def remedy_evidence(dataset: str, seed: int) -> dict:
    return limits.remedy_runs(dataset, seed=seed, n_show=8, loader=ui.pretrained)


@st.cache_data(max_entries=8, show_spinner="Encoding every training image…")
def posterior_evidence(dataset: str, beta: float) -> dict:
    return limits.aggregate_posterior(dataset, beta, loader=ui.pretrained)


@st.cache_data(max_entries=32, show_spinner=False)
def hole_evidence(dataset: str, beta: float, cell: float, min_expected: int, max_fill: float, with_sigma: bool) -> dict:
    post = posterior_evidence(dataset, beta)
    holes = limits.find_holes(post["mu"], post["sigma"] if with_sigma else None, cell=cell,
                              min_expected=min_expected, max_fill=max_fill)
    holes["hole_images"] = limits.decode_points(dataset, beta, holes["holes"][:N_SHOW_MAX], loader=ui.pretrained)
    holes["busy_images"] = limits.decode_points(dataset, beta, holes["busy"][:N_SHOW_MAX], loader=ui.pretrained)
    return holes


@st.cache_data(max_entries=4, show_spinner="Evaluating the −ELBO on training and held-out images…")
def train_heldout_evidence(dataset: str, best_beta: float) -> dict:
    betas = sorted({best_beta, 0.5, 1.0, 2.0} & set(BETAS))
    return limits.train_vs_heldout(dataset, n_seeds=3, loader=ui.pretrained, betas=betas)


@st.cache_data(max_entries=4, show_spinner="Importance sampling log p(x) (the IWAE bound)…")
def bound_evidence(dataset: str) -> dict:
    return limits.bound_evidence(dataset, n_images=100, loader=ui.pretrained)


@st.cache_data(max_entries=2, show_spinner="Measuring the faces…")
def faces_evidence() -> dict:
    from core import faces
    return faces.faces_evidence(seed=0, n_show=10)


@st.cache_resource(max_entries=4, show_spinner="Training a logistic-regression judge on the real images…")
def judge(dataset: str):
    return limits.fit_judge(dataset, loader=ui.pretrained)  # the same for every seed: fitted once


@st.cache_data(max_entries=16, show_spinner="Judging real images, reconstructions and samples…")
def complex_evidence(dataset: str, seed: int) -> dict:
    return limits.complex_data_evidence(dataset, seed=seed, n_show=12, loader=ui.pretrained, judge=judge(dataset))


@st.cache_resource(max_entries=256, show_spinner=False)
def _figure_cache(key: str, deps: tuple, _build):
    return _build()


def cached(key: str, deps: tuple, build):
    """The figure ``build()`` makes, built once per (figure, dataset, seed, presenter mode, ``deps``) and shared:
    building a Plotly figure costs 15-45 ms of server CPU, a large share of a warm page's run. ``deps`` must hold
    every setting the figure depends on beyond the dataset, the seed and presenter mode. ui.figure and
    st.plotly_chart do not change the figure (presenter mode draws a copy)."""
    return _figure_cache(key, (ds_name, int(ctx.seed), bool(present)) + tuple(deps), build)


def md_table(rows: list[dict], formats: dict | None = None) -> str:
    """Rows of dicts as a Markdown table (lighter to draw than st.dataframe); numbers as ``formats[col]``."""
    formats = formats or {}
    cols = list(rows[0])
    esc = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    cell = lambda c, v: format(v, formats[c]) if c in formats and not isinstance(v, str) else esc(v)  # noqa: E731
    return "\n".join(["| " + " | ".join(esc(c) for c in cols) + " |", "|" + " --- |" * len(cols)]
                     + ["| " + " | ".join(cell(c, r[c]) for c in cols) + " |" for r in rows])


def three_parts(why: str, fix: str) -> None:
    c1, c2 = st.columns(2, gap="large")
    with c1:
        st.markdown("**🔍 Why it happens**")
        st.markdown(why)
    with c2:
        st.markdown("**🛠️ What people do about it**")
        st.markdown(fix)


def ui_pct(pct: float) -> str:
    """A share of the real images' value, as text with no sign and no arrow (e.g. "41% of real")."""
    return f"{pct:.0f}% of real"


def best_beta_text(head: dict, tv: dict) -> None:
    """Why the lowest held-out −ELBO is (or is not) at β = 1, from core.limits.best_beta_reason."""
    if 1.0 not in BETAS:
        return
    r = limits.best_beta_reason(tv["rows"], head["best_beta"])
    b, best, one = head["best_beta"], r["best"], r["one"]
    intro = (f"**Lowest held-out −ELBO: {head['best_neg_elbo']:.2f} nats per image, at β = {b:g}.** ")
    if r["case"] == "beta1":
        st.markdown(intro + "β = 1 trains on exactly the −ELBO, so this is what good optimisation should give.")
    else:
        why = (f"Why not β = 1? β = 1 trains on exactly the −ELBO, so with perfect optimisation it would have the "
               f"lowest −ELBO on its own training images. Measured (mean of 3 one-sample estimates, every model "
               f"trained for {tv['epochs']} epochs): on the {tv['n_train']} training images β = {b:g} has "
               f"{best['train']:.2f} and β = 1 has {one['train']:.2f} nats; on the {tv['n_val']} held-out images "
               f"{best['val']:.2f} and {one['val']:.2f} (noise of the difference ± {r['noise']:.2f}). ")
        if r["case"] == "noise":
            why += (f"The held-out difference, {abs(r['d_val']):.2f} nats, is within the noise of the one-sample "
                    f"estimate: the ranking is not evidence that β = {b:g} is better."
                    + (" On the training images β = 1 is better, as it should be." if r["d_train"] < 0 else ""))
        elif r["case"] == "optimisation":
            why += (f"So β = {b:g} is better even on the training −ELBO (by {r['d_train']:.2f} nats, noise ± "
                    f"{r['train_noise']:.2f}), the quantity β = 1 minimises: not overfitting and not evaluation "
                    "noise, but an optimisation effect of finite training: β = 1 had not reached its optimum.")
            if r["weak_one"] > r["weak_best"]:
                why += (f" This fits the larger KL weight pushing units towards the prior before the decoder learns "
                        f"to use them: β = 1 ended with {r['weak_one']} of its units barely active (Var over images "
                        f"of μ_j below {r['weak']:g}), β = {b:g} with {r['weak_best']}.")
        else:
            why += (f"β = 1 is better on the training images but worse on held-out ones by {r['d_val']:.2f} nats: "
                    "a generalisation gap on a small dataset, not an optimisation effect.")
        why = why.replace("(noise of the difference", "(noise of the held-out difference")
        st.markdown(intro + why)
    if not present:
        box = ui.lazy_expander("📋 Training vs held-out −ELBO (nats per image)", "lim_tv_open")
        if box.open:
            box.markdown(md_table([{"β": f"{row['beta']:g}", "training −ELBO": row["train"], "± (3 seeds)": row["train_sd"],
                                    "held-out −ELBO": row["val"], "± (3 seeds) ": row["val_sd"]} for row in tv["rows"]],
                                  {c: ".3f" for c in ("training −ELBO", "± (3 seeds)", "held-out −ELBO", "± (3 seeds) ")}))
            box.caption("Each −ELBO is reconstruction + KL with one sample of z per image, averaged over the images; "
                       "± is the standard deviation over 3 evaluations with different noise.")


def cell_text(name: str, value) -> str:
    """A table value as text: counts with separators, errors with 4 decimals, percentages with 1."""
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4f}" if "MSE" in name else f"{value:.1f}"


def safely(fn, what: str):
    """Run one section's computation; a failure becomes a clear message, never a stack trace."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001: the page must keep running
        st.error(f"{what} failed: {type(exc).__name__}: {exc}\n\nReload the page; if it persists, "
                 "rebuild the shipped models with `python scripts/build_zoo.py`.")
        return None


ds_name = ctx.dataset_name
ds_label = DATASET_NAMES.get(ds_name, ds_name)
present = ctx.present

SCENES = [
    ("Blurry outputs", "VAE images are smooth averages: less sharp than the real ones, and blurrier as β grows."),
    ("Posterior collapse", "More KL pressure: less information in z, fewer active units, worse reconstructions; "
                           "in the limit, a code that carries nothing."),
    ("The prior hole", "The encoded data do not match N(0, I): the prior samples some regions far more often "
                       "than training codes fill them."),
    ("Complex data", "How far is the same small VAE from real images, on small and on larger images?"),
    ("Only a bound", "The ELBO sits below log p(x); how far, measured by importance sampling. And no promise of "
                     "interpretable factors."),
]
scene = ui.scenes("lim", SCENES)


# Outside presenter mode the page draws the limitations the student picks (one at first): drawing all five
# at once (ten Plotly charts) took the browser 2 s. A shared link opens with the sections whose settings it
# carries, so their values are on screen; "lim_show" in the URL (e.g. "1,3") says exactly which.
SECTION_PARAMS = {0: ("lim_beta", "lim_measure", "lim_n"), 1: ("lim_zoom", "lim_cause"),
                  2: ("lim_hbeta", "lim_cell", "lim_sigma", "lim_minexp", "lim_fill"), 3: ("lim_conf",), 4: ()}
SECTION_LABELS = ["1 · Blurry outputs", "2 · Posterior collapse", "3 · The prior hole", "4 · Complex data",
                  "5 · Only a bound"]
K_SHOW, K_PICK = "lim_show", "lim_show_pick"


def show_text(picked) -> str:
    return ",".join(str(k + 1) for k in sorted(set(picked)))


def parse_show(text: str) -> list[int] | None:
    """ "1,3" -> [0, 2]; None for anything else (unknown sections, duplicates are dropped, empty is allowed)."""
    parts = [t.strip() for t in str(text).split(",") if t.strip()]
    if not all(t in ("1", "2", "3", "4", "5") for t in parts):
        return None
    return sorted({int(t) - 1 for t in parts})


def on_pick() -> None:
    st.session_state[K_SHOW] = show_text(st.session_state.get(K_PICK) or [])


def section_picker() -> list[int]:
    """The multi-select of limitations to draw, bound to URL parameter ``lim_show``."""
    raw = st.query_params.get(K_SHOW)
    implied = [0] + [k for k, keys in SECTION_PARAMS.items() if any(q in st.query_params for q in keys)]
    ui.bind(K_SHOW, show_text(implied))
    picked = parse_show(st.session_state[K_SHOW])
    if picked is None:
        with url_errors:
            st.error(f"URL parameter `lim_show`={ui.quote_user(raw)} is not a list of sections 1 to 5 such as "
                     "\"1,3\"; showing section 1.")
        picked = [0]
        st.session_state[K_SHOW] = "1"
    st.session_state[K_PICK] = picked
    st.segmented_control("Limitations shown (pick one or several; each is drawn when picked)", list(range(5)),
                         format_func=lambda k: SECTION_LABELS[k], selection_mode="multi", key=K_PICK,
                         on_change=on_pick)
    ui.publish(K_SHOW)
    if not picked:
        st.info("Pick a limitation above to see its evidence.")
    return picked


if not present:
    st.markdown(
        "**Key idea.** Every VAE limitation has a cause you can measure: a likelihood that treats pixels as "
        "independent makes the decoder average images (blur); the KL weight switches latent units off "
        "(collapse); the encoded data do not fill the prior (the prior hole); the ELBO is only a lower bound on "
        "log p(x); and a small network lacks the capacity for complex images. "
        f"Each is shown below on the shipped models trained on **{ds_label}** (change the dataset in the "
        "sidebar), with why it happens and what people do about it. References are at the end.")
    SHOWN = set(section_picker())


def show(k: int) -> bool:
    return scene == k if present else k in SHOWN


FACTS: dict = {}  # numbers the self-check quotes, filled by the sections on a full run


# Each section is a fragment: moving one of its controls reruns only that section.

# ---- 1. blur -------------------------------------------------------------------------------------
@st.fragment
def section_blur() -> None:
    st.header("1. Blurry outputs", anchor="1-blurry-outputs")
    with ui.config_container("⚙️ Settings: blur"):
        c1, c2, c3 = st.columns(3)
        with c1:
            beta = ui.select("VAE β (latent 16)", "lim_beta", BETAS, default=1.0, format_func=lambda b: f"β = {b:g}",
                             help="The weight of the KL term for the VAE whose images are shown.")
        with c2:
            measure = ui.select("Sharpness measure", "lim_measure", list(limits.MEASURES), default="laplacian",
                                format_func=limits.MEASURES.get, radio=True,
                                help="Variance of the Laplacian: how strongly intensity curves (edges, strokes). "
                                     "Mean gradient magnitude: how steeply it changes.")
        with c3:
            n_show = ui.slider("Images shown", "lim_n", 4, N_SHOW_MAX, 8)
    blur = safely(lambda: blur_evidence(ds_name, ctx.seed), "Measuring sharpness")
    if blur is not None:
        imgs = blur["images"]
        head = limits.blur_headline(blur["summary"], measure, beta)
        shape = blur["image_shape"]
        ui.figure(cached("lim_fig_images", (beta, n_show), lambda:
                paired_rows({"real (held-out)": imgs["original"][:n_show], "AE": imgs["ae"][:n_show],
                               f"VAE β={beta:g}": imgs[f"vae_{beta:g}"][:n_show],
                               f"β={beta:g} samples": imgs[f"sample_{beta:g}"][:n_show]}, shape,
                              title="Reconstructions of the same held-out images; last row: new images decoded "
                                    "from z ~ N(0, I)",
                              height=PRESENT_H if present else int(330 if shape[0] <= 8 else 400))),
                  key="lim_fig_images", alt=f"Rows of real {ds_label} images, their AE and β={beta:g} VAE "
                                            "reconstructions, and VAE samples from the prior.")
        label = limits.MEASURES[measure]
        m = st.columns(4)
        m[0].metric("Real images", f"{head['original']:.3f}", help=label)
        for col, key, name in ((m[1], "ae", "AE reconstructions"), (m[2], "vae", f"VAE β={beta:g} reconstructions"),
                               (m[3], "sample", f"VAE β={beta:g} prior samples")):
            col.metric(name, f"{head[key]:.3f}", ui_pct(head[f"{key}_pct"]), delta_color="off", delta_arrow="off")
        first = limits.summary_value(blur["summary"], f"vae_{BETAS[0]:g}", measure)[0]
        last = limits.summary_value(blur["summary"], f"vae_{BETAS[-1]:g}", measure)[0]
        ui.figure(cached("lim_fig_sharp", (measure, beta), lambda:
                lf.sharpness_vs_beta(blur["summary"], BETAS, measure, label, selected_beta=beta)),
                  key="lim_fig_sharp", alt=f"{label} of VAE reconstructions and prior samples for each β, "
                                           f"falling from {first:.3f} at β={BETAS[0]:g} to {last:.3f} at "
                                           f"β={BETAS[-1]:g}; real images score {head['original']:.3f}.")
        st.markdown(
            f"**👀 What you see.** Over all {blur['n_val']} held-out images, the {label[0].lower() + label[1:]} of the real "
            f"images is {head['original']:.3f}. The AE's reconstructions keep {head['ae_pct']:.0f}% of it, the "
            f"β = {beta:g} VAE's reconstructions {head['vae_pct']:.0f}% and its samples from the prior "
            f"{head['sample_pct']:.0f}%. Across the sweep, VAE reconstructions score {first:.3f} at "
            f"β = {BETAS[0]:g} and {last:.3f} at β = {BETAS[-1]:g}." + (
                " At β = 0 the prior samples score low for another reason: with no KL term nothing ties the codes to "
                "N(0, I), so samples from it land where the decoder was never trained (section 3)."
                if limits.summary_value(blur["summary"], f"sample_{BETAS[0]:g}", measure)[0]
                < limits.summary_value(blur["summary"], f"sample_{BETAS[1]:g}", measure)[0] else ""))
        if not present:
            st.caption("Sharpness is measured on each image's interior, with 3×3 filters: Laplacian "
                       "$L = I_{i-1,j}+I_{i+1,j}+I_{i,j-1}+I_{i,j+1}-4I_{i,j}$, score $\\mathrm{Var}(L)$ "
                       "(Pech-Pacheco et al. 2000); gradient $g = \\tfrac12(I_{i,j+1}-I_{i,j-1},\\,"
                       "I_{i+1,j}-I_{i-1,j})$, score mean $\\lVert g\\rVert$. Error bars: ± 1 standard error. "
                       "Samples are the decoder's mean image, as papers show them.")
    three_parts(
        "The main cause is the **likelihood**: it treats the pixels as independent given z (a factorised "
        "Bernoulli or Gaussian), so for a code z the loss is smallest when the decoder outputs the **mean** of "
        "all the images that could have produced z, "
        "$\\arg\\min_{\\hat x}\\,\\mathbb{E}_{x\\mid z}[-\\log p(x\\mid\\hat x)] = \\mathbb{E}[x\\mid z]$: "
        "a mean of several sharp images is a blurred image. **Overlapping posteriors** add to it: the encoder "
        "adds noise ($z=\\mu+\\sigma\\varepsilon$) and the KL term keeps $\\sigma$ from shrinking, so codes of "
        "different images overlap and a z in the overlap decodes to their average; larger β, wider posteriors, "
        "more averaging. So the KL term alone is not the cause: the plain AE has no KL term and no noise, "
        "and its reconstructions lose sharpness too, though less than the VAE's (the numbers above).",
        "Decoders that model how pixels depend on each other: autoregressive decoders (PixelVAE, Gulrajani et al. "
        "2017); adversarial or feature-based losses (VAE-GAN, Larsen et al. 2016); discrete codes with a learned "
        "prior (VQ-VAE, van den Oord et al. 2017); deep hierarchies of latents (NVAE, Vahdat & Kautz 2020); "
        "diffusion models (Ho et al. 2020), which today usually run in the latent space of an autoencoder "
        "(latent diffusion, Rombach et al. 2022).")

# ---- 2. over-regularisation and posterior collapse -------------------------------------------------
@st.fragment
def section_collapse() -> None:
    st.header("2. Over-regularisation and posterior collapse", anchor="2-over-regularisation-and-posterior-collapse")
    with ui.config_container("⚙️ Settings: rate–distortion"):
        zoom = ui.toggle("Zoom in on β > 0", "lim_zoom", True,
                         help="β = 0 has no KL pressure and a very large rate; zooming leaves it off the chart "
                              "(an arrow gives its numbers).")
    rd = safely(lambda: rd_evidence(ds_name), "Evaluating the β sweep")
    blur = safely(lambda: blur_evidence(ds_name, ctx.seed), "Measuring sharpness")
    if rd is not None:
        sweep_pts = FACTS["sweep"] = rd["sweep"]
        variants = rd["variants"]
        head = limits.collapse_headline(sweep_pts)
        k = head["latent_dim"]
        c1, c2 = st.columns([3, 2])
        with c1:
            ui.figure(cached("lim_fig_rd", (zoom,), lambda:
                    lf.rate_distortion(sweep_pts, variants, limits.iso_elbo_levels(
                [p for p in sweep_pts if p["beta"] > 0] if zoom else sweep_pts), zoom=zoom,
                **({"height": PRESENT_H, "compact": True} if present else {}))),
                key="lim_fig_rd", alt="Rate-distortion plot: " + "; ".join(
                    f"β={p['beta']:g}: rate {p['rate']:.2f}, distortion {p['distortion']:.2f} nats" for p in sweep_pts))
        with c2:
            ui.figure(cached("lim_fig_au", (), lambda:
                    lf.active_units(sweep_pts, k, compact=present, **({"height": PRESENT_H} if present else {}))),
                      key="lim_fig_au",
                      alt="Active units against β: " + ", ".join(f"β={p['beta']:g}: {p['active_units']}"
                                                                  for p in sweep_pts))
        low, high = head["low"], head["high"]
        collapse = (f"From β = {head['first_collapsed']:g} on, **every** unit is inactive (rate "
                    f"{next(p['rate'] for p in sweep_pts if p['beta'] == head['first_collapsed']):.3f} nats): the "
                    "posterior has collapsed onto the prior, z carries nothing about x, and the decoder draws the "
                    "same average image for every input (rows below)."
                    if head["first_collapsed"] is not None else
                    f"No model of this sweep collapsed completely, but at β = {high['beta']:g} only "
                    f"{high['active_units']} of {k} units are still active.")
        st.markdown(
            f"**👀 What you see.** On the {rd['n_val']} held-out images, raising β from {low['beta']:g} to "
            f"{high['beta']:g} lowers the rate from {low['rate']:.1f} to {high['rate']:.2f} nats and raises the "
            f"distortion from {low['distortion']:.1f} to {high['distortion']:.1f} nats; active units (Burda et al. "
            f"2016: Var over held-out images of μ_j > 0.01) fall from {low['active_units']} to "
            f"{high['active_units']} of {k}. {collapse} Rate, distortion and −ELBO are nats per image, "
            "from one sample of z; the distortion is a Bernoulli cross-entropy on grey pixels, not a normalised "
            "likelihood.")
        tv = safely(lambda: train_heldout_evidence(ds_name, head["best_beta"]), "Evaluating the training images")
        if tv is not None:
            best_beta_text(head, tv)
        if blur is not None:
            n_rows = 6 if present else 8
            recons = {b: blur["images"][f"vae_{b:g}"][:n_rows] for b in BETAS}
            ui.figure(cached("lim_fig_grid", (), lambda:
                    lf.recon_by_beta(blur["images"]["original"][:n_rows], blur["images"]["ae"][:n_rows], recons,
                                       blur["image_shape"])),
                      key="lim_fig_grid", alt="Grid of reconstructions of the same held-out images, one row per β: "
                                              "they lose detail as β grows.")
        if not present:
            with st.expander("⬇️ Sweep numbers (CSV)"):
                ui.download_csv("⬇️ Sweep numbers (CSV)", [
                    {"beta": p["beta"], "rate_kl_nats": p["rate"], "distortion_recon_nats": p["distortion"],
                     "neg_elbo_nats": p["neg_elbo"], "active_units_burda": p["active_units"]} for p in sweep_pts],
                    f"rate_distortion_{ds_name}.csv", key="lim_csv_rd")
    three_parts(
        "The β-VAE loss is $D + \\beta R$. A latent dimension earns its place only if it lowers the distortion by "
        "more than β times the nats of KL it costs; the best model sits where the rate–distortion curve has "
        "slope $-\\beta$ (Alemi et al. 2018). Along a dashed line every model has the same ELBO but a different "
        "rate: the ELBO alone does not say whether the code is used. Three causes push dimensions to collapse "
        "($q(z_j\\mid x) = p(z_j)$ for every x): **the objective**: for large β the cheapest point is $R = 0$, "
        "and the decoder outputs the average image; **optimisation with a strong decoder**: early in training "
        "z is still noise, so the KL is the easiest term to lower, and a decoder that can model x without z "
        "never learns to use it (Bowman et al. 2016); **the likelihood's variance acts as a hidden β**: with a "
        "Gaussian decoder of variance $s^2$ the reconstruction term is $\\lVert x-\\hat x\\rVert^2/(2s^2)$, so a "
        "larger $s^2$ weights the KL more, like a larger β (Lucas et al. 2019).",
        "Use β < 1 when reconstructions matter (the β-VAE of Higgins et al. 2017 raises β on purpose, hoping for "
        "disentangled factors). **KL annealing / warm-up**: ramp β up from 0 so the decoder learns to use z "
        "first (Bowman et al. 2016); **cyclical annealing** repeats the ramp several times (Fu et al. 2019). "
        "**Free bits**: do not charge the first λ nats of each dimension, $\\sum_j \\max(\\lambda, "
        "\\mathrm{KL}_j)$ (Kingma et al. 2016). **δ-VAE**: choose a posterior family whose KL to the prior can "
        "never fall below δ, so the rate cannot reach 0 (Razavi et al. 2019). Warm-up and free bits are compared "
        "below with the plain model at β = 4.")

    st.subheader("Remedies at work: β = 4, latent 16")
    remedies = FACTS["remedies"] = safely(lambda: remedy_evidence(ds_name, ctx.seed), "Loading the remedy runs")
    if remedies is not None:
        pts = {v: r["point"] for v, r in remedies.items()}
        fb_lambda = remedies["freebits"]["train_config"].get("free_bits", 0.0)
        wu_steps = remedies["warmup"]["train_config"].get("warmup_steps", 0)
        ui.figure(cached("lim_fig_klbars", (), lambda:
                lf.kl_per_dim_compare(pts, free_bits=fb_lambda)), key="lim_fig_klbars",
                  alt="Held-out KL per latent dimension for the plain, warm-up and free-bits runs: " + "; ".join(
                      f"{lf.VARIANT_LABELS[v]} {p['active_units']} active units" for v, p in pts.items()))
        box = (ui.lazy_expander("📋 The three runs: reconstructions, table and training curves", "lim_runs_open")
               if not present else st.container())
        if present or box.open:
            with box:
                ui.figure(cached("lim_fig_remedy_recon", (), lambda: paired_rows({"real": remedies[""]["original"],
                                       **{lf.VARIANT_LABELS[v]: r["recon"] for v, r in remedies.items()}},
                                      ctx.dataset.image_shape, title="Their reconstructions of the same held-out images",
                                      height=330 if ctx.dataset.image_shape[0] <= 8 else 420)),
                          key="lim_fig_remedy_recon", alt="Reconstructions of the same held-out images by the plain, "
                                                          "warm-up and free-bits models.")
                st.markdown(md_table(
                    [{"run": lf.VARIANT_LABELS[v], "how it was trained":
                      {"": "β = 4 from the first step", "warmup": f"β ramped 0 → 4 over {wu_steps} steps",
                       "freebits": f"KL_j charged at least λ = {fb_lambda:g} nats"}[v],
                      "active units (Var_x μ_j > 0.01)": p["active_units"], "rate KL (nats)": p["rate"],
                      "distortion (nats)": p["distortion"], "−ELBO (nats)": p["neg_elbo"]} for v, p in pts.items()],
                    {c: ".3f" for c in ("rate KL (nats)", "distortion (nats)", "−ELBO (nats)")}))
                ui.figure(cached("lim_fig_curves", (), lambda: lf.training_compare(remedies)), key="lim_fig_curves",
                          alt="Training curves of the three runs: the β used at each step, the KL and the "
                              "reconstruction.")
        plain, wu, fb = pts[""], pts["warmup"], pts["freebits"]
        wu_text = (f"KL warm-up only delayed the collapse here: after the ramp the KL fell again, ending at "
                   f"{wu['rate']:.3f} nats with {wu['active_units']} active units (training curves in the expander above)."
                   if wu["active_units"] == 0 else
                   f"KL warm-up kept {wu['active_units']} units active (rate {wu['rate']:.2f} nats), against "
                   f"{plain['active_units']} for the plain run.")
        no_collapse = ("" if plain["active_units"] == 0 else
                       f" Here the plain β = 4 model still has {plain['active_units']} active units, so the remedies "
                       "have little to fix" + ("; switch the dataset in the sidebar to see a model that collapsed."
                                               if ds_name != "digits" else "."))
        st.markdown(
            f"**👀 What you see.** The plain β = 4 model has {plain['active_units']} active units (rate "
            f"{plain['rate']:.3f} nats, distortion {plain['distortion']:.2f}). {wu_text} Free bits kept "
            f"{fb['active_units']} units active (rate {fb['rate']:.2f} nats) and its distortion is "
            f"{fb['distortion']:.2f} nats instead of {plain['distortion']:.2f}: below λ a dimension's KL costs "
            f"nothing, so the optimiser has no reason to switch it off.{no_collapse}")

# ---- 2b. the three causes of collapse, as runs the user starts (core.collapse) ---------------------
CAUSE_NAMES = {"objective": "🎯 The objective: large β", "optimisation": "🐢 Optimisation: early training",
               "likelihood": "📏 The likelihood: Gaussian decoder"}
GAUSS_IDENTITY = (r"-\log p(x\mid z) = \frac{\lVert x-\hat x\rVert^2}{2s^2} + \text{const}"
                  r"\quad\Longrightarrow\quad s^2\,(D + \beta R) = \tfrac12\lVert x-\hat x\rVert^2 "
                  r"+ \beta s^2 R + \text{const}")


# Background runs (core.jobs) this session waits for: {("collapse", cause, seed) or ("faces",): label}.
# One fragment timer polls all of them (one timer per page: docs/streamlit-workarounds.md), drawn in
# the collapse section when a collapse run is among them, else in the faces section.
K_WAITING = "lim_waiting"


def _job_of(desc: tuple):
    if desc[0] == "collapse":
        from core import collapse
        return collapse.experiment_job(desc[1], seed=desc[2])
    from core import faces
    return faces.training_job()


def _running(desc: tuple) -> bool:
    job = _job_of(desc)
    return job is not None and job.state == "running"


@st.fragment(run_every=0.5)
def background_progress() -> None:
    """The progress of every background run this session waits for, polled only while one runs. When
    one ends, the whole page reruns and draws its results (or the error)."""
    waiting = st.session_state.get(K_WAITING, {})
    running = {d: label for d, label in waiting.items() if _running(d)}
    if running.keys() != waiting.keys():
        st.session_state[K_WAITING] = running
        ui.rerun_page()
    for d, label in running.items():
        job = _job_of(d)
        st.progress(job.progress, text=f"{label}: {job.progress:.0%}, {job.text or 'starting'}")
    st.caption("They run in the background: the rest of the page stays usable, and the results are kept for everyone.")


def wait_for(desc: tuple, label: str) -> None:
    """Show the progress of background run ``desc`` here, or say where it is shown."""
    waiting = st.session_state.setdefault(K_WAITING, {})
    waiting[desc] = label
    kinds = {d[0] for d in waiting if _running(d)}
    if desc[0] == "collapse" or "collapse" not in kinds:
        with ui.fragment_slot():
            background_progress()
    else:
        st.info("Training in the background: its progress bar is in section 2, beside the collapse runs. "
                "The results appear here when it ends.")


@st.fragment
def section_causes() -> None:
    from core import collapse

    st.subheader("Three causes of collapse, kept apart: run them")
    if not present:
        st.markdown(
            "Each experiment trains the same small VAE (16 latents, 8×8 digits, "
            f"{collapse.EPOCHS} epochs; {collapse.OBJECTIVE_EPOCHS} for the large β) a few times, changing one "
            "thing. Pick a cause, press ▶️, and compare the runs' active units and rate on held-out images. Results are kept on the server, so a class shares them.")
    cause = ui.select("Cause of collapse", "lim_cause", list(collapse.EXPERIMENTS), default="objective",
                      format_func=CAUSE_NAMES.get, radio=True)
    exp = collapse.experiment(cause)
    seed = int(ctx.seed)
    if not collapse.experiment_done(cause, seed=seed):
        job = collapse.experiment_job(cause, seed=seed)
        if job is None or job.state == "failed":
            if job is not None:
                st.error(f"Training the runs failed: {job.error}. Press the button to try again.")
            n = len(exp.runs)
            slot = st.empty()
            if not slot.button(f"▶️ Train the {n} runs (about {n * exp.epochs // 30} s, in the background)",
                               key="lim_cause_run", type="primary"):
                st.caption("Runs: " + " · ".join(r.label for r in exp.runs) + f". Seed {seed} (sidebar). "
                           f"{exp.epochs} epochs each.")
                return
            slot.empty()  # the button goes once pressed
            job = collapse.start_experiment(cause, seed=seed)
            st.session_state.setdefault(K_WAITING, {})[("collapse", cause, seed)] = CAUSE_NAMES[cause]
            st.rerun()  # the whole page: its one progress timer moves here
        if job.state == "running":
            wait_for(("collapse", cause, seed), CAUSE_NAMES[cause])
            return
    results = collapse.run_experiment(cause, seed=seed)  # all cached now
    cols = st.columns(len(results))
    for col, r in zip(cols, results):
        with col:
            with st.container(key=f"lim_cause_{results.index(r)}"):
                st.markdown(f"**{r.spec.label}**")
                st.metric("Active units (held-out)", f"{r.active_units} of {r.latent_dim}")
                st.metric("Rate: KL term", f"{r.rate:.3f} nats")
    ui.figure(cached("lim_fig_causes", (cause,), lambda:
            lf.collapse_runs(results, height=330 if present else 360)), key="lim_fig_causes",
              alt="Active units and rate along training for: " + "; ".join(
                  f"{r.spec.label}: {r.active_units} active, rate {r.rate:.3f} nats" for r in results))
    v = collapse.verdict(cause, results)
    if cause == "objective" and not present:
        st.caption("The rate can rise before any unit counts as active: the KL term also charges a posterior "
                   "narrower than the prior (σ_j < 1) and means μ_j that vary with the input by less than Burda's "
                   "threshold (Var_x μ_j ≤ 0.01).")
    if cause == "objective":
        plain, warm = results
        cp, cw = v["curves"]
        if v["holds"] and v["delayed"]:
            plain_had = ("never had an active unit" if cp["peak_active"] == 0 else
                         f"had at most {cp['peak_active']} active units, the last at step {cp['last_active_step']}")
            text = (f"Both runs end with **0 of {plain.latent_dim}** active units (rates {plain.rate:.3f} and "
                    f"{warm.rate:.3f} nats), but not by the same path. The plain run {plain_had}. With warm-up, β "
                    f"was small at first and the model learned a code: up to **{cw['peak_active']}** active units "
                    f"(step {cw['peak_step']}); as β grew they switched off, the last at step "
                    f"{cw['last_active_step']}, where β was {cw['beta_at_last_active']:.1f} (hover the curves for "
                    f"the β of each step), "
                    + ("before" if cw["last_active_step"] < warm.spec.warmup_steps else "after")
                    + f" the ramp reached 8 at step {warm.spec.warmup_steps}. "
                    "**Warm-up only delayed the collapse.** At β = 8 a nat of rate must save more than 8 nats of "
                    "distortion to pay for itself, and for this model on these images no nat does: *no information* "
                    "is the optimum of the objective itself (the plain run "
                    + ("goes straight to it" if cp["peak_active"] == 0 else "ends there too") + "), so "
                    "warm-up changes the path, not where it ends; only a smaller β (or a different objective) "
                    "keeps the code.")
        elif v["holds"]:
            text = (f"Both runs end with **0 of {plain.latent_dim}** active units (rates {plain.rate:.3f} and "
                    f"{warm.rate:.3f} nats). With seed {seed} the warm-up run never kept a unit active longer "
                    "than the plain run, so this run does not show the delay; at β = 8 *no information* is the "
                    "optimum of the objective itself, and warm-up changes the path, not where it ends.")
        else:
            text = (f"With seed {seed}, the plain run ends with {plain.active_units} and the warm-up run with "
                    f"{warm.active_units} active units (rates {plain.rate:.3f} and {warm.rate:.3f} nats).")
    elif cause == "optimisation":
        plain, warm, fb = results
        if v["holds"]:
            text = (f"At the same β = 1, the plain run ends with **{plain.active_units}** active units; KL warm-up "
                    f"keeps **{warm.active_units}** and free bits **{fb.active_units}**"
                    + (f" (the plain run had up to {max(plain.curve['active_units'])} active along the way)"
                       if max(plain.curve["active_units"]) > plain.active_units else "")
                    + ". Same objective, different optimisation: which units survive depends on the path. With the "
                    "full KL weight from the first step, a unit the decoder does not yet rely on is cheapest switched "
                    "off, and once the decoder has learned to do without it, it tends to stay off (Bowman et al. "
                    "2016). "
                    "Warm-up lets the decoder learn to use z before the KL is charged in full; free bits does not "
                    f"charge a dimension's first {collapse.FREE_BITS:g} nats (Kingma et al. 2016), so switching it "
                    "off below that gains nothing.")
        else:
            text = (f"With seed {seed}: plain {plain.active_units}, warm-up {warm.active_units}, free bits "
                    f"{fb.active_units} active units; the remedies did not keep more units this time.")
    else:
        bern, gauss = results
        ev = collapse.pixel_pca_variances()
        text = (f"At the same β = 1, the Bernoulli decoder keeps **{bern.active_units}** active units and the "
                f"unit-variance Gaussian decoder **{gauss.active_units}** (rate {gauss.rate:.3f} nats). The "
                "decoder's variance $s^2$ is a hidden β (Lucas et al. 2019): multiplying the loss by $s^2$ shows "
                "that variance $s^2$ at β trains like unit variance at β $s^2$, so unit variance at β = 1 is like "
                "a well-fitted variance $s^2$ at β = $1/s^2$ (β = 100 for $s$ = 0.1). On pixels in [0, 1] unit "
                f"variance is large: the largest variance of any direction of these pixels is {ev[0]:.2f}, and "
                "in probabilistic PCA with noise variance $s^2$ a direction is kept only if its variance exceeds "
                "$s^2$ (Tipping & Bishop 1999), which a linear VAE shares (Lucas et al. 2019). The two "
                "distortions are not comparable (a cross-entropy on grey pixels; a squared error without its "
                "constant).")
        if not v["holds"]:
            text = (f"With seed {seed}: Bernoulli {bern.active_units}, Gaussian {gauss.active_units} active units. "
                    + text.split(". ", 1)[1])
    st.markdown("**👀 What you see.** " + text)
    if cause == "likelihood":
        st.latex(GAUSS_IDENTITY)


# ---- 3. the prior hole -----------------------------------------------------------------------------
@st.fragment
def section_hole() -> None:
    st.header("3. The prior hole", anchor="3-the-prior-hole")
    with ui.config_container("⚙️ Settings: prior hole"):
        c1, c2, c3 = st.columns(3)
        with c1:
            hbeta = ui.select("2-D VAE β", "lim_hbeta", HOLE_BETAS, default=limits.HOLE_DEFAULTS["beta"],
                              format_func=lambda b: f"β = {b:g}")
        with c2:
            cell = ui.select("Grid cell width", "lim_cell", CELLS, default=limits.HOLE_DEFAULTS["cell"])
        with c3:
            with_sigma = ui.toggle("Count whole posteriors, q(z)", "lim_sigma", True,
                                   help="On: each image contributes its whole posterior N(μ, σ²), so the counts are "
                                        "the aggregate posterior q(z) = (1/N) Σ_n N(μ_n, σ_n²), the codes the "
                                        "decoder saw in training. Off: a histogram of the means μ_n only, a "
                                        "different distribution (no bound on KL(q(z) ‖ p(z)) then).")
        c4, c5 = st.columns(2)
        with c4:
            min_exp = ui.slider("Only cells where the prior expects at least … codes", "lim_minexp", 1, 30,
                                limits.HOLE_DEFAULTS["min_expected"],
                                help="Cells where the prior N(0, I) expects fewer codes than this are never called "
                                     "holes: too few to judge.")
        with c5:
            fill = ui.slider("A hole gets at most … % of the codes the prior expects", "lim_fill", 0, 50,
                             round(100 * limits.HOLE_DEFAULTS["max_fill"]), step=5,
                             help=f"0 % means a completely empty cell. At {100 * limits.HOLE_DEFAULTS['max_fill']:g} %, "
                                  f"prior samples land in a hole at least {1 / limits.HOLE_DEFAULTS['max_fill']:g} "
                                  "times as often as the encoder puts codes there.")
    post = safely(lambda: posterior_evidence(ds_name, hbeta), "Encoding the training images")
    holes = FACTS["holes"] = safely(
        lambda: hole_evidence(ds_name, hbeta, cell, int(min_exp), fill / 100, bool(with_sigma)), "Finding holes")
    if post is not None and holes is not None:
        ui.figure(cached("lim_fig_hole", (hbeta, cell, min_exp, fill, with_sigma), lambda:
                lf.prior_hole(post["mu"], post["y"], holes, class_names=post["class_names"],
                                height=600 if not present else PRESENT_H, marker_size=4 if len(post["mu"]) > 3000 else 5,
                                n_numbered=N_SHOW_MAX,
                                legend_below=present)),
                  key="lim_fig_hole", alt=f"Scatter of the {holes['n']} encoded training means of the 2-D VAE over "
                                          f"the N(0, I) density, with {len(holes['holes'])} hole cells marked.")
        n_holes = len(holes["holes"])
        m = st.columns(4)
        m[0].metric("Hole cells", f"{n_holes} of {holes['n_eligible']}",
                    help=f"Out of the cells where the prior expects ≥ {min_exp} codes.")
        m[1].metric("Prior samples landing in a hole", f"{100 * holes['hole_mass']:.1f}%")
        if holes["kl_grid_is_bound"]:
            m[2].metric("KL(q(z) ‖ p(z)), lower bound", f"≥ {holes['kl_grid']:.3f} nats",
                        help="KL between the aggregate posterior q(z) and the prior after grouping z into the grid "
                             "cells (plus one cell for everything outside). Grouping can only lose divergence "
                             "(data-processing inequality), so the true KL(q(z) ‖ p(z)) is at least this.")
        else:
            m[2].metric("Grid KL, histogram of means ‖ prior", f"{holes['kl_grid']:.3f} nats",
                        help="KL between the histogram of the means μ_n and the prior, on the grid cells. The "
                             "means alone are not q(z), so this is not a bound on KL(q(z) ‖ p(z)); turn on "
                             "'Count whole posteriors' for that.")
        m[3].metric("Aggregate posterior variance", " / ".join(f"{v:.2f}" for v in post["agg_var"]),
                    help="Var(μ_j) + mean(σ_j²) per dimension; 1 under the prior.")
        if n_holes:
            ui.figure(cached("lim_fig_hole_dec", (hbeta, cell, min_exp, fill, with_sigma), lambda:
                    lf.hole_decodings(holes["hole_images"], holes["busy_images"], post["image_shape"],
                                        height=230 if post["image_shape"][0] <= 8 else 260)),
                      key="lim_fig_hole_dec", alt="Decodings of the hole centres, numbered as on the map, above "
                                                  "decodings of the busiest cells.")
        what = ("a histogram of the means μ(x) only (not q(z))" if not with_sigma else
                "each image's whole posterior N(μ, σ²), i.e. the aggregate posterior q(z)")
        share = f"{fill}%" if fill else "none"
        if n_holes:
            found = (f"In {n_holes} of the {holes['n_eligible']} cells where the prior expects at least {min_exp} "
                     f"codes, the encoder puts {share} of them or less: **{100 * holes['hole_mass']:.1f}% of the "
                     "samples you draw from N(0, I) land in such a hole.** The top row decodes "
                     + (f"the {N_SHOW_MAX} most surprising hole centres " if n_holes > N_SHOW_MAX else
                        "the hole centres ")
                     + "(numbered as on the map); compare them with the busiest cells below.")
        else:
            found = (f"No cell meets the hole criterion at these settings: the least-filled of the "
                     f"{holes['n_eligible']} cells where the prior expects at least {min_exp} codes still gets "
                     f"{100 * holes['min_fill']:.0f}% of them (near ({holes['min_fill_centre'][0]:.2f}, "
                     f"{holes['min_fill_centre'][1]:.2f})). Try smaller cells or a looser threshold.")
        collapsed = (" This model **collapsed** (no unit active: every μ ≈ 0, σ ≈ 1): each q(z|x) is close to the "
                     "prior, so the aggregate posterior nearly matches it, and every z decodes to the same average "
                     "image." + (" Empty cells in the histogram of means are not real gaps." if not with_sigma else "")
                     if post["collapsed"] else "")
        st.markdown(
            f"**👀 What you see.** The {holes['n']} training images of {ds_label}, encoded by the 2-D VAE with "
            f"β = {hbeta:g}, counting {what}. {found}{collapsed}")
        agg = holes if with_sigma else safely(
            lambda: hole_evidence(ds_name, hbeta, cell, int(min_exp), fill / 100, True), "Finding holes")
        if agg is not None:
            st.markdown(
                "**What the KL term guarantees, and what it does not.** Averaged over the training images, the KL "
                f"term is the rate $R = \\frac1N\\sum_n \\mathrm{{KL}}(q(z\\mid x_n)\\,\\|\\,p(z))$ = "
                f"{post['rate']:.2f} nats per image here, and $R = I_q(x;z) + \\mathrm{{KL}}(q(z)\\,\\|\\,p(z))$ "
                "(Hoffman & Johnson 2016). So the KL term caps the mismatch between the aggregate posterior and the "
                f"prior: KL(q(z) ‖ p(z)) ≤ {post['rate']:.2f} nats. It does not make it zero: on this grid "
                f"KL(q(z) ‖ p(z)) ≥ {agg['kl_grid']:.3f} nats; q(z) has variances {post['agg_var'][0]:.2f} and "
                f"{post['agg_var'][1]:.2f} where the prior has 1; {100 * post['share_outside']:.1f}% of the means "
                f"(and {100 * post['agg_outside']:.1f}% of q(z)'s mass) lie farther than 3 from the origin, where "
                f"the prior puts {100 * post['prior_outside']:.1f}%.")
    three_parts(
        "The KL term asks each $q(z\\mid x)$ to be near the prior only *on average*, and that average splits in "
        "two (Hoffman & Johnson 2016): $\\mathbb{E}_x\\,\\mathrm{KL}(q(z\\mid x)\\,\\|\\,p(z)) = I_q(x;z) + "
        "\\mathrm{KL}(q(z)\\,\\|\\,p(z))$, where $q(z)$ is the aggregate posterior (all encoded images "
        "together). A code that carries information ($I_q > 0$) does not by itself force a mismatch: many "
        "different posteriors can average to exactly $N(0, I)$. The mismatch has two causes: the encoder is "
        "restricted (one diagonal Gaussian per image, all produced by one shared network), so it cannot tile the "
        "prior exactly; and the objective penalises $\\mathrm{KL}(q(z)\\,\\|\\,p(z))$ only inside this sum, "
        "so the optimiser trades some marginal mismatch for better reconstructions (Hoffman & Johnson 2016; "
        "Tomczak & Welling 2018). The decoder is trained only on codes from $q(z)$; where the prior puts more "
        "mass than $q(z)$, its samples decode to blends or non-digits.",
        "Sample from where the data are: fit a density to the codes after training (Ghosh et al. 2020) or a "
        "second small VAE (two-stage VAE, Dai & Wipf 2019); learn the prior instead of fixing it (VampPrior, "
        "Tomczak & Welling 2018); hierarchical priors (NVAE); or discrete codes with an autoregressive prior "
        "fitted to them (VQ-VAE).")

# ---- 4. complex data -------------------------------------------------------------------------------
@st.fragment
def section_complex() -> None:
    st.header("4. Complex data", anchor="4-complex-data")
    with ui.config_container("⚙️ Settings: complex data"):
        conf = ui.slider("Classifier counts a sample as recognised at probability ≥", "lim_conf", 0.5, 0.99, 0.9,
                         step=0.01, help="A multinomial logistic regression trained on the real training images "
                                         "judges every image; this is its confidence threshold.")
    cx = [safely(lambda d=d: complex_evidence(d, ctx.seed), f"Measuring {DATASET_NAMES[d]}") for d in DATASETS]
    if all(e is not None for e in cx):
        rows = limits.complex_rows(cx, conf)
        ui.figure(cached("lim_fig_complex", (conf,), lambda:
                lf.complex_bars(rows, **({"height": PRESENT_H} if present else {}))), key="lim_fig_complex",
                  alt="Bars: for each dataset, the VAE's sharpness, classifier accuracy and recognised samples as a "
                      "percentage of the real images' values.")
        names = [r["dataset"] for r in rows]
        box = (ui.lazy_expander("🖼️ The images and all the measures, per dataset", "lim_cx_open")
               if not present else st.container())
        if present or box.open:
            with box:
                for e in cx:
                    ui.figure(cached(f"lim_fig_strip_{e['dataset']}", (), lambda:
                            lf.dataset_strip(e["images"], e["image_shape"], title=f"{STRIP_TITLES[e['dataset']]} "
                                               f"({e['image_shape'][0]}×{e['image_shape'][1]} pixels)", height=285)),
                              key=f"lim_fig_strip_{e['dataset']}",
                              alt=f"Real {e['dataset']} images, VAE reconstructions and VAE samples.")
                if not present:
                    st.markdown(md_table([{"measure": k, **{n: cell_text(k, r[k]) for n, r in zip(names, rows)}}
                                          for k in rows[0] if k != "dataset"]))
        by = {r["dataset"]: r for r in rows}
        d, mn = by["digits"], by["mnist-5k"]
        st.markdown(
            f"**👀 What you see.** The same recipe (an MLP VAE with 16 latents, β = 1) on each dataset, judged on "
            f"held-out images. Its prior samples keep {d['sharpness kept, VAE samples (%)']:.0f}% of the real "
            f"images' sharpness on 8×8 digits and {mn['sharpness kept, VAE samples (%)']:.0f}% on 28×28 MNIST. A "
            f"logistic regression trained to tell real images from samples is right "
            f"{d['real-vs-sample classifier accuracy (%)']:.0f}% of the time on digits and "
            f"{mn['real-vs-sample classifier accuracy (%)']:.0f}% on MNIST (50% would mean it cannot tell them "
            f"apart). A digit classifier trained on real images is confident (p ≥ {conf:.2f}) about "
            f"{d['confident, VAE samples (%)']:.0f}% of digit samples (real digits: {d['confident, real (%)']:.0f}%) "
            f"and {mn['confident, VAE samples (%)']:.0f}% of MNIST samples (real: {mn['confident, real (%)']:.0f}%). "
            f"The MNIST model has {mn['VAE parameters']:,} parameters.")
        if not present:
            st.caption("A linear classifier is content with a blurred prototype of a digit, so *recognised* means "
                       "\"looks like some digit\", not \"looks real\"; the real-vs-sample test asks the second "
                       "question (a classifier two-sample test, Lopez-Paz & Oquab 2017). Per-pixel errors are not "
                       "comparable across datasets (MNIST is mostly black background); the ratios are.")
        section_faces()
    three_parts(
        "An MLP sees an image as a flat list of pixels: nothing tells it that neighbours are related or that a "
        "stroke moved by one pixel is the same stroke (convolutions share weights across positions). One layer "
        "of 16 Gaussian latents must describe the whole image, and the decoder predicts each pixel "
        "independently given z, so whatever z does not pin down is averaged away (section 1). The gap grows "
        "with size and variety: MNIST is still 28×28 greyscale; photos are 256×256×3 and far more varied.",
        "The limit is capacity and the likelihood, not the VAE idea: image VAEs that work are convolutional, "
        "deep, and have many layers of latents. NVAE (Vahdat & Kautz 2020) generates 256×256 faces (CelebA HQ) "
        "with groups of latents at several resolutions; VDVAE (Child 2021) goes deeper, generates faces "
        "(FFHQ) and beats PixelCNN in likelihood. VQ-VAE-2 (Razavi et al. "
        "2019) uses discrete latents at two scales with PixelCNN priors for 256×256 ImageNet. Diffusion models "
        "(Ho et al. 2020) now give the best samples: their 32×32 CIFAR-10 network has 35.7 million parameters "
        "and their 256×256 ones 114 million. Latent diffusion (Rombach et al. 2022) keeps an autoencoder only to "
        "compress images, and generates in its latent space.")

def section_faces() -> None:
    """The same small VAE on 25×25 faces (core.faces), trained on demand once per server."""
    from core import faces
    st.markdown("**🧑 And on faces?** The same recipe (MLP, 16 latents, β = 1) on 100 grey 25×25 faces from "
                "Labeled Faces in the Wild (Huang et al. 2007; the copy inside scikit-image), 90 to train on.")
    if not faces.faces_ready():
        job = faces.training_job()
        if job is None or job.state == "failed":
            if job is not None:
                st.error(f"Training on the faces failed: {job.error}. Press the button to try again.")
            slot = st.empty()
            if not slot.button("🧑 Train it on the faces (a few seconds, once per server, in the background)",
                               key="lim_faces_train"):
                return
            slot.empty()
            job = faces.start_training()
        if job.state == "running":
            wait_for(("faces",), "🧑 Training on the faces")
            return
    fe = safely(faces_evidence, "Measuring the faces")
    if fe is None:
        return
    ui.figure(cached("lim_fig_strip_faces", (), lambda:
            lf.dataset_strip(fe["images"], fe["image_shape"], title=f"LFW faces (25×25 pixels), "
                               f"{fe['n_val']} held out", height=285)),
              key="lim_fig_strip_faces", alt="Real held-out faces, their VAE reconstructions and VAE samples.")
    st.markdown(
        f"**👀 What you see.** On the {fe['n_val']} held-out faces the reconstructions keep "
        f"{fe['kept_recon']:.0f}% of the real faces' sharpness (variance of the Laplacian) and the prior samples "
        f"{fe['kept_sample']:.0f}%; the per-pixel squared error is {fe['mse_vae']:.4f}. With {fe['n_train']} "
        "training faces and one layer of 16 latents, the model draws an average, blurred face. The published "
        "remedy is capacity, not a different idea: NVAE (Vahdat & Kautz 2020), a deep hierarchical "
        "convolutional VAE, generates 256×256 CelebA HQ faces (0.70 bits per dimension, on 5-bit images), and VDVAE (Child 2021) "
        "generates FFHQ faces at 256×256 (0.61 bits per dimension, 5-bit) and 1024×1024.")


# ---- 5. only a bound -------------------------------------------------------------------------------
@st.fragment
def section_bound() -> None:
    st.header("5. Only a bound, and no promise of meaning", anchor="5-only-a-bound")
    identity = st.container()  # above the figure; in presenter mode below it, so the figure fits 1280x720
    ev = safely(lambda: bound_evidence(ds_name), "Importance sampling")
    if ev is not None:
        ks, b = ev["ks"], ev["bounds"]
        ui.figure(cached("lim_fig_bound", (), lambda:
                lf.bound_curve(ks, b, height=PRESENT_H if present else 360)), key="lim_fig_bound",
                  alt="The importance-weighted bound L_k against k: " + ", ".join(f"k={k}: {b[k]:.2f}" for k in ks))
    (st.container() if present else identity).latex(
        r"\log p(x) \;=\; \underbrace{\mathbb{E}_{q(z\mid x)}\!\left[\log p(x\mid z)\right] - "
        r"\mathrm{KL}\!\left(q(z\mid x)\,\|\,p(z)\right)}_{\text{ELBO}} \;+\; "
        r"\mathrm{KL}\!\left(q(z\mid x)\,\|\,p(z\mid x)\right) \;\ge\; \text{ELBO}")
    if ev is not None:
        st.latex(r"\mathcal{L}_k = \mathbb{E}_{z_1..z_k \sim q(z\mid x)}\left[\log \frac1k \sum_{i=1}^k "
                 r"\frac{p(x\mid z_i)\,p(z_i)}{q(z_i\mid x)}\right] \;\le\; \log p(x)")
        st.markdown(
            f"**👀 What you see.** On {ev['n_images']} held-out images of the β = {ev['beta']:g} VAE "
            f"({ev['latent_dim']} latents), the ELBO (k = 1) is {b[ks[0]]:.2f} nats per image and the "
            f"importance-weighted bound with k = {ks[-1]} is {b[ks[-1]]:.2f}. Every $\\mathcal{{L}}_k$ is a lower "
            f"bound on log p(x) (Burda et al. 2016), so, up to sampling noise, the ELBO is at least "
            f"{ev['gap_lower']:.2f} nats below log p(x) here: that much of the gap KL(q(z|x) ‖ p(z|x)) is measured, the rest is unknown. These are "
            "log-likelihoods under the model's Bernoulli cross-entropy on grey pixels, not a normalised "
            "likelihood, so compare them only with each other.")
    three_parts(
        "The ELBO is below log p(x) by KL(q(z|x) ‖ p(z|x)), the error of the approximate posterior. Cremer et "
        "al. (2018) split it in two: the **approximation gap**, because a diagonal Gaussian cannot take the shape "
        "of the true posterior (which can be skewed, correlated or have several modes), and the **amortisation "
        "gap**, because one encoder network computes q(z|x) for every image instead of optimising it for each "
        "image separately. Training maximises the bound, not log p(x), and the decoder adapts to whatever "
        "posterior the encoder can express (Cremer et al. 2018). And log p(x) itself has no closed form: it is estimated by importance "
        "sampling, as above. Separately, **nothing in the ELBO asks each $z_j$ to mean one human concept**: "
        "Locatello et al. (2019) proved that unsupervised disentanglement is impossible without inductive biases "
        "on the models and the data, and in more than 12,000 trained models found that well-disentangled ones "
        "could not be identified without labels.",
        "Richer posteriors: **normalizing flows** transform the Gaussian through invertible maps (Rezende & "
        "Mohamed 2015); **inverse autoregressive flow** does it with flows that scale to high-dimensional "
        "latents (Kingma et al. 2016). **Importance weighting**: report log p(x) with the IWAE bound $"
        "\\mathcal{L}_k$ for large k, or train on it (Burda et al. 2016). Cremer et al. (2018) found the "
        "amortisation gap is often the larger part, so the encoder matters as much as the posterior family. For interpretable factors: supervision or inductive biases chosen "
        "on purpose, and checking each latent by traversing it rather than assuming it means something.")


for k, sections in enumerate(((section_blur,), (section_collapse, section_causes), (section_hole,),
                              (section_complex,), (section_bound,))):
    if show(k):
        for section in sections:
            section()

# ---- references and self-check -----------------------------------------------------------------------
if not present:
    with st.expander("📚 References"):
        st.markdown(
            "- Alemi, A. et al. (2018). *Fixing a Broken ELBO.* ICML.\n"
            "- Bowman, S. R. et al. (2016). *Generating Sentences from a Continuous Space.* CoNLL.\n"
            "- Burda, Y., Grosse, R. & Salakhutdinov, R. (2016). *Importance Weighted Autoencoders.* ICLR "
            "(active units; the IWAE bound).\n"
            "- Child, R. (2021). *Very Deep VAEs Generalize Autoregressive Models and Can Outperform Them on "
            "Images.* ICLR.\n"
            "- Cremer, C., Li, X. & Duvenaud, D. (2018). *Inference Suboptimality in Variational Autoencoders.* "
            "ICML.\n"
            "- Dai, B. & Wipf, D. (2019). *Diagnosing and Enhancing VAE Models.* ICLR.\n"
            "- Fu, H. et al. (2019). *Cyclical Annealing Schedule: A Simple Approach to Mitigating KL Vanishing.* "
            "NAACL.\n"
            "- Ghosh, P. et al. (2020). *From Variational to Deterministic Autoencoders.* ICLR.\n"
            "- Gulrajani, I. et al. (2017). *PixelVAE: A Latent Variable Model for Natural Images.* ICLR.\n"
            "- Higgins, I. et al. (2017). *β-VAE: Learning Basic Visual Concepts with a Constrained Variational "
            "Framework.* ICLR.\n"
            "- Ho, J., Jain, A. & Abbeel, P. (2020). *Denoising Diffusion Probabilistic Models.* NeurIPS.\n"
            "- Huang, G. B. et al. (2007). *Labeled Faces in the Wild: A Database for Studying Face Recognition "
            "in Unconstrained Environments.* University of Massachusetts, Amherst, Technical Report 07-49.\n"
            "- Hoffman, M. D. & Johnson, M. J. (2016). *ELBO surgery: yet another way to carve up the variational "
            "evidence lower bound.* NIPS Workshop on Advances in Approximate Bayesian Inference.\n"
            "- Kingma, D. P. & Welling, M. (2014). *Auto-Encoding Variational Bayes.* ICLR.\n"
            "- Kingma, D. P. et al. (2016). *Improved Variational Inference with Inverse Autoregressive Flow.* "
            "NeurIPS (free bits).\n"
            "- Larsen, A. B. L. et al. (2016). *Autoencoding beyond pixels using a learned similarity metric.* ICML.\n"
            "- Locatello, F. et al. (2019). *Challenging Common Assumptions in the Unsupervised Learning of "
            "Disentangled Representations.* ICML.\n"
            "- Lopez-Paz, D. & Oquab, M. (2017). *Revisiting Classifier Two-Sample Tests.* ICLR.\n"
            "- Lucas, J., Tucker, G., Grosse, R. & Norouzi, M. (2019). *Don't Blame the ELBO! A Linear VAE "
            "Perspective on Posterior Collapse.* NeurIPS.\n"
            "- Pech-Pacheco, J. L. et al. (2000). *Diatom autofocusing in brightfield microscopy: a comparative "
            "study.* ICPR (variance of the Laplacian).\n"
            "- Razavi, A., van den Oord, A. & Vinyals, O. (2019). *Generating Diverse High-Fidelity Images with "
            "VQ-VAE-2.* NeurIPS.\n"
            "- Razavi, A., van den Oord, A., Poole, B. & Vinyals, O. (2019). *Preventing Posterior Collapse with "
            "delta-VAEs.* ICLR.\n"
            "- Rezende, D. J. & Mohamed, S. (2015). *Variational Inference with Normalizing Flows.* ICML.\n"
            "- Rombach, R. et al. (2022). *High-Resolution Image Synthesis with Latent Diffusion Models.* CVPR.\n"
            "- Tipping, M. E. & Bishop, C. M. (1999). *Probabilistic Principal Component Analysis.* Journal of "
            "the Royal Statistical Society B 61(3).\n"
            "- Tomczak, J. M. & Welling, M. (2018). *VAE with a VampPrior.* AISTATS.\n"
            "- Vahdat, A. & Kautz, J. (2020). *NVAE: A Deep Hierarchical Variational Autoencoder.* NeurIPS.\n"
            "- van den Oord, A., Vinyals, O. & Kavukcuoglu, K. (2017). *Neural Discrete Representation "
            "Learning.* NeurIPS.")

with url_errors:
    ui.show_url_errors()

if "sweep" not in FACTS:
    rd_all = safely(lambda: rd_evidence(ds_name), "Evaluating the β sweep")
    FACTS["sweep"] = rd_all["sweep"] if rd_all is not None else None
if "remedies" not in FACTS:
    FACTS["remedies"] = safely(lambda: remedy_evidence(ds_name, ctx.seed), "Loading the remedy runs")
sweep_pts, remedies, holes = FACTS["sweep"], FACTS["remedies"], FACTS.get("holes")
if sweep_pts is not None:
    at = {p["beta"]: p for p in sweep_pts}
    questions = []
    if 1.0 in at and 2.0 in at:
        questions.append((
            "Going from β = 1 to β = 2, does the rate rise or fall, and what happens to the distortion?",
            f"The rate falls from {at[1.0]['rate']:.2f} to {at[2.0]['rate']:.2f} nats and the distortion rises from "
            f"{at[1.0]['distortion']:.2f} to {at[2.0]['distortion']:.2f} nats: each nat of KL now costs twice as "
            "much, so the model stores less about x in z and reconstructs it worse (and blurrier)."))
    if remedies is not None:
        plain, fb = remedies[""]["point"], remedies["freebits"]["point"]
        questions.append((
            "At β = 4, which run keeps more latent units active, the plain one or the one with free bits, and why?",
            f"Free bits: {fb['active_units']} active units against {plain['active_units']}. Every dimension is "
            "charged at least λ nats whether it is used or not, so pushing its KL below λ saves nothing and the "
            "optimiser keeps using it; without the floor, β = 4 makes switching units off the cheapest option."))
    questions.append((
        "Reconstructions can look fine while samples from N(0, I) look wrong. Why?",
        "Reconstructions decode codes the encoder produced, where the decoder was trained. Samples come from the "
        "prior, which puts mass where the encoded data are sparse or absent (the prior hole): there the decoder "
        "saw few or no codes in training and draws blends or non-digits."
        + ("" if holes is None else
           f" With the settings of section 3, {100 * holes['hole_mass']:.1f}% of prior samples land in a hole."
           if len(holes["holes"]) else
           " With the settings of section 3 no cell counts as a hole, but the least-filled cell gets only "
           f"{100 * holes['min_fill']:.0f}% of the codes the prior expects there.")))
    ui.self_check("lim", questions)
