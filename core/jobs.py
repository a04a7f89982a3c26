"""Keyed background jobs, shared by every session of one server (no Streamlit here).

A page submits work under a key (a hashable description of what is computed, e.g. a run's
configuration); the work runs on a daemon thread and reports its progress; any session that asks
for the same key gets the same job, running or finished, so a second visitor sees the result at
once and nothing is computed twice. Finished jobs are kept for reuse, within bounds: at most
``max_done`` of them, none older than ``max_age_s`` seconds after it finished. A failed job keeps
its message (not a traceback) until it is evicted or the same key is submitted again, which
retries it.

    jobs = Jobs()
    job = jobs.submit(("collapse", beta, steps), lambda report: train(..., report=report))
    job.state, job.progress, job.text      # "running" | "done" | "failed", 0..1, a short line
    job.result / job.error
"""

from __future__ import annotations

import atexit
import threading
import time
from typing import Any, Callable, Hashable

RUNNING, DONE, FAILED = "running", "done", "failed"
EXIT_WAIT_S = 3.0  # at interpreter exit, how long to wait for running jobs to stop at their next report

Report = Callable[[float, str], None]
_RUNNING: set = set()  # every running job of every registry (for the exit hook below)
_RUNNING_LOCK = threading.Lock()


class Cancelled(Exception):
    """Raised inside a job's work by ``report`` once the job was cancelled (or the process exits)."""


class Job:
    """One unit of background work. Its public fields are read without locking (each is one
    attribute assignment in the worker, so a reader sees an old or a new value, never a torn one);
    ``result`` is set before ``state`` becomes "done", so a reader that sees "done" sees the result."""

    def __init__(self, key: Hashable, fn: Callable[[Report], Any], clock: Callable[[], float],
                 slots: threading.Semaphore | None = None):
        self.key = key
        self.state: str = RUNNING
        self.progress: float = 0.0
        self.text: str = ""
        self.result: Any = None
        self.error: str | None = None
        self._fn = fn
        self._clock = clock
        self.started: float = clock()
        self.finished: float | None = None
        self._done = threading.Event()
        self._cancel = threading.Event()
        self._slots = slots
        self._thread = threading.Thread(target=self._run, name=f"job-{key!r}"[:60], daemon=True)

    # -- the worker side -------------------------------------------------------------------
    def report(self, progress: float, text: str = "") -> None:
        """Called by the work: progress in [0, 1] (clipped; never goes backwards) and a short text.
        Raises :class:`Cancelled` once the job was cancelled, so the work stops at its next report."""
        if self._cancel.is_set():
            raise Cancelled("cancelled")
        try:
            p = float(progress)
        except (TypeError, ValueError):
            p = self.progress
        if p != p:  # NaN
            p = self.progress
        self.progress = max(self.progress, min(1.0, max(0.0, p)))
        self.text = str(text)

    def _run(self) -> None:
        slot = False
        try:
            if self._slots is not None:
                self.text = "waiting for another job to finish"
                while not self._slots.acquire(timeout=0.2):
                    if self._cancel.is_set():
                        raise Cancelled("cancelled")
                slot = True
                self.text = ""
            result = self._fn(self.report)
        except BaseException as exc:  # noqa: BLE001 - a job must never kill its thread silently
            msg = str(exc).strip()
            self.error = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
            self.finished = self._clock()
            self.state = FAILED
        else:
            self.result = result
            self.progress = 1.0
            self.finished = self._clock()
            self.state = DONE
        finally:
            if slot:
                self._slots.release()
            with _RUNNING_LOCK:
                _RUNNING.discard(self)
            self._fn = None  # drop the closure (and whatever it holds) once the work is over
            self._done.set()

    # -- the reader side -------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def elapsed(self) -> float:
        end = self.finished if self.finished is not None else self._clock()
        return max(0.0, end - self.started)

    def cancel(self) -> None:
        """Ask the work to stop: its next ``report`` raises :class:`Cancelled` (the job then fails)."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished (done or failed); True if it has."""
        return self._done.wait(timeout)

    def __repr__(self) -> str:
        return f"Job({self.key!r}, {self.state}, {self.progress:.0%})"


class Jobs:
    """A registry of :class:`Job` by key (thread-safe). ``submit`` deduplicates: while a job for
    the key is running or done, it is returned instead of starting another. ``max_running``: at most
    that many jobs of this registry do their work at once (the others wait, state "running", text
    "waiting for another job to finish"); None for no limit."""

    def __init__(self, max_done: int = 32, max_age_s: float = 600.0,
                 clock: Callable[[], float] = time.monotonic, max_running: int | None = None):
        if int(max_done) < 0:
            raise ValueError("max_done must be >= 0")
        if max_running is not None and int(max_running) < 1:
            raise ValueError("max_running must be >= 1 (or None)")
        self._slots = threading.Semaphore(int(max_running)) if max_running is not None else None
        if float(max_age_s) < 0:
            raise ValueError("max_age_s must be >= 0")
        self.max_done = int(max_done)
        self.max_age_s = float(max_age_s)
        self._clock = clock
        self._jobs: dict[Hashable, Job] = {}
        self._lock = threading.Lock()

    def submit(self, key: Hashable, fn: Callable[[Report], Any]) -> Job:
        """The job for ``key``: the existing one if it is running or done (and not evicted),
        otherwise a new one running ``fn(report)`` on a daemon thread."""
        hash(key)  # an unhashable key fails here, in the caller, not in the registry
        with self._lock:
            self._evict_locked()
            job = self._jobs.get(key)
            if job is not None and job.state in (RUNNING, DONE):
                return job
            job = Job(key, fn, self._clock, self._slots)
            self._jobs[key] = job
        with _RUNNING_LOCK:
            _RUNNING.add(job)
        job._thread.start()  # outside the lock: a fast job may finish and call back at once
        return job

    def get(self, key: Hashable) -> Job | None:
        with self._lock:
            self._evict_locked()
            return self._jobs.get(key)

    def discard(self, key: Hashable) -> None:
        """Forget the job for ``key`` (a running one keeps running, but is no longer shared)."""
        with self._lock:
            self._jobs.pop(key, None)

    def running(self) -> list[Job]:
        with self._lock:
            return [j for j in self._jobs.values() if j.state == RUNNING]

    def __len__(self) -> int:
        with self._lock:
            self._evict_locked()
            return len(self._jobs)

    def __contains__(self, key: Hashable) -> bool:
        return self.get(key) is not None

    def _evict_locked(self) -> None:
        now = self._clock()
        finished = [(j.finished, k) for k, j in self._jobs.items()
                    if j.state != RUNNING and j.finished is not None]
        finished.sort(key=lambda t: t[0])  # oldest first
        n_keep = len(finished)
        for t_end, k in finished:
            if now - t_end > self.max_age_s or n_keep > self.max_done:
                del self._jobs[k]
                n_keep -= 1


# A daemon thread still inside torch's C++ code when the interpreter finalises can abort the process.
# At exit (after the non-daemon threads have ended), ask every running job to stop at its next report
# and give them a moment to do so.
def _stop_all_at_exit(wait_s: float = EXIT_WAIT_S) -> None:
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for j in running:
        j.cancel()
    deadline = time.monotonic() + wait_s
    for j in running:
        j.wait(max(0.0, deadline - time.monotonic()))


atexit.register(_stop_all_at_exit)
