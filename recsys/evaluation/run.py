"""One evaluation: split, train with the production code, list with every policy, judge, write.

The engine is measured exactly as production serves it: the model comes from
:func:`recsys.training.train_model` with ``as_of=T`` and the lists from
:meth:`recsys.ranking.Recommender.recommend_many` at ``now=T`` against the
current catalogue, never from an evaluation-only model. The baselines read the
same trained model and the same eligibility rules. Every listed user gets one
top-k list at ``T``, judged against the whole test window (a push list, not a
next-click prediction).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys import training
from recsys.broadcast.evaluate import broadcast_metrics
from recsys.config import EngineConfig
from recsys.evaluation import metrics as M
from recsys.evaluation import summary as S
from recsys.evaluation.baselines import BASELINES, FALLBACK, ListingContext, Policy, make_baseline, recommend
from recsys.evaluation.populations import N_RELEVANT, WARM, population_labels
from recsys.evaluation.report import write_report
from recsys.evaluation.simulate import OraclePolicy, attach_true_prob
from recsys.evaluation.split import Split, leave_last_n_split, positive_pairs, relevant_pairs, temporal_split
from recsys.evaluation.tune import TuneResult, TuneSettings, tune
from recsys.exceptions import ConfigError
from recsys.io import atomic_dir, write_json, write_parquet
from recsys.push.coverage import evaluate_rules, example_rules
from recsys.ranking import Recommender
from recsys.ranking import eligibility as E
from recsys.seeds import check_random_state
from recsys.taxonomy import Taxonomy
from recsys.timeutil import TimeLike, parse_time
from recsys.training.model import TrainedModel

if TYPE_CHECKING:  # heavy: the synthetic city package (~90 ms) loads only when a truth folder is read
    from recsys.synthetic.truth import GroundTruth

ENGINE = S.ENGINE
ORACLE = S.ORACLE
#: every policy an evaluation can compare, in report order
POLICIES = (*BASELINES, ENGINE, ORACLE)


@dataclass(frozen=True)
class EvaluationSettings:
    """What to evaluate and how.

    Attributes
    ----------
    ks : tuple of int
        Cut-offs; lists are made at ``max(ks)``.
    split_time, split_quantile, leave_last_n
        Exactly one: a temporal split at a time (ISO with offset, or a date in
        the city's time zone) or at a quantile of event times, or per-user
        leave-last-n.
    policies : tuple of str or None
        Policies to compare; default every baseline, the engine, and the
        oracle when a ground truth is given.
    seed : int
        Seed of the random baseline, the user sample and the bootstrap.
    n_boot : int
        Bootstrap resamples per interval.
    max_users : int or None
        List at most this many users (a seeded uniform sample); None = all.
    headline_k : int
        The k of the headline table and the simulated push (10 when in ``ks``,
        else the largest k).
    tune : bool
        Tune the configuration on a validation window carved from training first.
    tune_settings : TuneSettings
    """

    ks: tuple[int, ...] = (5, 10, 20)
    split_time: TimeLike | None = None
    split_quantile: float | None = None
    leave_last_n: int | None = None
    policies: tuple[str, ...] | None = None
    seed: int = 0
    n_boot: int = 1000
    max_users: int | None = None
    headline_k: int | None = None
    tune: bool = False
    tune_settings: TuneSettings = field(default_factory=TuneSettings)

    def check(self) -> "EvaluationSettings":
        """Return self after checking every setting that needs no data.

        Raises
        ------
        ConfigError
            Naming the bad setting and what would be valid.
        """
        self.resolved_headline_k()
        given = [self.split_time is not None, self.split_quantile is not None, self.leave_last_n is not None]
        if sum(given) != 1:
            raise ConfigError("give exactly one of --split-time, --split-quantile and --leave-last-n")
        if self.split_quantile is not None and not (
            isinstance(self.split_quantile, (int, float)) and 0.0 < float(self.split_quantile) < 1.0
        ):
            raise ConfigError(f"split quantile must be a number in (0, 1), got {self.split_quantile!r}")
        if self.leave_last_n is not None and (not isinstance(self.leave_last_n, int) or self.leave_last_n < 1):
            raise ConfigError(f"leave-last-n needs n >= 1, got {self.leave_last_n!r}")
        bad = [p for p in (self.policies or ()) if p not in POLICIES]
        if bad:
            raise ConfigError(f"unknown policy {bad[0]!r}; valid: {', '.join(POLICIES)}")
        if self.max_users is not None and (not isinstance(self.max_users, int) or self.max_users < 1):
            raise ConfigError(f"max_users must be a positive int, got {self.max_users!r}")
        if not isinstance(self.n_boot, int) or self.n_boot < 1:
            raise ConfigError(f"n_boot (--bootstrap) must be a positive int, got {self.n_boot!r}")
        check_random_state(self.seed)
        if self.tune:
            self.tune_settings.check()
        return self

    def resolved_headline_k(self) -> int:
        """The headline k (see the attribute)."""
        ks = M.check_ks(self.ks)
        if self.headline_k is not None:
            if self.headline_k not in ks:
                raise ConfigError(f"headline_k {self.headline_k} must be one of k = {ks}")
            return int(self.headline_k)
        return 10 if 10 in ks else max(ks)


@dataclass
class EvaluationResult:
    """Everything one evaluation produced.

    Attributes
    ----------
    metrics : dict
        The content of ``metrics.json``.
    tables : EvaluationTables
        The tables the metrics are computed from.
    config : EngineConfig
        The configuration the engine was trained with (tuned or given).
    tuning : TuneResult or None
    split : Split
    timings : dict
        Seconds per stage.
    """

    metrics: dict[str, Any]
    tables: S.EvaluationTables
    config: EngineConfig
    tuning: TuneResult | None
    split: Split
    timings: dict[str, float] = field(default_factory=dict)


def make_split(events: pd.DataFrame, settings: EvaluationSettings, taxonomy: Taxonomy) -> Split:
    """Split ``events`` as ``settings`` say.

    Raises
    ------
    ConfigError
        If not exactly one of split time, split quantile and leave-last-n is given.
    """
    settings.check()
    if settings.leave_last_n is not None:
        return leave_last_n_split(events, settings.leave_last_n)
    if settings.split_time is not None:
        return temporal_split(events, time=parse_time(settings.split_time, taxonomy, name="split time"))
    return temporal_split(events, quantile=settings.split_quantile)


def _policies(settings: EvaluationSettings, truth: GroundTruth | None) -> tuple[str, ...]:
    names = settings.policies or tuple(p for p in POLICIES if p != ORACLE or truth is not None)
    if ORACLE in names and truth is None:
        raise ConfigError("the oracle policy needs the generator's ground truth (a truth/ folder in --data)")
    return tuple(dict.fromkeys(names))


def _listed_users(users: pd.DataFrame, max_users: int | None, seed: int) -> np.ndarray:
    ids = np.sort(users[C.USER_ID].astype(str).to_numpy())
    if max_users is None or len(ids) <= max_users:
        return ids
    return np.sort(check_random_state(seed).choice(ids, size=max_users, replace=False))


def engine_lists(model: TrainedModel, items: pd.DataFrame, user_ids: np.ndarray, k: int, now: pd.Timestamp) -> pd.DataFrame:
    """The engine's lists: the production Recommender over ``model`` at ``now``.

    Returns
    -------
    DataFrame
        ``user_id, rank, item_id, score, fallback`` (fallback always False).
    """
    rec = Recommender.from_model(model, catalog=items)
    lists = rec.recommend_many(list(user_ids), k, now=now)
    return lists[[C.USER_ID, C.RANK, C.ITEM_ID, C.SCORE]].assign(**{FALLBACK: False})


def policy_lists(
    name: str,
    context: ListingContext,
    items: pd.DataFrame,
    user_ids: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    truth: GroundTruth | None = None,
    fallback: Policy | None = None,
) -> pd.DataFrame:
    """Top-k lists of one policy for ``user_ids`` at the context's time.

    ``engine`` goes through the production Recommender; the oracle needs
    ``truth``; baselines that cannot score a cold user use ``fallback``
    (default a fresh ``segment_popular``).

    Returns
    -------
    DataFrame
        ``user_id, rank, item_id, score, fallback``.

    Raises
    ------
    ConfigError
        For an unknown policy name.
    """
    if name == ENGINE:
        return engine_lists(context.model, items, user_ids, k, context.time)
    policy = OraclePolicy(truth=truth) if name == ORACLE else make_baseline(name, seed=seed)
    return recommend(policy.fit(context), context, user_ids, k, fallback=fallback)


def coverage_cost(
    model: TrainedModel,
    items: pd.DataFrame,
    users: pd.DataFrame,
    recs: pd.DataFrame,
    k: int,
    now: pd.Timestamp,
    truth: GroundTruth,
    taxonomy: Taxonomy,
) -> dict[str, Any] | None:
    """The plan's example coverage rules met on the engine's top-``k`` lists, costed by the truth.

    See :func:`recsys.push.coverage.evaluate_rules`; None when the taxonomy
    lacks the rules' codes (another data set).
    """
    rules = example_rules(taxonomy)
    if not rules:
        return None
    lists = recs[(recs[S.POLICY] == ENGINE) & (recs[C.RANK] <= k)][[C.USER_ID, C.RANK, C.ITEM_ID, C.SCORE]]
    recommender = Recommender.from_model(model, catalog=items)
    return evaluate_rules(recommender, lists.reset_index(drop=True), users, rules, now=now, truth=truth)


def catalogue_table(context: ListingContext, train_events: pd.DataFrame) -> pd.DataFrame:
    """The ``items.parquet`` table: topics, targets, training users and eligibility at ``T``."""
    model = context.model
    items = model.items.reset_index(drop=True)
    pairs = positive_pairs(train_events)
    counts = pairs[C.ITEM_ID].value_counts()
    now_ns = int(context.time.as_unit("ns").value)
    live = context.catalog.available & E.live_at(context.catalog, np.arange(context.n_items), now_ns)
    ids = np.asarray(context.catalog.item_ids, dtype=object).astype(str)
    frame = pd.DataFrame({C.ITEM_ID: ids})
    meta = items.set_index(items[C.ITEM_ID].astype(str))
    for col in (C.TOPICS, C.TARGET_GROUPS, C.TARGET_REGIONS):
        values = meta[col].reindex(ids) if col in meta else pd.Series([[]] * len(ids))
        frame[col] = [list(v) if isinstance(v, (list, tuple, np.ndarray)) else [] for v in values]
    frame[S.TRAIN_USERS] = frame[C.ITEM_ID].map(counts).fillna(0).astype("int64").to_numpy()
    frame[S.ELIGIBLE] = live
    return frame


def build_tables(
    split: Split,
    users: pd.DataFrame,
    recs: pd.DataFrame,
    listed: np.ndarray,
    context: ListingContext,
    taxonomy: Taxonomy,
) -> S.EvaluationTables:
    """Assemble the output tables: lists, relevant pairs, user labels, catalogue.

    Raises
    ------
    ConfigError
        If no listed user has a relevant item (nothing to average over).
    """
    keep = set(listed)
    relevant = relevant_pairs(split)
    relevant = relevant[relevant[C.USER_ID].isin(keep)].reset_index(drop=True)
    labels = population_labels(users[users[C.USER_ID].astype(str).isin(keep)], split.train, taxonomy, relevant)
    if not (labels[N_RELEVANT] > 0).any():
        raise ConfigError(f"no listed user has a relevant item in the test window from {split.time.isoformat()}")
    return S.EvaluationTables(
        recommendations=recs, test=relevant, users=labels, items=catalogue_table(context, split.train)
    )


def split_summary(split: Split, tables: S.EvaluationTables) -> dict[str, Any]:
    """The ``split`` section of metrics.json: time, event counts, users per population."""
    labels = tables.users
    evaluated = labels[labels[N_RELEVANT] > 0]
    return {
        **split.describe(),
        "users": {
            "all": int(len(evaluated)),
            "warm": int(evaluated[WARM].sum()),
            "cold": int((~evaluated[WARM]).sum()),
            "listed": int(len(labels)),
        },
        "relevant_pairs": int(len(tables.test)),
    }


def evaluate(
    users: pd.DataFrame,
    items: pd.DataFrame,
    events: pd.DataFrame,
    *,
    taxonomy: Taxonomy,
    settings: EvaluationSettings,
    config: EngineConfig | None = None,
    truth: GroundTruth | None = None,
    log: Callable[[str], None] | None = None,
    places: pd.DataFrame | str | Path | None = None,
) -> EvaluationResult:
    """Run one evaluation on clean contract tables.

    Parameters
    ----------
    users, items, events : DataFrame
        Clean tables (:func:`recsys.schema.validate`).
    taxonomy : Taxonomy
    settings : EvaluationSettings
    config : EngineConfig, optional
        The engine's configuration (defaults when omitted); the starting point
        of tuning when ``settings.tune``.
    truth : GroundTruth, optional
        The generator's ground truth: adds the oracle and the simulated push.
    log : callable, optional
        Receives one line per stage.
    places : DataFrame or path, optional
        The broadcast places table: with ``truth``, the day's programmes of
        ``recsys broadcast`` are scored against popularity playlists
        (``metrics["broadcast"]``, :func:`recsys.broadcast.evaluate.broadcast_metrics`).

    Returns
    -------
    EvaluationResult

    Raises
    ------
    ConfigError
        On bad settings, or a split with no evaluated user.
    """
    say = log or (lambda _line: None)
    settings.check()
    ks = M.check_ks(settings.ks)
    headline_k = settings.resolved_headline_k()
    names = _policies(settings, truth)
    config = config or EngineConfig()
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        out = fn()
        timings[name] = round(time.perf_counter() - start, 3)
        say(f"{name}: {timings[name]:.1f}s")
        return out

    split = timed("split", lambda: make_split(events, settings, taxonomy))
    say(f"split at {split.time.isoformat()}: {len(split.train):,} train / {len(split.test):,} test events")
    tuning = None
    if settings.tune:
        # the tuner sees the training events only: never the test window
        tuning = timed(
            "tune",
            lambda: tune(users, items, split.train, taxonomy=taxonomy, config=config, settings=settings.tune_settings, log=say),
        )
        config = tuning.config
    # the refit: the whole bundle once more on every training event with the chosen configuration;
    # only this model ever lists for the test window
    model = timed("train", lambda: training.train_model(users, items, split.train, config=config, taxonomy=taxonomy, as_of=split.time))
    context = ListingContext.build(model, items, split.time, split.train)
    listed = _listed_users(users, settings.max_users, settings.seed)
    k_max = max(ks)

    fallback = make_baseline("segment_popular").fit(context)
    frames = []
    for name in names:
        lists = timed(
            f"lists {name}",
            lambda name=name: policy_lists(
                name, context, items, listed, k_max, seed=settings.seed, truth=truth, fallback=fallback
            ),
        )
        frames.append(lists.assign(**{S.POLICY: name}))
    recs = pd.concat(frames, ignore_index=True)
    recs = recs[[S.POLICY, C.USER_ID, C.RANK, C.ITEM_ID, C.SCORE, FALLBACK]]
    if truth is not None:
        recs = timed("simulate", lambda: attach_true_prob(recs, truth, split.time))

    tables = build_tables(split, users, recs, listed, context, taxonomy)
    metric_settings = S.MetricSettings(
        ks=tuple(ks),
        policies=names,
        n_users=len(users),
        n_boot=settings.n_boot,
        seed=settings.seed,
        headline_k=headline_k,
    )
    doc = timed("metrics", lambda: S.compute_metrics(tables, metric_settings))
    split_info = split_summary(split, tables)
    metrics = S.assemble(doc, split_info)
    metrics["engine_config"] = config.to_dict()
    if truth is not None and ENGINE in names:
        cov = timed("coverage", lambda: coverage_cost(model, items, users, recs, headline_k, split.time, truth, taxonomy))
        if cov is not None:
            metrics["coverage"] = {"k": headline_k, **cov}
    if truth is not None and places is not None:
        metrics["broadcast"] = timed(
            "broadcast",
            lambda: broadcast_metrics(model, items, users, places, split.time, truth, config.broadcast),
        )
    if tuning is not None:
        metrics["tuning"] = tuning_summary(tuning, split)
    metrics["timings_s"] = timings
    return EvaluationResult(metrics=metrics, tables=tables, config=config, tuning=tuning, split=split, timings=timings)


def tuning_summary(tuning: TuneResult, split: Split) -> dict[str, Any]:
    """The ``tuning`` section of metrics.json: window, chosen values, validation scores, refit.

    ``validation_scores`` holds the chosen engine's scores beside every
    baseline's on the same validation users; ``refit`` says what the evaluated
    model was trained on (every training event, before ``T``).
    """
    metric = tuning.validation["metric"]
    keys = [key for key in tuning.trials.columns if "@" in key]
    return {
        "validation": tuning.validation,
        "best": _plain(tuning.best),
        "trials": len(tuning.trials),
        "chosen": tuning.chosen,
        "validation_scores": {
            ENGINE: {key: float(tuning.best[key]) for key in keys},
            **{name: {key: float(v) for key, v in scores.items()} for name, scores in tuning.baselines.items()},
        },
        "metric": metric,
        "refit": {"train_events": int(len(split.train)), "before": split.time.isoformat()},
    }


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}


def write_evaluation(result: EvaluationResult, out_dir: str | Path, taxonomy: Taxonomy) -> Path:
    """Write the tables, ``metrics.json``, the report and (when tuned) the config, atomically.

    The folder is replaced whole: a crash leaves the previous complete output.

    Returns
    -------
    Path
        ``out_dir``.
    """
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        t = result.tables
        write_parquet(t.recommendations, tmp / S.RECOMMENDATIONS_FILE)
        write_parquet(t.test, tmp / S.TEST_FILE)
        write_parquet(t.users, tmp / S.USERS_FILE)
        write_parquet(t.items, tmp / S.ITEMS_FILE)
        write_json(result.metrics, tmp / S.METRICS_FILE)
        if result.tuning is not None:
            (tmp / S.TUNED_CONFIG_FILE).write_text(result.config.to_toml(), encoding="utf-8")
            result.tuning.trials.to_csv(tmp / S.TRIALS_FILE, index=False)
        write_report(result.metrics, tmp, taxonomy)
    return out

