"""Training: everything ``recsys train`` fits, one module per step.

The steps of one run, in order (:func:`train_model`; :func:`train` is the job
that reads the files and writes the bundle):

1. id maps and the weighted, decayed user x item matrix (:mod:`.interactions`);
   a catalogue of ``job.CONTENT_WORKER_MIN_ITEMS`` items or more starts its
   content embedding and near-duplicate graph in a worker process here;
2. readable topic-interest profiles shrunk to the group x region prior
   (:mod:`.profiles`);
3. popularity (recency-weighted per group x region segment, and overall),
   the seen matrix and per-channel engagement counts (:mod:`.job`), and the
   ranking signals -- popularity windows and levels, co-engagement, recent
   items, activity (:mod:`.signals`);
4. content embedding of the catalogue (:mod:`.content`; the worker's result
   collected, or computed in line);
5. the engagement model: log-odds of engagement per impression -- item
   quality, topic interest, format taste, freshness and trend per topic
   (:mod:`.engagement`);
6. collaborative factors with ``implicit`` (:mod:`.collaborative`),
   warm-started from the previous bundle when given;
7. cold start: content -> collaborative space for items without engagement,
   segment centroids for users without events (:mod:`.coldstart`);
8. the ANN index over item vectors, with its measured recall (:mod:`.index`);
9. with ``[ranking] ranker = "learned"``, the learned ranker (:mod:`.ranker`),
   trained on a label window carved from the end of these events
   (:mod:`.ranker_training`).

The result is a :class:`~recsys.training.model.TrainedModel` (:mod:`.model`),
saved as a bundle through :mod:`recsys.bundle`.

Serving (``recsys.ranking``, the push, broadcast, lift) reads what training
made only through :mod:`recsys.training.serving`, a small named interface;
an import-direction test keeps it that way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recsys.training.job import train, train_model

__all__ = ["train", "train_model"]


def __getattr__(name: str) -> Any:
    # Lazy (PEP 562): ``import recsys.training.serving`` must not pull in the
    # whole job (the ranker's training imports recsys.ranking, which imports
    # the serving interface -- eager names here would be a cycle).
    if name in __all__:
        from recsys.training import job  # cycle: see above (and the job is heavy for serving)

        return getattr(job, name)
    raise AttributeError(f"module 'recsys.training' has no attribute {name!r}")
