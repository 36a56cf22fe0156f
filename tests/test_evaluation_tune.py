"""Tuning: the search space, the refit on all training data, and what the engine was selected against."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

import recsys.training
from evaluation_world import write_world
from recsys.config import EngineConfig
from recsys.evaluation import tune as T
from recsys.evaluation.baselines import BASELINES
from recsys.evaluation.report import write_report
from recsys.evaluation.run import EvaluationSettings, evaluate
from recsys.exceptions import ConfigError
from recsys.schema import validate
from recsys.taxonomy import load_taxonomy


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory):
    """One tuned evaluation with every training run recorded (events seen, as_of, config)."""
    folder, tax_path, _ = write_world(tmp_path_factory.mktemp("tune") / "data", n_users=160, n_items=40, seed=5)
    tax = load_taxonomy(tax_path)
    clean = validate(data=folder, taxonomy=tax, end="2026-07-01T00:00:00Z")
    users, items, events = clean.users, clean.items, clean.events
    calls = []
    depth = [0]
    real = recsys.training.train_model

    def recording(users, items, events, **kwargs):
        # the evaluation's own calls only (training may call itself, e.g. for the ranker's window)
        if depth[0] == 0:
            calls.append({"events": events, "as_of": kwargs.get("as_of"), "config": kwargs.get("config")})
        depth[0] += 1
        try:
            return real(users, items, events, **kwargs)
        finally:
            depth[0] -= 1

    settings = EvaluationSettings(
        split_quantile=0.8, ks=(10,), n_boot=30,
        tune=True, tune_settings=T.TuneSettings(n_models=1, n_blends=3, seed=1),
    )
    config = EngineConfig()
    if hasattr(config.ranking, "ranker"):
        # the refit protocol is under test, not the learned ranker (tested on its own): the
        # linear blend alone keeps this test fast (one model, so the grid adds no second one)
        config = dataclasses.replace(config, ranking=dataclasses.replace(config.ranking, ranker="linear"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(recsys.training, "train_model", recording)
        result = evaluate(users, items, events, taxonomy=tax, settings=settings, config=config)
    return result, calls, tax


def test_selects_on_validation_then_refits_on_all_training_events(tuned_run):
    result, calls, _ = tuned_run
    split = result.split
    t_val = pd.Timestamp(result.tuning.validation["start"])
    assert t_val < split.time
    *search, refit = calls
    assert len(search) == 1  # one training run per model tried
    for call in search:  # the search trains before the validation window, on training events only
        assert call["as_of"] == t_val
        assert call["events"]["timestamp"].max() < t_val
    # the refit: the chosen configuration, every training event, nothing from the test window
    assert refit["as_of"] == split.time
    assert len(refit["events"]) == len(split.train) > len(search[0]["events"])
    assert refit["events"]["timestamp"].max() < split.time
    assert refit["config"] == result.config == result.tuning.config
    assert result.metrics["tuning"]["refit"] == {"train_events": len(split.train), "before": split.time.isoformat()}


def test_report_shows_the_choice_and_the_baselines_it_was_selected_against(tuned_run, tmp_path):
    result, _, tax = tuned_run
    tuning = result.metrics["tuning"]
    scores = tuning["validation_scores"]
    assert list(scores) == ["engine", *BASELINES]
    assert scores["engine"]["ndcg@10"] == pytest.approx(result.tuning.best["ndcg@10"])
    assert all(set(v) == {"ndcg@10", "precision@10", "recall@10"} for v in scores.values())
    assert len({v["ndcg@10"] for v in scores.values()}) > 2  # real, distinct numbers
    assert tuning["chosen"]["collaborative.factors"] == result.config.collaborative.factors
    assert tuning["chosen"]["ranking.weight_popularity"] == result.config.ranking.weight_popularity
    md = write_report(result.metrics, tmp_path, tax)["md"].read_text(encoding="utf-8")
    section = md[md.index("## 调参 / Tuning"):]
    section = section[: section.index("\n## ")]
    assert "Refit" in section and f"{len(result.split.train):,} training events" in section
    assert "Selected against the baselines" in section
    for name in ("engine", *BASELINES):
        assert f"{scores[name]['ndcg@10']:.4f}" in section, name
    assert f"collaborative.factors = {result.config.collaborative.factors}" in section


def test_search_space_skips_fields_the_config_lacks_and_crosses_grids():
    space = (
        T.SearchParam("collaborative", "factors", lambda rng: int(rng.choice([8, 16]))),
        T.SearchParam("collaborative", "iterations", grid=(3, 5, 15)),
        T.SearchParam("ranking", "no_such_field", grid=("a", "b")),  # not (yet) in the config: skipped
        T.SearchParam("ranking", "weight_topic", lambda rng: 0.123, retrain=False),
    )
    base = EngineConfig()
    active = T.active_space(base, space)
    assert [p.name for p in active] == ["factors", "iterations", "weight_topic"]
    draws = T.model_draws(base, 5, np.random.default_rng(0), active)
    # the base first (its own value of the grid first), then the other grid values, then random draws cycling
    assert [d["iterations"] for d in draws] == [15, 3, 5, 15, 3]
    assert draws[0] == {"factors": base.collaborative.factors, "iterations": 15}
    assert all(d["factors"] == base.collaborative.factors for d in draws[:3])
    assert {d["factors"] for d in draws[3:]} <= {8, 16}
    cfg = T._with(base, active, {"factors": np.int64(8), "iterations": 3, "weight_topic": 0.123})
    assert cfg.collaborative.factors == 8 and type(cfg.collaborative.factors) is int
    assert cfg.ranking.weight_topic == 0.123 and base.ranking.weight_topic != 0.123
    with pytest.raises(ConfigError, match="names 'factors' twice"):
        T.active_space(base, space + (space[0],))
    with pytest.raises(ConfigError, match="neither a draw nor a grid"):
        T.active_space(base, (T.SearchParam("collaborative", "alpha"),))


def test_the_ranker_choice_is_searched_once_the_config_has_it():
    names = [p.name for p in T.SEARCH_SPACE]
    assert "ranker" in names
    ranker = T.SEARCH_SPACE[names.index("ranker")]
    assert set(ranker.grid) == {"linear", "learned"} and ranker.section == "ranking"
    base = EngineConfig()
    draws = T.model_draws(base, 3, np.random.default_rng(0))
    if hasattr(base.ranking, "ranker"):
        assert [d["ranker"] for d in draws[:2]] == [base.ranking.ranker, ({"linear", "learned"} - {base.ranking.ranker}).pop()]
        other = dataclasses.replace(base, ranking=dataclasses.replace(base.ranking, ranker="learned"))
        assert T.model_draws(other, 1, np.random.default_rng(0))[0]["ranker"] == "learned"
    else:  # before the field exists the search runs without it
        assert all("ranker" not in d for d in draws)

