"""Tests of recsys.training.index.VectorIndex: exact oracle, allow-lists, determinism, persistence.

The default kind ("pruned") is exact: it must equal brute force, also over
vectors whose norms differ by orders of magnitude (ALS factors), where an
inner-product HNSW graph misses much of the true top-k.
"""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from recsys.config import IndexConfig
from recsys.exceptions import ArtifactError, ConfigError, NotFittedError
from recsys.bundle import read_part, write_part
from recsys.training.index import VectorIndex

# the files an index writes into its part of a bundle
META_FILE, INDEX_FILE, VECTORS_FILE, IDS_FILE = "index.json", "index.faiss", "vectors.npy", "ids.npy"


def clustered(n: int, d: int, seed: int, clusters: int = 8) -> np.ndarray:
    """Unit vectors around a few centres, so neighbours are meaningful."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d))
    x = centres[rng.integers(clusters, size=n)] + 0.5 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def skewed(n: int, d: int, seed: int, sigma: float = 1.3) -> np.ndarray:
    """Clustered directions times log-normal norms: the spread of ALS item factors (~700x p1..p99)."""
    rng = np.random.default_rng(seed)
    norms = rng.lognormal(0.0, sigma, size=(n, 1))
    return (clustered(n, d, seed) * norms).astype(np.float32)


N, D = 600, 16
FLAT = IndexConfig(kind="hnsw", exact_threshold=10_000, threads=1, recall_sample=50, recall_k=10, allow_exact_max=50)
HNSW = IndexConfig(
    kind="hnsw", exact_threshold=100, hnsw_m=16, ef_construction=64, ef_search=64,
    threads=1, recall_sample=50, recall_k=10, allow_exact_max=50,
)
# a small head, so that the tests' 600 rows go through the bound and the later blocks; exact
# (the default share, "auto", may choose an approximate cap: tested on its own below)
PRUNED = IndexConfig(pruned_head=64, pruned_max_share=1.0, threads=1, recall_sample=50, recall_k=10)
CONFIGS = {"flat": FLAT, "hnsw": HNSW, "pruned": PRUNED}


@pytest.fixture(scope="module")
def data():
    x = clustered(N, D, seed=1)
    ids = np.random.default_rng(2).permutation(100_000)[:N].astype(np.int64) + 7
    queries = clustered(20, D, seed=3)
    return x, ids, queries


@pytest.fixture(scope="module", params=["flat", "hnsw", "pruned"])
def built(request, data):
    x, ids, _ = data
    return VectorIndex.build(x, ids, config=CONFIGS[request.param], seed=5)


def test_kind_follows_config_and_threshold(data):
    x, ids, _ = data
    hnsw = {"kind": "hnsw", "recall_sample": 0}
    assert VectorIndex.build(x, ids, config=IndexConfig(exact_threshold=N + 1, **hnsw)).kind == "flat"
    index = VectorIndex.build(x, ids, config=IndexConfig(exact_threshold=N, threads=1, **hnsw))
    assert index.kind == "hnsw"
    assert isinstance(index.index_, faiss.IndexHNSWFlat)
    assert index.ntotal == N and index.dim == D
    assert index.recall_ is None
    # the default: exact, whatever the size; rows kept in descending norm order
    pruned = VectorIndex.build(x * np.linspace(2, 1, N, dtype=np.float32)[::-1, None], ids, config=IndexConfig(recall_sample=0))
    assert pruned.kind == "pruned" and pruned.index_ is None and pruned.ntotal == N
    norms = np.linalg.norm(pruned.vectors_, axis=1)
    assert (np.diff(norms) <= 0).all()
    assert (pruned.ids_ == ids[::-1]).all()  # the input was in ascending norm order
    with pytest.raises(ConfigError, match=r"\[index\] kind = 'ivf'.*valid: pruned, hnsw"):
        VectorIndex.build(x, config=IndexConfig(kind="ivf"))


def test_search_returns_caller_ids_and_matches_oracle(built, data):
    x, ids, queries = data
    scores, found = built.search(queries, 10)
    assert scores.shape == found.shape == (20, 10)
    assert scores.dtype == np.float32 and found.dtype == np.int64
    assert np.isin(found, ids).all()
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    # a stored vector's nearest neighbour is itself
    _, self_hit = built.search(x[:30], 1)
    assert (self_hit[:, 0] == ids[:30]).all()
    exact_scores, exact = built.exact_search(queries, 10)
    if built.kind != "hnsw":
        assert (found == exact).all()
        np.testing.assert_allclose(scores, exact_scores, rtol=1e-5, atol=1e-6)
    assert built.recall_at_k(queries, 10) >= 0.9


def test_build_recall_is_recorded(built):
    info = built.info()
    assert info["kind"] == built.kind
    assert info["recall_k"] == 10 and info["recall_sample"] == 50
    assert 0.9 <= info["recall_at_k"] <= 1.0
    json.dumps(info)  # manifest-ready
    if built.kind != "hnsw":
        assert info["recall_at_k"] == 1.0
    if built.kind == "pruned":
        assert 0 < info["scan_share"] <= 1.0
    else:
        assert info["scan_share"] is None


def _recall(found: np.ndarray, exact: np.ndarray) -> float:
    return sum(np.intersect1d(a, b).size for a, b in zip(found, exact)) / exact.size


def test_pruned_is_exact_over_skewed_norms_where_hnsw_is_not():
    """Recall of the default index over ALS-like norms; the inner-product graph on the same vectors misses."""
    x = skewed(4000, 16, seed=7)
    rng = np.random.default_rng(8)
    queries = (clustered(300, 16, seed=9) * rng.lognormal(1.0, 0.5, size=(300, 1))).astype(np.float32)
    pruned = VectorIndex.build(x, config=IndexConfig(pruned_head=256, threads=1, recall_sample=0))
    graph = VectorIndex.build(
        x, config=IndexConfig(kind="hnsw", exact_threshold=0, hnsw_m=8, ef_construction=40, ef_search=50, threads=1, recall_sample=0)
    )
    _, exact = pruned.exact_search(queries, 50)
    _, found = pruned.search(queries, 50)
    assert _recall(found, exact) >= 0.95
    assert pruned.recall_at_k(queries, 50) >= 0.95
    # the bound skipped rows (the point of the kind), yet nothing was lost
    assert pruned.scan_share_ < 0.9
    _, graph_found = graph.search(queries, 50)
    assert _recall(graph_found, exact) < 0.95


@pytest.mark.parametrize("k", [1, 50, 700])
def test_pruned_batch_equals_exact_top_k(k):
    """A block of queries of mixed norms (a zero one, negative scores, k near n) equals brute force."""
    x = skewed(1000, 8, seed=3)
    rng = np.random.default_rng(4)
    queries = rng.standard_normal((97, 8)).astype(np.float32) * rng.lognormal(0, 1, size=(97, 1)).astype(np.float32)
    queries[5] = 0.0
    index = VectorIndex.build(x, np.arange(1000) * 3 + 1, config=IndexConfig(pruned_head=32, threads=1, recall_sample=0))
    scores, found = index.search(queries, k)
    exact_scores, exact = index.exact_search(queries, k)
    np.testing.assert_allclose(scores, exact_scores, rtol=1e-5, atol=1e-6)
    live = np.arange(97) != 5  # a zero query ties every item at 0: any k are right
    _same_lists(found[live], exact[live], queries[live], x, k)
    assert np.isin(found[5], index.ids_).all() and (scores[5] == 0).all()
    # one query at a time gives the same as the block
    for row in (0, 50, 96):
        _, one_found = index.search(queries[row : row + 1], k)
        _same_lists(one_found, found[row : row + 1], queries[row : row + 1], x, k)


def _same_lists(found: np.ndarray, want: np.ndarray, queries: np.ndarray, x: np.ndarray, k: int) -> None:
    """The same top-k lists up to near-ties: two BLAS products of different shapes (or thread
    counts, which an earlier test in the process may have set) can round a score's last bit
    apart, and two near-equal items then swap places; a missed or misplaced item cannot hide."""
    q64, x64 = queries.astype(np.float64), x.astype(np.float64)
    truth = q64 @ x64.T  # ids are row * 3 + 1
    # what float32 products of this length may round apart: a few units in the last place of the terms' sum
    bound = 8 * np.finfo(np.float32).eps * (np.abs(q64) @ np.abs(x64).T)
    rows_got, rows_want = (found - 1) // 3, (want - 1) // 3
    got_scores = np.take_along_axis(truth, rows_got, axis=1)
    want_scores = np.take_along_axis(truth, rows_want, axis=1)
    tol = np.maximum(np.take_along_axis(bound, rows_got, axis=1), np.take_along_axis(bound, rows_want, axis=1))
    # rank by rank the same true score up to rounding (a swap of near-equal items keeps it; a missed item does not)
    assert (np.abs(got_scores - want_scores) <= tol).all()
    assert all(len(np.unique(r)) == min(k, x.shape[0]) for r in found)
    assert (found != want).sum() <= 6  # near-ties are rare: a swap or three at most


@pytest.mark.parametrize("share", [0.01, 0.05, 0.2])  # 0.01: below the 32-row head, the head alone
def test_pruned_max_share_scores_only_the_largest_rows_the_same_for_one_query_and_a_block(share):
    """Capped: the exact top-k among the largest-norm rows it may score; one query equals the block."""
    x = skewed(1000, 8, seed=3)
    rng = np.random.default_rng(4)
    queries = (clustered(97, 8, seed=5) * rng.lognormal(1.0, 0.5, size=(97, 1))).astype(np.float32)
    capped = VectorIndex.build(x, config=IndexConfig(pruned_head=32, pruned_max_share=share, threads=1, recall_sample=0))
    exact = VectorIndex.build(x, config=IndexConfig(pruned_head=32, threads=1, recall_sample=0))
    cap = max(32, int(np.ceil(share * 1000)))  # never fewer rows than the head
    top = np.argsort(-np.linalg.norm(x, axis=1), kind="stable")[:cap]  # the rows it may score, as input rows
    _, found = capped.search(queries, 20)
    _, within = exact.exact_search(queries, 20, allow=top)
    assert (found == within).all()
    for row in (0, 40, 96):
        _, one = capped.search(queries[row : row + 1], 20)
        assert (one[0] == found[row]).all()
    # recall against the whole catalogue is measured, and it is what was given up
    _, truth = exact.exact_search(queries, 20)
    assert capped.recall_at_k(queries, 20) == pytest.approx(_recall(found, truth))
    assert capped.scan_share_ <= cap / 1000 + 0.02
    assert capped.info()["config"]["pruned_max_share"] == share


def _als_like() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Skewed item vectors and two disjoint samples of user-like queries (as the training draws them)."""
    x = skewed(4000, 16, seed=7)
    rng = np.random.default_rng(8)
    users = (clustered(600, 16, seed=9) * rng.lognormal(1.0, 0.5, size=(600, 1))).astype(np.float32)
    return x, users[:300], users[300:]


@pytest.mark.parametrize("min_recall", [0.9, 0.97, 0.995])
def test_auto_share_is_the_smallest_tried_share_that_reaches_min_recall(min_recall):
    x, sample, _ = _als_like()
    config = IndexConfig(pruned_head=64, min_recall=min_recall, threads=1, recall_k=20)
    assert config.pruned_max_share == "auto"  # the default
    index = VectorIndex.build(x, config=config, queries=sample)
    share = index.config_.pruned_max_share
    tried = {float(s): r for s, r in index.share_recalls_.items()}
    exact = VectorIndex.build(x, config=IndexConfig(pruned_head=64, pruned_max_share=1.0, threads=1, recall_sample=0))
    _, truth = exact.exact_search(sample, 20)
    # each share tried is measured as its own capped search would be
    for s, r in tried.items():
        capped = VectorIndex.build(x, config=IndexConfig(pruned_head=64, pruned_max_share=s, threads=1, recall_sample=0))
        assert r == pytest.approx(_recall(capped.search(sample, 20)[1], truth), abs=1e-5)
    # every share tried before the kept one missed the floor; the kept one (or exact) reaches it
    below = [r for s, r in tried.items() if s < share]
    assert all(r < min_recall for r in below)
    assert index.recall_ >= min_recall
    if share < 1.0:
        assert tried[share] == pytest.approx(index.recall_, abs=1e-5)
    else:
        assert index.recall_ == 1.0 and all(r < min_recall for r in tried.values())
    # the recall only grows with the share (what makes the first passing share the smallest)
    values = list(tried.values())
    assert values == sorted(values)
    # the kept share is what the index searches with, and what it records
    _, found = index.search(sample, 20)
    assert _recall(found, truth) == pytest.approx(index.recall_, abs=1e-5)
    info = index.info()
    assert info["config"]["pruned_max_share"] == share and info["recall_at_k"] == index.recall_
    assert info["share_recalls"] == index.share_recalls_
    json.dumps(info)


def test_auto_share_differs_with_the_floor_and_holds_on_other_users():
    x, sample, others = _als_like()
    loose = VectorIndex.build(x, config=IndexConfig(pruned_head=64, min_recall=0.8, threads=1, recall_k=20), queries=sample)
    strict = VectorIndex.build(x, config=IndexConfig(pruned_head=64, min_recall=0.99, threads=1, recall_k=20), queries=sample)
    assert loose.config_.pruned_max_share < strict.config_.pruned_max_share
    assert loose.scan_share_ < strict.scan_share_
    # chosen on one sample, the recall is close on users it never saw
    assert abs(loose.recall_at_k(others, 20) - loose.recall_) < 0.05


def test_auto_share_without_a_sample_or_for_a_small_catalogue_is_exact(data):
    x, ids, queries = data
    # nothing to measure by: exact
    blind = VectorIndex.build(skewed(4000, 16, seed=7), config=IndexConfig(pruned_head=64, threads=1, recall_sample=0))
    assert blind.config_.pruned_max_share == 1.0 and blind.recall_ is None and blind.share_recalls_ == {}
    # the head covers the catalogue: no share is cheaper than exact, none is tried
    small = VectorIndex.build(x, ids, config=IndexConfig(pruned_head=N, threads=1, recall_k=10), queries=queries)
    assert small.config_.pruned_max_share == 1.0 and small.share_recalls_ == {} and small.recall_ == 1.0
    # a graph index has no share to choose
    graph = VectorIndex.build(x, ids, config=FLAT)
    assert graph.config_.pruned_max_share == 1.0


def test_auto_share_round_trips_and_an_index_from_before_the_option_loads_exact(tmp_path):
    x, sample, _ = _als_like()
    index = VectorIndex.build(x, config=IndexConfig(pruned_head=64, min_recall=0.9, threads=1, recall_k=20), queries=sample)
    assert index.config_.pruned_max_share < 1.0
    folder = write_part(tmp_path / "auto", index)
    loaded = read_part(folder, VectorIndex)
    assert loaded.config_.pruned_max_share == index.config_.pruned_max_share
    assert loaded.share_recalls_ == index.share_recalls_
    assert (loaded.search(sample, 20)[1] == index.search(sample, 20)[1]).all()
    # search-time settings given at load keep the built share (it was measured)
    tuned = read_part(folder, VectorIndex, config=IndexConfig(allow_exact_max=0, threads=1))
    assert tuned.config_.pruned_max_share == index.config_.pruned_max_share
    # index.json written before the option: no pruned_max_share, no share_recalls -> exact search
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    del meta["config"]["pruned_max_share"], meta["share_recalls"]
    (folder / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
    old = read_part(folder, VectorIndex, verify=False)
    assert old.config_.pruned_max_share == 1.0
    assert (old.search(sample, 20)[1] == old.exact_search(sample, 20)[1]).all()


@pytest.mark.parametrize("allow_size", [30, 300])  # exact-subset path, faiss selector path
def test_allow_list_returns_only_allowed_and_equals_subset_search(built, data, allow_size):
    x, ids, queries = data
    rng = np.random.default_rng(allow_size)
    rows = np.sort(rng.choice(N, size=allow_size, replace=False))
    allow = ids[rows]
    scores, found = built.search(queries, 10, allow=allow)
    assert np.isin(found, allow).all()

    # oracle: an exact index built from the allowed vectors alone
    subset = VectorIndex.build(x[rows], allow, config=FLAT, seed=0)
    sub_scores, sub_found = subset.exact_search(queries, 10)
    # and the same via exact_search's own allow-list
    or_scores, or_found = built.exact_search(queries, 10, allow=allow)
    assert (or_found == sub_found).all()
    np.testing.assert_allclose(or_scores, sub_scores, rtol=1e-5, atol=1e-6)

    exact_path = allow_size <= built.config_.allow_exact_max
    if built.kind == "flat" or exact_path:
        assert (found == sub_found).all()
        np.testing.assert_allclose(scores, sub_scores, rtol=1e-5, atol=1e-6)
    else:
        # graph search through a selector is approximate: most of the true top-10
        hits = sum(np.intersect1d(a, b).size for a, b in zip(found, sub_found))
        assert hits / sub_found.size >= 0.9


def test_allow_list_ignores_unknown_ids_and_pads(built, data):
    _, ids, queries = data
    allow = np.array([ids[3], ids[9], -5, 10**9], dtype=np.int64)
    scores, found = built.search(queries[:2], 4, allow=allow)
    assert set(found[:, :2].ravel()) <= {ids[3], ids[9]}
    assert (found[:, 2:] == -1).all() and np.isneginf(scores[:, 2:]).all()
    scores, found = built.search(queries[:2], 3, allow=np.array([], dtype=np.int64))
    assert (found == -1).all() and np.isneginf(scores).all()


def test_k_larger_than_catalogue_pads():
    x = clustered(5, 4, seed=0)
    index = VectorIndex.build(x, config=FLAT)
    scores, found = index.search(x[:1], 8)
    assert sorted(found[0, :5]) == [0, 1, 2, 3, 4]
    assert (found[0, 5:] == -1).all() and np.isneginf(scores[0, 5:]).all()
    _, exact = index.exact_search(x[:1], 8)
    assert (exact == found).all()


def test_same_vectors_same_seed_same_results(data):
    x, ids, queries = data
    a = VectorIndex.build(x, ids, config=HNSW, seed=11)
    b = VectorIndex.build(x, ids, config=HNSW, seed=11)
    sa, fa = a.search(queries, 10)
    sb, fb = b.search(queries, 10)
    assert (fa == fb).all() and (sa == sb).all()
    assert a.recall_ == b.recall_
    levels = faiss.vector_to_array(a.index_.hnsw.levels)
    assert (levels == faiss.vector_to_array(b.index_.hnsw.levels)).all()
    # the seed reaches the graph: another seed draws other node levels
    c = VectorIndex.build(x, ids, config=HNSW, seed=12)
    assert not (levels == faiss.vector_to_array(c.index_.hnsw.levels)).all()


@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_round_trip(built, data, tmp_path, mmap):
    x, ids, queries = data
    folder = write_part(tmp_path / "index", built)
    loaded = read_part(folder, VectorIndex, mmap=mmap)
    assert loaded.kind == built.kind and loaded.ntotal == N
    np.testing.assert_array_equal(np.asarray(loaded.vectors_), np.asarray(built.vectors_))
    np.testing.assert_array_equal(np.asarray(loaded.ids_), np.asarray(built.ids_))
    # every input row is there under its id (the pruned kind reorders the rows)
    at = np.argsort(ids)[np.searchsorted(np.sort(ids), np.asarray(loaded.ids_))]
    np.testing.assert_array_equal(np.asarray(loaded.vectors_), x[at])
    for allow in (None, ids[:20], ids[::2]):
        s1, f1 = built.search(queries, 10, allow=allow)
        s2, f2 = loaded.search(queries, 10, allow=allow)
        assert (f1 == f2).all()
        np.testing.assert_array_equal(s1, s2)
    assert loaded.info()["recall_at_k"] == built.recall_


def test_load_config_overrides_search_settings(built, tmp_path, data):
    _, ids, queries = data
    folder = write_part(tmp_path / "index", built)
    loaded = read_part(folder, VectorIndex, config=IndexConfig(allow_exact_max=0, threads=1))
    assert loaded.config_.allow_exact_max == 0
    _, found = loaded.search(queries, 5, allow=ids[:10])
    assert np.isin(found, ids[:10]).all()


@pytest.mark.parametrize("name", [META_FILE, INDEX_FILE, VECTORS_FILE, IDS_FILE])
def test_missing_file_names_it(built, tmp_path, name):
    if built.kind == "pruned" and name == INDEX_FILE:
        pytest.skip("the pruned kind has no faiss file")
    folder = write_part(tmp_path / "index", built)
    (folder / name).unlink()
    with pytest.raises(ArtifactError, match=f"{name}: missing from the model bundle"):
        read_part(folder, VectorIndex)
    with pytest.raises(ArtifactError, match=f"{name}: missing from the model bundle"):
        read_part(folder, VectorIndex, verify=False)


def test_missing_folder(tmp_path):
    with pytest.raises(ArtifactError, match="nowhere: component folder not found"):
        read_part(tmp_path / "nowhere", VectorIndex)


@pytest.mark.parametrize("name", [INDEX_FILE, VECTORS_FILE, IDS_FILE])
def test_corrupted_file_fails_checksum(built, tmp_path, name):
    if built.kind == "pruned" and name == INDEX_FILE:
        pytest.skip("the pruned kind has no faiss file")
    folder = write_part(tmp_path / "index", built)
    raw = bytearray((folder / name).read_bytes())
    raw[-1] ^= 0xFF  # one flipped byte in the payload: still parses, wrong data
    (folder / name).write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match=f"{name}: checksum mismatch"):
        read_part(folder, VectorIndex)


def test_unreadable_faiss_file_without_checksum(built, tmp_path):
    if built.kind == "pruned":
        pytest.skip("the pruned kind has no faiss file")
    folder = write_part(tmp_path / "index", built)
    (folder / INDEX_FILE).write_bytes(b"not a faiss index")
    with pytest.raises(ArtifactError, match="index.faiss: cannot read faiss index"):
        read_part(folder, VectorIndex, verify=False)


def test_truncated_vectors_without_checksum(built, tmp_path):
    folder = write_part(tmp_path / "index", built)
    raw = (folder / VECTORS_FILE).read_bytes()
    (folder / VECTORS_FILE).write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ArtifactError, match="vectors.npy: unreadable"):
        read_part(folder, VectorIndex, verify=False, mmap=False)


def test_inconsistent_sizes(built, tmp_path, data):
    folder = write_part(tmp_path / "index", built)
    np.save(folder / IDS_FILE, data[1][:-1], allow_pickle=False)
    with pytest.raises(ArtifactError, match="ids.npy: checksum mismatch"):
        read_part(folder, VectorIndex)
    with pytest.raises(ArtifactError, match="ids.npy: expected 600 int64 ids"):
        read_part(folder, VectorIndex, verify=False)


def test_bad_metadata(built, tmp_path):
    folder = write_part(tmp_path / "index", built)
    (folder / META_FILE).write_text("{broken", encoding="utf-8")
    with pytest.raises(ArtifactError, match="index.json: unreadable"):
        read_part(folder, VectorIndex, verify=False)
    (folder / META_FILE).write_text(json.dumps({"kind": "flat"}), encoding="utf-8")
    with pytest.raises(ArtifactError, match="index.json: unreadable index metadata"):
        read_part(folder, VectorIndex, verify=False)
    meta = built.info() | {"format_version": 99}
    (folder / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ArtifactError, match="index format version 99"):
        read_part(folder, VectorIndex, verify=False)


def test_pruned_rows_out_of_norm_order_are_refused(tmp_path, data):
    x, ids, _ = data
    index = VectorIndex.build(x * np.linspace(1, 3, N, dtype=np.float32)[:, None], ids, config=PRUNED)
    folder = write_part(tmp_path / "index", index)
    np.save(folder / VECTORS_FILE, np.ascontiguousarray(np.asarray(index.vectors_)[::-1]), allow_pickle=False)
    with pytest.raises(ArtifactError, match="vectors.npy: rows are not in descending norm order"):
        read_part(folder, VectorIndex, verify=False)


def test_build_input_errors():
    x = clustered(10, 4, seed=0)
    with pytest.raises(ConfigError, match=r"vectors must be a 2-D array .* shape \(10,\)"):
        VectorIndex.build(x[:, 0], config=FLAT)
    with pytest.raises(ConfigError, match="at least one row"):
        VectorIndex.build(np.zeros((0, 4), dtype=np.float32), config=FLAT)
    with pytest.raises(ConfigError, match="vectors must be numeric"):
        VectorIndex.build(np.full((2, 2), "a"), config=FLAT)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ConfigError, match="vectors contains NaN"):
        VectorIndex.build(bad, config=FLAT)
    with pytest.raises(ConfigError, match="ids has 9 entries but vectors has 10 rows"):
        VectorIndex.build(x, np.arange(9), config=FLAT)
    with pytest.raises(ConfigError, match="ids must be distinct"):
        VectorIndex.build(x, np.zeros(10, dtype=np.int64), config=FLAT)
    with pytest.raises(ConfigError, match=r"ids must be >= 0 .* got -1"):
        VectorIndex.build(x, np.arange(-1, 9), config=FLAT)
    with pytest.raises(ConfigError, match="ids must hold integers"):
        VectorIndex.build(x, np.arange(10) + 0.5, config=FLAT)
    with pytest.raises(ConfigError, match=r"\[index\] hnsw_m = 1 is out of range; valid: 2..256"):
        VectorIndex.build(x, config=IndexConfig(hnsw_m=1))
    with pytest.raises(ConfigError, match="config must be an IndexConfig"):
        VectorIndex.build(x, config={"threads": 1})
    with pytest.raises(ConfigError, match="seed must be a non-negative int"):
        VectorIndex.build(x, config=FLAT, seed=-3)


def test_search_input_errors(data):
    x, _, _ = data
    index = VectorIndex.build(x, config=FLAT)
    with pytest.raises(ConfigError, match="k must be an integer >= 1, got 0"):
        index.search(x[:2], 0)
    with pytest.raises(ConfigError, match=f"queries must have {D} columns"):
        index.search(x[:2, :3], 5)
    with pytest.raises(ConfigError, match="queries must be a 2-D array"):
        index.search(x[0], 5)
    with pytest.raises(ConfigError, match=r"allow must be a 1-D array"):
        index.search(x[:2], 5, allow=np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ConfigError, match="allow must hold integers"):
        index.search(x[:2], 5, allow=np.array([1.5]))
    with pytest.raises(ConfigError, match="sample_queries must have at least one row"):
        index.recall_at_k(x[:0], 5)


def test_not_built():
    index = VectorIndex(config=FLAT)
    with pytest.raises(NotFittedError, match="VectorIndex is not built"):
        index.search(np.zeros((1, 4), dtype=np.float32), 3)
    with pytest.raises(NotFittedError, match="not built"):
        index.save("unused")


@pytest.mark.parametrize("value", ["auto", 0.1, 1, 1.0])
def test_config_pruned_max_share_takes_auto_or_a_share(value):
    from recsys.config import check_section, config_from_dict

    assert config_from_dict({"index": {"pruned_max_share": value}}).index.pruned_max_share == value
    check_section(IndexConfig(pruned_max_share=value), IndexConfig)


@pytest.mark.parametrize("value", ["fast", 1.5, -0.1, True, [0.1]])
def test_config_pruned_max_share_refuses_anything_else(value):
    from recsys.config import config_from_dict

    with pytest.raises(ConfigError, match=r"\[index\] pruned_max_share = .* is not valid; valid: 'auto' or 0\.\.1"):
        config_from_dict({"index": {"pruned_max_share": value}})


@pytest.mark.parametrize("k", [1, 7, 40])
def test_ties_at_the_kth_score_keep_the_lower_row_in_every_search_path(k):
    """Small integer vectors: every score exact and many tied; a single query, a block and the exact
    search keep the same rows (ties by row, lower first)."""
    rng = np.random.default_rng(21)
    x = rng.integers(-2, 3, size=(300, 6)).astype(np.float32)
    x[150:] = x[:150]  # every vector twice: each score tied at least in pairs
    queries = rng.integers(-2, 3, size=(25, 6)).astype(np.float32)
    queries[0] = 0.0  # ties everything at 0
    index = VectorIndex.build(x, config=IndexConfig(pruned_head=16, threads=1, recall_sample=0))
    exact_scores, exact = index.exact_search(queries, k)
    scores, found = index.search(queries, k)
    assert (found == exact).all() and (scores == exact_scores).all()
    for row in range(len(queries)):
        _, one = index.search(queries[row : row + 1], k)
        assert (one[0] == exact[row]).all()
