"""Check that a refactoring left the engine's outputs unchanged on a fixed city.

Runs the three jobs whose outputs users keep -- ``recsys train`` (the model
bundle), ``recsys push`` (the nightly lists) and ``recsys evaluate``
(``metrics.json``) -- on one data folder, and compares them with a reference
made the same way by an earlier commit:

* every ``.npy`` array of the bundle, element by element (NaN equal to NaN);
  every Parquet table of the bundle, frame by frame; the faiss index bytes;
* the committed push rows (every ``part-*.parquet``), sorted, column by column;
* ``metrics.json`` value by value, except wall-clock timings.

Usage::

    # the reference, from the commit before the change (its sources unpacked in SRC)
    git archive HEAD | tar -x -C /tmp/ref_src
    cp -r data/synthetic/sample /tmp/sample_ref
    python benchmarks/check_identical.py run --data /tmp/sample_ref --out /tmp/identical_ref --src /tmp/ref_src
    # after the change, with the working tree's code
    python benchmarks/check_identical.py run --data /tmp/sample_ref --out /tmp/identical_new
    python benchmarks/check_identical.py compare /tmp/identical_ref /tmp/identical_new

``compare`` prints one line per difference and exits 1 when there is any (a
column or key only the new run has -- another feature's addition -- is printed
as ``added:`` and counted as a difference only with ``--strict``);
``--rename OLD=NEW`` maps a bundle file that moved (a layout change) so its
contents are still compared. Training, the push and the evaluation each cost
about a minute of CPU on the sample: run under ``flock /tmp/heavy.lock``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

#: metrics.json keys whose values are wall-clock measurements (differ run to run)
TIMING_KEY = re.compile(r"(^|_)(time|times|timings|seconds|elapsed|created_at|started_at|finished_at)(_s)?$|_s$")
#: push row columns that name the run rather than the list (a run id, a write time)
RUN_COLUMNS = ("run_id", "created_at", "written_at", "model_path", "model_version")
#: a line that starts with this is an addition (a new column or key the reference lacks), not a change:
#: other features add columns and config sections; ``--strict`` counts additions too
ADDED = "added: "


def _jobs(data: Path, out: Path, src: Path | None, date: str | None) -> list[list[str]]:
    """The three command lines, in order."""
    cli = [sys.executable, "-m", "recsys.cli"]
    if date is None:
        date = _push_date(data)
    return [
        cli + ["train", "--data", str(data), "--out", str(out / "models")],
        cli + ["push", "--model", str(out / "models" / "latest"), "--date", date, "--out", str(out / "pushes"),
               "--workers", "1", "--quiet"],
        cli + ["evaluate", "--data", str(data), "--split-quantile", "0.8", "--out", str(out / "evaluation")],
    ]


def _push_date(data: Path) -> str:
    """The local day after the log ends (what ``recsys demo`` pushes for)."""
    manifest = json.loads((data / "manifest.json").read_text(encoding="utf-8"))
    from recsys.taxonomy import load_taxonomy

    end = pd.Timestamp(manifest["end"])
    return end.tz_convert(load_taxonomy().timezone).date().isoformat()


def run(data: Path, out: Path, src: Path | None, date: str | None) -> None:
    """Run train, push and evaluate on ``data`` into ``out`` (with the code in ``src``, if given)."""
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"error: {out} is not empty; give a new folder")
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if src is not None:
        # the reference's sources shadow the editable install (PYTHONPATH precedes it)
        env["PYTHONPATH"] = str(src.resolve())
    for cmd in _jobs(data, out, src, date):
        print("$", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, env=env, check=True, cwd=str(src.resolve()) if src is not None else None,
                       stdout=subprocess.DEVNULL)


# ---- comparing ---------------------------------------------------------------


def _bundle(root: Path) -> Path:
    return (root / "models" / "latest").resolve()


def _arrays_equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def compare_bundles(ref: Path, new: Path, rename: dict[str, str]) -> Iterator[str]:
    """Differences between two bundles' arrays, tables and faiss index."""
    kinds = ("*.npy", "*.parquet", "*.faiss")
    ref_files = {str(p.relative_to(ref)) for k in kinds for p in ref.rglob(k)}
    new_files = {str(p.relative_to(new)) for k in kinds for p in new.rglob(k)}
    for rel in sorted(ref_files):
        target = rename.get(rel, rel)
        if target not in new_files:
            yield f"bundle: {rel} missing from the new bundle"
            continue
        new_files.discard(target)
        a, b = ref / rel, new / target
        if rel.endswith(".npy"):
            if not _arrays_equal(np.load(a, allow_pickle=False), np.load(b, allow_pickle=False)):
                yield f"bundle: {rel} differs"
        elif rel.endswith(".parquet"):
            fa, fb = pd.read_parquet(a), pd.read_parquet(b)
            extra = [c for c in fb.columns if c not in fa.columns]
            if extra:
                yield f"{ADDED}bundle: {rel} has new column(s) {', '.join(extra)}"
            if not fa.equals(fb.drop(columns=extra)):
                yield f"bundle: {rel} differs"
        elif a.read_bytes() != b.read_bytes():
            yield f"bundle: {rel} differs"
    for rel in sorted(new_files):
        yield f"bundle: {rel} is new (not in the reference)"


def _push_rows(root: Path) -> pd.DataFrame:
    parts = sorted((root / "pushes").glob("date=*/kind=*/channel=*/part-*.parquet"))
    if not parts:
        raise SystemExit(f"error: {root / 'pushes'} holds no push rows")
    frames = []
    for p in parts:
        frame = pd.read_parquet(p)
        for piece in p.relative_to(root / "pushes").parts[:-1]:
            key, _, value = piece.partition("=")
            frame[key] = value
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)
    rows = rows.drop(columns=[c for c in RUN_COLUMNS if c in rows.columns])
    for col in rows.columns:
        # list columns (the reasons) compare and sort as tuples
        if rows[col].dtype == object and rows[col].map(lambda v: isinstance(v, (list, np.ndarray))).any():
            rows[col] = rows[col].map(lambda v: tuple(v) if isinstance(v, (list, np.ndarray)) else v)
    return rows.sort_values(list(rows.columns)).reset_index(drop=True)


def compare_pushes(ref: Path, new: Path) -> Iterator[str]:
    """Differences between two runs' committed push rows."""
    a, b = _push_rows(ref), _push_rows(new)
    if list(a.columns) != list(b.columns):
        yield f"push: columns {list(a.columns)} != {list(b.columns)}"
    elif len(a) != len(b):
        yield f"push: {len(a)} rows != {len(b)} rows"
    else:
        for col in a.columns:
            if not a[col].equals(b[col]):
                yield f"push: column {col} differs in {int((a[col] != b[col]).sum())} rows"


def _walk(a: Any, b: Any, path: str) -> Iterator[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if TIMING_KEY.search(str(key)):
                continue
            if key not in a:
                yield f"{ADDED}metrics: {path}/{key} only in the new run"
            elif key not in b:
                yield f"metrics: {path}/{key} only in the reference run"
            else:
                yield from _walk(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"metrics: {path} has {len(a)} != {len(b)} entries"
        else:
            for i, (x, y) in enumerate(zip(a, b)):
                yield from _walk(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return
    elif a != b and not (isinstance(a, str) and isinstance(b, str) and ("/" in a or "\\" in a)):
        # a path differs between the two output folders by design
        yield f"metrics: {path}: {a!r} != {b!r}"


def compare_metrics(ref: Path, new: Path) -> Iterator[str]:
    """Differences between two evaluations' ``metrics.json`` (timings left out)."""
    a = json.loads((ref / "evaluation" / "metrics.json").read_text(encoding="utf-8"))
    b = json.loads((new / "evaluation" / "metrics.json").read_text(encoding="utf-8"))
    yield from _walk(a, b, "")


def compare(ref: Path, new: Path, rename: dict[str, str]) -> list[str]:
    """Every difference between two output folders written by :func:`run`."""
    diffs = list(compare_bundles(_bundle(ref), _bundle(new), rename))
    diffs += list(compare_pushes(ref, new))
    diffs += list(compare_metrics(ref, new))
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run", help="train, push and evaluate into --out")
    r.add_argument("--data", required=True, type=Path)
    r.add_argument("--out", required=True, type=Path)
    r.add_argument("--src", type=Path, help="source tree of the reference commit (default: the working tree)")
    r.add_argument("--date", help="push date (default: the local day the data's log ends)")
    c = sub.add_parser("compare", help="compare two --out folders")
    c.add_argument("reference", type=Path)
    c.add_argument("new", type=Path)
    c.add_argument("--rename", action="append", default=[], metavar="OLD=NEW",
                   help="a bundle file that moved (relative paths)")
    c.add_argument("--strict", action="store_true", help="count added columns and keys as differences too")
    args = parser.parse_args(argv)
    if args.what == "run":
        run(args.data, args.out, args.src, args.date)
        return 0
    rename = dict(item.split("=", 1) for item in args.rename)
    diffs = compare(args.reference, args.new, rename)
    for line in diffs:
        print(line)
    changed = [d for d in diffs if args.strict or not d.startswith(ADDED)]
    n_arrays = len(list(_bundle(args.reference).rglob("*.npy")))
    print(f"{len(changed)} differences, {len(diffs) - len(changed)} additions "
          f"({n_arrays} reference arrays, push rows, metrics.json compared)")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
