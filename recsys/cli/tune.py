"""``recsys tune``: pick collaborative hyper-parameters and blend weights for a data set."""

from __future__ import annotations

import argparse

from recsys.cli.common import add_taxonomy_option

NAME = "tune"
HELP = (
    "random search over collaborative parameters and blend weights on a validation window carved from the "
    "data's latest events; writes the chosen config as TOML and the trials beside it"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``recsys tune``."""
    parser.add_argument("--data", metavar="DIR", required=True, help="folder with users, items, events (.parquet/.csv)")
    add_taxonomy_option(parser)
    parser.add_argument("--config", metavar="PATH", default=None, help="base config TOML (default: built-in defaults)")
    parser.add_argument(
        "--until", metavar="T", default=None, help="read only events before T (keep a test window aside)"
    )
    parser.add_argument("--models", metavar="N", type=int, default=6, help="collaborative configs tried (default 6)")
    parser.add_argument("--blends", metavar="N", type=int, default=8, help="blend weights tried per model (default 8)")
    parser.add_argument(
        "--validation-fraction", metavar="F", type=float, default=0.2,
        help="share of the latest events used for validation (default 0.2)",
    )
    parser.add_argument("--k", metavar="K", type=int, default=10, help="list length judged (default 10)")
    parser.add_argument("--budget-s", metavar="S", type=float, default=600.0, help="time budget in seconds (default 600)")
    parser.add_argument("--seed", metavar="S", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--end", metavar="ISO", default=None, help="the data's end for validation (default: manifest)")
    parser.add_argument(
        "--out", metavar="PATH", required=True,
        help="where to write the tuned config (TOML), with the trials beside it as <stem>.trials.csv; either "
        "file, if it exists, must have been written by tune (tune never replaces another file)",
    )


def run(args: argparse.Namespace) -> int:
    """Tune, write the config and the trials, print what was tried."""
    from recsys.evaluation.job import run_tuning
    from recsys.evaluation.tune import TuneSettings
    from recsys.seeds import check_seed_option

    settings = TuneSettings(
        n_models=args.models,
        n_blends=args.blends,
        validation_fraction=args.validation_fraction,
        k=args.k,
        time_budget_s=args.budget_s,
        seed=check_seed_option(args.seed),
    )
    report = run_tuning(
        args.data, args.out, taxonomy=args.taxonomy, config=args.config, settings=settings, until=args.until,
        end=args.end,
    )
    with_pd = report["table"]
    print(with_pd.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    v = report["validation"]
    best = report["best"]
    print(f"validation window {v['start']} .. {v['end']}: {v['users']:,} users, {v['validation_events']:,} events")
    print(f"best trial {best['trial']}: {v['metric']} = {best[v['metric']]:.4f}")
    rivals = ", ".join(f"{n} {s[v['metric']]:.4f}" for n, s in report.get("baselines", {}).items())
    print(f"baselines on the same validation users: {rivals}")
    print(f"config: {report['config']}\ntrials: {report['trials']}")
    return 0
