"""``recsys monitor``: count newly arrived event files, raise alerts, put items on hold."""

from __future__ import annotations

import argparse

from recsys.cli.common import add_taxonomy_option

NAME = "monitor"
HELP = (
    "read the event files that arrived since the last run, update rolling counters and raise alerts "
    "(negative feedback, spread spikes, silence) into alerts.jsonl; severe waves of reports put items on hold"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``recsys monitor``."""
    parser.add_argument(
        "--events",
        metavar="DIR",
        required=True,
        help="folder the event files arrive in (.parquet, .csv)",
    )
    parser.add_argument(
        "--state",
        metavar="DIR",
        required=True,
        help="the monitor's state folder (created if new): watermark, counters, hold list, alerts.jsonl",
    )
    parser.add_argument(
        "--catalog",
        metavar="PATH",
        help="current items table: topics, approval and the known items (default: none; items judged "
        "against the city's rates, no topic alerts, no silence alerts)",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="folder for alerts.jsonl (default: --state)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="append alerts.jsonl into an --out folder holding other files (none is touched; a folder another command marked as its output is refused)",
    )
    parser.add_argument(
        "--config",
        metavar="TOML",
        help="engine config file; its [monitor] section is used",
    )
    parser.add_argument(
        "--now",
        metavar="ISO",
        help="the run's clock: events after it (plus [monitor] future_seconds) are refused as future "
        "(default: the current time)",
    )
    add_taxonomy_option(parser)


def run(args: argparse.Namespace) -> int:
    """One monitoring run; print the summary and each alert; exit 0."""
    from recsys.cli.common import taxonomy_from
    from recsys.config import load_config
    from recsys.monitor import run_monitor
    from recsys.timeutil import parse_option_time

    config = load_config(
        args.config, command="recsys monitor", sections=("monitor",)
    ).monitor
    taxonomy = taxonomy_from(args)
    now = parse_option_time(args.now, taxonomy, name="--now") if args.now else None
    report = run_monitor(
        args.events,
        args.state,
        catalog=args.catalog,
        out=args.out,
        config=config,
        taxonomy=taxonomy,
        now=now,
        force=args.force,
    )
    for line in report.lines():
        print(line)
    return 0
