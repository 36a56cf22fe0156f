"""Diversity: pick k items per user from candidates sorted by score.

Two rules, applied greedily in score order (best first):

* **near-duplicates do not share a list**: once an item is picked, its
  near-duplicates are blocked for that list. Two items are near-duplicates
  when their content cosine is above a threshold calibrated on the catalogue
  at hand (:func:`calibrated_threshold`: ``RankingConfig.near_duplicate_threshold``,
  raised above what random pairs of this catalogue reach), so a catalogue
  whose titles share one template is not one big duplicate group. Only
  when nothing else can fill the list are blocked items used, best first:
  a list is filled to k whenever k eligible items exist;
* **per-topic cap** (soft): at most ``cap`` picked items share a primary
  topic. Items skipped only because of the cap are reconsidered, in score
  order, in a second pass that runs only while the list is shorter than k:
  the cap is relaxed just as far as needed to fill it.

Picked items are returned in score order. Near-duplicate pairs are found once
per catalogue (:func:`near_duplicates`, an exact range search over the
content vectors), so picking costs a few set operations per item; the walk
runs per user in plain Python over the valid candidates of the first few
dozen positions, reading the rest of the row only when those cannot fill the
list without relaxing the cap. A user's picks depend only on that user's row.

Greedy picking keeps one item per group of mutual near-duplicates (the same
story reworded), which is the largest possible list when near-duplication is
transitive; with chains (A~B, B~C, A and C unrelated) it may keep fewer.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Neighbours = dict[int, tuple[int, ...]]


def topic_cap(k: int, max_topic_share: float) -> int:
    """Soft cap on items per primary topic for a list of ``k``: ``ceil(share * k)``, at least 1."""
    return max(1, math.ceil(max_topic_share * k - 1e-9))


#: random pairs whose similarity sets the calibrated threshold, and the quantile taken
CALIBRATION_PAIRS = 4000
CALIBRATION_QUANTILE = 0.999


def calibrated_threshold(content: np.ndarray, base: float, *, seed: int = 0) -> float:
    """The near-duplicate threshold for this catalogue.

    ``max(base, q + (1 - q) / 2)`` where ``q`` is the
    :data:`CALIBRATION_QUANTILE` of the content cosine of
    :data:`CALIBRATION_PAIRS` random item pairs (seeded): a pair is a
    near-duplicate only if it is much closer than random pairs of the same
    catalogue are. On a natural catalogue ``q`` is far below ``base`` and
    ``base`` holds; on a templated one (every title "...第N期") ``q`` is
    high and the threshold moves toward 1.

    Parameters
    ----------
    content : ndarray of float32, shape (n, d)
        L2-normalised content vectors.
    base : float
        ``RankingConfig.near_duplicate_threshold``.
    seed : int

    Returns
    -------
    float
    """
    n = content.shape[0]
    if n < 3:
        return float(base)
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, CALIBRATION_PAIRS)
    b = rng.integers(0, n, CALIBRATION_PAIRS)
    keep = a != b
    sims = np.einsum("ij,ij->i", content[a[keep]], content[b[keep]])
    if sims.size == 0:
        return float(base)
    q = float(np.quantile(sims, CALIBRATION_QUANTILE))
    return float(max(base, min(1.0, q + (1.0 - q) / 2.0)))


def near_duplicate_pairs(content: np.ndarray, threshold: float, *, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(a, b)`` with content cosine strictly above ``threshold``, ``a >= start``, ``a != b``.

    An exact range search (faiss ``IndexFlatIP``) of rows ``start..n-1``
    against every row; each pair as found (the caller makes it symmetric).

    Parameters
    ----------
    content : ndarray of float32, shape (n, d)
        L2-normalised content vectors.
    threshold : float
        In (0, 1].
    start : int, default 0
        First row searched.

    Returns
    -------
    a, b : ndarray of int64
    """
    import faiss  # heavy: faiss loads only when a catalogue is built, not with recsys.ranking

    x = np.ascontiguousarray(content, dtype=np.float32)
    n = x.shape[0]
    if n <= start or x.shape[1] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    lims, _, found = index.range_search(x[start:], float(threshold))
    rows = np.repeat(np.arange(start, n), np.diff(lims).astype(np.int64))
    found = found.astype(np.int64)
    keep = rows != found
    return rows[keep], found[keep]


def neighbour_graph(content: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The near-duplicate pairs of every row as a symmetric CSR graph (no self pairs).

    The arrays a bundle stores (see :func:`neighbours_from_graph` for the
    lookup the picking reads): the same pairs as :func:`near_duplicates`.

    Returns
    -------
    indptr : ndarray of int64, shape (n + 1,)
    indices : ndarray of int32
        Each row's neighbours, ascending.
    """
    n = content.shape[0]
    a, b = near_duplicate_pairs(content, threshold)
    # both directions: a cosine computed as a.b may land on the other side of the threshold than b.a
    code = np.unique(np.concatenate([a * n + b, b * n + a]))
    rows, cols = np.divmod(code, max(n, 1))
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return indptr, cols.astype(np.int32)


def neighbours_from_graph(indptr: np.ndarray, indices: np.ndarray) -> Neighbours:
    """The picking's lookup (row -> its near-duplicates) of a CSR graph from :func:`neighbour_graph`."""
    indptr = np.asarray(indptr)
    flat = np.asarray(indices).tolist()
    bounds = indptr.tolist()
    return {int(i): tuple(flat[bounds[i] : bounds[i + 1]]) for i in np.flatnonzero(np.diff(indptr))}


def near_duplicates(
    content: np.ndarray, threshold: float, *, start: int = 0, known: Neighbours | None = None
) -> Neighbours:
    """Near-duplicate pairs: content cosine strictly above ``threshold``.

    Parameters
    ----------
    content : ndarray of float32, shape (n, d)
        L2-normalised content vectors.
    threshold : float
        In (0, 1].
    start : int, default 0
        Rows below ``start`` were already compared with each other (their
        pairs are ``known``); only rows from ``start`` on are searched, against
        every row. Lets a catalogue update reuse the bundle's pairs.
    known : dict, optional
        Pairs among rows ``0..start-1`` (each tuple ascending, as this
        function and :func:`neighbours_from_graph` return them).

    Returns
    -------
    dict[int, tuple[int, ...]]
        Row -> its near-duplicates (symmetric, no self pairs, ascending); rows
        without any are absent.
    """
    out = dict(known or {})
    a, b = near_duplicate_pairs(content, threshold, start=start)
    # only the rows a new pair touches are rebuilt: the known ones are reused as they are
    touched: dict[int, set[int]] = {}
    for x, y in zip(a.tolist(), b.tolist()):
        touched.setdefault(x, set(out.get(x, ()))).add(y)
        touched.setdefault(y, set(out.get(y, ()))).add(x)
    out.update({i: tuple(sorted(nb)) for i, nb in touched.items()})
    return {i: nb for i, nb in out.items() if nb}


def _greedy(
    head: tuple[list[int], list[int], list[int]],
    more: bool,
    k: int,
    cap: int,
    n_topics: int,
    neighbours: Neighbours,
    relaxed: list[bool],
) -> list[int] | None:
    """Pick among one user's valid candidates (best first); return the picked positions.

    ``relaxed[0]`` is set when near-duplicates had to share the list to fill it.

    ``head`` holds the first valid candidates as (positions in the user's
    sorted row, item indices, primary topics). ``more``: the row has valid
    candidates after the head; then, when the head cannot fill the list
    without relaxing the cap, None is returned and the caller walks the row
    again with all of them (pass 1 goes on over the whole row before any
    relaxing: walking head + rest from the start picks exactly what walking
    on from the head's end would).
    """
    positions, items, topics = head
    picked: list[int] = []
    blocked: set[int] = set()
    per_topic = [0] * (n_topics + 1)
    deferred: list[int] = []
    for n in range(len(items)):
        item = items[n]
        if item in blocked:
            continue
        topic = topics[n]
        if per_topic[topic] >= cap:
            deferred.append(n)
            continue
        picked.append(n)
        per_topic[topic] += 1
        if item in neighbours:
            blocked.update(neighbours[item])
        if len(picked) == k:
            return [positions[i] for i in picked]
    if more:
        return None
    for n in deferred:
        item = items[n]
        if item in blocked:
            continue
        picked.append(n)
        if item in neighbours:
            blocked.update(neighbours[item])
        if len(picked) == k:
            break
    if len(picked) < k:
        # last resort: near-duplicates, best first, rather than a short list
        chosen = set(picked)
        for n in range(len(items)):
            if n not in chosen:
                picked.append(n)
                relaxed[0] = True
                if len(picked) == k:
                    break
    picked.sort()
    return [positions[i] for i in picked]


def _head_width(k: int, c: int) -> int:
    """Positions of a sorted row converted up front: most lists fill within the first few dozen."""
    return min(c, max(4 * k, k + 32))


def _valid_lists(order: np.ndarray, valid: np.ndarray, primary: np.ndarray) -> tuple[list, list, list, list]:
    """Per row, the valid candidates' positions, items and topics as Python lists."""
    rows, cols = np.nonzero(valid)
    items = order[rows, cols]
    bounds = np.searchsorted(rows, np.arange(order.shape[0] + 1)).tolist()
    return bounds, cols.tolist(), items.tolist(), primary[items].tolist()


def select(
    order: np.ndarray,
    valid: np.ndarray,
    primary: np.ndarray,
    k: int,
    *,
    cap: int,
    neighbours: Neighbours,
    n_topics: int,
    beyond: np.ndarray | None = None,
    full_rows: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy diverse top-k per row.

    Parameters
    ----------
    order : ndarray of int64, shape (m, c)
        Candidate item indices of each user, best score first.
    valid : ndarray of bool, shape (m, c)
        Candidates that may be picked (eligible, not seen, not a repeat).
    primary : ndarray of int64, shape (n_items,)
        Primary topic of each item, in ``0..n_topics`` (``n_topics``: none).
    k : int
        List length.
    cap : int
        Soft cap per primary topic.
    neighbours : dict
        :func:`near_duplicates` of the catalogue.
    n_topics : int
        Number of topics.
    beyond : ndarray of bool, shape (m,), optional
        ``order`` holds only a prefix of each sorted row: the rows with valid
        candidates after it (:func:`select_scored`).
    full_rows : callable, optional
        With ``beyond``: given rows ``rs``, their whole sorted rows as (items,
        valid), each of shape (len(rs), whole width); called once, for the
        rows whose prefix cannot fill their list.

    Returns
    -------
    positions : ndarray of int64, shape (m, k)
        Picked positions into ``order`` (ascending = score order; with
        ``full_rows``, positions in the whole sorted row), -1 padded.
    count : ndarray of int64, shape (m,)
        Items picked per user.
    relaxed : ndarray of bool, shape (m,)
        Users whose list needed near-duplicates to fill: the caller looks
        beyond the candidates for other eligible items first.
    """
    m, c = order.shape
    positions = np.full((m, k), -1, dtype=np.int64)
    count = np.zeros(m, dtype=np.int64)
    relaxed = np.zeros(m, dtype=bool)
    if m == 0 or c == 0:
        return positions, count, relaxed
    # most lists fill within the first few dozen candidates: convert only those
    width = _head_width(k, c)
    bounds, cols, items, topics = _valid_lists(order[:, :width], valid[:, :width], primary)
    more = valid[:, width:].any(axis=1) if width < c else np.zeros(m, dtype=bool)
    if beyond is not None:
        more |= beyond
    more_rows = more.tolist()
    later = []  # rows whose head cannot fill their list: walked again below with their whole row
    for r in range(m):
        lo, hi = bounds[r], bounds[r + 1]
        flag = [False]
        picked = _greedy((cols[lo:hi], items[lo:hi], topics[lo:hi]), more_rows[r], k, cap, n_topics, neighbours, flag)
        if picked is None:
            later.append(r)
            continue
        positions[r, : len(picked)] = picked
        count[r] = len(picked)
        relaxed[r] = flag[0]
    if not later:
        return positions, count, relaxed
    # the rest of those rows, converted together (a row at a time cost ~10 numpy calls each) and
    # by growing stretches (most fill within a few more dozen positions, few need the whole row)
    rows = np.asarray(later, dtype=np.int64)
    whole = beyond[rows] if beyond is not None and full_rows is not None else np.zeros(rows.size, dtype=bool)
    parts = []
    if whole.any():  # past the prefix: their whole sorted rows
        parts.append((rows[whole], *full_rows(rows[whole])))
    if not whole.all():
        parts.append((rows[~whole], order[rows[~whole]], valid[rows[~whole]]))
    for part_rows, part_order, part_valid in parts:
        walked = {r: (cols[bounds[r] : bounds[r + 1]], items[bounds[r] : bounds[r + 1]], topics[bounds[r] : bounds[r + 1]])
                  for r in part_rows.tolist()}
        pending = np.arange(part_rows.size)
        total = part_order.shape[1]
        lo = width
        while pending.size:
            hi = total if 4 * lo >= total else 4 * lo
            b, more_cols, more_items, more_topics = _valid_lists(part_order[pending, lo:hi], part_valid[pending, lo:hi], primary)
            beyond_hi = part_valid[pending, hi:].any(axis=1).tolist() if hi < total else [False] * pending.size
            still = []
            for j, p in enumerate(pending.tolist()):
                r = int(part_rows[p])
                had = walked[r]
                row = (
                    had[0] + [lo + col for col in more_cols[b[j] : b[j + 1]]],
                    had[1] + more_items[b[j] : b[j + 1]],
                    had[2] + more_topics[b[j] : b[j + 1]],
                )
                flag = [False]
                picked = _greedy(row, beyond_hi[j], k, cap, n_topics, neighbours, flag)
                if picked is None:
                    walked[r] = row
                    still.append(p)
                    continue
                positions[r, : len(picked)] = picked
                count[r] = len(picked)
                relaxed[r] = flag[0]
            pending = np.asarray(still, dtype=np.int64)
            lo = hi
    return positions, count, relaxed


def select_scored(
    cand: np.ndarray,
    score: np.ndarray,
    primary: np.ndarray,
    k: int,
    *,
    cap: int,
    neighbours: Neighbours,
    n_topics: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`select` over each row's candidates in score order, without sorting whole rows.

    The order is best score first, ties by column (a stable sort of
    ``-score``); only the finite scores are valid. The walk reads the first
    few dozen positions of a row (:func:`select`), so each row's best
    ``width`` scores are found by a partition and only they are sorted: every
    score left out is below them, so the sorted prefix is exactly the start
    of the whole row's order. A row whose prefix cannot fill its list is
    sorted whole, then, together. The picks equal :func:`select` over the fully
    sorted rows.

    Parameters
    ----------
    cand : ndarray of int64, shape (m, c)
        Candidate item indices.
    score : ndarray of float32, shape (m, c)
        Their scores; ``-inf`` marks a candidate that may not be picked.
    primary, k, cap, neighbours, n_topics
        As :func:`select`.

    Returns
    -------
    columns : ndarray of int64, shape (m, k)
        Picked columns of ``cand``, best first, -1 padded.
    count : ndarray of int64, shape (m,)
    relaxed : ndarray of bool, shape (m,)
        As :func:`select`.
    """
    c = score.shape[1]
    width = _head_width(k, c)
    finite = np.isfinite(score)
    if c <= 2 * width or score.shape[0] == 0:  # narrow rows: sorting them whole costs less than the bookkeeping
        order = np.argsort(-score, axis=1, kind="stable")
        positions, count, relaxed = select(
            np.take_along_axis(cand, order, axis=1),
            np.take_along_axis(finite, order, axis=1),
            primary, k, cap=cap, neighbours=neighbours, n_topics=n_topics,
        )
        got = positions >= 0
        return np.where(got, np.take_along_axis(order, np.where(got, positions, 0), axis=1), -1), count, relaxed
    # each row's width-th best score; a row with fewer finite scores keeps them all
    kth = -np.partition(-score, width - 1, axis=1)[:, width - 1]
    inside = finite & (score >= kth[:, None])
    n_in = inside.sum(axis=1)
    prefix = int(n_in.max())
    # the kept columns, ascending (a stable sort of a bool key), then ordered by score: ties stay by column
    cols = np.argsort(~inside, axis=1, kind="stable")[:, :prefix]
    kept = np.arange(prefix) < n_in[:, None]
    sub = np.where(kept, np.take_along_axis(score, cols, axis=1), -np.inf)
    by_score = np.argsort(-sub, axis=1, kind="stable")
    cols = np.take_along_axis(cols, by_score, axis=1)
    valid = np.take_along_axis(kept, by_score, axis=1)
    whole: dict[int, np.ndarray] = {}

    def full_rows(rs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(-score[rs], axis=1, kind="stable")
        whole.update(zip(rs.tolist(), order))
        return np.take_along_axis(cand[rs], order, axis=1), np.take_along_axis(finite[rs], order, axis=1)

    positions, count, relaxed = select(
        np.take_along_axis(cand, cols, axis=1),
        valid,
        primary,
        k,
        cap=cap,
        neighbours=neighbours,
        n_topics=n_topics,
        beyond=finite.sum(axis=1) > n_in,
        full_rows=full_rows,
    )
    got = positions >= 0
    out = np.where(got, np.take_along_axis(cols, np.minimum(np.where(got, positions, 0), prefix - 1), axis=1), -1)
    for r, order in whole.items():  # rows sorted whole: their positions may lie past the prefix
        out[r] = np.where(got[r], order[np.where(got[r], positions[r], 0)], -1)
    return out, count, relaxed
