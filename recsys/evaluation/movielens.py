"""A MovieLens-style ratings log as the data contract, with its own taxonomy file.

The public log ``ml-latest-small`` (``ratings.csv``: ``userId, movieId, rating,
timestamp``; ``movies.csv``: ``movieId, title, genres``) becomes the three
contract tables and a taxonomy TOML, so ``recsys evaluate --tune`` runs on it
as on any data set:

- **users**: every user id of the ratings, one audience group (``viewer``) and
  one region (``online``): the log has no demographics;
- **items**: every movie of ``movies.csv``; ``title``; its genres as topics
  (``"Sci-Fi"`` -> ``sci_fi``, ``"(no genres listed)"`` -> ``no_genres``);
  every other column takes its contract default (format ``article``, approved,
  no publish or expiry time);
- **events**: every rating is a ``click`` at its Unix-seconds time (UTC), whatever
  its stars: rating a movie is the log's engagement.

The files may or may not have a header row (the copy in ``../shared/data`` has
none although its README says so): a first row whose id field is not an integer
is taken for a header. Ratings of a movie missing from ``movies.csv`` are kept
in the events table; the validator quarantines them as ``unknown item``.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.exceptions import SchemaError
from recsys.io import atomic_dir, write_json, write_parquet

GROUP = "viewer"
REGION = "online"
NO_GENRES = "(no genres listed)"
NO_GENRES_CODE = "no_genres"
TAXONOMY_FILE = "taxonomy.toml"
#: written beside the tables; a destination holding it was made by this converter
MANIFEST_FILE = "conversion.json"

RATINGS_COLUMNS = ("userId", "movieId", "rating", "timestamp")
MOVIES_COLUMNS = ("movieId", "title", "genres")


@dataclass(frozen=True)
class Converted:
    """Where the converted data set went and what it holds.

    Attributes
    ----------
    folder : Path
        The data folder (``users/items/events.parquet``).
    taxonomy : Path
        Its taxonomy TOML.
    users, items, events : int
        Rows written.
    topics : tuple of str
        Topic codes, sorted.
    """

    folder: Path
    taxonomy: Path
    users: int
    items: int
    events: int
    topics: tuple[str, ...]


def genre_code(name: str) -> str:
    """The topic code of a genre name: lowercase snake_case (``"Sci-Fi"`` -> ``"sci_fi"``).

    Raises
    ------
    SchemaError
        If nothing of the name survives (no letter or digit).
    """
    if name.strip() == NO_GENRES:
        return NO_GENRES_CODE
    code = re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")
    if not code:
        raise SchemaError(f"genre {name!r} has no letter or digit to make a topic code from")
    return code


def _has_header(path: Path, id_column: str) -> bool:
    """True when the file's first row is a header (its id field is not an integer)."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        first = next(csv.reader(fh), None)
    if not first:
        raise SchemaError(f"{path}: empty file")
    field0 = first[0].strip()
    if field0 == id_column:
        return True
    return not field0.isdigit()


def _read(path: Path, names: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise SchemaError(f"{path}: file not found (expected a MovieLens {path.name})")
    header = 0 if _has_header(path, names[0]) else None
    try:
        frame = pd.read_csv(
            path, header=header, names=list(names), dtype=str, keep_default_na=False, encoding="utf-8-sig"
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SchemaError(f"{path}: not a readable CSV with columns {', '.join(names)} ({reason})") from None
    return frame


def read_ratings(path: str | Path) -> pd.DataFrame:
    """Read ``ratings.csv`` (header row optional).

    Returns
    -------
    DataFrame
        ``userId, movieId`` (str), ``rating`` (float64), ``timestamp`` (int64 Unix seconds).

    Raises
    ------
    SchemaError
        If the file is missing or a timestamp or rating is not a number (naming the row).
    """
    p = Path(path)
    frame = _read(p, RATINGS_COLUMNS)
    for col in ("rating", "timestamp"):
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise SchemaError(f"{p}: row {row + 1}: {col}={frame[col].iat[row]!r} is not a number")
        frame[col] = values
    frame["timestamp"] = frame["timestamp"].astype("int64")
    frame["rating"] = frame["rating"].astype("float64")
    return frame


def read_movies(path: str | Path) -> pd.DataFrame:
    """Read ``movies.csv`` (header row optional): ``movieId, title, genres`` as str."""
    return _read(Path(path), MOVIES_COLUMNS)


def taxonomy_toml(topics: list[str], names: dict[str, str], *, name: str = "movielens") -> str:
    """A taxonomy for the converted log: one group, one region, the genres as topics.

    Parameters
    ----------
    topics : list of str
        Topic codes.
    names : dict
        Code -> the genre's own name (used as both ``zh`` and ``en``).
    """
    lines = [
        f'name = "{name}"',
        'timezone = "UTC"                       # MovieLens timestamps are UTC',
        "",
        f"[groups.{GROUP}]",
        'zh = "观众"',
        'en = "Viewers"',
        "",
        f"[regions.{REGION}]",
        'zh = "线上"',
        'en = "Online"',
        "urban = true",
        "",
        "[topics]",
    ]
    for code in topics:
        label = names.get(code, code).replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{code} = {{ zh = "{label}", en = "{label}" }}')
    lines += [
        "",
        "[formats]",
        'article = { zh = "图文", en = "Article" }',
        "",
        "[channels.app]",
        'zh = "手机"',
        'en = "App"',
        "personal = true",
        'formats = ["article"]',
        "",
    ]
    return "\n".join(lines)


def convert_movielens(src: str | Path, dest: str | Path) -> Converted:
    """Convert a MovieLens folder into the data contract plus a taxonomy file.

    Parameters
    ----------
    src : path
        Folder with ``ratings.csv`` and ``movies.csv``.
    dest : path
        Output folder: written whole (atomically); an existing folder is
        replaced only when this converter made it (it holds
        ``conversion.json``), else refused.

    Returns
    -------
    Converted

    Raises
    ------
    SchemaError
        If a file is missing or unreadable, or ``dest`` is a folder this
        converter did not make.
    """
    source = Path(src)
    out = Path(dest)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST_FILE).is_file())):
        raise SchemaError(f"{out}: exists and was not written by the MovieLens converter; give a new or empty folder")
    ratings = read_ratings(source / "ratings.csv")
    movies = read_movies(source / "movies.csv")
    if movies["movieId"].duplicated().any():
        dup = movies.loc[movies["movieId"].duplicated(), "movieId"].iat[0]
        raise SchemaError(f"{source / 'movies.csv'}: movieId {dup!r} appears twice")

    genre_lists = [[g for g in str(text).split("|") if g.strip()] or [NO_GENRES] for text in movies["genres"]]
    names: dict[str, str] = {}
    topic_lists = []
    for genres in genre_lists:
        codes = []
        for g in genres:
            code = genre_code(g)
            names.setdefault(code, g.strip())
            if code not in codes:
                codes.append(code)
        topic_lists.append(codes)
    topics = sorted(names)

    user_ids = np.unique(ratings["userId"].to_numpy(dtype=str))
    users = pd.DataFrame({C.USER_ID: user_ids, C.GROUP: GROUP, C.REGION: REGION})
    items = pd.DataFrame({C.ITEM_ID: movies["movieId"].astype(str), C.TITLE: movies["title"].astype(str)})
    items[C.TOPICS] = topic_lists
    events = pd.DataFrame(
        {
            C.USER_ID: ratings["userId"].astype(str),
            C.ITEM_ID: ratings["movieId"].astype(str),
            C.EVENT_TYPE: "click",
            C.TIMESTAMP: pd.to_datetime(ratings["timestamp"], unit="s", utc=True).dt.as_unit("us"),
        }
    )
    with atomic_dir(out) as tmp:
        write_parquet(users, tmp / "users.parquet")
        write_parquet(items, tmp / "items.parquet")
        write_parquet(events, tmp / "events.parquet")
        (tmp / TAXONOMY_FILE).write_text(taxonomy_toml(topics, names), encoding="utf-8")
        write_json(
            {"source": str(source), "users": len(users), "items": len(items), "events": len(events), "topics": topics},
            tmp / MANIFEST_FILE,
        )
    return Converted(
        folder=out, taxonomy=out / TAXONOMY_FILE, users=len(users), items=len(items), events=len(events),
        topics=tuple(topics),
    )
