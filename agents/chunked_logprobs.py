"""Chunked output layer: per-token log-probs and entropies without ``[N, vocab]`` logits.

The learner's forward (:meth:`pope_env.agents.hf_policy.HFPolicy.token_logprobs`) needs, for
every completion token, its log-prob and the entropy of its next-token distribution. With a
49k vocabulary, full float32 logits for 16 completions x 128 tokens are 400 MB, and autograd
keeps them for the backward pass. Here the output layer is applied to chunks of
``CHUNK_ELEMENTS // vocab`` positions at a time; only the hidden states, the log-sum-exp and
the entropy of each position are kept, and each chunk's logits are recomputed in the
backward pass (about 6% more update time, measured in docs/trainer.md).
"""

from __future__ import annotations

from typing import Any

import torch

# ---------------------------------------------------------------------------------------------
#: Logit elements (positions x vocabulary) per chunk: 2**23 float32 values = 32 MiB, i.e.
#: about 170 positions of a 49k vocabulary.
CHUNK_ELEMENTS = 1 << 23

_SCALED_HEAD_KEYS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier",
                     "logits_scaling")


def chunkable_lm_head(model: Any) -> "torch.nn.Linear | None":
    """The output layer of ``model`` when logits are exactly ``lm_head(final hidden state)``, else ``None``.

    Unwraps ``DistributedDataParallel``-style ``.module`` wrappers. ``None`` (use full
    logits) for FSDP-sharded models, output layers that are not ``nn.Linear``, and configs
    that scale or soft-cap the logits (Gemma 2, Cohere, Granite, ...).
    """
    inner = model
    while not hasattr(inner, "get_output_embeddings") and hasattr(inner, "module"):
        if "FullyShardedDataParallel" in type(inner).__name__:
            return None
        inner = inner.module
    get_head = getattr(inner, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if not isinstance(head, torch.nn.Linear) or type(head.weight) is not torch.nn.Parameter:
        return None  # a custom head, or a DTensor / flat-parameter shard
    config = getattr(inner, "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    if any(getattr(text_config, key, None) not in (None, 1.0) for key in _SCALED_HEAD_KEYS):
        return None
    return head


def chunked_token_logprobs(
    hidden: "torch.Tensor",
    weight: "torch.Tensor",
    bias: "torch.Tensor | None",
    targets: "torch.Tensor",
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    chunk_elements: int | None = None,
) -> tuple["torch.Tensor", "torch.Tensor | None"]:
    """``log_softmax((hidden @ weight.T + bias) / temperature)[target]`` per row, and the entropy.

    Args:
        hidden: ``[N, H]`` final hidden states of the positions that predict ``targets``.
        weight: ``[V, H]`` output-layer weight; ``bias``: ``[V]`` or ``None``.
        targets: ``[N]`` token ids.
        temperature: The logits are divided by it before the softmax.
        with_entropy: Also return each row's entropy (nats).
        chunk_elements: Logit elements computed at once (rows per chunk = this // V;
            default :data:`CHUNK_ELEMENTS`).

    Returns:
        ``(logprobs [N] float32, entropy [N] float32 or None)``, differentiable with
        respect to ``hidden``, ``weight`` and ``bias``. Autograd keeps only ``hidden`` and
        two floats per row; the backward recomputes each chunk's logits.
    """
    rows = max(1, (chunk_elements or CHUNK_ELEMENTS) // max(1, weight.shape[0]))
    lp, ent = ChunkedTokenLogprobs.apply(hidden, weight, bias, targets, 1.0 / temperature, rows, with_entropy)
    return lp, ent


class ChunkedTokenLogprobs(torch.autograd.Function):
    """Autograd function behind :func:`chunked_token_logprobs` (see there).

    Forward, per chunk of ``rows`` positions: ``z = (h W^T + b) / T`` in float32,
    ``lse = logsumexp(z)``, ``logprob = z[target] - lse`` and ``entropy = lse - sum(p z)``;
    saved for backward: ``hidden``, ``targets``, ``lse`` and the entropies. Backward
    recomputes ``z`` chunk by chunk and uses ``d logprob / dz = onehot(target) - p`` and
    ``d entropy / dz = -p (log p + entropy)``.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, inv_temperature: float, rows: int, with_entropy: bool):  # type: ignore[override]
        ctx.set_materialize_grads(False)  # an entropy used only for logging gets no gradient work
        n = hidden.shape[0]
        lse = torch.empty(n, dtype=torch.float32, device=hidden.device)
        logprobs = torch.empty_like(lse)
        entropy = torch.empty_like(lse) if with_entropy else None
        for s in range(0, n, rows):
            e = min(s + rows, n)
            z = _chunk_logits(hidden[s:e], weight, bias, inv_temperature)
            chunk_lse = torch.logsumexp(z, dim=-1)
            lse[s:e] = chunk_lse
            logprobs[s:e] = z.gather(1, targets[s:e, None])[:, 0] - chunk_lse
            if entropy is not None:
                log_p = z.sub_(chunk_lse[:, None])
                entropy[s:e] = -torch.linalg.vecdot(log_p.exp(), log_p)
            del z
        ctx.save_for_backward(hidden, weight, bias, targets, lse, entropy)
        ctx.inv_temperature, ctx.rows = inv_temperature, rows
        return logprobs, entropy

    @staticmethod
    def backward(ctx, grad_logprobs, grad_entropy):  # type: ignore[override]
        hidden, weight, bias, targets, lse, entropy = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        if grad_logprobs is None and grad_entropy is None:
            return None, None, None, None, None, None, None
        inv_t, rows, n = ctx.inv_temperature, ctx.rows, hidden.shape[0]
        grad_h = torch.empty_like(hidden) if need_h else None
        acc_dtype = torch.float32 if weight.dtype in (torch.float16, torch.bfloat16) else weight.dtype
        grad_w = torch.zeros(weight.shape, dtype=acc_dtype, device=weight.device) if need_w else None
        grad_b = torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device) if need_b else None
        for s in range(0, n, rows):
            e = min(s + rows, n)
            h = hidden[s:e].to(weight.dtype)
            log_p = _chunk_logits(h, weight, bias, inv_t).sub_(lse[s:e, None])
            p = log_p.exp()
            if grad_entropy is not None:
                # d entropy / dz = -p (log p + entropy)
                grad_z = log_p.add_(entropy[s:e, None]).mul_(p).mul_(-grad_entropy[s:e, None].float())
                if grad_logprobs is not None:
                    grad_z.addcmul_(p, grad_logprobs[s:e, None].float(), value=-1.0)
            else:
                grad_z = p.mul_(-grad_logprobs[s:e, None].float())
            if grad_logprobs is not None:
                # d logprob / dz = onehot(target) - p
                grad_z.scatter_add_(1, targets[s:e, None], grad_logprobs[s:e, None].float())
            if inv_t != 1.0:
                grad_z.mul_(inv_t)
            g = grad_z.to(weight.dtype)
            if grad_h is not None:
                grad_h[s:e] = (g @ weight).to(hidden.dtype)
            if grad_w is not None:
                grad_w.addmm_(g.t(), h) if acc_dtype == weight.dtype else grad_w.add_((g.t() @ h).float())
            if grad_b is not None:
                grad_b.add_(grad_z.sum(0))
            del log_p, p, grad_z, g
        return (grad_h, grad_w.to(weight.dtype) if grad_w is not None else None,
                grad_b.to(bias.dtype) if grad_b is not None else None, None, None, None, None)


def _chunk_logits(hidden: "torch.Tensor", weight: "torch.Tensor", bias: "torch.Tensor | None",
                  inv_temperature: float) -> "torch.Tensor":
    """``[rows, V]`` float32 logits of one chunk, divided by the temperature."""
    z = hidden.to(weight.dtype) @ weight.t()
    if bias is not None:
        z = z + bias
    z = z.float()
    if inv_temperature != 1.0:
        z.mul_(inv_temperature)
    return z
