"""The places table (recsys.broadcast.places.load_places) and item durations in the contract."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from recsys import schema
from recsys.broadcast.places import load_places, mix_json, region_mixes
from recsys.exceptions import SchemaError, UnknownCodeError
from recsys.taxonomy import load_taxonomy


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy()


def _raw() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "place_id": ["tv_qinglong", "kiosk_1"],
            "channel": ["tv", "kiosk"],
            "region": ["qinglong", "haigang"],
            "name": ["青龙电视台", ""],
            "audience": [json.dumps({"farmer": 0.6, "elderly": 0.3, "youth": 0.1}), None],
            "slots_per_day": [3, None],
            "slot_seconds": [600, 300.5],
        }
    )


def _users() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["a", "b", "c", "d"],
            "group": ["farmer", "resident", "youth", "youth"],
            "sub_group": ["", "elderly", "pupil", "pupil"],
            "region": ["haigang"] * 4,
        }
    )


def test_places_are_normalized_and_a_missing_mix_comes_from_the_region(tax):
    places = load_places(_raw(), tax, _users())
    assert places["place_id"].tolist() == ["tv_qinglong", "kiosk_1"]
    assert places["audience"].iloc[0] == pytest.approx({"farmer": 0.6, "elderly": 0.3, "youth": 0.1})
    assert places["audience"].iloc[1] == pytest.approx({"farmer": 0.25, "elderly": 0.25, "pupil": 0.5})
    assert places["audience_source"].tolist() == ["given", "users"]
    assert places["slots_per_day"].tolist() == [3, 1] and str(places["slots_per_day"].dtype) == "int64"
    assert places["slot_seconds"].tolist() == [600.0, 300.5]
    assert places["active_hours"].tolist() == ["", ""]


def test_a_file_and_a_parquet_struct_mix_read_the_same(tax, tmp_path):
    raw = _raw()
    raw.to_csv(tmp_path / "places.csv", index=False)
    from_csv = load_places(tmp_path / "places.csv", tax, _users())
    struct = raw.copy()
    struct["audience"] = [{"farmer": 0.6, "elderly": 0.3, "youth": 0.1}, None]
    struct.to_parquet(tmp_path / "places.parquet")  # a struct column: absent keys read back as None
    from_parquet = load_places(tmp_path / "places.parquet", tax, _users())
    for frame in (from_csv, from_parquet):
        assert frame["audience"].iloc[0] == pytest.approx({"farmer": 0.6, "elderly": 0.3, "youth": 0.1})
        assert frame["slot_seconds"].tolist() == [600.0, 300.5]


@pytest.mark.parametrize(
    "column, values, error, match",
    [
        (
            "channel",
            ["app_push", "tv"],
            SchemaError,
            r"row 0 \(place_id 'tv_qinglong'\): channel 'app_push' is a personal",
        ),
        ("channel", ["tv", "fax"], UnknownCodeError, r"row 1 .*channel='fax'; valid: app_push"),
        ("audience", ['{"farmer": 0.6}', None], SchemaError, r"row 0 .*sum to 0\.6; they must sum to 1"),
        ("audience", ['{"farmer": 0.5, "aliens": 0.5}', None], UnknownCodeError, r"row 0 .*unknown group 'aliens'"),
        ("audience", ['{"farmer": -0.5, "youth": 1.5}', None], SchemaError, r"row 0 .*share of 'farmer' is -0\.5"),
        ("audience", ["farmers mostly", None], SchemaError, r"row 0 .*not a JSON object"),
        ("slot_seconds", [0, 300], SchemaError, r"row 0 .*slot_seconds=0; valid: a number of seconds > 0"),
        ("slot_seconds", [-30, 300], SchemaError, r"row 0 .*slot_seconds=-30"),
        ("slot_seconds", [None, 300], SchemaError, r"row 0 .*slot_seconds is empty"),
        ("slots_per_day", [0, 1], SchemaError, r"row 0 .*slots_per_day=0; valid: a whole number >= 1"),
        ("place_id", ["p", "p"], SchemaError, r"row 1 .*duplicate id: place_id='p' repeats row 0"),
        ("region", ["qinglong", "atlantis"], UnknownCodeError, r"row 1 .*region='atlantis'"),
        ("active_hours", ["06:00-23:00", "all day"], SchemaError, r"row 1 .*active_hours='all day'"),
        (
            "active_hours",
            ["06:00-06:20", ""],
            SchemaError,
            r"row 0 .*3 slots of 600 s need 0.5 h a day, more than its active hours 06:00-06:20 hold \(0.3333 h\)",
        ),
    ],
)
def test_a_bad_row_is_a_one_line_error_naming_it(tax, column, values, error, match):
    raw = _raw()
    raw[column] = values
    with pytest.raises(error, match=match) as info:
        load_places(raw, tax, _users())
    assert "\n" not in str(info.value)


def test_no_mix_and_no_users_is_refused(tax):
    with pytest.raises(SchemaError, match=r"row 1 .*no audience mix, and no users table"):
        load_places(_raw(), tax)
    users = _users().assign(region="funing")
    with pytest.raises(SchemaError, match=r"region 'haigang' has no registered users"):
        load_places(_raw(), tax, users)


def test_required_column_absent_names_the_file(tax, tmp_path):
    _raw().drop(columns=["region"]).to_csv(tmp_path / "places.csv", index=False)
    with pytest.raises(SchemaError, match=r"places.csv: required column 'region' absent"):
        load_places(tmp_path / "places.csv", tax)


def test_no_slot_seconds_column_is_named_not_blamed_on_a_row(tax, tmp_path):
    _raw().drop(columns=["slot_seconds"]).to_csv(tmp_path / "places.csv", index=False)
    with pytest.raises(SchemaError, match=r"places.csv: required column 'slot_seconds' absent") as info:
        load_places(tmp_path / "places.csv", tax, _users())
    assert "row" not in str(info.value)


def test_region_mixes_and_mix_json_round_trip(tax):
    mixes = region_mixes(_users(), tax)
    assert set(mixes) == {"haigang"} and sum(mixes["haigang"].values()) == pytest.approx(1.0)
    assert json.loads(mix_json(mixes["haigang"])) == {"elderly": 0.25, "farmer": 0.25, "pupil": 0.5}


def test_item_duration_is_optional_and_must_be_positive(tax):
    users = pd.DataFrame({"user_id": ["u"], "group": ["youth"], "region": ["haigang"]})
    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d"],
            "title": ["t"] * 4,
            "topics": ["earthquake"] * 4,
            "duration_seconds": [90.0, None, 0.0, -5.0],
        }
    )
    events = pd.DataFrame(
        {"user_id": ["u"], "item_id": ["a"], "event_type": ["click"], "timestamp": ["2024-01-01T00:00:00Z"]}
    )
    result = schema.validate_tables(users, items, events, taxonomy=tax, end="2025-01-01")
    assert result.items["item_id"].tolist() == ["a", "b"]
    assert result.items["duration_seconds"].iloc[0] == 90.0 and pd.isna(result.items["duration_seconds"].iloc[1])
    details = result.quarantine["detail"].tolist()
    assert details == ["duration_seconds=0.0; must be a number > 0", "duration_seconds=-5.0; must be a number > 0"]


# ---- the synthetic city's places ------------------------------------------------------------
def test_synthetic_city_places_follow_the_plan(tax):
    from recsys.synthetic.city import generate_city
    from recsys.synthetic.places import TIMED_FORMATS

    city = generate_city(400, 120, days=5, seed=3)
    places = load_places(city.places, tax, city.users)
    per_channel = places.groupby("channel").size().to_dict()
    n_regions, urban = len(tax.regions), [r for r in tax.regions if tax.urban[r]]
    assert per_channel["tv"] == n_regions and per_channel["radio"] == n_regions
    assert set(places.loc[places.channel == "cinema", "region"]) == set(urban)
    assert per_channel["kiosk"] >= 9
    # radio mixes come from the registered users, every other place states its own
    assert (places.loc[places.channel == "radio", "audience_source"] == "users").all()
    assert (places.loc[places.channel != "radio", "audience_source"] == "given").all()
    # a school kiosk's audience is mostly pupils and students; a village kiosk's mostly farmers and elderly
    youth = {k for k, g in tax.sub_groups.items() if g == "youth"} | {"youth"}
    farm = {k for k, g in tax.sub_groups.items() if g == "farmer"} | {"farmer", "elderly"}
    for pid, mix in zip(places.place_id, places.audience):
        if pid.startswith("school_"):
            assert sum(v for k, v in mix.items() if k in youth) > 0.6, (pid, mix)
        if pid.startswith("village_"):
            assert sum(v for k, v in mix.items() if k in farm) > 0.5, (pid, mix)
    # running times: every timed format has one, the others none
    timed = city.items["format"].isin(TIMED_FORMATS)
    assert city.items.loc[timed, "duration_seconds"].gt(0).all()
    assert city.items.loc[~timed, "duration_seconds"].isna().all()
    # the same seed gives the same places and items
    again = generate_city(400, 120, days=5, seed=3)
    pd.testing.assert_frame_equal(again.places, city.places)
    pd.testing.assert_frame_equal(again.items, city.items)
