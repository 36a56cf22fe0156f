"""Options shared by several sub-commands."""

from __future__ import annotations

import argparse


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


#: ``--force`` of the commands writing an output folder (recsys.io.prepare_output_dir's rule)
FORCE_HELP = (
    "write into an --out folder that holds other files (they are left alone; one named like an output, "
    "or a folder another command marked as its output, refuses the run)"
)
