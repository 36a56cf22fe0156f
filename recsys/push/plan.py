"""Who is in tonight's run, who is skipped and why, and how users are cut into chunks.

A user is push-eligible when not opted out and subscribed to at least one
personal channel (the forced ``--channel`` if one is given: see
:func:`usable_channels`). The run's scope
is the eligible users of the segment (``--group`` / ``--region``) minus the
holdout, which is drawn over the whole user table so that a segment run holds
out exactly the users a city-wide run holds out.

Chunks own whole push-history buckets: users are grouped by
``hash(user_id) % history_buckets`` and consecutive buckets are merged until a
chunk holds ``chunk_size`` users, so a chunk reads only its own users'
history. The cut depends on the users and the config only (never on the
number of workers), which is what lets a run resume chunk by chunk.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from recsys import columns as C
from recsys.exceptions import ConfigError
from recsys.timeutil import OPTION_TIME_RANGE
from recsys.training.serving import read_model_array, read_users
from recsys.push.channels import subscriptions
from recsys.push.hashing import user_buckets
from recsys.push.holdout import holdout_mask
from recsys.taxonomy import Taxonomy

SKIP_OPTED_OUT = "opted_out"
SKIP_NO_CHANNEL = "no_subscribed_channel"
SKIP_HOLDOUT = "holdout"
#: a run's skips after planning: every channel of the user capped, or no eligible item left
SKIP_CAPPED = "caps_reached"
SKIP_NO_ITEMS = "no_eligible_items"
#: why a user is outside a run, by code in :attr:`UserPlan.reason`
REASONS = ("in_scope", SKIP_OPTED_OUT, SKIP_NO_CHANNEL, SKIP_HOLDOUT, "outside_segment")


#: the days a run may be for: the days of the time options' range (``recsys.timeutil.OPTION_TIME_RANGE``,
#: its end exclusive), so a ``--date`` and a ``--now`` accept the same span the README states
FIRST_DAY = dt.date.fromisoformat(OPTION_TIME_RANGE[0][:10])
LAST_DAY = dt.date.fromisoformat(OPTION_TIME_RANGE[1][:10]) - dt.timedelta(days=1)


def parse_day(value: str | dt.date) -> dt.date:
    """The ``--date`` of a run: a local calendar day ``YYYY-MM-DD``.

    Raises
    ------
    ConfigError
        Naming the bad value: not a date, or outside :data:`FIRST_DAY` .. :data:`LAST_DAY`.
    """
    if isinstance(value, dt.datetime):
        value = value.date()
    if not isinstance(value, dt.date):
        try:
            value = dt.date.fromisoformat(str(value))
        except ValueError:
            raise ConfigError(f"--date {value!r} is not a date; use YYYY-MM-DD (the city's local day)") from None
    if not FIRST_DAY <= value <= LAST_DAY:
        raise ConfigError(f"--date {value.isoformat()} is out of range; valid: {FIRST_DAY} .. {LAST_DAY}")
    return value


@dataclass
class BundleUsers:
    """A bundle's users as the push needs them, read column by column.

    Attributes
    ----------
    table : DataFrame
        ``user_id, group, region, push_opt_out`` (Arrow-backed strings: no
        Python object per user).
    subscribed : ndarray, bool (n_users, P)
        Subscribed personal channels, columns in channel priority order.
    engagement : ndarray, float32 (n_users, P)
        Positive engagements per channel (the model's counts), same columns.
    attributes : bool
        True when ``table`` comes from a current users table
        (:mod:`recsys.push.users`): it then also holds ``sub_group``, and the
        ranking is given each user's current group, sub-group and region.
    """

    table: pd.DataFrame
    subscribed: np.ndarray
    engagement: np.ndarray
    attributes: bool = False


def read_bundle_users(root: str | Path, taxonomy: Taxonomy, channels: Sequence[str]) -> BundleUsers:
    """Read the users of the bundle at ``root`` (their push columns and channel counts).

    Raises
    ------
    ArtifactError
        If the channel counts are missing or unreadable.
    """
    arrow = read_users(root, [C.USER_ID, C.GROUP, C.REGION, C.CHANNELS, C.PUSH_OPT_OUT])
    table = arrow.select([C.USER_ID, C.GROUP, C.REGION, C.PUSH_OPT_OUT]).to_pandas()
    counts = read_model_array(root, "user_channel_counts")
    columns = [list(taxonomy.channels).index(c) for c in channels]
    users = BundleUsers(
        table=table,
        subscribed=subscriptions(arrow.column(C.CHANNELS), channels),
        engagement=np.asarray(counts[:, columns], dtype=np.float32),
    )
    del arrow
    # Arrow's allocator keeps freed buffers (the channel lists) for reuse; the
    # driver holds these users for the whole run, so give the memory back now
    pa.default_memory_pool().release_unused()
    return users


@dataclass(frozen=True)
class Segment:
    """A run's audience filter (``None`` = everyone) and forced channel."""

    group: str | None = None
    region: str | None = None
    channel: str | None = None

    def check(self, taxonomy: Taxonomy) -> "Segment":
        """Validate the codes against the taxonomy.

        Raises
        ------
        UnknownCodeError
            For an unknown group or region.
        ConfigError
            If ``channel`` is not a personal channel.
        """
        if self.group is not None:
            taxonomy.check("group", self.group)
        if self.region is not None:
            taxonomy.check("region", self.region)
        if self.channel is not None and self.channel not in taxonomy.personal_channels:
            raise ConfigError(
                f"channel {self.channel!r} is not a personal channel; valid: {', '.join(taxonomy.personal_channels)}"
            )
        return self


@dataclass
class UserPlan:
    """The outcome of planning.

    Attributes
    ----------
    scope : ndarray, int64
        Row positions (in the user table) of the users to compute, sorted by
        (bucket, position).
    buckets : ndarray, int32
        Bucket of each ``scope`` user.
    holdout : DataFrame
        ``user_id, group, region`` of the held-out users of the segment.
    skipped : dict[str, int]
        Users of the segment left out before ranking, by reason.
    segment_users : int
        Users in the segment.
    reason : ndarray, int8 (n_users,)
        Per user of the table: index into :data:`REASONS` (0 = computed).
    held : ndarray, bool (n_users,)
        Per user of the table: in the holdout (whatever the segment).
    """

    scope: np.ndarray
    buckets: np.ndarray
    holdout: pd.DataFrame
    skipped: dict[str, int]
    segment_users: int
    reason: np.ndarray
    held: np.ndarray

    @property
    def in_segment(self) -> np.ndarray:
        """Per user of the table: inside the run's segment."""
        return self.reason != REASONS.index("outside_segment")


def plan_users(
    users: pd.DataFrame,
    *,
    subscribed: np.ndarray,
    segment: Segment,
    holdout_share: float,
    holdout_salt: str,
    n_buckets: int,
) -> UserPlan:
    """Decide who is computed tonight.

    Parameters
    ----------
    users : DataFrame
        The whole user table: ``user_id, group, region, push_opt_out``.
    subscribed : ndarray, bool (n_users, P)
        The personal channels each user may get tonight (see
        :func:`recsys.push.channels.subscriptions`; only the forced channel's
        column when a run forces one).
    segment : Segment
    holdout_share, holdout_salt : float, str
    n_buckets : int

    Returns
    -------
    UserPlan
    """
    in_segment = np.ones(len(users), dtype=bool)
    if segment.group is not None:
        in_segment &= (users[C.GROUP].astype(str) == segment.group).to_numpy()
    if segment.region is not None:
        in_segment &= (users[C.REGION].astype(str) == segment.region).to_numpy()
    opted_out = users[C.PUSH_OPT_OUT].fillna(False).to_numpy(dtype=bool)
    has_channel = np.asarray(subscribed, dtype=bool).any(axis=1)
    held = holdout_mask(users, share=holdout_share, salt=holdout_salt)

    # each skipped user counts once, under the first reason that applies
    skip_out = in_segment & opted_out
    skip_channel = in_segment & ~opted_out & ~has_channel
    skip_holdout = in_segment & ~opted_out & has_channel & held
    scope = np.flatnonzero(in_segment & ~opted_out & has_channel & ~held)
    # an Arrow-backed column stays one (no Python str per user): the ids hash from its buffers
    buckets = user_buckets(users[C.USER_ID].iloc[scope], n_buckets)
    # scope rises, so a stable sort by bucket is the (bucket, position) order; as int16 codes
    # NumPy's stable sort is a radix sort (a lexsort of 2.9M pairs took seconds)
    order = np.argsort(buckets.astype(np.int16) if n_buckets <= 2**15 else buckets, kind="stable")
    holdout_rows = users.loc[in_segment & held, [C.USER_ID, C.GROUP, C.REGION]].reset_index(drop=True)
    reason = np.full(len(users), REASONS.index("outside_segment"), dtype=np.int8)
    reason[skip_out] = REASONS.index(SKIP_OPTED_OUT)
    reason[skip_channel] = REASONS.index(SKIP_NO_CHANNEL)
    reason[skip_holdout] = REASONS.index(SKIP_HOLDOUT)
    reason[scope] = 0
    return UserPlan(
        scope=scope[order].astype(np.int64),
        buckets=buckets[order],
        holdout=holdout_rows.astype(str),
        skipped={
            SKIP_OPTED_OUT: int(skip_out.sum()),
            SKIP_NO_CHANNEL: int(skip_channel.sum()),
            SKIP_HOLDOUT: int(skip_holdout.sum()),
        },
        segment_users=int(in_segment.sum()),
        reason=reason,
        held=held,
    )


def usable_channels(subscribed: np.ndarray, channels: Sequence[str], forced: str | None) -> np.ndarray:
    """Narrow a subscription matrix to the forced channel's column (if any)."""
    if forced is None:
        return subscribed
    keep = np.array([c == forced for c in channels], dtype=bool)
    return subscribed & keep[None, :]


@dataclass(frozen=True)
class Chunk:
    """One unit of work: a range of history buckets and its users."""

    index: int
    bucket_lo: int
    bucket_hi: int
    #: row positions in the user table
    users: np.ndarray
    #: where the chunk starts in the plan's (bucket-sorted) scope
    offset: int = 0

    @property
    def buckets(self) -> range:
        """The history buckets this chunk owns."""
        return range(self.bucket_lo, self.bucket_hi)


def make_chunks(scope: np.ndarray, buckets: np.ndarray, n_buckets: int, chunk_size: int) -> list[Chunk]:
    """Cut the (bucket-sorted) scope into chunks of whole buckets.

    Consecutive buckets are merged until a chunk holds at least
    ``chunk_size`` users (the last chunk may hold fewer). A bucket bigger
    than ``chunk_size`` is a chunk of its own: raise ``history_buckets`` to
    get smaller chunks.

    Returns
    -------
    list of Chunk
        Covering buckets ``0 .. n_buckets - 1`` without gaps; empty chunks are dropped.
    """
    counts = np.bincount(buckets, minlength=n_buckets)
    starts = np.concatenate(([0], np.cumsum(counts)))
    chunks: list[Chunk] = []
    lo, filled = 0, 0
    for b in range(n_buckets):
        filled += int(counts[b])
        if filled >= chunk_size or b == n_buckets - 1:
            if filled:
                chunks.append(Chunk(len(chunks), lo, b + 1, scope[starts[lo] : starts[b + 1]], int(starts[lo])))
            lo, filled = b + 1, 0
    return chunks
