"""The sandbox protocol: an isolated work tree with a repository, driven by shell commands.

Kept as small as mini-swe-agent's Environment so that any backend (Docker, bubblewrap, a
remote service) can stand in. Backends live in sibling modules; :func:`pope_env.sandbox.make_sandbox`
picks one. The built-in backends derive from :class:`SandboxBackend`, which gives them the
parts that only need ``exec`` and ``close``.
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Protocol, Self, runtime_checkable


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

    @classmethod
    def of_command(cls, exit_code: int, stdout: bytes | bytearray, stderr: bytes | bytearray, *,
                   timeout: float, truncated_bytes: int, duration_s: float) -> "ExecResult":
        """The result of a command run under coreutils ``timeout`` with a ``timeout``-second limit.

        The output is decoded as UTF-8 (invalid bytes replaced). The command timed out when it
        exited 124 (``timeout`` stopped it) or 137 (killed) after running for the whole limit;
        a 137 before that is a kill for memory.
        """
        timed_out = exit_code == 124 or (exit_code == 137 and duration_s >= timeout)
        return cls(exit_code, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace"),
                   timed_out=timed_out, truncated_bytes=truncated_bytes, duration_s=duration_s)

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


class SandboxBackend(ABC):
    """What the built-in backends share: the start at ``base_commit`` and :meth:`diff` through
    ``git`` in the sandbox, and ``with``.

    A subclass implements :meth:`exec` (with a ``max_output_bytes`` keyword: ``None`` keeps
    all output) and :meth:`close`, sets ``workdir``, calls :meth:`_check_out_base` when it
    starts, and names in ``diff_error`` the error a failed ``git diff`` raises.
    """

    workdir: str
    base_commit: str
    diff_error: ClassVar[type[Exception]]

    @abstractmethod
    def exec(self, command: str, timeout: float = 60.0, *, max_output_bytes: int | None = -1) -> ExecResult:
        """Run ``command`` with ``bash -c`` in ``workdir`` under the time limit (seconds)."""

    @abstractmethod
    def close(self) -> None:
        """Stop and remove the sandbox; safe to call twice."""

    def _check_out_base(self, base_commit: str | None, error: type[Exception], where: str) -> None:
        """Check out ``base_commit`` (``None``: keep ``HEAD``) and set ``self.base_commit`` to its id.

        Raises:
            error: the checkout failed; the message names the commit, ``where`` and git's output.
        """
        checkout = f"git checkout -qf {shlex.quote(base_commit)} && " if base_commit else ""
        res = self.exec(checkout + "git rev-parse HEAD", timeout=120)
        if res.exit_code != 0:
            raise error(f"cannot check out {base_commit!r} {where}: {res.output.strip()}")
        self.base_commit = res.stdout.strip()

    def diff(self) -> str:
        """The work tree's patch against ``base_commit``, new files included (``git add -A``)."""
        res = self.exec(f"git add -A >/dev/null && git -c core.fileMode=false diff --cached --binary "
                        f"{self.base_commit}", timeout=120, max_output_bytes=None)
        if res.exit_code != 0:
            raise self.diff_error(f"git diff failed: {res.output.strip()}")
        return res.stdout

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
