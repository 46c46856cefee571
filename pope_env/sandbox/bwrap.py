"""BwrapSandbox: the sandbox protocol without a daemon, on bubblewrap and cgroups v1.

Each command runs in fresh namespaces (``bwrap --unshare-all``: no network, own pids, own
IPC/UTS) as uid 1000, with the root file system mounted read-only; only ``/testbed`` (a
private git clone of the repository), ``/tmp`` and ``/home/pope`` are writable, and all
three live in one host temp folder removed by :meth:`close`. The root is the ``rootfs``
the caller passes (SWE tasks pass the debootstrapped base tree of
:mod:`pope_env.swe.images` when it has been built), else the host's ``/`` (read-only; its
Python and packages are then what the sandbox sees).

Limits come from cgroups v1 (``/sys/fs/cgroup/{memory,pids,cpu}/pope-env-bwrap-...``; needs
root): memory (OOM kill, exit 137), pids (a fork bomb fails to fork) and a CPU quota. Without
writable cgroups only an address-space rlimit applies (rlimits can be lowered, not raised).
Commands get coreutils ``timeout``; bubblewrap's ``--die-with-parent`` ends them with the
caller, and :func:`pope_env.sandbox.reaper.reap_orphans` removes folders and cgroups left by
a caller killed with ``kill -9``.
"""

from __future__ import annotations

import os
import posixpath
import resource
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
import weakref
from pathlib import Path

from pope_env.errors import ConfigError, DependencyError, EnvStateError
from pope_env.sandbox.base import ExecResult, SandboxBackend, SandboxLimits
from pope_env.sandbox.reaper import CGROUP_ROOT, bwrap_name, kill_cgroup, reap_orphans_once

_ENV = {
    "HOME": "/home/pope", "USER": "pope", "LANG": "C.UTF-8", "PAGER": "cat", "GIT_PAGER": "cat",
    "TERM": "dumb", "PYTHONDONTWRITEBYTECODE": "1", "PYTEST_ADDOPTS": "-p no:cacheprovider",
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}


class BwrapSandbox(SandboxBackend):
    """A private clone of a git repository, driven by commands in bubblewrap namespaces.

    Args:
        repo_dir: Host git repository; cloned (all refs) into the sandbox, never changed.
        workdir: Where the clone is mounted inside the sandbox.
        base_commit: Commit to check out at start; :meth:`diff` is taken against it.
        limits: Resource and output limits.
        rootfs: Root file system, mounted read-only; default: the host's ``/``. It must hold
            ``workdir``, ``/home/pope`` and ``/tmp`` (mount points). SWE tasks pass the
            debootstrapped base tree when it is built
            (:func:`pope_env.swe.images.built_base_rootfs`).
    """

    diff_error = EnvStateError

    def __init__(self, repo_dir: str | os.PathLike[str], *, workdir: str = "/testbed",
                 base_commit: str | None = None, limits: SandboxLimits = SandboxLimits(),
                 rootfs: str | os.PathLike[str] | None = None) -> None:
        if shutil.which("bwrap") is None:
            raise DependencyError("bubblewrap is not installed; `apt-get install -y bubblewrap`")
        repo_dir = Path(repo_dir)
        if not (repo_dir / ".git").exists():
            raise ConfigError(f"{repo_dir} is not a git repository (no .git); pass a repository to copy")
        reap_orphans_once()
        self.workdir = workdir
        self.limits = limits
        self.rootfs = Path(rootfs) if rootfs is not None else Path("/")
        missing = [d for d in (workdir, "/home/pope", "/tmp") if not (self.rootfs / d.lstrip("/")).is_dir()]
        if missing:  # bubblewrap mounts onto them and cannot create them in a read-only root
            raise ConfigError(f"the sandbox root {self.rootfs} has no {', '.join(missing)}; pass rootfs= a tree "
                              "that has them (`pope-env swe build-images` makes one: "
                              "pope_env.swe.images.built_base_rootfs())")
        self._closed = False
        self.root = Path(tempfile.mkdtemp(prefix=bwrap_name()))
        self._cgroups: list[Path] = []
        self._finalizer = weakref.finalize(self, _cleanup, self.root, self._cgroups)
        try:
            for sub in ("tmp", "home"):
                (self.root / sub).mkdir()
            clone = subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(repo_dir), str(self.root / "repo")],
                                   capture_output=True, text=True)
            if clone.returncode != 0:
                raise ConfigError(f"cannot clone {repo_dir}: {clone.stderr.strip()}")
            subprocess.run(["git", "-C", str(self.root / "repo"), "fetch", "-q", str(repo_dir), "+refs/*:refs/*",
                            "--update-head-ok"], capture_output=True)
            self._cgroups.extend(self._make_cgroups())
            self._check_out_base(base_commit, ConfigError, f"of {repo_dir}")
        except BaseException:
            self.close()
            raise

    def _make_cgroups(self) -> list[Path]:
        name = self.root.name + uuid.uuid4().hex[:6]
        made = []
        values = {
            "memory": {"memory.limit_in_bytes": self.limits.memory_mb << 20},
            "pids": {"pids.max": self.limits.pids},
            "cpu": {"cpu.cfs_period_us": 100_000, "cpu.cfs_quota_us": int(self.limits.cpus * 100_000)},
        }
        try:
            for ctrl, settings in values.items():
                cg = CGROUP_ROOT / ctrl / name
                cg.mkdir()
                made.append(cg)
                for key, value in settings.items():
                    (cg / key).write_text(str(value))
                swap = cg / "memory.memsw.limit_in_bytes"
                if ctrl == "memory" and swap.exists():
                    swap.write_text(str(self.limits.memory_mb << 20))
        except OSError:  # not root, or cgroups v2 / not mounted: fall back to rlimits
            for cg in made:
                kill_cgroup(cg)
            return []
        return made

    # --- protocol ---------------------------------------------------------------------

    def exec(self, command: str, timeout: float = 60.0, *, max_output_bytes: int | None = -1) -> ExecResult:
        """Run ``command`` with ``bash -c`` in ``workdir`` (see :meth:`DockerSandbox.exec`)."""
        if self._closed:
            raise EnvStateError("this sandbox is closed; start a new one")
        if timeout <= 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {timeout}")
        keep = self.limits.output_bytes if max_output_bytes == -1 else max_output_bytes
        argv = ["bwrap", "--die-with-parent", "--unshare-all", "--new-session", "--uid", "1000", "--gid", "1000",
                "--hostname", "sandbox", "--ro-bind", str(self.rootfs), "/", "--dev", "/dev", "--proc", "/proc",
                "--bind", str(self.root / "tmp"), "/tmp", "--bind", str(self.root / "home"), "/home/pope",
                "--bind", str(self.root / "repo"), self.workdir, "--chdir", self.workdir, "--clearenv"]
        for k, v in _ENV.items():
            argv += ["--setenv", k, v]
        argv += ["timeout", "-k", "2", f"{timeout:g}s", "bash", "-c", command]
        cgroups, memory = list(self._cgroups), self.limits.memory_mb << 20

        def enter_limits() -> None:  # runs in the child between fork and exec
            if cgroups:
                for cg in cgroups:
                    with open(cg / "cgroup.procs", "w") as f:
                        f.write(str(os.getpid()))
            else:
                resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=enter_limits, start_new_session=True)
        budget = [keep if keep is not None else float("inf")]
        cut = [0]
        lock = threading.Lock()
        bufs = (bytearray(), bytearray())

        def pump(stream, buf: bytearray) -> None:
            for chunk in iter(lambda: stream.read1(65536), b""):
                with lock:
                    take = int(min(len(chunk), max(budget[0], 0)))
                    buf += chunk[:take]
                    budget[0] -= take
                    cut[0] += len(chunk) - take

        threads = [threading.Thread(target=pump, args=(s, b), daemon=True) for s, b in zip((proc.stdout, proc.stderr), bufs)]
        for t in threads:
            t.start()
        try:
            code = proc.wait(timeout=timeout + 10)  # `timeout` inside should end it; this is the backstop
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            code = proc.wait()
        for t in threads:
            t.join(timeout=5)
        duration = time.perf_counter() - start
        if code < 0:  # killed by a signal, like a shell reports it
            code = 128 - code
        return ExecResult.of_command(code, bufs[0], bufs[1], timeout=timeout,
                                     truncated_bytes=cut[0], duration_s=duration)

    def read_file(self, path: str) -> str:
        host = self._host_path(path)
        if not host.exists():
            raise FileNotFoundError(f"{path} does not exist in the sandbox")
        if not host.is_file():
            raise IsADirectoryError(f"{path} is not a regular file")
        return host.read_bytes().decode("utf-8", "replace")

    def write_file(self, path: str, content: str) -> None:
        host = self._host_path(path)
        host.parent.mkdir(parents=True, exist_ok=True)
        host.write_text(content, encoding="utf-8")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._finalizer()

    # --- helpers ----------------------------------------------------------------------

    def _host_path(self, path: str) -> Path:
        """The host path of a sandbox path; only the writable mounts are reachable.

        Symlinks are resolved on the host and must stay inside the sandbox's folder, so a
        link planted by a command cannot make the host read or write outside it.
        """
        if self._closed:
            raise EnvStateError("this sandbox is closed; start a new one")
        full = posixpath.normpath(path if path.startswith("/") else posixpath.join(self.workdir, path))
        for inside, host in ((self.workdir, "repo"), ("/tmp", "tmp"), ("/home/pope", "home")):
            if full == inside or full.startswith(inside.rstrip("/") + "/"):
                candidate = self.root / host / posixpath.relpath(full, inside)
                real = Path(os.path.realpath(candidate))
                if real != self.root / host and self.root / host not in real.parents:
                    raise PermissionError(f"{path} resolves outside the sandbox's writable folders")
                return real
        raise PermissionError(f"{path} is outside the sandbox's writable folders ({self.workdir}, /tmp, /home/pope)")

    def __repr__(self) -> str:
        return f"BwrapSandbox({self.root}, {'closed' if self._closed else 'open'})"


def _cleanup(root: Path, cgroups: list[Path]) -> None:
    for cg in cgroups:
        kill_cgroup(cg)
    shutil.rmtree(root, ignore_errors=True)
