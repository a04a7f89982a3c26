"""URL state: widgets whose values live in the page's query parameters, so a copied link restores the
view. ``bind(key, default, ...)`` before drawing a widget with ``key``, ``publish(key)`` after it;
``slider``, ``number``, ``select`` and ``toggle`` do both. Invalid URL values are reported once with
``st.error`` and replaced by defaults; no user-supplied string is ever rendered as HTML. Also the
shared (all-pages) settings' keys, the settings file (download and load) and ``clamp_state``."""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import streamlit as st

MAX_QUERY_LEN = 64
MAX_SETTINGS_BYTES = 20_000

# Global (all-pages) state lives under keys no widget uses: widget keys are dropped on a page switch.
K_DATASET, K_SEED, K_PRESENT = "g_dataset", "g_seed", "g_present"


def present() -> bool:
    """Presenter mode is on (the shared setting, from the sidebar or ``?present=1``)."""
    return bool(st.session_state.get(K_PRESENT, False))


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



def clamp(value, lo, hi):
    """``value`` moved into [lo, hi], with the type of ``lo`` (an int range gives an int)."""
    return type(lo)(min(max(value, lo), hi))


def clamp_state(key: str, lo, hi) -> None:
    """Keep a bound widget's value, and the value kept for its next visit, inside its range, which may
    have changed since (a smaller dataset, another model): call it before drawing the widget."""
    ss = st.session_state
    for k in (key, f"_keep_{key}"):
        v = ss.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not lo <= v <= hi:
            ss[k] = clamp(v, lo, hi)


# ---- the settings file ------------------------------------------------------------------------

# The training page's run links (core.runs): private keys to a student's runs, not view settings, so a
# settings file (made to be shared) never carries them, and loading one keeps the session's own.
PRIVATE_PARAMS = ("runs", "view")


def shareable(params: dict) -> dict:
    """``params`` without the private run links (``PRIVATE_PARAMS``)."""
    return {k: v for k, v in params.items() if k not in PRIVATE_PARAMS}

def settings_io() -> None:
    """Sidebar: download the current view's settings as JSON, or load such a file."""
    with st.expander("Save or load settings"):
        # Read when the button is clicked, not now: the URL at this point of the run lacks the values that
        # the widgets below (and later fragment reruns) publish, and publish adds them to this dict.
        view = st.session_state["_settings_view"] = {k: st.query_params.get(k) for k in st.query_params.keys()}
        st.download_button("⬇️ Settings (JSON)", data=lambda: json.dumps(shareable(view), indent=2),
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
    return shareable({k[:MAX_QUERY_LEN]: str(v)[:MAX_QUERY_LEN] for k, v in obj.items()})


def apply_settings(params: dict[str, str]) -> None:
    """Put loaded settings into the URL (keeping the session's own run links) and reset the widgets they
    govern, then rerun."""
    params = shareable(params)
    params.update({k: st.query_params[k] for k in PRIVATE_PARAMS if k in st.query_params})
    for k in list(st.session_state.keys()):
        if k in params or k.startswith("_keep_") and k[6:] in params or k in (K_DATASET, K_SEED, K_PRESENT):
            del st.session_state[k]
    st.query_params.from_dict(params)
    st.rerun()
