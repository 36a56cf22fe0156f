"""Ranking: candidates -> eligibility -> scoring -> diversity -> reasons.

One module per concept; :class:`Recommender` is the in-process API every
consumer (a platform request, the nightly push, the evaluation) goes through.
"""

from __future__ import annotations

from recsys.ranking.recommender import Recommendation, Recommender

__all__ = ["Recommendation", "Recommender"]
