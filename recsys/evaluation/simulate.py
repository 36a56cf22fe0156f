"""The simulated push: lists judged by the generator's true engagement probabilities.

On synthetic data the generator knows, for every (user, item), the
probability that the user engages positively if the item is pushed
(``GroundTruth.engagement_prob``). Each pushed slot then counts its
probability: a policy's *expected engagements per push* is their sum over
(users x k) slots, an empty slot counting zero. The ``oracle`` policy lists the
top-k eligible items by true probability, so no policy under the same
eligibility can exceed it: the engine's ratio to the oracle is the headline.
The oracle's logged-data metrics are reported too, but they are not a bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.evaluation.baselines import ListingContext, Policy
from recsys.exceptions import ConfigError

if TYPE_CHECKING:  # heavy: the synthetic city package (~90 ms) loads only when a truth folder is read
    from recsys.synthetic.truth import GroundTruth

TRUTH_DIR = "truth"
TRUE_PROB = "true_prob"


class OraclePolicy(Policy):
    """Top eligible items by the generator's true engagement probability.

    Parameters
    ----------
    truth : GroundTruth
        Anything with ``engagement_prob(user_ids, item_ids, *, at=T) -> (n_users, n_items)``;
        probabilities are taken at the list time ``T`` (freshness, campaigns).
    """

    name = "oracle"

    def __init__(self, *, truth: GroundTruth) -> None:
        self.truth = truth

    def fit(self, context: ListingContext) -> "OraclePolicy":
        if not hasattr(self.truth, "engagement_prob"):
            raise ConfigError("oracle needs a ground truth with engagement_prob(user_ids, item_ids)")
        self.context_ = context
        self.user_ids_ = context.model.users[C.USER_ID].astype(str).to_numpy()
        self.item_ids_ = np.asarray(context.catalog.item_ids, dtype=object).astype(str)
        return self

    def score(self, rows: np.ndarray) -> np.ndarray:
        self._check_fitted()
        if len(rows) == 0:
            return np.zeros((0, len(self.item_ids_)))
        prob = self.truth.engagement_prob(self.user_ids_[rows], self.item_ids_, at=self.context_.time)
        return np.asarray(prob, dtype=np.float64)


def attach_true_prob(recs: pd.DataFrame, truth: GroundTruth, at: pd.Timestamp) -> pd.DataFrame:
    """Return ``recs`` with a ``true_prob`` column: each listed pair's true probability at ``at``."""
    users = recs[C.USER_ID].astype(str).to_numpy()
    prob = truth.engagement_prob_pairs(users, recs[C.ITEM_ID].astype(str).to_numpy(), at=at)
    return recs.assign(**{TRUE_PROB: np.asarray(prob, dtype=np.float64)})


def load_truth(data_dir: str | Path) -> GroundTruth | None:
    """Load the generator's ground truth from ``data_dir/truth``, or ``None`` without one."""
    folder = Path(data_dir) / TRUTH_DIR
    if not folder.is_dir():
        return None
    # heavy: the synthetic city package (~90 ms) loads only for a data folder that has a truth
    from recsys.synthetic import GroundTruth

    return GroundTruth.load(folder)
