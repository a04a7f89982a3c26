"""Charts on request: a live view's slower charts in a fragment with no timer of its own, asked for by the
browser a moment after each redraw that says they are due (``ui.live_watch``'s ``charts`` token, and a
widget callback that reruns only the charts' keyed fragment). The training page uses it while more than
two runs train (pages/4_train.py ``live_section``), so that a page never has two fragment timers
(docs/streamlit-workarounds.md, bug 2)."""
from __future__ import annotations

import re

import pytest

CHARTS_APP = """
import time
import streamlit as st
from core import ui

ss = st.session_state
ss["full_runs"] = ss.get("full_runs", 0) + 1
st.write(f"full run {ss['full_runs']}")


def ask_charts():
    st.rerun("charts")


def token():
    now = time.monotonic()
    if now - ss.get("charts_at", 0.0) >= 1.0:  # due every second
        ss["charts_at"] = now
        ss["token"] = ss.get("token", 0) + 1
    return str(ss.get("token", 0))


@st.fragment(run_every=0.5)
def live():
    if ui.live_watch(True, key="watch", charts=token(), on_charts=ask_charts):
        st.rerun()
    ss["ticks"] = ss.get("ticks", 0) + 1
    st.write(f"tick {ss['ticks']}")


@st.fragment(key="charts")
def charts():
    ss["charts_at"] = time.monotonic()
    ss["charts"] = ss.get("charts", 0) + 1
    st.write(f"charts {ss['charts']} after tick {ss.get('ticks', 0)}")


live()
charts()
"""


def _count(page, what: str) -> int:
    return int(re.search(rf"{what} (\d+)", page.inner_text("body")).group(1))


@pytest.mark.browser
def test_charts_fragment_without_a_timer_redraws_on_request_between_ticks(browser, tmp_path):
    """In Chromium: the charts' fragment, which has no timer, redraws about once a second, each time on its
    own (only it reruns: the page runs once in full, and the live fragment's timer keeps ticking twice a
    second); nothing reaches the console."""
    from tests.conftest import ConsoleWatch, start_server, stop_server

    app = tmp_path / "charts.py"
    app.write_text(CHARTS_APP)
    proc, url = start_server(app=app, log_path=tmp_path / "server.log")
    try:
        page = browser.new_page()
        watch = ConsoleWatch(page)
        page.goto(url)
        page.wait_for_function("() => /tick [3-9]/.test(document.body.innerText)", timeout=60_000)
        ticks0, charts0 = _count(page, "tick"), _count(page, "charts")
        page.wait_for_timeout(5000)
        ticks, charts = _count(page, "tick") - ticks0, _count(page, "charts") - charts0
        assert ticks >= 7, f"the live fragment ticked {ticks} times in 5 s (timer: 0.5 s)"
        assert 3 <= charts <= 6, f"the charts redrew {charts} times in 5 s (due every second)"
        assert "full run 1" in page.inner_text("body"), "a request for the charts reran the whole page"
        assert page.locator("[data-testid=stException]").count() == 0
        watch.check()
        page.close()
    finally:
        stop_server(proc)


def test_no_charts_token_no_request():
    """Server side: without a token the component's data carries no charts field (the page asks nothing),
    and a run its trigger did not cause calls no callback (AppTest sends no component events)."""
    from streamlit.testing.v1 import AppTest

    script = ("import streamlit as st\nfrom core import ui\n"
              "calls = st.session_state.setdefault('calls', [])\n"
              "ui.live_watch(True, key='w', charts=None, on_charts=lambda: calls.append(1))\n"
              "ui.live_watch(True, key='w2', charts='3', on_charts=lambda: calls.append(2))\n")
    at = AppTest.from_string(script, default_timeout=30)
    at.run()
    at.run()
    assert not at.exception
    assert at.session_state["calls"] == []


def test_the_training_page_has_one_fragment_timer():
    """pages/4_train.py: one ``run_every`` (the live view); the charts' fragment has a key and no timer."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "pages" / "4_train.py").read_text(encoding="utf-8")
    assert len(re.findall(r"st\.fragment\(\s*run_every\s*=", text)) == 1
    assert re.search(r"st\.fragment\(\s*key\s*=\s*CHARTS_FRAGMENT\s*\)", text)
