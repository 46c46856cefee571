"""The POPE mixture: guided and unguided resets in an exact ratio, block by block.

POPE trains on the hard problems both with guidance (the oracle prefix ``z[:i*]``) and
without it, in equal shares. :class:`MixtureSampler` decides, reset by reset, whether the
next episode is guided. It is exact, not merely right in expectation: the resets are cut into
consecutive *blocks* of ``guided + unguided`` resets, and every block holds exactly
``guided`` guided and ``unguided`` unguided resets, in an order shuffled by the seed. With
the default 1:1 every consecutive pair of resets (1-2, 3-4, ...) is one guided and one
unguided episode, so any even number of resets from the start is exactly half guided.

Which *problem* each reset shows is :mod:`pope_env.rollin`'s part: in the math envs' pope
mode guided and unguided resets draw from two per-pass permutations of the problems, so each
pass of ``2N`` resets shows every problem once guided and once unguided.

One sampler belongs to one env instance. Reseeding (``reset(seed=...)`` of the env) restarts
the block sequence, so the decisions are a deterministic function of the seed and the number
of resets since seeding. In a vector env each copy keeps its own exact ratio, so ``N`` copies
that each reset a whole number of blocks give an exactly mixed batch.
"""

from __future__ import annotations

import random

from pope_env.errors import ConfigError


class MixtureSampler:
    """Yields ``True`` (guided) / ``False`` (unguided) in an exact ratio per block.

    Args:
        guided: Guided resets per block (``>= 0``).
        unguided: Unguided resets per block (``>= 0``); ``guided + unguided >= 1``.
        seed: Seed of the in-block shuffles (``None``: fresh entropy).

    Example::

        mix = MixtureSampler(1, 1, seed=0)
        [mix.next() for _ in range(4)]   # e.g. [False, True, True, False]
    """

    def __init__(self, guided: int = 1, unguided: int = 1, seed: int | None = None) -> None:
        for name, value in (("guided", guided), ("unguided", unguided)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
        if guided + unguided == 0:
            raise ConfigError("the mixture needs guided + unguided >= 1 resets per block")
        self.guided, self.unguided = guided, unguided
        self.seed(seed)

    @classmethod
    def from_fraction(cls, guided_fraction: float, seed: int | None = None,
                      max_block: int = 100) -> "MixtureSampler":
        """The smallest block (up to ``max_block``) whose guided share is ``guided_fraction``."""
        if not 0.0 <= guided_fraction <= 1.0:
            raise ConfigError(f"guided_fraction must be in [0, 1], got {guided_fraction!r}")
        for block in range(1, max_block + 1):
            g = round(guided_fraction * block)
            if abs(g / block - guided_fraction) < 1e-9:
                return cls(g, block - g, seed)
        raise ConfigError(
            f"guided_fraction {guided_fraction!r} is not a ratio with a block of at most "
            f"{max_block} resets; give it as guided:unguided counts instead"
        )

    @property
    def block_size(self) -> int:
        return self.guided + self.unguided

    @property
    def guided_fraction(self) -> float:
        return self.guided / self.block_size

    def seed(self, seed: int | None) -> None:
        """Restart the block sequence with ``seed``."""
        self._rng = random.Random(seed)
        self._block: list[bool] = []
        self.resets = 0

    def next(self) -> bool:
        """Whether the next reset is guided."""
        if not self._block:
            block = [True] * self.guided + [False] * self.unguided
            self._rng.shuffle(block)
            self._block = block[::-1]  # pop() from the end yields the shuffled order
        self.resets += 1
        return self._block.pop()

    def __repr__(self) -> str:
        return f"MixtureSampler(guided={self.guided}, unguided={self.unguided}, resets={self.resets})"
