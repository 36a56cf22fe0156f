"""The offline evaluation, as a script.

``python -m pipelines.evaluate --data DIR --split-quantile 0.8 --out DIR`` takes
the options of ``recsys evaluate`` (``recsys evaluate --help``); the job is the
library's :func:`recsys.evaluation.job.run_evaluation`. Nothing imports this file.
"""

from __future__ import annotations

import sys

from recsys.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
