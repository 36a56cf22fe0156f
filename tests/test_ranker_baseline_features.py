"""The baselines inside the ranker's feature set (issue 9): the registry's ``segment_popularity``
feature orders a user's items as the ``segment_popular`` baseline does, and a ranker given that
feature alone reproduces the baseline's list."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.evaluation.baselines import ListingContext, make_baseline
from recsys.ranking import features as F
from recsys.ranking.state import build_state
from recsys.ranking.users import resolve
from recsys.training.ranker import LearnedRanker
from tests.ranking_world import hand_model, items_frame, users_frame

N_ITEMS = 12


def _world():
    users = users_frame(["farmer", "farmer", "urban_worker"], ["haigang", "haigang", "beidaihe"])
    rng = np.random.default_rng(3)
    # two segments that disagree about what is popular; the city-wide row only breaks ties
    seg_pop = np.vstack([rng.permutation(N_ITEMS), rng.permutation(N_ITEMS)]).astype(np.float32) * 3.0
    model = hand_model(
        users, items_frame(N_ITEMS), rng.normal(size=(3, 4)), rng.normal(size=(N_ITEMS, 4)),
        segment_popularity=seg_pop, popularity_recent=rng.random(N_ITEMS).astype(np.float32),
    )
    return model, seg_pop


def test_the_segment_popularity_feature_orders_items_as_the_segment_popular_baseline():
    model, seg_pop = _world()
    state = build_state(model, None, model.config.ranking)
    ids = [str(u) for u in model.users["user_id"]]
    cand = np.tile(np.arange(N_ITEMS, dtype=np.int64), (len(ids), 1))
    feat = next(f for f in F.registry(model.config.ranker) if f.name == "segment_popularity")
    values = np.asarray(feat.compute(F.Block(state, resolve(state, ids, None), cand, state.default_now_ns)))
    ctx = ListingContext.build(model, None, pd.Timestamp(model.window["end"]), pd.DataFrame())
    baseline = make_baseline("segment_popular").fit(ctx).score(np.arange(len(ids)))[:, :N_ITEMS]
    for r in range(len(ids)):
        want = np.argsort(-baseline[r], kind="stable")
        got = np.argsort(-values[r], kind="stable")
        np.testing.assert_array_equal(got, want)
    # the two segments' users get different orders: the feature reads the user's own segment
    assert not np.array_equal(np.argsort(-values[0]), np.argsort(-values[2]))
    np.testing.assert_array_equal(np.argsort(-values[0]), np.argsort(-seg_pop[0], kind="stable"))


def test_a_ranker_given_the_segment_popularity_feature_alone_reproduces_the_baselines_list():
    rng = np.random.default_rng(5)
    n_q, per = 80, 25
    pop = rng.random(n_q * per).astype(np.float32)
    # logged engagement follows segment popularity: each query's most popular fifth is engaged with
    y = np.zeros(n_q * per, np.int32)
    for q in range(n_q):
        block = pop[q * per : (q + 1) * per]
        y[q * per : (q + 1) * per] = block >= np.quantile(block, 0.8)
    ranker = LearnedRanker.fit(
        pop[:, None], y, np.full(n_q, per), ["segment_popularity"], base_feature="segment_popularity",
        monotone=[1], n_estimators=20,
    )
    model, _ = _world()
    state = build_state(model, None, model.config.ranking)
    ids = [str(u) for u in model.users["user_id"]]
    cand = np.tile(np.arange(N_ITEMS, dtype=np.int64), (len(ids), 1))
    feat = next(f for f in F.registry(model.config.ranker) if f.name == "segment_popularity")
    values = np.asarray(feat.compute(F.Block(state, resolve(state, ids, None), cand, state.default_now_ns)), np.float32)
    ctx = ListingContext.build(model, None, pd.Timestamp(model.window["end"]), pd.DataFrame())
    baseline = make_baseline("segment_popular").fit(ctx).score(np.arange(len(ids)))[:, :N_ITEMS]
    for r in range(len(ids)):
        scores = ranker.predict(values[r][:, None])
        assert list(np.argsort(-scores, kind="stable")[:10]) == list(np.argsort(-baseline[r], kind="stable")[:10])
