"""candidates.merge: each row's distinct items ascending, then -1 padding, cut to the longest row."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.ranking import candidates


def _reference(cand: np.ndarray) -> np.ndarray:
    rows = [sorted({int(v) for v in row if v >= 0}) for row in cand]
    width = max((len(r) for r in rows), default=0)
    out = np.full((cand.shape[0], width), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


@pytest.mark.parametrize("offset", [0, 2**40])  # item indices that fit int32, and ones that do not
def test_merge_equals_a_set_per_row(offset):
    rng = np.random.default_rng(7)
    cand = rng.integers(0, 60, size=(50, 40)) + offset
    cand[rng.random(cand.shape) < 0.3] = -1  # the sources' padding
    cand[3] = -1  # a row with no candidate at all
    got = candidates.merge(cand)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, _reference(cand))


def test_merge_of_nothing():
    assert candidates.merge(np.zeros((4, 0), dtype=np.int64)).shape == (4, 0)
    assert candidates.merge(np.full((2, 3), -1, dtype=np.int64)).shape == (2, 0)
