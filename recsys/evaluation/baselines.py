"""Baseline policies, judged with exactly the engine's eligibility.

A policy scores every catalogue item for a batch of users; :func:`recommend`
turns scores into top-k lists under the engine's own eligibility rules
(:mod:`recsys.ranking.eligibility`: approved, published and unexpired at the
list time, audience targets include the user) minus everything the user
engaged with positively, dismissed or reported in training. Ties are broken by
catalogue order (lower item index first), so the same inputs and seed always
give the same lists.

Baselines (all read the model trained as of the split time ``T``, the one the
engine serves from):

``random``
    Uniform random scores, seeded per user.
``popular``
    All-time count of positive engagements.
``recent_popular``
    Distinct users with a positive engagement in the last ``window_days`` before
    ``T``; the window (1 day to a year) is tuned on a validation window carved
    from the training events only: the last ``validation_days`` before ``T``, or
    the latest ``validation_share`` of the training events when those reach
    further back (a sparse log, where a week holds a handful of users).
``segment_popular``
    Recency-weighted (decayed) positive engagement in the user's group x region
    segment, ties broken by the city-wide recent popularity.
``als``
    Raw collaborative scores with the engine's factors: ``user_factors @
    item_factors.T``.
``content``
    Cosine of the item's content vector with the mean content vector of the
    user's training positives.

``als`` and ``content`` cannot score a cold user (no positive engagement before
``T``); such a user gets the ``segment_popular`` list instead, flagged in the
``fallback`` column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys import columns as C
from recsys.config import is_int, is_number
from recsys.evaluation.split import quantile_time
from recsys.exceptions import ConfigError, NotFittedError
from recsys.ranking import eligibility as E
from recsys.ranking.catalog import Catalog, build_catalog
from recsys.seeds import check_random_state
from recsys.training.model import TrainedModel

FALLBACK = "fallback"
#: output columns of :func:`recommend`
LIST_COLUMNS = (C.USER_ID, C.RANK, C.ITEM_ID, C.SCORE, FALLBACK)


@dataclass
class ListingContext:
    """Everything a policy may read when it makes lists at the split time.

    Build it with :meth:`build`.

    Attributes
    ----------
    model : TrainedModel
        Trained as of ``time`` (the engine's model).
    catalog : Catalog
        The ranking's item arrays for the current catalogue.
    time : Timestamp
        The list time ``T`` (tz-aware UTC).
    train_events : DataFrame
        The training side of the split (events before ``T``).
    """

    model: TrainedModel
    catalog: Catalog
    time: pd.Timestamp
    train_events: pd.DataFrame
    _row_of: pd.Index = field(init=False, repr=False)
    _masks: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._row_of = pd.Index(self.model.users[C.USER_ID].astype(str).to_numpy())
        tax = self.model.taxonomy
        self._group_pos = self.model.users[C.GROUP].astype(str).map({c: i for i, c in enumerate(tax.groups)})
        self._region_pos = self.model.users[C.REGION].astype(str).map({c: i for i, c in enumerate(tax.regions)})
        self._static = E.static_mask(self.catalog, E.ItemFilter())
        self._now_ns = int(self.time.as_unit("ns").value)
        seen = sp.csr_matrix(self.model.seen)
        self._positive = sp.csr_matrix((seen > 0).astype(np.float32))
        self._warm = np.asarray(self._positive.getnnz(axis=1) > 0)

    @classmethod
    def build(cls, model: TrainedModel, items: pd.DataFrame | None, time: pd.Timestamp, train_events: pd.DataFrame) -> "ListingContext":
        """Build the context; ``items`` is the current catalogue (``None``: the model's copy)."""
        return cls(
            model=model,
            catalog=build_catalog(model, items, model.config.ranking),
            time=time,
            train_events=train_events,
        )

    @property
    def n_items(self) -> int:
        """Items in the ranking's index space (bundle items, then new catalogue items)."""
        return self.catalog.n_items

    def user_rows(self, user_ids: Sequence[str]) -> np.ndarray:
        """Model user index of each id.

        Raises
        ------
        ConfigError
            If an id is not a user of the model (naming it).
        """
        rows = self._row_of.get_indexer(np.asarray(user_ids, dtype=object).astype(str))
        if (rows < 0).any():
            bad = np.asarray(user_ids, dtype=object)[rows < 0][0]
            raise ConfigError(f"user_id {bad!r} is not a user of the model; lists need users known at training")
        return rows.astype(np.int64)

    def warm(self, rows: np.ndarray) -> np.ndarray:
        """True where the user has a positive engagement before ``T``."""
        return self._warm[rows]

    def positives(self) -> sp.csr_matrix:
        """CSR (n_users, n_bundle_items) float32: 1 where the user engaged positively in training."""
        return self._positive

    def eligible(self, rows: np.ndarray) -> np.ndarray:
        """Eligibility of every item for each user at ``T``, history excluded.

        Returns
        -------
        ndarray, bool (len(rows), n_items)
        """
        out = np.empty((len(rows), self.n_items), dtype=bool)
        for i, row in enumerate(rows):
            key = (int(self._group_pos.iat[row]), int(self._region_pos.iat[row]))
            mask = self._masks.get(key)
            if mask is None:
                mask = E.full_mask(self.catalog, self._static, self._now_ns, *key)
                self._masks[key] = mask
            out[i] = mask
            out[i, E.seen_row(self.model.seen, int(row))] = False
        return out

    def pad(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Extend a per-bundle-item array to the catalogue's index space with ``fill``."""
        values = np.asarray(values, dtype=np.float64)
        extra = self.n_items - values.shape[-1]
        if extra <= 0:
            return values
        shape = values.shape[:-1] + (extra,)
        return np.concatenate([values, np.full(shape, fill)], axis=-1)


class Policy:
    """A policy scores catalogue items for users; :func:`recommend` makes its lists.

    Subclasses set :attr:`name`, implement :meth:`fit` (returning ``self``,
    learned state ending in ``_``) and :meth:`score`.
    """

    name: ClassVar[str] = ""
    #: False: cold users get the segment_popular list instead
    scores_cold_users: ClassVar[bool] = True

    def fit(self, context: ListingContext) -> "Policy":
        """Learn what the policy needs from ``context``; return self."""
        self.context_ = context
        return self

    def score(self, rows: np.ndarray) -> np.ndarray:
        """Return scores ``(len(rows), n_items)``; higher is better, ``-inf`` never listed."""
        raise NotImplementedError

    def _check_fitted(self) -> ListingContext:
        context = getattr(self, "context_", None)
        if context is None:
            raise NotFittedError(f"policy {self.name!r} is not fitted; call fit(context) first")
        return context


class RandomPolicy(Policy):
    """Uniform random scores, seeded per (seed, user) so batching never changes a list."""

    name = "random"

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, context: ListingContext) -> "RandomPolicy":
        check_random_state(self.seed)  # validate the seed where it comes in
        self.context_ = context
        return self

    def score(self, rows: np.ndarray) -> np.ndarray:
        ctx = self._check_fitted()
        return np.stack([np.random.default_rng([self.seed, int(r)]).random(ctx.n_items) for r in rows]) if len(
            rows
        ) else np.zeros((0, ctx.n_items))


class PopularPolicy(Policy):
    """All-time count of positive engagements before ``T``."""

    name = "popular"

    def fit(self, context: ListingContext) -> "PopularPolicy":
        self.context_ = context
        self.scores_ = context.pad(context.model.popularity_all_time)
        return self

    def score(self, rows: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return np.broadcast_to(self.scores_, (len(rows), len(self.scores_))).copy()


def _distinct_positive_users(events: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, item_ids: pd.Index) -> np.ndarray:
    ts = events[C.TIMESTAMP]
    keep = ((ts >= start) & (ts < end) & events[C.EVENT_TYPE].isin(C.EVENT_TYPES_POSITIVE)).to_numpy()
    pairs = events.loc[keep, [C.USER_ID, C.ITEM_ID]].drop_duplicates()
    idx = item_ids.get_indexer(pairs[C.ITEM_ID].astype(str))
    return np.bincount(idx[idx >= 0], minlength=len(item_ids)).astype(np.float64)


class RecentPopularPolicy(Policy):
    """Trending items: distinct users with a positive engagement in the last days before ``T``.

    Parameters
    ----------
    window_days : float, optional
        The trend window; ``None`` tunes it over ``grid`` on the validation
        window ``[T - validation_days, T)`` of the training events: for each
        window, the top ``tune_k`` items counted over the window before the
        validation window are scored by how many users engaged positively with
        them inside it.
    grid : tuple of float
        Candidate windows in days. Up to a year: on a sparse log (MovieLens:
        ~15 ratings a day, 3-16 users in the last month before a split) the
        short windows are noise and the baseline would be a straw man.
    validation_days : float
        Shortest validation window, in days.
    validation_share : float
        The validation window reaches back far enough to hold about this
        share of the training events (it starts no later than their
        ``1 - validation_share`` time quantile); in [0, 1), 0 = exactly
        ``validation_days``.
    tune_k : int
        Length of the global list judged during tuning.
    """

    name = "recent_popular"

    def __init__(
        self,
        *,
        window_days: float | None = None,
        grid: tuple[float, ...] = (1.0, 3.0, 7.0, 14.0, 30.0, 90.0, 180.0, 365.0),
        validation_days: float = 7.0,
        validation_share: float = 0.1,
        tune_k: int = 10,
    ) -> None:
        self.window_days = window_days
        self.grid = grid
        self.validation_days = validation_days
        self.validation_share = validation_share
        self.tune_k = tune_k

    def _check_params(self) -> None:
        days = [self.window_days] if self.window_days is not None else list(self.grid)
        if not days or any(not is_number(d) or d <= 0 for d in days):
            raise ConfigError(f"recent_popular window_days / grid must be positive numbers of days, got {days!r}")
        if not isinstance(self.validation_days, (int, float)) or self.validation_days <= 0:
            raise ConfigError(f"recent_popular validation_days must be a positive number, got {self.validation_days!r}")
        share = self.validation_share
        if not is_number(share) or not 0.0 <= share < 1.0:
            raise ConfigError(f"recent_popular validation_share must be a number in [0, 1), got {share!r}")

    def fit(self, context: ListingContext) -> "RecentPopularPolicy":
        self._check_params()
        items = pd.Index(context.model.items[C.ITEM_ID].astype(str).to_numpy())
        events = context.train_events
        t = context.time
        self.trials_ = {}
        if self.window_days is None:
            t_val = t - pd.Timedelta(days=self.validation_days)
            if self.validation_share > 0 and len(events):
                # a sparse log: reach back until the window holds validation_share of the events
                t_val = min(t_val, quantile_time(events, 1.0 - float(self.validation_share)))
            self.validation_start_ = t_val
            future = _distinct_positive_users(events, t_val, t, items)
            for days in self.grid:
                past = _distinct_positive_users(events, t_val - pd.Timedelta(days=days), t_val, items)
                top = np.lexsort((np.arange(len(past)), -past))[: self.tune_k]
                self.trials_[float(days)] = float(future[top].sum())
            # best objective; on a tie the shorter window (more "recent")
            self.window_days_ = float(max(self.trials_, key=lambda d: (self.trials_[d], -d)))
        else:
            self.window_days_ = float(self.window_days)
        recent = _distinct_positive_users(events, t - pd.Timedelta(days=self.window_days_), t, items)
        all_time = np.asarray(context.model.popularity_all_time, dtype=np.float64)
        # counts are integers: adding all-time popularity scaled below 1 only breaks ties
        self.scores_ = context.pad(recent + all_time / (all_time.max() + 1.0))
        self.context_ = context
        return self

    def score(self, rows: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return np.broadcast_to(self.scores_, (len(rows), len(self.scores_))).copy()


class SegmentPopularPolicy(Policy):
    """Recency-weighted popularity in the user's group x region segment."""

    name = "segment_popular"

    def fit(self, context: ListingContext) -> "SegmentPopularPolicy":
        model = context.model
        seg = model.segments[[C.GROUP, C.REGION]].astype(str)
        lookup = {(g, r): i for i, (g, r) in enumerate(zip(seg[C.GROUP], seg[C.REGION]))}
        users = model.users[[C.GROUP, C.REGION]].astype(str)
        # a user whose segment has no row falls back to the city-wide row (the last one)
        self.segment_of_user_ = np.fromiter(
            (lookup.get((g, r), len(seg)) for g, r in zip(users[C.GROUP], users[C.REGION])), np.int64, len(users)
        )
        city = np.asarray(model.popularity_recent, dtype=np.float64)
        table = np.vstack([np.asarray(model.segment_popularity, dtype=np.float64), city[None, :]])
        top = table.max(axis=1, keepdims=True)
        scaled = np.divide(table, top, out=np.zeros_like(table), where=top > 0)
        tie = city / city.max() if city.max() > 0 else np.zeros_like(city)
        # the city-wide term is far below one segment step: it orders the segment's ties
        self.table_ = context.pad(scaled + 1e-6 * tie[None, :])
        self.context_ = context
        return self

    def score(self, rows: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return self.table_[self.segment_of_user_[rows]]


class ALSPolicy(Policy):
    """Raw collaborative scores with the engine's factors (``implicit``'s own ranking)."""

    name = "als"
    scores_cold_users = False

    def fit(self, context: ListingContext) -> "ALSPolicy":
        self.context_ = context
        self.user_factors_ = np.asarray(context.model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(context.catalog.cf, dtype=np.float32)
        return self

    def score(self, rows: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return (self.user_factors_[rows] @ self.item_factors_.T).astype(np.float64)


class ContentPolicy(Policy):
    """Content-embedding similarity to the user's training positives."""

    name = "content"
    scores_cold_users = False

    def fit(self, context: ListingContext) -> "ContentPolicy":
        self.context_ = context
        self.content_ = np.asarray(context.catalog.content, dtype=np.float32)
        return self

    def score(self, rows: np.ndarray) -> np.ndarray:
        ctx = self._check_fitted()
        pos = ctx.positives()[rows]
        n_bundle = pos.shape[1]
        profile = np.asarray(pos @ self.content_[:n_bundle], dtype=np.float64)
        norms = np.linalg.norm(profile, axis=1, keepdims=True)
        profile = np.divide(profile, norms, out=np.zeros_like(profile), where=norms > 0)
        return profile @ self.content_.T.astype(np.float64)


#: baseline classes by name, in report order
BASELINES: dict[str, type[Policy]] = {
    cls.name: cls
    for cls in (RandomPolicy, PopularPolicy, RecentPopularPolicy, SegmentPopularPolicy, ALSPolicy, ContentPolicy)
}


def make_baseline(name: str, *, seed: int = 0) -> Policy:
    """Return an unfitted baseline by name.

    Raises
    ------
    ConfigError
        For an unknown name, listing the valid ones.
    """
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; valid: {', '.join(BASELINES)}")
    cls = BASELINES[name]
    return cls(seed=seed) if cls is RandomPolicy else cls()


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` columns per row: score descending, then column ascending.

    ``-inf`` scores are never returned (``-1`` padding, score ``-inf``).

    Returns
    -------
    (ndarray int64 (m, k), ndarray float64 (m, k))
    """
    m, n = scores.shape
    kk = min(k, n)
    if n > 8 * kk and n > 2048:
        # partial sort first; an exact tie at the cut keeps whichever item argpartition
        # kept, which is still deterministic for given scores
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    else:
        part = np.broadcast_to(np.arange(n), (m, n))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)[:, :kk]
    idx = np.take_along_axis(part, order, axis=1).astype(np.int64)
    val = np.take_along_axis(vals, order, axis=1)
    idx[~np.isfinite(val)] = -1
    val[~np.isfinite(val)] = -np.inf
    if kk < k:
        idx = np.hstack([idx, np.full((m, k - kk), -1, np.int64)])
        val = np.hstack([val, np.full((m, k - kk), -np.inf)])
    return idx, val


def recommend(
    policy: Policy,
    context: ListingContext,
    user_ids: Sequence[str],
    k: int,
    *,
    fallback: Policy | None = None,
    batch_size: int = 512,
) -> pd.DataFrame:
    """Make ``policy``'s top-k list for every user, under the engine's eligibility.

    Parameters
    ----------
    policy : Policy
        Fitted on ``context``.
    context : ListingContext
    user_ids : sequence of str
        Users of the model.
    k : int
        List length (lists are shorter only when fewer items are eligible).
    fallback : Policy, optional
        Fitted policy for the users ``policy`` cannot score (cold users);
        default a :class:`SegmentPopularPolicy` fitted on ``context``.
    batch_size : int
        Users scored together (lowered on large catalogues so that one
        ``batch_size x n_items`` block stays near 128 MiB).

    Returns
    -------
    DataFrame
        ``user_id, rank (1..), item_id, score, fallback``; users in the given
        order, ranks ascending.

    Raises
    ------
    ConfigError
        For ``k < 1`` or a user unknown to the model.
    """
    if not is_int(k) or k < 1:
        raise ConfigError(f"k must be a positive int, got {k!r}")
    ids = np.asarray(user_ids, dtype=object).astype(str)
    rows = context.user_rows(ids)
    if not policy.scores_cold_users and fallback is None:
        fallback = SegmentPopularPolicy().fit(context)
    item_ids = np.asarray(context.catalog.item_ids, dtype=object)
    # a (batch x n_items) float64 score block stays under ~128 MiB on large catalogues
    batch_size = max(16, min(int(batch_size), (1 << 24) // max(context.n_items, 1)))
    parts = []
    for start in range(0, len(rows), batch_size):
        r = rows[start : start + batch_size]
        scores = np.asarray(policy.score(r), dtype=np.float64)
        cold = np.zeros(len(r), dtype=bool) if policy.scores_cold_users else ~context.warm(r)
        if cold.any():
            scores[cold] = fallback.score(r[cold])  # type: ignore[union-attr]
        scores[~context.eligible(r)] = -np.inf
        idx, val = top_k(scores, int(k))
        filled = idx >= 0
        u, pos = np.nonzero(filled)
        parts.append(
            pd.DataFrame(
                {
                    C.USER_ID: ids[start : start + batch_size][u],
                    C.RANK: (pos + 1).astype(np.int64),
                    C.ITEM_ID: item_ids[idx[filled]].astype(str),
                    C.SCORE: val[filled],
                    FALLBACK: cold[u],
                }
            )
        )
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(LIST_COLUMNS, ("str", "int64", "str", "float64", "bool"))})
    return pd.concat(parts, ignore_index=True)
