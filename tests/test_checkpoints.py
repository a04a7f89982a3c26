"""core.checkpoints: round trips, and every kind of bad file refused with a clear CheckpointError."""
from __future__ import annotations

import io
import os
import pickle

import pytest
import torch

from core.checkpoints import CheckpointError, checkpoint_bytes, load_checkpoint, save_checkpoint
from core.models import ModelConfig, build_model

CFG = ModelConfig(kind="vae", input_dim=64, hidden_dims=(16,), latent_dim=2)


def _model(cfg=CFG, seed=0):
    torch.manual_seed(seed)
    return build_model(cfg, "cpu")


def test_round_trip_path_and_file_object(tmp_path):
    m = _model()
    save_checkpoint(m, CFG, tmp_path / "a.pt", extra={"history": [{"step": 1, "loss": 2.5}], "note": "hi"})
    ck = load_checkpoint(tmp_path / "a.pt")
    assert ck.config == CFG and ck.extra["note"] == "hi" and ck.extra["history"][0]["loss"] == 2.5
    for k, v in m.state_dict().items():
        assert torch.equal(v, ck.model.state_dict()[k])
    ck2 = load_checkpoint(io.BytesIO(checkpoint_bytes(m, CFG)))
    x = torch.rand(3, 64)
    m.eval()
    assert torch.allclose(ck2.model(x).recon, m(x).recon)


def test_half_precision_storage_loads_as_float32(tmp_path):
    m = _model()
    save_checkpoint(m, CFG, tmp_path / "h.pt", half=True)
    ck = load_checkpoint(tmp_path / "h.pt")
    w = next(ck.model.parameters())
    assert w.dtype == torch.float32
    assert torch.allclose(w, next(m.parameters()).half().float())


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('EVIL_MARKER', '/tmp/latent-lab-evil-marker')}",))


def test_pickle_with_code_payload_is_refused_without_running(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    buf = io.BytesIO()
    torch.save({"format": "latent-lab-checkpoint", "version": 1, "evil": _Evil()}, buf)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(io.BytesIO(buf.getvalue()))
    raw = pickle.dumps(_Evil())
    with pytest.raises(CheckpointError):
        load_checkpoint(io.BytesIO(raw))
    assert not marker.exists()


def test_truncated_empty_and_foreign_files(tmp_path):
    data = checkpoint_bytes(_model(), CFG)
    with pytest.raises(CheckpointError, match="truncated|could not be read"):
        load_checkpoint(io.BytesIO(data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(io.BytesIO(b""))
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(io.BytesIO(b"hello, not a checkpoint"))
    buf = io.BytesIO()
    torch.save(torch.zeros(3), buf)
    with pytest.raises(CheckpointError, match="not a Latent Lab checkpoint"):
        load_checkpoint(io.BytesIO(buf.getvalue()))
    with pytest.raises(CheckpointError, match="No checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt")


def test_weights_from_another_architecture(tmp_path):
    other = ModelConfig(kind="vae", input_dim=64, hidden_dims=(16,), latent_dim=3)
    buf = io.BytesIO()
    torch.save({"format": "latent-lab-checkpoint", "version": 1, "config": CFG.to_dict(),
                "state_dict": _model(other).state_dict(), "extra": {}}, buf)
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(io.BytesIO(buf.getvalue()))


def test_invalid_config_and_non_finite_weights():
    buf = io.BytesIO()
    bad_cfg = {**CFG.to_dict(), "latent_dim": 0}
    torch.save({"format": "latent-lab-checkpoint", "version": 1, "config": bad_cfg,
                "state_dict": _model().state_dict(), "extra": {}}, buf)
    with pytest.raises(CheckpointError, match="configuration"):
        load_checkpoint(io.BytesIO(buf.getvalue()))
    sd = _model().state_dict()
    sd["head_mu.bias"][0] = float("nan")
    buf = io.BytesIO()
    torch.save({"format": "latent-lab-checkpoint", "version": 1, "config": CFG.to_dict(), "state_dict": sd,
                "extra": {}}, buf)
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(io.BytesIO(buf.getvalue()))


def test_oversized_upload_is_refused_before_reading():
    class Huge(io.BytesIO):
        size = 10**9

        def read(self, *a):  # pragma: no cover - must not be called
            raise AssertionError("read a file that is too large")

    with pytest.raises(CheckpointError, match="limited"):
        load_checkpoint(Huge(b""))


def test_unknown_version():
    buf = io.BytesIO()
    torch.save({"format": "latent-lab-checkpoint", "version": 99}, buf)
    with pytest.raises(CheckpointError, match="version"):
        load_checkpoint(io.BytesIO(buf.getvalue()))
