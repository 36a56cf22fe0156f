"""Demand tracking: the trend test on hand-made counts, the planted truth of a synthetic city, bad input, outputs."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import push_city

from recsys.cli import main as cli_main
from recsys.config import DemandConfig
from recsys.demand import analyse, run_demand
from recsys.demand.trends import benjamini_hochberg, seasonal_mask, trend_table
from recsys.exceptions import ConfigError, DataError, SchemaError
from recsys.push import run_nightly
from recsys.push.priorities import load_priorities
from recsys.push.writer import read_pushes
from recsys.synthetic import GroundTruth, generate_city, write_city
from recsys.taxonomy import load_taxonomy, parse_taxonomy

TAX = load_taxonomy()
TABLES = ("demand", "trends", "supply", "gaps", "audiences")


# ---- the statistics on tiny data with a known answer ----------------------------------------


def test_benjamini_hochberg_matches_hand_computation():
    p = np.array([0.01, 0.04, 0.03, 0.2, np.nan])
    # sorted 0.01, 0.03, 0.04, 0.2 (m = 4): 0.04, 0.06, 0.0533, 0.2 -> running min from the top
    q = benjamini_hochberg(p)
    assert q[:4] == pytest.approx([0.04, 0.05333333, 0.05333333, 0.2])
    assert np.isnan(q[4])


def test_seasonal_mask_adds_the_margin_days():
    campaign = np.zeros((6, 2), dtype=bool)
    campaign[2, 1] = True
    mask = seasonal_mask(campaign, 2)
    assert mask[:, 1].tolist() == [False, False, True, True, True, False]
    assert not mask[:, 0].any()


def _counts(rates: dict[tuple[str, str], list[float]], days: int = 56, n: int = 400) -> pd.DataFrame:
    """Daily counts: per (group, topic) the given rate per day (expected values, rounded: no noise)."""
    rows = []
    for (group, topic), per_day in rates.items():
        for day in range(days):
            rate = per_day[day] if len(per_day) == days else per_day[0]
            rows.append({"day": day, "group": group, "sub_group": "", "region": "haigang", "topic": topic,
                         "impressions": n, "positives": round(n * rate), "reads": 0})
    return pd.DataFrame(rows)


def test_a_segment_shift_is_found_and_a_campaign_surge_is_not():
    days, topics = 56, ["health_literacy", "drug_prevention"]
    steady = [0.1] * days
    shifted = [0.1] * 28 + [0.2] * 28  # the farmers' health demand doubles from day 28
    surge = [0.1] * days
    surge[50] = 0.6  # a campaign day for drug prevention, every group
    counts = _counts(
        {
            ("farmer", "health_literacy"): shifted,
            ("youth", "health_literacy"): steady,
            ("resident", "health_literacy"): steady,
            ("farmer", "drug_prevention"): surge,
            ("youth", "drug_prevention"): surge,
            ("resident", "drug_prevention"): surge,
        }
    )
    campaign = np.zeros((days, 2), dtype=bool)
    campaign[50, 1] = True
    cfg = DemandConfig(recent_weeks=4, calendar_margin_days=0)
    table = trend_table(counts, campaign, topics, 8, cfg).set_index(["level", "group", "topic"])
    farmer = table.loc[("group", "farmer", "health_literacy")]
    assert farmer["direction"] == "rising"
    # against the rest of the city: 0.2 / 0.1 = +100%
    assert farmer["change"] == pytest.approx(1.0, abs=0.02)
    assert table.loc[("group", "youth", "health_literacy")]["direction"] != "rising"
    city = table.xs("city", level="level").loc[(None, "drug_prevention")]
    assert city["direction"] == "steady" and city["seasonal_days"] == 1
    assert city["change_all_days"] > 0.05  # kept, the campaign day would have read as a rise
    assert city["change"] == pytest.approx(0.0, abs=0.01)


def test_a_month_long_campaign_is_not_read_as_new_demand():
    """Like Work Safety Month: the topic is pushed and clicked more for the whole recent period."""
    days, topics = 56, ["work_safety", "health_literacy"]
    month = [0.1] * 28 + [0.18] * 28
    counts = _counts({(g, "work_safety"): month for g in ("farmer", "youth", "resident")}
                     | {(g, "health_literacy"): [0.1] for g in ("farmer", "youth", "resident")})
    campaign = np.zeros((days, 2), dtype=bool)
    campaign[28:, 0] = True
    cfg = DemandConfig(recent_weeks=4)
    city = lambda table: table[table["level"] == "city"].set_index("topic")
    naive = city(trend_table(counts, np.zeros_like(campaign), topics, 8, cfg))
    assert naive.loc["work_safety", "direction"] == "rising"  # without the calendar: "new demand"
    aware = city(trend_table(counts, campaign, topics, 8, cfg))
    assert aware.loc["work_safety", "direction"] == "not tested"  # nothing left to compare: said, not guessed
    assert aware.loc["health_literacy", "direction"] == "steady"


# ---- the synthetic city's planted truth -----------------------------------------------------


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demand_city") / "city"
    write_city(generate_city(20000, 5000, days=60, seed=1), folder)
    out = folder.parent / "demand"
    code = cli_main(["demand", "--data", str(folder), "--out", str(out)])
    assert code == 0
    return folder, out


def test_planted_shifts_are_found(city):
    folder, out = city
    trends = pd.read_parquet(out / "trends.parquet")
    truth = GroundTruth.load(folder / "truth")
    assert truth.demand_shifts
    for shift in truth.demand_shifts:
        level = "group_region" if shift["region"] else "group"
        row = trends[(trends["level"] == level) & (trends["group"] == shift["group"]) & (trends["topic"] == shift["topic"])]
        if shift["region"]:
            row = row[row["region"] == shift["region"]]
        assert len(row) == 1
        expected = "rising" if shift["logit"] > 0 else "falling"
        assert row["direction"].iloc[0] == expected, (shift, row.iloc[0].to_dict())
        assert row["q"].iloc[0] < 0.05


def test_seasonal_surges_are_not_new_demand(city):
    _, out = city
    trends = pd.read_parquet(out / "trends.parquet")
    dates = [dt.date(2026, 5, 5) + dt.timedelta(days=d) for d in range(56)]
    campaign = TAX.campaign_mask(dates)
    seasonal = [t for j, t in enumerate(TAX.topics) if campaign[:, j].any()]
    assert "drug_prevention" in seasonal and "disaster_prevention" in seasonal
    flagged = trends[trends["topic"].isin(seasonal) & (trends["direction"] == "rising") & trends["level"].isin(["city", "group"])]
    assert flagged.empty, flagged[["level", "group", "topic", "change", "q"]]
    # a topic whose campaign covers the recent weeks (work safety month) is not tested rather than guessed
    city_rows = trends[trends["level"] == "city"].set_index("topic")
    assert city_rows.loc["work_safety", "direction"] == "not tested"


def test_gap_and_priorities_point_at_the_planted_segment(city):
    _, out = city
    gaps = pd.read_parquet(out / "gaps.parquet")
    top = gaps[(gaps["group"] == "farmer") & (gaps["region"] == "qinglong") & (gaps["topic"] == "modern_agriculture")].iloc[0]
    assert top["gap"] and top["direction"] == "rising" and top["trend_factor"] > 1
    prio = load_priorities(out / "priorities.toml", TAX)
    labels = {a.label: a for a in prio.audiences}
    assert "modern_agriculture" in [t.topic for t in labels["farmer/qinglong"].topics]
    assert all(a.expires > pd.Timestamp("2026-06-30T00:00:00+08:00") for a in prio.audiences)


def test_outputs_are_plain_tables_and_one_self_contained_report(city):
    import duckdb

    _, out = city
    for name in TABLES:
        frame = pd.read_parquet(out / f"{name}.parquet")
        assert len(frame) > 0
        assert pq.read_table(out / f"{name}.parquet").num_rows == len(frame)
        assert duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{out / (name + '.parquet')}')").fetchone()[0] == len(frame)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 4 and 'src="plots/' not in page
    assert "建议" in page and "Recommendations" in page and "青龙县" in page
    assert (out / "report.md").read_text(encoding="utf-8").startswith("# 科普需求跟踪分析报告")
    demand = pd.read_parquet(out / "demand.parquet")
    week = demand[(demand["level"] == "group_region") & (demand["week"] == 0)]
    engaged = week[week.groupby(["group", "region"])["positives"].transform("sum") > 0]
    assert np.allclose(engaged.groupby(["group", "region"])["share"].sum(), 1.0)


# ---- bad input: one line, never a crash, never an empty finding ----------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demand_small") / "city"
    write_city(generate_city(600, 300, days=60, seed=3), folder)
    return folder


def test_not_enough_data_is_said(small, tmp_path):
    with pytest.raises(DataError, match="not enough data for --weeks 12: the log covers 60 days"):
        analyse(small, weeks=12)
    with pytest.raises(DataError, match="not enough data for a demand analysis"):
        analyse(small, as_of=pd.Timestamp("2026-05-05T00:00:00+08:00"))
    with pytest.raises(DataError, match="not enough data for a trend"):
        analyse(small, weeks=4)
    with pytest.raises(SchemaError, match="no events table|data folder not found"):
        analyse(tmp_path / "nowhere")


def test_a_taxonomy_without_calendar_is_refused(small):
    text = TAX.source_text.split("# ---- the calendar")[0]
    with pytest.raises(ConfigError, match=r"has no \[\[calendar\]\]"):
        analyse(small, taxonomy=parse_taxonomy(text))


def test_bad_calendar_entries_are_named():
    base = TAX.source_text.split("# ---- the calendar")[0]
    with pytest.raises(SchemaError, match="names unknown topic 'knitting'"):
        parse_taxonomy(base + '\n[[calendar]]\nname = "x"\nmonth = 5\nday = 1\ntopics = ["knitting"]\n')
    with pytest.raises(SchemaError, match="month must be an integer 1..12"):
        parse_taxonomy(base + '\n[[calendar]]\nname = "x"\nmonth = 13\ntopics = ["ecology"]\n')


def test_a_segment_without_users_is_listed_not_ranked(small):
    result = analyse(small)
    aud = result.tables["audiences"]
    assert len(aud) == len(TAX.groups) * len(TAX.regions)
    empty = aud[aud["residents"] == 0]
    assert (empty["status"] == "no users").all() and (empty["rank"] == 0).all()


def test_a_report_with_no_mover_says_how_large_a_change_it_could_have_seen(small, tmp_path):
    """600 users: the planted shifts are within noise; the report says what size of change the data could show."""
    result = run_demand(small, tmp_path / "d")
    trends = result.tables["trends"]
    assert not trends["direction"].isin(["rising", "falling"]).any()
    tested = trends[trends["direction"] != "not tested"]
    width = np.nanmedian((tested["ci_high"] - tested["ci_low"]) / 2)
    md = (tmp_path / "d" / "report.md").read_text(encoding="utf-8")
    assert f"the median 95% interval of the {len(tested):,} cells tested spans ±{width:.0%}" in md


def test_cli_errors_are_one_line(small, tmp_path, capsys):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    for argv, needle in (
        (["--weeks", "30"], "not enough data for --weeks 30"),
        (["--as-of", "yesterday"], "--as-of 'yesterday' is not a date"),
        (["--as-of", "2027-03-01"], "no impression of a known user and item between"),
    ):
        code = cli_main(["demand", "--data", str(small), "--out", str(tmp_path / "o"), *argv])
        err = capsys.readouterr().err
        assert code == 2 and needle in err and "Traceback" not in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_:  # argparse's own usage error, one line too
        cli_main(["demand", "--data", str(small), "--out", str(tmp_path / "o"), "--weeks", "1"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--weeks must be a whole number >= 2" in err and err.count("\n") == 1
    code = cli_main(["demand", "--data", str(small), "--out", str(tmp_path / "other")])
    assert code == 2 and "not empty" in capsys.readouterr().err
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"


# ---- from the analysis to tonight's push -------------------------------------------------


def test_tonights_push_reaches_the_priority_audiences(tmp_path_factory, tmp_path):
    """recsys demand on the push test city -> priorities.toml -> recsys push: the manifest shows each
    priority audience reached with its priority topics."""
    from recsys.schema import validate_tables

    root = push_city.trained_city(tmp_path_factory)
    users, items, events = push_city.tables()
    clean = validate_tables(users, items, events, taxonomy=TAX, end=push_city.END)
    data = tmp_path / "data"
    data.mkdir()
    for name, frame in (("users", clean.users), ("items", clean.items), ("events", clean.events)):
        frame.to_parquet(data / f"{name}.parquet", index=False)
    # 30 days of log: compare the last 2 weeks with the 2 before; a tiny city needs fewer positives per cell
    result = run_demand(data, tmp_path / "demand", config=DemandConfig(recent_weeks=2, min_positives=3))
    assert result.priorities.audiences
    report = run_nightly(root / "models" / "latest", push_city.DAY, tmp_path / "push",
                         priorities=tmp_path / "demand" / "priorities.toml", stream=None)
    block = report["priorities"]["audiences"]
    assert set(block) == {a.label for a in result.priorities.audiences}
    rows = read_pushes(tmp_path / "push", push_city.DAY)
    assert sum(b["priority_items"] for b in block.values()) > 0
    assert all(b["reached"] <= b["pushed"] <= b["users"] for b in block.values())
    assert sum(b["pushed"] for b in block.values()) <= rows["user_id"].nunique() * len(block)


def test_demand_settings_are_checked_when_read(tmp_path, small, capsys):
    from recsys.config import load_config

    bad = tmp_path / "bad.toml"
    bad.write_text("[demand]\nalpha = 0.9\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[demand\] alpha"):
        load_config(bad, command="recsys demand", sections=("demand",))
    other = tmp_path / "other.toml"
    other.write_text("[ranker]\nrescore = 10\n", encoding="utf-8")
    code = cli_main(["demand", "--data", str(small), "--out", str(tmp_path / "o"), "--config", str(other)])
    assert code == 2 and "does not use [ranker]" in capsys.readouterr().err


def test_the_planted_under_served_district_is_ranked_first(city):
    """The generator plants an audience the old system partly never reaches (truth: under_served):
    recsys demand ranks it first among the under-served, names it in the recommendations and
    makes it a priority audience; no other audience is flagged."""
    folder, out = city
    truth = GroundTruth.load(folder / "truth")
    assert truth.under_served
    planted = truth.under_served[0]
    aud = pd.read_parquet(out / "audiences.parquet")
    first = aud.iloc[0]
    assert (first["group"], first["region"], first["status"], first["rank"]) == (planted["group"], planted["region"], "under-served", 1)
    # the never-reached residents are missing from the reach; the others are reached about as often as the city
    others = aud[(aud["status"] != "no users") & (aud.index > 0)]
    city_reach = others["reached"].sum() / others["residents"].sum()
    expected = (1 - planted["unreached_users"] / planted["residents"]) * city_reach
    assert first["reach_rate"] == pytest.approx(expected, abs=0.03)
    assert set(zip(aud[aud["status"] == "under-served"]["group"], aud[aud["status"] == "under-served"]["region"])) == {
        (planted["group"], planted["region"])
    }
    prio = load_priorities(out / "priorities.toml", TAX)
    top = prio.audiences[0]
    assert (top.group, top.region, top.weight) == (planted["group"], planted["region"], 1.0) and top.topics
    who = TAX.zh("region", planted["region"]) + TAX.zh("group", planted["group"])
    advice = (out / "report.md").read_text(encoding="utf-8").split("## ")[1]  # the first section: the advice
    assert who in advice and "重点人群" in advice


def test_the_synthetic_campaigns_are_the_taxonomy_calendar():
    """The generator's surges (model.toml) fall on the days, and lift the topics, the taxonomy's calendar names."""
    from recsys.synthetic.spec import load_spec

    spec = load_spec(TAX)
    planted = {(c.month, c.day if not c.rule else 1, c.length_days, c.rule, tuple(sorted(spec.topics[t] for t in c.topics))) for c in spec.campaigns}
    calendar = {(c.month, c.day if not c.rule else 1, c.length_days, c.rule, tuple(sorted(c.topics))) for c in TAX.calendar}
    assert planted == calendar


def test_a_log_delivered_day_by_day_reads_as_the_one_file(small, tmp_path):
    """The incremental training's layout (events/ of daily files) gives the same demand tables."""
    daily = tmp_path / "daily"
    daily.mkdir()
    for name in ("users.parquet", "items.parquet"):
        (daily / name).write_bytes((small / name).read_bytes())
    events = pd.read_parquet(small / "events.parquet")
    (daily / "events").mkdir()
    days = events["timestamp"].dt.strftime("%Y%m%d")
    for day, part in events.groupby(days):
        part.to_parquet(daily / "events" / f"{day}.parquet", index=False)
    assert len(list((daily / "events").iterdir())) > 30
    one, split = analyse(small), analyse(daily)
    for name in ("demand", "audiences"):
        pd.testing.assert_frame_equal(
            one.tables[name].reset_index(drop=True), split.tables[name].reset_index(drop=True)
        )
    (daily / "events" / "x.csv").write_text("user_id\n", encoding="utf-8")
    with pytest.raises(SchemaError, match="holds both Parquet and CSV|reads Parquet"):
        analyse(daily)
    (daily / "events" / "x.csv").unlink()
    # both layouts at once: which log was meant would be a guess, as validation says too
    (daily / "events.parquet").write_bytes((small / "events.parquet").read_bytes())
    with pytest.raises(SchemaError, match="both events.parquet and events/"):
        analyse(daily)


def test_a_users_table_without_the_optional_sub_group_is_users_of_no_sub_group(small, tmp_path, capsys):
    """The contract's sub_group is optional (recsys validate accepts a table without it): absent, it is
    every user's "none", the same analysis as a column of blanks."""
    users = pd.read_parquet(small / "users.parquet")
    for name, table in (("absent", users.drop(columns=["sub_group"])), ("blank", users.assign(sub_group=""))):
        folder = tmp_path / name
        folder.mkdir()
        for other in ("items.parquet", "events.parquet"):
            (folder / other).write_bytes((small / other).read_bytes())
        table.to_parquet(folder / "users.parquet", index=False)
    assert "sub_group" not in pq.read_schema(tmp_path / "absent" / "users.parquet").names
    absent, blank = analyse(tmp_path / "absent"), analyse(tmp_path / "blank")
    for name in TABLES:
        pd.testing.assert_frame_equal(absent.tables[name], blank.tables[name], check_dtype=False)
    assert (absent.tables["demand"]["sub_group"].isna() | (absent.tables["demand"]["sub_group"] == "")).all()
    assert cli_main(["demand", "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "out")]) == 0
    assert "absent" not in capsys.readouterr().err
    # a required column is still required, and named
    users.drop(columns=["region"]).to_parquet(tmp_path / "absent" / "users.parquet", index=False)
    with pytest.raises(SchemaError, match=r"column 'region' absent; demand tracking needs user_id, group, region"):
        analyse(tmp_path / "absent")
