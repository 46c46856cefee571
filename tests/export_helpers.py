"""A real hard split + guidance file for the export tests, made by the arithmetic solver.

The solver (:mod:`arith_policy`) errs on 90% of its operations, so every 6-8 operation
chain of ``arith-hard`` is hard unguided, and its prefix search ends both ways: some
problems are solved from the cap (a verified i*), the others get the fallback segment.
"""

from __future__ import annotations

import logging
from pathlib import Path

from arith_policy import ArithmeticSolverPolicy, math_verify_scorer
from pope_env.datasets import load_dataset
from pope_env.hard_split import run_hard_split
from pope_env.prefix_search import run_prefix_search

DATASET = "arith-hard"


def make_pope_inputs(folder: Path, n: int = 16) -> tuple[Path, Path]:
    """Write ``split.jsonl`` and ``guidance.jsonl`` for the first ``n`` problems of arith-hard."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    problems = load_dataset(DATASET, limit=n)
    policy, scorer = ArithmeticSolverPolicy(0.9), math_verify_scorer()
    split = run_hard_split(problems, policy, dataset=DATASET, out=folder / "split.jsonl", k=8,
                           scorer=scorer, progress=False)
    hard = [p for p in problems if p.id in set(split.hard_ids)]
    run_prefix_search(hard, policy, dataset=DATASET, out=folder / "guidance.jsonl", k=8,
                      scorer=scorer, progress=False)
    return folder / "split.jsonl", folder / "guidance.jsonl"
