"""What the catalogue offers: approved, unexpired items per topic x format x channel, and how fresh.

An item is *live* at ``as_of`` when it is approved, published before
``as_of`` and not expired then (the same rule the push applies); it is
*fresh* when it was published in the ``fresh_days`` before ``as_of``. An item
with several topics counts once under each. Its target audience is
everyone unless it names target groups or regions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from recsys import columns as C
from recsys.demand.aggregate import table_path
from recsys.taxonomy import Taxonomy

ITEM_COLUMNS = (C.ITEM_ID, C.TOPICS, C.FORMAT, C.TARGET_GROUPS, C.TARGET_REGIONS, C.REVIEW_STATUS, C.PUBLISHED_AT, C.EXPIRES_AT)


def _lists(values: pd.Series) -> pd.Series:
    return values.map(lambda v: [] if v is None or (isinstance(v, float) and np.isnan(v)) else list(v))


def live_items(data_dir: str | Path, as_of: pd.Timestamp, fresh_days: int) -> pd.DataFrame:
    """The items live at ``as_of``, one row per (item, topic), with ``fresh`` and their audience.

    Returns
    -------
    DataFrame
        ``item_id``, ``topic``, ``format``, ``target_groups``,
        ``target_regions`` (lists; empty = everyone), ``published_at``, ``fresh``.
    """
    path = table_path(data_dir, "items")
    names = pq.read_schema(path).names
    frame = pq.read_table(path, columns=[c for c in ITEM_COLUMNS if c in names]).to_pandas()
    for col in (C.TARGET_GROUPS, C.TARGET_REGIONS):
        frame[col] = _lists(frame[col]) if col in frame else [[] for _ in range(len(frame))]
    published = pd.to_datetime(frame[C.PUBLISHED_AT], utc=True) if C.PUBLISHED_AT in frame else pd.Series(pd.NaT, index=frame.index)
    expires = pd.to_datetime(frame[C.EXPIRES_AT], utc=True) if C.EXPIRES_AT in frame else pd.Series(pd.NaT, index=frame.index)
    status = frame[C.REVIEW_STATUS] if C.REVIEW_STATUS in frame else pd.Series("approved", index=frame.index)
    live = (status == "approved") & ~(published >= as_of) & ~(expires <= as_of)
    frame = frame.assign(
        published_at=published, fresh=(published >= as_of - pd.Timedelta(days=fresh_days)) & (published < as_of)
    )[live.to_numpy()]
    frame = frame.assign(topic=_lists(frame[C.TOPICS])).explode("topic").dropna(subset=["topic"])
    keep = ["item_id", "topic", C.FORMAT, C.TARGET_GROUPS, C.TARGET_REGIONS, "published_at", "fresh"]
    return frame[keep].drop_duplicates(subset=["item_id", "topic"]).reset_index(drop=True)


def supply_table(items: pd.DataFrame, taxonomy: Taxonomy) -> pd.DataFrame:
    """Live and fresh items per topic x format x channel (each channel that carries the format).

    Returns
    -------
    DataFrame
        ``topic``, ``format``, ``channel``, ``items`` (live), ``fresh_items``,
        ``items_for_everyone`` (no target group or region),
        ``target_groups`` (the groups some of them target, list).
    """
    targeted = items[C.TARGET_GROUPS].map(len) > 0
    everyone = ~targeted & (items[C.TARGET_REGIONS].map(len) == 0)
    frame = items.assign(everyone=everyone)
    rows = []
    for (topic, fmt), part in frame.groupby(["topic", C.FORMAT], sort=True):
        groups = sorted({g for gs in part[C.TARGET_GROUPS] for g in gs})
        for channel, formats in taxonomy.channel_formats.items():
            if fmt in formats:
                rows.append(
                    {
                        "topic": topic,
                        "format": fmt,
                        "channel": channel,
                        "items": len(part),
                        "fresh_items": int(part["fresh"].sum()),
                        "items_for_everyone": int(part["everyone"].sum()),
                        "target_groups": groups,
                    }
                )
    columns = ["topic", "format", "channel", "items", "fresh_items", "items_for_everyone", "target_groups"]
    return pd.DataFrame(rows, columns=columns)


def segment_supply(items: pd.DataFrame, taxonomy: Taxonomy) -> pd.DataFrame:
    """Live and fresh items each group x region may be pushed, per topic.

    Returns
    -------
    DataFrame
        ``group``, ``region``, ``topic``, ``items``, ``fresh_items``.
    """
    topics = list(taxonomy.topics)
    topic_pos = pd.Categorical(items["topic"], categories=topics).codes
    ok_topic = topic_pos >= 0
    fresh = items["fresh"].to_numpy()
    g_ok = {g: items[C.TARGET_GROUPS].map(lambda gs, g=g: not gs or g in gs).to_numpy() for g in taxonomy.groups}
    r_ok = {r: items[C.TARGET_REGIONS].map(lambda rs, r=r: not rs or r in rs).to_numpy() for r in taxonomy.regions}
    rows = []
    for g in taxonomy.groups:
        for r in taxonomy.regions:
            ok = ok_topic & g_ok[g] & r_ok[r]
            live = np.bincount(topic_pos[ok], minlength=len(topics))
            new = np.bincount(topic_pos[ok & fresh], minlength=len(topics))
            rows.append(pd.DataFrame({"group": g, "region": r, "topic": topics, "items": live, "fresh_items": new}))
    return pd.concat(rows, ignore_index=True)
