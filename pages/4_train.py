"""Train a VAE live: a real PyTorch model trains in a background thread while a fragment redraws
its loss terms, KL per dimension, reconstructions and samples; beta changes mid-run; runs are
kept, compared (including a one-click beta sweep), replayed as a timeline, exported and imported.
"""
from __future__ import annotations

import random
import time
from dataclasses import replace

import streamlit as st

from core import ui

ctx = ui.page("Train a VAE live", "🏋️", "Train a real VAE and watch every loss term respond to β.")
ui.configure_torch()

from core import persist as P  # noqa: E402
from core import runs as R  # noqa: E402  (after ui.page: the sidebar draws before torch loads)
from core.checkpoints import CheckpointError, load_checkpoint  # noqa: E402
from core.data import DATASETS, DatasetError, load_dataset, load_dataset_file  # noqa: E402
from core.figures import training as FT  # noqa: E402
from core.figures.blockdiagram import VAE_OBJECTIVE_LATEX  # noqa: E402
from core.models import LATENT_RANGE  # noqa: E402
from core.training import MAX_EPOCHS, REDRAWS, live_runners  # noqa: E402

import pandas  # noqa: E402,F401  (imported lazily by the charts otherwise: loaded once, up front)
import pyarrow.compute  # noqa: E402,F401
import sklearn.decomposition  # noqa: E402,F401  (the timeline's PCA)

ss = st.session_state


def url_param(name: str) -> str | None:
    """A raw URL value (core.runs.resolve_link checks it before anything uses it), or None."""
    v = st.query_params.get(name)
    return None if v is None else str(v)[:100]


# Runs that come back (issue 23): runs=<id> in the URL names this session's saved runs, so a reload, a new
# browser or a restarted server brings them back; view=<id> opens someone's runs read-only (core.persist).
link = R.resolve_link(url_param("runs"), url_param("view"), ss.get("tr_owner"))
if link.message:
    ss["tr_link_msg"] = (link.level, link.message)
store, restore_errors = R.session_store(ss, link)
VIEW = store.read_only
if not VIEW:
    st.query_params["runs"] = link.owner
    if "view" in st.query_params:
        del st.query_params["view"]
SCALE = ui.PRESENT_SCALE if ctx.present else 1.0
# The live images are sent at their native size (cheap to encode twice a second); scale them up sharply.
# No CSS transitions or animations on this page: each live redraw would otherwise animate for a few
# hundred ms (the progress bar, the fading of elements being redrawn), which cost each browser about a
# quarter of its CPU for this page (measured in headless Chromium) and slows the student's laptop.
st.html("<style>[data-testid='stImage'] img {image-rendering: pixelated;} "
        "*, *::before, *::after {transition: none !important; animation: none !important;}</style>")


# ---- small drawing helpers ---------------------------------------------------------------------

def draw(fig, key: str, alt: str, html_name: str | None = None) -> None:
    """Draw a figure from core.figures.training (fonts already scaled for presenter mode), with the
    house toolbar (PNG at 3x) and, for animations, a standalone offline HTML download."""
    st.plotly_chart(fig, key=key, config=ui.PLOTLY_CONFIG, alt=alt)
    if html_name:
        st.download_button(f"⬇️ Download {html_name} (HTML)", data=lambda f=fig: ui.figure_html(f),
                           file_name=f"{html_name}.html", mime="text/html", on_click="ignore", key=f"dl_{key}")


def plain(text: str) -> str:
    """Text that may contain user input (an upload's file name) shown literally: Markdown's special
    characters are escaped, so nothing in it can become a link, an image or formatting."""
    return "".join("\\" + ch if ch in "\\`*_[]()<>#!|~$" else ch for ch in str(text))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "estimating time left"
    s = int(round(seconds))
    return f"{s // 60} min {s % 60} s left" if s >= 60 else f"{s} s left"


def publish_shared_models() -> None:
    """Contract with the other pages: st.session_state["shared_models"] maps a name to
    (model, ModelConfig, dataset_name) for every finished run or loaded checkpoint of a
    built-in dataset (frozen copies, eval mode)."""
    shared = ss.setdefault("shared_models", {})
    mine = ss.setdefault("tr_shared_names", set())
    keep = {}
    for r in store.finished_runs():
        usable = r.state == "loaded" or (r.state in ("done", "stopped") and r.step > 0)
        if usable and r.dataset.name in DATASETS:
            keep[f"Trained here: {r.name}"] = (r.shared_model(), r.model_cfg, r.dataset.name)
    for name in mine - set(keep):
        shared.pop(name, None)
    shared.update(keep)
    ss["tr_shared_names"] = set(keep)


# ---- configuration -------------------------------------------------------------------------------

def text_param(label: str, key: str, default: str, **kw) -> str:
    """A text input bound to the URL like ui's widgets (validated by the caller)."""
    ui.bind(key, default)
    v = st.text_input(label, key=key, max_chars=40, **kw)
    ui.publish(key)
    return v


def dataset_choice():
    """The dataset to train on: the sidebar's built-in one, or an uploaded file (kept in the session)."""
    src = ui.select("Data", "tr_src", ["builtin", "upload"], radio=True,
                    format_func={"builtin": f"Built-in: {ui.DATASET_LABELS[ctx.dataset_name]}",
                                 "upload": "Upload my own images"}.get,
                    help="Change the built-in dataset in the sidebar.")
    if src == "builtin":
        return ctx.dataset
    up = st.file_uploader("Images: .npz (x/y or Keras mnist.npz), .npy, IDX(.gz) or CSV (label + pixels)",
                          key="tr_data_up")
    if up is not None and ss.get("tr_upload_id") != up.file_id:
        ss["tr_upload_id"] = up.file_id
        try:
            ss["tr_upload"] = load_dataset_file(up)
            ss.pop("tr_upload_error", None)
        except DatasetError as exc:
            ss["tr_upload_error"] = str(exc)
    if ss.get("tr_upload_error"):
        st.error(f"That file could not be used: {plain(ss['tr_upload_error'])}\n\nThe current run is untouched.")
    ds = ss.get("tr_upload")
    if ds is None:
        st.info("Upload a file to train on it.")
        return None
    h, w = ds.image_shape
    st.caption(f"Using the upload {ui.quote_user(ds.name)}: {ds.n:,} images of {h}×{w} pixels"
               + (f", {ds.n_classes} classes." if ds.labelled else ", no labels (points are grey)."))
    return ds


def likelihood_note(d: int) -> None:
    """Where the likelihood is chosen: what each one's "nats" are, and the Gaussian's noise as a hidden β."""
    with st.expander("🔍 Bernoulli or Gaussian? The noise level is a hidden β"):
        st.markdown("**Bernoulli** (binary cross-entropy), with x̂ = g(z) the decoder's output:")
        st.latex(R.BERNOULLI_TEX)
        st.markdown(
            "On grey pixels (x_d strictly between 0 and 1) this is not the log of a normalised density for continuous "
            "values, so its nats are not a log-likelihood: even a perfect reconstruction of a grey pixel costs more "
            "than 0. **Gaussian** with noise level s on every pixel:")
        st.latex(R.GAUSSIAN_TEX)
        st.markdown(
            "This app uses s = 1 and drops the constant D/2·log 2π: its reconstruction term is ½‖x − x̂‖². "
            "Multiplying a loss by a constant does not change which weights minimise it, so (Lucas et al., 2019, "
            "*Don't blame the ELBO!*):")
        st.latex(R.HIDDEN_BETA_TEX)
        st.markdown(R.hidden_beta_text(d))


def configuration():
    """All settings except β (which lives with the live view). Returns (dataset, ModelConfig,
    TrainConfig) or None, after showing what is wrong."""
    with ui.config_container("⚙️ Configuration (applies to the next run you start)"):
        c1, c2, c3, c4 = st.columns(4, gap="medium")
        with c1:
            ds = dataset_choice()
            kind = ui.select("Model", "tr_kind", ["vae", "ae"], radio=True, horizontal=True,
                             format_func={"vae": "VAE", "ae": "Autoencoder"}.get)
        with c2:
            latent = ui.number("Latent dimension", "tr_latent", LATENT_RANGE[0], LATENT_RANGE[1], 16, step=1,
                               help="2 shows the latent map live; 16 reconstructs better.")
            hidden_text = text_param("Hidden sizes (encoder; the decoder mirrors them)", "tr_hidden",
                                     R.DEFAULT_HIDDEN, help="One to four widths, comma-separated, e.g. 256,128.")
            likelihood = ui.select("Decoder likelihood", "tr_lik", ["bernoulli", "gaussian"], radio=True,
                                   format_func={"bernoulli": "Bernoulli (BCE)", "gaussian": "Gaussian (MSE)"}.get,
                                   help="Bernoulli: binary cross-entropy per pixel. Gaussian: ½‖x − x̂‖², a Gaussian with "
                                        "variance 1 on every pixel, which on pixels in [0, 1] acts like a much larger β "
                                        "(see 'The noise level is a hidden β' below).")
        with c3:
            lr = ui.select("Learning rate", "tr_lr", R.LR_CHOICES, default=2e-3, format_func=lambda v: f"{v:g}",
                           help="Adam's step size. 0.3 and above make the loss blow up: try it.")
            batch = ui.select("Batch size", "tr_bs", R.BATCH_CHOICES,
                              default=R.DEFAULT_BATCH.get(ds.name if ds is not None else "", 32),
                              help="Small batches take many cheap steps: a good model within about 10 s, and "
                                   "a run long enough to move β several times.")
            default_epochs = R.DEFAULT_EPOCHS.get(ds.name if ds is not None else "", 15)
            epochs = ui.number("Epochs", "tr_epochs", 1, MAX_EPOCHS, default_epochs, step=1)
        with c4:
            seed = ui.number("Seed", "tr_seed", 0, 9999, ctx.seed, step=1,
                             help="Weights, shuffling and noise: the same seed gives the same run.")
            warmup = ui.number("KL warm-up (steps)", "tr_warmup", 0, 20000, 0, step=50,
                               help="β ramps from 0 to its value over this many steps (Bowman et al. 2016).")
            free_bits = ui.number("Free bits (nats per dimension)", "tr_freebits", 0.0, 2.0, 0.0, step=0.05,
                                  help="No pressure on a dimension's KL below this (Kingma et al. 2016).")
        likelihood_note(ds.dim if ds is not None else ctx.dataset.dim)
        if ds is None:
            return None
        try:
            hidden = R.parse_hidden(hidden_text)
        except ValueError as exc:
            st.error(f"{exc} Until then the next run cannot start.")
            return None
        try:
            mc, tc = R.make_configs(ds, kind, latent, hidden, likelihood, lr, batch, epochs, seed,
                                    beta=1.0, warmup_steps=warmup, free_bits=free_bits)
        except ValueError as exc:
            st.error(f"These settings cannot be trained: {exc}")
            return None
        steps = R.total_steps(ds, tc)
        st.caption(f"Next run: {mc.kind.upper()} on {plain(ds.name)}, {ds.dim} → {' → '.join(map(str, mc.hidden_dims))} → "
                   f"{mc.latent_dim} → … → {ds.dim}, {tc.epochs} epochs ≈ {steps:,} steps of {tc.batch_size} images.")
        return ds, mc, tc


# ---- live training (a fragment that polls only while training) -------------------------------

SCROLL_JS = """
export default function ({ parentElement, data }) {
  // Scroll this element (placed just above the live view) to the top of the window, once per new run.
  const target = data && data.target;
  if (!target || window.__llScrolledTo === target) return;
  window.__llScrolledTo = target;
  const el = parentElement.querySelector(".ll-scroll") || parentElement;
  el.style.scrollMarginTop = "70px";  // below Streamlit's fixed header
  requestAnimationFrame(() => el.scrollIntoView({ behavior: "auto", block: "start" }));
}
"""


@st.cache_resource
def scroll_component():
    """A tiny custom component (Streamlit's public components v2 API) that scrolls itself into view."""
    return st.components.v2.component("latent_lab_scroll_here", js=SCROLL_JS, html='<div class="ll-scroll"></div>',
                                      isolate_styles=False)


def scroll_here() -> None:
    """Pressing Start (or β sweep) scrolls the page to here, so the live charts come into view. Not in
    presenter mode: there the next scene shows them."""
    if not ctx.present:
        scroll_component()(data={"target": ss.get("tr_scroll_to")}, key="tr_scroll_here")

def on_start(cfg) -> None:
    ds, mc, tc = cfg
    ss.pop("tr_error", None)
    ss.pop("tr_link_msg", None)
    try:
        run = store.create(mc, replace(tc, beta=float(ss.get("tr_beta", 1.0)) if mc.kind == "vae" else 0.0), ds)
        ss["tr_scroll_to"] = run.name  # bring the live charts into view (see scroll_here)
    except ValueError as exc:
        ss["tr_error"] = f"Could not start: {exc}"


def on_sweep(cfg) -> None:
    ds, mc, tc = cfg
    ss.pop("tr_error", None)
    try:
        ss["tr_scroll_to"] = store.start_sweep(mc, R.sweep_config(ds, tc), ds).name
    except ValueError as exc:
        ss["tr_error"] = str(exc)


def on_beta() -> None:
    if VIEW:
        return
    store.set_beta(float(ss["tr_beta"]))
    ui.publish("tr_beta")


def beta_slider(run, cfg) -> None:
    if "tr_beta" not in ss:
        if run is not None and not run.finished and run.is_vae:
            ss["tr_beta"] = run.beta
        else:
            ui.bind("tr_beta", 1.0, choices=R.BETA_CHOICES)
    if store.sweeping and run is not None:
        ss["tr_beta"] = run.beta  # the sweep fixes β per run
    if ss["tr_beta"] not in R.BETA_CHOICES:
        ss["tr_beta"] = min(R.BETA_CHOICES, key=lambda b: abs(b - ss["tr_beta"]))
    enabled, help_text = R.beta_control(run, cfg[1].kind if cfg else None, store.sweeping, VIEW)
    st.select_slider("β, the weight of the KL term", options=R.BETA_CHOICES, key="tr_beta", on_change=on_beta,
                     format_func=lambda b: f"{b:g}", disabled=not enabled, help=help_text)
    if ss.get("_keep_tr_beta") != ss["tr_beta"]:
        ui.publish("tr_beta")


def controls(run, cfg) -> None:
    shown = R.run_buttons(run.state if run is not None else None, read_only=VIEW)  # (a view link: none)
    if not shown:
        return
    # Presenter mode: three buttons in a row of their own beside β, wide enough for "▶️ Start training" and
    # "🧪 β sweep: 0, 0.5, 1, 4" at presenter size (four equal columns cut both off at 1280x720); a sweep's
    # queue goes below them.
    cols = st.columns([1.25, 1.45, 0.95]) + [st.container()] if ctx.present else st.columns(4)
    if "start" in shown:
        cols[0].button("▶️ Start training", key="tr_start", type="primary", on_click=on_start, args=(cfg,),
                       disabled=cfg is None, width="stretch")
        cols[1].button("🧪 β sweep: 0, 0.5, 1, 4", key="tr_sweep", on_click=on_sweep, args=(cfg,),
                       disabled=cfg is None or cfg[1].kind != "vae", width="stretch",
                       help="Trains four VAEs with the configuration above and β = 0, 0.5, 1 and 4 (same seed), "
                            "one after another, then compares them below. Each trains for at most "
                            f"{R.SWEEP_EPOCHS.get(cfg[0].name, MAX_EPOCHS) if cfg else ''} epochs, so the four "
                            "are ready within a minute or two.")
    if "pause" in shown:
        cols[0].button("⏸️ Pause", key="tr_pause", on_click=store.pause, width="stretch")
    if "resume" in shown:
        cols[0].button("▶️ Resume", key="tr_resume", type="primary", on_click=store.resume, width="stretch")
    if "stop" in shown:
        cols[1].button("⏹️ Stop", key="tr_stop", on_click=store.stop, width="stretch",
                       help="End the run now and keep it (a sweep's remaining runs are cancelled).")
    if "reset" in shown:
        cols[2].button("🔄 Reset", key="tr_reset", on_click=store.reset, width="stretch",
                       help="Discard an unfinished run (finished runs stay in the list below) and clear this view.")
    if store.queue:
        cols[3].caption(f"β sweep: {len(store.queue)} more run(s) queued: "
                        + ", ".join(f"β={tc.beta:g}" for _, _, tc, _ in store.queue))


def progress(run) -> None:
    t = run.trainer
    state = run.state
    epoch = min(t.cfg.epochs, t.step // t.steps_per_epoch + (0 if t.finished else 1))
    sps = t.samples_per_second
    left = f" · {duration(t.seconds_left())}" if state == "training" else ""
    st.progress(t.progress(), text=f"**{run.name}** · β = {t.beta:g} · {R.STATE_LABELS[state]} · epoch {epoch}/{t.cfg.epochs} · "
                                   f"step {t.step}/{t.total_steps} · {t.train_seconds:.1f} s · {sps:,.0f} samples/s"
                                   f"{left}")


def end_message(run) -> None:
    """How the run ended, if it has: an error, info or success box (nothing while it trains). In presenter
    mode only a failure gets a box: the progress line above already says "finished" or "stopped early" with
    the steps and seconds, and a box would push the scene's loss chart off a 1280x720 screen (issue 21)."""
    t, state = run.trainer, run.state
    if ctx.present and state in ("stopped", "done"):
        return
    if state == "diverged":
        st.error(f"⚠️ {run.message}")
    elif state == "error":
        st.error(run.message)
    elif state == "stopped":
        st.info(run.message)
    elif state == "done":
        st.success(f"Finished: {t.step:,} steps in {t.train_seconds:.1f} s of training "
                   f"({t.samples_per_second:,.0f} samples/s).")


def live_numbers(run, per_row: int = 4) -> None:
    ev = run.eval_history[-1] if run.eval_history else None
    h = run.history[-1] if run.history else None
    c = st.columns(4) if per_row == 4 else [col for _ in range(2) for col in st.columns(2)]
    c[0].metric("Step", f"{run.step:,}", help="Optimiser steps so far (one batch each).")
    if ev is None:
        c[1].metric("Held-out −ELBO", "…", help=f"First measured at step {run.train_cfg.eval_every}.")
    elif run.is_vae:
        c[1].metric("Held-out −ELBO", f"{ev['neg_elbo']:.1f}",
                    help="Reconstruction term + KL term on held-out images, nats per image (lower is better; "
                         "independent of β). Not a normalised −log p(x): Bernoulli cross-entropy on grey pixels, "
                         "or the Gaussian term without its constant D/2·log 2π.")
    else:
        c[1].metric("Held-out reconstruction", f"{ev['recon']:.1f}",
                    help="Reconstruction term on held-out images, nats per image (lower is better).")
    if run.is_vae:
        c[2].metric("KL (batch)", f"{h['kl']:.2f}" if h else "…",
                    help="The KL term KL(q(z|x) ‖ p(z)), nats per image, on the latest training batch.")
        c[3].metric("Active units", f"{ev['active_units']} of {run.model_cfg.latent_dim}" if ev else "…",
                    help="Latent dimensions whose posterior mean μ_j(x) varies over the held-out images: "
                         "Var_x(μ_j) > 0.01 (Burda et al., 2016), at the latest held-out evaluation. The others "
                         "have collapsed.")
    else:
        c[2].metric("Reconstruction (batch)", f"{h['recon']:.1f}" if h else "…")


def vega(chart, key: str, alt: str) -> None:
    """Draw a live (DataFrame, Vega-Lite spec) chart: its spec never changes during a run, so the
    browser updates the data in place (no flicker) on every redraw. ``alt`` must not change from one
    redraw to the next either (so it carries no live numbers: those are in the metrics above the
    charts): a new alt text makes the browser build the chart anew, which cost each redraw of
    the live view about 40 ms of the browser's CPU (measured in headless Chromium).

    The table goes in as a named dataset of the spec (Streamlit sends it as Arrow beside the spec, which
    stays the same): passed as ``data``, the browser first draws the chart with no rows and Vega logs an
    "Infinite extent" warning for every layer's field (issue 21; checked in a browser test)."""
    data, spec = chart
    st.vega_lite_chart(None, {**spec, "datasets": {"rows": data}, "data": {"name": "rows"}}, key=key, alt=alt,
                       width="stretch")


LOSS_ALT = ("Loss terms per sample (nats) against the training step, in two panels with their own y-axes: "
            "total and reconstruction above, KL and β·KL below; lines are training batches, diamonds held-out "
            "values, dashed rules β changes. The latest values are in the numbers beside the charts.")
#: Presenter mode: (CSS class suffix, chart height) for a short screen (1280x720) and a tall one (1920x1080).
#: Both are drawn and CSS shows the one that fits the screen, so the loss chart takes at least half of
#: the screen's height on both without leaving it (a Vega-Lite chart's height is fixed in pixels). At 125 the
#: short chart ended 713 to 717 px down a 720 px screen (its axes' size varies a little with the data): 120
#: leaves a few pixels to spare.
PRESENT_SIZES = (("short", 120), ("tall", 370))
# The loss chart's two panels are as wide as their container, and their axes come on top of that (Vega-Lite
# cannot fit a vconcat's axes into a width): its box is made narrower by the axes' width, so nothing
# sticks out into the next column.
TIMELINE_SIZES = (("short", 420), ("tall", 640))
COMPARE_SIZES = (("short", 400), ("tall", 500))  # scene 4's comparison (400 x 1.3 = 520 px: under half of 1080)
st.html("<style>@media (min-height: 900px) {.st-key-tr_fit_short, .st-key-tr_fit_short_tl, .st-key-tr_fit_short_cmp "
        "{display: none;}} "
        "@media (max-height: 899.98px) {.st-key-tr_fit_tall, .st-key-tr_fit_tall_tl, .st-key-tr_fit_tall_cmp "
        "{display: none;}} "
        f".st-key-tr_loss_box .vega-embed {{width: calc(100% - {round(80 * SCALE)}px) !important;}}</style>")


def live_charts(run) -> None:
    """The live charts and images, built from the run as it is now."""
    ds = run.dataset
    hist, evals = run.history, run.eval_history
    c1, c2 = st.columns([3, 2], gap="medium")
    with c1, st.container(key="tr_loss_box"):
        if ctx.present:
            for name, height in PRESENT_SIZES:
                with st.container(key=f"tr_fit_{name}"):
                    vega(FT.live_loss_chart(hist, evals, run.beta_changes, font_scale=SCALE, height=height),
                         f"tr_live_loss_{name}", LOSS_ALT)
        else:
            vega(FT.live_loss_chart(hist, evals, run.beta_changes, font_scale=SCALE), "tr_live_loss", LOSS_ALT)
    with c2:
        if ctx.present:
            live_numbers(run, per_row=2)  # beside the charts, so the loss chart starts high on the screen
        kl_act = run.latest_kl_activity()
        if run.is_vae and kl_act is not None:
            vega(FT.live_kl_chart(*kl_act, title="KL per latent dimension", font_scale=SCALE,
                                  height=200 if ctx.present else 300),
                 "tr_live_kl", "Held-out KL of each latent dimension in nats, as bars, coloured by whether the "
                               "dimension is active (its mean varies over held-out images, Var over images of μ_j "
                               "above 0.01); a collapsed dimension is grey with a diamond on the axis.")
        elif run.is_vae:
            st.info("The KL of each latent dimension appears after the first step.")
        else:
            st.info("An autoencoder has no KL term: its codes are points, not distributions, so there is "
                    "nothing to compare with a prior. Switch to a VAE to see KL per dimension.")

    def recon_mosaic():
        x = run.fixed_inputs(8)
        snaps = run.snapshots
        recon = snaps[-1]["recon"] if (snaps and run.state == "training") else run.reconstruct(x)
        return (FT.mosaic_uri([x, recon], ds.image_shape),
                f"Eight held-out images above their reconstructions at step {run.step}.")

    def sample_mosaic():
        samples = run.sample_prior(16, seed=run.train_cfg.seed)
        return (FT.mosaic_uri([samples[:8], samples[8:]], ds.image_shape),
                f"Sixteen images decoded from random codes at step {run.step}.")

    c3, c4 = st.columns(2, gap="medium")
    c3.markdown("**Held-out inputs (top) and their reconstructions (bottom)**")
    uri, alt = recon_mosaic()
    c3.image(uri, width="stretch", alt=alt)
    c4.markdown("**Samples: decoding z ~ N(0, I)**" if run.is_vae else
                "**Decoding random z ~ N(0, I)**: an autoencoder has no prior, so expect junk")
    uri, alt = sample_mosaic()
    c4.image(uri, width="stretch", alt=alt)
    snaps = run.snapshots
    if run.model_cfg.latent_dim == 2 and snaps:
        vega(FT.live_latent_chart(
                 snaps[-1]["latents"], run.snapshot_labels(), ds.class_names,
                 title=f"Latent map: μ(x) of {len(run.snapshot_labels())} held-out images", font_scale=SCALE),
             "tr_live_latent", "Two-dimensional codes μ(x) of held-out images, coloured by class.")


LIVE_NOTES = ("How to read the live view: the loss chart has two panels, each with its own y-axis: total and "
              "reconstruction term above, KL term and β·KL below (a few nats beside a reconstruction of 100 or more, "
              "so on one axis the KL would lie flat). Lines are training batches (a moving average), ◆ are "
              "held-out images and dashed lines mark β changes. Each panel's y-axis leaves out the first tenth "
              "of the steps, whose losses are far larger. The KL bars are each dimension's KL at the latest "
              "held-out evaluation (before the first one: the latest batch's, 'not measured yet'). Their colour does not "
              "come from the KL: a dimension is active when its posterior mean $\\mu_j(x)$ varies over the held-out "
              "images, $\\mathrm{Var}_x(\\mu_j) > 0.01$ (Burda et al., 2016), and collapsed otherwise (grey bar, ◆ on "
              "the axis). The "
              "reconstructions and samples use fixed inputs and fixed random codes, so every change you see comes "
              "from the weights.")


def live_section(mode: str, cfg) -> None:
    """``mode``: "full" (controls and charts) or "compact" (controls and progress; keeps training alive
    on presenter scenes that show something else).

    The controls are a fragment that redraws only when clicked (the β slider reruns only them). The live
    view redraws on timers from ``R.live_intervals``. While at most two runs train on the server, the
    progress line and the charts are due on every tick (twice a second), so they are one fragment on one
    timer: two timers firing together let Streamlit 1.67 drop one run's output (see
    docs/streamlit-workarounds.md). When more runs train, the charts are due only every 1 to 5 s, and
    they get a fragment and a slower, jittered timer of their own, so that the twice-a-second redraw
    of the progress line stays cheap: re-sending unchanged charts on every tick from one fragment
    halved the training throughput of 30 sessions and let their redraws fall behind (bench_sessions,
    6 December 2026). Those two timers rarely fire together.
    """
    polling = store.polling
    status_s, charts_s = R.live_intervals(live_runners()) if polling else (None, None)
    split = bool(charts_s and charts_s > status_s)  # the charts on a timer of their own
    # Under load each session's chart interval is stretched or shrunk by up to 20 % at random, so the
    # sessions' chart redraws drift apart instead of landing in every browser (and on the server) at once.
    charts_every = charts_s * random.uniform(0.8, 1.2) if split else charts_s

    def shown() -> tuple:
        return store.active_name, store.active.state if store.active else None, len(store.runs)

    drawn = shown()

    def check_polling() -> None:
        if store.polling != polling:
            ui.rerun_page()  # training started, paused or ended: turn the timers on or off

    def check_clicked() -> None:
        if shown() != drawn:
            st.rerun()  # a button started, paused, stopped or reset a run: redraw the whole page

    # In each fragment the blocks (columns, containers) come first and the elements that are sometimes
    # absent come last, so a position holds the same kind of node (element or block) on every run. Under
    # load Streamlit can apply one fragment run's output over a partial earlier one; when a position
    # held an element in one run and a block in the other, the page crashed to a blank screen
    # ("'setIn' cannot be called on an ElementNode", caught once in about fifteen 10-session load tests).
    @st.fragment
    def control_panel() -> None:
        run = store.active
        if ctx.present:  # one row: the buttons beside β, so the charts start high on the screen
            left, right = st.columns([1.6, 1], gap="medium")
            with left:
                controls(run, cfg)
            with right:
                beta_slider(run, cfg)
        else:
            controls(run, cfg)
            beta_slider(run, cfg)
        if ss.get("tr_error"):
            st.error(ss["tr_error"])
        if run is None and not VIEW:
            st.info("Press **▶️ Start training** to train the configuration above on this server, or "
                    "**🧪 β sweep** to train four VAEs that differ only in β.")
        check_clicked()

    @st.fragment(run_every=status_s)
    def live() -> None:
        run = store.active
        if polling and run is not None and run.runner is not None:
            # No step since the last redraw: wait for one, briefly (a redraw that shows no new step leaves
            # the view still for a whole interval). Outside REDRAWS, so the trainers do not give way to it.
            run.runner.wait_for_unshown_step(R.NEW_STEP_WAIT)
        with REDRAWS:  # the trainers give way while this runs (see core.sharing)
            live_redraw()

    def live_redraw() -> None:
        stalled = ui.live_watch(polling, key="tr_live_watch")  # the browser saw no redraw for a while
        # (blocks first: see above; a full rerun below then sends its yield point after them, in a place that
        # never holds a block)
        status, charts = st.container(), st.container()
        if stalled:
            ui.rerun_page()  # a full run arms the timers again
        if store.tick():
            publish_shared_models()
            ui.rerun_page()  # a run finished or a sweep moved on: redraw everything (and stop polling if idle)
        run = store.active
        with status:
            if run is not None:
                progress(run)
                end_message(run)
                if len(run.beta_changes) > 1 and not ctx.present:  # (presenter mode: the loss chart marks them)
                    st.caption("β so far: " + " → ".join(f"**{b:g}** (from step {s})"
                                                         for s, b in run.beta_changes[-8:]))
            for note in store.pop_notices():
                st.warning(note)
        if run is not None and mode == "full" and not split:
            with charts:
                draw_charts(run)
        check_polling()
        if polling and R.live_intervals(live_runners()) != (status_s, charts_s) and random.random() < 0.2:
            # The server got busier or quieter: new redraw intervals, which take a whole-page redraw. Each
            # session waits a random number of ticks (5 on average), so they do not all redraw at once.
            ui.rerun_page()

    def draw_charts(run) -> None:
        if not ctx.present:
            live_numbers(run)
        live_charts(run)

    @st.fragment(run_every=charts_every)
    @REDRAWS
    def charts() -> None:
        run = store.active
        if run is not None:
            draw_charts(run)

    # Each fragment alone in a container of the page's own: a lost full-run output then cannot let the
    # elements below slide into its place (see ui.fragment_slot).
    with ui.fragment_slot():
        control_panel()
    with ui.fragment_slot():
        live()
    if mode == "full" and split:
        with ui.fragment_slot():
            charts()
    if mode == "full" and store.active is not None:
        if ctx.present:  # (long notes stay out of the scene)
            with st.expander("How to read the live view"):
                st.caption(LIVE_NOTES)
        else:
            st.caption(LIVE_NOTES)


# ---- timeline ------------------------------------------------------------------------------------

def timeline_section() -> None:
    if not ctx.present:  # (presenter mode: the scene bar names the scene)
        st.subheader("🎞️ Training timeline")
    runs = [r for r in store.runs.values() if r.trainer is not None and r.snapshots and r.state != "training"]
    training = store.active is not None and store.active.state == "training"
    if not runs:
        st.info("Pause or finish a run to replay how it trained: its snapshots appear here as an animation."
                if training else "Train a run: its timeline of snapshots appears here, ready to replay.")
        if ctx.present:
            st.latex(VAE_OBJECTIVE_LATEX)  # the scene's key formula until there is a timeline (presenter convention)
        return
    names = [r.name for r in runs]
    if ss.get("tr_tl_run") not in names:
        ss["tr_tl_run"] = store.active_name if store.active_name in names else names[-1]
    figure_slot = st.container() if ctx.present else None  # presenter mode: the figure first, the choice below
    name = st.selectbox("Run to replay", names, key="tr_tl_run",
                        help="Runs that are paused or finished. A run's timeline appears once it pauses or ends.")
    run = store.runs[name]
    snaps = run.snapshots

    def timeline(height: int):
        key = ("timeline", len(snaps), SCALE, height)
        if key not in run.cache:
            run.cache = {k: v for k, v in run.cache.items()
                         if not (isinstance(k, tuple) and k[0] == "timeline" and k[1] != len(snaps))}
            run.cache[key] = FT.timeline_figure(snaps, run.snapshot_labels(), run.fixed_inputs(8),
                                                run.dataset.image_shape, run.dataset.class_names,
                                                title=f"{run.name}: how training unfolded", font_scale=SCALE,
                                                seed=run.train_cfg.seed, height=height)
        return run.cache[key]

    k = run.model_cfg.latent_dim
    how = ("the two latent coordinates themselves" if k == 2 else "z1 against the class" if k == 1 else
           f"the {k}-D codes projected with one PCA fitted on the last snapshot, so the axes stay put")
    alt = (f"Animation of {len(snaps)} snapshots from step 1 to step {snaps[-1]['step']}: the latent map of held-out "
           "images and reconstructions of eight held-out inputs.")
    if ctx.present:
        with figure_slot:
            for size, height in TIMELINE_SIZES:  # the one that fits the screen is shown (see PRESENT_SIZES)
                with st.container(key=f"tr_fit_{size}_tl"):
                    draw(timeline(height), f"tr_timeline_{size}", alt)
    else:
        draw(timeline(560), "tr_timeline", alt, html_name="training-timeline")
    st.caption(f"Press ▶ Play or drag the step slider. Left: codes μ(x) of {len(run.snapshot_labels())} held-out "
               f"images ({how}). Right: eight held-out inputs and their reconstructions at that step. "
               f"{len(snaps)} snapshots, one every {run.train_cfg.snapshot_every} steps.")


# ---- runs, comparison, export and import --------------------------------------------------------

RUN_COLUMNS = {
    "model": st.column_config.TextColumn("model", help="Kind, latent dimension, hidden widths, decoder likelihood "
                                         "(BCE: Bernoulli; MSE: unit-variance Gaussian) and dataset."),
    "β": st.column_config.TextColumn("β", help="The values β took during the run, in order; the last one is its "
                                     "final β. A run is not named after its β, because β can change while it trains."),
    "held-out −ELBO": st.column_config.NumberColumn(
        "held-out −ELBO", format="%.2f", help="Reconstruction term + KL term on held-out images at the end, nats per "
                                               "image (lower is better; independent of β)."),
    "recon": st.column_config.NumberColumn("recon", format="%.2f", help="Held-out reconstruction term, nats per image."),
    "KL": st.column_config.NumberColumn("KL", format="%.2f", help="Held-out KL term, nats per image."),
    "active units": st.column_config.NumberColumn(
        "active", help="Active units: latent dimensions with Var_x(μ_j(x)) > 0.01 over held-out images "
                       "(Burda et al., 2016)."),
}


def comparison() -> None:
    finished = [r for r in store.finished_runs() if r.step > 0 or r.source == "checkpoint"]
    names = [r.name for r in finished]
    seen = tuple(names)
    if ss.get("tr_compare_seen") != seen or any(n not in names for n in ss.get("tr_compare", [])):
        ss["tr_compare_seen"] = seen
        newest = finished[-1].dataset.name if finished else None
        ss["tr_compare"] = [r.name for r in finished if r.dataset.name == newest][-R.MAX_COMPARE:]
    top = st.container()  # the figures; presenter mode: the choice of runs comes after them
    below = st.container() if ctx.present else top
    with below:
        picked = st.multiselect(f"Compare runs (2 to {R.MAX_COMPARE})", names, key="tr_compare",
                                max_selections=R.MAX_COMPARE)
    with top:
        compare_figures(picked)


def compare_figures(picked: list) -> None:
    runs, others = R.compatible([store.runs[n] for n in picked])
    if others:
        st.warning("Only runs on the same dataset can be compared; left out: "
                   + ", ".join(ui.quote_user(r.name) for r in others) + ".")
    if len(runs) < 2:
        st.info("Pick at least two finished runs to compare them, or press **🧪 β sweep** above.")
        return
    if len({r.model_cfg.likelihood for r in runs}) > 1:
        st.warning("These runs use different decoder likelihoods. Bernoulli cross-entropy and the unit-variance "
                   "Gaussian's ½‖x − x̂‖² are on different scales, and neither is a normalised log-likelihood here "
                   "(cross-entropy on grey pixels; a Gaussian term without its constant), so compare −ELBO, "
                   "reconstruction and KL only within one likelihood. The Gaussian's small reconstruction term also "
                   "acts like a larger β: see 'The noise level is a hidden β' in the configuration.")
    curves = [(r.name, r.history, r.eval_history) for r in runs]
    cmp_alt = "Loss curves of the selected runs: −ELBO, reconstruction and KL against step."
    if ctx.present:
        for size, height in COMPARE_SIZES:  # the one that fits the screen is shown (see PRESENT_SIZES)
            with st.container(key=f"tr_fit_{size}_cmp"):
                draw(FT.compare_loss_curves(curves, font_scale=SCALE, height=height), f"tr_cmp_loss_{size}", cmp_alt)
    else:
        draw(FT.compare_loss_curves(curves, font_scale=SCALE), "tr_cmp_loss", cmp_alt)
    inputs, shared = R.common_inputs(runs)
    draw(FT.compare_reconstructions(inputs, {r.name: r.reconstruct(inputs) for r in runs}, runs[0].dataset.image_shape,
                                    font_scale=SCALE),
         "tr_cmp_recon", "The same eight held-out images reconstructed by each selected run.")
    if not shared:
        st.caption("These runs held out different images (different seeds), so the inputs are the first run's "
                   "held-out images; some were training images for the other runs.")
    rows = R.comparison_rows(runs)
    st.dataframe(rows, hide_index=True, width="stretch", column_config=RUN_COLUMNS)
    st.markdown(R.compare_summary(runs))
    ui.download_csv("⬇️ Comparison table (CSV)", rows, "latent-lab-comparison.csv", key="tr_dl_cmp")


def export_import(cfg) -> None:
    st.markdown("#### Download a run" if VIEW else "#### Export, continue or delete a run")
    names = list(store.runs)
    if names:
        if ss.get("tr_exp_pending") in names:
            ss["tr_exp_run"] = ss.pop("tr_exp_pending")
        if ss.get("tr_exp_run") not in names:
            ss["tr_exp_run"] = names[-1]
        name = st.selectbox("Run", names, key="tr_exp_run")
        run = store.runs[name]
        slug = R.file_slug(name)
        c = st.columns(5)
        with c[0]:
            ui.download_csv("⬇️ Metrics (CSV)", R.metrics_rows(run), f"latent-lab-{slug}-metrics.csv", key="tr_dl_csv")
        c[1].download_button("⬇️ Config (JSON)", data=lambda: R.config_json(run), file_name=f"latent-lab-{slug}.json",
                             mime="application/json", on_click="ignore", key="tr_dl_json")
        c[2].download_button("⬇️ Checkpoint (.pt)", data=lambda: R.checkpoint_file(run),
                             file_name=f"latent-lab-{slug}.pt", mime="application/octet-stream", on_click="ignore",
                             key="tr_dl_ckpt", disabled=run.step == 0 and run.source != "checkpoint",
                             help="The weights as they are now, with the config and the loss history.")
        if not VIEW and c[3].button("⏩ Continue training it", key="tr_continue", disabled=not run.finished or cfg is None,
                       help="A new run that starts from these weights, with the training settings above and the "
                            "current β (the optimiser starts afresh)."):
            try:
                store.continue_from(name, replace(cfg[2], beta=float(ss.get("tr_beta", 1.0))))
                st.rerun()
            except ValueError as exc:
                st.error(f"Could not continue: {exc}")
        if not VIEW and c[4].button("🗑️ Delete", key="tr_delete"):
            store.remove(name)
            publish_shared_models()
            st.rerun()
    if VIEW:
        return
    st.markdown("#### Load a checkpoint")
    up = st.file_uploader("A .pt file saved by '⬇️ Checkpoint' (checked and loaded safely, weights only)",
                          type=["pt"], key="tr_ckpt_up")
    if up is not None and ss.get("tr_ckpt_id") != up.file_id:
        ss["tr_ckpt_id"] = up.file_id
        try:
            ckpt = load_checkpoint(up)
            ds = R.dataset_for_checkpoint(ckpt, cfg[0] if cfg else ctx.dataset, load_dataset)
            run = store.add_checkpoint(ckpt, ds, up.name)
            publish_shared_models()
            where = " It is also listed on the other pages that explore models." if ds.name in DATASETS else ""
            ss["tr_ckpt_msg"] = ("success", f"Loaded {ui.quote_user(run.name, 60)} ({run.model_cfg.kind.upper()}, "
                                            f"latent {run.model_cfg.latent_dim}) for {plain(ds.name)}. Compare it above, or "
                                            f"select it under Export and press ⏩ Continue training it.{where}")
            ss["tr_exp_pending"] = run.name
            st.rerun()  # list it in the table, the comparison and the export menu above
        except (CheckpointError, ValueError) as exc:
            ss["tr_ckpt_msg"] = ("error", f"{plain(exc)} Nothing was changed: the current run is untouched.")
    msg = ss.get("tr_ckpt_msg")
    if msg:
        (st.success if msg[0] == "success" else st.error)(msg[1])


NEG_ELBO = (r"-\mathrm{ELBO}(x) = \underbrace{\mathbb{E}_{q(z\mid x)}\big[-\log p(x\mid z)\big]}_{\text{reconstruction}}"
            r" + \underbrace{\mathrm{KL}\big(q(z\mid x)\,\|\,p(z)\big)}_{\text{KL}}")


def links_box() -> None:
    """This session's two links: its own (brings the runs back; keep it private) and a read-only one to share."""
    base = st.context.url or ""
    with st.expander("🔗 Your runs come back: links to them"):
        st.markdown(
            f"Your runs are saved on this server as they train (every {P.SAVE_INTERVAL_S:g} s or so, and whenever "
            "one pauses, stops or finishes). This page's address carries their link (`runs=…`): reload the page, open "
            "the address again after closing the browser, or come back after the server restarted, and they are "
            "here again (a run that was training comes back paused at its last save: press ▶️ Resume). **Keep this "
            "link to yourself**: whoever has it can pause, stop, reset, delete and steer your runs.")
        st.code(f"{base}?runs={store.owner}", language=None)
        st.markdown("**A read-only link to share** (with a classmate or a lecturer): it shows these runs as they "
                    "were last saved, to look at, compare, replay and download; it cannot start, stop, reset, steer "
                    "or delete anything, and the runs' own link cannot be worked out from it.")
        st.code(f"{base}?view={P.view_id(store.owner)}", language=None)
        st.caption(f"The server keeps at most {store.max_runs} runs per link, and deletes the oldest finished runs "
                   "first when its run folder is full (the page then says which). Runs trained on an uploaded "
                   "dataset are not saved (the upload is not kept).")


def runs_section(cfg) -> None:
    if not ctx.present:  # (presenter mode: the scene bar names the scene)
        st.subheader("📊 Runs and comparison")
    if store.saving_off and not VIEW:
        st.warning(store.saving_off)
    if not ctx.present and not VIEW and store.owner:
        links_box()
    if ctx.present and len(store.finished_runs()) < 2:
        # The scene's key formula until two runs can be compared (presenter convention): runs trained with
        # different β are compared by the held-out −ELBO, which has no β in it.
        st.latex(NEG_ELBO)
    if not store.runs:
        st.info("No runs are saved under this view link." if VIEW else
                "Every run you train (or checkpoint you load) is kept here, to compare, export or continue, and "
                "saved on the server: this page's address brings it back after a reload.")
    elif ctx.present:  # the comparison's figures first; the table, export and import tucked away
        comparison()
        with st.expander("📊 All runs, export and import"):
            st.dataframe(R.comparison_rows(list(store.runs.values())), hide_index=True, width="stretch",
                         column_config=RUN_COLUMNS)
            export_import(cfg)
        return
    else:
        st.dataframe(R.comparison_rows(list(store.runs.values())), hide_index=True, width="stretch",
                     column_config=RUN_COLUMNS)
        if any(r.state == "training" for r in store.runs.values()):
            # (the table is drawn with the page, not by the live view's redraws: a run's steps stood at 32 here
            # while the live view said 253)
            st.caption("A run that is training shows its steps and β as they were when this table was drawn; "
                       "the live view above shows them as they are now. Its held-out numbers appear when it ends.")
        comparison()
    export_import(cfg)


# ---- the page ------------------------------------------------------------------------------------

@st.cache_data(max_entries=4, show_spinner=False)
def shipped_noise(dataset: str):
    """σ and μ spread of the shipped β = 0 VAE (16-D) on its held-out images (None if it is missing)."""
    try:
        e = ui.pretrained(dataset, "vae", 0.0, 16)
        return R.noise_scales(e.model, load_dataset(dataset).x[e.val_idx])
    except Exception:  # noqa: BLE001 (a missing or unreadable asset: the answer then says less)
        return None


def own_beta0_runs() -> list:
    """Finished VAE runs of this session trained with β = 0 throughout, with their noise on held-out images."""
    out = []
    for r in store.finished_runs():
        if r.is_vae and r.step > 0 and all(b == 0 for _, b in r.beta_changes):
            key = ("noise", r.step)
            if key not in r.cache:
                r.cache[key] = R.noise_scales(r.model, r.val_x())
            out.append((r.name, r.cache[key]))
    return out


def beta0_answer() -> str:
    """The self-check answer on β = 0: the mechanism, with σ measured on the shipped model and own runs."""
    def measured(ns) -> str:
        return (f"the median σ_j(x) over {ns.n} held-out images is between {ns.sigma_median.min():.5f} and "
                f"{ns.sigma_median.max():.5f} in every dimension (largest single value {ns.sigma_max.max():.3f}), while "
                f"the means μ_j(x) spread with standard deviations {ns.mu_sd.min():.1f} to {ns.mu_sd.max():.1f}")
    txt = ("With β = 0 the KL term has weight 0, and with it goes its −log σ² part, the only term in the loss that "
           "grows as σ shrinks. The reconstruction term only gains from less noise, so the encoder switches the "
           "noise off (σ → 0) and the model is a plain autoencoder: the −log σ² part is what stops this at β > 0.")
    ns = shipped_noise(ctx.dataset_name)
    if ns is not None:
        txt += f" Measured in the shipped β = 0 VAE ({ctx.dataset_name}, 16-D): {measured(ns)}."
    for name, own in own_beta0_runs()[-2:]:
        txt += f" In your run {ui.quote_user(name)}: {measured(own)}."
    txt += (" Nothing pulls the codes towards N(0, I) either, so they sit wherever reconstruction puts them "
            "(compare their standard deviations with the prior's 1), and decoding z ~ N(0, I) lands where the "
            "decoder was never trained. The KL term is what makes the prior a good place to sample from.")
    return txt


def objective() -> None:
    st.latex(VAE_OBJECTIVE_LATEX)
    st.markdown(
        "The **reconstruction** term asks the decoder to rebuild x from a code z sampled from the encoder's q(z|x); "
        "the **KL** term pulls each q(z|x) towards the prior p(z) = N(0, I), and **β** weighs the two. "
        + ("Below: the shared runs' terms, as they were last saved." if VIEW else
           "Press **Start** to train a real PyTorch model on this server and watch both terms, then move **β** at "
           "any time."))
    with st.expander("More about this loss and the live view"):
        st.markdown(
            "Training lowers this loss on batches of images, in nats per image. With β = 1 it is the negative ELBO "
            "(for the Gaussian likelihood, up to the constant D/2·log 2π that the code drops). A larger β (the β-VAE of "
            "Higgins et al., 2017) trades sharper reconstructions for codes closer to the prior. A change of β takes "
            "effect at the next step, without a restart. The charts redraw twice a second (less often when many "
            "students train at once).")


scene = ui.scenes("tr", [
    ("The objective", "A VAE minimises reconstruction + β·KL. Press Start, then go to the next scene."),
    ("Train live", "Watch each term fall; raise β and see KL drop, reconstruction rise and dimensions collapse."),
    ("Replay the timeline", "Press Play: the latent map organises itself while the reconstructions sharpen."),
    ("Compare a β sweep", "β = 0, 0.5, 1, 4 with the same seed: −ELBO, KL and active units side by side."),
])
show = (lambda i: True) if not ctx.present else (lambda i: i == scene)

if VIEW and not store.lease_notice:  # (a second tab on this runs= link: the notices say why)
    st.info("👀 **Read-only view.** These runs were shared with you by a view link: you can look at them, compare "
            "them, replay their timelines and download them, but not start, pause, stop, reset or delete them, nor "
            "change β. To train your own, open the training page without `view=` in the address.")
_msg = ss.get("tr_link_msg")
if _msg:
    (st.error if _msg[0] == "error" else st.info)(_msg[1])
for _err in restore_errors:
    st.error(_err)
cfg = None if VIEW else configuration()
if not VIEW:
    publish_shared_models()
if show(0):
    objective()
scroll_here()
if not ctx.present:  # (presenter mode: the scene bar names the scene)
    st.subheader("🔴 Live training")
if ctx.present and show(1) and store.active is None:
    st.latex(VAE_OBJECTIVE_LATEX)  # the scene's key formula until a run draws its charts (presenter convention)
if not ctx.present or show(1):
    live_section("full" if show(1) else "compact", cfg)
if show(2):
    timeline_section()
if show(3):
    runs_section(cfg)
if ctx.present and not show(1):
    live_section("compact", cfg)  # below the scene's figure: keeps a run training, and its buttons at hand

ui.self_check("tr", [
    ("During a run with β = 1, you raise β to 8. What happens to the KL curve, the reconstruction curve and the "
     "number of active units?",
     "The KL now costs eight times as much, so the optimiser lowers it: the KL curve drops after the dashed line, "
     "the reconstruction term rises (blurrier outputs), and a dimension whose mean μ_j(x) stops varying over the "
     "held-out images (Var_x(μ_j) ≤ 0.01, Burda et al., 2016) is marked collapsed, so the active-unit count can "
     "fall. The β sweep shows the same ordering: larger β, lower KL, higher reconstruction."),
    ("Right after you raise β, the total loss jumps up. Did the model get worse?",
     "No. The total is reconstruction + β·KL, and the same KL is simply weighted more from that step on. To compare "
     "runs with different β, use the held-out −ELBO (reconstruction + KL), which does not depend on β: that is "
     "what the comparison table reports."),
    ("With β = 0, reconstructions look sharp. Why do the samples from N(0, I) look poor?", beta0_answer()),
])
