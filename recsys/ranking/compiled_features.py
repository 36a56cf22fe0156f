"""The learned ranker's feature rows filled in one compiled pass (numba).

The registry (:mod:`recsys.ranking.features`) defines each feature by a
NumPy function over a block of (user, candidate) pairs. Computed feature by
feature, a block's rows cost dozens of array passes with their temporaries;
a single call spent more time in their fixed costs than in the trees. Here
one loop visits each requested row once and writes its whole feature row,
reading what the registry's functions read:

* ``PLANE``: a value the NumPy side computed for the block -- a blend term
  (the scoring kernel's), or a feature with no compiled form (co-engagement,
  the latent taste, the topic and format rates, newcomer popularity);
* ``ITEM``: a feature of the item alone, from a table of every catalogue item
  computed once per serving state by the feature's own function;
* ``USER``: a feature of the user alone, computed per user of the block by
  the feature's own function;
* ``LEVEL``: a popularity share at one half-life and level, per 1,000, read
  at the user's level rows from a copy of the bundle's table laid out as
  (level row, item, half-life), in a second pass over the rows. The bundle's
  (half-life, level row, item) layout put a pair's sixteen values in sixteen
  cache lines, and inside the one loop over every column those misses
  barely overlapped: they were ~80% of a 150-user block's pass (1M x 50k
  bundle, 2026-12-02). The copy puts them in four lines, and a loop that does
  nothing else keeps many in flight: the whole pass ~2x faster. The copy
  costs what the table does (60 level rows x 50k items x 4 half-lives: 48 MB,
  private to each serving process that uses the learned ranker, where the
  memory-mapped table is shared; made once per state, while it loads);
* ``AGE``: the item's age in days (NaN without a publish time);
* ``ENGAGEMENT``: the engagement model's four terms plus the taste term;
* ``DOT``: the raw collaborative inner product ``u . v``;
* ``COENGAGEMENT``: the summed co-engagement of the candidate with the
  user's recent positive items (their distinct items in ascending order, each
  count x cosine added in that order: the sparse product's own sums).

Every value is the registry function's own bits: the same float32 (or
float64, then rounded) operations in the same order -- the dot product in
``np.einsum``'s order (:func:`recsys.ranking.compiled_scoring.einsum_dot`).
The trees split on these values, so a changed bit could change a list; the
tests compare every feature with the registry's function.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from recsys.ranking.compiled_scoring import einsum_dot, frozen

#: what a column reads (``code`` per feature column)
NONE, PLANE, ITEM, USER, LEVEL, AGE, ENGAGEMENT, DOT, COENGAGEMENT = range(9)
#: nanoseconds per day (the registry's ``_item_age`` divides by it)
_NS_PER_DAY = 86_400 * 10**9


@numba.njit(cache=True, nogil=True, inline="always")
def _coengagement(item: int, seeds: np.ndarray, u: int, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray) -> np.float32:
    """``sum_s count_s x cosine(s, item)`` over the user's distinct seeds ``s`` ascending (``seeds[u]``
    sorted, -1 padding first), float32 from 0; a seed's neighbours are sorted by item."""
    acc = np.float32(0.0)
    n = seeds.shape[1]
    k = 0
    while k < n:
        seed = seeds[u, k]
        count = 1
        while k + count < n and seeds[u, k + count] == seed:
            count += 1
        k += count
        if seed < 0:
            continue
        lo, hi = indptr[seed], indptr[seed + 1]
        while lo < hi:  # the first neighbour >= item
            mid = (lo + hi) // 2
            if indices[mid] < item:
                lo = mid + 1
            else:
                hi = mid
        if lo < indptr[seed + 1] and indices[lo] == item:
            acc = acc + np.float32(count) * data[lo]
    return acc


@numba.njit(cache=True, nogil=True)
def _fill(
    out: np.ndarray,
    pos: np.ndarray,
    width: int,
    cand: np.ndarray,
    n_bundle: int,
    code: np.ndarray,
    arg: np.ndarray,
    sub: np.ndarray,
    planes: np.ndarray,
    item_vals: np.ndarray,
    user_vals: np.ndarray,
    levels: np.ndarray,
    level_cols: np.ndarray,
    level_hl: np.ndarray,
    level_at: np.ndarray,
    level_rows: np.ndarray,
    published: np.ndarray,
    ns_min: int,
    now_ns: int,
    engagement: np.ndarray,
    cf: np.ndarray,
    vectors: np.ndarray,
    seeds: np.ndarray,
    co_indptr: np.ndarray,
    co_indices: np.ndarray,
    co_data: np.ndarray,
) -> None:
    """Write the feature row of each requested pair (``pos``: flat positions in the (m, width) block)."""
    zero = np.float32(0.0)
    thousand = np.float32(1000.0)
    per_day = np.float64(_NS_PER_DAY)
    n_features = code.shape[0]
    for r in range(pos.shape[0]):
        p = pos[r]
        u = p // width
        item = max(cand[p], 0)  # padding reads item 0, as the registry's ``Block.safe`` does
        known = item < n_bundle
        for j in range(n_features):
            c = code[j]
            if c == PLANE:
                out[r, j] = planes[arg[j], p]
            elif c == ITEM:
                out[r, j] = item_vals[item, arg[j]]
            elif c == USER:
                out[r, j] = user_vals[u, arg[j]]
            elif c == AGE:
                pub = published[item]
                if pub == ns_min:
                    out[r, j] = np.float32(np.nan)
                else:
                    out[r, j] = np.float32(np.float64(now_ns - pub) / per_day)
            elif c == ENGAGEMENT:
                # (((quality + interest) + format) + timeliness) + taste, float32 left to right
                s = planes[engagement[0], p] + planes[engagement[1], p]
                s = s + planes[engagement[2], p]
                s = s + planes[engagement[3], p]
                out[r, j] = s + planes[engagement[4], p]
            elif c == DOT:
                out[r, j] = einsum_dot(cf[item], vectors[u])
            elif c == COENGAGEMENT:
                out[r, j] = _coengagement(item, seeds, u, co_indptr, co_indices, co_data) if known else zero
            elif c != LEVEL:
                out[r, j] = zero
    # the popularity columns in a pass of their own: a loop of independent loads keeps many of their
    # cache misses in flight, where the loop above, one branch per column, kept few
    n_levels = level_cols.shape[0]
    for r in range(pos.shape[0]):
        p = pos[r]
        u = p // width
        item = max(cand[p], 0)  # padding reads item 0 like the registry's gather
        if item < n_bundle:
            for q in range(n_levels):
                # the registry's float32 share x 1000 (``_per_thousand``)
                out[r, level_cols[q]] = levels[level_rows[level_at[q], u], item, level_hl[q]] * thousand
        else:
            for q in range(n_levels):
                out[r, level_cols[q]] = zero  # an item new to the catalogue


class Static(NamedTuple):
    """A plan's arrays that do not change between calls, cast once (:func:`static`)."""

    n_bundle: int
    code: np.ndarray
    arg: np.ndarray
    sub: np.ndarray
    item_vals: np.ndarray
    #: the popularity shares as (level row, item, half-life): a pair's values in four cache lines
    levels: np.ndarray
    #: the ``LEVEL`` columns, and each one's half-life and level (a ``LEVELS`` position)
    level_cols: np.ndarray
    level_hl: np.ndarray
    level_at: np.ndarray
    published: np.ndarray
    ns_min: int
    engagement: np.ndarray
    cf: np.ndarray
    co_indptr: np.ndarray
    co_indices: np.ndarray
    co_data: np.ndarray


def static(
    n_bundle: int, code: np.ndarray, arg: np.ndarray, sub: np.ndarray, item_vals: np.ndarray, levels: np.ndarray, published: np.ndarray,
    ns_min: int, engagement: np.ndarray, cf: np.ndarray, co_indptr: np.ndarray, co_indices: np.ndarray, co_data: np.ndarray,
) -> Static:
    """The fixed inputs of :func:`fill`, cast to the kernel's types once.

    Parameters
    ----------
    n_bundle : int
        Items the bundle knows; later catalogue items read 0 from co-engagement.
    code, arg, sub : ndarray, shape (n_features,)
        What each column reads (the module's codes) and where (``LEVEL``: the half-life ``arg`` at the
        level ``sub``, a ``LEVELS`` position).
    item_vals : ndarray of float32, shape (n_items, a)
    levels : ndarray of float32, shape (half-lives, level rows, n_bundle)
        The popularity shares (``Signals.popularity_levels``); copied as (level row, item,
        half-life) when a column reads them.
    published : ndarray of int64, shape (n_items,)
    ns_min : int
        "No publish time".
    engagement : ndarray of int64, shape (5,)
        Planes of the engagement model's quality, interest, format and timeliness terms and the taste term.
    cf : ndarray of float32, shape (n_items, f)
    co_indptr, co_indices, co_data : ndarray
        The co-engagement matrix (CSR over bundle items, each row's items sorted; float32 cosines).
    """
    code = frozen(code, np.int8)
    level_cols = np.flatnonzero(code == LEVEL)
    # the copy only when a column reads it: it costs what the table does
    by_item = np.ascontiguousarray(np.asarray(levels, np.float32).transpose(1, 2, 0)) if len(level_cols) else np.zeros((1, 1, 1), np.float32)
    by_item.flags.writeable = False
    return Static(
        int(n_bundle), code, frozen(arg, np.int64), frozen(sub, np.int64), frozen(item_vals, np.float32),
        by_item, frozen(level_cols, np.int64), frozen(np.asarray(arg)[level_cols], np.int64),
        frozen(np.asarray(sub)[level_cols], np.int64), frozen(published, np.int64), int(ns_min), frozen(engagement, np.int64),
        frozen(cf, np.float32), frozen(co_indptr, np.int64), frozen(co_indices, np.int32), frozen(co_data, np.float32),
    )


def fill(
    out: np.ndarray,
    pos: np.ndarray,
    cand: np.ndarray,
    fixed: Static,
    planes: np.ndarray,
    user_vals: np.ndarray,
    level_rows: np.ndarray,
    now_ns: int,
    vectors: np.ndarray,
    seeds: np.ndarray,
) -> np.ndarray:
    """Fill ``out`` (n, n_features) float32 with the feature rows of the pairs at ``pos``.

    Parameters
    ----------
    out : ndarray of float32, shape (n, n_features), C-ordered
        Written in place (every column: unused ones get 0) and returned.
    pos : ndarray of int64, shape (n,)
        Flat positions of the pairs in the (m, c) block.
    cand : ndarray of int64, shape (m, c)
        The block's candidates (-1 padding reads item 0).
    fixed : Static
    planes : ndarray of float32, shape (k, m * c)
        Values computed for the whole block (``PLANE`` columns, the engagement terms).
    user_vals : ndarray of float32, shape (m, b)
    level_rows : ndarray of int64, shape (4, m)
        Each user's row of the popularity table at every level
        (:attr:`~recsys.ranking.features.Block.level_rows`).
    now_ns : int
        The request's time (UTC nanoseconds).
    vectors : ndarray of float32, shape (m, f)
    seeds : ndarray of int64, shape (m, r)
        Each user's recent positive items, sorted ascending (-1 padding first).

    Returns
    -------
    ndarray of float32, shape (n, n_features)
    """
    n_features = len(fixed.code)
    if out.dtype != np.float32 or not out.flags.c_contiguous or out.shape != (len(pos), n_features):
        raise ValueError(f"feature rows need a C-ordered float32 ({len(pos)}, {n_features}) array, got {out.dtype} {out.shape}")
    if len(pos):
        _fill(
            out, frozen(pos, np.int64), cand.shape[1], frozen(cand, np.int64).reshape(-1), fixed.n_bundle,
            fixed.code, fixed.arg, fixed.sub, frozen(planes, np.float32), fixed.item_vals, frozen(user_vals, np.float32),
            fixed.levels, fixed.level_cols, fixed.level_hl, fixed.level_at, frozen(level_rows, np.int64), fixed.published,
            fixed.ns_min, int(now_ns), fixed.engagement, fixed.cf,
            frozen(vectors, np.float32), frozen(seeds, np.int64), fixed.co_indptr, fixed.co_indices, fixed.co_data,
        )
    return out


def warm() -> None:
    """Load the kernel now (or compile it), with the types :func:`fill` passes: a serving state calls
    this while it loads, so that no request pays the cache lookup."""
    f2, i2 = np.zeros((1, 1), np.float32), np.zeros((1, 1), np.int64)
    i1 = np.zeros(2, np.int64)
    fixed = static(1, np.zeros(1, np.int8), i1[:1], i1[:1], f2, np.zeros((1, 1, 1), np.float32), i1, 0, np.zeros(5, np.int64), f2, i1,
                   np.zeros(1, np.int32), np.zeros(1, np.float32))
    fill(np.zeros((1, 1), np.float32), i1[:1], i2, fixed, f2, f2, i2, 0, f2, i2)
