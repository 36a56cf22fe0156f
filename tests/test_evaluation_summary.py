"""metrics.json from the output tables: hand-checked numbers, recomputation from files, the report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from evaluation_world import TAXONOMY_TOML
from recsys.evaluation import summary as S
from recsys.evaluation.report import write_report
from recsys.exceptions import SchemaError
from recsys.io import write_json, write_parquet
from recsys.taxonomy import parse_taxonomy


def _tables(with_truth: bool = True) -> S.EvaluationTables:
    rows = [
        # policy, user, rank, item, true_prob
        ("engine", "u1", 1, "a", 0.5),
        ("engine", "u1", 2, "b", 0.25),
        ("engine", "u2", 1, "c", 0.5),
        ("engine", "u2", 2, "a", 0.25),
        ("engine", "u3", 1, "b", 0.1),
        ("oracle", "u1", 1, "a", 0.5),
        ("oracle", "u1", 2, "d", 0.5),
        ("oracle", "u2", 1, "c", 0.5),
        ("oracle", "u2", 2, "d", 0.5),
        ("oracle", "u3", 1, "d", 0.4),
        ("oracle", "u3", 2, "b", 0.1),
    ]
    recs = pd.DataFrame(rows, columns=["policy", "user_id", "rank", "item_id", "true_prob"])
    recs["score"] = 1.0 / recs["rank"]
    recs["fallback"] = False
    if not with_truth:
        recs = recs.drop(columns="true_prob")
    test = pd.DataFrame({"user_id": ["u1", "u2", "u2"], "item_id": ["b", "c", "x"]})
    users = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3"],
            "group": ["pupil", "elder", "elder"],
            "region": ["town", "farm", "farm"],
            "urban_rural": ["urban", "rural", "rural"],
            "warm": [True, False, True],
            "n_relevant": [1, 2, 0],
        }
    )
    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d"],
            "topics": [["space"], ["space", "health"], ["farming"], ["safety"]],
            "target_groups": [[], [], ["elder"], []],
            "target_regions": [[], ["farm"], [], []],
            "train_users": [2, 0, 1, 0],
            "eligible": [True, True, True, True],
        }
    )
    return S.EvaluationTables(recommendations=recs, test=test, users=users, items=items)


SETTINGS = S.MetricSettings(ks=(1, 2), policies=("engine", "oracle"), n_users=3, n_boot=50, seed=1, headline_k=2)


def test_numbers_by_hand():
    doc = S.compute_metrics(_tables(), SETTINGS)
    eng = doc["policies"]["engine"]
    # evaluated users: u1 (b relevant, hit at rank 2), u2 (c, x relevant; hit at rank 1); u3 has none
    assert eng["all"]["users"] == 2
    assert eng["all"]["precision@2"] == pytest.approx((0.5 + 0.5) / 2)
    assert eng["all"]["precision@1"] == pytest.approx((0 + 1) / 2)
    assert eng["all"]["recall@2"] == pytest.approx((1 + 0.5) / 2)
    assert eng["all"]["mrr@2"] == pytest.approx((0.5 + 1) / 2)
    assert eng["warm"]["users"] == 1 and eng["cold"]["users"] == 1
    assert eng["by_group"]["elder"]["precision@1"] == 1.0
    assert set(eng["by_region"]) == {"farm", "town"}
    assert set(eng["by_urban_rural"]) == {"urban", "rural"}
    # coverage over the evaluated users' lists: {a, b, c} of 4 eligible items
    assert eng["all"]["coverage@2"] == 0.75
    # novelty of u1's list (a: 2 users, b: 0 users, N = 3): mean(-log2(3/4), -log2(1/4))
    u1 = (-np.log2(3 / 4) + 2.0) / 2
    u2 = (-np.log2(2 / 4) - np.log2(3 / 4)) / 2
    assert eng["all"]["novelty@2"] == pytest.approx((u1 + u2) / 2)
    lo, hi = eng["all"]["ci95"]["precision@1"]
    assert 0.0 <= lo <= 0.5 <= hi <= 1.0
    # simulated over all 3 listed users x k slots (u3's missing second slot counts 0)
    assert eng["simulated"]["engagements_per_push@2"] == pytest.approx((0.5 + 0.25 + 0.5 + 0.25 + 0.1) / 6)
    assert doc["oracle_ratio"] == pytest.approx((1.6 / 6) / (2.5 / 6))
    # exposure at k=2 over all listed users' slots: b targets farm (2 of 5 engine slots)
    assert eng["exposure"]["by_target_region"] == pytest.approx({"*": 3 / 5, "farm": 2 / 5})
    assert eng["fallback"] == {"policy": "segment_popular", "users": 0, "evaluated_users": 0}


def test_recompute_from_files_reproduces_metrics(tmp_path):
    tables = _tables()
    doc = S.assemble(S.compute_metrics(tables, SETTINGS), {"time": "2026-06-20T00:00:00+00:00"})
    write_parquet(tables.recommendations, tmp_path / S.RECOMMENDATIONS_FILE)
    write_parquet(tables.test, tmp_path / S.TEST_FILE)
    write_parquet(tables.users, tmp_path / S.USERS_FILE)
    write_parquet(tables.items, tmp_path / S.ITEMS_FILE)
    write_json(doc, tmp_path / S.METRICS_FILE)
    written = json.loads((tmp_path / S.METRICS_FILE).read_text(encoding="utf-8"))
    again = json.loads(json.dumps(S.recompute_metrics(tmp_path)))
    assert again == written
    # an honest check: a changed table gives changed numbers
    tables.test.loc[0, "item_id"] = "a"
    write_parquet(tables.test, tmp_path / S.TEST_FILE)
    assert json.loads(json.dumps(S.recompute_metrics(tmp_path))) != written


def test_errors(tmp_path):
    with pytest.raises(SchemaError, match="metrics.json: missing"):
        S.recompute_metrics(tmp_path)
    write_json({"k": [1]}, tmp_path / S.METRICS_FILE)
    with pytest.raises(SchemaError, match="without settings"):
        S.recompute_metrics(tmp_path)
    bad = _tables()
    bad.items = bad.items.drop(columns="eligible")
    with pytest.raises(SchemaError, match="items table lacks column\\(s\\) eligible"):
        S.compute_metrics(bad, SETTINGS)
    with pytest.raises(SchemaError, match="unknown policies \\['oracle'\\]"):
        S.compute_metrics(_tables(), S.MetricSettings(ks=(1,), policies=("engine",), n_users=3))
    with pytest.raises(SchemaError, match="needs the ground truth"):
        S.simulated_engagements(_tables(with_truth=False).recommendations, 3, 2)


def test_report_has_bilingual_headings_chinese_names_and_plots(tmp_path):
    tax = parse_taxonomy(TAXONOMY_TOML)
    doc = S.assemble(S.compute_metrics(_tables(), SETTINGS), {"mode": "temporal", "time": "T", "users": {}})
    paths = write_report(doc, tmp_path, tax)
    page = paths["html"].read_text(encoding="utf-8")
    md = paths["md"].read_text(encoding="utf-8")
    for text in ("核心结果 / Headline", "按地区 / By region", "农村 farm", "老人 elder", "理想上限", "指标定义 / Definitions"):
        assert text in page
    assert "按人群 / By audience group" in md and "plots/by_region.png" in md
    for name in ("metric_vs_k", "by_group", "by_region", "warm_cold", "simulated"):
        assert paths[name].stat().st_size > 1000 and paths[name].read_bytes()[:4] == b"\x89PNG"
    # without ground truth: no simulated section or plot
    doc = S.assemble(S.compute_metrics(_tables(with_truth=False), SETTINGS), {})
    paths = write_report(doc, tmp_path / "plain", tax)
    assert "simulated" not in paths and "模拟推送 / Simulated" not in paths["html"].read_text(encoding="utf-8")


def test_target_checks_name_what_the_engine_does_not_beat():
    from recsys.evaluation.report import target_checks

    doc = S.compute_metrics(_tables(), SETTINGS)
    # the oracle is not a rival: only the simulated ratio is checked
    assert target_checks(doc, 2, min_users=1) == ["simulated / oracle = 0.640 (✗ target ≥ 0.8)"]
    two = json.loads(json.dumps(doc))
    two["policies"]["popular"] = json.loads(json.dumps(doc["policies"]["engine"]))
    two["policies"]["popular"]["all"]["precision@2"] += 0.1  # ahead of the engine
    two["policies"]["popular"]["all"]["ndcg@2"] += 0.1
    two["policies"]["random"] = json.loads(json.dumps(doc["policies"]["engine"]))  # a tie is not a win
    two["policies"]["random"]["all"]["precision@2"] -= 0.1
    lines = target_checks(two, 2, min_users=1)
    assert lines[0] == "all (n=2): ✗ 未胜出 not ahead of: popular precision@2, popular ndcg@2, random ndcg@2"
    assert lines[1].startswith("warm (n=1): ") and lines[2].startswith("cold (n=1): ")
    assert [line.split(" ")[0] for line in lines[3:7]] == ["by_group/elder", "by_group/pupil", "by_region/farm", "by_region/town"]
    assert len(target_checks(two, 2, min_users=100)) == 4  # small groups and regions left out
