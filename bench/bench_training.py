"""Live-training throughput: the real page in Chromium against a bare PyTorch loop.

The page: ``streamlit run app.py`` (tests.conftest.start_server) and Chromium on ``/train`` with
the default model (MNIST-5k, VAE 784-256-128-16, Bernoulli, the page's default batch size
``core.runs.DEFAULT_BATCH``, lr 2e-3), training in the
server's background thread while the tab stays open and the live fragment redraws every 0.5 s
(loss curves, KL bars, reconstructions, samples).

The bare loop: the same model, loss and batch size in this process, with nothing else (no
history, no held-out evaluation, no snapshots, no page): shuffled batches, forward,
``elbo_terms``, backward, a default ``torch.optim.Adam`` step, as in pytorch/examples. The
trainer uses Adam's fused implementation (``core.training.make_optimizer``), so a second bare
loop with that optimiser runs too, and its ratio is reported beside the budget's. Both use one
torch thread (the server's setting).

Windows alternate on one run: the page trains for ``--window`` seconds (its throughput is read
from the page: steps and seconds of training, as the Trainer counts them, at the start and the
end of the window), then Pause, then the bare loop trains for the same time, then Resume, and so
on. Alternating short windows keeps other load on the machine (it may be shared) from favouring
either side; the table reports the medians. Usage:
``python -m bench.bench_training [--pairs 6] [--window 5]``.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time

import torch

from core.data import load_dataset, train_val_split
from core.losses import elbo_terms
from core.models import ModelConfig, build_model

BUDGET = 0.90
from core.runs import DEFAULT_BATCH

DATASET, LR, SEED, LATENT, HIDDEN = "mnist-5k", 2e-3, 0, 16, (256, 128)
BATCH = DEFAULT_BATCH[DATASET]  # the bare loop must use the batch size the page trains with


class BareLoop:
    """A plain PyTorch training loop on the page's default configuration, resumable."""

    def __init__(self, fused: bool = False):
        torch.set_num_threads(1)
        ds = load_dataset(DATASET)
        train_idx, _ = train_val_split(ds.n, 0.1, SEED)
        self.x = torch.as_tensor(ds.x[train_idx])
        torch.manual_seed(SEED)
        self.model = build_model(ModelConfig("vae", ds.dim, HIDDEN, LATENT, "bernoulli"), "cpu")
        # fused=True: the same loop with the trainer's optimiser (core.training.make_optimizer)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR, fused=fused or None)
        self.g = torch.Generator().manual_seed(SEED)
        self.perm, self.pos = None, 0

    def step(self) -> None:
        if self.perm is None or self.pos >= len(self.x):
            self.perm, self.pos = torch.randperm(len(self.x), generator=self.g), 0
        xb = self.x[self.perm[self.pos:self.pos + BATCH]]
        self.pos += BATCH
        eps = torch.randn((len(xb), LATENT), generator=self.g)
        loss = elbo_terms(xb, self.model(xb, eps=eps), 1.0, "bernoulli").loss
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def run_for(self, seconds: float) -> tuple[float, float]:
        """Train for ``seconds``; returns (samples per second, samples per CPU second)."""
        n, t0, c0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds:
            self.step()
            n += 1
        return n * BATCH / (time.perf_counter() - t0), n * BATCH / (time.process_time() - c0)


PROGRESS = '[data-testid="stProgress"]'


def read_progress(page) -> tuple[int, float]:
    """(step, seconds of training) from the page's progress line."""
    text = page.locator(PROGRESS).first.inner_text()
    m = re.search(r"step (\d+)/\d+ · ([\d.]+) s ·", text)
    if not m:
        raise RuntimeError(f"unexpected progress text: {text!r}")
    return int(m.group(1)), float(m.group(2))


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) used so far by process ``pid`` (Linux /proc)."""
    import os
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_training(page) -> None:
    """Wait until the page shows a run training, at step 20 or later (past the warm-up steps)."""
    page.wait_for_function("() => { const p = document.querySelector('[data-testid=stProgress]');"
                           " return p && /training/.test(p.innerText) && /step ([2-9]\\d|\\d{3,})\\//.test(p.innerText); }")


def wait_state(page, word: str) -> None:
    page.wait_for_selector(f'{PROGRESS}:has-text("{word}")')


def measure(url: str, pairs: int, window: float, server_pid: int | None = None) -> dict[str, list[float]]:
    """Alternating windows. Returns lists per window: page (samples/s of training), page_wall,
    bare (samples/s); and, with ``server_pid``, page_cpu and bare_cpu (samples per CPU second:
    the whole server process, training and drawing and serving, against the bare loop)."""
    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM, wait_drawn

    bare, bare_fused = BareLoop(), BareLoop(fused=True)
    bare.run_for(1.0)  # warm-up
    bare_fused.run_for(1.0)
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    out = {k: [] for k in ("page", "page_wall", "bare", "bare_fused", "page_cpu", "bare_cpu")}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(300_000)
        page.goto(url)
        wait_drawn(page)
        page.goto(f"{url}/train?dataset={DATASET}&tr_epochs=200&tr_seed={SEED}")
        wait_drawn(page)
        page.get_by_role("button", name="Start training").click()
        wait_training(page)
        for _ in range(2 * pairs):
            if len(out["bare"]) >= pairs:
                break
            if "finished" in page.locator(PROGRESS).first.inner_text():
                # A 200-epoch run of MNIST-5k lasts only ~30 s of training on a fast idle core: start another.
                page.get_by_role("button", name="Start training").click()
                wait_training(page)
            s0, t0 = read_progress(page)
            w0, c0 = time.perf_counter(), process_cpu(server_pid) if server_pid else 0.0
            time.sleep(window)
            s1, t1 = read_progress(page)
            w1, c1 = time.perf_counter(), process_cpu(server_pid) if server_pid else 0.0
            if "finished" in page.locator(PROGRESS).first.inner_text():
                continue  # the run ended inside this window: its figures are partial, measure again
            if s1 <= s0 or t1 <= t0:
                raise RuntimeError("the page did not train during a window")
            out["page"].append((s1 - s0) * BATCH / (t1 - t0))
            out["page_wall"].append((s1 - s0) * BATCH / (w1 - w0))
            if server_pid and c1 > c0:
                out["page_cpu"].append((s1 - s0) * BATCH / (c1 - c0))
            page.get_by_role("button", name="Pause").click()
            wait_state(page, "paused")
            sps, cps = bare.run_for(window)
            out["bare"].append(sps)
            out["bare_cpu"].append(cps)
            out["bare_fused"].append(bare_fused.run_for(window)[0])
            page.get_by_role("button", name="Resume").click()
            wait_state(page, "training")
            time.sleep(1.0)
        page.get_by_role("button", name="Stop").click()
        browser.close()
    return out


def rows(pairs: int = 6, window: float = 5.0) -> list[tuple[str, str, str]]:
    """The README table's row (for bench.run); the per-window figures go to stderr."""
    from tests.conftest import start_server, stop_server

    proc, url = start_server(env={"LATENT_LAB_TORCH_THREADS": "1"})
    load = _load()
    try:
        m = measure(url, pairs, window, server_pid=proc.pid)
    finally:
        stop_server(proc)
    ratios = [p / b for p, b in zip(m["page"], m["bare"])]
    cpu_ratios = [p / b for p, b in zip(m["page_cpu"], m["bare_cpu"])]
    for name, vals in m.items():
        print(f"# {name} (samples/s{' per CPU second' if 'cpu' in name else ''}): "
              + ", ".join(f"{v:,.0f}" for v in vals), file=sys.stderr)
    print("# throughput ratios: " + ", ".join(f"{r:.0%}" for r in ratios), file=sys.stderr)
    print("# CPU-efficiency ratios: " + ", ".join(f"{r:.0%}" for r in cpu_ratios), file=sys.stderr)
    print(f"# load average before / after: {load} / {_load()} (on {_cores()} cores)", file=sys.stderr)
    p, w, b, r = (statistics.median(v) for v in (m["page"], m["page_wall"], m["bare"], ratios))
    rf = statistics.median([p_ / b_ for p_, b_ in zip(m["page"], m["bare_fused"])])
    bf = statistics.median(m["bare_fused"])
    rc = statistics.median(cpu_ratios) if cpu_ratios else float("nan")
    ok = "✅" if r >= BUDGET else "❌"
    return [(f"Live training while the page updates ({DATASET}, VAE 784-256-128-16, batch {BATCH}, 1 thread; "
             f"median of {len(ratios)} alternating {window:g} s windows against a bare PyTorch loop; load {load})",
             f"{p:,.0f} vs {b:,.0f} samples/s ({r:.0%}; per CPU second of the whole server: {rc:.0%}) {ok}; "
             f"against the bare loop with the trainer's fused Adam, {bf:,.0f} samples/s ({rf:.0%})",
             f"≥ {BUDGET:.0%}")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=6, help="page/bare window pairs")
    ap.add_argument("--window", type=float, default=5.0, help="seconds per window")
    a = ap.parse_args(argv)
    for r in rows(a.pairs, a.window):
        print("| " + " | ".join(r) + " |")
    return 0


def _load() -> str:
    import os
    return f"{os.getloadavg()[0]:.1f}"


def _cores() -> int:
    import os
    return os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit(main())
