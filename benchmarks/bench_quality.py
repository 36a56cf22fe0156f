"""Quality on a real engagement log: the engine against every baseline on MovieLens ml-latest-small.

Usage::

    python benchmarks/bench_quality.py                       # ../shared/data/ml-latest-small, splits 0.8,0.9
    python benchmarks/bench_quality.py --data DIR --out benchmarks/out/quality --splits 0.8,0.9
    python benchmarks/bench_quality.py --config linear.toml     # e.g. [ranking] ranker = "linear"

The log is converted into the data contract with its own taxonomy
(:func:`recsys.evaluation.movielens.convert_movielens`: one group, one region,
genres as topics, every rating a ``click``) into ``OUT/data``; then, for each
temporal split quantile, the evaluation runs as a new user would run
``recsys evaluate --tune`` (same defaults: 4 models x 8 blends, k = 10): tuned
on a validation window carved from the training events, refit on all of them,
judged once on the test window. Prints, per split, every policy's P@10, R@10
and NDCG@10 for all / warm / cold users as a Markdown table, the engine minus
the best baseline (by NDCG@10 in each population) with paired 95% bootstrap
intervals, what the tuner chose and the time each stage took. Everything is
also written to ``OUT/quality.md`` and ``OUT/quality.json``; each split's full
evaluation (report.html, metrics.json, tables) to ``OUT/eval-<q>/``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-latest-small"
DEFAULT_OUT = ROOT / "benchmarks" / "out" / "quality"
POPULATIONS = ("all", "warm", "cold")
METRICS = (("precision", "P"), ("recall", "R"), ("ndcg", "NDCG"))
ENGINE = "engine"


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True)
        return head.stdout.strip() + (" (working tree has uncommitted changes)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def policy_table(metrics: dict[str, Any], k: int) -> list[str]:
    """Markdown rows: every policy's P@k, R@k, NDCG@k for all / warm / cold users."""
    users = {pop: metrics["policies"][ENGINE][pop]["users"] for pop in POPULATIONS}
    header = ["policy"] + [f"{short}@{k} {pop} (n={users[pop]})" for pop in POPULATIONS for _, short in METRICS]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    best = {
        (pop, name): max(
            (p for p in metrics["policies"] if p != "oracle"),
            key=lambda p, pop=pop, name=name: metrics["policies"][p][pop].get(f"{name}@{k}") or 0.0,
        )
        for pop in POPULATIONS
        for name, _ in METRICS
    }
    for policy, blocks in metrics["policies"].items():
        cells = [f"**{policy}**" if policy == ENGINE else policy]
        for pop in POPULATIONS:
            for name, _ in METRICS:
                value = blocks[pop].get(f"{name}@{k}")
                text = "–" if value is None else f"{value:.4f}"
                cells.append(f"**{text}**" if best[(pop, name)] == policy else text)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def best_baseline_rows(metrics: dict[str, Any], k: int) -> tuple[list[str], dict[str, Any]]:
    """Markdown rows: engine minus the best baseline (by NDCG@k) per population, paired intervals."""
    paired = metrics["paired"]["vs"]
    lines = [
        f"| population | best baseline (NDCG@{k}) | NDCG@{k} engine − it [95% CI] | P@{k} engine − it [95% CI] | "
        f"R@{k} engine − it [95% CI] |",
        "|---|---|---|---|---|",
    ]
    out: dict[str, Any] = {}
    for pop in POPULATIONS:
        rivals = {b: metrics["policies"][b][pop].get(f"ndcg@{k}") or 0.0 for b in paired}
        best = max(rivals, key=rivals.get)
        cells = [f"{pop} (n={paired[best][pop]['users']})", best]
        out[pop] = {"baseline": best}
        for name in ("ndcg", "precision", "recall"):
            entry = paired[best][pop][f"{name}@{k}"]
            out[pop][f"{name}@{k}"] = entry
            lo, hi = entry["ci95"]
            mark = "" if lo is None else (" ▲" if lo > 0 else " ▼" if hi < 0 else " ≈")
            cells.append("–" if entry["diff"] is None else f"{entry['diff']:+.4f} [{lo:+.4f}, {hi:+.4f}]{mark}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines, out


def run_split(data: Path, taxonomy: Path, out: Path, quantile: float, args: argparse.Namespace) -> dict[str, Any]:
    """One ``recsys evaluate --tune`` run (library call, the CLI's defaults); returns its metrics."""
    from recsys.evaluation.job import run_evaluation as run
    from recsys.evaluation.run import EvaluationSettings
    from recsys.evaluation.tune import TuneSettings

    settings = EvaluationSettings(
        split_quantile=quantile,
        ks=(args.k,),
        n_boot=args.bootstrap,
        seed=args.seed,
        tune=True,
        tune_settings=TuneSettings(
            n_models=args.tune_models, n_blends=args.tune_blends, time_budget_s=args.tune_budget_s, seed=args.seed
        ),
    )
    start = time.perf_counter()
    metrics = run(
        data, out, taxonomy=taxonomy, config=args.config, settings=settings,
        log=(lambda line: print(f"  {line}", file=sys.stderr)),
    )
    metrics["wall_s"] = round(time.perf_counter() - start, 1)
    return metrics


def main(argv: list[str] | None = None) -> int:
    """Convert, evaluate at every split, print and write the tables."""
    from recsys.evaluation.movielens import convert_movielens
    from recsys.exceptions import RecsysError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"MovieLens folder (default {DEFAULT_DATA})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--splits", default="0.8,0.9", help="temporal split quantiles (default 0.8,0.9)")
    parser.add_argument("--config", type=Path, default=None, help="engine config TOML, the tuner's base (default: built-in)")
    parser.add_argument("--k", type=int, default=10, help="list length judged (default 10)")
    parser.add_argument("--tune-models", type=int, default=4, help="training runs of the tuner (default 4, as the CLI)")
    parser.add_argument("--tune-blends", type=int, default=8, help="blends per model (default 8, as the CLI)")
    parser.add_argument("--tune-budget-s", type=float, default=600.0, help="tuning time budget (default 600)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        splits = [float(q) for q in args.splits.split(",") if q.strip()]
    except ValueError:
        print(f"error: --splits must be comma-separated quantiles in (0, 1), got {args.splits!r}", file=sys.stderr)
        return 2

    try:
        t0 = time.perf_counter()
        converted = convert_movielens(args.data, args.out / "data")
        convert_s = time.perf_counter() - t0
        print(
            f"converted {args.data}: {converted.users:,} users, {converted.items:,} items, {converted.events:,} events, "
            f"{len(converted.topics)} topics in {convert_s:.1f}s -> {converted.folder}",
            file=sys.stderr,
        )
        report: list[str] = [
            f"Data: `{args.data.name}` ({converted.users:,} users, {converted.items:,} items, {converted.events:,} "
            f"ratings as clicks; one group, one region, {len(converted.topics)} genres as topics). "
            f"Commit {_commit()}, {time.strftime('%Y-%m-%d')}.",
            "",
        ]
        summary: dict[str, Any] = {"data": str(args.data), "commit": _commit(), "date": time.strftime("%Y-%m-%d"), "splits": {}}
        for q in splits:
            print(f"split at quantile {q}:", file=sys.stderr)
            metrics = run_split(converted.folder, converted.taxonomy, args.out / f"eval-{q}", q, args)
            split = metrics["split"]
            tuning = metrics.get("tuning", {})
            key = f"ndcg@{args.k}"
            scores = tuning.get("validation_scores", {})
            report += [
                f"### Split at quantile {q}: T = {split['time']}",
                "",
                f"{split['train_events']:,} training / {split['test_events']:,} test events; evaluated users "
                f"{split['users']['all']} (warm {split['users']['warm']}, cold {split['users']['cold']}) of "
                f"{split['users']['listed']} listed. Wall time {metrics['wall_s']:.0f} s "
                f"(tune {metrics['timings_s'].get('tune', 0):.0f} s, refit {metrics['timings_s'].get('train', 0):.0f} s).",
                "",
                *policy_table(metrics, args.k),
                "",
                "Engine minus the best baseline of each population (paired bootstrap, 95%; ▲ above 0, ▼ below, ≈ contains 0):",
                "",
            ]
            rows, paired = best_baseline_rows(metrics, args.k)
            report += rows + [""]
            if scores:
                rivals = ", ".join(f"{n} {v[key]:.4f}" for n, v in scores.items() if n != ENGINE)
                chosen = ", ".join(f"{k}={v}" for k, v in tuning.get("chosen", {}).items())
                report += [
                    f"Tuning (validation {tuning['validation']['start']} .. {tuning['validation']['end']}, "
                    f"{tuning['validation']['users']} users): engine {key} {scores[ENGINE][key]:.4f} vs {rivals}. "
                    f"Chosen: {chosen}.",
                    "",
                ]
            summary["splits"][str(q)] = {
                "split": split,
                "policies": {p: {pop: {f"{m}@{args.k}": b[pop].get(f"{m}@{args.k}") for m, _ in METRICS} for pop in POPULATIONS}
                             for p, b in metrics["policies"].items()},
                "engine_minus_best_baseline": paired,
                "tuning": {"chosen": tuning.get("chosen"), "validation_scores": scores},
                "wall_s": metrics["wall_s"],
                "timings_s": metrics["timings_s"],
            }
    except RecsysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from recsys.io import atomic_path

    text = "\n".join(report)
    print(text)
    with atomic_path(args.out / "quality.md") as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    with atomic_path(args.out / "quality.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
