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
steps in a row stop training with :class:`TrainingDivergedError`. SFT and GRPO steps
share one routine for this (:func:`~pope_env.agents.update.accumulate_and_step`): gradient
accumulation over micro-batches, clipping, the skip.

Outputs in ``output_dir``: ``train_log.jsonl``, ``eval_log.jsonl``, ``tb/``,
``checkpoints/``, ``report.json`` and ``passk.png`` (unguided pass@k over steps).

The pieces live in their own modules: the settings in :mod:`~pope_env.agents.train_config`,
the SFT data in :mod:`~pope_env.agents.sft`, the shared accumulate-clip-step routine of both
phases in :mod:`~pope_env.agents.update`, checkpoint files in
:mod:`~pope_env.agents.checkpoint`, pass@k evaluation and its plot in
:mod:`~pope_env.agents.evaluation` (all re-exported here under their former names).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pope_env.agents.accelerator import make_accelerator
from pope_env.agents.checkpoint import CheckpointError, CheckpointStore, fingerprint_diff, model_fingerprint
from pope_env.agents.evaluation import evaluate_passk, plot_passk
from pope_env.agents.grpo import (
    LearnerPolicy,
    aggregate,
    flatten_groups,
    grpo_update,
    learner_logprobs,
    make_optimizer,
    recompute_logprobs,
)
from pope_env.agents.policy import Policy
from pope_env.agents.rollout import DynamicSampler, Group, PromptItem, PromptSource, RankShard, RewardFn
from pope_env.agents.sft import tokenize_pairs
from pope_env.agents.train_config import TrainConfig
from pope_env.agents.update import accumulate_and_step, sum_over_processes
from pope_env.errors import ConfigError, PopeEnvError
from pope_env.io import JsonlAppender, atomic_write_json, atomic_write_jsonl, read_jsonl

__all__ = [  # the checkpoint and evaluation names are re-exported: they lived here before
    "CheckpointError", "EvalHook", "TrainConfig", "TrainResult", "Trainer", "TrainingDivergedError",
    "evaluate_passk", "fingerprint_diff", "model_fingerprint", "plot_passk", "tokenize_pairs",
]


EvalHook = Callable[[Policy, int], Mapping[str, Any]]
"""``hook(policy, step) -> metrics`` run at each evaluation (see :class:`Trainer`)."""


class TrainingDivergedError(PopeEnvError, RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


# ----------------------------------------------------------------------------------------
# The trainer
# ----------------------------------------------------------------------------------------
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
        learner: The policy to train (see :class:`~pope_env.agents.policy.LearnerPolicy`).
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
        self.accelerator = accelerator if accelerator is not None else make_accelerator(config.mixed_precision)
        acc = self.accelerator
        if config.prompts_per_step % acc.num_processes:
            raise ConfigError(
                f"prompts_per_step ({config.prompts_per_step}) must be divisible by the number "
                f"of processes ({acc.num_processes})"
            )
        self.source = RankShard(source, acc.process_index, acc.num_processes)
        self.sft_source = RankShard(sft_source, acc.process_index, acc.num_processes) if sft_source else None
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
        self.checkpoints = CheckpointStore(self.ckpt_root, acc)
        if self.checkpoints.has_checkpoints() and not resume:
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
        total = float(sum_over_processes(acc, sum(len(c) for c in completion_ids), acc.device))

        def micro_loss(idx: Sequence[int]) -> dict[str, torch.Tensor]:
            tl = learner_logprobs(self.learner, [prompt_ids[i] for i in idx], [completion_ids[i] for i in idx],
                                  with_entropy=True, model=self.model)
            terms = {"loss": -aggregate(tl.logprobs, tl.mask, how="token", normalizer=total)}
            if tl.entropy is not None:
                terms["entropy"] = aggregate(tl.entropy.detach(), tl.mask, how="token", normalizer=total)
            return terms

        for group in self.optimizer.param_groups:
            group["lr"] = cfg.sft_lr
        try:
            res = accumulate_and_step(micro_loss, len(items), micro_batch_size=cfg.grpo.micro_batch_size,
                                      optimizer=self.optimizer, model=self.model, accelerator=acc,
                                      max_grad_norm=cfg.grpo.max_grad_norm)
        finally:
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.grpo.lr
        loss = res.totals.get("loss", 0.0)
        record = {"step": step, "phase": "sft", "method": cfg.method, "sft_loss": loss, "loss": loss,
                  "sft_entropy": res.totals.get("entropy", 0.0), "sft_lr": cfg.sft_lr, "grad_norm": res.grad_norm,
                  "trained_tokens": int(total), "skipped": res.skipped,
                  "update_s": time.perf_counter() - t0}
        if res.skipped:
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
        """Write a checkpoint of this step (:meth:`CheckpointStore.save`)."""
        self.checkpoints.save(self.step, {
            "fingerprint": self._fingerprint(),
            "consecutive_nonfinite": self.consecutive_nonfinite, "skipped_steps": self.skipped_steps,
            "solved": sorted(self.solved), "evals": self.evals, "completion_tokens": self.completion_tokens,
        }, self._process_state(), logs)

    def _load_latest_checkpoint(self) -> None:
        loaded = self.checkpoints.load_latest(self._fingerprint())
        if loaded is None:
            return
        state, mine = loaded
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


def _reset_optimizer_state(optimizer: Any) -> None:
    """Forget an optimiser's per-parameter state (Adam's moments and step counts); works on an
    ``accelerate``-wrapped optimiser too."""
    inner = getattr(optimizer, "optimizer", optimizer)
    inner.state.clear()


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
