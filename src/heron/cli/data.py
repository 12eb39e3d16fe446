"""`heron data ...`: make, inspect, import and transform datasets.

    heron data import SOURCE OUT [--env ID] [--force]     D4RL-style .npz/.hdf5 or a Minari directory -> heron dataset
    heron data suite make NAME [...]                      (heron/cli/data_suite.py)
    heron data inspect PATH [...]                         (heron/cli/data_inspect.py)
    heron data <transform> SRC OUT [...]                  (heron/cli/data_transforms.py)

Each verb lives in its own module exposing `register(data_subparsers)`.
"""

from pathlib import Path

from heron.errors import HeronError


def add_data_parser(sub) -> None:
    from heron.cli import data_inspect, data_suite, data_transforms

    p = sub.add_parser("data", help="make, inspect, import and transform datasets")
    data_sub = p.add_subparsers(dest="data_command", parser_class=type(p))
    p.set_defaults(handler=lambda args, extra: _missing_verb(p))
    q = data_sub.add_parser("import", help="convert a D4RL-style .npz/.hdf5 file or a Minari dataset into a heron dataset")
    q.add_argument("source", help="a .npz/.hdf5 file with observations, actions, rewards, terminals[, timeouts, "
                                  "next_observations], or a Minari dataset directory")
    q.add_argument("out", type=Path, help="output dataset directory")
    q.add_argument("--env", dest="env_id", default=None, help="environment id the data comes from (for evaluation)")
    q.add_argument("--name", default=None, help="dataset name (default: the file name)")
    q.add_argument("--force", action="store_true", help="replace OUT if it exists")
    q.set_defaults(handler=_cmd_import)
    data_suite.register(data_sub)
    data_inspect.register(data_sub)
    data_transforms.register(data_sub)


def _missing_verb(parser) -> int:
    parser.print_help()
    return 2


def _cmd_import(args, extra) -> int:
    from heron.data import load_dataset, save_dataset
    from heron.envs.gym_envs import check_env_id

    if args.env_id is not None:
        check_env_id(args.env_id)
    ds = load_dataset(args.source)
    changes = {k: v for k, v in (("env_id", args.env_id), ("name", args.name)) if v is not None}
    if changes:
        ds = ds.with_metadata(**changes)
    if args.out.exists() and not args.force:
        raise HeronError(f"{args.out} already exists: choose another output path, or pass --force to replace it")
    path = save_dataset(ds, args.out, force=args.force)
    print(f"{path}: {ds.num_episodes} episodes, {ds.num_transitions} transitions")
    return 0
