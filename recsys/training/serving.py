"""What serving reads from training: the one interface between the two.

The ranking (:mod:`recsys.ranking`), the nightly push, broadcast and lift use
what ``recsys train`` made only through the names below -- the trained model
and its bundle readers, the learned ranker and the ranking signals it holds,
and the engagement model's freshness curve, which both sides must compute the
same way. Nothing here trains; importing it does not import the training job.
``tests/test_architecture.py`` enforces that serving imports training only
through this module.
"""

from __future__ import annotations

from recsys.training.engagement import timeliness
from recsys.training.model import (
    USER_COLUMNS,
    TrainedModel,
    load_component,
    read_bundle_taxonomy,
    read_model_array,
    read_users,
    users_table_path,
)
from recsys.training.ranker import REORDER_BLOCK, LearnedRanker
from recsys.training.signals import Signals, level_offsets, level_rows

__all__ = [
    "USER_COLUMNS",
    "LearnedRanker",
    "REORDER_BLOCK",
    "Signals",
    "TrainedModel",
    "load_component",
    "read_bundle_taxonomy",
    "read_model_array",
    "read_users",
    "timeliness",
    "level_offsets",
    "level_rows",
    "users_table_path",
]
