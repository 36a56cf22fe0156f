"""Compiled (numba) per-group sums of the training: each row added into its group's sum where it lies.

Two steps of the training sum rows of per-user tables by group:

- the user cold start (:class:`~recsys.training.coldstart.UserColdStart`) takes the
  mean factors of the warm users of every (group, sub-group, region) segment, every
  (group, region) and every group, and of all of them. In NumPy each mean gathered
  its users' rows into a copy first (at the city, three levels of 2.9M rows of 64
  float32: ~2.2 GB copied, plus a stable sort per level to find each segment's rows);
- the topic profiles (:class:`~recsys.training.profiles.TopicProfiles`) add each
  engaged user's topic distribution into its segment's sum (``np.add.at``, which
  NumPy runs as a slow generic loop: ~1.7 s over the city's users).

The sums are NumPy's to the bit: ``x[rows].mean(axis=0, dtype=np.float64)`` of a
C-ordered array adds the rows one after the other, in row order, into a float64
accumulator per column and divides by the count, and ``np.add.at`` adds its rows in
index order; the kernels add in the same order and divide the same way (the tests
hold them to ``array_equal`` against those references). Inputs are float32 (the
factors, the profiles) or float64 (a caller's float64 table): one compiled
signature each, never a cast of a 0.8 GB table.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp


@numba.njit(cache=True, nogil=True)
def _group_means(x: np.ndarray, rows: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    width = x.shape[1]
    sums = np.zeros((n_groups, width), dtype=np.float64)
    counts = np.zeros(n_groups, dtype=np.int64)
    for k in range(rows.shape[0]):
        g = groups[k]
        r = rows[k]
        counts[g] += 1
        for j in range(width):
            sums[g, j] += x[r, j]
    for g in range(n_groups):
        for j in range(width):
            sums[g, j] = sums[g, j] / counts[g]
    return sums


@numba.njit(cache=True, nogil=True)
def _blocked_mean(x: np.ndarray, rows: np.ndarray, block: int) -> np.ndarray:
    width = x.shape[1]
    total = np.zeros(width, dtype=np.float64)
    part = np.empty(width, dtype=np.float64)
    for start in range(0, rows.shape[0], block):
        part[:] = 0.0
        for k in range(start, min(start + block, rows.shape[0])):
            r = rows[k]
            for j in range(width):
                part[j] += x[r, j]
        for j in range(width):
            total[j] += part[j]
    for j in range(width):
        total[j] = total[j] / rows.shape[0]
    return total


@numba.njit(cache=True, nogil=True)
def _add_rows_at(target: np.ndarray, groups: np.ndarray, values: np.ndarray, keep: np.ndarray) -> None:
    width = target.shape[1]
    for k in range(groups.shape[0]):
        if keep[k]:
            g = groups[k]
            for j in range(width):
                target[g, j] += values[k, j]


@numba.njit(cache=True, nogil=True)
def _sparse_group_sums(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, groups: np.ndarray, n_groups: int, n_cols: int
) -> np.ndarray:
    out = np.zeros((n_groups, n_cols), dtype=np.float32)
    for r in range(indptr.shape[0] - 1):
        g = groups[r]
        for k in range(indptr[r], indptr[r + 1]):
            out[g, indices[k]] += data[k]
    return out


def sparse_group_sums(matrix: sp.csr_matrix, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Each group's sum of the rows of a float32 CSR matrix, float32 dense ``(n_groups, n_cols)``.

    The sums of ``membership @ matrix`` (a 0/1 group-by-row CSR matrix, SciPy's float32
    product: each column's values added in row order into a float32 sum) to the bit, without
    the membership matrix, the sparse product and its densifying.
    """
    m = matrix.tocsr()
    groups = np.asarray(groups, dtype=np.int64)
    # the kernel writes out[groups[r]] unchecked: rows and groups that do not belong together are refused
    if groups.shape != (m.shape[0],) or (groups.size and (int(groups.min()) < 0 or int(groups.max()) >= n_groups)):
        raise ValueError(f"sparse_group_sums: one group in [0, {n_groups}) per row of a {m.shape} matrix, got {groups.shape}")
    # the matrix's own index arrays (SciPy's int32 at the city's sizes): no widened copy of the whole table
    return _sparse_group_sums(
        m.indptr, m.indices, np.asarray(m.data, dtype=np.float32), groups, int(n_groups), int(m.shape[1]),
    )


def add_rows_at(target: np.ndarray, groups: np.ndarray, values: np.ndarray, keep: np.ndarray) -> None:
    """Add ``values[k]`` into ``target[groups[k]]`` for every ``k`` with ``keep[k]``, in ``k`` order, in place.

    ``np.add.at(target, groups[keep], values[keep])`` to the bit, without the copies
    and NumPy's generic loop. ``target`` is float64 C-ordered ``(n_groups, width)``,
    ``values`` float64 ``(m, width)``, ``groups`` int ``(m,)`` in ``[0, n_groups)``,
    ``keep`` bool ``(m,)``.
    """
    if target.dtype != np.float64 or not target.flags.c_contiguous:
        raise ValueError("add_rows_at: target must be a C-ordered float64 array (it is written in place)")
    _add_rows_at(
        target, np.asarray(groups, dtype=np.int64), np.ascontiguousarray(values, dtype=np.float64),
        np.asarray(keep, dtype=np.bool_),
    )


def group_means(x: np.ndarray, rows: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Mean of ``x``'s rows ``rows`` per group, float64 ``(n_groups, width)``.

    Parameters
    ----------
    x : ndarray, float32 or float64 (n, width)
        The rows (e.g. user factors).
    rows : ndarray of int (m,)
        The rows that count, ascending (each group's rows are summed in this order).
    groups : ndarray of int (m,)
        Each counted row's group, in ``[0, n_groups)``; every group has a row.
    n_groups : int

    Returns
    -------
    ndarray, float64 (n_groups, width)
        Row g equals ``x[rows[groups == g]].mean(axis=0, dtype=np.float64)`` bit for bit.
    """
    return _group_means(_c(x), np.asarray(rows, dtype=np.int64), np.asarray(groups, dtype=np.int64), int(n_groups))


def blocked_mean(x: np.ndarray, rows: np.ndarray, block: int) -> np.ndarray:
    """Mean of ``x``'s rows ``rows`` summed ``block`` rows at a time, float64 ``(width,)``.

    Equals, bit for bit, the sum over blocks of ``x[rows[b:b + block]].sum(axis=0,
    dtype=np.float64)`` (added in block order) divided by ``len(rows)``.
    """
    return _blocked_mean(_c(x), np.asarray(rows, dtype=np.int64), int(block))


def _c(x: np.ndarray) -> np.ndarray:
    # one compiled signature per input dtype (float32 factors and topics; float64 when a caller passes it)
    return np.ascontiguousarray(x)
