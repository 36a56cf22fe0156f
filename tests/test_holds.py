"""Review holds: the hold list, its append-only audit log, the CLI, and the Recommender honouring it."""

from __future__ import annotations

import json

import pandas as pd
import push_city
import pytest

from recsys import holds as H
from recsys.cli import main
from recsys.exceptions import ConfigError, SchemaError
from recsys.ranking import Recommender

T0 = pd.Timestamp("2026-07-01T08:00:00Z")


def _log_bytes(folder) -> bytes:
    return (folder / H.LOG_FILE).read_bytes()


def test_add_list_release_round_trip_is_audited_append_only(tmp_path):
    assert H.add_hold(tmp_path, "i1", reason="wrong dosage claim", by="monitor", at=T0)
    assert H.add_hold(
        tmp_path, "i2", reason="outdated", by="wang", at=T0 + pd.Timedelta(minutes=5)
    )
    holds = H.load_holds(tmp_path)
    assert holds["item_id"].tolist() == ["i1", "i2"]
    assert holds.loc[0, "since"] == T0 and holds.loc[0, "by"] == "monitor"
    before = _log_bytes(tmp_path)
    ended = H.release_hold(
        tmp_path,
        "i1",
        by="li",
        note="checked with the source: correct",
        at=T0 + pd.Timedelta(hours=1),
    )
    assert ended["reason"] == "wrong dosage claim"
    after = _log_bytes(tmp_path)
    # the audit log only grows: the old content is a prefix of the new
    assert after.startswith(before) and len(after) > len(before)
    entries = H.read_log(tmp_path)
    assert [(e["action"], e["item_id"], e["by"]) for e in entries] == [
        ("add", "i1", "monitor"),
        ("add", "i2", "wang"),
        ("release", "i1", "li"),
    ]
    assert entries[-1]["note"] == "checked with the source: correct"
    assert H.held_items(tmp_path) == frozenset({"i2"})
    # the table is plain Parquet a reader without the engine can use
    assert pd.read_parquet(tmp_path / H.HOLDS_FILE)["item_id"].tolist() == ["i2"]
    assert H.released_since(tmp_path) == {"i1": T0 + pd.Timedelta(hours=1)}


def test_adding_a_held_item_again_changes_nothing(tmp_path):
    assert H.add_hold(tmp_path, "i1", reason="r", by="a", at=T0)
    before = _log_bytes(tmp_path)
    assert not H.add_hold(tmp_path, "i1", reason="again", by="b", at=T0)
    assert _log_bytes(tmp_path) == before


def test_release_of_an_item_not_on_hold_is_refused(tmp_path):
    H.add_hold(tmp_path, "i1", reason="r", by="a", at=T0)
    with pytest.raises(
        H.HoldError, match=r"item 'i9' is not on hold .*1 item\(s\) are"
    ):
        H.release_hold(tmp_path, "i9", by="li", note="n")
    with pytest.raises(ConfigError, match="note must be a non-empty string"):
        H.release_hold(tmp_path, "i1", by="li", note="  ")
    with pytest.raises(ConfigError, match="holds folder .* not found"):
        H.load_holds(tmp_path / "missing")
    with pytest.raises(ConfigError, match="has no time zone"):
        H.add_hold(
            tmp_path, "i2", reason="r", by="a", at=pd.Timestamp("2026-07-01 08:00")
        )


def test_a_crash_between_log_and_table_is_repaired_from_the_log(tmp_path):
    H.add_hold(tmp_path, "i1", reason="r", by="a", at=T0)
    # a change whose log line was written but whose table was not (killed in between)
    line = {
        "time": T0.isoformat(),
        "action": "add",
        "item_id": "i2",
        "reason": "r2",
        "by": "b",
    }
    with open(tmp_path / H.LOG_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")
    assert H.held_items(tmp_path) == frozenset({"i1", "i2"})
    # a line cut short by a kill mid-write never took effect, and the next change starts a fresh line
    with open(tmp_path / H.LOG_FILE, "a", encoding="utf-8") as fh:
        fh.write('{"time": "2026-07-01T09:00:00+00:00", "action": "rel')
    assert H.held_items(tmp_path) == frozenset({"i1", "i2"})
    H.release_hold(tmp_path, "i2", by="li", note="ok")
    assert H.held_items(tmp_path) == frozenset({"i1"})
    assert [e["action"] for e in H.read_log(tmp_path)] == ["add", "add", "release"]


def test_a_log_edited_by_hand_is_refused_naming_the_line(tmp_path):
    H.add_hold(tmp_path, "i1", reason="r", by="a", at=T0)
    with open(tmp_path / H.LOG_FILE, "a", encoding="utf-8") as fh:
        fh.write("not json\n")
    with pytest.raises(SchemaError, match="line 2 is not a hold change"):
        H.load_holds(tmp_path)


def test_apply_holds_turns_only_held_approved_items_pending():
    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "review_status": ["approved", "approved", "retracted"],
        }
    )
    out = H.apply_holds(items, {"b", "c"})
    assert out["review_status"].tolist() == ["approved", "pending", "retracted"]
    assert items["review_status"].tolist() == [
        "approved",
        "approved",
        "retracted",
    ]  # a copy


def test_cli_holds_add_list_release(tmp_path, capsys):
    state = str(tmp_path / "state")
    assert (
        main(
            [
                "holds",
                "add",
                "i7",
                "--reason",
                "editor: wrong claim",
                "--by",
                "wang",
                "--state",
                state,
            ]
        )
        == 0
    )
    # the folder was new: the command says so (a mistyped --state must not pass unnoticed)
    assert "did not exist and was created" in capsys.readouterr().out
    assert (
        main(
            [
                "holds",
                "add",
                "i8",
                "--reason",
                "second",
                "--by",
                "wang",
                "--state",
                state,
            ]
        )
        == 0
    )
    assert "did not exist" not in capsys.readouterr().out
    assert (
        main(
            ["holds", "release", "i8", "--by", "li", "--note", "fine", "--state", state]
        )
        == 0
    )
    assert main(["holds", "list", "--state", state]) == 0
    out = capsys.readouterr().out
    assert "1 item(s) on hold" in out and "i7" in out and "editor: wrong claim" in out
    assert (
        main(
            [
                "holds",
                "release",
                "i7",
                "--by",
                "li",
                "--note",
                "verified",
                "--state",
                state,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "holds",
                "release",
                "i7",
                "--by",
                "li",
                "--note",
                "again",
                "--state",
                state,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: item 'i7' is not on hold")
    assert main(["holds", "list", "--log", "--state", state]) == 0
    out = capsys.readouterr().out
    assert "add      i7  by wang" in out and "release  i7  by li: verified" in out
    assert main(["holds", "list", "--state", str(tmp_path / "nope")]) == 2


# ---- the Recommender --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def city(tmp_path_factory):
    return push_city.trained_city(tmp_path_factory)


def _top_items(rec: Recommender, users: list[str], k: int = 10) -> set[str]:
    frame = rec.recommend_many(users, k=k, now=push_city.END)
    return set(frame["item_id"])


def test_recommender_leaves_held_items_out_and_picks_up_changes(city, tmp_path):
    bundle = city / "models" / "latest"
    users = [f"u{i:04d}" for i in range(0, 300, 7)]
    plain = Recommender.load(bundle, catalog=city / "items.parquet")
    shown = _top_items(plain, users)
    target = min(shown)
    holds_dir = tmp_path / "state"
    holds_dir.mkdir()
    rec = Recommender.load(bundle, catalog=city / "items.parquet", holds=holds_dir)
    assert target in _top_items(rec, users)  # no holds yet: same lists
    H.add_hold(holds_dir, target, reason="burst of reports", by="monitor")
    assert target in _top_items(rec, users)  # not re-read until refreshed
    rec.refresh_holds()
    assert target not in _top_items(rec, users)
    assert target not in {
        r.item_id for r in rec.recommend(users[0], k=20, now=push_city.END)
    }
    # a reload and a catalogue change keep the holds
    rec.set_catalog(city / "items.parquet")
    assert target not in _top_items(rec, users)
    rec.reload()
    assert target not in _top_items(rec, users)
    H.release_hold(holds_dir, target, by="li", note="fine")
    rec.refresh_holds()
    assert target in _top_items(rec, users)


def test_recommender_holds_without_a_catalogue_and_errors(city, tmp_path):
    bundle = city / "models" / "latest"
    users = [f"u{i:04d}" for i in range(0, 300, 11)]
    shown = _top_items(Recommender.load(bundle), users)
    target = max(shown)
    H.add_hold(tmp_path, target, reason="r", by="a")
    assert target not in _top_items(Recommender.load(bundle, holds=tmp_path), users)
    with pytest.raises(ConfigError, match="holds folder .* not found"):
        Recommender.load(bundle, holds=tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"refresh_holds\(\) needs a holds folder"):
        Recommender.load(bundle).refresh_holds()


def test_cli_recommend_with_holds(city, tmp_path, capsys):
    bundle = str(city / "models" / "latest")
    args = [
        "recommend",
        "u0003",
        "--model",
        bundle,
        "--k",
        "5",
        "--json",
        "--now",
        push_city.END.isoformat(),
    ]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[0])["item_id"]
    H.add_hold(tmp_path, first, reason="r", by="a")
    assert main(args + ["--holds", str(tmp_path)]) == 0
    ids = [json.loads(line)["item_id"] for line in capsys.readouterr().out.splitlines()]
    assert first not in ids and len(ids) == 5


def test_a_hold_checked_against_the_catalogue_refuses_an_unknown_id(tmp_path, capsys):
    items = pd.DataFrame({"item_id": ["sci-001", "sci-002"], "title": ["a", "b"], "topics": ["x", "y"]})
    data = tmp_path / "data"
    data.mkdir()
    items.to_parquet(data / "items.parquet", index=False)
    state = tmp_path / "state"
    args = ["holds", "add", "sci-01", "--reason", "r", "--by", "wang", "--state", str(state), "--data", str(data)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "'sci-01'" in err and "sci-001" in err and "\n" not in err
    assert not state.exists()  # nothing written for a refused hold
    args[2] = "sci-002"
    assert main(args) == 0
    assert H.held_items(state) == frozenset({"sci-002"})
