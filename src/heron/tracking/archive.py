"""Runs as shareable results: `export_runs` writes run directories to one ``.tar.gz``,
`import_runs` adds someone else's archive to a runs root after checking everything.

Archive format (``heron-runs-archive`` version 1): a gzip-compressed POSIX (pax) tar::

    manifest.json                          the first member
    runs/<name>/config.json                every run: config, provenance, status
    runs/<name>/provenance.json
    runs/<name>/status.json                a killed run's says "killed" (see below)
    runs/<name>/metrics.csv, eval.csv
    runs/<name>/report.md, *.png, ...      every other regular top-level file of the run named
                                           ``[A-Za-z0-9][A-Za-z0-9_.-]*`` with extension .json
                                           .csv .md .png .txt (report.md, eval_curve.png,
                                           finetune.json, switch_curve.png, dataset_card.*)
    runs/<name>/checkpoints/latest         with ``checkpoints=True``: the newest checkpoint that
    runs/<name>/checkpoints/step_N/...     verifies (state.msgpack, arrays.npz, meta.json,
                                           manifest.json) and a ``latest`` pointer to it

``manifest.json``::

    {"format": "heron-runs-archive", "version": 1, "heron": "0.1.0", "python": "3.11.7",
     "exported_at": ISO time, "checkpoints": "latest" | "none",
     "runs": [{"name", "status", "checkpoint_step", "left_out": [...],
               "files": {"config.json": {"sha256", "bytes"}, "checkpoints/step_N/...": ...}}]}

Left out of an export (and listed under ``left_out``): ``tb/`` (TensorBoard events repeat
metrics.csv), older checkpoints (kept locally only as crash fallbacks), ``imported.json``
(local bookkeeping), hidden/temporary files, symlinks and any other name or subdirectory.
Only the latest checkpoint travels: it is what evaluation, fine-tuning and resuming need.

Status: a run that is still running is refused (its files are still changing; wait for it or
stop it). A killed run (``running`` in status.json, process gone) is exported with status
``killed``: on another host a ``running`` status could never be told from a live run.
Finished and failed runs are exported byte for byte.

Import treats the archive as hostile. Nothing is unpickled anywhere (checkpoints are msgpack
+ ``np.load(allow_pickle=False)``), and the archive must pass every check before any run
appears in the root:

* a regular file starting with the gzip magic, read as a stream (``r:gz``); a truncated or
  corrupt stream, CRC errors included (the stream is read to its end), is a defect, and so is
  more than 1 MiB after the end of the tar;
* members are regular files or directories only (no symlinks, hard links, devices, FIFOs,
  sparse or contiguous files); names are relative, ``/``-separated, without ``..``, ``.``,
  empty parts, backslashes or NULs (and pass tarfile's ``data_filter`` too);
* only the layout above: ``manifest.json`` plus ``runs/<name>/<file>`` with the file names
  and extensions above and the checkpoint names; run names ``[A-Za-z0-9_][A-Za-z0-9_.-]*``;
  ``imported.json`` is reserved; each member at most once;
* size limits (`ImportLimits`): per file (from the tar header, before reading any data), per
  JSON file, in total, number of members and of runs;
* every file is hashed while it is extracted and must match the manifest's SHA-256 and size;
  no file may be missing from the manifest or the archive; every JSON file parses (bounded
  size and nesting); config/provenance/status are objects and status is finished, failed or
  killed; every checkpoint verifies against its own manifest;
* files are extracted with ``O_EXCL | O_NOFOLLOW`` into a fresh hidden temp directory inside
  the root (``.heron-import-*``, two levels deep so the DuckDB views never see it), then each
  run is renamed into place (a failed rename rolls back the ones before it).

A run whose name already exists in the root is skipped when the local copy has the same
content (every archived file has the same SHA-256 locally: importing twice is harmless);
with different content the import is refused as a whole. Every refusal is one `HeronError`
line naming the archive and the defect (exit status 2 in the CLI), and leaves the root as it
was (a root the import created is removed again).

Each imported run gets ``imported.json`` (archive name and SHA-256, import and export times,
exporting heron version). The DuckDB views do not read it; `heron runs show` prints it.
Imported runs list and query like local ones: their status.json never says ``running``, so
the killed-process detection (which only looks at ``running`` runs on this host) never fires.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import socket
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path

from heron import _fs
from heron.errors import HeronError
from heron.tracking.checkpoint import (
    ARRAYS_FILE,
    CHECKPOINTS_DIR,
    LATEST_FILE,
    META_FILE,
    STATE_FILE,
    CheckpointDefect,
    list_checkpoints,
    verify_checkpoint,
)
from heron.tracking.checkpoint import MANIFEST_FILE as CHECKPOINT_MANIFEST
from heron.tracking.run import (
    CONFIG_FILE,
    FAILED,
    FINISHED,
    KILLED,
    PROVENANCE_FILE,
    RUNNING,
    STATUS_FILE,
    default_runs_root,
    effective_status,
    resolve_run,
)

FORMAT = "heron-runs-archive"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
RUNS_DIR = "runs"
IMPORTED_FILE = "imported.json"
IMPORT_TMP_PREFIX = ".heron-import-"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
REQUIRED_FILES = (CONFIG_FILE, PROVENANCE_FILE, STATUS_FILE)
IMPORTABLE_STATUSES = (FINISHED, FAILED, KILLED)

_RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")
_RUN_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\.(?:json|csv|md|png|txt)")
_STEP_DIR = re.compile(r"step_[0-9]{1,20}")
_CHECKPOINT_FILES = (STATE_FILE, ARRAYS_FILE, META_FILE, CHECKPOINT_MANIFEST)
_LATEST_TEXT = re.compile(rb"(step_[0-9]{1,20})\n?")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_NAME = 1024
_MAX_LATEST_BYTES = 64
_MAX_TRAILING_BYTES = 1 << 20
_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"


@dataclasses.dataclass(frozen=True)
class ImportLimits:
    """What an archive may hold; more is a defect (the same limits are checked on export)."""

    max_file_bytes: int = 4 << 30
    """One file (a checkpoint holding a replay buffer can be large)."""
    max_json_bytes: int = 64 << 20
    """One JSON file."""
    max_total_bytes: int = 16 << 30
    """All files together (uncompressed)."""
    max_members: int = 200_000
    """Tar members (files and directories)."""
    max_runs: int = 10_000
    """Runs in one archive."""
    max_json_depth: int = 64
    """Nesting of arrays/objects in a JSON file."""


@dataclasses.dataclass(frozen=True)
class ExportedRun:
    name: str
    status: str
    files: int
    bytes: int
    checkpoint_step: int | None
    left_out: list[str]


@dataclasses.dataclass(frozen=True)
class ExportResult:
    archive: Path
    runs: list[ExportedRun]
    archive_bytes: int


@dataclasses.dataclass(frozen=True)
class ImportResult:
    root: Path
    imported: list[str]
    """Runs added to the root."""
    skipped: list[str]
    """Runs already in the root with the same content."""


class _Defect(Exception):
    """Something wrong with the archive; the message names it (without the archive)."""


# -- shared checks -------------------------------------------------------------------------


def _json_depth_ok(obj, max_depth: int) -> bool:
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > max_depth:
                return False
            children = value.values() if isinstance(value, dict) else value
            stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return True


def _parse_json(data: bytes, what: str, limits: ImportLimits):
    """JSON of bounded size and nesting, or _Defect naming `what`."""
    if len(data) > limits.max_json_bytes:
        raise _Defect(f"{what} is {len(data)} bytes, more than the {limits.max_json_bytes}-byte limit for JSON")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as e:
        reason = "nested too deeply" if isinstance(e, RecursionError) else "not valid JSON"
        raise _Defect(f"{what} is {reason}") from None
    if not _json_depth_ok(obj, limits.max_json_depth):
        raise _Defect(f"{what} is nested more than {limits.max_json_depth} levels deep")
    return obj


def _file_limit(relpath: str, limits: ImportLimits) -> int:
    if relpath.endswith(".json"):
        return limits.max_json_bytes
    if relpath.endswith("/" + LATEST_FILE):
        return _MAX_LATEST_BYTES
    return limits.max_file_bytes


def _now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _version() -> str:
    import heron

    return getattr(heron, "__version__", "unknown")


# -- export --------------------------------------------------------------------------------


@dataclasses.dataclass
class _Entry:
    relpath: str  # inside the run directory, "/"-separated
    source: Path | None  # a file to copy, or
    data: bytes | None  # bytes to write (status.json, checkpoints/latest)
    mtime: float
    sha256: str = ""
    size: int = 0


@dataclasses.dataclass
class _RunPlan:
    name: str
    status: str
    entries: list[_Entry]
    checkpoint_step: int | None
    left_out: list[str]


def _hash_source(entry: _Entry) -> None:
    if entry.data is not None:
        entry.sha256, entry.size = hashlib.sha256(entry.data).hexdigest(), len(entry.data)
        return
    h, n = hashlib.sha256(), 0
    with open(entry.source, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
            n += len(block)
    entry.sha256, entry.size = h.hexdigest(), n


class _HashingReader:
    def __init__(self, f):
        self._f = f
        self.hash = hashlib.sha256()

    def read(self, size=-1) -> bytes:
        block = self._f.read(size)
        self.hash.update(block)
        return block


def _plan_run(run_dir: Path, checkpoints: bool, limits: ImportLimits) -> _RunPlan:
    name = run_dir.resolve().name
    if not _RUN_NAME.fullmatch(name):
        raise HeronError(
            f"run directory name {name!r} cannot be exported (archives allow letters, digits, "
            "_ . - and no leading dot); rename the directory"
        )
    status_path = run_dir / STATUS_FILE
    status_bytes = status_path.read_bytes()
    try:
        status = json.loads(status_bytes)
    except ValueError:
        status = None
    if not isinstance(status, dict):
        raise HeronError(f"{status_path} is not valid JSON; the run directory is damaged and cannot be exported")
    state = effective_status(status)
    if state == RUNNING:
        raise HeronError(
            f"run {name} is still running (pid {status.get('pid')} on {status.get('hostname')}); "
            "wait for it to finish or stop it, then export (a killed run exports as killed)"
        )
    if state not in IMPORTABLE_STATUSES:
        raise HeronError(f"run {name} has status {state!r} in {status_path}; only finished, failed or killed runs are exported")
    if state == KILLED:
        status_bytes = _fs.to_json_bytes({**status, "status": KILLED, "recorded_status": RUNNING})

    entries: list[_Entry] = []
    left_out: list[str] = []
    checkpoint_step = None
    for entry in sorted(os.scandir(run_dir), key=lambda e: e.name):
        fname = entry.name
        if fname.startswith("."):
            continue  # temporary files of atomic writes
        if entry.is_dir(follow_symlinks=False):
            if fname == CHECKPOINTS_DIR and checkpoints:
                checkpoint_step = _plan_checkpoint(run_dir, name, entries)
            else:
                left_out.append(fname + "/")
            continue
        if not entry.is_file(follow_symlinks=False) or fname == IMPORTED_FILE or not _RUN_FILE.fullmatch(fname):
            left_out.append(fname)
            continue
        if fname == STATUS_FILE:
            entries.append(_Entry(fname, None, status_bytes, entry.stat().st_mtime))
        else:
            entries.append(_Entry(fname, Path(entry.path), None, entry.stat().st_mtime))
    present = {e.relpath for e in entries}
    missing = [f for f in REQUIRED_FILES if f not in present]
    if missing:
        raise HeronError(f"run {name} has no {', '.join(missing)}; the run directory is damaged and cannot be exported")
    for e in entries:
        _hash_source(e)
        where = f"{run_dir / e.relpath}"
        if e.size > _file_limit(e.relpath, limits):
            raise HeronError(
                f"{where} is {e.size} bytes, more than an archive may hold per file "
                f"({_file_limit(e.relpath, limits)}); it cannot be exported"
            )
        if e.relpath.endswith(".json"):
            data = e.data if e.data is not None else e.source.read_bytes()
            try:
                _parse_json(data, where, limits)
            except _Defect as d:
                raise HeronError(f"{d}; fix or remove the file before exporting run {name}") from None
    return _RunPlan(name, state, entries, checkpoint_step, left_out)


def _plan_checkpoint(run_dir: Path, name: str, entries: list[_Entry]) -> int | None:
    defects = []
    for step, path in list_checkpoints(run_dir):
        try:
            verify_checkpoint(path)
        except CheckpointDefect as d:
            defects.append(f"{path.name}: {d.defect}")
            continue
        prefix = f"{CHECKPOINTS_DIR}/{path.name}/"
        for fname in _CHECKPOINT_FILES:
            fpath = path / fname
            entries.append(_Entry(prefix + fname, fpath, None, fpath.stat().st_mtime))
        entries.append(_Entry(f"{CHECKPOINTS_DIR}/{LATEST_FILE}", None, (path.name + "\n").encode(), path.stat().st_mtime))
        return step
    if defects:
        raise HeronError(
            f"run {name} has no valid checkpoint ({'; '.join(defects)}); export it without --checkpoints"
        )
    return None


def _check_out(out: Path, force: bool) -> None:
    if not out.name.endswith(ARCHIVE_SUFFIXES):
        raise HeronError(f"archive name {out} must end in .tar.gz (or .tgz)")
    if not out.parent.is_dir():
        raise HeronError(f"directory {out.parent} does not exist; create it or pick another --out")
    if out.is_dir():
        raise HeronError(f"{out} is a directory; --out names the archive file to write")
    if out.exists() and not force:
        raise HeronError(f"{out} exists; pass --force to replace it, or pick another --out")


def _tarinfo(name: str, size: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = int(mtime) if 0 <= mtime < 2**33 else 0
    info.mode = 0o644
    info.type = tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def export_runs(
    runs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    checkpoints: bool = False,
    force: bool = False,
    limits: ImportLimits = ImportLimits(),
) -> ExportResult:
    """Write `runs` (paths, names under `root`, or unique prefixes) to the archive `out`.

    `checkpoints`: include each run's newest valid checkpoint. `force`: replace `out` if it
    exists. The archive is written to a temp file beside `out` and renamed into place.
    HeronError for a running run, a damaged run directory, or a file over `limits`.
    """
    out = Path(out)
    _check_out(out, force)
    if not runs:
        raise HeronError("no runs to export; name at least one run (see `heron runs list`)")
    root = Path(root) if root is not None else default_runs_root()
    dirs = [resolve_run(ref, root) for ref in runs]
    names: dict[str, Path] = {}
    for d in dirs:
        name = d.resolve().name
        if name in names:
            same = names[name].resolve() == d.resolve()
            raise HeronError(
                f"run {name} is given twice; name each run once" if same else
                f"two runs named {name} ({names[name]} and {d}); an archive holds one run per name"
            )
        names[name] = d
    plans = [_plan_run(d, checkpoints, limits) for d in dirs]
    total = sum(e.size for p in plans for e in p.entries)
    if total > limits.max_total_bytes:
        raise HeronError(
            f"the runs hold {total} bytes, more than an archive may hold ({limits.max_total_bytes}); "
            "export fewer runs per archive (or leave out --checkpoints)"
        )
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "heron": _version(),
        "python": platform.python_version(),
        "exported_at": _now_iso(),
        "checkpoints": "latest" if checkpoints else "none",
        "runs": [
            {
                "name": p.name,
                "status": p.status,
                "checkpoint_step": p.checkpoint_step,
                "left_out": p.left_out,
                "files": {e.relpath: {"sha256": e.sha256, "bytes": e.size} for e in p.entries},
            }
            for p in plans
        ],
    }
    manifest_bytes = _fs.to_json_bytes(manifest)

    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with open(fd, "wb") as f:
            with tarfile.open(fileobj=f, mode="w:gz", format=tarfile.PAX_FORMAT, compresslevel=6) as tar:
                tar.addfile(_tarinfo(MANIFEST, len(manifest_bytes), _dt.datetime.now().timestamp()), io.BytesIO(manifest_bytes))
                for p in plans:
                    for e in p.entries:
                        info = _tarinfo(f"{RUNS_DIR}/{p.name}/{e.relpath}", e.size, e.mtime)
                        if e.data is not None:
                            tar.addfile(info, io.BytesIO(e.data))
                            continue
                        with open(e.source, "rb") as src:
                            reader = _HashingReader(src)
                            try:
                                tar.addfile(info, reader)
                            except OSError as err:
                                raise HeronError(
                                    f"{e.source} shrank while it was exported ({err}); export again"
                                ) from None
                        if reader.hash.hexdigest() != e.sha256:
                            raise HeronError(f"{e.source} changed while it was exported; export again")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644 & ~_umask())
        if force:
            os.replace(tmp, out)
        else:
            try:
                os.link(tmp, out)  # fails if `out` appeared meanwhile: never clobber
            except FileExistsError:
                raise HeronError(f"{out} exists; pass --force to replace it, or pick another --out") from None
            except OSError:  # a file system without hard links
                if out.exists():
                    raise HeronError(f"{out} exists; pass --force to replace it, or pick another --out") from None
                os.replace(tmp, out)
            else:
                os.unlink(tmp)
        _fs.fsync_dir(out.parent)
    except OSError as err:
        raise HeronError(f"cannot write {out} ({err.strerror or err}); pick a writable --out") from None
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    exported = [
        ExportedRun(p.name, p.status, len(p.entries), sum(e.size for e in p.entries), p.checkpoint_step, p.left_out)
        for p in plans
    ]
    return ExportResult(out, exported, out.stat().st_size)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- import --------------------------------------------------------------------------------

_TYPE_NAMES = {
    tarfile.SYMTYPE: "a symlink",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.CONTTYPE: "a contiguous file",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
}


def _check_member_name(name: str) -> list[str]:
    """The parts of a safe relative member name, or _Defect."""
    if not isinstance(name, str) or not name:
        raise _Defect("a member has an empty name")
    shown = repr(name[:200])
    if len(name) > _MAX_NAME:
        raise _Defect(f"member name {shown}... is longer than {_MAX_NAME} characters")
    if "\x00" in name or "\\" in name:
        raise _Defect(f"member {shown} has a NUL or backslash in its name")
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        raise _Defect(f"member {shown} has an absolute path")
    parts = name.split("/")
    if ".." in parts:
        raise _Defect(f"member {shown} has a '..' path")
    if any(p in ("", ".") for p in parts):
        raise _Defect(f"member {shown} has an empty or '.' path part")
    return parts


def _classify(parts: list[str], is_dir: bool) -> str | None:
    """"manifest", "dir" or "file" (a run file, incl. checkpoints) for the expected layout, else None."""
    n = len(parts)
    if n == 1:
        if parts[0] == MANIFEST and not is_dir:
            return "manifest"
        return "dir" if parts[0] == RUNS_DIR and is_dir else None
    if parts[0] != RUNS_DIR or not _RUN_NAME.fullmatch(parts[1]):
        return None
    if n == 2:
        return "dir" if is_dir else None
    rest = parts[2:]
    if len(rest) == 1:
        if is_dir:
            return "dir" if rest[0] == CHECKPOINTS_DIR else None
        if rest[0] == IMPORTED_FILE or not _RUN_FILE.fullmatch(rest[0]):
            return None
        return "file"
    if rest[0] != CHECKPOINTS_DIR:
        return None
    if len(rest) == 2:
        if rest[1] == LATEST_FILE:
            return None if is_dir else "file"
        return "dir" if is_dir and _STEP_DIR.fullmatch(rest[1]) else None
    if len(rest) == 3 and _STEP_DIR.fullmatch(rest[1]) and rest[2] in _CHECKPOINT_FILES:
        return None if is_dir else "file"
    return None


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, keep: bool) -> tuple[str, bytes | None]:
    """Copy a member's data to `dest` (new file, no symlink follow): (sha256, data if `keep`)."""
    src = tar.extractfile(member)
    if src is None:  # pragma: no cover - only regular files get here
        raise _Defect(f"member {member.name!r} has no data")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(dest, flags, 0o644)
    except FileExistsError:
        raise _Defect(f"member {member.name!r} appears twice") from None
    h, n, kept = hashlib.sha256(), 0, []
    with open(fd, "wb") as f:
        while block := src.read(_CHUNK):
            n += len(block)
            if n > member.size:  # pragma: no cover - tarfile never reads past the size
                raise _Defect(f"member {member.name!r} holds more data than its header says")
            h.update(block)
            if keep:
                kept.append(block)
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    if n != member.size:
        raise _Defect(f"member {member.name!r} is truncated ({n} of {member.size} bytes)")
    if 0 <= member.mtime < 2**33:
        os.utime(dest, (member.mtime, member.mtime))
    return h.hexdigest(), (b"".join(kept) if keep else None)


@dataclasses.dataclass
class _Extracted:
    manifest: bytes | None = None
    files: dict = dataclasses.field(default_factory=dict)  # run -> {relpath: (sha256, bytes)}
    json_docs: dict = dataclasses.field(default_factory=dict)  # (run, relpath) -> parsed
    latest: dict = dataclasses.field(default_factory=dict)  # run -> pointer bytes


def _extract(archive: Path, tmp: Path, limits: ImportLimits) -> _Extracted:
    """Stream `archive` into `tmp`, checking every member; _Defect on the first problem."""
    out = _Extracted()
    members = total = 0
    with open(archive, "rb") as raw:
        if raw.read(2) != _GZIP_MAGIC:
            raise _Defect("not a gzip-compressed tar archive (write one with `heron runs export`)")
        raw.seek(0)
        try:
            with tarfile.open(fileobj=raw, mode="r:gz") as tar:
                for member in tar:
                    members += 1
                    if members > limits.max_members:
                        raise _Defect(f"more than {limits.max_members} members")
                    total = _extract_member(tar, member, tmp, limits, out, total)
                # Read the gzip stream to its end: checks the CRC and length trailer.
                trailing = 0
                while block := tar.fileobj.read(_CHUNK):
                    trailing += len(block)
                    if trailing > _MAX_TRAILING_BYTES:
                        raise _Defect("unexpected data after the end of the tar archive")
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise _Defect(f"corrupt or truncated archive ({reason})") from None
    return out


def _extract_member(tar, member: tarfile.TarInfo, tmp: Path, limits: ImportLimits, out: _Extracted, total: int) -> int:
    name = member.name
    is_dir = member.isdir()
    if not is_dir and member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        what = _TYPE_NAMES.get(member.type, f"of tar type {member.type!r}")
        raise _Defect(f"member {name[:200]!r} is {what}; only regular files and directories are allowed")
    parts = _check_member_name(name)
    try:
        tarfile.data_filter(member, os.fspath(tmp))
    except tarfile.FilterError as e:
        raise _Defect(f"member {name[:200]!r} is refused by tarfile's data filter ({e})") from None
    kind = _classify(parts, is_dir)
    if kind is None:
        raise _Defect(f"unexpected member {name[:200]!r} (not part of a heron runs archive)")
    dest = tmp.joinpath(*parts)
    if kind == "dir":
        dest.mkdir(parents=True, exist_ok=True)
        return total
    relpath = "/".join(parts[2:]) if kind == "file" else MANIFEST
    limit = _file_limit(relpath, limits)
    if member.size > limit:
        raise _Defect(f"member {name!r} is {member.size} bytes, more than the {limit}-byte limit")
    total += member.size
    if total > limits.max_total_bytes:
        raise _Defect(f"the files hold more than {limits.max_total_bytes} bytes in total")
    run = parts[1] if kind == "file" else None
    if run is not None and run not in out.files:
        if len(out.files) >= limits.max_runs:
            raise _Defect(f"more than {limits.max_runs} runs")
        out.files[run] = {}
    dest.parent.mkdir(parents=True, exist_ok=True)
    keep = kind == "manifest" or relpath.endswith("/" + LATEST_FILE)
    digest, data = _write_member(tar, member, dest, keep)
    if kind == "manifest":
        out.manifest = data
        return total
    out.files[run][relpath] = (digest, member.size)
    if relpath == f"{CHECKPOINTS_DIR}/{LATEST_FILE}":
        out.latest[run] = data
    return total


def _parse_run_json(ex: _Extracted, tmp: Path, limits: ImportLimits) -> None:
    """Parse every JSON file of every run (after the checksums: a damaged file reads as such)."""
    for run, files in ex.files.items():
        for relpath in files:
            if relpath.endswith(".json"):
                data = tmp.joinpath(RUNS_DIR, run, *relpath.split("/")).read_bytes()
                ex.json_docs[(run, relpath)] = _parse_json(data, f"{RUNS_DIR}/{run}/{relpath}", limits)


def _check_manifest(ex: _Extracted, limits: ImportLimits) -> dict:
    if ex.manifest is None:
        raise _Defect(f"no {MANIFEST} (not an archive written by `heron runs export`)")
    manifest = _parse_json(ex.manifest, MANIFEST, limits)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _Defect(f"{MANIFEST} is not a heron runs archive manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise _Defect(
            f"{MANIFEST} has format version {manifest.get('version')!r}; this heron reads version "
            f"{FORMAT_VERSION} (upgrade heron)"
        )
    runs = manifest.get("runs")
    if not isinstance(runs, list) or not runs:
        raise _Defect(f"{MANIFEST} lists no runs")
    listed: dict[str, dict] = {}
    for entry in runs:
        name = entry.get("name") if isinstance(entry, dict) else None
        files = entry.get("files") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not _RUN_NAME.fullmatch(name) or not isinstance(files, dict):
            raise _Defect(f"{MANIFEST} has a malformed run entry")
        if name in listed:
            raise _Defect(f"{MANIFEST} lists run {name} twice")
        listed[name] = files
    for name in ex.files:
        if name not in listed:
            raise _Defect(f"run {name} is in the archive but not in {MANIFEST}")
    for name, files in listed.items():
        got = ex.files.get(name, {})
        for relpath, want in files.items():
            if not (
                isinstance(want, dict)
                and isinstance(want.get("sha256"), str)
                and _SHA256.fullmatch(want["sha256"])
                and isinstance(want.get("bytes"), int)
            ):
                raise _Defect(f"{MANIFEST} has a malformed entry for {RUNS_DIR}/{name}/{relpath}")
            if relpath not in got:
                raise _Defect(f"{RUNS_DIR}/{name}/{relpath} is listed in {MANIFEST} but missing")
            digest, size = got[relpath]
            if size != want["bytes"]:
                raise _Defect(f"size mismatch in {RUNS_DIR}/{name}/{relpath}: {size} bytes, {MANIFEST} says {want['bytes']}")
            if digest != want["sha256"]:
                raise _Defect(f"checksum mismatch in {RUNS_DIR}/{name}/{relpath} (SHA-256 differs from {MANIFEST})")
        for relpath in got:
            if relpath not in files:
                raise _Defect(f"{RUNS_DIR}/{name}/{relpath} is not listed in {MANIFEST}")
    return manifest


def _check_runs(ex: _Extracted, manifest: dict, tmp: Path) -> None:
    for entry in manifest["runs"]:
        name = entry["name"]
        files = ex.files.get(name, {})
        for fname in REQUIRED_FILES:
            if fname not in files:
                raise _Defect(f"run {name} has no {fname}")
            if not isinstance(ex.json_docs[(name, fname)], dict):
                raise _Defect(f"{RUNS_DIR}/{name}/{fname} is not a JSON object")
        state = ex.json_docs[(name, STATUS_FILE)].get("status")
        if state not in IMPORTABLE_STATUSES:
            raise _Defect(
                f"{RUNS_DIR}/{name}/{STATUS_FILE} says {state!r}; an archive holds only finished, failed "
                "or killed runs"
            )
        step_dirs = []
        for _step, path in list_checkpoints(tmp / RUNS_DIR / name):  # every step_* directory, files or not
            try:
                verify_checkpoint(path)
            except CheckpointDefect as d:
                raise _Defect(f"checkpoint {RUNS_DIR}/{name}/{CHECKPOINTS_DIR}/{path.name} is corrupt ({d.defect})") from None
            step_dirs.append(path.name)
        if name in ex.latest:
            m = _LATEST_TEXT.fullmatch(ex.latest[name])
            if not m or m.group(1).decode() not in step_dirs:
                raise _Defect(f"{RUNS_DIR}/{name}/{CHECKPOINTS_DIR}/{LATEST_FILE} does not name a checkpoint in the archive")


def _same_content(local: Path, files: dict) -> bool:
    if local.is_symlink() or not local.is_dir():
        return False
    for relpath, (digest, size) in files.items():
        fpath = local.joinpath(*relpath.split("/"))
        try:
            if fpath.is_symlink() or not fpath.is_file() or fpath.stat().st_size != size:
                return False
            if _fs.sha256_file(fpath) != digest:
                return False
        except OSError:
            return False
    return True


def _fsync_tree(path: Path) -> None:
    for dirpath, _dirs, _files in os.walk(path):
        _fs.fsync_dir(dirpath)


def _created_dirs(root: Path) -> list[Path]:
    """The directories `root.mkdir(parents=True)` would create, outermost first."""
    missing = []
    p = root.absolute()
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    return missing[::-1]


def _stale_import_dirs(root: Path) -> None:
    """Remove `.heron-import-HOST-PID-*` left by an import on this host whose process is gone."""
    from heron.tracking.run import pid_alive

    host = _host_tag()
    for entry in os.scandir(root):
        if not entry.name.startswith(IMPORT_TMP_PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        fields = entry.name[len(IMPORT_TMP_PREFIX) :].split("-")
        if len(fields) >= 3 and fields[0] == host and fields[1].isdigit() and not pid_alive(int(fields[1])):
            shutil.rmtree(entry.path, ignore_errors=True)


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def import_runs(
    archive: str | os.PathLike,
    root: str | os.PathLike | None = None,
    *,
    limits: ImportLimits = ImportLimits(),
) -> ImportResult:
    """Add the runs of `archive` (written by `export_runs`) to `root` after verifying it all.

    HeronError (one line naming the archive and the defect) if anything is wrong, or if a run
    of the same name but different content exists in `root`; then `root` is left as it was.
    Runs already present with the same content are skipped.
    """
    archive = Path(archive)
    try:
        st = archive.stat()
    except FileNotFoundError:
        raise HeronError(f"archive {archive} does not exist") from None
    except OSError as e:
        raise HeronError(f"cannot read archive {archive} ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise HeronError(f"cannot import {archive}: not a regular file; pass a .tar.gz written by `heron runs export`")
    root = Path(root) if root is not None else default_runs_root()
    if root.exists() and not root.is_dir():
        raise HeronError(f"runs root {root} is a file; pass a directory (--root / $HERON_RUNS_DIR)")
    created = _created_dirs(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        _stale_import_dirs(root)
        tmp = Path(tempfile.mkdtemp(prefix=f"{IMPORT_TMP_PREFIX}{_host_tag()}-{os.getpid()}-", dir=root))
    except OSError as e:
        _remove_created(created)
        raise HeronError(f"cannot write into runs root {root} ({e.strerror or e}); pick a writable --root") from None
    placed: list[Path] = []
    done = False
    try:
        try:
            archive_sha256 = _fs.sha256_file(archive)
            ex = _extract(archive, tmp, limits)
            manifest = _check_manifest(ex, limits)
            _parse_run_json(ex, tmp, limits)
            _check_runs(ex, manifest, tmp)
        except _Defect as d:
            raise HeronError(f"cannot import {archive}: {d}; nothing was imported") from None
        new, skipped = [], []
        for entry in manifest["runs"]:
            name = entry["name"]
            target = root / name
            if os.path.lexists(target):
                if not _same_content(target, ex.files[name]):
                    raise HeronError(
                        f"cannot import {archive}: run {name} already exists in {root} with different "
                        "content; nothing was imported (import into another --root, or move the local run away)"
                    )
                skipped.append(name)
            else:
                new.append(name)
        imported_at = _now_iso()
        statuses = {entry["name"]: entry.get("status") for entry in manifest["runs"]}
        for name in new:
            run_tmp = tmp / RUNS_DIR / name
            note = {
                "archive": archive.name,
                "archive_sha256": archive_sha256,
                "imported_at": imported_at,
                "exported_at": manifest.get("exported_at"),
                "exported_with_heron": manifest.get("heron"),
                "status_at_export": statuses.get(name),
            }
            _fs.write_file_synced(run_tmp / IMPORTED_FILE, _fs.to_json_bytes(note))
            _fsync_tree(run_tmp)
        for name in new:
            target = root / name
            if os.path.lexists(target):
                raise HeronError(
                    f"cannot import {archive}: run {name} appeared in {root} during the import; "
                    "nothing was imported"
                )
            os.rename(tmp / RUNS_DIR / name, target)
            placed.append(target)
        _fs.fsync_dir(root)
        done = True
        return ImportResult(root, new, skipped)
    except OSError as e:
        raise HeronError(f"cannot import {archive} into {root} ({e.strerror or e}); nothing was imported") from None
    finally:
        if not done:
            for target in reversed(placed):  # roll back a partly placed import
                try:
                    os.rename(target, tmp / RUNS_DIR / target.name)
                except OSError:  # pragma: no cover
                    shutil.rmtree(target, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
        if not done:
            _remove_created(created)


def _remove_created(created: list[Path]) -> None:
    for p in reversed(created):
        try:
            p.rmdir()  # only if empty
        except OSError:
            break
