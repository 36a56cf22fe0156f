"""``recsys generate``: write a synthetic city with ground truth."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from recsys.cli.common import FORCE_HELP, add_taxonomy_option
from recsys.exceptions import ConfigError

NAME = "generate"
HELP = "generate a synthetic city (users, items, events, ground truth) into a folder"
#: where `recsys generate --sample` writes when --out is not given (run from the repository root)
SAMPLE_DIR = "data/synthetic/sample"
#: largest city generated: the whole city (3.1M users x 50k items) fits in 2 GiB; ten times that is a typo
MAX_USERS, MAX_ITEMS, MAX_DAYS = 50_000_000, 5_000_000, 3650


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``recsys generate``."""
    parser.add_argument("--users", type=int, metavar="N", help="number of users")
    parser.add_argument("--items", type=int, metavar="M", help="number of items")
    parser.add_argument("--days", type=int, metavar="D", help="days of log (default 60)")
    parser.add_argument("--seed", type=int, metavar="S", help="random seed, 0 or more (default 0)")
    parser.add_argument(
        "--end",
        metavar="YYYY-MM-DD",
        help="the log ends at midnight starting this date, city time (default 2026-06-30); users register and "
        "items are published years before the log and expire after it, and all of it must lie in the times "
        "recsys validate accepts (a too early or late --end/--days is refused with the valid range)",
    )
    parser.add_argument(
        "--out", metavar="DIR",
        help="output folder: new, empty, or written by recsys generate before (its files are replaced)",
    )
    parser.add_argument(
        "--force", action="store_true", help=FORCE_HELP
    )
    parser.add_argument(
        "--dirty", action="store_true", help="inject bad rows of every kind; counts go to dirty_counts.json"
    )
    parser.add_argument(
        "--sample",
        action="store_true",
        help="regenerate the committed sample (3000 users x 1500 items x 60 days, seed 0) "
        f"into --out (default {SAMPLE_DIR})",
    )
    add_taxonomy_option(parser)


def _settings(args: argparse.Namespace) -> dict:
    from recsys.synthetic import DEFAULT_END, SAMPLE

    if args.sample:
        fixed = [
            f"--{k}" for k in ("users", "items", "days", "seed", "end", "taxonomy") if getattr(args, k) is not None
        ]
        if fixed or args.dirty:
            raise ConfigError(
                f"--sample fixes every setting; drop {', '.join(fixed + (['--dirty'] if args.dirty else []))}"
            )
        return {**SAMPLE, "end": DEFAULT_END, "dirty": False, "taxonomy": None, "out": args.out or SAMPLE_DIR}
    missing = [f"--{k}" for k in ("users", "items", "out") if getattr(args, k) is None]
    if missing:
        raise ConfigError(f"recsys generate needs {', '.join(missing)} (or --sample)")
    for flag, value, lo, hi in (("--users", args.users, 1, MAX_USERS), ("--items", args.items, 1, MAX_ITEMS),
                                ("--days", args.days, 1, MAX_DAYS)):
        if value is not None and not lo <= value <= hi:
            raise ConfigError(f"{flag} {value} is out of range; valid: {lo}..{hi:,}")
    if args.seed is not None:
        from recsys.seeds import check_seed_option

        check_seed_option(args.seed)
    from recsys.synthetic.city import check_time_range, load_spec
    from recsys.taxonomy import load_taxonomy
    from recsys.timeutil import parse_option_time

    taxonomy = load_taxonomy(args.taxonomy)
    end, days = DEFAULT_END, 60 if args.days is None else args.days
    if args.end is not None:
        import re

        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(args.end)):
            raise ConfigError(f"--end must be a date YYYY-MM-DD, got {args.end!r}")
        end = parse_option_time(args.end, taxonomy, name="--end").tz_convert(taxonomy.timezone).date()
    # the city reaches years before its log (registrations, back catalogue) and past it (expiry):
    # every time must stay in the range recsys validate accepts, named here with the options
    check_time_range(end, days, load_spec(taxonomy), taxonomy.timezone, dirty=args.dirty, names=("--end", "--days"))
    return {
        "n_users": args.users,
        "n_items": args.items,
        "days": days,
        "seed": 0 if args.seed is None else args.seed,
        "end": end,
        "dirty": args.dirty,
        "taxonomy": args.taxonomy,
        "out": args.out,
    }


def _is_city(folder: Path) -> bool:
    """A folder an older `recsys generate` wrote: its manifest names the generator."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("generator") == "recsys.synthetic"


def run(args: argparse.Namespace) -> int:
    """Generate and write the city; print what was written."""
    from recsys.io import missing_folders, prepare_output_dir, remove_empty_folders
    from recsys.synthetic import generate_city, write_city

    settings = _settings(args)
    out = settings.pop("out")
    target = prepare_output_dir(out, NAME, force=args.force, recognise=_is_city)  # before any work
    start = time.perf_counter()
    city = generate_city(**settings)
    # the folders above --out that staging creates, removed again (when empty) if nothing is published
    created = missing_folders(Path(out).absolute().parent)
    try:
        with target.staging() as staged:
            manifest = write_city(city, staged, progress=sys.stderr.isatty())
            if manifest["counts"]["events"] == 0:
                # raised inside staging: the written city is discarded and --out is left as it was
                p = city.params
                raise ConfigError(
                    f"--users {p['n_users']} --items {p['n_items']} --days {p['days']} drew no events: a city "
                    "without a log is refused and nothing was written; raise --users or --days"
                )
    except BaseException:
        remove_empty_folders(created)
        raise
    counts = manifest["counts"]
    by_type = ", ".join(f"{k} {v:,}" for k, v in counts["events_by_type"].items())
    print(f"wrote {out} in {time.perf_counter() - start:.1f}s (log {manifest['start']} .. {manifest['end']})")
    print(f"  users.parquet   {counts['users']:,} rows")
    print(f"  items.parquet   {counts['items']:,} rows")
    if city.places is not None:
        print(f"  places.parquet  {len(city.places):,} broadcast places (tv, radio, cinema, kiosk)")
    print(f"  events.parquet  {counts['events']:,} rows: {by_type}")
    print(f"  truth/          latent parameters of {counts['users']:,} users and {counts['items']:,} items")
    if city.dirty:
        total = sum(manifest["dirty_counts"].values())
        print(
            f"  dirty_counts.json  {total:,} rows to quarantine: "
            + ", ".join(f"{k} {v}" for k, v in manifest["dirty_counts"].items())
        )
    print("  manifest.json")
    return 0
