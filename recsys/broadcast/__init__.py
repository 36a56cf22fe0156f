"""Broadcast channels (TV, radio, cinema pre-show, kiosk): places and their daily programmes.

* :mod:`recsys.broadcast.places` -- the places table (:func:`~recsys.broadcast.places.load_places`).
* :mod:`recsys.broadcast.scores` -- segment engagement scores mixed by each place's audience.
* :mod:`recsys.broadcast.schedule` -- filling slots (greedy knapsack with diversity).
* :mod:`recsys.broadcast.programme` -- a day's programmes in memory
  (:func:`~recsys.broadcast.programme.plan_programmes`).
* :mod:`recsys.broadcast.job` -- ``recsys broadcast``: inputs, planning and the partitioned
  output (:func:`~recsys.broadcast.job.run_broadcast`).
* :mod:`recsys.broadcast.evaluate` -- programmes scored on the synthetic city's ground truth
  against popularity playlists.
"""
