"""A tiny self-made repository task for the sandbox, env and evaluation tests.

Real git, real pytest, a real bug: ``calc.add`` subtracts. The test patch adds a failing
test; the gold patch fixes the bug. The image is built once per engine and reused by
content hash (the repository is made deterministically, so its commit ids never change).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pope_env.swe.task import SWETask

_GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "pope-env", "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "pope-env", "GIT_COMMITTER_EMAIL": "t@example.com",
            "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z"}

CALC = '''"""Tiny calculator."""


def add(a, b):
    """Return a + b."""
    return a - b


def mul(a, b):
    """Return a * b."""
    return a * b
'''

TESTS = '''from calc import add, mul


def test_add_zero():
    assert add(0, 0) == 0


def test_mul():
    assert mul(3, 4) == 12
'''

TEST_PATCH = '''diff --git a/tests/test_calc.py b/tests/test_calc.py
--- a/tests/test_calc.py
+++ b/tests/test_calc.py
@@ -7,3 +7,7 @@ def test_add_zero():
 
 def test_mul():
     assert mul(3, 4) == 12
+
+
+def test_add_positive():
+    assert add(2, 3) == 5
'''

GOLD_PATCH = '''diff --git a/calc/__init__.py b/calc/__init__.py
--- a/calc/__init__.py
+++ b/calc/__init__.py
@@ -3,7 +3,7 @@
 
 def add(a, b):
     """Return a + b."""
-    return a - b
+    return a + b
 
 
 def mul(a, b):
'''

EXPERT = [
    "grep -n 'def add' -A 3 calc/__init__.py",
    "python3 -c 'from calc import add; print(add(2, 3))'",
    "sed -i 's/return a - b/return a + b/' calc/__init__.py",
    "python3 -c 'from calc import add; print(add(2, 3))'",
    "submit",
]


def make_repo(dest: Path) -> Path:
    """Create the tiny repository at ``dest`` (deterministic commit ids)."""
    (dest / "calc").mkdir(parents=True)
    (dest / "tests").mkdir()
    (dest / "calc" / "__init__.py").write_text(CALC)
    (dest / "tests" / "test_calc.py").write_text(TESTS)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "calc with a bug"]):
        subprocess.run(["git", "-C", str(dest), *args], check=True, env=_GIT_ENV, capture_output=True)
    return dest


def task_record(image: str | None = None, repo_dir: Path | None = None, **changes) -> dict:
    """The tiny task as a SWE-bench-format record."""
    record = {
        "instance_id": "tiny__calc-1",
        "repo": "tiny/calc",
        "base_commit": "main",
        "problem_statement": "calc.add(2, 3) returns -1 instead of 5: add subtracts its arguments.",
        "patch": GOLD_PATCH,
        "test_patch": TEST_PATCH,
        "FAIL_TO_PASS": ["tests/test_calc.py::test_add_positive"],
        "PASS_TO_PASS": ["tests/test_calc.py::test_add_zero", "tests/test_calc.py::test_mul"],
        "version": "0.1",
        "environment_setup_commit": "main",
        "image": image,
        "repo_dir": str(repo_dir) if repo_dir else None,
    }
    record.update(changes)
    return record


def docker_or_skip():
    """A docker-py client, or skip naming why (only when no engine answers at all)."""
    from pope_env.errors import PopeEnvError
    from pope_env.swe.images import docker_client

    try:
        return docker_client()
    except PopeEnvError as exc:
        pytest.skip(f"no Docker engine answers: {exc}")


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory) -> Path:
    return make_repo(tmp_path_factory.mktemp("tiny") / "repo")


@pytest.fixture(scope="session")
def tiny_image(tiny_repo) -> str:
    """The tiny repository's image on top of the base image (built once, then reused)."""
    docker_or_skip()
    from pope_env.swe.images import RepoImageSpec, ensure_repo_image

    return ensure_repo_image(RepoImageSpec("tiny-calc", tiny_repo))


@pytest.fixture(scope="session")
def tiny_task(tiny_image, tiny_repo) -> SWETask:
    return SWETask.from_record(task_record(image=tiny_image, repo_dir=tiny_repo))


class ScriptedPolicy:
    """A policy that replies with fixed texts in turn (a stand-in for an LLM's replies, so the
    agent loop's parsing and recovery can be tested exactly); records the prompts it saw."""

    name = "scripted"

    def __init__(self, replies):
        self.replies = list(replies)
        self.prompts = []

    def generate(self, prompts, *, n=1, sampling=None):
        from pope_env.agents.policy import Generation

        self.prompts.extend(prompts)
        return [[Generation(text=self.replies.pop(0) if self.replies else "```bash\nsubmit\n```")]
                for _ in prompts]


FIXING_REPLIES = [
    "Let me look at add.\n```bash\ngrep -n 'def add' -A 3 calc/__init__.py\n```",
    "I will fix it now, and run tests.\n```bash\nsed -i 's/a - b/a + b/' calc/__init__.py\n```\n```bash\nls\n```",
    "Sorry, one command only.\n```bash\nsed -i 's/a - b/a + b/' calc/__init__.py\n```",
    "Done.\n```bash\nsubmit\n```",
]


def scripted_fixer():
    """``MODULE:FACTORY`` target for swe-eval: a scripted policy that fixes the tiny bug."""
    return ScriptedPolicy(FIXING_REPLIES)
