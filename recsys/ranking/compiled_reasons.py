"""A block's reason codes assembled in one compiled pass (numba).

The reasons of a single call's ten items were ~25 NumPy operations on arrays
of ten: ~60 us of fixed costs for the learned ranker's reasons (of ~90 with the
rendering), as much as the trees' predictions of the call. Here one loop per
picked item picks what :mod:`recsys.ranking.reasons` defines, with the same
integer codes (the tests compare both with a NumPy reading in the test file):

* the item's topic the user cares most about (the first of the largest
  interests among the item's topics; a topic slot past the item's topics
  reads -1) and that interest clipped to [0, 1], whose code is the topic
  table's at ``rint(100 x interest)`` (float32, as the NumPy code computed it);
* for the learned ranker, each reason kind's contribution (0 for a kind
  hidden from the user), whether it is shown (> 0), and the codes of the six
  kinds, the popularity reason naming the level whose contribution is the
  first largest;
* for the linear blend, the relevance, topic, popularity and fresh-or-authority
  codes, whether each is shown (its term past its threshold, compared in
  float32) and each kind's contribution, its terms' weighted float32 sum in
  the NumPy code's order (~40 NumPy operations of a single call, 260-290 us,
  before this loop; 130-170 us with it, rendering included).
"""

from __future__ import annotations

import numba
import numpy as np

from recsys.exceptions import ArtifactError
from recsys.ranking.compiled_scoring import frozen


@numba.njit(cache=True, nogil=True, inline="always")
def _best_topic(u: int, item: int, user_topics: np.ndarray, topic_idx: np.ndarray) -> tuple[int, np.float32]:
    """The item's topic with the user's largest interest (first of equals; a NaN first, as ``argmax``)
    and that interest clipped to [0, 1], float32; a padding slot (``n_topics``) reads -1."""
    n_topics = user_topics.shape[1]
    best = topic_idx[item, 0]
    value = user_topics[u, best] if best < n_topics else np.float32(-1.0)
    for t in range(1, topic_idx.shape[1]):
        tid = topic_idx[item, t]
        v = user_topics[u, tid] if tid < n_topics else np.float32(-1.0)
        if not np.isnan(value) and (np.isnan(v) or v > value):
            best, value = tid, v
    # np.minimum(np.maximum(v, 0), 1): a NaN stays NaN
    if value < np.float32(0.0):
        value = np.float32(0.0)
    if value > np.float32(1.0):
        value = np.float32(1.0)
    return best, value


@numba.njit(cache=True, nogil=True, inline="always")
def _checked_best_topic(u: int, item: int, user_topics: np.ndarray, topic_idx: np.ndarray) -> tuple[int, np.float32]:
    """:func:`_best_topic`, refusing a NaN interest (it would index the topic texts)."""
    best, weight = _best_topic(u, item, user_topics, topic_idx)
    if np.isnan(weight):
        raise ArtifactError("reasons: a user's topic interest is NaN (the bundle's user topics are damaged)")
    return best, weight


@numba.njit(cache=True, nogil=True)
def _best_topics(user_topics: np.ndarray, topic_idx: np.ndarray, items: np.ndarray, best: np.ndarray, weight: np.ndarray) -> None:
    for u in range(items.shape[0]):
        for i in range(items.shape[1]):
            best[u, i], weight[u, i] = _checked_best_topic(u, max(items[u, i], 0), user_topics, topic_idx)


def best_topics(user_topics: np.ndarray, topic_idx: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per picked item, the item's topic the user cares most about and that interest in [0, 1]: the rule
    both reason kernels apply per item, read on its own (serving calls the kernels, not this).

    Parameters
    ----------
    user_topics : ndarray of float32, shape (m, n_topics)
    topic_idx : ndarray of int64, shape (n_items, t_max)
        Each item's topic positions, padded with ``n_topics``.
    items : ndarray of int64, shape (m, k)
        Picked items (-1 padding reads item 0).

    Returns
    -------
    best : ndarray of int64, shape (m, k)
        A topic position (``n_topics`` for an item without topics).
    weight : ndarray of float32, shape (m, k)
    """
    items = frozen(items, np.int64)
    best = np.empty(items.shape, np.int64)
    weight = np.empty(items.shape, np.float32)
    _best_topics(frozen(user_topics, np.float32), frozen(topic_idx, np.int64), items, best, weight)
    return best, weight


@numba.njit(cache=True, nogil=True)
def _learned(
    contrib: np.ndarray, hide: np.ndarray, items: np.ndarray, user_topics: np.ndarray, topic_idx: np.ndarray,
    authority_code: np.ndarray, authority_named: np.ndarray, authority_text: np.ndarray, topic_code: np.ndarray,
    groups: np.ndarray, regions: np.ndarray, segments: np.ndarray, group_popular: np.ndarray,
    region_popular: np.ndarray, segment_popular: np.ndarray, fixed: np.ndarray,
    codes: np.ndarray, shown: np.ndarray, by_kind: np.ndarray,
) -> None:
    """Fill ``codes``, ``shown`` and ``by_kind`` (m, k, kinds); ``fixed``: city popular, similar users,
    co-engaged, fresh, good content."""
    m, k, n_groups = contrib.shape
    n_kinds = codes.shape[2]
    n_topics = user_topics.shape[1]
    hundred = np.float32(100.0)
    for u in range(m):
        for i in range(k):
            item = max(items[u, i], 0)
            for g in range(n_kinds):
                v = np.float32(0.0) if hide[u, g] else contrib[u, i, g]
                by_kind[u, i, g] = v
                shown[u, i, g] = v > np.float32(0.0)
            # the popularity level that lifted the score most: the first largest (a NaN first, as argmax)
            level = 0
            top = contrib[u, i, n_kinds]
            for lv in range(1, n_groups - n_kinds):
                v = contrib[u, i, n_kinds + lv]
                if not np.isnan(top) and (np.isnan(v) or v > top):
                    level, top = lv, v
            if level == 0:
                popular = fixed[0]
            elif level == 1:
                popular = group_popular[max(groups[u], 0)]
            elif level == 2:
                popular = region_popular[max(regions[u], 0)]
            else:
                popular = segment_popular[segments[u]]
            best, weight = _checked_best_topic(u, item, user_topics, topic_idx)
            a = authority_code[item]
            codes[u, i, 0] = fixed[1]
            codes[u, i, 1] = fixed[2]
            codes[u, i, 2] = topic_code[min(best, n_topics - 1), np.int64(np.rint(weight * hundred))]
            codes[u, i, 3] = popular
            codes[u, i, 4] = fixed[3]
            codes[u, i, 5] = authority_text[a] if authority_named[a] else fixed[4]


def learned_codes(
    contrib: np.ndarray, hide: np.ndarray | None, items: np.ndarray, user_topics: np.ndarray, topic_idx: np.ndarray,
    authority_code: np.ndarray, authority_named: np.ndarray, authority_text: np.ndarray, topic_code: np.ndarray,
    groups: np.ndarray, regions: np.ndarray, segments: np.ndarray, group_popular: np.ndarray,
    region_popular: np.ndarray, segment_popular: np.ndarray, fixed: tuple[int, int, int, int, int],
    n_kinds: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The learned ranker's reason codes, whether each is shown, and each kind's contribution.

    Parameters
    ----------
    contrib : ndarray of float32, shape (m, k, n_kinds + 4)
        Each kind's contribution, then each popularity level's (``features.reason_groups`` order).
    hide : ndarray of bool, shape (m, n_kinds), or None
        Kinds not to name for a user (their contribution reads 0).
    items : ndarray of int64, shape (m, k)
    user_topics, topic_idx
        As in :func:`best_topics`.
    authority_code : ndarray of int64, shape (n_items,)
    authority_named : ndarray of bool, shape (n_authorities,)
    authority_text : ndarray of int32, shape (n_authorities,)
        The code naming each authority level.
    topic_code : ndarray of int32, shape (n_topics, 101)
    groups, regions, segments : ndarray of int64, shape (m,)
    group_popular, region_popular, segment_popular : ndarray of int32
        The popularity reasons' codes per group, region and popularity row.
    fixed : tuple of int
        Codes of the city-wide popularity, similar users, co-engaged, fresh and good-content reasons.
    n_kinds : int

    Returns
    -------
    codes : ndarray of int32, shape (m, k, n_kinds)
    shown : ndarray of bool, shape (m, k, n_kinds)
    by_kind : ndarray of float32, shape (m, k, n_kinds)
    """
    m, k = items.shape
    codes = np.empty((m, k, n_kinds), np.int32)
    shown = np.empty((m, k, n_kinds), np.bool_)
    by_kind = np.empty((m, k, n_kinds), np.float32)
    hide = np.zeros((m, n_kinds), np.bool_) if hide is None else frozen(hide, np.bool_)
    _learned(
        frozen(contrib, np.float32), hide, frozen(items, np.int64), frozen(user_topics, np.float32), frozen(topic_idx, np.int64),
        frozen(authority_code, np.int64), frozen(authority_named, np.bool_), frozen(authority_text, np.int32),
        frozen(topic_code, np.int32), frozen(groups, np.int64), frozen(regions, np.int64), frozen(segments, np.int64),
        frozen(group_popular, np.int32), frozen(region_popular, np.int32), frozen(segment_popular, np.int32),
        np.asarray(fixed, np.int32), codes, shown, by_kind,
    )
    return codes, shown, by_kind


@numba.njit(cache=True, nogil=True)
def _linear(
    parts: np.ndarray, items: np.ndarray, user_topics: np.ndarray, topic_idx: np.ndarray, authority_code: np.ndarray,
    authority_named: np.ndarray, segments: np.ndarray, w: np.ndarray, relevance_code: np.ndarray, topic_code: np.ndarray,
    popularity_code: np.ndarray, fresh_authority_code: np.ndarray, minimums: np.ndarray,
    codes: np.ndarray, shown: np.ndarray, contrib: np.ndarray,
) -> None:
    """Fill ``codes``, ``shown`` and ``contrib`` (m, k, 4): relevance, topic, popularity, freshness and
    authority, each as :func:`recsys.ranking.reasons.explain` defines it (float32 arithmetic in its order;
    the thresholds as float32, which is how NumPy compares a float32 array with a Python float)."""
    m, k = items.shape
    n_topics = user_topics.shape[1]
    hundred = np.float32(100.0)
    spread = np.float32(n_topics)
    relevance_min, topic_min, over_uniform, popularity_min, fresh_min = minimums[0], minimums[1], minimums[2], minimums[3], minimums[4]
    for u in range(m):
        popular = popularity_code[segments[u]]
        for i in range(k):
            item = max(items[u, i], 0)
            rel, top, pop = parts[u, i, 0], parts[u, i, 1], parts[u, i, 2]
            fresh, auth, quality, learned, timely = parts[u, i, 3], parts[u, i, 4], parts[u, i, 5], parts[u, i, 6], parts[u, i, 8]
            best, weight = _checked_best_topic(u, item, user_topics, topic_idx)
            a = authority_code[item]
            is_fresh = fresh >= fresh_min
            r = np.rint(rel * hundred)
            r = min(max(r, np.float32(-100.0)), np.float32(100.0))
            codes[u, i, 0] = relevance_code[np.int64(r) + 100]
            codes[u, i, 1] = topic_code[min(best, n_topics - 1), np.int64(np.rint(weight * hundred))]
            codes[u, i, 2] = popular
            codes[u, i, 3] = fresh_authority_code[1 if is_fresh else 0, a]
            contrib[u, i, 0] = w[0] * rel
            contrib[u, i, 1] = w[1] * top + w[6] * learned
            contrib[u, i, 2] = w[2] * pop
            contrib[u, i, 3] = ((w[3] * fresh + w[4] * auth) + w[5] * quality) + w[8] * timely
            shown[u, i, 0] = rel >= relevance_min
            shown[u, i, 1] = top >= topic_min and best < n_topics and weight * spread >= over_uniform
            shown[u, i, 2] = pop >= popularity_min
            shown[u, i, 3] = is_fresh or authority_named[a]


def linear_codes(
    parts: np.ndarray, items: np.ndarray, user_topics: np.ndarray, topic_idx: np.ndarray, authority_code: np.ndarray,
    authority_named: np.ndarray, segments: np.ndarray, weights: np.ndarray, relevance_code: np.ndarray,
    topic_code: np.ndarray, popularity_code: np.ndarray, fresh_authority_code: np.ndarray,
    minimums: tuple[float, float, float, float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The linear blend's reason codes, whether each is shown, and each kind's contribution.

    Parameters
    ----------
    parts : ndarray of float32, shape (m, k, 9)
        The picked items' blend terms (``scoring.TERMS`` order).
    items, user_topics, topic_idx, authority_code, authority_named, segments
        As in :func:`learned_codes`.
    weights : ndarray of float32, shape (9,)
        The blend's weights (``scoring.weights``).
    relevance_code : ndarray of int32, shape (201,)
    topic_code : ndarray of int32, shape (n_topics, 101)
    popularity_code : ndarray of int32, shape (n_rows,)
    fresh_authority_code : ndarray of int32, shape (2, n_authorities)
    minimums : tuple of float
        The relevance, topic, topic-over-uniform, popularity and freshness thresholds.

    Returns
    -------
    codes : ndarray of int32, shape (m, k, 4)
    shown : ndarray of bool, shape (m, k, 4)
    contrib : ndarray of float32, shape (m, k, 4)
    """
    m, k = items.shape
    codes = np.empty((m, k, 4), np.int32)
    shown = np.empty((m, k, 4), np.bool_)
    contrib = np.empty((m, k, 4), np.float32)
    _linear(
        frozen(parts, np.float32), frozen(items, np.int64), frozen(user_topics, np.float32), frozen(topic_idx, np.int64),
        frozen(authority_code, np.int64), frozen(authority_named, np.bool_), frozen(segments, np.int64),
        frozen(weights, np.float32), frozen(relevance_code, np.int32), frozen(topic_code, np.int32),
        frozen(popularity_code, np.int32), frozen(fresh_authority_code, np.int32), np.asarray(minimums, np.float32),
        codes, shown, contrib,
    )
    return codes, shown, contrib


def warm() -> None:
    """Load the kernels now (or compile them), with the types the wrappers pass."""
    one_f, one_i = np.zeros((1, 1), np.float32), np.zeros((1, 1), np.int64)
    i1, c1 = np.zeros(1, np.int64), np.zeros(1, np.int32)
    learned_codes(np.zeros((1, 1, 2), np.float32), None, one_i, one_f, one_i, i1, np.zeros(1, np.bool_), c1,
                  np.zeros((1, 101), np.int32), i1, i1, i1, c1, c1, c1, (0, 0, 0, 0, 0), 1)
    linear_codes(np.zeros((1, 1, 9), np.float32), one_i, one_f, one_i, i1, np.zeros(1, np.bool_), i1, np.zeros(9, np.float32),
                 np.zeros(201, np.int32), np.zeros((1, 101), np.int32), c1, np.zeros((2, 1), np.int32), (0.0, 0.0, 0.0, 0.0, 0.0))
