"""Reasons as codes: the coded reasons equal texts written item by item from the rules.

The reference below renders each picked item's reasons with f-strings and a
loop, straight from the rules in :mod:`recsys.ranking.reasons`; the coded
path (``explain`` / ``explain_learned`` -> ``ItemReasons``) must give the same
texts, as Python lists and as an Arrow list column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from ranking_world import TAX, hand_model, items_frame, users_frame

from recsys import columns as C
from recsys.config import RankingConfig
from recsys.ranking import Recommender
from recsys.ranking.reasons import (
    AUTHORITY_ZH,
    CITY_POPULAR,
    COENGAGED,
    FILLER,
    FRESH,
    GOOD_CONTENT,
    LEARNED_KINDS,
    PRIORITY_PREFIX,
    REASONS_TYPE,
    SIMILAR_USERS,
    explain,
    explain_learned,
    priority_first,
    reason_tables,
)
from recsys.ranking.scoring import TERMS, weights

#: the taxonomy's codes in its order (the tables' order)
TOPICS, GROUPS, REGIONS = list(TAX.topics), list(TAX.groups), list(TAX.regions)
N_TOPICS = len(TOPICS)
SEGMENTS = pd.DataFrame({C.GROUP: ["farmer", "youth", "farmer"], C.REGION: ["qinglong", "haigang", "lulong"]})
NAMED = ("national", "provincial")


def _zh(kind: str, code: str) -> str:
    return TAX.zh(kind, code)


def _popular_text(segment: int) -> str:
    if segment == len(SEGMENTS):
        return CITY_POPULAR
    return f"{_zh('region', SEGMENTS[C.REGION][segment])}{_zh('group', SEGMENTS[C.GROUP][segment])}近期热门"


def _best_topic(user_topics: np.ndarray, topic_row: np.ndarray) -> tuple[int, float]:
    """The item's topic the user cares most about (first of equals) and that interest in [0, 1]."""
    best, value = N_TOPICS, -1.0
    for t in topic_row:
        v = -1.0 if t == N_TOPICS else float(user_topics[t])
        if v > value:
            best, value = int(t), v
    return best, min(max(value, 0.0), 1.0)


def _strongest(texts: list[str], shown: list[bool], contrib: list[float]) -> list[str]:
    """Shown texts, strongest contribution first (equal ones in kind order), at most 3; else the filler."""
    kinds = sorted((k for k in range(len(texts)) if shown[k]), key=lambda k: -contrib[k])
    return [texts[k] for k in kinds[:3]] or [FILLER]


def reference_linear(parts, items, count, user_topics, segments, topic_idx, authority, config, first=None):
    w = weights(config)
    out = []
    for u in range(items.shape[0]):
        user = []
        for j in range(int(count[u])):
            rel, top, pop, fresh, auth, quality, learned, _, timely = (parts[u, j, i] for i in range(len(TERMS)))
            best, interest = _best_topic(user_topics[u], topic_idx[items[u, j]])
            code = C.AUTHORITIES[authority[items[u, j]]]
            is_fresh = fresh >= 0.5
            fresh_text = "·".join(
                (["新发布"] if is_fresh else []) + ([f"{AUTHORITY_ZH[code]}来源"] if code in NAMED or not is_fresh else [])
            )
            texts = [
                f"相似用户喜欢 {min(max(round(float(rel) * 100), -100), 100) / 100:.2f}",
                f"兴趣:{_zh('topic', TOPICS[min(best, N_TOPICS - 1)])} {round(interest * 100) / 100:.2f}",
                _popular_text(int(segments[u])),
                fresh_text,
            ]
            shown = [
                rel >= 0.3,
                top >= 0.5 and best < N_TOPICS and np.float32(interest) * N_TOPICS >= 1.5,
                pop >= 0.5,
                is_fresh or code in NAMED,
            ]
            contrib = [w[0] * rel, w[1] * top + w[6] * learned, w[2] * pop, w[3] * fresh + w[4] * auth + w[5] * quality + w[8] * timely]
            reasons = _strongest(texts, shown, contrib)
            if first is not None and first[u][j] is not None:
                reasons = [first[u][j], *reasons]
            user.append(reasons)
        out.append(user)
    return out


def _block(rng: np.random.Generator, m: int = 40, k: int = 6, n_items: int = 30):
    """A random block of picked items: some lists short, terms around the thresholds."""
    items = np.stack([rng.choice(n_items, k, replace=False) for _ in range(m)]).astype(np.int64)
    count = rng.integers(0, k + 1, m).astype(np.int64)
    items[np.arange(k)[None, :] >= count[:, None]] = -1
    parts = rng.choice([0.0, 0.2, 0.3, 0.45, 0.5, 0.7, 0.9, 1.0, -0.4], size=(m, k, len(TERMS))).astype(np.float32)
    parts[..., 0] = rng.uniform(-1.2, 1.2, (m, k))  # relevance, clipped into the table's range
    user_topics = rng.dirichlet(np.ones(N_TOPICS) * 0.3, m).astype(np.float32)
    topic_idx = np.full((n_items, 3), N_TOPICS, np.int64)
    for i in range(n_items):
        n = int(rng.integers(0, 4))  # some items have no topic
        topic_idx[i, :n] = rng.choice(N_TOPICS, n, replace=False)
    authority = rng.integers(0, len(C.AUTHORITIES), n_items).astype(np.int64)
    segments = rng.integers(0, len(SEGMENTS) + 1, m).astype(np.int64)
    return parts, items, count, user_topics, segments, topic_idx, authority


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_linear_reasons_from_codes_equal_the_texts_of_the_rules(seed):
    tables = reason_tables(TAX, SEGMENTS)
    config = RankingConfig()
    parts, items, count, user_topics, segments, topic_idx, authority = _block(np.random.default_rng(seed))
    got = explain(tables, parts, items, count, user_topics, segments, topic_idx, authority, config)
    want = reference_linear(parts, items, count, user_topics, segments, topic_idx, authority, config)
    assert got.lists() == want
    assert any(r == [FILLER] for user in want for r in user) and any(len(r) == 3 for user in want for r in user)
    column = got.arrow()
    assert column.type == REASONS_TYPE
    assert column.to_pylist() == [r for user in want for r in user]
    assert len(got.offsets) == int(count.sum()) + 1


def test_first_reason_goes_before_the_others_and_before_a_filler():
    tables = reason_tables(TAX, SEGMENTS)
    config = RankingConfig()
    rng = np.random.default_rng(5)
    parts, items, count, user_topics, segments, topic_idx, authority = _block(rng)
    first_topic = rng.integers(-1, N_TOPICS, items.shape)  # -1: no first reason
    codes = np.where(first_topic >= 0, tables.code.priority[np.maximum(first_topic, 0)], -1).astype(np.int32)
    texts = [[f"{PRIORITY_PREFIX}{_zh('topic', TOPICS[t])}" if t >= 0 else None for t in row] for row in first_topic]
    got = explain(tables, parts, items, count, user_topics, segments, topic_idx, authority, config, first=codes)
    want = reference_linear(parts, items, count, user_topics, segments, topic_idx, authority, config, first=texts)
    assert got.lists() == want
    assert any(len(r) == 2 and r[1] == FILLER and r[0].startswith(PRIORITY_PREFIX) for user in want for r in user)
    assert any(len(r) == 4 for user in want for r in user)


def test_priority_first_names_the_most_boosted_topic_of_the_item():
    tables = reason_tables(TAX, SEGMENTS)
    rng = np.random.default_rng(3)
    m, k, n_items = 12, 4, 20
    topic_bool = rng.random((n_items, N_TOPICS)) < 0.2
    boost = np.where(rng.random((m, N_TOPICS)) < 0.3, rng.choice([0.5, 1.0], (m, N_TOPICS)), 0).astype(np.float32)
    items = rng.integers(0, n_items, (m, k)).astype(np.int64)
    count = rng.integers(0, k + 1, m).astype(np.int64)
    items[np.arange(k)[None, :] >= count[:, None]] = -1
    got = priority_first(tables, boost, topic_bool, items, count)
    for u in range(m):
        for j in range(k):
            best, value = -1, 0.0
            if j < count[u]:
                for t in range(N_TOPICS):
                    if topic_bool[items[u, j], t] and boost[u, t] > value:
                        best, value = t, float(boost[u, t])
            want = -1 if best < 0 else tables.code.priority[best]
            assert got[u, j] == want
    assert (got >= 0).any() and (got[np.arange(k)[None, :] < count[:, None]] < 0).any()


def test_learned_reasons_from_codes_equal_the_texts_of_the_rules():
    tables = reason_tables(TAX, SEGMENTS)
    rng = np.random.default_rng(7)
    _, items, count, user_topics, segments, topic_idx, authority = _block(rng)
    m, k = items.shape
    n_kinds = len(LEARNED_KINDS)
    contrib = rng.choice([-0.2, 0.0, 0.1, 0.3, 0.3, 0.8], size=(m, k, n_kinds + 4)).astype(np.float32)
    groups = rng.integers(-1, len(GROUPS), m)
    regions = rng.integers(0, len(REGIONS), m)
    hide = rng.random((m, n_kinds)) < 0.2
    got = explain_learned(tables, contrib, items, count, user_topics, segments, groups, regions, topic_idx, authority, hide=hide)
    want = []
    for u in range(m):
        user = []
        for j in range(int(count[u])):
            best, interest = _best_topic(user_topics[u], topic_idx[items[u, j]])
            code = C.AUTHORITIES[authority[items[u, j]]]
            level = int(np.argmax(contrib[u, j, n_kinds:]))
            popular = [
                CITY_POPULAR,
                f"{_zh('group', GROUPS[max(groups[u], 0)])}近期热门",
                f"{_zh('region', REGIONS[regions[u]])}近期热门",
                _popular_text(int(segments[u])),
            ][level]
            texts = [
                SIMILAR_USERS,
                COENGAGED,
                f"兴趣:{_zh('topic', TOPICS[min(best, N_TOPICS - 1)])} {round(interest * 100) / 100:.2f}",
                popular,
                FRESH,
                f"{AUTHORITY_ZH[code]}来源" if code in NAMED else GOOD_CONTENT,
            ]
            by_kind = [0.0 if hide[u, q] else float(contrib[u, j, q]) for q in range(n_kinds)]
            user.append(_strongest(texts, [v > 0 for v in by_kind], by_kind))
        want.append(user)
    assert got.lists() == want
    assert got.arrow().to_pylist() == [r for user in want for r in user]


def test_an_empty_block_has_no_reasons():
    tables = reason_tables(TAX, SEGMENTS)
    parts, items, _, user_topics, segments, topic_idx, authority = _block(np.random.default_rng(0), m=3)
    for m, k in ((0, 4), (3, 0)):
        got = explain(
            tables, parts[:m, :k], items[:m, :k], np.zeros(m, np.int64), user_topics[:m], segments[:m], topic_idx,
            authority, RankingConfig(),
        )
        assert got.lists() == [[] for _ in range(m)]
        assert len(got.arrow()) == 0


def test_recommend_many_gives_the_same_reasons_as_lists_or_as_an_arrow_column():
    users = users_frame(["farmer", "youth", "farmer"], ["qinglong", "haigang", "lulong"])
    items = items_frame(6, authority=["national", "other", "provincial", "other", "municipal", "national"])
    rng = np.random.default_rng(0)
    model = hand_model(users, items, rng.normal(size=(3, 2)), rng.normal(size=(6, 2)))
    rec = Recommender.from_model(model)
    ids = ["u0", "u1", "u2", "new"]
    cold = pd.DataFrame({C.USER_ID: ["new"], C.GROUP: ["youth"], C.REGION: ["lulong"]})
    plain = rec.recommend_many(ids, k=4, users=cold)
    arrow = rec.recommend_many(ids, k=4, users=cold, arrow_reasons=True)
    assert plain[C.REASONS].dtype == object and all(isinstance(r, list) for r in plain[C.REASONS])
    assert arrow[C.REASONS].dtype == pd.ArrowDtype(REASONS_TYPE)
    assert arrow[C.REASONS].tolist() == plain[C.REASONS].tolist()
    pd.testing.assert_frame_equal(arrow.drop(columns=C.REASONS), plain.drop(columns=C.REASONS))
    # and each user's reasons are the single call's
    for u in ids:
        one = rec.recommend(u, k=4, group="youth", region="lulong") if u == "new" else rec.recommend(u, k=4)
        assert plain[plain[C.USER_ID] == u][C.REASONS].tolist() == [r.reasons for r in one]
    empty = rec.recommend_many([], k=4, arrow_reasons=True)
    assert len(empty) == 0 and empty[C.REASONS].dtype == pd.ArrowDtype(pa.list_(pa.string()))
