"""``recsys broadcast``: tomorrow's programmes for TV, radio, cinema pre-show and kiosk places."""

from __future__ import annotations

import argparse

from recsys.cli.common import FORCE_HELP
import sys
from pathlib import Path

NAME = "broadcast"
HELP = "write each broadcast place's programme for a day (TV, radio, cinema pre-show, kiosk)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``recsys broadcast``."""
    parser.add_argument(
        "--model", default="models/latest", metavar="BUNDLE", help="model bundle (default: models/latest)"
    )
    parser.add_argument("--date", required=True, metavar="YYYY-MM-DD", help="the local day the programmes air")
    parser.add_argument(
        "--places", required=True, metavar="PATH", help="places table (places.parquet or places.csv; see the README)"
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="programmes folder: new, empty or written by recsys broadcast before (earlier days there are what "
        "[broadcast] repeat_days reads; a re-run replaces that day's rows of the places it schedules)",
    )
    parser.add_argument("--channel", default=None, metavar="C", help="only places of this broadcast channel")
    parser.add_argument("--region", default=None, metavar="R", help="only places of this region")
    parser.add_argument(
        "--items",
        default=None,
        metavar="PATH",
        help="the current catalogue (items table); eligibility is checked against it (default: the bundle's copy)",
    )
    parser.add_argument(
        "--users",
        default=None,
        metavar="PATH",
        help="users table giving a place without an audience mix its region's registered users' mix "
        "(default: the bundle's users)",
    )
    parser.add_argument("--holds", default=None, metavar="DIR", help="holds folder: held items are never scheduled")
    parser.add_argument(
        "--priorities",
        default=None,
        metavar="PATH",
        help="priorities.toml of recsys demand: its audiences' priority topics are chosen first where those "
        "audiences watch",
    )
    parser.add_argument(
        "--config", default=None, metavar="PATH", help="engine config TOML; only its [broadcast] section is read"
    )
    parser.add_argument(
        "--force", action="store_true", help=FORCE_HELP
    )


def run(args: argparse.Namespace) -> int:
    """Plan and write the day's programmes; print one summary line per channel."""
    from recsys.broadcast.job import BroadcastSpec, run_broadcast
    from recsys.config import load_config
    from recsys.push.plan import parse_day

    config = load_config(args.config, command="recsys broadcast", sections=("broadcast",)).broadcast
    spec = BroadcastSpec(
        model=Path(args.model),
        day=parse_day(args.date),
        places=Path(args.places),
        out=Path(args.out),
        channel=args.channel,
        region=args.region,
        items=None if args.items is None else Path(args.items),
        users=None if args.users is None else Path(args.users),
        holds=None if args.holds is None else Path(args.holds),
        priorities=None if args.priorities is None else Path(args.priorities),
        config=config,
        force=args.force,
    )
    manifest = run_broadcast(spec, warn_stream=sys.stderr)
    print(f"programmes for {spec.day.isoformat()} -> {spec.out}")
    print(f"{'channel':<8} {'places':>7} {'items':>7} {'filled':>8} {'short':>6}")
    shown = manifest["run_channels"]  # the day's manifest also keeps channels of earlier runs
    for channel in shown:
        s = manifest["channels"][channel]
        print(f"{channel:<8} {s['places']:>7,} {s['rows']:>7,} {s['fill_share']:>8.1%} {s['places_short']:>6,}")
    left = manifest["channels"][shown[0]]["run"]["items_left_out"] if shown else {}
    if left.get("no_duration"):
        print(
            f"{left['no_duration']:,} items of these channels' formats have no duration_seconds and were not scheduled"
        )
    return 0
