"""``recsys lift`` as a library function: measure, then write the tables and the report."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from recsys.exceptions import ConfigError
from recsys.io import atomic_dir, prepare_output_dir, write_json, write_parquet
from recsys.lift.measure import MIN_USERS, LiftResult, measure_lift
from recsys.lift.report import headline, render
from recsys.push.folders import OLD_LIFT_DIR
from recsys.push.plan import parse_day
from recsys.taxonomy import Taxonomy, load_taxonomy

NAME = "lift"
FILES = ("lift.parquet", "ctr.parquet", "summary.json", "report.md", "report.html")
#: the default output sits in ``<pushes>-lift``, a sibling of the pushes folder: anything inside it
#: would be read as push rows by DuckDB's ``read_parquet('pushes/**/*.parquet', hive_partitioning=true)``
#: (which, unlike pandas and pyarrow, does not skip ``_``-prefixed folders: "Hive partition mismatch")
LIFT_SUFFIX = "-lift"


def default_out(pushes: str | Path, date: dt.date, until: dt.date | None, days: int) -> Path:
    """The default output folder: ``<pushes>-lift/<date>[..<until>]_<days>d``, beside the pushes folder.

    Never inside it: the pushes folder's only ``*.parquet`` files are push rows,
    so that every reader of the whole folder (pandas, pyarrow, DuckDB) reads it as it is.

    Parameters
    ----------
    pushes : path
        The push output folder.
    date, until : date
        The first and last night measured (``until`` None or ``date``: one night).
    days : int
        The window's local days.

    Returns
    -------
    Path
        E.g. ``pushes-lift/2026-06-30_3d`` for ``pushes/``.

    Raises
    ------
    ConfigError
        If the pushes folder has no parent to write beside (``/``): give ``--out``.
    """
    # abspath, not the name as given: "pushes/" and "." must name the folder itself, and ".." its parent
    folder = Path(os.path.abspath(pushes))
    if folder.parent == folder:
        raise ConfigError(f"--pushes {pushes}: no folder beside it for the lift output; give --out DIR")
    span = date.isoformat() if until is None or until == date else f"{date.isoformat()}..{until.isoformat()}"
    return folder.parent / f"{folder.name}{LIFT_SUFFIX}" / f"{span}_{days}d"


def check_out(out: str | Path, pushes: str | Path) -> None:
    """Refuse an output folder inside the pushes folder (or the pushes folder itself).

    Lift's ``lift.parquet`` and ``ctr.parquet`` there would be read as push rows
    by every reader of the whole folder (DuckDB's ``**`` glob fails on them).

    Raises
    ------
    ConfigError
        One line naming both folders and the default beside the pushes.
    """
    target, root = Path(os.path.abspath(out)), Path(os.path.abspath(pushes))
    # resolve() as well: a symlink or ".." can lead into the pushes folder under another name
    inside = target.is_relative_to(root) or target.resolve().is_relative_to(root.resolve())
    if inside:
        raise ConfigError(
            f"--out {out}: inside the --pushes folder {pushes}, whose *.parquet files must all be push rows "
            f"(DuckDB would read lift's tables as pushes); give a folder beside it, e.g. {root.name}{LIFT_SUFFIX}/"
        )


def write_lift(result: LiftResult, out: str | Path, taxonomy: Taxonomy, *, force: bool = False) -> Path:
    """Write ``lift.parquet``, ``ctr.parquet``, ``summary.json``, ``report.md`` and ``report.html`` into ``out``.

    The folder is written whole into a temporary sibling and then renamed
    into place; files in ``out`` that lift did not write are never touched
    (a folder holding others' files is refused unless ``force``).

    Raises
    ------
    ConfigError
        If ``out`` may not be written (see :func:`recsys.io.prepare_output_dir`).
    """
    target = prepare_output_dir(out, NAME, force=force)
    md, page = render(result.lift, result.ctr, result.summary, taxonomy)
    with target.staging() as staged, atomic_dir(staged) as tmp:
        write_parquet(result.lift, tmp / "lift.parquet")
        write_parquet(result.ctr, tmp / "ctr.parquet")
        write_json(result.summary, tmp / "summary.json")
        (tmp / "report.md").write_text(md, encoding="utf-8")
        (tmp / "report.html").write_text(page, encoding="utf-8")
    return Path(out)


def run_lift(
    pushes: str | Path,
    events: str | Path,
    date: str | dt.date,
    *,
    until: str | dt.date | None = None,
    days: int = 3,
    users: str | Path | None = None,
    out: str | Path | None = None,
    force: bool = False,
    taxonomy: Taxonomy | None = None,
    min_users: int = MIN_USERS,
    stream: TextIO | None = sys.stderr,
) -> dict[str, Any]:
    """Measure the lift of the nights ``date .. until`` and write it; return the summary.

    Parameters are those of :func:`recsys.lift.measure.measure_lift`, plus
    ``out`` (default :func:`default_out`: beside the pushes folder, never
    inside it), ``force`` (write into a folder holding other files) and
    ``stream`` (the headline; None = silent).

    Returns
    -------
    dict
        The summary (also ``summary.json``), with ``output`` (the folder).

    Raises
    ------
    ConfigError
        If ``out`` is inside ``pushes`` (:func:`check_out`) or may not be written
        (:func:`recsys.io.prepare_output_dir`), or an input is bad.
    """
    taxonomy = taxonomy if taxonomy is not None else load_taxonomy()
    first = parse_day(date)
    last = None if until is None else parse_day(until)
    folder = Path(out) if out is not None else default_out(pushes, first, last, days)
    # refuse a bad output folder before reading millions of rows
    check_out(folder, pushes)
    prepare_output_dir(folder, NAME, force=force)
    result = measure_lift(
        pushes, events, first, until=last, days=days, users=users, taxonomy=taxonomy, min_users=min_users
    )
    old_output = Path(pushes) / OLD_LIFT_DIR
    if old_output.is_dir():
        # an older engine's default output: left where it is (the user's files), but named, since it
        # still breaks DuckDB's reading of the pushes folder
        result.summary["warnings"].append(
            f"{old_output} holds lift output of an older engine inside the pushes folder; DuckDB's "
            f"read_parquet('{Path(pushes).name}/**/*.parquet', hive_partitioning=true) fails on it: move it "
            f"beside the pushes (e.g. into {Path(os.path.abspath(pushes)).name}{LIFT_SUFFIX}/)"
        )
    write_lift(result, folder, taxonomy, force=force)
    summary = {**result.summary, "output": str(folder)}
    if stream is not None:
        span = (
            result.summary["date_from"]
            if last is None
            else f"{result.summary['date_from']}..{result.summary['date_to']}"
        )
        lines = [f"lift {span} over {days} days -> {folder}", *headline(result.lift)]
        lines += [f"  warning: {w}" for w in result.summary["warnings"]]
        print("\n".join(lines), file=stream)
    return summary
