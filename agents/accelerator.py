"""The trainers' ``accelerate`` set-up.

``accelerate`` keeps one state per process; :func:`make_accelerator` lets trainers with
different mixed-precision settings run one after another in one process.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from pope_env.errors import ConfigError


def make_accelerator(mixed_precision: str) -> Any:
    """An ``Accelerator`` with ``mixed_precision`` (``"auto"``: bf16 on a CUDA GPU that has
    it, else ``"no"``; or ``"no"``, ``"bf16"``, ``"fp16"``).

    ``accelerate`` keeps one process-wide state, and an ``Accelerator`` asking for another
    mixed precision than the state's raises. In a single process whose state another trainer
    left (TRL's ``GRPOTrainer`` run before ours in a notebook, say) that state is reset with a
    warning, so the trainers can run one after another; under a multi-process launch the
    launcher's state is kept and a conflicting setting is a :class:`ConfigError`.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    mp = mixed_precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    if AcceleratorState._shared_state:  # initialised by an earlier Accelerator in this process
        state = AcceleratorState()
        if str(state.mixed_precision) != mp:
            if state.num_processes > 1:
                raise ConfigError(
                    f"accelerate was launched with mixed_precision={state.mixed_precision!s}, but the "
                    f"config asks for {mp!r}; set TrainConfig.mixed_precision (--mixed-precision) to match"
                )
            warnings.warn(
                f"resetting accelerate's process-wide state (mixed_precision={state.mixed_precision!s}, "
                f"left by an earlier trainer) for this trainer's mixed_precision={mp!r}", stacklevel=3,
            )
            # accelerate has no public reset; its own test suite resets the state this way.
            AcceleratorState._reset_state(reset_partial_state=True)
            GradientState._reset_state()
    return Accelerator(mixed_precision=mp)


__all__ = ["make_accelerator"]
