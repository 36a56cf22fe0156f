"""Compiled (numba) merges of sorted (user, item) lists: the history's pair times, the seen matrix.

The history store keeps, per (user, item) pair, one time (the first showing, with
its channel; the latest positive engagement), sorted by pair
(:class:`~recsys.training.incremental.PairTimes`). Each night merges yesterday's
list (tens of millions of pairs at the city) with the night's (about a million).
In NumPy that was a binary search of every new pair, a copy of the times and
channels, and one ``np.insert`` per column (each a copy of the whole list); here
it is one walk over both lists into the merged one.

The training's seen matrix (+1 engaged, -1 dismissed or reported: the negative
wins) is the same kind of walk, row by row over the engaged and negative
matrices' sorted columns, instead of four sparse operations.

Integer and copy work only: the results are NumPy's and SciPy's, entry for entry
(the tests compare them).
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp


@numba.njit(cache=True, nogil=True)
def _merge(
    row: np.ndarray, col: np.ndarray, seconds: np.ndarray, channel: np.ndarray,
    orow: np.ndarray, ocol: np.ndarray, oseconds: np.ndarray, ochannel: np.ndarray,
    n_items: int, keep_first: bool, has_channel: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n, m = row.shape[0], orow.shape[0]
    # pass 1: how many pairs the merged list holds
    i = j = 0
    both = 0
    while i < n and j < m:
        a = np.int64(row[i]) * n_items + col[i]
        b = np.int64(orow[j]) * n_items + ocol[j]
        if a < b:
            i += 1
        elif b < a:
            j += 1
        else:
            both += 1
            i += 1
            j += 1
    size = n + m - both
    out_row = np.empty(size, dtype=np.int32)
    out_col = np.empty(size, dtype=np.int32)
    out_sec = np.empty(size, dtype=np.float64)
    out_ch = np.empty(size if has_channel else 0, dtype=np.int8)
    # pass 2: the walk; a pair in both keeps the earlier ("first") or the later-or-equal ("last") time
    i = j = k = 0
    while i < n or j < m:
        take_old = take_new = False
        if j == m:
            take_old = True
        elif i == n:
            take_new = True
        else:
            a = np.int64(row[i]) * n_items + col[i]
            b = np.int64(orow[j]) * n_items + ocol[j]
            if a < b:
                take_old = True
            elif b < a:
                take_new = True
        if take_old:
            out_row[k], out_col[k], out_sec[k] = row[i], col[i], seconds[i]
            if has_channel:
                out_ch[k] = channel[i]
            i += 1
        elif take_new:
            out_row[k], out_col[k], out_sec[k] = orow[j], ocol[j], oseconds[j]
            if has_channel:
                out_ch[k] = ochannel[j]
            j += 1
        else:
            better = oseconds[j] < seconds[i] if keep_first else oseconds[j] >= seconds[i]
            out_row[k], out_col[k] = row[i], col[i]
            out_sec[k] = oseconds[j] if better else seconds[i]
            if has_channel:
                out_ch[k] = ochannel[j] if better else channel[i]
            i += 1
            j += 1
        k += 1
    return out_row, out_col, out_sec, out_ch


def merge_pairs(
    old: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None],
    new: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None],
    n_items: int,
    *,
    keep: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Merge two lists of (row, col, seconds, channel), each sorted by ``(row, col)`` with each pair once.

    Parameters
    ----------
    old, new : (row, col, seconds, channel)
        int32 rows and columns, float64 epoch seconds, int8 channels (or None in both).
    n_items : int
        Columns per row (the sort key is ``row * n_items + col``).
    keep : {"first", "last"}
        For a pair in both: the earlier time (ties: the old one), or the later (ties: the new one).

    Returns
    -------
    (row, col, seconds, channel)
        Sorted by pair, each pair once; channel None when the inputs have none.
    """
    has_channel = old[3] is not None
    empty = np.zeros(0, dtype=np.int8)
    r, c, s, ch = _merge(
        np.asarray(old[0], np.int32), np.asarray(old[1], np.int32), np.asarray(old[2], np.float64),
        np.asarray(old[3], np.int8) if has_channel else empty,
        np.asarray(new[0], np.int32), np.asarray(new[1], np.int32), np.asarray(new[2], np.float64),
        np.asarray(new[3], np.int8) if has_channel else empty,
        int(n_items), keep == "first", has_channel,
    )
    return r, c, s, ch if has_channel else None


@numba.njit(cache=True, nogil=True)
def _seen(
    p_indptr: np.ndarray, p_indices: np.ndarray, p_data: np.ndarray,
    n_indptr: np.ndarray, n_indices: np.ndarray, n_data: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_rows = p_indptr.shape[0] - 1
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    # at most every entry of both: written once, the unused tail cut off at the end
    # column numbers fit int32, the matrix's own index type: no wider copy to narrow again after
    indices = np.empty(p_indices.shape[0] + n_indices.shape[0], dtype=np.int32)
    data = np.empty(indices.shape[0], dtype=np.int8)
    k = 0
    for r in range(n_rows):
        a, a_end = p_indptr[r], p_indptr[r + 1]
        b, b_end = n_indptr[r], n_indptr[r + 1]
        while a < a_end or b < b_end:
            # explicit zeros are no entries (the matrices' "!= 0")
            if a < a_end and p_data[a] == 0:
                a += 1
                continue
            if b < b_end and n_data[b] == 0:
                b += 1
                continue
            if b == b_end or (a < a_end and p_indices[a] < n_indices[b]):
                indices[k], data[k] = p_indices[a], 1
                a += 1
            elif a == a_end or n_indices[b] < p_indices[a]:
                indices[k], data[k] = n_indices[b], -1
                b += 1
            else:  # engaged and negative: the negative wins
                indices[k], data[k] = n_indices[b], -1
                a += 1
                b += 1
            k += 1
        indptr[r + 1] = k
    return indptr, indices[:k].copy(), data[:k].copy()


def seen_entries(engaged: sp.csr_matrix, negatives: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The int8 seen matrix's CSR arrays (indptr, indices, data): +1 engaged, -1 negative (the negative wins).

    Both inputs are read in canonical form (sorted columns, no repeats); explicit zeros count as no entry.
    """
    if engaged.shape != negatives.shape:  # the kernel reads both row by row, unchecked
        raise ValueError(f"engaged {engaged.shape} and negatives {negatives.shape} differ in shape")
    parts = []
    for m in (engaged, negatives):
        m = m.tocsr()
        if not m.has_canonical_format:
            m = m.copy()
            m.sum_duplicates()
        parts += [m.indptr.astype(np.int64, copy=False), m.indices.astype(np.int32, copy=False), m.data]
    return _seen(*parts)
