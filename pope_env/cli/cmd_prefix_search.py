"""``pope-env prefix-search``: find i*, the shortest oracle prefix that lets the model succeed."""

from __future__ import annotations

import argparse

from pope_env.cli._sampling_args import add_batch_problems_argument, add_sampling_arguments, make_policy, make_sampling

NAME = "prefix-search"
HELP = "find i*(x) per problem and write a guidance file"
DESCRIPTION = """\
For each problem, find the shortest oracle-solution prefix from which the model solves the
guided problem at least once in k samples (else a seeded fallback segment), and write a guidance
file (JSONL). Resumable: re-running with the same --out and settings skips finished problems.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pope_env.prefix_search import STRATEGIES

    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="search every problem of this dataset")
    source.add_argument("--split", help="search the hard problems of this split file "
                                         "(from `pope-env hard-split`)")
    parser.add_argument("--out", required=True, help="guidance file to write or resume (JSONL)")
    parser.add_argument("--strategy", choices=sorted(STRATEGIES), default="linear",
                     help="default: linear, the paper's i* (the smallest i with a success in k "
                          "samples); the others can spend fewer rollouts but return a local minimum. "
                          + "; ".join(f"{s.name}: {s.description}" for s in STRATEGIES.values()))
    parser.add_argument("--skip-unusable", action="store_true",
                     help="skip problems that cannot be guided (no or one-step solutions) "
                          "instead of refusing the run")
    add_sampling_arguments(parser)
    add_batch_problems_argument(parser)


def run(args: argparse.Namespace) -> int:
    from pope_env.datasets import load_dataset
    from pope_env.errors import UnknownNameError
    from pope_env.hard_split import load_split
    from pope_env.prefix_search import run_prefix_search

    if args.split:
        split = load_split(args.split)
        dataset = split.header.dataset
        by_id = {p.id: p for p in load_dataset(dataset)}
        missing = [pid for pid in split.hard_ids if pid not in by_id]
        if missing:
            raise UnknownNameError(f"problem of dataset {dataset!r}", missing[0], tuple(by_id))
        problems = [by_id[pid] for pid in split.hard_ids][: args.limit]
    else:
        dataset = args.dataset
        problems = load_dataset(dataset, limit=args.limit)
    result = run_prefix_search(
        problems, make_policy(args), dataset=dataset, out=args.out, k=args.k,
        strategy=args.strategy, seed=args.seed, sampling=make_sampling(args),
        chunk_size=args.chunk_size, prompt_format=args.prompt_format,
        skip_unusable=args.skip_unusable, progress=not args.no_progress, batch_size=args.batch_problems,
    )
    records = list(result.records.values())
    found = [r for r in records if not r.fallback]
    rollouts = sum(r.rollouts for r in records)
    print(f"i* found for {len(found)} of {len(records)} problems ({len(records) - len(found)} "
          f"fallback segments); {rollouts} rollouts -> {args.out}")
    return 0
