"""core.embed: PCA / t-SNE layouts, callbacks, transform, and input checks.

t-SNE runs are kept small (<= 1,000 points); the 5,000-point speed budget is measured
by ``bench/bench_tsne.py``, not here.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.manifold import trustworthiness as sk_trustworthiness

from core import embed as E


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return d.data.astype(np.float64), d.target


@pytest.fixture(scope="module")
def digits_map(digits):
    """One default-settings t-SNE of 1,000 digits (raw pixels), shared by several tests."""
    x, _ = digits
    calls = []
    layout, embedding = E.tsne_fit(x[:1000], seed=0, callback=lambda it, lay: calls.append((it, lay)))
    return layout, embedding, calls


def test_pca_matches_sklearn_and_shapes(digits):
    x, _ = digits
    y = E.embed_2d(x[:300], "pca")
    assert y.shape == (300, 2) and y.dtype == np.float32
    ref = PCA(n_components=2).fit_transform(x[:300])
    # Same subspace up to the sign of each component.
    for j in range(2):
        assert np.allclose(np.abs(y[:, j]), np.abs(ref[:, j]), atol=1e-3)
    assert np.array_equal(E.embed_2d(x[:300], "pca", seed=0), y)


def test_pca_edge_cases():
    rng = np.random.default_rng(0)
    one_d = E.embed_2d(rng.normal(size=(10, 1)), "pca")
    assert one_d.shape == (10, 2)
    two_d = rng.normal(size=(10, 2))
    assert E.embed_2d(two_d, "pca").shape == (10, 2)
    collapsed = E.embed_2d(np.ones((8, 4)), "pca")  # full posterior collapse: one point
    assert np.array_equal(collapsed, np.zeros((8, 2), dtype=np.float32))
    seen = []
    E.embed_2d(two_d, "pca", callback=lambda it, lay: seen.append((it, lay.shape)))
    assert seen == [(0, (10, 2))]


def test_tsne_trustworthiness_on_digits(digits, digits_map):
    x, _ = digits
    layout, _, _ = digits_map
    assert layout.shape == (1000, 2) and layout.dtype == np.float32
    assert np.all(np.isfinite(layout))
    assert E.trustworthiness(x[:1000], layout, k=10) >= 0.95


def test_tsne_callback_receives_intermediate_layouts(digits_map):
    layout, _, calls = digits_map
    iters = [it for it, _ in calls]
    assert iters[0] == 0  # the initial layout, before any optimisation
    assert iters[1:] == list(range(25, 250 + 500 + 1, 25))
    assert all(lay.shape == (1000, 2) and lay.dtype == np.float32 for _, lay in calls)
    np.testing.assert_array_equal(calls[-1][1], layout)
    # Copies, not views of the optimiser's buffer: early layouts differ from the final one.
    assert not np.allclose(calls[1][1], layout)


def test_tsne_callback_can_stop_early(digits):
    x, _ = digits
    seen = []

    def stop_at_50(it, lay):
        seen.append(it)
        return it >= 50

    y, embedding = E.tsne_fit(x[:200], callback=stop_at_50, n_iter=100)
    assert seen == [0, 25, 50] and y.shape == (200, 2)
    # Stopped inside early exaggeration: the affinities P are un-exaggerated again.
    assert embedding.affinities.P.sum() == pytest.approx(1.0)
    assert E.tsne_transform(embedding, x[200:203]).shape == (3, 2)
    y0, none = E.tsne_fit(x[:200], callback=lambda it, lay: True)
    assert none is None and y0.shape == (200, 2)


def test_tsne_callback_does_not_change_the_result(digits):
    x, _ = digits
    plain = E.embed_2d(x[:200], "tsne", seed=1, n_iter=60)
    watched = E.embed_2d(x[:200], "tsne", seed=1, n_iter=60, callback=lambda it, lay: None)
    np.testing.assert_array_equal(watched, plain)


def test_tsne_deterministic_per_seed(digits):
    x, _ = digits
    a = E.embed_2d(x[:200], "tsne", seed=3, n_iter=50)
    b = E.embed_2d(x[:200], "tsne", seed=3, n_iter=50)
    c = E.embed_2d(x[:200], "tsne", seed=4, n_iter=50)
    assert a.shape == (200, 2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_tsne_small_inputs():
    rng = np.random.default_rng(1)
    assert E.embed_2d(rng.normal(size=(5, 3)), "tsne", n_iter=25).shape == (5, 2)  # perplexity clipped
    assert E.embed_2d(rng.normal(size=(12, 1)), "tsne", n_iter=25).shape == (12, 2)  # 1-D latents
    assert E.effective_perplexity(30, 5) == pytest.approx(4 / 3)


def test_tsne_transform_places_new_points_near_their_class(digits, digits_map):
    x, labels = digits
    layout, embedding, _ = digits_map
    new = E.tsne_transform(embedding, x[1000:1040])
    assert new.shape == (40, 2) and new.dtype == np.float32 and np.all(np.isfinite(new))
    # The 10 nearest map points of each placed digit mostly share its label.
    d = ((new[:, None, :] - layout[None, :, :]) ** 2).sum(-1)
    nearest = np.argsort(d, axis=1)[:, :10]
    votes = [np.bincount(labels[:1000][row], minlength=10).argmax() for row in nearest]
    assert np.mean(np.array(votes) == labels[1000:1040]) >= 0.8
    with pytest.raises(ValueError, match="dimensions"):
        E.tsne_transform(embedding, x[1000:1002, :10])
    with pytest.raises(ValueError, match="TSNEEmbedding"):
        E.tsne_transform(layout, x[1000:1002])


@pytest.mark.parametrize(
    "latents, kwargs, message",
    [
        (np.zeros(10), {}, "2-D"),
        (np.zeros((4, 3)), {}, "at least 5 points"),
        (np.full((6, 2), np.nan), {}, "NaN or infinite"),
        (np.array([[0.0, np.inf]] * 6), {}, "NaN or infinite"),
        ([["a", "b"]] * 6, {}, "numeric"),
        (np.eye(6), {"method": "umap"}, "method must be one of"),
        (np.eye(6), {"perplexity": 0}, "perplexity"),
        (np.eye(6), {"perplexity": -5.0}, "perplexity"),
        (np.eye(6), {"perplexity": float("nan")}, "perplexity"),
        (np.eye(6), {"callback": 3}, "callback must be callable"),
        (np.eye(6), {"n_iter": 0}, "n_iter"),
        (np.ones((6, 3)), {}, "identical"),
    ],
)
def test_bad_inputs_raise_value_error(latents, kwargs, message):
    args = {"method": "tsne", **kwargs}
    with pytest.raises(ValueError, match=message):
        E.embed_2d(latents, **args)


def test_trustworthiness_wrapper():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 5))
    assert E.trustworthiness(x, x[:, :2] * 3, k=5) == pytest.approx(sk_trustworthiness(x, x[:, :2] * 3, n_neighbors=5))
    with pytest.raises(ValueError):
        E.trustworthiness(x, x[:10, :2])
    with pytest.raises(ValueError, match="k must be"):
        E.trustworthiness(x, x[:, :2], k=30)


@pytest.mark.parametrize("cores, idle, expected", [(2, 1.9, 2), (2, 1.3, 1), (2, 0.2, 1), (8, 5.6, 6)])
def test_default_n_jobs_uses_the_idle_cores(monkeypatch, cores, idle, expected):
    monkeypatch.setattr(E.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(E, "idle_cores", lambda: idle)
    assert E.default_n_jobs() == expected


@pytest.mark.solo  # it tells idle cores from busy ones: a second test process would keep it from running
def test_idle_cores_counts_other_processes_not_this_one():
    import os
    import subprocess
    import sys
    import threading
    import time as _time
    assert 0 <= E.idle_cores(0.05) <= os.cpu_count() + 0.01
    if E.idle_cores(0.3) < os.cpu_count() - 0.5:  # other processes hold a core: nothing left to tell apart
        pytest.skip("needs a machine with its cores idle (other processes are using them)")
    # A thread of this process spinning counts as idle (t-SNE takes its place) ...
    stop = _time.monotonic() + 0.5
    spinner = threading.Thread(target=lambda: [None for _ in iter(lambda: _time.monotonic() < stop, False)])
    spinner.start()
    own = E.idle_cores(0.3)
    spinner.join()
    # ... another process spinning does not.
    other = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time() + 2\nwhile time.time() < t: pass"])
    try:
        _time.sleep(0.3)
        busy = E.idle_cores(0.3)
    finally:
        other.kill()
        other.wait()
    assert busy <= os.cpu_count() - 0.7, busy
    assert own >= busy + 0.5, (own, busy)


def test_idle_cores_falls_back_to_the_load_average(monkeypatch):
    def no_proc():
        raise OSError("no /proc")
    monkeypatch.setattr(E, "_cpu_times", no_proc)
    monkeypatch.setattr(E.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(E.os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    assert E.idle_cores() == 2.5


def test_pca_is_numpys_svd_with_a_fixed_sign_and_explains_the_variance():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((200, 5)) @ rng.standard_normal((5, 5)) + 2.0
    fit = E.pca(x, 3)
    xc = x - x.mean(0)
    _, sv, vt = np.linalg.svd(xc, full_matrices=False)  # the independent reference
    np.testing.assert_allclose(fit.mean, x.mean(0), atol=1e-12)
    np.testing.assert_allclose(np.abs(fit.axes @ vt[:3].T), np.eye(3), atol=1e-8)
    np.testing.assert_allclose(fit.explained, sv[:3] ** 2 / np.sum(sv ** 2), rtol=1e-8)
    assert (fit.axes[np.arange(3), np.abs(fit.axes).argmax(1)] > 0).all()
    assert np.array_equal(E.pca(-x, 3).axes, fit.axes)  # the sign convention, not the SVD's signs
    np.testing.assert_allclose(fit.transform(x), xc @ fit.axes.T, atol=1e-10)
    np.testing.assert_allclose(E.embed_2d(x, "pca"), fit.transform(x)[:, :2], atol=1e-4)
