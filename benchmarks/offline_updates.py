"""Offline agents' gradient updates per second in heron's offline loop (JAX-CORL, CORL, d3rlpy figures).

What is timed: `heron.loops.offline.run_chunk` — K updates per compiled call (default K = 1000),
each update sampling a batch of 256 on the device from a 1M-transition dataset and applying the
agent's `update`; 2x256 ReLU networks (twin critics as one fused `Ensemble`), Hopper shapes
(obs 11, action 3), data random (the cost does not depend on the values). One compile call,
then `--calls` timed calls; the median call gives updates/s (per seed; with --seeds S the
seeds run vmapped and the table also gives the total).

Peers: reference figures from issue 4, measured on a 2-core machine like this one (batch 256,
256x256 MLPs, Hopper shapes, median updates/s) — not re-measured here (JAX-CORL and CORL need
d4rl/mujoco-py, and d3rlpy pins gymnasium 1.0.0): d3rlpy 2.8 IQL 62, TD3+BC 86, CQL 13; CORL
(PyTorch) IQL 101, TD3+BC 146, CQL 7.9; JAX-CORL IQL 192, TD3+BC 242, CQL 16. Goals: >= 1.2x
JAX-CORL, >= 2x d3rlpy. Every agent runs with 2x256 hidden layers here (CQL's default is 3x256).
CQL evaluates 30 sampled actions per state, so it runs K // 10 updates per call.

Run:  .venv/bin/python benchmarks/offline_updates.py [--updates 1000] [--calls 5] [--seeds 1] [--algos iql,td3bc]
Prints a Markdown table; it does not write BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys

import gymnasium as gym
import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C

OBS, ACT, BATCH = 11, 3, 256
EPISODES, EPISODE_LEN = 1000, 1000  # 1M transitions, like a D4RL Hopper dataset
JAX_CORL = {"iql": 192.0, "td3bc": 242.0, "cql": 16.0}
CORL = {"iql": 101.0, "td3bc": 146.0, "cql": 7.9}
D3RLPY = {"iql": 62.0, "td3bc": 86.0, "cql": 13.0}


def random_dataset():
    from heron.data.dataset import EpisodeDataset

    rng = np.random.default_rng(0)
    n, e = EPISODES * EPISODE_LEN, EPISODES
    truncations = np.zeros(n, bool)
    truncations[EPISODE_LEN - 1::EPISODE_LEN] = True
    return EpisodeDataset(
        observations=rng.normal(size=(n + e, OBS)).astype(np.float32),
        actions=rng.uniform(-1, 1, (n, ACT)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        terminations=np.zeros(n, bool), truncations=truncations,
        episode_starts=np.arange(0, n + 1, EPISODE_LEN, dtype=np.int64),
        observation_space=gym.spaces.Box(-np.inf, np.inf, (OBS,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (ACT,), np.float32),
        name="hopper-shaped-random", ref_min_score=0.0, ref_max_score=1.0)


def updates_per_second(algo: str, ds, data, k: int, calls: int, seeds: int) -> float:
    from heron.agents import get_agent
    from heron.loops import offline

    spec = get_agent(algo)
    fields = {f for f in spec.config.__dataclass_fields__}
    sizes = {name: (256, 256) for name in ("actor_hidden", "critic_hidden", "value_hidden", "hidden") if name in fields}
    cfg = spec.config(batch_size=BATCH, **sizes)
    state = offline.init_offline(0, seeds, spec, cfg, ds.observation_space, ds.action_space, offline.dataset_stats(ds))
    state, metrics = offline.run_chunk(state, data, k)  # compile
    jax.block_until_ready(metrics)
    times = []
    for _ in range(calls):
        def call():
            nonlocal state
            state, m = offline.run_chunk(state, data, k)
            jax.block_until_ready(m)
        times.append(C.timed(call))
    return k / C.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=1000, help="updates per compiled call K")
    parser.add_argument("--calls", type=int, default=5, help="timed calls (median reported)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds vmapped in one program")
    parser.add_argument("--algos", default="iql,td3bc,cql,bc,awac,xql,fdvl,riql")
    args = parser.parse_args()
    load_before = C.loadavg()
    ds = random_dataset()
    data = ds.to_device()
    rows = []
    for algo in args.algos.split(","):
        k = max(args.updates // 10, 1) if algo == "cql" else args.updates
        per_seed = updates_per_second(algo, ds, data, k, args.calls, args.seeds)
        row = [algo, str(k), C.fmt(per_seed), C.fmt(per_seed * args.seeds)]
        for peers in (JAX_CORL, CORL, D3RLPY):
            peer = peers.get(algo)
            row.append(f"{per_seed / peer:.2f}x ({C.fmt(peer)})" if peer else "n/a")
        rows.append(row)
    print(C.header("offline updates/s", load_before, C.loadavg(), ("jax", "jaxlib", "flax", "optax")))
    print()
    print(f"K = {args.updates} updates per call, batch {BATCH}, 2x256 MLPs, obs {OBS}, action {ACT}, "
          f"{EPISODES * EPISODE_LEN:,} transitions, seeds {args.seeds}, devices {jax.devices()}")
    print()
    print(C.md_table(["algorithm", "K", "heron updates/s (per seed)", "all seeds", "vs JAX-CORL", "vs CORL",
                      "vs d3rlpy"], rows))


if __name__ == "__main__":
    main()
