"""A run's output identity: which partition its rows go to, and when it may replace one.

A run's partition (``date=D/kind=K``) is named by what it was asked: the
nightly lists of the whole city are ``kind=nightly``; a targeted run (any of
``--group``, ``--region``, ``--topic``, ``--channel``) goes to its own
``kind=segment-<hash>`` (8 hex digits of the SHA-256 of its filters, listed
in the manifest) unless ``--kind NAME`` names it; a campaign's kind is its
name. A run re-running the same request replaces its own partition (a
retraction, a resumed run); a run that would replace a partition written for
another request (a ``--kind nightly`` segment run over the city's nightly
lists, a campaign reusing a name with other items) is refused unless
``--replace`` says so. A partition folder without a push manifest is never
replaced: this code did not write it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from recsys.exceptions import RecsysError
from recsys.push.writer import MANIFEST_FILE, partition_dir

SEGMENT_PREFIX = "segment-"
_FILTERS = ("group", "region", "channel", "topic")


class OutputConflictError(RecsysError):
    """A run would replace a partition written for another request."""


def identity(segment: Mapping[str, Any], items: Sequence[str] = ()) -> dict[str, Any]:
    """What a run was asked: its filters (group, region, channel, topic) and campaign items."""
    return {
        "segment": {key: segment.get(key) for key in _FILTERS},
        "items": sorted(str(i) for i in items),
    }


def identity_of(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The identity recorded in a run manifest (also for manifests written before identities)."""
    campaign = manifest.get("campaign") or {}
    return identity(manifest.get("segment") or {}, campaign.get("items") or ())


def is_targeted(segment: Mapping[str, Any]) -> bool:
    """Whether a run asks for less than every user and every topic."""
    return any(segment.get(key) is not None for key in _FILTERS)


def segment_kind(segment: Mapping[str, Any]) -> str:
    """The default kind of a targeted run: ``segment-`` and 8 hex digits of its filters' hash."""
    text = json.dumps({key: segment.get(key) for key in _FILTERS}, sort_keys=True)
    return SEGMENT_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def describe(ident: Mapping[str, Any]) -> str:
    """A short text of an identity: ``the whole city`` or ``group=farmer topic=ecology items=i1,i2``."""
    parts = [f"{k}={v}" for k, v in ident.get("segment", {}).items() if v is not None]
    if ident.get("items"):
        parts.append("items=" + ",".join(ident["items"]))
    return " ".join(parts) if parts else "the whole city"


def check_partition(
    out: str | Path, day: dt.date, kind: str, ident: Mapping[str, Any], *, replace: bool = False
) -> bool:
    """Refuse a run that would replace a partition written for another request.

    Parameters
    ----------
    out : path
        Output folder.
    day, kind
        The run's partition.
    ident : dict
        :func:`identity` of the run.
    replace : bool
        Replace a partition of another request anyway (``--replace``).

    Returns
    -------
    bool
        Whether the partition exists (and will be replaced).

    Raises
    ------
    OutputConflictError
        If the partition holds another request's run (without ``replace``), or
        is not a push run at all (no readable manifest; whatever ``replace``).
    """
    dest = partition_dir(out, day, kind)
    if not dest.exists():
        return False
    try:
        manifest = json.loads((dest / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise OutputConflictError(
            f"{dest} exists but holds no readable push manifest ({MANIFEST_FILE}): this command did not "
            f"write it and will not replace it; move it away or choose another --out"
        ) from None
    old = identity_of(manifest)
    if old == dict(ident) or replace:
        return True
    raise OutputConflictError(
        f"{dest} holds run {manifest.get('run_id', '?')} for {describe(old)}; this run asks for "
        f"{describe(ident)} and would replace those lists: give it its own --kind NAME "
        f"(a targeted run defaults to kind={segment_kind(ident['segment'])}), or pass --replace to replace them"
    )
