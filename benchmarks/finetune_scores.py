"""Offline→online side by side: heron's Cal-QL and CQL fine-tuning vs d3rlpy's at the same budget.

heron's side is the Cal-QL (or CQL) cells of the shipped suite `offline-to-online-quick` (5k offline updates on
demo/pendulum-medium, the switch, then 5k env steps in Pendulum-v1; 64x64 networks; 5 seeds), run with
`heron bench run offline-to-online-quick`. d3rlpy's side is trained here with the same schedule and settings:

* offline: `CalQLConfig` for 5k updates on the same dataset (converted as in offline_scores.py), batch 256,
  64x64 actor and critics, 2 critics, actor 1e-4 / critic 3e-4 / entropy-temperature 1e-4 step sizes, a fixed
  penalty weight 5 (conservative_weight=5, alpha_learning_rate=0, initial_alpha=1: heron's default, no
  Lagrange tuning), 10 sampled actions, standardised observations and Pendulum's action bounds;
* online: `fit_online` for 5k env steps, one update per step, each batch half from the dataset and half from
  the online buffer (`MixedReplayBuffer`, secondary_mix_ratio=0.5), as heron's Cal-QL switch rule;
* `--algo cql`: `CQLConfig` with the same settings (offline_scores.py's matched CQL), and heron's CQL switch
  rule online: the online transitions join the dataset's in one buffer, batches drawn uniformly from it, one
  update per env step from the first, the same penalty online;
* evaluation: 5 deterministic episodes after the offline phase (the score at the switch) and after the
  online phase, normalised with the dataset's reference returns, as heron's suite.

Aggregates: rliable IQM with 95% stratified bootstrap CIs over seeds of the final score, and the switch
numbers (score before the switch, final score), with heron's report code.

Run (bench venv; datasets as scripts/demo.sh makes them, under $HERON_DATASETS_DIR):
  heron bench run offline-to-online-quick --root BENCH_ROOT
  bench-venv/bin/python benchmarks/finetune_scores.py --suite-root BENCH_ROOT [--algo calql|cql] [--out d3rlpy-finetune.json]
d3rlpy's finished runs are kept in --out (with a fingerprint of their settings), so an interrupted run continues.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

import heron  # noqa: F401  (first: its default CPU flags must be set before JAX starts its backend)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C
from offline_scores import (
    action_bounds,
    actor_width,
    d3rlpy_config,
    evaluate,
    keep_run,
    scores_parser,
    settings_digest,
    suite_bounds,
    to_d3rlpy,
)

SUITE = "offline-to-online-quick"
ALGOS = ("calql", "cql")


def d3rlpy_finetune_config(algo: str, hidden: int, low, high):
    """The offline comparison's matched CQL; Cal-QL is the same settings on d3rlpy's CalQLConfig."""
    import dataclasses

    import d3rlpy

    cql = d3rlpy_config("cql", hidden, 256, low, high)
    if algo == "cql":
        return cql
    return d3rlpy.algos.CalQLConfig(**{f.name: getattr(cql, f.name) for f in dataclasses.fields(cql)})


def train_d3rlpy(algo: str, dataset: str, seed: int, offline_updates: int, online_steps: int, hidden: int,
                 episodes: int) -> dict:
    import d3rlpy
    import gymnasium as gym

    from heron.data.minari_io import load_dataset

    ds = load_dataset(dataset)
    config = d3rlpy_finetune_config(algo, hidden, *action_bounds(ds))
    settings = settings_digest(config)  # before fitting: fit() fits the config's scalers in place
    d3rlpy.seed(seed)
    model = config.create(device="cpu:0")
    data = to_d3rlpy(ds)
    start = time.perf_counter()
    model.fit(data, n_steps=offline_updates, n_steps_per_epoch=offline_updates, show_progress=False,
              save_interval=10 ** 9, logger_adapter=d3rlpy.logging.NoopAdapterFactory())
    switch = float(np.mean(ds.normalized_score(np.asarray(evaluate(model, ds.env_id, episodes, seed)))))
    env = gym.make(ds.env_id)
    d3rlpy.envs.seed_env(env, seed)
    if algo == "calql":
        online = d3rlpy.dataset.create_fifo_replay_buffer(limit=online_steps + 1000, env=env)
        buffer = d3rlpy.dataset.MixedReplayBuffer(primary_replay_buffer=online, secondary_replay_buffer=data,
                                                  secondary_mix_ratio=0.5)
        start_step = 2  # d3rlpy cannot sample an online buffer without a whole transition
    else:  # CQL keeps the offline data: online transitions are appended to the dataset's buffer
        buffer, start_step = data, 0
    model.fit_online(env, buffer=buffer, n_steps=online_steps, n_steps_per_epoch=online_steps, update_interval=1,
                     n_updates=1, update_start_step=start_step, save_interval=10 ** 9, show_progress=False,
                     logger_adapter=d3rlpy.logging.NoopAdapterFactory())
    train_s = time.perf_counter() - start
    returns = evaluate(model, ds.env_id, episodes, seed)
    final = float(np.mean(ds.normalized_score(np.asarray(returns))))
    return {"algo": algo, "dataset": dataset, "seed": seed, "settings": settings, "returns": returns,
            "switch": switch, "score": final, "train_s": train_s}


def main() -> None:
    parser = scores_parser(__doc__.splitlines()[0], "d3rlpy-finetune.json",
                           "smoke run: one seed, 200 updates and 400 env steps")
    parser.add_argument("--algo", choices=ALGOS, default="calql")
    args = parser.parse_args()
    algo = args.algo

    import torch

    from heron.experiments.bench import load_suite
    from heron.experiments.bench_report import aggregates, collect_scores

    torch.set_num_threads(args.torch_threads)
    suite = load_suite(SUITE)
    cells = [c for c in suite.cells if c.algo == algo and c.finetune_method is None]  # one cell per seed (the online phase is not vmapped)
    cell, seeds = cells[0], sorted(s for c in cells for s in c.seeds)
    hidden = actor_width(cell)
    if args.quick:
        r = train_d3rlpy(algo, cell.task, 0, 200, 400, hidden, 2)
        print(f"d3rlpy {algo}: {r['switch']:.1f} at the switch, {r['score']:.1f} after ({r['train_s']:.1f} s)")
        return
    digest = settings_digest(d3rlpy_finetune_config(algo, hidden, *suite_bounds(cells)[cell.task]))
    kept = json.loads(args.out.read_text()) if args.out.exists() else []
    done = [r for r in kept if r.get("settings") == digest and r["algo"] == algo and r["dataset"] == cell.task]
    for seed in seeds:
        if args.report_only or any(r["seed"] == seed for r in done):
            continue
        r = train_d3rlpy(algo, cell.task, seed, cell.steps, cell.online_steps, hidden, cell.eval_episodes)
        done.append(r)
        keep_run(args.out, r)
        print(f"d3rlpy {algo} seed {seed}: {r['switch']:.1f} at the switch, {r['score']:.1f} after "
              f"({r['train_s']:.0f} s)", flush=True)

    scores, _ = collect_scores(suite, args.suite_root / SUITE)
    ours = [s for s in scores if s.algo == algo]  # one run (cell) per seed; "iql+wsrl" is another label
    if not ours or not done:
        raise SystemExit(f"nothing to compare: heron's {algo} cells or d3rlpy's runs are missing")
    final = [f for s in ours for f in s.final]
    at_switch = [f for s in ours for f in s.curve[s.curve_steps.index(cell.steps)]]
    runs = min(len(final), len(done))
    theirs = sorted(done, key=lambda r: r["seed"])[:runs]
    mats = {"heron": np.asarray(final[:runs])[:, None] / 100.0,
            "d3rlpy": np.array([[r["score"] / 100.0] for r in theirs])}
    agg = aggregates(mats, args.reps, 0)
    name = {"calql": "Cal-QL", "cql": "CQL"}[algo]
    print(C.header(f"offline→online scores vs d3rlpy ({name})", "-", C.loadavg(), ("jax", "flax", "optax", "d3rlpy",
                                                                                  "torch")))
    print()
    print(f"{cell.task}: {cell.steps} offline updates, then {cell.online_steps} env steps; 64x64 networks; "
          f"{cell.eval_episodes} deterministic episodes per evaluation; IQM over {runs} seeds with 95% stratified "
          f"bootstrap CIs ({args.reps} resamples).")
    print()
    rows = []
    for lib, switch, end in (("heron", at_switch[:runs], final[:runs]),
                             ("d3rlpy", [r["switch"] for r in theirs], [r["score"] for r in theirs])):
        iqm = agg[lib]["IQM"]
        rows.append([lib, f"{np.mean(switch):.1f} ± {np.std(switch):.1f}", f"{np.mean(end):.1f} ± {np.std(end):.1f}",
                     f"{iqm[0]:.1f} [{iqm[1]:.1f}, {iqm[2]:.1f}]"])
    print(C.md_table([name, "score at the switch (mean ± std)", "final score (mean ± std)",
                      "final IQM [95% CI]"], rows))


if __name__ == "__main__":
    main()
