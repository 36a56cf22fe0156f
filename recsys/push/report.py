"""The run manifest (JSON a person can read) and the summary table printed at the end."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from recsys.config import PushConfig
from recsys.push.coverage import summary_lines
from recsys.push.plan import Segment
from recsys.push.priorities import summary_lines as priority_lines
from recsys.push.writer import HOLDOUT_FILE
from recsys.taxonomy import Taxonomy


def _named(counts: dict[str, dict[str, int]], names: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Add the Chinese display name to each code's counts."""
    return {code: {"name": names[code].zh if code in names else code, **value} for code, value in counts.items()}


def build_manifest(
    *,
    kind: str,
    day: dt.date,
    run_id: str,
    model_version: str,
    model_path: str,
    catalog: str,
    catalog_sha256: str,
    taxonomy: Taxonomy,
    segment: Segment,
    topic: str | None,
    push: PushConfig,
    plan_skipped: dict[str, int],
    segment_users: int,
    stats: dict[str, Any],
    holdout: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """Assemble a run's manifest.

    Parameters
    ----------
    kind, day, run_id, model_version, model_path, catalog, catalog_sha256
        What ran, on what.
    taxonomy : Taxonomy
        For the display names of groups, regions, channels and topics.
    segment : Segment
    topic : str or None
    push : PushConfig
    plan_skipped : dict
        Users of the segment left out before ranking, by reason.
    segment_users : int
    stats : dict
        Merged chunk stats (:func:`recsys.push.stats.merge_stats`).
    holdout : dict
        :func:`recsys.push.holdout.holdout_summary` of the segment.
    **extra
        More top-level fields (chunks, timings, campaign, ...).

    Returns
    -------
    dict
        JSON-ready: ``users`` (segment, computed, pushed, skipped by reason),
        ``rows``, ``counts`` by group / region / channel (users and rows) and
        topic (rows), ``holdout`` and the ``[push]`` config used.
    """
    return {
        "date": day.isoformat(),
        "kind": kind,
        "run_id": run_id,
        "model_version": model_version,
        "model": model_path,
        "catalog": catalog,
        "catalog_sha256": catalog_sha256,
        "segment": {**dataclasses.asdict(segment), "topic": topic},
        "users": {
            "segment": int(segment_users),
            "computed": int(stats.get("users", 0)),
            "pushed": int(stats.get("pushed_users", 0)),
            "skipped": {**plan_skipped, **stats.get("skipped", {})},
        },
        "rows": int(stats.get("rows", 0)),
        "counts": {
            "by_group": _named(stats.get("by_group", {}), taxonomy.groups),
            "by_region": _named(stats.get("by_region", {}), taxonomy.regions),
            "by_channel": _named(stats.get("by_channel", {}), taxonomy.channels),
            "by_topic": {
                code: {"name": taxonomy.topics[code].zh if code in taxonomy.topics else code, "rows": n}
                for code, n in stats.get("by_topic", {}).items()
            },
        },
        "holdout": {**holdout, "file": HOLDOUT_FILE},
        "config": dataclasses.asdict(push),
        **extra,
    }


def summary_table(report: dict[str, Any]) -> str:
    """The end-of-run summary: users and rows per channel and group, skips, holdout, speed."""
    users = report["users"]
    lines = [f"push {report['date']} {report['kind']}  run {report['run_id']}  model {report['model_version']}"]
    for title, table in (("channel", "by_channel"), ("group", "by_group"), ("region", "by_region")):
        lines.append(f"  {title:<16}{'users':>10}{'rows':>10}")
        for code, counts in report["counts"][table].items():
            lines.append(f"  {code:<16}{counts['users']:>10}{counts['rows']:>10}")
    lines.append(f"  users: {users['pushed']} pushed of {users['segment']} in the segment")
    skipped = ", ".join(f"{k} {v}" for k, v in users["skipped"].items() if v)
    lines.append(f"  skipped: {skipped or 'none'}")
    lines.append(f"  holdout: {report['holdout']['size']} users ({report['holdout']['share']:.1%})")
    if report.get("coverage"):
        lines.extend(summary_lines(report["coverage"]))
    if report.get("priorities"):
        lines.extend(priority_lines(report["priorities"]))
    seconds = report["timings_s"]["total"]
    lines.append(f"  time: {seconds:.1f}s, {report.get('users_per_s', 0):,.0f} users/s  -> {report['output']}")
    return "\n".join(lines)


def campaign_line(report: dict[str, Any]) -> str:
    """One line saying what a campaign did."""
    c = report["campaign"]
    skipped = ", ".join(f"{k} {v}" for k, v in c["skipped"].items() if v) or "none"
    return (
        f"campaign {c['name']} {report['date']}: {c['selected_users']} of budget {c['budget']} users, "
        f"{c['rows']} rows (audience looked at: {c['audience']}; skipped: {skipped}) -> {report['output']}"
    )
