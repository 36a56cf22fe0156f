"""A tiny city for the push tests: contract tables built here, trained once per session.

Not a test module: ``tests/test_push_*.py`` import it. 300 users over three
groups and three regions, 1-3 subscribed personal channels each (a few with
none or only a broadcast channel, a few opted out), 150 items of several
topics and formats (a few pending or retracted), and about 12 events a user.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.config import EngineConfig, config_from_dict

END = pd.Timestamp("2026-06-30T16:00:00Z")  # local midnight starting 2026-07-01 (Asia/Shanghai)
DAY = dt.date(2026, 7, 1)
GROUPS = ("farmer", "youth", "resident")
REGIONS = ("qinglong", "haigang", "changli")
TOPICS = ("modern_agriculture", "health_literacy", "astronomy_space", "ecology", "weather_climate", "robotics_youth")
FORMATS = ("article", "video", "short_video", "audio", "ebook")
PERSONAL = ("app_push", "wechat", "e_reader")

#: small and fast: tests train in a second or two
TRAIN_CONFIG = {
    "collaborative": {"factors": 8, "iterations": 3, "threads": 1},
    "content": {"svd_components": 8},
    "index": {"threads": 1},
    "push": {"chunk_size": 40, "history_buckets": 16, "workers": 1, "holdout_share": 0.05},
}


#: a small, fast training as a TOML file's text (the command-line tests' bundles)
SMALL_TOML = """\
[collaborative]
factors = 8
iterations = 3
threads = 1
[content]
svd_components = 8
[index]
threads = 1
recall_sample = 50
"""


#: the same small training as a TOML file's text, with the linear blend (the nights' tests)
SMALL_LINEAR = """
[collaborative]
factors = 8
iterations = 3
threads = 1
[content]
svd_components = 8
[index]
threads = 1
[ranking]
ranker = "linear"
"""


def engine_config() -> EngineConfig:
    """The small training configuration of the test city."""
    return config_from_dict(TRAIN_CONFIG)


def tables(n_users: int = 300, n_items: int = 150, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Raw contract tables (users, items, events) of the tiny city."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, len(GROUPS), n_users)
    channels = []
    for i in range(n_users):
        if i % 25 == 3:
            channels.append([])
        elif i % 25 == 4:
            channels.append(["tv"])
        else:
            n = rng.integers(1, 4)
            channels.append(sorted(rng.choice(PERSONAL, size=n, replace=False).tolist()))
    users = pd.DataFrame(
        {
            "user_id": [f"u{i:04d}" for i in range(n_users)],
            "group": np.array(GROUPS)[group],
            "region": np.array(REGIONS)[rng.integers(0, len(REGIONS), n_users)],
            "channels": channels,
            "push_opt_out": (np.arange(n_users) % 20) == 7,
        }
    )
    topic_of = rng.integers(0, len(TOPICS), n_items)
    second = rng.integers(0, len(TOPICS), n_items)
    status = np.where(
        np.arange(n_items) % 30 == 5, "retracted", np.where(np.arange(n_items) % 30 == 6, "pending", "approved")
    )
    items = pd.DataFrame(
        {
            "item_id": [f"i{j:04d}" for j in range(n_items)],
            "title": [f"{TOPICS[t]} 科普 第{j}期" for j, t in enumerate(topic_of)],
            "summary": [f"关于{TOPICS[t]}的知识 {j}" for j, t in enumerate(topic_of)],
            "topics": [
                [TOPICS[a]] if a == b or j % 3 else [TOPICS[a], TOPICS[b]]
                for j, (a, b) in enumerate(zip(topic_of, second))
            ],
            "format": np.array(FORMATS)[np.arange(n_items) % len(FORMATS)],
            "review_status": status,
            "published_at": END - pd.to_timedelta(rng.integers(1, 40 * 24, n_items), unit="h"),
        }
    )
    n_events = n_users * 12
    ev_user = rng.integers(0, n_users, n_events)
    # users lean to the topic of their group, so there is something to learn
    ev_item = np.where(
        rng.random(n_events) < 0.6,
        (
            group[ev_user] * 2
            + rng.integers(0, 2, n_events)
            + len(TOPICS) * rng.integers(0, n_items // len(TOPICS), n_events)
        )
        % n_items,
        rng.integers(0, n_items, n_events),
    )
    ev_channel = [(channels[u][rng.integers(0, len(channels[u]))] if channels[u] else "kiosk") for u in ev_user]
    events = pd.DataFrame(
        {
            "event_id": [f"e{n:06d}" for n in range(n_events)],
            "user_id": users["user_id"].to_numpy()[ev_user],
            "item_id": items["item_id"].to_numpy()[ev_item],
            "event_type": np.array(["impression", "click", "read", "like"])[rng.integers(0, 4, n_events)],
            "timestamp": END - pd.to_timedelta(rng.integers(60, 30 * 24 * 3600, n_events), unit="s"),
            "channel": ev_channel,
        }
    )
    return users, items, events


def trained_city(tmp_path_factory) -> Path:
    """Train the tiny city once per test session; return its folder.

    The folder holds ``models/`` (``models/latest`` is the bundle) and
    ``items.parquet`` (the clean catalogue it was trained on).
    """
    root = Path(tmp_path_factory.getbasetemp()) / "push_city"
    if not (root / "items.parquet").exists():
        from recsys.schema import validate_tables
        from recsys.taxonomy import load_taxonomy
        from recsys.training import train_model

        taxonomy = load_taxonomy()
        users, items, events = tables()
        clean = validate_tables(users, items, events, taxonomy=taxonomy, end=END)
        model = train_model(clean.users, clean.items, clean.events, config=engine_config(), taxonomy=taxonomy)
        model.save(root / "models", version="20260630T160000Z")
        clean.items.to_parquet(root / "items.parquet", index=False)
    return root
