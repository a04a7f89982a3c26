"""core.units: the one active-unit definition (Burda et al., 2016), checked by brute force."""
import numpy as np
import pytest
import torch

from core import units, zoo
from core.data import load_dataset
from core.training import evaluate_model


def test_active_mask_is_variance_of_the_means_above_the_threshold():
    rng = np.random.default_rng(0)
    mu = np.stack([rng.normal(0, 1.0, 400), rng.normal(3.0, 0.05, 400), np.full(400, -1.0)], axis=1)
    assert units.active_mask(mu).tolist() == [True, False, False]  # a constant offset is not activity
    assert units.count_active(mu, threshold=0.001) == 2
    with pytest.raises(ValueError):
        units.active_mask(np.zeros((1, 3)))


def test_unit_activity_matches_a_brute_force_loop_on_a_shipped_model():
    p = zoo.pretrained("digits", "vae", 1.0, 16)
    x = load_dataset("digits").x[p.val_idx]
    a = units.unit_activity(p.model, x)
    with torch.no_grad():
        rows = [p.model.encode(torch.as_tensor(xi[None]))for xi in x]
    mu = np.concatenate([r[0].numpy() for r in rows]).astype(np.float64)
    lv = np.concatenate([r[1].numpy() for r in rows]).astype(np.float64)
    var = ((mu - mu.mean(0)) ** 2).mean(0)
    np.testing.assert_allclose(a.var_mu, var, rtol=1e-5, atol=1e-9)
    kl = torch.distributions.kl_divergence(torch.distributions.Normal(torch.tensor(mu), torch.tensor(np.exp(lv / 2))),
                                           torch.distributions.Normal(0.0, 1.0)).numpy().mean(0)
    np.testing.assert_allclose(a.mean_kl, kl, rtol=1e-4, atol=1e-7)
    assert a.active.tolist() == (var > 0.01).tolist() and a.count == int((var > 0.01).sum())
    assert a.collapsed == [j for j in range(16) if var[j] <= 0.01]


@pytest.mark.parametrize("dataset,beta", [("mnist-5k", 1.0), ("mnist-5k", 8.0), ("digits", 4.0)])
def test_every_count_of_a_zoo_model_is_the_same_number(dataset, beta):
    """The stored evaluation, a fresh evaluate_model and core.units agree: one count per model."""
    p = zoo.pretrained(dataset, "vae", beta, 16)
    ds = load_dataset(dataset)
    a = units.heldout_activity(p, ds)
    fresh = evaluate_model(p.model, ds.x[p.val_idx], beta, "bernoulli", seed=0)
    assert a.count == fresh["active_units"] == p.evaluation["active_units"]


def test_an_autoencoder_has_no_kl_but_its_codes_vary():
    p = zoo.pretrained("digits", "ae", 0.0, 2)
    a = units.heldout_activity(p, load_dataset("digits"))
    assert a.count == 2 and np.all(a.mean_kl == 0)


def test_per_image_wording_never_says_collapsed():
    assert "collapsed" not in units.per_image_note(0.001)
    assert units.per_image_note(0.001) == "carries almost no information about this image"
    assert units.per_image_note(0.5) == "carries information about this image"


def test_barely_active_and_the_median_sigma():
    p = zoo.pretrained("mnist-5k", "vae", 1.0, 16)
    x = load_dataset("mnist-5k").x[p.val_idx]
    a = units.unit_activity(p.model, x)
    assert a.barely_active == [j for j in range(16) if 0.01 < a.var_mu[j] <= units.BARELY_ACTIVE]
    with torch.no_grad():
        _, lv = p.model.encode(torch.as_tensor(np.array(x)))
    np.testing.assert_allclose(a.sigma_median, np.median(np.exp(0.5 * lv.double().numpy()), axis=0), rtol=1e-6)
    ae = units.unit_activity(zoo.pretrained("digits", "ae", 0.0, 2).model, load_dataset("digits").x[:50])
    assert np.isnan(ae.sigma_median).all()


def test_beta_zero_switches_the_noise_off():
    """PEDAGOGY Q3: without the KL term the encoder shrinks sigma towards 0 in every dimension."""
    ds = load_dataset("mnist-5k")
    a0 = units.heldout_activity(zoo.pretrained("mnist-5k", "vae", 0.0, 16), ds)
    a1 = units.heldout_activity(zoo.pretrained("mnist-5k", "vae", 1.0, 16), ds)
    assert a0.sigma_median.max() < 0.01 < np.median(a1.sigma_median)
