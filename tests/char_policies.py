"""The real tiny char model of the batching tests, counting its batched calls, and the verdict
those tests score its text with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def counting_char_model(seed: int = 0) -> Any:
    """An untrained 2-layer ``CharLMPolicy`` whose ``seeded_calls`` counts ``generate_seeded`` calls."""
    from pope_env.agents.charlm import CharLMConfig, CharLMPolicy, make_policy

    class Counting(CharLMPolicy):
        seeded_calls = 0

        def generate_seeded(self, prompts, **kw):
            self.seeded_calls += 1
            return super().generate_seeded(prompts, **kw)

    return Counting(make_policy(CharLMConfig(d_model=32, n_layers=2, n_heads=2, max_len=96), seed=seed).model)


def writes_a_seven(completions: Sequence[str], problem: Any) -> list[bool]:
    """A real verdict on the untrained char model's text: success = it wrote a 7 (rare enough
    that states differ, common enough that many problems find a prefix)."""
    return ["7" in c for c in completions]
