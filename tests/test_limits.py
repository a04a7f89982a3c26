"""core.limits and core.figures.limits: the evidence for the VAE's limitations, checked against
independent computations (numpy slicing, hand-written ELBO terms, exact Gaussian cell masses)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core import elbo, limits, units, zoo
from core.data import load_dataset
from core.figures import limits as lf
from core.training import evaluate_model

DATASETS = ("digits", "mnist-5k")


# ---- independent references (numpy slicing, no convolution) -------------------------------------

def np_laplacian(img: np.ndarray) -> np.ndarray:
    i = img.astype(np.float64)
    return i[:-2, 1:-1] + i[2:, 1:-1] + i[1:-1, :-2] + i[1:-1, 2:] - 4 * i[1:-1, 1:-1]


def np_grad_mag(img: np.ndarray) -> float:
    i = img.astype(np.float64)
    gx = (i[1:-1, 2:] - i[1:-1, :-2]) / 2
    gy = (i[2:, 1:-1] - i[:-2, 1:-1]) / 2
    return float(np.sqrt(gx ** 2 + gy ** 2).mean())


def np_sharpness(x: np.ndarray, shape) -> dict[str, np.ndarray]:
    imgs = np.asarray(x).reshape(-1, *shape)
    return {"laplacian": np.array([np_laplacian(im).var() for im in imgs]),
            "gradient": np.array([np_grad_mag(im) for im in imgs])}


def box_blur(x: np.ndarray, shape) -> np.ndarray:
    """3x3 mean filter with edge padding, numpy only: (N, D) -> (N, D)."""
    imgs = np.asarray(x, dtype=np.float64).reshape(-1, *shape)
    p = np.pad(imgs, ((0, 0), (1, 1), (1, 1)), mode="edge")
    out = sum(p[:, a:a + shape[0], b:b + shape[1]] for a in range(3) for b in range(3)) / 9
    return out.reshape(len(imgs), -1)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


# ---- sharpness -----------------------------------------------------------------------------------

def test_sharpness_matches_numpy_slicing_on_random_and_real_images(digits):
    rng = np.random.default_rng(3)
    rand = rng.random((7, 5 * 6)).astype(np.float32)
    for x, shape in ((rand, (5, 6)), (digits.x[:50], digits.image_shape)):
        ref = np_sharpness(x, shape)
        for m in limits.MEASURES:
            np.testing.assert_allclose(limits.sharpness(x, shape, m), ref[m], rtol=1e-5, atol=1e-7)
        got = limits.sharpness_all(x, shape)
        np.testing.assert_allclose(got["laplacian"], ref["laplacian"], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(got["gradient"], ref["gradient"], rtol=1e-5, atol=1e-7)
        lap = limits.laplacian(x, shape)
        np.testing.assert_allclose(lap[0], np_laplacian(np.asarray(x[0]).reshape(shape)), rtol=1e-5, atol=1e-6)


def test_sharpness_is_zero_for_flat_images_and_falls_with_blur(digits):
    flat = np.full((3, 64), 0.4, dtype=np.float32)
    assert np.allclose(limits.sharpness(flat, (8, 8), "laplacian"), 0)
    assert np.allclose(limits.sharpness(flat, (8, 8), "gradient"), 0)
    x = digits.x[:200]
    blurred = box_blur(x, digits.image_shape)
    for m in limits.MEASURES:
        s, sb = limits.sharpness(x, digits.image_shape, m), limits.sharpness(blurred, digits.image_shape, m)
        assert (sb < s).mean() > 0.95, m


@pytest.mark.parametrize("bad", [
    dict(x=np.zeros((2, 64)), shape=(2, 32)),      # too thin
    dict(x=np.zeros((2, 63)), shape=(8, 8)),       # wrong pixel count
    dict(x=np.zeros((2, 3, 8, 8)), shape=(8, 8)),  # wrong rank
])
def test_sharpness_rejects_bad_shapes(bad):
    with pytest.raises(ValueError):
        limits.sharpness(bad["x"], bad["shape"])


def test_unknown_measure_and_empty_summary_are_refused():
    with pytest.raises(ValueError, match="measure"):
        limits.sharpness(np.zeros((1, 64)), (8, 8), "fft")
    with pytest.raises(ValueError):
        limits.mean_sem([])
    m, se = limits.mean_sem([1.0, 2.0, 3.0, 4.0])
    assert m == 2.5 and se == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)


def test_blur_evidence_numbers_come_from_the_real_images_and_models(digits):
    ev = limits.blur_evidence("digits", seed=4, n_show=6)
    p = zoo.pretrained("digits", "vae", 1.0, 16)
    x_val = digits.x[p.val_idx]
    assert ev["n_val"] == len(x_val)
    ref = np_sharpness(x_val, digits.image_shape)
    for m in limits.MEASURES:
        np.testing.assert_allclose(ev["values"]["original"][m], ref[m], rtol=1e-5, atol=1e-7)
    # VAE reconstructions at z = mu, computed here without core.training.
    with torch.no_grad():
        mu, _ = p.model.encode(torch.as_tensor(x_val))
        rec = torch.sigmoid(p.model.decode_logits(mu)).numpy()
    ref_vae = np_sharpness(rec, digits.image_shape)
    np.testing.assert_allclose(ev["values"]["vae_1"]["laplacian"], ref_vae["laplacian"], rtol=1e-4, atol=1e-6)
    for row in ev["summary"]:
        assert row["mean"] == pytest.approx(float(np.mean(ev["values"][row["source"]][row["measure"]])), rel=1e-9)
    # The shown images are the held-out images at the seeded positions.
    np.testing.assert_array_equal(ev["images"]["original"], x_val[ev["show"]])
    assert ev["images"]["sample_1"].shape == (6, 64)
    head = limits.blur_headline(ev["summary"], "laplacian", 1.0)
    assert head["vae_pct"] == pytest.approx(100 * head["vae"] / head["original"])
    assert head["original"] == pytest.approx(ref["laplacian"].mean(), rel=1e-5)


# ---- rate-distortion -------------------------------------------------------------------------------

@pytest.mark.parametrize("dataset", DATASETS)
def test_rate_distortion_points_equal_the_models_evaluated_elbo_terms(dataset):
    rd = limits.rate_distortion(dataset)
    ds = load_dataset(dataset)
    assert [p["beta"] for p in rd["sweep"]] == sorted(zoo.SWEEP_BETAS)
    for pt in rd["sweep"] + list(rd["variants"].values()):
        p = zoo.pretrained(dataset, "vae", pt["beta"], 16, pt["variant"])
        stored = p.evaluation
        assert pt["rate"] == pytest.approx(stored["kl"], rel=1e-5, abs=1e-6)
        assert pt["distortion"] == pytest.approx(stored["recon"], rel=1e-5)
        assert pt["neg_elbo"] == pytest.approx(stored["neg_elbo"], rel=1e-5)
        assert pt["active_units"] == stored["active_units"]
        fresh = evaluate_model(p.model, ds.x[p.val_idx], pt["beta"], "bernoulli", seed=0)
        assert pt["rate"] == fresh["kl"] and pt["distortion"] == fresh["recon"]
        assert pt["neg_elbo"] == pytest.approx(pt["rate"] + pt["distortion"])
        assert sum(pt["kl_per_dim"]) == pytest.approx(pt["rate"], rel=1e-4, abs=1e-5)
    assert set(rd["variants"]) == {"", "warmup", "freebits"}


def test_rate_and_distortion_are_the_kl_and_reconstruction_nll_by_hand(digits):
    """An independent ELBO: closed-form Gaussian KL and Bernoulli NLL, with the noise that
    evaluate_model draws (one batch, generator seeded 0 + 12345)."""
    pt = limits.rate_distortion("digits")["sweep"]
    for b in (0.5, 2.0):
        p = zoo.pretrained("digits", "vae", b, 16)
        x = torch.as_tensor(digits.x[p.val_idx])
        with torch.no_grad():
            mu, logvar = p.model.encode(x)
            eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(12345))
            logits = p.model.decode_logits(mu + torch.exp(0.5 * logvar) * eps)
            nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1).mean().item()
            kl = (0.5 * (mu ** 2 + logvar.exp() - 1 - logvar)).sum(1).mean().item()
        point = next(q for q in pt if q["beta"] == b)
        assert point["distortion"] == pytest.approx(nll, rel=1e-5)
        assert point["rate"] == pytest.approx(kl, rel=1e-4)


def test_active_units_are_the_one_burda_count(digits):
    """rd_point counts active units with core.units (Var_x(mu_j) > 0.01 on held-out images), once."""
    p = zoo.pretrained("digits", "vae", 1.0, 16)
    pt = limits.rd_point(p, digits.x[p.val_idx])
    with torch.no_grad():
        mu = p.model.encode(torch.as_tensor(digits.x[p.val_idx]))[0].double().numpy()
    var = mu.var(axis=0)
    np.testing.assert_allclose(pt["var_mu"], var, rtol=1e-6, atol=1e-9)
    assert pt["active_units"] == int((var > 0.01).sum()) == units.count_active(mu)
    assert "active_units_cov" not in pt and not hasattr(limits, "active_units_cov")


def test_train_vs_heldout_is_the_mean_of_one_sample_evaluations(digits):
    tv = limits.train_vs_heldout("digits", n_seeds=2, betas=(0.5, 1.0))
    assert [r["beta"] for r in tv["rows"]] == [0.5, 1.0] and tv["epochs"] == 150
    p = zoo.pretrained("digits", "vae", 1.0, 16)
    train, val = limits.split_indices(p)
    assert tv["n_train"] == len(train) and tv["n_val"] == len(val)
    ev = [evaluate_model(p.model, digits.x[train], 1.0, "bernoulli", seed=s)["neg_elbo"] for s in (0, 1)]
    row = tv["rows"][1]
    assert row["train"] == pytest.approx(np.mean(ev), rel=1e-9)
    assert row["train_sd"] == pytest.approx(np.std(ev, ddof=1), rel=1e-6)
    assert row["val"] > row["train"]  # held-out images are harder than the ones trained on


def _row(beta, train, val, sd=0.05, weak=0):
    return dict(beta=beta, train=train, train_sd=sd, val=val, val_sd=sd, var_mu=[0.0] * weak + [1.0] * (4 - weak))


@pytest.mark.parametrize("rows,best,case", [
    ([_row(0.5, 100.0, 110.0), _row(1.0, 100.5, 110.6, weak=2)], 0.5, "optimisation"),
    ([_row(0.5, 100.3, 110.0), _row(1.0, 100.0, 110.05)], 0.5, "noise"),
    ([_row(0.5, 100.3, 110.0), _row(1.0, 100.0, 111.0)], 0.5, "generalisation"),
    ([_row(0.5, 100.3, 111.0), _row(1.0, 100.0, 110.0)], 1.0, "beta1"),
])
def test_best_beta_reason_cases(rows, best, case):
    r = limits.best_beta_reason(rows, best)
    assert r["case"] == case
    assert r["d_val"] == pytest.approx(rows[1]["val"] - next(x for x in rows if x["beta"] == best)["val"])
    assert r["noise"] == pytest.approx(math.hypot(0.05, 0.05))
    if case == "optimisation":
        assert r["weak_one"] == 2 and r["weak_best"] == 0
    with pytest.raises(ValueError):
        limits.best_beta_reason(rows[:1], 0.5)


def test_iso_elbo_levels_and_collapse_headline():
    pts = [dict(beta=b, rate=r, distortion=d, neg_elbo=r + d, active_units=a, kl_per_dim=[0.0] * 4)
           for b, r, d, a in ((0.5, 5.0, 20.0, 3), (1.0, 3.0, 21.0, 2), (4.0, 0.0, 27.0, 0), (8.0, 0.0, 27.0, 0))]
    assert limits.iso_elbo_levels(pts, 3) == [24.0, 25.5, 27.0]
    h = limits.collapse_headline(pts)
    assert h["best_beta"] == 1.0 and h["first_collapsed"] == 4.0 and h["latent_dim"] == 4
    assert limits.collapse_headline(pts[:2])["first_collapsed"] is None


def test_remedy_runs_report_each_variant():
    rr = limits.remedy_runs("digits", seed=1, n_show=5)
    assert set(rr) == {"", "warmup", "freebits"}
    assert rr["warmup"]["train_config"]["warmup_steps"] > 0 and rr["freebits"]["train_config"]["free_bits"] > 0
    for v, r in rr.items():
        assert r["recon"].shape == r["original"].shape == (5, 64)
        assert len(r["history"]["step"]) == len(r["history"]["kl"]) > 10
    # The warm-up run's beta ramps up from (near) 0; the others train at beta from the start.
    assert rr["warmup"]["history"]["beta"][0] < 1.0 and rr[""]["history"]["beta"][0] == 4.0


# ---- prior hole --------------------------------------------------------------------------------------

def test_prior_cell_mass_is_the_exact_gaussian_probability():
    edges = np.array([-1.0, 0.0, 0.5, 2.0])
    mass = limits.prior_cell_mass(edges)
    phi = lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2)))  # noqa: E731
    assert mass[1, 2] == pytest.approx((phi(0.5) - phi(0.0)) * (phi(2.0) - phi(0.5)), rel=1e-12)
    assert limits.prior_cell_mass(np.linspace(-8, 8, 9)).sum() == pytest.approx(1.0, abs=1e-12)


def test_find_holes_on_codes_that_avoid_the_centre():
    rng = np.random.default_rng(0)
    ang = rng.uniform(0, 2 * np.pi, 4000)
    rad = rng.uniform(1.5, 2.5, 4000)  # a ring: nothing within radius 1.5
    mu = np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)
    h = limits.find_holes(mu, cell=0.5, min_expected=5, max_fill=0.0)
    assert h["counts"].sum() == len(mu)
    np.testing.assert_allclose(h["expected"], 4000 * limits.prior_cell_mass(h["edges"]))
    assert len(h["holes"]) > 0
    assert np.all(np.hypot(h["holes"][:, 0], h["holes"][:, 1]) < 1.5)       # every hole is inside the ring
    assert np.all(np.diff(h["hole_expected"]) <= 0)                          # most surprising first
    centre = (np.abs(h["edges"][:-1] + 0.5) < 1e-9).nonzero()[0][0]  # the cell [-0.5, 0) x [-0.5, 0)
    assert h["counts"][centre, centre] == 0 and h["expected"][centre, centre] > 100
    # The prior mass of the holes is the share of prior samples that land in one (Monte Carlo check).
    z = rng.standard_normal((200_000, 2))
    ci = np.clip(np.searchsorted(h["edges"], z, side="right") - 1, 0, len(h["edges"]) - 2)
    inside = np.all(np.abs(z) < 3, axis=1)
    holes_mask = (h["counts"] == 0) & (h["expected"] >= 5)
    np.testing.assert_array_equal(h["hole_mask"], holes_mask)
    mc = np.mean(inside & holes_mask[ci[:, 0], ci[:, 1]])
    assert h["hole_mass"] == pytest.approx(mc, abs=0.01)
    # Busy cells are where the codes are.
    assert np.all(np.hypot(h["busy"][:, 0], h["busy"][:, 1]) > 1.0)
    assert h["kl_grid"] > 0.5


def test_whole_posteriors_fill_the_prior_when_the_model_collapsed():
    """q(z|x) = N(0, I) for every x: the aggregate posterior is the prior, so there is no hole,
    even though every mean sits at 0 (where the mean-only count finds many)."""
    mu, sigma = np.zeros((3000, 2)), np.ones((3000, 2))
    by_mean = limits.find_holes(mu, None, cell=0.5, min_expected=5)
    whole = limits.find_holes(mu, sigma, cell=0.5, min_expected=5, max_fill=0.9)
    assert len(by_mean["holes"]) > 20
    assert len(whole["holes"]) == 0 and whole["kl_grid"] < 1e-9
    np.testing.assert_allclose(whole["observed"], whole["expected"], rtol=1e-9)
    # Tiny sigmas behave like points.
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(500, 2))
    np.testing.assert_allclose(limits.posterior_cell_mass(pts, np.full_like(pts, 1e-9), by_mean["edges"]),
                               limits.posterior_cell_mass(pts, None, by_mean["edges"]), atol=1e-12)


def test_grid_kl_of_whole_posteriors_is_a_lower_bound_and_the_means_histogram_is_not():
    """Data-processing inequality: grouping z into cells can only lower KL(q(z) || p(z)). The true
    KL of the mixture q(z) = (1/N) sum_n N(mu_n, sigma_n^2) is estimated independently by Monte
    Carlo with torch.distributions."""
    rng = np.random.default_rng(3)
    n = 400
    mu = rng.normal(0, 1.4, size=(n, 2))
    sigma = rng.uniform(0.2, 0.6, size=(n, 2))
    h = limits.find_holes(mu, sigma, cell=0.25)
    assert h["kl_grid_is_bound"] is True
    D = torch.distributions
    mix = D.MixtureSameFamily(D.Categorical(torch.ones(n, dtype=torch.float64)),
                              D.Independent(D.Normal(torch.as_tensor(mu), torch.as_tensor(sigma)), 1))
    prior = D.Independent(D.Normal(torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)), 1)
    torch.manual_seed(0)
    z = mix.sample((40_000,))
    diff = (mix.log_prob(z) - prior.log_prob(z)).numpy()
    true_kl, se = diff.mean(), diff.std() / math.sqrt(len(diff))
    assert 0 < h["kl_grid"] <= true_kl + 3 * se
    # A collapsed model: q(z|x) = N(0, I) for all x, so KL(q(z) || p(z)) = 0; the histogram of the
    # means (all at 0) has a large grid KL, which therefore bounds nothing.
    zeros, ones = np.zeros((1000, 2)), np.ones((1000, 2))
    means_only = limits.find_holes(zeros, None, cell=0.5)
    assert means_only["kl_grid_is_bound"] is False and means_only["kl_grid"] > 1.0
    assert limits.find_holes(zeros, ones, cell=0.5)["kl_grid"] < 1e-9


def test_mass_outside_matches_the_prior_and_a_shifted_gaussian():
    n = 4000
    got = limits.mass_outside(np.zeros((n, 2)), np.ones((n, 2)), 3.0, n_draws=16, seed=0)
    assert got == pytest.approx(math.exp(-4.5), abs=0.002)  # P(|z| > 3) under N(0, I) in 2-D
    far = limits.mass_outside(np.full((10, 2), 10.0), np.full((10, 2), 0.1), 3.0)
    assert far == 1.0


def test_hole_threshold_is_a_share_of_the_expected_count():
    """A cell where the prior expects e codes is a hole when at most max_fill * e lie there."""
    rng = np.random.default_rng(2)
    mu = rng.standard_normal((20000, 2))
    keep = ~((mu[:, 0] > 0) & (mu[:, 0] < 0.5) & (mu[:, 1] > 0) & (mu[:, 1] < 0.5) & (rng.random(20000) < 0.85))
    mu = mu[keep]  # the cell [0, 0.5)^2 keeps about 15 % of its codes
    loose = limits.find_holes(mu, cell=0.5, max_fill=0.25)
    strict = limits.find_holes(mu, cell=0.5, max_fill=0.1)
    assert [0.25, 0.25] in loose["holes"].tolist() and len(loose["holes"]) == 1
    assert len(strict["holes"]) == 0
    with pytest.raises(ValueError):
        limits.find_holes(mu, max_fill=1.0)


@pytest.mark.parametrize("kw", [dict(cell=0.01), dict(min_expected=0), dict(cell=0.5, mu=np.zeros((5, 3)))])
def test_find_holes_validates(kw):
    mu = kw.pop("mu", np.zeros((5, 2)))
    with pytest.raises(ValueError):
        limits.find_holes(mu, **kw)


def test_aggregate_posterior_and_decoding_use_the_2d_model(digits):
    post = limits.aggregate_posterior("digits", 1.0)
    p = zoo.pretrained("digits", "vae", 1.0, 2)
    train, val = limits.split_indices(p)
    assert len(train) + len(val) == digits.n and not set(train) & set(val)
    assert post["mu"].shape == (len(train), 2) and np.all(post["sigma"] > 0)
    np.testing.assert_allclose(post["agg_var"], post["mu"].var(0) + (post["sigma"] ** 2).mean(0), rtol=1e-6)
    D = torch.distributions
    kl = D.kl_divergence(D.Normal(torch.as_tensor(post["mu"]), torch.as_tensor(post["sigma"])),
                         D.Normal(0.0, 1.0)).sum(1).mean().item()
    assert post["rate"] == pytest.approx(kl, rel=1e-5)
    assert post["share_outside"] == pytest.approx(float((np.hypot(*post["mu"].T) > 3).mean()))
    assert 0 <= post["agg_outside"] <= 1 and post["prior_outside"] == pytest.approx(math.exp(-4.5))
    z = np.array([[0.0, 0.0], [1.0, -1.0]])
    with torch.no_grad():
        ref = torch.sigmoid(p.model.decode_logits(torch.as_tensor(z, dtype=torch.float32))).numpy()
    np.testing.assert_allclose(limits.decode_points("digits", 1.0, z), ref, rtol=1e-6)
    assert limits.decode_points("digits", 1.0, np.zeros((0, 2))).shape == (0, 64)


# ---- complex data --------------------------------------------------------------------------------------

def test_real_vs_fake_classifier_is_at_chance_on_real_vs_real_and_perfect_on_grey(digits):
    x = digits.x
    acc_same = limits.real_vs_fake_accuracy(x[:600], x[600:1200], x[1200:1500], x[1500:1797])
    assert 0.35 < acc_same < 0.65
    grey = np.full((600, 64), 0.3, dtype=np.float32)
    assert limits.real_vs_fake_accuracy(x[:600], grey, x[1200:1500], grey[:300]) == 1.0


def test_confident_fraction():
    assert limits.confident_fraction([0.2, 0.95, 0.9, 0.5], 0.9) == 0.5
    with pytest.raises(ValueError):
        limits.confident_fraction([0.5], 0.0)


def test_complex_data_evidence_on_digits(digits):
    e = limits.complex_data_evidence("digits", seed=0, n_show=4)
    p = zoo.pretrained("digits", "vae", 1.0, 16)
    x_val = digits.x[p.val_idx]
    assert e["sharp"]["laplacian"]["original"] == pytest.approx(np_sharpness(x_val, (8, 8))["laplacian"].mean(), rel=1e-5)
    assert 0.8 < e["acc_real"] <= 1.0 and 0 <= e["acc_vae"] <= 1 and 0 <= e["c2st_acc"] <= 1
    assert e["maxprob_sample"].shape == (len(x_val),) and np.all((e["maxprob_sample"] > 0) & (e["maxprob_sample"] <= 1))
    with torch.no_grad():
        rec = torch.sigmoid(p.model.decode_logits(p.model.encode(torch.as_tensor(x_val))[0])).numpy()
    assert e["mse_vae"] == pytest.approx(float(((rec - x_val) ** 2).mean()), rel=1e-5)
    rows = limits.complex_rows([e], 0.9)
    r = rows[0]
    assert r["confident, VAE samples (%)"] == pytest.approx(100 * np.mean(e["maxprob_sample"] >= 0.9))
    assert r["samples pass as real (%)"] == pytest.approx(100 * min(1, 2 * (1 - e["c2st_acc"])))
    assert r["VAE parameters"] == sum(t.numel() for t in p.model.parameters())
    assert limits.complex_rows([e], 0.5)[0]["confident, VAE samples (%)"] >= r["confident, VAE samples (%)"]


def test_one_judge_serves_every_seed(digits):
    """The judge depends on no seed, so the page fits it once per dataset and passes it in."""
    j1, j2 = limits.fit_judge("digits"), limits.fit_judge("digits")
    np.testing.assert_array_equal(j1.coef_, j2.coef_)  # L-BFGS: deterministic
    shared = {}
    for seed in (0, 3):
        own = limits.complex_data_evidence("digits", seed=seed, n_show=4)
        shared[seed] = limits.complex_data_evidence("digits", seed=seed, n_show=4, judge=j1)
        for k in ("acc_real", "acc_vae", "c2st_acc", "mse_vae"):
            assert shared[seed][k] == own[k], k
        np.testing.assert_array_equal(shared[seed]["maxprob_sample"], own["maxprob_sample"])
    # the seed still chooses the prior samples the judge sees
    assert not np.array_equal(shared[0]["maxprob_sample"], shared[3]["maxprob_sample"])


# ---- figures ----------------------------------------------------------------------------------------------

def _pts():
    return [dict(beta=b, rate=r, distortion=d, neg_elbo=r + d, active_units=a, variant="",
                 kl_per_dim=[r / 4] * 4)
            for b, r, d, a in ((0.0, 200.0, 15.0, 4), (0.5, 5.0, 20.0, 3), (1.0, 3.0, 21.0, 2), (4.0, 0.0, 27.0, 0),
                               (8.0, 0.0, 27.0, 0))]


def test_rate_distortion_figure_plots_the_points_and_iso_elbo_lines():
    pts = _pts()
    var = {"": pts[3], "freebits": dict(pts[2], beta=4.0, variant="freebits")}
    fig = lf.rate_distortion(pts, var, limits.iso_elbo_levels(pts[1:]), zoom=True)
    sweep = next(t for t in fig.data if t.name == "plain VAEs, β sweep")
    assert list(sweep.x) == [p["rate"] for p in pts] and list(sweep.y) == [p["distortion"] for p in pts]
    iso = [t for t in fig.data if t.legendgroup == "iso"]
    assert iso and all(np.allclose(np.diff(t.y) / np.diff(t.x), -1) for t in iso)
    assert fig.layout.xaxis.range[1] < 200  # beta = 0 left off the chart ...
    texts = " ".join(a.text for a in fig.layout.annotations)
    assert "off the chart" in texts and "β=4, 8" in texts  # ... and the collapsed pair share a label
    wide = lf.rate_distortion(pts, var, zoom=False)
    assert wide.layout.xaxis.range[1] > 200
    assert any(t.name and "free bits" in t.name for t in fig.data)


def _beta_label_boxes(fig):
    """The β labels' boxes in plot pixels, rebuilt from the figure the way label_boxes sized them."""
    xr, yr = fig.layout.xaxis.range, fig.layout.yaxis.range
    w, h = lf.RD_PLOT_PX
    font = lf.RD_LABEL_FONT * 1.35
    boxes = []
    for a in fig.layout.annotations:
        if not a.text.startswith("β=") or a.showarrow:
            continue
        x = (a.x - xr[0]) / (xr[1] - xr[0]) * w + a.xshift
        y = (a.y - yr[0]) / (yr[1] - yr[0]) * h + a.yshift
        boxes.append((x, y, x + lf._CHAR_PX * font * len(a.text), y + 1.25 * font, a.text))
    return boxes


@pytest.mark.parametrize("dataset", ["digits", "mnist-5k"])
@pytest.mark.parametrize("zoom", [True, False])
def test_rate_distortion_beta_labels_do_not_collide(dataset, zoom):
    """Issue 20: the β labels overlapped each other. Every label box is clear of every other one and
    inside the plot; a label that finds no free place is left to the hover text (which names β)."""
    rd = limits.rate_distortion(dataset)
    levels = limits.iso_elbo_levels([p for p in rd["sweep"] if p["beta"] > 0] if zoom else rd["sweep"])
    fig = lf.rate_distortion(rd["sweep"], rd["variants"], levels, zoom=zoom)  # as the page draws it
    boxes = _beta_label_boxes(fig)
    assert len(boxes) >= 4
    xr, yr = fig.layout.xaxis.range, fig.layout.yaxis.range
    w, h = lf.RD_PLOT_PX

    def px(r, d):
        return (r - xr[0]) / (xr[1] - xr[0]) * w, (d - yr[0]) / (yr[1] - yr[0]) * h

    iso = [t for t in fig.data if t.legendgroup == "iso"]
    assert len(iso) == len(levels) >= 2
    on_a_line = 0
    for i, a in enumerate(boxes):
        assert a[0] >= -1e-6 and a[1] >= -1e-6 and a[2] <= lf.RD_PLOT_PX[0] + 1e-6 and a[3] <= lf.RD_PLOT_PX[1] + 1e-6
        for b in boxes[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
        for t in iso:  # no label sits on a dashed line of equal −ELBO: sampled every 0.5 px along it
            (x0, y0), (x1, y1) = px(t.x[0], t.y[0]), px(t.x[-1], t.y[-1])
            n = int(max(abs(x1 - x0), abs(y1 - y0)) * 2) + 2
            xs, ys = np.linspace(x0, x1, n), np.linspace(y0, y1, n)
            on_a_line += bool(np.any((xs > a[0]) & (xs < a[2]) & (ys > a[1]) & (ys < a[3])))
    # The labels keep off the dashed lines of equal −ELBO where there is room between them; at most one
    # (the collapsed models' "β=4, 8" in the corner, where the lines are closer than a label is wide)
    # crosses one, on a white background like every β label.
    assert on_a_line <= 1, on_a_line
    assert all(a.bgcolor == "rgba(255,255,255,0.85)" for a in fig.layout.annotations if a.text.startswith("β="))
    assert "β=%{customdata[0]:g}" in next(t for t in fig.data if t.name == "plain VAEs, β sweep").hovertemplate


def test_label_boxes_keep_off_a_line():
    """A line straight through the first choice (right of the point) sends the label elsewhere; the
    box it gets does not touch the line."""
    seg = ((0.0, 160.0), (440.0, 160.0))  # horizontal, 10 px above the point
    free = lf.label_boxes([(200.0, 150.0)], ["β=1"], 16.0)[0]
    kept = lf.label_boxes([(200.0, 150.0)], ["β=1"], 16.0, lines_px=[seg])[0]
    assert free[1] < 160 < free[3]  # without the line, the label would sit on it
    assert kept is not None and not (kept[1] - 1.5 < 160 < kept[3] + 1.5)
    assert lf._segment_hits_box(((0, 0), (10, 10)), (4, 4, 6, 6)) and not lf._segment_hits_box(
        ((0, 0), (10, 0)), (4, 4, 6, 6))


def test_label_boxes_leave_a_crowded_label_to_the_hover():
    """Thirty points on one spot: the first label is placed, no two placed boxes overlap, and those that
    find no place within about two label heights of the point are left to the hover text."""
    boxes = lf.label_boxes([(200.0, 150.0)] * 30, [f"β={i}" for i in range(30)], 16.0)
    placed = [b for b in boxes if b is not None]
    assert boxes[0] is not None and len(placed) < 30
    for i, a in enumerate(placed):
        for b in placed[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def test_other_figures_build():
    pts = _pts()
    fig = lf.active_units(pts, 4)
    assert len(fig.data) == 1 and list(fig.data[0].y) == [4, 3, 2, 0, 0]  # one count: Burda et al.
    assert "Burda" in fig.data[0].name
    summary = [dict(source=s, kind=s.split("_")[0], beta=None, measure="laplacian", mean=m, sem=0.01)
               for s, m in (("original", 1.0), ("ae", 0.9), ("vae_1", 0.5), ("sample_1", 0.4), ("vae_4", 0.1),
                            ("sample_4", 0.1))]
    fig = lf.sharpness_vs_beta(summary, [1.0, 4.0], "laplacian", "Variance", selected_beta=4.0)
    assert [t.name for t in fig.data][:2] == ["real images", "AE reconstructions"]
    assert list(fig.data[2].y) == [0.5, 0.1]
    post_mu = np.random.default_rng(0).normal(size=(300, 2))
    holes = limits.find_holes(post_mu, cell=0.5, min_expected=1)
    fig = lf.prior_hole(post_mu, np.arange(300) % 10, holes)
    assert fig.data[0].type == "contour" and len(holes["holes"]) > 0
    # each point inside the drawn square once, at its own coordinates (sent as float32) with its own index
    pts_tr = [t for t in fig.data[1:11]]
    idx = np.concatenate([np.asarray(t.customdata) for t in pts_tr])
    lim = fig.layout.xaxis.range[1]
    inside = np.nonzero((np.abs(post_mu) <= lim).all(1))[0]
    assert sorted(idx.tolist()) == inside.tolist() and np.asarray(pts_tr[0].x).dtype == np.float32
    xy = np.concatenate([np.stack([t.x, t.y], 1) for t in pts_tr])
    np.testing.assert_allclose(xy, post_mu[idx], rtol=1e-6, atol=1e-6)
    assert sum(sh.line.color == lf.HOLE_COLOR for sh in fig.layout.shapes) == len(holes["holes"])
    # Only the first n_numbered holes (those decoded below the map) carry a number; every hole has its hover.
    few = lf.prior_hole(post_mu, np.arange(300) % 10, holes, n_numbered=2)
    labels = next(t for t in few.data if t.name == "holes")
    assert len(holes["holes"]) > 2 and list(labels.text[:2]) == ["1", "2"] and not any(labels.text[2:])
    assert len(labels.customdata) == len(holes["holes"]) and labels.customdata[-1][0] == len(holes["holes"])
    bars = lf.kl_per_dim_compare({"": pts[1], "freebits": pts[2]}, free_bits=0.5)
    assert [t.type for t in bars.data] == ["bar", "bar", "scatter"] and bars.layout.barmode == "group"
    # the free-bits floor is a dashed line across the plot, named in the legend, not written over the bars
    assert [sh.y0 for sh in bars.layout.shapes] == [0.5] and bars.data[2].name == "free-bits floor λ = 0.5 nats"
    assert not [a for a in bars.layout.annotations if "free-bits" in (a.text or "")]
    assert "nats" not in " ".join(a.text for a in bars.layout.annotations if "active" in a.text)
    curve = lf.bound_curve([1, 10, 100], {1: -25.0, 10: -24.5, 100: -24.3})
    assert list(curve.data[0].y) == [-25.0, -24.5, -24.3] and curve.layout.xaxis.type == "log"


# ---- only a bound -----------------------------------------------------------------------------------------

def _iwae_reference(model, x, k, seed):
    """L_k with torch.distributions (the same draws as core.elbo.log_weights: one (k, N, K) noise tensor)."""
    D = torch.distributions
    xt = torch.as_tensor(x)
    with torch.no_grad():
        mu, logvar = model.encode(xt)
        sigma = torch.exp(0.5 * logvar)
        eps = torch.randn((k, *mu.shape), generator=torch.Generator().manual_seed(seed))
        z = mu + sigma * eps
        logits = model.decode_logits(z.reshape(-1, mu.shape[1])).reshape(k, len(x), -1)
        log_px = D.Bernoulli(logits=logits, validate_args=False).log_prob(xt).sum(-1)
        log_pz = D.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_q = D.Normal(mu, sigma).log_prob(z).sum(-1)
        lw = (log_px + log_pz - log_q).double()
    return float((torch.logsumexp(lw, 0) - math.log(k)).mean())


def test_iwae_bounds_match_torch_distributions_and_tighten(digits):
    p = zoo.pretrained("digits", "vae", 1.0, 16)
    x = digits.x[p.val_idx][:40]
    b = limits.iwae_bounds(p.model, x, (1, 50), seed=7)
    assert b[50] == pytest.approx(_iwae_reference(p.model, x, 50, 7), rel=1e-5)
    # one implementation: the page's L_k is the mean of core.elbo.log_likelihood (DESIGN.md contract)
    assert b[50] == pytest.approx(float(elbo.log_likelihood(p.model, x, k=50, seed=7).double().mean()), rel=1e-6)
    assert not hasattr(limits, "log_weights")
    # L_1 is a one-sample ELBO: over many images it agrees with evaluate_model's -ELBO.
    xa = digits.x[p.val_idx]
    l1 = limits.iwae_bounds(p.model, xa, (1,), seed=0)[1]
    ev = np.mean([evaluate_model(p.model, xa, 1.0, "bernoulli", seed=s)["neg_elbo"] for s in range(3)])
    assert l1 == pytest.approx(-ev, abs=0.4)
    e = limits.bound_evidence("digits", ks=(1, 10, 100), n_images=60)
    assert e["bounds"][1] < e["bounds"][10] < e["bounds"][100]
    assert e["gap_lower"] == pytest.approx(e["bounds"][100] - e["bounds"][1])
    with pytest.raises(ValueError):
        limits.iwae_bounds(p.model, x, (0,))


def test_complex_bars_labels_stay_horizontal_and_clear_of_the_legend():
    """At presenter sizes Plotly rotated the long category labels into the legend below the plot (seen
    at 1280x720): the labels are short lines kept horizontal, and the legend, with the dashed line's
    meaning, sits above the plot."""
    row = {"sharpness kept, VAE recon (%)": 51.0, "sharpness kept, VAE samples (%)": 44.0,
           "classifier accuracy, VAE recon (%)": 85.0, "classifier accuracy, real (%)": 92.0,
           "samples recognised vs real (%)": 44.0, "samples pass as real (%)": 81.0}
    fig = lf.complex_bars([{**row, "dataset": "digits", "image size": "8×8"},
                           {**row, "dataset": "mnist-5k", "image size": "28×28"}], height=540)
    assert fig.layout.xaxis.tickangle == 0
    labels = [lab for _, lab in lf.COMPLEX_METRICS]
    assert max(len(line) for lab in labels for line in lab.split("<br>")) <= 20
    assert fig.layout.legend.yanchor == "bottom" and fig.layout.legend.y >= 1
    assert "real images = 100%" in [tr.name for tr in fig.data]
    bars = [tr for tr in fig.data if tr.type == "bar"]
    assert [b.y[2] for b in bars] == [pytest.approx(100 * 85 / 92)] * 2
    # 92 % would print "92%" just under the dashed 100 % line, on it: inside the bar's top instead.
    assert [b.textposition[2] for b in bars] == ["inside"] * 2 and bars[0].insidetextanchor == "end"
    assert bars[0].textposition[0] == "outside" and bars[0].textposition[4] == "outside"  # 51 %, 81 %


def test_the_prior_hole_scene_finds_holes_at_its_defaults():
    """The scene's evidence at its starting settings, with the shipped β = 1 model of MNIST-5k (the
    page's default data): some cells the prior samples are holes of q(z), and q(z) is wider than the
    prior. At the old 10 % threshold the least-filled cell (11 %) was no hole, and the scene showed none."""
    d = limits.HOLE_DEFAULTS
    post = limits.aggregate_posterior("mnist-5k", d["beta"], loader=zoo.pretrained)
    h = limits.find_holes(post["mu"], post["sigma"], cell=d["cell"], min_expected=d["min_expected"],
                          max_fill=d["max_fill"])
    assert len(h["holes"]) >= 5 and h["hole_mass"] > 0.02
    assert np.all(h["hole_observed"] <= d["max_fill"] * h["hole_expected"] + 1e-9)
    assert h["kl_grid_is_bound"] and h["kl_grid"] > 0.1
    assert np.all(post["agg_var"] > 1.2)
