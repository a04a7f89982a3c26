"""Model answers to the three exam questions, with live evidence from the shipped models.

The text of each answer lives here once, as a list of *blocks*, and is drawn twice: by the page
(``pages/7_answers.py``, Streamlit Markdown and ``st.latex``) and by the offline handout
(``core.handout``, plain HTML). Every number in the text is computed here from the zoo's models
with the same core functions the other pages call, never typed in:

* Q1: ``core.training.evaluate_model`` (reconstruction term), ``reconstruct``, ``encode_mu`` and
  ``sample_prior`` on the plain autoencoder (``zoo.pretrained(dataset, "ae", 0, 16)``).
* Q2: ``core.reparam.gradient_estimates`` on a real one-dimensional slice of the β = 1 VAE's loss
  (pathwise against score function, common random numbers).
* Q3: ``core.units.heldout_activity`` (Burda et al., 2016 active units), ``core.limits.rate_distortion``
  (the β sweep the limits page plots), and ``encode_stats`` / ``sample_prior`` on the β = 0 and β = 1 VAEs.

Block kinds (tuples): ``("md", text)`` Markdown with inline ``$...$`` maths (a small LaTeX subset that
:func:`inline_html` converts for the handout); ``("eq", tex, html)`` a display equation in LaTeX and in
HTML; ``("fig", key, caption)`` a figure from :func:`core.figures.answers.figures`; ``("weak", answer,
correction)`` a weak exam answer and its correction; ``("link", page, label, icon)`` the page that
explores it. No Streamlit here (pages draw, core computes).
"""
from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence

import numpy as np

from core.data import load_dataset

LATENT_DIM = 16
N_SHOW = 8
N_GRAD = 2000  # draws of eps for the gradient-variance comparison (the same draws for both estimators)

PAGES = {
    "autoencoder": ("pages/1_autoencoder.py", "How an autoencoder works", "🧠"),
    "kl": ("pages/2_kl.py", "KL divergence", "📐"),
    "reparam": ("pages/3_reparam.py", "The reparameterization trick", "🎲"),
    "train": ("pages/4_train.py", "Train a VAE live", "🏋️"),
    "latent": ("pages/5_latent.py", "Latent space explorer", "🗺️"),
    "limits": ("pages/6_limits.py", "Limits of VAEs", "⚠️"),
}

# (deep-learning name, probabilistic name, what it means). Shown in every page's sidebar (core.ui) and on
# the answers page and handout.
GLOSSARY: list[tuple[str, str, str]] = [
    ("encoder", "inference network $q_\\phi(z\\mid x)$",
     "Maps an image $x$ to the parameters $\\mu(x)$, $\\sigma(x)$ of a distribution over codes, an approximation "
     "of the true posterior $p_\\theta(z\\mid x)$. In a plain autoencoder it outputs one code, $z = f_\\phi(x)$."),
    ("decoder", "likelihood, or generative model, $p_\\theta(x\\mid z)$",
     "Maps a code $z$ to a distribution over images; for pixels in [0, 1], Bernoulli means $\\hat x$."),
    ("loss", "−ELBO", "The VAE minimises the negative evidence lower bound: reconstruction term + KL term "
     "(β times the KL term in a β-VAE)."),
    ("KL term", "regulariser, and the rate", "KL(q(z∣x) ‖ p(z)), in nats per image. Averaged over the data it "
     "bounds the information the code carries about $x$ (Hoffman and Johnson, 2016)."),
    ("reconstruction term", "distortion: expected negative log-likelihood",
     "$\\mathbb E_q[-\\log p_\\theta(x\\mid z)]$, in nats per image. With grey pixels and a Bernoulli "
     "likelihood it is a cross-entropy, not a normalised log-likelihood."),
    ("latent code z", "latent variable $z$", "The $K$ numbers the decoder reads: a point in a coordinate system, "
     "not a place where data is stored."),
    ("prior", "$p(z) = \\mathcal N(0, I)$", "The distribution codes are drawn from to generate new images."),
    ("aggregate posterior", "$q(z) = \\mathbb E_x\\, q(z\\mid x)$",
     "Where the encoder actually puts the data's codes. Where it misses the prior's mass, prior samples "
     "decode to junk (the prior hole)."),
    ("active unit", "Burda et al. (2016)", "Dimension $j$ is active when its posterior mean varies with the "
     "input, $\\mathrm{Var}_x(\\mu_j(x)) > 0.01$ on held-out images. A dimension that is not active has collapsed."),
    ("posterior collapse", "$q(z_j\\mid x) = p(z_j)$ for every $x$",
     "A dimension carries no information about any input, so the decoder cannot use it."),
    ("amortisation", "one network for every posterior",
     "The encoder predicts $q(z\\mid x)$ for any $x$ in one pass instead of fitting it image by image; what "
     "this costs is the amortisation gap (Cremer et al., 2018)."),
    ("β", "weight of the KL term (Higgins et al., 2017)",
     "loss = reconstruction + β · KL. β = 1 is the ELBO; β > 1 squeezes the rate; β = 0 removes the KL."),
    ("nats", "units of information, natural log",
     "1 nat = 1/ln 2 ≈ 1.44 bits. Every loss term here is in nats per image."),
]


# ---- inline maths for the handout --------------------------------------------------------------

_SYMBOLS = {
    r"\mathcal N": "𝒩", r"\mathbb E": "𝔼", r"\mathrm{KL}": "KL", r"\operatorname{KL}": "KL",
    r"\varepsilon": "ε", r"\epsilon": "ε", r"\sigma": "σ", r"\mu": "μ", r"\phi": "φ", r"\theta": "θ",
    r"\beta": "β", r"\nabla": "∇", r"\odot": "⊙", r"\ll": "≪", r"\ge": "≥", r"\geq": "≥", r"\le": "≤",
    r"\neq": "≠", r"\approx": "≈", r"\sim": "~", r"\mid": " | ", r"\|": "‖", r"\to": "→", r"\times": "×",
    r"\sum": "Σ", r"\log": "log ", r"\partial": "∂", r"\infty": "∞", r"\cdot": "·", r"\hat x": "x̂",
    r"\ell": "ℓ", r"\tfrac12": "½", r"\frac12": "½", r"\,": " ", r"\;": " ", r"\quad": "  ", r"\{": "{", r"\}": "}",
}


def _tex_fragment_html(tex: str) -> str:
    """A small LaTeX subset (the inline maths used in this module) as HTML with <sub>/<sup>."""
    s = tex
    for k in sorted(_SYMBOLS, key=len, reverse=True):
        s = s.replace(k, _SYMBOLS[k])
    s = re.sub(r"\\(?:text|mathrm|operatorname)\{([^{}]*)\}", r"\1", s)
    s = html.escape(s.replace("-", "−"), quote=False)
    for _ in range(2):  # nested one level
        s = re.sub(r"_\{([^{}]*)\}", r"<sub>\1</sub>", s)
        s = re.sub(r"\^\{([^{}]*)\}", r"<sup>\1</sup>", s)
    s = re.sub(r"_([A-Za-z0-9φθμσ])", r"<sub>\1</sub>", s)
    s = re.sub(r"\^([A-Za-z0-9])", r"<sup>\1</sup>", s)
    return f'<span class="m">{s}</span>'


def inline_html(md: str) -> str:
    """This module's Markdown subset as HTML: ``$...$`` maths, ``**bold**``, ``*italic*``, ``\\`code\\```,
    numbered and bulleted lists, paragraphs. Everything else is escaped."""
    parts = re.split(r"(\$[^$]+\$)", md)
    out = []
    for p in parts:
        if p.startswith("$") and p.endswith("$") and len(p) > 1:
            out.append(_tex_fragment_html(p[1:-1]))
        else:
            t = html.escape(p, quote=False)
            t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
            t = re.sub(r"(?<![*\w])\*(?!\s)(.+?)(?<!\s)\*(?![*\w])", r"<i>\1</i>", t)
            t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
            out.append(t)
    text = "".join(out)
    blocks = []
    for para in re.split(r"\n\s*\n", text.strip()):
        lines = [ln.strip() for ln in para.split("\n") if ln.strip()]
        if lines and all(re.match(r"^\d+\.\s", ln) for ln in lines):
            items = [re.sub(r"^\d+\.\s", "", ln) for ln in lines]
            blocks.append("<ol>" + "".join(f"<li>{it}</li>" for it in items) + "</ol>")
        elif lines and all(ln.startswith("- ") for ln in lines):
            blocks.append("<ul>" + "".join(f"<li>{ln[2:]}</li>" for ln in lines) + "</ul>")
        else:
            blocks.append("<p>" + " ".join(lines) + "</p>")
    return "\n".join(blocks)


# ---- numbers as text ------------------------------------------------------------------------------

def fmt(v: float, digits: int = 1) -> str:
    """A number for the page: fixed digits, no negative zero, no '-inf'."""
    v = float(v)
    if v != v:
        return "n/a"
    if v in (float("inf"), float("-inf")):
        return "∞" if v > 0 else "−∞"
    s = f"{v:.{digits}f}"
    if float(s) == 0:
        s = s.lstrip("-")
    return s.replace("-", "−")


def fmt_sig(v: float, sig: int = 2) -> str:
    """Significant figures, for small and large numbers alike (0.00021, 3.1e+05 -> 310,000)."""
    v = float(v)
    if v == 0 or v != v:
        return fmt(v, 0)
    mag = int(np.floor(np.log10(abs(v))))
    digits = sig - 1 - mag
    r = round(v, digits)
    digits = max(0, digits)
    return (f"{r:,.{digits}f}" if digits else f"{r:,.0f}").replace("-", "−")


def dims(idx: Sequence[int]) -> str:
    """0-based dimension indices as 'z5, z7 and z14' (1-based names, as every page and figure labels them)."""
    names = [f"z{int(j) + 1}" for j in idx]
    if not names:
        return "none"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# ---- evidence ---------------------------------------------------------------------------------------

Loader = Callable[..., object]


def _loader(loader: Loader | None) -> Loader:
    if loader is not None:
        return loader
    from core import zoo
    return zoo.pretrained


def _show(n_val: int, n_show: int, seed: int) -> np.ndarray:
    """Which held-out images to show: the limits page's choice (``core.limits.show_indices``)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_val, size=min(n_show, n_val), replace=False))


def q1_evidence(dataset: str, seed: int = 0, loader: Loader | None = None, n_show: int = N_SHOW) -> dict:
    """The plain autoencoder (latent 16) on its held-out split.

    Returns: sizes (``input_dim`` D, ``hidden_dims``, ``latent_dim`` K, ``image_shape``, ``n_params``,
    ``n_train_numbers``), ``recon_nats`` (mean reconstruction term, nats per image, from
    ``evaluate_model``), ``original``/``recon``/``samples`` (n_show, D) images (samples: decoded
    z ~ N(0, I)), per-dimension ``code_mean``/``code_std`` (K,) of the AE's codes and ``vae_code_std``
    (K,) of the β = 1 VAE's posterior means, for contrast.
    """
    from core.models import count_parameters
    from core.training import encode_mu, evaluate_model, reconstruct, sample_prior
    load = _loader(loader)
    ds = load_dataset(dataset)
    ae = load(dataset, "ae", 0.0, LATENT_DIM)
    val = np.asarray(ae.val_idx)
    x_val = ds.x[val]
    show = _show(len(val), n_show, seed)
    ev = evaluate_model(ae.model, x_val, 0.0, ae.config.likelihood, seed=int(ae.train_config.get("seed", 0)))
    codes = encode_mu(ae.model, x_val).astype(np.float64)
    vae = load(dataset, "vae", 1.0, LATENT_DIM)
    vcodes = encode_mu(vae.model, ds.x[np.asarray(vae.val_idx)]).astype(np.float64)
    return dict(
        dataset=dataset, image_shape=tuple(ds.image_shape), input_dim=int(ae.config.input_dim),
        hidden_dims=[int(h) for h in ae.config.hidden_dims], latent_dim=int(ae.config.latent_dim),
        likelihood=ae.config.likelihood, n_val=int(len(val)), n_params=int(count_parameters(ae.model)),
        n_train_numbers=int((ds.n - len(val)) * ds.dim), recon_nats=float(ev["recon"]),
        original=np.asarray(x_val[show], dtype=np.float32),
        recon=reconstruct(ae.model, x_val[show]).astype(np.float32),
        samples=sample_prior(ae.model, n_show, seed=seed).astype(np.float32),
        code_mean=codes.mean(0), code_std=codes.std(0), vae_code_std=vcodes.std(0),
    )


def recon_slice(model, x, mu, j: int, likelihood: str) -> Callable:
    """f(t) = −log p_θ(x | z) with z = μ(x) except z_j = t: the VAE's reconstruction term along one
    latent coordinate of one image, as an elementwise torch function (n,) -> (n,) for
    ``core.reparam.gradient_estimates`` (float64 in and out; the decoder runs in float32).
    ``x`` (D,), ``mu`` (K,)."""
    import torch

    from core.losses import reconstruction_nll
    from core.models import ModelOutput
    xt = torch.as_tensor(np.array(x, dtype=np.float32)).reshape(1, -1)
    base = torch.as_tensor(np.array(mu, dtype=np.float32)).reshape(1, -1)
    # torch.autograd.grad (in gradient_estimates) differentiates with respect to z only: the shared,
    # read-only model's weights get no .grad and are not changed.

    def f(t):
        n = t.shape[0]
        z = base.expand(n, -1)
        z = torch.cat([z[:, :j], t.to(torch.float32).reshape(-1, 1), z[:, j + 1:]], dim=1)
        if likelihood == "bernoulli":
            logits = model.decode_logits(z)
            out = ModelOutput(torch.sigmoid(logits), z, None, z, logits)
        else:
            out = ModelOutput(model.decode(z), z, None, z, None)
        return reconstruction_nll(xt.expand(n, -1), out, likelihood).to(torch.float64)
    return f


def _summ(v: np.ndarray) -> dict:
    v = np.asarray(v, dtype=np.float64)
    var = float(v.var(ddof=1))
    return dict(mean=float(v.mean()), variance=var, stderr=float(np.sqrt(var / len(v))))


def q2_evidence(dataset: str, seed: int = 0, loader: Loader | None = None, n: int = N_GRAD) -> dict:
    """Pathwise (reparameterization) against score-function gradients on a real example.

    One held-out image x of the β = 1 VAE (the first of ``_show(..., seed)``), its most informative
    latent coordinate j (largest KL_j for this image), and f(t) = −log p_θ(x | z) along z_j = t
    (:func:`recon_slice`). ``gradient_estimates(f, μ_j, σ_j, n, method, seed)`` for both methods, the
    same n draws. Returns ``image``, ``index`` (dataset row), ``j``, ``mu_j``, ``sigma_j``, ``n`` and
    ``est[method][param]`` = {mean, variance (per sample, ddof=1), stderr} for param in dmu, dsigma,
    and ``ratio[param]`` = variance(score) / variance(pathwise).
    """
    from core import reparam
    from core.training import encode_stats
    load = _loader(loader)
    ds = load_dataset(dataset)
    p = load(dataset, "vae", 1.0, LATENT_DIM)
    val = np.asarray(p.val_idx)
    row = int(val[_show(len(val), N_SHOW, seed)[0]])
    x = ds.x[row]
    mu, logvar = encode_stats(p.model, x[None])
    mu, logvar = mu[0].astype(np.float64), logvar[0].astype(np.float64)
    sigma = np.exp(0.5 * logvar)
    kl = 0.5 * (mu ** 2 + sigma ** 2 - 1.0 - logvar)
    j = int(np.argmax(kl))
    f = recon_slice(p.model, x, mu, j, p.config.likelihood)
    est = {}
    for method in ("reparam", "score"):
        dmu, dsig = reparam.gradient_estimates(f, float(mu[j]), float(sigma[j]), n, method, seed)
        est[method] = {"dmu": _summ(dmu), "dsigma": _summ(dsig)}
    ratio = {k: est["score"][k]["variance"] / est["reparam"][k]["variance"] for k in ("dmu", "dsigma")}
    return dict(dataset=dataset, image=np.asarray(x, dtype=np.float32), image_shape=tuple(ds.image_shape),
                index=row, label=int(ds.y[row]), j=j, mu_j=float(mu[j]), sigma_j=float(sigma[j]),
                kl_j=float(kl[j]), n=int(n), est=est, ratio=ratio, seed=int(seed))


def kl_per_dim(mu, logvar) -> np.ndarray:
    """KL(N(μ_j, σ_j²) ‖ N(0, 1)) = ½ (μ_j² + σ_j² − 1 − log σ_j²) per dimension (Kingma and Welling,
    2014, Appendix B). ``mu``, ``logvar`` (K,) -> (K,) nats."""
    mu, logvar = np.asarray(mu, dtype=np.float64), np.asarray(logvar, dtype=np.float64)
    return 0.5 * (mu ** 2 + np.exp(logvar) - 1.0 - logvar)


def q3_evidence(dataset: str, seed: int = 0, loader: Loader | None = None, rd: dict | None = None,
                n_show: int = N_SHOW) -> dict:
    """The KL term at work on the shipped VAEs (latent 16).

    * ``one``: one held-out image of the β = 1 VAE (the same image as Q2): ``mu``, ``logvar``, ``sigma``
      and ``kl`` (K,) per dimension (closed form), ``kl_total``.
    * ``activity``: ``core.units.heldout_activity`` of the β = 1 VAE: ``var_mu``, ``mean_kl`` (K,),
      ``count``, ``weak`` (active dimensions with Var_x μ_j < 0.05: active, but only barely).
    * ``sigma_median``: {β: (K,) median over held-out images of σ_j} for β = 0 and β = 1.
    * ``samples``: {β: (n_show, D)} decoded prior samples z ~ N(0, I) for β = 0 and 1.
    * ``sweep``: the rate-distortion points of ``core.limits.rate_distortion`` (one per β of the
      zoo's sweep: beta, rate, distortion, neg_elbo, active_units), and ``variants`` at β = 4 (plain,
      warmup, freebits).
    """
    from core import units
    from core.training import encode_stats, sample_prior
    load = _loader(loader)
    ds = load_dataset(dataset)
    if rd is None:
        from core import limits
        rd = limits.rate_distortion(dataset, loader=load)
    p1 = load(dataset, "vae", 1.0, LATENT_DIM)
    p0 = load(dataset, "vae", 0.0, LATENT_DIM)
    val = np.asarray(p1.val_idx)
    row = int(val[_show(len(val), N_SHOW, seed)[0]])
    mu, logvar = encode_stats(p1.model, ds.x[row][None])
    mu, logvar = mu[0].astype(np.float64), logvar[0].astype(np.float64)
    kl = kl_per_dim(mu, logvar)
    act = units.heldout_activity(p1, ds)
    sig = {0.0: units.heldout_activity(p0, ds).sigma_median, 1.0: act.sigma_median}
    weak = act.barely_active
    keep = ("beta", "rate", "distortion", "neg_elbo", "active_units")
    return dict(
        dataset=dataset, image_shape=tuple(ds.image_shape), index=row, latent_dim=LATENT_DIM,
        one=dict(mu=mu, logvar=logvar, sigma=np.exp(0.5 * logvar), kl=kl, kl_total=float(kl.sum())),
        activity=dict(var_mu=np.asarray(act.var_mu), mean_kl=np.asarray(act.mean_kl), count=int(act.count),
                      active=np.asarray(act.active), n_images=int(act.n_images), weak=weak),
        sigma_median=sig,
        samples={b: sample_prior(p.model, n_show, seed=seed).astype(np.float32) for b, p in ((0.0, p0), (1.0, p1))},
        sweep=[{k: float(pt[k]) for k in keep} for pt in rd["sweep"]],
        variants={v: {k: float(pt[k]) for k in keep} for v, pt in rd["variants"].items()},
    )


def _point(sweep: Sequence[dict], beta: float) -> dict:
    for pt in sweep:
        if abs(pt["beta"] - beta) < 1e-9:
            return pt
    raise KeyError(f"no model with beta={beta:g} in the sweep")


# ---- the answers ------------------------------------------------------------------------------------

QUESTIONS = [
    ("q1", "Explain the working of an autoencoder with a neat diagram."),
    ("q2", "Why is the reparameterization trick essential in a VAE? Prove it mathematically. How does it enable "
           "backpropagation through stochastic variables?"),
    ("q3", "What is the role of the KL divergence in a VAE, and what are the VAE's limitations?"),
]


def q1_answer(e: dict) -> dict:
    D, K, H = e["input_dim"], e["latent_dim"], e["hidden_dims"]
    h, w = e["image_shape"]
    std = e["code_std"]
    blocks = [
        ("md", f"**Definition.** An autoencoder is a pair of neural networks trained together. The **encoder** "
               f"$f_\\phi$ maps an input $x$ of $D$ numbers to a **code** $z = f_\\phi(x)$ of $K$ numbers, with "
               f"$K \\ll D$; the **decoder** $g_\\theta$ maps the code back to a reconstruction "
               f"$\\hat x = g_\\theta(z)$. Training adjusts $\\phi$ and $\\theta$ so that $\\hat x$ matches $x$. "
               f"The target is the input itself, so no labels are needed (unsupervised learning). The model "
               f"shipped here: $D = {D}$ pixels ({h}×{w} images), hidden layers of {' and '.join(map(str, H))} "
               f"units, and a code of $K = {K}$ numbers, {D / K:.0f} times fewer than the input."),
        ("fig", "q1_diagram", "The diagram to redraw in the exam: x → encoder → z (the bottleneck) → decoder → x̂, "
                              "and the loss comparing x with x̂. Sizes are those of the shipped model."),
        ("md", "**The equations.** For $N$ training images, with squared error or, for pixels in $[0, 1]$, "
               "binary cross-entropy per image:"),
        ("eq", r"z = f_\phi(x),\qquad \hat x = g_\theta(z),\qquad "
               r"\mathcal L(\phi,\theta) = \frac1N\sum_{n=1}^N \ell\big(x_n,\ g_\theta(f_\phi(x_n))\big)",
         "z = f<sub>φ</sub>(x),&nbsp;&nbsp; x̂ = g<sub>θ</sub>(z),&nbsp;&nbsp; "
         "𝓛(φ, θ) = (1/N) Σ<sub>n</sub> ℓ(x<sub>n</sub>, g<sub>θ</sub>(f<sub>φ</sub>(x<sub>n</sub>)))"),
        ("eq", r"\ell_{\text{SE}}(x,\hat x) = \sum_{i=1}^D (x_i-\hat x_i)^2,\qquad "
               r"\ell_{\text{CE}}(x,\hat x) = -\sum_{i=1}^D \big[x_i\log\hat x_i + (1-x_i)\log(1-\hat x_i)\big]",
         "ℓ<sub>SE</sub>(x, x̂) = Σ<sub>i</sub> (x<sub>i</sub> − x̂<sub>i</sub>)²,&nbsp;&nbsp; "
         "ℓ<sub>CE</sub>(x, x̂) = −Σ<sub>i</sub> [x<sub>i</sub> log x̂<sub>i</sub> + (1 − x<sub>i</sub>) "
         "log(1 − x̂<sub>i</sub>)]"),
        ("md", "**How it works, step by step.**\n\n"
               "1. **Encode:** the input passes through the encoder's layers (weights, then a nonlinearity such as "
               "ReLU) down to the $K$ code units.\n"
               "2. **Decode:** the decoder's layers map the code back up to $D$ outputs (a sigmoid keeps pixels "
               "in $[0, 1]$).\n"
               "3. **Compare:** the loss $\\ell(x, \\hat x)$ measures how far the reconstruction is from the input.\n"
               "4. **Backpropagate:** the chain rule gives the loss's gradient with respect to every weight, "
               "through the decoder first and then the encoder.\n"
               "5. **Update and repeat:** a gradient step (here Adam) changes $\\phi$ and $\\theta$ together; "
               "over many mini-batches the code comes to keep what the decoder needs to rebuild the images."),
        ("md", "**Why the bottleneck.** With $K < D$ (an *undercomplete* code) the network cannot simply copy its "
               "input and must keep the information that matters most for reconstruction. A code as large as the "
               "input (*overcomplete*) could learn the identity, so it needs another constraint: a sparsity penalty "
               "(sparse autoencoder), corrupted inputs (denoising autoencoder, Vincent et al., 2008) or a penalty "
               "on the encoder's derivatives (contractive autoencoder, Rifai et al., 2011). A *linear* "
               "autoencoder trained with squared error learns the same subspace as PCA (Baldi and Hornik, 1989); "
               "nonlinear layers generalise PCA to curved surfaces. The variational autoencoder is the "
               "probabilistic kind (questions 2 and 3)."),
        ("fig", "q1_recon", f"Real held-out images (top), the autoencoder's reconstructions (middle), and what its "
                            f"decoder makes of random codes z ~ N(0, I) (bottom)."),
        ("md", f"**Evidence.** On its {e['n_val']} held-out images the autoencoder's reconstruction term is "
               f"**{fmt(e['recon_nats'])} nats per image**: the binary cross-entropy summed over the {D} pixels. "
               f"The pixels are grey levels in $[0, 1]$, not 0 or 1, so this is not a normalised "
               f"log-likelihood and does not reach 0 even for a perfect copy."),
        ("md", "**Uses.** Dimensionality reduction and compression (the code), denoising (train on corrupted "
               "inputs, target the clean ones), anomaly detection (an input unlike the training data "
               "reconstructs badly, so a large reconstruction error flags it), and features for other tasks."),
        ("md", f"**Not a generative model.** Nothing in the loss says where the codes should lie. The shipped "
               f"autoencoder's codes have per-dimension standard deviations from {fmt(std.min(), 2)} to "
               f"{fmt(std.max(), 2)} and means from {fmt(e['code_mean'].min(), 2)} to "
               f"{fmt(e['code_mean'].max(), 2)}, so codes drawn from $\\mathcal N(0, I)$ land where no image was "
               f"encoded, and the decoder turns them into the junk in the bottom row. (The β = 1 VAE's posterior "
               f"means, for contrast, have standard deviations from {fmt(e['vae_code_std'].min(), 2)} to "
               f"{fmt(e['vae_code_std'].max(), 2)}, on the scale of the prior's standard deviation 1: its KL term keeps "
               f"them there, question 3.)"),
        ("weak", "“It learns to compress the data and reconstruct it to generate new data.”",
         "Reconstruction is the training task, not generation. A plain autoencoder has no distribution over "
         "codes to sample from; decoding random codes gives the junk shown above. Generating new data needs a "
         "model of where codes lie: the VAE's prior p(z) = N(0, I), enforced by its KL term."),
        ("weak", "“The latent space is where the data is stored.”",
         f"Nothing is stored in the latent space. The code is a coordinate: {K} numbers computed from each input "
         f"by the encoder, every time. What the network learns is in its weights ({e['n_params']:,} of them, "
         f"shared by every image); the latent space is the coordinate system in which each input has a point."),
        ("link", "autoencoder"), ("link", "latent"),
    ]
    summary = ("An **encoder** $f_\\phi$ squeezes an input $x$ ($D$ numbers) into a code $z$ ($K \\ll D$ numbers) "
               "and a **decoder** $g_\\theta$ rebuilds $\\hat x$ from it; backpropagation trains both to make "
               "$\\hat x$ match $x$, so the target is the input itself. The narrow code (the bottleneck) forces the "
               "network to keep what matters, which is why a plain autoencoder compresses but cannot generate.")
    return dict(key="q1", title="Q1 · How an autoencoder works", question=QUESTIONS[0][1], summary=summary,
                main="q1_diagram", blocks=blocks)


def q2_answer(e: dict) -> dict:
    r, s = e["est"]["reparam"], e["est"]["score"]
    ratio_mu, ratio_sig = e["ratio"]["dmu"], e["ratio"]["dsigma"]
    j = e["j"]
    blocks = [
        ("md", "**The setting.** A VAE's encoder outputs $\\mu_\\phi(x)$ and $\\sigma_\\phi(x)$ of "
               "$q_\\phi(z\\mid x) = \\mathcal N(\\mu_\\phi(x), \\mathrm{diag}\\,\\sigma^2_\\phi(x))$, and training "
               "maximises the evidence lower bound (ELBO) (Kingma and Welling, 2014); the loss is −ELBO:"),
        ("eq", r"\mathrm{ELBO}(\theta,\phi;x) = \mathbb{E}_{q_\phi(z\mid x)}\big[\log p_\theta(x\mid z)\big]"
               r" - \mathrm{KL}\big(q_\phi(z\mid x)\,\|\,p(z)\big)",
         "ELBO(θ, φ; x) = 𝔼<sub>q<sub>φ</sub>(z|x)</sub>[log p<sub>θ</sub>(x | z)] − "
         "KL(q<sub>φ</sub>(z|x) ‖ p(z))"),
        ("md", "Training needs $\\nabla_\\phi$ of the first term, an expectation whose *distribution* depends "
               "on $\\phi$. Write $f(z) = \\log p_\\theta(x\\mid z)$."),
        ("md", "**Step 1: why ordinary backpropagation fails.** The gradient lands on the density, not on $f$:"),
        ("eq", r"\nabla_\phi\,\mathbb{E}_{q_\phi}[f(z)] = \nabla_\phi\!\int q_\phi(z)\,f(z)\,dz"
               r" = \int f(z)\,\nabla_\phi q_\phi(z)\,dz",
         "∇<sub>φ</sub> 𝔼<sub>q<sub>φ</sub></sub>[f(z)] = ∇<sub>φ</sub> ∫ q<sub>φ</sub>(z) f(z) dz = "
         "∫ f(z) ∇<sub>φ</sub>q<sub>φ</sub>(z) dz"),
        ("md", "The right-hand side is not an expectation under $q_\\phi$ ($\\nabla_\\phi q_\\phi$ integrates to 0 "
               "and is negative in places), so averaging over samples of $q_\\phi$ does not estimate it. In the "
               "computation graph, a sampled $z$ is a leaf with no edge back to $\\mu$ and $\\sigma$: "
               "backpropagation stops at the sampler, and “sample, then differentiate $f$” gives 0 for $\\phi$."),
        ("md", "**Step 2: reparameterize.** Draw the noise from a fixed distribution and build $z$ from it with "
               "a deterministic, differentiable function of $\\phi$ (Kingma and Welling, 2014; Rezende et al., 2014):"),
        ("eq", r"\epsilon \sim \mathcal N(0, I),\qquad z = \mu_\phi(x) + \sigma_\phi(x)\odot\epsilon"
               r"\quad\Longrightarrow\quad z \sim q_\phi(z\mid x)",
         "ε ~ 𝒩(0, I),&nbsp;&nbsp; z = μ<sub>φ</sub>(x) + σ<sub>φ</sub>(x) ⊙ ε &nbsp;⟹&nbsp; "
         "z ~ q<sub>φ</sub>(z | x)"),
        ("md", "**Step 3: the proof.** Same distribution, so the same expectation, now over $\\epsilon$, whose "
               "distribution does not depend on $\\phi$; the gradient can move inside when $f$ is "
               "differentiable and the integrand's gradient is dominated by an integrable function:"),
        ("eq", r"\nabla_\phi\,\mathbb{E}_{q_\phi(z\mid x)}[f(z)] = \nabla_\phi\,\mathbb{E}_{\epsilon}"
               r"\big[f(\mu_\phi+\sigma_\phi\odot\epsilon)\big] = \mathbb{E}_{\epsilon}\big[\nabla_\phi "
               r"f(\mu_\phi+\sigma_\phi\odot\epsilon)\big] \approx \frac1L\sum_{l=1}^L \nabla_\phi "
               r"f(\mu_\phi+\sigma_\phi\odot\epsilon^{(l)})",
         "∇<sub>φ</sub> 𝔼<sub>q<sub>φ</sub>(z|x)</sub>[f(z)] = ∇<sub>φ</sub> 𝔼<sub>ε</sub>[f(μ<sub>φ</sub> + "
         "σ<sub>φ</sub> ⊙ ε)] = 𝔼<sub>ε</sub>[∇<sub>φ</sub> f(μ<sub>φ</sub> + σ<sub>φ</sub> ⊙ ε)] ≈ (1/L) "
         "Σ<sub>l</sub> ∇<sub>φ</sub> f(μ<sub>φ</sub> + σ<sub>φ</sub> ⊙ ε<sup>(l)</sup>)"),
        ("md", "Each term is the exact derivative of one sample's loss, so the average is an **unbiased** "
               "estimate of the true gradient. With $L = 1$ sample per data point this is the SGVB estimator "
               "(Kingma and Welling, 2014)."),
        ("md", "**Step 4: how backpropagation passes through the random node.** The Jacobians of "
               "$z = \\mu + \\sigma\\odot\\epsilon$ are $\\partial z/\\partial\\mu = I$ and "
               "$\\partial z/\\partial\\sigma = \\mathrm{diag}(\\epsilon)$, so"),
        ("eq", r"\frac{\partial \mathcal L}{\partial \mu} = \frac{\partial \mathcal L}{\partial z},\qquad "
               r"\frac{\partial \mathcal L}{\partial \sigma} = \frac{\partial \mathcal L}{\partial z}\odot\epsilon,"
               r"\qquad \frac{\partial \mathcal L}{\partial \phi} = \frac{\partial \mathcal L}{\partial \mu}"
               r"\frac{\partial \mu}{\partial \phi} + \frac{\partial \mathcal L}{\partial \sigma}"
               r"\frac{\partial \sigma}{\partial \phi}",
         "∂𝓛/∂μ = ∂𝓛/∂z,&nbsp;&nbsp; ∂𝓛/∂σ = ∂𝓛/∂z ⊙ ε,&nbsp;&nbsp; ∂𝓛/∂φ = (∂𝓛/∂μ)(∂μ/∂φ) + "
         "(∂𝓛/∂σ)(∂σ/∂φ)"),
        ("fig", "q2_graph", "The computation graph without and with the trick. Left: z is drawn by a sampler, "
                            "and the backward pass (red) stops there. Right: the noise ε is an input like x, "
                            "every edge from the loss to φ is differentiable, and the gradient reaches the encoder."),
        ("md", "The only random quantity, $\\epsilon$, enters as an *input*, like a data point; every edge from "
               "the loss back to $\\phi$ is a deterministic, differentiable function, so ordinary "
               "backpropagation (autograd) computes the gradient. In PyTorch this is `Normal(mu, sigma).rsample()`."),
        ("md", "**Step 5: why it is essential, not just convenient.** The general alternative is the "
               "score-function (REINFORCE) estimator (Williams, 1992), from "
               "$\\nabla_\\phi q_\\phi = q_\\phi\\nabla_\\phi \\log q_\\phi$:"),
        ("eq", r"\nabla_\phi\,\mathbb{E}_{q_\phi}[f(z)] = \mathbb{E}_{q_\phi}\big[f(z)\,\nabla_\phi\log q_\phi(z)\big]",
         "∇<sub>φ</sub> 𝔼<sub>q<sub>φ</sub></sub>[f(z)] = 𝔼<sub>q<sub>φ</sub></sub>[f(z) ∇<sub>φ</sub> log "
         "q<sub>φ</sub>(z)]"),
        ("md", "It is also unbiased and works even for non-differentiable $f$, but it multiplies the value of "
               "$f$ by zero-mean noise and never uses how $f$ changes, so its variance is far larger."),
        ("fig", "q2_variance", "Per-sample variance of the two gradient estimators on the same draws, log scale: "
                               "the shipped β = 1 VAE, one held-out image, one latent coordinate."),
        ("md", f"**Evidence, on the shipped VAE.** For held-out image #{e['index']} ({'an' if e['label'] == 8 else 'a'} "
               f"{e['label']}), take its most "
               f"informative latent coordinate $z_{{{j + 1}}}$ ($\\mu = {fmt(e['mu_j'], 3)}$, "
               f"$\\sigma = {fmt(e['sigma_j'], 3)}$) and $f(z_{{{j + 1}}}) = -\\log p_\\theta(x\\mid z)$ with the "
               f"other coordinates at their means. On the same {e['n']:,} draws, the two unbiased estimators "
               f"give ∂/∂μ ≈ {fmt(r['dmu']['mean'], 2)} ± {fmt(r['dmu']['stderr'], 2)} (pathwise) and "
               f"{fmt(s['dmu']['mean'], 1)} ± {fmt(s['dmu']['stderr'], 1)} (score function, ± one standard "
               f"error), and the score function's per-sample variance is **{fmt_sig(ratio_mu, 2)}×** the "
               f"pathwise one for ∂/∂μ and {fmt_sig(ratio_sig, 2)}× for ∂/∂σ. To reach the same accuracy it "
               f"needs that many times more samples (plain estimators, without baselines or control variates)."),
        ("weak", "“It enables better tuning.”",
         "It is not a hyperparameter or a tuning device, and it does not change what is optimised: the objective "
         "is the same ELBO. It changes how the gradient of that objective is computed."),
        ("weak", "“It enables backpropagation, meaning previous values can be changed.”",
         "Backpropagation computes derivatives by the chain rule; changing values is the optimiser's update. "
         "What the trick provides is a differentiable path from the loss to μ and σ (∂z/∂μ = I, "
         "∂z/∂σ = diag ε), which a sample drawn by a sampler does not have."),
        ("weak", "“It improves stability and performance.”",
         f"Too vague to earn marks. The precise claim: it gives an unbiased gradient estimator with low variance "
         f"(here {fmt_sig(ratio_mu, 2)}× lower than the score function's), computed by ordinary backpropagation "
         f"with the randomness moved into an input. Without it, learning must rely on a far noisier estimator "
         f"and is much slower."),
        ("link", "reparam"), ("link", "train"),
    ]
    summary = ("A VAE's loss is an expectation over a random code $z \\sim q_\\phi(z\\mid x)$, and a sampled $z$ "
               "has no path back to the encoder's parameters $\\phi$. Writing $z = \\mu_\\phi(x) + \\sigma_\\phi(x)"
               "\\odot\\epsilon$ with $\\epsilon \\sim \\mathcal N(0, I)$ moves the randomness into an input, so "
               "the gradient becomes an average of ordinary backpropagated gradients: unbiased, and with low "
               f"variance. On the shipped VAE the alternative, the score-function estimator, was "
               f"{fmt_sig(ratio_mu, 2)}× noisier.")
    return dict(key="q2", title="Q2 · Why the reparameterization trick is essential", question=QUESTIONS[1][1],
                summary=summary, main="q2_variance", blocks=blocks)


def q3_answer(e: dict) -> dict:
    one, act = e["one"], e["activity"]
    s0, s1 = e["sigma_median"][0.0], e["sigma_median"][1.0]
    sweep = sorted(e["sweep"], key=lambda p: p["beta"])
    b1 = _point(sweep, 1.0)
    lo, hi = sweep[0], sweep[-1]
    lo_pos = next(p for p in sweep if p["beta"] > 0)
    K = e["latent_dim"]
    var = e["variants"]
    weak_txt = (f" Some are active only barely: {dims(act['weak'])} have Var$_x$ μ of at most 0.05, so a traversal "
                f"of them changes the image little." if act["weak"] else "")
    n_off = K - act["count"]
    if n_off:
        weak_txt += (f" The other {n_off} {'has' if n_off == 1 else 'have'} collapsed: whatever the image, "
                     f"{'its posterior mean stays' if n_off == 1 else 'their posterior means stay'} put.")
    kl_top = int(np.argmax(one["kl"]))
    blocks = [
        ("md", "**Where the KL term comes from.** For any $q(z\\mid x)$, the log-likelihood splits exactly into "
               "the ELBO and a KL divergence to the true posterior:"),
        ("eq", r"\log p_\theta(x) = \underbrace{\mathbb{E}_{q_\phi(z\mid x)}\big[\log p_\theta(x\mid z)\big]"
               r" - \mathrm{KL}\big(q_\phi(z\mid x)\,\|\,p(z)\big)}_{\mathrm{ELBO}} + "
               r"\mathrm{KL}\big(q_\phi(z\mid x)\,\|\,p_\theta(z\mid x)\big) \;\ge\; \mathrm{ELBO}",
         "log p<sub>θ</sub>(x) = [𝔼<sub>q<sub>φ</sub>(z|x)</sub>[log p<sub>θ</sub>(x | z)] − KL(q<sub>φ</sub>(z|x) ‖ "
         "p(z))]<sub>ELBO</sub> + KL(q<sub>φ</sub>(z|x) ‖ p<sub>θ</sub>(z|x)) ≥ ELBO"),
        ("md", "The last KL is ≥ 0 (Gibbs' inequality; Jensen's inequality gives the same bound), so raising the "
               "ELBO raises $\\log p_\\theta(x)$ or pulls $q$ towards the true posterior. The KL term *in the "
               "loss* is the one against the prior $p(z) = \\mathcal N(0, I)$. For a diagonal Gaussian it has a "
               "closed form (Kingma and Welling, 2014, Appendix B):"),
        ("eq", r"\mathrm{KL}\big(\mathcal N(\mu,\mathrm{diag}\,\sigma^2)\,\|\,\mathcal N(0,I)\big) = \frac12\sum_{j=1}^K"
               r"\big(\mu_j^2 + \sigma_j^2 - 1 - \log\sigma_j^2\big)",
         "KL(𝒩(μ, diag σ²) ‖ 𝒩(0, I)) = ½ Σ<sub>j</sub> (μ<sub>j</sub>² + σ<sub>j</sub>² − 1 − log σ<sub>j</sub>²)"),
        ("fig", "q3_kl", f"The KL term of one held-out image (#{e['index']}), per latent dimension, from the "
                         f"formula above: {fmt(one['kl_total'], 2)} nats in total."),
        ("md", f"For this image the KL term is **{fmt(one['kl_total'], 2)} nats**; the largest share, "
               f"{fmt(one['kl'][kl_top], 2)} nats, is in $z_{{{kl_top + 1}}}$ ($\\mu = {fmt(one['mu'][kl_top], 2)}$, "
               f"$\\sigma = {fmt(one['sigma'][kl_top], 3)}$). A dimension with under 0.01 nats here carries almost "
               f"no information about *this image*; whether it has collapsed is a question about all images "
               f"(below)."),
        ("md", "**The mechanism, term by term.**\n\n"
               "- $-\\log\\sigma_j^2$ grows without bound as $\\sigma_j \\to 0$: it stops the encoder from switching "
               "its noise off. Without it the encoder shrinks $\\sigma$ until the VAE is a plain autoencoder.\n"
               "- Because the noise stays on, the decoder sees $z = \\mu + \\sigma\\odot\\epsilon$, a different "
               "point near $\\mu(x)$ every time, and must reconstruct $x$ from all of them: nearby codes must "
               "decode to similar images. That is where the smoothness of the latent space comes from.\n"
               "- $\\mu_j^2$ pulls every code towards the origin, where the prior puts its samples, so decoding "
               "$z \\sim \\mathcal N(0, I)$ lands among the encoded data and gives plausible images.\n"
               "- $\\sigma_j^2 - 1 - \\log\\sigma_j^2$ is smallest at $\\sigma_j = 1$: the noise cannot grow "
               "beyond the prior's width for free either."),
        ("fig", "q3_sigma", "Median posterior standard deviation σ over the held-out images, per dimension, "
                            "log scale: the VAE trained without the KL term (β = 0) against β = 1."),
        ("md", f"**Evidence.** The same network trained with β = 0 (no KL term) has a median σ of "
               f"{fmt_sig(np.median(s0), 2)} over its dimensions: the noise is switched off, and its prior samples "
               f"decode to smeared shapes that are mostly not digits. With β = 1 the median σ is {fmt_sig(np.median(s1), 2)}, and prior samples decode to "
               f"digit-like images:"),
        ("fig", "q3_samples", "Decoded prior samples z ~ N(0, I): the VAE without its KL term (β = 0, top) and "
                              "with it (β = 1, bottom)."),
        ("md", "**The rate.** Averaged over the data, the KL term splits into the information the code carries "
               "and a mismatch between where codes lie and the prior (Hoffman and Johnson, 2016):"),
        ("eq", r"\mathbb{E}_{x}\,\mathrm{KL}\big(q(z\mid x)\,\|\,p(z)\big) = I_q(x; z) + "
               r"\mathrm{KL}\big(q(z)\,\|\,p(z)\big),\qquad q(z) = \mathbb{E}_x\, q(z\mid x)",
         "𝔼<sub>x</sub> KL(q(z|x) ‖ p(z)) = I<sub>q</sub>(x; z) + KL(q(z) ‖ p(z)),&nbsp;&nbsp; q(z) = "
         "𝔼<sub>x</sub> q(z|x)"),
        ("md", "So the KL term limits how much information about $x$ the code can carry: it is the **rate**, and "
               "the reconstruction term is the **distortion**. The β-VAE weights it, loss = distortion + β · rate "
               "(Higgins et al., 2017), and sweeping β traces a rate–distortion trade-off (Alemi et al., 2018). "
               "The KL is not symmetric, $\\mathrm{KL}(q\\|p) \\neq \\mathrm{KL}(p\\|q)$; the VAE's fit of $q$ to "
               "the true posterior uses the reverse direction $\\mathrm{KL}(q\\,\\|\\,p_\\theta(z\\mid x))$, which "
               "tends to prefer a $q$ that sits inside one mode to one that covers them all."),
        ("fig", "q3_rd", "Held-out rate (KL term) against distortion (reconstruction term), nats per image, for "
                         "every VAE of the β sweep; labels give β and the active units (Burda et al., 2016)."),
        ("md", f"**Evidence.** On the held-out images, β = {lo_pos['beta']:g} gives "
               f"rate {fmt(lo_pos['rate'])} and distortion {fmt(lo_pos['distortion'])} nats per image; β = 1 "
               f"gives {fmt(b1['rate'])} and {fmt(b1['distortion'])}; β = {hi['beta']:g} gives "
               f"{fmt(hi['rate'])} and {fmt(hi['distortion'])}, with {int(hi['active_units'])} of {K} units "
               f"active. At β = 1, −ELBO = distortion + rate = {fmt(b1['neg_elbo'])} nats per image (a Bernoulli "
               f"cross-entropy on grey pixels, so not a normalised likelihood). The β = 1 VAE has "
               f"**{act['count']} of {K}** dimensions active (Var$_x$ μ$_j$ > 0.01 on {act['n_images']} held-out "
               f"images, Burda et al., 2016).{weak_txt}"),
        ("md", "**The limitations, each with its cause.**\n\n"
               "1. **Blurry outputs.** A factorised Gaussian or Bernoulli likelihood makes the decoder output the "
               "*mean* of the images that are plausible for a code, and overlapping posteriors (the noise) add to "
               "that averaging. The cause is the likelihood and the noise, not the KL term alone.\n"
               f"2. **Over-regularisation and posterior collapse.** Some dimensions carry no information about any "
               f"input, $q(z_j\\mid x) = p(z_j)$ for all $x$. Causes: the objective (a large β: at β = "
               f"{hi['beta']:g}, {int(hi['active_units'])} of {K} units stay active), optimisation with a strong "
               f"decoder that learns to ignore $z$ (Bowman et al., 2016), and a likelihood variance that acts as a "
               f"hidden β (Lucas et al., 2019). Remedies: KL warm-up (Bowman et al., 2016), free bits (Kingma et "
               f"al., 2016), δ-VAE (Razavi et al., 2019), cyclical annealing (Fu et al., 2019). At β = 4 the "
               f"shipped models keep {int(var.get('', {}).get('active_units', 0))} (plain), "
               f"{int(var.get('warmup', {}).get('active_units', 0))} (warm-up) and "
               f"{int(var.get('freebits', {}).get('active_units', 0))} (free bits) units active.\n"
               "3. **The prior hole.** The aggregate posterior $q(z) = \\mathbb E_x\\, q(z\\mid x)$ does not match "
               "$p(z)$, so some prior samples land where no data was encoded and decode to junk. Remedies: learned "
               "priors such as the VampPrior (Tomczak and Welling, 2018), two-stage VAEs (Dai and Wipf, 2019).\n"
               "4. **Only a bound.** The ELBO is below $\\log p(x)$ by $\\mathrm{KL}(q\\,\\|\\,p_\\theta(z\\mid x))$; "
               "part of that gap is the amortisation gap of one encoder for all images (Cremer et al., 2018), and "
               "a diagonal Gaussian posterior is restrictive. Likelihoods are estimated by importance sampling "
               "(the IWAE bound, Burda et al., 2016).\n"
               "5. **Complex data.** Small VAEs like these fail on faces and natural images, but large "
               "hierarchical VAEs do generate faces (NVAE, Vahdat and Kautz, 2020; VDVAE, Child, 2021): the limit "
               "is capacity and the likelihood, not impossibility.\n"
               "6. **No guarantee of meaning.** Nothing guarantees that the latent factors are disentangled or "
               "interpretable; without inductive biases or supervision it cannot be guaranteed (Locatello et al., "
               "2019)."),
        ("weak", "“The KL ensures a smooth, continuous, structured latent space.”",
         f"That names an outcome and no mechanism. The mechanism: the −log σ² part keeps the noise on (without "
         f"the KL term the median σ here is {fmt_sig(np.median(s0), 2)}); the noise makes nearby codes decode to "
         f"similar images, which is the smoothness; the μ² part keeps codes where the prior samples, so prior "
         f"samples decode to plausible images."),
        ("weak", "“VAEs give blurry output.”",
         "A limitation without its cause. The factorised likelihood makes the decoder output the mean of the "
         "plausible images for a code, and the posterior noise averages over neighbouring codes. The limits "
         "page measures the sharpness lost."),
        ("weak", "“VAEs suffer from over-regularisation.”",
         f"Say what is over-regularised and why: with too large a β (or a likelihood variance acting as a hidden "
         f"β) the rate costs more than the distortion it saves, so dimensions collapse; here β = {hi['beta']:g} "
         f"leaves {int(hi['active_units'])} of {K} units active and raises the distortion from "
         f"{fmt(b1['distortion'])} to {fmt(hi['distortion'])} nats per image."),
        ("weak", "“VAEs cannot generate complex data such as faces.”",
         "False as stated: NVAE (Vahdat and Kautz, 2020) and VDVAE (Child, 2021) generate faces. Small VAEs "
         "with factorised likelihoods fail on them; the limit is capacity and the likelihood."),
        ("link", "kl"), ("link", "limits"), ("link", "train"),
    ]
    summary = ("The KL term $\\mathrm{KL}(q_\\phi(z\\mid x)\\,\\|\\,\\mathcal N(0, I))$ keeps each image's code "
               "distribution close to the prior: its $-\\log\\sigma^2$ part keeps the noise on, so nearby codes must "
               "decode to similar images, and its $\\mu^2$ part keeps codes where prior samples land, so sampled "
               "codes decode to plausible images. Averaged over the data it limits the information the code carries "
               "(the rate), and too much of it collapses dimensions; the other limitations (blur, the prior hole, "
               "a bound instead of the likelihood) each have their own cause.")
    return dict(key="q3", title="Q3 · The KL term and the VAE's limitations", question=QUESTIONS[2][1],
                summary=summary, main="q3_sigma", blocks=blocks)


def answers(e1: dict, e2: dict, e3: dict) -> list[dict]:
    """The three answers: dicts with key, title, question, summary (the key idea, at most three
    sentences), main (the key figure's name) and blocks."""
    return [q1_answer(e1), q2_answer(e2), q3_answer(e3)]


def figure_keys(sections: Sequence[dict]) -> list[str]:
    return [b[1] for s in sections for b in s["blocks"] if b[0] == "fig"]
