"""Differences of means with 95% intervals, clustered by user.

The holdout is a random draw of users (a salted hash), so comparing the mean
outcome of pushed-arm users with the holdout's is an unbiased estimate of the
push's effect, and a normal interval around the difference is honest once each
arm holds a few dozen users (the outcomes are counts; their means are close to
normal well before that at city scale). When several nights are pooled, one
user contributes a row per night: those rows are not independent, so the
variance of each mean is the cluster-robust (sandwich) one with the user as the
cluster; with one night per user it reduces to the usual ``s^2 / n``
(times ``n / (n - 1)``).

Everything here works on whole arrays at once, by cell: a cell is one value of
a breakdown (a group, a region, a channel), so a city of millions is a handful
of ``bincount`` calls, not a Python loop over users.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: two-sided 95% normal quantile
Z95 = 1.959963984540054


def distinct(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an integer array.

    ``np.unique`` on int64 takes a hash path in NumPy 2 that was 3-5x slower
    than a plain sort on a city's night (millions of keys): sort, then keep
    the first of each run.
    """
    s = np.sort(np.asarray(keys))
    if not len(s):
        return s
    return s[np.concatenate(([True], s[1:] != s[:-1]))]


def distinct_inverse(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and, per input, the position of its value among them."""
    keys = np.asarray(keys)
    order = np.argsort(keys, kind="stable")
    s = keys[order]
    if not len(s):
        return s, np.zeros(0, dtype=np.int64)
    first = np.concatenate(([True], s[1:] != s[:-1]))
    inverse = np.empty(len(keys), dtype=np.int64)
    inverse[order] = np.cumsum(first) - 1
    return s[first], inverse


@dataclass(frozen=True)
class ArmMoments:
    """Sufficient statistics of one arm per cell, for the cluster-robust variance.

    Per cell: ``n`` rows, ``clusters`` distinct users, ``sum_y``, and the
    cluster sums ``sum_yc2`` (sum over users of their total squared),
    ``sum_nc_yc`` (rows x total, summed) and ``sum_nc2`` (rows squared,
    summed). Arrays of shape (n_cells,).
    """

    n: np.ndarray
    clusters: np.ndarray
    sum_y: np.ndarray
    sum_yc2: np.ndarray
    sum_nc_yc: np.ndarray
    sum_nc2: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        """Mean outcome per cell (NaN for an empty cell)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sum_y / self.n

    @property
    def var_of_mean(self) -> np.ndarray:
        """Cluster-robust variance of each cell's mean (NaN below two clusters)."""
        m = self.mean
        with np.errstate(invalid="ignore", divide="ignore"):
            # sum over clusters of (Y_c - n_c m)^2, expanded so it needs only the sums above
            spread = self.sum_yc2 - 2.0 * m * self.sum_nc_yc + m * m * self.sum_nc2
            g = self.clusters
            out = np.where(g > 1, g / (g - 1) * np.maximum(spread, 0.0) / (self.n * self.n), np.nan)
        return out


def cluster_moments(yc: np.ndarray, nc: np.ndarray, cell: np.ndarray, n_cells: int) -> ArmMoments:
    """Per-cell moments of one arm from per-user totals (a user is one cluster).

    Parameters
    ----------
    yc : ndarray float (g,)
        Each user's outcome summed over their rows (nights).
    nc : ndarray float or int (g,)
        Each user's number of rows (nights in this arm); users with 0 are ignored.
    cell : ndarray int (g,)
        Each user's cell, in ``0 .. n_cells - 1``.
    n_cells : int

    Returns
    -------
    ArmMoments
    """
    yc = np.asarray(yc, dtype=np.float64)
    nc = np.asarray(nc, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.int64)
    present = nc > 0
    if not present.all():
        yc, nc, cell = yc[present], nc[present], cell[present]
    return ArmMoments(
        n=np.bincount(cell, weights=nc, minlength=n_cells),
        clusters=np.bincount(cell, minlength=n_cells).astype(np.float64),
        sum_y=np.bincount(cell, weights=yc, minlength=n_cells),
        sum_yc2=np.bincount(cell, weights=yc * yc, minlength=n_cells),
        sum_nc_yc=np.bincount(cell, weights=nc * yc, minlength=n_cells),
        sum_nc2=np.bincount(cell, weights=nc * nc, minlength=n_cells),
    )


def arm_moments(y: np.ndarray, cell: np.ndarray, cluster: np.ndarray | None, n_cells: int) -> ArmMoments:
    """Per-cell moments of outcome ``y`` (one arm's rows).

    Parameters
    ----------
    y : ndarray float (n,)
        Outcome per row.
    cell : ndarray int (n,)
        Cell of each row, in ``0 .. n_cells - 1``.
    cluster : ndarray int (n,) or None
        The user of each row; None when every row is its own user.
    n_cells : int

    Returns
    -------
    ArmMoments
    """
    y = np.asarray(y, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.int64)
    if cluster is None:
        return cluster_moments(y, np.ones(len(y)), cell, n_cells)
    # one entry per (user, cell): a user's rows in a cell form one cluster
    key = np.asarray(cluster, dtype=np.int64) * n_cells + cell
    uniq, inverse = distinct_inverse(key)
    yc = np.bincount(inverse, weights=y, minlength=len(uniq))
    nc = np.bincount(inverse, minlength=len(uniq)).astype(np.float64)
    return cluster_moments(yc, nc, uniq % n_cells, n_cells)


@dataclass(frozen=True)
class Difference:
    """Treated minus holdout per cell: point, 95% interval, p-value (arrays of n_cells)."""

    treated_mean: np.ndarray
    holdout_mean: np.ndarray
    diff: np.ndarray
    low: np.ndarray
    high: np.ndarray
    p_value: np.ndarray


def difference(treated: ArmMoments, holdout: ArmMoments, *, min_users: int) -> Difference:
    """Difference of means with a normal 95% interval per cell.

    Cells where either arm has fewer than ``min_users`` users get the point
    estimate but no interval (NaN): a normal interval on a handful of users
    would claim more than the data know.
    """
    m1, m0 = treated.mean, holdout.mean
    diff = m1 - m0
    se = np.sqrt(treated.var_of_mean + holdout.var_of_mean)
    enough = (treated.clusters >= min_users) & (holdout.clusters >= min_users)
    se = np.where(enough, se, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.abs(diff) / se
    p = np.array([math.erfc(v / math.sqrt(2.0)) if np.isfinite(v) else np.nan for v in z])
    # a zero standard error with a zero difference: nothing to tell apart
    p = np.where((se == 0) & (diff == 0), 1.0, p)
    return Difference(m1, m0, diff, diff - Z95 * se, diff + Z95 * se, p)


def mean_interval(moments: ArmMoments, *, min_users: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean per cell with a normal 95% interval (NaN below ``min_users`` users)."""
    m = moments.mean
    se = np.where(moments.clusters >= min_users, np.sqrt(moments.var_of_mean), np.nan)
    return m, m - Z95 * se, m + Z95 * se
