"""SWE tasks: offline-built images, instances in SWE-bench's format, sandboxes' tasks, grading.

Heavy pieces import lazily; the helpers below are the usual entry points::

    from pope_env.swe import load_tasks
    tasks = load_tasks("local")          # images built (or reused) on first use
"""

from __future__ import annotations

from typing import Any


def load_tasks(source: str = "local", **kwargs: Any):
    """Runnable :class:`~pope_env.swe.task.SWETask` list; see :func:`pope_env.swe.runtime.load_tasks`."""
    from pope_env.swe.runtime import load_tasks as _load

    return _load(source, **kwargs)


def load_expert_commands(instance_ids, source: str = "local"):
    """Instance id -> expert commands; see :func:`pope_env.swe.runtime.load_expert_commands`."""
    from pope_env.swe.runtime import load_expert_commands as _load

    return _load(instance_ids, source)
