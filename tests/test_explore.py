"""core.explore and core.figures.latent, checked against independent references
(stdlib NormalDist, numpy SVD and brute force, torch.distributions' KL)."""
from __future__ import annotations

import json
import threading
import time
from statistics import NormalDist

import numpy as np
import pytest
import torch

from core import explore
from core.figures import latent as LF
from core.models import ModelConfig, build_model


@pytest.fixture(scope="module")
def tiny_vae():
    torch.manual_seed(0)
    return build_model(ModelConfig(kind="vae", input_dim=12, hidden_dims=(8,), latent_dim=3), device="cpu").eval()


@pytest.fixture(scope="module")
def tiny_ae():
    torch.manual_seed(1)
    return build_model(ModelConfig(kind="ae", input_dim=12, hidden_dims=(8,), latent_dim=2), device="cpu").eval()


# ---- codes ----------------------------------------------------------------------------------

def test_encode_dataset_matches_the_model_in_batches(tiny_vae, tiny_ae):
    x = np.random.default_rng(0).random((50, 12), dtype=np.float32)
    x.setflags(write=False)  # datasets are read-only
    c = explore.encode_dataset(tiny_vae, x, batch_size=7)
    mu, lv = tiny_vae.encode(torch.from_numpy(x.copy()))
    np.testing.assert_allclose(c.mu, mu.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(c.logvar, lv.detach().numpy(), atol=1e-6)
    assert c.mu.dtype == np.float32 and c.n == 50 and c.latent_dim == 3
    a = explore.encode_dataset(tiny_ae, x)
    assert a.logvar is None and a.mu.shape == (50, 2)
    with pytest.raises(ValueError):
        explore.encode_dataset(tiny_vae, x[:, :5])


def test_decode_matches_the_model(tiny_vae):
    z = np.random.default_rng(1).standard_normal((9, 3)).astype(np.float32)
    ref = tiny_vae.decode(torch.from_numpy(z)).detach().numpy()
    np.testing.assert_allclose(explore.decode(tiny_vae, z, batch_size=4), ref, atol=1e-6)
    assert explore.decode(tiny_vae, z[0]).shape == (1, 12)  # one code (K,) is accepted
    with pytest.raises(ValueError):
        explore.decode(tiny_vae, np.zeros((2, 5)))


# ---- nearest neighbours -----------------------------------------------------------------------

def test_nearest_neighbours_match_brute_force_and_leave_the_query_out():
    z = np.random.default_rng(2).standard_normal((200, 5))
    idx, dist = explore.nearest_neighbours(z, 17, 6)
    d = np.linalg.norm(z - z[17], axis=1)
    d[17] = np.inf
    ref = np.argsort(d)[:6]
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_allclose(dist, d[ref], rtol=1e-9)
    assert 17 not in idx
    # A free code (K,) as the query: nothing is left out.
    idx2, dist2 = explore.nearest_neighbours(z, z[17], 3)
    assert idx2[0] == 17 and dist2[0] == pytest.approx(0.0, abs=1e-12)


def test_nearest_neighbours_with_an_exact_duplicate_of_the_query():
    z = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    idx, dist = explore.nearest_neighbours(z, 1, 2)
    assert list(idx) == [0, 2] and list(dist) == [0.0, 1.0]


@pytest.mark.parametrize("query,k", [(10, 1), (-1, 1), (0, 0), (0, 10)])
def test_nearest_neighbours_rejects_bad_arguments(query, k):
    with pytest.raises(ValueError):
        explore.nearest_neighbours(np.zeros((10, 2)) + np.arange(10)[:, None], query, k)


# ---- interpolation ----------------------------------------------------------------------------

def test_lerp_is_the_straight_line():
    a, b = np.array([1.0, -2.0, 0.5]), np.array([3.0, 2.0, -0.5])
    p = explore.lerp(a, b, 5)
    np.testing.assert_allclose(p[0], a)
    np.testing.assert_allclose(p[-1], b)
    np.testing.assert_allclose(p[2], (a + b) / 2)
    np.testing.assert_allclose(np.diff(p, axis=0), np.tile((b - a) / 4, (4, 1)), atol=1e-6)


def test_slerp_between_orthogonal_unit_vectors_is_the_quarter_circle():
    p = explore.slerp([1.0, 0.0], [0.0, 1.0], 7)
    t = np.linspace(0, 1, 7)
    ref = np.stack([np.cos(t * np.pi / 2), np.sin(t * np.pi / 2)], 1)
    np.testing.assert_allclose(p, ref, atol=1e-6)


def test_slerp_keeps_the_norm_of_equal_norm_codes_and_moves_at_constant_angle():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(16), rng.standard_normal(16)
    b *= np.linalg.norm(a) / np.linalg.norm(b)
    p = explore.slerp(a, b, 11).astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), np.linalg.norm(a), rtol=1e-5)
    cos = np.sum(p[1:] * p[:-1], 1) / (np.linalg.norm(p[1:], axis=1) * np.linalg.norm(p[:-1], axis=1))
    np.testing.assert_allclose(np.arccos(np.clip(cos, -1, 1)), np.arccos(np.clip(cos[0], -1, 1)), atol=1e-4)
    # The straight line through the middle is shorter: the low-norm region slerp avoids.
    assert np.linalg.norm(explore.lerp(a, b, 11)[5]) < np.linalg.norm(p[5]) - 1e-3
    np.testing.assert_allclose(p[0], a, atol=1e-5)
    np.testing.assert_allclose(p[-1], b, atol=1e-5)


def test_slerp_falls_back_to_the_line_when_the_angle_is_undefined():
    np.testing.assert_allclose(explore.slerp([0, 0], [1, 1], 3), explore.lerp([0, 0], [1, 1], 3))
    np.testing.assert_allclose(explore.slerp([1, 1], [2, 2], 3), explore.lerp([1, 1], [2, 2], 3))
    assert np.all(np.isfinite(explore.slerp([1, 0], [-1, 0], 5)))


@pytest.mark.parametrize("bad", [dict(z0=[1, 2], z1=[1, 2, 3], n=3), dict(z0=[1, 2], z1=[2, 1], n=1)])
def test_interpolation_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        explore.interpolate(bad["z0"], bad["z1"], bad["n"], "linear")
    with pytest.raises(ValueError):
        explore.interpolate([0, 1], [1, 0], 3, "cubic")


# ---- planes and the decoded manifold --------------------------------------------------------------

def test_icdf_axis_matches_the_standard_library():
    for n, m, s in ((10, 0.0, 1.0), (7, 2.0, 0.5)):
        ref = [NormalDist(m, s).inv_cdf((i + 0.5) / n) for i in range(n)]
        np.testing.assert_allclose(explore.icdf_axis(n, m, s), ref, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError):
        explore.icdf_axis(5, 0.0, 0.0)


def test_manifold_grid_is_row_major_with_the_top_row_at_the_largest_v():
    u, v, pts = explore.manifold_grid(4, (0.0, 10.0), (1.0, 2.0))
    assert pts.shape == (16, 2)
    np.testing.assert_allclose(pts[:4, 0], u, rtol=1e-6)           # first row: u ascending
    np.testing.assert_allclose(pts[:4, 1], v[-1], rtol=1e-6)       # top row: the largest v
    np.testing.assert_allclose(pts[::4, 1], v[::-1], rtol=1e-6)    # down the rows: v descending
    np.testing.assert_allclose(np.mean(v), 10.0, atol=1e-9)        # symmetric about the centre


def test_pca_plane_matches_numpy_svd_and_round_trips():
    rng = np.random.default_rng(4)
    z = rng.standard_normal((300, 6)) @ rng.standard_normal((6, 6)) + 3.0
    pl = explore.latent_plane(z)
    assert pl.kind == "pca" and pl.axis_names == ("PC 1", "PC 2")
    zc = z - z.mean(0)
    _, sv, vt = np.linalg.svd(zc, full_matrices=False)
    ev = sv ** 2 / (len(z) - 1)
    p = pl.to_plane(z).astype(np.float64)
    np.testing.assert_allclose(p.var(0, ddof=1), ev[:2], rtol=1e-4)
    np.testing.assert_allclose(np.abs(pl.axes @ vt[:2].T), np.eye(2), atol=1e-6)
    np.testing.assert_allclose(pl.explained, ev[:2] / ev.sum(), rtol=1e-6)
    np.testing.assert_allclose(pl.to_plane(pl.from_plane(p[:5])), p[:5], atol=1e-4)
    assert (pl.axes[np.arange(2), np.abs(pl.axes).argmax(1)] > 0).all()  # sign convention


def test_raw_plane_for_two_dimensional_codes_and_grid_frames():
    z = np.random.default_rng(5).standard_normal((100, 2)) * [3.0, 0.5] + [1.0, -1.0]
    pl = explore.latent_plane(z)
    assert pl.kind == "raw" and pl.axis_names == ("z₁", "z₂")
    np.testing.assert_allclose(pl.to_plane(z), z, atol=1e-6)
    np.testing.assert_allclose(pl.scale, z.std(0), rtol=1e-6)
    c, s = explore.grid_frame(pl, is_vae=True)           # VAE: the prior, as in Kingma & Welling
    assert list(c) == [0, 0] and list(s) == [1, 1]
    c, s = explore.grid_frame(pl, is_vae=False)          # AE: fitted to its codes
    np.testing.assert_allclose(c, z.mean(0), rtol=1e-6)
    assert explore.latent_plane(z, method="pca").kind == "pca"
    with pytest.raises(ValueError):
        explore.latent_plane(np.zeros((10, 1)))
    with pytest.raises(ValueError):
        explore.latent_plane(np.full((10, 3), np.nan))


# ---- traversals --------------------------------------------------------------------------------

def test_dimension_scores_are_the_kl_to_the_prior_per_dimension():
    rng = np.random.default_rng(6)
    mu = rng.standard_normal((40, 4)).astype(np.float32) * [2.0, 0.0, 0.5, 0.01]
    lv = rng.standard_normal((40, 4)).astype(np.float32) * 0.3
    lv[:, 1] = 0.0  # dimension 2 is exactly the prior: KL 0
    scores, kind = explore.dimension_scores(explore.Codes(mu, lv))
    q = torch.distributions.Normal(torch.tensor(mu, dtype=torch.float64), torch.tensor(np.exp(lv / 2), dtype=torch.float64))
    ref = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).mean(0).numpy()
    assert kind == "kl"
    np.testing.assert_allclose(scores, ref, rtol=1e-5, atol=1e-7)
    assert scores[1] == pytest.approx(0.0, abs=1e-9)
    assert list(explore.dimension_order(scores))[0] == 0
    var, kind = explore.dimension_scores(explore.Codes(mu, None))
    assert kind == "variance"
    np.testing.assert_allclose(var, mu.astype(np.float64).var(0), rtol=1e-6)


def test_dimension_order_is_descending_and_stable():
    assert list(explore.dimension_order([0.5, 2.0, 0.5, 0.0])) == [1, 0, 2, 3]


def test_traversal_codes_change_one_dimension_per_row():
    base = np.array([0.3, -0.2, 1.0])
    codes, t = explore.traversal_codes(base, [2, 0], center=[0, 0, 0], spread=[1, 1, 2], steps=5, span=3.0)
    np.testing.assert_allclose(t, [-3, -1.5, 0, 1.5, 3])
    rows = codes.reshape(2, 5, 3)
    np.testing.assert_allclose(rows[0][:, 2], 2.0 * t, rtol=1e-6)      # dimension 3, spread 2
    np.testing.assert_allclose(rows[0][:, :2], np.tile(base[:2], (5, 1)), rtol=1e-6)
    np.testing.assert_allclose(rows[1][:, 0], t, rtol=1e-6)
    np.testing.assert_allclose(rows[1][:, 1:], np.tile(base[1:], (5, 1)), rtol=1e-6)
    with pytest.raises(ValueError):
        explore.traversal_codes(base, [3], 0, 1)


def test_traversal_frame_prior_for_a_vae_and_code_statistics_for_an_ae():
    mu = np.random.default_rng(7).standard_normal((50, 3)).astype(np.float32) * 4 + 1
    c, s = explore.traversal_frame(explore.Codes(mu, np.zeros_like(mu)), is_vae=True)
    assert list(c) == [0, 0, 0] and list(s) == [1, 1, 1]
    c, s = explore.traversal_frame(explore.Codes(mu, None), is_vae=False)
    np.testing.assert_allclose(c, mu.mean(0), rtol=1e-5)
    np.testing.assert_allclose(s, mu.std(0), rtol=1e-5)


# ---- prior samples and holes --------------------------------------------------------------------

def test_sample_codes_standard_normal_and_fitted_gaussian():
    z = explore.sample_codes(20000, 3, seed=0)
    np.testing.assert_allclose(z.mean(0), 0, atol=0.03)
    np.testing.assert_allclose(np.cov(z.T), np.eye(3), atol=0.04)
    np.testing.assert_array_equal(explore.sample_codes(7, 3, seed=2), explore.sample_codes(7, 3, seed=2))
    assert not np.array_equal(explore.sample_codes(7, 3, seed=2), explore.sample_codes(7, 3, seed=3))
    rng = np.random.default_rng(8)
    data = rng.multivariate_normal([5.0, -2.0], [[4.0, 1.5], [1.5, 1.0]], 3000)
    s = explore.sample_codes(20000, 2, seed=1, fit_to=data)
    np.testing.assert_allclose(s.mean(0), data.mean(0), atol=0.06)
    np.testing.assert_allclose(np.cov(s.T), np.cov(data.T), atol=0.12)
    with pytest.raises(ValueError):
        explore.sample_codes(5, 3, seed=0, fit_to=data)


def test_off_manifold_flags_far_samples_and_not_reference_images():
    rng = np.random.default_rng(9)
    ref = rng.random((400, 20)).astype(np.float32) * 0.1
    res = explore.off_manifold(ref[:50] + 1e-4, ref)
    assert res.fraction == 0.0 and res.threshold > 0
    far = explore.off_manifold(ref[:50] + 5.0, ref)
    assert far.fraction == 1.0 and far.distances.shape == (50,)
    # Brute-force check of the distances.
    d = np.linalg.norm((ref[:50] + 5.0)[:, None] - ref[None], axis=2).min(1)
    np.testing.assert_allclose(far.distances, d, rtol=1e-4)
    # A collapsed decoder (every output identical) does not flag its own identical samples.
    same = np.tile(ref[:1], (30, 1))
    assert explore.off_manifold(same[:5], same).fraction == 0.0
    with pytest.raises(ValueError):
        explore.off_manifold(ref[:5, :3], ref)


# ---- selections, placement and export -------------------------------------------------------------

def test_selected_indices_from_plotly_points():
    pts = [{"customdata": 5}, {"customdata": [7, "x"]}, {"customdata": 5}, {"customdata": 3.0},
           {"customdata": 2.5}, {"customdata": 999}, {"customdata": None}, {"x": 1}, "junk",
           {"customdata": True}, {"customdata": "12"}, {"customdata": [1.5, -0.3]}]
    assert explore.selected_indices(pts, 100) == [5, 7, 3, 12]
    assert explore.selected_indices(None, 10) == []
    assert explore.selected_grid_point(pts) == (1.5, -0.3)
    assert explore.selected_grid_point([{"customdata": 4}]) is None
    # Plotly sends rows of a typed 2-D customdata array as {"0": u, "1": v} (seen in Chromium).
    assert explore.selected_grid_point([{"customdata": {"1": 1.83, "0": -1.83}}]) == (-1.83, 1.83)
    assert explore.selected_indices([{"customdata": {"0": 8}}], 10) == [8]


def test_place_by_neighbours_puts_known_codes_on_their_points():
    rng = np.random.default_rng(10)
    codes = rng.standard_normal((60, 4))
    xy = rng.standard_normal((60, 2))
    np.testing.assert_allclose(explore.place_by_neighbours(codes, xy, codes[[3, 9]], k=1), xy[[3, 9]], rtol=1e-6)


def test_coordinates_table_and_its_csv():
    from core.ui import to_csv

    xy = np.array([[0.5, 1.25], [2.0, -1.0]])
    z = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    cols = explore.coordinates_table(np.array([4, 9]), np.array([1, 7]), xy, z, "tsne")
    assert list(cols) == ["index", "label", "tsne_x", "tsne_y", "z1", "z2", "z3"]
    lines = to_csv(cols).strip().splitlines()
    assert lines[0] == "index,label,tsne_x,tsne_y,z1,z2,z3"
    assert lines[2] == "9,7,2.0,-1.0,4.0,5.0,6.0"
    with pytest.raises(ValueError):
        explore.coordinates_table(np.array([1]), np.array([1, 2]), xy, z, "pca")


# ---- figures ---------------------------------------------------------------------------------------

def _points_by_trace(fig):
    return {t.name: (np.asarray(t.x), np.asarray(t.customdata) if t.customdata is not None else None) for t in fig.data}


def test_explorer_map_has_one_point_per_sample_with_the_right_labels_and_overlays():
    rng = np.random.default_rng(11)
    xy = rng.standard_normal((120, 2))
    y = rng.integers(0, 10, 120)
    names = tuple(str(i) for i in range(10))
    fig = LF.explorer_map(xy, y, "t", ("a", "b"), names, selected=5, neighbours=[1, 2, 3],
                          paths={"linear": xy[:4], "spherical": xy[4:8]}, endpoints=(0, 9), decoded_point=[0.1, 0.2])
    assert all(t.type == "scatter" for t in fig.data)  # SVG, never WebGL
    class_traces = [t for t in fig.data if t.name in names]
    assert sum(len(t.x) for t in class_traces) == 120
    for t in class_traces:
        idx = np.asarray(t.customdata)
        assert (y[idx] == int(t.name)).all()
        np.testing.assert_allclose(np.asarray(t.x), xy[idx, 0])
        assert "index %{customdata}" in t.hovertemplate
    by = _points_by_trace(fig)
    assert list(by["selected"][1]) == [5] and list(by["neighbours"][1]) == [1, 2, 3]
    assert list(by["A and B"][1]) == [0, 9] and len(by["linear path"][0]) == 4
    assert "decoded point" in by
    json.dumps(fig.to_plotly_json(), default=str)


def test_manifold_mosaic_has_a_clickable_cell_per_tile():
    n = 5
    imgs = np.random.default_rng(12).random((n * n, 64)).astype(np.float32)
    u, v, pts = explore.manifold_grid(n)
    fig = LF.manifold_mosaic(imgs, (8, 8), u, v, ("z₁", "z₂"), marker=[0.0, 0.0])
    grid = next(t for t in fig.data if t.name == "grid")
    cd = np.asarray(grid.customdata)
    assert cd.shape == (n * n, 2)
    np.testing.assert_allclose(cd, pts, rtol=1e-6)  # same order as the decoded images
    assert any(t.name == "slider code" for t in fig.data)


def test_strips_and_samples_map_shapes():
    imgs = np.zeros((2 * 9, 64), dtype=np.float32)
    fig = LF.traversal_strips(imgs, (8, 8), ["z1", "z2"], np.linspace(-3, 3, 9))
    texts = [a.text for a in fig.layout.annotations]
    assert "-3.0σ" in texts and "+3.0σ" in texts and "z1" in texts and "0" in texts
    m = LF.samples_map(np.zeros((10, 2)), np.arange(10) % 3, np.ones((6, 2)), "s", ("a", "b"),
                       off=np.array([1, 0, 0, 1, 0, 0], bool))
    by = _points_by_trace(m)
    assert len(by["sample"][0]) == 4 and len(by["sample off the manifold"][0]) == 2


# ---- t-SNE jobs in the background ------------------------------------------------------------------

def _blobs(n=90, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((3, 5)) * 6
    return (centres[np.arange(n) % 3] + rng.standard_normal((n, 5))).astype(np.float32)


def test_tsne_job_runs_in_the_background_and_matches_a_direct_run():
    from core.embed import tsne_fit

    x = _blobs()
    job = explore.TsneJob(x, seed=4, perplexity=10, n_iter=50, early_exaggeration_iter=25, every=25)
    assert job.status == "new" and job.layout is None
    job.start()
    job.join(120)
    assert job.status == "done", job.error
    assert job.iteration == job.total == 75 and job.progress == 1.0
    assert job.updates == 1 + 75 // 25  # the PCA start, then every 25 iterations: the page redraws these
    layout, emb = job.result
    assert layout.shape == (90, 2) and emb is not None
    ref, _ = tsne_fit(x, seed=4, perplexity=10, n_iter=50, early_exaggeration_iter=25)
    np.testing.assert_allclose(layout, ref, rtol=1e-5, atol=1e-5)  # same seed, same map
    np.testing.assert_array_equal(job.layout, layout)


def test_tsne_job_stops_when_nobody_watches_and_waits_for_a_slot():
    now = [0.0]
    slots = threading.Semaphore(1)
    slots.acquire()  # another run holds the only slot
    job = explore.TsneJob(_blobs(), seed=0, perplexity=10, n_iter=50, lease=5.0, slots=slots, clock=lambda: now[0])
    job.start()
    time.sleep(0.5)
    assert job.status == "queued"
    job.heartbeat()
    now[0] = 100.0  # nobody has called heartbeat() for longer than the lease
    job.join(30)
    assert job.status == "abandoned" and job.result is None
    slots.release()
    # A run that loses its viewers while running stops at its next progress callback.
    now[0] = 0.0
    job2 = explore.TsneJob(_blobs(), seed=0, perplexity=10, n_iter=1000, lease=5.0, clock=lambda: now[0])
    job2.start()
    deadline = time.time() + 60
    while job2.iteration < 25 and time.time() < deadline:
        time.sleep(0.05)
    now[0] = 100.0
    job2.join(60)
    assert job2.status == "abandoned" and job2.iteration < job2.total


def test_tsne_jobs_share_runs_by_key_and_report_failures():
    jobs = explore.TsneJobs(max_running=1)
    x = _blobs()
    a = jobs.get_or_start("k", x, 0, 10, 50)
    assert jobs.get_or_start("k", x, 0, 10, 50) is a and len(jobs) == 1  # one run per key
    a.join(120)
    assert a.status == "done"
    jobs.discard("k")
    assert jobs.get("k") is None
    bad = jobs.get_or_start("same", np.ones((20, 3), np.float32), 0, 5, 50)  # all points identical
    bad.join(60)
    assert bad.status == "failed" and "identical" in bad.error
    assert jobs.get_or_start("same", np.ones((20, 3), np.float32), 0, 5, 50) is bad  # not retried


# ---- active units in traversals; the aggregate posterior against the prior --------------------

def test_barely_active_names_active_dimensions_whose_means_hardly_move():
    var = np.array([0.99, 0.023, 0.5, 0.021, 0.005, 0.05, 0.0501])
    act = var > 0.01  # core.units' criterion
    assert explore.barely_active(var, act) == [1, 3, 5]  # 0.005 is collapsed, not "barely active"
    assert explore.barely_active(var, act, upper=0.03) == [1, 3]
    with pytest.raises(ValueError):
        explore.barely_active(var, act[:3])
    assert explore.dim_list([5, 7, 14]) == "z6, z8 and z15"  # the app labels dimensions from z1
    assert explore.dim_list([2]) == "z3" and explore.dim_list([]) == ""


def test_aggregate_spread_against_the_prior_itself():
    """Codes that are the prior's own samples: variance 1 per axis and 1 % beyond the 99 % radius."""
    from scipy.stats import chi2

    rng = np.random.default_rng(0)
    for k in (2, 16):
        z = rng.standard_normal((200_000, k))
        sp = explore.aggregate_spread(z)  # an autoencoder's codes: the points themselves
        np.testing.assert_allclose(sp.var_q, 1.0, atol=0.02)
        assert sp.radius == pytest.approx(np.sqrt(chi2.ppf(0.99, k)))
        assert sp.beyond == pytest.approx(0.01, abs=0.002) and sp.prior_beyond == pytest.approx(0.01)
    # 2-D: P(|z| > r) = exp(-r^2 / 2), so the 99 % radius is sqrt(2 ln 100) = 3.035
    assert explore.aggregate_spread(rng.standard_normal((10, 2))).radius == pytest.approx(np.sqrt(2 * np.log(100)))


def test_aggregate_spread_of_a_vae_samples_q_of_z():
    """mu and logvar: q(z)'s variance is Var(mu) + E sigma^2 (law of total variance), and the share
    beyond the radius is that of z ~ q(z|x) (checked with torch.distributions)."""
    rng = np.random.default_rng(1)
    mu = rng.normal(0, 1.3, size=(40_000, 2))
    logvar = np.log(rng.uniform(0.05, 0.3, size=(40_000, 2)))
    sp = explore.aggregate_spread(mu, logvar, seed=3)
    np.testing.assert_allclose(sp.var_mu, mu.var(0))
    np.testing.assert_allclose(sp.var_q, mu.var(0) + np.exp(logvar).mean(0))
    torch.manual_seed(0)
    z = torch.distributions.Normal(torch.tensor(mu), torch.tensor(np.exp(logvar / 2))).sample().numpy()
    assert sp.beyond == pytest.approx(float(np.mean(np.linalg.norm(z, axis=1) > sp.radius)), abs=0.006)
    assert sp.beyond > 0.05  # codes spread wider than the prior: many more than 1 % lie beyond the radius
    with pytest.raises(ValueError):
        explore.aggregate_spread(mu[:1])


def test_tsne_jobs_evict_finished_runs_beyond_max_done_and_max_age():
    """Finished and failed runs are kept for other viewers, within bounds, whether or not a page
    ever collects them: at most ``max_done``, none older than ``max_age_s`` after it ended. A run
    in progress is never evicted."""
    now = [0.0]
    jobs = explore.TsneJobs(max_running=1, max_done=2, max_age_s=100.0, clock=lambda: now[0])
    same = np.ones((20, 3), np.float32)  # all points identical: the run fails at once
    failed = []
    for k in range(4):
        job = jobs.get_or_start(("bad", k), same, 0, 5, 50)
        job.join(60)
        assert job.status == "failed"
        failed.append(job)
        now[0] += 1.0
    assert [k for k in range(4) if jobs.get(("bad", k)) is not None] == [2, 3]  # the two newest
    assert jobs._slots.acquire(timeout=5)  # hold the only slot: the next run waits, unfinished
    try:
        waiting = jobs.get_or_start("waiting", _blobs(), 0, 10, 50)
        now[0] += 500.0  # every finished run is now older than max_age_s
        waiting.heartbeat()
        assert jobs.get(("bad", 3)) is None and len(jobs) == 1
        assert jobs.get("waiting") is waiting and not waiting.finished
    finally:
        jobs._slots.release()
    waiting.join(120)
    assert waiting.status == "done"
    assert jobs.get("waiting") is waiting  # done, and young: kept for the next viewer
    now[0] += 101.0
    assert jobs.get("waiting") is None and len(jobs) == 0
