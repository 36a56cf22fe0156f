"""The near-duplicate graph of the training catalogue, computed once when the bundle is made.

Two catalogue items are near-duplicates when their content cosine is above a
threshold calibrated on the catalogue (``recsys.ranking.diversity``): the
ranking never puts two of them in one list. Finding the pairs is an exact
range search over every item's content vector -- about ten seconds at 50,000
items -- so it runs here, at ``recsys train`` time, and the bundle keeps the
result as CSR arrays (``indptr``, ``indices``) that every serving process
memory-maps instead of searching again. A serving catalogue that holds items
the bundle never saw searches only those new rows at load
(:func:`recsys.ranking.catalog.build_catalog`).

The graph is valid for the base threshold it was calibrated from
(``[ranking] near_duplicate_threshold`` at training time); a serving
configuration with another threshold computes its own at load, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from recsys.config import is_number
from recsys.ranking.diversity import Neighbours, calibrated_threshold, neighbour_graph, neighbours_from_graph

if TYPE_CHECKING:
    from recsys.bundle import BundleReader, BundleWriter

#: the component's JSON file (thresholds and sizes)
META = "near_duplicates"


@dataclass(frozen=True)
class NearDuplicates:
    """Near-duplicate pairs among a bundle's items, as a symmetric CSR graph.

    Attributes
    ----------
    indptr : ndarray of int64, shape (n_items + 1,)
    indices : ndarray of int32, shape (n_pairs * 2,)
        Row ``j``'s near-duplicates are ``indices[indptr[j]:indptr[j + 1]]``,
        ascending, never ``j`` itself.
    threshold : float
        The calibrated content cosine above which two items are near-duplicates.
    base : float
        The ``[ranking] near_duplicate_threshold`` it was calibrated from.
    """

    indptr: np.ndarray
    indices: np.ndarray
    threshold: float
    base: float

    @classmethod
    def build(cls, content: np.ndarray, base: float) -> "NearDuplicates":
        """Search every pair of ``content`` rows (an exact range search).

        Parameters
        ----------
        content : ndarray of float32, shape (n_items, d)
            The bundle's L2-normalised content vectors.
        base : float
            ``[ranking] near_duplicate_threshold``, in (0, 1].

        Returns
        -------
        NearDuplicates
        """
        content = np.asarray(content, dtype=np.float32)
        threshold = calibrated_threshold(content, base)
        indptr, indices = neighbour_graph(content, threshold)
        return cls(indptr=indptr, indices=indices, threshold=float(threshold), base=float(base))

    @property
    def n_items(self) -> int:
        """Items (rows) of the graph."""
        return int(len(self.indptr)) - 1

    def fits(self, n_items: int, base: float) -> bool:
        """Whether this graph serves a catalogue of ``n_items`` bundle items at base threshold ``base``."""
        return self.n_items == n_items and self.base == float(base)

    def neighbours(self) -> Neighbours:
        """Row -> its near-duplicates, the lookup the diversity rule reads (rows without any are absent)."""
        return neighbours_from_graph(self.indptr, self.indices)

    # ---- the bundle component protocol (recsys.bundle) ---------------------------
    def save(self, writer: "BundleWriter") -> None:
        """Write the CSR arrays and the thresholds."""
        writer.array("indptr", np.asarray(self.indptr, dtype=np.int64))
        writer.array("indices", np.asarray(self.indices, dtype=np.int32))
        writer.json(
            META,
            {"threshold": self.threshold, "base": self.base, "items": self.n_items, "pairs": int(len(self.indices)) // 2},
        )

    @classmethod
    def load(cls, reader: "BundleReader") -> "NearDuplicates":
        """Read what :meth:`save` wrote (arrays memory-mapped when the reader is).

        Raises
        ------
        ArtifactError
            If the arrays do not form a graph of the recorded size.
        """
        meta = reader.json(META)
        indptr, indices = reader.array("indptr"), reader.array("indices")
        if not isinstance(meta, dict) or not all(is_number(meta.get(k)) for k in ("threshold", "base", "items")):
            raise reader.error(f"{META}.json", "not a near-duplicate graph description (threshold, base, items)")
        n = int(meta["items"])
        fits = indptr.ndim == 1 and len(indptr) == n + 1 and int(indptr[-1]) == len(indices)
        if fits and len(indices) and not 0 <= int(indices.min()) <= int(indices.max()) < n:
            raise reader.error("indices.npy", f"holds items outside 0..{n - 1}: the file was replaced or comes from another bundle")
        if not fits:
            raise reader.error(
                "indptr.npy", f"{len(indptr)} entries ending at {int(indptr[-1]) if len(indptr) else None} for "
                f"{meta['items']} items and {len(indices)} indices: the file was replaced or comes from another bundle"
            )
        return cls(indptr=indptr, indices=indices, threshold=float(meta["threshold"]), base=float(meta["base"]))
