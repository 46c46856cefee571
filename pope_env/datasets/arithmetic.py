"""Synthetic multi-step arithmetic: a real, verifiable dataset for CPU-sized experiments.

A problem is a chain of operations evaluated strictly left to right, e.g. ``7*3+7-8``.
Its oracle solution rewrites the *whole remaining expression* after each operation, one
line per step, and boxes the final value::

    question: "Compute left to right: 7*3+7-8"
    steps:    ("21+7-8\\n", "28-8\\n", "\\\\boxed{20}")

Why this format (docs/demo.md): a mid-solution state then looks exactly like a
shorter problem, so a model that solves short chains can continue from an oracle prefix
of a long chain -- the property POPE's guided roll-in needs. Answers are integers and
verify through the same math reward as MATH (last ``\\boxed{}``).

Difficulty is the number of operations (``level``). Operands are 1..9; operations are
``+ - *``; every intermediate value stays in ``[0, max_value]``. Train and test are
disjoint: a problem goes to ``test`` iff a hash of its expression falls in the test bucket,
so the split does not depend on the generation order.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

from pope_env.errors import ConfigError
from pope_env.problem import Problem

QUESTION_PREFIX = "Compute left to right: "
OPERATORS = ("+", "-", "*")


def apply(value: int, op: str, operand: int) -> int:
    """``value op operand`` for one of :data:`OPERATORS`."""
    if op == "+":
        return value + operand
    if op == "-":
        return value - operand
    if op == "*":
        return value * operand
    raise ConfigError(f"unknown operator {op!r}; use one of {OPERATORS}")


def render(first: int, ops: list[tuple[str, int]]) -> str:
    """The expression text, e.g. ``render(7, [("*", 3), ("+", 7)]) == "7*3+7"``."""
    return str(first) + "".join(f"{op}{x}" for op, x in ops)


def solution_steps(first: int, ops: list[tuple[str, int]]) -> tuple[str, ...]:
    """Oracle steps: after each operation, the remaining expression on its own line;
    the last step is ``\\boxed{value}``."""
    steps: list[str] = []
    value = first
    for k, (op, x) in enumerate(ops):
        value = apply(value, op, x)
        rest = ops[k + 1 :]
        steps.append(render(value, rest) + "\n" if rest else f"\\boxed{{{value}}}")
    return tuple(steps)


def _is_test(expression: str, test_fraction: float) -> bool:
    h = int.from_bytes(hashlib.sha256(expression.encode()).digest()[:8], "big")
    return (h / 2**64) < test_fraction


def _sample_chain(rng: random.Random, n_ops: int, max_value: int) -> tuple[int, list[tuple[str, int]]]:
    first = rng.randint(1, 9)
    value = first
    ops: list[tuple[str, int]] = []
    while len(ops) < n_ops:
        op, x = rng.choice(OPERATORS), rng.randint(1, 9)
        nxt = apply(value, op, x)
        if 0 <= nxt <= max_value:
            ops.append((op, x))
            value = nxt
    return first, ops


def make_problem(first: int, ops: list[tuple[str, int]], *, split: str = "train") -> Problem:
    """The :class:`Problem` for one chain."""
    expression = render(first, ops)
    steps = solution_steps(first, ops)
    answer = steps[-1][len("\\boxed{") : -1]
    return Problem(
        id=f"arith/{expression}",
        question=QUESTION_PREFIX + expression,
        solution="".join(steps),
        steps=steps,
        answer=answer,
        source="arithmetic",
        level=len(ops),
        subject="arithmetic",
        meta={"split": split, "expression": expression},
    )


def iter_problems(
    n_ops: int,
    *,
    split: str = "train",
    seed: int = 0,
    max_value: int = 99,
    test_fraction: float = 0.2,
) -> Iterator[Problem]:
    """Yield distinct problems with ``n_ops`` operations from ``split`` forever (or until the
    space of distinct chains of that split is exhausted)."""
    if n_ops < 1:
        raise ConfigError(f"n_ops must be >= 1, got {n_ops}")
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    rng = random.Random(f"arith:{n_ops}:{split}:{seed}:{max_value}")
    seen: set[str] = set()
    misses = 0
    while misses < 10_000:
        first, ops = _sample_chain(rng, n_ops, max_value)
        expression = render(first, ops)
        if expression in seen or _is_test(expression, test_fraction) != (split == "test"):
            misses += 1
            continue
        misses = 0
        seen.add(expression)
        yield make_problem(first, ops, split=split)


def generate(
    n: int,
    n_ops: int | tuple[int, int],
    *,
    split: str = "train",
    seed: int = 0,
    max_value: int = 99,
) -> list[Problem]:
    """``n`` distinct problems; ``n_ops`` is an int or an inclusive range ``(lo, hi)`` cycled
    through evenly. Deterministic for ``(n, n_ops, split, seed, max_value)``."""
    if n < 0:
        raise ConfigError(f"n must be >= 0, got {n}")
    levels = list(range(n_ops[0], n_ops[1] + 1)) if isinstance(n_ops, tuple) else [n_ops]
    if not levels:
        raise ConfigError(f"empty n_ops range {n_ops}")
    streams = {k: iter_problems(k, split=split, seed=seed, max_value=max_value) for k in levels}
    out: list[Problem] = []
    exhausted: set[int] = set()
    i = 0
    while len(out) < n and len(exhausted) < len(levels):
        k = levels[i % len(levels)]
        i += 1
        if k in exhausted:
            continue
        p = next(streams[k], None)
        if p is None:
            exhausted.add(k)
        else:
            out.append(p)
    if len(out) < n:
        raise ConfigError(f"only {len(out)} distinct problems exist for n_ops={n_ops}, split={split}")
    return out
