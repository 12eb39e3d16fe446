"""PPO on CartPole-v1, env steps per second (training: acting + env + updates), after compile.

Two match-ups, each with the SAME hyperparameters given to both sides:

1. heron host loop (`heron.loops.online_host.HostLoop`, Gymnasium sync vector env, jitted
   act/update) vs Stable-Baselines3 PPO, with rl-zoo3's CartPole-v1 settings: 8 envs,
   n_steps 32, minibatch 256 (so 1 minibatch per epoch), 20 epochs, γ 0.98, λ 0.8, lr 1e-3
   linearly annealed, entropy 0, clip 0.2, 64x64 tanh actor and critic, grad-norm 0.5, no value
   clipping. (rl-zoo3 also anneals the clip range linearly; heron's PPO has a fixed clip range.
   That changes no arithmetic, so not the speed.)
2. heron compiled loop (`heron.loops.online_jax`, env + agent in one jitted program) vs
   PureJaxRL's `ppo.py` (run as is from benchmarks/_peers/), with PureJaxRL's CartPole defaults:
   4 envs, 128 steps, 4 epochs, 4 minibatches, lr 2.5e-4 annealed, γ 0.99, λ 0.95, clip 0.2,
   ent 0.01, vf 0.5, grad-norm 0.5, 64x64 tanh, 5e5 steps. heron's PPO defaults are these.
   PureJaxRL's `train` is wrapped to return only the trained parameters (not every step's
   LogWrapper info): see `purejaxrl_params_only` (a jaxlib 0.10.2 CPU hang with the vmapped
   program; the single-seed program is wrapped the same way so that both time the same thing).

Compile time (the first call, or for the host loop the first iteration) is reported apart;
rates are medians over repeats of the whole run after it. Host-side runs (SB3 and heron host)
time fewer env steps than rl-zoo3's 1e5 (see --host-steps) because they are slow; the rate
does not depend on it.

Run (in the bench venv):  bench-venv/bin/python benchmarks/ppo_cartpole.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import _common as C

PUREJAXRL_CONFIG = {
    "LR": 2.5e-4, "NUM_ENVS": 4, "NUM_STEPS": 128, "TOTAL_TIMESTEPS": 5e5, "UPDATE_EPOCHS": 4,
    "NUM_MINIBATCHES": 4, "GAMMA": 0.99, "GAE_LAMBDA": 0.95, "CLIP_EPS": 0.2, "ENT_COEF": 0.01,
    "VF_COEF": 0.5, "MAX_GRAD_NORM": 0.5, "ACTIVATION": "tanh", "ENV_NAME": "CartPole-v1",
    "ANNEAL_LR": True, "DEBUG": False,
}


def heron_purejaxrl_config(total_steps: int):
    from heron.agents import get_agent

    c = PUREJAXRL_CONFIG
    return get_agent("ppo").config(
        num_envs=c["NUM_ENVS"], num_steps=c["NUM_STEPS"], total_timesteps=int(total_steps), learning_rate=c["LR"],
        anneal_lr=True, gamma=c["GAMMA"], gae_lambda=c["GAE_LAMBDA"], num_minibatches=c["NUM_MINIBATCHES"],
        update_epochs=c["UPDATE_EPOCHS"], clip_coef=c["CLIP_EPS"], ent_coef=c["ENT_COEF"], vf_coef=c["VF_COEF"],
        max_grad_norm=c["MAX_GRAD_NORM"], hidden=(64, 64), activation="tanh", clip_vloss=True)


def heron_zoo_config(total_steps: int):
    from heron.agents import get_agent

    return get_agent("ppo").config(
        num_envs=8, num_steps=32, total_timesteps=int(total_steps), learning_rate=1e-3, anneal_lr=True,
        gamma=0.98, gae_lambda=0.8, num_minibatches=1, update_epochs=20, clip_coef=0.2, ent_coef=0.0,
        vf_coef=0.5, max_grad_norm=0.5, hidden=(64, 64), activation="tanh", clip_vloss=False)


# ---------------------------------------------------------------------------- compiled loops
def heron_compiled(total_steps: int, repeats: int, seeds: int = 0) -> tuple[float, list[float]]:
    """(compile s, [env steps/s per repeat]); seeds=0: one un-vmapped run, S: S runs vmapped.
    Steps/s counts the env steps of all seeds together."""
    from heron.agents import get_agent
    from heron.envs.jax_envs import make_jax_env
    from heron.loops.online_jax import init_loop, init_loop_seeds, run_chunk, steps_per_iteration

    spec, cfg, env = get_agent("ppo"), heron_purejaxrl_config(total_steps), make_jax_env("CartPole-v1")
    iters = int(total_steps) // steps_per_iteration(spec, cfg)
    if seeds:
        ls0 = init_loop_seeds(0, seeds, spec, cfg, env, total_steps)
    else:
        ls0 = init_loop(jax.random.PRNGKey(0), spec, cfg, env, total_steps)
    jax.block_until_ready(ls0)
    t0 = time.perf_counter()
    jax.block_until_ready(run_chunk(ls0, 1))
    compile_s = time.perf_counter() - t0
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(run_chunk(ls0, iters))
        rates.append(iters * steps_per_iteration(spec, cfg) * max(seeds, 1) / (time.perf_counter() - t0))
    return compile_s, rates


def purejaxrl(total_steps: float, repeats: int, seeds: int = 0) -> tuple[float, list[float]]:
    """PureJaxRL's own make_train, jitted (seeds=0) or jit(vmap(...)) over `seeds` keys, as its README does."""
    C.add_purejaxrl_to_path()
    from purejaxrl.ppo import make_train

    config = dict(PUREJAXRL_CONFIG, TOTAL_TIMESTEPS=total_steps)
    train = purejaxrl_params_only(make_train(config))
    if seeds:
        rng = jax.random.split(jax.random.PRNGKey(30), seeds)
        fn = jax.jit(jax.vmap(train))
    else:
        rng = jax.random.PRNGKey(30)
        fn = jax.jit(train)
    t0 = time.perf_counter()
    compiled = fn.lower(rng).compile()
    compile_s = time.perf_counter() - t0
    steps = config["NUM_UPDATES"] * config["NUM_STEPS"] * config["NUM_ENVS"] * max(seeds, 1)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(rng))
        rates.append(steps / (time.perf_counter() - t0))
    return compile_s, rates


def purejaxrl_params_only(train):
    """PureJaxRL's `train`, returning only the trained parameters instead of also every step's
    LogWrapper info. With jaxlib 0.10.2 on this CPU the vmapped program that returns the per-step
    metrics hangs (all XLA worker threads idle, the result never ready; seen every time with >= 2
    seeds); returning the parameters runs. The training computation is the same."""
    return lambda rng: train(rng)["runner_state"][0].params


# ------------------------------------------------------------------------------- host loops
def heron_host(total_steps: int, repeats: int) -> tuple[float, list[float]]:
    """(first-iteration s incl. compile, [env steps/s after the first iteration])."""
    from heron.agents import get_agent
    from heron.loops.online_host import HostLoop, HostLoopConfig

    spec, cfg = get_agent("ppo"), heron_zoo_config(total_steps)
    per_iter = cfg.num_envs * cfg.num_steps
    firsts, rates = [], []
    for r in range(repeats):
        stamps = []

        class Clock:
            def on_log(self, step, metrics):
                stamps.append((step, time.perf_counter()))

            def on_eval(self, step, returns):
                pass

            def on_checkpoint(self, step, tree, meta):
                pass

        t0 = time.perf_counter()
        loop = HostLoop(spec, cfg, HostLoopConfig(env_id="CartPole-v1", total_steps=int(total_steps), seed=r,
                                                  eval_every=0, eval_episodes=0, log_every=per_iter))
        loop.run(loop.init(), Clock())
        loop.close()
        (s1, t1), (s2, t2) = stamps[0], stamps[-1]
        firsts.append(t1 - t0)
        rates.append((s2 - s1) / (t2 - t1))
    # the first repeat pays the compile; later repeats build a new loop (new jit) too
    return C.median(firsts), rates


def sb3_ppo(total_steps: int, repeats: int, threads: int) -> list[float]:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(threads)

    def linear(v):
        return lambda progress_remaining: progress_remaining * v

    rates = []
    for r in range(repeats):
        env = make_vec_env("CartPole-v1", n_envs=8, seed=r)
        model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, n_epochs=20, gae_lambda=0.8, gamma=0.98,
                    learning_rate=linear(1e-3), ent_coef=0.0, clip_range=linear(0.2), device="cpu", seed=r, verbose=0)
        model.learn(256)  # warm-up iteration
        t0 = time.perf_counter()
        model.learn(int(total_steps), reset_num_timesteps=True)
        rates.append(int(total_steps) / (time.perf_counter() - t0))
        env.close()
    return rates


# ------------------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small runs for a smoke test (no BENCHMARKS.md write)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--host-steps", type=int, default=50_000, help="env steps per host-loop run (SB3 and heron host)")
    ap.add_argument("--compiled-steps", type=int, default=500_000, help="env steps per compiled run (PureJaxRL default 5e5)")
    ap.add_argument("--sb3-threads", default="1,2", help="torch thread counts to time SB3 with (its best is the peer)")
    ap.add_argument("--skip", default="", help="comma list to skip: host,compiled")
    args = ap.parse_args()
    repeats = 1 if args.quick else args.repeats
    host_steps = 4096 if args.quick else args.host_steps
    comp_steps = 51_200 if args.quick else args.compiled_steps
    skip = set(args.skip.split(",")) - {""}
    load_before = C.loadavg()
    rows = []
    goals = []

    if "compiled" not in skip:
        pj_c, pj_r = purejaxrl(comp_steps, repeats)
        print(f"PureJaxRL: compile {pj_c:.2f}s, {C.fmt(C.median(pj_r))} steps/s", flush=True)
        h_c, h_r = heron_compiled(comp_steps, repeats)
        print(f"heron compiled: compile {h_c:.2f}s, {C.fmt(C.median(h_r))} steps/s", flush=True)
        ratio = C.median(h_r) / C.median(pj_r)
        rows += [["PureJaxRL defaults (4x128, 4 epochs x 4 mb), 1 seed", "PureJaxRL ppo.py", f"{pj_c:.1f}",
                  C.fmt(C.median(pj_r)), " / ".join(C.fmt(x) for x in pj_r), ""],
                 ["", "heron online_jax", f"{h_c:.1f}", C.fmt(C.median(h_r)), " / ".join(C.fmt(x) for x in h_r),
                  f"{ratio:.2f}x"]]
        goals.append(f"- heron compiled loop / PureJaxRL: {ratio:.2f}x; compile {h_c:.1f} s vs {pj_c:.1f} s")
    if "host" not in skip:
        sb = {int(t): sb3_ppo(host_steps, repeats, int(t)) for t in args.sb3_threads.split(",")}
        for t, r in sb.items():
            print(f"SB3 PPO ({t} torch threads): {C.fmt(C.median(r))} steps/s", flush=True)
        best_t = max(sb, key=lambda t: C.median(sb[t]))
        hh_c, hh_r = heron_host(host_steps, repeats)
        print(f"heron host: first iteration {hh_c:.2f}s, {C.fmt(C.median(hh_r))} steps/s", flush=True)
        ratio = C.median(hh_r) / C.median(sb[best_t])
        for t, r in sb.items():
            rows.append(["rl-zoo3 settings (8x32, 20 epochs x 1 mb)" if t == 1 else "",
                         f"SB3 PPO, torch {t} thread{'s' if t > 1 else ''}", "-", C.fmt(C.median(r)),
                         " / ".join(C.fmt(x) for x in r), ""])
        rows.append(["", "heron HostLoop", f"{hh_c:.1f} (1st iteration)", C.fmt(C.median(hh_r)),
                     " / ".join(C.fmt(x) for x in hh_r), f"{ratio:.2f}x vs SB3's best ({best_t} thr)"])
        goals.append(f"- heron host loop / SB3 PPO (its faster thread setting): {ratio:.2f}x")
        goals.append(f"- heron host loop's first iteration (compile of act and update included): {hh_c:.1f} s")
    load_after = C.loadavg()
    table = C.md_table(["setting", "implementation", "compile s", "env steps/s (median)", "repeats", "heron / peer"], rows)
    print(table)
    if args.quick:
        return
    body = "\n\n".join([
        C.header("ppo", load_before, load_after, ("jax", "jaxlib", "flax", "optax", "gymnax", "torch",
                                                   "stable_baselines3", "gymnasium", "heron")),
        f"Env steps/s of whole PPO training on CartPole-v1 (acting, env, updates), median of {repeats} repeats, "
        f"compile excluded. Compiled runs: {comp_steps:,} steps each; host runs: {host_steps:,} steps each. "
        "Same hyperparameters on both sides of each match-up (see the script's docstring). PureJaxRL's env is "
        "gymnax's CartPole, heron's its own pure-JAX CartPole; SB3 uses a DummyVecEnv, heron a Gymnasium sync "
        "vector env.",
        table, "Results:\n" + "\n".join(goals)])
    C.write_section("ppo", "PPO CartPole-v1 env steps/s", body)


if __name__ == "__main__":
    main()
