"""Population labels of evaluated users: warm/cold, group, region, urban/rural.

Populations reported for every policy: ``all``; ``warm`` users (a positive
engagement before the split time ``T``) and ``cold`` users (none before ``T``);
``by_group`` (audience group); ``by_region``; ``by_urban_rural`` (the taxonomy's
``urban`` flag of the user's region).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.evaluation.split import positive_pairs
from recsys.exceptions import SchemaError
from recsys.taxonomy import Taxonomy

WARM = "warm"
URBAN_RURAL = "urban_rural"
N_RELEVANT = "n_relevant"
URBAN_LABEL, RURAL_LABEL = "urban", "rural"

#: population families in metrics.json, in report order
FAMILIES = ("by_group", "by_region", "by_urban_rural")
_FAMILY_COLUMN = {"by_group": C.GROUP, "by_region": C.REGION, "by_urban_rural": URBAN_RURAL}


def population_labels(
    users: pd.DataFrame, train_events: pd.DataFrame, taxonomy: Taxonomy, relevant: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Label every user with the populations they belong to.

    Parameters
    ----------
    users : DataFrame
        Clean users table (``user_id, group, region`` at least).
    train_events : DataFrame
        The training side of the split; a user is warm with a positive
        engagement there.
    taxonomy : Taxonomy
        Gives the urban/rural flag of each region.
    relevant : DataFrame, optional
        ``user_id, item_id`` relevant pairs; counted into ``n_relevant``.

    Returns
    -------
    DataFrame
        ``user_id, group, region, urban_rural ("urban"/"rural"), warm (bool),
        n_relevant (int64)``, one row per user, sorted by ``user_id``.

    Raises
    ------
    SchemaError
        If the users table lacks ``user_id``, ``group`` or ``region``.
    """
    need = (C.USER_ID, C.GROUP, C.REGION)
    missing = [c for c in need if c not in users.columns]
    if missing:
        raise SchemaError(f"users table lacks column(s) {', '.join(missing)}; required: {', '.join(need)}")
    out = users[list(need)].astype({c: "str" for c in need}).copy()
    urban = out[C.REGION].map(taxonomy.urban)
    # a region missing from the taxonomy was quarantined upstream; call it rural rather than crash
    out[URBAN_RURAL] = np.where(urban.fillna(False).to_numpy(dtype=bool), URBAN_LABEL, RURAL_LABEL)
    warm_users = set(positive_pairs(train_events)[C.USER_ID])
    out[WARM] = out[C.USER_ID].isin(warm_users).to_numpy(dtype=bool)
    counts = relevant[C.USER_ID].astype("str").value_counts() if relevant is not None else pd.Series(dtype="int64")
    out[N_RELEVANT] = out[C.USER_ID].map(counts).fillna(0).astype("int64")
    return out.sort_values(C.USER_ID, kind="stable").reset_index(drop=True)


def iter_populations(labels: pd.DataFrame) -> Iterator[tuple[tuple[str, ...], np.ndarray]]:
    """Yield ``(path, mask)`` for every population of ``labels``.

    ``path`` is where the block goes in metrics.json: ``("all",)``,
    ``("warm",)``, ``("cold",)``, ``("by_group", CODE)``, ``("by_region", CODE)``,
    ``("by_urban_rural", "urban"|"rural")``; ``mask`` is a boolean array over the
    rows of ``labels``. Codes come in sorted order; only codes present appear.
    """
    n = len(labels)
    warm = labels[WARM].to_numpy(dtype=bool)
    yield ("all",), np.ones(n, dtype=bool)
    yield ("warm",), warm
    yield ("cold",), ~warm
    for family in FAMILIES:
        values = labels[_FAMILY_COLUMN[family]].astype("str").to_numpy()
        for code in sorted(set(values)):
            yield (family, code), values == code
