"""Cold start: content -> CF space for new items, segment centroids + topic prior for new users."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from recsys.bundle import read_part, write_part
from recsys.training.coldstart import ItemColdStart, UserColdStart
from recsys.training.collaborative import CollaborativeModel
from recsys.config import ColdStartConfig, CollaborativeConfig, InteractionConfig
from recsys.exceptions import ArtifactError, ConfigError, NotFittedError, SchemaError
from recsys.idmap import IdMap
from recsys.training.interactions import build_interactions

END = pd.Timestamp("2024-06-30T00:00:00Z")
N_USERS, N_ITEMS, K, DIM = 60, 30, 3, 8
CFG = ColdStartConfig(ridge_alpha=0.1, topic_prior_blend=0.3, min_segment_users=2)


@pytest.fixture(scope="module")
def world():
    """A fitted ALS model on 3 user/item clusters, and content vectors clustered the same way."""
    rng = np.random.default_rng(0)
    rows = [
        (f"u{u}", f"i{i}", "click", END)
        for u in range(N_USERS)
        for i in range(N_ITEMS)
        if u % K == i % K and rng.random() < 0.6
    ]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "timestamp"])
    inter = build_interactions(
        events,
        IdMap.from_ids([f"u{u}" for u in range(N_USERS)]),
        IdMap.from_ids([f"i{i}" for i in range(N_ITEMS)]),
        InteractionConfig(),
    )
    model = CollaborativeModel(CollaborativeConfig(factors=6, iterations=15, regularization=0.1)).fit(inter)
    centers = rng.normal(size=(K, DIM))
    content = centers[np.arange(N_ITEMS) % K] + 0.3 * rng.normal(size=(N_ITEMS, DIM))
    return model, content, centers, rng


def _cos(a, b):
    return (b @ a) / np.linalg.norm(b, axis=-1) / np.linalg.norm(a)


def test_cold_item_lies_among_its_warm_near_duplicates(world):
    model, content, centers, rng = world
    mapper = ItemColdStart(CFG).fit(content, model.item_factors_)
    for target in (4, 5, 9):  # one warm item of each cluster
        near_duplicate = content[target] + 0.02 * rng.normal(size=DIM)
        vec = mapper.transform(near_duplicate[None, :])[0]
        sims = _cos(vec, model.item_factors_)
        top = np.argsort(-sims)[:5]
        assert all(i % K == target % K for i in top), (target, top)
        # ... and the item it nearly duplicates is among its closest warm neighbours
        assert target in top and sims[target] > 0.75
    assert mapper.coef_.shape == (DIM, 6) and mapper.coef_.dtype == np.float32 and mapper.n_warm_ == N_ITEMS


def test_ridge_recovers_an_exact_linear_map_and_matches_sklearn():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 4))
    w, b = rng.normal(size=(4, 3)), rng.normal(size=3)
    exact = ItemColdStart(dataclasses.replace(CFG, ridge_alpha=0.0)).fit(x, x @ w + b)
    np.testing.assert_allclose(exact.coef_, w, atol=1e-4)
    np.testing.assert_allclose(exact.intercept_, b, atol=1e-4)
    y = x @ w + b + 0.1 * rng.normal(size=(50, 3))
    ours = ItemColdStart(dataclasses.replace(CFG, ridge_alpha=5.0)).fit(x, y)
    ref = Ridge(alpha=5.0).fit(x, y)
    np.testing.assert_allclose(ours.transform(x), ref.predict(x), atol=1e-4)


def test_item_cold_start_errors(tmp_path):
    mapper = ItemColdStart(CFG)
    with pytest.raises(NotFittedError, match="not fitted"):
        mapper.transform(np.zeros((1, 3)))
    with pytest.raises(NotFittedError, match="nothing to save"):
        write_part(tmp_path / "x", mapper)
    with pytest.raises(ConfigError, match="same number of rows; got 3 and 2"):
        mapper.fit(np.zeros((3, 2)), np.zeros((2, 4)))
    with pytest.raises(ConfigError, match="content_vectors_warm must be a 2-d array"):
        mapper.fit(np.zeros(3), np.zeros((3, 4)))
    with pytest.raises(ConfigError, match="item_factors_warm must be finite"):
        mapper.fit(np.zeros((2, 2)), np.array([[np.nan], [1.0]]))
    with pytest.raises(ConfigError, match=r"\[cold_start\] ridge_alpha = -1.0 is out of range"):
        ItemColdStart(dataclasses.replace(CFG, ridge_alpha=-1.0)).fit(np.zeros((2, 2)), np.zeros((2, 2)))
    fitted = mapper.fit(np.eye(3), np.ones((3, 2)))
    with pytest.raises(ConfigError, match="content_vectors must have 3 columns, got 5"):
        fitted.transform(np.zeros((1, 5)))


def test_no_engagement_yet_gives_zero_vectors():
    items = ItemColdStart(CFG).fit(np.zeros((0, 4)), np.zeros((0, 3)))
    np.testing.assert_array_equal(items.transform(np.ones((2, 4))), np.zeros((2, 3)))
    users = UserColdStart(CFG).fit(np.zeros_like(FACTORS), USERS, user_topics=np.ones((6, 3)) / 3)
    assert users.keys_["level"].tolist() == ["global"] and users.topic_coef_ is None
    np.testing.assert_array_equal(users.vector_for("youth", "pupil", "haigang", [1, 0, 0]), [0, 0])


def test_item_cold_start_save_load(world, tmp_path):
    model, content, _, _ = world
    mapper = ItemColdStart(CFG).fit(content, model.item_factors_)
    write_part(tmp_path / "ics", mapper)
    back = read_part(tmp_path / "ics", ItemColdStart)
    np.testing.assert_array_equal(back.transform(content[:3]), mapper.transform(content[:3]))
    with pytest.raises(ArtifactError, match="nowhere: component folder not found"):
        read_part(tmp_path / "nowhere", ItemColdStart)
    (tmp_path / "ics" / "coef.npy").unlink()
    with pytest.raises(ArtifactError, match="coef.npy: missing"):
        read_part(tmp_path / "ics", ItemColdStart, verify=False)


# ---- users ----------------------------------------------------------------
USERS = pd.DataFrame(
    {
        "group": ["farmer"] * 3 + ["farmer"] + ["youth"] * 2,
        "sub_group": ["rural_woman"] * 3 + ["village_leader"] + ["pupil", "pupil"],
        "region": ["changli"] * 3 + ["changli"] + ["haigang", "lulong"],
    }
)
FACTORS = np.array([[1, 0], [1, 0.2], [1, -0.2], [3, 3], [0, 1], [0, 3]], dtype=np.float32)


def test_segment_centroids_and_back_off():
    cold = UserColdStart(CFG).fit(FACTORS, USERS)
    # own segment: 3 warm users
    np.testing.assert_allclose(cold.vector_for("farmer", "rural_woman", "changli"), [1, 0], atol=1e-6)
    # village_leader has 1 user (< 2): back off to (farmer, changli) = mean of 4
    np.testing.assert_allclose(cold.vector_for("farmer", "village_leader", "changli"), [1.5, 0.75], atol=1e-6)
    # (youth, haigang) has 1 user: back off to (youth) = mean of 2
    np.testing.assert_allclose(cold.vector_for("youth", "pupil", "haigang"), [0, 2], atol=1e-6)
    # a group no warm user has: global mean
    np.testing.assert_allclose(cold.vector_for("resident", "", "beidaihe"), FACTORS.mean(axis=0), atol=1e-6)
    keys = cold.keys_
    assert set(keys["level"]) == {"segment", "group_region", "group", "global"}
    assert keys.loc[keys["level"] == "global", "n_users"].item() == 6
    batch = cold.vectors_for(["farmer", "youth"], ["rural_woman", "pupil"], ["changli", "haigang"])
    assert batch.shape == (2, 2) and batch.dtype == np.float32
    # many users, few codes (each code backed off once): every row as if asked alone, None = no sub-group
    codes = [("farmer", "rural_woman", "changli"), ("youth", "pupil", "haigang"), ("farmer", None, "changli"),
             ("resident", "", "beidaihe"), ("farmer", "village_leader", "changli")] * 7
    many = cold.vectors_for(*zip(*codes))
    np.testing.assert_array_equal(many, np.stack([cold.vector_for(*c) for c in codes]))
    assert len({tuple(row) for row in many.tolist()}) == 4


def test_cold_users_skip_zero_rows_and_missing_sub_group():
    factors = np.vstack([FACTORS, np.zeros((1, 2), dtype=np.float32)])
    users = pd.concat([USERS, pd.DataFrame({"group": ["farmer"], "sub_group": [None], "region": ["changli"]})],
                      ignore_index=True)
    cold = UserColdStart(CFG).fit(factors, users.drop(columns="sub_group"))
    # the all-zero (not fitted) user does not drag the farmer centroid to 0
    np.testing.assert_allclose(cold.vector_for("farmer", "", "changli"), [1.5, 0.75], atol=1e-6)
    with_sub = UserColdStart(CFG).fit(factors, users)
    assert with_sub.keys_["n_users"].max() == 6


def test_topic_prior_blend():
    rng = np.random.default_rng(3)
    topics = rng.dirichlet(np.ones(4), size=40)
    proj = rng.normal(size=(4, 2))
    factors = topics @ proj
    users = pd.DataFrame({"group": ["youth"] * 40, "sub_group": "", "region": "haigang"})
    prior = np.array([0.7, 0.1, 0.1, 0.1])
    centroid = factors.mean(axis=0)
    for w in (0.0, 0.3, 1.0):
        cold = UserColdStart(dataclasses.replace(CFG, topic_prior_blend=w, ridge_alpha=0.0)).fit(factors, users, topics)
        got = cold.vector_for("youth", "", "haigang", topic_prior=prior)
        np.testing.assert_allclose(got, (1 - w) * centroid + w * (prior @ proj), atol=1e-4)
    # without topic profiles at fit time, a topic prior is ignored
    plain = UserColdStart(CFG).fit(factors, users)
    np.testing.assert_allclose(plain.vector_for("youth", "", "haigang", prior), centroid, atol=1e-5)


def test_user_fit_keeps_float32_inputs_and_sums_in_blocks(monkeypatch):
    """The city's user factors and topic profiles are float32: the fit reads them as they are and sums
    a block of rows at a time, with the float64 results of one pass over float64 copies."""
    from recsys.training import coldstart

    rng = np.random.default_rng(5)
    n = 500
    topics = rng.dirichlet(np.ones(4), size=n).astype(np.float32)
    factors = (topics @ rng.normal(size=(4, 6)) + rng.normal(0, 0.1, (n, 6))).astype(np.float32)
    users = pd.DataFrame({
        "group": rng.choice(["youth", "farmer"], n), "sub_group": rng.choice(["", "student"], n),
        "region": rng.choice(["haigang", "changli"], n),
    })
    warm = rng.random(n) < 0.7
    whole = UserColdStart(CFG).fit(factors.astype(np.float64), users, topics.astype(np.float64), warm=warm)
    monkeypatch.setattr(coldstart, "_CHUNK", 64)  # several blocks over the 350 warm users
    blocks = UserColdStart(CFG).fit(factors, users, topics, warm=warm)
    pd.testing.assert_frame_equal(blocks.keys_, whole.keys_)
    np.testing.assert_allclose(blocks.centroids_, whole.centroids_, rtol=1e-6)
    np.testing.assert_allclose(blocks.topic_coef_, whole.topic_coef_, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(blocks.topic_intercept_, whole.topic_intercept_, rtol=1e-5, atol=1e-7)
    with pytest.raises(ConfigError, match="user_factors must be finite"):
        bad = factors.copy()
        bad[300, 2] = np.nan
        UserColdStart(CFG).fit(bad, users, topics, warm=warm)


def test_new_user_vector_prefers_the_segment_taste(world):
    model, *_ = world
    users = pd.DataFrame(
        {"group": np.where(np.arange(N_USERS) % K == 0, "farmer", "youth"), "sub_group": "", "region": "changli"}
    )
    cold = UserColdStart(CFG).fit(model.user_factors_, users)
    vec = cold.vector_for("farmer", "", "changli")
    scores = model.item_factors_ @ vec
    cluster = np.arange(N_ITEMS) % K
    assert scores[cluster == 0].min() > scores[cluster != 0].max()


def test_user_cold_start_errors():
    cold = UserColdStart(CFG)
    with pytest.raises(NotFittedError, match="not fitted"):
        cold.vector_for("youth", "", "haigang")
    with pytest.raises(SchemaError, match="lacks column\\(s\\) \\['region'\\]"):
        cold.fit(FACTORS, USERS.drop(columns="region"))
    with pytest.raises(SchemaError, match="has 5 rows, user_factors 6"):
        cold.fit(FACTORS, USERS.iloc[:5])
    with pytest.raises(ConfigError, match="warm must be a bool array of shape \\(6,\\)"):
        cold.fit(FACTORS, USERS, warm=np.ones(3, dtype=bool))
    with pytest.raises(ConfigError, match="user_topics has 2 rows, user_factors 6"):
        cold.fit(FACTORS, USERS, user_topics=np.ones((2, 3)))
    with pytest.raises(ConfigError, match=r"\[cold_start\] topic_prior_blend = 1.5 is out of range; valid: 0..1"):
        UserColdStart(dataclasses.replace(CFG, topic_prior_blend=1.5)).fit(FACTORS, USERS)
    with pytest.raises(ConfigError, match=r"\[cold_start\] min_segment_users = 0 is out of range"):
        UserColdStart(dataclasses.replace(CFG, min_segment_users=0)).fit(FACTORS, USERS)
    fitted = UserColdStart(CFG).fit(FACTORS, USERS, user_topics=np.eye(6)[:, :3])
    with pytest.raises(ConfigError, match="same length, got 2, 1, 1"):
        fitted.vectors_for(["youth", "farmer"], [""], ["haigang"])
    with pytest.raises(ConfigError, match="topic_priors must have 3 columns, got 2"):
        fitted.vector_for("youth", "", "haigang", topic_prior=[0.5, 0.5])
    with pytest.raises(ConfigError, match="topic_priors has 2 rows, expected 1"):
        fitted.vectors_for(["youth"], [""], ["haigang"], topic_priors=np.ones((2, 3)))


def test_user_cold_start_save_load(tmp_path):
    topics = np.eye(6)[:, :3]
    cold = UserColdStart(CFG).fit(FACTORS, USERS, user_topics=topics)
    write_part(tmp_path / "ucs", cold)
    back = read_part(tmp_path / "ucs", UserColdStart)
    args = (["farmer", "youth", "resident"], ["village_leader", "pupil", ""], ["changli", "lulong", "funing"])
    np.testing.assert_array_equal(back.vectors_for(*args, topic_priors=topics[:3]),
                                  cold.vectors_for(*args, topic_priors=topics[:3]))
    pd.testing.assert_frame_equal(back.keys_, cold.keys_)
    assert back.config == cold.config
    plain = UserColdStart(CFG).fit(FACTORS, USERS)
    write_part(tmp_path / "plain", plain)
    assert read_part(tmp_path / "plain", UserColdStart).topic_coef_ is None
    with pytest.raises(ArtifactError, match="holds 'user_cold_start' format 1, expected 'item_cold_start'"):
        read_part(tmp_path / "ucs", ItemColdStart)
    (tmp_path / "ucs" / "keys.parquet").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="keys.parquet: checksum mismatch"):
        read_part(tmp_path / "ucs", UserColdStart)
    with pytest.raises(ArtifactError, match="keys.parquet: unreadable"):
        read_part(tmp_path / "ucs", UserColdStart, verify=False)
    (tmp_path / "plain" / "keys.parquet").unlink()
    with pytest.raises(ArtifactError, match="keys.parquet: missing"):
        read_part(tmp_path / "plain", UserColdStart, verify=False)
    with pytest.raises(NotFittedError, match="nothing to save"):
        write_part(tmp_path / "x", UserColdStart(CFG))
    assert not (tmp_path / "x").exists()  # nothing half-written is left
