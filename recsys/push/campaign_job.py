"""A campaign run: push an item or a topic to the users most likely to engage, within caps.

:func:`run_campaign` shares the nightly run's setup, locks and manifest
(:mod:`recsys.push.job`); the selection itself is
:func:`recsys.push.campaign.compute_campaign`. A campaign is one small chunk
and always starts afresh.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any, Sequence, TextIO

from recsys.holds import check_not_held, held_for_run, holds_folder
from recsys.push import identity as I
from recsys.push import writer as W
from recsys.push.campaign import CampaignSpec, compute_campaign
from recsys.push.channels import channel_rules
from recsys.push.chunk import PUSH_FORMAT
from recsys.push.job import (
    NothingToPushError,
    catalog_sha,
    check_k,
    io_errors,
    locked,
    open_job,
    plan_run,
    preflight,
    push_users,
    run_manifest,
    say,
)
from recsys.push.folders import check_push_folders, mark_push_output
from recsys.push.plan import Segment, parse_day
from recsys.push.report import campaign_line

def run_campaign(
    model: str | Path,
    date: str | dt.date,
    out: str | Path,
    *,
    name: str,
    budget: int,
    items: Sequence[str] = (),
    topic: str | None = None,
    group: str | None = None,
    region: str | None = None,
    channel: str | None = None,
    emergency: bool = False,
    replace: bool = False,
    k: int | None = None,
    users: str | Path | None = None,
    catalog: str | Path | None = None,
    config_path: str | Path | None = None,
    history: str | Path | None = None,
    holds: str | Path | None = None,
    stream: TextIO | None = sys.stderr,
    warn_stream: TextIO | None = sys.stderr,
) -> dict[str, Any]:
    """Push a campaign's item(s) or topic to at most ``budget`` users; return its manifest.

    Parameters
    ----------
    model, date, out, catalog, users, config_path, history, stream, warn_stream
        As in :func:`recsys.push.nightly.run_nightly`: ``out`` and ``history`` are checked
        before any work the same way (:func:`recsys.push.folders.check_push_folders`).
    holds : path, optional
        A review-holds folder (default ``[push] holds``): a held item named
        in ``items`` is refused; held items of ``topic`` are left out.
    name : str
        The campaign's name; its rows go to ``<out>/date=<date>/kind=<name>``.
    budget : int
        Most users reached.
    items : sequence of str
        Item ids (give these or ``topic``).
    topic : str, optional
    group, region : str, optional
        Only users of this segment.
    channel : str, optional
        Only this personal channel.
    emergency : bool
        May exceed the daily cap (never the weekly cap, the opt-out or the holdout).
    replace : bool
        Replace a partition of this name written for other items, topic or segment.
    k : int, optional
        Most campaign items per user (default: every item the caps allow);
        1 .. ``[ranking] max_k``.

    Returns
    -------
    dict
        The manifest written beside the rows.

    Raises
    ------
    ConfigError, UnknownCodeError
        On a bad name, budget, ``k``, date, code, item id or config value.
    ArtifactError
        If the bundle is missing or corrupted.
    NothingToPushError
        If nobody is eligible: why (the item is expired, not approved, ...;
        or every audience user opted out, capped, ... with counts); nothing is written.
    OutputConflictError, LockedError, PushIOError, SchemaError
        As in :func:`run`.
    """
    started = time.perf_counter()
    day = parse_day(date)
    # the folders first: a folder holding someone else's files is refused before any work
    target, history_root = check_push_folders(out, history)
    out = target.path
    job = open_job(model, config_path, command="campaign")
    push, taxonomy = job.push, job.taxonomy
    if k is not None:
        k = check_k(k, job.config.ranking.max_k)
    rules = channel_rules(push, taxonomy)
    spec = CampaignSpec(
        name=name,
        budget=budget,
        items=tuple(items),
        topic=topic,
        group=group,
        region=region,
        channel=channel,
        emergency=emergency,
    ).check(taxonomy)
    segment = Segment(group=group, region=region, channel=channel).check(taxonomy)
    ident = I.identity({**dataclasses.asdict(segment), "topic": topic}, spec.items)
    current, warnings, rejected = preflight(job, day, catalog, taxonomy, users or push_users(push), warn_stream)
    holds_dir = holds_folder(holds, push.holds)
    check_not_held(spec.items, held_for_run(holds_dir))  # a named held item is refused, not skipped
    notes: list[str] = []
    workspace = W.Workspace.for_run(out, day, spec.name)
    with io_errors(out), locked(out, history_root, f"campaign {spec.name} {day}", notes, workspace.root):
        say(stream, notes, "note")
        I.check_partition(out, day, spec.name, ident, replace=replace)
        planned = plan_run(job, list(rules), segment, history_root, current)
        plan, store = planned.plan, planned.store
        run_id = W.new_run_id(day, spec.name)
        result = compute_campaign(
            job.root,
            catalog,
            spec,
            plan,
            planned.users,
            planned.usable,
            rules=list(rules.values()),
            store=store,
            day=day,
            push=push,
            timezone=taxonomy.timezone,
            model_version=job.version,
            run_id=run_id,
            per_user=k,
            holds=holds_dir,
        )
        picked = result.picked
        if not picked["selected_users"]:
            why = "; ".join(
                f"{f'item {item}' if item else f'topic {topic}'}: {reason}"
                for item, reason in picked.get("no_audience", {}).items()
            )
            skipped = ", ".join(f"{r} {n}" for r, n in picked["skipped"].items() if n)
            detail = "; ".join(
                part
                for part in (why, f"of {picked['audience']} audience users: {skipped}" if picked["audience"] else "")
                if part
            )
            raise NothingToPushError(
                f"campaign {spec.name} on {day}: nobody is eligible ({detail or 'no audience'}); nothing was written"
            )
        # a campaign is one small chunk, computed above: it always starts afresh
        workspace.start({"format": PUSH_FORMAT, "run_id": run_id}, run_id)
        schema = W.output_schema(taxonomy.timezone)
        workspace.write_chunk(0, result.rows, schema, range(push.history_buckets), result.buckets, result.stats)
        report = run_manifest(
            job,
            planned,
            kind=spec.name,
            day=day,
            run_id=run_id,
            catalog=catalog,
            catalog_sha256=catalog_sha(catalog),
            segment=segment,
            topic=topic,
            stats=result.stats,
            # the campaign's own skips (audience users, each once), not the segment's
            plan_skipped={},
            campaign={**dataclasses.asdict(spec), **picked},
            output=str(W.partition_dir(out, day, spec.name)),
            timings_s={"total": round(time.perf_counter() - started, 3)},
            catalog_rejected=rejected,
            warnings=warnings,
            housekeeping=notes,
        )
        workspace.commit(store, day, spec.name, out, report)
        mark_push_output(target, day, history_root)
    if stream is not None:
        print(campaign_line(report), file=stream)
    return report
