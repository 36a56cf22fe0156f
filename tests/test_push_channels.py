"""Channel rules from config, send windows (quiet hours) and channel choice."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

from recsys.config import PushConfig, config_from_dict
from recsys.exceptions import ConfigError, SchemaError
from recsys.push.channels import channel_order, channel_rules, choose_channels, subscriptions
from recsys.taxonomy import load_taxonomy, parse_taxonomy

TAX = load_taxonomy()


def test_default_rules_cover_every_personal_channel():
    rules = channel_rules(PushConfig(), TAX)
    assert tuple(rules) == ("app_push", "wechat", "e_reader")
    assert rules["app_push"].k == 3 and rules["app_push"].daily_cap == 5
    assert rules["app_push"].send_after == dt.time(8, 0)


def test_priority_order_then_taxonomy_order():
    cfg = dataclasses.replace(PushConfig(), channel_priority=["e_reader"])
    assert channel_order(cfg, TAX) == ("e_reader", "app_push", "wechat")


def test_send_window_local_and_across_midnight():
    rules = channel_rules(PushConfig(), TAX)
    start, end = rules["app_push"].window(dt.date(2026, 7, 1), TAX.tz)
    assert start == pd.Timestamp("2026-07-01 08:00", tz="Asia/Shanghai")
    assert end == pd.Timestamp("2026-07-01 21:00", tz="Asia/Shanghai")
    assert start.tz_convert("UTC") == pd.Timestamp("2026-07-01 00:00", tz="UTC")
    cfg = config_from_dict({"push": {"send_after": {"wechat": "22:00"}, "send_before": {"wechat": "06:30"}}}).push
    start, end = channel_rules(cfg, TAX)["wechat"].window(dt.date(2026, 7, 1), TAX.tz)
    assert end - start == pd.Timedelta(hours=8, minutes=30)
    assert end.day == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"k": {"app-push": 3}}, "push k has unknown personal channel 'app-push'; valid: app_push, wechat, e_reader"),
        ({"daily_cap": {"tv": 3}}, "push daily_cap has unknown personal channel 'tv'"),
        ({"weekly_cap": {"wechat": -1}}, "[push] weekly_cap.wechat = -1 is out of range; valid: 0..10000"),
        ({"k": {"wechat": 0}}, "[push] k.wechat = 0 is out of range; valid: 1..100"),
        ({"send_after": {"app_push": "8h"}},
         "[push] send_after.app_push = '8h' is not valid; valid: a local time HH:MM, 00:00..23:59"),
        ({"send_before": {"app_push": "25:00"}}, "[push] send_before.app_push = '25:00' is not valid"),
        ({"default_send_after": "7.30"}, "[push] default_send_after = '7.30' is not valid; valid: a local time HH:MM"),
        ({"channel_priority": ["tv"]}, "channel_priority has 'tv', not a personal channel"),
        ({"dedup_days": 0}, "[push] dedup_days = 0 is out of range; valid: 1..3650"),
        ({"channels_per_user": 0}, "[push] channels_per_user = 0 is out of range"),
        ({"chunk_size": 0}, "[push] chunk_size = 0 is out of range"),
        ({"workers": 0}, "[push] workers = 0 is out of range"),
        ({"workers": 2.5}, "config [push] workers must be an integer, got 2.5"),
        ({"history_buckets": 0}, "[push] history_buckets = 0 is out of range"),
    ],
)
def test_bad_config_is_named(change, message):
    # channel_rules checks a PushConfig built in code too, so build it past the load-time range checks
    base = PushConfig()
    cfg = dataclasses.replace(
        base, **{k: ({**getattr(base, k), **v} if isinstance(v, dict) else v) for k, v in change.items()}
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        channel_rules(cfg, TAX)


def test_a_channel_the_config_leaves_out_gets_the_citys_default_then_the_fallback():
    # the config names one channel; the others keep the taxonomy's own push defaults
    rules = channel_rules(dataclasses.replace(PushConfig(), k={"wechat": 7}), TAX)
    assert rules["wechat"].k == 7 and rules["app_push"].k == TAX.channel_push["app_push"]["k"] == 3
    # a taxonomy without push defaults (another city, a public data set) pushes with [push] default_*
    text = TAX.source_text.replace("\npush = {", "\n# push = {")
    plain = parse_taxonomy(text)
    assert plain.channel_push == {}
    rules = channel_rules(PushConfig(), plain)
    assert {r.k for r in rules.values()} == {PushConfig().default_k}
    assert rules["e_reader"].send_before == dt.time(22, 0) and rules["app_push"].weekly_cap == 30


def test_the_taxonomys_push_defaults_are_checked():
    with pytest.raises(SchemaError, match=r"\[channels.tv\] push must be a table of push defaults on a personal channel"):
        parse_taxonomy(TAX.source_text.replace("[channels.tv]\n", "[channels.tv]\npush = { k = 2 }\n"))
    with pytest.raises(SchemaError, match=r"\[channels.wechat\] push has unknown key 'kk'"):
        parse_taxonomy(TAX.source_text.replace("push = { k = 5, daily_cap = 8, weekly_cap = 30, send_after = \"07:30\"",
                                               "push = { kk = 5, daily_cap = 8, weekly_cap = 30, send_after = \"07:30\""))
    bad = parse_taxonomy(TAX.source_text.replace("push = { k = 3,", "push = { k = 0,"))
    with pytest.raises(ConfigError, match=r"push k.app_push must be an integer >= 1, got 0"):
        channel_rules(PushConfig(), bad)


def test_subscriptions_matrix():
    channels = pd.Series([["wechat"], ["app_push", "e_reader", "tv"], [], None])
    got = subscriptions(channels, ("app_push", "wechat", "e_reader"))
    assert got.tolist() == [
        [False, True, False],
        [True, False, True],
        [False, False, False],
        [False, False, False],
    ]


def test_choose_channels_known_answer():
    subscribed = np.array([[1, 1, 1], [1, 1, 0], [1, 1, 1], [0, 0, 0], [1, 0, 1]], dtype=bool)
    engagement = np.array([[0, 0, 0], [1, 5, 0], [2, 2, 9], [3, 3, 3], [0, 0, 0]], dtype=float)
    available = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
    one = choose_channels(subscribed, engagement, available, 1)
    # no events -> priority; most engaged; capped channel passed over; nothing subscribed; nothing left
    assert one[:, 0].tolist() == [0, 1, 0, -1, -1]
    two = choose_channels(subscribed, engagement, available, 2)
    assert two.tolist() == [[0, 1], [1, 0], [0, 1], [-1, -1], [-1, -1]]


def test_subscriptions_from_arrow_column():
    import pyarrow as pa

    column = pa.chunked_array(
        [pa.array([["wechat", "e_reader"], None], type=pa.list_(pa.string())), pa.array([["app_push"]])]
    )
    got = subscriptions(column, ("app_push", "wechat", "e_reader"))
    assert got.tolist() == [[False, True, True], [False, False, False], [True, False, False]]
