"""Export the POPE training set for other RL engines (TRL, verl) or as plain JSONL.

POPE trains on the hard problems of a dataset (pass@k = 0 for the base model, measured by
``pope-env hard-split``), each one unguided *and* guided with its shortest working oracle
prefix ``i*`` (found by ``pope-env prefix-search``), exactly 1:1. :func:`export_pope` writes
that set as rows an engine trains on directly:

* for every hard problem two rows, next to each other: the unguided problem (roll-in state
  0) and the guided one (oracle steps ``z[start:start+prefix_len]`` shown, i.e. ``z[:i*]``,
  or, for a problem whose search found no prefix, the same seeded fallback segment the envs
  and the trainer use, flagged ``fallback=True``);
* prompts are built by :mod:`pope_env.guidance`, so they are the exact text pope-env's envs
  and trainer use (chat messages; ``prompt_format="text"`` for plain text);
* the pairs are put in a seeded random order, so an engine that reads the file in order
  (TRL ``shuffle_dataset=False``, verl ``data.shuffle=False``) sees exactly one guided row
  per unguided row in every batch of an even number of prompts; with the engine's own
  shuffling the share is 1:1 over the epoch.

Row fields (the ``jsonl`` format writes them as they are):

    problem_id    str    the dataset's problem id
    guided        bool   False for the unguided row, True for the guided one (False too when
                         the guidance is empty: a fallback segment [0, 0] shows no step)
    prefix_len    int    oracle steps shown (0 unguided; i* or the fallback's length guided)
    prefix_start  int    first oracle step shown (0 but for a fallback segment)
    fallback      bool   the guided row shows the fallback segment (no prefix worked)
    i_star        int|None  the verified i* (None for a fallback problem)
    prompt        list[{"role", "content"}] (or str with prompt_format="text")
    answer        str    the gold final answer (checked by the math reward)
    dataset       str    the dataset name the split and guidance were made on

Formats (:data:`FORMATS`):

``trl``
    Columns ``prompt`` (conversational), ``answer`` and the metadata above, for TRL's
    ``GRPOTrainer``; TRL passes the extra columns to reward functions as keyword
    arguments (:func:`pope_env.rewards.math.math_reward` reads ``answer``). Written as a
    ``datasets`` folder (``save_to_disk``; load with ``datasets.load_from_disk``), or as
    JSONL when ``out`` ends in ``.jsonl`` (``datasets.load_dataset("json", ...)``).
``verl``
    Parquet in verl's RL dataset schema (``verl.utils.dataset.rl_dataset.RLHFDataset``):
    ``data_source``, ``prompt`` (chat messages), ``ability="math"``,
    ``reward_model={"style": "rule", "ground_truth": answer}`` and ``extra_info`` (the
    metadata above plus ``split`` and ``index``). Score it with
    :func:`pope_env.rewards.verl.compute_score`.
``jsonl``
    The rows above, one JSON object per line.

Re-running. The export is fast (it builds prompts; no model runs), so it is not resumed
piece by piece: the output is written atomically (all or nothing) together with a manifest
``<out>.pope-export.json`` that records the sha256 of the split and guidance files and
every option. A re-run with the same inputs finds the manifest and does nothing; after the
prefix search has finished more problems (its guidance file changed) a re-run writes the
whole set again. An existing ``out`` without such a manifest is never overwritten unless
``overwrite=True``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pope_env.errors import ConfigError, GuidanceFileError, UnknownNameError
from pope_env.guidance import DEFAULT_CONFIG, GuidanceConfig, guided_messages, guided_text
from pope_env.io import PathLike, atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_file
from pope_env.problem import Problem

__all__ = ["FORMATS", "EXPORT_KIND", "ExportResult", "build_rows", "export_pope", "manifest_path"]

FORMATS = ("trl", "verl", "jsonl")
EXPORT_KIND = "pope-export"
EXPORT_VERSION = 1
MANIFEST_SUFFIX = ".pope-export.json"
DEFAULT_DATA_SOURCE_PREFIX = "pope-env/"


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What :func:`export_pope` did.

    Attributes:
        out: The output file or folder.
        format: ``"trl"``, ``"verl"`` or ``"jsonl"``.
        rows: Rows in the output (two per exported problem).
        problems: Hard problems exported.
        fallback: Of those, problems guided with the fallback segment.
        skipped: Hard problems left out because the guidance file has no record of them
            (only with ``skip_missing=True``).
        up_to_date: True when the output already matched the inputs and nothing was written.
    """

    out: Path
    format: str
    rows: int
    problems: int
    fallback: int
    skipped: tuple[str, ...] = ()
    up_to_date: bool = False


def manifest_path(out: PathLike) -> Path:
    """The manifest written next to an export: ``<out>.pope-export.json``."""
    out = Path(out)
    return out.with_name(out.name + MANIFEST_SUFFIX)


def _instruction_sha(config: GuidanceConfig) -> str:
    return hashlib.sha256(config.instruction.encode()).hexdigest()[:12]


def build_rows(
    problems: Sequence[Problem],
    split: Any,
    guidance: Any,
    *,
    dataset: str,
    config: GuidanceConfig = DEFAULT_CONFIG,
    prompt_format: str = "chat",
    seed: int = 0,
    skip_missing: bool = False,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The POPE rows (see the module docstring) and the ids of skipped hard problems.

    Args:
        problems: The dataset's problems (every hard id of ``split`` must be among them).
        split: A loaded split file (:func:`pope_env.hard_split.load_split`).
        guidance: A loaded guidance file (:func:`pope_env.guidance_file.load_guidance`).
        dataset: The dataset name (recorded in every row).
        config: Prompt wording; must be the wording the search used.
        prompt_format: ``"chat"`` (messages) or ``"text"``.
        seed: Seed of the pair order.
        skip_missing: Leave out hard problems without a guidance record instead of raising.

    Raises:
        UnknownNameError: a hard problem of the split is not in ``problems``.
        GuidanceFileError: a hard problem has no guidance record (and not ``skip_missing``),
            or a record does not fit its problem (the dataset changed since the search).
        ConfigError: an unknown ``prompt_format``.
    """
    if prompt_format not in ("chat", "text"):
        raise ConfigError(f"prompt_format must be 'chat' or 'text', got {prompt_format!r}")
    render = guided_messages if prompt_format == "chat" else guided_text
    by_id = {p.id: p for p in problems}
    hard_ids = split.hard_ids
    unknown = [pid for pid in hard_ids if pid not in by_id]
    if unknown:
        raise UnknownNameError(f"problem of dataset {dataset!r} (named by split file {split.path})",
                               unknown[0], tuple(by_id))
    missing = [pid for pid in hard_ids if pid not in guidance]
    if missing and not skip_missing:
        raise GuidanceFileError(
            f"{len(missing)} of {len(hard_ids)} hard problems have no record in guidance file "
            f"{guidance.path} (e.g. {missing[0]!r}); finish the search with `pope-env prefix-search "
            f"--split {split.path} --out {guidance.path}` (it resumes), or pass --skip-missing "
            "to export only the searched problems"
        )
    order = [pid for pid in hard_ids if pid in guidance]
    random.Random(seed).shuffle(order)
    rows: list[dict[str, Any]] = []
    for pid in order:
        problem, record = by_id[pid], guidance[pid]
        if record.n_steps != len(problem.steps):
            raise GuidanceFileError(
                f"guidance record of {pid!r} in {guidance.path} was made for a solution of "
                f"{record.n_steps} steps, but the problem now has {len(problem.steps)}; the "
                "dataset changed since the search: re-run `pope-env prefix-search` on it"
            )
        base = {"problem_id": pid, "answer": problem.answer, "dataset": dataset,
                "fallback": record.fallback, "i_star": record.i_star}
        rows.append({**base, "guided": False, "prefix_len": 0, "prefix_start": 0,
                     "prompt": render(problem, 0, config)})
        rows.append({**base, "guided": record.prefix_len > 0, "prefix_len": record.prefix_len,
                     "prefix_start": record.start,
                     "prompt": render(problem, record.prefix_len, config, start=record.start)})
    return rows, missing if skip_missing else []


# --------------------------------------------------------------------------- formats


def trl_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for TRL: ``prompt`` and ``answer`` first, then the metadata columns."""
    keys = ("prompt", "answer", "problem_id", "guided", "prefix_len", "prefix_start", "fallback",
            "i_star", "dataset")
    return [{k: r[k] for k in keys} for r in rows]


def verl_rows(rows: Sequence[dict[str, Any]], *, data_source: str) -> list[dict[str, Any]]:
    """Rows in verl's RL dataset schema (see ``examples/data_preprocess/gsm8k.py`` in verl)."""
    out = []
    for index, r in enumerate(rows):
        if not isinstance(r["prompt"], list):
            raise ConfigError("verl's RLHFDataset needs chat prompts; export with prompt_format='chat'")
        out.append({
            "data_source": data_source,
            "prompt": r["prompt"],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": r["answer"]},
            "extra_info": {
                "split": "train", "index": index, "problem_id": r["problem_id"],
                "guided": r["guided"], "prefix_len": r["prefix_len"],
                "prefix_start": r["prefix_start"], "fallback": r["fallback"],
                # parquet wants one type per field: -1 stands for "no i*" (a fallback problem)
                "i_star": -1 if r["i_star"] is None else r["i_star"],
                "dataset": r["dataset"],
            },
        })
    return out


def _jsonl_bytes(rows: Sequence[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def _parquet_bytes(rows: Sequence[dict[str, Any]]) -> bytes:
    from pope_env.errors import require

    pa = require("pyarrow", "data")
    import io

    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(list(rows)), buf)
    return buf.getvalue()


def _save_dataset_folder(rows: Sequence[dict[str, Any]], out: Path) -> None:
    """``datasets.Dataset.save_to_disk`` into a temp folder beside ``out``, then swap it in."""
    from pope_env.errors import require

    datasets = require("datasets", "data")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old = None
    try:
        datasets.Dataset.from_list(list(rows)).save_to_disk(str(tmp / "data"))
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
        os.replace(tmp / "data", out)
    except BaseException:
        if old is not None and not out.exists():
            os.replace(old, out)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists():
            _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _write(rows: Sequence[dict[str, Any]], out: Path, fmt: str, data_source: str) -> str:
    """Write ``rows`` in ``fmt``; returns the container written (jsonl, parquet, folder)."""
    if out.is_dir() and not (fmt == "trl" and out.suffix != ".jsonl"):
        _remove(out)  # an earlier export to this path was a folder (only reached when it was ours)
    if fmt == "jsonl":
        atomic_write_bytes(out, _jsonl_bytes(rows))
        return "jsonl"
    if fmt == "verl":
        atomic_write_bytes(out, _parquet_bytes(verl_rows(rows, data_source=data_source)))
        return "parquet"
    if out.suffix == ".jsonl":
        atomic_write_bytes(out, _jsonl_bytes(trl_rows(rows)))
        return "jsonl"
    _save_dataset_folder(trl_rows(rows), out)
    return "datasets-folder"


# --------------------------------------------------------------------------- the export


def export_pope(
    *,
    split_file: PathLike,
    guidance_file: PathLike,
    out: PathLike,
    format: str,
    dataset: str | None = None,
    problems: Sequence[Problem] | None = None,
    config: GuidanceConfig = DEFAULT_CONFIG,
    prompt_format: str | None = None,
    seed: int = 0,
    skip_missing: bool = False,
    data_source: str | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write the POPE training set of a hard split and its guidance file (see the module docstring).

    Args:
        split_file: A ``pope-env hard-split`` file.
        guidance_file: A ``pope-env prefix-search`` file made on the same dataset.
        out: The output: a file (``jsonl``, ``verl``: parquet, ``trl`` ending in ``.jsonl``)
            or a folder (``trl``: a ``datasets`` folder).
        format: One of :data:`FORMATS`.
        dataset: The dataset name; default the one both files' headers record. Given, it
            must match them.
        problems: The dataset's problems (default: ``load_dataset(dataset)``).
        config: Prompt wording; must be the wording the search used (its header records a
            hash of the instruction).
        prompt_format: ``"chat"`` or ``"text"``; default the guidance header's. ``verl``
            needs ``"chat"``.
        seed: Seed of the pair order.
        skip_missing: Export only the hard problems the guidance file has a record of.
        data_source: verl's ``data_source`` column (default ``"pope-env/<dataset>"``).
        overwrite: Replace an existing ``out`` that has no export manifest.

    Raises:
        GuidanceFileError: a missing or corrupt file, files made on different datasets (or
            another dataset than ``dataset``), a hard problem without guidance, a guidance
            file searched with other prompts.
        ConfigError: an unknown format, a prompt format the format cannot hold, or an
            ``out`` that exists and was not written by an export.
    """
    from pope_env.hard_split import load_split
    from pope_env.guidance_file import load_guidance

    if format not in FORMATS:
        raise ConfigError(f"format must be one of {FORMATS}, got {format!r}")
    out = Path(out)
    split = load_split(split_file, strict=True)
    # a search still running may have left a torn last line: with skip_missing that problem
    # is skipped like any unsearched one (with a warning), otherwise the file must be clean
    guidance = load_guidance(guidance_file, strict=not skip_missing)
    made_on = {"split file": (split_file, split.header.dataset),
               "guidance file": (guidance_file, guidance.header.dataset)}
    if split.header.dataset != guidance.header.dataset:
        raise GuidanceFileError(
            f"guidance file {guidance_file} was made on dataset {guidance.header.dataset!r} but "
            f"split file {split_file} on {split.header.dataset!r}; use the guidance file of a "
            f"prefix search on this split (`pope-env prefix-search --split {split_file}`)"
        )
    if dataset is not None:
        for what, (path, name) in made_on.items():
            if name != dataset:
                raise GuidanceFileError(
                    f"{what} {path} was made on dataset {name!r}, not {dataset!r}; pass the "
                    f"files made on {dataset!r} (or --dataset {name})"
                )
    dataset = split.header.dataset
    if guidance.header.instruction_sha and guidance.header.instruction_sha != _instruction_sha(config):
        raise GuidanceFileError(
            f"guidance file {guidance_file} was searched with another guidance instruction "
            f"(sha {guidance.header.instruction_sha}, this export's is {_instruction_sha(config)}); "
            "pass the GuidanceConfig the search used, or search again with this one"
        )
    if prompt_format is None:
        prompt_format = guidance.header.prompt_format
        if prompt_format not in ("chat", "text"):
            raise ConfigError(
                f"guidance file {guidance_file} was searched with prompt_format "
                f"{prompt_format!r}, which an export cannot rebuild; pass prompt_format='chat' "
                "(CLI: --prompt-format chat) to export pope-env's chat prompts anyway"
            )
    if format == "verl" and prompt_format != "chat":
        raise ConfigError("verl's RLHFDataset reads chat prompts: use prompt_format='chat' "
                          "(CLI: --prompt-format chat) with --format verl")
    data_source = data_source or f"{DEFAULT_DATA_SOURCE_PREFIX}{dataset}"

    from pope_env import __version__

    manifest = {
        "kind": EXPORT_KIND, "version": EXPORT_VERSION, "pope_env": __version__,
        "format": format, "dataset": dataset,
        "split_file": str(split_file), "split_sha256": sha256_file(split_file),
        "guidance_file": str(guidance_file), "guidance_sha256": sha256_file(guidance_file),
        "options": {"prompt_format": prompt_format, "seed": seed, "skip_missing": skip_missing,
                    "data_source": data_source, "instruction_sha": _instruction_sha(config)},
    }
    mpath = manifest_path(out)
    previous = _read_manifest(mpath)
    if out.exists() and previous is None and not overwrite:
        raise ConfigError(f"{out} exists and was not written by `pope-env export` (no {mpath.name}); "
                          "choose another --out or pass --overwrite")
    if out.exists() and previous is not None and _same_inputs(previous, manifest):
        result = previous["result"]
        return ExportResult(out, format, result["rows"], result["problems"], result["fallback"],
                            tuple(result["skipped"]), up_to_date=True)

    if problems is None:
        from pope_env.datasets import load_dataset

        problems = load_dataset(dataset)
    rows, skipped = build_rows(problems, split, guidance, dataset=dataset, config=config,
                               prompt_format=prompt_format, seed=seed, skip_missing=skip_missing)
    if not rows:
        raise GuidanceFileError(f"nothing to export: split file {split_file} has no hard problem "
                                "with a guidance record")
    n_fallback = sum(r["fallback"] for r in rows if r["guided"])
    # The manifest goes first and is invalidated until the data is in place, so a crash
    # between the two writes can only cause a rewrite, never a stale "up to date".
    if mpath.exists():
        atomic_write_text(mpath, "{}\n")
    manifest["container"] = _write(rows, out, format, data_source)
    manifest["result"] = {"rows": len(rows), "problems": len(rows) // 2, "fallback": n_fallback,
                          "skipped": list(skipped)}
    atomic_write_json(mpath, manifest)
    return ExportResult(out, format, len(rows), len(rows) // 2, n_fallback, tuple(skipped))


def _read_manifest(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _same_inputs(previous: dict[str, Any], current: dict[str, Any]) -> bool:
    keys = ("kind", "version", "pope_env", "format", "dataset", "split_sha256", "guidance_sha256",
            "options")
    return "result" in previous and all(previous.get(k) == current[k] for k in keys)
