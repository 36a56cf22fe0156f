"""The learned ranker on the serving path: batch scoring, path-contribution reasons, filter pools."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from recsys import Recommender
from recsys.exceptions import ConfigError
from recsys.ranking import eligibility
from recsys.ranking.features import registry
from recsys.training.ranker import LearnedRanker

from ranking_world import hand_model, items_frame, users_frame

TOPICS = ("earthquake", "health_literacy", "ecology", "weather_climate")
N_ITEMS = 60


def _fit(x: np.ndarray, y: np.ndarray, names: list[str], per: int = 20) -> LearnedRanker:
    ranker = LearnedRanker.fit(
        x, y, np.full(len(x) // per, per), names, n_estimators=20, num_leaves=7, min_child_samples=5, early_stopping_rounds=0
    )
    ranker.report["feature_means"] = [float(v) for v in x.mean(axis=0)]
    return ranker


@pytest.fixture(scope="module")
def small_ranker() -> LearnedRanker:
    rng = np.random.default_rng(3)
    x = rng.random((1200, 4)).astype(np.float32)
    y = (x[:, 0] + 0.2 * x[:, 2] > 0.8).astype(np.int32)  # column 3 is never worth a split
    return _fit(x, y, ["a", "b", "c", "never"])


def test_score_block_equals_predict_over_the_masked_rows(small_ranker):
    rng = np.random.default_rng(4)
    x = rng.random((3, 7, 4)).astype(np.float32)
    mask = rng.random((3, 7)) < 0.6
    mask[1] = False  # a user with nothing to score
    out = small_ranker.score_block(x, mask)
    assert out.shape == (3, 7) and out.dtype == np.float32
    assert np.all(np.isneginf(out[~mask]))
    assert np.array_equal(out[mask], small_ranker.predict(x[mask]))
    with pytest.raises(ConfigError, match="score_block"):
        small_ranker.score_block(x[0], mask)


def test_path_contributions_credit_nothing_to_unused_groups_and_keep_the_others(small_ranker):
    used = small_ranker.used_features
    assert not used[3]  # the fixture's premise: one column no tree reads
    rng = np.random.default_rng(5)
    x = rng.random((12, 4)).astype(np.float32)
    groups = [np.array([0]), np.array([1, 2]), np.array([3]), np.array([], np.int64)]
    full = small_ranker.group_contributions(x, groups)
    alone = small_ranker.group_contributions(x, groups[:2])
    assert np.array_equal(alone, full[:, :2])  # a group's credit does not depend on the other groups
    # an unread column is on no row's path: exactly 0, as is an empty group
    assert np.all(full[:, 2:] == 0)
    assert np.abs(full[:, 0]).max() > 0  # the signal does move scores


@pytest.fixture(scope="module")
def learned_rec() -> Recommender:
    rng = np.random.default_rng(6)
    users = users_frame(["farmer", "youth", "resident", "farmer"], ["qinglong", "haigang", "haigang", "haigang"])
    items = items_frame(
        N_ITEMS,
        topics=[[TOPICS[j % len(TOPICS)]] + ([TOPICS[(j + 1) % len(TOPICS)]] if j % 3 == 0 else []) for j in range(N_ITEMS)],
        format=["audio" if j % 5 == 0 else "article" for j in range(N_ITEMS)],
    )
    model = hand_model(
        users,
        items,
        rng.normal(size=(4, 6)),
        rng.normal(size=(N_ITEMS, 6)),
        popularity_recent=rng.random(N_ITEMS).astype(np.float32),
    )
    levels = model.signals.popularity_levels
    model.signals = dataclasses.replace(model.signals, popularity_levels=rng.random(levels.shape).astype(np.float32))
    names = [f.name for f in registry(model.config.ranker)]
    x = rng.random((2000, len(names))).astype(np.float32)
    # the collaborative score and one popularity feature matter, the rest is noise
    pop = next(j for j, n in enumerate(names) if n.startswith("pop_city_"))
    y = (x[:, names.index("collaborative")] + 0.5 * x[:, pop] > 1.0).astype(np.int32)
    model.ranker = _fit(x, y, names)
    return Recommender.from_model(model)


def test_filter_share_counts_the_bundle_items_that_pass(learned_rec):
    state = learned_rec.state
    catalog, tax = state.catalog, state.taxonomy
    for kwargs in (
        {"topics": ["earthquake", "ecology"]}, {"channel": "e_reader"}, {"topics": "weather_climate", "channel": "e_reader"}, {},
    ):
        filt = eligibility.make_filter(tax, **kwargs)
        expected = np.count_nonzero(eligibility.static_mask(catalog, filt)[: catalog.n_bundle]) / catalog.n_bundle
        assert state.filtered(filt) == expected, kwargs


def test_a_priority_boost_does_not_leak_into_the_reasons(learned_rec):
    state = learned_rec.state
    tax = state.taxonomy
    table = np.zeros((len(tax.groups), len(tax.regions), len(tax.topics)), np.float32)
    table[:, :, list(tax.topics).index("earthquake")] = 2.0
    boosted = learned_rec.with_topic_boost(table)
    for user in ("u0", "u1", "u2", "u3"):
        plain = {r.item_id: r.reasons for r in learned_rec.recommend(user, k=8)}
        lifted = {r.item_id: [s for s in r.reasons if not s.startswith("重点推送")] for r in boosted.recommend(user, k=8)}
        shared = set(plain) & set(lifted)
        assert shared
        # the same item has the same reasons: they come from the ranker's features alone, so
        # the boost (added after) is no feature group's contribution
        assert all(plain[i] == lifted[i] for i in shared), user


def test_popularity_features_read_their_level_row_of_the_bundle_table(learned_rec):
    from recsys.ranking.features import LEVELS, Block
    from recsys.ranking.users import resolve

    state = learned_rec.state
    tax = state.taxonomy
    users = resolve(state, ["u0", "u1", "u3"], None)
    cand = np.array([[0, 5, 17, 59], [3, 3, 40, -1], [1, 2, 30, 44]])
    block = Block(state, users, cand, state.default_now_ns)
    table = np.asarray(state.signals.popularity_levels)
    n_g, n_r = len(tax.groups), len(tax.regions)
    feats = {f.name: f for f in registry(state.model.config.ranker)}
    for w, h in enumerate(state.model.config.ranker.popularity_half_lives_days):
        for level in LEVELS:
            got = feats[f"pop_{level}_h{h:g}d"].compute(block)
            for m, (g, r) in enumerate(zip(users.groups, users.regions)):
                row = {"city": 0, "group": 1 + g, "region": 1 + n_g + r, "segment": 1 + n_g + n_r + g * n_r + r}[level]
                want = table[w, row, np.maximum(cand[m], 0)] * 1000.0
                assert np.allclose(got[m], want, rtol=1e-6), (level, h)
            # a block that reads one feature (the first pass's base feature) gathers its own level alone
            alone = Block(state, users, cand, state.default_now_ns, gather_all=False)
            assert np.array_equal(feats[f"pop_{level}_h{h:g}d"].compute(alone), got)
            assert "popularity" not in alone.__dict__


def test_coengagement_row_by_row_equals_the_sparse_product_bit_for_bit(learned_rec):
    import scipy.sparse as sp

    from recsys.ranking import features as F
    from recsys.ranking.users import resolve

    rng = np.random.default_rng(8)
    dense = np.where(rng.random((N_ITEMS, N_ITEMS)) < 0.3, rng.random((N_ITEMS, N_ITEMS)), 0).astype(np.float32)
    state = dataclasses.replace(learned_rec.state, coengagement=sp.csr_matrix(dense))
    users = resolve(state, ["u0", "u1", "u2", "u3"], None)
    # recent items with repeats and padding, candidates with repeats and padding (read as item 0)
    recent = np.array([[3, 7, 3, -1], [-1, -1, -1, -1], [59, 0, 12, 12], [5, -1, 40, 41]])
    cand = np.array([[7, 3, 12, 12, 59, -1], [1, 2, 3, 4, 5, 6], [0, 12, 30, 59, 44, 3], [40, 41, 5, 6, 7, -1]])
    block = F.Block(state, users, cand, state.default_now_ns)
    rows, cols = np.nonzero(recent >= 0)
    sparse = F._coengagement_sparse(block, recent, rows, cols)
    by_row = F._coengagement_rows(block, recent)
    assert np.array_equal(by_row, sparse)
    assert (sparse > 0).sum() > 6 and np.all(sparse[1] == 0)
    # and they are what the feature means: the sum over recent items (a repeat counts twice)
    want = sum(dense[s, cand[0, :5]] for s in recent[0] if s >= 0)
    assert np.allclose(by_row[0, :5], want, rtol=1e-6)


def test_coengaged_candidates_row_by_row_equal_the_block_path_ties_to_the_smaller_item(learned_rec):
    import scipy.sparse as sp

    from recsys.ranking import candidates as CA
    from recsys.ranking.users import resolve

    rng = np.random.default_rng(9)
    # few distinct values: many ties at the n-th item
    dense = np.where(rng.random((N_ITEMS, N_ITEMS)) < 0.4, rng.choice([0.25, 0.5], (N_ITEMS, N_ITEMS)), 0).astype(np.float32)
    model = learned_rec.state.model
    n = 8
    config = dataclasses.replace(model.config, ranker=dataclasses.replace(model.config.ranker, coengagement_candidates=n))
    state = dataclasses.replace(
        learned_rec.state, coengagement=sp.csr_matrix(dense), model=dataclasses.replace(model, config=config)
    )
    recent = np.array([[3, 7, 3, -1], [-1, -1, -1, -1], [59, 0, 12, 12], [5, -1, 40, 41], [1, 2, -1, -1]])
    users = resolve(state, ["u0", "u1", "u2", "u3", "u0"], None)
    # given as the fixed array of a bundle written before the recent items' CSR (read as it is)
    signals = dataclasses.replace(state.signals, user_recent_items=recent, user_recent_indptr=None, user_recent_indices=None)
    state = dataclasses.replace(state, signals=signals)
    users = dataclasses.replace(users, rows=np.arange(5))
    block = CA._coengaged(state, users)  # 5 users at once
    rows = np.vstack([CA._coengaged(state, users.take(r)) for r in range(5)])  # each alone, as a single call
    assert np.array_equal(block, rows)
    ties = 0
    for r in range(5):
        seeds = recent[r][recent[r] >= 0]
        total = dense[seeds].sum(axis=0) if seeds.size else np.zeros(N_ITEMS, np.float32)
        # the n largest sums, ties to the smaller item index
        want = [j for j in np.lexsort((np.arange(N_ITEMS), -total)) if total[j] > 0][:n]
        assert sorted(rows[r][rows[r] >= 0].tolist()) == sorted(want), r
        ties += seeds.size > 0 and np.sort(total)[::-1][n - 1] == np.sort(total)[::-1][n]
    assert ties >= 2  # the tie-break was needed


def test_filtered_search_reads_the_filters_cached_rows_and_checks_time(learned_rec):
    from recsys.ranking import candidates as CA
    from recsys.ranking.users import resolve

    state = dataclasses.replace(learned_rec.state, config=dataclasses.replace(learned_rec.state.config, allow_search_below=1.1))
    catalog = state.catalog
    users = resolve(state, ["u0", "u2"], None)
    for kwargs in ({"topics": ["earthquake", "ecology"]}, {"channel": "e_reader", "topics": "weather_climate"}, {"channel": "e_reader"}):
        filt = eligibility.make_filter(state.taxonomy, **kwargs)
        share = state.filtered(filt)
        now = int(np.median(catalog.published_ns[: catalog.n_bundle]))  # about half the items not yet published
        got = CA._ann(state, users, 10, filt, share, now)
        assert filt in state._blocks  # built once per filter
        live = eligibility.static_mask(catalog, filt)[: catalog.n_bundle]
        live &= eligibility.live_at(catalog, np.arange(catalog.n_bundle), now)
        assert 0 < live.sum() < catalog.n_bundle
        for r in range(len(users)):
            scores = np.where(live, catalog.cf[: catalog.n_bundle] @ users.vectors[r], -np.inf)
            want = np.argsort(-scores, kind="stable")[: min(got.shape[1], int(live.sum()))]
            assert set(got[r].tolist()) == set(want.tolist()), kwargs
        assert np.array_equal(CA._ann(state, users, 10, filt, share, now), got)  # from the cache, the same
