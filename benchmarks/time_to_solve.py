"""Wall time from process start (interpreter start, imports and compiles included) until the
deterministic policy's mean evaluation return reaches the solve threshold.

* CartPole-v1, PPO, heron compiled loop (`online_jax`), heron's PPO defaults (PureJaxRL /
  CleanRL CartPole settings: 4 envs x 128 steps, lr 2.5e-4 annealed over 5e5 steps); threshold
  mean return >= 475 over 10 evaluation episodes; evaluated every 10 iterations (5,120 steps).
* Pendulum-v1, SAC, heron compiled loop, heron's SAC defaults (Haarnoja et al. 2018b; 5,000
  random steps first, 1 update per env step, batch 256); threshold mean return >= -200 over 10
  evaluation episodes; evaluated every 1,000 env steps once learning has started.

Each seed runs in a fresh Python process started by this script (`--child`); the clock starts
just before the process is spawned and stops when the child reports the evaluation that
crossed the threshold (the time of that report). Evaluation time counts (it is part of knowing
that it is solved). A run that has not solved within --max-steps is reported as unsolved.

Run (in the bench venv):  bench-venv/bin/python benchmarks/time_to_solve.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

TASKS = {
    "CartPole-v1": {"algo": "ppo", "threshold": 475.0, "eval_every_iters": 10, "max_steps": 500_000, "goal_s": 10},
    "Pendulum-v1": {"algo": "sac", "threshold": -200.0, "eval_every_iters": 1000, "max_steps": 60_000, "goal_s": 60},
}


def child(env_id: str, seed: int, max_steps: int) -> None:
    t_imports = time.time()
    import jax
    import numpy as np

    from heron.agents import get_agent
    from heron.envs.jax_envs import make_jax_env
    from heron.loops.online_jax import evaluate, init_loop, run_chunk, steps_per_iteration

    task = TASKS[env_id]
    spec = get_agent(task["algo"])
    cfg = spec.config()
    env = make_jax_env(env_id)
    per_iter = steps_per_iteration(spec, cfg)
    ls = init_loop(jax.random.PRNGKey(seed), spec, cfg, env, max_steps)
    eval_key = jax.random.PRNGKey(10_000 + seed)
    report = lambda **kw: print("RESULT " + json.dumps(kw), flush=True)  # noqa: E731
    report(event="imported", t=time.time(), import_s=time.time() - t_imports)
    steps = 0
    # off-policy: no evaluation before learning starts
    first = -(-getattr(cfg, "learning_starts", 0) // per_iter) if spec.family == "off_policy" else 0
    chunk = task["eval_every_iters"]
    n = max(first, chunk)
    while steps < max_steps:
        ls, _ = run_chunk(ls, n)
        steps += n * per_iter
        eval_key, k = jax.random.split(eval_key)
        mean = float(np.mean(np.asarray(evaluate(spec, ls.agent, env, k, 10))))
        report(event="eval", t=time.time(), steps=steps, mean_return=mean)
        if mean >= task["threshold"]:
            report(event="solved", t=time.time(), steps=steps, mean_return=mean)
            return
        n = chunk
    report(event="unsolved", t=time.time(), steps=steps)


def run_seed(env_id: str, seed: int, max_steps: int, timeout_s: float) -> dict:
    t0 = time.time()
    proc = subprocess.run([sys.executable, __file__, "--child", env_id, str(seed), str(max_steps)],
                          capture_output=True, text=True, timeout=timeout_s)
    events = [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not events:
        raise RuntimeError(f"{env_id} seed {seed} failed:\n{proc.stderr[-3000:]}")
    last = events[-1]
    first_eval = next((e for e in events if e["event"] == "eval"), None)
    return {"solved": last["event"] == "solved", "wall_s": last["t"] - t0, "steps": last["steps"],
            "import_s": events[0]["t"] - t0,
            "first_eval_s": (first_eval["t"] - t0) if first_eval else float("nan"),
            "evals": [(e["steps"], round(e["mean_return"], 1)) for e in events if e["event"] == "eval"]}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    import _common as C

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 seed each, no BENCHMARKS.md write")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--only", default="", help="CartPole-v1 or Pendulum-v1")
    args = ap.parse_args()
    seeds = 1 if args.quick else args.seeds
    load_before = C.loadavg()
    rows, goals = [], []
    for env_id, task in TASKS.items():
        if args.only and env_id != args.only:
            continue
        results = []
        for s in range(seeds):
            r = run_seed(env_id, s, task["max_steps"], timeout_s=900)
            print(env_id, s, {k: v for k, v in r.items() if k != "evals"}, "evals:", r["evals"][-6:], flush=True)
            results.append(r)
        solved = [r for r in results if r["solved"]]
        # an unsolved run counts as infinitely slow in the median
        walls = sorted(r["wall_s"] if r["solved"] else float("inf") for r in results)
        med = C.median(walls)
        rows.append([env_id, task["algo"].upper() + " (online_jax, defaults)", f"≥{task['threshold']:g}",
                     f"{len(solved)}/{len(results)}", " / ".join(f"{w:.1f}" for w in walls), f"{med:.1f}",
                     " / ".join(str(r["steps"]) for r in results),
                     f"{C.median([r['import_s'] for r in results]):.1f}",
                     f"{C.median([r['first_eval_s'] for r in results]):.1f}", f"≤{task['goal_s']}"])
        goals.append(f"- {env_id}: median {med:.1f} s (goal ≤{task['goal_s']} s: "
                     f"{'met' if med <= task['goal_s'] else 'MISSED'})")
    load_after = C.loadavg()
    table = C.md_table(["env", "agent / loop", "threshold (mean of 10 eval episodes)", "solved", "wall s per seed",
                        "median wall s", "env steps at solve", "process start to heron imported, s (median)",
                        "to first evaluation, s (median)", "goal s"], rows)
    print(table)
    if args.quick:
        return
    body = "\n\n".join([
        C.header("solve", load_before, load_after, ("jax", "jaxlib", "flax", "optax", "heron")),
        f"Wall time from spawning a fresh Python process to the first evaluation whose mean return crosses the "
        f"threshold, {seeds} seeds (0..{seeds - 1}), compile and evaluation included; see the script's docstring.",
        table, "Goals:\n" + "\n".join(goals)])
    C.write_section("solve", "Time to solve (process start to threshold)", body)


if __name__ == "__main__":
    main()
