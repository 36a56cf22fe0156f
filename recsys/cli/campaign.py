"""``recsys campaign``: push an item or a topic to the N users most likely to engage."""

from __future__ import annotations

import argparse
import sys

from recsys.cli.push import add_folder_arguments

NAME = "campaign"
HELP = "push a campaign's item(s) or topic to the users most likely to engage, within caps"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``recsys campaign`` options."""
    parser.add_argument("--name", required=True, help="campaign name (lowercase letters, digits, _ and -)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--item", nargs="+", metavar="ID", help="item id(s) to push")
    what.add_argument("--topic", metavar="T", help="push the best item of this topic to each user")
    parser.add_argument("--budget", required=True, type=int, metavar="N", help="most users reached")
    parser.add_argument("--date", required=True, metavar="YYYY-MM-DD", help="the local day the pushes go out")
    parser.add_argument("--group", metavar="G", help="only users of this group")
    parser.add_argument("--region", metavar="R", help="only users of this region")
    parser.add_argument("--channel", metavar="C", help="only this personal channel")
    parser.add_argument("--emergency", action="store_true", help="may exceed the daily cap (never the opt-out)")
    add_folder_arguments(parser)
    parser.add_argument("--catalog", metavar="PATH", help="current items table (default: the bundle's items)")
    parser.add_argument(
        "--users", metavar="PATH", help="current users table: tonight's opt-outs and channels (default: [push] users)"
    )
    parser.add_argument("--k", type=int, metavar="N", help="most campaign items per user (default: as the caps allow)")
    parser.add_argument(
        "--replace",
        action="store_true",
        help="replace this name's partition of the date even if written for other items/topic/segment",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config TOML with only a [push] section, replacing the bundle's [push] "
        "(other sections apply at train time and are refused; default: the bundle's config)",
    )
    parser.add_argument(
        "--holds",
        metavar="DIR",
        help="review-holds folder (recsys monitor's --state): a held item is refused, held items of "
        "--topic are left out (default: [push] holds)",
    )
    parser.add_argument("--quiet", action="store_true", help="no summary line (warnings still show)")


def run(args: argparse.Namespace) -> int:
    """Run one campaign."""
    from recsys.push.campaign_job import run_campaign

    run_campaign(
        args.model,
        args.date,
        args.out,
        name=args.name,
        budget=args.budget,
        items=args.item or (),
        topic=args.topic,
        group=args.group,
        region=args.region,
        channel=args.channel,
        emergency=args.emergency,
        replace=args.replace,
        k=args.k,
        users=args.users,
        catalog=args.catalog,
        config_path=args.config,
        history=args.history,
        holds=args.holds,
        stream=None if args.quiet else sys.stderr,
        warn_stream=sys.stderr,
    )
    return 0
