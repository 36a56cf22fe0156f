"""The nightly push: tomorrow's lists for every push-eligible user, or a segment's.

:func:`run_nightly` plans who is in the run, cuts the users into chunks of
whole history buckets, runs the chunk function (:mod:`recsys.push.chunk`) here,
in local worker processes or on a Dask cluster (:mod:`recsys.push.executors`),
then publishes the rows, the history and the manifest in one commit
(:mod:`recsys.push.writer`). A run killed mid-way resumes its finished chunks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

import numpy as np
import pandas as pd

from recsys.io import sha256_file
from recsys.push.folders import check_push_folders, mark_push_output
from recsys.push import coverage as CV
from recsys.push import identity as I
from recsys.push import priorities as PR
from recsys.push import writer as W
from recsys.push import history as H
from recsys.push.channels import channel_rules
from recsys.push.chunk import PUSH_FORMAT, ChunkTask, RunSpec, chunk_tasks, run_chunk
from recsys.push.executors import execute
from recsys.push.job import (
    CONNECT_TIMEOUT_S,
    catalog_sha,
    check_timeout,
    io_errors,
    locked,
    nothing_error,
    open_job,
    plan_run,
    preflight,
    progress_bar,
    push_users,
    run_manifest,
    say,
)
from recsys.holds import held_for_run
from recsys.push.plan import Segment, make_chunks, parse_day
from recsys.push.report import summary_table
from recsys.push.stats import merge_stats

def run_nightly(
    model: str | Path,
    date: str | dt.date,
    out: str | Path,
    *,
    catalog: str | Path | None = None,
    group: str | None = None,
    region: str | None = None,
    topic: str | None = None,
    channel: str | None = None,
    kind: str | None = None,
    replace: bool = False,
    k: int | None = None,
    users: str | Path | None = None,
    config_path: str | Path | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    history: str | Path | None = None,
    places: str | Path | None = None,
    holds: str | Path | None = None,
    priorities: str | Path | None = None,
    coverage: Sequence[Mapping[str, Any]] | None = None,
    stream: TextIO | None = sys.stderr,
    warn_stream: TextIO | None = sys.stderr,
    on_chunk: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Write the nightly push lists of ``date`` (or a targeted run's); return the run manifest.

    Parameters
    ----------
    model : path
        Model bundle (a version folder, ``models/latest`` or a models folder).
    date : str or datetime.date
        The local day the pushes go out (``YYYY-MM-DD``, 1990-01-01 .. 2099-12-31).
    out : path
        Output folder (partitioned Parquet, manifest, history, work files):
        new, empty, or one a push or campaign wrote before; anything else is
        refused before any work (see :func:`check_push_folders`).
    catalog : path, optional
        The current catalogue (items table); default: the bundle's items.
        Rejected rows are reported by reason; a catalogue of which nothing
        survives is an error.
    group, region : str, optional
        Only users of this segment.
    topic : str, optional
        Only items of this topic.
    channel : str, optional
        Force this personal channel.
    kind : str, optional
        The run's partition ``kind=``; default ``nightly``, or
        ``segment-<hash of the filters>`` for a run with any of group,
        region, topic or channel (see :mod:`recsys.push.identity`).
    replace : bool
        Replace a partition written for another request (refused otherwise).
    k : int, optional
        Items per list on every channel (default ``[push] k`` per channel);
        1 .. ``[ranking] max_k``.
    users : path, optional
        A current users table: tonight's opt-outs, subscriptions, groups and
        regions (default ``[push] users``, else the bundle's users).
    config_path : path, optional
        Engine config TOML holding only ``[push]`` (it replaces the bundle's
        ``[push]``; any other section is refused: those apply at train time);
        default: the bundle's config.
    workers : int, optional
        Local worker processes (default ``[push] workers``).
    scheduler : str, optional
        A Dask scheduler address; chunks run on its workers.
    connect_timeout : float
        Seconds to wait for the scheduler.
    history : path, optional
        Push-history folder: new, empty or a push history (see
        :func:`check_push_folders`); default ``<out>/_history``.
    places : path, optional
        A places table (tv, radio, cinema, kiosk): the coverage rules with
        ``broadcast_reach`` count the broadcast audiences of a region
        (:mod:`recsys.push.coverage`).
    coverage : sequence of dict, optional
        Coverage rules (``[[push.coverage]]`` tables) to meet instead of
        ``[push] coverage``; checked the same way.
    holds : path, optional
        A review-holds folder (``recsys monitor``'s ``--state``; default
        ``[push] holds``): the items on hold when the run starts are never pushed.
    priorities : path, optional
        A ``priorities.toml`` (``recsys demand``): each priority audience's
        priority topics are raised by their weight (ranking feature
        ``priority``) and the manifest's ``priorities`` block counts, per
        audience, the users reached with priority content. Default
        ``[push] priorities``; none = the lists as ranked.
    stream : text stream or None
        Progress bar, summary table and housekeeping notes (None = silent).
    warn_stream : text stream or None
        Warnings (a stale model, rejected catalogue rows); also in the manifest.
    on_chunk : callable, optional
        Called with each finished chunk's stats.

    Returns
    -------
    dict
        The manifest written beside the rows.

    Raises
    ------
    ConfigError, UnknownCodeError
        On a bad date, code, ``k`` or config value.
    ArtifactError
        If the bundle is missing or corrupted.
    SchemaError
        If ``catalog`` or ``users`` is missing, unreadable or wholly rejected.
    OutputConflictError
        If the run would replace another request's partition without ``replace``.
    LockedError
        If another run uses ``out`` or the history.
    NothingToPushError
        If nobody gets anything (with the reasons and counts); nothing is written.
    PushIOError
        If the output or history folder cannot be written.
    SchedulerError
        If the Dask scheduler cannot be reached within ``connect_timeout``.
    """
    started = time.perf_counter()
    day = parse_day(date)
    # the folders first: a folder holding someone else's files is refused before any work
    target, history_root = check_push_folders(out, history)
    out = target.path
    job = open_job(model, config_path, workers, k)
    if coverage is not None:
        job.push = dataclasses.replace(job.push, coverage=[dict(rule) for rule in coverage])
    push, taxonomy = job.push, job.taxonomy
    channels = list(channel_rules(push, taxonomy))
    segment = Segment(group=group, region=region, channel=channel).check(taxonomy)
    if topic is not None:
        taxonomy.check("topic", topic)
    coverage_rules = CV.parse_rules(push.coverage, taxonomy)  # bad rules stop the run before any work
    priorities_path = priorities or push.priorities or None
    # a bad priorities file stops the run before any work, like bad rules
    prio = PR.load_priorities(priorities_path, taxonomy) if priorities_path else None
    check_timeout(connect_timeout)
    ident = I.identity({**dataclasses.asdict(segment), "topic": topic})
    if kind is None:
        kind = I.segment_kind(ident["segment"]) if I.is_targeted(ident["segment"]) else W.NIGHTLY
    H.validate_kind(kind)
    current, warnings, rejected = preflight(job, day, catalog, taxonomy, users or push_users(push), warn_stream)
    # the chunks judge the priorities' expiry at the push date's local midnight: a file none of whose
    # entries is in force then raises nothing, and the run says so (not an error: a stale demand file
    # must not stop the city's night)
    prio_now = pd.Timestamp(day.isoformat()).tz_localize(taxonomy.timezone)
    stale = PR.not_in_force(prio, prio_now) if prio else None
    if stale:
        warnings.append(stale)
        say(warn_stream, [stale], "warning")
    held = held_for_run(holds, push.holds)  # read once: every chunk leaves out the same items
    notes: list[str] = []
    workspace = W.Workspace.for_run(out, day, kind)
    with io_errors(out), locked(out, history_root, f"{kind} {day}", notes, workspace.root):
        say(stream, notes, "note")
        I.check_partition(out, day, kind, ident, replace=replace)
        planned = plan_run(job, channels, segment, history_root, current)
        users_, usable, plan, store = planned.users, planned.usable, planned.plan, planned.store
        chunks = make_chunks(plan.scope, plan.buckets, push.history_buckets, push.chunk_size)
        known = len(warnings)
        cells = CV.prepare_run(coverage_rules, users_, job.root, places, taxonomy, warnings)
        say(warn_stream, warnings[known:], "warning")
        fingerprint = {
            "format": PUSH_FORMAT,
            "model": str(job.root),
            "model_version": job.version,
            "catalog": str(catalog) if catalog else None,
            "catalog_sha256": catalog_sha(catalog),
            "users_sha256": sha256_file(users or push_users(push)) if (users or push_users(push)) else None,
            "date": day.isoformat(),
            "segment": dataclasses.asdict(segment),
            "topic": topic,
            "held": list(held),
            "push": {k_: v for k_, v in dataclasses.asdict(push).items() if k_ != "workers"},
            "users": hashlib.sha256(np.ascontiguousarray(plan.scope).tobytes()).hexdigest(),
            "chunks": [[c.bucket_lo, c.bucket_hi, len(c.users)] for c in chunks],
            "history": store.signature(day, kind, max(push.dedup_days, CV.window_days(coverage_rules))),
            **({"broadcast_cells": [list(c) for c in cells]} if cells else {}),
            **({"priorities": PR.priorities_document(prio)} if prio else {}),
        }
        run_id, resumed = workspace.start(fingerprint, W.new_run_id(day, kind))
        done = workspace.done_chunks()
        todo = [c for c in chunks if c.index not in done]
        timings = {"plan": round(time.perf_counter() - started, 3)}

        parallel = scheduler is not None or push.workers > 1
        spec = RunSpec(
            # absolute: a Dask worker started in another folder opens the same bundle
            bundle=str(job.root.resolve()),
            catalog=str(Path(catalog).resolve()) if catalog else None,
            catalog_sha256=fingerprint["catalog_sha256"],
            workspace=str(workspace.root.resolve()),
            history=str(store.root.resolve()),
            day=day.isoformat(),
            kind=kind,
            topic=topic,
            push=dataclasses.asdict(push),
            run_id=run_id,
            model_version=job.version,
            timezone=taxonomy.timezone,
            threads=1 if parallel else max(1, job.config.index.threads),
            broadcast_cells=cells,
            held=held,
            priorities=PR.priorities_document(prio) if prio else None,
        )
        t0 = time.perf_counter()
        bar = progress_bar(stream, total=len(plan.scope), initial=len(plan.scope) - sum(len(c.users) for c in todo))

        def finished(task: ChunkTask, stats: dict[str, Any]) -> None:
            if bar is not None:
                bar.update(task.n_users)
            if on_chunk is not None:
                on_chunk(stats)

        try:
            tasks = chunk_tasks(spec, todo, plan, users_, usable)
            execute(
                run_chunk,
                tasks,
                workers=push.workers,
                scheduler=scheduler,
                connect_timeout=connect_timeout,
                on_result=finished,
                # a Dask worker must read the bundle and write the run's folders where this machine does
                shared_paths=[p for p in (spec.bundle, spec.catalog, spec.workspace, spec.history) if p],
            )
        finally:
            if bar is not None:
                bar.close()
        timings["chunks"] = round(time.perf_counter() - t0, 3)
        parts = workspace.read_stats()
        stats = merge_stats(parts)
        coverage = CV.run_report(coverage_rules, parts, places)
        if not stats["rows"]:
            shutil.rmtree(workspace.root, ignore_errors=True)
            kept = W.partition_dir(out, day, kind)
            extra = f"; the earlier lists in {kept} are left as they were" if kept.exists() else ""
            raise nothing_error(f"push {day} {kind}", plan, stats.get("skipped", {}), extra)

        t0 = time.perf_counter()
        report = run_manifest(
            job,
            planned,
            kind=kind,
            day=day,
            run_id=run_id,
            catalog=catalog,
            catalog_sha256=fingerprint["catalog_sha256"],
            segment=segment,
            topic=topic,
            stats=stats,
            chunks={"total": len(chunks), "resumed": len(chunks) - len(todo), "computed": len(todo)},
            resumed=resumed,
            workers=push.workers,
            scheduler=scheduler,
            output=str(W.partition_dir(out, day, kind)),
            catalog_rejected=rejected,
            warnings=warnings,
            housekeeping=notes,
            # the users table read tonight (None: the bundle's): `recsys lift` reads the same one
            users_path=str(Path(users or push_users(push)).resolve()) if (users or push_users(push)) else None,
            **({"coverage": coverage} if coverage else {}),
            **({"priorities": PR.run_report(prio, parts, prio_now)} if prio else {}),
        )
        timings["commit"] = round(time.perf_counter() - t0, 3)
        timings["total"] = round(time.perf_counter() - started, 3)
        report["timings_s"] = timings
        report["users_per_s"] = round(len(plan.scope) / timings["total"], 1) if timings["total"] else 0.0
        workspace.commit(store, day, kind, out, report, holdout=plan.holdout)
        mark_push_output(target, day, history_root)
    if stream is not None:
        print("\n" + summary_table(report), file=stream)
    return report
