"""How often the policy's *own* unguided states fall into S_good.

POPE credits the transfer from guided to unguided problems to an overlap: the states a policy
reaches on its own, unguided, come to resemble roll-in states from which it has learned to
succeed. This module measures that overlap for a policy at one moment (e.g. at every
evaluation of a training run, through :class:`pope_env.agents.reach_hook.OwnStateReachHook`):

1. For each problem, sample one unguided completion (seeded).
2. Split it into steps and drop the first step that holds a ``\\boxed{}`` (or ``\\fbox{}``)
   answer and all after it, the same rule as the oracle prefix cap
   (:func:`pope_env.solution_steps.max_prefix_len`: a guided prefix never shows a step with a box);
   what remains, ``m`` steps, gives the policy's own partial solutions
   ``steps[:j]`` for ``j = 1..m``. Up to ``states_per_problem`` of them are kept, evenly
   spaced and always including the longest (``j = ceil(t * m / s)`` for ``t = 1..s``).
   A completion with no step before its answer gives no state.
3. Continue each own state ``k`` times (Monte Carlo) and score the continuations.
4. A state is in S_good when the lower 95% Wilson bound of its success rate exceeds
   ``threshold`` = 0.1 by default ("reward reliably attainable": see :mod:`pope_env.reach`;
   with ``threshold = 0`` it is "at least one success", the prefix search's notion of
   solvable), or its point estimate does (``criterion="point"``), exactly as
   :class:`pope_env.reach.ReachSet` decides for oracle prefixes.

Everything is batched (one ``generate`` call per ``batch_size`` prompts) and seeded from
``seed``, so two calls with the same policy weights give the same report, and two
checkpoints of a run are compared on the same random draws.
"""

from __future__ import annotations

import dataclasses
import math
import re
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict

from pope_env.errors import ConfigError, check_keywords
from pope_env.problem import Problem
from pope_env.reach import (
    DEFAULT_CONFIDENCE,
    DEFAULT_CRITERION,
    DEFAULT_THRESHOLD,
    SuccessCounts,
    check_s_good_rule,
    format_table,
)

StateRenderer = Callable[[Problem, Sequence[str]], Any]
"""``render(problem, steps) -> prompt``: the prompt that continues the partial solution
``steps`` (``[]``: the unguided prompt)."""
StepSplitter = Callable[[str], Sequence[str]]
"""``split(completion) -> steps``: a completion cut into reasoning steps."""
Scorer = Callable[[Sequence[str], Problem], Sequence[bool]]
"""``score(completions, problem) -> verdicts``: whether each completion solves ``problem``."""


@dataclasses.dataclass(frozen=True)
class OwnState(SuccessCounts):
    """One partial solution the policy wrote itself, with its Monte Carlo success counts.

    Attributes:
        problem_id: The problem.
        steps: The policy's own first ``len(steps)`` steps (the state).
        own_steps: How many steps the policy wrote before its answer step (``m``).
        successes: Continuations from the state that solved the problem.
        samples: Continuations sampled (``k``).
    """

    problem_id: str
    steps: tuple[str, ...]
    own_steps: int
    successes: int
    samples: int


@dataclasses.dataclass(frozen=True)
class OwnStateOverlap:
    """The overlap report of :func:`own_state_overlap`.

    Attributes:
        problems: Problems asked.
        unguided_correct: Problems whose own unguided completion was already correct.
        states: The own states and their counts.
        threshold, confidence, criterion: The S_good rule (see the module docstring).
    """

    problems: int
    unguided_correct: int
    states: tuple[OwnState, ...]
    threshold: float = DEFAULT_THRESHOLD
    confidence: float = DEFAULT_CONFIDENCE
    criterion: str = DEFAULT_CRITERION

    def in_s_good(self, state: OwnState) -> bool:
        """Whether ``state`` passes the S_good rule."""
        return state.in_s_good(threshold=self.threshold, confidence=self.confidence, criterion=self.criterion)

    @property
    def overlap(self) -> float:
        """Fraction of own states in S_good (0 when there are none)."""
        return sum(map(self.in_s_good, self.states)) / len(self.states) if self.states else 0.0

    @property
    def problems_with_state(self) -> int:
        """Problems that gave at least one own state."""
        return len({s.problem_id for s in self.states})

    @property
    def problem_overlap(self) -> float:
        """Among problems with own states, the fraction with at least one in S_good."""
        with_state = self.problems_with_state
        good = len({s.problem_id for s in self.states if self.in_s_good(s)})
        return good / with_state if with_state else 0.0

    @property
    def mean_success(self) -> float:
        """Mean success rate of continuations from own states (0 when there are none)."""
        return sum(s.estimate for s in self.states) / len(self.states) if self.states else 0.0

    def metrics(self) -> dict[str, float | int]:
        """Flat metrics for logs: ``s_good_overlap`` (fraction of own states in S_good),
        ``s_good_problem_overlap``, ``own_state_success`` (mean success from own states),
        ``own_states``, ``own_unguided_pass@1`` (fraction of the sampled unguided
        completions that were correct)."""
        return {
            "s_good_overlap": self.overlap,
            "s_good_problem_overlap": self.problem_overlap,
            "own_state_success": self.mean_success,
            "own_states": len(self.states),
            "own_unguided_pass@1": self.unguided_correct / self.problems if self.problems else 0.0,
        }

    def table(self, *, max_rows: int | None = None) -> str:
        """Printable per-state table with the S_good verdict."""
        rows = []
        for s in self.states[:max_rows]:
            lo, hi = s.interval(self.confidence)
            rows.append((s.problem_id, f"{len(s.steps)}/{s.own_steps}", f"{s.successes}/{s.samples}",
                         f"{s.estimate:.3f}", f"[{lo:.3f}, {hi:.3f}]", "yes" if self.in_s_good(s) else ""))
        head = ("problem", "own steps", "succ/n", "p", f"{self.confidence:.0%} interval", "S_good")
        summary = (f"{len(self.states)} own states of {self.problems} problems; in S_good: {self.overlap:.3f} "
                   f"of states, {self.problem_overlap:.3f} of problems with a state")
        return format_table(head, rows) + "\n" + summary


def split_lines(text: str) -> list[str]:
    """Steps = lines, each keeping its newline (joining them gives ``text`` back); for models
    that write one step per line, like the demo's character model."""
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")  # as pope_env.solution_steps' answer-step rule


def first_box_index(steps: Sequence[str]) -> int | None:
    """Index of the first step holding a ``\\boxed``/``\\fbox`` answer, ``None`` if none does."""
    return next((i for i, step in enumerate(steps) if _BOX.search(step)), None)


def own_partial_steps(completion: str, split_steps: StepSplitter | None = None) -> list[str]:
    """The steps of ``completion`` before the first one holding a ``\\boxed{}`` answer (all
    of them when it has none, e.g. when it was truncated); whitespace-only steps are dropped.

    The cut is the oracle prefix cap's (:func:`pope_env.solution_steps.max_prefix_len`): the first
    boxed step and everything after it are not part of any state, so an own state never
    shows an answer, exactly as a guided prefix never does.
    """
    from pope_env.solution_steps import split_solution

    steps = [s for s in (split_steps or split_solution)(completion) if s.strip()]
    answer = first_box_index(steps)
    return steps if answer is None else steps[:answer]


def spaced_prefix_lengths(m: int, count: int) -> list[int]:
    """Up to ``count`` prefix lengths in ``1..m``, evenly spaced, the last one ``m``."""
    return sorted({math.ceil(t * m / count) for t in range(1, count + 1)}) if m > 0 else []


class OwnStateOptions(TypedDict, total=False):
    """The measurement keywords of :func:`own_state_overlap` (each optional, defaults as
    there): what a caller that runs it repeatedly (a training hook) holds and passes on."""

    k: int
    states_per_problem: int
    seed: int
    sampling: Any
    scorer: Scorer | None
    render_state: StateRenderer | None
    split_steps: StepSplitter | None
    threshold: float
    confidence: float
    criterion: str
    batch_size: int


def check_own_state_options(options: Mapping[str, Any], *, owner: str = "own_state_overlap") -> None:
    """Refuse bad :class:`OwnStateOptions` now rather than at the first measurement.

    Raises:
        TypeError: an unknown keyword (named, with the known ones).
        ConfigError: a setting out of range, as :func:`own_state_overlap` would raise it.
    """
    check_keywords(owner, options, OwnStateOptions)
    defaults = {name: param.default for name, param in inspect.signature(own_state_overlap).parameters.items()}
    _check_settings(**{name: options.get(name, defaults[name]) for name in
                       ("k", "states_per_problem", "batch_size", "threshold", "confidence", "criterion")})


def _check_settings(*, k: Any, states_per_problem: Any, batch_size: Any, threshold: Any, confidence: Any,
                    criterion: Any) -> None:
    for name, value in (("k", k), ("states_per_problem", states_per_problem), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    check_s_good_rule(threshold=threshold, confidence=confidence, criterion=criterion)


def own_state_overlap(
    problems: Sequence[Problem],
    policy: Any,
    *,
    k: int = 4,
    states_per_problem: int = 2,
    seed: int = 0,
    sampling: Any = None,
    scorer: Scorer | None = None,
    render_state: StateRenderer | None = None,
    split_steps: StepSplitter | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    confidence: float = DEFAULT_CONFIDENCE,
    criterion: str = DEFAULT_CRITERION,
    batch_size: int = 64,
    progress: bool = False,
) -> OwnStateOverlap:
    """Measure how often ``policy``'s own unguided states fall into S_good (module docstring).

    Args:
        problems: Problems to ask (e.g. the hard split); each needs an ``answer``.
        policy: Anything with the Policy ``generate``.
        k: Continuations per own state (``>= 1``).
        states_per_problem: Own states kept per problem (``>= 1``).
        seed: Root seed of all sampling.
        sampling: Sampling settings (default: the policy contract's); its ``seed`` is replaced.
        scorer: Verdicts per completion (default: the math reward, math-verify).
        render_state: Prompt of a partial solution (default: chat messages of
            :func:`pope_env.guidance.state_messages`, the steps env's roll-in prompt).
        split_steps: Cuts a completion into steps (default:
            :func:`pope_env.solution_steps.split_solution`; :func:`split_lines` for one step per line).
        threshold, confidence, criterion: The S_good rule (as :class:`~pope_env.reach.ReachSet`;
            default: lower 95% Wilson bound > 0.1).
        batch_size: Prompts per ``generate`` call.
        progress: Show a progress bar.

    Raises:
        ConfigError: ``k``, ``states_per_problem``, ``batch_size``, ``threshold``,
            ``confidence`` or ``criterion`` out of range, or no problems.
    """
    from tqdm.auto import tqdm

    from pope_env.probe import default_scorer, derive_seed

    _check_settings(k=k, states_per_problem=states_per_problem, batch_size=batch_size, threshold=threshold,
                    confidence=confidence, criterion=criterion)
    problems = list(problems)
    if not problems:
        raise ConfigError("own_state_overlap needs at least one problem")
    if sampling is None:
        from pope_env.agents.policy import SamplingParams

        sampling = SamplingParams()
    scorer = scorer or default_scorer()
    render_state = render_state or _chat_state

    def sample(prompts: list[Any], n: int, tag: str, bar: Any) -> list[list[str]]:
        texts: list[list[str]] = []
        for start in range(0, len(prompts), batch_size):
            run = dataclasses.replace(sampling, seed=derive_seed(seed, tag, start))
            groups = policy.generate(prompts[start : start + batch_size], n=n, sampling=run)
            texts.extend([g.text for g in group] for group in groups)
            bar.update(len(groups))
        return texts

    with tqdm(total=len(problems), desc="own unguided states", unit="prompt", disable=not progress) as bar:
        unguided = sample([render_state(p, []) for p in problems], 1, "own-unguided", bar)
        unguided_correct = 0
        queries: list[tuple[Problem, tuple[str, ...], int]] = []
        for problem, (text,) in zip(problems, unguided):
            unguided_correct += bool(scorer([text], problem)[0])
            own = own_partial_steps(text, split_steps)
            for j in spaced_prefix_lengths(len(own), states_per_problem):
                queries.append((problem, tuple(own[:j]), len(own)))
        bar.reset(total=len(queries))
        bar.set_description("S_good from own states")
        continuations = sample([render_state(p, list(steps)) for p, steps, _ in queries], k, "own-states", bar)
    states = tuple(
        OwnState(problem.id, steps, m, sum(bool(v) for v in scorer(texts, problem)), len(texts))
        for (problem, steps, m), texts in zip(queries, continuations)
    )
    return OwnStateOverlap(len(problems), unguided_correct, states, threshold, confidence, criterion)


def _chat_state(problem: Problem, steps: Sequence[str]) -> Any:
    from pope_env.guidance import state_messages

    return state_messages(problem, list(steps))
