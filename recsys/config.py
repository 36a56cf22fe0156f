"""Engine configuration: one TOML file, defaults in code (dataclasses).

Each ``[section]`` of the TOML file maps to one small dataclass below; a key
that is not a field is an error naming the valid keys. CLI flags override
the file. ``EngineConfig.to_dict()`` is what a model bundle records.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from recsys.exceptions import ConfigError


@dataclass
class InteractionConfig:
    """How events become the weighted user x item matrix."""

    #: weight per event type; negatives lower an item's score for the user
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "click": 1.0,
            "read": 2.0,
            "complete": 3.0,
            "like": 3.0,
            "favorite": 4.0,
            "share": 5.0,
            "dismiss": -2.0,
            "report": -6.0,
        }
    )
    #: a read's weight grows with dwell: weight * min(1 + dwell / dwell_unit_seconds, dwell_max_factor)
    dwell_unit_seconds: float = 120.0
    dwell_max_factor: float = 2.0
    #: exponential time decay half-life, in days, counted back from the data's end
    half_life_days: float = 30.0
    #: half-life of the decay behind segment and city-wide popularity (the ranking's popularity
    #: term and the evaluation's segment_popular baseline); shorter says more what is trending
    #: now (on the synthetic city 7 days raised logged precision@10 at equal simulated engagement)
    popularity_half_life_days: float = 30.0


@dataclass
class CollaborativeConfig:
    """Matrix factorization with ``implicit``."""

    algorithm: str = "als"  # "als" or "bpr"
    factors: int = 64
    regularization: float = 0.05
    alpha: float = 10.0
    iterations: int = 15
    learning_rate: float = 0.01  # bpr only
    threads: int = 2
    seed: int = 42
    #: iterations of a warm-started fit (reuses the previous bundle's factors)
    warm_start_iterations: int = 4
    #: subtracted from score() for each (user, item) with a dismiss/report, so
    #: negative feedback can only lower that item's score for the user
    negative_penalty: float = 1.0


@dataclass
class ProfileConfig:
    """Readable topic-interest profiles."""

    #: Bayesian smoothing: pseudo-count of the group x region prior
    prior_strength: float = 5.0
    #: how strongly negative feedback pulls a topic down (multiplies the event weight)
    negative_factor: float = 1.0
    #: pseudo-count (in users) shrinking a group x region prior toward its group's
    #: prior, and a group's prior toward the global one
    segment_prior_strength: float = 10.0


@dataclass
class EngagementConfig:
    """The engagement model: log-odds of engagement per impression (``recsys.engagement``).

    Each ``l2_*`` is the penalty of one level of effects (the inverse variance
    of its Gaussian prior): larger values keep that level closer to the one
    above it (a user's to their segment's, an item's to its authority level's).
    """

    #: item quality around its authority level's
    l2_item: float = 4.0
    #: a user's general propensity to engage
    l2_user: float = 4.0
    #: a user's own topic interest around their segment's and sub-group's
    l2_user_topic: float = 6.0
    #: a user's own format taste around their segment's and sub-group's
    l2_user_format: float = 10.0
    #: group x region and sub-group effects (topics, formats) around the population's
    l2_segment: float = 4.0
    #: population-level effects: topics, formats, authority levels, channel x format
    l2_global: float = 1.0
    #: freshness coefficients per topic and time constant
    l2_freshness: float = 2.0
    #: the recent lift of a topic (campaigns)
    l2_trend: float = 4.0
    #: time constants (days) of the freshness curves exp(-age / tau) fitted per topic
    freshness_taus_days: list[float] = field(default_factory=lambda: [1.0, 4.0, 15.0, 60.0])
    #: the window's last days whose extra engagement per topic counts as its current trend
    trend_days: float = 7.0
    #: backfitting sweeps at most (0 = leave every effect at 0)
    max_sweeps: int = 25
    #: stop when a sweep improves the mean log-loss by less than this
    tol: float = 1e-4
    #: memory bound: fit on at most this many shown pairs (a seeded uniform sample
    #: above it; the fit holds ~600 bytes per shown pair); 0 = no bound
    max_exposures: int = 5_000_000
    seed: int = 42


@dataclass
class ContentConfig:
    """Content embedding: jieba -> TF-IDF -> TruncatedSVD, plus topic/format features."""

    svd_components: int = 64
    max_features: int = 50000
    min_df: int = 1
    topic_weight: float = 0.5
    format_weight: float = 0.2
    #: stop-word file, one word a line; "" = the list shipped in recsys/data/stopwords_zh.txt
    stopwords: str = ""
    seed: int = 42


@dataclass
class ColdStartConfig:
    """Vectors for items and users without (enough) events."""

    ridge_alpha: float = 1.0
    #: a cold user's vector = (1 - w) * segment centroid + w * topic-prior projection
    topic_prior_blend: float = 0.3
    #: users with at most this many positive events are folded in, not fitted
    fold_in_max_events: int = 3
    #: a (group, sub_group, region) segment needs this many warm users for its own
    #: centroid; otherwise back off to (group, region), then (group), then global
    min_segment_users: int = 5


@dataclass
class IndexConfig:
    """faiss ANN index over item vectors."""

    #: below this many items the index is exact (IndexFlatIP), HNSW at and above it. On 50k
    #: items HNSW answers the ranking's wide candidate searches several times faster than the
    #: exact index (benchmarks/README.md), at a recall@50 of 0.47-0.89 over ALS factors: the
    #: ranking's other candidate sources and its exact fallback keep lists full and eligible
    exact_threshold: int = 20000
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    recall_sample: int = 500
    recall_k: int = 50
    #: an HNSW search whose allow-list has at most this many ids is answered exactly over
    #: just those vectors (faster than a filtered graph walk up to tens of thousands)
    allow_exact_max: int = 20000
    threads: int = 2
    seed: int = 42


@dataclass
class BundleConfig:
    """Model bundle housekeeping."""

    #: how many bundles to keep for rollback
    keep: int = 5


@dataclass
class PushConfig:
    """Nightly push lists and campaigns (``recsys.push``).

    Per-channel tables (``k``, caps, quiet hours) are keyed by personal
    channel code; every personal channel of the taxonomy needs an entry.
    """

    #: personal channels a user gets a list on per night
    channels_per_user: int = 1
    #: channel order when the user's own engagement does not decide (no events, ties)
    channel_priority: list[str] = field(default_factory=lambda: ["app_push", "wechat", "e_reader"])
    #: list length per channel
    k: dict[str, int] = field(default_factory=lambda: {"app_push": 3, "wechat": 5, "e_reader": 5})
    #: most items pushed to one user on one channel per local day (nightly + campaigns)
    daily_cap: dict[str, int] = field(default_factory=lambda: {"app_push": 5, "wechat": 8, "e_reader": 8})
    #: most items pushed to one user on one channel in any 7 consecutive days
    weekly_cap: dict[str, int] = field(default_factory=lambda: {"app_push": 20, "wechat": 30, "e_reader": 30})
    #: an item is never pushed twice to the same user less than this many days apart
    dedup_days: int = 180
    #: quiet hours: the sender may deliver from send_after to send_before (local time, HH:MM)
    send_after: dict[str, str] = field(
        default_factory=lambda: {"app_push": "08:00", "wechat": "07:30", "e_reader": "19:00"}
    )
    send_before: dict[str, str] = field(
        default_factory=lambda: {"app_push": "21:00", "wechat": "22:00", "e_reader": "22:30"}
    )
    #: most items sharing one topic inside one list (soft: relaxed only to fill k)
    topic_cap: int = 2
    #: share of users per group x region that gets no push (the measurement holdout)
    holdout_share: float = 0.05
    #: the holdout is a hash of (salt, user id): same users night after night until the salt changes
    holdout_salt: str = "kepu-holdout-1"
    #: users per chunk (the unit of work, checkpoint and resume)
    chunk_size: int = 20000
    #: local worker processes (1 = in this process)
    workers: int = 2
    #: the push history is split by a hash of user id into this many buckets
    history_buckets: int = 64


@dataclass
class RankingConfig:
    """The ranking blend, diversity rules and candidate counts (``recsys.ranking``).

    ``score = w_quality * quality + w_interest * interest + w_format * format taste
    + w_timeliness * timeliness`` (the engagement model's log-odds terms, learned per
    impression) ``+ w_collaborative * relevance + w_topic * topic affinity
    + w_popularity * segment popularity + w_freshness * freshness + w_authority * authority``
    (each in [0, 1], relevance in [-1, 1]); see ``recsys/ranking/scoring.py``.
    """

    weight_collaborative: float = 0.5
    weight_topic: float = 0.5
    weight_popularity: float = 1.0
    weight_freshness: float = 0.5
    weight_authority: float = 0.05
    weight_quality: float = 1.0
    weight_interest: float = 1.0
    weight_format: float = 1.0
    weight_timeliness: float = 1.0
    #: authority term per source level (contract codes)
    authority_levels: dict[str, float] = field(
        default_factory=lambda: {"national": 1.0, "provincial": 0.6, "municipal": 0.3, "other": 0.0}
    )
    #: freshness = 0.5 ** (age_days / half_life); items without a publish time count as old
    freshness_half_life_days: float = 7.0
    #: content cosine above which two items are near-duplicates (never in one list)
    near_duplicate_threshold: float = 0.9
    #: soft cap: at most ceil(max_topic_share * k) items per primary topic unless needed to fill k
    max_topic_share: float = 0.3
    #: ANN candidates per user: max(ann_candidates, ann_overfetch * k), scaled up by 1 / eligible share
    ann_candidates: int = 50
    ann_overfetch: int = 4
    #: ceiling of ANN candidates per user after scaling
    ann_max_fetch: int = 1000
    #: below this share of eligible items, the ANN search runs on the allow-list
    allow_search_below: float = 0.2
    #: the user's top topics used as a candidate source, and items per topic
    candidate_topics: int = 3
    topic_candidates: int = 20
    #: freshest published items, and group x region popular items, per user
    fresh_candidates: int = 20
    popular_candidates: int = 50
    #: items with the best segment-level engagement score (quality, interest, format, timeliness) per user
    best_candidates: int = 30
    #: largest k a call accepts
    max_k: int = 1000
    #: users per vectorized block in recommend_many
    batch_size: int = 1024
    #: threads recommend_many ranks blocks on (1 where several worker processes share the cores)
    threads: int = 2


@dataclass
class EngineConfig:
    """All configuration sections."""

    interactions: InteractionConfig = field(default_factory=InteractionConfig)
    collaborative: CollaborativeConfig = field(default_factory=CollaborativeConfig)
    profiles: ProfileConfig = field(default_factory=ProfileConfig)
    engagement: EngagementConfig = field(default_factory=EngagementConfig)
    content: ContentConfig = field(default_factory=ContentConfig)
    cold_start: ColdStartConfig = field(default_factory=ColdStartConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    bundle: BundleConfig = field(default_factory=BundleConfig)
    push: PushConfig = field(default_factory=PushConfig)
    ranking: RankingConfig = field(default_factory=RankingConfig)

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain nested dicts (TOML/JSON-ready)."""
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """Return the configuration as TOML text."""
        return tomli_w.dumps(self.to_dict())


def _coerce(section: str, key: str, value: Any, default: Any) -> Any:
    where = f"[{section}] {key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config {where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config {where} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config {where} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"config {where} must be a string, got {value!r}")
        return value
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"config {where} must be a table, got {value!r}")
        merged = dict(default)
        merged.update(value)
        return merged
    if isinstance(default, (list, tuple)):
        if not isinstance(value, list):
            raise ConfigError(f"config {where} must be a list, got {value!r}")
        return type(default)(value)
    return value


def config_from_dict(doc: dict[str, Any], base: EngineConfig | None = None) -> EngineConfig:
    """Overlay a nested dict (as read from TOML) onto ``base`` (or the defaults).

    Raises
    ------
    ConfigError
        On an unknown section or key, or a value of the wrong type.
    """
    cfg = dataclasses.replace(base) if base is not None else EngineConfig()
    sections = {f.name: f for f in dataclasses.fields(EngineConfig)}
    for name, values in doc.items():
        if name not in sections:
            raise ConfigError(f"unknown config section [{name}]; valid: {', '.join(sections)}")
        if not isinstance(values, dict):
            raise ConfigError(f"config section [{name}] must be a table")
        current = getattr(cfg, name)
        fields = {f.name for f in dataclasses.fields(current)}
        updates = {}
        for key, value in values.items():
            if key not in fields:
                raise ConfigError(f"unknown config key [{name}] {key}; valid: {', '.join(sorted(fields))}")
            updates[key] = _coerce(name, key, value, getattr(current, key))
        setattr(cfg, name, dataclasses.replace(current, **updates))
    return cfg


def load_config(path: str | Path | None = None) -> EngineConfig:
    """Load a TOML config file over the defaults; ``None`` gives the defaults.

    Raises
    ------
    ConfigError
        If the file is missing, not valid TOML, or has unknown keys.
    """
    if path is None:
        return EngineConfig()
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})") from None
    try:
        return config_from_dict(doc)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
