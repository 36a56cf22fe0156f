"""Offline evaluation: how precise is the push, for whom, compared with what.

One module per concept:

- :mod:`~recsys.evaluation.split` -- temporal and leave-last-n splits, relevant sets;
- :mod:`~recsys.evaluation.populations` -- warm/cold, group, region, urban/rural labels;
- :mod:`~recsys.evaluation.metrics` -- precision, recall, NDCG, MAP, hit rate, MRR @k,
  coverage, diversity, novelty, exposure, bootstrap intervals;
- :mod:`~recsys.evaluation.baselines` -- random, popular, recent_popular,
  segment_popular, als, content, under the engine's eligibility;
- :mod:`~recsys.evaluation.simulate` -- the oracle and the simulated push (ground truth);
- :mod:`~recsys.evaluation.summary` -- metrics.json from the output tables (and back);
- :mod:`~recsys.evaluation.tune` -- random search on a validation window carved from training;
- :mod:`~recsys.evaluation.run` -- one evaluation end to end (``evaluate``, ``write_evaluation``);
- :mod:`~recsys.evaluation.report`, :mod:`~recsys.evaluation.plots` -- report.md/.html and PNGs.

Nothing heavy is imported here; import the submodule you need.
"""
