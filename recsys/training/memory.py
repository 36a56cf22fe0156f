"""What a training holds: pages of memory-mapped inputs handed back after their last reader.

A night's update starts from yesterday's bundle, loaded memory-mapped: its
per-user arrays (factors, engagement effects; ~1.2 GB at the city's 3.1M
users) are read once, to start today's fit, and never again. Pages of a
read-only file mapping that were read stay in the process's resident memory
(file-backed) for as long as the array is mapped -- the whole training, since
the previous model is kept -- and count in its peak. :func:`release_pages`
hands them back: the mapping stays valid, the data stays in the kernel's page
cache, and a later read of the array faults its pages in again from there.
"""

from __future__ import annotations

import mmap

import numpy as np


def release_pages(array: np.ndarray | None) -> bool:
    """Drop the resident pages of the read-only file mapping behind ``array`` (if it has one).

    Parameters
    ----------
    array : ndarray or None
        A memory-mapped array (``np.load(..., mmap_mode="r")``, a bundle's
        arrays) or a view of one; anything else is left alone.

    Returns
    -------
    bool
        True when pages were handed back (Linux, a read-only mapping); False
        otherwise (nothing to do, or the platform has no ``madvise``).
    """
    base = array
    # a view (np.asarray of a memmap, a slice) reaches its mapping through .base
    while isinstance(base, np.ndarray) and not isinstance(base, np.memmap):
        base = base.base
    if not isinstance(base, np.memmap):
        return False
    handle = getattr(base, "_mmap", None)
    # only a read-only mapping: dropping written pages of a writable private mapping would lose them
    if not isinstance(handle, mmap.mmap) or base.mode != "r" or not hasattr(mmap, "MADV_DONTNEED"):
        return False
    try:
        handle.madvise(mmap.MADV_DONTNEED)
    except (OSError, ValueError):
        return False  # a closed mapping, or a kernel that refuses: the pages simply stay
    return True
