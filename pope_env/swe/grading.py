"""Grade a patch the SWE-bench way: fresh sandbox, apply, run the tests, parse, all must pass.

:func:`grade_patch` starts a *fresh* sandbox at the task's base commit (nothing the agent
did survives except its patch), applies the patch (``git apply``, then ``patch --fuzz=5``
as SWE-bench's harness falls back to), restores the test files the test patch touches and
applies the test patch, runs the test command, parses its log with ``swebench``'s log
parser and grades with ``swebench.harness.grading``: *resolved* only when every
FAIL_TO_PASS test passes and every PASS_TO_PASS test still passes (``RESOLVED_FULL``).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pope_env.errors import DependencyError, require
from pope_env.sandbox.base import Sandbox, SandboxLimits
from pope_env.swe.task import SWETask

START_MARK = ">>>>> pope-env tests start"
END_MARK = ">>>>> pope-env tests end"
_PATCH_PATH = "/tmp/pope-env-model.patch"
_TEST_PATCH_PATH = "/tmp/pope-env-test.patch"
_APPLY_FAILED = ">>>>> pope-env patch apply failed"
_TEST_PATCH_FAILED = ">>>>> pope-env test patch apply failed"


@dataclass
class GradeResult:
    """The verdict on one patch.

    Attributes:
        instance_id: The task.
        resolved: True only if all FAIL_TO_PASS and PASS_TO_PASS tests pass.
        status: ``RESOLVED_FULL`` / ``RESOLVED_PARTIAL`` / ``RESOLVED_NO`` (SWE-bench), or
            ``EMPTY_PATCH`` / ``PATCH_APPLY_FAILED`` / ``TESTS_TIMEOUT`` / ``ERROR``.
        reason: One line saying why (the patch error, which tests failed, ...).
        tests: SWE-bench's report: ``{"FAIL_TO_PASS": {"success": [...], "failure": [...]}, ...}``.
        test_log: Output of the test command (empty if it did not run).
        duration_s: Wall-clock seconds of the whole grading.
    """

    instance_id: str
    resolved: bool
    status: str
    reason: str
    tests: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    test_log: str = ""
    duration_s: float = 0.0

    @property
    def reward(self) -> float:
        """1.0 if resolved, else 0.0."""
        return 1.0 if self.resolved else 0.0

    def to_dict(self, *, with_log: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not with_log:
            d.pop("test_log")
        return d


def _swebench_grading():
    require("swebench", "swe")
    from swebench.harness import grading
    from swebench.harness.constants import FAIL_TO_PASS, PASS_TO_PASS, ResolvedStatus
    from swebench.harness.log_parsers import PARSER_REGISTRY

    return grading, PARSER_REGISTRY, FAIL_TO_PASS, PASS_TO_PASS, ResolvedStatus


def parse_test_log(task: SWETask, log: str) -> dict[str, str]:
    """Test id -> status (``PASSED``, ``FAILED``, ...) from a test log, by the task's parser."""
    _, parsers, *_ = _swebench_grading()
    if task.log_parser not in parsers:
        raise DependencyError(f"swebench has no log parser {task.log_parser!r}; known: {', '.join(sorted(parsers))}")
    if START_MARK in log:
        log = log.split(START_MARK, 1)[1].split(END_MARK, 1)[0]
    return parsers[task.log_parser](log, None)


def grade_log(task: SWETask, log: str) -> tuple[str, dict[str, dict[str, list[str]]]]:
    """SWE-bench's resolution status and per-test report for a test log."""
    grading, _, f2p, p2p, _ = _swebench_grading()
    status_map = parse_test_log(task, log)
    report = grading.get_eval_tests_report(status_map, {f2p: list(task.fail_to_pass), p2p: list(task.pass_to_pass)})
    report = {k: report[k] for k in (f2p, p2p)}
    return grading.get_resolution_status(report), report


def grade_patch(
    task: SWETask,
    patch: str,
    *,
    sandbox_factory: Callable[[SWETask], Sandbox] | None = None,
    limits: SandboxLimits | None = None,
    backend: str = "auto",
    timeout_s: float = 900.0,
) -> GradeResult:
    """Run ``task``'s tests on ``patch`` in a fresh sandbox and grade them (SWE-bench's rule).

    Args:
        task: The task.
        patch: The model's patch (unified diff against ``task.base_commit``).
        sandbox_factory: Starts the fresh sandbox (default: ``task.start_sandbox``).
        limits: Limits of the grading sandbox (default: :class:`SandboxLimits` defaults).
        backend: Sandbox backend when no factory is given.
        timeout_s: Time limit of the test command (seconds).
    """
    t0 = time.perf_counter()
    _, _, f2p, p2p, resolved_status = _swebench_grading()

    def result(resolved: bool, status: str, reason: str, tests=None, log: str = "") -> GradeResult:
        return GradeResult(task.instance_id, resolved, status, reason, tests or {}, log, time.perf_counter() - t0)

    if not patch.strip():
        return result(False, "EMPTY_PATCH", "the patch is empty: nothing was changed")
    factory = sandbox_factory or (lambda t: t.start_sandbox(backend=backend, limits=limits))
    q_model, q_test = shlex.quote(_PATCH_PATH), shlex.quote(_TEST_PATCH_PATH)
    files = " ".join(shlex.quote(f) for f in task.test_files())
    # one script, like SWE-bench's eval.sh: apply the patch (git apply, else patch --fuzz),
    # restore the test files the agent may have edited, apply the test patch, run the tests
    script = "\n".join([
        f"git apply --verbose {q_model} >/tmp/apply.log 2>&1 || {{ command -v patch >/dev/null && "
        f"patch --batch --fuzz=5 -p1 -i {q_model} >>/tmp/apply.log 2>&1; }} || "
        f"{{ echo '{_APPLY_FAILED}'; cat /tmp/apply.log; exit 0; }}",
        f"git checkout -q {{base}} -- {files} 2>/dev/null" if files else "true",
        (f"git apply --verbose {q_test} >/tmp/test-apply.log 2>&1 || "
         f"{{ echo '{_TEST_PATCH_FAILED}'; cat /tmp/test-apply.log; exit 0; }}") if task.test_patch.strip() else "true",
        f"echo '{START_MARK}'",
        task.default_test_cmd(),
        f"echo '{END_MARK}'",
    ])
    with factory(task) as sandbox:
        sandbox.write_file(_PATCH_PATH, patch if patch.endswith("\n") else patch + "\n")
        if task.test_patch.strip():
            sandbox.write_file(_TEST_PATCH_PATH, task.test_patch)
        run = sandbox.exec(script.replace("{base}", shlex.quote(sandbox.base_commit)), timeout=timeout_s,
                           max_output_bytes=None)
    log = run.stdout + run.stderr
    if log.startswith(_APPLY_FAILED):
        return result(False, "PATCH_APPLY_FAILED", f"the patch does not apply: {log[len(_APPLY_FAILED):].strip()[-2000:]}")
    if log.startswith(_TEST_PATCH_FAILED):
        return result(False, "ERROR", f"the test patch does not apply on top of the patch: {log[-1500:]}")
    if run.timed_out:
        return result(False, "TESTS_TIMEOUT", f"the tests ran past {timeout_s:g} s and were killed", log=log)
    status, report = grade_log(task, log)
    resolved = status == resolved_status.FULL.value
    if resolved:
        reason = f"all {len(task.fail_to_pass)} FAIL_TO_PASS and {len(task.pass_to_pass)} PASS_TO_PASS tests pass"
    else:
        failed = report[f2p]["failure"] + report[p2p]["failure"]
        shown = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
        reason = f"{len(failed)} required test(s) did not pass: {shown}"
    return result(resolved, status, reason, report, log)
