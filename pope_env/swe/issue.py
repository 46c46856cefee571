"""The fields every SWE-bench record starts with: an issue filed against a repository at a commit.

:class:`~pope_env.swe.instances.SWEInstance` (a record as SWE-bench stores it) and
:class:`~pope_env.swe.task.SWETask` (what sandboxes, envs and grading use) both start with
them, in this order, so both keep SWE-bench's positional field order.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RepositoryIssue:
    """An issue in a repository at a commit.

    Attributes:
        instance_id: SWE-bench id, e.g. ``"toolz__toolz-0001"``.
        repo: ``owner/name``.
        base_commit: The commit the issue was filed against; the agent starts from it.
        problem_statement: The issue text the agent sees.
    """

    instance_id: str
    repo: str
    base_commit: str
    problem_statement: str
