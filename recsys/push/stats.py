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
    task: ChunkTask,
    rows: pd.DataFrame,
    chosen: np.ndarray,
    topics: ItemTopics,
    seconds: float,
    row_users: np.ndarray | None = None,
) -> dict[str, Any]:
    """Counts of one chunk for the run manifest (``row_users``: each row's position among the
    task's users, when the caller has them)."""
    ids = object_index(task.user_ids)
    has_channel = (chosen >= 0).any(axis=1)
    counts, row_users = _counts(ids, task.groups, task.regions, rows, topics, row_users)
    pushed = np.zeros(len(ids), dtype=bool)
    pushed[row_users[row_users >= 0]] = True  # (a row of a user outside the chunk marks nobody)
    return {
        "chunk": int(task.chunk),
        "users": int(task.n_users),
        **counts,
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
    return _counts(ids, groups, regions, rows, topics)[0]


def _by(labels: np.ndarray, users: np.ndarray, row_users: np.ndarray) -> dict[str, dict[str, int]]:
    """Per label (sorted; missing labels left out): users among ``users`` and rows of ``row_users``.

    Counted by integer codes (a bincount), not by counting Python strings.
    """
    codes, names = pd.factorize(labels[users])
    n = len(names)
    own = np.flatnonzero(codes >= 0)
    user_counts = np.bincount(codes[own], minlength=n)
    # the rows' labels by their user's code: every row's user is among ``users``
    at = np.searchsorted(users, row_users)
    row_codes = codes[at]
    row_count = np.bincount(row_codes[row_codes >= 0], minlength=n)
    order = sorted(range(n), key=lambda i: names[i])
    return {str(names[i]): {"users": int(user_counts[i]), "rows": int(row_count[i])} for i in order if user_counts[i]}


def _counts(
    ids: pd.Index,
    groups: np.ndarray,
    regions: np.ndarray,
    rows: pd.DataFrame,
    topics: ItemTopics,
    row_users: np.ndarray | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """:func:`row_counts` and each row's position in ``ids`` (looked up unless given)."""
    rows = with_object_ids(rows)
    if row_users is None:
        row_users = ids.get_indexer(rows[C.USER_ID])
    pushed_users = np.unique(row_users)  # ascending: _by finds each row's user in it by a search
    groups, regions = np.asarray(groups, dtype=object), np.asarray(regions, dtype=object)
    channel_codes, channels = pd.factorize(rows[C.CHANNEL].to_numpy(dtype=object))
    n_channels = max(len(channels), 1)
    # a (user, channel) pair counts its user once on that channel
    pairs = np.unique(row_users.astype(np.int64) * n_channels + channel_codes)
    channel_users = np.bincount(pairs % n_channels, minlength=len(channels))
    channel_rows = np.bincount(channel_codes, minlength=len(channels))
    entry_rows, codes = topics.entries(rows[C.ITEM_ID].to_numpy())
    per_topic = np.bincount(codes, minlength=len(topics.names))
    counts = {
        "pushed_users": int(len(pushed_users)),
        "rows": int(len(rows)),
        "by_group": _by(groups, pushed_users, row_users),
        "by_region": _by(regions, pushed_users, row_users),
        "by_channel": {
            str(channels[c]): {"users": int(channel_users[c]), "rows": int(channel_rows[c])}
            for c in sorted(range(len(channels)), key=lambda c: channels[c])
        },
        "by_topic": {topics.names[t]: int(n) for t, n in enumerate(per_topic) if n},
    }
    return counts, row_users


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
