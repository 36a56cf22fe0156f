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
