"""The learned ranker's compiled first pass (``compiled_selection.first_pass``) against the rule read in NumPy.

Serving rescores, per user, the valid candidates among the best ``n / 2`` by
the linear blend and the best ``n / 2`` by the ranker's base feature; the
kernel picks them and gathers them to the front of a compact block. The
reference below is the NumPy code the kernel replaced: its output must be the
same arrays for any values, NaN and infinities and ties included.
"""

from __future__ import annotations

import numpy as np

from recsys.ranking.compiled_selection import first_pass


def _top_mask(values: np.ndarray, ok: np.ndarray, n: int) -> np.ndarray:
    """Per row, the valid columns among the ``n`` highest values (invalid ones count as -inf)."""
    v = np.where(ok, values, -np.inf)
    if n <= 0 or v.shape[1] <= n:
        return ok.copy()
    kth = -np.partition(-v, n - 1, axis=1)[:, n - 1 : n]
    return ok & ((v >= kth) | ~np.isfinite(kth))


def _reference(first: np.ndarray, second: np.ndarray, ok: np.ndarray, n1: int, n2: int) -> tuple[np.ndarray, np.ndarray]:
    keep = ok & (_top_mask(first, ok, n1) | _top_mask(second, ok, n2))
    width = int(keep.sum(axis=1).max()) if keep.size else 0
    pos = np.argsort(~keep, axis=1, kind="stable")[:, :width]
    return pos, np.take_along_axis(keep, pos, axis=1)


def _values(rng: np.random.Generator, shape: tuple[int, int], ties: bool) -> np.ndarray:
    v = rng.integers(-3, 4, shape).astype(np.float32) if ties else rng.standard_normal(shape).astype(np.float32)
    z = rng.random(shape)
    v[z < 0.05] = np.nan
    v[(z >= 0.05) & (z < 0.1)] = -np.inf
    v[(z >= 0.1) & (z < 0.13)] = np.inf
    v[(z >= 0.13) & (z < 0.15)] = -0.0
    return v


def test_the_first_pass_equals_the_rule_in_numpy():
    rng = np.random.default_rng(7)
    for case in range(1500):
        m, c = int(rng.integers(1, 6)), int(rng.integers(1, 60))
        first, second = _values(rng, (m, c), case % 2 == 0), _values(rng, (m, c), True)
        ok = rng.random((m, c)) < rng.random()
        n1, n2 = int(rng.integers(0, 30)), int(rng.integers(0, 30))
        pos, kept = first_pass(first, second, ok, n1, n2)
        want_pos, want_kept = _reference(first, second, ok, n1, n2)
        assert np.array_equal(pos, want_pos), (case, pos, want_pos)
        assert np.array_equal(kept, want_kept), (case, kept, want_kept)


def test_the_first_pass_keeps_the_best_of_each_score_and_fills_the_block():
    first = np.array([[9, 1, 2, 3, 8, 0]], np.float32)
    second = np.array([[0, 1, 7, 3, 2, 6]], np.float32)
    ok = np.array([[True, True, True, True, False, True]])
    pos, kept = first_pass(first, second, ok, 2, 1)
    # best two valid by the first score: columns 0 and 3 (column 4 is invalid); best by the second: 2;
    # a row of one valid candidate keeps it (its second best is -inf) and pads the block with the next column
    assert pos.tolist() == [[0, 2, 3]] and kept.all()
    two = np.vstack([first, first])
    pos, kept = first_pass(two, two, np.vstack([ok, [True, False, False, False, False, False]]), 2, 1)
    assert pos.tolist() == [[0, 3], [0, 1]] and kept.tolist() == [[True, True], [True, False]]
