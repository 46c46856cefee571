"""From SWE-bench-format instances to runnable tasks: repositories, images, expert commands.

A local instance (one with a ``local`` build recipe, see :mod:`pope_env.swe.instances`)
gets its git repository from :func:`pope_env.swe.build.cached_repository` and, with a
Docker engine, an environment image shared by every instance of the same project release:
the image's ``/testbed`` repository holds one branch per instance (``instance/<id>``), and
the sandbox checks out the instance's ``base_commit`` at start. Official instances keep
whatever ``image`` their record names.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pope_env.swe.images import RepoImageSpec, ensure_base_image, ensure_repo_image
from pope_env.swe.task import SWETask

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def _image_name(requirement: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", requirement.lower()).strip("-.")


def combined_repository(dest: Path, instances: Sequence[Any]) -> Path:
    """Make at ``dest`` a git repository with one branch ``instance/<id>`` per instance.

    Built fresh each time (local fetches take milliseconds), so concurrent builders never
    share a half-updated repository; the commits are deterministic, so the image's content
    hash is too.
    """
    from pope_env.swe.build import cached_repository

    subprocess.run(["git", "init", "-q", str(dest)], check=True)
    for inst in instances:
        src = cached_repository(inst)
        subprocess.run(["git", "-C", str(dest), "fetch", "-q", "--no-tags", str(src),
                        f"+HEAD:refs/heads/instance/{inst.instance_id}"], check=True, capture_output=True)
    first = f"refs/heads/instance/{instances[0].instance_id}"
    subprocess.run(["git", "-C", str(dest), "symbolic-ref", "HEAD", first], check=True)
    subprocess.run(["git", "-C", str(dest), "reset", "-q", "--hard", first], check=True)
    return dest


def ensure_instance_images(instances: Iterable[Any], *, progress: Progress = _quiet) -> dict[str, str]:
    """Build (or reuse) the environment images of local instances: instance id -> image tag."""
    groups: dict[tuple, list[Any]] = {}
    for inst in instances:
        local = inst.local
        key = (local.source.requirement, tuple(local.python_deps), local.install_command)
        groups.setdefault(key, []).append(inst)
    base = ensure_base_image(progress=progress)
    tags: dict[str, str] = {}
    for (requirement, deps, install), group in groups.items():
        name = _image_name(requirement)
        with tempfile.TemporaryDirectory(prefix="pope-env-image-repo-") as tmp:
            repo = combined_repository(Path(tmp) / name, group)
            spec = RepoImageSpec(name, repo, requirements=deps, install_commands=(install,) if install else (),
                                 extra_labels={"pope-env.project": requirement})
            tag = ensure_repo_image(spec, base_tag=base, progress=progress)
        tags.update({inst.instance_id: tag for inst in group})
    return tags


def tasks_from_instances(instances: Sequence[Any], *, backend: str = "auto",
                         progress: Progress = _quiet) -> list[SWETask]:
    """Runnable tasks for ``instances``: images built for Docker, repositories for bubblewrap."""
    from pope_env.sandbox import default_backend

    if backend == "auto":
        backend = default_backend()
    local = [i for i in instances if getattr(i, "local", None) is not None]
    tags = ensure_instance_images(local, progress=progress) if (backend == "docker" and local) else {}
    tasks = []
    for inst in instances:
        record = inst.to_record() if hasattr(inst, "to_record") else inst
        overrides: dict[str, Any] = {}
        if getattr(inst, "local", None) is not None:
            overrides["test_cmd"] = inst.test_command()
            if inst.instance_id in tags:
                overrides["image"] = tags[inst.instance_id]
            else:
                from pope_env.swe.build import cached_repository

                overrides["repo_dir"] = cached_repository(inst)
        tasks.append(SWETask.from_record(record, **overrides))
    return tasks


def load_tasks(source: str = "local", *, backend: str = "auto", progress: Progress = _quiet) -> list[SWETask]:
    """Load instances from ``source`` (see ``pope_env.swe.instances.load_instances``) as tasks."""
    from pope_env.swe.instances import load_instances

    return tasks_from_instances(load_instances(source), backend=backend, progress=progress)


def load_expert_commands(instance_ids: Iterable[str], source: str = "local") -> dict[str, list[str]]:
    """Instance id -> the expert's shell commands (ending with ``submit``) for those that have one."""
    from pope_env.swe.trajectories import load_trajectories

    stored = load_trajectories(source)
    return {iid: [step.command for step in stored[iid]] for iid in instance_ids if iid in stored}
