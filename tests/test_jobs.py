"""core.jobs: keyed background jobs (dedup, progress, failure messages, eviction, thread safety)."""

import threading
import time

import pytest

from core.jobs import DONE, FAILED, RUNNING, Job, Jobs


class FakeClock:
    def __init__(self):
        self.t = 1000.0
        self.lock = threading.Lock()

    def __call__(self):
        with self.lock:
            return self.t

    def advance(self, dt):
        with self.lock:
            self.t += dt


def _gate_job(gate: threading.Event, value=42):
    def fn(report):
        report(0.25, "started")
        assert gate.wait(10)
        report(0.75, "almost")
        return value
    return fn


def test_runs_in_background_reports_progress_and_result():
    jobs = Jobs()
    gate = threading.Event()
    job = jobs.submit("a", _gate_job(gate))
    assert isinstance(job, Job)
    deadline = time.time() + 5
    while job.text != "started" and time.time() < deadline:
        time.sleep(0.005)
    assert job.state == RUNNING and job.running
    assert job.progress == pytest.approx(0.25) and job.text == "started"
    assert job.result is None and job.error is None
    gate.set()
    assert job.wait(5)
    assert job.state == DONE and job.result == 42 and job.error is None
    assert job.progress == 1.0
    assert job.elapsed >= 0
    assert job._thread.daemon


def test_same_key_running_or_done_returns_existing_job():
    jobs = Jobs()
    gate = threading.Event()
    calls = []

    def fn(report):
        calls.append(1)
        gate.wait(5)
        return "r"

    j1 = jobs.submit(("k", 1), fn)
    j2 = jobs.submit(("k", 1), fn)
    assert j1 is j2 and jobs.get(("k", 1)) is j1
    gate.set()
    j1.wait(5)
    assert jobs.submit(("k", 1), fn) is j1
    assert calls == [1]
    assert jobs.get(("k", 2)) is None
    j3 = jobs.submit(("k", 2), fn)
    assert j3 is not j1
    j3.wait(5)
    assert len(calls) == 2 and len(jobs) == 2 and ("k", 2) in jobs


def test_failure_gives_message_not_traceback_and_resubmit_retries():
    jobs = Jobs()
    attempts = []

    def bad(report):
        attempts.append(1)
        report(0.5, "halfway")
        if len(attempts) == 1:
            raise ValueError("the learning rate must be positive")
        return "ok"

    job = jobs.submit("x", bad)
    assert job.wait(5)
    assert job.state == FAILED
    assert job.error == "ValueError: the learning rate must be positive"
    assert "Traceback" not in job.error and "\n" not in job.error
    assert job.result is None and job.progress == pytest.approx(0.5)
    assert jobs.get("x") is job  # kept, so every session sees the message
    retry = jobs.submit("x", bad)
    assert retry is not job
    assert retry.wait(5) and retry.state == DONE and retry.result == "ok"


def test_report_clips_and_never_goes_backwards():
    seen = []

    def fn(report):
        for p in (0.3, -1.0, 0.2, 7.0, float("nan"), "junk"):
            report(p, f"p={p}")
            seen.append(job_box[0].progress)
        return None

    job_box = []
    jobs = Jobs()
    gate = threading.Event()

    def wrapped(report):
        gate.wait(5)
        return fn(report)

    job_box.append(jobs.submit("c", wrapped))
    gate.set()
    job_box[0].wait(5)
    assert seen == [0.3, 0.3, 0.3, 1.0, 1.0, 1.0]
    assert job_box[0].text == "p=junk"


def test_unhashable_key_is_refused_in_the_caller():
    with pytest.raises(TypeError):
        Jobs().submit(["not", "hashable"], lambda r: None)


def test_bad_limits_are_refused():
    with pytest.raises(ValueError):
        Jobs(max_done=-1)
    with pytest.raises(ValueError):
        Jobs(max_age_s=-5)


def test_eviction_beyond_max_done_drops_oldest_finished_first():
    clock = FakeClock()
    jobs = Jobs(max_done=3, max_age_s=1e9, clock=clock)
    for i in range(5):
        j = jobs.submit(i, lambda r, i=i: i * 10)
        j.wait(5)
        clock.advance(1)
    assert len(jobs) == 3
    assert [k for k in range(5) if jobs.get(k) is not None] == [2, 3, 4]


def test_eviction_by_age_but_never_of_a_running_job():
    clock = FakeClock()
    jobs = Jobs(max_done=100, max_age_s=60, clock=clock)
    gate = threading.Event()
    slow = jobs.submit("slow", _gate_job(gate))
    fast = jobs.submit("fast", lambda r: 1)
    fast.wait(5)
    clock.advance(30)
    assert jobs.get("fast") is fast
    clock.advance(31)  # fast finished 61 s ago; slow started 61 s ago but is still running
    assert jobs.get("fast") is None
    assert jobs.get("slow") is slow and slow.running
    assert jobs.submit("fast", lambda r: 2).wait(5)
    assert jobs.get("fast").result == 2  # a new run after eviction
    gate.set()
    slow.wait(5)
    clock.advance(59)
    assert jobs.get("slow") is slow
    clock.advance(2)
    assert jobs.get("slow") is None


def test_max_done_zero_keeps_running_jobs_only():
    jobs = Jobs(max_done=0)
    gate = threading.Event()
    j = jobs.submit("r", _gate_job(gate))
    assert jobs.get("r") is j
    gate.set()
    j.wait(5)
    assert jobs.get("r") is None and len(jobs) == 0
    assert j.result == 42  # the caller's handle still has the result


def test_discard_and_running_list():
    jobs = Jobs()
    gate = threading.Event()
    j = jobs.submit("r", _gate_job(gate))
    assert jobs.running() == [j]
    jobs.discard("r")
    assert jobs.get("r") is None and jobs.running() == []
    gate.set()
    assert j.wait(5) and j.result == 42


def test_concurrent_submits_of_one_key_run_the_work_once():
    jobs = Jobs()
    count = []
    count_lock = threading.Lock()
    gate = threading.Event()

    def fn(report):
        with count_lock:
            count.append(1)
        gate.wait(5)
        return "shared"

    got = []
    got_lock = threading.Lock()
    start = threading.Barrier(16)

    def visitor():
        start.wait()
        j = jobs.submit("same", fn)
        with got_lock:
            got.append(j)

    threads = [threading.Thread(target=visitor) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    gate.set()
    assert len(got) == 16 and all(j is got[0] for j in got)
    assert got[0].wait(5) and got[0].result == "shared"
    assert count == [1]


def test_concurrent_many_keys_with_eviction_stay_consistent():
    jobs = Jobs(max_done=8, max_age_s=600)
    errors = []

    def visitor(v):
        try:
            for i in range(40):
                key = (v + i) % 25
                j = jobs.submit(key, lambda r, key=key: (r(0.5, "half"), key * key)[1])
                assert j.key == key
                if j.wait(5) and j.state == DONE:
                    assert j.result == key * key
                jobs.get((key * 7) % 25)
                len(jobs)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=visitor, args=(v,)) for v in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    deadline = time.time() + 5
    while jobs.running() and time.time() < deadline:
        time.sleep(0.01)
    assert len(jobs) <= 8


def test_cancel_stops_the_work_at_its_next_report():
    from core.jobs import _stop_all_at_exit
    jobs = Jobs()
    steps = []

    def long(report):
        for i in range(10_000):
            report(i / 10_000, f"step {i}")
            steps.append(i)
            time.sleep(0.001)
        return "never"

    j = jobs.submit("long", long)
    while len(steps) < 3:
        time.sleep(0.001)
    j.cancel()
    assert j.wait(5) and j.state == FAILED and j.error == "Cancelled: cancelled"
    assert len(steps) < 10_000
    # at exit every running job of every registry is cancelled and waited for (briefly)
    k = Jobs().submit("long2", long)
    while k.progress == 0 and k.state == RUNNING:
        time.sleep(0.001)
    _stop_all_at_exit(wait_s=5)
    assert k.state == FAILED


def test_process_exits_promptly_and_cleanly_with_a_job_running():
    """A running job's daemon thread is stopped at exit (at its next report), not killed mid-work."""
    import subprocess
    import sys
    from pathlib import Path
    code = ("import time\nfrom core.jobs import Jobs\n"
            "def work(report):\n    while True:\n        report(0.5, 'busy')\n        time.sleep(0.01)\n"
            "j = Jobs().submit('forever', work)\ntime.sleep(0.1)\nprint(j.state, flush=True)\n")
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "running"
    assert time.time() - t0 < 15


def test_max_running_queues_the_rest_and_a_waiting_job_can_be_cancelled():
    jobs = Jobs(max_running=1)
    gate = threading.Event()
    active, peak = [0], [0]
    lock = threading.Lock()

    def fn(report):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        gate.wait(5)
        report(1.0, "done")
        with lock:
            active[0] -= 1
        return "ok"

    a = jobs.submit("a", fn)
    b = jobs.submit("b", fn)
    c = jobs.submit("c", fn)
    deadline = time.time() + 5
    while active[0] < 1 and time.time() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)
    waiting = [j for j in (a, b, c) if j.text == "waiting for another job to finish"]
    assert len(waiting) == 2 and all(j.state == RUNNING for j in (a, b, c))
    waiting[-1].cancel()
    assert waiting[-1].wait(5) and waiting[-1].state == FAILED
    gate.set()
    for j in (a, b, c):
        assert j.wait(5)
    assert peak[0] == 1
    assert sorted(j.state for j in (a, b, c)) == [DONE, DONE, FAILED]
    with pytest.raises(ValueError):
        Jobs(max_running=0)
