"""core.latent: the latent explorer's t-SNE life cycle, its store of finished maps, and the decoded
plane's slider bounds (issue 22: the page only renders)."""
from __future__ import annotations

import numpy as np
import pytest

from core import latent


class FakeJob:
    def __init__(self, status="running", result=None, error=None):
        self.status, self.result, self.error = status, result, error

    @property
    def finished(self):
        return self.status in ("done", "failed", "abandoned")


class FakeJobs:
    """The part of core.explore.TsneJobs that core.latent uses, recording the calls."""

    def __init__(self, job=None):
        self.job, self.started, self.discarded = job, [], []

    def get(self, key):
        return self.job

    def get_or_start(self, key, latents, seed, perplexity, n_iter):
        self.started.append((key, latents.shape, seed, perplexity, n_iter))
        if self.job is None:
            self.job = FakeJob()
        return self.job

    def discard(self, key):
        self.discarded.append(key)
        self.job = None


MU = np.zeros((10, 4), np.float32)


def test_store_is_lru_read_only_and_a_miss_stores_nothing():
    s = latent.LayoutStore(max_entries=2)
    assert s.get("a") is None and len(s) == 0  # a miss stores nothing
    src = np.arange(6, dtype=np.float64).reshape(3, 2)
    got = s.put("a", src, "emb-a")
    src[0, 0] = 99  # the store keeps its own copy
    assert s.get("a")[0][0, 0] == 0 and s.get("a")[1] == "emb-a" and got.dtype == np.float32
    with pytest.raises(ValueError):
        s.get("a")[0][0, 0] = 5  # read-only: one session cannot change another's map
    s.put("b", src)
    s.get("a")  # "a" is now the most recently used
    s.put("c", src)
    assert "a" in s and "c" in s and "b" not in s and len(s) == 2


def test_view_without_start_only_reads_the_store():
    store, jobs = latent.LayoutStore(), FakeJobs()
    v = latent.tsne_view(store, jobs, "k", MU, 0, 30, 250, start=False)
    assert v.layout is None and not v.pending and v.error is None and jobs.started == []


def test_a_run_is_started_once_polled_then_moved_into_the_store():
    store, jobs = latent.LayoutStore(), FakeJobs()
    v = latent.tsne_view(store, jobs, "k", MU, 3, 30.0, 250)
    assert v.pending and v.layout is None and jobs.started == [("k", (10, 4), 3, 30.0, 250)]
    job, over = latent.poll(store, jobs, "k")
    assert job is v.job and not over
    done = np.ones((10, 2))
    jobs.job.status, jobs.job.result = "done", (done, "embedding")
    job, over = latent.poll(store, jobs, "k")
    assert over and jobs.discarded == ["k"] and store.get("k")[1] == "embedding"
    np.testing.assert_array_equal(store.get("k")[0], done)
    # The next rerun (any session) gets the stored map without touching the jobs.
    v2 = latent.tsne_view(store, jobs, "k", MU, 3, 30.0, 250)
    assert v2.layout is not None and not v2.pending and len(jobs.started) == 1


def test_a_run_found_finished_is_collected_in_the_same_rerun():
    store, jobs = latent.LayoutStore(), FakeJobs(FakeJob("done", (np.zeros((10, 2)), None)))
    v = latent.tsne_view(store, jobs, "k", MU, 0, 30, 250)
    assert v.layout is not None and not v.pending and "k" in store and jobs.discarded == ["k"]


def test_a_failed_run_is_reported_not_polled():
    store, jobs = latent.LayoutStore(), FakeJobs(FakeJob("failed", error="ValueError: bad codes"))
    v = latent.tsne_view(store, jobs, "k", MU, 0, 30, 250)
    assert v.error == "ValueError: bad codes" and not v.pending and v.layout is None and "k" not in store


def test_a_job_that_vanished_ends_the_polling():
    store, jobs = latent.LayoutStore(), FakeJobs()
    job, over = latent.poll(store, jobs, "gone")
    assert job is None and over


def test_with_the_real_background_runner():
    """The same life cycle with core.explore.TsneJobs and openTSNE on 120 points."""
    from core import explore
    from core.embed import trustworthiness

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c, 0.3, size=(40, 5)) for c in (-3, 0, 3)]).astype(np.float32)
    store, jobs = latent.LayoutStore(), explore.TsneJobs(max_running=1)
    v = latent.tsne_view(store, jobs, "real", x, 0, 20, 250)
    assert v.pending or v.layout is not None
    if v.pending:
        v.job.join(120)
        _, over = latent.poll(store, jobs, "real")
        assert over
    layout = store.get("real")[0]
    assert layout.shape == (120, 2) and np.all(np.isfinite(layout)) and len(jobs) == 0
    assert trustworthiness(x, layout, k=10) > 0.9


def test_grid_bounds_against_hand_computed_values():
    g = latent.grid_bounds((0.5, -1.0), (1.0, 0.25))
    assert g.lo == (-3.5, -2.0) and g.hi == (4.5, 0.0)
    assert g.step == (0.05, 0.01)  # a 20th of a scale, at least 0.01
    assert g.start == (0.5, -1.0)
    g = latent.grid_bounds((0.123, 0.0), (2.0, 3.0), span=1.0)
    assert g.lo == (-1.88, -3.0) and g.hi == (2.12, 3.0) and g.step == (0.1, 0.15) and g.start == (0.12, 0.0)
    for bad in ((0.0, 1.0), (np.nan, 1.0), (-1.0, 1.0)):
        with pytest.raises(ValueError):
            latent.grid_bounds((0, 0), bad)


def test_map_subset_is_stratified_deterministic_and_none_when_small():
    y = np.repeat(np.arange(10), [800, 700, 600, 500, 500, 500, 400, 400, 300, 300])  # 5,000 labels
    idx = latent.map_subset(y, 2500, seed=0)
    assert len(idx) == 2500 == len(np.unique(idx)) and np.all(np.diff(idx) > 0)
    counts = np.bincount(y[idx], minlength=10)
    np.testing.assert_array_equal(counts, np.bincount(y) // 2)  # every class in proportion (exact halves here)
    np.testing.assert_array_equal(idx, latent.map_subset(y, 2500, seed=0))  # no flicker between reruns
    assert not np.array_equal(idx, latent.map_subset(y, 2500, seed=1))
    odd = latent.map_subset(np.array([0, 0, 0, 1, 1, 2, 2]), 3)  # shares 1.29, 0.86, 0.86: largest remainders
    assert sorted(np.bincount(np.array([0, 0, 0, 1, 1, 2, 2])[odd], minlength=3)) == [1, 1, 1]
    assert latent.map_subset(y, 5000) is None and latent.map_subset(y[:10], 2500) is None
    with pytest.raises(ValueError):
        latent.map_subset(y, 0)
