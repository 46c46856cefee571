"""pope-env's math reward as a verl custom reward function.

verl calls a custom reward function once per response, as
``compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=..., **reward_kwargs)``
(its reward managers, e.g. ``verl.experimental.reward_loop.reward_manager.naive``); point
verl at this one with (verl >= 0.8 config keys; older versions: drop the ``reward.`` prefix)::

    reward.custom_reward_function.path=pkg://pope_env.rewards.verl
    reward.custom_reward_function.name=compute_score

``pkg://`` imports the installed package; a file path to this module works as well. The
parquet written by ``pope-env export --format verl`` carries the gold answer in
``reward_model.ground_truth`` and the POPE metadata (``guided``, ``prefix_len``, ...) in
``extra_info``.

Reward (unitless): ``score`` is ``1.0`` if the response's final answer (last
``\\boxed{}``, with the fallbacks of :func:`pope_env.rewards.math.extract_answer`) equals
the gold answer according to math-verify, else ``0.0`` -- the same verdict as pope-env's envs
and trainer. Verification runs in worker processes with a hard wall-clock limit per item
(``timeout_s``, default 5 s): a response that makes math-verify hang scores ``0`` and the
worker is replaced, so it cannot stall a training step. The returned dict also holds
``acc`` (same as ``score``), ``format_ok`` (the answer was boxed) and ``timed_out``, each
as ``0.0``/``1.0``, which verl logs as reward metrics.

Options (verl passes ``reward.custom_reward_function.reward_kwargs`` as keyword arguments):
``timeout_s`` (seconds per verification) and ``verify_workers`` (worker processes per
reward process; default ``min(4, CPUs)``: verl runs several reward processes per node, each
with its own pool).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from pope_env.rewards.math import MathVerifier

__all__ = ["compute_score", "DEFAULT_TIMEOUT_S", "default_workers"]

DEFAULT_TIMEOUT_S = 5.0

_verifiers: dict[tuple[float, int], MathVerifier] = {}
_lock = threading.Lock()


def default_workers() -> int:
    """Verifier worker processes per reward process: ``min(4, CPUs this process may use)``."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cpus))


def _verifier(timeout_s: float, workers: int) -> MathVerifier:
    key = (float(timeout_s), int(workers))
    with _lock:
        verifier = _verifiers.get(key)
        if verifier is None:
            import atexit

            verifier = _verifiers[key] = MathVerifier(timeout_s=timeout_s, workers=workers)
            atexit.register(verifier.close)
        return verifier


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict[str, Any] | None = None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    verify_workers: int | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """Score one response against the gold answer (verl's custom reward signature).

    Args:
        data_source: The row's ``data_source`` (any value; the reward is the same for all).
        solution_str: The decoded response.
        ground_truth: The gold answer (``reward_model.ground_truth``); a list or tuple of
            answers counts as correct if any matches.
        extra_info: The row's ``extra_info`` (unused for scoring).
        timeout_s: Wall-clock limit per verification in seconds.
        verify_workers: Worker processes of this process's verifier (default
            :func:`default_workers`).
        **kwargs: Anything else verl passes (ignored).

    Returns:
        ``{"score", "acc", "format_ok", "timed_out"}``, each ``0.0`` or ``1.0``.

    Raises:
        ConfigError: an empty gold answer or a non-positive ``timeout_s``.
    """
    if hasattr(ground_truth, "tolist"):  # a numpy array or scalar from a dataframe
        ground_truth = ground_truth.tolist()
    golds = [str(g) for g in ground_truth] if isinstance(ground_truth, (list, tuple)) else [str(ground_truth)]
    verifier = _verifier(timeout_s, verify_workers or default_workers())
    scores = verifier.score_batch([solution_str] * len(golds), golds)
    best = max(scores, key=lambda s: s.reward)
    return {
        "score": float(best.reward),
        "acc": float(best.correct),
        "format_ok": float(best.format_ok),
        "timed_out": float(any(s.timed_out for s in scores) and not best.correct),
    }
