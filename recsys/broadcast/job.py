"""``recsys broadcast`` as a library job: read inputs, plan the day, write programmes atomically.

Layout of an output folder::

    <out>/date=2026-07-01/channel=tv/part-00000.parquet      (the day's tv programmes)
    <out>/date=2026-07-01/channel=kiosk/part-00000.parquet
    <out>/date=2026-07-01/_manifest.json                      (per channel: the last run's summary)

One row per scheduled item: :data:`~recsys.broadcast.programme.PROGRAMME_COLUMNS`.
``date`` and ``channel`` live in the folder names only (hive partitioning),
so ``pd.read_parquet(out)``, ``pyarrow.dataset`` and DuckDB's
``read_parquet('<out>/**/*.parquet', hive_partitioning=true)`` read the
folder as it is. Each channel's file is written to a temporary sibling and
renamed into place (other files in its folder are left alone); a re-run of a day replaces the rows of the places it
schedules and keeps the others (a run for one region leaves the other regions'
programmes of that channel as they were). Earlier days' programmes are what
``[broadcast] repeat_days`` reads.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys import columns as C
from recsys.broadcast.places import load_places
from recsys.broadcast.programme import PROGRAMME_COLUMNS, Programmes, day_bounds, plan_programmes
from recsys.config import BroadcastConfig
from recsys.exceptions import ConfigError, DataError
from recsys.holds import held_items
from recsys.io import atomic_path, prepare_output_dir, write_json
from recsys.push.job import model_age_warning, say
from recsys.push.lock import hold
from recsys.push.priorities import load_priorities
from recsys.push.users import read_current_users
from recsys.ranking import Recommender

NAME = "broadcast"
MANIFEST_FILE = "_manifest.json"
PART_FILE = "part-00000.parquet"
#: shortfall rows listed per channel in the manifest (the rest are counted)
MAX_SHORT_LISTED = 20

#: Arrow schema of a programme file (no partition columns)
FILE_SCHEMA = pa.schema(
    [
        (C.PLACE_ID, pa.string()),
        (C.SLOT, pa.int16()),
        (C.START_OFFSET_S, pa.float64()),
        (C.ITEM_ID, pa.string()),
        (C.EXPECTED_ENGAGEMENT, pa.float32()),
        (C.REASONS, pa.list_(pa.string())),
    ]
)


@dataclass(frozen=True)
class BroadcastSpec:
    """What one run does (the command line, as data).

    Attributes
    ----------
    model : Path
        A bundle folder (or ``models/latest``).
    day : datetime.date
        The broadcast day (local).
    places : Path
        The places table.
    out : Path
        The programmes folder.
    channel, region : str or None
        Only the places of this broadcast channel / region.
    items : Path or None
        The current catalogue (default: the bundle's copy).
    users : Path or None
        The users table that gives a place without a mix its region's mix
        (default: the bundle's users).
    holds : Path or None
        A holds folder (``recsys holds``): held items are never scheduled.
    priorities : Path or None
        A ``priorities.toml`` (``recsys demand``): its audiences' topics
        are chosen first for places with those audiences.
    config : BroadcastConfig
    force : bool
        Write into an ``out`` folder holding other files.
    """

    model: Path
    day: dt.date
    places: Path
    out: Path
    channel: str | None = None
    region: str | None = None
    items: Path | None = None
    users: Path | None = None
    holds: Path | None = None
    priorities: Path | None = None
    config: BroadcastConfig = dataclasses.field(default_factory=BroadcastConfig)
    force: bool = False


def _day_manifest(path: Path) -> dict[str, Any] | None:
    """A day's manifest as written by this command, or None when it is not one (unreadable, other JSON)."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(manifest, dict) and manifest.get("kind") == NAME and isinstance(manifest.get("channels"), dict)
    return manifest if ok else None


def _is_programmes(folder: Path) -> bool:
    """A folder an older run wrote: ``date=*/_manifest.json`` of kind broadcast."""
    return any(_day_manifest(manifest) is not None for manifest in folder.glob(f"date=*/{MANIFEST_FILE}"))


def _read_part(path: Path) -> pd.DataFrame:
    """One committed programme file; an unreadable one is refused by name (it is never rewritten)."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(
            f"{path}: not a readable programme file ({str(exc).splitlines()[0]}); restore it or move it away, "
            "nothing was written"
        ) from None
    missing = [c for c in FILE_SCHEMA.names if c not in table.column_names]
    if missing:
        raise DataError(
            f"{path}: not a programme file of recsys broadcast (no column {missing[0]!r}); "
            "restore it or move it away, nothing was written"
        )
    return table.to_pandas()


def read_programmes(out: str | Path, day: dt.date | None = None, channel: str | None = None) -> pd.DataFrame:
    """Read committed programme rows back (``date`` and ``channel`` from the folder names).

    Returns
    -------
    pandas.DataFrame
        :data:`PROGRAMME_COLUMNS` plus ``date`` (ISO text) and ``channel``;
        sorted by date, channel, place, slot and start; empty when nothing matches.
    """
    frames = []
    for path in sorted(Path(out).glob(f"date=*/channel=*/{PART_FILE}")):
        d, c = path.parts[-3].split("=", 1)[1], path.parts[-2].split("=", 1)[1]
        if (day is not None and d != day.isoformat()) or (channel is not None and c != channel):
            continue
        frames.append(_read_part(path).assign(date=d, channel=c))
    columns = [*PROGRAMME_COLUMNS, "date", C.CHANNEL]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    table = pd.concat(frames, ignore_index=True)[columns]
    return table.sort_values(["date", C.CHANNEL, C.PLACE_ID, C.SLOT, C.START_OFFSET_S], kind="stable").reset_index(
        drop=True
    )


def shown_before(out: str | Path, day: dt.date, repeat_days: int) -> pd.DataFrame:
    """``place_id, item_id`` of the programmes of the ``repeat_days`` days before ``day``."""
    frames = []
    for back in range(1, repeat_days + 1):
        earlier = read_programmes(out, day - dt.timedelta(days=back))
        if len(earlier):
            frames.append(earlier[[C.PLACE_ID, C.ITEM_ID]])
    if not frames:
        return pd.DataFrame({C.PLACE_ID: pd.Series(dtype=str), C.ITEM_ID: pd.Series(dtype=str)})
    return pd.concat(frames, ignore_index=True).drop_duplicates()


def _select(places: pd.DataFrame, spec: BroadcastSpec, taxonomy) -> pd.DataFrame:
    personal = set(taxonomy.personal_channels)
    if spec.channel is not None:
        broadcast = [c for c in taxonomy.channels if c not in personal]
        if spec.channel not in broadcast:
            raise ConfigError(f"--channel {spec.channel!r}: not a broadcast channel; valid: {', '.join(broadcast)}")
        places = places[places[C.CHANNEL] == spec.channel]
    if spec.region is not None:
        taxonomy.check("region", spec.region)
        places = places[places[C.REGION] == spec.region]
    if places.empty:
        what = " and ".join(
            f"{name} {value!r}" for name, value in (("channel", spec.channel), ("region", spec.region)) if value
        )
        raise DataError(f"{spec.places}: no place of {what}; nothing to schedule")
    return places.reset_index(drop=True)


def _channel_summary(prog: Programmes, channel: str) -> dict[str, Any]:
    rows = prog.rows[prog.rows[C.CHANNEL] == channel]
    stats = prog.places[prog.places[C.CHANNEL] == channel]
    short = stats[stats["short_s"] > 0].sort_values("short_s", ascending=False)
    capacity = float(stats["capacity_s"].sum())
    return {
        "places": len(stats),
        "rows": len(rows),
        "distinct_items": int(rows[C.ITEM_ID].nunique()),
        "capacity_s": capacity,
        "filled_s": float(stats["filled_s"].sum()),
        "fill_share": round(float(stats["filled_s"].sum()) / capacity, 4) if capacity else 0.0,
        "expected_engagement": round(float(rows[C.EXPECTED_ENGAGEMENT].sum()), 4),
        # not an error: the places with time left empty because too few eligible items exist
        "places_short": len(short),
        "short_s": float(short["short_s"].sum()),
        "shortfall": [
            {"place_id": p, "short_s": float(s), "eligible_items": int(e)}
            for p, s, e in zip(short[C.PLACE_ID], short["short_s"], short["eligible"])
        ][:MAX_SHORT_LISTED],
    }


def _write_channel(
    out: Path, day: dt.date, channel: str, rows: pd.DataFrame, replaced: set[str], previous: pd.DataFrame | None
) -> dict[str, int]:
    """Write a channel's day, keeping the rows of ``previous`` (the file's, when there is one) of places
    not ``replaced``; return what the file now holds."""
    folder = out / f"date={day.isoformat()}" / f"channel={channel}"
    if previous is not None:
        # keep the rows of places this run did not schedule (a run for one region)
        rows = pd.concat([previous[~previous[C.PLACE_ID].isin(replaced)], rows], ignore_index=True)
    rows = rows.sort_values([C.PLACE_ID, C.SLOT, C.START_OFFSET_S], kind="stable")
    table = pa.Table.from_pandas(rows[list(FILE_SCHEMA.names)], schema=FILE_SCHEMA, preserve_index=False)
    folder.mkdir(parents=True, exist_ok=True)
    # the one file is replaced atomically; anything else in the folder (not ours) is left where it is
    with atomic_path(folder / PART_FILE) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return {"places": int(rows[C.PLACE_ID].nunique()), "rows": len(rows)}


def run_broadcast(spec: BroadcastSpec, warn_stream: TextIO | None = sys.stderr) -> dict[str, Any]:
    """Write the programmes of ``spec.day`` for the places selected; return the run's manifest.

    The manifest's ``channels`` keeps one summary per channel written that
    day (a run for one region or channel updates only its own);
    ``run_channels``, in the returned dict only, lists the channels of this run.
    Warnings (a model learned from data long before ``spec.day``: the push's
    ``[push] stale_days`` rule, with the bundle's setting) go to
    ``warn_stream`` and into the manifest.

    Raises
    ------
    RecsysError
        Any bad input (places, catalogue, options), before anything is
        written; :class:`DataError` when no place is selected.
    """
    day_entry = f"date={spec.day.isoformat()}"
    # --force writes beside others' files: a day folder of the same name that this command did not
    # write (someone's own hive layout) is refused before any work, never merged into
    # (a day folder holding broadcast's own manifest is its own, recorded in the marker or not: a run
    # killed between the day's manifest and the marker)
    ours = _day_manifest(Path(spec.out) / day_entry / MANIFEST_FILE) is not None
    target = prepare_output_dir(
        spec.out, NAME, force=spec.force, recognise=_is_programmes, writes=[] if ours else [day_entry]
    )
    recommender = Recommender.load(spec.model, catalog=spec.items)
    state = recommender.state
    tax = state.taxonomy
    model = state.model
    age = model_age_warning(
        recommender.version, str(model.window.get("end") or ""), tax, spec.day, int(model.config.push.stale_days)
    )
    warnings = [age] if age else []
    say(warn_stream, warnings, "warning")
    users = state.model.users
    if spec.users is not None:
        users, _ = read_current_users(spec.users, tax)  # validated: quarantined rows do not count in a mix
    all_places = load_places(spec.places, tax, users)
    places = _select(all_places, spec, tax)
    held: frozenset[str] = frozenset()
    if spec.holds is not None:
        held = held_items(spec.holds)
    table = None
    if spec.priorities is not None:
        noon = pd.Timestamp(day_bounds(spec.day, tax)[0] + 12 * 3600 * 10**9, tz="UTC")
        table = load_priorities(spec.priorities, tax).boost_table(tax, noon)
    with hold(spec.out, what="broadcast output", run=f"broadcast {spec.day.isoformat()}"):
        manifest_path = target.path / day_entry / MANIFEST_FILE
        manifest: dict[str, Any] = {"kind": NAME, "date": spec.day.isoformat(), "channels": {}}
        if manifest_path.exists():
            # read before any row is rewritten: a day whose record is unreadable is not updated in half
            previous = _day_manifest(manifest_path)
            if previous is None:
                raise DataError(
                    f"{manifest_path}: not a day manifest of recsys broadcast (unreadable, or not its JSON "
                    "object); restore it or move the day's folder away, nothing was written"
                )
            manifest = previous
        shown = shown_before(spec.out, spec.day, spec.config.repeat_days)
        prog = plan_programmes(
            state,
            places,
            spec.day,
            spec.config,
            held=held,
            shown=shown,
            priorities=table,
            all_places=all_places,
        )
        if prog.rows.empty:
            left = ", ".join(f"{k} {v:,}" for k, v in prog.counts.items() if v)
            raise DataError(
                f"no item could be scheduled at any of the {len(places):,} places on {spec.day.isoformat()}: "
                f"no approved, live item of their channels' formats with a duration_seconds that fits a slot "
                f"and reaches their audiences (items left out: {left or 'none'}); nothing written"
            )
        channels = sorted(set(places[C.CHANNEL]))
        # every file of the day this run merges into is read first: a bad one stops the run before any
        # channel is rewritten
        parts = {c: target.path / day_entry / f"channel={c}" / PART_FILE for c in channels}
        previous = {c: _read_part(p) for c, p in parts.items() if p.exists()}
        in_file = {}
        for channel in channels:
            mine = set(places.loc[places[C.CHANNEL] == channel, C.PLACE_ID])
            rows = prog.rows[prog.rows[C.CHANNEL] == channel]
            in_file[channel] = _write_channel(target.path, spec.day, channel, rows, mine, previous.get(channel))
        run = {
            "model_version": recommender.version,
            "places_file": str(spec.places),
            "filters": {"channel": spec.channel, "region": spec.region},
            "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "config": dataclasses.asdict(spec.config),
            "holds": len(held),
            "priorities": None if spec.priorities is None else str(spec.priorities),
            # items that could not be scheduled on these channels at all, city-wide
            "items_left_out": prog.counts,
            "warnings": warnings,
        }
        for channel in channels:
            # the summary is this run's places; in_file is what the channel's file holds now (a region's
            # re-run keeps the other regions' rows)
            manifest["channels"][channel] = {**_channel_summary(prog, channel), "in_file": in_file[channel], "run": run}
        write_json(manifest, manifest_path)
        target.mark([day_entry])
    return {**manifest, "run_channels": channels}
