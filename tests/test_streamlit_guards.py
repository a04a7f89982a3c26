"""core.ui's guards against two Streamlit 1.67 bugs: a queue bug that blanks pages under load, and a
runner hand-over that drops a fragment run's output."""
from __future__ import annotations

import pytest
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.runtime.forward_msg_cache import create_reference_msg
from streamlit.runtime.forward_msg_queue import ForwardMsgQueue
from streamlit.runtime.scriptrunner_utils import script_run_context as src

from core import ui


def _delta(path: list[int], fragment_id: str, block: bool = False) -> ForwardMsg:
    m = ForwardMsg()
    m.metadata.delta_path[:] = path
    if block:
        m.delta.add_block.allow_empty = True
    else:
        m.delta.new_element.markdown.body = "x" * 20_000  # above Streamlit's 10 kB caching threshold
    m.delta.fragment_id = fragment_id
    return m


def test_upstream_keeps_a_cleared_fragments_reference_message_but_drops_its_block():
    """The bug itself (if this starts failing, Streamlit fixed it and the guard may go): when a
    fragment run starts, the unsent messages of that fragment are cleared, except a reference
    message, which has no delta and so no fragment id. Its parent block is gone."""
    block, elem = _delta([0, 9], "F", block=True), _delta([0, 9, 0], "F")
    src.populate_hash_if_needed.wrapped(elem)  # Streamlit's own function: cacheable
    assert elem.metadata.cacheable
    q = ForwardMsgQueue()
    q.enqueue(block)
    q.enqueue(create_reference_msg(elem))
    q.clear(retain_lifecycle_msgs=True, fragment_ids_this_run=["F"])
    kept = q.flush()
    assert [m.WhichOneof("type") for m in kept] == ["ref_hash"]


def test_elements_drawn_in_fragments_are_never_sent_as_references():
    assert ui.install_fragment_cache_guard()
    assert ui.install_fragment_cache_guard()  # installing twice wraps once
    guarded = src.populate_hash_if_needed
    assert guarded.wrapped.__name__ == "populate_hash_if_needed"
    # ScriptRunContext.enqueue, which decides between the message and a reference, calls the guard.
    assert src.ScriptRunContext.enqueue.__globals__["populate_hash_if_needed"] is guarded
    inside, outside = _delta([0, 9, 0], "F"), _delta([0, 12], "")
    guarded(inside)
    guarded(outside)
    assert inside.hash and not inside.metadata.cacheable  # sent in full, cleared with its block
    assert outside.metadata.cacheable  # the rest of the page still uses the browser's cache
    small = _delta([0, 9, 1], "F", block=True)
    guarded(small)
    assert small.hash and not small.metadata.cacheable


# ---- a fragment's output dropped when the next fragment's request comes just after it ------------

TWO_TIMERS_APP = """
import time
import streamlit as st
{guard}
@st.fragment(run_every=0.5)
def first():
    st.write(f"first {{time.time()}}")

@st.fragment(run_every=0.5)
def second():
    st.write(f"second {{time.time()}}")

first()
second()
"""


def _fragment_outputs(tmp_path, guarded: bool, seconds: float = 6.0) -> tuple[int, int]:
    """Serve a page with two fragments on 0.5 s timers, drive it with a client whose two timers fire
    together (as the frontend's two setIntervals, armed by the same run, do), and return (reruns of
    the first fragment requested, its redraws received in fragment runs)."""
    import asyncio

    from bench.st_client import StreamlitSession, run_async
    from tests.conftest import start_server, stop_server

    app = tmp_path / "two_timers.py"
    app.write_text(TWO_TIMERS_APP.format(guard="import core.ui" if guarded else ""))
    proc, url = start_server(app=app, log_path=tmp_path / "server.log")
    drawn = []

    def on_element(kind, el, fragment_id):
        if kind == "markdown" and el.body.startswith("first ") and fragment_id:
            drawn.append(fragment_id)

    async def drive() -> StreamlitSession:
        s = StreamlitSession(url, on_element)
        stop = asyncio.Event()
        task = asyncio.ensure_future(s.run(stop))
        await asyncio.sleep(seconds)
        for t in s.timers.values():  # no new requests; let the last ones answer
            t.cancel()
        await asyncio.sleep(1.5)
        stop.set()
        await task
        return s

    try:
        s = run_async(drive())
    finally:
        stop_server(proc)
    return s.requests[drawn[0]], len(drawn) - s.full_runs  # each full run draws it once too


@pytest.mark.slow
def test_upstream_drops_a_fragment_run_whose_events_were_not_handled_yet(tmp_path):
    """The bug itself (if this starts failing, Streamlit fixed it and the guard may go): a fragment's
    rerun request that finds the runner just stopped starts a new runner, and the session ignores
    the stopped runner's events, including all of its output."""
    requested, drawn = _fragment_outputs(tmp_path, guarded=False)
    print(f"upstream: {drawn} of {requested}")
    assert requested >= 8
    assert drawn < requested, f"{drawn} of {requested} redraws arrived: Streamlit no longer drops them"


@pytest.mark.slow
def test_every_fragment_rerun_delivers_its_output_with_the_guard(tmp_path):
    assert ui.install_fragment_rerun_guard()
    requested, drawn = _fragment_outputs(tmp_path, guarded=True)
    assert requested >= 8
    # All of them (upstream: 0 to 3 of 11). One may be merged into the next by a server busy for
    # more than the 0.5 s between two requests: both are then answered by a single run.
    assert drawn >= requested - 1, f"only {drawn} of {requested} redraws arrived"


def test_the_guard_defers_only_fragment_reruns_that_find_a_stopped_runner():
    """The hand-over rules of core.ui._after_finished_runs, with a stand-in session."""
    import asyncio
    from types import SimpleNamespace

    from streamlit.runtime.app_session import AppSessionState

    created = []

    class Runner:
        def __init__(self, accepts: bool) -> None:
            self.accepts = accepts

        def request_rerun(self, data) -> bool:
            created.append(("queued", data.fragment_id))
            return self.accepts

    def create(session, data) -> None:
        created.append(("created", data.fragment_id))
        session._scriptrunner = Runner(accepts=True)

    guarded = ui._after_finished_runs(create)
    full, frag = SimpleNamespace(fragment_id=None), SimpleNamespace(fragment_id="F")

    async def scenario():
        loop = asyncio.get_running_loop()
        s = SimpleNamespace(_scriptrunner=None, _event_loop=loop, _state=AppSessionState.APP_IS_RUNNING)
        guarded(s, frag)  # no runner: at once
        assert created == [("created", "F")]
        s._scriptrunner = stopped = Runner(accepts=False)
        guarded(s, full)  # a full rerun: at once, as upstream
        assert created[-1] == ("created", None)
        created.clear()
        s._scriptrunner = stopped
        guarded(s, frag)  # a stopped runner: one loop turn later, after its events
        assert created == []
        await asyncio.sleep(0)
        assert created == [("created", "F")]
        created.clear()
        s._scriptrunner = stopped
        guarded(s, frag)
        s._scriptrunner = Runner(accepts=True)  # meanwhile another request started a runner
        await asyncio.sleep(0)
        assert created == [("queued", "F")]  # it takes the fragment
        created.clear()
        s._scriptrunner = stopped
        guarded(s, frag)
        s._scriptrunner = Runner(accepts=False)  # ... which has stopped too: wait for its events in turn
        await asyncio.sleep(0)
        assert created == [("queued", "F")]
        await asyncio.sleep(0)
        assert created == [("queued", "F"), ("created", "F")]
        created.clear()
        s._scriptrunner, s._state = stopped, AppSessionState.SHUTDOWN_REQUESTED
        guarded(s, frag)  # the session closed meanwhile: nothing
        await asyncio.sleep(0)
        assert created == []

    from bench.st_client import run_async
    run_async(scenario())


def test_the_guard_is_installed_on_streamlits_app_session():
    from streamlit.runtime.app_session import AppSession

    assert ui.install_fragment_rerun_guard() and ui.install_fragment_rerun_guard()
    assert AppSession._create_scriptrunner.wrapped.__name__ == "_create_scriptrunner"  # wrapped once
    assert not hasattr(AppSession._create_scriptrunner.wrapped, "wrapped")


def test_the_page_glue_imports_pandas_before_any_session_draws():
    """In a fresh interpreter: importing core.ui leaves pandas fully imported, so that no two
    sessions' first charts import it at once (on a fresh server, 2 of 30 sessions opening every page
    got a half-initialised pandas from plotly; see core.ui)."""
    import subprocess
    import sys

    from tests.conftest import ROOT
    code = "import sys; import core.ui; print(hasattr(sys.modules['pandas'], 'Series'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True).stdout.strip()
    assert out == "True"
