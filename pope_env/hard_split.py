"""The hard split: problems the base policy never solves in k samples (pass@k = 0).

POPE defines "hard" by measurement: a problem is hard for a policy when none of ``k``
unguided samples is correct. :func:`run_hard_split` measures every problem of a dataset with
the same seeded sampler as the prefix search (:class:`~pope_env.probe.PrefixProbe`
at roll-in state ``i = 0``), stopping a problem at its first success (it is then not hard),
and appends one line per problem to a split file, so a crash loses at most the problems in
flight and a re-run skips finished problems. With ``batch_size=N`` it keeps ``N`` problems
in flight and draws their chunks in lockstep rounds (one batched call per round with a
policy that has ``generate_seeded``; :mod:`pope_env.lockstep`); the file is the same as with
``batch_size=1``.

Split file (JSONL), accepted by ``POPE-Math-Hard-v0`` / ``-Guided-v0`` (``split_file=``)
and by ``pope-env prefix-search --split``::

    {"kind": "pope-hard-split", "version": 1, "dataset": "math-train-l5", "model": "smollm2",
     "k": 8, "seed": 0, "chunk_size": 2, "prompt_format": "chat",
     "sampling": {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 512}}
    {"problem_id": "...", "hard": true, "successes": 0, "samples": 8}
    {"problem_id": "...", "hard": false, "successes": 1, "samples": 2}

Every measured problem has a line (``hard`` false ones too), so the file doubles as the
resume log and as a record of the base policy's pass@k on the dataset.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pope_env.errors import GuidanceFileError
from pope_env.guidance_file import Measurement, SampledFileHeader
from pope_env.io import HeadedFile, JsonlAppender, PathLike, read_headed_jsonl
from pope_env.probe import PrefixProbe, ProbeSettings, open_measured_file
from pope_env.problem import Problem

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

    from pope_env.agents.policy import Policy

SPLIT_KIND = "pope-hard-split"
SPLIT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class SplitHeader(SampledFileHeader):
    """The metadata line of a split file: the settings that produced it."""

    KIND = SPLIT_KIND
    VERSION = SPLIT_VERSION
    HEADER_NAME = "hard-split"
    FILE_NAME = "split file"


@dataclasses.dataclass(frozen=True)
class SplitRecord:
    """One measured problem: ``hard`` iff ``successes == 0`` over ``samples == k``."""

    problem_id: str
    hard: bool
    successes: int
    samples: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "SplitRecord":
        record = cls(str(d["problem_id"]), bool(d["hard"]), int(d["successes"]), int(d["samples"]))
        if record.hard != (record.successes == 0):
            raise ValueError(f"hard={record.hard} contradicts successes={record.successes}")
        return record


@dataclasses.dataclass
class HardSplit(HeadedFile):
    """A loaded split file: its :class:`SplitHeader`, one :class:`SplitRecord` per problem,
    and the bad lines skipped."""

    @property
    def hard_ids(self) -> list[str]:
        """Ids of the hard problems, in file order."""
        return [pid for pid, r in self.records.items() if r.hard]

    def __len__(self) -> int:
        return len(self.hard_ids)


def load_split(path: PathLike, *, dataset: str | None = None, strict: bool = False) -> HardSplit:
    """Read a split file; ``dataset`` (if given) must match its header.

    Raises:
        GuidanceFileError: missing file or header, a dataset mismatch, or (strict) a
            corrupted line, naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise GuidanceFileError(f"split file {path} does not exist; make one with "
                                "`pope-env hard-split ... --out FILE`")
    header, parsed, bad = read_headed_jsonl(
        path, SplitHeader.from_json, SplitRecord.from_json, kind="split", header_kind="hard-split",
        redo_hint="re-run hard-split to redo that problem", strict=strict, error=GuidanceFileError,
        dataset=dataset, remake_hint=f"make a split of {dataset!r} with `pope-env hard-split --dataset {dataset}`",
    )
    records = {record.problem_id: record for record in parsed}
    return HardSplit(path, header, records, bad)


def run_hard_split(
    problems: Sequence[Problem],
    policy: "Policy",
    *,
    dataset: str,
    out: PathLike,
    progress: bool = True,
    batch_size: int = 1,
    **probe_settings: Unpack[ProbeSettings],
) -> HardSplit:
    """Measure unguided pass@k of every problem and write the split file ``out`` (resumable).

    Arguments are those of :func:`pope_env.prefix_search.run_prefix_search` (``k`` samples
    per problem, default 8; ``seed``, ``scorer``, ``sampling``, ``chunk_size``, ``config``
    and ``prompt_format`` as :class:`~pope_env.probe.PrefixProbe` takes them); a
    problem is sampled in chunks and stops at its first success. ``batch_size`` (default 1: one problem
    after the other) problems are measured in lockstep rounds, one chunk per problem still
    without a success per round, a problem leaving at its first success and the next one
    taking its place (:mod:`pope_env.lockstep`); with a policy that has ``generate_seeded``
    each round is one batched call. The file is the same for every ``batch_size`` (lines in
    list order).

    Raises:
        GuidanceFileError: ``out`` exists with other settings (the mismatch is named).
        ConfigError: ``k < 1``, a bad ``chunk_size`` / ``prompt_format`` / ``batch_size``, or
            (batched) repeated problem ids.
        TypeError: an unknown keyword.
    """
    from pope_env.lockstep import check_batch_size, run_in_lockstep

    check_batch_size(batch_size)
    path = Path(out)
    probe, done = open_measured_file(path, policy, lambda fields: SplitHeader(dataset=dataset, **fields), load_split,
                                     dataclasses.asdict, probe_settings, owner="run_hard_split")

    from tqdm.auto import tqdm

    remaining = [p for p in problems if p.id not in done]
    bar = tqdm(total=len(problems), initial=len(problems) - len(remaining), desc="hard split",
               unit="problem", disable=not progress)
    n_hard = 0

    def measure(problem: Problem, p: PrefixProbe) -> Measurement:
        m = p.measure(problem, 0, early_stop=True)
        p.forget(problem)
        return m

    with JsonlAppender(path) as sink:

        def write(problem: Problem, m: Measurement) -> None:
            nonlocal n_hard
            record = SplitRecord(problem.id, m.successes == 0, m.successes, m.samples)
            sink.append(dataclasses.asdict(record))
            n_hard += record.hard
            bar.update(1)
            bar.set_postfix(hard=n_hard, refresh=False)

        if batch_size > 1:
            run_in_lockstep(remaining, probe, measure, batch_size=batch_size, on_result=write)
        else:
            for problem in remaining:
                write(problem, measure(problem, probe))
    bar.close()
    return load_split(path, dataset=dataset)
