"""`heron runs ...`: list, show, compare and plot tracked runs (query them with SQL, export
them to an archive and import someone else's).

`add_runs_parser(subparsers)` registers the command on the top-level argparse subparsers;
each sub-command sets both ``args.func`` and ``args.handler`` to its handler,
``handler(args, extra=None) -> int`` (exit status; `extra` is ignored), which prints to
stdout and raises `HeronError` for bad input.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

from heron.errors import HeronError


def add_runs_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``runs list | show | compare | plot | sql | export | import``; returns the parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--root",
        metavar="DIR",
        default=None,
        help="directory holding the runs (default: $HERON_RUNS_DIR, else ./runs)",
    )
    runs = subparsers.add_parser(
        "runs",
        help="list, inspect, compare and plot tracked runs",
        description="Inspect the run directories written by `heron train`.",
    )
    sub = runs.add_subparsers(dest="runs_command", metavar="COMMAND", required=True)

    p = sub.add_parser("list", parents=[common], help="one line per run: algo, env, status, steps, last eval")
    p.add_argument("--status", choices=["running", "finished", "failed", "killed"], help="only runs with this status")
    p.add_argument("--last", type=int, metavar="N", help="only the N most recently started runs")
    p.set_defaults(func=cmd_list, handler=cmd_list)

    p = sub.add_parser("show", parents=[common], help="status, provenance, config, metrics and checkpoints of one run")
    p.add_argument("run", metavar="RUN", help="run directory, run name under the root, or a unique name prefix")
    p.set_defaults(func=cmd_show, handler=cmd_show)

    p = sub.add_parser("compare", parents=[common], help="final/best eval returns and config differences side by side")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.set_defaults(func=cmd_compare, handler=cmd_compare)

    p = sub.add_parser("plot", parents=[common], help="PNG of a metric vs step for one or more runs")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--metric", default="eval/return", metavar="NAME", help="metric to plot (default: eval/return)")
    p.add_argument("--out", default=None, metavar="PNG", help="output file (default: ./<metric>.png)")
    p.set_defaults(func=cmd_plot, handler=cmd_plot)

    p = sub.add_parser(
        "sql",
        parents=[common],
        help="SQL over all runs (DuckDB views: runs, metrics, evals)",
        description="Run a DuckDB query over the views runs, metrics(run, path, step, name, value, "
        "wall_time) and evals(run, path, step, seed, episode, return).",
    )
    p.add_argument("query", metavar="SQL")
    p.set_defaults(func=cmd_sql, handler=cmd_sql)

    p = sub.add_parser(
        "export",
        parents=[common],
        help="write runs to one .tar.gz to share (config, provenance, status, metrics, evals, reports)",
        description="Write runs (config, provenance, status, metrics.csv, eval.csv, report files; with "
        "--checkpoints each run's latest valid checkpoint) and a manifest with every file's SHA-256 to one "
        ".tar.gz. Running runs are refused; killed runs are exported as killed; tb/ is left out.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directory, run name under the root, or a unique name prefix")
    p.add_argument("--out", required=True, metavar="ARCHIVE.tar.gz", help="archive to write (atomically)")
    p.add_argument("--checkpoints", action="store_true", help="include each run's latest valid checkpoint")
    p.add_argument("--force", action="store_true", help="replace ARCHIVE if it exists")
    p.set_defaults(func=cmd_export, handler=cmd_export)

    p = sub.add_parser(
        "import",
        parents=[common],
        help="add the runs of an archive written by `heron runs export` (fully verified first)",
        description="Verify an archive written by `heron runs export` (layout, file types, names, sizes, "
        "SHA-256 of every file, JSON, checkpoints; nothing is unpickled) and move its runs into the root. "
        "Any defect: one error line, exit status 2, nothing imported. Runs already present with the same "
        "content are skipped; a run of the same name with other content refuses the import.",
    )
    p.add_argument("archive", metavar="ARCHIVE")
    p.set_defaults(func=cmd_import, handler=cmd_import)
    return runs


# -- formatting ----------------------------------------------------------------------------


def _fmt(x, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        return f"{x:.{digits}f}"
    return str(x)


def _fmt_time(iso: str | None) -> str:
    if not iso:
        return "-"
    return iso.replace("T", " ")[:16]


def format_table(headers: Sequence[str], rows: Sequence[Sequence], numeric: Sequence[bool] | None = None) -> str:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    if numeric is None:
        numeric = [bool(rows) and all(isinstance(r[i], (int, float)) or r[i] is None for r in rows) for i in range(len(headers))]

    def line(values):
        return "  ".join(
            (v.rjust(w) if num else v.ljust(w)) for v, w, num in zip(values, widths, numeric)
        ).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def _print(text: str = "") -> None:
    print(text, flush=False)


# -- helpers -------------------------------------------------------------------------------


def _root(args) -> Path:
    from heron.tracking.run import default_runs_root

    return Path(args.root) if args.root else default_runs_root()


def _resolve(args, refs: Sequence[str]) -> list[Path]:
    from heron.tracking.run import resolve_run

    dirs = [resolve_run(ref, _root(args)) for ref in refs]
    seen = set()
    for d in dirs:
        key = d.resolve()
        if key in seen:
            raise HeronError(f"run {d.name} is given twice; name each run once")
        seen.add(key)
    return dirs


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except ValueError:
        raise HeronError(f"{path} is not valid JSON; the {what} of this run is damaged") from None


def flatten(d, prefix: str = "") -> dict[str, object]:
    """Nested dicts as dotted keys; lists and other values kept as leaves."""
    out: dict[str, object] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict) and v:
                out.update(flatten(v, key))
            else:
                out[key] = v
    else:
        out[prefix] = d
    return out


def _value(v) -> str:
    if isinstance(v, str):
        return v
    return json.dumps(v)


# -- handlers ------------------------------------------------------------------------------


def cmd_list(args, extra=None) -> int:
    from heron.tracking.query import runs_table

    root = _root(args)
    rows = runs_table(root)
    if args.status:
        rows = [r for r in rows if r["status"] == args.status]
    if args.last is not None:
        if args.last < 1:
            raise HeronError(f"--last must be at least 1, got {args.last}")
        rows = rows[-args.last :]
    if not rows:
        _print(f"no runs in {root}" + (f" with status {args.status}" if args.status else ""))
        return 0
    headers = ["NAME", "ALGO", "ENV", "STATUS", "STEPS", "SEEDS", "LAST EVAL", "STARTED"]
    table = [
        [
            r["name"],
            r["algo"],
            r["env"],
            r["status"],
            r["steps"],
            r["seeds"],
            r["last_eval_return"],
            _fmt_time(r["start_time"]),
        ]
        for r in rows
    ]
    _print(format_table(headers, table, numeric=[False, False, False, False, True, True, True, False]))
    return 0


def cmd_show(args, extra=None) -> int:
    from heron.tracking.checkpoint import LATEST_FILE, checkpoints_dir, list_checkpoints
    from heron.tracking.query import eval_summary, last_metric_values
    from heron.tracking.run import CONFIG_FILE, PROVENANCE_FILE, read_status

    (run_dir,) = _resolve(args, [args.run])
    try:
        status = read_status(run_dir)
    except ValueError:
        raise HeronError(f"{run_dir / 'status.json'} is not valid JSON; the run directory is damaged") from None
    config = _read_json(run_dir / CONFIG_FILE, "config")
    prov = _read_json(run_dir / PROVENANCE_FILE, "provenance")

    _print(f"run        {run_dir.name}")
    _print(f"path       {run_dir.resolve()}")
    state = status.get("status")
    if state == "killed":
        state += f" (status says running, but pid {status.get('pid')} is gone)"
    _print(f"status     {state}")
    if status.get("error"):
        _print(f"error      {status['error']}")
    _print(f"started    {_fmt_time(status.get('start_time'))}   ended {_fmt_time(status.get('end_time'))}")
    _print(f"host/pid   {status.get('hostname')} / {status.get('pid')}   resumed {status.get('resumed') or 0}x")
    _print(f"steps      {_fmt(status.get('step'))}")
    _print(f"seeds      {config.get('seeds', '-')}   seed {config.get('seed', prov.get('seed', '-'))}")
    imported = _read_json(run_dir / "imported.json", "import record")
    if imported:
        _print(
            f"imported   from {imported.get('archive')} on {_fmt_time(imported.get('imported_at'))} "
            f"(exported {_fmt_time(imported.get('exported_at'))} with heron {imported.get('exported_with_heron')})"
        )

    if prov:
        git = prov.get("git") or {}
        commit = git.get("commit")
        git_text = f"{commit[:12]}{' (dirty)' if git.get('dirty') else ''}" if commit else "not a git checkout"
        pkgs = ", ".join(f"{k} {v}" for k, v in (prov.get("packages") or {}).items() if v)
        _print()
        _print("provenance")
        _print(f"  git        {git_text}")
        _print(f"  heron      {prov.get('heron')}   python {prov.get('python')}")
        _print(f"  packages   {pkgs}")
        _print(f"  platform   {prov.get('platform')}   cpu {prov.get('cpu')}")
        _print(f"  devices    {', '.join(prov.get('jax_devices') or []) or '-'}")
        _print(f"  command    {' '.join(prov.get('command') or [])}")

    _print()
    _print("config")
    flat = flatten(config)
    if flat:
        width = max(len(k) for k in flat)
        for k, v in flat.items():
            _print(f"  {k.ljust(width)}  {_value(v)}")
    else:
        _print("  (none)")

    ev = eval_summary(run_dir)
    _print()
    if ev:
        spread = "across seeds" if ev["seeds"] > 1 else "across episodes"
        _print(
            f"evaluation last {_fmt(ev['last_mean'])} ± {_fmt(ev['last_std'])} ({spread}) at step "
            f"{ev['last_step']}; best {_fmt(ev['best_mean'])} at step {ev['best_step']}; "
            f"{ev['evaluations']} evaluations, {ev['episodes']} episodes"
        )
    else:
        _print("evaluation (none yet)")

    last = last_metric_values(run_dir)
    _print()
    if last:
        _print("metrics (last value)")
        table = [[n, s, "-" if v is None else f"{v:.6g}"] for n, s, v in last]
        _print(format_table(["NAME", "STEP", "VALUE"], table, numeric=[False, True, True]))
    else:
        _print("metrics (none yet)")

    ckpts = list_checkpoints(run_dir)
    _print()
    if ckpts:
        latest = checkpoints_dir(run_dir) / LATEST_FILE
        pointer = latest.read_text().strip() if latest.is_file() else None
        names = ", ".join(p.name + (" (latest)" if p.name == pointer else "") for _, p in ckpts)
        _print(f"checkpoints {names}")
    else:
        _print("checkpoints (none)")
    return 0


def cmd_compare(args, extra=None) -> int:
    from heron.tracking.query import eval_summary
    from heron.tracking.run import CONFIG_FILE, PROVENANCE_FILE, read_status

    dirs = _resolve(args, args.runs)
    rows = []
    configs, provs = [], []
    for d in dirs:
        config = _read_json(d / CONFIG_FILE, "config")
        configs.append(flatten(config))
        provs.append(flatten(_read_json(d / PROVENANCE_FILE, "provenance")))
        status = read_status(d)
        ev = eval_summary(d)
        final = f"{ev['last_mean']:.2f} ± {ev['last_std']:.2f}" if ev else None
        best = f"{ev['best_mean']:.2f} @ {ev['best_step']}" if ev else None
        rows.append(
            [
                d.name,
                config.get("algo") or config.get("algorithm"),
                (config.get("env") or {}).get("id") if isinstance(config.get("env"), dict) else config.get("env"),
                status.get("status"),
                status.get("step"),
                config.get("seeds"),
                final,
                best,
            ]
        )
    headers = ["RUN", "ALGO", "ENV", "STATUS", "STEPS", "SEEDS", "FINAL EVAL (mean ± std)", "BEST EVAL @ STEP"]
    _print(format_table(headers, rows, numeric=[False, False, False, False, True, True, True, True]))

    labels = [f"[{i + 1}]" for i in range(len(dirs))]
    for title, flats, keys in (
        ("config differences", configs, None),
        (
            "provenance differences",
            provs,
            ("git.commit", "git.dirty", "heron", "python", "platform", "cpu", "jax_backend", "hostname"),
        ),
    ):
        candidates = sorted(set().union(*flats)) if keys is None else [
            k for k in sorted(set().union(*flats)) if k in keys or k.startswith("packages.")
        ]
        diff = [k for k in candidates if len({_value(f.get(k, "<unset>")) for f in flats}) > 1]
        if len(dirs) < 2:
            continue
        _print()
        if not diff:
            _print(f"{title}: none")
            continue
        _print(f"{title} ({', '.join(f'{lab} {d.name}' for lab, d in zip(labels, dirs))})")
        table = [[k] + [_value(f[k]) if k in f else "<unset>" for f in flats] for k in diff]
        _print(format_table(["KEY", *labels], table, numeric=[False] * (len(dirs) + 1)))
    return 0


def cmd_plot(args, extra=None) -> int:
    from heron.tracking.plots import plot_runs

    dirs = _resolve(args, args.runs)
    out = plot_runs(dirs, args.metric, args.out)
    _print(f"wrote {out}")
    return 0


def cmd_sql(args, extra=None) -> int:
    from heron.tracking.query import sql

    columns, rows = sql(_root(args), args.query)
    if not columns:
        return 0
    _print(format_table(columns, rows))
    _print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return 0


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def cmd_export(args, extra=None) -> int:
    from heron.tracking.archive import export_runs

    result = export_runs(args.runs, args.out, root=_root(args), checkpoints=args.checkpoints, force=args.force)
    n = len(result.runs)
    _print(f"wrote {result.archive} ({n} run{'s' if n != 1 else ''}, {_size(result.archive_bytes)})")
    for r in result.runs:
        ckpt = f", checkpoint step {r.checkpoint_step}" if r.checkpoint_step is not None else ""
        left = f"; left out: {', '.join(r.left_out)}" if r.left_out else ""
        _print(f"  {r.name}  {r.status}, {r.files} files, {_size(r.bytes)}{ckpt}{left}")
    return 0


def cmd_import(args, extra=None) -> int:
    from heron.tracking.archive import import_runs

    result = import_runs(args.archive, _root(args))
    n = len(result.imported)
    _print(f"imported {n} run{'s' if n != 1 else ''} into {result.root}" + (f": {', '.join(result.imported)}" if n else ""))
    for name in result.skipped:
        _print(f"skipped {name} (already in {result.root} with the same content)")
    return 0
