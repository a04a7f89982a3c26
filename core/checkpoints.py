"""Saving and safely loading model checkpoints.

A checkpoint is a plain dict ``{"format", "version", "config", "state_dict", "extra"}``
written by ``torch.save``. Loading always uses ``torch.load(weights_only=True)``, which
refuses pickled code, and then checks that the weights match the stored config.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import NamedTuple

import torch

from core.models import AutoEncoder, ModelConfig, build_model

FORMAT = "latent-lab-checkpoint"
VERSION = 1
MAX_CHECKPOINT_BYTES = 64 * 2**20


class CheckpointError(ValueError):
    """A file that is not a usable Latent Lab checkpoint. The message says why and what to do."""


class Checkpoint(NamedTuple):
    model: AutoEncoder
    config: ModelConfig
    extra: dict


def _plain(value):
    """Keep only what ``weights_only`` loading accepts: numbers, strings, lists, dicts, tensors."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None or torch.is_tensor(value):
        return value
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def save_checkpoint(model: AutoEncoder, cfg: ModelConfig, file, extra: dict | None = None,
                    half: bool = False) -> None:
    """Write ``model``'s weights and ``cfg`` to a path or a binary file object.

    ``extra`` (history, training config, ...) must be made of plain values. ``half`` stores
    float16 weights (the shipped zoo uses it to stay small); they load back as float32.
    """
    state = {k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu())
             for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "version": VERSION, "config": cfg.to_dict(),
               "state_dict": state, "extra": _plain(extra or {})}
    torch.save(payload, file)


def checkpoint_bytes(model: AutoEncoder, cfg: ModelConfig, extra: dict | None = None) -> bytes:
    buf = io.BytesIO()
    save_checkpoint(model, cfg, buf, extra)
    return buf.getvalue()


def _read_bytes(file) -> bytes:
    if isinstance(file, (str, os.PathLike)):
        p = Path(file)
        if not p.is_file():
            raise CheckpointError(f"No checkpoint file at {p}.")
        if p.stat().st_size > MAX_CHECKPOINT_BYTES:
            raise CheckpointError(f"The file is {p.stat().st_size / 2**20:.0f} MB; checkpoints are limited to "
                                  f"{MAX_CHECKPOINT_BYTES // 2**20} MB.")
        return p.read_bytes()
    size = getattr(file, "size", None)
    if size is not None and size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"The file is {size / 2**20:.0f} MB; checkpoints are limited to "
                              f"{MAX_CHECKPOINT_BYTES // 2**20} MB.")
    if hasattr(file, "seek"):
        file.seek(0)
    data = file.read(MAX_CHECKPOINT_BYTES + 1)
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"The file is larger than {MAX_CHECKPOINT_BYTES // 2**20} MB, the limit for checkpoints.")
    return data


def load_checkpoint(file, device: str = "auto") -> Checkpoint:
    """Load a checkpoint from a path or a binary file object (e.g. a Streamlit upload).

    Raises :class:`CheckpointError` for an empty, truncated, unsafe (pickled code), foreign
    or mismatched file, or one with non-finite weights.
    """
    data = _read_bytes(file)
    if not data:
        raise CheckpointError("The file is empty. Choose a .pt checkpoint saved by Latent Lab's training page.")
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        if "Weights only load failed" in text or "Unsupported global" in text or "unpickl" in text.lower():
            raise CheckpointError("The file contains Python objects other than weights (possibly code), so it was "
                                  "refused without running it. Upload a checkpoint saved by Latent Lab.") from None
        raise CheckpointError("The file could not be read as a PyTorch checkpoint (it may be truncated or not a "
                              "checkpoint at all). Download it again from the training page.") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError("This is a PyTorch file, but not a Latent Lab checkpoint (it has no Latent Lab header). "
                              "Save checkpoints with the training page's 'Download checkpoint' button.")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"Checkpoint version {payload.get('version')!r} is not supported (expected {VERSION}).")
    try:
        cfg = ModelConfig.from_dict(payload.get("config") or {})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"The checkpoint's model configuration is invalid: {exc}") from None
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError("The checkpoint has no valid weights (state_dict).")
    for k, v in state.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"The checkpoint's weights contain NaN or infinite values (in {k}).")
    model = build_model(cfg, device)
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise CheckpointError("The weights do not match the architecture in the checkpoint's config "
                              f"({cfg.kind}, hidden {list(cfg.hidden_dims)}, latent {cfg.latent_dim}): "
                              + " ".join(first)) from None
    model.eval()
    extra = payload.get("extra") if isinstance(payload.get("extra"), dict) else {}
    return Checkpoint(model, cfg, extra)

