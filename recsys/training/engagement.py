"""The engagement model: what makes a pushed item get engaged with, learned per impression.

Engagement counts mix two things: how good an item is for a user, and how
often the old system showed it to them (the logging policy pushes trending
items and the topics a user's *group* likes). A rate per impression separates
them: an item shown 100 times and engaged with 10 times is worse than one
shown 10 times and engaged with 5 times. So this model is fitted on every
impression of the window -- one row per (user, item) pair shown, label 1 when
the user engaged positively (``click`` or stronger) -- as a logistic
regression with hierarchical effects::

    logit P(engage | item i shown to user u at time t on channel c)
        = b + bias[u]
        + quality[i]                                   # authority[a_i] + item[i]
        + sum_j w_ij * interest[u, t_ij]               # topic interest
        + format_taste[u, f_i]
        + channel_format[c, f_i]                       # the channel's own effect (left out when ranking)
        + sum_j w_ij * ( sum_k fresh[t_ij, k] * exp(-age_i(t) / tau_k)   # freshness, per topic
                         + trend[t_ij] * [t in the last trend_days] )     # what is timely now

    interest[u, t]     = topic[t]  + segment_topic[g x r, t] + sub_group_topic[s, t] + user_topic[u, t]
    format_taste[u, f] = format[f] + segment_format[g x r, f] + sub_group_format[s, f] + user_format[u, f]

``w_ij`` are the item's topic shares (1 / its number of topics), ``g x r``
the user's group x region segment and ``s`` their sub-group. Each effect has
an L2 penalty (a Gaussian prior centred on 0, i.e. on the level above it), so
a user with few impressions keeps their segment's interests and an item
shown a few times keeps its authority level's quality; the penalties are
:class:`recsys.config.EngagementConfig`'s ``l2_*``.

Fitting is penalised maximum likelihood by block coordinate Newton steps
(backfitting): per sweep, each block of effects in turn takes one Newton
step given all the others -- diagonal for the additive effects, a joint K x K
step per topic for the freshness curves, whose time constants overlap too
much for coordinate steps. Each step is a few ``bincount`` calls over the
impressions (or, for the freshness curves, two small matrix products per
topic), so a sweep costs O(impressions x topics per item x K^2). Sweeps stop
when the mean log-loss improves by less than ``tol`` (a few sweeps: on 2 M
impressions of a 100k-user city, 5 sweeps, about 7 s of CPU; stopping early
shrinks the effects a little further, which did not hurt the ranking). The
fit holds about 120-250 bytes per sampled impression (int32 keys, float32
shares and features, per-key arrays over the keys that occur): see
``_Block``.

The ranking uses the terms that differ between items for one user, all in
log-odds: ``quality``, ``interest``, ``format_taste`` and the item's
*timeliness* at the request's time (:func:`timeliness`: the freshness and
trend terms). The intercept, the user's bias and the channel drop out of a
comparison between items; the bundle keeps the intercept and the biases all the
same (``TrainedModel.engagement_intercept``, ``user_bias``), so the serving side
can state the *probability* of engagement
(``Recommender.expected_engagement``), e.g. to price the push's coverage swaps.

Without impressions (a log of engagements only), or without a single
impression that was not engaged with, there is nothing to learn a rate from:
every effect stays 0 and the ranking falls back on its other terms.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.config import EngagementConfig, check_section
from recsys.exceptions import NotFittedError, SchemaError
from recsys.idmap import IdMap
from recsys.taxonomy import Taxonomy

if TYPE_CHECKING:
    from recsys.bundle import BundleReader, BundleWriter

_SECONDS_PER_DAY = 86_400.0
#: sweeps of the latent taste fit before its log-loss may stop it (fit_latent_taste)
_TASTE_MIN_SWEEPS = 5


@dataclass(frozen=True)
class Exposures:
    """One row per (user, item) pair shown in a window of events.

    Attributes
    ----------
    user, item : ndarray of int64, shape (n,)
        Dense user and item indices.
    label : ndarray of float64, shape (n,)
        1.0 where the user engaged positively with the item in the window.
    age_days : ndarray of float64, shape (n,)
        The item's age when first shown (days since ``published_at``); NaN
        when it has no publish time.
    channel : ndarray of int64, shape (n,)
        Position of the channel it was first shown on in the taxonomy's
        channels, -1 when unknown.
    recent : ndarray of bool, shape (n,)
        First shown within the window's last ``trend_days``.
    """

    user: np.ndarray
    item: np.ndarray
    label: np.ndarray
    age_days: np.ndarray
    channel: np.ndarray
    recent: np.ndarray

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def sample(self, n: int, seed: int) -> Exposures:
        """A seeded uniform sample of at most ``n`` rows, in their original order."""
        if n <= 0 or len(self) <= n:
            return self
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(len(self), size=n, replace=False))
        return Exposures(*(getattr(self, f.name)[rows] for f in dataclasses.fields(self)))


def build_exposures(
    events: pd.DataFrame,
    users: IdMap,
    items: IdMap,
    items_df: pd.DataFrame,
    taxonomy: Taxonomy,
    *,
    end: pd.Timestamp,
    trend_days: float,
    codes: tuple[np.ndarray, np.ndarray] | None = None,
    types: np.ndarray | None = None,
) -> Exposures:
    """Collect the shown pairs of a window of clean events.

    A pair is shown when it has an ``impression``; a pair engaged with but
    never logged as shown (a log that drops some impressions) counts as shown
    at its first positive event. Each pair counts once, at its first showing.

    Parameters
    ----------
    events : DataFrame
        Clean contract events (``user_id, item_id, event_type, timestamp``,
        optional ``channel``); events after ``end`` and of unknown users or
        items are ignored.
    users, items : IdMap
        Dense indices.
    items_df : DataFrame
        ``item_id`` and (optional) ``published_at`` of the items.
    taxonomy : Taxonomy
        Channel positions.
    end : Timestamp, tz-aware
        The window's end.
    trend_days : float
        Length of the "recent" part of the window.
    codes, types : ndarray, optional
        The events' user and item indices and type codes when the caller has
        them (see :func:`first_showings`).

    Returns
    -------
    Exposures

    Raises
    ------
    SchemaError
        If a required events column is missing.
    """
    user, item, seconds, channel, label = first_showings(
        events, users, items, taxonomy, end=end, codes=codes, types=types
    )
    return exposures_from_showings(user, item, seconds, channel, label, items, items_df, end=end, trend_days=trend_days)


def first_showings(
    events: pd.DataFrame,
    users: IdMap,
    items: IdMap,
    taxonomy: Taxonomy,
    *,
    end: pd.Timestamp,
    codes: tuple[np.ndarray, np.ndarray] | None = None,
    types: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each shown pair's first showing: the rule of :func:`build_exposures`, before the item features.

    Kept apart so that the nightly history store (:mod:`recsys.training.incremental`)
    can keep the first showings of every pair and merge a day's into them: a
    pair's first showing over a whole window is the earlier of the two.

    ``codes`` (each event's user and item index,
    :func:`~recsys.training.interactions.event_codes`) and ``types`` (its
    :func:`~recsys.training.interactions.type_codes`) are looked up here when
    not given; a training run passes the ones it already has.

    Returns
    -------
    user, item : ndarray of int64
        The pairs, ordered by ``user * n_items + item``.
    seconds : ndarray of float64
        Epoch seconds of the first showing.
    channel : ndarray of int64
        Taxonomy position of its channel (-1 unknown).
    label : ndarray of float64
        1.0 where the pair has a positive event in ``events``.

    Raises
    ------
    SchemaError
        If a required events column is missing.
    """
    missing = [c for c in (C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP) if c not in events.columns]
    if missing:
        raise SchemaError(f"events lack required column(s) {missing}; have {list(events.columns)}")
    # heavy: the interactions step's Arrow lookups (serving loads this module, not that one)
    from recsys.training.interactions import event_codes, positions, type_codes

    # arrays over the whole log, then one row selection: copying the events frame (twice) and
    # hashing its ids as Python strings was this step's time and the full training's memory peak
    type_code = type_codes(events[C.EVENT_TYPE]) if types is None else np.asarray(types)
    positive_all = np.isin(type_code, C.POSITIVE_CODES)
    u_all, i_all = event_codes(events, users, items) if codes is None else codes
    keep = (positive_all | (type_code == C.IMPRESSION_CODE)) & (events[C.TIMESTAMP] <= end).to_numpy()
    rows_kept = np.flatnonzero(keep & (np.asarray(u_all) >= 0) & (np.asarray(i_all) >= 0))
    u, i = np.asarray(u_all)[rows_kept], np.asarray(i_all)[rows_kept]
    positive = positive_all[rows_kept]
    seconds = _epoch_seconds(events[C.TIMESTAMP].iloc[rows_kept])
    if C.CHANNEL in events.columns:
        chan = positions(events[C.CHANNEL].iloc[rows_kept], tuple(taxonomy.channels))
    else:
        chan = np.full(len(rows_kept), -1, dtype=np.int64)

    n_items = len(items)
    # one stable sort by pair, then per pair its earliest event, impressions before positives at equal
    # times (the lowest log position among equals): a three-key lexsort and a hashed unique/isin of the
    # engaged pairs cost several times this over a city's log
    order = np.argsort(u.astype(np.int64) * n_items + i, kind="stable")
    pair_sorted = u[order].astype(np.int64) * n_items + i[order]
    starts = np.flatnonzero(np.concatenate([[True], pair_sorted[1:] != pair_sorted[:-1]])) if len(order) else order
    del pair_sorted
    when = np.round(seconds[order] * 1e6).astype(np.int64) * 2 + positive[order]  # microseconds, then the type
    earliest = np.repeat(np.minimum.reduceat(when, starts), np.diff(np.append(starts, len(order))))
    candidates = np.flatnonzero(when == earliest)
    del when, earliest
    group = np.searchsorted(starts, candidates, side="right")
    rows = order[candidates[np.concatenate([[True], group[1:] != group[:-1]])]] if len(candidates) else candidates
    engaged = np.logical_or.reduceat(positive[order], starts) if len(order) else np.zeros(0, bool)
    return (
        u[rows].astype(np.int64),
        i[rows].astype(np.int64),
        seconds[rows],
        chan[rows].astype(np.int64),
        engaged.astype(np.float64),
    )


def exposures_from_showings(
    user: np.ndarray,
    item: np.ndarray,
    seconds: np.ndarray,
    channel: np.ndarray,
    label: np.ndarray,
    items: IdMap,
    items_df: pd.DataFrame,
    *,
    end: pd.Timestamp,
    trend_days: float,
) -> Exposures:
    """:class:`Exposures` of first showings (:func:`first_showings`): the item's age and the recent flag.

    Parameters
    ----------
    user, item, seconds, channel, label : ndarray
        Aligned first showings (epoch seconds, taxonomy channel position).
    items : IdMap
        Dense item indices.
    items_df : DataFrame
        ``item_id`` and (optional) ``published_at``.
    end : Timestamp, tz-aware
        The window's end.
    trend_days : float
        Length of the "recent" part of the window.

    Returns
    -------
    Exposures
    """
    published = _published_seconds(items, items_df)
    t = np.asarray(seconds, dtype=np.float64)
    end_s = float(end.timestamp())
    return Exposures(
        user=np.asarray(user, dtype=np.int64),
        item=np.asarray(item, dtype=np.int64),
        label=np.asarray(label, dtype=np.float64),
        age_days=(t - published[item]) / _SECONDS_PER_DAY,
        channel=np.asarray(channel, dtype=np.int64),
        recent=t >= end_s - trend_days * _SECONDS_PER_DAY,
    )


def _epoch_seconds(ts: pd.Series) -> np.ndarray:
    return ts.dt.tz_convert("UTC").dt.as_unit("us").astype("int64").to_numpy(dtype=np.float64) / 1e6


def _published_seconds(items: IdMap, items_df: pd.DataFrame) -> np.ndarray:
    """Publish time per item index in epoch seconds, NaN where unknown."""
    if C.PUBLISHED_AT not in items_df.columns:
        return np.full(len(items), np.nan)
    frame = items_df.drop_duplicates(C.ITEM_ID).set_index(C.ITEM_ID)[C.PUBLISHED_AT]
    ts = pd.to_datetime(frame.reindex(pd.Index(items.ids, dtype=object)), utc=True)
    out = _epoch_seconds(ts.fillna(pd.Timestamp(0, tz="UTC")))
    return np.where(ts.isna().to_numpy(), np.nan, out)


def timeliness(
    age_days: np.ndarray,
    topic_idx: np.ndarray,
    topic_weight: np.ndarray,
    topic_freshness: np.ndarray,
    topic_trend: np.ndarray,
    taus_days: np.ndarray,
) -> np.ndarray:
    """The freshness and trend terms of items at one moment, in log-odds.

    ``sum_j w_ij * (sum_k fresh[t_ij, k] * exp(-age_i / tau_k) + trend[t_ij])``.

    Parameters
    ----------
    age_days : ndarray of float, shape (n,)
        Item ages at the moment (negative counts as 0); NaN = no publish time
        (no freshness term, the trend still applies).
    topic_idx : ndarray of int64, shape (n, t_max)
        Topic positions, padded with ``n_topics``.
    topic_weight : ndarray of float32, shape (n, t_max)
        Topic shares, 0 for padding.
    topic_freshness : ndarray of float32, shape (n_topics, K)
    topic_trend : ndarray of float32, shape (n_topics,)
    taus_days : ndarray of float, shape (K,)

    Returns
    -------
    ndarray of float32, shape (n,)
    """
    taus = np.asarray(taus_days, dtype=np.float64)
    age = np.asarray(age_days, dtype=np.float64)
    basis = np.exp(-np.maximum(np.nan_to_num(age, nan=np.inf), 0.0)[:, None] / taus[None, :])
    n_topics = topic_freshness.shape[0]
    # a zero row for the topic lists' padding
    fresh = np.vstack([np.asarray(topic_freshness, np.float64), np.zeros((1, len(taus)))])
    trend = np.append(np.asarray(topic_trend, np.float64), 0.0)
    idx = np.minimum(topic_idx, n_topics)
    per_topic = np.einsum("ntk,nk->nt", fresh[idx], basis) + trend[idx]
    return (per_topic * topic_weight).sum(axis=1).astype(np.float32)


class _Block:
    """One block of effects: ``eta[obs] += weight * theta[key]`` for each (obs, key, weight) entry.

    Entries are either one per shown pair in order (``obs`` and ``weight``
    None: no gathers, no scatters, weight 1) or one per (shown pair, topic of
    its item), whose ``obs`` (int32) and ``weight`` (float32 topic shares)
    arrays the topic-level blocks share: a block keeps views of them and only
    its own int32 ``key``, so a city-scale fit holds one copy of each. A key of
    -1 (an unknown segment, channel, ...) leaves its entry out.

    The labels enter the Newton step only through their weighted sum per key,
    a constant (``label_sum``): a step needs the current probabilities alone.

    A block with more keys than entries (a user x topic level at city scale:
    77 M keys, a few million sampled entries) works on the keys that occur
    (``present``; ``key`` then holds positions into it): every per-key array
    of a step has one value per occurring key, not per possible one. A key
    that does not occur keeps its starting value (0, or a warm start's).
    """

    def __init__(
        self,
        n_keys: int,
        key: np.ndarray,
        l2: float,
        label: np.ndarray,
        obs: np.ndarray | None = None,
        weight: np.ndarray | None = None,
    ) -> None:
        keep = key >= 0
        #: each pair at most once (a scatter into eta needs no bincount then)
        self.unique = obs is None
        if not keep.all():
            rows = np.flatnonzero(keep)
            obs = _small_index(rows, label.size) if obs is None else obs[rows]
            weight = None if weight is None else weight[rows]
            key = key[rows]
        self.obs, self.weight = obs, weight
        #: the occurring keys of a sparse block (None: every key has its own row)
        self.present: np.ndarray | None = None
        #: a sparse block's starting effects of every key (a warm start), float32
        self.base: np.ndarray | None = None
        self.full_size = n_keys
        if key.size < n_keys and key.size:
            self.present, key = np.unique(key, return_inverse=True)
            n_keys = self.present.size
        self.key = key.astype(np.int32, copy=False) if n_keys < 2**31 else key
        self.n_keys = n_keys
        #: one key for every pair (the intercept): sums, no bincount
        self.single = n_keys == 1 and obs is None
        own = label if obs is None else label[obs]
        self.label_sum = self._per_key(own if weight is None else own * weight)
        self.l2 = float(l2)
        self.theta = np.zeros(n_keys)
        #: a warm start's rule: these keys (without a single entry) keep their value (EngagementModel.fit)
        self.unseen: np.ndarray | None = None

    def start_at(self, values: np.ndarray) -> None:
        """Start from ``values`` (one per key of the level, occurring or not) instead of 0."""
        if self.present is None:
            self.theta[...] = values
        else:
            self.base = np.asarray(values, dtype=np.float32).ravel()
            self.theta[...] = self.base[self.present]

    def full(self) -> np.ndarray:
        """The effect of every key of the level (float64)."""
        if self.present is None:
            return self.theta
        out = np.zeros(self.full_size) if self.base is None else self.base.astype(np.float64)
        out[self.present] = self.theta
        return out

    def add_into(self, out: np.ndarray) -> None:
        """``out += full()`` for a flat float32 ``out``, without a full float64 copy of a sparse block."""
        if self.present is None:
            np.add(out, self.theta, out=out, casting="unsafe")
            return
        own = self.theta
        if self.base is not None:
            out += self.base
            own = own - self.base[self.present]
        out[self.present] += own

    def _per_key(self, values: np.ndarray) -> np.ndarray:
        """``values`` summed per key."""
        if self.single:
            return np.array([values.sum()])
        return np.bincount(self.key, values, minlength=self.n_keys)

    def _scatter(self, eta: np.ndarray, per_key: np.ndarray) -> None:
        """``eta[obs] += weight * per_key[key]``."""
        if self.single:
            eta += per_key[0]
            return
        values = per_key[self.key]
        if self.weight is not None:
            values *= self.weight
        if self.obs is None:
            eta += values
        elif self.unique:
            eta[self.obs] += values
        else:
            eta += np.bincount(self.obs, values, minlength=eta.size)

    def add_to(self, eta: np.ndarray) -> None:
        """Add the block's current effects to ``eta`` (a warm start's first log-odds)."""
        if self.key.size:
            self._scatter(eta, self.theta)

    def step(self, eta: np.ndarray) -> None:
        """One diagonal Newton step of the penalised log-likelihood; updates ``eta`` in place."""
        if self.key.size == 0:
            return
        p = _sigmoid(eta if self.obs is None else eta[self.obs])
        fitted = self._per_key(p if self.weight is None else p * self.weight)
        grad = self.label_sum - fitted - self.l2 * self.theta
        # the curvature p (1 - p) w^2, in p's own memory
        p *= 1.0 - p
        if self.weight is not None:
            p *= self.weight
            p *= self.weight
        hess = self._per_key(p) + self.l2
        delta = grad / hess
        if self.unseen is not None:
            delta[self.unseen] = 0.0
        self.theta += delta
        self._scatter(eta, delta)


class _CurveBlock:
    """Per key a small vector of coefficients on K features: ``eta[obs] += features . theta[key]``.

    Its Newton step is joint over each key's K coefficients (a K x K system per
    key): the freshness curves' time constants overlap strongly, and
    coordinate-wise steps on such features crawl. The keys are few (topics),
    so the entries are kept sorted by key with the features as K float32 rows:
    each key's gradient (float64) and K x K Hessian (float32, as a Newton
    step's curvature needs no more) are small matrix products over its own
    columns, with no per-entry outer products held.
    """

    def __init__(
        self, n_keys: int, obs: np.ndarray, key: np.ndarray, features: np.ndarray, l2: float, label: np.ndarray
    ) -> None:
        order = np.argsort(key, kind="stable")
        self.obs = obs[order]
        self.key_size = np.bincount(key, minlength=n_keys)
        bounds = np.concatenate([[0], np.cumsum(self.key_size)])
        self.segments = [(k, slice(bounds[k], bounds[k + 1])) for k in np.flatnonzero(self.key_size)]
        # (K, entries): a key's entries are one contiguous slice of every row
        self.features = np.ascontiguousarray(np.asarray(features, dtype=np.float32)[order].T)
        self.label_grad = self._per_key(label[self.obs])
        self.l2 = float(l2)
        self.theta = np.zeros((n_keys, self.features.shape[0]))
        self.unseen: np.ndarray | None = None

    def start_at(self, values: np.ndarray) -> None:
        """Start from ``values`` (n_keys, K) instead of 0."""
        self.theta[...] = values

    def full(self) -> np.ndarray:
        """Every key's coefficients, shape (n_keys, K)."""
        return self.theta

    def _per_key(self, values: np.ndarray) -> np.ndarray:
        """``sum_e features[e] * values[e]`` per key in float64, shape (n_keys, K)."""
        out = np.zeros((self.key_size.size, self.features.shape[0]))
        for key, rows in self.segments:
            out[key] = self.features[:, rows].astype(np.float64) @ values[rows]
        return out

    def _scatter(self, eta: np.ndarray, per_key: np.ndarray) -> None:
        """``eta[obs] += features . per_key[key]``."""
        values = np.empty(self.obs.size)
        for key, rows in self.segments:
            out = values[rows]
            np.multiply(self.features[0, rows], per_key[key, 0], out=out)
            for k in range(1, per_key.shape[1]):
                out += self.features[k, rows] * per_key[key, k]
        eta += np.bincount(self.obs, values, minlength=eta.size)

    def add_to(self, eta: np.ndarray) -> None:
        """Add the block's current effects to ``eta`` (a warm start's first log-odds)."""
        if self.obs.size:
            self._scatter(eta, self.theta)

    def step(self, eta: np.ndarray) -> None:
        """One joint Newton step per key; updates ``eta`` in place."""
        if self.obs.size == 0:
            return
        n_keys, k = self.theta.shape
        p = _sigmoid(eta[self.obs])
        grad = self.label_grad - self._per_key(p) - self.l2 * self.theta
        p *= 1.0 - p
        curvature = p.astype(np.float32)
        hess = np.zeros((n_keys, k, k))
        for key, rows in self.segments:
            x = self.features[:, rows]
            hess[key] = (x * curvature[rows]) @ x.T
        hess += self.l2 * np.eye(k)
        delta = np.linalg.solve(hess, grad[..., None])[..., 0]
        if self.unseen is not None:
            delta[self.unseen] = 0.0
        self.theta += delta
        self._scatter(eta, delta)


def _unseen(block: _Block | _CurveBlock) -> np.ndarray | None:
    """The keys of ``block`` without a single entry (a warm start keeps their values); None when every key has one.

    A sparse block keeps only the keys that occur (``present``): none is unseen, and counting
    its entries (millions at city scale) would say so at a cost.
    """
    if isinstance(block, _CurveBlock):
        unseen = block.key_size == 0
    elif block.present is not None:
        return None
    else:
        unseen = np.bincount(block.key, minlength=len(block.theta)) == 0
    return unseen if unseen.any() else None


def _small_index(rows: np.ndarray, n: int) -> np.ndarray:
    """Row positions as int32 when they fit (half the memory of the fit's largest arrays)."""
    return rows.astype(np.int32) if n < 2**31 else rows


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp overflows to inf for x below about -709: the result is then exactly 0, as it should be
    # in one buffer: the fit calls this once per block and sweep on arrays of every sampled pair
    out = np.negative(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    out += 1.0
    return np.reciprocal(out, out=out)


def _log_loss(label: np.ndarray, eta: np.ndarray) -> float:
    # log(1 + exp(-z)) for the label's side, computed stably
    z = np.where(label > 0.5, eta, -eta)
    return float(np.mean(np.logaddexp(0.0, -z)))


def _codes(values: pd.Series | None, codes: tuple[str, ...], n: int) -> np.ndarray:
    """Position of each value in ``codes``; -1 for missing or unknown values."""
    if values is None:
        return np.full(n, -1, dtype=np.int64)
    # heavy: the interactions module loads with training, not with serving (which imports this module)
    from recsys.training.interactions import positions

    # looked up in Arrow: a text copy of the city's 3.1M users' codes, hashed by pandas, took ~1.5 s a column
    return positions(values, list(codes))


@dataclass(frozen=True)
class EngagementStart:
    """A previous engagement model's effects, its rows mapped to today's users and items.

    What :meth:`EngagementModel.fit` starts a night's update from. The bundle
    keeps the effects summed per level (an item's quality is its authority's
    plus its own; a user's interest is the segment's, sub-group's and own);
    :meth:`effects` splits them back: the population and segment levels from
    the segment rows, the item's own from its authority's, and the user's
    own (with their sub-group's, which starts at 0 and is refitted) from
    their segment's. The channel effect is not in the bundle: it starts at 0.

    Attributes
    ----------
    intercept : float
    authority_quality, item_quality, segment_interest, user_interest,
    segment_format, user_format, topic_freshness, topic_trend, user_bias : ndarray
        The previous bundle's arrays (``TrainedModel`` fields of those names).
    user_rows, item_rows : ndarray of int64
        Each of today's users and items: its row in those arrays, -1 when new.
    """

    intercept: float
    authority_quality: np.ndarray
    item_quality: np.ndarray
    segment_interest: np.ndarray
    user_interest: np.ndarray
    segment_format: np.ndarray
    user_format: np.ndarray
    topic_freshness: np.ndarray
    topic_trend: np.ndarray
    user_bias: np.ndarray
    user_rows: np.ndarray
    item_rows: np.ndarray

    def effects(
        self, seg: np.ndarray, sub: np.ndarray, fmt: np.ndarray, auth: np.ndarray, sizes: tuple[int, ...]
    ) -> dict[str, np.ndarray]:
        """Starting values per block of :meth:`EngagementModel._blocks` (today's keys); {} if shapes differ.

        ``seg, sub, fmt, auth`` are today's user segment / sub-group and item
        format / authority codes; ``sizes`` ``(n_users, n_seg, n_t, n_f, n_k, n_channels)``.
        """
        n_users, n_seg, n_t, n_f, n_k, _ = sizes
        seg_int = np.asarray(self.segment_interest, np.float64)
        seg_fmt = np.asarray(self.segment_format, np.float64)
        if (seg_int.shape != (n_seg + 1, n_t) or seg_fmt.shape != (n_seg + 1, n_f)
                or np.shape(self.topic_freshness) != (n_t, n_k)):
            return {}  # another taxonomy or freshness curve: nothing lines up, start cold
        topic, fmt_effect = seg_int[-1], seg_fmt[-1]
        rows = np.where(seg >= 0, seg, n_seg)
        u_old, i_old = np.asarray(self.user_rows), np.asarray(self.item_rows)
        u_known, i_known = u_old >= 0, i_old >= 0

        def per_user(table: np.ndarray, level: np.ndarray, width: int) -> np.ndarray:
            # float32 like the bundle's table: at city scale a user x topic table is 77 M values
            out = np.zeros((n_users, width), np.float32)
            out[u_known] = np.asarray(table)[u_old[u_known]] - level[rows[u_known]].astype(np.float32)
            return out.ravel()

        authority = np.asarray(self.authority_quality, np.float64)
        item = np.zeros(len(i_old))
        item[i_known] = np.asarray(self.item_quality, np.float64)[i_old[i_known]] - authority[auth[i_known]]
        bias = np.zeros(n_users)
        bias[u_known] = np.asarray(self.user_bias, np.float64)[u_old[u_known]]
        return {
            "intercept": np.array([float(self.intercept)]),
            "authority": authority,
            "item": item,
            "topic": topic,
            "segment_topic": (seg_int[:n_seg] - topic).ravel(),
            "user_topic": per_user(self.user_interest, seg_int, n_t),
            "format": fmt_effect,
            "segment_format": (seg_fmt[:n_seg] - fmt_effect).ravel(),
            "user_format": per_user(self.user_format, seg_fmt, n_f),
            "freshness": np.asarray(self.topic_freshness, np.float64),
            "trend": np.asarray(self.topic_trend, np.float64),
            "user_bias": bias,
        }


class EngagementModel:
    """Logistic engagement model on impressions (see the module docstring).

    Parameters
    ----------
    config : EngagementConfig
        Penalties, sweeps, freshness time constants, trend window.
    taxonomy : Taxonomy
        Topics, formats, groups, sub-groups, regions (array orders).

    Attributes
    ----------
    intercept_ : float
    item_quality_ : ndarray of float32, shape (n_items,)
        ``authority[a_i] + item[i]``.
    authority_quality_ : ndarray of float32, shape (len(recsys.columns.AUTHORITIES),)
        Quality of an item known only by its authority level (a new item).
    user_interest_ : ndarray of float32, shape (n_users, n_topics)
    segment_interest_ : ndarray of float32, shape (n_groups * n_regions + 1, n_topics)
        ``topic + segment_topic`` per group x region segment (groups outer,
        as :class:`recsys.training.profiles.TopicProfiles` orders them); the last row
        is ``topic`` alone (a user of no known segment).
    user_format_ : ndarray of float32, shape (n_users, n_formats)
    segment_format_ : ndarray of float32, shape (n_groups * n_regions + 1, n_formats)
    topic_freshness_ : ndarray of float32, shape (n_topics, K)
        Freshness coefficients per topic and time constant.
    topic_trend_ : ndarray of float32, shape (n_topics,)
    user_bias_ : ndarray of float32, shape (n_users,)
    n_exposures_ : int
        Shown pairs fitted on (0: nothing to learn from, every effect is 0).
    n_sweeps_ : int
    log_loss_ : float
        Mean log-loss on the shown pairs after the last sweep (NaN if none).
    """

    def __init__(self, config: EngagementConfig, taxonomy: Taxonomy) -> None:
        self.config = config
        self.taxonomy = taxonomy

    def fit(
        self,
        exposures: Exposures,
        users_df: pd.DataFrame,
        items_df: pd.DataFrame,
        *,
        warm_start: EngagementStart | None = None,
    ) -> EngagementModel:
        """Fit every effect on the shown pairs.

        With ``warm_start`` (a night's update) every effect starts at
        yesterday's value instead of 0 and the fit runs at most
        ``config.warm_sweeps`` sweeps (on at most ``config.warm_exposures``
        pairs when set): the same objective as a full refit, started next to
        its optimum. An effect that no sampled pair bears on keeps yesterday's
        value (a penalised step would set it to 0: the sample says nothing
        about it, the previous fit did). Yesterday's fit is a starting point,
        not a prior: it saw most of the same pairs, and counting them twice
        overfits (a prior centred on it lost held-out log-loss in the tests).

        Parameters
        ----------
        exposures : Exposures
        users_df : DataFrame
            ``group, region`` (optional ``sub_group``); row u = user index u.
        items_df : DataFrame
            ``item_id, topics`` (optional ``format``, ``authority``); row i = item index i.

        Returns
        -------
        self

        Raises
        ------
        ConfigError
            On an invalid configuration.
        SchemaError
            If a required column is missing or an index lies outside the tables.
        UnknownCodeError
            If an item's topic is not in the taxonomy.
        """
        # heavy: profiles loads the interactions step, which serving (it reads timeliness here) must not
        from recsys.training.profiles import item_topic_shares

        cfg = check_section(self.config)
        tax = self.taxonomy
        for frame, cols, name in ((users_df, (C.GROUP, C.REGION), "users"), (items_df, (C.ITEM_ID, C.TOPICS), "items")):
            lacking = [c for c in cols if c not in frame.columns]
            if lacking:
                raise SchemaError(f"{name} table lacks column(s) {lacking}; has {list(frame.columns)}")
        n_users, n_items = len(users_df), len(items_df)
        if len(exposures) and (exposures.user.max() >= n_users or exposures.item.max() >= n_items):
            raise SchemaError(f"exposures index users/items beyond the tables ({n_users} users, {n_items} items)")
        groups, regions, subs = tuple(tax.groups), tuple(tax.regions), tuple(tax.sub_groups)
        topics, formats, channels = tuple(tax.topics), tuple(tax.formats), tuple(tax.channels)
        n_t, n_f, n_k = len(topics), len(formats), len(cfg.freshness_taus_days)
        g = _codes(users_df[C.GROUP], groups, n_users)
        r = _codes(users_df[C.REGION], regions, n_users)
        n_seg = len(groups) * len(regions)
        seg = np.where((g >= 0) & (r >= 0), g * len(regions) + r, -1)
        sub = _codes(users_df[C.SUB_GROUP] if C.SUB_GROUP in users_df.columns else None, subs, n_users)
        fmt = _codes(items_df[C.FORMAT] if C.FORMAT in items_df.columns else None, formats, n_items)
        auth = _codes(items_df[C.AUTHORITY] if C.AUTHORITY in items_df.columns else None, C.AUTHORITIES, n_items)
        auth = np.where(auth >= 0, auth, C.AUTHORITIES.index("other"))
        shares = item_topic_shares(IdMap.from_ids(items_df[C.ITEM_ID].astype(str).to_numpy()), items_df, tax)

        # bounded memory at city scale: the fit holds several arrays per shown pair
        bounds = [b for b in (cfg.max_exposures, cfg.warm_exposures if warm_start is not None else 0) if b > 0]
        bound = min(bounds) if bounds else 0
        max_sweeps = cfg.max_sweeps if warm_start is None else cfg.warm_sweeps
        exposures = exposures.sample(bound, cfg.seed)
        label = np.asarray(exposures.label, dtype=np.float64)
        learnable = len(exposures) > 0 and 0.0 < label.mean() < 1.0
        blocks = self._blocks(exposures, label, seg, sub, fmt, auth, shares, n_seg, (n_t, n_f, n_k, len(channels)))
        eta = np.zeros(len(exposures))
        if warm_start is not None:
            start = warm_start.effects(seg, sub, fmt, auth, (n_users, n_seg, n_t, n_f, n_k, len(channels)))
            for name, block in blocks.items():
                if name in start:
                    block.start_at(start.pop(name))
                block.unseen = _unseen(block)
                block.add_to(eta)
            del start
        sweeps, loss = 0, float("nan")
        if learnable:
            loss = _log_loss(label, eta)
            for sweeps in range(1, max_sweeps + 1):
                for block in blocks.values():
                    block.step(eta)
                new = _log_loss(label, eta)
                done = loss - new < cfg.tol
                loss = new
                if done:
                    break
        self._store(blocks, seg, sub, fmt, auth, (n_users, n_seg, n_t, n_f, n_k))
        self.n_exposures_ = len(exposures) if learnable else 0
        self.n_sweeps_ = int(sweeps)
        self.log_loss_ = loss
        return self

    def _blocks(self, ex, label, seg, sub, fmt, auth, shares, n_seg, sizes) -> dict[str, _Block | _CurveBlock]:
        cfg = self.config
        n_t, n_f, n_k, n_c = sizes
        n_users = seg.size
        n = len(ex)
        u, i = ex.user, ex.item
        # one entry per (shown pair, topic of its item): int32 positions and the float32 shares as they
        # are, shared by every topic-level block (see _Block)
        per_item = np.diff(shares.indptr)[i]
        t_obs = np.repeat(_small_index(np.arange(n), n), per_item)
        starts = shares.indptr[i]
        pos = np.repeat(starts - np.concatenate([[0], np.cumsum(per_item)[:-1]]), per_item) + np.arange(per_item.sum())
        t_key = shares.indices[pos]
        t_w = shares.data[pos].astype(np.float32, copy=False)
        del pos, starts, per_item
        f = fmt[i]

        def pairs(n_keys: int, key: np.ndarray, l2: float) -> _Block:
            return _Block(n_keys, key, l2, label)

        def entries(n_keys: int, key: np.ndarray, l2: float) -> _Block:
            return _Block(n_keys, key, l2, label, obs=t_obs, weight=t_w)

        def nested(parent: np.ndarray, child: np.ndarray, width: int) -> np.ndarray:
            return np.where((parent >= 0) & (child >= 0), parent.astype(np.int64) * width + child, -1)

        n_sub = len(self.taxonomy.sub_groups)
        blocks: dict[str, _Block | _CurveBlock] = {
            "intercept": pairs(1, np.broadcast_to(np.int32(0), (n,)), 1e-6),
            "authority": pairs(len(C.AUTHORITIES), auth[i], cfg.l2_global),
            "item": pairs(len(fmt), i, cfg.l2_item),
            "topic": entries(n_t, t_key, cfg.l2_global),
            "segment_topic": entries(n_seg * n_t, nested(seg[u][t_obs], t_key, n_t), cfg.l2_segment),
            "sub_group_topic": entries(n_sub * n_t, nested(sub[u][t_obs], t_key, n_t), cfg.l2_segment),
            "user_topic": entries(n_users * n_t, nested(u[t_obs], t_key, n_t), cfg.l2_user_topic),
            "format": pairs(n_f, f, cfg.l2_global),
            "segment_format": pairs(n_seg * n_f, nested(seg[u], f, n_f), cfg.l2_segment),
            "sub_group_format": pairs(n_sub * n_f, nested(sub[u], f, n_f), cfg.l2_segment),
            "user_format": pairs(n_users * n_f, nested(u, f, n_f), cfg.l2_user_format),
            "channel_format": pairs(n_c * n_f, nested(ex.channel, f, n_f), cfg.l2_global),
        }
        # each topic's freshness curve: a joint step over its time constants, on the entries with an age
        taus = np.asarray(cfg.freshness_taus_days, dtype=np.float64)
        rows = np.flatnonzero(np.isfinite(ex.age_days)[t_obs])
        age = np.maximum(ex.age_days[t_obs[rows]], 0.0)
        features = np.empty((rows.size, n_k), np.float32)
        for k, tau in enumerate(taus):
            features[:, k] = t_w[rows] * np.exp(-age / tau)
        del age
        blocks["freshness"] = _CurveBlock(n_t, t_obs[rows], t_key[rows], features, cfg.l2_freshness, label)
        del rows, features
        blocks["trend"] = entries(n_t, np.where(ex.recent[t_obs], t_key, -1), cfg.l2_trend)
        blocks["user_bias"] = pairs(n_users, u, cfg.l2_user)
        return blocks

    def _store(self, blocks, seg, sub, fmt, auth, sizes) -> None:
        _, n_seg, n_t, n_f, n_k = sizes
        # the per-user levels are summed in float32 into the bundle's arrays: in float64 each of their
        # terms would be a (n_users, n_topics) table of its own (0.6 GB at city scale)
        theta = {name: b.full() for name, b in blocks.items() if name not in ("user_topic", "user_format")}

        def per_user(segment_table: np.ndarray, sub_level: str, width: int, own: _Block) -> np.ndarray:
            sub_table = np.vstack([theta[sub_level].reshape(-1, width), np.zeros((1, width))]).astype(np.float32)
            out = segment_table.astype(np.float32)[np.where(seg >= 0, seg, n_seg)]
            out += sub_table[np.where(sub >= 0, sub, len(sub_table) - 1)]
            own.add_into(out.reshape(-1))
            return out

        topic, fmt_effect = theta["topic"], theta["format"]
        seg_topic = np.vstack([theta["segment_topic"].reshape(n_seg, n_t), np.zeros((1, n_t))]) + topic
        seg_format = np.vstack([theta["segment_format"].reshape(n_seg, n_f), np.zeros((1, n_f))]) + fmt_effect
        self.intercept_ = float(theta["intercept"][0])
        self.authority_quality_ = theta["authority"].astype(np.float32)
        self.item_quality_ = (theta["authority"][auth] + theta["item"]).astype(np.float32)
        self.segment_interest_ = seg_topic.astype(np.float32)
        self.user_interest_ = per_user(seg_topic, "sub_group_topic", n_t, blocks["user_topic"])
        self.segment_format_ = seg_format.astype(np.float32)
        self.user_format_ = per_user(seg_format, "sub_group_format", n_f, blocks["user_format"])
        self.topic_freshness_ = theta["freshness"].reshape(n_t, n_k).astype(np.float32)
        self.topic_trend_ = theta["trend"].astype(np.float32)
        self.user_bias_ = theta["user_bias"].astype(np.float32)

    def _check_fitted(self) -> None:
        if not hasattr(self, "item_quality_"):
            raise NotFittedError("EngagementModel is not fitted; call fit() first")

    def logit(self, user: np.ndarray, item: np.ndarray, age_days: np.ndarray, items_df: pd.DataFrame) -> np.ndarray:
        """Predicted log-odds of engagement for aligned (user, item) pairs, without the channel term.

        For checks and diagnostics; the ranking computes the same terms from
        the bundle's arrays. ``age_days`` is the item age at the moment
        (NaN = no publish time); the trend applies in full (the moment is
        taken to be the window's end).

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        """
        # heavy: profiles loads the interactions step, which serving (it reads timeliness here) must not
        from recsys.training.profiles import item_topic_shares

        self._check_fitted()
        tax = self.taxonomy
        shares = item_topic_shares(IdMap.from_ids(items_df[C.ITEM_ID].astype(str).to_numpy()), items_df, tax)
        fmt = _codes(items_df[C.FORMAT] if C.FORMAT in items_df.columns else None, tuple(tax.formats), len(items_df))
        user, item = np.asarray(user, np.int64), np.asarray(item, np.int64)
        dense = shares[item].toarray()
        interest = (dense * self.user_interest_[user]).sum(axis=1)
        f = fmt[item]
        taste = np.where(f >= 0, self.user_format_[user, np.maximum(f, 0)], 0.0)
        t_max = max(1, int(np.diff(shares.indptr).max()) if shares.nnz else 1)
        idx = np.full((len(item), t_max), len(tax.topics), dtype=np.int64)
        w = np.zeros((len(item), t_max), dtype=np.float32)
        for row, it in enumerate(item):
            lo, hi = shares.indptr[it], shares.indptr[it + 1]
            idx[row, : hi - lo] = shares.indices[lo:hi]
            w[row, : hi - lo] = shares.data[lo:hi]
        timely = timeliness(
            age_days, idx, w, self.topic_freshness_, self.topic_trend_, np.asarray(self.config.freshness_taus_days)
        )
        return self.intercept_ + self.user_bias_[user] + self.item_quality_[item] + interest + taste + timely


def shown_logit(
    tables: Any,
    exposures: Exposures,
    items_df: pd.DataFrame,
    taxonomy: Taxonomy,
    taus_days: np.ndarray | list[float],
) -> np.ndarray:
    """The engagement model's log-odds of every shown pair, from a trained model's arrays.

    What :meth:`EngagementModel.fit` fitted each pair at, less the channel
    (the bundle does not keep it): intercept, the user's bias, the item's
    quality, topic interest, format taste and the item's freshness at its
    age when shown, plus the topic trend for pairs in the window's recent part.
    The offset a second-stage model of the same impressions starts from
    (:func:`fit_latent_taste`).

    Parameters
    ----------
    tables : TrainedModel
        Reads ``engagement_intercept, user_bias, item_quality, user_interest,
        user_format, topic_freshness, topic_trend``.
    exposures : Exposures
        Indices into the model's users and items.
    items_df : DataFrame
        ``item_id, topics`` (optional ``format``) of the model's items, in its row order.
    taxonomy : Taxonomy
    taus_days : sequence of float
        The freshness time constants the model was fitted with.

    Returns
    -------
    ndarray of float64, shape (len(exposures),)
    """
    # heavy: profiles loads the interactions step, which serving (it reads timeliness here) must not
    from recsys.training.profiles import item_topic_shares

    n = len(exposures)
    if n == 0:
        return np.zeros(0)
    user, item = exposures.user, exposures.item
    shares = item_topic_shares(IdMap.from_ids(items_df[C.ITEM_ID].astype(str).to_numpy()), items_df, taxonomy)
    n_t = len(taxonomy.topics)
    # each item's topics padded to the widest item (padding: topic n_t, share 0), gathered per pair
    t_max = max(1, int(np.diff(shares.indptr).max()) if shares.nnz else 1)
    counts = np.diff(shares.indptr)
    idx = np.full((shares.shape[0], t_max), n_t, np.int64)
    w = np.zeros((shares.shape[0], t_max), np.float32)
    slot = np.arange(shares.nnz) - np.repeat(shares.indptr[:-1], counts)
    rows = np.repeat(np.arange(shares.shape[0]), counts)
    idx[rows, slot] = shares.indices
    w[rows, slot] = shares.data
    idx_p, w_p = idx[item], w[item]
    interest = np.hstack([np.asarray(tables.user_interest, np.float32), np.zeros((len(tables.user_interest), 1), np.float32)])
    topic_fit = (interest[user[:, None], idx_p] * w_p).sum(axis=1, dtype=np.float64)
    fmt = _codes(items_df[C.FORMAT] if C.FORMAT in items_df.columns else None, tuple(taxonomy.formats), len(items_df))
    f = fmt[item]
    taste = np.where(f >= 0, np.asarray(tables.user_format)[user, np.maximum(f, 0)], 0.0)
    trend = np.asarray(tables.topic_trend, np.float32)
    fresh = timeliness(exposures.age_days, idx_p, w_p, tables.topic_freshness, np.zeros_like(trend), np.asarray(taus_days))
    trend_term = (np.append(trend, 0.0)[idx_p] * w_p).sum(axis=1) * exposures.recent
    bias = np.asarray(tables.user_bias)[user] if tables.user_bias is not None else 0.0
    return (
        float(tables.engagement_intercept) + bias + np.asarray(tables.item_quality, np.float64)[item]
        + topic_fit + taste + fresh + trend_term
    )


@dataclass
class LatentTaste:
    """A low-rank taste term on top of the engagement model: ``user_taste[u] . item_taste[i]`` in log-odds.

    The engagement model explains engagement by segments, topics, formats and
    freshness; what two users share beyond those (they engage with the same
    items, whatever their topics) is a latent taste. It is fitted as a logistic
    matrix factorisation of the *same* impressions, each starting from the
    engagement model's log-odds (an offset, :func:`shown_logit`), so the
    factors learn only what that model leaves unexplained and ``engagement
    + taste`` is again a log-odds of engagement when shown. Users and items
    without impressions keep 0 vectors (no taste term).

    Attributes
    ----------
    user_taste : ndarray of float32, shape (n_users, k)
    item_taste : ndarray of float32, shape (n_items, k)
    report : dict
        Pairs fitted on, sweeps, log-loss before and after.
    """

    user_taste: np.ndarray
    item_taste: np.ndarray
    report: dict = dataclasses.field(default_factory=dict)

    #: bundle array names (the component protocol of :mod:`recsys.bundle`)
    ARRAYS = ("user_taste", "item_taste")

    def pair(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        """``user_taste[user] . item_taste[item]`` for aligned index arrays (float64)."""
        return np.einsum("nk,nk->n", self.user_taste[user], self.item_taste[item], dtype=np.float64)

    def save(self, writer: BundleWriter) -> None:
        """Write both factor arrays and the report."""
        for name in self.ARRAYS:
            writer.array(name, np.asarray(getattr(self, name), np.float32))
        writer.json("taste", self.report)

    @classmethod
    def load(cls, reader: BundleReader) -> LatentTaste | None:
        """Read what :meth:`save` wrote; ``None`` for a bundle without a taste term."""
        if not reader.has("user_taste.npy"):
            return None
        return cls(reader.array("user_taste"), reader.array("item_taste"), dict(reader.json("taste")))


def fit_latent_taste(
    exposures: Exposures,
    offset: np.ndarray,
    n_users: int,
    n_items: int,
    *,
    dim: int,
    l2: float,
    sweeps: int,
    seed: int,
    tol: float = 1e-4,
) -> LatentTaste:
    """Fit :class:`LatentTaste` on shown pairs by penalised maximum likelihood.

    ``logit = offset + u_user . v_item`` with an L2 penalty ``l2`` on every
    vector (a Gaussian prior at 0: a user shown few items keeps a small
    vector, i.e. the engagement model's own prediction). Alternating
    coordinate Newton steps: per sweep, each dimension of the user vectors,
    then each of the item vectors, takes one Newton step given the rest (one
    ``bincount`` over the pairs each), so a sweep costs O(pairs x dim) and
    holds O(pairs) memory. Vectors start at small seeded random values (at 0
    every gradient is 0). Sweeps stop at ``sweeps`` or when the mean log-loss
    improves by less than ``tol``.

    Parameters
    ----------
    exposures : Exposures
    offset : ndarray of float, shape (len(exposures),)
        Each pair's log-odds before the taste term.
    n_users, n_items : int
        Rows of the factor arrays.
    dim : int
        Taste dimensions (0: an empty term).
    l2 : float
    sweeps : int
    seed : int
    tol : float

    Returns
    -------
    LatentTaste
    """
    rng = np.random.default_rng(seed)
    u, i = exposures.user, exposures.item
    label = np.asarray(exposures.label, np.float64)
    users = np.zeros((n_users, dim))
    items = np.zeros((n_items, dim))
    report: dict = {"pairs": len(exposures), "dim": int(dim), "l2": float(l2), "sweeps": 0}
    if dim == 0 or len(exposures) == 0 or not 0.0 < label.mean() < 1.0:
        return LatentTaste(users.astype(np.float32), items.astype(np.float32), report)
    # only users/items with pairs move away from 0; a small start breaks the symmetry of u = v = 0
    users[np.unique(u)] = rng.normal(0.0, 0.1, (len(np.unique(u)), dim))
    items[np.unique(i)] = rng.normal(0.0, 0.1, (len(np.unique(i)), dim))
    eta = np.asarray(offset, np.float64) + np.einsum("nk,nk->n", users[u], items[i])
    loss = _log_loss(label, eta)
    report["log_loss_offset"] = round(_log_loss(label, np.asarray(offset, np.float64)), 6)
    for sweep in range(1, sweeps + 1):
        # the user vectors given the items', then the item vectors given the users'
        for own, key, other, other_key, n_keys in ((users, u, items, i, n_users), (items, i, users, u, n_items)):
            for k in range(dim):
                x = other[other_key, k]
                p = _sigmoid(eta)
                grad = np.bincount(key, x * (label - p), minlength=n_keys) - l2 * own[:, k]
                hess = np.bincount(key, x * x * p * (1.0 - p), minlength=n_keys) + l2
                delta = grad / hess
                own[:, k] += delta
                eta += x * delta[key]
        new = _log_loss(label, eta)
        report["sweeps"] = sweep
        # the first sweeps leave the small start slowly (a product of two small vectors): no early stop there
        done = sweep >= _TASTE_MIN_SWEEPS and loss - new < tol
        loss = new
        if done:
            break
    report["log_loss"] = round(loss, 6)
    return LatentTaste(users.astype(np.float32), items.astype(np.float32), report)
