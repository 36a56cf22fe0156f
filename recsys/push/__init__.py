"""Nightly push lists and campaigns: channels, caps, de-duplication, holdout, output.

The jobs: :func:`run_nightly` (``recsys push``, :mod:`recsys.push.nightly`) and
:func:`run_campaign` (``recsys campaign``, :mod:`recsys.push.campaign_job`),
both built on :mod:`recsys.push.job` (bundle and settings, preflight checks,
locks, planning, the manifest).

One module per concept: ``channels`` (channel rules, quiet hours, channel
choice), ``history`` (the push history, caps and de-duplication windows),
``holdout``, ``plan`` (who is in a run, chunks of whole history buckets),
``lists`` (ranked candidates -> final lists), ``chunk`` (the chunk function),
``stats`` (the run's counts), ``executors`` (in process, local processes,
Dask), ``campaign`` (choosing a campaign's audience), ``writer``
(partitioned Parquet, checkpoints, atomic commit) and ``report`` (the
manifest and the summary).
"""

from __future__ import annotations

from recsys.push.campaign import CampaignSpec
from recsys.push.campaign_job import run_campaign
from recsys.push.history import HistoryStore
from recsys.push.holdout import holdout_mask
from recsys.push.job import NothingToPushError
from recsys.push.nightly import run_nightly
from recsys.push.writer import OUTPUT_COLUMNS, read_manifest, read_pushes

__all__ = [
    "OUTPUT_COLUMNS",
    "CampaignSpec",
    "HistoryStore",
    "NothingToPushError",
    "holdout_mask",
    "read_manifest",
    "read_pushes",
    "run_campaign",
    "run_nightly",
]
