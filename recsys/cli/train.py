"""``recsys train``: train on validated tables and write a model bundle."""

from __future__ import annotations

import argparse

from recsys.cli.common import FORCE_HELP
import sys

NAME = "train"
HELP = "train profiles, embeddings and the ANN index; write a versioned model bundle"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``recsys train`` options."""
    parser.add_argument("--data", required=True, metavar="DIR", help="folder with users, items, events tables")
    parser.add_argument("--out", default="models", metavar="DIR", help="models folder (default: models)")
    parser.add_argument("--config", metavar="PATH", help="engine config TOML (default: built-in defaults)")
    parser.add_argument("--taxonomy", metavar="PATH", help="taxonomy TOML (default: the bundled city's)")
    parser.add_argument("--as-of", metavar="TIMESTAMP", help="train only on events before this time")
    parser.add_argument("--warm-start", metavar="BUNDLE", help="reuse a previous bundle's factors (e.g. models/latest)")
    parser.add_argument(
        "--full", action="store_true",
        help="retrain on all events, validating every event file again (default with an events/ folder: "
        "incremental nights, a full retrain every [training] full_every_days)",
    )
    parser.add_argument(
        "--force", action="store_true",
        help=FORCE_HELP,
    )


def run(args: argparse.Namespace) -> int:
    from recsys.training import train

    train(
        args.data,
        args.out,
        config_path=args.config,
        taxonomy_path=args.taxonomy,
        as_of=args.as_of,
        warm_start=args.warm_start,
        force=args.force,
        full=args.full,
        stream=sys.stderr,  # the stream of now (a default bound at import would outlive a redirected stderr)
    )
    return 0
