"""A tiny world with only the contract's required columns and its own taxonomy (evaluation tests).

Not a test module: ``tests/test_evaluation_*.py`` import it. Users prefer some
topics and items differ in quality, so collaborative, popularity and content
signals all carry something; a known ``truth`` gives each (user, item) an
engagement probability, like the synthetic city's ground truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TAXONOMY_TOML = """
name = "tinytown"
timezone = "Asia/Shanghai"

[groups.pupil]
zh = "学生"
en = "Pupils"

[groups.elder]
zh = "老人"
en = "Elders"

[regions.town]
zh = "城区"
en = "Town"
urban = true

[regions.farm]
zh = "农村"
en = "Farmland"
urban = false

[regions.hill]
zh = "山区"
en = "Hills"
urban = false

[topics.space]
zh = "天文"
en = "Space"

[topics.health]
zh = "健康"
en = "Health"

[topics.farming]
zh = "农业"
en = "Farming"

[topics.safety]
zh = "安全"
en = "Safety"

[formats.article]
zh = "图文"
en = "Article"

[channels.app]
zh = "手机"
en = "App"
formats = ["article"]
"""

TOPICS = ("space", "health", "farming", "safety")
WORDS = {
    "space": "星空 火箭 卫星 月球 火星 彗星 望远镜 银河 日食 空间站 宇航员 黑洞",
    "health": "饮食 运动 睡眠 血压 疫苗 营养 体检 口腔 视力 心理 慢病 中医",
    "farming": "种植 农机 灌溉 果树 化肥 大棚 育种 病虫害 土壤 养殖 电商 粮食",
    "safety": "防火 地震 急救 交通 溺水 燃气 用电 台风 洪水 逃生 消防 防骗",
}
END = pd.Timestamp("2026-06-30T16:00:00Z")


class Truth:
    """Known engagement probabilities (the world's ground truth)."""

    def __init__(self, users: pd.DataFrame, items: pd.DataFrame, prob: np.ndarray) -> None:
        self.users = pd.Index(users["user_id"])
        self.items = pd.Index(items["item_id"])
        self.prob = prob

    def engagement_prob(self, user_ids, item_ids, channel=None, *, at=None) -> np.ndarray:
        return self.prob[np.ix_(self.users.get_indexer(user_ids), self.items.get_indexer(item_ids))]

    def engagement_prob_pairs(self, user_ids, item_ids, channel=None, *, at=None) -> np.ndarray:
        return self.prob[self.users.get_indexer(user_ids), self.items.get_indexer(item_ids)]


def make_world(n_users: int = 160, n_items: int = 50, days: int = 30, seed: int = 0):
    """Return ``(users, items, events, truth)`` with only the required columns."""
    rng = np.random.default_rng(seed)
    groups = rng.choice(["pupil", "elder"], n_users)
    regions = rng.choice(["town", "farm", "hill"], n_users, p=[0.5, 0.3, 0.2])
    users = pd.DataFrame({"user_id": [f"u{i:03d}" for i in range(n_users)], "group": groups, "region": regions})
    item_topic = rng.integers(0, len(TOPICS), n_items)
    items = pd.DataFrame(
        {
            "item_id": [f"i{j:03d}" for j in range(n_items)],
            "title": [" ".join(rng.choice(WORDS[TOPICS[t]].split(), 3, replace=False)) for t in item_topic],
            "topics": [TOPICS[t] for t in item_topic],  # CSV-style: one code per item
        }
    )
    # taste: group prior on topics + individual taste; quality per item
    group_pref = {"pupil": np.array([1.5, 0.0, -1.0, 0.5]), "elder": np.array([-1.0, 1.5, 0.5, 0.5])}
    region_pref = {"town": np.zeros(4), "farm": np.array([0, 0, 1.5, 0]), "hill": np.array([0, 0, 1.0, 0.5])}
    taste = np.stack([group_pref[g] + region_pref[r] for g, r in zip(groups, regions)])
    taste += rng.normal(0, 1.0, taste.shape)
    quality = rng.normal(0, 0.7, n_items)
    logits = taste[:, item_topic] + quality[None, :] - 2.5
    prob = 1.0 / (1.0 + np.exp(-logits))
    truth = Truth(users, items, prob)

    rows = []
    span = pd.Timedelta(days=days).total_seconds()
    for u in range(n_users):
        shown = rng.choice(n_items, size=rng.integers(6, 18), replace=False, p=_softmax(0.5 * logits[u]))
        times = np.sort(rng.uniform(0, span, len(shown)))
        for j, t in zip(shown, times):
            rows.append((users.user_id[u], items.item_id[j], "impression", t))
            if rng.random() < prob[u, j] * 2.0:
                rows.append((users.user_id[u], items.item_id[j], rng.choice(["click", "read", "like"]), t + 30))
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "s"])
    events["timestamp"] = (END - pd.Timedelta(days=days) + pd.to_timedelta(events.pop("s"), unit="s")).dt.floor("s")
    events = events.sort_values("timestamp", kind="stable").reset_index(drop=True)
    return users, items, events, truth


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def write_world(folder: Path, **kwargs) -> tuple[Path, Path, Truth]:
    """Write the world as CSV with required columns only, plus its taxonomy file."""
    users, items, events, truth = make_world(**kwargs)
    folder.mkdir(parents=True, exist_ok=True)
    users.to_csv(folder / "users.csv", index=False)
    items.to_csv(folder / "items.csv", index=False)
    events.assign(timestamp=events["timestamp"].map(lambda t: t.isoformat())).to_csv(folder / "events.csv", index=False)
    tax = folder / "taxonomy.toml"
    tax.write_text(TAXONOMY_TOML, encoding="utf-8")
    return folder, tax, truth
