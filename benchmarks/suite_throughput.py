"""Throughput of a benchmark suite of 32 short runs: sequential vs vmap seeds vs Ray workers.

The suite: PPO on CartPole-v1 (compiled loop), `--steps` env steps per run (default 16384),
32 seeds, 2 evaluations of 5 episodes. Three ways to run the same 32 runs, each from an empty
suite directory, timed end to end (`heron.experiments.bench.run_suite`, the code behind
`heron bench run`, report not included):

* sequential: 32 tracked runs one after another in this process (each compiles its program);
* vmap: `vmap_seeds = true`, one tracked run training the 32 seeds as one compiled program;
* ray: 32 tracked runs as Ray tasks on a local Ray instance with `--workers` slots (default: the
  machine's cores), Ray's start-up included.

Ray's overhead per run = (ray wall × workers − Σ run wall inside the workers) / runs, where a
run's wall is its status.json start to end; it covers task dispatch, worker start and imports.

Run:  .venv/bin/python benchmarks/suite_throughput.py [--steps N] [--runs 32] [--workers 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import _common as C

from heron.experiments.bench import parse_suite, run_suite


def _suite(runs: int, steps: int, vmap: bool):
    return parse_suite({"name": "throughput", "seeds": runs, "eval_episodes": 5, "vmap_seeds": vmap,
                        "checkpoint_fraction": 1.0,
                        "grid": [{"algos": ["ppo"], "envs": ["CartPole-v1"], "steps": steps, "eval_every": steps // 2}]})


def _run_walls(root: Path) -> list[float]:
    walls = []
    for status in root.glob("runs/*/*/status.json"):
        s = json.loads(status.read_text())
        end = dt.datetime.fromisoformat(s["end_time"]).timestamp()
        walls.append(end - s["start_unix"])
    return walls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=16_384)
    ap.add_argument("--runs", type=int, default=32)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    load_before = C.loadavg()
    results = {}
    tmp = Path(tempfile.mkdtemp(prefix="heron-suite-bench-"))
    try:
        for mode in ("sequential", "vmap", "ray"):
            root = tmp / mode
            suite = _suite(args.runs, args.steps, vmap=mode == "vmap")
            start = time.perf_counter()
            out = run_suite(suite, root, workers=args.workers if mode == "ray" else 0, progress=False)
            wall = time.perf_counter() - start
            assert all(r.outcome == "finished" for r in out), out
            results[mode] = (wall, _run_walls(root))
            print(f"{mode}: {wall:.1f} s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    seq = results["sequential"][0]
    ray_wall, ray_runs = results["ray"]
    overhead = (ray_wall * args.workers - sum(ray_runs)) / args.runs
    rows = [[mode, C.fmt(wall, 1), C.fmt(args.runs * args.steps / wall), f"{seq / wall:.2f}x"]
            for mode, (wall, _) in results.items()]
    body = (C.md_table(["mode", "wall (s)", "env steps/s (all runs)", "speed-up vs sequential"], rows)
            + f"\n\nRay: {args.workers} workers; overhead per run {overhead:.2f} s "
              f"(mean run wall inside a worker {sum(ray_runs) / len(ray_runs):.2f} s vs "
              f"{sum(results['sequential'][1]) / args.runs:.2f} s in-process).\n")
    title = f"Suite throughput: {args.runs} PPO CartPole-v1 runs of {args.steps} steps"
    head = C.header(title, load_before, C.loadavg(), ("jax", "ray"))
    C.write_section(f"suite_throughput_{args.steps}", title, head + "\n\n" + body)
    print(body)


if __name__ == "__main__":
    main()
