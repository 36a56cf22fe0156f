"""Fuzz table: bad input to every command is a one-line error, exit 2, and harms nothing (issue 10).

Each case builds one bad input (a file, a folder, a flag) in its own temporary
folder and runs the real command line in-process (``recsys.cli.main``). It
asserts exit code 2, stderr is one ``error: ...`` line naming the culprit (a
file, field, value or option), no traceback, and that every file already on
disk (the shared world: data, models, a push output; and the case's own
folder) is byte for byte what it was before. Training progress lines
(``[i/n] step ...`` and their indented timings) are the only other stderr lines
allowed, since train reports progress there by design.

A property test at the end runs valid commands, then a series of bad ones
against the same outputs, and checks the earlier outputs are unchanged.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from push_city import SMALL_TOML

from recsys.cli import main

ROOT = Path(__file__).resolve().parents[1]

#: a small, fast engine config (no learned ranker: the fuzz table tests refusals, not quality)
SMALL = SMALL_TOML + '[ranking]\nranker = "linear"\n'

_PROGRESS = re.compile(r"^(\[\d+/\d+\] |      )")


def tree(folder: Path) -> dict[str, str]:
    """Every file's sha256 and every link's target under ``folder`` (what must not change)."""
    out: dict[str, str] = {}
    for p in sorted(Path(folder).rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@dataclass
class World:
    """The shared, read-only fixtures of the module."""

    base: Path
    city: Path  # a valid parquet data set
    config: Path  # SMALL as a file
    models: Path  # a trained models folder (latest -> one bundle)
    pushes: Path  # a valid push output of 2026-06-30


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    base = tmp_path_factory.mktemp("fuzz")
    city, config, models, pushes = base / "city", base / "small.toml", base / "models", base / "pushes"
    assert main(["generate", "--users", "200", "--items", "100", "--days", "20", "--seed", "1",
                 "--out", str(city)]) == 0
    config.write_text(SMALL)
    assert main(["train", "--data", str(city), "--out", str(models), "--config", str(config)]) == 0
    assert main(["push", "--model", str(models / "latest"), "--date", "2026-06-30", "--out", str(pushes),
                 "--workers", "1", "--quiet"]) == 0
    return World(base, city, config, models, pushes)


# ---------------------------------------------------------------- builders of bad input


def _table(w: World, name: str) -> pd.DataFrame:
    return pd.read_parquet(w.city / f"{name}.parquet")


def _data_with(w: World, tmp: Path, **tables: object) -> Path:
    """A copy of the city with some tables replaced: a DataFrame, bytes (file content) or a callable."""
    data = tmp / "data"
    data.mkdir()
    for name in ("users", "items", "events"):
        if name in tables:
            value = tables[name]
            if isinstance(value, pd.DataFrame):
                value.to_parquet(data / f"{name}.parquet", index=False)
            elif isinstance(value, tuple):  # (file name, bytes)
                (data / value[0]).write_bytes(value[1])
            else:
                raise TypeError(value)
        else:
            shutil.copy(w.city / f"{name}.parquet", data / f"{name}.parquet")
    shutil.copy(w.city / "manifest.json", data / "manifest.json")
    return data


def _events_csv(w: World, n: int | None = None, **kwargs: object) -> str:
    events = _table(w, "events")
    if n is not None:
        events = events.head(n)
    events = events.assign(timestamp=events["timestamp"].map(lambda t: t.isoformat()))
    return events.to_csv(index=False, **kwargs)


def _copy_models(w: World, tmp: Path) -> Path:
    dst = tmp / "models"
    shutil.copytree(w.models, dst, symlinks=True)
    return dst


def _bundle(models: Path) -> Path:
    return models / os.readlink(models / "latest")


def validate_with(**tables: object) -> Callable[[World, Path], list[str]]:
    def build(w: World, tmp: Path) -> list[str]:
        return ["validate", "--data", str(_data_with(w, tmp, **tables)), "--out", str(tmp / "clean")]
    return build


def train_with(**tables: object) -> Callable[[World, Path], list[str]]:
    def build(w: World, tmp: Path) -> list[str]:
        data = _data_with(w, tmp, **tables)
        return ["train", "--data", str(data), "--out", str(tmp / "newmodels"), "--config", str(w.config)]
    return build


def _file(tmp: Path, name: str, content: str | bytes) -> Path:
    path = tmp / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def config_case(command: str, toml: str) -> Callable[[World, Path], list[str]]:
    """``command`` with ``--config bad.toml``."""
    def build(w: World, tmp: Path) -> list[str]:
        bad = _file(tmp, "bad.toml", toml)
        if command == "train":
            return ["train", "--data", str(w.city), "--out", str(tmp / "m"), "--config", str(bad)]
        if command == "push":
            return ["push", "--model", str(w.models / "latest"), "--date", "2026-06-30",
                    "--out", str(tmp / "p"), "--config", str(bad)]
        if command == "campaign":
            return [*(a.format(latest=w.models / "latest", tmp=tmp) for a in CAMPAIGN), "--config", str(bad)]
        if command == "evaluate":
            return ["evaluate", "--data", str(w.city), "--split-quantile", "0.8", "--out", str(tmp / "e"), "--config", str(bad)]
        return ["tune", "--data", str(w.city), "--out", str(tmp / "t.toml"), "--config", str(bad)]
    return build


def argv(*args: str) -> Callable[[World, Path], list[str]]:
    """A plain argv; ``{city}``, ``{models}``, ``{latest}``, ``{pushes}``, ``{tmp}`` are filled in."""
    def build(w: World, tmp: Path) -> list[str]:
        fill = {"city": w.city, "models": w.models, "latest": w.models / "latest",
                "pushes": w.pushes, "tmp": tmp, "config": w.config}
        return [a.format(**fill) for a in args]
    return build


def with_models(make: Callable[[Path, Path], list[str]]) -> Callable[[World, Path], list[str]]:
    """A copy of the models folder, damaged by ``make(models, tmp)`` which returns the argv."""
    def build(w: World, tmp: Path) -> list[str]:
        return make(_copy_models(w, tmp), tmp)
    return build


def in_cwd_with_file(*args: str) -> Callable[[World, Path], list[str]]:
    """Run from ``tmp/here`` (which holds a foreign file) with ``--out .``."""
    def build(w: World, tmp: Path) -> list[str]:
        here = tmp / "here"
        here.mkdir()
        (here / "notes.txt").write_text("mine")
        os.chdir(here)
        return [a.format(city=w.city, config=w.config, latest=w.models / "latest") for a in args]
    return build


def out_is_file(*args: str) -> Callable[[World, Path], list[str]]:
    def build(w: World, tmp: Path) -> list[str]:
        _file(tmp, "afile", "mine")
        return [a.format(city=w.city, config=w.config, latest=w.models / "latest", file=tmp / "afile")
                for a in args]
    return build


def out_foreign(*args: str) -> Callable[[World, Path], list[str]]:
    def build(w: World, tmp: Path) -> list[str]:
        folder = tmp / "foreign"
        folder.mkdir()
        (folder / "notes.txt").write_text("mine")
        return [a.format(city=w.city, config=w.config, latest=w.models / "latest", dir=folder) for a in args]
    return build


# damaged data tables


def _zero_rows(w: World, name: str) -> pd.DataFrame:
    return _table(w, name).head(0)


def _parquet_bytes(w: World, name: str) -> bytes:
    return (w.city / f"{name}.parquet").read_bytes()


def _truncated(w: World) -> tuple[str, bytes]:
    raw = _parquet_bytes(w, "events")
    return ("events.parquet", raw[: len(raw) // 2])


def _corrupted(w: World) -> tuple[str, bytes]:
    raw = bytearray(_parquet_bytes(w, "events"))
    mid = len(raw) // 3
    raw[mid: mid + 4096] = bytes((i * 37 + 11) % 256 for i in range(4096))
    return ("events.parquet", bytes(raw[: len(_parquet_bytes(w, "events"))]))


def _events(w: World, **assign: object) -> pd.DataFrame:
    events = _table(w, "events")
    return events.assign(**assign)


def _lazy(fn: Callable[[World], object]) -> Callable[[World], object]:
    return fn


def data_case(command: str, **makers: Callable[[World], object]) -> Callable[[World, Path], list[str]]:
    """``validate`` or ``train`` on the city with tables made by ``makers`` (called with the world)."""
    def build(w: World, tmp: Path) -> list[str]:
        tables = {name: make(w) for name, make in makers.items()}
        inner = validate_with if command == "validate" else train_with
        return inner(**tables)(w, tmp)
    return build


def _ts(value: str) -> Callable[[World], pd.DataFrame]:
    return lambda w: _events(w, timestamp=pd.Timestamp(value))


def _csv_events(text: Callable[[World], str | bytes]) -> Callable[[World], tuple[str, bytes]]:
    def make(w: World) -> tuple[str, bytes]:
        value = text(w)
        return ("events.csv", value if isinstance(value, bytes) else value.encode())
    return make


def _data_without_events(w: World, tmp: Path) -> Path:
    data = tmp / "data"
    data.mkdir()
    for name in ("users", "items"):
        shutil.copy(w.city / f"{name}.parquet", data / f"{name}.parquet")
    return data


def _damage_file(name: str, how: str) -> Callable[[Path, Path], list[str]]:
    def make(models: Path, tmp: Path) -> list[str]:
        path = _bundle(models) / name
        if how == "truncate":
            raw = path.read_bytes()
            path.write_bytes(raw[: len(raw) // 2])
        elif how == "garbage":
            path.write_bytes(b"\x00not what you think\xff" * 10)
        elif how == "delete":
            path.unlink()
        elif how == "swap":  # a .npy of the wrong shape
            np.save(path, np.zeros((3, 5), dtype=np.float32))
        return ["recommend", "u000", "--model", str(models / "latest")]
    return make


def _dangling_latest(command: str) -> Callable[[Path, Path], list[str]]:
    def make(models: Path, tmp: Path) -> list[str]:
        (models / "latest").unlink()
        (models / "latest").symlink_to("20000101T000000Z")
        if command == "push":
            return ["push", "--model", str(models / "latest"), "--date", "2026-06-30", "--out", str(tmp / "p")]
        if command == "profile":
            return ["profile", "u000", "--model", str(models / "latest")]
        return ["recommend", "u000", "--model", str(models / "latest")]
    return make


def _latest_loop(models: Path, tmp: Path) -> list[str]:
    (models / "latest").unlink()
    (models / "latest").symlink_to("latest")
    return ["profile", "u000", "--model", str(models / "latest")]


def _bad_catalog(kind: str) -> Callable[[World, Path], list[str]]:
    def build(w: World, tmp: Path) -> list[str]:
        items = _table(w, "items")
        path = tmp / "catalog.parquet"
        if kind == "zero":
            items.head(0).to_parquet(path, index=False)
        elif kind == "topics":
            items.assign(topics=[["no_such_topic"]] * len(items)).to_parquet(path, index=False)
        elif kind == "truncated":
            raw = (w.city / "items.parquet").read_bytes()
            path.write_bytes(raw[: len(raw) // 2])
        return ["push", "--model", str(w.models / "latest"), "--date", "2026-06-30", "--out", str(tmp / "p"),
                "--catalog", str(path)]
    return build


def _bad_users(kind: str) -> Callable[[World, Path], list[str]]:
    def build(w: World, tmp: Path) -> list[str]:
        if kind == "empty":
            path = _file(tmp, "users.csv", b"")
        else:  # header only
            path = _file(tmp, "users.csv", "user_id,group,region,channels,push_opt_out\n")
        return ["push", "--model", str(w.models / "latest"), "--date", "2026-06-30", "--out", str(tmp / "p"),
                "--users", str(path)]
    return build


def _history_is_file(w: World, tmp: Path) -> list[str]:
    _file(tmp, "hist", "mine")
    return ["push", "--model", str(w.models / "latest"), "--date", "2026-06-30", "--out", str(tmp / "p"),
            "--history", str(tmp / "hist")]


def _tune_out_foreign(w: World, tmp: Path) -> list[str]:
    _file(tmp, "mine.toml", "[collaborative]\nfactors = 8\n")
    return ["tune", "--data", str(w.city), "--out", str(tmp / "mine.toml")]


def _rollback(version: str) -> Callable[[Path, Path], list[str]]:
    def make(models: Path, tmp: Path) -> list[str]:
        elsewhere = tmp / "elsewhere"
        shutil.copytree(_bundle(models), elsewhere / "V1")
        return ["models", "rollback", version, "--dir", str(models)]
    return make


LATEST = "{latest}"
PUSH = ["push", "--model", LATEST, "--date", "2026-06-30", "--out", "{tmp}/p"]
CAMPAIGN = ["campaign", "--name", "flood", "--item", "i001", "--budget", "10", "--date", "2026-06-30",
            "--model", LATEST, "--out", "{tmp}/p"]


def _campaign(**change: str) -> list[str]:
    args = list(CAMPAIGN)
    for flag, value in change.items():
        flag = "--" + flag.replace("_", "-")
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return args


# id, builder, names the error line must contain (case-insensitive), marks
CASES = [
    # ---- generate
    pytest.param(argv("generate", "--users", "0", "--items", "10", "--out", "{tmp}/g"), ["users", "0"], id="generate-users-0"),
    pytest.param(argv("generate", "--users", "-1", "--items", "10", "--out", "{tmp}/g"), ["users", "-1"], id="generate-users-negative"),
    pytest.param(argv("generate", "--users", "10", "--items", "0", "--out", "{tmp}/g"), ["items", "0"], id="generate-items-0"),
    pytest.param(argv("generate", "--users", "10", "--items", "10", "--days", "0", "--out", "{tmp}/g"), ["days", "0"], id="generate-days-0"),
    pytest.param(argv("generate", "--users", "1000000000000", "--items", "10", "--out", "{tmp}/g"), ["users"], id="generate-users-huge"),
    pytest.param(argv("generate", "--users", "10", "--items", "10", "--end", "9999-12-31", "--out", "{tmp}/g"), ["9999"], id="generate-end-9999"),
    pytest.param(argv("generate", "--users", "10", "--items", "10", "--end", "yesterday", "--out", "{tmp}/g"), ["yesterday"], id="generate-end-garbage"),
    pytest.param(in_cwd_with_file("generate", "--users", "10", "--items", "10", "--out", "."), ["."], id="generate-out-dot"),
    pytest.param(out_is_file("generate", "--users", "10", "--items", "10", "--out", "{file}"), ["afile"], id="generate-out-file"),
    pytest.param(out_foreign("generate", "--users", "10", "--items", "10", "--out", "{dir}"), ["foreign"], id="generate-out-foreign"),
    # ---- validate: the data
    pytest.param(argv("validate", "--data", "{tmp}/nope"), ["nope"], id="validate-data-missing"),
    pytest.param(lambda w, t: ["validate", "--data", str(_data_without_events(w, t))], ["events"], id="validate-no-events-table"),
    pytest.param(data_case("validate", events=lambda w: ("events.csv", b"")), ["events.csv"], id="validate-events-empty-file"),
    pytest.param(data_case("validate", events=_csv_events(lambda w: _events_csv(w, 0))), ["events"], id="validate-events-header-only"),
    pytest.param(data_case("validate", events=lambda w: _zero_rows(w, "events")), ["events"], id="validate-events-zero-rows"),
    pytest.param(data_case("validate", users=lambda w: _zero_rows(w, "users")), ["users"], id="validate-users-zero-rows"),
    pytest.param(data_case("validate", events=_truncated), ["events.parquet"], id="validate-parquet-truncated"),
    pytest.param(data_case("validate", events=_corrupted), ["events", "impossible timestamp"], id="validate-parquet-corrupted"),
    pytest.param(data_case("validate", events=lambda w: ("events.parquet", b"PAR1" + b"\x00" * 100 + b"PAR1")), ["events.parquet"], id="validate-parquet-garbage"),
    pytest.param(data_case("validate", events=lambda w: _events(w, user_id=None)), ["events"], id="validate-events-nan-user-ids"),
    pytest.param(data_case("validate", items=lambda w: _table(w, "items").assign(item_id=None)), ["items"], id="validate-items-nan-ids"),
    pytest.param(data_case("validate", users=lambda w: _table(w, "users").assign(user_id="u000")), ["users"], id="validate-users-duplicate-ids"),
    pytest.param(data_case("validate", events=lambda w: pd.concat([_table(w, "events")] * 2)), ["events"], id="validate-events-duplicate-ids"),
    pytest.param(data_case("validate", events=_ts("9999-12-31T00:00:00+00:00")), ["events"], id="validate-events-9999"),
    pytest.param(data_case("validate", events=_ts("1970-01-01T00:00:00+00:00")), ["events"], id="validate-events-1970"),
    pytest.param(data_case("validate", events=lambda w: _events(w, dwell_seconds=-1e300)), ["events"], id="validate-events-negative-dwell"),
    pytest.param(data_case("validate", events=lambda w: _events(w, user_id="../u000")), ["events"], id="validate-events-user-dotdot"),
    pytest.param(data_case("validate", users=lambda w: _table(w, "users").assign(group="农民😀")), ["users"], id="validate-users-group-chinese-emoji"),
    pytest.param(data_case("validate", events=_csv_events(lambda w: _events_csv(w, 200).encode("gbk") + "中文".encode("gbk"))), ["events.csv"], id="validate-events-gbk"),
    pytest.param(data_case("validate", events=_csv_events(lambda w: _events_csv(w, 200, sep=";"))), ["events.csv", "delimiter"], id="validate-events-semicolon"),
    pytest.param(data_case("validate", events=_csv_events(lambda w: "event_id,user_id\ne1,u000,i000,click\n")), ["events.csv"], id="validate-events-ragged-csv"),
    # ---- validate: the options
    pytest.param(argv("validate", "--data", "{city}", "--max-rejected", "-1", "--out", "{tmp}/c"), ["--max-rejected"], id="validate-max-rejected-negative"),
    pytest.param(argv("validate", "--data", "{city}", "--max-rejected", "2", "--out", "{tmp}/c"), ["--max-rejected"], id="validate-max-rejected-2"),
    pytest.param(argv("validate", "--data", "{city}", "--assume-tz", "Mars/Olympus", "--out", "{tmp}/c"), ["Mars/Olympus"], id="validate-assume-tz-unknown"),
    pytest.param(argv("validate", "--data", "{city}", "--encoding", "no-such-codec", "--out", "{tmp}/c"), ["no-such-codec"], id="validate-encoding-unknown"),
    pytest.param(argv("validate", "--data", "{city}", "--delimiter", ";;", "--out", "{tmp}/c"), ["delimiter", ";;"], id="validate-delimiter-two-chars"),
    pytest.param(argv("validate", "--data", "{city}", "--taxonomy", "{tmp}/nope.toml", "--out", "{tmp}/c"), ["nope.toml"], id="validate-taxonomy-missing"),
    pytest.param(argv("validate", "--data", "{city}", "--end", "9999-12-31", "--out", "{tmp}/c"), ["9999"], id="validate-end-9999"),
    pytest.param(in_cwd_with_file("validate", "--data", "{city}", "--out", "."), ["."], id="validate-out-dot"),
    pytest.param(out_is_file("validate", "--data", "{city}", "--out", "{file}"), ["afile"], id="validate-out-file"),
    pytest.param(out_foreign("validate", "--data", "{city}", "--out", "{dir}"), ["foreign"], id="validate-out-foreign"),
    # ---- train
    pytest.param(data_case("train", events=lambda w: _zero_rows(w, "events")), ["events"], id="train-events-zero-rows"),
    pytest.param(data_case("train", events=_ts("1970-01-01T00:00:00+00:00")), ["events"], id="train-events-1970"),
    pytest.param(data_case("train", events=_corrupted), ["events", "impossible timestamp"], id="train-parquet-corrupted"),
    pytest.param(data_case("train", events=lambda w: _events(w, item_id="i/../../etc")), ["events"], id="train-events-item-slash"),
    pytest.param(argv("train", "--data", "{city}", "--out", "{tmp}/m", "--config", "{config}", "--as-of", "1970-01-01"), ["1970"], id="train-as-of-1970"),
    pytest.param(argv("train", "--data", "{city}", "--out", "{tmp}/m", "--config", "{config}", "--as-of", "someday"), ["someday"], id="train-as-of-garbage"),
    pytest.param(argv("train", "--data", "{city}", "--out", "{tmp}/m", "--config", "{tmp}/nope.toml"), ["nope.toml"], id="train-config-missing"),
    pytest.param(config_case("train", "[collaborative]\nfactorz = 8\n"), ["factorz"], id="train-config-bad-key"),
    pytest.param(config_case("train", "[nonsense]\nx = 1\n"), ["nonsense"], id="train-config-bad-section"),
    pytest.param(config_case("train", "[collaborative]\nfactors = \"eight\"\n"), ["factors"], id="train-config-bad-type"),
    pytest.param(config_case("train", "[collaborative]\nfactors = -1\n"), ["factors"], id="train-config-negative"),
    pytest.param(config_case("train", "[collaborative]\niterations = 1000000000000000\n"), ["iterations"], id="train-config-huge"),
    pytest.param(config_case("train", "[bundle]\nkeep = 0\n"), ["keep"], id="train-config-keep-0"),
    pytest.param(config_case("train", "[collaborative\nfactors = 8\n"), ["bad.toml"], id="train-config-not-toml"),
    pytest.param(config_case("train", "[content]\nstopwords = \"/dev/zero\"\n"), ["stopwords"], id="train-config-stopwords-dev-zero"),
    pytest.param(config_case("train", "[collaborative]\nfactors = 8\n".encode("utf-8") + "# 中文".encode("gbk")), ["bad.toml"], id="train-config-gbk"),
    pytest.param(in_cwd_with_file("train", "--data", "{city}", "--config", "{config}", "--out", "."), ["."], id="train-out-dot"),
    pytest.param(out_is_file("train", "--data", "{city}", "--config", "{config}", "--out", "{file}"), ["afile"], id="train-out-file"),
    pytest.param(out_foreign("train", "--data", "{city}", "--config", "{config}", "--out", "{dir}"), ["foreign"], id="train-out-foreign"),
    pytest.param(argv("train", "--data", "{city}", "--out", "{tmp}/m", "--config", "{config}", "--warm-start", "{tmp}/nope"), ["nope"], id="train-warm-start-missing"),
    # ---- models
    pytest.param(argv("models", "list", "--dir", "{tmp}/nope"), ["nope"], id="models-list-missing"),
    pytest.param(with_models(_rollback("../elsewhere/V1")), ["../elsewhere/V1"], id="models-rollback-dotdot"),
    pytest.param(with_models(_rollback("20000101T000000Z")), ["20000101T000000Z"], id="models-rollback-unknown"),
    pytest.param(with_models(_rollback("/etc")), ["/etc"], id="models-rollback-absolute"),
    # ---- profile
    pytest.param(argv("profile", "用户😀", "--model", LATEST), ["用户😀"], id="profile-user-chinese-emoji"),
    pytest.param(argv("profile", "../u000", "--model", LATEST), ["../u000"], id="profile-user-dotdot"),
    pytest.param(argv("profile", "u000", "--model", LATEST, "--top", "0"), ["--top"], id="profile-top-0"),
    pytest.param(argv("profile", "u000", "--model", LATEST, "--top", "-1"), ["--top"], id="profile-top-negative"),
    pytest.param(argv("profile", "u000", "--model", "{tmp}/nope"), ["nope"], id="profile-model-missing"),
    pytest.param(with_models(_dangling_latest("profile")), ["latest"], id="profile-latest-dangling"),
    pytest.param(with_models(_latest_loop), ["latest"], id="profile-latest-loop"),
    # ---- recommend
    pytest.param(argv("recommend", "u000", "--model", LATEST, "--k", "0"), ["--k", "0"], id="recommend-k-0"),
    pytest.param(argv("recommend", "u000", "--model", LATEST, "--k", "-1"), ["--k", "-1"], id="recommend-k-negative"),
    pytest.param(argv("recommend", "u000", "--model", LATEST, "--k", "100000"), ["--k", "100000"], id="recommend-k-huge"),
    pytest.param(argv("recommend", "u000", "--model", LATEST, "--k", "abc"), ["--k", "abc"], id="recommend-k-not-int"),
    pytest.param(argv("recommend", "u000", "--model", LATEST, "--now", "9999-12-31T00:00:00+00:00"), ["9999"], id="recommend-now-9999"),
    pytest.param(argv("recommend", "u000", "--model", LATEST, "--now", "not-a-time"), ["not-a-time"], id="recommend-now-garbage"),
    pytest.param(argv("recommend", "u000", "--model", LATEST, "--channel", "pigeon"), ["pigeon"], id="recommend-channel-unknown"),
    pytest.param(argv("recommend", "u000", "--model", LATEST, "--topic", "astrology"), ["astrology"], id="recommend-topic-unknown"),
    pytest.param(argv("recommend", "u/../000", "--model", LATEST), ["u/../000"], id="recommend-user-slash-dotdot"),
    pytest.param(argv("recommend", "u000", "--model", LATEST, "--catalog", "{tmp}/nope.parquet"), ["nope.parquet"], id="recommend-catalog-missing"),
    pytest.param(with_models(_damage_file("user_factors.npy", "truncate")), ["user_factors.npy"], id="recommend-bundle-npy-truncated"),
    pytest.param(with_models(_damage_file("item_factors.npy", "swap")), ["item_factors.npy"], id="recommend-bundle-npy-wrong-shape"),
    pytest.param(with_models(_damage_file("manifest.json", "garbage")), ["manifest.json"], id="recommend-bundle-manifest-garbage"),
    pytest.param(with_models(_damage_file("items.parquet", "truncate")), ["items.parquet"], id="recommend-bundle-items-truncated"),
    pytest.param(with_models(_damage_file("taxonomy.toml", "delete")), ["taxonomy.toml"], id="recommend-bundle-taxonomy-missing"),
    pytest.param(with_models(_dangling_latest("recommend")), ["latest"], id="recommend-latest-dangling"),
    # ---- push
    pytest.param(argv(*PUSH, "--k", "0"), ["--k", "0"], id="push-k-0"),
    pytest.param(argv(*PUSH, "--k", "-1"), ["--k", "-1"], id="push-k-negative"),
    pytest.param(argv(*PUSH, "--k", "100000"), ["--k", "100000"], id="push-k-huge"),
    pytest.param(argv(*PUSH, "--workers", "0"), ["workers", "0"], id="push-workers-0"),
    pytest.param(argv("push", "--model", LATEST, "--date", "9999-12-31", "--out", "{tmp}/p"), ["9999-12-31"], id="push-date-9999"),
    pytest.param(argv("push", "--model", LATEST, "--date", "1970-01-01", "--out", "{tmp}/p"), ["1970-01-01"], id="push-date-1970"),
    pytest.param(argv("push", "--model", LATEST, "--date", "2026-02-30", "--out", "{tmp}/p"), ["2026-02-30"], id="push-date-invalid"),
    pytest.param(argv(*PUSH, "--group", "wizard"), ["wizard"], id="push-group-unknown"),
    pytest.param(argv(*PUSH, "--kind", "../x"), ["../x"], id="push-kind-dotdot"),
    pytest.param(argv(*PUSH, "--catalog", "{tmp}/nope.parquet"), ["nope.parquet"], id="push-catalog-missing"),
    pytest.param(_bad_catalog("zero"), ["catalog.parquet"], id="push-catalog-zero-rows"),
    pytest.param(_bad_catalog("topics"), ["catalog.parquet", "unknown code"], id="push-catalog-unknown-topics"),
    pytest.param(_bad_catalog("truncated"), ["catalog.parquet"], id="push-catalog-truncated"),
    pytest.param(_bad_users("empty"), ["users.csv"], id="push-users-empty-file"),
    pytest.param(_bad_users("header"), ["users.csv"], id="push-users-header-only"),
    pytest.param(config_case("push", "[collaborative]\nfactors = 8\n"), ["collaborative"], id="push-config-unused-section"),
    pytest.param(config_case("push", "[push]\nk = -3\n"), ["k"], id="push-config-k-negative"),
    pytest.param(config_case("push", "[ranking]\nmax_k = 5\n"), ["ranking", "push does not use"], id="push-config-ranking-section"),
    pytest.param(config_case("campaign", "[index]\nthreads = 2\n"), ["index", "campaign does not use"], id="campaign-config-unused-section"),
    pytest.param(argv(*_campaign(item="i/../999", out="{tmp}/new/deeper")), ["i/../999"], id="campaign-item-unknown-deep-out"),
    pytest.param(out_is_file("push", "--model", "{latest}", "--date", "2026-06-30", "--out", "{file}"), ["afile"], id="push-out-file"),
    pytest.param(_history_is_file, ["hist"], id="push-history-file"),
    pytest.param(with_models(_dangling_latest("push")), ["latest"], id="push-latest-dangling"),
    # ---- campaign
    pytest.param(argv(*_campaign(name="../x")), ["../x"], id="campaign-name-dotdot"),
    pytest.param(argv(*_campaign(name="洪水😀")), ["洪水😀"], id="campaign-name-chinese-emoji"),
    pytest.param(argv(*_campaign(budget="0")), ["budget", "0"], id="campaign-budget-0"),
    pytest.param(argv(*_campaign(budget="-1")), ["budget", "-1"], id="campaign-budget-negative"),
    pytest.param(argv(*_campaign(item="i/../999")), ["i/../999"], id="campaign-item-unknown"),
    pytest.param(argv(*_campaign(date="9999-12-31")), ["9999-12-31"], id="campaign-date-9999"),
    pytest.param(argv(*_campaign(k="0")), ["--k"], id="campaign-k-0"),
    pytest.param(argv("campaign", "--name", "flood", "--topic", "astrology", "--budget", "10", "--date", "2026-06-30",
                      "--model", LATEST, "--out", "{tmp}/p"), ["astrology"], id="campaign-topic-unknown"),
    # ---- evaluate
    pytest.param(argv("evaluate", "--data", "{tmp}", "--split-quantile", "0.8", "--out", "{tmp}/e"), ["no users table"], id="evaluate-data-empty-folder"),
    pytest.param(argv("evaluate", "--data", "{city}", "--split-quantile", "1.5", "--out", "{tmp}/e"), ["quantile", "1.5"], id="evaluate-split-quantile-1.5"),
    pytest.param(argv("evaluate", "--data", "{city}", "--split-time", "9999-12-31", "--out", "{tmp}/e"), ["9999"], id="evaluate-split-time-9999"),
    pytest.param(argv("evaluate", "--data", "{city}", "--split-time", "2030-01-01", "--out", "{tmp}/e"), ["--split-time", "2030-01-01", "after the last event"], id="evaluate-split-time-after-data"),
    pytest.param(argv("evaluate", "--data", "{city}", "--split-time", "2000-01-01", "--out", "{tmp}/e"), ["--split-time", "2000-01-01", "first event"], id="evaluate-split-time-before-data"),
    pytest.param(argv("evaluate", "--data", "{city}", "--split-quantile", "0.8", "--k", "0", "--out", "{tmp}/e"), ["k must", "[0]"], id="evaluate-k-0"),
    pytest.param(argv("evaluate", "--data", "{city}", "--split-quantile", "0.8", "--k", "5,x", "--out", "{tmp}/e"), ["--k"], id="evaluate-k-garbage"),
    pytest.param(argv("evaluate", "--data", "{city}", "--split-quantile", "0.8", "--bootstrap", "-1", "--out", "{tmp}/e"), ["--bootstrap"], id="evaluate-bootstrap-negative"),
    pytest.param(argv("evaluate", "--data", "{city}", "--leave-last-n", "-1", "--out", "{tmp}/e"), ["leave-last-n", "-1"], id="evaluate-leave-last-n-negative"),
    pytest.param(argv("evaluate", "--data", "{city}", "--split-quantile", "0.8", "--policies", "nope_policy", "--out", "{tmp}/e"), ["nope_policy"], id="evaluate-policy-unknown"),
    pytest.param(config_case("evaluate", "[collaborative]\nfactors = 0\n"), ["factors"], id="evaluate-config-range"),
    pytest.param(in_cwd_with_file("evaluate", "--data", "{city}", "--split-quantile", "0.8", "--out", "."), ["."], id="evaluate-out-dot"),
    pytest.param(out_is_file("evaluate", "--data", "{city}", "--split-quantile", "0.8", "--out", "{file}"), ["afile"], id="evaluate-out-file"),
    pytest.param(out_foreign("evaluate", "--data", "{city}", "--split-quantile", "0.8", "--out", "{dir}"), ["foreign"], id="evaluate-out-foreign"),
    # ---- tune
    pytest.param(argv("tune", "--data", "{city}", "--validation-fraction", "0", "--out", "{tmp}/t.toml"), ["validation_fraction", "0"], id="tune-validation-fraction-0"),
    pytest.param(argv("tune", "--data", "{city}", "--validation-fraction", "1.5", "--out", "{tmp}/t.toml"), ["validation_fraction", "1.5"], id="tune-validation-fraction-1.5"),
    pytest.param(argv("tune", "--data", "{city}", "--k", "0", "--out", "{tmp}/t.toml"), ["setting k", "0"], id="tune-k-0"),
    pytest.param(argv("tune", "--data", "{city}", "--models", "0", "--out", "{tmp}/t.toml"), ["n_models", "0"], id="tune-models-0"),
    pytest.param(argv("tune", "--data", "{city}", "--budget-s", "-1", "--out", "{tmp}/t.toml"), ["budget", "-1"], id="tune-budget-negative"),
    pytest.param(argv("tune", "--data", "{city}", "--until", "1970-01-01", "--out", "{tmp}/t.toml"), ["1970"], id="tune-until-1970"),
    pytest.param(argv("tune", "--data", "{tmp}", "--out", "{tmp}/t.toml"), ["no users table"], id="tune-data-empty-folder"),
    pytest.param(_tune_out_foreign, ["mine.toml"], id="tune-out-foreign-file"),
    pytest.param(config_case("tune", "[collaborative]\nfactors = \"x\"\n"), ["factors"], id="tune-config-bad-type"),
]


def error_line(err: str) -> list[str]:
    """The stderr lines other than training progress."""
    return [line for line in err.splitlines() if line.strip() and not _PROGRESS.match(line)]


@pytest.mark.parametrize(("build", "names"), CASES)
def test_bad_input_is_one_line_exit_2_and_harms_nothing(world, tmp_path, capsys, monkeypatch, build, names):
    monkeypatch.chdir(tmp_path)
    case = tmp_path / "case"
    case.mkdir()
    args = build(world, case)
    before_world, before_case = tree(world.base), tree(case)
    capsys.readouterr()
    try:
        rc = main(args)
    except SystemExit as exc:  # argparse
        rc = exc.code
    err = capsys.readouterr().err
    lines = error_line(err)
    assert rc == 2, f"exit {rc}: {err!r}"
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for name in names:
        assert name.lower() in lines[0].lower(), (name, lines[0])
    assert tree(world.base) == before_world, "the shared world changed"
    after_case = tree(case)
    assert {k: after_case.get(k) for k in before_case} == before_case, "files already in the case folder changed"
    # a refused validate still writes its report (quarantine.parquet, which the message points at, and the
    # kept rows) into its own new --out folder; no other refused run may leave anything
    new = [k for k in after_case if k not in before_case and not (args[0] == "validate" and k.startswith("clean/"))]
    assert not new, f"a refused run left files: {new}"


def test_table_size():
    assert len(CASES) >= 60
    assert {p.values[0] for p in CASES}  # every case has a builder
    commands = {p.id.split("-")[0] for p in CASES}
    assert commands >= {"generate", "validate", "train", "models", "profile", "recommend", "push",
                        "campaign", "evaluate", "tune"}


@pytest.mark.parametrize("args", [
    ["recommend", "u000", "--k", "0"],
    ["push", "--date", "9999-12-31", "--out", "p"],
    ["validate", "--data", "nope"],
])
def test_subprocess_no_traceback(world, tmp_path, args):
    """A few cases through the real entry point: the process's own exit code and stderr."""
    if args[0] in ("recommend", "push"):
        args = args + ["--model", str(world.models / "latest")]
    before = tree(world.base)
    proc = subprocess.run([sys.executable, "-m", "recsys.cli", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "RECSYS_TRACEBACK": ""})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(error_line(proc.stderr)) == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert tree(world.base) == before
    assert list(tmp_path.iterdir()) == []


def test_valid_runs_then_bad_runs_leave_outputs_byte_identical(world, tmp_path, capsys):
    """Property: valid generate / validate / train / push, then bad runs at the same outputs: nothing changes."""
    data, clean, models, pushes = tmp_path / "data", tmp_path / "clean", tmp_path / "models", tmp_path / "pushes"
    assert main(["generate", "--users", "150", "--items", "80", "--days", "15", "--seed", "7", "--out", str(data)]) == 0
    assert main(["validate", "--data", str(data), "--out", str(clean)]) == 0
    assert main(["train", "--data", str(data), "--out", str(models), "--config", str(world.config)]) == 0
    assert main(["push", "--model", str(models / "latest"), "--date", "2026-06-30", "--out", str(pushes),
                 "--workers", "1", "--quiet"]) == 0
    capsys.readouterr()
    before = tree(tmp_path)
    assert before, "the valid runs wrote nothing"
    bad_runs = [
        ["generate", "--users", "0", "--items", "10", "--out", str(data)],
        ["validate", "--data", str(data), "--max-rejected", "-1", "--out", str(clean)],
        ["train", "--data", str(clean / "nope"), "--out", str(models), "--config", str(world.config)],
        ["train", "--data", str(data), "--out", str(models), "--as-of", "1970-01-01", "--config", str(world.config)],
        ["models", "rollback", "../data", "--dir", str(models)],
        ["push", "--model", str(models / "latest"), "--date", "2026-06-30", "--out", str(pushes), "--k", "0"],
        ["push", "--model", str(models / "latest"), "--date", "9999-12-31", "--out", str(pushes)],
        ["campaign", "--name", "../x", "--item", "i001", "--budget", "10", "--date", "2026-06-30",
         "--model", str(models / "latest"), "--out", str(pushes)],
        ["evaluate", "--data", str(data), "--split-quantile", "0.8", "--k", "0", "--out", str(pushes)],
        ["tune", "--data", str(data), "--k", "0", "--out", str(models / "latest" / "manifest.json")],
    ]
    for args in bad_runs:
        rc = main(args)
        err = capsys.readouterr().err
        assert rc == 2, (args, err)
        assert tree(tmp_path) == before, (args, err)


def test_refused_validate_writes_only_the_quarantine(world, tmp_path, capsys):
    """A refused validate leaves quarantine.parquet (the evidence) and no clean tables, not even older ones."""
    clean = tmp_path / "clean"
    assert main(["validate", "--data", str(world.city), "--out", str(clean)]) == 0
    assert {"users.parquet", "items.parquet", "events.parquet", "quarantine.parquet"} <= {p.name for p in clean.iterdir()}
    data = _data_with(world, tmp_path, events=_events(world, timestamp=pd.Timestamp("2026-06-01T00:00:00")))
    capsys.readouterr()
    assert main(["validate", "--data", str(data), "--out", str(clean)]) == 2
    err = capsys.readouterr().err
    assert str(clean / "quarantine.parquet") in err
    assert sorted(p.name for p in clean.iterdir() if not p.name.startswith(".")) == ["quarantine.parquet"]
    assert len(pd.read_parquet(clean / "quarantine.parquet")) == len(_table(world, "events"))
