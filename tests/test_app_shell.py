"""The app shell: home page, navigation, shared sidebar, URL state, and core's isolation from Streamlit."""
from __future__ import annotations

import ast
import json

import pytest

from tests.apptest_utils import ROOT, assert_ok, page_app, texts
from tests.conftest import assert_no_exception_box, screenshot, wait_drawn, wait_laid_out


def test_core_does_not_import_streamlit_outside_glue():
    offenders = []
    for path in (ROOT / "core").rglob("*.py"):
        if path.parent == ROOT / "core" / "ui":  # the page glue
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "streamlit" or n.startswith("streamlit.") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
            if isinstance(node, ast.ImportFrom) and node.module in ("core", "core.ui") and any(
                    a.name == "ui" for a in node.names) or isinstance(node, ast.ImportFrom) and (
                    node.module or "").startswith("core.ui"):
                offenders.append(f"{path.relative_to(ROOT)} (imports core.ui)")
    assert not offenders, offenders


def test_home_page_runs_and_links_every_available_page():
    at = page_app("app.py")
    assert_ok(at)
    body = texts(at)
    for q in ("How does an autoencoder work?", "Why the reparameterization trick?", "What does the KL term do"):
        assert q in body
    # The shared sidebar is there, with the dataset and the seed.
    assert at.sidebar.selectbox(key="_w_dataset").value == "mnist-5k"
    assert at.sidebar.number_input(key="_w_seed").value == 0


def test_global_settings_come_from_the_url_and_bad_values_are_refused():
    at = page_app("app.py", query={"dataset": "digits", "seed": "7"})
    assert_ok(at)
    assert at.session_state["g_dataset"] == "digits"
    assert at.session_state["g_seed"] == 7
    at = page_app("app.py", query={"dataset": "<script>alert(1)</script>", "seed": "abc"})
    assert_ok(at)
    err = " ".join(e.value for e in at.error)
    assert "dataset" in err and "seed" in err and "<script>" not in err
    assert at.session_state["g_dataset"] == "mnist-5k" and at.session_state["g_seed"] == 0


def test_presenter_mode_from_url():
    at = page_app("app.py", query={"present": "1"})
    assert_ok(at)
    assert at.session_state["g_present"] is True


def test_parse_param_rejects_bad_values():
    from core.ui import parse_param
    assert parse_param("mu", "1.5", "float", 0.0, -5, 5) == (1.5, None)
    for raw in ("nan", "inf", "x", "9", "1" * 100):
        v, err = parse_param("mu", raw, "float", 0.0, -5, 5)
        assert v == 0.0 and err and "mu" in err
    v, err = parse_param("kind", "gan", "str", "vae", choices=["ae", "vae"])
    assert v == "vae" and "not one of" in err


def test_settings_file_validation():
    from core.ui import parse_settings
    assert parse_settings(json.dumps({"dataset": "digits", "seed": 3}).encode()) == {"dataset": "digits", "seed": "3"}
    for bad in (b"", b"{not json", b"[1,2]", json.dumps({"a": {"b": 1}}).encode(), b"x" * 30_000, b"\xff\xfe"):
        with pytest.raises(ValueError):
            parse_settings(bad)


def test_settings_files_never_carry_the_private_run_links():
    """A settings file is made to be shared; the training page's runs= link controls a student's runs."""
    from core.ui.url import parse_settings, shareable
    view = {"dataset": "digits", "runs": "A" * 32, "view": "B" * 32, "tr_beta": "2.0"}
    assert shareable(view) == {"dataset": "digits", "tr_beta": "2.0"}
    assert parse_settings(json.dumps(view).encode()) == {"dataset": "digits", "tr_beta": "2.0"}


def test_quote_user_never_yields_html():
    from core.ui import quote_user
    q = quote_user("<img src=x onerror=alert(1)>`rm`")
    assert "<" not in q and ">" not in q and q.count("`") == 2


@pytest.mark.browser
def test_home_page_in_browser_and_in_presenter_mode(watched_page, server_url):
    """The home page as a student opens it (its screenshot), then in presenter mode: larger body text,
    a compact title (one page load serves both: the normal sizes are the reference)."""
    page = watched_page
    size = "e => parseFloat(getComputedStyle(e).fontSize)"
    body = '[data-testid="stMain"] [data-testid="stMarkdownContainer"] p'
    page.goto(server_url)
    wait_drawn(page)
    assert_no_exception_box(page)
    assert page.get_by_text("How does an autoencoder work?").first.is_visible()
    screenshot(page, "home")
    normal = page.locator(body).first.evaluate(size)
    normal_title = page.locator("h1").first.evaluate(size)
    page.goto(server_url + "/?present=1")
    wait_drawn(page)
    assert_no_exception_box(page)
    assert page.locator(body).first.evaluate(size) >= max(20, 1.2 * normal)  # enlarged for the back of the room
    assert page.locator("h1").first.evaluate(size) < normal_title  # the frame is compact: the title is small
    page.set_viewport_size({"width": 1280, "height": 720})
    wait_laid_out(page)
    screenshot(page, "home-present")


# The computed font size (px) of each kind of widget text in the autoencoder page's "Model and input": the value
# of the number input and of the select (a combobox input), the radio options' labels, the scene bar's buttons.
_WIDGET_PX_JS = """() => {
  const px = (e) => e ? parseFloat(getComputedStyle(e).fontSize) : null;
  const main = document.querySelector('[data-testid="stMain"]');
  return {
    number: px(main.querySelector('.st-key-ae_example [data-testid="stNumberInput"] input')),
    select: px(main.querySelector('.st-key-ae_latent [data-testid="stSelectbox"] input')),
    radio: Math.min(...[...main.querySelectorAll('.st-key-ae_kind [data-testid="stRadio"] label p')].map(px)),
    button: Math.min(...[...main.querySelectorAll('button p')].filter(e => e.textContent.trim()).map(px)),
  };
}"""


@pytest.mark.browser
def test_widget_values_are_readable_in_presenter_mode(watched_page, server_url):
    """Issue 21 (body text at least 20 px at 1280x720): in presenter mode a number input's value, a select's
    value, radio labels and button labels are at least 20 px, as the body text is; on the normal page they are
    Streamlit's smaller default (so it is the presenter styling that enlarges them)."""
    page = watched_page
    page.set_viewport_size({"width": 1280, "height": 720})
    sizes = {}
    for mode, query in (("normal", ""), ("present", "&present=1")):
        page.goto(f"{server_url}/autoencoder?dataset=digits{query}")
        wait_drawn(page)
        assert_no_exception_box(page)
        if mode == "present":  # the configuration is tucked into a collapsed expander there
            page.get_by_text("Model and input").first.click()
        page.locator('.st-key-ae_example input').first.wait_for(state="visible")
        page.locator('.st-key-ae_latent input').first.wait_for(state="visible")
        sizes[mode] = page.evaluate(_WIDGET_PX_JS)
    print(sizes)
    assert all(v is not None and v >= 20 for v in sizes["present"].values()), sizes
    assert sizes["normal"]["number"] < 20 and sizes["normal"]["select"] < 20, sizes


def test_a_pasted_link_wins_over_session_state_and_kept_values_are_revalidated():
    from streamlit.testing.v1 import AppTest
    script = (
        "import streamlit as st\n"
        "from core import ui\n"
        "ui.sidebar()\n"
        "v = ui.slider('mu', 'x_mu', -5.0, 5.0, 0.0)\n"
        "st.session_state['seen'] = v\n")
    at = AppTest.from_string(script, default_timeout=30)
    at.run()
    at.slider(key="x_mu").set_value(2.0).run()
    assert at.session_state["seen"] == 2.0 and at.query_params["x_mu"] == "2.0"
    at.query_params["x_mu"] = "-3.5"  # the user pastes another link into the same session
    at.run()
    assert at.session_state["seen"] == -3.5
    at.query_params["seed"] = "42"
    at.run()
    assert at.session_state["g_seed"] == 42
    # a kept value outside a (new) range falls back to the default instead of crashing the widget
    from core.ui import _valid
    assert not _valid(9.0, -5.0, 5.0) and _valid(1.0, -5.0, 5.0) and not _valid("a", -5.0, 5.0)


def test_a_stale_url_echo_does_not_undo_a_slider_move():
    """Two quick slider moves: the second move's rerun request carries the browser's URL from before
    the first run's URL update arrived. That old value is not a pasted link and must not reset the
    slider (seen on the latent page in Chromium: the slider jumped back to where it started)."""
    from streamlit.testing.v1 import AppTest
    script = (
        "import streamlit as st\n"
        "from core import ui\n"
        "ui.sidebar()\n"
        "v = ui.slider('mu', 'x_mu', -5.0, 5.0, 0.0)\n"
        "st.session_state['seen'] = v\n")
    at = AppTest.from_string(script, default_timeout=30)
    at.query_params["x_mu"] = "0.0"
    at.run()
    at.slider(key="x_mu").set_value(0.5).run()
    assert at.query_params["x_mu"] == "0.5"
    at.query_params["x_mu"] = "0.0"  # the browser has not yet received the 0.5 update
    at.slider(key="x_mu").set_value(1.0).run()
    assert at.session_state["seen"] == 1.0 and at.query_params["x_mu"] == "1.0"
    at.query_params["x_mu"] = "0.5"  # an even later echo, of an earlier value this session wrote
    at.slider(key="x_mu").set_value(1.5).run()
    assert at.session_state["seen"] == 1.5
    at.query_params["x_mu"] = "-2.0"  # but a value the session never wrote is a pasted link: it wins
    at.run()
    assert at.session_state["seen"] == -2.0


def test_page_file_names_match_their_url_paths():
    """Before app.py has run once, a fresh server resolves a deep link (/kl) from the pages/ file
    names; a mismatch shows students a "Page not found" dialog on a shared link."""
    import re

    from app import LESSONS
    for path, _, _, slug, _ in LESSONS:
        assert re.sub(r"^\d+_", "", path.split("/")[-1][:-3]) == slug, path


@pytest.mark.browser
def test_first_visit_on_a_fresh_server_by_deep_link_gets_the_app_navigation(browser):
    """A student's shared link is often the very first request a fresh server sees. It must show the
    lesson titles from app.py's navigation, not Streamlit's old pages/ file names ("app", "kl"). The link is
    to the training page, the cheapest to draw before a run starts (the reparameterization page, used
    before, also starts a background training job that the server's shutdown then waits for)."""
    from playwright.sync_api import expect

    from tests.conftest import ConsoleWatch, start_server, stop_server

    proc, url = start_server()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        watch = ConsoleWatch(page)
        page.goto(url + "/train?dataset=digits&tr_latent=4")
        wait_drawn(page)
        nav = page.locator('[data-testid="stSidebarNav"]')
        expect(nav.get_by_role("link", name="Home")).to_have_count(1)
        expect(nav.get_by_role("link", name="KL divergence")).to_have_count(1)
        expect(nav.get_by_role("link", name="app", exact=True)).to_have_count(0)
        expect(page.locator("h1").first).to_contain_text("Train a VAE live")
        assert "tr_latent=4" in page.url  # the link's parameters survived the switch
        assert_no_exception_box(page)
        watch.check()
        page.close()
    finally:
        stop_server(proc)


def test_answers_page_is_last_in_lesson_order_and_linked_from_home():
    from app import LESSONS
    path, title, icon, slug, _ = LESSONS[-1]
    assert (path, title, icon, slug) == ("pages/7_answers.py", "Model answers", "📝", "answers")
    at = page_app("app.py")
    assert_ok(at)
    links = [link.proto.page for link in at.get("page_link")]
    assert any(p.endswith("7_answers.py") or p == "answers" for p in links), links


def test_home_q3_blurb_gives_the_kl_mechanism():
    body = texts(page_app("app.py"))
    assert "smooth enough to sample from" not in body  # an outcome without a mechanism
    assert "−log σ² part keeps the encoder's noise on" in body and "μ² part keeps codes where" in body


@pytest.mark.parametrize("path", ["app.py"] + sorted(f"pages/{p.name}" for p in (ROOT / "pages").glob("*.py")))
def test_every_page_has_the_glossary_in_its_sidebar(path):
    from core.answers import GLOSSARY
    at = page_app(path, query={"dataset": "digits"})
    assert_ok(at)
    expanders = [e for e in at.sidebar.expander if e.label == "📖 Glossary"]
    assert len(expanders) == 1, [e.label for e in at.sidebar.expander]
    inside = " ".join(m.value for m in expanders[0].markdown)
    for dl, prob, _ in GLOSSARY:
        assert f"**{dl}** = {prob}" in inside


SELF_CHECK_APP = """
import streamlit as st
from core import ui
ctx = ui.page("Scenes", "🧪")
scene = ui.scenes("sc", [("First", "one"), ("Second", "two")])
show = ui.scene_filter(scene)
for i in range(2):
    if show(i):
        st.markdown(f"section {i}")
ui.self_check("sc", [("What is 1 + 1?", "2")])
"""


@pytest.mark.parametrize("present", [False, True])
def test_self_checks_stay_out_of_presenter_scenes(present):
    """Issue 21: in presenter mode a page shows one scene that fits the screen; the self-check questions
    must not appear inside or below it. Outside presenter mode they end every page."""
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_string(SELF_CHECK_APP, default_timeout=30)
    if present:
        at.query_params["present"] = "1"
    at.run()
    assert_ok(at)
    body = texts(at)
    assert ("Check yourself" in body) is not present
    assert ("What is 1 + 1?" in body) is not present
    assert "section 0" in body and ("section 1" in body) is not present  # one scene at a time
    if present:
        at.button(key="_scene_sc_next").click().run()
        body = texts(at)
        assert "section 1" in body and "section 0" not in body and "Check yourself" not in body


def test_clamp_state_keeps_a_bound_value_and_its_kept_value_in_range():
    from streamlit.testing.v1 import AppTest
    from core.ui import clamp
    assert clamp(12, 0, 9) == 9 and clamp(-3, 0, 9) == 0 and clamp(4.5, 0, 9) == 4 and clamp(0.2, 0.5, 2.0) == 0.5
    script = (
        "import streamlit as st\n"
        "from core import ui\n"
        "st.session_state.setdefault('x_n', 40)\n"
        "st.session_state.setdefault('_keep_x_n', -2)\n"
        "st.session_state.setdefault('x_flag', True)\n"
        "ui.clamp_state('x_n', 0, 9)\n"
        "ui.clamp_state('x_flag', 0, 0)\n")
    at = AppTest.from_string(script, default_timeout=30).run()
    assert_ok(at)
    assert at.session_state["x_n"] == 9 and at.session_state["_keep_x_n"] == 0
    assert at.session_state["x_flag"] is True  # not a number widget: left alone


def test_a_page_run_without_the_app_script_is_recognised():
    """core.ui.frame: a request in which app.py is not running (Streamlit's old pages/ mode on a fresh
    server) is told apart from a normal run by the script being executed in this thread."""
    from core.ui import frame
    assert not frame._running_script(frame.APP_SCRIPT)
    code = compile("from core.ui import frame\nresult = frame._running_script(frame.APP_SCRIPT)", frame.APP_SCRIPT,
                   "exec")
    scope: dict = {}
    exec(code, scope)
    assert scope["result"] is True
