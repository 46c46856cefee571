"""A lean decode step for Llama-architecture models, used by :class:`~pope_env.agents.hf_policy.HFPolicy`.

A transformers forward call does the same arithmetic as this module, but on a small model
most of a decode step's time is Python: output dataclasses, mask construction, cache
bookkeeping and per-module wrappers. :class:`LlamaDecoder` runs the decode steps of a
sampling loop by calling the model's own submodules (norms, projections, rotary embedding,
MLP, LM head) directly, on a preallocated KV buffer, so a step is little more than its torch
ops. The prefill still goes through the model's forward; :meth:`LlamaDecoder.start` takes
over its ``DynamicCache``.

Which models: ``model_type`` ``llama``, ``mistral`` or ``qwen2`` (grouped-query attention,
attention biases, any rotary scaling the model's ``rotary_emb`` implements) without
accelerate offload hooks, for calls whose prompts and completions fit in any sliding window.
Anything else, or a model whose first fast step disagrees with the library's (see
:func:`agrees_with_library`), keeps the library's forward. On the models tested the logits
are bit-identical to the library's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pope_env.errors import require

if TYPE_CHECKING:  # pragma: no cover
    import torch

torch = require("torch", "train")
F = torch.nn.functional

SUPPORTED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2"})
_LAYER_PARTS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                "input_layernorm", "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj",
                "mlp.down_proj", "mlp.act_fn")


def unsupported_reason(model: Any) -> str | None:
    """Why :class:`LlamaDecoder` cannot run ``model`` (``None`` when it can)."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        return f"model_type {model_type!r} is not one of {sorted(SUPPORTED_MODEL_TYPES)}"
    inner = getattr(model, "model", None)
    if inner is None or not all(hasattr(inner, a) for a in ("embed_tokens", "layers", "norm", "rotary_emb")):
        return "the model does not have the Llama module layout (model.embed_tokens/layers/norm/rotary_emb)"
    if not hasattr(model, "lm_head"):
        return "the model has no lm_head"
    for layer in inner.layers:
        for part in _LAYER_PARTS:
            obj = layer
            for name in part.split("."):
                obj = getattr(obj, name, None)
            if obj is None:
                return f"a decoder layer has no {part}"
    if any(hasattr(m, "_hf_hook") for m in model.modules()):
        return "the model has accelerate hooks (offloading or a device map)"
    return None


class LlamaDecoder:
    """Decode steps of a Llama-architecture model over a KV buffer that grows in blocks.

    Use: prefill with the model's forward (``use_cache=True``), then
    ``start(cache, attention_mask, positions, max_new_tokens)``, call :meth:`step` once per
    new token, and :meth:`release` the buffer when done. Call it under
    ``torch.inference_mode()`` with the model in eval mode.

    Args:
        model: A ``LlamaForCausalLM``-like module; :func:`unsupported_reason` must be ``None``.
    """

    #: New tokens the KV buffer makes room for at a time.
    GROWTH_TOKENS = 256

    def __init__(self, model: Any) -> None:
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"LlamaDecoder cannot run this model: {reason}")
        self.model = model
        self.config = model.config
        self._keys: list[torch.Tensor] = []
        self._values: list[torch.Tensor] = []
        self._mask: torch.Tensor | None = None
        self._positions: torch.Tensor | None = None
        self._length = 0
        self._limit = 0
        windows = [getattr(layer.self_attn, "sliding_window", None) for layer in model.model.layers]
        if model.config.model_type == "mistral":
            windows.append(getattr(model.config, "sliding_window", None))
        windows = [w for w in windows if w]
        #: The smallest sliding window any layer uses (``None``: all attention is full).
        self.sliding_window: int | None = min(windows) if windows else None

    def fits(self, total_tokens: int) -> bool:
        """Whether ``total_tokens`` (prompt width + new tokens) fit in every sliding window, so
        that attention is full and this decoder computes what the library does."""
        return self.sliding_window is None or total_tokens <= self.sliding_window

    def start(self, cache: Any, attention_mask: "torch.Tensor", positions: "torch.Tensor",
              max_new_tokens: int, rows: "torch.Tensor | None" = None) -> None:
        """Take over a prefill's KV cache.

        Args:
            cache: The ``DynamicCache`` a forward over the prompts returned.
            attention_mask: ``[U, P]`` 0/1 padding mask of the prefilled (left-padded) prompts.
            positions: ``[U, P]`` position ids the prefill used.
            max_new_tokens: Most decode steps that will follow.
            rows: Optional ``[B]`` indices into the ``U`` prefilled prompts: row ``b`` of the
                decode batch continues prompt ``rows[b]`` (one prefill serves a whole group).
        """
        total = attention_mask.shape[1] + max_new_tokens
        if not self.fits(total):
            raise ValueError(f"{total} tokens exceed the sliding window of {self.sliding_window}")
        if rows is not None:
            attention_mask, positions = attention_mask[rows], positions[rows]
        # Room for the first GROWTH_TOKENS new tokens; more is added as rows keep going, so a
        # large max_new_tokens costs memory only for the tokens really generated.
        capacity = attention_mask.shape[1] + min(max_new_tokens, self.GROWTH_TOKENS)
        self._keys, self._values = [], []
        for layer in cache.layers:
            keys, values = layer.keys, layer.values
            if rows is not None:
                keys, values = keys[rows], values[rows]
            buffer_shape = (keys.shape[0], keys.shape[1], capacity, keys.shape[3])
            key_buffer, value_buffer = keys.new_empty(buffer_shape), values.new_empty(buffer_shape)
            key_buffer[:, :, : keys.shape[2]] = keys
            value_buffer[:, :, : keys.shape[2]] = values
            self._keys.append(key_buffer)
            self._values.append(value_buffer)
        self._mask = torch.zeros((attention_mask.shape[0], capacity), dtype=torch.bool, device=attention_mask.device)
        self._mask[:, : attention_mask.shape[1]] = attention_mask.bool()
        self._positions = positions[:, -1:].clone()
        self._length = attention_mask.shape[1]
        self._limit = total

    def release(self) -> None:
        """Drop the KV buffer (its memory is free for, say, the next training update)."""
        self._keys, self._values, self._mask, self._positions = [], [], None, None
        self._length = self._limit = 0

    def _grow(self) -> None:
        """Add room for ``GROWTH_TOKENS`` more tokens (up to the limit ``start`` was given)."""
        extra = min(self.GROWTH_TOKENS, self._limit - self._mask.shape[1])

        def grow(buffer: "torch.Tensor") -> "torch.Tensor":
            return torch.cat([buffer, buffer.new_empty((*buffer.shape[:2], extra, buffer.shape[3]))], dim=2)

        self._keys = [grow(k) for k in self._keys]
        self._values = [grow(v) for v in self._values]
        self._mask = torch.cat([self._mask, self._mask.new_zeros((self._mask.shape[0], extra))], dim=1)

    def step(self, token_ids: "torch.Tensor", live: "torch.Tensor | None" = None) -> "torch.Tensor":
        """Feed one token per row; return the next-token logits ``[B, V]`` (float32).

        Args:
            token_ids: ``[B]`` the tokens just sampled.
            live: Optional ``[B]`` bool; a row that is not live (finished) feeds a token no
                later query attends to, as the library's loop does with a 0 in its mask.
        """
        if self._mask is None:
            raise RuntimeError("call start() before step()")
        if self._length >= self._limit:
            raise RuntimeError("more decode steps than the max_new_tokens given to start()")
        if self._length >= self._mask.shape[1]:
            self._grow()
        model, length = self.model, self._length
        self._mask[:, length] = True if live is None else live
        self._length = length = length + 1
        self._positions = self._positions + 1
        batch = token_ids.shape[0]
        hidden = model.model.embed_tokens(token_ids[:, None])
        cos, sin = model.model.rotary_emb(hidden, self._positions)
        cos, sin = cos[:, None], sin[:, None]
        attend = self._mask[:, None, None, :length]
        for index, layer in enumerate(model.model.layers):
            attention = layer.self_attn
            head_dim = attention.head_dim
            normed = layer.input_layernorm(hidden)
            query = attention.q_proj(normed).view(batch, 1, -1, head_dim).transpose(1, 2)
            key = attention.k_proj(normed).view(batch, 1, -1, head_dim).transpose(1, 2)
            value = attention.v_proj(normed).view(batch, 1, -1, head_dim).transpose(1, 2)
            query, key = _rotate(query, cos, sin), _rotate(key, cos, sin)
            self._keys[index][:, :, length - 1 : length] = key
            self._values[index][:, :, length - 1 : length] = value
            out = F.scaled_dot_product_attention(
                query, self._keys[index][:, :, :length], self._values[index][:, :, :length],
                attn_mask=attend, scale=attention.scaling, enable_gqa=key.shape[1] != query.shape[1],
            )
            hidden = hidden + attention.o_proj(out.transpose(1, 2).reshape(batch, 1, -1))
            normed = layer.post_attention_layernorm(hidden)
            mlp = layer.mlp
            hidden = hidden + mlp.down_proj(mlp.act_fn(mlp.gate_proj(normed)) * mlp.up_proj(normed))
        return model.lm_head(model.model.norm(hidden))[:, -1, :].float()


def _rotate(x: "torch.Tensor", cos: "torch.Tensor", sin: "torch.Tensor") -> "torch.Tensor":
    """Rotary embedding, as the library's ``apply_rotary_pos_emb`` computes it."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def agrees_with_library(fast: "torch.Tensor", library: "torch.Tensor", dtype: "torch.dtype") -> bool:
    """Whether the fast step's logits match the library forward's, within the rounding of
    the model's ``dtype`` (1e-4 for float32, 5e-2 for 16-bit weights)."""
    tolerance = 1e-4 if dtype in (torch.float32, torch.float64) else 5e-2
    return fast.shape == library.shape and bool(torch.allclose(fast, library, rtol=tolerance, atol=tolerance))
