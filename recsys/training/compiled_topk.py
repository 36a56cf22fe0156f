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
"""

from __future__ import annotations

import numba
import numpy as np

_LOW = np.uint64(0xFFFFFFFF)


@numba.njit(cache=True, nogil=True)
def _keys(s: np.ndarray, kth: np.ndarray, k: int) -> np.ndarray:
    b, width = s.shape
    keys = np.empty((b, k), np.uint64)
    one = np.empty(1, np.float32)
    bits = one.view(np.uint32)
    sign = np.uint32(31)
    flip = np.uint32(0x7FFFFFFF)
    high = np.uint64(32)
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
                # + 0.0 turns -0.0 into +0.0 (equal scores, equal keys); a positive score's
                # magnitude bits are inverted, a negative's kept: a better score, a smaller key
                one[0] = v + np.float32(0.0)
                u = bits[0]
                keys[r, n] = (np.uint64(u if u >> sign else u ^ flip) << high) | np.uint64(j)
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


def warm() -> None:
    """Load the kernel now (or compile it), on the dtypes :func:`top_k_rows` passes."""
    top_k_rows(np.zeros((1, 2), np.float32), 1)
