"""The scoring blend: one number per (user, candidate item).

::

    score = w_collaborative * relevance
          + w_topic         * topic affinity
          + w_popularity    * segment popularity
          + w_freshness     * freshness
          + w_authority     * authority

with the weights of :class:`recsys.config.RankingConfig` and each term on a
fixed scale, so the weights read as exchange rates:

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

Popularity is strong for a one-shot push list; because relevance and topic
affinity are per user and on the same scale, the popularity weight moves
items only among those the user would plausibly take. ``recsys tune`` sets the
weights from a validation window.

Every term is computed elementwise per (user, candidate) row, so a user's
scores do not depend on which other users share the batch (``recommend_many``
equals a loop of ``recommend``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.config import RankingConfig
from recsys.ranking.catalog import NS_MIN, Catalog

#: the blend's terms, in the order of :attr:`Components.stack`
TERMS = ("collaborative", "topic", "popularity", "freshness", "authority")

_NS_PER_DAY = 86_400 * 10**9
# users per block of the 3-d gathers in :func:`components`
_ROW_BLOCK = 32


@dataclass(frozen=True)
class Components:
    """The blend's terms for a (m, c) candidate matrix (float32 each)."""

    relevance: np.ndarray
    topic: np.ndarray
    popularity: np.ndarray
    freshness: np.ndarray
    authority: np.ndarray

    def stack(self) -> np.ndarray:
        """The terms as one (m, c, 5) array, in :data:`TERMS` order."""
        return np.stack([self.relevance, self.topic, self.popularity, self.freshness, self.authority], axis=-1)


def weights(config: RankingConfig) -> np.ndarray:
    """The blend weights as a float32 (5,) vector in :data:`TERMS` order."""
    return np.array(
        [
            config.weight_collaborative,
            config.weight_topic,
            config.weight_popularity,
            config.weight_freshness,
            config.weight_authority,
        ],
        dtype=np.float32,
    )


def freshness(published_ns: np.ndarray, now_ns: int, half_life_days: float) -> np.ndarray:
    """``0.5 ** (age / half_life)``; 0 for items without a publish time."""
    age_days = np.maximum(now_ns - published_ns, 0).astype(np.float64) / _NS_PER_DAY
    fresh = np.exp2(-age_days / half_life_days).astype(np.float32)
    return np.where(published_ns == NS_MIN, np.float32(0.0), fresh)


def components(
    catalog: Catalog,
    cand: np.ndarray,
    user_vectors: np.ndarray,
    user_topics: np.ndarray,
    segments: np.ndarray,
    item_freshness: np.ndarray,
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
    # the profile gets a zero column for the topic lists' padding
    padded = np.hstack([p, np.zeros((m, 1), np.float32)])
    relevance = np.empty((m, c), dtype=np.float32)
    topic = np.empty((m, c), dtype=np.float32)
    # The (users x candidates x factors) gathers run in blocks of rows: small
    # temporaries stay in cache, and each row is computed the same way
    # whatever the batch (recommend_many equals a loop of recommend).
    for lo in range(0, m, _ROW_BLOCK):
        hi = min(m, lo + _ROW_BLOCK)
        block = safe[lo:hi]
        relevance[lo:hi] = np.einsum("mcf,mf->mc", catalog.cf[block], u[lo:hi])
        rows = np.arange(hi - lo)[:, None, None]
        topic[lo:hi] = (padded[lo:hi][rows, catalog.topic_idx[block]] * catalog.topic_weight[block]).sum(axis=2)
    relevance *= inv_rel[:, None]
    np.clip(relevance, -1.0, 1.0, out=relevance)
    topic *= inv_top[:, None]
    np.clip(topic, 0.0, 1.0, out=topic)
    return Components(
        relevance=relevance,
        topic=topic,
        popularity=catalog.popularity[segments[:, None], safe],
        freshness=item_freshness[safe],
        authority=catalog.authority[safe],
    )


def blend(parts: Components, config: RankingConfig) -> np.ndarray:
    """The weighted sum of the terms, float32 (m, c)."""
    w = weights(config)
    return (
        w[0] * parts.relevance
        + w[1] * parts.topic
        + w[2] * parts.popularity
        + w[3] * parts.freshness
        + w[4] * parts.authority
    ).astype(np.float32)
