"""Saving and safely loading model checkpoints.

A checkpoint is a plain dict ``{"format", "version", "config", "state_dict", "extra"}``
written by ``torch.save``. Loading always uses ``torch.load(weights_only=True)``, which
refuses pickled code, and then checks that the weights match the stored config.
"""
from __future__ import annotations

import io
import os
import pickletools
import zipfile
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


NOT_A_CHECKPOINT = ("This file is not a PyTorch checkpoint: it could not be read as one, because it is neither a zip "
                    "archive nor a pickle, the two formats torch.save writes (a text or image file renamed .pt looks "
                    "like this). To make a checkpoint, train a model on the training page and export it with the "
                    "'⬇️ Checkpoint (.pt)' button under 'Export, continue or delete a run'.")
DAMAGED = ("The file could not be read as a PyTorch checkpoint: it starts like one but is damaged or truncated "
           "(an interrupted download does this). Download it again from the training page.")
HAS_CODE = ("The file contains Python objects other than weights (possibly code), so it was refused without running "
            "it. Upload a checkpoint saved by Latent Lab.")


def file_format(data: bytes) -> str:
    """What ``data`` looks like, judged from its structure alone (nothing is unpickled or run).

    ``"zip"``: a zip archive holding a pickle named ``.../data.pkl``, the format ``torch.save`` writes
    since PyTorch 1.6. ``"pickle"``: a pickle stream that starts with the PROTO opcode (``\x80``) and
    parses, opcode by opcode (``pickletools.genops``), up to its STOP: the legacy ``torch.save`` format,
    or a plain ``pickle.dumps``. ``"damaged"``: starts like one of those (zip magic ``PK\x03\x04``, or
    ``\x80`` and a protocol number 2 to 5) but does not parse: truncated or corrupt. ``"other"``:
    anything else (text, images, an .npz is a zip without ``data.pkl``).
    """
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            return "damaged"
        return "zip" if any(n.endswith("data.pkl") for n in names) else "other"
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        try:
            for _ in pickletools.genops(io.BytesIO(data)):
                pass
        except Exception:  # noqa: BLE001 - any parse failure means a broken stream
            return "damaged"
        return "pickle"
    return "other"


def load_checkpoint(file, device: str = "auto") -> Checkpoint:
    """Load a checkpoint from a path or a binary file object (e.g. a Streamlit upload).

    Raises :class:`CheckpointError` for an empty file, a file that is not a PyTorch checkpoint at
    all (:func:`file_format`), a truncated or damaged one, an unsafe one (pickled code), a foreign or
    mismatched one, or one with non-finite weights; each with its own message.
    """
    data = _read_bytes(file)
    if not data:
        raise CheckpointError("The file is empty. Choose a .pt checkpoint saved by Latent Lab's training page.")
    kind = file_format(data)
    if kind == "other":
        raise CheckpointError(NOT_A_CHECKPOINT)
    if kind == "damaged":
        raise CheckpointError(DAMAGED)
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        if "Weights only load failed" in text or "Unsupported global" in text or "unpickl" in text.lower():
            raise CheckpointError(HAS_CODE) from None
        raise CheckpointError(DAMAGED) from None
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

