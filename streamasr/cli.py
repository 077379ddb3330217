"""Command line: ``streamasr SUBCOMMAND ...``. The only module that configures logging."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

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

# subcommand -> the optional dependencies (pyproject extra) its module needs beyond the core.
EXTRAS = {"train": "train", "eval": "train", "bench": "bench", "serve": "serve", "client": "client", "mic": "mic"}


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
        hint = f"; install it with: pip install 'streamasr[{EXTRAS[name]}]'" if name in EXTRAS else ""
        raise StreamAsrError(f"this command cannot be loaded: {error}{hint}") from error

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
