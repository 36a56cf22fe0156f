"""Where demand runs ahead of supply: priority content to commission, per segment, with the evidence.

For a topic in a group x region segment (and in a whole group):

* ``demand_share`` -- the topic's share of the segment's positive
  engagements in the recent weeks;
* ``trend`` -- the change of its engagement rate (:mod:`recsys.demand.trends`),
  counted only when significant and rising: ``trend_factor = 1 + change``;
* ``fresh_share`` -- the topic's share of the fresh items the segment may be
  pushed (published in the last ``fresh_days``; add-one smoothed, so a topic
  with no fresh item has a small share rather than zero).

``gap_ratio = demand_share x trend_factor / fresh_share``: above 1 the
segment engages with the topic more than new content on it arrives. A row
is a *gap* when the ratio is at least :data:`GAP_RATIO` and the cell has
enough engagement to judge; gaps are ranked by the ratio.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.config import DemandConfig

#: a topic is a gap when its demand share x trend is at least this multiple of its fresh-supply share
GAP_RATIO = 1.5


def gap_table(
    demand: pd.DataFrame, trends: pd.DataFrame, seg_supply: pd.DataFrame, weeks: int, config: DemandConfig
) -> pd.DataFrame:
    """Rank topic x segment gaps between demand and fresh supply.

    Parameters
    ----------
    demand : DataFrame
        :func:`recsys.demand.weekly.demand_table`.
    trends : DataFrame
        :func:`recsys.demand.trends.trend_table`.
    seg_supply : DataFrame
        :func:`recsys.demand.supply.segment_supply` (group x region x topic).
    weeks : int
    config : DemandConfig

    Returns
    -------
    DataFrame
        ``rank`` (1 = first to commission; 0 = not a gap), ``level``,
        ``group``, ``region`` (None = the whole group), ``topic``,
        ``positives_recent``, ``demand_share``, ``change``, ``q``,
        ``direction``, ``trend_factor``, ``items``, ``fresh_items``,
        ``fresh_share``, ``gap_ratio``, ``gap`` (bool).
    """
    recent = demand[demand["week"] >= weeks - config.recent_weeks]
    frames = []
    for level, keys in (("group_region", ("group", "region")), ("group", ("group",))):
        d = recent[recent["level"] == level].groupby([*keys, "topic"], as_index=False)["positives"].sum()
        total = d.groupby(list(keys))["positives"].transform("sum")
        d["demand_share"] = d["positives"] / total.where(total > 0)
        s = seg_supply.groupby([*keys, "topic"], as_index=False)[["items", "fresh_items"]].sum()
        if level == "group":
            # a whole group's supply: what its regions may get on average
            n_regions = seg_supply["region"].nunique()
            s[["items", "fresh_items"]] = s[["items", "fresh_items"]] / max(n_regions, 1)
        n_topics = seg_supply["topic"].nunique()
        s_total = s.groupby(list(keys))["fresh_items"].transform("sum")
        s["fresh_share"] = (s["fresh_items"] + 1.0) / (s_total + n_topics)
        t = trends[trends["level"] == level][[*keys, "topic", "change", "q", "direction"]]
        frame = d.merge(s, on=[*keys, "topic"], how="left").merge(t, on=[*keys, "topic"], how="left")
        frame["level"] = level
        frames.append(frame.rename(columns={"positives": "positives_recent"}))
    out = pd.concat(frames, ignore_index=True)
    if "region" not in out:
        out["region"] = None
    out["region"] = out["region"].astype(object).where(out["region"].notna(), None)
    out["direction"] = out["direction"].fillna("not tested")
    out["trend_factor"] = np.where(out["direction"] == "rising", 1.0 + out["change"].fillna(0.0), 1.0)
    out["fresh_share"] = out["fresh_share"].fillna(out["fresh_share"].min() if out["fresh_share"].notna().any() else 1.0)
    out["gap_ratio"] = out["demand_share"].fillna(0.0) * out["trend_factor"] / out["fresh_share"]
    out["gap"] = (out["gap_ratio"] >= GAP_RATIO) & (out["positives_recent"] >= config.min_positives)
    out = out.sort_values(["gap", "gap_ratio"], ascending=[False, False]).reset_index(drop=True)
    out["rank"] = np.where(out["gap"], np.arange(1, len(out) + 1), 0)
    for col in ("items", "fresh_items"):
        out[col] = out[col].fillna(0.0).astype("float64")
    cols = [
        "rank", "level", "group", "region", "topic", "positives_recent", "demand_share", "change", "q", "direction",
        "trend_factor", "items", "fresh_items", "fresh_share", "gap_ratio", "gap",
    ]
    out["positives_recent"] = out["positives_recent"].astype("int64")
    return out[cols]
