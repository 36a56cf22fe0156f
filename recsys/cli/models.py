"""``recsys models list|rollback``: the versions kept for rollback."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "models"
HELP = "list model bundles or roll latest back to an older version"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("list", "rollback"), help="what to do")
    parser.add_argument("version", nargs="?", help="version to roll back to (rollback only)")
    parser.add_argument("--dir", default="models", metavar="DIR", help="models folder (default: models)")


def run(args: argparse.Namespace) -> int:
    from recsys import bundle
    from recsys.exceptions import ArtifactError, ConfigError

    if args.action == "rollback":
        if not args.version:
            raise ConfigError("models rollback needs a VERSION; see `recsys models list`")
        bundle.rollback(args.dir, args.version)
        print(f"latest -> {args.version}")
        return 0
    if not Path(args.dir).is_dir():
        raise ConfigError(f"--dir {args.dir}: no such models folder; train one with `recsys train --data DIR --out {args.dir}`")
    current = bundle.latest_version(args.dir)
    versions = bundle.list_versions(args.dir)
    if not versions:
        print(f"no model bundles in {args.dir}")
        return 0
    print(f"{'version':<22} {'latest':<7} {'users':>9} {'items':>8} {'data end':<26} recall")
    corrupt = 0
    for v in versions:
        mark = "*" if v == current else ""
        try:
            # every file against its checksum (what a rollback checks): a truncated or edited file
            # is listed as corrupt here, not found at the rollback
            m = bundle.verify_bundle(f"{args.dir}/{v}")
        except ArtifactError as exc:
            # one bad bundle must not hide the good ones: show it, with why, and go on
            corrupt += 1
            print(f"{v:<22} {mark:<7} corrupt: {exc}")
            continue
        counts = m.get("counts") or {}
        recall = (m.get("index") or {}).get("recall_at_k")
        recall_text = f"{recall:.3f}" if isinstance(recall, (int, float)) else ""
        print(
            f"{v:<22} {mark:<7} {counts.get('users', '?'):>9} "
            f"{counts.get('items', '?'):>8} {str((m.get('data_window') or {}).get('end')):<26} {recall_text}"
        )
    if current is not None and current not in versions:
        print(f"latest -> {current}, which is not a bundle here; roll back with `recsys models rollback VERSION`")
    if corrupt:
        print(f"{corrupt} corrupt bundle(s): do not roll back to them")
    return 0
