"""Broadcast programmes scored on the synthetic city's ground truth, against popularity playlists.

A place's **simulated engagement** is the expected number of engagements per
audience member over its day: for each item it shows, the true probability
that a member of the audience engages (:meth:`GroundTruth.engagement_prob`
on the place's channel, at noon of the day), averaged over the residents of
each audience segment (the place's region, the segment's group and, when the
mix names it, sub-group), mixed by the audience shares, summed over the
items shown. Every policy fills the same slots under the same eligibility
rules; they differ only in what they choose:

* ``engine`` -- ``recsys broadcast`` (expected engagement per second, diversity);
* ``region_popular`` -- the items most engaged with in the place's district
  (in the bundle's log) that fit, most popular first;
* ``city_popular`` -- the same, city-wide.

The ratio engine / region_popular is the issue's target (>= 1.3).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.broadcast.places import load_places
from recsys.broadcast.programme import POLICIES, plan_programmes
from recsys.config import BroadcastConfig
from recsys.exceptions import DataError
from recsys.ranking import Recommender
from recsys.ranking.state import RankingState
from recsys.taxonomy import Taxonomy
from recsys.training.serving import TrainedModel

if TYPE_CHECKING:  # heavy: the synthetic city package (~90 ms) loads only when a truth folder is read
    from recsys.synthetic.truth import GroundTruth

SIMULATED = "simulated_engagement"


def _segment_prob(
    truth: GroundTruth,
    users: pd.DataFrame,
    region: str,
    channel: str,
    items: np.ndarray,
    keys: list[str],
    taxonomy: Taxonomy,
    at: pd.Timestamp,
) -> dict[str, np.ndarray]:
    """Mean true probability per audience key (group or sub-group code) of the region's residents, per item."""
    here = users[users[C.REGION] == region]
    known = set(truth.user_ids.tolist())
    here = here[here[C.USER_ID].isin(known)]
    if here.empty or not len(items):
        return {}
    prob = truth.engagement_prob(here[C.USER_ID].to_numpy(dtype=str), items, channel, at=at)
    sub = here[C.SUB_GROUP].astype(str).to_numpy() if C.SUB_GROUP in here.columns else np.full(len(here), "")
    group = here[C.GROUP].astype(str).to_numpy()
    out = {}
    for key in keys:
        members = (sub == key) if key in taxonomy.sub_groups else (group == key)
        if not members.any() and key in taxonomy.sub_groups:
            members = group == taxonomy.sub_groups[key]  # no resident of that sub-group here: its group
        if members.any():
            out[key] = prob[members].mean(axis=0)
    return out


def simulate(
    rows: pd.DataFrame, places: pd.DataFrame, truth: GroundTruth, users: pd.DataFrame, taxonomy: Taxonomy, day: dt.date
) -> pd.Series:
    """Simulated engagement of each place's programme (index ``place_id``; 0 for a place with no rows).

    Parameters
    ----------
    rows : pandas.DataFrame
        Programme rows (``place_id``, ``item_id``).
    places : pandas.DataFrame
        Normalized places (audience mixes).
    truth : GroundTruth
    users : pandas.DataFrame
        The city's users table (group, sub-group, region per resident).
    taxonomy : Taxonomy
    day : datetime.date
    """
    at = pd.Timestamp(f"{day.isoformat()}T12:00:00").tz_localize(taxonomy.tz)
    out = pd.Series(0.0, index=places[C.PLACE_ID].astype(str))
    by_place = rows.groupby(C.PLACE_ID)[C.ITEM_ID].apply(lambda s: s.astype(str).to_numpy())
    for (region, channel), block in places.groupby([C.REGION, C.CHANNEL], sort=True):
        ids = block[C.PLACE_ID].astype(str).tolist()
        shown = [by_place[p] for p in ids if p in by_place.index]
        if not shown:
            continue
        items = np.unique(np.concatenate(shown))
        col = {i: j for j, i in enumerate(items.tolist())}
        keys = sorted({k for mix in block[C.AUDIENCE] for k in mix})
        mean = _segment_prob(truth, users, region, channel, items, keys, taxonomy, at)
        for pid, mix in zip(ids, block[C.AUDIENCE]):
            if pid not in by_place.index:
                continue
            cols = np.array([col[i] for i in by_place[pid]], dtype=np.int64)
            total = sum(share * float(mean[k][cols].sum()) for k, share in mix.items() if k in mean)
            out[pid] = total
    return out


def evaluate_broadcast(
    state: RankingState,
    places: pd.DataFrame,
    day: dt.date,
    config: BroadcastConfig,
    truth: GroundTruth,
    users: pd.DataFrame,
) -> pd.DataFrame:
    """Every policy's programme for ``day``, scored on the truth, per place.

    Returns
    -------
    pandas.DataFrame
        One row per place: ``place_id, channel, region``, then per policy of
        :data:`~recsys.broadcast.programme.POLICIES` its simulated engagement
        (column = the policy's name) and the seconds it filled (``<policy>_filled_s``),
        and ``capacity_s``.

    Raises
    ------
    DataError
        If no place got a programme (nothing to compare).
    """
    out = places[[C.PLACE_ID, C.CHANNEL, C.REGION]].copy()
    out[C.PLACE_ID] = out[C.PLACE_ID].astype(str)
    for policy in POLICIES:
        prog = plan_programmes(state, places, day, config, policy=policy)
        out[policy] = simulate(prog.rows, places, truth, users, state.taxonomy, day).to_numpy()
        out[f"{policy}_filled_s"] = prog.places["filled_s"].to_numpy()
        out["capacity_s"] = prog.places["capacity_s"].to_numpy()
    if not (out[list(POLICIES)].to_numpy() > 0).any():
        raise DataError("broadcast evaluation: no place got a programme (no eligible item with a running time)")
    return out


def summarize(per_place: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Simulated engagement summed per ``by`` (e.g. ``["channel"]``), with the engine's ratio to each baseline."""
    keys = by if by else None
    cols = list(POLICIES) + ["capacity_s"]
    table = per_place.groupby(keys, sort=True)[cols].sum().reset_index() if keys else per_place[cols].sum().to_frame().T
    table["places"] = per_place.groupby(keys, sort=True).size().to_numpy() if keys else len(per_place)
    for base in POLICIES[1:]:
        table[f"vs_{base}"] = table["engine"] / table[base].where(table[base] > 0)
    return table


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in table.to_dict(orient="records"):
        out.append({k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()})
    for row in out:
        for k, v in row.items():
            if isinstance(v, float) and not np.isfinite(v):
                row[k] = None
    return out


def broadcast_metrics(
    model: TrainedModel,
    items: pd.DataFrame,
    users: pd.DataFrame,
    places: str | Path | pd.DataFrame,
    at: pd.Timestamp,
    truth: GroundTruth,
    config: BroadcastConfig | None = None,
) -> dict[str, Any]:
    """The evaluation's ``broadcast`` section: the day starting at ``at``, every policy scored on the truth.

    Parameters
    ----------
    model : TrainedModel
        The evaluated bundle (trained before ``at``).
    items, users : pandas.DataFrame
        The clean catalogue and users.
    places : path or DataFrame
        The places table.
    at : pandas.Timestamp
        The split time; the programmes are for the local day it falls in
        (the next day when it is not a midnight).
    truth : GroundTruth
    config : BroadcastConfig, optional

    Returns
    -------
    dict
        ``day``, ``places``, ``total`` (one record), ``by_channel`` and
        ``by_region`` (records): simulated engagement per policy, capacity,
        and the engine's ratio to each baseline.
    """
    state = Recommender.from_model(model, catalog=items).state
    tax = state.taxonomy
    local = at.tz_convert(tax.tz)
    day = local.date() if local == local.normalize() else local.date() + dt.timedelta(days=1)
    table = load_places(places, tax, users)
    per_place = evaluate_broadcast(state, table, day, config or BroadcastConfig(), truth, users)
    filled = {p: float(per_place[f"{p}_filled_s"].sum() / per_place["capacity_s"].sum()) for p in POLICIES}
    return {
        "day": day.isoformat(),
        "places": len(per_place),
        "fill_share": {p: round(v, 4) for p, v in filled.items()},
        "total": _records(summarize(per_place, []))[0],
        "by_channel": _records(summarize(per_place, [C.CHANNEL])),
        "by_region": _records(summarize(per_place, [C.REGION])),
    }
