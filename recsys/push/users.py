"""A current users table for tonight's run (``push --users PATH`` or ``[push] users``).

The bundle knows the users as they were at training time. Opt-outs,
subscriptions, groups and regions change every day, and an opt-out must take
effect tonight, not at the next training. A current users table (the
contract's ``users`` table, validated by :mod:`recsys.schema`) replaces the
bundle's: its users are tonight's users, with their current ``push_opt_out``,
``channels``, ``group``, ``sub_group`` and ``region``. A user the bundle knows
keeps their learned vectors and channel engagement; a user new since training
is ranked as a cold user of their group and region; a bundle user missing from
the table (a deleted account) gets nothing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys import schema
from recsys.exceptions import SchemaError
from recsys.push.channels import subscriptions
from recsys.push.plan import BundleUsers
from recsys.taxonomy import Taxonomy

#: the validator's clock for a users table: registration times are not judged
_FAR_FUTURE = "2099-12-31T00:00:00Z"


def read_current_users(path: str | Path, taxonomy: Taxonomy) -> tuple[pd.DataFrame, dict[str, int]]:
    """Read and validate a current users table.

    Returns
    -------
    users : DataFrame
        Clean contract users (``user_id, group, sub_group, region, channels, push_opt_out``, ...).
    rejected : dict
        Rows left out, by quarantine reason.

    Raises
    ------
    SchemaError
        If the file is missing or unreadable, lacks a required column, or
        no row survives validation (with the counts per reason).
    """
    p = Path(path)
    if not p.is_file():
        raise SchemaError(f"--users {p}: no such file; give the current users table (.parquet or .csv)")
    raw = schema.read_table(p, "users")
    empty_items = pd.DataFrame({name: pd.Series(dtype=str) for name in schema.required_columns("items")})
    empty_events = pd.DataFrame({name: pd.Series(dtype=str) for name in schema.required_columns("events")})
    result = schema.validate_tables(raw, empty_items, empty_events, taxonomy=taxonomy, end=_FAR_FUTURE)
    rejected = {str(k): int(v) for k, v in result.counts().items() if v}
    if not len(result.users):
        counts = ", ".join(f"{k} {v}" for k, v in rejected.items()) or "the table is empty"
        raise SchemaError(f"--users {p}: no usable user among {len(raw)} rows ({counts}); run `recsys validate` on it")
    return result.users, rejected


def current_users(bundle: BundleUsers, current: pd.DataFrame, channels: list[str]) -> tuple[BundleUsers, dict[str, Any]]:
    """Tonight's users: the current table's, with the bundle's channel engagement where known.

    Parameters
    ----------
    bundle : BundleUsers
        The bundle's users (:func:`recsys.push.plan.read_bundle_users`).
    current : DataFrame
        Clean current users (:func:`read_current_users`).
    channels : list of str
        Personal channels in priority order.

    Returns
    -------
    users : BundleUsers
        One row per current user; ``attributes`` set, so the ranking uses
        their current group, sub-group and region.
    info : dict
        ``users``, ``new_users`` (unknown to the bundle) and ``gone_users``
        (bundle users absent from the table), for the manifest.
    """
    ids = current[C.USER_ID].astype(str).to_numpy(dtype=object)
    known = pd.Index(bundle.table[C.USER_ID].astype(str).to_numpy(dtype=object))
    pos = known.get_indexer(ids)
    engagement = np.zeros((len(ids), bundle.engagement.shape[1]), dtype=np.float32)
    engagement[pos >= 0] = bundle.engagement[pos[pos >= 0]]
    sub_group = current[C.SUB_GROUP] if C.SUB_GROUP in current.columns else pd.Series(None, index=current.index)
    table = pd.DataFrame(
        {
            C.USER_ID: ids,
            C.GROUP: current[C.GROUP].astype(str).to_numpy(dtype=object),
            C.REGION: current[C.REGION].astype(str).to_numpy(dtype=object),
            C.PUSH_OPT_OUT: current[C.PUSH_OPT_OUT].fillna(False).to_numpy(dtype=bool),
            C.SUB_GROUP: sub_group.astype(object).where(sub_group.notna(), None).to_numpy(dtype=object),
        }
    )
    users = dataclasses.replace(
        bundle,
        table=table,
        subscribed=subscriptions(current[C.CHANNELS].reset_index(drop=True), channels),
        engagement=engagement,
        attributes=True,
    )
    info = {
        "users": int(len(ids)),
        "new_users": int((pos < 0).sum()),
        "gone_users": int(len(known) - len(np.unique(pos[pos >= 0]))),
    }
    return users, info
