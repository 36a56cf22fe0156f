"""A compiled top-k per row of a score matrix: the ``k`` best columns, best first, ties by column.

The index's exact searches (:mod:`recsys.training.index`) score a block of
queries against many rows by one GEMM, then keep each query's best ``k``. With
NumPy's index partition and stable sort of the kept scores, that cost about
five times the GEMM at the city's capped head (2,048 columns, ~150 kept). Here:

* each row's ``k``-th best score by NumPy's *value* partition (SIMD; about a
  third of the index partition's time),
* one compiled pass per row that keeps the scores above it and, of those
  equal to it, the lowest columns, each as one 64-bit key: the score's bits
  mapped so that a better score is a smaller number, above the column,
* NumPy's sort of those keys (SIMD for unsigned integers): the columns come
  out best first, ties by column, with no stable sort and no gathers but the
  scores' own.

Comparison work only: the result is the exact top ``k`` under the order the
index documents (higher score first, then lower column).

:func:`top_at_least` is the uncapped pruned search's top-k: the query's
scores against the head and against the rows its norm bound adds, read as one
row without concatenating them, keeping the scores that reach the head's
``k``-th best as the same keys.
"""

from __future__ import annotations

import numba
import numpy as np

_LOW = np.uint64(0xFFFFFFFF)


@numba.njit(cache=True, nogil=True)
def _key(one: np.ndarray, bits: np.ndarray, v: np.float32, j: int) -> np.uint64:
    # ``one`` and ``bits`` are one float32 and its uint32 view, allocated once per call (an
    # allocation per kept score cost more than the scan). + 0.0 turns -0.0 into +0.0 (equal scores,
    # equal keys); a positive score's magnitude bits are inverted, a negative's kept: a better
    # score, a smaller key; the column below
    one[0] = v + np.float32(0.0)
    u = bits[0]
    return (np.uint64(u if u >> np.uint32(31) else u ^ np.uint32(0x7FFFFFFF)) << np.uint64(32)) | np.uint64(j)


@numba.njit(cache=True, nogil=True)
def _keys(s: np.ndarray, kth: np.ndarray, k: int) -> np.ndarray:
    b, width = s.shape
    keys = np.empty((b, k), np.uint64)
    one = np.empty(1, np.float32)
    bits = one.view(np.uint32)
    for r in range(b):
        row = s[r]
        cut = kth[r]
        above = 0
        for j in range(width):
            if row[j] > cut:
                above += 1
        ties = k - above  # the columns equal to the k-th best that fit, lowest first
        n = 0
        for j in range(width):
            v = row[j]
            if v > cut or (v == cut and ties > 0):
                if not v > cut:
                    ties -= 1
                keys[r, n] = _key(one, bits, v, j)
                n += 1
                if n == k:  # never past the row's k slots, whatever ``kth`` holds
                    break
        if n < k:  # a NaN compares false with everything: fewer than k scores were kept
            return keys, r
    return keys, -1


def top_k_rows(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best columns of each row of ``s`` and their scores, best first, ties by column.

    Parameters
    ----------
    s : ndarray, float32 (b, width)
        Scores, no NaN (infinities are ordered as numbers), ``width < 2**32``.
    k : int
        ``1 <= k <= width``.

    Returns
    -------
    vals : ndarray, float32 (b, k)
        The scores, as they are in ``s``.
    cols : ndarray, int64 (b, k)

    Raises
    ------
    ValueError
        If ``s`` is not 2-d or ``k`` is outside ``1 .. width``.
    """
    s = np.ascontiguousarray(s, dtype=np.float32)
    if s.ndim != 2 or not 1 <= k <= s.shape[1]:
        raise ValueError(f"top_k_rows needs a 2-d array and 1 <= k <= {s.shape[-1] if s.ndim else 0}, got k={k}")
    width = s.shape[1]
    kth = np.ascontiguousarray(np.partition(s, width - k, axis=1)[:, width - k])
    if not s.flags.writeable:  # one compiled signature: a read-only array would compile another
        s = s.copy()
    keys, short = _keys(s, kth, int(k))
    if short >= 0:
        raise ValueError(f"top_k_rows: row {short} has NaN scores")
    keys.sort(axis=1)
    cols = (keys & _LOW).astype(np.int64)
    return np.take_along_axis(s, cols, axis=1), cols


@numba.njit(cache=True, nogil=True)
def _keys_at_least(
    head: np.ndarray, who: np.ndarray, rest: np.ndarray, bound: np.ndarray, limit: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    b = who.size
    n_head = head.shape[1]
    # first pass: how many scores of each row reach its bound (sizes the key block)
    count = np.zeros(b, np.int64)
    for r in range(b):
        h = head[who[r]]
        c = 0
        cut = bound[r]
        for j in range(n_head):
            if h[j] >= cut:
                c += 1
        for j in range(min(limit[r], rest.shape[1])):
            if rest[r, j] >= cut:
                c += 1
        count[r] = c
    width = count.max() if b else 0
    keys = np.full((b, width), np.uint64(0xFFFFFFFFFFFFFFFF))  # padding sorts last
    one = np.empty(1, np.float32)
    bits = one.view(np.uint32)
    for r in range(b):
        h = head[who[r]]
        cut = bound[r]
        n = 0
        for j in range(n_head):
            if h[j] >= cut:
                keys[r, n] = _key(one, bits, h[j], j)
                n += 1
        for j in range(min(limit[r], rest.shape[1])):
            if rest[r, j] >= cut:
                keys[r, n] = _key(one, bits, rest[r, j], n_head + j)
                n += 1
    return keys, count


@numba.njit(cache=True, nogil=True)
def _decode(keys: np.ndarray, head: np.ndarray, who: np.ndarray, rest: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    b = who.size
    n_head = head.shape[1]
    vals = np.empty((b, k), np.float32)
    cols = np.empty((b, k), np.int64)
    for r in range(b):
        for i in range(k):
            j = np.int64(keys[r, i] & np.uint64(0xFFFFFFFF))
            cols[r, i] = j
            vals[r, i] = head[who[r], j] if j < n_head else rest[r, j - n_head]
    return vals, cols


def top_at_least(
    head: np.ndarray, who: np.ndarray, rest: np.ndarray, bound: np.ndarray, k: int, limit: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best columns of rows laid end to end from two score blocks, best first, ties by column,
    knowing each row has at least ``k`` scores ``>= bound``.

    Row ``r`` is ``head[who[r]]`` followed by ``rest[r]`` (the columns of
    ``rest`` numbered after the head's): the exact pruned search's scores of
    a query against the largest rows (computed once for a block of queries)
    and against the rows its norm bound adds. The top ``k`` are among the
    scores ``>= bound``, a few hundred of thousands: one compiled pass counts
    them, one keeps each as a 64-bit (score, column) key (as
    :func:`top_k_rows`), NumPy partitions the keys at the ``k``-th and sorts
    the first ``k`` (SIMD), and they are read back. The two blocks are never
    concatenated.

    Parameters
    ----------
    head : ndarray, float32 (h_rows, n_head)
    who : ndarray, int64 (b,)
        Each row's row of ``head``.
    rest : ndarray, float32 (b, n_rest)
    bound : ndarray, float32 (b,)
        A score at least ``k`` of each row's scores reach (no NaN anywhere).
    k : int
    limit : ndarray, int64 (b,), optional
        Read only each row's first ``limit[r]`` columns of ``rest`` (default: all): the
        pruned search's own cut of a query, past which no score reaches its bound (a block
        of queries is scored up to its largest cut).

    Returns
    -------
    vals : ndarray, float32 (b, k)
        The scores, as they are in the blocks.
    cols : ndarray, int64 (b, k)

    Raises
    ------
    ValueError
        If a row has fewer than ``k`` scores ``>= bound`` (a wrong bound, or NaN).
    """
    head = np.ascontiguousarray(head, dtype=np.float32)
    rest = np.ascontiguousarray(rest, dtype=np.float32)
    if not head.flags.writeable:  # one compiled signature (see top_k_rows)
        head = head.copy()
    if not rest.flags.writeable:
        rest = rest.copy()
    who = np.ascontiguousarray(who, dtype=np.int64)
    bound = np.ascontiguousarray(bound, dtype=np.float32)
    limit = np.full(who.size, rest.shape[1], np.int64) if limit is None else np.ascontiguousarray(limit, dtype=np.int64)
    # the kernels read without bounds checks: shapes that do not belong together are refused here
    if head.ndim != 2 or rest.ndim != 2 or not rest.shape[0] == who.size == bound.size == limit.size:
        raise ValueError(
            f"top_at_least: head {head.shape} and rest {rest.shape} must be 2-d, with one rest row, "
            f"bound and limit per who ({who.size}, {bound.size}, {limit.size})"
        )
    if who.size and (int(who.min()) < 0 or int(who.max()) >= head.shape[0]):
        raise ValueError(f"top_at_least: who must index head's {head.shape[0]} rows")
    if k < 1 or head.shape[1] + rest.shape[1] >= 2**32:
        raise ValueError(f"top_at_least: k must be >= 1 and the columns fewer than 2**32, got k={k}")
    keys, count = _keys_at_least(head, who, rest, bound, limit)
    if who.size and int(count.min()) < k:
        raise ValueError(f"top_at_least: row {int(np.argmin(count))} has fewer than k={k} scores >= its bound")
    if keys.shape[1] > k:
        # only the k smallest keys are read: NumPy's partition (SIMD) finds them, then only they are
        # sorted (64 rows of 300 keys 0.12 -> 0.09 ms; of 12,000 8.5 -> 2.0 ms: a weak bound, <= 0,
        # keeps nearly every score of its query); the keys are distinct, so the result is the same
        keys = np.sort(np.partition(keys, k - 1, axis=1)[:, :k], axis=1)
    else:
        keys.sort(axis=1)
    return _decode(keys, head, who, rest, int(k))


def warm() -> None:
    """Load the kernels now (or compile them), on the dtypes :func:`top_k_rows` and :func:`top_at_least` pass."""
    top_k_rows(np.zeros((1, 2), np.float32), 1)
    top_at_least(np.zeros((1, 2), np.float32), np.zeros(1, np.int64), np.zeros((1, 1), np.float32), np.zeros(1, np.float32), 1)
