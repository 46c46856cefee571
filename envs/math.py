"""Single-turn math: the policy writes one whole solution per episode."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pope_env.envs._math_base import MathEnvBase, MathEnvOptions, check_verify_timeout, verifier_for
from pope_env.errors import check_can_step
from pope_env.guidance import (
    GuidanceConfig,
    guided_messages,
    guided_text,
    unguided_messages,
    unguided_text,
)
from pope_env.problem import Problem
from pope_env.rewards.math import MathScore
from pope_env.spaces import UnicodeText, check_text_action

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

__all__ = ["MathEnv", "check_verify_timeout", "verifier_for"]  # the last two live in envs._math_base


class MathEnv(MathEnvBase):
    """One math problem per episode, optionally rolled in with an oracle-solution prefix.

    ## Description
    The state is a prompt: a problem ``x`` (unguided), or POPE's guided roll-in
    ``concat(x, z[:i], I)``: the problem, the first ``i`` steps of the oracle solution ``z``
    and an instruction ``I`` to continue from them to a final ``\\boxed{}`` answer. The agent
    answers with one completion; the episode ends there. The oracle solution and the gold
    answer are privileged: they never appear in an observation (beyond the guidance prefix,
    which never contains the step with the final answer) or in ``info``.

    ## Action Space
    ``UnicodeText(max_action_chars)``: the completion text.

    ## Invalid Actions
    The rule of every pope-env env (docs/architecture.md, "Invalid actions"): a non-``str``
    action raises :class:`~pope_env.errors.InvalidActionError` and changes nothing; a
    ``str`` longer than ``max_action_chars`` ends the episode with reward
    ``invalid_action_reward`` (0.0), ``format_ok = False`` and ``info["invalid_action"]``
    naming the reason. Any other text is scored (malformed text simply scores 0).

    ## Observation Space
    ``UnicodeText``: the prompt rendered as plain text (system instruction, problem and, when
    guided, the partial solution). The same prompt as chat messages is in
    ``info["messages"]``: give those to a chat model.

    ## Rewards
    ``1.0`` if the final answer (last ``\\boxed{}``, with the fallbacks of
    :func:`pope_env.rewards.math.extract_answer`) is verified equal to the gold answer by
    math-verify, else ``0.0``. Verification has a hard wall-clock limit
    (``verify_timeout_s``); a timed-out verification scores 0 with ``info["timed_out"]``.

    ## Starting State
    A problem drawn from ``dataset`` in a seeded random order without replacement
    (reshuffled each pass). The roll-in depends on ``mode``:

    - ``"unguided"``: the bare problem.
    - ``"guided"``: always guided with the problem's prefix length ``i``.
    - ``"pope"``: each problem's guided and unguided versions, paired within every pass
      as POPE trains: with the default ``guided_ratio=0.5`` a pass is ``2N`` resets over
      the ``N`` problems, each problem appearing once guided (at its ``i*``) and once
      unguided, in a seeded order reshuffled every pass; every consecutive pair of resets
      holds one guided and one unguided episode. Other ratios ``g : u`` show each problem
      ``g`` times guided and ``u`` times unguided per pass, exact per block of ``g + u``.

    The prefix length ``i`` is the problem's ``i*`` from ``guidance_file`` when one is given
    (or its fallback segment ``z[start:start+i]`` when no prefix worked), else
    ``round(prefix_fraction * cap)`` with at least one step, where ``cap`` is the largest
    prefix that does not reveal the final answer (:func:`pope_env.guidance.prefix_cap`);
    ``"guided"`` and ``"pope"`` modes without a guidance file warn once, when the env is
    made (:class:`pope_env.rollin.NoGuidanceWarning`), naming ``pope-env prefix-search``.
    See :mod:`pope_env.rollin`.
    ``reset(options=...)`` overrides the draw: ``problem_id`` (str), ``guided`` (bool),
    ``prefix_len`` (int, ``0 <= i <= cap``; implies ``guided=True`` when > 0).

    ## Episode End
    Terminated after one ``step``. There is no truncation. Calling ``step`` again before
    ``reset`` raises :class:`~pope_env.errors.EnvStateError`.

    ## Info
    ``problem_id``, ``guided`` (bool), ``prefix_len`` (oracle steps shown),
    ``prefix_start`` (first oracle step shown: 0 but for a fallback segment), ``messages``
    (chat messages of the prompt), ``source``, ``level``; after ``step`` also ``correct``, ``format_ok``,
    ``timed_out`` and ``extracted`` (the answer read from the agent's completion).

    ## Arguments
    - ``dataset``: a dataset name of :func:`pope_env.datasets.load_dataset` (``"math500"``,
      ``"math-train-l5"``, ``"file:PATH"``, ...), or ``None`` with ``problems``.
    - ``problems``: an explicit list of :class:`~pope_env.problem.Problem` (overrides
      ``dataset``).
    - ``mode``: ``"unguided"``, ``"guided"`` or ``"pope"``.
    - ``guided_ratio``: fraction of guided resets in ``"pope"`` mode (default 0.5).
    - ``prefix_fraction``: prefix length as a fraction of the cap when no ``i*`` is known.
    - ``guidance``: a :class:`~pope_env.guidance.GuidanceConfig` (instruction text).
    - ``guidance_file``: a guidance file of ``pope-env prefix-search`` (``i*`` per problem).
    - ``split_file``: a split file of ``pope-env hard-split``: only its hard problems are used.
    - ``limit``: use only the first ``limit`` problems of the dataset.
    - ``verify_timeout_s``: wall-clock limit of one verification (seconds, > 0; default 5).
      The env verifies through a process-wide worker pool per distinct limit
      (:func:`verifier_for`): envs with the same limit share one pool.
    - ``max_action_chars``: the action space's length limit (characters).

    ## Version History
    - v0: Initial version.
    """

    def __init__(
        self,
        dataset: str | None = "math500",
        *,
        max_action_chars: int = 1 << 24,
        **options: Unpack[MathEnvOptions],
    ) -> None:
        super().__init__(dataset, **options)
        self.action_space = UnicodeText(max_action_chars)
        self._obs: str = ""

    def reset(
        self, *, seed: int | None = None, options: Mapping[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        self._start_reset(seed)
        rollin = self.rollin.draw(self.np_random, options)
        problem = rollin.problem
        if rollin.prefix_len > 0:
            messages = guided_messages(problem, rollin.prefix_len, self.guidance, start=rollin.start)
            self._obs = guided_text(problem, rollin.prefix_len, self.guidance, start=rollin.start)
        else:
            messages = unguided_messages(problem, self.guidance)
            self._obs = unguided_text(problem, self.guidance)
        self._problem = problem
        self._info = {
            "problem_id": problem.id,
            "guided": rollin.guided,
            "prefix_len": rollin.prefix_len,
            "prefix_start": rollin.start,
            "messages": messages,
            "source": problem.source,
            "level": problem.level,
        }
        self._done = False
        return self._obs, dict(self._info)

    # -- step -----------------------------------------------------------------------------
    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        check_can_step(self._problem is not None, self._done)
        invalid = check_text_action(action, self.action_space)
        self._done = True
        if invalid is None:
            score = self.verifier.score(action, self._problem.answer)
        else:
            score = MathScore(reward=self.invalid_action_reward, correct=False, format_ok=False, timed_out=False,
                              extracted=None)
        info = dict(self._info) if invalid is None else dict(self._info, invalid_action=invalid)
        info.update(
            correct=score.correct,
            format_ok=score.format_ok,
            timed_out=score.timed_out,
            extracted=score.extracted,
        )
        return self._obs, float(score.reward), True, False, info

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self._obs
        return None
