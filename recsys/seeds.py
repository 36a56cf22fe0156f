"""The one seed helper: every random thing in the engine goes through it."""

from __future__ import annotations

import numpy as np

from recsys.config import is_int
from recsys.exceptions import ConfigError


def check_seed_option(seed: int, option: str = "--seed") -> int:
    """A command's seed option as given, or a one-line error naming the option.

    Raises
    ------
    ConfigError
        If ``seed`` is negative (what :func:`check_random_state` refuses).
    """
    if seed < 0:
        raise ConfigError(f"{option} {seed}: must be a non-negative integer (e.g. 0)")
    return seed


def check_random_state(seed: int | np.random.Generator | None) -> np.random.Generator:
    """Return a ``numpy.random.Generator`` for ``seed``.

    Parameters
    ----------
    seed : int, numpy.random.Generator or None
        An int seeds a new PCG64 generator; a Generator is returned as is;
        ``None`` means seed 0, so that nothing in the engine is random by
        accident.

    Raises
    ------
    ConfigError
        If ``seed`` is of another type or a negative int.
    """
    if seed is None:
        return np.random.default_rng(0)
    if isinstance(seed, np.random.Generator):
        return seed
    if is_int(seed) and seed >= 0:
        return np.random.default_rng(int(seed))
    raise ConfigError(f"seed must be a non-negative int or a numpy Generator, got {seed!r}")
