"""Find and remove sandboxes whose owner process is gone (after ``kill -9`` or a crash).

Every sandbox records its owner: ``pope-env.owner-pid``, ``pope-env.owner-start`` (the
process start time in clock ticks from ``/proc/PID/stat``, so a recycled pid is not
mistaken for the owner) and ``pope-env.owner-host``. A sandbox is an *orphan* when its
owner is on this host and that (pid, start) process no longer exists. Containers on other
hosts sharing the engine are never touched.

Docker containers are found by label; bubblewrap leftovers (work-tree folders under the
temp dir and cgroups) carry the same facts in their names.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

SANDBOX_LABEL = "pope-env.sandbox"
OWNER_LABELS = ("pope-env.owner-pid", "pope-env.owner-start", "pope-env.owner-host")
BWRAP_PREFIX = "pope-env-bwrap-"
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_CONTROLLERS = ("memory", "pids", "cpu")


def process_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or ``None`` if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])


def owner_labels(pid: int | None = None) -> dict[str, str]:
    """The owner labels for a sandbox created by ``pid`` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    return {OWNER_LABELS[0]: str(pid), OWNER_LABELS[1]: str(process_start_ticks(pid) or 0),
            OWNER_LABELS[2]: socket.gethostname()}


def owner_alive(pid: int, start: int) -> bool:
    """True if the process ``pid`` exists and started at ``start`` ticks (0: any start)."""
    ticks = process_start_ticks(pid)
    return ticks is not None and (start == 0 or ticks == start)


@dataclass(frozen=True)
class Reaped:
    """One removed orphan: its kind (``container``, ``bwrap-dir``, ``cgroup``) and name."""

    kind: str
    name: str


def reap_orphans(client=None, *, dry_run: bool = False) -> list[Reaped]:
    """Remove every pope-env sandbox on this host whose owner process is gone.

    Args:
        client: A docker-py client; ``None`` tries ``docker.from_env()`` and skips Docker
            if no engine answers.
        dry_run: Only list what would be removed.
    """
    reaped: list[Reaped] = []
    host = socket.gethostname()
    if client is None:
        try:
            from pope_env.sandbox.engine import docker_client

            client = docker_client()
        except Exception:
            client = None
    if client is not None:
        import docker

        for c in client.containers.list(all=True, filters={"label": f"{SANDBOX_LABEL}=1"}):
            labels = c.labels or {}
            try:
                pid, start = int(labels.get(OWNER_LABELS[0], "0")), int(labels.get(OWNER_LABELS[1], "0"))
            except ValueError:
                pid, start = 0, 0
            if labels.get(OWNER_LABELS[2]) != host or (pid and owner_alive(pid, start)):
                continue
            if not dry_run:
                try:
                    c.remove(force=True)
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError as exc:
                    if "already in progress" not in str(exc):
                        raise
            reaped.append(Reaped("container", c.name))
    reaped += _reap_bwrap(dry_run=dry_run)
    return reaped


_NAME = re.compile(rf"^{re.escape(BWRAP_PREFIX)}(\d+)-(\d+)-")


def bwrap_name(pid: int | None = None) -> str:
    """The name prefix bubblewrap sandboxes of ``pid`` use for their folders and cgroups."""
    pid = os.getpid() if pid is None else pid
    return f"{BWRAP_PREFIX}{pid}-{process_start_ticks(pid) or 0}-"


def _orphaned(name: str) -> bool:
    m = _NAME.match(name)
    return bool(m) and not owner_alive(int(m.group(1)), int(m.group(2)))


def _reap_bwrap(*, dry_run: bool) -> list[Reaped]:
    reaped = []
    for d in Path(tempfile.gettempdir()).glob(f"{BWRAP_PREFIX}*"):
        if _orphaned(d.name):
            if not dry_run:
                shutil.rmtree(d, ignore_errors=True)
            reaped.append(Reaped("bwrap-dir", str(d)))
    for ctrl in CGROUP_CONTROLLERS:
        for cg in (CGROUP_ROOT / ctrl).glob(f"{BWRAP_PREFIX}*"):
            if _orphaned(cg.name):
                if not dry_run:
                    kill_cgroup(cg)
                reaped.append(Reaped("cgroup", str(cg)))
    return reaped


def kill_cgroup(cg: Path) -> None:
    """Kill every process in the (v1) cgroup ``cg`` and remove it."""
    import signal

    for _ in range(50):
        try:
            pids = [int(p) for p in (cg / "cgroup.procs").read_text().split()]
        except OSError:
            break
        if not pids:
            break
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        import time

        time.sleep(0.02)
    try:
        cg.rmdir()
    except OSError:
        pass


_once_lock = threading.Lock()
_done_once = False


def reap_orphans_once(client=None) -> None:
    """Run :func:`reap_orphans` the first time this process starts a sandbox."""
    global _done_once
    with _once_lock:
        if _done_once:
            return
        _done_once = True
    try:
        reap_orphans(client)
    except Exception:  # never block a sandbox start on cleanup of others' leftovers
        pass
