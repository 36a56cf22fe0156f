"""``recsys demo``: the engine end to end on the bundled synthetic city."""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = "validate, train, recommend, push and evaluate on the bundled synthetic city"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipelines.demo import add_arguments as add

    add(parser)


def run(args: argparse.Namespace) -> int:
    from pipelines.demo import run as demo

    demo(args.data, args.out, force=args.force)
    return 0
