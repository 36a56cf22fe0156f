"""The reason codes' compiled pass (``recsys.ranking.compiled_reasons``) against a NumPy reading of the
rules written here: the best topic and its interest, each kind's shown contribution, the popularity
level named, the authority's text -- integer codes, so they must be equal."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.ranking.compiled_reasons import best_topics, learned_codes

N_TOPICS, T_MAX, N_ITEMS, N_KINDS = 5, 3, 30, 6


def _world(seed: int, m: int = 40, k: int = 10):
    rng = np.random.default_rng(seed)
    # topic slots padded with N_TOPICS; item 4 has no topic at all
    topic_idx = np.full((N_ITEMS, T_MAX), N_TOPICS, np.int64)
    for j in range(N_ITEMS):
        n = 0 if j == 4 else rng.integers(1, T_MAX + 1)
        topic_idx[j, :n] = np.sort(rng.choice(N_TOPICS, n, replace=False))
    # interests on a grid of 0.005 (ties, and values whose x 100 rounds half to even), some outside [0, 1]
    user_topics = (rng.integers(-20, 230, size=(m, N_TOPICS)) * 0.005).astype(np.float32)
    items = rng.integers(0, N_ITEMS, size=(m, k))
    items[3, -3:] = -1  # padding reads item 0
    contrib = rng.normal(size=(m, k, N_KINDS + 4)).astype(np.float32)
    contrib[rng.random(contrib.shape) < 0.2] = 0.0
    contrib[5, :, N_KINDS:] = 0.25  # every level equal: the first (city) is named
    contrib[6, :, N_KINDS] = 0.1
    contrib[6, :, N_KINDS + 1 :] = 0.5  # group, region and segment tie above the city
    return rng, topic_idx, user_topics, items, contrib


def _reference_best(user_topics, topic_idx, items):
    safe = np.maximum(items, 0)
    m = user_topics.shape[0]
    tid = topic_idx[safe]
    padded = np.hstack([user_topics, np.full((m, 1), -1.0, np.float32)])
    interest = padded[np.arange(m)[:, None, None], tid]
    pick = interest.argmax(axis=2)
    best = np.take_along_axis(tid, pick[..., None], axis=2)[..., 0]
    value = np.take_along_axis(interest, pick[..., None], axis=2)[..., 0]
    return best, np.minimum(np.maximum(value, 0.0), 1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_topics_are_numpys_first_largest_interest_clipped(seed):
    _, topic_idx, user_topics, items, _ = _world(seed)
    best, weight = best_topics(user_topics, topic_idx, items)
    want_best, want_weight = _reference_best(user_topics, topic_idx, items)
    np.testing.assert_array_equal(best, want_best)
    assert weight.dtype == np.float32 and np.array_equal(weight.view(np.int32), want_weight.astype(np.float32).view(np.int32))
    assert (best == N_TOPICS).any() and (weight == 0).any() and (weight == 1).any()


@pytest.mark.parametrize("with_hide", [False, True])
def test_learned_codes_are_the_rules_numpy_reading(with_hide):
    rng, topic_idx, user_topics, items, contrib = _world(7)
    m, k = items.shape
    groups, regions = rng.integers(0, 3, m), rng.integers(0, 2, m)
    segments = groups * 2 + regions
    authority_code = rng.integers(0, 4, N_ITEMS)
    authority_named = np.array([True, True, False, False])
    authority_text = np.array([500, 501, 502, 503], np.int32)
    topic_code = (1000 + np.arange(N_TOPICS * 101)).reshape(N_TOPICS, 101).astype(np.int32)
    group_popular, region_popular = np.array([10, 11, 12], np.int32), np.array([20, 21], np.int32)
    segment_popular = np.arange(30, 36, dtype=np.int32)
    fixed = (1, 2, 3, 4, 5)  # city popular, similar users, co-engaged, fresh, good content
    hide = rng.random((m, N_KINDS)) < 0.3 if with_hide else None
    codes, shown, by_kind = learned_codes(
        contrib, hide, items, user_topics, topic_idx, authority_code, authority_named, authority_text, topic_code,
        groups, regions, segments, group_popular, region_popular, segment_popular, fixed, N_KINDS,
    )
    # the rules read with NumPy
    want_kind = contrib[..., :N_KINDS] if hide is None else np.where(hide[:, None, :], np.float32(0), contrib[..., :N_KINDS])
    level = contrib[..., N_KINDS:].argmax(axis=-1)
    pop = np.stack([np.full(m, fixed[0]), group_popular[groups], region_popular[regions], segment_popular[segments]], axis=-1)
    best, weight = _reference_best(user_topics, topic_idx, items)
    acode = authority_code[np.maximum(items, 0)]
    want = np.stack(
        [
            np.full((m, k), fixed[1]),
            np.full((m, k), fixed[2]),
            topic_code[np.minimum(best, N_TOPICS - 1), np.rint(weight * 100).astype(np.int64)],
            pop[np.arange(m)[:, None], level],
            np.full((m, k), fixed[3]),
            np.where(authority_named[acode], authority_text[acode], fixed[4]),
        ],
        axis=-1,
    )
    np.testing.assert_array_equal(codes, want)
    np.testing.assert_array_equal(by_kind, want_kind)
    np.testing.assert_array_equal(shown, want_kind > 0)
    assert np.all(codes[5, :, 3] == fixed[0]) and np.all(codes[6, :, 3] == group_popular[groups[6]])


def test_a_nan_interest_is_an_artifact_error_not_an_index():
    from recsys.exceptions import ArtifactError

    _, topic_idx, user_topics, items, contrib = _world(3)
    m = len(items)
    user_topics[:] = np.nan
    with pytest.raises(ArtifactError, match="NaN"):
        best_topics(user_topics, topic_idx, items)
    with pytest.raises(ArtifactError, match="NaN"):
        learned_codes(contrib, None, items, user_topics, topic_idx, np.zeros(N_ITEMS, np.int64), np.ones(1, bool),
                      np.zeros(1, np.int32), np.zeros((N_TOPICS, 101), np.int32), np.zeros(m, np.int64), np.zeros(m, np.int64),
                      np.zeros(m, np.int64), np.zeros(1, np.int32), np.zeros(1, np.int32), np.zeros(1, np.int32), (0, 0, 0, 0, 0), N_KINDS)
    from recsys.ranking.compiled_reasons import linear_codes

    with pytest.raises(ArtifactError, match="NaN"):
        linear_codes(np.zeros(items.shape + (9,), np.float32), items, user_topics, topic_idx, np.zeros(N_ITEMS, np.int64),
                     np.ones(1, bool), np.zeros(m, np.int64), np.zeros(9, np.float32), np.zeros(201, np.int32),
                     np.zeros((N_TOPICS, 101), np.int32), np.zeros(1, np.int32), np.zeros((2, 1), np.int32), (0.3, 0.5, 1.5, 0.5, 0.5))


def _linear_reference(parts, items, user_topics, topic_idx, authority_code, authority_named, segments, w, code_rel, code_topic,
                      code_pop, code_fa):
    """The linear blend's reason rules read with NumPy (the form ``reasons.explain`` had before its compiled pass),
    the terms found by name in ``scoring.TERMS``."""
    from recsys.ranking import reasons as R
    from recsys.ranking.scoring import TERMS

    t = {name: parts[..., TERMS.index(name)] for name in TERMS}
    rel, top, pop = t["collaborative"], t["topic"], t["popularity"]
    m, k = items.shape
    n_topics = user_topics.shape[1]
    safe = np.where(items >= 0, items, 0)
    best, best_w = _reference_best(user_topics, topic_idx, items)
    best_w = best_w.astype(np.float32)
    acode = authority_code[safe]
    is_fresh = t["freshness"] >= R.FRESH_MIN
    codes = np.stack([
        code_rel[np.clip(np.rint(rel * 100), -100, 100).astype(np.int64) + 100],
        code_topic[np.minimum(best, n_topics - 1), np.rint(best_w * 100).astype(np.int64)],
        np.broadcast_to(code_pop[segments][:, None], (m, k)),
        code_fa[is_fresh.astype(np.int64), acode],
    ], axis=-1)
    wt = dict(zip(TERMS, w))
    contrib = np.stack([
        wt["collaborative"] * rel,
        wt["topic"] * top + wt["interest"] * t["interest"],
        wt["popularity"] * pop,
        wt["freshness"] * t["freshness"] + wt["authority"] * t["authority"] + wt["quality"] * t["quality"] + wt["timeliness"] * t["timeliness"],
    ], axis=-1)
    shown = np.stack([
        rel >= R.RELEVANCE_MIN,
        (top >= R.TOPIC_MIN) & (best < n_topics) & (best_w * n_topics >= R.TOPIC_OVER_UNIFORM),
        pop >= R.POPULARITY_MIN,
        is_fresh | authority_named[acode],
    ], axis=-1)
    return codes, shown, contrib


@pytest.mark.parametrize("seed", [3, 4])
def test_linear_codes_are_the_rules_numpy_reading(seed):
    from recsys.ranking import reasons as R
    from recsys.ranking.compiled_reasons import linear_codes

    rng, topic_idx, user_topics, items, _ = _world(seed)
    m, k = items.shape
    parts = rng.normal(0.3, 0.6, size=(m, k, 9)).astype(np.float32)
    # values at each threshold and one float32 step either side: compared as NumPy compares them
    edges = np.float32([R.RELEVANCE_MIN, R.TOPIC_MIN, R.POPULARITY_MIN, R.FRESH_MIN])
    at = np.concatenate([edges, np.nextafter(edges, np.float32(-1)), np.nextafter(edges, np.float32(2))])
    mask = rng.random(parts.shape) < 0.3
    parts[mask] = rng.choice(at, size=int(mask.sum()))
    parts[0, 0, 0] = 1.7  # relevance clipped at +100
    parts[0, 1, 0] = -2.5  # and at -100
    authority_code = rng.integers(0, 3, N_ITEMS)
    authority_named = np.array([False, True, True])
    segments = rng.integers(0, 4, m)
    w = rng.random(9).astype(np.float32)
    code_rel = np.arange(201, dtype=np.int32) + 1000
    code_topic = (np.arange(N_TOPICS * 101, dtype=np.int32) + 2000).reshape(N_TOPICS, 101)
    code_pop = np.arange(4, dtype=np.int32) + 3000
    code_fa = (np.arange(6, dtype=np.int32) + 4000).reshape(2, 3)
    args = (parts, items, user_topics, topic_idx, authority_code, authority_named, segments, w, code_rel, code_topic, code_pop, code_fa)
    codes, shown, contrib = linear_codes(*args, (R.RELEVANCE_MIN, R.TOPIC_MIN, R.TOPIC_OVER_UNIFORM, R.POPULARITY_MIN, R.FRESH_MIN))
    want_codes, want_shown, want_contrib = _linear_reference(*args)
    np.testing.assert_array_equal(codes, want_codes)
    np.testing.assert_array_equal(shown, want_shown)
    assert contrib.dtype == np.float32 and np.array_equal(contrib.view(np.int32), want_contrib.astype(np.float32).view(np.int32))
    # the fixture reaches both sides of every rule
    assert shown.any(axis=(0, 1)).all() and (~shown).any(axis=(0, 1)).all()
    assert (codes[..., 0] == 1000).any() and (codes[..., 0] == 1200).any()
