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
