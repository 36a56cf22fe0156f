"""Vectors in the collaborative space for items and users without (enough) events.

Items: a ridge regression from content vectors to item factors, learned on
warm items, gives a fresh approved item a collaborative vector the same night
(:class:`ItemColdStart`).

Users: the centroid of warm users' factors in the user's
(group, sub_group, region) segment, backing off to (group, region), (group)
and all users when a segment has fewer than ``min_segment_users`` warm users;
blended with the user's topic prior projected into factor space::

    v = (1 - topic_prior_blend) * centroid + topic_prior_blend * ridge(topic_prior)

where ``ridge`` is a ridge regression from warm users' topic profiles
(``TopicProfiles.user_topics_``) to their factors (:class:`UserColdStart`).
Users with a few events are better served by
:meth:`recsys.training.collaborative.CollaborativeModel.fold_in`.

Both classes persist as ``.npy`` arrays, a JSON description and (users) a
Parquet key table: ``save(dir)`` / ``load(dir)``, no pickle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from recsys.columns import GROUP, REGION, SUB_GROUP
from recsys.config import ColdStartConfig, check_section
from recsys.exceptions import ArtifactError, ConfigError, NotFittedError, SchemaError
from recsys.training.compiled_sums import blocked_mean, group_means

if TYPE_CHECKING:
    from recsys.bundle import BundleReader, BundleWriter

FORMAT = 1
#: names in the component's part of the bundle (recsys.bundle adds the suffixes)
META_NAME = "meta"
KEYS_NAME = "keys"
#: back-off levels of a user segment, most specific first
LEVELS = ("segment", "group_region", "group", "global")
LEVEL = "level"
N_USERS = "n_users"


def _matrix(values: Any, name: str, width: int | None = None, *, keep_float32: bool = False) -> np.ndarray:
    """``values`` as a checked 2-d float64 array; ``keep_float32`` leaves float32 input as it is.

    At 3.1M users a float64 copy of the user factors is 1.6 GB and of the topic
    profiles 0.6 GB, so the per-user inputs keep their dtype (their sums are
    taken in float64 all the same); the finiteness check runs a block of rows at
    a time for the same reason.
    """
    arr = np.asarray(values)
    if not (keep_float32 and arr.dtype == np.float32):
        arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2:
        raise ConfigError(f"{name} must be a 2-d array, got shape {arr.shape}")
    if width is not None and arr.shape[1] != width:
        raise ConfigError(f"{name} must have {width} columns, got {arr.shape[1]}")
    for start in range(0, len(arr), _CHUNK):
        if not np.isfinite(arr[start:start + _CHUNK]).all():
            raise ConfigError(f"{name} must be finite (no NaN/inf)")
    return arr


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form ridge with an unpenalised intercept: return (coef (d, f), intercept (f,))."""
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ xc + alpha * np.eye(x.shape[1])
    coef = np.linalg.lstsq(gram, xc.T @ yc, rcond=None)[0] if alpha == 0 else np.linalg.solve(gram, xc.T @ yc)
    return coef, y_mean - x_mean @ coef


#: rows per block of the float64 sums over all users (a block's float64 copy stays ~30 MB)
_CHUNK = 1 << 16


def _mean_rows(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``x[rows].mean(axis=0)`` in float64, summed a block of rows at a time (compiled: no copy of the rows)."""
    return blocked_mean(x, rows, _CHUNK)


def _ridge_rows(x: np.ndarray, y: np.ndarray, rows: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_ridge` of ``x[rows]`` on ``y[rows]``, their centred products summed a block of rows at a time."""
    x_mean, y_mean = _mean_rows(x, rows), _mean_rows(y, rows)
    gram = alpha * np.eye(x.shape[1])
    cross = np.zeros((x.shape[1], y.shape[1]))
    for start in range(0, len(rows), _CHUNK):
        block = rows[start:start + _CHUNK]
        xc = x[block].astype(np.float64) - x_mean
        gram += xc.T @ xc
        cross += xc.T @ (y[block].astype(np.float64) - y_mean)
    coef = np.linalg.lstsq(gram, cross, rcond=None)[0] if alpha == 0 else np.linalg.solve(gram, cross)
    return coef, y_mean - x_mean @ coef


def _sorted_codes(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``values`` as text (``str(v)``, as a groupby over ``astype(str)`` sees them): each row's
    position in the sorted distinct texts, and those texts."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    texts = np.asarray([str(v) for v in uniques], dtype=object)
    distinct, position = np.unique(texts.astype(str), return_inverse=True)
    return position.reshape(-1)[codes].astype(np.int64), distinct.astype(object)


def _write(writer: "BundleWriter", arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    for name, values in arrays.items():
        writer.array(name, np.ascontiguousarray(values))
    writer.json(META_NAME, meta)


def _read(reader: "BundleReader", names: Sequence[str], kind: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    meta = reader.json(META_NAME)
    if not isinstance(meta, dict) or meta.get("kind") != kind or meta.get("format") != FORMAT:
        got = meta if isinstance(meta, dict) else {}
        raise ArtifactError(
            f"{reader.root}: holds {got.get('kind')!r} format {got.get('format')!r}, expected {kind!r} format {FORMAT}"
        )
    # read whole (not memory-mapped): the arrays are small and are converted to float32 copies anyway
    return {name: reader.array(name, mmap=False) for name in names}, meta


class ItemColdStart:
    """Ridge regression from content vectors to collaborative item factors.

    Parameters
    ----------
    config : ColdStartConfig
        ``ridge_alpha``: L2 penalty (0 = least squares).

    Attributes
    ----------
    coef_ : ndarray, float32 (n_features, width)
    intercept_ : ndarray, float32 (width,)
    n_warm_ : int
        Number of warm items it was fitted on.
    """

    def __init__(self, config: ColdStartConfig) -> None:
        self.config = config

    def fit(self, content_vectors_warm: np.ndarray, item_factors_warm: np.ndarray) -> "ItemColdStart":
        """Learn the mapping on warm items.

        Parameters
        ----------
        content_vectors_warm : ndarray, (n_warm, n_features)
        item_factors_warm : ndarray, (n_warm, width)
            Row ``k`` of both is the same item.

        Returns
        -------
        self

        Raises
        ------
        ConfigError
            If an input is not a finite 2-d array, the row counts differ, or
            ``ridge_alpha`` < 0.

        Notes
        -----
        With no warm item (no engagement yet) the mapping is all zeros: every
        cold item gets the zero vector, i.e. no collaborative signal.
        """
        check_section(self.config)
        x = _matrix(content_vectors_warm, "content_vectors_warm")
        y = _matrix(item_factors_warm, "item_factors_warm")
        if len(x) != len(y):
            raise ConfigError(
                f"content_vectors_warm and item_factors_warm need the same number of rows; got {len(x)} and {len(y)}"
            )
        if len(x):
            coef, intercept = _ridge(x, y, self.config.ridge_alpha)
        else:
            coef, intercept = np.zeros((x.shape[1], y.shape[1])), np.zeros(y.shape[1])
        self.coef_ = coef.astype(np.float32)
        self.intercept_ = intercept.astype(np.float32)
        self.n_warm_ = int(len(x))
        return self

    def transform(self, content_vectors: np.ndarray) -> np.ndarray:
        """Map content vectors into the collaborative item space.

        Parameters
        ----------
        content_vectors : ndarray, (n, n_features)

        Returns
        -------
        ndarray, float32 (n, width)

        Raises
        ------
        NotFittedError
            Before ``fit``.
        ConfigError
            If the input is not a finite 2-d array of ``n_features`` columns.
        """
        if not hasattr(self, "coef_"):
            raise NotFittedError("ItemColdStart is not fitted; call fit() or load() first")
        x = _matrix(content_vectors, "content_vectors", width=self.coef_.shape[0])
        return (x @ self.coef_ + self.intercept_).astype(np.float32)

    def save(self, writer: "BundleWriter") -> None:
        """Write ``coef``, ``intercept`` and ``meta`` through a bundle writer (the component protocol)."""
        if not hasattr(self, "coef_"):
            raise NotFittedError("ItemColdStart is not fitted; nothing to save")
        meta = {"kind": "item_cold_start", "format": FORMAT, "ridge_alpha": self.config.ridge_alpha,
                "n_warm": self.n_warm_}
        _write(writer, {"coef": self.coef_, "intercept": self.intercept_}, meta)

    @classmethod
    def load(cls, reader: "BundleReader") -> "ItemColdStart":
        """Read what :meth:`save` wrote.

        Raises
        ------
        ArtifactError
            If a file is missing, unreadable, of another kind or format, or the shapes disagree.
        """
        arrays, meta = _read(reader, ("coef", "intercept"), "item_cold_start")
        out = cls(ColdStartConfig(ridge_alpha=float(meta.get("ridge_alpha", 1.0))))
        if arrays["coef"].ndim != 2 or arrays["intercept"].shape != (arrays["coef"].shape[1],):
            raise ArtifactError(f"{reader.root}: coef and intercept shapes disagree")
        out.coef_, out.intercept_ = arrays["coef"].astype(np.float32), arrays["intercept"].astype(np.float32)
        out.n_warm_ = int(meta.get("n_warm", 0))
        return out


class UserColdStart:
    """Segment centroids of warm users' factors, blended with a topic-prior projection.

    Parameters
    ----------
    config : ColdStartConfig
        ``min_segment_users`` (back-off threshold), ``topic_prior_blend``
        (weight of the topic projection), ``ridge_alpha`` (of the projection).

    Attributes
    ----------
    keys_ : DataFrame
        ``level, group, sub_group, region, n_users``, one row per centroid;
        ``""`` in a column the level does not use. ``level`` is one of
        :data:`LEVELS`; the ``global`` row is always there.
    centroids_ : ndarray, float32 (n_keys, width)
        Row k = mean factors of the warm users of ``keys_`` row k.
    topic_coef_ : ndarray, float32 (n_topics, width) or None
    topic_intercept_ : ndarray, float32 (width,) or None
        Ridge projection of a topic distribution into factor space; None when
        fitted without topic profiles (the blend is then skipped).
    """

    def __init__(self, config: ColdStartConfig) -> None:
        self.config = config

    def fit(
        self,
        user_factors: np.ndarray,
        users_df: pd.DataFrame,
        user_topics: np.ndarray | None = None,
        warm: np.ndarray | None = None,
    ) -> "UserColdStart":
        """Compute centroids (and the topic projection) over warm users.

        Parameters
        ----------
        user_factors : ndarray, (n_users, width)
        users_df : DataFrame
            ``group, region`` and optional ``sub_group`` (missing = ``""``), row
            u = user u of ``user_factors``.
        user_topics : ndarray, (n_users, n_topics), optional
            Topic profiles (``TopicProfiles.user_topics_``) to learn the
            projection from.
        warm : ndarray of bool, (n_users,), optional
            Which users count. Default: users with a non-zero factor vector.

        Returns
        -------
        self

        Raises
        ------
        ConfigError
            On an invalid config or arrays of the wrong shape.

        Notes
        -----
        With no warm user (no engagement yet) there is only the ``global``
        centroid, the zero vector, and no topic projection.
        SchemaError
            If ``users_df`` lacks ``group`` or ``region`` or has another row count.
        """
        check_section(self.config)
        factors = _matrix(user_factors, "user_factors", keep_float32=True)
        missing = [c for c in (GROUP, REGION) if c not in users_df.columns]
        if missing:
            raise SchemaError(f"users table lacks column(s) {missing}; has {list(users_df.columns)}")
        if len(users_df) != len(factors):
            raise SchemaError(f"users table has {len(users_df)} rows, user_factors {len(factors)}")
        if warm is None:
            warm = np.abs(factors).sum(axis=1) > 0
        warm = np.asarray(warm, dtype=bool)
        if warm.shape != (len(factors),):
            raise ConfigError(f"warm must be a bool array of shape ({len(factors)},), got {warm.shape}")

        warm_rows = np.flatnonzero(warm)
        # each warm user's code per column, numbered in the codes' sort order (integer order = text order)
        columns = {
            GROUP: users_df[GROUP],
            SUB_GROUP: users_df[SUB_GROUP].fillna("") if SUB_GROUP in users_df else pd.Series([""] * len(users_df)),
            REGION: users_df[REGION],
        }
        ranks, names = {}, {}
        for col, values in columns.items():
            ranks[col], names[col] = _sorted_codes(values.iloc[warm_rows])
        keys, centroids = [], []
        by_level = {
            "segment": [GROUP, SUB_GROUP, REGION],
            "group_region": [GROUP, REGION],
            "group": [GROUP],
        }
        for level, cols in by_level.items():
            # one integer per warm user and combination, in the combinations' text order (a groupby
            # over the code strings of 3.1M users held ~0.6 GB of Python strings at the city)
            combined = np.zeros(len(warm_rows), dtype=np.int64)
            for col in cols:
                combined = combined * len(names[col]) + ranks[col]
            found, first, inverse, counts = np.unique(combined, return_index=True, return_inverse=True, return_counts=True)
            # each combination's mean factors, its users added in ascending order (one pass, no row copies)
            means = group_means(factors, warm_rows, inverse.reshape(-1), len(found))
            for k in range(len(found)):
                parts = {col: names[col][ranks[col][first[k]]] for col in cols}
                keys.append((level, parts.get(GROUP, ""), parts.get(SUB_GROUP, ""), parts.get(REGION, ""), int(counts[k])))
                centroids.append(means[k])
        keys.append(("global", "", "", "", len(warm_rows)))
        centroids.append(_mean_rows(factors, warm_rows) if len(warm_rows) else np.zeros(factors.shape[1]))
        self.keys_ = pd.DataFrame(keys, columns=[LEVEL, GROUP, SUB_GROUP, REGION, N_USERS]).astype(
            {LEVEL: str, GROUP: str, SUB_GROUP: str, REGION: str, N_USERS: np.int64}
        )
        self.centroids_ = np.asarray(centroids, dtype=np.float32)

        self.topic_coef_ = self.topic_intercept_ = None
        if user_topics is not None:
            topics = _matrix(user_topics, "user_topics", keep_float32=True)
            if len(topics) != len(factors):
                raise ConfigError(f"user_topics has {len(topics)} rows, user_factors {len(factors)}")
        if user_topics is not None and warm.any():
            coef, intercept = _ridge_rows(topics, factors, warm_rows, self.config.ridge_alpha)
            self.topic_coef_, self.topic_intercept_ = coef.astype(np.float32), intercept.astype(np.float32)
        self._build_lookup()
        return self

    def _build_lookup(self) -> None:
        self._lookup = {
            (row[LEVEL], row[GROUP], row[SUB_GROUP], row[REGION]): k
            for k, row in enumerate(self.keys_[[LEVEL, GROUP, SUB_GROUP, REGION]].to_dict("records"))
        }

    def _centroid_row(self, group: str, sub_group: str, region: str) -> int:
        """Row of the most specific centroid with at least ``min_segment_users`` users."""
        counts = self.keys_[N_USERS].to_numpy()
        for key in (
            ("segment", group, sub_group or "", region),
            ("group_region", group, "", region),
            ("group", group, "", ""),
        ):
            k = self._lookup.get(key)
            if k is not None and counts[k] >= self.config.min_segment_users:
                return k
        return self._lookup[("global", "", "", "")]

    def vectors_for(
        self,
        groups: Sequence[str],
        sub_groups: Sequence[str],
        regions: Sequence[str],
        topic_priors: np.ndarray | None = None,
    ) -> np.ndarray:
        """Return cold-start vectors for many users.

        Parameters
        ----------
        groups, sub_groups, regions : sequences of str, length n
            Segment codes (``""`` for no sub-group). A code no warm user has
            simply backs off to the next level.
        topic_priors : ndarray, (n, n_topics), optional
            Topic distributions (e.g. ``TopicProfiles.prior_for``) to blend in.

        Returns
        -------
        ndarray, float32 (n, width)

        Raises
        ------
        NotFittedError
            Before ``fit``.
        ConfigError
            If the lengths differ or ``topic_priors`` has the wrong shape.
        """
        if not hasattr(self, "centroids_"):
            raise NotFittedError("UserColdStart is not fitted; call fit() or load() first")
        groups, sub_groups, regions = list(groups), list(sub_groups), list(regions)
        if not len(groups) == len(sub_groups) == len(regions):
            raise ConfigError(
                f"groups, sub_groups and regions must have the same length, "
                f"got {len(groups)}, {len(sub_groups)}, {len(regions)}"
            )
        # a city's users share a few hundred (group, sub-group, region) codes: back off once per code
        known: dict[tuple[str, str, str], int] = {}
        rows = [
            known[key] if key in known else known.setdefault(key, self._centroid_row(*key))
            for key in zip(groups, sub_groups, regions)
        ]
        rows = np.asarray(rows, dtype=np.int64)
        if topic_priors is None or self.topic_coef_ is None:
            return self.centroids_[rows].astype(np.float32)
        priors = _matrix(topic_priors, "topic_priors", width=self.topic_coef_.shape[0], keep_float32=True)
        if len(priors) != len(rows):
            raise ConfigError(f"topic_priors has {len(priors)} rows, expected {len(rows)}")
        w = self.config.topic_prior_blend
        # a block of rows at a time: the city's ~600k cold users took five float64 (n, width)
        # temporaries at once (1.5 GB, the night's cold start peak); each row's arithmetic is the same
        out = np.empty((len(rows), self.centroids_.shape[1]), dtype=np.float32)
        for start in range(0, len(rows), _CHUNK):
            part = slice(start, start + _CHUNK)
            block = self.centroids_[rows[part]].astype(np.float64)
            prior = priors[part].astype(np.float64)
            out[part] = (1.0 - w) * block + w * (prior @ self.topic_coef_ + self.topic_intercept_)
        return out

    def vector_for(self, group: str, sub_group: str, region: str, topic_prior: np.ndarray | None = None) -> np.ndarray:
        """Return one cold-start vector, float32 (width,); see :meth:`vectors_for`."""
        priors = None if topic_prior is None else np.asarray(topic_prior, dtype=np.float64).reshape(1, -1)
        return self.vectors_for([group], [sub_group], [region], priors)[0]

    def save(self, writer: "BundleWriter") -> None:
        """Write ``centroids``, ``keys`` (a table), the projection arrays and ``meta`` (the component protocol)."""
        if not hasattr(self, "centroids_"):
            raise NotFittedError("UserColdStart is not fitted; nothing to save")
        arrays = {"centroids": self.centroids_}
        if self.topic_coef_ is not None:
            arrays.update(topic_coef=self.topic_coef_, topic_intercept=self.topic_intercept_)
        meta = {
            "kind": "user_cold_start",
            "format": FORMAT,
            "config": {
                "min_segment_users": self.config.min_segment_users,
                "topic_prior_blend": self.config.topic_prior_blend,
                "ridge_alpha": self.config.ridge_alpha,
            },
            "topic_projection": self.topic_coef_ is not None,
        }
        _write(writer, arrays, meta)
        writer.table(KEYS_NAME, self.keys_)

    @classmethod
    def load(cls, reader: "BundleReader") -> "UserColdStart":
        """Read what :meth:`save` wrote.

        Raises
        ------
        ArtifactError
            If a file is missing, unreadable, of another kind or format, or the shapes disagree.
        """
        arrays, meta = _read(reader, ("centroids",), "user_cold_start")
        has_topics = bool(meta.get("topic_projection"))
        if has_topics:
            arrays.update(_read(reader, ("topic_coef", "topic_intercept"), "user_cold_start")[0])
        keys = reader.table(KEYS_NAME)
        if list(keys.columns) != [LEVEL, GROUP, SUB_GROUP, REGION, N_USERS] or len(keys) != len(arrays["centroids"]):
            raise reader.error(f"{KEYS_NAME}.parquet", "does not match centroids.npy")
        out = cls(ColdStartConfig(**meta.get("config", {})))
        out.keys_ = keys.astype({LEVEL: str, GROUP: str, SUB_GROUP: str, REGION: str, N_USERS: np.int64})
        out.centroids_ = arrays["centroids"].astype(np.float32)
        out.topic_coef_ = arrays["topic_coef"].astype(np.float32) if has_topics else None
        out.topic_intercept_ = arrays["topic_intercept"].astype(np.float32) if has_topics else None
        out._build_lookup()
        return out
