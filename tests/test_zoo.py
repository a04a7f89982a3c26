"""core.zoo: every shipped model exists, loads read-only, and its stored numbers are its real numbers."""
from __future__ import annotations

import math

import pytest
import torch

from core import zoo
from core.data import load_dataset
from core.training import evaluate_model


def test_every_spec_is_shipped():
    missing = [s.filename for s in zoo.SPECS if not (zoo.ASSET_DIR / s.filename).is_file()]
    assert not missing, f"run scripts/build_zoo.py: missing {missing}"


def test_issue_minimum_grid_is_covered():
    for ds in ("digits", "mnist-5k"):
        for z in (2, 16):
            assert zoo.available(ds, "ae", z)
            assert {s.beta for s in zoo.available(ds, "vae", z)} >= {0.5, 1.0, 4.0}


def test_pretrained_is_cached_read_only_and_in_eval_mode():
    a = zoo.pretrained("digits", "vae", 1.0, 2)
    b = zoo.pretrained("digits", "vae", 1, 2)
    assert a is b
    assert not a.model.training
    assert all(not p.requires_grad for p in a.model.parameters())
    assert zoo.pretrained("digits", "ae", 4.0, 2) is zoo.pretrained("digits", "ae", 0.5, 2)  # beta ignored for an AE


@pytest.mark.parametrize("dataset,kind,beta,z", [("digits", "vae", 1.0, 16), ("mnist-5k", "vae", 4.0, 2),
                                                  ("mnist-5k", "ae", 0.0, 16)])
def test_stored_evaluation_equals_a_fresh_evaluation(dataset, kind, beta, z):
    p = zoo.pretrained(dataset, kind, beta, z)
    ds = load_dataset(dataset)
    fresh = evaluate_model(p.model, ds.x[p.val_idx], beta, "bernoulli", seed=0)
    for k in ("loss", "recon", "kl", "neg_elbo"):
        assert math.isclose(fresh[k], p.evaluation[k], rel_tol=1e-4, abs_tol=1e-4), k
    assert fresh["active_units"] == p.evaluation["active_units"]
    assert len(p.history["step"]) > 10 and p.history["loss"][-1] < p.history["loss"][0]


def test_shipped_models_have_learned_something():
    """Held-out -ELBO far below what a model that ignores the input can reach."""
    ds = load_dataset("mnist-5k")
    p = zoo.pretrained("mnist-5k", "vae", 1.0, 16)
    xv = torch.as_tensor(ds.x[p.val_idx])
    mean = xv.mean(0).clamp(1e-4, 1 - 1e-4)
    baseline = float(-(xv * mean.log() + (1 - xv) * (1 - mean).log()).sum(1).mean())  # per-pixel mean image
    assert p.evaluation["neg_elbo"] < 0.6 * baseline


def test_unknown_requests_are_refused():
    with pytest.raises(ValueError):
        zoo.pretrained("cifar", "vae", 1.0, 2)
    with pytest.raises(ValueError):
        zoo.pretrained("digits", "gan", 1.0, 2)
    with pytest.raises(ValueError):
        zoo.pretrained("digits", "vae", 1.0, 2, variant="magic")


def test_a_spec_that_is_not_shipped_is_trained_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENT_LAB_CACHE", str(tmp_path))
    monkeypatch.setitem(zoo.RECIPES, "digits", {**zoo.RECIPES["digits"], "epochs": 1})
    spec = zoo.normalise_spec("digits", "vae", 3.0, 3)
    assert not (zoo.ASSET_DIR / spec.filename).exists()
    p = zoo.pretrained("digits", "vae", 3.0, 3)
    assert (tmp_path / "zoo" / spec.filename).is_file()
    assert p.config.latent_dim == 3 and p.evaluation["beta"] == 3.0
    zoo._memory.pop(spec)
    again = zoo.pretrained("digits", "vae", 3.0, 3)  # from the disk cache, identical weights
    for k, v in p.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k])
    zoo._memory.pop(spec)


def test_training_one_model_does_not_hold_up_another(tmp_path, monkeypatch):
    """A spec being trained (here: blocked) must not make a session that asks for a shipped model wait."""
    import threading

    monkeypatch.setenv("LATENT_LAB_CACHE", str(tmp_path))
    started, release = threading.Event(), threading.Event()

    def slow_train(spec, path):
        started.set()
        release.wait(10)
        raise RuntimeError("stopped by the test")

    monkeypatch.setattr(zoo, "train_spec", slow_train)
    errors = []
    t = threading.Thread(target=lambda: errors.append(_try(lambda: zoo.pretrained("digits", "vae", 5.0, 3))))
    t.start()
    try:
        assert started.wait(10)
        spec = zoo.normalise_spec("digits", "vae", 0.5, 2)
        zoo._memory.pop(spec, None)
        got = []
        loader = threading.Thread(target=lambda: got.append(zoo.pretrained("digits", "vae", 0.5, 2)))
        loader.start()
        loader.join(5)
        assert got, "loading a shipped model waited for another model's training"
    finally:
        release.set()
        t.join(10)
    assert errors == ["stopped by the test"]


def _try(fn):
    try:
        fn()
    except RuntimeError as exc:
        return str(exc)
    return None
