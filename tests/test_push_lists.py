"""Push lists are the Recommender's own lists: one recommend_many per limit, per-user exclusions."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pandas as pd
import pytest

from recsys.push.lists import exclusions, fetch_lists

sys.path.insert(0, str(Path(__file__).parent))
import push_city  # noqa: E402

TOPICS = pd.Series(
    {
        "a1": ["ecology"],
        "a2": ["ecology"],
        "a3": ["ecology", "weather_climate"],
        "b1": ["earthquake"],
        "b2": ["weather_climate"],
    }
)


def _fake(catalogue, calls):
    """A recommend that ranks ``catalogue`` in order for everyone, honouring ``exclude``."""

    def recommend(users, k, exclude):
        calls.append((tuple(users), k, {u: list(v) for u, v in exclude.items()}))
        rows = []
        for u in users:
            items = [i for i in catalogue if i not in set(exclude.get(u, ()))][:k]
            rows += [(u, r + 1, i, 1.0 - 0.1 * r, [f"why {i}"]) for r, i in enumerate(items)]
        return pd.DataFrame(rows, columns=["user_id", "rank", "item_id", "score", "reasons"])

    return recommend


def test_one_call_per_limit_with_per_user_exclusions():
    catalogue = [f"i{n:02d}" for n in range(20)]
    calls: list = []
    blocked = pd.DataFrame({"user_id": ["u1"] * 10 + ["u4", "zz"], "item_id": catalogue[:10] + ["i03", "i00"]})
    limit = pd.Series({"u1": 3, "u2": 3, "u3": 0, "u4": 2})
    out = fetch_lists(_fake(catalogue, calls), ["u4", "u1", "u2", "u3"], limit, blocked=blocked, drop_items=["i01"])
    # one call per distinct limit, k = that limit; no deeper re-fetch, users with 0 not asked
    assert [(users, k) for users, k, _ in calls] == [(("u4",), 2), (("u1", "u2"), 3)]
    assert calls[1][2] == {"u1": [*catalogue[:10], "i01"], "u2": ["i01"]}
    assert calls[0][2] == {"u4": ["i03", "i01"]}
    # users in the order given, each best first
    assert list(zip(out.user_id, out["rank"], out.item_id)) == [
        ("u4", 1, "i00"), ("u4", 2, "i02"),
        ("u1", 1, "i10"), ("u1", 2, "i11"), ("u1", 3, "i12"),
        ("u2", 1, "i00"), ("u2", 2, "i02"), ("u2", 3, "i03"),
    ]  # fmt: skip


def test_nobody_wanted_asks_nothing():
    calls: list = []
    empty = fetch_lists(_fake(["b1"], calls), ["u1"], pd.Series({"u1": 0}), blocked=pd.DataFrame())
    assert len(empty) == 0 and "item_id" in empty.columns and calls == []


def test_exclusions_merge_blocked_pairs_and_dropped_items():
    blocked = pd.DataFrame({"user_id": ["u2", "u1", "u2", "x"], "item_id": ["b1", "a1", "a2", "a3"]})
    assert exclusions(["u1", "u2"], blocked) == {"u1": ["a1"], "u2": ["b1", "a2"]}
    assert exclusions(["u1", "u3"], blocked, ["b2"]) == {"u1": ["a1", "b2"], "u3": ["b2"]}
    assert exclusions(["u1"], blocked.iloc[:0]) == {}


def test_item_topics_entries():
    from recsys.push.lists import ItemTopics

    topics = ItemTopics.build(TOPICS)
    rows, codes = topics.entries(["a3", "zz", "b1"])
    assert rows.tolist() == [0, 0, 2]
    assert [topics.names[c] for c in codes] == ["ecology", "weather_climate", "earthquake"]


# ---- against the real Recommender: two nights on the tiny city ------------------------------


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory):
    from recsys.push import run_nightly as run
    from recsys.push.writer import read_pushes

    root = push_city.trained_city(tmp_path_factory)
    out = tmp_path_factory.mktemp("two_nights")
    d1, d2 = push_city.DAY, push_city.DAY + dt.timedelta(days=1)
    run(root / "models" / "latest", d1, out, stream=None)
    run(root / "models" / "latest", d2, out, stream=None)
    return root / "models" / "latest", read_pushes(out, d1), read_pushes(out, d2)


def test_lists_equal_recommend_many_with_the_window_excluded(two_nights):
    from recsys.config import PushConfig
    from recsys.push.channels import channel_rules
    from recsys.push.chunk import expiring_items
    from recsys.ranking import Recommender

    bundle, night1, night2 = two_nights
    # nothing pushed within the de-duplication window comes back
    again = night2.merge(night1[["user_id", "item_id"]], on=["user_id", "item_id"])
    assert len(night1) and len(night2) and again.empty
    rec = Recommender.load(bundle)
    rules = channel_rules(PushConfig(), rec.state.taxonomy)
    k = {c: r.k for c, r in rules.items()}
    weekly = {c: r.weekly_cap for c, r in rules.items()}
    sent = night1.groupby(["user_id", "channel"]).size()
    users = list(pd.unique(night2.user_id))[:12]
    overlapped = 0
    for user in users:
        mine = night2[night2.user_id == user]
        channel, start, end = mine.channel.iloc[0], mine.send_after.iloc[0], mine.send_before.iloc[0]
        # the room the caps leave tonight (the daily cap is fresh, the week holds night 1)
        limit = min(k[channel], weekly[channel] - int(sent.get((user, channel), 0)))
        pushed = night1.loc[night1.user_id == user, "item_id"].tolist()
        exclude = {user: [*pushed, *expiring_items(rec, start, end).tolist()]}
        want = rec.recommend_many([user], k=limit, channel=channel, now=start, exclude=exclude)
        assert mine.item_id.tolist() == want.item_id.tolist(), user
        assert mine["rank"].tolist() == list(range(1, len(mine) + 1))
        plain = rec.recommend_many([user], k=limit, channel=channel, now=start)
        overlapped += bool(set(plain.item_id) & set(pushed))
    # without the exclusions the ranking would have repeated night 1 (so the check above can fail)
    assert overlapped > 0


def test_a_topic_run_is_not_cut_by_a_topic_cap(tmp_path_factory):
    """The ranking's cap is soft: lists restricted to one topic (a campaign, push --topic) still fill to k."""
    from recsys.ranking import Recommender

    rec = Recommender.load(push_city.trained_city(tmp_path_factory) / "models" / "latest")
    users = [f"u{n:04d}" for n in range(10)]
    lists = fetch_lists(
        lambda u, k, exclude: rec.recommend_many(u, k=k, topics=["ecology"], exclude=exclude),
        users,
        pd.Series(5, index=users),
        blocked=pd.DataFrame({"user_id": [], "item_id": []}),
    )
    # a hard cap of ceil(max_topic_share * 5) per primary topic would cut these lists short
    assert lists.groupby("user_id").size().reindex(users).tolist() == [5] * len(users)


def test_push_topic_cap_is_refused_in_a_file_and_dropped_from_an_old_bundle(tmp_path):
    from recsys.config import config_from_dict, load_config
    from recsys.exceptions import ConfigError

    path = tmp_path / "push.toml"
    path.write_text("[push]\ntopic_cap = 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"push\.toml: \[push\] topic_cap was removed: .*\[ranking\] max_topic_share"):
        load_config(path)
    # a bundle recorded before the removal keeps loading: the key does nothing now
    assert config_from_dict({"push": {"topic_cap": 2, "dedup_days": 9}}).push.dedup_days == 9
    assert "topic_cap" not in config_from_dict({}).to_dict()["push"]
