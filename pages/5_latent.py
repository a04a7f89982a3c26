"""Latent space explorer: 2-D maps of a trained model's codes (raw, PCA, t-SNE), selection and
nearest neighbours, the decoded manifold, interpolation, traversals, and AE against VAE."""
from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

from core import ui

ctx = ui.page("Latent space explorer", "🗺️",
              "The encoder turns every image into a point, its code, and the decoder turns any point back into an "
              "image. Images the model treats as similar get nearby codes, so the map below groups the digits although "
              "the model never saw a label.")
url_errors = st.container()  # invalid URL values of this page's widgets are reported here, at the top
# On a fresh server, loading PyTorch and the model takes a few seconds before anything else can be drawn:
# say so at once, so the page is never blank without a message (cleared once the map's own message shows).
loading = st.empty()
loading.info("⏳ Loading the model and encoding the images: the map appears here in a few seconds.")
ui.configure_torch()

from core import explore, latent  # noqa: E402  (after configure_torch: one intra-op thread)
from core import figures as F  # noqa: E402
from core.checkpoints import CheckpointError, load_checkpoint  # noqa: E402
from core.data import DATASETS  # noqa: E402
from core.figures import latent as LF  # noqa: E402
from core.figures.diagram import image_strip  # noqa: E402

ss = st.session_state


def stop() -> None:
    """End the run, after reporting invalid URL values (they are found as widgets are created)."""
    loading.empty()
    with url_errors:
        ui.show_url_errors()
    st.stop()

ds = ctx.dataset
N = ds.n
CLASS_NAMES = ds.class_names

SOURCES = {"zoo": "Pretrained model", "run": "A run from the training page", "upload": "Upload a checkpoint (.pt)"}
KINDS = {"vae": "VAE", "ae": "Autoencoder"}
MAPS = {"raw": "Raw latent (z₁, z₂)", "tsne": "t-SNE", "pca": "PCA"}
AE_SAMPLING = {"fit": "a Gaussian fitted to its codes", "prior": "N(0, I), like the VAE"}
MAX_TRAVERSAL_ROWS = 16
SELECT_CONFIG = {**ui.PLOTLY_CONFIG, "modeBarButtonsToRemove": []}  # keep box and lasso select


# ---- cached computations (pure functions of the model identity and the parameters) ---------------

@st.cache_data(max_entries=16, show_spinner=False)
def codes_of(model_key: str, dataset: str, _model, _x) -> explore.Codes:
    return explore.encode_dataset(_model, _x)


@st.cache_data(max_entries=16, show_spinner=False)
def reconstructions_of(model_key: str, dataset: str, _model, _mu) -> np.ndarray:
    return explore.decode(_model, _mu)


@st.cache_data(max_entries=16, show_spinner=False)
def plane_of(model_key: str, dataset: str, method: str, seed: int, _mu) -> explore.Plane:
    return explore.latent_plane(_mu, seed, method)


@st.cache_resource(show_spinner=False)
def tsne_store() -> latent.LayoutStore:
    """Finished t-SNE maps (layout and openTSNE embedding), shared by every session."""
    return latent.LayoutStore(max_entries=12)


@st.cache_resource(show_spinner=False)
def tsne_jobs() -> explore.TsneJobs:
    """t-SNE runs in background threads, one per (model, dataset, parameters), shared by every
    session: a class opening the same view starts one run, not thirty."""
    return explore.TsneJobs(max_running=1)


@st.cache_data(max_entries=32, show_spinner=False)
def _tsne_transform(args: tuple, path_key: str, _emb, _path) -> np.ndarray:
    from core.embed import tsne_transform
    return tsne_transform(_emb, _path)


def tsne_path(args: tuple, path_key: str, path: np.ndarray) -> np.ndarray | None:
    """``path`` placed on the finished t-SNE map ``args`` by openTSNE's transform; None when that map's
    embedding is not in the store (the page then places the path approximately)."""
    hit = tsne_store().get(args)
    return None if hit is None or hit[1] is None else _tsne_transform(args, path_key, hit[1], path)


@st.cache_data(max_entries=24, show_spinner=False)
def map_trust(model_key: str, dataset: str, map_id: str, _mu, _xy, n: int = 1000) -> float:
    """Trustworthiness (k = 10) of a map on a fixed random subset of n points."""
    from core.embed import trustworthiness
    idx = np.random.default_rng(0).choice(len(_mu), size=min(n, len(_mu)), replace=False)
    return trustworthiness(_mu[idx], _xy[idx], k=10)


@st.cache_data(max_entries=16, show_spinner=False)
def prior_study(model_key: str, dataset: str, mode: str, seed: int, n: int, _model, _mu, _recon):
    fit = _mu if mode == "fit" else None
    z = explore.sample_codes(n, _mu.shape[1], seed, fit_to=fit)
    imgs = explore.decode(_model, z)
    return z, imgs, explore.off_manifold(imgs, _recon, seed=seed)


@st.cache_resource(max_entries=4, show_spinner=False)
def snapshot(model_key: str, _model):
    """A frozen copy of a training-page model (core.training.frozen_copy): this page never touches the
    model being trained."""
    from core.training import frozen_copy
    return frozen_copy(_model)


def weights_key(model) -> str:
    h = hashlib.sha1()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def draw_selectable(fig, key: str, alt: str, modes=("points", "box", "lasso"), **kw):
    if ctx.present:
        fig = F.with_font_scale(ui.go_copy(fig), ui.PRESENT_SCALE)
    return st.plotly_chart(fig, key=key, on_select="rerun", selection_mode=modes, config=SELECT_CONFIG,
                           alt=alt, width="stretch", **kw)


def ascii_name(text: str) -> str:
    """A file-name part of ASCII letters, digits and hyphens only."""
    return "".join(ch if ch.isascii() and ch.isalnum() else "-" for ch in str(text)).strip("-").lower() or "data"


def class_name(y: int) -> str:
    return CLASS_NAMES[int(y)] if CLASS_NAMES and 0 <= int(y) < len(CLASS_NAMES) else str(int(y))


@st.cache_data(max_entries=16, show_spinner=False)
def activity_on_all(model_key: str, dataset: str, _model, _x):
    """core.units' activity of a run or an upload on all images (they have no recorded held-out split)."""
    from core import units
    return units.unit_activity(_model, _x)


def unit_activity():
    """The one active-unit count (Burda et al., 2016) for this model: a pretrained model's on its held-out
    split (``ui.activity``, the count every page shows), another model's on all images of the dataset."""
    if source == "zoo":
        return ui.activity(ctx.dataset_name, kind, float(beta), int(latent_choice))
    return activity_on_all(model_key, ds.name, model, np.array(ds.x))  # a writable copy for torch


def traversal_activity_text(act, barely: list[int]) -> str:
    """Which dimensions are active (core.units), which barely, with their Var_x(μ_j); markdown."""
    where = (f"{act.n_images:,} held-out images" if source == "zoo" else
             f"all {act.n_images:,} images (this model has no recorded held-out split)")
    txt = (f"**{act.count} of {act.latent_dim} dimensions are active**: by Burda et al.'s (2016) criterion a dimension "
           f"is active when its mean $\\mu_j(x)$ varies over the images, $\\mathrm{{Var}}_x(\\mu_j) > {act.threshold:g}$ "
           f"(on {where}).")
    if barely:
        vs = ", ".join(f"{act.var_mu[j]:.3f}" for j in barely)
        txt += (f" But {explore.dim_list(barely)} {'is' if len(barely) == 1 else 'are'} only barely active "
                f"($\\mathrm{{Var}}_x(\\mu_j)$ = {vs}, at most {explore.BARELY_ACTIVE:g}): whatever the image, "
                f"{'its mean stays' if len(barely) == 1 else 'their means stay'} close to one value, so "
                f"{'its row changes' if len(barely) == 1 else 'their rows change'} the image little.")
    if act.collapsed:
        txt += (f" {explore.dim_list(act.collapsed)} {'has' if len(act.collapsed) == 1 else 'have'} **collapsed** "
                "(not active): whatever the image, the encoder gives it nearly the same mean there, so the dimension "
                "tells the images apart hardly at all.")
    elif not barely:
        txt += " None has collapsed."
    return txt


@st.cache_data(max_entries=8, show_spinner=False)
def aggregate_of(model_key: str, dataset: str, _mu, _logvar) -> explore.AggregateSpread:
    return explore.aggregate_spread(_mu, _logvar)


def kl_guarantee_text(sp: explore.AggregateSpread, k: int) -> str:
    """What the KL term guarantees and what it does not, with this VAE's measured spread (markdown)."""
    v = sp.var_q
    var_txt = (" and ".join(f"{x:.2f}" for x in v) if len(v) <= 3 else f"from {v.min():.2f} to {v.max():.2f}")
    return (
        "**What the KL term guarantees, and what it does not.** It pulls each image's q(z|x) towards N(0, I), so on "
        "average the codes stay where prior samples fall. It does **not** make the codes of all images together, the "
        "aggregate posterior $q(z) = \\mathbb E_x\\, q(z\\mid x)$, equal to the prior. Measured on this VAE "
        f"(all {sp.n:,} images, one code z ~ q(z|x) each): the variance of q(z) along "
        + ("each axis is " if k <= 3 else f"its {k} axes runs ")
        + f"{var_txt} (the prior's: 1), and {sp.beyond:.1%} of the codes lie farther than {sp.radius:.2f} from the "
        f"origin, where {sp.prior_beyond:.0%} of prior samples do. Holes and clusters remain, and a prior sample "
        "that lands in a hole decodes to a blend: the ⚠️ Limits of VAEs page measures this prior hole.")


# ---- configuration: the model and the map --------------------------------------------------------

with ui.config_container("Model and map"):
    c1, c2, c3, c4 = st.columns([1.4, 1, 1, 1])
    with c1:
        source = ui.select("Model", "ls_src", list(SOURCES), format_func=SOURCES.get,
                           help="A pretrained model ships with the app; a run comes from 🏋️ Train a VAE live.")
    with c2:
        kind = ui.select("Kind", "ls_kind", list(KINDS), format_func=KINDS.get, disabled=source != "zoo")
    with c3:
        beta = ui.select("β (VAE)", "ls_beta", [0.5, 1.0, 4.0], default=1.0, format_func=lambda b: f"{b:g}",
                         disabled=source != "zoo" or kind == "ae",
                         help="Weight of the KL term the VAE was trained with.")
    with c4:
        latent_choice = ui.select("Latent dimensions", "ls_dim", [2, 16], default=2, disabled=source != "zoo",
                                  help="2: the latent space is the map itself. 16: better images, shown through PCA or t-SNE.")

    model = cfg = None
    model_key = ""
    model_note = ""
    if source == "zoo":
        entry = ui.run_safely(lambda: ui.pretrained(ctx.dataset_name, kind, float(beta), int(latent_choice)),
                              "The pretrained model could not be loaded", "Try another model, or reinstall the app's assets.")
        if entry is not None:
            model, cfg = entry.model, entry.config
            model_key = f"zoo:{entry.spec.filename}"
            ev = entry.evaluation or {}
            name = "autoencoder" if kind == "ae" else f"VAE (β = {float(beta):g})"
            model_note = (f"Pretrained {name} with a {cfg.latent_dim}-D latent, trained on {ctx.dataset_name}"
                          + (f"; on held-out images, reconstruction term {ev['recon']:.1f} nats per image"
                             + (f", KL term {ev['kl']:.2f} nats" if kind == "vae" and "kl" in ev else "")
                             + (" (Bernoulli cross-entropy on grey pixels: not a normalised log-likelihood)"
                                if cfg.likelihood == "bernoulli" else " (a Gaussian's, without its constant D/2·log 2π)")
                             if "recon" in ev else "") + ".")
    elif source == "run":
        runs = ss.get("shared_models") or {}
        valid = {}
        if isinstance(runs, dict):
            for name, item in runs.items():
                if isinstance(item, (tuple, list)) and len(item) == 3 and hasattr(item[0], "decode"):
                    valid[str(name)] = item
        if not valid:
            st.info("No runs yet. Train a model on the training page; it will appear here. "
                    "Meanwhile, pick *Pretrained model* above.")
            try:
                st.page_link("pages/4_train.py", label="Train a VAE live", icon="🏋️")
            except StreamlitPageNotFoundError:  # the training page is not in the navigation
                pass
        else:
            run_name = st.selectbox("Run", list(valid), key="ls_run")
            m, rcfg, rds = valid[run_name]
            model_key = f"run:{run_name}:{weights_key(m)}"
            model, cfg = snapshot(model_key, m), rcfg
            model_note = (f"Run {ui.quote_user(run_name)}: {rcfg.kind.upper()} with a {rcfg.latent_dim}-D latent, "
                          f"trained on {ui.quote_user(rds)}.")
    else:
        up = st.file_uploader("Checkpoint saved by Latent Lab (.pt)", type=["pt"], key="ls_upload",
                              help="The training page's 'Download checkpoint' button makes one.")
        if up is not None:
            held = ss.get("ls__upload")
            if not held or held[0] != up.file_id:
                try:
                    data = up.getvalue()
                    ck = load_checkpoint(up, device="cpu")
                    for p in ck.model.parameters():
                        p.requires_grad_(False)
                    held = (up.file_id, hashlib.sha1(data).hexdigest()[:16], ck, up.name)
                    ss["ls__upload"] = held
                except CheckpointError as exc:
                    ss.pop("ls__upload", None)
                    held = None
                    st.error(f"This checkpoint cannot be used: {exc}")
            if held:
                _, sha, ck, fname = held
                model, cfg = ck.model, ck.config
                model_key = f"upload:{sha}"
                model_note = (f"Uploaded {ui.quote_user(fname)}: {cfg.kind.upper()} with a {cfg.latent_dim}-D latent.")
        else:
            st.info("Upload a `.pt` checkpoint saved by Latent Lab's training page.")

    m1, m2, m3, m4 = st.columns([1.4, 1, 1, 1])
    with m1:
        method = ui.select("Map", "ls_map", list(MAPS), format_func=MAPS.get,
                           help="Raw: the latent plane itself (2-D latents only). PCA: a linear projection. "
                                "t-SNE: a nonlinear map that keeps neighbourhoods.")
    with m2:
        perplexity = ui.slider("t-SNE perplexity", "ls_perp", 5, 100, 30, step=5,
                               help="Roughly how many neighbours each point tries to keep close.")
    with m3:
        n_iter = ui.slider("t-SNE iterations", "ls_iter", 250, 1000, 500, step=50,
                           help="After 250 early-exaggeration iterations.")
    with m4:
        tseed = ui.number("t-SNE seed", "ls_tseed", 0, 9999, 0, step=1,
                          help="Another seed gives another layout; neighbourhoods should stay.")

if model is None:
    stop()
if cfg.input_dim != ds.dim:
    h, w = ds.image_shape
    other = [d for d in DATASETS if d != ctx.dataset_name]
    st.error(f"This model takes images of {cfg.input_dim} pixels, but the dataset in the sidebar "
             f"({ctx.dataset_name}) has {h}×{w} = {ds.dim} pixels. Switch the sidebar's dataset"
             + (f" (e.g. to {other[0]})" if other else "") + " or choose another model.")
    stop()
if cfg.latent_dim < 2:
    st.error("This model has a 1-D latent space; the explorer needs at least 2 dimensions. Choose another model.")
    stop()

model.eval()
K = cfg.latent_dim
IS_VAE = cfg.kind == "vae"
with st.spinner(f"Encoding the {N:,} images…"):
    codes = codes_of(model_key, ds.name, model, ds.x)
MU = codes.mu
if not np.all(np.isfinite(MU)):
    st.error("This model produces NaN or infinite codes for this dataset (its training diverged). Choose another model.")
    stop()
scores, score_kind = explore.dimension_scores(codes)
if not ctx.present:  # (presenter mode: notes stay out of the scenes; the model is in 'Model and map')
    st.caption(model_note)

# ---- selections made on charts in the previous run -------------------------------------------------

def _points(key: str):
    ev = ss.get(key)
    try:
        return list(ev["selection"]["points"]) if ev else []
    except (KeyError, TypeError):
        return []


sel_points = _points("ls_mapsel")
sel_idx = explore.selected_indices(sel_points, N)
sig = ",".join(map(str, sel_idx))
if sel_idx and ss.get("ls__last_sel") != sig:
    ss["ls_idx"] = sel_idx[0]
ss["ls__last_sel"] = sig

ui.clamp_state("ls_idx", 0, N - 1)
ui.clamp_state("ls_a", 0, N - 1)
ui.clamp_state("ls_b", 0, N - 1)

# ---- presenter scenes -----------------------------------------------------------------------------

SCENES = [
    ("Every image is a point", "The encoder turns each image into a code. Points close together are images "
                                "the model treats as similar; click one to see its neighbours."),
    ("Decode any point", "The decoder turns any point of the latent plane into an image. A regular grid of "
                         "points shows what the model has learnt where."),
    ("Walk between two images", "Decode the codes on the way from image A to image B."),
    ("What each dimension does", "Move one latent coordinate, hold the others: a dimension whose mean barely "
                                 "varies over the images (barely active or collapsed) changes the image little."),
    ("Autoencoder against VAE", "Sample codes and decode them: the AE's codes leave holes where samples land; "
                                "the KL term pulls the VAE's codes towards where prior samples fall."),
]
scene = ui.scenes("ls", SCENES)
show = ui.scene_filter(scene)
show_map = show(0)

# ---- 1. the map --------------------------------------------------------------------------------

#: Presenter mode: the height a scene's main figure is built for, 559 px once scaled for presenter mode. Scenes
#: 1 to 4 draw it into a ``fit_box``, which it fills whatever the screen; scene 5's two maps keep this height.
PRESENT_FIG_HEIGHT = 430
FIG_H = (lambda h: PRESENT_FIG_HEIGHT) if ctx.present else (lambda h: h)
#: Presenter mode: a scene's main figure starts 126 px down the screen (the collapsed configuration and the
#: title row above it), and its box reaches to PRESENT_FIG_TOP px less than the screen's height: 580 px of
#: 1280x720 and 940 px of 1920x1080 (a fixed 559 px left the lower half of 1080 empty; issue 21). The height is
#: CSS (the server does not know the screen), so each figure is drawn once and stretches into its box
#: (``st.plotly_chart(height="stretch")`` fills a container of fixed height; the CSS sets that height).
PRESENT_FIG_TOP = 140
STRETCH = {"height": "stretch"} if ctx.present else {}
if ctx.present:
    st.html("<style>[data-testid='stLayoutWrapper']:has(> [class*='st-key-ls_fit_']) "
            f"{{flex: 0 0 calc(100vh - {PRESENT_FIG_TOP}px) !important; height: calc(100vh - {PRESENT_FIG_TOP}px) "
            "!important;} [class*='st-key-ls_fit_'] {height: 100% !important; max-height: none !important;}</style>")


def fit_box(name: str):
    """Where a scene's main figure goes: in presenter mode a box as high as the screen allows (see
    PRESENT_FIG_TOP; draw the figure with ``**STRETCH``), else a plain container."""
    if not ctx.present:
        return st.container()
    return st.container(key=f"ls_fit_{name}", height=round(PRESENT_FIG_HEIGHT * 1.3), border=False)


def legend_at_bottom(fig):
    """Presenter mode: a map's legend at the bottom of its figure, whatever height the figure is stretched to
    (placed in plot units, it would float the further below the x-axis the taller the screen), four entries
    to a row (three to a row took five rows of 720; at five, 'neighbours' ran into the next entry's symbol)."""
    if ctx.present:
        fig.update_layout(legend=dict(yref="container", y=0, yanchor="bottom", entrywidthmode="fraction",
                                      entrywidth=0.25))
    return fig


#: Presenter mode, scenes 3 and 4: images per line of a strip of images. Two lines per strip (10 steps: 4
#: lines of 5) make two strips about as high as they are wide, so they fill the figure's box beside the controls.
WALK_PER_LINE = (lambda n_steps: -(-n_steps // 2))
#: Presenter mode, scenes 3 and 4: the figure's column and the controls' column. The figure, about as high as it
#: is wide, needs a column as wide as its box is high on a tall screen (940 px of 1080) to fill it.
PRESENT_COLS = [2.4, 1]

#: Points a map draws unless asked for all: a 5,000-point SVG map costs the browser about a second of
#: CPU, and the cost grows with the points; 1,500 (under a third) keep every class's cluster readable
#: (issue 21: the page draws completely within 1.5 s).
MAP_POINTS = 1500

if show_map and not ctx.present:  # (presenter mode: the scene bar says this; the map comes first)
    st.subheader("1. The map: every image is a point")
    st.markdown(
        f"Each of the {N:,} images of **{ctx.dataset_name}** is encoded to its code "
        + (r"$\mu(x)$, the centre of $q(z\mid x)$" if IS_VAE else r"$z = f(x)$")
        + f" ({K} numbers) and drawn as one dot, coloured by its true digit"
        + (f" (at first a random {MAP_POINTS:,} of them, every digit in proportion: switch on *Draw all* beside the "
           "map to see every one)" if N > MAP_POINTS else "")
        + ". The model never saw the labels. "
          "Hover a dot for its index; **click** it (or draw a box or lasso from the toolbar) to inspect it.")
all_points = N <= MAP_POINTS
if show_map:
    map_left, map_right = st.columns([1.75, 1])
    with map_left:
        map_wait = st.empty()  # says the map is coming while the sections below compute (cleared when it is drawn)
        map_wait.info(f"⏳ Drawing the map of {N:,} codes…")
    with map_right:
        idx = int(ui.number("Selected image (index)", "ls_idx", 0, N - 1, 0, step=1,
                            help="Or click a point on the map."))
        k = int(ui.slider("Nearest neighbours k", "ls_k", 1, 20, 8, step=1))
        all_points = all_points or ui.toggle(
            f"Draw all {N:,} codes", "ls_allpts", False,
            help=f"The map draws {MAP_POINTS:,} of them at first (a random sample, every class in proportion): "
                 "each point is drawn by the browser, and all of them take it about a second longer. "
                 "Neighbours are always found among all the codes.")
loading.empty()  # (the map's own message has taken over)
map_points = None if all_points else latent.map_subset(ds.y, MAP_POINTS, seed=0)

want_tsne = method == "tsne" or (method == "raw" and K != 2)
RAW_NOTE = (f"This latent space has {K} dimensions, so it cannot be drawn as it is: the map shows t-SNE instead "
            "(choose PCA for a linear view).") if method == "raw" and K != 2 else None
if show_map and RAW_NOTE and not ctx.present:  # (presenter mode: below the map, which fills the screen)
    with map_left:
        st.caption(RAW_NOTE)
if method == "raw" and K == 2:
    map_xy, map_axes, map_title, map_id = MU, ("z₁", "z₂"), "Raw latent codes", "raw"
else:
    pca_plane = plane_of(model_key, ds.name, "pca", 0, MU)
    pca_xy = pca_plane.to_plane(MU)
    ev1, ev2 = pca_plane.explained
    pca_axes = (f"PC 1 ({ev1:.0%} of variance)", f"PC 2 ({ev2:.0%})")
    map_xy, map_axes, map_title, map_id = pca_xy, pca_axes, "PCA of the codes", "pca"
tsne_args = (model_key, ds.name, int(perplexity), int(n_iter), int(tseed))
tview = latent.TsneView()
if want_tsne:
    tview = latent.tsne_view(tsne_store(), tsne_jobs(), tsne_args, MU, int(tseed), float(perplexity), int(n_iter),
                             start=show_map)
    if tview.error:
        st.error(f"t-SNE could not run on these codes ({tview.error}). The map shows PCA instead; "
                 "choose PCA, or another model.")
    if tview.layout is not None:
        map_xy, map_axes, map_id = tview.layout, ("t-SNE 1", "t-SNE 2"), "tsne"
        map_title = f"t-SNE of the codes (perplexity {int(perplexity)}, seed {int(tseed)})"
tsne_pending = tview.pending

if not show_map:  # presenter scenes without the map still need the selected image
    idx = int(ss.get("ls_idx", ss.get("_keep_ls_idx") or 0))

# ---- 2. the decoded plane ----------------------------------------------------------------------

plane = plane_of(model_key, ds.name, "auto", 0, MU)
center, scale = explore.grid_frame(plane, IS_VAE)
ax_u, ax_v = plane.axis_names
gb = latent.grid_bounds(center, scale)
(lo_u, lo_v), (hi_u, hi_v) = gb.lo, gb.hi
grid_pick = explore.selected_grid_point(_points("ls_gridsel"))
gsig = repr(grid_pick)
if grid_pick is not None and ss.get("ls__last_grid") != gsig:
    ss["ls_u"], ss["ls_v"] = round(grid_pick[0], 2), round(grid_pick[1], 2)
ss["ls__last_grid"] = gsig
ui.clamp_state("ls_u", lo_u, hi_u)
ui.clamp_state("ls_v", lo_v, hi_v)
point_uv = np.array([ss.get("ls_u", gb.start[0]), ss.get("ls_v", gb.start[1])])

if show(1):
    if not ctx.present:
        st.subheader("2. Decode any point of the latent plane")
    if ctx.present:
        pass  # (the scene bar says what this is; the mosaic comes first)
    elif plane.kind == "raw":
        st.markdown(
            "The latent space is a plane, so every point of it can be decoded. The grid below spaces its points "
            + ("by equal **prior** probability: a regular grid on the unit square, pushed through the inverse CDF "
               r"of $\mathcal N(0,1)$ (Kingma & Welling, 2014, figure 4). Smooth changes from tile to tile show that "
               "nearby codes decode to similar images. Look for tiles that are no clear digit: even a VAE's codes "
               "leave gaps that the prior still samples (section 5 measures this)."
               if IS_VAE else
               "by equal probability under a Gaussian fitted to the autoencoder's codes (an autoencoder has no prior). "
               "Look for tiles that are not digits: codes the encoder never produced."))
    else:
        st.markdown(
            f"This latent space has {K} dimensions, so it has no single picture. Here is a **slice**: the plane "
            f"through the mean code spanned by the two principal directions (PC 1 and PC 2 explain "
            f"{plane.explained[0]:.0%} and {plane.explained[1]:.0%} of the codes' variance); the other "
            f"{K - 2} directions are held at the mean. The grid is spaced by equal probability under a Gaussian "
            "fitted to the codes on this plane.")
    # Presenter mode: the square mosaic gets most of the width, so that on a tall screen it can grow into its
    # box's height (at 1.25 : 1 it was held to 570 px of 1080 by its column's width).
    g1, g2 = st.columns([2.2, 1] if ctx.present else [1.25, 1])
    with g2:
        n_grid = ui.slider("Grid size (n × n)", "ls_grid", 5, 25, 15, step=1)
        u_val = round(float(ui.slider(f"{ax_u}", "ls_u", lo_u, hi_u, gb.start[0], step=gb.step[0])), 2) + 0.0
        v_val = round(float(ui.slider(f"{ax_v}", "ls_v", lo_v, hi_v, gb.start[1], step=gb.step[1])), 2) + 0.0
        point_uv = np.array([u_val, v_val])
        z_point = plane.from_plane(point_uv[None])
        img_point = explore.decode(model, z_point)
        ui.figure(F.image_grid(img_point, ds.image_shape, ncols=1, height=260,
                               title=f"decoded at ({u_val:.2f}, {v_val:.2f})"),
                  key="ls_pointfig", alt=f"The image the decoder makes from the code at {ax_u}={u_val:.2f}, {ax_v}={v_val:.2f}.")
        near_i, near_d = explore.nearest_neighbours(MU, z_point[0], 1)
        st.caption(f"Nearest real code: image #{int(near_i[0])} (a {class_name(ds.y[near_i[0]])}), at distance "
                   f"{near_d[0]:.2f}. Click a tile on the left to jump there; the pink cross marks this point"
                   + (" on the raw map too." if plane.kind == "raw" and method == "raw" else "."))
    with g1:
        u, v, grid_pts = explore.manifold_grid(int(n_grid), center, scale)
        grid_imgs = explore.decode(model, plane.from_plane(grid_pts))
        gfig = LF.manifold_mosaic(grid_imgs, ds.image_shape, u, v, (ax_u, ax_v), marker=point_uv,
                                  title="Decoded " + ("latent plane" if plane.kind == "raw" else "PCA slice"),
                                  height=FIG_H(600))
        with fit_box("grid"):
            draw_selectable(gfig, "ls_gridsel", alt=f"A {int(n_grid)} by {int(n_grid)} mosaic of images decoded on a grid "
                            f"over {ax_u} from {u[0]:.2f} to {u[-1]:.2f} and {ax_v} from {v[0]:.2f} to {v[-1]:.2f}.",
                            modes=("points", "box"), **STRETCH)

# ---- 3. interpolation --------------------------------------------------------------------------

path_xy: dict[str, np.ndarray] = {}
walk_open = False
if show(2):
    if ctx.present:  # (the scene bar says this; the strip comes first, at once)
        walk_box = st.container()
    else:
        st.subheader("3. Walk between two images")
        st.markdown("Pick two images, A and B, and decode the codes on the way from A's code to B's, along a straight "
                    "line and along an arc: do the images in between still look like digits?")
        walk_box = ui.lazy_expander("🚶 Walk from image A to image B: decode the straight and the spherical path",
                                    "ls_walk_open", url_keys=("ls_a", "ls_b", "ls_steps", "ls_showpath"))
    walk_open = ctx.present or walk_box.open  # (computed and drawn only once opened: issue 21)
if walk_open:
    with walk_box:
        if ctx.present:
            # The strip beside its controls, each path wrapped onto two lines: a strip of 2 x 10 images is a
            # short wide band, which at full width left empty bands above and below it in the scene's figure
            # height and pushed the controls off a 1280x720 screen (issue 21).
            # The strip's column as wide as a tall screen lets it grow (at 1.6 : 1 its width held it to 600 px
            # of 1080), so the controls are stacked in the narrower column.
            strip_box, ctl_box = st.columns(PRESENT_COLS, gap="medium")
            i1 = i2 = i3 = i4 = ctl_box
        else:
            strip_box = st.container()
            i1, i2, i3, i4 = st.columns(4)
        with i1:
            a = int(ui.number("Image A (index)", "ls_a", 0, N - 1, min(2, N - 1), step=1))
        with i2:
            b = int(ui.number("Image B (index)", "ls_b", 0, N - 1, min(7, N - 1), step=1))
        with i3:
            n_steps = int(ui.slider("Steps", "ls_steps", 5, 15, 10, step=1))
        with i4:
            show_path = ui.toggle("Draw the paths on a map", "ls_showpath", False,
                                  help="A second map of all the codes: off at first, so the page opens faster.")
        za, zb = MU[a], MU[b]
        lin = explore.lerp(za, zb, n_steps)
        sph = explore.slerp(za, zb, n_steps)
        strips = {"linear": explore.decode(model, lin), "spherical": explore.decode(model, sph)}
        cols = ["A"] + [f"t={t:.2f}" for t in np.linspace(0, 1, n_steps)[1:-1]] + ["B"]
        walk_alt = (f"The {n_steps} images decoded along the linear and along the spherical path from image {a} "
                    f"(a {class_name(ds.y[a])}) to image {b} (a {class_name(ds.y[b])})")
        if ctx.present:
            with strip_box, fit_box("walk"):
                ui.figure(LF.wrapped_strips(strips, ds.image_shape, cols, per_row=WALK_PER_LINE(n_steps),
                                            height=PRESENT_FIG_HEIGHT),
                          key="ls_interp", alt=walk_alt + ", each path on two lines.", **STRETCH)
        else:
            ui.figure(LF.strip_rows(strips, ds.image_shape, col_titles=cols, height=230 if ds.dim > 100 else 200),
                      key="ls_interp", alt=walk_alt + ", one row per path.")
        nl, ns = np.linalg.norm(lin, axis=1), np.linalg.norm(sph, axis=1)
        mid = n_steps // 2
        if not IS_VAE:
            why = ("An autoencoder has no prior, so neither path is the right one; both can cross holes between "
                   "the clusters of codes.")
        elif K > 2:
            why = (f"In {K} dimensions a code drawn from the prior N(0, I) almost always has a norm near √{K} = "
                   f"{np.sqrt(K):.1f}; a straight line cuts through the middle, at norms the prior rarely produces, "
                   "while slerp keeps typical norms (White, 2016).")
        else:
            why = ("In 2-D the prior's mass is not concentrated on a shell, so both paths are reasonable here; the "
                   "difference matters in high dimensions (try a 16-D model).")
        if ctx.present:  # (the long explanation stays out of the scene: issue 21)
            with ctl_box:
                st.markdown(f"A: #{a}, a **{class_name(ds.y[a])}**. B: #{b}, a **{class_name(ds.y[b])}**. Norm of the "
                            f"code halfway: linear {nl[mid]:.2f}, spherical {ns[mid]:.2f}.")
        else:
            st.markdown(
                f"A is image #{a} (a **{class_name(ds.y[a])}**), B is image #{b} (a **{class_name(ds.y[b])}**). "
                f"The **linear** path is $z(t) = (1-t)\\,z_A + t\\,z_B$; the **spherical** one (slerp) swings along "
                f"the arc between their directions. Norm of the code halfway: linear {nl[mid]:.2f}, spherical "
                f"{ns[mid]:.2f} (ends {nl[0]:.2f} and {nl[-1]:.2f}). {why}")
        if show_path:
            paths = {"linear": lin, "spherical": sph}
            if map_id == "raw":
                path_xy = dict(paths)
            elif map_id == "pca":
                path_xy = {name: pca_plane.to_plane(p) for name, p in paths.items()}
            elif map_id == "tsne":
                for name, p in paths.items():
                    placed = tsne_path(tsne_args, f"{name}:{a}:{b}:{n_steps}", p)
                    path_xy[name] = placed if placed is not None else explore.place_by_neighbours(MU, map_xy, p)
            ui.figure(LF.explorer_map(map_xy, ds.y, f"Paths from A to B: {map_title}", map_axes, CLASS_NAMES, subset=map_points,
                                      paths=path_xy, endpoints=(a, b), height=520),
                      key="ls_pathmap", alt=f"The map of {N} codes with the linear and the spherical path from image {a} "
                                            f"(A) to image {b} (B)" + ("" if map_id == "raw" else
                                            ", placed approximately on this 2-D picture of the latent space") + ".")
            if map_id != "raw":
                st.caption("The paths live in the full latent space; this map can only place them approximately.")


# ---- 4. traversals -----------------------------------------------------------------------------

trav_open = False
if show(3):
    if ctx.present:  # (the scene bar says this; the rows come first, at once)
        trav_box = st.container()
    else:
        st.subheader("4. Latent traversals: what each dimension does")
        st.markdown("What does each latent dimension do, and which ones does the model use at all? Decode the "
                    "selected image's code with one coordinate moved at a time.")
        trav_box = ui.lazy_expander("↔️ Move one dimension at a time: a row of decoded images per dimension",
                                    "ls_trav_open")
    trav_open = ctx.present or trav_box.open  # (computed and drawn only once opened: issue 21)
if trav_open:
    with trav_box:
        if ctx.present:  # the rows beside their control, as in scene 3: both fit one screen (issue 21)
            first, trav_ctl = st.columns(PRESENT_COLS, gap="medium")
        else:
            first = trav_ctl = st.container()
        if not show_map:
            with trav_ctl:
                idx = int(ui.number("Start from image (index)", "ls_idx", 0, N - 1, 0, step=1))
        tc, ts = explore.traversal_frame(codes, IS_VAE)
        order = explore.dimension_order(scores)[:MAX_TRAVERSAL_ROWS]
        tz, tt = explore.traversal_codes(MU[idx], order, tc, ts, steps=9, span=3.0)
        timgs = explore.decode(model, tz)
        act = unit_activity() if IS_VAE else None
        barely = set(explore.barely_active(act.var_mu, act.active)) if act is not None else set()

        def row_title(j: int) -> str:
            if score_kind != "kl":
                return f"z{j + 1} · var {scores[j]:.2f}"
            t = f"z{j + 1} · KL {scores[j]:.2f}" if scores[j] >= 0.1 else f"z{j + 1} · KL {scores[j]:.3f}"
            if act is not None and not act.active[j]:
                t += " (collapsed)"
            elif j in barely:
                t += " (barely active)"
            return t

        titles = [row_title(int(j)) for j in order]
        text_box, fig_box = st.container(), st.container()
        if ctx.present:  # the rows first, so they show at projector size; the choice and explanation below them
            fig_box = first
        with text_box:
            st.markdown(
                f"Start from the selected image #{idx} (a **{class_name(ds.y[idx])}**), change **one** coordinate of its "
                "code and keep the others. One row per dimension, "
                + (f"ordered by its average KL divergence from the prior over all {N:,} images, "
                   r"$\mathbb E_x\,\mathrm{KL}(q(z_j\mid x)\,\|\,\mathcal N(0,1))$ in nats. "
                   "Columns run from −3 to +3 prior standard deviations."
                   if IS_VAE else
                   "ordered by the variance of the codes along it (an autoencoder has no KL term). Columns run from −3 to +3 "
                   "standard deviations of the codes, around their mean."))
            if act is not None:
                st.markdown(traversal_activity_text(act, sorted(barely)))
                with st.expander("Why the average KL is not the information a dimension carries"):
                    st.markdown(
                        "The average KL of a dimension is an **upper bound** on the information it carries about the image, "
                        "not that information itself (Hoffman and Johnson, 2016):")
                    st.latex(r"\mathbb E_x\,\mathrm{KL}\big(q(z_j\mid x)\,\|\,p(z_j)\big) = I(x; z_j) + "
                             r"\mathrm{KL}\big(q(z_j)\,\|\,p(z_j)\big),\qquad q(z_j) = \mathbb E_x\, q(z_j\mid x).")
                    st.markdown(
                        "The first part is the mutual information between the image and the code; the second is how far the "
                        "codes of all images together, the *aggregate posterior* q(z_j), sit from the prior. Both are ≥ 0, so "
                        "the KL beside each row over-states the information by the second part. Total average KL: "
                        f"{scores.sum():.2f} nats per image.")
        if ctx.present:
            with trav_ctl:
                st.markdown(f"Image #{idx}, a **{class_name(ds.y[idx])}**. "
                            + (f"{act.count} of {act.latent_dim} dimensions are active." if act is not None else ""))
        with fig_box:
            row_h = 56 if ds.dim > 100 else 44
            if len(order) < K:
                st.caption(f"Showing the {len(order)} most informative of the {K} dimensions.")
            # Presenter mode: a few rows of 9 are a short wide band; each then wraps onto two lines (as in scene 3).
            with fit_box("trav"):
                wrap = ctx.present and len(order) <= 3
                ui.figure(LF.traversal_strips(timgs, ds.image_shape, titles, tt, height=FIG_H(60 + row_h * len(order)),
                                              per_row=WALK_PER_LINE(len(tt)) if wrap else None,
                                              title_every=2 if ctx.present and not wrap else 1),
                          key="ls_trav", alt=f"{len(order)} rows of 9 images: the decoded code of image {idx} with one "
                                             "latent dimension moved from -3 to +3 standard deviations, one row per "
                                             "dimension, most informative first.", **STRETCH)


# ---- 5. AE against VAE -------------------------------------------------------------------------

def draw_comparison():
    """Section 5 (in presenter mode, scene 5 at once; otherwise in an expander computed once opened);
    returns (AE off-manifold share, VAE share) or None."""
    if ctx.present:
        return comparison()
    st.subheader("5. Autoencoder against VAE: sample, then decode")
    st.markdown("An autoencoder has no prior to sample from; a VAE's KL term pulls its codes towards N(0, I). "
                "Sample codes from each, decode them, and count the samples that land off the decoder's manifold.")
    box = ui.lazy_expander("🎲 Sample 500 codes from each model and decode them", "ls_cmp_open", url_keys=("ls_aes",))
    with box:
        return comparison() if box.open else None


def comparison():
    """AE against VAE on the same data and seed; returns (AE off-manifold share, VAE share) or None."""
    cdim = K if K in (2, 16) else 16
    if ctx.present:
        # The two maps with the choice beside them, in a narrow third column (as radio buttons, whose options
        # wrap there), so that the choice is on screen with the maps at 1280x720 (issue 21); the verdict goes
        # under it once measured.
        cols_ = st.columns([1, 1, 0.42], gap="small")
        ctl = cols_[2]
    else:
        ctl = st.columns([1, 2])[0]
    with ctl:
        ae_mode = ui.select("Sample the autoencoder from", "ls_aes", list(AE_SAMPLING), format_func=AE_SAMPLING.get,
                            radio=ctx.present, help="An autoencoder has no prior, so there is no right way to sample it.")
    n_show = 32
    n_study = 500
    results = {}
    for ck in ("ae", "vae"):
        e = ui.run_safely(lambda ck=ck: ui.pretrained(ctx.dataset_name, ck, 1.0, cdim), "A pretrained model is missing",
                          "Reinstall the app's assets.")
        if e is None:
            break
        mk = f"zoo:{e.spec.filename}"
        cds = codes_of(mk, ds.name, e.model, ds.x)
        rec = reconstructions_of(mk, ds.name, e.model, cds.mu)
        mode = "prior" if ck == "vae" else ae_mode
        z, imgs, off = prior_study(mk, ds.name, mode, ctx.seed, n_study, e.model, cds.mu, rec)
        pl = plane_of(mk, ds.name, "auto", 0, cds.mu)
        results[ck] = (cds, z, imgs, off, pl)
    if len(results) == 2:
        note = st.markdown if not ctx.present else (lambda *a, **k: None)  # (presenter mode: no long notes)
        note(
            f"The same data, the same seed ({ctx.seed}), both with a {cdim}-D latent. Left: a plain autoencoder. "
            f"Right: a VAE with β = 1. Each map shows {min(N, 2000):,} of the real images' codes (dots) and "
            f"{min(200, n_study)} sampled codes (crosses)"
            + (", projected on each model's PCA plane. " if cdim > 2 else ". ")
            + "The VAE is sampled from its prior N(0, I). "
            + ("The autoencoder has no prior; here it gets the most generous Gaussian: the mean and covariance of its "
               "own codes." if ae_mode == "fit" else
               "The autoencoder has no prior; here it gets the VAE's N(0, I), which ignores where its codes actually are."))
        sub = np.random.default_rng(ctx.seed).choice(N, size=min(N, 2000), replace=False)
        if not ctx.present:
            cols_ = st.columns(2)
        for col, ck in zip(cols_, ("ae", "vae")):
            cds, z, imgs, off, pl = results[ck]
            name = "Autoencoder" if ck == "ae" else "VAE (β = 1)"
            off_flags = off.distances[:200] > off.threshold
            with col:
                fig = LF.samples_map(pl.to_plane(cds.mu[sub]), ds.y[sub], pl.to_plane(z[:200]),
                                     f"{name}: codes and samples", pl.axis_names, CLASS_NAMES, off=off_flags,
                                     height=FIG_H(430))
                if pl.kind == "pca":
                    fig.update_xaxes(title=f"PC 1 ({pl.explained[0]:.0%})")
                    fig.update_yaxes(title=f"PC 2 ({pl.explained[1]:.0%})")
                if ctx.present:  # only the samples in the legend, one line (the classes' colours are scene 1's):
                    for t in fig.data:  # twelve entries in two columns covered half of the figure at presenter size
                        t.showlegend = t.name in ("sample", "sample off the manifold")
                ui.figure(fig, key=f"ls_cmp_map_{ck}",
                          alt=f"{name}: {len(sub)} real codes coloured by digit and 200 sampled codes as crosses; "
                              f"{int(off_flags.sum())} of them are marked as off the manifold.")
                ui.figure(F.image_grid(imgs[:n_show], ds.image_shape, ncols=8, height=250 if ds.dim > 100 else 200,
                                       title=f"{name}: {n_show} decoded samples"),
                          key=f"ls_cmp_img_{ck}", alt=f"{n_show} images decoded from sampled codes of the {name}.")
                if ctx.present:  # (the two shares are beside the maps, under the choice)
                    continue
                st.metric("Samples off the decoder's manifold", f"{off.fraction:.0%}",
                          help=f"Of {n_study} samples: the decoded image is farther (pixel distance) from every "
                               "decoded real image than 95% of decoded real images are from their nearest neighbour "
                               f"(distance {off.threshold:.2f}). About 5% of real codes would be flagged.")
        f_ae, f_vae = results["ae"][3].fraction, results["vae"][3].fraction
        verdict = ("more of the autoencoder's samples fall into holes: places no training image was encoded to, where "
                   "its decoder was never trained and makes blends or blots." if f_ae > f_vae + 0.02 else
                   "the two are close on this measure here: compare the maps and the decoded samples yourself."
                   if abs(f_ae - f_vae) <= 0.02
                   else "here the VAE's samples score worse on this measure: compare the decoded samples yourself.")
        vcodes = results["vae"][0]
        spread = aggregate_of(f"zoo-vae-{cdim}", ds.name, vcodes.mu, vcodes.logvar)
        if ctx.present:  # beside the maps, under the choice: the numbers; the long notes in an expander
            ctl.markdown(f"Off the decoder's manifold: autoencoder **{f_ae:.0%}**, VAE **{f_vae:.0%}** of "
                         f"{n_study} samples.",
                         help="A sample is off the manifold when its decoded image is farther (pixel distance) from "
                              "every decoded real image than 95% of decoded real images are from their nearest "
                              "neighbour. About 5% of real codes would be flagged.")
            with st.expander("What the KL term guarantees, and what it does not"):
                st.markdown(f"So {verdict} " + kl_guarantee_text(spread, cdim))
            return f_ae, f_vae
        st.markdown(
            f"Off the manifold: autoencoder **{f_ae:.0%}**, VAE **{f_vae:.0%}** of {n_study} samples, so {verdict}")
        st.markdown(kl_guarantee_text(spread, cdim))
        return f_ae, f_vae
    return None


cmp_box = st.container() if show(4) else None  # filled after the map: the map comes first
check_box = st.container()

@st.fragment(run_every=0.8)
def tsne_live(args: tuple, sel: int, neighbours: np.ndarray) -> None:
    """The t-SNE map while it forms: redrawn from the background run's latest layout."""
    job, over = latent.poll(tsne_store(), tsne_jobs(), args)
    if over:
        ui.rerun_page()  # the whole page: the finished map, or a restart
    job.heartbeat()
    lay = job.layout
    if job.status == "queued":
        title, xy, axes = "PCA of the codes (t-SNE waits for another t-SNE run to finish…)", pca_xy, pca_axes
    elif lay is None or job.iteration == 0:
        title, xy, axes = "PCA of the codes (t-SNE is finding each point's neighbours…)", pca_xy, pca_axes
    else:
        phase = "early exaggeration: clusters form" if job.iteration <= job.early else "refining"
        title, xy, axes = f"t-SNE, iteration {job.iteration} of {job.total} ({phase})", lay, ("t-SNE 1", "t-SNE 2")
    fig = legend_at_bottom(LF.explorer_map(xy, ds.y, title, axes, CLASS_NAMES, selected=sel, neighbours=neighbours,
                                           height=FIG_H(620), subset=map_points))
    if ctx.present:
        fig = F.with_font_scale(fig, ui.PRESENT_SCALE)
    with fit_box("tsne"):
        st.plotly_chart(fig, key="ls_tsne_live", config=ui.PLOTLY_CONFIG, width="stretch",
                        alt=f"The map while t-SNE runs: {title}.", **STRETCH)
    st.progress(job.progress, text=f"t-SNE: iteration {job.iteration} of {job.total}. It runs in the background, "
                                   "so you can use the rest of the page meanwhile.")


# ---- the map itself (drawn last so it can show the decoded point) -----------------------------------

if show_map:
    nb_idx, nb_d = explore.nearest_neighbours(MU, idx, k)
    decoded_pt = point_uv if (map_id == "raw" and plane.kind == "raw") else None
    map_fig = LF.explorer_map(map_xy, ds.y, map_title, map_axes, CLASS_NAMES, selected=idx, neighbours=nb_idx,
                              subset=map_points,
                              decoded_point=decoded_pt, height=FIG_H(620))
    legend_at_bottom(map_fig)
    map_wait.empty()
    with map_left:
        if tsne_pending:
            with ui.fragment_slot():  # alone in a block of the page's own (see ui.fragment_slot)
                tsne_live(tsne_args, idx, nb_idx)
        else:
            with fit_box("map"):
                draw_selectable(map_fig, "ls_mapsel",
                                alt=f"{MAPS.get(map_id, map_id)} map of {N if map_points is None else len(map_points)} "
                                    f"of the {N} images, coloured by class; the selected image "
                                    f"{idx} is a star, its neighbours are circled.", **STRETCH)
        if RAW_NOTE and ctx.present:
            st.caption(RAW_NOTE)
        if map_id == "tsne" or tsne_pending:
            st.info("**Reading a t-SNE map.** t-SNE keeps *neighbourhoods*: dots close on the map are close in the "
                    "latent space. It does **not** keep distances between clusters, their sizes or their densities, "
                    "and another seed or perplexity moves clusters around. Judge global layout with PCA (linear, "
                    "faithful to large distances, but overlapping).", icon="ℹ️")
        if map_id == "raw":
            st.caption("The raw map is exact: distances on it are distances in the latent space.")
        faithful = ui.lazy_expander("How faithful is this map? Download its coordinates", "ls_faithful_open")
        with faithful:
            if faithful.open:  # trustworthiness is computed only when asked for
                if map_id != "raw":
                    trust = [f"PCA {map_trust(model_key, ds.name, 'pca', MU, pca_xy):.3f}"]
                    if map_id == "tsne":
                        trust.append(f"t-SNE {map_trust(model_key, ds.name, 'tsne:' + repr(tsne_args), MU, map_xy):.3f}")
                    st.caption("Trustworthiness (k = 10, on 1,000 random images; 1 means every map neighbour is a true "
                               "latent neighbour; Venna & Kaski, 2001): " + ", ".join(trust) + ".")
                ui.download_csv("⬇️ Map coordinates (CSV)", explore.coordinates_table(np.arange(N), ds.y, map_xy, MU, map_id),
                                file_name=f"latent-map-{ascii_name(ctx.dataset_name)}-{map_id}.csv", key="ls_csv")
    with map_right:
        ui.figure(F.image_grid(np.stack([ds.x[idx], explore.decode(model, MU[idx])[0]]), ds.image_shape, ncols=2, height=240,
                               col_titles=["input", "reconstruction"],
                               title=f"Image #{idx}: a {class_name(ds.y[idx])}"),
                  key="ls_selfig", alt=f"Image {idx}, a {class_name(ds.y[idx])}, and the model's reconstruction of it.")
        same = int(np.sum(ds.y[nb_idx] == ds.y[idx]))
        # Pictures, not a chart: nothing to hover, and far less work for the browser (issue 21: the page draws
        # within 1.5 s).
        st.markdown(f"**{k} nearest codes: {same} also a {class_name(ds.y[idx])}**")
        st.image([image_strip(ds.x[i][None], ds.image_shape, px=56) for i in nb_idx], width=56)
        st.caption("Neighbours (index: label, distance in latent space): " + ", ".join(
            f"#{int(i)}: {class_name(ds.y[i])}, {d:.2f}" for i, d in zip(nb_idx, nb_d)))
        if len(sel_idx) > 1:
            labs, cnt = np.unique(ds.y[sel_idx], return_counts=True)
            st.markdown(f"**{len(sel_idx)} points selected**: " + ", ".join(
                f"{c_} × {class_name(l_)}" for l_, c_ in sorted(zip(labs, cnt), key=lambda t: -t[1])))
            shown = sel_idx[:24]
            ui.figure(F.image_grid(ds.x[shown], ds.image_shape, ncols=8, height=70 + 45 * int(np.ceil(len(shown) / 8))),
                      key="ls_selset", alt=f"The first {len(shown)} selected images.")

# ---- 5. AE against VAE, then the self-check --------------------------------------------------------

comp = None
if cmp_box is not None:
    with cmp_box:
        comp = draw_comparison()

if not ctx.present or scene == len(SCENES) - 1:
    with check_box:
        comp_txt = (f" On this page: off the manifold, autoencoder {comp[0]:.0%} and VAE {comp[1]:.0%}." if comp else "")
        ui.self_check("ls", [
            ("On a t-SNE map two clusters are far apart. Does the model think those digits are very different?",
             "Not necessarily. t-SNE keeps who is next to whom, not how far apart groups are: gaps and cluster sizes are "
             "largely set by the perplexity and the optimisation. Compare the PCA map, or distances in the latent space."),
            ("You decode random codes with an autoencoder and with a VAE. Which gives more digit-like images, and why?",
             "Usually the VAE. Its KL term pulls every image's q(z|x) towards N(0, I), so on average its codes stay "
             "where prior samples fall and most samples land near codes the decoder was trained on. It does not make "
             "q(z) equal the prior: holes and clusters remain, so some samples still decode to blends. An autoencoder's "
             "codes can sit anywhere, in islands with gaps between them, so more of its samples land in a gap."
             + comp_txt),
            ("In a latent traversal, one VAE dimension's row shows nearly the same image in every column. Has that "
             "dimension collapsed?",
             "Not necessarily. Collapse is a property over the data: a dimension has collapsed when its mean μ_j(x) "
             "hardly varies over held-out images, Var_x(μ_j) ≤ 0.01 (Burda et al., 2016). A dimension just above that "
             "threshold is active but barely, and its row also changes the image little. Check Var_x(μ_j) (section 4 "
             "names these dimensions); the average KL beside the row is only an upper bound on the information the "
             "dimension carries."),
        ])

with url_errors:
    ui.show_url_errors()
