"""Model answers: one full-marks answer per exam question, with live evidence, a glossary, and the whole
thing as one offline, printable HTML handout.

Thin page: the text and the numbers come from ``core.answers``, the figures from
``core.figures.answers``, the handout from ``core.handout``.
"""
from __future__ import annotations

import streamlit as st
from streamlit.errors import StreamlitAPIException

from core import ui

ctx = ui.page("Model answers", "📝")
if not ctx.present:  # a projector has no room for it: the scene bar names the question
    st.caption("Full-marks answers to the three exam questions, each with a diagram, the equations, the argument "
               "step by step, the weak answers corrected, and evidence from the shipped models.")
ui.configure_torch()

from core import answers  # noqa: E402
from core import handout  # noqa: E402
from core.figures import answers as afig  # noqa: E402

SCENES = [
    ("Q1 · How an autoencoder works", "Encoder, bottleneck, decoder, and the loss: the diagram to redraw."),
    ("Q2 · Why the reparameterization trick", "z = μ + σ⊙ε: the proof, and the gradient variance it saves."),
    ("Q3 · The KL term and the limitations", "What each part of the KL does, and each limitation's cause."),
    ("Glossary", "Deep-learning names and their probabilistic names."),
]
scene = ui.scenes("ans", SCENES)
PRESENT_HEIGHT = 420  # main figures in presenter mode, before ui.figure's 1.3x
show = ui.scene_filter(scene)


@st.cache_data(max_entries=4, show_spinner="Evaluating the β sweep on held-out images…")
def rd_evidence(dataset: str) -> dict:
    """The limits page's rate-distortion sweep (the same call, so the same numbers); one per dataset."""
    from core import limits
    return limits.rate_distortion(dataset, loader=ui.pretrained)


@st.cache_data(max_entries=8, show_spinner="Computing the evidence from the shipped models…")
def evidence(dataset: str, seed: int) -> tuple[dict, dict, dict]:
    return (answers.q1_evidence(dataset, seed, loader=ui.pretrained),
            answers.q2_evidence(dataset, seed, loader=ui.pretrained),
            answers.q3_evidence(dataset, seed, loader=ui.pretrained, rd=rd_evidence(dataset)))


@st.cache_data(max_entries=8, show_spinner=False)
def figures(dataset: str, seed: int, height: int) -> dict:
    return afig.figures(*evidence(dataset, seed), height=height)


@st.cache_data(max_entries=4, show_spinner=False)
def handout_html(dataset: str, seed: int) -> str:
    e1, e2, e3 = evidence(dataset, seed)
    meta = f"Numbers computed on {ui.DATASET_LABELS.get(dataset, dataset)}, seed {seed}."
    return handout.build_handout(answers.answers(e1, e2, e3), figures(dataset, seed, afig.HEIGHT), meta=meta)


def draw_block(block: tuple, figs: dict, skip: str) -> None:
    kind = block[0]
    if kind == "md":
        st.markdown(block[1])
    elif kind == "eq":
        st.latex(block[1])
    elif kind == "fig" and block[1] != skip:
        ui.figure(figs[block[1]], key=f"ans_{block[1]}", alt=block[2])
        st.caption(block[2])
    elif kind == "weak":
        with st.container(border=True):
            st.markdown(f"❌ **Weak answer:** {block[1]}")
            st.markdown(f"✅ **Correction:** {block[2]}")
    elif kind == "link":
        path, title, icon = answers.PAGES[block[1]]
        try:
            st.page_link(path, label=f"Explore it: **{title}**", icon=icon)
        except StreamlitAPIException:  # run without app.py's navigation (AppTest runs the page file alone)
            st.caption(f"Explore it in the lesson {icon} {title}.")


def draw_section(sec: dict, figs: dict, captions: dict) -> None:
    """The question, its key idea (at most three sentences) and its main figure, then the full answer. In
    presenter mode the scene bar names the question and the key idea follows the figure, so the figure
    fits a 1280x720 screen."""
    main = sec["main"]
    if not ctx.present:
        st.header(sec["title"], anchor=sec["key"])
        st.markdown(f"*Exam question: {sec['question']}*")
        st.markdown(sec["summary"])
    ui.figure(figs[main], key=f"ans_{main}", alt=captions[main])
    st.caption(captions[main])
    if ctx.present:
        st.markdown(f"*Exam question: {sec['question']}*")
        st.markdown(sec["summary"])
    rest = st.expander("The full answer, step by step") if ctx.present else st.container()
    with rest:
        for b in sec["blocks"]:
            draw_block(b, figs, skip=main)


if not ctx.present:
    st.markdown("Each exam question gets a complete answer, the kind that earns full marks: definition, labelled "
                "diagram, equations, the argument step by step, and the weak answers students give, corrected. "
                "Every number is computed live from the models the other pages use. Download everything as one "
                "handout that opens offline and prints on A4.")

e1, e2, e3 = ui.run_safely(lambda: evidence(ctx.dataset_name, ctx.seed), "Could not compute the evidence",
                           "The shipped models may be missing: rebuild them with scripts/build_zoo.py.") or (None,) * 3
if e1 is not None:
    sections = answers.answers(e1, e2, e3)
    # Presenter mode: 420 px, scaled to 546 by ui.figure, is at least half of a 1080-px screen and, under the
    # title row, still inside a 720-px one.
    figs = figures(ctx.dataset_name, ctx.seed, PRESENT_HEIGHT if ctx.present else afig.HEIGHT)
    captions = {b[1]: b[2] for s in sections for b in s["blocks"] if b[0] == "fig"}
    if not ctx.present:
        st.download_button("⬇️ Download the handout (HTML, offline, prints on A4)",
                           data=lambda: handout_html(ctx.dataset_name, ctx.seed),
                           file_name=f"latent-lab-model-answers-{ctx.dataset_name}.html", mime="text/html",
                           on_click="ignore", key="ans_handout", type="primary")
    for i, sec in enumerate(sections):
        if show(i):
            if i and not ctx.present:
                st.divider()
            draw_section(sec, figs, captions)

if show(3):
    if not ctx.present:
        st.divider()
        st.header("📖 Glossary: deep-learning names and probabilistic names", anchor="glossary")
    else:  # the scene's key formula: the loss, in both vocabularies
        st.latex(r"\underbrace{-\mathcal L(\theta,\phi;x)}_{\text{loss} \,=\, -\text{ELBO}} = "
                 r"\underbrace{\mathbb E_{q_\phi(z\mid x)}\big[-\log p_\theta(x\mid z)\big]}_{\text{reconstruction term}}"
                 r" + \underbrace{\mathrm{KL}\big(q_\phi(z\mid x)\,\|\,p(z)\big)}_{\text{KL term}}")
    st.markdown("The same objects go by two names: one from neural networks, one from probability. "
                "This glossary is also in every page's sidebar.")
    st.markdown(ui.glossary_markdown(table=True))

ui.show_url_errors()
