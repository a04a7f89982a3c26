"""MLP autoencoder and variational autoencoder.

Shapes: ``x`` is (B, D) with values in [0, 1]; latents are (B, K).

The VAE follows Kingma & Welling, "Auto-Encoding Variational Bayes" (2014):
the encoder outputs the mean ``mu`` and log-variance ``logvar`` of a diagonal
Gaussian q(z|x); ``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)``
(the reparameterization trick, section 2.4); the decoder outputs either
Bernoulli means (``likelihood="bernoulli"``, sigmoid output) or Gaussian means
with unit variance (``likelihood="gaussian"``, identity output).
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import torch
from torch import nn

KINDS = ("ae", "vae")
LIKELIHOODS = ("bernoulli", "gaussian")
MAX_HIDDEN = 1024
MAX_LAYERS = 4
LATENT_RANGE = (1, 64)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of an MLP (variational) autoencoder.

    ``hidden_dims`` are the encoder's hidden widths; the decoder mirrors them.
    """

    kind: str = "vae"
    input_dim: int = 784
    hidden_dims: tuple[int, ...] = (256, 128)
    latent_dim: int = 16
    likelihood: str = "bernoulli"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_dims", tuple(int(h) for h in self.hidden_dims))
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if not 1 <= int(self.input_dim) <= 4096:
            raise ValueError(f"input_dim must be in 1..4096, got {self.input_dim}")
        lo, hi = LATENT_RANGE
        if not lo <= int(self.latent_dim) <= hi:
            raise ValueError(f"latent_dim must be in {lo}..{hi}, got {self.latent_dim}")
        if not 1 <= len(self.hidden_dims) <= MAX_LAYERS:
            raise ValueError(f"hidden_dims needs 1..{MAX_LAYERS} layers, got {len(self.hidden_dims)}")
        if any(not 2 <= h <= MAX_HIDDEN for h in self.hidden_dims):
            raise ValueError(f"each hidden width must be in 2..{MAX_HIDDEN}, got {self.hidden_dims}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden_dims"] = list(self.hidden_dims)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {k: d[k] for k in ("kind", "input_dim", "hidden_dims", "latent_dim", "likelihood") if k in d}
        return cls(**known)


class ModelOutput(NamedTuple):
    """``recon``: (B, D) decoder mean in data space; ``mu``: (B, K); ``logvar``: (B, K) or None (AE);
    ``z``: (B, K); ``logits``: (B, D) pre-sigmoid decoder output (lets the BCE use the stable form)."""

    recon: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor | None
    z: torch.Tensor
    logits: torch.Tensor | None = None


def get_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU. No page requires a GPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
    """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I) (Kingma & Welling 2014, eq. 10).

    ``eps`` may be given (same shape as ``mu``) so that tests and diagrams can fix the noise.
    """
    if eps is None:
        eps = torch.randn_like(mu)
    return mu + torch.exp(0.5 * logvar) * eps


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class AutoEncoder(nn.Module):
    """Deterministic MLP autoencoder: x (B, D) -> z (B, K) -> recon (B, D)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        h = list(cfg.hidden_dims)
        self.encoder = _mlp([cfg.input_dim, *h])
        self.head_mu = nn.Linear(h[-1], cfg.latent_dim)
        self.decoder = _mlp([cfg.latent_dim, *reversed(h), cfg.input_dim])

    @property
    def is_vae(self) -> bool:
        return False

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last hidden layer of the encoder, (B, H)."""
        return torch.relu(self.encoder(x))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.head_mu(self.features(x)), None

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-activation decoder output, (B, D)."""
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder mean in data space, (B, D): sigmoid for Bernoulli, identity for Gaussian."""
        return self._link(self.decode_logits(z))

    def decoder_output(self, z: torch.Tensor, mu=None, logvar=None) -> ModelOutput:
        """Decode codes z (B, K) into a full ``ModelOutput`` (recon and logits), for losses on codes the
        caller chose (e.g. reparameterised draws with their own graph)."""
        return self._output(self.decode_logits(z), mu, logvar, z, recon=True)

    def _link(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.cfg.likelihood == "bernoulli" else logits

    def _output(self, logits: torch.Tensor, mu, logvar, z, recon: bool) -> ModelOutput:
        # recon=False: the caller needs only the logits (the loss), so a Bernoulli decoder skips its
        # sigmoid (``recon`` is then None). A Gaussian decoder's mean is its logits: always given.
        keep = recon or self.cfg.likelihood != "bernoulli"
        return ModelOutput(self._link(logits) if keep else None, mu, logvar, z, logits)

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None, recon: bool = True) -> ModelOutput:
        """``recon=False`` leaves out a Bernoulli decoder's mean (``recon`` None; the loss uses the logits)."""
        mu, _ = self.encode(x)
        return self._output(self.decode_logits(mu), mu, None, mu, recon)

    def activations(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> list[tuple[str, torch.Tensor]]:
        """Every layer's output for ``x`` in forward order, as (name, (B, width)) pairs.

        Used by the diagram: the colours it draws are these real values.
        """
        acts = [("input", x)]
        h = x
        for i, lin in enumerate(m for m in self.encoder if isinstance(m, nn.Linear)):
            h = torch.relu(lin(h))
            acts.append((f"encoder {i + 1}", h))
        mu = self.head_mu(h)
        if self.is_vae:
            logvar = self.head_logvar(h)
            eps = torch.randn_like(mu) if eps is None else eps
            z = reparameterize(mu, logvar, eps)
            acts += [("mu", mu), ("sigma", torch.exp(0.5 * logvar)), ("eps", eps)]
        else:
            z = mu
        acts.append(("z", z))
        dec = [m for m in self.decoder if isinstance(m, nn.Linear)]
        g = z
        for j, lin in enumerate(dec[:-1]):
            g = torch.relu(lin(g))
            acts.append((f"decoder {j + 1}", g))
        acts.append(("output", self._link(dec[-1](g))))
        return acts


class VAE(AutoEncoder):
    """MLP VAE with a diagonal Gaussian posterior q(z|x) = N(mu, diag(exp(logvar)))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.head_logvar = nn.Linear(cfg.hidden_dims[-1], cfg.latent_dim)

    @property
    def is_vae(self) -> bool:
        return True

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.head_mu(h), self.head_logvar(h)

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None, recon: bool = True) -> ModelOutput:
        """In ``eval()`` mode with no ``eps``, z = mu (the posterior mean), so outputs are deterministic.
        ``recon=False`` leaves out a Bernoulli decoder's mean (``recon`` None; the loss uses the logits)."""
        mu, logvar = self.encode(x)
        if eps is None and not self.training:
            z = mu
        else:
            z = reparameterize(mu, logvar, eps)
        return self._output(self.decode_logits(z), mu, logvar, z, recon)


def build_model(cfg: ModelConfig, device: str = "auto") -> AutoEncoder:
    """Build an :class:`AutoEncoder` (``kind="ae"``) or :class:`VAE` (``kind="vae"``) on ``device``."""
    model = VAE(cfg) if cfg.kind == "vae" else AutoEncoder(cfg)
    return model.to(get_device(device))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """``with eval_mode(model):`` runs the block in eval mode and restores the model's mode after
    it, even when the block raises (shared read-only models must not be left in either mode)."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)
