"""pass@k: the unbiased estimator and the per-sample advantages of pass@k training.

Both functions work on one *group*: ``n`` sampled completions of one prompt, ``c`` of them
correct. They are exact (no sampling of subsets) and numerically stable for ``n`` up to
thousands, because every ratio of binomial coefficients is evaluated as a product of
factors in ``[0, 1]`` instead of as a quotient of huge integers.

References:
    Chen et al., "Evaluating Large Language Models Trained on Code" (2021), eq. (1):
    the unbiased pass@k estimator and its product form.
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


def passk_advantages(rewards: Sequence[float], k: int, *, threshold: float = 0.5) -> list[float]:
    """Per-sample advantages of the pass@k training objective, in closed form.

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
