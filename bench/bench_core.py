"""Core benchmarks: cold start, warm data load, zoo load, trainer throughput vs a bare PyTorch loop.

    python -m bench.bench_core
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def launch_browser(p):
    return p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROME_ARGS)


def cold_start(repeats: int = 3, path: str = "/", marker: str = "How does an autoencoder work?",
               script: str | None = None) -> float:
    """Seconds from launching `streamlit run` to ``marker`` drawn in Chromium (median of repeats).
    The browser is started beforehand, as a user's browser already is. ``script``: the source of a
    stand-in app to time instead of Latent Lab (the floor: Streamlit itself on this machine)."""
    import tempfile

    from playwright.sync_api import sync_playwright

    import tests.conftest as tc

    times = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = launch_browser(p)
        root = tc.ROOT
        if script is not None:  # start_server runs <ROOT>/app.py: point it at a stand-in
            (Path(tmp) / "app.py").write_text(script)
            tc.ROOT = Path(tmp)
        try:
            for _ in range(repeats):
                port = tc._free_port()
                t0 = time.perf_counter()
                proc, url = tc.start_server(port)
                try:
                    page = browser.new_page()
                    page.goto(url + path)
                    page.get_by_text(marker).first.wait_for(timeout=60_000)
                    times.append(time.perf_counter() - t0)
                    page.close()
                finally:
                    tc.stop_server(proc)
        finally:
            tc.ROOT = root
        browser.close()
    return statistics.median(times)


FLOOR_APP = 'import streamlit as st\nst.title("How does an autoencoder work?")\n'


def warm_load_ms() -> float:
    from core.data import load_dataset
    load_dataset("mnist-5k")
    t0 = time.perf_counter()
    for _ in range(100):
        load_dataset("mnist-5k")
        load_dataset("digits")
    return (time.perf_counter() - t0) / 200 * 1000


def zoo_load_ms() -> float:
    from core import zoo
    spec = zoo.normalise_spec("mnist-5k", "vae", 1.0, 16)
    zoo._memory.pop(spec, None)
    t0 = time.perf_counter()
    zoo.pretrained("mnist-5k", "vae", 1.0, 16)
    return (time.perf_counter() - t0) * 1000


def trainer_vs_bare(epochs: int = 8, rounds: int = 3) -> tuple[float, float, float]:
    """Samples/s of core.training.Trainer, configured exactly as the training page configures it
    (core.runs.make_configs: held-out evaluations, timeline snapshots, history), of a bare
    PyTorch loop with the same model (784-256-128-16 VAE) and batch and a default
    ``torch.optim.Adam`` (as in pytorch/examples), and of that loop with the fused Adam the
    trainer uses (``core.training.make_optimizer``). One torch thread (as the app runs).
    ``rounds`` alternating rounds of ``epochs`` epochs each; medians (ours, bare, bare fused)."""
    import torch
    import torch.nn.functional as F

    from core import runs
    from core.data import load_dataset
    from core.models import build_model
    from core.training import Trainer

    torch.set_num_threads(1)
    ds = load_dataset("mnist-5k")
    mc, tc = runs.make_configs(ds, "vae", 16, (256, 128), "bernoulli", 2e-3, 128, epochs, 0, 1.0)

    def ours_once() -> float:
        t = Trainer(mc, tc, ds)
        t0 = time.perf_counter()
        t.run_steps(10**9)
        return t.step * tc.batch_size / (time.perf_counter() - t0)

    def bare_once(fused: bool = False) -> float:
        torch.manual_seed(0)
        m = build_model(mc, "cpu")
        opt = torch.optim.Adam(m.parameters(), lr=tc.lr, fused=fused or None)
        t = Trainer(mc, tc, ds)  # only for its train split
        x = t.x_train
        n, t0 = 0, time.perf_counter()
        for _ in range(epochs):
            perm = torch.randperm(len(x))
            for i in range(0, len(x), tc.batch_size):
                xb = x[perm[i:i + tc.batch_size]]
                mu, lv = m.encode(xb)
                logits = m.decode_logits(mu + torch.exp(0.5 * lv) * torch.randn_like(mu))
                loss = (F.binary_cross_entropy_with_logits(logits, xb, reduction="sum")
                        - 0.5 * torch.sum(1 + lv - mu.pow(2) - lv.exp())) / len(xb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                n += len(xb)
        return n / (time.perf_counter() - t0)

    ours_once(), bare_once(), bare_once(True)  # warm-up: allocator, kernels
    ours, bare, bare_fused = [], [], []
    for _ in range(rounds):
        ours.append(ours_once())
        bare.append(bare_once())
        bare_fused.append(bare_once(True))
    return statistics.median(ours), statistics.median(bare), statistics.median(bare_fused)


def rows() -> list[tuple[str, str, str]]:
    out = []
    cs = cold_start()
    floor = cold_start(script=FLOOR_APP)
    out.append(("Cold start: `streamlit run` to home page drawn (Chromium)",
                f"{cs:.2f} s (floor: a one-line Streamlit app, {floor:.2f} s)", "≤ 2 s"))
    lesson = cold_start(1, "/kl", "KL divergence") if (ROOT / "pages" / "2_kl.py").exists() else None
    if lesson is not None:
        out.append(("Fresh server to the KL page drawn (needs a trained model)", f"{lesson:.2f} s", "≤ 3 s"))
    out.append(("Warm dataset load (mnist-5k, digits)", f"{warm_load_ms() * 1000:.1f} µs", "≤ 100 ms"))
    out.append(("Load a pretrained model from assets/zoo (cold)", f"{zoo_load_ms():.0f} ms", "page ≤ 3 s"))
    ours, bare, bare_fused = trainer_vs_bare()
    out.append(("Trainer throughput vs bare PyTorch loop (VAE 784-256-128-16, batch 128, the training page's "
                 "settings, 1 thread; median of 3 alternating rounds of 8 epochs)",
                f"{ours:,.0f} vs {bare:,.0f} samples/s ({ours / bare:.0%}); against the same loop with the "
                f"trainer's fused Adam, {bare_fused:,.0f} samples/s ({ours / bare_fused:.0%})", "≥ 90%"))
    return out


if __name__ == "__main__":
    for r in rows():
        print("| " + " | ".join(r) + " |")
