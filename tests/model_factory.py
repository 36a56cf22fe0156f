"""The one factory for models built by hand (not a test module).

A :class:`~recsys.training.model.TrainedModel` made by training has every fitted part.
A test or a benchmark that builds one from chosen arrays gives what it cares
about (factors, popularity, history, components); :func:`model_from_parts`
adds, for what it leaves out, the neutral engagement terms (log-odds 0: every
item, topic and format as likely as any other) and empty ranking signals (no
popularity, no co-engagement), so its ranking rests on the terms it chose.
The library itself never fills in parts: a bundle must hold them all.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys.config import EngineConfig
from recsys.taxonomy import Taxonomy
from recsys.training.model import TrainedModel, array_shapes
from recsys.training.signals import Signals

#: the engagement model's arrays (their shapes: recsys.training.model.array_shapes, what a load checks)
_ENGAGEMENT = ("item_quality", "authority_quality", "user_interest", "segment_interest", "user_format",
               "segment_format", "topic_freshness", "topic_trend")


def neutral_engagement(
    taxonomy: Taxonomy, config: EngineConfig, n_users: int, n_items: int, n_segments: int
) -> dict[str, np.ndarray]:
    """Zero log-odds for every engagement term, in the shapes a bundle holds (the load's own table)."""
    shapes = array_shapes(n_users, n_items, n_segments, taxonomy, config)
    return {name: np.zeros(shapes[name], np.float32) for name in _ENGAGEMENT}


def model_from_parts(**fields: Any) -> TrainedModel:
    """A :class:`TrainedModel` from the given fields, neutral engagement terms and signals for the rest."""
    n_users, n_items, n_segments = len(fields["users"]), len(fields["items"]), len(fields["segments"])
    neutral = neutral_engagement(fields["taxonomy"], fields["config"], n_users, n_items, n_segments)
    for name in _ENGAGEMENT:
        fields.setdefault(name, neutral[name])
    # an average user everywhere: log-odds 0 for the intercept and every user's own bias
    fields.setdefault("engagement_intercept", 0.0)
    fields.setdefault("user_bias", np.zeros(n_users, np.float32))
    if fields.get("signals") is None:
        fields["signals"] = Signals.empty(n_users, n_items, fields["taxonomy"], fields["config"].ranker)
    return TrainedModel(**fields)
