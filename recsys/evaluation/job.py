"""The evaluation job and the tuning job on a data folder: validate, evaluate (or tune), write.

:func:`run_evaluation` is ``recsys evaluate``; :func:`run_tuning` is ``recsys tune``.
Both read only the config sections a trained-and-ranked model uses (nothing is
pushed or kept), validate the folder, then hand the clean tables to
:func:`recsys.evaluation.run.evaluate` or :func:`recsys.evaluation.tune.tune`.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import tomli_w

from recsys import columns as C
from recsys.config import EngineConfig, changed_sections, load_config, sections_except
from recsys.evaluation import summary as S
from recsys.evaluation.report import PLOTS_DIR, REPORT_HTML, REPORT_MD, REPORT_TITLE, headline_rows, paired_verdicts
from recsys.evaluation.run import EvaluationSettings, evaluate, write_evaluation
from recsys.evaluation.simulate import load_truth
from recsys.evaluation.tune import TuneSettings, tune
from recsys.exceptions import ConfigError
from recsys.io import atomic_path, prepare_output_dir, prepare_output_file, written_by_header
from recsys.schema import ValidationResult, validate
from recsys.taxonomy import Taxonomy, load_taxonomy
from recsys.timeutil import parse_option_time

#: the config sections evaluate and tune do not read: a model is trained and ranked, nothing pushed or kept
EVAL_SECTIONS_EXCLUDED = ("push", "bundle", "training")

#: the top-level entries ``recsys evaluate`` writes into its --out folder (see
#: :func:`recsys.evaluation.run.write_evaluation` and :func:`recsys.evaluation.report.write_report`)
EVALUATION_ENTRIES = (
    S.RECOMMENDATIONS_FILE, S.TEST_FILE, S.USERS_FILE, S.ITEMS_FILE, S.METRICS_FILE,
    REPORT_MD, REPORT_HTML, PLOTS_DIR,
)
#: ... and, with ``--tune``, the chosen config and the trials
TUNING_ENTRIES = (S.TUNED_CONFIG_FILE, S.TRIALS_FILE)


def evaluation_entries(settings: EvaluationSettings) -> tuple[str, ...]:
    """The top-level names an evaluation with ``settings`` writes into its output folder."""
    return EVALUATION_ENTRIES + (TUNING_ENTRIES if settings.tune else ())


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _load(
    data: str | Path,
    taxonomy: Taxonomy | str | Path | None,
    end: str | None,
    say: Callable[[str], None],
    check: Callable[[ValidationResult], None] | None = None,
) -> tuple[Taxonomy, ValidationResult]:
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    result = validate(data=data, taxonomy=tax, end=end)
    if check is not None:
        check(result)  # a refusal of the options on this data is the only line, before any progress
    counts = result.counts()
    kept = result.rows_kept()
    say(
        f"validated {data}: kept {kept['users']:,} users, {kept['items']:,} items, {kept['events']:,} events; "
        f"quarantined {sum(counts.values()):,} rows" + (f" ({counts})" if counts else "")
    )
    return tax, result


def run_evaluation(
    data: str | Path,
    out: str | Path,
    *,
    taxonomy: Taxonomy | str | Path | None = None,
    config: EngineConfig | str | Path | None = None,
    settings: EvaluationSettings | None = None,
    end: str | None = None,
    log: Callable[[str], None] | None = _stderr,
    force: bool = False,
) -> dict[str, Any]:
    """Evaluate the engine against the baselines on the data set in ``data``.

    Parameters
    ----------
    data : path
        Folder with users, items and events (Parquet or CSV); a ``truth/``
        folder (the synthetic generator's ground truth) adds the oracle and
        the simulated push.
    out : path
        Output folder: new, empty or written by evaluate before (its own files
        are replaced, any other file is left alone; see
        :func:`recsys.io.prepare_output_dir`): metrics.json, the tables, the report.
    taxonomy : Taxonomy or path, optional
        The data set's codes; default the bundled city's.
    config : EngineConfig or path, optional
        Engine configuration (TOML); defaults when omitted.
    settings : EvaluationSettings
        Split, k, policies, tuning, ...
    end : str, optional
        The data's end for validation (default: manifest.json's, else now).
    log : callable or None
        Progress lines (default: stderr).
    force : bool
        Write into an ``out`` folder holding other files.

    Returns
    -------
    dict
        The metrics (``metrics.json``) plus ``"out"``: the folder written.
    """
    say = log or (lambda _line: None)
    settings = (settings or EvaluationSettings()).check()  # bad options fail before any work
    cfg = config if isinstance(config, EngineConfig) else load_config(
        config, command="evaluate", sections=sections_except(*EVAL_SECTIONS_EXCLUDED)
    )
    # the names written are known: a file of another's in the way is refused now, not after the work
    target = prepare_output_dir(
        out, "evaluate", force=force, recognise=is_evaluation_dir, writes=evaluation_entries(settings)
    )
    tax, split_time = _split_time(settings.split_time, taxonomy)  # before any work (and any progress line)
    tax, clean = _load(
        data, tax, end, say,
        check=None if split_time is None else lambda r: _check_split_time(settings.split_time, split_time, r.events),
    )
    truth = load_truth(data)
    if truth is not None:
        say("ground truth found: adding the oracle and the simulated push")
    # the synthetic city's broadcast places, when there: their programmes are scored on the truth too
    places = next((p for p in (Path(data) / "places.parquet", Path(data) / "places.csv") if p.exists()), None)
    result = evaluate(
        clean.users, clean.items, clean.events, taxonomy=tax, settings=settings,
        config=cfg, truth=truth, log=say, places=places,
    )
    with target.staging() as staged:
        write_evaluation(result, staged, tax)
    folder = target.path
    say(f"wrote {folder}/report.html, metrics.json and the tables")
    return {**result.metrics, "out": str(folder)}


def _split_time(value: str | None, taxonomy: Taxonomy | str | Path | None) -> tuple[Taxonomy, pd.Timestamp | None]:
    """The taxonomy, and ``--split-time`` parsed within the supported time range (None when not given)."""
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    return tax, (parse_option_time(value, tax, name="--split-time") if value is not None else None)


def _check_split_time(value: str, split_time: pd.Timestamp, events: pd.DataFrame) -> None:
    """Refuse a ``--split-time`` that leaves the test or the training window empty, naming the option."""
    if not len(events):
        return  # the split says so (no events at all is not the option's fault)
    first, last = events[C.TIMESTAMP].min(), events[C.TIMESTAMP].max()
    if split_time > last:
        raise ConfigError(
            f"--split-time {value} is after the last event ({last.isoformat()}): "
            "an empty test window, nothing to test; "
            f"give a time in {first.isoformat()} .. {last.isoformat()}"
        )
    if split_time <= first:
        raise ConfigError(
            f"--split-time {value} is at or before the first event ({first.isoformat()}): "
            "an empty training window, nothing to train on; "
            f"give a time in {first.isoformat()} .. {last.isoformat()}"
        )


def is_evaluation_dir(folder: Path) -> bool:
    """A folder an older `recsys evaluate` wrote (before the output marker): its ``metrics.json`` has
    evaluate's keys and its ``report.md`` evaluate's title (files of those names alone are someone's
    else, and would be replaced as evaluate's own)."""
    try:
        doc = json.loads((folder / S.METRICS_FILE).read_text(encoding="utf-8"))
        with open(folder / REPORT_MD, encoding="utf-8") as fh:
            first = fh.readline()
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and {"k", "split", "policies"} <= set(doc) and first.startswith(f"# {REPORT_TITLE}")


def run_tuning(
    data: str | Path,
    out: str | Path,
    *,
    taxonomy: Taxonomy | str | Path | None = None,
    config: EngineConfig | str | Path | None = None,
    settings: TuneSettings | None = None,
    until: str | None = None,
    end: str | None = None,
    log: Callable[[str], None] | None = _stderr,
) -> dict[str, Any]:
    """Tune the engine's configuration on ``data`` and write it as TOML.

    Only events before ``until`` are read (keep a test window aside with it);
    the validation window is the latest part of those. Writes ``out`` (the
    TOML config: the sections that differ from the defaults, so ``recsys
    train`` and ``recsys evaluate`` both take it) and the trials beside it
    (:func:`trials_path`). Either file, when it exists, is replaced only if
    tune wrote it (:func:`recsys.io.is_written_by`, :func:`is_tune_trials`); any other
    file is refused before any work (there is no way to replace it).

    Returns
    -------
    dict
        ``{"config": path, "trials": path, "validation": {...}, "best": {...}}``.
    """
    say = log or (lambda _line: None)
    settings = (settings or TuneSettings()).check()
    cfg = config if isinstance(config, EngineConfig) else load_config(
        config, command="tune", sections=sections_except(*EVAL_SECTIONS_EXCLUDED)
    )
    path = Path(out)
    trials = trials_path(path)
    check_tune_outputs(path, trials)  # before any work, every time: either file may be someone else's
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    cutoff = parse_option_time(until, tax, name="--until") if until is not None else None  # before any work
    tax, clean = _load(data, tax, end, say)
    events = clean.events
    if cutoff is not None:
        events = events[events[C.TIMESTAMP] < cutoff]
    result = tune(clean.users, clean.items, events, taxonomy=tax, config=cfg, settings=settings, log=say)
    check_tune_outputs(path, trials)  # again: a file put there while tuning ran is not replaced either
    with atomic_path(path) as tmp:
        header = f"{written_by_header('tune')} on {data}: the sections that differ from the defaults\n"
        tmp.write_text(header + tomli_w.dumps(changed_sections(result.config)), encoding="utf-8")
    with atomic_path(trials) as tmp:
        result.trials.to_csv(tmp, index=False)
    best = {k: (v.item() if hasattr(v, "item") else v) for k, v in result.best.items()}
    return {
        "config": str(path), "trials": str(trials), "validation": result.validation, "best": best,
        "table": result.trials, "baselines": result.baselines, "chosen": result.chosen,
    }


def trials_path(config_path: Path) -> Path:
    """Where tune writes the trials of the config ``config_path``: ``<stem>.trials.csv`` beside it."""
    return config_path.with_name(f"{config_path.stem}.trials.csv")


#: the columns around the searched parameters and the ``<metric>@<k>`` scores in tune's trials table
TRIALS_LEADING, TRIALS_TRAILING = ("trial", "model"), ("seconds",)
_SCORE_COLUMN = re.compile(r"[a-z_]+@([1-9][0-9]*)")
_PARAM_COLUMN = re.compile(r"[a-z_][a-z0-9_.]*")


def is_tune_trials(path: Path) -> bool:
    """A trials table ``recsys tune`` wrote (a CSV without a comment line, so it is recognised by its
    header): ``trial``, ``model``, the searched parameters (named like :data:`recsys.evaluation.tune.SEARCH_SPACE`'s),
    the validation scores as ``<metric>@<k>`` for one ``k``, then ``seconds`` -- and nothing else."""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            header = next(csv.reader([fh.readline(10_000)]), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    lead, last = len(TRIALS_LEADING), len(TRIALS_TRAILING)
    if tuple(header[:lead]) != TRIALS_LEADING or tuple(header[-last:]) != TRIALS_TRAILING:
        return False
    middle = header[lead:-last]
    scores = [_SCORE_COLUMN.fullmatch(c) for c in middle]
    params = sorted(c for c, m in zip(middle, scores) if m is None)
    ks = {m.group(1) for m in scores if m is not None}
    # the searched parameters by their shape, not today's search space: a parameter added to the search
    # must not make an older run's trials someone else's file (tune has no way to replace those)
    named = all(_PARAM_COLUMN.fullmatch(c) for c in params)
    return named and len(ks) == 1 and len(set(middle)) == len(middle)


def check_tune_outputs(config_path: Path, trials: Path) -> None:
    """Refuse, naming the file, an existing config or trials file that tune did not write.

    Tune replaces only its own files (:func:`recsys.io.is_written_by`, :func:`is_tune_trials`); there is no
    option to replace another's (the rule: nothing a command did not create is overwritten).

    Raises
    ------
    ConfigError
        One line naming the file, why and what to do.
    """
    prepare_output_file(config_path, "tune")
    if (trials.exists() or trials.is_symlink()) and not is_tune_trials(trials):
        raise ConfigError(
            f"{trials}: exists beside --out {config_path} and is not a trials table written by recsys tune "
            "(columns trial, model, the searched parameters, the scores, seconds); tune writes its trials "
            "there and never replaces a file it did not write: choose another --out, or move the file away"
        )


def headline_text(metrics: dict[str, Any]) -> str:
    """The headline table as plain text (what the command prints)."""
    k = metrics["settings"]["headline_k"]
    header, rows = headline_rows(metrics, k)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    if metrics.get("oracle_ratio") is not None:
        lines.append(f"engine / oracle simulated engagements per push: {metrics['oracle_ratio']:.3f}")
    if metrics.get("paired", {}).get("vs"):
        lines.append("engine minus each baseline (paired 95% intervals):")
        lines += [f"  {line}" for line in paired_verdicts(metrics, k)]
    tuning = metrics.get("tuning")
    if tuning and tuning.get("validation_scores"):
        key = tuning["metric"]
        scores = tuning["validation_scores"]
        rivals = ", ".join(f"{n} {v[key]:.4f}" for n, v in scores.items() if n != "engine")
        lines.append(f"tuned on validation: engine {key} {scores['engine'][key]:.4f} vs {rivals}")
    return "\n".join(lines)
