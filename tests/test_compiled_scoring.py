"""The compiled scoring kernels against plain NumPy references written here.

The kernels replace NumPy code whose bits are in every pushed row, so each
comparison is ``np.array_equal`` (bit for bit, NaN aside), not a tolerance:
the collaborative dot product against ``np.einsum``, the clips against
``np.clip``, every term and the blend against the elementwise formulas, and
the eligibility and history masks against the boolean-array expressions.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.ranking import compiled_scoring as cs
from recsys.ranking import eligibility, scoring
from recsys.ranking.catalog import NS_MAX, NS_MIN
from recsys.ranking.eligibility import ItemFilter

N_ITEMS, N_TOPICS, N_FORMATS, N_GROUPS, N_REGIONS = 300, 7, 4, 3, 5


def _catalog(rng: np.random.Generator, n_factors: int) -> SimpleNamespace:
    topic_idx = rng.integers(0, N_TOPICS, size=(N_ITEMS, 3))
    n_real = rng.integers(1, 4, size=N_ITEMS)
    topic_idx[np.arange(3)[None, :] >= n_real[:, None]] = N_TOPICS  # padding
    fmt = rng.integers(0, N_FORMATS, size=N_ITEMS)
    fmt[::9] = -1  # a format the taxonomy does not know
    published = rng.integers(0, 2 * 10**15, N_ITEMS)
    published[::11] = NS_MIN
    expires = rng.integers(10**15, 3 * 10**15, N_ITEMS)
    expires[::5] = NS_MAX
    cf = rng.normal(size=(N_ITEMS, n_factors)).astype(np.float32)
    cf[3] = 0.0  # a zero vector: relevance exactly 0
    cf[4] = -0.0
    return SimpleNamespace(
        n_items=N_ITEMS,
        cf=cf,
        cf_scale=1.3,
        topic_idx=topic_idx,
        topic_weight=np.where(topic_idx < N_TOPICS, 1.0 / n_real[:, None], 0.0).astype(np.float32),
        format_code=fmt,
        popularity=rng.random((6, N_ITEMS)).astype(np.float32),
        authority=rng.random(N_ITEMS).astype(np.float32),
        available=rng.random(N_ITEMS) < 0.9,
        published_ns=published,
        expires_ns=expires,
        group_ok=rng.random((N_GROUPS, N_ITEMS)) < 0.8,
        region_ok=rng.random((N_REGIONS, N_ITEMS)) < 0.8,
        items_by_format=[np.flatnonzero(fmt == f) for f in range(N_FORMATS)],
        items_by_topic=[np.flatnonzero((topic_idx == t).any(axis=1)) for t in range(N_TOPICS)],
    )


def _batch(rng: np.random.Generator, catalog: SimpleNamespace, m: int, c: int) -> dict:
    cand = np.sort(rng.integers(0, N_ITEMS, size=(m, c)), axis=1)
    cand[:, -4:] = -1  # merge's padding
    cand[0, :6] = [3, 4, 5, 6, 7, 8]  # the zero vectors
    topics = rng.random((m, N_TOPICS)).astype(np.float32)
    topics[1] = 0.0  # a user without a topic profile
    users = rng.normal(size=(m, catalog.cf.shape[1])).astype(np.float32)
    users[2] = 0.0  # a user without a vector
    return dict(
        cand=cand,
        users=users,
        topics=topics,
        segments=rng.integers(0, 6, size=m),
        freshness=scoring.freshness(catalog.published_ns, 10**15, 3.0),
        engagement=scoring.EngagementInputs(
            item_quality=rng.normal(size=N_ITEMS).astype(np.float32),
            item_timeliness=rng.normal(size=N_ITEMS).astype(np.float32),
            user_interest=rng.normal(size=(m, N_TOPICS)).astype(np.float32),
            user_format=rng.normal(size=(m, N_FORMATS)).astype(np.float32),
        ),
    )


def _reference_terms(catalog: SimpleNamespace, b: dict) -> list[np.ndarray]:
    """The nine terms by plain elementwise NumPy (fancy indexing), in ``scoring.TERMS`` order."""
    safe = np.maximum(b["cand"], 0)
    u, p, e = b["users"], b["topics"], b["engagement"]
    m = len(u)
    unorm = np.sqrt(np.einsum("mf,mf->m", u, u))
    inv_rel = np.float32(1.0 / catalog.cf_scale) / np.where(unorm > 0, unorm, np.float32(1.0))
    relevance = np.clip(np.einsum("mcf,mf->mc", catalog.cf[safe], u) * inv_rel[:, None], -1.0, 1.0)
    top = p.max(axis=1)
    inv_top = np.divide(np.float32(1.0), top, out=np.zeros_like(top), where=top > 0)
    rows = np.arange(m)[:, None, None]
    t_idx, t_w = catalog.topic_idx[safe], catalog.topic_weight[safe]

    def over_topics(profile: np.ndarray) -> np.ndarray:
        prod = np.hstack([profile, np.zeros((m, 1), np.float32)])[rows, t_idx] * t_w
        out = prod[..., 0].copy()
        for j in range(1, prod.shape[2]):  # left to right
            out += prod[..., j]
        return out

    topic = np.clip(over_topics(p) * inv_top[:, None], 0.0, 1.0)
    fmt = catalog.format_code[safe]
    taste = np.where(fmt >= 0, e.user_format[np.arange(m)[:, None], np.maximum(fmt, 0)], np.float32(0))
    return [
        relevance,
        topic,
        catalog.popularity[b["segments"][:, None], safe],
        b["freshness"][safe],
        catalog.authority[safe],
        e.item_quality[safe],
        over_topics(e.user_interest),
        taste.astype(np.float32),
        e.item_timeliness[safe],
    ]


def _reference_blend(terms: list[np.ndarray], w: np.ndarray) -> np.ndarray:
    total = np.zeros_like(terms[0])
    for weight, term in zip(w, terms):
        if weight != 0:
            total += weight * term
    return total


@pytest.mark.parametrize("n", [1, 3, 4, 5, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65, 100, 128])
def test_einsum_dot_has_einsums_bits(n: int) -> None:
    rng = np.random.default_rng(n)
    x = (rng.normal(size=(200, n)) * rng.lognormal(size=(200, 1))).astype(np.float32)
    y = rng.normal(size=n).astype(np.float32)
    got = np.array([cs.einsum_dot(row, y) for row in x], dtype=np.float32)
    assert np.array_equal(got, np.einsum("mf,f->m", x, y))
    assert np.array_equal(got, np.einsum("cf,f->c", x, y))
    # a left-to-right float64 sum is close but a different rounding: the order is what is kept
    np.testing.assert_allclose(got, x.astype(np.float64) @ y.astype(np.float64), rtol=1e-4, atol=1e-4)


def test_einsum_dot_signed_zero_like_einsum() -> None:
    x = np.array([-0.0, 0.0, -0.0, -0.0, 1.0], np.float32)
    y = np.array([1.0, -1.0, 1.0, 1.0, 0.0], np.float32)
    got = cs.einsum_dot(x, y)
    want = np.einsum("f,f->", x, y)
    assert got == want and np.signbit(got) == np.signbit(want)


def test_clip_is_numpys_clip() -> None:
    x = np.array([-0.0, 0.0, np.nan, -2.0, 2.0, 0.5, -1.0, 1.0, -np.inf, np.inf], np.float32)
    for lo, hi in ((-1.0, 1.0), (0.0, 1.0)):
        want = np.clip(x, lo, hi)
        got = np.array([cs._clip(v, np.float32(lo), np.float32(hi)) for v in x], np.float32)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))  # -0.0 and NaN bits too


@pytest.mark.parametrize("n_factors", [16, 64])
def test_terms_equal_the_elementwise_formulas(n_factors: int) -> None:
    rng = np.random.default_rng(n_factors)
    catalog = _catalog(rng, n_factors)
    b = _batch(rng, catalog, 40, 50)
    parts = scoring.components(
        catalog, b["cand"], b["users"], b["topics"], b["segments"], b["freshness"], engagement=b["engagement"]
    )
    for name, got, want in zip(scoring.TERMS, parts.terms(), _reference_terms(catalog, b)):
        assert got.dtype == np.float32 and got.shape == b["cand"].shape, name
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), name
    assert (parts.relevance[0, :2] == 0).all() and (parts.relevance[2] == 0).all()
    assert (parts.topic[1] == 0).all()


def test_without_the_engagement_model_its_terms_are_zero() -> None:
    rng = np.random.default_rng(3)
    catalog = _catalog(rng, 16)
    b = _batch(rng, catalog, 9, 20)
    parts = scoring.components(catalog, b["cand"], b["users"], b["topics"], b["segments"], b["freshness"])
    for term in (parts.quality, parts.interest, parts.format, parts.timeliness):
        assert term.shape == b["cand"].shape and not term.any()
    assert parts.popularity.any()


def test_score_is_the_blend_of_the_terms_and_skips_ineligible_pairs() -> None:
    rng = np.random.default_rng(11)
    catalog = _catalog(rng, 32)
    b = _batch(rng, catalog, 30, 45)
    ok = (b["cand"] >= 0) & (rng.random(b["cand"].shape) < 0.7)
    w = np.array([0.5, 0.5, 1.0, 0.0, 0.05, 1.0, -0.3, 1.0, 0.0], np.float32)  # zero and negative weights
    score, parts = scoring.score_block(
        catalog, b["cand"], ok, b["users"], b["topics"], b["segments"], b["freshness"], w, engagement=b["engagement"]
    )
    ref = _reference_terms(catalog, b)
    want = np.where(ok, _reference_blend(ref, w), -np.inf)
    assert score.dtype == np.float32 and np.array_equal(score, want)
    # the terms of the scored pairs are the reference's; the skipped pairs' are 0
    for got, term in zip(parts.terms(), ref):
        assert np.array_equal(got[ok], term[ok]) and not got[~ok].any()
    # without the terms kept: the same scores
    alone, none = scoring.score_block(
        catalog, b["cand"], ok, b["users"], b["topics"], b["segments"], b["freshness"], w,
        engagement=b["engagement"], keep_terms=False,
    )
    assert none is None and np.array_equal(alone, score)
    # the public blend of the terms: the same sums
    config = SimpleNamespace(**{f"weight_{t}": float(v) for t, v in zip(scoring.TERMS, w)})
    full = scoring.components(
        catalog, b["cand"], b["users"], b["topics"], b["segments"], b["freshness"], engagement=b["engagement"]
    )
    assert np.array_equal(scoring.blend(full, config), _reference_blend(ref, w))


def test_a_users_scores_do_not_depend_on_the_batch() -> None:
    rng = np.random.default_rng(5)
    catalog = _catalog(rng, 64)
    b = _batch(rng, catalog, 12, 30)
    w = scoring.weights(SimpleNamespace(**{f"weight_{t}": 0.5 for t in scoring.TERMS}))
    score, _ = scoring.score_block(
        catalog, b["cand"], None, b["users"], b["topics"], b["segments"], b["freshness"], w, engagement=b["engagement"]
    )
    e = b["engagement"]
    for r in (0, 7, 11):
        one, _ = scoring.score_block(
            catalog, b["cand"][r : r + 1], None, b["users"][r : r + 1], b["topics"][r : r + 1],
            b["segments"][r : r + 1], b["freshness"], w,
            engagement=scoring.EngagementInputs(
                e.item_quality, e.item_timeliness, e.user_interest[r : r + 1], e.user_format[r : r + 1]
            ),
        )
        assert np.array_equal(one[0], score[r])


def _reference_mask(catalog: SimpleNamespace, filt: ItemFilter, cand: np.ndarray, now: int, groups, regions) -> np.ndarray:
    # the request rules as the other paths apply them (eligibility.passes / live_at), so a rule added
    # there and not to the kernel fails here; the plain np.isin spelling checks passes itself
    safe = np.maximum(cand, 0)
    ok = (cand >= 0) & eligibility.passes(catalog, filt, safe) & eligibility.live_at(catalog, safe, now)
    ok &= catalog.group_ok[groups[:, None], safe] & catalog.region_ok[regions[:, None], safe]
    plain = catalog.available[safe].copy()
    if filt.formats is not None:
        plain &= np.isin(catalog.format_code[safe], filt.formats)
    if filt.topics is not None:
        plain &= np.isin(catalog.topic_idx[safe], filt.topics).any(axis=-1)
    assert np.array_equal(eligibility.passes(catalog, filt, safe), plain)
    return ok


def _reference_history(keys: np.ndarray, cand: np.ndarray, n_items: int) -> np.ndarray:
    q = np.arange(len(cand))[:, None] * n_items + cand
    return np.isin(q, keys)


@pytest.mark.parametrize(
    "filt",
    [ItemFilter(), ItemFilter(channel="x", formats=(0, 2)), ItemFilter(topics=(1, 5)), ItemFilter(formats=(1,), topics=(3,))],
)
def test_eligibility_and_history_masks_equal_the_plain_expressions(filt: ItemFilter) -> None:
    rng = np.random.default_rng(17)
    catalog = _catalog(rng, 8)
    m, c, now = 25, 40, 10**15
    cand = np.sort(rng.integers(0, N_ITEMS, size=(m, c)), axis=1)
    cand[:, -3:] = -1
    groups, regions = rng.integers(0, N_GROUPS, m), rng.integers(0, N_REGIONS, m)
    # a history for some users (repeats allowed), and the item n-1 in a row whose next row has padding
    rows = rng.integers(0, m, 120)
    keys = np.sort(np.concatenate([rows * N_ITEMS + cand[rows, rng.integers(0, c - 3, 120)], [4 * N_ITEMS + N_ITEMS - 1]]))
    want = _reference_mask(catalog, filt, cand, now, groups, regions)
    assert np.array_equal(eligibility.candidate_mask(catalog, filt, cand, now, groups, regions), want)
    hist = _reference_history(keys, cand, N_ITEMS)
    assert hist[5, -1]  # the padding key of row 5 is row 4's item n-1, as searchsorted found it
    assert np.array_equal(eligibility.history_mask(keys, cand, N_ITEMS), hist)
    fused = eligibility.candidate_mask(catalog, filt, cand, now, groups, regions, history=keys)
    assert np.array_equal(fused, want & ~hist)
    assert (want & hist).any() and want.any() and not want.all()
    # rows in any order (the fused mask walks ascending rows and starts again on a step back)
    mixed = rng.permuted(cand, axis=1)
    want_mixed = _reference_mask(catalog, filt, mixed, now, groups, regions) & ~_reference_history(keys, mixed, N_ITEMS)
    assert np.array_equal(eligibility.candidate_mask(catalog, filt, mixed, now, groups, regions, history=keys), want_mixed)
    empty = np.zeros(0, np.int64)
    assert not eligibility.history_mask(empty, cand, N_ITEMS).any()
    assert np.array_equal(eligibility.candidate_mask(catalog, filt, cand, now, groups, regions, history=empty), want)


def test_frozen_gives_one_readonly_contiguous_type() -> None:
    a = np.arange(12, dtype=np.int32).reshape(3, 4)[:, ::2]  # strided, another dtype
    out = cs.frozen(a, np.int64)
    assert out.dtype == np.int64 and out.flags.c_contiguous and not out.flags.writeable
    assert np.array_equal(out, a) and a.flags.writeable  # the input keeps its flag
    same = np.zeros(5, np.float32)
    view = cs.frozen(same, np.float32)
    assert np.shares_memory(view, same) and same.flags.writeable


def test_history_keys_equal_one_global_sort() -> None:
    rng = np.random.default_rng(23)
    n_users, n_items = 50, 80
    dense = rng.random((n_users, 60)) < 0.1
    seen = sp.csr_matrix(np.where(dense, rng.choice([-1.0, 1.0], size=dense.shape), 0.0))
    seen.indices = rng.permuted(seen.indices)  # a row's items in no particular order
    rows = rng.integers(-1, n_users, size=30)
    shared = rng.choice(n_items, 12, replace=False)
    excludes = [shared if r % 3 else (None if r % 2 else rng.choice(n_items, 5)) for r in range(30)]
    excludes[4] = np.zeros(0, np.int64)
    excludes[7] = [int(shared[0]), int(shared[0])]  # repeats kept, a plain list
    want = []
    for r, row in enumerate(rows):
        if row >= 0:
            want += [r * n_items + int(i) for i in seen.indices[seen.indptr[row] : seen.indptr[row + 1]]]
        if excludes[r] is not None:
            want += [r * n_items + int(i) for i in excludes[r]]
    got = eligibility.history_keys(seen, rows, n_items, excludes)
    assert got.dtype == np.int64 and np.array_equal(got, np.sort(np.array(want, np.int64)))
    assert np.array_equal(eligibility.history_keys(seen, rows, n_items, None), np.sort(np.array(
        [r * n_items + int(i) for r, row in enumerate(rows) if row >= 0
         for i in seen.indices[seen.indptr[row] : seen.indptr[row + 1]]], np.int64)))
    assert eligibility.history_keys(seen, np.full(3, -1), n_items, None).size == 0


def test_warm_loads_the_one_signature_the_wrappers_use() -> None:
    cs.warm()
    rng = np.random.default_rng(29)
    catalog = _catalog(rng, 16)
    b = _batch(rng, catalog, 5, 12)
    w = np.ones(len(scoring.TERMS), np.float32)
    ok = b["cand"] >= 0
    args = (b["users"], b["topics"], b["segments"], b["freshness"], w)
    scoring.score_block(catalog, b["cand"], ok, *args, engagement=b["engagement"], keep_terms=False)
    scoring.score_block(catalog, b["cand"], None, *args)  # no engagement model, every pair, terms kept
    seen = sp.csr_matrix(np.eye(5, N_ITEMS, dtype=np.float32))
    keys = eligibility.history_keys(seen, np.arange(5), N_ITEMS, [np.array([1, 2])] * 5)
    groups = np.zeros(5, np.int64)
    eligibility.candidate_mask(catalog, ItemFilter(formats=(1,)), b["cand"], 10**15, groups, groups, history=keys)
    for kernel in (cs.score_pairs, cs.eligible_pairs, cs.history_key_rows):
        assert len(kernel.signatures) == 1, kernel.__name__
