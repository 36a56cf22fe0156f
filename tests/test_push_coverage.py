"""Coverage quotas in the nightly push: rules, need from history, least-cost swaps, the table."""

from __future__ import annotations

import datetime as dt
import io
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tomli_w

sys.path.insert(0, str(Path(__file__).parent))
import push_city  # noqa: E402  (a fixture module beside the tests)

from recsys import columns as C  # noqa: E402
from recsys.cli import main as cli_main  # noqa: E402
from recsys.config import ConfigError, load_config  # noqa: E402
from recsys.push import coverage as CV  # noqa: E402
from recsys.push import run_nightly  # noqa: E402
from recsys.push.history import DAY  # noqa: E402
from recsys.push.lists import ItemTopics  # noqa: E402
from recsys.push.report import summary_table  # noqa: E402
from recsys.push.writer import read_pushes  # noqa: E402
from recsys.taxonomy import load_taxonomy  # noqa: E402

TODAY = dt.date(2026, 7, 1)
TAX = load_taxonomy()

#: item -> topics of the tiny catalogue
ITEM_TOPICS = {
    "a": ["health_literacy"], "b": ["astronomy_space"], "c": ["ecology"], "d": ["ocean_coast"],
    "x": ["modern_agriculture"], "y": ["modern_agriculture", "ecology"], "z": ["disaster_prevention"],
    "h": ["health_literacy"], "h2": ["health_literacy"],
}
TOPICS = ItemTopics.build(pd.Series(ITEM_TOPICS))


def rule(**kw) -> CV.CoverageRule:
    doc = {"name": "agri", "groups": ["farmer"], "topics": ["modern_agriculture", "disaster_prevention"]} | kw
    return CV.parse_rules([doc], TAX)[0]


def users(specs: dict[str, tuple[str, str]], capped: tuple[str, ...] = (), sub=None) -> CV.ChunkUsers:
    ids = pd.Index(list(specs), dtype=object)
    return CV.ChunkUsers(
        ids=ids,
        groups=np.array([g for g, _ in specs.values()], dtype=object),
        regions=np.array([r for _, r in specs.values()], dtype=object),
        sub_groups=None if sub is None else np.array(sub, dtype=object),
        capped=ids.isin(list(capped)),
    )


def lists(rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    """(user, channel, item, score) rows; ranks by score within each (user, channel)."""
    frame = pd.DataFrame(rows, columns=[C.USER_ID, C.CHANNEL, C.ITEM_ID, C.SCORE])
    frame[C.RANK] = frame.groupby([C.USER_ID, C.CHANNEL])[C.SCORE].rank(ascending=False, method="first").astype(int)
    frame[C.REASONS] = [["r"] for _ in range(len(frame))]
    frame["send_after"] = pd.Timestamp("2026-07-01 08:00", tz="Asia/Shanghai")
    return frame[[C.USER_ID, C.CHANNEL, C.RANK, C.ITEM_ID, C.SCORE, C.REASONS, "send_after"]]


class FakeRanking:
    """A fetch with known offers: per (user, channel) the eligible items and their scores."""

    def __init__(self, offers: dict[tuple[str, str], dict[str, float]]) -> None:
        self.offers = offers
        self.calls: list[tuple[str, list[str], tuple[str, ...]]] = []

    def __call__(self, channel, user_ids, k, topics, exclude):
        self.calls.append((channel, list(user_ids), topics))
        out = []
        for u in user_ids:
            blocked = set(exclude.loc[exclude[C.USER_ID] == u, C.ITEM_ID])
            items = {
                i: s for i, s in self.offers.get((u, channel), {}).items()
                if i not in blocked and (not topics or set(ITEM_TOPICS[i]) & set(topics))
            }
            best = sorted(items.items(), key=lambda kv: -kv[1])[: int(k[u])]
            out += [(u, r + 1, i, s, ["why"]) for r, (i, s) in enumerate(best)]
        return pd.DataFrame(out, columns=[C.USER_ID, C.RANK, C.ITEM_ID, C.SCORE, C.REASONS])


def no_history() -> pd.DataFrame:
    return pd.DataFrame({C.USER_ID: pd.Series(dtype=object), C.ITEM_ID: pd.Series(dtype=object),
                         C.CHANNEL: pd.Series(dtype=object), DAY: pd.Series(dtype="datetime64[s]")})


def history(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    """(user, item, days before today) rows."""
    return pd.DataFrame({
        C.USER_ID: [u for u, _, _ in rows], C.ITEM_ID: [i for _, i, _ in rows], C.CHANNEL: "app_push",
        DAY: [np.datetime64(TODAY - dt.timedelta(days=d), "D") for _, _, d in rows],
    })


def run(frame, who, rules, fetch, hist=None, broadcast=frozenset()):
    return CV.apply_rules(frame, who, rules, history=no_history() if hist is None else hist, topics=TOPICS,
                          day=TODAY, fetch=fetch, broadcast=broadcast)


# ---- rules -------------------------------------------------------------------------------


def test_rules_read_from_the_config_file(tmp_path):
    path = tmp_path / "recsys.toml"
    path.write_text(
        '[[push.coverage]]\nname = "farmers_agri"\ngroups = ["farmer"]\nregions = ["qinglong", "lulong"]\n'
        'topics = ["modern_agriculture", "disaster_prevention"]\nmin_items = 1\nper_days = 7\n'
        '[[push.coverage]]\nname = "elderly"\ngroups = ["resident"]\nsub_groups = ["elderly"]\nreach_share = 0.6\n'
    )
    rules = CV.parse_rules(load_config(path).push.coverage, TAX)
    assert [r.name for r in rules] == ["farmers_agri", "elderly"]
    assert rules[0].regions == {"qinglong", "lulong"} and rules[0].reach_share == 1.0
    assert rules[1].sub_groups == {"elderly"} and rules[1].topics == () and rules[1].reach_share == 0.6
    assert CV.window_days(rules) == 7 and CV.window_days(()) == 0


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"topics": ["agriculture"]}, r"\[push.coverage 'agri'\] unknown topic 'agriculture'; valid: disaster_prev"),
        ({"groups": ["farmers"]}, r"\[push.coverage 'agri'\] unknown group 'farmers'; valid: youth"),
        ({"regions": ["beijing"]}, r"\[push.coverage 'agri'\] unknown region 'beijing'; valid: "),
        ({"sub_groups": ["elderly"]}, r"sub_group 'elderly' belongs to group 'resident', which the rule's groups"),
        ({"per_days": 0}, r"\[push.coverage 'agri'\] per_days = 0 is out of range; valid: 1..365"),
        ({"reach_share": 1.5}, r"\[push.coverage 'agri'\] reach_share = 1.5 is out of range"),
        ({"min_items": "1"}, r"\[push.coverage 'agri'\] min_items must be an integer"),
        ({"topic": ["x"]}, r"unknown config key \[push.coverage 'agri'\] topic; valid: broadcast_reach"),
    ],
)
def test_bad_rules_are_one_line_errors_naming_the_rule(doc, message):
    with pytest.raises(ConfigError, match=message):
        rule(**doc)


def test_rules_need_distinct_names():
    with pytest.raises(ConfigError, match="name 'agri' is used twice"):
        CV.parse_rules([{"name": "agri"}, {"name": "agri"}], TAX)


def test_a_sub_group_rule_needs_the_users_sub_groups():
    r = CV.parse_rules([{"name": "old", "groups": ["resident"], "sub_groups": ["elderly"]}], TAX)[0]
    who = users({"u1": ("resident", "haigang"), "u2": ("resident", "haigang")})
    with pytest.raises(ConfigError, match="names sub_groups but this run knows no user's sub-group"):
        r.members(who.groups, None, who.regions)
    assert r.members(who.groups, np.array(["elderly", ""], dtype=object), who.regions).tolist() == [True, False]


# ---- per-user rules ----------------------------------------------------------------------


def test_no_rules_leave_the_lists_untouched():
    frame = lists([("u1", "app_push", "a", 0.9)])
    out, stats = run(frame, users({"u1": ("farmer", "qinglong")}), (), FakeRanking({}))
    assert out is frame and stats == []


def test_lowest_slot_gives_way_to_the_best_rule_item():
    frame = lists([("u1", "app_push", "a", 0.9), ("u1", "app_push", "b", 0.5), ("u1", "app_push", "c", 0.2)])
    fetch = FakeRanking({("u1", "app_push"): {"x": 0.15, "y": 0.1, "h": 0.8}})
    out, stats = run(frame, users({"u1": ("farmer", "qinglong")}), [rule()], fetch)
    assert out[C.ITEM_ID].tolist() == ["a", "b", "x"]
    assert out[C.RANK].tolist() == [1, 2, 3]
    assert out[C.REASONS].iloc[2] == ["重点人群保障:agri", "why"]
    assert out["send_after"].tolist() == frame["send_after"].tolist()  # other columns copied
    (row,) = stats
    assert (row["users"], row["required"], row["reached_before"], row["reached"], row["shortfall"]) == (1, 1, 0, 1, 0)
    assert row["items_added"] == 1 and row["cost_score"] == pytest.approx(0.2 - 0.15)
    assert row["list_score"] == pytest.approx(1.6)


def test_swapped_item_is_ranked_by_its_score():
    frame = lists([("u1", "app_push", "a", 0.9), ("u1", "app_push", "b", 0.5), ("u1", "app_push", "c", 0.2)])
    # the ranking's topic cap may have kept a strong item out: it takes its place by score
    out, _ = run(frame, users({"u1": ("farmer", "qinglong")}), [rule()], FakeRanking({("u1", "app_push"): {"x": 0.7}}))
    assert out.sort_values(C.RANK)[C.ITEM_ID].tolist() == ["a", "x", "b"]
    assert sorted(out[C.RANK].tolist()) == [1, 2, 3]


def test_users_already_covered_by_tonight_or_the_window_are_untouched():
    frame = lists([
        ("u1", "app_push", "a", 0.9), ("u1", "app_push", "x", 0.1),   # tonight has one
        ("u2", "app_push", "a", 0.9), ("u2", "app_push", "b", 0.3),   # history 3 days ago has one
        ("u3", "app_push", "a", 0.9), ("u3", "app_push", "b", 0.3),   # history 7 days ago: out of the window
        ("u4", "app_push", "a", 0.9), ("u4", "app_push", "b", 0.3),   # a youth: not in the segment
    ])
    who = users({u: ("farmer", "qinglong") for u in ("u1", "u2", "u3")} | {"u4": ("youth", "qinglong")})
    offers = {(u, "app_push"): {"z": 0.2} for u in ("u1", "u2", "u3", "u4")}
    out, stats = run(frame, who, [rule()], FakeRanking(offers), hist=history([("u2", "x", 3), ("u3", "y", 7)]))
    changed = out[out[C.ITEM_ID] != frame[C.ITEM_ID]]
    assert changed[C.USER_ID].tolist() == ["u3"] and changed[C.ITEM_ID].tolist() == ["z"]
    (row,) = stats
    assert (row["users"], row["reached_before"], row["reached"]) == (3, 2, 3)


def test_items_already_pushed_are_never_offered_again():
    frame = lists([("u1", "app_push", "a", 0.9), ("u1", "wechat", "b", 0.5), ("u1", "wechat", "c", 0.4)])
    fetch = FakeRanking({("u1", "app_push"): {"x": 0.3}, ("u1", "wechat"): {"x": 0.35, "y": 0.2}})
    out, stats = run(frame, users({"u1": ("farmer", "qinglong")}), [rule(min_items=2)], fetch)
    # x once only (tonight's items are excluded from offers, and one item is used once across channels)
    assert sorted(out[C.ITEM_ID]) == ["b", "x", "y"] or sorted(out[C.ITEM_ID]) == ["a", "x", "y"]
    assert out[C.ITEM_ID].value_counts().max() == 1
    assert stats[0]["reached"] == 1 and stats[0]["items_added"] == 2


def test_cheapest_swaps_across_channels():
    frame = lists([("u1", "app_push", "a", 0.9), ("u1", "app_push", "b", 0.8),
                   ("u1", "wechat", "c", 0.3), ("u1", "wechat", "d", 0.25)])
    fetch = FakeRanking({("u1", "app_push"): {"x": 0.5}, ("u1", "wechat"): {"y": 0.2, "z": 0.1}})
    out, stats = run(frame, users({"u1": ("farmer", "qinglong")}), [rule(min_items=2)], fetch)
    # costs: app_push 0.8-0.5=0.3; wechat 0.25-0.2=0.05 then 0.3-0.1=0.2 -> both wechat swaps
    assert out.loc[out[C.CHANNEL] == "app_push", C.ITEM_ID].tolist() == ["a", "b"]
    assert sorted(out.loc[out[C.CHANNEL] == "wechat", C.ITEM_ID]) == ["y", "z"]
    assert stats[0]["cost_score"] == pytest.approx(0.05 + 0.2)


def test_infeasible_rule_reports_shortfall_and_why():
    frame = lists([("u1", "app_push", "a", 0.9), ("u3", "app_push", "x", 0.9)])
    who = users({"u1": ("farmer", "qinglong"), "u2": ("farmer", "qinglong"), "u3": ("farmer", "qinglong"),
                 "u4": ("farmer", "qinglong")}, capped=("u2",))
    other = rule(name="health", topics=["health_literacy"], groups=[])
    # u1: no agri item left to push; u2: capped; u3's only other slot holds the health rule's item;
    # u4: no list and not capped (nothing eligible at all)
    fetch = FakeRanking({("u3", "app_push"): {"h2": 0.5}})
    out, stats = run(frame, who, [rule(), other], fetch)
    agri = stats[0]
    assert (agri["users"], agri["required"], agri["reached"], agri["shortfall"]) == (4, 4, 1, 3)
    assert (agri["unmet_no_eligible_item"], agri["unmet_caps_reached"], agri["unmet_no_free_slot"]) == (2, 1, 0)
    health = stats[1]
    assert (health["reached_before"], health["shortfall"]) == (1, 3)  # u1's item a is a health item
    # u3's one slot holds the agri rule's item
    assert (health["unmet_no_free_slot"], health["unmet_caps_reached"], health["unmet_no_eligible_item"]) == (1, 1, 1)
    assert out[C.ITEM_ID].tolist() == frame[C.ITEM_ID].tolist()


def test_slots_another_rule_counts_on_are_kept():
    frame = lists([("u1", "app_push", "a", 0.9), ("u1", "app_push", "b", 0.5), ("u1", "app_push", "x", 0.1)])
    health = rule(name="health", topics=["disaster_prevention"], groups=[])
    fetch = FakeRanking({("u1", "app_push"): {"z": 0.05}})
    out, stats = run(frame, users({"u1": ("farmer", "qinglong")}), [rule(topics=["modern_agriculture"]), health],
                     fetch)
    assert sorted(out[C.ITEM_ID]) == ["a", "x", "z"]  # b gave way, not the agriculture item x
    assert [s["reached"] for s in stats] == [1, 1]


def test_min_items_two_fills_what_exists():
    frame = lists([("u1", "app_push", "a", 0.9), ("u1", "app_push", "b", 0.5), ("u1", "app_push", "c", 0.2)])
    out, stats = run(frame, users({"u1": ("farmer", "qinglong")}), [rule(min_items=2)],
                     FakeRanking({("u1", "app_push"): {"x": 0.1}}))
    # one of two: kept (it counts toward the next nights of the window), but the user is not reached
    assert "x" in set(out[C.ITEM_ID])
    assert (stats[0]["reached"], stats[0]["shortfall"], stats[0]["unmet_no_eligible_item"]) == (0, 1, 1)


@pytest.mark.parametrize("seed", range(5))
def test_swaps_keep_lists_and_cost_exactly_the_score_given_up(seed):
    rng = np.random.default_rng(seed)
    ids = [f"u{i}" for i in range(40)]
    items = list(ITEM_TOPICS)
    rows = []
    for u in ids:
        for channel in rng.choice(["app_push", "wechat"], size=int(rng.integers(1, 3)), replace=False):
            for item in rng.choice(items, size=3, replace=False):
                if not any(r[0] == u and r[2] == item for r in rows):
                    rows.append((u, str(channel), str(item), float(rng.random())))
    frame = lists(rows)
    offers = {(u, c): {str(i): float(rng.random()) for i in rng.choice(items, size=4, replace=False)}
              for u in ids for c in ("app_push", "wechat")}
    who = users({u: (str(rng.choice(["farmer", "resident"])), "qinglong") for u in ids})
    rules = [rule(min_items=2), rule(name="health", groups=[], topics=["health_literacy"], reach_share=0.5)]
    out, stats = run(frame, who, rules, FakeRanking(offers))
    assert out.groupby([C.USER_ID, C.CHANNEL]).size().equals(frame.groupby([C.USER_ID, C.CHANNEL]).size())
    assert not out.duplicated([C.USER_ID, C.ITEM_ID]).any()
    assert (out.groupby([C.USER_ID, C.CHANNEL])[C.RANK].apply(sorted) == out.groupby([C.USER_ID, C.CHANNEL])[C.RANK]
            .apply(lambda r: list(range(1, len(r) + 1)))).all()
    # ranks follow scores within each list
    assert out.sort_values([C.USER_ID, C.CHANNEL, C.RANK]).groupby([C.USER_ID, C.CHANNEL])[C.SCORE].apply(
        lambda v: bool((np.diff(v.to_numpy()) <= 0).all())).all()
    for name, topic in (("agri", "modern_agriculture"), ("health", "health_literacy")):
        placed = out[out[C.REASONS].apply(lambda r: r[0] == f"{CV.REASON_PREFIX}{name}")]
        assert all(topic in ITEM_TOPICS[i] or name == "agri" and "disaster_prevention" in ITEM_TOPICS[i]
                   for i in placed[C.ITEM_ID])
        assert len(placed) == sum(s["items_added"] for s in stats if s["rule"] == name)
    cost = sum(s["cost_score"] for s in stats)
    assert sum(s["items_added"] for s in stats) > 0
    assert frame[C.SCORE].sum() - out[C.SCORE].sum() == pytest.approx(cost)


# ---- reach share -------------------------------------------------------------------------


def reach_world(n: int = 5):
    ids = [f"u{i}" for i in range(n)]
    frame = lists([(u, "app_push", "a", 0.9) for u in ids] + [(u, "app_push", "b", 0.5) for u in ids])
    # u_i's best agriculture item costs 0.1 * (i + 1)
    offers = {(u, "app_push"): {"x": 0.5 - 0.1 * (i + 1)} for i, u in enumerate(ids)}
    return frame, users({u: ("farmer", "qinglong") for u in ids}), FakeRanking(offers)


def test_reach_share_picks_the_cheapest_users_first():
    frame, who, fetch = reach_world()
    out, stats = run(frame, who, [rule(reach_share=0.6)], fetch)
    got = set(out.loc[out[C.ITEM_ID] == "x", C.USER_ID])
    assert got == {"u0", "u1", "u2"}  # ceil(0.6 x 5) = 3 cheapest
    assert (stats[0]["required"], stats[0]["reached"], stats[0]["shortfall"]) == (3, 3, 0)
    assert stats[0]["cost_score"] == pytest.approx(0.1 + 0.2 + 0.3)


def test_reach_share_counts_users_reached_before():
    frame, who, fetch = reach_world()
    hist = history([("u0", "x", 1), ("u4", "y", 2)])
    out, stats = run(frame, who, [rule(reach_share=0.6)], fetch, hist=hist)
    assert set(out.loc[out[C.ITEM_ID] == "x", C.USER_ID]) == {"u1"}
    assert (stats[0]["reached_before"], stats[0]["reached"]) == (2, 3)


def test_broadcast_places_count_toward_reach():
    frame, who, fetch = reach_world()
    places = pd.DataFrame({"region": ["qinglong", "haigang", "lulong"],
                           "audience": [{"farmer": 0.7, "resident": 0.3}, None, {"elderly": 0.5, "youth": 0.5}]})
    cells = CV.broadcast_cells(places, TAX)
    assert ("farmer", "qinglong") in cells and ("youth", "haigang") in cells and ("youth", "qinglong") not in cells
    assert ("resident", "lulong") in cells and ("farmer", "lulong") not in cells  # elderly is a resident sub-group
    out, stats = run(frame, who, [rule(reach_share=0.6, broadcast_reach=0.5)], fetch, broadcast=cells)
    # push needs (0.6 - 0.5) / (1 - 0.5) = 0.2 of 5: one user
    assert (stats[0]["required"], stats[0]["reached"], stats[0]["broadcast_credit"]) == (1, 1, True)
    assert (out[C.ITEM_ID] == "x").sum() == 1
    out, stats = run(frame, who, [rule(reach_share=0.6, broadcast_reach=0.6)], fetch, broadcast=cells)
    assert stats[0]["required"] == 0 and out[C.ITEM_ID].tolist() == frame[C.ITEM_ID].tolist()


def test_cells_are_group_by_region_and_merge_recomputes_required():
    frame, _, fetch = reach_world(6)
    region = dict(zip([f"u{i}" for i in range(6)], ["qinglong"] * 3 + ["lulong"] * 3))
    r = rule(reach_share=0.5)
    # two "chunks" of the same city: each rounds up its own share
    parts = []
    for chunk in (["u0", "u1", "u3"], ["u2", "u4", "u5"]):
        who = users({u: ("farmer", region[u]) for u in chunk})
        parts.append(run(frame[frame[C.USER_ID].isin(chunk)], who, [r], fetch)[1])
    s1, s2 = parts
    assert [s["required"] for s in s1] == [1, 1]  # lulong 1 of 1 (ceil 0.5), qinglong 1 of 2
    merged = CV.merge_stats([s1, s2], [r])
    assert [(m["region"], m["users"]) for m in merged] == [("lulong", 3), ("qinglong", 3)]
    for m in merged:
        assert m["required"] == 2 and m["reached"] >= 2 and m["shortfall"] == 0
    assert list(merged[0]) == list(CV.TABLE_COLUMNS)
    table = CV.table_frame(merged)
    assert table["cost_score"].dtype == np.float64 and len(table) == 2
    total = CV.summary(merged)["agri"]
    assert total["users"] == 6 and total["met"] and total["items_added"] == sum(m["items_added"] for m in merged)


# ---- in the nightly push (the tiny city of tests/push_city.py) ----------------------------

AGRI = {"name": "farm", "groups": ["farmer"], "regions": ["qinglong", "changli"], "topics": ["modern_agriculture"]}


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = push_city.trained_city(tmp_path_factory)
    users, items, _ = push_city.tables()
    return {"bundle": root / "models" / "latest", "users": users.set_index("user_id"),
            "items": items.set_index("item_id")}


def push_config(path: Path, **push) -> Path:
    path.write_text(tomli_w.dumps({"push": {**push_city.TRAIN_CONFIG["push"], **push}}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def nights(city, tmp_path_factory):
    """The same night without rules, with a rule every pushed user meets already, and with the farm rule."""
    tmp = tmp_path_factory.mktemp("coverage")
    out = {}
    for name, rules in (("none", []), ("met", [{"name": "any", "min_items": 1}]), ("farm", [AGRI])):
        folder = tmp / name
        cfg = push_config(tmp / f"{name}.toml", coverage=rules)
        report = run_nightly(city["bundle"], TODAY, folder, config_path=cfg, stream=None)
        out[name] = (report, read_pushes(folder, TODAY))
    return out


def _same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.drop(columns="run_id"), b.drop(columns="run_id"), check_exact=True)


def test_without_rules_the_push_is_unchanged(nights, city, tmp_path):
    none, met = nights["none"], nights["met"]
    assert "coverage" not in none[0]
    # the rule's code path ran and changed nothing: same rows, same types, same order
    _same_rows(none[1], met[1])
    assert met[0]["coverage"]["rules"]["any"]["items_added"] == 0
    plain = run_nightly(city["bundle"], TODAY, tmp_path / "plain", stream=None)  # the bundle's own [push]
    _same_rows(none[1], read_pushes(tmp_path / "plain", TODAY))
    assert plain["rows"] == none[0]["rows"]


def test_farm_rule_is_met_within_caps_and_eligibility(nights, city):
    base, (report, rows) = nights["none"][1], nights["farm"]
    users, items = city["users"], city["items"]
    # list lengths (and so the caps) do not change; only items do
    assert rows.groupby(["user_id", "channel"]).size().equals(base.groupby(["user_id", "channel"]).size())
    assert (rows.groupby(["user_id", "channel"])["rank"].apply(lambda r: sorted(r) == list(range(1, len(r) + 1)))).all()
    assert not rows.duplicated(["user_id", "item_id"]).any()
    fmt = items.loc[rows.item_id, "format"].to_numpy()
    assert all(f in TAX.formats_for(ch) for f, ch in zip(fmt, rows.channel))
    assert (items.loc[rows.item_id, "review_status"] == "approved").all()
    # every pushed farmer of the two regions holds an agriculture item, unless the table says why not
    topics = items["topics"]
    farm = users[(users["group"] == "farmer") & users["region"].isin(AGRI["regions"])].index
    pushed = rows[rows.user_id.isin(farm)]
    has = pushed.groupby("user_id")["item_id"].apply(lambda s: any("modern_agriculture" in topics[i] for i in s))
    cov = report["coverage"]
    rule = cov["rules"]["farm"]
    # members are the computed farmers of the two regions: every pushed one, and those capped or with nothing
    assert rule["users"] >= len(has) and rule["reached"] == int(has.sum())
    assert rule["reached"] > 0 and rule["items_added"] > 0
    assert rule["shortfall"] == rule["required"] - rule["reached"] == sum(rule["unmet"].values())
    swapped = rows[rows.reasons.apply(lambda r: r[0] == f"{CV.REASON_PREFIX}farm")]
    assert len(swapped) == rule["items_added"] and swapped.user_id.isin(farm).all()
    assert all("modern_agriculture" in topics[i] for i in swapped.item_id)
    table = CV.table_frame(cov["table"])
    assert set(table["region"]) <= set(AGRI["regions"]) and set(table["group"]) == {"farmer"}
    assert table["cost_score"].sum() == pytest.approx(rule["cost_score"], abs=1e-5)
    assert "coverage farm:" in summary_table(report)


def test_unknown_code_in_a_rule_stops_the_push(city, tmp_path, capsys):
    cfg = push_config(tmp_path / "bad.toml", coverage=[{**AGRI, "topics": ["agri"]}])
    with pytest.raises(ConfigError, match=r"\[push.coverage 'farm'\] unknown topic 'agri'; valid: "):
        run_nightly(city["bundle"], TODAY, tmp_path / "out", config_path=cfg, stream=None)
    code = cli_main(["push", "--model", str(city["bundle"]), "--date", TODAY.isoformat(), "--out",
                     str(tmp_path / "out"), "--config", str(cfg), "--quiet"])
    assert code == 2 and "unknown topic 'agri'" in capsys.readouterr().err
    assert not (tmp_path / "out" / f"date={TODAY}").exists()


def test_broadcast_places_lower_what_the_push_must_reach(city, tmp_path):
    rule_doc = {"name": "res", "groups": ["resident"], "topics": ["health_literacy"], "reach_share": 0.8,
                "broadcast_reach": 0.5}
    cfg = push_config(tmp_path / "c.toml", coverage=[rule_doc])
    places = tmp_path / "places.csv"
    pd.DataFrame({"place_id": ["tv1"], "channel": ["tv"], "region": ["haigang"], "name": ["TV"],
                  "audience": ['{"resident": 0.6, "youth": 0.4}'], "slot_seconds": [600.0]}).to_csv(places, index=False)
    said = io.StringIO()
    without = run_nightly(city["bundle"], TODAY, tmp_path / "a", config_path=cfg, stream=None, warn_stream=said)
    assert any("no places table" in w for w in without["warnings"])
    assert "warning: coverage rule(s) res count broadcast places, but no places table" in said.getvalue()
    with_places = run_nightly(city["bundle"], TODAY, tmp_path / "b", config_path=cfg, places=places, stream=None)
    by_cell = {(r["group"], r["region"]): r for r in with_places["coverage"]["table"]}
    plain = {(r["group"], r["region"]): r for r in without["coverage"]["table"]}
    credited = by_cell[("resident", "haigang")]
    assert credited["broadcast_credit"] and not by_cell[("resident", "qinglong")]["broadcast_credit"]
    # (0.8 - 0.5) / (1 - 0.5) = 0.6 of the cell instead of 0.8
    assert credited["required"] == int(np.ceil(0.6 * credited["users"] - 1e-9))
    assert credited["required"] < plain[("resident", "haigang")]["required"]
    assert by_cell[("resident", "qinglong")]["required"] == plain[("resident", "qinglong")]["required"]
    # met city-wide from shares met chunk by chunk (the city is cut into chunks of 40 users), unless the table says why
    for row in with_places["coverage"]["table"]:
        unmet = sum(row[f"unmet_{r}"] for r in CV.UNMET_REASONS)
        assert row["reached"] >= row["required"] or unmet >= row["shortfall"] > 0
    assert with_places["chunks"]["total"] > 3


# ---- evaluation on a ground truth ----------------------------------------------------------


class HashTruth:
    """A known engagement probability per (user, item): a fixed function of the two ids."""

    def engagement_prob_pairs(self, user_ids, item_ids, channel=None, *, at=None):
        return np.array([zlib.crc32(f"{u}/{i}".encode()) % 1000 / 1000.0 for u, i in zip(user_ids, item_ids)])


def test_example_rules_need_the_taxonomy_codes():
    assert [r.name for r in CV.example_rules(TAX)][:2] == ["farmers_agri", "elderly_health"]
    from recsys.taxonomy import parse_taxonomy

    other = parse_taxonomy(TAX.source_text.replace("\nmodern_agriculture = ", "\nmodern_agri = "))
    names = [r.name for r in CV.example_rules(other)]
    assert "farmers_agri" not in names and "elderly_health" in names


def test_evaluation_costs_each_rule_by_the_truth(city):
    from recsys.evaluation.report import _coverage_section
    from recsys.ranking import Recommender

    rec = Recommender.load(city["bundle"])
    people = city["users"].reset_index()
    people["sub_group"] = np.where(np.arange(len(people)) % 3 == 0, "elderly", "")
    people.loc[people["group"] != "resident", "sub_group"] = ""
    now = pd.Timestamp("2026-07-01 08:00", tz="Asia/Shanghai")
    lists = rec.recommend_many(list(people["user_id"]), 5, now=now)
    truth = HashTruth()
    rules = CV.parse_rules([{**AGRI, "name": "farm"}, {"name": "old", "groups": ["resident"],
                            "sub_groups": ["elderly"], "topics": ["health_literacy"], "reach_share": 0.6}], TAX)
    res = CV.evaluate_rules(rec, lists, people, rules, now=now, truth=truth)
    base = truth.engagement_prob_pairs(lists["user_id"], lists["item_id"]).sum()
    assert res["engagements_without"] == pytest.approx(base, abs=1e-3)
    lost = sum(r["engagements_lost"] for r in res["rules"].values())
    assert res["engagements_without"] - res["engagements_with"] == pytest.approx(lost, abs=1e-3)
    assert res["loss_share"] == pytest.approx(lost / base, abs=1e-4)
    farm = res["rules"]["farm"]
    assert farm["items_added"] > 0 and farm["reached"] > farm["reached_before"]
    old = res["rules"]["old"]
    assert old["required"] == sum(int(np.ceil(0.6 * n - 1e-9)) for n in people[people.sub_group == "elderly"]
                                  .groupby("region").size())
    assert CV.evaluate_rules(rec, lists, people, (), now=now, truth=truth) is None
    section = _coverage_section({"k": 5, **res})
    (table,) = [b for b in section.blocks if b[0] == "table"]
    assert [row[0] for row in table[2]] == ["farm", "old"]
    # a person reads what each rule asks, codes with their Chinese names
    (listed,) = [b[1] for b in section.blocks if b[0] == "ul"]
    asks = [line.split(": ", 1)[1] for line in listed]
    assert [line.split(": ", 1)[0] for line in listed] == ["farm", "old"]
    assert asks[0].startswith(f"{TAX.zh('group', 'farmer')} farmer · ") and "every member" in asks[0]
    assert f"{TAX.zh('sub_group', 'elderly')} elderly" in asks[1] and "60% of each region" in asks[1]


def test_sub_group_rules_read_sub_groups_from_the_users(city, tmp_path):
    rule_doc = {"name": "old", "groups": ["resident"], "sub_groups": ["elderly"], "topics": ["health_literacy"]}
    cfg = push_config(tmp_path / "c.toml", coverage=[rule_doc])
    # the bundle's users have no sub-group: the rule has no member
    report = run_nightly(city["bundle"], TODAY, tmp_path / "a", config_path=cfg, stream=None)
    assert report["coverage"]["rules"]["old"]["users"] == 0 and report["coverage"]["rules"]["old"]["met"]
    # a current users table says who is elderly
    users, _, _ = push_city.tables()
    users["sub_group"] = np.where((users["group"] == "resident") & (np.arange(len(users)) % 2 == 0), "elderly", "")
    users.to_parquet(tmp_path / "users.parquet", index=False)
    report = run_nightly(city["bundle"], TODAY, tmp_path / "b", config_path=cfg, users=tmp_path / "users.parquet",
                         stream=None)
    rule = report["coverage"]["rules"]["old"]
    elderly = set(users.loc[users["sub_group"] == "elderly", "user_id"])
    assert 0 < rule["users"] <= len(elderly)
    rows = read_pushes(tmp_path / "b", TODAY)
    swapped = rows[rows.reasons.apply(lambda r: r[0] == f"{CV.REASON_PREFIX}old")]
    assert len(swapped) == rule["items_added"] and set(swapped.user_id) <= elderly


def test_rules_given_to_run_nightly_replace_the_config_rules(nights, city, tmp_path):
    report = run_nightly(city["bundle"], TODAY, tmp_path / "api", config_path=push_config(tmp_path / "c.toml"),
                         coverage=[AGRI], stream=None)
    _same_rows(nights["farm"][1], read_pushes(tmp_path / "api", TODAY))
    assert report["config"]["coverage"] == [AGRI] and report["coverage"]["rules"]["farm"]["items_added"] > 0
    with pytest.raises(ConfigError, match=r"\[push.coverage 'farm'\] unknown region 'nowhere'"):
        run_nightly(city["bundle"], TODAY, tmp_path / "bad", coverage=[{**AGRI, "regions": ["nowhere"]}], stream=None)
