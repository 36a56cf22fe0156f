"""The chunk function: one chunk of users in, its rows, history and checkpoint out.

:func:`run_chunk` computes one chunk of users from a :class:`ChunkTask` and
writes its rows, history and checkpoint into the run's workspace. Its output
depends on its argument and the files it names only: no module state is
read or written, apart from a per-process cache of the opened (read-only,
memory-mapped) model, so the same function runs unchanged in a local process
pool or on a Dask cluster whose workers see the same file system
(:mod:`recsys.push.executors`).

Per chunk: read the chunk's own history buckets (caps, de-duplication) ->
choose each user's channel -> rank each channel's users with the
Recommender at ``k`` = the room the caps leave (eligibility at the start of
the channel's send window, formats the channel carries, recently pushed
items and items that expire before the window closes excluded; the
ranking's own diversity rule) -> write.

:data:`PUSH_FORMAT` versions what a chunk computes: a resumed run never mixes
chunks of two versions.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from recsys import columns as C
from recsys.config import PushConfig
from recsys.push import coverage as CV
from recsys.push import history as H
from recsys.push import priorities as PR
from recsys.push import writer as W
from recsys.push.channels import channel_rules, choose_channels
from recsys.push.lists import ItemTopics, fetch_lists, object_index, row_positions
from recsys.push.plan import BundleUsers, Chunk, UserPlan
from recsys.push.stats import chunk_stats
from recsys.ranking import Recommender
from recsys.training.serving import TrainedModel

#: bump when a chunk's output changes for the same inputs (a resume must not mix versions)
PUSH_FORMAT = 2


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
    #: (group, region) cells a broadcast place reaches, for the coverage rules' broadcast credit
    broadcast_cells: tuple[tuple[str, str], ...] = ()
    #: items on review hold when the run started (recsys.holds): never pushed, as if retracted
    held: tuple[str, ...] = ()
    #: the run's priorities file as a document (recsys.push.priorities); None = lists as ranked
    priorities: dict[str, Any] | None = None


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
    #: every user's sub-group when a coverage rule names sub-groups (the ranking does not read it)
    coverage_sub_groups: np.ndarray | None = None

    @property
    def n_users(self) -> int:
        """Users in the chunk."""
        return len(self.user_ids)


@functools.lru_cache(maxsize=2)
def _served(bundle: str, catalog: str | None, catalog_sha256: str, threads: int) -> tuple[Recommender, ItemTopics]:
    """Open the Recommender once per process (read-only; the cache only saves reloading).

    Bundle versions never change in place; the catalogue file may, hence its
    checksum in the key.
    """
    threadpool_limits(threads)
    try:
        import faiss  # heavy: faiss loads in the process that serves, not with recsys.push

        faiss.omp_set_num_threads(threads)
    except ImportError:  # pragma: no cover - faiss is a dependency
        pass
    # the run's driver checked every file's sha256 once (recsys.push.job.open_job): a worker that
    # hashed the whole bundle again would pay seconds per start at a city's size
    model = TrainedModel.load(bundle, verify=False)
    # a worker of a parallel push has one core (threads 1): recommend_many's own thread pool there
    # only adds switching (two such workers: ~10% more CPU per user with 2 ranking threads each)
    ranking = model.config.ranking
    if ranking.threads > threads:
        ranking = replace(ranking, threads=threads)
    recommender = Recommender.from_model(model, catalog=catalog, config=ranking)
    return recommender, ItemTopics.build(item_topics(recommender))


def item_topics(recommender: Recommender) -> pd.Series:
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


def compute_chunk(recommender: Recommender, topics: ItemTopics, task: ChunkTask) -> tuple[pd.DataFrame, dict[str, Any]]:
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
    calls = {}  # per channel, the ranking call and expiry exclusions its lists came from (for coverage)
    taxonomy = recommender.state.taxonomy
    priorities = PR.parse_priorities(spec.priorities, taxonomy, "priorities") if spec.priorities else None
    served = recommender
    for p, rule in enumerate(rules):
        who = np.flatnonzero((chosen == p).any(axis=1))
        if who.size == 0:
            continue
        limit = pd.Series(np.minimum(rule.k, room[who, p]), index=ids[who])
        send_after, send_before = rule.window(day, spec.timezone)
        if priorities is not None:
            # the priorities in force when the send window opens raise their topics (feature "priority")
            served = recommender.with_topic_boost(priorities.boost_table(taxonomy, pd.Timestamp(send_after)))

        def recommend(
            users: list[str],
            k: int,
            exclude: dict[str, list[str]],
            _c: str = rule.channel,
            _now: pd.Timestamp = send_after,
            _topics: list[str] | None = topic_filter,
            _served: Recommender = served,
        ) -> pd.DataFrame:
            who_attrs = None if attributes is None else attributes.loc[users].reset_index()
            # reasons as an Arrow column: no Python list per row on the way to the Parquet files (the
            # coverage rules swap reasons row by row, in Python lists: they keep lists, the files are the same)
            return _served.recommend_many(
                users, k=k, channel=_c, topics=_topics, now=_now, users=who_attrs, exclude=exclude,
                arrow_reasons=not cfg.coverage,
            )

        # held items leave every list like items expiring in the window (and the coverage top-ups)
        drop = expiring_items(recommender, send_after, send_before)
        calls[rule.channel] = (recommend, np.union1d(drop, np.asarray(spec.held, dtype=object)) if spec.held else drop)
        lists = fetch_lists(
            recommend,
            ids[who],
            limit,
            # the whole chunk's pairs: fetch_lists keeps those of its own users (exclusions), so a
            # filter here only cost a hash of the channel's user ids per call
            blocked=blocked,
            drop_items=calls[rule.channel][1],
        )
        lists = lists.assign(**{C.CHANNEL: rule.channel, W.SEND_AFTER: send_after, W.SEND_BEFORE: send_before})
        frames.append(lists.assign(_channel_pos=p))
        if cfg.channels_per_user > 1:
            # a user with lists on several channels never gets one item twice tonight
            blocked = pd.concat([blocked, lists[[C.USER_ID, C.ITEM_ID]]], ignore_index=True)
    rows, row_users = _rows(frames, ids, spec)
    coverage = None
    if cfg.coverage:
        rows, coverage = CV.meet_in_chunk(
            rows,
            cfg.coverage,
            recommender.state.taxonomy,
            CV.ChunkUsers(ids, task.groups, task.regions, task.coverage_sub_groups, ~(chosen >= 0).any(axis=1)),
            history=history,
            history_days=max(cfg.dedup_days, H.WEEK_DAYS),
            read_history=lambda days: H.read_window(store, buckets, day, days, skip=(day, spec.kind)),
            topics=topics,
            day=day,
            fetch=CV.chunk_fetch(calls, blocked, spec.topic),
            broadcast=spec.broadcast_cells,
            engagement=CV.chunk_engagement(recommender, rows, attributes),
        )
    # the rows' user positions, unless the coverage rules replaced rows
    stats = chunk_stats(task, rows, chosen, topics, time.perf_counter() - start, row_users if coverage is None else None)
    if priorities is not None:
        stats["priorities"] = PR.chunk_report(
            priorities, pd.Timestamp(day.isoformat()).tz_localize(spec.timezone), task.user_ids, task.groups, task.regions, rows, topics
        )
    if coverage is not None:
        stats["coverage"] = coverage
    return rows.drop(columns="_channel_pos"), stats


def expiring_items(recommender: Recommender, start: pd.Timestamp, end: pd.Timestamp) -> np.ndarray:
    """Available items live when a send window opens that expire before it closes.

    The Recommender judges eligibility at one instant (the window's start);
    an item that expires before ``end`` could be delivered after its expiry,
    so the push leaves it out of that window's lists.
    """
    catalog = recommender.state.catalog
    expires = catalog.expires_ns
    mask = catalog.available & (expires > pd.Timestamp(start).value) & (expires < pd.Timestamp(end).value)
    return catalog.item_ids[mask]


def _rows(frames: list[pd.DataFrame], ids: pd.Index, spec: RunSpec) -> tuple[pd.DataFrame, np.ndarray]:
    """The chunk's rows in (user, channel, rank) order, and each row's user position in ``ids``."""
    if frames:
        rows = pd.concat(frames, ignore_index=True)
    else:
        rows = pd.DataFrame({c: pd.Series(dtype=object) for c in (*W.OUTPUT_COLUMNS, "_channel_pos")})
    rows[W.CAMPAIGN] = ""
    rows[W.MODEL_VERSION] = spec.model_version
    rows[W.RUN_ID] = spec.run_id
    if not len(rows):
        return rows[[*W.OUTPUT_COLUMNS, "_channel_pos"]].reset_index(drop=True), np.zeros(0, dtype=np.int64)
    users = row_positions(ids, rows[C.USER_ID].to_numpy(dtype=object))
    # one stable sort of three integer keys (pandas' multi-column sort_values took twice as long)
    order = np.lexsort((rows[C.RANK].to_numpy(dtype=np.int64), rows["_channel_pos"].to_numpy(dtype=np.int64), users))
    return rows[[*W.OUTPUT_COLUMNS, "_channel_pos"]].take(order).reset_index(drop=True), users[order]


def chunk_tasks(
    spec: RunSpec, chunks: Iterable[Chunk], plan: UserPlan, users: BundleUsers, usable: np.ndarray
) -> Iterator[ChunkTask]:
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
            coverage_sub_groups=(
                table[C.SUB_GROUP].iloc[c.users].fillna("").to_numpy(dtype=object)
                if spec.push.get("coverage") and C.SUB_GROUP in table.columns
                else None
            ),
        )
