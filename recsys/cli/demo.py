"""``recsys demo``: the engine end to end on the bundled synthetic city."""

from __future__ import annotations

import argparse

from recsys.cli.common import FORCE_HELP

NAME = "demo"
HELP = "validate, train, recommend, push and evaluate on the bundled synthetic city"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``recsys demo`` options."""
    # the sample's path is resolved in run(): importing recsys.demo here would load every job
    # (training, push, evaluation) for `recsys --help`
    parser.add_argument("--data", default=None, metavar="DIR", help="synthetic city (default: the committed sample)")
    parser.add_argument("--out", default="out/demo", metavar="DIR", help="where every output goes (default: out/demo)")
    parser.add_argument(
        "--force", action="store_true", help=FORCE_HELP
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo."""
    from recsys.demo import SAMPLE, run_demo

    run_demo(args.data if args.data is not None else SAMPLE, args.out, force=args.force)
    return 0
