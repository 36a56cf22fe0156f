"""Counts of a push run for its manifest: per chunk, and merged over the chunks."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.push.lists import ItemTopics, object_index, with_object_ids
from recsys.push.plan import SKIP_CAPPED, SKIP_NO_ITEMS

if TYPE_CHECKING:
    from recsys.push.chunk import ChunkTask


def chunk_stats(
    task: ChunkTask, rows: pd.DataFrame, chosen: np.ndarray, topics: ItemTopics, seconds: float
) -> dict[str, Any]:
    """Counts of one chunk for the run manifest."""
    ids = object_index(task.user_ids)
    has_channel = (chosen >= 0).any(axis=1)
    pushed = ids.isin(rows[C.USER_ID])
    return {
        "chunk": int(task.chunk),
        "users": int(task.n_users),
        **row_counts(ids, task.groups, task.regions, rows, topics),
        "skipped": {SKIP_CAPPED: int((~has_channel).sum()), SKIP_NO_ITEMS: int((has_channel & ~pushed).sum())},
        "seconds": round(seconds, 3),
    }


def row_counts(
    ids: pd.Index, groups: np.ndarray, regions: np.ndarray, rows: pd.DataFrame, topics: ItemTopics
) -> dict[str, Any]:
    """Users reached and rows per group, region, channel and topic.

    Parameters
    ----------
    ids : Index of str
        The users (``groups`` / ``regions`` aligned with it); every row's user is among them.
    rows : DataFrame
        ``user_id, channel, item_id`` rows.
    topics : ItemTopics
        The catalogue's topics (an item counts once under each of its topics).

    Returns
    -------
    dict
        ``pushed_users``, ``rows``, ``by_group``, ``by_region``, ``by_channel``
        (each ``{code: {"users": n, "rows": n}}``) and ``by_topic`` (``{code: rows}``).
    """
    rows = with_object_ids(rows)
    row_users = ids.get_indexer(rows[C.USER_ID])
    pushed_users = np.unique(row_users)

    def by(labels: np.ndarray, users: np.ndarray, row_labels: np.ndarray) -> dict[str, dict[str, int]]:
        user_counts = pd.Series(labels[users], dtype=object).value_counts()
        row_count = pd.Series(row_labels, dtype=object).value_counts()
        return {
            str(k): {"users": int(user_counts[k]), "rows": int(row_count.get(k, 0))} for k in sorted(user_counts.index)
        }

    groups, regions = np.asarray(groups, dtype=object), np.asarray(regions, dtype=object)
    channel = rows[C.CHANNEL].to_numpy(dtype=object)
    first_of_user_channel = ~pd.DataFrame({"u": row_users, "c": channel}).duplicated().to_numpy()
    entry_rows, codes = topics.entries(rows[C.ITEM_ID].to_numpy())
    per_topic = np.bincount(codes, minlength=len(topics.names))
    return {
        "pushed_users": int(len(pushed_users)),
        "rows": int(len(rows)),
        "by_group": by(groups, pushed_users, groups[row_users]),
        "by_region": by(regions, pushed_users, regions[row_users]),
        "by_channel": {
            str(k): {"users": int(first_of_user_channel[channel == k].sum()), "rows": int((channel == k).sum())}
            for k in sorted(set(channel.tolist()))
        },
        "by_topic": {topics.names[t]: int(n) for t, n in enumerate(per_topic) if n},
    }


def merge_stats(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Add up chunk stats (counts summed key by key; seconds summed as CPU time)."""
    total: dict[str, Any] = {"chunks": 0, "users": 0, "pushed_users": 0, "rows": 0, "seconds": 0.0}
    nested: dict[str, Counter] = {}
    for part in parts:
        total["chunks"] += 1
        for key in ("users", "pushed_users", "rows"):
            total[key] += int(part.get(key, 0))
        total["seconds"] += float(part.get("seconds", 0.0))
        for key in ("by_group", "by_region", "by_channel"):
            for label, counts in part.get(key, {}).items():
                for metric, value in counts.items():
                    nested.setdefault(f"{key}.{metric}", Counter())[label] += int(value)
        for key in ("skipped", "by_topic"):
            for label, value in part.get(key, {}).items():
                nested.setdefault(key, Counter())[label] += int(value)
    for key in ("by_group", "by_region", "by_channel"):
        labels = sorted(set(nested.get(f"{key}.users", {})) | set(nested.get(f"{key}.rows", {})))
        total[key] = {
            label: {"users": int(nested[f"{key}.users"][label]), "rows": int(nested[f"{key}.rows"][label])}
            for label in labels
        }
    total["skipped"] = {k: int(v) for k, v in sorted(nested.get("skipped", Counter()).items())}
    total["by_topic"] = {k: int(v) for k, v in sorted(nested.get("by_topic", Counter()).items())}
    total["seconds"] = round(total["seconds"], 3)
    return total
