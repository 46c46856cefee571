"""GRPO, readable top to bottom: group advantages, the clipped surrogate, and one update.

Notation (DeepSeekMath's GRPO, DAPO's clip-higher and token-level loss, POPE's setup):

* a *group* is ``G`` completions ``o_1..o_G`` sampled from the rollout policy ``pi_old`` for
  one prompt ``q``, with scalar rewards ``r_1..r_G``;
* the advantage of every token of ``o_i`` is the group-relative reward
  ``A_i = r_i - mean(r)`` (optionally divided by ``std(r)``), computed on the raw rewards or
  on pass@k-transformed rewards (``advantage="passk"``), or Chen et al.'s pass@k advantage;
* the per-token importance ratio is ``rho_{i,t} = pi_theta(o_{i,t}|q,o_{i,<t}) /
  pi_old(o_{i,t}|q,o_{i,<t})`` against the log-probs recorded at rollout time;
* every ``pi`` is the *sampling* distribution: with sampling temperature ``tau`` the
  learner's log-probs are ``log_softmax(logits / tau)`` (as TRL's ``GRPOTrainer`` computes
  them), for the ratio, the KL term and the entropy alike;
* the loss is ``-min(rho A, clip(rho, 1-eps_low, 1+eps_high) A)`` per token, aggregated over
  all tokens of the batch (token-level: every token weighs the same), plus optional
  ``beta * KL_k3(pi_theta || pi_ref)`` and ``- c_H * H(pi_theta)`` terms.

Defaults follow the POPE paper's GRPO: no KL, no entropy term, mean-centred advantages not
divided by the std, eps_low = eps_high = 0.2, token-level aggregation.

The learner is any :class:`LearnerPolicy` (a :class:`~pope_env.agents.policy.Policy` that also
exposes its ``torch.nn.Module`` and differentiable per-token log-probs); the update runs
under Hugging Face ``accelerate`` so the same code runs on one CPU, one GPU or many
processes (see :mod:`pope_env.agents.train`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from pope_env.agents.policy import LearnerPolicy, TokenLogprobs  # re-exported: defined here before
from pope_env.agents.train_config import ADVANTAGE_KINDS, Aggregation, AdvantageKind, GRPOConfig  # noqa: F401
from pope_env.agents.update import accumulate_and_step, sum_over_processes
from pope_env.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from accelerate import Accelerator

    from pope_env.agents.rollout import Group


# ----------------------------------------------------------------------------------------
# The learner contract (TokenLogprobs and LearnerPolicy live in pope_env.agents.policy)
# ----------------------------------------------------------------------------------------
def learner_logprobs(learner: Any, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], *,
                     with_entropy: bool = False, temperature: float = 1.0,
                     model: torch.nn.Module | None = None) -> TokenLogprobs:
    """``learner.token_logprobs`` at ``temperature``, computed through ``model``.

    Keywords a learner written before them may lack are only passed when they matter: at
    temperature 1 no ``temperature``, and no ``model`` when it is ``None`` or
    ``learner.model`` itself. A learner without a ``temperature`` keyword at any other
    temperature, or without a ``model`` keyword when ``model`` is another module (the
    ``accelerate``-wrapped one of a multi-process run), is refused with
    :class:`ConfigError`: training it would use the wrong distribution or skip the gradient
    synchronisation.
    """
    if not temperature > 0 or not math.isfinite(temperature):
        raise ConfigError(
            f"learner log-probs need a temperature > 0, got {temperature}; GRPO cannot train on "
            "greedy (temperature 0) samples: every completion of a group would be the same"
        )
    kwargs: dict[str, Any] = {"with_entropy": with_entropy}
    fn = learner.token_logprobs
    if temperature != 1.0:
        if not _accepts_keyword(fn, "temperature"):
            raise ConfigError(
                f"{type(learner).__name__}.token_logprobs has no `temperature` keyword, so its log-probs are "
                f"at temperature 1 while rollouts are sampled at temperature {temperature}; add "
                "`temperature: float = 1.0` (divide the logits by it before the log-softmax) or sample at "
                "temperature 1"
            )
        kwargs["temperature"] = temperature
    if model is not None and model is not getattr(learner, "model", None):
        if not _accepts_keyword(fn, "model"):
            raise ConfigError(
                f"{type(learner).__name__}.token_logprobs has no `model` keyword, so it cannot compute through "
                f"the accelerate-wrapped module {type(model).__name__} (gradients would not be synchronised "
                "across processes); add `model: torch.nn.Module | None = None` and compute with "
                "`model if model is not None else self.model`, or train in one process"
            )
        kwargs["model"] = model
    return fn(prompt_ids, completion_ids, **kwargs)


def _accepts_keyword(fn: Any, name: str) -> bool:
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins, C extensions: assume the contract is met
        return True
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


# ----------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------
# GRPOConfig, Aggregation, AdvantageKind and ADVANTAGE_KINDS live in the torch-free
# pope_env.agents.train_config (the CLI reads their defaults); re-exported here.


# ----------------------------------------------------------------------------------------
# Advantages (pure functions over a [num_groups, group_size] reward tensor)
# ----------------------------------------------------------------------------------------
def group_advantages(rewards: torch.Tensor, *, scale_by_std: bool = False, eps: float = 1e-6) -> torch.Tensor:
    """Group-relative advantages ``A_i = r_i - mean_j r_j`` (``/ (std_j r_j + eps)`` if asked).

    Args:
        rewards: ``[num_groups, group_size]`` rewards; ``group_size >= 2``.
        scale_by_std: Divide by the group's unbiased reward std (GRPO's original form).
        eps: Added to the std to avoid dividing by zero in a zero-variance group.

    Returns:
        ``[num_groups, group_size]`` advantages (0 for every member of a zero-variance group).
    """
    _check_groups(rewards)
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if scale_by_std:
        centred = centred / (rewards.std(dim=1, keepdim=True) + eps)
    return centred


def passk_group_rewards(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """The pass@k-transformed rewards of each group (:func:`pope_env.metrics.passk_rewards`):
    1 for a correct sample, ``rho(n - 1, c, k - 1)`` for a wrong one; ``[num_groups, n]``."""
    _check_groups(rewards)
    from pope_env.metrics import passk_rewards

    rows = [torch.as_tensor(passk_rewards(row.tolist(), k), dtype=rewards.dtype) for row in rewards]
    return torch.stack(rows).to(rewards.device)


def passk_group_advantages(
    rewards: torch.Tensor, k: int, *, scale_by_std: bool = False, eps: float = 1e-6
) -> torch.Tensor:
    """The POPE paper's pass@k-objective advantages: :func:`group_advantages` of the
    pass@k-transformed rewards (:func:`passk_group_rewards`), normalised exactly as ``grpo``.

    With binary rewards and ``scale_by_std=False`` each advantage is the GRPO advantage times
    ``C(n - c - 1, k - 1) / C(n - 1, k - 1)`` in ``[0, 1]`` (so ``|A| <= |A_grpo|``, equal
    for ``k = 1``). With ``scale_by_std=True`` that per-group factor cancels and the
    advantages equal GRPO's std-scaled ones: pass@k only differs from GRPO without the std.
    """
    return group_advantages(passk_group_rewards(rewards, k), scale_by_std=scale_by_std, eps=eps)


def passk_chen_group_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """Chen et al.'s pass@k-training advantages per group (binary rewards: 1 = correct).

    Delegates to :func:`pope_env.metrics.passk_advantages` (the analytic form of "Pass@k
    Training for Adaptively Balancing Exploration and Exploitation", 2025), one group at a
    time. Normalised by the subset rewards' std, so their scale is not ``grpo``'s.
    """
    from pope_env.metrics import passk_advantages

    _check_groups(rewards)
    rows = [torch.as_tensor(passk_advantages(row.tolist(), k), dtype=rewards.dtype) for row in rewards]
    return torch.stack(rows).to(rewards.device)


def group_reward_std(rewards: torch.Tensor) -> torch.Tensor:
    """Unbiased reward std of each group: ``[num_groups]``."""
    _check_groups(rewards)
    return rewards.std(dim=1)


def informative_groups(rewards: torch.Tensor, min_std: float = 0.0) -> torch.Tensor:
    """Dynamic sampling's filter: ``True`` for groups whose reward std exceeds ``min_std``.

    A group where every completion got the same reward has zero advantage everywhere and
    contributes no policy gradient; DAPO drops such groups and samples more prompts. SRL
    uses a small positive threshold (0.01) for its continuous similarity rewards.
    """
    return group_reward_std(rewards) > min_std


def _check_groups(rewards: torch.Tensor) -> None:
    if rewards.dim() != 2:
        raise ConfigError(f"rewards must be [num_groups, group_size], got shape {tuple(rewards.shape)}")
    if rewards.shape[1] < 2:
        raise ConfigError(
            f"group size is {rewards.shape[1]}: group-relative advantages need at least 2 "
            "completions per prompt (set group_size >= 2)"
        )


# ----------------------------------------------------------------------------------------
# Per-token terms and aggregation
# ----------------------------------------------------------------------------------------
def clipped_surrogate(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate per token, as a loss (to minimise).

    ``rho = exp(logp - old_logp)``; ``loss = -min(rho * A, clip(rho, 1-eps_low, 1+eps_high) * A)``.

    Args:
        logp: ``[B, T]`` log-probs under the current policy ``pi_theta``.
        old_logp: ``[B, T]`` log-probs under the rollout policy ``pi_old``.
        advantages: ``[B]`` per-completion (broadcast over tokens) or ``[B, T]`` advantages.

    Returns:
        ``(loss, ratio, clipped)``: ``[B, T]`` per-token loss, the ratios ``rho`` and a bool
        mask of tokens where clipping is active (the gradient is zero there).
    """
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * advantages
    loss = -torch.minimum(unclipped, clipped)
    is_clipped = ((ratio < 1.0 - eps_low) & (advantages < 0)) | ((ratio > 1.0 + eps_high) & (advantages > 0))
    return loss, ratio, is_clipped


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of ``KL(pi_theta || pi_ref)`` per token:
    ``exp(ref - logp) - (ref - logp) - 1`` (unbiased, always >= 0)."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1.0


def aggregate(
    values: torch.Tensor, mask: torch.Tensor, *, how: Aggregation = "token", normalizer: float | None = None
) -> torch.Tensor:
    """Reduce a ``[B, T]`` per-token tensor to a scalar over the masked tokens.

    ``"token"``: ``sum(values * mask) / normalizer`` where ``normalizer`` defaults to
    ``mask.sum()``: every token of the batch weighs the same (DAPO's token-level loss).
    ``"sequence"``: each completion's token mean, summed and divided by ``normalizer``
    (default: the number of completions), i.e. GRPO's sample-level mean.

    Pass the *whole batch's* token (or completion) count as ``normalizer`` when ``values``
    is one micro-batch or one process's shard, so that the parts add up to the full loss.
    """
    mask = mask.to(values.dtype)
    if how == "token":
        denom = mask.sum() if normalizer is None else normalizer
        return (values * mask).sum() / max(float(denom), 1.0)
    if how == "sequence":
        per_seq = (values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        denom = per_seq.shape[0] if normalizer is None else normalizer
        return per_seq.sum() / max(float(denom), 1.0)
    raise ConfigError(f"aggregation must be 'token' or 'sequence', got {how!r}")


class LossTerms(NamedTuple):
    """The loss and its parts (all scalars; the parts are detached)."""

    loss: torch.Tensor
    policy_loss: torch.Tensor
    kl: torch.Tensor
    entropy: torch.Tensor
    clip_fraction: torch.Tensor
    ratio_mean: torch.Tensor


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    aggregation: Aggregation = "token",
    normalizer: float | None = None,
    ref_logp: torch.Tensor | None = None,
    kl_beta: float = 0.0,
    entropy: torch.Tensor | None = None,
    entropy_coef: float = 0.0,
) -> LossTerms:
    """The GRPO objective as a loss:
    ``L = agg(-min(rho A, clip(rho) A)) + beta * agg(KL_k3) - c_H * agg(H)``.

    Every term is aggregated the same way (see :func:`aggregate`); ``normalizer`` makes
    micro-batch and per-process losses add up to the full-batch loss. The reported
    ``kl``/``entropy``/``clip_fraction``/``ratio_mean`` use the same normaliser, so they
    too add up across parts.
    """
    agg = lambda v: aggregate(v, mask, how=aggregation, normalizer=normalizer)  # noqa: E731
    pg_tok, ratio, is_clipped = clipped_surrogate(logp, old_logp, advantages, eps_low=eps_low, eps_high=eps_high)
    policy_loss = agg(pg_tok)
    loss = policy_loss
    zero = policy_loss.new_zeros(())
    kl = zero
    if kl_beta > 0:
        if ref_logp is None:
            raise ConfigError("kl_beta > 0 needs the reference policy's log-probs (ref_logp)")
        kl = agg(kl_k3(logp, ref_logp))
        loss = loss + kl_beta * kl
    ent = zero
    if entropy is not None:
        ent = agg(entropy)
        if entropy_coef:
            loss = loss - entropy_coef * ent
    elif entropy_coef:
        raise ConfigError("entropy_coef != 0 needs per-token entropies (token_logprobs(with_entropy=True))")
    return LossTerms(
        loss=loss,
        policy_loss=policy_loss.detach(),
        kl=kl.detach(),
        entropy=ent.detach(),
        clip_fraction=agg(is_clipped.to(logp.dtype)).detach(),
        ratio_mean=agg(ratio.detach()),
    )


# ----------------------------------------------------------------------------------------
# One update over a batch of groups
# ----------------------------------------------------------------------------------------
@dataclass
class Batch:
    """Flat tensors-to-be of one training batch (built by :func:`flatten_groups`).

    ``advantages[i]`` is completion ``i``'s advantage; ``old_logprobs[i]`` its rollout
    log-probs (one per completion token), at temperature ``old_temperature`` (rollout
    policies report temperature-1 log-probs, :class:`~pope_env.agents.policy.Generation`).
    """

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    old_logprobs: list[list[float]]
    advantages: list[float]
    ref_logprobs: list[list[float]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    old_temperature: float = 1.0

    def __len__(self) -> int:
        return len(self.completion_ids)

    def select(self, idx: Sequence[int]) -> "Batch":
        """The completions at ``idx`` (a shard or micro-batch)."""
        pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
        return Batch(
            prompt_ids=pick(self.prompt_ids),
            completion_ids=pick(self.completion_ids),
            old_logprobs=pick(self.old_logprobs),
            advantages=pick(self.advantages),
            ref_logprobs=pick(self.ref_logprobs) if self.ref_logprobs is not None else None,
            meta=self.meta,
            old_temperature=self.old_temperature,
        )


def compute_advantages(rewards: torch.Tensor, config: GRPOConfig) -> torch.Tensor:
    """The advantages the config asks for, ``[num_groups, group_size]``."""
    if config.advantage == "passk":
        return passk_group_advantages(rewards, config.passk_k, scale_by_std=config.scale_by_std)
    if config.advantage == "passk-chen":
        return passk_chen_group_advantages(rewards, config.passk_k)
    return group_advantages(rewards, scale_by_std=config.scale_by_std)


def flatten_groups(groups: Sequence["Group"], config: GRPOConfig) -> Batch:
    """Turn groups of rollouts into one :class:`Batch` with per-completion advantages.

    All groups must have the same size >= 2. Completions without token ids (a policy that
    does not report them) cannot be trained on and raise :class:`ConfigError`.
    """
    if not groups:
        raise ConfigError("no groups to train on")
    sizes = {len(g.rollouts) for g in groups}
    if len(sizes) != 1:
        raise ConfigError(f"all groups must have the same size, got sizes {sorted(sizes)}")
    rewards = torch.tensor([[r.reward for r in g.rollouts] for g in groups], dtype=torch.float64)
    adv = compute_advantages(rewards, config)
    batch = Batch([], [], [], [])
    for g, a in zip(groups, adv.tolist()):
        for r, ai in zip(g.rollouts, a):
            if not r.completion_ids:
                # An empty completion still has a position for EOS in a real tokenizer; a
                # policy that returns no ids at all cannot be trained.
                raise ConfigError(
                    f"rollout for {g.item.problem_id!r} has no completion token ids; the "
                    "learner policy must return Generation.token_ids and logprobs"
                )
            batch.prompt_ids.append(list(r.prompt_ids))
            batch.completion_ids.append(list(r.completion_ids))
            batch.old_logprobs.append(list(r.logprobs))
            batch.advantages.append(float(ai))
    return batch


def pad_right(rows: Sequence[Sequence[float]], width: int, *, dtype: torch.dtype, device: Any) -> torch.Tensor:
    """``[len(rows), width]`` tensor of ``rows`` right-padded with zeros (cut at ``width``)."""
    out = torch.zeros(len(rows), width, dtype=dtype, device=device)
    for i, row in enumerate(rows):
        row = list(row)[:width]
        if row:
            out[i, : len(row)] = torch.tensor(row, dtype=dtype, device=device)
    return out


@torch.no_grad()
def recompute_logprobs(
    learner: LearnerPolicy, batch: Batch, micro_batch_size: int, *, temperature: float = 1.0,
    model: torch.nn.Module | None = None,
) -> list[list[float]]:
    """``log pi(token)`` at ``temperature`` of every completion token under ``learner`` now
    (no gradients), computed through ``model`` (default: ``learner.model``)."""
    out: list[list[float]] = []
    for start in range(0, len(batch), micro_batch_size):
        idx = range(start, min(start + micro_batch_size, len(batch)))
        part = batch.select(list(idx))
        tl = learner_logprobs(learner, part.prompt_ids, part.completion_ids, temperature=temperature, model=model)
        for row, m in zip(tl.logprobs.float().cpu(), tl.mask.cpu()):
            out.append(row[m.bool()].tolist())
    return out


class UpdateStats(NamedTuple):
    """What one :func:`grpo_update` did (floats, summed over processes where it matters)."""

    loss: float
    policy_loss: float
    kl: float
    entropy: float
    clip_fraction: float
    ratio_mean: float
    grad_norm: float
    tokens: int
    skipped: bool


def grpo_update(
    learner: LearnerPolicy,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    config: GRPOConfig,
    *,
    accelerator: "Accelerator | None" = None,
    model: torch.nn.Module | None = None,
    temperature: float = 1.0,
) -> UpdateStats:
    """One GRPO update: ``config.epochs`` passes over ``batch``, each one optimiser step.

    ``batch`` is this process's shard; the loss is normalised by the token (or completion)
    count of the batch summed over all processes, so with ``N`` processes the averaged
    gradients equal the single-process gradients of the full batch. Gradients are
    accumulated over micro-batches of ``config.micro_batch_size`` completions
    (:func:`~pope_env.agents.update.accumulate_and_step`). A non-finite loss or gradient
    norm skips the step (``skipped=True``; no parameter or optimiser-state change).

    ``temperature`` is the rollouts' sampling temperature: the learner's log-probs (ratio
    numerator, entropy) are computed at it. When the batch's old log-probs are at another
    temperature (rollout policies report temperature-1 log-probs), the old policy's
    log-probs at ``temperature`` are taken from the learner instead, as TRL does: the
    detached log-probs of the first pass when ``config.epochs == 1`` (on-policy: the ratio
    is exactly 1, no extra forward pass), else one no-grad pass before the first epoch.
    ``batch.ref_logprobs`` must already be at ``temperature``.

    Args:
        learner: The policy; its log-probs are computed through ``model``
            (:func:`learner_logprobs`).
        optimizer: The (accelerate-prepared) optimiser over the model's parameters.
        batch: This process's completions with advantages and rollout log-probs.
        config: The update's hyper-parameters.
        accelerator: The ``accelerate.Accelerator`` (``None``: plain single process).
        model: The wrapped module to compute with (default: ``learner.model``).
        temperature: The sampling temperature the learner's log-probs are computed at.
    """
    model = model if model is not None else learner.model
    device = next(learner.model.parameters()).device
    n_local = len(batch)
    tokens_local = sum(len(c) for c in batch.completion_ids)
    count_local = tokens_local if config.aggregation == "token" else n_local
    normalizer = float(sum_over_processes(accelerator, count_local, device))
    tokens_total = int(sum_over_processes(accelerator, tokens_local, device))
    old_from_learner = False  # on-policy at another temperature: old = this pass, detached
    if batch.old_temperature != temperature:
        if config.epochs == 1:
            old_from_learner = True
        else:
            batch.old_logprobs = recompute_logprobs(learner, batch, config.micro_batch_size, temperature=temperature,
                                                    model=model)
            batch.old_temperature = temperature
    elif any(len(lp) != len(c) for lp, c in zip(batch.old_logprobs, batch.completion_ids)):
        batch.old_logprobs = recompute_logprobs(learner, batch, config.micro_batch_size, temperature=temperature,
                                                model=model)

    def micro_loss(idx: Sequence[int]) -> dict[str, torch.Tensor]:
        part = batch.select(idx)
        tl = learner_logprobs(learner, part.prompt_ids, part.completion_ids, with_entropy=True,
                              temperature=temperature, model=model)
        width, dtype, dev = tl.logprobs.shape[1], tl.logprobs.dtype, tl.logprobs.device
        old = tl.logprobs.detach() if old_from_learner else pad_right(part.old_logprobs, width, dtype=dtype, device=dev)
        ref = None
        if config.kl_beta > 0:
            if part.ref_logprobs is None:
                raise ConfigError("kl_beta > 0 but the batch has no reference log-probs")
            ref = pad_right(part.ref_logprobs, width, dtype=dtype, device=dev)
        terms = grpo_loss(
            tl.logprobs, old, torch.tensor(part.advantages, dtype=dtype, device=dev), tl.mask,
            eps_low=config.eps_low, eps_high=config.eps_high,
            aggregation=config.aggregation, normalizer=normalizer,
            ref_logp=ref, kl_beta=config.kl_beta,
            entropy=tl.entropy, entropy_coef=config.entropy_coef,
        )
        return terms._asdict()

    # Micro-batches of similar completion lengths pad less (each is padded to its longest).
    by_length = sorted(range(n_local), key=lambda i: len(batch.completion_ids[i]))
    step = None
    for _epoch in range(config.epochs):
        step = accumulate_and_step(micro_loss, n_local, micro_batch_size=config.micro_batch_size,
                                   optimizer=optimizer, model=model, accelerator=accelerator,
                                   max_grad_norm=config.max_grad_norm, order=by_length)
        if step.skipped:
            break
    assert step is not None  # config.epochs >= 1
    t = step.totals
    return UpdateStats(
        loss=t.get("loss", 0.0),
        policy_loss=t.get("policy_loss", 0.0),
        kl=t.get("kl", 0.0),
        entropy=t.get("entropy", 0.0),
        clip_fraction=t.get("clip_fraction", 0.0),
        ratio_mean=t.get("ratio_mean", 0.0),
        grad_norm=step.grad_norm,
        tokens=tokens_total,
        skipped=step.skipped,
    )


def make_optimizer(model: torch.nn.Module, config: GRPOConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters, as configured."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"{type(model).__name__} has no trainable parameters")
    return torch.optim.AdamW(params, lr=config.lr, betas=config.adam_betas, weight_decay=config.weight_decay)
