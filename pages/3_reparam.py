"""The reparameterization trick: the proof, the computational graphs, a live race between the two
gradient estimators, autograd's own output, and the gradients inside a trained VAE.

Thin page: widgets and text here; the maths is in ``core.reparam``; the figures in
``core.figures.reparam``.
"""
from __future__ import annotations

import streamlit as st

from core import ui

ctx = ui.page("The reparameterization trick", "🎲",
              "Why is the reparameterization trick essential in a VAE? A proof, and backpropagation through a "
              "random variable, run live with PyTorch autograd.")
torch = ui.configure_torch()

from core import reparam  # noqa: E402  (after configure_torch: one intra-op thread)
from core.data import load_dataset  # noqa: E402
from core.figures import image_grid  # noqa: E402
from core.figures import reparam as rfig  # noqa: E402

F_LABELS = {"z^2": "z²", "(z-a)^2": "(z − a)²", "sin z": "sin z", "step": "step: 1[z > a]"}
N_CHOICES = [100, 300, 1000, 3000, 10_000, 30_000, 100_000]
N_AVG = 256  # draws of eps for the "on average" reading of the VAE gradients
USES_A = ("(z-a)^2", "step")

SCENES = [
    ("Why we cannot just backpropagate", "The gradient of an expectation lands on the sampling density, not on f."),
    ("The trick, as a graph", "z = μ + σ·ε turns the random node into an input; press ▶ to watch the backward pass."),
    ("Two estimators, many samples", "Pathwise vs score function: both unbiased, very different variance."),
    ("Autograd, shown", "sample() vs rsample(), executed live."),
    ("Inside a trained VAE", "Backpropagation from the loss to μ and log σ² for one real image."),
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


@st.cache_data(max_entries=32, show_spinner="Backpropagating through the VAE…")
def vae_case(dataset: str, index: int, eps_seed: int) -> dict:
    pre = ui.pretrained(dataset, "vae", 1.0, 16)
    ds = load_dataset(dataset)
    i = int(pre.val_idx[index])
    x = ds.x[i]
    k = pre.config.latent_dim
    one = reparam.vae_gradients(pre.model, x, reparam.standard_normal_draws(k, 1, eps_seed)[0], beta=1.0)
    many = reparam.vae_gradients(pre.model, x, reparam.standard_normal_draws(k, N_AVG, eps_seed + 1), beta=1.0)
    return {"one": one, "avg": many["mean_over_draws"], "x": x, "label": int(ds.y[i]), "dataset_index": i}


def fmt(v: float, digits: int = 3) -> str:
    if v != v:  # nan
        return "n/a"
    if v in (float("inf"), float("-inf")):
        return "∞" if v > 0 else "−∞"
    return f"{v:.{digits}f}" if abs(v) < 1e4 else f"{v:.3g}"


def ratio(v: float) -> str:
    return f"{v:.1f}×" if v == v and v != float("inf") else fmt(v)


# ---- 1. the problem -------------------------------------------------------------------------------

if show(0):
    st.header("1 · The problem: a gradient of an expectation")
    st.markdown(
        "A VAE's encoder with parameters $\\phi$ outputs $\\mu_\\phi(x)$ and $\\sigma_\\phi(x)$, and the loss "
        "contains an expectation over a **random** code $z \\sim q_\\phi(z\\mid x)=\\mathcal N(\\mu_\\phi, "
        "\\sigma_\\phi^2)$, for example $f(z) = -\\log p_\\theta(x\\mid z)$. Training needs")
    st.latex(r"\nabla_\phi\, \mathbb{E}_{q_\phi(z)}\big[f(z)\big].")
    st.markdown("**Why the gradient cannot simply go inside.** Write the expectation as an integral. "
                "$\\phi$ lives in the *density* we sample from, so that is where the derivative lands:")
    st.latex(r"\nabla_\phi \int q_\phi(z)\, f(z)\, dz \;=\; \int f(z)\, \nabla_\phi q_\phi(z)\, dz"
             r"\;\;\neq\;\; \mathbb{E}_{q_\phi(z)}\big[\nabla_\phi f(z)\big] = 0 .")
    st.markdown(
        "For a fixed $z$, $f(z)$ does not depend on $\\phi$ at all, so *“draw $z$, then backpropagate "
        "$f(z)$”* gives 0. The true gradient $\\int f\\,\\nabla_\\phi q_\\phi\\,dz$ is, as written, not "
        "an average over samples of $q_\\phi$ ($\\nabla_\\phi q_\\phi$ is not a density: it integrates to 0 and "
        "is negative in places), so sampling $z$ and averaging cannot estimate it without first rewriting it "
        "(sections 2 and 3 give the two classic rewrites). In code: a sampled $z$ has no path back to $\\mu$ "
        "and $\\sigma$ (section 4 shows PyTorch refusing).")

if show(1):
    st.header("2 · The trick: move the randomness into an input")
    st.markdown("Draw the noise from a **fixed** distribution and build $z$ from it with a deterministic, "
                "differentiable function of $\\phi$:")
    st.latex(r"\epsilon \sim \mathcal N(0, I), \qquad z = g_\phi(\epsilon) = \mu_\phi + \sigma_\phi \odot \epsilon"
             r"\quad\Longrightarrow\quad z \sim \mathcal N(\mu_\phi, \sigma_\phi^2).")
    st.markdown("This change of variables gives the same distribution of $z$, so the same expectation, but now "
                "taken over $\\epsilon$, whose distribution does not depend on $\\phi$. The gradient can move "
                "inside (for differentiable $f$):")
    st.latex(r"\nabla_\phi\, \mathbb{E}_{q_\phi(z)}[f(z)] = \nabla_\phi\, \mathbb{E}_{\mathcal N(\epsilon;0,I)}"
             r"\big[f(\mu_\phi + \sigma_\phi \odot \epsilon)\big] = \mathbb{E}_{\mathcal N(\epsilon;0,I)}"
             r"\big[\nabla_\phi f(\mu_\phi + \sigma_\phi \odot \epsilon)\big].")
    st.markdown("By the chain rule, with $\\partial z/\\partial\\mu = 1$ and $\\partial z/\\partial\\sigma = "
                "\\epsilon$, this is the **pathwise estimator** (one term per sample, averaged over $n$ samples):")
    st.latex(r"\frac{\partial}{\partial \mu}\mathbb{E}[f(z)] = \mathbb{E}\big[f'(z)\big] \approx \frac1n\sum_{i=1}^n"
             r" f'(\mu+\sigma\epsilon_i), \qquad \frac{\partial}{\partial \sigma}\mathbb{E}[f(z)] = "
             r"\mathbb{E}\big[f'(z)\,\epsilon\big] \approx \frac1n\sum_{i=1}^n f'(\mu+\sigma\epsilon_i)\,\epsilon_i .")
    st.markdown("Each term is an exact derivative of one sample's loss, so its expectation is the true gradient: "
                "the estimator is **unbiased**, and autograd computes it with an ordinary backward pass. "
                "This is what `Normal(mu, sigma).rsample()` and every VAE's `reparameterize` do.")


# ---- the live part: one set of controls drives the graph, the experiment and the autograd demo ----

def score_function_text() -> None:
    st.header("3 · The other way: the score function (REINFORCE)")
    st.markdown("Without reparameterizing, use the **log-derivative trick** "
                "$\\nabla_\\phi q_\\phi = q_\\phi\\, \\nabla_\\phi \\log q_\\phi$ inside the integral from step 1:")
    st.latex(r"\nabla_\phi \mathbb{E}_{q_\phi}[f(z)] = \int f(z)\,\nabla_\phi q_\phi(z)\,dz = \int q_\phi(z)\, f(z)\,"
             r"\nabla_\phi \log q_\phi(z)\,dz = \mathbb{E}_{q_\phi}\big[f(z)\,\nabla_\phi \log q_\phi(z)\big].")
    st.markdown("For a normal, $\\frac{\\partial}{\\partial\\mu}\\log q = \\frac{z-\\mu}{\\sigma^2} = "
                "\\frac{\\epsilon}{\\sigma}$ and $\\frac{\\partial}{\\partial\\sigma}\\log q = "
                "\\frac{(z-\\mu)^2-\\sigma^2}{\\sigma^3} = \\frac{\\epsilon^2-1}{\\sigma}$. This estimator is "
                "**also unbiased** and needs only values of $f$, never $f'$. But it multiplies $f(z)$ by "
                "zero-mean noise and ignores how $f$ changes, so its **variance** is usually much larger: it needs "
                "many more samples for the same accuracy. The experiment below measures both, on the same "
                "draws $z_1,\\dots,z_n$.")
    st.markdown("**The fine print, shown live.** The pathwise estimator needs $f$ to be differentiable. For the "
                "step $f(z)=\\mathbb 1[z>a]$, $f'(z) = 0$ wherever it exists, so every pathwise term is 0: the "
                "estimator is **biased**, because the true gradient "
                "$\\varphi\\big(\\tfrac{\\mu-a}{\\sigma}\\big)/\\sigma$ comes from probability mass crossing the "
                "jump, which $f'$ never sees. The score function stays unbiased. A VAE's decoder is differentiable, "
                "so the pathwise estimator is the right tool there; discrete latents need other tools.")


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


def graph_section(f: str, mu: float, sigma: float, a: float) -> None:
    st.subheader("See it: one sample, forward and backward")
    v = dict(one_sample(f, mu, sigma, ctx.seed, a), f_label=F_LABELS[f].replace("step: ", ""))
    fig = rfig.backward_pass_graphs(v, text_scale=1.3 if ctx.present else 1.0)
    ui.figure(fig, key="rp_graph", html_name="reparam-backward-pass",
              alt=(f"Two computational graphs for L = f(z) with one sample z = {v['z']:.3f}. Left: z is sampled from "
                   f"N(μ, σ²); the backward pass reaches z with dL/dz = {v['dL_dz']:.3f} and is blocked at the "
                   f"sampler, so μ and σ get no gradient. Right: z = μ + σ·ε with ε = {v['eps']:.3f} an outside "
                   f"input; the gradient flows to μ ({v['dL_dmu']:.3f}) and σ ({v['dL_dsigma']:.3f})."))
    st.caption(f"Real numbers from one autograd backward pass (seed {ctx.seed}). Press ▶ to animate the backward pass; "
               "the slider steps through it. Grey arrows: the forward pass. Vermillion: the gradient travelling "
               "back from the loss. On the left, PyTorch's `sample()` gives z no `grad_fn`, so the chain rule has "
               "nothing to multiply by; on the right, ε is an input like x, and μ, σ get ∂L/∂z·1 and ∂L/∂z·ε."
               + (" For the step function f′(z) = 0, so even the right graph carries a gradient of 0: see section 3."
                  if f == "step" else ""))


def experiment_section(f: str, r: dict) -> None:
    st.subheader("The experiment: both estimators on the same draws")
    s, ex, zs, vr = r["summary"], r["exact"], r["z_score"], r["variance_ratio"]
    cols = st.columns(4)
    cols[0].metric("Pathwise mean ∂/∂μ", fmt(s["reparam"]["dmu"]["mean"]),
                   help=f"± {fmt(s['reparam']['dmu']['stderr'])} (one standard error)")
    cols[1].metric("Score-function mean ∂/∂μ", fmt(s["score"]["dmu"]["mean"]),
                   help=f"± {fmt(s['score']['dmu']['stderr'])} (one standard error)")
    ratio_help = "Per-sample variance of the score-function estimates divided by that of the pathwise ones. " \
                 "∞: the pathwise estimates do not vary at all."
    cols[2].metric("Variance ratio ∂/∂μ", ratio(vr["dmu"]), help=ratio_help)
    cols[3].metric("Variance ratio ∂/∂σ", ratio(vr["dsigma"]), help=ratio_help)

    rows = []
    for m in ("reparam", "score"):
        for p in ("dmu", "dsigma"):
            rows.append({"estimator": rfig.METHOD_NAMES[m], "gradient": rfig.PARAM_NAMES[p] + " E[f(z)]",
                         "exact": ex[p], "mean": s[m][p]["mean"], "std. error": s[m][p]["stderr"],
                         "(mean − exact) / s.e.": zs[m][p], "per-sample variance": s[m][p]["variance"]})
    st.dataframe(rows, hide_index=True, width="stretch",
                 column_config={k: st.column_config.NumberColumn(format="%.4g") for k in
                                ("exact", "mean", "std. error", "(mean − exact) / s.e.", "per-sample variance")})

    if f == "step":
        st.warning(
            f"**The pathwise estimator is biased here.** Every one of its {r['n']:,} per-sample estimates is exactly "
            f"0 (autograd differentiates 1[z > a] as a constant), so its mean 0 misses the exact "
            f"∂/∂μ = {fmt(ex['dmu'], 4)} however many samples you take. The score-function estimator is "
            f"{fmt(abs(zs['score']['dmu']), 1)} standard errors from it: unbiased, as the derivation says.", icon="⚠️")
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
                     + ". See Mohamed et al. (2020), *Monte Carlo Gradient Estimation in Machine Learning*.")
        st.info(f"{verdict} {more}", icon="📏")

    ui.figure(rfig.estimator_histograms(r), key="rp_hist",
              alt=(f"Histograms of {r['n']} per-sample gradient estimates. Pathwise ∂/∂μ: mean "
                   f"{s['reparam']['dmu']['mean']:.3f}, variance {s['reparam']['dmu']['variance']:.3g}. Score function "
                   f"∂/∂μ: mean {s['score']['dmu']['mean']:.3f}, variance {s['score']['dmu']['variance']:.3g}. "
                   f"Exact {ex['dmu']:.3f}."))
    st.caption("Each column shares one x axis and one set of bins, so the widths compare directly (the x range "
               "covers the central 99% of estimates; the rest are counted in the end bins). The spread of a "
               "histogram is the per-sample variance: a mean of n samples has standard error √(variance / n).")
    ui.figure(rfig.estimate_intervals(r), key="rp_ci",
              alt=f"Means with ±2 standard error bars against the exact gradients {ex['dmu']:.3f} and {ex['dsigma']:.3f}.")
    ui.figure(rfig.convergence(r), key="rp_conv",
              alt="Running means of both estimators against the number of samples on a log axis, with ±2 standard "
                  "error bands narrowing around the exact gradient.")
    st.caption("Both bands shrink like 1/√n; the estimator with the larger per-sample variance has the wider band.")
    ui.download_csv("⬇️ Per-sample estimates (CSV)",
                    {"pathwise_dmu": r["samples"]["reparam"]["dmu"], "pathwise_dsigma": r["samples"]["reparam"]["dsigma"],
                     "score_dmu": r["samples"]["score"]["dmu"], "score_dsigma": r["samples"]["score"]["dsigma"]},
                    f"reparam-estimates-{f.replace('^', '').replace(' ', '')}-n{r['n']}.csv", key="rp_csv")


def autograd_section(mu: float, sigma: float) -> None:
    st.header("4 · Autograd, shown")
    d = demo(mu, sigma, ctx.seed)
    st.markdown(f"Executed just now with PyTorch {torch.__version__}, μ = {mu:g}, σ = {sigma:g}, seed {ctx.seed}. "
                "These are the real outputs, not a transcript typed in advance.")
    c1, c2 = st.columns(2)
    setup = (f">>> mu = torch.tensor({mu!r}, dtype=torch.float64, requires_grad=True)\n"
             f">>> sigma = torch.tensor({sigma!r}, dtype=torch.float64, requires_grad=True)\n")
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
    st.markdown(f"`rsample()` returned ∂z/∂μ = {d['dz_dmu']:.4f} and ∂z/∂σ = {d['dz_dsigma']:.4f} = ε, exactly "
                "the local derivatives of z = μ + σ·ε. `sample()` runs under `no_grad`: its z is a constant to "
                "autograd, which is the blocked edge in the left-hand graph above.")


@st.fragment
def live(scene_idx: int) -> None:
    """Controls and everything they drive. A fragment: moving a slider reruns only this part."""
    f, a, mu, sigma, n = controls()
    r = ui.run_safely(lambda: experiment(f, mu, sigma, n, ctx.seed, a), "These settings cannot be used",
                      "Pick σ > 0 and finite values for μ and a.")
    if r is None:
        return
    if show(1) or show(2):
        exact_readout(f, mu, sigma, a, r)
    if show(1):
        graph_section(f, mu, sigma, a)
    if show(2):
        score_function_text()
        experiment_section(f, r)
    if show(3):
        autograd_section(mu, sigma)


if any(show(i) for i in (1, 2, 3)):
    live(scene)


# ---- 5. inside the trained VAE -------------------------------------------------------------------

def vae_section() -> None:
    st.header("5 · Inside a trained VAE")
    try:
        pre = ui.pretrained(ctx.dataset_name, "vae", 1.0, 16)
    except (OSError, RuntimeError, ValueError) as exc:
        st.error(f"The pretrained VAE for {ctx.dataset_name} could not be loaded: {exc}. Run `python "
                 "scripts/build_zoo.py` to rebuild the shipped models.")
        return
    n_val = len(pre.val_idx)
    st.markdown(f"The pretrained VAE (β = 1, 16 latent dimensions, trained on {ctx.dataset_name}) encodes a held-out "
                "image into μ and σ; we draw one ε, form z = μ + σ·ε, decode, and backpropagate the loss "
                "L = reconstruction + β·KL to μ and log σ² with PyTorch autograd: exactly the step that trains "
                "the encoder.")
    for key in ("rp_idx", "_keep_rp_idx"):  # the widget value, or the one ui keeps across pages
        if (st.session_state.get(key) or 0) > n_val - 1:  # e.g. after switching to a smaller dataset
            st.session_state[key] = n_val - 1
    c1, c2 = st.columns(2)
    with c1:
        idx = int(ui.number(f"Held-out image (0 to {n_val - 1})", "rp_idx", 0, n_val - 1, 0, step=1))
    with c2:
        eps_draw = int(ui.number("Draw of ε (change it for a new ε)", "rp_eps", 0, 9999, 0, step=1))
    ui.show_url_errors()
    case = vae_case(ctx.dataset_name, idx, ctx.seed * 10_007 + eps_draw)
    g, avg = case["one"], case["avg"]
    names = ctx.dataset.class_names if getattr(ctx.dataset, "class_names", None) else None
    label = names[case["label"]] if names is not None and case["label"] < len(names) else str(case["label"])

    c1, c2 = st.columns([1, 3])
    with c1:
        ui.figure(image_grid([case["x"], g["recon_x"]], ctx.dataset.image_shape, ncols=2,
                             col_titles=["input x", "decoder(z)"], height=230), key="rp_vae_img",
                  alt=f"The held-out input (dataset index {case['dataset_index']}, label {label}) and the decoder's "
                      "output at the sampled z.")
        st.caption(f"Dataset index {case['dataset_index']}, label {label}. Loss for this draw: "
                   f"{g['recon']:.1f} (reconstruction) + {g['kl']:.2f} (KL) = {g['loss']:.1f} nats.")
    with c2:
        ui.figure(rfig.vae_posterior(g["mu"], g["sigma"], g["eps"], g["z"]), key="rp_vae_post",
                  alt="For each of the 16 latent dimensions: the encoder's mean μ with a ±σ bar, and the drawn "
                      "z = μ + σ·ε as a diamond, over the prior's ±1 band.")
    ui.figure(rfig.vae_gradient_bars(g), key="rp_vae_grad",
              alt="Bar charts of dL/dμ and dL/dlogvar for each latent dimension, split into the reconstruction part "
                  "and the β·KL part, with the total from backpropagation marked.")

    active = [j for j in range(len(g["mu"])) if g["kl_per_dim"][j] > 0.01]
    unused = [j for j in range(len(g["mu"])) if j not in active]
    lst = ", ".join(f"z{j + 1}" for j in active) or "none"
    rec_lv = ", ".join(f"z{j + 1}: {avg['drecon_dlogvar'][j]:+.2f} vs {avg['dkl_dlogvar'][j]:+.2f}" for j in active[:6])
    st.markdown(
        "**Reading it.** Gradient descent moves each number *against* its gradient.\n"
        "- **∂L/∂μⱼ**: the β·KL part is exactly β·μⱼ, so it always pulls μⱼ back toward the prior's mean 0. "
        "The reconstruction part has come back through the decoder and through z = μ + σ·ε (∂z/∂μ = 1): it says "
        "which way moving zⱼ would rebuild this image better.\n"
        "- **∂L/∂log σ²ⱼ**: the β·KL part is β(σⱼ² − 1)/2, negative when σⱼ < 1: the KL wants *more* noise. The "
        "reconstruction part arrives through ∂z/∂log σ² = ε·σ/2; for one ε its sign depends on ε, but on "
        f"average over {N_AVG} draws it is positive in the dimensions the decoder uses (noise spoils the "
        f"reconstruction). Reconstruction vs KL part, averaged: {rec_lv or 'no active dimensions'}. They pull in "
        "opposite directions with similar strength; averaged over the training images they balance, and that "
        "balance is what sets σⱼ.\n"
        f"- **Which dimensions carry information**: {lst} (KL above 0.01 nats). "
        + (f"The other {len(unused)} have μ ≈ 0 and σ ≈ 1, the decoder ignores them, and both parts of their "
           "gradients are ≈ 0: they have collapsed to the prior.\n" if unused else "\n")
        + "- **Without the trick** only the orange β·KL bars could reach the encoder: they pull every q(z|x) to "
        "N(0, I), and the code would carry nothing about x. The blue bars exist only because the gradient can "
        "pass through z = μ + σ·ε.")
    with st.expander("All the numbers"):
        rows = [{"dim": f"z{j + 1}", "μ": g["mu"][j], "σ": g["sigma"][j], "ε": g["eps"][j], "z": g["z"][j],
                 "KL (nats)": g["kl_per_dim"][j], "∂L/∂μ": g["dL_dmu"][j], "∂L/∂log σ²": g["dL_dlogvar"][j],
                 f"recon part of ∂L/∂log σ², mean of {N_AVG} ε": avg["drecon_dlogvar"][j],
                 "KL part of ∂L/∂log σ²": avg["dkl_dlogvar"][j]} for j in range(len(g["mu"]))]
        st.dataframe(rows, hide_index=True, width="stretch",
                     column_config={k: st.column_config.NumberColumn(format="%.3f") for k in rows[0] if k != "dim"})
        ui.download_csv("⬇️ These numbers (CSV)", rows, f"vae-gradients-{ctx.dataset_name}-{idx}.csv", key="rp_vae_csv")


if show(4):
    vae_section()

ui.self_check("rp", [
    ("You draw z = Normal(μ, σ).sample() and call f(z).backward(). What gradient reaches μ?",
     "None: sample() runs without a graph, so z has requires_grad=False and backward() raises the RuntimeError in "
     "section 4. Mathematically, ∇ of E_q[f(z)] puts the derivative on the density q_φ, which a finished sample "
     "cannot see."),
    ("For the step f(z) = 1[z > a], which estimator gets the gradient right, and why?",
     "The score function. The pathwise estimator uses f′(z), which is 0 wherever it exists, so it returns exactly 0: "
     "biased. The true gradient φ((μ−a)/σ)/σ comes from probability mass crossing the jump, which only "
     "f(z)·∇log q sees. Choose 'step' in the experiment to watch it."),
    ("If the reconstruction gradient could not reach μ and log σ², what would the VAE's encoder learn?",
     "Only the β·KL part (the orange bars in section 5) would reach it: β·μ and β(σ² − 1)/2 push every q(z|x) to "
     "N(0, I), so the code would carry no information about the image. The trick is what lets the "
     "reconstruction term train the encoder."),
])
