"""Prove SWE instances: the bug is real, the tests catch it, the gold patch fixes it.

For each instance, each check in a fresh sandbox (Docker or bubblewrap) at ``base_commit``:

1. *bug state*: apply ``test_patch`` and run the tests: every FAIL_TO_PASS test must fail
   (SWE-bench's rule: failed, errored, skipped or absent) and every PASS_TO_PASS test pass;
2. *gold state*: grade the gold ``patch`` exactly as an agent's patch is graded
   (:func:`pope_env.swe.grading.grade_patch`): every FAIL_TO_PASS and PASS_TO_PASS test
   must pass (``RESOLVED_FULL``);
3. optionally, *expert trajectory*: replay the expert's commands from the base state; the
   resulting diff must equal the gold patch (modulo ``index`` lines) and resolve the
   instance when graded.

Verdicts come from ``swebench``'s own log parser and grading functions. Results are
appended to a JSONL file as each instance finishes, so an interrupted run resumes.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pope_env.errors import DataFormatError, require
from pope_env.sandbox.base import Sandbox
from pope_env.swe.instances import SWEInstance
from pope_env.swe.task import SWETask

SandboxFactory = Callable[[SWETask], Sandbox]
"""Starts a fresh sandbox at a task's ``base_commit`` (the caller closes it)."""

_TEST_PATCH_PATH = "/tmp/pope-env-validate-test.patch"
_TEST_PATCH_FAILED = ">>>>> pope-env test patch apply failed"


@dataclass
class ValidationResult:
    """The verdict on one instance (``ok`` when every check held).

    Attributes:
        instance_id: The instance.
        ok: True if FAIL_TO_PASS fail at the bug state, the gold patch resolves the
            instance, and (when checked) the expert trajectory reproduces the gold patch.
        problems: Human-readable reasons it is not ok (empty when ok).
        before: Status of each FAIL_TO_PASS test at the bug state with the test patch.
        gold_status: SWE-bench's resolution status of the gold patch (``RESOLVED_FULL``).
        trajectory_status: Resolution status of the expert trajectory's diff, or ``""``
            when trajectories were not checked.
        duration_s: Wall-clock seconds for all checks.
    """

    instance_id: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    before: dict[str, str] = field(default_factory=dict)
    gold_status: str = ""
    trajectory_status: str = ""
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bug_state_statuses(task: SWETask, sandbox: Sandbox, *, timeout: float) -> tuple[dict[str, str], str]:
    """Apply the test patch in ``sandbox`` (at the base commit), run the tests: (status map, log)."""
    from pope_env.swe.grading import END_MARK, START_MARK, parse_test_log

    lines = []
    if task.test_patch.strip():
        sandbox.write_file(_TEST_PATCH_PATH, task.test_patch)
        lines.append(f"git apply --verbose {shlex.quote(_TEST_PATCH_PATH)} >/tmp/validate-apply.log 2>&1 "
                     f"|| {{ echo '{_TEST_PATCH_FAILED}'; cat /tmp/validate-apply.log; exit 0; }}")
    lines += [f"echo '{START_MARK}'", task.default_test_cmd(), f"echo '{END_MARK}'"]
    run = sandbox.exec("\n".join(lines), timeout=timeout)
    log = run.stdout + run.stderr
    if log.startswith(_TEST_PATCH_FAILED):
        raise DataFormatError(f"instance {task.instance_id!r}: field 'test_patch' does not apply at "
                              f"base_commit: {log[len(_TEST_PATCH_FAILED):].strip()[:500]}")
    return parse_test_log(task, log), log


def validate_instance(instance: SWEInstance, task: SWETask, sandbox_factory: SandboxFactory, *,
                      timeout: float = 600.0, check_trajectory: bool = False) -> ValidationResult:
    """Run the checks of the module docstring on one instance."""
    from pope_env.swe.grading import grade_patch

    grading = require("swebench.harness.grading", "swe")
    start = time.monotonic()
    problems: list[str] = []

    with sandbox_factory(task) as sandbox:
        try:
            status, log = bug_state_statuses(task, sandbox, timeout=timeout)
        except DataFormatError as exc:
            status, log = {}, ""
            problems.append(str(exc))
    before = {t: status.get(t, "MISSING") for t in task.fail_to_pass}
    passing_early = [t for t in task.fail_to_pass if not grading.test_failed(t, status)]
    if log and passing_early:
        problems.append(f"FAIL_TO_PASS pass at the bug state: {passing_early}")
    # The bug must break only FAIL_TO_PASS: PASS_TO_PASS pass in both states. This also makes
    # the check above meaningful (a test run that crashed would "fail" every test).
    broken_early = [t for t in task.pass_to_pass if not grading.test_maintained(t, status)]
    if log and broken_early:
        shown = ", ".join(broken_early[:5]) + (f" and {len(broken_early) - 5} more" if len(broken_early) > 5 else "")
        problems.append(f"{len(broken_early)} PASS_TO_PASS test(s) do not pass at the bug state: {shown}"
                        + ("" if status else f" (no test results; log tail: {log.strip()[-300:]!r})"))

    gold = grade_patch(task, instance.patch, sandbox_factory=sandbox_factory, timeout_s=timeout)
    if not gold.resolved:
        problems.append(f"the gold patch does not resolve it ({gold.status}): {gold.reason}")

    trajectory_status = ""
    if check_trajectory:
        trajectory_status = _check_trajectory(instance, task, sandbox_factory, timeout, problems)
    return ValidationResult(instance.instance_id, not problems, problems, before, gold.status,
                            trajectory_status, round(time.monotonic() - start, 3))


def _check_trajectory(instance: SWEInstance, task: SWETask, sandbox_factory: SandboxFactory,
                      timeout: float, problems: list[str]) -> str:
    from pope_env.swe.grading import grade_patch
    from pope_env.swe.trajectories import load_trajectories, normalize_diff, replay

    trajectories = load_trajectories("local")
    if instance.instance_id not in trajectories:
        problems.append("no expert trajectory")
        return "MISSING"
    with sandbox_factory(task) as sandbox:
        result = replay(trajectories[instance.instance_id], sandbox, timeout=timeout)
    problems.extend(f"trajectory {p}" for p in result.problems)
    if normalize_diff(result.diff) != normalize_diff(instance.patch):
        problems.append("the trajectory's diff differs from the gold patch")
    graded = grade_patch(task, result.diff, sandbox_factory=sandbox_factory, timeout_s=timeout)
    if not graded.resolved:
        problems.append(f"the trajectory's diff does not resolve it ({graded.status}): {graded.reason}")
    return graded.status


def validate_instances(instances: Sequence[SWEInstance], *, backend: str = "auto",
                       out: str | os.PathLike[str] | None = None, timeout: float = 600.0,
                       check_trajectories: bool = False, progress: bool = True,
                       sandbox_factory: SandboxFactory | None = None) -> list[ValidationResult]:
    """Validate many instances with a progress bar.

    Args:
        instances: The instances (local ones get their repositories and, for Docker, their
            images built or reused first).
        backend: Sandbox backend: ``"docker"``, ``"bwrap"`` or ``"auto"``.
        out: JSONL file of results, appended as each instance finishes; instances already
            in it are not run again (resume after an interruption), their stored verdict
            is returned.
        timeout: Seconds allowed for one test run.
        check_trajectories: Also replay and grade each expert trajectory.
        progress: Show tqdm progress on stderr.
        sandbox_factory: Overrides how sandboxes start (default: ``task.start_sandbox``).
    """
    from tqdm import tqdm

    from pope_env.io import JsonlAppender, read_jsonl
    from pope_env.swe.runtime import tasks_from_instances

    seen: set[str] = set()
    for inst in instances:
        if inst.instance_id in seen:
            raise DataFormatError(f"instance_id {inst.instance_id!r} occurs twice; validate each variant "
                                  "in its own call")
        seen.add(inst.instance_id)
    done: dict[str, ValidationResult] = {}
    if out is not None and Path(out).exists():
        for rec in read_jsonl(out, strict=False):
            try:
                done[rec["instance_id"]] = ValidationResult(**rec)
            except (TypeError, KeyError) as exc:
                raise DataFormatError(f"{out}: not a validation result file ({exc}); pass another --out") from None
    todo = [inst for inst in instances if inst.instance_id not in done]
    say = (lambda msg: tqdm.write(msg)) if progress else (lambda msg: None)
    tasks = {t.instance_id: t for t in tasks_from_instances(todo, backend=backend, progress=say)} if todo else {}
    factory = sandbox_factory or (lambda task: task.start_sandbox(backend=backend))
    results: list[ValidationResult] = []
    appender = JsonlAppender(out) if out is not None else None
    try:
        bar = tqdm(instances, desc="validate", unit="inst", disable=not progress)
        for instance in bar:
            bar.set_postfix_str(instance.instance_id, refresh=False)
            if instance.instance_id in done:
                results.append(done[instance.instance_id])
                continue
            result = validate_instance(instance, tasks[instance.instance_id], factory,
                                       timeout=timeout, check_trajectory=check_trajectories)
            results.append(result)
            if appender is not None:
                appender.append(result.to_dict())
    finally:
        if appender is not None:
            appender.close()
    return results
