"""Training end to end on a tiny world: model assembly, bundle round trip, determinism, as-of."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys import columns as C
from recsys.config import EngineConfig, config_from_dict
from recsys.exceptions import ArtifactError
from recsys.training.model import TrainedModel
from recsys.schema import validate_tables
from recsys.taxonomy import load_taxonomy
from recsys.training import train_model

END = pd.Timestamp("2026-06-30T16:00:00Z")
TOPICS = ["modern_agriculture", "health_literacy", "robotics_youth", "work_safety"]
WORDS = {
    "modern_agriculture": "温室 大棚 种植 施肥 灌溉",
    "health_literacy": "健康 高血压 饮食 运动 睡眠",
    "robotics_youth": "机器人 编程 竞赛 传感器 少年",
    "work_safety": "安全 生产 车间 防护 隐患",
}


def tiny_world(seed: int = 0, n_users: int = 80, n_items: int = 40):
    """Users who each like one topic; items of one topic each; a few cold users and items."""
    rng = np.random.default_rng(seed)
    groups = ["farmer", "resident", "youth", "urban_worker"]
    users = pd.DataFrame(
        {
            C.USER_ID: [f"u{i}" for i in range(n_users)],
            C.GROUP: [groups[i % 4] for i in range(n_users)],
            C.REGION: ["qinglong" if i % 2 else "haigang" for i in range(n_users)],
        }
    )
    item_topic = [TOPICS[j % 4] for j in range(n_items)]
    items = pd.DataFrame(
        {
            C.ITEM_ID: [f"i{j}" for j in range(n_items)],
            C.TITLE: [f"{WORDS[t].split()[j % 5]}知识第{j}讲" for j, t in enumerate(item_topic)],
            C.SUMMARY: [WORDS[t] for t in item_topic],
            C.TOPICS: [[t] for t in item_topic],
            C.PUBLISHED_AT: [END - pd.Timedelta(days=40)] * n_items,
        }
    )
    rows = []
    warm_users = n_users - 4  # the last four users have no events
    warm_items = n_items - 4  # the last four items have no events
    for u in range(warm_users):
        liked = [j for j in range(warm_items) if j % 4 == u % 4]
        for j in rng.choice(liked, size=4, replace=False):
            ts = END - pd.Timedelta(days=float(rng.uniform(1, 30)))
            rows.append((f"u{u}", f"i{j}", "impression", ts))
            rows.append((f"u{u}", f"i{j}", "click", ts + pd.Timedelta(seconds=5)))
    events = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP])
    events[C.TIMESTAMP] = pd.to_datetime(events[C.TIMESTAMP], utc=True)
    result = validate_tables(users, items, events, taxonomy=load_taxonomy(), end=END)
    assert result.quarantine.empty
    return result.users, result.items, result.events


def small_config() -> EngineConfig:
    return config_from_dict({
        "collaborative": {"factors": 8, "iterations": 8},
        "content": {"svd_components": 8},
        "index": {"recall_sample": 20, "recall_k": 5},
    })


@pytest.fixture(scope="module")
def world():
    return tiny_world()


@pytest.fixture(scope="module")
def model(world):
    return train_model(*world, config=small_config())


def test_model_shapes_and_cold_vectors(model, world):
    users, items, _ = world
    assert model.user_factors.shape == (len(users), 8)
    assert model.item_factors.shape[0] == len(items)
    assert model.item_warm.sum() == len(items) - 4
    # cold users and items still get non-zero vectors (segment centroid / content mapping)
    assert np.all(np.linalg.norm(model.user_factors[-4:], axis=1) > 0)
    assert np.all(np.linalg.norm(model.item_factors[-4:], axis=1) > 0)
    assert model.seen.shape == (len(users), len(items))
    assert (model.seen.toarray() == 1).sum(axis=1)[:4].tolist() == [4, 4, 4, 4]
    assert model.segment_popularity.shape == (len(model.segments), len(items))
    assert 0.0 <= model.info["index"]["recall_at_k"] <= 1.0


def test_users_prefer_their_topic(model):
    # user 0 likes modern_agriculture items (j % 4 == 0): they must outscore the others on average
    scores = model.user_factors[0] @ model.item_factors[:36].T
    own = scores[[j for j in range(36) if j % 4 == 0]].mean()
    other = scores[[j for j in range(36) if j % 4 != 0]].mean()
    assert own > other
    topic_codes = list(model.taxonomy.topics)
    assert np.argmax(model.user_topics[0]) == topic_codes.index("modern_agriculture")


def test_determinism(world, model):
    again = train_model(*world, config=small_config())
    np.testing.assert_array_equal(again.user_factors, model.user_factors)
    np.testing.assert_array_equal(again.item_factors, model.item_factors)
    np.testing.assert_array_equal(again.content_vectors, model.content_vectors)


def test_bundle_round_trip(tmp_path, model):
    path = model.save(tmp_path / "models")
    loaded = TrainedModel.load(tmp_path / "models" / "latest")
    assert loaded.path == path.resolve()
    for name in TrainedModel._ARRAYS:
        np.testing.assert_array_equal(np.asarray(getattr(loaded, name)), np.asarray(getattr(model, name)))
    assert (loaded.seen != model.seen).nnz == 0
    pd.testing.assert_frame_equal(loaded.users, model.users)
    q = np.asarray(model.user_factors[:5])
    s1, i1 = model.item_index.search(q, 5)
    s2, i2 = loaded.item_index.search(q, 5)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2)
    assert loaded.manifest["counts"]["users"] == model.n_users
    assert loaded.manifest["data_window"]["end"] == model.window["end"]
    assert loaded.taxonomy.topics == model.taxonomy.topics
    # the reloaded content model embeds items exactly as the trained one
    np.testing.assert_allclose(loaded.content_model.transform(model.items.head(3)), model.content_vectors[:3], atol=1e-6)


@pytest.mark.parametrize("victim", ["user_factors.npy", "items.parquet", "item_index/vectors.npy", "taxonomy.toml"])
def test_corrupted_or_missing_file_is_named(tmp_path, model, victim):
    path = model.save(tmp_path / "models")
    (path / victim).write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match=victim.replace(".", r"\.")):
        TrainedModel.load(path)
    (path / victim).unlink()
    with pytest.raises(ArtifactError, match=victim.replace(".", r"\.") + ": missing"):
        TrainedModel.load(path)


def test_as_of_excludes_later_events(world):
    users, items, events = world
    cutoff = END - pd.Timedelta(days=15)
    m = train_model(users, items, events, config=small_config(), as_of=cutoff)
    before = int((events[C.TIMESTAMP] < cutoff).sum())
    assert m.info["counts"]["events"] == before < len(events)
    assert pd.Timestamp(m.window["end"]) == cutoff
    # nothing engaged on or after the cutoff is marked seen
    late = events[(events[C.TIMESTAMP] >= cutoff) & (events[C.EVENT_TYPE] == "click")]
    early = events[(events[C.TIMESTAMP] < cutoff) & (events[C.EVENT_TYPE] == "click")]
    only_late = set(zip(late[C.USER_ID], late[C.ITEM_ID])) - set(zip(early[C.USER_ID], early[C.ITEM_ID]))
    seen = m.seen.toarray()
    uidx = {u: i for i, u in enumerate(m.users[C.USER_ID])}
    iidx = {t: j for j, t in enumerate(m.items[C.ITEM_ID])}
    assert only_late
    assert all(seen[uidx[u], iidx[i]] == 0 for u, i in only_late)


def test_warm_start_reuses_factors(world, model):
    cfg = small_config()
    warm = train_model(*world, config=cfg, warm_start=model)
    assert warm.info["warm_start"] is True
    # a warm start from a converged model stays close to it
    cos = np.sum(warm.item_factors[:36] * model.item_factors[:36], axis=1) / (
        np.linalg.norm(warm.item_factors[:36], axis=1) * np.linalg.norm(model.item_factors[:36], axis=1)
    )
    assert np.median(cos) > 0.9


def _with_unclicked_impressions(world, seed: int = 1):
    """The tiny world plus impressions of other topics' items that nobody clicked."""
    users, items, events = world
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(len(users) - 4):
        others = [j for j in range(len(items) - 4) if j % 4 != u % 4]
        for j in rng.choice(others, size=4, replace=False):
            rows.append((f"u{u}", f"i{j}", "impression", END - pd.Timedelta(days=float(rng.uniform(1, 30)))))
    extra = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP])
    extra[C.TIMESTAMP] = pd.to_datetime(extra[C.TIMESTAMP], utc=True)
    return users, items, pd.concat([events, extra], ignore_index=True)


def test_engagement_model_learns_rates_from_impressions(world, model):
    # every impression of the tiny world was clicked: no rate to learn, every effect stays 0
    assert model.info["counts"]["exposures"] == 0
    assert not np.asarray(model.user_interest).any() and not np.asarray(model.item_quality).any()
    assert model.user_interest.shape == (len(world[0]), len(model.taxonomy.topics))
    assert model.segment_interest.shape == (len(model.segments) + 1, len(model.taxonomy.topics))
    # with impressions nobody engaged with, each user's own topic stands out
    learned = train_model(*_with_unclicked_impressions(world), config=small_config())
    assert learned.info["counts"]["exposures"] > 0
    topics = list(learned.taxonomy.topics)
    for u in range(8):
        liked = topics.index(TOPICS[u % 4])
        others = [topics.index(t) for t in TOPICS if t != TOPICS[u % 4]]
        assert learned.user_interest[u, liked] > learned.user_interest[u, others].max()


def test_popularity_half_life_is_its_own(world):
    cfg = config_from_dict({"interactions": {"popularity_half_life_days": 1.0}}, base=small_config())
    short = train_model(*world, config=cfg)
    base = train_model(*world, config=small_config())
    # the same engagement, weighted toward the last days: less in all, and a different ranking of items
    assert short.popularity_recent.sum() < base.popularity_recent.sum()
    assert not np.allclose(short.popularity_recent / short.popularity_recent.max(), base.popularity_recent / base.popularity_recent.max())
    np.testing.assert_array_equal(short.user_factors, base.user_factors)  # the collaborative fit keeps its decay
