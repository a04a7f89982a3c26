"""A small version of bench/bench_load.py in the suite: three students training at once on one
server. No exceptions, no cross-talk between sessions, runs survive a page switch, and the CPU
returns to idle after the tabs close. (Update rates are measured by the benchmark, not here.)"""
import pytest

from bench.bench_load import load_test


@pytest.mark.browser
@pytest.mark.slow
def test_three_sessions_train_at_once_without_cross_talk():
    r = load_test(3, watch_seconds=6.0)
    assert all(s > 0 for s in r["steps"])
    assert r["idle_after_close_s"] is not None
