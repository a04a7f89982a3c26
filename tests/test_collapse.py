"""core.collapse: the three causes of posterior collapse, as short runs (Burda et al.'s active units)."""
from __future__ import annotations

import pytest
import torch

from core import collapse, units
from core.data import load_dataset


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_objective_large_beta_collapses_with_and_without_warmup():
    """At β = 8 the objective's optimum carries no information: both runs end with 0 active units."""
    plain, warm = collapse.run_experiment("objective")
    assert plain.spec.warmup_steps == 0 and warm.spec.warmup_steps == collapse.OBJECTIVE_WARMUP_STEPS
    assert plain.steps == warm.steps == collapse.OBJECTIVE_EPOCHS * 26  # 1,617 images, batch 64: 26 steps an epoch
    assert plain.active_units == 0 and warm.active_units == 0
    assert plain.rate < 0.05 and warm.rate < 0.05
    # the warm-up run used a smaller β early on: the recorded weights ramp from 0 to 8, then stay at 8
    assert warm.curve["beta"][0] == 0.0 and warm.curve["beta"][-1] == 8.0
    ramp = [b for s, b in zip(warm.curve["step"], warm.curve["beta"]) if s <= collapse.OBJECTIVE_WARMUP_STEPS]
    assert ramp == pytest.approx([8.0 * s / collapse.OBJECTIVE_WARMUP_STEPS for s in warm.curve["step"][:len(ramp)]])
    assert all(b == 8.0 for b in plain.curve["beta"])
    v = collapse.verdict("objective", [plain, warm])
    assert v["holds"] and v["delayed"]
    # Warm-up only delays it: the warm-up run learned a code while β was small (several active units),
    # kept it past β = 2, and lost it before the end; the plain run never had one.
    au_plain, au_warm = plain.curve["active_units"], warm.curve["active_units"]
    assert max(au_plain) == 0 and max(au_warm) >= 5
    last = max(i for i, a in enumerate(au_warm) if a > 0)
    assert warm.curve["beta"][last] > 2.0 and au_warm[last + 1:] and not any(au_warm[last + 1:])
    cf = v["curves"][1]
    assert cf["peak_active"] == max(au_warm) and cf["last_active_step"] == warm.curve["step"][last]
    assert cf["beta_at_last_active"] == warm.curve["beta"][last] and v["curves"][0]["last_active_step"] is None


def test_optimisation_warmup_and_free_bits_keep_units_the_plain_run_loses():
    plain, warm, fb = collapse.run_experiment("optimisation")
    assert warm.active_units > plain.active_units and fb.active_units > plain.active_units
    assert collapse.verdict("optimisation", [plain, warm, fb])["holds"]


def test_gaussian_likelihood_has_fewer_active_units_than_bernoulli_at_the_same_beta():
    bern, gauss = collapse.run_experiment("likelihood")
    assert bern.spec.beta == gauss.spec.beta == 1.0
    assert gauss.active_units < bern.active_units
    assert collapse.verdict("likelihood", [bern, gauss])["holds"]


def test_active_units_are_burda_counts_on_the_held_out_split():
    """The reported count is core.units' count of the stored Var_x mu_j, and rate = sum of the KL per dim."""
    for name in collapse.EXPERIMENTS:
        for r in collapse.run_experiment(name):
            assert r.active_units == sum(v > units.ACTIVE_THRESHOLD for v in r.var_mu)
            assert r.rate == pytest.approx(sum(r.kl_per_dim), rel=1e-4, abs=1e-6)
            assert r.curve["active_units"][-1] == r.active_units and r.curve["step"][-1] == r.steps


def test_runs_are_cached_and_shared_between_experiments():
    """β = 1 Bernoulli plain is in two experiments: trained once, the same numbers in both."""
    a = collapse.run_experiment("optimisation")[0]
    b = collapse.run_experiment("likelihood")[0]
    assert a.spec != b.spec and a.active_units == b.active_units and a.var_mu == b.var_mu
    assert collapse.experiment_done("likelihood")
    seen = []
    collapse.run_experiment("likelihood", progress=lambda f, label: seen.append(f))
    assert seen and seen[-1] == 1.0


def test_background_job_runs_the_experiment_once_and_fills_the_cache():
    """core.jobs: the experiment runs on a thread; asking again gives the same job; its result is
    the cached runs, so a second visitor gets them at once."""
    job = collapse.start_experiment("likelihood")
    assert collapse.start_experiment("likelihood") is job is collapse.experiment_job("likelihood")
    assert job.wait(300) and job.state == "done", job.error
    assert job.progress == 1.0
    assert [r.active_units for r in job.result] == [r.active_units for r in collapse.run_experiment("likelihood")]
    assert collapse.experiment_done("likelihood")
    assert collapse.experiment_job("optimisation", seed=123) is None
    assert collapse.job_key("objective") == ("collapse", "objective", "digits", 0, collapse.OBJECTIVE_EPOCHS)


def test_same_seed_same_run_and_bad_names():
    spec = collapse.RunSpec("x", 1.0)
    a = collapse.train_run(spec, epochs=1)
    b = collapse.train_run(spec, epochs=1)
    assert a.var_mu == b.var_mu and a.rate == b.rate
    assert load_dataset("digits").dim == 64
    with pytest.raises(ValueError):
        collapse.experiment("nope")
    with pytest.raises(ValueError):
        collapse.train_run(collapse.RunSpec("x", 1.0, likelihood="poisson"), epochs=1)
