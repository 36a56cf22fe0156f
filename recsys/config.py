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


@dataclass
class ProfileConfig:
    """Readable topic-interest profiles."""

    #: Bayesian smoothing: pseudo-count of the group x region prior
    prior_strength: float = 5.0
    #: how strongly negative feedback pulls a topic down (multiplies the event weight)
    negative_factor: float = 1.0


@dataclass
class ContentConfig:
    """Content embedding: jieba -> TF-IDF -> TruncatedSVD, plus topic/format features."""

    svd_components: int = 64
    max_features: int = 50000
    min_df: int = 1
    topic_weight: float = 0.5
    format_weight: float = 0.2
    seed: int = 42


@dataclass
class ColdStartConfig:
    """Vectors for items and users without (enough) events."""

    ridge_alpha: float = 1.0
    #: a cold user's vector = (1 - w) * segment centroid + w * topic-prior projection
    topic_prior_blend: float = 0.3
    #: users with at most this many positive events are folded in, not fitted
    fold_in_max_events: int = 3


@dataclass
class IndexConfig:
    """faiss ANN index over item vectors."""

    #: below this many items the index is exact (IndexFlatIP)
    exact_threshold: int = 20000
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    recall_sample: int = 500
    recall_k: int = 50
    threads: int = 2
    seed: int = 42


@dataclass
class BundleConfig:
    """Model bundle housekeeping."""

    #: how many bundles to keep for rollback
    keep: int = 5


@dataclass
class EngineConfig:
    """All configuration sections."""

    interactions: InteractionConfig = field(default_factory=InteractionConfig)
    collaborative: CollaborativeConfig = field(default_factory=CollaborativeConfig)
    profiles: ProfileConfig = field(default_factory=ProfileConfig)
    content: ContentConfig = field(default_factory=ContentConfig)
    cold_start: ColdStartConfig = field(default_factory=ColdStartConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    bundle: BundleConfig = field(default_factory=BundleConfig)

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
