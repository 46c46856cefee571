"""Access to the Docker engine: the one place the sandbox layer gets a docker-py client.

:func:`docker_client` returns a client that answered ``ping`` (from ``docker.from_env()``:
``DOCKER_HOST`` or the local socket ``/var/run/docker.sock``); :func:`engine_answers` says
whether one answers at all, which is how ``backend="auto"`` picks Docker or bubblewrap.
Image building (:mod:`pope_env.swe.images`) uses the same client; this module imports
nothing above :mod:`pope_env.errors`.
"""

from __future__ import annotations

from typing import Any

from pope_env.errors import DependencyError, PopeEnvError, require

CLIENT_TIMEOUT_S = 600
"""docker-py's HTTP timeout (seconds): long enough for an image build or a slow test run."""


def docker_client() -> Any:
    """A docker-py client (``docker.from_env()``) that answered ``ping``.

    Raises:
        DependencyError: docker-py is not installed (``pip install 'pope-env[swe]'``), or no
            engine answers (the message says how to start one or to use bubblewrap).
    """
    docker = require("docker", "swe")
    try:
        client = docker.from_env(timeout=CLIENT_TIMEOUT_S)
        client.ping()
    except Exception as exc:  # docker.errors.DockerException, requests errors, PermissionError
        raise DependencyError(
            f"no Docker engine answers ({exc}); start one (`dockerd &` as root, see docs/setup.md) "
            "or use the bubblewrap sandbox (`make_sandbox(..., backend='bwrap')`)"
        ) from exc
    return client


def engine_answers() -> bool:
    """True when a Docker engine answers a ping (used to choose the default sandbox)."""
    try:
        docker_client()
    except PopeEnvError:
        return False
    return True


__all__ = ["CLIENT_TIMEOUT_S", "docker_client", "engine_answers"]
