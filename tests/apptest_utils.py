"""Helpers for AppTest (streamlit.testing.v1)."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent


def page_app(path: str, query: dict | None = None, timeout: float = 60) -> AppTest:
    """An AppTest for one page file (e.g. ``"pages/2_kl.py"``), run once."""
    at = AppTest.from_file(str(ROOT / path), default_timeout=timeout)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    return at


def assert_ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def plotly_specs(at: AppTest) -> list[dict]:
    import json
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def texts(at: AppTest) -> str:
    """All markdown, captions, metrics and alerts on the page, joined (for substring checks)."""
    parts = []
    for kind in ("markdown", "caption", "latex", "error", "warning", "info", "success", "title", "subheader", "header"):
        parts += [str(getattr(e, "value", "")) for e in at.get(kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(parts)
