"""Holds in the push: the nightly run and campaigns never push a held item (--holds / [push] holds)."""

from __future__ import annotations

import pandas as pd
import push_city
import pytest
import tomli_w

from recsys import holds as H
from recsys.cli import main
from recsys.exceptions import ConfigError
from recsys.push import run_campaign, run_nightly
from recsys.push.writer import read_pushes

DAY = push_city.DAY


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = push_city.trained_city(tmp_path_factory)
    plain = tmp_path_factory.mktemp("plain")
    run_nightly(root / "models" / "latest", DAY, plain, stream=None, warn_stream=None)
    pushed = read_pushes(plain, DAY)["item_id"].value_counts()
    return root, pushed


def test_nightly_push_leaves_held_items_out(city, tmp_path):
    root, pushed = city
    top = list(pushed.index[:2])  # the two items pushed most without holds
    holds = tmp_path / "state"
    for item in top:
        H.add_hold(holds, item, reason="burst of reports", by="monitor")
    out = tmp_path / "out"
    report = run_nightly(
        root / "models" / "latest", DAY, out, holds=holds, stream=None, warn_stream=None
    )
    rows = read_pushes(out, DAY)
    assert report["rows"] > 0 and not set(top) & set(rows["item_id"])
    # the same through [push] holds in a config file, and the CLI's --holds
    cfg = tmp_path / "push.toml"
    cfg.write_text(
        tomli_w.dumps({"push": {**push_city.TRAIN_CONFIG["push"], "holds": str(holds)}})
    )
    run_nightly(
        root / "models" / "latest",
        DAY,
        tmp_path / "cfg",
        config_path=cfg,
        stream=None,
        warn_stream=None,
    )
    assert not set(top) & set(read_pushes(tmp_path / "cfg", DAY)["item_id"])
    args = [
        "push",
        "--model",
        str(root / "models" / "latest"),
        "--date",
        str(DAY),
        "--out",
        str(tmp_path / "cli"),
    ]
    assert main(args + ["--holds", str(holds), "--quiet"]) == 0
    assert not set(top) & set(read_pushes(tmp_path / "cli", DAY)["item_id"])
    with pytest.raises(ConfigError, match="holds folder .* not found"):
        run_nightly(
            root / "models" / "latest",
            DAY,
            tmp_path / "x",
            holds=tmp_path / "nope",
            stream=None,
        )


def test_a_campaign_refuses_a_held_item_and_skips_held_topic_items(city, tmp_path):
    root, pushed = city
    item = pushed.index[0]
    holds = tmp_path / "state"
    H.add_hold(holds, item, reason="wrong claim", by="wang")
    bundle = root / "models" / "latest"
    with pytest.raises(
        H.HoldError, match=rf"item '{item}' is on hold .*`recsys holds release {item} "
    ):
        run_campaign(
            bundle,
            DAY,
            tmp_path / "c",
            name="c1",
            items=[item],
            budget=20,
            holds=holds,
            stream=None,
        )
    args = [
        "campaign",
        "--name",
        "c1",
        "--item",
        item,
        "--budget",
        "20",
        "--model",
        str(bundle),
        "--date",
        str(DAY),
        "--out",
        str(tmp_path / "c"),
        "--holds",
        str(holds),
    ]
    assert main(args) == 2
    items = push_city.tables()[1].set_index("item_id")
    topic = items.loc[item, "topics"][0]
    report = run_campaign(
        bundle,
        DAY,
        tmp_path / "t",
        name="t1",
        topic=topic,
        budget=200,
        holds=holds,
        stream=None,
    )
    rows = (
        read_pushes(tmp_path / "t", DAY, kind="t1")
        if report["rows"]
        else pd.DataFrame({"item_id": []})
    )
    assert item not in set(rows["item_id"])
    # without the hold the item is pushed by the same campaign (the test could fail)
    free = run_campaign(
        bundle, DAY, tmp_path / "f", name="f1", items=[item], budget=20, stream=None
    )
    assert free["rows"] > 0
