"""``recsys evaluate``: the engine against baselines on a temporal split, with a report."""

from __future__ import annotations

import argparse

NAME = "evaluate"
HELP = (
    "offline evaluation: train as of T with the production code, list with the engine and the baselines, "
    "judge against the test window; writes metrics.json, tables and report.html"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``recsys evaluate`` (defined with the job in pipelines/evaluate.py)."""
    from pipelines.evaluate import add_arguments as job_arguments

    job_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run the evaluation job; print the headline table."""
    from pipelines.evaluate import run_args

    return run_args(args)
