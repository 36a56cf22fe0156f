"""Which topics are rising or falling in which segments: a test that knows about count noise and the calendar.

For each topic x segment cell the engagement *rate per impression* of the
recent weeks is compared with that of the weeks before them. Rates, not raw
counts: the old system decides how often a topic is shown (exposure), the
residents decide how often they engage with it, and only the second is
demand. The comparison is a log rate ratio with a binomial variance,
inflated by the cell's overdispersion (week-to-week scatter beyond binomial
noise, estimated from the cell's weekly counts and shrunk toward the
median of its level), turned into a two-sided z-test; the p-values of all
cells tested together get Benjamini-Hochberg q-values.

Campaign days are not demand: on Disaster Prevention Day the disaster topics
are pushed more and clicked more every year. Each topic's counts on the days
its campaigns run (from the taxonomy's ``[[calendar]]``), and the
``calendar_margin_days`` after them, are left out of both periods, so a
yearly surge does not read as a new trend. ``change_all_days`` reports what
the comparison would say with them kept.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from recsys.config import DemandConfig

#: the segment levels tested, as the columns that define a segment
LEVELS: dict[str, tuple[str, ...]] = {
    "city": (),
    "group": ("group",),
    "region": ("region",),
    "group_region": ("group", "region"),
    "group_sub_group": ("group", "sub_group"),
}
SEGMENT_COLUMNS = ("group", "sub_group", "region")


def seasonal_mask(campaign: np.ndarray, margin_days: int) -> np.ndarray:
    """Days left out per topic: campaign days and the ``margin_days`` after each (bool (D, T))."""
    out = campaign.copy()
    for k in range(1, margin_days + 1):
        out[k:] |= campaign[:-k]
    return out


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values of p-values (NaN stays NaN)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if not m:
        return q
    pv = p[ok]
    order = np.argsort(pv)
    ranked = pv[order] * m / np.arange(1, m + 1)
    # q_(i) = min over j >= i of p_(j) m / j
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(ranked, 1.0)
    q[ok] = out
    return q


def _weekly(counts: pd.DataFrame, keys: tuple[str, ...], topics: list[str], drop: np.ndarray | None, weeks: int) -> pd.DataFrame:
    """Impressions and positives per (keys, topic, week), leaving out the ``drop`` (day, topic) pairs."""
    frame = counts
    if drop is not None:
        topic_pos = pd.Categorical(frame["topic"], categories=topics).codes
        keep = ~drop[frame["day"].to_numpy(), np.maximum(topic_pos, 0)] | (topic_pos < 0)
        frame = frame[keep]
    frame = frame.assign(week=frame["day"].to_numpy() // 7)
    return frame.groupby([*keys, "topic", "week"], as_index=False)[["impressions", "positives"]].sum()


def _compare(weekly: pd.DataFrame, keys: tuple[str, ...], weeks: int, recent: int, city: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per cell: the two periods' counts and the weekly scatter around the model (Pearson chi2, df).

    Without ``city`` (the city level) the model is one rate per period. With
    ``city`` (weekly counts per topic) a segment's expected count in a week is
    the rest of the city's rate that week times the segment's own ratio to it
    in that period: the week-to-week swings every segment shares (which items
    were pushed that week) are part of the model, not noise.
    """
    cells = [*keys, "topic"]
    w = weekly.assign(recent=weekly["week"] >= weeks - recent)
    period = w.groupby([*cells, "recent"])[["impressions", "positives"]].sum().unstack("recent", fill_value=0)
    out = pd.DataFrame(index=period.index)
    for flag, tag in ((False, "before"), (True, "recent")):
        for col in ("impressions", "positives"):
            out[f"{col}_{tag}"] = period[(col, flag)] if (col, flag) in period.columns else 0
    if city is None:
        base = pd.Series(1.0, index=w.index)
    else:
        c = w[[*cells, "week", "impressions", "positives"]].merge(
            city[["topic", "week", "impressions", "positives"]], on=["topic", "week"], suffixes=("", "_city"), how="left"
        )
        rest_n = (c["impressions_city"] - c["impressions"]).clip(lower=0)
        rest_y = (c["positives_city"] - c["positives"]).clip(lower=0)
        base = ((rest_y + 0.5) / (rest_n + 0.5)).set_axis(w.index)
    # expected_w = n_w x base_w x K_period, with K chosen so each period's expected total is its observed total
    w = w.assign(nb=w["impressions"] * base)
    k = w.groupby([*cells, "recent"])[["positives", "nb"]].transform("sum")
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = (w["nb"] * k["positives"] / k["nb"].where(k["nb"] > 0)).fillna(0.0).to_numpy()
        p = np.clip(expected / w["impressions"].where(w["impressions"] > 0).to_numpy(), 0.0, 1.0)
        var = expected * (1 - np.nan_to_num(p))
        chi = np.where(var > 0, (w["positives"].to_numpy() - expected) ** 2 / np.where(var > 0, var, 1.0), 0.0)
    w = w.assign(chi=chi, used=(var > 0).astype(int))
    scatter = w.groupby(cells)[["chi", "used"]].sum()
    out["chi2"] = scatter["chi"]
    out["df"] = (scatter["used"] - 2).clip(lower=0)
    return out.reset_index()


def _rate_ratio(frame: pd.DataFrame, prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
    """log rate ratio recent / before (with half-count smoothing) and its binomial variance."""
    y1, n1 = frame[f"{prefix}positives_recent"] + 0.5, frame[f"{prefix}impressions_recent"] + 0.5
    y0, n0 = frame[f"{prefix}positives_before"] + 0.5, frame[f"{prefix}impressions_before"] + 0.5
    log_rr = np.log(y1 / n1) - np.log(y0 / n0)
    var = (1 / y1 - 1 / n1) + (1 / y0 - 1 / n0)
    return log_rr.to_numpy(dtype=np.float64), np.maximum(var.to_numpy(dtype=np.float64), 1e-12)


_PERIOD_COUNTS = ("impressions_before", "positives_before", "impressions_recent", "positives_recent")


def _with_rest(cells: pd.DataFrame, city: pd.DataFrame, level: str) -> pd.DataFrame:
    """Add the rest of the city's counts per topic (the city's minus the cell's); the city level has none."""
    if level == "city":
        return cells.assign(**{f"rest_{c}": 0.0 for c in _PERIOD_COUNTS})
    merged = cells.merge(city[["topic", *_PERIOD_COUNTS]].rename(columns={c: f"city_{c}" for c in _PERIOD_COUNTS}), on="topic", how="left")
    for c in _PERIOD_COUNTS:
        merged[f"rest_{c}"] = (merged[f"city_{c}"].fillna(0) - merged[c]).clip(lower=0)
    return merged.drop(columns=[f"city_{c}" for c in _PERIOD_COUNTS])


def _effect(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The tested log effect and its binomial variance: the cell's own log rate ratio, minus the rest
    of the city's for a segment (a difference in differences), alone for the city level."""
    own, var = _rate_ratio(frame)
    rest, rest_var = _rate_ratio(frame, "rest_")
    segment = (frame["level"] != "city").to_numpy()
    return np.where(segment, own - rest, own), np.where(segment, var + rest_var, var)


def trend_table(
    counts: pd.DataFrame,
    campaign: np.ndarray,
    topics: list[str],
    weeks: int,
    config: DemandConfig,
) -> pd.DataFrame:
    """Test every topic x segment cell of every level for a change of engagement rate.

    A segment's change is measured against the rest of the city's change on
    the same topic (difference in differences): whatever moves a topic's
    rate everywhere -- its content ageing, a thin month of new items, a
    campaign the calendar does not list -- cancels, and what is left is the
    segment's own shift. The ``city`` level reports the topic's change itself.

    Parameters
    ----------
    counts : DataFrame
        :func:`recsys.demand.aggregate.daily_counts`' counts.
    campaign : ndarray of bool, shape (days, n_topics)
        Which topics a campaign lifts on each window day (taxonomy order).
    topics : list of str
        The taxonomy's topics (the columns of ``campaign``).
    weeks : int
        Weeks in the window.
    config : DemandConfig

    Returns
    -------
    DataFrame
        One row per cell: ``level``, ``group``/``sub_group``/``region`` (None
        = all), ``topic``, the two periods' impressions and positives (campaign
        days left out), ``rate_before``, ``rate_recent``, ``change_own`` (the
        segment's own relative change), ``change`` (the tested effect,
        relative: 0.38 = +38% against the rest of the city), ``ci_low`` /
        ``ci_high`` (95%, of ``change``), ``dispersion``, ``z``, ``p``, ``q``,
        ``direction`` (rising, falling, steady, or not tested),
        ``seasonal_days`` left out and ``change_all_days`` (``change`` with
        campaign days kept).
    """
    recent = config.recent_weeks
    drop = seasonal_mask(campaign, config.calendar_margin_days)
    city_weekly = _weekly(counts, (), topics, drop, weeks)
    city_kept = _compare(city_weekly, (), weeks, recent)
    city_naive = _compare(_weekly(counts, (), topics, None, weeks), (), weeks, recent)
    frames = []
    for level, keys in LEVELS.items():
        ref = None if level == "city" else city_weekly
        kept = _with_rest(_compare(_weekly(counts, keys, topics, drop, weeks), keys, weeks, recent, ref), city_kept, level)
        naive = _with_rest(_compare(_weekly(counts, keys, topics, None, weeks), keys, weeks, recent), city_naive, level)
        naive_effect, _ = _effect(naive.assign(level=level))
        kept = kept.merge(naive[[*keys, "topic"]].assign(change_all_days=np.expm1(naive_effect)), on=[*keys, "topic"], how="outer")
        for col in kept.columns:
            if col.startswith(("impressions_", "positives_", "rest_")) or col in ("chi2", "df"):
                kept[col] = kept[col].fillna(0)
        kept["level"] = level
        frames.append(kept)
    table = pd.concat(frames, ignore_index=True)
    for col in SEGMENT_COLUMNS:
        if col not in table:
            table[col] = None
        table[col] = table[col].astype(object).where(table[col].notna(), None)
    # users without a sub-group are no sub-group segment of their own
    table = table[~((table["level"] == "group_sub_group") & (table["sub_group"] == ""))].reset_index(drop=True)

    own, _ = _rate_ratio(table)
    log_effect, var = _effect(table)
    segment = (table["level"] != "city").to_numpy()
    has_rest = ~segment | ((table["rest_impressions_before"] > 0) & (table["rest_impressions_recent"] > 0)).to_numpy()
    testable = (
        (table["impressions_before"] > 0)
        & (table["impressions_recent"] > 0)
        & (table["positives_before"] + table["positives_recent"] >= 2 * config.min_positives)
    ).to_numpy() & has_rest
    raw = np.where(table["df"] > 0, table["chi2"] / table["df"].where(table["df"] > 0, 1), np.nan)
    # overdispersion: each cell's own estimate, shrunk toward its level's median (few weeks are noisy)
    pooled = table.assign(raw=raw)[testable & np.isfinite(raw)].groupby("level")["raw"].median()
    prior = np.maximum(table["level"].map(pooled).fillna(1.0).to_numpy(dtype=np.float64), 1.0)
    # (never below the median: a cell's few weeks can look calm by chance, not the other way round)
    phi = np.maximum((table["chi2"].to_numpy(dtype=np.float64) + 4 * prior) / (table["df"].to_numpy(dtype=np.float64) + 4), prior)
    se = np.sqrt(var * phi)
    z = np.where(testable, log_effect / se, np.nan)
    p = np.where(testable, 2 * stats.norm.sf(np.abs(z)), np.nan)
    q = benjamini_hochberg(p)
    change = np.expm1(log_effect)
    significant = testable & (q < config.alpha)
    direction = np.where(
        ~testable,
        "not tested",
        np.where(
            significant & (change >= config.min_change),
            "rising",
            np.where(significant & (change <= -config.min_change), "falling", "steady"),
        ),
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        rate_before = table["positives_before"] / table["impressions_before"].where(table["impressions_before"] > 0)
        rate_recent = table["positives_recent"] / table["impressions_recent"].where(table["impressions_recent"] > 0)
    season = drop.sum(axis=0)
    out = pd.DataFrame(
        {
            "level": table["level"],
            "group": table["group"],
            "sub_group": table["sub_group"],
            "region": table["region"],
            "topic": table["topic"],
            "impressions_before": table["impressions_before"].astype("int64"),
            "positives_before": table["positives_before"].astype("int64"),
            "impressions_recent": table["impressions_recent"].astype("int64"),
            "positives_recent": table["positives_recent"].astype("int64"),
            "rate_before": rate_before.astype("float64"),
            "rate_recent": rate_recent.astype("float64"),
            "change_own": np.expm1(own),
            "change": change,
            "ci_low": np.expm1(log_effect - 1.96 * se),
            "ci_high": np.expm1(log_effect + 1.96 * se),
            "dispersion": phi,
            "z": z,
            "p": p,
            "q": q,
            "direction": direction,
            "seasonal_days": table["topic"].map(dict(zip(topics, season.tolist()))).fillna(0).astype("int64"),
            "change_all_days": table["change_all_days"].astype("float64"),
        }
    )
    order = np.lexsort((-np.abs(np.nan_to_num(out["z"].to_numpy())), out["q"].fillna(2).to_numpy()))
    return out.iloc[order].reset_index(drop=True)
