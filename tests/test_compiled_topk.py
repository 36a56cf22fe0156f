"""The compiled top-k per row equals a full sort by (higher score, lower column)."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.training import compiled_topk
from recsys.training.compiled_topk import top_k_rows


def _reference(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    cols = np.array([np.lexsort((np.arange(s.shape[1]), -row))[:k] for row in s], dtype=np.int64).reshape(len(s), k)
    return np.take_along_axis(s, cols, axis=1), cols


def test_top_k_equals_a_full_sort_with_ties_signed_zeros_and_infinities() -> None:
    rng = np.random.default_rng(11)
    s = rng.standard_normal((60, 45)).astype(np.float32)
    s[:, ::3] = np.round(s[:, ::3])  # many exact ties, some at the k-th score
    s[0, :6] = -0.0  # equal to 0.0: ties by column, whatever the sign
    s[0, 6:9] = 0.0
    s[1, :] = -np.inf
    s[2, 4] = np.inf
    s[3, :] = 1.0  # all equal: the first k columns
    for k in (1, 2, 7, 30, 44, 45):
        vals, cols = top_k_rows(s, k)
        want_vals, want_cols = _reference(s, k)
        np.testing.assert_array_equal(cols, want_cols)
        np.testing.assert_array_equal(vals, want_vals)
        assert np.array_equal(np.signbit(vals), np.signbit(want_vals))  # the scores as they are in s
        assert vals.dtype == np.float32 and cols.dtype == np.int64


def test_scores_of_a_gemm_block_and_one_compiled_signature() -> None:
    rng = np.random.default_rng(5)
    s = rng.standard_normal((300, 16)).astype(np.float32) @ rng.standard_normal((16, 700)).astype(np.float32)
    frozen = s.copy()
    frozen.flags.writeable = False
    for given in (s, frozen, s.astype(np.float64), np.asfortranarray(s)):
        vals, cols = top_k_rows(given, 50)
        np.testing.assert_array_equal(cols, _reference(s, 50)[1])
    assert len(compiled_topk._keys.signatures) == 1


def test_bad_input_is_refused() -> None:
    s = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match="1 <= k <= 4"):
        top_k_rows(s, 5)
    with pytest.raises(ValueError, match="1 <= k <= 4"):
        top_k_rows(s, 0)
    s[1, 1:] = np.nan
    with pytest.raises(ValueError, match="row 1 has NaN"):
        top_k_rows(s, 2)


def test_top_at_least_equals_a_full_sort_of_the_two_blocks_end_to_end() -> None:
    rng = np.random.default_rng(3)
    head = rng.standard_normal((40, 30)).astype(np.float32)
    head[:, ::4] = np.round(head[:, ::4])  # ties, some at the k-th score and across the two blocks
    who = rng.permutation(40)[:25]
    rest = rng.standard_normal((25, 50)).astype(np.float32)
    rest[:, ::5] = np.round(rest[:, ::5])
    rest[0, :10] = -0.0  # a -0.0 comes back as -0.0 (the scores as they are in the blocks)
    full = np.hstack([head[who], rest])
    for k in (1, 5, 12, 30):
        # a bound each row has k scores above: its k-th best, or lower (more scores kept, same answer)
        kth = -np.sort(-full, axis=1)[:, k - 1]
        for bound in (kth, kth - 0.5, np.full(len(who), -np.inf, np.float32)):
            vals, cols = compiled_topk.top_at_least(head, who, rest, bound.astype(np.float32), k)
            want_vals, want_cols = _reference(full, k)
            np.testing.assert_array_equal(cols, want_cols)
            np.testing.assert_array_equal(vals, want_vals)
            assert np.array_equal(np.signbit(vals), np.signbit(want_vals))
    # a per-row limit reads only the first limit[r] columns of rest (a query's own cut)
    limit = rng.integers(0, 51, size=len(who))
    for r in range(len(who)):
        want_vals, want_cols = _reference(np.hstack([head[who[r]], rest[r, : limit[r]]])[None, :], 9)
        vals, cols = compiled_topk.top_at_least(head, who, rest, np.full(len(who), -np.inf, np.float32), 9, limit=limit)
        np.testing.assert_array_equal(cols[r], want_cols[0])
        np.testing.assert_array_equal(vals[r], want_vals[0])
    # no rest block (a query whose cut stays in the head)
    vals, cols = compiled_topk.top_at_least(head, who, np.zeros((25, 0), np.float32), np.full(25, -np.inf, np.float32), 7)
    np.testing.assert_array_equal(cols, _reference(head[who], 7)[1])
    # one compiled signature for every call, whether more than k keys were kept (partitioned) or k
    assert len(compiled_topk._keys_at_least.signatures) == 1
    assert len(compiled_topk._decode.signatures) == 1


def test_top_at_least_with_a_weak_bound_keeps_every_score_and_still_the_top_k() -> None:
    """A bound of -inf (a query whose k-th head score is <= 0 reads every row) keeps thousands of
    keys a row: partitioned to the k smallest, the answer is a full sort's."""
    rng = np.random.default_rng(8)
    head = rng.standard_normal((30, 500)).astype(np.float32)
    head[:, ::3] = np.round(head[:, ::3])  # many exact ties
    who = rng.permutation(30)[:20]
    rest = np.round(rng.standard_normal((20, 3000)), 1).astype(np.float32)
    full = np.hstack([head[who], rest])
    for k in (1, 50, 499, 3500):
        vals, cols = compiled_topk.top_at_least(head, who, rest, np.full(20, -np.inf, np.float32), k)
        want_vals, want_cols = _reference(full, k)
        np.testing.assert_array_equal(cols, want_cols)
        np.testing.assert_array_equal(vals, want_vals)


def test_top_at_least_refuses_a_bound_too_high() -> None:
    head = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match="row 0 has fewer than k=2"):
        compiled_topk.top_at_least(head, np.array([1, 0]), np.zeros((2, 3), np.float32), np.array([1.0, 0.0], np.float32), 2)


def test_top_at_least_refuses_shapes_the_kernels_would_read_past() -> None:
    from recsys.training.compiled_topk import top_at_least

    head = np.zeros((4, 6), np.float32)
    rest = np.zeros((2, 3), np.float32)
    bound = np.full(2, -1.0, np.float32)
    with pytest.raises(ValueError, match="who must index"):
        top_at_least(head, np.array([0, 4]), rest, bound, 2)
    with pytest.raises(ValueError, match="one rest row"):
        top_at_least(head, np.array([0, 1, 2]), rest, bound, 2)
    with pytest.raises(ValueError, match="k must be"):
        top_at_least(head, np.array([0, 1]), rest, bound, 0)
    vals, cols = top_at_least(head, np.array([0, 1]), rest, bound, 2)
    assert cols.tolist() == [[0, 1], [0, 1]] and (vals == 0).all()
