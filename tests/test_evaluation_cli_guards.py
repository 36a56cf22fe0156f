"""``recsys tune`` and ``recsys evaluate`` refuse what they must before any work.

* tune never replaces a config or trials file it did not write (there is no ``--force``),
  and recognises its own trials table every time, not only when ``--out`` is new;
* ``evaluate``'s ``--tune-*`` options need ``--tune``;
* ``evaluate --force`` refuses a same-named file of another's before the work, and the names it
  checks are exactly those it writes;
* ``--seed -1`` names the option.
"""

from __future__ import annotations

import json

import pytest

from evaluation_world import write_world
from recsys.cli import build_parser, main as cli
from recsys.evaluation.job import evaluation_entries, is_tune_trials, trials_path
from recsys.io import is_written_by
from recsys.evaluation.run import EvaluationSettings
from recsys.evaluation.tune import SEARCH_SPACE
from recsys.io import OUTPUT_MARKER

END = "2026-07-01T00:00:00Z"
#: the linear ranker keeps the one model of these runs fast (the learned one is tested on its own)
LINEAR = '[ranking]\nranker = "linear"\n'


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("guards")
    folder, tax_path, _ = write_world(base / "data", n_users=120, n_items=40, seed=5)
    config = base / "linear.toml"
    config.write_text(LINEAR, encoding="utf-8")
    return folder, tax_path, config


def _tune(world, out, *extra):
    folder, tax_path, config = world
    return ["tune", "--data", str(folder), "--taxonomy", str(tax_path), "--config", str(config), "--end", END,
            "--models", "1", "--blends", "1", "--out", str(out), *extra]


def _evaluate(world, out, *extra):
    folder, tax_path, config = world
    return ["evaluate", "--data", str(folder), "--taxonomy", str(tax_path), "--config", str(config), "--end", END,
            "--split-quantile", "0.8", "--k", "10", "--bootstrap", "20", "--out", str(out), *extra]


def _refused(capsys, argv, *names):
    """Exit 2, one ``error:`` line naming each of ``names``, and no work (no progress line)."""
    code = cli(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert "validated" not in err  # refused before the data was even read
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


# ---- 1. tune never replaces a file it did not write, and has no --force -----------------------


def test_tune_refuses_a_config_file_it_did_not_write_and_has_no_force(world, tmp_path, capsys):
    mine = tmp_path / "mine.toml"
    mine.write_text("[ranking]\nweight_topic = 0.5\n", encoding="utf-8")
    theirs = trials_path(mine)
    theirs.write_text("my,own\n1,2\n", encoding="utf-8")
    line = _refused(capsys, _tune(world, mine), str(mine), "not written by recsys tune")
    assert "--force" not in line  # no option offered that does not exist
    # --force is no way around it: the option is gone (argparse refuses it, one line, exit 2)
    with pytest.raises(SystemExit) as exited:
        cli(_tune(world, mine, "--force"))
    err = capsys.readouterr().err.strip()
    assert exited.value.code == 2 and len(err.splitlines()) == 1 and "unrecognized arguments: --force" in err
    assert mine.read_text(encoding="utf-8") == "[ranking]\nweight_topic = 0.5\n"
    assert theirs.read_text(encoding="utf-8") == "my,own\n1,2\n"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["tune", "--help"])
    assert "--force" not in capsys.readouterr().out
    # a trials file of another's beside a new --out is refused too, naming it
    new = tmp_path / "new.toml"
    trials_path(new).write_text("my,own\n", encoding="utf-8")
    _refused(capsys, _tune(world, new), str(trials_path(new)), "not a trials table written by recsys tune")
    assert not new.exists() and trials_path(new).read_text(encoding="utf-8") == "my,own\n"


# ---- 2. the trials file is checked every time ----------------------------------------------


def test_tune_replaces_its_own_files_and_refuses_a_trials_file_of_another_every_time(world, tmp_path, capsys):
    out = tmp_path / "tt" / "mine.toml"
    assert cli(_tune(world, out)) == 0
    trials = trials_path(out)
    assert is_written_by(out, "tune") and is_tune_trials(trials)
    # tune's own pair is replaced, with any --k (the score columns follow it)
    assert cli(_tune(world, out, "--k", "5")) == 0
    assert "ndcg@5" in trials.read_text(encoding="utf-8").splitlines()[0]
    capsys.readouterr()
    # --out is tune's own, the trials file beside it is not: refused before any work, both kept
    config = out.read_text(encoding="utf-8")
    trials.write_text("user,note\nu1,keep me\n", encoding="utf-8")
    _refused(capsys, _tune(world, out), str(trials), "not a trials table written by recsys tune")
    assert trials.read_text(encoding="utf-8") == "user,note\nu1,keep me\n"
    assert out.read_text(encoding="utf-8") == config


def test_the_trials_table_is_recognised_by_its_columns(tmp_path):
    params = [p.name for p in SEARCH_SPACE]

    def header(*cols):
        path = tmp_path / "t.csv"
        path.write_text(",".join(cols) + "\n0,0\n", encoding="utf-8")
        return is_tune_trials(path)

    scores = ["ndcg@20", "precision@20", "recall@20"]
    assert header("trial", "model", *params, *scores, "seconds")
    assert header("trial", "model", *reversed(params), *scores, "seconds")  # the order of the draws may change
    assert not header("trial", "model", *params, "seconds")  # no score
    assert not header("trial", "model", *params, "ndcg@10", "recall@20", "seconds")  # two cut-offs
    # an older engine's search space (a parameter fewer or more) is still tune's own trials table
    assert header("trial", "model", *params[1:], *scores, "seconds")
    assert header("trial", "model", *params, "weight_new_term", *scores, "seconds")
    assert not header("trial", "model", *params, *scores, "My Note", "seconds")  # a column of someone's
    assert not header("trial", "model", *params, *scores, "seconds", "note")
    assert not header("model", "trial", *params, *scores, "seconds")
    assert not header("trial", "model", *params, params[0], *scores, "seconds")  # a repeated column
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00binary")
    assert not is_tune_trials(tmp_path / "bin.csv")
    assert not is_tune_trials(tmp_path / "missing.csv")
    assert not is_tune_trials(tmp_path)  # a folder


# ---- 3. --tune-* options need --tune ------------------------------------------------------------


@pytest.mark.parametrize("option, value", [("--tune-models", "0"), ("--tune-blends", "3"), ("--tune-budget-s", "-5")])
def test_evaluate_refuses_a_tune_option_without_tune(world, tmp_path, capsys, option, value):
    out = tmp_path / "o"
    _refused(capsys, _evaluate(world, out, option, value), f"{option} {value}", "needs --tune")
    assert not out.exists()


def test_tune_options_with_tune_are_still_checked(world, tmp_path, capsys):
    _refused(capsys, _evaluate(world, tmp_path / "o", "--tune", "--tune-models", "0"), "n_models")


# ---- 4. evaluate --force: a same-named file of another's is refused before the work ------------


def test_evaluate_force_refuses_a_clash_before_any_work(world, tmp_path, capsys):
    out = tmp_path / "shared"
    out.mkdir()
    (out / "notes.txt").write_text("keep\n", encoding="utf-8")
    (out / "report.html").write_text("my report\n", encoding="utf-8")
    _refused(capsys, _evaluate(world, out, "--force"), str(out / "report.html"), "never replaces")
    assert (out / "report.html").read_text(encoding="utf-8") == "my report\n"
    # the tuning outputs are checked when tuning writes them
    (out / "report.html").unlink()
    (out / "tuning_trials.csv").write_text("mine\n", encoding="utf-8")
    _refused(capsys, _evaluate(world, out, "--force", "--tune", "--tune-models", "1"), "tuning_trials.csv")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "tuning_trials.csv"]


def test_evaluate_writes_exactly_the_entries_it_checks(world, tmp_path, capsys):
    out = tmp_path / "tuned"
    argv = _evaluate(world, out, "--tune", "--tune-models", "1", "--tune-blends", "1", "--policies", "engine,popular")
    assert cli(argv) == 0, capsys.readouterr().err
    written = {p.name for p in out.iterdir()} - {OUTPUT_MARKER}
    tuned = set(evaluation_entries(EvaluationSettings(tune=True)))
    assert written == tuned
    assert set(json.loads((out / OUTPUT_MARKER).read_text(encoding="utf-8"))["entries"]) == tuned
    assert tuned - set(evaluation_entries(EvaluationSettings())) == {"tuned_config.toml", "tuning_trials.csv"}


# ---- 5. --seed names the option -------------------------------------------------------------


@pytest.mark.parametrize("command", ["tune", "evaluate"])
def test_a_negative_seed_names_the_option(world, tmp_path, capsys, command):
    out = tmp_path / ("t.toml" if command == "tune" else "o")
    argv = (_tune if command == "tune" else _evaluate)(world, out, "--seed", "-1")
    line = _refused(capsys, argv, "--seed -1", "non-negative integer")
    assert line == "error: --seed -1: must be a non-negative integer (e.g. 0)"
    assert not out.exists()
