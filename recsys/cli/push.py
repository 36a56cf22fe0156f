"""``recsys push``: tomorrow's push lists for every push-eligible user (or a segment)."""

from __future__ import annotations

import argparse
import sys

from recsys.push.job import CONNECT_TIMEOUT_S

NAME = "push"
HELP = "write the nightly push lists of a date (partitioned Parquet + manifest)"


def add_folder_arguments(parser: argparse.ArgumentParser) -> None:
    """The bundle and folder options ``recsys push`` and ``recsys campaign`` share (the folders' rules:
    :func:`recsys.push.folders.check_push_folders`)."""
    parser.add_argument(
        "--model", default="models/latest", metavar="BUNDLE", help="model bundle (default: models/latest)"
    )
    parser.add_argument(
        "--out",
        default="pushes",
        metavar="DIR",
        help="output folder: new, empty, or one push/campaign wrote before; a folder holding other files is "
        "refused (there is no --force) (default: pushes)",
    )
    parser.add_argument(
        "--history",
        metavar="DIR",
        help="push-history folder: new, empty, or the history of earlier pushes; a folder holding other "
        "files is refused (default: OUT/_history)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``recsys push`` options."""
    add_folder_arguments(parser)
    parser.add_argument("--date", required=True, metavar="YYYY-MM-DD", help="the local day the pushes go out")
    parser.add_argument("--catalog", metavar="PATH", help="current items table (default: the bundle's items)")
    parser.add_argument(
        "--users",
        metavar="PATH",
        help="current users table: tonight's opt-outs, channels, groups, regions (default: [push] users, "
        "else the bundle's users)",
    )
    parser.add_argument("--group", metavar="G", help="only users of this group")
    parser.add_argument("--region", metavar="R", help="only users of this region")
    parser.add_argument("--topic", metavar="T", help="only items of this topic")
    parser.add_argument("--channel", metavar="C", help="force this personal channel")
    parser.add_argument(
        "--kind",
        metavar="NAME",
        help="the run's partition kind= (default: nightly; a run with --group/--region/--topic/--channel "
        "gets its own segment-<hash>)",
    )
    parser.add_argument(
        "--replace", action="store_true", help="replace a partition written for another request (refused otherwise)"
    )
    parser.add_argument("--k", type=int, metavar="N", help="items per list on every channel (default: [push] k)")
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config TOML with only a [push] section, replacing the bundle's [push] "
        "(other sections apply at train time and are refused; default: the bundle's config)",
    )
    parser.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: [push] workers)")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="run the chunks on this Dask scheduler")
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=CONNECT_TIMEOUT_S,
        metavar="SECONDS",
        help="give up on an unreachable --scheduler after this long (default: 5)",
    )
    parser.add_argument(
        "--places",
        metavar="PATH",
        help="places table (tv, radio, cinema, kiosk): [[push.coverage]] rules with broadcast_reach count them",
    )
    parser.add_argument(
        "--priorities",
        metavar="PATH",
        help="priorities.toml from recsys demand: raise priority topics for priority audiences by their weight "
        "(default: [push] priorities; none = lists as ranked)",
    )
    parser.add_argument(
        "--holds",
        metavar="DIR",
        help="review-holds folder (recsys monitor's --state): items on hold are never pushed "
        "(default: [push] holds; none = no holds)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary (warnings still show)")


def run(args: argparse.Namespace) -> int:
    """Run the nightly push job."""
    from recsys.push.nightly import run_nightly

    run_nightly(
        args.model,
        args.date,
        args.out,
        catalog=args.catalog,
        group=args.group,
        region=args.region,
        topic=args.topic,
        channel=args.channel,
        kind=args.kind,
        replace=args.replace,
        k=args.k,
        users=args.users,
        config_path=args.config,
        workers=args.workers,
        scheduler=args.scheduler,
        connect_timeout=args.connect_timeout,
        history=args.history,
        places=args.places,
        holds=args.holds,
        priorities=args.priorities,
        stream=None if args.quiet else sys.stderr,
        warn_stream=sys.stderr,
    )
    return 0
