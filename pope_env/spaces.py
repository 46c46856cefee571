"""Gymnasium spaces for text.

``gymnasium.spaces.Text`` checks every character against a fixed charset (alphanumerics
by default), so it rejects LaTeX prompts and most real model outputs. :class:`UnicodeText`
accepts any ``str`` up to a length limit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

_SAMPLE_ALPHABET = tuple("abcdefghijklmnopqrstuvwxyz0123456789 +-*/=()^{}\\$.,") + ("π", "√", "∑")


class UnicodeText(spaces.Space[str]):
    """Any Python ``str`` of at most ``max_length`` characters (code points).

    ``sample()`` draws short strings over a small mixed alphabet (ASCII, LaTeX symbols and a
    few non-ASCII code points); it exists for env checkers, not for modelling text.
    """

    def __init__(self, max_length: int = 1 << 24, *, seed: int | np.random.Generator | None = None) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.max_length = int(max_length)
        super().__init__(dtype=str, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        n = int(self.np_random.integers(1, min(32, self.max_length) + 1))
        idx = self.np_random.integers(0, len(_SAMPLE_ALPHABET), size=n)
        return "".join(_SAMPLE_ALPHABET[i] for i in idx)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"UnicodeText(max_length={self.max_length})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnicodeText) and other.max_length == self.max_length

    def to_jsonable(self, sample_n: Any) -> list[str]:
        return list(sample_n)

    def from_jsonable(self, sample_n: list[str]) -> list[str]:
        return list(sample_n)
