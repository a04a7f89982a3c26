"""A session's training runs: the live one, the finished ones, a beta-sweep queue, exports.

The training page keeps one :class:`RunStore` in ``st.session_state`` (a key no widget
uses, so it survives page switches). A :class:`Run` is one model being trained (a
:class:`core.training.Trainer` driven by a :class:`core.training.BackgroundRunner`) or a
model loaded from a checkpoint. The page calls :meth:`RunStore.tick` on every redraw of its
live fragment: that renews the runner's lease (so the thread stops when nobody watches),
finalises runs that just finished (held-out evaluation, memory released) and starts the next
run of a beta sweep. Nothing here touches Streamlit.
"""
from __future__ import annotations

import json
import math
import re
import secrets
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from core import persist as P
from core.checkpoints import Checkpoint, checkpoint_bytes
from core.data import DATASETS, Dataset, load_dataset, train_val_split
from core.models import LATENT_RANGE, MAX_HIDDEN, MAX_LAYERS, AutoEncoder, ModelConfig, build_model, eval_mode
from core.training import (MAX_EPOCHS, BackgroundRunner, TrainConfig, Trainer,
                           evaluate_model, frozen_copy, reconstruct, sample_prior)

BETA_CHOICES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
SWEEP_BETAS = (0.0, 0.5, 1.0, 4.0)
LR_CHOICES = (1e-4, 3e-4, 1e-3, 2e-3, 5e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
BATCH_CHOICES = (16, 32, 64, 128, 256, 512)
MAX_RUNS = 8          # kept per session; the oldest finished ones are dropped beyond this
MAX_COMPARE = 4
# Bookkeeping the live view needs, kept cheap (each costs training throughput): about 36 timeline
# snapshots of 300 held-out points per run (~4 % of the training time, measured) and a held-out
# evaluation every 50 steps or more (~3 %).
TIMELINE_TARGET = 36
SNAPSHOT_POINTS = 300
EVALS_PER_RUN = 30
DEFAULT_HIDDEN = "256,128"
# The default run is one a class can watch (issue 21): it keeps training for a minute or more, so
# that β can be moved several times, yet its held-out −ELBO is near its final value after about
# 10 s. Small batches do both: many cheap steps early (a good model after ~1,500 steps of 32 images,
# about 10 s on one thread of a busy 2-core VM), and the most epochs a run may take (MAX_EPOCHS),
# so mnist-5k trains 141 x 200 = 28,200 steps (measured, 6 Dec 2026, on this 2-core VM shared with
# other jobs: about 150 steps/s, over 3 min; held-out −ELBO 134 nats at step 940, 120-122 from
# 40 s on) and digits 102 x 200 = 20,400 steps. A run of a fixed number of steps (not a time
# limit) stays reproducible: the same seed gives the same run on any machine; Stop ends it.
DEFAULT_EPOCHS = {"mnist-5k": MAX_EPOCHS, "digits": MAX_EPOCHS}
DEFAULT_BATCH = {"mnist-5k": 32, "digits": 16}
#: A held-out evaluation at least every this many steps (about once a second at the default batch),
#: so the held-out −ELBO shown is never more than a moment old, however long the run.
MAX_EVAL_GAP = 150
MAX_SAVED_ROWS = 200_000
# Redraw intervals of the live view (seconds) by how many runs the server trains at once, all
# sessions together. The progress line and the numbers (cheap to draw) always redraw twice a
# second. The charts and images (the costly part, on the server and in each browser) redraw twice
# a second too while at most two runs train, then less often, so ten sessions on two cores keep up
# (bench/bench_load.py; the page also jitters each session's chart interval by up to 20 %, so that
# the sessions' chart redraws do not coincide).
STATUS_INTERVAL = 0.5
# Seconds a live redraw waits for a step its page has not shown yet, before it draws (without the GIL, and
# without the trainers giving way: BackgroundRunner.wait_for_unshown_step), so that a redraw that came just
# before a step does not leave its view still for a whole interval (docs/performance.md).
NEW_STEP_WAIT = 0.2
CHART_INTERVALS = ((0, 0.5), (3, 1.0), (5, 2.0), (9, 5.0))  # (fewest runs, seconds between chart redraws)
STATE_LABELS = {"ready": "ready", "training": "training", "paused": "paused", "done": "finished",
                "stopped": "stopped early", "diverged": "diverged", "error": "failed", "loaded": "loaded checkpoint"}


# ---- configuration -----------------------------------------------------------------------

def live_intervals(live_runs: int) -> tuple[float, float]:
    """(status, charts) redraw intervals in seconds when ``live_runs`` runs train on this server
    (see ``STATUS_INTERVAL`` and ``CHART_INTERVALS``)."""
    return STATUS_INTERVAL, max(c for fewest, c in CHART_INTERVALS if live_runs >= fewest)


def parse_hidden(text: str) -> tuple[int, ...]:
    """Hidden layer widths from text such as ``"256,128"`` (encoder order; the decoder mirrors
    them). Raises ValueError saying what is wrong."""
    s = str(text).strip().replace(";", ",").replace(" ", ",")
    parts = [p for p in s.split(",") if p]
    if not parts:
        raise ValueError("Hidden sizes are empty. Write one to four widths separated by commas, e.g. 256,128.")
    if len(parts) > MAX_LAYERS:
        raise ValueError(f"{len(parts)} hidden layers is too many: at most {MAX_LAYERS}, e.g. 256,128.")
    out = []
    for p in parts:
        if not p.isdigit():
            shown = "".join(ch for ch in p[:12] if ch.isalnum() or ch in " .-+")  # never echo markup
            raise ValueError(f"Hidden size '{shown}' is not a whole number. Write widths such as 256,128.")
        v = int(p)
        if not 2 <= v <= MAX_HIDDEN:
            raise ValueError(f"Hidden width {v} is out of range: each must be between 2 and {MAX_HIDDEN}.")
        out.append(v)
    return tuple(out)


def snapshot_every(n_train: int, batch_size: int, epochs: int, target: int = TIMELINE_TARGET) -> int:
    """Steps between timeline snapshots so that a run records about ``target`` of them, but at least
    one every ``MAX_EVAL_GAP`` steps: a long run stopped after a minute still has a timeline to replay
    (the timeline thins a long run's snapshots to ``core.figures.training.MAX_TIMELINE_FRAMES``)."""
    total = math.ceil(n_train / batch_size) * epochs
    return max(5, min(MAX_EVAL_GAP, math.ceil(total / target)))


def make_configs(dataset: Dataset, kind: str, latent_dim: int, hidden: Sequence[int], likelihood: str,
                 lr: float, batch_size: int, epochs: int, seed: int, beta: float,
                 warmup_steps: int = 0, free_bits: float = 0.0) -> tuple[ModelConfig, TrainConfig]:
    """Validated model and training configs for ``dataset``. Raises ValueError (a clear message)."""
    lo, hi = LATENT_RANGE
    if not lo <= int(latent_dim) <= hi:
        raise ValueError(f"Latent dimension must be between {lo} and {hi}, got {latent_dim}.")
    if not 1 <= int(epochs) <= MAX_EPOCHS:
        raise ValueError(f"Epochs must be between 1 and {MAX_EPOCHS}, got {epochs}.")
    mc = ModelConfig(kind=kind, input_dim=dataset.dim, hidden_dims=tuple(hidden), latent_dim=int(latent_dim),
                     likelihood=likelihood)
    n_train = len(train_val_split(dataset.n, 0.1, int(seed))[0])
    tc = TrainConfig(lr=float(lr), batch_size=int(batch_size), epochs=int(epochs), seed=int(seed),
                     beta=0.0 if kind == "ae" else float(beta), warmup_steps=int(warmup_steps),
                     free_bits=float(free_bits) if kind == "vae" else 0.0,
                     snapshot_every=snapshot_every(n_train, int(batch_size), int(epochs)),
                     eval_every=eval_every(n_train, int(batch_size), int(epochs)), snapshot_points=SNAPSHOT_POINTS)
    return mc, tc


def eval_every(n_train: int, batch_size: int, epochs: int) -> int:
    """Steps between held-out evaluations: about ``EVALS_PER_RUN`` per run, but at least 50 and at
    most ``MAX_EVAL_GAP``."""
    total = math.ceil(n_train / batch_size) * epochs
    return max(50, min(MAX_EVAL_GAP, math.ceil(total / EVALS_PER_RUN)))


#: Epochs of each run of a β sweep (at most the configuration's): four runs one after another, each
#: about as long as the old 10-second default, so the comparison is ready within a minute or two.
SWEEP_EPOCHS = {"mnist-5k": 15, "digits": 40}


def sweep_config(dataset: Dataset, tc: TrainConfig) -> TrainConfig:
    """``tc`` for each run of a β sweep: at most ``SWEEP_EPOCHS`` epochs, with its snapshot and
    evaluation intervals recomputed for that length."""
    epochs = min(tc.epochs, SWEEP_EPOCHS.get(dataset.name, tc.epochs))
    n_train = len(train_val_split(dataset.n, tc.val_fraction, tc.seed)[0])
    return replace(tc, epochs=epochs, snapshot_every=snapshot_every(n_train, tc.batch_size, epochs),
                   eval_every=eval_every(n_train, tc.batch_size, epochs))


def total_steps(dataset: Dataset, tc: TrainConfig) -> int:
    """Optimiser steps a run of ``tc`` takes on ``dataset``: ceil(n_train / batch) * epochs."""
    n_train = len(train_val_split(dataset.n, tc.val_fraction, tc.seed)[0])
    return math.ceil(n_train / tc.batch_size) * tc.epochs


def safe_label(text, limit: int = 24) -> str:
    """A user-supplied name (e.g. an upload's file name) reduced to letters, digits and ``._-``
    and truncated, so it can appear in run names, legends and file names."""
    s = "".join(ch for ch in str(text) if ch.isalnum() or ch in "._- ").strip()
    return (s[:limit - 1] + "…" if len(s) > limit else s) or "upload"


def safe_name(text, limit: int = 80) -> str:
    """A run name read back from disk, reduced to the characters the app's own names use (letters,
    digits, spaces and ``#.=,_-β``), so a tampered file cannot put markup on the page."""
    s = "".join(ch for ch in str(text) if ch.isalnum() or ch in " #.=,_-β")
    return s.strip()[:limit] or "run"


def describe(mc: ModelConfig, beta: float | None = None) -> str:
    """Short label, e.g. ``"VAE β=1 z=16"``."""
    if mc.kind == "ae":
        return f"AE z={mc.latent_dim}"
    return f"VAE β={beta:g} z={mc.latent_dim}" if beta is not None else f"VAE z={mc.latent_dim}"


# ---- one run -------------------------------------------------------------------------------------

@dataclass(eq=False)
class Run:
    """One model of the session: trained here (``trainer``/``runner``) or loaded (``loaded``).

    ``final``: held-out terms (``core.training.evaluate_model``) once the run has finished.
    ``val_idx``: dataset indices of its held-out images (for a checkpoint without its split,
    every image, and ``split_known`` is False).
    """

    name: str
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    dataset: Dataset
    trainer: Trainer | None = None
    runner: BackgroundRunner | None = None
    source: str = "trained"  # "trained" or "checkpoint"
    parent: str | None = None
    sweep: bool = False
    stopped: bool = False
    final: dict | None = None
    loaded: AutoEncoder | None = None
    saved: dict = field(default_factory=dict)
    val_idx: np.ndarray | None = None
    split_known: bool = True
    created: float = field(default_factory=time.time)
    cache: dict = field(default_factory=dict)

    # -- what the page reads --
    @property
    def model(self) -> AutoEncoder:
        return self.trainer.model if self.trainer is not None else self.loaded

    @property
    def state(self) -> str:
        """ready, training, paused, done, stopped, diverged, error or loaded."""
        if self.trainer is None:
            return "loaded"
        if self.runner is not None and self.runner.error:
            return "error"
        if self.trainer.status == "diverged":
            return "diverged"
        if self.trainer.status == "done":
            return "stopped" if self.stopped else "done"
        if self.runner is not None and self.runner.wanted:
            return "training"
        return "ready" if self.trainer.step == 0 else "paused"

    @property
    def finished(self) -> bool:
        return self.state in ("done", "stopped", "diverged", "error", "loaded")

    @property
    def message(self) -> str:
        if self.runner is not None and self.runner.error:
            return f"Training failed: {self.runner.error}"
        return self.trainer.message if self.trainer is not None else ""

    @property
    def history(self) -> list[dict]:
        return list(self.trainer.history) if self.trainer is not None else list(self.saved.get("history", []))

    @property
    def eval_history(self) -> list[dict]:
        return list(self.trainer.eval_history) if self.trainer is not None else list(self.saved.get("eval_history", []))

    @property
    def beta_changes(self) -> list[tuple[int, float]]:
        if self.trainer is not None:
            return list(self.trainer.beta_changes)
        return list(self.saved.get("beta_changes", [(0, self.train_cfg.beta)]))

    @property
    def snapshots(self) -> list[dict]:
        return list(self.trainer.snapshots) if self.trainer is not None else []

    @property
    def step(self) -> int:
        if self.trainer is not None:
            return self.trainer.step
        h = self.saved.get("history") or []
        return int(h[-1]["step"]) if h else 0

    @property
    def beta(self) -> float:
        """The beta set now (the last change)."""
        if self.trainer is not None:
            return float(self.trainer.beta)
        return float(self.beta_changes[-1][1])

    @property
    def is_vae(self) -> bool:
        return self.model_cfg.kind == "vae"

    @property
    def label(self) -> str:
        return f"{self.name} ({STATE_LABELS[self.state]})"

    def val_x(self) -> np.ndarray:
        return self.dataset.x[self.val_idx]

    def val_y(self) -> np.ndarray:
        return self.dataset.y[self.val_idx]

    def fixed_inputs(self, n: int = 8) -> np.ndarray:
        """The first ``n`` held-out images: the fixed inputs of the live reconstructions, (n, D)."""
        return self.val_x()[:n]

    def snapshot_labels(self) -> np.ndarray:
        """Labels (P,) of the points in every snapshot's ``latents``."""
        return self.val_y()[self.trainer.snap_idx]

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        if self.trainer is not None:
            return self.trainer.reconstruct(x)
        return reconstruct(self.loaded, x)

    def sample_prior(self, n: int, seed: int = 0) -> np.ndarray:
        """Decode n codes from N(0, I): with the weights the training thread last published while
        the run trains (no waiting for its lock), else with the model itself."""
        if self.trainer is not None:
            if self.state == "training":
                return self.trainer.sample_prior_live(n, seed)
            return self.trainer.sample_prior(n, seed)
        return sample_prior(self.loaded, n, seed)

    def latest_kl_per_dim(self) -> list[float] | None:
        """Per-dimension KL (K,) of the latest held-out evaluation, else of the latest batch."""
        ev = self.eval_history
        if ev and ev[-1].get("kl_per_dim") is not None:
            return list(ev[-1]["kl_per_dim"])
        h = self.history
        return list(h[-1]["kl_per_dim"]) if h and h[-1].get("kl_per_dim") is not None else None

    def latest_kl_activity(self) -> tuple[list[float], list[bool] | None] | None:
        """(KL per dimension (K,), active mask (K,) or None) from the latest held-out evaluation: the
        mask is Burda et al.'s criterion (Var_x(mu_j) > 0.01, ``core.units``) on the same images. Before
        the first evaluation: the latest batch's KL and None (not measured yet). None before any step."""
        ev = self.eval_history
        if ev and ev[-1].get("kl_per_dim") is not None:
            act = ev[-1].get("active")
            k = len(ev[-1]["kl_per_dim"])
            return list(ev[-1]["kl_per_dim"]), (list(map(bool, act)) if act is not None and len(act) == k else None)
        kl = self.latest_kl_per_dim()
        return (kl, None) if kl is not None else None

    def finalize(self) -> None:
        """Held-out evaluation of a finished run, then free what it no longer needs."""
        if self.final is not None or not self.finished:
            return
        model = self.model
        if self.trainer is not None:
            with self.trainer.lock:
                self.final = evaluate_model(model, self.val_x(), self.beta, self.model_cfg.likelihood,
                                            seed=self.train_cfg.seed)
            self.trainer.release_training_data()
        else:
            self.final = evaluate_model(model, self.val_x(), self.beta, self.model_cfg.likelihood,
                                        seed=self.train_cfg.seed)
        self.final["step"] = self.step

    def shared_model(self) -> AutoEncoder:
        """A frozen copy of the model (eval mode, no gradients) for other pages to read."""
        if "shared" not in self.cache:
            if self.trainer is not None:
                with self.trainer.lock:
                    self.cache["shared"] = frozen_copy(self.model)
            else:
                self.cache["shared"] = frozen_copy(self.model)
        return self.cache["shared"]


# ---- the store ---------------------------------------------------------------------------------

class ReadOnlyError(PermissionError):
    """A change asked of a store opened from a read-only (view) link."""


#: Shown by a session whose runs are being trained by another session with the same link.
LEASE_NOTICE = ("This run is being trained in another tab or window; here it is shown as last saved. Close the "
                "other tab to steer it here. (Just reloaded the page? The run comes back here within a few "
                "seconds, once the old page has let go of it.)")


class LeaseHeldError(ReadOnlyError, ValueError):
    """A change asked of a session whose link's runs another session (tab, window) is training now.
    A ValueError too, so the page's handlers of bad input show its message."""


class RunStore:
    """All runs of one session, the active (live) one and the beta-sweep queue.

    Persistence (``core.persist``): after :meth:`attach` the store saves each run on built-in data
    under ``<run dir>/<owner>/`` as it trains (every ``persist.SAVE_INTERVAL_S`` seconds, from the
    training thread) and at every change of state (pause, stop, finish, β set while paused, a loaded
    checkpoint), and deletes it from disk when it is removed. ``attach`` also brings back the
    owner's saved runs. ``read_only`` (a view link): the runs can be looked at, compared and
    downloaded; every change raises :class:`ReadOnlyError` and nothing is written.

    One writer per link (``persist`` lease): a store that attaches while another session (a second
    tab, maybe on another replica) trains the same link's runs is a *follower*: read-only, with
    :data:`LEASE_NOTICE`, until that lease is free; then it reloads the runs from disk and takes
    over. A store whose lease was taken (it sat idle while another tab took the runs) reloads them
    from disk before its next change. A β sweep's queue is saved with the runs and comes back.
    """

    def __init__(self, max_runs: int = MAX_RUNS, lease_seconds: float = 3.0, read_only: bool = False,
                 saver: P.Saver | None = None):
        self.runs: dict[str, Run] = {}
        self.active_name: str | None = None
        self.queue: list[tuple[str, ModelConfig, TrainConfig, Dataset]] = []
        self.counter = 0
        self.max_runs = max_runs
        self.lease_seconds = lease_seconds
        self.notices: list[str] = []
        self.view = read_only  # opened from a view link
        self.follower = False  # another session holds this link's lease: read-only until it is free
        self.lease_lost = False  # another session took the lease from this one (reload before changing)
        self.token = secrets.token_urlsafe(16)  # this session's name in the lease
        self._lease_lock = threading.Lock()
        self._lease_at = 0.0  # (monotonic) last renewal or check of the lease
        self._lease_busy: bool | None = None  # the "busy" last written
        self.owner: str | None = None
        self.root: Path | None = None
        self.saving_off: str | None = None  # why saving stopped (a full disk), shown on the page
        self.saver = saver or P.SAVER
        self._folders: dict[str, Path] = {}
        self._last_save: dict[str, float] = {}
        self._columns: dict[str, P.ColumnCache] = {}  # per run, used by the writer thread only
        self._unsaved_noted = False

    # -- persistence --
    @property
    def read_only(self) -> bool:
        """Nothing can be changed: a view link, or a follower of another session's lease."""
        return self.view or self.follower

    @property
    def lease_notice(self) -> str | None:
        """Why the runs are read-only when it is not a view link (:data:`LEASE_NOTICE`), else None."""
        return LEASE_NOTICE if self.follower else None

    @property
    def persisting(self) -> bool:
        return (self.owner is not None and not self.read_only and self.saving_off is None
                and not self.lease_lost)

    def _busy(self) -> bool:
        """Training now, or between two runs of a β sweep (the lease is then not free for another tab)."""
        run = self.active
        return (any(r.state == "training" for r in list(self.runs.values()))
                or bool(self.queue and run is not None and run.finished))

    def _renew(self, beat: bool = True, verify: bool = False, later: bool = False) -> bool:
        """Keep this session's lease: write the heartbeat (at most every ``LEASE_RENEW_S``, ``beat``)
        or when the busy flag changed; ``verify``: check it is still ours even when nothing is
        written. Returns False (and marks the lease lost, pausing the runs) if another session took it.
        ``later`` (a redraw's ``tick``): the lease thread (``persist.LEASE_WRITER``) writes it, so a
        redraw never waits for the disk; a takeover it finds is returned by the next call."""
        if self.lease_lost:
            return False
        if self.owner is None or self.view or self.follower or self.saving_off is not None:
            return True
        with self._lease_lock:
            busy, now = self._busy(), time.monotonic()
            if busy == self._lease_busy and (not beat or now - self._lease_at < P.LEASE_RENEW_S):
                if not verify or P.holds_lease(self.owner, self.token, self.root):
                    return True
                ok = False
            elif later:
                self._lease_at, self._lease_busy = now, busy  # (due again in LEASE_RENEW_S, whatever the outcome)
                owner, token, root = self.owner, self.token, self.root

                def write() -> None:
                    try:
                        ok = P.renew_lease(owner, token, busy, root)
                    except OSError:
                        return  # the folder cannot be written: saving reports it
                    if ok is False and self.owner == owner and self.token == token:
                        self._lose_lease()
                P.LEASE_WRITER.submit(P.owner_dir(owner, root), write)
                return True
            else:
                try:
                    ok = P.renew_lease(self.owner, self.token, busy, self.root)
                except OSError:
                    return True  # the folder cannot be written: saving reports it
                if ok is None:
                    return True  # its lock is busy: next time
                if ok:
                    self._lease_at, self._lease_busy = now, busy
                    return True
        self._lose_lease()
        return False

    def _lose_lease(self) -> None:
        self.lease_lost = True
        for r in list(self.runs.values()):
            if r.runner is not None:
                r.runner.pause()

    def check_lease(self) -> None:
        """Called on every script run (``session_store``): the holder renews its lease; a store whose
        lease was taken, or a follower whose lease became free, reloads its runs from disk (and takes
        the lease if it is free)."""
        if self.view or self.owner is None or self.saving_off is not None:
            return
        if self.follower:
            if P.lease_free(P.read_lease(self.owner, self.root)):
                self.reload()
        elif not self._renew(verify=True):
            self.reload()

    def reload(self) -> list[str]:
        """Forget the runs in memory and bring them back from disk (another session may have changed
        them), taking the lease if it is free (else a follower). Runs that are not saved (uploaded
        data) stay. Returns messages about runs that could not be restored (also in the notices)."""
        self.saver.flush(2.0)  # this store's own saves still queued (refused if the lease is not ours)
        self.shutdown()
        keep = {n: r for n, r in self.runs.items() if not self.persistable(r)}
        self.runs, self.active_name, self.queue, self.counter = {}, None, [], 0
        self._folders, self._last_save, self._columns = {}, {}, {}
        self.follower = self.lease_lost = False
        self._lease_busy = None
        errors = self.attach(self.owner, self.root)
        self.notices.extend(errors)
        for n, r in keep.items():
            self.runs.setdefault(n, r)
        return errors

    def attach(self, owner: str, root: Path | None = None) -> list[str]:
        """Save this store's runs under ``owner`` from now on, and bring back the runs saved there
        (finished ones as they were, an unfinished one paused at its last save). Returns one message
        per run that could not be restored (the others are). Raises ``persist.PersistError`` for a
        malformed owner id."""
        P.check_id(owner)
        self.owner, self.root = owner, root or P.run_dir()
        if not self.view:
            try:
                P.register_owner(owner, self.root)
            except OSError as exc:
                self._saving_failed(exc)
            if self.saving_off is None:
                try:
                    got = P.take_lease(owner, self.token, False, self.root)
                except OSError:
                    got = True  # cannot write the folder: nothing will be saved, nothing to guard
                self.follower = not got
                self._lease_at, self._lease_busy = time.monotonic(), (False if got else None)
                while LEASE_NOTICE in self.notices:  # (said while it waited; removed in place: the
                    try:                              # writer thread may add a notice meanwhile)
                        self.notices.remove(LEASE_NOTICE)
                    except ValueError:
                        break
                if self.follower:
                    self.notices.append(LEASE_NOTICE)
        errors = []
        loaded = []
        for folder in P.run_folders(owner, self.root):
            try:
                run, info = self._restore(folder)
            except P.PersistError as exc:
                errors.append(f"The saved run in folder `{folder.name}` could not be restored: {exc}. "
                              "The other runs were restored; this one is ignored.")
                continue
            except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
                errors.append(f"The saved run in folder `{folder.name}` could not be restored ({type(exc).__name__}). "
                              "The other runs were restored; this one is ignored.")
                continue
            loaded.append((float(info.get("created", 0.0)), run, info, folder))
        loaded.sort(key=lambda t: t[0])
        active = None
        for _, run, info, folder in loaded:
            if run.name in self.runs:
                continue
            self.runs[run.name] = run
            self._folders[run.name] = folder
            m = re.match(r"#(\d+) ", run.name)
            if m:
                self.counter = max(self.counter, int(m.group(1)))
            if info.get("active"):
                active = run.name
            if run.trainer is not None and not run.finished and not self.read_only:
                self._hook(run)
        if active is None and self.runs:
            active = next(reversed(self.runs))
        self.active_name = active
        errors += self._restore_queue()
        if not self.read_only:
            self._enforce_cap()
            evicted = P.pop_evicted(owner, self.root)
            if evicted:
                self.notices.append("To keep the server's disk within its limit, your oldest finished runs were "
                                    "removed: " + ", ".join(evicted[:8]) + ".")
        return errors

    def _restore_queue(self) -> list[str]:
        """Bring back a β sweep's queued runs (``queue.json``), each checked like a run's configs."""
        try:
            items = P.read_queue(self.owner, self.root)
        except P.PersistError as exc:
            return [f"The β sweep's queued runs could not be restored: {exc}. The runs themselves were restored."]
        queue = []
        for item in items:
            try:
                name, ds_name = safe_name(item["name"]), item["dataset"]
                if ds_name not in DATASETS:
                    raise ValueError(f"unknown dataset {str(ds_name)[:20]!r}")
                ds = load_dataset(ds_name)
                mc, tc = ModelConfig.from_dict(item["model_cfg"]), TrainConfig.from_dict(item["train_cfg"])
                if mc.input_dim != ds.dim or mc.kind != "vae":
                    raise ValueError("its model does not fit its dataset")
            except (KeyError, TypeError, ValueError) as exc:
                return [f"The β sweep's queued runs could not be restored ({str(exc)[:80]}). The runs themselves "
                        "were restored; start the sweep again to train the rest."]
            if name not in self.runs and name not in (q[0] for q in queue):
                queue.append((name, mc, tc, ds))
        for name, *_ in queue:
            m = re.match(r"#(\d+) ", name)
            if m:
                self.counter = max(self.counter, int(m.group(1)))
        self.queue = queue
        return []

    def _save_queue(self) -> None:
        """Save the β sweep's queue beside the runs (the writer thread writes it, if the lease is ours)."""
        if not self.persisting:
            return
        items = [{"name": n, "dataset": ds.name, "model_cfg": mc.to_dict(), "train_cfg": tc.to_dict()}
                 for n, mc, tc, ds in self.queue]
        if any(ds.name not in DATASETS or ds is not load_dataset(ds.name) for *_, ds in self.queue):
            items = []  # a sweep on uploaded data is not saved (nor are its runs)
        path = P.owner_dir(self.owner, self.root) / P.QUEUE

        def job() -> None:
            if self.saving_off is not None or not self._lease_ours():
                return
            try:
                P.write_queue(self.owner, items, self.root)
            except OSError as exc:
                self._saving_failed(exc)
        self.saver.submit(path, job)

    def _lease_ours(self) -> bool:
        """In the writer thread, before each write: the lease is still this session's (else nothing is
        written, and the store reloads before its next change)."""
        try:
            if P.holds_lease(self.owner, self.token, self.root):
                return True
        except P.PersistError:
            pass
        self._lose_lease()
        return False

    def _restore(self, folder: Path) -> tuple[Run, dict]:
        meta = P.read_meta(folder)
        payload = P.read_payload(folder, meta)
        info = payload.get("run")
        if not isinstance(info, dict) or not isinstance(info.get("name"), str):
            raise P.PersistError("its file has no run description")
        if info.get("dataset") not in DATASETS:
            raise P.PersistError(f"it was trained on an unknown dataset {str(info.get('dataset'))[:20]!r}")
        ds = load_dataset(info["dataset"])
        try:
            mc = ModelConfig.from_dict(payload.get("model_cfg") or {})
            tc = TrainConfig.from_dict(payload.get("train_cfg") or {})
        except (TypeError, ValueError) as exc:
            raise P.PersistError(f"its configuration is invalid ({exc})") from None
        if mc.input_dim != ds.dim:
            raise P.PersistError(f"its model reads {mc.input_dim} pixels, {ds.name} has {ds.dim}")
        name = safe_name(info["name"])
        final = info.get("final") if isinstance(info.get("final"), dict) else None
        if info.get("source") == "checkpoint":
            model = build_model(mc)
            P.check_weights(payload.get("weights"), model)
            model.load_state_dict(payload["weights"])
            val_idx = payload.get("val_idx")
            if not (torch.is_tensor(val_idx) and val_idx.dtype == torch.int64 and len(val_idx) > 0
                    and int(val_idx.min()) >= 0 and int(val_idx.max()) < ds.n):
                raise P.PersistError("its held-out images are malformed")
            saved = payload.get("saved") if isinstance(payload.get("saved"), dict) else {}
            saved = {"history": clean_rows(saved.get("history")), "eval_history": clean_rows(saved.get("eval_history")),
                     "beta_changes": _clean_beta_changes(saved.get("beta_changes"), tc.beta)}
            run = Run(name, mc, tc, ds, source="checkpoint", loaded=model.eval(), saved=saved,
                      val_idx=val_idx.numpy(), split_known=bool(info.get("split_known")), final=final,
                      created=float(info.get("created", time.time())))
            if run.final is None:
                run.finalize()
            return run, info
        trainer = P.SavingTrainer(mc, tc, ds)
        P.load_trainer_state(trainer, P.decode_state(payload))
        runner = BackgroundRunner(trainer, lease_seconds=self.lease_seconds)
        if isinstance(info.get("error"), str) and info["error"]:
            runner.error = info["error"][:500]
        parent = info.get("parent") if isinstance(info.get("parent"), str) else None
        run = Run(name, mc, tc, ds, trainer, runner, parent=parent, sweep=bool(info.get("sweep")),
                  stopped=bool(info.get("stopped")), final=final, val_idx=trainer.val_idx,
                  created=float(info.get("created", time.time())))
        if run.finished:
            if run.final is None:
                run.finalize()
            else:
                trainer.release_training_data()
        return run, info

    def persistable(self, run: Run) -> bool:
        """Runs on a built-in dataset are saved; a run on an uploaded dataset is not (the upload is
        not kept on the server), so it lasts as long as the session."""
        name = run.dataset.name
        return name in DATASETS and run.dataset is load_dataset(name)

    def _folder(self, run: Run) -> Path:
        folder = self._folders.get(run.name)
        if folder is None:
            base = P.slug(run.name)
            used = set(self._folders.values())
            folder, i = P.owner_dir(self.owner, self.root) / base, 2
            while folder in used:
                folder, i = P.owner_dir(self.owner, self.root) / f"{base}-{i}", i + 1
            self._folders[run.name] = folder
        return folder

    def _info(self, run: Run) -> dict:
        return {"name": run.name, "source": run.source, "parent": run.parent, "sweep": run.sweep,
                "stopped": run.stopped, "final": run.final, "created": run.created, "dataset": run.dataset.name,
                "state": run.state, "active": run.name == self.active_name,
                "error": run.runner.error if run.runner is not None else None, "split_known": run.split_known}

    def save(self, run: Run) -> bool:
        """Queue a save of ``run`` (its state is copied now, under the trainer's lock; the writer
        thread encodes and writes it). Returns False if the run is not saved (no owner, a read-only
        store, saving stopped, or a run on uploaded data)."""
        if not self.persisting or run.name not in self.runs:
            return False
        if not self.persistable(run):
            if not self._unsaved_noted:
                self._unsaved_noted = True
                self.notices.append("Runs on an uploaded dataset are kept for this session only: the upload is not "
                                    "stored on the server, so they do not come back after a reload.")
            return False
        self._last_save[run.name] = time.monotonic()
        self._renew(beat=False)  # (the lease says when this session stops training)
        if run.trainer is not None:
            payload = P.trainer_state(run.trainer)
        else:
            payload = {"weights": {k: v.detach().clone() for k, v in run.model.state_dict().items()},
                       "model_cfg": run.model_cfg.to_dict(), "train_cfg": run.train_cfg.to_dict(),
                       "val_idx": torch.as_tensor(np.asarray(run.val_idx), dtype=torch.int64),
                       "saved": {"history": _compact(run.history), "eval_history": _compact(run.eval_history),
                                 "beta_changes": [list(c) for c in run.beta_changes]}}
        info = self._info(run)
        folder = self._folder(run)
        meta = {"name": run.name, "dataset": run.dataset.name, "state": info["state"], "step": run.step,
                "finished": run.finished, "created": run.created, "model": run.model_cfg.to_dict()}
        self.saver.submit(folder, lambda: self._write(run, payload, info, meta, folder))
        return True

    def _write(self, run: Run, state: dict, info: dict, meta: dict, folder: Path) -> None:
        """In the writer thread: encode and write one run, then keep the run dir within its cap."""
        if self.saving_off is not None or self.runs.get(run.name) is not run:
            return  # saving stopped, or the run was removed after this save was queued
        if not self._lease_ours():
            return  # another tab took this link's runs: it writes them now
        try:
            cache = self._columns.setdefault(run.name, P.ColumnCache())
            payload = P.encode_state(state, cache) if "history" in state else dict(state)
            payload.update(format=P.FORMAT, run=info)
            P.write_run(folder, payload, meta)
            evicted = P.enforce_total_cap(self.root, keep={folder})
        except OSError as exc:
            self._saving_failed(exc)
            return
        for owner, name, _ in evicted:
            if owner == self.owner:
                self.notices.append(f"To keep the server's disk within its limit ({P.max_bytes() >> 20} MB), the "
                                    f"saved copy of your oldest finished run {name} was deleted: it stays here "
                                    "until you leave, but will not come back after a reload.")

    def _saving_failed(self, exc: OSError) -> None:
        """Stop saving (a full disk, a folder that cannot be written), with a message for the page."""
        why = ("the server's disk is full" if P.is_disk_full(exc)
               else f"the run folder cannot be written ({exc.strerror or type(exc).__name__})")
        self.saving_off = (f"Your runs are no longer saved: {why}. Training goes on, but a reload or a "
                           "restart of the server now loses the runs' progress since their last save.")
        self.notices.append(self.saving_off)

    def _hook(self, run: Run) -> None:
        """Save ``run`` every ``SAVE_INTERVAL_S`` seconds while it trains, from the training thread."""
        trainer = run.trainer
        if not isinstance(trainer, P.SavingTrainer):
            return

        def on_progress() -> None:
            if trainer.finished or time.monotonic() - self._last_save.get(run.name, 0.0) >= P.SAVE_INTERVAL_S:
                self.save(run)
        self._last_save.setdefault(run.name, time.monotonic())
        trainer.on_progress = on_progress

    def _delete_saved(self, name: str) -> None:
        folder = self._folders.pop(name, None)
        self._last_save.pop(name, None)
        self._columns.pop(name, None)
        if folder is not None and self.owner is not None and not self.read_only:
            def job() -> None:
                if self._lease_ours():
                    P.delete_folder(folder)
            self.saver.submit(folder, job)

    def _writable(self) -> None:
        """Raise ReadOnlyError in a view; else make sure this session holds the link's lease (a store
        whose lease was taken reloads the runs from disk first, and takes the lease back if it is free),
        raising LeaseHeldError if another session trains the runs now."""
        if self.view:
            raise ReadOnlyError("These runs were opened from a view link: they can be looked at, not changed.")
        if self.owner is None or self.saving_off is not None:
            return
        if self.follower or not self._renew(verify=True):
            self.reload()
            if self.follower:
                raise LeaseHeldError(LEASE_NOTICE)

    def _may_change(self) -> bool:
        """:meth:`_writable` for the changes the page calls as button callbacks: a follower's change is
        dropped (the page shows the notice) instead of raising."""
        try:
            self._writable()
        except LeaseHeldError:
            return False
        return True

    # -- reading --
    @property
    def active(self) -> Run | None:
        return self.runs.get(self.active_name) if self.active_name else None

    @property
    def polling(self) -> bool:
        """True while the page should redraw on a timer: a run is training or a sweep continues (or,
        for a follower, to notice when the other session lets go of the runs)."""
        if self.follower:
            return True
        run = self.active
        return run is not None and (run.state == "training" or (run.finished and bool(self.queue)))

    @property
    def sweeping(self) -> bool:
        run = self.active
        return bool(self.queue) or (run is not None and run.sweep and not run.finished)

    def finished_runs(self) -> list[Run]:
        return [r for r in self.runs.values() if r.finished]

    def pop_notices(self) -> list[str]:
        """The notices not yet shown, oldest first (the writer thread may add one meanwhile: none is lost)."""
        out = []
        while self.notices:
            out.append(self.notices.pop(0))
        return out

    # -- lifecycle --
    def _name(self, label: str) -> str:
        self.counter += 1
        return f"#{self.counter} {label}"

    def _add(self, run: Run) -> Run:
        self.runs[run.name] = run
        self._enforce_cap()
        return run

    def _enforce_cap(self) -> None:
        while len(self.runs) > self.max_runs:
            old = next((n for n, r in self.runs.items() if r.finished and n != self.active_name), None)
            if old is None:
                return
            del self.runs[old]
            self._delete_saved(old)
            self.notices.append(f"Only the last {self.max_runs} runs are kept: {old} was removed.")

    def create(self, model_cfg: ModelConfig, train_cfg: TrainConfig, dataset: Dataset, name: str | None = None,
               state_dict: dict | None = None, parent: str | None = None, sweep: bool = False,
               start: bool = True) -> Run:
        """A new run; it becomes the active one and (``start``) starts training in the background.
        An unfinished active run is stopped first. Raises ValueError for a config that does not fit."""
        self._writable()
        trainer = P.SavingTrainer(model_cfg, train_cfg, dataset, state_dict=state_dict)
        self._stop_active("Stopped because a new run was started.")
        # Not named after its β: β can change during the run (the table lists the values it took).
        run = Run(name or self._name(describe(model_cfg)), model_cfg, train_cfg, dataset, trainer,
                  BackgroundRunner(trainer, lease_seconds=self.lease_seconds), parent=parent, sweep=sweep,
                  val_idx=trainer.val_idx)
        self._add(run)
        self.active_name = run.name
        self._hook(run)
        if start:
            run.runner.start()
        self.save(run)
        return run

    def start_sweep(self, model_cfg: ModelConfig, train_cfg: TrainConfig, dataset: Dataset,
                    betas: Sequence[float] = SWEEP_BETAS) -> Run:
        """Train one run per beta, same seed and settings, one after another (the first starts now)."""
        self._writable()
        if model_cfg.kind != "vae":
            raise ValueError("The β sweep needs a VAE: an autoencoder has no KL term for β to weigh. "
                             "Set the model kind to VAE.")
        if len(betas) < 2:
            raise ValueError("A sweep needs at least two values of β.")
        self.queue = []
        first, *rest = [float(b) for b in betas]
        run = self.create(model_cfg, replace(train_cfg, beta=first), dataset,
                          name=self._name(f"sweep {describe(model_cfg, first)}"), sweep=True)
        self.queue = [(self._name(f"sweep {describe(model_cfg, b)}"), model_cfg, replace(train_cfg, beta=b), dataset)
                      for b in rest]
        self._save_queue()
        return run

    def continue_from(self, name: str, train_cfg: TrainConfig, start: bool = True) -> Run:
        """A new run that starts from the weights of run ``name`` (same model and data; fresh
        optimiser state; the training settings of ``train_cfg``)."""
        self._writable()
        if name not in self.runs:
            raise ValueError(f"The run {name} is no longer here (deleted in another tab?).")
        src = self.runs[name]
        state = {k: v.detach().clone() for k, v in src.model.state_dict().items()}
        tc = train_cfg if src.model_cfg.kind == "vae" else replace(train_cfg, beta=0.0, free_bits=0.0)
        n_train = len(train_val_split(src.dataset.n, tc.val_fraction, tc.seed)[0])
        tc = replace(tc, snapshot_every=snapshot_every(n_train, tc.batch_size, tc.epochs),
                     eval_every=eval_every(n_train, tc.batch_size, tc.epochs), snapshot_points=SNAPSHOT_POINTS)
        label = f"from {name.split(' ', 1)[0]} {describe(src.model_cfg)}"
        return self.create(src.model_cfg, tc, src.dataset, name=self._name(label), state_dict=state, parent=name,
                           start=start)

    def add_checkpoint(self, ckpt: Checkpoint, dataset: Dataset, label: str) -> Run:
        """Keep a loaded checkpoint as a finished run (to compare, export, explore or continue).

        Its held-out split is rebuilt from the checkpoint's training config when it was
        trained on this very dataset; otherwise it is evaluated on every image.
        """
        self._writable()
        if ckpt.config.input_dim != dataset.dim:
            raise ValueError(f"The checkpoint expects images of {ckpt.config.input_dim} pixels, but "
                             f"{dataset.name} has {dataset.dim}.")
        extra = ckpt.extra if isinstance(ckpt.extra, dict) else {}
        tc, split_known = _train_config_from(extra.get("train_config")), False
        if tc is not None and extra.get("dataset") == dataset.name:
            val_idx, split_known = train_val_split(dataset.n, tc.val_fraction, tc.seed)[1], True
        else:
            val_idx = np.arange(dataset.n)
        tc = tc or TrainConfig()
        saved = {"history": clean_rows(extra.get("history")), "eval_history": clean_rows(extra.get("eval_history")),
                 "beta_changes": _clean_beta_changes(extra.get("beta_changes"), tc.beta)}
        model = ckpt.model.eval()
        run = Run(self._name(f"checkpoint {safe_label(label)}"), ckpt.config, tc, dataset, source="checkpoint",
                  loaded=model,
                  saved=saved, val_idx=val_idx, split_known=split_known)
        self._add(run)
        run.finalize()
        self.save(run)
        return run

    def _stop_active(self, message: str) -> None:
        run = self.active
        if run is not None and not run.finished:
            run.runner.pause()
            run.trainer.stop(message)
            run.stopped = True
            run.runner.join(2.0)
            run.finalize()
            self.save(run)

    def pause(self) -> None:
        if not self._may_change():
            return
        run = self.active
        if run is not None and run.runner is not None:
            run.runner.pause()
            run.runner.join(2.0)  # the thread ends its step (a few ms): the save then has its last step
            self.save(run)

    def resume(self) -> None:
        if not self._may_change():
            return
        run = self.active
        if run is not None and run.runner is not None and not run.finished:
            run.runner.start()
            self._renew(beat=False)  # busy now: the lease is not free for another tab

    def stop(self) -> None:
        """End the active run now (it is kept, finished early) and cancel the rest of a sweep."""
        if not self._may_change():
            return
        self.queue = []
        self._save_queue()
        self._stop_active("Stopped by the user.")

    def reset(self) -> None:
        """Discard an unfinished active run (a finished one stays in the list) and any sweep."""
        if not self._may_change():
            return
        self.queue = []
        self._save_queue()
        run = self.active
        if run is not None and not run.finished:
            run.runner.pause()
            run.runner.join(2.0)
            del self.runs[run.name]
            self._delete_saved(run.name)
        self.active_name = None

    def remove(self, name: str) -> None:
        """Delete run ``name`` (and its saved copy)."""
        if not self._may_change():
            return
        if name not in self.runs:
            return
        if name == self.active_name:
            self.reset()
        self.runs.pop(name, None)
        self._delete_saved(name)

    def set_beta(self, beta: float) -> bool:
        """Change beta of the active run while it trains (next step). Returns True if applied."""
        if not self._may_change():
            return False
        run = self.active
        if run is None or run.trainer is None or run.finished or not run.is_vae:
            return False
        run.trainer.set_beta(beta)
        if run.state != "training":
            self.save(run)  # (while it trains, the next periodic save records it)
        return True

    def tick(self) -> bool:
        """Call on every redraw: renew the lease (the training thread runs while it is renewed),
        finalise finished runs, advance a sweep. It never trains: only the training thread does.
        Returns True when a run finished or started (the page should redraw everything). Does
        nothing in a read-only store."""
        changed = False
        if self.view:
            return False
        if self.follower:  # waiting for the other session to let go: the page reruns (and reloads) then
            if LEASE_NOTICE not in self.notices:
                self.notices.append(LEASE_NOTICE)
            now = time.monotonic()
            if now - self._lease_at < P.LEASE_RENEW_S:
                return False
            self._lease_at = now
            return P.lease_free(P.read_lease(self.owner, self.root))
        if self.lease_lost or not self._renew(later=True):
            return True  # another session took the runs: the page reruns, and session_store reloads them
        run = self.active
        if run is not None and run.runner is not None and not run.finished:
            run.runner.keep_alive()
        for r in list(self.runs.values()):
            if r.finished and r.final is None:
                r.finalize()
                self.save(r)
                changed = True
        run = self.active
        if run is not None and run.finished and self.queue:
            if run.state in ("diverged", "error"):
                self.notices.append(f"The β sweep stopped because {run.name} did not finish: {run.message}")
                self.queue = []
                self._save_queue()
            else:
                try:
                    self._writable()  # (reloads first if another tab took the runs meanwhile)
                except LeaseHeldError:
                    return True
                if self.queue and self.active is not None and self.active.finished:
                    name, mc, tc, ds = self.queue.pop(0)
                    self.create(mc, tc, ds, name=name, sweep=True)
                    self._save_queue()
            changed = True
        return changed

    def shutdown(self) -> None:
        """Stop every background thread (used by tests)."""
        for r in self.runs.values():
            if r.runner is not None:
                r.runner.pause()
                r.runner.join(2.0)


# ---- run-state rules: what the page offers in each state -----------------------------------------

FINISHED_STATES = ("done", "stopped", "diverged", "error", "loaded")
BETA_HELP = {
    "live": "Weight of the KL term. It changes the running model from its next step on (no restart); "
            "the loss chart marks each change with a dashed line.",
    "sweep": "The β sweep fixes β for each of its runs; stop the sweep to set β yourself.",
    "ae": "An autoencoder has no KL term, so β does nothing. Choose VAE in the configuration.",
    "view": "A view link shows someone's runs as they were saved: β cannot be changed from here.",
}


def run_buttons(state: str | None, read_only: bool = False) -> tuple[str, ...]:
    """The run buttons the training page shows when the active run is in ``state`` (None: no run):
    "start" and "sweep" when there is no run or it has finished, "pause" and "stop" while it trains,
    "resume" and "stop" when it is ready or paused, and "reset" whenever there is a run. None at all
    in a read-only view."""
    if read_only:
        return ()
    if state is None or state in FINISHED_STATES:
        main = ("start", "sweep")
    elif state == "training":
        main = ("pause", "stop")
    elif state in ("ready", "paused"):
        main = ("resume", "stop")
    else:
        raise ValueError(f"unknown run state {state!r}")
    return main + (("reset",) if state is not None else ())


def beta_control(run: Run | None, next_kind: str | None, sweeping: bool, read_only: bool = False) -> tuple[bool, str]:
    """(enabled, help) of the β slider: β steers the active run while it is unfinished, else it is
    the β of the next run. Disabled in a view, during a sweep (each run has its β), and for an
    autoencoder (the unfinished run's kind, else the configured next run's kind ``next_kind``)."""
    if read_only:
        return False, BETA_HELP["view"]
    if sweeping:
        return False, BETA_HELP["sweep"]
    kind = run.model_cfg.kind if (run is not None and not run.finished) else next_kind
    if kind == "ae":
        return False, BETA_HELP["ae"]
    return True, BETA_HELP["live"]


# ---- links: which runs a page shows ---------------------------------------------------------------

@dataclass(frozen=True)
class Link:
    """What the training page's URL asks for. ``mode``: "own" (the session's runs, saved under
    ``owner``) or "view" (``owner``'s runs, read-only). ``level``/``message``: what to tell the user
    about the link (None when it simply worked)."""

    mode: str
    owner: str
    level: str | None = None
    message: str | None = None
    new: bool = False  # a new owner id was made (the URL must get it)


def resolve_link(runs_param: str | None, view_param: str | None, session_owner: str | None,
                 root: Path | None = None) -> Link:
    """Decide from the URL's ``runs=`` and ``view=`` values and the owner this session already has.

    ``view=`` (a valid, known view id) opens that owner's runs read-only; ``runs=`` (a valid, known
    owner id) opens that owner's runs; a malformed value gets an error and an unknown one an info,
    each saying what to do, and the session keeps (or gets) runs of its own. Ids are checked with a
    strict pattern before any path is built from them."""
    root = root or P.run_dir()
    own = session_owner if P.valid_id(session_owner) else None

    def fresh(level=None, message=None) -> Link:
        return Link("own", own or P.new_owner_id(), level, message, new=own is None)

    if view_param is not None:
        try:
            P.check_id(view_param, "view")
        except P.PersistError as exc:
            return fresh("error", f"{exc} Below is a training page of your own.")
        owner = P.find_owner(view_param, root)
        if owner is None:
            return fresh("info", "No runs are saved under this view link: they may have been deleted (the server "
                                 "removes the oldest finished runs when it needs space), or the link is from another "
                                 "server. Ask its owner for a new link. Below is a training page of your own.")
        return Link("view", owner)
    if runs_param is None:
        return fresh()
    try:
        P.check_id(runs_param, "runs")
    except P.PersistError as exc:
        return fresh("error", f"{exc} Your new runs are saved under a new link.")
    if runs_param == own or P.owner_known(runs_param, root):
        return Link("own", runs_param)
    return fresh("info", "No runs are saved under this link: they may have been deleted (the server removes the "
                         "oldest finished runs when it needs space), or the link is from another server. Your new "
                         "runs are saved under a new link.")


def session_store(state, link: Link, root: Path | None = None) -> tuple[RunStore, list[str]]:
    """The run store for ``link`` in a session's ``state`` (a dict-like: ``st.session_state``),
    made and attached once per owner: keys ``tr_runs`` and ``tr_owner`` (own runs), ``tr_view``
    and ``tr_view_owner`` (a view). Switching to another owner's link pauses the session's runs
    (they are saved) and brings back that owner's. Returns (store, messages about runs that could
    not be restored)."""
    if link.mode == "view":
        if state.get("tr_view_owner") != link.owner or state.get("tr_view") is None:
            view = RunStore(read_only=True)
            state["tr_view_errors"] = view.attach(link.owner, root)
            state["tr_view"], state["tr_view_owner"] = view, link.owner
        return state["tr_view"], state.get("tr_view_errors", [])
    store = state.get("tr_runs")
    if state.get("tr_owner") != link.owner or store is None:
        if store is not None:
            if store.owner is None and link.new and store.runs:
                store.attach(link.owner, root)  # this session's runs from before it had an owner: keep them
                state["tr_owner"], state["tr_restore_errors"] = link.owner, []
                for r in list(store.runs.values()):
                    store.save(r)
                return store, []
            for r in store.runs.values():
                if r.runner is not None and not r.finished:
                    r.runner.pause()
                    store.save(r)
            store.shutdown()
        store = RunStore()
        state["tr_restore_errors"] = store.attach(link.owner, root)
        state["tr_runs"], state["tr_owner"] = store, link.owner
    else:
        store.check_lease()  # one writer per link: renew, or reload if another tab took or left the runs
    return store, state.get("tr_restore_errors", [])


def _train_config_from(d) -> TrainConfig | None:
    if not isinstance(d, dict):
        return None
    try:
        return TrainConfig.from_dict(d)
    except (TypeError, ValueError):
        return None


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def clean_rows(rows) -> list[dict]:
    """History rows from an untrusted checkpoint: kept only if every row has finite numbers for
    step, loss, recon and kl (and at most ``MAX_SAVED_ROWS`` rows); else an empty list."""
    if not isinstance(rows, list) or len(rows) > MAX_SAVED_ROWS:
        return []
    out = []
    for r in rows:
        if not isinstance(r, dict) or not all(_finite(r.get(k)) for k in ("step", "loss", "recon", "kl")):
            return []
        row = {k: float(v) for k, v in r.items() if _finite(v)}
        row["step"] = int(r["step"])
        if "beta_kl" not in row:
            row["beta_kl"] = row["loss"] - row["recon"]
        out.append(row)
    return out


def _clean_beta_changes(changes, default: float) -> list[tuple[int, float]]:
    if isinstance(changes, list) and changes and all(
            isinstance(c, (list, tuple)) and len(c) == 2 and _finite(c[0]) and _finite(c[1]) for c in changes):
        return [(int(s), float(b)) for s, b in changes[:10_000]]
    return [(0, float(default))]


# ---- comparison --------------------------------------------------------------------------------

# ---- the likelihood's scale: the Gaussian's noise level acts as a hidden beta --------------------

#: -log p(x|z) of each decoder likelihood (``core.losses.recon_loss``); x_hat = g(z), the decoder's output.
BERNOULLI_TEX = (r"-\log p(x\mid z) = -\sum_{d=1}^{D}\big[x_d\log\hat x_d + (1-x_d)\log(1-\hat x_d)\big]")
GAUSSIAN_TEX = (r"-\log \mathcal N\big(x;\,\hat x,\,s^2 I\big) = \frac{\|x-\hat x\|^2}{2s^2}"
                r" + \frac{D}{2}\log(2\pi s^2)")
#: Lucas et al. (2019): with p(x|z) = N(g(z), s^2 I) the noise variance s^2 scales the KL like beta.
HIDDEN_BETA_TEX = (r"\frac{\|x-\hat x\|^2}{2s^2} + \beta\,\mathrm{KL} \;=\; \frac{1}{s^2}\Big(\tfrac12\|x-\hat x\|^2"
                   r" + \beta s^2\,\mathrm{KL}\Big)")


def gaussian_cost(err: float, d: int) -> float:
    """The unit-variance Gaussian reconstruction term (constant dropped) of an image whose D pixels are
    each off by ``err``: 1/2 * D * err^2 nats."""
    return 0.5 * d * err ** 2


def bernoulli_cost(err: float, d: int) -> float:
    """The Bernoulli term for black-and-white pixels (x_d in {0, 1}) each predicted ``err`` away from
    their value: D * -log(1 - err) nats."""
    return -d * math.log1p(-err)


def hidden_beta_text(d: int, err: float = 0.1) -> str:
    """Why the unit-variance Gaussian acts like a large beta on pixels in [0, 1], with the costs of a
    pixel error ``err`` over ``d`` pixels (Markdown)."""
    return (
        "So noise level s at weight β trains the same model as s = 1 at weight β·s², and, read the other way, "
        "s = 1 at β = 1 is the objective of s = 0.1 at β = 100. On pixels in [0, 1] the squared error is small: "
        f"an error of {err:g} on every one of the D = {d:,} pixels costs ½·{d:,}·{err:g}² = "
        f"**{gaussian_cost(err, d):.2f} nats** with s = 1, where the Bernoulli term charges "
        f"**{bernoulli_cost(err, d):.2f} nats** for the same error on black-and-white pixels (−log {1 - err:g} per "
        "pixel). Against so small a reconstruction term the KL weighs heavily, and fewer dimensions stay active: "
        "the unit-variance Gaussian behaves like a much larger β. Train the same settings once with each "
        "likelihood and compare the active units in the table below.")


@dataclass(frozen=True)
class NoiseScales:
    """How much noise a VAE's encoder injects, per latent dimension, over ``n`` images.

    ``sigma_median`` and ``sigma_max`` (K,): median and largest sigma_j(x) = exp(logvar_j(x) / 2);
    ``mu_sd`` (K,): standard deviation over the images of the mean mu_j(x) (how far the codes spread).
    With beta = 0 nothing in the loss stops sigma -> 0: the KL's -log sigma^2 part, the only term
    that grows as sigma shrinks, has weight 0, while the reconstruction term only gains from less
    noise. The encoder then switches the noise off (sigma << mu_sd) and the model is a plain
    autoencoder."""

    sigma_median: np.ndarray
    sigma_max: np.ndarray
    mu_sd: np.ndarray
    n: int


@torch.no_grad()
def noise_scales(model: AutoEncoder, x: np.ndarray) -> NoiseScales:
    """Encode ``x`` (N, D) with a VAE ``model`` (eval mode, restored afterwards) and measure its noise."""
    if not model.is_vae:
        raise ValueError("an autoencoder has no noise to measure: its code is a point")
    with eval_mode(model):
        dev = next(model.parameters()).device
        mu, logvar = model.encode(torch.as_tensor(np.asarray(x, dtype=np.float32), device=dev))
    sigma = (logvar.double() / 2).exp().cpu().numpy()
    m = mu.double().cpu().numpy()
    return NoiseScales(np.median(sigma, axis=0), sigma.max(axis=0), m.std(axis=0), int(len(m)))


def file_slug(name: str, limit: int = 40) -> str:
    """A run name as an ASCII file-name part: "#3 VAE β=0.5 z=16" -> "3-vae-beta-0-5-z-16"."""
    s = "".join(ch if ch.isascii() and ch.isalnum() else "-" for ch in str(name).replace("β", "beta"))
    return "-".join(part for part in s.lower().split("-") if part)[:limit].strip("-") or "run"


def beta_path(changes: Sequence[tuple[int, float]], limit: int = 6) -> list[float]:
    """The values beta took during a run, in order, without repeats (at most ``limit``, the last ones):
    a run is named after the beta it started with, so a table shows where beta went from there."""
    path: list[float] = []
    for _, b in changes:
        if not path or path[-1] != b:
            path.append(float(b))
    return path[-limit:]


LIKELIHOOD_SHORT = {"bernoulli": "BCE", "gaussian": "MSE"}
BETA_PATH_SHOWN = 6  # the last values β took; "… →" before them when there were more


def comparison_rows(runs: Sequence[Run]) -> list[dict]:
    """One row per run, narrow enough for the page's width: the model in one column
    ("VAE z=16 · 256,128 · BCE on mnist-5k"), the values β took (the last is the final one), and the
    final held-out −ELBO, reconstruction term, KL term (nats per image) and active units.

    −ELBO = recon + KL (nats per image, lower is better) does not depend on beta, so it compares
    runs trained with different beta. An AE has no ELBO (its encoder is not probabilistic)."""
    rows = []
    for r in runs:
        f = r.final or {}
        vae = r.is_vae
        mc = r.model_cfg
        rows.append({
            "run": r.name, "status": STATE_LABELS[r.state],
            "model": (f"{mc.kind.upper()} z={mc.latent_dim} · {','.join(map(str, mc.hidden_dims))} · "
                      f"{LIKELIHOOD_SHORT.get(mc.likelihood, mc.likelihood)} on {r.dataset.name}"),
            "β": (("… → " if len(beta_path(r.beta_changes, 10**6)) > BETA_PATH_SHOWN else "")
                  + " → ".join(f"{b:g}" for b in beta_path(r.beta_changes, BETA_PATH_SHOWN)) if vae else None),
            "steps": r.step,
            "held-out −ELBO": round(f["neg_elbo"], 2) if f and vae else None,
            "recon": round(f["recon"], 2) if f else None,
            "KL": round(f["kl"], 2) if f and vae else None,
            "active units": f.get("active_units") if f and vae else None,
        })
    return rows


def beta_confounds(runs: Sequence[Run]) -> list[str]:
    """What, besides β, differs between ``runs`` (empty: only their β differs, so a difference in
    their held-out terms can be put down to β). Each item is a short phrase for the page."""
    why = []
    changed = [r.name for r in runs if len(r.beta_changes) > 1]
    if changed:
        why.append(f"β changed during training in {', '.join(changed)}")
    steps = sorted({r.step for r in runs})
    if len(steps) > 1:
        why.append(f"they trained for different numbers of steps ({steps[0]:,} to {steps[-1]:,})")
    same = {(r.model_cfg, r.dataset.name,
             tuple((k, v) for k, v in sorted(vars(r.train_cfg).items()) if k not in ("beta", "epochs", "device")))
            for r in runs}  # (epochs: a difference shows in the steps)
    if len(same) > 1:
        why.append("their model, data or other training settings differ")
    return why


def compare_summary(runs: Sequence[Run]) -> str:
    """One or two sentences quoting the compared runs' real held-out numbers (Markdown). The
    change with β is described only when nothing else differs between the runs
    (:func:`beta_confounds`); otherwise the text says what else differs."""
    done = [r for r in runs if r.final]
    if not done:
        return ""
    vae = [r for r in done if r.is_vae]
    parts = []
    if vae:
        best = min(vae, key=lambda r: r.final["neg_elbo"])
        parts.append(f"Lowest held-out −ELBO: **{best.name}**, {best.final['neg_elbo']:.1f} nats per image.")
    by_beta = sorted(vae, key=lambda r: r.beta)
    if len(by_beta) >= 2 and by_beta[0].beta != by_beta[-1].beta:
        lo, hi = by_beta[0], by_beta[-1]
        why = beta_confounds(by_beta)
        if why:
            parts.append(f"These runs differ in more than β ({'; '.join(why)}), so their differences are not β's "
                         "alone. To see what β does, compare runs that differ only in β, as **🧪 β sweep** trains.")
        else:
            kl_trend = "falls" if hi.final["kl"] < lo.final["kl"] else "rises"
            rec_trend = "rises" if hi.final["recon"] > lo.final["recon"] else "falls"
            parts.append(
                f"From β = {lo.beta:g} to β = {hi.beta:g}, the held-out KL {kl_trend} from {lo.final['kl']:.1f} to "
                f"{hi.final['kl']:.1f} nats, the reconstruction term {rec_trend} from {lo.final['recon']:.1f} to "
                f"{hi.final['recon']:.1f}, and the active units (dimensions whose mean μ_j(x) varies over held-out "
                f"images, Var_x(μ_j) > 0.01; Burda et al., 2016) go from {lo.final['active_units']} to "
                f"{hi.final['active_units']} of {hi.model_cfg.latent_dim}.")
    return " ".join(parts)


def common_inputs(runs: Sequence[Run], n: int = 8) -> tuple[np.ndarray, bool]:
    """``n`` images (n, D) held out by every run (all on the same dataset), in dataset order.
    Returns (images, True), or the first run's held-out images and False if too few are shared."""
    common = None
    for r in runs:
        common = set(map(int, r.val_idx)) if common is None else common & set(map(int, r.val_idx))
    idx = sorted(common or [])
    if len(idx) >= n:
        return runs[0].dataset.x[np.asarray(idx[:n])], True
    return runs[0].fixed_inputs(n), False


def compatible(runs: Sequence[Run]) -> tuple[list[Run], list[Run]]:
    """Split runs into those on the first run's dataset (comparable) and the rest."""
    if not runs:
        return [], []
    ds = runs[0].dataset
    ok = [r for r in runs if r.dataset.name == ds.name and r.dataset.dim == ds.dim]
    return ok, [r for r in runs if r not in ok]


# ---- export ------------------------------------------------------------------------------------

def metrics_rows(run: Run) -> list[dict]:
    """Per step: epoch, beta, loss terms, active units, KL of every dimension (kl_z1..kl_zK) and,
    at evaluation steps, the held-out terms (val_*). Ready for ``ui.download_csv``."""
    evals = {int(e["step"]): e for e in run.eval_history}
    rows = []
    for h in run.history:
        row = {k: h.get(k) for k in ("step", "epoch", "beta", "loss", "recon", "kl", "beta_kl", "active_units")}
        for j, v in enumerate(h.get("kl_per_dim") or []):
            row[f"kl_z{j + 1}"] = v
        e = evals.get(int(h["step"]))
        for k in ("loss", "recon", "kl", "neg_elbo", "active_units"):
            row[f"val_{k}"] = e.get(k) if e else None
        rows.append(row)
    return rows


def _compact(rows: Sequence[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not isinstance(v, (list, tuple, dict))} for r in rows]


def config_dict(run: Run) -> dict:
    """Everything needed to repeat the run: data, model and training configs, beta changes, outcome."""
    final = {k: v for k, v in (run.final or {}).items()}
    return {
        "app": "Latent Lab", "run": run.name, "source": run.source, "parent": run.parent,
        "dataset": run.dataset.name, "image_shape": list(run.dataset.image_shape),
        "model": run.model_cfg.to_dict(), "train": run.train_cfg.to_dict(),
        "beta_changes": [list(c) for c in run.beta_changes], "status": run.state, "steps": run.step,
        "message": run.message, "final_held_out": final,
    }


def config_json(run: Run) -> str:
    return json.dumps(config_dict(run), indent=2)


def checkpoint_file(run: Run) -> bytes:
    """A checkpoint (``core.checkpoints`` format) with the run's config and history in ``extra``,
    so loading it back restores the loss curves as well as the weights."""
    extra = {"dataset": run.dataset.name, "run": run.name, "train_config": run.train_cfg.to_dict(),
             "history": _compact(run.history), "eval_history": _compact(run.eval_history),
             "beta_changes": [list(c) for c in run.beta_changes], "final": run.final or {}}
    model = run.model
    if run.trainer is not None:
        with run.trainer.lock:
            return checkpoint_bytes(model, run.model_cfg, extra)
    return checkpoint_bytes(model, run.model_cfg, extra)


def dataset_for_checkpoint(ckpt: Checkpoint, current: Dataset, load) -> Dataset:
    """The dataset to pair a checkpoint with: the built-in one it names (if its pixel count
    matches), else ``current`` if the pixel count matches. ``load(name)`` loads a built-in
    dataset. Raises ValueError saying which dataset would fit."""
    named = ckpt.extra.get("dataset") if isinstance(ckpt.extra, dict) else None
    if isinstance(named, str) and named in DATASETS:
        ds = load(named)
        if ds.dim == ckpt.config.input_dim:
            return ds
    if current.dim == ckpt.config.input_dim:
        return current
    fits = [n for n in DATASETS if load(n).dim == ckpt.config.input_dim]
    hint = (f"Choose {' or '.join(fits)} in the sidebar" if fits
            else "Upload a dataset with images of that size in the configuration")
    raise ValueError(f"This checkpoint's model reads images of {ckpt.config.input_dim} pixels, but the current "
                     f"dataset ({current.name}) has {current.dim}. {hint}, then upload the checkpoint again.")




