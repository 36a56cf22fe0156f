"""The ``recsys`` command: one entry point, one module per sub-command.

Each sub-command module defines ``NAME``, ``HELP``, ``add_arguments(parser)``
and ``run(args) -> int``. Any :class:`~recsys.exceptions.RecsysError` becomes a
one-line ``error: ...`` on stderr and exit code 2, never a traceback.

:func:`main` is also the last line of defence: an ``OSError`` (a full disk, a
folder that cannot be written) becomes one line naming the path, exit 2 (the
environment, not the engine, needs fixing); any other exception is an engine
bug: ``error: internal error: <type>: <message> (please report)``, exit 1, so
a caller can tell "fix your input or machine" (2) from "report this" (1).
Ctrl-C exits 130 without a traceback. ``RECSYS_TRACEBACK=1`` re-raises
unexpected exceptions, for whoever debugs them.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from typing import Callable, Sequence

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
    "broadcast",
    "monitor",
    "holds",
    "lift",
    "demand",
    "evaluate",
    "tune",
    "demo",
)


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage already; keep its message to one line."""

    def error(self, message: str) -> None:
        # one line, like every other error: the usage is one `--help` away
        self.exit(2, f"error: {self.prog}: {_one_line(message)} (see `{self.prog} --help`)\n")


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


#: exit codes: bad input or environment, an engine bug, Ctrl-C
EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 2, 1, 130

_OS_HINTS = {
    errno.ENOSPC: "no space left on the device: free some or write elsewhere",
    errno.EDQUOT: "disk quota exceeded: free some space or write elsewhere",
    errno.EACCES: "permission denied: choose a folder you can write",
    errno.EPERM: "operation not permitted: choose a folder you can write",
    errno.EROFS: "read-only file system: write elsewhere",
    errno.ENOTDIR: "a path component is a file, not a folder",
    errno.EISDIR: "is a folder where a file was expected",
    errno.ELOOP: "a symbolic link loops",
    errno.ENAMETOOLONG: "the name is too long",
}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def os_error_message(exc: OSError) -> str:
    """One line for an ``OSError``: the path(s) and what went wrong."""
    paths = [p for p in (exc.filename, exc.filename2) if p is not None]
    where = " -> ".join(os.fsdecode(p) for p in paths)
    what = _OS_HINTS.get(exc.errno) or exc.strerror or type(exc).__name__
    if exc.errno is None and not paths:
        what = f"{type(exc).__name__}: {exc}"
    return _one_line(f"{where}: {what}" if where else what)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``recsys`` command line; return the exit code."""
    args = build_parser().parse_args(argv)
    return run_guarded(args._run, args)


def run_guarded(run: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Call ``run(args)`` the way every command runs: bad input -> one ``error:`` line and exit 2,
    an engine bug -> one line and exit 1, Ctrl-C -> 130; never a traceback (module docstring)."""
    try:
        return int(run(args) or 0)
    except RecsysError as exc:
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `recsys recommend ... | head`: the reader left; nothing to report
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - so the interpreter's final flush is silent
        except OSError:
            pass
        return 0
    except OSError as exc:
        print(f"error: {os_error_message(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        print("error: out of memory: use smaller settings or a larger machine", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback
        if os.environ.get("RECSYS_TRACEBACK"):
            raise
        message = _one_line(f"{type(exc).__name__}: {exc}")
        print(f"error: internal error: {message} (please report)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
