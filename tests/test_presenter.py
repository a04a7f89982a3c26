"""Presenter mode at projector size (issue 21): every scene of every page fits one 16:9 screen.

For each page, open ``/<page>?present=1`` at 1280x720, step through the scenes with PageDown on the
page body (as a presentation clicker does), scroll to the top, and check the scene's main figure, at
1280x720 and, after resizing the same window, at 1920x1080 (one walk, both sizes):

CONVENTION (announced to every page owner): in presenter mode, a scene's main figure is the FIRST
Plotly chart (or, if the scene has none, the first ``st.image`` / Vega chart) in the main area after the
scene bar. A scene with no figure shows its key formula (``st.latex``): the first display formula then
counts as its main figure.

Checks per scene: the main figure lies inside the viewport, and (unless it is a formula) is at least
half the viewport's height (scenes in ``FILL``: most of it); body text (Markdown paragraphs and list items, not captions or widget
labels) is at least 20 px; the main Plotly figure's tick labels, legend entries and annotations are
at least 16 px.

The test prints a table (page, size, scene, figure kind, top, bottom, height, font sizes) and writes it
to ``.pytest_cache/presenter-<page>-<size>.txt``. Select a page with ``-k reparam`` (ids: autoencoder,
kl, reparam, train, latent, limits, answers; the home page: ``-k home``).
"""
from __future__ import annotations

import re

import pytest

from tests.conftest import _DRAWN_JS, ROOT, assert_no_exception_box, hold_still, screenshot, wait_drawn

PAGES = ["autoencoder", "kl", "reparam", "train", "latent", "limits", "answers"]
SIZES = [(1280, 720), (1920, 1080)]
MIN_BODY_PX = 20
MIN_CHART_PX = 16
MIN_FIG_SHARE = 0.5
# Screenshots taken on the walk: (page, scene, size) -> assets/screenshots/<name>.png
SCENE_SHOTS = {("answers", 1, (1280, 720)): "answers-present"}
# A scene's key controls, by the start of their label (a widget's label or a button's text without its emoji):
# each must lie wholly inside the viewport with the figure. (page, scene) -> labels.
KEY_CONTROLS = {
    ("latent", 3): ("Image A (index)", "Image B (index)", "Steps"),
    ("latent", 4): ("Start from image (index)",),
    ("latent", 5): ("Sample the autoencoder from",),
    ("train", 2): ("Start training", "β, the weight of the KL term"),
}
# Scenes whose main figure fills the screen, not just half of it: (page, scene) -> the least share of the
# viewport's height its box must take, at both sizes (the latent page stretches these figures into a box as
# high as the screen allows; a fixed 559 px left the lower half of 1920x1080 empty).
FILL = {("latent", i): 0.8 for i in (1, 2, 3, 4)}

# Measures the current scene in the browser. Returns the scene bar's text, the main figure's kind and
# box, and the smallest font sizes (body text in the viewport; the main Plotly figure's ticks, legend,
# annotations). Hidden elements (inside collapsed expanders, other tabs) have no client rects: skipped.
_MEASURE_JS = r"""() => {
  const main = document.querySelector('[data-testid="stMain"]');
  if (!main) return null;
  const visible = (e) => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden';
  const bar = [...main.querySelectorAll('[data-testid="stMarkdownContainer"]')]
      .find(e => /Scene \d+ of \d+/.test(e.textContent));
  const after = (e) => !bar || (bar.compareDocumentPosition(e) & Node.DOCUMENT_POSITION_FOLLOWING) !== 0;
  const first = (sel) => [...main.querySelectorAll(sel)].find(e => visible(e) && after(e) && !e.closest('[data-testid="stExpander"] details:not([open])'));
  let kind = 'plotly', fig = first('.js-plotly-plot');
  if (!fig) { kind = 'image'; fig = first('[data-testid="stImage"] img, [data-testid="stVegaLiteChart"], [data-testid="stArrowVegaLiteChart"]'); }
  if (!fig) { kind = 'latex'; fig = first('.katex-display'); }
  if (!fig) kind = 'none';
  const r = fig ? fig.getBoundingClientRect() : null;
  const px = (e) => parseFloat(getComputedStyle(e).fontSize);
  const minOf = (els) => { const v = els.filter(visible).map(px); return v.length ? Math.min(...v) : null; };
  const vh = window.innerHeight;
  const body = [...main.querySelectorAll('[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li')]
      .filter(e => !e.closest('[data-testid="stCaptionContainer"], [data-testid="stWidgetLabel"], [data-testid="stTooltipContent"], .js-plotly-plot'))
      .filter(e => e.textContent.trim().length > 0)
      .filter(e => { const b = e.getBoundingClientRect(); return b.bottom > 0 && b.top < vh; });
  const smallBody = body.filter(e => visible(e) && px(e) < %MIN_BODY%).map(e => e.textContent.trim().slice(0, 40));
  const inFig = (sel) => kind === 'plotly' ? [...fig.querySelectorAll(sel)] : [];
  return {
    bar: bar ? bar.textContent : '', kind,
    box: r ? [r.top, r.bottom, r.left, r.right, r.height] : null,
    vw: window.innerWidth, vh,
    body: minOf(body), smallBody,
    ticks: minOf(inFig('.xtick text, .ytick text, .ztick text')),
    legend: minOf(inFig('.legendtext')),
    annotations: minOf(inFig('.annotation-text')),
  };
}""".replace("%MIN_BODY%", str(MIN_BODY_PX))

_TOP_JS = """() => { window.scrollTo(0, 0);
  for (const sel of ['[data-testid="stMain"]', '[data-testid="stAppViewContainer"]', '.main', 'section.main'])
    for (const e of document.querySelectorAll(sel)) e.scrollTop = 0; }"""

# One reading: null while Streamlit is still running or drawing (tests.conftest's wait_drawn check), else
# scroll to the top and measure.
_READ_JS = f"""() => {{ if (!({_DRAWN_JS})()) return null; ({_TOP_JS})(); return ({_MEASURE_JS})(); }}"""
# The same without the "drawn" check, for a live view: its fragment reruns twice a second, so the script is
# seldom idle for 400 ms, while what is measured (boxes, font sizes) stays the same from one redraw to the next.
_READ_LIVE_JS = f"""() => {{ ({_TOP_JS})(); return ({_MEASURE_JS})(); }}"""


def _measure(page, size: tuple[int, int], window_ms: int = 400, poll_ms: int = 100, live: bool = False) -> dict:
    """Scroll to the top and measure, every ``poll_ms``, until the page is drawn (conftest's check:
    script idle, connected, no skeletons, no stale elements; not checked when ``live``) at ``size`` and
    every reading over ``window_ms`` agrees (figures draw late, and lay themselves out again after a
    resize). No fixed wait: it returns as soon as the scene has been still that long (conftest.hold_still)."""
    _, m = hold_still(page, _READ_LIVE_JS if live else _READ_JS, window_ms=window_ms, poll_ms=poll_ms,
                      timeout_ms=40_000,
                      accept=lambda m: bool(m) and m["kind"] != "none" and (m["vw"], m["vh"]) == size)
    return m or {"bar": "", "kind": "none", "box": None}


# The box of each key control (its element's whole box: label and widget), or null when none is visible.
_CONTROLS_JS = """(labels) => {
  const main = document.querySelector('[data-testid="stMain"]');
  const visible = (e) => e.getClientRects().length > 0;
  const cands = [...main.querySelectorAll('[data-testid="stWidgetLabel"], button')].filter(visible);
  return labels.map(t => {
    const e = cands.find(c => c.innerText.replace(/^[^A-Za-z0-9\u0370-\u03ff]+/, '').trim().startsWith(t));
    if (!e) return [t, null];
    const r = (e.closest('[data-testid="stElementContainer"]') || e).getBoundingClientRect();
    return [t, [r.top, r.bottom, r.left, r.right]];
  });
}"""


def _controls_off(page, labels) -> list[str]:
    """The key controls (``KEY_CONTROLS``) that are missing or not wholly inside the viewport."""
    if not labels:
        return []
    vw, vh = page.evaluate("() => [innerWidth, innerHeight]")
    out = []
    for label, box in page.evaluate(_CONTROLS_JS, list(labels)):
        if box is None:
            out.append(f"control {label!r} not shown")
        elif box[0] < -0.5 or box[1] > vh + 0.5 or box[2] < -0.5 or box[3] > vw + 0.5:
            out.append(f"control {label!r} outside the viewport ({box[0]:.0f}..{box[1]:.0f} of {vh})")
    return out


def _unfilled(m: dict, share: float | None) -> list[str]:
    """A scene listed in ``FILL`` whose main figure takes less than ``share`` of the viewport's height."""
    if share is None or not m["box"] or m["box"][4] >= share * m["vh"] - 0.5:
        return []
    return [f"main figure {m['box'][4]:.0f} px high < {share:.0%} of {m['vh']} (it should fill the screen)"]


def _scene_of(bar: str) -> tuple[int, int]:
    m = re.search(r"Scene (\d+) of (\d+)", bar)
    assert m, f"no scene bar ('Scene i of n') found: {bar!r}"
    return int(m.group(1)), int(m.group(2))


def _problems(m: dict) -> list[str]:
    out = []
    vw, vh = m["vw"], m["vh"]
    if m["kind"] == "none" or not m["box"]:
        return ["no main figure (Plotly chart, image or st.latex) after the scene bar"]
    top, bottom, left, right, height = m["box"]
    if top < -0.5 or bottom > vh + 0.5 or left < -0.5 or right > vw + 0.5:
        out.append(f"main figure outside the viewport ({top:.0f}..{bottom:.0f} of {vh})")
    if m["kind"] != "latex" and height < MIN_FIG_SHARE * vh - 0.5:
        out.append(f"main figure {height:.0f} px high < {MIN_FIG_SHARE:.0%} of {vh}")
    if m["body"] is not None and m["body"] < MIN_BODY_PX - 0.01:
        out.append(f"body text {m['body']:.1f} px < {MIN_BODY_PX} ({m['smallBody'][:3]})")
    for name in ("ticks", "legend", "annotations"):
        if m[name] is not None and m[name] < MIN_CHART_PX - 0.01:
            out.append(f"chart {name} {m[name]:.1f} px < {MIN_CHART_PX}")
    return out


# The presenter header: the page title on one line, and the scene bar's button labels whole (not cut to "Previ…").
_HEADER_JS = """() => {
  const head = document.querySelector('.st-key-_present_head');
  if (!head) return ['no presenter header'];
  const out = [];
  const h1 = head.querySelector('h1');
  if (h1) {
    const lh = parseFloat(getComputedStyle(h1).lineHeight) || 1.2 * parseFloat(getComputedStyle(h1).fontSize);
    if (h1.getBoundingClientRect().height > 1.5 * lh) out.push('title on more than one line: ' + h1.innerText);
  }
  for (const m of head.querySelectorAll('button [data-testid="stMarkdownContainer"]'))  // (it holds the ellipsis)
    if (m.clientWidth > 0 && m.scrollWidth > m.clientWidth + 1) out.push('button label cut: ' + m.innerText);
  return out;
}"""


def _header_problems(page) -> list[str]:
    return page.evaluate(_HEADER_JS)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def _table(slug: str, size: tuple[int, int], rows: list[tuple[int | str, dict, list[str]]]) -> str:
    """One line per scene (``i``: its number, or a label such as "2 training")."""
    sw = max([6] + [len(str(i)) for i, _, _ in rows])
    head = f"{'page':<12} {'size':<10} {'scene':<{sw}} {'kind':<7} {'top':>5} {'bottom':>6} {'height':>6} " \
           f"{'body':>4} {'ticks':>5} {'legend':>6} {'annot':>5}  problems"
    lines = [head, "-" * len(head)]
    for i, m, probs in rows:
        top, bottom, _, _, height = m["box"] or (None, None, None, None, None)
        lines.append(f"{slug:<12} {size[0]}x{size[1]:<5} {str(i):<{sw}} {m['kind']:<7} {_fmt(top):>5} {_fmt(bottom):>6} "
                     f"{_fmt(height):>6} {_fmt(m['body']):>4} {_fmt(m['ticks']):>5} {_fmt(m['legend']):>6} "
                     f"{_fmt(m['annotations']):>5}  {'; '.join(probs) or 'ok'}")
    return "\n".join(lines)


def _report(slug: str, size: tuple[int, int], rows) -> str:
    table = _table(slug, size, rows)
    print("\n" + table)
    out = ROOT / ".pytest_cache" / f"presenter-{slug}-{size[0]}x{size[1]}.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text(table + "\n")
    return table


def _open(page, url: str) -> None:
    page.goto(url)
    wait_drawn(page)
    assert_no_exception_box(page)


def _resize(page, size: tuple[int, int]) -> None:
    page.set_viewport_size({"width": size[0], "height": size[1]})


def _start_walk(page, url: str) -> tuple[dict[tuple[int, int], list], list[tuple[int, int]]]:
    """Open ``url`` (presenter mode) at the first size, on scene 1. Returns (rows: each size's measured
    scenes, empty; order: the sizes, in the order the next scene is measured in)."""
    _resize(page, SIZES[0])
    _open(page, url)
    page.get_by_text(re.compile(r"Scene 1 of \d+")).first.wait_for()
    return {size: [] for size in SIZES}, list(SIZES)


@pytest.mark.browser
@pytest.mark.parametrize("slug", PAGES)
def test_every_scene_fits_the_screen(watched_page, server_url, slug):
    """One walk through the scenes serves both sizes: each scene is measured at the size the page has when
    it arrives, then the window is resized to the other size (the layout is CSS and the charts' own resize:
    the server does not know the window's size) and measured again. The sizes alternate, so every scene
    is measured once at 1280x720 and once at 1920x1080 with one resize."""
    page = watched_page
    rows, order = _start_walk(page, f"{server_url}/{slug}?present=1")
    n = None
    i = 1
    while n is None or i <= n:
        if i > 1:
            page.locator("body").press("PageDown")
            page.get_by_text(f"Scene {i} of {n}").first.wait_for(timeout=60_000)
            page.wait_for_function(_DRAWN_JS, timeout=90_000, polling=100)
            assert_no_exception_box(page)
        for k, size in enumerate(order):
            if k:
                _resize(page, size)
            m = _measure(page, size)
            if n is None:
                _, n = _scene_of(m["bar"])
            assert _scene_of(m["bar"]) == (i, n), (size, m["bar"])
            rows[size].append((i, m, _problems(m) + _unfilled(m, FILL.get((slug, i)))
                               + _controls_off(page, KEY_CONTROLS.get((slug, i))) + _header_problems(page)))
            if (slug, i, size) in SCENE_SHOTS:
                screenshot(page, SCENE_SHOTS[(slug, i, size)])
        order.reverse()  # the next scene starts at the size this one ended with
        i += 1
    assert_no_exception_box(page)
    tables = [_report(slug, size, rows[size]) for size in SIZES]
    failing = {f"{w}x{h}": [i for i, _, probs in rows[(w, h)] if probs] for w, h in SIZES}
    assert not any(failing.values()), f"scenes that do not fit, by size, of /{slug}: {failing}:\n" + "\n\n".join(tables)


# The training page's default run, the one a lecturer starts (MNIST-5k, a 16-D VAE, 28,200 steps: minutes, so
# it is still training while β moves; the test stops it).
TRAIN_RUN = "?present=1"


def _progress(page, pattern: str, timeout: float = 120_000) -> None:
    """Wait until the live progress line matches ``pattern`` (a JS regular expression)."""
    page.wait_for_function("p => { const e = document.querySelector('[data-testid=stProgress]');"
                           " return e && new RegExp(p).test(e.innerText); }", arg=pattern, timeout=timeout)


@pytest.mark.browser
def test_training_scenes_fit_with_a_run(watched_page, server_url):
    """The walk above sees the training page with no run: its scenes 2 to 4 then show their formula. A lecturer
    presses Start: scene 2's live charts (while the run trains, after β has moved five times, and once it has
    ended), scene 3's timeline and scene 4's comparison of two runs must fit too, at both sizes, with the
    same checks (figure inside the viewport and at least half its height, font sizes, key controls)."""
    page = watched_page
    rows, order = _start_walk(page, f"{server_url}/train{TRAIN_RUN}")

    def check(scene: int, what: str, controls=(), live: bool = False) -> None:
        for k, size in enumerate(order):
            if k:
                _resize(page, size)
            m = _measure(page, size, live=live)
            assert _scene_of(m["bar"])[0] == scene, (what, m["bar"])
            rows[size].append((f"{scene} {what}", m, _problems(m) + _controls_off(page, controls)))
        order.reverse()

    def scene(i: int) -> None:
        # (a focused β slider would take the PageDown itself, as it would from a lecturer's clicker)
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        page.locator("body").press("PageDown")
        page.get_by_text(f"Scene {i} of 4").first.wait_for(timeout=60_000)
        wait_drawn(page)

    scene(2)
    page.get_by_role("button", name="Start training").click()
    _progress(page, r"training · epoch .* step [1-9]")
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stVegaLiteChart]')]"
                           ".filter(e => e.getClientRects().length).length >= 2")  # the loss chart, the KL bars
    check(2, "training", ("Pause", "Stop", "β, the weight of the KL term"), live=True)
    slider = page.get_by_role("slider").first
    for key in ("ArrowRight", "ArrowRight", "ArrowLeft", "ArrowRight", "ArrowRight"):
        slider.focus()
        slider.press(key)
        page.wait_for_timeout(600)
    _progress(page, "β = 3 · training")  # 1 → 1.5 → 2 → 1.5 → 2 → 3, all on the run that is training
    check(2, "β moved 5 times", ("Pause", "Stop", "β, the weight of the KL term"), live=True)
    page.get_by_role("button", name="Stop").click()
    _progress(page, "stopped early")
    wait_drawn(page)
    check(2, "ended", KEY_CONTROLS[("train", 2)])
    scene(3)
    check(3, "one run")
    scene(4)
    check(4, "one run")
    page.get_by_role("button", name="Start training").click()  # a second run, to compare
    _progress(page, r"#2 VAE.* step [1-9]\d\d+/")
    page.get_by_role("button", name="Stop").click()
    _progress(page, "#2 VAE.*stopped early")
    wait_drawn(page)
    check(4, "two runs")
    assert_no_exception_box(page)
    tables = [_report("train-run", size, rows[size]) for size in SIZES]
    failing = {f"{w}x{h}": [i for i, _, probs in rows[(w, h)] if probs] for w, h in SIZES}
    assert not any(failing.values()), f"training scenes with a run that do not fit: {failing}:\n" + "\n\n".join(tables)


_HOME_JS = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  const vis = (e) => e.getClientRects().length > 0;
  const px = (e) => parseFloat(getComputedStyle(e).fontSize);
  const links = [...main.querySelectorAll('[data-testid="stPageLink"]')].filter(vis).map(e => {
      const r = e.getBoundingClientRect(); return [e.textContent.trim(), r.top, r.bottom]; });
  const h1 = main.querySelector('h1').getBoundingClientRect();
  const body = [...main.querySelectorAll('[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li')]
      .filter(e => vis(e) && e.textContent.trim() && !e.closest('[data-testid="stCaptionContainer"], [data-testid="stWidgetLabel"], [data-testid="stPageLink"]'));
  return {links, h1: [h1.top, h1.bottom], body: Math.min(...body.map(px)), vh: window.innerHeight};
}"""
_HOME_READ_JS = f"""() => {{ ({_TOP_JS})(); return ({_HOME_JS})(); }}"""  # scroll to the top, then read


@pytest.mark.browser
def test_home_fits_the_screen(watched_page, server_url):
    """The home page has no scenes and no figure: in presenter mode its title, the three questions and
    every lesson link must be on the first screen, with body text of at least 20 px. Checked at both
    sizes in one page: opened at 1280x720, then resized to 1920x1080 (the layout is CSS only)."""
    page = watched_page
    _resize(page, SIZES[0])
    _open(page, f"{server_url}/?present=1")
    for size in SIZES:
        _resize(page, size)
        # The layout after a resize: read until two readings 200 ms apart agree.
        _, m = hold_still(page, _HOME_READ_JS, window_ms=200, poll_ms=200, timeout_ms=10_000,
                          accept=lambda m: bool(m) and m["vh"] == size[1])
        print(f"\nhome {size}: title {m['h1']}, body {m['body']} px, links:\n" +
              "\n".join(f"  {t[:40]:<40} {top:5.0f} {bottom:5.0f}" for t, top, bottom in m["links"]))
        assert len(m["links"]) == 7, (size, m["links"])
        assert m["h1"][0] >= 0, size
        off = [t for t, top, bottom in m["links"] if top < 0 or bottom > m["vh"]]
        assert not off, f"lesson links below the first screen at {size}: {off}"
        assert m["body"] >= MIN_BODY_PX, (size, m["body"])


# ---- the shared machinery, without a browser ------------------------------------------------------------

def test_with_font_scale_reaches_every_font_and_keeps_a_16px_floor():
    import plotly.graph_objects as go

    from core.figures import style, with_font_scale
    fig = style(go.Figure(go.Bar(x=[1, 2], y=[3, 4], text=["a", "b"], textfont=dict(size=10),
                                 marker=dict(color=[1, 2], showscale=True, colorbar=dict(tickfont=dict(size=9))))),
                "title", height=400)
    fig.update_xaxes(tickfont=dict(size=11), title="x")
    fig.update_layout(xaxis2=dict(), legend=dict(font=dict(size=12)))
    fig.add_annotation(text="note", x=1, y=1, font=dict(size=10))
    fig.add_annotation(text="plain", x=2, y=2)
    fig.add_annotation(text="big", x=2, y=3, font=dict(size=16))
    fig.update_layout(xaxis3=dict(tickfont=dict(size=20)))  # a page's own presenter size: kept, not x1.45
    fig.frames = [go.Frame(layout=dict(annotations=[dict(text="later", font=dict(size=10))]),
                           data=[go.Bar(textfont=dict(size=10))])]
    out = with_font_scale(fig, 1.45)
    assert out is fig
    lay = fig.layout
    assert lay.font.size == 20                           # 14 x 1.45
    assert lay.xaxis.tickfont.size == 16                 # 11, raised to the floor
    assert lay.yaxis.tickfont.size == 20                 # had none: explicit, or Streamlit's template gives 12
    assert lay.xaxis2.tickfont.size == 20
    assert lay.xaxis.title.font.size == 20
    assert lay.legend.font.size == 16                    # 12, raised to the floor (explicit sizes are not multiplied)
    assert [a.font.size for a in lay.annotations] == [16, 20, 23]  # 10 x 1.45 -> floor 16; unset -> base; 16 x 1.45
    assert lay.xaxis3.tickfont.size == 20
    assert fig.frames[0].layout.annotations[0].font.size == 16  # Play must not shrink them back
    assert fig.data[0].textfont.size == 10               # a trace's own explicit text: left to fit its box
    assert fig.data[0].marker.colorbar.tickfont.size == 16
    assert lay.height == 520                             # 400 x 1.3
    # Not enlarging: no floor, nothing changes but explicit sizes.
    small = with_font_scale(style(go.Figure(go.Bar(x=[1], y=[1]))), 1.0)
    assert small.layout.font.size == 14 and small.layout.xaxis.tickfont.size == 14


def test_presenter_header_is_one_row_without_the_question():
    from tests.apptest_utils import assert_ok, page_app, texts
    at = page_app("pages/3_reparam.py", query={"present": "1", "dataset": "digits"})
    assert_ok(at)
    body = texts(at)
    assert "Scene 1 of 7: The key idea" in body
    assert "Prove it mathematically" not in " ".join(c.value for c in at.caption)  # the question line is left out
    assert [t.value for t in at.title] == ["🎲 The reparameterization trick"]
    at = page_app("pages/3_reparam.py", query={"dataset": "digits"})
    assert_ok(at)
    assert "Prove it mathematically" in " ".join(c.value for c in at.caption)
    assert "Scene 1 of" not in texts(at)
