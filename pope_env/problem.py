"""The :class:`Problem` record every dataset, env and reward shares."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem with its privileged oracle solution.

    Attributes:
        id: Stable unique id within its dataset (e.g. ``"math-train/algebra/1234"``).
        question: The problem statement ``x`` shown to the policy.
        solution: The oracle (human) worked solution ``z`` as one text; privileged.
        steps: ``z`` split into steps; ``"".join(steps) == solution`` whenever the steps
            come from :func:`pope_env.solution_steps.split_solution`. Datasets with native steps
            (CHAMP) keep theirs. Privileged.
        answer: The gold final answer (LaTeX or plain text, without ``\\boxed{}``); privileged.
        source: Dataset name (``"math"``, ``"math500"``, ``"champ"``, ``"arithmetic"``, ...).
        level: Difficulty level when the source has one (MATH: 1-5), else ``None``.
        subject: Subject or category when the source has one, else ``None``.
        meta: Any other source fields (read-only mapping).
    """

    id: str
    question: str
    solution: str
    steps: tuple[str, ...]
    answer: str
    source: str
    level: int | None = None
    subject: str | None = None
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``steps`` as a list)."""
        d = dataclasses.asdict(self)
        d["steps"] = list(self.steps)
        d["meta"] = dict(self.meta)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Problem":
        """Inverse of :meth:`to_dict`."""
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in fields}
        kw["steps"] = tuple(kw.get("steps") or ())
        kw["meta"] = dict(kw.get("meta") or {})
        return cls(**kw)
