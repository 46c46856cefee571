"""Expert trajectories of SWE instances: the shell commands an expert runs to fix the issue.

A trajectory explores the repository (``ls``, ``grep``, ``sed -n``), reproduces the bug,
edits the code, runs the failing tests, and ends with :data:`SUBMIT`. Each step records the
exit code the command had when the trajectory was recorded and, where the output is
deterministic, an excerpt of it, so :func:`replay` can prove that a replay reaches the same
states. Replaying every step of a local instance's trajectory from ``base_commit`` leaves a
work tree whose diff is the instance's gold patch.

POPE-SWE roll-ins replay the first *i* steps (the privileged state); SRL-SWE compares the
agent's command with the expert's at each step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pope_env.errors import DataFormatError, UnknownNameError
from pope_env.sandbox.base import ExecResult, Sandbox

SUBMIT = "submit"
"""The final action of every trajectory: hand in the work tree's diff; never executed."""


@dataclass(frozen=True)
class TrajectoryStep:
    """One expert action.

    Attributes:
        command: One shell command (may span lines, e.g. a heredoc), or :data:`SUBMIT`.
        expected_exit_code: The command's exit status when recorded (a reproduction of the
            bug is expected to fail, e.g. 1).
        output_excerpt: A substring of stdout+stderr the replay must show again, or None
            where the output is not deterministic.
        thought: The expert's reasoning before the command (for SRL-style prompts).
    """

    command: str
    expected_exit_code: int = 0
    output_excerpt: str | None = None
    thought: str = ""

    @property
    def is_submit(self) -> bool:
        return self.command.strip() == SUBMIT

    def to_dict(self) -> dict[str, Any]:
        return {"thought": self.thought, "command": self.command,
                "expected_exit_code": self.expected_exit_code,
                "output_excerpt": self.output_excerpt}


@dataclass(frozen=True)
class StepOutcome:
    """What replaying one step did, and whether it matched the recording."""

    step: TrajectoryStep
    result: ExecResult | None
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class ReplayResult:
    """A whole replay: each step's outcome and the final diff against the base commit."""

    outcomes: tuple[StepOutcome, ...]
    diff: str
    submitted: bool
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.submitted and not self.problems


def parse_step(raw: Any, where: str) -> TrajectoryStep:
    """Build a step from its JSON object; a malformed one raises naming ``where`` and the field."""
    if not isinstance(raw, Mapping):
        raise DataFormatError(f"{where}: a step must be a JSON object, got {type(raw).__name__}")
    command = raw.get("command")
    if not isinstance(command, str) or not command.strip():
        raise DataFormatError(f"{where}: field 'command' must be a non-empty string")
    code = raw.get("expected_exit_code", 0)
    if not isinstance(code, int) or isinstance(code, bool):
        raise DataFormatError(f"{where}: field 'expected_exit_code' must be an integer")
    excerpt = raw.get("output_excerpt")
    if excerpt is not None and not isinstance(excerpt, str):
        raise DataFormatError(f"{where}: field 'output_excerpt' must be a string or null")
    thought = raw.get("thought", "")
    if not isinstance(thought, str):
        raise DataFormatError(f"{where}: field 'thought' must be a string")
    return TrajectoryStep(command=command, expected_exit_code=code, output_excerpt=excerpt,
                          thought=thought)


def load_trajectories(source: str | os.PathLike[str] = "local") -> dict[str, list[TrajectoryStep]]:
    """All trajectories of a JSONL file (``"local"``: the built-in set's), by instance id.

    Each line is ``{"instance_id": ..., "steps": [{"command": ..., ...}, ...]}``; the last
    step must be :data:`SUBMIT`.
    """
    from pope_env.io import read_jsonl

    path = (Path(__file__).resolve().parent / "local" / "trajectories.jsonl"
            if os.fspath(source) == "local" else Path(source))
    trajectories: dict[str, list[TrajectoryStep]] = {}
    for lineno, record in enumerate(read_jsonl(path), start=1):
        iid = record.get("instance_id")
        if not isinstance(iid, str):
            raise DataFormatError(f"{path} record {lineno}: field 'instance_id' is missing")
        raw_steps = record.get("steps")
        if not isinstance(raw_steps, list) or not raw_steps:
            raise DataFormatError(f"{path} ({iid}): field 'steps' must be a non-empty list")
        steps = [parse_step(s, f"{path} ({iid}) step {i}") for i, s in enumerate(raw_steps)]
        if not steps[-1].is_submit:
            raise DataFormatError(f"{path} ({iid}): the last step must be {SUBMIT!r}")
        trajectories[iid] = steps
    return trajectories


def load_trajectory(instance_id: str, source: str | os.PathLike[str] = "local") -> list[TrajectoryStep]:
    """The expert trajectory of one instance."""
    trajectories = load_trajectories(source)
    if instance_id not in trajectories:
        raise UnknownNameError("trajectory instance id", instance_id, list(trajectories))
    return trajectories[instance_id]


def replay(steps: Sequence[TrajectoryStep], sandbox: Sandbox, *, timeout: float = 120.0,
           until: int | None = None) -> ReplayResult:
    """Run ``steps`` (the first ``until`` of them, if given) in ``sandbox``.

    Every step's exit code and output excerpt are compared with the recording; mismatches
    are listed in the result's ``problems`` (the replay goes on, so one report shows all).
    The final diff is taken when the replay reaches :data:`SUBMIT` or runs out of steps.
    """
    outcomes: list[StepOutcome] = []
    submitted = False
    chosen = steps if until is None else steps[:until]
    for index, step in enumerate(chosen):
        if step.is_submit:
            submitted = True
            outcomes.append(StepOutcome(step, None))
            break
        result = sandbox.exec(step.command, timeout=timeout)
        problems = []
        if result.exit_code != step.expected_exit_code:
            problems.append(f"step {index}: exit code {result.exit_code}, recorded "
                            f"{step.expected_exit_code} ({_first_line(step.command)})")
        output = result.stdout + result.stderr
        if step.output_excerpt is not None and step.output_excerpt not in output:
            problems.append(f"step {index}: output lacks the recorded excerpt "
                            f"{step.output_excerpt!r} ({_first_line(step.command)})")
        outcomes.append(StepOutcome(step, result, tuple(problems)))
    diff = sandbox.diff()
    problems = tuple(p for o in outcomes for p in o.problems)
    return ReplayResult(tuple(outcomes), diff, submitted, problems)


def _first_line(command: str) -> str:
    line = command.strip().splitlines()[0]
    return line if len(line) <= 60 else line[:57] + "..."


def normalize_diff(diff: str) -> str:
    """A diff without its ``index`` lines and trailing space, for comparing patches."""
    lines = [line for line in diff.splitlines() if not line.startswith("index ")]
    return "\n".join(lines).strip() + "\n"
