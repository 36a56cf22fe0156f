"""``recsys train``: validated tables -> trained model -> verified bundle, ``latest`` moved."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence, TextIO

from recsys import bundle as bundle_io
from recsys.cli.common import parse_option_time
from recsys.config import ALL_SECTIONS, load_config
from recsys.guards import check_bundle_sanity, check_training_data
from recsys.io import prepare_output_dir
from recsys.model import TrainedModel
from recsys.progress import Steps
from recsys.schema import validate
from recsys.taxonomy import load_taxonomy
from recsys.training import N_STEPS, train_model


def run(
    data: str | Path,
    out: str | Path,
    *,
    config_path: str | Path | None = None,
    taxonomy_path: str | Path | None = None,
    as_of: str | None = None,
    warm_start: str | Path | None = None,
    force: bool = False,
    stream: TextIO | None = sys.stderr,
) -> dict[str, Any]:
    """Validate ``data``, train, write a bundle under ``out``; return a summary dict.

    Refuses (before training) data too thin to train on (``[training]``
    thresholds, an ``--as-of`` outside the data) and a models folder that
    holds other files (unless ``force``); writes the bundle, and moves
    ``latest`` only to a bundle with warm users and eligible items.

    Raises
    ------
    DataError
        Too few events, users or items, too many rows rejected, or a trained
        model that could serve nothing (``latest`` is not moved).
    ConfigError
        A bad option, config or output folder.
    """
    start = time.perf_counter()
    taxonomy = load_taxonomy(taxonomy_path)
    # train records every section in the bundle: push and ranking read theirs from it later
    config = load_config(config_path, command="train", sections=ALL_SECTIONS)
    cutoff = parse_option_time(as_of, taxonomy, name="--as-of") if as_of else None
    prepare_output_dir(out, "models", force=force, recognise=bundle_io.is_models_dir)
    previous = TrainedModel.load(warm_start) if warm_start else None
    steps = Steps(N_STEPS + 2, stream=stream)
    with steps.step("validate"):
        result = validate(data=data, taxonomy=taxonomy)
    quarantined = result.counts()
    if quarantined and stream is not None:
        print(f"      quarantined rows (kept out of training): {quarantined}", file=stream)
    result.check_rejected(config.training.max_rejected_share)
    check_training_data(
        result.users, result.items, result.events, config.training,
        as_of=cutoff, quarantined=int(sum(quarantined.values())),
    )
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
        path = model.save(out, sanity=check_bundle_sanity)
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
    parser.add_argument(
        "--force", action="store_true",
        help="write into an --out folder that holds other files (they are left alone)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run as a script: ``python -m pipelines.train --data DIR``."""
    from recsys.cli import main as cli_main

    return cli_main(["train", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
