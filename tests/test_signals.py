"""The training-time ranking signals (recsys/training/signals.py) against plain computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.config import RankerConfig
from recsys.taxonomy import load_taxonomy
from recsys.training.interactions import type_codes
from recsys.training.signals import compute_signals, coengagement


def _positives(seed: int, users: int = 300, items: int = 700) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = rng.random((users, items)) < rng.uniform(0.002, 0.08, size=(1, items))
    return sp.csr_matrix(dense.astype(np.float32))


def test_coengagement_keeps_each_items_best_cosines():
    p = _positives(1)
    k = 5
    got = coengagement(p, k)
    dense = p.toarray().astype(np.float64)
    counts = dense.T @ dense
    norm = np.sqrt(dense.sum(axis=0))
    inv = np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 0)
    cos = counts * inv[:, None] * inv[None, :]
    np.fill_diagonal(cos, 0.0)
    assert got.shape == (700, 700) and got.has_sorted_indices
    assert np.diff(got.indptr).max() == k  # the block crosses rows with more than k co-engaged items
    for item in range(700):
        cols = got.indices[got.indptr[item]:got.indptr[item + 1]]
        vals = got.data[got.indptr[item]:got.indptr[item + 1]]
        row = cos[item]
        nonzero = np.sort(row[row > 0])[::-1]
        assert len(cols) == min(k, len(nonzero)) and item not in cols
        np.testing.assert_allclose(vals, row[cols].astype(np.float32), rtol=1e-6)
        # the kept values are the row's k best (ties at the cut may be any of the tied items)
        np.testing.assert_allclose(np.sort(vals)[::-1], nonzero[:k].astype(np.float32), rtol=1e-6)


def test_event_type_codes_given_or_looked_up_give_the_same_signals():
    rng = np.random.default_rng(3)
    taxonomy = load_taxonomy()
    n_users, n_items, n = 40, 30, 600
    types = rng.choice(["impression", "click", "read", "like", "dismiss", "share"], size=n)
    events = pd.DataFrame({
        "event_type": types,
        "timestamp": pd.Timestamp("2024-06-30T00:00:00Z") - pd.to_timedelta(rng.uniform(0, 40, n), unit="D"),
    })
    users = pd.DataFrame({"group": ["farmer"] * n_users, "region": ["haigang"] * n_users})
    u, i = rng.integers(-1, n_users, n), rng.integers(0, n_items, n)  # -1: an unknown user's events
    end = pd.Timestamp("2024-06-30T00:00:00Z")
    a = compute_signals(events, u, i, users, n_items, end, taxonomy, RankerConfig())
    b = compute_signals(events, u, i, users, n_items, end, taxonomy, RankerConfig(), types=type_codes(events["event_type"]))
    for name in a.ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    shown = (types == "impression") & (u >= 0)
    np.testing.assert_array_equal(a.item_exposures, np.bincount(i[shown], minlength=n_items))
    positive = np.isin(types, ["click", "read", "like", "share"]) & (u >= 0)
    np.testing.assert_array_equal(a.user_activity[:, 0],
                                  [len(set(i[positive & (u == x)])) for x in range(n_users)])


def test_channel_counts_count_each_users_positive_events_per_channel():
    from recsys.training.interactions import channel_counts

    taxonomy = load_taxonomy()
    channels = list(taxonomy.channels)
    rng = np.random.default_rng(5)
    n, n_users = 500, 12
    events = pd.DataFrame({
        "event_type": rng.choice(["impression", "click", "share", "dismiss", "complete"], size=n),
        "channel": rng.choice(channels[:3] + ["", "carrier_pigeon"], size=n),  # "" and an unknown: not counted
    })
    user = rng.integers(-1, n_users, n)
    want = np.zeros((n_users, len(channels)))
    for t, c, u in zip(events["event_type"], events["channel"], user):
        if t in ("click", "share", "complete") and c in channels and u >= 0:
            want[u, channels.index(c)] += 1
    got = channel_counts(events, user, n_users, taxonomy)
    assert got.dtype == np.float32 and want.sum() > 0
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(channel_counts(events, user, n_users, taxonomy, types=type_codes(events["event_type"])), want)
