"""Command-line options derived from config dataclasses: one ``--prefix-field`` per field, and back.

The library's ``register(subparsers)`` functions use these; only :mod:`streamasr.cli` builds the
parser and configures logging.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any


def add_dataclass_options(parser: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    """Add one ``--prefix-field`` option per dataclass field, with the field's default and comment-free help."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        optional = typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in typing.get_args(kind)
        if optional:  # ``X | None``: an option of type X whose absence means None
            kind = next(k for k in typing.get_args(kind) if k is not type(None))
        name = "--" + (prefix + f.name).replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        text = f.metadata.get("help", "default: %(default)s")  # a field may say what its default means
        if kind is bool:
            parser.add_argument(name, action=argparse.BooleanOptionalAction, default=default, help=text)
        elif typing.get_origin(kind) is typing.Literal:
            parser.add_argument(name, choices=typing.get_args(kind), default=default, help=text)
        elif kind in (int, float, str):
            parser.add_argument(name, type=kind, default=default, metavar=kind.__name__.upper(), help=text)


def dataclass_argv(obj: Any, prefix: str = "", skip: tuple[str, ...] = ()) -> list[str]:
    """``obj``'s fields as the ``--prefix-field=value`` options ``add_dataclass_options`` reads back
    (fields that are None, or named in ``skip``, left out): to start another streamasr process."""
    return [f"--{(prefix + f.name).replace('_', '-')}={getattr(obj, f.name)}" for f in dataclasses.fields(obj)
            if f.name not in skip and getattr(obj, f.name) is not None]


def dataclass_from_args(cls: type, args: argparse.Namespace, prefix: str = "") -> Any:
    """Build ``cls`` from the options ``add_dataclass_options`` added (ValueError on bad values)."""
    values = {f.name: getattr(args, (prefix + f.name).replace("-", "_")) for f in dataclasses.fields(cls)
              if hasattr(args, (prefix + f.name).replace("-", "_"))}
    return cls(**values)
