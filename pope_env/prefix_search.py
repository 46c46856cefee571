"""Minimal prefix search: find i*(x), the shortest oracle prefix from which the policy succeeds.

POPE guides a hard problem ``x`` with the shortest prefix ``z[:i]`` of its oracle solution
from which the base policy solves the guided problem at least once in ``k`` samples:

    i*(x) = min { i in 1..cap(x) : successes(x, i) >= 1 over k samples }

``cap(x)`` (:func:`pope_env.guidance.prefix_cap`) excludes the step that holds the final
answer and any earlier step that already states it. ``i = 0``, the unguided problem, is *not* part of the search: the search runs on hard
problems, whose unguided pass@k the hard split already measured as 0. If no ``i`` works the
problem gets the *fallback*: a seeded random contiguous segment shorter than a quarter of
the solution (:func:`fallback_segment`; for solutions of at most 4 steps the quarter is
measured in characters, and a solution without a short enough step gets none), shown in
place of the prefix with an instruction for a mid-solution excerpt.

Measurement. ``successes(x, i)`` is measured by :class:`~pope_env.probe.PrefixProbe` (its
module documents how: chunks seeded by ``(seed, problem id, i, chunk index)`` only, so a
measurement is the same random event for every strategy, run, resume and batching). A
success in any chunk proves a state solvable; a state is a failure only once all ``k``
samples failed. ``run_prefix_search(..., batch_size=N)`` keeps ``N`` problems in flight
(:mod:`pope_env.lockstep`) with the same files as ``batch_size=1``.

Strategies (:data:`STRATEGIES`). What each returns, exactly:

* ``linear`` (the reference and the default): measure ``i = 1, 2, ...``, each until its
  first success (a failure costs all ``k`` samples); return the first state with a success.
  This *is* the paper's i*: every state below it failed all ``k`` samples. It is also the
  cheapest strategy that returns the paper's i* for certain: a state is ruled out only by
  ``k`` failures, so any such strategy must measure every ``i < i*`` in full.
* ``galloping``: the cap, then ``i = 1``, then down from the cap (cap - 1, cap - 2,
  cap - 4, ...) until a failure, then bisect between that failure and the shortest success;
  if the cap fails, the linear scan of ``1..cap-1``. Returns a *local* minimum.
* ``scouting``: one chunk of states ``1, 2, ...`` until one succeeds, then finish the state
  just below the lowest success (a success moves the search one state down). If no scout
  succeeds, the linear scan (reusing the scouted chunks). Returns a *local* minimum.
* ``anchored``: learn from the problems searched before this one. Their i* sit at a
  typical distance below their cap; measure the state at the median distance (over the last
  :data:`ANCHOR_WINDOW` problems that found a prefix) first. A success: finish the states
  below it one by one until one fails all ``k`` samples. A failure: go up one state at a
  time (states below a failed guess are not measured unless nothing up to the cap
  succeeds). The first problem of a run, with nothing to learn from, is searched with
  ``scouting``. The history is the finished problems that come before this one in the
  problem list, so a resumed run searches exactly as an uninterrupted one. Returns a
  *local* minimum.

Guarantees. ``linear`` returns the paper's i*. ``galloping``, ``scouting`` and
``anchored`` return a *verified local minimum*: ``i*`` was measured with a success and
``i* - 1`` with all ``k`` samples and no success (or ``i* = 1``); a state further below may
be unmeasured or only partly measured. Success is monotone in i only in expectation, so with
a lucky success at some ``j < i* - 1`` the linear scan returns ``j`` while they return the
larger local minimum (they agree whenever no such state exists, because all strategies
measure the same random events). Every strategy's "no prefix works" (``None``, the
fallback) is verified the same way: it is declared only after every state ``1..cap`` failed
all ``k`` samples. ``bench/prefix_search.py`` measures how often the fast strategies agree
with ``linear``.

Guidance file (JSONL, :func:`load_guidance`): a header line, then one line per problem::

    {"kind": "pope-guidance", "version": 1, "dataset": "math-train-l5", "model": "smollm2",
     "k": 8, "seed": 0, "strategy": "galloping", "chunk_size": 2, "prompt_format": "chat",
     "sampling": {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 512}}
    {"problem_id": "...", "i_star": 3, "fallback": false, "segment": [0, 3], "cap": 5,
     "n_steps": 6, "rollouts": 22,
     "evidence": [[5, 1, 2], [1, 0, 8], [4, 1, 2], [2, 0, 8], [3, 1, 2]]}

``segment`` is the ``[start, stop)`` range of oracle steps to show (``[0, i*]`` for a found
prefix; ``[0, 0]`` for a fallback on a solution too short for one: no guidance);
``evidence`` lists every ``[i, successes, samples]`` measured, in order, one row per
installment (a state measured in two installments has two rows;
:meth:`GuidanceRecord.by_state` sums them). ``prompt_format`` is ``"chat"``, ``"text"`` or
``"custom:<module>.<name>"`` for a callable renderer. The file is
appended one finished problem at a time (fsync'd), so a crash loses at most the problem in
flight; re-running with the same settings skips finished problems, and a file made with
other settings (dataset, model, k, seed, ...) is refused with the mismatch named.
"""

from __future__ import annotations

import hashlib
import math
import random
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from pope_env.errors import DataFormatError
from pope_env.guidance import DEFAULT_CONFIG, check_guidable, precompute_caps
from pope_env.guidance_file import (  # noqa: F401  (re-exported: the guidance file format lived here)
    GUIDANCE_KIND,
    GUIDANCE_VERSION,
    GuidanceFile,
    GuidanceHeader,
    GuidanceRecord,
    Measurement,
    load_guidance,
)
from pope_env.io import JsonlAppender, PathLike
from pope_env.probe import (  # noqa: F401  (re-exported: the probe lived here)
    PROMPT_FORMATS,
    Installment,
    MeasureRequest,
    PrefixProbe,
    ProbeSettings,
    Scorer,
    default_scorer,
    derive_seed,
    open_measured_file,
    prompt_format_name,
)
from pope_env.problem import Problem
from pope_env.search_strategies import (  # noqa: F401  (re-exported: the strategies lived here)
    ANCHOR_WINDOW,
    STRATEGIES,
    SearchStrategy,
    anchored_search,
    galloping_search,
    get_strategy,
    linear_search,
    scouting_search,
)

if TYPE_CHECKING:  # typing only: the core never imports pope_env.agents at run time
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

    from pope_env.agents.policy import Policy

# --------------------------------------------------------------------------- results


def fallback_segment(problem: Problem, seed: int) -> tuple[int, int]:
    """The seeded random contiguous segment ``[start, stop)`` used when no prefix works.

    The paper shows a random segment *shorter than a quarter* of the oracle solution. Here:

    * a solution of ``n >= 5`` steps gets ``ceil(n / 4) - 1`` whole steps (the most whole
      steps that are fewer than ``n / 4``), at most ``cap`` of them;
    * a solution of ``n <= 4`` steps has no non-empty run of whole steps under a quarter of
      its steps, so the quarter is measured in characters: the segment is one step whose
      text (whitespace stripped) is shorter than a quarter of the whole solution's text;
    * if no such step lies within the first ``cap`` steps, the segment is empty, ``(0, 0)``:
      no guidance (the problem is shown unguided, as a prefix of length 0 is).

    The segment always lies within the first ``cap`` steps, so it never shows the answer.
    Its start (or the step) is drawn uniformly with a generator seeded by ``(seed, problem
    id)``. A segment starting after step 0 is rendered as an excerpt
    (:attr:`pope_env.guidance.GuidanceConfig.segment_instruction`), not as a prefix.
    """
    cap = check_guidable(problem)
    rng = random.Random(derive_seed(seed, problem.id, "fallback"))
    n = len(problem.steps)
    length = min(math.ceil(n / 4) - 1, cap)
    if length >= 1:
        start = rng.randint(0, cap - length)
        return start, start + length
    total = len(problem.solution.strip()) if problem.solution.strip() else len("".join(problem.steps).strip())
    short = [j for j in range(cap) if 0 < len(problem.steps[j].strip()) < total / 4]
    if not short:
        return 0, 0
    start = rng.choice(short)
    return start, start + 1


# --------------------------------------------------------------------------- the search


def search_problem(
    problem: Problem, probe: PrefixProbe, strategy: SearchStrategy, *, seed: int,
    history: Sequence[GuidanceRecord] = (),
) -> GuidanceRecord:
    """Run ``strategy`` on one problem and package the result (fallback included).

    ``history`` (the records of the problems searched before) reaches strategies that use it.
    """
    cap = check_guidable(problem)
    probe.forget(problem)
    if strategy.uses_history:
        i_star = strategy.search(probe, problem, cap, history=history)
    else:
        i_star = strategy.search(probe, problem, cap)
    if i_star is None:
        segment, fallback = fallback_segment(problem, seed), True
    else:
        segment, fallback = (0, i_star), False
    evidence = tuple(probe.log_of(problem))
    probe.forget(problem)
    return GuidanceRecord(problem.id, i_star, fallback, segment, cap, len(problem.steps), evidence)


def unusable_problems(problems: Iterable[Problem]) -> dict[str, str]:
    """Problem id -> reason, for problems that cannot be guided at all."""
    out = {}
    for p in problems:
        try:
            check_guidable(p)
        except DataFormatError as exc:
            out[p.id] = str(exc)
    return out


def run_prefix_search(
    problems: Sequence[Problem],
    policy: "Policy",
    *,
    dataset: str,
    out: PathLike,
    strategy: "str | SearchStrategy" = "linear",
    skip_unusable: bool = False,
    progress: bool = True,
    batch_size: int = 1,
    **probe_settings: Unpack[ProbeSettings],
) -> GuidanceFile:
    """Find i* for every problem and write the guidance file ``out`` (resumable).

    Args:
        problems: Problems to search (usually the hard split).
        policy: The base policy (``policy.name`` is recorded as the model).
        dataset: Dataset name recorded in the header and checked on resume and load.
        out: Guidance file; if it exists with the same settings, finished problems are
            skipped; corrupted lines are reported by number, dropped, and redone.
        strategy: A name in :data:`STRATEGIES` (default ``linear``, the paper's i*; the
            others return a verified local minimum, see the module docstring), or a
            :class:`SearchStrategy` (a variant with other parameters, say); the header
            records its name.
        skip_unusable: Skip (with a warning) problems that cannot be guided instead of
            refusing the whole run.
        progress: Show a tqdm progress bar.
        batch_size: Problems searched at once (default 1: one after the other). Above 1,
            each problem's strategy runs in a worker thread and the measurements of all
            problems in flight are drawn together, one chunk each per round
            (:mod:`pope_env.lockstep`): with a policy that has ``generate_seeded`` (the char
            model, vLLM) that is one batched call per round instead of one call per chunk;
            with other policies it only changes the order of the calls. The file, its
            records and their evidence are the same as with ``batch_size=1`` (every chunk
            is seeded by problem, state and index); records are appended in list order, so
            a crash loses at most the problems in flight. Not with a strategy that learns
            from earlier problems (``anchored``): it needs them finished first.
        **probe_settings: How each state is measured (:class:`~pope_env.probe.ProbeSettings`,
            defaults as :class:`~pope_env.probe.PrefixProbe`'s): ``k`` samples per state (8), ``seed`` (0; the root of
            all sampling and of the fallback segments), ``scorer`` (default
            :func:`default_scorer`, math-verify), ``sampling`` (default temperature 1, the
            policy contract's), ``chunk_size`` (samples per generate call), ``config``
            (prompt wording) and ``prompt_format`` (``"chat"``, ``"text"`` or a callable
            ``(problem, prefix_len) -> prompt``, recorded in the header as
            ``"custom:<module>.<name>"``).

    Returns:
        The guidance file as loaded after the run.

    Raises:
        GuidanceFileError: ``out`` was made with other settings (the mismatch is named).
        DataFormatError: some problems cannot be guided and ``skip_unusable`` is false.
        ConfigError: ``k < 1``, a bad ``chunk_size`` / ``prompt_format`` / ``batch_size``,
            ``batch_size > 1`` with a strategy that uses history, or (batched) repeated
            problem ids.
        TypeError: an unknown keyword.
    """
    from pope_env.lockstep import run_in_lockstep

    search = strategy if isinstance(strategy, SearchStrategy) else get_strategy(strategy)
    search.check_batch_size(batch_size)
    precompute_caps(problems, progress=progress)  # one parallel answer-leak scan, then cached
    bad = unusable_problems(problems)
    if bad and not skip_unusable:
        shown = "; ".join(list(bad.values())[:3])
        raise DataFormatError(
            f"{len(bad)} of {len(problems)} problems cannot be guided ({shown}{' ...' if len(bad) > 3 else ''}); "
            "pass skip_unusable=True (CLI: --skip-unusable) to search the others"
        )
    for pid in bad:
        warnings.warn(f"skipping problem {pid!r}: it cannot be guided", stacklevel=2)
    todo = [p for p in problems if p.id not in bad]
    instruction = probe_settings.get("config", DEFAULT_CONFIG).instruction
    instruction_sha = hashlib.sha256(instruction.encode()).hexdigest()[:12]
    probe, done = open_measured_file(
        out, policy,
        lambda fields: GuidanceHeader(dataset=dataset, strategy=search.name, **fields, instruction_sha=instruction_sha),
        load_guidance, GuidanceRecord.to_json, probe_settings, owner="run_prefix_search")
    seed = probe.seed

    from tqdm.auto import tqdm

    remaining = [p for p in todo if p.id not in done]
    bar = tqdm(total=len(todo), initial=len(todo) - len(remaining), desc=f"prefix search ({search.name})",
               unit="problem", disable=not progress)
    rollouts = 0
    with JsonlAppender(out) as sink:

        def write(problem: Problem, record: GuidanceRecord) -> None:
            nonlocal rollouts
            sink.append(record.to_json())
            rollouts += record.rollouts
            bar.update(1)
            bar.set_postfix(rollouts=rollouts, refresh=False)

        if batch_size > 1:
            run_in_lockstep(remaining, probe, lambda p, view: search_problem(p, view, search, seed=seed),
                            batch_size=batch_size, on_result=write)
        else:
            history: list[GuidanceRecord] = []  # the records of the problems before this one, in list order
            for problem in todo:
                record = done.get(problem.id)
                if record is None:
                    record = search_problem(problem, probe, search, seed=seed, history=history)
                    write(problem, record)
                history.append(record)
    bar.close()
    return load_guidance(out, dataset=dataset)
