"""Known-answer tests of the ranking's parts: scoring, diversity, reasons, candidates."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from recsys.config import EngineConfig, RankingConfig
from recsys.ranking import Recommender, core, diversity, scoring
from recsys.ranking.eligibility import make_filter
from recsys.ranking.users import resolve
from recsys.ranking.catalog import NS_MIN
from recsys.ranking.reasons import CITY_POPULAR, FILLER

from ranking_world import NOW, TAX, clean_items, cluster_vectors, hand_model, items_frame, users_frame

DAY_NS = 86_400 * 10**9
T = len(TAX.topics)
TOPIC = {code: i for i, code in enumerate(TAX.topics)}


def engine_config(**ranking) -> EngineConfig:
    return dataclasses.replace(EngineConfig(), ranking=dataclasses.replace(RankingConfig(), **ranking))


def only(term: str, **extra) -> EngineConfig:
    """A config whose blend is one term alone."""
    weights = {f"weight_{t}": 0.0 for t in scoring.TERMS}
    weights[f"weight_{term}"] = 1.0
    return engine_config(**weights, **extra)


# ---- scoring -------------------------------------------------------------------


def test_freshness_halves_every_half_life():
    now = int(NOW.value)
    published = np.array([now, now - 7 * DAY_NS, now - 14 * DAY_NS, now + DAY_NS, NS_MIN], dtype=np.int64)
    got = scoring.freshness(published, now, 7.0)
    np.testing.assert_allclose(got, [1.0, 0.5, 0.25, 1.0, 0.0], rtol=1e-6)


def test_blend_terms_known_answer():
    users = users_frame(["farmer", "youth"], ["qinglong", "haigang"])
    items = items_frame(
        3,
        topics=[["earthquake"], ["earthquake", "health_literacy"], ["ocean_coast"]],
        authority=["national", "provincial", "other"],
        published_at=[NOW - pd.Timedelta(days=7), NOW, None],
    )
    item_factors = np.array([[3.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    user_topics = np.zeros((2, T), np.float32)
    user_topics[0, TOPIC["earthquake"]] = 0.6
    user_topics[0, TOPIC["health_literacy"]] = 0.4
    user_topics[1, TOPIC["ocean_coast"]] = 1.0
    # segments (sorted): (farmer, qinglong), (youth, haigang)
    seg_pop = np.array([[0.0, 0.0, 4.0], [np.e - 1, 0.0, 0.0]], np.float32)
    model = hand_model(
        users,
        items,
        np.array([[2.0, 0.0], [0.0, 0.5]]),
        item_factors,
        user_topics=user_topics,
        segment_popularity=seg_pop,
        content_vectors=cluster_vectors([0, 1, 2]),
    )
    state = Recommender.from_model(model).state
    cand = np.array([[0, 1, 2], [0, 1, 2]])
    users_b = state.user_pos
    rows = np.array([users_b["u0"], users_b["u1"]])
    parts = scoring.components(
        state.catalog,
        cand,
        model.user_factors[rows],
        model.user_topics[rows],
        state.user_segment[rows],
        state.freshness(int(NOW.value)),
    )
    scale = np.percentile(np.linalg.norm(item_factors, axis=1), 99)
    # relevance: u.v / (|u| * p99 item norm), clipped to [-1, 1]
    np.testing.assert_allclose(parts.relevance[0], [min(1, 3 / scale), 0, -1 / scale], rtol=1e-5)
    np.testing.assert_allclose(parts.relevance[1], [0, 1 / scale, 0], atol=1e-6)
    # topic: sum p_t * share_t / max p
    np.testing.assert_allclose(parts.topic[0], [1.0, (0.6 * 0.5 + 0.4 * 0.5) / 0.6, 0.0], rtol=1e-5)
    np.testing.assert_allclose(parts.topic[1], [0.0, 0.0, 1.0], rtol=1e-5)
    # popularity: log1p(p) / log1p(max p) in the user's own segment
    np.testing.assert_allclose(parts.popularity[0], [0.0, 0.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(parts.popularity[1], [1.0, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(parts.freshness[0], [0.5, 1.0, 0.0], rtol=1e-5)
    np.testing.assert_allclose(parts.authority[0], [1.0, 0.6, 0.0], rtol=1e-6)
    blended = scoring.blend(parts, state.config)
    w = scoring.weights(state.config)
    np.testing.assert_allclose(blended, parts.stack() @ w, rtol=1e-5)


def _engagement_world():
    """Two known users and four items with hand-set engagement-model arrays."""
    users = users_frame(["farmer", "youth"], ["qinglong", "haigang"])
    items = items_frame(
        4,
        topics=[["earthquake"], ["earthquake", "health_literacy"], ["ocean_coast"], ["weather_climate"]],
        format=["video", "article", "article", "audio"],
        authority=["national", "provincial", "other", "municipal"],
        published_at=[NOW - pd.Timedelta(days=2), NOW, None, NOW - pd.Timedelta(days=1)],
        target_groups=[[], [], [], ["youth"]],
    )
    model = hand_model(
        users,
        items,
        np.array([[1.0, 0.0], [0.0, 1.0]]),
        np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.5]]),
        content_vectors=cluster_vectors([0, 1, 2, 3]),
    )
    model.item_quality = np.array([0.5, -0.2, 0.1, 0.3], np.float32)
    model.authority_quality = np.array([0.4, 0.2, 0.0, -0.1], np.float32)
    model.user_interest = np.zeros((2, T), np.float32)
    model.user_interest[0, TOPIC["earthquake"]] = 1.0
    model.user_interest[0, TOPIC["health_literacy"]] = -0.6
    model.user_interest[1, TOPIC["ocean_coast"]] = 0.8
    fmt = list(TAX.formats)
    model.user_format = np.zeros((2, len(fmt)), np.float32)
    model.user_format[0, fmt.index("video")] = 0.7
    model.user_format[1, fmt.index("article")] = -0.4
    # segments (sorted): (farmer, qinglong), (youth, haigang), then the population row
    model.segment_interest = np.zeros((3, T), np.float32)
    model.segment_interest[1, TOPIC["weather_climate"]] = 2.0
    model.segment_format = np.zeros((3, len(fmt)), np.float32)
    model.topic_freshness = np.zeros((T, 4), np.float32)
    model.topic_freshness[TOPIC["earthquake"], 1] = 1.0  # tau = 4 days
    model.topic_trend = np.zeros(T, np.float32)
    model.topic_trend[TOPIC["weather_climate"]] = 0.25
    return model


def test_engagement_terms_known_answer():
    model = _engagement_world()
    state = Recommender.from_model(model).state
    # u0 known; "new" a cold youth of haigang: the segment's arrays
    users = resolve(state, ["u0", "new"], [None, ("youth", None, "haigang")])
    now = int(NOW.value)
    cand = np.array([[0, 1, 2, 3], [0, 1, 2, 3]])
    parts = scoring.components(
        state.catalog,
        cand,
        users.vectors,
        users.topics,
        users.segments,
        state.freshness(now),
        engagement=scoring.engagement_inputs(state, users, now),
    )
    np.testing.assert_allclose(parts.quality, [[0.5, -0.2, 0.1, 0.3]] * 2, rtol=1e-6)
    np.testing.assert_allclose(parts.interest[0], [1.0, 0.5 * 1.0 + 0.5 * -0.6, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(parts.interest[1], [0.0, 0.0, 0.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(parts.format[0], [0.7, 0.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(parts.format[1], [0.0, 0.0, 0.0, 0.0], atol=1e-6)
    # earthquake: exp(-age / 4) (split over two topics for item 1); weather: the trend; no publish time: nothing
    want = [np.exp(-2 / 4), 0.5 * 1.0, 0.0, 0.25]
    np.testing.assert_allclose(parts.timeliness[0], want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(scoring.blend(parts, state.config), parts.stack() @ scoring.weights(state.config), rtol=1e-5)


def test_engagement_terms_rank_alone_and_new_items_get_their_authority_quality():
    model = _engagement_world()
    rec = Recommender.from_model(model, config=only("quality", max_topic_share=1.0).ranking)
    # u1 (a youth) may get item 3 (youth only): quality order 0, 3, 2, 1
    assert [r.item_id for r in rec.recommend("u1", k=4)] == ["i00", "i03", "i02", "i01"]
    # u0 is a farmer: item 3 is not for them
    assert [r.item_id for r in rec.recommend("u0", k=4)] == ["i00", "i02", "i01"]
    # a catalogue item the bundle never saw has its authority level's quality
    catalogue = pd.concat([model.items, clean_items(items_frame(5, authority="national").iloc[[4]])])
    state = Recommender.from_model(model, catalog=catalogue).state
    assert state.engagement.item_quality[state.catalog.index_of["i04"]] == pytest.approx(0.4)


def test_segment_best_candidates_follow_the_segment_level_score():
    model = _engagement_world()
    state = Recommender.from_model(model).state
    tables = state.engagement
    # quality + timeliness at the window's end: item 0 0.5 + exp(-2/4), item 1 -0.2 + 0.5, item 2 0.1,
    # item 3 0.3 + 0.25; youth x haigang (row 1) adds 2.0 for weather (item 3); all four may go there
    assert tables.segment_best[1, :4].tolist() == [3, 0, 1, 2]
    # farmer x qinglong (row 0): item 3 targets youth only
    assert tables.segment_best[0, :3].tolist() == [0, 1, 2] and tables.segment_best[0, 3] == -1
    # per topic: quality + timeliness
    assert tables.topic_best[TOPIC["earthquake"], :2].tolist() == [0, 1]


# ---- diversity -------------------------------------------------------------------


def test_near_duplicates_are_pairs_strictly_above_threshold():
    x = np.zeros((4, 3), np.float32)
    x[0] = [1, 0, 0]
    x[1] = [0.95, math.sqrt(1 - 0.95**2), 0]
    x[2] = [0.8, 0.6, 0]
    x[3] = [0, 0, 1]
    pairs = diversity.near_duplicates(x, 0.9)
    assert pairs == {0: (1,), 1: (0, 2), 2: (1,)}
    # incremental search from row 2 on, reusing the pairs among rows 0-1, gives the same
    first = diversity.near_duplicates(x[:2], 0.9)
    assert diversity.near_duplicates(x, 0.9, start=2, known=first) == pairs


def test_select_never_puts_near_duplicates_together_and_caps_topics_softly():
    # items 0..7 in score order; 0~1 near-duplicates; topics: 0-5 topic 0, 6-7 topic 1
    order = np.arange(8)[None, :]
    valid = np.ones((1, 8), dtype=bool)
    primary = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    neighbours = {0: (1,), 1: (0,)}
    pos, count, relaxed = diversity.select(order, valid, primary, 5, cap=2, neighbours=neighbours, n_topics=2)
    # pass 1: 0, 2 (topic 0 full), 6, 7; pass 2 relaxes the cap for the best deferred: 3
    assert count.tolist() == [5]
    assert pos[0].tolist() == [0, 2, 3, 6, 7]
    assert relaxed.tolist() == [False]
    # a larger cap needs no relaxing
    pos, _, _ = diversity.select(order, valid, primary, 4, cap=4, neighbours=neighbours, n_topics=2)
    assert pos[0].tolist() == [0, 2, 3, 4]
    # only near-duplicates left to fill: they share the list, and the caller is told
    pos, count, relaxed = diversity.select(order[:, :2], valid[:, :2], primary, 2, cap=2, neighbours=neighbours, n_topics=2)
    assert pos[0].tolist() == [0, 1] and relaxed.tolist() == [True]


def test_select_fills_past_the_first_candidates_and_skips_invalid():
    c = 200
    order = np.arange(c)[None, :]
    valid = np.zeros((1, c), dtype=bool)
    valid[0, [5, 150, 199]] = True
    pos, count, _ = diversity.select(order, valid, np.zeros(c, np.int64), 3, cap=1, neighbours={}, n_topics=1)
    assert count.tolist() == [3]
    assert pos[0].tolist() == [5, 150, 199]


def test_topic_cap_scales_with_k():
    assert [diversity.topic_cap(k, 0.3) for k in (1, 3, 10, 20)] == [1, 1, 3, 6]


# ---- reasons ----------------------------------------------------------------------


def test_reasons_are_short_chinese_with_codes():
    users = users_frame(["farmer", "youth"], ["qinglong", "haigang"])
    items = items_frame(
        2,
        topics=[["disaster_prevention"], ["robotics_youth"]],
        authority=["national", "other"],
        published_at=[NOW - pd.Timedelta(days=1), pd.Timestamp("2020-01-01T00:00:00Z")],
    )
    user_topics = np.full((2, T), 0.59 / (T - 1), np.float32)
    user_topics[:, TOPIC["disaster_prevention"]] = 0.41
    seg_pop = np.array([[5.0, 0.0], [0.0, 0.0]], np.float32)
    model = hand_model(
        users,
        items,
        np.array([[1.0, 0.0], [0.0, 1.0]]),
        np.array([[0.0, 1.0], [0.0, 1.0]]),
        user_topics=user_topics,
        segment_popularity=seg_pop,
        content_vectors=cluster_vectors([0, 1]),
    )
    rec = Recommender.from_model(model)
    first = rec.recommend("u0", k=2)[0]
    assert first.item_id == "i00"
    assert set(first.reasons) == {"兴趣:防灾避险 0.41", "青龙县农民近期热门", "新发布·国家级来源"}
    # a cold user of a segment the bundle has no row for: city-wide popularity
    assert rec.recommend("new", k=1, group="resident", region="lulong")[0].item_id in {"i00", "i01"}
    state = rec.state
    assert state.reasons.popularity[-1] == CITY_POPULAR
    # the old, unpopular, other-source item with no interest for u0: only a filler reason
    weak = [r for r in rec.recommend("u0", k=2) if r.item_id == "i01"][0]
    assert weak.reasons == [FILLER]


# ---- candidates and the exact fallback -------------------------------------------


def _grid_model(config: EngineConfig, n_items: int = 30):
    rng = np.random.default_rng(3)
    users = users_frame(["farmer", "youth", "resident"], ["qinglong", "haigang", "haigang"])
    topics = [[list(TAX.topics)[j % 5]] for j in range(n_items)]
    formats = ["audio" if j % 10 == 0 else "article" for j in range(n_items)]
    items = items_frame(n_items, topics=topics, format=formats)
    return hand_model(
        users,
        items,
        rng.normal(size=(3, 6)),
        rng.normal(size=(n_items, 6)),
        content_vectors=cluster_vectors(range(n_items)),
        config=config,
    )


def _brute_force(model, state, user: str, k: int, mask: np.ndarray) -> list[str]:
    """Top-k by the blend over every allowed item, computed directly."""
    row = state.user_pos[user]
    cand = np.flatnonzero(mask)[None, :]
    parts = scoring.components(
        state.catalog,
        cand,
        model.user_factors[[row]],
        model.user_topics[[row]],
        state.user_segment[[row]],
        state.freshness(state.default_now_ns),
    )
    score = scoring.blend(parts, state.config)[0]
    order = np.argsort(-score, kind="stable")[:k]
    return state.catalog.item_ids[cand[0, order]].tolist()


def test_tight_filter_is_filled_by_exact_search_over_the_eligible_items():
    # one ANN candidate and no other source: the radio filter (audio only)
    # leaves almost nothing among candidates, so the list must come from the
    # exact fallback -- and be exactly the brute-force top 3
    config = only(
        "collaborative",
        ann_candidates=1,
        ann_overfetch=1,
        ann_max_fetch=1,
        allow_search_below=0.0,
        candidate_topics=0,
        fresh_candidates=0,
        popular_candidates=0,
        best_candidates=0,
        max_topic_share=1.0,
    )
    model = _grid_model(config)
    rec = Recommender.from_model(model)
    got = [r.item_id for r in rec.recommend("u0", k=3, channel="radio")]
    audio = model.items["format"].to_numpy() == "audio"
    assert got == _brute_force(model, rec.state, "u0", 3, audio)
    state = rec.state
    users = resolve(state, ["u0"])
    radio = make_filter(TAX, channel="radio")
    assert core.rank(state, users, 3, radio, state.default_now_ns).exact.tolist() == [True]
    # without the filter the same starved candidate sources still fill k
    assert len(rec.recommend("u0", k=10)) == 10


def test_candidates_from_ann_alone_match_brute_force_when_ample():
    config = only("collaborative", max_topic_share=1.0)
    model = _grid_model(config)
    rec = Recommender.from_model(model)
    got = [r.item_id for r in rec.recommend("u1", k=5)]
    assert got == _brute_force(model, rec.state, "u1", 5, np.ones(30, dtype=bool))


def test_filtered_search_over_the_topic_blocks_is_exact():
    # every request searches its allow-list (share below 1.0), no other source:
    # the list must be the brute-force top 4 among the filter's live items
    config = only(
        "collaborative",
        allow_search_below=1.0,
        ann_candidates=4,
        ann_overfetch=1,
        candidate_topics=0,
        fresh_candidates=0,
        popular_candidates=0,
        best_candidates=0,
        max_topic_share=1.0,
    )
    model = _grid_model(config)
    rec = Recommender.from_model(model)
    topics = ["earthquake", "ocean_coast"]
    got = [r.item_id for r in rec.recommend("u2", k=4, topics=topics)]
    mask = model.items["topics"].map(lambda t: bool(set(t) & set(topics))).to_numpy()
    assert got == _brute_force(model, rec.state, "u2", 4, mask)
    state = rec.state
    ranked = core.rank(state, resolve(state, ["u2"]), 4, make_filter(TAX, topics=topics), state.default_now_ns)
    assert ranked.exact.tolist() == [False]  # the allow-list search found them, not the fallback
