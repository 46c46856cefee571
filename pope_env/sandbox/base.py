"""The sandbox protocol: an isolated work tree with a repository, driven by shell commands.

Kept as small as mini-swe-agent's Environment so that any backend (Docker, bubblewrap, a
remote service) can stand in. Backends live in sibling modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class ExecResult:
    """What one command did.

    Attributes:
        exit_code: The command's exit status (124 on timeout, 137 when killed for memory).
        stdout: Standard output (UTF-8, invalid bytes replaced), truncated to the sandbox's
            output limit.
        stderr: Standard error, likewise.
        timed_out: True if the command was killed at its time limit.
        truncated_bytes: How many bytes of stdout+stderr were cut by the output limit.
        duration_s: Wall-clock seconds the command ran.
    """

    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False
    truncated_bytes: int = 0
    duration_s: float = 0.0


@runtime_checkable
class Sandbox(Protocol):
    """A started sandbox holding a repository work tree at ``workdir``.

    Backends are created from an image with the repository checked out at a commit and are
    context managers; ``close()`` removes every resource they hold and is idempotent.
    """

    workdir: str

    def exec(self, command: str, timeout: float = 60.0) -> ExecResult:
        """Run ``command`` with ``bash -lc`` in ``workdir`` under the time limit (seconds)."""
        ...

    def read_file(self, path: str) -> str:
        """The text of ``path`` (relative to ``workdir`` or absolute inside the sandbox)."""
        ...

    def write_file(self, path: str, content: str) -> None:
        """Write ``content`` to ``path`` (relative to ``workdir`` or absolute inside the sandbox)."""
        ...

    def diff(self) -> str:
        """``git diff`` of the work tree against the base commit (the agent's patch)."""
        ...

    def close(self) -> None:
        """Stop and remove the sandbox; safe to call twice."""
        ...
