"""The whole engine end to end on the bundled synthetic city, as a script.

``python -m pipelines.demo [--out out/demo]`` takes the options of ``recsys demo``;
the steps are the library's :func:`recsys.demo.run_demo`. Nothing imports this file.
"""

from __future__ import annotations

import sys

from recsys.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
