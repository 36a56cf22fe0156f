"""Item-to-item neighbours learned by regression (EASE), an alternative to co-engagement cosines.

A cosine between two items' user sets says how often they are engaged with
together, but it counts the same evidence many times over: a user's list is
scored by summing the cosines of every item they engaged with, and items that
co-occur with *each other* (a franchise, a genre's classics) add up to more
than they tell. The standard remedy is to *learn* the item-to-item weights:
predict each item's column of the (users x items) engagement matrix from the
other items' columns by ridge regression, with no item allowed to predict
itself (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", 2019).
The closed form needs one inverse of the regularised item Gram matrix::

    P = (X'X + l2 I)^-1,     B[i, j] = -P[i, j] / P[j, j]  (i != j),  B[j, j] = 0

so a user's score for item ``j`` is ``sum_i x[u, i] B[i, j]``: the same shape
as the co-engagement sum, read through the same sparse matrix (seed item ->
neighbours) by the candidate source and the ``coengagement`` feature.

Two limits keep it a bounded training step:

- the regression covers the ``max_items`` items most users engaged with (the
  inverse is cubic in them and holds two dense float64 copies: 268 MB at
  4,096 items, 1.07 GB at 8,192, the most allowed, and ``numpy.linalg.inv``
  works on copies of its own: about twice that at its peak); every other item keeps no
  neighbours (it seeds nothing and is reached only through the other
  candidate sources);
- each seed keeps its ``neighbours`` largest *positive* weights, so the stored
  matrix has the size and meaning of the cosine one (negative weights, what a
  seed argues *against*, are dropped: a sum of the kept ones ranks a user's
  candidates, it does not reconstruct the regression's scores).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def regression_neighbours(positives: sp.csr_matrix, neighbours: int, l2: float, max_items: int) -> sp.csr_matrix:
    """Each item's ``neighbours`` largest positive regression weights (module docstring).

    Parameters
    ----------
    positives : csr_matrix, shape (n_users, n_items)
        Binary: the user engaged positively with the item.
    neighbours : int
        Weights kept per seed item.
    l2 : float
        Ridge penalty added to the Gram matrix's diagonal (in users: an item
        engaged with by far fewer than ``l2`` users predicts little).
    max_items : int
        The regression covers at most this many items, the most engaged with.

    Returns
    -------
    csr_matrix of float32, shape (n_items, n_items)
        Row = seed item, columns = its neighbours (sorted), no self pairs;
        rows of items outside the regression are empty.
    """
    p = positives.tocsr()
    n_items = p.shape[1]
    # users per item from the stored entries, without a float copy of the whole log
    counts = np.bincount(p.indices, minlength=n_items)
    engaged = np.flatnonzero(counts > 0)
    # the most engaged items, ties by index (deterministic); kept in ascending item order
    order = engaged[np.lexsort((engaged, -counts[engaged]))]
    head = np.sort(order[:max_items])
    empty = sp.csr_matrix((n_items, n_items), dtype=np.float32)
    if head.size < 2 or neighbours <= 0:
        return empty
    x = p[:, head].astype(np.float64)
    x.data[:] = 1.0
    gram = (x.T @ x).toarray()
    gram[np.diag_indices_from(gram)] += float(l2)
    weights = np.linalg.inv(gram)
    del gram  # peak during inv: ~4 (items x items) float64 arrays, ~0.5 GB at 4,096 items
    weights /= -np.diag(weights).copy()[None, :]
    np.fill_diagonal(weights, 0.0)
    keep = min(neighbours, head.size - 1)
    # per seed row: the `keep` largest weights, then only the positive ones among them
    top = np.argpartition(-weights, keep - 1, axis=1)[:, :keep]
    vals = np.take_along_axis(weights, top, axis=1)
    rows = np.repeat(np.arange(head.size), keep)
    cols, vals = top.ravel(), vals.ravel()
    positive = vals > 0
    out = sp.csr_matrix(
        (vals[positive].astype(np.float32), (head[rows[positive]], head[cols[positive]])),
        shape=(n_items, n_items),
    )
    out.sort_indices()
    return out
