"""``recsys demand``: what residents want, what the catalogue offers, whom the push leaves behind."""

from __future__ import annotations

import argparse

from recsys.cli.common import FORCE_HELP

NAME = "demand"
HELP = (
    "demand tracking: weekly demand per topic x group x region, tested trends (calendar-aware), supply, "
    "gaps to commission, under-served audiences; writes Parquet tables, priorities.toml and report.html"
)


def _weeks(value: str) -> int:
    try:
        weeks = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--weeks must be a whole number >= 2, got {value!r}") from None
    if weeks < 2:
        raise argparse.ArgumentTypeError(f"--weeks must be a whole number >= 2, got {value!r}")
    return weeks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``recsys demand`` options."""
    parser.add_argument("--data", required=True, metavar="DIR", help="folder with users, items, events Parquet tables")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (new, empty, or an earlier demand output)")
    parser.add_argument(
        "--as-of", metavar="T",
        help="end of the analysed window: a date (city midnight) or ISO 8601 with offset (default: the day after the last event)",
    )
    parser.add_argument(
        "--weeks", type=_weeks, metavar="N",
        help="whole weeks analysed (default: every whole week of the log, at most [demand] max_weeks = 12)",
    )
    parser.add_argument("--taxonomy", metavar="PATH", help="taxonomy TOML with a [[calendar]] (default: the bundled city's)")
    parser.add_argument("--config", metavar="PATH", help="engine config TOML; its [demand] section is read")
    parser.add_argument("--force", action="store_true", help=FORCE_HELP)


def run(args: argparse.Namespace) -> int:
    """Run the analysis; print where the outputs are and the headline findings."""
    from recsys.config import load_config
    from recsys.demand import run_demand
    from recsys.taxonomy import load_taxonomy
    from recsys.timeutil import parse_option_time

    config = load_config(args.config, command="recsys demand", sections=("demand",)).demand
    taxonomy = load_taxonomy(args.taxonomy)
    as_of = parse_option_time(args.as_of, taxonomy, name="--as-of") if args.as_of else None
    result = run_demand(
        args.data, args.out, as_of=as_of, weeks=args.weeks, taxonomy=args.taxonomy, config=config, force=args.force
    )
    s = result.summary
    print(f"wrote {args.out}: demand, trends, supply, gaps, audiences (.parquet), priorities.toml, report.html, report.md")
    print(f"  window {s['start']} .. {s['as_of']} ({s['weeks']} weeks); {s['impressions']:,} impressions")
    print(
        f"  {s['rising']} rising and {s['falling']} falling of {s['cells_tested']:,} cells tested; "
        f"{s['gaps']} gaps; {s['under_served']} under-served audiences; {s['priority_audiences']} priority audiences"
    )
    for zh, en in result.recommendations[:5]:
        print(f"  - {en}")
    return 0
