"""A training evaluation hook: the S_good overlap of the policy's own unguided states.

Pass it to :class:`~pope_env.agents.train.Trainer` (``eval_hooks=[hook]``); at every
evaluation it runs :func:`pope_env.own_states.own_state_overlap` with the rollout policy on a
fixed set of (hard) problems and the same seeds, so the logged curve ``s_good_overlap`` over
training steps shows whether the states the policy reaches on its own drift into S_good, the
overlap POPE credits for transfer from guided to unguided problems.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pope_env.io import JsonlAppender, PathLike
from pope_env.own_states import OwnStateOptions, check_own_state_options, own_state_overlap
from pope_env.problem import Problem

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11


class OwnStateReachHook:
    """``hook(policy, step) -> metrics``: see :meth:`pope_env.own_states.OwnStateOverlap.metrics`.

    Args:
        problems: The problems whose own unguided states are measured (a fixed subset of
            the hard split keeps each evaluation affordable: the cost is
            ``len(problems) * (1 + states_per_problem * k)`` completions).
        details: Optional JSONL file; each evaluation appends ``{"step", "metrics", "states"}``
            with every own state's steps and counts.
        **options: The measurement (:class:`~pope_env.own_states.OwnStateOptions`, checked
            now, defaults as :func:`~pope_env.own_states.own_state_overlap`'s): ``k``
            continuations per own state (4), ``states_per_problem`` (2), ``seed`` (the same
            at every evaluation, so steps are compared on equal draws), ``sampling``,
            ``scorer``, ``render_state``, ``split_steps``, and the S_good rule
            ``threshold`` / ``confidence`` / ``criterion`` (lower 95% Wilson bound of the
            success rate > 0.1; see :mod:`pope_env.reach`).
    """

    def __init__(
        self,
        problems: Sequence[Problem],
        *,
        details: PathLike | None = None,
        **options: Unpack[OwnStateOptions],
    ) -> None:
        from pope_env.errors import ConfigError

        self.problems = list(problems)
        if not self.problems:
            raise ConfigError("OwnStateReachHook needs at least one problem")
        check_own_state_options(options, owner=type(self).__name__)
        self.options: OwnStateOptions = options
        self.details = Path(details) if details is not None else None

    def __call__(self, policy: Any, step: int) -> dict[str, float | int]:
        report = own_state_overlap(self.problems, policy, **self.options)
        metrics = report.metrics()
        if self.details is not None:
            with JsonlAppender(self.details) as sink:
                sink.append({
                    "step": step, "metrics": metrics,
                    "states": [{"problem_id": s.problem_id, "steps": list(s.steps), "own_steps": s.own_steps,
                                "successes": s.successes, "samples": s.samples, "s_good": report.in_s_good(s)}
                               for s in report.states],
                })
        return metrics
