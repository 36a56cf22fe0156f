"""diversity.select_scored: the same picks as diversity.select over fully sorted rows."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.ranking import diversity


def _select_sorted(cand, score, primary, k, **kw):
    """The reference: sort every row whole (stable, best first), walk it, map positions to columns."""
    order = np.argsort(-score, axis=1, kind="stable")
    positions, count, relaxed = diversity.select(
        np.take_along_axis(cand, order, axis=1), np.isfinite(np.take_along_axis(score, order, axis=1)), primary, k, **kw
    )
    got = positions >= 0
    return np.where(got, np.take_along_axis(order, np.where(got, positions, 0), axis=1), -1), count, relaxed


def _world(seed: int, m: int = 120, c: int = 200, n_items: int = 400, n_topics: int = 6, drop: float | None = None):
    rng = np.random.default_rng(seed)
    cand = np.sort(rng.choice(n_items, size=(m, c)), axis=1)
    # coarse scores: many ties, which the order must break by column as a stable sort does
    score = np.round(rng.normal(size=(m, c)) * 3).astype(np.float32)
    score[rng.random((m, c)) < (rng.choice([0.0, 0.5, 0.97]) if drop is None else drop)] = -np.inf
    score[0] = -np.inf  # a row with nothing valid
    score[1, 5:] = -np.inf  # a row with fewer valid candidates than the walk's head
    primary = rng.integers(0, n_topics + 1, size=n_items)
    # near-duplicate groups, so that blocked items make some rows read past the head
    pairs = rng.integers(0, n_items, size=(n_items, 2))
    neighbours: dict[int, set[int]] = {}
    for a, b in pairs.tolist():
        if a != b:
            neighbours.setdefault(a, set()).add(b)
            neighbours.setdefault(b, set()).add(a)
    return cand, score, primary, {i: tuple(sorted(v)) for i, v in neighbours.items()}, n_topics


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 5, 20])
def test_select_scored_equals_select_over_sorted_rows(seed, k):
    cand, score, primary, neighbours, n_topics = _world(seed)
    for cap in (1, 2, k):  # a tight cap sends many rows past the head, into the whole row
        kw = {"cap": cap, "neighbours": neighbours, "n_topics": n_topics}
        got = diversity.select_scored(cand, score, primary, k, **kw)
        want = _select_sorted(cand, score, primary, k, **kw)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def test_select_scored_on_narrow_rows_and_no_rows():
    cand, score, primary, neighbours, n_topics = _world(3, c=20)
    kw = {"cap": 2, "neighbours": neighbours, "n_topics": n_topics}
    for a, b in zip(diversity.select_scored(cand, score, primary, 5, **kw), _select_sorted(cand, score, primary, 5, **kw)):
        np.testing.assert_array_equal(a, b)
    wide = _world(3)
    for c, s in ((cand, score), wide[:2]):
        columns, count, relaxed = diversity.select_scored(c[:0], s[:0], primary, 5, **kw)
        assert columns.shape == (0, 5) and count.shape == (0,) and relaxed.shape == (0,)


def test_rows_that_cannot_fill_from_the_head_read_the_whole_row():
    """The world's tight cap sends rows past their first few dozen candidates: they read on, in order."""
    cand, score, primary, neighbours, n_topics = _world(0, c=300, drop=0.1)
    kw = {"cap": 1, "neighbours": neighbours, "n_topics": n_topics}
    got = diversity.select_scored(cand, score, primary, 10, **kw)
    for a, b in zip(got, _select_sorted(cand, score, primary, 10, **kw)):
        np.testing.assert_array_equal(a, b)
    # rows whose picks go over the cap: their first pass walked the whole row before relaxing it
    rows = np.arange(cand.shape[0])[:, None]
    topics = np.where(got[0] >= 0, primary[cand[rows, np.maximum(got[0], 0)]], -1)
    over = [np.bincount(t[t >= 0], minlength=n_topics + 1).max() > 1 for t in topics]
    assert sum(over) > 10
