"""The manifest's row counts by integer codes equal counting the labels themselves."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.push.lists import ItemTopics, object_index
from recsys.push.stats import row_counts


def _reference(ids: pd.Index, groups: np.ndarray, regions: np.ndarray, rows: pd.DataFrame) -> dict:
    """Counted with value_counts and a drop of duplicate (user, channel) pairs."""
    row_users = ids.get_indexer(rows[C.USER_ID])
    pushed = np.unique(row_users)

    def by(labels: np.ndarray) -> dict:
        users = pd.Series(labels[pushed], dtype=object).value_counts()
        per_row = pd.Series(labels[row_users], dtype=object).value_counts()
        return {str(k): {"users": int(users[k]), "rows": int(per_row.get(k, 0))} for k in sorted(users.index)}

    channel = rows[C.CHANNEL].to_numpy(dtype=object)
    first = ~pd.DataFrame({"u": row_users, "c": channel}).duplicated().to_numpy()
    return {
        "pushed_users": len(pushed),
        "rows": len(rows),
        "by_group": by(groups),
        "by_region": by(regions),
        "by_channel": {
            str(k): {"users": int(first[channel == k].sum()), "rows": int((channel == k).sum())} for k in sorted(set(channel))
        },
    }


def test_counts_equal_counting_the_labels() -> None:
    rng = np.random.default_rng(4)
    n = 400
    ids = object_index([f"u{i}" for i in rng.permutation(n)])
    groups = rng.choice(np.array(["farmer", "student", "elderly", None], dtype=object), n, p=[0.4, 0.3, 0.2, 0.1])
    regions = rng.choice(np.array(["qinglong", "funing", "beidaihe"], dtype=object), n)
    topics = ItemTopics.build(pd.Series([["health"], ["farming", "health"], []], index=object_index(["i0", "i1", "i2"])))
    # users reached on one or two channels, a few items each; a user's rows need not be adjacent
    users = rng.choice(n, 250, replace=False)
    rows = pd.DataFrame(
        {
            C.USER_ID: ids[np.repeat(users, rng.integers(1, 4, users.size))],
        }
    )
    rows[C.CHANNEL] = rng.choice(["wechat", "app_push", "sms"], len(rows))
    rows[C.ITEM_ID] = rng.choice(["i0", "i1", "i2"], len(rows))
    rows = rows.sample(frac=1.0, random_state=1).reset_index(drop=True)
    got = row_counts(ids, groups, regions, rows, topics)
    want = _reference(ids, groups, regions, rows)
    for key, value in want.items():
        assert got[key] == value, key
        if isinstance(value, dict):
            assert list(got[key]) == list(value), key  # the manifest's key order too
    assert got["by_topic"] == {"health": int(rows[C.ITEM_ID].isin(["i0", "i1"]).sum()), "farming": int((rows[C.ITEM_ID] == "i1").sum())}
    empty = row_counts(ids, groups, regions, rows.iloc[:0], topics)
    assert empty == {"pushed_users": 0, "rows": 0, "by_group": {}, "by_region": {}, "by_channel": {}, "by_topic": {}}


def test_row_positions_by_runs_equal_a_lookup_per_row() -> None:
    from recsys.push.lists import row_positions

    ids = object_index([f"u{i}" for i in range(50)])
    rng = np.random.default_rng(2)
    # lists: runs of one user's rows; a user may come back in a later channel's frame; an unknown id
    users = np.array([f"u{u}" for u in np.repeat(rng.integers(0, 50, 40), rng.integers(1, 5, 40))] + ["x", "x", "u3"], dtype=object)
    np.testing.assert_array_equal(row_positions(ids, users), ids.get_indexer(users))
    assert row_positions(ids, users[:1]).tolist() == ids.get_indexer(users[:1]).tolist()
    assert row_positions(ids, users[:0]).tolist() == []
