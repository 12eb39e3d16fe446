"""Offline scores side by side: heron vs d3rlpy on the same datasets with the same update budget.

heron's side is a benchmark suite (`benchmarks/suites/offline-vs-d3rlpy.toml`: BC, TD3+BC, IQL, AWAC
and CQL on the demo's Pendulum datasets, 5k updates, 64x64 networks, 5 seeds), run with
`heron bench run`. d3rlpy's side is trained here, one run per (algorithm, dataset, seed), on the same
heron dataset files converted to a d3rlpy `MDPDataset`:

* networks 64x64 (VectorEncoderFactory([64, 64])) for every actor and critic; IQL's value function
  2x256, as heron's suite leaves it at IQL's default;
* batch 256 for every algorithm (d3rlpy's AWAC default is 1024, BC's 100);
* the same number of gradient updates (`fit(n_steps=...)`);
* d3rlpy's defaults otherwise, plus the preprocessing heron's versions use: every method standardises
  observations (StandardObservationScaler; heron's IQL does not by default, so the suite turns it on, and
  gives IQL a constant actor step size as d3rlpy's, not the paper's cosine decay over the budget), IQL
  scales rewards to a return range of 1000 (ReturnBasedRewardScaler(multiplier=1000)); every method gets
  the action bounds (MinMaxActionScaler with the dataset's action space, e.g. Pendulum's [-2, 2]) so its
  tanh policy covers the action space;
* CQL as heron's default variant: fixed penalty weight 5 (conservative_weight=5, alpha_learning_rate=0,
  initial_alpha=1: no Lagrange tuning) and 10 sampled actions per source (n_action_samples=10);
* evaluation: 10 deterministic episodes in the dataset's env after the last update (heron's suite
  evaluates its last checkpoint the same way), normalised with the dataset's reference returns.

Dataset conversion: see `to_d3rlpy` (every heron transition becomes a d3rlpy transition with the same
next observation).

Aggregates: rliable IQM with 95% stratified bootstrap CIs over seeds x datasets for each library and
algorithm, and P(heron > d3rlpy), with heron's report code (`heron.experiments.bench_report`).

Run (bench venv; the datasets as scripts/demo.sh makes them, under $HERON_DATASETS_DIR):
  heron bench run benchmarks/suites/offline-vs-d3rlpy.toml --root BENCH_ROOT
  bench-venv/bin/python benchmarks/offline_scores.py --suite-root BENCH_ROOT [--out d3rlpy-scores.json]
The MuJoCo tasks (Hopper-v5, HalfCheetah-v5; `heron data suite make small --tasks hopper,halfcheetah`) are a
second suite: pass `--suite benchmarks/suites/offline-vs-d3rlpy-mujoco.toml` to both commands' script side
(`heron bench run` takes the same path).
d3rlpy's finished runs are kept in --out, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import heron  # noqa: F401  (first: its default CPU flags must be set before JAX starts its backend)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C

SUITE = Path(__file__).parent / "suites" / "offline-vs-d3rlpy.toml"
CONFIGS = {"bc": "BCConfig", "td3bc": "TD3PlusBCConfig", "iql": "IQLConfig", "cql": "CQLConfig", "awac": "AWACConfig"}
NAMES = {"bc": "BC", "td3bc": "TD3+BC", "iql": "IQL", "cql": "CQL", "awac": "AWAC"}


def to_d3rlpy(ds):
    """The same transitions as a d3rlpy MDPDataset. d3rlpy keeps one observation per step and drops the
    last step of an episode that did not terminate (it has no next observation), so each truncated
    episode gets its final observation appended as an extra step (action 0, reward 0, timeout): every
    heron transition, with its real next observation, is then a d3rlpy transition."""
    import d3rlpy

    obs, act, rew, term, tout = [], [], [], [], []
    for e in range(ds.num_episodes):
        s, t = int(ds.episode_starts[e]), int(ds.episode_starts[e + 1])
        n, terminated = t - s, bool(ds.terminations[t - 1])
        rows = n if terminated else n + 1
        obs.append(ds.observations[s + e:s + e + rows])
        act.append(np.concatenate([ds.actions[s:t], np.zeros((rows - n, *ds.actions.shape[1:]), ds.actions.dtype)]))
        rew.append(np.concatenate([ds.rewards[s:t], np.zeros(rows - n, ds.rewards.dtype)]))
        end = np.zeros(rows, bool)
        end[-1] = True
        term.append(end & terminated)
        tout.append(end & (not terminated))
    return d3rlpy.dataset.MDPDataset(observations=np.concatenate(obs), actions=np.concatenate(act),
                                     rewards=np.concatenate(rew), terminals=np.concatenate(term),
                                     timeouts=np.concatenate(tout))


def d3rlpy_config(algo: str, hidden: int, batch: int, low, high):
    import d3rlpy

    enc = d3rlpy.models.VectorEncoderFactory([hidden, hidden])
    kw = {"batch_size": batch, "action_scaler": d3rlpy.preprocessing.MinMaxActionScaler(minimum=low, maximum=high)}
    if algo == "bc":
        kw["encoder_factory"] = enc
    else:
        kw.update(actor_encoder_factory=enc, critic_encoder_factory=enc)
    if algo == "iql":  # heron's suite leaves IQL's value network at its default 2x256
        kw.update(value_encoder_factory=d3rlpy.models.VectorEncoderFactory([256, 256]),
                  reward_scaler=d3rlpy.preprocessing.ReturnBasedRewardScaler(multiplier=1000.0))
    kw["observation_scaler"] = d3rlpy.preprocessing.StandardObservationScaler()  # heron: default, or the suite's IQL
    if algo == "cql":  # heron's CQL: fixed alpha = 5 (no Lagrange tuning), 10 actions per source
        kw.update(n_action_samples=10, conservative_weight=5.0, alpha_learning_rate=0.0, initial_alpha=1.0)
    return getattr(d3rlpy.algos, CONFIGS[algo])(**kw)


def settings_digest(config) -> str:
    """Fingerprint of a d3rlpy config, taken before fitting (fit() fits its scalers in place): a kept run
    counts only under the same settings."""
    return hashlib.sha256(repr(config).encode()).hexdigest()[:12]  # serialize() fails on unfitted scalers


def action_bounds(ds) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of a loaded dataset's action space."""
    return np.asarray(ds.action_space.low), np.asarray(ds.action_space.high)


def suite_bounds(cells) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """task → action bounds, each dataset read once (structure only: no fingerprint check)."""
    from heron.data.minari_io import load_dataset

    return {t: action_bounds(load_dataset(t, verify=False)) for t in {c.task for c in cells}}


def actor_width(cell) -> int:
    """Hidden width of the cell's actor (its `actor_hidden=W,W` override)."""
    return int(next(o for o in cell.overrides if o.startswith("actor_hidden=")).split("=")[1].split(",")[0])


def keep_run(out: Path, run: dict) -> None:
    """Append `run` to the kept runs in `out`, atomically: an interrupted script keeps every finished run. The
    file is re-read under a lock, so processes sharing one --out (e.g. one per `--algos` subset) keep each
    other's runs."""
    import fcntl

    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        on_disk = json.loads(out.read_text()) if out.exists() else []
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(on_disk + [run], indent=1))
        os.replace(tmp, out)


def scores_parser(description: str, out_default: str, quick_help: str) -> argparse.ArgumentParser:
    """The options both side-by-side score scripts take."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--suite-root", type=Path, required=True, help="the --root heron's suite ran under")
    p.add_argument("--out", type=Path, default=Path(out_default), help="d3rlpy's runs (kept; resumable)")
    p.add_argument("--reps", type=int, default=5000, help="bootstrap resamples")
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--report-only", action="store_true", help="train nothing: compare the runs --out already holds")
    return p


def evaluate(model, env_id: str, episodes: int, seed: int) -> list[float]:
    import gymnasium as gym

    env = gym.make(env_id)
    returns = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=10_000 * (seed + 1) + ep)
        done, total = False, 0.0
        while not done:
            action = model.predict(np.asarray(obs, np.float32)[None])[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


def train_d3rlpy(algo: str, dataset: str, seed: int, updates: int, hidden: int, batch: int, episodes: int) -> dict:
    import d3rlpy

    from heron.data.minari_io import load_dataset

    ds = load_dataset(dataset)
    config = d3rlpy_config(algo, hidden, batch, *action_bounds(ds))
    settings = settings_digest(config)  # before fitting: fit() fits the config's scalers in place
    d3rlpy.seed(seed)
    model = config.create(device="cpu:0")
    start = time.perf_counter()
    model.fit(to_d3rlpy(ds), n_steps=updates, n_steps_per_epoch=updates, show_progress=False, save_interval=10 ** 9,
              logger_adapter=d3rlpy.logging.NoopAdapterFactory())
    train_s = time.perf_counter() - start
    returns = evaluate(model, ds.env_id, episodes, seed)
    score = float(np.mean(ds.normalized_score(np.asarray(returns))))
    return {"algo": algo, "dataset": dataset, "seed": seed, "settings": settings, "returns": returns,
            "score": score, "train_s": train_s}


def heron_scores(suite, suite_root: Path) -> dict[tuple[str, str], list[float]]:
    from heron.experiments.bench_report import collect_scores

    scores, missing = collect_scores(suite, suite_root / suite.name)
    if missing:
        print(f"heron cells not finished (left out): {', '.join(missing)}", flush=True)
    return {(s.algo, s.task): list(s.final) for s in scores}


def matrix(by: dict[tuple[str, str], list[float]], algo: str, tasks: list[str], runs: int) -> np.ndarray:
    return np.array([[by[(algo, t)][i] / 100.0 for t in tasks] for i in range(runs)])


def main() -> None:
    parser = scores_parser(__doc__.splitlines()[0], "d3rlpy-scores.json",
                           "smoke run: d3rlpy only, 200 updates, one seed per algorithm")
    parser.add_argument("--suite", type=Path, default=SUITE,
                        help="heron's side: offline-vs-d3rlpy.toml (Pendulum) or offline-vs-d3rlpy-mujoco.toml")
    parser.add_argument("--algos", default=",".join(CONFIGS),
                        help="train only these (comma-separated); two processes with one --out split the work")
    parser.add_argument("--datasets", default="",
                        help="train only on these suite datasets (comma-separated, e.g. small/hopper-medium); default all")
    args = parser.parse_args()

    import torch

    from heron.experiments.bench import load_suite
    from heron.experiments.bench_report import aggregates, probability_of_improvement

    torch.set_num_threads(args.torch_threads)
    suite = load_suite(args.suite)
    if args.quick:
        for algo in CONFIGS:
            r = train_d3rlpy(algo, suite.cells[0].task, 0, 200, 64, 256, 2)
            print(f"d3rlpy {algo}: {r['score']:.1f} after 200 updates ({r['train_s']:.1f} s)")
        return
    hidden = {c.key: actor_width(c) for c in suite.cells}
    bounds = suite_bounds(suite.cells)
    current = {(c.algo, c.task): settings_digest(d3rlpy_config(c.algo, hidden[c.key], 256, *bounds[c.task]))
               for c in suite.cells}

    def finished() -> list[dict]:
        """The kept runs made with today's settings (older ones stay in the file, ignored)."""
        kept = json.loads(args.out.read_text()) if args.out.exists() else []
        return [r for r in kept if r.get("settings") == current.get((r["algo"], r["dataset"]))]

    have = {(r["algo"], r["dataset"], r["seed"]) for r in finished()}
    # dataset by dataset, so that a shortened run still has every algorithm on the first datasets
    order = {t: i for i, t in enumerate(dict.fromkeys(c.task for c in suite.cells))}
    train, only = set(args.algos.split(",")), set(filter(None, args.datasets.split(",")))
    if only - set(order):
        raise SystemExit(f"--datasets: {', '.join(sorted(only - set(order)))} not in the suite ({', '.join(order)})")
    for cell in sorted(suite.cells, key=lambda c: order[c.task]):
        if cell.algo not in train or only and cell.task not in only:
            continue
        for seed in cell.seeds:
            if (cell.algo, cell.task, seed) in have or args.report_only:
                continue
            r = train_d3rlpy(cell.algo, cell.task, seed, cell.steps, hidden[cell.key], 256, cell.eval_episodes)
            keep_run(args.out, r)
            print(f"d3rlpy {cell.algo} {cell.task} seed {seed}: {r['score']:.1f} ({r['train_s']:.0f} s)", flush=True)

    done = finished()  # re-read: another process on the same --out may have added runs
    ours = heron_scores(suite, args.suite_root)
    theirs: dict[tuple[str, str], list[float]] = {}
    for r in sorted(done, key=lambda r: r["seed"]):
        theirs.setdefault((r["algo"], r["dataset"]), []).append(r["score"])
    tasks = sorted({c.task for c in suite.cells})
    rows, details = [], []
    for algo in CONFIGS:
        # the datasets both libraries finished (all seeds) for this algorithm
        done = [t for t in tasks if (algo, t) in ours and len(theirs.get((algo, t), [])) >= len(ours[(algo, t)])]
        if not done:
            rows.append([NAMES[algo], "missing", "missing", "", "", ""])
            continue
        runs = min(len(d[(algo, t)]) for d in (ours, theirs) for t in done)
        mats = {"heron": matrix(ours, algo, done, runs), "d3rlpy": matrix(theirs, algo, done, runs)}
        agg = aggregates(mats, args.reps, 0)
        poi = probability_of_improvement(mats, args.reps, 0)["d3rlpy,heron"]  # P(d3rlpy > heron)
        iqm = {lib: agg[lib]["IQM"] for lib in mats}
        rows.append([NAMES[algo], f"{iqm['heron'][0]:.1f} [{iqm['heron'][1]:.1f}, {iqm['heron'][2]:.1f}]",
                     f"{iqm['d3rlpy'][0]:.1f} [{iqm['d3rlpy'][1]:.1f}, {iqm['d3rlpy'][2]:.1f}]",
                     f"{1 - poi[0]:.2f} [{1 - poi[2]:.2f}, {1 - poi[1]:.2f}]", str(runs),
                     ", ".join(t.rsplit("/", 1)[-1] for t in done)])
        for t in done:
            details.append([NAMES[algo], t, f"{np.mean(ours[(algo, t)]):.1f} ± {np.std(ours[(algo, t)]):.1f}",
                            f"{np.mean(theirs[(algo, t)]):.1f} ± {np.std(theirs[(algo, t)]):.1f}"])
    print(C.header("offline scores vs d3rlpy", "-", C.loadavg(), ("jax", "flax", "optax", "d3rlpy", "torch")))
    print()
    print(f"Tasks: {', '.join(tasks)}; 5k updates, 64x64 networks, batch 256; final normalised score, "
          f"10 episodes; IQM over seeds x tasks with 95% stratified bootstrap CIs ({args.reps} resamples).")
    print()
    print(C.md_table(["algorithm", "heron IQM [95% CI]", "d3rlpy IQM [95% CI]", "P(heron > d3rlpy) [95% CI]",
                      "seeds", "datasets"], rows))
    print()
    print(C.md_table(["algorithm", "dataset", "heron mean ± std", "d3rlpy mean ± std"], details))


if __name__ == "__main__":
    main()
