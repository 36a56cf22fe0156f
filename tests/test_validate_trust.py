"""Trust in ``recsys validate`` and the readers (issue 10): no success on rejected or empty data,
clear one-line errors for the input problems real files have (time zone, taxonomy, delimiter,
encoding, damaged Parquet, empty files), and odd ids that never crash or become paths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys import columns as C
from recsys.cli import main
from recsys.exceptions import ConfigError, DataError, SchemaError
from recsys.io import OUTPUT_MARKER
from recsys.schema import read_table, validate, validate_tables

END = "2024-07-01T00:00:00+00:00"
N_USERS, N_ITEMS, N_EVENTS = 10, 5, 40


def _users(n: int = N_USERS) -> pd.DataFrame:
    return pd.DataFrame(
        {"user_id": [f"u{i}" for i in range(n)], "group": ["farmer"] * n, "region": ["qinglong"] * n}
    )


def _items(n: int = N_ITEMS) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(n)],
            "title": [f"地震来了怎么办 第{i}讲" for i in range(n)],
            "topics": ["earthquake|disaster_prevention"] * n,
        }
    )


def _events(n: int = N_EVENTS, offset: str = "+08:00") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [f"u{i % N_USERS}" for i in range(n)],
            "item_id": [f"i{i % N_ITEMS}" for i in range(n)],
            "event_type": ["impression"] * n,
            "timestamp": [f"2024-03-01T10:{i:02d}:00{offset}" for i in range(n)],
        }
    )


def _folder(tmp_path, users=None, items=None, events=None, name="d", **csv):
    folder = tmp_path / name
    folder.mkdir()
    for kind, frame in (("users", users), ("items", items), ("events", events)):
        frame = {"users": _users, "items": _items, "events": _events}[kind]() if frame is None else frame
        frame.to_csv(folder / f"{kind}.csv", index=False, **csv)
    return folder


def _ok(capsys, argv) -> str:
    assert main(argv) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def _error(capsys, argv, *needles: str) -> str:
    """Exit 2 with one ``error:`` line holding every needle, and no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


def _validate(folder, *extra: str) -> list[str]:
    return ["validate", "--data", str(folder), "--end", END, *extra]


# ---- 1. too many rows rejected: exit 2 with the likely cause --------------------------------
def test_naive_timestamps_fail_and_name_assume_tz(tmp_path, capsys):
    folder = _folder(tmp_path, events=_events(offset=""))
    err = _error(
        capsys,
        _validate(folder),
        "events 40 of 40 (100.0%, mostly 'naive timestamp')",
        "no events left",
        "pass --assume-tz Asia/Shanghai (or fix the file)",
        f"(rows and reasons: {folder / 'quarantine.parquet'})",
    )
    assert "users" not in err.split("--")[0].split(":")[1]  # only the table over the limit is named
    # the report and the quarantine are still written: the evidence to fix the file
    q = pq.read_table(folder / "quarantine.parquet").to_pandas()
    assert set(q["reason"]) == {C.R_NAIVE_TS}


def test_assume_tz_reads_naive_timestamps_in_that_zone(tmp_path, capsys):
    folder = _folder(tmp_path, events=_events(offset=""))
    out = _ok(capsys, _validate(folder, "--assume-tz", "Asia/Shanghai"))
    assert "timestamps without an offset read in: Asia/Shanghai" in out
    result = validate(data=folder, end=END, assume_tz="Asia/Shanghai")
    assert result.quarantine.empty
    assert result.events["timestamp"].iloc[0] == pd.Timestamp("2024-03-01T02:00:00Z")
    # an offset in the file still wins over the assumed zone
    mixed = _events(offset="")
    mixed.loc[1, "timestamp"] = "2024-03-01T10:01:00Z"
    result = validate(tables=(_users(), _items(), mixed), end=END, assume_tz="Asia/Shanghai")
    assert result.events["timestamp"].iloc[1] == pd.Timestamp("2024-03-01T10:01:00Z")


def test_assume_tz_keeps_local_times_that_do_not_exist_naive():
    events = _events(offset="")
    events.loc[0, "timestamp"] = "2024-03-31T02:30:00"  # Berlin skips 02:00-03:00 that night
    result = validate(tables=(_users(), _items(), events), end=END, assume_tz="Europe/Berlin")
    assert result.counts() == {C.R_NAIVE_TS: 1}
    assert "daylight-saving gap or overlap" in result.quarantine["detail"].iloc[0]


def test_assume_tz_on_a_naive_parquet_datetime_column(tmp_path):
    events = _events(offset="")
    events["timestamp"] = pd.to_datetime(events["timestamp"])  # datetime64 without a zone
    tables = (_users(), _items(), events)
    assert validate(tables=tables, end=END).counts() == {C.R_NAIVE_TS: N_EVENTS}
    result = validate(tables=tables, end=END, assume_tz="Asia/Shanghai")
    assert result.quarantine.empty
    assert result.events["timestamp"].iloc[0] == pd.Timestamp("2024-03-01T02:00:00Z")


def test_bad_assume_tz(tmp_path, capsys):
    folder = _folder(tmp_path)
    _error(capsys, _validate(folder, "--assume-tz", "Mars/Olympus"), "'Mars/Olympus' is not an IANA time zone")
    _error(capsys, _validate(folder, "--assume-tz", "../../etc/passwd"), "is not an IANA time zone")


def test_unknown_codes_hint_at_a_forgotten_taxonomy(tmp_path, capsys):
    users = _users().assign(group="kids", region="north")
    folder = _folder(tmp_path, users=users)
    err = _error(
        capsys,
        _validate(folder),
        "users 10 of 10 (100.0%, mostly 'unknown code')",
        "events 40 of 40 (100.0%, mostly 'unknown user')",
        "the codes do not match the taxonomy in use (the bundled default taxonomy 'qinhuangdao') or values are "
        "not of their column's kind",
        "did you forget --taxonomy?",
    )
    assert "absent from the users table" not in err  # the events' cascade is explained by the users
    # with a taxonomy given, the message names that file
    tax = tmp_path / "other.toml"
    tax.write_text(
        '[groups.elders]\n[regions.south]\n[topics.earthquake]\n[topics.disaster_prevention]\n'
        "[formats.article]\n[channels.app]\n",
        encoding="utf-8",
    )
    err = _error(capsys, _validate(folder, "--taxonomy", str(tax)), f"taxonomy in use ({tax})")
    assert "forget" not in err


def test_under_the_limit_passes_over_it_fails(tmp_path, capsys):
    events = _events()
    events.loc[0, "event_type"] = "teleport"  # 1 of 40 events: 2.5%
    folder = _folder(tmp_path, events=events)
    _ok(capsys, _validate(folder))
    _error(
        capsys,
        _validate(folder, "--max-rejected", "0.02"),
        "too many rows quarantined: events 1 of 40 (2.5%, mostly 'unknown event type')",
        "at most 2% per table allowed (--max-rejected)",
        "map the data set's interaction types onto them",
    )
    _error(capsys, _validate(folder, "--max-rejected", "1.5"), "--max-rejected must be a share between 0 and 1")
    _error(capsys, _validate(folder, "--max-rejected", "nan"), "--max-rejected must be a share")


def test_check_rejected_library_call():
    ok = validate_tables(_users(), _items(), _events(), end=END)
    ok.check_rejected()  # nothing rejected: no error
    naive = validate_tables(_users(), _items(), _events(offset=""), end=END)
    with pytest.raises(DataError, match=r"no events left: events 40 of 40 .*--assume-tz Asia/Shanghai"):
        naive.check_rejected(0.05)
    with pytest.raises(DataError, match="no events left"):
        naive.check_rejected(1.0)  # a share of 1 still refuses zero events
    half = _events()
    half.loc[:19, "timestamp"] = "2024-03-01T10:00:00"
    validate_tables(_users(), _items(), half, end=END).check_rejected(0.5)
    with pytest.raises(ConfigError, match="max_rejected must be a share between 0 and 1"):
        ok.check_rejected(-0.1)
    empty = validate_tables(_users(), _items(), _events().iloc[:0], end=END)
    with pytest.raises(DataError, match="no events to validate: the events table has no rows"):
        empty.check_rejected()


# ---- 3. delimiter and encoding -----------------------------------------------------------
def test_semicolon_csv_names_the_delimiter(tmp_path, capsys):
    folder = _folder(tmp_path, sep=";")
    _error(
        capsys,
        _validate(folder),
        f"{folder / 'users.csv'}: required column",
        "the delimiter looks like ';', not ',' -- pass --delimiter ';'",
    )
    _ok(capsys, _validate(folder, "--delimiter", ";"))
    assert validate(data=folder, end=END, delimiter=";").rows_kept() == {"users": 10, "items": 5, "events": 40}


def test_tab_separated_csv(tmp_path, capsys):
    folder = _folder(tmp_path, sep="\t")
    _error(capsys, _validate(folder), "the delimiter looks like tab", "pass --delimiter tab")
    _ok(capsys, _validate(folder, "--delimiter", "tab"))
    _ok(capsys, _validate(folder, "--delimiter", "\\t"))


def test_bad_delimiter_and_encoding_options(tmp_path, capsys):
    folder = _folder(tmp_path)
    _error(capsys, _validate(folder, "--delimiter", ";;"), "delimiter ';;' is not a single field-separator character")
    _error(capsys, _validate(folder, "--encoding", "klingon-8"), "encoding 'klingon-8' is unknown")
    # a delimiter that matches nothing in the header: no guess offered, the plain message
    err = _error(capsys, _validate(folder, "--delimiter", "#"), "required column")
    assert "looks like ','" in err  # the header is comma-separated: that is what it suggests


def test_gbk_csv_names_the_encoding(tmp_path, capsys):
    folder = _folder(tmp_path, encoding="gb18030")
    _error(
        capsys,
        _validate(folder),
        f"{folder / 'items.csv'}: not UTF-8 text; it looks like GBK/GB18030 -- pass --encoding gb18030 "
        "or convert it with iconv -f GB18030 -t UTF-8",
    )
    _ok(capsys, _validate(folder, "--encoding", "gb18030"))
    result = validate(data=folder, end=END, encoding="gbk")
    assert result.items["title"].iloc[0] == "地震来了怎么办 第0讲"


def test_utf8_bom_and_other_binary(tmp_path, capsys):
    folder = _folder(tmp_path, encoding="utf-8-sig")  # a BOM is fine
    _ok(capsys, _validate(folder))
    (folder / "users.csv").write_bytes(b"user_id,group,region\n\xff\xfe\x00\x81,farmer,qinglong\n")
    _error(capsys, _validate(folder), f"{folder / 'users.csv'}: not UTF-8 text", "--encoding")


# ---- 4. damaged Parquet, impossible timestamps, odd ids -------------------------------------
def _parquet_folder(tmp_path, events: pa.Table | pd.DataFrame, name="p"):
    folder = tmp_path / name
    folder.mkdir()
    pq.write_table(pa.Table.from_pandas(_users(), preserve_index=False), folder / "users.parquet")
    pq.write_table(pa.Table.from_pandas(_items(), preserve_index=False), folder / "items.parquet")
    table = events if isinstance(events, pa.Table) else pa.Table.from_pandas(events, preserve_index=False)
    pq.write_table(table, folder / "events.parquet")
    return folder


def test_years_pandas_cannot_print_are_quarantined_not_kept(tmp_path, capsys):
    # what 4 kB of garbage in a timestamp page looks like once decoded: years -140630 and 287168
    micros = 1_709_280_000_000_000 + np.arange(N_EVENTS, dtype=np.int64) * 60_000_000
    micros[:3] = [-4_500_000_000_000_000_000, 9_000_000_000_000_000_000, 0]
    events = pa.Table.from_pandas(_events().drop(columns="timestamp"), preserve_index=False).append_column(
        "timestamp", pa.array(micros, type=pa.timestamp("us", tz="UTC"))
    )
    folder = _parquet_folder(tmp_path, events)
    result = validate(data=folder, end=END)
    assert result.counts() == {C.R_IMPOSSIBLE_TS: 3}
    details = result.quarantine["detail"].tolist()
    assert details[0].startswith("timestamp='-140630-09-04T16:00:00Z'; valid: 1990-01-01")
    assert details[1].startswith("timestamp='287168-08-24T16:00:00Z'")
    assert details[2].startswith("timestamp='1970-01-01T00:00:00Z'")
    assert result.events["timestamp"].min() >= pd.Timestamp("1990-01-01", tz="UTC")
    assert len(result.events) == N_EVENTS - 3
    # the bounds are settings: 1970 is possible for a historical data set
    assert validate(data=folder, end=END, min_time="1960-01-01").counts() == {C.R_IMPOSSIBLE_TS: 2}
    with pytest.raises(ConfigError, match="min_time .* must be before max_time"):
        validate(data=folder, end=END, min_time="2200-01-01")
    out = _ok(capsys, _validate(folder, "--max-rejected", "0.1"))
    assert "impossible timestamp" in out
    _error(capsys, _validate(folder, "--min-time", "soon"), "min_time 'soon' is not a date or date-time")


def test_overwritten_parquet_never_crashes(tmp_path, capsys):
    rng = np.random.default_rng(7)
    n = 20_000
    events = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in rng.integers(0, N_USERS, n)],
            "item_id": [f"i{i}" for i in rng.integers(0, N_ITEMS, n)],
            "event_type": rng.choice(["impression", "click", "read"], n),
            "timestamp": pd.to_datetime(1_709_280_000 + rng.integers(0, 86_400 * 30, n), unit="s", utc=True),
        }
    )
    folder = _parquet_folder(tmp_path, events)
    path = folder / "events.parquet"
    clean = path.read_bytes()
    outcomes = set()
    for offset in np.linspace(len(clean) * 0.1, len(clean) - 4096 - 64, 8).astype(int):
        damaged = bytearray(clean)
        damaged[offset : offset + 4096] = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
        path.write_bytes(bytes(damaged))
        try:
            result = validate(data=folder, end=END)
        except SchemaError as exc:
            assert str(exc).startswith(f"{path}: not a readable Parquet file") and "\n" not in str(exc)
            outcomes.add("error")
            continue
        outcomes.add("read")
        if len(result.events):  # whatever survived is within the bounds
            assert result.events["timestamp"].between(pd.Timestamp("1990-01-01", tz="UTC"), pd.Timestamp(END)).all()
        assert main(_validate(folder, "--max-rejected", "1")) in (0, 2)
        assert "Traceback" not in capsys.readouterr().err
    assert outcomes  # (which outcome depends on where the garbage lands)
    path.write_bytes(clean[: len(clean) // 2])  # a truncated file
    _error(capsys, _validate(folder), f"{path}: not a readable Parquet file")
    # a file written with page checksums: every damaged page is caught on reading
    pq.write_table(pa.Table.from_pandas(events, preserve_index=False), path, write_page_checksum=True)
    clean = path.read_bytes()
    for offset in np.linspace(len(clean) * 0.1, len(clean) - 4096 - 64, 4).astype(int):
        damaged = bytearray(clean)
        damaged[offset : offset + 4096] = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
        path.write_bytes(bytes(damaged))
        with pytest.raises(SchemaError, match="not a readable Parquet file"):
            validate(data=folder, end=END)


def test_odd_ids_are_strings_never_paths(tmp_path, capsys):
    odd = ["../../etc/passwd", "a/b", "..", "用户一", "🙂", " spaced ", "NA", "null"]
    users = pd.DataFrame({"user_id": odd, "group": "farmer", "region": "qinglong"})
    events = pd.DataFrame(
        {
            "user_id": odd,
            "item_id": ["i0"] * len(odd),
            "event_type": ["click"] * len(odd),
            "timestamp": [f"2024-03-01T10:0{i}:00Z" for i in range(len(odd))],
        }
    )
    folder = _folder(tmp_path, users=users, events=events)
    out_dir = tmp_path / "clean"
    _ok(capsys, _validate(folder, "--out", str(out_dir)))
    assert sorted(p.name for p in out_dir.iterdir() if p.name != OUTPUT_MARKER) == sorted(
        ["users.parquet", "items.parquet", "events.parquet", "quarantine.parquet"]
    )
    assert not (tmp_path / "etc").exists()
    result = validate(data=out_dir, end=END)
    assert result.quarantine.empty
    assert result.users["user_id"].tolist() == odd  # kept exactly, whitespace and "NA" included


def test_null_and_duplicate_ids(tmp_path):
    users = pd.DataFrame(
        {"user_id": ["u0", None, "u0", np.nan], "group": "farmer", "region": "qinglong"}, dtype=object
    )
    items = pd.DataFrame({"item_id": [1.0, np.nan, 1.0], "title": ["a", "b", "c"], "topics": ["earthquake"] * 3})
    events = pd.DataFrame(
        {"user_id": ["u0"], "item_id": ["1"], "event_type": ["click"], "timestamp": ["2024-03-01T10:00:00Z"]}
    )
    folder = _parquet_folder(tmp_path, events)
    pq.write_table(pa.Table.from_pandas(users, preserve_index=False), folder / "users.parquet")
    pq.write_table(pa.Table.from_pandas(items, preserve_index=False), folder / "items.parquet")
    q = validate(data=folder, end=END).quarantine
    got = list(zip(q["table"], q["row"], q["reason"]))
    assert got == [
        ("users", 1, C.R_MISSING),
        ("users", 2, C.R_DUPLICATE_ID),
        ("users", 3, C.R_MISSING),
        ("items", 1, C.R_MISSING),
        ("items", 2, C.R_DUPLICATE_ID),
    ]


# ---- 5. empty, missing and misplaced files -------------------------------------------------
@pytest.mark.parametrize(
    "damage, needle",
    [
        (lambda f: (f / "events.csv").write_text(""), "events.csv: empty file, no header row"),
        (
            lambda f: (f / "events.csv").write_text("user_id,item_id,event_type,timestamp\n"),
            "events.csv: the events table has no rows (a header only); expected at least one row",
        ),
        (lambda f: (f / "users.csv").unlink(), "no users table; expected users.parquet or users.csv"),
        (
            lambda f: ((f / "items.csv").unlink(), (f / "items.csv").mkdir()),
            "items.csv: is a folder; expected the items table as one CSV file",
        ),
        (lambda f: (f / "users.parquet").write_bytes(b""), "both users.parquet and users.csv"),
        (
            lambda f: (f / "events.csv").write_text(
                "user_id,item_id,event_type,timestamp\nu0,i0,click,2024-03-01T10:00:00Z,extra\n"
            ),
            "events.csv: not a readable CSV file (a row has more fields than the header",
        ),
        (
            lambda f: (f / "users.csv").write_text("user_id,group,region,group\nu0,farmer,qinglong,youth\n"),
            "users.csv: column 'group' appears more than once in the header",
        ),
    ],
    ids=["empty", "header-only", "missing", "folder", "both", "extra-fields", "repeated-column"],
)
def test_file_problems_are_one_line_errors(tmp_path, capsys, damage, needle):
    folder = _folder(tmp_path)
    damage(folder)
    _error(capsys, _validate(folder), str(folder), needle)


def test_empty_and_zero_row_parquet(tmp_path, capsys):
    folder = _parquet_folder(tmp_path, _events())
    (folder / "users.parquet").write_bytes(b"")
    _error(capsys, _validate(folder), f"{folder / 'users.parquet'}: not a readable Parquet file")
    pq.write_table(pa.Table.from_pandas(_users().iloc[:0], preserve_index=False), folder / "users.parquet")
    _error(capsys, _validate(folder), f"{folder / 'users.parquet'}: the users table has no rows")
    with pytest.raises(SchemaError, match="the users table has no rows"):
        read_table(folder / "users.parquet", "users")


def test_data_folder_problems(tmp_path, capsys):
    _error(capsys, _validate(tmp_path / "nowhere"), "nowhere: data folder not found")
    (tmp_path / "file").write_text("x")
    _error(capsys, _validate(tmp_path / "file"), "file: is not a folder")


# ---- 7. write errors end in one line too -------------------------------------------------
def test_out_is_a_file(tmp_path, capsys):
    folder = _folder(tmp_path)
    (tmp_path / "taken").write_text("mine")
    _error(capsys, _validate(folder, "--out", str(tmp_path / "taken")), "--out", "taken: is a file, not a folder")
    assert (tmp_path / "taken").read_text() == "mine"
    (tmp_path / "under").write_text("mine")
    _error(capsys, _validate(folder, "--out", str(tmp_path / "under" / "deeper")), "--out", "under is a file, not a folder")


# ---- 6. long text is reported, never cut silently ------------------------------------------
def test_long_text_is_counted(tmp_path, capsys):
    items = _items()
    items.loc[0, "title"] = "长" * (C.MAX_TITLE_CHARS + 1)
    items.loc[1, "title"] = "长" * C.MAX_TITLE_CHARS  # at the cap: fine
    items["tags"] = ["a" * (C.MAX_TAG_CHARS + 1), "", "", "", "|".join(["t"] * (C.MAX_TAGS + 1))]
    folder = _folder(tmp_path, items=items)
    out = _ok(capsys, _validate(folder))
    assert "long text: 1 items with title over 1,000 characters" in out
    assert f"long text: 2 items with more than {C.MAX_TAGS} tags or a tag over {C.MAX_TAG_CHARS} characters" in out
    result = validate(data=folder, end=END)
    assert result.long_text == {"title": 1, "tags": 2}
    assert len(result.items.loc[0, "title"]) == C.MAX_TITLE_CHARS + 1  # kept whole in the clean table


def test_dictionary_encoded_and_odd_typed_parquet_columns(tmp_path):
    # pandas writes categoricals as dictionary columns; they read back as categoricals
    events = _events().astype({"user_id": "category", "event_type": "category"})
    folder = _parquet_folder(tmp_path, events)
    items = _items().astype({"topics": "category"})
    pq.write_table(pa.Table.from_pandas(items, preserve_index=False), folder / "items.parquet")
    result = validate(data=folder, end=END)
    assert result.quarantine.empty
    assert result.items["topics"].iloc[0] == ["earthquake", "disaster_prevention"]
    # numbers where codes belong: quarantined, not a crash
    odd = _items().assign(topics=range(N_ITEMS))
    assert validate(tables=(_users(), odd, _events()), end=END).counts()[C.R_UNKNOWN_CODE] == N_ITEMS
