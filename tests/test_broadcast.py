"""recsys broadcast: eligibility, packing, audience fit, priorities, output and the CLI.

A small synthetic city (its places, its items' running times, its truth) is
generated and trained once per module; the packing tests use hand-made arrays.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json

import numpy as np
import pandas as pd
import pytest
from push_city import engine_config

from recsys import columns as C
from recsys.broadcast import schedule
from recsys.broadcast.evaluate import evaluate_broadcast, summarize
from recsys.broadcast.job import BroadcastSpec, read_programmes, run_broadcast
from recsys.broadcast.places import hours_window, load_places
from recsys.broadcast.programme import PRIORITY_REASON, plan_programmes
from recsys.cli import main
from recsys.config import BroadcastConfig
from recsys.exceptions import ConfigError, DataError, SchemaError

DAY = dt.date(2026, 6, 30)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from recsys.ranking import Recommender
    from recsys.schema import validate_tables
    from recsys.synthetic.city import generate_city, write_city
    from recsys.training import train_model

    root = tmp_path_factory.mktemp("broadcast_city")
    city = generate_city(600, 240, days=20, seed=5)
    write_city(city, root / "city")
    clean = validate_tables(city.users, city.items, city.events, end=city.end)
    model = train_model(clean.users, clean.items, clean.events, config=engine_config())
    model.save(root / "models", version="20260630T000000Z")
    rec = Recommender.from_model(model, catalog=clean.items)
    places = load_places(root / "city" / "places.parquet", rec.state.taxonomy, model.users)
    return {"root": root, "state": rec.state, "places": places, "items": clean.items, "city": city}


def _items_by_id(world) -> pd.DataFrame:
    return world["items"].set_index(C.ITEM_ID)


# ---- the programmes' rules ------------------------------------------------------------------
def test_every_scheduled_item_is_eligible_and_slots_are_not_overfilled(world):
    state, places = world["state"], world["places"]
    prog = plan_programmes(state, places, DAY, BroadcastConfig())
    rows = prog.rows
    assert len(rows) > 0 and set(rows[C.CHANNEL]) == {"tv", "radio", "cinema", "kiosk"}
    items = _items_by_id(world).loc[rows[C.ITEM_ID]]
    place = places.set_index(C.PLACE_ID).loc[rows[C.PLACE_ID]]
    tax = state.taxonomy
    # live through the place's active hours that day
    window = [hours_window(h) for h in place[C.ACTIVE_HOURS]]
    midnight = pd.Timestamp("2026-06-30T00:00:00+08:00")
    start = pd.DatetimeIndex([midnight + pd.Timedelta(minutes=lo) for lo, _ in window])
    end = pd.DatetimeIndex([midnight + pd.Timedelta(minutes=hi) for _, hi in window])
    assert (items[C.REVIEW_STATUS] == "approved").all()
    assert (items[C.PUBLISHED_AT].isna().to_numpy() | (items[C.PUBLISHED_AT].to_numpy() <= start)).all()
    assert (items[C.EXPIRES_AT].isna().to_numpy() | (items[C.EXPIRES_AT].to_numpy() >= end)).all()
    for fmt, channel in zip(items[C.FORMAT], place[C.CHANNEL]):
        assert fmt in tax.channel_formats[channel]
    assert (items[C.DURATION_SECONDS].to_numpy() <= place[C.SLOT_SECONDS].to_numpy()).all()
    # target audiences: the place's region is targeted, and a targeted group has a share in the mix
    for targets, regions, mix, region in zip(
        items[C.TARGET_GROUPS], items[C.TARGET_REGIONS], place[C.AUDIENCE], place[C.REGION]
    ):
        groups_here = {tax.sub_groups.get(k, k) for k in mix}
        assert not len(targets) or groups_here & set(targets)
        assert not len(regions) or region in regions
    # once a day per place; each slot's items back to back, within its seconds
    assert not rows.duplicated([C.PLACE_ID, C.ITEM_ID]).any()
    dur = items[C.DURATION_SECONDS].to_numpy()
    framed = rows.assign(duration=dur, end=rows[C.START_OFFSET_S].to_numpy() + dur)
    for (pid, _), slot in framed.groupby([C.PLACE_ID, C.SLOT]):
        assert slot[C.START_OFFSET_S].iloc[0] == 0
        assert np.allclose(slot[C.START_OFFSET_S].to_numpy()[1:], slot["end"].to_numpy()[:-1])
        assert slot["end"].iloc[-1] <= places.set_index(C.PLACE_ID).at[pid, C.SLOT_SECONDS] + 1e-6
    assert (prog.places["filled_s"] <= prog.places["capacity_s"]).all()
    assert (prog.places["filled_s"] > 0.8 * prog.places["capacity_s"]).all()


def test_items_without_a_running_time_are_counted_not_scheduled(world):
    prog = plan_programmes(world["state"], world["places"], DAY, BroadcastConfig())
    items = world["items"]
    midnight = pd.Timestamp("2026-06-30T00:00:00+08:00")
    live = pd.Series(False, index=items.index)
    for lo, hi in {hours_window(h) for h in world["places"][C.ACTIVE_HOURS]}:  # live while some place airs
        live |= (
            (items[C.REVIEW_STATUS] == "approved")
            & (items[C.PUBLISHED_AT].isna() | (items[C.PUBLISHED_AT] <= midnight + pd.Timedelta(minutes=lo)))
            & (items[C.EXPIRES_AT].isna() | (items[C.EXPIRES_AT] >= midnight + pd.Timedelta(minutes=hi)))
        )
    carried = items[C.FORMAT].isin(["video", "short_video", "audio", "animation", "article"])  # tv/radio/cinema/kiosk
    expected = int((live & carried & items[C.DURATION_SECONDS].isna()).sum())
    assert expected > 0 and prog.counts["no_duration"] == expected
    assert not set(prog.rows[C.ITEM_ID]) & set(items.loc[items[C.DURATION_SECONDS].isna(), C.ITEM_ID])


def test_the_audience_mix_decides(world):
    state, places = world["state"], world["places"]
    tv = places[places[C.CHANNEL] == "kiosk"].iloc[[0]]
    youth = tv.assign(**{C.PLACE_ID: "youth_only", C.AUDIENCE: [{"pupil": 1.0}]})
    farmers = tv.assign(**{C.PLACE_ID: "farmers_only", C.AUDIENCE: [{"farmer_general": 0.5, "elderly": 0.5}]})
    both = pd.concat([youth, farmers], ignore_index=True)
    prog = plan_programmes(state, both, DAY, BroadcastConfig())
    got = {pid: set(block[C.ITEM_ID]) for pid, block in prog.rows.groupby(C.PLACE_ID)}
    assert got["youth_only"] != got["farmers_only"]
    # an item targeted at youth only never goes to the place without youth, and vice versa for farmers
    items = _items_by_id(world)
    only = lambda g: {i for i, t in items[C.TARGET_GROUPS].items() if len(t) and set(t) <= {g}}
    assert not got["farmers_only"] & only("youth")
    assert not got["youth_only"] & only("farmer") and not got["youth_only"] & only("resident")
    # on the truth, each place's programme engages its own audience more than the other place's programme
    from recsys.broadcast.evaluate import simulate

    city = world["city"]
    own = simulate(prog.rows, both, city.truth, city.users, state.taxonomy, DAY)
    swapped_ids = prog.rows[C.PLACE_ID].map({"youth_only": "farmers_only", "farmers_only": "youth_only"})
    other = simulate(prog.rows.assign(**{C.PLACE_ID: swapped_ids}), both, city.truth, city.users, state.taxonomy, DAY)
    assert own["youth_only"] > other["youth_only"] and own["farmers_only"] > other["farmers_only"]


def test_reasons_name_the_audience_and_the_topic(world):
    prog = plan_programmes(world["state"], world["places"].head(3), DAY, BroadcastConfig())
    tax = world["state"].taxonomy
    zh_topics = {t.zh for t in tax.topics.values()}
    for reasons in prog.rows[C.REASONS]:
        assert "受众" in reasons[0] and reasons[1].removeprefix("主题:") in zh_topics


def test_holds_and_repeat_days(world, tmp_path):
    from recsys.holds import add_hold

    state, places = world["state"], world["places"]
    first = plan_programmes(state, places, DAY, BroadcastConfig())
    held = first.rows[C.ITEM_ID].value_counts().index[:5].tolist()
    for item in held:
        add_hold(tmp_path / "holds", item, by="test", reason="checking")
    spec = BroadcastSpec(
        model=world["root"] / "models" / "latest",
        day=DAY,
        places=world["root"] / "city" / "places.parquet",
        out=tmp_path / "out",
        items=world["root"] / "city" / "items.parquet",
        holds=tmp_path / "holds",
        config=BroadcastConfig(repeat_days=3),
    )
    run_broadcast(spec)
    day1 = read_programmes(tmp_path / "out", DAY)
    assert len(day1) and not set(day1[C.ITEM_ID]) & set(held)
    run_broadcast(dataclass_replace(spec, day=DAY + dt.timedelta(days=1)))
    day2 = read_programmes(tmp_path / "out", DAY + dt.timedelta(days=1))
    pairs1 = set(zip(day1[C.PLACE_ID], day1[C.ITEM_ID]))
    pairs2 = set(zip(day2[C.PLACE_ID], day2[C.ITEM_ID]))
    assert len(pairs2) > 0 and not pairs1 & pairs2
    # with no repeat window, tomorrow repeats much of today
    run_broadcast(dataclass_replace(spec, out=tmp_path / "out0", config=BroadcastConfig(repeat_days=0)))
    run_broadcast(
        dataclass_replace(
            spec, out=tmp_path / "out0", day=DAY + dt.timedelta(days=1), config=BroadcastConfig(repeat_days=0)
        )
    )
    again = read_programmes(tmp_path / "out0")
    assert again.duplicated([C.PLACE_ID, C.ITEM_ID]).any()


def dataclass_replace(spec, **changes):
    import dataclasses

    return dataclasses.replace(spec, **changes)


def test_priority_topics_are_chosen_first_for_their_audience(world):
    state, places = world["state"], world["places"]
    tax = state.taxonomy
    kiosks = places[places[C.PLACE_ID].str.startswith("village_")]
    assert len(kiosks)
    base = plan_programmes(state, kiosks, DAY, BroadcastConfig())
    topic_of = dict(zip(world["items"][C.ITEM_ID], world["items"][C.TOPICS]))
    # the topic least shown there today (but shown: it has eligible items) becomes the farmers' priority
    counts: dict[str, int] = {}
    for item in base.rows[C.ITEM_ID]:
        for t in topic_of[item]:
            counts[t] = counts.get(t, 0) + 1
    topic = min(sorted(counts), key=counts.get)
    table = np.zeros((len(tax.groups), len(tax.regions), len(tax.topics)), np.float32)
    table[list(tax.groups).index("farmer"), :, list(tax.topics).index(topic)] = 1.0
    boosted = plan_programmes(state, kiosks, DAY, BroadcastConfig(priority_boost=5.0), priorities=table)
    shown = lambda rows: sum(topic in topic_of[i] for i in rows[C.ITEM_ID])
    assert shown(boosted.rows) > shown(base.rows)
    marked = boosted.rows[boosted.rows[C.REASONS].map(lambda r: PRIORITY_REASON in r)]
    assert len(marked) and all(topic in topic_of[i] for i in marked[C.ITEM_ID])
    # the reported value of an item at a place is the audience's own, not boosted
    key = [C.PLACE_ID, C.ITEM_ID]
    common = base.rows.merge(boosted.rows, on=key, suffixes=("_base", "_boosted"))
    assert len(common) and np.allclose(common["expected_engagement_base"], common["expected_engagement_boosted"])


def test_same_input_same_programmes(world):
    a = plan_programmes(world["state"], world["places"], DAY, BroadcastConfig())
    b = plan_programmes(world["state"], world["places"], DAY, BroadcastConfig())
    pd.testing.assert_frame_equal(a.rows, b.rows)


def test_an_item_longer_than_every_slot_is_refused(world):
    from recsys.ranking import Recommender

    items = world["items"].copy()
    video = items.index[(items[C.FORMAT] == "video") & (items[C.REVIEW_STATUS] == "approved")][0]
    items.loc[video, C.DURATION_SECONDS] = 99_999.0
    rec = Recommender.from_model(world["state"].model, catalog=items)
    with pytest.raises(
        SchemaError, match=rf"item_id {items.at[video, C.ITEM_ID]!r} has duration_seconds=99999, longer than any slot"
    ):
        plan_programmes(rec.state, world["places"], DAY, BroadcastConfig())


def test_bad_formats_config_is_refused(world):
    with pytest.raises(ConfigError, match=r"formats has channel 'app_push'; valid: the broadcast channels"):
        plan_programmes(world["state"], world["places"], DAY, BroadcastConfig(formats={"app_push": ["video"]}))
    with pytest.raises(ConfigError, match=r"formats.radio has 'video'; valid: what radio carries: audio"):
        plan_programmes(world["state"], world["places"], DAY, BroadcastConfig(formats={"radio": ["video"]}))
    only_short = plan_programmes(
        world["state"], world["places"].query("channel == 'tv'"), DAY, BroadcastConfig(formats={"tv": ["short_video"]})
    )
    formats = _items_by_id(world).loc[only_short.rows[C.ITEM_ID], C.FORMAT]
    assert set(formats) == {"short_video"}


# ---- packing ----------------------------------------------------------------------------------
def _brute_force_best(values, duration, capacity):
    best = 0.0
    n = len(values)
    for r in range(n + 1):
        for combo in itertools.combinations(range(n), r):
            if duration[list(combo)].sum() <= capacity:
                best = max(best, values[list(combo)].sum())
    return best


def test_packing_fills_every_gap_an_item_fits_and_stays_close_to_the_optimum():
    rng = np.random.default_rng(0)
    for trial in range(30):
        n = 9
        values = rng.random((1, n)).astype(np.float32)
        duration = rng.integers(20, 200, n).astype(np.float64)
        ok = rng.random((1, n)) < 0.9
        capacity = float(rng.integers(150, 600))
        packed = schedule.pack(
            values, ok, duration, np.arange(n), np.array([1]), np.array([capacity]), candidates=3, topic_decay=1.0
        )
        used = duration[packed.item].sum()
        assert used <= capacity
        unused = [j for j in np.flatnonzero(ok[0]) if j not in set(packed.item)]
        assert all(duration[j] > capacity - used for j in unused), trial  # no eligible item fits the gap
        got = float(values[0, packed.item].sum())
        best = _brute_force_best(values[0] * ok[0], duration, capacity)
        assert got >= 0.5 * best - 1e-6  # greedy by density with the fill rule: within half of the optimum here


def test_packing_spreads_topics_with_decay():
    values = np.array([[1.0, 0.99, 0.98, 0.97, 0.6, 0.55]], np.float32)
    duration = np.full(6, 10.0)
    topic = np.array([0, 0, 0, 0, 1, 2])
    args = (values, np.ones((1, 6), bool), duration, topic, np.array([1]), np.array([40.0]))
    plain = schedule.pack(*args, candidates=6, topic_decay=1.0)
    diverse = schedule.pack(*args, candidates=6, topic_decay=0.5)
    assert sorted(plain.item.tolist()) == [0, 1, 2, 3]
    assert sorted(diverse.item.tolist()) == [0, 1, 4, 5]


def test_packing_uses_several_slots_best_fit():
    values = np.array([[5.0, 4.0, 3.0, 2.0]], np.float32)
    duration = np.array([60.0, 50.0, 40.0, 10.0])
    packed = schedule.pack(
        values,
        np.ones((1, 4), bool),
        duration,
        np.arange(4),
        np.array([2]),
        np.array([100.0]),
        candidates=4,
        topic_decay=1.0,
        by_density=False,
    )
    by_slot = {s: sorted(packed.item[packed.slot == s].tolist()) for s in set(packed.slot.tolist())}
    assert sorted(by_slot.values()) == [[0, 2], [1, 3]]
    assert packed.filled[0] == 160.0


# ---- output and command line ------------------------------------------------------------------
def test_command_writes_partitioned_programmes_readable_everywhere(world, tmp_path, capsys):
    import duckdb
    import pyarrow.dataset as ds

    out = tmp_path / "programmes"
    args = [
        "broadcast",
        "--model",
        str(world["root"] / "models" / "latest"),
        "--date",
        "2026-06-30",
        "--places",
        str(world["root"] / "city" / "places.parquet"),
        "--items",
        str(world["root"] / "city" / "items.parquet"),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "kiosk" in printed and "have no duration_seconds" in printed
    frame = pd.read_parquet(out)
    n = len(frame)
    assert n > 0 and set(frame.columns) >= {
        "place_id",
        "slot",
        "start_offset_s",
        "item_id",
        "expected_engagement",
        "reasons",
        "date",
        "channel",
    }
    assert ds.dataset(out, partitioning="hive").to_table().num_rows == n
    assert (
        duckdb.sql(f"select count(*) from read_parquet('{out}/**/*.parquet', hive_partitioning=true)").fetchall()[0][0]
        == n
    )
    manifest = json.loads((out / "date=2026-06-30" / "_manifest.json").read_text())
    assert set(manifest["channels"]) == {"tv", "radio", "cinema", "kiosk"}
    assert sum(c["rows"] for c in manifest["channels"].values()) == n
    assert manifest["channels"]["tv"]["run"]["items_left_out"]["no_duration"] > 0
    # a re-run for one region and channel replaces that region's rows only
    before = read_programmes(out, DAY)
    assert (
        main([*args, "--channel", "tv", "--region", "qinglong", "--config", str(_config(tmp_path, topic_decay=1.0))])
        == 0
    )
    after = read_programmes(out, DAY)
    keep = lambda f: f[f[C.PLACE_ID] != "tv_qinglong"].reset_index(drop=True)
    pd.testing.assert_frame_equal(keep(before), keep(after))
    assert len(after[after[C.PLACE_ID] == "tv_qinglong"]) > 0
    # the summary printed is this run's (one tv place), not the channels an earlier run left in the manifest
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[:2] for ln in lines if ln.split()[:1] in (["tv"], ["radio"], ["cinema"], ["kiosk"])] == [
        ["tv", "1"]
    ]
    manifest = json.loads((out / "date=2026-06-30" / "_manifest.json").read_text())
    tv = manifest["channels"]["tv"]
    assert tv["places"] == 1 and tv["run"]["filters"] == {"channel": "tv", "region": "qinglong"}
    # ... while in_file says what the channel's file holds: every tv place, kept rows included
    assert tv["in_file"] == {"places": int(after.query("channel == 'tv'")[C.PLACE_ID].nunique()), "rows": int(
        (after[C.CHANNEL] == "tv").sum()
    )}
    assert tv["in_file"]["places"] == int((world["places"][C.CHANNEL] == "tv").sum())


def _config(folder, **values):
    path = folder / "engine.toml"
    path.write_text("[broadcast]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--channel", "app_push"], r"--channel 'app_push': not a broadcast channel; valid: tv, radio, cinema, kiosk"),
        (["--region", "atlantis"], r"unknown region 'atlantis'"),
        (["--date", "2026-13-01"], r"--date '2026-13-01' is not a date"),
    ],
)
def test_bad_options_are_one_line_errors(world, tmp_path, capsys, extra, match):
    args = [
        "broadcast",
        "--model",
        str(world["root"] / "models" / "latest"),
        "--date",
        "2026-06-30",
        "--places",
        str(world["root"] / "city" / "places.parquet"),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and pd.Series([err]).str.contains(match).all(), err


def test_bad_places_row_and_foreign_folder_are_refused(world, tmp_path, capsys):
    raw = pd.read_parquet(world["root"] / "city" / "places.parquet")
    raw.loc[3, C.CHANNEL] = "wechat"
    raw.to_parquet(tmp_path / "places.parquet")
    args = ["broadcast", "--model", str(world["root"] / "models" / "latest"), "--date", "2026-06-30"]
    assert main([*args, "--places", str(tmp_path / "places.parquet"), "--out", str(tmp_path / "o")]) == 2
    assert "places row 3" in capsys.readouterr().err
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    places = str(world["root"] / "city" / "places.parquet")
    assert main([*args, "--places", places, "--out", str(tmp_path / "foreign")]) == 2
    assert "not written by recsys broadcast" in capsys.readouterr().err
    assert (tmp_path / "foreign" / "notes.txt").read_text() == "mine"
    # with --force: written beside it; a file someone put inside a channel's folder survives a re-run
    assert main([*args, "--places", places, "--out", str(tmp_path / "foreign"), "--force", "--channel", "radio"]) == 0
    radio = tmp_path / "foreign" / "date=2026-06-30" / "channel=radio"
    (radio / "checked.txt").write_text("by the station")
    first = (radio / "part-00000.parquet").read_bytes()
    assert main([*args, "--places", places, "--out", str(tmp_path / "foreign"), "--channel", "radio"]) == 0
    assert (radio / "checked.txt").read_text() == "by the station"
    assert (tmp_path / "foreign" / "notes.txt").read_text() == "mine"
    assert (radio / "part-00000.parquet").read_bytes() == first  # the same run, the same programmes
    assert sorted(p.name for p in radio.iterdir()) == ["checked.txt", "part-00000.parquet"]  # no temp left


def test_no_place_selected_is_an_error_not_an_empty_file(world, tmp_path):
    places = world["places"].query("channel != 'cinema'")
    places.assign(**{C.AUDIENCE: places[C.AUDIENCE].map(json.dumps)}).to_parquet(tmp_path / "p.parquet")
    spec = BroadcastSpec(
        model=world["root"] / "models" / "latest",
        day=DAY,
        places=tmp_path / "p.parquet",
        out=tmp_path / "o",
        channel="cinema",
    )
    with pytest.raises(DataError, match=r"no place of channel 'cinema'; nothing to schedule"):
        run_broadcast(spec)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").glob("date=*"))


# ---- evaluation on the truth --------------------------------------------------------------------
def test_engine_beats_popularity_playlists_on_the_truth(world):
    users = world["city"].users
    per_place = evaluate_broadcast(world["state"], world["places"], DAY, BroadcastConfig(), world["city"].truth, users)
    total = summarize(per_place, [])
    assert float(total["vs_region_popular"].iloc[0]) > 1.0
    assert float(total["vs_city_popular"].iloc[0]) > 1.0
    by_channel = summarize(per_place, ["channel"])
    assert set(by_channel["channel"]) == {"tv", "radio", "cinema", "kiosk"}
    # every policy filled the same slots under the same rules
    assert (per_place["engine_filled_s"] <= per_place["capacity_s"]).all()


def test_evaluation_section_reports_every_channel_and_district(world):
    from recsys.broadcast.evaluate import broadcast_metrics
    from recsys.evaluation.report import _broadcast_section, render_markdown

    city, state = world["city"], world["state"]
    at = pd.Timestamp("2026-06-29T12:00:00+08:00")  # not a midnight: the programmes are for the next day
    bc = broadcast_metrics(
        state.model, world["items"], city.users, world["root"] / "city" / "places.parquet", at, city.truth
    )
    assert bc["day"] == "2026-06-30" and bc["places"] == len(world["places"])
    assert {r["channel"] for r in bc["by_channel"]} == {"tv", "radio", "cinema", "kiosk"}
    assert len(bc["by_region"]) == len(state.taxonomy.regions)
    assert bc["total"]["engine"] == pytest.approx(sum(r["engine"] for r in bc["by_channel"]))
    json.dumps(bc)  # metrics.json-ready
    text = render_markdown([_broadcast_section(bc, state.taxonomy)], "t")
    assert "青龙县 qinglong" in text and "电视 tv" in text and f"{bc['total']['vs_region_popular']:.2f}×" in text


def test_priorities_file_of_the_demand_output(world, tmp_path):
    text = """
version = 1
as_of = "2026-06-29T00:00:00+08:00"

[[audience]]
group = "farmer"
weight = 1.0
expires = "2026-07-14"

[[audience.topics]]
topic = "modern_agriculture"
weight = 1.0
expires = "2026-07-14"
"""
    (tmp_path / "priorities.toml").write_text(text, encoding="utf-8")
    spec = BroadcastSpec(
        model=world["root"] / "models" / "latest",
        day=DAY,
        places=world["root"] / "city" / "places.parquet",
        out=tmp_path / "out",
        channel="kiosk",
        priorities=tmp_path / "priorities.toml",
        config=BroadcastConfig(priority_boost=3.0),
    )
    manifest = run_broadcast(spec)
    assert manifest["channels"]["kiosk"]["run"]["priorities"].endswith("priorities.toml")
    rows = read_programmes(tmp_path / "out", DAY)
    marked = rows[rows[C.REASONS].map(lambda r: PRIORITY_REASON in list(r))]
    topics = dict(zip(world["items"][C.ITEM_ID], world["items"][C.TOPICS]))
    assert len(marked) and all("modern_agriculture" in topics[i] for i in marked[C.ITEM_ID])
    # only where farmers watch: the mark appears only at places with a farmer share in their mix
    mixes = dict(zip(world["places"][C.PLACE_ID], world["places"][C.AUDIENCE]))
    for pid in set(marked[C.PLACE_ID]):
        assert any(world["state"].taxonomy.sub_groups.get(k, k) == "farmer" for k in mixes[pid])


def test_a_catalogue_without_running_times_is_an_error_not_empty_programmes(world, tmp_path):
    items = world["items"].assign(**{C.DURATION_SECONDS: np.nan})
    items.to_parquet(tmp_path / "items.parquet")
    spec = BroadcastSpec(
        model=world["root"] / "models" / "latest",
        day=DAY,
        places=world["root"] / "city" / "places.parquet",
        out=tmp_path / "out",
        items=tmp_path / "items.parquet",
    )
    with pytest.raises(DataError, match=r"no item could be scheduled at any of the \d+ places.*no_duration \d+"):
        run_broadcast(spec)
    assert not list((tmp_path / "out").glob("date=*/channel=*"))


def test_a_segment_reads_its_own_users_or_falls_back_to_its_group_and_region(world):
    from recsys.broadcast import scores

    state = world["state"]
    tax = state.taxonomy
    users = state.model.users
    g, r = "resident", "haigang"
    rows = np.flatnonzero((users[C.GROUP] == g).to_numpy() & (users[C.REGION] == r).to_numpy())
    elderly = rows[(users[C.SUB_GROUP].to_numpy()[rows] == "elderly")]
    assert len(elderly) >= 5
    places = pd.DataFrame(
        {
            C.PLACE_ID: ["a"],
            C.REGION: [r],
            C.AUDIENCE: [{"elderly": 0.5, "resident": 0.3, "college": 0.2}],
        }
    )
    seg = scores.place_segments(places, tax)
    assert seg.sub_group == ["elderly", "", "college"] and seg.shares.sum() == pytest.approx(1.0)
    interest, _, n_users = scores._segment_tastes(state, seg, min_users=5)
    eng = state.engagement
    assert n_users[0] == len(elderly)
    assert np.allclose(interest[0], eng.user_interest[elderly].mean(axis=0), atol=1e-5)
    assert n_users[1] == len(rows)  # the group as a whole: every sub-group of it in the region
    # too few users in a cell: the group x region segment's own row
    interest, _, n_users = scores._segment_tastes(state, seg, min_users=10**6)
    row = state.segment_by_pair[list(tax.groups).index("youth"), list(tax.regions).index(r)]
    assert (n_users == 0).all() and np.allclose(interest[2], eng.segment_interest[row])


def test_current_users_give_the_mixes_of_places_without_one(world, tmp_path):
    users = world["city"].users.copy()
    users.loc[users[C.REGION] == "funing", [C.GROUP, C.SUB_GROUP]] = ["youth", "pupil"]
    users.to_parquet(tmp_path / "users.parquet")
    spec = BroadcastSpec(
        model=world["root"] / "models" / "latest",
        day=DAY,
        places=world["root"] / "city" / "places.parquet",
        out=tmp_path / "out",
        channel="radio",
        region="funing",
        users=tmp_path / "users.parquet",
    )
    run_broadcast(spec)
    rows = read_programmes(tmp_path / "out", DAY)
    assert set(rows[C.PLACE_ID]) == {"radio_funing"}
    # every row's leading reason names the only segment of the mix: funing's pupils, 100% of the audience
    assert rows[C.REASONS].map(lambda r: r[0] == "抚宁区小学生最可能喜欢(受众100%)").all()


def test_a_model_long_before_the_date_warns_like_the_push(world, tmp_path, capsys):
    from recsys.push.job import STALE_DAYS

    args = [
        "broadcast",
        "--model",
        str(world["root"] / "models" / "latest"),
        "--places",
        str(world["root"] / "city" / "places.parquet"),
        "--channel",
        "radio",
    ]
    end = pd.Timestamp(world["state"].model.window["end"]).tz_convert("Asia/Shanghai").date()
    late = end + dt.timedelta(days=STALE_DAYS + 3)
    assert main([*args, "--date", late.isoformat(), "--out", str(tmp_path / "late")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: model ") and f"{STALE_DAYS + 3} days later" in err and "retrain" in err, err
    manifest = json.loads((tmp_path / "late" / f"date={late.isoformat()}" / "_manifest.json").read_text())
    assert manifest["channels"]["radio"]["run"]["warnings"] == [err.strip().removeprefix("warning: ")]
    soon = end + dt.timedelta(days=1)
    assert main([*args, "--date", soon.isoformat(), "--out", str(tmp_path / "soon")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_validate_checks_the_places_table_of_a_data_folder(world, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(world["root"] / "city", data)
    assert main(["validate", "--data", str(data), "--out", str(tmp_path / "ok")]) == 0
    n = len(world["places"])
    assert f"places: {n:,} valid (" in capsys.readouterr().out
    raw = pd.read_parquet(data / "places.parquet")
    raw.loc[2, C.AUDIENCE] = json.dumps({"farmer": 0.5, "elderly": 0.2})
    raw.to_parquet(data / "places.parquet")
    assert main(["validate", "--data", str(data), "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "places row 2" in err and "sum to 0.7" in err, err
    # refused: the evidence only, no clean tables that would pass for a good run
    assert sorted(p.name for p in (tmp_path / "bad").iterdir() if not p.name.startswith(".")) == ["quarantine.parquet"]


def test_an_item_live_through_a_places_active_hours_is_eligible_there_only(world):
    from recsys.ranking import Recommender

    state = world["state"]
    kiosks = world["places"][world["places"][C.CHANNEL] == "kiosk"].reset_index(drop=True)
    hours = np.where(np.arange(len(kiosks)) % 2 == 0, "08:00-18:00", "")  # half close at 18:00, half never
    kiosks = kiosks.assign(**{C.ACTIVE_HOURS: hours})
    first = plan_programmes(state, kiosks, DAY, BroadcastConfig())
    item = first.rows[C.ITEM_ID].value_counts().index[0]  # shown at many kiosks of both kinds
    # it now expires at 19:00 that day: after the early kiosks close, before the all-day ones do
    items = world["items"].copy()
    items.loc[items[C.ITEM_ID] == item, C.EXPIRES_AT] = pd.Timestamp("2026-06-30T19:00:00+08:00").tz_convert("UTC")
    late = Recommender.from_model(state.model, catalog=items).state
    rows = plan_programmes(late, kiosks, DAY, BroadcastConfig()).rows
    at = set(rows.loc[rows[C.ITEM_ID] == item, C.PLACE_ID])
    early = set(kiosks.loc[kiosks[C.ACTIVE_HOURS] != "", C.PLACE_ID])
    assert at and at <= early
    assert set(first.rows.loc[first.rows[C.ITEM_ID] == item, C.PLACE_ID]) - early  # all-day kiosks had it before


# ---- the output folder: only what this command wrote is ever rewritten -----------------------------


def _cli(world, out, *extra):
    return [
        "broadcast", "--model", str(world["root"] / "models" / "latest"), "--date", DAY.isoformat(),
        "--places", str(world["root"] / "city" / "places.parquet"), "--out", str(out), *extra,
    ]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def test_force_never_merges_into_a_day_folder_or_another_commands_output(world, tmp_path, capsys):
    # someone's own hive layout with the day's folder: --force writes beside files, never into theirs
    theirs = tmp_path / "hive" / f"date={DAY.isoformat()}" / "channel=tv" / "part-00000.parquet"
    theirs.parent.mkdir(parents=True)
    pd.DataFrame({"place_id": ["tv_x"], "viewers": [12], "item_id": ["i1"]}).to_parquet(theirs)
    before = theirs.read_bytes()
    assert main(_cli(world, tmp_path / "hive", "--force", "--channel", "tv")) == 2
    assert f"date={DAY.isoformat()}: exists and was not written by recsys broadcast" in _one_line(capsys)
    assert theirs.read_bytes() == before and not (tmp_path / "hive" / ".recsys-output.json").exists()
    assert not (tmp_path / "hive" / "_lock").exists()
    # another command's folder (its marker): refused even with --force, its marker kept
    other = tmp_path / "pushes"
    other.mkdir()
    marker = {"kind": "push", "entries": ["date=2026-06-29"], "written_at": "2026-06-29T00:00:00+00:00"}
    (other / ".recsys-output.json").write_text(json.dumps(marker))
    assert main(_cli(world, other, "--force")) == 2
    assert "written by recsys push" in _one_line(capsys)
    assert json.loads((other / ".recsys-output.json").read_text()) == marker
    assert sorted(p.name for p in other.iterdir()) == [".recsys-output.json"]


def test_a_run_refused_on_its_input_leaves_nothing_behind(world, tmp_path, capsys):
    out = tmp_path / "new"
    bad = ["--priorities", str(world["root"] / "city" / "users.parquet")]
    assert main(_cli(world, out, *bad)) == 2
    _one_line(capsys)
    assert not out.exists()
    # a failure inside the run (a day's unreadable record, below) removes the lock it created
    assert main(_cli(world, out)) == 0
    capsys.readouterr()
    (out / "_lock").unlink()
    (out / f"date={DAY.isoformat()}" / "_manifest.json").write_text("{oops")
    assert main(_cli(world, out)) == 2
    _one_line(capsys)
    assert not (out / "_lock").exists()


@pytest.mark.parametrize("manifest", ["{oops", "[]", '{"kind": "push"}'])
def test_an_unreadable_day_record_stops_the_run_before_any_row_is_rewritten(world, tmp_path, capsys, manifest):
    out = tmp_path / "o"
    assert main(_cli(world, out)) == 0
    capsys.readouterr()
    day = out / f"date={DAY.isoformat()}"
    parts = {p: p.read_bytes() for p in day.glob("channel=*/part-00000.parquet")}
    (day / "_manifest.json").write_text(manifest)
    assert main(_cli(world, out, "--channel", "tv")) == 2
    err = _one_line(capsys)
    assert "_manifest.json: not a day manifest of recsys broadcast" in err
    assert parts and all(p.read_bytes() == b for p, b in parts.items())


def test_an_unreadable_programme_file_is_named_not_a_crash(world, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(_cli(world, out)) == 0
    capsys.readouterr()
    tv = out / f"date={DAY.isoformat()}" / "channel=tv" / "part-00000.parquet"
    radio = out / f"date={DAY.isoformat()}" / "channel=radio" / "part-00000.parquet"
    tv.write_bytes(b"garbage")
    radio_before = radio.read_bytes()
    # the next day reads this day's programmes (repeat window): the bad file is named
    nxt = [a if a != DAY.isoformat() else (DAY + dt.timedelta(days=1)).isoformat() for a in _cli(world, out)]
    assert main(nxt) == 2
    assert f"{tv}: not a readable programme file" in _one_line(capsys)
    # a rerun of the day merges into its files: refused before any channel is rewritten
    assert main(_cli(world, out)) == 2
    assert "not a readable programme file" in _one_line(capsys)
    assert radio.read_bytes() == radio_before and tv.read_bytes() == b"garbage"


def test_the_run_lock_of_a_failed_run_leaves_no_trace(tmp_path):
    from recsys.push.lock import LOCK_FILE, hold

    new = tmp_path / "new"
    with pytest.raises(RuntimeError), hold(new, what="output", run="test"):
        assert (new / LOCK_FILE).exists()
        raise RuntimeError("failed")
    assert not new.exists()
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError), hold(theirs, what="output", run="test"):
        raise RuntimeError("failed")
    assert sorted(p.name for p in theirs.iterdir()) == ["notes.txt"]
    # a lock file that was there before stays (an earlier run's folder), and a clean run keeps its own
    with hold(new, what="output", run="test"):
        pass
    with pytest.raises(RuntimeError), hold(new, what="output", run="test"):
        raise RuntimeError("failed")
    assert (new / LOCK_FILE).exists()


def test_the_lock_taken_is_the_folders_file_and_nested_new_folders_go_with_a_failed_run(tmp_path, monkeypatch):
    import os

    from recsys.push import lock as L

    nested = tmp_path / "a" / "b" / "c"
    with pytest.raises(RuntimeError), L.hold(nested, what="output", run="test"):
        raise RuntimeError("failed")
    assert not (tmp_path / "a").exists()
    # a run that opened the lock file just before a failed run unlinked it must not lock that orphan:
    # it would hold a lock nobody else can see, beside the next run's on the new file
    folder = tmp_path / "f"
    folder.mkdir()
    stale = os.open(folder / L.LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    os.unlink(folder / L.LOCK_FILE)
    real_open, calls = os.open, []

    def opened(path, flags, mode=0o777):
        calls.append(path)
        return stale if len(calls) == 1 else real_open(path, flags, mode)

    monkeypatch.setattr(L.os, "open", opened)
    import fcntl

    with L.hold(folder, what="output", run="test") as path:
        assert len(calls) == 2
        other = real_open(path, os.O_RDWR)  # the folder's lock file as the next run opens it: locked
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(other)


def test_a_day_of_its_own_missing_from_the_marker_is_still_its_own(world, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(_cli(world, out)) == 0
    marker = out / ".recsys-output.json"
    record = json.loads(marker.read_text())
    marker.write_text(json.dumps({**record, "entries": []}))  # killed between the day's manifest and the marker
    assert main(_cli(world, out, "--channel", "tv")) == 0
    assert f"date={DAY.isoformat()}" in json.loads(marker.read_text())["entries"]
