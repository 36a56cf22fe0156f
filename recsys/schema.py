"""The data contract (shared/CONTRACT.md) and its validator.

Three tables -- users, items, events -- are read from Parquet or CSV
(:func:`find_table`, :func:`read_table`) and checked row by row against the
contract (:func:`validate`, :func:`validate_tables`). The result holds the
clean tables, normalized exactly to the contract so every later module can
rely on types and defaults, and a quarantine table with one reason per
rejected row. Nothing is dropped silently.

A file that cannot be read at all (missing, a folder, not Parquet/CSV, a
damaged Parquet page, text in another encoding, a required column absent --
with the delimiter it seems to use --, no rows) raises
:class:`~recsys.exceptions.SchemaError` with a one-line message naming the
file; a bad *row* never raises, it goes to the quarantine. Data that is
mostly rejected is refused by :meth:`ValidationResult.check_rejected`
(:class:`~recsys.exceptions.DataError`, naming the likely cause): `recsys
validate` calls it, and so should any job before it works on the result.

Every check is a vectorized pandas/numpy operation over whole columns: the
events table runs to tens of millions of rows.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys import columns as C
from recsys.config import is_number
from recsys.exceptions import ConfigError, DataError, SchemaError
from recsys.io import write_parquet
from recsys.taxonomy import Taxonomy, load_taxonomy
from recsys.timeutil import parse_time, parse_zone

KINDS = ("users", "items", "events")
#: file suffix -> format; anything else is refused
SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
#: separator of multi-valued columns in CSV (and in a string cell of a list column)
LIST_SEP = "|"
# Joins the items of a Parquet list so whole lists can be factorized; no code
# or tag contains this control character.
_JOIN = "\x1f"
#: column types of the contract
TYPES = ("id", "text", "code", "codes", "strings", "bool", "timestamp", "float")
QUARANTINE_COLUMNS = (C.Q_TABLE, C.Q_ROW, C.Q_REASON, C.Q_DETAIL, C.Q_RECORD)

# A code list longer than this is cut short in a quarantine detail.
_MAX_VALID_SHOWN = 30
# Rank of each reason: a row keeps the reason with the lowest rank.
_RANK = {reason: rank for rank, reason in enumerate(C.QUARANTINE_REASONS)}
_CLEAN = len(C.QUARANTINE_REASONS)
# An ISO 8601 time followed by a UTC offset (Z, +08, +0800, +08:00).
_OFFSET_RE = r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
_BOOLS = {"true": True, "false": False, "1": True, "0": False}


def _personal_channels(taxonomy: Taxonomy) -> list[str]:
    return list(taxonomy.personal_channels)


@dataclass(frozen=True)
class Column:
    """One column of the contract.

    Attributes
    ----------
    name : str
        Column name (from :mod:`recsys.columns`).
    type : str
        One of :data:`TYPES`: ``id`` (string), ``text`` (free string),
        ``code`` (one code), ``codes`` (list of codes), ``strings`` (list of
        free strings), ``bool``, ``timestamp`` (UTC), ``float``.
    required : bool
        Required columns must be present in the file and non-empty in every
        row (a ``codes`` column needs at least one code).
    codes : str, tuple of str or None
        Valid codes: a taxonomy kind (``"group"``, ``"topic"``, ...) or a
        fixed tuple.
    default : object
        Value of an optional column when absent or null; a callable gets the
        taxonomy. ``None`` means the type's own default ("", [], False, NaT,
        NaN).
    unknown_reason : str
        Quarantine reason of a value outside ``codes``.
    """

    name: str
    type: str
    required: bool = False
    codes: str | tuple[str, ...] | None = None
    default: object = None
    unknown_reason: str = C.R_UNKNOWN_CODE


#: The contract, one tuple of columns per table, in output column order.
CONTRACT: dict[str, tuple[Column, ...]] = {
    "users": (
        Column(C.USER_ID, "id", required=True),
        Column(C.GROUP, "code", required=True, codes="group"),
        Column(C.SUB_GROUP, "code", codes="sub_group"),
        Column(C.REGION, "code", required=True, codes="region"),
        Column(C.AGE_BAND, "code", codes=C.AGE_BANDS),
        Column(C.CHANNELS, "codes", codes="channel", default=_personal_channels),
        Column(C.PUSH_OPT_OUT, "bool"),
        Column(C.REGISTERED_AT, "timestamp"),
    ),
    "items": (
        Column(C.ITEM_ID, "id", required=True),
        Column(C.TITLE, "text", required=True),
        Column(C.SUMMARY, "text"),
        Column(C.TAGS, "strings"),
        Column(C.TOPICS, "codes", required=True, codes="topic"),
        Column(C.FORMAT, "code", codes="format", default="article"),
        Column(C.TARGET_GROUPS, "codes", codes="group"),
        Column(C.TARGET_REGIONS, "codes", codes="region"),
        Column(C.REVIEW_STATUS, "code", codes=C.REVIEW_STATUSES, default="approved"),
        Column(C.AUTHORITY, "code", codes=C.AUTHORITIES, default="other"),
        Column(C.SOURCE, "text"),
        Column(C.PUBLISHED_AT, "timestamp"),
        Column(C.EXPIRES_AT, "timestamp"),
        Column(C.DURATION_SECONDS, "float"),
    ),
    "events": (
        Column(C.EVENT_ID, "id"),
        Column(C.USER_ID, "id", required=True),
        Column(C.ITEM_ID, "id", required=True),
        Column(
            C.EVENT_TYPE, "code", required=True, codes=C.EVENT_TYPES, unknown_reason=C.R_UNKNOWN_EVENT_TYPE
        ),
        Column(C.TIMESTAMP, "timestamp", required=True),
        Column(C.CHANNEL, "code", codes="channel"),
        Column(C.DWELL_SECONDS, "float"),
    ),
    # optional; read by recsys.broadcast.places.load_places, which also parses the audience
    # mix (a JSON object or struct, kept as an extra column here) and refuses a bad row
    "places": (
        Column(C.PLACE_ID, "id", required=True),
        Column(C.CHANNEL, "code", required=True, codes="channel"),
        Column(C.REGION, "code", required=True, codes="region"),
        Column(C.NAME, "text"),
        Column(C.SLOTS_PER_DAY, "float"),
        Column(C.SLOT_SECONDS, "float"),
        Column(C.ACTIVE_HOURS, "text"),
    ),
}

_ARROW_TYPES = {
    "id": pa.string(),
    "text": pa.string(),
    "code": pa.string(),
    "codes": pa.list_(pa.string()),
    "strings": pa.list_(pa.string()),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "float": pa.float64(),
}


def _check_kind(kind: str) -> tuple[Column, ...]:
    if kind not in CONTRACT:
        raise ConfigError(f"unknown table kind {kind!r}; valid: {', '.join(KINDS)}")
    return CONTRACT[kind]


def required_columns(kind: str) -> tuple[str, ...]:
    """Return the names of the required columns of table ``kind``."""
    return tuple(col.name for col in _check_kind(kind) if col.required)


# ---------------------------------------------------------------- reading ----
def find_table(data_dir: str | Path, kind: str) -> Path:
    """Locate ``kind.parquet`` or ``kind.csv`` in ``data_dir``.

    Raises
    ------
    SchemaError
        If the folder is missing, neither file is there, or both are (which
        one was meant would be a guess).
    ConfigError
        If ``kind`` is not one of :data:`KINDS`.
    """
    _check_kind(kind)
    folder = Path(data_dir)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "data folder not found"
        raise SchemaError(f"{folder}: {what}")
    found = [path for path in (folder / f"{kind}.parquet", folder / f"{kind}.csv") if path.exists()]
    if kind == "events" and (folder / kind).is_dir():
        # a log that arrives day by day: one file per day (or per delivery) in events/
        found.append(folder / kind)
    if not found:
        raise SchemaError(f"{folder}: no {kind} table; expected {kind}.parquet or {kind}.csv")
    if len(found) > 1:
        raise SchemaError(f"{folder}: both {' and '.join(p.name for p in found)}; keep only one")
    return found[0]


def event_files(folder: str | Path) -> list[Path]:
    """Return the event files of an ``events/`` folder, sorted by name.

    Raises
    ------
    SchemaError
        If the folder holds no ``.parquet``/``.pq``/``.csv`` file, or files of
        both formats (a CSV is read as text, a Parquet file with its types:
        one table cannot mix them).
    """
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise SchemaError(f"{folder}: no event files; expected {', '.join(SUFFIXES)} files")
    formats = {SUFFIXES[p.suffix.lower()] for p in files}
    if len(formats) > 1:
        raise SchemaError(f"{folder}: holds both Parquet and CSV event files; convert them to one format")
    return files


def read_table(
    path: str | Path, kind: str, *, encoding: str | None = None, delimiter: str | None = None
) -> pd.DataFrame:
    """Read one table file as it is, checking only that it can be used.

    Values are not converted: a CSV is read as strings (empty cell = ``""``),
    a Parquet file with its own types, so a quarantined row can be reported
    as it was. :func:`validate` turns raw tables into clean ones.

    Parameters
    ----------
    path : str or Path
        A ``.parquet`` / ``.pq`` or ``.csv`` file.
    kind : {"users", "items", "events"}
        Which table it is (decides the required columns).
    encoding : str, optional
        Text encoding of a CSV file (any Python codec name, e.g.
        ``gb18030``); default UTF-8, a BOM allowed. Ignored for Parquet.
    delimiter : str, optional
        Field separator of a CSV file: one character, or ``tab``; default
        ``,``. Ignored for Parquet.

    Returns
    -------
    pandas.DataFrame
        One row per source row, in file order, with a RangeIndex.

    Raises
    ------
    SchemaError
        If the file is missing, a folder, has another suffix, cannot be
        parsed (a damaged Parquet file, text in another encoding: the message
        says which encoding it looks like), lacks a required column (the
        message names the delimiter the header seems to use), or has no rows;
        the message names the file.
    ConfigError
        If ``kind`` is not one of :data:`KINDS`, or ``encoding`` /
        ``delimiter`` is invalid.
    """
    _check_kind(kind)
    sep = check_delimiter(delimiter)
    codec = check_encoding(encoding)
    p = Path(path)
    if kind == "events" and p.is_dir():
        # an events/ folder is one table: its files in name order, row numbers counted across them
        parts = [read_table(f, kind, encoding=encoding, delimiter=delimiter) for f in event_files(p)]
        return pd.concat(parts, ignore_index=True)
    fmt = SUFFIXES.get(p.suffix.lower())
    if fmt is None:
        raise SchemaError(f"{p}: unsupported file type {p.suffix!r}; valid: {', '.join(SUFFIXES)}")
    if not p.exists():
        raise SchemaError(f"{p}: file not found")
    if p.is_dir():
        raise SchemaError(f"{p}: is a folder; expected the {kind} table as one {fmt.upper()} file")
    frame = _read_parquet(p) if fmt == "parquet" else _read_csv(p, codec, sep)
    missing = [name for name in required_columns(kind) if name not in frame.columns]
    if missing:
        hint = _delimiter_hint(p, codec, sep, kind) if fmt == "csv" else ""
        raise SchemaError(
            f"{p}: required column {', '.join(map(repr, missing))} absent from the {kind} table; "
            f"required: {', '.join(required_columns(kind))}{hint}"
        )
    if len(frame) == 0:
        raise SchemaError(f"{p}: the {kind} table has no rows (a header only); expected at least one row")
    return frame.reset_index(drop=True)


def check_delimiter(delimiter: str | None) -> str:
    """Return the CSV field separator ``delimiter`` names (``None``: ``,``).

    ``tab`` and the two characters ``\\t`` mean a tab (a shell passes them
    more easily than the character itself).

    Raises
    ------
    ConfigError
        If it is not one character, or is a quote or a line break.
    """
    if delimiter is None:
        return ","
    sep = "\t" if delimiter in ("tab", "\\t") else delimiter
    if not isinstance(sep, str) or len(sep) != 1 or sep in ('"', "\n", "\r"):
        raise ConfigError(
            f"delimiter {delimiter!r} is not a single field-separator character; "
            "e.g. ',', ';', '|' or tab"
        )
    return sep


def check_encoding(encoding: str | None) -> str:
    """Return the Python codec name for a CSV file's ``encoding`` (``None``: UTF-8 with an optional BOM).

    Raises
    ------
    ConfigError
        If Python knows no such encoding.
    """
    if encoding is None:
        return "utf-8-sig"
    try:
        codec = codecs.lookup(str(encoding)).name
    except LookupError:
        raise ConfigError(
            f"encoding {encoding!r} is unknown; valid: a Python codec name such as utf-8, gb18030, gbk, utf-16"
        ) from None
    # A UTF-8 file may start with a BOM; read past it rather than into the first column name.
    return "utf-8-sig" if codec == "utf-8" else codec


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        # Page checksums, where the writer stored them, turn any damaged page into an error
        # (without them a damaged page may decode into plausible or impossible values).
        return pq.read_table(path, page_checksum_verification=True).to_pandas()
    except Exception as exc:  # noqa: BLE001 - see below
        # A damaged file can fail anywhere in Arrow's decoding (ArrowInvalid,
        # OSError, IndexError, OverflowError, ...); whatever the type, the file
        # is the culprit and the user needs its name, not a traceback.
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SchemaError(f"{path}: not a readable Parquet file ({reason})") from None


def _read_csv(path: Path, encoding: str, delimiter: str) -> pd.DataFrame:
    try:
        with warnings.catch_warnings():
            # pandas only warns when a row has more fields than the header, and drops them
            warnings.simplefilter("error", pd.errors.ParserWarning)
            # Strings only, no NA guessing: "NA" or "null" may be real ids; an
            # empty cell stays "" and each column type decides what empty means.
            # index_col=False: extra fields never turn silently into an index.
            frame = pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                encoding=encoding,
                sep=delimiter,
                index_col=False,
            )
    except pd.errors.EmptyDataError:
        raise SchemaError(f"{path}: empty file, no header row") from None
    except UnicodeError as exc:
        raise SchemaError(f"{path}: {_encoding_problem(path, encoding, exc)}") from None
    except pd.errors.ParserWarning:
        raise SchemaError(
            f"{path}: not a readable CSV file (a row has more fields than the header; check --delimiter and quoting)"
        ) from None
    except (pd.errors.ParserError, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SchemaError(f"{path}: not a readable CSV file ({reason})") from None
    header = _csv_header(path, encoding, delimiter)
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        # pandas would rename the second copy "name.1": which one holds the data is a guess
        raise SchemaError(f"{path}: column {', '.join(map(repr, repeated))} appears more than once in the header")
    return frame


def _csv_header(path: Path, encoding: str, delimiter: str) -> list[str]:
    """The header row's names as a CSV reader splits them ([] if unreadable)."""
    try:
        with open(path, encoding=encoding, errors="replace", newline="") as fh:
            return next(csv.reader(fh, delimiter=delimiter), [])
    except (OSError, csv.Error):
        return []


# Bytes read to guess an encoding or a delimiter: enough for many rows.
_SNIFF_BYTES = 1 << 16
# Field separators recognised in a header that did not split.
_DELIMITERS = (",", ";", "\t", "|")


def _encoding_problem(path: Path, encoding: str, exc: UnicodeError) -> str:
    """Say which encoding the file is not, and which one it looks like."""
    shown = "UTF-8" if encoding == "utf-8-sig" else encoding
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        guess = "utf-16"
    else:
        guess = ""
        for codec in ("gb18030", "big5"):
            try:
                text = codecs.getincrementaldecoder(codec)().decode(head, final=False)
            except UnicodeError:
                continue
            if re.search(r"[\u4e00-\u9fff]", text):
                guess = codec
                break
    if guess == "gb18030" and encoding != "gb18030":
        return (
            f"not {shown} text; it looks like GBK/GB18030 -- pass --encoding gb18030 "
            f"or convert it with iconv -f GB18030 -t UTF-8"
        )
    if guess and guess != encoding:
        return f"not {shown} text; it looks like {guess} -- pass --encoding {guess} or convert it to UTF-8"
    where = f" (byte {exc.start})" if isinstance(exc, UnicodeDecodeError) else ""
    return f"not {shown} text{where}; pass --encoding NAME with the file's encoding, or convert it to UTF-8"


def _delimiter_hint(path: Path, encoding: str, delimiter: str, kind: str) -> str:
    """``"; the delimiter looks like ';' ..."`` when another separator splits the header into the required columns."""
    required = set(required_columns(kind))

    def found(sep: str) -> int:
        return len(required & {name.strip() for name in _csv_header(path, encoding, sep)})

    best = max((sep for sep in _DELIMITERS if sep != delimiter), key=found)
    if found(best) <= found(delimiter):
        return ""
    name = "tab" if best == "\t" else repr(best)
    return f"; the delimiter looks like {name}, not {delimiter!r} -- pass --delimiter {name}"


# ------------------------------------------------------------- rejections ----
class _Rejections:
    """The one reason per row: the lowest rank in QUARANTINE_REASONS wins.

    Checks may be added in any order; a detail is built only for the rows
    whose reason it sets, so it may cost a Python call per rejected row.
    """

    def __init__(self, n: int) -> None:
        self.rank = np.full(n, _CLEAN, dtype=np.int16)
        self.detail = np.full(n, "", dtype=object)

    def add(self, reason: str, mask: np.ndarray | pd.Series, detail: Callable[[np.ndarray], list[str]]) -> None:
        rank = _RANK[reason]
        hit = np.flatnonzero(np.asarray(mask, dtype=bool) & (self.rank > rank))
        if hit.size:
            self.rank[hit] = rank
            self.detail[hit] = detail(hit)

    @property
    def clean(self) -> np.ndarray:
        return self.rank == _CLEAN


def _valid_text(valid: tuple[str, ...] | list[str]) -> str:
    shown = ", ".join(valid[:_MAX_VALID_SHOWN])
    return shown + (", ..." if len(valid) > _MAX_VALID_SHOWN else "")


def _value_detail(name: str, values: pd.Series, note: str) -> Callable[[np.ndarray], list[str]]:
    """Detail ``name='value'; note`` for the given row positions."""
    return lambda pos: [f"{name}={v!r}; {note}" for v in values.iloc[pos].tolist()]


# ------------------------------------------------------ column converters ----
def _isin(values: pd.Series, valid: pd.Series | tuple[str, ...] | list[str]) -> np.ndarray:
    """Bool array: is each string of ``values`` in ``valid``?

    Done in Arrow: pandas' ``isin`` on Arrow strings walks ``valid`` in
    Python, slow for a set of millions of user ids.
    """
    value_set = pa.array(list(valid) if isinstance(valid, (tuple, list)) else valid, type=pa.string())
    found = pc.is_in(pa.array(values, type=pa.string()), value_set=value_set)
    return found.fill_null(False).to_numpy(zero_copy_only=False)


def _blank(values: pd.Series) -> np.ndarray:
    """Bool array: is each string empty or whitespace only (``values.str.strip() == ""``)?

    Done in Arrow without building the stripped copy of every string.
    """
    text = pa.array(values, type=pa.large_string(), from_pandas=True)
    blank = pc.or_(pc.equal(pc.utf8_length(text), 0), pc.utf8_is_space(text))
    return blank.fill_null(True).to_numpy(zero_copy_only=False)


def _as_str(raw: pd.Series) -> pd.Series:
    """Values as ``str`` with "" for null; integral floats lose their ``.0``."""
    if pd.api.types.is_float_dtype(raw.dtype):
        whole = raw.dropna()
        if (np.isfinite(whole) & (whole == np.floor(whole))).all():
            raw = raw.astype("Int64")
    null = raw.isna().to_numpy()
    text = raw.astype(str)
    # pandas before 3 turns None into "None" and NaN into "nan": a null is empty whatever the version
    return text.where(~null, "") if null.any() else text


def _as_lists(raw: pd.Series, fill: list[str]) -> tuple[pd.Series, np.ndarray]:
    """Values as Python lists of str (a copy of ``fill`` where null); the null mask.

    A string is split on ``|`` (CSV, or a string cell in Parquet) and an
    empty string is null; a list (Parquet ``list<string>``) is taken as is,
    an empty list staying empty. Items are stripped, empty items dropped.
    """
    if pd.api.types.infer_dtype(raw, skipna=True) in ("string", "empty"):
        text, sep = _as_str(raw), LIST_SEP
        null = (text.str.strip() == "").to_numpy()  # CSV cannot tell empty from null
    else:
        try:
            lists = pa.array(raw, type=pa.list_(pa.string()), from_pandas=True)
        except pa.ArrowException:
            # Mixed cells (strings beside lists, numbers): one at a time.
            null = raw.isna().to_numpy()
            out = [list(fill) if nul else _to_list(v) for v, nul in zip(raw.tolist(), null.tolist())]
            return pd.Series(out, index=raw.index, dtype=object), null
        null = lists.is_null().to_numpy(zero_copy_only=False)
        text, sep = pd.Series(pc.binary_join(lists, _JOIN).fill_null(""), index=raw.index), _JOIN
    # Parse each distinct value once: a users table repeats a handful of
    # channel combinations millions of times.
    codes, uniques = pd.factorize(text.where(~null))
    parsed = [_split(u, sep) for u in uniques]
    # A fresh list per row, never shared: a caller may mutate one cell.
    out = [list(fill) if c < 0 else list(parsed[c]) for c in codes.tolist()]
    return pd.Series(out, index=raw.index, dtype=object), null


def _split(text: str, sep: str = LIST_SEP) -> list[str]:
    return [part.strip() for part in text.split(sep) if part.strip()]


def _to_list(value: object) -> list[str]:
    if isinstance(value, str):
        return _split(value)
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v).strip() for v in value if v is not None and str(v).strip()]
    return _split(str(value))


def _as_bool(raw: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Return (values, null mask, bad mask) for a bool column."""
    if pd.api.types.is_bool_dtype(raw.dtype):
        null = raw.isna().to_numpy()
        return raw.fillna(False).astype(bool), null, np.zeros(len(raw), dtype=bool)
    text = _as_str(raw).str.strip().str.lower()
    null = (text == "").to_numpy()
    bad = ~null & ~_isin(text, list(_BOOLS))
    values = pd.Series(_isin(text, [k for k, v in _BOOLS.items() if v]), index=raw.index)
    return values, null, bad


def _as_float(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Return (float64 values, bad mask); empty and null become NaN."""
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        return raw.astype("float64"), np.zeros(len(raw), dtype=bool)
    text = _as_str(raw).str.strip()
    values = pd.to_numeric(text.where(text != ""), errors="coerce").astype("float64")
    bad = (text != "").to_numpy() & values.isna().to_numpy()
    return values, bad


def _as_timestamps(
    raw: pd.Series, assume_tz: ZoneInfo | None = None
) -> tuple[pd.Series, np.ndarray, np.ndarray, np.ndarray]:
    """Return (datetime64[us, UTC] values, null, unparsable, naive masks).

    Accepted: a tz-aware datetime column; Unix seconds (integers); strings in
    ISO 8601 with an offset, or integer Unix seconds. A datetime column
    without a time zone makes every non-null row naive. With ``assume_tz``
    naive values are read as local times there instead; only those that do
    not exist there or are ambiguous (a daylight-saving gap or overlap) stay
    naive.
    """
    n = len(raw)
    none = np.zeros(n, dtype=bool)
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        null = raw.isna().to_numpy()
        return raw.dt.tz_convert("UTC").dt.as_unit("us"), null, none, none
    if pd.api.types.is_datetime64_dtype(raw.dtype):
        null = raw.isna().to_numpy()
        values = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
        if assume_tz is not None:
            values = _localize(raw, assume_tz)
            return values, null, none, ~null & values.isna().to_numpy()
        return values, null, none, ~null
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        null = raw.isna().to_numpy()
        values = pd.to_datetime(raw, unit="s", utc=True, errors="coerce").dt.as_unit("us")
        return values, null, ~null & values.isna().to_numpy(), none

    text = _as_str(raw).str.strip()
    null = (text == "").to_numpy()
    is_int = text.str.fullmatch(r"[+-]?\d+").to_numpy(dtype=bool)
    is_iso = ~null & ~is_int
    values = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
    if is_int.any():
        seconds = pd.to_numeric(text[is_int], errors="coerce")
        values.loc[is_int] = pd.to_datetime(seconds, unit="s", utc=True, errors="coerce").dt.as_unit("us")
    if is_iso.any():
        # utc=True parses naive strings as UTC too; the offset test below
        # tells them apart, after parsing, so garbage counts as unparsable.
        iso = pd.to_datetime(text[is_iso], utc=True, format="ISO8601", errors="coerce")
        values.loc[is_iso] = iso.dt.as_unit("us")
    parsed = values.notna().to_numpy()
    unparsable = ~null & ~parsed
    naive = is_iso & parsed & ~text.str.contains(_OFFSET_RE, regex=True).to_numpy(dtype=bool)
    if assume_tz is not None and naive.any():
        local = pd.to_datetime(text[naive], format="ISO8601", errors="coerce")
        values.loc[naive] = _localize(local, assume_tz)
        naive = naive & values.isna().to_numpy()
    return values, null, unparsable, naive


def _localize(naive: pd.Series, zone: ZoneInfo) -> pd.Series:
    """Naive date-times read as local times in ``zone``, as UTC; NaT where none or two instants fit."""
    local = naive.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
    return local.dt.tz_convert("UTC").dt.as_unit("us")


def _iso_utc(values: pd.Series) -> list[str]:
    """UTC timestamps as ISO strings, through numpy: pandas cannot format years outside 1..9999."""
    naive = values.dt.tz_convert(None).to_numpy(dtype="datetime64[us]")
    return [f"{t}Z" for t in np.datetime_as_string(naive, unit="s")]


# ----------------------------------------------------------- table checks ----
@dataclass(frozen=True)
class _Context:
    """What one validation run checks against (built once by :func:`validate_tables`)."""

    taxonomy: Taxonomy
    end: pd.Timestamp
    min_time: pd.Timestamp
    max_time: pd.Timestamp
    assume_tz: ZoneInfo | None = None


def _valid_codes(col: Column, taxonomy: Taxonomy) -> tuple[str, ...]:
    if isinstance(col.codes, str):
        return taxonomy.codes(col.codes)
    return tuple(col.codes or ())


def _default(col: Column, taxonomy: Taxonomy) -> object:
    if callable(col.default):
        return col.default(taxonomy)
    return col.default


def _convert_strings(source: pd.Series, col: Column, ctx: _Context, rej: _Rejections) -> pd.Series:
    """An id, text or code column: ``str`` values, default where empty."""
    name, taxonomy = col.name, ctx.taxonomy
    values = _as_str(source)
    empty = _blank(values)
    if col.required:
        rej.add(C.R_MISSING, empty, lambda pos: [f"{name} is empty"] * len(pos))
    if col.type == "code":
        valid = _valid_codes(col, taxonomy)
        unknown = ~empty & ~_isin(values, valid)
        rej.add(col.unknown_reason, unknown, _value_detail(name, values, f"valid: {_valid_text(valid)}"))
    default = _default(col, taxonomy)
    return values if default is None or not empty.any() else values.where(~empty, default)


def _convert_lists(source: pd.Series, col: Column, ctx: _Context, rej: _Rejections) -> pd.Series:
    """A codes or strings column: Python lists of ``str``, default where null."""
    name, taxonomy = col.name, ctx.taxonomy
    default = _default(col, taxonomy)
    values, null = _as_lists(source, list(default) if default is not None else [])
    if col.required:
        empty = null | (values.map(len) == 0).to_numpy()
        rej.add(C.R_MISSING, empty, lambda pos: [f"{name} is empty; at least one code needed"] * len(pos))
    if col.type == "codes":
        valid = _valid_codes(col, taxonomy)
        flat = values.explode()  # one row per list item, index = source row
        bad = flat[flat.notna() & ~flat.isin(valid)]
        first_bad = bad.groupby(level=0, sort=False).first()
        mask = np.zeros(len(source), dtype=bool)
        mask[first_bad.index.to_numpy()] = True
        rej.add(
            col.unknown_reason,
            mask,
            lambda pos: [f"{name} has {v!r}; valid: {_valid_text(valid)}" for v in first_bad.loc[pos].tolist()],
        )
    return values


def _convert_bool(source: pd.Series, col: Column, ctx: _Context, rej: _Rejections) -> pd.Series:
    """A bool column; null is the contract's default, false."""
    values, _, bad = _as_bool(source)
    rej.add(C.R_UNKNOWN_CODE, bad, _value_detail(col.name, source, "valid: true, false, 1, 0"))
    return values


def _convert_float(source: pd.Series, col: Column, ctx: _Context, rej: _Rejections) -> pd.Series:
    """A float column; null is NaN."""
    values, bad = _as_float(source)
    rej.add(C.R_UNKNOWN_CODE, bad, _value_detail(col.name, source, "not a number"))
    return values


def _convert_timestamps(source: pd.Series, col: Column, ctx: _Context, rej: _Rejections) -> pd.Series:
    """A timestamp column: ``datetime64[us, UTC]``, null is NaT.

    A time outside ``[ctx.min_time, ctx.max_time)`` is "impossible" (a
    zeroed clock, a unit mistake, a damaged file) and becomes NaT here, so no
    later step meets a year pandas cannot print.
    """
    name = col.name
    values, null, unparsable, naive = _as_timestamps(source, ctx.assume_tz)
    if col.required:
        rej.add(C.R_MISSING, null, lambda pos: [f"{name} is empty"] * len(pos))
    rej.add(
        C.R_UNPARSABLE_TS,
        unparsable,
        _value_detail(name, source, "not ISO 8601 with an offset nor integer Unix seconds"),
    )
    if ctx.assume_tz is None:
        note = "no UTC offset; add one such as +08:00 or Z (or pass --assume-tz ZONE)"
    else:
        note = f"no UTC offset, and not one instant in {ctx.assume_tz.key} (a daylight-saving gap or overlap)"
    rej.add(C.R_NAIVE_TS, naive, _value_detail(name, source, note))
    outside = ((values < ctx.min_time) | (values >= ctx.max_time)).to_numpy(dtype=bool)
    if outside.any():
        shown = _iso_utc(values.where(pd.Series(outside, index=values.index)))
        bounds = f"valid: {ctx.min_time.isoformat()} up to {ctx.max_time.isoformat()}"
        rej.add(
            C.R_IMPOSSIBLE_TS,
            outside,
            lambda pos: [f"{name}={shown[p]!r}; {bounds} (set by --min-time/--max-time)" for p in pos.tolist()],
        )
        values = values.mask(pd.Series(outside, index=values.index))
    return values


_CONVERTERS = {
    "id": _convert_strings,
    "text": _convert_strings,
    "code": _convert_strings,
    "codes": _convert_lists,
    "strings": _convert_lists,
    "bool": _convert_bool,
    "float": _convert_float,
    "timestamp": _convert_timestamps,
}


def _convert_column(raw: pd.DataFrame, col: Column, ctx: _Context, rej: _Rejections) -> pd.Series:
    """Return the normalized column, recording its row problems in ``rej``."""
    if col.name in raw.columns:
        source = raw[col.name]
        if isinstance(source.dtype, pd.CategoricalDtype):
            # a dictionary-encoded Parquet column: its values, as if stored plainly
            source = source.astype(object)
    else:  # an absent optional column: every row null, so every row gets the default
        source = pd.Series([None] * len(raw), index=raw.index, dtype=object)
    return _CONVERTERS[col.type](source, col, ctx, rej)


def _repeats(group: np.ndarray, compete: np.ndarray, other: np.ndarray | None = None) -> np.ndarray:
    """For each competing row repeating an earlier competing row's ``group``: that row; else -1.

    With ``other``, a repeat counts only where ``other`` differs from the
    earlier row's (an id reused for different content).
    """
    first_of = np.full(len(group), -1, dtype=np.int64)
    pos = np.flatnonzero(compete)
    if pos.size == 0:
        return first_of
    codes = np.asarray(group[pos], dtype=np.int64)
    lo, hi = int(codes.min()), int(codes.max())
    if hi - lo <= 4 * len(codes):
        # dense codes (a factorization): each code's first competing row in one pass, no sort
        firsts = np.empty(hi - lo + 1, dtype=np.int64)
        firsts[codes[::-1] - lo] = pos[::-1]  # the last write wins: the first row of each code
        first = firsts[codes - lo]
    else:
        _, first_idx, inverse = np.unique(codes, return_index=True, return_inverse=True)
        first = pos[first_idx[inverse]]
    repeat = first != pos
    if other is not None:
        repeat &= other[first] != other[pos]
    first_of[pos[repeat]] = first[repeat]
    return first_of


def _add_repeats(rej: _Rejections, reason: str, first_of: np.ndarray, values: pd.Series | None, label: str) -> None:
    """Reject the rows ``first_of`` marks, naming the row they repeat."""

    def detail(hit: np.ndarray) -> list[str]:
        rows = first_of[hit].tolist()
        if values is None:
            return [f"same {label} repeats row {r}" for r in rows]
        return [f"{label}={v!r} repeats row {r}" for v, r in zip(values.iloc[hit].tolist(), rows)]

    rej.add(reason, first_of >= 0, detail)


def _check_users(clean: dict[str, pd.Series], taxonomy: Taxonomy, rej: _Rejections) -> None:
    group, sub = clean[C.GROUP], clean[C.SUB_GROUP]
    owner = sub.map(taxonomy.sub_groups)
    outside = (owner.notna() & (owner != group)).to_numpy(dtype=bool)

    def detail(pos: np.ndarray) -> list[str]:
        out = []
        for s, g in zip(sub.iloc[pos].tolist(), group.iloc[pos].tolist()):
            valid = _valid_text([k for k, v in taxonomy.sub_groups.items() if v == g])
            out.append(f"sub_group={s!r} belongs to {taxonomy.sub_groups[s]!r}, not {g!r}; valid: {valid}")
        return out

    rej.add(C.R_SUB_GROUP, outside, detail)


def _check_events(clean: dict[str, pd.Series], end: pd.Timestamp, rej: _Rejections) -> None:
    ts, dwell, etype = clean[C.TIMESTAMP], clean[C.DWELL_SECONDS], clean[C.EVENT_TYPE]

    def after_end(pos: np.ndarray) -> list[str]:
        return [f"timestamp={t.isoformat()!r}; after the data's end {end.isoformat()}" for t in ts.iloc[pos]]

    rej.add(C.R_FUTURE_TS, (ts > end).to_numpy(dtype=bool), after_end)
    negative = (dwell < 0).to_numpy(dtype=bool)
    rej.add(C.R_NEGATIVE_DWELL, negative, _value_detail(C.DWELL_SECONDS, dwell, "must be >= 0"))
    off_type = dwell.notna().to_numpy() & ~_isin(etype, C.DWELL_EVENT_TYPES)
    rej.add(
        C.R_DWELL_TYPE,
        off_type,
        _value_detail(C.EVENT_TYPE, etype, f"dwell_seconds only on {', '.join(C.DWELL_EVENT_TYPES)}"),
    )


def _add_unknown_refs(
    rej: _Rejections, ids: pd.Series, valid: pd.Series, raw_ids: pd.Series, reason: str, name: str
) -> None:
    unknown = ~_isin(ids, valid)

    def detail(pos: np.ndarray) -> list[str]:
        # only for the rejected rows: is the id in the table at all (then its row was quarantined)?
        named = ids.iloc[pos]
        quarantined = _isin(named, raw_ids)
        why = {True: "its row is quarantined", False: "not in the table"}
        return [f"{name}={v!r}; {why[bool(q)]}" for v, q in zip(named.tolist(), quarantined.tolist())]

    rej.add(reason, unknown, detail)


def _records(raw: pd.DataFrame, pos: np.ndarray) -> list[str]:
    """The source rows at ``pos`` as JSON strings (vectorized by pandas)."""
    if pos.size == 0:
        return []
    text = raw.iloc[pos].to_json(
        orient="records", lines=True, date_format="iso", date_unit="us", force_ascii=False, default_handler=str
    )
    # JSON escapes newlines inside strings, so "\n" separates records only.
    return text.rstrip("\n").split("\n")


def _validate_table(
    kind: str,
    raw: pd.DataFrame,
    ctx: _Context,
    refs: dict[str, tuple[pd.Series, pd.Series]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (clean table, quarantine rows) of one table.

    ``refs`` maps an id column to (valid ids, all ids in the source table),
    for the events' cascade.
    """
    columns = CONTRACT[kind]
    missing = [c.name for c in columns if c.required and c.name not in raw.columns]
    if missing:
        raise SchemaError(
            f"{kind} table: required column {', '.join(map(repr, missing))} absent; "
            f"required: {', '.join(required_columns(kind))}"
        )
    raw = raw.reset_index(drop=True)
    rej = _Rejections(len(raw))
    clean = {col.name: _convert_column(raw, col, ctx, rej) for col in columns}
    if kind == "users":
        _check_users(clean, ctx.taxonomy, rej)
    elif kind == "items":
        _check_positive(clean[C.DURATION_SECONDS], C.DURATION_SECONDS, rej)
    elif kind == "events":
        _check_events(clean, ctx.end, rej)
    # Duplicates and then references come last in QUARANTINE_REASONS: only
    # rows that passed every other check compete for "first occurrence".
    _check_duplicates(kind, clean, rej)
    if kind == "events":
        clean[C.EVENT_ID] = _fill_event_ids(clean[C.EVENT_ID])
        for name, reason in ((C.USER_ID, C.R_UNKNOWN_USER), (C.ITEM_ID, C.R_UNKNOWN_ITEM)):
            if refs and name in refs:
                _add_unknown_refs(rej, clean[name], *refs[name], reason, name)
    return _clean_frame(raw, clean, columns, rej.clean), _quarantine_frame(kind, raw, rej)


def _check_positive(values: pd.Series, name: str, rej: _Rejections) -> None:
    """An optional float that must be > 0 where given (a duration): else "unknown code", like a non-number."""
    bad = (values.notna() & ~((values > 0) & np.isfinite(values))).to_numpy(dtype=bool)
    rej.add(C.R_UNKNOWN_CODE, bad, _value_detail(name, values, "must be a number > 0"))


#: the id column of each table whose rows have one
_ID_COLUMNS = {"users": C.USER_ID, "items": C.ITEM_ID, "places": C.PLACE_ID}


def _check_duplicates(kind: str, clean: dict[str, pd.Series], rej: _Rejections) -> None:
    """Reject repeats among the rows still clean, keeping the first.

    Only rows that passed every earlier check compete, so a bad first copy
    does not knock out a good later one.
    """
    if kind in _ID_COLUMNS:
        id_col = _ID_COLUMNS[kind]
        ids = clean[id_col]
        _add_repeats(rej, C.R_DUPLICATE_ID, _repeats(pd.factorize(ids)[0], rej.clean), ids, id_col)
        return
    # An event is its (user, item, type, instant): a row repeating an earlier
    # row's content is a "duplicate event" whatever its event_id (a plain copy
    # included); an event_id reused for other content is a "duplicate id".
    key = [C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP]
    ids = clean[C.EVENT_ID]
    has_id = (ids != "").to_numpy()
    id_hash, content_hash = _event_hashes(ids, [clean[k] for k in key])

    def content(rows: np.ndarray) -> np.ndarray:
        return _row_codes([clean[k].iloc[rows] for k in key])

    def same_id(rows: np.ndarray) -> np.ndarray:
        return pd.factorize(ids.iloc[rows])[0]

    reused = _hash_repeats(id_hash, rej.clean & has_id, same_id, other=content)
    _add_repeats(rej, C.R_DUPLICATE_ID, reused, ids, C.EVENT_ID)
    _add_repeats(rej, C.R_DUPLICATE_EVENT, _hash_repeats(content_hash, rej.clean, content), None, f"({', '.join(key)})")


def _event_hashes(ids: pd.Series, key: list[pd.Series]) -> tuple[np.ndarray, np.ndarray]:
    """A 64-bit hash of each event's id and of its content (the ``key`` columns), uint64.

    Computed by DuckDB over the columns as Arrow arrays (no copy, every core): hashing
    millions of distinct ids into a table (a factorization) cost most of a city's validation.
    Equal values hash equally; a hash says nothing more (the callers check candidates exactly).
    """
    import duckdb  # heavy: duckdb (~0.2 s) loads when an events table is validated, not with the contract

    table = pa.table({"e": pa.array(ids, from_pandas=True), **{f"k{j}": pa.array(col, from_pandas=True)
                                                                 for j, col in enumerate(key)}})
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        con.register("events_table", table)
        columns = ", ".join(f"k{j}" for j in range(len(key)))
        out = con.execute(f"SELECT hash(e) AS e, hash({columns}) AS k FROM events_table").fetchnumpy()
    finally:
        con.close()
    return np.asarray(out["e"], dtype=np.uint64), np.asarray(out["k"], dtype=np.uint64)


def _hash_repeats(
    hashes: np.ndarray,
    compete: np.ndarray,
    exact: Callable[[np.ndarray], np.ndarray],
    other: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """:func:`_repeats` of the rows' values, found through a hash of each row's value.

    Only competing rows whose hash occurs twice can repeat one another (one sort of the
    hashes finds them); among those few candidates ``exact(rows)`` gives codes equal
    exactly where the values are (a hash collision is told apart there), and
    ``other(rows)`` the codes :func:`_repeats` compares.
    """
    first_of = np.full(len(hashes), -1, dtype=np.int64)
    pos = np.flatnonzero(compete)
    if pos.size < 2:
        return first_of
    h = hashes[pos]
    ordered = np.sort(h)
    twice = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    if twice.size == 0:
        return first_of
    cand = pos[np.isin(h, twice)]
    sub = _repeats(exact(cand), np.ones(len(cand), dtype=bool), None if other is None else other(cand))
    hit = sub >= 0
    first_of[cand[hit]] = cand[sub[hit]]
    return first_of


def _row_codes(columns: list[pd.Series]) -> np.ndarray:
    """One int64 code per row, equal exactly where every column is equal (missing equals missing).

    What a groupby's ``ngroup`` over the columns gives, at half its cost on a city's log: each
    column becomes integers (factorized strings; a timestamp's own int64), the integers are
    mixed into one 64-bit hash per row, and the hashes are factorized. A hash collision could
    join two different rows, so every row is checked against the first row of its code; on a
    mismatch (never seen in practice) the exact groupby answers instead.
    """
    parts = []
    for column in columns:
        if isinstance(column.dtype, pd.DatetimeTZDtype) or column.dtype.kind == "M":
            parts.append(np.asarray(column.array.asi8).view(np.uint64))  # NaT is one value, as in a groupby
        else:
            parts.append(pd.factorize(column, use_na_sentinel=False)[0].astype(np.uint64))
    mixed = np.zeros(len(columns[0]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for values in parts:
            mixed = mixed * np.uint64(0x9E3779B97F4A7C15) + values  # wraps modulo 2**64
    codes = pd.factorize(mixed)[0]
    first = np.empty(codes.max() + 1 if len(codes) else 0, dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)  # the last write wins: each code's first row
    if all(np.array_equal(values[first[codes]], values) for values in parts):
        return codes
    frame = pd.DataFrame({i: column for i, column in enumerate(columns)})
    return frame.groupby(list(frame.columns), sort=False, dropna=False).ngroup().to_numpy()


def _fill_event_ids(event_ids: pd.Series) -> pd.Series:
    """An event without an id gets "e<row>": the same on every run over the same file."""
    empty = (event_ids == "").to_numpy(dtype=bool)
    if not empty.any():
        return event_ids
    rows = np.flatnonzero(empty)
    out = event_ids.copy()
    out.iloc[rows] = ["e" + str(r) for r in rows.tolist()]
    return out


def _clean_frame(
    raw: pd.DataFrame, clean: dict[str, pd.Series], columns: tuple[Column, ...], keep: np.ndarray
) -> pd.DataFrame:
    """Contract columns in contract order, then the extra source columns; kept rows only."""
    table = pd.DataFrame(clean)
    names = {c.name for c in columns}
    extras = [c for c in raw.columns if c not in names]
    if extras:
        table = pd.concat([table, raw[extras]], axis=1)
    if keep.all():
        return table.reset_index(drop=True)  # nothing rejected: no copy of every column
    return table[keep].reset_index(drop=True)


def _quarantine_frame(kind: str, raw: pd.DataFrame, rej: _Rejections) -> pd.DataFrame:
    pos = np.flatnonzero(~rej.clean)
    return pd.DataFrame(
        {
            C.Q_TABLE: pd.Series([kind] * pos.size, dtype=str),
            C.Q_ROW: pos.astype(np.int64),
            C.Q_REASON: pd.Series([C.QUARANTINE_REASONS[r] for r in rej.rank[pos]], dtype=str),
            C.Q_DETAIL: pd.Series(rej.detail[pos], dtype=str),
            C.Q_RECORD: pd.Series(_records(raw, pos), dtype=str),
        }
    )


# ----------------------------------------------------------------- result ----
#: Default of the share of a table's rows that may be quarantined before the
#: data as a whole is refused (``recsys validate --max-rejected``).
DEFAULT_MAX_REJECTED = 0.05
#: Default bounds of a possible timestamp: earlier or later ones (a zeroed
#: clock, milliseconds read as seconds, a damaged file) are "impossible".
MIN_TIME = "1990-01-01T00:00:00Z"
MAX_TIME = "2100-01-01T00:00:00Z"
# The quarantine reasons that follow from another table's rejected row.
_CASCADES = {C.R_UNKNOWN_USER: "users", C.R_UNKNOWN_ITEM: "items"}


@dataclass
class ValidationResult:
    """Clean tables and the quarantine of one validation run.

    Attributes
    ----------
    users, items, events : pandas.DataFrame
        Clean tables normalized to the contract: every contract column
        present (defaults filled), ids and codes ``str``, list columns
        Python lists of ``str``, ``push_opt_out`` bool, timestamps
        ``datetime64[us, UTC]``, ``dwell_seconds`` float64 (NaN = none);
        extra source columns kept after them. RangeIndex.
    quarantine : pandas.DataFrame
        One row per rejected source row: ``table``, ``row`` (0-based row in
        the source table, int64), ``reason`` (one of
        ``recsys.columns.QUARANTINE_REASONS``), ``detail``, ``record`` (the
        source row as JSON).
    end : pandas.Timestamp
        The data's end (UTC) used for "future timestamp".
    rows_read : dict[str, int]
        Rows in each source table.
    taxonomy_source : str
        Which taxonomy the codes were checked against (a path, or the
        bundled default), for messages.
    timezone : str
        The taxonomy's time zone (suggested for naive timestamps).
    assume_tz : str or None
        The zone naive timestamps were read in, if any.
    long_text : dict[str, int]
        Clean items per text column (``title``, ``summary``, ``tags``) longer
        than the content embedding reads (``recsys.columns.MAX_*``); only
        columns with such rows. The rows stay valid.
    """

    users: pd.DataFrame
    items: pd.DataFrame
    events: pd.DataFrame
    quarantine: pd.DataFrame
    end: pd.Timestamp
    rows_read: dict[str, int] = field(default_factory=dict)
    taxonomy_source: str = "the bundled default taxonomy"
    timezone: str = ""
    assume_tz: str | None = None
    long_text: dict[str, int] = field(default_factory=dict)

    def counts(self, table: str | None = None) -> dict[str, int]:
        """Return {reason: rows} for every reason with rows, in reason order (of one ``table`` when given)."""
        q = self.quarantine if table is None else self.quarantine[self.quarantine[C.Q_TABLE] == table]
        found = q[C.Q_REASON].value_counts()
        return {r: int(found[r]) for r in C.QUARANTINE_REASONS if r in found.index}

    def rows_kept(self) -> dict[str, int]:
        """Return {table: clean rows}."""
        return {"users": len(self.users), "items": len(self.items), "events": len(self.events)}

    def check_rejected(self, max_share: float = DEFAULT_MAX_REJECTED) -> None:
        """Refuse data that is mostly rejected, or leaves no events.

        A run on such data would "succeed" on nothing (a model of filler, an
        evaluation of no one); the message names each table over the limit,
        its main reason, and the likely cause with its fix (a missing
        ``--taxonomy``, ``--assume-tz``, ...).

        Parameters
        ----------
        max_share : float, default 0.05
            Largest share of a table's rows that may be quarantined, in
            ``[0, 1]``; 1 checks only that some events are left.

        Raises
        ------
        DataError
            If a table has more than ``max_share`` of its rows quarantined,
            or no event is left; one line.
        ConfigError
            If ``max_share`` is not a number in ``[0, 1]``.
        """
        limit = check_share(max_share, "max_rejected")
        kept = self.rows_kept()
        over = []
        for kind in KINDS:
            read = self.rows_read.get(kind, 0)
            if read and (read - kept[kind]) / read > limit:
                over.append(kind)
        if not over and kept["events"] > 0:
            return
        if not self.rows_read.get("events", 0):
            raise DataError("no events to validate: the events table has no rows")
        if not over:  # max_share 1: every event rejected yet not "over"
            over = ["events"]
        parts, causes = [], []
        for kind in over:
            read = self.rows_read[kind]
            rejected = read - kept[kind]
            reasons = self.quarantine.loc[self.quarantine[C.Q_TABLE] == kind, C.Q_REASON].value_counts()
            top = str(reasons.index[0])
            parts.append(f"{kind} {rejected:,} of {read:,} ({rejected / read:.1%}, mostly {top!r})")
            if _CASCADES.get(top) not in over:  # a cascade is explained by its table's own cause
                causes.append(self._likely_cause(top))
        what = "no events left" if kept["events"] == 0 else "too many rows quarantined"
        raise DataError(
            f"{what}: {'; '.join(parts)}; at most {limit:.0%} per table allowed (--max-rejected)"
            f" -- likely cause: {'; '.join(dict.fromkeys(causes))}"
        )

    def _likely_cause(self, reason: str) -> str:
        """The usual cause of a table rejected mostly for ``reason``, with its fix."""
        if reason == C.R_NAIVE_TS and self.assume_tz is None:
            return f"timestamps have no UTC offset; pass --assume-tz {self.timezone or 'ZONE'} (or fix the file)"
        if reason == C.R_NAIVE_TS:
            return f"local times in a daylight-saving gap or overlap of {self.assume_tz}; give offsets in the file"
        if reason in (C.R_UNKNOWN_CODE, C.R_SUB_GROUP):
            forgot = "; did you forget --taxonomy?" if self.taxonomy_source.startswith("the bundled") else ""
            # the contract files bad numbers and booleans under "unknown code" too: the detail column tells which
            return (
                f"the codes do not match the taxonomy in use ({self.taxonomy_source}) or values are not of their "
                f"column's kind (a number, a boolean: see the quarantine's detail column){forgot}"
            )
        hints = {
            C.R_MISSING: "required fields are empty (see the quarantine's detail column)",
            C.R_UNPARSABLE_TS: "timestamps are neither ISO 8601 with an offset nor integer Unix seconds",
            C.R_IMPOSSIBLE_TS: "timestamps outside --min-time/--max-time: a damaged file, a zeroed clock or "
            "milliseconds given as seconds (or old data: pass --min-time)",
            C.R_UNKNOWN_EVENT_TYPE: f"event types must be the contract's ({', '.join(C.EVENT_TYPES)}); "
            "map the data set's interaction types onto them",
            C.R_FUTURE_TS: f"events after the data's end {self.end.isoformat()}; pass --end with the real end",
            C.R_DUPLICATE_ID: "ids repeat; was the table written twice?",
            C.R_DUPLICATE_EVENT: "events repeat; was the table written twice?",
            C.R_UNKNOWN_USER: "events name users absent from the users table; are the tables from one export?",
            C.R_UNKNOWN_ITEM: "events name items absent from the items table; are the tables from one export?",
        }
        return hints.get(reason, "see the quarantine's detail column")


def check_share(value: object, name: str) -> float:
    """Return ``value`` as a share in ``[0, 1]``.

    Raises
    ------
    ConfigError
        Naming ``name`` and the value, if it is not a number in ``[0, 1]``.
    """
    if not is_number(value) or not 0 <= value <= 1:
        raise ConfigError(f"{name} must be a share between 0 and 1 (e.g. 0.05), got {value!r}")
    return float(value)


def _resolve_taxonomy(taxonomy: Taxonomy | str | Path | None) -> tuple[Taxonomy, str]:
    """The taxonomy and how to name it in a message."""
    default = load_taxonomy(None)
    if taxonomy is None:
        return default, f"the bundled default taxonomy {default.name!r}"
    if isinstance(taxonomy, Taxonomy):
        # a caller that loaded the default itself still gets the "--taxonomy?" hint
        is_default = taxonomy.source_text == default.source_text
        return taxonomy, (f"the bundled default taxonomy {taxonomy.name!r}" if is_default else f"taxonomy {taxonomy.name!r}")
    return load_taxonomy(taxonomy), str(taxonomy)


def _resolve_end(end: str | dt.datetime | pd.Timestamp | None, taxonomy: Taxonomy) -> pd.Timestamp:
    if end is None:
        return pd.Timestamp.now(tz="UTC").as_unit("us")
    return parse_time(end, taxonomy, name="end").as_unit("us")


def _long_text(items: pd.DataFrame) -> dict[str, int]:
    """Clean items per text column longer than the content embedding reads."""
    counts = {name: int((items[name].str.len() > limit).sum()) for name, limit in C.TEXT_LIMITS.items()}
    tags = items[C.TAGS]
    counts[C.TAGS] = int(
        sum(len(ts) > C.MAX_TAGS or any(len(t) > C.MAX_TAG_CHARS for t in ts) for ts in tags.tolist())
    )
    return {name: n for name, n in counts.items() if n}


def validate_tables(
    users: pd.DataFrame,
    items: pd.DataFrame,
    events: pd.DataFrame,
    taxonomy: Taxonomy | str | Path | None = None,
    end: str | dt.datetime | pd.Timestamp | None = None,
    *,
    assume_tz: str | None = None,
    min_time: str | dt.datetime | pd.Timestamp = MIN_TIME,
    max_time: str | dt.datetime | pd.Timestamp = MAX_TIME,
    users_validated: bool = False,
) -> ValidationResult:
    """Validate three raw tables against the contract.

    Each rejected row gets exactly one reason, the first that applies in the
    order of ``recsys.columns.QUARANTINE_REASONS``. Second and later rows
    with the same ``user_id`` / ``item_id`` (among rows passing the earlier
    checks) are "duplicate id"; likewise events with the same ``event_id``,
    or, without one, the same (user_id, item_id, event_type, timestamp), are
    "duplicate event". Events of a user or item that is absent or
    quarantined go to the quarantine as "unknown user" / "unknown item".

    Ids are any non-empty strings -- Chinese, emoji, ``/`` and ``..``
    included: they are matched as strings and never used as file paths. A
    null id (NaN, None) is an empty one: "missing required field".

    Parameters
    ----------
    users, items, events : pandas.DataFrame
        Raw tables as :func:`read_table` returns them (or built in memory).
        Row numbers in the quarantine are positions in these frames.
    taxonomy : Taxonomy, path or None
        The codes; ``None`` loads the bundled default.
    end : str, datetime, pandas.Timestamp or None
        The data's end; later events are "future timestamp". A date alone is
        midnight at its start in the taxonomy's time zone; a date-time needs
        an offset. ``None`` means now.
    assume_tz : str or None
        An IANA zone (e.g. ``Asia/Shanghai``) in which timestamps without a
        UTC offset are read; ``None`` (the default) quarantines them as
        "naive timestamp".
    min_time, max_time : str, datetime or pandas.Timestamp
        Timestamps (of every timestamp column) before ``min_time`` or at or
        after ``max_time`` are "impossible timestamp"; default 1990-01-01
        and 2100-01-01 UTC. A date alone is midnight in the city's zone.
    users_validated : bool, default False
        ``users`` is the clean table of an earlier validation of the same
        file against the same taxonomy (the nightly training's unchanged
        users file): taken as it is, not checked again; the events' user
        references are checked against its ids, and no users row is
        quarantined (the caller keeps the earlier run's counts).

    Returns
    -------
    ValidationResult

    Raises
    ------
    SchemaError
        If a table lacks a required column.
    ConfigError
        If a table is not a DataFrame, or ``end``, ``assume_tz``,
        ``min_time`` or ``max_time`` is invalid.
    """
    tax, source = _resolve_taxonomy(taxonomy)
    ctx = _Context(
        taxonomy=tax,
        end=_resolve_end(end, tax),
        min_time=parse_time(min_time, tax, name="min_time").as_unit("us"),
        max_time=parse_time(max_time, tax, name="max_time").as_unit("us"),
        assume_tz=None if assume_tz is None else parse_zone(assume_tz, name="assume_tz"),
    )
    if ctx.min_time >= ctx.max_time:
        raise ConfigError(f"min_time {ctx.min_time.isoformat()} must be before max_time {ctx.max_time.isoformat()}")
    for kind, frame in zip(KINDS, (users, items, events)):
        if not isinstance(frame, pd.DataFrame):
            raise ConfigError(f"{kind} must be a pandas DataFrame, got {type(frame).__name__}")
    if users_validated:
        clean_users = users.reset_index(drop=True)
        q_users = _quarantine_frame("users", clean_users.iloc[:0], _Rejections(0))
    else:
        clean_users, q_users = _validate_table("users", users, ctx)
    clean_items, q_items = _validate_table("items", items, ctx)
    refs = {
        # a clean table's ids are its source ids: none of its rows was quarantined
        C.USER_ID: (clean_users[C.USER_ID], clean_users[C.USER_ID] if users_validated else _as_str(users[C.USER_ID])),
        C.ITEM_ID: (clean_items[C.ITEM_ID], _as_str(items[C.ITEM_ID])),
    }
    clean_events, q_events = _validate_table("events", events, ctx, refs)
    quarantine = pd.concat([q_users, q_items, q_events], ignore_index=True)
    return ValidationResult(
        users=clean_users,
        items=clean_items,
        events=clean_events,
        quarantine=quarantine,
        end=ctx.end,
        rows_read={"users": len(users), "items": len(items), "events": len(events)},
        taxonomy_source=source,
        timezone=tax.timezone,
        assume_tz=None if ctx.assume_tz is None else ctx.assume_tz.key,
        long_text=_long_text(clean_items),
    )


def validate_places(
    raw: pd.DataFrame, taxonomy: Taxonomy | str | Path | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check a raw places table's contract columns, as the other tables are checked.

    Only the column types and codes, and repeated ``place_id``; the rules
    specific to broadcast (a non-personal channel, slot lengths, the audience
    mix) are :func:`recsys.broadcast.places.load_places`'s, which refuses the
    first bad row rather than quarantining it (a place is configuration, not a log).

    Parameters
    ----------
    raw : pandas.DataFrame
        As :func:`read_table` returns it (kind ``"places"``).
    taxonomy : Taxonomy, path or None

    Returns
    -------
    clean, quarantine : pandas.DataFrame
        The rows that passed (contract columns first, extra columns such as
        ``audience`` kept as they were) and one quarantine row per rejected row.

    Raises
    ------
    SchemaError
        If a required column is absent.
    """
    tax, _ = _resolve_taxonomy(taxonomy)
    bounds = pd.Timestamp(MIN_TIME).as_unit("us"), pd.Timestamp(MAX_TIME).as_unit("us")
    ctx = _Context(taxonomy=tax, end=bounds[1], min_time=bounds[0], max_time=bounds[1])
    return _validate_table("places", raw, ctx)


def read_manifest_end(data_dir: str | Path) -> str | None:
    """Return the ``end`` of ``data_dir/manifest.json``, or None without one.

    Raises
    ------
    SchemaError
        If the manifest exists but is not a JSON object.
    """
    path = Path(data_dir) / "manifest.json"
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(doc, dict):
        raise SchemaError(f"{path}: expected a JSON object")
    end = doc.get("end")
    return None if end is None else str(end)


def validate(
    data: str | Path | None = None,
    tables: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame] | None = None,
    taxonomy: Taxonomy | str | Path | None = None,
    end: str | dt.datetime | pd.Timestamp | None = None,
    *,
    assume_tz: str | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    min_time: str | dt.datetime | pd.Timestamp = MIN_TIME,
    max_time: str | dt.datetime | pd.Timestamp = MAX_TIME,
) -> ValidationResult:
    """Validate a data folder or three in-memory tables.

    Parameters
    ----------
    data : str, Path or None
        Folder holding ``users``, ``items`` and ``events`` as ``.parquet`` or
        ``.csv`` (see :func:`find_table`).
    tables : (users, items, events) or None
        Raw DataFrames instead of a folder. Give exactly one of the two.
    taxonomy : Taxonomy, path or None
        The codes; ``None`` loads the bundled default.
    end : str, datetime, pandas.Timestamp or None
        The data's end; ``None`` takes ``end`` from ``data/manifest.json``
        when there is one, else the current time.
    assume_tz : str or None
        Zone of timestamps without an offset (see :func:`validate_tables`).
    encoding, delimiter : str or None
        Of the CSV files (see :func:`read_table`).
    min_time, max_time : str, datetime or pandas.Timestamp
        Bounds of a possible timestamp (see :func:`validate_tables`).

    Returns
    -------
    ValidationResult
        Call :meth:`ValidationResult.check_rejected` to refuse data that is
        mostly rejected.

    Raises
    ------
    SchemaError
        If a file cannot be read, lacks a required column or has no rows
        (the message names the file).
    ConfigError
        If neither or both of ``data`` and ``tables`` are given, or a
        parameter is invalid.
    """
    if (data is None) == (tables is None):
        raise ConfigError("give exactly one of data (a folder) or tables (users, items, events)")
    bounds = {"assume_tz": assume_tz, "min_time": min_time, "max_time": max_time}
    if tables is not None:
        if not isinstance(tables, (tuple, list)) or len(tables) != 3:
            raise ConfigError("tables must be a (users, items, events) tuple of DataFrames")
        return validate_tables(*tables, taxonomy=taxonomy, end=end, **bounds)
    # check the options before reading what may be large files
    check_encoding(encoding)
    check_delimiter(delimiter)
    raw = [read_table(find_table(data, kind), kind, encoding=encoding, delimiter=delimiter) for kind in KINDS]
    if end is None:
        end = read_manifest_end(data)
    return validate_tables(*raw, taxonomy=taxonomy, end=end, **bounds)


# ---------------------------------------------------------------- writing ----
def to_arrow(frame: pd.DataFrame, kind: str) -> pa.Table:
    """Convert a clean table to Arrow with the contract's column types.

    Contract columns get their fixed types (``list<string>``,
    ``timestamp[us, tz=UTC]``, ...) even when every list is empty; extra
    columns keep the types Arrow infers.
    """
    types = {col.name: _ARROW_TYPES[col.type] for col in _check_kind(kind)}
    arrays = []
    for name in frame.columns:
        series = frame[name]
        if name in types and types[name] == _ARROW_TYPES["codes"]:
            arrays.append(pa.array(series.tolist(), type=types[name]))
        elif name in types:
            arrays.append(pa.Array.from_pandas(series, type=types[name]))
        else:
            arrays.append(pa.Array.from_pandas(series))
    return pa.Table.from_arrays(arrays, names=[str(c) for c in frame.columns])


def write_table(frame: pd.DataFrame, path: str | Path, kind: str) -> Path:
    """Write a clean table as Parquet (contract types), atomically."""
    return write_parquet(to_arrow(frame, kind), path)


#: the quarantine table's Parquet schema (how validate also recognises a quarantine it wrote)
QUARANTINE_SCHEMA = pa.schema(
    [
        (C.Q_TABLE, pa.string()),
        (C.Q_ROW, pa.int64()),
        (C.Q_REASON, pa.string()),
        (C.Q_DETAIL, pa.string()),
        (C.Q_RECORD, pa.string()),
    ]
)


def write_quarantine(quarantine: pd.DataFrame, path: str | Path) -> Path:
    """Write the quarantine table as Parquet, atomically; return the path."""
    table = pa.Table.from_pandas(quarantine[list(QUARANTINE_COLUMNS)], schema=QUARANTINE_SCHEMA, preserve_index=False)
    return write_parquet(table, path)
