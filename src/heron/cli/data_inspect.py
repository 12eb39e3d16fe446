"""`heron data inspect PATH [--reference REF] [--json] [--out DIR] [--bins N]`: the dataset card.

Prints the card as text (or JSON with --json). --out DIR also writes card.json, card.md and card.png
there, each atomically; DIR may not lie inside the dataset. TQ and SACo follow Schweighofer et al.,
"A Dataset Perspective on Offline RL" (see heron/data/diagnostics.py for the definitions and the
discretisation). SACo's reference is --reference, else the task's `<task>-full-replay` dataset when
PATH sits in a suite directory (one with manifest.json), else it is reported unavailable.
"""

from __future__ import annotations

from pathlib import Path

from heron.errors import HeronError


def register(data_sub) -> None:
    """Add `inspect` to the `heron data` subparsers."""
    p = data_sub.add_parser("inspect", help="dataset card: returns, lengths, endings, actions, coverage, TQ and SACo",
                            description=__doc__.split("\n\n")[1].replace("\n", " "))
    p.add_argument("path", help="dataset directory, a name under the datasets root, or a D4RL-style .npz/.hdf5 file")
    p.add_argument("--reference", default=None, metavar="PATH_OR_NAME",
                   help="reference dataset D_ref for SACo (the task's online replay buffer); default: the suite's "
                        "<task>-full-replay when PATH is inside a suite")
    p.add_argument("--json", action="store_true", help="print the card as JSON instead of text")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="also write card.json, card.md and card.png to DIR")
    p.add_argument("--bins", type=int, default=None,  # None: diagnostics.DEFAULT_BINS (imported on use: it loads JAX)
                   help="grid cells per float state/action dimension for SACo (default 100, as in the paper's code)")
    p.set_defaults(handler=_cmd_inspect)


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def _cmd_inspect(args, extra) -> int:
    from heron.data import resolve_dataset_path
    from heron.data.diagnostics import DEFAULT_BINS, card_for, card_json, card_text, write_card

    if args.bins is None:
        args.bins = DEFAULT_BINS
    if args.bins < 1:
        raise HeronError(f"--bins must be a positive integer, got {args.bins}")
    path = resolve_dataset_path(args.path)
    if args.out is not None:
        # a dataset directory is checksummed and treated as immutable: the card goes elsewhere
        if path.is_dir() and _inside(args.out, path):
            raise HeronError(f"--out {args.out} lies inside the dataset {path}; write the card somewhere else")
        if args.out.exists() and not args.out.is_dir():
            raise HeronError(f"--out {args.out} exists and is not a directory; give a directory for card.json/.md/.png")
    ds, card, reference = card_for(path, args.reference, bins=args.bins)
    print(card_json(card) if args.json else card_text(card))
    if args.out is not None:
        write_card(ds, card, reference, args.out)
        if not args.json:
            print(f"wrote {args.out / 'card.json'}, {args.out / 'card.md'}, {args.out / 'card.png'}")
    return 0
