"""Config dataclasses from the command line: `name=value` overrides and field docs.

Agent hyperparameters are overridden as `name=value` tokens (`learning_rate=1e-3`,
`hidden=256,256`, `critic_layer_norm=true`). Every mistake is one `HeronError` line that
names the field and the fix.
"""

import ast
import dataclasses
import difflib
import inspect
import textwrap
import types
import typing
from functools import cache

from heron.errors import HeronError

_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each dataclass field (`x: int = 1` then `\"\"\"doc\"\"\"`)."""
    docs = {}
    for base in reversed(cls.__mro__[1:]):  # a subclass config inherits its bases' field docs
        if dataclasses.is_dataclass(base):
            docs.update(field_docs(base))
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return docs
    body = tree.body[0].body
    for stmt, nxt in zip(body, body[1:]):
        if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def _parse_value(name: str, raw: str, annotation, current):
    hint = typing.get_origin(annotation) or annotation
    args = typing.get_args(annotation)
    try:
        if hint in (types.UnionType, typing.Union):
            if raw.lower() in {"none", "null"} and type(None) in args:
                return None
            inner = [a for a in args if a is not type(None)][0]
            return _parse_value(name, raw, inner, current)
        if hint is typing.Literal:
            if raw not in [str(a) for a in args]:
                raise ValueError(f"one of {', '.join(map(str, args))}")
            return next(a for a in args if str(a) == raw)
        if hint is bool:
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise ValueError("true or false")
        if hint is int:
            value = float(raw)
            if not value.is_integer():
                raise ValueError("an integer")
            return int(value)
        if hint is float:
            return float(raw)
        if hint is str:
            return raw
        if hint is tuple:
            item = args[0] if args else int
            return tuple(_parse_value(name, part, item, None) for part in raw.split(",") if part.strip())
    except ValueError as err:
        expected = err.args[0] if err.args and not str(err.args[0]).startswith(("could not", "invalid")) else getattr(hint, "__name__", str(hint))
        raise HeronError(f"bad value {raw!r} for {name}: expected {expected}, e.g. {name}={current}") from None
    raise HeronError(f"{name} cannot be set from the command line (type {annotation})")


def apply_overrides(cfg, overrides: list[str], what: str = "config"):
    """Return `cfg` with `name=value` overrides applied (a new frozen instance)."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    hints = typing.get_type_hints(type(cfg))
    changes = {}
    for token in overrides:
        if "=" not in token:
            raise HeronError(f"bad override {token!r}: write overrides as name=value, e.g. {next(iter(fields))}=...")
        name, raw = token.split("=", 1)
        name = name.strip().lstrip("-").replace("-", "_")
        if name not in fields:
            close = difflib.get_close_matches(name, list(fields), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise HeronError(f"unknown {what} field {name!r}: {hint}see `heron train ALGO --help` for the fields")
        changes[name] = _parse_value(name, raw.strip(), hints[name], getattr(cfg, name))
    return dataclasses.replace(cfg, **changes)


def config_to_dict(cfg) -> dict:
    return {f.name: _jsonable(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def _jsonable(value):
    if isinstance(value, tuple):
        return list(value)
    return value


def config_from_dict(cls: type, values: dict):
    """Rebuild a config saved by `config_to_dict` (lists back to tuples)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise HeronError(f"saved config has unknown fields {sorted(unknown)} for {cls.__module__}; it was written by another heron version")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
