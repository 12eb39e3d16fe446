"""`heron tune ALGO (--env ID | --dataset D) --trials N [...] [name=value ...]` (heron/experiments/tune.py)."""

import sys
from pathlib import Path

from heron.errors import HeronError


def add_tune_parser(sub) -> None:
    p = sub.add_parser("tune", help="search hyperparameters with Optuna (IQM over seeds, pruning, Pareto fronts)",
                       description="Search ALGO's hyperparameters. Fixed hyperparameters of every trial as name=value.")
    p.add_argument("algo", help="algorithm (see `heron algos`)")
    p.add_argument("--env", dest="env_id", default=None, help="environment id (online algorithms; offline: where to evaluate)")
    p.add_argument("--dataset", default=None, help="dataset (offline algorithms)")
    p.add_argument("--trials", type=int, required=True, help="finished trials the study should hold")
    p.add_argument("--steps", type=int, required=True, help="env steps per trial run (updates for offline runs)")
    p.add_argument("--online-steps", type=int, default=0,
                   help="offline→online: online env steps after --steps updates (--steps 0: none, as RLPD and H2O)")
    p.add_argument("--finetune-method", default=None, choices=("own", "wsrl", "plain"),
                   help="offline→online: the switch rule (default own: the algorithm's; see `heron finetune --help`)")
    p.add_argument("--warmup-steps", type=int, default=None, help="offline→online: override the rule's warm-up env steps")
    p.add_argument("--eval-env", default=None, metavar="ID",
                   help="evaluate and score trials in this env instead of --env, with the same spaces (a real "
                        "system beside its simulator; H2O; with --dataset it needs --online-steps)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per trial (their IQM is the objective; default 3)")
    p.add_argument("--seed", type=int, default=0, help="first seed of every trial, and the sampler's seed")
    p.add_argument("--param", action="append", default=[], metavar="SPEC",
                   help="searched hyperparameter: name=float:LOW:HIGH[:log] | name=int:LOW:HIGH[:log] | "
                        "name=choice:A|B (repeat; default: the algorithm's default space)")
    p.add_argument("--objective", action="append", default=[], choices=("final", "auc", "time"),
                   help="final (default), auc, time; repeat for a multi-objective study (Pareto front)")
    p.add_argument("--pruner", default="auto", choices=("auto", "median", "none"),
                   help="auto: median pruning for one objective, none for several")
    p.add_argument("--evaluations", type=int, default=5, help="evaluations per run (the pruner's checkpoints)")
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation")
    p.add_argument("--study", default=None, help="study name (default ALGO-TASK); the same name continues it")
    p.add_argument("--root", type=Path, default=None, help="studies root (default $HERON_TUNE_DIR or ./tune)")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite file in the study directory)")
    p.add_argument("--workers", type=int, default=0, help="trials in parallel as Ray tasks on a local Ray instance")
    p.add_argument("--ray-address", default=None, help="run trials on this Ray cluster")
    p.set_defaults(handler=_cmd_tune, takes_overrides=True)


def _cmd_tune(args, extra) -> int:
    from heron.experiments.tune import TuneRequest, tune

    bad = [t for t in extra if t.startswith("-") or "=" not in t]
    if bad:
        raise HeronError(f"unexpected argument {bad[0]!r}: fixed hyperparameters are name=value "
                         f"(see `heron tune --help`)")
    req = TuneRequest(algo=args.algo, env_id=args.env_id, dataset=args.dataset, steps=args.steps, trials=args.trials,
                      seeds=args.seeds, params=tuple(args.param), overrides=tuple(extra),
                      objectives=tuple(args.objective or ["final"]), study=args.study, seed=args.seed,
                      eval_episodes=args.eval_episodes, evaluations=args.evaluations, pruner=args.pruner,
                      online_steps=args.online_steps,
                      finetune_method=None if args.finetune_method == "own" else args.finetune_method,
                      warmup_steps=args.warmup_steps, eval_env=args.eval_env)

    def on_trial(number, outcome):
        values = outcome.get("values")
        shown = ", ".join(f"{v:.4g}" for v in values) if values else outcome.get("message") or ""
        print(f"trial {number}: {outcome['state']} {shown}", file=sys.stderr, flush=True)

    out = tune(req, root=args.root, storage=args.storage, workers=args.workers, ray_address=args.ray_address,
               on_trial=on_trial)
    import json

    summary = json.loads((out / "best.json").read_text())
    for t in summary.get("best") or summary.get("pareto_front") or []:
        print(f"best trial {t['number']}: {t['values']}  {' '.join(t['overrides'])}", file=sys.stderr)
    print(out)
    return 0
