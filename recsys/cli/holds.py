"""``recsys holds``: the review loop -- list, add and release holds (every change audited)."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "holds"
HELP = "list, add or release review holds (held items are left out of every list and push); changes are audited"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the actions of ``recsys holds``."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    listing = actions.add_parser(
        "list", help="print the items on hold (and, with --log, every change)"
    )
    listing.add_argument(
        "--log", action="store_true", help="print the audit log instead"
    )
    add = actions.add_parser("add", help="put an item on hold")
    add.add_argument("item_id", metavar="ITEM")
    add.add_argument("--reason", required=True, help="why (shown to reviewers)")
    add.add_argument("--by", required=True, metavar="NAME", help="who places the hold")
    add.add_argument(
        "--data",
        metavar="DIR",
        help="check that ITEM is in DIR's items table first (a mistyped id would hold nothing)",
    )
    release = actions.add_parser("release", help="release an item's hold")
    release.add_argument("item_id", metavar="ITEM")
    release.add_argument("--by", required=True, metavar="NAME", help="the reviewer")
    release.add_argument(
        "--note", required=True, metavar="TEXT", help="the review's conclusion"
    )
    for sub in (listing, add, release):
        sub.add_argument(
            "--state",
            metavar="DIR",
            required=True,
            help="the holds folder (recsys monitor's --state)",
        )


def run(args: argparse.Namespace) -> int:
    """Carry out the action; exit 0 (2 on a bad item or folder)."""
    from recsys import holds as H

    if args.action == "list":
        if args.log:
            for e in H.read_log(args.state):
                what = e.get("reason") or e.get("note") or ""
                print(
                    f"{e['time']}  {e['action']:<7}  {e['item_id']}  by {e.get('by', '')}: {what}"
                )
            return 0
        holds = H.load_holds(args.state)
        print(f"{len(holds)} item(s) on hold in {args.state}")
        for row in holds.itertuples(index=False):
            print(
                f"  {row.item_id}  since {row.since.isoformat()}  by {row.by}: {row.reason}"
            )
        return 0
    if args.action == "add":
        # a mistyped --state would hold the item where no push or recommender looks: say so
        new = not Path(args.state).exists()
        if args.data:
            H.check_item_known(args.data, args.item_id)
        if H.add_hold(args.state, args.item_id, reason=args.reason, by=args.by):
            print(f"{args.item_id} is on hold (by {args.by}): {args.reason}")
            if new:
                print(
                    f"note: {args.state} did not exist and was created as a new holds folder; "
                    "pushes and recommenders honour it only when given it (--holds)"
                )
        else:
            print(f"{args.item_id} was already on hold; nothing changed")
        return 0
    ended = H.release_hold(args.state, args.item_id, by=args.by, note=args.note)
    print(
        f"{args.item_id} released by {args.by} (held since {ended['since']} by {ended['by']}): {args.note}"
    )
    return 0
