"""End to end: a minimal-columns data set with its own taxonomy, through the job and the CLI."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation_world import make_world, write_world
from recsys.cli import main as cli
from recsys.config import EngineConfig, RankingConfig, load_config
from recsys.evaluation.run import EvaluationSettings, evaluate
from recsys.evaluation.summary import recompute_metrics
from recsys.evaluation.tune import BLEND_PARAMS, TuneSettings, draw_blend
from recsys.exceptions import ConfigError
from recsys.schema import validate
from recsys.taxonomy import load_taxonomy

END = "2026-07-01T00:00:00Z"
METRIC_KEYS = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr", "coverage", "diversity", "novelty")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder, tax_path, truth = write_world(tmp_path_factory.mktemp("world") / "data", n_users=220, n_items=50)
    return folder, tax_path, truth


@pytest.fixture(scope="module")
def clean(world):
    folder, tax_path, truth = world
    tax = load_taxonomy(tax_path)
    result = validate(data=folder, taxonomy=tax, end=END)
    assert result.counts() == {}  # the minimal-columns set is clean
    return result, tax, truth


@pytest.fixture(scope="module")
def cli_run(world, tmp_path_factory):
    folder, tax_path, _ = world
    out = tmp_path_factory.mktemp("eval") / "out"
    code = cli(
        ["evaluate", "--data", str(folder), "--taxonomy", str(tax_path), "--split-quantile", "0.8",
         "--k", "5,10", "--bootstrap", "100", "--end", END, "--out", str(out)]
    )
    return code, out


def test_cli_end_to_end_on_minimal_columns(cli_run, capsys):
    code, out = cli_run
    assert code == 0
    for name in ("metrics.json", "recommendations.parquet", "test.parquet", "users.parquet", "items.parquet",
                 "report.html", "report.md", "plots/metric_vs_k.png", "plots/by_region.png", "plots/warm_cold.png"):
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m["k"] == [5, 10]
    assert set(m["split"]["users"]) == {"all", "warm", "cold", "listed"}
    assert m["split"]["train_events"] + m["split"]["test_events"] > 0
    assert list(m["policies"]) == ["random", "popular", "recent_popular", "segment_popular", "als", "content", "engine"]
    assert "oracle_ratio" not in m  # no ground truth in a real data set
    block = m["policies"]["engine"]["all"]
    assert block["users"] == m["split"]["users"]["all"] > 0
    for key in METRIC_KEYS:
        for k in (5, 10):
            assert f"{key}@{k}" in block
    assert set(block["ci95"]) >= {"precision@10", "ndcg@5"}
    for family, codes in (("by_group", {"pupil", "elder"}), ("by_region", {"town", "farm", "hill"}),
                          ("by_urban_rural", {"urban", "rural"})):
        assert set(m["policies"]["engine"][family]) == codes
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "城区 town" in page and "山区 hill" in page and "学生 pupil" in page  # Chinese names of this taxonomy


def test_recomputing_from_the_tables_reproduces_metrics_json(cli_run):
    _, out = cli_run
    written = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    again = json.loads(json.dumps(recompute_metrics(out), default=str))
    for key in ("k", "settings", "policies"):
        assert again[key] == written[key], key


def test_lists_follow_the_definitions(cli_run, clean):
    _, out = cli_run
    result, _, _ = clean
    recs = pd.read_parquet(out / "recommendations.parquet")
    test = pd.read_parquet(out / "test.parquet")
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    t = pd.Timestamp(m["split"]["time"])
    events = result.events
    pos = events[events["event_type"].isin(["click", "read", "like"])]
    train_pos = set(zip(pos.loc[pos["timestamp"] < t, "user_id"], pos.loc[pos["timestamp"] < t, "item_id"]))
    # training positives are never listed, never relevant
    assert not set(zip(recs["user_id"], recs["item_id"])) & train_pos
    assert not set(zip(test["user_id"], test["item_id"])) & train_pos
    # one list per user and policy, ranks 1..n, at most max(k)
    sizes = recs.groupby(["policy", "user_id"])["rank"].agg(["min", "max", "count"])
    assert (sizes["min"] == 1).all() and (sizes["max"] == sizes["count"]).all() and (sizes["count"] <= 10).all()
    assert recs.groupby("policy")["user_id"].nunique().nunique() == 1


@pytest.fixture(scope="module")
def with_truth(clean):
    result, tax, truth = clean
    settings = EvaluationSettings(split_quantile=0.8, ks=(5, 10), n_boot=50)
    return evaluate(result.users, result.items, result.events, taxonomy=tax, settings=settings, truth=truth)


def test_oracle_is_the_exact_upper_bound_of_the_simulated_push(with_truth):
    m = with_truth.metrics
    assert "oracle" in m["policies"]
    oracle = m["policies"]["oracle"]["simulated"]
    for name, pol in m["policies"].items():
        for k in (5, 10):
            assert pol["simulated"][f"engagements_per_push@{k}"] <= oracle[f"engagements_per_push@{k}"] + 1e-12, name
    assert 0 < m["oracle_ratio"] <= 1
    recs = with_truth.tables.recommendations
    assert recs["true_prob"].between(0, 1).all()


def test_cold_users_fall_back_and_the_report_says_so(with_truth):
    m = with_truth.metrics
    cold = m["split"]["users"]["cold"]
    listed_cold = int((~with_truth.tables.users["warm"]).sum())
    assert listed_cold > 0
    for name in ("als", "content"):
        assert m["policies"][name]["fallback"]["users"] == listed_cold
        assert m["policies"][name]["fallback"]["evaluated_users"] == cold
    assert m["policies"]["engine"]["fallback"]["users"] == 0


def test_leave_last_n_mode(clean):
    result, tax, _ = clean
    settings = EvaluationSettings(leave_last_n=1, ks=(5,), n_boot=20, policies=("popular", "engine"), max_users=80)
    run = evaluate(result.users, result.items, result.events, taxonomy=tax, settings=settings)
    assert run.metrics["split"]["mode"] == "leave_last_n"
    assert run.metrics["split"]["users"]["listed"] == 80
    assert run.tables.recommendations["user_id"].nunique() == 80
    assert run.metrics["policies"]["engine"]["all"]["users"] > 0


def test_tuning_never_reads_the_test_window(clean):
    result, tax, _ = clean
    events = result.events
    t = pd.Timestamp("2026-06-25T00:00:00Z")
    # a second log: identical before T, scrambled after it (other users, items and types)
    after = events["timestamp"] >= t
    rng = np.random.default_rng(9)
    scrambled = events.copy()
    scrambled.loc[after, "item_id"] = rng.permutation(scrambled.loc[after, "item_id"].to_numpy())
    scrambled.loc[after, "event_type"] = "share"
    settings = EvaluationSettings(
        split_time="2026-06-25T08:00:00+08:00", ks=(10,), n_boot=20, policies=("engine",), tune=True,
        tune_settings=TuneSettings(n_models=2, n_blends=3, seed=3),
    )
    config = EngineConfig()
    if hasattr(getattr(config, "ranker", None), "n_estimators"):
        # the learned ranker is searched too (it must not read the test window either): a small one
        config = dataclasses.replace(config, ranker=dataclasses.replace(config.ranker, n_estimators=20))
    a = evaluate(result.users, result.items, events, taxonomy=tax, settings=settings, config=config)
    b = evaluate(result.users, result.items, scrambled, taxonomy=tax, settings=settings, config=config)
    pd.testing.assert_frame_equal(a.tuning.trials.drop(columns="seconds"), b.tuning.trials.drop(columns="seconds"))
    assert a.config == b.config
    assert pd.Timestamp(a.tuning.validation["end"]) <= t
    assert len(a.tuning.trials) == 6 and a.metrics["tuning"]["trials"] == 6
    # the chosen trial is the best on validation -- or the base when the best one's lead is within
    # noise (tuning.validation.selection) -- and the engine was trained with it
    selection = a.tuning.validation["selection"]
    chosen = 0 if selection.get("kept_base") else int(a.tuning.trials["ndcg@10"].idxmax())
    assert a.tuning.best["trial"] == chosen
    best = a.tuning.trials.loc[chosen]
    assert a.config.collaborative.factors == best["factors"]
    for p in BLEND_PARAMS:
        assert getattr(a.config.ranking, p) == pytest.approx(best[p]), p
    # trial 0 is the base (default) configuration
    base = config.ranking
    assert {p: a.tuning.trials.loc[0, p] for p in BLEND_PARAMS} == {p: getattr(base, p) for p in BLEND_PARAMS}
    # the scrambled test window does change the evaluation itself
    assert a.metrics["policies"] != b.metrics["policies"]


def test_blend_search_covers_every_ranking_weight():
    weights = {f.name for f in dataclasses.fields(RankingConfig) if f.name.startswith("weight_")}
    assert weights <= set(BLEND_PARAMS)
    assert {"weight_quality", "weight_interest", "weight_format", "weight_timeliness"} <= weights
    draws = [draw_blend(np.random.default_rng(s)) for s in range(20)]
    assert all(list(d) == list(BLEND_PARAMS) for d in draws)
    # every weight is a non-negative float, and each is actually varied
    for p in BLEND_PARAMS:
        values = [d[p] for d in draws]
        assert all(isinstance(v, float) and v >= 0.0 for v in values), p
        assert len(set(values)) > 1, p


def test_recsys_tune_writes_a_loadable_config(world, tmp_path, capsys):
    folder, tax_path, _ = world
    out = tmp_path / "tuned.toml"
    code = cli(["tune", "--data", str(folder), "--taxonomy", str(tax_path), "--until", "2026-06-25",
                "--models", "2", "--blends", "2", "--end", END, "--out", str(out)])
    assert code == 0
    cfg = load_config(out)
    trials = pd.read_csv(tmp_path / "tuned.trials.csv")
    assert len(trials) == 4 and "ndcg@10" in trials
    best = trials.loc[trials["ndcg@10"].idxmax()]
    assert cfg.collaborative.factors == best["factors"]
    printed = capsys.readouterr().out
    assert "best trial" in printed and "validation window" in printed
    # --until (a date: midnight in the city's time zone) keeps later events out of tuning
    window = re.search(r"validation window (\S+) \.\. (\S+):", printed)
    assert pd.Timestamp(window.group(2)) <= pd.Timestamp("2026-06-25T00:00:00+08:00")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--split-quantile", "0.8", "--k", "5,x"], "--k must be comma-separated positive integers"),
        (["--split-quantile", "1.5"], "split quantile must be a number in \\(0, 1\\)"),
        (["--split-time", "2020-01-01"], "empty training window"),
        (["--split-time", "2026-06-25T10:00:00"], "has no time zone"),
        (["--split-quantile", "0.8", "--policies", "engine,magic"], "unknown policy 'magic'"),
        (["--split-quantile", "0.8", "--policies", "oracle"], "oracle policy needs the generator's ground truth"),
        (["--split-quantile", "0.8", "--policies", ""], "--policies '' names no policy"),
        (["--split-quantile", "0.8", "--policies", " , "], "--policies ' , ' names no policy"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(world, tmp_path, capsys, extra, message):
    folder, tax_path, _ = world
    code = cli(["evaluate", "--data", str(folder), "--taxonomy", str(tax_path), "--end", END,
                "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err
    assert re.search(message, errors[0]), err
    assert not (tmp_path / "o").exists()


def test_cli_missing_data_folder(tmp_path, capsys):
    code = cli(["evaluate", "--data", str(tmp_path / "nope"), "--split-quantile", "0.8", "--out", str(tmp_path / "o")])
    assert code == 2 and "error: " in capsys.readouterr().err


def test_job_script_exits_2_on_bad_input(world, tmp_path):
    """pipelines/evaluate.py, the scheduler's script, answers bad input like the CLI: one line, exit 2."""
    import subprocess
    import sys

    folder, tax_path, _ = world
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.evaluate", "--data", str(folder), "--taxonomy", str(tax_path),
         "--split-quantile", "0.8", "--bootstrap", "0", "--out", str(tmp_path / "o")],
        cwd=root, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == ["error: n_boot (--bootstrap) must be a positive int, got 0"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"split_quantile": 0.5, "leave_last_n": 1}, "exactly one of --split-time, --split-quantile and --leave-last-n"),
        ({}, "exactly one of"),
        ({"leave_last_n": 0}, "leave-last-n needs n >= 1, got 0"),
        ({"split_quantile": 0.5, "max_users": 0}, "max_users must be a positive int, got 0"),
        ({"split_quantile": 0.5, "ks": (0,)}, "positive integers"),
        ({"split_quantile": 0.5, "seed": -1}, "non-negative int"),
        ({"split_quantile": 0.5, "tune": True, "tune_settings": TuneSettings(k=0)}, "tune setting k must be"),
    ],
)
def test_evaluation_settings_check(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        EvaluationSettings(**kwargs).check()


def test_settings_errors():
    with pytest.raises(ConfigError, match="headline_k 7 must be one of k"):
        EvaluationSettings(ks=(5, 10), headline_k=7, split_quantile=0.5).resolved_headline_k()
    with pytest.raises(ConfigError, match="tune setting n_models must be a positive int"):
        TuneSettings(n_models=0).check()
    with pytest.raises(ConfigError, match="validation_fraction must lie in \\(0, 1\\)"):
        TuneSettings(validation_fraction=1.0).check()


def test_make_world_is_minimal():
    users, items, events, _ = make_world(n_users=10, n_items=30)
    assert list(users.columns) == ["user_id", "group", "region"]
    assert list(items.columns) == ["item_id", "title", "topics"]
    assert list(events.columns) == ["user_id", "item_id", "event_type", "timestamp"]
