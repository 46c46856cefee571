"""Simple agents for tests and sanity checks: random text, echo, and the gold-solution oracle.

None of them learns or needs torch. :class:`OracleAgent` reads the privileged solution from
the :class:`~pope_env.problem.Problem` records it is given (never from the observation),
keyed by ``info["problem_id"]``, which every pope-env env puts in ``info``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pope_env.errors import ConfigError, EnvStateError, UnknownNameError
from pope_env.problem import Problem

_BOXED = re.compile(r"\\boxed\s*\{|\\fbox\s*\{")

# Printable ASCII plus a few characters a text space must also accept (LaTeX, accents, CJK).
_RANDOM_ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \n+-*/=()[]{}\\^_.,;:!?$"
    "éüß∑∫√πθλ中文"
)


class RandomAgent:
    """Answers with random unicode text; a seeded baseline that should score about 0.

    Args:
        seed: Seed of the agent's own RNG (``None``: unseeded).
        min_chars: Shortest action, in characters.
        max_chars: Longest action, in characters.
        alphabet: Characters to draw from.
    """

    def __init__(
        self, seed: int | None = None, *, min_chars: int = 1, max_chars: int = 200, alphabet: str = _RANDOM_ALPHABET
    ) -> None:
        if not 0 <= min_chars <= max_chars:
            raise ConfigError(f"need 0 <= min_chars <= max_chars, got {min_chars} and {max_chars}")
        if not alphabet:
            raise ConfigError("alphabet must not be empty")
        self._rng = random.Random(seed)
        self.min_chars = min_chars
        self.max_chars = max_chars
        self.alphabet = alphabet

    def act(self, observation: Any, info: Mapping[str, Any]) -> str:
        length = self._rng.randint(self.min_chars, self.max_chars)
        return "".join(self._rng.choices(self.alphabet, k=length))

    def act_batch(self, observations: Sequence[Any], infos: Sequence[Mapping[str, Any]]) -> list[str]:
        return [self.act(o, i) for o, i in zip(observations, infos)]


class EchoAgent:
    """Answers with a fixed text, or with the observation itself when no text is given.

    Useful to drive an env with a known action (e.g. a wrong ``\\boxed{}`` answer) or to
    check that a prompt round-trips through a vector env unchanged.

    Args:
        text: The action to return every time; ``None`` returns ``str(observation)``.
    """

    def __init__(self, text: str | None = None) -> None:
        self.text = text

    def act(self, observation: Any, info: Mapping[str, Any]) -> str:
        return self.text if self.text is not None else str(observation)

    def act_batch(self, observations: Sequence[Any], infos: Sequence[Mapping[str, Any]]) -> list[str]:
        return [self.act(o, i) for o, i in zip(observations, infos)]


ProblemLookup = Mapping[str, Problem] | Callable[[str], Problem] | Iterable[Problem]


class OracleAgent:
    """Answers with the gold worked solution of the problem named by ``info["problem_id"]``.

    A sanity check for envs and rewards: on a correctly built env it scores 1 on every problem
    whose gold answer math-verify can parse. If the solution text has no ``\\boxed{}`` (CHAMP,
    user data), ``"\\n\\nThe final answer is $\\boxed{answer}$."`` is appended so the reward can
    find it.

    Two modes:

    * ``"solution"`` (single-turn envs): the whole solution is the action.
    * ``"step"`` (step-wise envs): the action is the next oracle step, ``steps[k]`` where
      ``k = info[step_key]`` is the number of steps already in the state (the step env's
      ``info["state_steps"]``: roll-in steps plus the agent's own); the last step
      carries the boxed answer (appended as above if the steps lack it).

    Args:
        problems: The problems the env draws from: a ``problem_id -> Problem`` mapping, a
            callable doing that lookup (e.g. a dataset's ``get``), or an iterable of problems.
        mode: ``"solution"`` or ``"step"``.
        step_key: The ``info`` key holding the number of steps already taken (step mode).

    Raises:
        EnvStateError: ``info`` has no ``problem_id`` (or no ``step_key`` in step mode), or
            the state already holds every oracle step.
        UnknownNameError: The problem id is not among ``problems``.
    """

    def __init__(self, problems: ProblemLookup, *, mode: str = "solution", step_key: str = "state_steps") -> None:
        if mode not in ("solution", "step"):
            raise ConfigError(f"OracleAgent mode must be 'solution' or 'step', got {mode!r}")
        self.mode = mode
        self.step_key = step_key
        if isinstance(problems, Mapping):
            table: Mapping[str, Problem] | None = problems
            self._lookup: Callable[[str], Problem] | None = None
        elif callable(problems):
            table, self._lookup = None, problems
        else:
            table, self._lookup = {p.id: p for p in problems}, None
        self._table = table

    def problem(self, problem_id: str) -> Problem:
        """The problem with this id, or :class:`UnknownNameError`."""
        if self._table is not None:
            if problem_id not in self._table:
                raise UnknownNameError("problem id", problem_id, list(self._table))
            return self._table[problem_id]
        assert self._lookup is not None
        return self._lookup(problem_id)

    @staticmethod
    def answer_text(problem: Problem) -> str:
        """The gold solution with a ``\\boxed{}`` final answer guaranteed."""
        return problem.solution if _BOXED.search(problem.solution) else problem.solution + _boxed_suffix(problem)

    @staticmethod
    def oracle_steps(problem: Problem) -> list[str]:
        """The oracle steps, the last one carrying a ``\\boxed{}`` answer."""
        steps = list(problem.steps) or [problem.solution]
        if not any(_BOXED.search(s) for s in steps):
            steps[-1] = steps[-1] + _boxed_suffix(problem)
        return steps

    def act(self, observation: Any, info: Mapping[str, Any]) -> str:
        problem_id = info.get("problem_id") if isinstance(info, Mapping) else None
        if problem_id is None:
            raise EnvStateError("OracleAgent needs info['problem_id']; pass the info dict returned by reset/step")
        problem = self.problem(str(problem_id))
        if self.mode == "solution":
            return self.answer_text(problem)
        if self.step_key not in info:
            raise EnvStateError(
                f"OracleAgent(mode='step') needs info[{self.step_key!r}] (steps already taken); "
                f"got keys {sorted(info)}"
            )
        steps = self.oracle_steps(problem)
        k = int(info[self.step_key])
        if not 0 <= k < len(steps):
            raise EnvStateError(f"problem {problem.id!r} has {len(steps)} oracle steps; no step {k} to take")
        return steps[k]

    def act_batch(self, observations: Sequence[Any], infos: Sequence[Mapping[str, Any]]) -> list[str]:
        return [self.act(o, i) for o, i in zip(observations, infos)]


def _boxed_suffix(problem: Problem) -> str:
    return f"\n\nThe final answer is $\\boxed{{{problem.answer}}}$."
