"""The compiled feature pass (recsys/ranking/compiled_features.py) against the registry's own functions.

Every registered feature's column must hold exactly the bits of its ``compute`` at the chosen pairs:
the trees split on these values, so a changed bit could change a list.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys import Recommender
from recsys.ranking import compiled_features
from recsys.ranking import features as F
from recsys.ranking.users import resolve
from recsys.training.engagement import LatentTaste

from ranking_world import hand_model, items_frame, users_frame

TOPICS = ("earthquake", "health_literacy", "ecology", "weather_climate")
N_ITEMS = 40


@pytest.fixture(scope="module")
def state():
    rng = np.random.default_rng(11)
    users = users_frame(["farmer", "youth", "resident", "farmer", "youth"], ["qinglong", "haigang", "haigang", "haigang", "qinglong"])
    published = pd.date_range("2026-05-01", periods=N_ITEMS, freq="13h", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ").tolist()
    for j in (3, 17):
        published[j] = None  # no publish time: the age is NaN
    items = items_frame(
        N_ITEMS,
        topics=[[TOPICS[j % len(TOPICS)]] + ([TOPICS[(j + 1) % len(TOPICS)]] if j % 3 == 0 else []) for j in range(N_ITEMS)],
        published_at=published,
    )
    model = hand_model(users, items, rng.normal(size=(5, 6)), rng.normal(size=(N_ITEMS, 6)),
                       popularity_recent=rng.random(N_ITEMS).astype(np.float32))
    sig = model.signals
    # co-engagement neighbours (float32 cosines, rows sorted) and recent positives with a repeat,
    # a user without any, and an item seen twice
    co = sp.csr_matrix(np.where(rng.random((N_ITEMS, N_ITEMS)) < 0.3, rng.random((N_ITEMS, N_ITEMS)), 0).astype(np.float32))
    recent = [[3, 7, 3], [], [39, 0, 12, 12, 5], [5], [21, 22]]
    model.signals = dataclasses.replace(
        sig,
        coengagement_indptr=co.indptr.astype(np.int64), coengagement_indices=co.indices, coengagement_data=co.data,
        user_recent_indptr=np.cumsum([0] + [len(r) for r in recent]).astype(np.int64),
        user_recent_indices=np.array([i for r in recent for i in r], np.int32),
        popularity_levels=rng.random(sig.popularity_levels.shape).astype(np.float32),
        popularity_windows=rng.random(sig.popularity_windows.shape).astype(np.float32) * 50,
        item_exposures=rng.random(sig.item_exposures.shape).astype(np.float32) * 9,
        user_activity=rng.random(sig.user_activity.shape).astype(np.float32) * 30,
    )
    model.popularity_all_time = rng.random(N_ITEMS).astype(np.float32) * 100
    # a latent taste term; user 4 and item 5 have none (zero vectors)
    user_taste = rng.normal(size=(5, 3)).astype(np.float32)
    item_taste = rng.normal(size=(N_ITEMS, 3)).astype(np.float32)
    user_taste[4] = 0
    item_taste[5] = 0
    model.taste = LatentTaste(user_taste, item_taste)
    return Recommender.from_model(model).state


def _block(state, ids=("u0", "u1", "u2", "u3", "u4", "cold")):
    # the last user is unknown to the bundle: a cold user of a given segment
    users = resolve(state, list(ids), [None] * (len(ids) - 1) + [("youth", None, "haigang")])
    rng = np.random.default_rng(12)
    cand = np.sort(rng.choice(N_ITEMS, size=(len(ids), 9)), axis=1)
    cand[1, -2:] = -1  # padding reads item 0
    cand[2, 0] = 3  # an item without a publish time
    return F.Block(state, users, cand, state.default_now_ns)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, np.float32).view(np.int32)


def test_every_registered_feature_equals_its_registry_function_bit_for_bit(state):
    feats = F.registry(state.model.config.ranker)
    block = _block(state)
    m, c = block.cand.shape
    pos = np.array([0, 5, 8, 9, 16, 17, 18, 20, 30, 44, 47, 53], np.int64)  # some pairs: padding, no publish time
    got = F.compute_rows(feats, block, pos)
    reference = F.Block(state, block.users, block.cand, block.now_ns)  # a fresh block: nothing shared
    for j, feat in enumerate(feats):
        want = np.broadcast_to(np.asarray(feat.compute(reference), np.float32), (m, c)).reshape(-1)[pos]
        assert np.array_equal(_bits(got[:, j]), _bits(want)), feat.name
    # the fixture reaches the values that need care: NaN ages, a zero taste, a cold user's zeros
    age = got[:, [f.name for f in feats].index("item_age_days")]
    assert np.isnan(age).any() and np.isfinite(age).any()
    assert (got[:, [f.name for f in feats].index("coengagement")] > 0).sum() >= 3
    whole = F.compute(feats, F.Block(state, block.users, block.cand, block.now_ns))
    assert whole.shape == (m, c, len(feats)) and np.array_equal(_bits(whole.reshape(-1, len(feats))[pos]), _bits(got))


def test_the_kernel_reads_what_the_features_mean(state):
    """A plain reading of three compiled columns, independent of the registry's NumPy code."""
    feats = F.registry(state.model.config.ranker)
    names = [f.name for f in feats]
    block = _block(state)
    m, c = block.cand.shape
    pos = np.arange(m * c, dtype=np.int64)
    got = F.compute_rows(feats, block, pos).reshape(m, c, -1)
    cat = state.catalog
    levels = np.asarray(state.signals.popularity_levels)
    first_group = 1
    for r in range(m):
        for q in range(c):
            item = max(int(block.cand[r, q]), 0)
            pub = int(cat.published_ns[item])
            age = got[r, q, names.index("item_age_days")]
            if pub == np.iinfo(np.int64).min:
                assert np.isnan(age)
            else:
                assert age == np.float32((block.now_ns - pub) / 86_400e9)
            row = first_group + int(block.users.groups[r])
            assert got[r, q, names.index("pop_group_h7d")] == levels[1, row, item] * np.float32(1000)
            assert got[r, q, names.index("als_score")] == pytest.approx(
                float(np.dot(cat.cf[item].astype(np.float64), np.asarray(block.users.vectors[r], np.float64))), rel=1e-5, abs=1e-6
            )


def test_unused_columns_are_zero_and_the_others_unchanged(state):
    feats = F.registry(state.model.config.ranker)
    block = _block(state)
    pos = np.arange(block.cand.size, dtype=np.int64)
    used = np.arange(len(feats)) % 3 != 0
    full = F.compute_rows(feats, block, pos)
    some = F.compute_rows(feats, F.Block(state, block.users, block.cand, block.now_ns), pos, used=used)
    assert np.all(some[:, ~used] == 0)
    assert np.array_equal(_bits(some[:, used]), _bits(full[:, used]))


def test_a_feature_the_kernel_does_not_know_is_computed_by_its_function(state):
    feats = (
        F.Feature("doubled_item", lambda b: (b.safe * 2 + 0.25).astype(np.float32), None, True),
        *F.registry(state.model.config.ranker)[:3],
    )
    block = _block(state)
    pos = np.array([1, 4, 9, 40], np.int64)
    out = np.full((len(pos), len(feats)), np.nan, np.float32)
    got = F.compute_rows(feats, block, pos, out=out)
    assert got is out
    assert np.array_equal(got[:, 0], (np.maximum(block.cand.reshape(-1)[pos], 0) * 2 + 0.25).astype(np.float32))
    plan = next(iter(state._features.values()))
    with pytest.raises(ValueError, match="C-ordered float32"):
        compiled_features.fill(np.zeros((len(pos), len(plan.fixed.code)), np.float64), pos, block.cand, plan.fixed,
                               *([np.zeros((1, 1), np.float32)] * 2), np.zeros((4, 1), np.int64), 0,
                               np.zeros((1, 1), np.float32), np.zeros((1, 0), np.int64))


def test_a_state_copied_with_other_signals_does_not_reuse_the_plan(state):
    feats = F.registry(state.model.config.ranker)
    j = [f.name for f in feats].index("coengagement")
    block = _block(state)
    pos = np.arange(block.cand.size, dtype=np.int64)
    before = F.compute_rows(feats, block, pos)[:, j]
    doubled = state.coengagement.copy()
    doubled.data = doubled.data * np.float32(2)
    other = dataclasses.replace(state, coengagement=doubled)  # shares the state's caches
    block2 = F.Block(other, block.users, block.cand, block.now_ns)
    got = F.compute_rows(feats, block2, pos)[:, j]
    want = np.asarray(feats[j].compute(F.Block(other, block.users, block.cand, block.now_ns)), np.float32).reshape(-1)
    assert np.array_equal(got, want) and not np.array_equal(got, before)


def test_recent_items_outside_the_coengagement_matrix_are_refused(state):
    from recsys.exceptions import ArtifactError

    feats = F.registry(state.model.config.ranker)
    small = state.coengagement[:30, :30].tocsr()  # a matrix of another bundle: 30 items, seeds up to 39
    small.sort_indices()
    other = dataclasses.replace(state, coengagement=small)
    block = F.Block(other, _block(state).users, _block(state).cand, state.default_now_ns)
    with pytest.raises(ArtifactError, match="co-engagement matrix"):
        F.compute_rows(feats, block, np.arange(block.cand.size, dtype=np.int64))
