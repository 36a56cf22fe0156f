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

Display names come from the taxonomy (codes are data); the strings are
precomputed tables indexed with numpy, so reasons for a whole batch cost a
few array operations plus one list per item.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys import columns as C
from recsys.config import RankingConfig
from recsys.ranking.scoring import TERMS, weights

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
    """

    relevance: np.ndarray
    topic: np.ndarray
    popularity: np.ndarray
    fresh_authority: np.ndarray
    authority_named: np.ndarray
    group_popular: np.ndarray | None = None
    region_popular: np.ndarray | None = None


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
    return ReasonTables(relevance, topic, popularity, fresh_authority, named, group_popular, region_popular)


def _best_topic(user_topics: np.ndarray, topic_idx: np.ndarray, safe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per picked item, the item's topic the user cares most about and that interest in [0, 1]."""
    m = user_topics.shape[0]
    tid = topic_idx[safe]
    padded = np.hstack([user_topics, np.full((m, 1), -1.0, np.float32)])  # topic lists are padded with n_topics
    users = np.arange(m)[:, None]
    interest = padded[users[:, :, None], tid]
    # one fancy index each, not take_along_axis (~10 us of Python a call, on the single call's path)
    pick = interest.argmax(axis=2)
    items = np.arange(tid.shape[1])[None, :]
    return tid[users, items, pick], np.minimum(np.maximum(interest[users, items, pick], 0.0), 1.0)


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
) -> list[list[list[str]]]:
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

    Returns
    -------
    list (m) of list (count) of list of str
    """
    m, k = items.shape
    if m == 0 or k == 0:
        return [[] for _ in range(m)]
    safe = np.where(items >= 0, items, 0)
    w = weights(config)
    rel, top, pop, fresh, auth, quality, learned, _, timely = (parts[..., i] for i in range(len(TERMS)))
    n_topics = user_topics.shape[1]

    best, best_w = _best_topic(user_topics, topic_idx, safe)
    acode = authority_code[safe]
    is_fresh = fresh >= FRESH_MIN

    texts = np.stack(
        [
            tables.relevance[np.clip(np.rint(rel * 100), -100, 100).astype(np.int64) + 100],
            tables.topic[np.minimum(best, n_topics - 1), np.rint(best_w * 100).astype(np.int64)],
            np.broadcast_to(tables.popularity[segments][:, None], (m, k)),
            tables.fresh_authority[is_fresh.astype(np.int64), acode],
        ],
        axis=-1,
    )
    contrib = np.stack(
        [
            w[0] * rel,
            w[1] * top + w[6] * learned,
            w[2] * pop,
            w[3] * fresh + w[4] * auth + w[5] * quality + w[8] * timely,
        ],
        axis=-1,
    )
    shown = np.stack(
        [
            rel >= RELEVANCE_MIN,
            (top >= TOPIC_MIN) & (best < n_topics) & (best_w * n_topics >= TOPIC_OVER_UNIFORM),
            pop >= POPULARITY_MIN,
            is_fresh | tables.authority_named[acode],
        ],
        axis=-1,
    )
    return _render(texts, shown, contrib, count)


def _render(texts: np.ndarray, shown: np.ndarray, contrib: np.ndarray, count: np.ndarray) -> list[list[list[str]]]:
    """Per item, its shown reasons, strongest contribution first, at most :data:`MAX_REASONS`."""
    order = np.argsort(-np.where(shown, contrib, -np.inf), axis=-1, kind="stable")
    m, k = order.shape[:2]
    texts = texts[np.arange(m)[:, None, None], np.arange(k)[None, :, None], order]
    n_shown = np.minimum(shown.sum(axis=-1), MAX_REASONS)
    # an item with no strong reason says so rather than inventing a weak one
    none = n_shown == 0
    texts[none, 0] = FILLER
    n_shown[none] = 1
    return [
        [item[:n] for item, n in zip(row[:c], counts[:c])]
        for row, counts, c in zip(texts.tolist(), n_shown.tolist(), count.tolist())
    ]


#: the learned ranker's reason kinds, in display-tie order
LEARNED_KINDS = ("collaborative", "coengagement", "topic", "popularity", "fresh", "authority")
COENGAGED = "与您近期喜欢的内容相关"
SIMILAR_USERS = "相似用户喜欢"
FRESH = "新发布"
GOOD_CONTENT = "优质内容"


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
) -> list[list[list[str]]]:
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

    Returns
    -------
    list (m) of list (count) of list of str
    """
    m, k = items.shape
    if m == 0 or k == 0:
        return [[] for _ in range(m)]
    n_kinds = len(LEARNED_KINDS)
    by_kind = contrib[..., :n_kinds]
    if hide is not None:
        by_kind = np.where(hide[:, None, :], np.float32(0), by_kind)
    level = contrib[..., n_kinds:].argmax(axis=-1)
    safe = np.where(items >= 0, items, 0)
    n_topics = user_topics.shape[1]
    best, best_w = _best_topic(user_topics, topic_idx, safe)
    acode = authority_code[safe]
    pop_text = np.stack(
        [
            np.broadcast_to(np.array([CITY_POPULAR], dtype=object), (m,)),
            tables.group_popular[np.maximum(users_group, 0)],
            tables.region_popular[np.maximum(users_region, 0)],
            tables.popularity[users_segment],
        ],
        axis=-1,
    )
    auth_text = np.where(tables.authority_named[acode], tables.fresh_authority[0, acode], GOOD_CONTENT)
    texts = np.stack(
        [
            np.full((m, k), SIMILAR_USERS, dtype=object),
            np.full((m, k), COENGAGED, dtype=object),
            tables.topic[np.minimum(best, n_topics - 1), np.rint(best_w * 100).astype(np.int64)],
            pop_text[np.arange(m)[:, None], level],
            np.full((m, k), FRESH, dtype=object),
            auth_text,
        ],
        axis=-1,
    )
    return _render(texts, by_kind > 0, by_kind, count)
