"""The compiled selection kernels (recsys.ranking.compiled_selection) against plain references
written here: the diversity walk as its rules read, and the co-engaged candidates as the
sparse product of each user's recent items and the co-engagement matrix.

The random worlds make every branch occur: score ties broken by column, invalid candidates
(-inf, NaN, +inf), topics over the cap, near-duplicate chains, rows with no valid candidate
and rows shorter than k.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.ranking import compiled_selection, diversity


def walk_reference(items: list, topics: list, k: int, cap: int, neighbours: dict) -> tuple[list, bool]:
    """One row's picks (positions into ``items``, ascending) and whether near-duplicates filled it.

    ``items`` are the row's valid candidates, best first. Pass 1 picks in order, skipping the
    near-duplicates of earlier picks and deferring items whose primary topic is at the cap;
    pass 2 takes the deferred ones (still skipping near-duplicates) while the list is short;
    pass 3 takes anything left, best first.
    """
    picked: list[int] = []
    blocked: set[int] = set()
    per_topic: dict[int, int] = {}
    deferred = []
    for n, (item, topic) in enumerate(zip(items, topics)):
        if len(picked) == k:
            return picked, False
        if item in blocked:
            continue
        if per_topic.get(topic, 0) >= cap:
            deferred.append(n)
            continue
        picked.append(n)
        per_topic[topic] = per_topic.get(topic, 0) + 1
        blocked.update(neighbours.get(item, ()))
    for n in deferred:
        if len(picked) == k:
            break
        if items[n] not in blocked:
            picked.append(n)
            blocked.update(neighbours.get(items[n], ()))
    relaxed = False
    for n in range(len(items)):
        if len(picked) == k:
            break
        if n not in picked:
            picked.append(n)
            relaxed = True
    return sorted(picked), relaxed


def select_reference(cand, score, primary, k, cap, neighbours):
    """Each row sorted whole (best score first, ties by column), walked by :func:`walk_reference`."""
    m = cand.shape[0]
    columns = np.full((m, k), -1, np.int64)
    count = np.zeros(m, np.int64)
    relaxed = np.zeros(m, bool)
    for r in range(m):
        order = sorted((c for c in range(cand.shape[1]) if np.isfinite(score[r, c])), key=lambda c: (-score[r, c], c))
        items = [int(cand[r, c]) for c in order]
        picked, relaxed[r] = walk_reference(items, [int(primary[i]) for i in items], k, cap, neighbours)
        columns[r, : len(picked)] = [order[p] for p in picked]
        count[r] = len(picked)
    return columns, count, relaxed


def _world(seed: int, m: int = 150, c: int = 300, n_items: int = 500, n_topics: int = 6, dup_share: float = 0.4):
    rng = np.random.default_rng(seed)
    cand = np.stack([np.sort(rng.choice(n_items, c, replace=False)) for _ in range(m)])
    score = np.round(rng.normal(size=(m, c)) * 4).astype(np.float32)  # coarse: many ties
    score[rng.random((m, c)) < rng.choice([0.1, 0.5, 0.95], size=(m, 1))] = -np.inf
    score[0] = -np.inf  # nothing valid
    score[1, :4], score[1, 4:] = [3, 2, 2, 1], -np.inf  # fewer valid candidates than most lists
    score[2, :3] = [np.nan, np.inf, -0.0]  # NaN and +inf are not valid; -0.0 ties with 0.0
    score[2, 3] = 0.0
    primary = rng.integers(0, n_topics + 1, n_items)  # n_topics: no topic
    neighbours: dict[int, set[int]] = {}
    for a in rng.choice(n_items, int(dup_share * n_items), replace=False).tolist():
        for b in rng.choice(n_items, rng.integers(1, 5), replace=False).tolist():
            if a != b:  # chains and groups alike
                neighbours.setdefault(a, set()).add(b)
                neighbours.setdefault(b, set()).add(a)
    clique = cand[1, :4].tolist()  # row 1's few valid candidates are all near-duplicates: the last resort fills it
    for a in clique:
        neighbours.setdefault(a, set()).update(b for b in clique if b != a)
    return cand, score, primary, {i: tuple(sorted(v)) for i, v in neighbours.items()}, n_topics


@pytest.mark.parametrize("seed, k, share", [(0, 5, 0.4), (1, 10, 0.3), (2, 1, 0.5), (3, 20, 0.8), (4, 5, 1.0)])
def test_walk_equals_the_rules_as_written(seed, k, share):
    cand, score, primary, neighbours, n_topics = _world(seed, dup_share=share)
    graph = diversity.neighbour_arrays(neighbours, primary.size)
    relaxed_rows = 0
    for cap in (1, diversity.topic_cap(k, 0.3), k):
        want = select_reference(cand, score, primary, k, cap, neighbours)
        got = compiled_selection.diverse_top(cand, score, primary, k, cap, *graph, n_topics)
        for name, a, b in zip(("columns", "count", "relaxed"), got, want):
            np.testing.assert_array_equal(a, b, err_msg=f"{name}, cap {cap}")
        # the public entry reads a dict or the graph alike
        for a, b in zip(diversity.select_scored(cand, score, primary, k, cap=cap, neighbours=neighbours, n_topics=n_topics), got):
            np.testing.assert_array_equal(a, b)
        relaxed_rows += int(want[2].sum())
    assert k == 1 or relaxed_rows > 0  # the last resort was exercised


@pytest.mark.parametrize("k", [3, 10])
def test_lists_fill_to_k_whenever_k_valid_candidates_exist(k):
    cand, score, primary, neighbours, n_topics = _world(7, dup_share=1.0, n_topics=2)
    columns, count, relaxed = diversity.select_scored(cand, score, primary, k, cap=1, neighbours=neighbours, n_topics=n_topics)
    n_valid = np.isfinite(score).sum(axis=1)
    np.testing.assert_array_equal(count, np.minimum(k, n_valid))
    for r in range(cand.shape[0]):
        cols = columns[r, : count[r]]
        assert (columns[r, count[r] :] == -1).all()
        assert np.isfinite(score[r, cols]).all() and len(set(cols.tolist())) == cols.size
        # best first: scores fall, ties by column
        assert all((score[r, a], -a) >= (score[r, b], -b) for a, b in itertools.pairwise(cols))
        items = cand[r, cols].tolist()
        dup = any(j in neighbours.get(i, ()) for i in items for j in items)
        assert dup == bool(relaxed[r])  # near-duplicates share a list only as the last resort


def test_neighbour_arrays_round_trip_and_reject_outside_items():
    _, _, primary, neighbours, _ = _world(5)
    indptr, indices = diversity.neighbour_arrays(neighbours, primary.size)
    assert indptr.dtype == np.int64 and indices.dtype == np.int32 and indptr.size == primary.size + 1
    assert diversity.neighbours_from_graph(indptr, indices) == neighbours
    empty = diversity.neighbour_arrays({}, 4)
    assert empty[0].tolist() == [0] * 5 and empty[1].size == 0
    with pytest.raises(ValueError, match="outside"):
        diversity.neighbour_arrays({0: (9,), 9: (0,)}, 5)


def test_the_walk_refuses_inputs_outside_the_catalogue():
    cand, score, primary, neighbours, n_topics = _world(6, m=4)
    graph = diversity.neighbour_arrays(neighbours, primary.size)
    with pytest.raises(ValueError, match="graph"):
        compiled_selection.diverse_top(cand, score, primary, 5, 2, graph[0][:-1], graph[1], n_topics)
    with pytest.raises(ValueError, match="topic"):
        compiled_selection.diverse_top(cand, score, np.full_like(primary, n_topics + 1), 5, 2, *graph, n_topics)
    bad = cand.copy()
    bad[3, np.flatnonzero(np.isfinite(score[3]))[0]] = primary.size
    with pytest.raises(ValueError, match="catalogue"):
        compiled_selection.diverse_top(bad, score, primary, 5, 2, *graph, n_topics)


def _sets(items: np.ndarray) -> np.ndarray:
    """Each row's items ascending, padding last."""
    return np.sort(np.where(items < 0, np.iinfo(np.int64).max, items), axis=1)


def _coengaged_reference(co: sp.csr_matrix, recent: np.ndarray, n: int) -> np.ndarray:
    """Per user: their recent items as a sparse row (repeats add up) times the matrix; the
    product's nonzero sums ordered by value, ties to the smaller item; the first ``n``."""
    out = np.full((recent.shape[0], n), -1, np.int64)
    for u, row in enumerate(recent):
        seeds = row[row >= 0]
        x = sp.csr_matrix((np.ones(seeds.size, np.float32), (np.zeros(seeds.size, np.int64), seeds)), shape=(1, co.shape[0]))
        sums = (x @ co).tocsr()
        best = sums.indices[np.lexsort((sums.indices, -sums.data))][:n]
        out[u, : best.size] = best
    return out


@pytest.mark.parametrize("n", [1, 6, 40])
def test_coengaged_top_equals_the_sparse_product(n):
    rng = np.random.default_rng(n)
    n_items = 80
    # few distinct values, some negative: many ties at the n-th place, and sums that cancel to 0
    dense = np.where(rng.random((n_items, n_items)) < 0.3, rng.choice([0.25, 0.5, 0.1, -0.25], (n_items, n_items)), 0)
    np.fill_diagonal(dense, 0)
    co = sp.csr_matrix(dense.astype(np.float32))
    recent = rng.integers(-1, n_items, size=(300, 5))
    recent[:20] = -1  # users with no recent positive item
    recent[20:40, 1] = recent[20:40, 0]  # a repeated item counts twice
    got = compiled_selection.coengaged_top(co.indptr, co.indices, co.data, recent, n)
    want = _coengaged_reference(co, recent, n)
    np.testing.assert_array_equal(_sets(got), _sets(want))  # the same items per user (their order is the merge's business)
    assert (got[:20] == -1).all() and (got[20:] >= 0).any()
    # the cancelled sums are dropped, as the product drops them
    cancels = 0
    for u in range(20, 300):
        seeds = recent[u][recent[u] >= 0]
        total = np.zeros(n_items, np.float32)
        for s in np.sort(seeds):
            total += co[s].toarray().ravel()
        cancels += int(((total == 0) & (np.abs(co[seeds].toarray()).sum(axis=0) > 0)).sum())
    assert cancels > 0


def test_threads_and_repeated_calls_keep_their_own_scratch():
    """The kernels reuse per-thread stamp arrays across calls (of item spaces of two sizes): calls
    in turn and in parallel threads give what a fresh call gives."""
    from concurrent.futures import ThreadPoolExecutor

    worlds = [_world(seed, m=60, c=120, n_items=300) for seed in range(4)]
    rng = np.random.default_rng(3)
    # fewer items than the walk's catalogue, as a bundle's co-engagement has beside new items
    co = sp.csr_matrix(np.where(rng.random((250, 250)) < 0.2, rng.choice([0.5, 0.25], (250, 250)), 0).astype(np.float32))
    recent = rng.integers(-1, 250, size=(60, 4))

    def run(i: int):
        cand, score, primary, neighbours, n_topics = worlds[i % 4]
        picks = diversity.select_scored(cand, score, primary, 5, cap=2, neighbours=neighbours, n_topics=n_topics)
        top = compiled_selection.coengaged_top(co.indptr, co.indices, co.data, recent[i % 4 :: 4], 6)
        return picks, _sets(top)

    def reference(i: int):
        cand, score, primary, neighbours, _ = worlds[i % 4]
        top = _coengaged_reference(co, recent[i % 4 :: 4], 6)
        return select_reference(cand, score, primary, 5, 2, neighbours), _sets(top)

    in_turn = [run(i) for i in range(8)]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(run, range(16)))
    for i, (picks, top) in enumerate(in_turn + together):
        want_picks, want_top = reference(i)
        for a, b in zip(picks, want_picks):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(top, want_top)
    assert (in_turn[0][1] >= 0).any()


def test_merge_into_shared_lists_equals_a_set_per_row():
    """Rows merged with the shared list each names give the sorted set of both (the gather merges a
    segment's shared sources once, then each user's own sources into them)."""
    rng = np.random.default_rng(11)
    n_items = 3000
    shared_sets = [sorted(set(rng.integers(0, n_items, rng.integers(0, 200)).tolist())) for _ in range(6)]
    shared = np.full((6, max(len(x) for x in shared_sets) + 3), -1, np.int64)  # padded past the longest
    for i, x in enumerate(shared_sets):
        shared[i, : len(x)] = x
    own = rng.integers(-1, n_items, size=(200, 90))
    own[:10] = -1  # rows with nothing of their own
    which = rng.integers(0, 6, 200)
    got = compiled_selection.merge_rows(own, shared, which)
    want_rows = [sorted(set(shared_sets[w]) | {int(v) for v in row if v >= 0}) for row, w in zip(own, which)]
    want = np.full((200, max(len(x) for x in want_rows)), -1, np.int64)
    for i, x in enumerate(want_rows):
        want[i, : len(x)] = x
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(compiled_selection.merge_rows(own), compiled_selection.merge_rows(own, shared[:0, :0].reshape(1, 0), np.zeros(200)))
    with pytest.raises(ValueError, match="shared lists"):
        compiled_selection.merge_rows(own, shared, np.full(200, 6))


def test_gather_merges_the_segments_shared_sources_once_and_gives_the_set_of_every_source():
    """candidates.gather: the sorted set of every source per user, whether a source is merged
    per user or once per segment; known users of two segments and unknown users given one."""
    from recsys.ranking import Recommender, candidates
    from recsys.ranking.eligibility import make_filter
    from recsys.ranking.users import resolve
    from tests.ranking_world import hand_model, items_frame, users_frame

    rng = np.random.default_rng(2)
    n_items = 80
    users = users_frame(["farmer", "youth", "resident", "farmer"], ["qinglong", "haigang", "haigang", "haigang"])
    model = hand_model(
        users, items_frame(n_items), rng.normal(size=(4, 6)), rng.normal(size=(n_items, 6)),
        segment_popularity=rng.random((4, n_items)), popularity_recent=rng.random(n_items),
    )
    state = Recommender.from_model(model).state
    batch = resolve(state, ["u0", "u1", "u2", "u3", "new1", "new2"], [None, None, None, None, ("youth", None, "qinglong"), ("farmer", None, "haigang")])
    filt = make_filter(state.taxonomy, channel="app_push")
    share = state.filtered(filt)
    now = state.default_now_ns
    parts = [
        candidates._ann(state, batch, 5, filt, share, now),
        candidates._new_items(state, batch, 56),
        candidates._topics(state, batch, filt),
        candidates._coengaged(state, batch),
        candidates._fresh(state, len(batch), now),
        state.catalog.segment_top[batch.segments],
        state.engagement.segment_best[batch.segments],
        candidates._popular(state, batch.groups, batch.regions),
    ]
    every = np.concatenate(parts, axis=1)
    got = candidates.gather(state, batch, 5, filt, share, now)
    for r in range(len(batch)):
        assert got[r][got[r] >= 0].tolist() == sorted({int(v) for v in every[r] if v >= 0})
    assert got.shape[1] == max(len({int(v) for v in row if v >= 0}) for row in every)
    assert len(set(batch.segments.tolist())) > 1
