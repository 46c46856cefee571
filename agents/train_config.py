"""The settings of one training run (:class:`TrainConfig`, with the GRPO update's
:class:`GRPOConfig`), validated when built. Torch-free, so the CLI can read the defaults.

Every default lives here once: the CLI (``pope-env train``) and the library pipeline
(:mod:`pope_env.agents.pipeline`) read them from this dataclass. ``fingerprint()`` names
the settings a checkpoint must match to be resumed (:mod:`pope_env.agents.checkpoint`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal

from pope_env.agents.policy import SamplingParams
from pope_env.errors import ConfigError


Aggregation = Literal["token", "sequence"]
AdvantageKind = Literal["group", "passk", "passk-chen"]
ADVANTAGE_KINDS: tuple[str, ...] = ("group", "passk", "passk-chen")


@dataclass(frozen=True)
class GRPOConfig:
    """Hyper-parameters of the GRPO update.

    Attributes:
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        adam_betas: AdamW betas.
        eps_low: Lower clip range: ratios below ``1 - eps_low`` are clipped (negative A).
        eps_high: Upper clip range: ratios above ``1 + eps_high`` are clipped (positive A).
            ``eps_high > eps_low`` is DAPO's clip-higher.
        scale_by_std: Divide group advantages by the group's reward std (GRPO original);
            off by default (Dr. GRPO / POPE: mean-centred only).
        advantage: ``"group"`` (group-relative rewards); ``"passk"``: the POPE paper's pass@k
            objective, group-relative advantages of the pass@k-transformed rewards
            (:func:`pope_env.metrics.passk_rewards`), centred (and scaled by std) exactly as
            ``"group"``; ``"passk-chen"``: Chen et al. 2025's std-normalised pass@k
            advantages (:func:`pope_env.metrics.passk_advantages`).
        passk_k: ``k`` of the pass@k objective (both pass@k forms).
        aggregation: ``"token"``: every token of the batch weighs the same (DAPO);
            ``"sequence"``: mean over each completion's tokens, then over completions.
        kl_beta: Weight of the k3 KL estimate to the reference policy (0: no reference).
        entropy_coef: Weight of the entropy bonus (0: none).
        epochs: Optimisation passes over each batch of rollouts (PPO's mu; 1 = on-policy).
        micro_batch_size: Completions per forward/backward pass (gradient accumulation over
            micro-batches; the loss is normalised over the whole batch, so the update does
            not depend on this value).
        max_grad_norm: Gradient clipping threshold (``None``: no clipping).
        min_group_std: Dynamic sampling: groups whose reward std is at most this value carry
            no signal and are dropped (and the batch refilled) when ``dynamic_sampling``.
        dynamic_sampling: Drop zero-variance groups and refill the batch (DAPO).
        max_refill_rounds: Rounds of extra rollouts dynamic sampling may try before giving
            up with :class:`~pope_env.agents.rollout.DynamicSamplingError`.
    """

    lr: float = 1e-6
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    eps_low: float = 0.2
    eps_high: float = 0.2
    scale_by_std: bool = False
    advantage: AdvantageKind = "group"
    passk_k: int = 4
    aggregation: Aggregation = "token"
    kl_beta: float = 0.0
    entropy_coef: float = 0.0
    epochs: int = 1
    micro_batch_size: int = 8
    max_grad_norm: float | None = 1.0
    min_group_std: float = 0.0
    dynamic_sampling: bool = False
    max_refill_rounds: int = 8

    def __post_init__(self) -> None:
        checks = [
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (0 <= self.eps_low < 1, f"eps_low must be in [0, 1), got {self.eps_low}"),
            (self.eps_high >= 0, f"eps_high must be >= 0, got {self.eps_high}"),
            (self.advantage in ADVANTAGE_KINDS,
             f"advantage must be one of {', '.join(ADVANTAGE_KINDS)}, got {self.advantage!r}"),
            (self.aggregation in ("token", "sequence"),
             f"aggregation must be 'token' or 'sequence', got {self.aggregation!r}"),
            (self.passk_k >= 1, f"passk_k must be >= 1, got {self.passk_k}"),
            (self.kl_beta >= 0, f"kl_beta must be >= 0, got {self.kl_beta}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.micro_batch_size >= 1, f"micro_batch_size must be >= 1, got {self.micro_batch_size}"),
            (self.max_grad_norm is None or self.max_grad_norm > 0,
             f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}"),
            (self.min_group_std >= 0, f"min_group_std must be >= 0, got {self.min_group_std}"),
            (self.max_refill_rounds >= 0, f"max_refill_rounds must be >= 0, got {self.max_refill_rounds}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)

    def replace(self, **changes: Any) -> "GRPOConfig":
        """A copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Attributes:
        method: Name of the method (recorded in logs and the report).
        steps: GRPO steps (after the SFT steps).
        sft_steps: SFT steps on oracle solutions before GRPO (``sft-oracle``).
        prompts_per_step: Prompts (groups) per GRPO step, over all processes.
        group_size: Completions per prompt, ``>= 2``.
        sampling: Rollout sampling parameters.
        grpo: The update's hyper-parameters (learning rate, clipping, options). The learner's
            log-probs are computed at ``sampling.temperature`` (logits divided by it, as TRL
            does), which must be > 0.
        sft_lr: AdamW learning rate of the SFT phase, its own: the RL rate (1e-6) barely moves
            the weights in a few dozen steps. The default 1e-5 is the usual full fine-tuning
            rate of a pretrained LLM; a small model trained from scratch wants more (the demo's
            char model: 1e-3). The optimiser state is reset when the RL phase starts, so SFT's
            moment estimates do not scale the first RL steps.
        seed: Seeds Python, NumPy and torch (each process offsets it by its rank).
        success_threshold: A rollout is correct when its reward is at least this.
        eval_every: Evaluate unguided pass@k every this many steps (0: only at start and end).
        eval_k: Samples per evaluation problem (pass@k with k = n = ``eval_k``).
        eval_sampling: Sampling for evaluation (``None``: ``sampling``).
        save_every: Write a checkpoint every this many steps (and always at the end).
        max_consecutive_nonfinite: Stop after this many skipped non-finite steps in a row.
        mixed_precision: ``"auto"`` (bf16 on CUDA, fp32 on CPU), ``"no"``, ``"bf16"``, ``"fp16"``.
        tensorboard: Also write TensorBoard scalars to ``output_dir/tb``.
        progress: Show a progress bar.
    """

    method: str = "grpo"
    steps: int = 100
    sft_steps: int = 0
    prompts_per_step: int = 8
    group_size: int = 8
    sampling: SamplingParams = SamplingParams(temperature=1.0, max_new_tokens=512)
    grpo: GRPOConfig = GRPOConfig()
    sft_lr: float = 1e-5
    seed: int = 0
    success_threshold: float = 1.0
    eval_every: int = 10
    eval_k: int = 8
    eval_sampling: SamplingParams | None = None
    save_every: int = 10
    max_consecutive_nonfinite: int = 3
    mixed_precision: str = "auto"
    tensorboard: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        checks = [
            (self.steps >= 0, f"steps must be >= 0, got {self.steps}"),
            (self.sft_steps >= 0, f"sft_steps must be >= 0, got {self.sft_steps}"),
            (isinstance(self.sft_lr, (int, float)) and self.sft_lr > 0,
             f"sft_lr must be a learning rate > 0, got {self.sft_lr!r}"),
            (self.steps == 0 or self.sampling.temperature > 0,
             f"GRPO needs sampling temperature > 0, got {self.sampling.temperature}: greedy groups hold "
             "identical completions, so every advantage is 0"),
            (self.prompts_per_step >= 1, f"prompts_per_step must be >= 1, got {self.prompts_per_step}"),
            (self.group_size >= 2,
             f"group_size is {self.group_size}: GRPO's group-relative advantage needs at least 2 "
             "completions per prompt"),
            (self.eval_every >= 0, f"eval_every must be >= 0, got {self.eval_every}"),
            (self.eval_k >= 1, f"eval_k must be >= 1, got {self.eval_k}"),
            (self.save_every >= 1, f"save_every must be >= 1, got {self.save_every}"),
            (self.max_consecutive_nonfinite >= 1,
             f"max_consecutive_nonfinite must be >= 1, got {self.max_consecutive_nonfinite}"),
            (self.mixed_precision in ("auto", "no", "bf16", "fp16"),
             f"mixed_precision must be auto, no, bf16 or fp16, got {self.mixed_precision!r}"),
            (not self.grpo.advantage.startswith("passk") or self.grpo.passk_k <= self.group_size,
             f"pass@k advantages need group_size >= k; got group_size {self.group_size}, k {self.grpo.passk_k}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)

    @property
    def total_steps(self) -> int:
        return self.sft_steps + self.steps

    def fingerprint(self) -> dict[str, Any]:
        """The settings a checkpoint must match to be resumed (run length and logging may change)."""
        d = json.loads(json.dumps(dataclasses.asdict(self)))
        for key in ("steps", "eval_every", "save_every", "tensorboard", "progress", "max_consecutive_nonfinite"):
            d.pop(key, None)
        return d
