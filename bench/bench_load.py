"""Load test: many students training at once on one server (loopback only, bounded in time).

Each of N browser contexts (separate Streamlit sessions, like N students) opens the home page,
then the training page with its own β (a shared link), and starts training. While all of them
train, a small recorder in each page notes the time of every visible change of its step counter,
which gives each session's view update interval, and the step counts give each session's
throughput. Half of the sessions then change β: the others must not see that change, and every
session must show only its own run (no cross-talk). Every session switches to the home page with
the sidebar link and back, and must find its run there, training again. After all contexts
close, the server's CPU must fall back to idle within a few seconds (the trainers' 3-second
heartbeat leases lapse). The server's RSS (the process and its children, from /proc) is sampled
throughout.

    python -m bench.bench_load --sessions 10     # prints the figures; exit status 1 if a check failed

``load_test`` returns the measurements and the problems it found; it does not assert, so the
bench can report figures that miss their target and ``tests/test_load.py`` can assert on them.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_core import launch_browser  # noqa: E402
from tests.conftest import ConsoleWatch, start_server, stop_server, wait_drawn  # noqa: E402

BETAS = [0.1, 0.5, 1, 2, 4, 0.2, 0.75, 1.5, 3, 6]  # all in core.runs.BETA_CHOICES, all below its maximum
BATCH = 128
# The ten browsers share the server's two cores, so how often each view updates here is reported, not
# checked (issue 22: this bench is a regression check for errors, blank pages and lost runs; the timing
# target is bench_sessions'). ``--update-target`` checks it anyway.
UPDATE_TARGET_S = None
STEP_RE = re.compile(r"step ([\d,]+)/")
STEP_BYTES_RE = re.compile(STEP_RE.pattern.encode())  # the same, in raw WebSocket frames
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Runs in each page: every 50 ms, read the live progress bar and record (time, step) when the step
# shown has changed. Polling in the page itself keeps the resolution at 50 ms whatever the number of
# sessions (reading 10 pages in turn over the Playwright connection would take longer than that).
_RECORDER_JS = """() => {
  if (window.__llRec) clearInterval(window.__llRec.timer);
  const rec = {t: [], s: [], last: null};
  rec.timer = setInterval(() => {
    const p = document.querySelector('[data-testid="stProgress"]');
    const m = p && /step ([\\d,]+)\\//.exec(p.innerText);
    if (!m) return;
    const s = +m[1].replace(/,/g, '');
    if (s !== rec.last) { rec.t.push(Date.now()); rec.s.push(s); rec.last = s; }
  }, 50);
  window.__llRec = rec;
  return Date.now();
}"""
_READ_RECORDER_JS = ("() => { const r = window.__llRec; clearInterval(r.timer);"
                     " return {t: r.t, s: r.s, now: Date.now()}; }")


class FrameWatch:
    """When the server delivered each new step of a page's run: the browser's network clock
    (``CLOCK_MONOTONIC``, as ``time.monotonic``) at each WebSocket message that carries a progress
    line with a step the page has not been sent before. The page recorder above times what the page
    painted; this times what the server sent, before the page's own main thread (busy drawing, or
    waiting for a core that ten browsers share here) gets to it. Streamlit's messages are not
    compressed (``server.enableWebsocketCompression`` is off), so the text is in the frame."""

    def __init__(self, context, page):
        self.t: list[float] = []
        self.s: list[int] = []
        self.redraws: list[tuple[float, int]] = []  # every progress line sent, new step or not
        self._cdp = context.new_cdp_session(page)
        self._cdp.on("Network.webSocketFrameReceived", self._frame)
        self._cdp.send("Network.enable")

    def _frame(self, params: dict) -> None:
        r = params.get("response") or {}
        data = r.get("payloadData") or ""
        m = STEP_BYTES_RE.search(base64.b64decode(data) if r.get("opcode") == 2 else data.encode())
        if m:
            step = int(m.group(1).replace(b",", b""))
            self.redraws.append((params["timestamp"], step))
            if not self.s or step != self.s[-1]:
                self.t.append(params["timestamp"])
                self.s.append(step)


# ---- /proc helpers --------------------------------------------------------------------------------

def _ppid_map() -> dict[int, int]:
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                out[int(d)] = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return out


def tree_pids(pid: int, exclude: set[int] = frozenset(), root: bool = True) -> list[int]:
    """``pid`` (unless ``root`` is False) and all its descendants, skipping the subtrees rooted at ``exclude``."""
    children: dict[int, list[int]] = {}
    for p, pp in _ppid_map().items():
        children.setdefault(pp, []).append(p)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in exclude:
            continue
        out.append(p)
        todo.extend(children.get(p, []))
    return out if root else out[1:]


def cpu_seconds(pids) -> float:
    """utime + stime of the given processes (all their threads), in seconds."""
    tot = 0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            tot += int(f[11]) + int(f[12])
        except (OSError, IndexError, ValueError):
            pass
    return tot / CLK_TCK


def rss_mb(pids) -> float:
    tot = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    tot += int(line.split()[1])
                    break
        except OSError:
            pass
    return tot / 1024


def _hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, summed over cores."""
    vals = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = vals[3] + vals[4]  # idle + iowait
    total = sum(vals[:8])  # guest time is already counted in user
    return (total - idle) / CLK_TCK, total / CLK_TCK


class CpuMeter:
    """Cores used by a set of processes between ``start()`` and ``stop()`` (CPU seconds / wall seconds)."""

    def __init__(self, pids_fn):
        self.pids_fn = pids_fn

    def start(self) -> "CpuMeter":
        self.t0, self.c0, self.m0 = time.time(), cpu_seconds(self.pids_fn()), machine_busy_seconds()
        return self

    def stop(self) -> tuple[float, float]:
        """(cores used by the processes, cores busy on the whole machine)."""
        dt = time.time() - self.t0
        c = cpu_seconds(self.pids_fn())
        m = machine_busy_seconds()
        return (c - self.c0) / dt, (m[0] - self.m0[0]) / dt


class RssSampler(threading.Thread):
    """Samples the RSS of the server's process tree every ``period`` seconds; ``peak_mb`` is the maximum."""

    def __init__(self, pid: int, period: float = 0.25):
        super().__init__(daemon=True, name="rss-sampler")
        self.pid, self.period = pid, period
        self.peak_mb = 0.0
        self.latest_mb = 0.0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.latest_mb = rss_mb(tree_pids(self.pid))
            self.peak_mb = max(self.peak_mb, self.latest_mb)
            self._halt.wait(self.period)

    def stop(self) -> float:
        self._halt.set()
        self.join(5)
        return max(self.peak_mb, _hwm_mb(self.pid))


# ---- page helpers ---------------------------------------------------------------------------------

def _progress_text(page, timeout: float = 5.0) -> str:
    """The live progress bar's text ("" if none shows within ``timeout`` seconds; a redraw may
    replace the element for a moment)."""
    deadline = time.time() + timeout
    while True:
        try:
            text = page.evaluate("() => document.querySelector('[data-testid=\"stProgress\"]')?.innerText ?? ''")
        except Exception:
            text = ""
        if text or time.time() > deadline:
            return text
        time.sleep(0.1)


def _step(page) -> int | None:
    m = STEP_RE.search(_progress_text(page, timeout=0.5))
    return int(m.group(1).replace(",", "")) if m else None


def _beta_caption(page) -> str:
    loc = page.locator('[data-testid="stCaptionContainer"]').filter(has_text="β so far:")
    try:
        return loc.first.inner_text(timeout=1000) if loc.count() else ""
    except Exception:
        return ""


def _wait_until(cond, timeout: float, period: float = 0.25) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(period)
    return bool(cond())


def _gaps(times_ms: list[float], start_ms: float, end_ms: float) -> list[float]:
    """Seconds between successive visible changes, counting from the start of the window and up to
    its end (so a session that stops updating shows a long gap, not none)."""
    pts = [start_ms] + [t for t in times_ms if start_ms < t <= end_ms] + [end_ms]
    return [(b - a) / 1000 for a, b in zip(pts, pts[1:])]


def _next_beta(beta: float) -> float:
    """The β one press of ArrowRight on the β slider selects."""
    from core.runs import BETA_CHOICES
    return BETA_CHOICES[min(BETA_CHOICES.index(beta) + 1, len(BETA_CHOICES) - 1)]


def _raise_beta(page, tries: int = 3) -> bool:
    """Press ArrowRight on the β slider (the first slider of the live section) until its thumb shows a
    new value: a redraw that lands just as the key is pressed can re-mount the thumb and lose the press."""
    slider = page.get_by_role("slider").first

    def value():
        try:
            return slider.get_attribute("aria-valuetext", timeout=5_000)
        except Exception:
            return None

    before = value()
    for _ in range(tries):
        try:
            slider.focus(timeout=30_000)
            slider.press("ArrowRight", timeout=30_000)
        except Exception:
            continue
        if _wait_until(lambda: value() not in (before, None), 5):
            return True
    return False


def _nav_click(page, name: str, timeout_ms: int = 60_000) -> bool:
    """Click a page's link in the sidebar navigation, as a student does; False if it did not show."""
    try:
        page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=name).first.click(timeout=timeout_ms)
        return True
    except Exception:
        return False


def _dump(page, i: int) -> str:
    """Save what a failing session's page shows (screenshot, URL, start of its text) for a post-mortem;
    returns where it went."""
    path = Path(tempfile.gettempdir()) / f"latent-lab-load-session{i}"
    try:
        page.screenshot(path=str(path.with_suffix(".png")), full_page=True, timeout=30_000)
        path.with_suffix(".txt").write_text(page.url + "\n\n" + page.inner_text("body", timeout=10_000)[:5000])
    except Exception as exc:
        return f"could not save the page: {type(exc).__name__}"
    return f"page saved to {path}.png and .txt"


def _train_url(url: str, beta: float, epochs: int) -> str:
    """The training page with its defaults (MNIST-5k, a 784-256-128-16 VAE, batch 128), many epochs
    (so no run ends during the test) and this session's β."""
    return f"{url}/train?dataset=mnist-5k&tr_epochs={epochs}&tr_bs={BATCH}&tr_beta={beta:g}"


# ---- the scenario ---------------------------------------------------------------------------------

def _renice(pids, nice: int, saved: dict[int, int]) -> None:
    """Set the niceness of ``pids`` to ``nice`` (if lower), remembering the old values in ``saved``."""
    for p in pids:
        try:
            old = os.getpriority(os.PRIO_PROCESS, p)
            if old < nice:
                saved.setdefault(p, old)
                os.setpriority(os.PRIO_PROCESS, p, nice)
        except OSError:  # gone already
            pass


def _restore_nice(saved: dict[int, int]) -> None:
    for p, old in saved.items():
        try:
            os.setpriority(os.PRIO_PROCESS, p, old)
        except OSError:
            pass


def _pin(pids, cpus: set[int] | None) -> None:
    """Restrict every thread of ``pids`` to ``cpus`` (threads and processes started later inherit it)."""
    if not cpus:
        return
    for p in pids:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{p}/task")]
        except OSError:  # gone already
            continue
        for t in tids:
            try:
                os.sched_setaffinity(t, cpus)
            except OSError:
                pass


def _browser_pids(exclude: int) -> list[int]:
    """Processes of the Playwright driver and the browsers it started (descendants of this process,
    apart from the server under test and anything else that is not a browser, such as another server)."""
    out = []
    for p in tree_pids(os.getpid(), exclude={exclude}, root=False):
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes()
        except OSError:
            continue
        if b"chrom" in cmd or b"playwright" in cmd:
            out.append(p)
    return out


def load_test(n_sessions: int = 10, watch_seconds: float = 15.0, idle_cpu_cores: float = 0.05,
              idle_timeout: float = 15.0, epochs: int = 200, browser=None, browser_nice: int = 5,
              log=None, settle_seconds: float = 10.0, frames_too: bool = False,
              server_cores: int = 0, update_target_s: float | None = UPDATE_TARGET_S) -> dict:
    """Run the scenario and return its measurements and the problems found (see the module docstring).

    ``browser``: a Playwright browser to use (pytest-playwright's fixture); by default Debian's
    Chromium is launched. ``browser_nice``: the niceness given to the browser's processes. In a
    class every student's browser runs on the student's own computer; here all of them share the
    server's cores, so they run at a lower priority than the server's page threads (their CPU use is
    still reported), but a higher one than its training threads (nice 19 by default, see
    ``LATENT_LAB_TRAINER_NICE``, see ``core.sharing``): training is work that takes whatever CPU is left, and would
    otherwise starve the stand-in browsers. The server runs in this process's session (see
    ``tests.conftest.start_server``), so these nice values compare across processes: with the
    kernel's autogroup scheduling, processes in different sessions split the cores evenly whatever
    their nice values. 0 leaves the browsers as they are. ``idle_cpu_cores``: the server counts as idle below this
    CPU use (cores, in one-second windows). ``log``: a callable for progress messages (default: none).
    """
    if browser is None:
        args = {k: v for k, v in locals().items() if k != "browser"}  # every parameter, as given
        from playwright.sync_api import sync_playwright
        with sync_playwright() as p:
            b = launch_browser(p)
            try:
                return load_test(browser=b, **args)
            finally:
                b.close()
    say = log or (lambda msg: None)
    t_begin = time.time()
    cores = sorted(os.sched_getaffinity(0))
    server_cpus = set(cores[:server_cores]) if 0 < server_cores < len(cores) else None
    browser_cpus = set(cores) - server_cpus if server_cpus else None
    server_log = Path(tempfile.mkdtemp(prefix="latent-lab-load-")) / "server.log"
    proc, url = start_server(cpus=server_cpus, log_path=server_log)
    server_pids = lambda: tree_pids(proc.pid)  # noqa: E731
    browser_pids = lambda: _browser_pids(proc.pid)  # noqa: E731
    niced: dict[int, int] = {}

    def tune_browsers() -> None:
        """Lower the browsers' priority and keep them to their cores (run after new pages open)."""
        pids = browser_pids()
        _renice(pids, browser_nice, niced)
        _pin(pids, browser_cpus)

    rss = RssSampler(proc.pid)
    rss.start()
    betas = [BETAS[i % len(BETAS)] for i in range(n_sessions)]
    res: dict = {"sessions": n_sessions, "betas": betas, "watch_seconds": watch_seconds, "settle_seconds": settle_seconds,
                 "cpu_count": os.cpu_count(),
                 "server_cpus": sorted(server_cpus or cores), "browser_cpus": sorted(browser_cpus or cores),
                 "load_avg_before": os.getloadavg(), "browser_nice": browser_nice,
                 "exceptions": [], "console_errors": [], "crosstalk": [], "lost_runs": [], "not_training": []}
    contexts, pages, watches, frames = [], [], [], []
    try:
        # 1. Every student opens the site, then the training page through a shared link with their β.
        for i in range(n_sessions):
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = ctx.new_page()
            page.set_default_timeout(120_000)
            watches.append(ConsoleWatch(page))
            if frames_too:
                frames.append(FrameWatch(ctx, page))
            contexts.append(ctx)
            pages.append(page)
        for page in pages:
            page.goto(url)
        tune_browsers()  # each context's renderer exists from its first page on
        for page in pages:
            wait_drawn(page, timeout=180_000)
        for i, page in enumerate(pages):
            page.goto(_train_url(url, betas[i], epochs))
        tune_browsers()
        for page in pages:
            wait_drawn(page, timeout=180_000)
        res["open_seconds"] = time.time() - t_begin
        say(f"{n_sessions} sessions on the training page after {res['open_seconds']:.1f} s")

        # 2. Everyone presses Start; wait until every session shows steps.
        for page in pages:
            page.get_by_role("button", name="Start training").first.click()
        t_click = time.time()
        started = _wait_until(lambda: all((_step(p) or 0) > 0 for p in pages), 90)
        res["all_training_after_s"] = time.time() - t_click
        if not started:
            res["not_training"] = [i for i, p in enumerate(pages) if not (_step(p) or 0) > 0]
            res["not_training_text"] = [_dump(pages[i], i) for i in res["not_training"]]
        # Each session shows its own run: the first of its session, with its own β.
        for i, page in enumerate(pages):
            text = _progress_text(page)
            if not ("#1 VAE" in text and f" · β = {betas[i]:g} · " in text):
                res["crosstalk"].append(f"session {i} (β={betas[i]:g}) shows another run: {text[:80]!r}")

        # 3. All train at once: record every visible change of each session's step counter. First let the
        # sessions settle: each one redraws its whole page once to take up the slower chart interval for
        # this many trainings (core.runs.live_intervals), at a random moment within a few seconds.
        say(f"all training after {res['all_training_after_s']:.1f} s; settling for {settle_seconds:.0f} s, "
            f"then watching for {watch_seconds:.0f} s")
        time.sleep(settle_seconds)
        starts = [page.evaluate(_RECORDER_JS) for page in pages]
        t_watch = time.monotonic()
        res["watch_t0"] = t_watch  # time.monotonic(), the clock of the browsers' network events
        meter = CpuMeter(server_pids).start()
        bmeter = CpuMeter(browser_pids).start()
        time.sleep(watch_seconds)
        res["load_avg_during"] = os.getloadavg()
        res["server_cpu_cores"], res["machine_cpu_cores"] = meter.stop()
        res["browser_cpu_cores"] = bmeter.stop()[0]
        recs = [page.evaluate(_READ_RECORDER_JS) for page in pages]
        gaps, rates = [], []
        for start_ms, rec in zip(starts, recs):
            end_ms = min(rec["now"], start_ms + watch_seconds * 1000)
            gaps.append(_gaps(rec["t"], start_ms, end_ms))
            steps = [s for t, s in zip(rec["t"], rec["s"]) if t <= end_ms]
            first = steps[0] if steps else 0
            span = [t for t in rec["t"] if t <= end_ms]
            rates.append((steps[-1] - first) / ((span[-1] - span[0]) / 1000) if len(span) > 1 else 0.0)
        all_gaps = [g for gs in gaps for g in gs]
        # What the server delivered in the same window (frames were collected while the pages were read).
        sent = [] if not frames else [_gaps([t * 1000 for t in fw.t], t_watch * 1000, (t_watch + watch_seconds) * 1000) for fw in frames]
        if sent:
            res["sent_max_s_per_session"] = [max(gs) for gs in sent]
            res["sent_median_s"] = statistics.median([g for gs in sent for g in gs])
            res["sent_max_s"] = max(res["sent_max_s_per_session"])
            # Every progress line sent, new step or not: a long gap between new steps is either a
            # redraw that came late (or never) or one that found the run had not moved.
            w0, w1 = t_watch, t_watch + watch_seconds
            redraws = [[(t, s) for t, s in fw.redraws if w0 < t <= w1] for fw in frames]
            res["sent_redraw_max_s"] = max(max(_gaps([t * 1000 for t, _ in rs], w0 * 1000, w1 * 1000)) for rs in redraws)
            res["sent_redraws_without_new_step"] = sum(
                sum(1 for (_, a), (_, b) in zip(rs, rs[1:]) if a == b) for rs in redraws)
        # Raw times (ms since the epoch, the server's clock too) of each session's visible updates, to
        # line them up with a server-side log when a gap needs explaining.
        res["update_times_ms"] = [[start_ms] + [t for t in rec["t"] if start_ms < t <= start_ms + watch_seconds * 1000]
                                  for start_ms, rec in zip(starts, recs)]
        res["update_max_s_per_session"] = [max(gs) for gs in gaps]
        # When each session's longest gap began, in seconds from the start of the watch: gaps that all
        # begin together point at the server (every session stalled at once), scattered ones at the page.
        res["update_max_at_s"] = [round(sum(gs[:gs.index(max(gs))]), 2) for gs in gaps]
        res["update_median_s_per_session"] = [statistics.median(gs) for gs in gaps]
        res["update_median_s"] = statistics.median(all_gaps)
        res["update_p95_s"] = (statistics.quantiles(all_gaps, n=20, method="inclusive")[-1]
                               if len(all_gaps) >= 2 else all_gaps[0])
        res["update_max_s"] = max(all_gaps)
        res["updates_per_session"] = [len(gs) - 1 for gs in gaps]
        res["steps_per_s_per_session"] = rates
        res["samples_per_s_median"] = statistics.median(rates) * BATCH
        res["samples_per_s_min"] = min(rates) * BATCH
        res["samples_per_s_total"] = sum(rates) * BATCH
        say(f"update interval median {res['update_median_s']:.2f} s, max {res['update_max_s']:.2f} s; "
            f"server {res['server_cpu_cores']:.2f} cores, browser {res['browser_cpu_cores']:.2f} cores")

        # 4. Cross-talk: the even sessions raise β; only they may show the change.
        for i in range(0, n_sessions, 2):
            _raise_beta(pages[i])
        _wait_until(lambda: all("→" in _beta_caption(pages[i]) for i in range(0, n_sessions, 2)), 60)
        time.sleep(1.5)  # give a leaking change time to reach the other sessions' next redraw
        captions = [_beta_caption(page) for page in pages]
        expected = ["" if i % 2 else f"β so far: {b:g} (from step 0) → {_next_beta(b):g} (from step "
                    for i, b in enumerate(betas)]
        for i, cap in enumerate(captions):
            if i % 2 == 1 and cap:
                res["crosstalk"].append(f"session {i} shows a β change it never made: {cap!r}")
            elif i % 2 == 0 and not cap:
                res["crosstalk"].append(f"session {i}: its own β change ({betas[i]:g} → {_next_beta(betas[i]):g}) "
                                        "did not show within 60 s")
            elif i % 2 == 0 and not cap.startswith(expected[i]):
                res["crosstalk"].append(f"session {i} (β {betas[i]:g} raised to {_next_beta(betas[i]):g}) shows "
                                        f"{cap!r}, not its own β history")

        # 5. Switch to the home page with the sidebar link, and back: the run is still there and trains on.
        before = [_step(page) or 0 for page in pages]
        t_switch = time.time()

        def switch(link: str, drawn_mark, what: str) -> None:
            """Every session clicks ``link`` in the sidebar; then each page must show ``drawn_mark(page)``.
            A page that does not is saved at once, then given another 60 s: whether it drew late or never,
            and whether its URL changed, tell a lost click from a slow page."""
            urls, clicked = [page.url for page in pages], []
            for i, page in enumerate(pages):
                if not _nav_click(page, link):
                    res["lost_runs"].append(f"session {i}: no sidebar link {link!r} within 60 s ({_dump(page, i)})")
                clicked.append(time.time())
            for i, page in enumerate(pages):
                try:
                    drawn_mark(page).wait_for(timeout=60_000)
                    wait_drawn(page, timeout=120_000)
                except Exception as exc:
                    saved, url_then = _dump(page, i), page.url
                    try:
                        drawn_mark(page).wait_for(timeout=60_000)
                        late = f"drawn {time.time() - clicked[i]:.0f} s after its click"
                    except Exception:
                        late = f"still not drawn {time.time() - clicked[i]:.0f} s after its click"
                    res["lost_runs"].append(
                        f"session {i}: {what} did not draw ({type(exc).__name__}); URL {urls[i]} -> {url_then}; "
                        f"{late}; now at {page.url}; {saved}")

        switch("Home", lambda page: page.get_by_role("heading", name="Latent Lab").first, "the home page")
        switch("Train a VAE live", lambda page: page.locator('[data-testid="stProgress"]').first,
               "the training page (again)")
        res["page_switch_s"] = time.time() - t_switch
        back = [_step(page) for page in pages]
        for i, page in enumerate(pages):
            text = _progress_text(page)
            if back[i] is None or back[i] < before[i] or not ("#1 VAE" in text and f" · β = " in text):
                res["lost_runs"].append(f"session {i} lost its run ({before[i]} -> {back[i]}): {text[:80]!r}")
            cap = _beta_caption(page)
            own = (cap == "") if i % 2 else (cap == captions[i] if captions[i] else cap.startswith(expected[i]))
            if not own:
                res["crosstalk"].append(f"session {i}'s β history is not its own after the page switch: "
                                        f"{captions[i]!r} -> {cap!r}")
        resumed = _wait_until(lambda: all((_step(p) or 0) > (b or 0) for p, b in zip(pages, back)), 60)
        if not resumed:
            res["not_training"] += [i for i, (p, b) in enumerate(zip(pages, back)) if not (_step(p) or 0) > (b or 0)]
            res["not_training_text"] = res.get("not_training_text", []) + [
                f"{_progress_text(pages[i])[:120]!r} ({_dump(pages[i], i)})" for i in res["not_training"]]
        say(f"page switch and back: {res['page_switch_s']:.1f} s; lost {res['lost_runs'] or 'none'}")

        # 6. No exception anywhere: Streamlit exception boxes, uncaught errors in the page, console errors.
        for i, page in enumerate(pages):
            boxes = page.locator('[data-testid="stException"]')
            if boxes.count():
                res["exceptions"].append(f"session {i}: exception box: {boxes.first.inner_text()[:300]}")
            for err in watches[i].real_errors():
                if err.startswith("pageerror"):
                    res["exceptions"].append(f"session {i}: {err[:300]}")
                else:
                    res["console_errors"].append(f"session {i}: {err[:300]}")

        # 7. Close every session: the server's CPU must fall back to idle (the trainers' leases lapse).
        m = CpuMeter(server_pids).start()
        time.sleep(1.0)
        res["server_cpu_cores_before_close"] = m.stop()[0]
        for ctx in contexts:
            ctx.close()
        contexts = []
        t_closed = time.time()
        res["cpu_after_close"] = []  # (seconds since close at the window's end, server cores in that window)
        res["idle_after_close_s"] = None
        while time.time() - t_closed < idle_timeout:
            m = CpuMeter(server_pids).start()
            time.sleep(1.0)
            cores = m.stop()[0]
            res["cpu_after_close"].append((round(time.time() - t_closed, 2), round(cores, 3)))
            if cores < idle_cpu_cores:
                res["idle_after_close_s"] = time.time() - t_closed
                break
        res["rss_after_close_mb"] = rss_mb(server_pids())
        res["peak_rss_mb"] = rss.stop()
        res["load_avg_after"] = os.getloadavg()
        say(f"idle {res['idle_after_close_s']} s after close; peak RSS {res['peak_rss_mb']:.0f} MB")
    finally:
        stop_server(proc)
        rss.stop()
        _restore_nice(niced)
        for ctx in contexts:
            try:
                ctx.close()
            except Exception:
                pass
    res["total_seconds"] = time.time() - t_begin
    # Live views that stopped redrawing and that core.ui's watchdog restarted (it logs each one).
    res["live_view_restarts"] = server_log.read_text(errors="replace").count("did not redraw for")
    res["server_log"] = str(server_log)
    res["problems"] = problems(res, update_target_s)
    return res


def problems(r: dict, target_s: float | None = UPDATE_TARGET_S) -> list[str]:
    """Every check of the scenario that failed, in words (empty when all passed). The view update
    interval is checked only against a given ``target_s``."""
    out = [f"exception: {e}" for e in r["exceptions"]]
    out += [f"console error: {e}" for e in r["console_errors"]]
    out += [f"cross-talk: {e}" for e in r["crosstalk"]]
    out += [f"page switch: {e}" for e in r["lost_runs"]]
    if r["not_training"]:
        out.append(f"sessions not training: {r['not_training']}")
    if target_s is not None and r.get("update_max_s") is not None and r["update_max_s"] > target_s:
        worst = max(range(r["sessions"]), key=lambda i: r["update_max_s_per_session"][i])
        out.append(f"view update interval: session {worst} went {r['update_max_s']:.2f} s without an update "
                   f"(target ≤ {target_s:g} s)")
    if r.get("idle_after_close_s") is None:
        out.append(f"server CPU not idle after close: {r.get('cpu_after_close')}")
    return out


def summary(r: dict) -> str:
    la = lambda t: "/".join(f"{v:.1f}" for v in t)  # noqa: E731
    return "\n".join([
        f"sessions: {r['sessions']} (β {', '.join(f'{b:g}' for b in r['betas'])}), {r['cpu_count']} cores, "
        f"load average before/during/after: {la(r['load_avg_before'])} | {la(r['load_avg_during'])} | "
        f"{la(r['load_avg_after'])}; server on cores {r['server_cpus']}, browsers on cores {r['browser_cpus']}",
        f"view update interval while all train: median {r['update_median_s']:.2f} s, p95 {r['update_p95_s']:.2f} s, "
        f"max {r['update_max_s']:.2f} s (per session max: "
        f"{', '.join(f'{v:.2f}' for v in r['update_max_s_per_session'])})",
        *([f"new steps sent by the server (WebSocket frames, as they reached each browser): median "
           f"{r['sent_median_s']:.2f} s, max {r['sent_max_s']:.2f} s apart; progress-line redraws sent at most "
           f"{r['sent_redraw_max_s']:.2f} s apart, {r['sent_redraws_without_new_step']} of them without a new step"]
          if "sent_max_s" in r else []),
        f"throughput per session: median {r['samples_per_s_median']:,.0f}, min {r['samples_per_s_min']:,.0f} samples/s "
        f"(all sessions: {r['samples_per_s_total']:,.0f} samples/s, batch {BATCH})",
        f"CPU while all train: server {r['server_cpu_cores']:.2f} cores, browser (Chromium, nice "
        f"{r['browser_nice']}) {r['browser_cpu_cores']:.2f} cores, whole machine {r['machine_cpu_cores']:.2f} cores",
        f"server RSS: peak {r['peak_rss_mb']:.0f} MB, {r['rss_after_close_mb']:.0f} MB after every session closed",
        f"server CPU after close: {r['server_cpu_cores_before_close']:.2f} cores before; "
        + ", ".join(f"{c:.2f} at {t:.1f} s" for t, c in r["cpu_after_close"])
        + (f"; idle after {r['idle_after_close_s']:.1f} s" if r["idle_after_close_s"] is not None else "; NOT idle"),
        f"live views restarted by the watchdog (core.ui.live_watch, in the browser): {r['live_view_restarts']}",
        f"opening {r['sessions']} sessions: {r['open_seconds']:.1f} s; all training {r['all_training_after_s']:.1f} s "
        f"after Start; page switch and back: {r['page_switch_s']:.1f} s; total {r['total_seconds']:.0f} s",
        "checks: " + ("all passed (no exception, no cross-talk, runs kept across the page switch)"
                      if not r["problems"] else "FAILED:\n  " + "\n  ".join(r["problems"])),
    ])


def rows(n_sessions: int = 10) -> list[tuple[str, str, str]]:
    r = load_test(n_sessions)
    la = r["load_avg_during"]
    n = r["sessions"]
    counts = {"exception(s)": len(r["exceptions"]), "console error(s)": len(r["console_errors"]),
              "cross-talk or β problem(s)": len(r["crosstalk"]), "page-switch failure(s)": len(r["lost_runs"])}
    ok = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "none"
    return [
        (f"{n} concurrent training sessions (Chromium on the same machine, load average {la[0]:.1f}): "
         "view update interval, median / worst",
         f"{r['update_median_s']:.2f} s / {r['update_max_s']:.2f} s", "reported (browsers share the cores)"),
        (f"{n} concurrent training sessions: throughput per session, median / min",
         f"{r['samples_per_s_median']:,.0f} / {r['samples_per_s_min']:,.0f} samples/s", "—"),
        (f"{n} concurrent training sessions: server peak RSS / after all closed",
         f"{r['peak_rss_mb']:,.0f} MB / {r['rss_after_close_mb']:,.0f} MB", "bounded"),
        ("All sessions closed: server CPU back to idle (< 0.05 core) after",
         f"{r['idle_after_close_s']:.1f} s" if r["idle_after_close_s"] is not None else "not idle", "a few seconds"),
        (f"{n} concurrent sessions: exceptions, console errors, cross-talk, runs lost on a page switch "
         "(details: python -m bench.bench_load)", ok, "none"),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=10, help="browser sessions training at once (default 10)")
    ap.add_argument("--watch", type=float, default=15.0, help="seconds to watch all sessions train (default 15)")
    ap.add_argument("--json", metavar="FILE", help="also write every measurement to FILE as JSON")
    ap.add_argument("--server-cores", type=int, default=0, metavar="N",
                    help="give the server N cores of its own and the browsers the rest, as in a class where the "
                         "browsers run on the students' computers (default 0: everything shares every core)")
    ap.add_argument("--frames", action="store_true",
                    help="also time the server's WebSocket messages as they reach each browser (CDP network events; "
                         "this costs the browsers some CPU, so the view figures come out a little worse)")
    ap.add_argument("--update-target", type=float, default=None, metavar="S",
                    help="also fail when a session's view went more than S seconds without an update (default: "
                         "reported, not checked; the browsers share the server's cores here)")
    a = ap.parse_args(argv)
    r = load_test(a.sessions, watch_seconds=a.watch, frames_too=a.frames, server_cores=a.server_cores,
                  update_target_s=a.update_target,
                  log=lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", flush=True))
    print(summary(r))
    print("longest gap of each session began at (s into the watch):", r.get("update_max_at_s"))
    if r.get("not_training_text"):
        print("sessions not training show:", r["not_training_text"])
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=1))
    return 1 if r["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
