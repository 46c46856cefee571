"""Which problem and which roll-in state each env reset starts from.

Shared by every math env (single-turn, step-level) so that "the hard split, guided with
``i*`` and mixed 1:1" means the same thing everywhere:

- the problems: a dataset, optionally restricted to the hard problems of a split file
  (``pope-env hard-split``);
- the order: a seeded random permutation, reshuffled on each pass;
- guided or not: ``mode`` = ``"unguided"`` | ``"guided"`` | ``"pope"``;
- the prefix: the problem's ``i*`` (or fallback segment) from a guidance file
  (``pope-env prefix-search``), else ``round(prefix_fraction * cap)`` steps (at least one),
  where ``cap`` is the largest prefix that does not reveal the answer. Guided roll-ins
  without a guidance file raise a :class:`NoGuidanceWarning` once, when the sampler is made.

**The pope mode pairs each problem's two versions**, as POPE trains: with ``guided_ratio``
``g : u`` (1:1 by default), one *pass* is ``(g + u) * N`` resets over the ``N`` problems in
which every problem appears exactly ``g`` times guided (at its ``i*``) and ``u`` times
unguided. Guided and unguided resets take their problems from two separate queues, each a
seeded permutation of the problems renewed when it runs out, and
:class:`~pope_env.mixture.MixtureSampler` decides which queue each reset draws from, exact per
block of ``g + u`` resets (1:1: every consecutive pair of resets is one guided and one
unguided episode). Both queues run out exactly at the end of a pass, so the next pass starts
with two fresh permutations. ``reset(options={"guided": b})`` takes the next problem of that
queue (the mixture does not advance); ``problem_id`` takes that problem and leaves the
queues alone.

**A problem with nothing to show** is labelled as what it is. When a guided slot draws a
problem whose guidance is empty (prefix cap 0: its first step already states the answer; or
a fallback segment ``[0, 0]``: no step short enough), the episode shows the unguided prompt
and reports ``guided=False`` (``prefix_len`` 0). It keeps its slot, so the pass structure
stays the same, but metrics split by ``guided`` never count an unguided attempt as guided.
An explicit ``reset(options={"guided": True, "prefix_len": 0})`` is reported as asked.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import numpy as np

from pope_env.errors import ConfigError, UnknownNameError
from pope_env.guidance import prefix_cap
from pope_env.mixture import MixtureSampler
from pope_env.problem import Problem

MODES = ("unguided", "guided", "pope")
RESET_OPTIONS = ("problem_id", "guided", "prefix_len")


class RollInOptions(TypedDict, total=False):
    """The roll-in keywords every math env passes on to :class:`RollInSampler` (each optional;
    the defaults are the sampler's): ``mode``, ``guided_ratio``, ``prefix_fraction``,
    ``guidance_file`` and ``split_file``, documented there."""

    mode: str
    guided_ratio: float
    prefix_fraction: float
    guidance_file: str | None
    split_file: str | None


class NoGuidanceWarning(UserWarning):
    """Guided roll-ins without a guidance file: the prefix is ``prefix_fraction`` of the cap
    instead of the problem's ``i*`` found by ``pope-env prefix-search``."""


@dataclasses.dataclass(frozen=True)
class RollIn:
    """The start of one episode: a problem and the oracle steps ``z[start:start+prefix_len]``
    shown with it (``prefix_len == 0``: unguided)."""

    problem: Problem
    guided: bool
    prefix_len: int
    start: int = 0


class RollInSampler:
    """Draws :class:`RollIn` s for env resets.

    Args:
        problems: The dataset's problems (ids unique).
        mode: ``"unguided"``, ``"guided"`` or ``"pope"``.
        guided_ratio: Guided share of resets in ``"pope"`` mode, exact per block (0.5 = 1:1).
        prefix_fraction: Prefix length as a fraction of the cap for problems without ``i*``.
        guidance_file: A guidance file of ``pope-env prefix-search`` (``i*`` per problem).
        split_file: A split file of ``pope-env hard-split``: keep only its hard problems.
        dataset: The dataset name, checked against the headers of both files.
        prefixes_only: The env can only show a prefix ``z[:i]`` of the oracle solution (the
            token env's state is the oracle's first tokens): a guidance record without
            ``i*`` (a fallback segment ``z[start:stop]``) gets the ``prefix_fraction``
            fallback instead, and ``i*`` is capped at the problem's cap.
        warn_without_guidance: Warn (:class:`NoGuidanceWarning`) when guided roll-ins have
            no guidance file. The token env, whose default guided start is the whole cap
            (the easiest guided state), turns this off.
    """

    def __init__(
        self,
        problems: Sequence[Problem],
        *,
        mode: str = "unguided",
        guided_ratio: float = 0.5,
        prefix_fraction: float = 0.5,
        guidance_file: str | None = None,
        split_file: str | None = None,
        dataset: str | None = None,
        prefixes_only: bool = False,
        warn_without_guidance: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        if not 0.0 <= guided_ratio <= 1.0:
            raise ConfigError(f"guided_ratio must be in [0, 1], got {guided_ratio}")
        if not 0.0 < prefix_fraction <= 1.0:
            raise ConfigError(f"prefix_fraction must be in (0, 1], got {prefix_fraction}")
        by_id = {p.id: p for p in problems}
        if len(by_id) != len(problems):
            raise ConfigError("problem ids must be unique within an env's dataset")
        if split_file is not None:
            from pope_env.hard_split import load_split

            split = load_split(split_file, dataset=dataset)
            missing = [pid for pid in split.hard_ids if pid not in by_id]
            if missing:
                raise ConfigError(
                    f"split file {split_file} names {len(missing)} problem(s) not in the dataset "
                    f"(e.g. {missing[0]!r}); was it made for another dataset or limit?"
                )
            by_id = {pid: by_id[pid] for pid in split.hard_ids}
        if not by_id:
            raise ConfigError("no problems to draw from (empty dataset or split)")
        self.problems: list[Problem] = list(by_id.values())
        self._by_id = by_id
        self._caps: dict[str, int] = {}
        self.mode = mode
        self.prefix_fraction = prefix_fraction
        self.prefixes_only = prefixes_only
        self.guidance = None
        if guidance_file is not None:
            from pope_env.guidance_file import load_guidance

            self.guidance = load_guidance(guidance_file, dataset=dataset)
        self.mixture = MixtureSampler.from_fraction(guided_ratio) if mode == "pope" else None
        # Problem queues (indices, next one last): one per kind in "pope" mode (True: guided,
        # False: unguided), a single one (None) otherwise.
        self._queues: dict[bool | None, list[int]] = {}
        self._mixture_seeded = False
        if warn_without_guidance and self.guidance is None and (
                mode == "guided" or (mode == "pope" and self.mixture.guided)):
            warnings.warn(
                f"{mode!r} mode without a guidance file: guided roll-ins show "
                f"round({prefix_fraction} * cap) oracle steps, not each problem's i* (the "
                "shortest prefix from which the policy succeeds). Run `pope-env prefix-search` "
                "and pass its output as guidance_file=...",
                NoGuidanceWarning,
                stacklevel=5,  # __init__, from_dataset, MathEnvBase.__init__, the env's __init__, its caller
            )

    @classmethod
    def from_dataset(
        cls,
        dataset: str | None,
        *,
        problems: Sequence[Problem] | None = None,
        limit: int | None = None,
        **kwargs: Any,
    ) -> "RollInSampler":
        """A sampler over ``problems`` if given, else over the named dataset (first ``limit``)."""
        if problems is None:
            if dataset is None:
                raise ConfigError("give a dataset name or a list of problems")
            from pope_env.datasets import load_dataset

            problems = load_dataset(dataset, limit=limit)
        elif limit is not None:
            problems = list(problems)[:limit]
        return cls(problems, dataset=dataset, **kwargs)

    def get(self, problem_id: str) -> Problem:
        """The problem with this id (:class:`UnknownNameError` listing known ids otherwise)."""
        try:
            return self._by_id[problem_id]
        except (KeyError, TypeError):
            raise UnknownNameError("problem_id", str(problem_id), list(self._by_id)) from None

    def seed(self, seed: int | None) -> None:
        """Restart the problem order and the guided/unguided blocks (called on ``reset(seed=)``)."""
        self._queues = {}
        if self.mixture is not None and seed is not None:
            self.mixture.seed(seed)
            self._mixture_seeded = True

    def cap(self, problem: Problem) -> int:
        """The problem's prefix cap (:func:`~pope_env.guidance.prefix_cap`), computed once."""
        cap = self._caps.get(problem.id)
        if cap is None:
            cap = self._caps[problem.id] = prefix_cap(problem)
        return cap

    def segment_for(self, problem: Problem) -> tuple[int, int]:
        """``(start, prefix_len)`` of a guided reset of ``problem`` without options."""
        if self.guidance is not None and problem.id in self.guidance:
            record = self.guidance[problem.id]
            if not self.prefixes_only:
                return record.start, record.prefix_len
            if record.i_star is not None:
                return 0, min(record.i_star, self.cap(problem))
        cap = self.cap(problem)
        if cap == 0:
            return 0, 0
        return 0, min(cap, max(1, round(self.prefix_fraction * cap)))

    def _next_guided(self, rng: np.random.Generator) -> bool:
        if self.mode == "unguided":
            return False
        if self.mode == "guided":
            return True
        assert self.mixture is not None
        if not self._mixture_seeded:
            self.mixture.seed(int(rng.integers(2**31)))
            self._mixture_seeded = True
        return self.mixture.next()

    def _next_problem(self, rng: np.random.Generator, guided: bool) -> Problem:
        """The next problem of the queue of this kind (``pope`` mode) or of the single queue."""
        key = guided if self.mode == "pope" else None
        queue = self._queues.setdefault(key, [])
        if not queue:
            queue.extend(int(i) for i in rng.permutation(len(self.problems))[::-1])
        return self.problems[queue.pop()]

    def draw(self, rng: np.random.Generator, options: Mapping[str, Any] | None = None) -> RollIn:
        """The next roll-in; ``options`` (``problem_id``, ``guided``, ``prefix_len``) override."""
        options = dict(options or {})
        unknown = set(options) - set(RESET_OPTIONS)
        if unknown:
            raise ConfigError(
                f"unknown reset option(s) {sorted(unknown)}; use {', '.join(RESET_OPTIONS)}"
            )
        prefix_len = options.get("prefix_len")
        if prefix_len is not None and (isinstance(prefix_len, bool) or not isinstance(prefix_len, (int, np.integer))):
            raise ConfigError(f"prefix_len must be an int, got {prefix_len!r}")
        if "guided" in options:
            guided = bool(options["guided"])
        elif prefix_len is not None:
            guided = prefix_len > 0
        else:
            guided = self._next_guided(rng)
        if "problem_id" in options:
            problem = self.get(options["problem_id"])
        else:
            problem = self._next_problem(rng, guided)
        if prefix_len is not None:
            prefix_len, cap = int(prefix_len), self.cap(problem)
            if not 0 <= prefix_len <= cap:
                raise ConfigError(
                    f"prefix_len={prefix_len} is out of range for problem {problem.id!r}: "
                    f"0 <= prefix_len <= {cap} (a longer prefix would reveal the final answer)"
                )
            return RollIn(problem, guided, prefix_len if guided else 0)
        if not guided:
            return RollIn(problem, False, 0)
        start, prefix_len = self.segment_for(problem)
        return RollIn(problem, prefix_len > 0, prefix_len, start)
