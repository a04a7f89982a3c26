"""How the background training runs of every session share the server's CPU with the page redraws.

One Streamlit server process serves a whole class: each student's training run is a
``core.training.BackgroundRunner`` thread, and every session's page redraws its live view about
twice a second. On two cores, thirty threads that each train as fast as they can would leave
the redraws waiting for the CPU and for the GIL, and the students' views would stand still.
Three rules, each measured with bench/bench_sessions.py and bench/bench_load.py
(docs/performance.md), keep every view moving while training takes what is left:

1. **Fair slots, by need** (:class:`FairSlots`, ``TRAINING_SLOTS``). A training thread trains one
   step per turn, and holds one of ``training_slots`` slots (one per core) for that step, so the
   threads that redraw pages still find a free core. A freed slot goes to the run with the fewest
   steps its page has not shown yet (:meth:`core.training.BackgroundRunner.unshown_steps`), ties
   in arrival order: a run whose page has just shown its newest step goes first. The runs take
   their steps in turn (thirty runs on two cores each get a step every fifteen steps' time), and
   each step lands where a view is waiting for one. That matters when the server trains barely
   more steps per run than the pages ask to see (30 sessions on a slow machine): served in
   arrival order, some redraws found no new step and left their view still for a second
   (docs/performance.md, 7 December 2026, afternoon). A holder that leaves hands its slot to the chosen
   waiter and wakes only that thread (a condition's ``notify_all`` would make nine threads take
   the GIL in turn on every hand-over, only to sleep again).
2. **Redraws first** (:class:`Redraws`, ``REDRAWS``). The page's live fragment runs inside
   ``REDRAWS`` (``@REDRAWS`` on the fragment function). While any redraw of any session is in
   progress, a trainer does not queue for its next step: it sleeps (without the GIL) until the
   redraws are over, for at most ``redraw_wait`` seconds at a time,
   so training never starves. Why: a redraw needs the GIL, and a training thread holds it
   between its torch calls; when the kernel preempts that thread while it holds the GIL, the
   redraw waits with it (priority inversion). With 10 sessions training and 10 browsers on 2
   cores, the longest wait from a redraw request to its progress line fell from 0.32-0.45 s to
   0.21-0.29 s, and training throughput did not fall.
3. **Low priority** (:func:`lower_thread_priority`). Each training thread raises its own nice
   value by ``trainer_nice`` (Linux: nice is per thread; 19 is the lowest priority). Everything
   else on the machine gets the CPU first; on an idle server training still gets all of it.
   With 10 sessions, +19 gave both steadier page updates and more training than +10.

A redraw that finds no step its page has not shown waits for one, briefly
(``core.runs.NEW_STEP_WAIT``, 0.2 s; :meth:`core.training.BackgroundRunner.wait_for_unshown_step`),
before it enters ``REDRAWS``: it sleeps without the GIL, and the trainers do not give way to it
(measured in docs/performance.md).

A page's redraw never trains a step itself. It used to, when it found no new step (at the page's
priority, to keep a view moving), but under load that made every redraw slower as the load grew:
with 30 sessions the redraws ended up training in fifteen threads at once and the server stopped
answering for seconds at a time (docs/performance.md, 7 December). One-step turns keep every view
moving instead, and a redraw's cost no longer depends on the load.

Nothing here reads the environment, and importing this module changes nothing: the shared
objects start with :class:`core.settings.Settings`' defaults, and :func:`configure` (called by
``core.settings.apply`` at start-up) sets them from the process's settings.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import os
import threading
from typing import Callable

from core.settings import Settings


class FairSlots:
    """A counting semaphore: ``n`` holders at a time (rule 1 of the module docstring). A freed slot
    goes to the waiter whose ``rank()`` is lowest, ties in arrival order; without a rank a waiter
    ranks 0, so plain ``with slots:`` is first come first served. ``resize`` changes ``n``; extra
    holders drain as they leave."""

    def __init__(self, n: int):
        self.n = max(1, int(n))
        self._lock = threading.Lock()
        # (arrival number, rank, event) per waiter; at most one per training thread, so a linear
        # search for the next one is cheaper than keeping a heap whose ranks change while waiting.
        self._waiting: list[tuple[int, Callable[[], int], threading.Event]] = []
        self._arrivals = itertools.count()
        self._held = 0

    def acquire(self, rank: Callable[[], int] | None = None) -> None:
        """Wait for a slot. ``rank`` is read each time a slot is handed over, so it may change while
        this thread waits (it must be cheap and must not block)."""
        with self._lock:
            if self._held < self.n and not self._waiting:
                self._held += 1
                return
            turn = threading.Event()
            self._waiting.append((next(self._arrivals), rank or _rank_zero, turn))
        turn.wait()  # set by the holder that handed its slot over (self._held already counts us)

    def release(self) -> None:
        with self._lock:
            if self._waiting and self._held <= self.n:
                self._next_waiter().set()  # hand the slot over: _held stays
            else:
                self._held -= 1

    @contextlib.contextmanager
    def turn(self, rank: Callable[[], int] | None = None):
        """``with slots.turn(rank):`` holds a slot for the block (see :meth:`acquire`)."""
        self.acquire(rank)
        try:
            yield self
        finally:
            self.release()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()

    def _next_waiter(self) -> threading.Event:
        """Remove and return the waiter with the lowest (rank, arrival); call with ``_lock`` held."""
        best = min(range(len(self._waiting)), key=lambda i: (self._waiting[i][1](), self._waiting[i][0]))
        return self._waiting.pop(best)[2]

    def resize(self, n: int) -> None:
        with self._lock:
            self.n = max(1, int(n))
            while self._waiting and self._held < self.n:
                self._held += 1
                self._next_waiter().set()


def _rank_zero() -> int:
    return 0


class Redraws:
    """Live page redraws in progress, in every session of the process (rule 2 of the module
    docstring): a context manager, and a decorator, that the page's live fragment runs inside.
    Trainers stop between two steps while any redraw is in progress, for at most ``max_wait``
    seconds at a time (0: they never give way)."""

    def __init__(self, max_wait: float):
        self.max_wait = float(max_wait)
        self._n = 0
        self._cond = threading.Condition()

    def __enter__(self) -> "Redraws":
        with self._cond:
            self._n += 1
        return self

    def __exit__(self, *exc) -> None:
        with self._cond:
            self._n -= 1
            if self._n == 0:
                self._cond.notify_all()

    def __call__(self, fn):
        """As a decorator: ``fn`` runs inside (keeps its name, which Streamlit's fragments use)."""
        @functools.wraps(fn)
        def inside(*args, **kwargs):
            with self:
                return fn(*args, **kwargs)
        return inside

    @property
    def busy(self) -> bool:
        """A redraw is in progress (and trainers give way: ``max_wait`` > 0)."""
        return self._n > 0 and self.max_wait > 0

    def wait_until_done(self) -> None:
        """Sleep until no redraw is in progress, or ``max_wait`` seconds have passed."""
        with self._cond:
            self._cond.wait_for(lambda: self._n == 0, self.max_wait)


_DEFAULTS = Settings()
#: Live redraws of every session (rule 2).
REDRAWS = Redraws(_DEFAULTS.redraw_wait)
#: One slot per training chunk in progress, in every session (rule 1).
TRAINING_SLOTS = FairSlots(_DEFAULTS.training_slots)
_trainer_nice = _DEFAULTS.trainer_nice


def configure(settings: Settings) -> None:
    """Set the shared objects from ``settings`` (``core.settings.apply`` calls this once)."""
    global _trainer_nice
    REDRAWS.max_wait = float(settings.redraw_wait)
    TRAINING_SLOTS.resize(settings.training_slots)
    _trainer_nice = int(settings.trainer_nice)


def trainer_nice() -> int:
    """The niceness each training thread adds to its own (rule 3)."""
    return _trainer_nice


def lower_thread_priority(increment: int | None = None) -> int | None:
    """Raise the calling thread's nice value by ``increment`` (default :func:`trainer_nice`; capped at
    19). Returns the new value, or None where per-thread priorities are not available or the
    increment is 0 (then nothing changes). Only ever lowers the priority: needs no privilege."""
    increment = _trainer_nice if increment is None else increment
    if increment <= 0 or not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return None
    try:
        tid = threading.get_native_id()
        new = min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment)
        os.setpriority(os.PRIO_PROCESS, tid, new)
        return new
    except OSError:
        return None
