"""Column names of the data contract (shared/CONTRACT.md), defined once."""

from __future__ import annotations

# ---- users ----
USER_ID = "user_id"
GROUP = "group"
SUB_GROUP = "sub_group"
REGION = "region"
AGE_BAND = "age_band"
CHANNELS = "channels"
PUSH_OPT_OUT = "push_opt_out"
REGISTERED_AT = "registered_at"

# ---- items ----
ITEM_ID = "item_id"
TITLE = "title"
SUMMARY = "summary"
TAGS = "tags"
TOPICS = "topics"
FORMAT = "format"
TARGET_GROUPS = "target_groups"
TARGET_REGIONS = "target_regions"
REVIEW_STATUS = "review_status"
AUTHORITY = "authority"
SOURCE = "source"
PUBLISHED_AT = "published_at"
EXPIRES_AT = "expires_at"
DURATION_SECONDS = "duration_seconds"

# ---- places (optional; broadcast channels) ----
PLACE_ID = "place_id"
NAME = "name"
AUDIENCE = "audience"
SLOTS_PER_DAY = "slots_per_day"
SLOT_SECONDS = "slot_seconds"
ACTIVE_HOURS = "active_hours"

# ---- events ----
EVENT_ID = "event_id"
EVENT_TYPE = "event_type"
TIMESTAMP = "timestamp"
CHANNEL = "channel"
DWELL_SECONDS = "dwell_seconds"

# ---- derived / output ----
SCORE = "score"
RANK = "rank"
REASONS = "reasons"
WEIGHT = "weight"
URBAN = "urban"
# broadcast programmes
SLOT = "slot"
START_OFFSET_S = "start_offset_s"
EXPECTED_ENGAGEMENT = "expected_engagement"

# ---- quarantine ----
Q_TABLE = "table"
Q_ROW = "row"
Q_REASON = "reason"
Q_DETAIL = "detail"
Q_RECORD = "record"

# ---- codes fixed by the contract (not per city) ----
EVENT_TYPES_POSITIVE = ("click", "read", "complete", "like", "favorite", "share")
EVENT_TYPES_NEGATIVE = ("dismiss", "report")
EVENT_TYPES = ("impression",) + EVENT_TYPES_POSITIVE + EVENT_TYPES_NEGATIVE
DWELL_EVENT_TYPES = ("read", "complete")
#: type codes (each type's position in EVENT_TYPES: what training looks a log's types up as)
IMPRESSION_CODE = EVENT_TYPES.index("impression")
POSITIVE_CODES = tuple(EVENT_TYPES.index(t) for t in EVENT_TYPES_POSITIVE)
NEGATIVE_CODES = tuple(EVENT_TYPES.index(t) for t in EVENT_TYPES_NEGATIVE)
REVIEW_STATUSES = ("pending", "approved", "rejected", "retracted")
AUTHORITIES = ("national", "provincial", "municipal", "other")
AGE_BANDS = ("0-6", "7-12", "13-18", "19-24", "25-44", "45-59", "60+")

# ---- quarantine reasons: each rejected row gets exactly one, the first that applies,
# checked in this order (a generator that injects bad rows relies on it) ----
R_MISSING = "missing required field"
R_UNPARSABLE_TS = "unparsable timestamp"
R_NAIVE_TS = "naive timestamp"
R_IMPOSSIBLE_TS = "impossible timestamp"
R_UNKNOWN_CODE = "unknown code"
R_UNKNOWN_EVENT_TYPE = "unknown event type"
R_SUB_GROUP = "sub-group outside its group"
R_FUTURE_TS = "future timestamp"
R_NEGATIVE_DWELL = "negative dwell"
R_DWELL_TYPE = "dwell on a non-read event"
R_DUPLICATE_ID = "duplicate id"
R_DUPLICATE_EVENT = "duplicate event"
R_UNKNOWN_USER = "unknown user"
R_UNKNOWN_ITEM = "unknown item"
QUARANTINE_REASONS = (
    R_MISSING,
    R_UNPARSABLE_TS,
    R_NAIVE_TS,
    R_IMPOSSIBLE_TS,
    R_UNKNOWN_CODE,
    R_UNKNOWN_EVENT_TYPE,
    R_SUB_GROUP,
    R_FUTURE_TS,
    R_NEGATIVE_DWELL,
    R_DWELL_TYPE,
    R_DUPLICATE_ID,
    R_DUPLICATE_EVENT,
    R_UNKNOWN_USER,
    R_UNKNOWN_ITEM,
)

# ---- text limits: how much of each text field the content embedding reads ----
# jieba costs up to ~30 us per character (rare CJK characters; measured 0.3 s for 10k,
# 2.9 s for 100k on one core), so a 1M-character title stalls training for a minute or
# more; each field is cut to its limit before tokenising. The limits sit far above real
# texts (the sample's titles have 9-30 characters; WeChat caps titles at 64 and digests
# at 120) and bound one item to ~0.2 s at worst. The validator counts rows over a limit:
# they stay valid and are reported, never cut silently.
MAX_TITLE_CHARS = 1_000
MAX_SUMMARY_CHARS = 5_000
MAX_TAG_CHARS = 100
MAX_TAGS = 50
TEXT_LIMITS = {TITLE: MAX_TITLE_CHARS, SUMMARY: MAX_SUMMARY_CHARS}
