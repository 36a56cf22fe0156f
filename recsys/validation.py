"""The ``recsys validate`` job: check a data folder, write the quarantine and the clean tables.

:func:`run_validation` is the library entry point of the job (the CLI only parses
options and prints its report); :func:`recsys.schema.validate` is the check
itself, on tables in memory.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys import columns as C
from recsys.broadcast.places import SOURCE_USERS, load_places
from recsys.exceptions import ConfigError, DataError, RecsysError, SchemaError
from recsys.io import prepare_output_dir
from recsys.schema import (
    DEFAULT_MAX_REJECTED,
    KINDS,
    MAX_TIME,
    MIN_TIME,
    QUARANTINE_COLUMNS,
    QUARANTINE_SCHEMA,
    ValidationResult,
    check_share,
    find_table,
    read_table,
    validate,
    write_quarantine,
    write_table,
)
from recsys.taxonomy import load_taxonomy
from recsys.timeutil import TimeLike, parse_option_time

#: the job's name: the tag of the output folders it creates (see recsys.io.prepare_output_dir)
NAME = "validate"
#: the file the quarantined rows go to, in ``--out`` or (without it) in ``--data``
QUARANTINE_FILE = "quarantine.parquet"


def is_quarantine_file(path: str | Path) -> bool:
    """Whether ``path`` is a quarantine table validate wrote: a Parquet file of exactly its columns.

    Only the footer is read. A symbolic link, a folder, another table (even one with
    some of these columns) or an unreadable file is not.

    Parameters
    ----------
    path : path
        The file.

    Returns
    -------
    bool
    """
    p = Path(path)
    if p.is_symlink() or not p.is_file():
        return False
    try:
        schema = pq.read_schema(p)
    except (OSError, ValueError, pa.ArrowException):
        return False
    # the columns and their types in order, exactly as write_quarantine writes them
    return [(f.name, f.type) for f in schema] == [(f.name, f.type) for f in QUARANTINE_SCHEMA]


def check_quarantine_target(data: Path) -> Path:
    """The quarantine path inside ``data``; refuse, before any work, to replace a file validate did not write.

    Parameters
    ----------
    data : Path
        The ``--data`` folder (the quarantine's place without ``--out``).

    Returns
    -------
    Path
        ``data / quarantine.parquet``: new, or a quarantine validate wrote.

    Raises
    ------
    ConfigError
        One line naming the file and what to do, when it is not a quarantine validate wrote.
    """
    path = data / QUARANTINE_FILE
    if (path.exists() or path.is_symlink()) and not is_quarantine_file(path):
        raise ConfigError(
            f"--data {data}: {path} exists and is not a quarantine recsys validate wrote (not its 5 columns "
            f"{', '.join(QUARANTINE_COLUMNS)}), so it is not replaced; move it away, or pass --out DIR to write "
            "the quarantine and the clean tables elsewhere"
        )
    return path


@dataclass(frozen=True)
class ValidationReport:
    """What one validation run found and wrote.

    Attributes
    ----------
    result : ValidationResult
        Clean tables, quarantine and counts.
    quarantine_path : Path
        Where the quarantined rows were written.
    places_line : str or None
        One line on the folder's places table, when it has one.
    """

    result: ValidationResult
    quarantine_path: Path
    places_line: str | None = None

    def text(self) -> str:
        """The report the CLI prints: rows per table, rows per reason, long texts, the data end."""
        result = self.result
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
        lines.append(f"quarantine: {self.quarantine_path}")
        if self.places_line:
            lines.append(self.places_line)
        return "\n".join(lines)


def _check_places(
    data: Path, taxonomy: str | Path | None, users: pd.DataFrame, encoding: str | None, delimiter: str | None
) -> tuple[str | None, RecsysError | None]:
    """Check the optional places table of ``data`` with the rules ``recsys broadcast`` reads it by.

    A place is configuration, not a log: its first bad row refuses the data (returned as the error),
    nothing is quarantined. Returns the report line, or the error.
    """
    if not any((data / f"places.{ext}").exists() for ext in ("parquet", "csv")):
        return None, None
    try:
        path = find_table(data, "places")
        raw = read_table(path, "places", encoding=encoding, delimiter=delimiter)
        places = load_places(raw, load_taxonomy(taxonomy), users, origin=str(path))
    except RecsysError as exc:
        return None, exc
    channels = ", ".join(f"{c} {n:,}" for c, n in places["channel"].value_counts(sort=False).items())
    derived = int((places["audience_source"] == SOURCE_USERS).sum())
    return f"places: {len(places):,} valid ({channels}; {derived:,} audience mixes from their region's users)", None


def run_validation(
    data: str | Path,
    out: str | Path | None = None,
    *,
    taxonomy: str | Path | None = None,
    end: TimeLike | None = None,
    max_rejected: float = DEFAULT_MAX_REJECTED,
    force: bool = False,
    assume_tz: str | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    min_time: TimeLike = MIN_TIME,
    max_time: TimeLike = MAX_TIME,
    stream: TextIO | None = None,
) -> ValidationReport:
    """Validate ``data``; write the quarantine, and with ``out`` the clean tables.

    Parameters
    ----------
    data : path
        Folder with users, items and events (``.parquet`` or ``.csv``, or an
        ``events/`` folder); a places table there is checked too.
    out : path, optional
        Output folder (new, empty, or written by validate before) for
        ``quarantine.parquet`` and the clean tables. A refused run writes only
        the quarantine there, never clean tables that would pass for a success.
        Default: only ``quarantine.parquet``, into ``data``, replacing only a
        quarantine validate wrote (:func:`is_quarantine_file`).
    taxonomy : path, optional
        Taxonomy file (default: the bundled city's).
    end : str or datetime, optional
        The data's end: later events are quarantined (default: ``manifest.json``'s
        end in ``data``, else now).
    max_rejected : float
        Share of a table's rows that may be quarantined.
    force : bool
        Write into an ``out`` folder that holds other files (left alone: one
        named like an output refuses the run).
    assume_tz, encoding, delimiter, min_time, max_time
        How to read the files (see :func:`recsys.schema.validate`).
    stream : text file, optional
        Where a refused run's report goes before the error is raised (default:
        standard output); a successful run's report is :meth:`ValidationReport.text`.

    Returns
    -------
    ValidationReport

    Raises
    ------
    DataError
        More than ``max_rejected`` of a table quarantined or no event left
        (after the quarantine is written, so the message can point at it).
    ConfigError
        An ``out`` that may not be written, or (without ``out``) a
        ``quarantine.parquet`` in ``data`` that validate did not write;
        before any work.
    RecsysError
        Bad options, unreadable files, a bad places table.
    """
    data = Path(data)
    out = Path(out) if out is not None else None
    check_share(max_rejected, "--max-rejected")
    # Writing the clean tables over the raw ones would lose the evidence.
    if out is not None and data.exists() and out.exists() and out.resolve() == data.resolve():
        raise ConfigError(f"--out {out} is the --data folder; the clean tables would overwrite the input")
    # the same rule as every command's --out: new, empty or our own folder; never ., home, / or a repo root
    written = [QUARANTINE_FILE, *(f"{kind}.parquet" for kind in KINDS)]
    target = prepare_output_dir(out, NAME, force=force, writes=written) if out is not None else None
    # without --out the quarantine goes beside the input: only over a quarantine validate wrote
    if out is None:
        check_quarantine_target(data)
    # an --end past the supported range would let no event be quarantined as from the future
    if end is not None:
        end = parse_option_time(end, load_taxonomy(taxonomy), name="--end")
    # the path, not a loaded taxonomy: a message about unknown codes names the file in use
    result = validate(
        data=data, taxonomy=taxonomy, end=end, assume_tz=assume_tz, encoding=encoding, delimiter=delimiter,
        min_time=min_time, max_time=max_time,
    )
    try:
        result.check_rejected(max_rejected)
        refused = None
    except DataError as exc:
        refused = exc
    places_line, places_error = _check_places(data, taxonomy, result.users, encoding, delimiter)
    try:
        if target is None:
            # checked again: a file put there during the run is not replaced either
            quarantine_path = write_quarantine(result.quarantine, check_quarantine_target(data))
        else:
            with target.staging() as staged:
                staged.mkdir(parents=True)
                write_quarantine(result.quarantine, staged / QUARANTINE_FILE)
                if refused is None and places_error is None:
                    for kind in KINDS:
                        write_table(getattr(result, kind), staged / f"{kind}.parquet", kind)
            quarantine_path = target.path / QUARANTINE_FILE
    except OSError as exc:
        where = "--out" if out is not None else "--data (pass --out DIR to write elsewhere)"
        raise SchemaError(f"{out or data}: cannot write the results into {where}: {exc.strerror or exc}") from None
    report = ValidationReport(result, quarantine_path, places_line)
    if refused is not None or places_error is not None:
        # a refused run's counts are still worth reading: they say which reasons dominate
        print(report.text(), file=stream or sys.stdout)
    if refused is not None:
        raise DataError(f"{refused} (rows and reasons: {quarantine_path})") from None
    if places_error is not None:
        raise places_error
    return report
