"""The settings of one training run (:class:`TrainConfig`), validated when built.

Every default lives here once: the CLI (``pope-env train``) and the library pipeline
(:mod:`pope_env.agents.pipeline`) read them from this dataclass. ``fingerprint()`` names
the settings a checkpoint must match to be resumed (:mod:`pope_env.agents.checkpoint`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from pope_env.agents.grpo import GRPOConfig
from pope_env.agents.policy import SamplingParams
from pope_env.errors import ConfigError


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
