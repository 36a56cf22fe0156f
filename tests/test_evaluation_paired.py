"""Paired comparisons (engine minus each baseline) and the self-contained report."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest

from evaluation_world import TAXONOMY_TOML
from recsys.evaluation import metrics as M
from recsys.evaluation import summary as S
from recsys.evaluation.report import write_report
from recsys.exceptions import ConfigError
from recsys.taxonomy import parse_taxonomy


def test_a_policy_against_itself_is_exactly_zero():
    rng = np.random.default_rng(0)
    values = rng.random((57, 3))
    diff, ci = M.paired_difference_ci(values, values.copy(), n_boot=200, seed=4)
    assert np.array_equal(diff, np.zeros(3))
    assert np.array_equal(ci, np.zeros((3, 2)))


def test_a_policy_ahead_for_every_user_has_a_strictly_positive_interval():
    rng = np.random.default_rng(1)
    base = rng.random(40)
    better = base + rng.uniform(0.001, 0.3, 40)  # ahead for every single user, by varying amounts
    diff, (lo, hi) = M.paired_difference_ci(better, base, n_boot=500, seed=0)
    assert 0 < lo <= diff <= hi
    # the unpaired intervals overlap heavily: pairing is what makes the difference visible
    a_lo, a_hi = M.bootstrap_ci(better, n_boot=500, seed=0)
    b_lo, b_hi = M.bootstrap_ci(base, n_boot=500, seed=0)
    assert a_lo < b_hi
    # behind for every user: strictly negative
    _, (lo, hi) = M.paired_difference_ci(base, better, n_boot=500, seed=0)
    assert lo <= hi < 0


def test_paired_interval_is_seeded_and_checks_shapes():
    rng = np.random.default_rng(2)
    a, b = rng.random(30), rng.random(30)
    one = M.paired_difference_ci(a, b, n_boot=100, seed=7)[1]
    assert np.array_equal(one, M.paired_difference_ci(a, b, n_boot=100, seed=7)[1])
    assert not np.array_equal(one, M.paired_difference_ci(a, b, n_boot=100, seed=8)[1])
    with pytest.raises(ConfigError, match="same \\(n_users\\[, n_metrics\\]\\) shape"):
        M.paired_difference_ci(a, b[:-1])
    diff, ci = M.paired_difference_ci(np.zeros(0), np.zeros(0))
    assert np.isnan(diff) and np.isnan(ci).all()


def _tables() -> S.EvaluationTables:
    """Four users; ``engine`` hits every relevant item at rank 1, ``popular`` lists the engine's
    lists unchanged, ``random`` never hits."""
    users = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", "u4"],
            "group": ["pupil", "elder", "elder", "pupil"],
            "region": ["town", "farm", "farm", "town"],
            "urban_rural": ["urban", "rural", "rural", "urban"],
            "warm": [True, False, True, False],
            "n_relevant": [1, 1, 1, 1],
        }
    )
    rel = {"u1": "a", "u2": "b", "u3": "c", "u4": "d"}
    rows = []
    for u, item in rel.items():
        rows += [("engine", u, 1, item), ("engine", u, 2, "e")]
        rows += [("popular", u, 1, item), ("popular", u, 2, "e")]
        rows += [("random", u, 1, "e"), ("random", u, 2, "f")]
    recs = pd.DataFrame(rows, columns=["policy", "user_id", "rank", "item_id"]).assign(score=1.0, fallback=False)
    test = pd.DataFrame({"user_id": list(rel), "item_id": list(rel.values())})
    items = pd.DataFrame(
        {
            "item_id": list("abcdef"),
            "topics": [["space"], ["health"], ["farming"], ["safety"], ["space"], ["health"]],
            "target_groups": [[]] * 6,
            "target_regions": [[]] * 6,
            "train_users": [0] * 6,
            "eligible": [True] * 6,
        }
    )
    return S.EvaluationTables(recommendations=recs, test=test, users=users, items=items)


SETTINGS = S.MetricSettings(ks=(1, 2), policies=("random", "popular", "engine"), n_users=4, n_boot=200, seed=3, headline_k=2)


def test_metrics_json_has_engine_minus_each_baseline_per_population():
    doc = S.compute_metrics(_tables(), SETTINGS)
    paired = doc["paired"]
    assert paired["reference"] == "engine" and paired["baselines"] == ["random", "popular"]
    assert {"ndcg@2", "precision@2", "recall@2", "ndcg@1"} <= set(paired["metrics"])
    same = paired["vs"]["popular"]
    worse = paired["vs"]["random"]
    for block in (same["all"], same["warm"], same["cold"], same["by_group"]["elder"], same["by_urban_rural"]["urban"]):
        for key in paired["metrics"]:
            assert block[key] == {"diff": 0.0, "ci95": [0.0, 0.0]}, key
    assert same["all"]["users"] == 4 and same["warm"]["users"] == 2
    # engine hits at rank 1 for every user, random never: +1 NDCG, +0.5 P@2, strictly positive intervals
    assert worse["all"]["ndcg@2"] == {"diff": 1.0, "ci95": [1.0, 1.0]}
    assert worse["cold"]["precision@2"]["diff"] == pytest.approx(0.5)
    assert worse["all"]["recall@2"]["ci95"][0] > 0
    # the per-policy numbers agree with the paired differences
    pols = doc["policies"]
    assert worse["all"]["ndcg@2"]["diff"] == pytest.approx(pols["engine"]["all"]["ndcg@2"] - pols["random"]["all"]["ndcg@2"])


def test_no_paired_section_without_the_engine():
    settings = S.MetricSettings(ks=(2,), policies=("random", "popular"), n_users=4, n_boot=20)
    tables = _tables()
    tables.recommendations = tables.recommendations[tables.recommendations["policy"] != "engine"]
    assert "paired" not in S.compute_metrics(tables, settings)


def test_report_opens_with_the_paired_table_and_embeds_its_images(tmp_path):
    tax = parse_taxonomy(TAXONOMY_TOML)
    doc = S.assemble(S.compute_metrics(_tables(), SETTINGS), {"mode": "temporal", "time": "T", "users": {}})
    doc = json.loads(json.dumps(doc))  # as read back from metrics.json
    paths = write_report(doc, tmp_path, tax)
    md = paths["md"].read_text(encoding="utf-8")
    first_table = md[md.index("\n|"):].split("\n\n")[0]
    header, _, *rows = first_table.strip().splitlines()
    assert header.startswith("| 本引擎减去 engine minus | 全部 all (n=4) | 老用户 warm (n=2) | 新用户 cold (n=2) |")
    assert "老人 elder (n=2)" in header and "农村 farm (n=2)" in header  # several groups/regions: one column each
    assert rows[0].startswith("| 随机 random | +1.0000 [+1.0000, +1.0000] ▲")
    assert rows[1].startswith("| 全时热门 popular (all-time) | +0.0000 [+0.0000, +0.0000] ≈")
    assert md.index("本引擎对比各基线") < md.index("核心结果 / Headline")
    page = paths["html"].read_text(encoding="utf-8")
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) >= 4  # every plot is in the page ...
    for src in sources:  # ... as a data URI, never a relative file
        assert src.startswith("data:image/png;base64,"), src[:40]
        assert base64.b64decode(src.split(",", 1)[1])[:4] == b"\x89PNG"
    assert (tmp_path / "plots" / "by_region.png").is_file()  # the PNG files are kept too
    assert "plots/by_region.png" in md
    assert page.index("本引擎对比各基线") < page.index("<table><tr><th>策略 Policy")


def test_target_checks_skip_a_family_with_one_code():
    from recsys.evaluation.report import target_checks

    tables = _tables()
    tables.users["group"] = "pupil"  # one audience group, as in a public log without demographics
    lines = target_checks(S.compute_metrics(tables, SETTINGS), 2, min_users=1)
    names = [line.split(" ")[0] for line in lines]
    assert names == ["all", "warm", "cold", "by_region/farm", "by_region/town"]


def test_report_leaves_out_one_code_families(tmp_path):
    tables = _tables()
    tables.users["group"] = "pupil"
    doc = S.assemble(S.compute_metrics(tables, SETTINGS), {"mode": "temporal", "time": "T", "users": {}})
    paths = write_report(doc, tmp_path, parse_taxonomy(TAXONOMY_TOML))
    md = paths["md"].read_text(encoding="utf-8")
    assert "按人群 / By audience group" not in md and "by_group" not in paths
    assert "按地区 / By region" in md and "by_region" in paths  # two regions: kept
    assert "A single code only (audience group: pupil)" in md
    assert "pupil" in doc["policies"]["engine"]["by_group"]  # metrics.json keeps the block
