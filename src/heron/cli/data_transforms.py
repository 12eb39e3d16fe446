"""`heron data <transform> ...`: dataset transforms as verbs (heron/data/transforms/).

    heron data reweight SRC OUT --by return|advantage [--temperature A] [--uniform-mix L]
    heron data corrupt SRC OUT --target obs|actions|rewards|dynamics --mode random|adversarial --ratio R --scale S
    heron data hide-actions SRC OUT --fraction F [--label]
    heron data label-actions SRC OUT
    heron data fit-reward-model SRC FILE
    heron data relabel-rewards SRC OUT --reward-model FILE
    heron data subsample SRC OUT --episodes N | --fraction F | --transitions N
    heron data mix OUT SRC[:FRACTION] ...

Every verb takes --seed and --force; an existing OUT without --force is an error; the source is
never modified; outputs are written atomically and carry the transform in their provenance.
"""

from __future__ import annotations

import json
from pathlib import Path

from heron.errors import HeronError


def _common(p, out_help: str = "output dataset directory", src: bool = True):
    if src:
        p.add_argument("src", help="source dataset: a directory, a name under the datasets root, or a .npz/.hdf5 file")
        p.add_argument("out", type=Path, help=out_help)
    p.add_argument("--seed", type=int, default=0, help="seed of the transform's randomness (recorded in provenance)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("--name", default=None, help="name of the output dataset (default: the source's name)")


def _idm_args(p):
    p.add_argument("--window", type=int, default=0, help="IDM input: k states on each side of (s_t, s_t+1) (default 0)")
    p.add_argument("--idm-steps", type=int, default=3000, help="IDM training steps (default 3000)")
    p.add_argument("--holdout", type=float, default=0.1, help="fraction of labelled episodes held out to measure the "
                                                               "labelling error (default 0.1)")


def register(data_sub) -> None:
    """Add the transform verbs to the `heron data` subparsers."""
    p = data_sub.add_parser("reweight", help="trajectory weights by return (RW) or advantage (AW), Hong et al. 2023")
    _common(p)
    p.add_argument("--by", choices=("return", "advantage"), required=True, help="RW (return) or AW (advantage)")
    p.add_argument("--temperature", type=float, default=0.1, help="softmax temperature α (default 0.1, the paper's)")
    p.add_argument("--uniform-mix", type=float, default=1.0,
                   help="λ: P = λ·P_weighted + (1−λ)·uniform (default 1: purely weighted, as the released code)")
    p.set_defaults(handler=_cmd_reweight)

    p = data_sub.add_parser("corrupt", help="random/adversarial corruption of states, actions, rewards or dynamics (RIQL)")
    _common(p)
    p.add_argument("--target", required=True, help="obs | actions | rewards | dynamics")
    p.add_argument("--mode", default="random", help="random | adversarial (default random)")
    p.add_argument("--ratio", type=float, default=0.3, help="fraction ε of transitions corrupted (default 0.3)")
    p.add_argument("--scale", type=float, default=1.0, help="noise bound in per-dimension stds; −scale·r for adversarial "
                                                            "rewards (default 1.0)")
    p.add_argument("--reward-bound", type=float, default=30.0, help="random rewards ~ U[−B·scale, B·scale] (default 30)")
    p.add_argument("--attack-steps", type=int, default=100, help="projected gradient steps of the attack (default 100)")
    p.add_argument("--q-steps", type=int, default=2000, help="training steps of the attacker's Q-function (default 2000)")
    p.set_defaults(handler=_cmd_corrupt)

    p = data_sub.add_parser("hide-actions", help="make a fraction of the episodes action-free (SS-ORL setting)")
    _common(p)
    p.add_argument("--fraction", type=float, required=True, help="fraction of episodes whose actions are hidden")
    p.add_argument("--label", action="store_true", help="then proxy-label them with an inverse dynamics model, "
                                                        "reporting the error against the true actions")
    _idm_args(p)
    p.set_defaults(handler=_cmd_hide)

    p = data_sub.add_parser("label-actions", help="proxy-label action-free episodes with an inverse dynamics model (SS-ORL)")
    _common(p)
    _idm_args(p)
    p.set_defaults(handler=_cmd_label)

    p = data_sub.add_parser("fit-reward-model", help="fit an MLP reward model r(s, a, s') on a dataset; saved as msgpack")
    p.add_argument("src", help="source dataset")
    p.add_argument("file", type=Path, help="reward model file to write (e.g. reward.msgpack)")
    _common(p, src=False)
    p.add_argument("--steps", type=int, default=3000, help="training steps (default 3000)")
    p.add_argument("--hidden", default="256,256", help="hidden layer widths (default 256,256)")
    p.set_defaults(handler=_cmd_fit_reward)

    p = data_sub.add_parser("relabel-rewards", help="replace rewards with a reward model's r(s, a, s')")
    _common(p)
    p.add_argument("--reward-model", type=Path, required=True, help="file written by `heron data fit-reward-model`")
    p.set_defaults(handler=_cmd_relabel)

    p = data_sub.add_parser("subsample", help="a random subset of whole episodes")
    _common(p)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--episodes", type=int, help="number of episodes")
    g.add_argument("--fraction", type=float, help="fraction of the episodes")
    g.add_argument("--transitions", type=int, help="about this many transitions, rounded to whole episodes")
    p.set_defaults(handler=_cmd_subsample)

    p = data_sub.add_parser("mix", help="mix several sources' episodes (D5RL-style); SRC:FRACTION keeps that fraction")
    p.add_argument("out", type=Path, help="output dataset directory")
    p.add_argument("sources", nargs="+", metavar="SRC[:FRACTION]",
                   help="source datasets, each optionally with the fraction of its episodes to keep (default 1)")
    _common(p, src=False)
    p.set_defaults(handler=_cmd_mix)


# -------------------------------------------------------------------- shared steps
def _check_out(out: Path, force: bool, sources=()) -> None:
    from heron.data import resolve_dataset_path

    if out.exists() and not force:
        raise HeronError(f"{out} already exists: choose another output path, or pass --force to replace it")
    for src in sources:
        try:
            src_path = resolve_dataset_path(src)
        except HeronError:
            continue  # reported when it is loaded
        if src_path.resolve() == out.resolve():
            raise HeronError(f"OUT {out} is the source dataset: transforms never modify their source; write elsewhere")


def _load(src):
    from heron.data import load_dataset

    return load_dataset(src)


def _finish(ds, args, measured: dict | None = None) -> int:
    from heron.data import save_dataset

    if getattr(args, "name", None):
        ds = ds.with_metadata(name=args.name)
    path = save_dataset(ds, args.out, force=args.force)
    line = f"{path}: {ds.num_episodes} episodes, {ds.num_transitions} transitions"
    if measured:
        line += "; " + json.dumps(measured, default=str)
    print(line)
    return 0


def _pick(d: dict, *keys) -> dict:
    return {k: d[k] for k in keys if k in d}


# -------------------------------------------------------------------- verbs
def _cmd_reweight(args, extra) -> int:
    from heron.data.transforms import reweight

    _check_out(args.out, args.force, [args.src])
    ds = reweight(_load(args.src), by=args.by, temperature=args.temperature, uniform_mix=args.uniform_mix, seed=args.seed)
    return _finish(ds, args, _pick(ds.provenance[-1], "method", "effective_sample_size", "top10pct_trajectory_mass"))


def _cmd_corrupt(args, extra) -> int:
    from heron.data.transforms import corrupt

    _check_out(args.out, args.force, [args.src])
    ds = corrupt(_load(args.src), args.target, args.mode, args.ratio, args.scale, args.seed,
                 reward_bound=args.reward_bound, attack_steps=args.attack_steps, q_steps=args.q_steps)
    return _finish(ds, args, _pick(ds.provenance[-1], "corrupted_transitions", "episodes_split", "q_mean_clean",
                                   "q_mean_corrupted"))


def _idm_config(args):
    from heron.data.transforms import IDMConfig

    return IDMConfig(window=args.window, steps=args.idm_steps, holdout=args.holdout)


def _cmd_hide(args, extra) -> int:
    from heron.data.transforms import hide_actions

    _check_out(args.out, args.force, [args.src])
    ds = hide_actions(_load(args.src), args.fraction, args.seed, label=args.label, config=_idm_config(args))
    return _finish(ds, args, _pick(ds.provenance[-1], "hidden_episodes", "heldout_error", "true_error"))


def _cmd_label(args, extra) -> int:
    from heron.data.transforms import label_actions

    _check_out(args.out, args.force, [args.src])
    ds = label_actions(_load(args.src), args.seed, _idm_config(args))
    return _finish(ds, args, _pick(ds.provenance[-1], "proxy_labelled_transitions", "heldout_error"))


def _cmd_fit_reward(args, extra) -> int:
    from heron.data.transforms import fit_reward_model, save_reward_model

    if args.file.exists() and not args.force:
        raise HeronError(f"{args.file} already exists: choose another file, or pass --force to replace it")
    try:
        hidden = tuple(int(h) for h in args.hidden.split(",") if h.strip())
        if not hidden or min(hidden) < 1:
            raise ValueError
    except ValueError:
        raise HeronError(f"--hidden must be comma-separated positive widths such as 256,256, got {args.hidden!r}") from None
    model = fit_reward_model(_load(args.src), args.seed, hidden=hidden, steps=args.steps)
    path = save_reward_model(model, args.file, force=args.force)
    print(f"{path}: " + json.dumps(_pick(model.meta, "train_mse", "heldout_mse", "reward_var")))
    return 0


def _cmd_relabel(args, extra) -> int:
    from heron.data.transforms import load_reward_model, relabel_rewards

    _check_out(args.out, args.force, [args.src])
    model = load_reward_model(args.reward_model)
    src = _load(args.src)
    model.check_compatible(src, f"reward model {args.reward_model}")
    ds = relabel_rewards(src, model, description={"file": str(args.reward_model), **model.meta}, seed=args.seed)
    return _finish(ds, args, _pick(ds.provenance[-1], "reward_mean", "corr_with_previous"))


def _cmd_subsample(args, extra) -> int:
    from heron.data.transforms import subsample

    _check_out(args.out, args.force, [args.src])
    ds = subsample(_load(args.src), args.seed, episodes=args.episodes, fraction=args.fraction,
                   transitions=args.transitions)
    return _finish(ds, args)


def _parse_source(text: str) -> tuple[str, float]:
    """SRC or SRC:FRACTION (the last ':' splits only when what follows is a number)."""
    head, sep, tail = text.rpartition(":")
    if sep:
        try:
            return head, float(tail)
        except ValueError:
            pass
    return text, 1.0


def _cmd_mix(args, extra) -> int:
    from heron.data.transforms import mix

    specs = [_parse_source(s) for s in args.sources]
    _check_out(args.out, args.force, [s for s, _ in specs])
    ds = mix([(_load(s), f) for s, f in specs], args.seed, name=args.name or "mixed")
    return _finish(ds, args, {"sources": [_pick(s, "name", "episodes", "transitions")
                                          for s in ds.provenance[-1]["sources"]]})
