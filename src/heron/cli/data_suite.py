"""Placeholder: this verb's module registers its subcommands on `heron data`."""


def register(data_sub) -> None:
    """Add this module's verbs to the `heron data` subparsers."""
