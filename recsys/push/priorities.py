"""``priorities.toml``: priority audiences and, per audience, priority topics -- read, checked, applied.

``recsys demand`` writes the file; ``recsys push --priorities FILE`` (or
``[push] priorities``) reads it. Layout::

    version = 1
    as_of = "2026-06-30T00:00:00+08:00"

    [[audience]]
    group = "farmer"
    region = "qinglong"          # optional; absent or "" = every region of the group
    weight = 1.0                 # 0 < weight <= 10
    expires = "2026-07-14"       # a date (city midnight) or ISO 8601 with an offset
    why = "..."                  # free text, for people

    [[audience.topics]]
    topic = "modern_agriculture"
    weight = 0.8
    expires = "2026-07-14"
    why = "..."

The push turns it into one array: for each group x region x topic the boost
``audience weight x topic weight`` (the largest when several entries match:
a group-wide entry and a group x region one), leaving out entries expired at
the run's time. The ranking feature ``priority``
(:mod:`recsys.ranking.features`) reads it; without a file every boost is 0
and the lists are exactly what they were.

Every key is checked: one the format does not have (``[[audiences]]``,
``regoin``) is refused with the valid names, since a misspelt table read with
defaults would silently raise nothing. A file whose every entry has expired
by the push date is accepted but named in a warning (:func:`not_in_force`)
and in the manifest block (``applied = false``): a stale file must not stop
the city's nightly push, nor pass for one that raised something.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.config import is_number
from recsys.exceptions import ConfigError
from recsys.push.lists import ItemTopics
from recsys.taxonomy import Taxonomy
from recsys.timeutil import parse_time

PRIORITIES_VERSION = 1
#: the largest weight an entry may carry
MAX_WEIGHT = 10.0
#: the largest file read (a priorities file is a few kB)
MAX_BYTES = 1_000_000
#: the keys of the file, of an ``[[audience]]`` and of an ``[[audience.topics]]`` table, in the order
#: :func:`priorities_document` writes them (the messages list them so)
FILE_KEYS = ("version", "as_of", "audience")
AUDIENCE_KEYS = ("group", "region", "weight", "expires", "why", "topics")
TOPIC_KEYS = ("topic", "weight", "expires", "why")


@dataclass(frozen=True)
class PriorityTopic:
    """One priority topic of an audience."""

    topic: str
    weight: float
    expires: pd.Timestamp
    why: str = ""


@dataclass(frozen=True)
class PriorityAudience:
    """One priority audience: a group, optionally one region, and its topics."""

    group: str
    region: str
    weight: float
    expires: pd.Timestamp
    topics: tuple[PriorityTopic, ...]
    why: str = ""

    @property
    def label(self) -> str:
        """``group`` or ``group/region``: how the manifest names the audience."""
        return f"{self.group}/{self.region}" if self.region else self.group


@dataclass(frozen=True)
class Priorities:
    """A checked priorities file.

    Attributes
    ----------
    audiences : tuple of PriorityAudience
    as_of : str
        When the analysis behind it was made ("" if not said).
    source : str
        The file it was read from.
    timezone : str
        The city's time zone the file was read in, for dates in messages ("" = as stored, UTC).
    """

    audiences: tuple[PriorityAudience, ...]
    as_of: str = ""
    source: str = ""
    timezone: str = ""

    def active(self, now: pd.Timestamp) -> tuple[PriorityAudience, ...]:
        """The audiences not expired at ``now``, each with its unexpired topics (none: left out)."""
        out = []
        for a in self.audiences:
            if a.expires <= now:
                continue
            topics = tuple(t for t in a.topics if t.expires > now)
            if topics:
                out.append(PriorityAudience(a.group, a.region, a.weight, a.expires, topics, a.why))
        return tuple(out)

    def boost_table(self, taxonomy: Taxonomy, now: pd.Timestamp) -> np.ndarray:
        """The ranking input: float32 (n_groups, n_regions, n_topics), taxonomy order; 0 = no priority."""
        groups, regions, topics = list(taxonomy.groups), list(taxonomy.regions), list(taxonomy.topics)
        out = np.zeros((len(groups), len(regions), len(topics)), np.float32)
        for a in self.active(now):
            g = groups.index(a.group)
            rows = [regions.index(a.region)] if a.region else list(range(len(regions)))
            for t in a.topics:
                j = topics.index(t.topic)
                out[g, rows, j] = np.maximum(out[g, rows, j], a.weight * t.weight)
        return out


def _number(value: Any, where: str) -> float:
    if not is_number(value) or not 0 < float(value) <= MAX_WEIGHT:
        raise ConfigError(f"{where} weight must be a number > 0 and <= {MAX_WEIGHT:g}, got {value!r}")
    return float(value)


def _expiry(value: Any, taxonomy: Taxonomy, where: str) -> pd.Timestamp:
    if value is None or value == "":
        raise ConfigError(f"{where} needs expires = a date or an ISO 8601 time with an offset")
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    try:
        return parse_time(text, taxonomy, name=f"{where} expires")
    except (ValueError, OverflowError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where} expires {text!r} is not a date or an ISO 8601 time") from None


def _known_keys(table: dict[str, Any], valid: tuple[str, ...], where: str, hint: str = "") -> None:
    """Refuse a key the format does not have: read with defaults, a misspelt one would raise nothing, silently."""
    unknown = [k for k in table if k not in valid]
    if unknown:
        raise ConfigError(f"{where} has unknown key {unknown[0]!r}; valid: {', '.join(valid)}{hint}")


def parse_priorities(doc: dict[str, Any], taxonomy: Taxonomy, origin: str = "<priorities>") -> Priorities:
    """Check a parsed priorities document against the taxonomy.

    Parameters
    ----------
    doc : dict
        The parsed TOML (or :func:`priorities_document`'s output).
    taxonomy : Taxonomy
        The codes the groups, regions and topics must be among.
    origin : str
        The file's name, for messages.

    Returns
    -------
    Priorities
        The checked entries, expired ones included (:meth:`Priorities.active` picks by time).

    Raises
    ------
    ConfigError
        One line naming the file, the entry and the bad value with what is valid,
        including a key the format does not have.
    """
    _known_keys(doc, FILE_KEYS, origin, " (the entries are [[audience]] tables)")
    version = doc.get("version", PRIORITIES_VERSION)
    if version != PRIORITIES_VERSION:
        raise ConfigError(f"{origin}: version {version!r} unsupported; expected {PRIORITIES_VERSION}")
    entries = doc.get("audience", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{origin}: audience must be an array of tables ([[audience]])")
    # a week without priorities is a file without audiences: the push then ranks as usual (and its
    # manifest says the file named none), so a scheduled `--priorities` never fails for good news
    audiences = []
    for k, entry in enumerate(entries):
        where = f"{origin}: [[audience]] #{k + 1}"
        _known_keys(entry, AUDIENCE_KEYS, where, " (its topics are [[audience.topics]] tables)")
        group = entry.get("group")
        if group not in taxonomy.groups:
            raise ConfigError(f"{where} group {group!r} unknown; valid: {', '.join(taxonomy.groups)}")
        region = entry.get("region", "") or ""
        if region and region not in taxonomy.regions:
            raise ConfigError(f"{where} region {region!r} unknown; valid: {', '.join(taxonomy.regions)} or \"\" (every region)")
        topics_raw = entry.get("topics", [])
        if not isinstance(topics_raw, list) or not topics_raw or not all(isinstance(t, dict) for t in topics_raw):
            raise ConfigError(f"{where} ({group}) needs at least one [[audience.topics]] table")
        expires = _expiry(entry.get("expires"), taxonomy, where)
        topics = []
        for j, t in enumerate(topics_raw):
            tw = f"{where} topic #{j + 1}"
            _known_keys(t, TOPIC_KEYS, tw)
            code = t.get("topic")
            if code not in taxonomy.topics:
                raise ConfigError(f"{tw} topic {code!r} unknown; valid: {', '.join(taxonomy.topics)}")
            t_exp = _expiry(t.get("expires", entry.get("expires")), taxonomy, tw)
            topics.append(PriorityTopic(code, _number(t.get("weight"), tw), t_exp, str(t.get("why", ""))))
        audiences.append(
            PriorityAudience(group, region, _number(entry.get("weight", 1.0), where), expires, tuple(topics), str(entry.get("why", "")))
        )
    return Priorities(tuple(audiences), as_of=str(doc.get("as_of", "")), source=origin, timezone=taxonomy.timezone)


def load_priorities(path: str | Path, taxonomy: Taxonomy) -> Priorities:
    """Read and check a priorities file.

    Raises
    ------
    ConfigError
        If the file is missing, too large, not UTF-8 TOML, or an entry is invalid.
    """
    p = Path(path)
    try:
        if p.stat().st_size > MAX_BYTES:
            raise ConfigError(f"{p}: {p.stat().st_size:,} bytes is too large for a priorities file (at most {MAX_BYTES:,})")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: priorities file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a folder; give the priorities.toml file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the priorities file ({exc})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})") from None
    return parse_priorities(doc, taxonomy, origin=str(p))


def priorities_document(priorities: Priorities) -> dict[str, Any]:
    """A :class:`Priorities` as the TOML document :func:`parse_priorities` reads."""
    return {
        "version": PRIORITIES_VERSION,
        "as_of": priorities.as_of,
        "audience": [
            {
                "group": a.group,
                "region": a.region,
                "weight": round(a.weight, 4),
                "expires": a.expires.isoformat(),
                "why": a.why,
                "topics": [
                    {"topic": t.topic, "weight": round(t.weight, 4), "expires": t.expires.isoformat(), "why": t.why}
                    for t in a.topics
                ],
            }
            for a in priorities.audiences
        ],
    }


def chunk_report(
    priorities: Priorities, now: pd.Timestamp, user_ids: np.ndarray, groups: np.ndarray, regions: np.ndarray, rows: pd.DataFrame, item_topics: ItemTopics
) -> dict[str, dict[str, int]]:
    """Per active priority audience, for one chunk of a push: ``users`` in it, ``pushed`` (got a list),
    ``reached`` (got at least one item of one of its priority topics) and ``priority_items`` pushed.

    ``rows`` are the chunk's push rows (``user_id``, ``item_id``); ``item_topics`` an
    :class:`recsys.push.lists.ItemTopics` of the catalogue.
    """
    out: dict[str, dict[str, int]] = {}
    users = pd.Index(np.asarray(user_ids).astype(str))
    got = rows["user_id"].astype(str).to_numpy() if len(rows) else np.zeros(0, dtype=str)
    items = rows["item_id"].astype(str).to_numpy() if len(rows) else np.zeros(0, dtype=str)
    entry_row, entry_code = item_topics.entries(items)
    for a in priorities.active(now):
        member = np.asarray(groups) == a.group
        if a.region:
            member &= np.asarray(regions) == a.region
        ids = users[member]
        wanted = np.isin(np.asarray(item_topics.names, dtype=object), [t.topic for t in a.topics])
        on_topic = np.zeros(len(items), dtype=bool)
        if len(entry_row):
            np.logical_or.at(on_topic, entry_row, wanted[entry_code])
        mine = np.isin(got, ids)
        hit = mine & on_topic
        report = out.setdefault(a.label, {"users": 0, "pushed": 0, "reached": 0, "priority_items": 0})
        report["users"] += int(member.sum())
        report["pushed"] += len(np.unique(got[mine]))
        report["reached"] += len(np.unique(got[hit]))
        report["priority_items"] += int(hit.sum())
    return out


def not_in_force(priorities: Priorities, now: pd.Timestamp | None = None) -> str | None:
    """The warning for a file that names audiences none of which is in force at ``now``, else None.

    A file naming no audience is a week without priorities (``recsys demand``
    writes one on purpose) and gets no warning. The format has no start date,
    so an entry is never "not yet valid": only expiry takes one out.

    Parameters
    ----------
    priorities : Priorities
        The checked file.
    now : Timestamp, optional
        The push's time (the push counts reach at its date's local midnight);
        None = the caller already knows nothing applied and only wants the text.

    Returns
    -------
    str or None
        One line naming the file, the push time and the dates the entries expired.
    """
    if not priorities.audiences or (now is not None and priorities.active(now)):
        return None
    # an audience stops applying at its own expiry or when its last topic expires, whichever is first
    latest = max(min(a.expires, max((t.expires for t in a.topics), default=a.expires)) for a in priorities.audiences)
    # in the city's time, as the file's dates were written (a date is the city's midnight)
    tz = priorities.timezone or (now.tz if now is not None else None)
    if tz:
        latest = latest.tz_convert(tz)
        now = None if now is None else now.tz_convert(tz)
    when = f"by {now.isoformat()}" if now is not None else "by the push date"
    as_of = f", analysis as of {priorities.as_of}" if priorities.as_of else ""
    return (
        f"priorities {priorities.source or '<priorities>'}: nothing applied, every entry had expired {when} "
        f"(the last expired {latest.isoformat()}{as_of}); the lists are ranked without priorities -- "
        "run recsys demand for a current priorities.toml"
    )


def run_report(priorities: Priorities, parts: list[dict[str, Any]], now: pd.Timestamp | None = None) -> dict[str, Any]:
    """The manifest's ``priorities`` block: the file, and per audience the chunk counts added up
    with the share of its pushed users reached with priority content.

    Parameters
    ----------
    priorities : Priorities
        The run's file.
    parts : list of dict
        The chunks' stats; each holds the :func:`chunk_report` of the audiences in force.
    now : Timestamp, optional
        The time the chunks judged expiry at, for the warning's text.

    Returns
    -------
    dict
        ``file``, ``as_of``, ``audiences`` and ``applied`` (whether any audience was in
        force), with ``warning`` (:func:`not_in_force`) when the file named audiences and
        none applied: the manifest must not read as if the priorities raised something.
    """
    audiences: dict[str, dict[str, Any]] = {}
    for part in parts:
        for label, counts in part.get("priorities", {}).items():
            total = audiences.setdefault(label, {"users": 0, "pushed": 0, "reached": 0, "priority_items": 0})
            for key in total:
                total[key] += int(counts.get(key, 0))
    for label, total in audiences.items():
        total["reached_share"] = round(total["reached"] / total["pushed"], 4) if total["pushed"] else 0.0
        entry = next((a for a in priorities.audiences if a.label == label), None)
        if entry is not None:
            total["topics"] = [t.topic for t in entry.topics]
    block: dict[str, Any] = {"file": priorities.source, "as_of": priorities.as_of, "audiences": audiences}
    # every chunk reports each audience in force (users 0 included), so none reported = none was
    block["applied"] = bool(audiences)
    if not audiences and priorities.audiences:
        # with the push's time the text names it; without (or if the chunks judged another instant) it says "the push date"
        block["warning"] = (now is not None and not_in_force(priorities, now)) or not_in_force(priorities)
    return block


def summary_lines(block: dict[str, Any]) -> list[str]:
    """The end-of-run summary's lines for the manifest's ``priorities`` block.

    A block with no audience in force says so (the file's warning, or that it named
    none) instead of an empty table a reader could take for priorities applied.
    """
    if block.get("warning"):
        return [f"  warning: {block['warning']}"]
    if not block.get("audiences"):
        return [f"  priorities ({block.get('file', '')}): no priority audience in force; lists as ranked"]
    lines = [f"  priorities ({block.get('file', '')}): reached with a priority topic / pushed / in the run"]
    for label, counts in block.get("audiences", {}).items():
        lines.append(f"    {label:<24}{counts['reached']:>8}{counts['pushed']:>8}{counts['users']:>8}")
    return lines
