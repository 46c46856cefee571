"""CHAMP (``champ-dataset==1.0.0``): 270 competition problems with native solution steps.

Read from ``champ_dataset/dataset_files/v0.json`` (never by importing ``champ_dataset``).
Each problem keeps CHAMP's own steps (the ``_text`` of each solution step, ``@@`` math
markers removed by CHAMP); a space is attached to every step but the last, and
``solution = "".join(steps)``, so the join invariant of :class:`~pope_env.problem.Problem`
holds. Answers are CHAMP's free-text ``_answer``; ``subject`` is its category. Ids are
``champ/<identifier>`` (e.g. ``champ/P_Combinatorics_1``).
"""

from __future__ import annotations

import json
from functools import lru_cache

from pope_env.datasets.packaged import packaged_file
from pope_env.errors import DataFormatError
from pope_env.problem import Problem

__all__ = ["load_champ"]

CHAMP = ("champ-dataset", "1.0.0")


@lru_cache(maxsize=None)
def load_champ() -> tuple[Problem, ...]:
    """All 270 CHAMP problems, in the file's order."""
    path = packaged_file(*CHAMP, "champ_dataset/dataset_files/v0.json")
    with path.open(encoding="utf-8") as f:
        data = json.load(f)
    problems = []
    for identifier, row in data["problems"].items():
        texts = [step["_text"].strip() for step in row["solution"]["steps"]]
        texts = [t for t in texts if t]
        if not texts:
            raise DataFormatError(f"{path}: CHAMP problem {identifier} has no solution steps")
        steps = tuple(t + " " for t in texts[:-1]) + (texts[-1],)
        problems.append(
            Problem(
                id=f"champ/{identifier}",
                question=row["_text"],
                solution="".join(steps),
                steps=steps,
                answer=row["_answer"],
                source="champ",
                subject=row.get("category"),
                meta={"identifier": identifier},
            )
        )
    return tuple(problems)
