"""SRL environments: walk an expert solution step by step, rewarded by step similarity.

SRL (Supervised Reinforcement Learning, 2025) turns each expert solution into training
prompts, one per step after the first: at step ``k`` the model sees the problem and the
expert's steps ``1..k-1`` (the expert roll-in), writes an internal monologue in
``<think>...</think>`` and then the next step, and is rewarded by the similarity of that
step to the expert's step ``k`` (:func:`pope_env.rewards.similarity.srl_reward`).

As in the SRL paper, a solution of ``N`` steps gives ``N - 1`` prompts, for ``k = 2..N``:
every prompt already holds at least the expert's first step, and there is no ``k = 1``
prompt with no expert context (writing step 1 from the bare problem is ordinary
generation, not imitation of a continuation). Problems with fewer than two steps give no
prompt and are left out of the envs.

Chat templates that pre-fill ``<think>`` (the completion starts inside the monologue):
pass ``prefilled_think=True`` to the envs (see :mod:`pope_env.rewards.similarity`).

* :class:`SRLMathEnv` (``SRL-Math-v0``): one episode walks one whole expert solution.
* :class:`SRLMathStepEnv` (``SRL-Math-Step-v0``): one episode is one (problem, k) prompt,
  sampled uniformly over all of them, as SRL trains with batched GRPO.
* :func:`srl_prompts`: every (problem, k) as an independent :class:`SRLPrompt` (chat
  messages + expert step), e.g. rows of a TRL dataset for ``srl_reward_func``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from pope_env.errors import ConfigError, UnknownNameError, check_can_step
from pope_env.problem import Problem
from pope_env.rewards.similarity import (
    FORMAT_FAILURE_REWARD,
    SRLFormatError,
    parse_srl_output,
    step_similarity,
)
from pope_env.spaces import UnicodeText, check_text_action

__all__ = [
    "FIRST_STEP",
    "SYSTEM_PROMPT",
    "SRLPrompt",
    "srl_messages",
    "srl_user_text",
    "srl_prompts",
    "SRLMathEnv",
    "SRLMathStepEnv",
]

SYSTEM_PROMPT = (
    "You solve a math problem one step at a time. You are shown the problem and the steps "
    "written so far. First think privately inside <think> and </think> (exactly one pair of "
    "tags, nothing before <think>). After </think>, write only the next step of the "
    "solution: one step, not the rest of the solution."
)
"""System prompt of every SRL prompt; it states the output format the reward checks."""

_NEXT_STEP_INSTRUCTION = "Write the next step: think inside <think>...</think>, then write the step."

Tokenize = Callable[[str], Sequence[int]]


FIRST_STEP = 2
"""The first step an SRL prompt asks for (1-based): step 1 is always shown as context."""


def srl_user_text(problem: Problem, k: int) -> str:
    """The user message at step ``k`` (1-based, ``2 <= k <= n``): the problem, expert steps
    ``1..k-1``, the ask.

    Each earlier step is written on its own line, whitespace-stripped, in order.
    """
    _check_step(problem, k)
    so_far = "\n".join(s.strip() for s in problem.steps[: k - 1])
    return f"Problem:\n{problem.question.strip()}\n\nSolution so far:\n{so_far}\n\n{_NEXT_STEP_INSTRUCTION}"


def srl_messages(problem: Problem, k: int) -> list[dict[str, str]]:
    """Chat messages (system + user) of the SRL prompt for step ``k`` of ``problem``."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": srl_user_text(problem, k)},
    ]


@dataclass(frozen=True)
class SRLPrompt:
    """One SRL training prompt: predict step ``k`` of a problem's expert solution.

    Attributes:
        messages: Chat messages (system + user) shown to the policy.
        expert_step: The expert's step ``k`` (privileged: the reward's reference).
        problem_id: The problem's id.
        k: The step to write, 1-based (``2 <= k <= n_steps``).
        n_steps: Number of expert steps of the problem.
    """

    messages: tuple[Mapping[str, str], ...]
    expert_step: str
    problem_id: str
    k: int
    n_steps: int

    def to_dict(self) -> dict[str, Any]:
        """A dataset row in TRL's conversational format: ``prompt`` plus the reward's columns."""
        return {
            "prompt": [dict(m) for m in self.messages],
            "expert_step": self.expert_step,
            "problem_id": self.problem_id,
            "step": self.k,
            "n_steps": self.n_steps,
        }


def srl_prompts(problems: Sequence[Problem]) -> list[SRLPrompt]:
    """Every (problem, k) of ``problems`` as an independent prompt, problem by problem:
    ``N - 1`` prompts (``k = 2..N``) for a solution of ``N`` steps, as in SRL.

    Problems with fewer than two steps yield nothing.
    """
    out: list[SRLPrompt] = []
    for p in problems:
        for k in range(FIRST_STEP, len(p.steps) + 1):
            out.append(
                SRLPrompt(
                    messages=tuple(srl_messages(p, k)),
                    expert_step=p.steps[k - 1],
                    problem_id=p.id,
                    k=k,
                    n_steps=len(p.steps),
                )
            )
    return out


def _check_step(problem: Problem, k: Any) -> None:
    n = len(problem.steps)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not FIRST_STEP <= k <= n:
        raise ConfigError(
            f"step must be an int in {FIRST_STEP}..{n} for problem {problem.id!r} ({n} expert steps; "
            f"SRL shows expert step 1 as context and asks for steps 2..n), got {k!r}"
        )


def _load_problems(dataset: str | Sequence[Problem], max_problems: int | None) -> list[Problem]:
    if isinstance(dataset, str):
        from pope_env.datasets import load_dataset  # lazily: loading data is not free

        problems = list(load_dataset(dataset))
        name = dataset
    else:
        problems = list(dataset)
        name = "the given problems"
        for p in problems:
            if not isinstance(p, Problem):
                raise ConfigError(f"dataset must be a dataset name or a sequence of Problem, got a {type(p).__name__} in it")
    with_steps = [p for p in problems if len(p.steps) >= FIRST_STEP]
    if max_problems is not None:
        if max_problems < 1:
            raise ConfigError(f"max_problems must be >= 1 or None, got {max_problems}")
        with_steps = with_steps[:max_problems]
    if not with_steps:
        raise ConfigError(
            f"{name}: no problem has two or more expert steps; SRL needs step-split solutions "
            "(a prompt for step k shows expert steps 1..k-1, k = 2..n)"
        )
    return with_steps


class SRLMathEnv(gym.Env[str, str]):
    """Step-wise SRL on math: the episode walks one expert solution, one step per action.

    ## Description
    SRL (Supervised Reinforcement Learning: From Expert Trajectories to Step-wise
    Reasoning, 2025). A problem's expert solution is a list of steps ``y_1..y_n`` (CHAMP's
    native steps, or MATH solutions split by :func:`pope_env.solution_steps.split_solution`). At
    step ``k`` (``k = 2..n``, as in SRL: ``n - 1`` steps per solution) the agent sees the
    problem and the expert's steps ``1..k-1`` and writes an internal monologue plus the next
    step; whatever it writes, the next state appends the *expert's* step ``k`` (the expert
    roll-in), never the agent's.

    ## Action Space
    ``UnicodeText``: any ``str``, expected as ``<think>monologue</think>`` followed by the
    step (the exact rule: :func:`pope_env.rewards.similarity.parse_srl_output`), or as
    ``monologue</think>step`` with ``prefilled_think=True`` (the policy's chat template
    already opened ``<think>``). Text that breaks the format is a valid action scored ``-1``
    (SRL's format reward), not an invalid one.

    ## Invalid Actions
    The rule of every pope-env env (docs/architecture.md, "Invalid actions"): a non-``str``
    action raises :class:`~pope_env.errors.InvalidActionError` and changes nothing; a
    ``str`` longer than the action space allows ends the episode (terminated) with reward
    ``invalid_action_reward`` (-1.0, the lowest SRL reward), ``format_ok = False`` and
    ``info["invalid_action"]`` naming the reason; no expert step is appended.

    ## Observation Space
    ``UnicodeText``: the user message of the SRL prompt, i.e. ``"Problem:\\n" + question +
    "\\n\\nSolution so far:\\n" + the expert steps 1..k-1 (one per line, stripped)`` + an
    instruction line. ``info["messages"]`` holds the chat messages
    (the system prompt, :data:`SYSTEM_PROMPT`, explains the ``<think>`` format).

    ## Rewards
    ``-1`` when the action breaks the format, else ``2M/T`` of the action's step against the
    expert step ``k`` (both whitespace-stripped), exactly
    ``difflib.SequenceMatcher(None, step, expert_step).ratio()``, in ``[0, 1]``; on tokens
    of ``tokenize`` when given.

    ## Starting State
    A problem drawn uniformly with the env's RNG, at step ``k = 2`` (expert step 1 already
    shown), unless ``reset(options={"problem_id": ..., "step": k})`` chooses them (start at
    any step ``2..n``: the observation then holds expert steps ``1..k-1``).

    ## Episode End
    Terminated after the action for the last expert step ``n`` (``n - 1`` actions), or on
    an invalid action. Never truncated. A problem with two steps is a one-action episode;
    problems with fewer than two steps are left out.

    ## Info
    ``problem_id``, ``step`` (the step the next action should write, 1-based),
    ``n_steps``, ``messages``; after ``step()`` also ``format_ok``, ``format_error``
    (the broken rule or ``None``), ``similarity`` (``None`` on a format failure) and
    ``scored_step`` (the k just scored). The expert step itself is never in ``info``.

    ## Arguments
    * ``dataset``: a dataset name for :func:`pope_env.datasets.load_dataset` (``"champ"``,
      ``"math-train"``, ...) or a sequence of :class:`~pope_env.problem.Problem`.
    * ``max_problems``: keep only the first N problems with steps.
    * ``tokenize``: optional ``str -> list[int]`` for token-level similarity.
    * ``prefilled_think``: the policy's chat template ends the prompt with ``<think>``, so
      an action starts inside the monologue (default ``False``; see
      :mod:`pope_env.rewards.similarity`).
    * ``render_mode``: ``None`` or ``"ansi"`` (returns the observation text).

    Vector envs: ``gym.make_vec("SRL-Math-v0", num_envs=8, vectorization_mode="sync")``;
    for ``"async"`` pass ``vector_kwargs={"shared_memory": False}`` (text observations
    cannot live in shared memory).

    ## Version History
    * v0: initial version; steps ``k = 2..n`` (``n - 1`` prompts per solution, as in SRL).
    """

    metadata = {"render_modes": ["ansi"]}
    invalid_action_reward = FORMAT_FAILURE_REWARD
    _single_step = False  # SRLMathStepEnv: one action per episode

    def __init__(
        self,
        dataset: str | Sequence[Problem] = "math-train",
        *,
        max_problems: int | None = None,
        tokenize: Tokenize | None = None,
        prefilled_think: bool = False,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.problems = _load_problems(dataset, max_problems)
        self._by_id = {p.id: p for p in self.problems}
        self.tokenize = tokenize
        self.prefilled_think = bool(prefilled_think)
        self.render_mode = render_mode
        self.observation_space = UnicodeText()
        self.action_space = UnicodeText()
        self._problem: Problem | None = None
        self._k = 0  # the step the next action writes (1-based); 0 before reset
        self._done = False

    # --- helpers ------------------------------------------------------------------------
    def _observation(self) -> str:
        assert self._problem is not None
        if self._k > len(self._problem.steps):  # after the last step: the whole solution
            steps = "\n".join(s.strip() for s in self._problem.steps)
            return f"Problem:\n{self._problem.question.strip()}\n\nSolution so far:\n{steps}\n\n(solution complete)"
        return srl_user_text(self._problem, self._k)

    def _info(self) -> dict[str, Any]:
        assert self._problem is not None
        n = len(self._problem.steps)
        info: dict[str, Any] = {"problem_id": self._problem.id, "step": self._k, "n_steps": n}
        if self._k <= n:
            info["messages"] = srl_messages(self._problem, self._k)
        return info

    def _choose(self, options: Mapping[str, Any]) -> tuple[Problem, int]:
        problem_id = options.get("problem_id")
        if "step" in options and problem_id is None:
            raise ConfigError("reset option 'step' needs 'problem_id' too (step counts vary by problem)")
        if problem_id is None:
            problem = self.problems[int(self.np_random.integers(len(self.problems)))]
        else:
            if problem_id not in self._by_id:
                raise UnknownNameError("problem id", str(problem_id), list(self._by_id))
            problem = self._by_id[problem_id]
        k = options.get("step", FIRST_STEP)
        _check_step(problem, k)
        return problem, int(k)

    def _check_options(self, options: Mapping[str, Any] | None) -> Mapping[str, Any]:
        options = options or {}
        unknown = set(options) - {"problem_id", "step"}
        if unknown:
            raise ConfigError(f"unknown reset options {sorted(unknown)}; known: 'problem_id', 'step'")
        return options

    def _score(self, action: Any, expert_step: str) -> tuple[float, dict[str, Any]]:
        try:
            parsed = parse_srl_output(action, prefilled_think=self.prefilled_think)
        except SRLFormatError as exc:
            return FORMAT_FAILURE_REWARD, {"format_ok": False, "format_error": exc.reason, "similarity": None}
        expert = expert_step.strip()
        if self.tokenize is None:
            sim = step_similarity(parsed.step, expert)
        else:
            sim = step_similarity(list(self.tokenize(parsed.step)), list(self.tokenize(expert)))
        return sim, {"format_ok": True, "format_error": None, "similarity": sim}

    # --- Gymnasium API --------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        self._problem, self._k = self._choose(self._check_options(options))
        self._done = False
        return self._observation(), self._info()

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict[str, Any]]:
        check_can_step(self._problem is not None, self._done)
        invalid = check_text_action(action, self.action_space)
        if invalid is not None:
            self._done = True
            info = self._info()
            info.update(format_ok=False, format_error="invalid action", similarity=None, scored_step=self._k,
                        invalid_action=invalid)
            return self._observation(), float(self.invalid_action_reward), True, False, info
        n = len(self._problem.steps)
        reward, verdict = self._score(action, self._problem.steps[self._k - 1])
        scored = self._k
        self._k += 1  # the next state appends the EXPERT step k
        terminated = self._k > n or self._single_step
        self._done = terminated
        info = self._info()
        info.update(verdict, scored_step=scored)
        return self._observation(), float(reward), terminated, False, info

    def render(self) -> str | None:
        if self.render_mode == "ansi" and self._problem is not None:
            return self._observation()
        return None


class SRLMathStepEnv(SRLMathEnv):
    """One SRL prompt per episode: a (problem, k) drawn uniformly over all of them.

    ## Description
    The single-step form of :class:`SRLMathEnv`, as SRL trains: every step ``k = 2..n`` of
    every expert solution is an independent prompt (problem + expert steps ``1..k-1``), so a
    batch of resets is a batch of SRL prompts for GRPO. See :func:`srl_prompts` for the
    same prompts as a list.

    ## Action Space
    ``UnicodeText``: ``<think>...</think>`` followed by the step, as in ``SRL-Math-v0``.

    ## Observation Space
    ``UnicodeText``: the SRL user message for (problem, k); chat messages in
    ``info["messages"]``.

    ## Rewards
    As ``SRL-Math-v0``: ``-1`` on a format failure, else the similarity in ``[0, 1]`` of
    the step to the expert step ``k``.

    ## Starting State
    A (problem, k) pair drawn uniformly over all ``n - 1`` pairs of every problem (so long
    solutions weigh more, as in SRL's data), or the one given by
    ``reset(options={"problem_id": ..., "step": k})``; ``problem_id`` alone draws ``k``
    uniformly in ``2..n`` within that problem.

    ## Invalid Actions
    As ``SRL-Math-v0``.

    ## Episode End
    Terminated after one action.

    ## Info
    As ``SRL-Math-v0``.

    ## Arguments
    As ``SRL-Math-v0``.

    ## Version History
    * v0: initial version.
    """

    _single_step = True

    def __init__(self, dataset: str | Sequence[Problem] = "math-train", **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self._cum_steps = np.cumsum([len(p.steps) - 1 for p in self.problems])  # prompts per problem

    def _choose(self, options: Mapping[str, Any]) -> tuple[Problem, int]:
        if "step" in options:
            return super()._choose(options)
        if options.get("problem_id") is not None:
            problem, _ = super()._choose({"problem_id": options["problem_id"]})
            return problem, int(self.np_random.integers(len(problem.steps) - 1)) + FIRST_STEP
        idx = int(self.np_random.integers(int(self._cum_steps[-1])))  # uniform over all (problem, k)
        p = int(np.searchsorted(self._cum_steps, idx, side="right"))
        before = int(self._cum_steps[p - 1]) if p > 0 else 0
        return self.problems[p], idx - before + FIRST_STEP
