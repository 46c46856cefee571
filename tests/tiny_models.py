"""A tiny random-weight Llama with SmolLM2's tokenizer, shared by the policy tests."""

from __future__ import annotations

import torch
import transformers


def tiny_llama(tokenizer, seed: int = 0, *, tied: bool = False, **overrides) -> transformers.LlamaForCausalLM:
    """2 layers, hidden 64, head size 32 (vLLM's CPU attention needs >= 32), in eval mode."""
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=tied,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **overrides,
    )
    return transformers.LlamaForCausalLM(config).eval()
