"""Reasons: short readable Chinese strings saying why an item is in a list.

Four kinds, one per group of blend terms; an item gets those whose term is
strong enough, strongest contribution (weight x term) first, at most
:data:`MAX_REASONS`; an item none qualifies for gets :data:`FILLER` (it fills the list).
The engagement model's terms count toward the kind they explain: learned
topic interest toward topic affinity, quality and timeliness toward
freshness / authority (format taste has no reason of its own).

========================  ===========================  =========================
kind                      example                      shown when
========================  ===========================  =========================
collaborative relevance   ``相似用户喜欢 0.63``          relevance >= 0.3
topic affinity            ``兴趣:防灾避险 0.41``          topic term >= 0.5 and the
                                                       user's interest in the
                                                       item's best-matching topic
                                                       (the number) >= 1.5 x a
                                                       uniform share
segment popularity        ``青龙县农民近期热门``          popularity >= 0.5
freshness / authority     ``新发布·国家级来源``           freshness >= 0.5 or a
                                                       national/provincial source
========================  ===========================  =========================

Display names come from the taxonomy (codes are data). Every text a state can
show is built once (:func:`reason_tables`) and numbered; a batch's reasons are
integer codes into that table (:class:`ItemReasons`), picked with a few array
operations. A batch becomes one Arrow list column built from the codes (no
Python object per item: the push writes millions of rows), and Python lists
only where a caller asks for them (a single call).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from recsys import columns as C
from recsys.config import RankingConfig
from recsys.ranking.compiled_reasons import learned_codes, linear_codes
from recsys.ranking.scoring import weights

MAX_REASONS = 3
RELEVANCE_MIN = 0.3
TOPIC_MIN = 0.5
#: the user's interest in the topic must also exceed this multiple of a uniform share (1 / n_topics)
TOPIC_OVER_UNIFORM = 1.5
POPULARITY_MIN = 0.5
FRESH_MIN = 0.5
#: authority levels named in a reason (contract codes -> Chinese)
AUTHORITY_ZH = {"national": "国家级", "provincial": "省级", "municipal": "市级", "other": "其他"}
_NAMED_AUTHORITIES = ("national", "provincial")
CITY_POPULAR = "全市近期热门"
#: for an item no reason qualifies for (it fills the list)
FILLER = "补充推荐"
#: put before the reasons of an item a push priority raised, with the topic's name
PRIORITY_PREFIX = "重点推送:"
#: the learned ranker's reason kinds, in display-tie order
LEARNED_KINDS = ("collaborative", "coengagement", "topic", "popularity", "fresh", "authority")
COENGAGED = "与您近期喜欢的内容相关"
SIMILAR_USERS = "相似用户喜欢"
FRESH = "新发布"
GOOD_CONTENT = "优质内容"
#: the Arrow type of a column of reasons (one list of texts per item)
REASONS_TYPE = pa.list_(pa.string())


@dataclass(frozen=True)
class ReasonCodes:
    """The reason tables as codes: positions in :attr:`ReasonTables.strings`.

    Each array has the shape of the :class:`ReasonTables` text table of the
    same name; the scalars number the fixed texts.
    """

    relevance: np.ndarray
    topic: np.ndarray
    popularity: np.ndarray
    fresh_authority: np.ndarray
    group_popular: np.ndarray
    region_popular: np.ndarray
    priority: np.ndarray
    filler: int
    city_popular: int
    similar_users: int
    coengaged: int
    fresh: int
    good_content: int


@dataclass(frozen=True)
class ReasonTables:
    """Precomputed reason strings, indexed by codes.

    Attributes
    ----------
    relevance : ndarray of object, shape (201,)
        Index ``round(100 * relevance) + 100``.
    topic : ndarray of object, shape (n_topics, 101)
        Index ``[topic, round(100 * interest)]``.
    popularity : ndarray of object, shape (n_segments + 1,)
        Per popularity row (the last: city-wide).
    fresh_authority : ndarray of object, shape (2, n_authorities)
        Index ``[is fresh, authority code]``.
    authority_named : ndarray of bool, shape (n_authorities,)
        Authority levels a reason names by themselves.
    group_popular, region_popular : ndarray of object, shape (n_groups,), (n_regions,)
        The learned ranker's popularity reasons of a group / region level.
    priority : ndarray of object, shape (n_topics,)
        The reason put first for an item a push priority raised (``重点推送:<topic>``).
    strings : ndarray of object, shape (n_codes,)
        Every text above and the fixed ones (:data:`FILLER` ...), numbered: a
        reason code is a position here.
    arrow : pyarrow.StringArray
        ``strings`` as Arrow (a batch's list column takes from it).
    code : ReasonCodes
        The tables above as codes.
    """

    relevance: np.ndarray
    topic: np.ndarray
    popularity: np.ndarray
    fresh_authority: np.ndarray
    authority_named: np.ndarray
    group_popular: np.ndarray
    region_popular: np.ndarray
    priority: np.ndarray
    strings: np.ndarray
    arrow: pa.Array
    code: ReasonCodes


def reason_tables(taxonomy, segments) -> ReasonTables:
    """Build the string tables for a taxonomy and the bundle's segments.

    Parameters
    ----------
    taxonomy : Taxonomy
    segments : DataFrame
        The bundle's ``group, region`` segments (row s = popularity row s).
    """
    relevance = np.array([f"相似用户喜欢 {v / 100:.2f}" for v in range(-100, 101)], dtype=object)
    topic = np.array(
        [[f"兴趣:{taxonomy.zh('topic', t)} {v / 100:.2f}" for v in range(101)] for t in taxonomy.topics],
        dtype=object,
    ).reshape(len(taxonomy.topics), 101)
    popular = [
        f"{taxonomy.zh('region', r)}{taxonomy.zh('group', g)}近期热门"
        for g, r in zip(segments[C.GROUP].astype(str), segments[C.REGION].astype(str))
    ]
    popularity = np.array(popular + [CITY_POPULAR], dtype=object)
    fresh_authority = np.empty((2, len(C.AUTHORITIES)), dtype=object)
    for fresh in (0, 1):
        for a, code in enumerate(C.AUTHORITIES):
            parts = ["新发布"] if fresh else []
            if code in _NAMED_AUTHORITIES or not fresh:
                parts.append(f"{AUTHORITY_ZH[code]}来源")
            fresh_authority[fresh, a] = "·".join(parts)
    named = np.array([code in _NAMED_AUTHORITIES for code in C.AUTHORITIES])
    group_popular = np.array([f"{taxonomy.zh('group', g)}近期热门" for g in taxonomy.groups], dtype=object)
    region_popular = np.array([f"{taxonomy.zh('region', r)}近期热门" for r in taxonomy.regions], dtype=object)
    priority = np.array([f"{PRIORITY_PREFIX}{taxonomy.zh('topic', t)}" for t in taxonomy.topics], dtype=object)
    fixed = np.array([FILLER, CITY_POPULAR, SIMILAR_USERS, COENGAGED, FRESH, GOOD_CONTENT], dtype=object)
    tables = (relevance, topic, popularity, fresh_authority, group_popular, region_popular, priority, fixed)
    # each table's texts numbered after the previous table's: a code is a position in their concatenation
    starts = np.cumsum([0, *(t.size for t in tables)])
    codes = [(start + np.arange(t.size, dtype=np.int32)).reshape(t.shape) for start, t in zip(starts, tables)]
    # read-only, as the kernels take them: compiled_scoring.frozen hands them over without a view per call
    for table in (*codes, named):
        table.flags.writeable = False
    strings = np.concatenate([t.ravel() for t in tables])
    code = ReasonCodes(*codes[:-1], *(int(c) for c in codes[-1]))
    return ReasonTables(
        relevance, topic, popularity, fresh_authority, named, group_popular, region_popular, priority,
        strings, pa.array(strings, type=pa.string()), code,
    )


@dataclass(frozen=True)
class ItemReasons:
    """The reasons of a block's picked items, as codes into :attr:`ReasonTables.strings`.

    Item row ``r`` (users in order, each user's picked items best first) has the
    reasons ``strings[codes[offsets[r]:offsets[r + 1]]]``, strongest first.

    Attributes
    ----------
    tables : ReasonTables
    offsets : ndarray of int32, shape (n_rows + 1,)
    codes : ndarray of int32, shape (offsets[-1],)
    count : ndarray of int64, shape (m,)
        Picked items (rows) of each user.
    """

    tables: ReasonTables
    offsets: np.ndarray
    codes: np.ndarray
    count: np.ndarray

    def arrow(self) -> pa.ListArray:
        """One ``list<string>`` value per item row, built in Arrow from the codes."""
        return pa.ListArray.from_arrays(
            pa.array(self.offsets, pa.int32()), self.tables.arrow.take(pa.array(self.codes)), type=REASONS_TYPE
        )

    def rows(self) -> list[list[str]]:
        """Per item row, its reasons as a list of Python strings."""
        texts = self.tables.strings[self.codes].tolist()
        return [texts[a:b] for a, b in itertools.pairwise(self.offsets.tolist())]

    def lists(self) -> list[list[list[str]]]:
        """Per user, per picked item, its reasons as a list of Python strings."""
        rows = self.rows()
        ends = np.cumsum(self.count).tolist()
        return [rows[e - c : e] for e, c in zip(ends, self.count.tolist())]

    def __iter__(self) -> Iterator[list[list[str]]]:
        """Per user, :meth:`lists`."""
        return iter(self.lists())


def explain(
    tables: ReasonTables,
    parts: np.ndarray,
    items: np.ndarray,
    count: np.ndarray,
    user_topics: np.ndarray,
    segments: np.ndarray,
    topic_idx: np.ndarray,
    authority_code: np.ndarray,
    config: RankingConfig,
    first: np.ndarray | None = None,
) -> ItemReasons:
    """Reasons for each picked item.

    Parameters
    ----------
    tables : ReasonTables
    parts : ndarray of float32, shape (m, k, len(scoring.TERMS))
        Blend terms of the picked items (``scoring.TERMS`` order).
    items : ndarray of int64, shape (m, k)
        Picked item indices, -1 padded.
    count : ndarray of int64, shape (m,)
        Picked items per user.
    user_topics : ndarray of float32, shape (m, n_topics)
    segments : ndarray of int64, shape (m,)
        Popularity row of each user.
    topic_idx : ndarray of int64, shape (n_items, t_max)
        Each item's topic positions, padded with n_topics (``Catalog.topic_idx``).
    authority_code : ndarray of int64, shape (n_items,)
    config : RankingConfig
    first : ndarray of int32, shape (m, k), optional
        A reason code put before an item's reasons, -1 = none (:func:`priority_first`).

    Returns
    -------
    ItemReasons
    """
    m, k = items.shape
    code = tables.code
    if m == 0 or k == 0:
        return _render(tables, np.zeros((m, k, 0), np.int32), np.zeros((m, k, 0), bool), None, count, first)
    # the codes, whether each kind is shown and its contribution, in one compiled pass per item (the
    # rules: relevance from the collaborative term; the item's topic the user cares most about, shown
    # when the topic term is strong and the interest above uniform; the segment's popularity; fresh
    # content or a named authority; each kind's contribution its terms' weighted sum)
    codes, shown, contrib = linear_codes(
        parts, items, user_topics, topic_idx, authority_code, tables.authority_named, segments, weights(config),
        code.relevance, code.topic, code.popularity, code.fresh_authority,
        (RELEVANCE_MIN, TOPIC_MIN, TOPIC_OVER_UNIFORM, POPULARITY_MIN, FRESH_MIN),
    )
    return _render(tables, codes, shown, contrib, count, first)


def _render(
    tables: ReasonTables,
    codes: np.ndarray,
    shown: np.ndarray,
    contrib: np.ndarray | None,
    count: np.ndarray,
    first: np.ndarray | None,
) -> ItemReasons:
    """Per picked item, its shown reasons, strongest contribution first, at most :data:`MAX_REASONS`,
    after its ``first`` code if any; only the items each user has (``count``)."""
    m, k, w = codes.shape
    if w == 0:  # no kinds: every item gets the filler
        codes, shown, contrib, w = np.zeros((m, k, 1), np.int32), np.zeros((m, k, 1), bool), np.zeros((m, k, 1)), 1
    # one row per (user, slot), then only the items each user has (a single call's list is full)
    codes, shown, contrib = codes.reshape(m * k, w), shown.reshape(m * k, w), contrib.reshape(m * k, w)
    lead = None if first is None else first.reshape(m * k)
    if m and count.min() < k:
        have = np.flatnonzero((np.arange(k)[None, :] < count[:, None]).ravel())
        codes, shown, contrib = codes[have], shown[have], contrib[have]
        lead = None if lead is None else lead[have]
    order = np.argsort(np.where(shown, -contrib, np.inf), axis=1, kind="stable")
    codes = codes[np.arange(len(codes))[:, None], order].astype(np.int32, copy=False)
    n = np.minimum(shown.sum(axis=1), MAX_REASONS)
    # an item with no strong reason says so rather than inventing a weak one
    codes[:, 0] = np.where(n == 0, tables.code.filler, codes[:, 0])
    n = np.maximum(n, 1)
    if lead is None:
        keep = np.arange(w)[None, :] < n[:, None]
    else:
        # slot 0: the first reason where there is one; then the item's own
        codes = np.concatenate([lead[:, None].astype(np.int32), codes], axis=1)
        slot = np.arange(w + 1)[None, :]
        keep = ((slot == 0) & (lead >= 0)[:, None]) | ((slot >= 1) & (slot <= n[:, None]))
        n = n + (lead >= 0)
    offsets = np.zeros(len(n) + 1, np.int32)
    np.cumsum(n, out=offsets[1:])
    return ItemReasons(tables, offsets, codes[keep], np.asarray(count, np.int64))


def explain_learned(
    tables: ReasonTables,
    contrib: np.ndarray,
    items: np.ndarray,
    count: np.ndarray,
    user_topics: np.ndarray,
    users_segment: np.ndarray,
    users_group: np.ndarray,
    users_region: np.ndarray,
    topic_idx: np.ndarray,
    authority_code: np.ndarray,
    hide: np.ndarray | None = None,
    first: np.ndarray | None = None,
    fresh: np.ndarray | None = None,
) -> ItemReasons:
    """Reasons from the learned ranker: the feature kinds that raised each item's score most.

    Each feature's reason kind comes from the registry
    (:mod:`recsys.ranking.features`); a kind's contribution is how much its
    features lifted the item's score (``LearnedRanker.group_contributions``).
    Kinds with a strictly positive contribution are shown, largest first, at
    most :data:`MAX_REASONS`; a popularity reason names the level (segment,
    group, region or city) whose features lifted the score most. No reason
    that did not contribute: an item no kind lifted gets :data:`FILLER`.

    Parameters
    ----------
    tables : ReasonTables
    contrib : ndarray of float32, shape (m, k, len(LEARNED_KINDS) + 4)
        Per picked item, each kind's contribution, then each popularity level's
        (``features.reason_groups`` order).
    items : ndarray of int64, shape (m, k)
    count : ndarray of int64, shape (m,)
    user_topics : ndarray of float32, shape (m, n_topics)
    users_segment, users_group, users_region : ndarray of int64, shape (m,)
        Each user's popularity row, group and region positions.
    topic_idx : ndarray of int64, shape (n_items, t_max)
    authority_code : ndarray of int64, shape (n_items,)
    hide : ndarray of bool, shape (m, len(LEARNED_KINDS)), optional
        Kinds not to name for a user: e.g. "similar users" for a user with
        no history (the registry's ``cold`` flag says which kinds carry
        nothing for them).
    first : ndarray of int32, shape (m, k), optional
        As in :func:`explain`.
    fresh : ndarray of float32, shape (n_items,), optional
        Every item's freshness at the call's ``now``: the fresh kind (``新发布``) is named only for
        an item at least :data:`FRESH_MIN` fresh, the blend's rule (its features, freshness and the
        engagement model's timeliness, can lift an old item's score: a split on freshness 0, a
        topic's trend).

    Returns
    -------
    ItemReasons
    """
    m, k = items.shape
    code = tables.code
    if m == 0 or k == 0:
        return _render(tables, np.zeros((m, k, 0), np.int32), np.zeros((m, k, 0), bool), None, count, first)
    if fresh is not None:
        at = LEARNED_KINDS.index("fresh")
        stale = (fresh[np.maximum(items, 0)] < FRESH_MIN) & (contrib[:, :, at] > 0)
        if stale.any():
            contrib = contrib.copy()  # the caller's contributions stay as they are
            contrib[:, :, at] = np.where(stale, np.float32(0), contrib[:, :, at])
    # the codes, whether each kind is shown and its contribution, in one compiled pass per item
    codes, shown, by_kind = learned_codes(
        contrib, hide, items, user_topics, topic_idx, authority_code, tables.authority_named, code.fresh_authority[0],
        code.topic, users_group, users_region, users_segment, code.group_popular, code.region_popular, code.popularity,
        (code.city_popular, code.similar_users, code.coengaged, code.fresh, code.good_content), len(LEARNED_KINDS),
    )
    return _render(tables, codes, shown, by_kind, count, first)


def priority_first(
    tables: ReasonTables, boost: np.ndarray, topic_bool: np.ndarray, items: np.ndarray, count: np.ndarray
) -> np.ndarray:
    """The reason put first for each picked item a push priority raised: ``重点推送:<topic>``.

    An item's topic with the largest positive boost for its user is named
    (ties: the topic listed first); -1 where no topic of the item is boosted.

    Parameters
    ----------
    tables : ReasonTables
    boost : ndarray of float32, shape (m, n_topics)
        Each user's priority weights (``RankingState.topic_boost`` of their group and region).
    topic_bool : ndarray of bool, shape (n_items, n_topics)
    items : ndarray of int64, shape (m, k)
        Picked item indices, -1 padded.
    count : ndarray of int64, shape (m,)

    Returns
    -------
    ndarray of int32, shape (m, k)
    """
    weights = np.where(topic_bool[np.maximum(items, 0)], boost[:, None, :], 0)
    got = (np.arange(items.shape[1])[None, :] < count[:, None]) & (items >= 0)
    if weights.shape[-1] == 0:
        return np.full(items.shape, -1, np.int32)
    return np.where(got & (weights.max(axis=-1) > 0), tables.code.priority[weights.argmax(axis=-1)], -1).astype(np.int32)
