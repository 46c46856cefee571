"""SWETask: the fields of a SWE-bench-format instance that sandboxes, envs and grading use.

:meth:`SWETask.from_record` accepts any record in SWE-bench's format (a dict, a
``SWEInstance``, a ``datasets`` row) and checks it: a missing or mistyped field raises
:class:`~pope_env.errors.DataFormatError` naming the instance and the field. SWE-bench
stores ``FAIL_TO_PASS``/``PASS_TO_PASS`` as JSON strings; both strings and lists are taken.

Beyond the official fields, a task says where its repository lives: ``image`` (a Docker
tag with the repository at ``workdir``) for the Docker sandbox, ``repo_dir`` (a host git
repository) for bubblewrap. ``test_cmd`` overrides the default test command
(``python3 -m pytest -rA`` on the test files the test patch touches and the tests named).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pope_env.errors import DataFormatError
from pope_env.swe.issue import RepositoryIssue

REQUIRED_FIELDS = ("instance_id", "repo", "base_commit", "problem_statement", "test_patch",
                   "FAIL_TO_PASS", "PASS_TO_PASS")


def expert_commands(trajectory: Any) -> list[str]:
    """The shell commands of an expert trajectory (steps as objects with ``command``, dicts or str)."""
    out = []
    for step in trajectory:
        if isinstance(step, str):
            out.append(step)
        elif isinstance(step, Mapping):
            out.append(str(step.get("command", step.get("action", ""))))
        else:
            out.append(str(step.command))
    return out


def _get(record: Any, name: str, default: Any = None) -> Any:
    if isinstance(record, Mapping):
        return record.get(name, default)
    return getattr(record, name, default)


def _test_list(value: Any, iid: str, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise DataFormatError(f"instance {iid!r}: field {name} is a string but not a JSON list ({exc})") from exc
    if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) and t for t in value):
        raise DataFormatError(f"instance {iid!r}: field {name} must be a list of test ids (non-empty strings), "
                              f"got {type(value).__name__}")
    return tuple(value)


@dataclass(frozen=True)
class SWETask(RepositoryIssue):
    """One task: an issue in a repository at a commit, and the tests that decide it.

    Attributes:
        instance_id, repo, base_commit, problem_statement: The issue
            (:class:`~pope_env.swe.issue.RepositoryIssue`).
        test_patch: Patch adding/updating the tests (applied only at grading).
        fail_to_pass: Tests that must go from failing to passing.
        pass_to_pass: Tests that must keep passing.
        patch: The gold patch (privileged; never shown to the agent).
        image: Docker image tag with the repository at ``workdir``.
        repo_dir: Host git repository (bubblewrap sandbox).
        workdir: The repository's path in the sandbox.
        test_cmd: Shell command running the tests (``None``: derived, see module doc).
        log_parser: Name of a ``swebench`` log parser (``PARSER_REGISTRY``).
    """

    test_patch: str
    fail_to_pass: tuple[str, ...]
    pass_to_pass: tuple[str, ...]
    patch: str = ""
    image: str | None = None
    repo_dir: Path | None = None
    workdir: str = "/testbed"
    test_cmd: str | None = None
    log_parser: str = "parse_log_pytest"

    @classmethod
    def from_record(cls, record: Any, **overrides: Any) -> "SWETask":
        """Check ``record`` and build a task; ``overrides`` replace fields (e.g. ``image=``)."""
        if isinstance(record, SWETask):
            return record if not overrides else cls(**{**record.__dict__, **overrides})
        iid = _get(record, "instance_id")
        if not isinstance(iid, str) or not iid:
            raise DataFormatError(f"instance record has no valid field instance_id (got {iid!r}); "
                                  "every SWE-bench record needs a non-empty string id")
        for name in REQUIRED_FIELDS:
            value = _get(record, name)
            if value is None:
                raise DataFormatError(f"instance {iid!r}: missing field {name}; SWE-bench records need "
                                      f"{', '.join(REQUIRED_FIELDS)}")
            if name not in ("FAIL_TO_PASS", "PASS_TO_PASS") and not isinstance(value, str):
                raise DataFormatError(f"instance {iid!r}: field {name} must be a string, got {type(value).__name__}")
        f2p = _test_list(_get(record, "FAIL_TO_PASS"), iid, "FAIL_TO_PASS")
        if not f2p:
            raise DataFormatError(f"instance {iid!r}: field FAIL_TO_PASS is empty; a task needs at least one "
                                  "test that the fix makes pass")
        if not re.fullmatch(r"[0-9a-fA-F]{4,40}|[\w./-]+", _get(record, "base_commit")):
            raise DataFormatError(f"instance {iid!r}: field base_commit {_get(record, 'base_commit')!r} is not a "
                                  "commit id or ref")
        repo_dir = overrides.pop("repo_dir", _get(record, "repo_dir"))
        fields = dict(
            instance_id=iid,
            repo=_get(record, "repo"),
            base_commit=_get(record, "base_commit"),
            problem_statement=_get(record, "problem_statement"),
            test_patch=_get(record, "test_patch"),
            fail_to_pass=f2p,
            pass_to_pass=_test_list(_get(record, "PASS_TO_PASS"), iid, "PASS_TO_PASS"),
            patch=_get(record, "patch") or "",
            image=_get(record, "image"),
            repo_dir=Path(repo_dir) if repo_dir else None,
            workdir=_get(record, "workdir") or "/testbed",
            test_cmd=_get(record, "test_cmd"),
            log_parser=_get(record, "log_parser") or "parse_log_pytest",
        )
        fields.update(overrides)
        return cls(**fields)

    def test_files(self) -> list[str]:
        """Test files the test patch touches and the named tests live in, in first-seen order."""
        files = re.findall(r"^diff --git a/\S+ b/(\S+)", self.test_patch, flags=re.M)
        files += [t.split("::", 1)[0] for t in (*self.fail_to_pass, *self.pass_to_pass) if "::" in t]
        return list(dict.fromkeys(files))

    def default_test_cmd(self) -> str:
        """The shell command that runs this task's tests with per-test result lines."""
        if self.test_cmd:
            return self.test_cmd
        import shlex

        files = " ".join(shlex.quote(f) for f in self.test_files())
        return f"python3 -m pytest -rA --tb=short -p no:cacheprovider {files}".strip()

    def record(self) -> dict[str, Any]:
        """The task as a SWE-bench-format dict (lists as lists)."""
        return {"instance_id": self.instance_id, "repo": self.repo, "base_commit": self.base_commit,
                "problem_statement": self.problem_statement, "patch": self.patch, "test_patch": self.test_patch,
                "FAIL_TO_PASS": list(self.fail_to_pass), "PASS_TO_PASS": list(self.pass_to_pass),
                "image": self.image, "repo_dir": str(self.repo_dir) if self.repo_dir else None,
                "workdir": self.workdir, "test_cmd": self.test_cmd, "log_parser": self.log_parser}

    def start_sandbox(self, *, backend: str = "auto", limits=None):
        """A fresh sandbox holding this task's repository at ``base_commit``.

        Bubblewrap sandboxes get the debootstrapped base tree as their root when it is built
        (:func:`pope_env.swe.images.built_base_rootfs`), else the host's ``/``.
        """
        from pope_env.sandbox import SandboxLimits, make_sandbox
        from pope_env.swe.images import built_base_rootfs

        return make_sandbox(image=self.image, repo_dir=self.repo_dir, base_commit=self.base_commit,
                            limits=limits or SandboxLimits(), backend=backend, workdir=self.workdir,
                            rootfs=built_base_rootfs())
