"""``recsys train``: train on validated tables and write a model bundle."""

from __future__ import annotations

import argparse
import sys

NAME = "train"
HELP = "train profiles, embeddings and the ANN index; write a versioned model bundle"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipelines.train import add_arguments as add

    add(parser)


def run(args: argparse.Namespace) -> int:
    from pipelines.train import run as train

    train(
        args.data,
        args.out,
        config_path=args.config,
        taxonomy_path=args.taxonomy,
        as_of=args.as_of,
        warm_start=args.warm_start,
        force=args.force,
        stream=sys.stderr,  # the stream of now (a default bound at import would outlive a redirected stderr)
    )
    return 0
