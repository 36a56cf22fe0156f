"""``recsys validate``: check a data folder against the contract, report and quarantine."""

from __future__ import annotations

import argparse
from pathlib import Path

from recsys.cli.common import add_taxonomy_option, taxonomy_from
from recsys.exceptions import ConfigError

NAME = "validate"
HELP = "check users/items/events against the data contract; print counts per reason and write the quarantine"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``recsys validate``."""
    parser.add_argument(
        "--data", metavar="DIR", required=True, help="folder with users, items and events (.parquet or .csv)"
    )
    add_taxonomy_option(parser)
    parser.add_argument(
        "--end",
        metavar="ISO",
        default=None,
        help="the data's end: later events are quarantined (a date means its midnight in the city's "
        "time zone; default: manifest.json's end in --data, else now)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="write quarantine.parquet and the clean users/items/events.parquet here "
        "(default: only quarantine.parquet, into --data)",
    )


def _report(result, quarantine_path: Path) -> str:  # noqa: ANN001 - ValidationResult, imported lazily
    from recsys import columns as C

    kept = result.rows_kept()
    lines = [f"{'table':<8} {'read':>12} {'kept':>12} {'quarantined':>12}"]
    for table, read in result.rows_read.items():
        lines.append(f"{table:<8} {read:>12,} {kept[table]:>12,} {read - kept[table]:>12,}")
    counts = result.counts()
    width = max(len(r) for r in C.QUARANTINE_REASONS)
    lines.append("")
    lines.append(f"{'reason':<{width}} {'rows':>12}")
    for reason in C.QUARANTINE_REASONS:
        lines.append(f"{reason:<{width}} {counts.get(reason, 0):>12,}")
    lines.append(f"{'total':<{width}} {sum(counts.values()):>12,}")
    lines.append("")
    lines.append(f"data end: {result.end.isoformat()}")
    lines.append(f"quarantine: {quarantine_path}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Validate ``--data``; exit 0 even with quarantined rows (it is a report)."""
    from recsys.schema import KINDS, validate, write_quarantine, write_table

    data = Path(args.data)
    out = Path(args.out) if args.out else None
    # Writing the clean tables over the raw ones would lose the evidence.
    if out is not None and data.exists() and out.exists() and out.resolve() == data.resolve():
        raise ConfigError(f"--out {out} is the --data folder; the clean tables would overwrite the input")
    taxonomy = taxonomy_from(args)
    result = validate(data=data, taxonomy=taxonomy, end=args.end)

    target = out if out is not None else data
    quarantine_path = write_quarantine(result.quarantine, target / "quarantine.parquet")
    if out is not None:
        for kind in KINDS:
            write_table(getattr(result, kind), out / f"{kind}.parquet", kind)
    print(_report(result, quarantine_path))
    return 0
