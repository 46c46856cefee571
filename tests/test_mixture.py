"""The POPE mixture is exact per block, shuffled within blocks and deterministic for a seed."""

from __future__ import annotations

import pytest

from pope_env.errors import ConfigError
from pope_env.mixture import MixtureSampler


def test_default_is_exactly_one_to_one_in_every_pair():
    mix = MixtureSampler(seed=0)
    draws = [mix.next() for _ in range(1000)]
    for start in range(0, 1000, 2):
        assert sorted(draws[start:start + 2]) == [False, True]
    assert sum(draws) == 500
    # the order inside pairs is shuffled, not alternating
    assert {tuple(draws[s:s + 2]) for s in range(0, 1000, 2)} == {(True, False), (False, True)}


@pytest.mark.parametrize("guided,unguided", [(1, 3), (2, 1), (3, 0), (0, 2), (5, 7)])
def test_other_ratios_are_exact_per_block(guided, unguided):
    mix = MixtureSampler(guided, unguided, seed=3)
    block = guided + unguided
    for _ in range(50):
        assert sum(mix.next() for _ in range(block)) == guided


def test_deterministic_for_a_seed_and_reseedable():
    a, b, c = MixtureSampler(seed=11), MixtureSampler(seed=11), MixtureSampler(seed=12)
    first = [a.next() for _ in range(64)]
    assert first == [b.next() for _ in range(64)]
    assert first != [c.next() for _ in range(64)]
    a.seed(11)
    assert [a.next() for _ in range(64)] == first and a.resets == 64


def test_from_fraction():
    assert (MixtureSampler.from_fraction(0.5).guided, MixtureSampler.from_fraction(0.5).unguided) == (1, 1)
    m = MixtureSampler.from_fraction(0.25)
    assert (m.guided, m.unguided) == (1, 3)
    with pytest.raises(ConfigError, match=r"in \[0, 1\]"):
        MixtureSampler.from_fraction(1.5)
    with pytest.raises(ConfigError, match="not a ratio"):
        MixtureSampler.from_fraction(1 / 3.1415926)


@pytest.mark.parametrize("args", [(0, 0), (-1, 1), (1.5, 1), (True, 1)])
def test_bad_ratios_are_refused(args):
    with pytest.raises(ConfigError):
        MixtureSampler(*args)
