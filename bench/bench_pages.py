"""Page open time on a warm server: how long after a page is opened it is drawn completely.

DESIGN.md's budget: "On a warm server every page draws completely within 1.5 s of being opened."

Protocol. One server; one headless Chromium. Each page is first opened once and left to settle
(warm-up: imports, the zoo's models, st.cache_data / st.cache_resource entries), and what it draws
is counted then: its title, its Plotly charts and its images. Then each page is opened ``n`` times in
each of three ways:
  - "link": the page's URL is loaded in a fresh browser context (a new Streamlit session, as a student
    following a shared link on first visit: the browser's HTTP cache is empty, so the frontend's
    JavaScript, including Streamlit's 4.7 MB Plotly chunk, is fetched and parsed every time);
  - "revisit": the page's URL is loaded in a new tab of a browser context that has visited the app once
    (a new Streamlit session, as a student following the lecturer's link or reloading: the frontend's
    files come from the browser's HTTP cache, but are parsed and run again);
  - "sidebar": in a session already showing the home page, the page's link in the sidebar is clicked
    (how a student moves between pages: the frontend is already loaded, the session is kept).
The server's caches are warm in both.

"Drawn completely" means, all at once (``_DRAWN_JS``):
  - the script run is over: the app's ``data-test-script-state`` is ``notRunning`` and its connection
    ``CONNECTED``, so Streamlit's status widget shows no "Running..." indicator;
  - the page's title (h1) is there, with no loading skeleton and no stale (greyed) element left;
  - at least as many Plotly charts as the warm-up counted, each with its SVG drawn (``.main-svg``),
    and at least as many images, each loaded (``img.complete`` with a natural width);
and it still holds 600 ms later (a rerun that starts in between does not count as drawn). The time
is ``performance.now()`` at the first poll (every 20 ms, in the page) where this holds, counted from
the navigation's start ("link", the moment a user follows it) or from the sidebar click ("sidebar").

    python -m bench.bench_pages            # every page, 5 opens each, plus the floor
    python -m bench.bench_pages --n 10 --pages /kl /limits

The floor is the same measurement on a bare Streamlit script that draws a title and one Plotly chart.
Other work on the machine makes the figures longer: each row says the load average it ran under.

Because wall time on a loaded machine says more about the load than about the page, each open also
records two CPU times, which the load inflates far less: the browser's main-thread CPU time (Chrome's
``Performance.getMetrics`` ``TaskDuration`` in the ``threadTicks`` time domain: script, style, layout and
paint of the page) from the click (or the navigation) until drawn, and the server process's CPU time
(user + system, from /proc) over the same span, which holds the script run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUDGET_S = 1.5
PAGES = ["/", "/autoencoder", "/kl", "/reparam", "/train", "/latent", "/limits", "/answers"]

# What the page shows now: used once per page during warm-up to learn what "complete" means for it.
_COUNT_JS = """() => ({
  title: document.querySelector('[data-testid="stMain"] h1').innerText.trim(),
  charts: document.querySelectorAll('[data-testid="stMain"] .js-plotly-plot').length,
  images: document.querySelectorAll('[data-testid="stMain"] [data-testid="stImage"] img').length,
})"""

# True when the page is drawn completely (see the module docstring); records the first time it is.
# ``title``: the page's h1 text, so that, after a sidebar click, the previous page does not count.
_DRAWN_JS = """([charts, images, title]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  const ok = (() => {
    if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
    if (app.getAttribute('data-test-connection-state') !== 'CONNECTED') return false;
    const main = document.querySelector('[data-testid="stMain"]');
    const h1 = main && main.querySelector('h1');
    if (!h1 || h1.innerText.trim() !== title) return false;
    if (main.querySelector('[data-testid="stSkeleton"]') || main.querySelector('[data-stale="true"]')) return false;
    const plots = [...main.querySelectorAll('.js-plotly-plot')];
    if (plots.length < charts || plots.some(p => !p.querySelector('.main-svg'))) return false;
    const imgs = [...main.querySelectorAll('[data-testid="stImage"] img')];
    if (imgs.length < images || imgs.some(i => !i.complete || i.naturalWidth === 0)) return false;
    return true;
  })();
  if (!ok) { window.__llDrawnAt = undefined; return false; }
  if (window.__llDrawnAt === undefined) window.__llDrawnAt = performance.now();
  return performance.now() - window.__llDrawnAt >= 600;  // still drawn 600 ms later
}"""

_SIDEBAR_LINK = '[data-testid="stSidebarNav"] a[href$="{path}"]'


FLOOR_SCRIPT = '''
import plotly.graph_objects as go
import streamlit as st

st.title("Floor")
st.plotly_chart(go.Figure(go.Scatter(x=[0, 1, 2], y=[1, 3, 2])))
'''


def _proc_cpu(pid: int | None) -> float | None:
    """User + system CPU seconds of process ``pid`` and its threads (Linux /proc), or None."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _browser_cpu(cdp) -> float:
    """The page's main-thread CPU seconds so far (``Performance.enable`` with ``threadTicks``)."""
    return next(m["value"] for m in cdp.send("Performance.getMetrics")["metrics"] if m["name"] == "TaskDuration")


def _load() -> str:
    import os
    return f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def open_times(base_url: str, paths: list[str], n: int = 5, timeout_s: float = 60.0,
               ways: tuple[str, ...] = ("link", "revisit", "sidebar"), server_pid: int | None = None) -> dict[str, dict]:
    """Per path: {"expect": (charts, images), and per way ("link", "revisit", "sidebar") [seconds, ...]}, ``n`` opens
    each way after one warm-up open (see the module docstring); and, per way, ``"<way> browser cpu"`` (the
    page's main-thread CPU seconds per open) and, given the server's ``server_pid``, ``"<way> server cpu"``."""
    from playwright.sync_api import sync_playwright

    from bench.bench_core import launch_browser
    from tests.conftest import wait_drawn

    out: dict[str, dict] = {}
    with sync_playwright() as p:
        browser = launch_browser(p)
        try:
            for path in paths:
                ctx = browser.new_context(viewport={"width": 1400, "height": 900})
                page = ctx.new_page()
                page.goto(base_url + path)
                wait_drawn(page, timeout=180_000)  # warm-up: the first open fills the server's caches
                page.wait_for_timeout(1500)
                c = page.evaluate(_COUNT_JS)
                expect = [int(c["charts"]), int(c["images"]), c["title"]]
                ctx.close()
                res = {"expect": (expect[0], expect[1])}
                def by_link(way: str, ctx, own_context: bool) -> None:
                    """One open of ``path`` by its URL in a new tab of ``ctx`` (a new Streamlit session)."""
                    page = ctx.new_page()
                    cdp = ctx.new_cdp_session(page)
                    cdp.send("Performance.enable", {"timeDomain": "threadTicks"})
                    s0 = _proc_cpu(server_pid)
                    page.goto(base_url + path, wait_until="commit")
                    page.wait_for_function(_DRAWN_JS, arg=expect, polling=20, timeout=timeout_s * 1000)
                    res[way].append(page.evaluate("() => window.__llDrawnAt") / 1000.0)
                    res[f"{way} browser cpu"].append(_browser_cpu(cdp))
                    if s0 is not None:
                        res[f"{way} server cpu"].append(_proc_cpu(server_pid) - s0)
                    (ctx if own_context else page).close()

                for way in ("link", "revisit"):
                    if way not in ways:
                        continue
                    res[way], res[f"{way} browser cpu"], res[f"{way} server cpu"] = [], [], []
                    if way == "link":  # each open in a fresh browser context: an empty HTTP cache
                        for _ in range(n):
                            by_link(way, browser.new_context(viewport={"width": 1400, "height": 900}), True)
                        continue
                    # One context for all n opens, its HTTP cache warmed by one visit: each open is a new
                    # tab, so a new Streamlit session, but the frontend's files come from the cache.
                    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
                    page = ctx.new_page()
                    page.goto(base_url + "/")
                    wait_drawn(page, timeout=180_000)
                    page.close()
                    for _ in range(n):
                        by_link(way, ctx, False)
                    ctx.close()
                if "sidebar" in ways and path != "/":
                    res["sidebar"], res["sidebar browser cpu"], res["sidebar server cpu"] = [], [], []
                    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
                    page = ctx.new_page()
                    cdp = ctx.new_cdp_session(page)
                    for _ in range(n):
                        page.goto(base_url + "/")
                        wait_drawn(page, timeout=180_000)
                        cdp.send("Performance.enable", {"timeDomain": "threadTicks"})
                        link = page.locator(_SIDEBAR_LINK.format(path=path)).first
                        b0, s0 = _browser_cpu(cdp), _proc_cpu(server_pid)
                        t0 = page.evaluate("() => { window.__llDrawnAt = undefined; return performance.now(); }")
                        link.click()
                        page.wait_for_function(_DRAWN_JS, arg=expect, polling=20, timeout=timeout_s * 1000)
                        res["sidebar"].append((page.evaluate("() => window.__llDrawnAt") - t0) / 1000.0)
                        # (includes the 600 ms "still drawn" wait, in which an idle page uses next to no CPU)
                        res["sidebar browser cpu"].append(_browser_cpu(cdp) - b0)
                        if s0 is not None:
                            res["sidebar server cpu"].append(_proc_cpu(server_pid) - s0)
                        cdp.send("Performance.disable")
                    ctx.close()
                out[path] = res
        finally:
            browser.close()
    return out


def floor_times(n: int = 5) -> dict:
    """The same measurement on a bare one-chart Streamlit script (its own server): open_times's result."""
    from tests.conftest import start_server, stop_server

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "floor_app.py"
        script.write_text(FLOOR_SCRIPT)
        proc, url = start_server(app=script)
        try:
            return open_times(url, ["/"], n=n, ways=("link", "revisit"), server_pid=proc.pid)["/"]
        finally:
            stop_server(proc)


def rows(n: int = 5, base_url: str | None = None, paths: list[str] | None = None,
         floor: bool = True) -> list[tuple[str, str, str]]:
    """Markdown rows for bench.run: one per page (median and slowest of ``n`` opens), then the floor."""
    from tests.conftest import start_server, stop_server

    proc = None
    if base_url is None:
        proc, base_url = start_server()
    try:
        res = open_times(base_url, paths or PAGES, n=n, server_pid=proc.pid if proc is not None else None)
    finally:
        if proc is not None:
            stop_server(proc)
    out = []
    how = {"link": "opened by its link in a new session of a fresh browser (empty HTTP cache)",
           "revisit": "opened by its link in a new tab of a browser that has visited the app (a new session; "
                      "the frontend's files cached)",
           "sidebar": "opened from the sidebar of a session"}
    for path, r in res.items():
        charts, images = r["expect"]
        for way in ("link", "revisit", "sidebar"):
            if way not in r:
                continue
            t = r[way]
            med, worst = statistics.median(t), max(t)
            ok = "✅" if worst <= BUDGET_S else "❌"
            out.append((f"Page {path} {how[way]} on a warm server, until drawn completely ({charts} charts, "
                        f"{images} images), median of {len(t)}",
                        f"{med:.2f} s (slowest {worst:.2f} s, {_load()}; {_cpu_text(r, way)}) {ok}",
                        f"≤ {BUDGET_S} s"))
    if floor:
        f = floor_times(n)
        for way in ("link", "revisit"):
            t = f[way]
            out.append((f"Floor: a bare Streamlit script with a title and one Plotly chart, {how[way]}, "
                        f"median of {len(t)}",
                        f"{statistics.median(t):.2f} s (slowest {max(t):.2f} s, {_load()}; {_cpu_text(f, way)})",
                        "reference"))
    return out


def _cpu_text(r: dict, way: str) -> str:
    """'browser CPU 0.61 s, server CPU 0.25 s' (medians per open), from open_times's result."""
    parts = []
    for who in ("browser", "server"):
        v = r.get(f"{way} {who} cpu") or []
        if v:
            parts.append(f"{who} CPU {statistics.median(v):.2f} s")
    return ", ".join(parts) or "CPU not measured"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5, help="opens per page, after one warm-up open")
    ap.add_argument("--pages", nargs="*", default=None, help=f"URL paths (default: {' '.join(PAGES)})")
    ap.add_argument("--url", default=None, help="a running server to measure instead of starting one")
    ap.add_argument("--no-floor", action="store_true", help="skip the bare one-chart script")
    a = ap.parse_args()
    t0 = time.time()
    print("| measure | result | budget |\n| --- | --- | --- |")
    for r in rows(n=a.n, base_url=a.url, paths=a.pages, floor=not a.no_floor):
        print("| " + " | ".join(r) + " |", flush=True)
    print(f"\n({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
