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
    """Every Plotly figure on the page, in page order: ``st.plotly_chart`` and ``core.ui.live_figure``
    (a custom component that carries its figure in its data)."""
    import json
    out = []

    def walk(node):
        for child in getattr(node, "children", {}).values():
            kind = getattr(child, "type", None)
            if kind == "plotly_chart":
                out.append(json.loads(child.proto.spec))
            elif kind == "bidi_component" and child.proto.component_name.endswith("latent_lab_live_figure"):
                out.append(json.loads(child.proto.json)["fig"])
            walk(child)

    walk(at._tree)
    return out


def texts(at: AppTest) -> str:
    """All markdown, captions, metrics and alerts on the page, joined (for substring checks)."""
    parts = []
    for kind in ("markdown", "caption", "latex", "error", "warning", "info", "success", "title", "subheader", "header"):
        parts += [str(getattr(e, "value", "")) for e in at.get(kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(parts)
