"""deploy/: Latent Lab replicas behind HAProxy with sticky sessions (issue 23).

The configuration and the argument checks are tested alone; then two real replicas and HAProxy are
started on loopback and driven with the protocol client (bench/st_client.py), as browsers would:
each session sticks to one replica, training works through the proxy, and when a replica is killed
(SIGKILL) its students, reconnecting with the URL their page showed, get their runs back from the
other replica (the shared run directory, core.persist). Skipped when HAProxy is not installed,
except under CI=true, where that fails.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import deploy
from bench.st_client import StreamlitSession, run_async

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
HAVE_HAPROXY = Path(deploy.HAPROXY).is_file() and os.access(deploy.HAPROXY, os.X_OK)
STEP_RE = re.compile(r"step ([\d,]+)/")


@pytest.fixture(scope="module")
def haproxy():
    if not HAVE_HAPROXY:
        if IN_CI:
            pytest.fail(f"HAProxy is missing at {deploy.HAPROXY}; CI must install it (apt-get install haproxy).")
        pytest.skip(f"HAProxy not installed at {deploy.HAPROXY} (Debian: apt-get install haproxy)")
    return deploy.HAPROXY


# ---- the configuration and the arguments -----------------------------------------------------------

def test_config_is_sticky_websocket_ready_health_checked_and_accepted_by_haproxy(haproxy, tmp_path):
    cfg = deploy.build_config(8600, [9001, 9002, 9003], stats_socket=tmp_path / "s.sock")
    lines = [ln.split("#")[0].strip() for ln in cfg.splitlines()]
    assert "cookie LLSRV insert indirect nocache httponly attr \"SameSite=Lax\"" in lines
    assert "mode http" in lines and "timeout tunnel 1h" in lines and "option redispatch" in lines
    assert "option httpchk GET /_stcore/health" in lines and "balance leastconn" in lines
    assert [ln for ln in lines if ln.startswith("server ")] == [
        "server r0 127.0.0.1:9001 check cookie r0", "server r1 127.0.0.1:9002 check cookie r1",
        "server r2 127.0.0.1:9003 check cookie r2"]
    assert "bind 127.0.0.1:8600" in lines
    path = tmp_path / "haproxy.cfg"
    path.write_text(cfg)
    check = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "bind 0.0.0.0:80" in deploy.build_config(80, [9001], bind="0.0.0.0", balance="roundrobin")
    from bench.bench_sessions import PAGES
    assert deploy.PAGES == PAGES  # the pages --warm all opens: every page of the app


def test_bad_arguments_are_refused_with_a_clear_message(tmp_path):
    with pytest.raises(deploy.DeployError, match="--replicas must be a whole number from 1"):
        deploy.check_arguments(0, deploy.free_port())
    with pytest.raises(deploy.DeployError, match="--port must be a TCP port"):
        deploy.check_arguments(2, 70000)
    with pytest.raises(deploy.DeployError, match="HAProxy was not found at .*apt-get install haproxy"):
        deploy.check_arguments(2, deploy.free_port(), haproxy=str(tmp_path / "no-haproxy"))
    with pytest.raises(deploy.DeployError, match="balance must be one of"):
        deploy.build_config(80, [9001], balance="random")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(deploy.DeployError, match=f"port {port} on 127.0.0.1 is already in use"):
            deploy.check_arguments(2, port, haproxy=sys.executable)
        # The command says so and exits with status 2, before starting anything.
        out = subprocess.run([sys.executable, "-m", "deploy", "--replicas", "2", "--port", str(port),
                              "--bind", "127.0.0.1"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                             env={**os.environ, "LATENT_LAB_HAPROXY": sys.executable})
    assert out.returncode == 2 and "already in use" in out.stderr, out.stderr
    out = subprocess.run([sys.executable, "-m", "deploy", "--replicas", "0"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "--replicas must be a whole number from 1" in out.stderr, out.stderr


def test_replicas_share_the_run_dir_and_split_the_training_slots(tmp_path):
    env = deploy.replica_env(tmp_path, 4, base={"PATH": "/bin"}, cores=8)
    assert env == {"PATH": "/bin", "LATENT_LAB_RUN_DIR": str(tmp_path), "LATENT_LAB_TRAINING_SLOTS": "2"}
    assert deploy.replica_env(tmp_path, 16, base={}, cores=8)["LATENT_LAB_TRAINING_SLOTS"] == "1"
    # The user's choice wins.
    assert deploy.replica_env(tmp_path, 4, base={"LATENT_LAB_TRAINING_SLOTS": "3"}, cores=8)[
        "LATENT_LAB_TRAINING_SLOTS"] == "3"
    assert deploy.default_run_dir({"LATENT_LAB_RUN_DIR": str(tmp_path / "mine")}) == tmp_path / "mine"
    assert deploy.default_run_dir({"LATENT_LAB_CACHE": str(tmp_path / "c")}) == tmp_path / "c" / "runs"
    assert deploy.default_run_dir({}) == Path.home() / ".cache" / "latent-lab" / "runs"


def test_the_command_serves_through_the_proxy_and_stops_everything_on_sigterm(haproxy, tmp_path):
    port = deploy.free_port()
    proc = subprocess.Popen([sys.executable, "-m", "deploy", "--replicas", "1", "--port", str(port), "--bind",
                             "127.0.0.1", "--run-dir", str(tmp_path / "runs"), "--warm", "home"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        while not any("Press Ctrl-C" in ln for ln in lines):
            line = proc.stdout.readline()
            assert line, "python -m deploy ended early:\n" + "".join(lines)
            lines.append(line)
        out = "".join(lines)
        assert f"served at http://127.0.0.1:{port}" in out and "opening 1 page(s) once on each" in out, out
        replica_port = int(re.search(r"r0 on 127.0.0.1:(\d+)", out).group(1))
        work_dir = Path(re.search(r"config and logs in (\S+)", out).group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=10) as r:
            assert r.status == 200 and r.headers.get(deploy.REPLICA_HEADER) == "r0"
        assert (tmp_path / "runs").is_dir() and (work_dir / "haproxy.cfg").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        out += proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "stopped" in out, out
    # Nothing is left listening, and the temporary folder is gone.
    assert deploy.port_free(port) and deploy.port_free(replica_port) and not work_dir.exists()


# ---- two replicas behind the proxy -----------------------------------------------------------------

class Student:
    """One browser: a cookie jar, and the training page's progress lines its sessions received."""

    def __init__(self, base_url: str, beta: float, jar: dict | None = None) -> None:
        self.beta = beta
        self.jar = {} if jar is None else jar
        self.lines: list[tuple[float, int, str]] = []  # (arrival, step, text) of every progress line
        self.exceptions: list[str] = []
        self.url = f"{base_url}/train?dataset=mnist-5k&tr_epochs=200&tr_beta={beta:g}"
        self.session: StreamlitSession | None = None

    def connect(self) -> StreamlitSession:
        """A new Streamlit session (a new page load, as a reload does) at the URL the page shows now."""
        def element(kind, el, fragment_id):
            if kind == "exception":
                self.exceptions.append(f"{el.type}: {el.message[:300]}")
            elif kind == "progress" and (m := STEP_RE.search(el.text)):
                self.lines.append((time.monotonic(), int(m.group(1).replace(",", "")), el.text))
        self.session = StreamlitSession(self.session.url if self.session else self.url, element,
                                        cookies=self.jar, follow_url=True)
        return self.session

    @property
    def replica(self) -> str:
        """The replica that answered the WebSocket upgrade (HAProxy's response header)."""
        return self.session.upgrade_headers.get(deploy.REPLICA_HEADER)

    def steps_since(self, t: float) -> list[int]:
        return [s for when, s, _ in self.lines if when >= t]


async def _open(students, stop, press_start=True, timeout=90.0):
    """Connect every student (a new session each) and, once its page is drawn, press Start training.
    Returns the tasks that follow the sessions until ``stop``."""
    async def start(session):
        if not await session.press("Start training"):
            raise AssertionError("no Start training button")
    tasks = [asyncio.ensure_future(s.connect().run(stop, after_first_run=start if press_start else None))
             for s in students]
    t0 = time.monotonic()
    while not all(s.session.drawn.is_set() for s in students):
        for t in tasks:
            if t.done() and t.exception():
                raise t.exception()
        assert time.monotonic() - t0 < timeout, "pages not drawn through the proxy in time"
        await asyncio.sleep(0.1)
    return tasks


async def _until(pred, timeout, what):
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < timeout, f"timed out after {timeout:.0f} s waiting for {what}"
        await asyncio.sleep(0.2)


def _saved_step(owner_dir: Path) -> int:
    """The step of the run saved in ``owner_dir`` (0 while there is none, or while it is being written)."""
    try:
        (meta,) = owner_dir.glob("*/run.json")
        return int(json.loads(meta.read_text())["step"])
    except (ValueError, OSError, KeyError):
        return 0


@pytest.fixture(scope="module")
def deployment(haproxy, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs")
    dep = deploy.start(2, run_dir=run_dir, check_interval_ms=500)
    yield dep
    dep.stop()
    assert dep.haproxy.returncode is not None and all(not r.alive() for r in dep.replicas)
    assert not dep.work_dir.exists()


@pytest.mark.slow
def test_each_session_sticks_to_one_replica_and_trains_through_the_proxy(deployment):
    dep = deployment
    students = [Student(dep.url, b) for b in (0.5, 1, 2, 4)]

    async def scenario():
        stop = asyncio.Event()
        tasks = await _open(students, stop)
        t_start = time.monotonic()
        await _until(lambda: all(len(set(s.steps_since(t_start))) >= 3 for s in students), 60,
                     "every session's progress line to advance")
        # While the four WebSockets are open, HAProxy counts them on the replicas their cookies name.
        on = {name: sum(s.jar.get(deploy.COOKIE) == name for s in students) for name in ("r0", "r1")}
        stats = dep.stats()
        assert {n: int(stats[n]["scur"]) for n in on} == on, (stats, on)
        stop.set()
        await asyncio.gather(*tasks)
        # A reload (a new page load and a new session, with the browser's cookie jar) goes back to
        # the same replica, every time.
        first = [s.replica for s in students]
        for _ in range(2):
            stop = asyncio.Event()
            tasks = await _open(students, stop, press_start=False)
            assert [s.replica for s in students] == first
            stop.set()
            await asyncio.gather(*tasks)

    run_async(scenario())
    for s in students:
        assert not s.exceptions, s.exceptions
        # The page, the WebSocket upgrade and the cookie all name one replica.
        assert s.jar[deploy.COOKIE] == s.replica == s.session.page_headers.get(deploy.REPLICA_HEADER)
        # Its progress line is its own run, with its own β, and it trained.
        assert all(f"β = {s.beta:g} ·" in text for _, _, text in s.lines), s.lines[-1]
        assert max(step for _, step, _ in s.lines) > 0
    # Browsers without a cookie were spread over both replicas (fewest connections first).
    assert {s.replica for s in students} == {"r0", "r1"}


@pytest.mark.slow
def test_a_killed_replicas_students_get_their_runs_back_from_the_other(deployment):
    """SIGKILL replica r0 while two students train on it: their reload (a new session at the URL
    their page showed, with their cookie naming r0) is served by r1, the third student (on r1)
    trains on undisturbed, and their runs come back from the shared run directory (core.persist):
    each from its last save before the kill."""
    dep = deployment
    # Two browsers whose cookie names r0, one on r1 (as after their first page load).
    doomed = [Student(dep.url, 0.5, {deploy.COOKIE: "r0"}), Student(dep.url, 2, {deploy.COOKIE: "r0"})]
    survivor = Student(dep.url, 4, {deploy.COOKIE: "r1"})
    everyone = doomed + [survivor]
    owners: dict[int, str | None] = {}
    saved: dict[int, int] = {}

    async def scenario():
        stop = asyncio.Event()
        tasks = await _open(everyone, stop)
        assert [s.replica for s in everyone] == ["r0", "r0", "r1"]
        t0 = time.monotonic()
        await _until(lambda: all(len(set(s.steps_since(t0))) >= 3 for s in everyone), 60, "training")
        # Every owner's id is in its page's URL, and its run is saved in the shared run directory.
        for s in everyone:
            owners[id(s)] = dict(p.split("=", 1) for p in s.session.url_query.split("&") if "=" in p).get("runs")
        assert all(owners.values()), [s.session.url for s in everyone]
        await _until(lambda: all(list((dep.run_dir / owners[id(s)]).glob("*/run.json")) for s in doomed), 30,
                     "the runs to be saved in the shared run directory")
        # ... and saved again once it has trained (a save interval is at most 5 s): no fixed wait.
        await _until(lambda: all(_saved_step(dep.run_dir / owners[id(s)]) > 0 for s in doomed), 30,
                     "a save of each run after it trained")
        before = {id(s): s.lines[-1][1] for s in doomed}
        dep.kill_replica(0, signal.SIGKILL)
        killed_at = time.monotonic()
        for s in doomed:  # the step of each run's last save before the kill (run.json is written last)
            (meta,) = (dep.run_dir / owners[id(s)]).glob("*/run.json")
            saved[id(s)] = json.loads(meta.read_text())["step"]
        # The doomed sessions lose their WebSocket; the survivor keeps training on r1.
        for t in tasks[:len(doomed)]:
            with pytest.raises(Exception):
                await asyncio.wait_for(t, 20)
        await _until(lambda: len(set(survivor.steps_since(killed_at))) >= 3, 30, "the survivor to keep training")
        # A reload: a new session at the URL the page showed, with the browser's cookie (naming r0).
        again = await _open(doomed, stop, press_start=False)
        for s in doomed:
            assert s.replica == "r1" and s.jar[deploy.COOKIE] == "r1"
        await _until(lambda: all(s.steps_since(killed_at) for s in doomed), 30, "the runs to show on r1")
        stop.set()
        await asyncio.gather(*again, tasks[-1])
        return before, killed_at

    before, killed_at = run_async(scenario())
    assert not survivor.exceptions, survivor.exceptions
    assert dep.stats()["r0"]["status"] != "UP"
    # Started again (as `python -m deploy` does), r0 has the others' run directory and cookie secret,
    # HAProxy takes it back, and a browser whose cookie names it is served there again.
    dep.restart_replica(0)
    environ = [dict(v.split("=", 1) for v in Path(f"/proc/{r.proc.pid}/environ").read_text().split("\0") if "=" in v)
               for r in dep.replicas]
    for key in ("LATENT_LAB_RUN_DIR", "STREAMLIT_SERVER_COOKIE_SECRET"):
        assert environ[0][key] == environ[1][key]
    t0 = time.monotonic()
    while dep.stats()["r0"]["status"] != "UP":
        assert time.monotonic() - t0 < 20, dep.stats()["r0"]
        time.sleep(0.2)
    with urllib.request.urlopen(urllib.request.Request(dep.url + "/_stcore/health",
                                                       headers={"Cookie": "LLSRV=r0"}), timeout=10) as r:
        assert r.headers.get(deploy.REPLICA_HEADER) == "r0"
    for s in doomed:
        assert not s.exceptions, s.exceptions
        assert f"runs={owners[id(s)]}" in s.session.url
        after = [(step, text) for when, step, text in s.lines if when >= killed_at]
        step, text = after[0]
        # The same run (its β), brought back from its last save before the kill: paused at the saved
        # step, or resumed from it. (The save may be a step or two past the last progress line seen.)
        assert f"β = {s.beta:g} ·" in text, text
        assert 0 < saved[id(s)] <= step, (saved[id(s)], step, before[id(s)], text)
        if " paused " in text:
            assert step == saved[id(s)], (saved[id(s)], step, text)
