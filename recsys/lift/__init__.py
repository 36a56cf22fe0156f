"""The push's measured lift over its holdout (``recsys lift``).

:func:`measure_lift` compares, for one night or a range, the users the push
served with the users it held out, over the following days' events: positive
engagements per user on anything and on the pushed items, per group, region
and channel, with 95% intervals; and the push rows' own click-through per
channel and rank. :func:`run_lift` also writes the Parquet tables and a short
bilingual report.
"""

from __future__ import annotations

from recsys.lift.measure import CTR_COLUMNS, LIFT_COLUMNS, OUTCOMES, LiftResult, measure_lift
from recsys.lift.run import run_lift, write_lift

__all__ = ["CTR_COLUMNS", "LIFT_COLUMNS", "OUTCOMES", "LiftResult", "measure_lift", "run_lift", "write_lift"]
