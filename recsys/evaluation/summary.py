"""From the evaluation's output tables to the numbers of ``metrics.json``.

The run computes ``metrics.json`` with :func:`compute_metrics` from exactly the
tables it writes (``recommendations.parquet``, ``test.parquet``,
``users.parquet``, ``items.parquet``), and :func:`recompute_metrics` does the
same from the files, so anyone can check the numbers.

Who is averaged: the *evaluated users* are the listed users with at least one
relevant item; every metric of a population block (accuracy, coverage,
diversity, novelty) is over the population's evaluated users. The simulated
push (synthetic data only) is over every listed user: expected engagements per
pushed slot = the sum of the true engagement probabilities of the top-k items
over (users x k), an empty slot counting as a push without engagement, so the
``oracle`` policy is its exact upper bound.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.evaluation import metrics as M
from recsys.evaluation.populations import iter_populations
from recsys.exceptions import SchemaError

POLICY = "policy"
TRUE_PROB = "true_prob"
FALLBACK = "fallback"
TRAIN_USERS = "train_users"
ELIGIBLE = "eligible"
ORACLE = "oracle"
ENGINE = "engine"
SEGMENT_POPULAR = "segment_popular"
#: metrics of the paired comparisons (engine minus each baseline), at every k
PAIRED_METRICS = ("ndcg", "precision", "recall", "hit_rate")

RECOMMENDATIONS_FILE = "recommendations.parquet"
TEST_FILE = "test.parquet"
USERS_FILE = "users.parquet"
ITEMS_FILE = "items.parquet"
METRICS_FILE = "metrics.json"
#: with tuning: the chosen configuration and the trials
TUNED_CONFIG_FILE = "tuned_config.toml"
TRIALS_FILE = "tuning_trials.csv"


@dataclass
class EvaluationTables:
    """The tables the numbers are computed from (and written next to them).

    Attributes
    ----------
    recommendations : DataFrame
        ``policy, user_id, rank, item_id, score, fallback`` (+ ``true_prob`` on
        synthetic data): every policy's top-k list for every listed user.
    test : DataFrame
        ``user_id, item_id``: the relevant pairs.
    users : DataFrame
        Every listed user with population labels (see
        :func:`recsys.evaluation.populations.population_labels`).
    items : DataFrame
        The catalogue: ``item_id, topics, target_groups, target_regions,
        train_users, eligible`` (eligible = approved, published, unexpired at T).
    """

    recommendations: pd.DataFrame
    test: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame


@dataclass(frozen=True)
class MetricSettings:
    """How the numbers are computed (recorded in ``metrics.json`` under ``settings``).

    Attributes
    ----------
    ks : tuple of int
        Cut-offs.
    policies : tuple of str
        Policies in report order.
    n_users : int
        Users in the training data (the ``N`` of novelty).
    n_boot : int
        Bootstrap resamples of each interval.
    seed : int
        Bootstrap seed.
    headline_k : int
        The k of the simulated push headline and of exposure shares.
    """

    ks: tuple[int, ...]
    policies: tuple[str, ...]
    n_users: int
    n_boot: int = 1000
    seed: int = 0
    headline_k: int = 10
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "MetricSettings":
        """Rebuild from ``metrics.json``'s ``settings``."""
        return cls(
            ks=tuple(int(k) for k in doc["ks"]),
            policies=tuple(doc["policies"]),
            n_users=int(doc["n_users"]),
            n_boot=int(doc["n_boot"]),
            seed=int(doc["seed"]),
            headline_k=int(doc["headline_k"]),
            extra=dict(doc.get("extra", {})),
        )


def _num(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def _per_user(
    recs: pd.DataFrame, test: pd.DataFrame, users: np.ndarray, n_rel: np.ndarray, items: pd.DataFrame, info, topics, ks
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    k_max = max(ks)
    hits = M.hit_matrix(recs, test, users, k_max)
    lists = M.list_matrix(recs, users, items[C.ITEM_ID].to_numpy(), k_max)
    values: dict[str, np.ndarray] = {}
    for k in ks:
        for name, arr in M.accuracy_at_k(hits, n_rel, k).items():
            values[M.metric_key(name, k)] = arr
        values[M.metric_key("diversity", k)] = M.diversity_at_k(lists, topics, k)
        values[M.metric_key("novelty", k)] = M.novelty_at_k(lists, info, k)
    return values, lists


def _block(values: dict[str, np.ndarray], lists: np.ndarray, mask: np.ndarray, ci: np.ndarray, n_items: int, ks) -> dict:
    n = int(mask.sum())
    block: dict[str, Any] = {"users": n}
    for k in ks:
        for name in M.ACCURACY + M.LIST_METRICS:
            key = M.metric_key(name, k)
            block[key] = _num(values[key][mask].mean()) if n else None
        block[M.metric_key("coverage", k)] = M.coverage_at_k(lists[mask], n_items, k) if n else None
    block["ci95"] = {key: [_num(lo), _num(hi)] for key, (lo, hi) in zip(values, ci)}
    return block


def _set_path(doc: dict, path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        doc = doc.setdefault(part, {})
    doc[path[-1]] = value


def _topic_matrix(items: pd.DataFrame) -> np.ndarray:
    codes = sorted({t for ts in items[C.TOPICS] for t in ts})
    pos = {c: i for i, c in enumerate(codes)}
    out = np.zeros((len(items), max(len(codes), 1)), dtype=bool)
    for row, ts in enumerate(items[C.TOPICS]):
        for t in ts:
            out[row, pos[t]] = True
    return out


def _check_tables(tables: EvaluationTables, settings: MetricSettings) -> None:
    need = {
        "recommendations": (POLICY, C.USER_ID, C.RANK, C.ITEM_ID),
        "test": (C.USER_ID, C.ITEM_ID),
        "users": (C.USER_ID,),
        "items": (C.ITEM_ID, C.TOPICS, C.TARGET_GROUPS, C.TARGET_REGIONS, TRAIN_USERS, ELIGIBLE),
    }
    for name, cols in need.items():
        frame = getattr(tables, name)
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise SchemaError(f"{name} table lacks column(s) {', '.join(missing)}; required: {', '.join(cols)}")
    unknown = sorted(set(tables.recommendations[POLICY].astype(str)) - set(settings.policies))
    if unknown:
        raise SchemaError(f"recommendations name unknown policies {unknown}; settings list {list(settings.policies)}")


def simulated_engagements(recs: pd.DataFrame, n_users: int, k: int) -> float:
    """Expected engagements per pushed slot: sum of ``true_prob`` at rank <= k / (n_users * k).

    Raises
    ------
    SchemaError
        If ``recs`` has no ``true_prob`` column.
    """
    if TRUE_PROB not in recs.columns:
        raise SchemaError(f"recommendations lack {TRUE_PROB!r}: the simulated push needs the ground truth")
    if n_users <= 0:
        return 0.0
    top = recs[TRUE_PROB].to_numpy(dtype=np.float64)[recs[C.RANK].to_numpy() <= k]
    return float(top.sum()) / float(n_users * k)


def compute_metrics(tables: EvaluationTables, settings: MetricSettings) -> dict[str, Any]:
    """Compute every policy's numbers from the output tables.

    Returns
    -------
    dict
        ``{"k", "settings", "policies": {NAME: {"all", "warm", "cold",
        "by_group", "by_region", "by_urban_rural", "fallback", "exposure",
        ["simulated"]}}, ["paired"], ["oracle_ratio", "segment_popular_ratio"]}``;
        each population block holds ``users``, ``METRIC@K`` and ``ci95``;
        ``paired`` is :func:`paired_comparisons` (engine minus each baseline).

    Raises
    ------
    SchemaError
        If a table lacks a column, names an unknown policy, or a list is malformed.
    """
    _check_tables(tables, settings)
    ks = M.check_ks(settings.ks)
    users = tables.users.sort_values(C.USER_ID, kind="stable").reset_index(drop=True)
    test = tables.test[[C.USER_ID, C.ITEM_ID]].astype("str")
    n_rel_all = users[C.USER_ID].astype("str").map(test[C.USER_ID].value_counts()).fillna(0).astype("int64")
    evaluated = users.loc[n_rel_all.to_numpy() > 0].reset_index(drop=True)
    eval_ids = evaluated[C.USER_ID].astype("str").to_numpy()
    n_rel = n_rel_all[n_rel_all > 0].to_numpy()
    items = tables.items.reset_index(drop=True)
    info = M.self_information(items[TRAIN_USERS].to_numpy(), settings.n_users)
    topics = _topic_matrix(items)
    n_catalogue = int(items[ELIGIBLE].to_numpy(dtype=bool).sum())
    recs_all = tables.recommendations
    synthetic = TRUE_PROB in recs_all.columns
    by_policy = {p: recs_all[recs_all[POLICY].astype(str).to_numpy() == p] for p in settings.policies}

    per_user = {}
    for p, recs in by_policy.items():
        per_user[p] = _per_user(recs, test, eval_ids, n_rel, items, info, topics, ks)

    policies: dict[str, dict] = {p: {} for p in settings.policies}
    keys = list(per_user[settings.policies[0]][0]) if settings.policies else []
    for path, mask in iter_populations(evaluated):
        # one bootstrap over all policies and metrics: intervals are paired across policies
        stacked = np.column_stack([per_user[p][0][key][mask] for p in settings.policies for key in keys])
        ci = M.bootstrap_ci(stacked, n_boot=settings.n_boot, seed=settings.seed)
        for i, p in enumerate(settings.policies):
            values, lists = per_user[p]
            part = ci[i * len(keys) : (i + 1) * len(keys)]
            _set_path(policies[p], path, _block(values, lists, mask, part, n_catalogue, ks))

    hk = settings.headline_k
    n_listed = len(users)
    all_ids = users[C.USER_ID].astype("str").to_numpy()
    for p, recs in by_policy.items():
        fb = recs[FALLBACK].to_numpy(dtype=bool) if FALLBACK in recs.columns else np.zeros(len(recs), dtype=bool)
        fb_users = set(recs[C.USER_ID].astype("str").to_numpy()[fb])
        policies[p]["fallback"] = {
            "policy": SEGMENT_POPULAR,
            "users": len(fb_users),
            "evaluated_users": int(np.isin(eval_ids, list(fb_users)).sum()),
        }
        lists = M.list_matrix(recs, all_ids, items[C.ITEM_ID].to_numpy(), hk)
        policies[p]["exposure"] = {
            "k": hk,
            "by_target_region": M.exposure_shares(lists, list(items[C.TARGET_REGIONS]), hk),
            "by_target_group": M.exposure_shares(lists, list(items[C.TARGET_GROUPS]), hk),
        }
        if synthetic:
            sim = {"k": hk, "engagements_per_push": simulated_engagements(recs, n_listed, hk)}
            for k in ks:
                sim[f"engagements_per_push@{k}"] = simulated_engagements(recs, n_listed, k)
            policies[p]["simulated"] = sim

    out: dict[str, Any] = {"k": ks, "settings": _settings_dict(settings), "policies": policies}
    paired = paired_comparisons({p: v for p, (v, _) in per_user.items()}, evaluated, settings, ks)
    if paired is not None:
        out["paired"] = paired
    if synthetic and ORACLE in policies and ENGINE in policies:
        oracle = policies[ORACLE]["simulated"]["engagements_per_push"]
        engine = policies[ENGINE]["simulated"]["engagements_per_push"]
        out["oracle_ratio"] = engine / oracle if oracle > 0 else None
        if SEGMENT_POPULAR in policies:
            seg = policies[SEGMENT_POPULAR]["simulated"]["engagements_per_push"]
            out["segment_popular_ratio"] = engine / seg if seg > 0 else None
    return out


def paired_comparisons(
    per_user: dict[str, dict[str, np.ndarray]],
    evaluated: pd.DataFrame,
    settings: MetricSettings,
    ks: list[int],
    reference: str = ENGINE,
) -> dict[str, Any] | None:
    """Engine minus each baseline, per population, with paired bootstrap intervals.

    Parameters
    ----------
    per_user : dict
        Policy -> metric key -> per-user values over the rows of ``evaluated``.
    evaluated : DataFrame
        Population labels of the evaluated users.
    settings : MetricSettings
        The bootstrap's resamples and seed (the same resamples as the
        per-policy intervals).
    ks : list of int
    reference : str
        The policy compared against every other (the oracle is not a baseline).

    Returns
    -------
    dict or None
        ``{"reference", "level", "method", "baselines", "metrics",
        "vs": {BASELINE: {"all": {"users", "ndcg@10": {"diff", "ci95"}, ...},
        "warm", "cold", "by_group": {CODE: ...}, ...}}}``; None when the
        reference policy or every baseline is missing.
    """
    rivals = [p for p in settings.policies if p not in (reference, ORACLE)]
    if reference not in per_user or not rivals:
        return None
    keys = [M.metric_key(name, k) for k in ks for name in PAIRED_METRICS]
    ref = per_user[reference]
    vs: dict[str, dict] = {p: {} for p in rivals}
    for path, mask in iter_populations(evaluated):
        n = int(mask.sum())
        base = np.column_stack([ref[key][mask] for p in rivals for key in keys])
        other = np.column_stack([per_user[p][key][mask] for p in rivals for key in keys])
        # one resampling for every baseline and metric of the population (cheaper, and paired across them)
        diff, ci = M.paired_difference_ci(base, other, n_boot=settings.n_boot, seed=settings.seed)
        for j, p in enumerate(rivals):
            block: dict[str, Any] = {"users": n}
            for i, key in enumerate(keys):
                col = j * len(keys) + i
                block[key] = {"diff": _num(diff[col]), "ci95": [_num(ci[col, 0]), _num(ci[col, 1])]}
            _set_path(vs[p], path, block)
    return {
        "reference": reference,
        "level": 0.95,
        "method": "paired percentile bootstrap over users: the same resampled users for both policies",
        "baselines": rivals,
        "metrics": keys,
        "vs": vs,
    }


def _settings_dict(settings: MetricSettings) -> dict[str, Any]:
    doc = asdict(settings)
    doc["ks"] = list(settings.ks)
    doc["policies"] = list(settings.policies)
    return doc


def read_tables(out_dir: str | Path) -> EvaluationTables:
    """Read the four output tables of an evaluation folder.

    Raises
    ------
    SchemaError
        If a file is missing or unreadable (naming it).
    """
    root = Path(out_dir)
    frames = {}
    for name, fname in (
        ("recommendations", RECOMMENDATIONS_FILE),
        ("test", TEST_FILE),
        ("users", USERS_FILE),
        ("items", ITEMS_FILE),
    ):
        path = root / fname
        try:
            frames[name] = pd.read_parquet(path)
        except FileNotFoundError:
            raise SchemaError(f"{path}: missing from the evaluation folder") from None
        except Exception as exc:  # pyarrow raises several types on corrupt files
            raise SchemaError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    items = frames["items"]
    for col in (C.TOPICS, C.TARGET_GROUPS, C.TARGET_REGIONS):
        items[col] = [list(v) if v is not None else [] for v in items[col]]
    return EvaluationTables(**frames)


def recompute_metrics(out_dir: str | Path) -> dict[str, Any]:
    """Recompute ``metrics.json`` from an evaluation folder's tables.

    Returns the same dict the run wrote (the ``split`` section, which the tables
    cannot give, is copied from the existing file).

    Raises
    ------
    SchemaError
        If ``metrics.json`` or a table is missing or unreadable.
    """
    path = Path(out_dir) / METRICS_FILE
    try:
        written = json.loads(path.read_text(encoding="utf-8"))
        settings = MetricSettings.from_dict(written["settings"])
    except FileNotFoundError:
        raise SchemaError(f"{path}: missing from the evaluation folder") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise SchemaError(f"{path}: unreadable or without settings ({exc})") from None
    doc = compute_metrics(read_tables(out_dir), settings)
    return assemble(doc, written.get("split", {}))


def assemble(doc: dict[str, Any], split: dict[str, Any]) -> dict[str, Any]:
    """Put the ``split`` section in its place (after ``k``) of a metrics dict."""
    out = {"k": doc["k"], "split": split}
    out.update({key: value for key, value in doc.items() if key != "k"})
    return out

