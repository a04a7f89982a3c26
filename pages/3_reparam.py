"""The reparameterization trick (exam question 2): the problem, the trick with its condition, the SGVB
estimator, the Jacobians checked on a real encoder, the score-function alternative, the race between the
two estimators on a real VAE, and the weak answers corrected.

Thin page: widgets and text here; the maths is in ``core.reparam``; the figures in
``core.figures.reparam``.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from core import ui

ctx = ui.page("The reparameterization trick", "🎲",
              "Why is the reparameterization trick essential in a VAE? Prove it mathematically. How does it enable "
              "backpropagation through stochastic variables?")
torch = ui.configure_torch()

from core import reparam  # noqa: E402  (after configure_torch: one intra-op thread)
from core.data import load_dataset  # noqa: E402
from core.figures import image_grid  # noqa: E402
from core.figures import reparam as rfig  # noqa: E402
from core.units import SMALL_KL_NATS  # noqa: E402

fmt = reparam.fmt
F_LABELS = {"z^2": "z²", "(z-a)^2": "(z − a)²", "sin z": "sin z", "step": "step: 1[z > a]"}
N_CHOICES = [100, 300, 1000, 3000, 10_000, 30_000, 100_000]
N_AVG = 256  # draws of eps for the "on average" reading of the VAE gradients
N_RACE = 2000  # draws of eps for the estimator race on the real VAE
USES_A = ("(z-a)^2", "step")
BETA, K = 1.0, 16  # the shipped VAE every real-model section uses

SCENES = [
    ("The key idea", "z = μ + σ·ε turns the random node into an input; press ▶ to watch the backward pass."),
    ("The problem", "The gradient of an expectation lands on the sampling density; a sampled z has no path back."),
    ("The trick and the SGVB estimator", "Change of variables, the condition for moving ∇ inside, one sample per image."),
    ("The chain rule on a real encoder", "∂z/∂μ = I and ∂z/∂σ = diag(ε), checked by autograd on a trained VAE."),
    ("The score function", "Also unbiased, needs no derivative of f, and far noisier: a live experiment."),
    ("The race on a real VAE", "Both estimators on the same draws: variance ratios and two training runs."),
    ("What to write in the exam", "The weak answers, corrected."),
]
scene = ui.scenes("rp", SCENES)
show = ui.scene_filter(scene)  # every section normally; one scene at a time in presenter mode


# ---- cached computations (pure, keyed by their inputs) --------------------------------------------

@st.cache_data(max_entries=32, show_spinner=False)
def experiment(f: str, mu: float, sigma: float, n: int, seed: int, a: float) -> dict:
    return reparam.compare_estimators(f, mu, sigma, n, seed, a)


@st.cache_data(max_entries=64, show_spinner=False)
def one_sample(f: str, mu: float, sigma: float, seed: int, a: float) -> dict:
    return reparam.one_sample_backward(f, mu, sigma, seed, a)


@st.cache_data(max_entries=64, show_spinner=False)
def demo(mu: float, sigma: float, seed: int) -> dict:
    return reparam.autograd_demo(mu, sigma, seed)


def heldout_image(dataset: str, index: int):
    pre = ui.pretrained(dataset, "vae", BETA, K)
    ds = load_dataset(dataset)
    i = int(pre.val_idx[index])
    return pre, ds, i


@st.cache_data(max_entries=32, show_spinner="Backpropagating through the VAE…")
def vae_case(dataset: str, index: int, eps_seed: int) -> dict:
    pre, ds, i = heldout_image(dataset, index)
    x = ds.x[i]
    eps = reparam.standard_normal_draws(K, 1, eps_seed)[0]
    one = reparam.vae_gradients(pre.model, x, eps, beta=BETA)
    many = reparam.vae_gradients(pre.model, x, reparam.standard_normal_draws(K, N_AVG, eps_seed + 1), beta=BETA)
    return {"one": one, "avg": many["mean_over_draws"], "abs_drecon_dmu": np.abs(many["drecon_dmu"]).mean(0),
            "jac": reparam.encoder_jacobian_check(pre.model, x, eps), "x": x, "label": int(ds.y[i]),
            "dataset_index": i}


@st.cache_data(max_entries=32, show_spinner="Racing the two estimators on the VAE…")
def race(dataset: str, index: int, seed: int) -> dict:
    pre, ds, i = heldout_image(dataset, index)
    r = reparam.vae_estimator_race(pre.model, ds.x[i], N_RACE, seed)
    r.pop("samples")  # keep the cache small: the page shows summaries
    return {**r, "summary": reparam.race_summary(r)}


def training_job(dataset: str, seed: int, start: bool = True):
    """The two training runs of section 5, in the background (core.reparam.TRAINING_JOBS): started on the
    first visit (or by the server's warm-up), shared by every session, kept for a day. None if not started
    and ``start`` is False."""
    if start:
        return reparam.start_zoo_training_race(dataset, int(seed), BETA, K, loader=ui.pretrained)
    return reparam.TRAINING_JOBS.get(reparam.zoo_training_race_key(dataset, int(seed), BETA, K))


@st.fragment(run_every=0.5)
def training_progress(dataset: str, seed: int) -> None:
    """The training runs' progress, polled only while they run; when they end, the page reruns and draws them."""
    job = training_job(dataset, seed, start=False)
    if job is None or job.state != "running":
        ui.rerun_page()
    st.progress(job.progress, text=f"Training two encoders, one per estimator: {job.text or 'starting'}. "
                                   "It runs in the background; the rest of the page is ready.")


def load_vae():
    try:
        return ui.pretrained(ctx.dataset_name, "vae", BETA, K)
    except (OSError, RuntimeError, ValueError) as exc:
        st.error(f"The pretrained VAE for {ctx.dataset_name} could not be loaded: {exc}. Run `python "
                 "scripts/build_zoo.py` to rebuild the shipped models.")
        return None


def ratio_txt(v: float) -> str:
    """A variance ratio such as 6,552× (3 significant figures below 10)."""
    return f"{v:,.0f}×" if v >= 10 else f"{v:.2g}×"


def section(title: str):
    """A section's header, and the slot for its main figure: right under the header in presenter mode (so the
    figure fits one screen, above the controls and the text), in reading order otherwise. The scene bar already
    shows the title in presenter mode, so the header is left out there."""
    if not ctx.present:
        st.header(title)
    return st.container()


@st.cache_resource(max_entries=256, show_spinner=False)
def _figure_cache(key: str, deps: tuple, _build):
    return _build()


def cached(key: str, deps: tuple, build):
    """The figure ``build()`` makes, built once per (figure, dataset, seed, presenter mode, ``deps``) and shared:
    building a Plotly figure costs 15-45 ms of server CPU (the animated backward pass far more), a large share of
    a warm page's run. ``deps`` must hold every setting the figure depends on beyond the dataset, the seed and
    presenter mode. ui.figure and st.plotly_chart do not change the figure (presenter mode draws a copy)."""
    return _figure_cache(key, (ctx.dataset_name, int(ctx.seed), bool(ctx.present)) + tuple(deps), build)


def main_slot(slot):
    """Where a section draws its main figure: ``slot`` in presenter mode, in place otherwise."""
    return slot if ctx.present else st.container()


PRESENT_HEIGHT = 420  # main figures in presenter mode, scaled to 546 px by ui.figure: at least half of a 1080-px
# screen, and inside a 720-px one under the title row


# ---- 0. the key idea ------------------------------------------------------------------------------

if show(0):
    pre0 = load_vae()
    key_race = race(ctx.dataset_name, 0, ctx.seed) if pre0 is not None else None
    measured = (f", but on this app's trained VAE (held-out image 0, gradients with respect to the encoder's means) "
                f"its per-sample variance is a median {ratio_txt(key_race['summary']['score']['dmu']['median'])} the "
                "pathwise one (section 5)."
                if key_race else ", but far noisier.")
    if not ctx.present:  # in presenter mode the scene bar says it in one line, so the figure fits the screen
        st.markdown(
            "**The key idea.** A VAE's loss averages over a random code $z \\sim q_\\phi(z\\mid x)$, and a number "
            "that was *drawn* has no derivative with respect to the encoder's weights $\\phi$. The trick draws "
            "$\\epsilon \\sim \\mathcal N(0, I)$ as an outside input and computes $z = \\mu_\\phi(x) + "
            "\\sigma_\\phi(x) \\odot \\epsilon$, so ordinary backpropagation gives an unbiased, low-variance gradient "
            "of the expected loss. Without the trick, the score-function estimator is also unbiased"
            f"{measured}")
    v = dict(one_sample("z^2", 0.5, 1.0, ctx.seed, 1.0), f_label="z²")
    graph = cached("rp_graph", (), lambda: rfig.backward_pass_graphs(v, height=PRESENT_HEIGHT, text_scale=1.25)
                   if ctx.present else rfig.backward_pass_graphs(v))  # labels >= 16 px in presenter mode
    ui.figure(graph, key="rp_graph",
              html_name="reparam-backward-pass",
              alt=(f"Two computational graphs for L = z² with one sample z = {fmt(v['z'])}. Left: z is sampled "
                   f"from N(μ, σ²); the backward pass reaches z with dL/dz = {fmt(v['dL_dz'])} and is blocked at the "
                   f"sampler, so μ and σ get no gradient. Right: z = μ + σ·ε with ε = {fmt(v['eps'])} an outside "
                   f"input; the gradient flows to μ ({fmt(v['dL_dmu'])}) and σ ({fmt(v['dL_dsigma'])})."))
    st.caption(f"One real autograd backward pass for L = f(z) = z², μ = 0.5, σ = 1 (seed {ctx.seed}). Press ▶ to "
               "animate it; the slider steps through it. Grey: the forward pass. Vermillion: the gradient travelling "
               "back from the loss. Left, PyTorch's `sample()` gives z no `grad_fn`, so the chain rule has nothing to "
               "multiply by; right, ε is an input like x, and μ, σ get ∂L/∂z·1 and ∂L/∂z·ε.")


# ---- 1. the problem -------------------------------------------------------------------------------

if show(1):
    section("1 · The problem: the gradient of an expectation")
    st.markdown(
        "The VAE maximises the evidence lower bound (ELBO) of each image $x$ (Kingma and Welling, 2014):")
    st.latex(r"\mathcal L(\theta,\phi;x) = \mathbb E_{q_\phi(z\mid x)}\big[\log p_\theta(x\mid z)\big]"
             r" - \mathrm{KL}\big(q_\phi(z\mid x)\,\|\,p(z)\big), \qquad q_\phi(z\mid x) = "
             r"\mathcal N\big(\mu_\phi(x), \operatorname{diag}\sigma_\phi^2(x)\big).")
    st.markdown("Training the encoder needs $\\nabla_\\phi$ of the first term, an expectation whose *distribution* "
                "depends on $\\phi$. Write $f(z) = -\\log p_\\theta(x\\mid z)$ and the expectation as an integral: "
                "$\\phi$ lives in the density, so that is where the derivative lands,")
    st.latex(r"\nabla_\phi\, \mathbb E_{q_\phi}[f(z)] = \nabla_\phi \int q_\phi(z)\, f(z)\, dz"
             r" = \int \nabla_\phi q_\phi(z)\, f(z)\, dz .")
    st.markdown(
        "This is **not an expectation under $q_\\phi$**: $\\nabla_\\phi q_\\phi$ is not a density (it integrates to "
        "0 and is negative in places), so drawing $z \\sim q_\\phi$ and averaging something does not estimate it "
        "until the integral is rewritten. And *“draw $z$, then backpropagate $f(z)$”* gives nothing: a drawn $z$ "
        "is a constant with **no path back to $\\phi$** in the computation graph, so "
        "$\\nabla_\\phi f(z) = 0$ for that fixed $z$. Two rewrites fix this: the reparameterization trick "
        "(section 2) and the score function (section 4).")
    box = ui.lazy_expander("PyTorch, executed just now: `sample()` has no path back, `rsample()` has", "rp_torch_open")
    if box.open:
        with box:
            d = demo(0.5, 1.0, ctx.seed)
            c1, c2 = st.columns(2)
            setup = (">>> mu = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)\n"
                     ">>> sigma = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)\n")
            with c1:
                st.markdown("**`sample()`**: a draw with no path back")
                st.code(setup + ">>> z = Normal(mu, sigma).sample()\n"
                        f">>> z\n{d['sample_repr']}\n"
                        ">>> z.requires_grad, z.grad_fn\n"
                        f"({d['sample_requires_grad']}, {d['sample_grad_fn']})\n"
                        ">>> z.backward()\n"
                        f"RuntimeError: {d['sample_backward_error']}", language="python", wrap_lines=True)
            with c2:
                st.markdown("**`rsample()`**: z = μ + σ·ε, inside the graph")
                graph = "\n".join("#   " + line for line in d["rsample_graph"])
                st.code(setup + ">>> z = Normal(mu, sigma).rsample()   # = mu + sigma * eps\n"
                        f">>> z\n{d['rsample_repr']}\n"
                        ">>> z.requires_grad, type(z.grad_fn).__name__\n"
                        f"({d['rsample_requires_grad']}, '{d['rsample_grad_fn']}')\n"
                        f"# the graph behind z:\n{graph}\n"
                        ">>> z.backward()\n"
                        ">>> mu.grad.item(), sigma.grad.item()   # dz/dmu, dz/dsigma\n"
                        f"({d['dz_dmu']!r}, {d['dz_dsigma']!r})\n"
                        ">>> ((z - mu) / sigma).item()            # eps\n"
                        f"{d['eps']!r}", language="python", wrap_lines=True)
            st.markdown(f"Executed with PyTorch {torch.__version__}, seed {ctx.seed}: `rsample()` returned ∂z/∂μ = "
                        f"{fmt(d['dz_dmu'], 4)} and ∂z/∂σ = {fmt(d['dz_dsigma'], 4)} = ε, the local derivatives of "
                        "z = μ + σ·ε. `sample()` runs under `no_grad`: its z is a constant to autograd.")


# ---- 2. the trick, its condition, and the SGVB estimator -------------------------------------------

if show(2):
    section("2 · The trick: move the randomness into an input")
    st.markdown("Draw the noise from a **fixed** distribution and build $z$ from it with a deterministic, "
                "differentiable function of $\\phi$ (Kingma and Welling, 2014):")
    st.latex(r"\epsilon \sim \mathcal N(0, I), \qquad z = g_\phi(\epsilon, x) = \mu_\phi(x) + \sigma_\phi(x) \odot "
             r"\epsilon \quad\Longrightarrow\quad z \sim q_\phi(z\mid x).")
    st.markdown("The change of variables keeps the distribution of $z$, so the expectation is the same, but now it "
                "is taken over $\\epsilon$, whose distribution does not depend on $\\phi$. So the gradient can move "
                "inside:")
    st.latex(r"\nabla_\phi\, \mathbb E_{q_\phi(z\mid x)}[f(z)] = \nabla_\phi\, \mathbb E_{\epsilon\sim\mathcal N(0,I)}"
             r"\big[f(\mu_\phi + \sigma_\phi \odot \epsilon)\big] = \mathbb E_{\epsilon\sim\mathcal N(0,I)}"
             r"\big[\nabla_\phi f(\mu_\phi + \sigma_\phi \odot \epsilon)\big].")
    # Presenter mode: the trick and its two formulas fill the screen; the condition and the estimator wait in here.
    more = st.expander("The condition for moving ∇ inside, and the SGVB estimator") if ctx.present else st.container()
    with more:
        st.markdown(
            "**The condition for the last step** (differentiation under the integral sign: the Leibniz rule, proved "
            "with dominated convergence). For almost every $\\epsilon$, $\\phi \\mapsto f(\\mu_\\phi + \\sigma_\\phi "
            "\\odot \\epsilon)$ must be differentiable at every $\\phi$ in a neighbourhood, and its gradient there must "
            "be bounded by an integrable function:")
        st.latex(r"\big\|\nabla_\phi f(\mu_\phi + \sigma_\phi\odot\epsilon)\big\| \le h(\epsilon)\ \text{ for all } "
                 r"\phi \text{ near } \phi_0, \qquad \mathbb E_\epsilon[h(\epsilon)] < \infty .")
        st.markdown(
            "A VAE's decoder is a smooth network, so $f(z) = -\\log p_\\theta(x\\mid z)$ is differentiable in $z$ and "
            "the condition holds in practice. It fails for a function with a jump, such as the step "
            "$\\mathbb 1[z > a]$: its derivative is 0 wherever it exists, yet $\\mathbb E[\\mathbb 1[z>a]]$ changes with "
            "$\\mu$; section 4 shows the pathwise estimate stuck at 0 (Mohamed et al., 2020, on the pathwise estimator).")
        st.subheader("The SGVB estimator: one sample per image")
        st.markdown("Replace the expectation by one draw per image, keeping the KL term in closed form (Kingma and "
                    "Welling, 2014, eq. 7, their estimator B; the KL formula is their Appendix B):")
        st.latex(r"\widetilde{\mathcal L}(\theta,\phi;x^{(i)}) = \log p_\theta\big(x^{(i)}\mid z^{(i)}\big) - "
                 r"\tfrac12 \sum_{j=1}^{K}\big(\mu_j^2 + \sigma_j^2 - 1 - \log \sigma_j^2\big), \qquad z^{(i)} = "
                 r"\mu_\phi(x^{(i)}) + \sigma_\phi(x^{(i)}) \odot \epsilon^{(i)},\ \ \epsilon^{(i)} \sim \mathcal N(0, I),")
        st.latex(r"\mathcal L(\theta,\phi;X) \approx \frac{N}{M}\sum_{i=1}^{M} \widetilde{\mathcal L}(\theta,\phi;x^{(i)})"
                 r"\quad \text{for a minibatch of } M \text{ of the } N \text{ images (their eq. 8)}.")
        st.markdown(
            "Each $\\widetilde{\\mathcal L}$ is an ordinary differentiable function of $\\theta$ and $\\phi$ (the "
            "randomness sits in the input $\\epsilon^{(i)}$), so one backward pass gives "
            "$\\nabla_{\\theta,\\phi}\\widetilde{\\mathcal L}$, and its expectation over $\\epsilon$ is the true "
            "gradient of the ELBO: an **unbiased** estimate. Kingma and Welling used one sample per image "
            "($L = 1$) with minibatches of $M = 100$ (their Algorithm 1). This app's training loss is the minibatch mean of "
            "$-\\widetilde{\\mathcal L}$ (the negative ELBO in nats per image), the same estimator divided by $N$.")


# ---- 3. the chain rule on a real encoder -----------------------------------------------------------

def image_controls(n_val: int) -> tuple[int, int]:
    """The held-out image and the ε draw, shared by sections 3 and 5 (drawn once per run)."""
    for key in ("rp_idx", "_keep_rp_idx"):  # the widget value, or the one ui keeps across pages
        if (st.session_state.get(key) or 0) > n_val - 1:  # e.g. after switching to a smaller dataset
            st.session_state[key] = n_val - 1
    c1, c2 = st.columns(2)
    with c1:
        idx = int(ui.number(f"Held-out image (0 to {n_val - 1})", "rp_idx", 0, n_val - 1, 0, step=1))
    with c2:
        eps_draw = int(ui.number("Draw of ε (change it for a new ε)", "rp_eps", 0, 9999, 0, step=1))
    ui.show_url_errors()
    return idx, eps_draw


def chain_rule_section(idx: int, eps_draw: int, slot) -> None:
    st.markdown("The Jacobians of $z = \\mu + \\sigma \\odot \\epsilon$ are as simple as Jacobians get, so for "
                "any loss term that depends on $\\mu, \\sigma$ only through $z$ (the reconstruction term):")
    st.latex(r"\frac{\partial z}{\partial \mu} = I, \quad \frac{\partial z}{\partial \sigma} = "
             r"\operatorname{diag}(\epsilon) \quad\Longrightarrow\quad \frac{\partial \mathcal L}{\partial \mu} = "
             r"\frac{\partial \mathcal L}{\partial z}, \qquad \frac{\partial \mathcal L}{\partial \sigma} = "
             r"\frac{\partial \mathcal L}{\partial z} \odot \epsilon .")
    case = vae_case(ctx.dataset_name, idx, ctx.seed * 10_007 + eps_draw)
    g, avg, jac = case["one"], case["avg"], case["jac"]
    names = ctx.dataset.class_names if getattr(ctx.dataset, "class_names", None) else None
    label = names[case["label"]] if names is not None and case["label"] < len(names) else str(case["label"])
    st.markdown(
        f"**Checked just now** on the shipped VAE (β = 1, {K} latent dimensions, {ctx.dataset_name}), held-out "
        f"image {idx} (dataset index {case['dataset_index']}, label {label}), one draw of ε: autograd's gradients "
        "of the reconstruction term $f(z) = -\\log p_\\theta(x\\mid z)$ with respect to the encoder's outputs "
        "μ and σ, against the formula:")
    c = st.columns(4)
    c[0].metric("max |∂f/∂μ − ∂f/∂z|", f"{jac['max_diff_mu']:.1e}" if jac["max_diff_mu"] else "0",
                help="Largest difference over the dimensions, in nats per unit of μ.")
    c[1].metric("max |∂f/∂σ − ∂f/∂z ⊙ ε|", f"{jac['max_diff_sigma']:.1e}" if jac["max_diff_sigma"] else "0",
                help="Largest difference over the dimensions; float32 rounding is about 1e-7 of the values.")
    c[2].metric("max |∂z/∂μ − I|", f"{jac['max_dev_J_mu']:.1e}" if jac["max_dev_J_mu"] else "0")
    c[3].metric("max |∂z/∂σ − diag(ε)|", f"{jac['max_dev_J_sigma']:.1e}" if jac["max_dev_J_sigma"] else "0")
    st.caption(f"Largest ∂f/∂zⱼ for this draw: {fmt(float(np.max(np.abs(jac['df_dz']))))} nats per unit of z, so "
               "the differences are float32 rounding. The Jacobians come from `torch.autograd.functional.jacobian`.")

    st.caption(f"For this draw (the SGVB estimate): −log p(x|z) = {fmt(g['recon'], 2)} nats, KL = "
               f"{fmt(g['kl'], 2)} nats, −ELBO estimate = {fmt(g['loss'], 2)} nats per image. The first term "
               "is a Bernoulli cross-entropy on grey pixels: not a normalised likelihood.")
    # Secondary figures, drawn once the expander opens (issue 21: fewer charts at first paint).
    box = ui.lazy_expander("The image, its code z = μ + σ ⊙ ε and the decoder's output", "rp_code_open")
    if box.open:
        with box:
            c1, c2 = st.columns([1, 3])
            with c1:
                ui.figure(cached("rp_vae_img", (idx, eps_draw), lambda:
                        image_grid([case["x"], g["recon_x"]], ctx.dataset.image_shape, ncols=2,
                                     col_titles=["input x", "decoder(z)"], height=230)), key="rp_vae_img",
                          alt=f"The held-out input (dataset index {case['dataset_index']}, label {label}) and the "
                              "decoder's output at the sampled z.")
            with c2:
                ui.figure(cached("rp_vae_post", (idx, eps_draw), lambda:
                        rfig.vae_posterior(g["mu"], g["sigma"], g["eps"], g["z"])), key="rp_vae_post",
                          alt=f"For each of the {K} latent dimensions: the encoder's mean μ with a ±σ bar, and the "
                              "drawn z = μ + σ·ε as a diamond, over the prior's ±1 band.")
    with main_slot(slot):
        ui.figure(cached("rp_vae_grad", (idx, eps_draw), lambda:
                rfig.vae_gradient_bars(g, height=PRESENT_HEIGHT if ctx.present else 380,
                                       short_ticks=ctx.present)), key="rp_vae_grad",
                  alt="Bar charts of dL/dμ and dL/dlogvar for each latent dimension, split into the reconstruction "
                      "part and the β·KL part, with the total from backpropagation marked.")
    reading(case, g, avg)
    box = ui.lazy_expander("All the numbers", "rp_numbers_open")
    if box.open:
        with box:
            rows = [{"dim": f"z{j + 1}", "μ": g["mu"][j], "σ": g["sigma"][j], "ε": g["eps"][j], "z": g["z"][j],
                     "KL (nats)": g["kl_per_dim"][j], "∂f/∂z (autograd)": jac["df_dz"][j],
                     "∂f/∂μ (autograd)": jac["df_dmu"][j], "∂f/∂σ (autograd)": jac["df_dsigma"][j],
                     "∂f/∂z · ε (formula)": jac["df_dz"][j] * jac["eps"][j],
                     "∂L/∂μ": g["dL_dmu"][j], "∂L/∂log σ²": g["dL_dlogvar"][j],
                     f"mean |∂f/∂μ| over {N_AVG} ε": case["abs_drecon_dmu"][j],
                     f"recon part of ∂L/∂log σ², mean of {N_AVG} ε": avg["drecon_dlogvar"][j],
                     "KL part of ∂L/∂log σ²": avg["dkl_dlogvar"][j]} for j in range(K)]
            rows = [{k: (v if k == "dim" else float(reparam.clean(v, 4))) for k, v in r.items()} for r in rows]
            st.dataframe(rows, hide_index=True, width="stretch",
                         column_config={k: st.column_config.NumberColumn(format="%.4f") for k in rows[0] if k != "dim"})
            ui.download_csv("⬇️ These numbers (CSV)", rows, f"vae-gradients-{ctx.dataset_name}-{idx}.csv", key="rp_vae_csv")


def reading(case: dict, g: dict, avg: dict) -> None:
    try:
        act = ui.activity(ctx.dataset_name, "vae", BETA, K)
    except (OSError, RuntimeError, ValueError):
        act = None
    kl = g["kl_per_dim"]
    quiet = [j for j in range(K) if kl[j] < SMALL_KL_NATS]
    big = [j for j in range(K) if kl[j] >= SMALL_KL_NATS]
    absg = case["abs_drecon_dmu"]
    lines = ["**Reading it.** Gradient descent moves each number *against* its gradient.",
             "- **$\\partial L/\\partial\\mu_j$**: the β·KL part is exactly $\\beta\\mu_j$, pulling $\\mu_j$ towards "
             "the prior's mean 0. The reconstruction part has come back through the decoder and through $z$ "
             "($\\partial z/\\partial\\mu = I$): it says which way moving $z_j$ would rebuild this image better.",
             "- **$\\partial L/\\partial\\log\\sigma_j^2$**: the β·KL part is $\\beta(\\sigma_j^2 - 1)/2$, negative "
             "when $\\sigma_j < 1$ (the KL asks for more noise). The reconstruction part arrives through "
             "$\\partial z_j/\\partial\\log\\sigma_j^2 = \\epsilon_j\\sigma_j/2$, so for one $\\epsilon$ its sign "
             "follows $\\epsilon_j$."]
    if act is not None:
        on_idx, off_idx = np.flatnonzero(act.active), np.flatnonzero(~act.active)
        barely = [j for j in on_idx[np.argsort(act.var_mu[on_idx])] if act.var_mu[j] < 5 * act.threshold]
        line = (f"- **Which dimensions the model uses**, over the data: {act.count} of {K} are active (Burda et al., "
                f"2016: Var over images of μⱼ > {act.threshold:g}, on {act.n_images} held-out images).")
        if off_idx.size:
            line += " Collapsed (not active): " + ", ".join(f"z{j + 1}" for j in off_idx) + "."
        if barely:
            line += (" Only just active: " + ", ".join(f"z{j + 1} (Var μ = {act.var_mu[j]:.3f})" for j in barely)
                     + "; moving along them changes the decoded image little.")
        lines.append(line)
    if quiet:
        q_names = ", ".join(f"z{j + 1}" for j in quiet)
        parts = []
        if act is not None:
            on = [f"z{j + 1}" for j in quiet if act.active[j]]
            off = [f"z{j + 1}" for j in quiet if not act.active[j]]
            if on:
                parts.append(f"Over the data, {', '.join(on)} {'is' if len(on) == 1 else 'are'} active all the same.")
            if off:
                parts.append(f"{'Over the data, ' if not on else ''}{', '.join(off)} "
                             f"{'has' if len(off) == 1 else 'have'} collapsed (not active).")
        grads = ", ".join(f"z{j + 1}: {absg[j]:.2f}" for j in quiet)
        compare = (f", against a median of {np.median(absg[big]):.2f} over the other dimensions and a smallest of "
                   f"{np.min(absg[big]):.2f}." if big else ".")
        lines.append(
            f"- **For this image**, {q_names} {'has' if len(quiet) == 1 else 'have'} a KL below "
            f"{SMALL_KL_NATS:g} nats: {'it carries' if len(quiet) == 1 else 'they carry'} almost no information "
            f"about this image. {' '.join(parts)}{' ' if parts else ''}Measured mean |∂f/∂μⱼ| over {N_AVG} draws "
            f"of ε: {grads}{compare}")
    lines.append(
        "- **Without the trick** the blue bars would still have an unbiased estimate, the score function of "
        "section 4, but not by backpropagation (z would have no path to μ and σ) and with a far larger "
        "variance: section 5 measures it on this image.")
    st.markdown("\n".join(lines))


# ---- 4. the score function, and a live experiment on simple f ---------------------------------------

def score_function_text() -> None:
    if not ctx.present:
        st.header("4 · The other way: the score function (REINFORCE)")
    st.markdown("Without reparameterizing, use the **log-derivative trick** "
                "$\\nabla_\\phi q_\\phi = q_\\phi\\, \\nabla_\\phi \\log q_\\phi$ inside the integral of section 1 "
                "(Williams, 1992):")
    st.latex(r"\nabla_\phi \mathbb{E}_{q_\phi}[f(z)] = \int f(z)\,\nabla_\phi q_\phi(z)\,dz = \int q_\phi(z)\, f(z)\,"
             r"\nabla_\phi \log q_\phi(z)\,dz = \mathbb{E}_{q_\phi}\big[f(z)\,\nabla_\phi \log q_\phi(z)\big].")
    st.markdown("For a normal, $\\frac{\\partial}{\\partial\\mu}\\log q = \\frac{z-\\mu}{\\sigma^2} = "
                "\\frac{\\epsilon}{\\sigma}$ and $\\frac{\\partial}{\\partial\\sigma}\\log q = "
                "\\frac{(z-\\mu)^2-\\sigma^2}{\\sigma^3} = \\frac{\\epsilon^2-1}{\\sigma}$. This estimator is "
                "**also unbiased**, for the reconstruction term too, and needs only values of $f$, never $f'$, so "
                "it works for non-differentiable $f$. But it multiplies $f(z)$ by zero-mean noise and ignores how "
                "$f$ changes, so its **variance** is usually much larger. Subtracting a baseline $b$ that does not "
                "depend on $z$, $(f(z) - b)\\,\\nabla_\\phi \\log q_\\phi$, keeps it unbiased and lowers the "
                "variance, but on a VAE not to the pathwise level (section 5). Kingma and Welling (2014, sec. 2.2) call this "
                "estimator impractical for the VAE because of its very high variance.")
    st.markdown("**Try it** on simple functions with a closed-form answer: both estimators on the same draws "
                "$z_1,\\dots,z_n$.")


def controls() -> tuple[str, float, float, float, int]:
    with ui.config_container("Experiment settings: f, μ, σ and the number of samples"):
        c1, c2 = st.columns([1, 1])
        with c1:
            f = ui.select("Function f(z)", "rp_f", list(F_LABELS), default="z^2", format_func=F_LABELS.get,
                          help="The loss whose expected value we differentiate with respect to μ and σ.")
        with c2:
            n = ui.select("Samples n", "rp_n", N_CHOICES, default=1000, radio=True, horizontal=True,
                          format_func=lambda v: f"{v // 1000}k" if v >= 1000 else str(v),
                          help="How many draws z₁…zₙ each estimator averages.")
        c3, c4, c5 = st.columns(3)
        with c3:
            mu = ui.slider("μ (mean of q)", "rp_mu", -3.0, 3.0, 0.5, step=0.1)
        with c4:
            sigma = ui.slider("σ (standard deviation of q)", "rp_sigma", 0.1, 3.0, 1.0, step=0.05)
        with c5:
            a = ui.slider("a (used by (z − a)² and the step)", "rp_a", -3.0, 3.0, 1.0, step=0.1,
                          disabled=f not in USES_A)
    ui.show_url_errors()  # widgets bound just now may have rejected a value from the link
    return f, float(a), float(mu), float(sigma), int(n)


def exact_readout(f: str, mu: float, sigma: float, a: float, r: dict) -> None:
    a_txt = f", a = {a:g}" if f in USES_A else ""
    st.markdown(f"**f(z) = ${reparam.TEST_FUNCTIONS[f].latex}$, z ~ 𝒩(μ = {mu:g}, σ² = {sigma:g}²){a_txt}.** "
                "The exact answers the estimators aim at (closed form):")
    m1, m2, m3 = st.columns(3)
    m1.metric("Exact E[f(z)]", fmt(r["expectation"], 4))
    with m2.container(key="rp_readout"):  # bench/: the number that follows the μ slider
        st.metric("Exact ∂/∂μ E[f(z)]", fmt(r["exact"]["dmu"], 4))
    m3.metric("Exact ∂/∂σ E[f(z)]", fmt(r["exact"]["dsigma"], 4))


def variance_ratio_metric(col, label: str, r: dict, p: str) -> None:
    v = r["variance_ratio"][p]
    if np.isfinite(v):
        col.metric(label, f"{v:.1f}×", help="Per-sample variance of the score-function estimates divided by that of "
                                            "the pathwise ones.")
    else:  # the pathwise estimates are all equal (the step function): the ratio is undefined
        col.metric(label, "undefined", help="The pathwise estimates are all exactly equal (variance 0), so the ratio "
                                            "has no value; see the warning below.")


def experiment_section(f: str, r: dict, slot) -> None:
    s, ex, zs, vr = r["summary"], r["exact"], r["z_score"], r["variance_ratio"]
    cols = st.columns(4)
    cols[0].metric("Pathwise mean ∂/∂μ", fmt(s["reparam"]["dmu"]["mean"]),
                   help=f"± {fmt(s['reparam']['dmu']['stderr'])} (one standard error)")
    cols[1].metric("Score-function mean ∂/∂μ", fmt(s["score"]["dmu"]["mean"]),
                   help=f"± {fmt(s['score']['dmu']['stderr'])} (one standard error)")
    variance_ratio_metric(cols[2], "Variance ratio ∂/∂μ", r, "dmu")
    variance_ratio_metric(cols[3], "Variance ratio ∂/∂σ", r, "dsigma")

    if f == "step":
        st.warning(
            f"**The pathwise estimator is biased here.** Every one of its {r['n']:,} per-sample estimates is exactly "
            f"0 (autograd differentiates 1[z > a] as a constant), so their variance is 0, the variance ratio is "
            f"undefined, and their mean 0 misses the exact ∂/∂μ = {fmt(ex['dmu'], 4)} however many samples you take. "
            f"The score-function estimator is {fmt(abs(zs['score']['dmu']), 1)} standard errors from it: unbiased, "
            "as the derivation says. The step breaks the condition of section 2.", icon="⚠️")
    else:
        worst = max(abs(zs[m][p]) for m in ("reparam", "score") for p in ("dmu", "dsigma"))
        verdict = ("All four means lie within 2 standard errors of the exact gradient: both estimators are unbiased."
                   if worst < 2 else
                   f"All four means lie within {fmt(worst, 1)} standard errors of the exact gradient; for an unbiased "
                   "estimator |z| above 2 happens about 1 time in 20 by chance, above 4 almost never.")
        more = (f"The score-function estimator's per-sample variance is {fmt(vr['dmu'], 2)}× (∂/∂μ) and "
                f"{fmt(vr['dsigma'], 2)}× (∂/∂σ) the pathwise one; the number of samples needed for a given "
                "standard error scales with the variance.")
        lower = [rfig.PARAM_NAMES[p] for p in ("dmu", "dsigma") if vr[p] < 1]
        if lower:
            more += (f" Here the score function is the *less* noisy one for {' and '.join(lower)}: the pathwise "
                     "estimator usually wins, but not always. Its terms are f′(z) (times ε), so they are noisy "
                     "when f′ swings a lot across q"
                     + (f", as cos z does over a wide q (σ = {r['sigma']:g})" if f == "sin z" else "")
                     + " (Mohamed et al., 2020).")
        st.info(f"{verdict} {more}", icon="📏")

    with main_slot(slot):
        ui.figure(cached("rp_hist", (r["f"], r["mu"], r["sigma"], r["a"], r["n"], r["seed"]), lambda:
                rfig.estimator_histograms(r, height=PRESENT_HEIGHT if ctx.present else 520)), key="rp_hist",
                  alt=(f"Histograms of {r['n']} per-sample gradient estimates. Pathwise ∂/∂μ: mean "
                       f"{fmt(s['reparam']['dmu']['mean'])}, variance {rfig.sig_figs(s['reparam']['dmu']['variance'], 3)}. "
                       f"Score function ∂/∂μ: mean {fmt(s['score']['dmu']['mean'])}, variance "
                       f"{rfig.sig_figs(s['score']['dmu']['variance'], 3)}. Exact {fmt(ex['dmu'])}."))
    st.caption("Each column shares one x axis and one set of bins, so the widths compare directly (the x range "
               "covers the central 99% of estimates; the rest are counted in the end bins). The spread of a "
               "histogram is the per-sample variance: a mean of n samples has standard error √(variance / n).")
    box = ui.lazy_expander("Means with error bars, convergence, and every number", "rp_ci_open")
    if box.open:
        with box:
            ui.figure(cached("rp_ci", (r["f"], r["mu"], r["sigma"], r["a"], r["n"], r["seed"]), lambda:
                    rfig.estimate_intervals(r)), key="rp_ci",
                      alt=f"Means with ±2 standard error bars against the exact gradients {fmt(ex['dmu'])} and "
                          f"{fmt(ex['dsigma'])}.")
            ui.figure(cached("rp_conv", (r["f"], r["mu"], r["sigma"], r["a"], r["n"], r["seed"]), lambda:
                    rfig.convergence(r)), key="rp_conv",
                      alt="Running means of both estimators against the number of samples on a log axis, with ±2 "
                          "standard error bands narrowing around the exact gradient.")
            st.caption("Both bands shrink like 1/√n; the estimator with the larger per-sample variance has the wider band.")
            rows = []
            for m in ("reparam", "score"):
                for p in ("dmu", "dsigma"):
                    z = zs[m][p]
                    rows.append({"estimator": rfig.METHOD_NAMES[m], "gradient": rfig.PARAM_NAMES[p] + " E[f(z)]",
                                 "exact": float(reparam.clean(ex[p], 6)), "mean": float(reparam.clean(s[m][p]["mean"], 6)),
                                 "std. error": float(reparam.clean(s[m][p]["stderr"], 6)),
                                 "(mean − exact) / s.e.": float(reparam.clean(z, 3)) if np.isfinite(z) else None,
                                 "per-sample variance": float(reparam.clean(s[m][p]["variance"], 6))})
            st.dataframe(rows, hide_index=True, width="stretch",
                         column_config={k: st.column_config.NumberColumn(format="%.4g") for k in
                                        ("exact", "mean", "std. error", "(mean − exact) / s.e.", "per-sample variance")})
            if any(r_["(mean − exact) / s.e."] is None for r_ in rows):
                st.caption("A blank (mean − exact) / s.e.: that estimator's standard error is 0 (all its per-sample "
                           "estimates are equal), so the ratio is undefined; compare its mean with the exact value instead.")
            ui.download_csv("⬇️ Per-sample estimates (CSV)",
                            {"pathwise_dmu": r["samples"]["reparam"]["dmu"],
                             "pathwise_dsigma": r["samples"]["reparam"]["dsigma"],
                             "score_dmu": r["samples"]["score"]["dmu"], "score_dsigma": r["samples"]["score"]["dsigma"]},
                            f"reparam-estimates-{f.replace('^', '').replace(' ', '')}-n{r['n']}.csv", key="rp_csv")


@st.fragment
def live() -> None:
    """Controls and everything they drive. A fragment: moving a slider reruns only this part."""
    slot = st.container()  # presenter mode: the histograms, above the controls
    f, a, mu, sigma, n = controls()
    r = ui.run_safely(lambda: experiment(f, mu, sigma, n, ctx.seed, a), "These settings cannot be used",
                      "Pick σ > 0 and finite values for μ and a.")
    if r is None:
        return
    exact_readout(f, mu, sigma, a, r)
    experiment_section(f, r, slot)


# ---- 5. the race on a real VAE ------------------------------------------------------------------------

def race_section(idx: int, slot) -> None:
    rr = race(ctx.dataset_name, idx, ctx.seed)
    sm = rr["summary"]
    st.markdown(
        f"The shipped VAE's encoder gives μ and σ for held-out image {idx}. From the same {rr['n']:,} draws of ε, "
        "each estimator gives per-sample estimates of the gradient of the reconstruction term "
        "$\\mathbb E_q[-\\log p_\\theta(x\\mid z)]$ with respect to the {K} means and {K} standard deviations:"
        .replace("{K}", str(K)))
    st.latex(r"\underbrace{\nabla_z f(z_s) \ \text{ and } \ \nabla_z f(z_s)\odot\epsilon_s}_{\text{pathwise}}"
             r"\qquad \underbrace{\big(f(z_s) - b_s\big)\,\frac{\epsilon_s}{\sigma} \ \text{ and } \ "
             r"\big(f(z_s) - b_s\big)\,\frac{\epsilon_s^2 - 1}{\sigma}}_{\text{score function}}, \qquad "
             r"b_s = 0 \ \text{ or } \ b_s = \frac{1}{n-1}\sum_{t\ne s} f(z_t).")
    c = st.columns(4)
    c[0].metric("Variance ratio ∂/∂μ, median", ratio_txt(sm["score"]["dmu"]["median"]),
                help="var(score function) / var(pathwise), per dimension; the median over the dimensions.")
    c[1].metric("Variance ratio ∂/∂σ, median", ratio_txt(sm["score"]["dsigma"]["median"]))
    c[2].metric("With leave-one-out baseline, ∂/∂μ", ratio_txt(sm["score_loo"]["dmu"]["median"]))
    c[3].metric("With leave-one-out baseline, ∂/∂σ", ratio_txt(sm["score_loo"]["dsigma"]["median"]))
    worst = max(float(np.max(np.abs(rr["agreement"][m][p]))) for m in ("score", "score_loo") for p in ("dmu", "dsigma"))
    st.markdown(
        f"**Measured:** per dimension, the plain score function's variance is "
        f"{ratio_txt(sm['score']['dmu']['min'])} to {ratio_txt(sm['score']['dmu']['max'])} the pathwise one for ∂/∂μ "
        f"and {ratio_txt(sm['score']['dsigma']['min'])} to {ratio_txt(sm['score']['dsigma']['max'])} for ∂/∂σ; with "
        f"the baseline still {ratio_txt(sm['score_loo']['dmu']['min'])} to {ratio_txt(sm['score_loo']['dmu']['max'])} "
        f"for ∂/∂μ. To match the pathwise standard error with one sample per image, the score function would need "
        f"that many times more samples. **Both are unbiased:** all {4 * K} differences between a score-function mean "
        f"and the pathwise mean lie within {fmt(worst, 1)} standard errors of 0.")
    def ratio_chart() -> None:
        ui.figure(cached("rp_race", (idx,), lambda:
                rfig.race_ratio_bars(rr, height=PRESENT_HEIGHT if ctx.present else 380,
                                     short_ticks=ctx.present)), key="rp_race",
                  alt=(f"Per-dimension variance ratios on a log axis for image {idx}: the plain score function's "
                       f"median {ratio_txt(sm['score']['dmu']['median'])} for μ, with a baseline "
                       f"{ratio_txt(sm['score_loo']['dmu']['median'])}."))

    if ctx.present:  # the scene's main figure
        with slot:
            ratio_chart()
    # Otherwise the per-dimension chart waits in the expander with the table (issue 21: fewer charts at first
    # paint); the metrics and the text above give its range.
    box = ui.lazy_expander("Every dimension: the variance ratios (chart), means and standard errors", "rp_race_open")
    if box.open:
        with box:
            if not ctx.present:
                ratio_chart()
            rows = []
            for j in range(K):
                row = {"dim": f"z{j + 1}"}
                for p, pn in (("dmu", "∂/∂μ"), ("dsigma", "∂/∂σ")):
                    for m, mn in (("pathwise", "pathwise"), ("score", "score"), ("score_loo", "score − baseline")):
                        row[f"{pn} {mn} mean"] = float(reparam.clean(rr["stats"][m][p]["mean"][j], 3))
                        row[f"{pn} {mn} s.e."] = float(reparam.clean(rr["stats"][m][p]["stderr"][j], 3))
                    row[f"{pn} variance ratio"] = float(reparam.clean(rr["ratio"]["score"][p][j], 1))
                rows.append(row)
            st.dataframe(rows, hide_index=True, width="stretch")
            ui.download_csv("⬇️ These numbers (CSV)", rows, f"estimator-race-{ctx.dataset_name}-{idx}.csv", key="rp_race_csv")

    st.subheader("Two short training runs, one per estimator")
    job = training_job(ctx.dataset_name, ctx.seed)
    if job.state == "running":
        with ui.fragment_slot():
            training_progress(ctx.dataset_name, ctx.seed)
        return
    if job.state == "failed":
        st.error(f"The training runs failed: {job.error}. Reload the page to try again.")
        return
    tr = job.result
    final = {m: float(tr["curves"][m][-1]) for m in tr["methods"]}
    st.markdown(
        f"A freshly initialised encoder is trained against the shipped decoder, which stays fixed, on "
        f"{tr['n_images']} training images: {tr['steps']} Adam steps, learning rate {tr['lr']:g}, minibatches of "
        f"{tr['batch']} images, one draw of ε per image, the same start, minibatches and draws in both runs. The KL "
        "term is differentiated exactly in both; only the gradient of the reconstruction term differs. After "
        f"{tr['steps']} steps the negative ELBO on those images is **{fmt(final['pathwise'], 1)} nats per image with "
        f"the pathwise estimator** and **{fmt(final['score'], 1)} with the score function** (start: "
        f"{fmt(float(tr['curves']['pathwise'][0]), 1)}; a Bernoulli cross-entropy on grey pixels plus the KL, not a "
        "normalised likelihood).")
    box = ui.lazy_expander("The two training curves", "rp_train_open")
    if box.open:
        with box:
            ui.figure(cached("rp_train", (), lambda:
                    rfig.training_race_curves(tr)), key="rp_train",
                      alt=(f"Negative ELBO against training step: pathwise falls to {fmt(final['pathwise'], 1)} "
                           f"nats, the score function to {fmt(final['score'], 1)} nats after {tr['steps']} steps."))
            st.caption("Each panel draws its own run bold and the other dotted. The curves are evaluated with one "
                       "fixed draw per image shared by both runs, so they differ only by the encoders' weights.")


vae = load_vae() if (show(3) or show(5)) else None
picked = None  # (image index, ε draw): one set of widgets, in the first of sections 3 and 5 shown
if show(3):
    slot3 = section("3 · The chain rule through z = μ + σ ⊙ ε, on a real encoder")
    if vae is not None:
        picked = image_controls(len(vae.val_idx))
        chain_rule_section(*picked, slot3)
if show(4):
    if ctx.present:  # the experiment's figure first, the derivation after it
        live()
        score_function_text()
    else:
        score_function_text()
        live()
if show(5):
    slot5 = section("5 · The race on a real VAE")
    if vae is not None:
        picked = picked or image_controls(len(vae.val_idx))
        race_section(picked[0], slot5)


# ---- 6. what to write --------------------------------------------------------------------------------

if show(6):
    section("6 · What to write in the exam")
    if ctx.present:  # the scene's key formula, above the corrected answers
        st.latex(r"z = \mu_\phi(x) + \sigma_\phi(x) \odot \epsilon,\ \ \epsilon \sim \mathcal N(0, I) \quad\Longrightarrow"
                 r"\quad \nabla_\phi\, \mathbb E_{q_\phi(z\mid x)}[f(z)] = \mathbb E_{\epsilon}\big[\nabla_\phi\, "
                 r"f(\mu_\phi(x) + \sigma_\phi(x) \odot \epsilon)\big]")
    with st.container(border=True, key="rp_weak"):
        st.markdown(
            "**Weak answers, corrected.**\n"
            "- ❌ *“It enables better tuning.”* It has nothing to do with tuning: it changes how the gradient of the "
            "ELBO is computed, not which hyperparameters are chosen.\n"
            "- ❌ *“It enables backpropagation, meaning previous values can be changed.”* Backpropagation computes "
            "gradients; it does not change values. The point is that without the trick the sampled $z$ has no path "
            "back to $\\mu$ and $\\sigma$, so backpropagation cannot reach the encoder through it.\n"
            "- ❌ *“It improves stability and performance.”* It is not a stability trick. Without it an unbiased "
            "gradient still exists (the score function), but its variance is orders of magnitude higher "
            "(section 5), so learning is far slower.\n\n"
            "✅ **Correct:** the trick writes $z = \\mu_\\phi(x) + \\sigma_\\phi(x) \\odot \\epsilon$ with "
            "$\\epsilon \\sim \\mathcal N(0, I)$, moving the randomness into an input that does not depend on "
            "$\\phi$. Then $\\nabla_\\phi \\mathbb E_{q_\\phi}[f(z)] = \\mathbb E_\\epsilon[\\nabla_\\phi "
            "f(\\mu_\\phi + \\sigma_\\phi \\odot \\epsilon)]$ (for differentiable $f$ with a dominated gradient), "
            "estimated with one sample per image (SGVB), is an unbiased, low-variance gradient computed by ordinary "
            "backpropagation, with $\\partial z/\\partial\\mu = I$ and $\\partial z/\\partial\\sigma = "
            "\\operatorname{diag}(\\epsilon)$.")
    (st.expander("A full-marks answer, in order") if ctx.present else st.container()).markdown(
        "**A full-marks answer, in order:** (1) the ELBO, and why $\\nabla_\\phi$ of an expectation under $q_\\phi$ "
        "cannot be estimated by sampling $z \\sim q_\\phi$ directly (section 1); (2) the change of variables and the "
        "condition for moving $\\nabla_\\phi$ inside (section 2); (3) the SGVB estimator with one sample per image; "
        "(4) the Jacobians $I$ and $\\operatorname{diag}(\\epsilon)$ (section 3); (5) the score-function "
        "alternative: unbiased, works for non-differentiable $f$, but far noisier (sections 4 and 5).")

ui.self_check("rp", [
    ("You draw z = Normal(μ, σ).sample() and call f(z).backward(). What gradient reaches μ?",
     "None: sample() runs without a graph, so z has requires_grad=False and backward() raises the RuntimeError "
     "shown in section 1. Mathematically, ∇ of E_q[f(z)] puts the derivative on the density q_φ, which a finished "
     "sample cannot see."),
    ("For the step f(z) = 1[z > a], which estimator gets the gradient right, and why?",
     "The score function. The pathwise estimator uses f′(z), which is 0 wherever it exists, so it returns exactly 0: "
     "biased. The true gradient φ((μ−a)/σ)/σ comes from probability mass crossing the jump, which only "
     "f(z)·∇log q sees. Choose 'step' in section 4 to watch it."),
    ("Without the trick, could the reconstruction term still train the encoder?",
     "Yes, in principle: the score-function estimator E_q[f(z) ∇_φ log q_φ(z)] is an unbiased gradient of the "
     "reconstruction term too. What is lost is low variance (section 5 measures thousands of times more on the "
     "shipped VAE, so training is far slower) and a path for ordinary backpropagation."),
])
