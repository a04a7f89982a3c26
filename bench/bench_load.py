"""Load test: many students training at once on one server (loopback only, bounded in time).

Each of N browser contexts (separate Streamlit sessions) opens the training page with its own
beta, starts training, and is watched for how often its view updates. Half of them change beta
mid-run; no other session may show that change (no cross-talk). Every session then switches to
another page and back and must find its run still there. After all contexts close, the
server's CPU must fall back to idle within a few seconds (the trainers' leases expire).
Reports the server's peak RSS.

    python -m bench.bench_load            # 10 sessions
"""
from __future__ import annotations

import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_core import launch_browser  # noqa: E402
from tests.conftest import ConsoleWatch, start_server, stop_server, wait_drawn  # noqa: E402

BETAS = [0.1, 0.5, 1, 2, 4, 0.2, 0.75, 1.5, 3, 6]
STEP_RE = re.compile(r"step ([\d,]+)/")


def _proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks of 1/100 s


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _step(page) -> int | None:
    try:
        text = page.locator('[data-testid="stProgress"]').first.inner_text(timeout=2000)
    except Exception:
        return None
    m = STEP_RE.search(text)
    return int(m.group(1).replace(",", "")) if m else None


def _beta_caption(page) -> str:
    loc = page.get_by_text("β so far:")
    return loc.first.inner_text() if loc.count() else ""


def load_test(n_sessions: int = 10, watch_seconds: float = 12.0, idle_cpu_fraction: float = 0.05,
              idle_timeout: float = 20.0, browser=None) -> dict:
    """Run the scenario and return its measurements (raises AssertionError on a functional failure).
    ``browser``: a Playwright browser to use (pytest-playwright's fixture); by default one is launched."""
    if browser is None:
        from playwright.sync_api import sync_playwright
        with sync_playwright() as p:
            b = launch_browser(p)
            try:
                return load_test(n_sessions, watch_seconds, idle_cpu_fraction, idle_timeout, browser=b)
            finally:
                b.close()
    proc, url = start_server()
    result: dict = {"sessions": n_sessions}
    try:
        if True:
            contexts, pages, watches = [], [], []
            for i in range(n_sessions):
                ctx = browser.new_context(viewport={"width": 1300, "height": 900})
                page = ctx.new_page()
                page.set_default_timeout(120_000)
                watches.append(ConsoleWatch(page))
                page.goto(f"{url}/train?dataset=digits&tr_epochs=200&tr_latent=2&tr_hidden=64,32"
                          f"&tr_beta={BETAS[i % len(BETAS)]:g}")
                contexts.append(ctx)
                pages.append(page)
            for page in pages:
                wait_drawn(page, timeout=180_000)
                page.get_by_role("button", name="Start training").first.click()
            # watch every session's step counter
            changes: list[list[float]] = [[] for _ in pages]
            last = [None] * len(pages)
            t_end = time.time() + watch_seconds
            while time.time() < t_end:
                for i, page in enumerate(pages):
                    s = _step(page)
                    if s is not None and s != last[i]:
                        if last[i] is not None:
                            changes[i].append(time.time())
                        last[i] = s
                time.sleep(0.05)
            intervals = [statistics.median(b - a for a, b in zip(c, c[1:])) if len(c) > 2 else float("inf")
                         for c in changes]
            result["median_update_s"] = statistics.median(intervals)
            result["worst_session_update_s"] = max(intervals)
            deadline = time.time() + 90  # under heavy load a session may take a while to get its first slot
            while time.time() < deadline and not all(s and s > 0 for s in last):
                last = [_step(page) for page in pages]
                time.sleep(0.5)
            result["steps"] = last
            assert all(s and s > 0 for s in last), f"a session did not train: steps {last}"
            # beta changes in even sessions only: no other session may see them
            for i in range(0, n_sessions, 2):
                slider = pages[i].get_by_role("slider").first  # β, the first slider of the live section
                slider.focus()
                slider.press("ArrowRight")
            time.sleep(3)
            for i, page in enumerate(pages):
                cap = _beta_caption(page)
                if i % 2 == 0:
                    assert "→" in cap, f"session {i} does not show its own β change: {cap!r}"
                else:
                    assert cap == "", f"session {i} shows a β change it never made (cross-talk): {cap!r}"
            # switch page and come back: the run survives
            for i, page in enumerate(pages):
                before = _step(page) or 0
                page.get_by_role("link", name="Home").first.click()
                wait_drawn(page, timeout=180_000)
                page.get_by_role("link", name="Train a VAE live").first.click()
                wait_drawn(page, timeout=180_000)
                after = _step(page)
                assert after is not None and after >= before, f"session {i} lost its run ({before} -> {after})"
            for page in pages:
                assert page.locator('[data-testid="stException"]').count() == 0
            errors = [e for w in watches for e in w.real_errors()]
            assert not errors, errors[:5]
            for ctx in contexts:
                ctx.close()
            t_closed = time.time()
            result["peak_rss_mb"] = _peak_rss_mb(proc.pid)
            # CPU back to idle: measure 1-second windows until the server uses < idle_cpu_fraction of a core
            idle_after = None
            while time.time() - t_closed < idle_timeout:
                c0, w0 = _proc_cpu_seconds(proc.pid), time.time()
                time.sleep(1.0)
                frac = (_proc_cpu_seconds(proc.pid) - c0) / (time.time() - w0)
                if frac < idle_cpu_fraction:
                    idle_after = time.time() - t_closed
                    break
            result["idle_after_close_s"] = idle_after
            assert idle_after is not None, f"server still busy {idle_timeout:.0f} s after every session closed"
    finally:
        stop_server(proc)
    return result


def rows() -> list[tuple[str, str, str]]:
    r = load_test(10)
    return [
        ("10 concurrent training sessions: median / worst session's view update interval",
         f"{r['median_update_s']:.2f} s / {r['worst_session_update_s']:.2f} s", "≤ 1 s"),
        ("10 concurrent training sessions: server peak RSS", f"{r['peak_rss_mb']:.0f} MB", "bounded"),
        ("All sessions closed: server CPU back to idle after", f"{r['idle_after_close_s']:.1f} s", "a few seconds"),
    ]


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    print(load_test(n))
