"""Tests of recsys/schema.py (the data contract and validator) and ``recsys validate``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys import columns as C
from recsys.cli import main
from recsys.exceptions import ConfigError, SchemaError
from recsys.schema import (
    KINDS,
    QUARANTINE_COLUMNS,
    find_table,
    read_table,
    required_columns,
    to_arrow,
    validate,
    validate_tables,
    write_quarantine,
    write_table,
)
from recsys.taxonomy import load_taxonomy

END = "2024-07-01T00:00:00+00:00"
_REQUIRED = {
    "users": ("user_id", "group", "region"),
    "items": ("item_id", "title", "topics"),
    "events": ("user_id", "item_id", "event_type", "timestamp"),
}


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy()


# Raw tables as a CSV gives them: every cell a string. Users u2 and item i2 have
# no events, so rejecting them quarantines nothing else.
def _users() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u0", "u1", "u2"],
            "group": ["youth", "farmer", "resident"],
            "sub_group": ["pupil", "", "elderly"],
            "region": ["haigang", "qinglong", "changli"],
            "age_band": ["7-12", "", "60+"],
            "channels": ["app_push|wechat", "", "e_reader"],
            "push_opt_out": ["false", "1", ""],
            "registered_at": ["2023-01-01T08:00:00+08:00", "", "1672531200"],
        }
    )


def _items() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": ["i0", "i1", "i2"],
            "title": ["地震来了怎么办", "Smart farming", "Stars"],
            "summary": ["", "drones", ""],
            "tags": ["地震|避险", "", "sky"],
            "topics": ["earthquake|disaster_prevention", "modern_agriculture", "astronomy_space"],
            "format": ["video", "", "article"],
            "target_groups": ["", "farmer", "youth|resident"],
            "target_regions": ["", "qinglong|lulong", ""],
            "review_status": ["approved", "", "pending"],
            "authority": ["national", "", "municipal"],
            "source": ["", "", "CAST"],
            "published_at": ["2024-01-01T00:00:00Z", "", "2024-02-01T00:00:00+08:00"],
            "expires_at": ["", "", "2024-12-31T00:00:00+08:00"],
        }
    )


def _events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_id": ["e-a", "e-b", "e-c", "e-d"],
            "user_id": ["u0", "u0", "u1", "u1"],
            "item_id": ["i0", "i0", "i1", "i0"],
            "event_type": ["impression", "read", "click", "complete"],
            "timestamp": ["2024-03-01T10:00:00+08:00", "1709280000", "2024-03-02T00:00:00Z", "2024-03-03T12:30:00-05:00"],
            "channel": ["app_push", "wechat", "", "app_push"],
            "dwell_seconds": ["", "30", "", "120.5"],
        }
    )


def _run(users=None, items=None, events=None, end=END, taxonomy=None):
    return validate_tables(
        _users() if users is None else users,
        _items() if items is None else items,
        _events() if events is None else events,
        taxonomy=taxonomy,
        end=end,
    )


# ---- a clean input ------------------------------------------------------------------------
def test_clean_input_has_empty_quarantine(tax):
    result = _run(taxonomy=tax)
    assert result.quarantine.empty
    assert list(result.quarantine.columns) == list(QUARANTINE_COLUMNS)
    assert result.counts() == {}
    assert result.rows_read == {"users": 3, "items": 3, "events": 4}
    assert result.rows_kept() == {"users": 3, "items": 3, "events": 4}
    assert result.end == pd.Timestamp(END)


def test_users_are_normalized_to_the_contract(tax):
    users = _run(taxonomy=tax).users
    assert list(users.columns) == [
        "user_id", "group", "sub_group", "region", "age_band", "channels", "push_opt_out", "registered_at",
    ]
    assert users["user_id"].tolist() == ["u0", "u1", "u2"]
    assert users["channels"].tolist() == [["app_push", "wechat"], list(tax.personal_channels), ["e_reader"]]
    assert users["push_opt_out"].tolist() == [False, True, False]
    assert users["push_opt_out"].dtype == bool
    assert str(users["registered_at"].dtype) == "datetime64[us, UTC]"
    assert users["registered_at"].iloc[0] == pd.Timestamp("2023-01-01T00:00:00Z")
    assert pd.isna(users["registered_at"].iloc[1])
    assert users["registered_at"].iloc[2] == pd.Timestamp("2023-01-01T00:00:00Z")  # Unix seconds
    assert users["sub_group"].tolist() == ["pupil", "", "elderly"]
    # every row gets its own list, so mutating one cannot change another
    assert users["channels"].iloc[1] is not _run(taxonomy=tax).users["channels"].iloc[1]
    users["channels"].iloc[1].append("x")
    assert users["channels"].iloc[0] == ["app_push", "wechat"]


def test_absent_optional_columns_get_their_defaults(tax):
    users = _users()[["user_id", "group", "region"]]
    items = _items()[["item_id", "title", "topics"]]
    events = _events()[["user_id", "item_id", "event_type", "timestamp"]]
    result = _run(users, items, events, taxonomy=tax)
    assert result.quarantine.empty
    u, i, e = result.users, result.items, result.events
    assert (u["sub_group"] == "").all() and (u["age_band"] == "").all()
    assert u["channels"].tolist() == [list(tax.personal_channels)] * 3
    assert not u["push_opt_out"].any()
    assert u["registered_at"].isna().all()
    assert i["summary"].tolist() == ["", "", ""] and i["source"].tolist() == ["", "", ""]
    assert i["tags"].tolist() == [[], [], []]
    assert i["format"].tolist() == ["article"] * 3
    assert i["target_groups"].tolist() == [[], [], []] and i["target_regions"].tolist() == [[], [], []]
    assert i["review_status"].tolist() == ["approved"] * 3
    assert i["authority"].tolist() == ["other"] * 3
    assert i["published_at"].isna().all() and i["expires_at"].isna().all()
    assert e["event_id"].tolist() == ["e0", "e1", "e2", "e3"]  # deterministic: "e" + row
    assert (e["channel"] == "").all()
    assert e["dwell_seconds"].isna().all() and e["dwell_seconds"].dtype == np.float64
    for frame in (u, i, e):
        for col in frame.columns:
            if col.endswith("_at") or col == "timestamp":
                assert str(frame[col].dtype) == "datetime64[us, UTC]", col


def test_items_and_events_are_normalized(tax):
    result = _run(taxonomy=tax)
    items, events = result.items, result.events
    assert items["tags"].tolist() == [["地震", "避险"], [], ["sky"]]
    assert items["topics"].tolist() == [["earthquake", "disaster_prevention"], ["modern_agriculture"], ["astronomy_space"]]
    assert items["target_regions"].tolist() == [[], ["qinglong", "lulong"], []]
    assert items["format"].tolist() == ["video", "article", "article"]
    assert items["review_status"].tolist() == ["approved", "approved", "pending"]
    assert items["expires_at"].iloc[2] == pd.Timestamp("2024-12-30T16:00:00Z")
    assert events["event_id"].tolist() == ["e-a", "e-b", "e-c", "e-d"]
    assert events["timestamp"].tolist() == [
        pd.Timestamp("2024-03-01T02:00:00Z"),
        pd.Timestamp("2024-03-01T08:00:00Z"),
        pd.Timestamp("2024-03-02T00:00:00Z"),
        pd.Timestamp("2024-03-03T17:30:00Z"),
    ]
    assert events["dwell_seconds"].tolist()[1:] == [30.0, pytest.approx(np.nan, nan_ok=True), 120.5]
    assert pd.api.types.is_string_dtype(events["user_id"])


def test_empty_tables_keep_the_contract_types(tax):
    empty = {kind: pd.DataFrame({c: pd.Series(dtype=str) for c in _REQUIRED[kind]}) for kind in KINDS}
    result = _run(empty["users"], empty["items"], empty["events"], taxonomy=tax)
    assert result.rows_kept() == {"users": 0, "items": 0, "events": 0}
    assert str(result.events["timestamp"].dtype) == "datetime64[us, UTC]"
    assert result.users["push_opt_out"].dtype == bool
    assert to_arrow(result.items, "items").schema.field("topics").type == pa.list_(pa.string())


def test_extra_columns_are_kept(tax):
    users = _users().assign(nickname=["a", "b", "c"])
    result = _run(users=users, taxonomy=tax)
    assert result.users.columns[-1] == "nickname"
    assert result.users["nickname"].tolist() == ["a", "b", "c"]


def test_integer_ids_become_strings(tax):
    users = _users().assign(user_id=[10, 11, 12])
    events = _events().assign(user_id=[10, 10, 11, 11])
    result = _run(users=users, events=events, taxonomy=tax)
    assert result.quarantine.empty
    assert result.users["user_id"].tolist() == ["10", "11", "12"]
    assert result.events["user_id"].tolist() == ["10", "10", "11", "11"]


# ---- every reason --------------------------------------------------------------------------
REASON_CASES = [
    # users: row 2 (u2 has no events)
    ("users", {"user_id": ""}, C.R_MISSING, "user_id is empty"),
    ("users", {"group": ""}, C.R_MISSING, "group is empty"),
    ("users", {"region": " "}, C.R_MISSING, "region is empty"),
    ("users", {"registered_at": "last tuesday"}, C.R_UNPARSABLE_TS, "registered_at='last tuesday'; not ISO 8601"),
    ("users", {"registered_at": "2023-01-01 08:00:00"}, C.R_NAIVE_TS, "registered_at='2023-01-01 08:00:00'; no UTC offset"),
    ("users", {"registered_at": "0"}, C.R_IMPOSSIBLE_TS,
     "registered_at='1970-01-01T00:00:00Z'; valid: 1990-01-01T00:00:00\\+00:00 up to 2100-01-01"),
    ("users", {"region": "beijing"}, C.R_UNKNOWN_CODE, "region='beijing'; valid: haigang, etdz, "),
    ("users", {"group": "pirate"}, C.R_UNKNOWN_CODE, "group='pirate'; valid: youth, farmer"),
    ("users", {"sub_group": "alien"}, C.R_UNKNOWN_CODE, "sub_group='alien'; valid: preschool"),
    ("users", {"age_band": "99+"}, C.R_UNKNOWN_CODE, r"age_band='99\+'; valid: 0-6, 7-12"),
    ("users", {"channels": "app_push|fax"}, C.R_UNKNOWN_CODE, "channels has 'fax'; valid: app_push"),
    ("users", {"push_opt_out": "maybe"}, C.R_UNKNOWN_CODE, "push_opt_out='maybe'; valid: true, false, 1, 0"),
    ("users", {"sub_group": "pupil"}, C.R_SUB_GROUP,
     "sub_group='pupil' belongs to 'youth', not 'resident'; valid: resident_general, elderly"),
    ("users", {"user_id": "u0"}, C.R_DUPLICATE_ID, "user_id='u0' repeats row 0"),
    # items: row 2 (i2 has no events)
    ("items", {"item_id": ""}, C.R_MISSING, "item_id is empty"),
    ("items", {"title": "   "}, C.R_MISSING, "title is empty"),
    ("items", {"topics": ""}, C.R_MISSING, "topics is empty; at least one code needed"),
    ("items", {"topics": "|"}, C.R_MISSING, "topics is empty"),
    ("items", {"published_at": "soon"}, C.R_UNPARSABLE_TS, "published_at='soon'"),
    ("items", {"expires_at": "2024-12-31T00:00:00"}, C.R_NAIVE_TS, "expires_at='2024-12-31T00:00:00'"),
    ("items", {"expires_at": "9999-12-31T23:59:59Z"}, C.R_IMPOSSIBLE_TS, "expires_at='9999-12-31T23:59:59Z'"),
    ("items", {"topics": "ecology|aliens"}, C.R_UNKNOWN_CODE, "topics has 'aliens'; valid: disaster_prevention"),
    ("items", {"format": "podcast"}, C.R_UNKNOWN_CODE, "format='podcast'; valid: article"),
    ("items", {"target_groups": "youth|pirate"}, C.R_UNKNOWN_CODE, "target_groups has 'pirate'"),
    ("items", {"target_regions": "mars"}, C.R_UNKNOWN_CODE, "target_regions has 'mars'; valid: haigang"),
    ("items", {"review_status": "maybe"}, C.R_UNKNOWN_CODE, "review_status='maybe'; valid: pending, approved"),
    ("items", {"authority": "blog"}, C.R_UNKNOWN_CODE, "authority='blog'; valid: national, provincial"),
    ("items", {"item_id": "i1"}, C.R_DUPLICATE_ID, "item_id='i1' repeats row 1"),
    # events: row 3 (a complete with dwell, by u1 on i0)
    ("events", {"user_id": ""}, C.R_MISSING, "user_id is empty"),
    ("events", {"item_id": ""}, C.R_MISSING, "item_id is empty"),
    ("events", {"event_type": ""}, C.R_MISSING, "event_type is empty"),
    ("events", {"timestamp": ""}, C.R_MISSING, "timestamp is empty"),
    ("events", {"timestamp": "2024-02-30T00:00:00Z"}, C.R_UNPARSABLE_TS, "timestamp='2024-02-30T00:00:00Z'"),
    ("events", {"timestamp": "99999999999999999999"}, C.R_UNPARSABLE_TS, "integer Unix seconds"),
    ("events", {"timestamp": "2024-03-01T10:00:00"}, C.R_NAIVE_TS, "add one such as \\+08:00 or Z"),
    ("events", {"timestamp": "2024-03-01"}, C.R_NAIVE_TS, "timestamp='2024-03-01'; no UTC offset"),
    ("events", {"timestamp": "1989-12-31T23:59:59Z"}, C.R_IMPOSSIBLE_TS, "timestamp='1989-12-31T23:59:59Z'"),
    ("events", {"timestamp": "1700000000000"}, C.R_IMPOSSIBLE_TS, "timestamp='55840-11-08T22:13:20Z'"),
    ("events", {"timestamp": "2100-01-01T08:00:00+08:00"}, C.R_IMPOSSIBLE_TS, "up to 2100-01-01T00:00:00\\+00:00"),
    ("events", {"channel": "fax"}, C.R_UNKNOWN_CODE, "channel='fax'; valid: app_push, wechat"),
    ("events", {"dwell_seconds": "long"}, C.R_UNKNOWN_CODE, "dwell_seconds='long'; not a number"),
    ("events", {"event_type": "teleport"}, C.R_UNKNOWN_EVENT_TYPE, "event_type='teleport'; valid: impression, click"),
    ("events", {"timestamp": "2024-07-01T00:00:01Z"}, C.R_FUTURE_TS, "after the data's end 2024-07-01T00:00:00"),
    ("events", {"dwell_seconds": "-1"}, C.R_NEGATIVE_DWELL, "dwell_seconds=-1.0; must be >= 0"),
    ("events", {"event_type": "click"}, C.R_DWELL_TYPE, "event_type='click'; dwell_seconds only on read, complete"),
    ("events", {"event_id": "e-a"}, C.R_DUPLICATE_ID, "event_id='e-a' repeats row 0"),
    ("events", {"user_id": "u0", "event_type": "read", "timestamp": "1709280000", "channel": "", "dwell_seconds": ""},
     C.R_DUPLICATE_EVENT, r"same \(user_id, item_id, event_type, timestamp\) repeats row 1"),
    ("events", {"user_id": "u9"}, C.R_UNKNOWN_USER, "user_id='u9'; not in the table"),
    ("events", {"item_id": "i9"}, C.R_UNKNOWN_ITEM, "item_id='i9'; not in the table"),
]


@pytest.mark.parametrize(("table", "change", "reason", "detail"), REASON_CASES)
def test_each_reason_rejects_exactly_that_row(tax, table, change, reason, detail):
    frames = {"users": _users(), "items": _items(), "events": _events()}
    row = 3 if table == "events" else 2
    for column, value in change.items():
        frames[table].loc[row, column] = value
    result = _run(frames["users"], frames["items"], frames["events"], taxonomy=tax)
    q = result.quarantine
    assert len(q) == 1, q[["table", "row", "reason", "detail"]].to_string()
    assert (q["table"].iloc[0], int(q["row"].iloc[0]), q["reason"].iloc[0]) == (table, row, reason)
    assert pd.Series(q["detail"]).str.contains(detail, regex=True).iloc[0], q["detail"].iloc[0]
    assert json.loads(q["record"].iloc[0]) == frames[table].iloc[row].to_dict()
    assert result.counts() == {reason: 1}
    assert result.rows_kept()[table] == (3 if table == "events" else 2)


def test_every_reason_has_a_case():
    assert {case[2] for case in REASON_CASES} == set(C.QUARANTINE_REASONS)


def test_first_reason_in_order_wins(tax):
    events = _events()
    # naive timestamp, unknown event type, unknown user, all on one row: naive comes first
    events.loc[3, ["timestamp", "event_type", "user_id"]] = ["2024-03-01T10:00:00", "teleport", "u9"]
    # an unknown channel beats an unknown event type
    events.loc[2, ["channel", "event_type"]] = ["fax", "teleport"]
    # a negative dwell on a click: negative dwell comes before dwell on a non-read event
    events.loc[0, "dwell_seconds"] = "-5"
    result = _run(events=events, taxonomy=tax)
    got = result.quarantine.set_index("row")["reason"].to_dict()
    assert got == {0: C.R_NEGATIVE_DWELL, 2: C.R_UNKNOWN_CODE, 3: C.R_NAIVE_TS}


def test_duplicates_keep_the_first_valid_row(tax):
    users = pd.concat([_users(), _users().iloc[[0]]], ignore_index=True)  # row 3 copies u0
    users.loc[0, "region"] = "beijing"  # the first copy is bad: the later good one is kept
    result = _run(users=users, taxonomy=tax)
    assert result.quarantine.set_index("row")["reason"].to_dict() == {0: C.R_UNKNOWN_CODE}
    assert result.users["user_id"].tolist() == ["u1", "u2", "u0"]
    assert len(result.events) == 4  # u0's events stay: u0 is valid


def test_duplicate_events_without_event_id_compare_the_instant(tax):
    events = _events().drop(columns="event_id")
    extra = pd.DataFrame(
        {
            "user_id": ["u0", "u0", "u0"],
            "item_id": ["i0", "i0", "i0"],
            "event_type": ["impression", "impression", "click"],
            # the same instant as row 0, written two other ways; and a different type
            "timestamp": ["2024-03-01T02:00:00Z", "1709258400", "2024-03-01T02:00:00Z"],
            "channel": ["", "", ""],
            "dwell_seconds": ["", "", ""],
        }
    )
    result = _run(events=pd.concat([events, extra], ignore_index=True), taxonomy=tax)
    q = result.quarantine
    assert q["row"].tolist() == [4, 5]
    assert set(q["reason"]) == {C.R_DUPLICATE_EVENT}
    assert q["detail"].iloc[0] == "same (user_id, item_id, event_type, timestamp) repeats row 0"
    assert result.events["event_id"].tolist() == ["e0", "e1", "e2", "e3", "e6"]


def test_an_event_is_its_content_and_an_id_must_be_unique(tax):
    events = pd.concat([_events()] + [_events().iloc[[0]]] * 3, ignore_index=True)
    events.loc[5, "event_id"] = "e-new"  # same content, another id: still the same event
    events.loc[6, ["event_id", "timestamp"]] = ["e-b", "2024-03-05T00:00:00Z"]  # e-b's id, other content
    result = _run(events=events, taxonomy=tax)
    got = result.quarantine.set_index("row")[["reason", "detail"]]
    assert got["reason"].to_dict() == {4: C.R_DUPLICATE_EVENT, 5: C.R_DUPLICATE_EVENT, 6: C.R_DUPLICATE_ID}
    assert got.loc[4, "detail"] == "same (user_id, item_id, event_type, timestamp) repeats row 0"
    assert got.loc[6, "detail"] == "event_id='e-b' repeats row 1"
    assert result.events["event_id"].tolist() == ["e-a", "e-b", "e-c", "e-d"]


def test_blank_event_ids_are_generated_and_deduplicated_by_content(tax):
    events = pd.concat([_events(), _events().iloc[[2]]], ignore_index=True)
    events.loc[[2, 4], "event_id"] = ""
    result = _run(events=events, taxonomy=tax)
    assert result.quarantine.set_index("row")["reason"].to_dict() == {4: C.R_DUPLICATE_EVENT}
    assert result.events["event_id"].tolist() == ["e-a", "e-b", "e2", "e-d"]


def test_rejected_user_and_item_take_their_events(tax):
    users, items = _users(), _items()
    users.loc[0, "group"] = "pirate"  # u0 has events 0 and 1
    items.loc[1, "title"] = ""  # i1 has event 2
    result = _run(users=users, items=items, taxonomy=tax)
    q = result.quarantine
    events_q = q[q["table"] == "events"].set_index("row")
    assert events_q["reason"].to_dict() == {0: C.R_UNKNOWN_USER, 1: C.R_UNKNOWN_USER, 2: C.R_UNKNOWN_ITEM}
    assert events_q.loc[0, "detail"] == "user_id='u0'; its row is quarantined"
    assert events_q.loc[2, "detail"] == "item_id='i1'; its row is quarantined"
    assert result.counts() == {C.R_MISSING: 1, C.R_UNKNOWN_CODE: 1, C.R_UNKNOWN_USER: 2, C.R_UNKNOWN_ITEM: 1}
    assert result.events["event_id"].tolist() == ["e-d"]
    assert q["table"].tolist() == ["users", "items", "events", "events", "events"]


def test_quarantine_rows_and_records_point_at_the_source(tax):
    events = _events()
    events.loc[1, "event_type"] = "teleport"
    result = _run(events=events, taxonomy=tax)
    q = result.quarantine
    assert q["row"].dtype == np.int64
    for col in (C.Q_TABLE, C.Q_REASON, C.Q_DETAIL, C.Q_RECORD):
        assert pd.api.types.is_string_dtype(q[col])
    assert json.loads(q["record"].iloc[0]) == {
        "event_id": "e-b", "user_id": "u0", "item_id": "i0", "event_type": "teleport",
        "timestamp": "1709280000", "channel": "wechat", "dwell_seconds": "30",
    }


# ---- end ---------------------------------------------------------------------------------
def test_end_date_means_midnight_in_the_city_zone(tax):
    events = _events()
    events.loc[3, "timestamp"] = "2024-03-01T16:00:00Z"  # 2024-03-02 00:00 in Shanghai: not after
    events.loc[2, "timestamp"] = "2024-03-01T16:00:01Z"  # one second later: after
    result = _run(events=events, end="2024-03-02", taxonomy=tax)
    assert result.end == pd.Timestamp("2024-03-01T16:00:00Z")
    assert result.quarantine.set_index("row")["reason"].to_dict() == {2: C.R_FUTURE_TS}


def test_end_defaults_to_now(tax):
    events = _events()
    events.loc[3, "timestamp"] = "2099-01-01T00:00:00Z"
    result = _run(events=events, end=None, taxonomy=tax)
    assert result.counts() == {C.R_FUTURE_TS: 1}
    assert abs(result.end - pd.Timestamp.now(tz="UTC")) < pd.Timedelta(minutes=5)


def test_naive_end_is_refused(tax):
    with pytest.raises(ConfigError, match="end '2024-03-02 10:00' has no time zone"):
        _run(end="2024-03-02 10:00", taxonomy=tax)


# ---- files: CSV and Parquet ----------------------------------------------------------------
def _write_csv(folder, frames=None):
    folder.mkdir(parents=True, exist_ok=True)
    frames = frames or {"users": _users(), "items": _items(), "events": _events()}
    for kind, frame in frames.items():
        frame.to_csv(folder / f"{kind}.csv", index=False)
    return folder


def _typed_tables():
    """The same tables as Parquet would hold them: lists, tz-aware timestamps, bool, float."""
    users = _users()
    users["channels"] = [["app_push", "wechat"], None, ["e_reader"]]
    users["push_opt_out"] = [False, True, None]
    users["registered_at"] = pd.to_datetime(["2023-01-01T00:00:00Z", None, "2023-01-01T00:00:00Z"], utc=True)
    items = _items()
    for col in ("tags", "topics", "target_groups", "target_regions"):
        items[col] = [v.split("|") if v else [] for v in items[col]]
    items["format"] = ["video", None, "article"]
    items["review_status"] = ["approved", None, "pending"]
    items["authority"] = ["national", None, "municipal"]
    items["published_at"] = pd.to_datetime(["2024-01-01T00:00:00Z", None, "2024-01-31T16:00:00Z"], utc=True)
    # a zone other than UTC is converted
    items["expires_at"] = pd.to_datetime([None, None, "2024-12-31T00:00:00+08:00"], utc=True).tz_convert("Asia/Shanghai")
    events = _events()
    events["timestamp"] = pd.to_datetime(
        ["2024-03-01T02:00:00Z", "2024-03-01T08:00:00Z", "2024-03-02T00:00:00Z", "2024-03-03T17:30:00Z"], utc=True
    )
    events["dwell_seconds"] = [np.nan, 30.0, np.nan, 120.5]
    return {"users": users, "items": items, "events": events}


def _write_parquet(folder, frames):
    folder.mkdir(parents=True, exist_ok=True)
    for kind, frame in frames.items():
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / f"{kind}.parquet")
    return folder


def test_csv_and_parquet_give_the_same_clean_tables(tmp_path, tax):
    from_csv = validate(data=_write_csv(tmp_path / "csv"), taxonomy=tax, end=END)
    from_parquet = validate(data=_write_parquet(tmp_path / "pq", _typed_tables()), taxonomy=tax, end=END)
    assert from_csv.quarantine.empty and from_parquet.quarantine.empty
    for kind in KINDS:
        pd.testing.assert_frame_equal(getattr(from_csv, kind), getattr(from_parquet, kind))


def test_csv_with_bom_and_chinese_text(tmp_path, tax):
    folder = _write_csv(tmp_path / "d")
    text = (folder / "items.csv").read_text(encoding="utf-8")
    (folder / "items.csv").write_text("\ufeff" + text, encoding="utf-8")
    result = validate(data=folder, taxonomy=tax, end=END)
    assert result.quarantine.empty
    assert result.items["title"].iloc[0] == "地震来了怎么办"


def test_parquet_string_columns_are_read_like_csv(tmp_path, tax):
    # strings for timestamps and lists in Parquet: parsed and split like CSV cells
    folder = _write_parquet(tmp_path / "d", {"users": _users(), "items": _items(), "events": _events()})
    result = validate(data=folder, taxonomy=tax, end=END)
    assert result.quarantine.empty
    assert result.items["topics"].iloc[0] == ["earthquake", "disaster_prevention"]
    assert result.events["timestamp"].iloc[0] == pd.Timestamp("2024-03-01T02:00:00Z")


def test_parquet_timestamp_without_zone_is_naive_in_every_row(tmp_path, tax):
    events = _typed_tables()["events"]
    events["timestamp"] = events["timestamp"].dt.tz_localize(None)
    events.loc[1, "timestamp"] = pd.NaT  # a null stays "missing", not "naive"
    folder = _write_parquet(tmp_path / "d", {"users": _users(), "items": _items(), "events": events})
    result = validate(data=folder, taxonomy=tax, end=END)
    assert result.quarantine.set_index("row")["reason"].to_dict() == {
        0: C.R_NAIVE_TS, 1: C.R_MISSING, 2: C.R_NAIVE_TS, 3: C.R_NAIVE_TS,
    }


def test_parquet_unix_seconds_column(tmp_path, tax):
    events = _events()
    events["timestamp"] = np.array([1709258400, 1709280000, 1709337600, 1709487000], dtype=np.int64)
    folder = _write_parquet(tmp_path / "d", {"users": _users(), "items": _items(), "events": events})
    result = validate(data=folder, taxonomy=tax, end=END)
    assert result.quarantine.empty
    assert result.events["timestamp"].iloc[0] == pd.Timestamp("2024-03-01T02:00:00Z")


def test_clean_tables_round_trip_through_parquet(tmp_path, tax):
    result = _run(taxonomy=tax)
    folder = tmp_path / "clean"
    for kind in KINDS:
        write_table(getattr(result, kind), folder / f"{kind}.parquet", kind)
    schema = pq.read_schema(folder / "items.parquet")
    assert schema.field("tags").type == pa.list_(pa.string())
    assert schema.field("published_at").type == pa.timestamp("us", tz="UTC")
    again = validate(data=folder, taxonomy=tax, end=END)
    assert again.quarantine.empty
    for kind in KINDS:
        pd.testing.assert_frame_equal(getattr(again, kind), getattr(result, kind))


def test_all_empty_lists_still_get_the_list_type(tax):
    items = _run(items=_items().assign(tags=""), taxonomy=tax).items
    assert to_arrow(items, "items").schema.field("tags").type == pa.list_(pa.string())


def test_write_quarantine(tmp_path, tax):
    events = _events()
    events.loc[0, "channel"] = "fax"
    result = _run(events=events, taxonomy=tax)
    path = write_quarantine(result.quarantine, tmp_path / "q" / "quarantine.parquet")
    back = pq.read_table(path)
    assert back.column_names == list(QUARANTINE_COLUMNS)
    assert back.schema.field("row").type == pa.int64()
    assert back.column("reason").to_pylist() == [C.R_UNKNOWN_CODE]
    empty = write_quarantine(_run(taxonomy=tax).quarantine, tmp_path / "empty.parquet")
    assert pq.read_table(empty).num_rows == 0


def test_end_comes_from_the_manifest(tmp_path, tax):
    folder = _write_csv(tmp_path / "d")
    (folder / "manifest.json").write_text(json.dumps({"end": "2024-03-02T00:00:00+00:00"}), encoding="utf-8")
    result = validate(data=folder, taxonomy=tax)
    assert result.end == pd.Timestamp("2024-03-02T00:00:00Z")
    assert result.quarantine.set_index("row")["reason"].to_dict() == {3: C.R_FUTURE_TS}
    # an explicit end wins over the manifest
    assert validate(data=folder, taxonomy=tax, end=END).quarantine.empty


def test_broken_manifest_is_a_schema_error(tmp_path, tax):
    folder = _write_csv(tmp_path / "d")
    (folder / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(SchemaError, match=r"manifest\.json: not a readable JSON file"):
        validate(data=folder, taxonomy=tax)
    (folder / "manifest.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(SchemaError, match=r"manifest\.json: expected a JSON object"):
        validate(data=folder, taxonomy=tax)


# ---- files that cannot be read -------------------------------------------------------------
def test_find_table(tmp_path):
    folder = _write_csv(tmp_path / "d")
    assert find_table(folder, "users") == folder / "users.csv"
    with pytest.raises(SchemaError, match=r"nowhere: data folder not found"):
        find_table(tmp_path / "nowhere", "users")
    with pytest.raises(SchemaError, match=r"users\.csv: is not a folder"):
        find_table(folder / "users.csv", "users")
    (folder / "users.csv").unlink()
    with pytest.raises(SchemaError, match="no users table; expected users.parquet or users.csv"):
        find_table(folder, "users")
    (folder / "items.parquet").write_bytes(b"")
    with pytest.raises(SchemaError, match="both items.parquet and items.csv; keep only one"):
        find_table(folder, "items")
    with pytest.raises(ConfigError, match="unknown table kind 'clicks'; valid: users, items, events"):
        find_table(folder, "clicks")


def test_required_columns_follow_the_contract():
    assert {kind: required_columns(kind) for kind in KINDS} == _REQUIRED


def test_read_table_errors(tmp_path):
    with pytest.raises(SchemaError, match=r"users\.csv: file not found"):
        read_table(tmp_path / "users.csv", "users")
    (tmp_path / "users.xlsx").write_bytes(b"PK")
    with pytest.raises(SchemaError, match=r"users\.xlsx: unsupported file type '\.xlsx'; valid: \.parquet, \.pq, \.csv"):
        read_table(tmp_path / "users.xlsx", "users")
    (tmp_path / "users.parquet").write_text("user_id,group,region\nu1,youth,haigang\n", encoding="utf-8")
    with pytest.raises(SchemaError, match=r"users\.parquet: not a readable Parquet file"):
        read_table(tmp_path / "users.parquet", "users")
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    with pytest.raises(SchemaError, match=r"empty\.csv: empty file, no header row"):
        read_table(tmp_path / "empty.csv", "users")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(SchemaError, match=r"binary\.csv: not UTF-8 text"):
        read_table(tmp_path / "binary.csv", "users")
    with pytest.raises(ConfigError, match="unknown table kind 'people'"):
        read_table(tmp_path / "users.csv", "people")


def test_required_column_absent_names_file_and_column(tmp_path):
    _events().drop(columns=["event_type"]).to_csv(tmp_path / "events.csv", index=False)
    with pytest.raises(
        SchemaError,
        match=r"events\.csv: required column 'event_type' absent from the events table; "
        r"required: user_id, item_id, event_type, timestamp",
    ):
        read_table(tmp_path / "events.csv", "events")
    with pytest.raises(SchemaError, match=r"users table: required column 'group', 'region' absent"):
        validate_tables(_users()[["user_id"]], _items(), _events(), end=END)


def test_read_table_returns_raw_strings_from_csv(tmp_path):
    _users().to_csv(tmp_path / "users.csv", index=False)
    raw = read_table(tmp_path / "users.csv", "users")
    pd.testing.assert_frame_equal(raw, _users(), check_dtype=False)
    assert raw["sub_group"].iloc[1] == ""  # an empty cell stays "", never NaN


def test_validate_arguments(tax):
    with pytest.raises(ConfigError, match="give exactly one of data"):
        validate(taxonomy=tax)
    with pytest.raises(ConfigError, match="give exactly one of data"):
        validate(data="x", tables=(_users(), _items(), _events()), taxonomy=tax)
    with pytest.raises(ConfigError, match=r"tables must be a \(users, items, events\) tuple"):
        validate(tables=(_users(), _items()), taxonomy=tax)
    with pytest.raises(ConfigError, match="items must be a pandas DataFrame, got dict"):
        validate(tables=(_users(), {"item_id": []}, _events()), taxonomy=tax)
    result = validate(tables=(_users(), _items(), _events()), taxonomy=tax, end=END)
    assert result.quarantine.empty


def test_a_custom_taxonomy_decides_the_codes(tmp_path):
    text = (
        '[groups.kids]\nsub_groups = ["pupil"]\n[regions.north]\n[topics.space]\n'
        "[formats.article]\n[channels.app]\n[channels.radio]\npersonal = false\n"
    )
    (tmp_path / "tax.toml").write_text(text, encoding="utf-8")
    users = pd.DataFrame({"user_id": ["a", "b"], "group": ["kids", "youth"], "region": ["north", "north"]})
    items = pd.DataFrame({"item_id": ["x"], "title": ["t"], "topics": ["space"]})
    events = pd.DataFrame({"user_id": ["a"], "item_id": ["x"], "event_type": ["click"], "timestamp": ["1709280000"]})
    result = validate(tables=(users, items, events), taxonomy=tmp_path / "tax.toml", end=END)
    assert result.quarantine["detail"].tolist() == ["group='youth'; valid: kids"]
    assert result.users["channels"].tolist() == [["app"]]


# ---- the command line ----------------------------------------------------------------------
def test_cli_reports_counts_and_writes_quarantine(tmp_path, capsys):
    frames = {"users": _users(), "items": _items(), "events": _events()}
    frames["events"].loc[3, "event_type"] = "teleport"
    folder = _write_csv(tmp_path / "d", frames)
    # 1 of 4 events quarantined: over the default 5%, within 30%
    assert main(["validate", "--data", str(folder), "--end", "2024-07-01", "--max-rejected", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "events" in out and "unknown event type" in out
    lines = {line.split("  ")[0].strip(): line.split()[-1] for line in out.splitlines() if line.strip()}
    assert lines["unknown event type"] == "1"
    assert lines["total"] == "1"
    assert out.splitlines()[3].split() == ["events", "4", "3", "1"]
    q = pq.read_table(folder / "quarantine.parquet").to_pandas()
    assert q["reason"].tolist() == [C.R_UNKNOWN_EVENT_TYPE]
    assert not (folder / "users.parquet").exists()


def test_cli_out_writes_clean_tables(tmp_path, capsys):
    folder = _write_csv(tmp_path / "d")
    out = tmp_path / "clean"
    assert main(["validate", "--data", str(folder), "--out", str(out), "--end", END]) == 0
    assert f"quarantine: {out / 'quarantine.parquet'}" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir() if p.name != ".recsys-output.json") == ["events.parquet", "items.parquet", "quarantine.parquet", "users.parquet"]
    assert validate(data=out, end=END).quarantine.empty


def _cli_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_cli_one_line_errors_exit_2(tmp_path, capsys):
    assert "data folder not found" in _cli_error(capsys, ["validate", "--data", str(tmp_path / "nowhere")])

    folder = _write_csv(tmp_path / "d")
    (folder / "items.csv").unlink()
    assert "no items table; expected items.parquet or items.csv" in _cli_error(capsys, ["validate", "--data", str(folder)])

    folder = _write_csv(tmp_path / "e")
    _users().drop(columns="region").to_csv(folder / "users.csv", index=False)
    err = _cli_error(capsys, ["validate", "--data", str(folder)])
    assert "users.csv: required column 'region' absent" in err

    folder = _write_csv(tmp_path / "f")
    (folder / "events.csv").unlink()
    (folder / "events.parquet").write_text("this is not parquet", encoding="utf-8")
    assert "events.parquet: not a readable Parquet file" in _cli_error(capsys, ["validate", "--data", str(folder)])

    folder = _write_csv(tmp_path / "g")
    err = _cli_error(capsys, ["validate", "--data", str(folder), "--out", str(folder)])
    assert "is the --data folder" in err
    err = _cli_error(capsys, ["validate", "--data", str(folder), "--end", "someday"])
    assert "end 'someday' is not a date" in err


# ---- the generated synthetic city ----------------------------------------------------------
def _synthetic():
    synthetic = pytest.importorskip("recsys.synthetic")
    if not hasattr(synthetic, "generate_city"):
        pytest.skip("recsys.synthetic.generate_city is not there yet")
    return synthetic


def test_clean_generated_city_has_empty_quarantine(tmp_path):
    synthetic = _synthetic()
    city = synthetic.generate_city(n_users=60, n_items=30, days=10, seed=3)
    synthetic.write_city(city, tmp_path / "city")
    result = validate(data=tmp_path / "city")
    assert result.counts() == {}
    assert result.rows_kept() == {"users": len(city.users), "items": len(city.items), "events": len(city.events)}


def test_dirty_generated_city_has_exactly_the_injected_counts(tmp_path):
    synthetic = _synthetic()
    city = synthetic.generate_city(n_users=60, n_items=30, days=10, seed=3, dirty=True)
    synthetic.write_city(city, tmp_path / "city")
    expected = json.loads((tmp_path / "city" / "dirty_counts.json").read_text(encoding="utf-8"))
    expected = {reason: n for reason, n in expected.items() if n}
    assert expected, "a dirty city should inject something"
    assert set(expected) <= set(C.QUARANTINE_REASONS)
    # a tiny city: one bad row of each kind is far more than 5% of a table
    assert main(["validate", "--data", str(tmp_path / "city"), "--max-rejected", "1"]) == 0
    result = validate(data=tmp_path / "city")
    assert result.counts() == expected
    q = pq.read_table(tmp_path / "city" / "quarantine.parquet").to_pandas()
    assert q["reason"].value_counts().to_dict() == expected


# ---- the checks' fast paths give the answers of the plain ones -------------------------------
@pytest.mark.parametrize("blank", ["", " ", "\t\n", "\u3000", "\u00a0 ", "\u2003"])
def test_a_whitespace_only_id_is_missing(tax, blank):
    users = _users()
    users.loc[1, "user_id"] = blank  # any Unicode whitespace, as str.strip() sees it
    events = _events()
    events.loc[2, "event_id"] = blank  # an event id left blank is generated from the row
    result = _run(users=users, events=events, taxonomy=tax)
    q = result.quarantine.set_index(["table", "row"])["reason"].to_dict()
    assert q[("users", 1)] == C.R_MISSING
    assert q[("events", 2)] == C.R_UNKNOWN_USER and q[("events", 3)] == C.R_UNKNOWN_USER  # u1's events
    assert "e2" not in result.events["event_id"].tolist()  # its row was quarantined, not renamed and kept
    kept = _run(events=events, taxonomy=tax).events["event_id"].tolist()
    # an empty event id is generated from the row ("e" + row); other ids are kept as given
    assert kept == ["e-a", "e-b", "e2" if blank == "" else blank, "e-d"]


def test_repeats_match_a_sorting_reference():
    from recsys.schema import _repeats

    def reference(group, compete, other=None):
        out = np.full(len(group), -1)
        first = {}
        for row in np.flatnonzero(compete):
            key = group[row]
            if key in first and (other is None or other[first[key]] != other[row]):
                out[row] = first[key]
            first.setdefault(key, row)
        return out

    rng = np.random.default_rng(7)
    for scale in (10, 10**12):  # dense codes (a factorization) and sparse ones (the sorting path)
        group = rng.integers(0, 40, 500) * scale
        compete = rng.random(500) < 0.8
        other = rng.integers(0, 3, 500)
        np.testing.assert_array_equal(_repeats(group, compete), reference(group, compete))
        np.testing.assert_array_equal(_repeats(group, compete, other), reference(group, compete, other))
    assert (_repeats(np.arange(5), np.zeros(5, bool)) == -1).all()


def test_hash_repeats_find_the_exact_repeats_even_when_hashes_collide():
    from recsys.schema import _hash_repeats, _repeats

    rng = np.random.default_rng(11)
    values = rng.integers(0, 60, 400)
    other = rng.integers(0, 2, 400)
    compete = rng.random(400) < 0.9
    want = _repeats(values, compete)
    want_other = _repeats(values, compete, other)
    exact = lambda rows: values[rows]  # noqa: E731 - the exact codes of the candidate rows
    for hashes in (values.astype(np.uint64) * np.uint64(2654435761), (values % 7).astype(np.uint64),
                   np.zeros(400, np.uint64)):  # a good hash, many collisions, every row colliding
        np.testing.assert_array_equal(_hash_repeats(hashes, compete, exact), want)
        np.testing.assert_array_equal(_hash_repeats(hashes, compete, exact, other=lambda rows: other[rows]), want_other)
    distinct = np.arange(400, dtype=np.uint64)  # no hash twice: nothing repeats, exact never asked
    assert (_hash_repeats(distinct, compete, lambda rows: 1 / 0) == -1).all()
