"""Push trust: outputs readable as they are, runs that never clobber each other, locks, clean errors.

Each test attacks one way a push or campaign could lose, hide or misreport
data (issue 10) on the tiny test city.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.dataset as pads
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import push_city  # noqa: E402

from recsys.push import run_campaign as campaign, run_nightly as run  # noqa: E402
from recsys.cli import main as cli_main  # noqa: E402
from recsys.push import writer as W  # noqa: E402

D1 = push_city.DAY
D2 = D1 + dt.timedelta(days=1)


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = push_city.trained_city(tmp_path_factory)
    users, items, _ = push_city.tables()
    return {
        "root": root,
        "bundle": root / "models" / "latest",
        "users": users,
        "items": items.set_index("item_id"),
    }


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _key(frame: pd.DataFrame) -> list[tuple]:
    """Rows as comparable tuples (date and kind and channel as plain text)."""
    cols = ["date", "kind", "channel", "user_id", "rank", "item_id"]
    return sorted(tuple(str(v) for v in row) for row in frame[cols].itertuples(index=False))


# ---- readable output ---------------------------------------------------------


@pytest.fixture(scope="module")
def two_nights(city, tmp_path_factory):
    """Two nights and a campaign in one output folder, history inside it (the default)."""
    out = tmp_path_factory.mktemp("readable")
    run(city["bundle"], D1, out, stream=None)
    run(city["bundle"], D2, out, stream=None)
    campaign(city["bundle"], D1, out, name="heat", topic="ecology", budget=20, stream=None)
    return out, W.read_pushes(out)


def test_pandas_reads_the_whole_output_folder(two_nights):
    out, expected = two_nights
    frame = pd.read_parquet(out)
    assert len(frame) == len(expected) > 0
    assert _key(frame) == _key(expected)
    assert set(frame["kind"].astype(str)) == {"nightly", "heat"}


def test_pyarrow_dataset_reads_the_whole_output_folder(two_nights):
    out, expected = two_nights
    table = pads.dataset(out, partitioning="hive").to_table()
    assert table.num_rows == len(expected)
    assert _key(table.to_pandas()) == _key(expected)


def test_duckdb_reads_the_whole_output_folder(two_nights):
    out, expected = two_nights
    query = f"SELECT * FROM read_parquet('{out}/**/*.parquet', hive_partitioning=true)"
    frame = duckdb.sql(query).df()
    assert len(frame) == len(expected)
    frame["date"] = frame["date"].astype(str).str[:10]
    assert _key(frame) == _key(expected)


def test_a_killed_run_leaves_nothing_a_reader_picks_up(city, two_nights, tmp_path):
    """Staged chunk parts of an unfinished run are invisible to a ``**/*.parquet`` glob."""
    out, expected = two_nights
    work = W.Workspace.for_run(out, dt.date(2026, 7, 5), W.NIGHTLY)
    try:
        work.start({"x": 1}, "r-killed")
        rows = expected[expected["kind"] == "nightly"].head(3).drop(columns=["date", "kind"])
        work.write_chunk(0, rows, W.output_schema("Asia/Shanghai"), range(16), [0] * len(rows), {"chunk": 0})
        assert any(work.out_dir.rglob(f"*{W.STAGED_SUFFIX}"))
        count = duckdb.sql(f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet', hive_partitioning=true)")
        assert count.fetchall()[0][0] == len(expected)
        assert len(pd.read_parquet(out)) == len(expected)
    finally:
        import shutil

        shutil.rmtree(work.root)


def test_no_parquet_file_under_out_but_push_rows(two_nights):
    out, _ = two_nights
    for path in out.rglob("*.parquet"):
        rel = path.relative_to(out).parts
        assert rel[0].startswith("date=") and rel[1].startswith("kind=") and rel[2].startswith("channel=")


# ---- runs never clobber each other ----------------------------------------------


def test_segment_run_after_nightly_leaves_the_nightly_partition_byte_identical(city, tmp_path):
    run(city["bundle"], D1, tmp_path, stream=None)
    nightly = W.partition_dir(tmp_path, D1, "nightly")
    before = _files(nightly)
    report = run(city["bundle"], D1, tmp_path, group="farmer", region="qinglong", topic="ecology", stream=None)
    assert report["kind"].startswith("segment-") and report["rows"] > 0
    assert _files(nightly) == before
    # the segment's kind is a hash of its filters: the same request lands in the same partition
    again = run(city["bundle"], D1, tmp_path, group="farmer", region="qinglong", topic="ecology", stream=None)
    assert again["kind"] == report["kind"]
    # caps count every partition of the day: nightly + segment stay within the daily cap
    rows = W.read_pushes(tmp_path, D1)
    per_day = rows.groupby(["user_id", "channel"]).size()
    caps = {"app_push": 5, "wechat": 8, "e_reader": 8}
    assert all(n <= caps[ch] for (_, ch), n in per_day.items())
    assert not rows.duplicated(["user_id", "item_id"]).any()


def test_a_targeted_run_into_the_nightly_partition_needs_replace(city, tmp_path, capsys):
    run(city["bundle"], D1, tmp_path, stream=None)
    nightly = W.partition_dir(tmp_path, D1, "nightly")
    before = _files(nightly)
    args = ["push", "--model", str(city["bundle"]), "--date", str(D1), "--out", str(tmp_path), "--quiet"]
    assert cli_main([*args, "--region", "haigang", "--kind", "nightly"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "holds run" in err and "the whole city" in err and "region=haigang" in err and "--replace" in err
    assert _files(nightly) == before
    assert cli_main([*args, "--region", "haigang", "--kind", "nightly", "--replace"]) == 0
    assert set(W.read_pushes(tmp_path, D1, kind="nightly").user_id.map(city["users"].set_index("user_id")["region"])) == {
        "haigang"
    }


def test_a_folder_this_code_did_not_write_is_never_replaced(city, tmp_path):
    from recsys.push.identity import OutputConflictError

    stranger = W.partition_dir(tmp_path, D1, "nightly")
    stranger.mkdir(parents=True)
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(OutputConflictError, match="holds no readable push manifest"):
        run(city["bundle"], D1, tmp_path, replace=True, stream=None)
    assert (stranger / "notes.txt").read_text() == "mine"


# ---- history lock ----------------------------------------------------------------


def test_a_second_run_on_the_same_history_is_refused(city, tmp_path, capsys):
    from recsys.push import lock as L

    history = tmp_path / "history"
    with L.hold(history, what="push history", run="nightly 2026-07-01"):
        code = cli_main(
            [
                "campaign", "--model", str(city["bundle"]), "--date", str(D1), "--out", str(tmp_path / "other"),
                "--history", str(history), "--name", "heat", "--topic", "ecology", "--budget", "10", "--quiet",
            ]
        )  # fmt: skip
        err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"push history {history} is in use by run nightly 2026-07-01 (pid {__import__('os').getpid()}" in err
    assert not W.partition_dir(tmp_path / "other", D1, "heat").exists()
    # released: the campaign runs now
    assert cli_main(["campaign", "--model", str(city["bundle"]), "--date", str(D1), "--out", str(tmp_path / "other"),
                     "--history", str(history), "--name", "heat", "--topic", "ecology", "--budget", "10",
                     "--quiet"]) == 0  # fmt: skip


def test_a_lock_left_by_a_dead_run_is_taken_over(city, tmp_path):
    import json
    import subprocess

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    history = tmp_path / "_history"
    history.mkdir(parents=True)
    record = {"run": "nightly 2026-06-30", "pid": int(dead.stdout), "started": "2026-06-30T20:00:00+00:00"}
    (history / "_lock").write_text(json.dumps(record))
    report = run(city["bundle"], D1, tmp_path, stream=None)
    assert any("took over the lock left by run nightly 2026-06-30" in n for n in report["housekeeping"])
    assert (history / "_lock").read_text() == ""  # a clean exit leaves no record behind


# ---- nobody eligible --------------------------------------------------------------


def test_campaign_on_an_unapproved_item_exits_2_with_the_reason_and_writes_nothing(city, tmp_path, capsys):
    pending = city["items"].index[city["items"]["review_status"] == "retracted"][0]
    code = cli_main(
        ["campaign", "--model", str(city["bundle"]), "--date", str(D1), "--out", str(tmp_path), "--name", "oops",
         "--item", pending, "--budget", "100"]  # fmt: skip
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"item {pending!r} is not approved (review_status 'retracted')" in err and "nothing was written" in err
    assert not W.partition_dir(tmp_path, D1, "oops").exists()
    assert not list((tmp_path / "_history").glob("date=*"))


def test_audience_states_why_it_is_empty(city):
    from recsys.ranking import Recommender

    rec = Recommender.load(city["bundle"])
    pending = city["items"].index[city["items"]["review_status"] == "pending"][0]
    empty = rec.audience(item_id=pending, k=10)
    assert empty.empty and "not approved" in empty.attrs["reason"]
    late = rec.audience(item_id=city["items"].index[0], k=10, now="2020-01-01T00:00:00+08:00")
    assert late.empty and "not published until" in late.attrs["reason"]
    assert not rec.audience(item_id=city["items"].index[0], k=10).empty


def test_campaign_where_every_candidate_is_capped_says_so(city, tmp_path):
    from recsys.push import NothingToPushError

    cfg = tmp_path / "zero.toml"
    import tomli_w

    doc = {"push": dict(push_city.TRAIN_CONFIG["push"])}  # push --config takes [push] only
    doc["push"] = {**doc["push"], "daily_cap": {"app_push": 0, "wechat": 0, "e_reader": 0}}
    cfg.write_text(tomli_w.dumps(doc), encoding="utf-8")
    out = tmp_path / "pushes"  # a push folder holds nothing but push runs: not the config's folder
    with pytest.raises(NothingToPushError, match=r"nobody is eligible \(of \d+ audience users: .*caps_reached \d+"):
        campaign(city["bundle"], D1, out, name="heat", topic="ecology", budget=10, config_path=cfg, stream=None)
    assert not W.partition_dir(out, D1, "heat").exists()


# ---- process hygiene and leftovers ---------------------------------------------------

# a driver with two worker processes that prints its helper processes and SIGKILLs itself after a chunk
KILLED_DRIVER = """
import json, os, signal, sys
import psutil
from recsys.push import run_nightly as run
def after_chunk(stats):
    kids = [p.pid for p in psutil.Process().children(recursive=True)]
    print(json.dumps(kids), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
run(sys.argv[1], sys.argv[2], sys.argv[3], workers=2, stream=None, warn_stream=None, on_chunk=after_chunk)
"""


def test_killing_the_driver_kills_its_workers(city, tmp_path):
    import json
    import signal
    import subprocess
    import time

    import psutil

    proc = subprocess.run(
        [sys.executable, "-c", KILLED_DRIVER, str(city["bundle"]), str(D1), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    helpers = [psutil.Process(pid) for pid in json.loads(proc.stdout.splitlines()[-1]) if psutil.pid_exists(pid)]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in helpers):
        time.sleep(0.2)
    alive = [p.pid for p in helpers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"worker processes outlived their driver: {alive}"


def test_leftovers_of_a_killed_commit_are_put_right(city, tmp_path):
    from recsys.push.housekeeping import clean_leftovers

    run(city["bundle"], D1, tmp_path, stream=None)
    live = W.partition_dir(tmp_path, D1, "nightly")
    rows = W.read_pushes(tmp_path, D1)
    # killed between "move the old partition aside" and "rename the new one in"
    aside = live.with_name(f".{live.name}.old-0123abcd")
    live.rename(aside)
    tmp_file = tmp_path / f"date={D1}" / ".x.parquet.tmp-89abcdef"
    tmp_file.write_bytes(b"half")
    mine = tmp_path / f"date={D1}" / "notes.txt"
    mine.write_text("not ours")
    notes = clean_leftovers(tmp_path, tmp_path / W.HISTORY_DIR)
    assert live.is_dir() and not aside.exists() and not tmp_file.exists() and mine.exists()
    assert any("restored" in n for n in notes)
    pd.testing.assert_frame_equal(W.read_pushes(tmp_path, D1), rows)


def test_old_work_of_a_killed_run_is_removed_by_the_next_run(city, tmp_path):
    import os

    old = W.Workspace.for_run(tmp_path, dt.date(2026, 6, 1), "nightly")
    old.start({"x": 1}, "r-old")
    stamp = 1_600_000_000
    for p in [old.root, *old.root.rglob("*")]:
        os.utime(p, (stamp, stamp))
    report = run(city["bundle"], D1, tmp_path, stream=None)
    assert not old.root.exists()
    assert any("a killed run's work" in n for n in report["housekeeping"])


# ---- eligibility over the send window, current users -----------------------------------


def test_items_expiring_inside_the_send_window_are_not_sent(city, tmp_path):
    catalog = pd.read_parquet(city["root"] / "items.parquet")
    run(city["bundle"], D1, tmp_path / "a", catalog=_write(catalog, tmp_path / "a.parquet"), stream=None)
    before = W.read_pushes(tmp_path / "a", D1)
    app = before[before.channel == "app_push"]  # window 08:00-21:00 local
    top = app.item_id.value_counts().index[:3].tolist()
    # they expire at noon, inside the window: live at 08:00, gone before 21:00
    noon = pd.Timestamp(f"{D1} 12:00", tz="Asia/Shanghai").tz_convert("UTC")
    catalog["expires_at"] = pd.Series(pd.NaT, index=catalog.index, dtype="datetime64[us, UTC]")
    catalog.loc[catalog.item_id.isin(top), "expires_at"] = noon
    run(city["bundle"], D1, tmp_path / "b", catalog=_write(catalog, tmp_path / "b.parquet"), stream=None)
    after = W.read_pushes(tmp_path / "b", D1)
    assert not set(after.item_id) & set(top)
    assert len(after) == len(before)  # refilled with items that stay live all window


def _write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_parquet(path, index=False)
    return path


def test_a_current_users_table_applies_opt_outs_and_attributes_without_retraining(city, tmp_path):
    run(city["bundle"], D1, tmp_path / "a", stream=None)
    before = W.read_pushes(tmp_path / "a", D1)
    users = city["users"].copy()
    opted = before.user_id.drop_duplicates().head(10).tolist()
    users.loc[users.user_id.isin(opted), "push_opt_out"] = True
    moved = before.user_id.drop_duplicates().iloc[20]
    users.loc[users.user_id == moved, ["group", "region"]] = ["youth", "changli"]
    new_user = pd.DataFrame(
        {"user_id": ["u9999"], "group": ["farmer"], "region": ["qinglong"], "channels": [["wechat"]],
         "push_opt_out": [False]}  # fmt: skip
    )
    path = _write(pd.concat([users, new_user], ignore_index=True), tmp_path / "users.parquet")
    report = run(city["bundle"], D1, tmp_path / "b", users=path, stream=None)
    after = W.read_pushes(tmp_path / "b", D1)
    assert not set(after.user_id) & set(opted)
    assert report["users"]["skipped"]["opted_out"] == 15 + 10
    assert "u9999" in set(after.user_id) and set(after[after.user_id == "u9999"].channel) == {"wechat"}
    assert report["users_table"] == {"users": 301, "new_users": 1, "gone_users": 0}
    segment = run(city["bundle"], D1, tmp_path / "c", users=path, group="youth", region="changli", stream=None)
    assert moved in set(W.read_pushes(tmp_path / "c", D1, kind=segment["kind"]).user_id)


# ---- warnings and one-line errors -----------------------------------------------------------


def test_a_stale_model_warns_and_a_past_night_does_not(city, tmp_path):
    import io

    late, past = io.StringIO(), io.StringIO()
    run(city["bundle"], D1 + dt.timedelta(days=30), tmp_path, stream=None, warn_stream=late)
    assert "learned from data ending 2026-06-30; --date 2026-07-31 is 31 days later" in late.getvalue()
    report = run(city["bundle"], D1 - dt.timedelta(days=20), tmp_path, stream=None, warn_stream=past)
    assert past.getvalue() == "" and report["warnings"] == []


def test_unreachable_scheduler_fails_fast(city, tmp_path, capsys):
    import time

    start = time.monotonic()
    code = cli_main(
        ["push", "--model", str(city["bundle"]), "--date", str(D1), "--out", str(tmp_path), "--quiet",
         "--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "1"]  # fmt: skip
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: cannot reach Dask scheduler tcp://127.0.0.1:9 within 1s (")
    assert time.monotonic() - start < 20


def test_a_catalogue_of_rejected_rows_fails_with_counts_per_reason(city, tmp_path, capsys):
    catalog = pd.read_parquet(city["root"] / "items.parquet")
    catalog["topics"] = [["cooking"]] * len(catalog)
    bad = _write(catalog, tmp_path / "bad.parquet")
    args = ["push", "--model", str(city["bundle"]), "--date", str(D1), "--out", str(tmp_path / "o"), "--quiet"]
    assert cli_main([*args, "--catalog", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no usable item (unknown code {len(catalog)})" in err
    assert cli_main([*args, "--catalog", str(tmp_path / "nope.parquet")]) == 2
    assert "nope.parquet: no such file" in capsys.readouterr().err
    some = pd.read_parquet(city["root"] / "items.parquet")
    some.loc[:4, "topics"] = pd.Series([["cooking"]] * 5)
    report = run(city["bundle"], D1, tmp_path / "p", catalog=_write(some, tmp_path / "some.parquet"), stream=None,
                 warn_stream=None)  # fmt: skip
    assert report["catalog_rejected"] == {"unknown code": 5}
    assert any("5 rows rejected" in w for w in report["warnings"])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--date", "9999-12-31"], "--date 9999-12-31 is out of range; valid: 1990-01-01 .. 2099-12-31"),
        (["--k", "0"], "--k 0 is out of range; valid: 1..1000"),
        (["--k", "-1"], "--k -1 is out of range; valid: 1..1000"),
        (["--k", "100000"], "--k 100000 is out of range; valid: 1..1000"),
        (["--connect-timeout", "0"], "--connect-timeout 0.0 is out of range"),
        (["--kind", "Night/ly"], "must be non-empty: letters, digits"),
    ],
)
def test_push_bad_flags_are_one_line_errors(city, tmp_path, capsys, extra, message):
    args = ["push", "--model", str(city["bundle"]), "--out", str(tmp_path), "--quiet"]
    if "--date" not in extra:
        args += ["--date", str(D1)]
    assert cli_main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("k", ["0", "-1", "100000"])
def test_campaign_bad_k_is_a_one_line_error(city, tmp_path, capsys, k):
    code = cli_main(
        ["campaign", "--model", str(city["bundle"]), "--date", str(D1), "--out", str(tmp_path), "--name", "c",
         "--topic", "ecology", "--budget", "5", "--k", k]  # fmt: skip
    )
    err = capsys.readouterr().err
    assert code == 2 and f"--k {k} is out of range; valid: 1..1000" in err and err.count("\n") == 1


def test_out_or_history_that_is_a_file_is_a_one_line_error(city, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    base = ["push", "--model", str(city["bundle"]), "--date", str(D1), "--quiet"]
    assert cli_main([*base, "--out", str(afile)]) == 2
    assert f"--out {afile} is a file, not a folder" in capsys.readouterr().err
    assert cli_main([*base, "--out", str(tmp_path / "o"), "--history", str(afile)]) == 2
    assert f"--history {afile} is a file, not a folder" in capsys.readouterr().err
    assert cli_main([*base, "--out", str(afile / "sub")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert afile.read_text() == "keep me"


def test_a_full_disk_is_a_one_line_error(city, tmp_path, monkeypatch, capsys):
    import errno

    from recsys.push import history as H

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(H, "write_bucket", full)
    code = cli_main(["push", "--model", str(city["bundle"]), "--date", str(D1), "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "No space left on device" in err and "free some space" in err
    assert not W.partition_dir(tmp_path, D1, "nightly").exists()


@pytest.mark.parametrize("reply", [b"", b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 4])
def test_a_listener_that_is_no_dask_scheduler_is_one_error_not_a_hang(reply):
    import socket
    import threading
    import time

    from recsys.push.executors import CONNECT_GRACE_S, SchedulerError, _connect

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held = []

    def serve() -> None:  # accepts, answers with `reply` (or nothing) and never speaks Dask
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            if reply:
                conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    start = time.monotonic()
    try:
        with pytest.raises(SchedulerError, match="not answer as a Dask scheduler|not as a Dask scheduler"):
            _connect(f"tcp://127.0.0.1:{server.getsockname()[1]}", 1.0)
    finally:
        server.close()
        for conn in held:
            conn.close()
    assert time.monotonic() - start < 1.0 + CONNECT_GRACE_S + 3
