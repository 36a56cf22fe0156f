"""Ranking signals computed at training time, for the learned ranker's features and candidates.

* **Popularity at several recency windows and levels.** For each half-life
  ``h`` of ``[ranker] popularity_half_lives_days``, the decayed count of
  distinct users with a positive engagement on each item, as a *share* of the
  level's engagement, at four levels: the city, each audience group, each
  region and each group x region segment. Each level is shrunk toward the
  next by its evidence (empirical Bayes): ``share = (c + a * parent) / (N + a)``
  with ``N`` the level row's total (decayed) engagement and ``a`` estimated
  from the data (:func:`shrinkage_strength`), so a segment of four users says
  almost nothing and one of 40,000 says a lot. A group and a region shrink to
  the city; a segment to the mean of its group's and its region's shares.
* **Newcomer popularity** (``[ranker] newcomer_days`` > 0; off by default):
  the same shrunk shares over the pairs a user
  engaged with in their first ``newcomer_days`` (the days from the user's
  earliest positive engagement in the log): what people engage with when
  they arrive -- starter items, onboarding pages -- which is not what the
  whole population engaged with lately, and the one thing known about a
  user with no history yet. Read from each pair's latest positive time, as
  everything here (the nightly update has those and nothing older).
* **Trend counts**: distinct users with a positive engagement on each item in
  the last ``d`` days (``popularity_windows_days``), city-wide -- exactly what
  the ``recent_popular`` baseline counts, so the ranker can reproduce it.
* **Co-engagement**: item-to-item cosine of the users who engaged with both
  (or, with ``coengagement_weights = "regression"``, item-to-item ridge
  regression weights: :mod:`recsys.training.item_regression`),
  the ``coengagement_neighbours`` best per item (sparse), and each user's
  ``recent_items`` most recent positive items, which seed the co-engagement
  candidates and feature: a CSR of each user's own length, so the memory
  follows the users' real histories (a city user has 3-4 positives in 60
  days), not ``n_users x recent_items``.
* **Activity**: per user, distinct positive items and recent (30-day
  half-life) positive engagement; per item, impressions logged.

Everything is arrays (no Python objects per user or item) so the bundle maps
them read-only into every worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys import columns as C
from recsys.config import RankerConfig
from recsys.exceptions import ArtifactError
from recsys.taxonomy import Taxonomy
from recsys.training.item_regression import regression_neighbours

if TYPE_CHECKING:
    from recsys.bundle import BundleReader, BundleWriter

# item rows per block of the co-engagement product (bounds its temporary)
_COENG_BLOCK = 256
# bounds of the estimated shrinkage strength (pseudo-engagements)
_ALPHA_MIN, _ALPHA_MAX = 1.0, 1e6
#: half-life of the users' recent-activity signal
ACTIVITY_HALF_LIFE_DAYS = 30.0


@dataclass
class Signals:
    """The training-time arrays the ranking features read.

    Attributes
    ----------
    popularity_levels : ndarray of float32, shape (n_half_lives, 1 + G + R + G*R, n_items)
        Shrunk popularity shares; rows: the city, then groups, regions and
        segments (``1 + G + R + g * R + r``) in taxonomy order.
    popularity_windows : ndarray of float32, shape (n_windows, n_items)
        Distinct users with a positive engagement in the last ``d`` days.
    shrinkage : ndarray of float32, shape (n_half_lives, 3)
        The estimated strength ``a`` of the group, region and segment levels.
    coengagement_indptr, coengagement_indices, coengagement_data : ndarray
        CSR (n_items x n_items) of the best co-engaged neighbours (cosine).
    user_activity : ndarray of float32, shape (n_users, 2)
        Distinct positive items; decayed recent positive engagement.
    item_exposures : ndarray of float32, shape (n_items,)
        Impressions logged.
    newcomer_levels : ndarray of float32, same shape as ``popularity_levels``, or None
        Shrunk popularity over the users' first ``newcomer_days`` of engagement;
        ``None`` when ``newcomer_days`` is 0 (the default) and for a bundle
        written before it (the features read 0 then).
    user_recent_indptr, user_recent_indices : ndarray of int64, int32, or None
        CSR (n_users rows) of each user's most recent positive items, the most
        recent first, at most ``recent_items``; read through :meth:`recent_items`.
        ``None`` for a bundle written before them (it holds ``user_recent_items``).
    user_recent_items : ndarray of int32, shape (n_users, recent_items), or None
        The fixed -1 padded array of a bundle written before the CSR, read as
        it is; ``None`` otherwise.
    """

    popularity_levels: np.ndarray
    popularity_windows: np.ndarray
    shrinkage: np.ndarray
    coengagement_indptr: np.ndarray
    coengagement_indices: np.ndarray
    coengagement_data: np.ndarray
    user_activity: np.ndarray
    item_exposures: np.ndarray
    newcomer_levels: np.ndarray | None = None
    user_recent_indptr: np.ndarray | None = None
    user_recent_indices: np.ndarray | None = None
    user_recent_items: np.ndarray | None = None

    #: field names, the bundle's array names
    ARRAYS = (
        "popularity_levels",
        "popularity_windows",
        "shrinkage",
        "coengagement_indptr",
        "coengagement_indices",
        "coengagement_data",
        "user_activity",
        "item_exposures",
    )
    #: arrays a bundle written before them lacks (loaded as ``None``); a bundle holds either the
    #: recent items' CSR or (written before it) their fixed array
    OPTIONAL = ("newcomer_levels", "user_recent_indptr", "user_recent_indices", "user_recent_items")

    @classmethod
    def empty(cls, n_users: int, n_items: int, taxonomy: Taxonomy, config: RankerConfig) -> "Signals":
        """Neutral signals (no engagement): all zero, no neighbours."""
        n_rows = level_rows(taxonomy)
        return cls(
            popularity_levels=np.zeros((len(config.popularity_half_lives_days), n_rows, n_items), np.float32),
            popularity_windows=np.zeros((len(config.popularity_windows_days), n_items), np.float32),
            shrinkage=np.zeros((len(config.popularity_half_lives_days), 3), np.float32),
            coengagement_indptr=np.zeros(n_items + 1, np.int64),
            coengagement_indices=np.zeros(0, np.int32),
            coengagement_data=np.zeros(0, np.float32),
            user_recent_indptr=np.zeros(n_users + 1, np.int64),
            user_recent_indices=np.zeros(0, np.int32),
            user_activity=np.zeros((n_users, 2), np.float32),
            item_exposures=np.zeros(n_items, np.float32),
            newcomer_levels=(
                np.zeros((len(config.popularity_half_lives_days), n_rows, n_items), np.float32)
                if config.newcomer_days > 0 else None
            ),
        )

    def save(self, writer: "BundleWriter") -> None:
        """Write each array by its field name (the bundle component protocol, :mod:`recsys.bundle`)."""
        for name in self.ARRAYS:
            writer.array(name, getattr(self, name))
        for name in self.OPTIONAL:
            if getattr(self, name) is not None:
                writer.array(name, getattr(self, name))

    @classmethod
    def load(cls, reader: "BundleReader") -> "Signals":
        """Read what :meth:`save` wrote (memory-mapped when the reader is)."""
        optional = {name: reader.array(name) for name in cls.OPTIONAL if reader.has(f"{name}.npy")}
        if "user_recent_indptr" not in optional and "user_recent_items" not in optional:
            raise ArtifactError(
                f"{reader.root}: user_recent_indptr.npy (or an older bundle's user_recent_items.npy) "
                "missing from the model bundle; retrain with `recsys train`"
            )
        return cls(**{name: reader.array(name) for name in cls.ARRAYS}, **optional)

    def recent_items(self, rows: np.ndarray) -> np.ndarray:
        """The given users' most recent positive items (the co-engagement seeds), most recent first.

        Parameters
        ----------
        rows : ndarray of int, shape (m,)
            User rows; -1 (a user the bundle does not know, as
            :class:`~recsys.ranking.users.UserBatch` marks them) has none.

        Returns
        -------
        ndarray of int32, shape (m, w)
            -1 padded; ``w`` is the longest of these users' lists (0 when none
            has any), or ``recent_items`` for a bundle written before the CSR.
        """
        rows = np.asarray(rows, dtype=np.int64)
        if self.user_recent_indptr is None:
            # a bundle written before the CSR: its fixed array, read as it is
            known = rows >= 0
            return np.where(known[:, None], self.user_recent_items[np.where(known, rows, 0)], -1).astype(np.int32, copy=False)
        start = self.user_recent_indptr[rows]
        # row -1 reads the last offset as its start and the first (0) as its end: a count <= 0, none
        count = np.maximum(self.user_recent_indptr[rows + 1] - start, 0)
        width = int(count.max()) if count.size else 0
        out = np.full((rows.size, width), -1, np.int32)
        slot = np.arange(width)
        fill = slot < count[:, None]
        out[fill] = self.user_recent_indices[(start[:, None] + slot)[fill]]
        return out

    def coengagement(self) -> sp.csr_matrix:
        """The neighbour matrix as scipy CSR (views, no copy)."""
        n = len(self.coengagement_indptr) - 1
        return sp.csr_matrix(
            (self.coengagement_data, self.coengagement_indices, self.coengagement_indptr), shape=(n, n)
        )


def level_rows(taxonomy: Taxonomy) -> int:
    """Rows of the popularity table: city, groups, regions, segments."""
    g, r = len(taxonomy.groups), len(taxonomy.regions)
    return 1 + g + r + g * r


def level_offsets(taxonomy: Taxonomy) -> tuple[int, int, int]:
    """First row of the groups, the regions and the segments in the popularity table."""
    g, r = len(taxonomy.groups), len(taxonomy.regions)
    return 1, 1 + g, 1 + g + r


def shrinkage_strength(counts: np.ndarray, parent: np.ndarray) -> float:
    """Empirical-Bayes strength ``a`` of a level whose rows shrink toward ``parent`` shares.

    Under a Dirichlet-multinomial model, a row with ``N`` engagements has
    ``sum_i (x_i - p_i)^2 = rho * sum_i p_i (1 - p_i)`` in expectation with
    ``rho = (N + a) / (N (1 + a))``; the moment estimate pools every row:
    ``a = sum N (1 - rho) / sum (N rho - 1)``. Rows no more spread than
    sampling noise give a large ``a`` (shrink fully); rows far apart, a small one.

    Parameters
    ----------
    counts : ndarray, shape (L, n_items)
        The level's (decayed) counts per row.
    parent : ndarray, shape (L, n_items)
        The share each row shrinks toward.

    Returns
    -------
    float
        In ``[1, 1e6]``.
    """
    n = counts.sum(axis=1)
    use = n > 1.0
    if use.sum() < 2:
        return _ALPHA_MAX
    x = counts[use] / n[use, None]
    p = parent[use]
    spread = ((x - p) ** 2).sum(axis=1)
    noise = (p * (1 - p)).sum(axis=1)
    ok = noise > 0
    rho = spread[ok] / noise[ok]
    nn = n[use][ok]
    den = float((nn * rho - 1).sum())
    num = float((nn * (1 - rho)).sum())
    if den <= 0:
        return _ALPHA_MAX
    return float(np.clip(num / den, _ALPHA_MIN, _ALPHA_MAX))


def _shrink(counts: np.ndarray, parent: np.ndarray, alpha: float) -> np.ndarray:
    n = counts.sum(axis=1, keepdims=True)
    return (counts + alpha * parent) / (n + alpha)


def _share(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def popularity_levels(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    age_days: np.ndarray,
    user_group: np.ndarray,
    user_region: np.ndarray,
    n_groups: int,
    n_regions: int,
    n_items: int,
    half_lives: list[float],
) -> tuple[np.ndarray, np.ndarray]:
    """Shrunk popularity shares per half-life and level (see the module docstring).

    Parameters
    ----------
    user_idx, item_idx : ndarray of int64, shape (n,)
        Distinct (user, item) positive pairs.
    age_days : ndarray of float64, shape (n,)
        Days from the pair's latest positive engagement to the as-of time.
    user_group, user_region : ndarray of int64, shape (n_users,)
        Taxonomy positions of each user's group and region.
    n_groups, n_regions, n_items : int
    half_lives : list of float

    Returns
    -------
    levels : ndarray of float32, shape (len(half_lives), 1 + G + R + G*R, n_items)
    strengths : ndarray of float32, shape (len(half_lives), 3)
    """
    seg = user_group[user_idx] * n_regions + user_region[user_idx]
    n_seg = n_groups * n_regions
    out = np.zeros((len(half_lives), 1 + n_groups + n_regions + n_seg, n_items), np.float32)
    strengths = np.zeros((len(half_lives), 3), np.float32)
    for w, h in enumerate(half_lives):
        weight = np.exp2(-age_days / float(h))
        by_seg = np.bincount(seg * n_items + item_idx, weights=weight, minlength=n_seg * n_items)
        by_seg = by_seg.reshape(n_groups, n_regions, n_items)
        by_group = by_seg.sum(axis=1)
        by_region = by_seg.sum(axis=0)
        city = _share(by_group.sum(axis=0))
        a_g = shrinkage_strength(by_group, np.broadcast_to(city, by_group.shape))
        a_r = shrinkage_strength(by_region, np.broadcast_to(city, by_region.shape))
        group_share = _shrink(by_group, city[None, :], a_g)
        region_share = _shrink(by_region, city[None, :], a_r)
        seg_counts = by_seg.reshape(n_seg, n_items)
        parent = 0.5 * (group_share[:, None, :] + region_share[None, :, :]).reshape(n_seg, n_items)
        a_s = shrinkage_strength(seg_counts, parent)
        seg_share = _shrink(seg_counts, parent, a_s)
        out[w, 0] = city
        out[w, 1 : 1 + n_groups] = group_share
        out[w, 1 + n_groups : 1 + n_groups + n_regions] = region_share
        out[w, 1 + n_groups + n_regions :] = seg_share
        strengths[w] = (a_g, a_r, a_s)
    return out, strengths


def newcomer_pairs(user: np.ndarray, seconds: np.ndarray, n_users: int, days: float) -> np.ndarray:
    """Which (user, item) pairs fall in their user's first ``days`` of engagement.

    Parameters
    ----------
    user : ndarray of int64, shape (n,)
        Each pair's user.
    seconds : ndarray of float64, shape (n,)
        Each pair's (latest) positive engagement time, in seconds on any common origin.
    n_users : int
    days : float
        Length of a user's first stretch, counted from their earliest pair.

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    if len(user) == 0:
        return np.zeros(0, dtype=bool)
    first = np.full(n_users, np.inf)
    np.minimum.at(first, user, seconds)
    return seconds - first[user] <= float(days) * 86_400.0


def coengagement(positives: sp.csr_matrix, neighbours: int) -> sp.csr_matrix:
    """Each item's ``neighbours`` most co-engaged items (cosine of their user sets).

    Parameters
    ----------
    positives : csr_matrix, shape (n_users, n_items)
        Binary: the user engaged positively with the item.
    neighbours : int

    Returns
    -------
    csr_matrix of float32, shape (n_items, n_items)
        No self pairs; computed in blocks of items so the temporary stays small.
    """
    p = positives.tocsr().astype(np.float32)
    p.data[:] = 1.0
    n_items = p.shape[1]
    pt = p.T.tocsr()
    norm = np.sqrt(np.asarray(p.sum(axis=0), dtype=np.float64).ravel())
    inv = np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 0)
    counts = np.zeros(n_items, dtype=np.int64)
    indices: list[np.ndarray] = []
    data: list[np.ndarray] = []
    for lo in range(0, n_items, _COENG_BLOCK):
        hi = min(n_items, lo + _COENG_BLOCK)
        block = (pt[lo:hi] @ p).tocsr()
        # cosines of the whole block at once; a Python step is left only for the rows with more
        # than `neighbours` co-engaged items, and it is one argpartition (linear in the row)
        rows = np.repeat(np.arange(lo, hi), np.diff(block.indptr))
        cols = block.indices
        vals = block.data.astype(np.float64) * inv[rows] * inv[cols]
        keep = cols != rows
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
        per_row = np.bincount(rows - lo, minlength=hi - lo)
        starts = np.cumsum(per_row) - per_row
        chosen = np.ones(len(rows), dtype=bool)
        for r in np.flatnonzero(per_row > neighbours).tolist():
            s, e = starts[r], starts[r] + per_row[r]
            top = np.argpartition(-vals[s:e], neighbours - 1)[:neighbours]
            chosen[s:e] = False
            chosen[s + top] = True
        rows, cols, vals = rows[chosen], cols[chosen], vals[chosen]
        kept = np.bincount(rows - lo, minlength=hi - lo)
        best = sp.csr_matrix(
            (vals.astype(np.float32), cols.astype(np.int32), np.concatenate([[0], np.cumsum(kept)])),
            shape=(hi - lo, n_items),
        )
        best.sort_indices()  # CSR order within each row: by item
        indices.append(best.indices)
        data.append(best.data)
        counts[lo:hi] = kept
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return sp.csr_matrix(
        (
            np.concatenate(data) if data else np.zeros(0, np.float32),
            np.concatenate(indices) if indices else np.zeros(0, np.int32),
            indptr,
        ),
        shape=(n_items, n_items),
    )


def _rank_within(keys: np.ndarray) -> np.ndarray:
    """Each entry's position among the entries of its key, in array order (a groupby's cumcount, in numpy)."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    at = np.arange(len(keys))
    starts = np.ones(len(keys), dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    first = np.maximum.accumulate(np.where(starts, at, 0))
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = at - first
    return rank


def compute_signals(
    events: pd.DataFrame,
    user_index: np.ndarray,
    item_index: np.ndarray,
    users: pd.DataFrame,
    n_items: int,
    end: pd.Timestamp,
    taxonomy: Taxonomy,
    config: RankerConfig,
    *,
    types: np.ndarray | None = None,
    distinct_pairs: bool = False,
) -> Signals:
    """Compute every training-time signal from the clean events before ``end``.

    Parameters
    ----------
    events : DataFrame
        Clean events (``user_id, item_id, event_type, timestamp``), already cut at ``end``.
    user_index, item_index : ndarray of int64, shape (len(events),)
        Each event's user and item index (-1: not in the maps).
    users : DataFrame
        The users table (``group``, ``region``), row i = user index i.
    n_items : int
    end : Timestamp
        The as-of time; ages count back from it.
    taxonomy : Taxonomy
    config : RankerConfig
    types : ndarray of int64, shape (len(events),), optional
        Each event's position in ``recsys.columns.EVENT_TYPES``
        (:func:`recsys.training.interactions.type_codes`), when the caller has them.
    distinct_pairs : bool, default False
        The caller's promise that no (user, item) pair has two positive events
        (the nightly update's one stored latest event per pair): the search for
        each pair's latest is skipped.

    Returns
    -------
    Signals
    """
    # heavy: the events -> matrices module loads with training, not with serving (which reads
    # Signals from a bundle through this module; tests/test_architecture.py)
    from recsys.training.interactions import positions, type_codes

    n_users = len(users)
    out = Signals.empty(n_users, n_items, taxonomy, config)
    known = (user_index >= 0) & (item_index >= 0)
    codes = type_codes(events[C.EVENT_TYPE]) if types is None else np.asarray(types)
    shown = known & (codes == C.IMPRESSION_CODE)
    out.item_exposures = np.bincount(item_index[shown], minlength=n_items).astype(np.float32)
    pos = known & np.isin(codes, C.POSITIVE_CODES)
    if not pos.any():
        return out
    rows = np.flatnonzero(pos)
    # seconds before the as-of time (tz-aware arithmetic: no unit or zone conversions), positives only
    before = (pd.Timestamp(end) - events[C.TIMESTAMP].iloc[rows]).dt.total_seconds().to_numpy()
    frame = pd.DataFrame({"u": user_index[rows], "i": item_index[rows], "t": -before})
    # one row per (user, item): its latest positive engagement
    pairs = frame.sort_values("t", kind="stable")
    if not distinct_pairs:
        pairs = pairs.drop_duplicates(["u", "i"], keep="last")
    u = pairs["u"].to_numpy(np.int64)
    i = pairs["i"].to_numpy(np.int64)
    age = np.maximum(-pairs["t"].to_numpy(np.float64), 0) / 86_400.0
    # looked up in Arrow (-1: not a taxonomy code): no Python string per user
    groups = positions(users[C.GROUP], list(taxonomy.groups))
    regions = positions(users[C.REGION], list(taxonomy.regions))
    # a user whose codes the taxonomy lacks (cannot happen after validation) counts in the first ones
    groups, regions = np.maximum(groups, 0), np.maximum(regions, 0)
    out.popularity_levels, out.shrinkage = popularity_levels(
        u, i, age, groups, regions, len(taxonomy.groups), len(taxonomy.regions), n_items,
        list(config.popularity_half_lives_days),
    )
    if config.newcomer_days > 0:
        early = newcomer_pairs(u, pairs["t"].to_numpy(np.float64), n_users, config.newcomer_days)
        out.newcomer_levels, _ = popularity_levels(
            u[early], i[early], age[early], groups, regions, len(taxonomy.groups), len(taxonomy.regions), n_items,
            list(config.popularity_half_lives_days),
        )
    out.popularity_windows = np.stack(
        [np.bincount(i[age < float(d)], minlength=n_items).astype(np.float32) for d in config.popularity_windows_days]
    ) if len(config.popularity_windows_days) else out.popularity_windows
    positives = sp.csr_matrix((np.ones(len(u), np.float32), (u, i)), shape=(n_users, n_items))
    if config.coengagement_weights == "regression":
        co = regression_neighbours(positives, config.coengagement_neighbours, config.regression_l2, config.regression_items)
    else:
        co = coengagement(positives, config.coengagement_neighbours)
    out.coengagement_indptr = co.indptr.astype(np.int64)
    out.coengagement_indices = co.indices.astype(np.int32)
    out.coengagement_data = co.data.astype(np.float32)
    # pairs are in time order: the last R per user, most recent first, each user's row as long as
    # their history (up to R)
    r = config.recent_items
    if r > 0:
        newest_u, newest_i = u[::-1], i[::-1]
        rank = _rank_within(newest_u)
        take = rank < r
        kept_u = newest_u[take]
        indptr = np.zeros(n_users + 1, np.int64)
        np.cumsum(np.bincount(kept_u, minlength=n_users), out=indptr[1:])
        indices = np.empty(int(indptr[-1]), np.int32)
        indices[indptr[kept_u] + rank[take]] = newest_i[take]
        out.user_recent_indptr, out.user_recent_indices = indptr, indices
    out.user_activity[:, 0] = np.bincount(u, minlength=n_users)
    out.user_activity[:, 1] = np.bincount(u, weights=np.exp2(-age / ACTIVITY_HALF_LIFE_DAYS), minlength=n_users)
    return out
