"""Vectorized categorical draws shared by the generator's parts."""

from __future__ import annotations

import numpy as np


def draw(probs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws (int64 indices) from one categorical distribution ``probs`` (K,)."""
    cum = np.cumsum(probs)
    return np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1], side="right"), len(probs) - 1)


def draw_rows(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row of ``probs`` (n, K): int64 indices (n,)."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(axis=1), probs.shape[1] - 1)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function."""
    return 1.0 / (1.0 + np.exp(-x))
