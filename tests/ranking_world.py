"""Small worlds for the ranking tests (not a test module; ``tests/test_ranking_*.py`` and
``tests/test_recommender*.py`` import it).

:func:`hand_model` builds a :class:`~recsys.training.model.TrainedModel` from arrays a
test chooses (factors, topic profiles, popularity, history, content vectors)
with the real components around them (the faiss index, the content embedder
and both cold-start mappings fitted on those arrays), so a test can predict
the ranking's answer. :func:`is_eligible` is an independent, row-by-row
statement of the eligibility rules of the ranking-core issue, to check the
vectorized code against.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.training.coldstart import ItemColdStart, UserColdStart
from recsys.config import ColdStartConfig, ContentConfig, EngineConfig, IndexConfig
from recsys.training.content import ContentEmbedder
from recsys.training.index import VectorIndex
from recsys.training.model import USER_COLUMNS, TrainedModel

try:  # imported as tests.ranking_world or, with tests/ on sys.path, as ranking_world
    from tests.model_factory import model_from_parts
except ImportError:
    from model_factory import model_from_parts
from recsys.schema import required_columns, validate_tables
from recsys.taxonomy import load_taxonomy

TAX = load_taxonomy()
WINDOW_START = "2026-05-01T00:00:00+00:00"
WINDOW_END = "2026-06-01T00:00:00+00:00"
NOW = pd.Timestamp(WINDOW_END)


def clean_items(items: pd.DataFrame) -> pd.DataFrame:
    """Run an items table through the contract validator (no rows may be rejected)."""
    empty_users = pd.DataFrame({c: pd.Series(dtype=str) for c in required_columns("users")})
    empty_events = pd.DataFrame({c: pd.Series(dtype=str) for c in required_columns("events")})
    result = validate_tables(empty_users, items, empty_events, taxonomy=TAX, end="2200-01-01T00:00:00Z")
    if len(result.quarantine):
        raise ValueError(f"test items rejected: {result.quarantine.to_dict('records')}")
    return result.items


def items_frame(n: int, *, topics: Sequence[Sequence[str]] | None = None, **columns: Any) -> pd.DataFrame:
    """A raw items table of ``n`` items ``i00..``; keyword columns override the defaults."""
    frame = pd.DataFrame(
        {
            "item_id": [f"i{j:02d}" for j in range(n)],
            "title": [f"科普文章{j}" for j in range(n)],
            "topics": [list(t) for t in topics] if topics is not None else [["health_literacy"]] * n,
        }
    )
    for name, values in columns.items():
        frame[name] = list(values) if not np.isscalar(values) else [values] * n
    return frame


def users_frame(groups: Sequence[str], regions: Sequence[str], sub_groups: Sequence[str] | None = None) -> pd.DataFrame:
    """A users table of ``u0..``."""
    n = len(groups)
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "group": list(groups),
            "sub_group": list(sub_groups) if sub_groups is not None else [""] * n,
            "region": list(regions),
            "age_band": [""] * n,
            "channels": [["app_push"] for _ in range(n)],
            "push_opt_out": [False] * n,
        }
    )


def hand_model(
    users: pd.DataFrame,
    items: pd.DataFrame,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    *,
    user_topics: np.ndarray | None = None,
    seen: dict[tuple[int, int], int] | None = None,
    segment_popularity: np.ndarray | None = None,
    popularity_recent: np.ndarray | None = None,
    content_vectors: np.ndarray | None = None,
    config: EngineConfig | None = None,
) -> TrainedModel:
    """A TrainedModel from chosen arrays, with real components fitted around them.

    ``content_vectors`` default to the fitted embedder's vectors of ``items``;
    given ones must have the embedder's width (:func:`content_width`).
    Segments are the sorted distinct (group, region) pairs of ``users``.
    """
    config = config or EngineConfig()
    items = clean_items(items)
    n_users, n_items, n_topics = len(users), len(items), len(TAX.topics)
    uf = np.ascontiguousarray(user_factors, dtype=np.float32)
    vf = np.ascontiguousarray(item_factors, dtype=np.float32)
    topics = (
        np.full((n_users, n_topics), 1.0 / n_topics, np.float32)
        if user_topics is None
        else np.asarray(user_topics, np.float32)
    )
    embedder = ContentEmbedder(config=ContentConfig(svd_components=4, seed=0), taxonomy=TAX).fit(items)
    content = embedder.transform(items) if content_vectors is None else np.asarray(content_vectors, np.float32)
    segments = users[["group", "region"]].drop_duplicates().sort_values(["group", "region"]).reset_index(drop=True)
    seg_of = {(g, r): s for s, (g, r) in enumerate(zip(segments["group"], segments["region"]))}
    user_seg = np.array([seg_of[(g, r)] for g, r in zip(users["group"], users["region"])])
    prior = np.stack([topics[user_seg == s].mean(axis=0) for s in range(len(segments))]).astype(np.float32)
    history = sp.dok_matrix((n_users, n_items), dtype=np.int8)
    for (u, i), v in (seen or {}).items():
        history[u, i] = v
    zeros_pop = np.zeros((len(segments), n_items), np.float32)
    return model_from_parts(
        taxonomy=TAX,
        config=config,
        users=users[list(USER_COLUMNS)].reset_index(drop=True),
        items=items,
        user_factors=uf,
        item_factors=vf,
        item_warm=np.ones(n_items, dtype=bool),
        content_vectors=content,
        user_topics=topics,
        segments=segments,
        segment_topic_prior=prior,
        segment_popularity=zeros_pop if segment_popularity is None else np.asarray(segment_popularity, np.float32),
        popularity_recent=np.zeros(n_items, np.float32)
        if popularity_recent is None
        else np.asarray(popularity_recent, np.float32),
        popularity_all_time=np.zeros(n_items, np.float32),
        seen=sp.csr_matrix(history, dtype=np.int8),
        user_channel_counts=np.zeros((n_users, len(TAX.channels)), np.float32),
        item_index=VectorIndex.build(vf, config=IndexConfig(recall_sample=0, threads=1)),
        content_model=embedder,
        item_cold_start=ItemColdStart(ColdStartConfig()).fit(content, vf),
        user_cold_start=UserColdStart(ColdStartConfig(min_segment_users=1)).fit(uf, users, topics),
        window={"start": WINDOW_START, "end": WINDOW_END},
    )


def content_width() -> int:
    """Width of the test embedder's vectors (4 SVD components + topics + formats)."""
    return 4 + len(TAX.topics) + len(TAX.formats)


def cluster_vectors(clusters: Sequence[int]) -> np.ndarray:
    """Content vectors where items of one cluster are identical and clusters orthogonal."""
    width = content_width()
    out = np.zeros((len(clusters), width), dtype=np.float32)
    for j, c in enumerate(clusters):
        out[j, c % width] = 1.0
    return out


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT


def is_eligible(
    item: dict,
    *,
    group: str,
    region: str,
    now: pd.Timestamp,
    channel: str | None = None,
    topics: Sequence[str] | None = None,
) -> bool:
    """The eligibility rules, stated row by row (history not included)."""
    if item.get("review_status", "approved") != "approved":
        return False
    pub, exp = item.get("published_at"), item.get("expires_at")
    if not _is_null(pub) and pd.Timestamp(pub) > now:
        return False
    if not _is_null(exp) and pd.Timestamp(exp) <= now:
        return False
    targets = list(item.get("target_groups") or [])
    if targets and group not in targets:
        return False
    regions = list(item.get("target_regions") or [])
    if regions and region not in regions:
        return False
    if channel is not None and item.get("format", "article") not in TAX.formats_for(channel):
        return False
    if topics is not None and not set(item["topics"]) & set(topics):
        return False
    return True
