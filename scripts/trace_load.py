"""Re-run the 10-session load test until a session stalls, keeping every page's WebSocket messages.

    python scripts/trace_load.py --runs 30 --out /tmp/load-traces

Each run is ``bench.bench_load.load_test`` with ``frames_too``; every message each page sends
(BackMsg) or receives (ForwardMsg) is decoded with Streamlit's protobuf classes and logged as
(browser network clock, SENT/recv, message type, detail). A delta is logged with its path, its kind
(a block, or which element), its fragment and, for a progress line, its step; a reference to a
cached element (``ref_hash``) with its path. When a run has a gap of more than 3 s (``--gap``), a session not
training or a failed page switch, its results and every page's log go to ``<out>/stall<N>.json`` and the
script stops. Each run also prints how long the server took from each status redraw request to
its progress line (``redraw_latencies``). This is how the blank-page crash of the training page was caught (README,
"Deploying for a class").
"""
from __future__ import annotations

import argparse
import base64
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench.bench_load as B  # noqa: E402


def _describe(raw: bytes, sent: bool) -> tuple[str, str] | None:
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    m = BackMsg() if sent else ForwardMsg()
    m.ParseFromString(raw)
    kind = m.WhichOneof("type")
    if kind == "rerun_script":
        return kind, f"fragment={m.rerun_script.fragment_id[:8]} auto={m.rerun_script.is_auto_rerun}"
    if kind == "auto_rerun":
        return kind, f"fragment={m.auto_rerun.fragment_id[:8]} every={m.auto_rerun.interval:.2f}"
    if kind == "stop_auto_rerun":
        return kind, "fragments=" + ",".join(f[:8] for f in m.stop_auto_rerun.fragment_ids)
    if kind == "new_session":
        return kind, ("fragments=" + ",".join(f[:8] for f in m.metadata.run.fragment_ids)
                      + f" run={m.metadata.run.script_run_id[:6]}")
    if kind == "script_finished":
        return kind, ForwardMsg.ScriptFinishedStatus.Name(m.script_finished)
    if kind == "session_status_changed":
        return kind, f"running={m.session_status_changed.script_is_running}"
    if kind == "delta":  # where it goes, what it is (a block or which element), and a progress line's step
        d = m.delta
        what = d.WhichOneof("type")
        if what == "new_element":
            what = d.new_element.WhichOneof("type")
        elif what == "add_block":
            what = "block:" + (d.add_block.WhichOneof("type") or "")
        step = B.STEP_BYTES_RE.search(raw)
        return kind, (f"path={list(m.metadata.delta_path)} {what} frag={d.fragment_id[:8]}"
                      + (f" step {step.group(1).decode()}" if step else ""))
    if kind == "ref_hash":
        return kind, f"path={list(m.metadata.delta_path)}"
    return kind, ""


class TracingFrameWatch(B.FrameWatch):
    def __init__(self, context, page):
        self.log: list[tuple] = []
        super().__init__(context, page)
        self._cdp.on("Network.webSocketFrameReceived", lambda p: self._trace(p, False))
        self._cdp.on("Network.webSocketFrameSent", lambda p: self._trace(p, True))
        made.append(self)

    def _trace(self, params: dict, sent: bool) -> None:
        r = params.get("response") or {}
        data = r.get("payloadData") or ""
        try:
            found = _describe(base64.b64decode(data) if r.get("opcode") == 2 else data.encode(), sent)
        except Exception as exc:  # a frame that is not a Streamlit message
            found = ("?", repr(exc)[:60])
        if found:
            self.log.append((params["timestamp"], "SENT" if sent else "recv", *found))


made: list[TracingFrameWatch] = []


def redraw_latencies(result: dict, logs: list[list]) -> list[float]:
    """Seconds from each request of a page's status fragment (its timer's ``rerun_script``) to the
    progress line that answered it, for every page, within the watch window. This is the server's
    share of an update interval: the rest is the browser's timer and drawing."""
    w0 = result["watch_t0"]
    w1 = w0 + result["watch_seconds"]
    out = []
    for log in logs:
        status = next((e[3].split("frag=")[1][:8] for e in log if e[1] == "recv" and " progress " in e[3]), None)
        asked = None
        for t, way, kind, detail in log:
            if not w0 <= t <= w1:
                continue
            if way == "SENT" and kind == "rerun_script" and f"fragment={status}" in detail:
                asked = t
            elif way == "recv" and " progress " in detail and asked is not None:
                out.append(t - asked)
                asked = None
    return sorted(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--out", default="/tmp/load-traces")
    ap.add_argument("--gap", type=float, default=3.0,
                    help="save the run and stop when a session goes this long without an update (s)")
    ap.add_argument("--keep", action="store_true", help="save every run's trace, not only a stall's")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    B.FrameWatch = TracingFrameWatch
    for i in range(a.runs):
        made.clear()
        r = B.load_test(a.sessions, frames_too=True)
        stalled = r["update_max_s"] > a.gap or r["not_training"] or r["lost_runs"]
        logs = [fw.log for fw in made]
        lat = redraw_latencies(r, logs) or [math.nan]
        print(time.strftime("%H:%M:%S"), f"run {i}: longest gap {r['update_max_s']:.2f} s; redraw request to "
              f"progress line: median {lat[len(lat) // 2]:.3f}, 99th percentile {lat[int(0.99 * len(lat))]:.3f}, "
              f"longest {lat[-1]:.3f} s;", r["problems"][:3] or "all checks passed", flush=True)
        trace = json.dumps({"result": r, "logs": logs}, default=str)
        if a.keep:
            (out / f"run{i}.json").write_text(trace)
        if stalled:
            path = out / f"stall{i}.json"
            path.write_text(trace)
            print("stall captured:", path)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
