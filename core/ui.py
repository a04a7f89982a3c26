"""Page glue: the one module in ``core`` that imports Streamlit.

Every page starts with ``ctx = ui.page("Title", "🧠")``, which draws the shared sidebar
(dataset, seed, presenter mode, settings import/export), applies presenter styling and
returns a :class:`PageContext`. URL-bound widgets (``ui.slider``, ``ui.number``,
``ui.select``, ...) keep their values in the URL's query parameters, so a copied link
restores the view; invalid URL values are reported once with ``st.error`` and replaced by
defaults. No user-supplied string is ever rendered as HTML.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import threading

# pandas is imported here, when a page first imports this module, and not later by whichever
# session first draws a chart. Plotly and Streamlit import it lazily. When several sessions on a
# fresh server did that at once, one of them got the half-initialised module from Python's import
# system ("partially initialized module 'pandas' has no attribute 'Series'"). Thirty
# protocol-level sessions opening every page at once caught this (2 of 30 KL pages).
import pandas  # noqa: F401
import streamlit as st

from core.data import DATASETS, Dataset, load_dataset

# torch, plotly and the zoo are imported lazily: the home page must draw within 2 s of
# `streamlit run`, and importing torch alone takes about 1.6 s here. The home page warms
# them up in a background thread (``warm_up``) once it has drawn.

_LOG = logging.getLogger("latent_lab")

PLOTLY_CONFIG = {
    "displaylogo": False,
    "toImageButtonOptions": {"format": "png", "scale": 3},  # high-resolution PNG from the toolbar
    "modeBarButtonsToRemove": ["select2d", "lasso2d"],
}
PRESENT_SCALE = 1.45
MAX_QUERY_LEN = 64
MAX_SETTINGS_BYTES = 20_000

# Global (all-pages) state lives under keys no widget uses: widget keys are dropped on a page switch.
K_DATASET, K_SEED, K_PRESENT = "g_dataset", "g_seed", "g_present"


@dataclass(frozen=True)
class PageContext:
    dataset_name: str
    seed: int
    present: bool

    @property
    def dataset(self) -> Dataset:
        return load_dataset(self.dataset_name)


# ---- text safety -------------------------------------------------------------------------

def quote_user(value: Any, limit: int = 40) -> str:
    """A user-supplied value made safe to show inside Markdown: truncated, in a code span,
    with backticks and angle brackets removed, so it can never render as HTML or a link."""
    s = str(value)
    s = s if len(s) <= limit else s[:limit] + "…"
    s = "".join(ch for ch in s if ch.isprintable() and ch not in "`<>")
    return f"`{s}`" if s else "(empty)"


# ---- URL query parameters ------------------------------------------------------------------

def _url_errors() -> list[str]:
    return st.session_state.setdefault("_url_errors", [])


def _raw_param(name: str) -> str | None:
    try:
        v = st.query_params.get(name)
    except Exception:
        return None
    return None if v is None else str(v)


def parse_param(name: str, raw: str, kind: str, default, lo=None, hi=None, choices: Sequence | None = None):
    """Validate one raw URL value. Returns (value, error_message or None)."""
    shown = quote_user(raw)
    if len(raw) > MAX_QUERY_LEN:
        return default, f"URL parameter `{name}` is too long; using the default {default!r}."
    try:
        if kind == "float":
            v = float(raw)
            if not math.isfinite(v):
                raise ValueError
        elif kind == "int":
            v = int(raw)
        elif kind == "bool":
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError
            v = raw.lower() in ("1", "true", "yes", "on")
        else:
            v = raw
    except ValueError:
        want = {"float": "a number", "int": "a whole number", "bool": "1 or 0"}.get(kind, "a value")
        return default, f"URL parameter `{name}`={shown} is not {want}; using the default {default!r}."
    if choices is not None and v not in choices:
        opts = ", ".join(map(str, choices))
        return default, f"URL parameter `{name}`={shown} is not one of: {opts}; using the default {default!r}."
    if lo is not None and hi is not None and not lo <= v <= hi:
        return default, f"URL parameter `{name}`={shown} is outside [{lo}, {hi}]; using the default {default!r}."
    return v, None


def url_value(name: str, default, kind: str = "str", lo=None, hi=None, choices: Sequence | None = None):
    """The validated value of URL parameter ``name``, or ``default`` (recording a message)."""
    raw = _raw_param(name)
    if raw is None:
        return default
    v, err = parse_param(name, raw, kind, default, lo, hi, choices)
    if err and err not in _url_errors():
        _url_errors().append(err)
    return v


def _kind_of(default) -> str:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    return "str"


def _valid(v, lo=None, hi=None, choices=None) -> bool:
    try:
        if choices is not None and v not in choices:
            return False
        return lo is None or hi is None or lo <= v <= hi
    except TypeError:
        return False


def _url_changed(key: str) -> bool:
    """True when the URL holds a value for ``key`` that this session did not write: a link was
    pasted or edited (Streamlit may keep the session across a reload), so the URL must win.

    A rerun request carries the browser's URL as it was when the request left, which may be
    before the previous run's URL update arrived: a slider moved twice in quick succession sends
    the first value's run an URL that still holds the page's load-time value. Such stale echoes,
    the values this session recently wrote and the URL the previous run saw, are not changes
    (otherwise they would reset the slider the student just moved)."""
    ss = st.session_state
    raw = _raw_param(key)
    seen, ss[f"_seen_{key}"] = ss.get(f"_seen_{key}"), raw
    return raw is not None and raw != seen and raw not in ss.get(f"_pubs_{key}", ())


def _note_published(key: str, text: str | None) -> None:
    """Remember ``text`` as the value this session wrote to the URL for ``key`` (with the last
    few before it, see ``_url_changed``)."""
    ss = st.session_state
    recent = [t for t in ss.get(f"_pubs_{key}", []) if t != text][-7:]
    ss[f"_pubs_{key}"] = recent + [text]


def bind(key: str, default, lo=None, hi=None, choices=None) -> None:
    """Initialise widget state ``key`` from (in order) a URL value this session did not write,
    the value kept from an earlier visit (if still valid), or ``default``. Kept values survive
    page switches under ``_keep_<key>``."""
    ss = st.session_state
    if key in ss and not _url_changed(key):
        return
    keep = ss.get(f"_keep_{key}")
    base = keep if keep is not None and _valid(keep, lo, hi, choices) else default
    ss[key] = url_value(key, base, _kind_of(default), lo, hi, choices)


def publish(key: str) -> None:
    """Write widget state ``key`` to the URL (and keep it for the next visit and the settings file).
    Call it after drawing the widget that ``bind`` initialised."""
    v = st.session_state.get(key)
    st.session_state[f"_keep_{key}"] = v
    text = str(int(v)) if isinstance(v, bool) else str(v)
    _note_published(key, text)
    st.session_state.get("_settings_view", {})[key] = text  # what '⬇️ Settings (JSON)' saves
    try:
        st.query_params[key] = text
    except Exception:  # AppTest or a closed session: the URL is best-effort
        pass


# Temporary aliases while pages switch to the public names (the lead removes them).
_bind, _publish = bind, publish


def slider(label: str, key: str, lo: float, hi: float, default: float, step: float | None = None, **kw):
    """``st.slider`` bound to URL parameter ``key`` (number in [lo, hi])."""
    default = type(lo)(default) if not isinstance(lo, bool) else default
    bind(key, default, lo, hi)
    v = st.slider(label, lo, hi, step=step, key=key, **kw)
    publish(key)
    return v


def number(label: str, key: str, lo: float, hi: float, default: float, step: float | None = None, **kw):
    """``st.number_input`` bound to URL parameter ``key``."""
    bind(key, default, lo, hi)
    v = st.number_input(label, min_value=lo, max_value=hi, step=step, key=key, **kw)
    publish(key)
    return v


def select(label: str, key: str, options: Sequence, default=None, radio: bool = False, **kw):
    """``st.selectbox`` (or ``st.radio`` / ``st.segmented_control`` style radio) bound to URL parameter ``key``."""
    options = list(options)
    default = options[0] if default is None else default
    bind(key, default, choices=options)
    widget = st.radio if radio else st.selectbox
    v = widget(label, options, key=key, **kw)
    publish(key)
    return v


def toggle(label: str, key: str, default: bool = False, **kw) -> bool:
    bind(key, default)
    v = st.toggle(label, key=key, **kw)
    publish(key)
    return v


def show_url_errors(container=None) -> None:
    """Report invalid URL values collected so far, in ``container`` (default: the slot that
    ``page()`` reserved under the title). Pages call it again at the end (``self_check`` does),
    so errors from the page's own URL-bound widgets show on the same run."""
    errs = st.session_state.pop("_url_errors", [])
    if errs:
        target = container if container is not None else st.session_state.get("_url_error_slot") or st
        target.error("Some settings in the link were invalid and were replaced by defaults:\n\n"
                 + "\n".join(f"- {e}" for e in errs) + "\n\nFix or remove them in the address bar.")


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
.st-key-_present_head h1 {font-size: 1.6rem !important; padding: 0 !important; line-height: 1.2;}
.st-key-_present_head [data-testid="stMarkdownContainer"] p {font-size: 1.35rem;}
.st-key-_present_head button p {font-size: 1.05rem; white-space: nowrap;}
[data-testid="stMain"] [data-testid="stMarkdownContainer"] td, [data-testid="stMain"] [data-testid="stMarkdownContainer"] th {font-size: 1.15rem;}
[data-testid="stHeader"] {background: transparent;}
[data-testid="stHeader"], [data-testid="stHeader"] * {pointer-events: none !important;}
[data-testid="stHeader"] button, [data-testid="stHeader"] a, [data-testid="stHeader"] button * {pointer-events: auto !important;}
</style>
"""


def _leave_pages_directory_mode() -> None:
    """Until some run calls ``st.navigation``, a Streamlit process treats ``pages/`` as an old-style
    multipage app: the first student on a fresh server who opens a shared deep link (say /kl) gets
    that page without app.py, under a navigation of raw file names ("app", "kl", ...). Leave that
    mode and rerun, so app.py draws its own navigation and routes the link (once per process)."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a Streamlit without the old mode
        return
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def page(title: str, icon: str, question: str | None = None) -> PageContext:
    """Start a page: title, the shared sidebar, presenter styling, URL errors. Call it first.

    In presenter mode the frame is compact (issue 21): the title, small, shares one row with the scene
    bar that ``scenes()`` draws later into the slot kept here; the question is left out (the scene bar
    names what is shown)."""
    _leave_pages_directory_mode()
    ctx = sidebar()
    st.html(_CSS + (_PRESENT_CSS if ctx.present else ""))
    if ctx.present:
        head = st.container(key="_present_head")
        c_title, c_bar = head.columns([1.15, 3], vertical_alignment="center")
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


def present() -> bool:
    return bool(st.session_state.get(K_PRESENT, False))


def config_container(label: str = "Configuration", expanded: bool = True):
    """Where a page's configuration goes: an expander that is collapsed in presenter mode."""
    return st.expander(label, expanded=expanded and not present())


# ---- figures, downloads and export ------------------------------------------------------------

def figure(fig, key: str | None = None, alt: str | None = None, html_name: str | None = None, **kw):
    """Draw a Plotly figure with the house toolbar (PNG export at 3x). ``alt`` is the text
    alternative for screen readers. ``html_name`` adds a download of the figure (with its
    animation, if any) as a standalone offline HTML file."""
    fig = _presented(fig)
    out = st.plotly_chart(fig, key=key, config=PLOTLY_CONFIG, alt=alt, **kw)
    if html_name:
        st.download_button(f"⬇️ Download {html_name} (HTML)", data=lambda f=fig: figure_html(f),
                           file_name=f"{html_name}.html", mime="text/html", on_click="ignore",
                           key=f"dl_{key or html_name}")
    return out


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLOTLY_STATIC = "plotly.min.js"  # in <app>/static/, served at app/static/ (server.enableStaticServing)


@functools.cache
def _plotly_static() -> bool:
    """Put the plotly.js that ships with the Python plotly package into the app's static folder
    (once per process; nothing is downloaded). False if that is not possible (read-only install)."""
    import shutil

    import plotly
    src = os.path.join(os.path.dirname(plotly.__file__), "package_data", PLOTLY_STATIC)
    dst = os.path.join(ROOT, "static", PLOTLY_STATIC)
    try:
        if not os.path.isfile(dst) or os.path.getsize(dst) != os.path.getsize(src):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            tmp = f"{dst}.{os.getpid()}.tmp"
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        return True
    except OSError:
        return False


@functools.cache
def _live_component():
    with open(os.path.join(ROOT, "core", "js", "live_figure.js"), encoding="utf-8") as f:
        js = f.read()
    return st.components.v2.component(
        "latent_lab_live_figure", js=js,
        html='<div class="ll-live"><div class="ll-plot"></div><div class="ll-error" role="alert"></div></div>',
        css=".ll-live{width:100%}.ll-error{color:#b00020}",
        isolate_styles=False)  # no shadow root: plotly.js styles its toolbar with global CSS


def live_figure(fig, key: str, alt: str, updater: str, watch: dict[str, str], values: dict[str, float]) -> None:
    """A Plotly figure that follows Streamlit sliders in the browser, before the server replies.

    ``fig`` is the figure Python made from ``values``; ``watch`` maps each of those parameter names to
    the key of the ``st.slider`` that sets it; ``updater`` names the function in core/js/live_figure.js
    that recomputes the figure's data from slider values (it mirrors the Python figure function).
    Falls back to :func:`figure` (a server round trip per move) when plotly.js cannot be served.
    """
    if not _plotly_static() or not st.get_option("server.enableStaticServing"):
        figure(fig, key=key, alt=alt)
        return
    fig = _presented(fig)
    height = fig.layout.height or 450
    _live_component()(data={"fig": json.loads(fig.to_json()), "updater": updater, "watch": watch,
                            "values": {k: float(v) for k, v in values.items()}, "alt": alt,
                            "config": {**PLOTLY_CONFIG, "responsive": True},
                            "plotly_src": f"app/static/{PLOTLY_STATIC}"},
                      key=key, height=int(height))


def _presented(fig):
    """``fig`` with presenter-mode font sizes when presenter mode is on (a copy), else ``fig``."""
    if not present():
        return fig
    from core.figures import with_font_scale
    return with_font_scale(go_copy(fig), PRESENT_SCALE)  # ticks, legend, annotations >= 16 px


def go_copy(fig):
    import plotly.graph_objects as go
    return go.Figure(fig)


def figure_html(fig) -> str:
    """A standalone HTML file with plotly.js inlined: opens offline, animations included."""
    return fig.to_html(include_plotlyjs=True, full_html=True, config=PLOTLY_CONFIG, auto_play=False)


def download_csv(label: str, rows: Sequence[dict] | dict, file_name: str, key: str | None = None) -> None:
    """Metrics as CSV (rows of dicts, or a dict of equal-length columns)."""
    st.download_button(label, data=lambda: to_csv(rows), file_name=file_name, mime="text/csv",
                       on_click="ignore", key=key)


def to_csv(rows: Sequence[dict] | dict) -> str:
    import csv
    import io
    if isinstance(rows, dict):
        keys = list(rows)
        rows = [dict(zip(keys, vals)) for vals in zip(*rows.values())]
    buf = io.StringIO()
    if rows:
        keys = [k for k in rows[0] if not isinstance(rows[0][k], (list, dict))]
        w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in keys})
    return buf.getvalue()


def settings_io() -> None:
    """Sidebar: download the current view's settings as JSON, or load such a file."""
    with st.expander("Save or load settings"):
        # Read when the button is clicked, not now: the URL at this point of the run lacks the values that
        # the widgets below (and later fragment reruns) publish, and publish adds them to this dict.
        view = st.session_state["_settings_view"] = {k: st.query_params.get(k) for k in st.query_params.keys()}
        st.download_button("⬇️ Settings (JSON)", data=lambda: json.dumps(dict(view), indent=2),
                           file_name="latent-lab-settings.json", mime="application/json", on_click="ignore",
                           key="_dl_settings")
        up = st.file_uploader("Load settings (JSON)", type=["json"], key="_up_settings")
        if up is not None and st.session_state.get("_settings_loaded") != up.file_id:
            st.session_state["_settings_loaded"] = up.file_id
            try:
                loaded = parse_settings(up.read(MAX_SETTINGS_BYTES + 1))
            except ValueError as exc:
                st.error(str(exc))
            else:
                apply_settings(loaded)


def parse_settings(data: bytes) -> dict[str, str]:
    """Validate a settings file: a flat JSON object of short scalar values. Raises ValueError."""
    if len(data) > MAX_SETTINGS_BYTES:
        raise ValueError(f"The settings file is larger than {MAX_SETTINGS_BYTES // 1000} kB; it cannot be a Latent Lab settings file.")
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"The settings file is not valid JSON ({exc.__class__.__name__}). Download a fresh one with '⬇️ Settings (JSON)'.") from None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, (str, int, float, bool)) for k, v in obj.items()):
        raise ValueError("The settings file must be a JSON object of names to single values, as saved by '⬇️ Settings (JSON)'.")
    return {k[:MAX_QUERY_LEN]: str(v)[:MAX_QUERY_LEN] for k, v in obj.items()}


def apply_settings(params: dict[str, str]) -> None:
    """Put loaded settings into the URL and reset the widgets they govern, then rerun."""
    for k in list(st.session_state.keys()):
        if k in params or k.startswith("_keep_") and k[6:] in params or k in (K_DATASET, K_SEED, K_PRESENT):
            del st.session_state[k]
    st.query_params.from_dict(params)
    st.rerun()


# ---- shared models -------------------------------------------------------------------------

SWITCH_INTERVAL_S = 0.0005


def configure_torch():
    """Import torch with one intra-op thread per process: many sessions share two cores and
    more threads oversubscribe them (see bench/). Override with LATENT_LAB_TORCH_THREADS.

    Also shortens the interpreter's GIL switch interval from 5 ms to 0.5 ms (override with
    LATENT_LAB_SWITCH_INTERVAL, in seconds). A training thread releases the GIL for every torch
    op and must get it back after; while a page redraw runs, each reacquisition could wait a whole
    interval, so a 20 ms redraw stretched into ~60 ms of stalled training (bench/bench_training.py).

    Once ``core.settings`` exists (process-wide settings applied once), this defers to it
    (``import_torch()``, else ``apply()``) and returns torch; the pages' calls are then removed."""
    import importlib
    import sys

    try:
        settings = importlib.import_module("core.settings")
    except ModuleNotFoundError:
        settings = None
    if settings is not None and hasattr(settings, "import_torch"):
        return settings.import_torch()
    if settings is not None and hasattr(settings, "apply"):
        settings.apply()
        import torch
        return torch
    import torch
    try:
        sys.setswitchinterval(float(os.environ.get("LATENT_LAB_SWITCH_INTERVAL", SWITCH_INTERVAL_S)))
    except ValueError:  # a bad override: keep the interpreter's value
        pass
    want = max(1, int(os.environ.get("LATENT_LAB_TORCH_THREADS", "1")))
    if torch.get_num_threads() != want:
        torch.set_num_threads(want)
    return torch


_warm_lock = threading.Lock()
_warmed = False


def warm_up() -> None:
    """Import torch, plotly and the zoo's default models in a background thread, once per process,
    so the first lesson page opens quickly after the home page has drawn."""
    global _warmed
    with _warm_lock:
        if _warmed:
            return
        _warmed = True

    def work():
        # Exit stays quick and safe. The thread is not a daemon: at interpreter exit, a daemon thread is ended
        # the next time it takes the GIL (CPython issue 124149), by pthread_exit on Linux, whose unwinding
        # through torch's C++ frames (an import, a model load) can abort the process. Instead it stops between
        # steps once the main thread has finished (Python marks the main thread stopped before it joins the
        # others), so exit waits for one step (about 1.6 s for `import torch`), not the whole warm-up.
        exiting = lambda: not threading.main_thread().is_alive()  # noqa: E731
        configure_torch()
        if exiting():
            return
        import plotly.express  # noqa: F401

        from core import zoo
        for ds in DATASETS:
            for kind in ("ae", "vae"):
                if exiting():
                    return
                try:
                    zoo.pretrained(ds, kind, 1.0, 16)
                except Exception:  # a missing asset is reported by the page that needs it
                    pass

    threading.Thread(target=work, name="latent-lab-warm-up", daemon=False).start()


@st.cache_resource(show_spinner="Loading the pretrained model…", max_entries=64)
def pretrained(dataset: str, kind: str, beta: float, latent_dim: int, variant: str = ""):
    """A read-only model from ``core.zoo`` (a ``zoo.Pretrained``), shared by all sessions."""
    configure_torch()
    from core import zoo
    return zoo.pretrained(dataset, kind, beta, latent_dim, variant)


@st.cache_resource(show_spinner=False, max_entries=64)
def activity(dataset: str, kind: str, beta: float, latent_dim: int, variant: str = ""):
    """``core.units.heldout_activity`` of a zoo model on its held-out split: the one active-unit
    count (Burda et al., 2016) that every page shows for that model."""
    from core import units
    return units.heldout_activity(pretrained(dataset, kind, beta, latent_dim, variant), load_dataset(dataset))


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
    c2.markdown(f"**Scene {idx + 1} of {len(items)}: {title}**", help=text or None)
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
    its Reveal button is pressed."""
    show_url_errors()
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


# ---- fragments never send cached-element references --------------------------------------------

def _uncached_in_fragments(populate: Callable) -> Callable:
    """Wrap Streamlit's ``populate_hash_if_needed`` so that no element drawn inside a fragment is
    marked cacheable: it is always sent in full, never as a ``ref_hash`` reference.

    Why (Streamlit 1.67, ``runtime/forward_msg_queue.py``): when a fragment run starts, the
    session's queue of unsent messages is cleared of that fragment's deltas. A reference message
    has no delta, so it carries no fragment id and survives the clear, while the blocks it sits in
    are dropped. The browser then receives an element at a path whose parent block it no longer
    has, or where another element now sits: "'setIn' cannot be called on an ElementNode" (or
    "Cannot set a node at a delta path", Streamlit #15084), and the page goes blank. In a traced
    10-session load test, the page that crashed had just received a charts fragment run that was
    interrupted and delivered nothing but one reference message. An element is sent as a reference
    when it is identical to one sent before (at least 10 kB): on the live page, reconstructions
    between two timeline snapshots, or charts that did not change between two redraws. Live
    elements change on nearly every redraw, so the cache saved little there; elements outside
    fragments are still cached."""
    def populate_hash(msg) -> None:
        populate(msg)
        if msg.WhichOneof("type") == "delta" and msg.delta.fragment_id:
            msg.metadata.cacheable = False
    populate_hash.wrapped = populate
    return populate_hash


def _wrap_once(owner: Any, name: str, wrap: Callable[[Callable], Callable], broken: str) -> bool:
    """Replace ``owner.name`` with ``wrap(owner.name)`` once per process (a wrapper carries
    ``.wrapped``). If Streamlit's internals moved, log ``broken`` and change nothing. Returns True
    if the guard is in place."""
    current = getattr(owner, name, None)
    if current is None:
        _LOG.warning("Streamlit changed: %s (see core.ui)", broken)
        return False
    if not hasattr(current, "wrapped"):
        setattr(owner, name, wrap(current))
    return True


def install_fragment_cache_guard() -> bool:
    """Install ``_uncached_in_fragments`` (see ``_wrap_once``). The pages add the other half: each
    live fragment is called in its own ``fragment_slot()``."""
    from streamlit.runtime.scriptrunner_utils import script_run_context as src
    return _wrap_once(src, "populate_hash_if_needed", _uncached_in_fragments,
                      "fragments may send cached-element references")


install_fragment_cache_guard()


# ---- a fragment run's output is not dropped by the next fragment's request ------------------------

def _after_finished_runs(create: Callable) -> Callable:
    """Wrap Streamlit's ``AppSession._create_scriptrunner`` so that a fragment rerun which finds the
    session's script runner already stopped starts its new runner one event-loop turn later, after
    the stopped runner's events have been handled.

    Why (Streamlit 1.67, ``runtime/app_session.py``): a timer fragment's rerun request that arrives
    just after the previous fragment run finished, but before the event loop has handled that run's
    events, creates a new ``ScriptRunner`` at once; the session then ignores every event of the
    previous runner ("non-current ScriptRunner"), including all of its deltas. So when two fragment
    timers fire together (the live status every 0.5 s and the charts), the first run's output was
    often thrown away: with one student alone, 4 of 30 progress-line updates in 15 s never reached
    the browser (longest gap 1.5 s), and the protocol-level client of ``bench/bench_sessions.py``
    saw two thirds of them lost. A stopped runner has posted all of its events to the loop before it
    refuses a request, and the loop runs callbacks in order, so one turn later they are handled."""
    def create_scriptrunner(self, rerun_data) -> None:
        previous = self._scriptrunner
        if previous is None or not rerun_data.fragment_id:
            return create(self, rerun_data)

        def later() -> None:
            from streamlit.runtime.app_session import AppSessionState
            if self._state == AppSessionState.SHUTDOWN_REQUESTED:
                return
            current = self._scriptrunner
            if current is None or current is previous:
                create(self, rerun_data)  # the stopped runner's events are handled by now
            elif not current.request_rerun(rerun_data):  # another request started a runner meanwhile:
                create_scriptrunner(self, rerun_data)   # it takes this fragment too, unless it stopped too

        self._event_loop.call_soon(later)
    create_scriptrunner.wrapped = create
    return create_scriptrunner


def install_fragment_rerun_guard() -> bool:
    """Install ``_after_finished_runs`` (see ``_wrap_once``)."""
    from streamlit.runtime.app_session import AppSession
    return _wrap_once(AppSession, "_create_scriptrunner", _after_finished_runs,
                      "a fragment's output may be dropped by the next request")


install_fragment_rerun_guard()


def fragment_slot():
    """A ``st.container()`` of the page's own to call one live fragment in, alone: the other half of
    the guard above. If a full run's output for the fragment is lost the same way, the browser drops
    the fragment's old elements and closes the gap. At the top level, the elements below would slide
    into the fragment's place, and its next redraw would overwrite them or crash the page; in its
    own container, only the container empties until the next redraw fills it."""
    return st.container()


# ---- live views that stop redrawing ---------------------------------------------------------------

# A live view that has not redrawn for this long asks for a full rerun (from the browser). It redraws every
# 0.5 s, but in the burst of ten students pressing Start at once, idle sessions went up to 3.2 s between
# redraws (their browsers and the server were busy, not stalled): a full rerun there only adds load.
LIVE_STALL_S = 5.0


@functools.cache
def _watch_component():
    with open(os.path.join(ROOT, "core", "js", "live_watch.js"), encoding="utf-8") as f:
        js = f.read()
    return st.components.v2.component("latent_lab_live_watch", js=js, html='<div class="ll-watch"></div>',
                                      css=".ll-watch{display:none}")


def live_watch(active: bool, key: str = "live_watch") -> bool:
    """Call first in a live view (a fragment with ``run_every``), on every redraw. Returns True when
    the browser reports that the view stopped redrawing: the caller then calls ``st.rerun()`` (a full
    run, which arms the fragment timers again).

    Under load, a browser can be left with no auto-rerun timer at all (Streamlit's frontend clears
    every timer when a full run starts and re-arms them from the run's messages). The page then
    sends nothing until the student clicks; a 10-session load test caught one such session, silent
    for 15 s, its training stopped by the lapsed lease. This draws a hidden component
    (core/js/live_watch.js) that gets a new heartbeat on each redraw and, while ``active``, asks for a
    rerun when none came for ``LIVE_STALL_S`` (its own clock runs in a Web Worker). Public API only:
    the request is the component's trigger value, an ordinary widget event."""
    result = _watch_component()(
        data={"beat": f"{time.time_ns():x}", "active": bool(active), "stall_ms": int(LIVE_STALL_S * 1000)},
        key=key, on_stalled_change=lambda: None)
    stalled = getattr(result, "stalled", None) is not None
    if stalled:
        _LOG.warning("%s A live view did not redraw for %.1f s: rerunning its page.", time.strftime("%H:%M:%S"),
                     LIVE_STALL_S)
    return stalled
