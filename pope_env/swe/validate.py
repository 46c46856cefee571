"""Prove SWE instances: the bug is real, the tests catch it, the gold patch fixes it.

For each instance, in a fresh sandbox at ``base_commit``:

1. apply ``test_patch`` and run the tests: every FAIL_TO_PASS test must fail (SWE-bench's
   rule: failed, errored, skipped or absent);
2. apply the gold ``patch`` and run them again: every FAIL_TO_PASS test must pass and every
   PASS_TO_PASS test must pass (or be skipped, as SWE-bench allows).

Verdicts come from ``swebench``'s own log parser and grading functions. Results are
appended to a JSONL file as each instance finishes, so an interrupted run resumes.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pope_env.errors import DataFormatError, require
from pope_env.sandbox.base import Sandbox
from pope_env.swe.instances import SWEInstance

SandboxFactory = Callable[[SWEInstance], Sandbox]
"""Makes a started sandbox at an instance's ``base_commit`` (the caller closes it)."""

PATCH_FILE = ".pope-env-apply.patch"


@dataclass
class ValidationResult:
    """The verdict on one instance (``ok`` when every check held).

    Attributes:
        instance_id: The instance.
        ok: True if FAIL_TO_PASS fail before and pass after the gold patch and
            PASS_TO_PASS pass after it.
        problems: Human-readable reasons it is not ok (empty when ok).
        before: Status of each graded test at the base state with the test patch.
        after: Status of each graded test with the gold patch too.
        duration_s: Wall-clock seconds for the whole check.
    """

    instance_id: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    before: dict[str, str] = field(default_factory=dict)
    after: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def process_sandbox_factory(instance: SWEInstance) -> Sandbox:
    """A :class:`~pope_env.sandbox.process.ProcessSandbox` on the instance's built repository."""
    from pope_env.sandbox.process import ProcessSandbox
    from pope_env.swe.build import cached_repository

    return ProcessSandbox(cached_repository(instance), base_commit=instance.base_commit)


def apply_patch(sandbox: Sandbox, patch: str, what: str) -> str | None:
    """Apply a unified diff in the sandbox's work tree; None if it applied, else the reason."""
    if not patch.strip():
        return None
    sandbox.write_file(PATCH_FILE, patch)
    result = sandbox.exec(f"git apply --whitespace=nowarn {PATCH_FILE}; s=$?; rm -f {PATCH_FILE}; exit $s",
                          timeout=60)
    if result.exit_code != 0:
        return f"{what} does not apply: {(result.stderr or result.stdout).strip()[:500]}"
    return None


def run_tests(instance: SWEInstance, sandbox: Sandbox, *, timeout: float = 600.0) -> tuple[dict[str, str], str]:
    """Run the instance's test command in ``sandbox``; (status by test id, raw log)."""
    result = sandbox.exec(instance.test_command(), timeout=timeout)
    log = result.stdout + "\n" + result.stderr
    if result.timed_out:
        log += f"\n[pope-env] tests timed out after {timeout:g} s\n"
    return instance.parse_test_log(log), log


def grade(instance: SWEInstance, status: Mapping[str, str]) -> dict[str, list[str]]:
    """SWE-bench's verdict per list: which FAIL_TO_PASS / PASS_TO_PASS tests pass or fail."""
    grading = require("swebench.harness.grading", "swe")
    sm = dict(status)
    return {
        "f2p_passed": [t for t in instance.FAIL_TO_PASS if grading.test_passed(t, sm)],
        "f2p_failed": [t for t in instance.FAIL_TO_PASS if grading.test_failed(t, sm)],
        "p2p_kept": [t for t in instance.PASS_TO_PASS if grading.test_maintained(t, sm)],
        "p2p_broken": [t for t in instance.PASS_TO_PASS if not grading.test_maintained(t, sm)],
    }


def validate_instance(instance: SWEInstance, sandbox_factory: SandboxFactory = process_sandbox_factory,
                      *, timeout: float = 600.0) -> ValidationResult:
    """Check one instance in two fresh sandboxes (bug state, then fixed state)."""
    start = time.monotonic()
    graded = set(instance.FAIL_TO_PASS) | set(instance.PASS_TO_PASS)
    problems: list[str] = []

    def states(with_gold: bool) -> dict[str, str] | None:
        sandbox = sandbox_factory(instance)
        try:
            if instance.local is not None and instance.local.install_command:
                setup = sandbox.exec(instance.local.install_command, timeout=timeout)
                if setup.exit_code != 0:
                    problems.append(f"install command failed: {setup.stderr.strip()[-300:]}")
                    return None
            for patch, what in ((instance.test_patch, "test_patch"),
                                (instance.patch if with_gold else "", "the gold patch")):
                reason = apply_patch(sandbox, patch, what)
                if reason:
                    problems.append(reason)
                    return None
            status, _ = run_tests(instance, sandbox, timeout=timeout)
            return status
        finally:
            sandbox.close()

    before = states(with_gold=False)
    after = states(with_gold=True) if before is not None else None
    if before is not None:
        verdict = grade(instance, before)
        if verdict["f2p_passed"]:
            problems.append(f"FAIL_TO_PASS pass before the fix: {verdict['f2p_passed']}")
    if after is not None:
        verdict = grade(instance, after)
        if verdict["f2p_failed"]:
            problems.append(f"FAIL_TO_PASS still fail after the gold patch: {verdict['f2p_failed']}")
        if verdict["p2p_broken"]:
            problems.append(f"PASS_TO_PASS fail after the gold patch: {verdict['p2p_broken']}")
    return ValidationResult(
        instance_id=instance.instance_id,
        ok=not problems,
        problems=problems,
        before={t: (before or {}).get(t, "MISSING") for t in sorted(graded)},
        after={t: (after or {}).get(t, "MISSING") for t in sorted(graded)},
        duration_s=round(time.monotonic() - start, 3),
    )


def validate_instances(instances: Iterable[SWEInstance],
                       sandbox_factory: SandboxFactory = process_sandbox_factory, *,
                       out: str | os.PathLike[str] | None = None, timeout: float = 600.0,
                       progress: bool = True) -> list[ValidationResult]:
    """Validate many instances with a progress bar.

    Args:
        instances: The instances.
        sandbox_factory: Makes a sandbox at an instance's base commit.
        out: JSONL file of results, appended as each instance finishes; instances already
            in it are not run again (resume after an interruption), their stored verdict
            is returned.
        timeout: Seconds allowed for one test run.
        progress: Show a tqdm progress bar on stderr.
    """
    from tqdm import tqdm

    from pope_env.io import JsonlAppender, read_jsonl

    instances = list(instances)
    done: dict[str, ValidationResult] = {}
    if out is not None and Path(out).exists():
        for rec in read_jsonl(out, strict=False):
            try:
                done[rec["instance_id"]] = ValidationResult(**rec)
            except TypeError as exc:
                raise DataFormatError(f"{out}: not a validation result file ({exc}); "
                                      "pass another --out") from None
    results: list[ValidationResult] = []
    appender = JsonlAppender(out) if out is not None else None
    try:
        bar = tqdm(instances, desc="validate", unit="inst", disable=not progress)
        for instance in bar:
            bar.set_postfix_str(instance.instance_id, refresh=False)
            if instance.instance_id in done:
                results.append(done[instance.instance_id])
                continue
            result = validate_instance(instance, sandbox_factory, timeout=timeout)
            results.append(result)
            if appender is not None:
                appender.append(result.to_dict())
    finally:
        if appender is not None:
            appender.close()
    return results


def shell_quote_tests(tests: Iterable[str]) -> str:
    """Test ids quoted for a shell command line."""
    return " ".join(shlex.quote(t) for t in tests)
