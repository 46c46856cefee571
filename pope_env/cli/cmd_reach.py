"""``pope-env reach``: the S_good reach-set report from recorded rollouts."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = subparsers.add_parser(
        "reach",
        help="per-state success estimates, S_good and coverage from recorded rollouts",
        description="Read rollout records (or a guidance file) and print, per problem and roll-in "
                    "state, the success rate with a Wilson interval, whether the state is in "
                    "S_good, and the coverage. See pope_env.reach for the record format.",
    )
    sub.add_argument("--rollouts", required=True, help="JSONL of rollouts, counts or a guidance file")
    sub.add_argument("--threshold", type=float, default=0.0,
                     help="a state is in S_good iff its statistic exceeds this (default: 0)")
    sub.add_argument("--criterion", choices=("lower", "point"), default="lower",
                     help="compare the Wilson lower bound (default) or the point estimate")
    sub.add_argument("--confidence", type=float, default=0.95, help="interval level (default: 0.95)")
    sub.add_argument("--save", help="also write the aggregated reach set here (JSONL, atomic)")
    sub.add_argument("--transfer", action="store_true",
                     help="also print guided vs unguided success per problem over training steps")
    sub.add_argument("--bucket", type=int, default=1, help="training steps per transfer row")
    sub.add_argument("--max-rows", type=int, default=None, help="print at most N state rows")
    sub.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pope_env.reach import ReachSet, transfer_report, transfer_table
    from pope_env.io import read_jsonl

    reach = ReachSet.from_file(args.rollouts, confidence=args.confidence,
                               threshold=args.threshold, criterion=args.criterion)
    print(reach.table(max_rows=args.max_rows))
    if args.save:
        reach.save(args.save)
        print(f"saved -> {args.save}")
    if args.transfer:
        print()
        print(transfer_table(transfer_report(read_jsonl(args.rollouts), bucket=args.bucket)))
    return 0
