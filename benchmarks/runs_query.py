"""`heron runs list` and `heron runs sql` over many runs: how long the DuckDB views take.

Data: N synthetic run directories (default 2000) in a temporary root, in the exact files a
`heron train` run leaves (one real run is made with `Run.create` / `log` / `log_eval` / `finish`;
the others are written in the same formats with their own names, configs, values and times):
config.json, provenance.json, status.json, metrics.csv (--metric-rows rows, default 300:
100 steps x loss/critic, loss/actor, alpha), eval.csv (5 evaluations x 10 episodes). Statuses:
90% finished and 5% failed (eval summary cached in status.json, as `Run.finish` writes it),
5% killed (``running`` with a dead pid: their eval.csv is aggregated at query time).

Cases, each the median of --repeats:
  list        `heron.tracking.query.runs_table(root)`: what `heron runs list` prints
  sql         `heron runs sql` with a typical aggregate over every metrics.csv, joined to `runs`:
              per algo/env: runs, mean final loss/critic, mean last eval return
  cold        each call in a fresh Python process (imports of duckdb + heron.tracking not timed);
              with --drop-caches the OS page cache is dropped before each (needs root; it slows
              everything else on the machine for a moment), else "cold" means a fresh process
              whose files are still in the page cache
  warm        repeated calls in one process (after one untimed call)
  CLI         wall time of the whole `heron runs list` command (process start, `import heron`,
              which imports jax, and the printing included), for scale

Run (heron's venv; no peers needed):  .venv/bin/python benchmarks/runs_query.py [--runs 2000] [--metric-rows 300] [--repeats 5]
      [--keep DIR] [--drop-caches] [--write]   (--write: replace this section of BENCHMARKS.md)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as C

SQL = (
    "SELECT r.algo, r.env, count(*) AS runs, avg(m.last_loss) AS final_loss, "
    "avg(r.last_eval_return) AS last_eval "
    "FROM runs r JOIN (SELECT path, arg_max(value, step) AS last_loss FROM metrics "
    "WHERE name = 'loss/critic' GROUP BY path) m USING (path) GROUP BY ALL ORDER BY ALL"
)
ALGOS = ("sac", "td3", "ppo", "iql")
ENVS = ("Pendulum-v1", "HalfCheetah-v5", "CartPole-v1", "Hopper-v5")


def make_runs(root: Path, n: int, metric_rows: int, seed: int = 0) -> None:
    """One real run through the Run API, then n - 1 in the same file formats."""
    from heron.tracking.run import Run

    rng = random.Random(seed)
    steps = max(1, metric_rows // 3)
    template = Run.create(root, "sac-Pendulum-v1", {"algo": "sac", "env": "Pendulum-v1", "lr": 3e-4}, ["heron", "train"], 0, tensorboard=False)
    for i in range(steps):
        template.log(1000 * (i + 1), {"loss/critic": 1.0 / (i + 1), "loss/actor": -float(i), "alpha": 0.2})
        if (i + 1) % max(1, steps // 5) == 0:
            template.log_eval(1000 * (i + 1), [rng.uniform(-1500, 0) for _ in range(10)])
    template.finish()
    provenance = (template.path / "provenance.json").read_bytes()
    status_template = json.loads((template.path / "status.json").read_bytes())
    t0 = time.time() - 86400 * 30
    for k in range(1, n):
        algo, env = ALGOS[k % len(ALGOS)], ENVS[(k // len(ALGOS)) % len(ENVS)]
        start = t0 + 600 * k
        name = f"{algo}-{env}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(start))}-{k:06x}"
        d = root / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"algo": algo, "env": env, "lr": rng.choice([1e-4, 3e-4, 1e-3]), "seed": k, "seeds": 1}, indent=2))
        (d / "provenance.json").write_bytes(provenance)
        lines = ["step,name,value,wall_time\n"]
        evals = ["step,seed,episode,return\n"]
        means = []
        for i in range(steps):
            step = 1000 * (i + 1)
            wall = start + i
            lines.append(f"{step},loss/critic,{rng.random() / (i + 1)!r},{wall!r}\n")
            lines.append(f"{step},loss/actor,{-rng.random() * i!r},{wall!r}\n")
            lines.append(f"{step},alpha,{rng.random()!r},{wall!r}\n")
            if (i + 1) % max(1, steps // 5) == 0:
                rets = [rng.uniform(-1500, 0) for _ in range(10)]
                means.append((step, sum(rets) / len(rets)))
                evals.extend(f"{step},0,{e},{r!r}\n" for e, r in enumerate(rets))
        (d / "metrics.csv").write_text("".join(lines))
        (d / "eval.csv").write_text("".join(evals))
        u = rng.random()
        state = "finished" if u < 0.90 else "failed" if u < 0.95 else "running"
        status = dict(status_template, name=name, status=state, pid=999_999_999 if state == "running" else 12345,
                      start_unix=start, start_time=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.localtime(start)),
                      step=1000 * steps)
        if state == "running":
            status.update(end_time=None)
            status.pop("eval", None)
        else:
            best = max(means, key=lambda x: x[1])
            status["eval"] = {"evaluations": len(means), "last_step": means[-1][0], "last_mean": means[-1][1],
                              "best_step": best[0], "best_mean": best[1]}
        (d / "status.json").write_text(json.dumps(status, indent=2))


_CHILD = """
import sys, time, json
from heron.tracking.query import runs_table, sql
root, case, query = sys.argv[1], sys.argv[2], sys.argv[3]
t = time.perf_counter()
n = len(runs_table(root)) if case == "list" else len(sql(root, query)[1])
print("RESULT", json.dumps([time.perf_counter() - t, n]))
"""


def drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def cold(root: Path, case: str, repeats: int, drop: bool) -> tuple[list[float], bool]:
    times, dropped = [], drop
    for _ in range(repeats):
        dropped = drop and drop_caches() and dropped
        out = subprocess.run([sys.executable, "-c", _CHILD, str(root), case, SQL], check=True, capture_output=True, text=True)
        result = re.findall(r"RESULT (\[[^\]]*\])", out.stdout)[-1]  # DuckDB may draw a progress bar
        times.append(json.loads(result)[0])
    return times, dropped


def warm(root: Path, case: str, repeats: int) -> list[float]:
    from heron.tracking.query import runs_table, sql

    fn = (lambda: runs_table(root)) if case == "list" else (lambda: sql(root, SQL))
    fn()
    return [C.timed(fn) for _ in range(repeats)]


def cli_list(root: Path, repeats: int) -> list[float]:
    heron = Path(sys.executable).with_name("heron")
    cmd = [str(heron)] if heron.exists() else [sys.executable, "-m", "heron.cli.main"]
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([*cmd, "runs", "list", "--root", str(root)], check=True, capture_output=True)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--metric-rows", type=int, default=300, help="metrics.csv rows per run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--keep", type=Path, default=None, help="make (or reuse) the runs in DIR and keep them")
    ap.add_argument("--drop-caches", action="store_true", help="drop the OS page cache before each cold call (root)")
    ap.add_argument("--write", action="store_true", help="write the results into BENCHMARKS.md")
    args = ap.parse_args()

    load_before = C.loadavg()
    tmp = None
    if args.keep is not None:
        root = args.keep
        if not root.exists():
            make_runs(root, args.runs, args.metric_rows)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="heron-runs-bench-"))
        root = tmp / "runs"
    try:
        if tmp is not None:
            t = time.perf_counter()
            make_runs(root, args.runs, args.metric_rows)
            print(f"made {args.runs} runs in {time.perf_counter() - t:.1f} s under {root}")
        n_runs = sum(1 for p in root.iterdir() if (p / "status.json").is_file())
        size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
        rows = []
        dropped_any = False
        for case in ("list", "sql"):
            c, dropped = cold(root, case, args.repeats, args.drop_caches)
            dropped_any |= dropped
            w = warm(root, case, args.repeats)
            rows.append([f"`{case}`", C.fmt(C.median(c) * 1000), C.fmt(C.median(w) * 1000)])
        cli = cli_list(root, args.repeats)
        load_after = C.loadavg()
        cache = (
            "page cache dropped before each cold call"
            if dropped_any
            else "page cache not dropped: cold = a fresh process, files in the page cache"
        )
        python = os.path.relpath(sys.executable, C.REPO)  # heron's own venv is enough here
        table = C.md_table(["query", "cold, ms (median)", "warm, ms (median)"], rows)
        body = (
            f"{C.header('', load_before, load_after, ('duckdb',)).replace('bench-venv/bin/python', python)}\n\n"
            f"{n_runs} runs, {args.metric_rows} metric rows + 50 eval rows each, {size / 2**20:.0f} MiB; "
            f"median of {args.repeats}; {cache}.\n\n{table}\n\n"
            f"Whole `heron runs list` command (process start + `import heron`/jax + query + print): "
            f"{C.median(cli):.2f} s median.\n\nSQL: `{SQL}`"
        )
        print(body)
        if args.write:
            C.write_section("runs-query", "`heron runs list` / `runs sql` over many runs", body)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
