"""List assembly: de-duplication, soft topic cap, per-user limits, rank renumbering."""

from __future__ import annotations

import pandas as pd

from recsys.push.lists import assemble_lists, topic_deferred

TOPICS = pd.Series(
    {
        "a1": ["ecology"],
        "a2": ["ecology"],
        "a3": ["ecology", "weather_climate"],
        "b1": ["earthquake"],
        "b2": ["weather_climate"],
    }
)


def _cands(rows):
    return pd.DataFrame(
        [(u, r + 1, i, 1.0 - 0.1 * r, [f"why {i}"]) for u, items in rows for r, i in enumerate(items)],
        columns=["user_id", "rank", "item_id", "score", "reasons"],
    )


def test_topic_deferred_counts_earlier_items_per_user():
    cands = _cands([("u1", ["a1", "a2", "a3", "b1"]), ("u2", ["a3", "b2", "a1", "a2"])])
    # u1's a3 is its third ecology item; u2's a2 likewise (a3 counts for ecology and weather)
    assert topic_deferred(cands, TOPICS, 2).tolist() == [False, False, True, False, False, False, False, True]
    assert topic_deferred(cands, TOPICS, 2, exempt=["ecology"]).tolist() == [False] * 8
    assert topic_deferred(cands, TOPICS, 1).tolist() == [False, True, True, False, False, True, True, True]


def test_cap_defers_then_relaxes_to_fill():
    cands = _cands([("u1", ["a1", "a2", "a3", "b1"])])
    three = assemble_lists(cands, limit=pd.Series({"u1": 3}), item_topics=TOPICS, topic_cap=2)
    assert three["item_id"].tolist() == ["a1", "a2", "b1"]
    assert three["rank"].tolist() == [1, 2, 3]
    four = assemble_lists(cands, limit=pd.Series({"u1": 10}), item_topics=TOPICS, topic_cap=2)
    assert four["item_id"].tolist() == ["a1", "a2", "b1", "a3"]  # relaxed only to fill


def test_blocked_pairs_and_limits_per_user():
    cands = _cands([("u1", ["a1", "b1", "b2"]), ("u2", ["a1", "b1", "b2"]), ("u3", ["b1"])])
    blocked = pd.DataFrame({"user_id": ["u1", "u3"], "item_id": ["a1", "a1"]})
    out = assemble_lists(
        cands, limit=pd.Series({"u1": 2, "u2": 1, "u3": 0}), item_topics=TOPICS, topic_cap=2, blocked=blocked
    )
    assert list(zip(out.user_id, out["rank"], out.item_id)) == [("u1", 1, "b1"), ("u1", 2, "b2"), ("u2", 1, "a1")]
    assert out["reasons"].tolist()[0] == ["why b1"]


def test_empty_in_empty_out():
    out = assemble_lists(_cands([]), limit=pd.Series(dtype=int), item_topics=TOPICS, topic_cap=2)
    assert len(out) == 0


def test_fetch_deeper_only_for_users_who_need_it():
    from recsys.push.lists import fetch_lists

    catalogue = [f"i{n:02d}" for n in range(20)]
    topics = pd.Series({i: [f"t{n}"] for n, i in enumerate(catalogue)})
    calls = []

    def recommend(users, k):
        calls.append((tuple(users), k))
        return _cands([(u, catalogue[:k]) for u in users])

    blocked = pd.DataFrame({"user_id": ["u1"] * 10, "item_id": catalogue[:10]})
    limit = pd.Series({"u1": 3, "u2": 3, "u3": 0})
    out = fetch_lists(recommend, ["u1", "u2", "u3"], limit, item_topics=topics, topic_cap=2, blocked=blocked)
    assert out[out.user_id == "u1"]["item_id"].tolist() == ["i10", "i11", "i12"]
    assert out[out.user_id == "u2"]["item_id"].tolist() == ["i00", "i01", "i02"]
    # u2 has nothing blocked: its list as ranked; u1 starts deeper and goes deeper once more
    assert calls == [(("u2",), 3), (("u1",), 10), (("u1",), 40)]


def test_fetch_stops_when_the_ranking_runs_dry():
    from recsys.push.lists import fetch_lists

    def recommend(users, k):
        return _cands([(u, ["b1", "b2"][:k]) for u in users])

    blocked = pd.DataFrame({"user_id": ["u1"], "item_id": ["b1"]})
    out = fetch_lists(recommend, ["u1"], pd.Series({"u1": 3}), item_topics=TOPICS, topic_cap=2, blocked=blocked)
    assert out["item_id"].tolist() == ["b2"]
    empty = fetch_lists(recommend, ["u1"], pd.Series({"u1": 0}), item_topics=TOPICS, topic_cap=2, blocked=blocked)
    assert len(empty) == 0 and "item_id" in empty.columns


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=150, deadline=None)
@given(
    lists=st.lists(st.lists(st.sampled_from(list(TOPICS.index)), max_size=8, unique=True), min_size=1, max_size=5),
    cap=st.integers(min_value=1, max_value=3),
)
def test_topic_deferred_matches_a_plain_loop(lists, cap):
    cands = _cands([(f"u{n}", items) for n, items in enumerate(lists)])
    expected = []
    for items in lists:
        seen: dict[str, int] = {}
        for item in items:
            expected.append(any(seen.get(t, 0) >= cap for t in TOPICS[item]))
            for t in TOPICS[item]:
                seen[t] = seen.get(t, 0) + 1
    assert topic_deferred(cands, TOPICS, cap).tolist() == expected


def test_item_topics_entries():
    from recsys.push.lists import ItemTopics

    topics = ItemTopics.build(TOPICS)
    rows, codes = topics.entries(["a3", "zz", "b1"])
    assert rows.tolist() == [0, 0, 2]
    assert [topics.names[c] for c in codes] == ["ecology", "weather_climate", "earthquake"]
