"""User data: JSONL / JSON / parquet files and Hugging Face datasets (hub or a local
``save_to_disk`` directory), turned into :class:`~pope_env.problem.Problem` records.

Record fields (names can be remapped with ``columns={"question": "prompt", ...}``):

========== ============================================ =====================================
field      default source columns (first present)       if missing
========== ============================================ =====================================
question   ``question``, ``problem``, ``prompt``          error
solution   ``solution``                                 ``"".join(steps)``; error if no steps
steps      ``steps`` (list of strings)                  ``split_solution(solution)``
answer     ``answer``                                   last ``\\boxed{}`` of the solution; error
id         ``id``, ``unique_id``                          ``<name>/<record index>``
level      ``level`` (``3`` or ``"Level 3"``)             ``None``
subject    ``subject``, ``type``, ``category``            ``None``
========== ============================================ =====================================

When both ``steps`` and ``solution`` are given, the steps must appear in the solution in
order with only whitespace between them (that whitespace is attached to the step before
it so ``"".join(steps) == solution``); otherwise the record is rejected. Ids must be unique.
Every error names the file and line (JSONL) or record index.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pope_env.errors import ConfigError, DataFormatError, require
from pope_env.problem import Problem
from pope_env.rewards.boxed import last_boxed
from pope_env.solution_steps import split_solution

__all__ = ["load_file", "load_hf", "records_to_problems", "FIELDS"]

DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "question": ("question", "problem", "prompt"),
    "solution": ("solution",),
    "steps": ("steps",),
    "answer": ("answer",),
    "id": ("id", "unique_id"),
    "level": ("level",),
    "subject": ("subject", "type", "category"),
}
FIELDS = tuple(DEFAULT_COLUMNS)


def _check_columns(columns: Mapping[str, str] | None) -> dict[str, str]:
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown field(s) {unknown} in columns=; map any of {list(FIELDS)}")
    return columns


def _get(record: Mapping[str, Any], field: str, columns: Mapping[str, str]) -> Any:
    if field in columns:
        return record.get(columns[field])
    for name in DEFAULT_COLUMNS[field]:
        if record.get(name) is not None:
            return record[name]
    return None


def _align_steps(steps: list[str], solution: str) -> tuple[str, ...] | None:
    """Steps re-cut so they join to ``solution`` exactly (whitespace between steps goes to
    the step before), or ``None`` if the steps are not the solution's text in order."""
    out: list[str] = []
    pos = 0
    for step in steps:
        core = step.strip()
        j = solution.find(core, pos) if core else pos
        if j < 0 or solution[pos:j].strip():
            return None
        if out:
            out[-1] += solution[pos:j]
        elif j > pos:
            core = solution[pos:j] + core
        out.append(core)
        pos = j + len(step.strip())
    if solution[pos:].strip():
        return None
    if out:
        out[-1] += solution[pos:]
    return tuple(out)


def _level(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    m = re.search(r"\d+", str(value))
    return int(m.group()) if m else None


def records_to_problems(
    records: Iterable[tuple[str, Mapping[str, Any]]],
    *,
    name: str,
    source: str,
    columns: Mapping[str, str] | None = None,
) -> list[Problem]:
    """Problems from ``(where, record)`` pairs; ``where`` (e.g. ``"data.jsonl:12"``) is used
    in error messages; ``name`` prefixes generated ids (``"<name>/<index>"``)."""
    columns = _check_columns(columns)
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for index, (where, record) in enumerate(records):
        if not isinstance(record, Mapping):
            raise DataFormatError(f"{where}: expected an object with a question, got {type(record).__name__}")

        def missing(field: str) -> DataFormatError:
            tried = [columns[field]] if field in columns else list(DEFAULT_COLUMNS[field])
            return DataFormatError(
                f"{where}: no {field} (looked for {tried}; record has {sorted(record)[:12]}); "
                f"map a column with columns={{'{field}': 'COLUMN'}}"
            )

        question = _get(record, "question", columns)
        if not isinstance(question, str) or not question.strip():
            raise missing("question")
        solution = _get(record, "solution", columns)
        raw_steps = _get(record, "steps", columns)
        if raw_steps is not None:
            if not isinstance(raw_steps, (list, tuple)) or not all(isinstance(s, str) for s in raw_steps):
                raise DataFormatError(f"{where}: steps must be a list of strings")
            raw_steps = [s for s in raw_steps if s.strip()]
        if solution is not None and not isinstance(solution, str):
            raise DataFormatError(f"{where}: solution must be a string, got {type(solution).__name__}")
        if not solution and not raw_steps:
            raise missing("solution")
        if raw_steps and solution:
            steps = _align_steps(list(raw_steps), solution)
            if steps is None:
                raise DataFormatError(
                    f"{where}: the steps are not the solution's text in order; give only one "
                    "of them, or make the steps join (up to whitespace) to the solution"
                )
        elif raw_steps:
            steps = tuple(s.strip() + " " for s in raw_steps[:-1]) + (raw_steps[-1].strip(),)
            solution = "".join(steps)
        else:
            steps = split_solution(solution)
        answer = _get(record, "answer", columns)
        answer = str(answer).strip() if answer is not None and str(answer).strip() else last_boxed(solution)
        if not answer:
            raise DataFormatError(
                f"{where}: no answer field and no \\boxed{{}} answer in the solution; "
                "add an 'answer' field or map one with columns={'answer': 'COLUMN'}"
            )
        raw_id = _get(record, "id", columns)
        pid = str(raw_id) if raw_id is not None else f"{name}/{index}"
        if pid in seen:
            raise DataFormatError(f"{where}: duplicate problem id {pid!r} (first at {seen[pid]})")
        seen[pid] = where
        subject = _get(record, "subject", columns)
        problems.append(
            Problem(
                id=pid,
                question=question,
                solution=solution,
                steps=steps,
                answer=answer,
                source=source,
                level=_level(_get(record, "level", columns)),
                subject=str(subject) if subject is not None else None,
            )
        )
    return problems


def _jsonl_records(path: Path) -> Iterator[tuple[str, Any]]:
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataFormatError(f"{path}:{lineno}: not valid UTF-8 ({exc})") from exc
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise DataFormatError(
                    f"{path}:{lineno}: malformed JSONL line ({exc}); fix or delete that line"
                ) from exc
            yield f"{path}:{lineno}", record


def load_file(path: str | Path, *, columns: Mapping[str, str] | None = None) -> list[Problem]:
    """Problems from a ``.jsonl``, ``.json`` (a list of records, or an object with a
    ``data``/``problems``/``records`` list) or ``.parquet`` file.

    Raises:
        DataFormatError: unreadable file, malformed line (named), missing fields.
        ConfigError: the file does not exist or has another extension.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"data file {path} does not exist")
    suffix = path.suffix.lower()
    name = path.stem
    if suffix in (".jsonl", ".ndjson"):
        records: Iterable[tuple[str, Any]] = _jsonl_records(path)
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataFormatError(f"{path}: not valid JSON ({exc})") from exc
        if isinstance(data, Mapping):
            data = next((data[k] for k in ("data", "problems", "records") if isinstance(data.get(k), list)), None)
        if not isinstance(data, list):
            raise DataFormatError(f"{path}: expected a JSON list of records (or {{'data': [...]}})")
        records = ((f"{path}[{i}]", r) for i, r in enumerate(data))
    elif suffix == ".parquet":
        pq = require("pyarrow.parquet", "data")
        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as exc:
            raise DataFormatError(f"{path}: cannot read parquet ({exc})") from exc
        records = ((f"{path} row {i}", r) for i, r in enumerate(rows))
    else:
        raise ConfigError(f"{path}: unsupported extension {suffix!r}; use .jsonl, .json or .parquet")
    return records_to_problems(records, name=name, source=f"file:{name}", columns=columns)


def load_hf(spec: str, *, columns: Mapping[str, str] | None = None) -> list[Problem]:
    """Problems from a Hugging Face dataset: ``NAME[:SPLIT]`` from the hub (needs network)
    or ``DIR[:SPLIT]``, a local directory written by ``Dataset.save_to_disk`` or
    ``DatasetDict.save_to_disk``. ``SPLIT`` defaults to ``train`` (or the only split)."""
    datasets = require("datasets", "data")
    target, split = spec, None
    if not Path(spec).expanduser().exists() and ":" in spec:
        target, split = spec.rsplit(":", 1)
    local = Path(target).expanduser()
    if local.is_dir():
        try:
            ds = datasets.load_from_disk(str(local))
        except Exception as exc:
            raise DataFormatError(f"{local}: not a dataset saved with save_to_disk ({exc})") from exc
        if isinstance(ds, datasets.DatasetDict):
            names = list(ds)
            chosen = split or ("train" if "train" in ds else names[0] if len(names) == 1 else None)
            if chosen not in ds:
                raise ConfigError(f"{local} has splits {names}; choose one with hf:{local}:SPLIT")
            ds = ds[chosen]
        elif split is not None:
            raise ConfigError(f"{local} holds a single split; drop ':{split}'")
        name = local.name
    else:
        try:
            ds = datasets.load_dataset(target, split=split or "train")
        except Exception as exc:
            raise DataFormatError(
                f"cannot load Hugging Face dataset {target!r} split {split or 'train'!r} ({exc}); "
                "offline, save it with save_to_disk elsewhere and pass hf:DIR"
            ) from exc
        name = target.replace("/", "_")
    rows = ((f"{spec} row {i}", r) for i, r in enumerate(ds))
    return records_to_problems(rows, name=name, source=f"hf:{name}", columns=columns)
