"""The synthetic city: a world with ground truth, for tests, benchmarks and the demo.

``generate_city`` draws users (by region population and group mix), items (in
stories, with Chinese text from topic vocabularies), and an engagement log
from a logging policy of the generator's own and a stated probability model
whose hidden parameters (individual interest and taste, item quality) the
engine must learn. ``write_city`` writes the contract's tables, the truth and
a manifest. The spec lives in ``recsys/data/synthetic/`` (see
data/synthetic/README.md).

Example
-------
>>> from recsys.synthetic import generate_city
>>> city = generate_city(200, 100, days=14, seed=1)
>>> p = city.truth.engagement_prob(city.users.user_id[:5], city.items.item_id[:3])
>>> p.shape
(5, 3)
"""

from recsys.synthetic.city import (
    DEFAULT_END,
    SAMPLE,
    City,
    generate_city,
    read_manifest,
    write_city,
)
from recsys.synthetic.truth import GroundTruth

__all__ = ["DEFAULT_END", "SAMPLE", "City", "GroundTruth", "generate_city", "read_manifest", "write_city"]
