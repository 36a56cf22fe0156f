"""Tuning: pick the engine's configuration on a validation window carved from training.

The validation window is carved from the *training* events only: its start
``T_v`` is the ``1 - validation_fraction`` quantile of their timestamps; models
are trained on the events before ``T_v`` (with ``as_of=T_v``) and the engine's
lists at ``T_v`` are judged against the positive engagements in ``[T_v, end of
training)``, exactly as the evaluation judges the test window. The test window
is never an input. The caller then refits: :func:`recsys.evaluation.run.evaluate`
trains the bundle once more, on all training events with the chosen
configuration, before it lists anything for the test window (``recsys tune``
writes the configuration for ``recsys train --config`` to do the same).

**The search space is :data:`SEARCH_SPACE`**, one :class:`SearchParam` per
searched setting (config section, field, how a value is drawn or the values a
grid tries, whether it needs a training run). Adding a parameter is one line
there; a parameter whose field the configuration does not have is skipped, so
the space may name fields that come and go.

The search is a small seeded random search (budgeted: minutes on ~100k events):
``n_models`` training runs, each with a draw of the parameters that need one,
and for each trained model ``n_blends`` draws of the ranking parameters that do
not (blend weights, freshness half-life; each a ``Recommender`` over the same
model). Grid parameters (``ranking.ranker`` in {"linear", "learned"}) are
crossed with the draws: the first models are the base configuration with each
grid combination (the base's own values first), later models cycle through the
combinations with random draws of the rest. The base configuration is always
trial 0 and ties go to the earlier trial, so tuning never picks something that
did worse on validation. The budget is ``n_models * n_blends`` trials either way.

Besides the engine's trials, every baseline of :mod:`recsys.evaluation.baselines`
is scored on the same validation users with the chosen trial's model, so the
report can show what the engine was selected against.

Not searched: ``[interactions] popularity_half_life_days`` (the recency of
segment popularity), which stays at the base configuration's value.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys import training
from recsys.config import EngineConfig, is_int
from recsys.evaluation import metrics as M
from recsys.evaluation.baselines import BASELINES, ListingContext, make_baseline, recommend
from recsys.evaluation.split import quantile_time, relevant_pairs, temporal_split
from recsys.exceptions import ConfigError
from recsys.ranking import Recommender
from recsys.seeds import check_random_state
from recsys.taxonomy import Taxonomy
from recsys.training.model import TrainedModel


def _log_uniform(low: float, high: float, digits: int) -> Callable[[np.random.Generator], float]:
    return lambda rng: round(float(math.exp(rng.uniform(math.log(low), math.log(high)))), digits)


def _uniform(low: float, high: float, digits: int = 4) -> Callable[[np.random.Generator], float]:
    return lambda rng: round(float(rng.uniform(low, high)), digits)


def _choice(values: tuple, cast: type) -> Callable[[np.random.Generator], Any]:
    return lambda rng: cast(rng.choice(list(values)))


@dataclass(frozen=True)
class SearchParam:
    """One searched setting.

    Attributes
    ----------
    section, name : str
        The config field (``getattr(getattr(config, section), name)``); its
        trials-table column is ``name`` (unique across the space).
    draw : callable or None
        ``rng -> value``: a random draw (random-search parameters).
    grid : tuple
        Values every one of which is tried (categorical choices); the base
        configuration's value goes first.
    retrain : bool
        True when a new value needs a training run (collaborative fit,
        interaction decay, the ranker); False for what a ``Recommender``
        over a trained model can change (blend weights).
    """

    section: str
    name: str
    draw: Callable[[np.random.Generator], Any] | None = None
    grid: tuple = ()
    retrain: bool = True


#: the tuner's search space: extend it here (one line per parameter); the order is the draw order
SEARCH_SPACE: tuple[SearchParam, ...] = (
    # training runs: the collaborative fit and the decay half-life of the user x item matrix
    SearchParam("collaborative", "factors", _choice((16, 32, 64, 128), int)),
    SearchParam("collaborative", "regularization", _log_uniform(0.003, 0.3, 5)),
    SearchParam("collaborative", "alpha", _log_uniform(1.0, 40.0, 3)),
    SearchParam("collaborative", "iterations", _choice((10, 15, 20), int)),
    SearchParam("interactions", "half_life_days", _choice((3.0, 7.0, 14.0, 30.0, 60.0), float)),
    # the ranking stage itself: every choice is tried (the learned ranker is trained with the bundle)
    SearchParam("ranking", "ranker", grid=("linear", "learned")),
    # no retraining: the blend over a trained model (see recsys/ranking/scoring.py)
    SearchParam("ranking", "weight_collaborative", _log_uniform(0.2, 2.0, 4), retrain=False),
    SearchParam("ranking", "weight_topic", _uniform(0.0, 1.5), retrain=False),
    SearchParam("ranking", "weight_popularity", _log_uniform(0.05, 3.0, 4), retrain=False),
    SearchParam("ranking", "weight_freshness", _uniform(0.0, 0.5), retrain=False),
    SearchParam("ranking", "weight_authority", _uniform(0.0, 0.3), retrain=False),
    # the engagement model's log-odds terms: 1 is the fitted model as it stands, 0 drops the
    # term, 2 doubles it; each is drawn on its own (they trade engagement against logged precision)
    SearchParam("ranking", "weight_quality", _uniform(0.0, 2.0), retrain=False),
    SearchParam("ranking", "weight_interest", _uniform(0.0, 2.0), retrain=False),
    SearchParam("ranking", "weight_format", _uniform(0.0, 2.0), retrain=False),
    SearchParam("ranking", "weight_timeliness", _uniform(0.0, 2.0), retrain=False),
    SearchParam("ranking", "freshness_half_life_days", _log_uniform(1.0, 30.0, 3), retrain=False),
)

#: parameters that need a training run, by config section (declared in :data:`SEARCH_SPACE`)
MODEL_PARAMS: dict[str, tuple[str, ...]] = {}
for _p in SEARCH_SPACE:
    if _p.retrain:
        MODEL_PARAMS[_p.section] = (*MODEL_PARAMS.get(_p.section, ()), _p.name)
#: ranking parameters searched on a trained model, without retraining
BLEND_PARAMS: tuple[str, ...] = tuple(p.name for p in SEARCH_SPACE if not p.retrain)


def active_space(config: EngineConfig, space: tuple[SearchParam, ...] = SEARCH_SPACE) -> tuple[SearchParam, ...]:
    """The parameters of ``space`` that ``config`` has a field for (others are skipped).

    Raises
    ------
    ConfigError
        If two parameters share a name (their trials columns would collide),
        or one has neither a draw nor a grid.
    """
    names = [p.name for p in space]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"tuning search space names {dup[0]!r} twice; names must be unique")
    bad = [p.name for p in space if p.draw is None and not p.grid]
    if bad:
        raise ConfigError(f"tuning search parameter {bad[0]!r} has neither a draw nor a grid")
    return tuple(p for p in space if hasattr(getattr(config, p.section, None), p.name))


def _base_value(config: EngineConfig, param: SearchParam) -> Any:
    return getattr(getattr(config, param.section), param.name)


def _grid_combinations(base: EngineConfig, grid: list[SearchParam]) -> list[dict[str, Any]]:
    """Every combination of the grid parameters' values, the base configuration's first."""
    axes = []
    for p in grid:
        own = _base_value(base, p)
        axes.append([own] + [v for v in p.grid if v != own])
    return [dict(zip((p.name for p in grid), combo)) for combo in itertools.product(*axes)]


def space_draws(
    base: EngineConfig, params: tuple[SearchParam, ...] | list[SearchParam], n: int, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """Values of ``params`` for each of ``n`` trials (training runs, or blends over one model).

    Trial 0 is the base configuration; the next trials are the base with each
    other combination of the grid parameters; later trials draw the random
    parameters and cycle through the grid combinations.
    """
    grid = [p for p in params if p.grid]
    drawn = [p for p in params if not p.grid]
    combos = _grid_combinations(base, grid)
    out = []
    for i in range(n):
        if i < len(combos):
            values = {p.name: _base_value(base, p) for p in drawn}
        else:
            values = {p.name: p.draw(rng) for p in drawn}  # type: ignore[misc]
        out.append({**values, **combos[i % len(combos)]})
    return out


def model_draws(
    base: EngineConfig, n_models: int, rng: np.random.Generator, space: tuple[SearchParam, ...] | None = None
) -> list[dict[str, Any]]:
    """The training-run parameters of each of ``n_models`` runs (see :func:`space_draws`)."""
    return space_draws(base, [p for p in (space or active_space(base)) if p.retrain], n_models, rng)


def draw_model(rng: np.random.Generator) -> dict[str, Any]:
    """One random draw of the training-run parameters with a draw (see :data:`SEARCH_SPACE`)."""
    return {p.name: p.draw(rng) for p in SEARCH_SPACE if p.retrain and p.draw is not None}


def draw_blend(rng: np.random.Generator, space: tuple[SearchParam, ...] = SEARCH_SPACE) -> dict[str, Any]:
    """One random draw of the ranking parameters that need no retraining (see :data:`BLEND_PARAMS`)."""
    return {p.name: p.draw(rng) for p in space if not p.retrain and p.draw is not None}


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
    significant_only : bool
        Keep the base configuration unless the best trial's per-user lead
        over it has a paired bootstrap 95% interval above 0.
    """

    n_models: int = 6
    n_blends: int = 8
    #: replace the base configuration only with a trial whose lead is significant (paired 95%)
    significant_only: bool = True
    validation_fraction: float = 0.2
    k: int = 10
    max_users: int = 3000
    time_budget_s: float = 600.0
    seed: int = 0

    def check(self) -> "TuneSettings":
        """Return self, or raise :class:`ConfigError` naming the bad setting."""
        for name in ("n_models", "n_blends", "k", "max_users"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
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
        ``validation_events``, ``users`` judged, ``metric``.
    baselines : dict
        Baseline name -> ``{ndcg@k, precision@k, recall@k}`` on the same
        validation users, listed from the chosen trial's model.
    chosen : dict
        ``"section.name"`` -> the chosen value of every searched parameter.
    """

    config: EngineConfig
    trials: pd.DataFrame
    best: dict[str, Any]
    validation: dict[str, Any] = field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    chosen: dict[str, Any] = field(default_factory=dict)


def _judge(lists: pd.DataFrame, relevant: pd.DataFrame, user_ids: np.ndarray, k: int) -> dict[str, float]:
    return _judge_users(lists, relevant, user_ids, k)[0]


def _judge_users(
    lists: pd.DataFrame, relevant: pd.DataFrame, user_ids: np.ndarray, k: int
) -> tuple[dict[str, float], np.ndarray]:
    """The mean scores, and each user's NDCG@k (for the paired selection rule)."""
    n_rel = _n_relevant(relevant, user_ids)
    hits = M.hit_matrix(lists, relevant, user_ids, k)
    ndcg = M.ndcg_at_k(hits, n_rel, k)
    return {
        f"ndcg@{k}": float(ndcg.mean()),
        f"precision@{k}": float(M.precision_at_k(hits, k).mean()),
        f"recall@{k}": float(M.recall_at_k(hits, n_rel, k).mean()),
    }, ndcg


def _n_relevant(relevant: pd.DataFrame, user_ids: np.ndarray) -> np.ndarray:
    counts = relevant[C.USER_ID].astype(str).value_counts()
    return pd.Index(user_ids).map(counts).fillna(0).to_numpy(dtype=np.int64)


def baseline_scores(
    model: TrainedModel, items: pd.DataFrame, train_events: pd.DataFrame, time: pd.Timestamp,
    relevant: pd.DataFrame, user_ids: np.ndarray, k: int, *, seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Every baseline's validation scores: lists at ``time`` from ``model``, judged like the engine's.

    Returns
    -------
    dict
        Baseline name -> ``{ndcg@k, precision@k, recall@k}``.
    """
    context = ListingContext.build(model, items, time, train_events)
    fallback = make_baseline("segment_popular").fit(context)
    out = {}
    for name in BASELINES:
        policy = make_baseline(name, seed=seed).fit(context)
        out[name] = _judge(recommend(policy, context, user_ids, k, fallback=fallback), relevant, user_ids, k)
    return out


def tune(
    users: pd.DataFrame,
    items: pd.DataFrame,
    train_events: pd.DataFrame,
    *,
    taxonomy: Taxonomy,
    config: EngineConfig | None = None,
    settings: TuneSettings | None = None,
    log: Callable[[str], None] | None = None,
) -> TuneResult:
    """Search :data:`SEARCH_SPACE` on a validation window carved from ``train_events``.

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
    settings = (settings or TuneSettings()).check()
    base = config or EngineConfig()
    space = active_space(base)
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

    cf_draws = model_draws(base, settings.n_models, rng, space)
    blend_draws = space_draws(base, [p for p in space if not p.retrain], settings.n_blends, rng)

    key = f"ndcg@{settings.k}"
    rows: list[dict[str, Any]] = []
    best_model, best_score = None, -math.inf
    started = time.perf_counter()
    for m, cf in enumerate(cf_draws):
        if m > 0 and time.perf_counter() - started > settings.time_budget_s:
            if log:
                log(f"tune: time budget of {settings.time_budget_s:.0f}s spent after {m} model(s)")
            break
        cfg = _with(base, space, cf)
        t0 = time.perf_counter()
        model = training.train_model(users, items, inner.train, config=cfg, taxonomy=taxonomy, as_of=t_val)
        fit_s = time.perf_counter() - t0
        for b, blend in enumerate(blend_draws):
            t1 = time.perf_counter()
            ranking = _with(cfg, space, blend).ranking
            rec = Recommender.from_model(model, catalog=items, config=ranking)
            lists = rec.recommend_many(list(judged), settings.k, now=t_val)
            scores, per_user = _judge_users(lists, relevant, judged, settings.k)
            if not rows:
                base_model, base_users = model, per_user
            if scores[key] > best_score:
                best_users = per_user
            row = {"trial": len(rows), "model": m, **cf, **blend, **scores}
            row["seconds"] = round((fit_s if b == 0 else 0.0) + time.perf_counter() - t1, 3)
            rows.append(row)
            if scores[key] > best_score:  # strictly better: on a tie the earlier trial stays
                best_model, best_score = model, scores[key]
            if log:
                log(f"tune: trial {row['trial']} model {m} {key}={scores[key]:.4f}")
        del model
    trials = pd.DataFrame(rows)
    # best validation NDCG; on a tie the earlier trial (the base comes first)
    best_row = int(trials[key].to_numpy().argmax())
    # Selection must not chase noise: a validation window of a few hundred users ranks trials
    # within their sampling error. The best trial replaces the base configuration only when its
    # per-user lead over the base has a paired bootstrap 95% interval above 0.
    selection: dict[str, Any] = {
        "rule": "best trial if its paired interval over the base (trial 0) is above 0, "
        "at 95% Bonferroni-corrected for the trials compared"
    }
    if best_row != 0 and settings.significant_only:
        # the winner was picked on these users among len(rows) trials: Bonferroni over the comparisons
        level = 1.0 - 0.05 / max(1, len(rows) - 1)
        lead, ci = M.paired_difference_ci(best_users, base_users, seed=settings.seed, level=level)
        selection.update(best_trial=best_row, lead=float(lead), level=level, ci=[float(ci[0]), float(ci[1])])
        if not ci[0] > 0:
            selection["kept_base"] = True
            best_row, best_model = 0, base_model
            if log:
                log(f"tune: trial {selection['best_trial']} leads the base by {float(lead):+.4f} "
                    f"[{float(ci[0]):+.4f}, {float(ci[1]):+.4f}], within noise: the base configuration stays")
    best = trials.iloc[[best_row]].to_dict("records")[0]  # keeps int columns int
    chosen = _with(base, space, best)
    ts = train_events[C.TIMESTAMP]
    validation = {
        "start": t_val.isoformat(),
        "end": (ts.max() + pd.Timedelta(microseconds=1)).isoformat(),
        "train_events": int(len(inner.train)),
        "validation_events": int(len(inner.test)),
        "users": int(len(judged)),
        "metric": key,
        "selection": selection,
    }
    # what the engine was selected against: the baselines on the same users, from the chosen model
    baselines = baseline_scores(best_model, items, inner.train, t_val, relevant, judged, settings.k, seed=settings.seed)
    if log:
        rivals = ", ".join(f"{n} {v[key]:.4f}" for n, v in baselines.items())
        log(f"tune: chosen trial {best['trial']} {key}={best[key]:.4f}; baselines on validation: {rivals}")
    picked = {f"{p.section}.{p.name}": _plain(_base_value(chosen, p)) for p in space}
    return TuneResult(config=chosen, trials=trials, best=best, validation=validation, baselines=baselines, chosen=picked)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _cast(default: Any, value: Any) -> Any:
    """``value`` with the type of the field's ``default`` (trials tables hold numpy scalars)."""
    value = _plain(value)
    if isinstance(default, bool):
        return bool(value)
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, str):
        return str(value)
    return value


def _with(base: EngineConfig, space: tuple[SearchParam, ...], values: dict[str, Any]) -> EngineConfig:
    """``base`` with the parameters of ``space`` found in ``values`` replaced (types as the base's)."""
    cfg = base
    by_section: dict[str, dict[str, Any]] = {}
    for p in space:
        if p.name in values:
            by_section.setdefault(p.section, {})[p.name] = _cast(_base_value(base, p), values[p.name])
    for sec, changes in by_section.items():
        cfg = dataclasses.replace(cfg, **{sec: dataclasses.replace(getattr(cfg, sec), **changes)})
    return cfg
