"""The training page's runs that come back (issue 23): AppTest opens the page again in a new session
with the same URL and gets the run back; the view link shows it read-only; bad, unknown and
malformed links get a clear message; a damaged run file is named while the others load. The browser
test reloads the real page in Chromium."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from core import persist as P
from core import runs as R
from tests.apptest_utils import assert_ok, page_app, texts
from tests.conftest import assert_no_exception_box, screenshot, wait_drawn

PAGE = os.environ.get("LATENT_LAB_TRAIN_PAGE", "pages/4_train.py")
FAST = {"dataset": "digits", "tr_hidden": "32,16", "tr_latent": "4", "tr_bs": "128", "tr_epochs": "3"}
CONTROL_KEYS = ("tr_start", "tr_sweep", "tr_pause", "tr_resume", "tr_stop", "tr_reset", "tr_continue", "tr_delete")


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    d = tmp_path / "runs"
    monkeypatch.setenv(P.RUN_DIR_ENV, str(d))
    return d


@pytest.fixture
def apps():
    made = []
    yield made
    for at in made:
        for key in ("tr_runs", "tr_view"):
            try:
                at.session_state[key].shutdown()
            except Exception:
                pass


def open_page(apps, query):
    at = page_app(PAGE, query=query)
    apps.append(at)
    assert_ok(at)
    return at


def shown(at) -> str:
    """The page's texts and its progress line."""
    return texts(at) + "\n" + "\n".join(p.proto.text for p in at.get("progress"))


def buttons(at) -> set[str]:
    return {b.key for b in at.button}


def start_and_train(at, steps: int, timeout: float = 60.0):
    """Press Start and redraw the page until its run has trained ``steps`` steps (or ``timeout``
    seconds passed); returns the session's run store."""
    at.button(key="tr_start").click().run()
    store = at.session_state["tr_runs"]
    t0 = time.monotonic()
    while store.active.step < steps and time.monotonic() - t0 < timeout:
        time.sleep(0.3)
        at.run()
    return store


def trained_run(apps, run_dir):
    """A session that trained a run to its end; returns (app, owner id, run name, step)."""
    at = open_page(apps, FAST)
    owner = at.session_state["tr_owner"]
    assert P.valid_id(owner) and (run_dir / owner).is_dir()  # the link exists from the first visit
    assert at.query_params["runs"] == [owner] or at.query_params["runs"] == owner
    at.button(key="tr_start").click().run()
    assert_ok(at)
    store = at.session_state["tr_runs"]
    t0 = time.monotonic()
    while store.active.state == "training" and time.monotonic() - t0 < 90:
        time.sleep(0.3)
        at.run()
    assert store.active.state == "done"
    assert store.saver.flush()
    return at, owner, store.active.name, store.active.step


def test_a_run_comes_back_in_a_new_session_with_the_same_link(apps, run_dir):
    at, owner, name, step = trained_run(apps, run_dir)
    again = open_page(apps, {**FAST, "runs": owner})  # a reload: a new session, the same URL
    store = again.session_state["tr_runs"]
    assert again.session_state["tr_owner"] == owner and list(store.runs) == [name]
    assert store.runs[name].step == step and store.runs[name].state == "done"
    assert [f"**{name}**" in p.proto.text and "finished" in p.proto.text for p in again.get("progress")] == [True]
    assert "Finished" in texts(again)  # the live view shows it as it ended
    assert "tr_start" in buttons(again)
    assert not again.error


def test_a_paused_run_comes_back_paused_and_resumes(apps, run_dir):
    at = open_page(apps, {**FAST, "tr_epochs": "200"})
    owner = at.session_state["tr_owner"]
    store = start_and_train(at, 30)
    at.button(key="tr_pause").click().run()
    assert store.saver.flush()
    step = store.active.step
    again = open_page(apps, {**FAST, "runs": owner})
    back = again.session_state["tr_runs"]
    assert back.active.state == "paused" and back.active.step == step
    assert "tr_resume" in buttons(again)
    again.button(key="tr_resume").click().run()
    t0 = time.monotonic()
    while back.active.step <= step and time.monotonic() - t0 < 60:
        time.sleep(0.3)
        again.run()
    assert back.active.step > step
    back.stop()


def test_the_view_link_is_read_only_and_says_so(apps, run_dir):
    at, owner, name, step = trained_run(apps, run_dir)
    view = open_page(apps, {"dataset": "digits", "view": P.view_id(owner)})
    assert "tr_view" in view.session_state and view.session_state["tr_view"].read_only
    assert list(view.session_state["tr_view"].runs) == [name]
    body = shown(view)
    assert "Read-only view" in body and f"**{name}**" in body
    assert not set(CONTROL_KEYS) & buttons(view)  # no start, stop, reset, continue or delete
    assert view.select_slider(key="tr_beta").disabled
    assert not [e for e in view.get("file_uploader") if e.proto.label.startswith("A .pt file")]
    assert [b for b in view.get("download_button") if "Checkpoint" in b.proto.label]  # downloads stay
    assert "tr_owner" not in view.session_state or view.session_state["tr_owner"] != owner
    assert owner not in body  # the owner's own link is never shown to a viewer


@pytest.mark.parametrize("query,level,words", [
    ({"runs": "../../../../etc/passwd"}, "error", "not a valid run link"),
    ({"runs": "abc"}, "error", "3 characters, not 32"),
    ({"runs": "A" * 31 + "!"}, "error", "characters other than"),
    ({"runs": "Q" * 32}, "info", "No runs are saved under this link"),
    ({"view": "../" * 11}, "error", "`view=` value is not a valid run link"),
    ({"view": "Q" * 32}, "info", "No runs are saved under this view link"),
])
def test_bad_and_unknown_links_get_a_clear_message(apps, run_dir, query, level, words):
    at = open_page(apps, {"dataset": "digits", **query})
    shown = [str(e.value) for e in at.get(level)]
    assert any(words in s for s in shown), shown
    owner = at.session_state["tr_owner"]
    assert P.valid_id(owner) and owner not in query.values()  # a fresh link of the session's own
    assert sorted(p.name for p in run_dir.iterdir()) == [owner]  # nothing made from the bad value
    assert "tr_start" in buttons(at)


def test_a_damaged_run_is_named_and_the_others_come_back(apps, run_dir):
    at, owner, name, step = trained_run(apps, run_dir)
    at.button(key="tr_start").click().run()  # a second run
    store = at.session_state["tr_runs"]
    store.stop()
    assert store.saver.flush()
    folder = run_dir / owner / P.slug(name)
    data = (folder / "run.pt").read_bytes()
    (folder / "run.pt").write_bytes(data[:1000])
    again = open_page(apps, {**FAST, "runs": owner})
    errors = [str(e.value) for e in again.error]
    assert any(f"`{folder.name}`" in e and "checksum" in e for e in errors), errors
    assert list(again.session_state["tr_runs"].runs) == [store.active.name]


def test_delete_removes_the_saved_run_and_the_links_box_shows_both_links(apps, run_dir):
    at, owner, name, step = trained_run(apps, run_dir)
    folder = run_dir / owner / P.slug(name)
    assert (folder / "run.json").exists()
    codes = [c.value for c in at.code]
    assert any(c.endswith(f"?runs={owner}") for c in codes) and any(c.endswith(f"?view={P.view_id(owner)}") for c in codes)
    assert "Keep this link to yourself" in texts(at)
    at.button(key="tr_delete").click().run()
    assert_ok(at)
    store = at.session_state["tr_runs"]
    assert store.runs == {} and store.saver.flush()
    assert not folder.exists()
    again = open_page(apps, {**FAST, "runs": owner})
    assert again.session_state["tr_runs"].runs == {} and not again.error


def test_a_full_disk_is_said_on_the_page_and_training_goes_on(apps, run_dir, monkeypatch):
    import errno

    def full(f, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(P, "_write_bytes", full)
    at = open_page(apps, {**FAST, "tr_epochs": "200"})
    at.button(key="tr_start").click().run()
    store = at.session_state["tr_runs"]
    assert store.saver.flush()
    t0 = time.monotonic()
    seen = ""
    while "disk is full" not in seen and time.monotonic() - t0 < 30:
        time.sleep(0.3)
        at.run()
        seen += "\n".join(str(w.value) for w in at.warning)
    assert "Your runs are no longer saved: the server's disk is full. Training goes on" in seen
    step = store.active.step
    t0 = time.monotonic()
    while store.active.step <= step + 10 and time.monotonic() - t0 < 30:
        time.sleep(0.3)
        at.run()
    assert store.active.state == "training" and store.active.step > step + 10  # training went on
    assert any("no longer saved" in str(w.value) for w in at.warning)  # and the page keeps saying so
    store.stop()


def test_a_second_tab_with_the_same_link_looks_while_the_first_trains_then_takes_over(apps, run_dir):
    """Two tabs, one link: the tab that trains keeps its controls; the other shows the run as last saved,
    read-only, saying why; once the first lets go (here: it pauses), the second takes the run over at its
    next redraw, and the first, when used again, takes it back with what the second saved."""
    at = open_page(apps, {**FAST, "tr_epochs": "200"})
    owner = at.session_state["tr_owner"]
    store = start_and_train(at, 30)
    assert store.saver.flush()
    other = open_page(apps, {**FAST, "runs": owner})  # the same link in a second tab
    back = other.session_state["tr_runs"]
    assert back.follower and back.read_only and list(back.runs) == [store.active.name]
    assert any("being trained in another tab or window" in str(w.value) for w in other.warning)
    assert not set(CONTROL_KEYS) & buttons(other)  # nothing to press that would fight the first tab
    assert other.select_slider(key="tr_beta").disabled
    other.run()
    assert back.follower and any("another tab" in str(w.value) for w in other.warning)  # said on every redraw
    at.run()
    assert "tr_pause" in buttons(at) and store.active.state == "training" and not store.lease_lost
    at.button(key="tr_pause").click().run()
    assert store.saver.flush()
    step = store.active.step
    other.run()  # the first tab is idle now: the second takes the run over, as saved at the pause
    assert not back.follower and back.active.step == step and back.active.state == "paused"
    assert "tr_resume" in buttons(other) and not any("another tab" in str(w.value) for w in other.warning)
    other.button(key="tr_resume").click().run()
    t0 = time.monotonic()
    while back.active.step < step + 20 and time.monotonic() - t0 < 60:
        time.sleep(0.3)
        other.run()
    other.button(key="tr_pause").click().run()
    assert back.saver.flush()
    later = back.active.step
    at.run()  # the first tab's next redraw: it reloads what the second saved (and, both idle, takes it back)
    assert not store.follower and store.active.step == later and store.active is not back.active
    assert "tr_resume" in buttons(at)
    back.shutdown()


def test_a_beta_sweep_comes_back_with_its_queue_and_goes_on(apps, run_dir):
    at = open_page(apps, FAST)
    owner = at.session_state["tr_owner"]
    at.button(key="tr_sweep").click().run()
    store = at.session_state["tr_runs"]
    assert len(store.queue) == 3
    at.button(key="tr_pause").click().run()
    # (the queue as paused: on a loaded machine the first of these short runs can end, and the sweep move on,
    # before the pause lands)
    queued, betas = [n for n, *_ in store.queue], [tc.beta for _, _, tc, _ in store.queue]
    assert 1 <= len(queued) <= 3 and betas == [0.5, 1.0, 4.0][3 - len(queued):]
    assert store.saver.flush()
    again = open_page(apps, {**FAST, "runs": owner})  # a reload
    back = again.session_state["tr_runs"]
    assert [n for n, *_ in back.queue] == queued and back.active.sweep
    assert (f"β sweep: {len(queued)} more run(s) queued: " + ", ".join(f"β={b:g}" for b in betas)) in texts(again)
    again.button(key="tr_resume").click().run()
    t0 = time.monotonic()
    while back.active.name != queued[0] and time.monotonic() - t0 < 90:
        time.sleep(0.3)
        again.run()
    assert back.active.name == queued[0] and [n for n, *_ in back.queue] == queued[1:]  # the sweep went on
    back.stop()


# ---- the real page in Chromium ----------------------------------------------------------------

def saved_while_training(owner: str, timeout: float = 60.0) -> int:
    """Wait until one of ``owner``'s runs has been saved (its run.json) at a step past 0 while it was
    training, in the run dir of the suite's server (conftest sets it for the whole session); returns
    that step."""
    root = P.owner_dir(owner, Path(os.environ[P.RUN_DIR_ENV]))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for f in root.rglob(P.JSON):
            try:
                meta = json.loads(f.read_bytes())
            except (OSError, ValueError):
                continue  # being replaced
            if meta.get("state") == "training" and meta.get("step", 0) > 0:
                return meta["step"]
        time.sleep(0.2)
    raise AssertionError(f"no save of a training run of {owner} within {timeout:.0f} s")


@pytest.mark.browser
def test_reload_brings_the_run_back_in_the_browser(watched_page, server_url):
    """Start a run, reload the page (a new session, the same URL): the run is back, paused at its last
    save, and resumes. The view link shows it without any run button. No Vega "Infinite extent"
    warning on any of these full loads (issue 21: the charts' rows go in as a named dataset)."""
    page = watched_page
    vega_warnings = []
    page.on("console", lambda m: vega_warnings.append(m.text) if "Infinite extent" in m.text else None)
    url = server_url  # the suite's server: each visit gets its own runs= link, so no other test's runs show
    page.goto(url)  # the home page first: a fresh server's first deep link shows "Page not found"
    wait_drawn(page)
    t0 = time.monotonic()
    page.goto(f"{url}/train?dataset=digits&tr_hidden=32,16&tr_latent=4&tr_epochs=200")
    wait_drawn(page)
    open_s = time.monotonic() - t0
    assert "runs=" in page.url  # the link exists from the first visit
    page.get_by_role("button", name="▶️ Start training").click()
    page.wait_for_selector('[data-testid="stProgress"]:has-text("training")')
    page.wait_for_function("() => document.querySelectorAll('[data-testid=stVegaLiteChart]').length >= 2")
    saved_while_training(page.url.split("runs=")[1].split("&")[0])  # at least one save while it trains
    t0 = time.monotonic()
    page.reload()
    page.get_by_role("button", name="▶️ Resume").wait_for(timeout=60_000)
    back_s = time.monotonic() - t0
    wait_drawn(page)
    progress = page.locator('[data-testid="stProgress"]').first.inner_text()
    assert "#1 VAE z=4" in progress and "paused" in progress
    step = int(progress.split("step ")[1].split("/")[0])
    assert step > 0
    page.wait_for_function("() => document.querySelectorAll('[data-testid=stVegaLiteChart]').length >= 2")
    page.get_by_role("button", name="▶️ Resume").click()
    page.wait_for_selector('[data-testid="stProgress"]:has-text("training")')
    page.get_by_role("button", name="⏹️ Stop").click()
    page.wait_for_selector('[data-testid="stProgress"]:has-text("stopped early")')
    assert_no_exception_box(page)
    owner = page.url.split("runs=")[1].split("&")[0]
    view = page.context.new_page()
    view.on("console", lambda m: vega_warnings.append(m.text) if "Infinite extent" in m.text else None)
    view.goto(f"{url}/train?dataset=digits&view={P.view_id(owner)}")
    wait_drawn(view)
    view.get_by_text("Read-only view").first.wait_for()
    assert "#1 VAE z=4" in view.locator('[data-testid="stProgress"]').first.inner_text()
    assert page.get_by_role("button", name="🔄 Reset", exact=True).count() == 1  # the owner's page has it
    for label in ("▶️ Resume", "⏸️ Pause", "⏹️ Stop", "🔄 Reset", "▶️ Start training", "🧪 β sweep: 0, 0.5, 1, 4",
                  "🗑️ Delete", "⏩ Continue training it"):
        assert view.get_by_role("button", name=label, exact=True).count() == 0, label
    beta = '[data-testid="stSlider"] input[type=range]'
    assert page.locator(beta).first.is_enabled() and view.locator(beta).first.is_disabled()
    assert owner not in view.inner_text("body")
    assert_no_exception_box(view)
    view.mouse.move(0, 0)
    screenshot(view, "train-view")  # the read-only view of a shared link
    view.close()
    assert not vega_warnings, vega_warnings[:3]
    print(f"\nfirst open of /train {open_s:.1f} s; reload until the run's Resume button shows {back_s:.1f} s")


@pytest.mark.browser
def test_a_second_tab_in_the_browser_looks_then_takes_over_when_the_first_closes(watched_page, server_url, tmp_path_factory):
    """The same runs= link in a second tab while the first trains: the second shows the run with the
    notice and no run button; the first keeps training. Close the first: the second takes the run over
    by itself (its live view checks the lease), paused at its last save, and resumes it."""
    page = watched_page
    shots = tmp_path_factory.mktemp("shots")
    url = server_url  # the suite's server: each visit gets its own runs= link, so no other test's runs show
    page.goto(url)
    wait_drawn(page)
    page.goto(f"{url}/train?dataset=digits&tr_hidden=32,16&tr_latent=4&tr_epochs=200")
    wait_drawn(page)
    page.get_by_role("button", name="▶️ Start training").click()
    page.wait_for_selector('[data-testid="stProgress"]:has-text("training")')
    other = page.context.new_page()
    other.set_default_timeout(60_000)
    other.goto(page.url)  # the same link, in a second tab
    wait_drawn(other)
    other.get_by_text("being trained in another tab or window").first.wait_for()
    assert "#1 VAE z=4" in other.locator('[data-testid="stProgress"]').first.inner_text()
    for label in ("▶️ Resume", "⏸️ Pause", "⏹️ Stop", "🔄 Reset", "▶️ Start training", "🧪 β sweep: 0, 0.5, 1, 4"):
        assert other.get_by_role("button", name=label, exact=True).count() == 0, label
    assert_no_exception_box(other)
    other.screenshot(path=str(shots / "follower.png"), full_page=True)
    page.wait_for_selector('[data-testid="stProgress"]:has-text("training")')  # the first trains on
    assert page.get_by_role("button", name="⏸️ Pause", exact=True).count() == 1
    page.close()  # its run stops 3 s later; its lease runs out 8 s after its last redraw
    t0 = time.monotonic()
    other.get_by_role("button", name="▶️ Resume").wait_for(timeout=60_000)
    took = time.monotonic() - t0
    wait_drawn(other)
    assert "paused" in other.locator('[data-testid="stProgress"]').first.inner_text()
    assert other.get_by_text("being trained in another tab or window").count() == 0
    other.get_by_role("button", name="▶️ Resume").click()
    other.wait_for_selector('[data-testid="stProgress"]:has-text("training")')
    assert_no_exception_box(other)
    other.screenshot(path=str(shots / "taken-over.png"), full_page=True)
    print(f"\nthe second tab took the run over {took:.1f} s after the first closed; screenshots in {shots}")
