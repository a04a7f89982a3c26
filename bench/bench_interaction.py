"""Interaction latency in a real browser: move a slider with the keyboard, time until a number changes.

    python -m bench.bench_interaction [--n 30] [--url http://127.0.0.1:8501]

Budget (DESIGN.md): a KL or reparameterization slider updates its chart in the browser in at most
150 ms (median). What is timed, for each of ``n`` key presses: from the ``keydown`` event on the
focused slider (``performance.now()`` in the page) to the moment the readout element's text differs
from what it was before the press (a ``MutationObserver`` on the document). That span includes the
widget message to the server, the script (or fragment) rerun, the deltas back, and React's update.
The presses alternate ArrowRight / ArrowLeft so the value stays in range; before each press the
script must be idle. Prints markdown table rows (``| measure | result | budget |``).

``slider_latency`` is generic: other pages (e.g. the reparameterization page) can reuse it with
their own slider and readout.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BUDGET_MS = 150.0

# In-page probe: resolves with ms from the next keydown to the readout's text changing.
_ARM_JS = """
([sel, timeoutMs]) => {
  const text = () => { const el = document.querySelector(sel); return el ? el.textContent : null; };
  const before = text();
  window.__latT0 = null;
  document.addEventListener('keydown', () => { window.__latT0 = performance.now(); }, {capture: true, once: true});
  window.__latency = new Promise((resolve, reject) => {
    const timer = setTimeout(() => { obs.disconnect(); reject(new Error('readout did not change')); }, timeoutMs);
    const obs = new MutationObserver(() => {
      if (window.__latT0 === null) return;
      const now = text();
      if (now !== null && now !== before) {
        const t = performance.now();
        obs.disconnect(); clearTimeout(timer); resolve(t - window.__latT0);
      }
    });
    obs.observe(document.body, {subtree: true, childList: true, characterData: true, attributes: false});
  });
  return before;
}
"""

_IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def _is_selector(s: str) -> bool:
    return s[:1] in (".", "#", "[") or s.startswith(("css=", "xpath="))


def _slider_thumb(page, slider_label_or_selector: str):
    """The focusable thumb of a Streamlit slider, by its label or by a CSS selector of the slider
    (or of a container around it, e.g. ``.st-key-<widget key>``)."""
    if _is_selector(slider_label_or_selector):
        loc = page.locator(slider_label_or_selector).first
        inner = loc.locator('input[type="range"], [role="slider"]')
        return inner.first if inner.count() else loc
    return page.get_by_role("slider", name=slider_label_or_selector).first


def slider_latency(url_path: str, slider_label_or_selector: str, readout_selector: str, n: int = 30,
                   base_url: str | None = None, warmup: int = 3, timeout_ms: int = 15_000) -> dict:
    """Median (and spread) of the time in ms from a keyboard slider move to ``readout_selector``'s text
    changing, on page ``url_path`` (e.g. ``"kl"``). Starts its own server unless ``base_url`` is given.

    Returns ``{"median_ms", "p90_ms", "min_ms", "max_ms", "n", "samples"}``; the ``warmup`` first
    presses (cold caches, first render) are not counted.
    """
    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM, start_server, stop_server, wait_drawn

    proc = None
    if base_url is None:
        proc, base_url = start_server()
    samples: list[float] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(60_000)
                page.goto(f"{base_url.rstrip('/')}/{url_path.lstrip('/')}")
                wait_drawn(page)
                page.locator(readout_selector).first.wait_for()
                thumb = _slider_thumb(page, slider_label_or_selector)
                thumb.scroll_into_view_if_needed()
                thumb.focus()
                for i in range(warmup + n):
                    page.wait_for_selector(_IDLE)
                    page.wait_for_timeout(120)  # let the last deltas settle
                    page.evaluate(_ARM_JS, [readout_selector, timeout_ms])
                    thumb.press("ArrowRight" if i % 2 == 0 else "ArrowLeft")
                    ms = page.evaluate("window.__latency")
                    if i >= warmup:
                        samples.append(float(ms))
            finally:
                browser.close()
    finally:
        if proc is not None:
            stop_server(proc)
    samples_sorted = sorted(samples)
    return {
        "median_ms": statistics.median(samples),
        "p90_ms": samples_sorted[min(len(samples) - 1, int(round(0.9 * (len(samples) - 1))))],
        "min_ms": samples_sorted[0],
        "max_ms": samples_sorted[-1],
        "n": len(samples),
        "samples": samples,
    }


# (description, url path, slider, readout): the interactions measured for the README table.
CASES = [
    ("KL page: μ_p slider → densities chart redrawn (drawn in the browser by core/js/live_figure.js)", "kl",
     ".st-key-kl_mup_sl", ".st-key-kl_fig_density"),
    ("KL page: μ_p slider → KL(p‖q) number from the server (fragment rerun: formulas and Monte Carlo redrawn)",
     "kl", ".st-key-kl_mup_sl", '.st-key-kl_readout [data-testid="stMetricValue"]'),
    ("KL page: VAE point μ slider → the point and its KL on the contour map (drawn in the browser)",
     "kl?kl_vmu=1.0",  # the link parameter opens the map's expander
     ".st-key-kl_vmu", ".st-key-kl_fig_map"),
    ("Reparameterization page: μ slider → exact gradient readout (fragment rerun: a fresh autograd experiment)",
     "reparam", ".st-key-rp_mu", '.st-key-rp_readout [data-testid="stMetricValue"]'),
]


# The floor: the same measurement on a one-slider Streamlit script, so a slow machine is told apart
# from a slow page (on a busy 2-core machine this floor alone can exceed 150 ms).
FLOOR_SCRIPT = """
import streamlit as st
st.title("Floor")
v = st.slider("x", -5.0, 5.0, 0.0, 0.1, key="floor_sl")
with st.container(key="floor_readout"):
    st.metric("2x", f"{2 * v:.4f}")
"""


def floor_latency(n: int = 30) -> dict:
    """``slider_latency`` on a bare one-slider, one-number Streamlit script served the same way."""
    import os
    import signal
    import subprocess
    import tempfile
    import time
    import urllib.request

    from tests.conftest import _free_port

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "floor.py"
        script.write_text(FLOOR_SCRIPT)
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true", "--server.port",
             str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"], cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 60
            while True:
                try:
                    with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    if time.time() > deadline or proc.poll() is not None:
                        raise RuntimeError("the floor server did not start") from None
                    time.sleep(0.2)
            return slider_latency("", ".st-key-floor_sl", '.st-key-floor_readout [data-testid="stMetricValue"]', n=n,
                                  base_url=url)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)


def _load() -> str:
    import os
    return f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def rows(n: int = 30, base_url: str | None = None) -> list[tuple[str, str, str]]:
    """Markdown rows for bench.run: one per case in ``CASES`` (one server for all), then the floor."""
    from tests.conftest import start_server, stop_server

    proc = None
    if base_url is None:
        proc, base_url = start_server()
    try:
        out = []
        for desc, path, slider, readout in CASES:
            r = slider_latency(path, slider, readout, n=n, base_url=base_url)
            ok = "✅" if r["median_ms"] <= BUDGET_MS else "❌"
            out.append((f"{desc}, median of {r['n']} key presses",
                        f"{r['median_ms']:.0f} ms (p90 {r['p90_ms']:.0f} ms, {_load()}) {ok}", f"≤ {BUDGET_MS:.0f} ms"))
    finally:
        if proc is not None:
            stop_server(proc)
    r = floor_latency(n)
    out.append((f"Floor: the same key press on a bare one-slider Streamlit script, median of {r['n']}",
                f"{r['median_ms']:.0f} ms (p90 {r['p90_ms']:.0f} ms, {_load()})", "reference"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30, help="key presses per slider (after 3 warm-up presses)")
    ap.add_argument("--url", default=None, help="use a running server instead of starting one")
    args = ap.parse_args()
    for r in rows(args.n, args.url):
        print("| " + " | ".join(r) + " |", flush=True)


if __name__ == "__main__":
    main()
