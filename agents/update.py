"""One optimiser step from gradients accumulated over micro-batches, for SFT and GRPO alike.

:func:`accumulate_and_step` is the mechanics both training phases share
(:meth:`~pope_env.agents.train.Trainer` SFT steps and :func:`~pope_env.agents.grpo.grpo_update`):

1. zero the gradients;
2. for each micro-batch, compute its loss (a closure the caller passes in; the loss must
   already be normalised over the *whole* batch of every process, so the parts add up),
   back-propagate it (under ``accelerate``: inside ``no_sync`` except for the last
   micro-batch, and scaled by the number of processes, because DDP averages gradients
   where the per-process sums must add up), and free its graph before the next forward;
3. sum the logged scalars over processes, clip the gradient norm;
4. when the loss or the gradient norm is NaN/inf, skip the step (no parameter or
   optimiser-state change), else take it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch

MicroLoss = Callable[[Sequence[int]], Mapping[str, torch.Tensor]]
"""``loss_fn(indices) -> {"loss": differentiable scalar, other_name: scalar, ...}`` for one
micro-batch (the batch positions ``indices``); every value is summed into the step's totals."""


class StepResult(NamedTuple):
    """What one :func:`accumulate_and_step` did."""

    totals: dict[str, float]
    """Each value of ``loss_fn``'s dicts, summed over micro-batches and processes."""
    grad_norm: float
    """The gradient norm before clipping (0.0 when the backend reports none)."""
    skipped: bool
    """The loss or gradient norm was not finite: no optimiser step was taken."""


def micro_batches(n: int, size: int, order: Sequence[int] | None = None) -> list[list[int]]:
    """``order`` (default ``range(n)``) cut into consecutive index lists of at most ``size``."""
    order = list(range(n)) if order is None else list(order)
    return [order[s : s + size] for s in range(0, n, size)]


def accumulate_and_step(
    loss_fn: MicroLoss,
    n_items: int,
    *,
    micro_batch_size: int,
    optimizer: torch.optim.Optimizer,
    model: torch.nn.Module,
    accelerator: Any = None,
    max_grad_norm: float | None = None,
    order: Sequence[int] | None = None,
) -> StepResult:
    """Accumulate ``loss_fn``'s gradients over micro-batches of this process's ``n_items``,
    clip, and take one optimiser step unless the loss or gradient norm is non-finite.

    Args:
        loss_fn: Computes one micro-batch's loss terms (see :data:`MicroLoss`).
        n_items: This process's batch size.
        micro_batch_size: Items per forward/backward pass.
        optimizer: The (accelerate-prepared) optimiser.
        model: The module being trained (the accelerate-wrapped one under ``accelerate``).
        accelerator: An ``accelerate.Accelerator``, or ``None`` for a plain single process.
        max_grad_norm: Gradient clipping threshold (``None``: no clipping, norm still measured).
        order: The items in the order micro-batches take them (default: as given); e.g. sorted
            by length so each micro-batch pads less. The loss is a sum over micro-batches, so
            the order does not change the update.
    """
    device = next(_unwrapped(model).parameters()).device
    optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = {}
    micro = micro_batches(n_items, micro_batch_size, order)
    for j, idx in enumerate(micro):
        last = j == len(micro) - 1
        ctx = accelerator.no_sync(model) if (accelerator is not None and not last) else contextlib.nullcontext()
        with ctx:
            terms = loss_fn(idx)
            if accelerator is not None:
                accelerator.backward(terms["loss"] * accelerator.num_processes)
            else:
                terms["loss"].backward()
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach())
        # Free this micro-batch's graph before the next forward: terms the loss did not use
        # (a logged entropy) would keep their saved tensors alive otherwise.
        del terms
    keys = list(sums)
    summed = sum_over_processes(accelerator, torch.tensor([sums[k] for k in keys], dtype=torch.float64,
                                                          device=device), device)
    totals = dict(zip(keys, summed.tolist()))
    grad_norm = clip_grad_norm(model, max_grad_norm, accelerator)
    skipped = not math.isfinite(totals.get("loss", 0.0)) or not math.isfinite(grad_norm)
    if not skipped:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(totals=totals, grad_norm=grad_norm, skipped=skipped)


def clip_grad_norm(model: torch.nn.Module, max_norm: float | None, accelerator: Any = None) -> float:
    """Clip the gradients of ``model``'s trainable parameters to ``max_norm`` (``None``: no
    clipping); returns the norm before clipping."""
    limit = max_norm if max_norm is not None else float("inf")
    if accelerator is not None:
        norm = accelerator.clip_grad_norm_(model.parameters(), limit)
    else:
        norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], limit)
    return float(norm) if norm is not None else 0.0


def sum_over_processes(accelerator: Any, value: Any, device: Any) -> torch.Tensor:
    """``value`` (a number or tensor) summed over all processes, as a float64 tensor for numbers."""
    t = value if isinstance(value, torch.Tensor) else torch.tensor(float(value), dtype=torch.float64, device=device)
    if accelerator is None or accelerator.num_processes == 1:
        return t
    return accelerator.reduce(t, reduction="sum")


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)
