"""Sandboxes: isolated repository work trees driven by shell commands.

:class:`~pope_env.sandbox.base.Sandbox` is the protocol; backends are
:class:`~pope_env.sandbox.docker.DockerSandbox` (default when a Docker engine answers) and
:class:`~pope_env.sandbox.bwrap.BwrapSandbox` (bubblewrap, no daemon). :func:`make_sandbox`
picks one::

    from pope_env.sandbox import make_sandbox

    with make_sandbox(image="pope-env/repo-toolz-0.12.1:<hash>", repo_dir=checkout) as sb:
        print(sb.exec("python3 -m pytest -q").output)
"""

from __future__ import annotations

from pathlib import Path

from pope_env.errors import ConfigError, UnknownNameError
from pope_env.sandbox.base import ExecResult, Sandbox, SandboxLimits

BACKENDS = ("auto", "docker", "bwrap")


def default_backend() -> str:
    """``"docker"`` when a Docker engine answers, else ``"bwrap"``."""
    from pope_env.swe.images import engine_answers

    return "docker" if engine_answers() else "bwrap"


def make_sandbox(
    *,
    image: str | None = None,
    repo_dir: str | Path | None = None,
    base_commit: str | None = None,
    limits: SandboxLimits = SandboxLimits(),
    backend: str = "auto",
    workdir: str = "/testbed",
    rootfs: str | Path | None = None,
) -> Sandbox:
    """Start a sandbox holding a repository at ``base_commit``.

    Args:
        image: Docker image tag with the repository at ``workdir`` (Docker backend).
        repo_dir: Host git repository copied into the work tree (bubblewrap backend).
        base_commit: Commit to check out at start; ``None``: the repository's ``HEAD``.
        limits: Resource and output limits.
        backend: ``"docker"``, ``"bwrap"`` or ``"auto"`` (Docker when an engine answers and
            ``image`` is given, else bubblewrap).
        workdir: Where the repository lives inside the sandbox.
        rootfs: Root file system for bubblewrap (default: the debootstrapped base tree if
            built, else the host's ``/`` read-only).
    """
    if backend not in BACKENDS:
        raise UnknownNameError("sandbox backend", backend, BACKENDS)
    if backend == "auto":
        backend = "docker" if image is not None and default_backend() == "docker" else "bwrap"
    if backend == "docker":
        if image is None:
            raise ConfigError("the Docker sandbox needs image=...; build one with `pope-env swe build-images`")
        from pope_env.sandbox.docker import DockerSandbox

        return DockerSandbox(image, workdir=workdir, base_commit=base_commit, limits=limits)
    if repo_dir is None:
        raise ConfigError("the bubblewrap sandbox needs repo_dir=... (a host git repository to copy)")
    from pope_env.sandbox.bwrap import BwrapSandbox

    return BwrapSandbox(repo_dir, workdir=workdir, base_commit=base_commit, limits=limits, rootfs=rootfs)


__all__ = ["BACKENDS", "ExecResult", "Sandbox", "SandboxLimits", "default_backend", "make_sandbox"]
