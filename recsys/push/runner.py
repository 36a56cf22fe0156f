"""The chunk function and where it runs: in this process, local worker processes, or Dask.

:func:`run_chunk` computes one chunk of users from a :class:`ChunkTask` and
writes its rows, history and checkpoint into the run's workspace. Its output
depends on its argument and the files it names only: no module state is
read or written, apart from a per-process cache of the opened (read-only,
memory-mapped) model, so the same function runs unchanged in a local process
pool or on a Dask cluster whose workers see the same file system.

Per chunk: read the chunk's own history buckets (caps, de-duplication) ->
choose each user's channel -> rank each channel's users with the
Recommender at ``k`` = the room the caps leave (eligibility at the start of
the channel's send window, formats the channel carries, recently pushed
items and items that expire before the window closes excluded; the
ranking's own diversity rule) -> write.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import psutil

from recsys import columns as C
from recsys.config import PushConfig
from recsys.exceptions import ConfigError, RecsysError
from recsys.push import history as H
from recsys.push import writer as W
from recsys.push.channels import channel_rules, choose_channels
from recsys.push.lists import ItemTopics, fetch_lists, object_index, with_object_ids

SKIP_CAPPED = "caps_reached"
SKIP_NO_ITEMS = "no_eligible_items"


@dataclass(frozen=True)
class RunSpec:
    """What every chunk of one run shares (plain values, cheap to ship to a worker).

    Attributes
    ----------
    bundle : str
        Model bundle folder.
    catalog : str or None
        Current catalogue file; ``None`` = the bundle's items.
    catalog_sha256 : str
        Its checksum: a worker reopens the catalogue when the file changed.
    workspace : str
        The run's work folder (:class:`recsys.push.writer.Workspace`).
    history : str
        The push-history folder.
    day : str
        Local date of the pushes, ISO.
    kind : str
        ``nightly`` (campaigns do not use chunks).
    topic : str or None
        Items restricted to this topic.
    push : dict
        The ``[push]`` config as a dict.
    run_id, model_version : str
    timezone : str
        The city's time zone (send windows are local times).
    threads : int
        Threads a worker may use for the ranking (1 when several workers share the cores).
    """

    bundle: str
    catalog: str | None
    catalog_sha256: str
    workspace: str
    history: str
    day: str
    kind: str
    topic: str | None
    push: dict[str, Any]
    run_id: str
    model_version: str
    timezone: str
    threads: int = 1


@dataclass(frozen=True)
class ChunkTask:
    """One chunk of users and what the chunk function needs to know about them.

    Attributes
    ----------
    spec : RunSpec
    chunk : int
    bucket_lo, bucket_hi : int
        The history buckets the chunk owns, ``[lo, hi)``.
    user_ids, groups, regions : ndarray of str (n,)
    buckets : ndarray, int32 (n,)
    subscribed : ndarray, bool (n, P)
        Usable personal channels (subscribed; the forced channel only, if any),
        columns in channel priority order.
    engagement : ndarray, float32 (n, P)
        Positive engagements per channel, same columns.
    sub_groups : ndarray of str or None (n,)
        Set when the run reads a current users table: the ranking is then
        given every user's current group, sub-group and region (new users
        are ranked as cold users of theirs).
    """

    spec: RunSpec
    chunk: int
    bucket_lo: int
    bucket_hi: int
    user_ids: np.ndarray
    groups: np.ndarray
    regions: np.ndarray
    buckets: np.ndarray
    subscribed: np.ndarray
    engagement: np.ndarray = field(repr=False)
    sub_groups: np.ndarray | None = None

    @property
    def n_users(self) -> int:
        """Users in the chunk."""
        return len(self.user_ids)


@functools.lru_cache(maxsize=2)
def _served(bundle: str, catalog: str | None, catalog_sha256: str, threads: int) -> tuple[Any, ItemTopics]:
    """Open the Recommender once per process (read-only; the cache only saves reloading).

    Bundle versions never change in place; the catalogue file may, hence its
    checksum in the key.
    """
    from threadpoolctl import threadpool_limits

    from recsys.ranking import Recommender

    threadpool_limits(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:  # pragma: no cover - faiss is a dependency
        pass
    recommender = Recommender.load(bundle, catalog=catalog)
    return recommender, ItemTopics.build(item_topics(recommender))


def item_topics(recommender: Any) -> pd.Series:
    """item_id -> list of topic codes, from the Recommender's current catalogue."""
    state = recommender.state
    items = state.catalog_items if state.catalog_items is not None else state.model.items
    return pd.Series(list(items[C.TOPICS]), index=object_index(items[C.ITEM_ID].astype(str)))


def run_chunk(task: ChunkTask) -> dict[str, Any]:
    """Compute one chunk and write it into the run's workspace; return its stats.

    The function a worker process or a Dask worker runs. See
    :func:`compute_chunk` for what it computes.
    """
    spec = task.spec
    recommender, topics = _served(spec.bundle, spec.catalog, spec.catalog_sha256, spec.threads)
    rows, stats = compute_chunk(recommender, topics, task)
    W.Workspace(Path(spec.workspace)).write_chunk(
        task.chunk,
        rows,
        W.output_schema(spec.timezone),
        range(task.bucket_lo, task.bucket_hi),
        pd.Series(task.buckets, index=task.user_ids).reindex(rows[C.USER_ID]).to_numpy(),
        stats,
    )
    return stats


def compute_chunk(recommender: Any, topics: ItemTopics, task: ChunkTask) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Tonight's lists for one chunk of users.

    Parameters
    ----------
    recommender : recsys.ranking.Recommender
    topics : ItemTopics
        The current catalogue's topics.
    task : ChunkTask

    Returns
    -------
    rows : DataFrame
        :data:`recsys.push.writer.OUTPUT_COLUMNS`, users in chunk order, then
        channel priority, then rank.
    stats : dict
        Counts for the manifest (JSON-ready).
    """
    start = time.perf_counter()
    spec = task.spec
    cfg = PushConfig(**spec.push)
    rules = list(channel_rules(cfg, recommender.state.taxonomy).values())
    channels = [r.channel for r in rules]
    day = dt.date.fromisoformat(spec.day)
    ids = object_index(task.user_ids)
    store = H.HistoryStore(Path(spec.history), cfg.history_buckets)
    buckets = range(task.bucket_lo, task.bucket_hi)
    history = H.read_window(store, buckets, day, cfg.dedup_days, skip=(day, spec.kind))
    daily, weekly = H.cap_usage(history, ids, day, channels)
    room = H.remaining(daily, weekly, rules)
    chosen = choose_channels(task.subscribed, task.engagement, room > 0, cfg.channels_per_user)
    blocked = H.dedup_pairs(history)
    topic_filter = [spec.topic] if spec.topic else None
    attributes = None
    if task.sub_groups is not None:
        attributes = pd.DataFrame(
            {C.GROUP: task.groups, C.SUB_GROUP: task.sub_groups, C.REGION: task.regions}, index=ids
        ).rename_axis(C.USER_ID)

    frames = []
    for p, rule in enumerate(rules):
        who = np.flatnonzero((chosen == p).any(axis=1))
        if who.size == 0:
            continue
        limit = pd.Series(np.minimum(rule.k, room[who, p]), index=ids[who])
        send_after, send_before = rule.window(day, spec.timezone)

        def recommend(
            users: list[str],
            k: int,
            exclude: dict[str, list[str]],
            _c: str = rule.channel,
            _now: pd.Timestamp = send_after,
        ) -> pd.DataFrame:
            who_attrs = None if attributes is None else attributes.loc[users].reset_index()
            return recommender.recommend_many(
                users, k=k, channel=_c, topics=topic_filter, now=_now, users=who_attrs, exclude=exclude
            )

        lists = fetch_lists(
            recommend,
            ids[who],
            limit,
            blocked=blocked[blocked[C.USER_ID].isin(ids[who])],
            drop_items=expiring_items(recommender, send_after, send_before),
        )
        lists = lists.assign(**{C.CHANNEL: rule.channel, W.SEND_AFTER: send_after, W.SEND_BEFORE: send_before})
        frames.append(lists.assign(_channel_pos=p))
        if cfg.channels_per_user > 1:
            # a user with lists on several channels never gets one item twice tonight
            blocked = pd.concat([blocked, lists[[C.USER_ID, C.ITEM_ID]]], ignore_index=True)
    rows = _rows(frames, ids, spec)
    stats = chunk_stats(task, rows, chosen, topics, time.perf_counter() - start)
    return rows.drop(columns="_channel_pos"), stats


def expiring_items(recommender: Any, start: pd.Timestamp, end: pd.Timestamp) -> np.ndarray:
    """Available items live when a send window opens that expire before it closes.

    The Recommender judges eligibility at one instant (the window's start);
    an item that expires before ``end`` could be delivered after its expiry,
    so the push leaves it out of that window's lists.
    """
    catalog = recommender.state.catalog
    expires = catalog.expires_ns
    mask = catalog.available & (expires > pd.Timestamp(start).value) & (expires < pd.Timestamp(end).value)
    return catalog.item_ids[mask]


def _rows(frames: list[pd.DataFrame], ids: pd.Index, spec: RunSpec) -> pd.DataFrame:
    if frames:
        rows = pd.concat(frames, ignore_index=True)
    else:
        rows = pd.DataFrame({c: pd.Series(dtype=object) for c in (*W.OUTPUT_COLUMNS, "_channel_pos")})
    rows[W.CAMPAIGN] = ""
    rows[W.MODEL_VERSION] = spec.model_version
    rows[W.RUN_ID] = spec.run_id
    rows["_user_pos"] = ids.get_indexer(rows[C.USER_ID])
    rows = rows.sort_values(["_user_pos", "_channel_pos", C.RANK], kind="stable")
    return rows[[*W.OUTPUT_COLUMNS, "_channel_pos"]].reset_index(drop=True)


def chunk_stats(
    task: ChunkTask, rows: pd.DataFrame, chosen: np.ndarray, topics: ItemTopics, seconds: float
) -> dict[str, Any]:
    """Counts of one chunk for the run manifest."""
    ids = object_index(task.user_ids)
    has_channel = (chosen >= 0).any(axis=1)
    pushed = ids.isin(rows[C.USER_ID])
    return {
        "chunk": int(task.chunk),
        "users": int(task.n_users),
        **row_counts(ids, task.groups, task.regions, rows, topics),
        "skipped": {SKIP_CAPPED: int((~has_channel).sum()), SKIP_NO_ITEMS: int((has_channel & ~pushed).sum())},
        "seconds": round(seconds, 3),
    }


def row_counts(
    ids: pd.Index, groups: np.ndarray, regions: np.ndarray, rows: pd.DataFrame, topics: ItemTopics
) -> dict[str, Any]:
    """Users reached and rows per group, region, channel and topic.

    Parameters
    ----------
    ids : Index of str
        The users (``groups`` / ``regions`` aligned with it); every row's user is among them.
    rows : DataFrame
        ``user_id, channel, item_id`` rows.
    topics : ItemTopics
        The catalogue's topics (an item counts once under each of its topics).

    Returns
    -------
    dict
        ``pushed_users``, ``rows``, ``by_group``, ``by_region``, ``by_channel``
        (each ``{code: {"users": n, "rows": n}}``) and ``by_topic`` (``{code: rows}``).
    """
    rows = with_object_ids(rows)
    row_users = ids.get_indexer(rows[C.USER_ID])
    pushed_users = np.unique(row_users)

    def by(labels: np.ndarray, users: np.ndarray, row_labels: np.ndarray) -> dict[str, dict[str, int]]:
        user_counts = pd.Series(labels[users], dtype=object).value_counts()
        row_count = pd.Series(row_labels, dtype=object).value_counts()
        return {
            str(k): {"users": int(user_counts[k]), "rows": int(row_count.get(k, 0))} for k in sorted(user_counts.index)
        }

    groups, regions = np.asarray(groups, dtype=object), np.asarray(regions, dtype=object)
    channel = rows[C.CHANNEL].to_numpy(dtype=object)
    first_of_user_channel = ~pd.DataFrame({"u": row_users, "c": channel}).duplicated().to_numpy()
    entry_rows, codes = topics.entries(rows[C.ITEM_ID].to_numpy())
    per_topic = np.bincount(codes, minlength=len(topics.names))
    return {
        "pushed_users": int(len(pushed_users)),
        "rows": int(len(rows)),
        "by_group": by(groups, pushed_users, groups[row_users]),
        "by_region": by(regions, pushed_users, regions[row_users]),
        "by_channel": {
            str(k): {"users": int(first_of_user_channel[channel == k].sum()), "rows": int((channel == k).sum())}
            for k in sorted(set(channel.tolist()))
        },
        "by_topic": {topics.names[t]: int(n) for t, n in enumerate(per_topic) if n},
    }


def merge_stats(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Add up chunk stats (counts summed key by key; seconds summed as CPU time)."""
    total: dict[str, Any] = {"chunks": 0, "users": 0, "pushed_users": 0, "rows": 0, "seconds": 0.0}
    nested: dict[str, Counter] = {}
    for part in parts:
        total["chunks"] += 1
        for key in ("users", "pushed_users", "rows"):
            total[key] += int(part.get(key, 0))
        total["seconds"] += float(part.get("seconds", 0.0))
        for key in ("by_group", "by_region", "by_channel"):
            for label, counts in part.get(key, {}).items():
                for metric, value in counts.items():
                    nested.setdefault(f"{key}.{metric}", Counter())[label] += int(value)
        for key in ("skipped", "by_topic"):
            for label, value in part.get(key, {}).items():
                nested.setdefault(key, Counter())[label] += int(value)
    for key in ("by_group", "by_region", "by_channel"):
        labels = sorted(set(nested.get(f"{key}.users", {})) | set(nested.get(f"{key}.rows", {})))
        total[key] = {
            label: {"users": int(nested[f"{key}.users"][label]), "rows": int(nested[f"{key}.rows"][label])}
            for label in labels
        }
    total["skipped"] = {k: int(v) for k, v in sorted(nested.get("skipped", Counter()).items())}
    total["by_topic"] = {k: int(v) for k, v in sorted(nested.get("by_topic", Counter()).items())}
    total["seconds"] = round(total["seconds"], 3)
    return total


# ---- executors ---------------------------------------------------------------


def execute(
    fn: Callable[[ChunkTask], dict[str, Any]],
    tasks: Iterable[ChunkTask],
    *,
    workers: int = 1,
    scheduler: str | None = None,
    connect_timeout: float = 5.0,
    on_result: Callable[[ChunkTask, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``fn`` over ``tasks``: here, in local worker processes, or on a Dask cluster.

    Tasks are taken from the iterable only as workers free up (at most two
    per worker in flight), so the driver never holds every chunk's users at once.

    Parameters
    ----------
    fn : callable
        The chunk function (must be importable by name in a worker).
    tasks : iterable of ChunkTask
    workers : int
        Local worker processes; 1 runs the chunks in this process.
    scheduler : str, optional
        A ``dask.distributed`` scheduler address (``tcp://host:8786``); its
        workers must see the bundle and the output folder at the same paths.
    connect_timeout : float
        Seconds to wait for the scheduler before giving up.
    on_result : callable, optional
        Called in this process with (task, stats) as each chunk finishes.

    Returns
    -------
    list of dict
        The stats, in completion order.

    Raises
    ------
    ConfigError
        If ``workers`` is not a positive integer.
    SchedulerError
        If the Dask scheduler cannot be reached within ``connect_timeout``.
    Exception
        The first error a chunk raised (finished chunks keep their checkpoints).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    done: list[dict[str, Any]] = []

    def finish(task: ChunkTask, stats: dict[str, Any]) -> None:
        done.append(stats)
        if on_result is not None:
            on_result(task, stats)

    queue = iter(tasks)
    if scheduler is not None:
        _on_dask(fn, queue, scheduler, finish, connect_timeout)
    elif workers == 1:
        for task in queue:
            finish(task, fn(task))
    else:
        _on_processes(fn, queue, workers, finish)
    return done


def _on_processes(fn: Callable, queue: Iterator[ChunkTask], workers: int, finish: Callable) -> None:
    import concurrent.futures as cf
    import multiprocessing

    # forkserver: workers fork from a clean server process, never from a parent
    # whose OpenMP (faiss) threads are already running
    context = multiprocessing.get_context("forkserver")
    driver = psutil.Process()
    with cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=watch_driver,
        initargs=(driver.pid, driver.create_time()),
    ) as pool:
        running: dict[cf.Future, ChunkTask] = {}
        try:
            for task in itertools.islice(queue, 2 * workers):
                running[pool.submit(fn, task)] = task
            while running:
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    task = running.pop(future)
                    finish(task, future.result())
                    for nxt in itertools.islice(queue, 1):
                        running[pool.submit(fn, nxt)] = nxt
        except cf.process.BrokenProcessPool:
            for future in running:
                future.cancel()
            raise WorkerLostError(
                "a push worker process died (killed, or out of memory?); the finished chunks are kept: "
                "run the same command again to resume, with fewer --workers or a smaller [push] chunk_size "
                "if memory is short"
            ) from None
        except BaseException:
            for future in running:
                future.cancel()
            raise


#: how often a worker process checks that its driver still runs
WATCH_INTERVAL_S = 0.5


def watch_driver(pid: int, create_time: float, interval: float = WATCH_INTERVAL_S) -> None:
    """Worker initializer: kill this worker as soon as the driver process is gone.

    A killed driver (SIGKILL, OOM killer) runs no cleanup, and its worker
    processes would go on computing and writing checkpoints for a run that
    no longer exists. Each worker watches the driver from a daemon thread
    (pid and start time, so a reused pid is not mistaken for it) and ends
    itself within ``interval`` seconds of the driver's death; the forkserver
    and resource-tracker helpers exit by themselves once their last client
    is gone.
    """
    import threading

    def alive() -> bool:
        try:
            driver = psutil.Process(pid)
            # a dead driver stays a zombie until its parent reaps it: that is dead too
            return abs(driver.create_time() - create_time) < 1e-3 and driver.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def watch() -> None:
        while alive():
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="push-driver-watch", daemon=True).start()


class WorkerLostError(RecsysError):
    """A local worker process died mid-run (killed, out of memory)."""


class SchedulerError(RecsysError):
    """The Dask scheduler cannot be reached."""


def _connect(scheduler: str, timeout: float) -> Any:
    """A Dask client of ``scheduler``, or a one-line error within ``timeout`` seconds."""
    from dask.distributed import Client

    try:
        return Client(scheduler, timeout=f"{float(timeout)}s")
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SchedulerError(
            f"cannot reach Dask scheduler {scheduler} within {float(timeout):g}s ({detail}); "
            f"check the address (tcp://HOST:8786) and that the scheduler runs, or raise --connect-timeout"
        ) from None


def _on_dask(fn: Callable, queue: Iterator[ChunkTask], scheduler: str, finish: Callable, timeout: float) -> None:
    from dask.distributed import as_completed

    with _connect(scheduler, timeout) as client:
        slots = 2 * max(1, sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()))
        running: dict[str, tuple[Any, ChunkTask]] = {}

        def submit(task: ChunkTask) -> Any:
            future = client.submit(fn, task, key=f"push-{task.spec.run_id}-chunk-{task.chunk:05d}", pure=False)
            running[future.key] = (future, task)
            return future

        pending = as_completed([submit(t) for t in itertools.islice(queue, slots)])
        try:
            for future in pending:
                _, task = running.pop(future.key)
                finish(task, future.result())
                for nxt in itertools.islice(queue, 1):
                    pending.add(submit(nxt))
        except BaseException:
            client.cancel([f for f, _ in running.values()])
            raise


def chunk_tasks(spec: RunSpec, chunks: Iterable[Any], plan: Any, users: Any, usable: np.ndarray) -> Iterator[ChunkTask]:
    """The tasks of ``chunks``, built one at a time (only the chunks in flight hold their users).

    Parameters
    ----------
    spec : RunSpec
    chunks : iterable of recsys.push.plan.Chunk
    plan : recsys.push.plan.UserPlan
    users : recsys.push.plan.BundleUsers
    usable : ndarray, bool (n_users, P)
        The channels each user may get tonight.
    """
    table = users.table
    for c in chunks:
        yield ChunkTask(
            spec=spec,
            chunk=c.index,
            bucket_lo=c.bucket_lo,
            bucket_hi=c.bucket_hi,
            user_ids=table[C.USER_ID].iloc[c.users].to_numpy(dtype=object),
            groups=table[C.GROUP].iloc[c.users].to_numpy(dtype=object),
            regions=table[C.REGION].iloc[c.users].to_numpy(dtype=object),
            buckets=plan.buckets[c.offset : c.offset + len(c.users)],
            subscribed=usable[c.users],
            engagement=users.engagement[c.users],
            sub_groups=table[C.SUB_GROUP].iloc[c.users].to_numpy(dtype=object) if users.attributes else None,
        )
