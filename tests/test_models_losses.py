"""core.models and core.losses against independent references."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from core.losses import elbo_terms, kl_per_dim
from core.models import ModelConfig, ModelOutput, build_model, get_device, reparameterize


@pytest.mark.parametrize("kind", ["ae", "vae"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_shapes_and_dtypes(kind, likelihood):
    cfg = ModelConfig(kind=kind, input_dim=64, hidden_dims=(32, 16), latent_dim=3, likelihood=likelihood)
    m = build_model(cfg, "cpu")
    x = torch.rand(5, 64)
    out = m(x)
    assert isinstance(out, ModelOutput)
    assert out.recon.shape == (5, 64) and out.recon.dtype == torch.float32
    assert out.mu.shape == out.z.shape == (5, 3)
    assert (out.logvar is None) == (kind == "ae")
    mu, logvar = m.encode(x)
    assert mu.shape == (5, 3) and (logvar is None or logvar.shape == (5, 3))
    assert m.decode(out.z).shape == (5, 64)
    if likelihood == "bernoulli":
        assert out.recon.min() >= 0 and out.recon.max() <= 1


def test_reparameterize_with_fixed_eps_and_gradients():
    mu = torch.tensor([0.5, -1.0], requires_grad=True)
    logvar = torch.tensor([0.0, math.log(4.0)], requires_grad=True)
    eps = torch.tensor([1.0, -0.5])
    z = reparameterize(mu, logvar, eps)
    assert torch.allclose(z, torch.tensor([1.5, -2.0]))
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.ones(2))
    # dz/dlogvar = 0.5 * exp(logvar/2) * eps
    assert torch.allclose(logvar.grad, 0.5 * torch.exp(logvar.detach() / 2) * eps)


def test_reparameterize_matches_distribution_moments():
    torch.manual_seed(0)
    z = reparameterize(torch.full((200_000,), 2.0), torch.full((200_000,), math.log(9.0)))
    assert abs(z.mean() - 2.0) < 0.03 and abs(z.std() - 3.0) < 0.03


def test_vae_eval_is_deterministic_and_eps_is_used():
    m = build_model(ModelConfig(kind="vae", input_dim=16, hidden_dims=(8,), latent_dim=2), "cpu").eval()
    x = torch.rand(3, 16)
    assert torch.equal(m(x).z, m(x).mu)
    eps = torch.randn(3, 2)
    out = m(x, eps=eps)
    assert torch.allclose(out.z, out.mu + torch.exp(0.5 * out.logvar) * eps)


def test_activations_follow_the_forward_pass():
    m = build_model(ModelConfig(kind="vae", input_dim=16, hidden_dims=(12, 8), latent_dim=2), "cpu").eval()
    x = torch.rand(1, 16)
    eps = torch.randn(1, 2)
    acts = dict(m.activations(x, eps))
    assert list(acts) == ["input", "encoder 1", "encoder 2", "mu", "sigma", "eps", "z", "decoder 1", "decoder 2", "output"]
    out = m(x, eps=eps)
    assert torch.allclose(acts["z"], out.z) and torch.allclose(acts["output"], out.recon)
    assert torch.allclose(acts["sigma"], torch.exp(0.5 * out.logvar))


@pytest.mark.parametrize("bad", [dict(kind="gan"), dict(likelihood="poisson"), dict(latent_dim=0), dict(latent_dim=65),
                                 dict(hidden_dims=()), dict(hidden_dims=(5000,)), dict(hidden_dims=(8,) * 5)])
def test_config_validation(bad):
    with pytest.raises(ValueError):
        ModelConfig(**{**dict(input_dim=64, hidden_dims=(8,), latent_dim=2), **bad})


def test_config_round_trip():
    cfg = ModelConfig(kind="ae", input_dim=64, hidden_dims=[32, 16], latent_dim=4, likelihood="gaussian")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_device_auto_is_cpu_without_cuda():
    if not torch.cuda.is_available():
        assert get_device("auto").type == "cpu"


# ---- losses ----------------------------------------------------------------------------------

def _random_out(b=6, d=10, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, d, generator=g)
    logits = torch.randn(b, d, generator=g)
    mu, logvar = torch.randn(b, k, generator=g), torch.randn(b, k, generator=g)
    return x, ModelOutput(torch.sigmoid(logits), mu, logvar, mu, logits)


def test_kl_matches_torch_distributions():
    x, out = _random_out()
    terms = elbo_terms(x, out, 1.0, "bernoulli")
    q = Independent(Normal(out.mu, torch.exp(0.5 * out.logvar)), 1)
    p = Independent(Normal(torch.zeros_like(out.mu), torch.ones_like(out.mu)), 1)
    assert torch.allclose(terms.kl, kl_divergence(q, p).mean(), atol=1e-5)
    per_dim = kl_divergence(Normal(out.mu, torch.exp(0.5 * out.logvar)), Normal(0.0, 1.0)).mean(0)
    assert torch.allclose(terms.kl_per_dim, per_dim, atol=1e-5)


def test_bernoulli_recon_is_the_negative_log_likelihood():
    x, out = _random_out()
    xb = (x > 0.5).float()  # Bernoulli log_prob needs binary targets for the reference
    terms = elbo_terms(xb, out, 1.0, "bernoulli")
    ref = -Independent(Bernoulli(logits=out.logits), 1).log_prob(xb).mean()
    assert torch.allclose(terms.recon, ref, atol=1e-4)
    # without logits, the probability form gives the same number
    t2 = elbo_terms(xb, out._replace(logits=None), 1.0, "bernoulli")
    assert torch.allclose(t2.recon, ref, atol=1e-3)


def test_gaussian_recon_is_unit_variance_nll_up_to_a_constant():
    x, out = _random_out()
    terms = elbo_terms(x, out, 1.0, "gaussian")
    nll = -Independent(Normal(out.recon, 1.0), 1).log_prob(x).mean()
    assert torch.allclose(terms.recon, nll - 0.5 * x.shape[1] * math.log(2 * math.pi), atol=1e-4)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 4.0])
def test_total_is_recon_plus_beta_kl(beta):
    x, out = _random_out(seed=3)
    t = elbo_terms(x, out, beta, "bernoulli")
    assert torch.allclose(t.loss, t.recon + beta * t.kl)
    assert t.kl >= 0 and (t.kl_per_dim >= 0).all()


def test_kl_is_zero_at_the_prior_and_never_negative():
    assert torch.equal(kl_per_dim(torch.zeros(4, 3), torch.zeros(4, 3)), torch.zeros(4, 3))
    g = torch.Generator().manual_seed(1)
    assert (kl_per_dim(torch.randn(1000, 4, generator=g) * 1e-4, torch.randn(1000, 4, generator=g) * 1e-4) >= 0).all()


def test_free_bits_clamps_each_dimension():
    x, out = _random_out()
    out = out._replace(mu=torch.zeros_like(out.mu), logvar=torch.zeros_like(out.logvar))  # KL = 0 per dim
    t = elbo_terms(x, out, 2.0, "bernoulli", free_bits=0.5)
    assert float(t.kl) == 0.0
    assert torch.allclose(t.kl_objective, torch.tensor(0.5 * 3))
    assert torch.allclose(t.loss, t.recon + 2.0 * 0.5 * 3)


def test_autoencoder_has_no_kl():
    x, out = _random_out()
    out = out._replace(logvar=None)
    t = elbo_terms(x, out, 4.0, "bernoulli")
    assert float(t.kl) == 0.0 and torch.allclose(t.loss, t.recon)


def test_bad_beta_and_likelihood():
    x, out = _random_out()
    with pytest.raises(ValueError):
        elbo_terms(x, out, -1.0, "bernoulli")
    with pytest.raises(ValueError):
        elbo_terms(x, out, 1.0, "poisson")


def test_bce_with_logits_reference_on_continuous_targets():
    x, out = _random_out()
    t = elbo_terms(x, out, 0.0, "bernoulli")
    assert torch.allclose(t.recon, F.binary_cross_entropy_with_logits(out.logits, x, reduction="sum") / len(x))


@pytest.mark.parametrize("kind", ["ae", "vae"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_forward_without_recon_gives_the_same_loss_and_gradients(kind, likelihood):
    """The trainer's forward(recon=False) skips a Bernoulli decoder's sigmoid; the loss and its
    gradients are those of the full forward."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind, 20, (16,), 3, likelihood), "cpu")
    x, eps = torch.rand(6, 20), torch.randn(6, 3)
    grads = []
    for recon in (True, False):
        out = model(x, eps=eps, recon=recon)
        assert (out.recon is None) == (not recon and likelihood == "bernoulli")
        loss = elbo_terms(x, out, 1.5, likelihood).loss
        model.zero_grad()
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-6)
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b)


def test_trainer_optimizer_is_adam_fused_on_cpu_and_updates_like_plain_adam():
    from core.training import make_optimizer
    torch.manual_seed(0)
    a = build_model(ModelConfig("vae", 20, (16,), 3, "bernoulli"), "cpu")
    b = build_model(ModelConfig("vae", 20, (16,), 3, "bernoulli"), "cpu")
    b.load_state_dict(a.state_dict())
    opt_a, opt_b = make_optimizer(a, 1e-2), torch.optim.Adam(b.parameters(), lr=1e-2)
    assert opt_a.defaults["fused"] is True
    x, eps = torch.rand(8, 20), torch.randn(8, 3)
    for model, opt in ((a, opt_a), (b, opt_b)):
        for _ in range(5):
            opt.zero_grad()
            elbo_terms(x, model(x, eps=eps), 1.0, "bernoulli").loss.backward()
            opt.step()
    for pa_, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa_, pb, rtol=1e-5, atol=1e-6)
