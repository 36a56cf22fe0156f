"""The feature registry: every ranking feature is one entry.

A :class:`Feature` has a name, a function that computes it for a block of
(user, candidate) pairs, the kind of reason it explains (``None``: it never
shows as a reason) and whether it exists for a cold user (one with no
engagement in the bundle). The learned ranker's training examples, its
scoring and its reasons, the linear blend and the tuner all read this one
list, so adding a feature is one function and one line in :func:`registry`.

Features of a block are float32 ``(m, c)`` arrays; ``NaN`` means "missing"
(LightGBM routes it on its own branch), e.g. the age of an item without a
publish time.

A feature's function is its definition; the rows the ranker reads are filled
by :func:`compute_rows` in one compiled pass
(:mod:`recsys.ranking.compiled_features`) with exactly the function's values
-- for the features whose ``compute`` says what it reads (a blend term, a
popularity level, a value of the item or of the user alone, or one of the
functions the kernel knows); any other feature is computed by its function.

Reason kinds (rendered by :mod:`recsys.ranking.reasons`): ``collaborative``
(similar users), ``coengagement`` (goes with what the user engaged with
lately), ``topic`` (the user's interest), ``popularity`` (popular in a
segment, group, region or the city; ``level`` says which), ``fresh``
(new / timely) and ``authority`` (the source).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.config import RankerConfig
from recsys.exceptions import ArtifactError, ConfigError
from recsys.ranking import compiled_features, scoring
from recsys.ranking.catalog import NS_MIN
from recsys.ranking.reasons import LEARNED_KINDS
from recsys.training.serving import level_offsets, level_rows as table_rows

if TYPE_CHECKING:  # cycle: the state and the user batch import this registry
    from recsys.ranking.state import RankingState
    from recsys.ranking.users import UserBatch

_NS_PER_DAY = 86_400 * 10**9
#: popularity levels, in the order of the rows of ``Signals.popularity_levels``
LEVELS = ("city", "group", "region", "segment")


@lru_cache(maxsize=64)
def _span_days(start: object, end: object) -> float:
    """Days from ``start`` to ``end`` (ISO times), at least 1; 1 when either is missing or unreadable.

    Cached: parsing two timestamps cost ~0.3 ms of every single ``recommend`` call.
    """
    try:
        days = (pd.Timestamp(end) - pd.Timestamp(start)).total_seconds() / 86_400
    except (TypeError, ValueError):
        return 1.0
    if days != days:  # NaT: a missing end or start
        return 1.0
    return max(1.0, float(days))


@dataclass
class Block:
    """What a feature reads: one batch of users and their candidates at one time.

    Attributes
    ----------
    state : RankingState
    users : UserBatch
    cand : ndarray of int64, shape (m, c)
        Candidate item indices (-1 padding is read as item 0 and masked by the caller).
    now_ns : int
    """

    state: RankingState
    users: UserBatch
    cand: np.ndarray
    now_ns: int
    #: False for a block that reads one feature (the first pass's base feature over every
    #: candidate): a ``pop_*`` feature then gathers its own level, not all sixteen
    gather_all: bool = True

    @cached_property
    def safe(self) -> np.ndarray:
        """Candidates with padding mapped to item 0."""
        return np.maximum(self.cand, 0)

    @cached_property
    def in_bundle(self) -> np.ndarray:
        """Candidates the bundle knows (catalogue items added later have no engagement signals)."""
        return self.safe < self.state.catalog.n_bundle

    @cached_property
    def bundle_items(self) -> np.ndarray:
        """Candidate index into the bundle's per-item arrays (0 for new items; mask with ``in_bundle``)."""
        return np.where(self.in_bundle, self.safe, 0)

    @cached_property
    def parts(self) -> scoring.Components:
        """The linear blend's nine terms (computed once per block)."""
        st = self.state
        return scoring.components(
            st.catalog,
            self.cand,
            self.users.vectors,
            self.users.topics,
            self.users.segments,
            st.freshness(self.now_ns),
            engagement=scoring.engagement_inputs(st, self.users, self.now_ns),
        )

    @cached_property
    def span_days(self) -> float:
        """Days of log behind the bundle (at least 1): counts become rates, comparable between the
        shorter logs of the training cuts and the full log at serving."""
        window = self.state.model.window or {}
        return _span_days(window.get("start"), window.get("end"))

    @cached_property
    def known(self) -> np.ndarray:
        """Users the bundle has rows for."""
        return self.users.rows >= 0

    @cached_property
    def taste(self) -> np.ndarray:
        """The model's latent taste term at the candidates (``TrainedModel.taste``; 0 without it)."""
        taste = getattr(self.state.model, "taste", None)
        m, c = self.cand.shape
        if taste is None or taste.user_taste.shape[1] == 0:
            return np.zeros((m, c), np.float32)
        users = np.asarray(taste.user_taste)[np.where(self.known, self.users.rows, 0)]
        users[~self.known] = 0
        items = np.asarray(taste.item_taste)[self.bundle_items]
        return np.where(self.in_bundle, np.einsum("mck,mk->mc", items, users), 0).astype(np.float32)

    @cached_property
    def level_rows(self) -> np.ndarray:
        """Each user's row of the popularity tables at every level (``LEVELS`` order), int64 (4, m)."""
        g, r = self.users.groups.astype(np.int64), self.users.regions.astype(np.int64)
        first_group, first_region, first_segment = level_offsets(self.state.taxonomy)
        segment = first_segment + g * len(self.state.taxonomy.regions) + r
        return np.stack([np.zeros_like(g), first_group + g, first_region + r, segment])

    @cached_property
    def popularity(self) -> np.ndarray:
        """Every half-life's popularity at every level (``LEVELS`` order), float32 (W, 4, m, c), per 1,000
        engagements; 0 for items new to the catalogue. One gather for all the ``pop_*`` features:
        sixteen small ones cost ~1 ms of a single call."""
        rows = self.level_rows
        vals = _gather_levels(self.state.signals.popularity_levels, rows[:, :, None], self.bundle_items[None, :, :])
        # shares are tiny numbers: scale to "per 1,000 engagements" for readable dumps
        return _per_thousand(vals, self.in_bundle)

    def popularity_at(self, w: int, level: int) -> np.ndarray:
        """One half-life's popularity at one level (``LEVELS`` position), float32 (m, c): a slice of
        :attr:`popularity`, or with ``gather_all`` False (and nothing gathered yet) its own gather."""
        if self.gather_all or "popularity" in self.__dict__:
            return self.popularity[w, level]
        row = self.level_rows[level]
        vals = _gather_levels(self.state.signals.popularity_levels[w], row[:, None], self.bundle_items)
        return _per_thousand(vals, self.in_bundle)

    def per_item(self, values: np.ndarray) -> np.ndarray:
        """Gather a bundle per-item array at the candidates; 0 for items new to the catalogue."""
        return np.where(self.in_bundle, np.asarray(values)[self.bundle_items], 0).astype(np.float32)

    def per_user(self, values: np.ndarray) -> np.ndarray:
        """A bundle per-user value broadcast over the candidates; 0 for unknown users."""
        rows = np.where(self.known, self.users.rows, 0)
        v = np.where(self.known, np.asarray(values)[rows], 0).astype(np.float32)
        return np.broadcast_to(v[:, None], self.cand.shape)


def _gather_levels(table: np.ndarray, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``table[..., rows, items]`` (a popularity table, rows = level rows, the last axis items) as one
    flat ``np.take``: numpy's index by two or three broadcast arrays cost 2-3x as much per value, and a
    ``recommend_many`` block reads ~750k values (~30 ms of a 512-user block)."""
    if not table.flags.c_contiguous:
        return table[..., rows, items]
    n_rows, n = table.shape[-2:]
    lead = np.arange(int(np.prod(table.shape[:-2], dtype=np.int64)), dtype=np.int64).reshape(table.shape[:-2])
    base = (lead.reshape(lead.shape + (1,) * rows.ndim) * n_rows + rows.astype(np.int64)) * n
    return np.take(table.reshape(-1), base + items)


def _per_thousand(vals: np.ndarray, in_bundle: np.ndarray) -> np.ndarray:
    """Gathered shares (float32, a fresh array, items on the last axes) per 1,000 engagements, 0 at
    items new to the catalogue: ``np.where(in_bundle, vals * 1000.0, 0)`` in place (a third of the
    passes over a recommend_many block's ~750k values)."""
    if vals.dtype != np.float32:
        return np.where(in_bundle, vals * 1000.0, 0).astype(np.float32)
    np.multiply(vals, np.float32(1000.0), out=vals)
    vals[..., ~in_bundle] = 0
    return vals


@dataclass(frozen=True)
class Feature:
    """One ranking feature.

    Attributes
    ----------
    name : str
    compute : callable
        ``compute(block) -> float32 (m, c)``.
    reason : str or None
        The reason kind it explains (see the module docstring), or ``None``.
    cold : bool
        Whether it carries information for a user with no engagement.
    level : str or None
        For popularity features, the level (``LEVELS``) a reason names.
    doc : str
    monotone : int
        +1 where the score may only rise with the feature (popularity: more
        engagement never ranks an item lower, all else equal), else 0.
    """

    name: str
    compute: Callable[[Block], np.ndarray]
    reason: str | None
    cold: bool
    level: str | None = None
    doc: str = ""
    monotone: int = 0


# A feature's ``compute`` is a plain function, or one of the small callables below: they say what
# the feature reads, so that the compiled pass (:func:`compute_rows`) can fill its column without
# calling it -- with the function's own bits (the tests compare every feature with its ``compute``).


@dataclass(frozen=True)
class _Term:
    """A term of the linear blend (the scoring kernel's value), read as a feature."""

    attr: str

    def __call__(self, b: Block) -> np.ndarray:
        return getattr(b.parts, self.attr)


@dataclass(frozen=True)
class _Level:
    """One half-life's popularity at one level (``LEVELS`` position), per 1,000 engagements."""

    w: int
    at: int

    def __call__(self, b: Block) -> np.ndarray:
        return b.popularity_at(self.w, self.at)


@dataclass(frozen=True)
class _ItemOnly:
    """A feature of the candidate item alone (no user, no time): the compiled pass reads it from a
    table of every catalogue item, computed once per serving state by ``values`` itself."""

    values: Callable[[Block], np.ndarray]

    def __call__(self, b: Block) -> np.ndarray:
        return self.values(b)


@dataclass(frozen=True)
class _UserOnly:
    """A feature of the user alone: the compiled pass computes it once per user of a block."""

    values: Callable[[Block], np.ndarray]

    def __call__(self, b: Block) -> np.ndarray:
        return self.values(b)


def _term(attr: str) -> Callable[[Block], np.ndarray]:
    return _Term(attr)


def _popularity(w: int, level: str) -> Callable[[Block], np.ndarray]:
    return _Level(w, LEVELS.index(level))


def _newcomer(w: int) -> Callable[[Block], np.ndarray]:
    """Newcomer popularity at one half-life in the user's segment (shrunk toward group, region and
    city by evidence, per 1,000 engagements; ``Signals.newcomer_levels``); 0 for a bundle without it."""

    def compute(b: Block) -> np.ndarray:
        levels = getattr(b.state.signals, "newcomer_levels", None)
        if levels is None:
            return np.zeros(b.cand.shape, np.float32)
        row = b.level_rows[LEVELS.index("segment")]
        vals = _gather_levels(np.asarray(levels[w]), row[:, None], b.bundle_items)
        return _per_thousand(vals, b.in_bundle)

    return compute


def _window(w: int, days: float) -> Callable[[Block], np.ndarray]:
    # per day over the part of the window the log covers (a 365-day window over 60 days of log is a 60-day one)
    return _ItemOnly(lambda b: b.per_item(b.state.signals.popularity_windows[w]) / np.float32(min(days, b.span_days)))


def _per_day(values: Callable[[Block], np.ndarray]) -> Callable[[Block], np.ndarray]:
    return lambda b: values(b) / np.float32(b.span_days)


#: blocks of at most this many users sum co-engagement row by row (:func:`_coengagement_rows`)
_COENGAGEMENT_ROWWISE = 4


def coengagement_sums(co: sp.csr_matrix, recent: np.ndarray, memo: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One user's co-engagement with every item: the items (ascending) and their summed cosines.

    The user's distinct recent positive items (``recent``, -1 padded) in
    ascending order, each neighbour's count x cosine summed in that order --
    the sparse product's own values, bit for bit (exact zeros kept: the
    callers drop them). The ``coengagement`` feature reads the candidates'
    sums; with ``memo`` (a :class:`~recsys.ranking.users.UserBatch`'s) a
    user's sums are computed once per call, however often they are read.
    """
    key = ("coengagement", id(co), recent.dtype.str, recent.tobytes())
    if memo is not None and key in memo:
        return memo[key]
    seeds, counts = np.unique(recent[recent >= 0], return_counts=True)
    if seeds.size == 0:
        out = (np.zeros(0, np.int32), np.zeros(0, np.result_type(np.float32, co.data.dtype)))
    else:
        # every seed's neighbours end to end, in seed order: np.add.at sums each item in that order
        spans = [(co.indptr[seed], co.indptr[seed + 1]) for seed in seeds.tolist()]
        idx = np.concatenate([co.indices[lo:hi] for lo, hi in spans])
        val = np.concatenate([count * co.data[lo:hi] for count, (lo, hi) in zip(counts.astype(np.float32), spans)])
        items, inverse = np.unique(idx, return_inverse=True)
        # the product's own dtype (float32 seeds x the matrix's data)
        acc = np.zeros(items.size, np.result_type(np.float32, co.data.dtype))
        np.add.at(acc, inverse, val)
        out = (items, acc)
    if memo is not None:
        memo[key] = out
    return out


def _coengagement(b: Block) -> np.ndarray:
    """Sum of co-engagement cosines between the candidate and the user's recent positive items."""
    sig = b.state.signals
    m, c = b.cand.shape
    recent = sig.recent_items(b.users.rows)
    rows, cols = np.nonzero(recent >= 0)
    if rows.size == 0:
        return np.zeros((m, c), np.float32)
    if m <= _COENGAGEMENT_ROWWISE:
        return _coengagement_rows(b, recent)
    return _coengagement_sparse(b, recent, rows, cols)


def _coengagement_rows(b: Block, recent: np.ndarray) -> np.ndarray:
    """:func:`_coengagement` for a few users without building sparse matrices (three per block cost
    ~0.5 ms of a single ``recommend``): each user's :func:`coengagement_sums` read at the
    candidates -- bit for bit the sparse product's values, rounded to
    float32 once at the end (a test compares the two)."""
    m, c = b.cand.shape
    out = np.zeros((m, c), np.float32)
    for r in range(m):
        items, acc = coengagement_sums(b.state.coengagement, recent[r], b.users.memo)
        if items.size == 0:
            continue
        pos = np.minimum(np.searchsorted(items, b.bundle_items[r]), items.size - 1)
        hit = (items[pos] == b.bundle_items[r]) & b.in_bundle[r]
        out[r] = np.where(hit, acc[pos], 0)
    return out


def _coengagement_sparse(b: Block, recent: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """:func:`_coengagement` for a block of users: one sparse product (seed items x neighbours)."""
    sig = b.state.signals
    m, c = b.cand.shape
    n_items = len(sig.coengagement_indptr) - 1
    seeds = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, recent[rows, cols])), shape=(m, n_items))
    scores = (seeds @ b.state.coengagement).tocsr()
    scores.sort_indices()  # a sparse product leaves each row's columns unsorted; searchsorted needs them sorted
    if scores.nnz == 0:
        return np.zeros((m, c), np.float32)
    # every entry as one sorted key (row, column) and every candidate looked up in one searchsorted:
    # a searchsorted per row cost ~15 us of Python per user of a recommend_many block
    keys = np.repeat(np.arange(m, dtype=np.int64) * n_items, np.diff(scores.indptr)) + scores.indices
    want = np.arange(m, dtype=np.int64)[:, None] * n_items + b.bundle_items
    pos = np.minimum(np.searchsorted(keys, want), keys.size - 1)
    hit = (keys[pos] == want) & b.in_bundle
    return np.where(hit, scores.data[pos], 0).astype(np.float32)


def _engagement(b: Block) -> np.ndarray:
    """The engagement model's predicted log-odds of engagement if shown, less the user's own
    propensity and the channel: the sum of its four terms and the latent taste term (the
    pointwise ranker's starting score)."""
    p = b.parts
    return (p.quality + p.interest + p.format + p.timeliness + b.taste).astype(np.float32)


def _taste(b: Block) -> np.ndarray:
    """The latent taste term ``user_taste . item_taste`` in log-odds (0 without one, for a user or
    item the bundle has no impressions of, and for a model without the term)."""
    return b.taste


def _user_rates(b: Block):  # -> TopicRates | None (training-side type: not imported by serving)
    """The bundle's per-user topic and format rates, or None (a bundle written before them)."""
    return getattr(b.state.model, "topic_rates", None)


def _rate_rows(b: Block, n_users: int) -> np.ndarray:
    """The block's bundle user rows, -1 for users the rates do not cover."""
    rows = np.asarray(b.users.rows, np.int64)
    return np.where((rows >= 0) & (rows < n_users), rows, -1)


def _topic_rate(b: Block) -> np.ndarray:
    """The user's own engagement-rate lift over their prior (segment x propensity) in the candidate's
    topics, shrunk by evidence, averaged over the item's topics, in log-odds
    (:mod:`recsys.training.topic_rates`); 0 for a user or topic without evidence. One CSR gather per block."""
    rates = _user_rates(b)
    if rates is None:
        return np.zeros(b.cand.shape, np.float32)
    cat = b.state.catalog
    dense = rates.topic_rows(_rate_rows(b, rates.n_users), cat.topic_bool.shape[1])  # (m, T + 1), last column 0
    m = b.cand.shape[0]
    idx, w = cat.topic_idx[b.safe], cat.topic_weight[b.safe]  # (m, c, t_max); padding -> the 0 column
    vals = np.take_along_axis(dense, idx.reshape(m, -1), axis=1).reshape(idx.shape)
    return np.einsum("mct,mct->mc", vals, w).astype(np.float32)


def _format_rate(b: Block) -> np.ndarray:
    """The same lift for the candidate's format (0 for an unknown format or without evidence)."""
    rates = _user_rates(b)
    if rates is None:
        return np.zeros(b.cand.shape, np.float32)
    table = rates.format_rows(_rate_rows(b, rates.n_users))  # (m, F + 1), last column 0
    code = b.state.catalog.format_code[b.safe]
    code = np.where((code >= 0) & (code < table.shape[1] - 1), code, table.shape[1] - 1)
    return np.take_along_axis(table, code, axis=1).astype(np.float32)


def _als_score(b: Block) -> np.ndarray:
    """The raw collaborative inner product ``u . v`` (the ``als`` baseline's own score, unclipped)."""
    vectors = np.asarray(b.users.vectors, np.float32)
    out = np.empty(b.cand.shape, np.float32)
    cf = b.state.catalog.cf
    for lo in range(0, len(vectors), 64):
        out[lo : lo + 64] = np.einsum("mcf,mf->mc", cf[b.safe[lo : lo + 64]], vectors[lo : lo + 64])
    return out


def _item_age(b: Block) -> np.ndarray:
    pub = b.state.catalog.published_ns[b.safe]
    age = (b.now_ns - pub).astype(np.float64) / _NS_PER_DAY
    return np.where(pub == NS_MIN, np.nan, age).astype(np.float32)


def registry(config: RankerConfig) -> tuple[Feature, ...]:
    """Every ranking feature, in a fixed order (the ranker's column order).

    Parameters
    ----------
    config : RankerConfig
        Sizes the popularity families (half-lives, trend windows).
    """
    base = [
        Feature("collaborative", _term("relevance"), "collaborative", False, doc="user . item / (|u| s), clipped"),
        Feature("als_score", _als_score, "collaborative", False, doc="user . item (unclipped, the als baseline's score)"),
        Feature("topic", _term("topic"), "topic", True, doc="readable topic profile x item topics"),
        Feature("segment_popularity", _term("popularity"), "popularity", True, "segment", "log-scaled decayed segment popularity", 1),
        Feature("freshness", _term("freshness"), "fresh", True, doc="0.5 ** (age / half-life)"),
        Feature("authority", _term("authority"), "authority", True, doc="source level"),
        Feature("quality", _term("quality"), "authority", True, doc="engagement model: item quality"),
        Feature("interest", _term("interest"), "topic", True, doc="engagement model: topic interest"),
        Feature("format", _term("format"), None, True, doc="engagement model: format taste"),
        Feature("timeliness", _term("timeliness"), "fresh", True, doc="engagement model: freshness and trend"),
        Feature("engagement", _engagement, None, True, doc="engagement model: log-odds of engagement when shown (its terms and the taste)"),
        Feature("taste", _taste, "collaborative", False, doc="engagement model: latent taste user . item (log-odds)"),
        Feature("coengagement", _coengagement, "coengagement", False, doc="co-engagement with recent positives"),
        Feature("popularity_all_time", _ItemOnly(_per_day(lambda b: b.per_item(b.state.model.popularity_all_time))), "popularity", True, "city", "engaged users per day of log", 1),
        Feature("item_age_days", _item_age, None, True, doc="days since publication (NaN: unknown)"),
        Feature("item_exposures", _ItemOnly(_per_day(lambda b: b.per_item(b.state.signals.item_exposures))), None, True, doc="impressions per day of log"),
        Feature("user_history", _UserOnly(_per_day(lambda b: b.per_user(b.state.signals.user_activity[:, 0]))), None, True, doc="positive items per day of log"),
        Feature("user_activity", _UserOnly(lambda b: b.per_user(b.state.signals.user_activity[:, 1])), None, True),
        Feature("topic_rate", _topic_rate, "topic", False, doc="the user's shrunk engagement-rate lift in the item's topics (log-odds)"),
        Feature("format_rate", _format_rate, None, False, doc="the user's shrunk engagement-rate lift in the item's format (log-odds)"),
    ]
    for w, h in enumerate(config.popularity_half_lives_days):
        for level in LEVELS:
            base.append(Feature(f"pop_{level}_h{h:g}d", _popularity(w, level), "popularity", True, level, monotone=1))
    for w, h in enumerate(config.popularity_half_lives_days if config.newcomer_days > 0 else ()):
        # what users engage with in their first days: what a user with no history may follow
        base.append(Feature(f"newcomer_h{h:g}d", _newcomer(w), "popularity", True, "segment", "newcomer popularity (segment)"))
    for w, d in enumerate(config.popularity_windows_days):
        base.append(Feature(f"trend_{d:g}d", _window(w, float(d)), "popularity", True, "city", "distinct users per day, last d days", 1))
    return tuple(base)


def _priority(b: Block) -> np.ndarray:
    """The push's priority weight of each candidate for its user: the largest weight among the
    item's topics in the user's group x region row of ``state.topic_boost`` (0 without one)."""
    table = getattr(b.state, "topic_boost", None)
    m, c = b.cand.shape
    if table is None:
        return np.zeros((m, c), np.float32)
    rows = table[b.users.groups.astype(np.int64), b.users.regions.astype(np.int64)]  # (m, T)
    topics = b.state.catalog.topic_bool[b.safe]  # (m, c, T)
    return np.where(topics, rows[:, None, :], 0).max(axis=2).astype(np.float32)


#: Features added to the final score instead of being learned: the push's editorial priorities
#: (``priorities.toml`` from ``recsys demand``, see recsys.push.priorities). No training data can
#: teach a model a decision taken after the log, so the boost is explicit: ``score + value x the
#: standard deviation of the user's candidate scores`` -- a weight of 1 lifts an item by one spread
#: of that user's scores, under the linear blend and the learned ranker alike. Without a table
#: every value is 0 and the rankings are exactly the same.
BOOSTS: tuple[Feature, ...] = (
    Feature("priority", _priority, "priority", True, doc="priority weight of the item's topic for the user's audience"),
)


def boost_values(state: RankingState, users: UserBatch, cand: np.ndarray, now_ns: int) -> np.ndarray | None:
    """The :data:`BOOSTS`' sum per candidate (m, c), in units of a user's score spread; ``None`` when
    the state has no boost table (a bundle loaded outside the push)."""
    if getattr(state, "topic_boost", None) is None:
        return None
    block = Block(state, users, cand, now_ns)
    return sum(f.compute(block) for f in BOOSTS)


def add_boosts(state: RankingState, users: UserBatch, cand: np.ndarray, score: np.ndarray, now_ns: int) -> np.ndarray:
    """``score`` raised by the :data:`BOOSTS` (unchanged, the same array, when the state has no boost table).

    Parameters
    ----------
    state : RankingState
    users : UserBatch
    cand : ndarray of int64, shape (m, c)
    score : ndarray of float32, shape (m, c)
        -inf marks candidates that are not eligible; they stay -inf.
    now_ns : int
    """
    value = boost_values(state, users, cand, now_ns)
    if value is None:
        return score
    finite = np.isfinite(score)
    if not finite.any():
        return score
    # the spread of each user's eligible candidates' scores (1 where it is undefined or 0)
    n = np.maximum(finite.sum(axis=1), 1)
    vals = np.where(finite, score, 0).astype(np.float64)
    mean = vals.sum(axis=1) / n
    var = (np.where(finite, (vals - mean[:, None]) ** 2, 0)).sum(axis=1) / n
    spread = np.where(var > 0, np.sqrt(var), 1.0).astype(np.float32)
    return np.where(finite, score + value * spread[:, None], score).astype(np.float32)


def selected(config: RankerConfig, names: list[str] | None = None) -> tuple[Feature, ...]:
    """The features in use: ``names`` (or ``config.features``), all when empty.

    Raises
    ------
    ConfigError
        For a name the registry does not know (the message lists them).
    """
    every = registry(config)
    wanted = list(names if names is not None else config.features)
    if not wanted:
        return every
    by_name = {f.name: f for f in every}
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise ConfigError(f"[ranker] features: unknown {unknown}; valid: {', '.join(by_name)}")
    return tuple(by_name[n] for n in wanted)


def compute(features: tuple[Feature, ...], block: Block, used: np.ndarray | None = None) -> np.ndarray:
    """Every feature of a block as one float32 (m, c, n_features) array.

    ``used`` (bool per feature), when given, skips the features it marks
    unused: their columns are 0 (a model that never reads them scores the same).
    """
    m, c = block.cand.shape
    return compute_rows(features, block, np.arange(m * c, dtype=np.int64), used).reshape(m, c, len(features))


@dataclass(frozen=True)
class _Plan:
    """How :func:`compute_rows` fills each column (``compiled_features`` codes), for one state and
    feature set: the values computed per block (``planes``), the per-item table, the per-user features."""

    fixed: compiled_features.Static
    #: what the fixed arrays were read from (a state copied with another catalogue or signals shares the cache)
    sources: tuple
    planes: tuple[Callable[[Block], np.ndarray], ...]
    users: tuple[Feature, ...]
    reads_levels: bool
    reads_seeds: bool


def _plan(state: RankingState, features: tuple[Feature, ...], used: np.ndarray | None) -> _Plan:
    """The compiled pass's plan for these features (built once per state, feature set and ``used``)."""
    cf = compiled_features
    co = state.coengagement
    # the kernel adds float32 cosines found by a binary search in each seed's sorted row
    co_ok = co is not None and co.data.dtype == np.float32 and co.has_sorted_indices
    # the kernel multiplies float32 shares by float32 1000, the registry's ``_per_thousand`` of a float32 table
    # (the kernel reads it unchecked: the table must have the taxonomy's rows, as ``Block.level_rows`` counts
    # them, every bundle item, and the feature's half-life)
    table = state.signals.popularity_levels
    levels_ok = (
        table.dtype == np.float32 and table.ndim == 3 and table.shape[1] == table_rows(state.taxonomy)
        and table.shape[2] >= state.catalog.n_bundle
    )
    code = np.zeros(len(features), np.int8)
    arg = np.zeros(len(features), np.int64)
    sub = np.zeros(len(features), np.int64)
    planes: dict[object, Callable[[Block], np.ndarray]] = {}
    items: list[Feature] = []
    users: list[Feature] = []

    def plane(key: object, source: Callable[[Block], np.ndarray]) -> int:
        planes.setdefault(key, source)
        return list(planes).index(key)

    for j, feat in enumerate(features):
        fn = feat.compute
        if used is not None and not used[j]:
            code[j] = cf.NONE
        elif isinstance(fn, _Term):
            code[j], arg[j] = cf.PLANE, plane(("term", fn.attr), fn)
        elif isinstance(fn, _Level) and levels_ok and 0 <= fn.w < table.shape[0]:
            code[j], arg[j], sub[j] = cf.LEVEL, fn.w, fn.at
        elif isinstance(fn, _ItemOnly):
            code[j], arg[j] = cf.ITEM, len(items)
            items.append(feat)
        elif isinstance(fn, _UserOnly):
            code[j], arg[j] = cf.USER, len(users)
            users.append(feat)
        elif fn is _item_age:
            code[j] = cf.AGE
        elif fn is _als_score:
            code[j] = cf.DOT
        elif fn is _engagement:
            code[j] = cf.ENGAGEMENT
        elif fn is _coengagement and co_ok:
            code[j] = cf.COENGAGEMENT
        else:
            # keyed by the function: a feature computed by the same function (taste, which the
            # engagement column reads too) is one plane, filled once per block
            code[j], arg[j] = cf.PLANE, plane(("fn", fn), fn)
    engagement = np.zeros(5, np.int64)
    if (code == cf.ENGAGEMENT).any():
        for i, attr in enumerate(("quality", "interest", "format", "timeliness")):
            engagement[i] = plane(("term", attr), _Term(attr))
        engagement[4] = plane(("fn", _taste), _taste)
    n_items = state.catalog.n_items
    item_vals = np.zeros((n_items, len(items)), np.float32)
    if items:
        # the features' own functions over every catalogue item at once (they read no user and no time)
        every = Block(state, None, np.arange(n_items, dtype=np.int64)[None, :], state.default_now_ns)  # type: ignore[arg-type]
        for k, feat in enumerate(items):
            item_vals[:, k] = feat.compute(every)[0]
    cat = state.catalog
    reads_levels = bool((code == cf.LEVEL).any())
    # static() copies the table as (level row, item, half-life) when a column reads it, else ignores it
    fixed = compiled_features.static(
        cat.n_bundle, code, arg, sub, item_vals, table, cat.published_ns,
        NS_MIN, engagement, cat.cf, co.indptr if co_ok else np.zeros(1, np.int64), co.indices if co_ok else np.zeros(0, np.int32),
        co.data if co_ok else np.zeros(0, np.float32),
    )
    return _Plan(
        fixed=fixed, sources=_sources(state), planes=tuple(planes.values()), users=tuple(users), reads_levels=reads_levels,
        reads_seeds=bool((code == cf.COENGAGEMENT).any()),
    )


def _sources(state: RankingState) -> tuple:
    """What a plan's fixed arrays are read from."""
    return (state.catalog, state.coengagement, state.signals, state.model)


def plan_for(state: RankingState, features: tuple[Feature, ...], used: np.ndarray | None = None) -> _Plan:
    """The compiled pass's plan for these features, built once per state, feature set and ``used``.

    A serving state builds its ranker's plan while it loads (the catalogue's
    item table and the popularity table's copy: ~0.1 s at 50k items), so no
    request pays for it; :func:`compute_rows` finds it here.
    """
    key = (tuple(f.name for f in features), None if used is None else np.asarray(used, bool).tobytes(), *map(id, _sources(state)))
    # the plan holds its sources, so their ids cannot be reused by other objects while it is cached
    return state._cached(state._features, key, lambda: _plan(state, features, used))


def compute_rows(
    features: tuple[Feature, ...], block: Block, pos: np.ndarray, used: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The feature rows of some pairs of a block, float32 (len(pos), n_features), in one compiled pass.

    Each column holds exactly the values of its feature's ``compute`` (the
    registry's definition) at those pairs; ``used`` as in :func:`compute`.

    Parameters
    ----------
    features : tuple of Feature
    block : Block
    pos : ndarray of int64, shape (n,)
        Flat positions of the pairs in the block's (m, c) candidates.
    used : ndarray of bool, shape (n_features,), optional
    out : ndarray of float32, shape (n, n_features), optional
        C-ordered; filled in place and returned.
    """
    state = block.state
    plan = plan_for(state, features, used)
    m, c = block.cand.shape
    if out is None:
        out = np.empty((len(pos), len(features)), np.float32)
    planes = np.empty((len(plan.planes), m * c), np.float32)
    for k, source in enumerate(plan.planes):
        planes[k].reshape(m, c)[...] = source(block)
    user_vals = np.zeros((m, len(plan.users)), np.float32)
    if plan.users:
        # the features' own functions over one column per user (they read no item)
        one = Block(state, block.users, np.zeros((m, 1), np.int64), block.now_ns)
        for k, feat in enumerate(plan.users):
            user_vals[:, k] = feat.compute(one)[:, 0]
    # each user's recent positive items ascending (-1 padding first): the co-engagement seeds
    seeds = np.sort(state.signals.recent_items(block.users.rows), axis=1) if plan.reads_seeds else np.zeros((m, 0), np.int64)
    if seeds.size and seeds[:, -1].max() >= len(plan.fixed.co_indptr) - 1:
        # the kernel reads a seed's row unchecked: a bundle whose recent items and co-engagement
        # matrix disagree is refused here, as the sparse product refused it
        raise ArtifactError(
            f"signals: a user's recent item {int(seeds[:, -1].max())} is outside the co-engagement matrix "
            f"({len(plan.fixed.co_indptr) - 1} items): the bundle's arrays do not belong together"
        )
    # the popularity features: each pair's values read from the plan's table at the user's level rows
    level_rows = block.level_rows if plan.reads_levels else np.zeros((len(LEVELS), 0), np.int64)
    return compiled_features.fill(
        out, pos, block.cand, plan.fixed, planes, user_vals, level_rows, block.now_ns, block.users.vectors, seeds,
    )


def reason_groups(features: tuple[Feature, ...]) -> list[np.ndarray]:
    """Column groups whose contributions the reasons read: one per reason kind, then one per popularity level.

    Kinds in :data:`recsys.ranking.reasons.LEARNED_KINDS` order, levels in :data:`LEVELS` order.
    """
    kinds = [np.array([j for j, f in enumerate(features) if f.reason == kind], np.int64) for kind in LEARNED_KINDS]
    levels = [
        np.array([j for j, f in enumerate(features) if f.reason == "popularity" and (f.level or "city") == level], np.int64)
        for level in LEVELS
    ]
    return kinds + levels


def kinds_for_cold_users(features: tuple[Feature, ...]) -> np.ndarray:
    """Per reason kind (``LEARNED_KINDS`` order), whether any of its features carries information
    for a user with no engagement (the registry's ``cold`` flag)."""
    return np.array([any(f.cold for f in features if f.reason == kind) for kind in LEARNED_KINDS], dtype=bool)
