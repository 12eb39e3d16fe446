"""The `heron` command.

    heron train ALGO --env ID [--steps N] [--seeds N] [name=value ...]
    heron train ALGO --dataset PATH_OR_NAME [--env ID|none] [--steps UPDATES] [--seeds N] [name=value ...]
    heron train ALGO --dataset D --env ID --offline-steps N --online-steps M [--finetune-method own|wsrl|plain]
    heron finetune RUN_DIR [--env ID] --online-steps M [--method own|wsrl|plain]
    heron train --resume RUN_DIR
    heron eval RUN_DIR [--episodes N]
    heron runs list | show | compare | plot
    heron bench list | run SUITE [--workers N] | status SUITE | report SUITE
    heron tune ALGO (--env ID | --dataset D) --trials N --steps S [--seeds K] [--param SPEC ...] [--objective ...]
    heron algos

Bad input is reported as one line naming the problem and the fix, with exit status 2.
"""

import argparse
import os
import sys
from pathlib import Path

from heron.errors import HeronError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one HeronError line instead of usage + exit."""

    def error(self, message):
        raise HeronError(f"{message} (see `{self.prog} --help`)")


def _add_train(sub):
    p = sub.add_parser("train", help="train an agent in a tracked run directory", add_help=False,
                       description="Train ALGO on --env; agent hyperparameters as name=value (see `heron train ALGO --help`).")
    p.add_argument("algo", nargs="?", help="algorithm (see `heron algos`)")
    p.add_argument("-h", "--help", action="store_true", help="show this help, or ALGO's hyperparameters")
    p.add_argument("--env", dest="env_id", help="environment id, e.g. CartPole-v1, Pendulum-v1, HalfCheetah-v5 "
                   "(offline: where to evaluate; default the dataset's env, `none` for no env)")
    p.add_argument("--dataset", default=None, metavar="PATH_OR_NAME",
                   help="train an offline algorithm on this dataset (a directory, or a name under $HERON_DATASETS_DIR)")
    p.add_argument("--steps", type=int, default=None,
                   help="environment steps (default 100000); with --dataset, gradient updates (default 1000000)")
    p.add_argument("--seeds", type=int, default=1, help="seeds trained together by vmap (compiled loop)")
    p.add_argument("--seed", type=int, default=0, help="base seed")
    p.add_argument("--loop", default="auto", help="auto | host | compiled (auto: compiled when a pure-JAX env exists)")
    p.add_argument("--eval-every", type=int, default=0, help="env steps between evaluations (default: steps/10)")
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation")
    p.add_argument("--log-every", type=int, default=0,
                   help="env steps between metric rows (default: 1000 in the host loop, steps/100 in the compiled loop)")
    p.add_argument("--checkpoint-every", type=int, default=0, help="env steps between checkpoints (0: only at the end)")
    p.add_argument("--runs-dir", type=Path, default=None, help="where run directories go (default ./runs or $HERON_RUNS_DIR)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR", help="continue a killed or interrupted run")
    g = p.add_argument_group("offline→online (with --dataset)")
    g.add_argument("--offline-steps", type=int, default=None, help="gradient updates of the offline phase (= --steps)")
    g.add_argument("--online-steps", type=int, default=0,
                   help="then fine-tune online for this many env steps in --env (0: offline only)")
    _add_rule_flags(g, "--finetune-method")
    p.add_argument("--eval-env", default=None, metavar="ID",
                   help="evaluate in this env instead of --env, with the same spaces: a policy trained in a simulator "
                        "scored on its real system (heron/Pendulum-real-v0); with --dataset it needs --online-steps "
                        "(H2O: --env the simulator)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_train, parser=p)


def _add_rule_flags(group, method_flag: str) -> None:
    group.add_argument(method_flag, dest="finetune_method", default=None, choices=("own", "wsrl", "plain"),
                       help="switch rule: own (the algorithm's; default), wsrl (drop offline data, warm-up rollouts, "
                            "UTD 4), plain (keep offline data, no warm-up, UTD 1)")
    keep = group.add_mutually_exclusive_group()
    keep.add_argument("--keep-offline-data", dest="keep_offline_data", action="store_true", default=None,
                      help="override the rule: the online buffer starts with the offline data")
    keep.add_argument("--drop-offline-data", dest="keep_offline_data", action="store_false",
                      help="override the rule: the online buffer holds online data only")
    group.add_argument("--warmup-steps", type=int, default=None, help="override the rule: warm-up env steps")
    group.add_argument("--updates-per-step", type=int, default=None, help="override the rule: updates per env step")


def _agent_help(algo: str) -> str:
    import dataclasses

    from heron.agents.registry import get_agent
    from heron.config import field_docs

    spec = get_agent(algo)
    docs = field_docs(spec.config)
    lines = [f"{spec.name}: {spec.summary}", f"actions: {', '.join(sorted(spec.action_kinds))}; {spec.family}", "",
             "hyperparameters (override as name=value):"]
    for field in dataclasses.fields(spec.config):
        default = field.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        lines.append(f"  {field.name}={shown}\n      {docs.get(field.name, '')}")
    return "\n".join(lines)


def _cmd_train(args, extra: list[str]) -> int:
    from heron.experiments.train import (
        DEFAULT_OFFLINE_UPDATES,
        DEFAULT_STEPS,
        TrainRequest,
        resume_run,
        train,
    )

    if args.help:
        print(_agent_help(args.algo) if args.algo else args.parser.format_help())
        return 0
    if args.resume is not None:
        if args.algo or args.env_id or args.dataset or extra:
            raise HeronError("--resume continues a run with its saved config: give only `heron train --resume RUN_DIR`")
        run_dir = resume_run(args.resume, progress=not args.no_progress)
        print(run_dir)
        return 0
    if not args.algo:
        raise HeronError("missing ALGO: `heron train ALGO --env ID`, e.g. `heron train ppo --env CartPole-v1` (see `heron algos`)")
    if not args.env_id and args.dataset is None:
        from heron.agents.registry import agent_info

        if agent_info(args.algo).family == "offline":
            raise HeronError(f"missing --dataset: {args.algo} learns from a dataset: "
                             f"`heron train {args.algo} --dataset PATH_OR_NAME` (make one with `heron data suite make small`)")
        raise HeronError(f"missing --env: `heron train {args.algo} --env ID`, e.g. --env CartPole-v1")
    bad_flags = [t for t in extra if t.startswith("-")]
    if bad_flags:
        raise HeronError(f"unknown option {bad_flags[0]}: agent hyperparameters are name=value (see `heron train {args.algo} --help`)")
    switch_flags = [args.finetune_method, args.keep_offline_data, args.warmup_steps, args.updates_per_step]
    if args.dataset is None and (args.online_steps or args.offline_steps is not None
                                 or any(f is not None for f in switch_flags)):
        raise HeronError("--offline-steps/--online-steps and the switch flags apply to offline runs: add --dataset D "
                         "(or fine-tune a finished offline run with `heron finetune RUN_DIR`)")
    if args.online_steps < 0:
        raise HeronError(f"--online-steps must be >= 0, got {args.online_steps}")
    if args.dataset is not None and not args.online_steps and any(f is not None for f in switch_flags + [args.eval_env]):
        raise HeronError("the switch flags (--finetune-method, --keep/--drop-offline-data, --warmup-steps, "
                         "--updates-per-step, --eval-env) need --online-steps M")
    if args.offline_steps is not None and args.steps is not None and args.offline_steps != args.steps:
        raise HeronError(f"--offline-steps {args.offline_steps} and --steps {args.steps} disagree: give one of them")
    default_steps = DEFAULT_STEPS if args.dataset is None else DEFAULT_OFFLINE_UPDATES
    steps = args.offline_steps if args.offline_steps is not None else (default_steps if args.steps is None else args.steps)
    req = TrainRequest(algo=args.algo, env_id=args.env_id, steps=steps, seed=args.seed,
                       seeds=args.seeds, loop=args.loop, eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                       log_every=args.log_every, checkpoint_every=args.checkpoint_every, overrides=tuple(extra),
                       dataset=args.dataset, online_steps=args.online_steps,
                       finetune_method=None if args.finetune_method == "own" else args.finetune_method,
                       keep_offline_data=args.keep_offline_data, warmup_steps=args.warmup_steps,
                       updates_per_step=args.updates_per_step, eval_env=args.eval_env)
    run_dir = train(req, runs_root=args.runs_dir, progress=not args.no_progress, argv=sys.argv)
    print(run_dir)
    return 0


def _cmd_eval(args, extra) -> int:
    import numpy as np

    from heron.experiments.train import evaluate_run

    returns = evaluate_run(args.run_dir, episodes=args.episodes, seed=args.seed, env_id=args.env)
    print(f"{args.run_dir}: mean return {np.mean(returns):.2f} ± {np.std(returns):.2f} over {returns.size} episodes")
    return 0


def _cmd_finetune(args, extra) -> int:
    from heron.experiments.finetune import finetune_run, load_summary

    run_dir = finetune_run(args.run_dir, env_id=args.env_id, online_steps=args.online_steps,
                           method=None if args.finetune_method == "own" else args.finetune_method,
                           keep_offline_data=args.keep_offline_data, warmup_steps=args.warmup_steps,
                           updates_per_step=args.updates_per_step, parent_seed=args.parent_seed,
                           eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                           checkpoint_every=args.checkpoint_every, runs_root=args.runs_dir,
                           progress=not args.no_progress, argv=sys.argv)
    s = load_summary(run_dir)
    print(f"switch: {s.get('pre_switch_score', float('nan')):.1f} -> final {s.get('final_score', float('nan')):.1f} "
          f"({s.get('score')}), dip {s.get('dip_percent', float('nan')):.1f}%, recovered after "
          f"{s.get('steps_to_recover')} env steps", file=sys.stderr)
    print(run_dir)
    return 0


def _cmd_algos(args, extra) -> int:
    from heron.agents.registry import agent_info, available

    for name in available():
        info = agent_info(name)  # read from the agents' source: listing imports no agent (and no JAX)
        print(f"{name:8s} {info.family:10s} {'/'.join(sorted(info.action_kinds)):20s} {info.summary}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="heron", description="Deep RL from every source of experience.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    _add_train(sub)
    p = sub.add_parser("eval", help="evaluate a run's latest checkpoint")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--env", default=None, metavar="ID",
                   help="evaluate in this env instead of the run's own (same spaces; e.g. a policy trained in a "
                        "simulator on its real system: heron/Pendulum-real-v0)")
    p.set_defaults(handler=_cmd_eval)
    p = sub.add_parser("finetune", help="continue a finished offline run online (a new run with both phases)")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="an offline run made by `heron train ALGO --dataset D`")
    p.add_argument("--env", dest="env_id", default=None, help="env of the online phase (default: the run's env)")
    p.add_argument("--online-steps", type=int, default=20_000, help="online env steps (default 20000)")
    p.add_argument("--parent-seed", type=int, default=0, help="which seed of a --seeds N run to continue")
    p.add_argument("--eval-every", type=int, default=0, help="env steps between evaluations (default: online steps/10)")
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation")
    p.add_argument("--checkpoint-every", type=int, default=0, help="env steps between checkpoints (0: only at the end)")
    p.add_argument("--runs-dir", type=Path, default=None, help="where run directories go (default ./runs or $HERON_RUNS_DIR)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_rule_flags(p, "--method")
    p.set_defaults(handler=_cmd_finetune)
    p = sub.add_parser("algos", help="list the algorithms")
    p.set_defaults(handler=_cmd_algos)
    from heron.cli.runs import add_runs_parser

    add_runs_parser(sub)
    from heron.cli.data import add_data_parser

    add_data_parser(sub)
    from heron.cli.bench import add_bench_parser
    from heron.cli.tune import add_tune_parser

    add_bench_parser(sub)
    add_tune_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if getattr(args, "handler", None) is None:
            parser.print_help()
            return 2
        if extra and args.handler is not _cmd_train and not getattr(args, "takes_overrides", False):
            raise HeronError(f"unexpected argument {extra[0]!r} (see `heron {args.command} --help`)")
        return int(args.handler(args, extra) or 0)
    except HeronError as err:
        print(f"heron: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("heron: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left (`heron runs list | head`): stop quietly, as other commands do, and point stdout
        # at /dev/null so the interpreter's final flush does not fail again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (AttributeError, OSError, ValueError):  # no file descriptor behind stdout (a test's capture)
            pass
        return 141  # 128 + SIGPIPE, what a shell reports for a command its reader left


if __name__ == "__main__":
    sys.exit(main())
