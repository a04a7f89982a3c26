"""core.sharing: fair training slots, redraws first, lower priority for training threads."""
from __future__ import annotations

import threading
import time

import pytest

from core.sharing import FairSlots, Redraws, lower_thread_priority
from tests.test_training import _thread_nice


def _queue_through(slots: FairSlots, n_threads: int = 8) -> tuple[int, list[int]]:
    """(peak holders, entry order) when ``n_threads`` threads arrive one after another (each
    holds a slot or has queued before the next starts) while the first holders wait."""
    active, peak, order = [0], [0], []
    lock, go = threading.Lock(), threading.Event()

    def work(i):
        with slots:
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
                order.append(i)
            go.wait(10)  # the first holders keep their slots until everyone has queued
            time.sleep(0.01)
            with lock:
                active[0] -= 1

    threads = []
    for i in range(n_threads):
        threads.append(threading.Thread(target=work, args=(i,)))
        threads[-1].start()
        deadline = time.monotonic() + 10
        while len(order) + len(slots._waiting) < i + 1 and time.monotonic() < deadline:
            time.sleep(0.001)
    go.set()
    for t in threads:
        t.join(10)
    return peak[0], order


def test_fair_slots_limit_concurrency_and_serve_in_order():
    peak, order = _queue_through(FairSlots(1))
    assert peak == 1 and order == list(range(8)), order  # first come, first served
    peak, order = _queue_through(FairSlots(2))
    assert peak == 2 and sorted(order) == list(range(8)) and set(order[:2]) == {0, 1}  # two at a time


def test_fair_slots_give_a_freed_slot_to_the_lowest_rank_read_at_hand_over():
    """Rule 1, by need: a freed slot goes to the waiter with the lowest rank, ties in arrival order,
    and a rank that changes while its thread waits counts with its value at the hand-over (a run
    whose page has just shown its newest step goes first). First come, first served would let
    ``a`` in first here."""
    slots = FairSlots(1)
    slots.acquire()  # the holder: everyone below waits
    ranks = {"a": 1, "b": 1, "c": 0}
    order, lock = [], threading.Lock()

    def work(name):
        with slots.turn(lambda: ranks[name]):
            with lock:
                order.append(name)

    threads = []
    for name in "abc":  # arrive in this order
        threads.append(threading.Thread(target=work, args=(name,)))
        threads[-1].start()
        deadline = time.monotonic() + 10
        while len(slots._waiting) < len(threads) and time.monotonic() < deadline:
            time.sleep(0.001)
    ranks["b"] = 0  # b's page drew its newest step while b waited: b now ties with c, and came first
    slots.release()
    for t in threads:
        t.join(10)
    assert order == ["b", "c", "a"], order
    assert slots._held == 0 and not slots._waiting


def test_lower_thread_priority_only_lowers():
    out = {}

    def work():
        out["none"] = lower_thread_priority(0)
        out["new"] = lower_thread_priority(3)
        out["read"] = _thread_nice(threading.get_native_id())

    th = threading.Thread(target=work)
    th.start()
    th.join()
    assert out["none"] is None
    assert out["new"] == out["read"] == min(19, _thread_nice(threading.get_native_id()) + 3)


def test_redraws_decorator_counts_nesting_and_keeps_the_name():
    redraws = Redraws(max_wait=0.25)
    seen = []

    @redraws
    def status(x):
        seen.append(redraws.busy)
        with redraws:
            seen.append(redraws.busy)
        if x:
            raise RuntimeError("rerun")  # Streamlit's st.rerun() leaves a fragment with an exception
        return "drawn"

    assert status.__name__ == "status" and status.__qualname__.endswith("status")
    assert status(False) == "drawn" and seen == [True, True] and not redraws.busy
    with pytest.raises(RuntimeError):
        status(True)
    assert not redraws.busy  # left even when the body raised
    off = Redraws(max_wait=0.0)  # LATENT_LAB_REDRAW_WAIT=0: trainers never give way
    with off:
        assert not off.busy
    t0 = time.perf_counter()
    with redraws:
        redraws.wait_until_done()  # still busy: returns after max_wait
    assert 0.2 <= time.perf_counter() - t0 < 2


def test_fair_slots_resize_lets_waiters_in_and_drains_extra_holders():
    slots = FairSlots(1)
    slots.__enter__()  # one holder: the next one waits
    entered = threading.Event()

    def wait_for_slot():
        with slots:
            entered.set()
            time.sleep(0.05)

    th = threading.Thread(target=wait_for_slot)
    th.start()
    assert not entered.wait(0.2)
    slots.resize(2)  # a second slot: the waiter gets it at once
    assert entered.wait(5)
    th.join(5)
    slots.resize(1)
    slots.__exit__(None, None, None)  # the first holder leaves
    got = threading.Event()
    th = threading.Thread(target=lambda: (slots.__enter__(), got.set()))
    th.start()
    assert got.wait(5)  # one slot, free again
    th.join(5)
    blocked = threading.Event()
    th2 = threading.Thread(target=lambda: (slots.__enter__(), blocked.set()))
    th2.start()
    assert not blocked.wait(0.2)  # n is 1 again: a second holder waits
    slots.__exit__(None, None, None)
    assert blocked.wait(5)
    th2.join(5)


def test_configure_sets_the_shared_objects_from_settings(monkeypatch):
    from core import sharing
    from core.settings import Settings

    monkeypatch.setattr(sharing, "_trainer_nice", sharing._trainer_nice)
    old = (sharing.REDRAWS.max_wait, sharing.TRAINING_SLOTS.n)
    try:
        sharing.configure(Settings(redraw_wait=0.0, training_slots=5, trainer_nice=3))
        assert sharing.REDRAWS.max_wait == 0.0 and sharing.TRAINING_SLOTS.n == 5 and sharing.trainer_nice() == 3
        with sharing.REDRAWS:
            assert not sharing.REDRAWS.busy  # redraw wait 0: trainers never give way
    finally:
        sharing.REDRAWS.max_wait, sharing.TRAINING_SLOTS.n = old
