"""Run scope (opt-out, channels, segment, holdout) and bucket-aligned chunks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.exceptions import ConfigError, UnknownCodeError
from recsys.push.hashing import user_buckets
from recsys.push.channels import subscriptions
from recsys.push.plan import Segment, make_chunks, plan_users, usable_channels
from recsys.taxonomy import load_taxonomy

CH = ("app_push", "wechat", "e_reader")


def _users(n=400):
    rng = np.random.default_rng(0)
    groups = np.array(["farmer", "youth"])[rng.integers(0, 2, n)]
    regions = np.array(["qinglong", "haigang"])[rng.integers(0, 2, n)]
    channels = [[["app_push"], ["wechat", "e_reader"], [], ["tv"]][i % 4] for i in range(n)]
    return pd.DataFrame(
        {
            "user_id": [f"u{i:04d}" for i in range(n)],
            "group": groups,
            "region": regions,
            "channels": channels,
            "push_opt_out": np.arange(n) % 10 == 0,
        }
    )


def _plan(users, segment=Segment(), share=0.1):
    subscribed = usable_channels(subscriptions(users["channels"], CH), CH, segment.channel)
    return plan_users(users, subscribed=subscribed, segment=segment, holdout_share=share, holdout_salt="s", n_buckets=8)


def test_scope_and_skip_reasons():
    users = _users()
    plan = _plan(users)
    picked = users.iloc[plan.scope]
    assert not picked["push_opt_out"].any()
    assert all(set(c) & set(CH) for c in picked["channels"])
    assert set(picked["user_id"]).isdisjoint(plan.holdout["user_id"])
    # every user of the segment is either computed or skipped for exactly one reason
    assert len(plan.scope) + sum(plan.skipped.values()) == plan.segment_users == 400
    assert plan.skipped["opted_out"] == 40
    assert plan.skipped["no_subscribed_channel"] == 180  # [] and ["tv"], opted-out ones counted above
    assert (np.diff(plan.buckets) >= 0).all()
    assert (plan.buckets == user_buckets(picked["user_id"], 8)).all()
    counts = np.bincount(plan.reason, minlength=5)
    assert counts.tolist() == [len(plan.scope), 40, 180, plan.skipped["holdout"], 0]


def test_segment_and_forced_channel():
    users = _users()
    full = _plan(users)
    plan = _plan(users, Segment(group="farmer", region="qinglong", channel="wechat"))
    picked = users.iloc[plan.scope]
    assert set(picked["group"]) == {"farmer"} and set(picked["region"]) == {"qinglong"}
    assert all("wechat" in c for c in picked["channels"])
    # the segment holds out exactly the city-wide holdout's users of that segment
    city_holdout = full.holdout[(full.holdout.group == "farmer") & (full.holdout.region == "qinglong")]
    assert set(plan.holdout["user_id"]) == set(city_holdout["user_id"])
    assert (plan.held == full.held).all() and plan.in_segment.sum() == plan.segment_users


def test_segment_codes_are_checked():
    tax = load_taxonomy()
    with pytest.raises(UnknownCodeError, match="unknown group 'farmers'; valid: youth"):
        Segment(group="farmers").check(tax)
    with pytest.raises(UnknownCodeError, match="unknown region 'mars'"):
        Segment(region="mars").check(tax)
    with pytest.raises(ConfigError, match="channel 'tv' is not a personal channel; valid: app_push"):
        Segment(channel="tv").check(tax)


def test_chunks_own_whole_buckets():
    users = _users()
    plan = _plan(users, share=0.0)
    chunks = make_chunks(plan.scope, plan.buckets, 8, chunk_size=50)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert np.concatenate([c.users for c in chunks]).tolist() == plan.scope.tolist()
    assert all((plan.scope[c.offset : c.offset + len(c.users)] == c.users).all() for c in chunks)
    for chunk in chunks:
        got = set(user_buckets(users["user_id"].iloc[chunk.users], 8).tolist())
        assert got <= set(chunk.buckets)
        assert len(chunk.users) >= 50 or chunk is chunks[-1]
    assert chunks[0].bucket_lo == 0 and chunks[-1].bucket_hi == 8
    one = make_chunks(plan.scope, plan.buckets, 8, chunk_size=10_000)
    assert len(one) == 1 and one[0].buckets == range(0, 8)
    assert make_chunks(plan.scope[:0], plan.buckets[:0], 8, chunk_size=5) == []
