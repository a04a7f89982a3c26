"""core.training: the trainer against a plain PyTorch loop, determinism, beta, divergence, the runner."""
from __future__ import annotations

import contextlib
import math
import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.data import load_dataset, train_val_split
from core.models import ModelConfig, build_model
from core.training import BackgroundRunner, TrainConfig, Trainer, evaluate_model, live_runners

DIGITS = load_dataset("digits")
SMALL = ModelConfig(kind="vae", input_dim=64, hidden_dims=(32,), latent_dim=4)


def _trainer(**kw):
    return Trainer(kw.pop("mcfg", SMALL), TrainConfig(**{"epochs": 2, "batch_size": 64, **kw}), DIGITS)


def test_history_records_every_term():
    t = _trainer()
    t.run_steps(5)
    assert t.status == "running" and t.step == 5 and len(t.history) == 5
    h = t.history[-1]
    for key in ("step", "epoch", "loss", "recon", "kl", "beta", "kl_per_dim", "beta_kl"):
        assert key in h
    assert len(h["kl_per_dim"]) == 4 and h["kl"] >= 0
    assert math.isclose(h["kl"], sum(h["kl_per_dim"]), rel_tol=1e-5)
    assert math.isclose(h["loss"], h["recon"] + h["beta"] * h["kl"], rel_tol=1e-5)


def test_same_seed_same_run_and_other_seed_differs():
    a, b, c = _trainer(seed=3), _trainer(seed=3), _trainer(seed=4)
    torch.manual_seed(999)  # the global RNG must not matter
    a.run_steps(30)
    torch.manual_seed(1)
    b.run_steps(30)
    c.run_steps(30)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert a.history[-1]["loss"] != c.history[-1]["loss"]


def test_loss_equals_a_plain_pytorch_loop_on_the_same_seed():
    """Re-implement one epoch by hand (independent loss: BCE with logits + analytic KL) and compare per step."""
    cfg = TrainConfig(epochs=1, batch_size=100, seed=5, lr=1e-3, snapshot_every=0)
    t = Trainer(SMALL, cfg, DIGITS)
    t.run_steps(10**6)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        model = build_model(SMALL, "cpu")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    tr_idx, _ = train_val_split(DIGITS.n, 0.1, 5)
    x = torch.as_tensor(DIGITS.x[tr_idx])
    g = torch.Generator().manual_seed(5)
    perm = torch.randperm(len(x), generator=g)
    losses = []
    for i in range(0, len(x), 100):
        xb = x[perm[i:i + 100]]
        eps = torch.randn((len(xb), 4), generator=g)
        mu, logvar = model.encode(xb)
        logits = model.decode_logits(mu + torch.exp(0.5 * logvar) * eps)
        bce = F.binary_cross_entropy_with_logits(logits, xb, reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())  # Kingma & Welling, Appendix B
        loss = (bce + kld) / len(xb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert len(losses) == len(t.history) == t.total_steps
    np.testing.assert_allclose([h["loss"] for h in t.history], losses, rtol=1e-4)
    assert t.status == "done"


def test_set_beta_takes_effect_at_the_next_step_and_is_recorded():
    t = _trainer(beta=1.0)
    t.run_steps(3)
    t.set_beta(4.0)
    t.run_steps(2)
    assert [h["beta"] for h in t.history] == [1.0, 1.0, 1.0, 4.0, 4.0]
    assert t.beta_changes == [(0, 1.0), (3, 4.0)]
    with pytest.raises(ValueError):
        t.set_beta(-1)
    with pytest.raises(ValueError):
        t.set_beta(float("nan"))


def test_kl_warmup_ramps_beta_linearly():
    t = _trainer(beta=2.0, warmup_steps=10)
    t.run_steps(12)
    assert [round(h["beta"], 6) for h in t.history[:3]] == [0.0, 0.2, 0.4]
    assert t.history[-1]["beta"] == 2.0


def test_free_bits_enters_the_objective_not_the_reported_kl():
    t = _trainer(beta=1.0, free_bits=2.0)
    t.run_steps(1)
    h = t.history[0]
    kl_obj = sum(max(2.0, v) for v in h["kl_per_dim"])
    assert math.isclose(h["loss"], h["recon"] + kl_obj, rel_tol=1e-4)


def test_non_finite_loss_restores_last_good_weights_and_reports():
    t = _trainer()
    t.run_steps(25)  # a good state is kept every 20 steps
    good = {k: v.clone() for k, v in t.model.state_dict().items()}
    with torch.no_grad():
        next(t.model.parameters()).fill_(float("inf"))
    t.run_steps(5)
    assert t.status == "diverged" and t.finished
    assert "non-finite" in t.message or "nan" in t.message.lower() or "inf" in t.message.lower()
    assert "learning rate" in t.message
    for k, v in t.model.state_dict().items():
        assert torch.isfinite(v).all()
        assert torch.equal(v, good[k]) or t._good_step == 20
    assert t.run_steps(3) == 0  # a diverged run does not continue


def test_run_for_and_progress():
    t = _trainer(epochs=200)  # ~5,000 steps: far more than 50 ms can finish, however fast the machine
    assert t.run_for(0.05) >= 1
    assert 0 < t.progress() < 1 and t.samples_per_second > 0
    assert t.seconds_left() is not None


def test_held_out_evaluation_and_snapshots():
    t = _trainer(eval_every=5, snapshot_every=5, snapshot_points=50, snapshot_images=4)
    t.run_steps(10)
    assert [e["step"] for e in t.eval_history] == [5, 10]
    assert {"loss", "recon", "kl", "neg_elbo", "kl_per_dim", "active_units"} <= set(t.eval_history[0])
    assert [s["step"] for s in t.snapshots] == [1, 5, 10]
    assert t.snapshots[0]["latents"].shape == (50, 4) and t.snapshots[0]["recon"].shape == (4, 64)


def test_evaluate_model_matches_a_direct_computation():
    t = _trainer()
    t.run_steps(20)
    x = torch.as_tensor(DIGITS.x[t.val_idx])
    ev = evaluate_model(t.model, x, 1.0, "bernoulli", seed=0)
    g = torch.Generator().manual_seed(0 + 12345)
    t.model.eval()
    with torch.no_grad():
        mu, logvar = t.model.encode(x)
        eps = torch.randn(mu.shape, generator=g)
        logits = t.model.decode_logits(mu + torch.exp(0.5 * logvar) * eps)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
        kl = (-0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())) / len(x)
    assert math.isclose(ev["recon"], float(recon), rel_tol=1e-4)
    assert math.isclose(ev["kl"], float(kl), rel_tol=1e-4)


def test_config_validation():
    for bad in (dict(lr=0), dict(lr=float("nan")), dict(epochs=0), dict(epochs=10_000), dict(batch_size=0),
                dict(beta=11), dict(free_bits=-1), dict(warmup_steps=-5)):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
    with pytest.raises(ValueError):
        Trainer(ModelConfig(input_dim=784), TrainConfig(), DIGITS)  # 784 inputs, 64-pixel data


def test_background_runner_trains_and_stops_when_the_lease_expires():
    t = _trainer(epochs=50)
    r = BackgroundRunner(t, lease_seconds=0.5)
    r.start()
    deadline = time.time() + 30
    while t.step < 5 and time.time() < deadline:
        r.keep_alive()  # the page's fragment renews the lease on every redraw
        time.sleep(0.05)
    assert t.step >= 5 and r.alive
    r.join(timeout=10)  # nobody renews the lease
    assert not r.alive
    step = t.step
    time.sleep(0.2)
    assert t.step == step  # nothing trains after the lease expired
    deadline = time.time() + 30
    while t.step == step and time.time() < deadline:
        r.keep_alive()  # the page comes back: training resumes
        time.sleep(0.05)
    assert t.step > step
    r.pause()
    r.join(timeout=10)
    assert not r.alive


@pytest.mark.slow
def test_ten_epochs_on_mnist_match_a_pytorch_examples_loop():
    """Held-out -ELBO after 10 epochs within 5% of a pytorch/examples/vae-style loop of the same size."""
    ds = load_dataset("mnist-5k")
    mcfg = ModelConfig(kind="vae", input_dim=784, hidden_dims=(400,), latent_dim=20)
    tcfg = TrainConfig(epochs=10, batch_size=128, lr=1e-3, seed=0, snapshot_every=0, eval_every=10**6)
    t = Trainer(mcfg, tcfg, ds)
    t.run_steps(10**6)
    x_val = torch.as_tensor(ds.x[t.val_idx])
    ours = evaluate_model(t.model, x_val, 1.0, "bernoulli", seed=0)["neg_elbo"]

    class ExampleVAE(torch.nn.Module):  # pytorch/examples vae/main.py, same sizes
        def __init__(self):
            super().__init__()
            self.fc1, self.fc21, self.fc22 = torch.nn.Linear(784, 400), torch.nn.Linear(400, 20), torch.nn.Linear(400, 20)
            self.fc3, self.fc4 = torch.nn.Linear(20, 400), torch.nn.Linear(400, 784)

        def forward(self, x):
            h = F.relu(self.fc1(x))
            mu, logvar = self.fc21(h), self.fc22(h)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar

    torch.manual_seed(0)
    ref = ExampleVAE()
    opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
    x_tr = torch.as_tensor(ds.x[t.train_idx])
    for _ in range(10):
        perm = torch.randperm(len(x_tr))  # DataLoader(shuffle=True)
        for i in range(0, len(x_tr), 128):
            xb = x_tr[perm[i:i + 128]]
            recon, mu, logvar = ref(xb)
            loss = F.binary_cross_entropy(recon, xb, reduction="sum") - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        torch.manual_seed(1)
        recon, mu, logvar = ref(x_val)
        theirs = float((F.binary_cross_entropy(recon, x_val, reduction="sum")
                        - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())) / len(x_val))
    assert abs(ours - theirs) / theirs < 0.05, (ours, theirs)


def _thread_nice(tid: int) -> int:
    """The nice value of thread ``tid`` of this process, read from Linux's /proc (field 19 of stat)."""
    with open(f"/proc/self/task/{tid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])


@pytest.mark.skipif(not hasattr(__import__("os"), "setpriority"), reason="per-thread priorities need Linux")
def test_training_threads_run_at_a_lower_priority_and_are_counted_while_live():
    import threading
    from core import sharing
    base = live_runners()
    t = _trainer(epochs=50)
    r = BackgroundRunner(t, lease_seconds=0.5)
    seen = {}
    real_loop = r._loop

    def loop():  # record the trainer thread's id and its nice value once it has lowered it
        seen["tid"] = threading.get_native_id()
        real_loop()

    r._loop = loop
    r.start()
    deadline = time.time() + 30
    while t.step < 3 and time.time() < deadline:
        r.keep_alive()
        time.sleep(0.02)
    assert live_runners() == base + 1
    expected = min(19, _thread_nice(threading.get_native_id()) + sharing.trainer_nice())
    assert _thread_nice(seen["tid"]) == expected > _thread_nice(threading.get_native_id())
    r.pause()
    r.join(timeout=10)
    assert live_runners() == base  # paused: not live, although the lease is still current
    r.start()
    time.sleep(0.7)  # nobody renews the lease
    assert live_runners() == base
    r.pause()
    r.join(timeout=10)


def test_sample_prior_live_uses_the_published_weights_without_the_lock():
    import threading
    from core.training import sample_prior
    t = _trainer(epochs=50)
    assert np.array_equal(t.sample_prior_live(4, seed=1), t.sample_prior(4, seed=1))  # nothing published yet
    t.run_steps(3)
    t.publish_view()
    published = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.run_steps(5)  # the live model moves on; the published copy does not
    reference = build_model(SMALL, "cpu").eval()
    reference.load_state_dict(published)
    expected = sample_prior(reference, 4, seed=1)
    assert not np.allclose(expected, t.sample_prior(4, seed=1))
    # The training thread holds the lock (mid-step): the live view still gets its samples at once.
    held, release = threading.Event(), threading.Event()

    def hold():
        with t.lock:
            held.set()
            release.wait(10)

    th = threading.Thread(target=hold)
    th.start()
    held.wait(5)
    try:
        out = {}
        reader = threading.Thread(target=lambda: out.setdefault("x", t.sample_prior_live(4, seed=1)))
        reader.start()
        reader.join(5)
        assert "x" in out, "sample_prior_live waited for the training lock"
        np.testing.assert_allclose(out["x"], expected, rtol=1e-6, atol=1e-6)
    finally:
        release.set()
        th.join()


def test_run_for_publishes_the_view_for_the_live_page():
    t = _trainer(epochs=50)
    t.run_for(0.05)
    step, state = t._view
    assert step == t.step and set(state) == set(t.model.state_dict())


def test_live_runners_can_be_counted_while_other_sessions_create_runners():
    """A 30-session load test caught a page's status redraw failing with "Set changed size during
    iteration": it counted the live runners while another session's Start created one."""
    import threading

    done = threading.Event()

    def create() -> None:
        while not done.is_set():
            [BackgroundRunner(None) for _ in range(200)]  # noqa: B018 (kept alive by the list until it goes)

    maker = threading.Thread(target=create, daemon=True)
    maker.start()
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert live_runners() >= 0
    finally:
        done.set()
        maker.join(5)


def test_run_for_zero_seconds_is_exactly_one_step():
    t = _trainer()
    assert t.run_for(0.0) == 1 and t.step == 1
    assert t.run_for(0.0) == 1 and t.step == 2 and len(t.history) == 2


def test_runs_sharing_one_slot_take_their_steps_in_turn(monkeypatch):
    """One step per turn (core.sharing rule 1): three runs on one slot advance together, never more
    than a turn apart, so every student's view moves at each redraw. With turns of many steps (the
    old 50 ms chunks), one run would run tens of steps ahead while the others waited."""
    from core import sharing
    from core import training as T
    monkeypatch.setattr(T, "TRAINING_SLOTS", sharing.FairSlots(1))
    monkeypatch.setattr(T, "REDRAWS", sharing.Redraws(max_wait=0.25))
    runners = [BackgroundRunner(_trainer(epochs=200), lease_seconds=2.0) for _ in range(3)]
    for r in runners:
        r.start()
    spreads, base = [], None
    try:
        deadline = time.monotonic() + 30
        while min(r.trainer.step for r in runners) < 30 and time.monotonic() < deadline:
            for r in runners:
                r.keep_alive()
            steps = [r.trainer.step for r in runners]
            if base is None and min(steps) > 0:
                base = steps  # all three queue now (the first one started alone, a few steps ahead)
            elif base is not None:
                moved = [s - b for s, b in zip(steps, base)]
                spreads.append(max(moved) - min(moved))
            time.sleep(0.005)
    finally:
        for r in runners:
            r.pause()
        for r in runners:
            r.join(timeout=10)
    assert min(r.trainer.step for r in runners) >= 30
    assert spreads and max(spreads) <= 3, f"runs drifted apart by up to {max(spreads)} steps"


def test_a_runner_ranks_its_turns_by_the_steps_its_page_has_not_shown(monkeypatch):
    """The training thread asks for each turn with its runner's ``unshown_steps`` as rank
    (core.sharing rule 1): 0 right after the page's redraw renewed the lease, then one more for
    each step trained since."""
    from core import sharing
    from core import training as T
    seen = []

    class Recording(sharing.FairSlots):
        def acquire(self, rank=None):
            seen.append(rank)
            super().acquire(rank)

    monkeypatch.setattr(T, "TRAINING_SLOTS", Recording(1))
    r = BackgroundRunner(_trainer(epochs=200), lease_seconds=5.0)
    r.start()
    try:
        deadline = time.monotonic() + 10
        while r.trainer.step < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        r.pause()
        r.join(timeout=10)
    assert seen and all(rank is not None and rank() == r.unshown_steps() for rank in seen)
    assert r.unshown_steps() == r.trainer.step >= 5  # nothing was shown since start()
    r.keep_alive()  # a redraw: it draws the newest step
    assert r.unshown_steps() == 0


def test_a_redraw_can_wait_for_a_step_its_page_has_not_shown(monkeypatch):
    """``wait_for_unshown_step``: returns as soon as the training thread takes a step the page has
    not shown (it does not sleep the whole timeout), returns False at the timeout when no step
    comes, and at once when the run is not training."""
    from core import sharing
    from core import training as T
    slots = sharing.FairSlots(1)
    monkeypatch.setattr(T, "TRAINING_SLOTS", slots)
    r = BackgroundRunner(_trainer(epochs=200), lease_seconds=5.0)
    slots.acquire()  # hold the only slot: the training thread cannot step
    r.start()
    try:
        r.keep_alive()  # the page shows the current step
        t0 = time.perf_counter()
        assert r.wait_for_unshown_step(0.3) is False and time.perf_counter() - t0 >= 0.29
        got = []
        waiter = threading.Thread(target=lambda: got.append((r.wait_for_unshown_step(20.0), time.perf_counter())))
        waiter.start()
        time.sleep(0.2)
        released = time.perf_counter()
        slots.release()  # the training thread steps now
        waiter.join(25)
        assert got and got[0][0] is True and got[0][1] - released < 10, "the wait did not end at the step"
    finally:
        r.pause()
        r.join(timeout=10)
    t0 = time.perf_counter()
    r.keep_alive()
    assert r.wait_for_unshown_step(5.0) is False and time.perf_counter() - t0 < 1  # paused: no wait


def _steps_while(runner, seconds: float) -> int:
    """Steps the runner's trainer takes in ``seconds`` (renewing its lease meanwhile)."""
    s0 = runner.trainer.step
    end = time.time() + seconds
    while time.time() < end:
        runner.keep_alive()
        time.sleep(0.02)
    return runner.trainer.step - s0


def _took_steps(runner, n: int, within: float = 10.0) -> bool:
    """The runner's trainer took ``n`` more steps within ``within`` seconds (renewing its lease
    meanwhile). A generous limit: training threads run at nice 19, so other work on the machine
    can hold them back for a while."""
    s0, end = runner.trainer.step, time.time() + within
    while runner.trainer.step - s0 < n and time.time() < end:
        runner.keep_alive()
        time.sleep(0.02)
    return runner.trainer.step - s0 >= n


@contextlib.contextmanager
def _training_with_redraws(monkeypatch, max_wait: float):
    """(redraws, runner): a background run training while the process's redraws are ``redraws``."""
    from core import sharing
    from core import training as T
    redraws = sharing.Redraws(max_wait=max_wait)
    monkeypatch.setattr(T, "REDRAWS", redraws)
    r = BackgroundRunner(_trainer(epochs=200), lease_seconds=2.0)
    r.start()
    try:
        yield redraws, r
    finally:
        r.pause()
        r.join(timeout=10)


def test_trainers_give_way_to_redraws_and_resume(monkeypatch):
    with _training_with_redraws(monkeypatch, max_wait=5.0) as (redraws, r):
        assert _took_steps(r, 1)  # training
        with redraws:
            assert redraws.busy
            _steps_while(r, 0.1)  # the step in flight ends
            assert _steps_while(r, 0.6) == 0, "a trainer kept stepping during a redraw"
        assert not redraws.busy
        assert _took_steps(r, 1), "training did not resume after the redraw"


def test_redraws_pause_training_for_at_most_max_wait(monkeypatch):
    with _training_with_redraws(monkeypatch, max_wait=0.05) as (redraws, r):
        with redraws:  # a redraw that never ends must not starve training: the trainer waits 0.05 s at
            assert _took_steps(r, 5)  # most before each step (waiting for the end, it would take none)


# ---- races found in review: each test forces the interleaving that broke ----------------------

def test_keep_alive_from_two_threads_starts_one_training_thread(monkeypatch):
    """Two redraws renewing the lease at once: the check 'no thread alive' and the start must be one
    step, or both see no thread and start two (forced here by a slow ``alive``)."""
    import threading

    t = _trainer(epochs=50)
    r = BackgroundRunner(t, lease_seconds=5.0)
    started, release = [], threading.Event()

    def loop():  # stands for the training loop: stays alive until the test ends
        started.append(threading.get_native_id())
        release.wait(10)

    r._loop = loop
    real_alive = BackgroundRunner.alive.fget

    def slow_alive(self):
        seen = real_alive(self)
        time.sleep(0.1)  # the other caller checks meanwhile
        return seen

    monkeypatch.setattr(BackgroundRunner, "alive", property(slow_alive))
    r.wanted = True
    barrier = threading.Barrier(2)
    callers = [threading.Thread(target=lambda: (barrier.wait(), r.keep_alive())) for _ in range(2)]
    for c in callers:
        c.start()
    for c in callers:
        c.join(10)
    time.sleep(0.1)
    release.set()
    r.join(5)
    assert len(started) == 1, f"{len(started)} training threads started"


def test_train_seconds_loses_no_update_when_another_thread_steps_meanwhile():
    """Two threads train one trainer (the training thread, and a caller of ``run_for``): both
    additions to ``train_seconds`` must count. Forced: the first thread's read is slow."""
    import threading

    reads, incs = threading.local(), []
    in_read, slow = threading.Event(), set()

    class Traced(Trainer):
        @property
        def train_seconds(self):
            v = self.__dict__.get("_ts", 0.0)
            reads.v = v
            if threading.get_ident() in slow:
                slow.discard(threading.get_ident())
                in_read.set()
                time.sleep(0.3)  # the redraw's step happens now, if nothing stops it
            return v

        @train_seconds.setter
        def train_seconds(self, v):
            incs.append(v - getattr(reads, "v", 0.0))
            self.__dict__["_ts"] = v

    t = Traced(SMALL, TrainConfig(epochs=50, batch_size=64), DIGITS)
    r = BackgroundRunner(t)
    r.wanted = True

    def trainer_thread():
        slow.add(threading.get_ident())
        t.run_for(0.0)

    th = threading.Thread(target=trainer_thread)
    th.start()
    assert in_read.wait(10)
    t.run_for(0.0)  # a second thread trains one step meanwhile
    th.join(10)
    assert t.step == 2
    assert math.isclose(t.train_seconds, sum(incs), rel_tol=1e-12), (t.train_seconds, incs)


def test_sample_prior_live_while_the_run_releases_its_data(monkeypatch):
    """A redraw decodes with the published weights while the finished run frees them: the redraw
    must get its samples, not a None model. Forced: the release happens while the view model loads."""
    import threading

    from core import training as T

    t = _trainer(epochs=50)
    t.run_steps(2)
    t.publish_view()
    t.stop()
    loaded, released = threading.Event(), threading.Event()
    real_build = T.build_model

    def build(cfg, device="cpu"):
        m = real_build(cfg, device)
        real_load = m.load_state_dict

        def load(state, *a, **kw):
            out = real_load(state, *a, **kw)
            loaded.set()
            released.wait(0.5)  # the release runs now, if nothing stops it
            return out

        m.load_state_dict = load
        return m

    monkeypatch.setattr(T, "build_model", build)
    releaser = threading.Thread(target=lambda: (loaded.wait(10), t.release_training_data(), released.set()))
    releaser.start()
    got = t.sample_prior_live(3, seed=0)
    releaser.join(10)
    assert got.shape == (3, 64) and np.isfinite(got).all()
    assert t._view is None and t._view_model is None  # released all the same


def test_frozen_copy_is_a_read_only_snapshot_and_leaves_the_original_training():
    from core.training import freeze, frozen_copy

    t = _trainer()
    t.run_steps(2)
    snap = frozen_copy(t.model)
    assert not snap.training and all(not p.requires_grad for p in snap.parameters())
    assert t.model.training and all(p.requires_grad for p in t.model.parameters())  # the original trains on
    before = {k: v.clone() for k, v in snap.state_dict().items()}
    for k, v in t.model.state_dict().items():
        assert torch.equal(v, before[k]) and v.data_ptr() != snap.state_dict()[k].data_ptr()
    t.run_steps(3)
    assert all(torch.equal(v, before[k]) for k, v in snap.state_dict().items())  # a snapshot: it does not move
    x = torch.tensor(DIGITS.x[:4], dtype=torch.float32, requires_grad=True)
    snap.decode(snap.encode(x)[0]).sum().backward()  # gradients with respect to activations still work
    assert x.grad is not None and all(p.grad is None for p in snap.parameters())
    m = build_model(SMALL, "cpu")
    assert freeze(m) is m and not m.training
