"""Candidates: a few hundred items per user, from several sources, merged.

Sources, each a fixed number of columns of one (m, c) matrix:

* **collaborative**: the items of largest inner product with the user's ALS
  vector, from the bundle's ``VectorIndex`` (exact with the default
  ``[index] kind = "pruned"``, for one user or a block of them alike):
  ``max(ann_candidates, ann_overfetch * k)`` items, over-fetched by
  ``1 / share`` where the request's static filters (channel, topics) keep only
  a ``share`` of the items; below ``allow_search_below`` it is an exact
  search over just the items that pass the filters and are live at ``now``
  (the catalogue keeps each topic's and format's vectors contiguous);
* **new catalogue items** (not in the bundle's index), scored exactly;
* the user's **top topics** by the engagement model's learned interest (or,
  with a topic filter, the requested topics the user likes most): each
  topic's items with the best learned quality and timeliness;
* the **freshest** items published at or before ``now``;
* the most popular items in the user's **group x region** segment (recency
  weighted), so a cold or sparse user still gets a full list;
* the items with the best **segment-level engagement score** in that
  segment (the engagement model's quality, interest, format taste and
  timeliness at the segment's level): what the blend is likeliest to rank
  first for anyone there;
* the most popular items of the user's segment at each **popularity
  half-life** (shares shrunk toward group, region and city by their evidence,
  :mod:`recsys.training.signals`), and the city's most engaged items in each **trend
  window** (what the ``recent_popular`` baseline lists);
* the items most **co-engaged** with the user's most recent positive items.

Candidates are not yet checked for eligibility; repeats are padded to -1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from recsys.ranking import compiled_selection
from recsys.ranking.catalog import Catalog
from recsys.ranking.eligibility import ItemFilter, passes
from recsys.ranking.scoring import user_interest
from recsys.ranking.state import RankingState
from recsys.ranking.users import UserBatch

# users per block of an exact allow-list search (bounds the score block)
_EXACT_ROWS = 256
_TIE = 1e-3


def ann_fetch(k: int, share: float, n_indexed: int, state: RankingState) -> tuple[int, bool]:
    """How many ANN results to ask for, and whether to search on the allow-list."""
    cfg = state.config
    base = max(cfg.ann_candidates, cfg.ann_overfetch * k)
    if share <= 0 or n_indexed == 0:
        return 0, False
    if share < cfg.allow_search_below:
        return min(base, n_indexed), True
    return min(cfg.ann_max_fetch, n_indexed, math.ceil(base / share)), False


def _top_columns(scores: np.ndarray, n: int) -> np.ndarray:
    """Column indices of the ``n`` largest scores per row (unordered)."""
    if scores.shape[1] <= n:
        return np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    return np.argpartition(-scores, n - 1, axis=1)[:, :n]


def _ann(state: RankingState, users: UserBatch, k: int, filt: ItemFilter, share: float, now_ns: int) -> np.ndarray:
    catalog = state.catalog
    n_fetch, use_allow = ann_fetch(k, share, catalog.n_bundle, state)
    m = len(users)
    if n_fetch == 0:
        return np.zeros((m, 0), dtype=np.int64)
    if not use_allow:
        _, ids = state.model.item_index.search(users.vectors, n_fetch)
        return np.asarray(ids, dtype=np.int64)
    # a tight filter: search exactly over the filter's items, time being the only check left
    blocks = _allow_blocks(catalog, filt)
    ids, rows, published, expires = state.filter_block(filt, lambda: _allow_rows(state, filt, blocks))
    total = sum(len(vectors) for _, _, vectors in blocks)
    out = []
    for lo in range(0, m, _EXACT_ROWS):
        u = users.vectors[lo : lo + _EXACT_ROWS]
        # each block's vectors are contiguous in the catalogue: each block scored whole by one product
        # (BLAS: a row's bits depend on its place in the block), written where the next one ends,
        # then one compiled pass keeps the best live rows that pass
        scores = np.empty((total, len(u)), np.float32)
        at = 0
        for _, _, vectors in blocks:
            np.matmul(vectors, u.T, out=scores[at : at + len(vectors)])
            at += len(vectors)
        out.append(compiled_selection.allowed_top(scores, rows, ids, published, expires, now_ns, n_fetch))
    return out[0] if len(out) == 1 else np.concatenate(out) if out else np.zeros((0, 0), dtype=np.int64)


def _allow_blocks(catalog: Catalog, filt: ItemFilter) -> list[tuple[tuple, np.ndarray, np.ndarray]]:
    """The (key, items, vectors) blocks of a filter's topics (or formats), or of the whole bundle."""
    if filt.topics is not None:
        return [(("topic", t), catalog.items_by_topic[t], catalog.topic_vectors[t]) for t in filt.topics]
    if filt.formats is not None:
        return [(("format", f), catalog.items_by_format[f], catalog.format_vectors[f]) for f in filt.formats]
    # no filter, yet few items available
    return [(("bundle",), np.arange(catalog.n_bundle), catalog.cf[: catalog.n_bundle])]


def _allow_rows(state: RankingState, filt: ItemFilter, blocks: list) -> tuple[np.ndarray, ...]:
    """Of the blocks' rows, laid end to end, the bundle items that pass the filter's static checks:
    their ids, row positions, and publish and expiry times in that order (built once per filter,
    ``RankingState.filter_block``; a single call used to concatenate and check every row on each
    request, and the times read in place were a cache miss per item).

    Each block's part is kept per block and channel (:func:`_block_rows`,
    ``RankingState.filter_part``), so a filter never seen before (a new pair of topics) lays out
    parts already checked. An item under two requested
    topics comes twice (the merge drops repeats).
    """
    parts = [state.filter_part((key, filt.formats), _block_rows(state.catalog, filt, items)) for key, items, _ in blocks]
    if not parts:  # a channel that carries no format
        return tuple(_frozen_empty() for _ in range(4))
    starts = np.cumsum([0] + [len(vectors) for _, _, vectors in blocks[:-1]])
    joined = (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] + start for p, start in zip(parts, starts.tolist())]),
        np.concatenate([p[2] for p in parts]),
        np.concatenate([p[3] for p in parts]),
    )
    for a in joined:
        a.setflags(write=False)
    return joined


def _frozen_empty() -> np.ndarray:
    empty = np.zeros(0, np.int64)
    empty.setflags(write=False)
    return empty


def _block_rows(catalog: Catalog, filt: ItemFilter, items: np.ndarray) -> Callable[[], tuple[np.ndarray, ...]]:
    """The builder of one block's part of :func:`_allow_rows`: the block's bundle items that pass
    the filter's format and availability checks (the block holds the filter's topic or format
    already), their positions in the block, publish and expiry times."""

    def build() -> tuple[np.ndarray, ...]:
        rows = np.flatnonzero((items < catalog.n_bundle) & passes(catalog, filt, items, topics=False))
        ids = items[rows]
        part = (ids, rows, catalog.published_ns[ids], catalog.expires_ns[ids])
        for a in part:
            a.setflags(write=False)
        return part

    return build


def _new_items(state: RankingState, users: UserBatch, n: int) -> np.ndarray:
    new = state.catalog.new_items
    m = len(users)
    if new.size == 0 or n == 0:
        return np.zeros((m, 0), dtype=np.int64)
    if new.size <= n:
        return np.broadcast_to(new, (m, new.size))
    scores = np.einsum("ef,mf->me", state.catalog.cf[new], users.vectors)
    return new[_top_columns(scores, n)]


def _topics(state: RankingState, users: UserBatch, filt: ItemFilter) -> np.ndarray:
    tables = state.engagement
    n_pick = state.config.candidate_topics
    m = len(users)
    if n_pick == 0 or tables.topic_best.shape[1] == 0:
        return np.zeros((m, 0), dtype=np.int64)
    allowed = np.arange(tables.topic_best.shape[0]) if filt.topics is None else np.asarray(filt.topics)
    n_pick = min(n_pick, allowed.size)
    # the readable profile, far below one step of learned interest, breaks ties (and ranks
    # the topics alone when the engagement model is all 0)
    prefs = (user_interest(state, users) + _TIE * users.topics)[:, allowed]
    # the user's strongest topics among those allowed; ties go to taxonomy order
    best = allowed[np.argsort(-prefs, axis=1, kind="stable")[:, :n_pick]]
    return tables.topic_best[best].reshape(m, -1)


def _fresh_cut(catalog: Catalog, now_ns: int) -> int:
    """How many of ``catalog.fresh_order``'s items are published at or before ``now_ns``: all
    that :func:`_fresh` reads of ``now``."""
    return int(np.searchsorted(catalog.fresh_published, now_ns, side="right"))


def _fresh(state: RankingState, m: int, now_ns: int) -> np.ndarray:
    catalog = state.catalog
    n = state.config.fresh_candidates
    upto = _fresh_cut(catalog, now_ns)
    fresh = catalog.fresh_order[max(0, upto - n) : upto][::-1]
    return np.broadcast_to(fresh, (m, fresh.size))


def _popular(state: RankingState, groups: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """The group x region segment's most popular items at each half-life, and the city's trend lists."""
    m = len(groups)
    lists = state.popular_lists
    if lists is None:
        return np.zeros((m, 0), dtype=np.int64)
    n_r = len(state.taxonomy.regions)
    seg = groups.astype(np.int64) * n_r + regions.astype(np.int64)
    trend = np.broadcast_to(state.trend_lists, (m, state.trend_lists.size))
    return np.hstack([lists[seg], trend])


def _shared(state: RankingState, users: UserBatch, now_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """The sources a user shares with every user of the same segment, group and region (the
    freshest items, the segment's popular and best-engaged lists, the popularity half-lives,
    the city's trends), merged once per distinct (segment, group, region) and freshness cut
    (:func:`_fresh_cut`: every ``now`` between the same two publications shares them, so a live
    clock hits) and kept by the state (``RankingState.shared_lists``): the merged lists
    (:func:`merge`, -1 padded), and each user's list."""
    n_g, n_r = len(state.taxonomy.groups), len(state.taxonomy.regions)
    # one integer per (segment, group, region); a position may be -1 (not in the taxonomy)
    keys = (users.segments.astype(np.int64) * (n_g + 1) + users.groups + 1) * (n_r + 1) + users.regions + 1
    if keys.size == 1:
        # a single call: its one key (np.unique's sort costs more than the rest of this step)
        first = which = np.zeros(1, np.int64)
    else:
        _, first, which = np.unique(keys, return_index=True, return_inverse=True)

    def build(missing: list[int]) -> list[np.ndarray]:
        # every missing key's lists merged in one pass; a row's distinct items, ascending
        at = first[missing]
        segments, groups, regions = users.segments[at], users.groups[at], users.regions[at]
        parts = [
            _fresh(state, at.size, now_ns),
            state.catalog.segment_top[segments],
            state.engagement.segment_best[segments],
            _popular(state, groups, regions),
        ]
        merged = merge(np.concatenate(parts, axis=1))
        return [row[row >= 0] for row in merged]

    cut = _fresh_cut(state.catalog, now_ns)
    lists = state.shared_lists([(int(keys[i]), cut) for i in first.tolist()], build)
    if len(lists) == 1:
        return lists[0][None, :], which.reshape(-1)  # one list: no padding to add
    shared = np.full((len(lists), max((len(x) for x in lists), default=0)), -1, dtype=np.int64)
    for row, items in zip(shared, lists):
        row[: len(items)] = items
    return shared, which.reshape(-1)


def _coengaged(state: RankingState, users: UserBatch) -> np.ndarray:
    """Items most co-engaged with the user's recent positive items.

    Per user, the ``n`` items of largest summed co-engagement (the sums of the
    sparse product of the recent items and the co-engagement matrix, exact
    zeros dropped); at a tie for the last places the smaller item index goes
    first, so a user's items do not depend on the block
    (:func:`~recsys.ranking.compiled_selection.coengaged_top`).
    """
    m = len(users)
    n = state.model.config.ranker.coengagement_candidates
    sig = state.signals
    co = state.coengagement
    if sig is None or n == 0 or co is None or co.nnz == 0:
        return np.zeros((m, 0), dtype=np.int64)
    recent = sig.recent_items(users.rows)
    return compiled_selection.coengaged_top(co.indptr, co.indices, co.data, recent, n)


def gather(
    state: RankingState,
    users: UserBatch,
    k: int,
    filt: ItemFilter,
    share: float,
    now_ns: int,
) -> np.ndarray:
    """Merge every source's candidates.

    Parameters
    ----------
    state : RankingState
    users : UserBatch
    k : int
        List length asked for (sizes the ANN fetch).
    filt : ItemFilter
        The request's channel and topic filters.
    share : float
        Share of bundle items passing the filters (``RankingState.filtered``).
    now_ns : int

    Returns
    -------
    ndarray of int64, shape (m, c)
        Each row's items ascending, then -1 padding (no repeats).
    """
    own = [
        _ann(state, users, k, filt, share, now_ns),
        _new_items(state, users, max(state.config.ann_candidates, state.config.ann_overfetch * k)),
        _topics(state, users, filt),
        _coengaged(state, users),
    ]
    # more than half the columns are lists a whole segment shares: merged once per segment, then
    # each row's own sources merged into its segment's (the same sorted set as merging them all)
    shared, which = _shared(state, users, now_ns)
    return compiled_selection.merge_rows(np.concatenate(own, axis=1), shared, which)


def merge(cand: np.ndarray) -> np.ndarray:
    """Sort each row ascending, drop repeats and padding, and cut the width to the longest row.

    The sources overlap a lot (a popular item is in several lists), so the
    merged matrix is much narrower than their sum: every later step costs
    per column. Rows keep their items ascending, then -1 padding.
    """
    return compiled_selection.merge_rows(cand)
