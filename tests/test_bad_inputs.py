"""Bad-input corpus across every page: hostile URL query parameters never crash a page, are
reported with a clear message naming the parameter, and are never rendered as HTML.

Uploads and checkpoints have their own corpora in tests/test_data.py and tests/test_checkpoints.py;
the pages' upload paths are tested in their page tests.
"""
from __future__ import annotations

import pytest

from app import LESSONS
from tests.apptest_utils import ROOT, assert_ok, page_app

PAGES = ["app.py"] + [p for p, *_ in LESSONS if (ROOT / p).is_file()]
HOSTILE = ["<script>alert(1)</script>", "1e309", "-99999999", "NaN", "abc", "[1,2]", "9" * 80, "%00", "`rm -rf`"]


def _published_params(path: str) -> dict:
    at = page_app(path)
    assert_ok(at)
    return dict(at.query_params)


def _all_output(at) -> str:
    parts = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "code", "latex", "text", "title"):
        parts += [str(getattr(e, "value", "")) for e in at.get(kind)]
    return "\n".join(parts)


@pytest.mark.parametrize("path", PAGES)
def test_hostile_query_params_are_refused_with_a_message(path):
    params = _published_params(path)
    assert params, f"{path} keeps no state in the URL"
    for bad in HOSTILE[:5] if len(params) > 8 else HOSTILE:
        query = {k: bad for k in params}
        at = page_app(path, query=query)
        assert_ok(at)
        errors = " ".join(e.value for e in at.error)
        # every parameter whose value is invalid is named in the message (string params may accept some values)
        named = [k for k in params if f"`{k}`" in errors]
        assert named, f"{path}: no error names any of {list(params)} for value {bad!r}"
        out = _all_output(at)
        assert "<script>" not in out and "<" not in errors
        # the page falls back to valid defaults; only a free-text field may keep the text (so the
        # user can correct it), and then the message must name that parameter
        for k, v in dict(at.query_params).items():
            assert v != bad or "not a whole number" in errors or f"`{k}`" in errors, f"{path}: {k} kept {bad!r} without a message"


@pytest.mark.parametrize("path", PAGES)
def test_unknown_query_params_are_harmless(path):
    at = page_app(path, query={"__proto__": "x", "zzz": "<b>bold</b>"})
    assert_ok(at)
