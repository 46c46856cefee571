"""DockerSandbox: one container per sandbox on a real Docker engine (docker-py).

Isolation: ``network_mode="none"``; memory (swap included), CPU and pids limits; every
capability dropped and ``no-new-privileges``; commands run as the image's non-root user
``pope`` (uid 1000); an init process reaps zombies. Each command runs under coreutils
``timeout`` (TERM, then KILL two seconds later) in its own process group, and its output is
streamed and cut at ``limits.output_bytes`` (the cut is counted and reported).

Cleanup: every container carries the labels ``pope-env.sandbox=1``,
``pope-env.owner-pid``, ``pope-env.owner-start`` and ``pope-env.owner-host``. ``close()``
(also called by ``with``, by garbage collection and at interpreter exit) removes it; if the
owner dies without any of those (``kill -9``), :func:`pope_env.sandbox.reaper.reap_orphans`
removes it, and as a last resort the container's main process is ``sleep lifetime_s`` with
``auto_remove``, so it disappears by itself after its lifetime.
"""

from __future__ import annotations

import atexit
import io
import os
import posixpath
import shlex
import tarfile
import threading
import time
import uuid
import weakref

from pope_env.errors import ConfigError, EnvStateError, PopeEnvError
from pope_env.sandbox.base import ExecResult, SandboxBackend, SandboxLimits
from pope_env.sandbox.engine import docker_client
from pope_env.sandbox.reaper import OWNER_LABELS, SANDBOX_LABEL, owner_labels, reap_orphans_once

DEFAULT_USER = "1000:1000"
_ENV = {
    "HOME": "/home/pope",
    "LANG": "C.UTF-8",
    "PAGER": "cat",
    "GIT_PAGER": "cat",
    "TERM": "dumb",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTEST_ADDOPTS": "-p no:cacheprovider",
    "PIP_NO_INDEX": "1",
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}
# Runs the command under `timeout` in its own process group, then stops and kills whatever
# the command left in that group (background jobs, a fork bomb still forking) so that the
# next command finds the sandbox's pids free. Builtins only: the pids limit may be full.
_RUNNER = """timeout -k 2 "$1" bash -c "$2" </dev/null & t=$!
wait $t; rc=$?
while kill -0 -- -$t 2>/dev/null; do kill -STOP -- -$t 2>/dev/null; kill -KILL -- -$t 2>/dev/null; done
exit $rc"""
_live: "weakref.WeakSet[DockerSandbox]" = weakref.WeakSet()
_live_lock = threading.Lock()


class SandboxError(PopeEnvError, RuntimeError):
    """The sandbox could not be started or driven (engine error, image missing)."""


class DockerSandbox(SandboxBackend):
    """A repository work tree in a locked-down, labelled, always-removed Docker container.

    Args:
        image: Image tag holding the repository at ``workdir`` (built by :mod:`pope_env.swe.images`).
        workdir: The repository's path in the image.
        base_commit: Commit to check out (``git checkout -f``) at start;
            :meth:`diff` is taken against it. ``None``: the image's ``HEAD``.
        limits: Resource and output limits.
        user: ``uid:gid`` commands run as.
        client: A docker-py client. Default: :func:`pope_env.sandbox.engine.docker_client`,
            i.e. ``docker.from_env()`` (``DOCKER_HOST`` or ``/var/run/docker.sock``) after a
            ``ping``; it raises :class:`~pope_env.errors.DependencyError` when no engine answers.
    """

    diff_error = SandboxError

    def __init__(
        self,
        image: str,
        *,
        workdir: str = "/testbed",
        base_commit: str | None = None,
        limits: SandboxLimits = SandboxLimits(),
        user: str = DEFAULT_USER,
        client=None,
    ) -> None:
        self.image = image
        self.workdir = workdir
        self.limits = limits
        self.user = user
        self._client = client or docker_client()
        self._api = self._client.api
        self._closed = False
        self.container_id: str | None = None
        reap_orphans_once(self._client)
        import docker

        name = f"pope-env-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            # create + start (not run): run would try to pull a missing image from a registry
            container = self._client.containers.create(
                image,
                command=["sleep", str(int(limits.lifetime_s))],
                name=name,
                auto_remove=True,
                init=True,
                network_mode="none",
                mem_limit=f"{limits.memory_mb}m",
                memswap_limit=f"{limits.memory_mb}m",
                nano_cpus=int(limits.cpus * 1e9),
                pids_limit=limits.pids,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                user=user,
                working_dir=workdir,
                hostname="sandbox",
                environment=_ENV,
                labels={SANDBOX_LABEL: "1", **owner_labels()},
            )
            try:
                container.start()
            except BaseException:
                _remove(self._api, container.id)
                raise
        except docker.errors.ImageNotFound as exc:
            raise SandboxError(f"image {image!r} not found; build it with `pope-env swe build-images`") from exc
        except docker.errors.DockerException as exc:
            raise SandboxError(f"could not start a container from {image!r}: {exc}") from exc
        self.container_id = container.id
        self.name = name
        with _live_lock:
            _live.add(self)
        self._finalizer = weakref.finalize(self, _remove, self._api, container.id)
        try:
            self._check_out_base(base_commit, SandboxError, f"in {workdir} of {image}")
        except BaseException:
            self.close()
            raise

    # --- protocol ---------------------------------------------------------------------

    def exec(self, command: str, timeout: float = 60.0, *, max_output_bytes: int | None = -1) -> ExecResult:
        """Run ``command`` with ``bash -c`` in ``workdir`` as the sandbox user.

        Args:
            command: Shell command line.
            timeout: Seconds before the command's process group gets SIGTERM (SIGKILL 2 s later).
            max_output_bytes: Bytes of stdout+stderr to keep; ``-1``: ``limits.output_bytes``;
                ``None``: keep everything (used for diffs and test logs).
        """
        self._check_open()
        if timeout <= 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {timeout}")
        keep = self.limits.output_bytes if max_output_bytes == -1 else max_output_bytes
        argv = ["bash", "-c", _RUNNER, "pope-env-exec", f"{timeout:g}s", command]
        start = time.perf_counter()
        try:
            exec_id = self._api.exec_create(self.container_id, argv, user=self.user, workdir=self.workdir,
                                            environment=_ENV)["Id"]
            stream = self._api.exec_start(exec_id, stream=True, demux=True)
            out, err, cut = bytearray(), bytearray(), 0
            budget = keep if keep is not None else float("inf")
            for chunk_out, chunk_err in stream:
                for chunk, buf in ((chunk_out, out), (chunk_err, err)):
                    if not chunk:
                        continue
                    room = budget - len(out) - len(err)
                    if room >= len(chunk):
                        buf += chunk
                    else:
                        take = max(int(room), 0)
                        buf += chunk[:take]
                        cut += len(chunk) - take
            code = self._api.exec_inspect(exec_id)["ExitCode"]
        except Exception as exc:
            if self._closed:
                raise EnvStateError("the sandbox was closed while a command ran") from exc
            raise SandboxError(f"exec failed in container {self.name}: {exc}") from exc
        duration = time.perf_counter() - start
        code = -1 if code is None else int(code)
        return ExecResult.of_command(code, out, err, timeout=timeout, truncated_bytes=cut, duration_s=duration)

    def read_file(self, path: str) -> str:
        """The text of ``path`` (UTF-8, invalid bytes replaced); FileNotFoundError if absent."""
        import docker

        self._check_open()
        full = self._abspath(path)
        try:
            bits, _ = self._api.get_archive(self.container_id, full)
        except docker.errors.NotFound as exc:
            raise FileNotFoundError(f"{full} does not exist in the sandbox") from exc
        with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
            member = tar.next()
            if member is None or not member.isfile():
                raise IsADirectoryError(f"{full} is not a regular file")
            return tar.extractfile(member).read().decode("utf-8", "replace")

    def write_file(self, path: str, content: str) -> None:
        """Write ``content`` to ``path`` (parents created), owned by the sandbox user."""
        self._check_open()
        full = self._abspath(path)
        parent, name = posixpath.split(full)
        # the engine writes archives as root: check first that the sandbox user could write here
        q = shlex.quote(full)
        res = self.exec(f"mkdir -p {shlex.quote(parent)} && test -w {shlex.quote(parent)} && "
                        f"{{ [ ! -e {q} ] || {{ [ -f {q} ] && [ ! -L {q} ] && [ -w {q} ]; }}; }}", timeout=30)
        if res.exit_code != 0:
            raise PermissionError(f"the sandbox user cannot write {full}: {res.output.strip() or 'permission denied'}")
        data = content.encode("utf-8")
        buf = io.BytesIO()
        uid, gid = (int(x) for x in self.user.split(":"))
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid, info.mtime = len(data), 0o644, uid, gid, int(time.time())
            tar.addfile(info, io.BytesIO(data))
        if not self._api.put_archive(self.container_id, parent, buf.getvalue()):
            raise SandboxError(f"writing {full} failed")

    def close(self) -> None:
        """Remove the container (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with _live_lock:
            _live.discard(self)
        if self.container_id is not None:
            self._finalizer()

    # --- helpers ----------------------------------------------------------------------

    def _abspath(self, path: str) -> str:
        return posixpath.normpath(path if path.startswith("/") else posixpath.join(self.workdir, path))

    def _check_open(self) -> None:
        if self._closed:
            raise EnvStateError("this sandbox is closed; start a new one")

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"DockerSandbox({self.image!r}, {getattr(self, 'name', '?')}, {state})"


def _remove(api, container_id: str) -> None:
    import docker

    try:
        api.remove_container(container_id, force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:  # removal already in progress (auto_remove)
        if "already in progress" not in str(exc) and "No such container" not in str(exc):
            raise


@atexit.register
def _close_all() -> None:
    with _live_lock:
        live = list(_live)
    for sandbox in live:
        try:
            sandbox.close()
        except Exception:  # pragma: no cover - best effort at exit
            pass


__all__ = ["DockerSandbox", "SandboxError", "OWNER_LABELS"]
