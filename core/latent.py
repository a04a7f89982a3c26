"""The latent space explorer's logic that is not drawing (issue 22: pages only render).

- :class:`LayoutStore`: finished t-SNE maps (layout and openTSNE embedding), shared by every session.
  A plain thread-safe LRU dict: a lookup that misses returns None, and nothing is stored by a miss
  (it replaces the page's old trick of raising inside an ``st.cache_data`` function so that Streamlit
  stored nothing).
- :func:`tsne_view`: the t-SNE map's life cycle across reruns, one call per rerun: a finished map
  from the store; else the background run (``core.explore.TsneJobs``), started if asked for; a run
  that has just finished is moved into the store and its job discarded; a failed run is reported.
- :func:`grid_bounds`: the decoded plane's slider ranges and steps around the grid's frame.
- :func:`map_subset`: which points a map draws when it cannot draw them all quickly.

No Streamlit here: the page keeps one :class:`LayoutStore` and one ``TsneJobs`` in
``st.cache_resource`` and draws what :func:`tsne_view` says.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Hashable

import numpy as np


class LayoutStore:
    """Finished t-SNE results by key, at most ``max_entries`` (least recently used dropped first).

    ``get(key)`` returns ``(layout (N, 2), embedding)`` or None. Layouts are stored read-only, so a
    caller cannot change what other sessions see; the embedding (openTSNE's, kept for ``transform``)
    is shared and must not be modified."""

    def __init__(self, max_entries: int = 12):
        self.max_entries = max(1, int(max_entries))
        self._items: OrderedDict[Hashable, tuple[np.ndarray, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> tuple[np.ndarray, Any] | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: Hashable, layout: np.ndarray, embedding: Any = None) -> np.ndarray:
        layout = np.array(layout, dtype=np.float32)  # a private copy
        layout.setflags(write=False)
        with self._lock:
            self._items[key] = (layout, embedding)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return layout

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


@dataclass
class TsneView:
    """What the page draws for a t-SNE map in this rerun: exactly one of ``layout`` (the finished map),
    ``job`` (a run in progress: draw its latest layout and poll) and ``error`` (the run failed: say so
    and draw PCA); all None when no run was asked for."""
    layout: np.ndarray | None = None
    job: Any = None
    error: str | None = None

    @property
    def pending(self) -> bool:
        return self.job is not None


def collect(store: LayoutStore, jobs, key: Hashable, job) -> np.ndarray | None:
    """Move a finished run into ``store`` and drop its job; returns its layout, or None if not done."""
    if job is None or job.status != "done" or job.result is None:
        return None
    layout, emb = job.result
    stored = store.put(key, layout, emb)
    jobs.discard(key)
    return stored


def tsne_view(store: LayoutStore, jobs, key: Hashable, latents: np.ndarray, seed: int, perplexity: float,
              n_iter: int, start: bool = True) -> TsneView:
    """The t-SNE map for ``key`` in this rerun (see the module docstring). ``start``: whether a missing
    map may start a background run (False: a view that does not show the map only reads the store)."""
    hit = store.get(key)
    if hit is not None:
        return TsneView(layout=hit[0])
    if not start:
        return TsneView()
    job = jobs.get_or_start(key, latents, int(seed), float(perplexity), int(n_iter))
    layout = collect(store, jobs, key, job)
    if layout is not None:
        return TsneView(layout=layout)
    if job.status == "failed":
        return TsneView(error=job.error or "t-SNE failed")
    return TsneView(job=job)


def poll(store: LayoutStore, jobs, key: Hashable) -> tuple[Any, bool]:
    """For the live map's timer: ``(job, finished)``. ``finished`` is True when there is nothing left to
    poll (the run is over, and moved into the store if it succeeded, or it is gone): rerun the page."""
    job = jobs.get(key)
    if job is None or job.finished:
        collect(store, jobs, key, job)
        return job, True
    return job, False


@dataclass(frozen=True)
class GridBounds:
    """Slider ranges for the decoded plane's point (u, v): ``span`` grid scales either side of the grid's
    centre, rounded to 2 decimals; the steps are a 20th of a scale (at least 0.01); ``start`` is the
    centre."""
    lo: tuple[float, float]
    hi: tuple[float, float]
    step: tuple[float, float]
    start: tuple[float, float]


def grid_bounds(center, scale, span: float = 4.0) -> GridBounds:
    c = np.asarray(center, dtype=float).reshape(2)
    s = np.asarray(scale, dtype=float).reshape(2)
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError("the grid's centre must be finite and its scale positive")
    lo = tuple(round(float(c[i] - span * s[i]), 2) for i in range(2))
    hi = tuple(round(float(c[i] + span * s[i]), 2) for i in range(2))
    step = tuple(max(0.01, round(float(s[i]) / 20, 2)) for i in range(2))
    start = tuple(round(float(c[i]), 2) for i in range(2))
    return GridBounds(lo, hi, step, start)


def map_subset(labels, n_max: int, seed: int = 0) -> np.ndarray | None:
    """Which points a map draws when it cannot draw them all quickly: at most ``n_max`` indices (sorted)
    of ``labels`` (N,), drawn at random without replacement, every class in proportion (each class gets
    its share rounded, by largest remainder, so the sizes add up to ``n_max``). None when N <= n_max
    (draw every point). The same ``seed`` gives the same points, so the map does not flicker between
    reruns."""
    labels = np.asarray(labels)
    n = len(labels)
    n_max = int(n_max)
    if n_max < 1:
        raise ValueError("n_max must be at least 1")
    if n <= n_max:
        return None
    classes, counts = np.unique(labels, return_counts=True)
    share = counts * n_max / n
    take = np.floor(share).astype(int)
    for i in np.argsort(-(share - take), kind="stable")[: n_max - int(take.sum())]:
        take[i] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c, k in zip(classes, take) if k]
    return np.sort(np.concatenate(picked))
