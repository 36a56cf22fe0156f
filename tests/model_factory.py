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

from recsys.training.model import TrainedModel
from recsys.training.signals import Signals

#: the engagement model's arrays, by shape: (users | items | segments + 1 | 1) x (topics | formats | taus | 1)
_ENGAGEMENT = ("item_quality", "authority_quality", "user_interest", "segment_interest", "user_format",
               "segment_format", "topic_freshness", "topic_trend")


def neutral_engagement(taxonomy: Any, config: Any, n_users: int, n_items: int, n_segments: int) -> dict[str, np.ndarray]:
    """Zero log-odds for every engagement term, in the shapes a bundle holds."""
    from recsys.columns import AUTHORITIES

    n_t, n_f = len(taxonomy.topics), len(taxonomy.formats)
    n_k = len(config.engagement.freshness_taus_days)
    shapes = {
        "item_quality": (n_items,),
        "authority_quality": (len(AUTHORITIES),),
        "user_interest": (n_users, n_t),
        "segment_interest": (n_segments + 1, n_t),
        "user_format": (n_users, n_f),
        "segment_format": (n_segments + 1, n_f),
        "topic_freshness": (n_t, n_k),
        "topic_trend": (n_t,),
    }
    return {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}


def model_from_parts(**fields: Any) -> TrainedModel:
    """A :class:`TrainedModel` from the given fields, neutral engagement terms and signals for the rest."""
    n_users, n_items, n_segments = len(fields["users"]), len(fields["items"]), len(fields["segments"])
    neutral = neutral_engagement(fields["taxonomy"], fields["config"], n_users, n_items, n_segments)
    for name in _ENGAGEMENT:
        fields.setdefault(name, neutral[name])
    if fields.get("signals") is None:
        fields["signals"] = Signals.empty(n_users, n_items, fields["taxonomy"], fields["config"].ranker)
    return TrainedModel(**fields)
