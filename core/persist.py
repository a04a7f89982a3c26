"""Runs that come back: a training run saved on disk as it trains, and brought back by its link.

Layout: ``<run dir>/<owner id>/<run slug>/run.pt`` and ``run.json``. The run dir is
``$LATENT_LAB_RUN_DIR``, by default ``<$LATENT_LAB_CACHE or ~/.cache/latent-lab>/runs`` (the zoo and
the data cache live beside it); replicas of the app share it. The owner id is 192 random bits
(``secrets.token_urlsafe(24)``), carried in the page's URL as ``runs=<id>``: whoever has the link owns
the runs. The read-only link ``view=<id>`` carries a hash of the owner id, from which the owner id
cannot be recovered, so a shared view link grants looking, never training or deleting.

``run.pt`` is ``torch.save`` of plain data only (tensors, numbers, strings, lists, dicts), so it
loads with ``torch.load(weights_only=True)``: a file that holds code is refused. ``run.json`` holds
the metadata and the SHA-256 of ``run.pt``; both are written atomically (a temporary file in the same
folder, fsync, ``os.replace``), ``run.json`` last, and the previous ``run.pt`` stays as ``run.pt.prev``
until the new ``run.json`` is in place. A process killed at any moment of a save therefore leaves a
``run.json`` whose checksum matches ``run.pt`` or ``run.pt.prev``: the previous save, or the new one.

Saving never blocks training for long: :func:`trainer_state` copies the trainer's state under its
lock (a few ms), and a :class:`Saver` thread encodes and writes it. A full disk (ENOSPC) or any other
write error turns saving off for that session with a message; training goes on. Nothing here
touches Streamlit.

One writer per link: two tabs (sessions, maybe on two replicas) may open the same link. Only the
session holding the owner folder's lease (``lease.json``, taken under an O_EXCL lock file) writes its
runs; see :func:`take_lease` and docs/persistence.md. A β sweep's queue is saved beside the runs
(``queue.json``), and owner folders left without runs are pruned by the cap pass.
"""
from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import io
import json
import math
import os
import re
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.training import Trainer

FORMAT = 1
RUN_DIR_ENV = "LATENT_LAB_RUN_DIR"
MAX_MB_ENV = "LATENT_LAB_RUN_DIR_MAX_MB"
DEFAULT_MAX_MB = 2000
#: Seconds between two saves of a training run (a kill loses at most this much training, plus the
#: time the save takes to write).
SAVE_INTERVAL_S = 4.0
#: A run file larger than this is refused without reading it (the default model's is ~10 MB).
MAX_RUN_BYTES = 400 * 2**20
MAX_JSON_BYTES = 2 * 2**20
ID_LEN = 32  # secrets.token_urlsafe(24) is 32 characters; so is a view id
ID_RE = re.compile(r"[A-Za-z0-9_-]{%d}" % ID_LEN)
SLUG_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,60}")
PT, JSON, PREV = "run.pt", "run.json", "run.pt.prev"
EVICTED = "evicted.json"
OWNER_MARK = "owner.json"
LEASE, LEASE_LOCK, QUEUE = "lease.json", "lease.lock", "queue.json"
#: A link's runs have one writer at a time: the session holding the owner folder's lease. A lease held
#: by a session that trains is taken over only when its heartbeat is older than this (two save
#: intervals: the holder renews it at least every ``LEASE_RENEW_S`` while its page redraws, and a run
#: whose page stopped redrawing stops training after 3 s, ``core.training.BackgroundRunner``).
LEASE_TTL_S = 2 * SAVE_INTERVAL_S
LEASE_RENEW_S = 1.0
#: The lease's lock file (held for a millisecond around each read-modify-write of the lease) is
#: taken as abandoned (a process killed while holding it) after this many seconds.
LOCK_STALE_S = 5.0
#: An owner folder without runs is deleted by the cap pass once nothing in it changed for this long.
PRUNE_IDLE_S = 600.0
MAX_QUEUE = 16


class PersistError(ValueError):
    """A bad link or a run file that cannot be restored; the message says which and what to do."""


# ---- where runs live, and who may open them -----------------------------------------------------

def run_dir() -> Path:
    """``$LATENT_LAB_RUN_DIR``, else ``<$LATENT_LAB_CACHE or ~/.cache/latent-lab>/runs``."""
    env = os.environ.get(RUN_DIR_ENV)
    if env:
        return Path(env)
    cache = os.environ.get("LATENT_LAB_CACHE") or Path.home() / ".cache" / "latent-lab"
    return Path(cache) / "runs"


def max_bytes() -> int:
    """Total size cap of the run dir (``$LATENT_LAB_RUN_DIR_MAX_MB``, default 2000 MB)."""
    try:
        mb = float(os.environ.get(MAX_MB_ENV, DEFAULT_MAX_MB))
    except ValueError:
        mb = DEFAULT_MAX_MB
    return int(max(mb, 0.0) * 2**20) if math.isfinite(mb) else DEFAULT_MAX_MB * 2**20


def new_owner_id() -> str:
    """192 random bits, URL-safe (32 characters)."""
    return secrets.token_urlsafe(24)


def view_id(owner: str) -> str:
    """The read-only link's id: the first 32 characters of urlsafe-base64(sha256("latent-lab-view:" + owner))."""
    digest = hashlib.sha256(("latent-lab-view:" + owner).encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:ID_LEN]


def valid_id(text) -> bool:
    return isinstance(text, str) and ID_RE.fullmatch(text) is not None


def check_id(text, param: str = "runs") -> str:
    """``text`` if it is a well-formed id (32 characters of A-Z a-z 0-9 - _), else PersistError
    saying what is wrong. Checked before any path is built from it (no path traversal)."""
    if valid_id(text):
        return text
    s = str(text)
    why = (f"it has {len(s)} characters, not {ID_LEN}" if len(s) != ID_LEN
           else "it has characters other than letters, digits, - and _")
    raise PersistError(f"The link's `{param}=` value is not a valid run link ({why}). Check that the whole link "
                       "was copied; or open the training page without it to start afresh.")


def owner_dir(owner: str, root: Path | None = None) -> Path:
    return (root or run_dir()) / check_id(owner)


def owner_known(owner: str, root: Path | None = None) -> bool:
    return valid_id(owner) and owner_dir(owner, root).is_dir()


def register_owner(owner: str, root: Path | None = None) -> Path:
    """Create the owner's folder (so the link is known from now on, before any run is saved)."""
    d = owner_dir(owner, root)
    d.mkdir(parents=True, exist_ok=True)
    mark = d / OWNER_MARK
    if not mark.exists():
        _atomic_write(mark, json.dumps({"created": time.time()}).encode())
    return d


def find_owner(view: str, root: Path | None = None) -> str | None:
    """The owner whose view id is ``view`` (None if none). Scans the owners' folders: the view id
    cannot be turned back into the owner id."""
    check_id(view, "view")
    root = root or run_dir()
    try:
        names = os.listdir(root)
    except OSError:
        return None
    for name in names:
        if valid_id(name) and hmac.compare_digest(view_id(name), view):
            return name
    return None


def slug(name: str, limit: int = 40) -> str:
    """A run name as a folder name: "#3 VAE β=0.5 z=16" -> "3-vae-beta-0-5-z-16"."""
    s = "".join(ch if ch.isascii() and ch.isalnum() else "-" for ch in str(name).replace("β", "beta"))
    return "-".join(part for part in s.lower().split("-") if part)[:limit].strip("-") or "run"


# ---- the trainer's state, copied under its lock ---------------------------------------------------

def _clone(obj):
    if torch.is_tensor(obj):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clone(v) for v in obj)
    return obj


def trainer_state(trainer: Trainer) -> dict:
    """Everything needed to continue ``trainer`` exactly where it is (weights, optimiser, the
    shuffling generator and the position in the epoch, history, evaluations, timeline snapshots,
    β and its changes, step, status, training time), copied under the trainer's lock. Lists are
    shallow copies: their rows are never changed once appended. Cheap (a few ms for the default
    model): the encoding happens later, outside the lock (:func:`encode_state`)."""
    with trainer.lock:
        perm, pos = trainer.epoch_position()
        return {
            "weights": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
            "optimizer": _clone(trainer.opt.state_dict()),
            "rng": trainer.gen.get_state().clone(),
            "perm": perm.detach().clone() if perm is not None else None,
            "pos": int(pos),
            "history": list(trainer.history),
            "eval_history": list(trainer.eval_history),
            "snapshots": list(trainer.snapshots),
            "beta": float(trainer.beta),
            "beta_changes": [[int(s), float(b)] for s, b in trainer.beta_changes],
            "step": int(trainer.step),
            "status": str(trainer.status),
            "message": str(trainer.message),
            "train_seconds": float(trainer.train_seconds),
            "model_cfg": trainer.model_cfg.to_dict(),
            "train_cfg": trainer.cfg.to_dict(),
        }


def _columns(rows: list[dict]):
    """History rows (dicts of numbers and lists of numbers, all with the same keys) as columns of
    tensors: ~20x smaller and faster to save than pickled dicts. Returns the rows unchanged (plain
    data) when they do not have that shape."""
    if not rows:
        return {"__rows__": []}
    keys = list(rows[0])
    out = {}
    try:
        for k in keys:
            vals = [r[k] for r in rows]
            v0 = vals[0]
            if isinstance(v0, bool):
                return {"__rows__": rows}
            if isinstance(v0, int):
                out[k] = torch.tensor(vals, dtype=torch.int64)
            elif isinstance(v0, float):
                out[k] = torch.tensor(vals, dtype=torch.float64)
            elif isinstance(v0, list):
                out[k] = torch.tensor(vals, dtype=torch.float64)
            else:
                return {"__rows__": rows}
        if any(len(r) != len(keys) for r in rows):
            return {"__rows__": rows}
    except (KeyError, TypeError, ValueError):
        return {"__rows__": rows}
    return {"__columns__": out, "__keys__": keys}


class ColumnCache:
    """The history columns of one run, converted once: each save converts only the rows added since
    the previous one (a run's rows never change once appended). A full-length default run's history
    (28,200 rows) took ~60 ms to convert at every save, ~2/3 of the save's CPU. Used by one writer
    thread at a time."""

    def __init__(self):
        self.n, self.keys, self.cols = 0, None, {}

    def encode(self, rows: list[dict]) -> dict:
        if not rows or self.n > len(rows) or self.keys != list(rows[0]):
            self.n, self.keys, self.cols = 0, (list(rows[0]) if rows else None), {}
        new = _columns(rows[self.n:]) if len(rows) > self.n else {"__columns__": {}, "__keys__": self.keys}
        if "__rows__" in new or (new["__keys__"] and new["__keys__"] != self.keys):
            self.n, self.keys, self.cols = 0, None, {}
            return _columns(rows)  # not a uniform table: plain rows, no caching
        for k, v in new["__columns__"].items():
            self.cols[k] = torch.cat([self.cols[k], v]) if k in self.cols else v
        self.n = len(rows)
        return {"__columns__": dict(self.cols), "__keys__": list(self.keys)} if rows else {"__rows__": []}


def _rows(cols) -> list[dict]:
    if not isinstance(cols, dict):
        raise PersistError("history is not a table")
    if "__rows__" in cols:
        rows = cols["__rows__"]
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise PersistError("history rows are not tables")
        return rows
    data, keys = cols.get("__columns__"), cols.get("__keys__")
    if not isinstance(data, dict) or not isinstance(keys, list) or set(keys) != set(data):
        raise PersistError("history columns are malformed")
    n = {len(v) for v in data.values() if torch.is_tensor(v)}
    if len(n) != 1 or not all(torch.is_tensor(v) for v in data.values()):
        raise PersistError("history columns have different lengths")
    return [dict(zip(keys, vals)) for vals in zip(*(data[k].tolist() for k in keys))]


def _snapshots_out(snaps: list[dict]) -> dict:
    if not snaps:
        return {"step": torch.zeros(0, dtype=torch.int64)}
    return {"step": torch.tensor([int(s["step"]) for s in snaps], dtype=torch.int64),
            "latents": torch.from_numpy(np.stack([np.asarray(s["latents"]) for s in snaps])),
            "recon": torch.from_numpy(np.stack([np.asarray(s["recon"]) for s in snaps]))}


def _snapshots_in(d) -> list[dict]:
    if not isinstance(d, dict) or not torch.is_tensor(d.get("step")):
        raise PersistError("timeline snapshots are malformed")
    steps = d["step"].tolist()
    if not steps:
        return []
    lat, rec = d.get("latents"), d.get("recon")
    if not (torch.is_tensor(lat) and torch.is_tensor(rec) and len(lat) == len(rec) == len(steps)):
        raise PersistError("timeline snapshots are malformed")
    lat, rec = lat.numpy(), rec.numpy()
    return [{"step": int(s), "latents": lat[i], "recon": rec[i]} for i, s in enumerate(steps)]


def encode_state(state: dict, cache: ColumnCache | None = None) -> dict:
    """A :func:`trainer_state` as a dict of tensors and plain data (what ``run.pt`` holds). ``cache``:
    the run's :class:`ColumnCache` (converts only the history rows added since the last save)."""
    out = {k: v for k, v in state.items() if k not in ("history", "eval_history", "snapshots")}
    out["history"] = cache.encode(state["history"]) if cache is not None else _columns(state["history"])
    out["eval_history"] = state["eval_history"]
    out["snapshots"] = _snapshots_out(state["snapshots"])
    return out


def decode_state(payload: dict) -> dict:
    """The inverse of :func:`encode_state` (raises PersistError on a malformed payload)."""
    state = dict(payload)
    state["history"] = _rows(payload.get("history"))
    ev = payload.get("eval_history")
    if not isinstance(ev, list) or not all(isinstance(r, dict) for r in ev):
        raise PersistError("held-out evaluations are malformed")
    state["eval_history"] = ev
    state["snapshots"] = _snapshots_in(payload.get("snapshots"))
    return state


def check_weights(weights, model: torch.nn.Module) -> None:
    """PersistError unless ``weights`` has exactly the model's tensors with the model's shapes."""
    want = model.state_dict()
    if not isinstance(weights, dict) or set(weights) != set(want):
        raise PersistError("its weights do not belong to a model of its saved configuration")
    for k, v in want.items():
        w = weights[k]
        if not torch.is_tensor(w) or tuple(w.shape) != tuple(v.shape) or w.dtype != v.dtype:
            raise PersistError(f"its weight '{k}' has shape {tuple(getattr(w, 'shape', ()))}, "
                               f"the model needs {tuple(v.shape)}")
        if not torch.isfinite(w).all():
            raise PersistError(f"its weight '{k}' is not finite")


def load_trainer_state(trainer: Trainer, state: dict) -> None:
    """Put a decoded state (:func:`decode_state`) back into a fresh ``trainer`` built with the same
    configs. Raises PersistError if it does not fit."""
    check_weights(state.get("weights"), trainer.model)
    step = state.get("step")
    if not isinstance(step, int) or not 0 <= step <= trainer.total_steps:
        raise PersistError(f"its step {step!r} is outside the run's 0..{trainer.total_steps}")
    with trainer.lock:
        trainer.model.load_state_dict(state["weights"])
        if state.get("optimizer") and state["optimizer"].get("state"):
            try:
                trainer.opt.load_state_dict(state["optimizer"])
            except (ValueError, KeyError, TypeError, RuntimeError) as exc:
                raise PersistError(f"its optimiser state does not fit the model ({exc})") from None
        rng = state.get("rng")
        if torch.is_tensor(rng) and rng.dtype == torch.uint8:
            try:
                trainer.gen.set_state(rng)
            except RuntimeError as exc:
                raise PersistError(f"its random state is malformed ({exc})") from None
        perm = state.get("perm")
        n = len(trainer.x_train)
        if perm is not None:
            if not (torch.is_tensor(perm) and perm.dtype == torch.int64 and perm.shape == (n,)
                    and bool((perm >= 0).all()) and bool((perm < n).all())):
                raise PersistError("its shuffling order does not fit the dataset")
        trainer.set_epoch_position(perm, int(state.get("pos", 0)))
        trainer.history = list(state["history"])
        trainer.eval_history = list(state["eval_history"])
        trainer.snapshots = list(state["snapshots"])
        trainer.beta = float(state.get("beta", trainer.beta))
        changes = state.get("beta_changes") or [[0, trainer.beta]]
        trainer.beta_changes = [(int(s), float(b)) for s, b in changes]
        trainer.step = step
        status = state.get("status")
        trainer.status = status if status in ("idle", "running", "done", "diverged") else "running"
        trainer.message = str(state.get("message", ""))
        trainer.train_seconds = float(state.get("train_seconds", 0.0))
        trainer.mark_good()


class SavingTrainer(Trainer):
    """A :class:`core.training.Trainer` that calls ``on_progress()`` after every turn of training
    (``run_for``), in the training thread. The run store uses it to save the run every ``SAVE_INTERVAL_S`` seconds from the
    training path itself, whether or not a page is drawing."""

    on_progress: Callable[[], None] | None = None

    def run_for(self, seconds: float) -> int:
        ran = super().run_for(seconds)
        cb = self.on_progress
        if cb is not None:
            cb()
        return ran


# ---- files ---------------------------------------------------------------------------------

def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


#: Tests replace this to inject faults (e.g. ENOSPC); everything written goes through it.
def _write_bytes(f, data: bytes) -> None:
    f.write(data)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as f:
            _write_bytes(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def write_run(folder: Path, payload: dict, meta: dict) -> int:
    """Save one run: ``run.pt`` (``payload``), then ``run.json`` (``meta`` plus the checksum),
    each atomically; the previous ``run.pt`` is kept as ``run.pt.prev`` until ``run.json`` names the
    new one. Returns the bytes written. Raises OSError (e.g. ENOSPC)."""
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    pt, prev = folder / PT, folder / PREV
    if pt.exists():
        try:
            prev.unlink()
        except FileNotFoundError:
            pass
        try:
            os.link(pt, prev)
        except OSError:
            shutil.copyfile(pt, prev)
    _atomic_write(pt, data)
    meta = dict(meta, format=FORMAT, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), updated=time.time())
    _atomic_write(folder / JSON, json.dumps(meta).encode())
    try:
        prev.unlink()
    except FileNotFoundError:
        pass
    return len(data)


def read_meta(folder: Path) -> dict:
    """``run.json`` of a run folder (PersistError if missing or malformed)."""
    p = folder / JSON
    try:
        if p.stat().st_size > MAX_JSON_BYTES:
            raise PersistError("its description file (run.json) is too large")
        meta = json.loads(p.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise PersistError("its description file (run.json) is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise PersistError("its description file (run.json) is damaged") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str) or not isinstance(meta.get("name"), str):
        raise PersistError("its description file (run.json) is not a Latent Lab run description")
    return meta


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_payload(folder: Path, meta: dict) -> dict:
    """Load ``run.pt`` (or, after a save cut short, ``run.pt.prev``) whose checksum is the one in
    ``meta``, with ``torch.load(weights_only=True)``. PersistError if none matches or it holds
    anything but plain data."""
    for name in (PT, PREV):
        p = folder / name
        try:
            if p.stat().st_size > MAX_RUN_BYTES:
                raise PersistError(f"its file is larger than {MAX_RUN_BYTES >> 20} MB")
            if not hmac.compare_digest(_sha256(p), meta["sha256"]):
                continue
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise PersistError(f"its file cannot be read ({exc.strerror})") from None
        try:
            payload = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 (UnpicklingError, RuntimeError, EOFError, ...: all mean "refused")
            kind = "holds objects other than plain data (possibly code), so it was not loaded" \
                if "weights_only" in str(exc) or "Unsupported global" in str(exc) else "is not a Latent Lab run file"
            raise PersistError(f"its file {kind}") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise PersistError("its file is not a Latent Lab run file of this version")
        return payload
    raise PersistError("its file does not match its checksum (truncated or altered on disk)")


def run_folders(owner: str, root: Path | None = None) -> list[Path]:
    """The owner's run folders (names that are valid slugs only)."""
    d = owner_dir(owner, root)
    try:
        return sorted(p for p in d.iterdir() if p.is_dir() and SLUG_RE.fullmatch(p.name))
    except OSError:
        return []


def delete_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def folder_bytes(folder: Path) -> int:
    total = 0
    try:
        for p in folder.iterdir():
            try:
                total += p.stat().st_size
            except OSError:
                pass
    except OSError:
        pass
    return total


def note_evicted(owner: str, names: list[str], root: Path | None = None) -> None:
    """Remember, for the owner's next visit, which of their runs were removed to bound the disk."""
    p = owner_dir(owner, root) / EVICTED
    try:
        old = json.loads(p.read_text()) if p.exists() else []
        old = [str(n) for n in old if isinstance(n, str)][-50:] if isinstance(old, list) else []
        _atomic_write(p, json.dumps(old + list(names)).encode())
    except (OSError, ValueError):
        pass


def pop_evicted(owner: str, root: Path | None = None) -> list[str]:
    p = owner_dir(owner, root) / EVICTED
    try:
        names = json.loads(p.read_text())
        p.unlink()
    except (OSError, ValueError):
        return []
    return [str(n)[:80] for n in names if isinstance(n, str)] if isinstance(names, list) else []


def enforce_total_cap(root: Path | None = None, cap: int | None = None,
                      keep: set[Path] = frozenset()) -> list[tuple[str, str, Path]]:
    """Delete the oldest finished runs (by their last save) of every owner until the run dir holds
    at most ``cap`` bytes. Runs still training and the folders in ``keep`` are never deleted.
    Returns (owner, run name, folder) of each run deleted, and notes them for their owner. Owner
    folders left without runs are pruned (:func:`prune_empty_owners`)."""
    root = root or run_dir()
    cap = max_bytes() if cap is None else cap
    runs, total = [], 0
    try:
        owners = [o for o in os.listdir(root) if valid_id(o)]
    except OSError:
        return []
    sized, empty = [], []
    for owner in owners:  # sizes first (stat only): the descriptions are read only when over the cap
        folders = run_folders(owner, root)
        if not folders:
            empty.append(owner)
        for folder in folders:
            size = folder_bytes(folder)
            total += size
            sized.append((owner, folder, size))
    if empty:
        prune_empty_owners(root, empty)
    if total <= cap:
        return []
    for owner, folder, size in sized:
        try:
            meta = read_meta(folder)
        except PersistError:
            meta = {"name": folder.name, "finished": True, "updated": 0.0}
        runs.append((float(meta.get("updated", 0.0) or 0.0), owner, str(meta.get("name")), folder, size,
                     bool(meta.get("finished"))))
    evicted = []
    for updated, owner, name, folder, size, finished in sorted(runs, key=lambda r: r[0]):
        if total <= cap:
            break
        if not finished or folder in keep:
            continue
        delete_folder(folder)
        total -= size
        evicted.append((owner, name, folder))
    by_owner: dict[str, list[str]] = {}
    for owner, name, _ in evicted:
        by_owner.setdefault(owner, []).append(name)
    for owner, names in by_owner.items():
        note_evicted(owner, names, root)
    return evicted


# ---- one writer per link: the lease -------------------------------------------------------------
# Two tabs (two sessions, maybe on two replicas) can open the same runs= link. Each would restore the
# same runs and save them: the last writer would win and the histories interleave. So the owner folder
# holds a lease, lease.json = {"token": the holding session's random token, "time": its last heartbeat
# (wall clock, shared by the replicas), "busy": whether it is training}. Only the holder writes; any
# other session shows the runs read-only, as last saved. A newcomer takes the lease when it is free:
# absent, not busy (the holder is idle: a reload, or a tab left open), or older than LEASE_TTL_S.
# Every read-modify-write of lease.json happens under lease.lock, created with O_CREAT | O_EXCL (atomic
# on a local or NFS file system), so two sessions can never both take it.

class _Mutex:
    """``lease.lock`` in folder ``d``, created with O_EXCL: one process at a time, on any replica."""

    def __init__(self, d: Path, timeout: float = 1.0):
        self.path, self.timeout, self.held = d / LEASE_LOCK, timeout, False

    def __enter__(self) -> bool:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                self.held = True
                return True
            except FileExistsError:
                try:
                    if time.time() - self.path.stat().st_mtime > LOCK_STALE_S:
                        self.path.unlink()  # left by a process killed while it held it
                        continue
                except OSError:
                    continue
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        if self.held:
            try:
                self.path.unlink()
            except OSError:
                pass


def read_lease(owner: str, root: Path | None = None) -> dict | None:
    """The owner folder's lease ({token, time, busy}), or None if there is none or it is damaged."""
    try:
        d = json.loads((owner_dir(owner, root) / LEASE).read_bytes()[:4096].decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(d, dict) or not isinstance(d.get("token"), str) or not _is_number(d.get("time")):
        return None
    return {"token": d["token"], "time": float(d["time"]), "busy": bool(d.get("busy"))}


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def lease_free(lease: dict | None, now: float | None = None) -> bool:
    """A lease a session may take: none, held by an idle session, or not renewed for ``LEASE_TTL_S``."""
    if lease is None or not lease["busy"]:
        return True
    return (time.time() if now is None else now) - lease["time"] > LEASE_TTL_S


def holds_lease(owner: str, token: str, root: Path | None = None) -> bool:
    """True if the session with ``token`` holds the owner's lease (a read, no lock)."""
    lease = read_lease(owner, root)
    return lease is not None and hmac.compare_digest(lease["token"], token)


def _write_lease(d: Path, token: str, busy: bool) -> None:
    tmp = d / f".{LEASE}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        tmp.write_bytes(json.dumps({"token": token, "time": time.time(), "busy": bool(busy)}).encode())
        os.replace(tmp, d / LEASE)  # (no fsync: after a crash of the machine the lease is void anyway)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def take_lease(owner: str, token: str, busy: bool = False, root: Path | None = None) -> bool:
    """Take the owner's lease for the session ``token`` if it holds it already or the lease is free
    (:func:`lease_free`). Returns True if the session holds it now. Raises OSError if the folder
    cannot be written."""
    d = owner_dir(owner, root)
    for _ in range(3):
        register_owner(owner, root)  # (again, if the folder was pruned meanwhile)
        try:
            with _Mutex(d) as got:
                if not got:
                    return False
                lease = read_lease(owner, root)
                if not (lease is not None and lease["token"] == token) and not lease_free(lease):
                    return False
                _write_lease(d, token, busy)
                return True
        except FileNotFoundError:
            continue  # the folder was pruned while we waited for its lock
    return False


def renew_lease(owner: str, token: str, busy: bool, root: Path | None = None) -> bool | None:
    """Renew the lease of the session ``token``: True if renewed, False if another session holds it
    (or it is gone), None if its lock could not be had (try again later)."""
    d = owner_dir(owner, root)
    try:
        with _Mutex(d) as got:
            if not got:
                return None
            lease = read_lease(owner, root)
            if lease is None or lease["token"] != token:
                return False
            _write_lease(d, token, busy)
            return True
    except FileNotFoundError:
        return False


# ---- a β sweep's queued runs ------------------------------------------------------------------

def write_queue(owner: str, items: list[dict], root: Path | None = None) -> None:
    """Save the owner's queue of runs still to train (plain JSON; an empty queue removes the file)."""
    p = owner_dir(owner, root) / QUEUE
    if not items:
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        return
    _atomic_write(p, json.dumps(items[:MAX_QUEUE]).encode())


def read_queue(owner: str, root: Path | None = None) -> list[dict]:
    """The owner's saved queue as a list of dicts (unchecked contents: the run store checks each);
    [] if there is none. PersistError if the file is damaged."""
    p = owner_dir(owner, root) / QUEUE
    try:
        size = p.stat().st_size
    except OSError:
        return []  # none (or no owner folder to hold one)
    if size > MAX_JSON_BYTES:
        raise PersistError("the β sweep's queue file is too large")
    try:
        items = json.loads(p.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise PersistError("the β sweep's queue file is damaged") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise PersistError("the β sweep's queue file is not a list of runs")
    return items[:MAX_QUEUE]


# ---- pruning owner folders left without runs --------------------------------------------------

_PRUNABLE = {OWNER_MARK, EVICTED, LEASE}


def _prunable(d: Path, now: float, locked: bool = False) -> bool:
    """An owner folder with no run in it, nothing but its mark, notes and lease, and none of them
    changed for ``PRUNE_IDLE_S`` (so no session is using it: a session's heartbeat rewrites the lease).
    ``locked``: checked again under its lease lock (whose file is then in it)."""
    try:
        entries = [e for e in os.scandir(d) if not (locked and e.name == LEASE_LOCK)]
        return all(e.name in _PRUNABLE and e.is_file(follow_symlinks=False)
                   and now - e.stat(follow_symlinks=False).st_mtime >= PRUNE_IDLE_S for e in entries) \
            and (locked or now - d.stat().st_mtime >= PRUNE_IDLE_S)
    except OSError:
        return False


def prune_empty_owners(root: Path | None = None, owners: list[str] | None = None) -> list[str]:
    """Delete owner folders left without runs (all evicted or deleted, or a visit that never trained)
    that nobody used for ``PRUNE_IDLE_S``. Under the folder's lease lock (so no session takes the
    lease meanwhile), the folder is renamed away, then deleted. Returns the owners pruned."""
    root = root or run_dir()
    if owners is None:
        try:
            owners = [o for o in os.listdir(root) if valid_id(o)]
        except OSError:
            return []
    now, pruned = time.time(), []
    for owner in owners:
        d = root / owner
        if not _prunable(d, now):
            continue
        tomb = root / f".pruned-{secrets.token_hex(8)}"
        lock = _Mutex(d, timeout=0.0)
        try:
            with lock as got:
                if not got or not _prunable(d, now, locked=True):
                    continue
                os.rename(d, tomb)
                lock.held = False  # the lock file went with the folder (d may be made afresh now)
        except OSError:
            continue
        shutil.rmtree(tomb, ignore_errors=True)
        pruned.append(owner)
    return pruned


# ---- the writer thread ------------------------------------------------------------------------

def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1))


class Saver:
    """One writer thread per process. ``submit(folder, job)`` queues a save; a newer job for the same
    folder replaces one not yet written (only the latest state matters). ``job()`` runs in the writer
    thread: it encodes and writes the run and reports its own errors. The thread is not a daemon, so
    the interpreter's exit waits for a save in progress, and it ends after ``idle_s`` without work."""

    def __init__(self, idle_s: float = 2.0, name: str = "latent-lab-saver"):
        self.idle_s = idle_s
        self.name = name
        self._cond = threading.Condition()
        self._pending: dict[Path, Callable] = {}
        self._busy: Path | None = None
        self._thread: threading.Thread | None = None

    def submit(self, folder: Path, job: Callable) -> None:
        with self._cond:
            self._pending[folder] = job
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=False)
                self._thread.start()
            self._cond.notify()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued save is written (tests; the page never waits)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._pending:
                    self._cond.wait(self.idle_s)
                    if not self._pending:
                        self._thread = None
                        return
                folder, job = next(iter(self._pending.items()))
                del self._pending[folder]
                self._busy = folder
            try:
                job()
            except Exception:  # noqa: BLE001 (a job reports its own errors; never kill the writer)
                pass
            finally:
                with self._cond:
                    self._busy = None
                    self._cond.notify_all()


SAVER = Saver()
#: The lease heartbeats of every session's redraws (``RunStore._renew(later=True)``): a thread of their own, so that a
#: heartbeat does not wait behind a queue of saves, and a redraw never touches the disk.
LEASE_WRITER = Saver(name="latent-lab-lease")
