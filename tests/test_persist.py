"""core.persist and RunStore persistence: runs saved as they train come back exactly (and train on
exactly as the uninterrupted run), a save killed at any moment leaves the previous one loadable, damaged
or hostile files are refused by name while the others load, a full disk stops saving (not training),
the disk caps evict the oldest finished runs with a notice, and link ids are checked strictly."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core import persist as P
from core import runs as R
from core.data import load_dataset
from core.training import Trainer

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def small(ds, epochs=3, beta=1.0, seed=0, latent=2):
    return R.make_configs(ds, "vae", latent, (32,), "bernoulli", 1e-2, 16, epochs, seed, beta)


@pytest.fixture
def root(tmp_path, monkeypatch):
    d = tmp_path / "runs"
    monkeypatch.setenv(P.RUN_DIR_ENV, str(d))
    return d


def new_store(owner, root, **kw):
    s = R.RunStore(saver=P.Saver(idle_s=0.2), **kw)
    errors = s.attach(owner, root)
    return s, errors


def trained(store, ds, steps, name=None, beta=1.0, finish=False):
    """A run trained ``steps`` steps synchronously (deterministic), then saved."""
    mc, tc = small(ds, beta=beta)
    run = store.create(mc, tc, ds, name=name, start=False)
    run.trainer.run_steps(steps)
    if finish:
        store.stop()
    store.save(run)
    assert store.saver.flush()
    return run


# ---- ids and links ----------------------------------------------------------------------------

def test_ids_are_192_random_bits_and_view_ids_hide_the_owner(root):
    a, b = P.new_owner_id(), P.new_owner_id()
    assert a != b and len(a) == 32 and P.valid_id(a)
    v = P.view_id(a)
    assert P.valid_id(v) and v != a and v == P.view_id(a)
    import base64
    assert v == base64.urlsafe_b64encode(hashlib.sha256(b"latent-lab-view:" + a.encode()).digest()).decode()[:32]
    P.register_owner(a, root)
    P.register_owner(b, root)
    assert P.find_owner(v, root) == a
    assert P.find_owner(P.view_id(P.new_owner_id()), root) is None  # well-formed, unknown


@pytest.mark.parametrize("bad", ["abc", "../" * 10 + "etc", "A" * 31 + "/", "A" * 33, "", "A" * 31 + ".",
                                 "..%2F" * 6 + "xx", "A" * 31 + "\n"])
def test_malformed_ids_are_refused_before_touching_the_disk(bad, root):
    with pytest.raises(P.PersistError, match="not a valid run link"):
        P.check_id(bad)
    with pytest.raises(P.PersistError):
        P.owner_dir(bad, root)
    with pytest.raises(P.PersistError):
        P.find_owner(bad, root)
    assert not root.exists()  # nothing was created


def test_default_run_dir_follows_the_cache_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(P.RUN_DIR_ENV, raising=False)
    monkeypatch.setenv("LATENT_LAB_CACHE", str(tmp_path))
    assert P.run_dir() == tmp_path / "runs"
    monkeypatch.setenv(P.RUN_DIR_ENV, str(tmp_path / "x"))
    assert P.run_dir() == tmp_path / "x"


# ---- round trip -------------------------------------------------------------------------------

def test_round_trip_gives_the_same_run_and_the_same_next_losses(digits, root):
    owner = P.new_owner_id()
    store, errors = new_store(owner, root)
    assert errors == []
    run = trained(store, digits, 150)  # mid-epoch (epoch = 102 steps), after evaluations and snapshots
    run.trainer.set_beta(2.0)
    run.trainer.run_steps(7)
    store.pause()  # saves
    assert store.saver.flush()
    files = sorted(p.name for p in (root / owner).rglob("*") if p.is_file())
    assert files == ["lease.json", "owner.json", "run.json", "run.pt"]

    back, errors = new_store(owner, root)
    assert errors == [] and list(back.runs) == [run.name] and back.active_name == run.name
    b = back.runs[run.name]
    assert b.state == "paused" and b.step == run.step == 157
    t0, t1 = run.trainer, b.trainer
    for k, v in t0.model.state_dict().items():
        assert torch.equal(v, t1.model.state_dict()[k])
    s0, s1 = t0.opt.state_dict(), t1.opt.state_dict()
    assert s0["param_groups"] == s1["param_groups"]
    for i, st in s0["state"].items():
        for k, v in st.items():
            assert torch.equal(v, s1["state"][i][k])
    assert t1.history == t0.history and t1.eval_history == t0.eval_history
    assert t1.beta_changes == t0.beta_changes == [(0, 1.0), (150, 2.0)] and t1.beta == 2.0
    assert [s["step"] for s in t1.snapshots] == [s["step"] for s in t0.snapshots]
    for s0_, s1_ in zip(t0.snapshots, t1.snapshots):
        assert np.array_equal(s0_["latents"], s1_["latents"]) and np.array_equal(s0_["recon"], s1_["recon"])
    assert t1.train_seconds == pytest.approx(t0.train_seconds)

    # The same seeded run, never interrupted: the restored run continues it exactly.
    mc, tc = small(digits)
    ref = Trainer(mc, tc, digits)
    ref.run_steps(150)
    ref.set_beta(2.0)
    ref.run_steps(7 + 60)
    t1.run_steps(60)
    assert [h["loss"] for h in t1.history] == [h["loss"] for h in ref.history]
    assert [e["loss"] for e in t1.eval_history] == [e["loss"] for e in ref.eval_history]
    store.shutdown()
    back.shutdown()


def test_finished_runs_and_checkpoints_come_back_as_they_were(digits, root):
    owner = P.new_owner_id()
    store, _ = new_store(owner, root)
    run = trained(store, digits, 40, finish=True)
    assert run.state == "stopped" and run.final is not None
    from core.checkpoints import load_checkpoint
    import io
    ck = store.add_checkpoint(load_checkpoint(io.BytesIO(R.checkpoint_file(run))), digits, "mine.pt")
    assert store.saver.flush()
    back, errors = new_store(owner, root)
    assert errors == []
    b = back.runs[run.name]
    assert b.state == "stopped" and b.final == run.final and b.message == run.message
    assert b.snapshots and b.history == run.history
    c = back.runs[ck.name]
    assert c.state == "loaded" and c.history == ck.history and np.array_equal(c.val_idx, ck.val_idx)
    assert c.final == ck.final
    # the counter goes on: a new run does not reuse a restored run's name or folder
    new = back.create(*small(digits), digits, start=False)
    assert new.name.startswith("#3 ")
    back.shutdown()


def test_a_training_run_saves_itself_from_the_training_thread(digits, root, monkeypatch):
    monkeypatch.setattr(P, "SAVE_INTERVAL_S", 0.3)
    owner = P.new_owner_id()
    store, _ = new_store(owner, root, lease_seconds=30.0)
    mc, tc = small(digits, epochs=200)
    run = store.create(mc, tc, digits)  # starts the background thread; no tick (no page) from here on
    folder = root / owner / P.slug(run.name)
    seen = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 20 and len(set(seen)) < 3:
        try:
            seen.append(P.read_meta(folder)["step"])
        except P.PersistError:
            pass
        time.sleep(0.1)
    store.shutdown()
    assert len(set(s for s in seen if s > 0)) >= 2, seen  # several saves while it trained, none asked by a page


# ---- faults -----------------------------------------------------------------------------------

KILL_SCRIPT = textwrap.dedent("""
    import sys, time, torch
    sys.path.insert(0, {root!r})
    from core import persist as P
    folder = P.Path(sys.argv[1])
    big = torch.randn(3_000_000)  # 12 MB: a save takes long enough to be killed inside it
    i = 0
    print("ready", flush=True)
    while True:
        i += 1
        P.write_run(folder, {{"format": P.FORMAT, "i": i, "big": big + i}}, {{"name": "k", "i": i}})
""")


def test_sigkill_in_the_middle_of_saves_leaves_the_previous_save_loadable(tmp_path):
    script = tmp_path / "saver.py"
    script.write_text(KILL_SCRIPT.format(root=str(ROOT)))
    folder = tmp_path / "run"
    rng = random.Random(0)
    last = 0
    for attempt in range(6):
        p = subprocess.Popen([sys.executable, str(script), str(folder)], stdout=subprocess.PIPE,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert p.stdout.readline().strip() == b"ready"
        time.sleep(0.3 + rng.random() * 1.2)
        p.send_signal(signal.SIGKILL)
        p.wait()
        meta = P.read_meta(folder)
        payload = P.read_payload(folder, meta)
        assert payload["i"] == meta["i"] >= 1  # the file the description names, whole
        assert torch.equal(payload["big"][:5] - payload["i"], payload["big"][:5] - payload["i"])
        last = meta["i"]
        leftovers = [f.name for f in folder.iterdir() if f.name.startswith(".")]
        for f in leftovers:  # a killed save's temporary file: harmless, and never read
            assert ".tmp-" in f
    assert last >= 1


def _fix_checksum(folder: Path) -> None:
    meta = json.loads((folder / "run.json").read_text())
    meta["sha256"] = hashlib.sha256((folder / "run.pt").read_bytes()).hexdigest()
    (folder / "run.json").write_text(json.dumps(meta))


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/latent-lab-pwned-by-test",))


def test_damaged_or_hostile_files_are_refused_by_name_and_the_others_load(digits, root, tmp_path):
    owner = P.new_owner_id()
    store, _ = new_store(owner, root)
    runs = [trained(store, digits, 10 + i, finish=True) for i in range(5)]
    folders = {r.name: root / owner / P.slug(r.name) for r in runs}
    f = [folders[r.name] for r in runs]
    data = (f[0] / "run.pt").read_bytes()
    (f[0] / "run.pt").write_bytes(data[: len(data) // 2])  # truncated
    data = bytearray((f[1] / "run.pt").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one byte altered
    (f[1] / "run.pt").write_bytes(bytes(data))
    (f[2] / "run.pt").write_text("hello, I am a text file\n" * 100)  # a text file renamed run.pt ...
    _fix_checksum(f[2])  # ... even with a matching checksum
    marker = Path("/tmp/latent-lab-pwned-by-test")
    marker.unlink(missing_ok=True)
    torch.save({"format": P.FORMAT, "run": Evil()}, f[3] / "run.pt")  # a pickle that runs code ...
    _fix_checksum(f[3])
    back, errors = new_store(owner, root)
    assert list(back.runs) == [runs[4].name]
    assert not marker.exists()
    assert len(errors) == 4
    assert f"`{f[0].name}`" in errors[0] and "checksum" in errors[0] and "other runs were restored" in errors[0]
    assert f"`{f[1].name}`" in errors[1] and "checksum" in errors[1]
    assert f"`{f[2].name}`" in errors[2] and "not a Latent Lab run file" in errors[2]
    assert f"`{f[3].name}`" in errors[3] and "possibly code" in errors[3]
    back.shutdown()


def test_shapes_that_do_not_fit_the_config_are_refused(digits, root):
    owner = P.new_owner_id()
    store, _ = new_store(owner, root)
    run = trained(store, digits, 5, finish=True)
    folder = root / owner / P.slug(run.name)
    payload = torch.load(folder / "run.pt", weights_only=True)
    payload["model_cfg"]["latent_dim"] = 3  # the weights are for 2
    torch.save(payload, folder / "run.pt")
    _fix_checksum(folder)
    back, errors = new_store(owner, root)
    assert back.runs == {} and "shape" in errors[0]


def test_a_full_disk_stops_saving_with_a_notice_and_training_goes_on(digits, root, monkeypatch):
    owner = P.new_owner_id()
    store, _ = new_store(owner, root)
    run = trained(store, digits, 5)
    before = (root / owner / P.slug(run.name) / "run.json").read_bytes()

    def full(f, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(P, "_write_bytes", full)
    run.trainer.run_steps(5)
    assert store.save(run)
    assert store.saver.flush()
    assert store.saving_off and "disk is full" in store.saving_off and "Training goes on" in store.saving_off
    assert any("disk is full" in n for n in store.pop_notices())
    assert not store.save(run)  # saving is off from now on
    assert run.trainer.run_steps(20) == 20 and run.step == 30  # training goes on
    folder = root / owner / P.slug(run.name)
    assert (folder / "run.json").read_bytes() == before  # the last good save is untouched
    assert not [p for p in folder.iterdir() if ".tmp-" in p.name]  # no temporary file left behind
    store.shutdown()


def test_per_owner_cap_evicts_the_oldest_finished_run_from_disk_too(digits, root):
    owner = P.new_owner_id()
    store = R.RunStore(max_runs=2, saver=P.Saver(idle_s=0.2))
    store.attach(owner, root)
    a = trained(store, digits, 5, finish=True)
    b = trained(store, digits, 5, finish=True)
    c = trained(store, digits, 5)
    assert store.saver.flush()
    assert list(store.runs) == [b.name, c.name]
    assert any(a.name in n for n in store.pop_notices())
    assert sorted(p.name for p in (root / owner).iterdir() if p.is_dir()) == sorted(
        P.slug(r.name) for r in (b, c))
    store.shutdown()


def test_total_cap_evicts_the_oldest_finished_run_of_any_owner_with_a_notice(digits, root, monkeypatch):
    alice, bob = P.new_owner_id(), P.new_owner_id()
    sa, _ = new_store(alice, root)
    old = trained(sa, digits, 5, finish=True)
    time.sleep(0.05)
    newer = trained(sa, digits, 5, finish=True)
    time.sleep(0.05)
    live = trained(sa, digits, 5)  # unfinished: never evicted
    one = P.folder_bytes(root / alice / P.slug(old.name))
    total = sum(P.folder_bytes(p) for p in (root / alice).iterdir() if p.is_dir())
    live_size = P.folder_bytes(root / alice / P.slug(live.name))  # bob's run will be about this size
    monkeypatch.setenv(P.MAX_MB_ENV, str((total + live_size - one * 0.5) / 2**20))  # bob's run pushes one out
    sb, _ = new_store(bob, root)
    trained(sb, digits, 5)
    assert not (root / alice / P.slug(old.name)).exists()
    assert (root / alice / P.slug(newer.name)).exists() and (root / alice / P.slug(live.name)).exists()
    back, errors = new_store(alice, root)  # alice comes back: the page says which run went
    assert errors == [] and old.name not in back.runs
    notes = back.pop_notices()
    assert any(old.name in n and "removed" in n for n in notes)
    # a session whose own saved run is evicted by its own save is told at once
    monkeypatch.setenv(P.MAX_MB_ENV, "0")
    sa.pop_notices()
    trained(sa, digits, 5)
    notes = sa.pop_notices()
    assert any(newer.name in n and "deleted" in n for n in notes), notes
    assert newer.name in sa.runs  # still here for this session
    for s in (sa, sb, back):
        s.shutdown()


def test_a_view_store_is_read_only_and_writes_nothing(digits, root):
    owner = P.new_owner_id()
    store, _ = new_store(owner, root)
    run = trained(store, digits, 10)
    store.shutdown()
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert P.find_owner(P.view_id(owner), root) == owner
    view = R.RunStore(read_only=True, saver=P.Saver(idle_s=0.2))
    assert view.attach(owner, root) == []
    assert list(view.runs) == [run.name]
    for call in (view.pause, view.resume, view.stop, view.reset, lambda: view.remove(run.name),
                 lambda: view.set_beta(4.0), lambda: view.create(*small(digits), digits, start=False)):
        with pytest.raises(R.ReadOnlyError):
            call()
    assert view.tick() is False and view.runs[run.name].step == 10
    assert view.save(view.runs[run.name]) is False
    assert view.saver.flush()
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_runs_on_uploaded_data_are_not_saved_and_the_page_is_told(digits, root):
    from core.data import Dataset
    up = Dataset(x=digits.x.copy(), y=digits.y.copy(), image_shape=digits.image_shape, name="digits")
    owner = P.new_owner_id()
    store, _ = new_store(owner, root)
    mc, tc = small(up)
    run = store.create(mc, tc, up, start=False)
    assert not store.save(run)
    assert any("uploaded dataset" in n for n in store.pop_notices())
    assert not [p for p in (root / owner).iterdir() if p.is_dir()]
    store.shutdown()


# ---- links ------------------------------------------------------------------------------------

def test_resolve_link_cases(root):
    known = P.new_owner_id()
    P.register_owner(known, root)
    mine = P.new_owner_id()
    # no link: a new owner (the page puts it in the URL), or the session's own
    first = R.resolve_link(None, None, None, root)
    assert first.mode == "own" and first.new and P.valid_id(first.owner) and first.message is None
    assert R.resolve_link(None, None, mine, root) == R.Link("own", mine)
    # runs=: known opens it; malformed -> error; unknown -> info; both keep/give the session its own
    assert R.resolve_link(known, None, mine, root) == R.Link("own", known)
    bad = R.resolve_link("../../../etc/passwd", None, mine, root)
    assert bad.mode == "own" and bad.owner == mine and bad.level == "error" and "not a valid run link" in bad.message
    short = R.resolve_link("abc", None, None, root)
    assert short.level == "error" and "3 characters, not 32" in short.message and short.new
    unknown = R.resolve_link(P.new_owner_id(), None, mine, root)
    assert unknown.owner == mine and unknown.level == "info" and "No runs are saved under this link" in unknown.message
    # view=: known opens read-only; malformed -> error; unknown -> info
    assert R.resolve_link(None, P.view_id(known), mine, root) == R.Link("view", known)
    assert R.resolve_link(known, P.view_id(known), None, root).mode == "view"
    v = R.resolve_link(None, "x" * 40, mine, root)
    assert v.mode == "own" and v.level == "error" and "`view=`" in v.message
    v = R.resolve_link(None, P.view_id(P.new_owner_id()), mine, root)
    assert v.mode == "own" and v.level == "info" and "view link" in v.message
    assert sorted(p.name for p in root.iterdir()) == [known]  # nothing made for bad or unknown ids


def test_session_store_brings_back_and_switches_owners(digits, root):
    state = {}
    link = R.resolve_link(None, None, None, root)
    store, errors = R.session_store(state, link, root)
    assert errors == [] and state["tr_owner"] == link.owner and store.owner == link.owner
    run = store.create(*small(digits), digits, start=False)
    run.trainer.run_steps(12)
    store.pause()
    assert store.saver.flush()
    assert R.session_store(state, R.resolve_link(link.owner, None, state["tr_owner"], root), root)[0] is store
    # a new session (reload) with the same URL gets the run back, paused at its last save
    state2 = {}
    again, errors = R.session_store(state2, R.resolve_link(link.owner, None, None, root), root)
    assert errors == [] and again is not store and again.runs[run.name].step == 12
    assert again.active.state == "paused"
    # the view link: read-only, same runs
    view, _ = R.session_store(state2, R.resolve_link(None, P.view_id(link.owner), None, root), root)
    assert view.read_only and list(view.runs) == [run.name] and state2["tr_runs"] is again
    for s in (store, again, view):
        s.shutdown()


def test_a_full_disk_or_a_read_only_run_dir_at_the_first_visit_is_not_a_crash(digits, root, monkeypatch):
    def full(f, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(P, "_write_bytes", full)
    store, errors = new_store(P.new_owner_id(), root)
    assert errors == [] and "disk is full" in store.saving_off
    run = store.create(*small(digits), digits, start=False)
    assert not store.save(run) and run.trainer.run_steps(5) == 5
    monkeypatch.undo()
    blocked = root.parent / "blocked"
    blocked.write_text("a file where the run dir should be")
    store, errors = new_store(P.new_owner_id(), blocked)
    assert errors == [] and "cannot be written" in store.saving_off
    store.shutdown()


def test_the_history_cache_converts_only_new_rows_and_gives_the_same_columns():
    rows = [{"step": i, "loss": 1.0 / (i + 1), "kl_per_dim": [float(i), 2.0]} for i in range(50)]
    cache = P.ColumnCache()
    for n in (0, 1, 7, 7, 30, 50):
        got = cache.encode(rows[:n])
        assert P._rows(got) == rows[:n]
        if n:
            full = P._columns(rows[:n])
            assert all(torch.equal(got["__columns__"][k], full["__columns__"][k]) for k in full["__keys__"])
    assert cache.n == 50
    assert P._rows(cache.encode(rows[:10])) == rows[:10]  # a shorter history (a new run): starts again
    odd = rows[:5] + [{"step": 5}]  # not a uniform table: plain rows
    assert P._rows(cache.encode(odd)) == odd


# ---- one writer per link: two tabs (issue 23, brief H-PERSIST-2) ------------------------------------

def files_of(folder: Path, skip=(P.LEASE,)) -> dict:
    return {p.relative_to(folder): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and p.name not in skip}


def wait_until(cond, timeout=30.0, every=0.05):
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(every)


def test_a_second_tab_is_read_only_while_the_first_trains_and_takes_over_when_it_lets_go(digits, root, monkeypatch):
    monkeypatch.setattr(P, "LEASE_TTL_S", 2.5)  # > the runner's lease (1 s) + LEASE_RENEW_S, as in the app
    monkeypatch.setattr(P, "SAVE_INTERVAL_S", 0.3)
    owner = P.new_owner_id()
    a, _ = new_store(owner, root, lease_seconds=1.0)
    mc, tc = small(digits, epochs=200)
    run = a.create(mc, tc, digits)  # trains in the background while a's page ticks
    saved = root / owner / P.slug(run.name) / P.JSON

    def saved_training() -> bool:  # (a save made while it trained: the first one can predate the first step)
        try:
            meta = json.loads(saved.read_bytes())
        except (OSError, ValueError):
            return False
        return meta.get("state") == "training" and meta.get("step", 0) > 0

    wait_until(lambda: a.tick() is not None and run.step > 20 and saved_training())
    assert P.read_lease(owner, root)["busy"] and P.read_lease(owner, root)["token"] == a.token

    b, errors = new_store(owner, root)  # the same link in a second tab
    assert errors == [] and b.follower and b.read_only and not b.view and b.lease_notice == R.LEASE_NOTICE
    assert R.LEASE_NOTICE in b.pop_notices() and "another tab or window" in R.LEASE_NOTICE
    assert list(b.runs) == [run.name] and b.runs[run.name].state == "paused"  # as last saved
    assert b.polling  # (its page keeps checking whether the first tab let go)
    a.tick()
    before = files_of(root / owner)
    # Nothing b's page could ask changes anything, and b writes nothing.
    b.pause(), b.resume(), b.stop(), b.reset(), b.remove(run.name)
    assert b.set_beta(4.0) is False and b.save(b.runs[run.name]) is False
    with pytest.raises(R.LeaseHeldError, match="another tab or window"):
        b.create(mc, tc, digits, start=False)
    with pytest.raises(ValueError, match="another tab or window"):  # (the page shows a ValueError's message)
        b.start_sweep(mc, tc, digits)
    assert b.tick() is False and b.saver.flush()
    assert list(b.runs) == [run.name] and b.runs[run.name].state == "paused"
    assert R.LEASE_NOTICE in b.pop_notices()  # said again on every redraw while it lasts
    step = run.step
    # a trains on, and its saves land (its next periodic save: the run store's interval, a few seconds)
    wait_until(lambda: a.tick() is not None and run.step > step + 20 and a.saver.flush()
               and P.read_meta(root / owner / P.slug(run.name))["step"] > step)
    assert {k for k in before} == {k for k in files_of(root / owner)}  # b made no file

    # a's tab is closed: no more ticks; its thread stops (1 s), its lease lapses (2.5 s); b takes over.
    wait_until(lambda: b.tick(), timeout=20)
    assert not run.runner.alive
    a.saver.flush()
    saved = P.read_meta(root / owner / P.slug(run.name))["step"]
    b.check_lease()  # (the page's next script run: session_store)
    assert not b.follower and not b.read_only and P.read_lease(owner, root)["token"] == b.token
    assert R.LEASE_NOTICE not in b.pop_notices()  # no longer said once it has the runs
    mine = b.runs[run.name]
    assert mine.step == saved and mine.state == "paused"
    mine.trainer.run_steps(15)
    b.pause()
    assert b.saver.flush() and P.read_meta(root / owner / P.slug(run.name))["step"] == saved + 15
    # a's page comes back to life (say its browser woke up): its save is refused, not interleaved.
    assert a.save(run) in (True, False) and a.saver.flush()
    assert P.read_meta(root / owner / P.slug(run.name))["step"] == saved + 15
    assert a.lease_lost
    a.check_lease()  # its next script run: b is idle, so a reloads what b saved and takes the runs back
    assert not a.follower and a.runs[run.name].step == saved + 15 and a.runs[run.name] is not run
    for s in (a, b):
        s.shutdown()


def test_a_tab_left_idle_hands_the_runs_over_and_reloads_before_its_next_change(digits, root):
    """A reload (or a second tab) while the first tab is idle takes over at once; the first tab, when
    used again, first reloads what the other saved, so the two never write the same run twice."""
    owner = P.new_owner_id()
    a, _ = new_store(owner, root)
    first = trained(a, digits, 10, finish=True)
    b, errors = new_store(owner, root)  # a is idle (nothing trains): b takes the runs at once
    assert errors == [] and not b.follower and P.read_lease(owner, root)["token"] == b.token
    second = trained(b, digits, 12)  # "#2 VAE z=2", made in b
    assert second.name.startswith("#2 ")
    # a, idle all along, starts a run: it reloads first (sees #2) and names its new run #3, not #2
    third = a.create(*small(digits), digits, start=False)
    assert third.name.startswith("#3 ") and set(a.runs) == {first.name, second.name, third.name}
    assert a.runs[second.name].step == 12 and P.read_lease(owner, root)["token"] == a.token
    assert a.saver.flush() and P.read_meta(root / owner / P.slug(second.name))["step"] == 12  # b's run intact
    # b's change now reloads in its turn (a is idle again)
    b.remove(first.name)
    assert b.saver.flush() and not (root / owner / P.slug(first.name)).exists()
    assert set(b.runs) == {second.name, third.name}
    for s in (a, b):
        s.shutdown()


def test_a_redraws_heartbeat_is_written_by_the_lease_thread_and_still_finds_a_takeover(digits, root, monkeypatch):
    """``tick`` (every redraw) never writes the lease itself: a rename on a disk busy with saves
    stalled every session's view for seconds (bench_sessions, 7 December 2026). The lease thread
    writes the heartbeat; when it finds another session holding the lease, the next tick says so."""
    import threading

    monkeypatch.setattr(P, "LEASE_RENEW_S", 0.05)
    writers = []
    real = P.renew_lease

    def traced(*args, **kw):
        writers.append(threading.current_thread().name)
        return real(*args, **kw)

    monkeypatch.setattr(P, "renew_lease", traced)
    owner = P.new_owner_id()
    a, _ = new_store(owner, root, lease_seconds=5.0)
    mc, tc = small(digits, epochs=200)
    run = a.create(mc, tc, digits)  # (a click: its own thread may write the lease, once)
    writers.clear()
    beat0 = P.read_lease(owner, root)["time"]
    wait_until(lambda: a.tick() is not None and len(writers) >= 3)
    assert set(writers) == {"latent-lab-lease"}  # never the redraw's own thread
    assert P.read_lease(owner, root)["token"] == a.token and P.read_lease(owner, root)["busy"]
    assert P.read_lease(owner, root)["time"] > beat0  # the heartbeat moved
    # Another session takes the lease (say a's lease lapsed while its browser slept).
    with P._Mutex(P.owner_dir(owner, root)):
        P._write_lease(P.owner_dir(owner, root), "someone-else", False)
    wait_until(lambda: a.tick() is True and a.lease_lost, timeout=10)
    assert not run.runner.wanted  # its runs paused: the other session writes them now
    a.shutdown()


def test_the_lease_is_taken_by_exactly_one_of_many_at_once_and_only_when_free(root, monkeypatch):
    import threading
    owner = P.new_owner_id()
    P.register_owner(owner, root)
    tokens = [f"t{i}" for i in range(8)]
    results = {}
    go = threading.Barrier(len(tokens))

    def grab(tok):
        go.wait()
        results[tok] = P.take_lease(owner, tok, True, root)
    threads = [threading.Thread(target=grab, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [t for t, ok in results.items() if ok]
    assert len(winners) == 1 and P.read_lease(owner, root)["token"] == winners[0]
    assert not P.take_lease(owner, "late", False, root)  # busy and fresh: not free
    assert P.renew_lease(owner, "late", False, root) is False and P.renew_lease(owner, winners[0], False, root)
    assert P.take_lease(owner, "late", False, root)  # idle: free
    P.renew_lease(owner, "late", True, root)
    monkeypatch.setattr(P, "LEASE_TTL_S", 0.2)
    time.sleep(0.3)
    assert P.take_lease(owner, "later", False, root)  # busy but not renewed for LEASE_TTL_S: lapsed
    lock = root / owner / P.LEASE_LOCK
    lock.write_text("")  # another process is reading or writing the lease: wait for it (here: in vain)
    assert not P.take_lease(owner, "x", False, root) and P.read_lease(owner, root)["token"] == "later"
    old = time.time() - P.LOCK_STALE_S - 1  # ... left by a process killed while it held the lock
    os.utime(lock, (old, old))
    assert P.renew_lease(owner, "later", True, root) is True and not lock.exists()
    (root / owner / P.LEASE).write_text("{not json")  # a damaged lease is no lease
    assert P.read_lease(owner, root) is None and P.lease_free(None)


LEASE_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from core import persist as P
    owner, root, token, at = sys.argv[1], P.Path(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    while time.time() < at:
        pass
    print(P.take_lease(owner, token, True, root), flush=True)
""")


def test_replicas_taking_the_lease_at_the_same_moment_get_one_writer(tmp_path):
    """Four processes (as four replicas sharing the run dir) take a free lease at the same instant:
    exactly one gets it."""
    root = tmp_path / "runs"
    owner = P.new_owner_id()
    P.register_owner(owner, root)
    script = tmp_path / "take.py"
    script.write_text(LEASE_SCRIPT.format(root=str(ROOT)))
    at = time.time() + 4.0  # (the processes start, import torch, then spin until then)
    procs = [subprocess.Popen([sys.executable, str(script), owner, str(root), f"replica{i}", str(at)],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
             for i in range(4)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(outs) == ["False", "False", "False", "True"], outs
    winner = f"replica{outs.index('True')}"
    assert P.read_lease(owner, root)["token"] == winner and not (root / owner / P.LEASE_LOCK).exists()


# ---- a β sweep's queue comes back ----------------------------------------------------------------

def test_a_sweeps_queue_is_saved_with_the_runs_and_the_sweep_goes_on_after_a_reload(digits, root):
    owner = P.new_owner_id()
    a, _ = new_store(owner, root)
    mc, tc = small(digits)
    first = a.start_sweep(mc, tc, digits, betas=(0.0, 0.5, 4.0))
    a.pause()
    assert a.saver.flush()
    queued = [(n, t.beta) for n, _, t, _ in a.queue]
    assert queued == [(a.queue[0][0], 0.5), (a.queue[1][0], 4.0)]
    b, errors = new_store(owner, root)  # a reload
    assert errors == [] and not b.follower
    assert [(n, t.beta) for n, _, t, _ in b.queue] == queued and b.sweeping
    assert [t for _, _, t, _ in b.queue] == [t for _, _, t, _ in a.queue]
    assert b.queue[0][1] == mc and b.queue[0][3] is digits
    run = b.active
    assert run.name == first.name and run.sweep
    run.trainer.run_steps(run.trainer.total_steps)  # the first run ends
    assert b._busy()  # between two runs of a sweep the lease is not free for another tab
    assert b.tick() and b.active.name == queued[0][0] and b.active.beta == 0.5  # the sweep goes on
    b.pause()
    assert b.saver.flush()
    assert [i["name"] for i in json.loads((root / owner / P.QUEUE).read_text())] == [queued[1][0]]
    c, _ = new_store(owner, root)
    assert [n for n, *_ in c.queue] == [queued[1][0]]
    new = c.create(mc, tc, digits, start=False)  # the counter skips the queued names
    assert int(new.name.split()[0][1:]) > int(queued[1][0].split()[0][1:])
    c.stop()  # stopping ends the sweep: the queue file goes
    assert c.saver.flush() and not (root / owner / P.QUEUE).exists()
    for s in (a, b, c):
        s.shutdown()


@pytest.mark.parametrize("content,words", [
    (b"{broken", "queue file is damaged"),
    (json.dumps([{"name": "#9 sweep", "dataset": "../x", "model_cfg": {}, "train_cfg": {}}]).encode(), "unknown dataset"),
    (json.dumps({"not": "a list"}).encode(), "not a list"),
])
def test_a_damaged_queue_is_named_and_the_runs_still_come_back(digits, root, content, words):
    owner = P.new_owner_id()
    a, _ = new_store(owner, root)
    run = trained(a, digits, 5)
    a.shutdown()
    (root / owner / P.QUEUE).write_bytes(content)
    b, errors = new_store(owner, root)
    assert list(b.runs) == [run.name] and b.queue == []
    assert len(errors) == 1 and "queued runs could not be restored" in errors[0] and words in errors[0], errors
    b.shutdown()


# ---- owner folders left without runs are pruned ---------------------------------------------------

def age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    for p in [*path.rglob("*"), path]:
        os.utime(p, (t, t), follow_symlinks=False)


def test_owner_folders_left_without_runs_are_pruned_but_never_one_in_use(digits, root):
    owners = {k: P.new_owner_id() for k in ("emptied", "fresh", "leased", "with_run", "writing", "locked", "queue")}
    for o in owners.values():
        P.register_owner(o, root)
    P.note_evicted(owners["emptied"], ["#1 VAE z=2"], root)  # all its runs were evicted
    P.take_lease(owners["leased"], "tab", False, root)
    s, _ = new_store(owners["with_run"], root)
    trained(s, digits, 5, finish=True)
    s.shutdown()
    (root / owners["writing"] / ".owner.json.tmp-1-ab").write_text("")  # a write in progress
    (root / owners["locked"] / P.LEASE_LOCK).write_text("")  # a session is taking its lease
    (root / owners["queue"] / P.QUEUE).write_text("[]")
    for k, o in owners.items():
        if k not in ("fresh", "leased"):
            age(root / o, P.PRUNE_IDLE_S + 60)
    (root / owners["locked"] / P.LEASE_LOCK).touch()  # (the lock is fresh)
    assert P.enforce_total_cap(root, cap=10**12) == []  # the pass after every save, under the cap
    left = {p.name for p in root.iterdir()}
    assert left == set(owners.values()) - {owners["emptied"]}, [k for k, o in owners.items() if o not in left]
    assert not [p for p in root.iterdir() if p.name.startswith(".pruned-")]
    # its link is now unknown: the page says its runs may have been deleted to free space
    link = R.resolve_link(owners["emptied"], None, None, root)
    assert link.level == "info" and "deleted" in link.message and link.owner != owners["emptied"]
    # a session still open on a pruned folder gets it back at its next change
    sess, _ = new_store(owners["fresh"], root)
    age(root / owners["fresh"], P.PRUNE_IDLE_S + 60)
    assert P.prune_empty_owners(root) == [owners["fresh"]] and not (root / owners["fresh"]).exists()
    run = sess.create(*small(digits), digits, start=False)
    sess.pause()
    assert sess.saver.flush() and (root / owners["fresh"] / P.slug(run.name) / P.JSON).exists()
    assert P.read_lease(owners["fresh"], root)["token"] == sess.token and P.owner_known(owners["fresh"], root)
    sess.shutdown()
