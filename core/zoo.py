"""Pretrained models, ready at once and shared read-only by every session.

The models in ``SPECS`` are trained by ``scripts/build_zoo.py`` and shipped under
``assets/zoo/`` (float16 weights, a few MB in all), so no page makes a class wait for
training. A spec that is not shipped is trained on first use and cached under
``$LATENT_LAB_CACHE`` (default ``~/.cache/latent-lab``). Loaded models are kept in memory,
in eval mode with ``requires_grad=False`` on every weight: pages may compute gradients
with respect to activations, never change the weights.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from core.checkpoints import load_checkpoint, save_checkpoint
from core.data import load_dataset
from core.models import AutoEncoder, ModelConfig
from core.training import freeze

ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "zoo"

# Per-dataset architecture and optimisation used for every zoo model.
RECIPES = {
    "digits": dict(hidden_dims=(128, 64), epochs=150, batch_size=64, lr=2e-3),
    "mnist-5k": dict(hidden_dims=(256, 128), epochs=40, batch_size=128, lr=1e-3),
}
LATENT_DIMS = (2, 16)
BETAS = (0.5, 1.0, 4.0)  # every dataset x latent dim
SWEEP_BETAS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # latent 16: the rate-distortion sweep
VARIANTS = {"": {}, "warmup": {"warmup_steps": 500}, "freebits": {"free_bits": 0.5}}


@dataclass(frozen=True)
class ZooSpec:
    dataset: str
    kind: str
    beta: float
    latent_dim: int
    variant: str = ""  # "" (plain), "warmup" (KL warm-up) or "freebits" (free bits)

    @property
    def filename(self) -> str:
        tail = f"_{self.variant}" if self.variant else ""
        return f"{self.dataset}_{self.kind}_b{self.beta:g}_z{self.latent_dim}{tail}.pt"

    def train_kwargs(self) -> dict:
        r = RECIPES[self.dataset]
        return dict(epochs=r["epochs"], batch_size=r["batch_size"], lr=r["lr"], beta=self.beta,
                    seed=0, snapshot_every=0, **VARIANTS[self.variant])


def _specs() -> list[ZooSpec]:
    out = []
    for ds in RECIPES:
        for z in LATENT_DIMS:
            out.append(ZooSpec(ds, "ae", 0.0, z))
            betas = sorted(set(BETAS) | (set(SWEEP_BETAS) if z == 16 else {0.0}))  # 2-D beta 0: the KL map
            out += [ZooSpec(ds, "vae", b, z) for b in betas]
        out += [ZooSpec(ds, "vae", 4.0, 16, v) for v in ("warmup", "freebits")]
    return out


SPECS: tuple[ZooSpec, ...] = tuple(_specs())


class Pretrained(NamedTuple):
    """A shared, read-only model and what is known about how it was trained.

    ``history``: dict of lists (step, loss, recon, kl, beta) sampled along training;
    ``evaluation``: held-out terms from :func:`core.training.evaluate_model`;
    ``val_idx``: indices of the held-out images in the dataset (int array).
    """

    model: AutoEncoder
    config: ModelConfig
    spec: ZooSpec
    train_config: dict
    history: dict
    evaluation: dict
    val_idx: np.ndarray


def normalise_spec(dataset: str, kind: str, beta: float, latent_dim: int, variant: str = "") -> ZooSpec:
    if dataset not in RECIPES:
        raise ValueError(f"No pretrained models for dataset {dataset!r}; choose one of {sorted(RECIPES)}.")
    if kind not in ("ae", "vae"):
        raise ValueError(f"kind must be 'ae' or 'vae', got {kind!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    return ZooSpec(dataset, kind, 0.0 if kind == "ae" else float(beta), int(latent_dim), variant)


def available(dataset: str | None = None, kind: str | None = None, latent_dim: int | None = None,
              variant: str = "") -> list[ZooSpec]:
    """The shipped specs matching the given filters (in build order)."""
    return [s for s in SPECS if (dataset is None or s.dataset == dataset) and (kind is None or s.kind == kind)
            and (latent_dim is None or s.latent_dim == latent_dim) and s.variant == variant]


def cache_dir() -> Path:
    return Path(os.environ.get("LATENT_LAB_CACHE", Path.home() / ".cache" / "latent-lab")) / "zoo"


_lock = threading.Lock()  # guards the two dicts below, never held while loading or training
_spec_locks: dict[ZooSpec, threading.Lock] = {}
_memory: dict[ZooSpec, Pretrained] = {}


def pretrained(dataset: str, kind: str, beta: float, latent_dim: int, variant: str = "") -> Pretrained:
    """The trained model for this spec: from memory, from ``assets/zoo``, from the user cache, or
    (for a spec that is not shipped) trained now and cached on disk. ``beta`` is ignored for an AE.

    One lock per spec: a session that waits for a model being trained does not hold up sessions
    that ask for another model."""
    spec = normalise_spec(dataset, kind, beta, latent_dim, variant)
    with _lock:
        if spec in _memory:
            return _memory[spec]
        spec_lock = _spec_locks.setdefault(spec, threading.Lock())
    with spec_lock:
        with _lock:
            if spec in _memory:
                return _memory[spec]
        for path in (ASSET_DIR / spec.filename, cache_dir() / spec.filename):
            if path.is_file():
                break
        else:
            path = cache_dir() / spec.filename
            path.parent.mkdir(parents=True, exist_ok=True)
            train_spec(spec, path)
        ck = load_checkpoint(path, device="cpu")
        freeze(ck.model)
        extra = ck.extra
        entry = Pretrained(ck.model, ck.config, spec, extra.get("train_config", {}), extra.get("history", {}),
                           extra.get("evaluation", {}), np.asarray(extra.get("val_idx", []), dtype=np.int64))
        with _lock:
            _memory[spec] = entry
        return entry


def train_spec(spec: ZooSpec, path: Path) -> dict:
    """Train one zoo model with its recipe and save it (float16 weights) to ``path``."""
    from core.training import TrainConfig, Trainer  # (the module is imported above already)

    ds = load_dataset(spec.dataset)
    mcfg = ModelConfig(kind=spec.kind, input_dim=ds.dim, hidden_dims=RECIPES[spec.dataset]["hidden_dims"],
                       latent_dim=spec.latent_dim, likelihood="bernoulli")
    tcfg = TrainConfig(**spec.train_kwargs())
    tr = Trainer(mcfg, tcfg, ds)
    while not tr.finished:
        tr.run_steps(10_000)
    if tr.status == "diverged":
        raise RuntimeError(f"zoo model {spec} diverged: {tr.message}")
    with torch.no_grad():  # evaluate the weights exactly as they will be shipped (float16)
        for t in tr.model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())
    every = max(1, len(tr.history) // 300)
    keys = ("step", "loss", "recon", "kl", "beta")
    hist = {k: [h[k] for h in tr.history[::every]] for k in keys}
    evaluation = tr.evaluate()
    evaluation["beta"] = spec.beta
    extra = {"train_config": tcfg.to_dict(), "history": hist, "evaluation": evaluation,
             "val_idx": tr.val_idx.tolist(), "spec": {"dataset": spec.dataset, "kind": spec.kind,
                                                     "beta": spec.beta, "latent_dim": spec.latent_dim,
                                                     "variant": spec.variant},
             "train_seconds": tr.train_seconds}
    tmp = path.with_suffix(".tmp")
    save_checkpoint(tr.model, mcfg, tmp, extra, half=True)
    os.replace(tmp, path)
    return evaluation
