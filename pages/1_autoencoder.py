"""How an autoencoder works: an animated diagram of a real trained model, and what autoencoders are for."""
from __future__ import annotations

import numpy as np
import streamlit as st

from core import ui

ctx = ui.page("How an autoencoder works", "🧠",
              "How does an autoencoder work? An animated diagram of a real trained model, then what it is used for.")
ui.configure_torch()

from core import diagram as dg  # noqa: E402  (after configure_torch: torch with one thread)
from core import zoo  # noqa: E402
from core.data import load_dataset  # noqa: E402
from core.models import count_parameters  # noqa: E402
from core import linear_ae  # noqa: E402
from core.figures import image_grid, paired_rows  # noqa: E402
from core.figures.blockdiagram import autoencoder_block_diagram  # noqa: E402
from core.figures.diagram import diagram_figure, error_histogram, image_strip  # noqa: E402

SCENES = [
    ("The idea", "Encoder, code, decoder, and a loss that compares the output with the input: the diagram to "
                 "draw in an exam."),
    ("The forward pass", "Press ▶ Play: the image flows through the encoder, is squeezed into a few numbers "
                         "(the code), and the decoder rebuilds it. Every colour is a real activation of a trained network."),
    ("Encoder, code, decoder", "The equations, what each part does, and use 1: compression."),
    ("Why a bottleneck; the link to PCA", "A linear autoencoder, trained live, finds PCA's subspace."),
    ("Use 2: denoising", "Add noise to the input: the decoder can only draw digit-like images, so much of the "
                         "noise does not come back out."),
    ("Use 3: anomaly detection", "Inputs unlike the training data reconstruct badly: a large error flags them."),
    ("Use 4: generation", "Decode random codes: a plain autoencoder draws junk, a VAE draws digits. Why?"),
]
INPUTS = ["by class", "by index", "random", "draw your own"]
KINDS = {"AE": "ae", "VAE": "vae"}
MAX_NODES, EDGES_PER_NODE = 32, 3
# Presenter mode: each scene's main figure fits one 16:9 screen at 1280x720 and fills half of one at 1920x1080
# (issue 21). ui.figure draws presenter figures 1.3× taller, so 470 px here is about 611 px on screen.
PRESENT_FIG_H = 470


# ---- cached computations (pure functions of their arguments) -----------------------------------

@st.cache_resource(max_entries=16, show_spinner="Running the image through the network…")
def diagram_and_figure(dataset: str, kind: str, latent: int, x_bytes: bytes, seed: int, present: bool, step: int):
    """The Diagram and its animated figure for one input (read-only, shared by sessions). In
    presenter mode the base font is smaller, because ui.figure scales every font by 1.45 and the
    column labels must not collide on a projector."""
    model = ui.pretrained(dataset, kind, 1.0, latent).model
    shape = load_dataset(dataset).image_shape
    d = dg.build_diagram(model, np.frombuffer(x_bytes, dtype=np.float32), shape, seed=seed,
                         max_nodes=MAX_NODES, edges_per_node=EDGES_PER_NODE)
    if present:  # drawn 1.3× taller and at 16 px by ui.figure's presenter scaling (see PRESENT_FIG_H)
        return d, diagram_figure(d, height=PRESENT_FIG_H, font_size=11, start=step - 1, shown_font=16, compact=True)
    return d, diagram_figure(d, font_size=14, start=step - 1)


@st.cache_data(max_entries=16, show_spinner=False)
def held_out_errors(dataset: str, kind: str, latent: int) -> np.ndarray:
    p = ui.pretrained(dataset, kind, 1.0, latent)
    return dg.reconstruction_mse(p.model, zoo_x(dataset)[p.val_idx])


@st.cache_data(max_entries=8, show_spinner=False)
def code_spread(dataset: str, kind: str, latent: int) -> dict:
    """Per-dimension spread of the held-out codes and their KL to N(0, I) (core.diagram.code_stats)."""
    p = ui.pretrained(dataset, kind, 1.0, latent)
    s = dg.code_stats(p.model, zoo_x(dataset)[p.val_idx])
    return {"std_lo": float(s["std"].min()), "std_hi": float(s["std"].max()), "mean_lo": float(s["mean"].min()),
            "mean_hi": float(s["mean"].max()), "kl": s["kl_to_prior"], "inside": s["origin_inside"]}


@st.cache_data(max_entries=4, show_spinner=False)
def vae_prior_match(dataset: str, latent: int) -> dict:
    """core.diagram.prior_match of the β = 1 VAE on its training images (where its KL term was minimised)."""
    p = ui.pretrained(dataset, "vae", 1.0, latent)
    return dg.prior_match(p.model, zoo_x(dataset)[dg.train_indices(len(zoo_x(dataset)), p.val_idx)])


LINEAR_DATASET = "digits"  # 64 pixels: the linear AE trains in about a second, whatever the sidebar's dataset


@st.cache_data(max_entries=4, show_spinner="Training a linear autoencoder (about a second)…")
def linear_vs_pca(latent: int) -> dict:
    """core.linear_ae.compare_with_pca on the 8×8 digits' training images (the zoo's split), K = ``latent``;
    plus the held-out MSE of the zoo's nonlinear AE with the same K on the same images."""
    p = ui.pretrained(LINEAR_DATASET, "ae", 1.0, latent)
    x = zoo_x(LINEAR_DATASET)
    train = dg.train_indices(len(x), p.val_idx)
    c = linear_ae.compare_with_pca(x[train], x[p.val_idx], latent)
    nonlin = dg.reconstruction_mse(p.model, x[p.val_idx])
    return {"c": c, "mse_nonlinear": float(np.mean(nonlin)), "recon_nonlinear": dg.reconstruct(p.model, c.shown),
            "n_train": len(train), "n_val": len(p.val_idx)}


@st.cache_data(max_entries=4, show_spinner=False)
def digit_extent(dataset: str) -> int:
    data = load_dataset(dataset)
    return dg.typical_extent(data.x, data.image_shape)


def zoo_x(dataset: str) -> np.ndarray:
    return load_dataset(dataset).x


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table of already formatted cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


# ---- configuration ------------------------------------------------------------------------------

ds = ctx.dataset
scene = ui.scenes("ae", SCENES)
show = ui.scene_filter(scene)  # every section normally; one scene at a time in presenter mode
top = st.container()  # the key idea and the block diagram, drawn once the model is chosen
latents = sorted({s.latent_dim for s in zoo.available(ctx.dataset_name, "ae")}
                 & {s.latent_dim for s in zoo.available(ctx.dataset_name, "vae")})
with ui.config_container("Model and input"):
    c1, c2, c3 = st.columns([1, 1, 2])
    with c1:
        kind_label = ui.select("Model", "ae_kind", list(KINDS), default="AE", radio=True, horizontal=True,
                               help="AE: a plain autoencoder. VAE: a variational autoencoder (β = 1), whose "
                                    "bottleneck is a distribution: μ, σ, noise ε and z = μ + σ·ε.")
    with c2:
        latent = ui.select("Latent size (code length)", "ae_latent", latents, default=max(latents),
                           help="How many numbers the bottleneck keeps. Both sizes are pretrained.")
    with c3:
        source = ui.select("Choose the input", "ae_input", INPUTS, radio=True, horizontal=True)
    kind = KINDS[kind_label]
    pre = ui.run_safely(lambda: ui.pretrained(ctx.dataset_name, kind, 1.0, latent),
                        "Could not load the pretrained model",
                        "Reinstall the app's assets (assets/zoo), or pick another dataset in the sidebar.")
    if pre is None:
        st.stop()
    val_idx = pre.val_idx
    y_val = ds.y[val_idx]
    names = ds.class_names or tuple(str(c) for c in range(int(ds.y.max()) + 1))
    x = None
    what = ""
    if source == "by class":
        classes = sorted(int(c) for c in np.unique(y_val))
        a, b = st.columns(2)
        with a:
            cls = ui.select("Class", "ae_class", classes, default=classes[0], format_func=lambda c: names[c])
        members = np.flatnonzero(y_val == cls)
        ui.clamp_state("ae_example", 1, len(members))
        with b:
            k = ui.number(f"Which {names[cls]} (1 to {len(members)})", "ae_example", 1, len(members), 1, step=1)
        pos = int(members[int(k) - 1])
        what = f"a held-out {names[cls]} (example {int(k)} of {len(members)}; dataset image {int(val_idx[pos])})"
    elif source == "by index":
        ui.clamp_state("ae_index", 0, len(val_idx) - 1)
        k = ui.number(f"Held-out image (0 to {len(val_idx) - 1})", "ae_index", 0, len(val_idx) - 1, 0, step=1)
        pos = int(k)
        what = f"held-out image {pos} (dataset image {int(val_idx[pos])}, a {names[int(y_val[pos])]})"
    elif source == "random":
        if st.button("🎲 Another random image", key="ae_reroll"):
            st.session_state["_ae_rand_n"] = st.session_state.get("_ae_rand_n", 0) + 1
        n_roll = st.session_state.get("_ae_rand_n", 0)
        pos = dg.random_index(len(val_idx), ctx.seed, n_roll)
        what = (f"random held-out image {pos} (dataset image {int(val_idx[pos])}, a {names[int(y_val[pos])]}; "
                f"seed {ctx.seed}, draw {n_roll + 1})")
    else:
        pos = 0
        try:
            from streamlit_drawable_canvas import st_canvas
        except Exception:  # the component failed to register: say so and carry on with a held-out image
            st_canvas = None
            st.warning("The drawing canvas is not available in this installation; showing held-out image 0. "
                       "Reinstall streamlit-drawable-canvas to draw your own digit.")
        if st_canvas is not None:
            # Not in a column: a narrow column clipped the 280-pixel canvas and hid its toolbar (issue 21).
            st.markdown("Draw one digit, **white on black**, filling most of the box. When you release the mouse "
                        f"it is prepared the way the dataset was: cropped, scaled so its longer side is "
                        f"{digit_extent(ctx.dataset_name)} of {ds.image_shape[0]} pixels, centred by its centre "
                        f"of mass, and shrunk to {ds.image_shape[0]}×{ds.image_shape[1]} pixels.")
            # The canvas's toolbar (undo, redo, clear) appears 2.65rem above it on hover: leave that room free so
            # it covers no text or widget (issue 21).
            st.space(24)
            canvas = st_canvas(stroke_width=22, stroke_color="#FFFFFF", background_color="#000000", height=280,
                               width=280, drawing_mode="freedraw", return_image_data=True, key="ae_canvas")
            img = canvas.image_data if canvas is not None else None
            drawn = None
            if img is not None:
                drawn = ui.run_safely(lambda: dg.drawing_to_image(img, ds.image_shape,
                                                                  digit_extent(ctx.dataset_name)),
                                      "The drawing could not be read", "Clear the canvas (🗑) and draw again.")
            if drawn is None:
                st.info("Nothing drawn yet: until you draw, the diagram shows held-out image 0.")
            else:
                x = drawn
                what = "your drawing"
                st.image((drawn.reshape(ds.image_shape) * 255).astype(np.uint8), width=112,
                         caption=f"what the network sees ({ds.image_shape[0]}×{ds.image_shape[1]})")
        if x is None:
            what = f"held-out image 0 (dataset image {int(val_idx[0])}, a {names[int(y_val[0])]})"
    if x is None:
        x = ds.x[val_idx[pos]]

ui.show_url_errors()  # invalid URL values for the widgets above (replaced by their defaults)
model_name = "variational autoencoder (VAE, β = 1)" if kind == "vae" else "autoencoder (AE)"
n_steps = len(dg.stages_of(pre.model))
ui.clamp_state("ae_step", 1, n_steps)
_prev_n = st.session_state.get("_ae_step_n")
if _prev_n is not None and _prev_n != n_steps:  # AE <-> VAE: the slider's range changes, so Streamlit would
    _old = int(st.session_state.get("ae_step", _prev_n))  # reset it to step 1; keep "the last step" the last step
    for _k in ("ae_step", "_keep_ae_step"):
        st.session_state[_k] = n_steps if _old >= _prev_n else min(_old, n_steps)
st.session_state["_ae_step_n"] = n_steps
step, slot, notes = n_steps, None, None


def stage():
    """Where a section draws: in presenter mode the container above the (collapsed) configuration, so each
    scene's figure sits right under the scene bar (issue 21); otherwise in page order."""
    return top if ctx.present else st.container()


# ---- 0. the key idea and the block diagram ---------------------------------------------------------------

cfg = pre.model.cfg
def key_idea() -> None:
    st.markdown(
        "**The key idea.** An autoencoder is two networks trained together: an **encoder** squeezes the input "
        "*x* into a short **code** *z*, and a **decoder** rebuilds *x̂* from the code alone. Training makes *x̂* "
        "match *x*, so the code must keep what matters about the input, and no labels are needed.")


if show(0):
    with top:
        if not ctx.present:  # in presenter mode the figure comes first, so it fits the screen; the idea follows
            key_idea()
        ui.figure(autoencoder_block_diagram(cfg.input_dim, list(cfg.hidden_dims), cfg.latent_dim, kind=kind,
                                            image_shape=ds.image_shape, font_size=11 if ctx.present else 15,
                                            likelihood=cfg.likelihood, height=PRESENT_FIG_H if ctx.present else None),
                  key="ae_block",
                  alt=(f"Block diagram of the {model_name}: input x ({cfg.input_dim} numbers) → encoder f_φ "
                       f"({' → '.join(str(v) for v in [cfg.input_dim, *cfg.hidden_dims, cfg.latent_dim])}) → code z "
                       f"({cfg.latent_dim} numbers) → decoder g_θ → reconstruction x̂ ({cfg.input_dim} numbers); "
                       f"the loss L(x, x̂) compares the output with the input."))
        if ctx.present:
            key_idea()
        else:
            st.caption("Draw this in an exam. The sizes are those of the model chosen below; the animated network "
                       "further down is the same model at work.")


def heading(text: str) -> None:
    """A section's heading; left out in presenter mode, where the scene bar names the scene and the figure
    needs the room (issue 21)."""
    if not ctx.present:
        st.subheader(text)


# ---- 1. the animated diagram ------------------------------------------------------------------------

if show(1):
    with stage():
        if not ctx.present:  # in presenter mode the scene bar says it, and the figure needs the room
            st.subheader(f"A trained {model_name} at work")
            st.markdown(f"The input is {what}. Press **▶ Play** (top left of the figure) to watch it flow through the "
                        f"network one layer at a time, or drag the step slider beside it. The final step puts the "
                        f"reconstruction beside the input.")
        slot = st.container()  # the figure goes here, above its keyboard control
        # One visible step control (the figure's own slider and ▶ Play); its keyboard alternative, which redraws the
        # figure on the server, waits in a collapsed expander so the page does not show two sliders (issue 21).
        with st.expander("⌨️ Step through with the keyboard"):
            step = ui.slider("Step shown: focus this slider, then use the arrow keys",
                             "ae_step", 1, n_steps, n_steps, step=1)
        ui.show_url_errors()
        notes = st.container()

x = np.asarray(x, dtype=np.float32)
result = ui.run_safely(lambda: diagram_and_figure(ctx.dataset_name, kind, int(latent), x.tobytes(), ctx.seed,
                                                  ctx.present, int(step)),
                       "Could not run the image through the network", "Choose another input.")
if result is None:
    st.stop()
d, fig = result
D, K = d.input_dim, d.latent_dim
held_recon = float(pre.evaluation.get("recon", float("nan")))

if slot is not None:
    hidden = [layer for layer in d.layers if layer.key.startswith("encoder")]
    with slot:
        ui.figure(fig, key="ae_diagram", html_name="autoencoder-animation", theme=None,
                  alt=(f"Animated diagram of a trained {model_name} on {what}: input of {D} pixels, encoder layers "
                       f"of {', '.join(str(h.width) for h in hidden)} units, a bottleneck of {K} numbers"
                       + (" (μ, σ, noise ε and z = μ + σ·ε)" if kind == "vae" else "")
                       + f", a mirrored decoder and a {D}-pixel output. Reconstruction error {d.bce:.1f} nats, "
                         f"mean squared error {d.mse:.4f} per pixel."))
    sub = d.layer("input")
    with notes:
        st.caption(
            f"Each circle is one unit, coloured by its **real activation** for this image (blue positive, "
            f"vermillion negative, white zero; each layer is scaled to its own largest |value|; hover for exact "
            f"values). Wide layers are subsampled: the input and output columns show the same {len(sub.shown)} of "
            f"{D} pixels (those with the largest encoder weights); hidden layers show evenly spaced units "
            f"({'; '.join(f'{h.key}: {h.how}' for h in d.layers if h.how and h.key not in ('input', 'output'))}). "
            f"Edges: for "
            f"each drawn unit, the {EDGES_PER_NODE} strongest weights from the drawn units of the layer before "
            f"(blue w > 0, vermillion w < 0, thicker = larger |w|)."
            + (f" Dotted lines join μ_j, σ_j and ε_j to z_j = μ_j + σ_j·ε_j, one dimension at a time. ε was drawn "
               f"with seed {ctx.seed}; change the seed in the sidebar to draw another." if kind == "vae" else ""))

# ---- 2. what each part does, and the readouts ------------------------------------------------------

if show(2):
    with stage():
        st.subheader("Encoder, code, decoder")
        widths = [layer.width for layer in d.layers if layer.key.startswith("encoder")]
        chain_in = " → ".join(str(v) for v in [D, *widths])
        chain_out = " → ".join(str(v) for v in [K, *reversed(widths)])
        bern = cfg.likelihood == "bernoulli"
        st.markdown("**The equations.** The encoder $f_\\phi$ (weights $\\phi$) maps the input to the code, the decoder "
                    "$g_\\theta$ (weights $\\theta$) maps the code back, and the loss compares the output with the input:")
        st.latex(r"z = f_\phi(x) \in \mathbb{R}^{%d},\qquad \hat x = g_\theta(z) \in \mathbb{R}^{%d},\qquad "
                 r"\min_{\phi,\theta}\ \frac{1}{N}\sum_{n=1}^{N} L\big(x^{(n)}, g_\theta(f_\phi(x^{(n)}))\big)" % (K, D))
        if bern:
            st.latex(r"L_{\mathrm{BCE}}(x,\hat x) = -\sum_{i=1}^{%d}\big[x_i\log\hat x_i + (1-x_i)\log(1-\hat x_i)\big]"
                     r"\qquad \mathrm{MSE}(x,\hat x) = \frac{1}{%d}\sum_{i=1}^{%d}(x_i-\hat x_i)^2" % (D, D, D))
        else:
            st.latex(r"L(x,\hat x) = \tfrac12\sum_{i=1}^{%d}(x_i-\hat x_i)^2\qquad "
                     r"\mathrm{MSE}(x,\hat x) = \frac{1}{%d}\sum_{i=1}^{%d}(x_i-\hat x_i)^2" % (D, D, D))
        st.markdown(
            ("Pixels here lie in [0, 1], so this model was trained with the **binary cross-entropy** $L_{\\mathrm{BCE}}$ "
             "(squared error is the other common choice). " if bern else
             "This model was trained with the **squared error** (half the sum of squares). ")
            + "Training is **unsupervised**: the target is the input itself. The gradients of the loss with respect to "
              "$\\theta$ and $\\phi$ come from **backpropagation** through the decoder and then the encoder, and a "
              "gradient method (here Adam) updates both together.")
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("Compression (numbers)", f"{D} → {K}", help="Pixels in, code length at the bottleneck.")
        m2.metric("Smaller by", f"{D / K:.0f}×")
        # (presenter mode: shorter labels, so the larger font does not cut them off)
        m3.metric("Reconstruction error" if ctx.present else "Reconstruction error (this image)", f"{d.bce:.1f} nats",
                  help=("L_BCE above, summed over pixels: the reconstruction term of the loss the model was trained to "
                        "minimise. Pixels are grey levels, not 0/1 coin flips, so this is a cross-entropy, not a "
                        "normalised log-likelihood." if bern else
                        "Half the sum of squared errors over pixels (a Gaussian term without its constant)."))
        m4.metric("Mean squared error per pixel", f"{d.mse:.4f}", help="MSE above, averaged over the pixels.")
        n_train = ds.n - len(val_idx)
        epochs = pre.train_config.get("epochs", "?")
        heads = ("two linear layers (no ReLU) give the code's mean μ and log-variance log σ², "
                 "each of" if kind == "vae" else "a linear layer (no ReLU) gives the code,")
        st.markdown(
            f"- **Encoder** ({chain_in}, then {K}): each hidden layer takes a weighted sum of the layer before and "
            f"applies ReLU, max(0, ·); then {heads} {K} numbers. The layers get narrower, so the network has to "
            f"decide what to keep.\n"
            f"- **Code / latent space**: the bottleneck's {K} numbers *z* are the code for this image. The codes of "
            f"all images form the **latent space**; similar images get nearby codes (see the latent-space page).\n"
            f"- **Decoder** ({chain_out}, then {D}): the mirror image, ReLU hidden layers; its output layer expands "
            f"the code back to {D} values, and "
            + ("a sigmoid squashes each into [0, 1], a pixel intensity.\n" if bern else "leaves them as they are.\n")
            + f"- **Training**: nobody told the network what to put in the code. Its weights were learned by making "
              f"the output match the input on {n_train:,} training images for {epochs} epochs. On the "
              f"{len(val_idx)} held-out images it never saw, the average reconstruction error is {held_recon:.1f} nats; "
              f"this image's is {d.bce:.1f}.")
        if kind == "vae":
            st.markdown(
                f"**What the VAE adds** (Kingma and Welling, 2014). Its encoder outputs a *distribution* over codes, "
                f"a normal N(μ, σ²) per dimension, not a single point. The code is sampled as **z = μ + σ·ε** with "
                f"ε ~ N(0, I) (the reparameterization trick, which lets gradients reach μ and σ). A KL term in the loss "
                f"pulls every q(z|x) towards N(0, I): for this image KL = {d.meta.get('kl', float('nan')):.1f} nats. "
                f"Use 4 below shows what that does, and does not, guarantee for generation.")
        else:
            st.markdown("**Switch the model to VAE** above to see how a variational autoencoder's bottleneck differs: "
                        "μ, σ, the noise ε and z = μ + σ·ε.")
        with st.container(border=True):
            st.markdown(
                f"**❌ Common wrong answer:** \"the latent space is where the data is stored.\"\n\n"
                f"**✅ Correct:** the latent space is a *coordinate system*: each input has a point in it, its code "
                f"({K} numbers for this model). Nothing is stored there. What training learnt is stored in the "
                f"**weights** ({count_parameters(pre.model):,} numbers for this model, the same for every input). "
                f"Evidence: the {len(val_idx)} held-out images were never seen in training, yet each gets its point "
                f"by running the encoder and is rebuilt from it (average error {held_recon:.1f} nats, as above).")
        st.markdown(
            f"**Use 1: compression and features.** The code is {D / K:.0f}× shorter than the image, but lossy (mean "
            f"squared error {d.mse:.4f} per pixel here), and the receiver needs the decoder's "
            f"{count_parameters(pre.model.decoder):,} weights. Autoencoders are used less to compress files than to "
            f"reduce dimensions and learn compact **features** of data, which can feed a classifier or a clustering "
            f"method. The other uses: **denoising**, **anomaly detection** (uses 2 and 3 below); a plain autoencoder "
            f"is not a generator (use 4).")


# ---- 3. why a bottleneck, and PCA ---------------------------------------------------------------------

def why_bottleneck() -> None:
    st.markdown(
        f"- **Undercomplete** (K < D, here {K} < {D}): the code is too short to copy the input, so training must "
        f"keep the directions that matter most for reconstruction and drop the rest.\n"
        f"- **Overcomplete** (K ≥ D): the network could learn the identity and copy its input, learning nothing "
        f"useful. It needs another constraint: a **sparse** autoencoder penalises active code units (Ranzato et "
        f"al., 2007; Ng, 2011), a **denoising** autoencoder must rebuild the clean input from a corrupted one "
        f"(Vincent et al., 2008), a **contractive** autoencoder penalises the encoder's Jacobian, ‖∂f/∂x‖² "
        f"(Rifai et al., 2011).\n"
        f"- The **variational** autoencoder (Kingma and Welling, 2014) is the probabilistic kind: its code is a "
        f"distribution, and a KL term limits how much information the code carries (Hoffman and Johnson, 2016).")


def bottleneck_section() -> None:
    heading("Why a bottleneck, and the link to PCA")
    lin = ui.run_safely(lambda: linear_vs_pca(int(K)), "Could not train the linear autoencoder",
                        "Reload the page, or pick another latent size.")
    if lin is None:
        return
    c = lin["c"]
    if not ctx.present:
        why_bottleneck()
    if ctx.present:  # the figure beside its metrics first, so the scene fits one screen; the explanation below
        fig_slot, right = st.columns([3, 2], vertical_alignment="center")
        with right:
            m1, m2 = st.columns(2)
            m3, m4 = st.columns(2)
        explain = st.expander("Why a bottleneck, and the theorem (Baldi and Hornik, 1989)")
    else:
        explain = st.container()
    explain.markdown(
        f"**A linear autoencoder is PCA.** Remove every nonlinearity and train with squared error: "
        f"$z = W_e x + b_e$, $\\hat x = W_d z + b_d$. Baldi and Hornik (1989) proved that the loss then has no "
        f"bad local minima and its minimum projects onto the span of the top K principal components, the "
        f"subspace PCA finds; the columns of $W_d$ span it but need not be the principal axes themselves. "
        f"Checked live: a linear AE with K = {K}, trained here by gradient descent (Adam, {c.steps:,} full-batch "
        f"steps) on {lin['n_train']:,} of the 8×8 digits (64 pixels, so it trains in about a second, whatever "
        f"the dataset in the sidebar), against `sklearn.decomposition.PCA` on the same images.")
    explain.latex(r"\cos\vartheta_i = \sigma_i\big(Q_{W_d}^{\top} Q_{\mathrm{PCA}}\big),\quad i = 1..K"
             r"\qquad(\text{principal angles; } 0^\circ \text{ = the same subspace})")
    if not ctx.present:
        m1, m2, m3, m4 = st.columns(4)
        fig_slot = st.container()
    short = ctx.present  # (shorter labels, so the presenter font does not cut them off)
    m1.metric("Angle after training" if short else "Largest principal angle, trained", f"{c.angles_trained.max():.2f}°",
              help="The largest principal angle between the column space of the trained decoder W_d and PCA's "
                   "top-K subspace (scipy.linalg.subspace_angles).")
    m2.metric("Angle before training" if short else "Largest principal angle, untrained",
              f"{c.angles_untrained.max():.1f}°",
              help="The same angle for the random starting weights, before training.")
    m3.metric("MSE, linear AE" if short else "Held-out MSE, linear AE", f"{c.mse_ae:.5f}", help="Mean squared error per pixel on the "
              f"{lin['n_val']} held-out digits, averaged over images.")
    m4.metric("MSE, PCA" if short else "Held-out MSE, PCA", f"{c.mse_pca:.5f}", help="PCA with the same K, fitted on the same training images.")
    rows = {"input": c.shown, "linear AE": c.recon_ae, "PCA": c.recon_pca, "ReLU AE": lin["recon_nonlinear"]}
    n = len(c.shown)
    title = f"{n} held-out digits reconstructed from K = {K} numbers"
    with fig_slot:
        if ctx.present:
            ui.figure(image_grid(np.concatenate(list(rows.values())), (8, 8), ncols=n, row_titles=list(rows),
                                 title=title, height=PRESENT_FIG_H),
                      key="ae_pca", alt=f"{n} held-out 8×8 digits and their reconstructions by the linear autoencoder, "
                                        f"by PCA and by the nonlinear autoencoder, each with K = {K}.")
        else:  # pictures, not a chart (issue 21: less work for the browser)
            st.markdown(f"**{title}**")
            with st.container(key="ae_pca"):
                for label, row in rows.items():
                    st.image(image_strip(row, (8, 8), px=48), caption=label)
    st.markdown(
        f"The two subspaces agree to {c.angles_trained.max():.2f}° (they started {c.angles_untrained.max():.0f}° "
        f"apart), and the held-out errors agree ({c.mse_ae:.5f} against {c.mse_pca:.5f} per pixel). The axes "
        f"themselves differ: decoder column 1 is {c.axis_angles[0]:.0f}° from principal axis 1. Nonlinear (ReLU) "
        f"layers generalise PCA: the trained nonlinear AE with the same K reconstructs these held-out digits with "
        f"MSE {lin['mse_nonlinear']:.5f}, "
        + ("lower than PCA's." if lin["mse_nonlinear"] < c.mse_pca else "not lower than PCA's here."))
    if ctx.present:
        with explain:
            why_bottleneck()
    with st.expander("Details: every principal angle, the training curve, per-image errors"):
        # Markdown tables, not st.dataframe: a data frame makes every fresh visitor's browser fetch and parse about
        # 1.2 MB of Streamlit's table code (Arrow and the grid) before the page is drawn (issue 21, page open time).
        st.markdown(md_table(["angle i", "trained (°)", "untrained (°)", "decoder column i vs axis i (°)"],
                             [[str(i + 1), f"{a:.3f}", f"{b:.1f}", f"{e:.1f}"] for i, (a, b, e) in
                              enumerate(zip(c.angles_trained, c.angles_untrained, c.axis_angles))]))
        mse_relu = dg.per_image_mse(c.shown, lin["recon_nonlinear"])
        st.markdown(md_table(["image", "MSE linear AE", "MSE PCA", "MSE ReLU AE"],
                             [[str(i + 1), f"{a:.5f}", f"{b:.5f}", f"{e:.5f}"] for i, (a, b, e) in
                              enumerate(zip(c.show_mse_ae, c.show_mse_pca, mse_relu))]))
        st.caption(f"Training MSE per pixel every 50 steps: from {c.history[0]:.4f} to {c.history[-1]:.5f} "
                   f"(PCA on the training images: {c.mse_train_pca:.5f}, the minimum any K-dimensional linear code "
                   f"can reach). PCA's {K} components keep {100 * c.explained:.1f}% of the training variance. "
                   f"The loss is computed exactly from the images' mean and covariance (core.linear_ae).")


if show(3):
    with stage():
        bottleneck_section()


# ---- 4. denoising -------------------------------------------------------------------------------------

def denoising_section() -> None:
    heading("Use 2: denoising")
    if ctx.present:  # the three images in a column on the left, the slider and its numbers on the right
        left, right = st.columns([2, 3], vertical_alignment="center")
    else:
        left = right = st.container()
    with right:
        level = ui.slider("Noise added to the input (standard deviation)", "ae_noise", 0.0, 1.0, 0.5, step=0.05,
                          help="Gaussian noise with this standard deviation is added to every pixel, then clipped "
                               "to [0, 1].")
        ui.show_url_errors()
    r = dg.denoise(pre.model, x, float(level), seed=ctx.seed)
    titles = ["clean input", f"noisy input (σ = {level:.2f})", "reconstruction of the noisy input"]
    with left:
        if ctx.present:
            grid = image_grid(np.stack([r.clean, r.noisy, r.recon]), ds.image_shape, ncols=1, height=PRESENT_FIG_H,
                              row_titles=["clean", f"noisy<br>σ = {level:.2f}", "recon-<br>structed"])
            ui.figure(grid, key="ae_denoise", alt=f"Clean image, the image with noise of standard deviation "
                                                  f"{level:.2f}, and the model's reconstruction of the noisy image.")
        else:  # pictures, not a chart (issue 21: less work for the browser)
            with st.container(key="ae_denoise"):
                # (a white margin each side: side by side, the three pictures would touch)
                st.image([np.pad(image_strip(v[None], ds.image_shape, px=140), ((0, 0), (8, 8)), constant_values=255)
                          for v in (r.clean, r.noisy, r.recon)], caption=titles, width=156)
    with right:
        denoise_text(r)


def denoise_text(r) -> None:
    """The denoising metrics and what they show."""
    c1, c2 = st.columns(2)
    short = ctx.present  # (shorter labels, so the presenter font does not cut them off)
    c1.metric("Noisy vs clean, MSE" if short else "Noisy input vs clean (MSE per pixel)", f"{r.mse_noisy:.4f}",
              help="Mean squared error per pixel between the noisy input and the clean image." if short else None)
    c2.metric("Reconstruction vs clean, MSE" if short else "Reconstruction vs clean (MSE per pixel)",
              f"{r.mse_recon:.4f}",
              help="Mean squared error per pixel between the reconstruction and the clean image." if short else None)
    if r.mse_recon < r.mse_noisy:
        st.markdown(f"The reconstruction is **{r.mse_noisy / max(r.mse_recon, 1e-12):.1f}× closer** to the clean image "
                    f"than the noisy input was. The decoder can only draw digit-like images, so it leaves out much of "
                    f"the noise, which it never learned to draw.")
    else:
        st.markdown("For this image at this noise level the reconstruction is **not** closer to the clean image "
                    "than the noisy input was: the autoencoder's own reconstruction error outweighs the noise it "
                    "removes. Try more noise.")
    st.caption("This model was trained on clean images only. A *denoising autoencoder* is trained on noisy inputs "
               "with the clean images as targets, and does better still.")


# ---- 5. anomaly detection -------------------------------------------------------------------------------

def anomaly_section() -> None:
    heading("Use 3: anomaly detection")
    errors = held_out_errors(ctx.dataset_name, kind, int(latent))
    level = float(st.session_state.get("ae_noise", 0.5))
    thr, verdicts = dg.anomaly_report(pre.model, x, errors, level, seed=ctx.seed, quantile=0.99)
    odd = dg.odd_inputs(x, seed=ctx.seed)
    marks = [(v.name, v.error) for v in verdicts]
    a, b = st.columns([3, 1])
    with a:
        hist = error_histogram(errors, marks, thr, title=f"Reconstruction error of the {len(errors)} held-out images",
                               height=PRESENT_FIG_H if ctx.present else 360)
        ui.figure(hist,
                  key="ae_hist", alt="Histogram of held-out reconstruction errors with the threshold and where "
                                     + ", ".join(f"{n} ({v:.3g})" for n, v in marks) + " fall.")
    with b:
        if ctx.present:
            ui.figure(image_grid(np.stack(list(odd.values())), ds.image_shape, ncols=1, height=330,
                                 row_titles=[n.replace(" ", "<br>") for n in odd]),
                      key="ae_odd", alt="The two odd inputs: the image with inverted colours, and random pixels.")
        else:  # pictures, not a chart (issue 21: less work for the browser)
            st.image([image_strip(v[None], ds.image_shape, px=112) for v in odd.values()], caption=list(odd),
                     width=112)
    lines = []
    for v in verdicts:
        rank = ("higher than every held-out image" if v.percentile >= 100 else
                f"higher than {v.percentile:.0f}% of held-out images")
        flag = "**flagged as an anomaly**" if v.flagged else "passes as normal"
        lines.append(f"- {v.name}: error {v.error:.4f}, {rank}: {flag}")
    st.markdown(f"An autoencoder learns to rebuild *typical* inputs. Flag anything whose error is above the 99th "
                f"percentile of held-out images ({thr:.4f}):\n" + "\n".join(lines))
    st.caption("Used to spot faulty parts, fraud or sensor failures: train on normal data only, then flag what "
               "reconstructs badly. The noise level comes from the denoising slider above.")


# ---- 6. generation -------------------------------------------------------------------------------------

@st.fragment
def generation_section() -> None:
    heading("Use 4: generation, and why a plain autoencoder is poor at it")
    ae = ui.pretrained(ctx.dataset_name, "ae", 1.0, int(latent)).model
    vae = ui.pretrained(ctx.dataset_name, "vae", 1.0, int(latent)).model
    n = 5 if ctx.present else 10  # presenter mode: fewer, larger images
    z, ae_imgs = dg.decode_prior(ae, n, seed=ctx.seed)
    _, vae_imgs = dg.decode_prior(vae, n, seed=ctx.seed)
    if ctx.present:
        ui.figure(paired_rows({"AE": ae_imgs, "VAE": vae_imgs}, ds.image_shape,
                              title=f"The same {n} random codes z ~ N(0, I) (K = {K}), decoded by each model",
                              height=PRESENT_FIG_H),
                  key="ae_gen", alt=f"{n} random codes from N(0, I) decoded by the plain autoencoder (top row) and "
                                    f"the VAE (bottom row).")
    else:  # two pictures, not a chart (issue 21: less work for the browser)
        st.markdown(f"**The same {n} random codes z ~ N(0, I) (K = {K}), decoded by each model**")
        st.image(image_strip(ae_imgs, ds.image_shape, px=84), caption="AE: the plain autoencoder")
        st.image(image_strip(vae_imgs, ds.image_shape, px=84), caption="VAE (β = 1)")
    s_ae, s_vae = code_spread(ctx.dataset_name, "ae", int(latent)), code_spread(ctx.dataset_name, "vae", int(latent))
    text = (f"To generate, decode a random code. But *which* codes are valid? A plain AE was only trained to "
            f"reconstruct, so nothing shapes where its codes lie: its held-out codes have per-dimension means from "
            f"{s_ae['mean_lo']:.2f} to {s_ae['mean_hi']:.2f} and standard deviations from {s_ae['std_lo']:.2f} to "
            f"{s_ae['std_hi']:.2f}, not the 0 and 1 of N(0, I). ")
    if s_ae["inside"]:
        text += (f"With only {K} numbers the AE's code cloud happens to surround the origin, so random codes land "
                 f"inside it and can decode to digits here, but only from the middle of the cloud, and nothing "
                 f"guarantees even that."
                 + (f" Switch the latent size to {max(latents)} to compare." if K < max(latents) else ""))
    else:
        text += ("Random codes from N(0, I) land where few or no images were encoded, and the decoder never "
                 "learned what to draw there.")
    st.markdown(text)
    with st.container(border=True):
        st.markdown(
            "**❌ Common wrong answer:** \"an autoencoder compresses and reconstructs data **to generate new "
            "data**.\"\n\n"
            "**✅ Correct:** a plain autoencoder is trained only to rebuild its inputs, so it is not a generative "
            "model: its loss says nothing about where codes lie, and it gives no distribution to draw new codes "
            "from. Decoding random codes is a gamble: the **AE** row above"
            + (" (at this small K it happens to work near the centre of the code cloud; at the larger K it "
               "gives junk)." if s_ae["inside"] else " is the evidence.")
            + " Generating needs a model of where codes lie, which is what the VAE adds: a prior p(z) = N(0, I) "
              "and a KL term in its loss (the **VAE** row).")
    pm = vae_prior_match(ctx.dataset_name, int(latent))
    st.markdown("**What the VAE's KL term guarantees, and what it does not.** Per image it is")
    st.latex(r"\mathrm{KL}\big(q(z\mid x)\,\|\,\mathcal N(0,I)\big) = \tfrac12\sum_{j=1}^{%d}"
             r"\big(\mu_j^2+\sigma_j^2-1-\log\sigma_j^2\big)\ \ge 0" % K)
    var = pm["agg_var"]
    spread = (", ".join(f"{v:.2f}" for v in var) if len(var) <= 4 else f"{var.min():.2f} to {var.max():.2f}")
    radius = f"{pm['radius']:.0f}" if abs(pm["radius"] - round(pm["radius"])) < 1e-9 else f"{pm['radius']:.2f}"
    st.markdown(
        f"- It is **0 only when q(z|x) = N(0, I)**, that is when the code carries no information about x; so the "
        f"loss trades it against reconstruction and never drives it to 0 for a useful model.\n"
        f"- Averaged over images it equals I(x; z) + KL(q(z) ‖ p(z)) (Hoffman and Johnson, 2016), where "
        f"q(z) = mean over images of q(z|x) is where the codes actually lie. So it **bounds** how far q(z) is from "
        f"the prior: at most {pm['kl_mean']:.1f} nats for this model (its mean KL term on its {pm['n']:,} training "
        f"images, nats per image). That is why most of the VAE row looks like digits.\n"
        f"- It does **not** make q(z) equal N(0, I). Measured on the same images: the variance of q(z) per "
        f"dimension is {spread} (N(0, I): 1), and {100 * pm['share_outside']:.1f}% of the means μ(x) lie beyond "
        f"radius {radius}, where N(0, I) puts {100 * pm['prior_outside']:.1f}% of its samples. Nothing in the term "
        f"rules out regions that N(0, I) samples but where no image was encoded; codes drawn there decode to junk "
        f"(the prior hole, on the limits page).")
    with st.expander("Per-dimension spread of the codes (AE and VAE) against N(0, I)"):
        kl_help = ("Sum over dimensions of KL(N(m_j, s_j²) ‖ N(0, 1)), with m_j and s_j the mean and standard "
                   "deviation of dimension j of the held-out codes. It is 0 whenever every dimension has mean 0 "
                   "and standard deviation 1, so holes in the cloud and correlations between dimensions do not "
                   "show in it.")
        c1, c2 = st.columns(2)
        c1.metric("AE codes, per-dimension moments vs N(0, 1): KL", f"{s_ae['kl']:.1f} nats", help=kl_help)
        c2.metric("VAE codes, per-dimension moments vs N(0, 1): KL", f"{s_vae['kl']:.1f} nats", help=kl_help)
        st.caption(f"VAE: its held-out codes (one sample z per image) have per-dimension means from "
                   f"{s_vae['mean_lo']:.2f} to {s_vae['mean_hi']:.2f} and standard deviations from "
                   f"{s_vae['std_lo']:.2f} to {s_vae['std_hi']:.2f}. " + kl_help)


@st.fragment
def noise_sections(denoising: bool, anomaly: bool) -> None:
    """Denoising and anomaly detection share the noise slider, so they rerun together (and alone)."""
    if denoising:
        denoising_section()
    if anomaly:
        anomaly_section()


if show(4) or show(5):
    with stage():
        noise_sections(show(4), show(5))
if show(6):
    with stage():
        generation_section()


# ---- self-check -------------------------------------------------------------------------------------------

if show(len(SCENES) - 1):
    with stage():
        other = [v for v in latents if v != latent]
        q1 = ""
        if other:
            lo_k, hi_k = min(latents), max(latents)
            e_lo = ui.pretrained(ctx.dataset_name, kind, 1.0, lo_k).evaluation.get("recon", float("nan"))
            e_hi = ui.pretrained(ctx.dataset_name, kind, 1.0, hi_k).evaluation.get("recon", float("nan"))
            q1 = (f"Up. With {lo_k} numbers the code keeps less detail than with {hi_k}. For these {kind.upper()}s the "
                  f"held-out reconstruction error is {e_lo:.1f} nats with {lo_k} numbers and {e_hi:.1f} with {hi_k}. "
                  f"Switch the latent size above and watch the reconstruction.")
        errors = held_out_errors(ctx.dataset_name, kind, int(latent))
        thr = dg.anomaly_threshold(errors, 0.99)
        rnd = float(dg.reconstruction_mse(pre.model, dg.odd_inputs(x, seed=ctx.seed)["random pixels"]))
        kl_a = code_spread(ctx.dataset_name, "ae", int(latent))["kl"]
        kl_v = code_spread(ctx.dataset_name, "vae", int(latent))["kl"]
        pm = vae_prior_match(ctx.dataset_name, int(latent))
        ui.self_check("ae", [
            (f"You shrink the code from {max(latents)} to {min(latents)} numbers. Does the reconstruction error go up "
             f"or down?", q1 or "Up: a shorter code keeps less detail."),
            ("You feed the autoencoder an image of random pixels. Will its reconstruction look like the input?",
             f"No. The decoder can only draw digit-like images, so the error is large: {rnd:.4f} per pixel for random "
             f"pixels, {rnd / thr:.0f}× the 99th percentile of held-out digits ({thr:.4f}). This is how autoencoders "
             f"detect anomalies."),
            ("Why do random codes from N(0, I) decode to better digits with a VAE than with a plain AE?",
             f"The VAE's KL term pulls every q(z|x) towards N(0, I); averaged over images it bounds how far the "
             f"codes' distribution q(z) is from N(0, I) (at most {pm['kl_mean']:.1f} nats for this VAE), so most "
             f"random codes land near real ones. It does not make them equal: {100 * pm['share_outside']:.1f}% of its "
             f"means lie beyond radius {pm['radius']:.2f}, against {100 * pm['prior_outside']:.1f}% under N(0, I). "
             f"A plain AE is only trained to reconstruct, so its codes can sit anywhere (per-dimension moment KL "
             f"{kl_a:.1f} nats, against {kl_v:.1f} for the VAE): random codes often fall where the decoder never "
             f"learned to draw."),
        ])
