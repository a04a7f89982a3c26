"""Training a (V)AE: one loop, run a step at a time in the background while a page watches.

Read it top to bottom:

* ``TrainConfig``: the optimisation settings, checked.
* ``Trainer``: the model, Adam, a fixed train/held-out split, and every number the pages show:
  ``history`` (one dict per optimiser step), ``eval_history`` (held-out terms), ``beta_changes``
  and ``snapshots`` (latents of a fixed subset and reconstructions of fixed inputs, for the
  training timeline). The loop: ``run_for(seconds)`` or ``run_steps(n)`` -> ``_chunk`` (steps
  until the time or the count is up) -> ``_one_step`` (mini-batch, forward, loss terms; a
  non-finite loss restores the last good weights and stops the run; backward, Adam step; the
  records) -> ``_record_eval`` and ``_record_snapshot``. Every step holds ``Trainer.lock``.
* ``BackgroundRunner``: runs a trainer in a daemon thread for as long as a page renews its
  lease. ``_loop``: lease expired? stop; a page redrawing? wait; take a CPU slot; train one
  step; repeat. Only this thread trains: a page's redraw reads, it never steps. How the runs of every session share the CPU (fair slots, redraws first, low
  priority) is :mod:`core.sharing`'s job, explained there.
* Model helpers shared by the trainer, the zoo and the pages: encode, decode, evaluate, freeze.

All randomness (initial weights, shuffling, the VAE's noise) comes from generators seeded by
``TrainConfig.seed``, so the same seed gives the same run, whatever else the process does with
the global RNG.
"""
from __future__ import annotations

import collections
import copy
import functools
import math
import os
import threading
import time
import weakref
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from core.data import Dataset, train_val_split
from core.losses import elbo_terms
from core.models import AutoEncoder, ModelConfig, build_model
from core.sharing import REDRAWS, TRAINING_SLOTS, FairSlots, Redraws, lower_thread_priority  # noqa: F401  (re-exported: pages and tests use them)
from core.units import count_active

STATUSES = ("idle", "running", "done", "diverged")
MAX_EPOCHS = 200
MAX_BETA = 10.0
VIEW_EVERY_S = 0.25  # how often run_for publishes a copy of the weights for the live view


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. ``warmup_steps``: beta ramps linearly from 0 over that many steps
    (KL annealing, Bowman et al. 2016). ``free_bits``: nats per dimension (Kingma et al. 2016)."""

    lr: float = 2e-3
    batch_size: int = 128
    epochs: int = 10
    seed: int = 0
    beta: float = 1.0
    warmup_steps: int = 0
    free_bits: float = 0.0
    val_fraction: float = 0.1
    eval_every: int = 25
    snapshot_every: int = 10
    snapshot_points: int = 400
    snapshot_images: int = 8
    device: str = "auto"

    def __post_init__(self) -> None:
        checks = [
            (math.isfinite(self.lr) and 1e-6 <= self.lr <= 1.0, f"learning rate must be in [1e-6, 1], got {self.lr}"),
            (1 <= self.batch_size <= 4096, f"batch size must be in 1..4096, got {self.batch_size}"),
            (1 <= self.epochs <= MAX_EPOCHS, f"epochs must be in 1..{MAX_EPOCHS}, got {self.epochs}"),
            (0 <= self.seed < 2**31, f"seed must be in 0..2^31-1, got {self.seed}"),
            (math.isfinite(self.beta) and 0 <= self.beta <= MAX_BETA, f"beta must be in [0, {MAX_BETA}], got {self.beta}"),
            (self.warmup_steps >= 0, f"warm-up steps must be >= 0, got {self.warmup_steps}"),
            (math.isfinite(self.free_bits) and 0 <= self.free_bits <= 10, f"free bits must be in [0, 10], got {self.free_bits}"),
            (0 < self.val_fraction < 0.5, f"held-out fraction must be in (0, 0.5), got {self.val_fraction}"),
            (self.eval_every >= 1 and self.snapshot_every >= 0, "eval_every must be >= 1 and snapshot_every >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Adam:
    """Adam (Kingma & Ba, 2015) with PyTorch's fused implementation where the device has it (CPU,
    CUDA): one kernel updates every parameter, instead of a Python loop of ~6 ops per parameter
    tensor. Same update rule, same results up to rounding; ~15 % more samples/s for the page's MLP
    VAE on one CPU thread (bench/bench_core.py)."""
    params = list(model.parameters())
    fused = params[0].device.type in ("cpu", "cuda") and all(p.is_floating_point() for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None)


class Trainer:
    """Train ``build_model(model_cfg)`` on ``dataset`` in resumable chunks.

    ``status``: "idle" before the first step, "running" until the last epoch ends, then
    "done"; "diverged" when a loss became non-finite (the last good weights are restored and
    ``message`` says what happened). Methods are thread-safe: every step and every read of
    the model holds ``self.lock``.
    """

    def __init__(self, model_cfg: ModelConfig, train_cfg: TrainConfig, dataset: Dataset,
                 state_dict: dict | None = None):
        if dataset.dim != model_cfg.input_dim:
            raise ValueError(f"model input_dim {model_cfg.input_dim} does not match the dataset's {dataset.dim} pixels")
        self.model_cfg, self.cfg, self.dataset = model_cfg, train_cfg, dataset
        self.lock = threading.RLock()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(train_cfg.seed)
            self.model: AutoEncoder = build_model(model_cfg, train_cfg.device)
        if state_dict is not None:
            self.model.load_state_dict(state_dict)
        self.device = next(self.model.parameters()).device
        self.opt = make_optimizer(self.model, train_cfg.lr)
        train_idx, val_idx = train_val_split(dataset.n, train_cfg.val_fraction, train_cfg.seed)
        self.train_idx, self.val_idx = train_idx, val_idx
        self.x_train = torch.as_tensor(dataset.x[train_idx], device=self.device)
        self.x_val = torch.as_tensor(dataset.x[val_idx], device=self.device)
        self.y_val = np.asarray(dataset.y[val_idx])
        self.gen = torch.Generator(device=self.device).manual_seed(train_cfg.seed)
        self.steps_per_epoch = math.ceil(len(train_idx) / train_cfg.batch_size)
        self.total_steps = self.steps_per_epoch * train_cfg.epochs
        rng = np.random.default_rng(train_cfg.seed)
        n_val = len(val_idx)
        self.snap_idx = np.sort(rng.choice(n_val, min(train_cfg.snapshot_points, n_val), replace=False))
        self.fixed_idx = np.arange(min(train_cfg.snapshot_images, n_val))
        self.beta = float(train_cfg.beta)
        self.beta_changes: list[tuple[int, float]] = [(0, self.beta)]
        self.history: list[dict] = []
        self.eval_history: list[dict] = []
        self.snapshots: list[dict] = []
        self.step = 0
        self.status = "idle"
        self.message = ""
        self.train_seconds = 0.0
        self._perm = None
        self._pos = 0
        self._good_state = self._state_copy()
        self._good_step = 0
        self._view_lock = threading.Lock()  # guards the three _view fields below
        self._view: tuple[int, dict] | None = None  # (step, weights) published for the live view
        self._view_time = 0.0
        self._view_model: AutoEncoder | None = None
        self._view_model_step = -1

    # ---- what the pages call ------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self.step // self.steps_per_epoch

    @property
    def samples_per_second(self) -> float:
        return self.step * self.cfg.batch_size / self.train_seconds if self.train_seconds > 0 else 0.0

    @property
    def finished(self) -> bool:
        return self.status in ("done", "diverged")

    def progress(self) -> float:
        return min(1.0, self.step / self.total_steps)

    def seconds_left(self) -> float | None:
        sps = self.samples_per_second
        if sps <= 0:
            return None
        return (self.total_steps - self.step) * self.cfg.batch_size / sps

    def effective_beta(self, step: int | None = None) -> float:
        """beta, ramped linearly from 0 over ``warmup_steps`` (KL warm-up)."""
        s = self.step if step is None else step
        if self.cfg.warmup_steps > 0:
            return self.beta * min(1.0, s / self.cfg.warmup_steps)
        return self.beta

    def set_beta(self, beta: float) -> None:
        """Takes effect at the next step; recorded in ``beta_changes``."""
        beta = float(beta)
        if not math.isfinite(beta) or not 0 <= beta <= MAX_BETA:
            raise ValueError(f"beta must be in [0, {MAX_BETA}], got {beta}")
        with self.lock:
            if beta != self.beta:
                self.beta = beta
                self.beta_changes.append((self.step, beta))

    def run_steps(self, n: int) -> int:
        """Run up to ``n`` optimiser steps; returns how many ran."""
        return self._chunk(max_steps=n)

    def run_for(self, seconds: float) -> int:
        """Run steps until ``seconds`` of wall time have passed (at least one step: ``run_for(0)`` is
        exactly one); returns the count. Publishes the weights for the live view every
        ``VIEW_EVERY_S`` seconds."""
        ran = self._chunk(seconds=seconds)
        if time.monotonic() - self._view_time >= VIEW_EVERY_S:
            self.publish_view()
        return ran

    def stop(self, message: str | None = None) -> None:
        """End the run early (the user pressed Stop): status becomes "done" at the current step,
        ``message`` says so, and the held-out terms are recorded once more."""
        with self.lock:
            if self.finished:
                return
            self.status = "done"
            self.message = message or f"Stopped by the user at step {self.step} of {self.total_steps}."
            if self.step > 0 and (not self.eval_history or self.eval_history[-1]["step"] != self.step):
                self._record_eval()

    # ---- the training loop, top to bottom: a chunk of steps, one step, what a step records ----
    def _chunk(self, max_steps: int | None = None, seconds: float | None = None) -> int:
        """Steps until ``max_steps`` ran, or ``seconds`` passed (after at least one step), or the run
        finished. Adds the chunk's wall time to
        ``train_seconds`` under the lock."""
        ran = 0
        t0 = time.perf_counter()
        deadline = None if seconds is None else t0 + seconds
        while (max_steps is None or ran < max_steps) and not self.finished:
            self._one_step()
            ran += 1
            if deadline is not None and time.perf_counter() >= deadline:
                break
        elapsed = time.perf_counter() - t0
        with self.lock:
            self.train_seconds += elapsed
        return ran

    def _one_step(self) -> None:
        """One optimiser step on the next mini-batch, and what it records. Holds the lock throughout."""
        with self.lock:
            if self.status == "idle":
                self.status = "running"
            if not self.model.training:  # train() walks every module: only when an evaluation left eval mode
                self.model.train()
            # 1. The mini-batch and the VAE's noise, from the run's own generator.
            xb = self._next_batch()
            eps = None
            if self.model.is_vae:
                eps = torch.randn((len(xb), self.model_cfg.latent_dim), generator=self.gen, device=self.device)
            # 2. Forward: the loss terms, loss = recon + beta * KL (the negative ELBO at beta = 1).
            beta = self.effective_beta()
            out = self.model(xb, eps=eps, recon=False)
            terms = elbo_terms(xb, out, beta, self.model_cfg.likelihood, self.cfg.free_bits)
            vals = torch.cat([torch.stack([terms.loss, terms.recon, terms.kl]).detach(), terms.kl_per_dim.detach()]).tolist()
            # 3. A non-finite loss: restore the last good weights and stop the run ("diverged").
            if not all(math.isfinite(v) for v in vals[:3]):
                self._diverge(vals[0])
                return
            # 4. Every 20 steps, keep these weights as the last good ones: they just gave a finite loss.
            #    (Copying after opt.step() instead could keep weights the update had made non-finite.)
            if self.step % 20 == 0:
                self._good_state, self._good_step = self._state_copy(), self.step
            # 5. Backward and Adam.
            self.opt.zero_grad(set_to_none=True)
            terms.loss.backward()
            self.opt.step()
            self.step += 1
            # 6. The records: every step, held-out terms every eval_every steps, snapshots every
            #    snapshot_every steps (and the first and last steps).
            kl_dims = vals[3:]
            self.history.append({
                "step": self.step, "epoch": (self.step - 1) // self.steps_per_epoch + 1,
                "loss": vals[0], "recon": vals[1], "kl": vals[2], "beta": beta,
                "beta_kl": beta * vals[2], "kl_per_dim": kl_dims,
            })
            if self.step >= self.total_steps:
                self.status = "done"
            if self.step % self.cfg.eval_every == 0 or self.status == "done":
                self._record_eval()
            if self.cfg.snapshot_every and (self.step % self.cfg.snapshot_every == 0 or self.status == "done" or self.step == 1):
                self._record_snapshot()

    # ---- where the loop is (saved and restored by core.persist; call with the lock held) ----

    def epoch_position(self) -> tuple[torch.Tensor | None, int]:
        """This epoch's shuffling order (N,) (None before the first batch) and the next batch's offset in it."""
        return self._perm, self._pos

    def set_epoch_position(self, perm: torch.Tensor | None, pos: int) -> None:
        self._perm = None if perm is None else perm.to(self.device)
        self._pos = int(pos)

    def mark_good(self) -> None:
        """Take the current weights as the last good ones (what a divergence restores)."""
        self._good_state, self._good_step = self._state_copy(), self.step

    def _next_batch(self) -> torch.Tensor:
        n = len(self.x_train)
        if self._perm is None or self._pos >= n:
            self._perm = torch.randperm(n, generator=self.gen, device=self.device)
            self._pos = 0
        idx = self._perm[self._pos:self._pos + self.cfg.batch_size]
        self._pos += self.cfg.batch_size
        return self.x_train[idx]

    def _diverge(self, loss_value: float) -> None:
        """Restore the last good weights, start Adam afresh, and say what happened."""
        self.model.load_state_dict(self._good_state)
        self.opt = make_optimizer(self.model, self.cfg.lr)
        self.status = "diverged"
        self.message = (f"The loss became {loss_value} at step {self.step + 1} (learning rate {self.cfg.lr:g}). "
                        f"Training stopped and the weights from step {self._good_step} were restored. "
                        "Lower the learning rate (for example to 1e-3) and start again.")

    def _state_copy(self) -> dict:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def _record_eval(self) -> None:
        ev = evaluate_model(self.model, self.x_val, self.effective_beta(), self.model_cfg.likelihood, seed=self.cfg.seed)
        ev.update(step=self.step, epoch=self.epoch)
        self.eval_history.append(ev)

    def _record_snapshot(self) -> None:
        xs = self.x_val[torch.as_tensor(self.snap_idx, device=self.device)]
        xf = self.x_val[torch.as_tensor(self.fixed_idx, device=self.device)]
        self.snapshots.append({
            "step": self.step,
            "latents": encode_mu(self.model, xs),
            "recon": reconstruct(self.model, xf),
        })

    # ---- reading the model (any thread) ----------------------------------------------------
    @torch.no_grad()
    def evaluate(self, x: torch.Tensor | None = None) -> dict:
        """Held-out terms (mean per sample) with one fixed-noise sample of z: loss/recon/kl/active_units."""
        with self.lock:
            return evaluate_model(self.model, self.x_val if x is None else x, self.effective_beta(),
                                  self.model_cfg.likelihood, seed=self.cfg.seed)

    @torch.no_grad()
    def reconstruct(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Decoder mean at z = mu for inputs (B, D) -> (B, D) numpy."""
        with self.lock:
            return reconstruct(self.model, x)

    @torch.no_grad()
    def encode_mu(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        with self.lock:
            return encode_mu(self.model, x)

    @torch.no_grad()
    def sample_prior(self, n: int, seed: int = 0) -> np.ndarray:
        with self.lock:
            return sample_prior(self.model, n, seed)

    def state_dict(self) -> dict:
        with self.lock:
            return self._state_copy()

    def publish_view(self) -> None:
        """Copy the current weights for :meth:`sample_prior_live` (``run_for`` does this every
        ``VIEW_EVERY_S`` seconds, in the training thread)."""
        with self.lock:
            view = (self.step, self._state_copy())
        with self._view_lock:
            self._view = view
        self._view_time = time.monotonic()

    @torch.no_grad()
    def sample_prior_live(self, n: int, seed: int = 0) -> np.ndarray:
        """Like :meth:`sample_prior` (n, D), but decoded by a copy of the weights last published by
        the training thread, so a page redraw never waits for the training lock. (The training
        thread runs at a lower priority; a redraw waiting for a lock it holds would wait for the
        thread to be scheduled again: 150 to 370 ms under load, measured.) Falls back to the live
        model before the first publication and after :meth:`release_training_data`.
        The view has its own small lock: a release cannot pull the model from under a redraw."""
        with self._view_lock:
            if self._view is not None:
                step, state = self._view
                if self._view_model is None:
                    self._view_model = build_model(self.model_cfg, self.device).eval()
                    self._view_model_step = -1
                if self._view_model_step != step:
                    self._view_model.load_state_dict(state)
                    self._view_model_step = step
                return sample_prior(self._view_model, n, seed)
        return self.sample_prior(n, seed)

    def release_training_data(self) -> None:
        """Free the training images and optimiser state of a finished run (the model, the
        held-out data, the history and the snapshots stay). No-op while the run can still train."""
        with self.lock:
            if not self.finished:
                return
            self.x_train = self.x_train[:0].clone()
            self.opt.state.clear()
            self._good_state = {}
            self._perm = None
            with self._view_lock:  # (lock order: the training lock, then the view's)
                self._view, self._view_model, self._view_model_step = None, None, -1


# ---- the background runner ------------------------------------------------------------------

_RUNNERS: "weakref.WeakSet[BackgroundRunner]" = weakref.WeakSet()
_RUNNERS_LOCK = threading.Lock()  # a WeakSet cannot be iterated while another thread adds to it


def live_runners() -> int:
    """How many runs of this process (all sessions together) are training now: wanted, unfinished
    and watched (their lease is current). A runner between two chunks still counts."""
    with _RUNNERS_LOCK:
        runners = list(_RUNNERS)
    return sum(1 for r in runners if r.live)


class BackgroundRunner:
    """Runs ``trainer`` in a daemon thread for as long as someone keeps renewing a lease.

    The page calls :meth:`keep_alive` on every redraw (a fragment that reruns every half
    second). When the browser tab closes or the user leaves the page, the redraws stop, the
    lease expires after ``lease_seconds`` and the thread exits, so no CPU is left burning.
    The thread never touches Streamlit.
    """

    def __init__(self, trainer: Trainer, lease_seconds: float = 3.0):
        self.trainer = trainer
        self.lease_seconds = lease_seconds
        self.wanted = False
        self._last_beat = 0.0
        self._shown_step = 0  # trainer.step when the page last renewed the lease (it then draws that step)
        self._thread: threading.Thread | None = None
        self._stepped = threading.Condition()  # notified after each step (wait_for_unshown_step)
        self._start_lock = threading.Lock()
        self.error: str | None = None
        with _RUNNERS_LOCK:
            _RUNNERS.add(self)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def live(self) -> bool:
        """Training is wanted, unfinished, and a page renewed the lease recently."""
        return (self.wanted and not self.trainer.finished and self.error is None
                and time.monotonic() - self._last_beat <= self.lease_seconds)

    def keep_alive(self) -> None:
        """Renew the lease and (re)start the thread if training is wanted and unfinished. The check
        and the start are one step under ``_start_lock``: two redraws renewing at once (the page's
        fragments, or two tabs of one session) start one thread, not two."""
        self._last_beat = time.monotonic()
        self._shown_step = self.trainer.step
        with self._start_lock:
            if self.wanted and not self.trainer.finished and not self.alive:
                self._thread = threading.Thread(target=self._loop, name="latent-lab-trainer", daemon=True)
                self._thread.start()

    def unshown_steps(self) -> int:
        """Steps trained since the page's last redraw (:meth:`keep_alive`), which drew the step it found:
        the training thread's rank for its next turn (core.sharing, rule 1)."""
        return self.trainer.step - self._shown_step

    def wait_for_unshown_step(self, timeout: float) -> bool:
        """Sleep (without the GIL) until the run has a step its page has not shown, or it stops
        training, for at most ``timeout`` seconds; True when there is such a step. A redraw calls it
        before it draws, outside ``REDRAWS`` (the trainers do not give way to a redraw that waits)."""
        with self._stepped:
            self._stepped.wait_for(lambda: self.unshown_steps() > 0 or not self.live, timeout)
        return self.unshown_steps() > 0

    def start(self) -> None:
        self.wanted = True
        self.keep_alive()

    def pause(self) -> None:
        self.wanted = False

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        """The training thread: one step per turn while training is wanted, unfinished and watched,
        sharing the CPU by :mod:`core.sharing`'s rules. Only this thread trains the run: a page's
        redraw never takes a step itself, so a redraw's cost does not grow with the load."""
        lower_thread_priority()
        try:
            while self.wanted and not self.trainer.finished:
                if time.monotonic() - self._last_beat > self.lease_seconds:
                    return
                if REDRAWS.busy:
                    REDRAWS.wait_until_done()  # a page is redrawing: let it have the CPU and the GIL
                with TRAINING_SLOTS.turn(self.unshown_steps):  # one step per turn, runs whose view waits first
                    self.trainer.run_for(0.0)
                with self._stepped:
                    self._stepped.notify_all()  # a redraw may be waiting for this step
        except Exception as exc:  # reported to the page, never raised into Streamlit
            self.error = f"{type(exc).__name__}: {exc}"
            self.wanted = False


# ---- model helpers shared by the trainer, the zoo and the pages --------------------------

def freeze(model: AutoEncoder) -> AutoEncoder:
    """Make ``model`` read-only in place, and return it: eval mode, ``requires_grad=False`` on every
    weight. Pages may still take gradients with respect to activations, never change the weights."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def frozen_copy(model: AutoEncoder) -> AutoEncoder:
    """A read-only copy of ``model`` (:func:`freeze` of a deep copy): other pages read it while the
    original keeps training. The original is not changed."""
    return freeze(copy.deepcopy(model))


def _as_tensor(model: AutoEncoder, x) -> torch.Tensor:
    dev = next(model.parameters()).device
    if torch.is_tensor(x):
        return x.to(dev).float()
    arr = np.asarray(x, dtype=np.float32)
    if not arr.flags.writeable:  # shared read-only dataset arrays: torch wants writable memory
        arr = arr.copy()
    return torch.from_numpy(arr).to(dev)


@torch.no_grad()
def encode_mu(model: AutoEncoder, x) -> np.ndarray:
    """Posterior means (AE: codes) for x (N, D) -> (N, K) float32, in eval mode."""
    was = model.training
    model.eval()
    mu, _ = model.encode(_as_tensor(model, x))
    model.train(was)
    return mu.cpu().numpy()


@torch.no_grad()
def encode_stats(model: AutoEncoder, x) -> tuple[np.ndarray, np.ndarray | None]:
    """(mu, logvar) for x (N, D) -> (N, K), (N, K) (logvar None for an AE)."""
    mu, logvar = model.encode(_as_tensor(model, x))
    return mu.cpu().numpy(), None if logvar is None else logvar.cpu().numpy()


@torch.no_grad()
def decode(model: AutoEncoder, z) -> np.ndarray:
    """Decoder means for codes z (N, K) -> (N, D) float32."""
    return model.decode(_as_tensor(model, z)).cpu().numpy()


@torch.no_grad()
def reconstruct(model: AutoEncoder, x) -> np.ndarray:
    """decode(mu(x)) for x (N, D) -> (N, D), deterministic."""
    mu, _ = model.encode(_as_tensor(model, x))
    return model.decode(mu).cpu().numpy()


@torch.no_grad()
def sample_prior(model: AutoEncoder, n: int, seed: int = 0) -> np.ndarray:
    """Decode n codes drawn from the prior N(0, I) -> (n, D)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn((n, model.cfg.latent_dim), generator=g)
    return decode(model, z)


@torch.no_grad()
def evaluate_model(model: AutoEncoder, x, beta: float, likelihood: str, seed: int = 0,
                   batch_size: int = 1024) -> dict:
    """Mean per-sample terms on x (N, D): loss, recon, kl, elbo (= -(recon + kl)), kl_per_dim, active_units,
    plus ``var_mu`` (K floats, Var_x(mu_j) on these images) and ``active`` (K bools, var_mu > 0.01).

    One sample of z per input, with noise from a generator seeded by ``seed`` (so the numbers
    are reproducible). ``active_units`` is Burda et al.'s count on these images
    (``core.units.count_active``: Var_x(mu_j) > 0.01), the one definition every page uses;
    ``active`` is the same criterion per dimension (``core.units.active_mask``).
    """
    was = model.training
    model.eval()
    x = _as_tensor(model, x)
    g = torch.Generator(device=x.device).manual_seed(seed + 12345)
    tot = {"loss": 0.0, "recon": 0.0, "kl": 0.0}
    kl_dims = torch.zeros(model.cfg.latent_dim, device=x.device)
    mus = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        eps = torch.randn((len(xb), model.cfg.latent_dim), generator=g, device=x.device) if model.is_vae else None
        out = model(xb, eps=eps)
        mus.append(out.mu)
        t = elbo_terms(xb, out, beta, likelihood)
        for k in tot:
            tot[k] += float(getattr(t, k)) * len(xb)
        kl_dims += t.kl_per_dim * len(xb)
    model.train(was)
    n = len(x)
    res = {k: v / n for k, v in tot.items()}
    res["neg_elbo"] = res["recon"] + res["kl"]
    res["kl_per_dim"] = (kl_dims / n).cpu().tolist()
    from core.units import active_mask  # the same criterion per dimension

    mu_all = torch.cat(mus).double().cpu().numpy()
    res["active_units"] = count_active(mu_all) if n >= 2 else 0
    if n >= 2:
        res["var_mu"] = mu_all.var(axis=0).tolist()
        res["active"] = [bool(a) for a in active_mask(mu_all)]
    return res
