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
from recsys.ranking.compiled_scoring import N_TERMS, frozen, score_pairs, weighted_sum
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
    fmt = np.where(known[:, None], tables.user_format[rows], tables.segment_format[users.segments])
    return EngagementInputs(
        item_quality=tables.item_quality,
        item_timeliness=state.timeliness(now_ns),
        user_interest=user_interest(state, users),
        user_format=fmt.astype(np.float32),
    )


def user_interest(state: RankingState, users: UserBatch) -> np.ndarray:
    """The engagement model's topic interest of each user, float32 (m, n_topics), read-only: a known
    user's own, their segment's for the others (made once per batch, ``users.memo``: the topic
    candidates and the blend both read it)."""
    hit = users.memo.get("interest")
    if hit is None:
        tables = state.engagement
        known = users.rows >= 0
        rows = np.where(known, users.rows, 0)
        interest = np.where(known[:, None], tables.user_interest[rows], tables.segment_interest[users.segments])
        hit = users.memo["interest"] = interest.astype(np.float32)
        hit.setflags(write=False)
    return hit


def weights(config: RankingConfig) -> np.ndarray:
    """The blend weights as a read-only float32 (len(TERMS),) vector in :data:`TERMS` order (made
    once per config object: a frozen dataclass, so its weights cannot change)."""
    hit = _WEIGHTS.get(id(config))
    if hit is None or hit[0] is not config:  # the entry holds its config: no id is reused meanwhile
        values = np.array([getattr(config, f"weight_{term}") for term in TERMS], dtype=np.float32)
        values.setflags(write=False)
        if len(_WEIGHTS) >= 64:
            _WEIGHTS.clear()
        hit = _WEIGHTS[id(config)] = (config, values)
    return hit[1]


_WEIGHTS: dict[int, tuple[RankingConfig, np.ndarray]] = {}


def freshness(published_ns: np.ndarray, now_ns: int, half_life_days: float) -> np.ndarray:
    """``0.5 ** (age / half_life)``; 0 for items without a publish time."""
    age_days = np.maximum(now_ns - published_ns, 0).astype(np.float64) / _NS_PER_DAY
    fresh = np.exp2(-age_days / half_life_days).astype(np.float32)
    return np.where(published_ns == NS_MIN, np.float32(0.0), fresh)


def _user_scales(catalog: Catalog, u: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per user: ``1 / (|u| * cf_scale)`` (relevance) and ``1 / max_t p`` (topic affinity), float32 (m,) each."""
    unorm = np.sqrt(np.einsum("mf,mf->m", u, u))
    inv_rel = np.float32(1.0 / catalog.cf_scale) / np.where(unorm > 0, unorm, np.float32(1.0))
    top = p.max(axis=1) if p.shape[1] else np.zeros(len(p), np.float32)
    inv_top = np.divide(np.float32(1.0), top, out=np.zeros_like(top), where=top > 0)
    return inv_rel.astype(np.float32), inv_top.astype(np.float32)


def score_block(
    catalog: Catalog,
    cand: np.ndarray,
    ok: np.ndarray | None,
    user_vectors: np.ndarray,
    user_topics: np.ndarray,
    segments: np.ndarray,
    item_freshness: np.ndarray,
    blend_weights: np.ndarray,
    *,
    engagement: EngagementInputs | None = None,
    keep_terms: bool = True,
) -> tuple[np.ndarray, Components | None]:
    """The blend's score of each (user, candidate), and optionally every term, in one compiled pass.

    Parameters
    ----------
    catalog : Catalog
    cand : ndarray of int64, shape (m, c)
        Candidate item indices; -1 (padding) gets item 0's values and must be
        masked by the caller (or by ``ok``).
    ok : ndarray of bool, shape (m, c), or None
        Pairs to score; the others get score ``-inf`` and are skipped (their
        terms are 0). None scores every pair.
    user_vectors : ndarray of float32, shape (m, f)
    user_topics : ndarray of float32, shape (m, n_topics)
    segments : ndarray of int64, shape (m,)
        Row of :attr:`Catalog.popularity` for each user.
    item_freshness : ndarray of float32, shape (n_items,)
        :func:`freshness` of every item at the request's ``now`` (cached per
        ``now`` by the serving state).
    blend_weights : ndarray of float32, shape (len(TERMS),)
        :func:`weights` of the config.
    engagement : EngagementInputs, optional
        The engagement model's inputs (:func:`engagement_inputs`); without
        them its four terms are 0.
    keep_terms : bool, default True
        Return the terms too (else None: the linear push reads the terms of
        its picks only, :func:`components` of those).

    Returns
    -------
    score : ndarray of float32, shape (m, c)
    parts : Components or None
        Each term as float32 (m, c).
    """
    u = frozen(user_vectors, np.float32)
    p = frozen(user_topics, np.float32)
    m, c = cand.shape
    inv_rel, inv_top = _user_scales(catalog, u, p)
    engaged = engagement is not None
    if engaged:
        interest, taste = frozen(engagement.user_interest, np.float32), frozen(engagement.user_format, np.float32)
        quality, timely = frozen(engagement.item_quality, np.float32), frozen(engagement.item_timeliness, np.float32)
    else:
        # read-only like the inputs above: the kernel's one compiled signature
        interest, taste = p, frozen(np.zeros((m, 0)), np.float32)
        quality = timely = frozen(np.zeros(0), np.float32)
    score = np.empty((m, c), np.float32)
    # the terms' buffer: (9, m, c), each term a contiguous (m, c) view
    terms = np.zeros((N_TERMS, m, c) if keep_terms else (N_TERMS, 0, 0), np.float32)
    score_pairs(
        frozen(cand, np.int64),
        frozen(np.ones((m, c), bool) if ok is None else ok, np.bool_),
        frozen(catalog.cf, np.float32),
        u,
        frozen(inv_rel, np.float32),
        p,
        frozen(inv_top, np.float32),
        interest,
        frozen(catalog.topic_idx, np.int64),
        frozen(catalog.topic_weight, np.float32),
        frozen(catalog.popularity, np.float32),
        frozen(segments, np.int64),
        frozen(item_freshness, np.float32),
        frozen(catalog.authority, np.float32),
        quality,
        timely,
        frozen(catalog.format_code, np.int64),
        taste,
        engaged,
        frozen(blend_weights, np.float32),
        score,
        terms,
        keep_terms,
    )
    return score, (Components(*terms) if keep_terms else None)


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
        :func:`freshness` of every item at the request's ``now``.
    engagement : EngagementInputs, optional
        The engagement model's inputs (:func:`engagement_inputs`); without
        them its four terms are 0.

    Returns
    -------
    Components
        Each term as float32 (m, c).
    """
    no_blend = np.zeros(len(TERMS), np.float32)  # the score is not read
    _, parts = score_block(
        catalog, cand, None, user_vectors, user_topics, segments, item_freshness, no_blend, engagement=engagement
    )
    return parts


def blend(parts: Components, config: RankingConfig) -> np.ndarray:
    """The weighted sum of the terms, float32 (m, c)."""
    terms = np.stack([np.asarray(t, np.float32) for t in parts.terms()])
    out = np.empty(terms.shape[1:], np.float32)
    weighted_sum(terms, frozen(weights(config), np.float32), out)
    return out


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
