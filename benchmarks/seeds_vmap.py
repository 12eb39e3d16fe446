"""8 seeds by `vmap` in one compiled program vs 8 single-seed runs, PPO CartPole-v1.

Both sides use PureJaxRL's CartPole hyperparameters (4 envs x 128 steps, 4 epochs x 4
minibatches; 2.5e5 env steps per seed by default, --steps; see ppo_cartpole.py).

* vmapped: heron `online_jax.init_loop_seeds(0, 8, ...)` + one `run_chunk` call (all 8 runs in
  one program); PureJaxRL `jax.jit(jax.vmap(make_train(config)))(8 keys)`, as its README does.
* sequential: the single-seed program compiled ONCE, then called 8 times in a row in the same
  process, seeds 0..7 (heron `init_loop` + `run_chunk`; PureJaxRL `jax.jit(make_train(config))`).
  Separate processes would also pay the compile 8 times; the "with compile" column adds it.
* PureJaxRL runs in child processes with a timeout: the sequential side in one process, each
  vmapped repeat in a fresh process (compile + one call), because with jaxlib 0.10.2 the
  vmapped program's second call in a process hung every time we tried; a hang is reported.
* PureJaxRL's `train` is wrapped to return only the trained parameters (see
  `ppo_cartpole.purejaxrl_params_only`: the vmapped program returning every step's metrics
  hangs in jaxlib 0.10.2's CPU runtime).

ratio = wall(8 seeds vmapped) / wall(8 sequential single-seed runs); goal <= 0.6.

Run (in the bench venv):  bench-venv/bin/python benchmarks/seeds_vmap.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import jax

import _common as C
from ppo_cartpole import PUREJAXRL_CONFIG, heron_purejaxrl_config, purejaxrl_params_only

SEEDS = 8


def heron_walls(total_steps: int, repeats: int):
    from heron.agents import get_agent
    from heron.envs.jax_envs import make_jax_env
    from heron.loops.online_jax import init_loop, init_loop_seeds, run_chunk, steps_per_iteration

    spec, cfg, env = get_agent("ppo"), heron_purejaxrl_config(total_steps), make_jax_env("CartPole-v1")
    iters = int(total_steps) // steps_per_iteration(spec, cfg)
    singles = [init_loop(jax.random.PRNGKey(s), spec, cfg, env, total_steps) for s in range(SEEDS)]
    batched = init_loop_seeds(0, SEEDS, spec, cfg, env, total_steps)
    jax.block_until_ready((singles, batched))
    c1 = C.timed(lambda: jax.block_until_ready(run_chunk(singles[0], 1)))
    c8 = C.timed(lambda: jax.block_until_ready(run_chunk(batched, 1)))
    seq, vm = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for ls in singles:
            jax.block_until_ready(run_chunk(ls, iters))
        seq.append(time.perf_counter() - t0)
        vm.append(C.timed(lambda: jax.block_until_ready(run_chunk(batched, iters))))
    return c1, c8, seq, vm


def heron_scaling(total_steps: int, seed_counts=(1, 8, 32), iters: int = 20) -> list[tuple[int, float]]:
    """ms per iteration per seed of the vmapped heron program for several seed counts: flat means
    the run is compute-bound (vmap has no per-op overhead left to amortise)."""
    from heron.agents import get_agent
    from heron.envs.jax_envs import make_jax_env
    from heron.loops.online_jax import init_loop_seeds, run_chunk

    spec, cfg, env = get_agent("ppo"), heron_purejaxrl_config(total_steps), make_jax_env("CartPole-v1")
    out = []
    for s in seed_counts:
        ls = init_loop_seeds(0, s, spec, cfg, env, total_steps)
        jax.block_until_ready(run_chunk(ls, 1))
        t = min(C.timed(lambda: jax.block_until_ready(run_chunk(ls, iters))) for _ in range(3))
        out.append((s, 1e3 * t / iters / s))
    return out


def purejaxrl_child(mode: str, total_steps: float, repeats: int) -> None:
    """One side of PureJaxRL's measurement, alone in its own process (see the module docstring)."""
    import json

    C.add_purejaxrl_to_path()
    from purejaxrl.ppo import make_train

    config = dict(PUREJAXRL_CONFIG, TOTAL_TIMESTEPS=total_steps)
    keys = jax.random.split(jax.random.PRNGKey(30), SEEDS)
    t0 = time.perf_counter()
    if mode == "vmap":
        fn = jax.jit(jax.vmap(purejaxrl_params_only(make_train(dict(config))))).lower(keys).compile()
        run = lambda: jax.block_until_ready(fn(keys))  # noqa: E731
    else:
        fn = jax.jit(purejaxrl_params_only(make_train(dict(config)))).lower(keys[0]).compile()
        run = lambda: [jax.block_until_ready(fn(k)) for k in keys]  # noqa: E731
    compile_s = time.perf_counter() - t0
    walls = [C.timed(run) for _ in range(repeats)]
    print("RESULT " + json.dumps({"compile_s": compile_s, "walls": walls}), flush=True)


def purejaxrl_walls(total_steps: float, repeats: int, timeout_s: float = 90):
    """PureJaxRL's vmapped and sequential programs, each in a fresh process with a timeout: with
    jaxlib 0.10.2 the vmapped program can hang on this CPU (BENCHMARKS.md, known issue)."""
    import json
    import subprocess
    import sys

    def child(mode, reps):
        try:
            p = subprocess.run([sys.executable, __file__, "--pjr-child", mode, str(total_steps), str(reps)],
                               capture_output=True, text=True, timeout=timeout_s)
            line = next(x for x in p.stdout.splitlines() if x.startswith("RESULT "))
            return json.loads(line[7:])
        except (subprocess.TimeoutExpired, StopIteration):
            return None

    # The vmapped program's FIRST call has always returned; later calls in the same process
    # hung. So each vmapped repeat is a fresh process (compile, one timed call).
    vms = [child("vmap", 1) for _ in range(repeats)]
    single = child("single", repeats)
    ok = [v for v in vms if v is not None]
    raw = {"vmap_hangs": sum(v is None for v in vms), "single_hung": single is None}
    if not ok or single is None:
        return None, raw
    return (single["compile_s"], C.median([v["compile_s"] for v in ok]), single["walls"],
            [v["walls"][0] for v in ok]), raw


def main():
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "--pjr-child":
        purejaxrl_child(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small runs for a smoke test (no BENCHMARKS.md write)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=250_000, help="env steps per seed")
    args = ap.parse_args()
    repeats = 1 if args.quick else args.repeats
    steps = 51_200 if args.quick else args.steps
    load_before = C.loadavg()
    rows, goals = [], []
    for name, fn in (("heron online_jax", heron_walls), ("PureJaxRL ppo.py", purejaxrl_walls)):
        if fn is purejaxrl_walls:
            res, raw = fn(steps, repeats)
            print(f"{name}: {raw}", flush=True)
            if res is None:
                rows.append([name + f" (HUNG: {raw})", "", "", "", "", "", ""])
                goals.append(f"- {name}: not measured, its programs hung (jaxlib CPU deadlock): {raw}")
                continue
            c1, c8, seq, vm = res
            if raw["vmap_hangs"]:
                name += f" ({raw['vmap_hangs']} of {repeats} vmapped repeats hung and were killed)"
        else:
            c1, c8, seq, vm = fn(steps, repeats)
        s, v = C.median(seq), C.median(vm)
        ratio = v / s
        ratio_c = (v + c8) / (s + SEEDS * c1)
        print(f"{name}: sequential 8x1 {s:.2f}s, vmap 8 {v:.2f}s, ratio {ratio:.2f}; compile 1 seed {c1:.1f}s, "
              f"8 seeds {c8:.1f}s", flush=True)
        rows.append([name, f"{s:.2f}", f"{v:.2f}", f"{ratio:.2f}", f"{c1:.1f} / {c8:.1f}", f"{ratio_c:.2f}",
                     C.fmt(SEEDS * steps / v)])
        goals.append(f"- {name}: vmap/sequential = {ratio:.2f} (goal ≤0.6: {'met' if ratio <= 0.6 else 'MISSED'})")
    scaling = heron_scaling(steps)
    print("heron vmapped ms/iteration/seed:", scaling, flush=True)
    load_after = C.loadavg()
    scale_table = C.md_table(["seeds vmapped (heron)", "ms per iteration (512 env steps + update) per seed, best of 3"],
                             [[s, f"{ms:.2f}"] for s, ms in scaling])
    table = C.md_table(["implementation", "8 sequential runs, s (median)", "8 seeds vmapped, s (median)",
                        "ratio vmap / sequential", "compile s: 1 seed / 8 seeds",
                        "ratio if each sequential run were a new process (compile x8)", "vmapped env steps/s"], rows)
    print(table)
    if args.quick:
        return
    body = "\n\n".join([
        C.header("seeds", load_before, load_after, ("jax", "jaxlib", "flax", "optax", "gymnax", "heron")),
        f"PPO CartPole-v1, PureJaxRL hyperparameters, {steps:,} env steps per seed, {SEEDS} seeds; median of "
        f"{repeats} repeats, compile excluded (except the last ratio column). 'Sequential' = the single-seed program "
        "compiled once and called 8 times in a row in the same process.",
        table, "Goals:\n" + "\n".join(goals),
        "Where the time goes: the cost per seed of heron's vmapped program at 1, 8 and 32 seeds "
        "(20 iterations each). A flat row means each seed's arithmetic already fills the cores, so batching "
        "seeds cannot save time beyond what it saves in per-op overhead:", scale_table])
    C.write_section("seeds", "8 seeds: vmap vs sequential (PPO CartPole-v1)", body)


if __name__ == "__main__":
    main()
