"""Plots of tracked runs (matplotlib, Agg canvas: no display and no global pyplot state)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from heron.errors import HeronError
from heron.tracking.metrics import EVAL_METRIC
from heron.tracking.query import metric_series


def default_plot_path(metric: str) -> Path:
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in metric).strip("-") or "metric"
    return Path(f"{slug}.png")


def plot_runs(
    run_dirs: Sequence[str | os.PathLike],
    metric: str = EVAL_METRIC,
    out: str | os.PathLike | None = None,
    *,
    title: str | None = None,
) -> Path:
    """PNG of `metric` vs step, one line per run; mean ± std band across seeds if per-seed.

    `eval/return` (default) is the mean episode return of each evaluation (per seed, then
    mean ± std across seeds). Returns the written path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out) if out is not None else default_plot_path(metric)
    if out.suffix.lower() != ".png":
        raise HeronError(f"plot output {out} must end in .png; pass --out NAME.png")
    if not out.parent.is_dir():
        raise HeronError(f"cannot write {out}: directory {out.parent} does not exist; create it first")
    series = metric_series(run_dirs, metric)

    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for run_dir, s in series.items():
        label = Path(run_dir).name
        n_seeds = s.values.shape[1]
        if n_seeds > 1:
            label += f" ({n_seeds} seeds, mean ± std)"
        (line,) = ax.plot(s.steps, s.mean, label=label, linewidth=1.5)
        if n_seeds > 1:
            ax.fill_between(
                s.steps, s.mean - s.std, s.mean + s.std, color=line.get_color(), alpha=0.2, linewidth=0
            )
        if len(s.steps) == 1:
            line.set_marker("o")
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(title or metric)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=120, format="png")
        os.replace(tmp, out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise HeronError(f"cannot write {out} ({e.strerror}); pick a writable --out path") from None
    return out
