"""Guided roll-in prompts: ``concat(x, z[:i], I)`` as chat messages and as plain text.

POPE (Qu et al. 2026) puts the policy into a privileged state on a hard problem ``x`` by
showing it the first ``i`` steps of an oracle solution ``z`` together with an instruction
``I`` to build on them. Every env (single-turn, step-level, token-level), the prefix search
and the hard-split tooling build their prompts here, so the roll-in state of a problem at
prefix length ``i`` is the same text everywhere.

Roll-in state ``i``:
    * ``i = 0`` is the unguided problem (:func:`unguided_messages`).
    * ``1 <= i <= prefix_cap(problem)`` shows ``z[:i]``: the problem, then the first ``i``
      solution steps under a "Partial solution" heading, with the instruction ``I``.
    * ``i > prefix_cap(problem)`` is refused: the cap excludes the step that holds the final
      ``\\boxed{}`` answer, any earlier step that already *states* the answer (a final
      ``= A``, or a math span equal to ``A``; see :mod:`pope_env.answer_leak`), and
      everything after them, so a prefix never reveals the answer.

A *segment* ``z[start:start+i]`` with ``start > 0`` (the fallback guidance of the prefix
search when no prefix works) is rendered with the segment instruction and heading
(:attr:`GuidanceConfig.segment_instruction`, :attr:`GuidanceConfig.segment_label`): it is an
excerpt from the middle of the solution, not its beginning, so the prefix instruction
("continue from where it stops") would not fit. A segment with ``start == 0`` is a prefix
and is rendered as one.

Chat form (``system_role=True``, the default)::

    [{"role": "system", "content": I},
     {"role": "user", "content": "Problem:\\n<x>\\n\\nPartial solution:\\n<z[:i]>"}]

Plain-text form (for models without a chat template) ends with the partial solution, so a
base model continues it directly::

    <I>\\n\\nProblem:\\n<x>\\n\\nPartial solution:\\n<z[:i]>\\n
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from pope_env.answer_leak import scan_problem, scan_problems
from pope_env.errors import ConfigError, DataFormatError
from pope_env.problem import Problem
from pope_env.solution_steps import max_prefix_len

ChatMessages = list[dict[str, str]]

DEFAULT_INSTRUCTION = (
    "You are given a math problem and the beginning of a worked solution written by an "
    "expert. The partial solution is correct. Read it carefully, build on it, and continue "
    "the reasoning step by step from where it stops. Do not start over. Finish with the "
    "final answer written as \\boxed{answer}."
)
DEFAULT_SEGMENT_INSTRUCTION = (
    "You are given a math problem and an excerpt from the middle of a worked solution "
    "written by an expert. The excerpt is correct, but the steps before and after it are not "
    "shown. Solve the problem step by step from the start, using the excerpt where it helps. "
    "Finish with the final answer written as \\boxed{answer}."
)
DEFAULT_UNGUIDED_INSTRUCTION = (
    "Solve the math problem step by step. Finish with the final answer written as "
    "\\boxed{answer}."
)


@dataclasses.dataclass(frozen=True)
class GuidanceConfig:
    """How roll-in prompts are worded and laid out.

    Attributes:
        instruction: The instruction ``I`` of a guided prompt.
        unguided_instruction: The instruction of the unguided problem (roll-in state 0).
        segment_instruction: The instruction shown with a segment ``z[start:stop]`` that
            starts after step 0 (the prefix search's fallback).
        problem_label: Heading before the problem statement.
        prefix_label: Heading before the partial oracle solution.
        segment_label: Heading before a mid-solution segment.
        system_role: Put the instruction in a ``system`` message (True) or at the top of the
            ``user`` message (False, for chat templates without a system role).
    """

    instruction: str = DEFAULT_INSTRUCTION
    unguided_instruction: str = DEFAULT_UNGUIDED_INSTRUCTION
    segment_instruction: str = DEFAULT_SEGMENT_INSTRUCTION
    problem_label: str = "Problem:"
    prefix_label: str = "Partial solution:"
    segment_label: str = "Excerpt from the solution:"
    system_role: bool = True


DEFAULT_CONFIG = GuidanceConfig()


def prefix_cap(problem: Problem) -> int:
    """The largest prefix length ``i`` whose steps do not reveal the final answer.

    The same cap everywhere. Excluded, with every step after them:

    * the step holding the first ``\\boxed{...}`` (:func:`pope_env.solution_steps.max_prefix_len`;
      for steps without a box, CHAMP's free-text answers, the step containing the gold
      answer text, else the last step);
    * the first earlier step that *states* the answer: one of its stated results (the
      right-hand side of a final ``=``, or a math span) equals the gold answer by the math
      reward's rules, math-verify included (:mod:`pope_env.answer_leak`).

    ``0`` means no prefix can be shown. Cached per problem (answer and steps): the first
    call for a problem may run math-verify on a few candidates (well under a second), later
    calls are a dict look-up. :func:`precompute_caps` fills the cache for many problems in
    one batch.
    """
    return scan_problem(problem).cap


def precompute_caps(problems: Iterable[Problem], *, progress: bool = False) -> list[int]:
    """:func:`prefix_cap` of many problems, verified in one parallel batch (and cached), so
    later calls are free. Use it before a loop that renders prompts for a whole dataset."""
    return [scan.cap for scan in scan_problems(problems, progress=progress)]


def check_guidable(problem: Problem) -> int:
    """The prefix cap of ``problem``, or :class:`DataFormatError` if it has no usable prefix.

    Raised for a problem without solution steps, with a one-step solution, or whose first
    step already holds the answer: no partial solution can be shown without revealing it.
    """
    if not problem.steps or not "".join(problem.steps).strip():
        raise DataFormatError(
            f"problem {problem.id!r} has no oracle solution steps; guided roll-ins need a "
            "worked solution (drop the problem or give it `steps`)"
        )
    cap = prefix_cap(problem)
    if cap == 0:
        why = (
            "a one-step solution"
            if len(problem.steps) == 1
            else "a solution whose first step already holds or states the final answer"
        )
        raise DataFormatError(
            f"problem {problem.id!r} has {why}; no prefix can be shown without revealing the "
            "answer, so it cannot be guided (use it unguided or split its solution finer)"
        )
    return cap


def _check_span(problem: Problem, prefix_len: int, start: int) -> None:
    if isinstance(prefix_len, bool) or not isinstance(prefix_len, int) or prefix_len < 0:
        raise ConfigError(f"prefix_len must be an integer >= 0, got {prefix_len!r}")
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ConfigError(f"start must be an integer >= 0, got {start!r}")
    cap = check_guidable(problem)
    if start + prefix_len > cap:
        span = f"steps [{start}, {start + prefix_len})" if start else f"prefix_len={prefix_len}"
        raise ConfigError(
            f"{span} of problem {problem.id!r} would reveal the final answer: its solution has "
            f"{len(problem.steps)} steps and step {cap} (0-based) holds or states the answer, so "
            f"at most {cap} steps can be shown{'' if not start else f' (end <= {cap})'}"
        )


def shown_steps(problem: Problem, prefix_len: int, *, start: int = 0) -> str:
    """The oracle text shown at roll-in state ``prefix_len`` (``z[start:start+prefix_len]``)."""
    _check_span(problem, prefix_len, start)
    return "".join(problem.steps[start : start + prefix_len])


def unguided_messages(problem: Problem, config: GuidanceConfig = DEFAULT_CONFIG) -> ChatMessages:
    """Chat messages of the unguided problem (roll-in state 0)."""
    body = f"{config.problem_label}\n{problem.question.strip()}"
    return _with_instruction(config.unguided_instruction, body, config)


def unguided_text(problem: Problem, config: GuidanceConfig = DEFAULT_CONFIG) -> str:
    """Plain-text form of :func:`unguided_messages`."""
    return f"{config.unguided_instruction}\n\n{config.problem_label}\n{problem.question.strip()}\n"


def guided_messages(
    problem: Problem, prefix_len: int, config: GuidanceConfig = DEFAULT_CONFIG, *, start: int = 0
) -> ChatMessages:
    """Chat messages of ``concat(x, z[start:start+prefix_len], I)``.

    Args:
        problem: The problem with its oracle steps.
        prefix_len: Number of oracle steps shown, ``0 <= prefix_len <= prefix_cap(problem)``;
            ``0`` gives the unguided problem.
        config: Wording and layout.
        start: First step shown (``0`` for a prefix; the fallback segment may start later,
            and is then shown with ``config.segment_instruction`` and ``segment_label``).

    Raises:
        ConfigError: ``prefix_len`` (with ``start``) reaches the step holding the answer;
            the message names the cap.
        DataFormatError: the problem has no usable prefix at all (see :func:`check_guidable`).
    """
    if prefix_len == 0 and start == 0:
        return unguided_messages(problem, config)
    shown = shown_steps(problem, prefix_len, start=start)
    if start > 0:
        return _with_instruction(config.segment_instruction, _segment_body(problem, shown, config), config)
    return state_messages(problem, shown, config)


def guided_text(
    problem: Problem, prefix_len: int, config: GuidanceConfig = DEFAULT_CONFIG, *, start: int = 0
) -> str:
    """Plain-text form of :func:`guided_messages`; ends with the partial solution (or the
    segment) and a newline, so a model without a chat template continues the solution."""
    if prefix_len == 0 and start == 0:
        return unguided_text(problem, config)
    shown = shown_steps(problem, prefix_len, start=start)
    if start > 0:
        return f"{config.segment_instruction}\n\n{_segment_body(problem, shown, config)}\n"
    return state_text(problem, shown, config)


def _segment_body(problem: Problem, shown: str, config: GuidanceConfig) -> str:
    return (f"{config.problem_label}\n{problem.question.strip()}\n\n{config.segment_label}\n"
            f"{shown.strip()}")


def state_messages(
    problem: Problem, partial: str | Sequence[str], config: GuidanceConfig = DEFAULT_CONFIG
) -> ChatMessages:
    """Chat messages of the roll-in state with *any* partial solution (oracle or not).

    Used to ask "from this partial solution, can the policy still reach the answer?" about
    states the policy wrote itself. No answer cap is applied: the caller chose the state.
    An empty partial solution gives the unguided problem.
    """
    text = _partial_text(partial)
    if not text:
        return unguided_messages(problem, config)
    body = f"{config.problem_label}\n{problem.question.strip()}\n\n{config.prefix_label}\n{text}"
    return _with_instruction(config.instruction, body, config)


def state_text(
    problem: Problem, partial: str | Sequence[str], config: GuidanceConfig = DEFAULT_CONFIG
) -> str:
    """Plain-text form of :func:`state_messages`."""
    text = _partial_text(partial)
    if not text:
        return unguided_text(problem, config)
    return (
        f"{config.instruction}\n\n{config.problem_label}\n{problem.question.strip()}\n\n"
        f"{config.prefix_label}\n{text}\n"
    )


def _partial_text(partial: str | Sequence[str]) -> str:
    if isinstance(partial, str):
        return partial.strip()
    if not all(isinstance(step, str) for step in partial):
        raise ConfigError("a partial solution is a str or a sequence of str steps")
    return "".join(partial).strip()


def _with_instruction(instruction: str, body: str, config: GuidanceConfig) -> ChatMessages:
    if config.system_role:
        return [{"role": "system", "content": instruction}, {"role": "user", "content": body}]
    return [{"role": "user", "content": f"{instruction}\n\n{body}"}]
