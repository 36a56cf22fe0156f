"""Tests of recsys/taxonomy.py: the default file, custom files, malformed files, lookups."""

from __future__ import annotations

import pytest

from recsys.exceptions import SchemaError, UnknownCodeError
from recsys.taxonomy import load_taxonomy, parse_taxonomy

MINIMAL = """
name = "tinytown"
timezone = "Europe/Berlin"

[groups.kids]
zh = "孩子"
en = "Kids"
sub_groups = { toddler = "幼儿", pupil = "小学生" }

[groups.adults]
zh = "成人"
sub_groups = ["worker"]

[regions.north]
zh = "北"
urban = true
population_share = 0.25

[regions.south]
urban = false
population_share = 0.75

[topics]
space = { zh = "航天", en = "Space" }

[formats]
article = { zh = "图文" }
audio = { zh = "音频" }

[channels.app]
zh = "应用"
formats = ["article", "audio"]

[channels.radio]
personal = false
formats = ["audio"]
"""


def _write(tmp_path, text, name="tax.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def default():
    return load_taxonomy()


# ---- the default file (shared/CONTRACT.md) ------------------------------------------------
def test_default_has_the_contract_codes(default):
    assert default.name == "qinhuangdao"
    assert default.timezone == "Asia/Shanghai"
    assert default.codes("group") == ("youth", "farmer", "urban_worker", "civil_servant", "resident")
    assert default.codes("region") == (
        "haigang", "etdz", "shanhaiguan", "beidaihe", "funing", "changli", "bdh_new", "lulong", "qinglong",
    )
    assert len(default.codes("topic")) == 25
    assert {"disaster_prevention", "robotics_youth", "rural_ecommerce"} <= set(default.codes("topic"))
    assert default.codes("format") == ("article", "video", "short_video", "audio", "animation", "ebook", "event")
    assert default.codes("channel") == ("app_push", "wechat", "e_reader", "tv", "radio", "cinema", "kiosk")


def test_default_sub_groups_belong_to_their_groups(default):
    assert default.sub_groups["pupil"] == "youth"
    assert default.sub_groups["rural_woman"] == "farmer"
    assert default.sub_groups["migrant_worker"] == "urban_worker"
    assert default.sub_groups["elderly"] == "resident"
    assert len(default.sub_groups) == 16
    assert default.zh("sub_group", "elderly") == "老年人"


def test_default_regions_channels_and_shares(default):
    assert [r for r, urban in default.urban.items() if urban] == ["haigang", "etdz", "shanhaiguan", "beidaihe"]
    assert sum(default.population_share.values()) == pytest.approx(1.0)
    assert default.personal_channels == ("app_push", "wechat", "e_reader")
    assert default.formats_for("radio") == ("audio",)
    assert default.formats_for("e_reader") == ("article", "ebook", "animation")
    assert default.zh("region", "qinglong") == "青龙县"
    assert str(default.tz) == "Asia/Shanghai"
    assert "[groups.youth]" in default.source_text


# ---- a custom file ----------------------------------------------------------------------
def test_custom_file_loads_with_its_own_codes(tmp_path):
    tax = load_taxonomy(_write(tmp_path, MINIMAL))
    assert tax.name == "tinytown"
    assert tax.timezone == "Europe/Berlin"
    assert tax.codes("group") == ("kids", "adults")
    assert tax.sub_groups == {"toddler": "kids", "pupil": "kids", "worker": "adults"}
    assert tax.sub_group_names["toddler"] == "幼儿"
    assert tax.sub_group_names["worker"] == "worker"  # a list gives no names
    assert tax.urban == {"north": True, "south": False}
    assert tax.population_share == {"north": 0.25, "south": 0.75}
    assert tax.personal_channels == ("app",)
    assert tax.channel_formats == {"app": ("article", "audio"), "radio": ("audio",)}
    assert tax.groups["adults"].en == "adults"  # a missing name falls back to the code
    assert tax.topics["space"].zh == "航天"


def test_custom_file_defaults(tmp_path):
    text = """
[groups.a]
[regions.r1]
[regions.r2]
[topics.t]
[formats.f1]
[formats.f2]
[channels.c]
"""
    tax = load_taxonomy(_write(tmp_path, text))
    assert tax.name == "custom"
    assert tax.timezone == "Asia/Shanghai"
    assert tax.population_share == {"r1": 0.5, "r2": 0.5}
    assert tax.urban == {"r1": True, "r2": True}
    assert tax.channel_formats == {"c": ("f1", "f2")}  # a channel without a list carries every format
    assert tax.personal_channels == ("c",)
    assert tax.sub_groups == {}


# ---- malformed files: a SchemaError naming the file ----------------------------------------
def _broken(old: str, new: str) -> str:
    assert old in MINIMAL
    return MINIMAL.replace(old, new)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("this is = = not toml", "not valid TOML"),
        (_broken('timezone = "Europe/Berlin"', 'timezone = "Mars/Olympus"'), "unknown timezone 'Mars/Olympus'"),
        (_broken('timezone = "Europe/Berlin"', 'timezone = "America"'), "unknown timezone 'America'"),
        (_broken("[topics]\nspace = { zh = \"航天\", en = \"Space\" }", ""), r"needs a non-empty \[topics\] table"),
        (_broken('[topics]\nspace = { zh = "航天", en = "Space" }', '[topics]\nspace = "航天"'),
         r"\[topics.space\] must be a table"),
        (_broken("[regions.north]", "[regions.North]"), "code 'North' in \\[regions\\] must be lowercase snake_case"),
        (_broken("[regions.north]", '[regions."a|b"]'), "code 'a|b' in \\[regions\\]"),
        (_broken('sub_groups = ["worker"]', 'sub_groups = ["pupil"]'), "sub_group 'pupil' listed under two groups"),
        (_broken('sub_groups = ["worker"]', 'sub_groups = "worker"'), "sub_groups must be a table"),
        (_broken('sub_groups = ["worker"]', 'sub_groups = ["Worker"]'), "code 'Worker' in \\[groups.adults\\]"),
        (_broken('formats = ["audio"]', 'formats = ["audio", "video"]'),
         "channel 'radio' carries unknown format 'video'; valid: article, audio"),
        (_broken('formats = ["audio"]', 'formats = "audio"'), "formats must be a list"),
        (_broken("personal = false", 'personal = "no"'), r"\[channels.radio\] personal must be true or false"),
        (_broken("urban = false", 'urban = "no"'), r"\[regions.south\] urban must be true or false"),
        (_broken("population_share = 0.75", 'population_share = "many"'), "population_share must be a number"),
        (_broken("population_share = 0.75", "population_share = -1"), "population_share must be a number >= 0"),
    ],
)
def test_malformed_file_raises_schema_error_naming_the_file(tmp_path, text, match):
    path = _write(tmp_path, text, name="broken_city.toml")
    with pytest.raises(SchemaError, match=match) as info:
        load_taxonomy(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "\n" not in message


def test_missing_file_raises_schema_error(tmp_path):
    with pytest.raises(SchemaError, match=r"nowhere\.toml: taxonomy file not found"):
        load_taxonomy(tmp_path / "nowhere.toml")


def test_unreadable_file_raises_schema_error(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes("name = 'caf\xe9'".encode("latin-1"))
    with pytest.raises(SchemaError, match=r"latin1\.toml: cannot read taxonomy file"):
        load_taxonomy(path)
    with pytest.raises(SchemaError, match="cannot read taxonomy file"):
        load_taxonomy(tmp_path)  # a folder


def test_parse_taxonomy_names_its_origin():
    with pytest.raises(SchemaError, match=r"^<inline>: not valid TOML"):
        parse_taxonomy("[[[", origin="<inline>")


# ---- lookups ------------------------------------------------------------------------------
def test_check_returns_a_valid_code(default):
    assert default.check("region", "changli") == "changli"
    assert default.check_many("topic", ["earthquake", "ecology"]) == ["earthquake", "ecology"]


def test_unknown_code_lists_the_valid_codes(default):
    with pytest.raises(UnknownCodeError, match="unknown region 'beijing'; valid: haigang, etdz, .*qinglong$"):
        default.check("region", "beijing")
    with pytest.raises(UnknownCodeError, match="unknown format 'podcast'; valid: article, video"):
        default.check_many("format", ["video", "podcast"])
    with pytest.raises(UnknownCodeError, match="unknown channel 'fax'; valid: app_push"):
        default.formats_for("fax")


def test_unknown_kind_lists_the_kinds(default):
    with pytest.raises(UnknownCodeError, match="unknown code kind 'colour'; valid: group, sub_group, region"):
        default.codes("colour")
    with pytest.raises(UnknownCodeError, match="unknown code kind 'colour'"):
        default.zh("colour", "red")


def test_check_sub_group(default):
    assert default.check_sub_group("youth", "pupil") == "pupil"
    assert default.check_sub_group("farmer", "") == ""
    with pytest.raises(UnknownCodeError, match="sub_group 'pupil' is not in group 'farmer'; valid: farmer_general"):
        default.check_sub_group("farmer", "pupil")
    with pytest.raises(UnknownCodeError, match="unknown sub_group 'alien'"):
        default.check_sub_group("farmer", "alien")
    with pytest.raises(UnknownCodeError, match="unknown group 'pirate'"):
        default.check_sub_group("pirate", "")


def test_zh_falls_back_to_the_code(default):
    assert default.zh("topic", "earthquake") == "地震"
    assert default.zh("topic", "no_such_topic") == "no_such_topic"
    assert default.zh("sub_group", "no_such_sub") == "no_such_sub"
