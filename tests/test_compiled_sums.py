"""The training's compiled per-group sums (cold start means, topic profile sums) against NumPy's, bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.config import ColdStartConfig
from recsys.training.coldstart import _CHUNK, UserColdStart
from recsys.training.compiled_sums import add_rows_at, blocked_mean, group_means


def _data(n: int, width: int, dtype, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, width)) * 3 + rng.standard_normal(width)).astype(dtype)
    rows = np.sort(rng.choice(n, size=max(1, int(n * 0.9)), replace=False))
    return x, rows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 5, 70_000, 200_003])
def test_group_means_equal_numpy_gather_and_mean(n, dtype):
    x, rows = _data(n, 16, dtype, seed=n)
    rng = np.random.default_rng(n + 1)
    n_groups = min(7, len(rows))
    groups = np.concatenate([np.arange(n_groups), rng.integers(0, n_groups, len(rows) - n_groups)])
    got = group_means(x, rows, groups, n_groups)
    for g in range(n_groups):
        want = x[rows[groups == g]].mean(axis=0, dtype=np.float64)
        np.testing.assert_array_equal(got[g], want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,block", [(1, 4), (10, 3), (200_003, _CHUNK), (150_000, 1 << 14)])
def test_blocked_mean_equals_numpy_block_sums(n, block, dtype):
    x, rows = _data(n, 24, dtype, seed=n + block)
    total = np.zeros(x.shape[1])
    for start in range(0, len(rows), block):
        total += x[rows[start:start + block]].sum(axis=0, dtype=np.float64)
    np.testing.assert_array_equal(blocked_mean(x, rows, block), total / len(rows))


def test_user_cold_start_centroids_are_each_segments_mean():
    rng = np.random.default_rng(3)
    n = 5_000
    users = pd.DataFrame({
        "group": rng.choice(["farmer", "youth", "resident"], n),
        "sub_group": rng.choice(["", "a", "b"], n),
        "region": rng.choice(["qinglong", "haigang"], n),
    })
    factors = rng.standard_normal((n, 8)).astype(np.float32)
    warm = rng.random(n) < 0.8
    topics = rng.dirichlet(np.ones(5), n).astype(np.float32)
    cs = UserColdStart(ColdStartConfig()).fit(factors, users, user_topics=topics, warm=warm)
    keys = cs.keys_
    for k, key in keys.iterrows():
        member = warm.copy()
        if key["level"] != "global":
            member &= (users["group"] == key["group"]).to_numpy()
        if key["level"] == "segment":
            member &= (users["sub_group"] == key["sub_group"]).to_numpy()
        if key["level"] in ("segment", "group_region"):
            member &= (users["region"] == key["region"]).to_numpy()
        assert key["n_users"] == member.sum()
        np.testing.assert_array_equal(cs.centroids_[k], factors[member].mean(axis=0, dtype=np.float64).astype(np.float32))
    assert len(keys[keys["level"] == "segment"]) == len(users[warm].drop_duplicates())


@pytest.mark.parametrize("n", [0, 3, 100_000])
def test_add_rows_at_equals_numpy_add_at(n):
    rng = np.random.default_rng(n)
    values = rng.random((n, 25)) * 10.0 ** rng.integers(-3, 4, (n, 1))
    groups = rng.integers(0, 12, n)
    keep = rng.random(n) < 0.8
    want = rng.random((12, 25))
    got = want.copy()
    np.add.at(want, groups[keep], values[keep])
    add_rows_at(got, groups, values, keep)
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="C-ordered float64"):
        add_rows_at(got.astype(np.float32), groups, values, keep)


@pytest.mark.parametrize("n_users", [1, 50, 20_000])
def test_sparse_group_sums_equal_the_membership_product(n_users):
    import scipy.sparse as sp

    from recsys.training.compiled_sums import sparse_group_sums

    rng = np.random.default_rng(n_users)
    m = sp.random(n_users, 300, density=0.05, format="csr", random_state=n_users, dtype=np.float32)
    m.data *= np.float32(10) ** rng.integers(-3, 3, m.nnz).astype(np.float32)
    groups = rng.integers(0, 9, n_users)
    member = sp.csr_matrix((np.ones(n_users, np.float32), (groups, np.arange(n_users))), shape=(9, n_users))
    want = np.asarray((member @ m).todense(), dtype=np.float32)
    got = sparse_group_sums(m, groups, 9)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_sparse_group_sums_refuses_groups_that_do_not_fit_the_matrix():
    import scipy.sparse as sp

    from recsys.training.compiled_sums import sparse_group_sums

    m = sp.random(6, 4, density=0.5, format="csr", random_state=1, dtype=np.float32)
    with pytest.raises(ValueError, match="one group"):
        sparse_group_sums(m, np.array([0, 1, 2]), 3)
    with pytest.raises(ValueError, match="one group"):
        sparse_group_sums(m, np.array([0, 1, 2, 3, 0, 1]), 3)
