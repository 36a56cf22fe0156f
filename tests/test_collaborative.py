"""Collaborative factors: determinism, negative feedback, fold-in, warm start, persistence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.training.collaborative import CollaborativeModel, WarmStart, als_confidence
from recsys.config import CollaborativeConfig, InteractionConfig
from recsys.exceptions import ConfigError, NotFittedError
from recsys.idmap import IdMap
from recsys.training.interactions import build_interactions

END = pd.Timestamp("2024-06-30T00:00:00Z")
N_USERS, N_ITEMS, K = 60, 30, 3
USERS = IdMap.from_ids([f"u{u}" for u in range(N_USERS)])
ITEMS = IdMap.from_ids([f"i{i}" for i in range(N_ITEMS)])
CFG = CollaborativeConfig(factors=6, iterations=15, regularization=0.1, alpha=10.0, threads=2, seed=7)


def _world_events(seed: int = 0) -> pd.DataFrame:
    """Users of cluster c click about half the items of cluster c (c = index % 3)."""
    rng = np.random.default_rng(seed)
    rows = [
        (f"u{u}", f"i{i}", "click", END - pd.Timedelta(hours=int(rng.integers(1, 200))))
        for u in range(N_USERS)
        for i in range(N_ITEMS)
        if u % K == i % K and rng.random() < 0.5
    ]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "timestamp"])


def _inter(events, users=USERS, items=ITEMS, as_of=None):
    return build_interactions(events, users, items, InteractionConfig(), as_of=as_of)


@pytest.fixture(scope="module")
def events():
    return _world_events()


@pytest.fixture(scope="module")
def fitted(events):
    return CollaborativeModel(CFG).fit(_inter(events))


def test_factors_shapes_dtypes_and_cluster_structure(fitted):
    assert fitted.user_factors_.shape == (N_USERS, 6) and fitted.user_factors_.dtype == np.float32
    assert fitted.item_factors_.shape == (N_ITEMS, 6) and fitted.item_factors_.dtype == np.float32
    scores = fitted.score(np.repeat(np.arange(N_USERS), N_ITEMS), np.tile(np.arange(N_ITEMS), N_USERS))
    scores = scores.reshape(N_USERS, N_ITEMS)
    same = (np.arange(N_USERS)[:, None] % K) == (np.arange(N_ITEMS)[None, :] % K)
    # the model learned the clusters: in-cluster items outscore the others
    assert scores[same].mean() > scores[~same].mean() + 0.3


@pytest.mark.parametrize("algorithm,threads", [("als", 2), ("bpr", 1)])
def test_same_seed_same_factors(events, algorithm, threads):
    cfg = dataclasses.replace(CFG, algorithm=algorithm, threads=threads, iterations=10)
    a = CollaborativeModel(cfg).fit(_inter(events))
    b = CollaborativeModel(cfg).fit(_inter(events))
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    other = CollaborativeModel(dataclasses.replace(cfg, seed=8)).fit(_inter(events))
    assert not np.array_equal(a.item_factors_, other.item_factors_)
    if algorithm == "bpr":
        assert a.user_factors_.shape == (N_USERS, 7)  # + item-bias column
        np.testing.assert_array_equal(a.user_factors_[:, -1], 1.0)


def _top_unseen(model, inter, user):
    scores = model.score(user, np.arange(N_ITEMS))
    engaged = inter.engaged[user].toarray().ravel() > 0
    return next(int(i) for i in np.argsort(-scores) if not engaged[i])


@pytest.mark.parametrize("algorithm,penalty", [("als", 1.0), ("als", 0.0), ("bpr", 1.0)])
def test_dismissed_item_scores_lower_after_the_dismiss(events, algorithm, penalty):
    cfg = dataclasses.replace(CFG, algorithm=algorithm, negative_penalty=penalty, threads=1)
    inter = _inter(events)
    before = CollaborativeModel(cfg).fit(inter)
    user = 0
    item = _top_unseen(before, inter, user)  # the item the model would push first
    dismiss = pd.DataFrame([("u0", f"i{item}", "dismiss", END - pd.Timedelta(hours=1))], columns=events.columns)
    after = CollaborativeModel(cfg).fit(_inter(pd.concat([events, dismiss], ignore_index=True)))
    # with penalty 0 this checks the fit alone (negative confidence in ALS)
    assert after.score(user, item) < before.score(user, item) - 0.2
    if penalty:
        assert after.negatives_[user, item] == 1.0


def test_dismiss_after_engagement_still_lowers_the_score(events):
    inter = _inter(events)
    before = CollaborativeModel(CFG).fit(inter)
    row = inter.engaged[3]
    item = int(row.indices[0])
    dismiss = pd.DataFrame([("u3", f"i{item}", "dismiss", END)], columns=events.columns)
    after_inter = _inter(pd.concat([events, dismiss], ignore_index=True))
    assert als_confidence(after_inter, CFG.alpha)[3, item] < 0  # the dismiss wins in the fit
    after = CollaborativeModel(CFG).fit(after_inter)
    assert after.score(3, item) < before.score(3, item)


def test_als_confidence_hand_computed():
    ev = pd.DataFrame(
        [("u0", "i0", "click", END), ("u0", "i1", "click", END), ("u0", "i1", "dismiss", END),
         ("u1", "i2", "report", END), ("u1", "i0", "impression", END)],
        columns=["user_id", "item_id", "event_type", "timestamp"],
    )
    conf = als_confidence(_inter(ev), alpha=10.0).toarray()
    assert conf[0, 0] == pytest.approx(1 + 10 * 1.0)
    assert conf[0, 1] == pytest.approx(-(1 + 10 * 2.0))  # dismiss weight 2 wins over the click
    assert conf[1, 2] == pytest.approx(-(1 + 10 * 6.0))
    assert conf[1, 0] == 0.0  # an impression is not a positive


def test_fold_in_close_to_full_fit(events):
    full_inter = _inter(events)
    full = CollaborativeModel(dataclasses.replace(CFG, iterations=30)).fit(full_inter)
    # fit without user 0, then fold user 0's few events in
    rest = CollaborativeModel(dataclasses.replace(CFG, iterations=30)).fit(
        _inter(events[events["user_id"] != "u0"], as_of=full_inter.end + pd.Timedelta(seconds=1))
    )
    row = full_inter.matrix[0]
    assert row.nnz <= 10  # "a few events"
    folded = rest.fold_in(row.indices, row.data)
    target = full.user_factors_[0]
    # factor bases differ between fits, so compare what the vectors do: the scores they give
    s_fold, s_full = rest.item_factors_ @ folded, full.item_factors_ @ target
    assert np.corrcoef(s_fold, s_full)[0, 1] > 0.95
    assert set(np.argsort(-s_fold)[:5]) == set(np.argsort(-s_full)[:5])
    # against the same item factors, fold-in reproduces the fitted user vector
    again = full.fold_in(row.indices, row.data)
    cos = again @ target / np.linalg.norm(again) / np.linalg.norm(target)
    assert cos > 0.99


def test_fold_in_equals_implicit_recalculate_user(fitted, events):
    from implicit.cpu.als import AlternatingLeastSquares

    inter = _inter(events)
    conf = als_confidence(inter, CFG.alpha)
    ref = AlternatingLeastSquares(factors=6, regularization=CFG.regularization, alpha=1.0, random_state=0)
    ref.user_factors, ref.item_factors = fitted.user_factors_.copy(), fitted.item_factors_.copy()
    expected = ref.recalculate_user(np.arange(4), conf[:4])
    got = fitted.fold_in_batch(inter.matrix[:4])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_warm_start_reuses_known_factors_and_folds_in_new_ones(fitted, events):
    # new user "n0" likes cluster-0 items; new item "j0" liked by cluster-1 users
    extra = [("n0", f"i{i}", "click", END) for i in (0, 3, 6)]
    extra += [(f"u{u}", "j0", "click", END) for u in (1, 4, 7, 10)]
    ev2 = pd.concat([events, pd.DataFrame(extra, columns=events.columns)], ignore_index=True)
    users2 = IdMap.from_ids(["n0", *USERS.ids[::-1]])  # order changed on purpose
    items2 = IdMap.from_ids([*ITEMS.ids, "j0"])
    inter2 = _inter(ev2, users2, items2)

    zero = CollaborativeModel(CFG).fit(inter2, warm_start=fitted.warm_start(), iterations=0)
    known_u = users2.index(USERS.ids)
    np.testing.assert_array_equal(zero.user_factors_[known_u], fitted.user_factors_)
    np.testing.assert_array_equal(zero.item_factors_[:N_ITEMS], fitted.item_factors_)
    # the new item lands with cluster 1, the new user prefers cluster 0
    j0 = zero.item_factors_[N_ITEMS]
    sims = fitted.item_factors_ @ j0 / np.linalg.norm(fitted.item_factors_, axis=1) / np.linalg.norm(j0)
    assert all(i % K == 1 for i in np.argsort(-sims)[:3])
    assert sims[np.arange(N_ITEMS) % K == 1].mean() > sims[np.arange(N_ITEMS) % K != 1].mean() + 0.3
    n0_scores = zero.score(0, np.arange(N_ITEMS))
    assert n0_scores[np.arange(N_ITEMS) % K == 0].mean() > n0_scores[np.arange(N_ITEMS) % K != 0].mean()

    warm = CollaborativeModel(CFG).fit(inter2, warm_start=fitted.warm_start())
    cold = CollaborativeModel(CFG).fit(inter2)
    assert warm.iterations_ == CFG.warm_start_iterations
    assert warm.loss(inter2) <= cold.loss(inter2) * 1.02


def test_warm_start_shape_errors(fitted, events):
    ws = fitted.warm_start()
    with pytest.raises(ConfigError, match=r"warm_start item_factors must have shape \(30, 6\)"):
        narrow = WarmStart(ws.user_ids, ws.user_factors, ws.item_ids, ws.item_factors[:, :5])
        CollaborativeModel(CFG).fit(_inter(events), warm_start=narrow)
    bpr = dataclasses.replace(CFG, algorithm="bpr")
    with pytest.raises(ConfigError, match=r"must have shape \(60, 7\) \(bpr, factors=6\)"):
        CollaborativeModel(bpr).fit(_inter(events), warm_start=ws)


def test_bpr_warm_start_runs(events):
    cfg = dataclasses.replace(CFG, algorithm="bpr", threads=1, iterations=20)
    first = CollaborativeModel(cfg).fit(_inter(events))
    # a plain 4-tuple (user_ids, user_factors, item_ids, item_factors) works too
    again = CollaborativeModel(cfg).fit(_inter(events), warm_start=tuple(first.warm_start()), iterations=0)
    np.testing.assert_array_equal(again.item_factors_, first.item_factors_)


def test_score_and_fold_in_errors(fitted):
    with pytest.raises(ConfigError, match="item_idx 30 out of range; valid: 0..29"):
        fitted.score(0, [1, 30])
    with pytest.raises(ConfigError, match="user_idx -1 out of range"):
        fitted.score(-1, 0)
    with pytest.raises(ConfigError, match="same length"):
        fitted.fold_in([0, 1], [1.0])
    with pytest.raises(ConfigError, match="item index 99 out of range"):
        fitted.fold_in([99], [1.0])
    with pytest.raises(ConfigError, match="must have 30 columns"):
        fitted.fold_in_batch(sp.csr_matrix((1, 5)))
    assert fitted.score(np.array([], dtype=int), np.array([], dtype=int)).shape == (0,)


def test_not_fitted_and_input_errors(events):
    model = CollaborativeModel(CFG)
    with pytest.raises(NotFittedError, match="not fitted"):
        model.score(0, 0)
    with pytest.raises(NotFittedError, match="not fitted"):
        model.warm_start()
    with pytest.raises(ConfigError, match="needs an Interactions object, got csr_matrix"):
        model.fit(sp.csr_matrix((2, 2)))
    with pytest.raises(ConfigError, match="iterations must be an integer >= 0, got -1"):
        model.fit(_inter(events), iterations=-1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"algorithm": "svd"}, r"\[collaborative\] algorithm = 'svd' is not valid; valid: als, bpr"),
        ({"factors": 0}, r"\[collaborative\] factors = 0 is out of range; valid: 1..1024"),
        ({"factors": 8.5}, r"config \[collaborative\] factors must be an integer, got 8.5"),
        ({"threads": 0}, "threads = 0 is out of range; valid: 1..256"),
        ({"iterations": -2}, "iterations = -2 is out of range; valid: 1..1000"),
        ({"regularization": -0.1}, "regularization = -0.1 is out of range; valid: 0..10000"),
        ({"negative_penalty": -1.0}, "negative_penalty = -1.0 is out of range; valid: 0..100"),
        ({"learning_rate": 0.0}, "learning_rate = 0.0 is out of range; valid: > 0 and <= 10"),
        ({"seed": -3}, "seed = -3 is out of range; valid: 0..4294967295"),
    ],
)
def test_config_errors(events, change, message):
    with pytest.raises(ConfigError, match=message):
        CollaborativeModel(dataclasses.replace(CFG, **change)).fit(_inter(events))


def test_loss_decreases_and_is_als_only(events):
    inter = _inter(events)
    short = CollaborativeModel(dataclasses.replace(CFG, iterations=1)).fit(inter)
    long = CollaborativeModel(dataclasses.replace(CFG, iterations=15)).fit(inter)
    assert long.loss(inter) < short.loss(inter)
    bpr = CollaborativeModel(dataclasses.replace(CFG, algorithm="bpr", threads=1, iterations=2)).fit(inter)
    with pytest.raises(ConfigError, match="loss is defined for algorithm 'als' only"):
        bpr.loss(inter)
