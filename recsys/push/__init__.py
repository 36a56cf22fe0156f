"""Nightly push lists and campaigns: channels, caps, de-duplication, holdout, output.

One module per concept: ``channels`` (channel rules, quiet hours, channel
choice), ``history`` (the push history, caps and de-duplication windows),
``holdout``, ``plan`` (who is in a run, chunks of whole history buckets),
``lists`` (ranked candidates -> final lists), ``runner`` (the chunk function
and its executors: in process, local processes, Dask), ``campaign``,
``writer`` (partitioned Parquet, checkpoints, atomic commit) and ``report``
(the manifest). The job itself is ``pipelines/push.py``.
"""

from __future__ import annotations

from recsys.push.campaign import CampaignSpec
from recsys.push.history import HistoryStore
from recsys.push.holdout import holdout_mask
from recsys.push.writer import OUTPUT_COLUMNS, read_manifest, read_pushes

__all__ = ["OUTPUT_COLUMNS", "CampaignSpec", "HistoryStore", "holdout_mask", "read_manifest", "read_pushes"]
