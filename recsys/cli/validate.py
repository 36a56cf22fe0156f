"""``recsys validate``: check a data folder against the contract, report and quarantine."""

from __future__ import annotations

import argparse

from recsys.cli.common import (
    FORCE_HELP,
    add_input_options,
    add_max_rejected_option,
    add_taxonomy_option,
    input_options,
)

NAME = "validate"
HELP = "check users/items/events against the data contract; print counts per reason and write the quarantine"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``recsys validate``."""
    parser.add_argument(
        "--data",
        metavar="DIR",
        required=True,
        help="folder with users, items and events (.parquet or .csv); a places table there is checked too",
    )
    add_taxonomy_option(parser)
    parser.add_argument(
        "--end",
        metavar="ISO",
        default=None,
        help="the data's end: later events are quarantined (a date means its midnight in the city's "
        "time zone; 1990-01-01 .. 2100-01-01; default: manifest.json's end in --data, else now)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="output folder (new, empty, or written by validate before) for quarantine.parquet and the clean "
        "users/items/events.parquet; when the data is refused (exit 2) it gets quarantine.parquet only, and "
        "clean tables of an earlier run there are removed, so the folder never shows a refused run's tables "
        "as clean (default: only quarantine.parquet, into --data, replacing only a quarantine validate wrote)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help=FORCE_HELP,
    )
    add_max_rejected_option(parser)
    add_input_options(parser)


def run(args: argparse.Namespace) -> int:
    """Validate ``--data`` (:func:`recsys.validation.run_validation`) and print the report.

    Exit 2 when more than ``--max-rejected`` of a table is quarantined or no
    event is left; with ``--out``, a refused run writes only
    ``quarantine.parquet`` there, never clean tables that would pass for a
    successful output.
    """
    # heavy: the job loads the broadcast places rules; `recsys --help` need not
    from recsys.validation import run_validation

    report = run_validation(
        args.data,
        args.out,
        taxonomy=args.taxonomy,
        end=args.end,
        max_rejected=args.max_rejected,
        force=args.force,
        **input_options(args),
    )
    print(report.text())
    return 0
