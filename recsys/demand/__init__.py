"""Demand tracking: what residents want, what the catalogue offers, whom the push leaves behind.

``recsys demand`` (:func:`run_demand`) reads the contract's tables and writes
weekly demand per topic x segment, tested trends, supply, demand-supply gaps,
under-served audiences, ``priorities.toml`` for the push and a bilingual
report. See ``docs/demand.md``.
"""

from __future__ import annotations

from recsys.demand.job import DemandResult, analyse, run_demand

__all__ = ["DemandResult", "analyse", "run_demand"]
