"""Registration of every pope-env environment id with Gymnasium.

Envs are registered by entry-point strings, so ``import pope_env`` imports no env module
(and no torch). The catalogue is data, ``pope_env/env_specs.json`` (:func:`load_env_specs`):
add new ids there, keeping the list grouped by family.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from pope_env.errors import DataFormatError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


@dataclass(frozen=True)
class EnvSpecEntry:
    """One env id: its entry point, default kwargs and a one-line description."""

    id: str
    entry_point: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    max_episode_steps: int | None = None


_SPEC_FIELDS: dict[str, type] = {"id": str, "entry_point": str, "kwargs": dict, "description": str}


def load_env_specs(path: Traversable | None = None) -> list[EnvSpecEntry]:
    """The env catalogue: ``pope_env/env_specs.json`` (or ``path``), one JSON object per id
    with ``id``, ``entry_point`` (``"module:callable"``), ``kwargs`` (the defaults
    ``gym.make`` passes), ``description`` and optionally ``max_episode_steps``.

    Raises:
        DataFormatError: the file is not a JSON list of such objects, or an id repeats
            (naming the entry and the field).
    """
    source = path if path is not None else resources.files("pope_env") / "env_specs.json"
    try:
        rows = json.loads(source.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataFormatError(f"{source}: not valid JSON ({exc})") from exc
    if not isinstance(rows, list):
        raise DataFormatError(f"{source}: expected a JSON list of env specs, got {type(rows).__name__}")
    specs: list[EnvSpecEntry] = []
    for n, row in enumerate(rows):
        row = row if isinstance(row, dict) else {}
        wrong = [name for name, kind in _SPEC_FIELDS.items() if not isinstance(row.get(name), kind)]
        if wrong:
            raise DataFormatError(f"{source}: entry {n} has a missing or mistyped {', '.join(wrong)} "
                                  "(id, entry_point and description are strings, kwargs an object)")
        specs.append(EnvSpecEntry(row["id"], row["entry_point"], row["kwargs"], row["description"],
                                  row.get("max_episode_steps")))
    ids = [s.id for s in specs]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise DataFormatError(f"{source}: env id(s) {repeated} appear more than once")
    return specs


ENV_SPECS: list[EnvSpecEntry] = load_env_specs()
"""Every pope-env env id, grouped by family (math, step-level math, SRL, SWE, token)."""


def register_all() -> None:
    """Register every id in :data:`ENV_SPECS` (idempotent)."""
    for spec in ENV_SPECS:
        if spec.id in gym.registry:
            continue
        gym.register(
            id=spec.id,
            entry_point=spec.entry_point,
            kwargs=dict(spec.kwargs),
            max_episode_steps=spec.max_episode_steps,
            disable_env_checker=True,
        )


def env_ids() -> list[str]:
    """All pope-env env ids."""
    return [s.id for s in ENV_SPECS]
