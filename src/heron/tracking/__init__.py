"""Tracking: run directories, the metrics store, checkpoints and provenance.

* `heron.tracking.run` — `Run` (one directory per run: config, provenance, status, logs);
* `heron.tracking.metrics` — append-only metrics.csv / eval.csv + TensorBoard, multi-seed naming;
* `heron.tracking.checkpoint` — atomic, SHA-256-verified checkpoints (msgpack + npz, no pickle);
* `heron.tracking.query` — DuckDB views over many runs (`runs`, `metrics`, `evals`);
* `heron.tracking.archive` — runs as shareable .tar.gz archives (export; verified, hostile-safe import);
* `heron.tracking.plots` — PNG plots of a metric across runs and seeds.

Importing this package is cheap: jax, flax, duckdb, tensorboardX and matplotlib are imported
only by the functions that need them.
"""

from heron.tracking.checkpoint import Checkpoint, load_latest_checkpoint, save_checkpoint
from heron.tracking.run import Run, default_runs_root, read_status

__all__ = [
    "Checkpoint",
    "Run",
    "default_runs_root",
    "load_latest_checkpoint",
    "read_status",
    "save_checkpoint",
]
