"""A priorities file that would apply nothing is never silent.

A misspelt table or key (``[[audiences]]``, ``regoin``) read with defaults raised
nothing and said nothing; it is now refused with one line naming the key, the file
and the valid names. A file whose every entry has expired by the push date is a
warning naming the file and the dates, and the manifest says ``applied = false``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import tomli_w

sys.path.insert(0, str(Path(__file__).parent))
import push_city

from recsys.cli import main as cli_main
from recsys.exceptions import ConfigError
from recsys.io import written_by_header
from recsys.push import run_nightly
from recsys.push.priorities import (
    Priorities,
    PriorityAudience,
    PriorityTopic,
    load_priorities,
    not_in_force,
    parse_priorities,
    priorities_document,
    run_report,
    summary_lines,
)
from recsys.push.report import summary_table
from recsys.taxonomy import load_taxonomy

TAX = load_taxonomy()
TOPIC = "modern_agriculture"
#: the push date's local midnight, when the push counts reach
MIDNIGHT = pd.Timestamp("2026-07-01T00:00:00+08:00")

GOOD = """version = 1
as_of = "2026-06-30T00:00:00+08:00"

[[audience]]
group = "farmer"
region = "qinglong"
weight = 1.0
expires = "{expires}"
why = "left behind"

[[audience.topics]]
topic = "modern_agriculture"
weight = 1.0
expires = "{expires}"
why = "rising demand"
"""


def _file(tmp_path: Path, text: str, name: str = "priorities.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "old, new, key, valid",
    [
        ("[[audience]]", "[[audiences]]", "audiences", "valid: version, as_of, audience"),
        ("as_of =", "asof =", "asof", "valid: version, as_of, audience"),
        ('region = "qinglong"', 'regoin = "qinglong"', "regoin", "valid: group, region, weight, expires, why, topics"),
        ("[[audience.topics]]", "[[audience.topic]]", "topic", "valid: group, region, weight, expires, why, topics"),
        ("weight = 1.0\nexpires", "wieght = 1.0\nexpires", "wieght", "valid: topic, weight, expires, why"),
    ],
)
def test_unknown_tables_and_keys_are_refused_by_name(tmp_path, old, new, key, valid):
    text = GOOD.format(expires="2026-07-14")
    # the last occurrence: for the topic's key, the one inside [[audience.topics]]
    head, _, tail = text.rpartition(old)
    path = _file(tmp_path, head + new + tail)
    with pytest.raises(ConfigError) as info:
        load_priorities(path, TAX)
    message = str(info.value)
    assert f"unknown key {key!r}" in message and str(path) in message and valid in message
    assert "\n" not in message


def test_cli_push_refuses_a_misspelt_table_in_one_line(tmp_path, tmp_path_factory, capsys):
    bundle = push_city.trained_city(tmp_path_factory) / "models" / "latest"
    path = _file(tmp_path, GOOD.format(expires="2026-07-14").replace("[[audience]]", "[[audiences]]"))
    code = cli_main(["push", "--model", str(bundle), "--date", str(push_city.DAY), "--out", str(tmp_path / "o"),
                     "--priorities", str(path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "unknown key 'audiences'" in err and str(path) in err and "audience" in err.split("valid:")[1]
    assert not (tmp_path / "o").exists()


def test_a_file_the_engine_writes_is_accepted(tmp_path):
    """What recsys demand writes (recsys.demand.job.write_outputs: header, note, priorities_document) reads back."""
    expires = pd.Timestamp("2026-07-14T00:00:00+08:00")
    prio = Priorities(
        (
            PriorityAudience("farmer", "qinglong", 1.0, expires, (PriorityTopic(TOPIC, 0.8, expires, "zh / en"),), "why"),
            PriorityAudience("youth", "", 0.75, expires, (PriorityTopic("robotics_youth", 0.5, expires),)),
        ),
        as_of="2026-06-30T00:00:00+08:00",
    )
    for name, written in (("full.toml", prio), ("empty.toml", Priorities((), as_of=prio.as_of))):
        note = "" if written.audiences else "# no priority audience this week: a push reading this file ranks as usual\n"
        path = _file(tmp_path, f"{written_by_header('demand')}\n{note}{tomli_w.dumps(priorities_document(written))}", name)
        back = load_priorities(path, TAX)
        assert [(a.label, a.weight, [t.topic for t in a.topics]) for a in back.audiences] == [
            (a.label, a.weight, [t.topic for t in a.topics]) for a in written.audiences
        ]
        # and the document the push hands its chunks
        assert parse_priorities(priorities_document(back), TAX, "priorities").audiences == back.audiences


def test_not_in_force_names_the_file_and_the_dates(tmp_path):
    expired = load_priorities(_file(tmp_path, GOOD.format(expires="2026-06-20"), "old.toml"), TAX)
    text = not_in_force(expired, MIDNIGHT)
    assert text is not None and "\n" not in text
    assert str(tmp_path / "old.toml") in text and "2026-07-01" in text and "2026-06-20" in text and "2026-06-30" in text
    # in force at midnight: no warning; a file naming no audience (a quiet week) is no warning either
    assert not_in_force(load_priorities(_file(tmp_path, GOOD.format(expires="2026-07-14"), "new.toml"), TAX), MIDNIGHT) is None
    assert not_in_force(parse_priorities({"version": 1, "audience": []}, TAX), MIDNIGHT) is None
    # an audience whose every topic expired earlier than the audience: the topics' date is the one named
    doc = {"version": 1, "audience": [{"group": "farmer", "weight": 1.0, "expires": "2026-12-31",
                                       "topics": [{"topic": TOPIC, "weight": 1.0, "expires": "2026-06-25"}]}]}
    text = not_in_force(parse_priorities(doc, TAX, "x.toml"), MIDNIGHT)
    assert text is not None and "2026-06-25" in text and "2026-12-31" not in text


def test_the_manifest_block_says_nothing_applied():
    prio = parse_priorities({"version": 1, "audience": [{"group": "farmer", "expires": "2026-06-20",
                                                          "topics": [{"topic": TOPIC, "weight": 1.0}]}]}, TAX, "p.toml")
    block = run_report(prio, [{"priorities": {}}], MIDNIGHT)
    assert block["applied"] is False and block["audiences"] == {} and "p.toml" in block["warning"]
    assert summary_lines(block) == [f"  warning: {block['warning']}"]
    # a quiet week's file: not applied, no warning, and the summary says so rather than print an empty table
    empty = run_report(parse_priorities({"version": 1}, TAX, "q.toml"), [{"priorities": {}}])
    assert empty["applied"] is False and "warning" not in empty
    assert "no priority audience in force" in summary_lines(empty)[0]


def test_an_expired_file_warns_on_stderr_and_the_manifest_says_so(tmp_path, tmp_path_factory, capsys):
    bundle = push_city.trained_city(tmp_path_factory) / "models" / "latest"
    path = _file(tmp_path, GOOD.format(expires="2026-06-20"), "expired.toml")
    code = cli_main(["push", "--model", str(bundle), "--date", str(push_city.DAY), "--out", str(tmp_path / "o"),
                     "--priorities", str(path)])
    err = capsys.readouterr().err
    assert code == 0, err
    warning = next(line for line in err.splitlines() if "warning:" in line and "priorities" in line)
    # the file and the last expiry (the push date is named when the caller passes it: run_report(..., now))
    assert str(path) in warning and "nothing applied" in warning and "2026-06-20" in warning
    # no reach table a reader could take for priorities applied
    assert "reached with a priority topic" not in err
    # --quiet (no summary) still warns, before the work, naming the push date
    code = cli_main(["push", "--model", str(bundle), "--date", str(push_city.DAY), "--out", str(tmp_path / "q"),
                     "--priorities", str(path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 0 and "nothing applied" in err and str(push_city.DAY) in err, err
    # the manifest, through the library call
    report = run_nightly(bundle, push_city.DAY, tmp_path / "lib", priorities=path, stream=None, warn_stream=None)
    assert report["priorities"]["applied"] is False and str(path) in report["priorities"]["warning"]
    assert "warning: priorities" in summary_table(report)
    # a file in force: applied, no warning
    fresh = _file(tmp_path, GOOD.format(expires="2026-07-14"), "fresh.toml")
    report = run_nightly(bundle, push_city.DAY, tmp_path / "fresh", priorities=fresh, stream=None, warn_stream=None)
    assert report["priorities"]["applied"] is True and "warning" not in report["priorities"]
