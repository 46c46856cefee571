"""``pope-env reach``: the S_good reach-set report, from recorded rollouts, by Monte Carlo
from a list of states, or for the policy's own unguided states (``--own-states``)."""

from __future__ import annotations

import argparse

from pope_env.cli._sampling_args import add_sampling_arguments, make_policy, make_sampling
from pope_env.reach import DEFAULT_CONFIDENCE, DEFAULT_CRITERION, DEFAULT_THRESHOLD

NAME = "reach"
HELP = "per-state success estimates, S_good and coverage (from rollouts or by sampling)"
DESCRIPTION = """\
With --rollouts: read rollout records (or a guidance file) and print, per problem and roll-in
state, the success rate with a Wilson interval, whether the state is in S_good, and the
coverage. With --states: estimate the success probability of --model from each listed state by k
rollouts (cached). With --own-states: sample --model's own unguided solution of each problem of
--dataset (or of the --split file's hard problems), cut it into partial solutions and report how
many fall into S_good. See pope_env.reach and pope_env.own_states.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--rollouts", help="JSONL of rollouts, counts or a guidance file")
    source.add_argument("--states", help="JSONL of states to estimate by Monte Carlo "
                                         "(needs --dataset)")
    source.add_argument("--own-states", action="store_true",
                        help="estimate the policy's own unguided partial solutions (needs --dataset)")
    parser.add_argument("--dataset", help="dataset of the problems named in --states / asked by --own-states")
    parser.add_argument("--split", help="with --own-states: only the hard problems of this split file")
    parser.add_argument("--states-per-problem", type=int, default=2,
                     help="with --own-states: own partial solutions kept per problem (default: 2)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                     help="a state is in S_good iff its statistic exceeds this (default: "
                          f"{DEFAULT_THRESHOLD}: reward reliably attainable; 0: at least one success)")
    parser.add_argument("--criterion", choices=("lower", "point"), default=DEFAULT_CRITERION,
                     help="compare the Wilson lower bound (default) or the point estimate")
    parser.add_argument("--confidence", type=float, default=DEFAULT_CONFIDENCE,
                     help=f"interval level (default: {DEFAULT_CONFIDENCE})")
    parser.add_argument("--save", help="with --rollouts: also write the aggregated reach set here")
    parser.add_argument("--transfer", action="store_true",
                     help="with --rollouts: also print guided vs unguided success per problem "
                          "over training steps")
    parser.add_argument("--bucket", type=int, default=1, help="training steps per transfer row")
    parser.add_argument("--max-rows", type=int, default=None, help="print at most N state rows")
    parser.add_argument("--cache", default="default",
                     help="with --states: cache file of estimates (default: in the pope-env cache; "
                          "'none' disables it)")
    add_sampling_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from pope_env.errors import ConfigError

    if args.states or args.own_states:
        if not args.dataset:
            raise ConfigError("--states and --own-states need --dataset, the dataset of the problems")
        return _run_own_states(args) if args.own_states else _run_states(args)
    from pope_env.io import read_jsonl
    from pope_env.reach import ReachSet, transfer_report, transfer_table

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


def _run_states(args: argparse.Namespace) -> int:
    from pope_env.datasets import load_dataset
    from pope_env.reach import estimate_states, read_state_queries, states_table

    problems = {p.id: p for p in load_dataset(args.dataset)}
    queries = read_state_queries(args.states, problems)[: args.limit]
    estimates = estimate_states(
        queries, problems, make_policy(args), k=args.k, seed=args.seed,
        sampling=make_sampling(args), prompt_format=args.prompt_format,
        cache=None if args.cache == "none" else args.cache, progress=not args.no_progress,
    )
    print(states_table(estimates, confidence=args.confidence, threshold=args.threshold,
                       criterion=args.criterion))
    return 0


def _run_own_states(args: argparse.Namespace) -> int:
    from pope_env.datasets import load_dataset
    from pope_env.guidance import state_messages, state_text
    from pope_env.hard_split import load_split
    from pope_env.own_states import own_state_overlap

    problems = load_dataset(args.dataset)
    if args.split:
        hard = set(load_split(args.split, dataset=args.dataset).hard_ids)
        problems = [p for p in problems if p.id in hard]
    problems = problems[: args.limit]
    render = state_messages if args.prompt_format == "chat" else state_text
    report = own_state_overlap(
        problems, make_policy(args), k=args.k, states_per_problem=args.states_per_problem, seed=args.seed,
        sampling=make_sampling(args), render_state=lambda p, steps: render(p, list(steps)),
        threshold=args.threshold, confidence=args.confidence, criterion=args.criterion,
        progress=not args.no_progress,
    )
    print(report.table(max_rows=args.max_rows))
    return 0
