"""The training loop: rollouts -> GRPO update -> logs, evaluation and checkpoints, resumable.

:class:`Trainer` runs ``config.sft_steps`` SFT steps on oracle solutions at their own
learning rate ``config.sft_lr`` (the ``sft-oracle`` method; 0 otherwise) and then
``config.steps`` GRPO steps, whose learner log-probs are computed at the sampling temperature.
Each GRPO step:

1. samples ``prompts_per_step`` prompts (split evenly over processes) and ``group_size``
   completions for each from the learner policy, or from a separate ``rollout_policy``
   (e.g. a :class:`~pope_env.agents.vllm_policy.VLLMPolicy` engine) that is synced to the
   learner's weights after every update; scores them with the reward function, optionally
   drops zero-variance groups and refills (dynamic sampling);
2. runs :func:`~pope_env.agents.grpo.grpo_update` under ``accelerate`` (gradient
   accumulation over micro-batches, gradient clipping, bf16 autocast on CUDA);
3. logs one JSONL record (``train_log.jsonl``) and TensorBoard scalars: reward, guided and
   unguided hard success, solved-set size, token entropy, response length, clip fraction,
   loss, KL, gradient norm, dropped groups, tokens/s;
4. every ``eval_every`` steps evaluates unguided pass@k on the evaluation prompts
   (``eval_log.jsonl``);
5. every ``save_every`` steps (and at the end) writes a checkpoint atomically.

**Resume.** Checkpoints hold the model, optimiser, every process's RNG states and data
order, and the run's counters. A run restarted in the same ``output_dir`` (even after
``kill -9``) loads the latest checkpoint, drops log records of steps after it and goes on,
so the logs hold every step exactly once and the result equals an uninterrupted run's. A
checkpoint written for another model or config is refused with the differences named.
A checkpoint is written to a temporary folder and renamed into place, so a crash or a full
disk while writing leaves the previous checkpoint intact.

**Non-finite losses.** A step whose loss or gradient norm is NaN/inf is skipped (no
parameter change), logged with ``"skipped": true``; ``max_consecutive_nonfinite`` such
steps in a row stop training with :class:`TrainingDivergedError`.

Outputs in ``output_dir``: ``train_log.jsonl``, ``eval_log.jsonl``, ``tb/``,
``checkpoints/``, ``report.json`` and ``passk.png`` (unguided pass@k over steps).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pope_env.agents.grpo import (
    GRPOConfig,
    LearnerPolicy,
    aggregate,
    flatten_groups,
    grpo_update,
    make_optimizer,
    recompute_logprobs,
)
from pope_env.agents.policy import Policy, SamplingParams
from pope_env.agents.rollout import (
    DynamicSampler,
    Group,
    PromptItem,
    PromptSource,
    RewardFn,
    collect_groups,
)
from pope_env.errors import ConfigError, PopeEnvError
from pope_env.io import JsonlAppender, atomic_write_json, atomic_write_jsonl, atomic_write_text, read_jsonl


EvalHook = Callable[[Policy, int], Mapping[str, Any]]
"""``hook(policy, step) -> metrics`` run at each evaluation (see :class:`Trainer`)."""


class TrainingDivergedError(PopeEnvError, RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


class CheckpointError(PopeEnvError, OSError):
    """A checkpoint could not be written or read."""


# ----------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------
# Evaluation and plotting
# ----------------------------------------------------------------------------------------
def evaluate_passk(
    policy: Policy,
    items: Sequence[PromptItem],
    reward_fn: RewardFn,
    *,
    k: int,
    sampling: SamplingParams,
    success_threshold: float = 1.0,
    batch_prompts: int = 16,
    progress: bool = False,
) -> dict[str, Any]:
    """pass@k and pass@1 of ``policy`` on ``items`` with exactly ``k`` samples per problem.

    With ``n = k`` samples the unbiased pass@k estimator is the fraction of problems with at
    least one correct sample; pass@1 is the mean correctness.
    """
    from tqdm.auto import tqdm

    solved = 0
    correct = 0
    per_problem: dict[str, int] = {}
    bar = tqdm(total=len(items), desc="eval", leave=False, disable=not progress)
    for start in range(0, len(items), batch_prompts):
        chunk = list(items[start : start + batch_prompts])
        for g in collect_groups(policy, chunk, reward_fn, n=k, sampling=sampling, success_threshold=success_threshold):
            c = sum(r.correct for r in g.rollouts)
            per_problem[g.item.problem_id] = c
            solved += c > 0
            correct += c
        bar.update(len(chunk))
    bar.close()
    n = max(len(items), 1)
    return {f"pass@{k}": solved / n, "pass@1": correct / (n * k), "problems": len(items), "solved": solved,
            "per_problem": per_problem}


def plot_passk(runs: Mapping[str, Sequence[tuple[int, float]]], path: str | os.PathLike[str], *, k: int,
               title: str = "Unguided hard-set pass@k") -> Path:
    """Write a PNG of pass@k over training steps, one line per method run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, points in sorted(runs.items()):
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", markersize=3, label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"pass@{k} (unguided, hard set)")
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if runs:
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------------------
# The trainer
# ----------------------------------------------------------------------------------------
class _RankShard:
    """Each process takes its slice of every global batch, so the data order does not
    depend on the number of processes."""

    def __init__(self, source: PromptSource, rank: int, world: int) -> None:
        self.source, self.rank, self.world = source, rank, world

    def next_items(self, n: int) -> list[PromptItem]:
        items = self.source.next_items(n * self.world)
        return items[self.rank * n : (self.rank + 1) * n]

    def next_items_like(self, like: Sequence[PromptItem]) -> list[PromptItem]:
        """Dynamic sampling's refills: this process's own, of the same kinds as ``like``."""
        if callable(getattr(self.source, "next_items_like", None)):
            return self.source.next_items_like(like)
        return self.next_items(len(like))

    def state_dict(self) -> dict[str, Any]:
        return self.source.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.source.load_state_dict(state)


@dataclass
class TrainResult:
    """What :meth:`Trainer.train` returns (also written to ``report.json``)."""

    method: str
    steps: int
    evals: list[dict[str, Any]] = field(default_factory=list)
    skipped_steps: int = 0
    solved_set_size: int = 0
    completion_tokens: int = 0
    wall_s: float = 0.0
    output_dir: str = ""
    sft: dict[str, Any] = field(default_factory=dict)


class Trainer:
    """GRPO (and optional SFT warm-up) on a :class:`LearnerPolicy`.

    Args:
        learner: The policy to train (see :class:`~pope_env.agents.grpo.LearnerPolicy`).
        source: The prompts to train on (see :mod:`pope_env.agents.methods`).
        reward_fn: Scores completions.
        config: The run's settings.
        output_dir: Where logs, checkpoints and the report go; re-running in the same folder
            resumes.
        eval_items: Unguided hard prompts for pass@k evaluation (empty: no evaluation).
        sft_source: Prompts whose problems' oracle solutions are the SFT targets (needed
            when ``config.sft_steps > 0``).
        reference: Frozen policy for the KL term (default: a copy of ``learner`` as it is
            when the trainer is built, i.e. the base model).
        accelerator: An ``accelerate.Accelerator`` (default: one made from the config).
        eval_reward_fn: Scores evaluation completions (default: ``reward_fn``); e.g. the
            verifiable reward when training on SRL's step similarity.
        rollout_policy: Samples the training and evaluation rollouts instead of the learner
            (default: the learner itself). It must tokenize prompts as the learner does and
            follow the learner's weights through ``load_weights_from(model)``, which the
            trainer calls at the start, after each update and after a resume (for
            :class:`~pope_env.agents.vllm_policy.VLLMPolicy`: an in-place reload). The GRPO
            importance ratios then use the rollout engine's log-probs as the old policy's.
            Without ``sampling.seed`` each step samples with a seed derived from
            ``(config.seed, step, process)``, so a resumed run samples what an uninterrupted
            one would.
        eval_hooks: Callables ``hook(policy, step) -> dict`` run at every evaluation with the
            rollout policy; their (JSON) metrics join the evaluation record
            (``eval_log.jsonl``, TensorBoard ``eval/...``, checkpoints). E.g.
            :class:`~pope_env.agents.reach_hook.OwnStateReachHook`: how often the policy's
            own unguided states fall into S_good.
    """

    def __init__(
        self,
        learner: LearnerPolicy,
        source: PromptSource,
        reward_fn: RewardFn,
        config: TrainConfig,
        output_dir: str | os.PathLike[str],
        *,
        eval_items: Sequence[PromptItem] = (),
        sft_source: PromptSource | None = None,
        reference: LearnerPolicy | None = None,
        accelerator: Any = None,
        eval_reward_fn: RewardFn | None = None,
        rollout_policy: Policy | None = None,
        eval_hooks: Sequence[EvalHook] = (),
    ) -> None:
        if not hasattr(learner, "token_logprobs") or not isinstance(getattr(learner, "model", None), torch.nn.Module):
            raise ConfigError(
                f"{type(learner).__name__} is not a learner policy: it needs a torch.nn.Module "
                "`model` attribute and a `token_logprobs(prompt_ids, completion_ids)` method"
            )
        if config.sft_steps and sft_source is None:
            raise ConfigError("sft_steps > 0 needs an sft_source (prompts whose oracle solutions are the targets)")
        if rollout_policy is learner:
            rollout_policy = None
        if rollout_policy is not None:
            _check_rollout_policy(rollout_policy, learner)
        self.learner = learner
        self.rollout_policy: Policy = rollout_policy if rollout_policy is not None else learner
        self.eval_hooks = list(eval_hooks)
        self.reward_fn = reward_fn
        self.eval_reward_fn = eval_reward_fn or reward_fn
        self.config = config
        self.output_dir = Path(output_dir)
        self.eval_items = list(eval_items)
        self.accelerator = accelerator if accelerator is not None else _make_accelerator(config)
        acc = self.accelerator
        if config.prompts_per_step % acc.num_processes:
            raise ConfigError(
                f"prompts_per_step ({config.prompts_per_step}) must be divisible by the number "
                f"of processes ({acc.num_processes})"
            )
        self.source = _RankShard(source, acc.process_index, acc.num_processes)
        self.sft_source = _RankShard(sft_source, acc.process_index, acc.num_processes) if sft_source else None
        self.reference = reference
        if config.grpo.kl_beta > 0 and reference is None:
            import copy

            self.reference = copy.deepcopy(learner)
            for p in self.reference.model.parameters():
                p.requires_grad_(False)
        g = config.grpo
        self.sampler = DynamicSampler(
            self.rollout_policy, self.source, reward_fn, group_size=config.group_size, sampling=config.sampling,
            min_std=g.min_group_std if g.dynamic_sampling else None,
            max_refill_rounds=g.max_refill_rounds, success_threshold=config.success_threshold,
        )
        # state carried in checkpoints
        self.step = 0
        self.consecutive_nonfinite = 0
        self.skipped_steps = 0
        self.solved: set[str] = set()
        self.evals: list[dict[str, Any]] = []
        self.completion_tokens = 0

    # -- public ----------------------------------------------------------------------------
    def train(self, *, resume: bool = True) -> TrainResult:
        """Run (or resume) training to ``config.total_steps``; returns the result."""
        from tqdm.auto import tqdm

        acc, cfg = self.accelerator, self.config
        _seed_everything(cfg.seed + acc.process_index)
        raw_model = self.learner.model
        optimizer = make_optimizer(raw_model, cfg.grpo)
        self.model, self.optimizer = acc.prepare(raw_model, optimizer)
        self.learner.model = _unwrap(acc, self.model)
        self.ckpt_root = self.output_dir / "checkpoints"
        if self.ckpt_root.exists() and any(self.ckpt_root.glob("step-*")) and not resume:
            raise ConfigError(f"{self.output_dir} already holds checkpoints; resume, or use another output_dir")
        self._load_latest_checkpoint()
        self._sync_rollout_policy()  # the engine starts from the learner's (resumed) weights
        is_main = acc.is_main_process
        if is_main:
            self._trim_logs()
        acc.wait_for_everyone()
        # Log lines after the last checkpoint are trimmed on resume anyway, so they are made
        # durable together with each checkpoint instead of one fsync per line.
        log = JsonlAppender(self.output_dir / "train_log.jsonl", fsync=False) if is_main else None
        eval_log = JsonlAppender(self.output_dir / "eval_log.jsonl", fsync=False) if is_main else None
        logs = [f for f in (log, eval_log) if f is not None]
        tb = self._tensorboard() if is_main else None
        start_wall = time.perf_counter()
        bar = tqdm(total=cfg.total_steps, initial=self.step, desc=f"train {cfg.method}",
                   disable=not (cfg.progress and is_main), dynamic_ncols=True)
        try:
            if self.step == 0 and self.eval_items and cfg.steps > 0:
                self._evaluate(eval_log, tb)
            while self.step < cfg.total_steps:
                step = self.step + 1
                record = self._sft_step(step) if step <= cfg.sft_steps else self._rl_step(step)
                if self.rollout_policy is not self.learner and not record.get("skipped"):
                    record["sync_s"] = self._sync_rollout_policy()
                self.step = step
                if is_main:
                    log.append(record)
                    self._tb_scalars(tb, record, step)
                if record.get("skipped"):
                    self.skipped_steps += 1
                    self.consecutive_nonfinite += 1
                else:
                    self.consecutive_nonfinite = 0
                last = step == cfg.total_steps
                if self.eval_items and step > cfg.sft_steps and (last or (cfg.eval_every and step % cfg.eval_every == 0)):
                    self._evaluate(eval_log, tb)
                if self.consecutive_nonfinite >= cfg.max_consecutive_nonfinite:
                    self._save_checkpoint(logs)
                    raise TrainingDivergedError(
                        f"{self.consecutive_nonfinite} consecutive steps had a non-finite loss or "
                        f"gradient (last at step {step}); lower the learning rate or check the "
                        "rewards and the model's numerics. Logs: " + str(self.output_dir / "train_log.jsonl")
                    )
                if last or step % cfg.save_every == 0:
                    self._save_checkpoint(logs)
                bar.update(1)
                bar.set_postfix({k: f"{record[k]:.3g}" for k in ("reward", "loss") if isinstance(record.get(k), float)})
        finally:
            bar.close()
            for f in (log, eval_log):
                if f is not None:
                    f.close()
            if tb is not None:
                tb.close()
        result = TrainResult(
            method=cfg.method, steps=self.step, evals=self.evals, skipped_steps=self.skipped_steps,
            solved_set_size=len(self.solved), completion_tokens=self.completion_tokens,
            wall_s=time.perf_counter() - start_wall, output_dir=str(self.output_dir),
            sft=self._sft_summary() if is_main and cfg.sft_steps else {},
        )
        if is_main:
            self._write_report(result)
        acc.wait_for_everyone()
        return result

    # -- steps -----------------------------------------------------------------------------
    def _rl_step(self, step: int) -> dict[str, Any]:
        acc, cfg = self.accelerator, self.config
        t0 = time.perf_counter()
        local_groups = cfg.prompts_per_step // acc.num_processes
        if self.rollout_policy is not self.learner and cfg.sampling.seed is None:
            # The engine's own RNG is not in checkpoints: seed each step so a resume is exact.
            self.sampler.sampling = dataclasses.replace(
                cfg.sampling, seed=_step_seed(cfg.seed, step, acc.process_index))
        groups, report = self.sampler.sample(local_groups)
        t_rollout = time.perf_counter() - t0
        batch = flatten_groups(groups, cfg.grpo)
        temperature = cfg.sampling.temperature  # the learner's log-probs are those of the sampling distribution
        if cfg.grpo.kl_beta > 0:
            batch.ref_logprobs = recompute_logprobs(self.reference, batch, cfg.grpo.micro_batch_size,
                                                    temperature=temperature)
        if step == cfg.sft_steps + 1 and cfg.sft_steps > 0:
            # The RL phase starts with a fresh optimiser state, as a separate RL run from the
            # SFT checkpoint would: SFT's Adam moments would otherwise scale the first RL steps.
            _reset_optimizer_state(self.optimizer)
        t1 = time.perf_counter()
        stats = grpo_update(self.learner, self.optimizer, batch, cfg.grpo, accelerator=acc, model=self.model,
                            temperature=temperature)
        t_update = time.perf_counter() - t1
        roll = self._rollout_metrics(report.all_groups, report.dropped)
        self.completion_tokens += int(roll.pop("_completion_tokens"))
        wall = time.perf_counter() - t0
        record = {
            "step": step, "phase": "rl", "method": cfg.method,
            **roll,
            "loss": stats.loss, "policy_loss": stats.policy_loss, "kl": stats.kl,
            "entropy": stats.entropy, "clip_fraction": stats.clip_fraction, "ratio_mean": stats.ratio_mean,
            "grad_norm": stats.grad_norm, "trained_tokens": stats.tokens,
            "skipped": stats.skipped,
            "rollout_s": t_rollout, "update_s": t_update,
            "tokens_per_s": stats.tokens / wall if wall > 0 else 0.0,
        }
        if stats.skipped:
            record["skip_reason"] = "non-finite loss or gradient norm"
        return _finite_json(record)

    def _rollout_metrics(self, groups: Sequence[Group], dropped: int) -> dict[str, Any]:
        acc = self.accelerator
        s = dict.fromkeys(
            ("reward", "n", "guided_ok", "guided_n", "unguided_ok", "unguided_n", "length", "groups", "dropped"), 0.0
        )
        solved_now: list[str] = []
        for g in groups:
            s["groups"] += 1
            hard = g.item.tags.get("split", "hard") == "hard"
            for r in g.rollouts:
                s["reward"] += r.reward
                s["n"] += 1
                s["length"] += len(r.completion_ids)
                if hard and g.item.guided:
                    s["guided_ok"] += r.correct
                    s["guided_n"] += 1
                elif hard:
                    s["unguided_ok"] += r.correct
                    s["unguided_n"] += 1
            if hard and not g.item.guided and any(r.correct for r in g.rollouts):
                solved_now.append(g.item.problem_id)
        s["dropped"] = dropped
        keys = list(s)
        t = torch.tensor([s[k] for k in keys], dtype=torch.float64, device=acc.device)
        if acc.num_processes > 1:
            t = acc.reduce(t, reduction="sum")
            from accelerate.utils import gather_object

            solved_now = gather_object(solved_now)
        s = dict(zip(keys, t.tolist()))
        self.solved.update(solved_now)
        ratio = lambda a, b: (s[a] / s[b]) if s[b] else None  # noqa: E731
        return {
            "reward": ratio("reward", "n"),
            "guided_hard_success": ratio("guided_ok", "guided_n"),
            "unguided_hard_success": ratio("unguided_ok", "unguided_n"),
            "solved_set_size": len(self.solved),
            "response_length": ratio("length", "n"),
            "groups_sampled": int(s["groups"]),
            "groups_dropped": int(s["dropped"]),
            "_completion_tokens": s["length"],
        }

    def _sft_step(self, step: int) -> dict[str, Any]:
        """One SFT step: maximise the log-likelihood of the oracle solutions at ``config.sft_lr``.

        Logs ``sft_loss`` (mean NLL per oracle token, nats) and ``sft_entropy`` (mean entropy of
        the next-token distribution at the oracle tokens, temperature 1), both measured on this
        step's batch before its update."""
        acc, cfg = self.accelerator, self.config
        t0 = time.perf_counter()
        items = self.sft_source.next_items(cfg.prompts_per_step // acc.num_processes)
        prompt_ids, completion_ids = tokenize_pairs(self.learner, items)
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.sft_lr
        tokens_local = sum(len(c) for c in completion_ids)
        total = float(acc.reduce(torch.tensor(float(tokens_local), device=acc.device), reduction="sum")) \
            if acc.num_processes > 1 else float(tokens_local)
        self.optimizer.zero_grad(set_to_none=True)
        raw = self.learner.model
        self.learner.model = self.model
        loss_sum = 0.0
        entropy_sum = 0.0
        mb = cfg.grpo.micro_batch_size
        try:
            for start in range(0, len(items), mb):
                tl = self.learner.token_logprobs(prompt_ids[start:start + mb], completion_ids[start:start + mb],
                                                 with_entropy=True)
                loss = -aggregate(tl.logprobs, tl.mask, how="token", normalizer=total)
                acc.backward(loss * acc.num_processes)
                loss_sum += float(loss.detach())
                if tl.entropy is not None:
                    entropy_sum += float(aggregate(tl.entropy.detach(), tl.mask, how="token", normalizer=total))
        finally:
            self.learner.model = raw
        norm = acc.clip_grad_norm_(self.model.parameters(), cfg.grpo.max_grad_norm or float("inf"))
        norm = float(norm) if norm is not None else 0.0
        if acc.num_processes > 1:
            summed = acc.reduce(torch.tensor([loss_sum, entropy_sum], device=acc.device), reduction="sum")
            loss_sum, entropy_sum = (float(x) for x in summed.tolist())
        skipped = not (math.isfinite(loss_sum) and math.isfinite(norm))
        if not skipped:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.grpo.lr
        record = {"step": step, "phase": "sft", "method": cfg.method, "sft_loss": loss_sum, "loss": loss_sum,
                  "sft_entropy": entropy_sum, "sft_lr": cfg.sft_lr, "grad_norm": norm, "trained_tokens": int(total),
                  "skipped": skipped,
                  "update_s": time.perf_counter() - t0}
        if skipped:
            record["skip_reason"] = "non-finite loss or gradient norm"
        return _finite_json(record)

    def _evaluate(self, eval_log: JsonlAppender | None, tb: Any) -> None:
        cfg, acc = self.config, self.accelerator
        if acc.is_main_process:
            res = evaluate_passk(
                self.rollout_policy, self.eval_items, self.eval_reward_fn, k=cfg.eval_k,
                sampling=cfg.eval_sampling or cfg.sampling, success_threshold=cfg.success_threshold,
                progress=cfg.progress,
            )
            rec = {"step": self.step, "method": cfg.method, f"pass@{cfg.eval_k}": res[f"pass@{cfg.eval_k}"],
                   "pass@1": res["pass@1"], "problems": res["problems"], "solved": res["solved"],
                   # successes per evaluation item, in item order: pass@j for any j <= k and
                   # paired comparisons between runs evaluated on the same items
                   "per_problem": [res["per_problem"].get(it.problem_id, 0) for it in self.eval_items]}
            for hook in self.eval_hooks:
                rec.update(_finite_json(dict(hook(self.rollout_policy, self.step))))
            self.evals.append(rec)
            eval_log.append(rec)
            if tb is not None:
                for key, value in rec.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step":
                        tb.add_scalar(f"eval/{key}", value, self.step)
        acc.wait_for_everyone()

    def _sync_rollout_policy(self) -> float:
        """Load the learner's weights into a separate rollout policy; returns seconds taken."""
        if self.rollout_policy is self.learner:
            return 0.0
        t0 = time.perf_counter()
        self.rollout_policy.load_weights_from(self.learner.model)  # type: ignore[attr-defined]
        return time.perf_counter() - t0

    def _sft_summary(self) -> dict[str, Any]:
        """How much the SFT phase fitted the oracle solutions, from the SFT records of
        ``train_log.jsonl`` (which hold every step once, resumed runs included):
        ``sft_loss_first``/``entropy_before`` are the first step's (before any update),
        ``sft_loss_last``/``entropy_after`` the last step's (after all updates but one, on a
        batch of its own)."""
        path = self.output_dir / "train_log.jsonl"
        records = [r for r in read_jsonl(path, strict=False) if r.get("phase") == "sft"] if path.exists() else []
        if not records:
            return {}
        first, last = records[0], records[-1]
        return {"steps": len(records), "lr": self.config.sft_lr,
                "sft_loss_first": first.get("sft_loss"), "sft_loss_last": last.get("sft_loss"),
                "entropy_before": first.get("sft_entropy"), "entropy_after": last.get("sft_entropy")}

    # -- checkpoints -----------------------------------------------------------------------
    def _fingerprint(self) -> dict[str, Any]:
        return {"model": model_fingerprint(self.learner.model), "config": self.config.fingerprint(),
                "world_size": self.accelerator.num_processes}

    def _process_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"source": self.source.state_dict()}
        if self.sft_source is not None:
            state["sft_source"] = self.sft_source.state_dict()
        get_rng = getattr(self.learner, "get_rng_state", None)
        if callable(get_rng):
            state["learner_rng"] = get_rng()
        return state

    def _save_checkpoint(self, logs: Sequence[JsonlAppender] = ()) -> None:
        """Write a checkpoint of this step atomically, after making ``logs`` durable (a
        checkpoint must never be ahead of the log records it resumes after)."""
        from accelerate.utils import gather_object

        acc = self.accelerator
        states = gather_object([self._process_state()]) if acc.num_processes > 1 else [self._process_state()]
        name = f"step-{self.step:07d}"
        final = self.ckpt_root / name
        tmp = self.ckpt_root / f".{name}.tmp"
        previous = self._latest_name()
        try:
            for f in logs:
                f.sync()
            if acc.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
            acc.wait_for_everyone()
            acc.save_state(str(tmp), safe_serialization=False)
            if acc.is_main_process:
                atomic_write_json(tmp / "trainer_state.json", {
                    "step": self.step, "fingerprint": self._fingerprint(), "process_states": states,
                    "consecutive_nonfinite": self.consecutive_nonfinite, "skipped_steps": self.skipped_steps,
                    "solved": sorted(self.solved), "evals": self.evals, "completion_tokens": self.completion_tokens,
                })
                _fsync_tree(tmp)
                if final.exists():  # re-saving a step (resumed exactly at it): swap it out
                    shutil.rmtree(final)
                os.replace(tmp, final)
                atomic_write_text(self.ckpt_root / "latest", name + "\n")
                for old in self.ckpt_root.glob("step-*"):
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

    def _latest_name(self) -> str | None:
        pointer = self.ckpt_root / "latest"
        if not pointer.exists():
            return None
        return pointer.read_text().strip() or None

    def _load_latest_checkpoint(self) -> None:
        if self.accelerator.is_main_process and self.ckpt_root.exists():
            for stale in self.ckpt_root.glob(".step-*.tmp"):  # a crash while writing one
                shutil.rmtree(stale, ignore_errors=True)
        name = self._latest_name()
        if name is None:
            return
        path = self.ckpt_root / name
        state_file = path / "trainer_state.json"
        if not state_file.exists():
            raise CheckpointError(f"checkpoint {path} is incomplete (no trainer_state.json); delete it and its 'latest' pointer")
        state = json.loads(state_file.read_text())
        diff = fingerprint_diff(state["fingerprint"], self._fingerprint())
        if diff:
            raise ConfigError(
                f"refusing to resume from {path}: it was written for another model or config:\n  "
                + "\n  ".join(diff)
                + "\nUse the same settings, or another output_dir for a new run."
            )
        self.accelerator.load_state(str(path))
        mine = state["process_states"][self.accelerator.process_index]
        self.source.load_state_dict(mine["source"])
        if self.sft_source is not None and "sft_source" in mine:
            self.sft_source.load_state_dict(mine["sft_source"])
        set_rng = getattr(self.learner, "set_rng_state", None)
        if callable(set_rng) and "learner_rng" in mine:
            set_rng(mine["learner_rng"])
        self.step = int(state["step"])
        self.consecutive_nonfinite = int(state["consecutive_nonfinite"])
        self.skipped_steps = int(state["skipped_steps"])
        self.solved = set(state["solved"])
        self.evals = list(state["evals"])
        self.completion_tokens = int(state["completion_tokens"])

    def _trim_logs(self) -> None:
        """Drop log records of steps after the checkpoint we resume from (they are redone)."""
        for fname, keep in (("train_log.jsonl", lambda s: s <= self.step),
                            ("eval_log.jsonl", lambda s: s <= self.step and self.step > 0)):
            path = self.output_dir / fname
            if path.exists():
                records = read_jsonl(path, strict=False)
                kept = [r for r in records if keep(int(r.get("step", 0)))]
                if len(kept) != len(records):
                    atomic_write_jsonl(path, kept)

    # -- logging ---------------------------------------------------------------------------
    def _tensorboard(self) -> Any:
        if not self.config.tensorboard:
            return None
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events of steps after the checkpoint (redone after a resume)
        return SummaryWriter(str(self.output_dir / "tb"), purge_step=self.step + 1 if self.step else None)

    @staticmethod
    def _tb_scalars(tb: Any, record: Mapping[str, Any], step: int) -> None:
        if tb is None:
            return
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step":
                tb.add_scalar(f"train/{key}", value, step)

    def _write_report(self, result: TrainResult) -> None:
        k = self.config.eval_k
        atomic_write_json(self.output_dir / "report.json", {
            **dataclasses.asdict(result),
            "solved_set": sorted(self.solved),
            "final_eval": result.evals[-1] if result.evals else None,
            "config": self.config.fingerprint() | {"steps": self.config.steps},
        })
        if result.evals:
            points = [(e["step"], e[f"pass@{k}"]) for e in result.evals]
            plot_passk({self.config.method: points}, self.output_dir / "passk.png", k=k)


# ----------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------
def _check_rollout_policy(rollout_policy: Any, learner: Any) -> None:
    """A separate rollout policy must follow the learner's weights and share its tokens."""
    name = getattr(rollout_policy, "name", type(rollout_policy).__name__)
    if not callable(getattr(rollout_policy, "load_weights_from", None)):
        raise ConfigError(
            f"rollout policy {name!r} has no load_weights_from(model): it could not follow the learner's "
            "updates, so training would stay on the base model's samples. Use a VLLMPolicy, or omit rollout_policy"
        )
    encode_a, encode_b = getattr(rollout_policy, "encode", None), getattr(learner, "encode", None)
    if callable(encode_a) and callable(encode_b):
        probe = [[{"role": "user", "content": "What is $\\frac{1}{2} + 3^{2}$? Ünïcode ok."}], "2 + 2 ="]
        if encode_a(probe) != encode_b(probe):
            raise ConfigError(
                f"rollout policy {name!r} tokenizes prompts differently from the learner; both must serve "
                "the same model folder and tokenizer (and chat template)"
            )


def _step_seed(seed: int, step: int, rank: int) -> int:
    digest = hashlib.sha256(f"rollout/{seed}/{step}/{rank}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def tokenize_pairs(learner: Any, items: Sequence[PromptItem]) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of (prompt, oracle solution) pairs for SFT.

    Uses ``learner.tokenize(prompts, completions)`` when the learner has it; else a learner
    with ``encode_prompt(prompt) -> ids`` (as it samples) and a plain ``tokenizer.encode(text)``
    with an ``eos_id`` or ``eos_token_id`` (e.g. :class:`~pope_env.agents.charlm.CharLMPolicy`);
    else an HF ``learner.tokenizer`` for the solution (EOS appended) and the learner's own
    prompt encoding (``learner.encode(prompts)``, as it samples) or the chat template.
    """
    for it in items:
        if it.problem is None or not it.problem.solution:
            raise ConfigError(f"SFT needs oracle solutions; problem {it.problem_id!r} has none")
    prompts = [it.prompt for it in items]
    targets = [it.problem.solution for it in items]  # type: ignore[union-attr]
    tokenize = getattr(learner, "tokenize", None)
    if callable(tokenize):
        p, c = tokenize(prompts, targets)
        return [list(x) for x in p], [list(x) for x in c]
    tok = getattr(learner, "tokenizer", None)
    encode_prompt = getattr(learner, "encode_prompt", None)
    eos = getattr(tok, "eos_token_id", getattr(tok, "eos_id", None))
    if callable(encode_prompt) and tok is not None and not callable(tok) and callable(getattr(tok, "encode", None)) \
            and eos is not None:
        return ([list(encode_prompt(p)) for p in prompts],
                [list(tok.encode(t)) + [int(eos)] for t in targets])
    if tok is None:
        raise ConfigError(
            f"{type(learner).__name__} has neither tokenize() nor a tokenizer; the sft-oracle "
            "method needs one of them to turn oracle solutions into token ids"
        )
    encode = getattr(learner, "encode", None)
    encoded = [list(x) for x in encode(prompts)] if callable(encode) else None
    prompt_ids, completion_ids = [], []
    for i, (prompt, target) in enumerate(zip(prompts, targets)):
        if encoded is not None:
            ids = encoded[i]
        elif isinstance(prompt, str):
            ids = tok(prompt, add_special_tokens=False)["input_ids"]
        else:
            ids = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
            if isinstance(ids, Mapping):
                ids = ids["input_ids"]
        prompt_ids.append(list(ids))
        completion_ids.append(list(tok(target, add_special_tokens=False)["input_ids"]) + [tok.eos_token_id])
    return prompt_ids, completion_ids


def _reset_optimizer_state(optimizer: Any) -> None:
    """Forget an optimiser's per-parameter state (Adam's moments and step counts); works on an
    ``accelerate``-wrapped optimiser too."""
    inner = getattr(optimizer, "optimizer", optimizer)
    inner.state.clear()


def _make_accelerator(config: TrainConfig) -> Any:
    from accelerate import Accelerator

    mp = config.mixed_precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return Accelerator(mixed_precision=mp)


def _unwrap(acc: Any, model: Any) -> torch.nn.Module:
    return acc.unwrap_model(model)


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _finite_json(record: dict[str, Any]) -> dict[str, Any]:
    """Replace NaN/inf floats by ``None`` (strict JSON) and keep the rest."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}


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
