"""Drawing helpers: Plotly figures with the house toolbar and presenter-mode fonts (``figure``), a
figure that follows sliders in the browser (``live_figure``), and downloads (HTML, CSV)."""
from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence

import streamlit as st

from core.ui.url import present

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PLOTLY_CONFIG = {
    "displaylogo": False,
    "toImageButtonOptions": {"format": "png", "scale": 3},  # high-resolution PNG from the toolbar
    "modeBarButtonsToRemove": ["select2d", "lasso2d"],
}
PRESENT_SCALE = 1.45


def figure(fig, key: str | None = None, alt: str | None = None, html_name: str | None = None, **kw):
    """Draw a Plotly figure with the house toolbar (PNG export at 3x). ``alt`` is the text
    alternative for screen readers. ``html_name`` adds a download of the figure (with its
    animation, if any) as a standalone offline HTML file."""
    fig = _presented(fig)
    out = st.plotly_chart(fig, key=key, config=PLOTLY_CONFIG, alt=alt, **kw)
    if html_name:
        st.download_button(f"⬇️ Download {html_name} (HTML)", data=lambda f=fig: figure_html(f),
                           file_name=f"{html_name}.html", mime="text/html", on_click="ignore",
                           key=f"dl_{key or html_name}")
    return out



PLOTLY_STATIC = "plotly.min.js"  # in <app>/static/, served at app/static/ (server.enableStaticServing)


@functools.cache
def _plotly_static() -> bool:
    """Put the plotly.js that ships with the Python plotly package into the app's static folder
    (once per process; nothing is downloaded). False if that is not possible (read-only install)."""
    import shutil

    import plotly
    src = os.path.join(os.path.dirname(plotly.__file__), "package_data", PLOTLY_STATIC)
    dst = os.path.join(ROOT, "static", PLOTLY_STATIC)
    try:
        if not os.path.isfile(dst) or os.path.getsize(dst) != os.path.getsize(src):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            tmp = f"{dst}.{os.getpid()}.tmp"
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        return True
    except OSError:
        return False


@functools.cache
def _live_component():
    with open(os.path.join(ROOT, "core", "js", "live_figure.js"), encoding="utf-8") as f:
        js = f.read()
    return st.components.v2.component(
        "latent_lab_live_figure", js=js,
        html='<div class="ll-live"><div class="ll-plot"></div><div class="ll-error" role="alert"></div></div>',
        css=".ll-live{width:100%}.ll-error{color:#b00020}",
        isolate_styles=False)  # no shadow root: plotly.js styles its toolbar with global CSS


def live_figure(fig, key: str, alt: str, updater: str, watch: dict[str, str], values: dict[str, float]) -> None:
    """A Plotly figure that follows Streamlit sliders in the browser, before the server replies.

    ``fig`` is the figure Python made from ``values``; ``watch`` maps each of those parameter names to
    the key of the ``st.slider`` that sets it; ``updater`` names the function in core/js/live_figure.js
    that recomputes the figure's data from slider values (it mirrors the Python figure function).
    Falls back to :func:`figure` (a server round trip per move) when plotly.js cannot be served.
    """
    if not _plotly_static() or not st.get_option("server.enableStaticServing"):
        figure(fig, key=key, alt=alt)
        return
    fig = _presented(fig)
    height = fig.layout.height or 450
    _live_component()(data={"fig": json.loads(fig.to_json()), "updater": updater, "watch": watch,
                            "values": {k: float(v) for k, v in values.items()}, "alt": alt,
                            "config": {**PLOTLY_CONFIG, "responsive": True},
                            "plotly_src": f"app/static/{PLOTLY_STATIC}"},
                      key=key, height=int(height))


def _presented(fig):
    """``fig`` with presenter-mode font sizes when presenter mode is on (a copy), else ``fig``."""
    if not present():
        return fig
    from core.figures import with_font_scale
    return with_font_scale(go_copy(fig), PRESENT_SCALE)  # ticks, legend, annotations >= 16 px


def go_copy(fig):
    import plotly.graph_objects as go
    return go.Figure(fig)


def figure_html(fig) -> str:
    """A standalone HTML file with plotly.js inlined: opens offline, animations included."""
    return fig.to_html(include_plotlyjs=True, full_html=True, config=PLOTLY_CONFIG, auto_play=False)


def download_csv(label: str, rows: Sequence[dict] | dict, file_name: str, key: str | None = None) -> None:
    """Metrics as CSV (rows of dicts, or a dict of equal-length columns)."""
    st.download_button(label, data=lambda: to_csv(rows), file_name=file_name, mime="text/csv",
                       on_click="ignore", key=key)


def to_csv(rows: Sequence[dict] | dict) -> str:
    import csv
    import io
    if isinstance(rows, dict):
        keys = list(rows)
        rows = [dict(zip(keys, vals)) for vals in zip(*rows.values())]
    buf = io.StringIO()
    if rows:
        keys = [k for k in rows[0] if not isinstance(rows[0][k], (list, dict))]
        w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in keys})
    return buf.getvalue()
