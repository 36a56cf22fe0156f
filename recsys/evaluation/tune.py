"""Tuning: pick collaborative hyper-parameters and blend weights on a validation window.

The validation window is carved from the *training* events only: its start
``T_v`` is the ``1 - validation_fraction`` quantile of their timestamps; models
are trained on the events before ``T_v`` (with ``as_of=T_v``) and the engine's
lists at ``T_v`` are judged against the positive engagements in ``[T_v, end of
training)``, exactly as the evaluation judges the test window. The test window
is never an input.

The search is a small seeded random search (budgeted: minutes on ~100k
events): ``n_models`` draws of the collaborative parameters and the
interaction-matrix decay half-life (each one training run; the first is the
base configuration), and for each of them ``n_blends`` draws of all nine blend
weights -- the engagement model's four (quality, interest, format,
timeliness) and the other five (see ``recsys/ranking/scoring.py``) -- and the
freshness half-life (the first is the base values; these need no retraining).
More parameters do not mean more trials: the budget is ``n_models * n_blends``
trials either way. The best trial by mean NDCG@k over the validation users
wins; the base configuration is always trial 0, so tuning never picks
something that did worse on validation.

Not searched: ``[interactions] popularity_half_life_days`` (the recency of
segment popularity), which stays at the base configuration's value.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.config import EngineConfig
from recsys.evaluation import metrics as M
from recsys.evaluation.split import quantile_time, relevant_pairs, temporal_split
from recsys.exceptions import ConfigError
from recsys.seeds import check_random_state
from recsys.taxonomy import Taxonomy

#: parameters that need a training run, by config section: the collaborative fit, and the
#: decay half-life of the user x item matrix (the ALS confidences; popularity has its own
#: ``popularity_half_life_days``, not searched)
MODEL_PARAMS = {
    "collaborative": ("factors", "regularization", "alpha", "iterations"),
    "interactions": ("half_life_days",),
}
#: ranking parameters searched on a trained model (no retraining): every ``weight_*`` of
#: RankingConfig, in its order, and the freshness half-life
BLEND_PARAMS = (
    "weight_collaborative",
    "weight_topic",
    "weight_popularity",
    "weight_freshness",
    "weight_authority",
    "weight_quality",
    "weight_interest",
    "weight_format",
    "weight_timeliness",
    "freshness_half_life_days",
)


@dataclass(frozen=True)
class TuneSettings:
    """Budget and protocol of the search.

    Attributes
    ----------
    n_models : int
        Collaborative configurations tried (training runs), base included.
    n_blends : int
        Blend-weight draws per trained model, base weights included.
    validation_fraction : float
        Share of the latest training events that forms the validation window.
    k : int
        List length judged.
    max_users : int
        At most this many validation users (a seeded sample) are judged.
    time_budget_s : float
        No new training run starts after this many seconds (the base always runs).
    seed : int
        Seed of the search and of the user sample.
    """

    n_models: int = 6
    n_blends: int = 8
    validation_fraction: float = 0.2
    k: int = 10
    max_users: int = 3000
    time_budget_s: float = 600.0
    seed: int = 0

    def check(self) -> "TuneSettings":
        """Return self, or raise :class:`ConfigError` naming the bad setting."""
        for name in ("n_models", "n_blends", "k", "max_users"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"tune setting {name} must be a positive int, got {value!r}")
        if not 0.0 < float(self.validation_fraction) < 1.0:
            raise ConfigError(f"tune setting validation_fraction must lie in (0, 1), got {self.validation_fraction!r}")
        if not float(self.time_budget_s) > 0:
            raise ConfigError(f"tune setting time_budget_s must be positive, got {self.time_budget_s!r}")
        check_random_state(self.seed)
        return self


@dataclass
class TuneResult:
    """What the search tried and chose.

    Attributes
    ----------
    config : EngineConfig
        The chosen configuration (base config with the best trial's values).
    trials : DataFrame
        One row per trial: ``trial, model`` ids, the searched parameters,
        ``ndcg@k, precision@k, recall@k`` on validation, ``seconds``.
    best : dict
        The best trial's row.
    validation : dict
        ``start``/``end`` (ISO) of the validation window, ``train_events``,
        ``validation_events``, ``users`` judged.
    """

    config: EngineConfig
    trials: pd.DataFrame
    best: dict[str, Any]
    validation: dict[str, Any] = field(default_factory=dict)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def draw_model(rng: np.random.Generator) -> dict[str, Any]:
    """One random draw of the parameters that need a training run (see :data:`MODEL_PARAMS`)."""
    return {
        "factors": int(rng.choice([16, 32, 64, 128])),
        "regularization": round(_log_uniform(rng, 0.003, 0.3), 5),
        "alpha": round(_log_uniform(rng, 1.0, 40.0), 3),
        "iterations": int(rng.choice([10, 15, 20])),
        "half_life_days": float(rng.choice([3.0, 7.0, 14.0, 30.0, 60.0])),
    }


def draw_blend(rng: np.random.Generator) -> dict[str, float]:
    """One random draw of the ranking parameters (see :data:`BLEND_PARAMS`; scales as in RankingConfig)."""
    return {
        "weight_collaborative": round(_log_uniform(rng, 0.2, 2.0), 4),
        "weight_topic": round(float(rng.uniform(0.0, 1.5)), 4),
        "weight_popularity": round(_log_uniform(rng, 0.05, 3.0), 4),
        "weight_freshness": round(float(rng.uniform(0.0, 0.5)), 4),
        "weight_authority": round(float(rng.uniform(0.0, 0.3)), 4),
        # the engagement model's log-odds terms: 1 is the fitted model as it stands, 0 drops the
        # term, 2 doubles it; each is drawn on its own (they trade engagement against logged precision)
        "weight_quality": round(float(rng.uniform(0.0, 2.0)), 4),
        "weight_interest": round(float(rng.uniform(0.0, 2.0)), 4),
        "weight_format": round(float(rng.uniform(0.0, 2.0)), 4),
        "weight_timeliness": round(float(rng.uniform(0.0, 2.0)), 4),
        "freshness_half_life_days": round(_log_uniform(rng, 1.0, 30.0), 3),
    }


def _judge(lists: pd.DataFrame, relevant: pd.DataFrame, user_ids: np.ndarray, k: int) -> dict[str, float]:
    n_rel = _n_relevant(relevant, user_ids)
    hits = M.hit_matrix(lists, relevant, user_ids, k)
    return {
        f"ndcg@{k}": float(M.ndcg_at_k(hits, n_rel, k).mean()),
        f"precision@{k}": float(M.precision_at_k(hits, k).mean()),
        f"recall@{k}": float(M.recall_at_k(hits, n_rel, k).mean()),
    }


def _n_relevant(relevant: pd.DataFrame, user_ids: np.ndarray) -> np.ndarray:
    counts = relevant[C.USER_ID].astype(str).value_counts()
    return pd.Index(user_ids).map(counts).fillna(0).to_numpy(dtype=np.int64)


def tune(
    users: pd.DataFrame,
    items: pd.DataFrame,
    train_events: pd.DataFrame,
    *,
    taxonomy: Taxonomy,
    config: EngineConfig | None = None,
    settings: TuneSettings | None = None,
    log: Any = None,
) -> TuneResult:
    """Random search over collaborative parameters, blend weights and the freshness half-life.

    Parameters
    ----------
    users, items : DataFrame
        Clean contract tables.
    train_events : DataFrame
        The training events only (in an evaluation: the events before ``T``).
    taxonomy : Taxonomy
    config : EngineConfig, optional
        The base configuration (defaults when omitted); trial 0.
    settings : TuneSettings, optional
    log : callable, optional
        Called with one line of text per trial.

    Returns
    -------
    TuneResult

    Raises
    ------
    ConfigError
        On a bad setting, or when the validation window has no relevant pair.
    """
    from recsys.ranking import Recommender
    from recsys.training import train_model

    settings = (settings or TuneSettings()).check()
    base = config or EngineConfig()
    rng = check_random_state(settings.seed)
    t_val = quantile_time(train_events, 1.0 - float(settings.validation_fraction))
    inner = temporal_split(train_events, time=t_val)
    relevant = relevant_pairs(inner)
    judged = np.array(sorted(set(relevant[C.USER_ID]) & set(users[C.USER_ID].astype(str))), dtype=object)
    if len(judged) == 0:
        raise ConfigError(
            f"tuning: no user has a new positive engagement in the validation window from {t_val.isoformat()}; "
            "use more data or a larger validation_fraction"
        )
    if len(judged) > settings.max_users:
        judged = np.sort(rng.choice(judged, size=settings.max_users, replace=False))
    relevant = relevant[relevant[C.USER_ID].isin(set(judged))]

    cf_draws = [{p: getattr(getattr(base, sec), p) for sec, params in MODEL_PARAMS.items() for p in params}]
    cf_draws += [draw_model(rng) for _ in range(settings.n_models - 1)]
    blend_draws = [{p: getattr(base.ranking, p) for p in BLEND_PARAMS}]
    blend_draws += [draw_blend(rng) for _ in range(settings.n_blends - 1)]

    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for m, cf in enumerate(cf_draws):
        if m > 0 and time.perf_counter() - started > settings.time_budget_s:
            if log:
                log(f"tune: time budget of {settings.time_budget_s:.0f}s spent after {m} model(s)")
            break
        cfg = _with(base, cf)
        t0 = time.perf_counter()
        model = train_model(users, items, inner.train, config=cfg, taxonomy=taxonomy, as_of=t_val)
        fit_s = time.perf_counter() - t0
        for b, blend in enumerate(blend_draws):
            t1 = time.perf_counter()
            ranking = dataclasses.replace(base.ranking, **blend)
            rec = Recommender.from_model(model, catalog=items, config=ranking)
            lists = rec.recommend_many(list(judged), settings.k, now=t_val)
            scores = _judge(lists, relevant, judged, settings.k)
            row = {"trial": len(rows), "model": m, **cf, **blend, **scores}
            row["seconds"] = round((fit_s if b == 0 else 0.0) + time.perf_counter() - t1, 3)
            rows.append(row)
            if log:
                log(f"tune: trial {row['trial']} model {m} ndcg@{settings.k}={scores[f'ndcg@{settings.k}']:.4f}")
    trials = pd.DataFrame(rows)
    key = f"ndcg@{settings.k}"
    # best validation NDCG; on a tie the earlier trial (the base comes first)
    best = trials.iloc[[int(trials[key].to_numpy().argmax())]].to_dict("records")[0]  # keeps int columns int
    chosen = _with(base, {p: best[p] for params in MODEL_PARAMS.values() for p in params})
    chosen = dataclasses.replace(chosen, ranking=dataclasses.replace(base.ranking, **{p: float(best[p]) for p in BLEND_PARAMS}))
    ts = train_events[C.TIMESTAMP]
    validation = {
        "start": t_val.isoformat(),
        "end": (ts.max() + pd.Timedelta(microseconds=1)).isoformat(),
        "train_events": int(len(inner.train)),
        "validation_events": int(len(inner.test)),
        "users": int(len(judged)),
        "metric": key,
    }
    return TuneResult(config=chosen, trials=trials, best=best, validation=validation)


def _with(base: EngineConfig, values: dict[str, Any]) -> EngineConfig:
    """``base`` with the :data:`MODEL_PARAMS` in ``values`` replaced (types as the defaults')."""
    cfg = base
    for sec, params in MODEL_PARAMS.items():
        section = getattr(cfg, sec)
        changes = {}
        for p in params:
            default = getattr(section, p)
            changes[p] = int(values[p]) if isinstance(default, int) and not isinstance(default, bool) else float(values[p])
        cfg = dataclasses.replace(cfg, **{sec: dataclasses.replace(section, **changes)})
    return cfg
