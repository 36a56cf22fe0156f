"""``recsys push`` and ``recsys campaign``: tomorrow's push lists, and targeted campaigns.

A thin job over :mod:`recsys.push`: plan who is in the run, cut the users
into chunks, run the chunk function (here, in local worker processes, or on
a Dask cluster), then publish the rows, the history and the manifest in one
commit. ``run(...) -> report`` for the nightly lists, ``campaign(...) ->
report`` for a campaign, ``main(argv) -> int`` as a script.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

import numpy as np

from recsys import bundle as bundle_io
from recsys.config import EngineConfig, PushConfig, config_from_dict, load_config
from recsys.io import sha256_file
from recsys.push import history as H
from recsys.push import writer as W
from recsys.push.channels import channel_rules
from recsys.push.holdout import holdout_summary
from recsys.push.plan import (
    BundleUsers,
    Segment,
    UserPlan,
    make_chunks,
    parse_day,
    plan_users,
    read_bundle_users,
    usable_channels,
)
from recsys.push.report import build_manifest, campaign_line, summary_table
from recsys.push.runner import ChunkTask, RunSpec, chunk_tasks, execute, merge_stats, run_chunk
from recsys.taxonomy import Taxonomy, parse_taxonomy

#: bump when a chunk's output changes for the same inputs (a resume must not mix versions)
PUSH_FORMAT = 2


@dataclasses.dataclass
class _Run:
    """What every run opens first: the bundle, its codes, and the push settings."""

    root: Path
    version: str
    taxonomy: Taxonomy
    config: EngineConfig
    push: PushConfig


def _open(model: str | Path, config_path: str | Path | None, workers: int | None = None) -> _Run:
    root = bundle_io.resolve(model)
    manifest = bundle_io.read_manifest(root)
    tax_path = root / "taxonomy.toml"
    taxonomy = parse_taxonomy(tax_path.read_text(encoding="utf-8"), origin=str(tax_path))
    config = load_config(config_path) if config_path else config_from_dict(manifest.get("config", {}))
    push = config.push if workers is None else dataclasses.replace(config.push, workers=workers)
    channel_rules(push, taxonomy)  # validates the whole [push] section before anything runs
    return _Run(root, str(manifest.get("version", root.name)), taxonomy, config, push)


def _catalog_sha(catalog: str | Path | None) -> str:
    return "bundle items" if catalog is None else sha256_file(catalog)


@dataclasses.dataclass
class _Planned:
    """Who is in a run (nightly or campaign) and the history it reads and extends."""

    users: BundleUsers
    usable: np.ndarray
    plan: UserPlan
    store: H.HistoryStore


def _plan(job: _Run, channels: list[str], segment: Segment, out: Path, history: str | Path | None) -> _Planned:
    """Read the bundle's users, plan the segment and open the push history (call under the run lock)."""
    push = job.push
    users = read_bundle_users(job.root, job.taxonomy, channels)
    usable = usable_channels(users.subscribed, channels, segment.channel)
    plan = plan_users(
        users.table,
        subscribed=usable,
        segment=segment,
        holdout_share=push.holdout_share,
        holdout_salt=push.holdout_salt,
        n_buckets=push.history_buckets,
    )
    store = H.HistoryStore.open(Path(history) if history else out / W.HISTORY_DIR, push.history_buckets)
    return _Planned(users, usable, plan, store)


def _manifest(
    job: _Run,
    planned: _Planned,
    *,
    kind: str,
    day: dt.date,
    run_id: str,
    catalog: str | Path | None,
    catalog_sha256: str,
    segment: Segment,
    topic: str | None,
    stats: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """:func:`build_manifest` with the fields every run fills the same way from its job and plan."""
    plan, users = planned.plan, planned.users
    return build_manifest(
        kind=kind,
        day=day,
        run_id=run_id,
        model_version=job.version,
        model_path=str(job.root),
        catalog=str(catalog) if catalog else "bundle items",
        catalog_sha256=catalog_sha256,
        taxonomy=job.taxonomy,
        segment=segment,
        topic=topic,
        push=job.push,
        plan_skipped=plan.skipped,
        segment_users=plan.segment_users,
        stats=stats,
        holdout=holdout_summary(users.table[plan.in_segment], plan.held[plan.in_segment]),
        **extra,
    )


def _progress(stream: TextIO | None, *, total: int, initial: int) -> Any:
    if stream is None:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="user", unit_scale=True, file=stream, desc="push", smoothing=0.1)


def run(
    model: str | Path,
    date: str | dt.date,
    out: str | Path,
    *,
    catalog: str | Path | None = None,
    group: str | None = None,
    region: str | None = None,
    topic: str | None = None,
    channel: str | None = None,
    config_path: str | Path | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    history: str | Path | None = None,
    stream: TextIO | None = sys.stderr,
    on_chunk: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Write the nightly push lists of ``date``; return the run manifest.

    Parameters
    ----------
    model : path
        Model bundle (a version folder, ``models/latest`` or a models folder).
    date : str or datetime.date
        The local day the pushes go out (``YYYY-MM-DD``).
    out : path
        Output folder (partitioned Parquet, manifest, history, work files).
    catalog : path, optional
        The current catalogue (items table); default: the bundle's items.
    group, region : str, optional
        Only users of this segment.
    topic : str, optional
        Only items of this topic.
    channel : str, optional
        Force this personal channel.
    config_path : path, optional
        Engine config TOML (its ``[push]`` section); default: the bundle's config.
    workers : int, optional
        Local worker processes (default ``[push] workers``).
    scheduler : str, optional
        A Dask scheduler address; chunks run on its workers.
    history : path, optional
        Push-history folder; default ``<out>/_history``.
    stream : text stream or None
        Progress bar and summary table (None = silent).
    on_chunk : callable, optional
        Called with each finished chunk's stats.

    Returns
    -------
    dict
        The manifest written beside the rows.

    Raises
    ------
    ConfigError, UnknownCodeError
        On a bad date, code, or config value.
    ArtifactError
        If the bundle is missing or corrupted.
    RecsysError
        If another run is writing to ``out``.
    """
    started = time.perf_counter()
    day = parse_day(date)
    job = _open(model, config_path, workers)
    push, taxonomy = job.push, job.taxonomy
    channels = list(channel_rules(push, taxonomy))
    segment = Segment(group=group, region=region, channel=channel).check(taxonomy)
    if topic is not None:
        taxonomy.check("topic", topic)
    out = Path(out)
    with W.run_lock(out):
        planned = _plan(job, channels, segment, out, history)
        users, usable, plan, store = planned.users, planned.usable, planned.plan, planned.store
        chunks = make_chunks(plan.scope, plan.buckets, push.history_buckets, push.chunk_size)
        fingerprint = {
            "format": PUSH_FORMAT,
            "model": str(job.root),
            "model_version": job.version,
            "catalog": str(catalog) if catalog else None,
            "catalog_sha256": _catalog_sha(catalog),
            "date": day.isoformat(),
            "segment": dataclasses.asdict(segment),
            "topic": topic,
            "push": {k: v for k, v in dataclasses.asdict(push).items() if k != "workers"},
            "users": hashlib.sha256(np.ascontiguousarray(plan.scope).tobytes()).hexdigest(),
            "chunks": [[c.bucket_lo, c.bucket_hi, len(c.users)] for c in chunks],
            "history": store.signature(day, W.NIGHTLY, push.dedup_days),
        }
        workspace = W.Workspace.for_run(out, day, W.NIGHTLY)
        run_id, resumed = workspace.start(fingerprint, W.new_run_id(day, W.NIGHTLY))
        done = workspace.done_chunks()
        todo = [c for c in chunks if c.index not in done]
        timings = {"plan": round(time.perf_counter() - started, 3)}

        parallel = scheduler is not None or push.workers > 1
        spec = RunSpec(
            bundle=str(job.root),
            catalog=str(Path(catalog).resolve()) if catalog else None,
            catalog_sha256=fingerprint["catalog_sha256"],
            workspace=str(workspace.root.resolve()),
            history=str(store.root.resolve()),
            day=day.isoformat(),
            kind=W.NIGHTLY,
            topic=topic,
            push=dataclasses.asdict(push),
            run_id=run_id,
            model_version=job.version,
            timezone=taxonomy.timezone,
            threads=1 if parallel else max(1, job.config.index.threads),
        )
        t0 = time.perf_counter()
        bar = _progress(stream, total=len(plan.scope), initial=len(plan.scope) - sum(len(c.users) for c in todo))

        def finished(task: ChunkTask, stats: dict[str, Any]) -> None:
            if bar is not None:
                bar.update(task.n_users)
            if on_chunk is not None:
                on_chunk(stats)

        try:
            tasks = chunk_tasks(spec, todo, plan, users, usable)
            execute(run_chunk, tasks, workers=push.workers, scheduler=scheduler, on_result=finished)
        finally:
            if bar is not None:
                bar.close()
        timings["chunks"] = round(time.perf_counter() - t0, 3)

        t0 = time.perf_counter()
        report = _manifest(
            job,
            planned,
            kind=W.NIGHTLY,
            day=day,
            run_id=run_id,
            catalog=catalog,
            catalog_sha256=fingerprint["catalog_sha256"],
            segment=segment,
            topic=topic,
            stats=merge_stats(workspace.read_stats()),
            chunks={"total": len(chunks), "resumed": len(chunks) - len(todo), "computed": len(todo)},
            resumed=resumed,
            workers=push.workers,
            scheduler=scheduler,
            output=str(W.partition_dir(out, day, W.NIGHTLY)),
        )
        timings["commit"] = round(time.perf_counter() - t0, 3)
        timings["total"] = round(time.perf_counter() - started, 3)
        report["timings_s"] = timings
        report["users_per_s"] = round(len(plan.scope) / timings["total"], 1) if timings["total"] else 0.0
        workspace.commit(store, day, W.NIGHTLY, out, report, holdout=plan.holdout)
    if stream is not None:
        print("\n" + summary_table(report), file=stream)
    return report


def campaign(
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
    catalog: str | Path | None = None,
    config_path: str | Path | None = None,
    history: str | Path | None = None,
    stream: TextIO | None = sys.stderr,
) -> dict[str, Any]:
    """Push a campaign's item(s) or topic to at most ``budget`` users; return its manifest.

    Parameters
    ----------
    model, date, out, catalog, config_path, history, stream
        As in :func:`run`.
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

    Returns
    -------
    dict
        The manifest written beside the rows.

    Raises
    ------
    ConfigError, UnknownCodeError
        On a bad name, budget, date, code, item id or config value.
    ArtifactError
        If the bundle is missing or corrupted.
    RecsysError
        If another run is writing to ``out``.
    """
    from recsys.push.campaign import CampaignSpec, run_campaign

    started = time.perf_counter()
    day = parse_day(date)
    job = _open(model, config_path)
    push, taxonomy = job.push, job.taxonomy
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
    out = Path(out)
    with W.run_lock(out):
        planned = _plan(job, list(rules), segment, out, history)
        plan, store = planned.plan, planned.store
        run_id = W.new_run_id(day, spec.name)
        result = run_campaign(
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
        )
        workspace = W.Workspace.for_run(out, day, spec.name)
        # a campaign is one small chunk, computed above: it always starts afresh
        workspace.start({"format": PUSH_FORMAT, "run_id": run_id}, run_id)
        schema = W.output_schema(taxonomy.timezone)
        workspace.write_chunk(0, result.rows, schema, range(push.history_buckets), result.buckets, result.stats)
        report = _manifest(
            job,
            planned,
            kind=spec.name,
            day=day,
            run_id=run_id,
            catalog=catalog,
            catalog_sha256=_catalog_sha(catalog),
            segment=segment,
            topic=topic,
            stats=result.stats,
            campaign={**dataclasses.asdict(spec), **result.picked},
            output=str(W.partition_dir(out, day, spec.name)),
            timings_s={"total": round(time.perf_counter() - started, 3)},
        )
        workspace.commit(store, day, spec.name, out, report)
    if stream is not None:
        print(campaign_line(report), file=stream)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run as a script: ``python -m pipelines.push --model models/latest --date YYYY-MM-DD``."""
    from recsys.cli import main as cli_main

    return cli_main(["push", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
