"""``recsys profile USER_ID``: a user's top topics with their weights."""

from __future__ import annotations

import argparse

NAME = "profile"
HELP = "print a user's topic-interest profile from a model bundle"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user_id", help="the user's id")
    parser.add_argument("--model", default="models/latest", metavar="BUNDLE", help="model bundle (default: models/latest)")
    parser.add_argument("--top", type=int, default=8, metavar="N", help="how many topics to show (default: 8)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from recsys.exceptions import ConfigError
    from recsys.training.model import TrainedModel
    from recsys.training.profiles import top_topics

    if args.top <= 0:
        raise ConfigError(f"--top must be a positive integer, got {args.top}")
    model = TrainedModel.load(args.model)
    matches = np.flatnonzero(model.users["user_id"].to_numpy() == args.user_id)
    if len(matches) == 0:
        raise ConfigError(f"user {args.user_id!r} is not in the model bundle {model.path}")
    row = int(matches[0])
    user = model.users.iloc[row]
    tax = model.taxonomy
    top = top_topics(model.user_topics[row], list(tax.topics), args.top)
    sub = f" / {tax.zh('sub_group', user['sub_group'])}" if user["sub_group"] else ""
    print(f"user {args.user_id}: {tax.zh('group', user['group'])}{sub}, {tax.zh('region', user['region'])}")
    print(f"{'topic':<22} {'名称':<12} weight")
    for code, weight in top:
        bar = "#" * int(round(40 * weight / max(top[0][1], 1e-9)))
        print(f"{code:<22} {tax.zh('topic', code):<12} {weight:.3f} {bar}")
    return 0
