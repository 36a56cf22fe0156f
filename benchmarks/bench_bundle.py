"""Benchmark a verified bundle load: its time and the bytes it hashes, beside the floor.

The floor is one sha256 pass over every file the bundle's manifest lists -- the least a
verified load must do. The load is ``TrainedModel.load(path, verify=True)`` (what
``Recommender.load`` and the push do); the bytes it hashes are counted by wrapping the
sha256 helper in every module that holds it. Before the bundle protocol (format 2) the ANN
index and the content model checked their own files again, so their bytes were hashed twice.

Usage::

    python benchmarks/bench_bundle.py --bundle out/demo/models/latest
    # the same figures for an older commit's code on its own bundle
    python benchmarks/bench_bundle.py --bundle /tmp/identical_ref/models/latest --src /tmp/ref_src

Prints one JSON line: bundle bytes, bytes hashed by the load, floor and load seconds (median
of ``--repeat`` fresh processes, page cache warm), and the ratio load / floor.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import hashlib, json, sys, time
from pathlib import Path

path = Path(sys.argv[1])
import recsys.bundle, recsys.io, recsys.training.model
for name in ("recsys.training.index", "recsys.training.content"):
    __import__(name)
hashed = [0]
original = recsys.io.sha256_file

def counting(p, *a, **k):
    hashed[0] += Path(p).stat().st_size
    return original(p, *a, **k)

for mod in list(sys.modules.values()):
    if getattr(mod, "__name__", "").startswith("recsys") and getattr(mod, "sha256_file", None) is original:
        mod.sha256_file = counting

manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
t = time.perf_counter()
for rel in manifest["files"]:
    h = hashlib.sha256()
    with open(path / rel, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
floor = time.perf_counter() - t
t = time.perf_counter()
recsys.training.model.TrainedModel.load(path, verify=True)
load = time.perf_counter() - t
size = sum((path / rel).stat().st_size for rel in manifest["files"])
print(json.dumps({"bytes": size, "hashed": hashed[0], "floor_s": floor, "load_s": load,
                  "format": manifest.get("format_version")}))
"""


def measure(bundle: Path, src: Path | None, repeat: int) -> dict:
    """Median of ``repeat`` fresh-process runs."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src.resolve())
    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(bundle.resolve())],
            env=env, capture_output=True, text=True, check=True,
            cwd=str(src.resolve()) if src is not None else None,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    floor = statistics.median(r["floor_s"] for r in runs)
    load = statistics.median(r["load_s"] for r in runs)
    return {
        "bundle": str(bundle),
        "format": runs[0]["format"],
        "bundle_mb": round(runs[0]["bytes"] / 2**20, 2),
        "hashed_mb": round(runs[0]["hashed"] / 2**20, 2),
        "hashed_per_byte": round(runs[0]["hashed"] / runs[0]["bytes"], 3),
        "floor_s": round(floor, 4),
        "load_s": round(load, 4),
        "load_over_floor": round(load / floor, 2),
        "repeat": repeat,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", required=True, type=Path, help="a bundle folder or models/latest")
    parser.add_argument("--src", type=Path, help="source tree of another commit to load it with")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.bundle, args.src, args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
