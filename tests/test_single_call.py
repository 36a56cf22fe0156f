"""A single call's fixed cost: the filtered search's compiled top items, the shared candidate lists
cached per segment and freshness cut, and the id lookup's plain views (each against a reference)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys import Recommender
from recsys.idmap import SortedIds
from recsys.ranking import candidates, compiled_selection, eligibility
from recsys.ranking import state as state_module
from recsys.ranking.users import resolve

from ranking_world import NOW, cluster_vectors, hand_model, items_frame, users_frame

N_ITEMS = 30


def _top_reference(scores, rows, ids, published, expires, now, n):
    """Per user, the ids of the ``n`` best live rows: score descending (NaN last), then row order."""
    live = [q for q in range(len(rows)) if published[q] <= now < expires[q]]
    out = []
    for u in range(scores.shape[1]):
        column = scores[:, u]

        def order(q, column=column):
            s = float(column[rows[q]])
            return (1, 0.0, q) if np.isnan(s) else (0, -s, q)

        out.append(sorted(int(ids[q]) for q in sorted(live, key=order)[:n]))
    return out


@pytest.mark.parametrize("n", [0, 1, 7, 40, 500])
def test_allowed_top_equals_a_sort_of_the_live_rows(n):
    rng = np.random.default_rng(3)
    total, m, n_items = 300, 4, 120
    scores = rng.normal(size=(total, m)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.2] = np.float32(0.5)  # ties: the earlier row first
    scores[5, 0] = np.float32(-0.0)
    scores[6, 0] = np.float32(0.0)
    scores[rng.random(scores.shape) < 0.05] = np.nan  # never before a number
    scores[rng.random(scores.shape) < 0.05] = -np.inf
    rows = np.sort(rng.choice(total, 150, replace=False))
    ids = rng.integers(0, n_items, size=rows.size)  # an item may come twice (under two topics)
    published = rng.integers(0, 10, size=n_items)
    expires = rng.integers(5, 15, size=n_items)
    got = compiled_selection.allowed_top(scores, rows, ids, published[ids], expires[ids], 7, n)
    want = _top_reference(scores, rows, ids, published[ids], expires[ids], 7, n)
    assert got.shape == (m, len(want[0]))
    assert [sorted(r) for r in got.tolist()] == want


def test_allowed_top_with_nothing_live():
    got = compiled_selection.allowed_top(
        np.ones((3, 2), np.float32), np.array([0, 2]), np.array([0, 1]), np.zeros(2, np.int64), np.zeros(2, np.int64), 5, 4
    )
    assert got.shape == (2, 0)


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(5)
    users = users_frame(["farmer", "youth", "farmer"], ["qinglong", "haigang", "qinglong"])
    topics = [[("earthquake", "ocean_coast", "ecology")[j % 3]] for j in range(N_ITEMS)]
    items = items_frame(N_ITEMS, topics=topics, published_at=[NOW - pd.Timedelta(hours=j) for j in range(N_ITEMS)])
    return hand_model(
        users, items, rng.normal(size=(3, 6)), rng.normal(size=(N_ITEMS, 6)),
        popularity_recent=rng.random(N_ITEMS).astype(np.float32),
        segment_popularity=rng.random((2, N_ITEMS)).astype(np.float32),
        content_vectors=cluster_vectors(range(N_ITEMS)),
    )


def _shared_reference(state, users, now_ns):
    """Each user's shared sources merged directly (what the cached lists must equal)."""
    out = []
    for r in range(len(users)):
        one = users.take(r)
        parts = [
            candidates._fresh(state, 1, now_ns),
            state.catalog.segment_top[one.segments],
            state.engagement.segment_best[one.segments],
            candidates._popular(state, one.groups, one.regions),
        ]
        row = candidates.merge(np.concatenate(parts, axis=1))[0]
        out.append(row[row >= 0].tolist())
    return out


def _user_lists(shared, which):
    return [[int(v) for v in shared[w] if v >= 0] for w in which]


def test_shared_lists_are_merged_once_per_segment_and_now(model):
    state = Recommender.from_model(model).state
    users = resolve(state, ["u0", "u1", "u2", "new"], [None, None, None, ("youth", None, "qinglong")])
    now = state.default_now_ns
    shared, which = candidates._shared(state, users, now)
    assert _user_lists(shared, which) == _shared_reference(state, users, now)
    assert which[0] == which[2] and len(state._shared) == 3  # u0 and u2 share a segment: 3 distinct lists
    # a second call, and a single user's, read the lists kept: nothing is built again
    keys = list(state._shared)
    assert state.shared_lists(keys, lambda missing: pytest.fail("built again")) == [state._shared[k] for k in keys]
    for r in range(len(users)):
        one, again = users.take(r), candidates._shared(state, users.take(r), now)
        assert _user_lists(*again) == _shared_reference(state, one, now)
    # another now is another list (the freshest items depend on it)
    earlier = now - 5 * 3600 * 10**9
    assert _user_lists(*candidates._shared(state, users, earlier)) == _shared_reference(state, users, earlier)
    assert len(state._shared) == 6
    # a now a minute later, with no publication between (the items come hourly), reads the same
    # freshest items: the same entries (a live clock hits)
    later = earlier + 60 * 10**9
    assert candidates._fresh_cut(state.catalog, later) == candidates._fresh_cut(state.catalog, earlier)
    assert _user_lists(*candidates._shared(state, users, later)) == _shared_reference(state, users, later)
    assert len(state._shared) == 6


def test_full_shared_lists_drop_their_oldest_entry_only(model):
    state = Recommender.from_model(model).state
    limit = state_module._MAX_CACHED_COLD
    keys = [("k", i) for i in range(limit + 2)]
    state.shared_lists(keys[:limit], lambda missing: [np.array([i]) for i in missing])
    assert len(state._shared) == limit
    got = state.shared_lists(keys[limit - 1 :], lambda missing: [np.array([-i]) for i in missing])
    assert [g.tolist() for g in got] == [[limit - 1], [-1], [-2]]  # the held one, then two new
    assert list(state._shared) == keys[2:]  # the two oldest went, nothing else


def test_a_new_state_starts_without_the_lists(model, tmp_path):
    rec = Recommender.from_model(model)
    before = rec.recommend("u0", k=5)
    assert rec.state._shared
    # a retracted item is in no list of the new state (set_catalog builds it afresh)
    top = rec.state.catalog.item_ids[rec.state.catalog.segment_top[0][0]]
    catalog = model.items.copy()
    catalog.loc[catalog["item_id"] == top, "review_status"] = "retracted"
    rec.set_catalog(catalog)
    assert not rec.state._shared
    rec.recommend("u0", k=5)
    gone = rec.state.catalog.index_of[top]
    assert all(gone not in lst for lst in rec.state._shared.values())
    # reload: a new state, empty lists; the same lists once served again
    bundle = model.save(tmp_path / "models", version="20260601T000000Z")
    loaded = Recommender.load(bundle)
    loaded.recommend("u0", k=5)
    loaded.reload()
    assert not loaded.state._shared
    assert loaded.recommend("u0", k=5) == before
    # a topic boost changes scores, never the candidates: its state reads the same lists
    boosted = loaded.with_topic_boost(np.ones((len(model.taxonomy.groups), len(model.taxonomy.regions), len(model.taxonomy.topics))))
    assert boosted.state._shared is loaded.state._shared
    users = resolve(boosted.state, ["u0", "u1"])
    assert _user_lists(*candidates._shared(boosted.state, users, NOW.value)) == _shared_reference(boosted.state, users, NOW.value)


def test_id_lookup_of_a_saved_bundle_equals_the_in_memory_one(model, tmp_path):
    bundle = model.save(tmp_path / "models", version="20260601T000000Z")
    loaded = Recommender.load(bundle).state.user_pos
    fresh = SortedIds.from_ids(["u0", "u1", "u2"])
    for uid in ["u0", "u1", "u2", "u3", "", "u", "u00"]:
        assert loaded.position(uid) == fresh.position(uid) == (int(uid[1:]) if uid in ("u0", "u1", "u2") else -1)
    assert loaded.positions(["u2", "x", "u0"]).tolist() == [2, -1, 0]
    assert loaded.ids_at([2, 0]).tolist() == ["u2", "u0"]
    # one plain view of each memory-mapped array, read by every lookup (a memmap's indexing pays its
    # Python subclass on each probe), still over the bundle's files
    for values in (loaded._ids, loaded._sorted, loaded._order):
        assert type(values) is np.ndarray and isinstance(values.base, np.memmap)


def test_a_new_filter_is_laid_out_from_parts_kept_per_topic_and_channel(model):
    state = Recommender.from_model(model).state
    catalog, tax = state.catalog, state.taxonomy
    for kwargs in ({"topics": ["earthquake", "ecology"]}, {"topics": ["ecology", "earthquake"], "channel": "e_reader"},
                   {"channel": "e_reader"}, {}):
        filt = eligibility.make_filter(tax, **kwargs)
        blocks = candidates._allow_blocks(catalog, filt)
        ids, rows, published, expires = candidates._allow_rows(state, filt, blocks)
        # the reference: the blocks' items end to end, those of the bundle that pass, and where they are
        laid = np.concatenate([items for _, items, _ in blocks])
        want = [q for q, j in enumerate(laid) if j < catalog.n_bundle and eligibility.passes(catalog, filt, np.array([j]), topics=False)[0]]
        assert rows.tolist() == want and ids.tolist() == laid[want].tolist(), kwargs
        assert published.tolist() == catalog.published_ns[ids].tolist() and expires.tolist() == catalog.expires_ns[ids].tolist()
        # the share: the bundle's items that pass, each once
        static = eligibility.static_mask(catalog, filt)[: catalog.n_bundle]
        assert state.filtered(filt) == np.count_nonzero(static) / catalog.n_bundle
    # the parts are kept per block and channel: another pair of the same topics reads them
    assert (("topic", list(tax.topics).index("ecology")), None) in state._parts


def test_topic_sets_and_parts_survive_more_filters_than_the_bound(model):
    state = Recommender.from_model(model).state
    catalog, tax = state.catalog, state.taxonomy
    topics = list(tax.topics)
    pairs = [(a, b) for i, a in enumerate(topics) for b in topics[i + 1 :]]
    assert len(pairs) > state_module._MAX_CACHED_FILTERS

    def serve(pair):
        filt = eligibility.make_filter(tax, topics=list(pair), channel="e_reader")
        blocks = candidates._allow_blocks(catalog, filt)
        state.filter_block(filt, lambda: candidates._allow_rows(state, filt, blocks))
        return filt, state.filtered(filt)

    first_filt, first_share = serve(pairs[0])
    sets, part = state._sets[first_filt.formats], state._parts[(("topic", 0), first_filt.formats)]
    for pair in pairs[1:]:
        filt, share = serve(pair)
        assert share == np.count_nonzero(eligibility.static_mask(catalog, filt)[: catalog.n_bundle]) / catalog.n_bundle
    # the filters' own entries rotate out; what every filter is made from is never rebuilt
    assert len(state._blocks) == state_module._MAX_CACHED_FILTERS and first_filt not in state._blocks
    assert state._sets[first_filt.formats] is sets and len(state._sets) == 1
    assert state._parts[(("topic", 0), first_filt.formats)] is part and len(state._parts) == len(topics)
    assert serve(pairs[0])[1] == first_share


def test_a_request_without_filters_counts_no_topic_sets(model, monkeypatch):
    state = Recommender.from_model(model).state
    catalog = state.catalog
    with monkeypatch.context() as patch:
        # the topic sets are an np.unique over every bundle row: a request without filters needs none
        patch.setattr("recsys.ranking.state.topic_sets", lambda *args: pytest.fail("topic sets built"))
        share = state.filtered(eligibility.ItemFilter())
    assert share == np.count_nonzero(catalog.available[: catalog.n_bundle]) / catalog.n_bundle
    # a channel's share counts them
    filt = eligibility.make_filter(state.taxonomy, channel="e_reader")
    assert state.filtered(filt) == np.count_nonzero(eligibility.static_mask(catalog, filt)[: catalog.n_bundle]) / catalog.n_bundle


def test_a_full_cache_drops_its_oldest_entry_only(model):
    state = Recommender.from_model(model).state
    cache: dict = {}
    for key in "abcd":
        assert state._cached(cache, key, lambda key=key: key.upper(), limit=3) == key.upper()
    assert list(cache) == ["b", "c", "d"]
    assert state._cached(cache, "c", lambda: pytest.fail("built again"), limit=3) == "C"
