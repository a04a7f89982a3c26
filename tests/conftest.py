"""Shared fixtures: a real Streamlit server, Playwright on Debian's Chromium, AppTest helpers.

Facts behind the flags: docs/testing.md (installing, the server flags, Playwright with Debian Chromium, AppTest).
"""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "assets" / "screenshots"
CHROMIUM = os.environ.get("LATENT_LAB_CHROMIUM", "/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Runs the tests train are saved (core.persist): into a folder of this test session, not the user's cache,
# removed when the session ends (pytest-xdist's workers inherit the folder of the process that started them).
if "LATENT_LAB_RUN_DIR" not in os.environ:
    os.environ["LATENT_LAB_RUN_DIR"] = tempfile.mkdtemp(prefix="latent-lab-runs-")
    atexit.register(shutil.rmtree, os.environ["LATENT_LAB_RUN_DIR"], ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int | None = None, env: dict | None = None,
                 cpus: set[int] | None = None, log_path: Path | None = None,
                 app: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``streamlit run app.py`` on 127.0.0.1 and wait for /_stcore/health. ``cpus``: the only
    cores the server (and every thread it starts) may run on; by default, all of them. ``log_path``:
    where its output goes (by default .pytest_cache/streamlit-<port>.log if that folder exists).
    ``app``: another script to serve instead (it runs from the project's folder, so it can import
    ``core``)."""
    port = port or _free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(app or ROOT / "app.py"), "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    if log_path is None and (ROOT / ".pytest_cache").is_dir():
        log_path = ROOT / ".pytest_cache" / f"streamlit-{port}.log"
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                            # its own process group, to stop it whole; but this session (so this kernel's
                            # autogroup), so that nice values rank the server against the test's browsers
                            process_group=0,
                            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError("streamlit did not become healthy within 60 s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture(scope="session")
def server_url():
    (ROOT / ".pytest_cache").mkdir(exist_ok=True)
    proc, url = start_server()
    yield url
    stop_server(proc)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"Chromium is missing at {CHROMIUM}; CI must install it (apt-get install chromium).")
        pytest.skip("Debian Chromium not installed (apt-get install chromium chromium-driver)")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1000}}


# Harmless 404s when a deep link such as /train is opened directly (see TESTING.md).
# And the frontend's "page ... does not seem to exist" log, when a fresh server's first deep link reaches it
# before the process has left pages/-mode: the page then routes itself (core.ui.frame._ensure_app_navigation).
_HARMLESS = ("/_stcore/health", "/_stcore/host-config", "host-config", "Failed to load resource: the server responded with a status of 404",
             "The page that you have requested does not seem to exist")


class ConsoleWatch:
    """Collects console errors and page errors; ``check()`` fails on any that are not harmless."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console: {m.text} @ {m.location}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def real_errors(self) -> list[str]:
        return [e for e in self.errors if not any(h in e for h in _HARMLESS)]

    def check(self) -> None:
        errs = self.real_errors()
        assert not errs, "browser console errors:\n" + "\n".join(errs)


_DRAWN_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (app.getAttribute('data-test-connection-state') !== 'CONNECTED') return false;
  if (!document.querySelector('[data-testid="stMain"] h1')) return false;   // every page has a title
  if (document.querySelector('[data-testid="stSkeleton"]')) return false;   // elements still loading
  if (document.querySelector('[data-testid="stMain"] [data-stale="true"]')) return false;
  return true;
}"""


def hold_still(page, read_js: str, *, window_ms: float = 400, poll_ms: float = 100, timeout_ms: float = 90_000,
               accept=bool, enough=None) -> tuple[bool, object]:
    """Evaluate ``read_js`` in ``page`` every ``poll_ms`` until it has returned the same reading, one that
    ``accept`` takes, at every poll for ``window_ms`` (a reading it rejects, or a different one, starts the
    window again); or until ``enough(now, reading)`` (``time.monotonic()``, called after every poll) says
    so. Returns ``(True, reading)``; ``(False, last reading)`` after ``timeout_ms``. No fixed wait: it
    returns as soon as the page has held still that long. A reading taken while the page navigates (its
    script context destroyed) counts as rejected."""
    from playwright.sync_api import Error as PlaywrightError

    deadline = time.monotonic() + timeout_ms / 1000
    held: list = []  # (time, reading) of the current run of equal accepted readings
    m = None
    while True:
        try:
            m = page.evaluate(read_js)
        except PlaywrightError as exc:
            if "context was destroyed" not in str(exc) and "navigat" not in str(exc):
                raise
            m = None
        now = time.monotonic()
        if accept(m):
            if held and m != held[-1][1]:
                held = []
            held.append((now, m))
            if (now - held[0][0]) * 1000 >= window_ms:
                return True, m
        else:
            held = []
        if enough is not None and enough(now, m):
            return True, m
        if now >= deadline:
            return False, m
        page.wait_for_timeout(poll_ms)


def wait_drawn(page, timeout: float = 90_000) -> None:
    """Wait until Streamlit has run the script to the end and drawn the page: idle, connected, a title
    present, no loading skeletons and no stale elements, and still so at every check (every 100 ms) for
    400 ms (the state is briefly "notRunning" before a run starts). A page whose live view reruns its
    fragment more often than that is drawn once the old test held instead: drawn at three checks, each
    at least 400 ms after the one before."""
    page.wait_for_function(_DRAWN_JS, timeout=timeout, polling=100)
    marks = [time.monotonic()]

    def three_checks_apart(now, drawn) -> bool:
        if drawn and now - marks[-1] >= 0.4:
            marks.append(now)
        return len(marks) >= 3

    ok, _ = hold_still(page, _DRAWN_JS, window_ms=400, timeout_ms=timeout, enough=three_checks_apart)
    assert ok, f"the page was not drawn and still within {timeout / 1000:.0f} s"


# The size of the window and of every chart, image and canvas in the page.
_LAYOUT_JS = """() => [innerWidth, innerHeight,
  [...document.querySelectorAll('.js-plotly-plot, [data-testid="stVegaLiteChart"], [data-testid="stImage"] img, canvas')]
      .map(e => { const r = e.getBoundingClientRect(); return [Math.round(r.width), Math.round(r.height)]; })]"""


def wait_laid_out(page, window_ms: float = 500, timeout: float = 90_000) -> None:
    """After a change of the viewport's size: wait until the page is drawn (``wait_drawn``) and the
    window's and every chart's size have held for ``window_ms`` (the charts lay themselves out again a
    moment after the window changes)."""
    wait_drawn(page, timeout=timeout)
    ok, _ = hold_still(page, _LAYOUT_JS, window_ms=window_ms, timeout_ms=timeout)
    assert ok, f"the page's layout did not settle within {timeout / 1000:.0f} s"


_WARM: set[str] = set()  # servers whose app.py has run once (in any session)


def warm_server(page, server_url: str, timeout: float = 60_000) -> None:
    """Before a test's first deep link to a server: open its home page once, as far as its title (by
    then app.py has run and registered every page's URL; a fresh server cannot resolve a deep link
    before that, see test_app_shell's first-visit test). The server keeps that state, so later tests
    on the same server go straight to their deep link."""
    if server_url in _WARM:
        return
    page.goto(server_url)
    page.locator('[data-testid="stMain"] h1').first.wait_for(timeout=timeout)
    _WARM.add(server_url)


def assert_no_exception_box(page) -> None:
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, "Streamlit exception shown: " + boxes.first.inner_text()[:2000]


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def watched_page(page):
    """A Playwright page whose console errors fail the test at teardown."""
    watch = ConsoleWatch(page)
    page.set_default_timeout(60_000)
    yield page
    watch.check()
