"""pass@k and pass@k-training advantages against brute-force enumeration of all k-subsets."""

from __future__ import annotations

import itertools
import math
import random
import statistics

import pytest

from pope_env.errors import ConfigError
from pope_env.metrics import pass_at_k, passk_advantages, passk_rewards


def brute_pass_at_k(correct: list[bool], k: int) -> float:
    subsets = list(itertools.combinations(correct, k))
    return sum(any(s) for s in subsets) / len(subsets)


def brute_passk_advantages(correct: list[bool], k: int) -> list[float]:
    """The definition: reward each k-subset by its max, normalise by the subsets' mean and
    population std, and give each sample the mean advantage of the subsets holding it."""
    idx_subsets = list(itertools.combinations(range(len(correct)), k))
    subset_reward = {s: float(any(correct[i] for i in s)) for s in idx_subsets}
    values = list(subset_reward.values())
    mean, std = statistics.fmean(values), statistics.pstdev(values)
    if std == 0:
        return [0.0] * len(correct)
    out = []
    for i in range(len(correct)):
        holding = [(subset_reward[s] - mean) / std for s in idx_subsets if i in s]
        out.append(statistics.fmean(holding))
    return out


SMALL_GROUPS = [(n, c, k) for n in range(1, 9) for c in range(n + 1) for k in range(1, n + 1)]


@pytest.mark.parametrize("n,c,k", SMALL_GROUPS)
def test_pass_at_k_matches_enumeration(n, c, k):
    correct = [True] * c + [False] * (n - c)
    assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(correct, k), abs=1e-12)


@pytest.mark.parametrize("n,c,k", SMALL_GROUPS)
def test_passk_advantages_match_enumeration(n, c, k):
    # Interleave correct and wrong samples so the order of the output is checked too.
    correct = [True] * c + [False] * (n - c)
    random.Random(f"{n}:{c}:{k}").shuffle(correct)
    assert sum(correct) == c
    rewards = [1.0 if ok else 0.0 for ok in correct]
    got = passk_advantages(rewards, k)
    want = brute_passk_advantages(correct, k)
    assert got == pytest.approx(want, abs=1e-9)


def test_k1_advantages_are_grpo():
    rewards = [1, 0, 0, 1, 0]
    mean, std = statistics.fmean(rewards), statistics.pstdev(rewards)
    assert passk_advantages(rewards, 1) == pytest.approx([(r - mean) / std for r in rewards])


def test_pass_at_k_is_stable_for_large_n():
    exact = 1 - math.comb(1024 - 3, 512) / math.comb(1024, 512)
    assert pass_at_k(1024, 3, 512) == pytest.approx(exact, rel=1e-12)
    assert pass_at_k(1024, 0, 1024) == 0.0
    assert pass_at_k(1024, 1, 1024) == 1.0
    assert pass_at_k(1024, 1000, 1) == pytest.approx(1000 / 1024)
    adv = passk_advantages([1.0] * 5 + [0.0] * 1019, 64)
    assert all(math.isfinite(a) for a in adv)
    assert adv[0] > 0 > adv[-1]


def test_non_binary_rewards_use_the_threshold():
    assert passk_advantages([0.9, 0.1, 0.0], 2) == passk_advantages([1, 0, 0], 2)
    assert passk_advantages([0.9, 0.1, 0.0], 2, threshold=0.95) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "n,c,k,needle",
    [(4, 1, 0, "k must be >= 1"), (3, 1, 4, "n=3 < k=4"), (3, 5, 2, "c=5"), (0, 0, 1, "n >= 1")],
)
def test_bad_groups_are_refused(n, c, k, needle):
    with pytest.raises(ConfigError, match=needle):
        pass_at_k(n, c, k)


def test_bad_advantage_groups_are_refused():
    with pytest.raises(ConfigError, match="k must be >= 1"):
        passk_advantages([1.0, 0.0], 0)
    with pytest.raises(ConfigError, match="n=2 < k=3"):
        passk_advantages([1.0, 0.0], 3)
    with pytest.raises(ConfigError, match="n >= 1"):
        passk_advantages([], 1)


# --- the POPE paper's pass@k reward transformation ---------------------------------------------
def brute_passk_rewards(correct: list[bool], k: int) -> list[float]:
    """The definition: each sample's transformed reward is the mean pass@k (max of binary
    rewards) of the k-subsets that hold it."""
    idx_subsets = list(itertools.combinations(range(len(correct)), k))
    return [statistics.fmean(float(any(correct[j] for j in s)) for s in idx_subsets if i in s)
            for i in range(len(correct))]


@pytest.mark.parametrize("n,c,k", SMALL_GROUPS)
def test_passk_rewards_match_enumeration_and_average_to_pass_at_k(n, c, k):
    correct = [True] * c + [False] * (n - c)
    random.Random(f"r{n}:{c}:{k}").shuffle(correct)
    got = passk_rewards([1.0 if ok else 0.0 for ok in correct], k)
    assert got == pytest.approx(brute_passk_rewards(correct, k), abs=1e-12)
    # the group mean of the transformed rewards is the group's pass@k estimate rho(n, c, k)
    assert statistics.fmean(got) == pytest.approx(pass_at_k(n, c, k), abs=1e-12)


def test_passk_rewards_by_hand():
    # n = 8, c = 1, k = 4: a wrong sample's 3 companions hold the one success with
    # probability rho(7, 1, 3) = 1 - C(6, 3) / C(7, 3) = 1 - 20/35 = 3/7
    assert passk_rewards([1, 0, 0, 0, 0, 0, 0, 0], 4) == pytest.approx([1.0] + [3 / 7] * 7)
    # n = 4, c = 2, k = 2: rho(3, 2, 1) = 2/3
    assert passk_rewards([0, 1, 0, 1], 2) == pytest.approx([2 / 3, 1.0, 2 / 3, 1.0])
    # k = 1 is plain reward maximisation: the binary rewards themselves
    assert passk_rewards([1, 0, 0, 1, 0], 1) == [1.0, 0.0, 0.0, 1.0, 0.0]
    # c > n - k: every k-subset holds a success, every sample earns 1 (no signal once centred)
    assert passk_rewards([1, 1, 0, 1], 3) == [1.0, 1.0, 1.0, 1.0]
    assert passk_rewards([0, 0, 0], 2) == [0.0, 0.0, 0.0]
    assert passk_rewards([0.9, 0.1, 0.0], 2) == passk_rewards([1, 0, 0], 2)  # threshold 0.5
    with pytest.raises(ConfigError, match="k=4"):
        passk_rewards([1.0, 0.0], 4)
