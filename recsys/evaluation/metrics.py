r"""Ranking metrics of top-k push lists, beyond-accuracy metrics, bootstrap intervals.

Everything here works on arrays, one row per user (batch first); the table
helpers :func:`hit_matrix` and :func:`list_matrix` turn long-format tables
into those arrays.

Definitions (for one user with list :math:`L` (ranks 1..), relevant set
:math:`R` with :math:`|R| \ge 1`, and :math:`h_r = 1` if the item at rank
:math:`r` is relevant):

* precision@k :math:`= \sum_{r \le k} h_r / k` (a list shorter than k is not
  rewarded: the denominator stays k);
* recall@k :math:`= \sum_{r \le k} h_r / |R|`;
* NDCG@k: binary gain, log2 discount,
  :math:`\mathrm{DCG} = \sum_{r \le k} h_r / \log_2(r + 1)` divided by the
  ideal DCG of :math:`\min(k, |R|)` hits at ranks 1, 2, ...;
* MAP@k :math:`= \sum_{r \le k} h_r \cdot \mathrm{precision@}r / \min(k, |R|)`;
* hit rate@k = 1 if any of the top k is relevant, else 0;
* MRR@k = 1 / (rank of the first relevant item) if it is within k, else 0.

Ties in score are resolved by the list's ``rank``: metrics read ranks, never
scores. Beyond accuracy:

* coverage@k: distinct items in the top-k lists of a population / number of
  catalogue items;
* diversity@k (intra-list topic diversity): mean over pairs of list items of
  the Jaccard distance of their topic sets; 0 for a list of fewer than two;
* novelty@k: mean self-information :math:`-\log_2 p_i` of the listed items, with
  :math:`p_i = (n_i + 1) / (N + 1)`, :math:`n_i` the number of users with a
  positive training engagement on item i and N the number of users; 0 for an
  empty list.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.config import is_int
from recsys.exceptions import ConfigError, SchemaError
from recsys.seeds import check_random_state

#: user-averaged accuracy metrics, in report order
ACCURACY = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")
#: user-averaged beyond-accuracy metrics (also get an interval)
LIST_METRICS = ("diversity", "novelty")
#: population-level metrics (no interval)
POPULATION_METRICS = ("coverage",)


def metric_key(name: str, k: int) -> str:
    """Return the metrics.json key of metric ``name`` at ``k`` (e.g. ``"ndcg@10"``)."""
    return f"{name}@{k}"


def check_ks(ks: Sequence[int]) -> list[int]:
    """Return the cut-offs sorted and de-duplicated.

    Raises
    ------
    ConfigError
        If ``ks`` is empty or holds something other than positive ints.
    """
    values = list(ks)
    bad = [k for k in values if not is_int(k) or k < 1]
    if not values or bad:
        raise ConfigError(f"k must be a non-empty list of positive integers (e.g. 5,10,20), got {values!r}")
    return sorted({int(k) for k in values})


def _check_k(hits: np.ndarray, k: int) -> np.ndarray:
    if not is_int(k) or not 1 <= k <= hits.shape[1]:
        raise ConfigError(f"k must be an int in 1..{hits.shape[1]} (the list length held), got {k!r}")
    return np.asarray(hits[:, :k], dtype=bool)


def _check_lists_table(recs: pd.DataFrame) -> None:
    need = (C.USER_ID, C.RANK, C.ITEM_ID)
    missing = [c for c in need if c not in recs.columns]
    if missing:
        raise SchemaError(f"recommendations table lacks column(s) {', '.join(missing)}; required: {', '.join(need)}")
    ranks = recs[C.RANK].to_numpy()
    if len(ranks) and (not np.issubdtype(ranks.dtype, np.integer) or ranks.min() < 1):
        raise SchemaError(f"recommendations column {C.RANK!r} must hold integers >= 1")
    if recs.duplicated([C.USER_ID, C.RANK]).any():
        raise SchemaError("recommendations table has two items at the same (user_id, rank)")
    if recs.duplicated([C.USER_ID, C.ITEM_ID]).any():
        raise SchemaError("recommendations table lists the same item twice for a user")


def hit_matrix(recs: pd.DataFrame, relevant: pd.DataFrame, user_ids: Sequence[str], k: int) -> np.ndarray:
    """Return which list positions hold a relevant item.

    Parameters
    ----------
    recs : DataFrame
        One policy's lists: ``user_id, rank, item_id`` (rank 1 = top).
    relevant : DataFrame
        Relevant pairs ``user_id, item_id``.
    user_ids : sequence of str
        Row order of the result; users without a list get an all-False row.
    k : int
        Number of positions kept.

    Returns
    -------
    ndarray, bool (len(user_ids), k)

    Raises
    ------
    SchemaError
        If ``recs`` lacks a column, has non-positive ranks, or repeats a
        (user, rank) or (user, item).
    """
    _check_lists_table(recs)
    users = pd.Index(np.asarray(user_ids, dtype=object).astype(str))
    top = recs.loc[recs[C.RANK].to_numpy() <= k, [C.USER_ID, C.RANK, C.ITEM_ID]]
    top = top.astype({C.USER_ID: "str", C.ITEM_ID: "str"})
    rel = relevant[[C.USER_ID, C.ITEM_ID]].astype("str").drop_duplicates()
    merged = top.merge(rel, on=[C.USER_ID, C.ITEM_ID], how="inner")
    rows = users.get_indexer(merged[C.USER_ID])
    keep = rows >= 0
    out = np.zeros((len(users), k), dtype=bool)
    out[rows[keep], merged[C.RANK].to_numpy()[keep] - 1] = True
    return out


def list_matrix(recs: pd.DataFrame, user_ids: Sequence[str], item_ids: Sequence[str], k: int) -> np.ndarray:
    """Return the lists as item indices into ``item_ids``, ``-1`` where a list is short.

    Returns
    -------
    ndarray, int64 (len(user_ids), k)

    Raises
    ------
    SchemaError
        If a listed item is not in ``item_ids`` (or as :func:`hit_matrix`).
    """
    _check_lists_table(recs)
    users = pd.Index(np.asarray(user_ids, dtype=object).astype(str))
    items = pd.Index(np.asarray(item_ids, dtype=object).astype(str))
    top = recs.loc[recs[C.RANK].to_numpy() <= k]
    rows = users.get_indexer(top[C.USER_ID].astype("str"))
    cols = items.get_indexer(top[C.ITEM_ID].astype("str"))
    keep = rows >= 0
    if (cols[keep] < 0).any():
        bad = top[C.ITEM_ID].astype("str").to_numpy()[keep & (cols < 0)][0]
        raise SchemaError(f"recommended item {bad!r} is not in the catalogue table")
    out = np.full((len(users), k), -1, dtype=np.int64)
    out[rows[keep], top[C.RANK].to_numpy()[keep] - 1] = cols[keep]
    return out


# ---- accuracy, one value per user -------------------------------------------


def precision_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """precision@k = hits in the top k / k.

    Parameters
    ----------
    hits : ndarray, bool (n_users, >= k)
        From :func:`hit_matrix`.
    k : int

    Returns
    -------
    ndarray, float64 (n_users,)
    """
    return _check_k(hits, k).sum(axis=1) / float(k)


def _n_relevant(n_relevant: np.ndarray, n: int) -> np.ndarray:
    nrel = np.asarray(n_relevant, dtype=np.int64)
    if nrel.shape != (n,):
        raise ConfigError(f"n_relevant must have shape ({n},), got {nrel.shape}")
    return nrel


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """recall@k = hits in the top k / number of relevant items (0 for a user with none)."""
    h = _check_k(hits, k)
    nrel = _n_relevant(n_relevant, len(h))
    return np.divide(h.sum(axis=1), nrel, out=np.zeros(len(h)), where=nrel > 0)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k with binary gain and log2 discount; ideal DCG over min(k, relevant) hits."""
    h = _check_k(hits, k)
    nrel = _n_relevant(n_relevant, len(h))
    disc = _discounts(k)
    dcg = h.astype(np.float64) @ disc
    ideal_cum = np.concatenate([[0.0], np.cumsum(disc)])
    idcg = ideal_cum[np.minimum(nrel, k)]
    return np.divide(dcg, idcg, out=np.zeros(len(h)), where=idcg > 0)


def average_precision_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """AP@k = sum of precision@r over hit ranks r <= k, / min(k, relevant); MAP@k is its mean."""
    h = _check_k(hits, k).astype(np.float64)
    nrel = _n_relevant(n_relevant, len(h))
    prec_at_r = np.cumsum(h, axis=1) / np.arange(1, k + 1, dtype=np.float64)
    denom = np.minimum(nrel, k).astype(np.float64)
    return np.divide((prec_at_r * h).sum(axis=1), denom, out=np.zeros(len(h)), where=denom > 0)


def hit_rate_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """hit rate@k = 1.0 if any of the top k is relevant, else 0.0."""
    return _check_k(hits, k).any(axis=1).astype(np.float64)


def reciprocal_rank_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """1 / rank of the first relevant item within the top k, else 0; MRR@k is its mean."""
    h = _check_k(hits, k)
    first = h.argmax(axis=1)
    return np.where(h.any(axis=1), 1.0 / (first + 1.0), 0.0)


def accuracy_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Return every accuracy metric of :data:`ACCURACY` at ``k`` (per user)."""
    return {
        "precision": precision_at_k(hits, k),
        "recall": recall_at_k(hits, n_relevant, k),
        "ndcg": ndcg_at_k(hits, n_relevant, k),
        "map": average_precision_at_k(hits, n_relevant, k),
        "hit_rate": hit_rate_at_k(hits, k),
        "mrr": reciprocal_rank_at_k(hits, k),
    }


# ---- beyond accuracy ---------------------------------------------------------


def _check_lists(lists: np.ndarray, k: int, n_items: int | None) -> np.ndarray:
    arr = np.asarray(lists)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(f"lists must be a 2-d int array (n_users, k), got shape {arr.shape} dtype {arr.dtype}")
    if not is_int(k) or not 1 <= k <= arr.shape[1]:
        raise ConfigError(f"k must be an int in 1..{arr.shape[1]} (the list length held), got {k!r}")
    if arr.size and n_items is not None and (arr.max() >= n_items or arr.min() < -1):
        raise ConfigError(f"lists hold item indices outside -1..{n_items - 1}")
    return arr[:, :k]


def coverage_at_k(lists: np.ndarray, n_items: int, k: int) -> float:
    """Share of the catalogue's ``n_items`` that appear in at least one top-k list.

    Parameters
    ----------
    lists : ndarray, int (n_users, >= k)
        Item indices, ``-1`` padding (from :func:`list_matrix`).
    n_items : int
        Catalogue size (the denominator): the items pushable at list time,
        which may be fewer than the items the indices point into.

    Returns
    -------
    float
        0.0 for an empty catalogue.
    """
    top = _check_lists(lists, k, None)
    if n_items <= 0:
        return 0.0
    return float(np.unique(top[top >= 0]).size) / float(n_items)


def diversity_at_k(lists: np.ndarray, item_topics: np.ndarray, k: int) -> np.ndarray:
    """Intra-list topic diversity per user: mean pairwise Jaccard distance of topic sets.

    Parameters
    ----------
    lists : ndarray, int (n_users, >= k)
        Item indices, ``-1`` padding.
    item_topics : ndarray, bool (n_items, n_topics)
        Multi-hot topics of each item.

    Returns
    -------
    ndarray, float64 (n_users,)
        0.0 for a list of fewer than two items.
    """
    topics = np.asarray(item_topics, dtype=np.float32)
    top = _check_lists(lists, k, len(topics))
    valid = top >= 0
    x = topics[np.where(valid, top, 0)] * valid[:, :, None]  # (n, k, t)
    inter = np.einsum("ukt,ujt->ukj", x, x)
    size = x.sum(axis=2)
    union = size[:, :, None] + size[:, None, :] - inter
    dist = 1.0 - np.divide(inter, union, out=np.ones_like(inter), where=union > 0)
    pair = valid[:, :, None] & valid[:, None, :] & np.triu(np.ones((k, k), dtype=bool), 1)[None]
    n_pairs = pair.sum(axis=(1, 2))
    total = (dist * pair).sum(axis=(1, 2), dtype=np.float64)
    return np.divide(total, n_pairs, out=np.zeros(len(top)), where=n_pairs > 0)


def self_information(train_users: np.ndarray, n_users: int) -> np.ndarray:
    """Return ``-log2((n_i + 1) / (N + 1))`` per item.

    Parameters
    ----------
    train_users : ndarray, int (n_items,)
        Users with a positive training engagement on each item.
    n_users : int
        Number of users ``N``.

    Raises
    ------
    ConfigError
        If a count is negative or exceeds ``n_users``.
    """
    counts = np.asarray(train_users, dtype=np.float64)
    if counts.size and (counts.min() < 0 or counts.max() > n_users):
        raise ConfigError(f"train_users counts must lie in 0..n_users={n_users}")
    return -np.log2((counts + 1.0) / (float(n_users) + 1.0))


def novelty_at_k(lists: np.ndarray, item_information: np.ndarray, k: int) -> np.ndarray:
    """Mean self-information of each user's top-k items (0 for an empty list).

    Parameters
    ----------
    lists : ndarray, int (n_users, >= k)
    item_information : ndarray, float (n_items,)
        From :func:`self_information`.

    Returns
    -------
    ndarray, float64 (n_users,)
    """
    info = np.asarray(item_information, dtype=np.float64)
    top = _check_lists(lists, k, len(info))
    valid = top >= 0
    total = np.where(valid, info[np.where(valid, top, 0)], 0.0).sum(axis=1)
    n = valid.sum(axis=1)
    return np.divide(total, n, out=np.zeros(len(top)), where=n > 0)


def exposure_shares(lists: np.ndarray, item_targets: Sequence[Sequence[str]], k: int) -> dict[str, float]:
    """Share of the pushed top-k slots that go to items targeted at each code.

    An item with an empty target list ("everyone"/"everywhere") counts under
    ``"*"``; an item targeted at several codes counts for each. Shares are over
    all filled slots, so they sum to 1 only when no item has several targets.

    Parameters
    ----------
    lists : ndarray, int (n_users, >= k)
    item_targets : sequence of sequences of str, length n_items
        ``target_regions`` (or ``target_groups``) of each item.

    Returns
    -------
    dict
        Code -> share, codes sorted; empty when no slot is filled.
    """
    top = _check_lists(lists, k, len(item_targets))
    filled = top[top >= 0]
    if filled.size == 0:
        return {}
    idx, counts = np.unique(filled, return_counts=True)
    totals: dict[str, float] = {}
    for i, c in zip(idx, counts):
        for code in list(item_targets[i]) or ["*"]:
            totals[code] = totals.get(code, 0.0) + float(c)
    return {code: totals[code] / float(filled.size) for code in sorted(totals)}


# ---- intervals -----------------------------------------------------------------


def bootstrap_ci(
    values: np.ndarray, *, n_boot: int = 1000, seed: int | None = 0, level: float = 0.95
) -> np.ndarray:
    """Percentile bootstrap interval of the mean of each column.

    Users are resampled with replacement, the same resamples for every column
    (so intervals of metrics or policies evaluated on the same users are paired).

    Parameters
    ----------
    values : ndarray, float (n_users,) or (n_users, n_metrics)
    n_boot : int
        Number of resamples (>= 1).
    seed : int or None
        Seed of the resampling (see :func:`recsys.seeds.check_random_state`).
    level : float
        Coverage of the interval, in (0, 1).

    Returns
    -------
    ndarray, float64 (n_metrics, 2) or (2,)
        Lower and upper bounds; NaN for no users.

    Raises
    ------
    ConfigError
        If ``n_boot`` or ``level`` is out of range.
    """
    if not is_int(n_boot) or n_boot < 1:
        raise ConfigError(f"n_boot must be a positive int, got {n_boot!r}")
    if not isinstance(level, float) or not 0.0 < level < 1.0:
        raise ConfigError(f"level must be a float in (0, 1), got {level!r}")
    vals = np.asarray(values, dtype=np.float64)
    flat = vals.ndim == 1
    vals = vals[:, None] if flat else vals
    n, m = vals.shape
    if n == 0:
        out = np.full((m, 2), np.nan)
        return out[0] if flat else out
    rng = check_random_state(seed)
    means = np.empty((n_boot, m))
    chunk = max(1, min(n_boot, 20_000_000 // max(n, 1)))  # bound the (chunk, n) count matrix
    p = np.full(n, 1.0 / n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        counts = rng.multinomial(n, p, size=stop - start).astype(np.float64)
        means[start:stop] = counts @ vals / n
    alpha = (1.0 - level) / 2.0
    out = np.quantile(means, [alpha, 1.0 - alpha], axis=0).T
    return out[0] if flat else out


def paired_difference_ci(
    values: np.ndarray, reference: np.ndarray, *, n_boot: int = 1000, seed: int | None = 0, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Mean per-user difference ``values - reference`` with a paired bootstrap interval.

    The two policies were judged on the same users, so the users are resampled
    once and both means are taken over the same resample: the interval is that
    of the mean of the per-user differences (:func:`bootstrap_ci` on them).
    A policy against itself gets exactly ``[0, 0]``; a policy ahead of another
    for every user gets an interval strictly above 0.

    Parameters
    ----------
    values, reference : ndarray, float (n_users,) or (n_users, n_metrics)
        One row per user, the same users in the same order.
    n_boot, seed, level
        As :func:`bootstrap_ci` (same seed and users: the same resamples).

    Returns
    -------
    (ndarray, ndarray)
        The mean differences ``(n_metrics,)`` (or a scalar array) and their
        intervals ``(n_metrics, 2)`` (or ``(2,)``); NaN for no users.

    Raises
    ------
    ConfigError
        If the shapes differ, or as :func:`bootstrap_ci`.
    """
    a = np.asarray(values, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape or a.ndim not in (1, 2):
        raise ConfigError(f"paired values need the same (n_users[, n_metrics]) shape, got {a.shape} and {b.shape}")
    diff = a - b
    mean = diff.mean(axis=0) if len(diff) else np.full(diff.shape[1:], np.nan)
    return np.asarray(mean), bootstrap_ci(diff, n_boot=n_boot, seed=seed, level=level)
