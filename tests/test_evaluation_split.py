"""Temporal and leave-last-n splits, relevant sets, population labels."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.evaluation.populations import iter_populations, population_labels
from recsys.evaluation.split import (
    LEAVE_LAST_N,
    TEMPORAL,
    leave_last_n_split,
    quantile_time,
    relevant_pairs,
    temporal_split,
)
from recsys.exceptions import ConfigError, SchemaError
from recsys.taxonomy import load_taxonomy

T0 = pd.Timestamp("2026-06-01T00:00:00Z")


def _events(rows):
    """rows: (user, item, type, hours after T0)."""
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "h"])
    df["timestamp"] = (T0 + pd.to_timedelta(df.pop("h"), unit="h")).astype("datetime64[us, UTC]")
    return df


EVENTS = _events(
    [
        ("u1", "a", "click", 0),
        ("u1", "b", "impression", 1),
        ("u2", "a", "read", 2),
        ("u1", "c", "share", 3),
        ("u1", "a", "like", 4),  # positive in train already: not relevant
        ("u2", "b", "dismiss", 5),  # negative: not relevant
        ("u2", "c", "impression", 6),  # exposure only: not relevant
        ("u3", "d", "complete", 7),
        ("u3", "d", "click", 8),  # duplicate positive pair counted once
    ]
)


def test_temporal_split_by_time():
    split = temporal_split(EVENTS, time="2026-06-01T11:00:00+08:00")  # = 03:00 UTC
    assert split.mode == TEMPORAL
    assert split.time == pd.Timestamp("2026-06-01T03:00:00Z")
    assert len(split.train) == 3 and len(split.test) == 6  # the event at exactly T is test
    assert split.describe() == {
        "mode": "temporal",
        "time": "2026-06-01T03:00:00+00:00",
        "train_events": 3,
        "test_events": 6,
    }
    rel = relevant_pairs(split)
    assert rel.to_dict("list") == {"user_id": ["u1", "u3"], "item_id": ["c", "d"]}


def test_temporal_split_by_quantile():
    t = quantile_time(EVENTS, 0.5)
    assert t == T0 + pd.Timedelta(hours=4)  # an actual event time
    split = temporal_split(EVENTS, quantile=0.5)
    assert split.time == t and len(split.train) == 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "exactly one of split time"),
        ({"time": "2026-06-01T00:00:00Z", "quantile": 0.5}, "exactly one of split time"),
        ({"time": "2026-06-01T03:00:00"}, "has no time zone offset"),
        ({"time": "yesterday-ish"}, "not an ISO 8601 timestamp"),
        ({"time": "2020-01-01T00:00:00Z"}, "empty training window"),
        ({"time": "2030-01-01T00:00:00Z"}, "empty test window"),
        ({"quantile": 1.0}, "split quantile must be a number in \\(0, 1\\), got 1.0"),
        ({"quantile": -0.2}, "split quantile must be a number in \\(0, 1\\)"),
    ],
)
def test_temporal_split_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        temporal_split(EVENTS, **kwargs)


def test_split_table_errors():
    with pytest.raises(SchemaError, match="lacks column\\(s\\) event_type"):
        temporal_split(EVENTS.drop(columns="event_type"), quantile=0.5)
    naive = EVENTS.assign(timestamp=EVENTS["timestamp"].dt.tz_localize(None))
    with pytest.raises(SchemaError, match="must be tz-aware"):
        temporal_split(naive, quantile=0.5)
    with pytest.raises(ConfigError, match="events table is empty"):
        temporal_split(EVENTS.iloc[:0], quantile=0.5)


def test_leave_last_n():
    split = leave_last_n_split(EVENTS, n=1)
    assert split.mode == LEAVE_LAST_N
    assert split.time == T0 + pd.Timedelta(hours=8, microseconds=1)
    test = split.test
    # u1's last positive is at 4h; u2's only positive at 2h (then dismiss/impression follow); u3's last at 8h
    got = sorted(zip(test["user_id"], (test["timestamp"] - T0) / pd.Timedelta(hours=1)))
    assert got == [("u1", 4.0), ("u2", 2.0), ("u2", 5.0), ("u2", 6.0), ("u3", 8.0)]
    # n=2: u1 cut at its 2nd last positive (3h); users with fewer keep their first positive as cut
    got2 = leave_last_n_split(EVENTS, n=2).test
    assert sorted(got2.loc[got2["user_id"] == "u1", "item_id"]) == ["a", "c"]
    assert (got2["user_id"] == "u3").sum() == 2
    with pytest.raises(ConfigError, match="leave-last-n needs n >= 1, got 0"):
        leave_last_n_split(EVENTS, n=0)
    with pytest.raises(ConfigError, match="no positive engagement"):
        leave_last_n_split(EVENTS[EVENTS["event_type"] == "impression"])


@st.composite
def logs(draw):
    n = draw(st.integers(2, 40))
    users = draw(st.lists(st.sampled_from(["u0", "u1", "u2", "u3"]), min_size=n, max_size=n))
    items = draw(st.lists(st.sampled_from(["i0", "i1", "i2"]), min_size=n, max_size=n))
    types = draw(st.lists(st.sampled_from(["impression", "click", "read", "dismiss", "share"]), min_size=n, max_size=n))
    hours = draw(st.lists(st.integers(0, 30), min_size=n, max_size=n))  # many ties on purpose
    return _events(list(zip(users, items, types, hours)))


@settings(max_examples=150, deadline=None)
@given(events=logs(), q=st.floats(0.05, 0.95))
def test_temporal_split_never_leaks(events, q):
    try:
        split = temporal_split(events, quantile=q)
    except ConfigError as exc:
        # T fell on the first event time: nothing to train on, and it says so
        assert quantile_time(events, q) == events["timestamp"].min()
        assert "empty training window" in str(exc)
        return
    assert (split.train["timestamp"] < split.time).all()
    assert (split.test["timestamp"] >= split.time).all()
    assert set(split.train.index).isdisjoint(split.test.index)
    assert len(split.train) + len(split.test) == len(events)
    rel = relevant_pairs(split)
    train_pos = split.train[split.train["event_type"].isin(["click", "read", "share"])]
    assert not set(zip(rel["user_id"], rel["item_id"])) & set(zip(train_pos["user_id"], train_pos["item_id"]))


@settings(max_examples=150, deadline=None)
@given(events=logs(), n=st.integers(1, 3))
def test_leave_last_n_never_leaks(events, n):
    if not events["event_type"].isin(["click", "read", "share"]).any():
        return
    split = leave_last_n_split(events, n=n)
    assert set(split.train.index).isdisjoint(split.test.index)
    assert len(split.train) + len(split.test) == len(events)
    for user, test in split.test.groupby("user_id"):
        train = split.train[split.train["user_id"] == user]
        if len(train):
            assert train["timestamp"].max() < test["timestamp"].min()
        assert test["event_type"].isin(["click", "read", "share"]).any()
    assert (split.train["timestamp"] < split.time).all() and (split.test["timestamp"] < split.time).all()


def test_population_labels_and_iteration():
    tax = load_taxonomy()
    users = pd.DataFrame(
        {
            "user_id": ["u3", "u1", "u2", "u4"],
            "group": ["farmer", "youth", "farmer", "resident"],
            "region": ["qinglong", "haigang", "qinglong", "etdz"],
        }
    )
    split = temporal_split(EVENTS, time="2026-06-01T03:00:00Z")
    labels = population_labels(users, split.train, tax, relevant_pairs(split))
    assert labels["user_id"].tolist() == ["u1", "u2", "u3", "u4"]
    assert labels["warm"].tolist() == [True, True, False, False]
    assert labels["urban_rural"].tolist() == ["urban", "rural", "rural", "urban"]
    assert labels["n_relevant"].tolist() == [1, 0, 1, 0]
    pops = {path: mask.tolist() for path, mask in iter_populations(labels)}
    assert pops[("all",)] == [True] * 4
    assert pops[("cold",)] == [False, False, True, True]
    assert pops[("by_group", "farmer")] == [False, True, True, False]
    assert pops[("by_urban_rural", "rural")] == [False, True, True, False]
    assert [p for p in pops if p[0] == "by_region"] == [("by_region", r) for r in ("etdz", "haigang", "qinglong")]
    with pytest.raises(SchemaError, match="users table lacks column\\(s\\) region"):
        population_labels(users.drop(columns="region"), split.train, tax)
