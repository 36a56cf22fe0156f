"""scoring.components' gathers: the reused item-vector buffer and the flat format-taste lookup.

Both are speed changes that must not move a bit: each term is compared, with
``np.array_equal``, to the plain per-candidate formula (a fancy-index gather,
``take_along_axis``) on a batch whose last row block is partial.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from recsys.ranking import scoring
from recsys.ranking.catalog import NS_MIN


def _catalog(rng: np.random.Generator, n_items: int, n_topics: int, n_formats: int) -> SimpleNamespace:
    topic_idx = rng.integers(0, n_topics, size=(n_items, 3))
    n_real = rng.integers(1, 4, size=n_items)
    topic_idx[np.arange(3)[None, :] >= n_real[:, None]] = n_topics  # padding -> the zero column
    weight = np.where(topic_idx < n_topics, 1.0 / n_real[:, None], 0.0).astype(np.float32)
    fmt = rng.integers(0, n_formats, size=n_items)
    fmt[::7] = -1  # formats the taxonomy does not know
    return SimpleNamespace(
        cf=rng.normal(size=(n_items, 16)).astype(np.float32),
        cf_scale=1.7,
        topic_idx=topic_idx,
        topic_weight=weight,
        format_code=fmt,
        popularity=rng.random((5, n_items)).astype(np.float32),
        authority=rng.random(n_items).astype(np.float32),
    )


def test_components_terms_equal_the_per_candidate_formulas() -> None:
    rng = np.random.default_rng(7)
    n_items, n_topics, n_formats, m, c = 400, 6, 4, 70, 45  # 70 rows: blocks of 32, 32 and 6
    catalog = _catalog(rng, n_items, n_topics, n_formats)
    cand = np.sort(rng.integers(0, n_items, size=(m, c)), axis=1)
    cand[:, -5:] = -1  # merge's padding
    users = rng.normal(size=(m, 16)).astype(np.float32)
    topics = rng.random((m, n_topics)).astype(np.float32)
    segments = rng.integers(0, 5, size=m)
    published = np.where(rng.random(n_items) < 0.1, NS_MIN, rng.integers(0, 10**15, n_items))
    freshness = scoring.freshness(published, 10**15, 3.0)
    engagement = scoring.EngagementInputs(
        item_quality=rng.normal(size=n_items).astype(np.float32),
        item_timeliness=rng.normal(size=n_items).astype(np.float32),
        user_interest=rng.normal(size=(m, n_topics)).astype(np.float32),
        user_format=rng.normal(size=(m, n_formats)).astype(np.float32),
    )

    parts = scoring.components(catalog, cand, users, topics, segments, freshness, engagement=engagement)

    safe = np.maximum(cand, 0)
    unorm = np.sqrt(np.einsum("mf,mf->m", users, users))
    inv_rel = np.float32(1.0 / catalog.cf_scale) / np.where(unorm > 0, unorm, np.float32(1.0))
    relevance = np.clip(np.einsum("mcf,mf->mc", catalog.cf[safe], users) * inv_rel[:, None], -1.0, 1.0)
    fmt = catalog.format_code[safe]
    taste = np.where(fmt >= 0, np.take_along_axis(engagement.user_format, np.maximum(fmt, 0), axis=1), np.float32(0))
    assert np.array_equal(parts.relevance, relevance)
    assert np.array_equal(parts.format, taste.astype(np.float32))
    assert parts.format.dtype == np.float32
    assert (parts.format[fmt < 0] == 0).all() and (fmt < 0).any()
    assert np.array_equal(parts.quality, engagement.item_quality[safe])
    assert np.array_equal(parts.popularity, catalog.popularity[segments[:, None], safe])

    # each row alone (a single call) gets the same bits as in the batch
    for r in (0, 33, 69):
        one = scoring.components(
            catalog, cand[r : r + 1], users[r : r + 1], topics[r : r + 1], segments[r : r + 1], freshness,
            engagement=scoring.EngagementInputs(
                engagement.item_quality, engagement.item_timeliness,
                engagement.user_interest[r : r + 1], engagement.user_format[r : r + 1],
            ),
        )
        for batch_term, row_term in zip(parts.terms(), one.terms()):
            assert np.array_equal(batch_term[r : r + 1], row_term)
