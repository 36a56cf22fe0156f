"""``recsys push`` and ``recsys campaign``: tomorrow's push lists, and targeted campaigns.

A thin job over :mod:`recsys.push`: plan who is in the run, cut the users
into chunks, run the chunk function (here, in local worker processes, or on
a Dask cluster), then publish the rows, the history and the manifest in one
commit. ``run(...) -> report`` for the nightly lists, ``campaign(...) ->
report`` for a campaign, ``main(argv) -> int`` as a script.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TextIO

import numpy as np
import pandas as pd

from recsys import bundle as bundle_io
from recsys.config import EngineConfig, PushConfig, config_from_dict, load_config
from recsys.exceptions import ArtifactError, ConfigError, RecsysError, SchemaError
from recsys.io import sha256_file
from recsys.push import history as H
from recsys.push import identity as I
from recsys.push import lock as L
from recsys.push import writer as W
from recsys.push.channels import channel_rules
from recsys.push.holdout import holdout_summary
from recsys.push.housekeeping import clean_leftovers
from recsys.push.users import current_users, read_current_users
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
#: days between the model's data end and --date above which a run warns (when the config has no stale_days)
STALE_DAYS = 7
#: seconds to wait for a Dask scheduler by default
CONNECT_TIMEOUT_S = 5.0
#: the config sections a push or campaign --config may hold; every other setting is the bundle's
PUSH_SECTIONS = ("push",)


class NothingToPushError(RecsysError):
    """A run found nobody to push anything to: it says why and writes nothing."""


class PushIOError(RecsysError):
    """The output or history folder cannot be written (a file in the way, permissions, a full disk)."""


@dataclasses.dataclass
class _Run:
    """What every run opens first: the bundle, its codes, and the push settings."""

    root: Path
    version: str
    taxonomy: Taxonomy
    config: EngineConfig
    push: PushConfig
    data_end: str = ""


def _open(
    model: str | Path,
    config_path: str | Path | None,
    workers: int | None = None,
    k: int | None = None,
    command: str = "push",
) -> _Run:
    root = bundle_io.resolve(model)
    manifest = bundle_io.read_manifest(root)
    tax_path = root / "taxonomy.toml"
    try:
        text = tax_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{tax_path}: the bundle's taxonomy is unreadable ({exc})") from None
    taxonomy = parse_taxonomy(text, origin=str(tax_path))
    config = config_from_dict(manifest.get("config", {}))
    if config_path:
        # push reads only [push] from a file: ranking, index and the models are the bundle's (set at train
        # time), so any other section would be ignored silently -- load_config refuses it instead
        own = load_config(config_path, command=command, sections=PUSH_SECTIONS)
        config = dataclasses.replace(config, push=own.push)
    push = config.push if workers is None else dataclasses.replace(config.push, workers=workers)
    if k is not None:
        push = dataclasses.replace(push, k={c: _check_k(k, config.ranking.max_k) for c in taxonomy.personal_channels})
    channel_rules(push, taxonomy)  # validates the whole [push] section before anything runs
    job = _Run(root, str(manifest.get("version", root.name)), taxonomy, config, push)
    job.data_end = str((manifest.get("data_window") or {}).get("end") or "")
    return job


def _check_k(k: Any, max_k: int) -> int:
    """``--k``: items per list (push) or per user (campaign), 1 .. the ranking's ``max_k``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= int(max_k):
        raise ConfigError(f"--k {k!r} is out of range; valid: 1..{int(max_k)} (items per user)")
    return int(k)


def _stale_warning(job: _Run, day: dt.date) -> str | None:
    """A warning when ``day`` is more than ``stale_days`` after the model's data end (a past day never warns)."""
    if not job.data_end:
        return None
    end = pd.Timestamp(job.data_end).tz_convert(job.taxonomy.timezone).date()
    limit = int(getattr(job.push, "stale_days", STALE_DAYS))
    gap = (day - end).days
    if gap <= limit:
        return None
    return (
        f"model {job.version} learned from data ending {end}; --date {day} is {gap} days later "
        f"(more than [push] stale_days = {limit}): its interests and popularity are stale, retrain it"
    )


def _preflight(
    job: Any, day: Any, catalog: Any, taxonomy: Any, users: Any, warn_stream: Any
) -> tuple[Any, list[str], dict[str, int]]:
    """The checks every run makes before its locks (stale model, rejected catalogue rows, the
    current users table), warnings printed; returns the current users, the warnings and the
    catalogue's rejected rows by reason."""
    warnings = [w for w in [_stale_warning(job, day)] if w]
    rejected = _check_catalog(catalog, taxonomy)
    if rejected:
        counts = ", ".join(f"{r} {n}" for r, n in rejected.items())
        warnings.append(f"--catalog {catalog}: {sum(rejected.values())} rows rejected and left out ({counts})")
    current = _current_users(users, taxonomy, warnings)
    _say(warn_stream, warnings, "warning")
    return current, warnings, rejected


def _check_catalog(catalog: str | Path | None, taxonomy: Taxonomy) -> dict[str, int]:
    """Read the ``--catalog`` once here: a one-line error when it is missing or nothing of it survives.

    Returns the rejected rows by reason (``{}`` for the bundle's items).
    """
    if catalog is None:
        return {}
    from recsys.ranking.catalog import check_catalog

    path = Path(catalog)
    if not path.is_file():
        raise SchemaError(f"--catalog {path}: no such file; give the current items table (.parquet or .csv)")
    items, rejected = check_catalog(path, taxonomy)
    if not len(items):
        counts = ", ".join(f"{k} {v}" for k, v in rejected.items()) or "the table is empty"
        hint = " (is it another city's catalogue? the bundle's taxonomy decides the codes)" if rejected else ""
        raise SchemaError(f"--catalog {path}: no usable item ({counts}){hint}; nothing could be pushed")
    return rejected


def _catalog_sha(catalog: str | Path | None) -> str:
    return "bundle items" if catalog is None else sha256_file(catalog)


@dataclasses.dataclass
class _Planned:
    """Who is in a run (nightly or campaign) and the history it reads and extends."""

    users: BundleUsers
    usable: np.ndarray
    plan: UserPlan
    store: H.HistoryStore
    users_info: dict[str, Any] = dataclasses.field(default_factory=dict)


def _plan(
    job: _Run, channels: list[str], segment: Segment, history: Path, current: pd.DataFrame | None
) -> _Planned:
    """Read the bundle's users (or the current users table), plan the segment, open the history (under the locks)."""
    push = job.push
    users = read_bundle_users(job.root, job.taxonomy, channels)
    users_info: dict[str, Any] = {}
    if current is not None:
        users, users_info = current_users(users, current, channels)
    usable = usable_channels(users.subscribed, channels, segment.channel)
    plan = plan_users(
        users.table,
        subscribed=usable,
        segment=segment,
        holdout_share=push.holdout_share,
        holdout_salt=push.holdout_salt,
        n_buckets=push.history_buckets,
    )
    store = H.HistoryStore.open(history, push.history_buckets)
    return _Planned(users, usable, plan, store, users_info)


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
    plan_skipped: dict[str, int] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """:func:`build_manifest` with the fields every run fills the same way from its job and plan."""
    plan, users = planned.plan, planned.users
    if planned.users_info:
        extra["users_table"] = planned.users_info
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
        plan_skipped=plan.skipped if plan_skipped is None else plan_skipped,
        segment_users=plan.segment_users,
        stats=stats,
        holdout=holdout_summary(users.table[plan.in_segment], plan.held[plan.in_segment]),
        **extra,
    )


def _folder(path: Path, flag: str) -> Path:
    """A folder a run writes into: refuse a file in the way or a folder it cannot write, in one line."""
    if path.exists() and not path.is_dir():
        raise PushIOError(f"{flag} {path} is a file, not a folder; give a folder (it is created if missing)")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise PushIOError(f"{flag} {path}: {probe} is a file, not a folder; give a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PushIOError(f"{flag} {path}: cannot write into {probe} (permission denied); choose a writable folder")
    return path


@contextlib.contextmanager
def _io_errors(out: Path) -> Iterator[None]:
    """Turn an operating-system error while writing (a full disk, a vanished folder) into one line."""
    try:
        yield
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        hint = "free some space and run again: finished chunks resume" if exc.errno == errno.ENOSPC else "fix it and run again"
        raise PushIOError(f"push into {out} failed: {exc.strerror or exc}{where}; {hint}") from None


@contextlib.contextmanager
def _locked(out: Path, history: Path, run: str, notes: list[str], keep: Path) -> Iterator[None]:
    """Hold the output folder's and the history's locks, then clean what killed runs left there.

    A run refused before it wrote anything (its workspace ``keep`` never
    made) removes the folders it created -- the lock files and an empty
    history -- so a refused run into a new ``--out`` leaves nothing behind.
    A run that started writing keeps its workspace: the next run resumes it.
    """
    fresh = [p for p in dict.fromkeys((out, history)) if not p.exists() and not p.is_symlink()]
    made = {p: _missing_parents(p) for p in fresh}
    held: list[Path] = []
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(L.hold(out, what="push output", run=run, notes=notes))
            held.append(out)
            stack.enter_context(L.hold(history, what="push history", run=run, notes=notes))
            held.append(history)
            notes.extend(clean_leftovers(out, history, work_dir=W.WORK_DIR, keep=keep))
            yield
        except BaseException:
            if not keep.exists():
                # under the locks: no other run can be using a folder we hold (others take the lock first)
                for folder in fresh:
                    if folder in held:
                        shutil.rmtree(folder, ignore_errors=True)
                        _remove_empty(made[folder])
            raise


def _missing_parents(path: Path) -> list[Path]:
    """The parents of ``path`` that do not exist yet, nearest first (a run creates them)."""
    return [p for p in path.parents if not p.exists()]


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a refused run created, nearest first, as long as each is empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (another run's files) or gone: leave it
            return


def _say(stream: TextIO | None, lines: Sequence[str], prefix: str) -> None:
    if stream is not None:
        for line in lines:
            print(f"{prefix}: {line}", file=stream)


def _nothing(what: str, plan: UserPlan, skipped: dict[str, int], extra: str = "") -> NothingToPushError:
    """The error of a run that reached nobody: every reason with its count, in one line."""
    counts = {**plan.skipped, **skipped}
    text = ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "no user in the segment"
    return NothingToPushError(
        f"{what}: nobody to push to ({plan.segment_users} users in the segment; {text}){extra}; nothing was written"
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
    kind: str | None = None,
    replace: bool = False,
    k: int | None = None,
    users: str | Path | None = None,
    config_path: str | Path | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    history: str | Path | None = None,
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
        The local day the pushes go out (``YYYY-MM-DD``, 1990-01-01 .. 2100-12-31).
    out : path
        Output folder (partitioned Parquet, manifest, history, work files).
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
        Push-history folder; default ``<out>/_history``.
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
    job = _open(model, config_path, workers, k)
    push, taxonomy = job.push, job.taxonomy
    channels = list(channel_rules(push, taxonomy))
    segment = Segment(group=group, region=region, channel=channel).check(taxonomy)
    if topic is not None:
        taxonomy.check("topic", topic)
    _check_timeout(connect_timeout)
    ident = I.identity({**dataclasses.asdict(segment), "topic": topic})
    if kind is None:
        kind = I.segment_kind(ident["segment"]) if I.is_targeted(ident["segment"]) else W.NIGHTLY
    H.validate_kind(kind)
    current, warnings, rejected = _preflight(job, day, catalog, taxonomy, users or push_users(push), warn_stream)
    out = _folder(Path(out), "--out")
    history_root = _folder(Path(history), "--history") if history else out / W.HISTORY_DIR
    notes: list[str] = []
    workspace = W.Workspace.for_run(out, day, kind)
    with _io_errors(out), _locked(out, history_root, f"{kind} {day}", notes, workspace.root):
        _say(stream, notes, "note")
        I.check_partition(out, day, kind, ident, replace=replace)
        planned = _plan(job, channels, segment, history_root, current)
        users_, usable, plan, store = planned.users, planned.usable, planned.plan, planned.store
        chunks = make_chunks(plan.scope, plan.buckets, push.history_buckets, push.chunk_size)
        fingerprint = {
            "format": PUSH_FORMAT,
            "model": str(job.root),
            "model_version": job.version,
            "catalog": str(catalog) if catalog else None,
            "catalog_sha256": _catalog_sha(catalog),
            "users_sha256": sha256_file(users or push_users(push)) if (users or push_users(push)) else None,
            "date": day.isoformat(),
            "segment": dataclasses.asdict(segment),
            "topic": topic,
            "push": {k_: v for k_, v in dataclasses.asdict(push).items() if k_ != "workers"},
            "users": hashlib.sha256(np.ascontiguousarray(plan.scope).tobytes()).hexdigest(),
            "chunks": [[c.bucket_lo, c.bucket_hi, len(c.users)] for c in chunks],
            "history": store.signature(day, kind, push.dedup_days),
        }
        run_id, resumed = workspace.start(fingerprint, W.new_run_id(day, kind))
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
            kind=kind,
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
            tasks = chunk_tasks(spec, todo, plan, users_, usable)
            execute(
                run_chunk,
                tasks,
                workers=push.workers,
                scheduler=scheduler,
                connect_timeout=connect_timeout,
                on_result=finished,
            )
        finally:
            if bar is not None:
                bar.close()
        timings["chunks"] = round(time.perf_counter() - t0, 3)
        stats = merge_stats(workspace.read_stats())
        if not stats["rows"]:
            shutil.rmtree(workspace.root, ignore_errors=True)
            kept = W.partition_dir(out, day, kind)
            extra = f"; the earlier lists in {kept} are left as they were" if kept.exists() else ""
            raise _nothing(f"push {day} {kind}", plan, stats.get("skipped", {}), extra)

        t0 = time.perf_counter()
        report = _manifest(
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
        )
        timings["commit"] = round(time.perf_counter() - t0, 3)
        timings["total"] = round(time.perf_counter() - started, 3)
        report["timings_s"] = timings
        report["users_per_s"] = round(len(plan.scope) / timings["total"], 1) if timings["total"] else 0.0
        workspace.commit(store, day, kind, out, report, holdout=plan.holdout)
    if stream is not None:
        print("\n" + summary_table(report), file=stream)
    return report


def push_users(push: PushConfig) -> str | None:
    """``[push] users``: the current users table named in the config, if any."""
    value = getattr(push, "users", "") or ""
    return str(value) or None


def _current_users(path: str | Path | None, taxonomy: Taxonomy, warnings: list[str]) -> pd.DataFrame | None:
    if path is None:
        return None
    table, rejected = read_current_users(path, taxonomy)
    if rejected:
        counts = ", ".join(f"{r} {n}" for r, n in rejected.items())
        warnings.append(f"--users {path}: {sum(rejected.values())} rows rejected, those users get nothing ({counts})")
    return table


def _check_timeout(seconds: Any) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < float(seconds) <= 600:
        raise ConfigError(f"--connect-timeout {seconds!r} is out of range; valid: > 0 and <= 600 seconds")
    return float(seconds)


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
    replace: bool = False,
    k: int | None = None,
    users: str | Path | None = None,
    catalog: str | Path | None = None,
    config_path: str | Path | None = None,
    history: str | Path | None = None,
    stream: TextIO | None = sys.stderr,
    warn_stream: TextIO | None = sys.stderr,
) -> dict[str, Any]:
    """Push a campaign's item(s) or topic to at most ``budget`` users; return its manifest.

    Parameters
    ----------
    model, date, out, catalog, users, config_path, history, stream, warn_stream
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
    from recsys.push.campaign import CampaignSpec, run_campaign

    started = time.perf_counter()
    day = parse_day(date)
    job = _open(model, config_path, command="campaign")
    push, taxonomy = job.push, job.taxonomy
    if k is not None:
        k = _check_k(k, job.config.ranking.max_k)
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
    current, warnings, rejected = _preflight(job, day, catalog, taxonomy, users or push_users(push), warn_stream)
    out = _folder(Path(out), "--out")
    history_root = _folder(Path(history), "--history") if history else out / W.HISTORY_DIR
    notes: list[str] = []
    workspace = W.Workspace.for_run(out, day, spec.name)
    with _io_errors(out), _locked(out, history_root, f"campaign {spec.name} {day}", notes, workspace.root):
        _say(stream, notes, "note")
        I.check_partition(out, day, spec.name, ident, replace=replace)
        planned = _plan(job, list(rules), segment, history_root, current)
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
            per_user=k,
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
    if stream is not None:
        print(campaign_line(report), file=stream)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run as a script: ``python -m pipelines.push --model models/latest --date YYYY-MM-DD``."""
    from recsys.cli import main as cli_main

    return cli_main(["push", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
