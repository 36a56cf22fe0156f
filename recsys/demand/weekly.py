"""Demand week by week: engagements, rates (shrunk when the cell is small), shares and per-capita counts.

Levels, coarse to fine: ``group``, ``group_region`` and
``group_sub_group_region``. A cell's engagement rate is shrunk toward its
parent's (finest -> group x region -> group -> the city's rate of the topic
that week) with the weight of ``shrinkage_impressions`` impressions, so a
cell of twelve impressions does not report a 50% rate from six clicks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.config import DemandConfig

#: level -> the segment columns it keeps (the others read None = all)
DEMAND_LEVELS: dict[str, tuple[str, ...]] = {
    "group": ("group",),
    "group_region": ("group", "region"),
    "group_sub_group_region": ("group", "sub_group", "region"),
}
_PARENT = {"group_region": "group", "group_sub_group_region": "group_region"}
COUNTS = ("impressions", "positives", "reads")


def demand_table(counts: pd.DataFrame, residents: pd.DataFrame, week_starts: list[pd.Timestamp], config: DemandConfig) -> pd.DataFrame:
    """Weekly demand per topic x segment at every level of :data:`DEMAND_LEVELS`.

    Parameters
    ----------
    counts : DataFrame
        Daily counts (:func:`recsys.demand.aggregate.daily_counts`).
    residents : DataFrame
        Users per group x sub_group x region.
    week_starts : list of Timestamp
        The first moment of each week of the window.
    config : DemandConfig

    Returns
    -------
    DataFrame
        ``level``, ``week`` (0 = oldest), ``week_start``, ``group``,
        ``sub_group``, ``region`` (None = all), ``topic``, ``impressions``,
        ``positives``, ``reads``, ``rate`` (positives per impression),
        ``rate_shrunk``, ``share`` (of the segment's positives that week),
        ``residents``, ``positives_per_1k`` and ``reads_per_1k`` (per 1,000
        residents).
    """
    m = float(config.shrinkage_impressions)
    weekly = counts.assign(week=counts["day"] // 7).drop(columns="day")
    city = weekly.groupby(["week", "topic"], as_index=False)[list(COUNTS)].sum()
    city_rate = (city["positives"] / city["impressions"].where(city["impressions"] > 0)).fillna(0.0)
    parent_rate = city.assign(parent=city_rate.to_numpy())[["week", "topic", "parent"]]
    parent_keys: tuple[str, ...] = ()
    frames = []
    for level, keys in DEMAND_LEVELS.items():
        frame = weekly.groupby(["week", *keys, "topic"], as_index=False)[list(COUNTS)].sum()
        frame = frame.merge(parent_rate, on=["week", *parent_keys, "topic"], how="left")
        with np.errstate(invalid="ignore", divide="ignore"):
            frame["rate"] = frame["positives"] / frame["impressions"].where(frame["impressions"] > 0)
        frame["rate_shrunk"] = (frame["positives"] + m * frame["parent"].fillna(0.0)) / (frame["impressions"] + m).where(
            frame["impressions"] + m > 0
        )
        total = frame.groupby(["week", *keys])["positives"].transform("sum")
        frame["share"] = (frame["positives"] / total.where(total > 0)).astype("float64")
        people = residents.groupby(list(keys), as_index=False)["residents"].sum()
        frame = frame.merge(people, on=list(keys), how="left")
        frame["residents"] = frame["residents"].fillna(0).astype("int64")
        per = 1000.0 / frame["residents"].where(frame["residents"] > 0)
        frame["positives_per_1k"] = frame["positives"] * per
        frame["reads_per_1k"] = frame["reads"] * per
        parent_rate = frame[["week", *keys, "topic", "rate_shrunk"]].rename(columns={"rate_shrunk": "parent"})
        parent_keys = keys
        frame["level"] = level
        frames.append(frame.drop(columns="parent"))
    out = pd.concat(frames, ignore_index=True)
    for col in ("group", "sub_group", "region"):
        out[col] = out[col].astype(object).where(out[col].notna(), None) if col in out else None
    out["week_start"] = out["week"].map(dict(enumerate(week_starts)))
    cols = [
        "level", "week", "week_start", "group", "sub_group", "region", "topic", *COUNTS, "rate", "rate_shrunk",
        "share", "residents", "positives_per_1k", "reads_per_1k",
    ]
    out = out[cols]
    out["week"] = out["week"].astype("int64")
    return out.sort_values(["level", "week", "group", "sub_group", "region", "topic"], na_position="first").reset_index(drop=True)
