"""Config: defaults in code, TOML overlay, errors that name the key."""

from __future__ import annotations

import tomllib

import pytest

from recsys.config import EngineConfig, config_from_dict, load_config
from recsys.exceptions import ConfigError


def test_defaults_and_round_trip(tmp_path):
    cfg = load_config(None)
    assert cfg.collaborative.algorithm == "als"
    path = tmp_path / "c.toml"
    path.write_text(cfg.to_toml())
    assert load_config(path) == cfg
    assert tomllib.loads(cfg.to_toml())["collaborative"]["factors"] == cfg.collaborative.factors


def test_overlay_changes_only_given_keys(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[collaborative]\nfactors = 8\n[interactions.weights]\nclick = 0.5\n")
    cfg = load_config(path)
    assert cfg.collaborative.factors == 8
    assert cfg.collaborative.iterations == EngineConfig().collaborative.iterations
    assert cfg.interactions.weights["click"] == 0.5
    assert cfg.interactions.weights["share"] == EngineConfig().interactions.weights["share"]


@pytest.mark.parametrize(
    "doc, match",
    [
        ({"nope": {}}, r"unknown config section \[nope\]"),
        ({"collaborative": {"factor": 3}}, r"unknown config key \[collaborative\] factor; valid: .*factors"),
        ({"collaborative": {"factors": "many"}}, r"\[collaborative\] factors must be an integer"),
        ({"collaborative": {"regularization": True}}, r"must be a number"),
        ({"collaborative": 3}, r"must be a table"),
    ],
)
def test_bad_values_are_named(doc, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict(doc)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[collaborative\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_config(bad)


# ---- bounds: declared once beside each section, checked at load ---------------------------

import dataclasses  # noqa: E402

from recsys.config import (  # noqa: E402
    ALL_SECTIONS,
    CollaborativeConfig,
    EngagementConfig,
    IndexConfig,
    Keyed,
    OneOf,
    Range,
    TextFile,
    changed_sections,
    check_config,
    check_section,
    constraints,
    is_int,
    is_number,
)


def _numeric(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, dict):
        return any(_numeric(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_numeric(v) for v in value)
    return False


def test_every_numeric_setting_declares_its_range():
    cfg = EngineConfig()
    for section in dataclasses.fields(cfg):
        values = getattr(cfg, section.name)
        declared = constraints(values)
        names = {f.name for f in dataclasses.fields(values)}
        assert set(declared) <= names, f"[{section.name}] constrains unknown keys {set(declared) - names}"
        for f in dataclasses.fields(values):
            if _numeric(getattr(values, f.name)):
                rule = declared.get(f.name)
                ranges = list(rule.rules.values()) if isinstance(rule, Keyed) else [rule]
                assert all(isinstance(r, Range) for r in ranges), f"[{section.name}] {f.name} has no Range"
            if f.name == "seed":
                assert declared[f.name].lo == 0
    check_config(cfg)  # the defaults are inside their own ranges


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"collaborative": {"iterations": 10**15}},
         "[collaborative] iterations = 1000000000000000 is out of range; valid: 1..1000"),
        ({"collaborative": {"factors": 10**8}}, "[collaborative] factors = 100000000 is out of range; valid: 1..1024"),
        ({"collaborative": {"algorithm": "svd"}}, "[collaborative] algorithm = 'svd' is not valid; valid: als, bpr"),
        ({"push": {"dedup_days": 10**9}}, "[push] dedup_days = 1000000000 is out of range; valid: 1..3650"),
        ({"push": {"k": {"wechat": 0}}}, "[push] k.wechat = 0 is out of range; valid: 1..100"),
        ({"bundle": {"keep": -1}}, "[bundle] keep = -1 is out of range; valid: 1..1000"),
        ({"bundle": {"keep": 0}}, "[bundle] keep = 0 is out of range; valid: 1..1000"),
        ({"ranking": {"weight_popularity": float("nan")}}, "[ranking] weight_popularity = nan is out of range"),
        ({"ranking": {"weight_topic": float("inf")}}, "[ranking] weight_topic = inf is out of range; valid: 0..100"),
        ({"interactions": {"weights": {"click": 1e9}}}, "[interactions] weights.click = 1000000000.0 is out of range"),
        ({"engagement": {"freshness_taus_days": [1.0, -4.0]}},
         "[engagement] freshness_taus_days[1] = -4.0 is out of range; valid: 0.01..3650"),
        ({"ranking": {"near_duplicate_threshold": 0.0}},
         "[ranking] near_duplicate_threshold = 0.0 is out of range; valid: > 0 and <= 1"),
        ({"index": {"recall_sample": -1}}, "[index] recall_sample = -1 is out of range; valid: 0..1000000"),
        ({"training": {"min_events": 0}}, "[training] min_events = 0 is out of range"),
        ({"push": {"default_send_after": "25:99"}},
         "[push] default_send_after = '25:99' is not valid; valid: a local time HH:MM, 00:00..23:59"),
        ({"push": {"send_before": {"wechat": "22h"}}}, "[push] send_before.wechat = '22h' is not valid"),
    ],
)
def test_out_of_range_values_are_refused_at_load(tmp_path, doc, message):
    import tomli_w

    path = tmp_path / "recsys.toml"
    path.write_text(tomli_w.dumps(doc))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: {message}" or str(info.value).startswith(f"{path}: {message}")


def test_stopwords_path_must_be_a_small_regular_file(tmp_path):
    for target, why in [("/dev/zero", "is not a regular file"), (str(tmp_path), "is not a regular file"),
                        (str(tmp_path / "absent.txt"), "cannot be read")]:
        path = tmp_path / "c.toml"
        path.write_text(f'[content]\nstopwords = "{target}"\n')
        with pytest.raises(ConfigError, match=rf"c\.toml: \[content\] stopwords = '{target}' {why}"):
            load_config(path)
    huge = tmp_path / "huge.txt"
    with open(huge, "wb") as fh:  # sparse: no 11 MB written
        fh.truncate(11_000_000)
    path.write_text(f'[content]\nstopwords = "{huge}"\n')
    with pytest.raises(ConfigError, match=r"is 11,000,000 bytes; valid: a text file of at most 10,000,000 bytes"):
        load_config(path)
    ok = tmp_path / "stop.txt"
    ok.write_text("的\n了\n", encoding="utf-8")
    path.write_text(f'[content]\nstopwords = "{ok}"\n')
    assert load_config(path).content.stopwords == str(ok)


def test_bad_config_files_are_one_line_errors_naming_the_file(tmp_path):
    gbk = tmp_path / "gbk.toml"
    gbk.write_bytes('[content]\nstopwords = "停用词.txt"\n'.encode("gbk"))
    with pytest.raises(ConfigError, match=r"gbk\.toml: not UTF-8 text .*iconv -f GBK"):
        load_config(gbk)
    with pytest.raises(ConfigError, match=r"is a folder; --config takes a TOML file"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match=r"/dev/zero: not a regular file"):
        load_config("/dev/zero")
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ConfigError, match=r"deep\.toml: not valid TOML"):
        load_config(deep)
    deep.write_text("x = " + "{a = " * 50_000 + "1" + "}" * 50_000 + "\n")
    with pytest.raises(ConfigError, match=r"deep\.toml: "):
        load_config(deep)
    big = tmp_path / "big.toml"
    with open(big, "wb") as fh:
        fh.truncate(2_000_000)
    with pytest.raises(ConfigError, match=r"big\.toml: 2,000,000 bytes is too large"):
        load_config(big)


def test_a_section_the_command_does_not_use_is_refused(tmp_path):
    path = tmp_path / "push.toml"
    path.write_text("[push]\ndedup_days = 90\n[collaborative]\nfactors = 8\n")
    with pytest.raises(ConfigError, match=r"push\.toml: push does not use \[collaborative\]; it applies at train time"):
        load_config(path, command="push", sections=("push",))
    assert load_config(path, command="train", sections=ALL_SECTIONS).push.dedup_days == 90
    with pytest.raises(ConfigError, match=r"evaluate does not use \[push\]; it applies to recsys push"):
        load_config(path, command="evaluate", sections=("collaborative", "ranking"))


def test_changed_sections_hold_only_what_differs():
    cfg = EngineConfig()
    assert changed_sections(cfg) == {}
    cfg = config_from_dict({"collaborative": {"factors": 8}})
    out = changed_sections(cfg)
    assert list(out) == ["collaborative"] and out["collaborative"]["factors"] == 8
    assert out["collaborative"]["iterations"] == EngineConfig().collaborative.iterations


def test_constraint_objects_describe_themselves():
    assert Range(1, 10).describe() == "1..10" and not Range(1, 10).ok(True)
    assert OneOf(("a", "b")).describe() == "a, b"
    assert TextFile(10).problem("") is None


def test_one_number_test_refuses_bools_and_takes_numpy():
    import numpy as np

    assert is_int(3) and is_int(np.int64(3)) and not is_int(True) and not is_int(3.0) and not is_int("3")
    assert is_number(0.5) and is_number(np.float32(0.5)) and is_number(2) and not is_number(np.bool_(True))


def test_sections_are_frozen_and_replace_makes_a_new_one():
    cfg = EngineConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.collaborative.factors = 8  # type: ignore[misc]
    changed = config_from_dict({"collaborative": {"factors": 8}}, base=cfg)
    assert changed.collaborative.factors == 8 and cfg.collaborative.factors == 64


@pytest.mark.parametrize(
    "section, message",
    [
        # a section built in Python meets the same rules, in the same words, as one read from TOML
        (IndexConfig(hnsw_m=1), r"^\[index\] hnsw_m = 1 is out of range; valid: 2..256$"),
        (IndexConfig(ef_search=True), r"^config \[index\] ef_search must be an integer, got True$"),
        (CollaborativeConfig(learning_rate=0.0), r"learning_rate = 0.0 is out of range; valid: > 0 and <= 10"),
        (EngagementConfig(freshness_taus_days=[]), r"freshness_taus_days = \[\] is empty; valid: at least one value"),
        (EngagementConfig(l2_item=0.0), r"\[engagement\] l2_item = 0.0 is out of range; valid: > 0"),
    ],
)
def test_check_section_checks_a_section_built_in_python(section, message):
    with pytest.raises(ConfigError, match=message):
        check_section(section)
    assert check_section(type(section)()) == type(section)()


def test_check_section_names_the_class_it_needs():
    with pytest.raises(ConfigError, match=r"config must be an IndexConfig, got dict"):
        check_section({"threads": 1}, IndexConfig)


def test_keyed_tables_name_unknown_and_missing_keys():
    rule = Keyed({"a": Range(0, 1), "b": Range(-1, 0, hi_open=True)})
    assert rule.problem({"a": 0.5, "b": -0.5}) is None
    assert rule.problem({"a": 0.5}) == "lacks key 'b'; needed: a, b"
    assert rule.problem({"a": 0.5, "b": -1, "c": 1}) == "has unknown key 'c'; valid: a, b"
    assert Keyed({"a": Range(0, 1)}, complete=False).problem({}) is None
    assert not Range(-1, 0, hi_open=True).ok(0) and Range(-1, 0, hi_open=True).describe() == ">= -1 and < 0"
    with pytest.raises(ConfigError, match=r"\[interactions\] weights.dismiss = 2.0 is out of range; valid: >= -100 and < 0"):
        config_from_dict({"interactions": {"weights": {"dismiss": 2.0}}})


def test_a_bad_index_value_is_refused_before_training_reads_anything(tmp_path):
    from recsys.training import train, train_model

    path = tmp_path / "recsys.toml"
    path.write_text("[index]\nhnsw_m = 1\n", encoding="utf-8")
    # no data folder at all: the config is refused first, so nothing is read or trained
    with pytest.raises(ConfigError, match=r"recsys.toml: \[index\] hnsw_m = 1 is out of range; valid: 2..256"):
        train(tmp_path / "no-such-data", tmp_path / "models", config_path=path, stream=None)
    # the library call: tables that no step could read prove no step ran before the check
    bad = dataclasses.replace(EngineConfig(), index=IndexConfig(hnsw_m=1))
    with pytest.raises(ConfigError, match=r"^\[index\] hnsw_m = 1 is out of range"):
        train_model(None, None, None, config=bad)  # type: ignore[arg-type]
