"""``recsys recommend``: print one user's list with scores and reasons."""

from __future__ import annotations

import argparse
import json
import sys

NAME = "recommend"
HELP = "print a user's recommendations (eligible, diverse, explained) from a model bundle"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``recsys recommend``."""
    parser.add_argument("user_id", help="the user's id (a new user needs --group and --region)")
    parser.add_argument(
        "--model", default="models/latest", metavar="BUNDLE", help="model bundle (default: models/latest)"
    )
    parser.add_argument("--k", type=int, default=10, metavar="N", help="list length (default: 10)")
    parser.add_argument("--channel", metavar="C", help="only formats this channel carries")
    parser.add_argument(
        "--topic", action="append", metavar="T", help="only items of this topic (repeat for several: any of them)"
    )
    parser.add_argument("--group", metavar="G", help="the user's group (overrides the stored one)")
    parser.add_argument("--sub-group", dest="sub_group", metavar="S", help="the user's sub-group")
    parser.add_argument("--region", metavar="R", help="the user's region (overrides the stored one)")
    parser.add_argument(
        "--now", metavar="ISO", help="eligibility time, ISO 8601 with an offset (default: the end of the model's data)"
    )
    parser.add_argument("--exclude", action="append", metavar="ITEM_ID", help="leave this item out (repeatable)")
    parser.add_argument("--catalog", metavar="PATH", help="current items table (default: the bundle's items)")
    parser.add_argument(
        "--holds", metavar="DIR", help="review-holds folder (recsys monitor's --state): held items are left out"
    )
    parser.add_argument(
        "--json", action="store_true",
        help="print JSON lines (one object per item) instead of a table; a short list's note goes to stderr",
    )


def _titles(recommender) -> dict[str, str]:  # noqa: ANN001 - Recommender, imported lazily
    from recsys import columns as C

    state = recommender.state
    items = state.catalog_items if state.catalog_items is not None else state.model.items
    return dict(zip(items[C.ITEM_ID].astype(str), items[C.TITLE].astype(str)))


def run(args: argparse.Namespace) -> int:
    """Load the bundle, rank, print; exit 0."""
    from recsys.timeutil import parse_option_time
    from recsys.exceptions import ConfigError
    from recsys.ranking import Recommender

    recommender = Recommender.load(args.model, catalog=args.catalog, holds=args.holds)
    model = recommender.state.model
    max_k = recommender.state.config.max_k
    if not 1 <= args.k <= max_k:
        raise ConfigError(f"--k {args.k} is out of range; valid: 1..{max_k} ([ranking] max_k)")
    now = parse_option_time(args.now, model.taxonomy, name="--now") if args.now else None
    if args.user_id not in recommender.state.user_pos and (args.group is None or args.region is None):
        raise ConfigError(
            f"unknown user {args.user_id!r}: not in the bundle {model.path} ({model.n_users:,} users); "
            f"a new user needs group and region: pass --group and --region (groups: {', '.join(model.taxonomy.groups)}; "
            f"regions: {', '.join(model.taxonomy.regions)})"
        )
    recs = recommender.recommend(
        args.user_id,
        k=args.k,
        group=args.group,
        sub_group=args.sub_group,
        region=args.region,
        topics=args.topic,
        channel=args.channel,
        now=now,
        exclude=args.exclude,
    )
    # a short list (none at all included) is an answer, not an error: both forms exit 0 and say so
    short = f"(only {len(recs)} eligible, distinct item(s) for this request)" if len(recs) < args.k else None
    if args.json:
        # JSON lines, one object per item: no items is no line; the note goes to stderr, off the data
        for rank, rec in enumerate(recs, start=1):
            row = {"rank": rank, "item_id": rec.item_id, "score": round(rec.score, 6), "reasons": rec.reasons}
            print(json.dumps(row, ensure_ascii=False))
        if short:
            print(short, file=sys.stderr)
        return 0
    titles = _titles(recommender)
    print(f"user {args.user_id} -- model {recommender.version}, {len(recs)} item(s)")
    for rank, rec in enumerate(recs, start=1):
        print(f"{rank:>3}. {rec.item_id}  {rec.score:7.4f}  {titles.get(rec.item_id, '')}")
        print(f"       {' | '.join(rec.reasons)}")
    if short:
        print(short)
    return 0
