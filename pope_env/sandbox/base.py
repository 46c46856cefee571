"""The sandbox protocol: an isolated work tree with a repository, driven by shell commands.

Kept as small as mini-swe-agent's Environment so that any backend (Docker, bubblewrap, a
remote service) can stand in. Backends live in sibling modules; :func:`pope_env.sandbox.make_sandbox`
picks one.
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

    @property
    def output(self) -> str:
        """stdout and stderr joined, plus a line saying how much was cut, if anything was."""
        text = self.stdout + (("\n" if self.stdout and not self.stdout.endswith("\n") else "") + self.stderr
                              if self.stderr else "")
        if self.truncated_bytes:
            text += f"\n[output truncated: {self.truncated_bytes} more bytes not shown]"
        if self.timed_out:
            text += "\n[command timed out and was killed]"
        return text


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandbox.

    Attributes:
        memory_mb: Memory limit (MiB, swap included); a process over it is killed (exit 137).
        cpus: CPU share (1.0 = one core).
        pids: Most processes/threads alive at once (a fork bomb hits this).
        output_bytes: Bytes of stdout+stderr kept per command; the rest is counted, not kept.
        lifetime_s: Hard upper bound on a sandbox's life; an orphan removes itself after it
            even if no reaper ever runs.
    """

    memory_mb: int = 2048
    cpus: float = 1.0
    pids: int = 256
    output_bytes: int = 100_000
    lifetime_s: int = 6 * 3600

    def __post_init__(self) -> None:
        from pope_env.errors import ConfigError

        for name in ("memory_mb", "pids", "output_bytes", "lifetime_s"):
            if getattr(self, name) < 1:
                raise ConfigError(f"SandboxLimits.{name} must be >= 1, got {getattr(self, name)}")
        if self.cpus <= 0:
            raise ConfigError(f"SandboxLimits.cpus must be > 0, got {self.cpus}")


@runtime_checkable
class Sandbox(Protocol):
    """A started sandbox holding a repository work tree at ``workdir``.

    Backends start from an image with the repository checked out at ``base_commit`` and are
    context managers; ``close()`` removes every resource they hold and is idempotent.
    Commands run as a non-root user without network.
    """

    workdir: str
    base_commit: str

    def exec(self, command: str, timeout: float = 60.0) -> ExecResult:
        """Run ``command`` with ``bash -c`` in ``workdir`` under the time limit (seconds)."""
        ...

    def read_file(self, path: str) -> str:
        """The text of ``path`` (relative to ``workdir`` or absolute inside the sandbox)."""
        ...

    def write_file(self, path: str, content: str) -> None:
        """Write ``content`` to ``path`` (relative to ``workdir`` or absolute inside the sandbox)."""
        ...

    def diff(self) -> str:
        """``git diff`` of the work tree (new files included) against ``base_commit``."""
        ...

    def close(self) -> None:
        """Stop and remove the sandbox; safe to call twice."""
        ...
