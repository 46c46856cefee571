"""``pope-env hard-split``: keep the problems a model never solves in k samples (pass@k = 0)."""

from __future__ import annotations

import argparse

from pope_env.cli._sampling_args import add_batch_problems_argument, add_sampling_arguments, make_policy, make_sampling

NAME = "hard-split"
HELP = "measure unguided pass@k and write the hard split (pass@k = 0)"
DESCRIPTION = """\
Sample every problem of a dataset k times, unguided, and write a split file marking the problems
with zero successes as hard. Resumable: re-running with the same --out skips finished problems.
POPE-Math-Hard-v0 accepts the file as split_file=.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="dataset name, e.g. math-train-l5")
    parser.add_argument("--out", required=True, help="split file to write or resume (JSONL)")
    add_sampling_arguments(parser)
    add_batch_problems_argument(parser)


def run(args: argparse.Namespace) -> int:
    from pope_env.datasets import load_dataset
    from pope_env.hard_split import run_hard_split

    problems = load_dataset(args.dataset, limit=args.limit)
    split = run_hard_split(
        problems, make_policy(args), dataset=args.dataset, out=args.out, k=args.k, seed=args.seed,
        sampling=make_sampling(args), chunk_size=args.chunk_size,
        prompt_format=args.prompt_format, progress=not args.no_progress, batch_size=args.batch_problems,
    )
    n = len(split.records)
    print(f"{len(split.hard_ids)} of {n} problems are hard (pass@{args.k} = 0) -> {args.out}")
    return 0
