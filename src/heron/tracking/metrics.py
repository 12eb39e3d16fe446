"""The append-only metrics store of one run: `metrics.csv`, `eval.csv` and TensorBoard.

Files (long format, one row per scalar, header on the first line):

* ``metrics.csv``: ``step,name,value,wall_time`` — every scalar passed to `Run.log`;
* ``eval.csv``: ``step,seed,episode,return`` — every evaluation episode passed to
  `Run.log_eval`;
* ``tb/``: the same scalars as TensorBoard events (tensorboardX). Evaluations appear there as
  ``eval/return`` (mean over all episodes and seeds) and, for multi-seed runs,
  ``eval/return/seed{i}``.

Values are written with ``repr(float)`` (shortest exact round trip; ``nan``/``inf`` allowed).
Each call is flushed to the OS at once and fsync-ed at most every ``fsync_every`` seconds, so
a process crash loses nothing and a machine crash loses at most the last interval. A torn
last line (machine crash mid-write) is skipped by the readers in `heron.tracking.query` and
cut off by `Run.rewind_logs` on resume.

Multi-seed runs (N seeds trained by one vmapped program in one run directory): pass a metric
value of shape ``[N]``; it is stored as ``name`` (the mean over seeds) plus ``name/seed{i}``
for each seed. Readers that want a mean ± spread across seeds look for the ``/seed{i}``
series; readers that want one number read ``name``. A shape-``[1]`` value is stored as the
plain ``name`` only.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

METRICS_FILE = "metrics.csv"
EVAL_FILE = "eval.csv"
TB_DIR = "tb"
METRICS_HEADER = b"step,name,value,wall_time\n"
EVAL_HEADER = b"step,seed,episode,return\n"
EVAL_METRIC = "eval/return"  # virtual metric name served from eval.csv
SEED_SEP = "/seed"


def seed_metric_name(name: str, seed: int) -> str:
    return f"{name}{SEED_SEP}{seed}"


def _csv_field(name: str) -> str:
    if any(c in name for c in ',"\n\r'):
        return '"' + name.replace('"', '""') + '"'
    return name


def _to_host(metrics: dict) -> dict:
    """One device->host transfer for a dict of (possibly jax) scalars/arrays."""
    jax = sys.modules.get("jax")
    if jax is not None:
        metrics = jax.device_get(metrics)
    return metrics


def expand_metrics(metrics: dict) -> list[tuple[str, float]]:
    """Scalars stay as they are; a shape-[N] value becomes its mean plus `name/seed{i}`."""
    out: list[tuple[str, float]] = []
    for name, value in _to_host(dict(metrics)).items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"metric names must be non-empty strings, got {name!r}")
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim == 0:
            out.append((name, float(arr)))
        elif arr.ndim == 1:
            # Mean over the seeds that have a value (e.g. only some finished an episode).
            finite = arr[~np.isnan(arr)]
            out.append((name, float(finite.mean()) if finite.size else float("nan")))
            if arr.shape[0] > 1:
                out.extend((seed_metric_name(name, i), float(v)) for i, v in enumerate(arr))
        else:
            raise ValueError(
                f"metric {name!r} has shape {arr.shape}; log a scalar or one value per seed [N]"
            )
    return out


def eval_returns_matrix(returns) -> np.ndarray:
    """Evaluation returns as [n_seeds, n_episodes] (a flat list is one seed)."""
    returns = _to_host({"r": returns})["r"]
    arr = np.asarray(returns, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(
            f"evaluation returns have shape {arr.shape}; pass [n_episodes] or "
            "[n_seeds, n_episodes] with at least one episode"
        )
    return arr


class MetricsWriter:
    """Appends to metrics.csv / eval.csv and writes TensorBoard events for one run directory.

    Files and the TensorBoard writer are opened lazily on the first write.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        fsync_every: float = 5.0,
        tensorboard: bool = True,
        purge_step: int | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.fsync_every = fsync_every
        self.tensorboard = tensorboard
        self.purge_step = purge_step
        self._files: dict[str, object] = {}
        self._tb = None
        self._last_sync = time.monotonic()

    # -- files -------------------------------------------------------------------------
    def _file(self, fname: str, header: bytes):
        f = self._files.get(fname)
        if f is None:
            f = open(self.run_dir / fname, "ab")
            if f.tell() == 0:
                f.write(header)
            self._files[fname] = f
        return f

    def _tb_writer(self):
        if not self.tensorboard:
            return None
        if self._tb is None:
            from tensorboardX import SummaryWriter

            # A random suffix: two writers opened in the same second (rewind on resume)
            # must not share (and truncate) one event file.
            self._tb = SummaryWriter(
                logdir=str(self.run_dir / TB_DIR),
                purge_step=self.purge_step,
                flush_secs=max(1, int(self.fsync_every)),
                filename_suffix=f".{os.getpid()}.{os.urandom(3).hex()}",
            )
        return self._tb

    def _after_write(self) -> None:
        for f in self._files.values():
            f.flush()
        if time.monotonic() - self._last_sync >= self.fsync_every:
            self.sync()

    # -- writes ------------------------------------------------------------------------
    def log(self, step: int, metrics: dict) -> list[tuple[str, float]]:
        step = int(step)
        rows = expand_metrics(metrics)
        if not rows:
            return rows
        now = time.time()
        wall = repr(now)
        f = self._file(METRICS_FILE, METRICS_HEADER)
        f.write(
            "".join(f"{step},{_csv_field(n)},{v!r},{wall}\n" for n, v in rows).encode()
        )
        tb = self._tb_writer()
        if tb is not None:
            for n, v in rows:
                if np.isfinite(v):  # NaN marks "no value"; TensorBoard would only warn about it
                    tb.add_scalar(n, v, step, walltime=now)
        self._after_write()
        return rows

    def log_eval(self, step: int, returns) -> np.ndarray:
        step = int(step)
        arr = eval_returns_matrix(returns)
        f = self._file(EVAL_FILE, EVAL_HEADER)
        f.write(
            "".join(
                f"{step},{s},{e},{float(arr[s, e])!r}\n"
                for s in range(arr.shape[0])
                for e in range(arr.shape[1])
            ).encode()
        )
        tb = self._tb_writer()
        if tb is not None:
            now = time.time()
            tb.add_scalar(EVAL_METRIC, float(arr.mean()), step, walltime=now)
            if arr.shape[0] > 1:
                for s in range(arr.shape[0]):
                    tb.add_scalar(
                        seed_metric_name(EVAL_METRIC, s), float(arr[s].mean()), step, walltime=now
                    )
        self._after_write()
        return arr

    def sync(self) -> None:
        """Flush and fsync the CSV files and flush TensorBoard."""
        for f in self._files.values():
            f.flush()
            os.fsync(f.fileno())
        if self._tb is not None:
            self._tb.flush()
        self._last_sync = time.monotonic()

    def close(self) -> None:
        try:
            if self._files:
                self.sync()
        finally:
            for f in self._files.values():
                f.close()
            self._files.clear()
            if self._tb is not None:
                self._tb.close()
                self._tb = None

