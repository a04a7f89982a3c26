"""Page glue: the one package in ``core`` that imports Streamlit. Pages use it as ``from core import ui``.

Every page starts with ``ctx = ui.page("Title", "🧠")``, which draws the shared sidebar (dataset,
seed, presenter mode, settings import/export), applies presenter styling and returns a
:class:`PageContext`. The modules, by what they do:

- ``core.ui.url``: URL state. ``bind`` / ``publish`` and the URL-bound widgets (``slider``,
  ``number``, ``select``, ``toggle``) keep values in the query parameters, so a copied link restores
  the view; invalid values are reported with ``st.error``. ``clamp_state``, the settings file.
- ``core.ui.frame``: the page frame, presenter ``scenes`` and ``scene_filter``, ``self_check``,
  ``run_safely`` (the one error wrapper), ``fragment_slot`` and ``lazy_expander`` (an expander drawn
  only once opened).
- ``core.ui.drawing``: ``figure``, ``live_figure``, downloads.
- ``core.ui.models``: the zoo's pretrained models shared by all sessions.
- ``core.ui.live``: ``live_watch``, the browser-side watchdog of a live view, and ``rerun_page``, the full
  rerun a live view asks for.

Streamlit's public API only (tests/test_streamlit_guards.py checks it); the bugs it works around are
in docs/streamlit-workarounds.md.
"""
from __future__ import annotations

# pandas is imported here, when a page first imports this package, and not later by whichever
# session first draws a chart. Plotly and Streamlit import it lazily. When several sessions on a
# fresh server did that at once, one of them got the half-initialised module from Python's import
# system ("partially initialized module 'pandas' has no attribute 'Series'"). Thirty
# protocol-level sessions opening every page at once caught this (2 of 30 KL pages).
import pandas  # noqa: F401

# torch, plotly and the zoo are imported lazily: the home page must draw within 2 s of
# `streamlit run`, and importing torch alone takes about 1.6 s here. The home page warms
# them up in a background thread (``core.settings.warm_up``) once it has drawn.
from core.ui.drawing import (PLOTLY_CONFIG, PLOTLY_STATIC, PRESENT_SCALE, download_csv, figure, figure_html,
                             go_copy, live_figure, to_csv)
from core.ui.frame import (DATASET_LABELS, PageContext, config_container, fragment_slot, glossary,
                           glossary_markdown, lazy_expander, page, run_safely, scene_filter, scenes, self_check,
                           sidebar)
from core.ui.live import LIVE_STALL_S, live_watch, rerun_page
from core.ui.models import activity, configure_torch, pretrained
from core.ui.url import (K_DATASET, K_PRESENT, K_SEED, MAX_QUERY_LEN, MAX_SETTINGS_BYTES, _valid, apply_settings,
                         bind, clamp, clamp_state, number, parse_param, parse_settings, present, publish,
                         quote_user, select, settings_io, show_url_errors, slider, toggle, url_value)

__all__ = [
    "DATASET_LABELS", "K_DATASET", "K_PRESENT", "K_SEED", "LIVE_STALL_S", "MAX_QUERY_LEN", "MAX_SETTINGS_BYTES",
    "PLOTLY_CONFIG", "PLOTLY_STATIC", "PRESENT_SCALE", "PageContext", "activity", "apply_settings", "bind", "clamp",
    "clamp_state", "config_container", "configure_torch", "download_csv", "figure", "figure_html", "fragment_slot",
    "glossary", "glossary_markdown", "go_copy", "lazy_expander", "live_figure", "live_watch", "number", "page",
    "parse_param", "parse_settings", "present", "pretrained", "publish", "quote_user", "rerun_page", "run_safely",
    "scene_filter", "scenes", "select", "self_check", "settings_io", "show_url_errors", "sidebar", "slider", "to_csv",
    "toggle", "url_value",
]
