"""ProcessSandbox: the sandbox protocol as plain host processes in a private copy of the repo.

No isolation beyond a temporary work tree: commands run as the calling user, with the
host's interpreter and network. It exists for trusted commands (validating instances,
replaying expert trajectories) on machines without Docker or bubblewrap; run untrusted agent
commands in ``DockerSandbox`` or ``BwrapSandbox``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from pope_env.errors import ConfigError, EnvStateError
from pope_env.sandbox.base import ExecResult


class ProcessSandbox:
    """Run commands with ``bash -c`` in a temporary copy of a git repository.

    Args:
        repo: A git repository (work tree) to copy; it is never changed.
        base_commit: The commit :meth:`diff` compares against (default: ``repo``'s HEAD).
        output_limit: Bytes of stdout+stderr kept per command; the rest is cut and counted
            in ``ExecResult.truncated_bytes``.
        env: Extra environment variables for every command.
    """

    def __init__(self, repo: str | os.PathLike[str], *, base_commit: str | None = None,
                 output_limit: int = 1_000_000, env: dict[str, str] | None = None) -> None:
        if output_limit < 1:
            raise ConfigError(f"output_limit must be positive, got {output_limit}")
        self._tmp = Path(tempfile.mkdtemp(prefix="pope-env-sandbox-"))
        self.workdir = str(self._tmp / "repo")
        shutil.copytree(repo, self.workdir, symlinks=True)
        self.output_limit = output_limit
        self._env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
        self._closed = False
        head = self.exec("git rev-parse HEAD", timeout=30)
        if head.exit_code != 0:
            self.close()
            raise ConfigError(f"{repo} is not a git work tree: {head.stderr.strip()}")
        self.base_commit = base_commit or head.stdout.strip()

    def exec(self, command: str, timeout: float = 60.0) -> ExecResult:
        """Run ``command`` with ``bash -c`` in ``workdir``; the process group is killed at ``timeout`` s."""
        if self._closed:
            raise EnvStateError("exec() on a closed ProcessSandbox")
        start = time.monotonic()
        proc = subprocess.Popen(["bash", "-c", command], cwd=self.workdir, env=self._env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        timed_out = False
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        code = 124 if timed_out else proc.returncode
        if code < 0:  # killed by a signal: report it the way a shell does
            code = 128 - code
        out_kept, err_kept, cut = _truncate(out, err, self.output_limit)
        return ExecResult(exit_code=code, stdout=out_kept, stderr=err_kept, timed_out=timed_out,
                          truncated_bytes=cut, duration_s=time.monotonic() - start)

    def _path(self, path: str) -> Path:
        return Path(path) if os.path.isabs(path) else Path(self.workdir) / path

    def read_file(self, path: str) -> str:
        """The text of ``path`` (relative to ``workdir`` or absolute)."""
        return self._path(path).read_text(encoding="utf-8", errors="replace")

    def write_file(self, path: str, content: str) -> None:
        """Write ``content`` to ``path`` (relative to ``workdir`` or absolute), creating folders."""
        target = self._path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")

    def diff(self) -> str:
        """``git diff`` of the work tree (new files included) against ``base_commit``."""
        result = self.exec(f"git add -A && git diff --cached {self.base_commit}", timeout=60)
        if result.exit_code != 0:
            raise EnvStateError(f"git diff failed in the sandbox: {result.stderr.strip()}")
        return result.stdout

    def close(self) -> None:
        """Delete the work tree; safe to call twice."""
        if not self._closed:
            self._closed = True
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "ProcessSandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _truncate(out: bytes, err: bytes, limit: int) -> tuple[str, str, int]:
    total = len(out) + len(err)
    if total <= limit:
        return out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), 0
    keep_out = min(len(out), max(limit // 2, limit - len(err)))
    keep_err = min(len(err), limit - keep_out)
    return (out[:keep_out].decode("utf-8", "replace"), err[:keep_err].decode("utf-8", "replace"),
            total - keep_out - keep_err)
