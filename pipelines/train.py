"""Train a model bundle, as a script for a scheduler.

``python -m pipelines.train --data DIR [--out models] [--warm-start models/latest]``
takes the options of ``recsys train`` (``recsys train --help``); the job is the
library's :func:`recsys.training.train`. Nothing imports this file.
"""

from __future__ import annotations

import sys

from recsys.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
