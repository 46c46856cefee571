"""Gymnasium spaces for text.

``gymnasium.spaces.Text`` checks every character against a fixed charset (alphanumerics
by default), so it rejects LaTeX prompts and most real model outputs. :class:`UnicodeText`
accepts any ``str`` up to a length limit, and works in ``AsyncVectorEnv`` with shared memory:
each sub-env gets a buffer of ``shared_memory_bytes`` for its UTF-8 encoded observation.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import (
    batch_space,
    create_shared_memory,
    read_from_shared_memory,
    write_to_shared_memory,
)

from pope_env.errors import ConfigError, InvalidActionError

_SAMPLE_ALPHABET = tuple("abcdefghijklmnopqrstuvwxyz0123456789 +-*/=()^{}\\$.,") + ("π", "√", "∑")


class UnicodeText(spaces.Space[str]):
    """Any Python ``str`` of at most ``max_length`` characters (code points).

    ``sample()`` draws short strings over a small mixed alphabet (ASCII, LaTeX symbols and a
    few non-ASCII code points); it exists for env checkers, not for modelling text.
    """

    def __init__(
        self,
        max_length: int = 1 << 24,
        *,
        shared_memory_bytes: int = 1 << 20,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        if shared_memory_bytes < 1:
            raise ValueError(f"shared_memory_bytes must be >= 1, got {shared_memory_bytes}")
        self.max_length = int(max_length)
        self.shared_memory_bytes = int(shared_memory_bytes)
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


def check_text_action(action: Any, space: UnicodeText) -> str | None:
    """Check a text env's action by pope-env's invalid-action rule (docs/architecture.md).

    Returns ``None`` when ``action`` is in ``space``, else the reason it is not (a ``str``
    longer than ``space.max_length``): the env then ends the episode with its
    ``invalid_action_reward`` and puts the reason in ``info["invalid_action"]``.

    Raises:
        InvalidActionError: ``action`` is not a ``str`` (a bug in the caller, not a policy
            mistake: decode token ids to text before calling ``step``).
    """
    if not isinstance(action, str):
        raise InvalidActionError(
            f"an action of this env is text (str), got {type(action).__name__}; "
            "decode the policy's output to a str before calling step()"
        )
    if len(action) > space.max_length:
        return f"action has {len(action)} characters; the action space allows at most {space.max_length}"
    return None


# --- vector-env support ----------------------------------------------------------------
# A batch of texts is a tuple of str. In AsyncVectorEnv's shared memory each sub-env owns a
# row of 8 length bytes followed by ``shared_memory_bytes`` of UTF-8 (surrogates passed
# through, so any Python str round-trips).

_HEADER = 8


@batch_space.register(UnicodeText)
def _batch_unicode_text(space: UnicodeText, n: int = 1) -> spaces.Tuple:
    return spaces.Tuple([UnicodeText(space.max_length, shared_memory_bytes=space.shared_memory_bytes)
                         for _ in range(n)])


@create_shared_memory.register(UnicodeText)
def _create_unicode_text_memory(space: UnicodeText, n: int = 1, ctx: Any = mp) -> Any:
    return ctx.Array("B", n * (_HEADER + space.shared_memory_bytes))


def _rows(space: UnicodeText, shared_memory: Any) -> np.ndarray:
    return np.frombuffer(shared_memory.get_obj(), dtype=np.uint8).reshape(-1, _HEADER + space.shared_memory_bytes)


class SharedTextBatch(Sequence):
    """A live view of the texts in an async vector env's shared memory (like the numpy views
    gymnasium returns for array spaces). ``copy.deepcopy`` (which ``AsyncVectorEnv`` applies
    with its default ``copy=True``) materialises a plain ``tuple`` of ``str``."""

    def __init__(self, space: UnicodeText, shared_memory: Any, n: int) -> None:
        self._rows = _rows(space, shared_memory)[:n]

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return tuple(self)[index]
        row = self._rows[index]
        length = int.from_bytes(row[:_HEADER].tobytes(), "little")
        return row[_HEADER : _HEADER + length].tobytes().decode("utf-8", "surrogatepass")

    def __deepcopy__(self, memo: dict) -> tuple[str, ...]:
        return tuple(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __repr__(self) -> str:
        return f"SharedTextBatch({tuple(self)!r})"


@read_from_shared_memory.register(UnicodeText)
def _read_unicode_text(space: UnicodeText, shared_memory: Any, n: int = 1) -> SharedTextBatch:
    return SharedTextBatch(space, shared_memory, n)


@write_to_shared_memory.register(UnicodeText)
def _write_unicode_text(space: UnicodeText, index: int, value: str, shared_memory: Any) -> None:
    data = value.encode("utf-8", "surrogatepass")
    if len(data) > space.shared_memory_bytes:
        raise ConfigError(
            f"an observation of {len(data)} UTF-8 bytes does not fit the async vector env's shared "
            f"buffer of {space.shared_memory_bytes} bytes; pass "
            "vector_kwargs={'shared_memory': False} to gym.make_vec, or build the env's "
            "UnicodeText with a larger shared_memory_bytes"
        )
    row = _rows(space, shared_memory)[index]
    row[:_HEADER] = np.frombuffer(len(data).to_bytes(_HEADER, "little"), dtype=np.uint8)
    row[_HEADER : _HEADER + len(data)] = np.frombuffer(data, dtype=np.uint8)
