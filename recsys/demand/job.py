"""The ``recsys demand`` job: read the tables, analyse, write the tables, priorities and the report."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import tomli_w

from recsys.config import DemandConfig, is_int
from recsys.demand import aggregate, audiences, gaps, priorities, supply, trends, weekly
from recsys.demand.report import write_report
from recsys.exceptions import ConfigError, DataError
from recsys.io import atomic_path, prepare_output_dir, write_json, write_parquet, written_by_header
from recsys.push.priorities import Priorities, priorities_document
from recsys.taxonomy import Taxonomy, load_taxonomy

#: the tables the job writes, in this order
TABLES = ("demand", "trends", "supply", "gaps", "audiences")


@dataclass
class DemandResult:
    """What :func:`analyse` found.

    Attributes
    ----------
    window : aggregate.Window
    tables : dict of str to DataFrame
        ``demand``, ``trends``, ``supply``, ``gaps``, ``audiences``.
    priorities : recsys.push.priorities.Priorities
    recommendations : list of (zh, en)
    summary : dict
        JSON-ready counts and settings (the job's manifest).
    """

    window: aggregate.Window
    tables: dict[str, pd.DataFrame]
    priorities: Priorities
    recommendations: list[tuple[str, str]]
    summary: dict[str, Any] = field(default_factory=dict)


def make_window(
    first: pd.Timestamp, last: pd.Timestamp, taxonomy: Taxonomy, *, as_of: pd.Timestamp | None, weeks: int | None, max_weeks: int
) -> aggregate.Window:
    """The analysed weeks: ``weeks`` (default: every whole week the log holds, at most ``max_weeks``) before ``as_of``.

    ``as_of`` defaults to the local midnight after the last event.

    Raises
    ------
    DataError
        "not enough data for ...": fewer than two whole weeks, or more
        ``weeks`` than the log covers before ``as_of``.
    """
    tz = taxonomy.tz
    if as_of is None:
        as_of = (last.tz_convert(tz).normalize() + pd.Timedelta(days=1)).tz_convert("UTC")
    first_day = first.tz_convert(tz).normalize().tz_convert("UTC")
    covered = math.floor((as_of - first_day) / pd.Timedelta(days=1))
    available = max(covered, 0) // 7
    local = as_of.tz_convert(tz).isoformat()
    if weeks is None:
        weeks = min(max_weeks, available)
        if weeks < 2:
            raise DataError(
                f"not enough data for a demand analysis: the log covers {max(covered, 0)} days before {local} "
                "(from its first event); at least 2 whole weeks are needed"
            )
    elif weeks > available:
        raise DataError(
            f"not enough data for --weeks {weeks}: the log covers {max(covered, 0)} days before {local} "
            f"({available} whole weeks, from {first_day.tz_convert(tz).date()}); pass --weeks {available} or less"
            if available >= 2
            else f"not enough data for --weeks {weeks}: the log covers {max(covered, 0)} days before {local}"
        )
    return aggregate.Window(start=as_of - pd.Timedelta(days=7 * weeks), as_of=as_of, weeks=int(weeks), timezone=taxonomy.timezone)


def analyse(
    data: str | Path,
    *,
    as_of: pd.Timestamp | None = None,
    weeks: int | None = None,
    taxonomy: Taxonomy | str | Path | None = None,
    config: DemandConfig | None = None,
    threads: int | None = None,
) -> DemandResult:
    """Track demand in a data folder: weekly demand, trends, supply, gaps, audiences and priorities.

    Parameters
    ----------
    data : path
        A folder with the contract's ``users.parquet``, ``items.parquet`` and
        ``events.parquet`` (validated data).
    as_of : Timestamp, optional
        The end of the analysed window (exclusive); default: the local
        midnight after the log's last event.
    weeks : int, optional
        Whole weeks analysed; default every whole week of the log, at most
        ``config.max_weeks``.
    taxonomy : Taxonomy or path, optional
        Needs a ``[[calendar]]`` (campaign days are seasonal, not demand).
    config : DemandConfig, optional
    threads : int, optional
        DuckDB threads (default: one per core).

    Returns
    -------
    DemandResult

    Raises
    ------
    ConfigError
        A taxonomy without a calendar; ``weeks`` not above ``recent_weeks``.
    DataError
        Not enough data (an empty window, too many weeks, no users of the taxonomy).
    SchemaError
        A missing table or column.
    """
    config = config or DemandConfig()
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    if not tax.calendar:
        raise ConfigError(
            f"taxonomy {tax.name!r} has no [[calendar]]: demand tracking needs the campaign days to tell a yearly "
            "surge from new demand; add [[calendar]] entries (name, month, day, topics) to the taxonomy file"
        )
    if weeks is not None and (not is_int(weeks) or weeks < 2):
        raise ConfigError(f"--weeks must be a whole number >= 2, got {weeks!r}")
    events = aggregate.table_path(data, "events")
    first, last, _ = aggregate.log_span(events, threads)
    window = make_window(first, last, tax, as_of=as_of, weeks=weeks, max_weeks=config.max_weeks)
    if window.weeks <= config.recent_weeks:
        raise DataError(
            f"not enough data for a trend: {window.weeks} weeks leave no earlier weeks to compare the last "
            f"{config.recent_weeks} with; analyse more weeks or lower [demand] recent_weeks"
        )
    people = aggregate.residents(data, tax)
    counts, reach = aggregate.daily_counts(data, window, threads=threads)
    span = f"{window.start.tz_convert(tax.tz).isoformat()} .. {window.as_of.tz_convert(tax.tz).isoformat()}"
    if counts.empty or counts["impressions"].sum() == 0:
        logged = f"{first.tz_convert(tax.tz).date()} .. {last.tz_convert(tax.tz).date()}"
        raise DataError(
            f"{data}: not enough data: no impression of a known user and item between {span} "
            f"(the log runs {logged}); pick an --as-of inside it"
        )
    before = counts[counts["day"] < 7 * (window.weeks - config.recent_weeks)]
    if before["impressions"].sum() == 0 or before["impressions"].sum() == counts["impressions"].sum():
        raise DataError(f"{data}: not enough data for a trend: impressions only in one part of {span}")

    topics = list(tax.topics)
    campaign = tax.campaign_mask(window.dates())
    trend = trends.trend_table(counts, campaign, topics, window.weeks, config)
    demand = weekly.demand_table(counts, people, window.week_starts(), config)
    items = supply.live_items(data, window.as_of, config.fresh_days)
    supply_tab = supply.supply_table(items, tax)
    seg_supply = supply.segment_supply(items, tax)
    gap = gaps.gap_table(demand, trend, seg_supply, window.weeks, config)
    aud = audiences.audience_table(reach, tax, config)
    prio = priorities.build_priorities(gap, aud, demand, tax, window.as_of, window.weeks, config)
    advice = priorities.recommendations(gap, trend, aud, tax, window.weeks, config)
    summary = {
        "as_of": window.as_of.tz_convert(tax.tz).isoformat(),
        "start": window.start.tz_convert(tax.tz).isoformat(),
        "weeks": window.weeks,
        "recent_weeks": config.recent_weeks,
        "taxonomy": tax.name,
        "impressions": int(reach["impressions"].sum()),
        "cells_tested": int((trend["direction"] != "not tested").sum()),
        "rising": int((trend["direction"] == "rising").sum()),
        "falling": int((trend["direction"] == "falling").sum()),
        "gaps": int(gap["gap"].sum()),
        "under_served": int((aud["status"] == "under-served").sum()),
        "priority_audiences": len(prio.audiences),
        "live_items": int(items["item_id"].nunique()),
        "config": dataclasses.asdict(config),
    }
    return DemandResult(
        window=window,
        tables={"demand": demand, "trends": trend, "supply": supply_tab, "gaps": gap, "audiences": aud},
        priorities=prio,
        recommendations=advice,
        summary=summary,
    )


def write_outputs(result: DemandResult, folder: Path, taxonomy: Taxonomy) -> list[str]:
    """Write the tables, ``priorities.toml``, the report and ``summary.json`` into ``folder``; return the names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for name in TABLES:
        write_parquet(result.tables[name], folder / f"{name}.parquet")
        names.append(f"{name}.parquet")
    with atomic_path(folder / "priorities.toml") as tmp:
        body = tomli_w.dumps(priorities_document(result.priorities))
        note = "" if result.priorities.audiences else "# no priority audience this week: a push reading this file ranks as usual\n"
        tmp.write_text(f"{written_by_header('demand')}\n{note}{body}", encoding="utf-8")
    names.append("priorities.toml")
    names += write_report(result, folder, taxonomy)
    write_json(result.summary, folder / "summary.json")
    names.append("summary.json")
    return names


def run_demand(
    data: str | Path,
    out: str | Path,
    *,
    as_of: pd.Timestamp | None = None,
    weeks: int | None = None,
    taxonomy: str | Path | None = None,
    config: DemandConfig | None = None,
    force: bool = False,
    threads: int | None = None,
) -> DemandResult:
    """Analyse ``data`` and write everything into the folder ``out`` (checked before any work).

    Raises
    ------
    ConfigError, DataError, SchemaError
        See :func:`analyse`; and an output folder that holds other files (without ``force``).
    """
    target = prepare_output_dir(out, "demand", force=force)
    tax = load_taxonomy(taxonomy)
    result = analyse(data, as_of=as_of, weeks=weeks, taxonomy=tax, config=config, threads=threads)
    with target.staging() as staged:
        write_outputs(result, Path(staged), tax)
    return result
