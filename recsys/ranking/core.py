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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from recsys.ranking import candidates, compiled_selection, diversity, eligibility, features, scoring
from recsys.ranking.eligibility import ItemFilter
from recsys.ranking.state import RankingState
from recsys.ranking.users import UserBatch
from recsys.training.serving import REORDER_BLOCK


@dataclass(frozen=True)
class Ranked:
    """Ranked lists of a batch.

    Attributes
    ----------
    items : ndarray of int64, shape (m, k)
        Ranking item indices, best first, -1 padded.
    scores : ndarray of float32, shape (m, k)
    parts : ndarray of float32, shape (m, k, n)
        For the reasons: the blend terms of each item (``scoring.TERMS``
        order), or with the learned ranker how much each reason kind and
        popularity level lifted its score (``features.reason_groups`` order).
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


def _learned_scores(
    state: RankingState, users: UserBatch, cand: np.ndarray, ok: np.ndarray, linear: np.ndarray, now_ns: int,
    parts: scoring.Components | None,
    blended: Callable[[np.ndarray, np.ndarray | None, bool], tuple[np.ndarray, scoring.Components | None]], k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The learned ranker's scores of the valid candidates (m, c), their feature rows, where each
    candidate's row is, and the exposure model's scores of the rows where the score read them.

    With ``[ranker] rescore = N`` only a user's ``N`` best candidates by a
    cheap first pass are scored by the ranker (the rest keep -inf): the best
    ``N / 2`` by the linear blend and the best ``N / 2`` by the ranker's base
    feature (the strongest single signal at training time), so both what
    engages and what is popular reach the second pass. ``N`` is raised to
    ``2 k + 10`` for long lists, so the second pass always has more than
    ``k`` items to choose from.

    Only the first pass's one feature is computed for every candidate; the
    blend's terms and the full feature rows are computed for the rescored
    candidates alone, and a feature no tree splits on is left at 0 (the
    trees never read it, so the scores are the same). ``blended`` is the
    blend's scoring of a block, with or without its terms: each pair's terms
    are computed alone, so they are the bits the first pass's score was made
    of. ``parts``, the first pass's terms, are given when every valid
    candidate is rescored (:func:`_first_pass` is 0) or the block is a few
    users' (:data:`_TERMS_FIRST`), else ``None``. The
    feature rows (r, F) are the rescored candidates' and one last row of
    zeros; ``where`` (m, c) holds each candidate's row (the zero row for the
    others): the reasons read picked items, which are always among the
    rescored.
    """
    ranker = state.ranker
    n = _first_pass(state, cand.shape[1], k)
    if not n:
        # every valid candidate is rescored: the first pass's terms are theirs
        block = features.Block(state, users, cand, now_ns)
        assert parts is not None  # _score_and_pick keeps every pair's terms when every valid one is rescored
        block.__dict__["parts"] = parts
        rescored = at = np.flatnonzero(ok)
    else:
        first = features.Block(state, users, cand, now_ns, gather_all=False)  # reads the base feature only
        if parts is not None:
            first.__dict__["parts"] = parts  # a base feature that is a blend term reads them, not computes them
        # the kept candidates of each row first, in their order: a compact (m, w) block
        pos, kept = compiled_selection.first_pass(linear, _base_scores(state, first), ok, n // 2, n - n // 2)
        # a base feature that is a blend term made the block compute every pair's terms: the rescored
        # pairs' are taken from them (the same bits: each pair's terms are computed alone)
        parts = first.__dict__.get("parts", parts)
        flat = np.arange(cand.shape[0])[:, None] * cand.shape[1] + pos
        block = features.Block(state, users, np.where(kept, np.take(cand, flat), -1), now_ns)
        # the blend's terms of the rescored pairs: read from the first pass's, or computed for them alone
        block.__dict__["parts"] = (
            blended(block.cand, kept, True)[1] if parts is None else scoring.Components(*(np.take(t, flat) for t in parts.terms()))
        )
        rescored = np.flatnonzero(kept)
        at = np.take(flat, rescored)  # each rescored row's position in (m, c), row order
    # the rescored rows' features in one compiled pass, with one last row of zeros: the ranker
    # predicts them (one predict for the whole block) and the reasons read them through ``where``
    n_rows = len(rescored)
    x = np.zeros((n_rows + 1, len(state.features)), np.float32)
    features.compute_rows(state.features, block, rescored, used=state.used_features, out=x[:n_rows])
    score = np.full(cand.shape, -np.inf, dtype=np.float32)
    score.reshape(-1)[at], logged = ranker.predict_logged(x[:n_rows])
    where = np.full(cand.shape, n_rows, np.int64)
    where.reshape(-1)[at] = np.arange(n_rows)
    return score, x, where, logged


#: blocks of at most this many users keep every pair's blend terms in the first pass: a single
#: call's few hundred pairs cost less than a second scoring call's fixed cost
_TERMS_FIRST = 4


def _first_pass(state: RankingState, c: int, k: int) -> int:
    """How many of a user's ``c`` candidates the learned ranker rescores (``[ranker] rescore``, at
    least ``2 k + 10``), or 0 when it rescores every valid one: ``rescore = 0``, no more candidates
    than that, or a ranker without a base feature (the first pass's second half then ties every
    candidate, and all of them are kept)."""
    n = state.model.config.ranker.rescore
    n = max(n, 2 * k + 10) if n else 0
    return n if n and c > n and state.ranker.base_feature is not None else 0


def _base_scores(state: RankingState, block: features.Block) -> np.ndarray:
    """The ranker's starting score (its base feature) for every candidate of a block, (m, c)."""
    ranker = state.ranker
    if ranker.base_feature is None:
        return np.zeros(block.cand.shape, np.float32)
    feature = next(f for f in state.features if f.name == ranker.base_feature)
    values = np.asarray(feature.compute(block), np.float32)
    return ranker.base(values.reshape(-1, 1), column=0).reshape(block.cand.shape)


def _exposure_order(
    state: RankingState, users: UserBatch, cand: np.ndarray, x: np.ndarray, where: np.ndarray,
    picked: np.ndarray, got: np.ndarray, now_ns: int, logged_rows: np.ndarray | None = None,
) -> np.ndarray:
    """Each row's picked columns of ``cand`` in the exposure model's order, the push's priority boosts first.

    The ranker chose the items (what engages when shown); the model of the
    logged engagement orders them, where training adopted it
    (``LearnedRanker.reorders``). Ties keep the ranker's order. Items move only
    within blocks of :data:`REORDER_BLOCK` ranks, the block training measured:
    the ranker's first 10 (20, ...) stay the list's first 10 (20, ...).
    ``logged_rows``: the exposure model's scores of the rows of ``x``, when the
    ranker's score read them (the picks' are taken from them, not predicted again).
    """
    rows = np.arange(picked.shape[0])[:, None]
    logged = np.full(picked.shape, -np.inf)
    at = where[rows, picked][got]
    logged[got] = state.ranker.exposure_model.predict(x[at]) if logged_rows is None else logged_rows[at]
    value = features.boost_values(state, users, np.where(got, cand[rows, picked], -1), now_ns)
    boost = np.where(got, np.float32(0) if value is None else np.asarray(value).astype(np.float32), -np.inf)
    block = np.broadcast_to(np.arange(picked.shape[1]) // REORDER_BLOCK, picked.shape)
    order = np.lexsort((-logged, -boost, block), axis=-1)  # stable; padding (-inf) stays last in its block
    return picked[rows, order]


def _score_and_pick(
    state: RankingState, users: UserBatch, cand: np.ndarray, ok: np.ndarray, k: int, now_ns: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Score candidates (learned ranker, or the linear blend), sort, pick diverse top-k.

    Returns items (m, k), scores (m, k), parts (m, k, n) -- the blend terms,
    or how much each reason kind lifted the score -- count (m,), the number
    of valid candidates per user (m,) and whether a list needed
    near-duplicates to fill (m,).
    """
    catalog = state.catalog
    cfg = state.config
    if cand.shape[1] == 0:
        # no candidate for anyone in the block (e.g. a catalogue with no eligible item): empty lists
        m = cand.shape[0]
        n_parts = len(state.reason_groups) if state.ranker is not None else len(scoring.TERMS)
        return (
            np.full((m, k), -1, np.int64), np.zeros((m, k), np.float32), np.zeros((m, k, n_parts), np.float32),
            np.zeros(m, np.int64), ok.sum(axis=1), np.zeros(m, bool),
        )
    engagement = scoring.engagement_inputs(state, users, now_ns)
    blend_weights = scoring.weights(cfg)

    def blended(items: np.ndarray, valid: np.ndarray | None, keep_terms: bool) -> tuple[np.ndarray, scoring.Components | None]:
        return scoring.score_block(
            catalog, items, valid, users.vectors, users.topics, users.segments, state.freshness(now_ns),
            blend_weights, engagement=engagement, keep_terms=keep_terms,
        )

    # ineligible pairs are skipped (-inf); the linear blend reads the terms of its picks only (below),
    # the learned ranker those of the pairs it rescores: all valid pairs' here unless a first pass
    # keeps a few (then only theirs are computed, in ``_learned_scores``); a block of a few users
    # keeps every valid pair's terms either way (a second scoring call costs more than they do)
    learned = state.ranker is not None
    terms = cand.shape[0] <= _TERMS_FIRST or (learned and not _first_pass(state, cand.shape[1], k))
    score, parts = blended(cand, ok, terms)
    x = where = logged = None
    if learned:
        score, x, where, logged = _learned_scores(state, users, cand, ok, score, now_ns, parts, blended, k)
    score = features.add_boosts(state, users, cand, score, now_ns)  # the push's priorities; none: unchanged
    rows = np.arange(cand.shape[0])[:, None]
    # candidates are sorted by item index, so score order breaks ties by index; only each
    # row's best few dozen are sorted (diversity.select_scored), not the whole row
    picked, count, relaxed = diversity.select_scored(
        cand,
        score,
        catalog.primary_topic,
        k,
        cap=diversity.topic_cap(k, cfg.max_topic_share),
        neighbours=state.neighbour_graph(),
        n_topics=catalog.topic_bool.shape[1],
    )
    got = picked >= 0
    picked = np.where(got, picked, 0)
    # read before any reorder: the picks come in score order, so the score column falls with the rank
    # whatever order the exposure model gives the items
    scores = np.where(got, score[rows, picked], np.float32(0)).astype(np.float32)
    if x is not None and state.ranker.reorders and got.any():
        picked = _exposure_order(state, users, cand, x, where, picked, got, now_ns, logged)
    items = np.where(got, cand[rows, picked], -1)
    if x is None:
        # each pair's terms are computed alone, so the picks' terms are the bits the score was made of
        # (read from the first pass's when it kept them: every pick is a valid pair)
        picked_parts = blended(cand[rows, picked], None, True)[1] if parts is None else (
            scoring.Components(*(t[rows, picked] for t in parts.terms()))
        )
        part_rows = np.stack(picked_parts.terms(), axis=-1) * got[..., None]
    else:
        # the ranker's reasons: how much each reason kind (and popularity level) lifted each picked item
        m, kk = picked.shape
        groups = state.reason_groups
        # from the features alone: a boost (added after the ranker) is no group's contribution
        contrib = state.ranker.group_contributions(x[where[rows, picked][got]], groups)
        part_rows = np.zeros((m, kk, len(groups)), np.float32)
        part_rows[got] = contrib
    return items, scores, part_rows.astype(np.float32), count, ok.sum(axis=1), relaxed


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
    share = state.filtered(filt)
    cand = candidates.gather(state, users, k, filt, share, now_ns)
    keys = eligibility.history_keys(state.seen, users.rows, n_items, excludes)
    ok = eligibility.candidate_mask(catalog, filt, cand, now_ns, users.groups, users.regions, history=keys)
    items, scores, parts, count, n_valid, relaxed = _score_and_pick(state, users, cand, ok, k, now_ns)

    exact = np.zeros(len(users), dtype=bool)
    # short lists, and lists filled with near-duplicates (other eligible items may exist beyond the candidates)
    for r in np.flatnonzero((count < k) | relaxed):
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
        e_items, e_scores, e_parts, e_count, _, _ = _score_and_pick(
            state, one, everything, np.ones(everything.shape, dtype=bool), k, now_ns
        )
        items[r], scores[r], parts[r], count[r] = e_items[0], e_scores[0], e_parts[0], e_count[0]
        exact[r] = True
    return Ranked(items=items, scores=scores, parts=parts, count=count, exact=exact)
