"""Push output on disk: partitioned Parquet, chunk checkpoints, atomic commit, manifest.

Layout of an output folder::

    <out>/date=2026-07-01/kind=nightly/channel=app_push/part-00000.parquet
    <out>/date=2026-07-01/kind=nightly/_manifest.json      (the run manifest)
    <out>/date=2026-07-01/kind=nightly/_holdout.pq         (the held-out users, Parquet)
    <out>/date=2026-07-01/kind=heat_warning/channel=.../part-00000.parquet
    <out>/_history/...                                      (see recsys.push.history)
    <out>/_work/date=.../kind=.../                          (a run in progress)

One row per (user, channel, rank) with :data:`OUTPUT_COLUMNS`. The partition
columns ``date``, ``kind`` and ``channel`` live in the folder names only, never
inside the files (a file column beside a partition column of another type is
what made ``pd.read_parquet(out)`` fail), and the only files under ``<out>``
whose names end in ``.parquet`` are committed push rows: the holdout and the
history are Parquet files named ``.pq``, a run's staged parts end in
``.staged`` until the commit. So each of ``pd.read_parquet(out)``,
``pyarrow.dataset.dataset(out, partitioning="hive")`` and DuckDB's
``read_parquet('<out>/**/*.parquet', hive_partitioning=true)`` reads the whole
folder as it is. A run (one date, one kind) works in ``_work``: each finished
chunk leaves its Parquet parts and a checkpoint marker there, so a killed run
resumes without recomputing finished chunks. The finished run replaces its own
``date=/kind=`` folder in one rename: a re-run replaces that night's rows and
never touches another kind (a campaign survives a nightly re-run and vice
versa); until the rename the previous complete output stays as it was.
Names starting with ``_`` or ``.`` are skipped by Parquet dataset readers;
:func:`read_pushes` reads the rows back.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys import columns as C
from recsys.exceptions import ArtifactError
from recsys.io import write_json, write_parquet
from recsys.push import history as H
from recsys.push.lock import hold

CAMPAIGN = "campaign"
SEND_AFTER = "send_after"
SEND_BEFORE = "send_before"
MODEL_VERSION = "model_version"
RUN_ID = "run_id"
#: the columns of a push row, in file order
OUTPUT_COLUMNS = (
    C.USER_ID,
    C.CHANNEL,
    C.RANK,
    C.ITEM_ID,
    C.SCORE,
    C.REASONS,
    CAMPAIGN,
    SEND_AFTER,
    SEND_BEFORE,
    MODEL_VERSION,
    RUN_ID,
)
NIGHTLY = "nightly"
MANIFEST_FILE = "_manifest.json"
HOLDOUT_FILE = "_holdout.pq"
#: a chunk's rows carry this suffix until the commit, so no reader of ``**/*.parquet`` sees them
STAGED_SUFFIX = ".staged"
#: the partition columns: folder names, never file columns
PARTITION_COLUMNS = ("date", "kind", C.CHANNEL)
HISTORY_DIR = "_history"
WORK_DIR = "_work"


def output_schema(timezone: str) -> pa.Schema:
    """The Arrow schema of push rows; send times are local (``timezone``) timestamps."""
    local = pa.timestamp("us", tz=timezone)
    return pa.schema(
        [
            (C.USER_ID, pa.string()),
            (C.CHANNEL, pa.string()),
            (C.RANK, pa.int16()),
            (C.ITEM_ID, pa.string()),
            (C.SCORE, pa.float32()),
            (C.REASONS, pa.list_(pa.string())),
            (CAMPAIGN, pa.string()),
            (SEND_AFTER, local),
            (SEND_BEFORE, local),
            (MODEL_VERSION, pa.string()),
            (RUN_ID, pa.string()),
        ]
    )


def file_schema(timezone: str) -> pa.Schema:
    """The Arrow schema of a push-row file: :func:`output_schema` less ``channel`` (a partition column)."""
    schema = output_schema(timezone)
    return schema.remove(schema.get_field_index(C.CHANNEL))


def partition_dir(out: str | Path, day: dt.date, kind: str) -> Path:
    """The folder holding one run's rows (all channels)."""
    return Path(out) / f"date={day.isoformat()}" / f"kind={kind}"


def part_file(chunk: int) -> str:
    """File name of one chunk's rows inside a channel folder."""
    return f"part-{int(chunk):05d}.parquet"


@contextlib.contextmanager
def run_lock(out: str | Path, run: str = "push") -> Iterator[None]:
    """Hold the output folder's lock for one run (see :mod:`recsys.push.lock`).

    Raises
    ------
    LockedError
        If another run holds the lock, naming it.
    """
    with hold(out, what="push output", run=run):
        yield


def fingerprint_digest(fingerprint: dict[str, Any]) -> str:
    """A short, stable digest of a run's inputs (what must match to resume)."""
    text = json.dumps(fingerprint, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def new_run_id(day: dt.date, kind: str) -> str:
    """A fresh run id: the date, the kind, the UTC start time and a random suffix."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{day.isoformat()}-{kind}-{stamp}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Workspace:
    """The work folder of one run (one date, one kind) under ``<out>/_work``.

    Only paths; every method reads or writes files, so a worker process (or a
    Dask worker on a shared file system) can write its chunk through a copy.
    """

    root: Path

    @classmethod
    def for_run(cls, out: str | Path, day: dt.date, kind: str) -> Workspace:
        """The workspace of run (``day``, ``kind``) under output folder ``out``."""
        return cls(Path(out) / WORK_DIR / f"date={day.isoformat()}" / f"kind={kind}")

    @property
    def out_dir(self) -> Path:
        """Staged output rows (renamed into the partition at commit)."""
        return self.root / "out"

    @property
    def history_dir(self) -> Path:
        """Staged push history (moved into the history store at commit)."""
        return self.root / "history"

    @property
    def chunks_dir(self) -> Path:
        """Checkpoint markers of finished chunks."""
        return self.root / "chunks"

    def start(self, fingerprint: dict[str, Any], run_id: str) -> tuple[str, bool]:
        """Begin or resume the run.

        If the workspace holds a run with the same inputs, it is resumed (its
        run id and finished chunks are kept); otherwise it is cleared.

        Returns
        -------
        run_id : str
            The resumed run's id, or ``run_id``.
        resumed : bool
        """
        plan_path = self.root / "plan.json"
        digest = fingerprint_digest(fingerprint)
        if plan_path.exists():
            try:
                plan = json.loads(plan_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                plan = {}
            if plan.get("digest") == digest and plan.get("run_id"):
                return str(plan["run_id"]), True
        if self.root.exists():
            shutil.rmtree(self.root)
        self.chunks_dir.mkdir(parents=True)
        # staged history exists from the start, so that a run with no rows still
        # replaces (empties) an earlier run's history of the same date and kind
        self.history_dir.mkdir(parents=True)
        self.out_dir.mkdir(parents=True)
        write_json({"digest": digest, "run_id": run_id, "fingerprint": fingerprint}, plan_path)
        return run_id, False

    def chunk_marker(self, chunk: int) -> Path:
        """The checkpoint file of one chunk (its stats, written last)."""
        return self.chunks_dir / f"chunk-{int(chunk):05d}.json"

    def done_chunks(self) -> set[int]:
        """The chunks whose checkpoint exists."""
        if not self.chunks_dir.is_dir():
            return set()
        return {int(p.stem.split("-")[1]) for p in self.chunks_dir.glob("chunk-*.json")}

    def write_chunk(
        self,
        chunk: int,
        rows: pd.DataFrame,
        schema: pa.Schema,
        buckets: range,
        bucket_of_row: np.ndarray,
        stats: dict[str, Any],
    ) -> None:
        """Write one chunk's rows, its history and then its checkpoint.

        Parameters
        ----------
        chunk : int
        rows : DataFrame
            :data:`OUTPUT_COLUMNS`.
        schema : pyarrow.Schema
            :func:`output_schema` (the ``channel`` column goes into the folder name).
        buckets : range
            The history buckets this chunk owns.
        bucket_of_row : array of int
            Each row's user's bucket.
        stats : dict
            Counts for the manifest (JSON-ready); the checkpoint.
        """
        schema = schema.remove(schema.get_field_index(C.CHANNEL)) if C.CHANNEL in schema.names else schema
        if len(rows):  # a chunk without rows writes no parts and no history, only its marker
            # the rows converted to Arrow once (an Arrow-backed column, e.g. the ranking's reasons, is
            # taken as it is), then each channel's rows taken from it in their order
            table = _file_table(rows, schema)
            channel, names = pd.factorize(rows[C.CHANNEL], sort=True)
            for code, name in enumerate(names):
                part = table.take(np.flatnonzero(channel == code))
                write_parquet(part, self.out_dir / f"channel={name}" / (part_file(chunk) + STAGED_SUFFIX))
            # the history rows from the same Arrow columns, grouped by bucket (a stable sort keeps each
            # bucket's rows in chunk order), each bucket written from a zero-copy slice
            bucket_of_row = np.asarray(bucket_of_row)
            order = np.argsort(bucket_of_row, kind="stable")
            ordered = bucket_of_row[order]
            channels = pa.array(list(names), pa.string()).take(channel)
            history = H.history_from_columns(table.column(C.USER_ID), table.column(C.ITEM_ID), channels, rows)
            history = history.take(order)
            starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if ordered.size else ordered
            for lo, hi in zip(starts.tolist(), [*starts[1:].tolist(), ordered.size]):
                bucket = int(ordered[lo])
                if bucket not in buckets:
                    raise ArtifactError(f"chunk {chunk} produced a row of bucket {bucket}, outside its buckets {buckets}")
                H.write_bucket(self.history_dir, bucket, history.slice(lo, hi - lo))
        # the marker goes last: its presence means every file above is complete
        write_json(stats, self.chunk_marker(chunk))

    def read_stats(self) -> list[dict[str, Any]]:
        """The stats of every finished chunk, by chunk number."""
        return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(self.chunks_dir.glob("chunk-*.json"))]

    def commit(
        self,
        store: H.HistoryStore,
        day: dt.date,
        kind: str,
        out: str | Path,
        manifest: dict[str, Any],
        holdout: pd.DataFrame | None = None,
    ) -> Path:
        """Publish the finished run: history first, then the output partition.

        The history is committed first: if the process dies between the two
        renames, the history over-counts a run whose rows are not yet visible
        (caps err on the strict side) and a re-run finishes the commit.

        Returns
        -------
        Path
            The run's partition folder.
        """
        # absent here only when an interrupted commit already moved it
        if self.history_dir.exists():
            store.commit(day, kind, self.history_dir)
        if holdout is not None:
            write_parquet(holdout, self.out_dir / HOLDOUT_FILE)
        write_json(manifest, self.out_dir / MANIFEST_FILE)
        # staged parts get their reader-visible names only now, inside the staged folder
        for staged in sorted(self.out_dir.glob(f"channel=*/*{STAGED_SUFFIX}")):
            os.replace(staged, staged.with_name(staged.name[: -len(STAGED_SUFFIX)]))
        dest = partition_dir(out, day, kind)
        dest.parent.mkdir(parents=True, exist_ok=True)
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(dest, old)
        os.replace(self.out_dir, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)
        return dest


def _file_table(rows: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """``rows`` as the Arrow table of a push-row file (``schema``), with the pandas metadata the rows had
    as Python objects: a reasons column held in Arrow is declared a column of lists (numpy type
    ``object``), so ``pandas.read_parquet`` returns the push's reasons as it always did and the file
    is the same whichever way the rows held them."""
    # one thread: a push worker has one core, and pyarrow's per-column thread pool only adds switching
    table = pa.Table.from_pandas(rows[list(schema.names)], schema=schema, preserve_index=False, nthreads=1)
    meta = json.loads(table.schema.metadata[b"pandas"])
    for column in meta["columns"]:
        if column["name"] == C.REASONS:
            column["numpy_type"] = "object"
    return table.replace_schema_metadata({**table.schema.metadata, b"pandas": json.dumps(meta).encode("utf8")})


def read_manifest(out: str | Path, day: dt.date, kind: str = NIGHTLY) -> dict[str, Any]:
    """Read a committed run's manifest.

    Raises
    ------
    ArtifactError
        If the run has no manifest.
    """
    path = partition_dir(out, day, kind) / MANIFEST_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no such push run") from None


def read_pushes(
    out: str | Path, day: dt.date | None = None, kind: str | None = None, channel: str | None = None
) -> pd.DataFrame:
    """Read committed push rows back as one DataFrame.

    Parameters
    ----------
    out : path
        The output folder.
    day, kind, channel : optional
        Restrict to one date / kind / channel.

    Returns
    -------
    DataFrame
        :data:`OUTPUT_COLUMNS` plus ``date`` (ISO text) and ``kind``, sorted by
        date, kind, channel, user and rank (empty when nothing matches).
    """
    root = Path(out)
    columns = [*OUTPUT_COLUMNS, "date", "kind"]
    frames = []
    for path in sorted(root.glob("date=*/kind=*/channel=*/part-*.parquet")):
        date_dir, kind_dir, channel_dir = path.parts[-4:-1]
        parts = (date_dir.split("=", 1)[1], kind_dir.split("=", 1)[1], channel_dir.split("=", 1)[1])
        if (day is not None and parts[0] != day.isoformat()) or (kind is not None and parts[1] != kind):
            continue
        if channel is not None and parts[2] != channel:
            continue
        frame = pq.read_table(path).to_pandas()
        # written before the partition columns left the files: the folder name is the truth
        frame = frame.drop(columns=[c for c in PARTITION_COLUMNS if c in frame.columns])
        frame["date"], frame["kind"], frame[C.CHANNEL] = parts
        frames.append(frame)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    table = pd.concat(frames, ignore_index=True)
    order = ["date", "kind", C.CHANNEL, C.USER_ID, C.RANK]
    return table.sort_values(order, kind="stable").reset_index(drop=True)[columns]
