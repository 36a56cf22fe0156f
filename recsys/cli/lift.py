"""``recsys lift``: the push's measured lift over its holdout, and its click-through."""

from __future__ import annotations

import argparse

from recsys.cli.common import add_taxonomy_option, taxonomy_from

NAME = "lift"
HELP = "measure the push's engagement lift over the holdout (per group, region, channel) and its click-through"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pushes", required=True, metavar="DIR", help="the push output folder (recsys push --out)")
    parser.add_argument(
        "--events",
        required=True,
        metavar="PATH",
        help="events after the night(s): a Parquet file, a folder of Parquet files, or a CSV file",
    )
    parser.add_argument("--date", required=True, metavar="YYYY-MM-DD", help="the night (local date) of the pushes")
    parser.add_argument("--until", metavar="YYYY-MM-DD", default=None, help="last night of a range, inclusive (pooled; nights without a push are left out)")
    parser.add_argument(
        "--days", type=int, default=3, metavar="N", help="local days of events after each night (default: 3)"
    )
    parser.add_argument(
        "--users",
        metavar="PATH",
        default=None,
        help="users table deciding eligibility, groups and regions (default: the one the push read)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="output folder, not inside --pushes (default: <pushes>-lift/<date>_<days>d, beside the pushes folder): "
        "lift.parquet, ctr.parquet, summary.json, report.md/html",
    )
    parser.add_argument(
        "--force", action="store_true", help="write into a folder holding other files (none is deleted; a folder another command marked as its output is refused)"
    )
    add_taxonomy_option(parser)


def run(args: argparse.Namespace) -> int:
    import sys

    from recsys.lift import run_lift

    run_lift(
        args.pushes,
        args.events,
        args.date,
        until=args.until,
        days=args.days,
        users=args.users,
        out=args.out,
        force=args.force,
        taxonomy=taxonomy_from(args),
        stream=sys.stderr,
    )
    return 0
