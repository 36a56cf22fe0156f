"""The compiled merge of the history's pair lists against a NumPy merge, entry for entry."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.training.compiled_pairs import merge_pairs
from recsys.training.incremental import PairTimes


def _numpy_merge(old, new, n_items, keep):
    """The reference: binary search of every new pair, update in place, insert the rest at their sorted place."""
    row, col, seconds, channel = old
    orow, ocol, osec, och = new
    key = row.astype(np.int64) * n_items + col
    okey = orow.astype(np.int64) * n_items + ocol
    pos = np.searchsorted(key, okey)
    inside = pos < len(key)
    both = np.zeros(len(okey), bool)
    both[inside] = key[pos[inside]] == okey[inside]
    seconds = seconds.copy()
    channel = None if channel is None else channel.copy()
    at, sec = pos[both], osec[both]
    better = sec < seconds[at] if keep == "first" else sec >= seconds[at]
    seconds[at[better]] = sec[better]
    if channel is not None:
        channel[at[better]] = och[both][better]
    fresh = ~both
    return (
        np.insert(row, pos[fresh], orow[fresh]), np.insert(col, pos[fresh], ocol[fresh]),
        np.insert(seconds, pos[fresh], osec[fresh]),
        None if channel is None else np.insert(channel, pos[fresh], och[fresh]),
    )


def _pairs(rng, n, n_users, n_items, channel):
    key = np.unique(rng.integers(0, n_users * n_items, n))
    # whole seconds: equal times between the lists occur, so the tie rule is exercised
    seconds = rng.integers(0, 50, len(key)).astype(np.float64)
    ch = rng.integers(-1, 5, len(key)).astype(np.int8) if channel else None
    return (key // n_items).astype(np.int32), (key % n_items).astype(np.int32), seconds, ch


@pytest.mark.parametrize("keep", ["first", "last"])
@pytest.mark.parametrize("channel", [True, False])
@pytest.mark.parametrize("sizes", [(0, 5), (5, 0), (1, 1), (2000, 300), (50_000, 20_000)])
def test_merge_equals_the_numpy_merge(keep, channel, sizes):
    rng = np.random.default_rng(sizes[0] + 7 * sizes[1])
    n_users, n_items = 300, 97
    old = _pairs(rng, sizes[0], n_users, n_items, channel)
    new = _pairs(rng, sizes[1], n_users, n_items, channel)
    got = merge_pairs(old, new, n_items, keep=keep)
    want = _numpy_merge(old, new, n_items, keep)
    for g, w in zip(got, want):
        if w is None:
            assert g is None
            continue
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)
    key = got[0].astype(np.int64) * n_items + got[1]
    assert (np.diff(key) > 0).all()  # sorted, each pair once


def test_pair_times_merged_keeps_the_rule():
    a = PairTimes(np.array([0, 0, 2], np.int32), np.array([1, 3, 0], np.int32), np.array([5.0, 5.0, 5.0]),
                  np.array([1, 2, 3], np.int8))
    b = PairTimes(np.array([0, 1, 2], np.int32), np.array([3, 0, 0], np.int32), np.array([4.0, 9.0, 5.0]),
                  np.array([7, 8, 9], np.int8))
    first = a.merged(b, 10, keep="first")
    assert first.row.tolist() == [0, 0, 1, 2] and first.col.tolist() == [1, 3, 0, 0]
    assert first.seconds.tolist() == [5.0, 4.0, 9.0, 5.0] and first.channel.tolist() == [1, 7, 8, 3]
    last = a.merged(b, 10, keep="last")
    assert last.seconds.tolist() == [5.0, 5.0, 9.0, 5.0] and last.channel.tolist() == [1, 2, 8, 9]


def _seen_reference(engaged, negatives):
    """The seen matrix by sparse arithmetic: +1 engaged, -1 negative, the negative wins."""
    import scipy.sparse as sp

    pos = (engaged != 0).astype(np.int8)
    neg = (negatives != 0).astype(np.int8)
    seen = sp.csr_matrix(pos - pos.multiply(neg) - neg, dtype=np.int8)
    seen.eliminate_zeros()
    seen.sort_indices()
    return seen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seen_matrix_equals_the_sparse_arithmetic(seed):
    import scipy.sparse as sp

    from recsys.training.job import seen_matrix

    rng = np.random.default_rng(seed)
    engaged = sp.random(400, 120, density=0.08, format="csr", random_state=seed, dtype=np.float32)
    negatives = sp.random(400, 120, density=0.03, format="csr", random_state=seed + 10, dtype=np.float32)
    # pairs in both, and explicit zeros (an entry whose weight decayed to 0 is no entry)
    both = engaged.tocoo()
    negatives = negatives + sp.csr_matrix((np.ones(40, np.float32), (both.row[:40], both.col[:40])), shape=(400, 120))
    engaged.data[rng.random(engaged.nnz) < 0.05] = 0.0
    negatives = sp.csr_matrix(negatives)
    negatives.data[rng.random(negatives.nnz) < 0.05] = 0.0
    if seed == 2:  # unsorted columns (each row's entries reversed) are read in canonical form
        p = negatives.indptr
        order = np.concatenate([np.arange(a, b)[::-1] for a, b in zip(p[:-1], p[1:])]).astype(np.int64)
        negatives = sp.csr_matrix((negatives.data[order], negatives.indices[order], p), shape=negatives.shape)
        assert not negatives.has_sorted_indices
    got, want = seen_matrix(engaged, negatives), _seen_reference(engaged, negatives)
    assert got.dtype == np.int8 and (got != want).nnz == 0
    for a, b in ((got.indptr, want.indptr), (got.indices, want.indices), (got.data, want.data)):
        np.testing.assert_array_equal(a, b)


def test_seen_matrix_refuses_matrices_of_different_shapes():
    import scipy.sparse as sp

    from recsys.training.job import seen_matrix

    # the kernel walks both row by row without bounds checks: a shorter matrix must not be read past its end
    with pytest.raises(ValueError, match="differ in shape"):
        seen_matrix(sp.csr_matrix((4, 6), dtype=np.float32), sp.csr_matrix((3, 6), dtype=np.float32))
