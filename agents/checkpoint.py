"""Trainer checkpoints: atomic writes, the ``latest`` pointer, and fingerprints that refuse a
resume under another model or config.

Layout under ``output_dir/checkpoints/``::

    latest                  one line: the name of the newest complete checkpoint
    step-0000042/           accelerate's save_state (model, optimiser, RNG states) plus
        trainer_state.json  {"step", "fingerprint", "process_states", ...the trainer's counters}

A checkpoint is written to ``.step-NNNNNNN.tmp/``, fsynced and renamed into place, then
``latest`` is replaced atomically and older checkpoints are removed; a crash or a full disk
while writing leaves the previous checkpoint intact (leftover ``.tmp`` folders are removed at
the next start). :class:`CheckpointStore` holds these mechanics; what goes into
``trainer_state.json`` is the trainer's business (:mod:`pope_env.agents.train`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from pope_env.errors import ConfigError, PopeEnvError
from pope_env.io import JsonlAppender, atomic_write_json, atomic_write_text


class CheckpointError(PopeEnvError, OSError):
    """A checkpoint could not be written or read."""


def model_fingerprint(model: torch.nn.Module) -> dict[str, Any]:
    """Class, parameter count and a hash of parameter names and shapes."""
    shapes = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
    digest = hashlib.sha256(repr(shapes).encode()).hexdigest()[:16]
    return {"class": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()), "shapes": digest}


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def fingerprint_diff(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """Human-readable differences ``key: saved -> now``."""
    a, b = _flat(saved), _flat(now)
    return [f"{k}: {a.get(k, '<unset>')!r} (checkpoint) vs {b.get(k, '<unset>')!r} (now)"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


class CheckpointStore:
    """The checkpoints of one run under ``root``, written and read through ``accelerator``.

    Args:
        root: The checkpoints folder (``output_dir/checkpoints``).
        accelerator: The run's ``accelerate.Accelerator``; every process calls :meth:`save`
            and :meth:`load_latest`, the main process writes the files.
    """

    def __init__(self, root: str | os.PathLike[str], accelerator: Any) -> None:
        self.root = Path(root)
        self.accelerator = accelerator

    def has_checkpoints(self) -> bool:
        return self.root.exists() and any(self.root.glob("step-*"))

    def latest_name(self) -> str | None:
        """The name in the ``latest`` pointer, or ``None`` before the first checkpoint."""
        pointer = self.root / "latest"
        if not pointer.exists():
            return None
        return pointer.read_text().strip() or None

    def save(self, step: int, state: Mapping[str, Any], process_state: Mapping[str, Any],
             logs: Sequence[JsonlAppender] = ()) -> None:
        """Write the checkpoint of ``step`` atomically, after making ``logs`` durable (a
        checkpoint must never be ahead of the log records it resumes after).

        ``state`` (JSON; main process) and every process's ``process_state`` (gathered) go
        into ``trainer_state.json`` next to accelerate's own state.
        """
        from accelerate.utils import gather_object

        acc = self.accelerator
        states = gather_object([dict(process_state)]) if acc.num_processes > 1 else [dict(process_state)]
        name = f"step-{step:07d}"
        final = self.root / name
        tmp = self.root / f".{name}.tmp"
        previous = self.latest_name()
        try:
            for f in logs:
                f.sync()
            if acc.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
            acc.wait_for_everyone()
            acc.save_state(str(tmp), safe_serialization=False)
            if acc.is_main_process:
                atomic_write_json(tmp / "trainer_state.json", {"step": step, **state, "process_states": states})
                _fsync_tree(tmp)
                if final.exists():  # re-saving a step (resumed exactly at it): swap it out
                    shutil.rmtree(final)
                os.replace(tmp, final)
                atomic_write_text(self.root / "latest", name + "\n")
                for old in self.root.glob("step-*"):
                    if old.name != name:
                        shutil.rmtree(old, ignore_errors=True)
        except OSError as exc:
            if acc.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)
            kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint exists"
            raise CheckpointError(
                f"could not write checkpoint {final} ({exc}); {kept}. Free disk space and re-run to resume"
            ) from exc
        acc.wait_for_everyone()

    def load_latest(self, fingerprint: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Load the latest checkpoint into the accelerator's objects.

        Returns ``(trainer_state, this process's process_state)``, or ``None`` when there is
        no checkpoint. Raises :class:`ConfigError` when the checkpoint's fingerprint differs
        from ``fingerprint`` (naming the differences) and :class:`CheckpointError` when it is
        incomplete.
        """
        acc = self.accelerator
        if acc.is_main_process and self.root.exists():
            for stale in self.root.glob(".step-*.tmp"):  # a crash while writing one
                shutil.rmtree(stale, ignore_errors=True)
        name = self.latest_name()
        if name is None:
            return None
        path = self.root / name
        state_file = path / "trainer_state.json"
        if not state_file.exists():
            raise CheckpointError(f"checkpoint {path} is incomplete (no trainer_state.json); delete it and its 'latest' pointer")
        state = json.loads(state_file.read_text())
        diff = fingerprint_diff(state["fingerprint"], fingerprint)
        if diff:
            raise ConfigError(
                f"refusing to resume from {path}: it was written for another model or config:\n  "
                + "\n  ".join(diff)
                + "\nUse the same settings, or another output_dir for a new run."
            )
        acc.load_state(str(path))
        return state, state["process_states"][acc.process_index]


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(dirpath, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
