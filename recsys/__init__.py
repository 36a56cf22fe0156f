"""recsys: the precision push engine for science-popularization content.

Decides who gets which science content, on which channel, tonight.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Recommendation", "Recommender", "__version__"]


def __getattr__(name: str):
    # Imported on first use, so ``import recsys`` (and ``recsys --help``) stays fast.
    if name in ("Recommender", "Recommendation"):
        from recsys.ranking.recommender import Recommendation, Recommender  # heavy: see above

        return {"Recommender": Recommender, "Recommendation": Recommendation}[name]
    raise AttributeError(f"module 'recsys' has no attribute {name!r}")
