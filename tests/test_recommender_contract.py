"""The shared contract every recommender of the engine meets, on a tiny synthetic city.

``ENGINES`` maps a name to a factory ``(model, items, now, seed) -> lists``
where ``lists(user_ids, k)`` returns a DataFrame with at least ``user_id,
rank, item_id, score``. The engine's own Recommender is the first entry; the
evaluation issue adds its baselines. Every entry must give: the same lists
for the same seed; the same lists after save -> load (where it has a saved
form); the output schema; only eligible items (checked here against the
contract tables, independently of the engine's own masks).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import pytest

from recsys import Recommender
from recsys import columns as C
from recsys.config import config_from_dict
from recsys.schema import validate_tables
from recsys.synthetic.city import generate_city
from recsys.training import train_model

from ranking_world import is_eligible

K = 10
#: small and single-threaded so that two trainings give the same factors
CONFIG = {
    "collaborative": {"factors": 16, "iterations": 5, "threads": 1},
    "content": {"svd_components": 16},
    "index": {"threads": 1},
}

Lists = Callable[[list[str], int], pd.DataFrame]


def _engine(model, items: pd.DataFrame, now: pd.Timestamp, seed: int) -> Lists:
    rec = Recommender.from_model(model, catalog=items)
    return lambda user_ids, k: rec.recommend_many(user_ids, k=k, now=now)


ENGINES: dict[str, Callable[..., Lists]] = {"engine": _engine}


@pytest.fixture(scope="module")
def city():
    raw = generate_city(n_users=300, n_items=200, days=30, seed=1)
    clean = validate_tables(raw.users, raw.items, raw.events, end=raw.end)
    return clean.users, clean.items, clean.events


def _train(city, seed: int):
    users, items, events = city
    config = config_from_dict({**CONFIG, "collaborative": {**CONFIG["collaborative"], "seed": seed}})
    return train_model(users, items, events, config=config)


@pytest.fixture(scope="module")
def model(city):
    return _train(city, seed=3)


@pytest.fixture(scope="module")
def now(model):
    return pd.Timestamp(model.window["end"])


def _user_ids(city) -> list[str]:
    return city[0][C.USER_ID].astype(str).tolist()[::3]


@pytest.mark.parametrize("name", ENGINES)
def test_same_seed_gives_the_same_lists(name, city, model, now):
    again = _train(city, seed=3)
    ids = _user_ids(city)
    first = ENGINES[name](model, city[1], now, 3)(ids, K)
    second = ENGINES[name](again, city[1], now, 3)(ids, K)
    pd.testing.assert_frame_equal(first, second)


@pytest.mark.parametrize("name", ENGINES)
def test_save_then_load_gives_the_same_lists(name, city, model, now, tmp_path):
    if name != "engine":
        pytest.skip("only the engine has a saved form")
    ids = _user_ids(city)
    bundle = model.save(tmp_path / "models")
    loaded = Recommender.load(bundle, catalog=city[1]).recommend_many(ids, k=K, now=now)
    pd.testing.assert_frame_equal(loaded, ENGINES[name](model, city[1], now, 3)(ids, K))


@pytest.mark.parametrize("name", ENGINES)
def test_output_schema(name, city, model, now):
    ids = _user_ids(city)
    frame = ENGINES[name](model, city[1], now, 3)(ids, K)
    assert list(frame.columns[:4]) == [C.USER_ID, C.RANK, C.ITEM_ID, C.SCORE]
    assert pd.api.types.is_string_dtype(frame[C.USER_ID]) and pd.api.types.is_string_dtype(frame[C.ITEM_ID])
    assert frame[C.RANK].dtype == np.int64 and frame[C.SCORE].dtype == np.float64
    assert set(frame[C.USER_ID]) <= set(ids)
    for _, part in frame.groupby(C.USER_ID, sort=False):
        assert part[C.RANK].tolist() == list(range(1, len(part) + 1))
        assert part[C.ITEM_ID].is_unique
        assert len(part) == K  # the tiny city has plenty of eligible items for everyone
        assert (np.diff(part[C.SCORE].to_numpy()) <= 1e-6).all()
    if C.REASONS in frame.columns:
        assert all(isinstance(r, list) and r and all(isinstance(x, str) for x in r) for r in frame[C.REASONS])


@pytest.mark.parametrize("name", ENGINES)
def test_eligibility_is_honoured(name, city, model, now):
    users, items, events = city
    ids = users[C.USER_ID].astype(str).tolist()
    frame = ENGINES[name](model, items, now, 3)(ids, K)
    who = users.set_index(C.USER_ID)
    catalog = {row[C.ITEM_ID]: row for row in items.to_dict("records")}
    acted = events[events[C.EVENT_TYPE].isin(C.EVENT_TYPES_POSITIVE + C.EVENT_TYPES_NEGATIVE)]
    history = set(zip(acted[C.USER_ID], acted[C.ITEM_ID]))
    for user, item in zip(frame[C.USER_ID], frame[C.ITEM_ID]):
        assert (user, item) not in history, f"{user} already engaged with or rejected {item}"
        group, region = who.at[user, C.GROUP], who.at[user, C.REGION]
        assert is_eligible(catalog[item], group=group, region=region, now=now), f"{item} is not eligible for {user}"
