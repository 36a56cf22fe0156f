"""The batch ranking path: candidates -> eligibility -> scoring -> diversity.

One code path for every consumer: a single ``recommend`` call is a batch of
one, ``recommend_many``, the nightly push and the evaluation pass many users
at once. Each step works on (m users x c candidates) arrays and a user's
result depends only on their own row, so the list a user gets does not depend
on who else is in the batch.

Filling to k: a user whose candidates yield fewer than k eligible,
non-near-duplicate items while more eligible items exist (tight filters,
a long history, an unusual segment) is ranked again exactly, over every item
eligible for them -- never a silently short list. With fewer than k eligible
items, the list holds what exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.ranking import candidates, diversity, eligibility, scoring
from recsys.ranking.eligibility import ItemFilter
from recsys.ranking.state import RankingState
from recsys.ranking.users import UserBatch


@dataclass(frozen=True)
class Ranked:
    """Ranked lists of a batch.

    Attributes
    ----------
    items : ndarray of int64, shape (m, k)
        Ranking item indices, best first, -1 padded.
    scores : ndarray of float32, shape (m, k)
    parts : ndarray of float32, shape (m, k, len(scoring.TERMS))
        Blend terms of each item (``scoring.TERMS`` order), for the reasons.
    count : ndarray of int64, shape (m,)
        Items in each list.
    exact : ndarray of bool, shape (m,)
        Users ranked by the exact fallback.
    """

    items: np.ndarray
    scores: np.ndarray
    parts: np.ndarray
    count: np.ndarray
    exact: np.ndarray


def _score_and_pick(
    state: RankingState, users: UserBatch, cand: np.ndarray, ok: np.ndarray, k: int, now_ns: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Blend-score candidates, sort, pick diverse top-k.

    Returns items (m, k), scores (m, k), terms (m, k, n_terms), count (m,) and the
    number of valid candidates per user (m,).
    """
    catalog = state.catalog
    cfg = state.config
    parts = scoring.components(
        catalog,
        cand,
        users.vectors,
        users.topics,
        users.segments,
        state.freshness(now_ns),
        engagement=scoring.engagement_inputs(state, users, now_ns),
    )
    score = scoring.blend(parts, cfg)
    score = np.where(ok, score, -np.inf)
    rows = np.arange(cand.shape[0])[:, None]
    # candidates are sorted by item index, so the stable sort breaks ties by index
    order = np.argsort(-score, axis=1, kind="stable")
    positions, count = diversity.select(
        cand[rows, order],
        ok[rows, order],
        catalog.primary_topic,
        k,
        cap=diversity.topic_cap(k, cfg.max_topic_share),
        neighbours=catalog.neighbours,
        n_topics=catalog.topic_bool.shape[1],
    )
    got = positions >= 0
    picked = order[rows, np.where(got, positions, 0)]
    items = np.where(got, cand[rows, picked], -1)
    scores = np.where(got, score[rows, picked], np.float32(0)).astype(np.float32)
    part_rows = np.stack([term[rows, picked] for term in parts.terms()], axis=-1) * got[..., None]
    return items, scores, part_rows.astype(np.float32), count, ok.sum(axis=1)


def rank(
    state: RankingState,
    users: UserBatch,
    k: int,
    filt: ItemFilter,
    now_ns: int,
    excludes: list[np.ndarray] | None = None,
) -> Ranked:
    """Rank items for a batch of users.

    Parameters
    ----------
    state : RankingState
    users : UserBatch
    k : int
        List length (checked by the caller).
    filt : ItemFilter
        Channel and topic filters.
    now_ns : int
        Eligibility time, UTC nanoseconds.
    excludes : list of int64 arrays, optional
        Per user, extra item indices to leave out.

    Returns
    -------
    Ranked
    """
    catalog = state.catalog
    n_items = catalog.n_items
    _, share = state.filtered(filt)
    cand = candidates.gather(state, users, k, filt, share, now_ns)
    ok = eligibility.candidate_mask(catalog, filt, cand, now_ns, users.groups, users.regions)
    keys = eligibility.history_keys(state.seen, users.rows, n_items, excludes)
    ok &= ~eligibility.history_mask(keys, cand, n_items)
    items, scores, parts, count, n_valid = _score_and_pick(state, users, cand, ok, k, now_ns)

    exact = np.zeros(len(users), dtype=bool)
    for r in np.flatnonzero(count < k):
        # short: rank again over every eligible item, unless the candidates were all of them
        static = state.static_mask(filt)
        full = eligibility.full_mask(catalog, static, now_ns, int(users.groups[r]), int(users.regions[r]))
        full[eligibility.seen_row(state.seen, int(users.rows[r]))] = False
        if excludes is not None and excludes[r] is not None and len(excludes[r]):
            full[np.asarray(excludes[r], dtype=np.int64)] = False
        if int(full.sum()) <= int(n_valid[r]):
            continue  # every eligible item was a candidate already
        one = users.take(r)
        everything = np.flatnonzero(full)[None, :]
        e_items, e_scores, e_parts, e_count, _ = _score_and_pick(
            state, one, everything, np.ones(everything.shape, dtype=bool), k, now_ns
        )
        items[r], scores[r], parts[r], count[r] = e_items[0], e_scores[0], e_parts[0], e_count[0]
        exact[r] = True
    return Ranked(items=items, scores=scores, parts=parts, count=count, exact=exact)
