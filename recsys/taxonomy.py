"""The taxonomy: groups, regions, topics, formats and channels, loaded from TOML.

Codes are data, not code. The default file ships inside the package
(``recsys/data/taxonomy.toml``, the codes of shared/CONTRACT.md); another city
or a public data set passes its own file with ``--taxonomy PATH``. The file
format is documented in the README.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from recsys.config import is_int, is_number
from recsys.exceptions import SchemaError, UnknownCodeError

KINDS = ("group", "sub_group", "region", "topic", "format", "channel")
#: the per-channel push settings a taxonomy may give a personal channel (``[channels.X] push``)
CHANNEL_PUSH_KEYS = ("k", "daily_cap", "weekly_cap", "send_after", "send_before")
# Lowercase snake_case; in particular no "|", which separates codes in CSV lists.
_CODE_RE = re.compile(r"[a-z0-9_]+")


@dataclass(frozen=True)
class Code:
    """One taxonomy entry: its code and display names."""

    code: str
    zh: str
    en: str


#: calendar rules besides a fixed day: ``third_weekend`` of the entry's month
CALENDAR_RULES = ("third_weekend",)


@dataclass(frozen=True)
class CalendarDay:
    """One campaign of the calendar: a day, a span of days, or a rule; and the topics it lifts.

    Attributes
    ----------
    name : str
        A code (e.g. ``anti_drug_day``).
    zh, en : str
        Display names.
    month, day : int
        The first day (``day`` is ignored by a rule).
    length_days : int
        How many days it runs (1 = a single day).
    rule : str
        ``""`` (a fixed day) or one of :data:`CALENDAR_RULES`.
    topics : tuple of str
        Topic codes it makes surge.
    """

    name: str
    zh: str
    en: str
    month: int
    day: int
    length_days: int
    rule: str
    topics: tuple[str, ...]

    def active(self, date: dt.date) -> bool:
        """Whether the campaign runs on local ``date``."""
        return calendar_active(self.month, self.day, self.length_days, self.rule, date)


def _third_weekend(year: int, month: int) -> tuple[dt.date, dt.date]:
    first = dt.date(year, month, 1)
    saturday = first + dt.timedelta(days=(5 - first.weekday()) % 7 + 14)
    return saturday, saturday + dt.timedelta(days=1)


def calendar_active(month: int, day: int, length_days: int, rule: str, date: dt.date) -> bool:
    """Whether a campaign of this shape runs on ``date`` (the one rule the calendar and the synthetic city share)."""
    if rule == "third_weekend":
        return date.month == month and date in _third_weekend(date.year, month)
    try:
        first = dt.date(date.year, month, day)
    except ValueError:  # e.g. Feb 29 in a common year
        return False
    return first <= date < first + dt.timedelta(days=length_days)


@dataclass(frozen=True)
class Taxonomy:
    """The codes a city (or data set) uses.

    Build it with :func:`load_taxonomy`; it is immutable.

    Attributes
    ----------
    name : str
        A short name of the taxonomy (e.g. the city).
    timezone : str
        IANA time zone of the city; calendar dates on the command line are
        days in this zone.
    groups, regions, topics, formats, channels : dict[str, Code]
        Entries by code, in file order.
    sub_groups : dict[str, str]
        Sub-group code -> the group code it belongs to.
    sub_group_names : dict[str, str]
        Sub-group code -> Chinese name.
    urban : dict[str, bool]
        Region code -> urban (True) or rural (False).
    population_share : dict[str, float]
        Region code -> share of population (used by the synthetic city).
    channel_formats : dict[str, tuple[str, ...]]
        Channel code -> the formats it carries.
    personal_channels : tuple[str, ...]
        Channels that get per-user push lists, in file order.
    source_text : str
        The TOML text it was loaded from (a model bundle keeps a copy).
    calendar : tuple of CalendarDay
        The campaign days that make topics surge every year (may be empty).
    channel_push : dict[str, dict]
        Personal channel -> the city's push defaults for it (``[channels.X] push =
        { k, daily_cap, weekly_cap, send_after, send_before }``, any of them);
        ``[push]`` in the config overrides them, and ``recsys.push.channels``
        checks the values.
    """

    name: str
    timezone: str
    groups: dict[str, Code]
    regions: dict[str, Code]
    topics: dict[str, Code]
    formats: dict[str, Code]
    channels: dict[str, Code]
    sub_groups: dict[str, str]
    sub_group_names: dict[str, str]
    urban: dict[str, bool]
    population_share: dict[str, float]
    channel_formats: dict[str, tuple[str, ...]]
    personal_channels: tuple[str, ...]
    source_text: str = field(repr=False, default="")
    calendar: tuple[CalendarDay, ...] = ()
    channel_push: dict[str, dict[str, object]] = field(default_factory=dict)

    # ---- lookups -------------------------------------------------------
    def codes(self, kind: str) -> tuple[str, ...]:
        """Return the valid codes of ``kind`` (one of :data:`KINDS`)."""
        table = {
            "group": self.groups,
            "sub_group": self.sub_groups,
            "region": self.regions,
            "topic": self.topics,
            "format": self.formats,
            "channel": self.channels,
        }
        if kind not in table:
            raise UnknownCodeError(f"unknown code kind {kind!r}; valid: {', '.join(KINDS)}")
        return tuple(table[kind])

    def check(self, kind: str, value: str) -> str:
        """Return ``value`` if it is a valid code of ``kind``.

        Raises
        ------
        UnknownCodeError
            Naming the kind, the bad value and the valid codes.
        """
        valid = self.codes(kind)
        if value not in valid:
            raise UnknownCodeError(f"unknown {kind} {value!r}; valid: {', '.join(valid)}")
        return value

    def check_many(self, kind: str, values: Iterable[str]) -> list[str]:
        """Check every value of ``values``; return them as a list."""
        return [self.check(kind, v) for v in values]

    def check_sub_group(self, group: str, sub_group: str) -> str:
        """Check that ``sub_group`` belongs to ``group`` (empty is allowed)."""
        self.check("group", group)
        if sub_group == "":
            return sub_group
        self.check("sub_group", sub_group)
        if self.sub_groups[sub_group] != group:
            valid = [s for s, g in self.sub_groups.items() if g == group]
            raise UnknownCodeError(
                f"sub_group {sub_group!r} is not in group {group!r}; valid: {', '.join(valid)}"
            )
        return sub_group

    def formats_for(self, channel: str) -> tuple[str, ...]:
        """Return the formats ``channel`` carries."""
        return self.channel_formats[self.check("channel", channel)]

    def zh(self, kind: str, code: str) -> str:
        """Return the Chinese display name of a code (the code itself if unknown)."""
        if kind not in KINDS:
            raise UnknownCodeError(f"unknown code kind {kind!r}; valid: {', '.join(KINDS)}")
        if kind == "sub_group":
            return self.sub_group_names.get(code, code)
        entries = {
            "group": self.groups,
            "region": self.regions,
            "topic": self.topics,
            "format": self.formats,
            "channel": self.channels,
        }[kind]
        entry = entries.get(code)
        return entry.zh if entry else code

    def campaign_mask(self, dates: Iterable[dt.date]) -> np.ndarray:
        """Which topics a campaign lifts on each date: bool array (len(dates), n_topics), topics in file order."""
        dates = list(dates)
        topic_pos = {t: j for j, t in enumerate(self.topics)}
        out = np.zeros((len(dates), len(self.topics)), dtype=bool)
        for d, date in enumerate(dates):
            for entry in self.calendar:
                if entry.active(date):
                    out[d, [topic_pos[t] for t in entry.topics]] = True
        return out

    @property
    def tz(self) -> ZoneInfo:
        """The city's time zone as a ``ZoneInfo``."""
        return ZoneInfo(self.timezone)


def _entries(doc: dict, key: str, origin: str) -> dict[str, dict]:
    section = doc.get(key)
    if not isinstance(section, dict) or not section:
        raise SchemaError(f"{origin}: taxonomy needs a non-empty [{key}] table")
    for code, entry in section.items():
        if not isinstance(entry, dict):
            raise SchemaError(f"{origin}: [{key}.{code}] must be a table with zh/en names")
        _check_code(code, f"[{key}]", origin)
    return section


def _check_code(code: str, where: str, origin: str) -> None:
    if not _CODE_RE.fullmatch(code):
        raise SchemaError(f"{origin}: code {code!r} in {where} must be lowercase snake_case (a-z, 0-9, _)")


def _flag(entry: dict, key: str, default: bool, where: str, origin: str) -> bool:
    value = entry.get(key, default)
    if not isinstance(value, bool):
        raise SchemaError(f"{origin}: {where} {key} must be true or false, got {value!r}")
    return value


def _share(entry: dict, default: float, where: str, origin: str) -> float:
    value = entry.get("population_share", default)
    if not is_number(value) or value < 0:
        raise SchemaError(f"{origin}: {where} population_share must be a number >= 0, got {value!r}")
    return float(value)


def _code(code: str, entry: dict) -> Code:
    return Code(code=code, zh=str(entry.get("zh", code)), en=str(entry.get("en", code)))


def _calendar(doc: dict, topics: dict, origin: str) -> tuple[CalendarDay, ...]:
    entries = doc.get("calendar", [])
    if not isinstance(entries, list):
        raise SchemaError(f"{origin}: calendar must be an array of tables ([[calendar]])")
    out = []
    for k, entry in enumerate(entries):
        where = f"[[calendar]] #{k + 1}"
        if not isinstance(entry, dict):
            raise SchemaError(f"{origin}: {where} must be a table")
        name = str(entry.get("name", f"campaign_{k + 1}"))
        rule = str(entry.get("rule", ""))
        if rule and rule not in CALENDAR_RULES:
            raise SchemaError(f"{origin}: {where} ({name}) rule {rule!r} unknown; valid: {', '.join(CALENDAR_RULES)}")
        values = {}
        for key, default, low, high in (("month", None, 1, 12), ("day", 1, 1, 31), ("length_days", 1, 1, 366)):
            value = entry.get(key, default)
            if not is_int(value) or not low <= value <= high:
                raise SchemaError(f"{origin}: {where} ({name}) {key} must be an integer {low}..{high}, got {value!r}")
            values[key] = value
        codes = entry.get("topics")
        if not isinstance(codes, list) or not codes or not all(isinstance(t, str) for t in codes):
            raise SchemaError(f"{origin}: {where} ({name}) needs topics = [topic codes]")
        bad = [t for t in codes if t not in topics]
        if bad:
            raise SchemaError(f"{origin}: {where} ({name}) names unknown topic {bad[0]!r}; valid: {', '.join(topics)}")
        out.append(
            CalendarDay(
                name=name,
                zh=str(entry.get("zh", name)),
                en=str(entry.get("en", name)),
                month=values["month"],
                day=values["day"],
                length_days=values["length_days"],
                rule=rule,
                topics=tuple(codes),
            )
        )
    return tuple(out)


def parse_taxonomy(text: str, origin: str = "<taxonomy>") -> Taxonomy:
    """Build a :class:`Taxonomy` from TOML text.

    Raises
    ------
    SchemaError
        If the text is not valid TOML or a section is missing or malformed.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"{origin}: not valid TOML ({exc})") from None
    timezone = str(doc.get("timezone", "Asia/Shanghai"))
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise SchemaError(f"{origin}: unknown timezone {timezone!r}") from None

    groups_raw = _entries(doc, "groups", origin)
    regions_raw = _entries(doc, "regions", origin)
    topics_raw = _entries(doc, "topics", origin)
    formats_raw = _entries(doc, "formats", origin)
    channels_raw = _entries(doc, "channels", origin)

    sub_groups: dict[str, str] = {}
    sub_group_names: dict[str, str] = {}
    for group, entry in groups_raw.items():
        subs = entry.get("sub_groups", {})
        if isinstance(subs, list) and all(isinstance(s, str) for s in subs):
            subs = {s: s for s in subs}
        if not isinstance(subs, dict):
            raise SchemaError(
                f"{origin}: [groups.{group}] sub_groups must be a table of code = name or a list of codes"
            )
        for sub, name in subs.items():
            _check_code(sub, f"[groups.{group}] sub_groups", origin)
            if sub in sub_groups:
                raise SchemaError(f"{origin}: sub_group {sub!r} listed under two groups")
            sub_groups[sub] = group
            sub_group_names[sub] = str(name)

    channel_formats: dict[str, tuple[str, ...]] = {}
    for channel, entry in channels_raw.items():
        fmts = entry.get("formats", list(formats_raw))
        if not isinstance(fmts, list):
            raise SchemaError(f"{origin}: [channels.{channel}] formats must be a list of format codes")
        fmts = tuple(fmts)
        bad = [f for f in fmts if f not in formats_raw]
        if bad:
            raise SchemaError(
                f"{origin}: channel {channel!r} carries unknown format {bad[0]!r}; "
                f"valid: {', '.join(formats_raw)}"
            )
        channel_formats[channel] = fmts
    personal = tuple(
        c for c, e in channels_raw.items() if _flag(e, "personal", True, f"[channels.{c}]", origin)
    )
    channel_push: dict[str, dict[str, object]] = {}
    for channel, entry in channels_raw.items():
        push = entry.get("push")
        if push is None:
            continue
        if not isinstance(push, dict) or channel not in personal:
            raise SchemaError(
                f"{origin}: [channels.{channel}] push must be a table of push defaults on a personal channel"
            )
        unknown = [k for k in push if k not in CHANNEL_PUSH_KEYS]
        if unknown:
            raise SchemaError(
                f"{origin}: [channels.{channel}] push has unknown key {unknown[0]!r}; valid: {', '.join(CHANNEL_PUSH_KEYS)}"
            )
        channel_push[channel] = dict(push)

    return Taxonomy(
        name=str(doc.get("name", "custom")),
        timezone=timezone,
        groups={c: _code(c, e) for c, e in groups_raw.items()},
        regions={c: _code(c, e) for c, e in regions_raw.items()},
        topics={c: _code(c, e) for c, e in topics_raw.items()},
        formats={c: _code(c, e) for c, e in formats_raw.items()},
        channels={c: _code(c, e) for c, e in channels_raw.items()},
        sub_groups=sub_groups,
        sub_group_names=sub_group_names,
        urban={c: _flag(e, "urban", True, f"[regions.{c}]", origin) for c, e in regions_raw.items()},
        population_share={
            c: _share(e, 1.0 / len(regions_raw), f"[regions.{c}]", origin) for c, e in regions_raw.items()
        },
        channel_formats=channel_formats,
        personal_channels=personal,
        source_text=text,
        calendar=_calendar(doc, topics_raw, origin),
        channel_push=channel_push,
    )


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Load a taxonomy file; ``None`` loads the default shipped in the package.

    Parameters
    ----------
    path : str, Path or None
        A TOML file in the format the README documents.

    Raises
    ------
    SchemaError
        If the file is missing, unreadable or malformed (the message names it).
    """
    if path is None:
        text = resources.files("recsys").joinpath("data/taxonomy.toml").read_text(encoding="utf-8")
        return parse_taxonomy(text, origin="default taxonomy")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SchemaError(f"{p}: taxonomy file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{p}: cannot read taxonomy file ({exc})") from None
    return parse_taxonomy(text, origin=str(p))
