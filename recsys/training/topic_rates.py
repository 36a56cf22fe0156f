"""Each user's own engagement rate per topic and per format, shrunk toward their segment's by evidence.

The engagement model (:mod:`recsys.training.engagement`) learns a user's topic
interest as one effect among many, with a fixed penalty. This module states the
same question as counts a reader can check: of the items listing topic ``t``
that user ``u`` was shown, how many did they engage with (``click`` or
stronger)? Two impressions say little, two hundred say a lot, so the rate is
an empirical-Bayes estimate (beta-binomial)::

    rate[u, t] = (engaged[u, t] + kappa * prior[u, t]) / (shown[u, t] + kappa)
    prior[u, t] = sigmoid(logit(segment_rate[s(u), t]) + propensity[u])

* ``segment_rate[s, t]``: the rate of the user's group x region segment in the
  topic, itself shrunk toward the topic's city-wide rate (a segment with 4
  users says almost nothing, one with 40,000 says a lot);
* ``propensity[u]``: how much more (or less) the user engages than their
  segment would on the same items, shrunk the same way -- without it, a keen
  user would look interested in every topic they were shown most;
* ``kappa``: the prior strength of each level, fitted from the data by
  maximising the beta-binomial marginal likelihood of the counts (a log grid),
  not set by hand.

The ranking feature is the *lift* ``logit(rate[u, t]) - logit(prior[u, t])``:
what the user's own record says beyond their segment and their overall
propensity, 0 without evidence (a cold user, a topic never shown to them).
Counts are whole trials: an item listing three topics counts as one showing in
each (a fractional share is not a beta-binomial trial, and with shares the
marginal likelihood has no maximum). The same is done per format.

Stored as arrays (users x topics as CSR, users x formats dense), an optional
bundle component (``topic_rates/``): a bundle written before it loads without
it and the features read 0. Serving reads one CSR gather per block
(:func:`recsys.ranking.features.registry`'s ``topic_rate`` and ``format_rate``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import gammaln

from recsys import columns as C
from recsys.idmap import IdMap
from recsys.taxonomy import Taxonomy
from recsys.training.profiles import item_topic_shares

if TYPE_CHECKING:
    from recsys.bundle import BundleReader, BundleWriter
    from recsys.training.engagement import Exposures

#: prior strengths tried (pseudo-showings), log-spaced by sqrt(2)
KAPPA_GRID = np.exp(np.linspace(np.log(0.25), np.log(4096.0), 29))
#: at most this many (key, count) rows enter a prior strength's likelihood (a seeded sample beyond):
#: the fit's cost stays constant (~1 s CPU) at any scale
_FIT_ROWS = 100_000
#: rates are kept inside (eps, 1 - eps) before a logit
_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def beta_binomial_loglik(engaged: np.ndarray, shown: np.ndarray, prior: np.ndarray, kappa: float) -> float:
    """Log marginal likelihood of ``engaged`` of ``shown`` trials under Beta(kappa * prior, kappa * (1 - prior)).

    The binomial coefficient is left out (it does not depend on ``kappa``).
    """
    a = kappa * np.clip(prior, _EPS, 1 - _EPS)
    b = kappa - a
    return float(
        (gammaln(a + engaged) + gammaln(b + shown - engaged) - gammaln(kappa + shown) - gammaln(a) - gammaln(b) + gammaln(kappa)).sum()
    )


def fit_strength(engaged: np.ndarray, shown: np.ndarray, prior: np.ndarray, seed: int = 0) -> float:
    """The prior strength ``kappa`` of :data:`KAPPA_GRID` that maximises the beta-binomial marginal likelihood.

    Parameters
    ----------
    engaged, shown : ndarray, shape (n,)
        Whole counts per key (user, user x topic ...); keys with ``shown == 0`` carry nothing.
    prior : ndarray, shape (n,)
        Each key's prior mean rate.
    seed : int
        Seeds the sample of at most ``_FIT_ROWS`` keys the likelihood is summed over.

    Returns
    -------
    float
        The grid's largest value when the counts show no spread beyond chance
        (the prior then wins everywhere), its smallest when they show more
        than any grid value allows.
    """
    keep = np.flatnonzero(shown > 0)
    if keep.size == 0:
        return float(KAPPA_GRID[-1])
    if keep.size > _FIT_ROWS:
        keep = np.sort(np.random.default_rng(seed).choice(keep, size=_FIT_ROWS, replace=False))
    e, n, p = (np.asarray(v, np.float64)[keep] for v in (engaged, shown, prior))
    ll = [beta_binomial_loglik(e, n, p, k) for k in KAPPA_GRID]
    return float(KAPPA_GRID[int(np.argmax(ll))])


def shrunk_lift(engaged: np.ndarray, shown: np.ndarray, prior: np.ndarray, kappa: float) -> np.ndarray:
    """``logit(posterior mean rate) - logit(prior)``: 0 without evidence, the raw rate's lift with much."""
    prior = np.clip(np.asarray(prior, np.float64), _EPS, 1 - _EPS)
    rate = (engaged + kappa * prior) / (shown + kappa)
    return _logit(rate) - _logit(prior)


@dataclass
class TopicRates:
    """Per-user shrunk engagement-rate lifts by topic (CSR) and by format (dense), in log-odds.

    Attributes
    ----------
    topic_indptr : ndarray of int64, shape (n_users + 1,)
    topic_index : ndarray of int32, shape (nnz,)
        Topic positions (taxonomy order) of each user's row, ascending.
    topic_lift : ndarray of float32, shape (nnz,)
        ``logit(rate) - logit(prior)`` of the user in that topic.
    format_lift : ndarray of float32, shape (n_users, n_formats)
        The same per format (0 where the user was never shown one).
    report : dict
        Prior strengths (``kappa_*``), pairs and users counted.
    """

    topic_indptr: np.ndarray
    topic_index: np.ndarray
    topic_lift: np.ndarray
    format_lift: np.ndarray
    report: dict = field(default_factory=dict)

    #: bundle array names (the component protocol of :mod:`recsys.bundle`)
    ARRAYS = ("topic_indptr", "topic_index", "topic_lift", "format_lift")

    @property
    def n_users(self) -> int:
        """Users the arrays cover (the bundle's user rows)."""
        return len(self.topic_indptr) - 1

    def topic_rows(self, rows: np.ndarray, n_topics: int) -> np.ndarray:
        """Dense float32 ``(len(rows), n_topics + 1)`` lifts of bundle user ``rows`` (-1: a user the
        bundle does not know, all 0); the last column is 0 for the catalogue's topic padding."""
        rows = np.asarray(rows, np.int64)
        out = np.zeros((len(rows), n_topics + 1), np.float32)
        known = np.flatnonzero(rows >= 0)
        if known.size == 0:
            return out
        lo, hi = self.topic_indptr[rows[known]], self.topic_indptr[rows[known] + 1]
        counts = hi - lo
        # every known row's entries in one gather: positions lo..hi-1 of each row, concatenated
        pos = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
        out[np.repeat(known, counts), self.topic_index[pos]] = self.topic_lift[pos]
        return out

    def format_rows(self, rows: np.ndarray) -> np.ndarray:
        """Float32 ``(len(rows), n_formats + 1)`` format lifts (0 for unknown users; last column 0 for an
        unknown format)."""
        rows = np.asarray(rows, np.int64)
        out = np.zeros((len(rows), self.format_lift.shape[1] + 1), np.float32)
        known = rows >= 0
        out[known, :-1] = np.asarray(self.format_lift)[rows[known]]
        return out

    def save(self, writer: BundleWriter) -> None:
        """Write the arrays and the report."""
        for name in self.ARRAYS:
            writer.array(name, np.asarray(getattr(self, name)))
        writer.json("topic_rates", self.report)

    @classmethod
    def load(cls, reader: BundleReader) -> TopicRates | None:
        """Read what :meth:`save` wrote; ``None`` for a bundle written without it."""
        if not reader.has("topic_lift.npy"):
            return None
        return cls(*(reader.array(name) for name in cls.ARRAYS), report=dict(reader.json("topic_rates")))


def _segment_rates(engaged: np.ndarray, shown: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    """Segment x key rates (``(S, K)`` counts in) shrunk toward each key's rate over every segment."""
    e_all, n_all = engaged.sum(axis=0), shown.sum(axis=0)
    total = e_all.sum() / max(n_all.sum(), 1.0)
    city = (e_all + total) / (n_all + 1.0)  # one pseudo-showing at the overall rate: a key never shown keeps it
    prior = np.broadcast_to(city, engaged.shape)
    kappa = fit_strength(engaged.ravel(), shown.ravel(), prior.ravel(), seed)
    return (engaged + kappa * prior) / (shown + kappa), kappa


def fit_topic_rates(
    user: np.ndarray,
    item: np.ndarray,
    label: np.ndarray,
    item_topics: sp.csr_matrix,
    item_format: np.ndarray,
    user_segment: np.ndarray,
    n_users: int,
    n_formats: int,
    *,
    seed: int = 0,
) -> TopicRates:
    """Fit :class:`TopicRates` on shown (user, item) pairs.

    Parameters
    ----------
    user, item : ndarray of int, shape (n,)
        Each shown pair once (``recsys.training.engagement.Exposures``).
    label : ndarray, shape (n,)
        1 where the user engaged positively with the item.
    item_topics : csr_matrix, shape (n_items, n_topics)
        Nonzero where an item lists a topic (its shares; only the pattern is read).
    item_format : ndarray of int, shape (n_items,)
        Format position per item, -1 when unknown.
    user_segment : ndarray of int, shape (n_users,)
        Segment row per user (group x region; -1 or beyond the table: none).
    n_users, n_formats : int
    seed : int
        Seeds the samples the prior strengths are fitted on.

    Returns
    -------
    TopicRates
    """
    user = np.asarray(user, np.int64)
    item = np.asarray(item, np.int64)
    label = (np.asarray(label) > 0).astype(np.float64)
    n_topics = item_topics.shape[1]
    seg = np.asarray(user_segment, np.int64)
    n_seg = int(seg.max()) + 2 if len(seg) else 1
    seg = np.where(seg >= 0, seg, n_seg - 1)  # users without a segment share one row of their own

    # whole counts per (user, topic): a pair counts once in each topic its item lists
    pattern = item_topics.tocsr().astype(bool).astype(np.float64)
    pair_topics = pattern[item]  # (pairs, topics) 0/1: one row gather
    by_user = sp.csr_matrix((np.ones(len(user)), (user, np.arange(len(user)))), shape=(n_users, len(user)))
    shown = (by_user @ pair_topics).tocsr()
    engaged = (by_user @ sp.diags(label) @ pair_topics).tocsr()
    shown.sum_duplicates()
    shown.sort_indices()
    # the engaged counts at the shown matrix's entries (engaged pairs are a subset of shown ones)
    rows = np.repeat(np.arange(n_users), np.diff(shown.indptr))
    e_ut = np.asarray(engaged[rows, shown.indices]).ravel() if shown.nnz else np.zeros(0)
    n_ut = shown.data.astype(np.float64)

    # segment x topic and segment x format rates, shrunk toward the city's
    seg_key = seg[rows] * n_topics + shown.indices
    seg_t_e = np.bincount(seg_key, e_ut, minlength=n_seg * n_topics).reshape(n_seg, n_topics)
    seg_t_n = np.bincount(seg_key, n_ut, minlength=n_seg * n_topics).reshape(n_seg, n_topics)
    seg_topic, kappa_seg_topic = _segment_rates(seg_t_e, seg_t_n, seed)
    fmt = np.asarray(item_format, np.int64)[item]
    has_fmt = fmt >= 0
    width = max(n_formats, 1)
    f_key = seg[user[has_fmt]] * width + fmt[has_fmt]
    seg_f_e = np.bincount(f_key, label[has_fmt], minlength=n_seg * width).reshape(n_seg, width)
    seg_f_n = np.bincount(f_key, minlength=n_seg * width).astype(np.float64).reshape(n_seg, width)
    seg_format, kappa_seg_format = _segment_rates(seg_f_e, seg_f_n, seed + 1)

    # the user's propensity: engaged pairs against what their segment's topic rates expect
    pair_prior = _pair_prior(pair_topics, seg[user], seg_topic)
    u_e = np.bincount(user, label, minlength=n_users)
    u_n = np.bincount(user, minlength=n_users).astype(np.float64)
    u_p = np.bincount(user, pair_prior, minlength=n_users) / np.maximum(u_n, 1.0)
    u_p = np.where(u_n > 0, u_p, 0.5)
    kappa_user = fit_strength(u_e, u_n, u_p, seed + 2)
    propensity = np.where(u_n > 0, shrunk_lift(u_e, u_n, u_p, kappa_user), 0.0)

    # each user x topic toward sigmoid(logit(segment rate) + propensity)
    prior_ut = _sigmoid(_logit(seg_topic[seg[rows], shown.indices]) + propensity[rows])
    kappa_topic = fit_strength(e_ut, n_ut, prior_ut, seed + 3)
    topic_lift = shrunk_lift(e_ut, n_ut, prior_ut, kappa_topic)

    uf_key = user[has_fmt] * width + fmt[has_fmt]
    f_e = np.bincount(uf_key, label[has_fmt], minlength=n_users * width).reshape(n_users, width)
    f_n = np.bincount(uf_key, minlength=n_users * width).astype(np.float64).reshape(n_users, width)
    prior_uf = _sigmoid(_logit(seg_format[seg]) + propensity[:, None])
    kappa_format = fit_strength(f_e.ravel(), f_n.ravel(), prior_uf.ravel(), seed + 4)
    format_lift = np.where(f_n > 0, shrunk_lift(f_e, f_n, prior_uf, kappa_format), 0.0)[:, :n_formats]

    return TopicRates(
        topic_indptr=shown.indptr.astype(np.int64),
        topic_index=shown.indices.astype(np.int32),
        topic_lift=topic_lift.astype(np.float32),
        format_lift=np.ascontiguousarray(format_lift, dtype=np.float32),
        report={
            "pairs": len(user),
            "users": int((u_n > 0).sum()),
            "kappa_segment_topic": kappa_seg_topic,
            "kappa_segment_format": kappa_seg_format,
            "kappa_user": kappa_user,
            "kappa_topic": kappa_topic,
            "kappa_format": kappa_format,
        },
    )


def _pair_prior(pair_topics: sp.csr_matrix, pair_segment: np.ndarray, seg_rates: np.ndarray) -> np.ndarray:
    """Per pair, the mean of its user's segment's rates over the item's topics (the mean rate when it lists none)."""
    rows = np.repeat(np.arange(pair_topics.shape[0]), np.diff(pair_topics.indptr))
    sums = np.bincount(rows, seg_rates[pair_segment[rows], pair_topics.indices], minlength=pair_topics.shape[0])
    counts = np.diff(pair_topics.indptr)
    fallback = float(seg_rates.mean()) if seg_rates.size else 0.5
    return np.where(counts > 0, sums / np.maximum(counts, 1), fallback)


def topic_rates_for(
    exposures: Exposures, items: IdMap, items_df: pd.DataFrame, taxonomy: Taxonomy, user_segment: np.ndarray, *, seed: int = 0
) -> TopicRates:
    """:func:`fit_topic_rates` on the engagement model's shown pairs, the catalogue's topics and formats.

    Parameters
    ----------
    exposures : recsys.training.engagement.Exposures
    items : IdMap
        The bundle's item order (``exposures.item`` indexes it).
    items_df : DataFrame
        ``item_id, topics`` and, when the catalogue has them, ``format``.
    taxonomy : Taxonomy
    user_segment : ndarray of int, shape (n_users,)
        ``TopicProfiles.user_segment_``.
    seed : int
    """
    shares = item_topic_shares(items, items_df, taxonomy)
    formats = list(taxonomy.formats)
    if C.FORMAT in items_df.columns:
        by_id = items_df.drop_duplicates(C.ITEM_ID).set_index(C.ITEM_ID)[C.FORMAT]
        codes = by_id.reindex(pd.Index(items.ids, dtype=object)).to_numpy()
        item_format = pd.Index(formats, dtype=object).get_indexer(pd.Index(codes, dtype=object)).astype(np.int64)
    else:
        item_format = np.full(len(items), -1, np.int64)
    return fit_topic_rates(
        exposures.user, exposures.item, exposures.label, shares, item_format, user_segment,
        len(user_segment), len(formats), seed=seed,
    )
