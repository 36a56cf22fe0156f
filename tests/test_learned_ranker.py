"""The learned ranking stage: LightGBM ranker, feature registry, reasons, diversity that never starves a list."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from recsys import Recommender
from recsys.config import EngineConfig
from recsys.training.model import TrainedModel
from recsys.training.ranker import LearnedRanker
from recsys.ranking import features as F
from recsys.ranking.reasons import FILLER, FRESH, FRESH_MIN, LEARNED_KINDS
from recsys.training.signals import popularity_levels, shrinkage_strength
from recsys.taxonomy import load_taxonomy
from recsys.training import train_model
from tests.ranking_world import hand_model, items_frame, users_frame


def _queries(rng: np.random.Generator, n_q: int, per: int, n_feat: int):
    x = rng.random((n_q * per, n_feat)).astype(np.float32)
    return x, np.full(n_q, per, np.int64)


def test_a_feature_that_predicts_the_label_ranks_first():
    rng = np.random.default_rng(0)
    x, groups = _queries(rng, 60, 20, 3)
    y = (x[:, 1] > 0.7).astype(np.int32)  # feature 1 is the label; 0 and 2 are noise
    ranker = LearnedRanker.fit(x, y, groups, ["noise_a", "signal", "noise_b"], n_estimators=30, min_child_samples=5)
    test = rng.random((50, 3)).astype(np.float32)
    scores = ranker.predict(test)
    truth = test[:, 1] > 0.7
    assert scores[truth].min() > scores[~truth].max()
    gain = ranker.booster.feature_importance("gain")
    assert gain.argmax() == 1


def test_the_recent_popularity_feature_alone_reproduces_its_ordering():
    rng = np.random.default_rng(1)
    n_q, per = 80, 25
    counts = rng.integers(0, 40, n_q * per).astype(np.float32)
    # engagement follows popularity: the most popular third of each query is engaged with
    y = np.zeros(n_q * per, np.int32)
    for q in range(n_q):
        block = counts[q * per : (q + 1) * per]
        y[q * per : (q + 1) * per] = block >= np.quantile(block, 2 / 3)
    ranker = LearnedRanker.fit(
        counts[:, None], y, np.full(n_q, per), ["trend_7d"], base_feature="trend_7d", monotone=[1], n_estimators=20
    )
    probe = np.arange(0, 40, dtype=np.float32)
    scores = ranker.predict(probe[:, None])
    # the recent_popular baseline's order: by count, highest first
    assert list(np.argsort(-scores, kind="stable")[:10]) == list(np.argsort(-probe, kind="stable")[:10])


def test_group_contributions_are_zero_for_unused_features_and_positive_for_the_signal():
    rng = np.random.default_rng(2)
    x, groups = _queries(rng, 40, 15, 2)
    y = (x[:, 0] > 0.7).astype(np.int32)
    ranker = LearnedRanker.fit(x, y, groups, ["a", "b"], n_estimators=15, min_child_samples=5)
    ranker.report["feature_means"] = [float(v) for v in x.mean(axis=0)]
    test = np.array([[0.95, 0.2], [0.05, 0.8]], np.float32)
    contrib = ranker.group_contributions(test, [np.array([0]), np.array([1]), np.array([], np.int64)])
    unused = "b" not in [n for n, g in zip(ranker.feature_names, ranker.booster.feature_importance("gain")) if g > 0]
    if unused:
        assert np.all(contrib[:, 1] == 0)
    assert np.all(contrib[:, 2] == 0)
    assert contrib[0, 0] > 0 >= contrib[1, 0]  # a high signal lifts the item, a low one does not


def test_empirical_bayes_shrinks_small_segments_more():
    # a segment of 2 engagements on item 0 against a city that prefers item 1
    n_items = 2
    users_g = np.array([0, 0, 1] + [1] * 200)
    users_r = np.zeros(len(users_g), np.int64)
    u = np.arange(len(users_g))
    i = np.array([0, 0, 1] + [1] * 150 + [0] * 50)
    levels, strength = popularity_levels(u, i, np.zeros(len(u)), users_g, users_r, 2, 1, n_items, [7.0])
    raw_small = 1.0  # the small group engaged only with item 0
    small = levels[0, 1]  # group 0's shrunk shares
    big = levels[0, 2]
    assert small[0] < raw_small  # pulled toward the city
    assert abs(big[1] - 0.75) < 0.05  # a big group keeps (almost) its own share
    assert np.all(strength > 0)


def test_shrinkage_strength_is_large_when_rows_agree_with_the_parent():
    parent = np.array([[0.5, 0.5]] * 3)
    same = np.array([[50.0, 50.0], [40.0, 40.0], [30.0, 30.0]])
    apart = np.array([[100.0, 0.0], [0.0, 100.0], [90.0, 10.0]])
    assert shrinkage_strength(same, parent) > shrinkage_strength(apart, parent)


@pytest.fixture(scope="module")
def sample_model(trained_sample):
    # the sample trained once for this file and test_ranker_reorder.py (tests/conftest.py)
    return trained_sample


def test_training_the_sample_fits_a_ranker_from_the_registry(sample_model):
    model, _ = sample_model
    assert model.ranker is not None
    rep = model.info["ranker"]
    assert rep["kind"] == "learned" and rep["queries"] > 50 and rep["cold_queries"] > 0
    assert model.ranker.feature_names == [f.name for f in F.registry(model.config.ranker)]


def test_save_load_gives_identical_scores_and_lists(sample_model, tmp_path):
    model, _ = sample_model
    path = model.save(tmp_path / "models")
    loaded = TrainedModel.load(path)
    assert loaded.ranker is not None and loaded.ranker.feature_names == model.ranker.feature_names
    ids = list(model.users["user_id"][:40])
    a = Recommender.from_model(model).recommend_many(ids, k=10)
    b = Recommender.from_model(loaded).recommend_many(ids, k=10)
    pd.testing.assert_frame_equal(a, b)


def test_reasons_name_only_contributing_features(sample_model):
    model, _ = sample_model
    rec = Recommender.from_model(model)
    state = rec.state
    from recsys.ranking import core
    from recsys.ranking.eligibility import make_filter
    from recsys.ranking.users import resolve

    with_history = np.flatnonzero(np.asarray(state.signals.user_activity[:, 0]) > 0)[:30]
    users = resolve(state, list(model.users["user_id"].to_numpy()[with_history]), None)
    ranked = core.rank(state, users, 10, make_filter(state.taxonomy), state.default_now_ns)
    reasons = rec._reasons(state, users, ranked, state.default_now_ns)
    by_kind = ranked.parts[..., : len(LEARNED_KINDS)].copy()
    # the freshness kind ("新发布") counts only for an item fresh at now (the next test)
    fresh = state.freshness(state.default_now_ns)[np.maximum(ranked.items, 0)]
    by_kind[..., LEARNED_KINDS.index("fresh")] *= fresh >= FRESH_MIN
    for r, row in enumerate(reasons):
        for j, texts in enumerate(row):
            positive = int((by_kind[r, j] > 0).sum())
            if positive == 0:
                assert texts == [FILLER]
            else:
                assert len(texts) == min(positive, 3)


def test_new_is_said_only_of_items_fresh_at_the_calls_now(sample_model):
    # freshness is relative to the call's now: four years after the data no item is new, though
    # the ranker's freshness and timeliness features may still lift old items' scores
    model, _ = sample_model
    rec = Recommender.from_model(model)
    state = rec.state
    ids = list(model.users["user_id"][:60])
    for now_ns in (state.default_now_ns, state.default_now_ns + 4 * 365 * 86_400 * 10**9):
        now = pd.Timestamp(now_ns, unit="ns", tz="UTC")
        lists = rec.recommend_many(ids, k=10, now=now)
        fresh = state.freshness(now_ns)[[state.catalog.index_of[i] for i in lists["item_id"]]]
        said = np.array([FRESH in reasons for reasons in lists["reasons"]])
        assert not said[fresh < FRESH_MIN].any(), lists[said & (fresh < FRESH_MIN)].head()
        if now_ns == state.default_now_ns:
            assert said.any()  # at the data's end some picked items are new, and are called so
        else:
            assert (fresh < FRESH_MIN).all() and not said.any()
        one = rec.recommend(ids[0], k=10, now=now)
        assert [r.reasons for r in one] == [list(r) for r in lists[lists.user_id == ids[0]]["reasons"]]


def test_recommend_many_with_excludes_equals_a_loop_of_recommend(sample_model):
    model, _ = sample_model
    rec = Recommender.from_model(model)
    ids = list(model.users["user_id"][:12])
    first = rec.recommend_many(ids, k=8)
    exclude = {u: first[first.user_id == u].item_id.tolist()[:3] for u in ids[::2]}
    many = rec.recommend_many(ids, k=8, exclude=exclude)
    for u in ids:
        one = [r.item_id for r in rec.recommend(u, k=8, exclude=exclude.get(u))]
        assert many[many.user_id == u].item_id.tolist() == one
        assert not set(one) & set(exclude.get(u, []))


def test_a_templated_title_catalogue_still_fills_the_list():
    n = 40
    items = items_frame(n, title=[f"科普知识第{j}期：关于健康生活的科学常识" for j in range(n)])
    users = users_frame(["farmer"], ["qinglong"])
    rng = np.random.default_rng(0)
    config = dataclasses.replace(EngineConfig(), ranking=dataclasses.replace(EngineConfig().ranking, ranker="linear"))
    model = hand_model(users, items, rng.random((1, 4)), rng.random((n, 4)), config=config)
    recs = Recommender.from_model(model).recommend("u0", k=10)
    assert len(recs) == 10
    assert len({r.item_id for r in recs}) == 10


def test_the_first_pass_keeps_every_valid_candidate_when_fewer_than_asked():
    from recsys.ranking.compiled_selection import first_pass

    values = np.array([[5.0, 1.0, 3.0, 0.0, 2.0], [1.0, 2.0, 3.0, 4.0, 5.0]], np.float32)
    ok = np.array([[True, False, True, False, False], [True, True, True, True, True]])
    pos, kept = first_pass(values, values, ok, 3, 3)
    # 2 valid < 3 asked: both kept, then the block's width filled with the others in order
    assert pos[0].tolist() == [0, 2, 1] and kept[0].tolist() == [True, True, False]
    assert pos[1].tolist() == [2, 3, 4] and kept[1].tolist() == [True, True, True]


def test_coengagement_feature_equals_a_dense_computation(sample_model):
    model, _ = sample_model
    rec = Recommender.from_model(model)
    state = rec.state
    from recsys.ranking.users import resolve

    users = resolve(state, list(model.users["user_id"][:40]), None)
    cand = np.tile(np.arange(200), (len(users), 1))
    got = F._coengagement(F.Block(state, users, cand, state.default_now_ns))
    co = state.coengagement.toarray()
    recent = state.signals.recent_items(users.rows)
    want = np.zeros_like(got)
    for r in range(len(users)):
        for i in recent[r][recent[r] >= 0]:
            want[r] += co[i, :200]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert (got > 0).sum() > 0  # the log has co-engagement: the feature is alive


def test_learned_lists_fill_to_a_long_k(sample_model):
    model, _ = sample_model
    rec = Recommender.from_model(model)
    lists = rec.recommend_many(list(model.users["user_id"][:5]), k=120)
    assert (lists.groupby("user_id").size() == 120).all()


def test_cut_settings_that_reach_the_start_of_the_log_do_not_crash(sample_model):
    from recsys.training.ranker_training import fit_ranker

    _, result = sample_model
    config = EngineConfig()
    config = dataclasses.replace(config, ranker=dataclasses.replace(config.ranker, label_share=0.4, cuts=3, n_estimators=5))
    ranker, report = fit_ranker(result.users, result.items, result.events, config=config, taxonomy=load_taxonomy())
    assert ranker is not None and len(report["cuts"]) == 2  # the third cut would need 120% of the log


def test_a_new_user_is_never_told_similar_users_liked_it(sample_model):
    from recsys.ranking.reasons import COENGAGED, SIMILAR_USERS

    model, _ = sample_model
    rec = Recommender.from_model(model)
    frame = pd.DataFrame({"user_id": [f"new{i}" for i in range(40)], "group": "farmer", "region": "qinglong"})
    lists = rec.recommend_many(frame["user_id"].tolist(), k=10, users=frame)
    texts = {t for reasons in lists["reasons"] for t in reasons}
    assert SIMILAR_USERS not in texts and COENGAGED not in texts
    assert len(lists) == 400


def test_the_binary_objective_ranks_by_the_feature_that_predicts_engagement_when_shown():
    # impressions as examples: small queries, often one label each (lambdarank learns nothing from those)
    rng = np.random.default_rng(3)
    x, groups = _queries(rng, 400, 3, 2)
    y = (rng.random(len(x)) < np.where(x[:, 0] > 0.5, 0.6, 0.05)).astype(np.int32)
    ranker = LearnedRanker.fit(x, y, groups, ["appeal", "noise"], n_estimators=40, min_child_samples=10, objective="binary")
    assert ranker.report["objective"] == "binary"
    test = rng.random((60, 2)).astype(np.float32)
    scores = ranker.predict(test)
    assert scores[test[:, 0] > 0.55].min() > scores[test[:, 0] < 0.45].max()


def test_examples_from_impressions_where_the_log_has_them_else_from_candidates():
    import scipy.sparse as sp

    from recsys.training.ranker_training import example_mode

    users = np.arange(30)
    pos = sp.csr_matrix((np.ones(30, np.float32), (users, users % 5)), shape=(30, 5))  # each user engaged once
    shown = pos.copy()
    assert example_mode("auto", pos, shown, 20) == "impressions"
    # a ratings log: engagement, no impressions -> the serving candidates are the queries
    assert example_mode("auto", pos, sp.csr_matrix(pos.shape, dtype=np.float32), 20) == "candidates"
    assert example_mode("auto", pos, shown, 31) == "candidates"  # too few users engaged with what they were shown
    assert example_mode("candidates", pos, shown, 20) == "candidates"


def test_impression_examples_are_the_items_shown_after_the_cut_labelled_by_engagement(sample_model):
    from recsys.training.ranker_training import _labels, build_examples, label_cut
    from recsys.ranking.features import selected
    from recsys.ranking.state import build_state

    _, result = sample_model
    events = result.events
    cut = label_cut(events, 0.1)
    # the model as of the cut (as the ranker's training has it): what was engaged with after it is not history yet
    config = EngineConfig()
    config = dataclasses.replace(config, ranking=dataclasses.replace(config.ranking, ranker="linear"))
    model = train_model(result.users, result.items, events, config=config, as_of=cut)
    state = build_state(model, None, model.config.ranking)
    user_ids = pd.Index(state.user_ids.astype(str))
    item_ids = pd.Index(state.catalog.item_ids[: state.catalog.n_bundle].astype(str))
    positives, shown = _labels(events, cut, user_ids, item_ids)
    rows = np.flatnonzero(np.diff(shown.indptr) > 0)[:60]
    feats = selected(model.config.ranker, ["topic", "interest"])
    ex = build_examples(state, rows, positives, shown, int(cut.as_unit("ns").value), feats, 20, 0, mode="impressions")
    assert len(ex.groups) > 0 and ex.groups.sum() == len(ex.y)
    # every query is no longer than what its user was shown, and its positives were shown and engaged
    n_shown = np.diff(shown.indptr)
    assert np.all(ex.groups <= n_shown[ex.users])
    engaged_shown = np.asarray(shown.multiply(positives).sum(axis=1)).ravel()
    pos_per_query = np.add.reduceat(ex.y, np.concatenate([[0], np.cumsum(ex.groups)[:-1]]))
    assert np.all(pos_per_query <= engaged_shown[ex.users])
    assert 0 < ex.y.mean() < 1


def test_the_exposure_weight_is_the_smallest_that_matches_the_strongest_logged_signal():
    from types import SimpleNamespace

    from recsys.training.ranker_training import Examples, choose_exposure

    rng = np.random.default_rng(4)
    n_q, per = 120, 20
    x, groups = _queries(rng, n_q, per, 2)  # columns: appeal (engagement when shown), popularity
    x[:, 1] *= 50
    shown = rng.random((n_q * per, 2)).astype(np.float32)
    ranker = LearnedRanker.fit(
        shown, (shown[:, 0] > 0.6).astype(np.int32), np.full(n_q, per), ["appeal", "pop"], n_estimators=20,
        min_child_samples=5, objective="binary",
    )
    feats = (SimpleNamespace(name="appeal"), SimpleNamespace(name="pop"))
    users = np.arange(n_q)
    valid = users % 2 == 0
    # the log follows what is shown: popular items are engaged with, whatever their appeal
    logged = Examples(x, (x[:, 1] > 40).astype(np.int32), groups, np.ones(n_q, bool), users)
    out = choose_exposure(ranker, logged, valid, feats)
    assert out["exposure_feature"] == "pop" and out["exposure_weight"] > 0
    tried = out["exposure_valid_ndcg_at_10"]
    weights = {float(k): v for k, v in tried.items() if k != "feature_alone"}
    reached = [w for w, v in sorted(weights.items()) if v >= tried["feature_alone"]]
    # the smallest weight that matches the popularity ordering, else the best one tried
    assert out["exposure_weight"] == (reached[0] if reached else max(weights, key=weights.get))
    assert weights[out["exposure_weight"]] > weights[0.0]
    # the weight is part of the ranker's score
    assert ranker.report["exposure_weight"] == out["exposure_weight"]
    # a log whose engagement follows appeal needs no exposure term
    ranker.report.update(exposure_feature=None, exposure_weight=0.0)
    logged = Examples(x, (x[:, 0] > 0.6).astype(np.int32), groups, np.ones(n_q, bool), users)
    out = choose_exposure(ranker, logged, valid, feats)
    assert out["exposure_feature"] == "appeal" and out["exposure_weight"] == 0.0


def test_fewest_trees_keeps_trees_only_where_they_beat_the_starting_score_on_held_out_queries():
    from recsys.training.ranker_training import fewest_trees

    rng = np.random.default_rng(5)
    n_q, per = 300, 6

    def data(signal: bool):
        x = rng.random((n_q * per, 2)).astype(np.float32)
        p = np.where(x[:, 1] > 0.5, 0.5, 0.1) if signal else np.full(len(x), 0.3)
        return x, (rng.random(len(x)) < p).astype(np.int32), np.full(n_q, per)

    for signal in (True, False):
        x, y, g = data(signal)
        xv, yv, gv = data(signal)
        ranker = LearnedRanker.fit(
            x, y, g, ["start", "appeal"], valid=(xv, yv, gv), base_feature="start", base_transform="identity",
            n_estimators=40, min_child_samples=10, early_stopping_rounds=0, objective="binary",
        )
        assert ranker.report["best_iteration"] == 40
        kept = fewest_trees(ranker, xv, yv, gv)
        assert kept == ranker.report["best_iteration"] <= 40
        tried = ranker.report.get("fewest_trees_valid_ndcg_at_10", {})
        if signal:
            assert kept > 0  # the trees learned the appeal the starting score misses
            assert tried[str(kept)] > tried["0"]
            scores = ranker.predict(xv)
            assert scores[xv[:, 1] > 0.5].mean() > scores[xv[:, 1] <= 0.5].mean()
        else:
            # noise: the held-out queries do no better with trees than without
            assert kept == 0 or tried[str(kept)] >= max(tried.values()) - 0.05
        assert ranker.used_features.sum() <= 2


def test_the_taste_feature_is_the_models_latent_taste_and_part_of_engagement(sample_model, tmp_path):
    from recsys.ranking.state import build_state
    from recsys.ranking.users import resolve
    from recsys.training.engagement import LatentTaste

    model, _ = sample_model
    rng = np.random.default_rng(0)
    taste = LatentTaste(
        rng.normal(0, 1, (model.n_users, 3)).astype(np.float32), rng.normal(0, 1, (model.n_items, 3)).astype(np.float32)
    )
    feats = F.registry(model.config.ranker)
    names = [f.name for f in feats]
    ids = list(model.users["user_id"][:5]) + ["never_seen"]
    cand = np.tile(np.arange(8, dtype=np.int64), (len(ids), 1))

    def block_features(m: TrainedModel) -> np.ndarray:
        state = build_state(m, None, m.config.ranking)
        attrs = [None] * 5 + [("farmer", None, "qinglong")]
        return F.compute(feats, F.Block(state, resolve(state, ids, attrs), cand, state.default_now_ns))

    without = block_features(model)
    with_taste = block_features(dataclasses.replace(model, taste=taste))
    want = taste.user_taste[:5] @ taste.item_taste[:8].T
    got = with_taste[:, :, names.index("taste")]
    np.testing.assert_allclose(got[:5], want, rtol=1e-5, atol=1e-5)
    assert not got[5].any()  # a user the bundle never saw has no taste
    assert not without[:, :, names.index("taste")].any()
    eng = names.index("engagement")
    np.testing.assert_allclose(with_taste[:, :, eng] - without[:, :, eng], got, rtol=1e-4, atol=1e-4)
    # the bundle keeps it (component ``taste``), and a bundle without it loads with none
    loaded = TrainedModel.load(dataclasses.replace(model, taste=taste).save(tmp_path / "models"))
    np.testing.assert_array_equal(np.asarray(loaded.taste.item_taste), taste.item_taste)
    np.testing.assert_allclose(block_features(loaded), with_taste, rtol=1e-6, atol=1e-6)


def test_users_without_engagement_get_the_exposure_term_of_their_own_strongest_signal():
    from types import SimpleNamespace

    from recsys.training.ranker_training import MIN_COLD_QUERIES, Examples, choose_exposure

    rng = np.random.default_rng(6)
    n_q, per = 200, 20
    # columns: appeal (engagement when shown), city popularity, segment popularity, user history
    x, groups = _queries(rng, n_q, per, 4)
    x[:, 1:3] *= 50
    cold_q = np.arange(n_q) % 2 == 1
    x[:, 3] = np.repeat(np.where(cold_q, 0.0, 3.0), per)
    names = ["appeal", "pop", "segpop", "user_history"]
    shown = rng.random((n_q * per, 4)).astype(np.float32)
    ranker = LearnedRanker.fit(
        shown, (shown[:, 0] > 0.6).astype(np.int32), np.full(n_q, per), names, n_estimators=20,
        min_child_samples=5, objective="binary",
    )
    feats = tuple(SimpleNamespace(name=n) for n in names)
    users = np.arange(n_q)
    valid = users % 4 < 2  # half the warm and half the cold users held out
    assert min(int((cold_q & valid).sum()), int((cold_q & ~valid).sum())) >= MIN_COLD_QUERIES
    # the log: warm users engage with what is popular in the city, cold users with their segment's
    rows_cold = np.repeat(cold_q, per)
    y = np.where(rows_cold, x[:, 2] > 40, x[:, 1] > 40).astype(np.int32)
    out = choose_exposure(ranker, Examples(x, y, groups, ~cold_q, users), valid, feats)
    assert out["exposure_feature"] == "pop" and out["exposure_feature_cold"] == "segpop"
    assert out["exposure_weight_cold"] > 0
    # the score: the cold rows take the segment term, the warm rows the city one
    own = ranker.booster.predict(x, num_iteration=ranker.report["best_iteration"] or None)
    got = ranker.predict(x) - own
    w, wc = out["exposure_weight"], out["exposure_weight_cold"]
    want = np.where(rows_cold, wc * np.log1p(x[:, 2]), w * np.log1p(x[:, 1]))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    used = ranker.used_features
    assert used[names.index("segpop")] and used[names.index("user_history")]
    # without the user-history feature there is no cold term
    ranker.report.update(exposure_feature=None, exposure_weight=0.0)
    feats3 = feats[:3]
    ranker3 = LearnedRanker.fit(
        shown[:, :3], (shown[:, 0] > 0.6).astype(np.int32), np.full(n_q, per), names[:3], n_estimators=20,
        min_child_samples=5, objective="binary",
    )
    out3 = choose_exposure(ranker3, Examples(x[:, :3], y, groups, ~cold_q, users), valid, feats3)
    assert "exposure_feature_cold" not in out3 or out3["exposure_feature_cold"] is None


def test_the_exposure_model_keeps_up_with_the_strongest_logged_signal_and_saves_with_the_ranker(tmp_path):
    from types import SimpleNamespace

    from recsys.bundle import BundleReader, BundleWriter
    from recsys.config import RankerConfig
    from recsys.training.ranker_training import EXPOSURE_WEIGHTS, Examples, choose_exposure_model

    rng = np.random.default_rng(7)
    n_q, per = 240, 20
    x, groups = _queries(rng, n_q, per, 3)  # columns: appeal (engagement when shown), popularity, reach
    x[:, 1:] *= 50
    names = ["appeal", "pop", "reach"]
    shown = rng.random((n_q * per, 3)).astype(np.float32)
    ranker = LearnedRanker.fit(
        shown, (shown[:, 0] > 0.6).astype(np.int32), np.full(n_q, per), names, n_estimators=20,
        min_child_samples=5, objective="binary",
    )
    feats = tuple(SimpleNamespace(name=n, monotone=int(n != "appeal")) for n in names)
    users = np.arange(n_q)
    valid = users % 3 == 0
    # the log follows what the old system showed: popular items with a wide reach
    logged = Examples(x, ((x[:, 1] > 25) & (x[:, 2] > 25)).astype(np.int32), groups, np.ones(n_q, bool), users)
    rc = RankerConfig(n_estimators=30, min_child_samples=5, early_stopping_rounds=10)
    out = choose_exposure_model(ranker, logged, valid, feats, rc)
    assert out["exposure_model"] and ranker.exposure_model is not None
    tried = out["exposure_valid_ndcg_at_10"]
    # the model orders the log better than the best single feature; the weight clears that feature's bar
    assert tried["model_alone"] > tried["feature_alone"]
    assert tried[f"{out['exposure_weight']:g}"] >= tried["feature_alone"]
    assert out["exposure_weight"] in EXPOSURE_WEIGHTS
    # the score is the ranker's own plus the weighted model
    want = ranker.booster.predict(x, num_iteration=ranker.report["best_iteration"] or None) + out[
        "exposure_weight"
    ] * ranker.exposure_model.predict(x)
    np.testing.assert_allclose(ranker.predict(x), want, rtol=1e-4, atol=1e-4)
    assert ranker.used_features.all()  # the exposure model reads popularity and reach
    # both models save and load as LightGBM text, with identical scores
    ranker.save(BundleWriter(tmp_path))
    back = LearnedRanker.load(BundleReader(tmp_path))
    assert back.exposure_model is not None
    np.testing.assert_array_equal(back.predict(x), ranker.predict(x))



def test_the_learned_ranker_with_no_eligible_item_gives_empty_lists(sample_model):
    model, _ = sample_model
    rec = Recommender.from_model(model)
    assert rec.state.ranker is not None
    rec.set_catalog(model.items.assign(review_status="rejected"))  # the Recommender's copy; the model is unchanged
    users = rec.state.user_ids[:40].tolist()
    assert all(rec.recommend(u, k=10) == [] for u in users)
    assert len(rec.recommend_many(users, k=10)) == 0
