"""The i* search strategies of :mod:`pope_env.prefix_search` (:data:`STRATEGIES`).

Each is ``search(probe, problem, cap) -> i* or None`` over a
:class:`~pope_env.probe.PrefixProbe`, which measures roll-in states with seeded,
order-independent samples; the strategies differ only in which states they measure and
when they stop. What each returns, exactly, is in the :mod:`pope_env.prefix_search`
docstring.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from pope_env.errors import ConfigError
from pope_env.lockstep import check_batch_size
from pope_env.problem import Problem

if TYPE_CHECKING:  # pragma: no cover
    from pope_env.guidance_file import GuidanceRecord
    from pope_env.probe import PrefixProbe


def linear_search(probe: PrefixProbe, problem: Problem, cap: int) -> int | None:
    """Reference: the paper's i*, the smallest ``i`` in ``1..cap`` with a success in ``k``.

    Measures ``i = 1, 2, ...`` in order, each until its first success (at most ``k``
    samples); returns the first state with a success. Every state below the returned i*
    failed all ``k`` samples, so it is exactly ``min { i : successes(x, i) >= 1 }``; ``None``
    means every state ``1..cap`` failed all ``k`` samples.

    No strategy can return this i* for certain with fewer samples: a state is ruled out only
    by ``k`` failures, so every ``i < i*`` must be fully measured, and i* needs a success.
    Linear measures exactly that; the other strategies save rollouts by *not* measuring some
    states below their answer, which is why they guarantee less.
    """
    for i in range(1, cap + 1):
        if probe.measure(problem, i, early_stop=True).successes:
            return i
    return None


def _first_success_upward(probe: PrefixProbe, problem: Problem, states: Iterable[int]) -> int | None:
    """Finish ``states`` in increasing order (each until its first success, states already
    failed skipped); the first that succeeds, or ``None`` when all fail all ``k`` samples.

    When every state below ``states`` is already a verified failure, the state returned is
    the linear scan's i* and ``None`` is a verified "no prefix works"."""
    for i in sorted(states):
        if probe.is_failure(problem, i):
            continue
        if probe.measure(problem, i, early_stop=True).successes:
            return i
    return None


def galloping_search(probe: PrefixProbe, problem: Problem, cap: int) -> int | None:
    """Cap, then 1, then top-down galloping with bisection.

    Order: the cap; if it fails all ``k`` samples, the states ``1..cap-1`` in increasing
    order (the linear scan: a prefix is found only below the cap when success is not
    monotone, and "no prefix works" is declared only once all of ``1..cap`` failed all
    ``k`` samples). Otherwise state 1 (a success: i* = 1, as the linear scan finds), then
    ``cap - 1, cap - 2, cap - 4, ...`` until a failure, then bisection between that failure
    and the shortest success. Every measurement stops at its first success.

    Guarantee: the returned i* succeeded and ``i* - 1`` failed all ``k`` samples (or
    i* = 1): a *local* minimum. States below ``i* - 1`` other than state 1 may be unmeasured,
    so when success is not monotone in i (a lucky success at some ``j < i* - 1``) the linear
    scan returns that smaller j instead. ``None`` is verified: every state failed all ``k``.
    """

    def solved(i: int) -> bool:
        return probe.measure(problem, i, early_stop=True).successes > 0

    if not solved(cap):
        return _first_success_upward(probe, problem, range(1, cap))
    if cap == 1 or solved(1):
        return 1
    success, failure = cap, 1  # shortest known success; longest known failure below it
    step = 1
    while success - step > failure:
        i = success - step
        if not solved(i):
            failure = i
            break
        success = i
        step *= 2
    while success - failure > 1:
        mid = (success + failure) // 2
        if solved(mid):
            success = mid
        else:
            failure = mid
    return success


def scouting_search(
    probe: PrefixProbe, problem: Problem, cap: int, *, scout_chunks: int = 1
) -> int | None:
    """Scout upward with ``scout_chunks`` chunks per state, then confirm downward.

    1. *Scout*: draw the first ``scout_chunks`` chunks (stopping at a success) of states
       ``1, 2, ...`` and stop at the first state with a success: the lowest state proven
       solvable, ``lowest``. The states below i*, which the linear scan pays ``k`` samples
       each for, cost ``scout_chunks`` chunks each here.
    2. *Confirm*: finish the state ``lowest - 1`` (its remaining chunks, stopping at the first
       success; scouted chunks are reused, never redrawn). All ``k`` samples failed: it is a
       verified failure and ``lowest`` is i*. A success makes it the new ``lowest``, and the
       state below is confirmed next.
    3. *No scout succeeded*: finish the states ``1..cap`` in increasing order (the linear
       scan, reusing the scouted chunks); the first success is i*, and "no prefix works"
       is declared only once every state failed all ``k`` samples.

    Guarantee: the returned i* succeeded and ``i* - 1`` failed all ``k`` samples (or
    i* = 1): a *local* minimum; states below ``i* - 1`` were scouted with only
    ``scout_chunks`` chunks. It returns the linear scan's i* unless the scouts miss the
    success at that state (it lies beyond the scouted chunks) *and* some state between it
    and the lowest scouted success fails all ``k`` samples (success is not monotone there).
    ``None`` is verified: every state failed all ``k``. ``scout_chunks`` trades rollouts for
    agreement: with ``scout_chunks = n_chunks`` this is the linear scan, which always agrees.

    Raises:
        ConfigError: ``scout_chunks`` is not a positive integer.
    """
    if isinstance(scout_chunks, bool) or not isinstance(scout_chunks, int) or scout_chunks < 1:
        raise ConfigError(f"scout_chunks must be an integer >= 1, got {scout_chunks!r}")
    lowest = next((i for i in range(1, cap + 1) if probe.measure(
        problem, i, early_stop=True, max_chunks=scout_chunks).successes), None)
    if lowest is None:
        return _first_success_upward(probe, problem, range(1, cap + 1))
    while lowest > 1 and probe.measure(problem, lowest - 1, early_stop=True).successes:
        lowest -= 1
    return lowest


#: How many recent problems (those that found a prefix) :func:`anchored_search` learns from.
ANCHOR_WINDOW = 256


def anchored_search(
    probe: PrefixProbe, problem: Problem, cap: int, *, history: Sequence["GuidanceRecord"] = ()
) -> int | None:
    """Start at the state the earlier problems point to, then verify.

    ``history`` holds the records of the problems searched before this one. The guess is
    ``cap - d`` (clipped to ``1..cap``) with ``d`` the median of ``cap - i*`` over the last
    :data:`ANCHOR_WINDOW` records that found a prefix (recent ones, so a long run costs
    linear time and follows a drift in difficulty); without any, :func:`scouting_search`
    decides. From the guess (every measurement stops at its first success):

    * success: measure ``guess - 1``, ``guess - 2``, ... until one fails all ``k`` samples
      or state 1 succeeds; i* is the lowest success.
    * failure (all ``k`` samples): measure ``guess + 1``, ``guess + 2``, ... up to the cap;
      i* is the first success (the state below it is a verified failure). The states below a
      failed guess are *not* measured then. Only if every state from the guess to the cap
      fails are the states ``1..guess-1`` finished in increasing order (the first success
      is i*), so "no prefix works" is declared only once every state failed all ``k``.

    Guarantee: the returned i* succeeded and ``i* - 1`` failed all ``k`` samples (or
    i* = 1): a *local* minimum. After a successful guess, a lucky success below the first
    failure is missed; after a failed guess, any success below the guess is missed (unless
    nothing above succeeds). ``None`` is verified: every state failed all ``k``.
    """
    distances = sorted(itertools.islice(
        (r.cap - r.i_star for r in reversed(history) if r.i_star is not None), ANCHOR_WINDOW))
    if not distances:
        return scouting_search(probe, problem, cap)
    guess = min(cap, max(1, cap - distances[(len(distances) - 1) // 2]))

    def solved(i: int) -> bool:
        return probe.measure(problem, i, early_stop=True).successes > 0

    if solved(guess):
        lowest = guess
        while lowest > 1 and solved(lowest - 1):
            lowest -= 1
        return lowest
    above = next((i for i in range(guess + 1, cap + 1) if solved(i)), None)
    if above is not None:
        return above
    return _first_success_upward(probe, problem, range(1, guess))


@dataclasses.dataclass(frozen=True)
class SearchStrategy:
    """A named i* search: ``search(probe, problem, cap) -> i* or None``.

    With ``uses_history`` the search is also given ``history=``: the records of the problems
    searched before this one in the run (see :func:`anchored_search`).
    """

    name: str
    search: Callable[..., int | None]
    description: str
    uses_history: bool = False

    def check_batch_size(self, batch_size: object) -> int:
        """``batch_size`` (problems searched at once) as a positive int this strategy can use.

        Raises:
            ConfigError: not an integer >= 1, or above 1 for a strategy that uses history
                (each problem's search needs the records of the ones before it).
        """
        size = check_batch_size(batch_size)
        if size > 1 and self.uses_history:
            raise ConfigError(
                f"strategy {self.name!r} learns from the problems searched before each one, so it "
                f"cannot search {size} problems at once; use batch_size=1 (CLI: --batch-problems 1) "
                "or another strategy"
            )
        return size


STRATEGIES: dict[str, SearchStrategy] = {
    s.name: s
    for s in (
        SearchStrategy("linear", linear_search,
                       "i = 1, 2, ... until the first success (k samples per failure): the "
                       "paper's i*, the smallest i with a success (default)"),
        SearchStrategy(
            "galloping",
            galloping_search,
            "cap, then 1, then gallop down from the cap and bisect; returns a local minimum "
            "(a success at i*, k failures at i* - 1)",
        ),
        SearchStrategy(
            "scouting",
            scouting_search,
            "one chunk per state from i = 1 up to the first success, then finish the states "
            "below it; only i* - 1 costs all k samples; returns a local minimum",
        ),
        SearchStrategy(
            "anchored",
            anchored_search,
            "start at the distance below the cap where earlier problems' i* lay, then verify; "
            "a right guess costs only the verification; returns a local minimum",
            uses_history=True,
        ),
    )
}


def get_strategy(name: str) -> SearchStrategy:
    """The strategy called ``name``; :class:`UnknownNameError` lists the known ones."""
    from pope_env.errors import UnknownNameError

    try:
        return STRATEGIES[name]
    except KeyError:
        raise UnknownNameError("strategy", name, tuple(STRATEGIES)) from None
