"""The ``recsys`` command: one entry point, one module per sub-command.

Each sub-command module defines ``NAME``, ``HELP``, ``add_arguments(parser)``
and ``run(args) -> int``. Any :class:`~recsys.exceptions.RecsysError` becomes a
one-line ``error: ...`` on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from recsys.exceptions import RecsysError

# The sub-commands, in the order ``recsys --help`` lists them.
COMMANDS: tuple[str, ...] = (
    "generate",
    "train",
    "models",
    "profile",
    "validate",
    "recommend",
    "push",
    "campaign",
    "evaluate",
    "tune",
    "demo",
)


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage already; keep its message to one line."""

    def error(self, message: str) -> None:  # pragma: no cover - argparse path
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the ``recsys`` argument parser with every sub-command."""
    parser = _Parser(prog="recsys", description="Precision push engine for science content.")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subs.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"recsys.cli.{name}")
        sub = subs.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``recsys`` command line; return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except RecsysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
