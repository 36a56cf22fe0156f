"""The scoring blend: one number per (user, candidate item).

::

    score = w_quality       * quality           # the engagement model's terms,
          + w_interest      * interest          # log-odds of engagement per
          + w_format        * format taste      # impression (recsys.training.engagement)
          + w_timeliness    * timeliness
          + w_collaborative * relevance         # the other signals, each on a
          + w_topic         * topic affinity    # fixed [0, 1] scale
          + w_popularity    * segment popularity
          + w_freshness     * freshness
          + w_authority     * authority

with the weights of :class:`recsys.config.RankingConfig`.

The engagement model's terms (log-odds; the model is fitted on every
impression of the window, so each is a rate, not a count that also measures
how often the old system showed something):

quality
    The item's learned quality (its authority level's plus its own); an
    item new to the bundle has its authority level's.
interest
    ``sum_t share_t * interest[u, t]``: the user's learned topic interest
    (their own, shrunk to their segment's and sub-group's) over the item's
    topics; a user the bundle does not know has their segment's.
format taste
    The user's learned taste for the item's format.
timeliness
    ``sum_t share_t * (sum_k fresh[t, k] * exp(-age / tau_k) + trend[t])``:
    freshness curves learned per topic (weather notices age in hours, health
    items in months) and the topic's recent lift (a campaign running now).

With weight 1 each, their sum is the model's predicted log-odds of
engagement, less the user's own propensity and the channel (which do not
change the order of one user's list). The other terms:

relevance, in [-1, 1]
    ``u . v / (|u| * s)``: the collaborative inner product of the user and item
    vectors, divided by the user's norm (ALS norms differ a lot between users)
    and by ``s``, the 99th percentile of item-vector norms, then clipped. An
    item's own norm is kept: it carries how broadly the item is liked.
topic affinity, in [0, 1]
    ``sum_t p_t * share_t / max_t p_t``: the user's readable topic profile ``p``
    against the item's topics (``share`` = 1 / number of topics of the item),
    relative to the user's strongest topic.
segment popularity, in [0, 1]
    Recency-weighted positive engagement in the user's group x region segment
    (what is trending there now, not all-time counts), ``log1p``-scaled by the
    segment's most popular item; a segment the bundle has no row for uses the
    city-wide recent popularity.
freshness, in [0, 1]
    ``0.5 ** (age_days / half_life)`` since publication; an item without a
    publish time counts as old (0).
authority, in [0, 1]
    The level of the item's source (``authority_levels``: national 1.0,
    provincial 0.6, municipal 0.3, other 0 by default).

Default weights: the engagement terms 1 (the fitted model as it stands).
The others trade simulated engagement against logged precision: on the
synthetic city the engagement terms alone gave the most simulated engagement
(true click probability of the pushed items) but the least precision@10 on
the logged test window, which also counts what the old system will show next
-- recent popularity and freshness say that. Popularity 1, freshness 0.5,
collaborative and topic affinity 0.5, authority 0.05 (quality already holds
what authority proxies for) cost about 2% of simulated engagement and won
back the logged precision (see ``RankingConfig``). They also carry a data set
without impressions, where the engagement model has nothing to learn from
and its terms are all 0.
Every weight is config (``[ranking] weight_*``); ``recsys tune`` searches all
nine weights on a validation window carved from the training data.

Every term is computed elementwise per (user, candidate) row, so a user's
scores do not depend on which other users share the batch (``recommend_many``
equals a loop of ``recommend``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

from recsys.config import RankingConfig
from recsys.ranking.catalog import NS_MIN, Catalog
from recsys.training.serving import TrainedModel

if TYPE_CHECKING:  # cycle: the state and the user batch import the scoring terms
    from recsys.ranking.state import RankingState
    from recsys.ranking.users import UserBatch

#: the blend's terms, in the order of :meth:`Components.stack` (config fields ``weight_<term>``)
TERMS = (
    "collaborative",
    "topic",
    "popularity",
    "freshness",
    "authority",
    "quality",
    "interest",
    "format",
    "timeliness",
)

_NS_PER_DAY = 86_400 * 10**9
# users per block of the 3-d gathers in :func:`components`
_ROW_BLOCK = 32


@dataclass(frozen=True)
class Components:
    """The blend's terms for a (m, c) candidate matrix (float32 each), in :data:`TERMS` order."""

    relevance: np.ndarray
    topic: np.ndarray
    popularity: np.ndarray
    freshness: np.ndarray
    authority: np.ndarray
    quality: np.ndarray
    interest: np.ndarray
    format: np.ndarray
    timeliness: np.ndarray

    def terms(self) -> list[np.ndarray]:
        """The terms as a list, in :data:`TERMS` order."""
        return [getattr(self, f.name) for f in fields(self)]

    def stack(self) -> np.ndarray:
        """The terms as one (m, c, len(TERMS)) array, in :data:`TERMS` order."""
        return np.stack(self.terms(), axis=-1)


@dataclass(frozen=True)
class EngagementInputs:
    """What the engagement model's terms read for one batch.

    Attributes
    ----------
    item_quality : ndarray of float32, shape (n_items,)
    item_timeliness : ndarray of float32, shape (n_items,)
        At the request's ``now``.
    user_interest : ndarray of float32, shape (m, n_topics)
    user_format : ndarray of float32, shape (m, n_formats)
    """

    item_quality: np.ndarray
    item_timeliness: np.ndarray
    user_interest: np.ndarray
    user_format: np.ndarray


def engagement_inputs(state: RankingState, users: UserBatch, now_ns: int) -> EngagementInputs:
    """The engagement terms' inputs of a batch: known users' own arrays, their segment's for the others.

    Parameters
    ----------
    state : RankingState
    users : UserBatch
    now_ns : int
    """
    tables = state.engagement
    known = users.rows >= 0
    rows = np.where(known, users.rows, 0)
    interest = np.where(known[:, None], tables.user_interest[rows], tables.segment_interest[users.segments])
    fmt = np.where(known[:, None], tables.user_format[rows], tables.segment_format[users.segments])
    return EngagementInputs(
        item_quality=tables.item_quality,
        item_timeliness=state.timeliness(now_ns),
        user_interest=interest.astype(np.float32),
        user_format=fmt.astype(np.float32),
    )


def weights(config: RankingConfig) -> np.ndarray:
    """The blend weights as a float32 (len(TERMS),) vector in :data:`TERMS` order."""
    return np.array([getattr(config, f"weight_{term}") for term in TERMS], dtype=np.float32)


def freshness(published_ns: np.ndarray, now_ns: int, half_life_days: float) -> np.ndarray:
    """``0.5 ** (age / half_life)``; 0 for items without a publish time."""
    age_days = np.maximum(now_ns - published_ns, 0).astype(np.float64) / _NS_PER_DAY
    fresh = np.exp2(-age_days / half_life_days).astype(np.float32)
    return np.where(published_ns == NS_MIN, np.float32(0.0), fresh)


def _gather_topics(profile: np.ndarray, flat_idx: np.ndarray, topic_weight: np.ndarray) -> np.ndarray:
    """``sum_j w_ij * profile[row, t_ij]`` for a (b, c) block of candidates; profile padded with a 0 column.

    ``flat_idx`` is :func:`_flat_topics` of the block: positions in the
    profile's flattened rows, so one ``np.take`` does the gather (a 2-D fancy
    index with broadcast row numbers costs ~2x more). The terms are summed
    left to right, the order ``sum(axis=2)`` used: the same float32 result.
    """
    prod = np.take(profile, flat_idx) * topic_weight
    out = prod[..., 0].copy()
    for j in range(1, prod.shape[2]):
        out += prod[..., j]
    return out


def _flat_topics(topic_idx: np.ndarray, width: int) -> np.ndarray:
    """Topic indices of a (b, c, t) block as positions into its (b, width) profiles, flattened."""
    return topic_idx + (np.arange(topic_idx.shape[0], dtype=topic_idx.dtype) * width)[:, None, None]


def _segment_rows(table: np.ndarray, segments: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``table[segments[:, None], items]`` by one flat take (a 2-D fancy index costs ~2x)."""
    flat = table.reshape(-1)  # a view of the C-ordered (memory-mapped) table
    return np.take(flat, items + (segments.astype(np.int64) * table.shape[1])[:, None])


def components(
    catalog: Catalog,
    cand: np.ndarray,
    user_vectors: np.ndarray,
    user_topics: np.ndarray,
    segments: np.ndarray,
    item_freshness: np.ndarray,
    *,
    engagement: EngagementInputs | None = None,
) -> Components:
    """Compute every term of the blend for each (user, candidate).

    Parameters
    ----------
    catalog : Catalog
    cand : ndarray of int64, shape (m, c)
        Candidate item indices; -1 (padding) rows get item 0's values and
        must be masked by the caller.
    user_vectors : ndarray of float32, shape (m, f)
    user_topics : ndarray of float32, shape (m, n_topics)
    segments : ndarray of int64, shape (m,)
        Row of :attr:`Catalog.popularity` for each user.
    item_freshness : ndarray of float32, shape (n_items,)
        :func:`freshness` of every item at the request's ``now`` (cached per
        ``now`` by the serving state).
    engagement : EngagementInputs, optional
        The engagement model's inputs (:func:`engagement_inputs`); without
        them its four terms are 0.

    Returns
    -------
    Components
        Each term as float32 (m, c).
    """
    safe = np.maximum(cand, 0)
    u = np.asarray(user_vectors, dtype=np.float32)
    p = np.asarray(user_topics, dtype=np.float32)
    m, c = cand.shape
    unorm = np.sqrt(np.einsum("mf,mf->m", u, u))
    inv_rel = np.float32(1.0 / catalog.cf_scale) / np.where(unorm > 0, unorm, np.float32(1.0))
    top = p.max(axis=1) if p.shape[1] else np.zeros(m, np.float32)
    inv_top = np.divide(np.float32(1.0), top, out=np.zeros_like(top), where=top > 0)
    # the profiles get a zero column for the topic lists' padding
    padded = np.hstack([p, np.zeros((m, 1), np.float32)])
    relevance = np.empty((m, c), dtype=np.float32)
    topic = np.empty((m, c), dtype=np.float32)
    interest = np.zeros((m, c), dtype=np.float32)
    if engagement is not None:
        padded_interest = np.hstack([engagement.user_interest, np.zeros((m, 1), np.float32)])
    # The (users x candidates x factors) gathers run in blocks of rows: small
    # temporaries stay in cache, and each row is computed the same way
    # whatever the batch (recommend_many equals a loop of recommend).
    # Item rows are gathered with np.take(..., axis=0): the same values as a fancy index,
    # 1.2x (factors) to 4x (the 3-wide topic lists) faster. One buffer holds every block's
    # item vectors (out=, mode="clip": unbuffered, the same values): a fresh multi-MB array per
    # block paid its page faults each time.
    rows_buf = np.empty((min(m, _ROW_BLOCK), c, catalog.cf.shape[1]), dtype=catalog.cf.dtype)
    for lo in range(0, m, _ROW_BLOCK):
        hi = min(m, lo + _ROW_BLOCK)
        block = safe[lo:hi]
        vectors = np.take(catalog.cf, block, axis=0, out=rows_buf[: hi - lo], mode="clip")
        relevance[lo:hi] = np.einsum("mcf,mf->mc", vectors, u[lo:hi])
        # the topic lists are gathered once for both profiles (the readable one and the learned interest)
        topic_idx = np.take(catalog.topic_idx, block, axis=0)
        t_idx, t_w = _flat_topics(topic_idx, padded.shape[1]), np.take(catalog.topic_weight, block, axis=0)
        topic[lo:hi] = _gather_topics(padded[lo:hi], t_idx, t_w)
        if engagement is not None:
            same = padded_interest.shape[1] == padded.shape[1]
            i_idx = t_idx if same else _flat_topics(topic_idx, padded_interest.shape[1])
            interest[lo:hi] = _gather_topics(padded_interest[lo:hi], i_idx, t_w)
    relevance *= inv_rel[:, None]
    np.clip(relevance, -1.0, 1.0, out=relevance)
    topic *= inv_top[:, None]
    np.clip(topic, 0.0, 1.0, out=topic)
    zeros = np.zeros((m, c), dtype=np.float32)
    if engagement is None:
        quality = timely = taste = zeros
    else:
        quality = np.take(engagement.item_quality, safe)
        timely = np.take(engagement.item_timeliness, safe)
        # an item of a format the taxonomy does not know (-1) has no format term: a zero column
        n_fmt = engagement.user_format.shape[1] + 1
        table = np.hstack([engagement.user_format.astype(np.float32), np.zeros((m, 1), np.float32)])
        fmt = np.take(catalog.format_code, safe)
        taste = np.take(table, np.where(fmt >= 0, fmt, n_fmt - 1) + (np.arange(m, dtype=np.int64) * n_fmt)[:, None])
    return Components(
        relevance=relevance,
        topic=topic,
        popularity=_segment_rows(catalog.popularity, segments, safe),
        freshness=np.take(item_freshness, safe),
        authority=np.take(catalog.authority, safe),
        quality=np.asarray(quality, dtype=np.float32),
        interest=interest,
        format=np.asarray(taste, dtype=np.float32),
        timeliness=np.asarray(timely, dtype=np.float32),
    )


def blend(parts: Components, config: RankingConfig) -> np.ndarray:
    """The weighted sum of the terms, float32 (m, c)."""
    w = weights(config)
    total = np.zeros_like(parts.relevance, dtype=np.float32)
    for weight, term in zip(w, parts.terms()):
        if weight != 0:
            total += weight * term
    return total


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, without overflow warnings for large negative log-odds (float64)."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def user_bias(model: TrainedModel, rows: np.ndarray) -> np.ndarray:
    """The engagement model's bias of each user row, float64; 0 for a cold user (row -1)."""
    rows = np.asarray(rows, dtype=np.int64)
    bias = np.asarray(model.user_bias, dtype=np.float64)
    return np.where(rows >= 0, bias[np.maximum(rows, 0)], 0.0)


def engagement_probability(state: RankingState, users: UserBatch, items: np.ndarray, now_ns: int) -> np.ndarray:
    """Probability that each user engages with each item if shown, float64 (m, c).

    ``sigmoid(intercept + user bias + quality + interest + format taste +
    timeliness)``: the engagement model's own prediction, from the very terms
    the blend reads (:func:`components` with :func:`engagement_inputs`), so the
    ranking and this figure never disagree about a term. A user the bundle
    does not know has bias 0 and their segment's interest and taste. The
    channel's effect is left out (the model's reference channel).

    Parameters
    ----------
    state : RankingState
    users : UserBatch
        m users.
    items : ndarray of int64, shape (m, c)
        Catalogue indices (no padding: every entry a real item).
    now_ns : int
        The time the items would be shown (timeliness).
    """
    items = np.asarray(items, dtype=np.int64)
    parts = components(
        state.catalog,
        items,
        users.vectors,
        users.topics,
        users.segments,
        state.freshness(now_ns),
        engagement=engagement_inputs(state, users, now_ns),
    )
    logit = (
        parts.quality.astype(np.float64)
        + parts.interest
        + parts.format
        + parts.timeliness
        + float(state.model.engagement_intercept)
        + user_bias(state.model, users.rows)[:, None]
    )
    return sigmoid(logit)
