"""Three students on one server, in real Chromium: the load test of bench/bench_load.py at a size
the suite can afford (and five driven over the protocol, bench/bench_sessions.py). It checks behaviour only: no exception, no cross-talk between sessions, every
run kept and training again after a page switch, and the server's CPU idle within a few seconds of
the tabs closing. How often each view updates is a timing, measured by
``python -m bench.bench_load --sessions 10`` and ``python -m bench.bench_sessions`` (figures in
the README), not asserted here."""
from __future__ import annotations

import math

import pytest

from bench.bench_load import load_test, problems


@pytest.mark.browser
@pytest.mark.slow
def test_three_sessions_train_at_once_without_cross_talk_and_stop_when_closed(browser):
    r = load_test(3, watch_seconds=3, settle_seconds=2, idle_timeout=20, browser=browser)
    assert problems(r, target_s=math.inf) == []
    # Each session trained (its progress line moved while all three were watched) ...
    assert all(n > 0 for n in r["updates_per_session"]), r["updates_per_session"]
    # ... and its history belongs to it: its own beta (checked in problems) and its own steps.
    assert r["steps_per_s_per_session"] and min(r["steps_per_s_per_session"]) > 0
    # Memory is bounded and the trainers stopped with the tabs (leases of 3 s).
    assert r["peak_rss_mb"] < 4096 and r["idle_after_close_s"] is not None


@pytest.mark.slow
def test_protocol_level_sessions_train_and_get_their_own_redraws():
    """bench/bench_sessions.py at a size the suite can afford: five sessions driven over Streamlit's
    WebSocket protocol (bench.st_client) train at once, each sees only its own run and β, and the
    server is idle again once they disconnect."""
    from bench.bench_sessions import problems as session_problems
    from bench.bench_sessions import session_test

    r = session_test(5, watch_seconds=4, settle_seconds=2, idle_timeout=20)
    assert session_problems(r, target_s=math.inf) == []
    assert all(n > 0 for n in r["updates_per_session"]), r["updates_per_session"]
    assert min(r["samples_per_s_per_session"]) > 0
    assert r["peak_rss_mb"] < 4096 and r["idle_after_close_s"] is not None
