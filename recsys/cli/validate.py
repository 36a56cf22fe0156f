"""``recsys validate``: check a data folder against the contract, report and quarantine."""

from __future__ import annotations

import argparse
from pathlib import Path

from recsys.cli.common import add_input_options, add_max_rejected_option, add_taxonomy_option, input_options
from recsys.exceptions import ConfigError, DataError, SchemaError

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
        "as clean (default: only quarantine.parquet, into --data)",
    )
    parser.add_argument(
        "--force", action="store_true", help="write into an --out folder that holds other files (they are left alone)"
    )
    add_max_rejected_option(parser)
    add_input_options(parser)


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
    limits = {C.TITLE: C.MAX_TITLE_CHARS, C.SUMMARY: C.MAX_SUMMARY_CHARS}
    for column, rows in result.long_text.items():
        # kept rows, but the content embedding reads only the start: say so, never cut silently
        what = (
            f"more than {C.MAX_TAGS} tags or a tag over {C.MAX_TAG_CHARS} characters"
            if column == C.TAGS
            else f"{column} over {limits[column]:,} characters"
        )
        lines.append(f"long text: {rows:,} items with {what} (kept; the content embedding reads only the start)")
    lines.append(f"data end: {result.end.isoformat()}")
    if result.assume_tz:
        lines.append(f"timestamps without an offset read in: {result.assume_tz}")
    lines.append(f"quarantine: {quarantine_path}")
    return "\n".join(lines)


def _check_places(data: Path, args: argparse.Namespace, users: object) -> tuple[str | None, Exception | None]:
    """Check the optional places table of ``data`` (if it has one) with the rules ``recsys broadcast`` reads it by.

    A place is configuration, not a log: its first bad row refuses the data (returned as the error),
    nothing is quarantined. Returns the report line, or the error.
    """
    from recsys.broadcast.places import SOURCE_USERS, load_places
    from recsys.exceptions import RecsysError
    from recsys.schema import find_table, read_table
    from recsys.taxonomy import load_taxonomy

    if not any((data / f"places.{ext}").exists() for ext in ("parquet", "csv")):
        return None, None
    try:
        path = find_table(data, "places")
        raw = read_table(path, "places", encoding=args.encoding, delimiter=args.delimiter)
        places = load_places(raw, load_taxonomy(args.taxonomy), users, origin=str(path))
    except RecsysError as exc:
        return None, exc
    channels = ", ".join(f"{c} {n:,}" for c, n in places["channel"].value_counts(sort=False).items())
    derived = int((places["audience_source"] == SOURCE_USERS).sum())
    return f"places: {len(places):,} valid ({channels}; {derived:,} audience mixes from their region's users)", None


def run(args: argparse.Namespace) -> int:
    """Validate ``--data``; exit 2 when more than ``--max-rejected`` of a table is quarantined or no event is left.

    With ``--out``, a refused run writes only ``quarantine.parquet`` there (the
    evidence the message points at), never clean tables that would pass for a
    successful output.
    """
    from recsys.timeutil import parse_option_time
    from recsys.io import prepare_output_dir
    from recsys.schema import KINDS, check_share, validate, write_quarantine, write_table
    from recsys.taxonomy import load_taxonomy

    data = Path(args.data)
    out = Path(args.out) if args.out else None
    check_share(args.max_rejected, "--max-rejected")
    # Writing the clean tables over the raw ones would lose the evidence.
    if out is not None and data.exists() and out.exists() and out.resolve() == data.resolve():
        raise ConfigError(f"--out {out} is the --data folder; the clean tables would overwrite the input")
    # the same rule as every command's --out: new, empty or our own folder; never ., home, / or a repo root
    target = prepare_output_dir(out, NAME, force=args.force) if out is not None else None
    # an --end past the supported range would let no event be quarantined as from the future
    end = parse_option_time(args.end, load_taxonomy(args.taxonomy), name="--end") if args.end is not None else None
    # the path, not a loaded taxonomy: a message about unknown codes names the file in use
    result = validate(data=data, taxonomy=args.taxonomy, end=end, **input_options(args))
    try:
        result.check_rejected(args.max_rejected)
        refused = None
    except DataError as exc:
        refused = exc
    places_line, places_error = _check_places(data, args, result.users)

    try:
        if target is None:
            quarantine_path = write_quarantine(result.quarantine, data / "quarantine.parquet")
        else:
            with target.staging() as staged:
                staged.mkdir(parents=True)
                write_quarantine(result.quarantine, staged / "quarantine.parquet")
                if refused is None and places_error is None:
                    for kind in KINDS:
                        write_table(getattr(result, kind), staged / f"{kind}.parquet", kind)
            quarantine_path = target.path / "quarantine.parquet"
    except OSError as exc:
        where = "--out" if out is not None else "--data (pass --out DIR to write elsewhere)"
        raise SchemaError(f"{out or data}: cannot write the results into {where}: {exc.strerror or exc}") from None
    print(_report(result, quarantine_path))
    if places_line:
        print(places_line)
    if refused is not None:
        raise DataError(f"{refused} (rows and reasons: {quarantine_path})") from None
    if places_error is not None:
        raise places_error
    return 0
