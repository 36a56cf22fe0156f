"""``recsys evaluate``: the engine against baselines on a temporal split, with a report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.cli.common import FORCE_HELP

if TYPE_CHECKING:  # the evaluation loads when the command runs, not with `recsys --help`
    from recsys.evaluation.run import EvaluationSettings

NAME = "evaluate"
HELP = (
    "offline evaluation: train as of T with the production code, list with the engine and the baselines, "
    "judge against the test window; writes metrics.json, tables and report.html"
)


DEFAULT_KS = "5,10,20"
#: the --tune-* options (they apply with --tune only) and their defaults: option -> (attribute, default)
TUNE_OPTIONS = {
    "--tune-models": ("tune_models", 4),
    "--tune-blends": ("tune_blends", 8),
    "--tune-budget-s": ("tune_budget_s", 600.0),
}


def parse_ks(text: str) -> tuple[int, ...]:
    """Parse ``"5,10,20"``.

    Raises
    ------
    ConfigError
        Naming the bad value and what is valid.
    """
    from recsys.evaluation.metrics import check_ks
    from recsys.exceptions import ConfigError

    try:
        values = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--k must be comma-separated positive integers (e.g. {DEFAULT_KS}), got {text!r}") from None
    return tuple(check_ks(values))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``recsys evaluate``."""
    parser.add_argument("--data", metavar="DIR", required=True, help="folder with users, items, events (.parquet/.csv)")
    parser.add_argument("--taxonomy", metavar="PATH", default=None, help="taxonomy TOML of the data set's codes")
    parser.add_argument("--config", metavar="PATH", default=None, help="engine config TOML (default: built-in defaults)")
    split = parser.add_mutually_exclusive_group(required=True)
    split.add_argument("--split-time", metavar="T", help="train before T, test at or after T (ISO with offset, or a date)")
    split.add_argument("--split-quantile", metavar="Q", type=float, help="put T at this quantile of event times, e.g. 0.8")
    split.add_argument("--leave-last-n", metavar="N", type=int, help="per user, hold out the last N positive engagements")
    parser.add_argument("--k", metavar="K,K", default=DEFAULT_KS, help=f"cut-offs (default {DEFAULT_KS})")
    parser.add_argument("--tune", action="store_true", help="tune on a validation window carved from training first")
    # default None: given without --tune, a --tune-* option is refused rather than ignored
    for option, what, kind in (
        ("--tune-models", "collaborative configs tried", int),
        ("--tune-blends", "blend weights tried per model", int),
        ("--tune-budget-s", "tuning time budget, seconds", float),
    ):
        default = TUNE_OPTIONS[option][1]
        parser.add_argument(
            option, metavar="S" if kind is float else "N", type=kind, default=None,
            help=f"with --tune: {what} (default {default:g})",
        )
    parser.add_argument("--policies", metavar="A,B", default=None, help="policies to compare (default: all)")
    parser.add_argument("--max-users", metavar="N", type=int, default=None, help="list at most N users (seeded sample)")
    parser.add_argument("--bootstrap", metavar="N", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", metavar="S", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--end", metavar="ISO", default=None, help="the data's end for validation (default: manifest)")
    parser.add_argument(
        "--out", metavar="DIR", required=True,
        help="output folder: new, empty, or written by evaluate before (its own files are replaced)",
    )
    parser.add_argument(
        "--force", action="store_true", help=FORCE_HELP
    )


def settings_from_args(args: argparse.Namespace) -> EvaluationSettings:
    """Build :class:`EvaluationSettings` from parsed options."""
    from recsys.evaluation.run import EvaluationSettings
    from recsys.evaluation.tune import TuneSettings
    from recsys.exceptions import ConfigError
    from recsys.seeds import check_seed_option

    tuning = {}
    for option, (attr, default) in TUNE_OPTIONS.items():
        value = getattr(args, attr, None)
        if value is not None and not args.tune:
            # ignoring it would let a run look tuned-as-asked when it was not tuned at all
            raise ConfigError(f"{option} {value}: needs --tune (it sets the tuning search); add --tune, or drop {option}")
        tuning[attr] = default if value is None else value
    seed = check_seed_option(args.seed)
    policies = None
    if args.policies is not None:
        policies = tuple(p.strip() for p in args.policies.split(",") if p.strip())
        if not policies:
            # an empty list is a mistake (an unset shell variable), not "all": omit the option for all
            raise ConfigError(f"--policies {args.policies!r} names no policy; give e.g. engine,popular, or omit it for all")
    return EvaluationSettings(
        ks=parse_ks(args.k),
        split_time=args.split_time,
        split_quantile=args.split_quantile,
        leave_last_n=args.leave_last_n,
        policies=policies,
        seed=seed,
        n_boot=args.bootstrap,
        max_users=args.max_users,
        tune=args.tune,
        tune_settings=TuneSettings(
            n_models=tuning["tune_models"], n_blends=tuning["tune_blends"], time_budget_s=tuning["tune_budget_s"],
            seed=seed,
        ),
    )


def run(args: argparse.Namespace) -> int:
    """Run the evaluation job; print the headline table."""
    from recsys.evaluation.job import headline_text, run_evaluation

    metrics = run_evaluation(
        args.data, args.out, taxonomy=args.taxonomy, config=args.config, settings=settings_from_args(args), end=args.end,
        force=getattr(args, "force", False),
    )
    print(headline_text(metrics))
    print(f"report: {Path(metrics['out']) / 'report.html'}")
    return 0
