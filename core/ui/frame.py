"""The page frame: ``page()`` (title, the shared sidebar, presenter styling), presenter ``scenes`` and
the one ``scene_filter``, the "predict, then reveal" ``self_check``, the one error wrapper
``run_safely``, ``fragment_slot`` and ``lazy_expander`` (content drawn only once opened)."""
from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import streamlit as st

from core.data import DATASETS, Dataset, load_dataset
from core.ui.url import (K_DATASET, K_PRESENT, K_SEED, _note_published, _url_changed, present, settings_io,
                         show_url_errors, url_value)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APP_SCRIPT = os.path.join(ROOT, "app.py")


@dataclass(frozen=True)
class PageContext:
    dataset_name: str
    seed: int
    present: bool

    @property
    def dataset(self) -> Dataset:
        return load_dataset(self.dataset_name)



# ---- the shared sidebar and page setup ------------------------------------------------------

def _global_state() -> None:
    ss = st.session_state
    for key, name, default, kind, lo, hi, choices in (
            (K_DATASET, "dataset", "mnist-5k", "str", None, None, DATASETS),
            (K_SEED, "seed", 0, "int", 0, 9999, None),
            (K_PRESENT, "present", False, "bool", None, None, None)):
        if key not in ss or _url_changed(name):
            ss[key] = url_value(name, ss.get(key, default), kind, lo, hi, choices)


def _sync_global(widget_key: str, state_key: str) -> None:
    st.session_state[state_key] = st.session_state[widget_key]


def sidebar() -> PageContext:
    """Dataset, seed and presenter mode, shared by all pages (kept in session state and the URL)."""
    _global_state()
    ss = st.session_state
    with st.sidebar:
        st.markdown("### Shared settings")
        ss["_w_dataset"] = ss[K_DATASET]
        st.selectbox("Dataset", DATASETS, key="_w_dataset", on_change=_sync_global, args=("_w_dataset", K_DATASET),
                     format_func=DATASET_LABELS.get, help="Used by every page's pretrained models.")
        ss["_w_seed"] = ss[K_SEED]
        st.number_input("Seed", 0, 9999, key="_w_seed", on_change=_sync_global, args=("_w_seed", K_SEED),
                        help="Fixes every random choice: same seed, same result.")
        ss["_w_present"] = ss[K_PRESENT]
        st.toggle("Presenter mode", key="_w_present", on_change=_sync_global, args=("_w_present", K_PRESENT),
                  help="Larger text and figures for a projector; configuration tucked away. Also ?present=1.")
        settings_io()
        glossary()
    _note_published("dataset", ss[K_DATASET])
    _note_published("seed", str(ss[K_SEED]))
    _note_published("present", "1" if ss[K_PRESENT] else None)
    view = ss["_settings_view"]  # what '⬇️ Settings (JSON)' saves: the URL as this run writes it
    view.update(dataset=ss[K_DATASET], seed=str(ss[K_SEED]), present="1")
    if not ss[K_PRESENT]:
        del view["present"]
    try:
        st.query_params["dataset"] = ss[K_DATASET]
        st.query_params["seed"] = str(ss[K_SEED])
        if ss[K_PRESENT]:
            st.query_params["present"] = "1"
        elif "present" in st.query_params:
            del st.query_params["present"]
    except Exception:
        pass
    return PageContext(ss[K_DATASET], int(ss[K_SEED]), bool(ss[K_PRESENT]))


def glossary_markdown(table: bool = False) -> str:
    """The glossary (``core.answers.GLOSSARY``: deep-learning name, probabilistic name, meaning) as Markdown:
    a three-column table, or (for the narrow sidebar) one paragraph per term."""
    from core.answers import GLOSSARY
    if table:
        rows = [f"| **{dl}** | {prob} | {what} |" for dl, prob, what in GLOSSARY]
        return "\n".join(["| Deep-learning name | Probabilistic name | Meaning |", "| --- | --- | --- |", *rows])
    return "\n\n".join(f"**{dl}** = {prob}. {what}" for dl, prob, what in GLOSSARY)


def glossary() -> None:
    """Sidebar: "📖 Glossary", the deep-learning names next to the probabilistic ones, on every page."""
    with st.expander("📖 Glossary"):
        st.markdown(glossary_markdown())


DATASET_LABELS = {"digits": "Digits (8×8, 1,797 images)", "mnist-5k": "MNIST-5k (28×28, 5,000 images)"}

_CSS = """
<style>
.block-container {padding-top: 2.2rem; max-width: 1250px;}
.stElementContainer:has(.ll-watch) {display: none;}  /* ui.live_watch: no row, no gap (it still runs) */
</style>
"""
_PRESENT_CSS = """
<style>
.block-container {max-width: 1500px; padding-top: 0.9rem !important; padding-bottom: 1rem;}
[data-testid="stMain"] {font-size: 22px;}
[data-testid="stMain"] [data-testid="stMarkdownContainer"] p, [data-testid="stMain"] [data-testid="stMarkdownContainer"] li {font-size: 1.25rem; line-height: 1.45;}
[data-testid="stMain"] [data-testid="stWidgetLabel"] p {font-size: 1.25rem;}
[data-testid="stMain"] [data-testid="stCaptionContainer"], [data-testid="stMain"] [data-testid="stCaptionContainer"] p {font-size: 1.1rem;}
[data-testid="stMain"] h1 {font-size: 3.6rem !important;} [data-testid="stMain"] h2 {font-size: 2.0rem !important;} [data-testid="stMain"] h3 {font-size: 1.6rem !important;}
[data-testid="stMain"] h2, [data-testid="stMain"] h3 {padding-top: 0.2rem !important; padding-bottom: 0.2rem !important;}
[data-testid="stMetricValue"], [data-testid="stMetricValue"] p {font-size: 2.2rem !important;}
.st-key-_present_head h1 {font-size: 1.5rem !important; padding: 0 !important; line-height: 1.2;}
.st-key-_present_head [data-testid="stMarkdownContainer"] p {font-size: 1.35rem;}
.st-key-_present_head button p {white-space: nowrap;}
.st-key-_present_head button kbd {display: none;}  /* 14 px is unreadable on a projector: the scene's tooltip names the keys */
[data-testid="stMain"] [data-testid="stMarkdownContainer"] td, [data-testid="stMain"] [data-testid="stMarkdownContainer"] th {font-size: 1.15rem;}
/* Widget text as large as the body text (issue 21: at least 20 px at 1280x720). Number, text and select values
   (a selectbox is a combobox input; multiselects still use baseweb), radio and checkbox/toggle labels, button
   labels, and slider values with their range ends. */
[data-testid="stMain"] input, [data-testid="stMain"] textarea,
[data-testid="stMain"] [data-baseweb="select"], [data-testid="stMain"] [data-baseweb="select"] div,
[data-testid="stMain"] [data-testid="stRadio"] label p, [data-testid="stMain"] [data-testid="stCheckbox"] label p,
[data-testid="stMain"] button p, [data-testid="stMain"] [data-testid="stSliderThumbValue"],
[data-testid="stMain"] [data-testid="stSliderTickBarMin"], [data-testid="stMain"] [data-testid="stSliderTickBarMax"]
{font-size: 1.25rem !important;}
[data-testid="stHeader"] {background: transparent;}
[data-testid="stHeader"], [data-testid="stHeader"] * {pointer-events: none !important;}
[data-testid="stHeader"] button, [data-testid="stHeader"] a, [data-testid="stHeader"] button * {pointer-events: auto !important;}
</style>
"""




def _running_script(path: str) -> bool:
    """``path`` is being executed in this thread (Streamlit runs a page's script in the session's own
    script thread, inside the app script when the app's ``st.navigation`` runs it)."""
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_code.co_filename == path:
            return True
        frame = frame.f_back
    return False


def _page_file() -> str | None:
    """The page script (a file in pages/) that is running in this thread, if any."""
    pages = os.path.join(ROOT, "pages") + os.sep
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_code.co_filename.startswith(pages):
            return frame.f_code.co_filename
        frame = frame.f_back
    return None


def _ensure_app_navigation() -> None:
    """Until some run calls ``st.navigation``, a Streamlit process treats ``pages/`` as an old-style
    multipage app: the first student on a fresh server who opens a shared deep link (say /kl) gets
    that page without app.py, under a navigation of raw file names ("app", "kl", ...). Such a run is
    a browser's request in which app.py is not running: call ``st.navigation`` (public API; it leaves
    the old mode for the whole process) with this page alone, at its own URL path, and rerun, so that
    app.py draws its own navigation and routes the link. At most once per session. (AppTest runs a
    page file alone on purpose and sends no headers: it is left alone.)"""
    ss = st.session_state
    if ss.get("_nav_checked") or _running_script(APP_SCRIPT) or not os.path.isfile(APP_SCRIPT):
        return
    ss["_nav_checked"] = True
    page_file = _page_file()
    try:
        has_browser = bool(st.context.headers)
    except Exception:
        has_browser = False
    if page_file is None or not has_browser:
        return
    # This page at the URL path app.py gives it (its file name without the number: tests/test_app_shell.py
    # checks the convention), so the link resolves now and after the rerun; app.py as the default page.
    slug = re.sub(r"^\d+_", "", os.path.splitext(os.path.basename(page_file))[0])
    st.navigation([st.Page(APP_SCRIPT, default=True), st.Page(page_file, url_path=slug)], position="hidden")
    st.rerun()


def page(title: str, icon: str, question: str | None = None) -> PageContext:
    """Start a page: title, the shared sidebar, presenter styling, URL errors. Call it first.

    In presenter mode the frame is compact (issue 21): the title, small, shares one row with the scene
    bar that ``scenes()`` draws later into the slot kept here; the question is left out (the scene bar
    names what is shown)."""
    _ensure_app_navigation()
    ctx = sidebar()
    st.html(_CSS + (_PRESENT_CSS if ctx.present else ""))
    if ctx.present:
        head = st.container(key="_present_head")
        # the title's column grows with the title, so that "The reparameterization trick" stays on one line
        c_title, c_bar = head.columns([min(1.9, max(1.15, len(title) / 17)), 3], vertical_alignment="center")
        c_title.title(f"{icon} {title}", anchor=False)
        st.session_state["_scene_bar_slot"] = c_bar
    else:
        st.session_state.pop("_scene_bar_slot", None)
        st.title(f"{icon} {title}")
        if question:
            st.caption(question)
    st.session_state["_url_error_slot"] = st.container()
    show_url_errors()
    return ctx




def config_container(label: str = "Configuration", expanded: bool = True):
    """Where a page's configuration goes: an expander that is collapsed in presenter mode."""
    return st.expander(label, expanded=expanded and not present())


def lazy_expander(label: str, key: str, url_keys: Sequence[str] = ()):
    """An expander whose content the page computes and draws only once it is opened, so secondary charts
    do not delay a page's first paint (issue 21: every page draws completely within 1.5 s of being opened).

    Use it as ``box = ui.lazy_expander(...)`` then ``with box: if box.open: draw()``. Opening or closing it
    reruns the page (``on_change="rerun"``), and ``box.open`` says whether it is open in this run. The open
    state is kept in session state under ``key``, so it survives reruns. It is collapsed at first, unless
    the page's link sets one of the widgets inside it (``url_keys``, their URL parameter names): a shared
    link then shows what it was shared for. Presenter scenes should not use it: a scene shows its main
    figure at once."""
    return st.expander(label, expanded=any(k in st.query_params for k in url_keys), key=key, on_change="rerun")



# ---- presenter scenes and self-checks ---------------------------------------------------------

def scenes(page_key: str, items: Sequence[tuple[str, str]]) -> int:
    """In presenter mode: a scene bar "◀ Previous | Scene i of n: <title> | Next ▶" (PageUp / PageDown,
    as a presentation clicker sends), in the row beside the page title (see ``page``); the scene's
    one-line description is its tooltip. Returns the current scene index (0 when not presenting)."""
    key = f"_scene_{page_key}"
    idx = int(st.session_state.get(key, 0))
    idx = min(max(idx, 0), len(items) - 1)
    if not present():
        return idx
    title, text = items[idx]
    slot = st.session_state.get("_scene_bar_slot") or st.container()
    with slot:
        c1, c2, c3 = st.columns([1.5, 3.5, 1.4], vertical_alignment="center", gap="small")
    if c1.button("◀ Previous", key=f"{key}_prev", disabled=idx == 0, shortcut="PageUp"):
        st.session_state[key] = idx - 1
        st.rerun()
    # (the keys are named in the scene's tooltip, not on the buttons: a tooltip there would pop up on the
    # projector each time the clicker's key focuses its button)
    c2.markdown(f"**Scene {idx + 1} of {len(items)}: {title}**",
                help=(f"{text} " if text else "") + "Keys: Page Up and Page Down, as a presentation clicker sends.")
    if c3.button("Next ▶", key=f"{key}_next", disabled=idx == len(items) - 1, shortcut="PageDown"):
        st.session_state[key] = idx + 1
        st.rerun()
    return idx



def scene_filter(scene: int):
    """``show(i)`` for a page's sections: every section normally, only scene ``scene``'s section
    in presenter mode. Use as ``show = ui.scene_filter(ui.scenes(key, SCENES))``."""
    presenting = present()
    return lambda i: not presenting or scene == i


def self_check(page_key: str, questions: Sequence[tuple[str, str]]) -> None:
    """"Predict, then reveal" questions at the end of a page. Each answer stays hidden until
    its Reveal button is pressed. Not in presenter mode (issue 21): there a page shows one scene that
    fits the screen, and the questions would sit inside or below it."""
    show_url_errors()
    if present():
        return
    st.divider()
    st.subheader("🤔 Check yourself: predict, then reveal")
    for i, (q, a) in enumerate(questions):
        key = f"_reveal_{page_key}_{i}"
        st.markdown(f"**{i + 1}. {q}**")
        if st.session_state.get(key):
            st.success(a)
        elif st.button("Reveal", key=f"{key}_btn"):
            st.session_state[key] = True
            st.rerun()


def run_safely(fn: Callable, what: str, fix: str):
    """Call ``fn()``; on an expected error (ValueError and subclasses) show a clear message
    and return None instead of letting a stack trace reach the user."""
    try:
        return fn()
    except ValueError as exc:
        st.error(f"{what}: {exc}\n\n{fix}")
        return None



def fragment_slot():
    """A ``st.container()`` of the page's own to call one live fragment in, alone. If a full run's output
    for the fragment is lost (see docs/streamlit-workarounds.md), the browser drops the fragment's old
    elements and closes the gap. At the top level, the elements below would slide into the fragment's
    place, and its next redraw would overwrite them or crash the page; in its own container, only the
    container empties until the next redraw fills it."""
    return st.container()
