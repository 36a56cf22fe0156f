"""Tonight's push lists, as a script for a scheduler.

``python -m pipelines.push --model models/latest --date YYYY-MM-DD [--out pushes]``
takes the options of ``recsys push`` (``recsys push --help``); the job is the
library's :func:`recsys.push.run_nightly`. Nothing imports this file.
"""

from __future__ import annotations

import sys

from recsys.cli import main

if __name__ == "__main__":
    sys.exit(main(["push", *sys.argv[1:]]))
