"""Atomic, verified checkpoints — no pickle anywhere.

A checkpoint of step S is the directory ``{run_dir}/checkpoints/step_{S:012d}/``::

    state.msgpack   the state pytree, `flax.serialization.to_bytes` (msgpack)
    arrays.npz      large host arrays (e.g. the replay buffer), `np.savez(allow_pickle=False)`
    meta.json       {"step", "saved_at", "log_bytes", "typed_keys", "meta": <caller's dict>}
    manifest.json   {"format", "version", "step", "files": {name: {"sha256", "bytes"}}}

Writing is atomic: everything goes into a fresh ``checkpoints/.tmp-*`` directory, each file
is fsync-ed, ``manifest.json`` is written last, the directory is fsync-ed and renamed to
``step_{S:012d}``, and the ``checkpoints/latest`` pointer (a text file naming the directory)
is replaced with ``os.replace``. Then the last ``keep`` checkpoints are kept, checkpoints of
steps *after* S are deleted (they belong to a timeline abandoned by resuming from an earlier
checkpoint) and stale ``.tmp-*`` directories (a writer killed mid-save) are removed.

Loading (`load_latest_checkpoint`) never trusts a directory without checking it: the
manifest must exist and parse, every file must be there with its recorded size and
SHA-256. The newest checkpoint that passes is loaded; corrupt ones are skipped with a
warning; if none passes, `HeronError` names the directory and the defect. ``latest`` is a
convenience for people and tools — the loader scans the ``step_*`` directories itself, so
a crash between the rename and the pointer update loses nothing. ``.tmp-*`` directories are
never loaded.

``meta.json`` also records the byte lengths of the run's ``metrics.csv``/``eval.csv`` when
the checkpoint was taken (after fsync-ing them); `Run.rewind_logs` truncates the logs back
to them on resume, so a resumed run's history equals an uninterrupted one.

JAX PRNG keys: the tree may hold new-style typed keys (``jax.random.key``) — they are stored
as their raw ``jax.random.key_data`` (uint32) and re-wrapped with the template leaf's PRNG
implementation on load. Raw uint32 keys (``jax.random.PRNGKey``) are plain arrays and need
nothing special. Restored leaves are `jax.Array` where the template leaf is one, numpy arrays
where it is numpy, and Python scalars where it is a Python scalar; shapes and dtypes must
match the template exactly (else `HeronError`: the checkpoint belongs to another config).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from heron.errors import HeronError
from heron import _fs
from heron.tracking.metrics import EVAL_FILE, METRICS_FILE

CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
STATE_FILE = "state.msgpack"
ARRAYS_FILE = "arrays.npz"
META_FILE = "meta.json"
MANIFEST_FILE = "manifest.json"
FORMAT = "heron-checkpoint"
FORMAT_VERSION = 1
TMP_PREFIX = ".tmp-"
_STEP_DIR = re.compile(r"^step_(\d+)$")
_LOG_FILES = (METRICS_FILE, EVAL_FILE)
_RESERVED_ARRAY_NAMES = ("file", "allow_pickle")


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint. Unpacks as ``step, tree, arrays, meta = checkpoint``."""

    step: int
    tree: Any
    arrays: dict[str, np.ndarray]
    meta: dict
    path: Path
    log_bytes: dict[str, int] | None = None

    def __iter__(self) -> Iterator:
        return iter((self.step, self.tree, self.arrays, self.meta))


class CheckpointDefect(Exception):
    """A checkpoint directory failed verification; `defect` says how."""

    def __init__(self, path: Path, defect: str):
        super().__init__(f"{path}: {defect}")
        self.path = path
        self.defect = defect


def step_dir_name(step: int) -> str:
    return f"step_{int(step):012d}"


def checkpoints_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of every ``step_*`` directory, newest first; unverified."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    found = []
    for entry in os.scandir(root):
        m = _STEP_DIR.match(entry.name)
        if m and entry.is_dir():
            found.append((int(m.group(1)), Path(entry.path)))
    return sorted(found, reverse=True)


# -- pytree encoding -----------------------------------------------------------------------


def _is_typed_key(x) -> bool:
    import jax

    dtype = getattr(x, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _encode_tree(tree, to_host: bool = True) -> tuple[Any, dict[str, str]]:
    """Replace typed PRNG keys by their uint32 data; returns (tree, {keypath: impl})."""
    import jax

    typed: dict[str, str] = {}

    def enc(path, x):
        if _is_typed_key(x):
            typed[jax.tree_util.keystr(path)] = str(jax.random.key_impl(x))
            return jax.random.key_data(x)
        return x

    encoded = jax.tree_util.tree_map_with_path(enc, tree)
    if to_host:
        encoded = jax.device_get(encoded)  # one batched device->host transfer
    return encoded, typed


def _describe(x) -> str:
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"{x.dtype}{list(x.shape)}"
    return type(x).__name__


def _decode_tree(template, data: bytes, where: Path):
    """Restore `data` into the structure of `template`, checking every leaf."""
    import jax
    import jax.numpy as jnp
    from flax import serialization

    encoded_template, _ = _encode_tree(template, to_host=False)
    try:
        restored = serialization.from_bytes(encoded_template, data)
    except (ValueError, KeyError, TypeError) as e:
        raise HeronError(
            f"checkpoint {where} does not match the current state structure ({e}); resume with "
            "the same algorithm and config the run was started with"
        ) from None

    def dec(path, tmpl, value):
        name = jax.tree_util.keystr(path) or "<root>"
        if _is_typed_key(tmpl):
            want = jax.random.key_data(tmpl)
            if np.shape(value) != want.shape or np.asarray(value).dtype != want.dtype:
                raise _mismatch(where, name, value, want)
            return jax.random.wrap_key_data(
                jnp.asarray(value, dtype=want.dtype), impl=jax.random.key_impl(tmpl)
            )
        if isinstance(tmpl, (jax.Array, np.ndarray, np.generic)):
            arr = np.asarray(value)
            if arr.shape != np.shape(tmpl) or arr.dtype != tmpl.dtype:
                raise _mismatch(where, name, value, tmpl)
            if isinstance(tmpl, jax.Array):
                return jnp.asarray(arr)
            if isinstance(tmpl, np.generic):
                return arr[()]
            return arr
        return value

    return jax.tree_util.tree_map_with_path(dec, template, restored)


def _mismatch(where: Path, name: str, got, want) -> HeronError:
    return HeronError(
        f"checkpoint {where} does not match the current state: leaf {name} is {_describe(got)} "
        f"in the checkpoint but {_describe(want)} now; resume with the same algorithm and config "
        "the run was started with"
    )


# -- saving --------------------------------------------------------------------------------


def _check_arrays(arrays: dict) -> dict[str, np.ndarray]:
    out = {}
    for name, value in (arrays or {}).items():
        if not isinstance(name, str) or not name or name in _RESERVED_ARRAY_NAMES:
            raise ValueError(f"checkpoint array name {name!r} is not allowed")
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise TypeError(
                f"checkpoint array {name!r} has dtype object; only plain numeric arrays are "
                "stored (no pickle)"
            )
        out[name] = arr
    return out


def log_bytes(run_dir: Path) -> dict[str, int]:
    """Byte length of each log file of the run (fsync-ed first), to cut the logs back to on resume."""
    sizes = {}
    for fname in _LOG_FILES:
        fpath = run_dir / fname
        if fpath.is_file():
            _fs.fsync_file(fpath)
            sizes[fname] = fpath.stat().st_size
    return sizes


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    tree,
    arrays: dict[str, np.ndarray] | None = None,
    meta: dict | None = None,
    *,
    keep: int = 2,
) -> Path:
    """Write checkpoint `step` atomically into `run_dir/checkpoints/`; returns its path."""
    from flax import serialization

    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    step = int(step)
    if step < 0:
        raise ValueError(f"checkpoint step must be >= 0, got {step}")
    run_dir = Path(run_dir)
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)

    encoded, typed_keys = _encode_tree(tree)
    state_bytes = serialization.to_bytes(encoded)
    arrays = _check_arrays(arrays or {})
    meta_doc = {
        "step": step,
        "saved_at": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "log_bytes": log_bytes(run_dir),
        "typed_keys": typed_keys,
        "meta": dict(meta or {}),
    }
    meta_bytes = _fs.to_json_bytes(meta_doc)

    name = step_dir_name(step)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{name}-", dir=root))
    aside = None
    try:
        _fs.write_file_synced(tmp / STATE_FILE, state_bytes)
        with open(tmp / ARRAYS_FILE, "wb") as f:
            np.savez(f, allow_pickle=False, **arrays)
            f.flush()
            os.fsync(f.fileno())
        _fs.write_file_synced(tmp / META_FILE, meta_bytes)
        files = {
            fname: {"sha256": _fs.sha256_file(tmp / fname), "bytes": (tmp / fname).stat().st_size}
            for fname in (STATE_FILE, ARRAYS_FILE, META_FILE)
        }
        manifest = {"format": FORMAT, "version": FORMAT_VERSION, "step": step, "files": files}
        _fs.write_file_synced(tmp / MANIFEST_FILE, _fs.to_json_bytes(manifest))
        _fs.fsync_dir(tmp)
        final = root / name
        if final.exists():  # saving the same step again (e.g. after a resume)
            aside = root / f"{TMP_PREFIX}old-{name}-{os.urandom(3).hex()}"
            os.rename(final, aside)
        os.rename(tmp, final)
        _fs.fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    _fs.atomic_write_bytes(root / LATEST_FILE, (name + "\n").encode())
    _prune(root, step, keep)
    return final


def _prune(root: Path, current_step: int, keep: int) -> None:
    kept = 0
    for entry in sorted(os.scandir(root), key=lambda e: e.name, reverse=True):
        if entry.name.startswith(TMP_PREFIX):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            continue
        m = _STEP_DIR.match(entry.name)
        if not m or not entry.is_dir(follow_symlinks=False):
            continue
        step = int(m.group(1))
        if step > current_step:
            shutil.rmtree(entry.path, ignore_errors=True)  # abandoned timeline
        elif kept < keep:
            kept += 1
        else:
            shutil.rmtree(entry.path, ignore_errors=True)


# -- loading -------------------------------------------------------------------------------


def verify_checkpoint(path: str | os.PathLike) -> dict:
    """The manifest of checkpoint directory `path`, or CheckpointDefect saying what is wrong."""
    path = Path(path)
    mpath = path / MANIFEST_FILE
    if not mpath.is_file():
        raise CheckpointDefect(path, f"no {MANIFEST_FILE}: the write never completed")
    try:
        manifest = json.loads(mpath.read_bytes())
        files = manifest["files"]
        if manifest.get("format") != FORMAT:
            raise ValueError("not a heron checkpoint")
    except (ValueError, KeyError, TypeError):
        raise CheckpointDefect(path, f"unreadable {MANIFEST_FILE}") from None
    if manifest.get("version") != FORMAT_VERSION:
        raise CheckpointDefect(path, f"unsupported checkpoint format version {manifest.get('version')}")
    m = _STEP_DIR.match(path.name)
    if m and int(m.group(1)) != manifest.get("step"):
        raise CheckpointDefect(path, f"{MANIFEST_FILE} says step {manifest.get('step')}")
    for fname in (STATE_FILE, ARRAYS_FILE, META_FILE):
        if fname not in files:
            raise CheckpointDefect(path, f"{MANIFEST_FILE} does not list {fname}")
    for fname, entry in files.items():
        fpath = path / fname
        if not fpath.is_file():
            raise CheckpointDefect(path, f"missing {fname}")
        size = fpath.stat().st_size
        if size != entry.get("bytes"):
            raise CheckpointDefect(
                path, f"size mismatch in {fname}: {size} bytes, manifest says {entry.get('bytes')}"
            )
        if _fs.sha256_file(fpath) != entry.get("sha256"):
            raise CheckpointDefect(path, f"sha256 mismatch in {fname}")
    return manifest


def load_checkpoint(path: str | os.PathLike, template_tree) -> Checkpoint:
    """Verify and load one checkpoint directory (HeronError if it is corrupt)."""
    path = Path(path)
    try:
        verify_checkpoint(path)
    except CheckpointDefect as d:
        raise HeronError(
            f"checkpoint {path} is corrupt ({d.defect}); delete it or load another checkpoint"
        ) from None
    return _load_verified(path, template_tree)


def _load_verified(path: Path, template_tree) -> Checkpoint:
    try:
        meta_doc = json.loads((path / META_FILE).read_bytes())
        with np.load(path / ARRAYS_FILE, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as e:  # hashes matched, so this is a writer bug, not a torn file
        raise HeronError(f"checkpoint {path} cannot be read ({e}); delete it") from None
    tree = _decode_tree(template_tree, (path / STATE_FILE).read_bytes(), path)
    return Checkpoint(
        step=int(meta_doc["step"]),
        tree=tree,
        arrays=arrays,
        meta=meta_doc.get("meta", {}),
        path=path,
        log_bytes=meta_doc.get("log_bytes"),
    )


def load_latest_checkpoint(run_dir: str | os.PathLike, template_tree) -> Checkpoint | None:
    """The newest valid checkpoint of `run_dir` restored into `template_tree`'s structure.

    Returns None if the run has no checkpoint. Corrupt or partial checkpoints are skipped
    (with a warning) in favour of the previous valid one; if none is valid, HeronError.
    ``.tmp-*`` directories (writes that never finished) are ignored.
    """
    entries = list_checkpoints(run_dir)
    if not entries:
        return None
    defects: list[CheckpointDefect] = []
    for _step, path in entries:
        try:
            verify_checkpoint(path)
        except CheckpointDefect as d:
            defects.append(d)
            continue
        checkpoint = _load_verified(path, template_tree)
        if defects:
            skipped = "; ".join(f"{d.path.name} ({d.defect})" for d in defects)
            warnings.warn(
                f"skipped corrupt checkpoint(s) in {checkpoints_dir(run_dir)}: {skipped}; "
                f"resuming from {path.name}",
                stacklevel=2,
            )
        return checkpoint
    newest = defects[0]
    others = f" (and {len(defects) - 1} older corrupt one(s))" if len(defects) > 1 else ""
    raise HeronError(
        f"checkpoint {newest.path} is corrupt ({newest.defect}){others} and no valid checkpoint "
        f"is left to resume from; delete {checkpoints_dir(run_dir)} to restart the run from "
        "scratch, or start a new run"
    )
