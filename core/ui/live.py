"""Live views, fragments that redraw on a timer: their browser-side watchdog (``live_watch``) and the
full rerun they ask for (``rerun_page``)."""
from __future__ import annotations

import functools
import logging
import os
import time

import streamlit as st

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_LOG = logging.getLogger("latent_lab")

# ---- live views that stop redrawing ---------------------------------------------------------------

# A live view that has not redrawn for this long asks for a full rerun (from the browser). It redraws every
# 0.5 s, but in the burst of ten students pressing Start at once, idle sessions went up to 3.2 s between
# redraws (their browsers and the server were busy, not stalled): a full rerun there only adds load.
LIVE_STALL_S = 5.0


@functools.cache
def _watch_component():
    with open(os.path.join(ROOT, "core", "js", "live_watch.js"), encoding="utf-8") as f:
        js = f.read()
    # No shadow root: the page's CSS (core.ui.frame) hides the element's whole container, gap included.
    return st.components.v2.component("latent_lab_live_watch", js=js, html='<div class="ll-watch"></div>',
                                      isolate_styles=False)


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


# ---- a full rerun asked for by a timer ------------------------------------------------------------

def rerun_page() -> None:
    """A full rerun of this page asked for by a live view (a fragment on a timer), not by a click:
    a run ended, the view needs other timers, the browser saw no redraw.

    Streamlit 1.67 folds the rerun requests that wait for the script thread into one, and the newer
    request's page wins. A plain ``st.rerun()`` issued while the student's click on another page in
    the sidebar waits would so undo the click: the student stays on this page
    (docs/streamlit-workarounds.md, section 5). Streamlit acts on a waiting request at its next yield point,
    any element the script sends; so this sends one first (an empty placeholder, which is also how
    ``st.rerun`` yields after queuing its own request), and the student's page switch wins. Only the
    instant between that yield point and the request is left."""
    st.empty()
    st.rerun()
