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
from typing import Any

from pope_env.io import JsonlAppender, PathLike
from pope_env.own_states import Scorer, StateRenderer, StepSplitter, own_state_overlap
from pope_env.reach import DEFAULT_CONFIDENCE, DEFAULT_CRITERION, DEFAULT_THRESHOLD
from pope_env.problem import Problem


class OwnStateReachHook:
    """``hook(policy, step) -> metrics``: see :meth:`pope_env.own_states.OwnStateOverlap.metrics`.

    Args:
        problems: The problems whose own unguided states are measured (a fixed subset of
            the hard split keeps each evaluation affordable: the cost is
            ``len(problems) * (1 + states_per_problem * k)`` completions).
        k: Continuations per own state.
        states_per_problem: Own states kept per problem.
        seed: Root seed; the same at every evaluation, so steps are compared on equal draws.
        sampling: Sampling settings (default: the policy contract's).
        scorer, render_state, split_steps: As :func:`~pope_env.own_states.own_state_overlap`.
        threshold, confidence, criterion: The S_good rule (default: lower 95% Wilson bound of
            the success rate > 0.1; see :mod:`pope_env.reach`).
        details: Optional JSONL file; each evaluation appends ``{"step", "metrics", "states"}``
            with every own state's steps and counts.
    """

    def __init__(
        self,
        problems: Sequence[Problem],
        *,
        k: int = 4,
        states_per_problem: int = 2,
        seed: int = 0,
        sampling: Any = None,
        scorer: Scorer | None = None,
        render_state: StateRenderer | None = None,
        split_steps: StepSplitter | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        confidence: float = DEFAULT_CONFIDENCE,
        criterion: str = DEFAULT_CRITERION,
        details: PathLike | None = None,
    ) -> None:
        from pope_env.errors import ConfigError

        self.problems = list(problems)
        if not self.problems:
            raise ConfigError("OwnStateReachHook needs at least one problem")
        self.options: dict[str, Any] = dict(
            k=k, states_per_problem=states_per_problem, seed=seed, sampling=sampling, scorer=scorer,
            render_state=render_state, split_steps=split_steps, threshold=threshold,
            confidence=confidence, criterion=criterion,
        )
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
