"""core.settings: the process-wide knobs are read once from LATENT_LAB_* variables, importing changes
nothing, apply() applies them once, import_torch() sets torch's threads and freezes the imports."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from core.settings import Settings, SettingsError
from tests.conftest import ROOT


def _python(code: str, **env) -> dict:
    """Run ``code`` in a fresh interpreter (settings are process-wide: not in the test process) and
    return the JSON it prints last."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LATENT_LAB_")}
    full_env.update(env, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=180,
                         env=full_env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_defaults_and_every_variable():
    d = Settings.from_env({})
    assert d == Settings()
    assert (d.torch_threads, d.switch_interval, d.gc_thresholds, d.gc_freeze, d.redraw_wait, d.trainer_nice) == \
        (1, 0.0005, (10_000, 10, 10), True, 0.25, 19)
    assert d.training_slots == (os.cpu_count() or 2)
    s = Settings.from_env({"LATENT_LAB_TORCH_THREADS": "2", "LATENT_LAB_SWITCH_INTERVAL": "0.001",
                           "LATENT_LAB_GC_THRESHOLDS": "5000, 20,30", "LATENT_LAB_GC_FREEZE": "off",
                           "LATENT_LAB_REDRAW_WAIT": "0", "LATENT_LAB_TRAINING_SLOTS": "3",
                           "LATENT_LAB_TRAINER_NICE": "0", "LATENT_LAB_CACHE": "/elsewhere", "OTHER": "x"})
    assert s == Settings(2, 0.001, (5000, 20, 30), False, 0.0, 3, 0)
    assert Settings.from_env({"LATENT_LAB_TORCH_THREADS": "  "}) == d  # empty: the default


@pytest.mark.parametrize("name,value,says", [
    ("LATENT_LAB_TORCH_THREADS", "many", "integer from 1 to 256"),
    ("LATENT_LAB_TORCH_THREADS", "0", "integer from 1 to 256"),
    ("LATENT_LAB_SWITCH_INTERVAL", "-1", "seconds"),
    ("LATENT_LAB_GC_THRESHOLDS", "10000,10", "three integers"),
    ("LATENT_LAB_GC_FREEZE", "maybe", "1 or 0"),
    ("LATENT_LAB_REDRAW_WAIT", "nan", "seconds from 0 to 10"),
    ("LATENT_LAB_TRAINING_SLOTS", "1.5", "integer"),
    ("LATENT_LAB_TRAINER_NICE", "-5", "integer from 0 to 39"),
])
def test_a_bad_variable_is_refused_by_name(name, value, says):
    with pytest.raises(SettingsError) as err:
        Settings.from_env({name: value})
    assert name in str(err.value) and says in str(err.value) and repr(value) in str(err.value)
    assert isinstance(err.value, ValueError)


_STATE = ("import gc, json, sys; from core import sharing; "
          "state = lambda: dict(switch=sys.getswitchinterval(), thresholds=list(gc.get_threshold()), "
          "frozen=gc.get_freeze_count(), wait=sharing.REDRAWS.max_wait, slots=sharing.TRAINING_SLOTS.n, "
          "nice=sharing.trainer_nice(), torch='torch' in sys.modules); ")


def test_importing_any_core_module_changes_nothing_in_the_process():
    got = _python(_STATE + "import importlib, pkgutil, threading, core; before = state(); "
                  "[importlib.import_module(m.name) for m in pkgutil.walk_packages(core.__path__, 'core.') "
                  "if not m.name.startswith('core.ui')]; "  # every module but the page glue (it imports Streamlit)
                  "after = state(); after['threads'] = threading.active_count(); before['threads'] = 1; "
                  "print(json.dumps([before, after]))",
                  LATENT_LAB_REDRAW_WAIT="0", LATENT_LAB_TRAINING_SLOTS="7", LATENT_LAB_SWITCH_INTERVAL="0.002")
    before, after = got
    after.pop("torch"), before.pop("torch")  # core.training imports torch: that is not a setting
    assert after == before
    assert before["switch"] == 0.005 and before["thresholds"] == [700, 10, 10] and before["frozen"] == 0
    assert before["wait"] == 0.25 and before["nice"] == 19  # the defaults, not the environment's values


def test_apply_once_from_the_environment_and_import_torch_finishes_the_job():
    got = _python(_STATE + "from core import settings; "
                  "first = settings.apply(); s1 = state(); again = settings.apply(settings.Settings()); s2 = state(); "
                  "torch = settings.import_torch(); settings.import_torch(); "
                  "print(json.dumps([first, again, s1, s2, state(), torch.get_num_threads(), "
                  "settings.applied().training_slots]))",
                  LATENT_LAB_REDRAW_WAIT="0", LATENT_LAB_TRAINING_SLOTS="7", LATENT_LAB_SWITCH_INTERVAL="0.002",
                  LATENT_LAB_GC_THRESHOLDS="9000,11,12", LATENT_LAB_TRAINER_NICE="5", LATENT_LAB_TORCH_THREADS="2")
    first, again, s1, s2, s3, threads, slots = got
    assert first is True and again is False
    assert s1 == dict(switch=0.002, thresholds=[9000, 11, 12], frozen=0, wait=0.0, slots=7, nice=5, torch=False)
    assert s2 == s1  # the second apply changed nothing, although its settings differ
    assert threads == 2 and slots == 7
    assert s3["frozen"] > 100_000 and s3["torch"]  # torch, plotly and pandas are frozen


def test_import_torch_applies_the_settings_if_nobody_did_and_freezing_can_be_off():
    got = _python(_STATE + "from core import settings; torch = settings.import_torch(); "
                  "print(json.dumps([state(), torch.get_num_threads(), settings.apply()]))",
                  LATENT_LAB_GC_FREEZE="0")
    s, threads, again = got
    assert s["frozen"] == 0 and s["thresholds"] == [10_000, 10, 10] and threads == 1 and again is False


def test_app_shows_a_bad_variable_as_an_error():
    got = _python("import json; from streamlit.testing.v1 import AppTest; "
                  "at = AppTest.from_file('app.py', default_timeout=60).run(); "
                  "print(json.dumps([[e.value for e in at.error], len(at.exception)]))",
                  LATENT_LAB_TRAINING_SLOTS="lots")
    errors, exceptions = got
    assert exceptions == 0 and len(errors) == 1
    assert "LATENT_LAB_TRAINING_SLOTS" in errors[0] and "'lots'" in errors[0]


def test_the_warm_up_is_a_daemon_that_runs_once_and_stops_between_steps_at_exit():
    """Exit while a long warm-up runs: the process ends within one step, with status 0 (not killed
    in the middle of a step), and the thread is a daemon, started once."""
    import time

    code = ("import json, sys, time; from core import settings; done = []; "
            "step = lambda: (time.sleep(0.3), done.append(1)); "
            "settings.atexit.register(lambda: print(json.dumps([th.daemon, th.name, again is None, len(done)]), "
            "flush=True)); "  # registered first, so it runs after the warm-up's own exit hook
            "th = settings.start_warm_up([step] * 100); again = settings.start_warm_up([step]); "
            "time.sleep(0.45); sys.exit(0)")
    t0 = time.monotonic()
    got = _python(code)
    assert time.monotonic() - t0 < 30
    daemon, name, once, steps = got
    assert daemon and name == "latent-lab-warm-up" and once
    assert 2 <= steps <= 3  # the step in progress at exit finished; the others never started


def test_warm_up_loads_torch_and_the_default_models():
    got = _python("import json, sys; from core import settings; th = settings.warm_up(['digits']); th.join(120); "
                  "from core import zoo; "
                  "from core import reparam; job = reparam.TRAINING_JOBS.get(reparam.zoo_training_race_key('digits', 0, 1.0, 16)); "
                  "print(json.dumps([sorted(f'{s.kind}' for s in zoo._memory), 'plotly.express' in sys.modules, "
                  "settings.applied() is not None, job is not None]))")
    assert got == [["ae", "vae"], True, True, True]  # and the reparam page's race has started


def test_the_home_page_applies_the_settings_and_starts_the_daemon_warm_up():
    got = _python("import json, sys, threading; from streamlit.testing.v1 import AppTest; "
                  "at = AppTest.from_file('app.py', default_timeout=60).run(); at.run(); "
                  "from core import settings, sharing; "
                  "th = settings._warm_thread; warm = [th.daemon, th.name] if th else None; "
                  "print(json.dumps([len(at.exception), warm, sys.getswitchinterval(), sharing.TRAINING_SLOTS.n, "
                  "settings.applied() is not None]))",
                  LATENT_LAB_TRAINING_SLOTS="3")
    exceptions, warm, switch, slots, applied = got
    assert exceptions == 0 and warm == [True, "latent-lab-warm-up"]
    assert switch == 0.0005 and slots == 3 and applied
