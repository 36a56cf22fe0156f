"""``recsys push``: tomorrow's push lists for every push-eligible user (or a segment)."""

from __future__ import annotations

import argparse
import sys

NAME = "push"
HELP = "write the nightly push lists of a date (partitioned Parquet + manifest)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``recsys push`` options."""
    parser.add_argument(
        "--model", default="models/latest", metavar="BUNDLE", help="model bundle (default: models/latest)"
    )
    parser.add_argument("--date", required=True, metavar="YYYY-MM-DD", help="the local day the pushes go out")
    parser.add_argument("--out", default="pushes", metavar="DIR", help="output folder (default: pushes)")
    parser.add_argument("--catalog", metavar="PATH", help="current items table (default: the bundle's items)")
    parser.add_argument("--group", metavar="G", help="only users of this group")
    parser.add_argument("--region", metavar="R", help="only users of this region")
    parser.add_argument("--topic", metavar="T", help="only items of this topic")
    parser.add_argument("--channel", metavar="C", help="force this personal channel")
    parser.add_argument("--config", metavar="PATH", help="engine config TOML (default: the bundle's config)")
    parser.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: [push] workers)")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="run the chunks on this Dask scheduler")
    parser.add_argument("--history", metavar="DIR", help="push-history folder (default: OUT/_history)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def run(args: argparse.Namespace) -> int:
    """Run the nightly push job."""
    from pipelines.push import run as run_push

    run_push(
        args.model,
        args.date,
        args.out,
        catalog=args.catalog,
        group=args.group,
        region=args.region,
        topic=args.topic,
        channel=args.channel,
        config_path=args.config,
        workers=args.workers,
        scheduler=args.scheduler,
        history=args.history,
        stream=None if args.quiet else sys.stderr,
    )
    return 0
