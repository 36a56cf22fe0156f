"""The synthetic city's broadcast places and its items' running times.

Places (the optional ``places`` table of the data contract):

* a **TV** and a **radio** station per district, their audience the
  district's population tilted the way these media skew (TV older and more
  rural; radio farmers, drivers and the elderly). Radio stations leave their
  mix out, so it comes from the district's registered users -- the path a
  city without audience research takes;
* **cinemas** (pre-show) in the urban districts, one per 10% of the city's
  population (at least one), skewed young and urban;
* **kiosks** (multimedia windows) in communities (urban districts), villages
  (rural districts) and schools (both), spread by population, each with a
  local mix jittered around its kind's.

Running times: items of the formats with a running time
(:data:`TIMED_FORMATS`) get ``duration_seconds`` = their hidden content
length, rounded to the second (at most :data:`MAX_DURATION_SECONDS`); articles, e-books and events get none, so they
cannot be scheduled on a timed channel.

Everything random comes from the ``rng`` given (the city gives its own
stream), so existing draws of users, items and events do not change.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.synthetic.catalogue import Catalogue
from recsys.synthetic.spec import Spec
from recsys.taxonomy import Taxonomy

#: formats with a running time (the rest have no duration_seconds)
TIMED_FORMATS = ("video", "short_video", "audio", "animation")

#: per kind: channel, slots a day, seconds a slot, local hours, how the mix is tilted
#: (multiplier by group or sub-group code, sub-group wins), Dirichlet concentration of the jitter
#: (large = close to the tilted district mix), whether the mix is written to the table
KINDS: dict[str, dict] = {
    "tv": {
        "channel": "tv",
        "slots_per_day": 4,
        "slot_seconds": 900.0,
        "active_hours": "06:00-23:00",
        "tilt": {"elderly": 2.0, "farmer": 1.3, "youth": 0.6, "college": 0.4},
        "concentration": 400.0,
        "mix": True,
    },
    "radio": {
        "channel": "radio",
        "slots_per_day": 3,
        "slot_seconds": 1800.0,
        "active_hours": "06:00-22:00",
        "tilt": {},
        "concentration": 0.0,
        "mix": False,
    },
    "cinema": {
        "channel": "cinema",
        "slots_per_day": 6,
        "slot_seconds": 240.0,
        "active_hours": "10:00-23:00",
        "tilt": {"youth": 2.0, "preschool": 0.3, "urban_worker": 1.4, "elderly": 0.3, "farmer": 0.3},
        "concentration": 150.0,
        "mix": True,
    },
    "community": {
        "channel": "kiosk",
        "slots_per_day": 1,
        "slot_seconds": 1800.0,
        "active_hours": "08:00-20:00",
        "tilt": {"resident": 3.0, "elderly": 4.0, "urban_worker": 1.0, "youth": 0.5, "farmer": 0.3},
        "concentration": 40.0,
        "mix": True,
    },
    "school": {
        "channel": "kiosk",
        "slots_per_day": 1,
        "slot_seconds": 1200.0,
        "active_hours": "07:30-17:30",
        "tilt": {
            "youth": 25.0,
            "preschool": 0.5,
            "civil_servant": 0.5,
            "farmer": 0.1,
            "urban_worker": 0.1,
            "resident": 0.1,
        },
        "concentration": 40.0,
        "mix": True,
    },
    "village": {
        "channel": "kiosk",
        "slots_per_day": 1,
        "slot_seconds": 1800.0,
        "active_hours": "08:00-19:00",
        "tilt": {"farmer": 4.0, "elderly": 2.5, "youth": 0.5, "urban_worker": 0.2, "civil_servant": 0.3},
        "concentration": 40.0,
        "mix": True,
    },
}
#: share of a district's kiosks at schools; the rest are in communities (urban) or villages (rural)
SCHOOL_SHARE = 0.3
#: kiosks of a city of ``n_users``: one per this many users, within the bounds
USERS_PER_KIOSK, MIN_KIOSKS, MAX_KIOSKS = 100, 9, 2000
#: the longest running time written (the longest slot of any place: no item is too long to schedule)
MAX_DURATION_SECONDS = 1800.0
#: a share below this is left out of a written mix (and the rest rescaled)
MIN_SHARE = 0.01

_NAMES = {
    "tv": "{zh}电视台",
    "radio": "{zh}人民广播电台",
    "cinema": "{zh}影院{n}",
    "community": "{zh}社区科普e站{n}",
    "school": "{zh}校园科普e站{n}",
    "village": "{zh}村级科普e站{n}",
}


def default_kiosks(n_users: int) -> int:
    """How many kiosks a city of ``n_users`` gets."""
    return int(min(MAX_KIOSKS, max(MIN_KIOSKS, n_users // USERS_PER_KIOSK)))


def item_durations(catalogue: Catalogue, spec: Spec) -> np.ndarray:
    """``duration_seconds`` of each item: its content length for timed formats, NaN otherwise."""
    timed = np.isin(np.asarray(spec.formats, dtype=object)[catalogue.format], TIMED_FORMATS)
    return np.where(timed, np.clip(np.round(catalogue.length), 1.0, MAX_DURATION_SECONDS), np.nan)


def _district_mix(spec: Spec, r: int) -> tuple[list[str], np.ndarray]:
    """Region ``r``'s population by (group, sub-group) key: codes and shares."""
    n_s = len(spec.sub_groups)
    keys, shares = [], []
    for g, group in enumerate(spec.groups):
        for s in range(n_s + 1):
            share = spec.group_mix[r, g] * spec.sub_group_mix[r, g, s]
            if share > 0:
                keys.append(spec.sub_groups[s] if s < n_s else group)
                shares.append(share)
    return keys, np.asarray(shares, dtype=np.float64)


def _tilted(spec: Spec, keys: list[str], shares: np.ndarray, tilt: dict[str, float]) -> np.ndarray:
    group_of = {s: spec.groups[g] for s, g in zip(spec.sub_groups, spec.sub_group_of)}
    mult = np.array([tilt.get(k, tilt.get(group_of.get(k, k), 1.0)) for k in keys], dtype=np.float64)
    out = shares * mult
    return out / out.sum()


def _mix_text(keys: list[str], shares: np.ndarray) -> str:
    """A mix as JSON: shares under MIN_SHARE left out, three decimals, summing to 1 exactly."""
    keep = shares >= MIN_SHARE
    kept = shares[keep] / shares[keep].sum()
    rounded = np.round(kept, 3)
    rounded[int(np.argmax(rounded))] += round(1.0 - float(rounded.sum()), 3)
    return json.dumps({k: round(float(v), 3) for k, v in zip(np.asarray(keys)[keep], rounded)}, ensure_ascii=False)


def _counts(total: int, weights: np.ndarray) -> np.ndarray:
    """``total`` split by ``weights`` (largest remainders), as integers."""
    if total <= 0 or weights.sum() <= 0:
        return np.zeros(len(weights), dtype=np.int64)
    raw = total * weights / weights.sum()
    out = np.floor(raw).astype(np.int64)
    out[np.argsort(-(raw - out), kind="stable")[: total - int(out.sum())]] += 1
    return out


def make_places(spec: Spec, taxonomy: Taxonomy, n_kiosks: int, rng: np.random.Generator) -> pd.DataFrame:
    """The places table of a synthetic city.

    Parameters
    ----------
    spec : Spec
        The city's spec (district populations by group and sub-group).
    taxonomy : Taxonomy
        Regions (urban or rural, Chinese names).
    n_kiosks : int
        Kiosks in all (>= 0); see :func:`default_kiosks`.
    rng : numpy.random.Generator
        The places' own stream.

    Returns
    -------
    pandas.DataFrame
        Columns of the contract's places table (``audience`` a JSON text, ``""``
        where the registered users give the mix), one row per place.
    """
    regions = list(spec.regions)
    urban = np.array([taxonomy.urban[r] for r in regions], dtype=bool)
    rows: list[dict] = []

    def add(kind: str, r: int, n: int) -> None:
        conf = KINDS[kind]
        keys, shares = _district_mix(spec, r)
        audience = ""
        if conf["mix"]:
            mix = _tilted(spec, keys, shares, conf["tilt"])
            jitter = rng.dirichlet(np.maximum(mix * conf["concentration"], 1e-3))
            audience = _mix_text(keys, jitter)
        region = regions[r]
        suffix = f"_{n:04d}" if kind not in ("tv", "radio") else ""
        rows.append(
            {
                C.PLACE_ID: f"{kind}_{region}{suffix}",
                C.CHANNEL: conf["channel"],
                C.REGION: region,
                C.NAME: _NAMES[kind].format(zh=taxonomy.regions[region].zh, n=n),
                C.AUDIENCE: audience,
                C.SLOTS_PER_DAY: int(conf["slots_per_day"]),
                C.SLOT_SECONDS: float(conf["slot_seconds"]),
                C.ACTIVE_HOURS: conf["active_hours"],
            }
        )

    for r in range(len(regions)):
        add("tv", r, 0)
        add("radio", r, 0)
    for r in np.flatnonzero(urban):
        for n in range(max(1, math.ceil(float(spec.region_share[r]) / 0.1))):
            add("cinema", int(r), n + 1)
    per_region = _counts(int(n_kiosks), spec.region_share)
    for r, count in enumerate(per_region.tolist()):
        schools = round(SCHOOL_SHARE * count)
        local = "community" if urban[r] else "village"
        for n in range(count):
            add("school" if n < schools else local, r, n + 1)
    frame = pd.DataFrame(rows)
    frame[C.SLOTS_PER_DAY] = frame[C.SLOTS_PER_DAY].astype(np.int64)
    return frame
