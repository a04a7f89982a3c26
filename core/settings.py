"""Process-wide settings of the server, read once from the environment and applied once at start-up.

Importing this module (or any module of ``core``) changes nothing in the process. The entry
script (app.py) calls :func:`apply` once, at the top; every later call is a no-op. Each knob
below has an environment variable, read only by :meth:`Settings.from_env`:

``LATENT_LAB_TORCH_THREADS`` (default 1)
    torch's intra-op threads. Many sessions share two cores: more threads per op oversubscribe
    them (bench/bench_core.py). Applied by :func:`import_torch`, because importing torch takes
    1.5-2.5 s and the home page must draw before that (its warm-up thread imports torch).
``LATENT_LAB_SWITCH_INTERVAL`` (seconds, default 0.0005)
    The interpreter's GIL switch interval (Python's default is 5 ms). A training thread releases
    the GIL for every torch op and must get it back after; while a page redraw runs, each
    reacquisition could wait a whole interval, so a 20 ms redraw stretched into ~60 ms of stalled
    training (bench/bench_training.py).
``LATENT_LAB_GC_THRESHOLDS`` (default ``10000,10,10``) and ``LATENT_LAB_GC_FREEZE`` (default 1)
    Streamlit runs ``gc.collect(2)`` after every script run, fragment reruns included. With torch,
    plotly and pandas loaded that is ~300,000 tracked objects and ~190 ms with the GIL held
    (measured), twice a second while the live view polls: the training threads then waited for the
    GIL most of the time (throughput fell to 10-30 %). :func:`import_torch` therefore moves every
    object alive once the heavy libraries are imported into the collector's permanent generation
    (``gc.freeze``: frozen objects are skipped by the cyclic collector; objects freed by reference
    counting are freed as usual). The thresholds make young collections happen every 10,000 new
    objects instead of 700: with ten sessions training a full collection walked ~130,000 objects in
    40-130 ms (measured, 5 Dec 2026), and they became about 14 times rarer.
``LATENT_LAB_REDRAW_WAIT`` (seconds, default 0.25; 0 turns it off), ``LATENT_LAB_TRAINING_SLOTS``
(default: the number of cores) and ``LATENT_LAB_TRAINER_NICE`` (default 19; 0 turns it off)
    How background training shares the CPU with page redraws: see :mod:`core.sharing`.

Nice values. Training threads still lower their own priority (``trainer_nice``): a training
thread is background work, and with 10 sessions training on 2 cores nice +19 gave both steadier
page updates and more training than +10 or 0 (docs/performance.md). It only lowers the training
threads' priority, never raises anything, needs no privilege, and does nothing where per-thread
priorities do not exist (then the fair slots and the redraw wait still apply).

A bad value raises :class:`SettingsError` naming the variable, what it must be and what it got.
"""
from __future__ import annotations

import atexit
import gc
import os
import sys
import threading
from dataclasses import dataclass, field


class SettingsError(ValueError):
    """An environment knob has a value the server cannot use."""


def _default_slots() -> int:
    return max(1, os.cpu_count() or 2)


@dataclass(frozen=True)
class Settings:
    """Every process-wide knob, with its default. See the module docstring for each one's reason."""

    torch_threads: int = 1
    switch_interval: float = 0.0005
    gc_thresholds: tuple[int, int, int] = (10_000, 10, 10)
    gc_freeze: bool = True
    redraw_wait: float = 0.25
    training_slots: int = field(default_factory=_default_slots)
    trainer_nice: int = 19

    def __post_init__(self) -> None:
        checks = [
            (1 <= self.torch_threads <= 256, "LATENT_LAB_TORCH_THREADS", "an integer from 1 to 256", self.torch_threads),
            (1e-6 <= self.switch_interval <= 1.0, "LATENT_LAB_SWITCH_INTERVAL", "a number of seconds from 1e-6 to 1",
             self.switch_interval),
            (len(self.gc_thresholds) == 3 and all(t >= 0 for t in self.gc_thresholds), "LATENT_LAB_GC_THRESHOLDS",
             "three integers >= 0, such as 10000,10,10", self.gc_thresholds),
            (0 <= self.redraw_wait <= 10, "LATENT_LAB_REDRAW_WAIT", "a number of seconds from 0 to 10", self.redraw_wait),
            (1 <= self.training_slots <= 1024, "LATENT_LAB_TRAINING_SLOTS", "an integer from 1 to 1024",
             self.training_slots),
            (0 <= self.trainer_nice <= 39, "LATENT_LAB_TRAINER_NICE", "an integer from 0 to 39", self.trainer_nice),
        ]
        for ok, name, want, got in checks:
            if not ok:
                raise SettingsError(f"{name} must be {want}, got {got!r}.")

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Settings":
        """The settings from ``LATENT_LAB_*`` variables of ``env`` (default ``os.environ``); an unset
        or empty variable keeps the default."""
        env = os.environ if env is None else env
        kw: dict = {}

        def read(name: str, key: str, parse, want: str) -> None:
            raw = str(env.get(name, "")).strip()
            if not raw:
                return
            try:
                value = parse(raw)
                cls(**{key: value})  # in range? (checked alone, so the message names this variable)
            except ValueError:  # SettingsError included: the message quotes the text as given
                raise SettingsError(f"{name} must be {want}, got {raw!r}.") from None
            kw[key] = value

        read("LATENT_LAB_TORCH_THREADS", "torch_threads", int, "an integer from 1 to 256")
        read("LATENT_LAB_SWITCH_INTERVAL", "switch_interval", float, "a number of seconds from 1e-6 to 1")
        read("LATENT_LAB_GC_THRESHOLDS", "gc_thresholds", lambda s: tuple(int(p) for p in s.split(",")),
             "three integers >= 0, such as 10000,10,10")
        read("LATENT_LAB_GC_FREEZE", "gc_freeze", _parse_bool, "1 or 0")
        read("LATENT_LAB_REDRAW_WAIT", "redraw_wait", float, "a number of seconds from 0 to 10")
        read("LATENT_LAB_TRAINING_SLOTS", "training_slots", int, "an integer from 1 to 1024")
        read("LATENT_LAB_TRAINER_NICE", "trainer_nice", int, "an integer from 0 to 39")
        return cls(**kw)


def _parse_bool(s: str) -> bool:
    low = s.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(s)


_lock = threading.Lock()
_applied: Settings | None = None
_torch_done = False


def applied() -> Settings | None:
    """The settings :func:`apply` applied in this process, or None before it ran."""
    return _applied


def apply(settings: Settings | None = None) -> bool:
    """Apply ``settings`` (default: :meth:`Settings.from_env`) to this process, once: the GIL switch
    interval, the collector's thresholds, and the CPU sharing of background training
    (:func:`core.sharing.configure`). Returns True if this call applied them, False if an earlier
    call had (then nothing changes, whatever ``settings`` says). Imports nothing heavy: torch's
    threads and the collector's freeze follow in :func:`import_torch`.
    Raises :class:`SettingsError` for a bad environment variable (and applies nothing)."""
    global _applied
    with _lock:
        if _applied is not None:
            return False
        s = Settings.from_env() if settings is None else settings
        from core import sharing

        sys.setswitchinterval(s.switch_interval)
        gc.set_threshold(*s.gc_thresholds)
        sharing.configure(s)
        _applied = s
        return True


def import_torch():
    """Import torch with the applied settings (applying them first if nobody has) and return it.

    Once per process: set torch's intra-op threads; then, with torch, plotly and pandas imported,
    collect and freeze every live object (``gc_freeze``, see the module docstring). Later calls
    only return torch. The pages' ``core.ui.configure_torch`` calls this."""
    global _torch_done
    apply()
    import torch

    with _lock:
        if _torch_done:
            return torch
        s = _applied
        if torch.get_num_threads() != s.torch_threads:
            torch.set_num_threads(s.torch_threads)
        if s.gc_freeze:
            import pandas  # noqa: F401  (the heavy libraries every page's run has loaded: frozen with the rest)
            import plotly.graph_objects  # noqa: F401

            gc.collect()
            gc.freeze()
        _torch_done = True
    return torch


# ---- the warm-up: heavy imports and the default models, in the background, once -----------------

#: At interpreter exit, how long to wait for the warm-up to stop between two of its steps.
WARM_UP_EXIT_WAIT_S = 5.0
_warm_lock = threading.Lock()
_warm_thread: threading.Thread | None = None
_warm_stop = threading.Event()


def start_warm_up(steps) -> threading.Thread | None:
    """Run ``steps`` (callables, in order; an exception in one is ignored: the page that needs it
    reports it) in a daemon thread, once per process. Returns the thread, or None if a warm-up was
    already started.

    A daemon thread, so it never keeps the process alive. But a daemon thread still running when
    the interpreter finalises is ended the next time it takes the GIL (pthread_exit on Linux), and
    that unwinding through torch's C++ frames (an import, a model load) can abort the process
    (CPython issue 124149). So an exit hook (``atexit``: it runs before daemon threads are
    stopped) asks the thread to stop before its next step and waits for the step in progress, at
    most ``WARM_UP_EXIT_WAIT_S`` (``import torch``, the longest step, takes about 2 s)."""
    global _warm_thread
    with _warm_lock:
        if _warm_thread is not None:
            return None

        def work():
            for step in steps:
                if _warm_stop.is_set():
                    return
                try:
                    step()
                except Exception:  # noqa: BLE001  (reported by the page that needs what failed)
                    pass

        _warm_thread = threading.Thread(target=work, name="latent-lab-warm-up", daemon=True)
        atexit.register(_stop_warm_up)
        _warm_thread.start()
        return _warm_thread


def _stop_warm_up(wait_s: float | None = None) -> None:
    _warm_stop.set()
    if _warm_thread is not None:
        _warm_thread.join(WARM_UP_EXIT_WAIT_S if wait_s is None else wait_s)


def warm_up(datasets) -> threading.Thread | None:
    """Import torch (with the settings), plotly and the zoo's default models (AE and VAE, beta 1,
    16-D, of each dataset in ``datasets``) in the background, once per process, and start the
    reparam page's estimator race for each (``core.reparam.start_zoo_training_race``, its own
    background job), so that the first lesson page opens quickly after the home page has drawn and
    the race's curves are ready (:func:`start_warm_up`)."""
    import importlib

    def load(ds: str, kind: str):
        return lambda: importlib.import_module("core.zoo").pretrained(ds, kind, 1.0, 16)

    def race(ds: str):  # the reparam page's estimator race trains in its own background job
        return lambda: importlib.import_module("core.reparam").start_zoo_training_race(ds, 0)

    steps = [import_torch, lambda: importlib.import_module("plotly.express")]
    steps += [load(ds, kind) for ds in datasets for kind in ("ae", "vae")]
    steps += [race(ds) for ds in datasets]
    return start_warm_up(steps)
