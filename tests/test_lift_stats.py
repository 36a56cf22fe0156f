"""Differences of means and their intervals (``recsys.lift.stats``) on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np

from recsys.lift.stats import Z95, arm_moments, cluster_moments, difference, mean_interval


def test_one_row_per_user_is_the_usual_standard_error():
    rng = np.random.default_rng(0)
    y = rng.poisson(1.5, 400).astype(float)
    cell = np.arange(400) % 2
    m = arm_moments(y, cell, None, 2)
    for c in (0, 1):
        part = y[cell == c]
        assert math.isclose(m.mean[c], part.mean())
        assert math.isclose(m.var_of_mean[c], part.var(ddof=1) / len(part), rel_tol=1e-12)


def test_clusters_by_hand():
    # two users, three rows: user 0 has y = 1 and 3, user 1 has y = 2
    y = np.array([1.0, 3.0, 2.0])
    m = arm_moments(y, np.zeros(3, dtype=int), np.array([0, 0, 1]), 1)
    mean = 2.0
    spread = ((1 + 3) - 2 * mean) ** 2 + (2 - mean) ** 2  # cluster totals minus rows x mean
    assert m.clusters[0] == 2 and m.n[0] == 3
    assert math.isclose(m.var_of_mean[0], 2 / 1 * spread / 9)
    # the same rows as independent users give a different (here larger) variance
    flat = arm_moments(y, np.zeros(3, dtype=int), None, 1)
    assert not math.isclose(flat.var_of_mean[0], m.var_of_mean[0])


def test_clustered_equals_plain_when_each_user_has_one_row():
    rng = np.random.default_rng(1)
    y = rng.random(50)
    cell = rng.integers(0, 3, 50)
    a = arm_moments(y, cell, np.arange(50), 3)
    b = arm_moments(y, cell, None, 3)
    np.testing.assert_allclose(a.var_of_mean, b.var_of_mean)


def test_difference_interval_and_p_value():
    rng = np.random.default_rng(2)
    treated = rng.normal(1.2, 1.0, 2000)
    holdout = rng.normal(1.0, 1.0, 800)
    m1 = arm_moments(treated, np.zeros(2000, dtype=int), None, 1)
    m0 = arm_moments(holdout, np.zeros(800, dtype=int), None, 1)
    d = difference(m1, m0, min_users=30)
    se = math.sqrt(treated.var(ddof=1) / 2000 + holdout.var(ddof=1) / 800)
    diff = treated.mean() - holdout.mean()
    assert math.isclose(d.diff[0], diff)
    assert math.isclose(d.low[0], diff - Z95 * se) and math.isclose(d.high[0], diff + Z95 * se)
    assert math.isclose(d.p_value[0], math.erfc(abs(diff) / se / math.sqrt(2)))


def test_too_few_users_gets_no_interval():
    m1 = arm_moments(np.ones(10), np.zeros(10, dtype=int), None, 1)
    m0 = arm_moments(np.zeros(100), np.zeros(100, dtype=int), None, 1)
    d = difference(m1, m0, min_users=30)
    assert d.diff[0] == 1.0 and np.isnan(d.low[0]) and np.isnan(d.p_value[0])
    mean, low, high = mean_interval(m1, min_users=30)
    assert mean[0] == 1.0 and np.isnan(low[0]) and np.isnan(high[0])


def test_interval_coverage_on_known_populations():
    """Over many draws, the 95% interval covers the true difference about 95% of the time."""
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(400):
        t = rng.poisson(0.9, 300).astype(float)
        h = rng.poisson(0.6, 120).astype(float)
        d = difference(
            arm_moments(t, np.zeros(300, dtype=int), None, 1),
            arm_moments(h, np.zeros(120, dtype=int), None, 1),
            min_users=30,
        )
        hits += d.low[0] <= 0.3 <= d.high[0]
    assert 0.92 <= hits / 400 <= 0.98


def test_per_user_totals_give_the_row_result():
    """Totals per user (how lift pools nights) equal the moments of the rows themselves."""
    rng = np.random.default_rng(4)
    user = rng.integers(0, 40, 200)
    y = rng.poisson(1.0, 200).astype(float)
    cell = (user % 3).astype(np.int64)  # a user stays in one cell, as a group does
    rows = arm_moments(y, cell, user, 3)
    yc = np.bincount(user, weights=y, minlength=45)  # users 40..44 have no row: ignored
    nc = np.bincount(user, minlength=45)
    totals = cluster_moments(yc, nc, np.arange(45) % 3, 3)
    for name in ("n", "clusters", "sum_y", "sum_yc2", "sum_nc_yc", "sum_nc2"):
        np.testing.assert_allclose(getattr(totals, name), getattr(rows, name))
