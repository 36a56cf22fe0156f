"""What every push run (nightly lists, campaigns) does the same way around its own work.

Open the bundle and the ``[push]`` settings (:func:`open_job`), make the
checks before any lock (:func:`preflight`: a stale model, rejected catalogue
rows, the current users table), hold the output and history locks and tidy
what killed runs left (:func:`locked`), plan who is in the run
(:func:`plan_run`), and build the manifest (:func:`run_manifest`). The jobs
themselves are :func:`recsys.push.nightly.run_nightly` and
:func:`recsys.push.campaign_job.run_campaign`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence, TextIO

import numpy as np
import pandas as pd

from recsys import bundle as bundle_io
from recsys.config import EngineConfig, PushConfig, config_from_dict, is_int, is_number, load_config
from recsys.exceptions import ConfigError, RecsysError, SchemaError
from recsys.io import missing_folders, remove_empty_folders, sha256_file
from recsys.training.serving import read_bundle_taxonomy
from recsys.push import history as H
from recsys.push import lock as L
from recsys.push import writer as W
from recsys.push.channels import channel_rules
from recsys.push.holdout import holdout_summary
from recsys.push.housekeeping import clean_leftovers
from recsys.push.plan import BundleUsers, Segment, UserPlan, plan_users, read_bundle_users, usable_channels
from recsys.push.report import build_manifest
from recsys.push.users import current_users, read_current_users
from recsys.ranking.catalog import check_catalog
from recsys.taxonomy import Taxonomy

if TYPE_CHECKING:  # heavy: tqdm loads only when a progress bar is drawn
    from tqdm import tqdm

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
class Job:
    """What every run opens first: the bundle, its codes, and the push settings."""

    root: Path
    version: str
    taxonomy: Taxonomy
    config: EngineConfig
    push: PushConfig
    data_end: str = ""


def open_job(
    model: str | Path,
    config_path: str | Path | None,
    workers: int | None = None,
    k: int | None = None,
    command: str = "push",
) -> Job:
    root = bundle_io.resolve(model)
    # every file's sha256, once for the whole run: the workers then open the bundle unchecked
    manifest = bundle_io.verify_bundle(root)
    taxonomy = read_bundle_taxonomy(root)
    config = config_from_dict(manifest.get("config", {}))
    if config_path:
        # push reads only [push] from a file: ranking, index and the models are the bundle's (set at train
        # time), so any other section would be ignored silently -- load_config refuses it instead
        own = load_config(config_path, command=command, sections=PUSH_SECTIONS)
        config = dataclasses.replace(config, push=own.push)
    push = config.push if workers is None else dataclasses.replace(config.push, workers=workers)
    if k is not None:
        push = dataclasses.replace(push, k={c: check_k(k, config.ranking.max_k) for c in taxonomy.personal_channels})
    channel_rules(push, taxonomy)  # validates the whole [push] section before anything runs
    job = Job(root, str(manifest.get("version", root.name)), taxonomy, config, push)
    job.data_end = str((manifest.get("data_window") or {}).get("end") or "")
    return job


def check_k(k: Any, max_k: int) -> int:
    """``--k``: items per list (push) or per user (campaign), 1 .. the ranking's ``max_k``."""
    if not is_int(k) or not 1 <= int(k) <= int(max_k):
        raise ConfigError(f"--k {k!r} is out of range; valid: 1..{int(max_k)} (items per user)")
    return int(k)


def stale_warning(job: Job, day: dt.date) -> str | None:
    """A warning when ``day`` is more than ``stale_days`` after the model's data end (a past day never warns)."""
    limit = int(getattr(job.push, "stale_days", STALE_DAYS))
    return model_age_warning(job.version, job.data_end, job.taxonomy, day, limit)


def model_age_warning(version: str, data_end: str, taxonomy: Taxonomy, day: dt.date, limit: int) -> str | None:
    """The stale-model rule of every dated job (push, campaign, broadcast): None while ``day`` is at most
    ``limit`` days after the model's data end (ISO text; empty = unknown, no warning), else the warning."""
    if not data_end:
        return None
    end = pd.Timestamp(data_end).tz_convert(taxonomy.timezone).date()
    gap = (day - end).days
    if gap <= limit:
        return None
    return (
        f"model {version} learned from data ending {end}; --date {day} is {gap} days later "
        f"(more than [push] stale_days = {limit}): its interests and popularity are stale, retrain it"
    )


def preflight(
    job: Job,
    day: dt.date,
    catalog: str | Path | None,
    taxonomy: Taxonomy,
    users: str | Path | None,
    warn_stream: TextIO | None,
) -> tuple[pd.DataFrame | None, list[str], dict[str, int]]:
    """The checks every run makes before its locks (stale model, rejected catalogue rows, the
    current users table), warnings printed; returns the current users, the warnings and the
    catalogue's rejected rows by reason."""
    warnings = [w for w in [stale_warning(job, day)] if w]
    rejected = check_catalog_file(catalog, taxonomy)
    if rejected:
        counts = ", ".join(f"{r} {n}" for r, n in rejected.items())
        warnings.append(f"--catalog {catalog}: {sum(rejected.values())} rows rejected and left out ({counts})")
    current = current_users_table(users, taxonomy, warnings)
    say(warn_stream, warnings, "warning")
    return current, warnings, rejected


def check_catalog_file(catalog: str | Path | None, taxonomy: Taxonomy) -> dict[str, int]:
    """Read the ``--catalog`` once here: a one-line error when it is missing or nothing of it survives.

    Returns the rejected rows by reason (``{}`` for the bundle's items).
    """
    if catalog is None:
        return {}
    path = Path(catalog)
    if not path.is_file():
        raise SchemaError(f"--catalog {path}: no such file; give the current items table (.parquet or .csv)")
    items, rejected = check_catalog(path, taxonomy)
    if not len(items):
        counts = ", ".join(f"{k} {v}" for k, v in rejected.items()) or "the table is empty"
        hint = " (is it another city's catalogue? the bundle's taxonomy decides the codes)" if rejected else ""
        raise SchemaError(f"--catalog {path}: no usable item ({counts}){hint}; nothing could be pushed")
    return rejected


def catalog_sha(catalog: str | Path | None) -> str:
    return "bundle items" if catalog is None else sha256_file(catalog)


@dataclasses.dataclass
class Planned:
    """Who is in a run (nightly or campaign) and the history it reads and extends."""

    users: BundleUsers
    usable: np.ndarray
    plan: UserPlan
    store: H.HistoryStore
    users_info: dict[str, Any] = dataclasses.field(default_factory=dict)


def plan_run(
    job: Job, channels: list[str], segment: Segment, history: Path, current: pd.DataFrame | None
) -> Planned:
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
    return Planned(users, usable, plan, store, users_info)


def run_manifest(
    job: Job,
    planned: Planned,
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
        holdout=_segment_holdout(users.table, plan),
        **extra,
    )


def _segment_holdout(table: pd.DataFrame, plan: UserPlan) -> dict[str, Any]:
    """The manifest's holdout summary of the run's segment (a city-wide run: the whole table, not a copy)."""
    inside = plan.in_segment
    if inside.all():
        return holdout_summary(table, plan.held)
    return holdout_summary(table[inside], plan.held[inside])


def output_folder(path: Path, flag: str) -> Path:
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
def io_errors(out: Path) -> Iterator[None]:
    """Turn an operating-system error while writing (a full disk, a vanished folder) into one line."""
    try:
        yield
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        hint = "free some space and run again: finished chunks resume" if exc.errno == errno.ENOSPC else "fix it and run again"
        raise PushIOError(f"push into {out} failed: {exc.strerror or exc}{where}; {hint}") from None


@contextlib.contextmanager
def locked(out: Path, history: Path, run: str, notes: list[str], keep: Path) -> Iterator[None]:
    """Hold the output folder's and the history's locks, then clean what killed runs left there.

    A run refused before it wrote anything (its workspace ``keep`` never
    made) removes the folders it created -- the lock files and an empty
    history -- so a refused run into a new ``--out`` leaves nothing behind.
    A run that started writing keeps its workspace: the next run resumes it.
    """
    fresh = [p for p in dict.fromkeys((out, history)) if not p.exists() and not p.is_symlink()]
    made = {p: missing_folders(p.parent) for p in fresh}
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
                        remove_empty_folders(made[folder])
            raise


def say(stream: TextIO | None, lines: Sequence[str], prefix: str) -> None:
    if stream is not None:
        for line in lines:
            print(f"{prefix}: {line}", file=stream)


def nothing_error(what: str, plan: UserPlan, skipped: dict[str, int], extra: str = "") -> NothingToPushError:
    """The error of a run that reached nobody: every reason with its count, in one line."""
    counts = {**plan.skipped, **skipped}
    text = ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "no user in the segment"
    return NothingToPushError(
        f"{what}: nobody to push to ({plan.segment_users} users in the segment; {text}){extra}; nothing was written"
    )


def progress_bar(stream: TextIO | None, *, total: int, initial: int) -> tqdm | None:
    if stream is None:
        return None
    from tqdm import tqdm  # heavy: ~50 ms to import, only for a run that draws a bar

    return tqdm(total=total, initial=initial, unit="user", unit_scale=True, file=stream, desc="push", smoothing=0.1)


def push_users(push: PushConfig) -> str | None:
    """``[push] users``: the current users table named in the config, if any."""
    value = getattr(push, "users", "") or ""
    return str(value) or None


def current_users_table(path: str | Path | None, taxonomy: Taxonomy, warnings: list[str]) -> pd.DataFrame | None:
    if path is None:
        return None
    table, rejected = read_current_users(path, taxonomy)
    if rejected:
        counts = ", ".join(f"{r} {n}" for r, n in rejected.items())
        warnings.append(f"--users {path}: {sum(rejected.values())} rows rejected, those users get nothing ({counts})")
    return table


def check_timeout(seconds: Any) -> float:
    if not is_number(seconds) or not 0 < float(seconds) <= 600:
        raise ConfigError(f"--connect-timeout {seconds!r} is out of range; valid: > 0 and <= 600 seconds")
    return float(seconds)
