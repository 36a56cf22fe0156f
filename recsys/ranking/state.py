"""One immutable serving state: a model, a catalogue, and what is derived from them.

The :class:`~recsys.ranking.recommender.Recommender` holds one reference to a
:class:`RankingState`; ``reload`` and ``set_catalog`` build a complete new one
and swap the reference, so a call always sees one consistent version. The
only mutable parts are caches of values that are pure functions of the state
(per-filter masks, cold-start vectors, the transposed seen matrix), guarded
by a lock.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys import columns as C
from recsys.config import RankingConfig, check_section
from recsys.idmap import SortedIds
from recsys.taxonomy import Taxonomy
from recsys.training.serving import LearnedRanker, Signals, TrainedModel, timeliness
from recsys.ranking import compiled_features, compiled_reasons, compiled_scoring, compiled_selection
from recsys.ranking.catalog import NS_MIN, Catalog, build_catalog
from recsys.ranking.diversity import neighbour_arrays
from recsys.ranking.eligibility import ItemFilter, filter_share, static_mask, topic_sets
from recsys.ranking.features import kinds_for_cold_users, plan_for, reason_groups, selected
from recsys.ranking.reasons import ReasonTables, reason_tables
from recsys.ranking.scoring import freshness

# Bounded caches: a long-running service must not grow without limit.
_MAX_CACHED_FILTERS = 256
_MAX_CACHED_COLD = 4096
_NS_PER_DAY = 86_400 * 10**9
# segments per block when ranking every item for every segment
_SEGMENT_BLOCK = 64
_TIE = 1e-3


def _positions(values: pd.Series, codes: tuple[str, ...]) -> np.ndarray:
    return pd.Categorical(values.astype(str), categories=list(codes)).codes.astype(np.int64)


def _keep(cache: dict, key: Hashable, value: Any, limit: int) -> None:
    """``cache[key] = value``, the oldest entries dropped first (a dict keeps insertion order) so
    that it holds at most ``limit``; the caller holds the state's lock. Emptying the whole cache
    instead made every request rebuild its entry whenever more than ``limit`` were in use (a few
    hundred filters, a few thousand segments at a live clock)."""
    if key not in cache:
        while len(cache) >= limit:
            del cache[next(iter(cache))]
    cache[key] = value


def _frozen(values: np.ndarray) -> np.ndarray:
    """``values`` made read-only: a cached array is shared by every request."""
    values.setflags(write=False)
    return values


@dataclass
class RankingState:
    """Everything one version of the service reads.

    Attributes
    ----------
    model : TrainedModel
    config : RankingConfig
    catalog : Catalog
    catalog_items : DataFrame or None
        The clean catalogue it was built from (``None``: the bundle's copy).
    user_pos : recsys.idmap.SortedIds
        User id -> bundle user index (``in``, ``[id]``, ``.get``, and
        ``.positions(ids)`` for many): arrays, memory-mapped from the bundle,
        no Python object per user. :attr:`user_ids` gives every id (built on
        first use).
    user_group, user_region, user_segment : ndarray of int16, shape (n_users,)
        Taxonomy positions of each user's stored group and region, and the
        row of ``catalog.popularity`` of their segment.
    segment_by_pair : ndarray of int64, shape (n_groups, n_regions)
        Popularity row of each (group, region); the city-wide row where the
        bundle has no such segment.
    topic_prior_by_pair : ndarray of float32, shape (n_groups, n_regions, n_topics)
        Topic prior of each (group, region) for cold users: the segment's, or
        the mean over the group's segments, or over all segments.
    default_now_ns : int
        End of the bundle's data window (the default ``now``).
    reasons : ReasonTables
    user_factors, user_topics : ndarray of float32
        The model's arrays as plain ndarray views (a ``numpy.memmap`` pays
        Python overhead on every indexing).
    seen : csr_matrix
        The model's history over plain ndarray views, likewise.
    engagement : EngagementTables
        The engagement model's arrays over the catalogue, and the candidate
        lists ranked by it.
    signals : recsys.training.signals.Signals
        Training-time popularity, co-engagement and activity arrays.
    coengagement : csr_matrix
        The item-to-item co-engagement neighbours (plain views).
    ranker : LearnedRanker or None
        The learned ranker in use (``None``: the linear blend ranks).
    features : tuple of Feature
        The ranker's features, in its column order.
    popular_lists : ndarray of int64, shape (G * R, n_half_lives * P)
        Per group x region segment, its most popular items by the shrunk
        popularity of each half-life (candidates; -1 padded).
    trend_lists : ndarray of int64, shape ((n_windows + 1) * P,)
        The city's most engaged items of each trend window and of all time (candidates).
    topic_boost : ndarray of float32, shape (n_groups, n_regions, n_topics), or None
        Priority weights the ranking adds (feature ``priority``); set by
        :meth:`recsys.ranking.Recommender.with_topic_boost`, None = rankings unchanged.
    """

    model: TrainedModel
    config: RankingConfig
    catalog: Catalog
    catalog_items: pd.DataFrame | None
    user_pos: SortedIds
    user_group: np.ndarray
    user_region: np.ndarray
    user_segment: np.ndarray
    segment_by_pair: np.ndarray
    topic_prior_by_pair: np.ndarray
    default_now_ns: int
    reasons: ReasonTables
    user_factors: np.ndarray
    user_topics: np.ndarray
    seen: sp.csr_matrix
    engagement: "EngagementTables"
    signals: Signals | None = None
    coengagement: sp.csr_matrix | None = None
    ranker: LearnedRanker | None = None
    features: tuple = ()
    reason_groups: list = field(default_factory=list)
    #: the feature columns the ranker's trees read (the others are never computed)
    used_features: np.ndarray | None = None
    #: per reason kind, whether it can be named to a user with no engagement (``features.kinds_for_cold_users``)
    cold_kinds: np.ndarray | None = None
    popular_lists: np.ndarray | None = None
    trend_lists: np.ndarray | None = None
    #: the push's priority boost per (group, region, topic) (recsys.push.priorities); None = none
    topic_boost: np.ndarray | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _static: dict = field(default_factory=dict, repr=False)
    _cold: dict = field(default_factory=dict, repr=False)
    _fresh: dict = field(default_factory=dict, repr=False)
    _timely: dict = field(default_factory=dict, repr=False)
    _blocks: dict = field(default_factory=dict, repr=False)
    #: what every filter of a channel is made from, apart from the per-filter entries so that a
    #: rotation of more filters than their bound never evicts them: the channel's topic sets
    #: (``topic_sets``) and each topic's or format's part of an allow-list (``filter_part``)
    _sets: dict = field(default_factory=dict, repr=False)
    _parts: dict = field(default_factory=dict, repr=False)
    #: the merged candidate lists a (segment, group, region) shares at one freshness cut (``shared_lists``)
    _shared: dict = field(default_factory=dict, repr=False)
    #: the compiled feature pass's plans (``features.compute_rows``): apart from the filters' entries,
    #: which more filters than their bound evict, so that a plan (a table over the catalogue) is built once
    _features: dict = field(default_factory=dict, repr=False)
    _seen_csc: sp.csc_matrix | None = field(default=None, repr=False)
    _user_ids: np.ndarray | None = field(default=None, repr=False)
    _neighbour_graph: tuple | None = field(default=None, init=False, repr=False)  # a replaced state builds its own

    @property
    def user_ids(self) -> np.ndarray:
        """Every bundle user's id, ndarray of object (str), row = user index (built once, on first use).

        A Python string per user: for the few callers that need them all
        (training the ranker); a lookup uses :attr:`user_pos`, and a few rows'
        ids ``user_pos.ids_at(rows)``.
        """
        if self._user_ids is None:
            with self._lock:
                if self._user_ids is None:
                    self._user_ids = self.user_pos.ids_at(np.arange(len(self.user_pos)))
        return self._user_ids

    @property
    def taxonomy(self) -> Taxonomy:
        """The bundle's taxonomy."""
        return self.model.taxonomy

    @property
    def version(self) -> str:
        """The bundle version (manifest), or ``"in-memory"`` for an unsaved model."""
        return str((self.model.manifest or {}).get("version", "in-memory"))

    # ---- cached derived values --------------------------------------------
    def _cached(self, cache: dict, key: Hashable, build: Callable[[], Any], limit: int = _MAX_CACHED_FILTERS) -> Any:
        """``cache[key]``, built by ``build()`` on a miss (kept as :func:`_keep` bounds it)."""
        hit = cache.get(key)
        if hit is not None:
            return hit
        value = build()
        with self._lock:
            _keep(cache, key, value, limit)
        return value

    def static_mask(self, filt: ItemFilter) -> np.ndarray:
        """Available items passing the request's filters, over the whole catalogue (cached).

        For the exact fallback and the audience search; ranking itself checks
        candidates only.
        """
        return self._cached(self._static, filt, lambda: _frozen(static_mask(self.catalog, filt)))

    def filtered(self, filt: ItemFilter) -> float:
        """The share of the bundle's items that pass ``filt``'s static checks (cached per filter, and
        the distinct topic sets it counts from per channel, built only for a filtered request:
        ``eligibility.filter_share``)."""
        return self._cached(self._static, ("share", filt), lambda: filter_share(self.catalog, filt, self.topic_sets))

    def topic_sets(self, formats: tuple[int, ...] | None) -> tuple[np.ndarray, np.ndarray]:
        """``eligibility.topic_sets`` of the bundle's items of ``formats`` (a channel's; cached apart
        from the filters' entries)."""
        return self._cached(self._sets, formats, lambda: topic_sets(self.catalog, formats))

    def filter_block(self, filt: ItemFilter, build: Callable[[], tuple]) -> tuple:
        """``build()`` for this filter, built once (cached, bounded): what a filtered search reads
        whatever the user (``recsys.ranking.candidates``: the filter's items that pass)."""
        return self._cached(self._blocks, filt, build)

    def filter_part(self, key: Hashable, build: Callable[[], tuple]) -> tuple:
        """``build()`` for one topic's or format's part of a channel's allow-list, built once (cached
        apart from the filters' entries, bounded by every (topic or format, channel) the taxonomy
        has): what :meth:`filter_block`'s entries are laid out from (``recsys.ranking.candidates``)."""
        tax = self.taxonomy
        limit = (len(tax.topics) + len(tax.formats) + 1) * (len(tax.channels) + 1)
        return self._cached(self._parts, key, build, limit=limit)

    def shared_lists(self, keys: list[Hashable], build: Callable[[list[int]], list[np.ndarray]]) -> list[np.ndarray]:
        """The cached value of each of ``keys``, the missing ones made by one ``build(positions)``
        call (bounded like the cold vectors, :func:`_keep`): the candidate lists every user of a
        segment shares at one freshness cut (``recsys.ranking.candidates``), merged once instead
        of on every request."""
        cache = self._shared
        out = [cache.get(key) for key in keys]
        missing = [i for i, value in enumerate(out) if value is None]
        if missing:
            built = build(missing)
            with self._lock:
                for i, value in zip(missing, built):
                    out[i] = _frozen(value)
                    _keep(cache, keys[i], out[i], _MAX_CACHED_COLD)
        return out

    def freshness(self, now_ns: int) -> np.ndarray:
        """Freshness of every item at ``now_ns`` (cached; calls mostly share a few ``now``)."""
        return self._cached(
            self._fresh, now_ns,
            lambda: _frozen(freshness(self.catalog.published_ns, now_ns, self.config.freshness_half_life_days)),
        )

    def timeliness(self, now_ns: int) -> np.ndarray:
        """The engagement model's freshness and trend term of every item at ``now_ns`` (cached)."""
        return self._cached(self._timely, now_ns, lambda: _frozen(item_timeliness(self.model, self.catalog, now_ns)))

    def cold_vector(self, group: int, sub_group: str, region: int) -> np.ndarray:
        """Collaborative vector of a cold user of this segment (cached)."""

        def build() -> np.ndarray:
            tax = self.taxonomy
            vec = self.model.user_cold_start.vector_for(
                list(tax.groups)[group],
                sub_group,
                list(tax.regions)[region],
                topic_prior=self.topic_prior_by_pair[group, region],
            )
            return np.asarray(vec, dtype=np.float32)

        return self._cached(self._cold, (group, sub_group, region), build, limit=_MAX_CACHED_COLD)

    def seen_by_item(self) -> sp.csc_matrix:
        """The seen matrix in column form, for "who has seen this item" (built once)."""
        if self._seen_csc is None:
            with self._lock:
                if self._seen_csc is None:
                    self._seen_csc = sp.csc_matrix(self.seen)
        return self._seen_csc

    def neighbour_graph(self) -> tuple[np.ndarray, np.ndarray]:
        """The catalogue's near-duplicates as a CSR graph (indptr, indices) over its items, what the
        compiled diversity walk reads (built once, from ``catalog.neighbours``)."""
        if self._neighbour_graph is None:
            with self._lock:
                if self._neighbour_graph is None:
                    self._neighbour_graph = neighbour_arrays(self.catalog.neighbours, self.catalog.n_items)
        return self._neighbour_graph


@dataclass(frozen=True)
class EngagementTables:
    """The engagement model's arrays as the ranking reads them.

    Attributes
    ----------
    item_quality : ndarray of float32, shape (n,)
        Log-odds quality of each catalogue item: the bundle's learned value,
        or its authority level's for an item new to the bundle.
    user_interest, user_format : ndarray of float32, shape (n_users, n_topics | n_formats)
        Plain ndarray views of the model's arrays.
    segment_interest, segment_format : ndarray of float32, shape (n_segments + 1, ...)
        Rows of ``catalog.popularity``'s segments (the last: the population),
        for users the bundle does not know.
    topic_best : ndarray of int64, shape (n_topics, topic_candidates)
        Per topic, its available items live at the window's end with the
        best quality + timeliness then (-1 padded).
    segment_best : ndarray of int64, shape (n_segments + 1, best_candidates)
        Per segment row, the items it may receive with the best
        segment-level engagement score (quality + segment interest + segment
        format taste + timeliness) at the window's end.

    Recent popularity breaks ties in both lists (and orders them when the
    engagement model is all 0).
    """

    item_quality: np.ndarray
    user_interest: np.ndarray
    user_format: np.ndarray
    segment_interest: np.ndarray
    segment_format: np.ndarray
    topic_best: np.ndarray
    segment_best: np.ndarray


def item_timeliness(model: TrainedModel, catalog: Catalog, now_ns: int) -> np.ndarray:
    """Freshness and trend term of the engagement model for every catalogue item at ``now_ns``, float32 (n,)."""
    published = catalog.published_ns
    age_days = np.where(published == NS_MIN, np.nan, (now_ns - published.astype(np.float64)) / _NS_PER_DAY)
    return timeliness(
        age_days,
        catalog.topic_idx,
        catalog.topic_weight,
        np.asarray(model.topic_freshness, dtype=np.float32),
        np.asarray(model.topic_trend, dtype=np.float32),
        np.asarray(model.config.engagement.freshness_taus_days, dtype=np.float64),
    )


def _best_by(scores: np.ndarray, allowed: np.ndarray, n: int) -> np.ndarray:
    """Per row, the columns of the ``n`` highest ``scores`` among ``allowed`` (best first, ties: lower index), -1 padded."""
    m, n_items = scores.shape
    out = np.full((m, n), -1, dtype=np.int64)
    if n == 0 or n_items == 0:
        return out
    masked = np.where(allowed, scores, -np.inf)
    take = min(n, n_items)
    part = np.argpartition(-masked, take - 1, axis=1)[:, :take] if take < n_items else np.tile(np.arange(n_items), (m, 1))
    vals = np.take_along_axis(masked, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    best = np.take_along_axis(part, order, axis=1)
    ok = np.isfinite(np.take_along_axis(vals, order, axis=1))
    out[:, :take] = np.where(ok, best, -1)
    return out


def _engagement_tables(model: TrainedModel, catalog: Catalog, config: RankingConfig, n_segments: int) -> EngagementTables:
    n, n_bundle = catalog.n_items, catalog.n_bundle
    authority = np.asarray(model.authority_quality, dtype=np.float32)
    quality = np.concatenate(
        [np.asarray(model.item_quality, dtype=np.float32), authority[catalog.authority_code[n_bundle:]]]
    ).astype(np.float32)
    seg_interest = np.asarray(model.segment_interest, dtype=np.float32)
    seg_format = np.asarray(model.segment_format, dtype=np.float32)
    end_ns = _window_end(model)
    timely = item_timeliness(model, catalog, end_ns)
    live = catalog.available & (catalog.published_ns <= end_ns) & (catalog.expires_ns > end_ns)
    # popularity, far below one step of the engagement score, only breaks ties (and orders the lists
    # when the engagement model had nothing to learn from and its terms are all 0)
    item_score = quality + timely + _TIE * catalog.popularity[-1]
    topic_best = _best_by(
        np.broadcast_to(item_score, (catalog.topic_bool.shape[1], n)), live[None, :] & catalog.topic_bool.T,
        config.topic_candidates,
    )
    tax = model.taxonomy
    seg_g = _positions(model.segments[C.GROUP], tuple(tax.groups))
    seg_r = _positions(model.segments[C.REGION], tuple(tax.regions))
    padded = np.hstack([seg_interest, np.zeros((n_segments + 1, 1), np.float32)])
    fmt_pos = np.maximum(catalog.format_code, 0)
    segment_best = np.full((n_segments + 1, config.best_candidates), -1, dtype=np.int64)
    # blocks of segments bound the (segments x items) temporaries on a large taxonomy
    for lo in range(0, n_segments + 1, _SEGMENT_BLOCK):
        rows = np.arange(lo, min(n_segments + 1, lo + _SEGMENT_BLOCK))
        # segment-level engagement score: interest over the item's topics, format taste, quality, timeliness
        interest = (padded[rows][:, catalog.topic_idx] * catalog.topic_weight[None, :, :]).sum(axis=2)
        fmt = np.where(catalog.format_code >= 0, seg_format[rows][:, fmt_pos], 0.0)
        # each segment's best among the items it may receive; the population row: items for everyone
        may = np.broadcast_to(catalog.group_ok.all(axis=0) & catalog.region_ok.all(axis=0), (len(rows), n)).copy()
        for j, s in enumerate(rows):
            if s < n_segments and seg_g[s] >= 0 and seg_r[s] >= 0:
                may[j] = catalog.group_ok[seg_g[s]] & catalog.region_ok[seg_r[s]]
        score = interest + fmt + (quality + timely)[None, :] + _TIE * catalog.popularity[rows]
        segment_best[rows] = _best_by(score, may & live[None, :], config.best_candidates)
    return EngagementTables(
        item_quality=quality,
        user_interest=np.asarray(model.user_interest, dtype=np.float32),
        user_format=np.asarray(model.user_format, dtype=np.float32),
        segment_interest=seg_interest,
        segment_format=seg_format,
        topic_best=topic_best,
        segment_best=segment_best,
    )


def _window_end(model: TrainedModel) -> int:
    """End of the bundle's data window in UTC nanoseconds (now when unknown)."""
    end = (model.window or {}).get("end")
    if not end:
        return int(pd.Timestamp.now(tz="UTC").value)
    ts = pd.Timestamp(end)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.as_unit("ns").value)


def _pair_tables(model: TrainedModel, n_segments: int) -> tuple[np.ndarray, np.ndarray]:
    tax = model.taxonomy
    n_g, n_r, n_t = len(tax.groups), len(tax.regions), len(tax.topics)
    seg_g = _positions(model.segments[C.GROUP], tuple(tax.groups))
    seg_r = _positions(model.segments[C.REGION], tuple(tax.regions))
    by_pair = np.full((n_g, n_r), n_segments, dtype=np.int64)
    ok = (seg_g >= 0) & (seg_r >= 0)
    by_pair[seg_g[ok], seg_r[ok]] = np.flatnonzero(ok)

    prior = np.asarray(model.segment_topic_prior, dtype=np.float32).reshape(n_segments, n_t)
    overall = prior.mean(axis=0) if n_segments else np.full(n_t, 1.0 / max(n_t, 1), np.float32)
    priors = np.empty((n_g, n_r, n_t), dtype=np.float32)
    for g in range(n_g):
        mine = ok & (seg_g == g)
        group_prior = prior[mine].mean(axis=0) if mine.any() else overall
        priors[g, :, :] = group_prior
    priors[seg_g[ok], seg_r[ok]] = prior[ok]
    return by_pair, priors


def build_state(
    model: TrainedModel,
    catalog_items: pd.DataFrame | None,
    config: RankingConfig,
    *,
    rejected: int = 0,
    previous: RankingState | None = None,
) -> RankingState:
    """Build a complete serving state (nothing is shared with an older one).

    Parameters
    ----------
    model : TrainedModel
    catalog_items : DataFrame or None
        A clean catalogue (``catalog.read_catalog``); ``None``: the bundle's copy.
    config : RankingConfig
        Checked here (see :func:`check_config`).
    rejected : int
        Catalogue rows the validator left out.
    previous : RankingState, optional
        The state being replaced; when it serves the same model with the same
        near-duplicate threshold, its bundle near-duplicate pairs are reused.

    Raises
    ------
    ConfigError
        On an invalid ranking configuration.
    """
    check_config(config)
    if config.ranker == "learned" and model.ranker is not None:
        # the ranker's inputs are what it was trained on: the freshness half-life and the authority
        # levels of the bundle's own [ranking], whatever a serving config says
        trained = model.config.ranking
        config = dataclasses.replace(
            config,
            freshness_half_life_days=trained.freshness_half_life_days,
            authority_levels=dict(trained.authority_levels),
        )
    tax = model.taxonomy
    reuse = None
    if (
        previous is not None
        and previous.model is model
        and previous.config.near_duplicate_threshold == config.near_duplicate_threshold
    ):
        reuse = previous.catalog.bundle_neighbours
    catalog = build_catalog(model, catalog_items, config, rejected=rejected, bundle_neighbours=reuse)
    n_segments = len(model.segments)
    by_pair, priors = _pair_tables(model, n_segments)
    # per-user state as compact arrays (codes are far below 2**15): nothing per user is a Python object
    user_group = model.user_codes(C.GROUP, tax.groups).astype(np.int16)
    user_region = model.user_codes(C.REGION, tax.regions).astype(np.int16)
    known = (user_group >= 0) & (user_region >= 0)
    user_segment = np.where(known, by_pair[np.maximum(user_group, 0), np.maximum(user_region, 0)], n_segments)
    # a bundle's id lookup is memory-mapped; a model built in memory gets one here
    lookup = model.user_lookup or SortedIds.from_ids(model.users[C.USER_ID].astype(str).to_numpy(dtype=object))
    default_now = _window_end(model)
    ranker = model.ranker if config.ranker == "learned" else None
    if ranker is not None:
        ranker.prepare()  # its compiled trees now (or from their cache), not in the first request
    compiled_selection.warm()  # the selection's kernels likewise
    compiled_scoring.warm()  # and the scoring's
    if ranker is not None:
        compiled_features.warm()  # and the learned ranker's feature pass
    compiled_reasons.warm()  # and the reasons' codes
    if model.item_index is not None:
        model.item_index.warm()  # and the exact search's top-k
    feats = features_of(model, ranker)
    state = RankingState(
        model=model,
        config=config,
        catalog=catalog,
        catalog_items=catalog_items,
        user_pos=lookup,
        user_group=user_group,
        user_region=user_region,
        user_segment=user_segment.astype(np.int16),
        segment_by_pair=by_pair,
        topic_prior_by_pair=priors,
        default_now_ns=default_now,
        reasons=reason_tables(tax, model.segments),
        user_factors=np.asarray(model.user_factors),
        user_topics=np.asarray(model.user_topics),
        seen=_plain_csr(model.seen),
        engagement=_engagement_tables(model, catalog, config, n_segments),
        signals=_plain_signals(model.signals),
        coengagement=_plain_csr(model.signals.coengagement()),
        ranker=ranker,
        features=feats,
        reason_groups=_reason_groups(model, ranker),
        used_features=ranker.used_features if ranker is not None else None,
        cold_kinds=kinds_for_cold_users(feats),
        **_signal_lists(model, catalog),
    )
    if ranker is not None:
        plan_for(state, feats, state.used_features)  # the feature pass's tables now, not in the first request
    return state


def _signal_lists(model: TrainedModel, catalog: Catalog) -> dict[str, np.ndarray]:
    """Static candidate lists from the training-time signals: per segment and per trend window."""
    sig = model.signals
    p = model.config.ranker.popularity_candidates
    n_bundle = catalog.n_bundle
    end_ns = _window_end(model)
    live = (catalog.available & (catalog.expires_ns > end_ns))[:n_bundle]
    tax = model.taxonomy
    first_segment = 1 + len(tax.groups) + len(tax.regions)
    levels = np.asarray(sig.popularity_levels)
    n_seg = levels.shape[1] - first_segment
    popular = [
        _best_by(np.asarray(levels[w, first_segment:], np.float32), np.broadcast_to(live, (n_seg, n_bundle)), p)
        for w in range(levels.shape[0])
    ]
    # the trend windows' counts, and the all-time count (what the "popular" baseline lists)
    windows = np.vstack([np.asarray(sig.popularity_windows, np.float32), np.asarray(model.popularity_all_time, np.float32)[None, :]])
    trend = _best_by(windows, np.broadcast_to(live, windows.shape), p)
    return {
        "popular_lists": np.hstack(popular) if popular else np.zeros((n_seg, 0), np.int64),
        "trend_lists": trend.reshape(-1),
    }


def _plain_signals(signals: Signals) -> Signals:
    """The signals over plain ndarray views of the (memory-mapped) arrays: a memmap pays Python
    overhead on every indexing, and features index them a few dozen times per call."""
    names = [n for n in (*signals.ARRAYS, *signals.OPTIONAL) if getattr(signals, n) is not None]
    return dataclasses.replace(signals, **{name: np.asarray(getattr(signals, name)) for name in names})


def _reason_groups(model: TrainedModel, ranker: LearnedRanker | None) -> list:
    return reason_groups(features_of(model, ranker)) if ranker is not None else []


def features_of(model: TrainedModel, ranker: LearnedRanker | None) -> tuple:
    """The registered features a ranker reads, in its column order (empty without a ranker)."""
    if ranker is None:
        return ()
    return selected(model.config.ranker, ranker.feature_names)


def _plain_csr(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """The same CSR matrix over plain ndarray views of its (possibly memory-mapped) arrays."""
    m = sp.csr_matrix(matrix)
    return sp.csr_matrix((np.asarray(m.data), np.asarray(m.indices), np.asarray(m.indptr)), shape=m.shape, copy=False)


def check_config(config: RankingConfig) -> RankingConfig:
    """Check a :class:`RankingConfig` against its declared constraints; return it.

    Raises
    ------
    ConfigError
        Naming the field, its bad value and what is valid.
    """
    return check_section(config, RankingConfig)
