"""One run = one directory.

Layout of ``{root}/{prefix}-{YYYYmmdd-HHMMSS}-{hex}/``::

    config.json       the resolved config (plus ``seed`` and ``seeds`` if the caller left them out)
    provenance.json   git commit/dirty, package versions, platform, devices, seed, command line
    status.json       running | finished | failed, pid, host, times, last step, resumed count
                      and `resumes` (time, host, from_step, git commit/dirty of each resume)
    metrics.csv       step,name,value,wall_time         (append-only, see heron.tracking.metrics)
    eval.csv          step,seed,episode,return          (append-only)
    tb/               TensorBoard events
    checkpoints/      step_000000001000/ ... + latest   (see heron.tracking.checkpoint)
    imported.json     only in runs added by `heron runs import` (see heron.tracking.archive)

The root is ``$HERON_RUNS_DIR`` if set, else ``./runs``.

``status.json`` is replaced atomically. A process killed by SIGKILL cannot update it, so it
keeps saying ``running``; readers (`read_status`) report ``killed`` when it says running, the
host is this host and the recorded process is gone (pid not alive, or alive but started at a
different time, i.e. a reused pid). On another host a ``running`` status is reported as is.

Multi-seed runs: one directory may hold N seeds trained together (vmap); ``config.json`` has
``seeds: N`` and metrics follow the ``name`` + ``name/seed{i}`` convention of
`heron.tracking.metrics`; evaluations carry a ``seed`` column.

Typical use by a training driver::

    run = Run.create(None, "sac-pendulum", cfg_dict, sys.argv, seed=0, seeds=4)
    with run:                                   # finish("finished") or ("failed", error)
        run.log(step, metrics)                  # scalars or [n_seeds] arrays
        run.log_eval(step, returns)             # [episodes] or [n_seeds, episodes]
        run.save_checkpoint(step, state, {"buffer_obs": obs, ...}, {"buffer_size": n})

    # resume
    run = Run.open(path)                        # inspection handle: cannot log yet
    ckpt = run.load_latest_checkpoint(template_state)   # None if no checkpoint
    run.resume(ckpt)                            # takes the run over (refused while its process
    with run: ...                               # lives), rewinds logs to ckpt, resumed += 1

``run.rewind_logs(ckpt or ckpt.step or None)`` on an inspection handle does the same as
``run.resume(ckpt)``.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import socket
import time
import warnings
from pathlib import Path

from heron.errors import HeronError
from heron import _fs
from heron.tracking.metrics import (
    EVAL_FILE,
    EVAL_HEADER,
    METRICS_FILE,
    METRICS_HEADER,
    MetricsWriter,
)

CONFIG_FILE = "config.json"
PROVENANCE_FILE = "provenance.json"
STATUS_FILE = "status.json"
RUNS_DIR_ENV = "HERON_RUNS_DIR"

RUNNING, FINISHED, FAILED, KILLED = "running", "finished", "failed", "killed"
FINAL_STATUSES = (FINISHED, FAILED)


def default_runs_root() -> Path:
    """`$HERON_RUNS_DIR` if set, else `./runs`."""
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs")


def _now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


# -- liveness ------------------------------------------------------------------------------


def process_start_ticks(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot (Linux /proc), None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    # comm (field 2) may contain spaces/parentheses: split after the last ')'.
    fields = data[data.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 overall
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Whether process `pid` exists on this host (and, if given, started at `start_ticks`)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except OSError:
        return False
    if start_ticks is not None:
        now_ticks = process_start_ticks(pid)
        if now_ticks is not None and now_ticks != start_ticks:
            return False  # pid reused by another process
    return True


def effective_status(status: dict, hostname: str | None = None) -> str:
    """The status to show: ``killed`` for a `running` run whose process is gone (this host)."""
    state = status.get("status") or "unknown"
    if state != RUNNING:
        return state
    hostname = hostname or socket.gethostname()
    if status.get("hostname") == hostname and not pid_alive(
        status.get("pid"), status.get("pid_start_ticks")
    ):
        return KILLED
    return RUNNING


def read_status(run_dir: str | os.PathLike) -> dict:
    """status.json with ``status`` replaced by the effective status (``killed`` detection)."""
    status = _fs.read_json(Path(run_dir) / STATUS_FILE)
    status["recorded_status"] = status.get("status")
    status["status"] = effective_status(status)
    return status


# -- locating runs -------------------------------------------------------------------------


def is_run_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / STATUS_FILE).is_file()


def check_run_dir(path: str | os.PathLike) -> Path:
    """`path` as a Path, or HeronError if it is missing or not a run directory."""
    path = Path(path)
    if not path.exists():
        raise HeronError(f"run directory {path} does not exist; `heron runs list` shows the runs")
    if not path.is_dir():
        raise HeronError(f"{path} is a file, not a run directory; pass a run directory")
    if not is_run_dir(path):
        raise HeronError(
            f"{path} is not a run directory (no {STATUS_FILE}); pass a directory made by "
            "`heron train`, e.g. one listed by `heron runs list`"
        )
    return path


def resolve_run(ref: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """A run given as a path, a name under `root`, or a unique prefix of a name."""
    ref_path = Path(ref)
    if ref_path.exists():
        return check_run_dir(ref_path)
    root = Path(root) if root is not None else default_runs_root()
    candidate = root / ref_path
    if candidate.exists():
        return check_run_dir(candidate)
    if ref_path.parent == Path(".") and root.is_dir():
        matches = sorted(
            p for p in root.iterdir() if p.name.startswith(str(ref)) and is_run_dir(p)
        )
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            shown = ", ".join(p.name for p in matches[:5])
            more = f" (and {len(matches) - 5} more)" if len(matches) > 5 else ""
            raise HeronError(f"run {ref!r} is ambiguous in {root}: {shown}{more}; give the full name")
    raise HeronError(
        f"no run {str(ref)!r} (not a path, nor a run under {root}); "
        "`heron runs list` shows the runs, --root or $HERON_RUNS_DIR picks another root"
    )


def _sanitize_prefix(prefix: str) -> str:
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "-", prefix or "").strip("-.")
    return prefix or "run"


# -- the run -------------------------------------------------------------------------------


class Run:
    """A run directory, opened for writing (`create`, or `open` + `resume`) or inspection."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        writable: bool,
        fsync_every: float = 5.0,
        tensorboard: bool = True,
    ):
        self.path = Path(path)
        self.fsync_every = fsync_every
        self.tensorboard = tensorboard
        self._writable = writable
        self._writer: MetricsWriter | None = None
        self._status: dict | None = None
        self._last_step: int | None = None
        self._last_status_write = time.monotonic()
        self._config: dict | None = None
        self._provenance: dict | None = None
        if writable:
            self._writer = MetricsWriter(
                self.path, fsync_every=fsync_every, tensorboard=tensorboard
            )

    # -- construction ------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        root: str | os.PathLike | None,
        name_prefix: str,
        config: dict,
        argv: list[str],
        seed: int,
        *,
        seeds: int = 1,
        fsync_every: float = 5.0,
        tensorboard: bool = True,
    ) -> Run:
        """Make a new unique run directory under `root` (None: `default_runs_root()`)."""
        from heron.tracking.provenance import collect_provenance

        root = Path(root) if root is not None else default_runs_root()
        if root.exists() and not root.is_dir():
            raise HeronError(f"runs root {root} is a file; pass a directory (--root / $HERON_RUNS_DIR)")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise HeronError(
                f"cannot create runs root {root} ({e.strerror}); pick a writable directory "
                f"with ${RUNS_DIR_ENV}"
            ) from None
        config_out = dict(config)
        config_out.setdefault("seed", seed)
        config_out.setdefault("seeds", seeds)
        # Serialise first: a config that is not JSON fails before any directory exists.
        config_bytes = _fs.to_json_bytes(config_out)
        provenance_bytes = _fs.to_json_bytes(collect_provenance(list(argv), seed))
        prefix = _sanitize_prefix(name_prefix)
        for _ in range(100):
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = root / f"{prefix}-{stamp}-{os.urandom(3).hex()}"
            try:
                path.mkdir()
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover - 100 collisions of 24 random bits
            raise RuntimeError(f"could not make a unique run directory under {root}")

        try:
            _fs.write_file_synced(path / CONFIG_FILE, config_bytes)
            _fs.write_file_synced(path / PROVENANCE_FILE, provenance_bytes)
            for fname, header in ((METRICS_FILE, METRICS_HEADER), (EVAL_FILE, EVAL_HEADER)):
                _fs.write_file_synced(path / fname, header)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        run = cls(path, writable=True, fsync_every=fsync_every, tensorboard=tensorboard)
        run._config = config_out
        now = time.time()
        run._write_status(
            {
                "name": path.name,
                "status": RUNNING,
                "pid": os.getpid(),
                "pid_start_ticks": process_start_ticks(os.getpid()),
                "hostname": socket.gethostname(),
                "start_time": _now_iso(),
                "start_unix": now,
                "end_time": None,
                "error": None,
                "resumed": 0,
                "step": None,
            }
        )  # written last: a directory is a run once status.json exists
        return run

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        fsync_every: float = 5.0,
        tensorboard: bool = True,
    ) -> Run:
        """Open an existing run for inspection; call `resume` before logging to it."""
        path = check_run_dir(path)
        try:
            _fs.read_json(path / STATUS_FILE)
        except ValueError:
            raise HeronError(
                f"{path / STATUS_FILE} is not valid JSON; the run directory is damaged; "
                "start a new run"
            ) from None
        return cls(path, writable=False, fsync_every=fsync_every, tensorboard=tensorboard)

    # -- reading -----------------------------------------------------------------------
    @property
    def owned(self) -> bool:
        """Whether this process writes the run (created or resumed it); a run only opened is not."""
        return self._writable

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> dict:
        if self._config is None:
            self._config = _fs.read_json(self.path / CONFIG_FILE)
        return self._config

    @property
    def provenance(self) -> dict:
        if self._provenance is None:
            self._provenance = _fs.read_json(self.path / PROVENANCE_FILE)
        return self._provenance

    @property
    def status(self) -> dict:
        """status.json with ``killed`` detection (see `read_status`)."""
        return read_status(self.path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    # -- status ------------------------------------------------------------------------
    def _write_status(self, status: dict, *, sync: bool = True) -> None:
        self._status = status
        _fs.atomic_write_json(self.path / STATUS_FILE, status, sync=sync)
        self._last_status_write = time.monotonic()

    def _recorded_status(self) -> dict:
        if self._status is None:
            self._status = _fs.read_json(self.path / STATUS_FILE)
        return self._status

    def _require_writable(self) -> MetricsWriter:
        if not self._writable or self._writer is None:
            raise RuntimeError(
                f"{self!r} is open for inspection only (or finished); call run.resume(checkpoint) "
                "(or run.rewind_logs(checkpoint)) before logging or checkpointing"
            )
        return self._writer

    def _note_step(self, step: int) -> None:
        self._last_step = step
        if time.monotonic() - self._last_status_write >= self.fsync_every:
            status = dict(self._recorded_status(), step=step)
            self._write_status(status, sync=False)

    # -- logging -----------------------------------------------------------------------
    def log(self, step: int, metrics: dict) -> None:
        """Append scalars (or [n_seeds] arrays, see heron.tracking.metrics) at `step`."""
        self._require_writable().log(step, metrics)
        self._note_step(int(step))

    def log_eval(self, step: int, returns) -> None:
        """Append evaluation episode returns: [episodes] or [n_seeds, episodes]."""
        self._require_writable().log_eval(step, returns)
        self._note_step(int(step))

    def sync(self) -> None:
        """fsync the logs now (also done every `fsync_every` seconds and on finish)."""
        if self._writer is not None:
            self._writer.sync()

    # -- checkpoints -------------------------------------------------------------------
    def save_checkpoint(
        self, step: int, tree, arrays: dict | None = None, meta: dict | None = None, *, keep: int = 2
    ) -> Path:
        """`heron.tracking.checkpoint.save_checkpoint` into this run (logs fsync-ed first)."""
        from heron.tracking.checkpoint import save_checkpoint

        self._require_writable().sync()
        path = save_checkpoint(self.path, step, tree, arrays or {}, meta or {}, keep=keep)
        status = dict(self._recorded_status(), step=int(step), checkpoint_step=int(step))
        self._write_status(status, sync=False)
        return path

    def load_latest_checkpoint(self, template_tree):
        """`heron.tracking.checkpoint.load_latest_checkpoint` for this run."""
        from heron.tracking.checkpoint import load_latest_checkpoint

        return load_latest_checkpoint(self.path, template_tree)

    # -- resume ------------------------------------------------------------------------
    def rewind_logs(self, checkpoint) -> None:
        """Cut metrics.csv / eval.csv back to their lengths when `checkpoint` was saved.

        `checkpoint` is what `load_latest_checkpoint` returned, or its step (an int; the
        lengths are read from that checkpoint's meta.json), or None / 0 without a
        checkpoint to rewind to an empty history (restart from scratch). TensorBoard is
        reopened with ``purge_step = step + 1``, so events logged after the checkpoint are
        hidden while the ones logged *at* the checkpoint step (before it was saved) stay,
        matching the CSV files.

        On a run opened for inspection (`Run.open`) this is `resume(checkpoint)`: the run
        is taken over by this process first (status ``running``, ``resumed`` += 1).
        """
        if not self._writable:
            self.resume(checkpoint)
            return
        self._truncate_logs(*self._rewind_target(checkpoint))

    def _rewind_target(self, checkpoint) -> tuple[int | None, dict[str, int]]:
        """(step, {log file: byte length}) to rewind to."""
        empty = {METRICS_FILE: len(METRICS_HEADER), EVAL_FILE: len(EVAL_HEADER)}
        if checkpoint is None:
            return None, empty
        if hasattr(checkpoint, "log_bytes") and hasattr(checkpoint, "step"):
            return int(checkpoint.step), dict(checkpoint.log_bytes or {})
        if not hasattr(checkpoint, "__index__"):
            raise TypeError(
                f"rewind_logs takes a Checkpoint, a step or None, got {type(checkpoint).__name__}"
            )
        from heron.tracking.checkpoint import META_FILE, checkpoints_dir, step_dir_name

        step = int(checkpoint)
        meta_path = checkpoints_dir(self.path) / step_dir_name(step) / META_FILE
        if not meta_path.is_file():
            if step == 0:
                return None, empty
            raise ValueError(
                f"{self.path} has no checkpoint of step {step} to rewind the logs to; pass the "
                "Checkpoint returned by load_latest_checkpoint"
            )
        return step, dict(_fs.read_json(meta_path).get("log_bytes") or {})

    def _truncate_logs(self, step: int | None, sizes: dict[str, int]) -> None:
        if self._writer is not None:
            self._writer.close()
        for fname, header in ((METRICS_FILE, METRICS_HEADER), (EVAL_FILE, EVAL_HEADER)):
            size = sizes.get(fname)
            if size is None:
                continue
            fpath = self.path / fname
            current = fpath.stat().st_size if fpath.exists() else 0
            if current < size:
                warnings.warn(
                    f"{fpath} has {current} bytes but the checkpoint recorded {size}; "
                    "log rows between the last fsync and the crash are lost",
                    stacklevel=3,
                )
            if current == 0:
                _fs.write_file_synced(fpath, header)
            elif current > size:
                with open(fpath, "r+b") as f:
                    f.truncate(max(size, len(header)))
                    f.flush()
                    os.fsync(f.fileno())
        self._writer = MetricsWriter(
            self.path,
            fsync_every=self.fsync_every,
            tensorboard=self.tensorboard,
            purge_step=0 if step is None else step + 1,
        )
        self._last_step = step

    def resume(self, checkpoint=None, *, force: bool = False) -> None:
        """Take over this run in this process: rewind logs to `checkpoint`, resumed += 1.

        `checkpoint` as for `rewind_logs`. Refuses (HeronError) while the recorded process
        still runs, unless `force`.
        """
        recorded = _fs.read_json(self.path / STATUS_FILE)
        state = effective_status(recorded)
        if state == RUNNING and recorded.get("pid") != os.getpid() and not force:
            raise HeronError(
                f"run {self.name} is still running (pid {recorded.get('pid')} on "
                f"{recorded.get('hostname')}); stop that process first, or pass force=True "
                "if it is dead"
            )
        from heron.tracking.provenance import git_info

        step, sizes = self._rewind_target(checkpoint)
        self._writable = True
        self._truncate_logs(step, sizes)
        now = _now_iso()
        git = git_info() or {}
        status = dict(recorded)
        status["resumes"] = list(recorded.get("resumes") or []) + [
            {
                "time": now,
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "from_step": step,
                "git_commit": git.get("commit"),
                "git_dirty": git.get("dirty"),
            }
        ]
        status.update(
            status=RUNNING,
            pid=os.getpid(),
            pid_start_ticks=process_start_ticks(os.getpid()),
            hostname=socket.gethostname(),
            end_time=None,
            error=None,
            resumed=int(recorded.get("resumed") or 0) + 1,
            last_resume_time=now,
            resumed_from_step=step,
            step=step,
        )
        status.pop("eval", None)  # summary cache of a final run; stale once it runs again
        self._write_status(status)

    def eval_table(self) -> list[tuple[int, list[float]]]:
        """(step, every episode return of that evaluation, seed-major) in step order."""
        from heron.tracking.query import eval_rows

        return eval_rows(self.path)

    # -- end ---------------------------------------------------------------------------
    def finish(self, status: str = FINISHED, error: str | None = None) -> None:
        """Close the logs and record the final status: ``finished`` or ``failed``."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"final status must be one of {FINAL_STATUSES}, got {status!r}")
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        recorded = dict(self._recorded_status())
        recorded.update(status=status, end_time=_now_iso(), error=error)
        if self._last_step is not None:
            recorded["step"] = self._last_step
        recorded["eval"] = self._eval_summary_for_status()
        self._write_status(recorded)
        self._writable = False

    def _eval_summary_for_status(self) -> dict | None:
        """The final eval summary cached in status.json, so `runs list` skips eval.csv."""
        from heron.tracking.query import eval_summary

        try:
            summary = eval_summary(self.path)
        except Exception as e:  # never lose the final status over a summary
            warnings.warn(f"could not summarise {self.path / EVAL_FILE}: {e}", stacklevel=3)
            return None
        if summary is None:
            return {"evaluations": 0}
        return {k: summary[k] for k in ("evaluations", "last_step", "last_mean", "best_step", "best_mean")}

    def close(self) -> None:
        """Close the log files without changing the status (e.g. a paused, resumable run)."""
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._writable:
            return
        if exc_type is None:
            self.finish(FINISHED)
        else:
            text = str(exc).strip().splitlines()[0] if exc is not None and str(exc).strip() else ""
            message = f"{exc_type.__name__}: {text}"[:2000] if text else exc_type.__name__
            self.finish(FAILED, message)
