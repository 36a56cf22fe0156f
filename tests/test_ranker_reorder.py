"""The order inside a list: the exposure model orders the items the ranker chose (issue 9)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest

from recsys import Recommender
from recsys.ranking import core
from recsys.ranking.eligibility import make_filter
from recsys.ranking.users import resolve
from recsys.training.ranker_training import choose_reorder, reorder_gain


def _queries(n_q: int, per: int, final_first: bool, rng: np.random.Generator):
    """Queries of ``per`` rows, one positive each, inside the final score's top 10 (its 8th best).

    The exposure model scores the positive highest (``final_first`` False) or lowest of the top 10.
    """
    final = np.tile(-np.arange(per, dtype=np.float64), n_q)
    y = np.zeros(n_q * per, np.int32)
    logged = rng.random(n_q * per)
    for q in range(n_q):
        pos = q * per + 7
        y[pos] = 1
        logged[pos] = -1.0 if final_first else 2.0
    return final, logged, y, np.full(n_q, per)


def test_the_reorder_is_adopted_where_the_exposure_order_is_clearly_better():
    rng = np.random.default_rng(0)
    final, logged, y, groups = _queries(40, 20, final_first=False, rng=rng)
    gain = reorder_gain(final, logged, y, groups)
    # the positive moves from rank 8 to rank 1 in every query
    np.testing.assert_allclose(gain, 1.0 - 1.0 / np.log2(9))
    ranker = SimpleNamespace(report={})
    out = choose_reorder(ranker, final, logged, y, groups)
    assert out["reorder_by_exposure"] is True and ranker.report["reorder_by_exposure"] is True
    assert out["reorder_valid_ndcg_at_10"]["queries"] == 40


def test_the_reorder_is_refused_where_it_is_worse_or_noise():
    rng = np.random.default_rng(1)
    final, logged, y, groups = _queries(40, 20, final_first=True, rng=rng)
    ranker = SimpleNamespace(report={})
    assert choose_reorder(ranker, final, logged, y, groups)["reorder_by_exposure"] is False
    # an exposure score unrelated to the label: the mean gain stays under one standard error
    refused = 0
    for seed in range(10):
        r = np.random.default_rng(seed)
        final, _, _, groups = _queries(60, 20, final_first=True, rng=r)
        y = (r.random(len(final)) < 0.1).astype(np.int32)
        out = choose_reorder(SimpleNamespace(report={}), final, r.random(len(final)), y, groups)
        refused += not out["reorder_by_exposure"]
    assert refused >= 7  # one-sided 1 SE: adopted by chance in about 16% of draws
    # a query outside the top 10 and a query without a positive do not count
    assert reorder_gain(np.arange(20.0), np.arange(20.0)[::-1], np.eye(20, dtype=np.int32)[0], np.array([20])).size == 1
    assert reorder_gain(np.arange(5.0), np.arange(5.0), np.zeros(5, np.int32), np.array([5])).size == 0


@pytest.fixture(scope="module")
def sample_model(trained_sample):
    # the sample trained once for this file and test_learned_ranker.py (tests/conftest.py); the
    # tests below change only copies of it (_without_reorder)
    return trained_sample[0]


def _without_reorder(model, value):
    other = copy.copy(model)
    ranker = copy.copy(model.ranker)
    ranker.report = {k: v for k, v in model.ranker.report.items() if k != "reorder_by_exposure"}
    if value is not None:
        ranker.report["reorder_by_exposure"] = value
    other.ranker = ranker
    return other


def _ranked(model, ids):
    rec = Recommender.from_model(model)
    state = rec.state
    users = resolve(state, ids, None)
    return state, users, core.rank(state, users, 10, make_filter(state.taxonomy), state.default_now_ns)


def test_the_sample_adopts_the_reorder_and_lists_keep_their_items(sample_model):
    model = sample_model
    rep = model.info["ranker"]["reorder_valid_ndcg_at_10"]
    assert model.ranker.reorders == (rep["gain"] > 0 and rep["gain"] >= rep["se"])
    ids = list(model.users["user_id"][:60])
    on_model = _without_reorder(model, True)
    off_model = _without_reorder(model, None)  # a bundle without the key: the ranker's order
    state, users, on = _ranked(on_model, ids)
    _, _, off = _ranked(off_model, ids)
    _, _, false = _ranked(_without_reorder(model, False), ids)
    np.testing.assert_array_equal(off.items, false.items)
    np.testing.assert_array_equal(off.scores, false.scores)
    # the same items, the same scores best first; only the order of the items changes
    assert (off.count == on.count).all()
    np.testing.assert_array_equal(np.sort(on.items, axis=1), np.sort(off.items, axis=1))
    np.testing.assert_array_equal(on.scores, off.scores)
    assert (np.diff(on.scores[:, :5], axis=1) <= 0).all()
    assert (on.items != off.items).any()
    # without a boost table: in the exposure model's order
    exposure = on_model.ranker.exposure_model
    assert on_model.ranker.used_features[exposure.used_features].all()
    from recsys.ranking import features as F

    for r in range(len(ids)):
        n = int(on.count[r])
        cand = on.items[r : r + 1, :n]
        block = F.Block(state, users.take(r), cand, state.default_now_ns)
        x = F.compute(state.features, block, used=state.used_features)[0]
        s = exposure.predict(x)
        assert (np.diff(s) <= 1e-6).all(), r


def test_recommend_equals_recommend_many_with_the_reorder_on(sample_model):
    rec = Recommender.from_model(_without_reorder(sample_model, True))
    ids = list(sample_model.users["user_id"][:15])
    many = rec.recommend_many(ids, k=10)
    for u in ids:
        assert many[many.user_id == u].item_id.tolist() == [r.item_id for r in rec.recommend(u, k=10)]


def test_priority_boosts_stay_on_top_of_the_exposure_order(sample_model):
    rec = Recommender.from_model(_without_reorder(sample_model, True))
    tax = rec.state.taxonomy
    table = np.zeros((len(tax.groups), len(tax.regions), len(tax.topics)), np.float32)
    table[:, :, 0] = 2.0
    boosted = rec.with_topic_boost(table)
    mixed = 0
    for user in list(sample_model.users["user_id"][:15]):
        flags = [any(s.startswith("重点推送") for s in r.reasons) for r in boosted.recommend(user, k=10)]
        # the boosted items first (a prefix), then the rest in the exposure model's order
        assert flags == sorted(flags, reverse=True), user
        mixed += 0 < sum(flags) < len(flags)
    assert mixed > 0


def test_the_reorder_moves_items_only_within_blocks_of_ten_ranks(sample_model):
    # a 20-item list's first 10 (and next 10) are the ranker's first 10 (and next 10), reordered
    ids = list(sample_model.users["user_id"][:40])
    on = Recommender.from_model(_without_reorder(sample_model, True))
    off = Recommender.from_model(_without_reorder(sample_model, None))
    moved = 0
    for u in ids:
        a = [r.item_id for r in on.recommend(u, k=20)]
        b = [r.item_id for r in off.recommend(u, k=20)]
        assert sorted(a[:10]) == sorted(b[:10]) and sorted(a[10:]) == sorted(b[10:]), u
        moved += a != b
    assert moved > 0  # the order did change somewhere
