"""Engine configuration: one TOML file, defaults in code (dataclasses).

Each ``[section]`` of the TOML file maps to one small dataclass below; a key
that is not a field is an error naming the valid keys. CLI flags override
the file. ``EngineConfig.to_dict()`` is what a model bundle records.

Every setting's valid values are declared once, in its section's
``_constraints`` mapping right beside the fields (:class:`Range`,
:class:`OneOf`, :class:`TextFile`), and checked whenever a configuration is
read (:func:`check_config`): one message style for every key, e.g.
``[collaborative] iterations = 1000000000000000 is out of range; valid: 1..1000``.
A new field gets its entry there; ``tests/test_config.py`` fails for a
numeric field without one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import numbers
import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping, TypeVar

import tomli_w

from recsys.columns import AUTHORITIES, EVENT_TYPES_NEGATIVE, EVENT_TYPES_POSITIVE
from recsys.exceptions import ConfigError

# ---- constraints ---------------------------------------------------------------------------


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (Python or numpy), and not a bool.

    The one test for "an integer was given": ``bool`` is a subclass of
    ``int``, so ``isinstance(True, int)`` holds and ``True`` would pass for 1.
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number (int or float, Python or numpy), and not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class Range:
    """Numbers from ``lo`` to ``hi`` inclusive (``lo`` excluded when ``lo_open``).

    On a table (dict) or list setting it applies to every value; ``nonempty``
    also refuses an empty list or table.
    """

    lo: float
    hi: float
    lo_open: bool = False
    nonempty: bool = False
    hi_open: bool = False

    def ok(self, value: Any) -> bool:
        """Whether ``value`` is a finite number inside the range."""
        if not is_number(value) or not math.isfinite(value):
            return False
        above = value > self.lo if self.lo_open else value >= self.lo
        return above and (value < self.hi if self.hi_open else value <= self.hi)

    def describe(self) -> str:
        """The valid values, as the error message shows them."""
        if self.lo_open or self.hi_open:
            return f"{'>' if self.lo_open else '>='} {_num(self.lo)} and {'<' if self.hi_open else '<='} {_num(self.hi)}"
        return f"{_num(self.lo)}..{_num(self.hi)}"

    def describe_all(self) -> str:
        """The valid values of a list or table setting (``nonempty`` said)."""
        return ("at least one value, each " if self.nonempty else "each ") + self.describe()


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of strings."""

    choices: tuple[str, ...]

    def ok(self, value: Any) -> bool:
        """Whether ``value`` is one of the choices."""
        return value in self.choices

    def describe(self) -> str:
        """The valid values, as the error message shows them."""
        return ", ".join(self.choices)


@dataclass(frozen=True)
class AutoOr:
    """``"auto"`` (the engine measures and picks the value when it trains) or a number in ``number``.

    The one rule that takes a string or a number: its setting's type is not judged by its default.
    """

    number: Range

    def ok(self, value: Any) -> bool:
        """Whether ``value`` is ``"auto"`` or a number inside the range."""
        return (isinstance(value, str) and value == AUTO) or self.number.ok(value)

    def describe(self) -> str:
        """The valid values, as the error message shows them."""
        return f"{AUTO!r} or {self.number.describe()}"


#: the value of an :class:`AutoOr` setting that lets the engine choose
AUTO = "auto"


@dataclass(frozen=True)
class LocalTime:
    """A local time of day written ``HH:MM`` (``"07:30"``, ``"22:00"``); on a table, every value."""

    @staticmethod
    def parse(value: Any) -> dt.time | None:
        """The time ``value`` names, or None when it is not ``HH:MM`` with 0..23 and 0..59."""
        try:
            hours, minutes = str(value).split(":")
            return dt.time(int(hours), int(minutes))
        except (ValueError, TypeError):
            return None

    def ok(self, value: Any) -> bool:
        """Whether ``value`` is a string naming a time of day."""
        return isinstance(value, str) and self.parse(value) is not None

    def describe(self) -> str:
        """The valid values, as the error message shows them."""
        return "a local time HH:MM, 00:00..23:59"


@dataclass(frozen=True)
class Keyed:
    """A table with a fixed set of keys, each value under its own :class:`Range`.

    ``complete``: every key must be present (a TOML file always has them all:
    its table is merged over the default's).
    """

    rules: Mapping[str, Range]
    complete: bool = True

    def problem(self, value: Any) -> str | None:
        """Return what is wrong with the table's keys (unknown or missing), or None."""
        if not isinstance(value, dict):
            return f"is not a table; valid: a table of {', '.join(self.rules)}"
        unknown = [k for k in value if k not in self.rules]
        if unknown:
            return f"has unknown key {unknown[0]!r}; valid: {', '.join(self.rules)}"
        missing = [k for k in self.rules if k not in value]
        if missing and self.complete:
            return f"lacks key {missing[0]!r}; needed: {', '.join(self.rules)}"
        return None


@dataclass(frozen=True)
class TextFile:
    """A path to a regular file of at most ``max_bytes`` ("" = the built-in default).

    Checked when a config file is loaded (a bundle's recorded config names a
    path on the machine that trained it, so it is not checked there).
    """

    max_bytes: int

    def problem(self, value: str) -> str | None:
        """Return why ``value`` is not usable, or None."""
        if value == "":
            return None
        try:
            info = os.stat(value)
        except OSError as exc:
            return f"cannot be read ({exc.strerror or exc})"
        if not stat.S_ISREG(info.st_mode):
            return "is not a regular file"
        if info.st_size > self.max_bytes:
            return f"is {info.st_size:,} bytes; valid: a text file of at most {self.max_bytes:,} bytes"
        return None


@dataclass(frozen=True)
class Tables:
    """A list of tables (TOML ``[[section.key]]``), each read into the dataclass ``row``.

    ``row`` has a default for every field and its own ``_constraints``; each
    table needs a unique non-empty ``name``, which every error message names.
    """

    row: type

    def read(self, section: str, key: str, value: Any, *, files: bool = False) -> list[Any]:
        """Check every table of ``value``; return them as ``row`` instances, in order.

        Raises
        ------
        ConfigError
            Naming the table (by its ``name``) and the key: not a table, no or a
            duplicate name, an unknown key, a wrong type, a value out of range.
        """
        where = f"{section}.{key}"
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"[{where}] must be a list of tables ([[{where}]]), got {_show(value)}")
        fields = {f.name for f in dataclasses.fields(self.row)}
        defaults, rows, seen = self.row(), [], set()
        for i, table in enumerate(value):
            if not isinstance(table, dict):
                raise ConfigError(f"[{where}] entry {i + 1} must be a table, got {_show(table)}")
            name = table.get("name")
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(f"[{where}] entry {i + 1} needs a name (a non-empty string naming it in reports)")
            if name in seen:
                raise ConfigError(f"[{where}] name {name!r} is used twice; each entry needs its own name")
            seen.add(name)
            label = f"{where} {name!r}"
            for k, v in table.items():
                if k not in fields:
                    raise ConfigError(f"unknown config key [{label}] {k}; valid: {', '.join(sorted(fields))}")
                if isinstance(getattr(defaults, k), list) and isinstance(v, list) and not all(
                    isinstance(x, str) for x in v
                ):
                    raise ConfigError(f"config [{label}] {k} must be a list of strings, got {_show(v)}")
            row = dataclasses.replace(
                defaults, **{k: _coerce(label, k, v, getattr(defaults, k)) for k, v in table.items()}
            )
            for k, rule in constraints(row).items():
                _check_value(label, k, getattr(row, k), rule, files)
            rows.append(row)
        return rows


Constraint = Range | OneOf | AutoOr | LocalTime | TextFile | Tables | Keyed

#: 2**32 - 1: the largest seed every library we seed accepts
MAX_SEED = 4294967295
_SEED = Range(0, MAX_SEED)
_THREADS = Range(1, 256)
_COUNT = Range(0, 1_000_000)
_PENALTY = Range(0, 1e6)
_DAYS = Range(0.01, 36500)


@dataclass(frozen=True)
class InteractionConfig:
    """How events become the weighted user x item matrix."""

    _constraints: ClassVar[Mapping[str, Constraint]] = {
        # a positive engagement adds to an item's score, negative feedback subtracts; impressions
        # are exposure, never weighted
        "weights": Keyed({
            **{t: Range(0, 100, lo_open=True) for t in EVENT_TYPES_POSITIVE},
            **{t: Range(-100, 0, hi_open=True) for t in EVENT_TYPES_NEGATIVE},
        }),
        "dwell_unit_seconds": Range(1, 86400),
        "dwell_max_factor": Range(1, 100),
        "half_life_days": _DAYS,
        "popularity_half_life_days": _DAYS,
    }

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


@dataclass(frozen=True)
class CollaborativeConfig:
    """Matrix factorization with ``implicit``."""

    _constraints: ClassVar[Mapping[str, Constraint]] = {
        "algorithm": OneOf(("als", "bpr")),
        # factors x (users + items) x 4 bytes must fit in memory: 1024 x 3.1M users is 13 GB
        "factors": Range(1, 1024),
        "regularization": Range(0, 1e4),
        "alpha": Range(0, 1e6),
        "iterations": Range(1, 1000),
        "learning_rate": Range(0, 10, lo_open=True),
        "threads": _THREADS,
        "seed": _SEED,
        "warm_start_iterations": Range(0, 1000),
        "incremental_sweeps": Range(1, 100),
        "negative_penalty": Range(0, 100),
    }

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
    #: nightly incremental update: sweeps over the users with new events, each followed by a
    #: full item sweep (``recsys train`` without ``--full``; docs/training.md)
    incremental_sweeps: int = 2
    #: subtracted from score() for each (user, item) with a dismiss/report, so
    #: negative feedback can only lower that item's score for the user
    negative_penalty: float = 1.0


@dataclass(frozen=True)
class ProfileConfig:
    """Readable topic-interest profiles."""

    _constraints: ClassVar[Mapping[str, Constraint]] = {
        # a pseudo-count of 0 would divide a user without events by zero
        "prior_strength": Range(0, 1e6, lo_open=True),
        "negative_factor": Range(0, 100),
        "segment_prior_strength": _PENALTY,
    }

    #: Bayesian smoothing: pseudo-count of the group x region prior
    prior_strength: float = 5.0
    #: how strongly negative feedback pulls a topic down (multiplies the event weight)
    negative_factor: float = 1.0
    #: pseudo-count (in users) shrinking a group x region prior toward its group's
    #: prior, and a group's prior toward the global one
    segment_prior_strength: float = 10.0


@dataclass(frozen=True)
class EngagementConfig:
    """The engagement model: log-odds of engagement per impression (``recsys.training.engagement``).

    Each ``l2_*`` is the penalty of one level of effects (the inverse variance
    of its Gaussian prior): larger values keep that level closer to the one
    above it (a user's to their segment's, an item's to its authority level's).
    """

    _constraints: ClassVar[Mapping[str, Constraint]] = {
        # each penalty is an inverse prior variance: 0 would leave a level unregularised
        **{f"l2_{level}": Range(0, 1e6, lo_open=True) for level in (
            "item", "user", "user_topic", "user_format", "segment", "global", "freshness", "trend"
        )},
        "freshness_taus_days": Range(0.01, 3650, nonempty=True),
        "trend_days": Range(0, 365, lo_open=True),
        "max_sweeps": Range(0, 1000),
        "tol": Range(0, 1),
        "max_exposures": Range(0, 1_000_000_000),
        "taste_dim": Range(0, 256),
        "l2_taste": Range(0, 1e6, lo_open=True),
        "taste_sweeps": Range(1, 1000),
        "warm_sweeps": Range(1, 1000),
        "warm_exposures": Range(0, 1_000_000_000),
        "seed": _SEED,
    }

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
    #: above it; the fit holds ~120-250 bytes per sampled pair); 0 = no bound
    max_exposures: int = 5_000_000
    #: dimensions of the latent taste term ``user . item`` fitted on the impressions on top of the
    #: model's other terms (a logistic matrix factorisation; with the learned ranker only, which reads
    #: it as the ``taste`` feature and inside ``engagement``); 0 = no taste term
    taste_dim: int = 0
    #: penalty on every taste vector (a user shown few items keeps a small one)
    l2_taste: float = 5.0
    #: sweeps of the taste fit at most (it stops earlier when the log-loss stops improving)
    taste_sweeps: int = 30
    #: a night's update (incremental training): sweeps at most, starting from yesterday's effects
    warm_sweeps: int = 2
    #: a night's update: fit on at most this many shown pairs of the whole window (a seeded uniform
    #: sample; effects no sampled pair bears on keep yesterday's value); 0 = ``max_exposures``, the
    #: full fit's bound (a smaller sample re-estimates thinly sampled users from fewer pairs)
    warm_exposures: int = 0
    seed: int = 42


@dataclass(frozen=True)
class ContentConfig:
    """Content embedding: jieba -> TF-IDF -> TruncatedSVD, plus topic/format features."""

    _constraints: ClassVar[Mapping[str, Constraint]] = {
        "svd_components": Range(1, 1024),
        "max_features": Range(1, 10_000_000),
        "min_df": Range(1, 1_000_000),
        "topic_weight": Range(0, 100),
        "format_weight": Range(0, 100),
        "stopwords": TextFile(max_bytes=10_000_000),
        "seed": _SEED,
    }

    svd_components: int = 64
    max_features: int = 50000
    min_df: int = 1
    topic_weight: float = 0.5
    format_weight: float = 0.2
    #: stop-word file, one word a line; "" = the list shipped in recsys/data/stopwords_zh.txt
    stopwords: str = ""
    seed: int = 42


@dataclass(frozen=True)
class ColdStartConfig:
    """Vectors for items and users without (enough) events."""

    _constraints: ClassVar[Mapping[str, Constraint]] = {
        # 0 is plain least squares (the mapping's tests compare it with an exact linear map)
        "ridge_alpha": Range(0, 1e6),
        "topic_prior_blend": Range(0, 1),
        "fold_in_max_events": _COUNT,
        "min_segment_users": Range(1, 1_000_000),
    }

    ridge_alpha: float = 1.0
    #: a cold user's vector = (1 - w) * segment centroid + w * topic-prior projection
    topic_prior_blend: float = 0.3
    #: users with at most this many positive events are folded in, not fitted
    fold_in_max_events: int = 3
    #: a (group, sub_group, region) segment needs this many warm users for its own
    #: centroid; otherwise back off to (group, region), then (group), then global
    min_segment_users: int = 5


@dataclass(frozen=True)
class IndexConfig:
    """faiss ANN index over item vectors."""

    _constraints: ClassVar[Mapping[str, Constraint]] = {
        "kind": OneOf(("pruned", "hnsw")),
        "pruned_head": Range(1, 1_000_000_000),
        "pruned_max_share": AutoOr(Range(0, 1)),
        "min_recall": Range(0, 1),
        "exact_threshold": Range(0, 1_000_000_000),
        "hnsw_m": Range(2, 256),
        "ef_construction": Range(1, 10_000),
        "ef_search": Range(1, 10_000),
        # training measures the index's recall on these many users (0: not measured)
        "recall_sample": Range(0, 1_000_000),
        "recall_k": Range(1, 10_000),
        "allow_exact_max": Range(0, 1_000_000_000),
        "threads": _THREADS,
        "seed": _SEED,
    }

    #: "pruned": exact inner-product search over the items in descending norm order, stopping
    #: where no remaining item's norm bound can reach a query's k-th best score (recall 1.0;
    #: ALS factors' norms differ ~700x, so most items are skipped). "hnsw": a faiss HNSW graph
    #: (approximate: recall@50 0.47-0.82 over ALS factors, benchmarks/README.md)
    kind: str = "pruned"
    #: "pruned": the items of largest norm scored first to set each query's bound
    pruned_head: int = 2048
    #: "pruned": score at most this share of the items (those of largest norm; never fewer
    #: than ``pruned_head``). 1 is exact; below 1 the search is approximate. "auto": training
    #: measures recall@``recall_k`` against exact search on ``recall_sample`` users for a few
    #: shares and keeps the smallest that reaches ``min_recall`` (exact when none does or when
    #: ``recall_sample`` is 0); the chosen share and its recall go into the manifest. A number
    #: is used as given, its recall still measured and recorded
    pruned_max_share: float | str = "auto"
    #: "pruned", ``pruned_max_share = "auto"``: the least recall@``recall_k`` the chosen share
    #: must keep on the training's user sample (margin over a 0.95 target for sampling noise)
    min_recall: float = 0.97
    #: "hnsw" only: below this many items the index is a flat exact IndexFlatIP instead
    exact_threshold: int = 20000
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    recall_sample: int = 2000
    recall_k: int = 50
    #: an HNSW search whose allow-list has at most this many ids is answered exactly over
    #: just those vectors (faster than a filtered graph walk up to tens of thousands)
    allow_exact_max: int = 20000
    threads: int = 2
    seed: int = 42


@dataclass(frozen=True)
class BundleConfig:
    """Model bundle housekeeping."""

    _constraints: ClassVar[Mapping[str, Constraint]] = {
        # 0 or less would delete the rollback history, the bundle just written included
        "keep": Range(1, 1000),
    }

    #: how many bundles to keep for rollback
    keep: int = 5


@dataclass(frozen=True)
class TrainingConfig:
    """Guards of ``recsys train`` (``recsys.guards``): when the data is too thin to train on."""

    _constraints: ClassVar[Mapping[str, Constraint]] = {
        "min_events": Range(1, 1_000_000_000),
        "min_users": Range(1, 100_000_000),
        "min_items": Range(1, 100_000_000),
        "max_rejected_share": Range(0, 1),
        # 0 would make every night a full retrain; a year between full ones lets errors pile up
        "full_every_days": Range(1, 366),
    }

    #: fewest clean events (before ``--as-of``) a model may be trained on
    min_events: int = 100
    #: fewest users with a positive engagement, and fewest items engaged with
    min_users: int = 10
    min_items: int = 10
    #: largest share of input rows the validator may quarantine (the rest is then not trusted)
    max_rejected_share: float = 0.5
    #: with an events/ folder, nights are incremental and a full retrain runs once the data
    #: has moved this many days past the last one (``--full`` forces one; docs/training.md)
    full_every_days: int = 7


@dataclass(frozen=True)
class CoverageRuleConfig:
    """One ``[[push.coverage]]`` rule: a priority audience's quota of priority topics.

    The users of the rule's segment (``groups`` x ``sub_groups`` x
    ``regions``; an empty list = all) count as *reached* once they have got
    ``min_items`` items of ``topics`` (empty = any item) in the last
    ``per_days`` days, tonight included. The nightly push makes at least
    ``reach_share`` of each group x region cell of the segment reached
    (1 = every user), at the least cost in the ranking's score; see
    ``recsys/push/coverage.py``. Codes are checked against the taxonomy when a push starts.
    """

    _constraints: ClassVar[Mapping[str, Constraint]] = {
        "min_items": Range(1, 100),
        "per_days": Range(1, 365),
        "reach_share": Range(0, 1, lo_open=True),
        "broadcast_reach": Range(0, 1),
    }

    #: names the rule in the manifest, the coverage table and error messages
    name: str = ""
    groups: list[str] = field(default_factory=list)
    sub_groups: list[str] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    min_items: int = 1
    per_days: int = 7
    #: share of each group x region cell of the segment to reach (1 = every user)
    reach_share: float = 1.0
    #: share of a cell taken as reached by broadcast when its region has a place (tv, radio,
    #: cinema, kiosk) whose audience holds the cell's group; 0 = broadcast not counted
    broadcast_reach: float = 0.0


@dataclass(frozen=True)
class PushConfig:
    """Nightly push lists and campaigns (``recsys.push``).

    Per-channel tables (``k``, caps, quiet hours) are keyed by personal
    channel code. A channel a table leaves out gets the city's own default from
    the taxonomy (``[channels.X] push = {...}``), else the ``default_*`` value
    here: no channel name is written in code, so another taxonomy's channels
    need no config of their own.
    """

    #: keys that no longer exist -> why; a config file setting one is refused (load_config), a bundle
    #: recorded before the removal still loads (config_from_dict drops the key: it does nothing now)
    _removed: ClassVar[Mapping[str, str]] = {
        "topic_cap": "push lists follow the ranking's single diversity rule; set [ranking] max_topic_share "
        "(at train time) and delete this key",
    }
    # the per-channel tables' keys are checked against the taxonomy by recsys.push.channels
    _constraints: ClassVar[Mapping[str, Constraint]] = {
        "channels_per_user": Range(1, 64),
        "k": Range(1, 100),
        "daily_cap": Range(0, 1000),
        "weekly_cap": Range(0, 10_000),
        "default_k": Range(1, 100),
        "default_daily_cap": Range(0, 1000),
        "default_weekly_cap": Range(0, 10_000),
        "send_after": LocalTime(),
        "send_before": LocalTime(),
        "default_send_after": LocalTime(),
        "default_send_before": LocalTime(),
        "dedup_days": Range(1, 3650),
        "holdout_share": Range(0, 0.5),
        "chunk_size": Range(1, 10_000_000),
        "workers": Range(1, 256),
        "history_buckets": Range(1, 4096),
        "stale_days": Range(1, 3650),
        "coverage": Tables(CoverageRuleConfig),
        "priorities": TextFile(1_000_000),
    }

    #: personal channels a user gets a list on per night
    channels_per_user: int = 1
    #: channel order when the user's own engagement does not decide (no events, ties); channels
    #: left out follow in the taxonomy's order (empty = the taxonomy's order)
    channel_priority: list[str] = field(default_factory=list)
    #: list length per channel (a channel left out: the taxonomy's push default, else default_k)
    k: dict[str, int] = field(default_factory=dict)
    #: most items pushed to one user on one channel per local day (nightly + campaigns)
    daily_cap: dict[str, int] = field(default_factory=dict)
    #: most items pushed to one user on one channel in any 7 consecutive days
    weekly_cap: dict[str, int] = field(default_factory=dict)
    #: an item is never pushed twice to the same user less than this many days apart
    dedup_days: int = 180
    #: quiet hours: the sender may deliver from send_after to send_before (local time, HH:MM)
    send_after: dict[str, str] = field(default_factory=dict)
    send_before: dict[str, str] = field(default_factory=dict)
    #: the rules of a channel that neither these tables nor the taxonomy give
    default_k: int = 5
    default_daily_cap: int = 8
    default_weekly_cap: int = 30
    default_send_after: str = "07:30"
    default_send_before: str = "22:00"
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
    #: a run warns when its --date is more than this many days after the model's data end
    stale_days: int = 7
    #: current users table (the contract's users: opt-outs, channels, group, region) read by
    #: every run instead of the bundle's users; "" = the bundle's users (push --users overrides)
    users: str = ""
    #: review-holds folder (recsys monitor's --state): held items are never pushed; "" = none
    #: (push / campaign --holds overrides)
    holds: str = ""
    #: coverage rules ([[push.coverage]] tables, see CoverageRuleConfig); none = lists as ranked
    coverage: list[dict[str, Any]] = field(default_factory=list)
    #: priorities.toml from recsys demand: priority topics raised for priority audiences (the ranking
    #: feature "priority"); "" = none, the lists as ranked (push --priorities overrides)
    priorities: str = ""


@dataclass(frozen=True)
class RankingConfig:
    """The ranking blend, diversity rules and candidate counts (``recsys.ranking``).

    ``score = w_quality * quality + w_interest * interest + w_format * format taste
    + w_timeliness * timeliness`` (the engagement model's log-odds terms, learned per
    impression) ``+ w_collaborative * relevance + w_topic * topic affinity
    + w_popularity * segment popularity + w_freshness * freshness + w_authority * authority``
    (each in [0, 1], relevance in [-1, 1]); see ``recsys/ranking/scoring.py``.
    """

    _constraints: ClassVar[Mapping[str, Constraint]] = {
        **{f"weight_{term}": Range(0, 100) for term in (
            "collaborative", "topic", "popularity", "freshness", "authority",
            "quality", "interest", "format", "timeliness",
        )},
        "authority_levels": Keyed({level: Range(0, 1) for level in AUTHORITIES}, complete=False),
        "freshness_half_life_days": Range(0, 3650, lo_open=True),
        "near_duplicate_threshold": Range(0, 1, lo_open=True),
        "max_topic_share": Range(0, 1, lo_open=True),
        "ann_candidates": Range(1, 100_000),
        "ann_overfetch": Range(1, 1000),
        "ann_max_fetch": Range(1, 1_000_000),
        "allow_search_below": Range(0, 1),
        "candidate_topics": Range(0, 1000),
        "topic_candidates": Range(0, 100_000),
        "fresh_candidates": Range(0, 100_000),
        "popular_candidates": Range(0, 100_000),
        "best_candidates": Range(0, 100_000),
        "max_k": Range(1, 100_000),
        "batch_size": Range(1, 1_000_000),
        "threads": _THREADS,
        "ranker": OneOf(("linear", "learned")),
    }

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
    #: "learned" (the gradient-boosted ranker of [ranker], trained with the bundle) or "linear"
    #: (the weighted blend of the nine terms above, kept for comparison)
    ranker: str = "learned"


@dataclass(frozen=True)
class RankerConfig:
    """The learned ranking stage (``recsys.training.ranker``): features, training window, LightGBM settings.

    The ranker is trained at ``recsys train`` time on a window carved from the
    end of the training log: features as of the cut, labels = positive
    engagement after it. See ``recsys/ranking/features.py`` for the features.
    """

    _constraints: ClassVar[Mapping[str, Constraint]] = {
        "label_share": Range(0, 0.5, lo_open=True),
        "cuts": Range(1, 20),
        "min_label_users": Range(1, 10_000_000),
        "max_users": Range(1, 100_000_000),
        "valid_share": Range(0, 1),
        "random_candidates": Range(0, 10_000),
        "examples": OneOf(("auto", "candidates", "impressions")),
        "exposure": OneOf(("popularity", "model")),
        "n_estimators": Range(1, 100_000),
        "learning_rate": Range(0, 10, lo_open=True),
        "num_leaves": Range(2, 100_000),
        "min_child_samples": Range(1, 1_000_000),
        "early_stopping_rounds": Range(0, 100_000),
        "rescore": Range(0, 100_000),
        "popularity_half_lives_days": _DAYS,
        "popularity_windows_days": _DAYS,
        "newcomer_days": Range(0, 36500),
        "base_features": Range(1, 50),
        "recent_items": Range(0, 10_000),
        "coengagement_neighbours": Range(0, 100_000),
        "coengagement_candidates": Range(0, 100_000),
        "coengagement_weights": OneOf(("cosine", "regression")),
        "regression_l2": Range(0, 1e9, lo_open=True),
        "regression_items": Range(2, 8192),
        "popularity_candidates": Range(0, 100_000),
        "seed": _SEED,
    }

    #: share of the training events in each label window (a quantile of event time)
    label_share: float = 0.1
    #: label windows, back to back from the end of the log: cut j trains a model on the events
    #: before it and labels with the window after it (more windows, more examples, longer training)
    cuts: int = 3
    #: fewest positive labels the window must hold; fewer and the bundle keeps the linear blend
    min_label_users: int = 20
    #: most users (seeded sample) whose candidates are training examples
    max_users: int = 20000
    #: share of those users held out for early stopping
    valid_share: float = 0.2
    #: extra uniformly drawn eligible items per training user (unbiased negatives and positives)
    random_candidates: int = 20
    #: LightGBM lambdarank settings
    n_estimators: int = 300
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_child_samples: int = 50
    #: rounds without a better held-out NDCG@10 before stopping (0: no early stopping)
    early_stopping_rounds: int = 30
    #: candidates per user scored by the ranker, picked by the linear blend first (0 = all; at least
    #: 2 k + 10). 100: on two validation windows of the sample (docs/ranker.md, "Rescore") 30 and 50
    #: fell below recent popularity on the logged NDCG@10 of one window (the blend's top 30 leaves out
    #: what the exposure term would lift), 100 stayed above it on both; 30 costs a third of the trees'
    #: work per call and earns ~10% more simulated engagement (benchmarks/README.md, "Ranking")
    rescore: int = 100
    #: feature names to use (empty = every registered feature)
    features: list[str] = field(default_factory=list)
    #: popularity half-lives in days, each a feature at segment, group, region and city level
    popularity_half_lives_days: list[float] = field(default_factory=lambda: [1.0, 7.0, 30.0, 180.0])
    #: distinct users with a positive engagement in the last N days (city-wide), each a feature
    #: (the recent_popular baseline's own grid, so the ranker has every window the baseline may pick)
    popularity_windows_days: list[float] = field(
        default_factory=lambda: [1.0, 3.0, 7.0, 14.0, 30.0, 90.0, 180.0, 365.0]
    )
    #: a ranker trained on candidates (a log without impressions) starts from the mean of this many
    #: best single features on its training queries (1, the default: the best one alone). 3 was
    #: ahead on three MovieLens validation windows (1.030 / 0.977 / 1.021x -> 1.044 / 1.028 /
    #: 1.027x the best baseline, all / warm / cold) and behind on a fourth (NDCG@10 0.3725 ->
    #: 0.3667): not adopted (docs/ranker.md "An averaged starting score")
    base_features: int = 1
    #: newcomer popularity: popularity over the pairs users engaged with in their first this many
    #: days, a ``newcomer_h*`` feature per half-life; 0 = off (the default: it did not help on the
    #: validation windows of MovieLens or the sample, docs/ranker.md "Newcomer popularity")
    newcomer_days: float = 0.0
    #: each user's own engagement rate per topic and per format, shrunk toward their segment's by
    #: evidence (``topic_rate`` / ``format_rate``, recsys.training.topic_rates); off by default: on
    #: the synthetic city and the sample (about 1.2 showings per user and topic) the fitted prior
    #: is at its strongest and the lifts ~0, on MovieLens they are exactly 0, and the step costs
    #: 13 s and the night's second-highest memory peak at the city (docs/ranker.md)
    topic_rates: bool = False
    #: a user's most recent positive items that seed co-engagement candidates (and the feature);
    #: stored per user in the bundle as long as the user's own history (a CSR: at the 3.1M-user
    #: city 50 take 47 MB, less than the 62 MB of the 5 fixed slots bundles held before). 50 rather
    #: than 5 raised warm users' NDCG@10 on three MovieLens validation windows from 0.966x to
    #: 1.020x the best baseline (docs/ranker.md "Warm users on a ratings log")
    recent_items: int = 50
    #: co-engaged neighbours kept per item, and candidates drawn from them per user
    coengagement_neighbours: int = 50
    coengagement_candidates: int = 40
    #: what weighs a seed item's neighbours: ``cosine`` of their user sets, or ``regression``
    #: (recsys.training.item_regression: item-to-item ridge regression, EASE, over the
    #: ``regression_items`` most engaged items, penalty ``regression_l2``; docs/ranker.md)
    coengagement_weights: str = "cosine"
    regression_l2: float = 200.0
    regression_items: int = 4096
    #: most popular items per popularity half-life (the user's segment row) and per trend window
    popularity_candidates: int = 20
    #: items shown to a training user after the cut and not engaged with are explicit negatives
    impression_negatives: bool = False
    #: a log without impressions (ratings): each user who came back (a positive a day or more after
    #: an earlier one) during the label windows' period adds their last visit before the latest cut
    #: as one more training query, its features from a model trained without that visit
    #: (recsys.training.ranker_training.return_visits; docs/ranker.md "Return visits")
    return_visits: bool = False
    #: what a training query holds: ``candidates`` (the serving candidates at the cut, label =
    #: engaged after it: shown or not, so it also learns what the old system showed),
    #: ``impressions`` (the items shown after the cut, label = engaged with when shown; fitted
    #: pointwise from the engagement model's log-odds, plus an exposure term weighted on held-out
    #: users to keep up with the strongest baseline on the log), ``auto`` (impressions where the log
    #: has them, else candidates). The default: on two validation windows of the sample ``auto`` with
    #: ``exposure = "model"`` was ahead of every baseline on logged NDCG@10 and earned 24-34% more
    #: simulated engagements per push than ``candidates`` (docs/ranker.md)
    examples: str = "auto"
    #: with impressions as examples, what the exposure term is (docs/ranker.md): ``model`` (a
    #: lambdarank model of the logged engagement over the candidates, from every feature) or
    #: ``popularity`` (the one popularity feature that best orders it, its own for cold users)
    exposure: str = "model"
    seed: int = 0


@dataclass(frozen=True)
class DemandConfig:
    """Demand tracking (``recsys demand``, ``recsys.demand``): trends, gaps, priorities."""

    _constraints: ClassVar[Mapping[str, Constraint]] = {
        "max_weeks": Range(2, 520),
        "recent_weeks": Range(1, 260),
        "shrinkage_impressions": Range(0, 1e9),
        "alpha": Range(0, 0.5, lo_open=True),
        "min_change": Range(0, 10),
        "min_positives": Range(1, 1e9),
        "calendar_margin_days": Range(0, 30),
        "fresh_days": Range(1, 3650),
        "underserved_ratio": Range(0, 1, lo_open=True),
        "min_residents": Range(1, 1e9),
        "max_audiences": Range(1, 1000),
        "topics_per_audience": Range(1, 50),
        "max_weight": Range(0, 10, lo_open=True),
        "expiry_days": Range(1, 365),
    }

    #: weeks analysed when --weeks is not given: as many whole weeks as the log holds, at most this
    max_weeks: int = 12
    #: the trend compares the last this many weeks with the weeks before them
    recent_weeks: int = 4
    #: a small cell's engagement rate is shrunk toward its group's (then the city's) rate with
    #: the weight of this many impressions
    shrinkage_impressions: float = 200.0
    #: false discovery rate: a trend with Benjamini-Hochberg q below this is significant
    alpha: float = 0.05
    #: smallest relative change of the engagement rate reported as rising or falling (0.1 = 10%)
    min_change: float = 0.1
    #: a cell needs twice this many positive engagements over the two periods to be tested
    min_positives: int = 10
    #: days after a campaign day also left out of the trend (its items' echo)
    calendar_margin_days: int = 1
    #: an item is fresh when published in the last this many days
    fresh_days: int = 30
    #: an audience is under-served when its reach or engagement share is below this x the city's
    underserved_ratio: float = 0.9
    #: audiences with fewer residents are not ranked
    min_residents: int = 30
    #: most priority audiences written to priorities.toml
    max_audiences: int = 10
    #: most priority topics per audience
    topics_per_audience: int = 3
    #: the largest priority weight (the ranking boost, in standard deviations of a user's scores)
    max_weight: float = 1.0
    #: priorities expire this many days after the analysis' --as-of
    expiry_days: int = 14


@dataclass(frozen=True)
class BroadcastConfig:
    """Daily programmes of broadcast places (``recsys broadcast``, ``recsys.broadcast``).

    ``formats`` keys and values are checked against the taxonomy by
    ``recsys.broadcast.programme`` (a channel may only narrow what it carries).
    """

    _constraints: ClassVar[Mapping[str, Constraint]] = {
        "repeat_days": Range(0, 3650),
        "topic_decay": Range(0, 1),
        "priority_boost": Range(0, 10),
        "candidates": Range(1, 100_000),
        "min_segment_users": Range(1, 1_000_000),
    }

    #: an item is not shown again at the same place within this many days (earlier programmes in --out)
    repeat_days: int = 7
    #: topic diversity across a place's day: each item already scheduled there with the same main
    #: topic multiplies an item's value by this (1 = no diversity, 0 = one item per topic); 0.8 halves
    #: the main topic's share of a day (30% -> 15% on the synthetic city) for 7% of its simulated engagement
    topic_decay: float = 0.8
    #: an item of a priority topic (the demand output, --priorities) counts (1 + this x its weight) times
    priority_boost: float = 0.5
    #: items considered per place: its best this many by expected engagement per second
    candidates: int = 300
    #: a (group, sub-group, region) audience segment with fewer of the bundle's users than this
    #: takes its group x region segment's engagement model instead of its users' mean
    min_segment_users: int = 5
    #: per broadcast channel, the formats scheduled on it (empty table = what the taxonomy says it carries)
    formats: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class MonitorConfig:
    """Spread monitoring and review holds (``recsys monitor``, ``recsys.monitor``).

    Alarms are count tests (Poisson) against the expected count from the
    item's and its topic's baseline, Bonferroni-corrected over the tests of
    one run; see docs/monitoring.md.
    """

    _constraints: ClassVar[Mapping[str, Constraint]] = {
        "windows_hours": Range(1, 168),
        "baseline_days": Range(1, 90),
        "min_events": Range(1, 1_000_000),
        "min_impressions": Range(1, 1e9),
        "alpha": Range(0, 0.5, lo_open=True),
        "min_ratio": Range(1, 1e6),
        "hold_severity": Range(1, 1e6),
        "hold_on": OneOf(("dismiss", "report")),
        "spike_ratio": Range(1, 1e6),
        "spike_rate_ratio": Range(0, 1e6),
        "silence_ratio": Range(0, 1),
        "silence_min_impressions": Range(1, 1e9),
        "prior_events": Range(0, 1e6),
        "repeat_hours": Range(0, 8760),
        "future_seconds": Range(0, 86_400),
    }

    #: alert windows in hours, each ending at the newest counted hour
    windows_hours: list[int] = field(default_factory=lambda: [1, 6, 24])
    #: days of baseline before the windows (the day before the longest window is left out)
    baseline_days: int = 28
    #: fewest dismisses / reports / clicks in a window before an item or topic is tested at all
    min_events: int = 5
    #: fewest impressions in the baseline (city-wide) to trust it; below, the longest window is the baseline
    min_impressions: int = 1000
    #: family-wise error rate of one run (Bonferroni over every test it makes)
    alpha: float = 0.01
    #: a negative-feedback alarm also needs the observed rate at least this many times the expected
    min_ratio: float = 2.0
    #: a negative-feedback alarm of at least this ratio (observed / expected) puts the item on hold
    hold_severity: float = 4.0
    #: which negative events can put an item on hold
    hold_on: list[str] = field(default_factory=lambda: ["report"])
    #: a spread spike: the item's (topic's) share of clicks at least this many times its baseline share
    spike_ratio: float = 3.0
    #: ... and its click rate per impression at least this many times its baseline rate
    spike_rate_ratio: float = 1.5
    #: silence: clicks at most this share of the expected, significantly
    silence_ratio: float = 0.2
    #: silence is tested only on items with at least this many impressions in the window
    silence_min_impressions: int = 200
    #: pseudo-events (each kind, at the prior's rate) pulling an item's baseline rate towards its
    #: topic's, and a topic's towards the city's: an item with few events is judged mostly by its topic
    prior_events: float = 5.0
    #: an alert is not repeated for the same item / topic and kind within this many hours of data
    repeat_hours: int = 6
    #: events later than the run's clock plus this many seconds are refused as future timestamps
    future_seconds: int = 300


@dataclass(frozen=True)
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
    training: TrainingConfig = field(default_factory=TrainingConfig)
    push: PushConfig = field(default_factory=PushConfig)
    ranking: RankingConfig = field(default_factory=RankingConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    demand: DemandConfig = field(default_factory=DemandConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    broadcast: BroadcastConfig = field(default_factory=BroadcastConfig)

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
        if not is_int(value):
            raise ConfigError(f"config {where} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if not is_number(value):
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


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_value(section: str, key: str, value: Any, rule: Constraint, files: bool) -> None:
    if isinstance(rule, Tables):
        rule.read(section, key, value, files=files)
        return
    if isinstance(rule, Keyed):
        problem = rule.problem(value)
        if problem:
            raise ConfigError(f"[{section}] {key} {problem}")
        for k, v in value.items():
            _check_value(section, f"{key}.{k}", v, rule.rules[k], files)
        return
    if isinstance(rule, TextFile):
        problem = rule.problem(value) if files and isinstance(value, str) else None
        if problem:
            raise ConfigError(f"[{section}] {key} = {_show(value)} {problem}")
        return
    if isinstance(rule, AutoOr):  # one value: a list or table of them is not valid
        entries = [(key, value)]
    elif isinstance(value, dict):
        entries = [(f"{key}.{k}", v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        entries = [(f"{key}[{i}]", v) for i, v in enumerate(value)]
    else:
        entries = [(key, value)]
    if isinstance(rule, Range) and rule.nonempty and isinstance(value, (dict, list, tuple)) and not value:
        raise ConfigError(f"[{section}] {key} = {_show(value)} is empty; valid: {rule.describe_all()}")
    for name, v in entries:
        if not rule.ok(v):
            what = "is out of range" if isinstance(rule, Range) else "is not valid"
            raise ConfigError(f"[{section}] {name} = {_show(v)} {what}; valid: {rule.describe()}")


def constraints(section: object) -> Mapping[str, Constraint]:
    """Return the declared constraints of a section dataclass (class or instance)."""
    return getattr(section, "_constraints", {})


def _kind(default: Any) -> tuple[str, Callable[[Any], bool]] | None:
    """What a setting must be, judged by its default: (name for the message, test)."""
    if isinstance(default, bool):
        return "true or false", lambda v: isinstance(v, bool)
    if isinstance(default, int):
        return "an integer", is_int
    if isinstance(default, float):
        return "a number", is_number
    if isinstance(default, str):
        return "a string", lambda v: isinstance(v, str)
    if isinstance(default, dict):
        return "a table", lambda v: isinstance(v, dict)
    if isinstance(default, (list, tuple)):
        return "a list", lambda v: isinstance(v, (list, tuple))
    return None


def section_name(section: object) -> str:
    """The ``[name]`` of a section dataclass (class or instance) in :class:`EngineConfig`."""
    cls = section if isinstance(section, type) else type(section)
    for f in dataclasses.fields(EngineConfig):
        if f.default_factory is cls:
            return f.name
    raise ConfigError(f"{cls.__name__} is not a section of the engine configuration")


#: a config section's dataclass: check_section returns what it was given
Section = TypeVar("Section")


def check_section(section: Section, kind: type | None = None, *, files: bool = False) -> Section:
    """Check one section's settings (types and declared constraints); return the section.

    What every component calls on the section it is given, so a section built
    in Python (not read from TOML) meets the same rules, with the same
    message, as one read from a file.

    Parameters
    ----------
    section : dataclass instance
        A section of :class:`EngineConfig` (e.g. an :class:`IndexConfig`).
    kind : type, optional
        The section class the caller needs; anything else is refused by name.
    files : bool
        Also check path settings (:class:`TextFile`) on this machine.

    Raises
    ------
    ConfigError
        ``[section] key = value is out of range; valid: lo..hi`` (or the valid
        choices), or ``config [section] key must be an integer, got ...``.
    """
    if kind is not None and not isinstance(section, kind):
        raise ConfigError(f"config must be {'an' if kind.__name__[0] in 'AEIOU' else 'a'} {kind.__name__}, got {type(section).__name__}")
    name = section_name(section)
    defaults = type(section)()
    rules = constraints(section)
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        # an AutoOr setting is a string or a number: its rule alone judges it
        kind = None if isinstance(rules.get(f.name), AutoOr) else _kind(getattr(defaults, f.name))
        if kind is not None and not kind[1](value):
            raise ConfigError(f"config [{name}] {f.name} must be {kind[0]}, got {value!r}")
    for key, rule in constraints(section).items():
        _check_value(name, key, getattr(section, key), rule, files)
    return section


def check_config(config: EngineConfig, *, files: bool = False) -> EngineConfig:
    """Check every setting against its section's declared constraints; return ``config``.

    Parameters
    ----------
    config : EngineConfig
        The configuration to check.
    files : bool
        Also check path settings (:class:`TextFile`) on this machine.

    Raises
    ------
    ConfigError
        ``[section] key = value is out of range; valid: lo..hi`` (or the valid choices).
    """
    for section in dataclasses.fields(config):
        check_section(getattr(config, section.name), files=files)
    return config


def config_from_dict(doc: dict[str, Any], base: EngineConfig | None = None) -> EngineConfig:
    """Overlay a nested dict (as read from TOML) onto ``base`` (or the defaults).

    Raises
    ------
    ConfigError
        On an unknown section or key, a value of the wrong type, or one outside
        its declared range.
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
            if key in getattr(current, "_removed", {}):
                continue
            if key not in fields:
                raise ConfigError(f"unknown config key [{name}] {key}; valid: {', '.join(sorted(fields))}")
            if isinstance(constraints(current).get(key), AutoOr):
                updates[key] = value  # "auto" or a number: check_config below judges it
            else:
                updates[key] = _coerce(name, key, value, getattr(current, key))
        cfg = dataclasses.replace(cfg, **{name: dataclasses.replace(current, **updates)})
    return check_config(cfg)


#: every section of the configuration file
ALL_SECTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(EngineConfig))
#: where a section takes effect, for the message that refuses it in a command that ignores it
_APPLIES = {
    "push": "it applies to recsys push and recsys campaign",
    "bundle": "it applies when recsys train writes a bundle",
    "training": "it applies to recsys train's checks of its data",
    "demand": "it applies to recsys demand",
    "monitor": "it applies to recsys monitor",
    "broadcast": "it applies to recsys broadcast",
}


def sections_except(*names: str) -> tuple[str, ...]:
    """Every section but ``names`` (what a command declares it reads)."""
    return tuple(s for s in ALL_SECTIONS if s not in names)


#: largest config file read: a configuration is a few kB; anything far larger is a wrong path
MAX_CONFIG_BYTES = 1_000_000


def _read_toml(p: Path) -> dict[str, Any]:
    try:
        info = p.stat()
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{p}: config file cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{p}: is a folder; --config takes a TOML file")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{p}: not a regular file; --config takes a TOML file")
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{p}: {info.st_size:,} bytes is too large for a config file (at most {MAX_CONFIG_BYTES:,})")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: config file cannot be read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{p}: not UTF-8 text (byte {exc.start}); save the config file as UTF-8 "
            f"(e.g. iconv -f GBK -t UTF-8 {p.name} > {p.stem}.utf8.toml)"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{p}: not valid TOML (nested too deeply)") from None


def load_config(
    path: str | Path | None = None,
    *,
    command: str | None = None,
    sections: Iterable[str] | None = None,
) -> EngineConfig:
    """Load a TOML config file over the defaults; ``None`` gives the defaults.

    Parameters
    ----------
    path : path, optional
        The TOML file.
    command : str, optional
        The command reading it (named in the error below).
    sections : iterable of str, optional
        The sections ``command`` uses; a section outside them is refused
        rather than silently ignored. Default: every section.

    Raises
    ------
    ConfigError
        Naming the file: missing, a folder or special file, too large, not
        UTF-8, not valid TOML, an unknown or unused section or key, a wrong
        type or a value out of range.
    """
    if path is None:
        return EngineConfig()
    p = Path(path)
    doc = _read_toml(p)
    if sections is not None:
        used = tuple(sections)
        for name in doc:
            if name in ALL_SECTIONS and name not in used:
                applies = _APPLIES.get(name, "it applies at train time (recsys train)")
                raise ConfigError(
                    f"{p}: {command or 'this command'} does not use [{name}]; {applies} "
                    f"(sections used here: {', '.join(used)})"
                )
    defaults = EngineConfig()
    for name, values in doc.items():
        for key, why in getattr(getattr(defaults, name, None), "_removed", {}).items():
            if isinstance(values, dict) and key in values:
                raise ConfigError(f"{p}: [{name}] {key} was removed: {why}")
    try:
        return check_config(config_from_dict(doc), files=True)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{p}: a table nested too deeply") from None


def changed_sections(config: EngineConfig) -> dict[str, Any]:
    """Return the sections of ``config`` that differ from the defaults, each in full.

    What a written config file should hold: a command refuses the sections it
    does not use, so a file of every section would be refused by most of them.
    """
    defaults = EngineConfig().to_dict()
    return {name: values for name, values in config.to_dict().items() if values != defaults.get(name)}
