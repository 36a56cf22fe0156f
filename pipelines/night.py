"""The city's night on one page: train -> demand -> push -> broadcast.

For a scheduler (cron, Airflow) or a reader who wants to see the whole night at
once. Every step is a library call; each writes its own folder under
``--work`` and refuses, like the commands, to overwrite what it did not write::

    python -m pipelines.night --data city/ --date 2026-06-30 --work night/ \\
        [--holds monitor/] [--places city/places.parquet] [--config recsys.toml] [--full]

1. ``recsys.training.train``: a new bundle in ``WORK/models``: with the events
   as a folder of daily files (``DATA/events/*.parquet``), an incremental night
   (only the new files validated, yesterday's bundle updated; a full retrain on
   the first night, with ``--full`` and every ``[training] full_every_days``);
   with one events file, a full retrain;
2. ``recsys.demand.run_demand``: ``WORK/demand/DATE`` with ``priorities.toml``;
3. ``recsys.push.run_nightly``: tomorrow's lists into ``WORK/pushes``, raising the
   priority topics for their audiences, leaving out held items, meeting the
   config's ``[[push.coverage]]`` rules (crediting broadcast with ``--places``);
4. ``recsys.broadcast.job.run_broadcast``: the day's programmes into
   ``WORK/programmes`` (with ``--places``).

Nothing imports this file. Its options are the steps' own; a bad one stops the
night with the step's one-line ``error: …`` and exit code 2, and the inputs the
later steps read (``--places``, ``--holds``, the pushes folder) are checked
before the training, so a typo never leaves a new bundle behind. A log too short
for demand's trend (its earlier weeks) is not a bad input: the night says so and
pushes without priorities.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recsys.broadcast.job import BroadcastSpec, run_broadcast
from recsys.cli import run_guarded
from recsys.config import ALL_SECTIONS, load_config
from recsys.demand import run_demand
from recsys.exceptions import ConfigError, DataError
from recsys.holds import state_folder
from recsys.push import run_nightly
from recsys.push.folders import check_push_folders
from recsys.push.plan import parse_day
from recsys.training import train


def night(args: argparse.Namespace) -> int:
    """Run the night's steps in order; print where each output went."""
    work, day = Path(args.work), parse_day(args.date)
    # the night's config holds every section (train reads it whole; demand and broadcast read theirs)
    config = load_config(args.config, command="night", sections=ALL_SECTIONS)
    models = work / "models"
    _check_inputs(args, work)
    print(f"== train into {models}{' (--full)' if args.full else ''}", flush=True)
    # the training decides incremental or full (history store, schedule, --full) and says why
    trained = train(args.data, models, config_path=args.config, full=args.full)
    bundle = Path(trained["latest"])
    reason = f" ({trained['full_reason']})" if trained.get("full_reason") else ""
    print(f"   {trained['mode']}{reason}, {trained['seconds']:g} s", flush=True)

    print(f"== demand into {work / 'demand' / day.isoformat()}", flush=True)
    demand_out = work / "demand" / day.isoformat()
    try:
        run_demand(args.data, demand_out, config=config.demand)
    except DataError as exc:
        # demand raises what the push reads; the push itself does not need it
        print(f"warning: demand skipped: {exc}; the push runs without priorities", file=sys.stderr, flush=True)
    priorities = demand_out / "priorities.toml"

    print(f"== push {day} into {work / 'pushes'}", flush=True)
    manifest = run_nightly(
        bundle, day, work / "pushes", holds=args.holds, places=args.places,
        priorities=priorities if priorities.exists() else None,
    )
    print(f"   {manifest['rows']:,} rows for {manifest['users']['pushed']:,} users", flush=True)

    if args.places:
        print(f"== broadcast {day} into {work / 'programmes'}", flush=True)
        spec = BroadcastSpec(
            model=bundle, day=day, places=Path(args.places), out=work / "programmes",
            holds=None if args.holds is None else Path(args.holds),
            priorities=priorities if priorities.exists() else None, config=config.broadcast,
        )
        programmes = run_broadcast(spec)
        print(f"   {sum(c['rows'] for c in programmes['channels'].values()):,} programme items", flush=True)
    return 0


def _check_inputs(args: argparse.Namespace, work: Path) -> None:
    """The later steps' inputs, checked before the training writes anything."""
    if args.places is not None and not Path(args.places).is_file():
        raise ConfigError(f"--places {args.places}: file not found (the places table, .parquet or .csv)")
    if args.holds is not None:
        state_folder(args.holds, "--holds")
    check_push_folders(work / "pushes", None)


def main(argv: list[str] | None = None) -> int:
    """Parse the options and run the night under the CLI's error handling."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.night", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, metavar="DIR", help="the city's users, items and events")
    parser.add_argument("--date", required=True, metavar="YYYY-MM-DD", help="the local day the pushes go out")
    parser.add_argument("--work", required=True, metavar="DIR", help="models/, demand/, pushes/, programmes/ go here")
    parser.add_argument("--config", metavar="PATH", help="engine config TOML (every section)")
    parser.add_argument("--holds", metavar="DIR", help="the review holds folder of recsys monitor / recsys holds")
    parser.add_argument("--places", metavar="PATH", help="the places table (broadcast programmes and coverage credit)")
    parser.add_argument(
        "--full", action="store_true", help="retrain on every event file instead of tonight's new ones"
    )
    return run_guarded(night, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
