"""Load test of the server alone: many students training at once, driven over Streamlit's protocol.

``bench/bench_load.py`` drives real Chromium pages. On this 2-core machine those take about one of
the server's two cores, while in a class each student's browser runs on the student's own computer.
This bench measures what the server delivers to each session without that cost: every session is a
``bench.st_client.StreamlitSession``, which speaks Streamlit's WebSocket protocol the way its
frontend does (fragment timers included) and renders nothing. Each session opens the training page
with its own β (the shared link ``bench_load`` uses), presses Start training, and the bench records
when each new step of the session's progress line arrives. While all of them train, that gives the
time between updates the server delivers to each session. A browser shows an update a few tens of
ms after it arrives, when it has a core of its own.

Checks: no exception is drawn, every session trains, each session only ever sees its own run and β
(no cross-talk), and after every connection closes the server's CPU falls back to idle (the
trainers' leases lapse).

    python -m bench.bench_sessions --sessions 10     # exit status 1 if a check failed
    python -m bench.bench_sessions --sessions 30     # a class of 30
    python -m bench.bench_sessions --all-pages --sessions 30   # 30 open every page at once, fresh server
    python -m bench.bench_sessions --sessions 30 --proxy 2     # through HAProxy and 2 replicas (deploy/)
    python -m bench.bench_sessions --sessions 30 --proxy 2 --compare   # one server, then the proxy

With ``--proxy N`` the same scenario runs through ``python -m deploy``'s set-up (``deploy.start``): N
replicas behind HAProxy, sticky by cookie. Each session is a separate browser with its own cookie jar
(it loads the page over HTTP first, as a browser does, and is given a replica), and the bench
reports how many sessions each replica served, and each replica's CPU. The server's CPU, RSS and
idle check then cover every replica and HAProxy. Each run writes its runs to a temporary run
directory (``LATENT_LAB_RUN_DIR``), removed afterwards.

The clients run in this process, at nice 5 like the stand-in browsers of ``bench_load``, and their
CPU use is reported.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_load import (  # noqa: E402
    BATCH, BETAS, STEP_RE, CpuMeter, RssSampler, _gaps, _train_url, cpu_seconds, tree_pids)

UPDATE_TARGET_S = 1.0  # issue 22: every session's progress updated at least once a second, at the worst
from bench.st_client import StreamlitSession  # noqa: E402
from tests.conftest import start_server, stop_server  # noqa: E402


class Student:
    """One session on the training page: the steps its progress line showed, and what went wrong."""

    def __init__(self, index: int, beta: float, url: str, epochs: int, cookies: dict | None = None) -> None:
        self.index, self.beta = index, beta
        self.steps: list[tuple[float, int]] = []  # (time.monotonic() on arrival, step), each new step
        self.redraws: list[float] = []  # arrival of every progress line, new step or not
        self.exceptions: list[str] = []
        self.crosstalk: list[str] = []
        self.session = StreamlitSession(_train_url(url, beta, epochs), self._element, cookies=cookies)

    @property
    def replica(self) -> str | None:
        """Behind the proxy: the replica that answered the WebSocket upgrade (None: no proxy)."""
        from deploy import REPLICA_HEADER
        return self.session.upgrade_headers.get(REPLICA_HEADER) if self.session.upgrade_headers else None

    def _element(self, kind: str, el, fragment_id: str) -> None:
        if kind == "exception":
            self.exceptions.append(f"{el.type}: {el.message[:200]}")
        elif kind == "progress" and (m := STEP_RE.search(el.text)):
            self.redraws.append(time.monotonic())
            step = int(m.group(1).replace(",", ""))
            if not self.steps or step != self.steps[-1][1]:
                self.steps.append((time.monotonic(), step))
            if not (el.text.startswith("**#1 VAE") and f"** · β = {self.beta:g} · " in el.text):
                self.crosstalk.append(el.text[:80])

    async def run(self, stop: asyncio.Event) -> None:
        async def start(session: StreamlitSession) -> None:
            if not await session.press("Start training"):
                self.exceptions.append("no Start training button on the page")
        await self.session.run(stop, after_first_run=start)


def _idle_after(pids_fn, limit_cores: float, timeout: float) -> float | None:
    """Seconds until the processes use less than ``limit_cores`` over one second (None: not within ``timeout``)."""
    t0 = prev_t = time.monotonic()
    prev = cpu_seconds(pids_fn())
    while time.monotonic() - t0 < timeout:
        time.sleep(1.0)
        c, now = cpu_seconds(pids_fn()), time.monotonic()
        if (c - prev) / (now - prev_t) < limit_cores:
            return now - t0
        prev, prev_t = c, now
    return None


def session_test(n_sessions: int = 10, watch_seconds: float = 15.0, settle_seconds: float = 10.0,
                 epochs: int = 200, idle_cpu_cores: float = 0.05, idle_timeout: float = 15.0,
                 client_nice: int = 5, log=None, proxy: int = 0) -> dict:
    """Run the scenario (see the module docstring); returns the measurements and ``problems``.
    ``proxy``: the number of replicas behind HAProxy (``deploy.start``); 0, one server alone."""
    say = log or (lambda msg: None)
    run_dir = tempfile.mkdtemp(prefix="latent-lab-bench-runs-")
    dep = None
    if proxy:
        from deploy import start as deploy_start
        dep = deploy_start(proxy, run_dir=run_dir)
        url = dep.url
        roots = {r.name: r.proc.pid for r in dep.replicas}
        pid_roots = list(roots.values()) + [dep.haproxy.pid]
    else:
        proc, url = start_server(env={"LATENT_LAB_RUN_DIR": run_dir})
        roots, pid_roots = {"server": proc.pid}, [proc.pid]
    server_pids = lambda: [p for root in pid_roots for p in tree_pids(root)]  # noqa: E731
    samplers = [RssSampler(pid) for pid in pid_roots]
    for rss in samplers:
        rss.start()
    betas = [BETAS[i % len(BETAS)] for i in range(n_sessions)]
    students = [Student(i, b, url, epochs, cookies={} if proxy else None) for i, b in enumerate(betas)]
    res: dict = {"sessions": n_sessions, "betas": betas, "watch_seconds": watch_seconds,
                 "settle_seconds": settle_seconds, "cpu_count": os.cpu_count(), "client_nice": client_nice,
                 "load_avg_before": os.getloadavg(), "proxy_replicas": proxy}
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def drive() -> None:
        await asyncio.gather(*(s.run(stop) for s in students), return_exceptions=False)

    def clients() -> None:
        if client_nice:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), client_nice)
        loop.run_until_complete(drive())

    thread = threading.Thread(target=clients, daemon=True, name="students")
    t0 = time.monotonic()
    thread.start()
    try:
        deadline = t0 + 120
        while time.monotonic() < deadline and thread.is_alive() and not all(s.steps for s in students):
            time.sleep(0.25)
        res["all_training_after_s"] = time.monotonic() - t0
        res["not_training"] = [s.index for s in students if not s.steps]
        say(f"{n_sessions} sessions training after {res['all_training_after_s']:.1f} s; settling for "
            f"{settle_seconds:.0f} s, then watching for {watch_seconds:.0f} s")
        time.sleep(settle_seconds)
        server, client = CpuMeter(server_pids).start(), CpuMeter(lambda: [os.getpid()]).start()
        per_replica = {name: CpuMeter(lambda pid=pid: tree_pids(pid)).start() for name, pid in roots.items()} if proxy else {}
        w0 = time.monotonic()
        time.sleep(watch_seconds)
        w1 = time.monotonic()
        res["server_cpu_cores"], res["machine_cpu_cores"] = server.stop()
        res["replica_cpu_cores"] = {name: m.stop()[0] for name, m in per_replica.items()}
        res["client_cpu_cores"] = client.stop()[0]
        res["load_avg_during"] = os.getloadavg()
        gaps, rates = [], []
        for s in students:
            seen = [(t, step) for t, step in s.steps if w0 < t <= w1]
            gaps.append(_gaps([t * 1000 for t, _ in seen], w0 * 1000, w1 * 1000))
            rates.append((seen[-1][1] - seen[0][1]) * BATCH / (seen[-1][0] - seen[0][0]) if len(seen) > 1 else 0.0)
        all_gaps = [g for gs in gaps for g in gs]
        res["update_max_s_per_session"] = [round(max(gs), 3) for gs in gaps]
        res["update_median_s"] = statistics.median(all_gaps)
        res["update_p95_s"] = statistics.quantiles(all_gaps, n=20, method="inclusive")[-1]
        res["update_max_s"] = max(all_gaps)
        res["updates_per_session"] = [len(gs) - 1 for gs in gaps]
        # Every redraw of the progress line that arrived (its timer asks for two a second), and how
        # many of them showed no new step: a long gap comes from a redraw that was late or lost, or
        # from one that found the run had not moved.
        redraws = sum(sum(w0 < t <= w1 for t in s.redraws) for s in students)
        res["progress_redraws_per_s"] = redraws / n_sessions / watch_seconds
        res["redraws_without_new_step"] = redraws - sum(res["updates_per_session"])
        res["samples_per_s_per_session"] = [round(r) for r in rates]
        res["samples_per_s_median"] = statistics.median(rates)
        res["samples_per_s_min"] = min(rates)
        res["samples_per_s_total"] = sum(rates)
        say(f"update interval median {res['update_median_s']:.2f} s, max {res['update_max_s']:.2f} s; "
            f"server {res['server_cpu_cores']:.2f} cores")
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(15)
    if proxy:
        res["sessions_per_replica"] = dict(sorted(Counter(s.replica for s in students).items(), key=str))
        res["haproxy_connections_per_replica"] = {name: int(row["stot"]) for name, row in dep.stats().items()}
    try:
        res["idle_after_close_s"] = _idle_after(server_pids, idle_cpu_cores, idle_timeout)
        # With replicas, the sum of their peaks (an upper bound of the peak of the sum).
        res["peak_rss_mb"] = sum(rss.stop() for rss in samplers)
        res["rss_after_close_mb"] = sum(rss.latest_mb for rss in samplers)
    finally:
        if dep:
            dep.stop()
        else:
            stop_server(proc)
        shutil.rmtree(run_dir, ignore_errors=True)
    res["exceptions"] = [f"session {s.index}: {e}" for s in students for e in s.exceptions]
    res["crosstalk"] = [f"session {s.index} (β={s.beta:g}) was shown {c!r}" for s in students for c in s.crosstalk[:3]]
    res["problems"] = problems(res)
    return res


PAGES = ("", "autoencoder", "kl", "reparam", "train", "latent", "limits")  # URL paths, Home first


def all_pages_test(n_sessions: int = 30, timeout: float = 180.0, warm: bool = False) -> dict:
    """A fresh server, and ``n_sessions`` sessions that each open every page in turn at once (session
    ``i`` starts at page ``i`` modulo 7, so all pages are drawn together): the first minute of a
    class. Returns, per page, the seconds from connecting to its first complete run (median and
    longest), and every exception drawn or page that did not finish within ``timeout``. ``warm``:
    first, one session opens every page (as a lecturer would before the class), untimed."""
    from bench.st_client import run_async

    proc, url = start_server()
    seconds: dict[str, list[float]] = {p or "home": [] for p in PAGES}
    found: list[str] = []

    async def student(i: int) -> None:
        for k in range(len(PAGES)):
            page = PAGES[(i + k) % len(PAGES)]

            def element(kind, el, fragment_id, page=page):
                if kind == "exception":
                    found.append(f"session {i}, page /{page}: {el.type}: {el.message[:150]}")

            session = StreamlitSession(f"{url}/{page}?seed={i}", element)
            stop = asyncio.Event()
            t0 = time.monotonic()
            task = asyncio.ensure_future(session.run(stop))
            try:
                await asyncio.wait_for(session.drawn.wait(), timeout)
                seconds[page or "home"].append(time.monotonic() - t0)
            except asyncio.TimeoutError:
                found.append(f"session {i}, page /{page}: no complete run within {timeout:.0f} s")
            await asyncio.sleep(1.0)  # fragments and follow-up runs
            stop.set()
            await task

    async def everyone() -> None:
        await asyncio.gather(*(student(i) for i in range(n_sessions)))

    async def lecturer() -> None:
        await student(0)
        for v in seconds.values():
            v.clear()

    t0 = time.monotonic()
    try:
        if warm:
            run_async(lecturer())
            t0 = time.monotonic()
        run_async(everyone())
    finally:
        stop_server(proc)
    return {"sessions": n_sessions, "warm": warm, "total_s": time.monotonic() - t0, "problems": found,
            "pages": {p: {"median_s": statistics.median(v), "max_s": max(v)} for p, v in seconds.items() if v}}


def problems(r: dict, target_s: float = UPDATE_TARGET_S) -> list[str]:
    """Every check that failed, in words (empty when all passed)."""
    out = [f"exception: {e}" for e in r["exceptions"]] + [f"cross-talk: {e}" for e in r["crosstalk"]]
    if r.get("proxy_replicas") and None in r.get("sessions_per_replica", {}):
        out.append("a session's WebSocket upgrade did not name its replica")
    if r["not_training"]:
        out.append(f"sessions not training: {r['not_training']}")
    if r.get("update_max_s") is not None and r["update_max_s"] > target_s:
        out.append(f"update interval: a session went {r['update_max_s']:.2f} s without a new step (target ≤ {target_s:g} s)")
    if r.get("idle_after_close_s") is None:
        out.append("server CPU not idle after every session closed")
    return out


def summary(r: dict) -> str:
    where = (f"through HAProxy to {r['proxy_replicas']} replicas: sessions per replica "
             + ", ".join(f"{k} {v}" for k, v in r["sessions_per_replica"].items())
             + "; CPU per replica " + ", ".join(f"{k} {v:.2f}" for k, v in r["replica_cpu_cores"].items()) + " cores"
             if r.get("proxy_replicas") else "one server, no proxy")
    return "\n".join([
        where,
        f"sessions: {r['sessions']} protocol clients (β {', '.join(f'{b:g}' for b in r['betas'])}), {r['cpu_count']} cores, "
        f"load average during: {'/'.join(f'{v:.1f}' for v in r['load_avg_during'])}",
        f"time between new steps delivered to a session while all train: median {r['update_median_s']:.2f} s, "
        f"p95 {r['update_p95_s']:.2f} s, max {r['update_max_s']:.2f} s (per session max: "
        f"{', '.join(f'{v:.2f}' for v in r['update_max_s_per_session'])})",
        f"progress-line redraws received: {r['progress_redraws_per_s']:.2f} per second per session (timer: 2); "
        f"{r['redraws_without_new_step']} of them showed no new step",
        f"throughput per session: median {r['samples_per_s_median']:,.0f}, min {r['samples_per_s_min']:,.0f} samples/s "
        f"(all sessions: {r['samples_per_s_total']:,.0f} samples/s, batch {BATCH})",
        f"CPU while all train: server {r['server_cpu_cores']:.2f} cores, clients (nice {r['client_nice']}) "
        f"{r['client_cpu_cores']:.2f} cores, whole machine {r['machine_cpu_cores']:.2f} cores",
        f"server RSS: peak {r['peak_rss_mb']:.0f} MB, {r['rss_after_close_mb']:.0f} MB after every session closed; "
        + (f"CPU idle {r['idle_after_close_s']:.1f} s after close" if r["idle_after_close_s"] is not None else "CPU NOT idle"),
        "checks: " + ("all passed (no exception, no cross-talk, every session trained)" if not r["problems"]
                      else "FAILED:\n  " + "\n  ".join(r["problems"])),
    ])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=10, help="sessions training at once (default 10)")
    ap.add_argument("--watch", type=float, default=15.0, help="seconds to watch all sessions train (default 15)")
    ap.add_argument("--json", metavar="FILE", help="also write every measurement to FILE as JSON")
    ap.add_argument("--all-pages", action="store_true",
                    help="instead: a fresh server, and every session opens every page in turn, all at once")
    ap.add_argument("--warm", action="store_true", help="with --all-pages: one session opens every page first")
    ap.add_argument("--proxy", type=int, default=0, metavar="N",
                    help="run the sessions through HAProxy in front of N replicas (python -m deploy's set-up)")
    ap.add_argument("--compare", action="store_true",
                    help="with --proxy N: first the same bench against one server, then through the proxy")
    a = ap.parse_args(argv)
    if a.proxy < 0 or (a.compare and not a.proxy) or (a.proxy and a.all_pages):
        ap.error("--proxy takes a number of replicas >= 1; --compare needs --proxy; --all-pages runs without a proxy")
    if a.all_pages:
        r = all_pages_test(a.sessions, warm=a.warm)
        print(f"{r['sessions']} sessions opened all {len(PAGES)} pages in {r['total_s']:.0f} s; first complete "
              "run of each page: " + ", ".join(f"{p} {v['median_s']:.1f} s (longest {v['max_s']:.1f} s)"
                                                for p, v in r["pages"].items()))
        print("checks: " + ("no exception, every page drawn" if not r["problems"] else "FAILED:\n  " + "\n  ".join(r["problems"])))
        if a.json:
            Path(a.json).write_text(json.dumps(r, indent=1))
        return 1 if r["problems"] else 0
    log = lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", flush=True)  # noqa: E731
    results = []
    for replicas in ([0] if a.compare else []) + [a.proxy]:
        results.append(session_test(a.sessions, watch_seconds=a.watch, log=log, proxy=replicas))
        print(summary(results[-1]), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(results if a.compare else results[0], indent=1))
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
