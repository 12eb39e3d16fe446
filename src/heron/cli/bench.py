"""`heron bench ...`: benchmark suites (heron/experiments/bench.py) and their reports.

    heron bench list                                   the shipped suites
    heron bench run SUITE [--root DIR] [--workers N | --ray-address ADDR] [--dashboard]
    heron bench status SUITE [--root DIR]              cells finished / resumable / new
    heron bench report SUITE [--root DIR] [--reps N] [--seed S]

SUITE is a shipped suite's name or a TOML file. Runs and the report go to ROOT/NAME (ROOT: --root,
$HERON_BENCH_DIR, or ./bench). `run` skips finished cells and resumes killed ones, so running it
again after an interruption continues the suite.
"""

import sys
from pathlib import Path

from heron.errors import HeronError


def add_bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="run benchmark suites and write their reports")
    bench_sub = p.add_subparsers(dest="bench_command", parser_class=type(p))
    p.set_defaults(handler=lambda args, extra: (p.print_help(), 2)[1])
    q = bench_sub.add_parser("list", help="the suites shipped with heron")
    q.set_defaults(handler=_cmd_list)
    for verb, text in (("run", "run every cell of a suite that is not finished yet"),
                       ("status", "how many cells are finished, resumable, running or new"),
                       ("report", "learning curves, final scores and rliable aggregates of a suite")):
        q = bench_sub.add_parser(verb, help=text)
        q.add_argument("suite", help="a shipped suite's name (`heron bench list`) or a suite TOML file")
        q.add_argument("--root", type=Path, default=None, help="suites root (default $HERON_BENCH_DIR or ./bench)")
        if verb == "run":
            q.add_argument("--workers", type=int, default=0,
                           help="run cells as Ray tasks on a local Ray instance with N CPU slots (0: in this process)")
            q.add_argument("--ray-address", default=None, help="run on this Ray cluster instead (e.g. auto, ray://host:10001)")
            q.add_argument("--dashboard", action="store_true", help="start Ray's dashboard (bound to 127.0.0.1)")
            q.add_argument("--no-report", action="store_true", help="do not write the report at the end")
            q.add_argument("--progress", action="store_true", help="progress bars of each run (in-process only)")
        if verb in ("run", "report"):
            q.add_argument("--reps", type=int, default=5000, help="bootstrap resamples of the confidence intervals")
            q.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
        q.set_defaults(handler={"run": _cmd_run, "status": _cmd_status, "report": _cmd_report}[verb])


def _cmd_list(args, extra) -> int:
    from heron.experiments.bench import load_suite, shipped_reference_file, shipped_suites

    suites = sorted(shipped_suites().items())
    width = max((len(name) for name, _ in suites), default=0)
    for name, path in suites:
        suite = load_suite(path, check_budgets=False)  # listing: no agent (and no JAX) imported
        # Reports compare a user's runs with shipped reference results, where a suite has them.
        reference = "reference" if shipped_reference_file(name) is not None else "-"
        print(f"{name:{width}s} {len(suite.cells):4d} cells  {reference:9s}  {suite.description}")
    return 0


def _suite(args):
    from heron.experiments.bench import load_suite, suite_dir

    suite = load_suite(args.suite)
    return suite, suite_dir(suite, args.root)


def _cmd_run(args, extra) -> int:
    from heron.experiments.bench import run_suite, summarize

    suite, root = _suite(args)
    if args.workers < 0:
        raise HeronError(f"--workers must be >= 0, got {args.workers}")
    total = len(suite.cells)
    done = 0

    def on_result(r):
        nonlocal done
        done += 1
        line = f"[{done}/{total}] {r.outcome:8s} {r.cell_key}"
        print(line + (f": {r.error}" if r.error else ""), file=sys.stderr, flush=True)

    results = run_suite(suite, root, workers=args.workers, ray_address=args.ray_address, dashboard=args.dashboard,
                        progress=args.progress, on_result=on_result)
    counts = summarize(results)
    print(f"suite {suite.name}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())), file=sys.stderr)
    if not args.no_report and any(r.outcome in ("finished", "resumed", "skipped") for r in results):
        from heron.experiments.bench_report import write_report

        print(write_report(suite, root, reps=args.reps, seed=args.seed))
    print(root)
    failed = counts.get("failed", 0) + counts.get("running", 0)
    if failed:
        print(f"heron: error: {failed} cell(s) did not finish (see above); run `heron bench run {args.suite}` again "
              "to continue them", file=sys.stderr)
        return 1
    return 0


def _cmd_status(args, extra) -> int:
    from heron.experiments.bench import suite_progress

    suite, root = _suite(args)
    counts = suite_progress(suite, root)
    print(f"{suite.name} ({root}): {len(suite.cells)} cells: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return 0


def _cmd_report(args, extra) -> int:
    from heron.experiments.bench_report import write_report

    suite, root = _suite(args)
    print(write_report(suite, root, reps=args.reps, seed=args.seed))
    return 0
