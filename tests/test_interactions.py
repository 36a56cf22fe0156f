"""Id maps and the events -> decayed matrices step, on hand-computed tiny cases."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from recsys.config import InteractionConfig
from recsys.exceptions import ConfigError, SchemaError, UnknownCodeError
from recsys.idmap import IdMap
from recsys.training.interactions import build_interactions, event_codes

END = pd.Timestamp("2024-06-30T00:00:00Z")


def _events(rows):
    """rows: (user, item, type, days before END, dwell or None)."""
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "days", "dwell_seconds"])
    frame["timestamp"] = END - pd.to_timedelta(frame.pop("days"), unit="D")
    frame["dwell_seconds"] = frame["dwell_seconds"].astype(float)
    return frame


def _config(**kw):
    return dataclasses.replace(InteractionConfig(), **kw)


USERS = IdMap.from_ids(["u0", "u1"])
ITEMS = IdMap.from_ids(["a", "b", "c"])


# ---- IdMap ------------------------------------------------------------------
def test_idmap_first_appearance_order_and_lookup():
    m = IdMap.from_ids(["b", "a", "b", "c"])
    assert list(m.ids) == ["b", "a", "c"]
    assert len(m) == 3
    np.testing.assert_array_equal(m.index(["c", "zz", "b"]), [2, -1, 0])
    assert m.index(["a"]).dtype == np.int64
    assert list(IdMap.from_ids(["b", "a", "c"], sort=True).ids) == ["a", "b", "c"]


def test_idmap_raise_on_unknown():
    m = IdMap.from_ids(["a"])
    with pytest.raises(ConfigError, match="unknown id 'zz'"):
        m.index(["a", "zz"], missing="raise")
    with pytest.raises(ConfigError, match="missing must be 'mark' or 'raise'"):
        m.index(["a"], missing="skip")


def test_idmap_rejects_missing_and_non_string_ids():
    with pytest.raises(SchemaError, match="missing id"):
        IdMap.from_ids(["a", None])
    with pytest.raises(SchemaError, match="must be strings, got 3"):
        IdMap.from_ids(["a", 3])


def test_idmap_frame_roundtrip_through_parquet(tmp_path):
    m = IdMap.from_ids(["u9", "u1", "u5"])
    path = tmp_path / "users.parquet"
    m.to_frame("user_id").to_parquet(path)
    back = IdMap.from_frame(pd.read_parquet(path), column="user_id")
    assert back == m
    np.testing.assert_array_equal(back.index(["u5"]), [2])


def test_idmap_from_frame_errors():
    with pytest.raises(SchemaError, match="lacks column"):
        IdMap.from_frame(pd.DataFrame({"id": ["a"]}))
    with pytest.raises(SchemaError, match="0..n-1 in order"):
        IdMap.from_frame(pd.DataFrame({"index": [1, 0], "id": ["a", "b"]}))
    with pytest.raises(SchemaError, match="duplicate id 'a'"):
        IdMap.from_frame(pd.DataFrame({"index": [0, 1], "id": ["a", "a"]}))


# ---- weights and decay ----------------------------------------------------
def test_weights_and_decay_hand_computed():
    cfg = _config(half_life_days=10.0, dwell_unit_seconds=60.0, dwell_max_factor=2.0)
    ev = _events(
        [
            ("u0", "a", "click", 0, None),  # 1.0
            ("u0", "a", "click", 10, None),  # 1.0 * 0.5 (one half-life)
            ("u0", "b", "read", 20, 30.0),  # 2.0 * 1.5 dwell * 0.25
            ("u0", "c", "read", 0, 600.0),  # 2.0 * 2.0 (dwell capped)
            ("u1", "a", "share", 0, None),  # 5.0
            ("u1", "a", "dismiss", 10, None),  # -2.0 * 0.5
            ("u1", "b", "impression", 0, None),  # exposure only
            ("u1", "b", "impression", 5, None),
            ("u1", "c", "report", 0, None),  # -6.0
        ]
    )
    inter = build_interactions(ev, USERS, ITEMS, cfg)
    assert inter.end == END
    assert inter.n_events == 9
    np.testing.assert_allclose(
        inter.matrix.toarray(), [[1.5, 0.75, 4.0], [4.0, 0.0, -6.0]], rtol=1e-6
    )
    np.testing.assert_allclose(inter.positives.toarray(), [[1.5, 0.75, 4.0], [5.0, 0.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(inter.negative_weight.toarray(), [[0, 0, 0], [1.0, 0, 6.0]], rtol=1e-6)
    np.testing.assert_array_equal(inter.negatives.toarray(), [[0, 0, 0], [1, 0, 1]])
    np.testing.assert_array_equal(inter.exposure.toarray(), [[0, 0, 0], [0, 2, 0]])
    np.testing.assert_array_equal(inter.engaged.toarray(), [[1, 1, 1], [1, 0, 0]])
    for m in (inter.matrix, inter.positives, inter.negatives, inter.exposure, inter.engaged):
        assert m.dtype == np.float32 and m.format == "csr" and m.shape == (2, 3)


def test_impression_alone_is_exposure_not_positive():
    inter = build_interactions(_events([("u0", "a", "impression", 0, None)]), USERS, ITEMS, _config())
    assert inter.positives.nnz == 0 and inter.matrix.nnz == 0 and inter.engaged.nnz == 0
    assert inter.exposure[0, 0] == 1.0


def test_as_of_excludes_later_events_and_moves_decay_origin():
    cfg = _config(half_life_days=1.0)
    ev = _events(
        [
            ("u0", "a", "click", 2, None),
            ("u0", "b", "click", 1, None),  # exactly at as_of: excluded (strictly before)
            ("u0", "c", "click", 0, None),
        ]
    )
    as_of = END - pd.Timedelta(days=1)
    inter = build_interactions(ev, USERS, ITEMS, cfg, as_of=as_of)
    assert inter.end == as_of
    assert inter.n_events == 1
    np.testing.assert_allclose(inter.positives.toarray(), [[0.5, 0, 0], [0, 0, 0]])
    # as_of in another zone, as a string, means the same instant
    again = build_interactions(ev, USERS, ITEMS, cfg, as_of="2024-06-29T08:00:00+08:00")
    np.testing.assert_allclose(again.positives.toarray(), [[0.5, 0, 0], [0, 0, 0]])


def test_empty_window():
    ev = _events([("u0", "a", "click", 0, None)])
    inter = build_interactions(ev, USERS, ITEMS, _config(), as_of=END - pd.Timedelta(days=5))
    assert inter.n_events == 0 and inter.matrix.nnz == 0 and inter.matrix.shape == (2, 3)
    none = build_interactions(ev.iloc[:0], USERS, ITEMS, _config())
    assert none.end is None


def test_unknown_ids_raise_or_drop():
    ev = _events([("u0", "a", "click", 0, None), ("ghost", "a", "click", 0, None), ("u1", "zz", "like", 0, None)])
    with pytest.raises(SchemaError, match="'user_id' has 1 id\\(s\\) not in the id map, e.g. 'ghost'"):
        build_interactions(ev, USERS, ITEMS, _config())
    inter = build_interactions(ev, USERS, ITEMS, _config(), on_unknown="drop")
    assert inter.n_events == 1 and inter.positives.nnz == 1
    with pytest.raises(ConfigError, match="on_unknown must be"):
        build_interactions(ev, USERS, ITEMS, _config(), on_unknown="ignore")


def test_input_errors():
    ev = _events([("u0", "a", "click", 0, None)])
    with pytest.raises(SchemaError, match="lack required column\\(s\\) \\['timestamp'\\]"):
        build_interactions(ev.drop(columns="timestamp"), USERS, ITEMS, _config())
    naive = ev.assign(timestamp=ev["timestamp"].dt.tz_localize(None))
    with pytest.raises(SchemaError, match="must be tz-aware"):
        build_interactions(naive, USERS, ITEMS, _config())
    with pytest.raises(UnknownCodeError, match="unknown event type 'view'; valid: impression"):
        build_interactions(ev.assign(event_type="view"), USERS, ITEMS, _config())
    with pytest.raises(ConfigError, match="as_of must be timezone-aware"):
        build_interactions(ev, USERS, ITEMS, _config(), as_of="2024-06-01")
    with pytest.raises(ConfigError, match="as_of must be a timezone-aware timestamp"):
        build_interactions(ev, USERS, ITEMS, _config(), as_of="yesterday")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"weights": {**InteractionConfig().weights, "impression": 0.5}}, "weights has unknown key 'impression'"),
        ({"weights": {**InteractionConfig().weights, "dismiss": 1.0}}, r"weights.dismiss = 1.0 is out of range; valid: >= -100 and < 0"),
        ({"weights": {**InteractionConfig().weights, "click": 0.0}}, r"weights.click = 0.0 is out of range; valid: > 0 and <= 100"),
        (
            {"weights": {k: v for k, v in InteractionConfig().weights.items() if k != "share"}},
            "weights lacks key 'share'",
        ),
        ({"weights": {**InteractionConfig().weights, "like": "3"}}, "weights.like = '3' is out of range"),
        ({"half_life_days": 0.0}, r"half_life_days = 0.0 is out of range; valid: 0.01..36500"),
        ({"popularity_half_life_days": -3.0}, r"\[interactions\] popularity_half_life_days = -3.0 is out of range"),
        ({"dwell_unit_seconds": -1.0}, r"dwell_unit_seconds = -1.0 is out of range; valid: 1..86400"),
        ({"dwell_max_factor": 0.5}, r"dwell_max_factor = 0.5 is out of range; valid: 1..100"),
    ],
)
def test_config_errors(change, message):
    ev = _events([("u0", "a", "click", 0, None)])
    with pytest.raises(ConfigError, match=message):
        build_interactions(ev, USERS, ITEMS, _config(**change))


def test_missing_dwell_column_means_base_read_weight():
    ev = _events([("u0", "a", "read", 0, None)]).drop(columns="dwell_seconds")
    inter = build_interactions(ev, USERS, ITEMS, _config())
    assert inter.positives[0, 0] == pytest.approx(InteractionConfig().weights["read"])


# ---- ids looked up once, in Arrow -------------------------------------------
def test_event_codes_match_idmap_lookup():
    users = IdMap.from_ids(["u0", "用户1", "u2"])
    items = IdMap.from_ids(["a", "b"])
    ev = pd.DataFrame({"user_id": ["用户1", "ghost", "u0", "u2"], "item_id": ["b", "a", "zz", "a"]})
    uidx, iidx = event_codes(ev, users, items)
    np.testing.assert_array_equal(uidx, users.index(ev["user_id"]))
    np.testing.assert_array_equal(iidx, items.index(ev["item_id"]))
    assert uidx.dtype == np.int64 and list(uidx) == [1, -1, 0, 2]
    # object columns, and values that are not strings (never an id), give the same answer
    mixed = pd.DataFrame({"user_id": pd.Series(["u2", 7, None], dtype=object), "item_id": ["a", "a", "b"]})
    np.testing.assert_array_equal(event_codes(mixed, users, items)[0], [2, -1, -1])


def test_codes_given_build_the_same_matrices_and_must_fit():
    ev = _events([("u0", "a", "click", 0, None), ("u1", "b", "dismiss", 1, None), ("u1", "c", "impression", 2, None),
                  ("ghost", "a", "click", 0, None)])
    looked_up = build_interactions(ev, USERS, ITEMS, _config(), on_unknown="drop")
    given = build_interactions(ev, USERS, ITEMS, _config(), on_unknown="drop", codes=event_codes(ev, USERS, ITEMS))
    for name in ("matrix", "positives", "negative_weight", "negatives", "exposure", "engaged"):
        assert (getattr(looked_up, name) != getattr(given, name)).nnz == 0, name
    assert given.n_events == 3
    with pytest.raises(ConfigError, match="one user and one item index per event \\(4\\)"):
        build_interactions(ev, USERS, ITEMS, _config(), codes=(np.zeros(3, int), np.zeros(3, int)))


def test_an_underflowed_positive_still_counts_as_engaged():
    # decayed to exactly 0 (10,000 half-lives): no confidence, but the pair was engaged
    ev = _events([("u0", "a", "click", 100, None), ("u0", "b", "click", 0, None)])
    inter = build_interactions(ev, USERS, ITEMS, _config(half_life_days=0.01))
    np.testing.assert_array_equal(inter.engaged.toarray(), [[1, 1, 0], [0, 0, 0]])
    assert inter.positives.nnz == 1 and inter.positives[0, 1] == 1.0
