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


def cold_start(repeats: int = 3, path: str = "/", marker: str = "How does an autoencoder work?") -> float:
    """Seconds from launching `streamlit run` to ``marker`` drawn in Chromium (median of repeats).
    The browser is started beforehand, as a user's browser already is."""
    from playwright.sync_api import sync_playwright

    from tests.conftest import _free_port, start_server, stop_server

    times = []
    with sync_playwright() as p:
        browser = launch_browser(p)
        for _ in range(repeats):
            port = _free_port()
            t0 = time.perf_counter()
            proc, url = start_server(port)
            try:
                page = browser.new_page()
                page.goto(url + path)
                page.get_by_text(marker).first.wait_for(timeout=60_000)
                times.append(time.perf_counter() - t0)
                page.close()
            finally:
                stop_server(proc)
        browser.close()
    return statistics.median(times)


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


def trainer_vs_bare(epochs: int = 3) -> tuple[float, float]:
    """Samples/s of core.training.Trainer and of a bare loop, same model (784-256-128-16 VAE), batch 128."""
    import torch
    import torch.nn.functional as F

    from core.data import load_dataset
    from core.models import ModelConfig, build_model
    from core.training import TrainConfig, Trainer

    torch.set_num_threads(1)
    ds = load_dataset("mnist-5k")
    mc = ModelConfig(kind="vae", input_dim=784, hidden_dims=(256, 128), latent_dim=16)
    t = Trainer(mc, TrainConfig(epochs=epochs, seed=0, batch_size=128), ds)
    t0 = time.perf_counter()
    t.run_steps(10**9)
    ours = t.step * 128 / (time.perf_counter() - t0)

    torch.manual_seed(0)
    m = build_model(mc, "cpu")
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    x = torch.as_tensor(ds.x[t.train_idx])
    n = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            xb = x[perm[i:i + 128]]
            mu, lv = m.encode(xb)
            logits = m.decode_logits(mu + torch.exp(0.5 * lv) * torch.randn_like(mu))
            loss = (F.binary_cross_entropy_with_logits(logits, xb, reduction="sum")
                    - 0.5 * torch.sum(1 + lv - mu.pow(2) - lv.exp())) / len(xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            n += len(xb)
    bare = n / (time.perf_counter() - t0)
    return ours, bare


def rows() -> list[tuple[str, str, str]]:
    out = []
    cs = cold_start()
    out.append(("Cold start: `streamlit run` to home page drawn (Chromium)", f"{cs:.2f} s", "≤ 2 s"))
    lesson = cold_start(1, "/kl", "KL divergence") if (ROOT / "pages" / "2_kl.py").exists() else None
    if lesson is not None:
        out.append(("Fresh server to the KL page drawn (needs a trained model)", f"{lesson:.2f} s", "≤ 3 s"))
    out.append(("Warm dataset load (mnist-5k, digits)", f"{warm_load_ms() * 1000:.1f} µs", "≤ 100 ms"))
    out.append(("Load a pretrained model from assets/zoo (cold)", f"{zoo_load_ms():.0f} ms", "page ≤ 3 s"))
    ours, bare = trainer_vs_bare()
    out.append(("Trainer throughput vs bare PyTorch loop (VAE 784-256-128-16, batch 128)",
                f"{ours:,.0f} vs {bare:,.0f} samples/s ({ours / bare:.0%})", "≥ 90%"))
    return out


if __name__ == "__main__":
    for r in rows():
        print("| " + " | ".join(r) + " |")
