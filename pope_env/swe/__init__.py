"""SWE tasks: instances in SWE-bench's format (official files and a local real-repository set
built offline), expert trajectories, offline-built images, sandboxes' tasks, grading.

Heavy pieces (docker, swebench) import lazily; the usual entry points::

    from pope_env.swe import load_instances, load_trajectory, load_tasks
    instances = load_instances("local")  # SWE-bench records (+ local build recipes)
    tasks = load_tasks("local")          # runnable tasks; images built (or reused) on first use
"""

from __future__ import annotations

from typing import Any

from pope_env.swe.instances import LOCAL_SET, LocalBuild, SdistSource, SWEInstance, load_instances
from pope_env.swe.trajectories import SUBMIT, TrajectoryStep, load_trajectories, load_trajectory


def load_tasks(source: str = "local", **kwargs: Any):
    """Runnable :class:`~pope_env.swe.task.SWETask` list; see :func:`pope_env.swe.runtime.load_tasks`."""
    from pope_env.swe.runtime import load_tasks as _load

    return _load(source, **kwargs)


def load_expert_commands(instance_ids, source: str = "local"):
    """Instance id -> expert commands; see :func:`pope_env.swe.runtime.load_expert_commands`."""
    from pope_env.swe.runtime import load_expert_commands as _load

    return _load(instance_ids, source)


__all__ = [
    "LOCAL_SET",
    "LocalBuild",
    "SUBMIT",
    "SWEInstance",
    "SdistSource",
    "TrajectoryStep",
    "load_expert_commands",
    "load_instances",
    "load_tasks",
    "load_trajectories",
    "load_trajectory",
]
