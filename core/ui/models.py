"""Shared models: the zoo's pretrained models and their active-unit counts (cached for every session),
torch's process settings, and the warm-up that loads them in the background."""
from __future__ import annotations

import os
import threading

import streamlit as st

from core.data import DATASETS, load_dataset

# ---- shared models -------------------------------------------------------------------------

SWITCH_INTERVAL_S = 0.0005


def configure_torch():
    """Import torch with one intra-op thread per process: many sessions share two cores and
    more threads oversubscribe them (see bench/). Override with LATENT_LAB_TORCH_THREADS.

    Also shortens the interpreter's GIL switch interval from 5 ms to 0.5 ms (override with
    LATENT_LAB_SWITCH_INTERVAL, in seconds). A training thread releases the GIL for every torch
    op and must get it back after; while a page redraw runs, each reacquisition could wait a whole
    interval, so a 20 ms redraw stretched into ~60 ms of stalled training (bench/bench_training.py).

    Once ``core.settings`` exists (process-wide settings applied once), this defers to it
    (``import_torch()``, else ``apply()``) and returns torch; the pages' calls are then removed."""
    import importlib
    import sys

    try:
        settings = importlib.import_module("core.settings")
    except ModuleNotFoundError:
        settings = None
    if settings is not None and hasattr(settings, "import_torch"):
        return settings.import_torch()
    if settings is not None and hasattr(settings, "apply"):
        settings.apply()
        import torch
        return torch
    import torch
    try:
        sys.setswitchinterval(float(os.environ.get("LATENT_LAB_SWITCH_INTERVAL", SWITCH_INTERVAL_S)))
    except ValueError:  # a bad override: keep the interpreter's value
        pass
    want = max(1, int(os.environ.get("LATENT_LAB_TORCH_THREADS", "1")))
    if torch.get_num_threads() != want:
        torch.set_num_threads(want)
    return torch


_warm_lock = threading.Lock()
_warmed = False


def warm_up() -> None:
    """Import torch, plotly and the zoo's default models in a background thread, once per process,
    so the first lesson page opens quickly after the home page has drawn."""
    global _warmed
    with _warm_lock:
        if _warmed:
            return
        _warmed = True

    def work():
        # Exit stays quick and safe. The thread is not a daemon: at interpreter exit, a daemon thread is ended
        # the next time it takes the GIL (CPython issue 124149), by pthread_exit on Linux, whose unwinding
        # through torch's C++ frames (an import, a model load) can abort the process. Instead it stops between
        # steps once the main thread has finished (Python marks the main thread stopped before it joins the
        # others), so exit waits for one step (about 1.6 s for `import torch`), not the whole warm-up.
        exiting = lambda: not threading.main_thread().is_alive()  # noqa: E731
        configure_torch()
        if exiting():
            return
        import plotly.express  # noqa: F401

        from core import zoo
        for ds in DATASETS:
            for kind in ("ae", "vae"):
                if exiting():
                    return
                try:
                    zoo.pretrained(ds, kind, 1.0, 16)
                except Exception:  # a missing asset is reported by the page that needs it
                    pass

    threading.Thread(target=work, name="latent-lab-warm-up", daemon=False).start()


@st.cache_resource(show_spinner="Loading the pretrained model…", max_entries=64)
def pretrained(dataset: str, kind: str, beta: float, latent_dim: int, variant: str = ""):
    """A read-only model from ``core.zoo`` (a ``zoo.Pretrained``), shared by all sessions."""
    configure_torch()
    from core import zoo
    return zoo.pretrained(dataset, kind, beta, latent_dim, variant)


@st.cache_resource(show_spinner=False, max_entries=64)
def activity(dataset: str, kind: str, beta: float, latent_dim: int, variant: str = ""):
    """``core.units.heldout_activity`` of a zoo model on its held-out split: the one active-unit
    count (Burda et al., 2016) that every page shows for that model."""
    from core import units
    return units.heldout_activity(pretrained(dataset, kind, beta, latent_dim, variant), load_dataset(dataset))
