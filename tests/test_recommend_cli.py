"""``recsys recommend`` / ``recsys profile`` on the command line: the JSON form of an empty list,
and a folder that is not a model bundle."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from push_city import SMALL_TOML

from recsys import bundle
from recsys.cli import main
from recsys.exceptions import ArtifactError
from recsys.synthetic import generate_city, write_city

SMALL = SMALL_TOML


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny city, its trained bundle, and a catalogue of the same items all for another group than u001's."""
    base = tmp_path_factory.mktemp("recommend_cli")
    write_city(generate_city(n_users=300, n_items=120, days=20, seed=1), base / "city")
    (base / "small.toml").write_text(SMALL)
    assert main(["train", "--data", str(base / "city"), "--out", str(base / "models"),
                 "--config", str(base / "small.toml")]) == 0
    items = pd.read_parquet(base / "city" / "items.parquet")
    users = pd.read_parquet(base / "city" / "users.parquet").set_index("user_id")
    other = next(g for g in users["group"].unique() if g != users.loc["u001", "group"])
    items.assign(target_groups=[[other]] * len(items)).to_parquet(base / "elsewhere.parquet", index=False)
    return base


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_json_lines_of_a_list(world, capsys):
    capsys.readouterr()
    rc, out, err = _run(capsys, ["recommend", "u001", "--model", str(world / "models" / "latest"), "--k", "5", "--json"])
    rows = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and [r["rank"] for r in rows] == [1, 2, 3, 4, 5] and err == ""
    assert all(set(r) == {"rank", "item_id", "score", "reasons"} for r in rows)


def test_no_eligible_item_is_said_in_both_forms(world, capsys):
    capsys.readouterr()
    argv = ["recommend", "u001", "--model", str(world / "models" / "latest"), "--catalog", str(world / "elsewhere.parquet")]
    rc, out, err = _run(capsys, argv)
    assert rc == 0 and "0 item(s)" in out and "(only 0 eligible, distinct item(s) for this request)" in out
    # JSON lines, one object per item: no item is no line, and the same note on stderr (it was silent)
    rc, out, err = _run(capsys, [*argv, "--json"])
    assert rc == 0 and out == ""
    assert err.strip() == "(only 0 eligible, distinct item(s) for this request)"


@pytest.mark.parametrize("command", ["recommend", "profile"])
def test_a_data_folder_is_not_a_model_bundle(world, capsys, command, tmp_path):
    capsys.readouterr()
    for folder, why in ((world / "city", "a data folder written by recsys generate"), (tmp_path, "no manifest.json")):
        rc, out, err = _run(capsys, [command, "u001", "--model", str(folder)])
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
        assert f"{folder}: not a model bundle" in lines[0] and why in lines[0] and "recsys train" in lines[0]
        assert "format version" not in lines[0] and "retrain" not in lines[0]


def test_read_manifest_tells_a_foreign_manifest_from_an_old_bundle(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"version": 1, "files": {}}))
    with pytest.raises(ArtifactError, match=r"not a model bundle: its manifest\.json has no format_version; give a folder"):
        bundle.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": "2", "files": {}}))
    with pytest.raises(ArtifactError, match=r"bundle format version '2'.*retrain"):
        bundle.read_manifest(tmp_path)
