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
content vectors, held as a CSR graph: :func:`neighbour_arrays`), so picking
costs a few array reads per item; the walk is compiled
(:mod:`recsys.ranking.compiled_selection`) and reads a row in score order
only as far as its list needs. A user's picks depend only on that user's row.

Greedy picking keeps one item per group of mutual near-duplicates (the same
story reworded), which is the largest possible list when near-duplication is
transitive; with chains (A~B, B~C, A and C unrelated) it may keep fewer.
"""

from __future__ import annotations

import math

import numpy as np

from recsys.ranking import compiled_selection

Neighbours = dict[int, tuple[int, ...]]


def topic_cap(k: int, max_topic_share: float) -> int:
    """Soft cap on items per primary topic for a list of ``k``: ``ceil(share * k)``, at least 1."""
    return max(1, math.ceil(max_topic_share * k - 1e-9))


#: random pairs whose similarity sets the calibrated threshold, and the quantile taken
CALIBRATION_PAIRS = 4000
CALIBRATION_QUANTILE = 0.999
#: the calibrated threshold never goes above this: items whose content vectors are this close are
#: the same text, whatever the catalogue (a small catalogue with many copies has q = 1 and would
#: otherwise get a threshold of 1, which no pair exceeds)
SAME_CONTENT = 0.9999


def calibrated_threshold(content: np.ndarray, base: float, *, seed: int = 0) -> float:
    """The near-duplicate threshold for this catalogue.

    ``max(base, min(SAME_CONTENT, q + (1 - q) / 2))`` where ``q`` is the
    :data:`CALIBRATION_QUANTILE` of the content cosine of
    :data:`CALIBRATION_PAIRS` random item pairs (seeded): a pair is a
    near-duplicate only if it is much closer than random pairs of the same
    catalogue are. On a natural catalogue ``q`` is far below ``base`` and
    ``base`` holds; on a templated one (every title "...第N期") ``q`` is
    high and the threshold moves toward 1, but stays at or below
    :data:`SAME_CONTENT`, so identical content is always a near-duplicate.

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
    return float(max(base, min(SAME_CONTENT, q + (1.0 - q) / 2.0)))


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


NeighbourGraph = tuple[np.ndarray, np.ndarray]


def neighbour_arrays(neighbours: Neighbours, n_items: int) -> NeighbourGraph:
    """The picking's lookup as a CSR graph over ``n_items`` items (what the compiled walk reads).

    The inverse of :func:`neighbours_from_graph`: each row's near-duplicates
    in the order the dict lists them.

    Returns
    -------
    indptr : ndarray of int64, shape (n_items + 1,)
    indices : ndarray of int32
    """
    rows = np.fromiter(neighbours.keys(), dtype=np.int64, count=len(neighbours))
    sizes = np.fromiter((len(nb) for nb in neighbours.values()), dtype=np.int64, count=len(neighbours))
    flat = np.fromiter((j for nb in neighbours.values() for j in nb), dtype=np.int64, count=int(sizes.sum()))
    if (rows.size and (rows.min() < 0 or rows.max() >= n_items)) or (flat.size and (flat.min() < 0 or flat.max() >= n_items)):
        raise ValueError(f"near-duplicate pairs name items outside 0..{n_items - 1}")
    lengths = np.zeros(n_items, dtype=np.int64)
    lengths[rows] = sizes
    indptr = np.zeros(n_items + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = np.empty(flat.size, dtype=np.int32)
    # the dict's rows end to end, each moved to its place in item order
    starts = np.repeat(indptr[rows], sizes) + (np.arange(flat.size) - np.repeat(np.cumsum(sizes) - sizes, sizes))
    indices[starts] = flat
    return indptr, indices


def _graph(neighbours: Neighbours | NeighbourGraph, n_items: int) -> NeighbourGraph:
    return neighbour_arrays(neighbours, n_items) if isinstance(neighbours, dict) else neighbours


def select(
    order: np.ndarray,
    valid: np.ndarray,
    primary: np.ndarray,
    k: int,
    *,
    cap: int,
    neighbours: Neighbours | NeighbourGraph,
    n_topics: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy diverse top-k per row, over rows already in score order.

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
    neighbours : dict or (indptr, indices)
        :func:`near_duplicates` of the catalogue, or its CSR graph over the
        ``primary.size`` items (:func:`neighbour_arrays`; a serving state
        builds it once).
    n_topics : int
        Number of topics.

    Returns
    -------
    positions : ndarray of int64, shape (m, k)
        Picked positions into ``order`` (ascending = score order), -1 padded.
    count : ndarray of int64, shape (m,)
        Items picked per user.
    relaxed : ndarray of bool, shape (m,)
        Users whose list needed near-duplicates to fill: the caller looks
        beyond the candidates for other eligible items first.
    """
    # every valid candidate scores the same: ties go by column, the given order
    score = np.where(valid, np.float32(0), np.float32(-np.inf))
    return select_scored(order, score, primary, k, cap=cap, neighbours=neighbours, n_topics=n_topics)


def select_scored(
    cand: np.ndarray,
    score: np.ndarray,
    primary: np.ndarray,
    k: int,
    *,
    cap: int,
    neighbours: Neighbours | NeighbourGraph,
    n_topics: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy diverse top-k of each row, in score order (best first, ties by column: the order
    of a stable sort of ``-score``); only the finite scores are valid.

    A compiled walk per row (:func:`recsys.ranking.compiled_selection.diverse_top`):
    it draws the row's candidates in that order from a heap, one at a time,
    so a list that fills within its first few dozen candidates never orders
    the rest; the passes of the module's rules (the topic cap, then the cap
    relaxed, then near-duplicates as a last resort) read on as far as needed.

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
    indptr, indices = _graph(neighbours, primary.shape[0])
    return compiled_selection.diverse_top(cand, score, primary, k, cap, indptr, indices, n_topics)
