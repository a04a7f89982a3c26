"""core.checkpoints: round trips, and every kind of bad file refused with a clear CheckpointError."""
from __future__ import annotations

import io
import os
import pickle

import pytest
import torch

from core.checkpoints import CheckpointError, checkpoint_bytes, file_format, load_checkpoint, save_checkpoint
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
    with pytest.raises(CheckpointError, match="possibly code"):
        load_checkpoint(io.BytesIO(raw))
    assert not marker.exists()


def test_truncated_empty_and_foreign_files(tmp_path):
    data = checkpoint_bytes(_model(), CFG)
    with pytest.raises(CheckpointError, match="damaged or truncated") as e:
        load_checkpoint(io.BytesIO(data[: len(data) // 2]))
    assert "possibly code" not in str(e.value)
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(io.BytesIO(b""))
    buf = io.BytesIO()
    torch.save(torch.zeros(3), buf)
    with pytest.raises(CheckpointError, match="not a Latent Lab checkpoint"):
        load_checkpoint(io.BytesIO(buf.getvalue()))
    with pytest.raises(CheckpointError, match="No checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt")


# Text files renamed .pt. Before issue 21 some were refused as "contains Python objects other than weights
# (possibly code)": text starting with "c" or "i" parses as pickle's GLOBAL or INST opcode, and the torch error
# was read as "code". They are not checkpoints at all, and the message now says so and how to make one.
TEXTS = [b"hello, not a checkpoint", b"cat and dog\nand more\n", b"import os\nos.system('ls')\n",
         b"# notes\nlearning rate 1e-3\n", "Über Autoencoder\n".encode(), b"\x89PNG\r\n\x1a\n" + bytes(100)]


@pytest.mark.parametrize("raw", TEXTS, ids=["hello", "c-start", "i-start", "hash", "utf8", "png"])
def test_a_file_that_is_not_a_checkpoint_at_all_is_named_as_such(tmp_path, raw):
    (tmp_path / "notes.pt").write_bytes(raw)
    for src in (tmp_path / "notes.pt", io.BytesIO(raw)):
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(src)
        msg = str(e.value)
        assert msg.startswith("This file is not a PyTorch checkpoint") and "training page" in msg, msg
        assert "possibly code" not in msg and "truncated" not in msg


def test_file_format_tells_zip_pickle_damaged_and_other_apart():
    data = checkpoint_bytes(_model(), CFG)
    assert file_format(data) == "zip"
    legacy = io.BytesIO()
    torch.save({"a": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    assert file_format(legacy.getvalue()) == "pickle"
    assert file_format(pickle.dumps({"a": 1}, protocol=4)) == "pickle"
    for cut in (10, len(data) // 2, len(data) - 1):  # truncated anywhere: the zip's directory is at its end
        assert file_format(data[:cut]) == "damaged"
    assert file_format(pickle.dumps({"a": list(range(50))})[:-5]) == "damaged"
    npz = io.BytesIO()
    import numpy as np
    np.savez(npz, x=np.zeros(3))
    assert file_format(npz.getvalue()) == "other"  # a zip, but not one torch.save wrote
    assert file_format(b"hello") == "other"


def test_truncated_and_legacy_checkpoints(tmp_path):
    m = _model()
    legacy = io.BytesIO()
    torch.save({"format": "latent-lab-checkpoint", "version": 1, "config": CFG.to_dict(),
                "state_dict": m.state_dict(), "extra": {}}, legacy, _use_new_zipfile_serialization=False)
    ck = load_checkpoint(io.BytesIO(legacy.getvalue()))  # the legacy format still loads
    assert torch.equal(next(ck.model.parameters()), next(m.parameters()))
    for raw in (legacy.getvalue()[:-7], checkpoint_bytes(m, CFG)[:-3]):
        (tmp_path / "cut.pt").write_bytes(raw)
        with pytest.raises(CheckpointError, match="damaged or truncated") as e:
            load_checkpoint(tmp_path / "cut.pt")
        assert "possibly code" not in str(e.value) and "not a PyTorch checkpoint" not in str(e.value)


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
