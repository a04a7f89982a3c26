"""core.runs: the session's run store (live runs, sweeps, lease, comparison, export/import) and the
Trainer additions it relies on (stop, release_training_data, the last-good-weights fix)."""
from __future__ import annotations

import io
import json
import math
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from core import runs as R
from core.checkpoints import load_checkpoint
from core.data import load_dataset, train_val_split
from core.losses import elbo_terms
from core.models import ModelConfig
from core.training import TrainConfig, Trainer, evaluate_model
from core.units import count_active

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def small(ds, epochs=2, beta=1.0, lr=2e-3, seed=0, kind="vae", latent=4, likelihood="bernoulli"):
    return R.make_configs(ds, kind, latent, (32, 16), likelihood, lr, 64, epochs, seed, beta)


def wait_until(pred, store=None, timeout=60.0):
    """Poll like the page's fragment does (tick renews the lease)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if store is not None:
            store.tick()
        if pred():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def store():
    s = R.RunStore()
    yield s
    s.shutdown()


# ---- configuration -----------------------------------------------------------------------------

def test_parse_hidden_accepts_widths_and_explains_bad_text():
    assert R.parse_hidden("256,128") == (256, 128)
    assert R.parse_hidden(" 64 ; 32 ") == (64, 32)
    assert R.parse_hidden("512 256 128 64") == (512, 256, 128, 64)
    for bad, words in (("", "empty"), ("256,abc", "not a whole number"), ("1,2,3,4,5", "too many"),
                       ("2048", "between 2 and 1024"), ("1", "between 2"), ("-5", "not a whole number")):
        with pytest.raises(ValueError, match=words):
            R.parse_hidden(bad)


def test_make_configs_validates_and_sizes_the_timeline(digits):
    mc, tc = small(digits, epochs=10)
    assert mc.input_dim == 64 and mc.hidden_dims == (32, 16)
    steps = R.total_steps(digits, tc)
    assert steps == Trainer(mc, tc, digits).total_steps
    assert steps / tc.snapshot_every <= R.TIMELINE_TARGET + 1  # about 60 snapshots, not thousands
    mc, tc = small(digits, kind="ae", beta=4.0)
    assert tc.beta == 0.0  # beta means nothing for an AE
    with pytest.raises(ValueError, match="Latent"):
        small(digits, latent=0)
    with pytest.raises(ValueError, match="Epochs"):
        R.make_configs(digits, "vae", 2, (32,), "bernoulli", 1e-3, 64, 10_000, 0, 1.0)
    with pytest.raises(ValueError, match="learning rate"):
        R.make_configs(digits, "vae", 2, (32,), "bernoulli", 5.0, 64, 1, 0, 1.0)


# ---- the Trainer additions ---------------------------------------------------------------------

def test_divergence_restores_weights_that_gave_a_finite_loss(digits):
    """An update that makes the weights non-finite right after a good-state checkpoint step must not
    be the state that is restored (the copy is taken before the update, from verified weights)."""
    mc, tc = small(digits, epochs=5)
    t = Trainer(mc, tc, digits)
    initial = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.run_steps(19)
    real_step = t.opt.step

    def poisoned_step(*a, **k):
        real_step(*a, **k)
        if t.step == 19:  # the 20th update (self.step is incremented after opt.step)
            with torch.no_grad():
                for p in t.model.parameters():
                    p.fill_(float("nan"))

    t.opt.step = poisoned_step
    t.run_steps(5)
    assert t.status == "diverged" and "learning rate" in t.message
    # A copy taken after the 20th update would hold NaN. The last weights known to give a finite
    # loss at a checkpoint step are the initial ones (step 0).
    restored = t.model.state_dict()
    assert all(torch.isfinite(v).all() for v in restored.values())
    assert t._good_step == 0 and all(torch.equal(restored[k], initial[k]) for k in initial)


def test_stop_ends_the_run_and_records_a_final_evaluation(digits):
    mc, tc = small(digits, epochs=50)
    t = Trainer(mc, tc, digits)
    t.run_steps(7)
    t.release_training_data()  # no-op while the run can still train
    assert len(t.x_train) > 0
    t.stop()
    assert t.status == "done" and t.finished and "Stopped by the user at step 7" in t.message
    assert t.eval_history[-1]["step"] == 7
    assert t.run_steps(3) == 0
    t.release_training_data()
    assert len(t.x_train) == 0 and not t.opt.state
    assert t.evaluate()["neg_elbo"] > 0  # the held-out data and the model stay


# ---- runs in the background: live updates, beta, pause, stop, lease -----------------------------

def test_background_run_grows_history_and_takes_a_beta_change(digits, store):
    mc, tc = small(digits, epochs=200)
    run = store.create(mc, tc, digits)
    assert run.state == "training" and store.polling
    assert wait_until(lambda: run.step >= 10, store)
    n1 = len(run.history)
    assert wait_until(lambda: len(run.history) > n1 + 5, store)
    assert store.set_beta(4.0)
    changed_at = run.beta_changes[-1][0]
    assert run.beta_changes[-1][1] == 4.0 and changed_at >= n1
    assert wait_until(lambda: run.step > changed_at + 3, store)
    h = {r["step"]: r for r in run.history}
    assert h[changed_at]["beta"] == 1.0 and h[changed_at + 1]["beta"] == 4.0  # the next step, not before
    store.pause()
    run.runner.join(5)
    assert run.state == "paused" and not store.polling
    s = run.step
    time.sleep(0.3)
    assert run.step == s  # paused means no CPU spent
    store.resume()
    assert wait_until(lambda: run.step > s, store)
    store.stop()
    assert run.state == "stopped" and run.finished and not store.polling
    assert run.final is not None and run.final["step"] == run.step
    assert math.isclose(run.final["neg_elbo"], run.final["recon"] + run.final["kl"], rel_tol=1e-9)


def test_lease_stops_the_thread_when_nobody_watches_and_tick_restarts_it(digits):
    store = R.RunStore(lease_seconds=0.3)
    try:
        mc, tc = small(digits, epochs=200)
        run = store.create(mc, tc, digits)
        assert wait_until(lambda: run.step > 0, store)
        # No more ticks (the tab was closed): the thread exits once the lease expires.
        assert wait_until(lambda: not run.runner.alive, timeout=10)
        s = run.step
        time.sleep(0.4)
        assert run.step == s and run.state == "training"  # still wanted: it resumes on return
        store.tick()  # the page is open again
        assert run.runner.alive
        assert wait_until(lambda: run.step > s, store)
    finally:
        store.shutdown()



def test_a_tick_never_trains_only_the_training_thread_does(digits, store):
    """A redraw's cost must not grow with the load: however starved the training thread (here every
    training slot is held, so it waits for its turn), ticks renew the lease and take no step."""
    from core.training import TRAINING_SLOTS
    mc, tc = small(digits, epochs=200)
    for _ in range(TRAINING_SLOTS.n):
        TRAINING_SLOTS.__enter__()
    released = False
    try:
        run = store.create(mc, tc, digits)
        for _ in range(5):
            store.tick()
            time.sleep(0.05)
        assert run.step == 0 and run.runner.alive  # the thread waits for a slot; the ticks did not step
        for _ in range(TRAINING_SLOTS.n):
            TRAINING_SLOTS.__exit__(None, None, None)
        released = True
        assert wait_until(lambda: run.step > 0, store)  # its turn comes: the thread trains
    finally:
        if not released:
            for _ in range(TRAINING_SLOTS.n):
                TRAINING_SLOTS.__exit__(None, None, None)


def test_divergent_learning_rate_stops_with_a_message_and_finite_weights(digits, store):
    mc, tc = small(digits, lr=1.0, epochs=20)
    run = store.create(mc, tc, digits)
    assert wait_until(lambda: run.finished, store)
    assert store.tick() is False or run.final is not None
    store.tick()
    assert run.state == "diverged"
    assert "learning rate 1" in run.message and "restored" in run.message
    assert all(torch.isfinite(v).all() for v in run.model.state_dict().values())
    assert run.final is not None and math.isfinite(run.final["neg_elbo"])


# ---- the beta sweep ------------------------------------------------------------------------------

def test_beta_sweep_trains_each_beta_with_the_same_seed_in_turn(digits, store):
    mc, tc = small(digits, epochs=2, seed=3)
    first = store.start_sweep(mc, tc, digits)
    assert first.beta == 0.0 and len(store.queue) == 3 and store.sweeping
    assert wait_until(lambda: len(store.finished_runs()) == 4, store, timeout=120)
    runs = store.finished_runs()
    assert [r.train_cfg.beta for r in runs] == list(R.SWEEP_BETAS)
    assert all(r.state == "done" and r.sweep and r.train_cfg.seed == 3 for r in runs)
    assert len({replace(r.train_cfg, beta=0.0) for r in runs}) == 1  # only beta differs
    assert not store.sweeping and not store.polling
    # Same seed: same held-out split, so the comparison uses inputs that every run held out.
    inputs, shared = R.common_inputs(runs)
    assert shared and np.array_equal(inputs, runs[0].fixed_inputs(8))
    rows = R.comparison_rows(runs)
    assert [r["β"] for r in rows] == [f"{b:g}" for b in R.SWEEP_BETAS]
    kl = [r.final["kl"] for r in runs]
    assert kl[0] > kl[-1]  # beta = 0 leaves the KL unchecked; beta = 4 presses it down
    text = R.compare_summary(runs)
    assert "Lowest held-out −ELBO" in text and f"{runs[0].final['kl']:.1f}" in text


def _finished(name, beta, steps, kl, recon, changes=None, lr=2e-3):
    """A stand-in for a finished VAE run: the attributes compare_summary reads."""
    from types import SimpleNamespace
    return SimpleNamespace(name=name, beta=beta, step=steps, is_vae=True, beta_changes=changes or [(0, beta)],
                           model_cfg=ModelConfig(), train_cfg=TrainConfig(beta=beta, lr=lr),
                           dataset=SimpleNamespace(name="mnist-5k"),
                           final={"neg_elbo": recon + kl, "kl": kl, "recon": recon, "active_units": 5})


def test_compare_summary_puts_a_difference_down_to_beta_only_when_nothing_else_differs():
    """A run at β = 1 for 141 steps beside a longer run whose β moved to 3: the rise in KL comes from
    the training length, not from β, and the page must not say it does."""
    fair = [_finished("#1", 1.0, 900, 20.0, 80.0), _finished("#2", 3.0, 900, 8.0, 95.0)]
    assert R.beta_confounds(fair) == []
    text = R.compare_summary(fair)
    assert "From β = 1 to β = 3, the held-out KL falls from 20.0 to 8.0" in text
    unfair = [_finished("#1", 1.0, 141, 3.8, 140.0), _finished("#2", 3.0, 1416, 8.2, 90.0, changes=[(0, 1.0), (300, 3.0)])]
    why = R.beta_confounds(unfair)
    assert why == ["β changed during training in #2", "they trained for different numbers of steps (141 to 1,416)"]
    text = R.compare_summary(unfair)
    assert "From β" not in text and "differ in more than β" in text and "141 to 1,416" in text
    assert R.beta_confounds([_finished("#1", 1.0, 900, 20, 80), _finished("#2", 3.0, 900, 8, 95, lr=1e-3)]) == [
        "their model, data or other training settings differ"]


def test_sweep_needs_a_vae_and_stops_when_a_run_diverges(digits, store):
    mc, tc = small(digits, kind="ae")
    with pytest.raises(ValueError, match="needs a VAE"):
        store.start_sweep(mc, tc, digits)
    mc, tc = small(digits, lr=1.0, epochs=3)
    store.start_sweep(mc, tc, digits)
    assert wait_until(lambda: not store.queue and store.active.finished, store, timeout=60)
    assert any("sweep stopped" in n for n in store.pop_notices())
    assert len(store.runs) < 4 and store.active.state == "diverged"  # the rest of the sweep was cancelled


# ---- runs kept, continued, capped ----------------------------------------------------------------

def test_continue_from_starts_with_the_parents_weights(digits, store):
    mc, tc = small(digits, epochs=1)
    parent = store.create(mc, tc, digits, start=False)
    parent.trainer.run_steps(10**6)
    store.tick()
    child = store.continue_from(parent.name, tc, start=False)
    assert child.parent == parent.name and child.state == "ready"
    p, c = parent.model.state_dict(), child.model.state_dict()
    assert all(torch.equal(p[k], c[k]) for k in p)
    assert child.trainer.evaluate()["neg_elbo"] == pytest.approx(parent.trainer.evaluate()["neg_elbo"], rel=1e-6)


def test_only_the_last_runs_are_kept(digits):
    store = R.RunStore(max_runs=2)
    mc, tc = small(digits, epochs=1)
    names = []
    for _ in range(3):
        r = store.create(mc, tc, digits, start=False)
        r.trainer.run_steps(10**6)
        store.tick()
        names.append(r.name)
    assert list(store.runs) == names[1:]
    assert any(names[0] in n for n in store.pop_notices())


def test_reset_discards_an_unfinished_run_but_keeps_finished_ones(digits, store):
    mc, tc = small(digits, epochs=1)
    done = store.create(mc, tc, digits, start=False)
    done.trainer.run_steps(10**6)
    store.tick()
    mc2, tc2 = small(digits, epochs=100)
    live = store.create(mc2, tc2, digits)
    assert wait_until(lambda: live.step > 0, store)
    store.reset()
    assert store.active is None and live.name not in store.runs and done.name in store.runs
    assert not live.runner.alive


# ---- comparison, export and import ---------------------------------------------------------------

def test_comparison_rows_and_common_inputs(digits):
    store = R.RunStore()
    runs = []
    for kind, seed in (("vae", 0), ("ae", 1)):
        mc, tc = small(digits, kind=kind, seed=seed, epochs=1)
        r = store.create(mc, tc, digits, start=False)
        r.trainer.run_steps(10**6)
        store.tick()
        runs.append(r)
    vae_row, ae_row = R.comparison_rows(runs)
    assert vae_row["held-out −ELBO"] == round(runs[0].final["neg_elbo"], 2)
    assert ae_row["held-out −ELBO"] is None and ae_row["KL"] is None and ae_row["recon"] is not None
    # Different seeds hold out different images: only images held out by both are shared.
    both = sorted(set(train_val_split(digits.n, 0.1, 0)[1]) & set(train_val_split(digits.n, 0.1, 1)[1]))
    inputs, shared = R.common_inputs(runs, n=3)
    assert shared and np.array_equal(inputs, digits.x[both[:3]])
    ok, other = R.compatible(runs + [R.Run("x", runs[0].model_cfg, runs[0].train_cfg, load_dataset("mnist-5k"))])
    assert len(ok) == 2 and len(other) == 1


def test_final_evaluation_matches_a_direct_computation(digits):
    store = R.RunStore()
    mc, tc = small(digits, epochs=1)
    run = store.create(mc, tc, digits, start=False)
    run.trainer.run_steps(10**6)
    store.tick()
    x = torch.as_tensor(digits.x[run.val_idx])
    g = torch.Generator().manual_seed(tc.seed + 12345)  # evaluate_model's documented noise
    eps = torch.randn((len(x), mc.latent_dim), generator=g)
    run.model.eval()
    with torch.no_grad():
        out = run.model(x, eps=eps)
        t = elbo_terms(x, out, 1.0, "bernoulli")
    assert run.final["recon"] == pytest.approx(float(t.recon), rel=1e-5)
    assert run.final["kl"] == pytest.approx(float(t.kl), rel=1e-5)
    assert run.final["active_units"] == count_active(out.mu.numpy())  # Burda et al.: Var_x(mu_j) > 0.01
    assert len(run.trainer.x_train) == 0  # finished runs release their training copy


def test_metrics_rows_and_config_json(digits):
    store = R.RunStore()
    mc, tc = small(digits, epochs=3)
    run = store.create(mc, tc, digits, start=False)
    run.trainer.run_steps(30)
    run.trainer.set_beta(2.0)
    run.trainer.run_steps(10**6)
    store.tick()
    rows = R.metrics_rows(run)
    assert len(rows) == run.step == len(run.history)
    assert {f"kl_z{j}" for j in range(1, 5)} <= set(rows[0])
    evals = {e["step"]: e for e in run.eval_history}
    for r in rows:
        assert (r["val_neg_elbo"] is not None) == (r["step"] in evals)
    assert rows[0]["beta"] == 1.0 and rows[-1]["beta"] == 2.0
    cfg = json.loads(R.config_json(run))
    assert TrainConfig.from_dict(cfg["train"]) == tc and ModelConfig.from_dict(cfg["model"]) == mc
    assert cfg["beta_changes"] == [[0, 1.0], [30, 2.0]] and cfg["dataset"] == "digits"
    assert cfg["final_held_out"]["neg_elbo"] == pytest.approx(run.final["neg_elbo"])


def test_checkpoint_round_trip_restores_weights_history_and_split(digits):
    store = R.RunStore()
    mc, tc = small(digits, epochs=2, seed=5)
    run = store.create(mc, tc, digits, start=False)
    run.trainer.run_steps(10**6)
    store.tick()
    ckpt = load_checkpoint(io.BytesIO(R.checkpoint_file(run)))
    assert R.dataset_for_checkpoint(ckpt, load_dataset("mnist-5k"), load_dataset) is digits  # named in extra
    loaded = store.add_checkpoint(ckpt, digits, "my<run>`.pt")
    assert loaded.state == "loaded" and loaded.finished and loaded.split_known
    assert "<" not in loaded.name and "`" not in loaded.name
    assert np.array_equal(loaded.val_idx, run.val_idx)
    assert loaded.final["neg_elbo"] == pytest.approx(run.final["neg_elbo"], rel=1e-6)
    assert [h["step"] for h in loaded.history] == [h["step"] for h in run.history]
    assert loaded.history[-1]["loss"] == pytest.approx(run.history[-1]["loss"])
    assert np.allclose(loaded.reconstruct(run.fixed_inputs()), run.reconstruct(run.fixed_inputs()), atol=1e-6)
    shared = loaded.shared_model()
    assert not shared.training and not any(p.requires_grad for p in shared.parameters())


def test_checkpoint_for_the_wrong_image_size_is_refused_with_advice(digits):
    store = R.RunStore()
    mc, tc = small(digits, epochs=1)
    run = store.create(mc, tc, digits, start=False)
    run.trainer.run_steps(3)
    ckpt = load_checkpoint(io.BytesIO(R.checkpoint_file(run)))
    ckpt.extra.pop("dataset")
    mnist = load_dataset("mnist-5k")
    with pytest.raises(ValueError, match="64 pixels.*digits"):
        R.dataset_for_checkpoint(ckpt, mnist, load_dataset)
    with pytest.raises(ValueError, match="64 pixels"):
        store.add_checkpoint(ckpt, mnist, "x.pt")
    # Without its training config the split is unknown: evaluated on every image, and said so.
    ckpt.extra.pop("train_config")
    loaded = store.add_checkpoint(ckpt, digits, "x.pt")
    assert not loaded.split_known and len(loaded.val_idx) == digits.n


def test_untrusted_history_in_a_checkpoint_is_dropped_not_trusted():
    good = [{"step": 1, "loss": 3.0, "recon": 2.0, "kl": 1.0, "beta": 1.0}]
    assert R.clean_rows(good)[0]["beta_kl"] == pytest.approx(1.0)
    for bad in ("x", [1, 2], [{"step": 1, "loss": float("nan"), "recon": 1, "kl": 0}],
                [{"step": "1", "loss": 1, "recon": 1, "kl": 0}], [{"step": 1, "loss": True, "recon": 1, "kl": 0}],
                [good[0]] * (R.MAX_SAVED_ROWS + 1)):
        assert R.clean_rows(bad) == []


def test_safe_label():
    label = R.safe_label("<img src=x onerror=alert(1)>.pt")
    assert not set(label) & set("<>=()`") and label.startswith("img srcx")
    assert R.safe_label("") == "upload" and len(R.safe_label("a" * 100)) == 24


def test_live_intervals_slow_the_charts_not_the_status_as_the_server_gets_busy():
    assert R.live_intervals(0) == R.live_intervals(1) == R.live_intervals(2) == (0.5, 0.5)  # alone: twice a second
    rows = [R.live_intervals(n) for n in range(0, 40)]
    assert all(status <= 0.6 for status, _ in rows)  # the progress line updates well within a second
    charts = [c for _, c in rows]
    assert charts == sorted(charts) and charts[10] == charts[-1] == 5.0  # ten sessions: charts every 5 s
    assert all(c >= s for s, c in rows)


# ---- active units by Burda's criterion; the likelihood's scale; beta = 0 switches the noise off ---

def test_latest_kl_activity_pairs_the_held_out_kl_with_burdas_mask(digits):
    store = R.RunStore()
    mc, tc = small(digits, epochs=1)
    run = store.create(mc, tc, digits, start=False)
    assert run.latest_kl_activity() is None
    run.trainer.run_steps(1)
    kl, act = run.latest_kl_activity()
    assert act is None and kl == run.history[-1]["kl_per_dim"]  # no held-out evaluation yet: not measured
    run.trainer.run_steps(10**6)
    store.tick()
    kl, act = run.latest_kl_activity()
    ev = run.eval_history[-1]
    mu = run.trainer.encode_mu(run.trainer.x_val).astype(np.float64)
    assert kl == ev["kl_per_dim"] and act == (mu.var(0) > 0.01).tolist()
    assert sum(act) == ev["active_units"] == run.final["active_units"]
    assert "active units" in R.comparison_rows([run])[0]


def test_the_likelihood_costs_match_torch_distributions():
    d, err = 784, 0.1
    x = torch.ones(d, dtype=torch.float64)
    xhat = torch.full((d,), 1 - err, dtype=torch.float64)
    # Bernoulli: -log p of black-and-white pixels predicted err away
    assert R.bernoulli_cost(err, d) == pytest.approx(float(-torch.distributions.Bernoulli(probs=xhat).log_prob(x).sum()))
    # Gaussian with s = 1, without its constant D/2 log 2 pi (as core.losses computes it)
    full = float(-torch.distributions.Normal(xhat, 1.0).log_prob(x).sum())
    assert R.gaussian_cost(err, d) == pytest.approx(full - d / 2 * math.log(2 * math.pi))
    text = R.hidden_beta_text(d)
    assert f"{R.gaussian_cost(err, d):.2f} nats" in text and f"{R.bernoulli_cost(err, d):.2f} nats" in text
    assert "3.92 nats" in text and "82.60 nats" in text
    # the hidden beta: noise s at weight beta is (1/s^2) times the s = 1 objective at weight beta * s^2
    sq, kl, s, beta = 7.3, 2.1, 0.1, 100.0
    assert sq / (2 * s**2) + beta * kl == pytest.approx((0.5 * sq + beta * s**2 * kl) / s**2)


def test_noise_scales_measure_sigma_and_the_spread_of_the_means(digits):
    from core.zoo import pretrained

    p = pretrained("digits", "vae", 0.0, 16)
    x = digits.x[p.val_idx]
    ns = R.noise_scales(p.model, x)
    with torch.no_grad():
        mu, logvar = p.model.encode(torch.as_tensor(x))
    sigma = torch.exp(0.5 * logvar.double())
    np.testing.assert_allclose(ns.sigma_median, np.median(sigma.numpy(), axis=0), rtol=1e-6)
    np.testing.assert_allclose(ns.mu_sd, mu.double().std(0, unbiased=False).numpy(), rtol=1e-6)
    # beta = 0: the encoder switched its noise off while its means spread over several units
    assert ns.sigma_max.max() < 0.1 and ns.mu_sd.min() > 1.0
    ae = R.noise_scales(pretrained("digits", "vae", 1.0, 16).model, x)
    assert np.median(ae.sigma_median) > 10 * np.median(ns.sigma_median)  # beta = 1 keeps its noise
    with pytest.raises(ValueError):
        R.noise_scales(pretrained("digits", "ae", 0.0, 16).model, x)


def test_file_names_are_ascii_and_the_beta_path_is_listed(digits):
    assert R.file_slug("#3 VAE β=0.5 z=16") == "3-vae-beta-0-5-z-16"
    assert R.file_slug("#1 sweep VAE β=4 z=2 ünïcødé") == "1-sweep-vae-beta-4-z-2-n-c-d"
    assert R.file_slug("ß…") == "run" and R.file_slug("x" * 80) == "x" * 40
    assert all(R.file_slug(n).isascii() for n in ("Ωmega β", "数字", "#9 AE z=16"))
    assert R.beta_path([(0, 1.0), (30, 4.0), (50, 4.0), (90, 0.5)]) == [1.0, 4.0, 0.5]
    store = R.RunStore()
    mc, tc = small(digits, epochs=2)
    run = store.create(mc, tc, digits, start=False)
    run.trainer.run_steps(5)
    run.trainer.set_beta(4.0)
    run.trainer.run_steps(10**6)
    store.tick()
    row = R.comparison_rows([run])[0]
    assert run.name.endswith("VAE z=4") and "β" not in run.name  # not named after its first β
    assert row["β"] == "1 → 4" and row["model"].startswith("VAE z=4 · ")
    for b in (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0):
        run.beta_changes.append((run.step, b)) if run.trainer is None else run.trainer.beta_changes.append((run.step, b))
    assert R.comparison_rows([run])[0]["β"] == "… → 1 → 2 → 3 → 4 → 5 → 6"  # the older values are marked as left out
    assert R.file_slug(run.name).isascii()


def test_the_default_run_is_long_and_its_held_out_elbo_is_never_stale():
    """Issue 21: the default run keeps going for many steps (a minute or more, to move β several times)
    and is evaluated on held-out images at least every MAX_EVAL_GAP steps, however long it is."""
    for name in ("mnist-5k", "digits"):
        ds = load_dataset(name)
        mc, tc = R.make_configs(ds, "vae", 16, (256, 128), "bernoulli", 2e-3, R.DEFAULT_BATCH[name],
                                R.DEFAULT_EPOCHS[name], 0, beta=1.0)
        n_train = len(train_val_split(ds.n, 0.1, 0)[0])
        assert R.total_steps(ds, tc) == -(-n_train // R.DEFAULT_BATCH[name]) * R.DEFAULT_EPOCHS[name] >= 20_000
        assert 50 <= tc.eval_every <= R.MAX_EVAL_GAP
    assert R.eval_every(4500, 128, 1) == 50 and R.eval_every(4500, 32, 200) == R.MAX_EVAL_GAP
    sw = R.sweep_config(ds, tc)  # (digits' defaults) a sweep's runs are short
    assert sw.epochs == R.SWEEP_EPOCHS["digits"] < tc.epochs and sw.eval_every == R.eval_every(n_train, 16, sw.epochs)
    # a long run stopped after a minute still has a timeline: a snapshot at least every MAX_EVAL_GAP steps
    assert R.snapshot_every(4500, 32, 200) == R.MAX_EVAL_GAP and R.snapshot_every(4500, 128, 15) == 15


# ---- run-state rules (what the page offers in each state) ----------------------------------------

def test_run_buttons_follow_the_run_state():
    assert R.run_buttons(None) == ("start", "sweep")
    for st in ("done", "stopped", "diverged", "error", "loaded"):
        assert R.run_buttons(st) == ("start", "sweep", "reset")
    assert R.run_buttons("training") == ("pause", "stop", "reset")
    assert R.run_buttons("paused") == R.run_buttons("ready") == ("resume", "stop", "reset")
    for st in (None, "training", "paused", "done"):
        assert R.run_buttons(st, read_only=True) == ()
    with pytest.raises(ValueError):
        R.run_buttons("flying")


def test_beta_control_steers_the_live_run_or_the_next_one(digits, store):
    assert R.beta_control(None, "vae", False) == (True, R.BETA_HELP["live"])
    assert R.beta_control(None, "ae", False) == (False, R.BETA_HELP["ae"])
    assert R.beta_control(None, "vae", True) == (False, R.BETA_HELP["sweep"])
    assert R.beta_control(None, "vae", False, read_only=True) == (False, R.BETA_HELP["view"])
    ae = store.create(*small(digits, kind="ae"), digits, start=False)
    assert R.beta_control(ae, "vae", False)[0] is False  # the unfinished run decides
    store.stop()
    assert R.beta_control(ae, "vae", False)[0] is True  # finished: β is the next run's
    assert R.beta_control(ae, None, False)[0] is True
