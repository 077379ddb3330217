"""Command line: ``streamasr SUBCOMMAND ...``. The only module that configures logging."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any

from streamasr.errors import StreamAsrError

# subcommand -> module that defines ``register(subparsers)``; imported lazily so that
# ``streamasr transcribe`` does not pay for the server's imports and vice versa.
COMMANDS = {
    "transcribe": "streamasr.transcribe",
    "train": "streamasr.training.train",
    "eval": "streamasr.training.evaluate",
    "bench": "streamasr.bench",
    "serve": "streamasr.service.server",
    "client": "streamasr.client",
    "mic": "streamasr.client.mic",
}


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamasr", description="Streaming speech recognition.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        try:
            importlib.import_module(module).register(sub)
        except ModuleNotFoundError as e:
            if e.name != module:
                _register_unavailable(sub, name, e)
            # A subcommand whose module has not been written yet is simply absent.
        except ImportError as e:
            _register_unavailable(sub, name, e)
    return parser


def _register_unavailable(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
                          error: ImportError) -> None:
    """Keep the other subcommands working when one cannot be imported (e.g. a missing optional extra).

    The placeholder takes any arguments (no prefix chars) and reports the import error when run.
    """
    p = sub.add_parser(name, help=f"(unavailable: {error})", prefix_chars="\0", add_help=False)
    p.add_argument("args", nargs="*")

    def fail(args: argparse.Namespace) -> int:
        raise StreamAsrError(f"this command cannot be loaded: {error}") from error

    p.set_defaults(func=fail)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.verbose:
        # websockets logs every handshake at INFO; the server already logs connect/disconnect once.
        logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except (StreamAsrError, ValueError) as e:
        print(f"streamasr {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def run() -> None:
    sys.exit(main())
