"""Posterior collapse, three causes kept apart: short training runs a page can start and compare.

Each *experiment* is a few short runs of the same small VAE (``core.training.Trainer``, the zoo's
MLP recipe for the dataset, 16 latents) that differ in one setting only:

* ``"objective"``: a large beta (8), trained plainly and with KL warm-up (beta ramped from 0,
  Bowman et al. 2016), both for ``OBJECTIVE_EPOCHS``. At a large beta the optimum of the objective
  itself carries no information (rate R = 0), so warm-up only delays the collapse: the warm-up run
  learns a code while beta is small, loses it as beta passes a few nats per nat, and both runs end
  with no active unit. (Measured for seeds 0-3 with a ramp over 1,600 of 2,080 steps: 9 to 15 of
  16 units active at the peak, all gone by step 720-860, at beta 3.6-4.3; the plain run never had
  one. With the ramp over 400 of 780 steps beta passes 1 at step 50, before this model has learned
  to use z at all (about 200 steps at beta = 1), and the warm-up run never had an active unit
  either: nothing to delay.)
* ``"optimisation"``: beta = 1 trained plainly, with KL warm-up, and with free bits (Kingma et al.
  2016). Early in training z is still noise and the KL is the easiest term to lower; the plain run
  switches units off that the warm-up and free-bits runs keep (Bowman et al. 2016).
* ``"likelihood"``: beta = 1 with a Bernoulli decoder and with a unit-variance Gaussian decoder
  on the same pixels. The Gaussian's reconstruction term ||x - x_hat||^2 / 2 is small on pixels in
  [0, 1], so the KL weighs relatively more, like a larger beta (Lucas et al. 2019).

Every run reports, on the held-out split, the active units by the one definition of
``core.units`` (Burda et al. 2016: Var_x(mu_j(x)) > 0.01), the rate R = mean KL(q(z|x) || p(z))
and the distortion D = mean -log p(x|z) (nats per image, one sample of z; the Bernoulli term is a
cross-entropy on grey pixels and the Gaussian term has no constant, so the two D are not
comparable), and curves of both along training.

Results are cached in memory per (dataset, run settings, seed, epochs): one class shares them, and
a run used by two experiments (beta = 1, Bernoulli, plain) is trained once. A second caller of a
run in progress waits for it instead of training it again.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from core.data import load_dataset
from core.jobs import Job, Jobs

EPOCHS = 30            # 30 epochs of the digits' 1,617 training images, batch 64: 780 steps (about 1 s each run)
WARMUP_STEPS = 400     # beta ramps from 0 over the first half of the run
FREE_BITS = 0.5        # nats per dimension
EVAL_EVERY = 20        # steps between held-out evaluations (the curves)
DATASET = "digits"
OBJECTIVE_EPOCHS = 80  # 2,080 steps: the warm-up ramp (below) ends with 480 steps at the full beta
OBJECTIVE_WARMUP_STEPS = 1600


@dataclass(frozen=True)
class RunSpec:
    """One run: the label shown and the settings that differ between runs of an experiment."""

    label: str
    beta: float
    likelihood: str = "bernoulli"
    warmup_steps: int = 0
    free_bits: float = 0.0

    def key(self) -> tuple:
        return (self.beta, self.likelihood, self.warmup_steps, self.free_bits)


@dataclass(frozen=True)
class Experiment:
    title: str
    cause: str
    runs: tuple[RunSpec, ...]
    epochs: int = EPOCHS


EXPERIMENTS: dict[str, Experiment] = {
    "objective": Experiment(
        "The objective: a large β", "objective",
        (RunSpec("plain, β = 8", 8.0), RunSpec("KL warm-up, β = 8", 8.0, warmup_steps=OBJECTIVE_WARMUP_STEPS)),
        epochs=OBJECTIVE_EPOCHS),
    "optimisation": Experiment(
        "Optimisation: the KL is the easiest term early on", "optimisation",
        (RunSpec("plain, β = 1", 1.0), RunSpec("KL warm-up, β = 1", 1.0, warmup_steps=WARMUP_STEPS),
         RunSpec("free bits, β = 1", 1.0, free_bits=FREE_BITS))),
    "likelihood": Experiment(
        "The likelihood: a unit-variance Gaussian decoder", "likelihood",
        (RunSpec("Bernoulli decoder, β = 1", 1.0),
         RunSpec("Gaussian decoder (variance 1), β = 1", 1.0, likelihood="gaussian"))),
}


@dataclass(frozen=True)
class RunResult:
    """A finished run, measured on the held-out split (nats per image).

    ``active_units``: Burda et al.'s count; ``var_mu``: (K,) Var_x mu_j; ``rate``: mean KL term;
    ``kl_per_dim``: (K,); ``distortion``: mean reconstruction term; ``curve``: dict of equal-length
    lists ``step``, ``beta`` (the weight used at that step), ``rate``, ``active_units``.
    """

    spec: RunSpec
    active_units: int
    latent_dim: int
    rate: float
    distortion: float
    kl_per_dim: list
    var_mu: list
    curve: dict
    steps: int
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


_lock = threading.Lock()
_results: dict[tuple, RunResult] = {}
_running: dict[tuple, threading.Event] = {}


def _cache_key(spec: RunSpec, dataset: str, seed: int, epochs: int) -> tuple:
    return (dataset, spec.key(), int(seed), int(epochs))


def cached(spec: RunSpec, dataset: str = DATASET, seed: int = 0, epochs: int = EPOCHS) -> RunResult | None:
    with _lock:
        return _results.get(_cache_key(spec, dataset, seed, epochs))


def train_run(spec: RunSpec, dataset: str = DATASET, seed: int = 0, epochs: int = EPOCHS,
              progress: Callable[[float], None] | None = None) -> RunResult:
    """Train one run now (no cache): the zoo's recipe for ``dataset`` (MLP sizes, batch size,
    learning rate) with 16 latents, ``epochs`` epochs, evaluated on the held-out split every
    ``EVAL_EVERY`` steps. ``progress(f)`` is called with the finished fraction f in [0, 1]."""
    import time

    from core.models import ModelConfig
    from core.training import TrainConfig, Trainer, evaluate_model
    from core.zoo import RECIPES

    if spec.likelihood not in ("bernoulli", "gaussian"):
        raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {spec.likelihood!r}")
    ds = load_dataset(dataset)
    r = RECIPES[dataset]
    mcfg = ModelConfig(kind="vae", input_dim=ds.dim, hidden_dims=r["hidden_dims"], latent_dim=16,
                       likelihood=spec.likelihood)
    tcfg = TrainConfig(lr=r["lr"], batch_size=r["batch_size"], epochs=int(epochs), seed=int(seed), beta=spec.beta,
                       warmup_steps=spec.warmup_steps, free_bits=spec.free_bits, eval_every=10**9,
                       snapshot_every=0)
    tr = Trainer(mcfg, tcfg, ds)
    curve = {"step": [], "beta": [], "rate": [], "active_units": []}
    t0 = time.perf_counter()

    def measure() -> dict:
        ev = evaluate_model(tr.model, tr.x_val, spec.beta, spec.likelihood, seed=seed)
        curve["step"].append(tr.step)
        curve["beta"].append(tr.effective_beta())
        curve["rate"].append(ev["kl"])
        curve["active_units"].append(ev["active_units"])
        return ev

    measure()
    while not tr.finished:
        tr.run_steps(EVAL_EVERY)
        ev = measure()
        if progress is not None:
            progress(min(1.0, tr.step / tr.total_steps))
    if tr.status == "diverged":
        raise RuntimeError(f"the run '{spec.label}' diverged: {tr.message}")
    return RunResult(spec=spec, active_units=int(ev["active_units"]), latent_dim=16, rate=float(ev["kl"]),
                     distortion=float(ev["recon"]), kl_per_dim=[float(v) for v in ev["kl_per_dim"]],
                     var_mu=[float(v) for v in ev["var_mu"]], curve=curve, steps=int(tr.step),
                     seconds=time.perf_counter() - t0)


def get_run(spec: RunSpec, dataset: str = DATASET, seed: int = 0, epochs: int = EPOCHS,
            progress: Callable[[float], None] | None = None) -> RunResult:
    """``train_run`` through the shared cache: a finished run is returned at once; a run another
    caller is training is waited for; otherwise it is trained now and stored."""
    key = _cache_key(spec, dataset, seed, epochs)
    while True:
        with _lock:
            if key in _results:
                res = _results[key]
                return res if res.spec == spec else RunResult(**{**res.__dict__, "spec": spec})
            event = _running.get(key)
            if event is None:
                event = _running[key] = threading.Event()
                break
        event.wait()  # someone else trains it; then read the cache (or train it if that failed)
    try:
        res = train_run(spec, dataset, seed, epochs, progress)
        with _lock:
            _results[key] = res
        return res
    finally:
        with _lock:
            _running.pop(key, None)
        event.set()


def experiment_done(name: str, dataset: str = DATASET, seed: int = 0, epochs: int | None = None) -> bool:
    """True when every run of experiment ``name`` is in the cache (the page shows it at once)."""
    exp = experiment(name)
    epochs = exp.epochs if epochs is None else epochs
    return all(cached(s, dataset, seed, epochs) is not None for s in exp.runs)


def experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {sorted(EXPERIMENTS)}, got {name!r}")
    return EXPERIMENTS[name]


def run_experiment(name: str, dataset: str = DATASET, seed: int = 0, epochs: int | None = None,
                   progress: Callable[[float, str], None] | None = None) -> list[RunResult]:
    """Every run of experiment ``name`` (cached per run), in order, for ``epochs`` (default: the
    experiment's own). ``progress(f, label)``: the overall finished fraction and the run in progress."""
    exp = experiment(name)
    epochs = exp.epochs if epochs is None else epochs
    runs = exp.runs
    out = []
    for i, spec in enumerate(runs):
        def step(f: float, i=i, spec=spec) -> None:
            if progress is not None:
                progress((i + f) / len(runs), spec.label)
        out.append(get_run(spec, dataset, seed, epochs, step))
        step(1.0)
    return out


# ---- in the background (core.jobs): a page starts an experiment and polls it ----------------------

JOBS = Jobs(max_done=32, max_age_s=600, max_running=1)  # one training at a time: the machine has 2 cores


def job_key(name: str, dataset: str = DATASET, seed: int = 0, epochs: int | None = None) -> tuple:
    exp = experiment(name)
    return ("collapse", name, dataset, int(seed), int(exp.epochs if epochs is None else epochs))


def start_experiment(name: str, dataset: str = DATASET, seed: int = 0, epochs: int | None = None) -> Job:
    """Run experiment ``name`` on a background thread (``core.jobs``); the same experiment asked for
    again while it runs, or after, gets the same job. Its result is the list of ``RunResult``; its
    text names the run in training. The runs land in the shared cache as they finish."""
    key = job_key(name, dataset, seed, epochs)

    def work(report) -> list[RunResult]:
        return run_experiment(name, dataset, seed, epochs,
                              progress=lambda f, label: report(f, f"training “{label}”"))
    return JOBS.submit(key, work)


def experiment_job(name: str, dataset: str = DATASET, seed: int = 0, epochs: int | None = None) -> Job | None:
    """The background job of experiment ``name``, if one was started and is not yet evicted."""
    return JOBS.get(job_key(name, dataset, seed, epochs))


def curve_facts(result: RunResult) -> dict:
    """Facts of one run's held-out curve: the most active units at any evaluation (``peak_active``)
    and the first step it was reached, the last step with any active unit and the β used then
    (None if never), and the last step with a rate above 0.1 nats."""
    c = result.curve
    au = c["active_units"]
    peak = max(au)
    active = [i for i, a in enumerate(au) if a > 0]
    up = [i for i, r in enumerate(c["rate"]) if r > 0.1]
    return dict(peak_active=int(peak), peak_step=int(c["step"][au.index(peak)]),
                last_active_step=int(c["step"][active[-1]]) if active else None,
                beta_at_last_active=float(c["beta"][active[-1]]) if active else None,
                last_rate_step=int(c["step"][up[-1]]) if up else None)


def verdict(name: str, results: list[RunResult]) -> dict:
    """What the runs of experiment ``name`` show, as facts the page words: counts per run and
    whether the experiment's claim held for this seed (``holds``)."""
    by = {r.spec.label: r for r in results}
    au = [r.active_units for r in results]
    if name == "objective":
        holds = all(a == 0 for a in au)
        peak = [max(r.curve["rate"]) for r in results]
        facts = [curve_facts(r) for r in results]
        plain, warm = facts
        # delayed: the warm-up run had active units, and had them later than the plain run
        delayed = warm["last_active_step"] is not None and (
            plain["last_active_step"] is None or warm["last_active_step"] > plain["last_active_step"])
        return dict(holds=holds, delayed=delayed, active=au, final_rate=[r.rate for r in results],
                    peak_rate=peak, curves=facts)
    if name == "optimisation":
        plain, rest = results[0], results[1:]
        return dict(holds=all(r.active_units > plain.active_units for r in rest), active=au,
                    kept=[r.active_units - plain.active_units for r in rest])
    if name == "likelihood":
        bern, gauss = results
        return dict(holds=gauss.active_units < bern.active_units, active=au, by=by)
    raise ValueError(name)


def pixel_pca_variances(dataset: str = DATASET, seed: int = 0, n: int = 5) -> np.ndarray:
    """The ``n`` largest variances (eigenvalues of the pixel covariance, descending) of the
    training images, pixels in [0, 1]: (n,) float64.

    In probabilistic PCA with observation noise variance s^2 (Tipping & Bishop 1999), the maximum-
    likelihood solution keeps a principal direction only if its variance exceeds s^2; Lucas et al.
    (2019) show that a linear VAE has the same solution, so every direction below s^2 collapses.
    A unit-variance Gaussian decoder is s^2 = 1."""
    from core.data import train_val_split

    ds = load_dataset(dataset)
    train_idx, _ = train_val_split(ds.n, 0.1, seed)
    x = np.asarray(ds.x[train_idx], dtype=np.float64)
    ev = np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1]
    return ev[:n]
