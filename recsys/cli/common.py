"""Options shared by several sub-commands."""

from __future__ import annotations

import argparse

import pandas as pd

from recsys.taxonomy import Taxonomy, load_taxonomy


def add_taxonomy_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--taxonomy PATH`` (default: the package's own file)."""
    parser.add_argument(
        "--taxonomy",
        metavar="PATH",
        default=None,
        help="taxonomy TOML file with this data set's codes (default: the bundled city's)",
    )


def taxonomy_from(args: argparse.Namespace) -> Taxonomy:
    """Load the taxonomy named by ``--taxonomy`` (or the default)."""
    return load_taxonomy(getattr(args, "taxonomy", None))


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """Add the options that say how to read a data folder (for every command that validates one).

    ``--assume-tz ZONE``, ``--encoding NAME``, ``--delimiter C``, ``--min-time T``
    and ``--max-time T``; :func:`input_options` turns them into keyword
    arguments of :func:`recsys.schema.validate`.
    """
    from recsys.schema import MAX_TIME, MIN_TIME

    group = parser.add_argument_group("reading the data")
    group.add_argument(
        "--assume-tz",
        metavar="ZONE",
        default=None,
        help="read timestamps without a UTC offset as local times in this IANA zone, e.g. Asia/Shanghai "
        "(default: quarantine them as 'naive timestamp')",
    )
    group.add_argument(
        "--encoding", metavar="NAME", default=None, help="text encoding of CSV files, e.g. gb18030 (default: UTF-8)"
    )
    group.add_argument(
        "--delimiter", metavar="C", default=None, help="field separator of CSV files: one character or 'tab' (default: ,)"
    )
    group.add_argument(
        "--min-time",
        metavar="T",
        default=MIN_TIME,
        help=f"earlier timestamps are quarantined as 'impossible timestamp' (default: {MIN_TIME[:10]})",
    )
    group.add_argument(
        "--max-time",
        metavar="T",
        default=MAX_TIME,
        help=f"timestamps from this one on are quarantined as 'impossible timestamp' (default: {MAX_TIME[:10]})",
    )


def input_options(args: argparse.Namespace) -> dict[str, object]:
    """Keyword arguments of :func:`recsys.schema.validate` from :func:`add_input_options`' flags."""
    from recsys.schema import MAX_TIME, MIN_TIME

    return {
        "assume_tz": getattr(args, "assume_tz", None),
        "encoding": getattr(args, "encoding", None),
        "delimiter": getattr(args, "delimiter", None),
        "min_time": getattr(args, "min_time", MIN_TIME),
        "max_time": getattr(args, "max_time", MAX_TIME),
    }


def add_max_rejected_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--max-rejected SHARE``: the share of a table's rows that may be quarantined (default 0.05)."""
    from recsys.schema import DEFAULT_MAX_REJECTED

    parser.add_argument(
        "--max-rejected",
        metavar="SHARE",
        type=float,
        default=DEFAULT_MAX_REJECTED,
        help="fail (exit 2) when more than this share of a table's rows is quarantined, or no event is left "
        f"(default: {DEFAULT_MAX_REJECTED})",
    )


#: times a command-line option may name: the validator's plausible range for data
#: (recsys.schema MIN_TIME / MAX_TIME); outside it a time is a typo, and past 2262 it
#: does not fit the nanosecond timestamps the engine computes with
OPTION_TIME_RANGE = ("1990-01-01T00:00:00Z", "2100-01-01T00:00:00Z")


def parse_option_time(value: str, taxonomy: Taxonomy, *, name: str) -> pd.Timestamp:
    """Parse a time option (``--now``, ``--as-of``): a date (city midnight) or ISO 8601 with an offset.

    Raises
    ------
    ConfigError
        Naming the option and value: unparsable, naive, or outside
        :data:`OPTION_TIME_RANGE`.
    """
    from recsys.exceptions import ConfigError
    from recsys.timeutil import parse_time

    try:
        ts = parse_time(value, taxonomy, name=name)
    except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{name} {value!r} is outside the supported range {_range_text()}") from None
    lo, hi = (pd.Timestamp(x) for x in OPTION_TIME_RANGE)
    if not lo <= ts < hi:
        raise ConfigError(f"{name} {value!r} is outside the supported range {_range_text()}")
    return ts


def _range_text() -> str:
    lo, hi = (x[:10] for x in OPTION_TIME_RANGE)
    return f"{lo} .. {hi} (exclusive)"

