"""``recsys lift`` as a library function: measure, then write the tables and the report."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any, TextIO

from recsys.io import atomic_dir, prepare_output_dir, write_json, write_parquet
from recsys.lift.measure import MIN_USERS, LiftResult, measure_lift
from recsys.lift.report import headline, render
from recsys.push.plan import parse_day
from recsys.taxonomy import Taxonomy, load_taxonomy

NAME = "lift"
FILES = ("lift.parquet", "ctr.parquet", "summary.json", "report.md", "report.html")
LIFT_DIR = "_lift"


def default_out(pushes: str | Path, date: dt.date, until: dt.date | None, days: int) -> Path:
    """``<pushes>/_lift/<date>[..<until>]_<days>d``: beside the pushes, skipped by their Parquet readers."""
    span = date.isoformat() if until is None or until == date else f"{date.isoformat()}..{until.isoformat()}"
    return Path(pushes) / LIFT_DIR / f"{span}_{days}d"


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
    ``out`` (default :func:`default_out`), ``force`` (write into a folder
    holding other files) and ``stream`` (the headline; None = silent).

    Returns
    -------
    dict
        The summary (also ``summary.json``), with ``output`` (the folder).
    """
    taxonomy = taxonomy if taxonomy is not None else load_taxonomy()
    first = parse_day(date)
    last = None if until is None else parse_day(until)
    folder = Path(out) if out is not None else default_out(pushes, first, last, days)
    # refuse a bad output folder before reading millions of rows
    prepare_output_dir(folder, NAME, force=force)
    result = measure_lift(
        pushes, events, first, until=last, days=days, users=users, taxonomy=taxonomy, min_users=min_users
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
