"""``recsys train``: validated tables -> trained model -> verified bundle, ``latest`` moved."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence, TextIO

from recsys.config import load_config
from recsys.model import TrainedModel
from recsys.progress import Steps
from recsys.schema import validate
from recsys.taxonomy import load_taxonomy
from recsys.timeutil import parse_time
from recsys.training import N_STEPS, train_model


def run(
    data: str | Path,
    out: str | Path,
    *,
    config_path: str | Path | None = None,
    taxonomy_path: str | Path | None = None,
    as_of: str | None = None,
    warm_start: str | Path | None = None,
    stream: TextIO | None = sys.stderr,
) -> dict[str, Any]:
    """Validate ``data``, train, write a bundle under ``out``; return a summary dict."""
    start = time.perf_counter()
    taxonomy = load_taxonomy(taxonomy_path)
    config = load_config(config_path)
    cutoff = parse_time(as_of, taxonomy, name="--as-of") if as_of else None
    previous = TrainedModel.load(warm_start) if warm_start else None
    steps = Steps(N_STEPS + 2, stream=stream)
    with steps.step("validate"):
        result = validate(data=data, taxonomy=taxonomy)
    quarantined = result.counts()
    if quarantined and stream is not None:
        print(f"      quarantined rows (kept out of training): {quarantined}", file=stream)
    model = train_model(
        result.users,
        result.items,
        result.events,
        config=config,
        taxonomy=taxonomy,
        as_of=cutoff,
        warm_start=previous,
        steps=steps,
    )
    model.info.setdefault("counts", {})["quarantined_rows"] = int(sum(quarantined.values()))
    model.info["timings_s"] = dict(steps.timings)
    with steps.step("write and verify bundle"):
        path = model.save(out)
    summary = {
        "bundle": str(path),
        "latest": str(Path(out) / "latest"),
        "users": model.n_users,
        "items": model.n_items,
        **model.info["counts"],
        "index": model.info["index"],
        "data_window": model.window,
        "warm_start": previous is not None,
        "seconds": round(time.perf_counter() - start, 1),
    }
    if stream is not None:
        print("\ntrained model summary", file=stream)
        for key, value in summary.items():
            print(f"  {key:<18} {value}", file=stream)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``recsys train`` options."""
    parser.add_argument("--data", required=True, metavar="DIR", help="folder with users, items, events tables")
    parser.add_argument("--out", default="models", metavar="DIR", help="models folder (default: models)")
    parser.add_argument("--config", metavar="PATH", help="engine config TOML (default: built-in defaults)")
    parser.add_argument("--taxonomy", metavar="PATH", help="taxonomy TOML (default: the bundled city's)")
    parser.add_argument("--as-of", metavar="TIMESTAMP", help="train only on events before this time")
    parser.add_argument("--warm-start", metavar="BUNDLE", help="reuse a previous bundle's factors (e.g. models/latest)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run as a script: ``python -m pipelines.train --data DIR``."""
    from recsys.cli import main as cli_main

    return cli_main(["train", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
