"""Validation windows on MovieLens: the engine against the baselines, without touching the test windows.

Usage::

    python benchmarks/bench_quality_windows.py                                  # the built-in configuration
    python benchmarks/bench_quality_windows.py --config default --config rv.toml   # side by side, same process
    python benchmarks/bench_quality_windows.py --windows 0.8:0.8,0.8:0.9,0.7:0.8 --bootstrap 200

``bench_quality.py`` judges the engine on the test windows of two temporal
splits (the log after its 0.8 and its 0.9 quantile of time). A setting chosen
by looking at those windows is tuned to them, so settings are chosen here
instead, on windows carved from the training part of the first split only.
A window ``c:q`` keeps the events before the log's ``c`` quantile of time
(what ``bench_quality.py`` at split ``c`` trains on) and evaluates the engine
there, without tuning, at that part's own ``q`` quantile: trained on the
events before it, judged on the events after it. The defaults are the three
windows of docs/ranker.md (``v8:0.8``, ``v8:0.9``, ``v7:0.8`` there).

For each configuration (``default`` = the built-in one, else a TOML file) and
window, prints the engine's NDCG@10 for all / warm / cold users, the best
baseline of each population (``popular``, ``recent_popular``,
``segment_popular``, ``als``), their ratio and the paired 95% interval of the
difference; then the mean and the smallest ratio over the windows. Also
written to ``OUT/windows.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-latest-small"
DEFAULT_OUT = ROOT / "benchmarks" / "out" / "quality_windows"
POPULATIONS = ("all", "warm", "cold")
BASELINES = ("popular", "recent_popular", "segment_popular", "als")
ENGINE = "engine"


def parse_windows(text: str) -> list[tuple[float, float]]:
    """``"0.8:0.8,0.8:0.9"`` -> ``[(0.8, 0.8), (0.8, 0.9)]`` (carve quantile, evaluation quantile)."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        carve, _, split = part.partition(":")
        c, q = float(carve), float(split)
        if not (0 < c <= 1 and 0 < q < 1):
            raise ValueError(part)
        out.append((c, q))
    if not out:
        raise ValueError(text)
    return out


def window_ratios(metrics: dict[str, Any], k: int) -> dict[str, Any]:
    """Per population: the engine's NDCG@k, the best baseline's, their ratio and the paired interval."""
    key = f"ndcg@{k}"
    pols = metrics["policies"]
    out = {}
    for pop in POPULATIONS:
        best = max(BASELINES, key=lambda p: pols[p][pop][key] or 0.0)
        engine, rival = pols[ENGINE][pop][key], pols[best][pop][key]
        out[pop] = {
            "users": pols[ENGINE][pop]["users"], "engine": engine, "best": best, "best_ndcg": rival,
            "ratio": engine / rival if rival else None, "ci95": metrics["paired"]["vs"][best][pop][key]["ci95"],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    """Convert, evaluate every configuration on every window, print and write the ratios."""
    import numpy as np

    from recsys.config import EngineConfig, load_config
    from recsys.evaluation.movielens import convert_movielens
    from recsys.evaluation.run import EvaluationSettings, evaluate
    from recsys.exceptions import RecsysError
    from recsys.io import atomic_path
    from recsys.schema import validate
    from recsys.taxonomy import load_taxonomy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"MovieLens folder (default {DEFAULT_DATA})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--windows", default="0.8:0.8,0.8:0.9,0.7:0.8", help="carve:split pairs (default 0.8:0.8,0.8:0.9,0.7:0.8)")
    parser.add_argument("--config", action="append", default=None, help="'default' or an engine TOML; repeat to compare")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--bootstrap", type=int, default=200, help="paired bootstrap resamples (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        windows = parse_windows(args.windows)
    except ValueError:
        print(f"error: --windows must be carve:split pairs of quantiles, e.g. 0.8:0.9, got {args.windows!r}", file=sys.stderr)
        return 2
    names = args.config or ["default"]
    try:
        configs = {name: EngineConfig() if name == "default" else load_config(name) for name in names}
        converted = convert_movielens(args.data, args.out / "data")
        taxonomy = load_taxonomy(converted.taxonomy)
        clean = validate(data=converted.folder, taxonomy=taxonomy)
        times = clean.events["timestamp"]
        settings = EvaluationSettings(
            ks=(args.k,), n_boot=args.bootstrap, seed=args.seed, policies=BASELINES + (ENGINE,),
        )
        results: dict[str, Any] = {}
        for name, config in configs.items():
            ratios: dict[str, list[float]] = {pop: [] for pop in POPULATIONS}
            results[name] = {"windows": {}}
            for carve, split in windows:
                start = time.perf_counter()
                part = clean.events[times < times.quantile(carve)] if carve < 1 else clean.events
                metrics = evaluate(
                    clean.users, clean.items, part, taxonomy=taxonomy, config=config,
                    settings=dataclasses.replace(settings, split_quantile=split),
                ).metrics
                row = window_ratios(metrics, args.k)
                label = f"{carve:g}:{split:g}"
                results[name]["windows"][label] = {**row, "wall_s": round(time.perf_counter() - start, 1)}
                cells = []
                for pop in POPULATIONS:
                    r = row[pop]
                    ratios[pop].append(r["ratio"] or 0.0)
                    cells.append(
                        f"{pop} (n={r['users']}) {r['engine']:.4f} vs {r['best']} {r['best_ndcg']:.4f} = {r['ratio']:.3f}x "
                        f"[{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}]"
                    )
                print(f"{name} {label}: " + "; ".join(cells), flush=True)
            results[name]["mean"] = {pop: round(float(np.mean(v)), 3) for pop, v in ratios.items()}
            results[name]["min"] = {pop: round(float(np.min(v)), 3) for pop, v in ratios.items()}
            print(f"{name}: mean ratio {results[name]['mean']}, smallest {results[name]['min']}", flush=True)
    except RecsysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with atomic_path(args.out / "windows.json") as tmp:
        tmp.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
