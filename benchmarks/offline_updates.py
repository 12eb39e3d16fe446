"""Offline agents' gradient updates per second: heron's offline loop vs d3rlpy in the same run; FLOP fraction.

What is timed: `heron.loops.offline.run_chunk` — K updates per compiled call (default K = 1000),
each update sampling a batch of 256 on the device from a 1M-transition dataset and applying the
agent's `update`; 2x256 ReLU networks (twin critics as one fused `Ensemble`), Hopper shapes
(obs 11, action 3), data random (the cost does not depend on the values). One compile call,
then `--calls` timed calls; the median call gives updates/s (per seed; with --seeds S the
seeds run vmapped and the table also gives the total).

d3rlpy (measured in the same run, when the process can import it; run from the bench venv): its own
training step as `fit` runs it — `ReplayBuffer.sample_transition_batch(256)` then `algo.update(batch)` —
for BC, TD3+BC, IQL, CQL and AWAC, every network 2x256 (VectorEncoderFactory([256, 256])), batch 256
(AWAC's default is 1024), CQL with n_action_samples=10 (as heron's: 10 each from uniform, pi(.|s), pi(.|s')),
torch on CPU with its default threads; the same 1M transitions in a d3rlpy `ReplayBuffer`. Timed in blocks
of updates; median block.

Other peers: reference figures from issue 4, measured on a 2-core machine like this one (batch 256, 256x256
MLPs, Hopper shapes, median updates/s), not re-measured here (JAX-CORL and CORL need d4rl/mujoco-py): CORL
(PyTorch) IQL 101, TD3+BC 146, CQL 7.9; JAX-CORL IQL 192, TD3+BC 242, CQL 16. Goals: >= 1.2x JAX-CORL,
>= 2x d3rlpy, >= 60% of the FLOP limit. Every agent runs with 2x256 hidden layers here (CQL's default is 3x256).
CQL evaluates 30 sampled actions per state, so it runs K // 10 updates per call.

FLOP fraction: the matmul FLOPs of one update, counted from its jaxpr (2·|output|·|contracted dims| for
every dot_general, forward and backward as JAX traces them; elementwise work, Adam and sampling left out),
times heron's updates/s, over the matmul limit measured in the same run by offpolicy_updates.matmul_gflops
(the best float32 `jnp.dot` rate on this CPU, compiled loop). A `lax.cond` counts its costlier branch:
TD3+BC's delayed actor step is counted every update, so its fraction is an upper bound.

Run:  bench-venv/bin/python benchmarks/offline_updates.py [--updates 1000] [--calls 5] [--seeds 1] [--algos iql,td3bc]
      (.venv/bin/python runs heron's side only)
Prints a Markdown table; it does not write BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys

import gymnasium as gym
import jax
import numpy as np

import heron  # noqa: F401  (first: its default CPU flags must be set before JAX starts its backend)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C

OBS, ACT, BATCH = 11, 3, 256
EPISODES, EPISODE_LEN = 1000, 1000  # 1M transitions, like a D4RL Hopper dataset
JAX_CORL = {"iql": 192.0, "td3bc": 242.0, "cql": 16.0}
CORL = {"iql": 101.0, "td3bc": 146.0, "cql": 7.9}
D3RLPY_ISSUE = {"iql": 62.0, "td3bc": 86.0, "cql": 13.0}  # issue 4's figures, shown beside our measurement


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


def heron_config(algo: str):
    from heron.agents import get_agent

    spec = get_agent(algo)
    fields = set(spec.config.__dataclass_fields__)
    sizes = {name: (256, 256) for name in ("actor_hidden", "critic_hidden", "value_hidden", "hidden") if name in fields}
    return spec, spec.config(batch_size=BATCH, **sizes)


def updates_per_second(algo: str, ds, data, k: int, calls: int, seeds: int) -> float:
    from heron.loops import offline

    spec, cfg = heron_config(algo)
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


def dot_flops(jaxpr) -> float:
    """Matmul FLOPs of a jaxpr: 2 * |output| * |contracted dims| per dot_general, through nested
    jaxprs; a `cond` counts its costliest branch, a `scan` its body times its length."""
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2.0 * np.prod(eqn.outvars[0].aval.shape) * np.prod([lhs[d] for d in lhs_contract])
        elif name == "cond":
            total += max(dot_flops(b.jaxpr) for b in eqn.params["branches"])
        elif name == "scan":
            total += eqn.params["length"] * dot_flops(eqn.params["jaxpr"].jaxpr)
        elif name == "while":
            raise ValueError("a while loop in one update: its trip count is unknown")
        else:
            for v in eqn.params.values():
                sub = getattr(v, "jaxpr", v)
                if hasattr(sub, "eqns"):
                    total += dot_flops(sub)
    return total


def flops_per_update(algo: str, ds, data) -> float:
    """Matmul FLOPs of one update (forward and backward passes as JAX traces them)."""
    from heron.data.dataset import sample_transitions
    from heron.loops import offline

    spec, cfg = heron_config(algo)
    state = offline.init_offline(0, 1, spec, cfg, ds.observation_space, ds.action_space, offline.dataset_stats(ds))
    agent = jax.tree.map(lambda x: x[0], state.agent)
    one = lambda a, k: spec.update(a, sample_transitions(data, k, cfg.batch_size), k, cfg)
    return dot_flops(jax.make_jaxpr(one)(agent, jax.random.PRNGKey(0)).jaxpr)


# --------------------------------------------------------------------------------------- d3rlpy
D3RLPY_ALGOS = {"bc": "BCConfig", "td3bc": "TD3PlusBCConfig", "iql": "IQLConfig", "cql": "CQLConfig",
                "awac": "AWACConfig"}


def d3rlpy_buffer(ds):
    """The same transitions as a d3rlpy ReplayBuffer (its flat layout: one observation per step)."""
    import d3rlpy

    return d3rlpy.dataset.MDPDataset(observations=ds.observations[ds.obs_index()], actions=ds.actions, rewards=ds.rewards,
                                     terminals=ds.terminations, timeouts=ds.truncations)


def d3rlpy_updates_per_second(algo: str, buffer, block: int, blocks: int) -> float:
    import d3rlpy

    enc = d3rlpy.models.VectorEncoderFactory([256, 256])
    cls = getattr(d3rlpy.algos, D3RLPY_ALGOS[algo])
    kwargs = {"batch_size": BATCH}
    if algo == "bc":
        kwargs["encoder_factory"] = enc
    else:
        kwargs.update(actor_encoder_factory=enc, critic_encoder_factory=enc)
    if algo == "iql":
        kwargs["value_encoder_factory"] = enc
    if algo == "cql":
        kwargs["n_action_samples"] = 10
    model = cls(**kwargs).create(device="cpu:0")
    model.build_with_dataset(buffer)

    def step():
        model.update(buffer.sample_transition_batch(BATCH))

    for _ in range(3):  # warm-up
        step()
    times = [C.timed(lambda: [step() for _ in range(block)]) for _ in range(blocks)]
    return block / C.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=1000, help="updates per compiled call K")
    parser.add_argument("--calls", type=int, default=5, help="timed calls (median reported)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds vmapped in one program")
    parser.add_argument("--algos", default="iql,td3bc,cql,bc,awac,xql,fdvl,riql")
    parser.add_argument("--d3rlpy-seconds", type=float, default=5.0, help="about how long each d3rlpy block runs")
    parser.add_argument("--quick", action="store_true", help="smoke run: IQL and BC, few updates")
    args = parser.parse_args()
    if args.quick:
        args.updates, args.calls, args.algos, args.d3rlpy_seconds = 20, 1, "iql,bc", 0.1
    try:
        import d3rlpy  # noqa: F401
        import torch
        has_d3rlpy = True
    except ImportError:
        has_d3rlpy = False
        print("d3rlpy is not importable here: heron's side only (run from the bench venv for the peer)", flush=True)
    from offpolicy_updates import matmul_gflops

    load_before = C.loadavg()
    limit = max(matmul_gflops(args.calls).values())
    ds = random_dataset()
    data = ds.to_device()
    buffer = d3rlpy_buffer(ds) if has_d3rlpy else None
    rows = []
    for algo in args.algos.split(","):
        k = max(args.updates // 10, 1) if algo == "cql" else args.updates
        per_seed = updates_per_second(algo, ds, data, k, args.calls, args.seeds)
        gflops = per_seed * args.seeds * flops_per_update(algo, ds, data) / 1e9
        row = [algo, str(k), C.fmt(per_seed), C.fmt(per_seed * args.seeds), f"{gflops:.1f}", f"{100 * gflops / limit:.0f}%"]
        if has_d3rlpy and algo in D3RLPY_ALGOS:
            guess = {"bc": 400, "cql": 13}.get(algo, 80)  # rough rates: blocks of about --d3rlpy-seconds
            peer = d3rlpy_updates_per_second(algo, buffer, max(int(guess * args.d3rlpy_seconds), 10), args.calls)
            row += [C.fmt(peer), f"{per_seed / peer:.2f}x"]
        else:
            row += ["n/a", "n/a"]
        for peers in (D3RLPY_ISSUE, JAX_CORL, CORL):
            peer = peers.get(algo)
            row.append(f"{per_seed / peer:.2f}x ({C.fmt(peer)})" if peer else "n/a")
        rows.append(row)
        print(" | ".join(row), flush=True)
    names = ("jax", "jaxlib", "flax", "optax") + (("d3rlpy", "torch") if has_d3rlpy else ())
    print(C.header("offline updates/s", load_before, C.loadavg(), names))
    print()
    print(f"K = {args.updates} updates per call, batch {BATCH}, 2x256 MLPs, obs {OBS}, action {ACT}, "
          f"{EPISODES * EPISODE_LEN:,} transitions, seeds {args.seeds}, devices {jax.devices()}"
          + (f"; torch threads {torch.get_num_threads()}" if has_d3rlpy else "")
          + f"; matmul limit {limit:.1f} GFLOP/s")
    print()
    print(C.md_table(["algorithm", "K", "heron updates/s (per seed)", "all seeds", "heron matmul GFLOP/s",
                      "% of matmul limit", "d3rlpy updates/s (same run)", "heron / d3rlpy",
                      "vs d3rlpy (issue 4 figure)", "vs JAX-CORL (issue 4 figure)", "vs CORL (issue 4 figure)"], rows))


if __name__ == "__main__":
    main()
