"""pass@k: the unbiased estimator and the per-sample rewards of pass@k training.

Every function works on one *group*: ``n`` sampled completions of one prompt, ``c`` of them
correct. They are exact (no sampling of subsets) and numerically stable for ``n`` up to
thousands, because every ratio of binomial coefficients is evaluated as a product of
factors in ``[0, 1]`` instead of as a quotient of huge integers.

References:
    Chen et al., "Evaluating Large Language Models Trained on Code" (2021), eq. (1):
    the unbiased pass@k estimator and its product form.
    Walder, Karkhanis, "Pass@K Policy Optimization: Solving Harder Reinforcement Learning
    Problems" (arXiv:2505.15201, 2025): the pass@k reward transformation built on
    ``rho(n, c, k)`` that the POPE paper's pass@k baseline optimises
    (:func:`passk_rewards`).
    Chen, Qin, Wu, Ling, Ye, Zhao, Shi, "Pass@k Training for Adaptively Balancing
    Exploration and Exploitation of Large Reasoning Models" (arXiv:2508.10751, 2025),
    section "Analytical Derivation": closed-form advantages of pass@k training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pope_env.errors import ConfigError


def _check_group(n: int, c: int, k: int) -> None:
    if not (isinstance(n, int) and isinstance(c, int) and isinstance(k, int)):
        raise ConfigError(f"n, c and k must be integers, got n={n!r}, c={c!r}, k={k!r}")
    if n < 1:
        raise ConfigError(f"a group needs n >= 1 samples, got n={n}")
    if not 0 <= c <= n:
        raise ConfigError(f"the number of correct samples must be in [0, n={n}], got c={c}")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got k={k}; pass@0 is undefined")
    if k > n:
        raise ConfigError(
            f"pass@{k} needs at least k samples, got n={n} < k={k}; sample more or lower k"
        )


def _comb_ratio(m: int, bad: int, j: int) -> float:
    """``C(m - bad, j) / C(m, j)`` as ``prod_{i=m-bad+1}^{m} (1 - j / i)``.

    It is the probability that a uniformly random j-subset of m items avoids ``bad``
    marked items; 0 when ``m - bad < j`` (the factor ``i = j`` is then 0).
    """
    ratio = 1.0
    for i in range(m - bad + 1, m + 1):
        ratio *= 1.0 - j / i
        if ratio == 0.0:
            break
    return ratio


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``c`` correct out of ``n`` samples.

    ``pass@k = 1 - C(n - c, k) / C(n, k)``: the probability that a random k-subset of the
    n samples holds at least one correct one. Computed in product form
    ``1 - prod_{i=n-c+1}^{n} (1 - k / i)`` (Chen et al. 2021), stable for any ``n``.

    Args:
        n: Samples drawn (``>= 1``).
        c: Correct samples (``0 <= c <= n``).
        k: Attempts allowed (``1 <= k <= n``).

    Returns:
        pass@k in ``[0, 1]``.

    Raises:
        ConfigError: ``k < 1``, ``n < k`` or ``c`` outside ``[0, n]``.
    """
    _check_group(n, c, k)
    return 1.0 - _comb_ratio(n, c, k)


def passk_rewards(rewards: Sequence[float], k: int, *, threshold: float = 0.5) -> list[float]:
    """Each sample's transformed reward under the pass@k objective (the POPE paper's form).

    With ``rho(n, c, k) = 1 - C(n - c, k) / C(n, k)`` (:func:`pass_at_k`), the unbiased
    policy gradient of pass@k from a group of ``n`` samples, ``c`` correct, weighs each
    sample's score function by (Walder & Karkhanis 2025, binary rewards)::

        k/n                          if the sample is correct
        k/n * rho(n - 1, c, k - 1)   if it is wrong

    i.e. ``k/n`` times the mean pass@k of the k-subsets that contain the sample: a wrong
    sample still earns the chance that the other ``k - 1`` members of its subset hold a
    correct one. This function returns those weights times ``n/k``::

        r~_i = 1                     if sample i is correct
        r~_i = rho(n - 1, c, k - 1)  if it is wrong

    so the transformed rewards lie in ``[0, 1]`` like the binary rewards, their group mean
    is exactly the group's pass@k estimate ``rho(n, c, k)``, and ``k = 1`` gives back the
    binary rewards (pass@1 is plain reward maximisation). Dropping the constant ``k/n``
    keeps the gradient's scale that of ``grpo`` instead of shrinking it by ``k/n``; the
    trainer then centres ``r~`` exactly as it centres plain rewards
    (:func:`pope_env.agents.grpo.group_advantages`).

    For two-valued rewards the centred ``r~`` is the centred binary reward times
    ``1 - rho(n - 1, c, k - 1) = C(n - c - 1, k - 1) / C(n - 1, k - 1)``, a factor in
    ``[0, 1]``: pass@k training is GRPO that weighs down the groups whose pass@k is already
    high (0 once ``c > n - k``), never a larger step than GRPO's. For ``c = 1`` the factor is
    ``(n - k) / (n - 1)`` (4/7 for ``n = 8, k = 4``).

    Args:
        rewards: The group's rewards; a sample counts as correct iff ``reward > threshold``.
        k: The k of pass@k (``1 <= k <= len(rewards)``).
        threshold: Reward above which a sample is correct.

    Returns:
        One transformed reward per sample, in the order of ``rewards``.

    Raises:
        ConfigError: An empty group, ``k < 1`` or ``len(rewards) < k``.
    """
    correct = [float(r) > threshold for r in rewards]
    n, c = len(correct), sum(correct)
    _check_group(n, c, k)
    # rho(n - 1, c, k - 1): P(a random (k-1)-subset of the other n - 1 samples holds a
    # correct one); 0 for k = 1 (C(m, 0) / C(m, 0) = 1).
    wrong = 1.0 - _comb_ratio(n - 1, c, k - 1) if c < n else 1.0
    return [1.0 if ok else wrong for ok in correct]


def passk_advantages(rewards: Sequence[float], k: int, *, threshold: float = 0.5) -> list[float]:
    """Per-sample advantages of Chen et al.'s pass@k training, in closed form (``passk-chen``).

    This is the form of "Pass@k Training for Adaptively Balancing Exploration and
    Exploitation" (Chen et al. 2025), normalised by the std of the subset rewards; the
    POPE paper's pass@k baseline is :func:`passk_rewards` with ``grpo``'s centring. For
    binary rewards it equals the centred binary reward times
    ``C(n - c - 1, k - 1) / C(n - 1, k - 1) / sqrt(R (1 - R))`` with ``R = rho(n, c, k)``: the
    std normalisation makes its scale depend on ``c`` and ``k`` (for ``n = 8``: 1.14x the
    mean-centred GRPO advantage at ``k = 4, c = 1``, 3.0x at ``k = 1, c = 1``), so a step size
    tuned for ``grpo`` is not the same step for this form.

    Pass@k training (Chen et al. 2025) groups the ``n`` samples of a prompt into all
    k-subsets, rewards a subset with the max of its members' rewards, and normalises by
    the subset rewards' mean and standard deviation. Its analytical derivation gives, with
    ``n`` samples, ``c`` correct ones and ``n_neg = n - c``:

    * group reward mean:  ``R = 1 - C(n_neg, k) / C(n, k)``  (= pass@k)
    * group reward std:   ``sigma = sqrt(R * (1 - R))``
    * positive sample:    ``A_pos = (1 - R) / sigma``
    * negative sample:    ``A_neg = (1 - R - C(n_neg - 1, k - 1) / C(n - 1, k - 1)) / sigma``

    i.e. each sample gets the mean normalised advantage of the k-subsets that contain it.
    When every sample is correct or every sample is wrong, ``sigma = 0`` and all
    advantages are 0 (no learning signal), where the paper's code divides by ``1e-6``.
    With ``k = 1`` this is GRPO's ``(r - mean) / std``.

    Args:
        rewards: The group's rewards; a sample counts as correct iff ``reward > threshold``
            (binary 0/1 rewards need no change).
        k: The k of pass@k (``1 <= k <= len(rewards)``).
        threshold: Reward above which a sample is correct.

    Returns:
        One advantage per sample, in the order of ``rewards``.

    Raises:
        ConfigError: An empty group, ``k < 1`` or ``len(rewards) < k``.
    """
    correct = [float(r) > threshold for r in rewards]
    n, c = len(correct), sum(correct)
    _check_group(n, c, k)
    mean = 1.0 - _comb_ratio(n, c, k)
    sigma = math.sqrt(max(mean * (1.0 - mean), 0.0))
    if sigma == 0.0:
        return [0.0] * n
    a_pos = (1.0 - mean) / sigma
    # P(a k-subset containing a given wrong sample has no correct sample).
    all_wrong_given_wrong = _comb_ratio(n - 1, c, k - 1)
    a_neg = (1.0 - mean - all_wrong_given_wrong) / sigma
    return [a_pos if ok else a_neg for ok in correct]
