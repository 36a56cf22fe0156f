"""Item-to-item regression neighbours (``[ranker] coengagement_weights = "regression"``, EASE).

The weights are checked against their definition (each item's column regressed on the other
items' columns with a ridge penalty), the limits (items outside the regression, kept weights,
no self pairs), and the one property that sets them apart from cosines: an item engaged with
by everyone (a hub) is not a strong neighbour of everything.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.config import RankerConfig, config_from_dict
from recsys.exceptions import RecsysError
from recsys.training.item_regression import regression_neighbours
from recsys.training.signals import coengagement, compute_signals
from tests.ranking_world import TAX

END = pd.Timestamp("2026-06-01T00:00:00Z")


def _random_positives(seed: int, n_users: int = 60, n_items: int = 12, density: float = 0.3) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((n_users, n_items)) < density).astype(np.float32))


def _ridge_weights(x: np.ndarray, l2: float) -> np.ndarray:
    """The definition: item j's column predicted from every other column, ridge penalty l2."""
    n = x.shape[1]
    w = np.zeros((n, n))
    for j in range(n):
        others = [i for i in range(n) if i != j]
        a = x[:, others]
        w[others, j] = np.linalg.solve(a.T @ a + l2 * np.eye(len(others)), a.T @ x[:, j])
    return w


def test_the_weights_are_each_items_ridge_regression_on_the_others():
    pos = _random_positives(0)
    x = pos.toarray().astype(np.float64)
    want = _ridge_weights(x, 5.0)
    n = x.shape[1]
    got = regression_neighbours(pos, neighbours=n, l2=5.0, max_items=n).toarray()
    # every positive weight is kept (neighbours = all items), the negative ones dropped
    np.testing.assert_allclose(got, np.where(want > 0, want, 0.0), rtol=1e-4, atol=1e-6)
    assert (want < 0).any()  # the check above would not see dropped weights otherwise
    assert np.diag(got).sum() == 0


def test_each_seed_keeps_its_largest_weights_and_items_outside_the_regression_none():
    pos = _random_positives(1, n_items=15)
    counts = np.asarray(pos.sum(axis=0)).ravel()
    head = np.sort(np.argsort(-counts, kind="stable")[:8])
    got = regression_neighbours(pos, neighbours=3, l2=2.0, max_items=8)
    assert got.shape == (15, 15)
    rows = np.repeat(np.arange(15), np.diff(got.indptr))
    assert set(rows.tolist()) <= set(head.tolist()) and set(got.indices.tolist()) <= set(head.tolist())
    assert (np.diff(got.indptr) <= 3).all() and (got.data > 0).all()
    # the kept weights are the largest of the regression restricted to the head
    full = _ridge_weights(pos.toarray()[:, head].astype(np.float64), 2.0)
    for r, item in enumerate(head):
        row = got[item].toarray().ravel()[head]
        best = np.sort(full[r][full[r] > 0])[::-1][:3]
        np.testing.assert_allclose(np.sort(row[row > 0])[::-1], best, rtol=1e-4)
    assert regression_neighbours(pos, neighbours=3, l2=2.0, max_items=8).toarray().tolist() == got.toarray().tolist()


def test_a_hub_item_is_a_weaker_neighbour_than_under_cosine():
    """Item 0 is engaged with by every user; items 1 and 2 always together by half of them.
    Knowing a user engaged with item 1 says nothing about item 0 beyond its base rate, and the
    regression sees that; the cosine still ranks the hub close to item 1's true partner."""
    n_users = 40
    x = np.zeros((n_users, 6), np.float32)
    x[:, 0] = 1
    x[:20, 1] = x[:20, 2] = 1
    rng = np.random.default_rng(3)
    x[:, 3:] = rng.random((n_users, 3)) < 0.3
    pos = sp.csr_matrix(x)
    reg = regression_neighbours(pos, neighbours=5, l2=1.0, max_items=6).toarray()
    cos = coengagement(pos, 5).toarray()
    # relative to item 1's true partner, the hub weighs less than half as much as under cosine
    assert reg[1, 0] / reg[1, 2] < 0.5 * cos[1, 0] / cos[1, 2]
    assert cos[1, 0] / cos[1, 2] > 0.7


def test_signals_use_the_regression_when_configured():
    rng = np.random.default_rng(4)
    n = 300
    u = rng.integers(0, 30, n).astype(np.int64)
    i = rng.integers(0, 10, n).astype(np.int64)
    events = pd.DataFrame({"event_type": ["click"] * n, "timestamp": END - pd.to_timedelta(rng.random(n) * 20, unit="D")})
    users = pd.DataFrame({"group": ["farmer"] * 30, "region": ["haigang"] * 30})
    cosine = compute_signals(events, u, i, users, 10, END, TAX, RankerConfig())
    reg = compute_signals(events, u, i, users, 10, END, TAX, RankerConfig(coengagement_weights="regression", regression_l2=3.0))
    pos = sp.csr_matrix((np.ones(n, np.float32), (u, i)), shape=(30, 10))
    want = regression_neighbours(pos, 50, 3.0, 4096)
    assert reg.coengagement().toarray().tolist() == want.toarray().astype(np.float32).tolist()
    assert cosine.coengagement().toarray().tolist() != reg.coengagement().toarray().tolist()
    # everything else is the same
    np.testing.assert_array_equal(cosine.recent_items(np.arange(30)), reg.recent_items(np.arange(30)))
    np.testing.assert_array_equal(cosine.popularity_levels, reg.popularity_levels)


@pytest.mark.parametrize(
    "field, value", [("coengagement_weights", "ease"), ("regression_l2", 0.0), ("regression_items", 1)]
)
def test_bad_settings_are_refused_with_the_field_named(field, value):
    with pytest.raises(RecsysError, match=field):
        config_from_dict({"ranker": {field: value}})
