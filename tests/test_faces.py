"""core.faces: the 25x25 LFW faces from scikit-image and the small VAE trained on them, checked
against scikit-image's own array, numpy slicing and a hand-written decoder pass."""
from __future__ import annotations

import numpy as np
import pytest
import torch

skimage_data = pytest.importorskip("skimage.data")

from core import faces  # noqa: E402


def np_laplacian_var(img: np.ndarray) -> float:
    c = img[1:-1, 1:-1]
    lap = img[:-2, 1:-1] + img[2:, 1:-1] + img[1:-1, :-2] + img[1:-1, 2:] - 4 * c
    return float(lap.var())


def test_load_faces_is_the_first_100_lfw_images():
    ds = faces.load_faces()
    ref = skimage_data.lfw_subset()[:100]
    assert ds.x.shape == (100, 625) and ds.x.dtype == np.float32 and ds.image_shape == (25, 25)
    assert 0.0 <= ds.x.min() and ds.x.max() <= 1.0
    np.testing.assert_allclose(ds.x.reshape(100, 25, 25), ref, atol=1e-6)
    assert set(ds.y.tolist()) == {0} and ds.class_names == ("face",)


def test_training_is_deterministic_and_holds_out_ten_faces():
    a, b = faces.train_faces_vae(seed=3, epochs=2), faces.train_faces_vae(seed=3, epochs=2)
    assert len(a.val_idx) == 10 and len(a.train_idx) == 90 and not set(a.val_idx) & set(a.train_idx)
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    c = faces.train_faces_vae(seed=4, epochs=2)
    assert not np.array_equal(a.val_idx, c.val_idx)
    assert len(a.history) == 2 and all(np.isfinite(h["loss"]) for h in a.history)
    # The loss is recon + KL (beta = 1), in nats per image.
    assert a.history[-1]["loss"] == pytest.approx(a.history[-1]["recon"] + a.history[-1]["kl"], rel=1e-6)


def test_faces_evidence_numbers_come_from_the_model_and_the_images():
    assert not faces.faces_ready(seed=98765)
    e = faces.faces_evidence(seed=0, n_show=6)
    assert faces.faces_ready(seed=0)
    run = faces.trained_faces_vae(0)
    x_val = faces.load_faces().x[run.val_idx]
    with torch.no_grad():
        rec = torch.sigmoid(run.model.decode_logits(run.model.encode(torch.as_tensor(x_val))[0])).numpy()
    assert e["mse_vae"] == pytest.approx(float(((rec - x_val) ** 2).mean()), rel=1e-5)
    real = np.mean([np_laplacian_var(im) for im in x_val.reshape(-1, 25, 25)])
    recon = np.mean([np_laplacian_var(im) for im in rec.reshape(-1, 25, 25)])
    assert e["sharp"]["original"] == pytest.approx(real, rel=1e-4)
    assert e["kept_recon"] == pytest.approx(100 * recon / real, rel=1e-3)
    assert e["kept_recon"] < 60 and e["kept_sample"] < 60  # the small VAE blurs faces
    assert {k: v.shape for k, v in e["images"].items()} == {k: (6, 625) for k in ("original", "vae", "sample")}
    assert e["n_train"] == 90 and e["n_val"] == 10 and e["neg_elbo"] > 0


def test_background_training_reports_progress_and_gives_the_same_model():
    job = faces.start_training(seed=5)
    assert faces.start_training(seed=5) is job is faces.training_job(seed=5)
    assert job.wait(300) and job.state == "done", job.error
    assert faces.faces_ready(seed=5) and job.progress == 1.0
    assert job.text == f"epoch {faces.EPOCHS} of {faces.EPOCHS}"
    direct = faces.train_faces_vae(seed=5)
    for pa, pb in zip(faces.trained_faces_vae(5).model.parameters(), direct.model.parameters()):
        assert torch.equal(pa, pb)
