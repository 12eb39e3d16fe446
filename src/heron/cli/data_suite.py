"""`heron data suite make NAME` / `heron data suite list`: local D4RL-style dataset suites.

    heron data suite make NAME [--preset small|full|sim-real] [--tasks T1,T2] [--seed S] [--root DIR] [--force]
    heron data suite list [--root DIR]

`make` trains SAC on each task and writes random, medium, expert, medium-replay, medium-expert and
full-replay datasets to ROOT/NAME/<task>-<kind>/ with ROOT/NAME/manifest.json (see
heron/data/suites.py). ROOT is --root, else $HERON_DATASETS_DIR, else ./datasets. The preset
defaults to NAME when NAME is a preset (`heron data suite make small`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def register(data_sub) -> None:
    """Add `suite make` and `suite list` to the `heron data` subparsers."""
    p = data_sub.add_parser("suite", help="build local D4RL-style dataset suites (random/medium/expert/replay)")
    suite_sub = p.add_subparsers(dest="suite_command", parser_class=type(p))
    p.set_defaults(handler=lambda args, extra: _missing_verb(p))

    m = suite_sub.add_parser("make", help="train the policies and collect a suite's datasets",
                             description=__doc__.split("\n\n")[2].replace("\n", " "))
    m.add_argument("name", help="suite directory name under the datasets root (e.g. small)")
    m.add_argument("--preset", default=None, help="budget preset: small, full or sim-real (default: NAME when it names a preset)")
    m.add_argument("--tasks", default=None, help="comma-separated task slugs or env ids (default: all of the preset's)")
    m.add_argument("--seed", type=int, default=0, help="seed of every random draw (same seed, same bytes)")
    m.add_argument("--root", type=Path, default=None, help="datasets root (default: $HERON_DATASETS_DIR or ./datasets)")
    m.add_argument("--force", action="store_true",
                   help="rebuild tasks the suite already has, or replace a suite made with another preset/seed")
    m.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    m.set_defaults(handler=_cmd_make)

    q = suite_sub.add_parser("list", help="list the presets and the suites under the datasets root")
    q.add_argument("--root", type=Path, default=None, help="datasets root (default: $HERON_DATASETS_DIR or ./datasets)")
    q.set_defaults(handler=_cmd_list)


def _missing_verb(parser) -> int:
    parser.print_help()
    return 2


def _cmd_make(args, extra) -> int:
    from heron.data.suites import make_suite

    start = time.perf_counter()

    def log(message: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - start:7.1f}s] {message}", file=sys.stderr, flush=True)

    suite_dir = make_suite(args.name, args.preset, tasks=args.tasks, seed=args.seed, root=args.root, force=args.force,
                           log=log, argv=["heron", *sys.argv[1:]])
    from heron.data.suites import read_manifest

    manifest = read_manifest(suite_dir)
    for rel, record in manifest["datasets"].items():
        print(f"{suite_dir / rel}: {record['episodes']} episodes, {record['transitions']} transitions, "
              f"normalised score {record['normalized_score']:.1f}")
    print(f"{suite_dir / 'manifest.json'} ({time.perf_counter() - start:.0f}s)")
    return 0


def _cmd_list(args, extra) -> int:
    from heron.data.minari_io import default_datasets_root
    from heron.data.suites import PRESETS, list_suites

    print("presets:")
    for preset in PRESETS.values():
        tasks = ", ".join(f"{t.slug} ({t.env_id}, {t.expert_steps} SAC steps, {t.dataset_transitions} transitions)"
                          for t in preset.tasks)
        print(f"  {preset.name}: {tasks}")
    root = args.root if args.root is not None else default_datasets_root()
    suites = list_suites(root)
    print(f"suites under {root}:" if suites else f"no suites under {root}")
    for name, manifest in suites:
        config = manifest.get("config", {})
        tasks = ", ".join(sorted(manifest.get("tasks", {})))
        print(f"  {name}: preset {config.get('preset', {}).get('name')}, seed {config.get('seed')}, tasks {tasks}, "
              f"{len(manifest.get('datasets', {}))} datasets")
    return 0
