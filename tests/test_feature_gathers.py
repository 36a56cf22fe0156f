"""The ranking features' flat gathers equal numpy's own indexing, value for value."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.ranking import features as F


@pytest.fixture()
def table() -> np.ndarray:
    # (half-lives, level rows, items), like Signals.popularity_levels
    return np.random.default_rng(3).random((4, 7, 50)).astype(np.float32)


def test_gather_levels_equals_numpy_indexing_by_broadcast_arrays(table):
    rng = np.random.default_rng(4)
    rows = rng.integers(0, 7, (4, 5))  # (levels, users)
    items = rng.integers(0, 50, (5, 9))  # (users, candidates)
    got = F._gather_levels(table, rows[:, :, None], items[None, :, :])
    assert got.shape == (4, 4, 5, 9)
    assert np.array_equal(got, table[:, rows[:, :, None], items[None, :, :]])
    # one half-life's table (a C-ordered slice) and one level's rows
    one = F._gather_levels(table[2], rows[1][:, None], items)
    assert np.array_equal(one, table[2][rows[1][:, None], items])
    # a table that is not C-ordered is indexed by numpy itself (no flat view of it exists)
    strided = np.asfortranarray(table)
    assert np.array_equal(F._gather_levels(strided, rows[:, :, None], items[None]), got)


def test_per_thousand_scales_in_place_and_zeroes_new_items(table):
    vals = table[:, :2, :9].copy()  # (4, 2, 9): two users' nine candidates
    in_bundle = np.ones((2, 9), bool)
    in_bundle[1, 4:] = False  # catalogue items the bundle does not know
    want = np.where(in_bundle, vals * 1000.0, 0).astype(np.float32)
    got = F._per_thousand(vals, in_bundle)
    assert got is vals and got.dtype == np.float32
    assert np.array_equal(got, want)
    assert not got[..., 1, 4:].any() and got[..., 0, :].all()
    # float64 shares take numpy's own steps (same values, float32 out)
    wide = table[:, :2, :9].astype(np.float64)
    assert np.array_equal(F._per_thousand(wide, in_bundle), np.where(in_bundle, wide * 1000.0, 0).astype(np.float32))
