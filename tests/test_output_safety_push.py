"""Push and campaign check --out and --history before any work, and keep accepting their own folder.

A push output folder is long-lived (one partition per night, campaigns and targeted runs beside
them), so a folder a push wrote is accepted, by its marker or, from an engine before the marker,
by its layout; a new or empty folder is accepted; anything else is refused with one line (push has
no --force). Runs on the tiny test city (tests/push_city.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import push_city  # noqa: E402

from recsys.cli import main as cli_main  # noqa: E402
from recsys.io import OUTPUT_MARKER  # noqa: E402
from recsys.push import writer as W  # noqa: E402
from recsys.push.folders import OLD_LIFT_DIR, is_push_history, is_push_output  # noqa: E402

D1 = push_city.DAY
D2 = D1 + dt.timedelta(days=1)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return push_city.trained_city(tmp_path_factory) / "models" / "latest"


def _tree(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` with its content's hash (folders: 'dir')."""
    return {
        str(p.relative_to(folder)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
    }


def _push(bundle: Path, out: Path, *extra: str, day: dt.date = D1) -> list[str]:
    return ["push", "--model", str(bundle), "--date", str(day), "--out", str(out), "--quiet", *extra]


def _campaign(bundle: Path, out: Path, *extra: str) -> list[str]:
    return ["campaign", "--model", str(bundle), "--date", str(D1), "--out", str(out), "--name", "heat",
            "--topic", "ecology", "--budget", "10", "--quiet", *extra]  # fmt: skip


def _refused(capsys, argv: list[str], *needles: str) -> str:
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def _mine(tmp_path: Path) -> Path:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my own notes")
    return folder


# ---- refused -----------------------------------------------------------------------------------


def test_push_and_campaign_refuse_the_current_folder(bundle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("x")
    before = _tree(tmp_path)
    _refused(capsys, _push(bundle, Path(".")), "--out .", "refusing to write into the current folder")
    _refused(capsys, _campaign(bundle, Path(".")), "--out .", "refusing to write into the current folder")
    _refused(capsys, _push(bundle, tmp_path / "p", "--history", "."), "--history .", "the current folder")
    assert _tree(tmp_path) == before  # no _lock, _work, _history or partition beside keep.txt


def test_a_folder_holding_other_files_is_refused_as_out_or_history_before_any_work(bundle, tmp_path, capsys):
    mine = _mine(tmp_path)
    before = _tree(mine)
    # a model that does not exist: the folder is refused first, so no work (not even opening the bundle) ran
    nowhere = tmp_path / "no-model"
    for argv in (_push(nowhere, mine), _campaign(nowhere, mine)):
        _refused(capsys, argv, f"--out {mine}: folder is not empty (notes.txt)", "recsys push or campaign",
                 "there is no --force")  # fmt: skip
    fresh = tmp_path / "fresh"
    for argv in (_push(nowhere, fresh, "--history", str(mine)), _campaign(nowhere, fresh, "--history", str(mine))):
        _refused(capsys, argv, f"--history {mine}: folder is not empty (notes.txt)", "push history")
    assert _tree(mine) == before
    assert not fresh.exists()


def test_history_may_not_be_the_output_folder_or_another_push_output(bundle, tmp_path, capsys):
    out = tmp_path / "pushes"
    assert cli_main(_push(bundle, out)) == 0
    before = _tree(out)
    # a push output used as history: the history's commit would replace that folder's partitions
    _refused(capsys, _push(bundle, tmp_path / "other", "--history", str(out)), f"--history {out}")
    _refused(capsys, _push(bundle, out, "--history", str(out)), f"--history {out} is the --out folder")
    assert _tree(out) == before
    assert not (tmp_path / "other").exists()
    # nested either way: pandas would read the history's files as push rows (or the pushes in the history)
    _refused(capsys, _push(bundle, out, "--history", str(out / "hist")), "is inside the --out folder")
    _refused(capsys, _push(bundle, tmp_path / "h" / "p", "--history", str(tmp_path / "h")), "is inside the --history")
    assert not (tmp_path / "h").exists()
    assert _tree(out) == before
    # a history named _… inside --out is skipped by those readers (the default is <out>/_history)
    assert cli_main(_push(bundle, out, "--history", str(out / "_nights"))) == 0
    assert len(pd.read_parquet(out)) == len(W.read_pushes(out))


# ---- accepted: new, empty, and the push's own folder, night after night --------------------------------


def test_the_push_folder_accepts_nights_reruns_targeted_runs_and_campaigns(bundle, tmp_path, capsys):
    out = tmp_path / "pushes"
    out.mkdir()  # empty: accepted
    assert cli_main(_push(bundle, out)) == 0
    assert cli_main(_push(bundle, out)) == 0  # a re-run of the night
    assert cli_main(_push(bundle, out, day=D2)) == 0  # the next night
    assert cli_main(_push(bundle, out, "--region", "haigang")) == 0  # a targeted run
    assert cli_main(_campaign(bundle, out)) == 0
    capsys.readouterr()
    marker = json.loads((out / OUTPUT_MARKER).read_text())
    assert marker["kind"] == "push"
    assert {"_history", "_lock", "_work", f"date={D1}", f"date={D2}"} <= set(marker["entries"])
    kinds = set(W.read_pushes(out)["kind"])
    assert "nightly" in kinds and "heat" in kinds and any(k.startswith("segment-") for k in kinds)
    # the marker is no Parquet file: reading the whole folder still reads push rows only
    assert len(pd.read_parquet(out)) == len(W.read_pushes(out))


def test_a_history_of_earlier_pushes_is_accepted_and_stays_one(bundle, tmp_path, capsys):
    history = tmp_path / "history"
    assert cli_main(_push(bundle, tmp_path / "a", "--history", str(history))) == 0
    assert is_push_history(history)
    assert cli_main(_push(bundle, tmp_path / "b", "--history", str(history), day=D2)) == 0
    assert cli_main(_campaign(bundle, tmp_path / "a", "--history", str(history))) == 0
    capsys.readouterr()
    assert (history / f"date={D1}").is_dir() and (history / f"date={D2}").is_dir()
    assert not (tmp_path / "a" / "_history").exists()  # the history went where it was told
    assert "_history" not in json.loads((tmp_path / "a" / OUTPUT_MARKER).read_text())["entries"]


def test_a_folder_an_older_push_wrote_without_a_marker_is_recognised(bundle, tmp_path, capsys):
    out = tmp_path / "pushes"
    assert cli_main(_push(bundle, out)) == 0
    (out / OUTPUT_MARKER).unlink()  # what an engine before the marker left
    (out / OLD_LIFT_DIR).mkdir()  # and its `recsys lift` beside the pushes
    assert is_push_output(out)
    assert cli_main(_push(bundle, out, day=D2)) == 0
    capsys.readouterr()
    assert json.loads((out / OUTPUT_MARKER).read_text())["kind"] == "push"  # recorded from now on
    assert {str(d) for d in W.read_pushes(out)["date"]} == {str(D1), str(D2)}


# ---- the layout recognisers ---------------------------------------------------------------------------


def _layout(root: Path) -> Path:
    (root / "_history" / f"date={D1}" / "kind=nightly").mkdir(parents=True)
    (root / "_work" / f"date={D1}").mkdir(parents=True)
    (root / f"date={D1}" / "kind=nightly" / "channel=wechat").mkdir(parents=True)
    (root / f"date={D1}" / "kind=nightly" / W.MANIFEST_FILE).write_text("{}")
    (root / "_lock").write_text("")
    return root


def test_is_push_output_accepts_only_the_push_layout(tmp_path):
    assert is_push_output(_layout(tmp_path / "ok"))
    (tmp_path / "ok" / f".date={D2}.tmp-{os.getpid()}-0123abcd").mkdir()  # a write in progress
    assert is_push_output(tmp_path / "ok")

    one_more = _layout(tmp_path / "notes")
    (one_more / "notes.txt").write_text("mine")
    assert not is_push_output(one_more)

    inside = _layout(tmp_path / "inside")
    (inside / f"date={D1}" / "notes.txt").write_text("mine")  # a date= folder holding someone's file
    assert not is_push_output(inside)

    lookalike = _layout(tmp_path / "lookalike")
    (lookalike / "date=yesterday").mkdir()
    assert not is_push_output(lookalike)

    other = _layout(tmp_path / "other")
    (other / OUTPUT_MARKER).write_text(json.dumps({"kind": "demand", "entries": []}))
    assert not is_push_output(other)  # another command's marker: its folder

    lock_is_a_folder = tmp_path / "lockdir"
    (lock_is_a_folder / "_lock").mkdir(parents=True)
    assert not is_push_output(lock_is_a_folder)


def test_is_push_history_needs_its_store_file_beside_date_folders(tmp_path):
    history = tmp_path / "h"
    (history / f"date={D1}" / "kind=nightly").mkdir(parents=True)
    assert not is_push_history(history)  # date= folders alone: could be a push output's partitions
    (history / "_store.json").write_text(json.dumps({"format": 1, "buckets": 16}))
    (history / "_lock").write_text("")
    assert is_push_history(history)
    (history / "notes.txt").write_text("mine")
    assert not is_push_history(history)
    only_lock = tmp_path / "killed"
    only_lock.mkdir()
    (only_lock / "_lock").write_text("")  # a first run killed before the store was opened
    assert is_push_history(only_lock)
    assert not is_push_history(_layout(tmp_path / "out"))  # a push output folder is no history


def test_an_older_push_folder_with_its_history_inside_under_another_name_is_its_own(tmp_path):
    out = _layout(tmp_path / "pushes")
    history = out / "history"  # an older engine's run: --history pushes/history
    (history / f"date={D1}" / "kind=nightly").mkdir(parents=True)
    (history / "_store.json").write_text(json.dumps({"format": 1, "buckets": 16}))
    assert not is_push_output(out)  # without the run's --history: a folder it cannot place
    assert is_push_output(out, history)
    assert not is_push_output(out, tmp_path / "elsewhere")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert not is_push_output(out, tmp_path / "other")  # not a push history: someone's folder
