"""Who the push leaves behind: reach and engagement per group x region against the city and population shares.

Per group x region over the window: ``reach_rate`` (share of its residents
who got at least one push), ``engaged_rate`` (share with a positive
engagement), each divided by the city's rate (``reach_ratio``,
``engaged_ratio``), and ``push_ratio`` (its share of all impressions over its
share of the population). An audience is *under-served* when it has at least
``min_residents`` residents, its reach or engaged ratio is below
``underserved_ratio`` and the shortfall is significant (one-sided binomial
z-test against the city's rate, Benjamini-Hochberg over the audiences).
Under-served audiences are ranked by ``left_behind``: the residents who would
be engaged at the city's rate and are not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from recsys.config import DemandConfig
from recsys.demand.trends import benjamini_hochberg
from recsys.taxonomy import Taxonomy


def audience_table(reach: pd.DataFrame, taxonomy: Taxonomy, config: DemandConfig) -> pd.DataFrame:
    """Rank group x region audiences by how far the push leaves them behind.

    Parameters
    ----------
    reach : DataFrame
        ``group``, ``region``, ``residents``, ``reached``, ``engaged`` and
        ``impressions`` (:func:`recsys.demand.aggregate.daily_counts`).
    taxonomy : Taxonomy
    config : DemandConfig

    Returns
    -------
    DataFrame
        ``rank`` (1 = most left behind; 0 = not under-served), ``group``,
        ``region``, ``residents``, ``population_share``, ``reached``,
        ``reach_rate``, ``reach_ratio``, ``engaged``, ``engaged_rate``,
        ``engaged_ratio``, ``impressions``, ``push_ratio``, ``q``,
        ``left_behind``, ``status`` (under-served, ok, too few residents, no users).
    """
    grid = pd.MultiIndex.from_product([list(taxonomy.groups), list(taxonomy.regions)], names=["group", "region"]).to_frame(index=False)
    counted = {"residents": 0, "reached": 0, "engaged": 0, "impressions": 0}
    frame = grid.merge(reach, on=["group", "region"], how="left").fillna(counted)
    for col in ("residents", "reached", "engaged", "impressions"):
        frame[col] = frame[col].astype("int64")
    n = frame["residents"].to_numpy(dtype=np.float64)
    total = n.sum()
    city_reach = frame["reached"].sum() / total if total else np.nan
    city_engaged = frame["engaged"].sum() / total if total else np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        frame["population_share"] = n / total if total else np.nan
        frame["reach_rate"] = frame["reached"] / frame["residents"].where(frame["residents"] > 0)
        frame["engaged_rate"] = frame["engaged"] / frame["residents"].where(frame["residents"] > 0)
        frame["reach_ratio"] = frame["reach_rate"] / city_reach
        frame["engaged_ratio"] = frame["engaged_rate"] / city_engaged
        push_share = frame["impressions"] / max(frame["impressions"].sum(), 1)
        frame["push_ratio"] = push_share / frame["population_share"].where(frame["population_share"] > 0)
        # one-sided: is the audience below the city? (the worse of reach and engagement)
        z_reach = (frame["reach_rate"] - city_reach) / np.sqrt(city_reach * (1 - city_reach) / n)
        z_eng = (frame["engaged_rate"] - city_engaged) / np.sqrt(city_engaged * (1 - city_engaged) / n)
    z = np.fmin(z_reach.to_numpy(), z_eng.to_numpy())
    big = frame["residents"].to_numpy() >= config.min_residents
    p = np.where(big & np.isfinite(z), stats.norm.cdf(z), np.nan)
    frame["q"] = benjamini_hochberg(p)
    short = (frame["reach_ratio"] < config.underserved_ratio) | (frame["engaged_ratio"] < config.underserved_ratio)
    under = big & short.to_numpy() & (frame["q"].to_numpy() < config.alpha)
    frame["left_behind"] = np.where(big, np.maximum(city_engaged - frame["engaged_rate"].fillna(0), 0) * n, 0.0)
    frame["status"] = np.where(
        frame["residents"] == 0, "no users", np.where(~big, "too few residents", np.where(under, "under-served", "ok"))
    )
    frame = frame.sort_values(["status", "left_behind"], key=lambda s: s.map({"under-served": 0}).fillna(1) if s.name == "status" else -s).reset_index(drop=True)
    frame["rank"] = np.where(frame["status"] == "under-served", np.arange(1, len(frame) + 1), 0)
    cols = [
        "rank", "group", "region", "residents", "population_share", "reached", "reach_rate", "reach_ratio", "engaged",
        "engaged_rate", "engaged_ratio", "impressions", "push_ratio", "q", "left_behind", "status",
    ]
    return frame[cols]
