"""The guidance file: POPE's i* (or fallback segment) per problem, as written by
``pope-env prefix-search`` (:func:`pope_env.prefix_search.run_prefix_search`) and read by
the envs (``guidance_file=``), the trainer's methods and the demo.

JSONL: a header line (:class:`GuidanceHeader`: the settings that produced the file), then
one :class:`GuidanceRecord` per searched problem, with every :class:`Measurement` made::

    {"kind": "pope-guidance", "version": 1, "dataset": "math-train-l5", "model": "smollm2",
     "k": 8, "seed": 0, "strategy": "linear", "chunk_size": 2, "prompt_format": "chat",
     "sampling": {...}, "instruction_sha": "..."}
    {"problem_id": "...", "i_star": 3, "fallback": false, "segment": [0, 3], "cap": 7,
     "n_steps": 9, "rollouts": 26, "evidence": [[1, 0, 8], [2, 0, 8], [3, 1, 2]]}

docs/architecture.md ("Guidance file") states every field. :func:`load_guidance` reads a
file, checking its dataset, and skips (or, ``strict``, refuses) corrupted lines naming the
file and line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pope_env.errors import GuidanceFileError
from pope_env.io import FileHeader, HeadedFile, PathLike, read_headed_jsonl

GUIDANCE_KIND = "pope-guidance"
GUIDANCE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Outcome of sampling roll-in state ``prefix_len`` of one problem."""

    prefix_len: int
    successes: int
    samples: int

    def to_json(self) -> list[int]:
        return [self.prefix_len, self.successes, self.samples]

    @classmethod
    def from_json(cls, row: Sequence[int]) -> "Measurement":
        i, s, n = row
        return cls(int(i), int(s), int(n))


@dataclasses.dataclass(frozen=True)
class GuidanceRecord:
    """The search result for one problem (one line of a guidance file).

    Attributes:
        problem_id: The problem.
        i_star: Shortest verified prefix length, or ``None`` when no prefix worked.
        fallback: True when ``segment`` is the random fallback segment.
        segment: ``[start, stop)`` of the oracle steps to show: ``(0, i_star)`` or the fallback
            (``(0, 0)`` when the solution is too short for a fallback segment: no guidance).
        cap: The problem's prefix cap (steps that can be shown without the answer).
        n_steps: Steps in the oracle solution.
        evidence: Every measurement made, in order.
    """

    problem_id: str
    i_star: int | None
    fallback: bool
    segment: tuple[int, int]
    cap: int
    n_steps: int
    evidence: tuple[Measurement, ...] = ()

    @property
    def start(self) -> int:
        return self.segment[0]

    @property
    def prefix_len(self) -> int:
        """Number of oracle steps shown (the roll-in state's length)."""
        return self.segment[1] - self.segment[0]

    @property
    def rollouts(self) -> int:
        return sum(m.samples for m in self.evidence)

    def by_state(self) -> dict[int, Measurement]:
        """Evidence totals per measured state (installments of one state summed)."""
        out: dict[int, Measurement] = {}
        for m in self.evidence:
            seen = out.get(m.prefix_len, Measurement(m.prefix_len, 0, 0))
            out[m.prefix_len] = Measurement(m.prefix_len, seen.successes + m.successes,
                                            seen.samples + m.samples)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "problem_id": self.problem_id,
            "i_star": self.i_star,
            "fallback": self.fallback,
            "segment": list(self.segment),
            "cap": self.cap,
            "n_steps": self.n_steps,
            "rollouts": self.rollouts,
            "evidence": [m.to_json() for m in self.evidence],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "GuidanceRecord":
        start, stop = d["segment"]
        record = cls(
            problem_id=str(d["problem_id"]),
            i_star=None if d["i_star"] is None else int(d["i_star"]),
            fallback=bool(d["fallback"]),
            segment=(int(start), int(stop)),
            cap=int(d["cap"]),
            n_steps=int(d["n_steps"]),
            evidence=tuple(Measurement.from_json(r) for r in d.get("evidence", ())),
        )
        empty = record.fallback and record.segment == (0, 0)  # a fallback with no guidance
        if not empty and not 0 <= record.start < record.segment[1] <= record.cap:
            raise ValueError(f"segment {list(record.segment)} is not inside [0, cap={record.cap}]")
        if record.fallback == (record.i_star is not None):
            raise ValueError("exactly one of i_star and fallback must be set")
        return record


@dataclasses.dataclass(frozen=True)
class SampledFileHeader(FileHeader):
    """The settings of a file measured by sampling a policy through a
    :class:`~pope_env.probe.PrefixProbe` (``PrefixProbe.header_fields``): the
    hard-split file's (:class:`pope_env.hard_split.SplitHeader`) and the guidance file's."""

    dataset: str
    model: str
    k: int
    seed: int
    chunk_size: int
    prompt_format: str = "chat"
    sampling: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class GuidanceHeader(SampledFileHeader):
    """The metadata line of a guidance file: the settings that produced it (with the search
    strategy and a hash of the guidance instruction)."""

    KIND = GUIDANCE_KIND
    VERSION = GUIDANCE_VERSION
    HEADER_NAME = "guidance"
    FILE_NAME = "guidance file"

    strategy: str = "linear"
    instruction_sha: str = ""


@dataclasses.dataclass
class GuidanceFile(HeadedFile):
    """A loaded guidance file: its :class:`GuidanceHeader`, one :class:`GuidanceRecord` per
    problem, and the bad lines skipped."""

    def __getitem__(self, problem_id: str) -> GuidanceRecord:
        from pope_env.errors import UnknownNameError

        try:
            return self.records[problem_id]
        except KeyError:
            raise UnknownNameError(f"problem in guidance file {self.path}", problem_id,
                                   tuple(self.records)) from None

    def __contains__(self, problem_id: object) -> bool:
        return problem_id in self.records

    def __len__(self) -> int:
        return len(self.records)


def load_guidance(
    path: PathLike, *, dataset: str | None = None, strict: bool = False
) -> GuidanceFile:
    """Read a guidance file.

    Args:
        path: The JSONL file.
        dataset: If given, the file must have been made for this dataset
            (:class:`GuidanceFileError` naming both otherwise).
        strict: Raise on the first corrupted line instead of warning and skipping it.

    Raises:
        GuidanceFileError: missing or unreadable header, a dataset mismatch, or (strict) a
            corrupted line; messages give the file and line number.
    """
    path = Path(path)
    if not path.is_file():
        raise GuidanceFileError(f"guidance file {path} does not exist; make one with "
                                "`pope-env prefix-search ... --out FILE`")
    header, parsed, bad = read_headed_jsonl(
        path, GuidanceHeader.from_json, GuidanceRecord.from_json, kind="guidance",
        redo_hint="re-run the search to redo that problem", strict=strict, error=GuidanceFileError,
        dataset=dataset, remake_hint=f"use a guidance file searched on {dataset!r}",
    )
    records = {record.problem_id: record for record in parsed}
    return GuidanceFile(path, header, records, bad)
