"""Push history store: buckets, commit/replace, cap usage and de-duplication windows."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from recsys.config import PushConfig
from recsys.exceptions import ConfigError
from recsys.push import history as H
from recsys.push.channels import channel_rules
from recsys.push.hashing import user_buckets
from recsys.taxonomy import load_taxonomy

D = dt.date(2026, 7, 1)
CH = ("app_push", "wechat", "e_reader")


def _commit(store, day, kind, rows):
    staged = store.root.parent / f"staged-{day}-{kind}"
    staged.mkdir()
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "channel"])
    buckets = user_buckets(frame["user_id"], store.n_buckets)
    for b in np.unique(buckets):
        H.write_bucket(staged, int(b), frame[buckets == b])
    store.commit(day, kind, staged)


def test_store_records_bucket_count(tmp_path):
    H.HistoryStore.open(tmp_path / "h", 4)
    H.HistoryStore.open(tmp_path / "h", 4)
    with pytest.raises(ConfigError, match="history_buckets is 8 but the history at .* has 4 buckets"):
        H.HistoryStore.open(tmp_path / "h", 8)


def test_commit_read_skip_and_replace(tmp_path):
    store = H.HistoryStore.open(tmp_path / "h", 4)
    _commit(store, D, "nightly", [("u1", "i1", "app_push"), ("u2", "i2", "wechat")])
    _commit(store, D, "camp", [("u1", "i9", "app_push")])
    _commit(store, D - dt.timedelta(days=1), "nightly", [("u1", "i3", "app_push")])
    everything = store.read(range(4), first=D - dt.timedelta(days=5), last=D)
    assert sorted(everything["item_id"]) == ["i1", "i2", "i3", "i9"]
    assert set(everything[everything.item_id == "i3"]["day"]) == {pd.Timestamp("2026-06-30")}
    skipped = store.read(range(4), first=D, last=D, skip=(D, "nightly"))
    assert skipped["item_id"].tolist() == ["i9"]
    # a re-run replaces its own rows and nobody else's
    _commit(store, D, "nightly", [("u3", "i4", "app_push")])
    again = store.read(range(4), first=D, last=D)
    assert sorted(again["item_id"]) == ["i4", "i9"]
    only_u1 = store.read(range(4), first=D - dt.timedelta(days=5), last=D, user_ids=["u1"])
    assert sorted(only_u1["item_id"]) == ["i3", "i9"]


def test_a_chunk_reads_only_its_buckets(tmp_path):
    store = H.HistoryStore.open(tmp_path / "h", 4)
    users = [f"u{i}" for i in range(40)]
    _commit(store, D, "nightly", [(u, "i1", "app_push") for u in users])
    buckets = user_buckets(users, 4)
    got = store.read([1], first=D, last=D)
    assert sorted(got["user_id"]) == sorted(u for u, b in zip(users, buckets) if b == 1)


def test_window_reaches_dedup_days_both_ways(tmp_path):
    store = H.HistoryStore.open(tmp_path / "h", 1)
    for offset, item in [(-180, "old"), (-179, "inside"), (179, "planned"), (180, "far")]:
        _commit(store, D + dt.timedelta(days=offset), "nightly", [("u1", item, "wechat")])
    got = H.read_window(store, [0], D, 180)
    assert sorted(got["item_id"]) == ["inside", "planned"]
    pairs = H.dedup_pairs(pd.concat([got, got]))
    assert sorted(pairs["item_id"]) == ["inside", "planned"] and set(pairs["user_id"]) == {"u1"}


def test_cap_usage_known_answer():
    day = pd.Timestamp(D)
    rows = [
        ("u1", "app_push", -6),
        ("u1", "app_push", -6),
        ("u1", "app_push", 0),
        ("u1", "app_push", 3),
        ("u1", "app_push", 3),
        ("u1", "app_push", 3),
        ("u1", "wechat", -7),
        ("u2", "wechat", 0),
        ("u2", "wechat", 6),
        ("u2", "wechat", 7),
        ("zz", "wechat", 0),
        ("u1", "tv", 0),
    ]
    history = pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [f"i{n}" for n in range(len(rows))],
            "channel": [r[1] for r in rows],
            "day": [day + pd.Timedelta(days=r[2]) for r in rows],
        }
    )
    daily, weekly = H.cap_usage(history, pd.Index(["u1", "u2", "u3"]), D, CH)
    assert daily.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    # u1 app_push: window [-6, 0] has 3; window [-3, 3] has 4 (0 and three on +3)
    # u2 wechat: windows holding day 0 and +6 -> 2; day -7 (u1) and +7 (u2) are outside every window
    assert weekly.tolist() == [[4, 0, 0], [0, 2, 0], [0, 0, 0]]


def test_remaining_and_emergency():
    rules = list(channel_rules(PushConfig(), load_taxonomy()).values())  # caps 5/20, 8/30, 8/30
    daily = np.array([[5, 0, 7], [1, 0, 0]])
    weekly = np.array([[10, 30, 7], [19, 0, 0]])
    assert H.remaining(daily, weekly, rules).tolist() == [[0, 0, 1], [1, 8, 8]]
    assert H.remaining(daily, weekly, rules, ignore_daily=True).tolist() == [[10, 0, 23], [1, 30, 30]]


@pytest.mark.parametrize("kind", ["", "Night", "a b", "../x", "-x", "夜间"])
def test_bad_kind(kind):
    with pytest.raises(ConfigError, match="campaign name"):
        H.validate_kind(kind)


def test_good_kind():
    assert H.validate_kind("heat_warning-2") == "heat_warning-2"


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(
    offsets=st.lists(st.integers(min_value=-10, max_value=10), max_size=30),
    daily_cap=st.integers(min_value=0, max_value=4),
    weekly_cap=st.integers(min_value=0, max_value=9),
)
def test_remaining_room_never_breaks_a_cap(offsets, daily_cap, weekly_cap):
    """Brute force: adding the room tonight keeps every day and every 7-day window holding it within the caps
    (or adds nothing when the history already breaks one), and one more would break a cap."""
    from recsys.push.channels import ChannelRules

    rule = ChannelRules("app_push", 3, daily_cap, weekly_cap, dt.time(8), dt.time(21))
    history = pd.DataFrame(
        {
            "user_id": ["u"] * len(offsets),
            "item_id": [f"i{n}" for n in range(len(offsets))],
            "channel": ["app_push"] * len(offsets),
            "day": [pd.Timestamp(D) + pd.Timedelta(days=o) for o in offsets],
        }
    )
    daily, weekly = H.cap_usage(history, pd.Index(["u"]), D, ["app_push"])
    room = int(H.remaining(daily, weekly, [rule])[0, 0])
    counts = pd.Series(offsets).value_counts()

    def ok(extra: int) -> bool:
        per_day = counts.add(pd.Series({0: extra}), fill_value=0)
        windows = [per_day[(per_day.index >= s) & (per_day.index <= s + 6)].sum() for s in range(-6, 1)]
        return per_day.get(0, 0) <= daily_cap and max(windows) <= weekly_cap

    assert room >= 0
    if room:
        assert ok(room) and not ok(room + 1)
    else:
        assert not ok(1)
