"""Compiled kernels of a block's candidate selection: the merge of the sources, the co-engaged
candidates, the learned ranker's first pass and the diversity walk.

Each is a per-row loop that NumPy can only express as whole-block sorts and
masks, or as a Python loop per user (the walk): compiled with numba, a row
costs what its own items cost. They are integer and comparison work, so
their output is identical to the rules they compile (the co-engagement sums
are added in the sparse product's own order, so they carry its bits).

The wrappers cast their inputs once to the dtypes the kernels are compiled
for (int64 items and offsets, int32 neighbour indices, float32 scores), so
one machine-code version serves every caller; numba caches it on disk
(``cache=True``), and a process loads it on its first call.
"""

from __future__ import annotations

import threading

import numba
import numpy as np

from recsys.ranking.compiled_scoring import frozen


@numba.njit(cache=True, nogil=True)
def _padded(m: int, n: int) -> np.ndarray:
    """An (m, n) int64 array of -1 (numba's ``np.full`` fills element by element through an index
    iterator: several times slower)."""
    out = np.empty((m, n), np.int64)
    out.ravel()[:] = -1
    return out


# ---- per-thread scratch -----------------------------------------------------------------------

_local = threading.local()


def _scratch(n_items: int, rows: int) -> tuple[np.ndarray, np.ndarray, int]:
    """This thread's scratch over ``n_items`` items: a float32 array and an int64 array of stamps,
    reused by every call, and the stamp base reserved for ``rows`` rows.

    A kernel marks item ``j`` for row ``r`` by ``stamps[j] = base + r + 1``: values from earlier
    calls (or rows) are all smaller, so nothing is cleared between calls, and a single call does
    not fill arrays of the catalogue's size (~0.6 MB at 50k items) before its few dozen reads.
    """
    held = getattr(_local, "held", None)
    if held is None or held[0].shape[0] < n_items:
        # grown, never shrunk: the co-engagement matrix (the bundle's items) and the catalogue
        # (new items too) differ in size, and each call's kernel reads only its first n_items
        held = [np.zeros(n_items, np.float32), np.zeros(n_items, np.int64), 0]
        _local.held = held
    base = held[2]
    held[2] = base + rows
    return held[0][:n_items], held[1][:n_items], base


def _offsets(indptr: np.ndarray) -> np.ndarray:
    """``indptr`` as int64, converted once per thread and array: a bundle's co-engagement offsets
    are int32, and converting 50k of them costs a single call more than its kernel."""
    if indptr.dtype == np.int64:
        return frozen(indptr, np.int64)
    held = getattr(_local, "offsets", None)
    if held is None or held[0] is not indptr:  # the source is held: its id cannot be reused meanwhile
        held = (indptr, frozen(indptr, np.int64))
        _local.offsets = held
    return held[1]


def warm() -> None:
    """Load every kernel now (or compile it), on inputs of the dtypes and layouts the wrappers pass.

    A process's first call of a numba kernel pays numba's start (0.3-0.5 s with the on-disk
    cache); a serving state calls this while it loads, so that neither the first request nor
    the first block of a push pays it.
    """
    merge_rows(np.array([[1, 0, 1, -1]], np.int64))
    allowed_top(np.zeros((2, 1), np.float32), np.array([1]), np.array([0]), np.zeros(1, np.int64), np.ones(1, np.int64), 0, 1)
    coengaged_top(np.array([0, 1, 1]), np.array([1], np.int32), np.ones(1, np.float32), np.array([[0, 0]]), 1)
    first_pass(np.zeros((1, 2), np.float32), np.zeros((1, 2), np.float32), np.ones((1, 2), bool), 1, 1)
    diverse_top(
        np.array([[0, 1]]), np.array([[1, 0]], np.float32), np.zeros(2, np.int64), 1, 1,
        np.array([0, 1, 2]), np.array([1, 0], np.int32), 1,
    )


# ---- the merge -------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _merge(own: np.ndarray, shared: np.ndarray, which: np.ndarray) -> np.ndarray:
    m, c = own.shape
    lo = np.int64(0)
    hi = np.int64(-1)
    for r in range(m):
        for j in range(c):
            v = own[r, j]
            if v >= 0:
                if hi < 0 or v < lo:
                    lo = v
                hi = max(hi, v)
    for r in range(shared.shape[0]):
        for j in range(shared.shape[1]):
            v = shared[r, j]
            if v >= 0:
                if hi < 0 or v < lo:
                    lo = v
                hi = max(hi, v)
    if hi - lo >= np.int64(1) << 31:
        raise ValueError("candidate item indices span more than 2**31 items")
    passes = 0  # bytes of an item's offset from the block's smallest
    span = hi - lo
    while span > 0:
        passes += 1
        span >>= 8
    # Per row: repeats (and items of its shared list) dropped by a bitmap over the block's range
    # (an item whose bit was already set is not kept), the row's own distinct offsets sorted by an
    # LSD radix sort, one byte a pass (two passes for 50k items), then merged with the sorted
    # shared list. The bitmap and the radix passes are free of data-dependent branches, which
    # cost more here than the arithmetic: reading the bitmap back in order, or a comparison sort,
    # was slower. Offsets and bits are unsigned, so shifts and indices need no sign checks.
    bits = np.zeros(((hi - lo) >> 6) + 1, np.uint64)
    one, six, low, byte = np.uint64(1), np.uint64(6), np.uint64(63), np.uint64(255)
    flat = own.ravel()
    w = shared.shape[1]
    buf = np.empty((m, c + w), np.int64)
    counts = np.zeros(m, np.int64)
    a = np.empty(c + 1, np.uint64)  # one more for the merge's end mark
    b = np.empty(c + 1, np.uint64)
    sh = np.empty(w + 1, np.uint64)
    end = np.uint64(1) << np.uint64(63)  # above every offset
    slots = np.empty(256, np.int64)
    for r in range(m):
        srow = shared[which[r]]
        ns = 0
        while ns < w and srow[ns] >= 0:  # sorted and distinct, then -1
            o = np.uint64(srow[ns] - lo)
            bits[o >> six] |= one << (o & low)
            sh[ns] = o
            ns += 1
        sh[ns] = end
        row = flat[r * c : (r + 1) * c]
        n = 0
        for v in row:
            if v >= 0:
                o = np.uint64(v - lo)
                word = o >> six
                bit = one << (o & low)
                x = bits[word]
                a[n] = o  # kept only if new: the next item overwrites it otherwise
                n += (x & bit) == 0
                bits[word] = x | bit
        for q in range(ns):
            bits[sh[q] >> six] = 0
        for q in range(n):
            bits[a[q] >> six] = 0
        src, dst = a, b
        for p in range(passes):
            shift = np.uint64(8 * p)
            slots[:] = 0
            for q in range(n):
                slots[(src[q] >> shift) & byte] += 1
            total = 0
            for d in range(256):
                here = slots[d]
                slots[d] = total
                total += here
            for q in range(n):
                d = (src[q] >> shift) & byte
                dst[slots[d]] = src[q]
                slots[d] += 1
            src, dst = dst, src
        # the two ascending, disjoint lists merged, each ended by a mark above every offset (no
        # branch on which list gives the next item: that is a coin toss per item)
        src[n] = end
        kept = buf[r]
        i = 0
        j = 0
        for t in range(ns + n):
            x = sh[i]
            y = src[j]
            take = x < y
            kept[t] = np.int64(min(x, y)) + lo
            i += take
            j += not take
        counts[r] = ns + n
    out = _padded(m, counts.max() if m else 0)
    for r in range(m):
        out[r, : counts[r]] = buf[r, : counts[r]]
    return out


def merge_rows(cand: np.ndarray, shared: np.ndarray | None = None, which: np.ndarray | None = None) -> np.ndarray:
    """Each row's distinct non-negative items ascending, then -1 padding, cut to the longest row.

    Parameters
    ----------
    cand : ndarray of int, shape (m, c)
        Candidate item indices, -1 for padding.
    shared : ndarray of int, shape (s, w), optional
        Lists that many rows share, each ascending and distinct, then -1 padding (a
        :func:`merge_rows` output): row ``r`` is merged with ``shared[which[r]]``, as if those
        items were among its columns.
    which : ndarray of int, shape (m,), optional
        With ``shared``: each row's list.

    Returns
    -------
    ndarray of int64, shape (m, width)
    """
    cand = frozen(cand, np.int64)
    if shared is None:
        shared, which = np.zeros((1, 0), np.int64), np.zeros(cand.shape[0], np.int64)
    which = frozen(which, np.int64)
    if which.shape[0] != cand.shape[0] or (which.size and (which.min() < 0 or which.max() >= shared.shape[0])):
        raise ValueError(f"which must give each of the {cand.shape[0]} rows one of the {shared.shape[0]} shared lists")
    return _merge(cand, frozen(shared, np.int64), which)


# ---- the filtered search's top items ---------------------------------------------------------

_LOW32 = np.uint64(0xFFFFFFFF)


@numba.njit(cache=True, nogil=True)
def _allowed_top(
    bits: np.ndarray, rows: np.ndarray, ids: np.ndarray, published: np.ndarray, expires: np.ndarray,
    now: np.int64, n: int,
) -> np.ndarray:
    r_max = rows.shape[0]
    live = np.empty(r_max, np.bool_)
    count = 0
    for q in range(r_max):
        ok = (published[q] <= now) & (expires[q] > now)
        live[q] = ok
        count += ok
    n = min(n, count)
    m = bits.shape[1]
    out = np.empty((m, n), np.int64)
    # the n largest keys so far, each stored inverted in a max-heap: its root is the smallest kept
    # key, and a row that cannot enter (most of them, once the heap is full) costs one comparison
    if n == 0:
        return out
    # one heap per user, filled row by row: the scores are (rows, users), so each row's users are
    # read in order (a user-first loop read a new cache line per score for a block of users); each
    # user's heap still sees the same keys in the same order, so the result is the same
    heaps = np.empty((m, n), np.uint64)
    sizes = np.zeros(m, np.int64)
    sign, neg_zero, nan_from = np.uint32(0x80000000), np.uint32(0x80000000), np.uint32(0x7F800000)
    magnitude = np.uint32(0x7FFFFFFF)
    for q in range(r_max):
        if not live[q]:
            continue
        r = rows[q]
        low = _LOW32 - np.uint64(q)
        for u in range(m):
            b = bits[r, u]
            if b == neg_zero:
                b = np.uint32(0)  # -0.0 ties +0.0
            # a negative score's bits all flipped (the larger, the smaller its magnitude bits), a
            # positive one's sign bit set; without a branch (the sign is a coin toss per row)
            hi = b ^ ((np.uint32(0) - (b >> np.uint32(31))) | sign)
            if (b & magnitude) > nan_from:
                hi = np.uint32(0)  # NaN: below every number
            # the score's order in the high half; equal scores: the earlier row is larger
            inverted = ~((np.uint64(hi) << np.uint64(32)) | low)
            size = sizes[u]
            if size < n:
                heaps[u, size] = inverted
                size += 1
                sizes[u] = size
                if size == n:
                    heap = heaps[u]
                    for i in range(n // 2 - 1, -1, -1):
                        _sift_down(heap, n, i)
            elif inverted < heaps[u, 0]:
                heap = heaps[u]
                heap[0] = inverted
                _sift_down(heap, n, 0)
    for u in range(m):
        for t in range(n):
            out[u, t] = ids[np.int64(_LOW32 - (~heaps[u, t] & _LOW32))]
    return out


def allowed_top(
    scores: np.ndarray, rows: np.ndarray, ids: np.ndarray, published_ns: np.ndarray, expires_ns: np.ndarray,
    now_ns: int, n: int,
) -> np.ndarray:
    """Per user, the ``n`` items of best score among a filter's items live at ``now`` (unordered).

    One pass over the filter's rows per user, no masked copy of the scores: the exact
    filtered search of :mod:`recsys.ranking.candidates`.

    Parameters
    ----------
    scores : ndarray of float32, shape (total, m)
        Each user's score of every row of the filter's blocks, laid end to end (a column per user:
        the layout the blocks' products are written in).
    rows : ndarray of int64, shape (r,)
        The rows of ``scores`` that hold the filter's items; ``r < 2**32``.
    ids : ndarray of int64, shape (r,)
        Their item indices.
    published_ns, expires_ns : ndarray of int64, shape (r,)
        Their publish and expiry times: an item is live when published at or before ``now_ns``
        and expiring after it.
    now_ns : int
    n : int
        Items a user gets (fewer when fewer are live).

    Returns
    -------
    ndarray of int64, shape (m, min(n, live items))
        Item indices; at equal scores the earlier row goes first, a NaN score last.
    """
    if len(rows) >= 1 << 32:
        raise ValueError(f"{len(rows)} filter rows: at most 2**32 - 1")
    bits = frozen(scores, np.float32).view(np.uint32)
    return _allowed_top(
        bits, frozen(rows, np.int64), frozen(ids, np.int64), frozen(published_ns, np.int64),
        frozen(expires_ns, np.int64), np.int64(now_ns), int(n),
    )


# ---- co-engaged candidates -------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _select_largest(keys: np.ndarray, size: int, n: int) -> int:
    """Reorder ``keys[:size]`` (distinct) so that its ``n`` largest come last; return where they
    start (a quickselect: a few passes over a hundred keys, no sort)."""
    k = size - n
    if k <= 0:
        return 0
    lo, hi = 0, size - 1
    while lo < hi:
        mid = (lo + hi) >> 1
        a, b, c = keys[lo], keys[mid], keys[hi]
        pivot = max(min(a, b), min(max(a, b), c))  # the median of three
        i, j = lo, hi
        while i <= j:
            while keys[i] < pivot:
                i += 1
            while keys[j] > pivot:
                j -= 1
            if i <= j:
                keys[i], keys[j] = keys[j], keys[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return k


@numba.njit(cache=True, nogil=True)
def _coengaged(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, recent: np.ndarray, n: int,
    acc: np.ndarray, stamps: np.ndarray, base: int,
) -> np.ndarray:
    m, r_max = recent.shape
    n_items = indptr.shape[0] - 1
    out = _padded(m, n)
    # the most neighbours any user's seeds have together: every buffer is allocated once
    longest = 0
    for u in range(m):
        total = 0
        for q in range(r_max):
            v = recent[u, q]
            if v >= 0:
                if v >= n_items:
                    raise ValueError("a recent item lies outside the co-engagement matrix")
                total += indptr[v + 1] - indptr[v]
        longest = max(longest, total)
    items = np.empty(longest, np.int64)
    values = np.empty(longest, np.float32)
    keys = np.empty(longest, np.int64)
    seeds = np.empty(r_max, np.int64)
    for u in range(m):
        s = 0
        for q in range(r_max):
            if recent[u, q] >= 0:
                seeds[s] = recent[u, q]
                s += 1
        if s == 0:
            continue
        for q in range(1, s):  # a handful of seeds: an insertion sort
            v = seeds[q]
            i = q
            while i > 0 and seeds[i - 1] > v:
                seeds[i] = seeds[i - 1]
                i -= 1
            seeds[i] = v
        n_touched = 0
        mark = base + u + 1  # an item's sum is this user's once its stamp is this mark
        # distinct seeds ascending, each weighted by its repeats: the sparse product's own order
        q = 0
        while q < s:
            seed = seeds[q]
            times = 1
            while q + times < s and seeds[q + times] == seed:
                times += 1
            weight = np.float32(times)
            for p in range(indptr[seed], indptr[seed + 1]):
                j = np.int64(indices[p])
                if stamps[j] != mark:
                    stamps[j] = mark
                    acc[j] = np.float32(0)
                    items[n_touched] = j
                    n_touched += 1
                acc[j] += weight * data[p]
            q += times
        # the product drops exact zeros; the rest ordered by value, ties to the smaller item: one
        # int64 key each (a float's bits as a signed integer order positive floats; flipping a
        # negative's magnitude bits orders them all), the item's complement in the low half
        n_keys = 0
        for q in range(n_touched):
            j = items[q]
            if acc[j] != 0:
                values[n_keys] = acc[j]
                items[n_keys] = j
                n_keys += 1
        bits = values.view(np.int32)
        for q in range(n_keys):
            b = np.int64(bits[q])
            if b < 0:
                b = b ^ np.int64(0x7FFFFFFF)
            keys[q] = (b << 32) | (np.int64(0xFFFFFFFF) - items[q])
        start = _select_largest(keys, n_keys, n)
        for q in range(start, n_keys):
            out[u, q - start] = np.int64(0xFFFFFFFF) - (keys[q] & np.int64(0xFFFFFFFF))
    return out


def coengaged_top(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, recent: np.ndarray, n: int
) -> np.ndarray:
    """Per user, the ``n`` items of largest summed co-engagement with their recent items.

    A user's sums are those of the sparse product (their distinct recent items
    ascending, each weighted by its repeats, times each neighbour's value, in
    float32, added in that order); exact zeros are dropped, and at a tie the
    smaller item index goes first.

    Parameters
    ----------
    indptr, indices, data : ndarray
        The item-to-item co-engagement matrix (CSR, float32 values).
    recent : ndarray of int, shape (m, r)
        Each user's recent positive items, -1 padded.
    n : int

    Returns
    -------
    ndarray of int64, shape (m, n)
        Each user's items in no particular order (the merge sorts them), -1 padded.
    """
    recent = frozen(recent, np.int64)
    acc, stamps, base = _scratch(len(indptr) - 1, len(recent))
    return _coengaged(
        _offsets(indptr),
        frozen(indices, np.int32),
        frozen(data, np.float32),
        recent,
        int(n),
        acc,
        stamps,
        base,
    )


# ---- the learned ranker's first pass ---------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def _top_into(values: np.ndarray, ok: np.ndarray, r: int, n: int, scratch: np.ndarray, keep: np.ndarray) -> None:
    """Mark in ``keep`` the valid columns of row ``r`` among its ``n`` highest values (``core``'s rule:
    the n-th highest of the row with invalid columns at -inf; a value at it or above is kept, every
    valid one when it is not finite; ties may add a few)."""
    c = values.shape[1]
    if n <= 0 or c <= n:
        for j in range(c):
            keep[j] = keep[j] or ok[r, j]
        return
    for j in range(c):
        v = values[r, j]
        # a NaN as -inf: NumPy ranks it below -inf, and either one at the n-th place keeps every valid
        # column, so the n-th highest is the same number whenever it is finite
        scratch[j] = v if ok[r, j] and not np.isnan(v) else np.float32(-np.inf)
    kth = scratch[_select_largest(scratch, c, n)]
    finite = np.isfinite(kth)
    for j in range(c):
        if ok[r, j] and (values[r, j] >= kth or not finite):
            keep[j] = True


@numba.njit(cache=True, nogil=True)
def _first_pass(
    first: np.ndarray, second: np.ndarray, ok: np.ndarray, n_first: int, n_second: int,
) -> tuple[np.ndarray, np.ndarray]:
    m, c = ok.shape
    keep = np.zeros((m, c), np.bool_)
    scratch = np.empty(c, np.float32)
    width = 0
    for r in range(m):
        _top_into(first, ok, r, n_first, scratch, keep[r])
        _top_into(second, ok, r, n_second, scratch, keep[r])
        width = max(width, int(keep[r].sum()))
    pos = np.empty((m, width), np.int64)
    kept = np.zeros((m, width), np.bool_)
    for r in range(m):
        # the kept columns in order, then the others in order up to the block's width
        # (``np.argsort(~keep, kind="stable")``'s first ``width``)
        at = 0
        for j in range(c):
            if keep[r, j]:
                pos[r, at] = j
                kept[r, at] = True
                at += 1
        for j in range(c):
            if at == width:
                break
            if not keep[r, j]:
                pos[r, at] = j
                at += 1
    return pos, kept


def first_pass(
    first: np.ndarray, second: np.ndarray, ok: np.ndarray, n_first: int, n_second: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The learned ranker's first pass: per row the valid candidates among the ``n_first`` best by
    ``first`` or the ``n_second`` best by ``second``, gathered to the front.

    A candidate is among a row's ``n`` best when its value is at least the
    row's ``n``-th highest (invalid candidates count as -inf; ties may keep a
    few more); a row whose ``n``-th highest is not finite keeps every valid one.

    Parameters
    ----------
    first, second : ndarray of float32, shape (m, c)
    ok : ndarray of bool, shape (m, c)
        Valid candidates.
    n_first, n_second : int

    Returns
    -------
    pos : ndarray of int64, shape (m, w)
        Per row, the kept columns in order, then the others in order: ``w`` is
        the most any row keeps.
    kept : ndarray of bool, shape (m, w)
        Which of ``pos`` are kept.
    """
    return _first_pass(frozen(first, np.float32), frozen(second, np.float32), frozen(ok, np.bool_), int(n_first), int(n_second))


# ---- the diversity walk ----------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _sift_down(heap: np.ndarray, size: int, i: int) -> None:
    """Restore the max-heap ``heap[:size]`` below position ``i``."""
    while True:
        child = 2 * i + 1
        if child >= size:
            return
        if child + 1 < size and heap[child + 1] > heap[child]:
            child += 1
        if heap[child] <= heap[i]:
            return
        heap[i], heap[child] = heap[child], heap[i]
        i = child


@numba.njit(cache=True, nogil=True)
def _block(item: np.int64, nb_ptr: np.ndarray, nb_idx: np.ndarray, blocked: np.ndarray, mark: np.int64) -> None:
    for p in range(nb_ptr[item], nb_ptr[item + 1]):
        blocked[nb_idx[p]] = mark


@numba.njit(cache=True, nogil=True)
def _walk(
    cand: np.ndarray,
    score: np.ndarray,
    primary: np.ndarray,
    k: int,
    cap: int,
    nb_ptr: np.ndarray,
    nb_idx: np.ndarray,
    n_topics: int,
    blocked: np.ndarray,
    base: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m, c = cand.shape
    columns = _padded(m, k)
    count = np.zeros(m, np.int64)
    relaxed = np.zeros(m, np.bool_)
    n_items = primary.shape[0]
    per_topic = np.zeros(n_topics + 1, np.int64)
    heap = np.empty(c, np.int64)
    seq = np.empty(c, np.int64)  # the row's valid columns in score order, as far as walked
    deferred = np.empty(c, np.int64)  # positions in seq skipped only for the cap
    chosen = np.zeros(c, np.bool_)
    picked = np.empty(k, np.int64)  # positions in seq
    # each score's bits as a signed integer order positive floats; flipping a negative's magnitude
    # bits orders them all. -0.0 is read as 0.0: the two are equal scores, tied by column
    bits = score.view(np.int32)
    for r in range(m):
        size = 0
        row_bits = bits[r]
        row_items = cand[r]
        for j in range(c):
            b = np.int64(row_bits[j])
            # finite: the exponent bits are not all set (inf and NaN are not valid); no branch on it,
            # a third of a row is invalid in no order a branch could learn
            finite = (b & np.int64(0x7F800000)) != np.int64(0x7F800000)
            item = row_items[j]
            if finite and (item < 0 or item >= n_items):
                raise ValueError("a valid candidate's item lies outside the catalogue")
            b = b * (b != np.int64(-2147483648))  # -0.0 is 0.0
            b = b ^ ((b >> 63) & np.int64(0x7FFFFFFF))  # a negative's magnitude bits flipped
            # one int64 key: the score's order, then the smaller column (the order of a stable sort of -score)
            heap[size] = (b << 32) | (np.int64(0xFFFFFFFF) - j)
            size += finite
        # a heap gives the row in score order one item at a time: most lists fill within a few dozen
        for i in range(size // 2 - 1, -1, -1):
            _sift_down(heap, size, i)
        per_topic[:] = 0
        mark = np.int64(base + r + 1)  # an item is blocked for this row while its stamp is this mark
        n_seq = 0
        n_picked = 0
        n_deferred = 0
        # pass 1: best first, near-duplicates of a pick blocked, the topic cap deferring
        while size > 0 and n_picked < k:
            col = np.int64(0xFFFFFFFF) - (heap[0] & np.int64(0xFFFFFFFF))
            size -= 1
            heap[0] = heap[size]
            _sift_down(heap, size, 0)
            seq[n_seq] = col
            n_seq += 1
            item = cand[r, col]
            if blocked[item] == mark:
                continue
            topic = primary[item]
            if topic < 0 or topic > n_topics:
                raise ValueError("a primary topic lies outside 0..n_topics")
            if per_topic[topic] >= cap:
                deferred[n_deferred] = n_seq - 1
                n_deferred += 1
                continue
            picked[n_picked] = n_seq - 1
            n_picked += 1
            per_topic[topic] += 1
            _block(item, nb_ptr, nb_idx, blocked, mark)
        if n_picked < k:  # the whole row was walked
            # pass 2: the cap relaxed, in score order, just as far as the list needs
            for d in range(n_deferred):
                if n_picked == k:
                    break
                item = cand[r, seq[deferred[d]]]
                if blocked[item] == mark:
                    continue
                picked[n_picked] = deferred[d]
                n_picked += 1
                _block(item, nb_ptr, nb_idx, blocked, mark)
            if n_picked < k:
                # last resort: near-duplicates, best first, rather than a short list
                for q in range(n_picked):
                    chosen[picked[q]] = True
                before = n_picked
                for q in range(n_seq):
                    if n_picked == k:
                        break
                    if not chosen[q]:
                        picked[n_picked] = q
                        n_picked += 1
                        relaxed[r] = True
                for q in range(before):
                    chosen[picked[q]] = False
            picked[:n_picked].sort()
        for q in range(n_picked):
            columns[r, q] = seq[picked[q]]
        count[r] = n_picked
    return columns, count, relaxed


def diverse_top(
    cand: np.ndarray,
    score: np.ndarray,
    primary: np.ndarray,
    k: int,
    cap: int,
    neighbour_indptr: np.ndarray,
    neighbour_indices: np.ndarray,
    n_topics: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The greedy diverse top-k of each row (the rules of :mod:`recsys.ranking.diversity`).

    Parameters
    ----------
    cand : ndarray of int, shape (m, c)
        Candidate item indices.
    score : ndarray of float32, shape (m, c)
        Their scores; a non-finite score marks a candidate that may not be picked.
    primary : ndarray of int, shape (n_items,)
        Primary topic of each item, in ``0..n_topics``.
    k, cap : int
        List length, and the soft cap of picks per primary topic.
    neighbour_indptr, neighbour_indices : ndarray
        The near-duplicate graph over the ``n_items`` items (CSR).
    n_topics : int

    Returns
    -------
    columns : ndarray of int64, shape (m, k)
        Picked columns of ``cand``, best first, -1 padded.
    count : ndarray of int64, shape (m,)
    relaxed : ndarray of bool, shape (m,)
        Lists that needed near-duplicates to fill.
    """
    primary = frozen(primary, np.int64)
    if score.dtype != np.float32:  # a cast could merge or reorder scores: the caller's order must stand
        raise TypeError(f"scores must be float32, not {score.dtype}")
    if neighbour_indptr.shape[0] != primary.shape[0] + 1:
        raise ValueError(f"the near-duplicate graph has {neighbour_indptr.shape[0] - 1} items, the catalogue {primary.shape[0]}")
    cand = frozen(cand, np.int64)
    _, blocked, base = _scratch(primary.shape[0], cand.shape[0])
    return _walk(
        cand,
        frozen(score, np.float32),
        primary,
        int(k),
        int(cap),
        frozen(neighbour_indptr, np.int64),
        frozen(neighbour_indices, np.int32),
        int(n_topics),
        blocked,
        base,
    )
