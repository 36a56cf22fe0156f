"""--force writes beside others' files and never over one; validate replaces only its own quarantine.

recsys.io.publish_dir replaces the entries its marker says this kind wrote and refuses, changing
nothing, when an entry of a name it writes is someone else's. ``recsys validate`` without ``--out``
writes ``quarantine.parquet`` into ``--data`` only over a quarantine it wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.cli import main as cli_main
from recsys.exceptions import ConfigError
from recsys.io import OUTPUT_MARKER, prepare_output_dir, publish_dir
from recsys.schema import write_quarantine
from recsys.validation import is_quarantine_file

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "synthetic" / "sample"


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
    }


def _staged(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / f"staged-{len(list(tmp_path.glob('staged-*')))}"
    folder.mkdir()
    for name, text in files.items():
        (folder / name.replace("_", ".")).write_text(text)
    return folder


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ---- publish_dir / staging ------------------------------------------------------------------------


def test_publish_refuses_to_replace_a_same_named_file_it_did_not_write(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "report.md").write_text("my own notes")
    (dest / "notes.txt").write_text("mine too")
    before = _tree(dest)
    staged = _staged(tmp_path, report_md="engine report", summary_json="{}")
    with pytest.raises(ConfigError, match=r"out/report\.md: exists and was not written by recsys demand.*"
                                          r"nothing was changed: move it away"):
        publish_dir(staged, dest, "demand")
    assert _tree(dest) == before  # nothing replaced, nothing added, no marker
    # the same with only the clashing file there (the branch that replaced the whole folder)
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "report.md").write_text("my own notes")
    with pytest.raises(ConfigError, match="report.md: exists and was not written by recsys demand"):
        publish_dir(_staged(tmp_path, report_md="engine report"), alone, "demand")
    assert _tree(alone) == {"report.md": hashlib.sha256(b"my own notes").hexdigest()}


def test_publish_replaces_what_its_marker_records_and_keeps_the_rest(tmp_path):
    dest = tmp_path / "out"
    publish_dir(_staged(tmp_path, report_md="v1", old_txt="v1"), dest, "demand")
    (dest / "notes.txt").write_text("mine")
    publish_dir(_staged(tmp_path, report_md="v2"), dest, "demand")
    assert (dest / "report.md").read_text() == "v2"  # ours: replaced
    assert not (dest / "old.txt").exists()  # ours and not written again: removed
    assert (dest / "notes.txt").read_text() == "mine"
    assert json.loads((dest / OUTPUT_MARKER).read_text())["entries"] == ["report.md"]


def test_a_folder_recognised_without_a_marker_is_still_rewritten(tmp_path):
    dest = tmp_path / "old-engine"
    dest.mkdir()
    (dest / "metrics.json").write_text("old")
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="metrics.json: exists and was not written"):
        publish_dir(_staged(tmp_path, metrics_json="new"), dest, "evaluate")
    publish_dir(_staged(tmp_path, metrics_json="new"), dest, "evaluate", recognised=True)
    assert (dest / "metrics.json").read_text() == "new" and (dest / "notes.txt").read_text() == "mine"
    target = prepare_output_dir(dest, "evaluate")  # now by its marker
    assert not target.recognised


def test_force_with_known_names_refuses_before_any_work_and_staging_changes_nothing(tmp_path):
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "report.md").write_text("my own notes")
    with pytest.raises(ConfigError, match=r"d/report\.md: exists and was not written by recsys demand"):
        prepare_output_dir(dest, "demand", force=True, writes=["report.md", "summary.json"])
    target = prepare_output_dir(dest, "demand", force=True)  # names not given: refused when publishing
    with pytest.raises(ConfigError, match="report.md: exists and was not written"):
        with target.staging() as staged:
            staged.mkdir()
            (staged / "report.md").write_text("engine report")
    assert _tree(dest) == {"report.md": hashlib.sha256(b"my own notes").hexdigest()}
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # the staging folder is gone too


def test_without_force_the_message_promises_nothing_is_replaced(tmp_path):
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"pass --force to write beside those files \(none is replaced or deleted\)"):
        prepare_output_dir(dest, "demand")


# ---- validate's quarantine --------------------------------------------------------------------------


@pytest.fixture()
def data(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for kind in ("users", "items", "events"):
        shutil.copy(SAMPLE / f"{kind}.parquet", folder / f"{kind}.parquet")
    return folder


def test_validate_without_out_refuses_a_quarantine_it_did_not_write_before_any_work(data, capsys, monkeypatch):
    import recsys.validation as V

    def no_work(*args, **kwargs):
        raise AssertionError("validated before refusing")

    monkeypatch.setattr(V, "validate", no_work)
    mine = data / "quarantine.parquet"
    pd.DataFrame({"user_id": ["u1"], "why": ["I flagged them"]}).to_parquet(mine)
    before = _tree(data)
    assert cli_main(["validate", "--data", str(data)]) == 2
    err = _one_line_error(capsys)
    assert f"--data {data}: {mine} exists and is not a quarantine recsys validate wrote" in err
    assert "move it away, or pass --out DIR" in err
    assert _tree(data) == before
    mine.unlink()
    mine.write_text("plain text, not Parquet")
    before = _tree(data)
    assert cli_main(["validate", "--data", str(data)]) == 2
    _one_line_error(capsys)
    assert _tree(data) == before


def test_validate_replaces_its_own_quarantine_in_data(data, capsys):
    assert cli_main(["validate", "--data", str(data)]) == 0
    first = data / "quarantine.parquet"
    assert is_quarantine_file(first)
    # the next run recognises the quarantine (its columns) and replaces it
    stamp = first.stat().st_mtime_ns
    os.utime(first, ns=(stamp - 10**9, stamp - 10**9))
    assert cli_main(["validate", "--data", str(data)]) == 0
    assert first.stat().st_mtime_ns != stamp - 10**9
    capsys.readouterr()


def test_is_quarantine_file_wants_exactly_the_quarantine_columns(tmp_path):
    good = pd.DataFrame({"table": ["events"], "row": [3], "reason": ["unknown user"], "detail": ["x"],
                         "record": ["{}"]})  # fmt: skip
    write_quarantine(good, tmp_path / "q.parquet")  # as validate writes it
    assert is_quarantine_file(tmp_path / "q.parquet")
    pa.table({"table": ["events"], "row": [3]}).to_pandas().to_parquet(tmp_path / "fewer.parquet", index=False)
    assert not is_quarantine_file(tmp_path / "fewer.parquet")
    table = pq.read_table(tmp_path / "q.parquet")
    pq.write_table(table.append_column("extra", pa.array([1])), tmp_path / "more.parquet")
    assert not is_quarantine_file(tmp_path / "more.parquet")
    pq.write_table(table.set_column(1, "row", pa.array(["3"])), tmp_path / "types.parquet")
    assert not is_quarantine_file(tmp_path / "types.parquet")
    (tmp_path / "link.parquet").symlink_to(tmp_path / "q.parquet")
    assert not is_quarantine_file(tmp_path / "link.parquet")  # validate never made the link
    (tmp_path / "dir.parquet").mkdir()
    assert not is_quarantine_file(tmp_path / "dir.parquet")


def test_validate_out_with_force_refuses_a_users_table_it_did_not_write(data, tmp_path, capsys):
    out = tmp_path / "clean"
    out.mkdir()
    (out / "users.parquet").write_text("my own users")
    assert cli_main(["validate", "--data", str(data), "--out", str(out), "--force"]) == 2
    err = _one_line_error(capsys)
    assert f"{out / 'users.parquet'}: exists and was not written by recsys validate" in err
    assert _tree(out) == {"users.parquet": hashlib.sha256(b"my own users").hexdigest()}


def test_evaluate_recognises_an_older_folder_of_its_own_by_content_only(tmp_path):
    from recsys.evaluation.job import is_evaluation_dir
    from recsys.evaluation.report import REPORT_TITLE

    mine = tmp_path / "results"
    mine.mkdir()
    (mine / "metrics.json").write_text(json.dumps({"accuracy": 0.9}))
    (mine / "report.md").write_text("# My own report\n")
    assert not is_evaluation_dir(mine)  # someone's files of those names: never replaced as evaluate's
    old = tmp_path / "old_eval"
    old.mkdir()
    (old / "metrics.json").write_text(json.dumps({"k": [10], "split": {}, "policies": {}}))
    (old / "report.md").write_text(f"# {REPORT_TITLE}\n\n## 概览 / Overview\n")
    assert is_evaluation_dir(old)
    (old / "metrics.json").write_text("{not json")
    assert not is_evaluation_dir(old)


def test_a_folder_of_someones_models_alone_is_not_an_older_demo(tmp_path):
    from recsys.demo import _is_demo

    mine = tmp_path / "project"
    (mine / "models" / "v1").mkdir(parents=True)
    (mine / "models" / "v1" / "weights.bin").write_text("mine")
    assert not _is_demo(mine)


def test_train_refuses_someones_latest_before_training(tmp_path, capsys):
    from recsys.cli import main

    mine = tmp_path / "someone"
    (mine / "latest").mkdir(parents=True)
    (mine / "latest" / "x.txt").write_text("keep")
    (mine / "thesis.docx").write_text("mine")
    # the data folder does not exist: the refusal comes first, before any reading or training
    code = main(["train", "--data", str(tmp_path / "nope"), "--out", str(mine), "--force"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and "is not the link recsys train moves" in err, err
    assert sorted(p.name for p in mine.iterdir()) == ["latest", "thesis.docx"]
    assert (mine / "latest" / "x.txt").read_text() == "keep"
