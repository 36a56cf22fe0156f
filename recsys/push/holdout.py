"""The measurement holdout: a fixed share of users per group x region who get no push.

Who is held out is decided by a salted hash of the user id, so the same users
stay out night after night until the salt in the config changes. Within each
group x region stratum the users are ordered by that hash and the first
``round(share * n)`` are held out: the share is exact up to rounding in every
stratum (a per-user coin flip would miss by more than a point in a stratum of
a thousand about one night in seven). A user joining a stratum moves the
cut-off by at most one user.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.config import is_number
from recsys.exceptions import ConfigError, SchemaError
from recsys.push.hashing import stable_hash


def check_holdout_params(share: float, salt: str) -> None:
    """Validate the holdout share and salt.

    Raises
    ------
    ConfigError
        If ``share`` is outside [0, 1) or ``salt`` is not a non-empty string.
    """
    if not is_number(share) or not 0.0 <= float(share) < 1.0:
        raise ConfigError(f"push holdout_share must be a number in [0, 1), got {share!r}")
    if not isinstance(salt, str) or not salt:
        raise ConfigError(f"push holdout_salt must be a non-empty string, got {salt!r}")


def holdout_mask(users: pd.DataFrame, *, share: float, salt: str) -> np.ndarray:
    """Return which users are in the holdout.

    Parameters
    ----------
    users : DataFrame
        Needs ``user_id``, ``group`` and ``region``; pass the whole user table
        (not a segment), so a segment run holds out the same users as a
        city-wide one.
    share : float
        Share of each group x region stratum held out, in [0, 1).
    salt : str
        Key of the hash; changing it draws a new holdout.

    Returns
    -------
    ndarray, bool (n_users,)
        True for held-out users, aligned with ``users`` rows.

    Raises
    ------
    SchemaError
        If a needed column is missing.
    ConfigError
        If ``share`` or ``salt`` is invalid.
    """
    missing = [c for c in (C.USER_ID, C.GROUP, C.REGION) if c not in users.columns]
    if missing:
        raise SchemaError(f"users table lacks column(s) {', '.join(missing)} needed for the holdout")
    check_holdout_params(share, salt)
    n = len(users)
    mask = np.zeros(n, dtype=bool)
    if n == 0 or share == 0:
        return mask
    strata = _strata(users)
    hashes = stable_hash(users[C.USER_ID].astype(str), salt=salt)
    # each stratum's users in row order (a stable sort of small integer codes is a radix sort),
    # then per stratum the quota lowest hashes, ties to the lower row: the first round(share * n)
    # of the stratum ordered by (hash, row), found by a partial sort (no sort of every hash)
    by_stratum = np.argsort(strata, kind="stable")
    sizes = np.bincount(strata)
    quota = np.floor(sizes * float(share) + 0.5).astype(np.int64)
    ends = np.cumsum(sizes)
    for s, end in enumerate(ends):
        size, take = int(sizes[s]), int(quota[s])
        if take == 0:
            continue
        rows = by_stratum[end - size : end]
        if take >= size:
            mask[rows] = True
            continue
        values = hashes[rows]
        cut = np.partition(values, take - 1)[take - 1]
        below = values < cut
        # the users at the cut value, lowest rows first, fill what is left of the quota
        tied = np.flatnonzero(values == cut)[: take - int(below.sum())]
        mask[rows[below]] = True
        mask[rows[tied]] = True
    return mask


def _strata(users: pd.DataFrame) -> np.ndarray:
    """Each user's group x region stratum, numbered 0 .. strata - 1 (int16 when few).

    Raises
    ------
    SchemaError
        If a user has no group or region.
    """
    groups, _ = pd.factorize(users[C.GROUP])
    regions, names = pd.factorize(users[C.REGION])
    if (groups < 0).any() or (regions < 0).any():
        missing = int(((groups < 0) | (regions < 0)).sum())
        raise SchemaError(f"users table: {missing} users without a group or region; the holdout draws per group x region")
    pairs = groups.astype(np.int64) * max(len(names), 1) + regions
    present = np.bincount(pairs)
    number = np.cumsum(present > 0) - 1
    strata = number[pairs]
    return strata.astype(np.int16) if len(present) < 2**15 else strata


def holdout_summary(users: pd.DataFrame, mask: np.ndarray) -> dict[str, Any]:
    """Summarise a holdout for the run manifest.

    Returns
    -------
    dict
        ``size`` (held-out users), ``users`` (all users), ``share`` (overall)
        and ``by_stratum``: ``{"group/region": {"users": n, "holdout": m, "share": s}}``,
        strata in (group, region) order.
    """
    held = np.asarray(mask, dtype=bool)
    # counted by integer codes: no Python string per user (a city-wide run summarises 3.1M users)
    groups, group_names = pd.factorize(users[C.GROUP])
    regions, region_names = pd.factorize(users[C.REGION])
    width = max(len(region_names), 1)
    pairs = groups.astype(np.int64) * width + regions
    known = (groups >= 0) & (regions >= 0)  # a stratum needs both codes
    cells = max(len(group_names), 1) * width
    sizes = np.bincount(pairs[known], minlength=cells)
    taken = np.bincount(pairs[known & held], minlength=cells)
    strata = sorted((str(group_names[c // width]), str(region_names[c % width]), c) for c in np.flatnonzero(sizes))
    by_stratum = {
        f"{g}/{r}": {"users": int(sizes[c]), "holdout": int(taken[c]), "share": round(int(taken[c]) / int(sizes[c]), 4)}
        for g, r, c in strata
    }
    total = int(len(held))
    size = int(held.sum())
    return {
        "size": size,
        "users": total,
        "share": round(size / total, 4) if total else 0.0,
        "by_stratum": by_stratum,
    }
