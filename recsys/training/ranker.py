"""The learned ranker: a LightGBM model over the registered ranking features.

Lambdarank over candidate queries, or a pointwise (binary) model of
engagement when shown over impressions plus a weighted popularity term (the
*exposure term*, :meth:`LearnedRanker.exposure`); see
``recsys/training/ranker_training.py``.

:class:`LearnedRanker` wraps a ``lightgbm.Booster`` with the feature names
it was trained on. It is saved in the bundle as LightGBM's own text model
format (``ranker.txt``) plus a JSON sidecar (``ranker.json``: feature names,
best iteration, training report) -- no pickle -- and checksummed with every
other bundle file. Predictions run the trees compiled to native code
(:mod:`recsys.training.compiled_trees`, ``lleaves``): the same scores as
``Booster.predict`` at 6-7x less time per row on real serving rows; LightGBM fits the model and
holds it. Prediction runs single-threaded per call: a serving call scores a
few hundred rows, and the callers already parallelise over blocks of users.
Reasons come from :meth:`LearnedRanker.group_contributions`: each feature's
share of a row's score, the trees' part by the row's decision paths
(:mod:`recsys.training.tree_paths`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.exceptions import ConfigError
from recsys.training.compiled_trees import CompiledTrees, compile_trees
from recsys.training.tree_paths import TreePaths, parse_trees

if TYPE_CHECKING:
    import lightgbm as lgb  # heavy: LightGBM loads only to fit or load a ranker

    from recsys.bundle import BundleReader, BundleWriter

#: the feature that marks a user without engagement (0): rows of the cold users' exposure term
COLD_FEATURE = "user_history"
#: the exposure model reorders a list within blocks of this many ranks (the block training measured):
#: a list's first 10 (next 10, ...) items stay the ranker's first 10 (next 10, ...), only their order changes
REORDER_BLOCK = 10
#: bundle file names
MODEL_FILE = "ranker.txt"
EXPOSURE_MODEL_FILE = "ranker_exposure.txt"
META_FILE = "ranker.json"
_F64_MAX = np.finfo(np.float64).max


def warm_rows(x: np.ndarray, names: list[str]) -> np.ndarray:
    """Rows of users with engagement before the cut (``COLD_FEATURE`` above 0; missing counts as 0).

    The one rule for warm and cold rows: training's and serving's starting score, the exposure
    term's cold users and the per-population choice (``ranker_training``) all read it.
    """
    return np.nan_to_num(x[:, names.index(COLD_FEATURE)], nan=0.0) > 0


def base_score(values: np.ndarray, transform: str = "log1p") -> np.ndarray:
    """The ranker's starting score from its base feature (missing = 0).

    ``log1p`` of a non-negative feature (a count or share), or with
    ``transform = "identity"`` the feature itself (a log-odds already).
    """
    v = np.asarray(values, dtype=np.float64)
    # np.nan_to_num's values (NaN -> 0, +-inf -> +-the largest float) in two ufuncs: it costs ~15 us
    # of Python a call, and a serving call reads this three times
    v = np.clip(np.where(np.isnan(v), 0.0, v), -_F64_MAX, _F64_MAX)
    if transform == "identity":
        return v.astype(np.float32)
    return np.log1p(np.maximum(v, 0.0)).astype(np.float32)


def mean_base(x: np.ndarray, columns: list[int], scales: list[float]) -> np.ndarray:
    """An averaged starting score: the mean over several features of ``log1p(feature / scale)``.

    Each feature is divided by its mean on the training rows (``scales``), so
    features on different scales (shares, counts per day) weigh alike.
    """
    total = np.zeros(len(x), np.float64)
    for column, scale in zip(columns, scales):
        total += base_score(np.asarray(x[:, column], np.float64) / float(scale))
    return (total / max(len(columns), 1)).astype(np.float32)


@dataclass
class LearnedRanker:
    """A fitted LightGBM ranker and the feature names of its columns.

    Attributes
    ----------
    booster : lightgbm.Booster
    feature_names : list of str
        Column order of the matrix :meth:`predict` takes (registry names).
    report : dict
        Training facts for the manifest and the docs: examples, users,
        validation NDCG, best iteration, timings.
    """

    booster: lgb.Booster
    feature_names: list[str]
    report: dict[str, Any] = field(default_factory=dict)
    base_feature: str | None = None
    #: a lambdarank model of logged engagement over candidates, weighted into the score of a ranker
    #: fitted on impressions in place of one popularity feature (``[ranker] exposure = "model"``)
    exposure_model: LearnedRanker | None = None

    def base(self, x: np.ndarray, column: int | None = None) -> np.ndarray:
        """The starting score: ``log1p`` of the base feature (0 without one).

        ``x`` holds every feature column, or with ``column`` only the base
        feature's values in that column.
        """
        if self.base_feature is None:
            return np.zeros(len(x), np.float32)
        members = self.report.get("base_members")
        if column is None and members:
            # several features averaged (``fit``'s ``base_members``); the first pass reads one column
            return mean_base(x, [self.feature_names.index(n) for n in members], self.report["base_scales"])
        whole = column is None
        column = self.feature_names.index(self.base_feature) if column is None else column
        out = base_score(x[:, column], self.report.get("base_transform", "log1p"))
        warm = self.report.get("base_feature_warm")
        if whole and warm is not None and COLD_FEATURE in self.feature_names:
            # users with engagement start from their own population's feature (``fit``); the first
            # pass (``column``) reads the base feature for everyone
            rows = warm_rows(x, self.feature_names)
            if rows.any():
                out[rows] = base_score(x[rows, self.feature_names.index(warm)], self.report.get("base_transform", "log1p"))
        return out

    @property
    def used_features(self) -> np.ndarray:
        """Which feature columns a tree splits on (bool, one per feature); the base feature counts as used."""
        best = self.report.get("best_iteration")  # trees past it are never evaluated; 0: none is
        if best == 0:
            used = np.zeros(len(self.feature_names), bool)
        else:
            used = np.asarray(self.booster.feature_importance("split", iteration=best or None)) > 0
        cold = self._exposure_cold()
        base = (self.base_feature, *(self.report.get("base_members") or ()))
        if self.report.get("base_feature_warm") is not None:
            base = (*base, self.report["base_feature_warm"], COLD_FEATURE)
        for name in (*base, self.exposure_feature, *((cold[0], COLD_FEATURE) if cold else ())):
            if name is not None:
                used[self.feature_names.index(name)] = True
        if self._reads_exposure_model:
            used |= self.exposure_model.used_features
        return used

    @property
    def _reads_exposure_model(self) -> bool:
        """Whether serving evaluates the exposure model: its term has a weight, or it orders the lists."""
        return self.exposure_model is not None and (self.reorders or float(self.report.get("exposure_weight") or 0.0) != 0.0)

    @property
    def reorders(self) -> bool:
        """Whether serving puts each list's items in the exposure model's order (``report["reorder_by_exposure"]``,
        chosen at training; a bundle without the key: no)."""
        return self.exposure_model is not None and bool(self.report.get("reorder_by_exposure"))

    @property
    def exposure_feature(self) -> str | None:
        """The popularity feature added to the score (``report["exposure_feature"]``), if any."""
        return self.report.get("exposure_feature")

    def _exposure_cold(self) -> tuple[str, float] | None:
        """The cold users' exposure feature and weight (``report["exposure_feature_cold"]``), if any."""
        name = self.report.get("exposure_feature_cold")
        if name is None or COLD_FEATURE not in self.feature_names:
            return None
        return name, float(self.report.get("exposure_weight_cold") or 0.0)

    def exposure(self, x: np.ndarray, logged: np.ndarray | None = None) -> np.ndarray:
        """``exposure_weight x log1p(exposure feature)``: what the old system will show and users
        engage with, added to a ranker fitted on impressions (0 without an exposure feature).

        Rows of users without engagement (``user_history`` 0) take the cold
        users' own feature and weight where the ranker has them. ``logged``:
        the exposure model's scores of the rows, when the caller has them.
        """
        name, weight = self.exposure_feature, float(self.report.get("exposure_weight") or 0.0)
        out = np.zeros(len(x), np.float32)
        if self.exposure_model is not None:
            # the logged-engagement ranker's score in place of one popularity feature (for everyone)
            if weight == 0.0:
                return out
            return (weight * (self.exposure_model.predict(x) if logged is None else logged)).astype(np.float32)
        if name is not None and weight != 0.0:
            out = (weight * base_score(x[:, self.feature_names.index(name)])).astype(np.float32)
        cold = self._exposure_cold()
        if cold is not None:
            rows = ~warm_rows(x, self.feature_names)
            if rows.any():
                term = cold[1] * base_score(x[rows, self.feature_names.index(cold[0])])
                out[rows] = term.astype(np.float32)
        return out

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        y: np.ndarray,
        groups: np.ndarray,
        feature_names: list[str],
        *,
        valid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        base_feature: str | None = None,
        monotone: list[int] | None = None,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        early_stopping_rounds: int = 30,
        seed: int = 0,
        threads: int = 2,
        objective: str = "lambdarank",
        base_transform: str = "log1p",
        base_members: list[str] | None = None,
        base_scales: list[float] | None = None,
        base_feature_warm: str | None = None,
    ) -> LearnedRanker:
        """Fit a LightGBM model: lambdarank, or with ``objective = "binary"`` pointwise.

        Parameters
        ----------
        x : ndarray of float32, shape (n, n_features)
        y : ndarray of int, shape (n,)
            Relevance labels (0 / 1).
        groups : ndarray of int, shape (n_queries,)
            Rows per query (user), in row order.
        feature_names : list of str
        valid : (x, y, groups), optional
            Held-out queries for early stopping on NDCG@10.
        base_feature : str, optional
            A feature whose ``log1p`` is the starting score (LightGBM's
            ``init_score``): the trees learn corrections to that ordering, so
            with early stopping the ranker starts from, and can only move
            away from, the best single signal (a baseline's).
        monotone : list of int, optional
            Per feature, +1 (the score may only rise with it), -1 or 0
            (LightGBM's ``monotone_constraints``): popularity never lowers
            an item, so popularity alone orders items as the baselines do.
        n_estimators, learning_rate, num_leaves, min_child_samples, early_stopping_rounds
            LightGBM settings.
        seed : int
        threads : int
        objective : {"lambdarank", "binary"}
            ``binary`` fits the probability of the label row by row (log
            loss): for examples that are impressions, where most queries
            hold a handful of rows with one label. Early stopping is on
            NDCG@10 of the ``valid`` queries either way.
        base_transform : {"log1p", "identity"}
            How the base feature becomes the starting score (:func:`base_score`):
            ``identity`` for a feature that is a log-odds already, the
            starting point of a ``binary`` objective.
        base_members, base_scales : list, optional
            Several features and their training means: the starting score is
            then :func:`mean_base` of them (``base_feature`` still names the
            one a single column gives, for the serving's first pass).
        base_feature_warm : str, optional
            The starting feature of rows whose user has engagement
            (``user_history`` above 0); the other rows start from
            ``base_feature``. A population's best single signal can differ
            from the pooled one (``ranker_training.population_bases``).

        Returns
        -------
        LearnedRanker
        """
        import lightgbm as lgb  # heavy: LightGBM loads only to fit a ranker

        params = {
            "objective": objective,
            # early stopping on the held-out queries' NDCG@10 under either objective: a pointwise
            # model's log loss keeps improving on what differs between users (their propensity),
            # which never changes one user's list and costs trees at serving time
            "metric": "ndcg",
            "eval_at": [10],
            "learning_rate": learning_rate,
            "num_leaves": num_leaves,
            "min_data_in_leaf": min_child_samples,
            "feature_fraction": 0.9,
            "bagging_fraction": 0.9,
            "bagging_freq": 1,
            "lambdarank_truncation_level": 20,
            "seed": seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": threads,
            "verbosity": -1,
        }
        if monotone is not None and any(monotone):
            params["monotone_constraints"] = list(monotone)
        names_list = list(feature_names)

        def init(m: np.ndarray) -> np.ndarray | None:
            if base_feature is None:
                return None
            if base_members:
                return mean_base(m, [names_list.index(n) for n in base_members], list(base_scales or [])).astype(np.float64)
            out = base_score(m[:, names_list.index(base_feature)], base_transform).astype(np.float64)
            if base_feature_warm is not None:
                rows = warm_rows(m, names_list)
                out[rows] = base_score(m[rows, names_list.index(base_feature_warm)], base_transform)
            return out

        train = lgb.Dataset(x, label=y, group=groups, feature_name=names_list, init_score=init(x), free_raw_data=True)
        sets, names, callbacks = [], [], []
        if valid is not None and len(valid[2]):
            sets = [lgb.Dataset(valid[0], label=valid[1], group=valid[2], init_score=init(valid[0]), reference=train)]
            names = ["valid"]
            if early_stopping_rounds > 0:
                callbacks = [lgb.early_stopping(early_stopping_rounds, verbose=False)]
        record: dict[str, Any] = {}
        callbacks.append(lgb.record_evaluation(record))
        booster = lgb.train(params, train, num_boost_round=n_estimators, valid_sets=sets, valid_names=names, callbacks=callbacks)
        best = int(booster.best_iteration or booster.current_iteration())
        curve = record.get("valid", {}).get("ndcg@10", [])
        report = {
            "objective": objective,
            "best_iteration": best,
            "valid_ndcg_at_10": float(curve[best - 1]) if curve and best >= 1 else None,
            "valid_ndcg_at_10_first": float(curve[0]) if curve else None,
        }
        report["base_feature"] = base_feature
        report["base_transform"] = base_transform
        if base_feature_warm is not None:
            report["base_feature_warm"] = base_feature_warm
        if base_members:
            report["base_members"] = list(base_members)
            report["base_scales"] = [float(v) for v in base_scales or []]
        return cls(booster=booster, feature_names=names_list, report=report, base_feature=base_feature)

    # ---- scoring ---------------------------------------------------------
    def _memo(self, name: str, build: Any) -> Any:
        """``build(model text)`` of the trees up to ``report["best_iteration"]``, kept under ``name``."""
        best = self.report.get("best_iteration")
        memo = self.__dict__.get(name)
        # keyed by the iteration count: ``fewest_trees`` may cut it after a first prediction
        if memo is None or memo[0] != best:
            memo = (best, build(self.booster.model_to_string(num_iteration=best or None)))
            self.__dict__[name] = memo
        return memo[1]

    def trees(self) -> CompiledTrees:
        """The trees up to ``report["best_iteration"]``, compiled (once, through the cache; see
        :mod:`recsys.training.compiled_trees`): what :meth:`predict` evaluates."""
        return self._memo("_compiled", compile_trees)

    def paths(self) -> TreePaths:
        """The same trees as flat arrays (parsed once), for :meth:`contributions`."""
        return self._memo("_paths", parse_trees)

    def prepare(self) -> None:
        """Compile the trees :meth:`predict` evaluates now, or read them from the cache, and load the
        path walk's kernel: serving calls this when it loads a bundle, so that no request pays a
        compile (seconds)."""
        if self.report.get("best_iteration") != 0:
            self.trees()
            self.paths().prepare()
        if self._reads_exposure_model:
            self.exposure_model.prepare()

    def __getstate__(self) -> dict[str, Any]:
        # native code does not pickle (e.g. to a Dask worker): the receiver compiles, or reads the cache
        state = dict(self.__dict__)
        state.pop("_compiled", None)
        return state

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ConfigError(f"ranker input must have {len(self.feature_names)} feature columns, got shape {x.shape}")
        return x

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Scores, float32 (n,); higher ranks first."""
        return self.predict_logged(x)[0]

    def predict_logged(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores, float32 (n,), and the exposure model's own scores of the same rows, float32 (n,),
        where the score is made of them (``None`` otherwise).

        Serving orders a list by the exposure model (:attr:`reorders`): it reads
        the picked rows' scores here instead of predicting them a second time
        (each row's prediction is its own, so they are the same bits).
        """
        x = self._check(x)
        if len(x) == 0:
            return np.zeros(0, np.float32), None
        best = self.report.get("best_iteration")
        raw = self.base(x)
        if best != 0:  # 0: the starting score alone was best on held-out users (``fewest_trees``)
            raw = raw + self.trees().predict(x)
        logged = None
        if self.exposure_model is not None and float(self.report.get("exposure_weight") or 0.0) != 0.0:
            logged = self.exposure_model.predict(x)
        return (raw + self.exposure(x, logged)).astype(np.float32), logged

    def score_block(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Scores of a whole block of users' candidates in one prediction, float32 (m, c).

        One prediction over every masked row of the block (its fixed cost per
        call is paid once per block, not per user). ``recommend_many`` and the
        push gather their rescored rows themselves and call :meth:`predict`
        once per block (``recsys.ranking.core``): the same scores.

        Parameters
        ----------
        x : ndarray of float32, shape (m, c, n_features)
            Feature rows of ``m`` users' ``c`` candidates.
        mask : ndarray of bool, shape (m, c)
            Rows to score; the others get ``-inf`` and are never predicted.

        Returns
        -------
        ndarray of float32, shape (m, c)
        """
        mask = np.asarray(mask, dtype=bool)
        if x.ndim != 3 or x.shape[:2] != mask.shape:
            raise ConfigError(f"score_block needs x of shape (m, c, features) and a mask (m, c); got {x.shape} and {mask.shape}")
        out = np.full(mask.shape, -np.inf, dtype=np.float32)
        if mask.any():
            out[mask] = self.predict(x[mask])
        return out

    def contributions(self, x: np.ndarray, means: np.ndarray | None = None) -> np.ndarray:
        """How much each feature lifted each row's score, float64 (n, n_features).

        The trees' part by the row's decision paths (Saabas' method,
        :mod:`recsys.training.tree_paths`): each split on the path credits its
        feature with the change of the node value from parent to child, so a
        feature no split on the path reads contributes exactly 0. The terms
        outside the trees -- the starting score (:meth:`base`) and a
        popularity exposure term (:meth:`exposure`) -- each read one feature per
        row, so a feature's part of them is the term minus the term with that
        feature at its training mean (``report["feature_means"]``, or
        ``means``). An exposure model adds its own contributions times its weight.
        """
        x = self._check(x)
        means = np.asarray(self.report.get("feature_means") or np.zeros(x.shape[1]), np.float32) if means is None else means
        out = np.zeros(x.shape, np.float64)
        if len(x) == 0:
            return out
        if self.report.get("best_iteration") != 0:
            out += self.paths().contributions(x)
        weight = float(self.report.get("exposure_weight") or 0.0)
        if self.exposure_model is not None and weight != 0.0:
            out += weight * self.exposure_model.contributions(x, means)
        columns = self._term_columns()
        if columns:
            # the rows, then the rows with each column at its mean, through one call of the terms (each
            # row's terms are its own; a call per copy cost ~15 us of a single request's reasons)
            n = len(x)
            copies = np.tile(x, (len(columns) + 1, 1))
            for i, j in enumerate(columns, start=1):
                copies[i * n : (i + 1) * n, j] = means[j]
            terms = self._terms(copies)
            for i, j in enumerate(columns, start=1):
                out[:, j] += terms[:n] - terms[i * n : (i + 1) * n]
        return out

    def _terms(self, x: np.ndarray) -> np.ndarray:
        """The score outside the trees: the starting score, plus the exposure term unless a model gives it."""
        terms = self.base(x).astype(np.float64)
        return terms if self.exposure_model is not None else terms + self.exposure(x)

    def _term_columns(self) -> list[int]:
        """The feature columns :meth:`_terms` reads (``user_history`` only chooses which one a row reads)."""
        names = [self.base_feature, *(self.report.get("base_members") or ()), self.report.get("base_feature_warm")]
        if self.exposure_model is None and float(self.report.get("exposure_weight") or 0.0) != 0.0:
            names.append(self.exposure_feature)
        cold = self._exposure_cold()
        if self.exposure_model is None and cold is not None and cold[1] != 0.0:
            names.append(cold[0])
        return sorted({self.feature_names.index(n) for n in names if n is not None})

    def group_contributions(self, x: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
        """How much each group of features lifted each row's score, float32 (n, len(groups)).

        The sum of the group's :meth:`contributions`. A positive entry means
        the group's features raised the item above where the model starts an
        average row; a group no split on the row's paths reads, and no term
        outside the trees reads, contributes exactly 0. One walk of each tree
        per row, about one prediction's work (the occlusion this replaced
        predicted each row again per group).
        """
        x = self._check(x)
        if len(x) == 0 or not groups:
            return np.zeros((len(x), len(groups)), np.float32)
        memo = self.__dict__.get("_member")
        # the 0/1 membership matrix, kept for the groups object serving passes every call
        if memo is None or memo[0] is not groups or memo[1].shape != (x.shape[1], len(groups)):
            member = np.zeros((x.shape[1], len(groups)), np.float64)
            for g, cols in enumerate(groups):
                member[cols, g] = 1.0
            memo = self.__dict__["_member"] = (groups, member)
        return (self.contributions(x) @ memo[1]).astype(np.float32)

    # ---- bundle I/O ------------------------------------------------------
    def save(self, writer: BundleWriter) -> None:
        """Write ``ranker.txt`` (LightGBM text model) and ``ranker.json`` through a bundle writer."""
        writer.text(MODEL_FILE, self.booster.model_to_string())
        meta: dict[str, Any] = {"feature_names": self.feature_names, "report": self.report}
        if self.exposure_model is not None:
            writer.text(EXPOSURE_MODEL_FILE, self.exposure_model.booster.model_to_string())
            meta["exposure_model"] = {"report": self.exposure_model.report, "base_feature": self.exposure_model.base_feature}
        writer.json(META_FILE.removesuffix(".json"), meta)

    @classmethod
    def load(cls, reader: BundleReader) -> LearnedRanker | None:
        """Read a bundle's ranker; ``None`` when the bundle has none (a linear-blend bundle).

        Raises
        ------
        ArtifactError
            If one of the two files is missing or unreadable.
        """
        import lightgbm as lgb  # heavy: LightGBM loads only for a bundle that has a learned ranker

        if not reader.has(MODEL_FILE) and not reader.has(META_FILE):
            return None
        for name in (MODEL_FILE, META_FILE):
            if not reader.has(name):
                raise reader.error(name, f"missing from the model bundle (the ranker needs {MODEL_FILE} and {META_FILE})")
        meta = reader.json(META_FILE.removesuffix(".json"))
        try:
            booster = lgb.Booster(model_str=reader.text(MODEL_FILE))
        except (ValueError, lgb.basic.LightGBMError) as exc:
            raise reader.error(MODEL_FILE, f"unreadable ranker ({exc})") from None
        if not isinstance(meta, dict):
            raise reader.error(META_FILE, "not a JSON object")
        names = list(meta.get("feature_names", []))
        if names != list(booster.feature_name()):
            raise reader.error(META_FILE, f"feature names do not match {reader.path(MODEL_FILE)}")
        report = dict(meta.get("report", {}))
        base = report.get("base_feature")
        if base is not None and base not in names:
            raise reader.error(META_FILE, f"base feature {base!r} is not one of its features")
        if report.get("base_feature_warm") not in (None, *names) or (
            report.get("base_feature_warm") is not None and COLD_FEATURE not in names
        ):
            raise reader.error(META_FILE, f"warm users' base feature {report['base_feature_warm']!r} is not one of its features")
        members, scales = report.get("base_members") or [], report.get("base_scales") or []
        if any(m not in names for m in members) or len(scales) != len(members):
            raise reader.error(META_FILE, f"base members {members!r} are not its features, each with a scale")
        for key in ("exposure_feature", "exposure_feature_cold"):
            if report.get(key) not in (None, *names):
                raise reader.error(META_FILE, f"exposure feature {report[key]!r} is not one of its features")
        exposure_model = None
        if isinstance(meta.get("exposure_model"), dict):
            sub = meta["exposure_model"]
            try:
                sub_booster = lgb.Booster(model_str=reader.text(EXPOSURE_MODEL_FILE))
            except (ValueError, lgb.basic.LightGBMError) as exc:
                raise reader.error(EXPOSURE_MODEL_FILE, f"unreadable ranker ({exc})") from None
            if list(sub_booster.feature_name()) != names or sub.get("base_feature") not in (None, *names):
                raise reader.error(EXPOSURE_MODEL_FILE, f"features do not match {reader.path(MODEL_FILE)}")
            exposure_model = cls(sub_booster, names, dict(sub.get("report", {})), sub.get("base_feature"))
        return cls(booster=booster, feature_names=names, report=report, base_feature=base, exposure_model=exposure_model)
