"""Step-level math: the policy writes one reasoning step per action."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pope_env.envs._math_base import MathEnvBase, MathEnvOptions
from pope_env.errors import ConfigError, check_can_step
from pope_env.guidance import GuidanceConfig, state_messages, state_text
from pope_env.problem import Problem
from pope_env.spaces import UnicodeText, check_text_action

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11


def with_separator(step: str, separator: str = "\n\n") -> str:
    """``step`` followed by ``separator`` unless it already ends with a newline."""
    return step if step.endswith("\n") else step + separator


def join_steps(steps: Sequence[str], separator: str = "\n\n") -> str:
    """The solution text of agent-written steps (each passed through :func:`with_separator`)."""
    return "".join(with_separator(step, separator) for step in steps)


class MathStepsEnv(MathEnvBase):
    """Step-level reasoning MDP: one action = one reasoning step.

    ## Description
    The state is the problem plus the steps written so far: an optional roll-in (the first
    ``i`` oracle steps, or any given partial solution) followed by the agent's own steps.
    Each action is the next step; the transition appends it. A step containing ``\\boxed``
    (the final answer) ends the episode. This is the MDP view of reasoning used by POPE's
    analysis: every partial solution is a state, so one can roll in anywhere and ask whether
    the policy still reaches the answer from there.

    ## Action Space
    ``UnicodeText(max_step_chars)``: one step (text). The env adds ``step_separator``
    (a blank line) after a step that does not end with a newline. A whitespace-only step
    is allowed and changes nothing but the step count (``info["empty_step"] = True``).

    ## Invalid Actions
    The rule of every pope-env env (docs/architecture.md, "Invalid actions"): a non-``str``
    action raises :class:`~pope_env.errors.InvalidActionError` and changes nothing; a step
    longer than ``max_step_chars`` ends the episode (terminated) with reward
    ``invalid_action_reward`` (0.0) and ``info["invalid_action"]`` naming the reason.

    ## Observation Space
    ``UnicodeText``: the prompt an LLM continues from: the instruction, the problem and the
    partial solution so far, as plain text (the same builder as the single-turn envs'
    guided prompts, :mod:`pope_env.guidance`). The chat-message form is in
    ``info["messages"]``.

    ## Rewards
    0 on every step but the last. When a step contains ``\\boxed``, the reward is the
    verifiable math reward (:mod:`pope_env.rewards.math`) of the whole solution text
    (the roll-in's oracle text as is, then each agent step followed by ``step_separator``
    unless it ends with a newline, see :func:`join_steps`): 1.0 if the final answer is
    verified correct, else 0.0. Truncation gives 0.

    ## Starting State
    A problem from ``dataset`` in seeded random order, rolled in per ``mode`` as in
    ``POPE-Math-v0``/``-Hard-v0``/``-Guided-v0`` (unguided, guided with ``i`` oracle steps,
    or ``"pope"``: every problem once guided and once unguided per pass of ``2N`` resets,
    one of each in every consecutive pair; see :class:`pope_env.envs.math.MathEnv`). ``reset(options=...)``: ``problem_id``;
    ``prefix_len`` (start after the first ``i`` oracle steps, ``0 <= i <= cap`` where the cap
    excludes the step with the answer); or ``state`` (a list of step strings: start from
    that partial solution, for analysis of arbitrary states).

    ## Episode End
    Terminated when a step contains ``\\boxed``. Truncated (reward 0) after ``max_steps``
    agent steps, or when the solution exceeds ``max_total_chars``. Terminated (reward 0) on
    an invalid action.

    ## Info
    ``problem_id``, ``guided``, ``prefix_len`` (oracle steps in the roll-in, 0 for a given
    ``state``), ``state_steps`` (number of steps in the state), ``agent_steps``,
    ``messages``; at the end also ``correct``, ``format_ok``, ``timed_out``.

    ## Arguments
    ``dataset`` / ``problems`` / ``limit`` / ``mode`` / ``guided_ratio`` /
    ``prefix_fraction`` / ``guidance`` as in :class:`pope_env.envs.math.MathEnv`;
    ``max_steps`` (agent steps per episode, default 24), ``max_step_chars`` (default 8,192),
    ``max_total_chars`` (default 32,768), ``step_separator`` (default ``"\\n\\n"``),
    ``verify_timeout_s`` (wall-clock limit of the final verification in seconds, > 0,
    default 5; a timed-out verification scores 0 with ``info["timed_out"]``).

    ## Version History
    - v0: Initial version.
    """

    def __init__(
        self,
        dataset: str | None = "math500",
        *,
        max_steps: int = 24,
        max_step_chars: int = 8192,
        max_total_chars: int = 32768,
        step_separator: str = "\n\n",
        **options: Unpack[MathEnvOptions],
    ) -> None:
        for name, value in (("max_steps", max_steps), ("max_step_chars", max_step_chars),
                            ("max_total_chars", max_total_chars)):
            if value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        super().__init__(dataset, **options)
        self.max_steps = max_steps
        self.max_step_chars = max_step_chars
        self.max_total_chars = max_total_chars
        self.step_separator = step_separator
        self.action_space = UnicodeText(max_step_chars)
        self._steps: list[str] = []
        self._agent_steps = 0

    def _observe(self) -> tuple[str, list[dict[str, str]]]:
        partial = "".join(self._steps)
        return (state_text(self._problem, partial, self.guidance),
                state_messages(self._problem, partial, self.guidance))

    def reset(
        self, *, seed: int | None = None, options: Mapping[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        self._start_reset(seed)
        options = dict(options or {})
        unknown = set(options) - {"problem_id", "guided", "prefix_len", "state"}
        if unknown:
            raise ConfigError(
                f"unknown reset option(s) {sorted(unknown)}; use problem_id, guided, prefix_len, state"
            )
        if "state" in options:
            if "prefix_len" in options:
                raise ConfigError("give either prefix_len or state, not both")
            if "problem_id" not in options:
                raise ConfigError("reset(options={'state': ...}) needs a problem_id too")
            problem = self.rollin.get(options["problem_id"])
            state = options["state"]
            if isinstance(state, str) or not isinstance(state, Sequence) or \
                    not all(isinstance(s, str) for s in state):
                raise ConfigError("state must be a list of step strings")
            if any("\\boxed" in s for s in state):
                raise ConfigError("a state must not contain a final \\boxed answer (it would be terminal)")
            total = len(join_steps(state, self.step_separator))
            if total > self.max_total_chars:
                raise ConfigError(f"state has {total} characters; max_total_chars is {self.max_total_chars}")
            steps = [with_separator(x, self.step_separator) for x in state]
            guided, prefix_len = bool(state), 0
        else:
            rollin = self.rollin.draw(self.np_random, options)
            problem, guided, prefix_len = rollin.problem, rollin.guided, rollin.prefix_len
            steps = list(problem.steps[rollin.start : rollin.start + prefix_len])
        self._problem = problem
        self._steps = steps
        self._agent_steps = 0
        self._done = False
        self._info = {"problem_id": problem.id, "guided": guided, "prefix_len": prefix_len}
        obs, messages = self._observe()
        self._info.update(state_steps=len(steps), agent_steps=0, messages=messages)
        return obs, dict(self._info)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        check_can_step(self._problem is not None, self._done)
        info = dict(self._info)
        invalid = check_text_action(action, self.action_space)
        if invalid:
            self._done = True
            info.update(invalid_action=invalid, correct=False, format_ok=False, timed_out=False)
            return self._observe()[0], self.invalid_action_reward, True, False, info

        self._agent_steps += 1
        info["empty_step"] = not action.strip()
        if action.strip():
            self._steps.append(with_separator(action, self.step_separator))
        solution = "".join(self._steps)
        terminated = "\\boxed" in action
        truncated = not terminated and (
            self._agent_steps >= self.max_steps or len(solution) > self.max_total_chars
        )
        reward = 0.0
        if terminated:
            score = self.verifier.score(solution, self._problem.answer)
            reward = float(score.reward)
            info.update(correct=score.correct, format_ok=score.format_ok, timed_out=score.timed_out)
        elif truncated:
            info.update(correct=False, format_ok=False, timed_out=False)
        self._done = terminated or truncated
        obs, messages = self._observe()
        info.update(state_steps=len(self._steps), agent_steps=self._agent_steps, messages=messages)
        self._info["messages"] = messages
        return obs, reward, terminated, truncated, info

    @property
    def solution_so_far(self) -> str:
        """The text of the current state's steps (roll-in plus agent steps)."""
        return "".join(self._steps)

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self.solution_so_far
        return None
