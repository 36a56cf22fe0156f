"""Compiled kernels of the per-list scoring: the blend's terms, their weighted sum, and the masks.

The ranking scores each (user, candidate) pair of a block: nine terms
(:data:`recsys.ranking.scoring.TERMS`), their weighted sum, and the
eligibility and history masks that decide which pairs may be scored at all.
In NumPy each of those is a pass over (users x ~300 candidates) arrays with
its own temporaries; here one loop visits each pair once and skips the
ineligible ones.

The kernels keep the bits of the NumPy code they replace (the score is in
every pushed row):

* every term is the same float32 operation in the same order: products and
  sums of float32 values, the topic lists summed left to right, the clips
  as NumPy's (NaN kept, ``-0.0`` kept at a bound of 0);
* the collaborative dot product sums in the order of NumPy's ``einsum`` over
  contiguous float32 rows (the order :func:`einsum_dot` spells out);
* the blend adds the weighted terms left to right, skipping a zero weight.

Inputs are cast once at the boundary (:func:`frozen`): C-ordered read-only
arrays of fixed dtypes, so each kernel compiles one signature, cached on disk
(``cache=True``) and loaded by every worker of a push.
"""

from __future__ import annotations

import numba
import numpy as np

#: float32 lanes of NumPy's baseline SIMD (SSE, 128 bits), the lanes ``einsum`` sums in
EINSUM_LANES = 4
# einsum's inner loop takes four vectors of lanes per step, the last one first
_EINSUM_STEP = 4 * EINSUM_LANES
#: terms of the blend (``scoring.TERMS``), in the kernels' order
N_TERMS = 9


def frozen(a: np.ndarray, dtype: type) -> np.ndarray:
    """``a`` as a C-ordered, read-only ndarray of ``dtype`` (a view where no cast is needed).

    Every kernel input passes through here, so a memory-mapped bundle array, a
    cached (frozen) state array and a fresh test array all have the one type
    the kernel was compiled for.
    """
    if type(a) is np.ndarray and a.dtype == dtype and not a.flags.writeable and a.flags.c_contiguous:
        return a  # already what the kernels take (a catalogue array, a cached state array): ~0.3 of the view's cost
    out = np.ascontiguousarray(np.asarray(a), dtype=dtype).view(np.ndarray)
    out.flags.writeable = False
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _dot(x: np.ndarray, xo: numba.uint64, y: np.ndarray, yo: numba.uint64, n: int) -> np.float32:
    """``sum_f x[xo + f] * y[yo + f]`` over ``n`` floats of two flat float32 arrays, in einsum's order.

    Unsigned offsets: the compiled indexing has no negative-index branch.
    """
    a0 = a1 = a2 = a3 = np.float32(0.0)
    one, two, three, step = numba.uint64(1), numba.uint64(2), numba.uint64(3), numba.uint64(_EINSUM_STEP)
    end = numba.uint64(n)
    i = numba.uint64(0)
    while i + step <= end:
        for k in (numba.uint64(12), numba.uint64(8), numba.uint64(4), numba.uint64(0)):
            p, q = xo + i + k, yo + i + k
            a0 = a0 + x[p] * y[q]
            a1 = a1 + x[p + one] * y[q + one]
            a2 = a2 + x[p + two] * y[q + two]
            a3 = a3 + x[p + three] * y[q + three]
        i += step
    zero = np.float32(0.0)
    while i < end:
        # the tail vector is zero-filled: its missing lanes add 0 * 0
        p, q = xo + i, yo + i
        a0 = a0 + x[p] * y[q]
        a1 = a1 + (x[p + one] * y[q + one] if i + one < end else zero * zero)
        a2 = a2 + (x[p + two] * y[q + two] if i + two < end else zero * zero)
        a3 = a3 + (x[p + three] * y[q + three] if i + three < end else zero * zero)
        i += numba.uint64(EINSUM_LANES)
    return zero + ((a0 + a1) + (a2 + a3))


@numba.njit(cache=True, nogil=True)
def einsum_dot(x: np.ndarray, y: np.ndarray) -> np.float32:
    """``sum_f x[f] * y[f]`` of two float32 vectors, in ``np.einsum("f,f->")``'s order.

    NumPy's einsum keeps one float32 accumulator per SIMD lane
    (:data:`EINSUM_LANES`), adds four vectors of products per step starting
    from the last one, the tail zero-filled, then sums the lanes pairwise, and
    adds the total to the zero-initialised output. Products and sums are
    rounded one by one (NumPy's baseline has no fused multiply-add).
    """
    return _dot(x, numba.uint64(0), y, numba.uint64(0), x.shape[0])


@numba.njit(cache=True, nogil=True, inline="always")
def _clip(x: np.float32, lo: np.float32, hi: np.float32) -> np.float32:
    """``np.clip(x, lo, hi)`` for one float32, as NumPy gives it: NaN kept, ``-0.0`` kept at a bound of 0."""
    if x < lo:
        x = lo
    elif x > hi:
        x = hi
    return x


@numba.njit(cache=True, nogil=True, inline="always")
def _topic_sum(profile: np.ndarray, r: int, topic_idx: np.ndarray, topic_weight: np.ndarray, item: int) -> np.float32:
    """``sum_j w[item, j] * profile[r, topic_idx[item, j]]`` left to right; a topic past the profile reads 0.

    Indexes the 2-d arrays directly: a row view per pair costs its reference counting.
    """
    width = profile.shape[1]
    zero = np.float32(0.0)
    t = topic_idx[item, 0]
    acc = (profile[r, t] if t < width else zero) * topic_weight[item, 0]
    for j in range(1, topic_idx.shape[1]):
        t = topic_idx[item, j]
        acc = acc + (profile[r, t] if t < width else zero) * topic_weight[item, j]
    return acc


@numba.njit(cache=True, nogil=True, inline="always")
def _blend(terms: np.ndarray, weights: np.ndarray) -> np.float32:
    """The weighted sum of one pair's terms: from 0, left to right, terms of weight 0 skipped."""
    total = np.float32(0.0)
    for k in range(terms.shape[0]):
        if weights[k] != 0:
            total = total + weights[k] * terms[k]
    return total


@numba.njit(cache=True, nogil=True)
def score_pairs(
    cand: np.ndarray,
    ok: np.ndarray,
    cf: np.ndarray,
    user_vectors: np.ndarray,
    inv_rel: np.ndarray,
    profile: np.ndarray,
    inv_top: np.ndarray,
    interest: np.ndarray,
    topic_idx: np.ndarray,
    topic_weight: np.ndarray,
    popularity: np.ndarray,
    segments: np.ndarray,
    freshness: np.ndarray,
    authority: np.ndarray,
    quality: np.ndarray,
    timeliness: np.ndarray,
    format_code: np.ndarray,
    user_format: np.ndarray,
    engaged: bool,
    weights: np.ndarray,
    score: np.ndarray,
    terms: np.ndarray,
    keep_terms: bool,
) -> None:
    """The blend's terms and score of every (user, candidate) pair of a block.

    Parameters
    ----------
    cand : int64 (m, c)
        Candidate items; -1 (padding) is scored as item 0.
    ok : bool (m, c)
        Pairs to score; the others get score ``-inf`` (and no terms).
    cf : float32 (n, f)
    user_vectors : float32 (m, f)
    inv_rel, inv_top : float32 (m,)
        ``1 / (|u| * cf_scale)`` and ``1 / max_t profile`` of each user.
    profile, interest : float32 (m, n_topics)
        The readable topic profile and the learned topic interest.
    topic_idx : int64 (n, t), topic_weight : float32 (n, t)
    popularity : float32 (n_segments + 1, n), segments : int64 (m,)
    freshness, authority, quality, timeliness : float32 (n,)
    format_code : int64 (n,), user_format : float32 (m, n_formats)
    engaged : bool
        Whether the engagement model's four terms are read (else 0).
    weights : float32 (9,)
    score : float32 (m, c), output
    terms : float32 (9, m, c), output, written when ``keep_terms``
    """
    m, c = cand.shape
    f = cf.shape[1]
    n_top = topic_idx.shape[1]
    zero = np.float32(0.0)
    one = np.float32(1.0)
    vals = np.empty(9, np.float32)
    flat_cf, flat_u = cf.ravel(), user_vectors.ravel()
    # A row's scored pairs and everything they read of their items, gathered first: in a plain
    # copy loop the item arrays' cache misses overlap; the terms then read the copies from L1
    # (scoring straight from the item arrays waits on each pair's dozen cache lines in turn).
    cols = np.empty(c, np.int64)
    vectors = np.empty(c * f, np.float32)
    scalars = np.empty((c, 6), np.float32)  # popularity, freshness, authority, quality, timeliness, format taste
    tops = np.empty((c, n_top), np.int64)
    tw = np.empty((c, n_top), np.float32)
    width = numba.uint64(f)
    for r in range(m):
        seg = segments[r]
        n = 0
        for j in range(c):
            if not ok[r, j]:
                score[r, j] = -np.inf
                continue
            item = max(cand[r, j], 0)
            cols[n] = j
            src, dst = numba.uint64(item) * width, numba.uint64(n) * width
            for k in range(f):
                vectors[dst + numba.uint64(k)] = flat_cf[src + numba.uint64(k)]
            scalars[n, 0] = popularity[seg, item]
            scalars[n, 1] = freshness[item]
            scalars[n, 2] = authority[item]
            if engaged:
                scalars[n, 3] = quality[item]
                scalars[n, 4] = timeliness[item]
                fmt = format_code[item]
                scalars[n, 5] = user_format[r, fmt] if fmt >= 0 else zero
            for k in range(n_top):
                tops[n, k] = topic_idx[item, k]
                tw[n, k] = topic_weight[item, k]
            n += 1
        for t in range(n):
            dot = _dot(vectors, numba.uint64(t) * width, flat_u, numba.uint64(r) * width, f)
            vals[0] = _clip(dot * inv_rel[r], -one, one)
            vals[1] = _clip(_topic_sum(profile, r, tops, tw, t) * inv_top[r], zero, one)
            vals[2] = scalars[t, 0]
            vals[3] = scalars[t, 1]
            vals[4] = scalars[t, 2]
            if engaged:
                vals[5] = scalars[t, 3]
                vals[6] = _topic_sum(interest, r, tops, tw, t)
                vals[7] = scalars[t, 5]
                vals[8] = scalars[t, 4]
            else:
                vals[5] = vals[6] = vals[7] = vals[8] = zero
            j = cols[t]
            score[r, j] = _blend(vals, weights)
            if keep_terms:
                for k in range(9):
                    terms[k, r, j] = vals[k]


@numba.njit(cache=True, nogil=True)
def weighted_sum(terms: np.ndarray, weights: np.ndarray, out: np.ndarray) -> None:
    """``out[r, j]`` = the blend of ``terms[:, r, j]`` (float32 (9, m, c) -> (m, c))."""
    _, m, c = terms.shape
    vals = np.empty(terms.shape[0], np.float32)
    for r in range(m):
        for j in range(c):
            for k in range(terms.shape[0]):
                vals[k] = terms[k, r, j]
            out[r, j] = _blend(vals, weights)


@numba.njit(cache=True, nogil=True)
def history_key_rows(
    indptr: np.ndarray,
    indices: np.ndarray,
    rows: np.ndarray,
    extra: np.ndarray,
    extra_ptr: np.ndarray,
    extra_of: np.ndarray,
    n_items: int,
) -> np.ndarray:
    """Sorted keys ``r * n_items + item`` of each batch row's history and extra items (int64).

    Row ``r`` reads the ``seen`` rows' items ``indices[indptr[rows[r]]:indptr[rows[r] + 1]]``
    (none for ``rows[r] < 0``) and the extra list ``extra[extra_ptr[e]:extra_ptr[e + 1]]`` of
    ``e = extra_of[r]`` (none for -1). Each row's keys are sorted in place; rows come in order, so
    the whole array is sorted (repeats kept), as one global sort would give it.
    """
    m = rows.shape[0]
    total = 0
    for r in range(m):
        if rows[r] >= 0:
            total += indptr[rows[r] + 1] - indptr[rows[r]]
        if extra_of[r] >= 0:
            total += extra_ptr[extra_of[r] + 1] - extra_ptr[extra_of[r]]
    out = np.empty(total, np.int64)
    pos = 0
    for r in range(m):
        start = pos
        base = r * n_items
        if rows[r] >= 0:
            for k in range(indptr[rows[r]], indptr[rows[r] + 1]):
                out[pos] = base + indices[k]
                pos += 1
        if extra_of[r] >= 0:
            e = extra_of[r]
            for k in range(extra_ptr[e], extra_ptr[e + 1]):
                out[pos] = base + extra[k]
                pos += 1
        if pos - start > 1:
            out[start:pos].sort()
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _row_span(keys: np.ndarray, lo_key: int, hi_key: int) -> tuple[int, int]:
    """Positions of the sorted ``keys`` in ``[lo_key, hi_key)``."""
    return np.searchsorted(keys, lo_key), np.searchsorted(keys, hi_key)


@numba.njit(cache=True, nogil=True, inline="always")
def _contains(keys: np.ndarray, lo: int, hi: int, q: int) -> bool:
    """Whether the sorted ``keys[lo:hi]`` hold ``q`` (binary search)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < q:
            lo = mid + 1
        else:
            hi = mid
    return lo < keys.shape[0] and keys[lo] == q


@numba.njit(cache=True, nogil=True)
def history_hits(keys: np.ndarray, cand: np.ndarray, n_items: int, out: np.ndarray) -> None:
    """``out[r, j]``: the key ``r * n_items + cand[r, j]`` is in the sorted ``keys`` (bool (m, c)).

    Each row's keys are found once; most users have none, and a row's
    candidates are searched among its own keys only. A padding candidate (-1)
    makes a key of the row before, searched among all keys as NumPy did.
    """
    m, c = cand.shape
    n_keys = keys.shape[0]
    for r in range(m):
        lo, hi = _row_span(keys, r * n_items, (r + 1) * n_items)
        for j in range(c):
            q = r * n_items + cand[r, j]
            if cand[r, j] < 0:
                out[r, j] = _contains(keys, 0, n_keys, q)
            else:
                out[r, j] = hi > lo and _contains(keys, lo, hi, q)


@numba.njit(cache=True, nogil=True)
def eligible_pairs(
    cand: np.ndarray,
    available: np.ndarray,
    format_code: np.ndarray,
    format_ok: np.ndarray,
    check_formats: bool,
    topic_idx: np.ndarray,
    topic_ok: np.ndarray,
    check_topics: bool,
    published_ns: np.ndarray,
    expires_ns: np.ndarray,
    now_ns: int,
    group_ok: np.ndarray,
    region_ok: np.ndarray,
    groups: np.ndarray,
    regions: np.ndarray,
    keys: np.ndarray,
    n_items: int,
    out: np.ndarray,
) -> None:
    """Eligibility of each (user, candidate) pair, and not in the user's history ``keys`` (bool (m, c)).

    A pair is eligible when the candidate is a real item (not -1), available,
    of a format in ``format_ok`` (when ``check_formats``; an unknown format
    -1 fails), listing a topic in ``topic_ok`` (when ``check_topics``; the
    topic lists' padding fails), published and unexpired at ``now_ns``, and
    allowed for the user's group and region. ``keys`` are
    ``eligibility.history_keys`` (empty: no history).
    """
    m, c = cand.shape
    n_keys = keys.shape[0]
    for r in range(m):
        g, reg = groups[r], regions[r]
        lo, hi = _row_span(keys, r * n_items, (r + 1) * n_items) if n_keys else (0, 0)
        at = lo  # the row's keys below ``at`` are below the last key looked up
        for j in range(c):
            item = cand[r, j]
            fine = item >= 0 and available[item] and group_ok[g, item] and region_ok[reg, item]
            fine = fine and published_ns[item] <= now_ns and expires_ns[item] > now_ns
            if fine and check_formats:
                fmt = format_code[item]
                fine = fmt >= 0 and format_ok[fmt]
            if fine and check_topics:
                hit = False
                for k in range(topic_idx.shape[1]):  # indexed, not a row view (its reference counting)
                    t = topic_idx[item, k]
                    if t < topic_ok.shape[0] and topic_ok[t]:
                        hit = True
                        break
                fine = hit
            if fine and hi > lo:
                # a walk along the row's sorted keys: candidates come in ascending order (merge's
                # rows), so a row costs its width plus its keys; a step back starts the walk again
                q = r * n_items + item
                if at > lo and keys[at - 1] >= q:
                    at = lo
                while at < hi and keys[at] < q:
                    at += 1
                fine = not (at < hi and keys[at] == q)
            out[r, j] = fine


def warm() -> None:
    """Load the push path's kernels now (or compile them), with the types the wrappers pass.

    A serving state calls this while it loads, so that the first request or the first block of
    a push does not pay for loading them (numba's cache lookup of each kernel).
    """
    i2, f2, b2 = frozen(np.zeros((1, 1)), np.int64), frozen(np.zeros((1, 1)), np.float32), frozen(np.ones((1, 1)), np.bool_)
    i1, f1 = frozen(np.zeros(1), np.int64), frozen(np.zeros(1), np.float32)
    score_pairs(
        i2, b2, f2, f2, f1, f2, f1, f2, i2, f2, f2, i1, f1, f1, f1, f1, i1, f2, True,
        frozen(np.zeros(N_TERMS), np.float32), np.zeros((1, 1), np.float32), np.zeros((N_TERMS, 0, 0), np.float32), False,
    )
    b1 = frozen(np.ones(1), np.bool_)
    eligible_pairs(i2, b1, i1, b1, False, i2, b1, False, i1, i1, 0, b2, b2, i1, i1, i1, 1, np.empty((1, 1), bool))
    index = frozen(np.zeros(2), np.int32)
    history_key_rows(index, index[:1], i1, i1, frozen(np.zeros(2), np.int64), frozen(np.full(1, -1), np.int64), 1)
