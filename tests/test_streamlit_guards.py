"""core.ui's guard against a Streamlit 1.67 queue bug that blanks pages under load."""
from __future__ import annotations

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
