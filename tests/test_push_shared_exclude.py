"""One exclude list shared by many users: the push's lists hand it out once, the ranking converts it once.

``recsys.push.lists.exclusions`` gives every user without blocked pairs the
same list object (the items expiring tonight), and ``recommend_many``
converts each distinct object to item indices once; the lists must equal
those of per-user copies and of single ``recommend`` calls.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys import Recommender
from recsys.push.lists import exclusions

from ranking_world import cluster_vectors, hand_model, items_frame, users_frame

N_ITEMS = 12


def _recommender() -> Recommender:
    rng = np.random.default_rng(5)
    users = users_frame(["farmer", "youth", "resident", "resident"], ["qinglong", "haigang", "haigang", "lulong"])
    model = hand_model(
        users,
        items_frame(N_ITEMS),
        rng.normal(size=(4, 5)),
        rng.normal(size=(N_ITEMS, 5)),
        seen={(0, 3): 1},
        popularity_recent=np.arange(N_ITEMS, dtype=np.float32),
        content_vectors=cluster_vectors(range(N_ITEMS)),
    )
    return Recommender.from_model(model)


def test_exclusions_share_the_common_list_and_keep_blocked_items_first() -> None:
    blocked = pd.DataFrame({"user_id": ["u1", "u1", "zz"], "item_id": ["i05", "i06", "i07"]})
    out = exclusions(["u0", "u1", "u2"], blocked, ["i01", "i02"])
    assert out["u0"] is out["u2"] and out["u0"] == ["i01", "i02"]
    assert out["u1"] == ["i05", "i06", "i01", "i02"] and out["u1"] is not out["u0"]
    assert "zz" not in out
    assert out["u0"] == ["i01", "i02"]  # building u1's list left the shared one as it was


def test_a_shared_exclude_object_gives_the_lists_of_separate_copies() -> None:
    rec = _recommender()
    shared = ["i00", "i11", "not-an-item"]
    users = ["u0", "u1", "u2", "u3"]
    own = {"u1": ["i04", *shared]}
    together = rec.recommend_many(users, k=4, exclude={u: own.get(u, shared) for u in users})
    copies = rec.recommend_many(users, k=4, exclude={u: list(own.get(u, shared)) for u in users})
    pd.testing.assert_frame_equal(together, copies)
    for user in users:
        single = rec.recommend(user, k=4, exclude=own.get(user, shared))
        got = together[together["user_id"] == user]
        assert got["item_id"].tolist() == [r.item_id for r in single]
        assert not set(got["item_id"]) & set(own.get(user, shared))
    assert len(together) == 4 * len(users)
