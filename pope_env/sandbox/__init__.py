"""Sandboxes: isolated repository work trees driven by shell commands.

:class:`~pope_env.sandbox.base.Sandbox` is the protocol; backends are
:class:`~pope_env.sandbox.docker.DockerSandbox` (default when a Docker engine answers) and
:class:`~pope_env.sandbox.bwrap.BwrapSandbox` (bubblewrap, no daemon). :func:`make_sandbox`
picks one; :mod:`pope_env.sandbox.engine` is the one place a Docker client comes from. This
package imports nothing from ``pope_env.swe``, ``pope_env.envs`` or ``pope_env.agents``
(``tests/test_layering.py`` checks it)::

    from pope_env.sandbox import make_sandbox

    with make_sandbox(image="pope-env/repo-toolz-0.12.1:<hash>", repo_dir=checkout) as sb:
        print(sb.exec("python3 -m pytest -q").output)
"""

from __future__ import annotations

from pathlib import Path

from pope_env.errors import ConfigError, UnknownNameError
from pope_env.sandbox.base import ExecResult, Sandbox, SandboxLimits
from pope_env.sandbox.engine import docker_client, engine_answers

BACKENDS = ("auto", "docker", "bwrap")


def default_backend() -> str:
    """``"docker"`` when a Docker engine answers, else ``"bwrap"``."""
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
        rootfs: Root file system for bubblewrap, mounted read-only (default: the host's
            ``/``; SWE tasks pass :func:`pope_env.swe.images.built_base_rootfs`).
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


__all__ = ["BACKENDS", "ExecResult", "Sandbox", "SandboxLimits", "default_backend", "docker_client",
           "engine_answers", "make_sandbox"]
