"""SAC and TD3 gradient updates per second: heron vs Stable-Baselines3 (PyTorch) vs sbx (JAX).

What is timed: gradient updates only (no env), batch 256, 2x256 ReLU actor and twin 2x256 ReLU
critics, HalfCheetah-v5 shapes (obs 17, action 6), replay data random.

* heron: `spec.update` compiled inside `jax.lax.scan` over K updates per call (K=1 and K=50),
  each update sampling its batch from a device replay buffer (`heron.data.replay`) of random
  transitions. One call = K updates; we time many calls after a compile call.
* SB3: `model.train(gradient_steps=K, batch_size=256)` after filling the replay buffer with
  random transitions (torch, CPU, 2 threads).
* sbx: the same `model.train(gradient_steps=K, batch_size=256)` call (it samples K batches on
  the host and runs them in one jitted `fori_loop`).

FLOP count (matmuls only; biases, activations, Adam, Polyak averaging and sampling are left
out, so the count is a lower bound on the work): a dense layer on a batch of B rows costs
2·B·in·out FLOPs forward; a backward pass that needs weight *and* input gradients costs 2x the
forward, one that needs only input gradients (a critic the actor loss differentiates through
with frozen critic weights) 1x. With F_a = one actor forward, F_q = one critic forward:
  SAC update  = critic step [actor fwd on s' (F_a) + 2 target critics fwd (2F_q) + 2 critics
                fwd+bwd (6F_q)] + actor step [actor fwd+bwd (3F_a) + 2 critics fwd + input-bwd
                (4F_q)]                                    = 4·F_a + 12·F_q
  TD3 update  = critic step [target actor fwd (F_a) + 2 target critics (2F_q) + 2 critics
                fwd+bwd (6F_q)] + every 2nd update an actor step [actor fwd+bwd (3F_a) + Q1 fwd +
                input-bwd (2F_q)]                          = 2.5·F_a + 9·F_q
The matmul limit is measured: `jnp.dot` float32 GFLOP/s on this CPU for 256x256 @ 256x256 and
for the batch-256 layer shapes of these networks, run as a compiled loop so that dispatch is
amortised. JAX's CPU backend uses all cores (2 here); torch threads: --torch-threads (default 1).

Run (in the bench venv):  bench-venv/bin/python benchmarks/offpolicy_updates.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("XLA_FLAGS", "")

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

import _common as C

OBS, ACT, B, H = 17, 6, 256, 256
BUFFER = 100_000


# ------------------------------------------------------------------------------------- FLOPs
def dense_flops(sizes, batch=B):
    return sum(2 * batch * i * o for i, o in zip(sizes[:-1], sizes[1:]))


def flops_per_update(algo: str) -> float:
    fq = dense_flops([OBS + ACT, H, H, 1])
    if algo == "sac":
        fa = dense_flops([OBS, H, H, 2 * ACT])  # mean and log-std heads
        return 4 * fa + 12 * fq
    fa = dense_flops([OBS, H, H, ACT])
    return 2.5 * fa + 9 * fq


# ------------------------------------------------------------------------------- matmul limit
def matmul_gflops(repeats: int) -> dict[str, float]:
    """GFLOP/s of float32 jnp.dot in a compiled loop, for the shapes these updates use."""
    shapes = {
        "256x256 @ 256x256": (256, 256, 256),
        "256x23 @ 23x256 (critic layer 1)": (256, 23, 256),
        "256x256 @ 256x1 (critic head)": (256, 256, 1),
    }
    out = {}
    for name, (m, k, n) in shapes.items():
        a = jax.random.normal(jax.random.PRNGKey(0), (m, k), jnp.float32)
        b = jax.random.normal(jax.random.PRNGKey(1), (k, n), jnp.float32) / np.sqrt(k)
        iters = max(50, int(2e9 / (2 * m * k * n)))  # ~2 GFLOP per call

        @jax.jit
        def loop(a, b):
            def body(i, acc):
                # a fresh left operand each iteration (no CSE), result accumulated
                return acc + jnp.dot(a + i.astype(jnp.float32) * 1e-6, b)
            return jax.lax.fori_loop(0, iters, body, jnp.zeros((m, n), jnp.float32))

        loop(a, b).block_until_ready()
        ts = [C.timed(lambda: loop(a, b).block_until_ready()) for _ in range(repeats)]
        out[name] = 2 * m * k * n * iters / C.median(ts) / 1e9
    # and the whole 256-wide MLP forward, batch 256 (what the networks actually run)
    x = jax.random.normal(jax.random.PRNGKey(2), (B, OBS + ACT))
    ws = [jax.random.normal(jax.random.PRNGKey(3 + i), s) * 0.05 for i, s in enumerate([(23, 256), (256, 256), (256, 1)])]
    iters = 500

    @jax.jit
    def mlp_loop(x, ws):
        def body(i, acc):
            h = x + i.astype(jnp.float32) * 1e-6
            for w in ws[:-1]:
                h = jax.nn.relu(h @ w)
            return acc + h @ ws[-1]
        return jax.lax.fori_loop(0, iters, body, jnp.zeros((B, 1)))

    mlp_loop(x, ws).block_until_ready()
    ts = [C.timed(lambda: mlp_loop(x, ws).block_until_ready()) for _ in range(repeats)]
    out["batch-256 critic MLP forward (23-256-256-1)"] = dense_flops([23, 256, 256, 1]) * iters / C.median(ts) / 1e9
    return out


# ------------------------------------------------------------------------------------ heron
def heron_updates_per_s(algo: str, k: int, total_updates: int, repeats: int) -> tuple[float, float]:
    from heron.agents import get_agent
    from heron.data.replay import ReplayBuffer, replay_sample
    from heron.types import Transition

    spec = get_agent(algo)
    cfg = spec.config(batch_size=B)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (OBS,), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (ACT,), np.float32)
    key = jax.random.PRNGKey(0)
    state = spec.init(key, obs_space, act_space, cfg)
    ks = jax.random.split(jax.random.PRNGKey(1), 4)
    data = Transition(
        obs=jax.random.normal(ks[0], (BUFFER, OBS)),
        action=jax.random.uniform(ks[1], (BUFFER, ACT), minval=-1, maxval=1),
        reward=jax.random.normal(ks[2], (BUFFER,)),
        next_obs=jax.random.normal(ks[3], (BUFFER, OBS)),
        terminated=jnp.zeros((BUFFER,)),
        truncated=jnp.zeros((BUFFER,)),
    )
    buffer = ReplayBuffer(data, jnp.zeros((), jnp.int32), jnp.asarray(BUFFER, jnp.int32))

    def k_updates(state, key):
        def one(state, k):
            k_sample, k_update = jax.random.split(k)
            state, metrics = spec.update(state, replay_sample(buffer, k_sample, B), k_update, cfg)
            return state, metrics
        state, metrics = jax.lax.scan(one, state, jax.random.split(key, k))
        return state, jax.tree.map(lambda m: m[-1], metrics)

    fn = jax.jit(k_updates, donate_argnums=0)
    t0 = time.perf_counter()
    state, m = fn(state, key)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    calls = max(1, total_updates // k)
    rates = []
    for r in range(repeats):
        keys = jax.random.split(jax.random.PRNGKey(100 + r), calls)
        jax.block_until_ready(keys)
        t0 = time.perf_counter()
        for i in range(calls):
            state, m = fn(state, keys[i])
        jax.block_until_ready((state, m))
        rates.append(calls * k / (time.perf_counter() - t0))
    return C.median(rates), compile_s


# ------------------------------------------------------------------------------ SB3 and sbx
def _fill_buffer(model, n: int) -> None:
    rb = model.replay_buffer
    rng = np.random.default_rng(0)
    shape = rb.observations.shape  # [buffer_size, n_envs, obs]
    rb.observations[:n] = rng.standard_normal((n, *shape[1:])).astype(rb.observations.dtype)
    if not rb.optimize_memory_usage:
        rb.next_observations[:n] = rng.standard_normal((n, *shape[1:])).astype(rb.observations.dtype)
    rb.actions[:n] = rng.uniform(-1, 1, (n, *rb.actions.shape[1:])).astype(rb.actions.dtype)
    rb.rewards[:n] = rng.standard_normal((n, *rb.rewards.shape[1:])).astype(rb.rewards.dtype)
    rb.dones[:n] = 0
    rb.pos, rb.full = n, False


TORCH_THREADS = 1


def peer_updates_per_s(lib: str, algo: str, k: int, total_updates: int, repeats: int) -> tuple[float, float]:
    from stable_baselines3.common.logger import configure

    env = gym.make("HalfCheetah-v5")
    assert env.observation_space.shape == (OBS,) and env.action_space.shape == (ACT,)
    if lib == "sb3":
        import torch
        torch.set_num_threads(TORCH_THREADS)
        import stable_baselines3 as sb
        extra = {"device": "cpu"}
    else:
        import sbx as sb
        extra = {}
    cls = {"sac": sb.SAC, "td3": sb.TD3}[algo]
    model = cls("MlpPolicy", env, buffer_size=BUFFER, batch_size=B, learning_starts=0,
                policy_kwargs={"net_arch": [H, H]}, verbose=0, seed=0, **extra)
    model.set_logger(configure(None, []))
    _fill_buffer(model, BUFFER)
    t0 = time.perf_counter()
    model.train(gradient_steps=k, batch_size=B)
    compile_s = time.perf_counter() - t0
    calls = max(1, total_updates // k)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            model.train(gradient_steps=k, batch_size=B)
        rates.append(calls * k / (time.perf_counter() - t0))
    env.close()
    return C.median(rates), compile_s


# ------------------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="few updates, for a smoke test (no BENCHMARKS.md write)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--updates", type=int, default=2000, help="updates timed per repeat (per library, K, algo)")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="SB3's torch threads (default 1: on this shared 2-core VM, 2 OpenMP threads made "
                         "small torch ops up to ~300x slower whenever another process was running)")
    ap.add_argument("--only", default="", help="comma list of libraries to run (heron,sb3,sbx)")
    args = ap.parse_args()
    updates = 100 if args.quick else args.updates
    repeats = 1 if args.quick else args.repeats
    libs = args.only.split(",") if args.only else ["heron", "sbx", "sb3"]
    global TORCH_THREADS
    TORCH_THREADS = args.torch_threads
    load_before = C.loadavg()

    limit = matmul_gflops(repeats)
    peak = max(limit.values())
    print("matmul GFLOP/s:", {k: round(v, 1) for k, v in limit.items()}, flush=True)

    results = {}  # (algo, lib, k) -> (rate, compile)
    for algo in ("sac", "td3"):
        for k in (1, 50):
            for lib in libs:
                # SB3 has nothing to compile: K only changes the Python loop, time fewer updates
                n = updates if lib != "sb3" else max(updates // 10, k)
                if lib == "heron":
                    r = heron_updates_per_s(algo, k, n, repeats)
                else:
                    r = peer_updates_per_s(lib, algo, k, n, repeats)
                results[(algo, lib, k)] = r
                print(f"{algo} {lib:5s} K={k:<3d} {r[0]:9.1f} updates/s (first call {r[1]:.2f}s)", flush=True)
    load_after = C.loadavg()

    rows = []
    for algo in ("sac", "td3"):
        fpu = flops_per_update(algo)
        for k in (1, 50):
            for lib in libs:
                rate, comp = results[(algo, lib, k)]
                gf = rate * fpu / 1e9
                vs = []
                for peer in ("sb3", "sbx"):
                    if lib == "heron" and (algo, peer, k) in results:
                        vs.append(f"{rate / results[(algo, peer, k)][0]:.2f}x")
                    elif lib == "heron":
                        vs.append("")
                rows.append([algo.upper(), lib, k, C.fmt(rate), f"{comp:.2f}", f"{gf:.1f}", f"{100 * gf / peak:.0f}%",
                             *(vs if lib == "heron" else ["", ""])])
    table = C.md_table(["algo", "library", "K updates/call", "updates/s (median)", "first call s (compile)",
                        "matmul GFLOP/s achieved", "% of matmul limit", "heron / SB3", "heron / sbx"], rows)
    lim_rows = [[k, f"{v:.1f}"] for k, v in limit.items()]
    lim_table = C.md_table(["jnp.dot float32 (compiled loop, 2 threads)", "GFLOP/s (median)"], lim_rows)
    fl = (f"FLOPs per update (matmuls only, batch 256): SAC {flops_per_update('sac') / 1e6:.1f} MFLOP "
          f"(4·F_a + 12·F_q), TD3 {flops_per_update('td3') / 1e6:.1f} MFLOP (2.5·F_a + 9·F_q); the limit used for "
          f"'% of matmul limit' is the best measured jnp.dot rate, {peak:.1f} GFLOP/s.")
    print(table)
    print(lim_table)
    print(fl)
    if args.quick:
        return
    goals = []
    for algo in ("sac", "td3"):
        for k in (1, 50):
            h = results.get((algo, "heron", k))
            if not h:
                continue
            parts = []
            if (algo, "sb3", k) in results:
                x = h[0] / results[(algo, "sb3", k)][0]
                parts.append(f"vs SB3 {x:.2f}x (goal ≥2x: {'met' if x >= 2 else 'MISSED'})")
            if (algo, "sbx", k) in results:
                x = h[0] / results[(algo, "sbx", k)][0]
                parts.append(f"vs sbx {x:.2f}x (goal ≥1.2x: {'met' if x >= 1.2 else 'MISSED'})")
            pct = 100 * h[0] * flops_per_update(algo) / 1e9 / peak
            parts.append(f"{pct:.0f}% of matmul limit (goal ≥60%: {'met' if pct >= 60 else 'MISSED'})")
            goals.append(f"- {algo.upper()} K={k}: " + "; ".join(parts))
    body = "\n\n".join([
        C.header("offpolicy", load_before, load_after,
                 ("jax", "jaxlib", "flax", "optax", "torch", "stable_baselines3", "sbx-rl", "heron")),
        "Gradient updates/s, batch 256, 2x256 MLPs, HalfCheetah-v5 shapes (obs 17, act 6), random replay data; "
        f"median of {repeats} repeats of {updates} updates (SB3: {max(updates // 10, 1)}, min K; torch {TORCH_THREADS} thread(s)) "
        "after one warm-up/compile call. "
        "heron: `update` inside `lax.scan` over K updates per jitted call, batches sampled from a device buffer. "
        "SB3/sbx: `model.train(gradient_steps=K, batch_size=256)`.",
        table, lim_table, fl, "Goals:\n" + "\n".join(goals)])
    C.write_section("offpolicy", "Off-policy gradient updates/s (SAC, TD3)", body)


if __name__ == "__main__":
    main()
