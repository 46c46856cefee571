"""The S_good reach set: from which roll-in states does the policy reach reward?

A *roll-in state* of problem ``x`` is the prompt after showing the oracle steps
``z[start:start+i]`` (``i = 0``: the unguided problem; ``start = 0`` for prefixes, ``> 0`` only
for the prefix search's fallback segments). From recorded rollouts, :class:`ReachSet`
estimates each state's success probability ``p`` with a Wilson score interval, and

    S_good(x) = { states s of x : lower 95% Wilson bound of p(s) > 0.1 }   (default)

**The default rule: reward reliably attainable.** The POPE paper's S_good holds the states
from which the policy attains reward *reliably*. The default asks for statistical evidence
(95% confidence, :data:`DEFAULT_CONFIDENCE`) that the success rate from the state exceeds
10% (:data:`DEFAULT_THRESHOLD`): from such a state a GRPO group of 8 rollouts holds a
success with probability over 57% (16 rollouts: over 81%), so RL gets a learning signal
there. With ``k`` samples that takes at least 2 successes of 2, 3 or 4; 3 of 8; 4 of 16;
7 of 32; 12 of 64 (:func:`min_successes`). ``threshold=0`` gives the weaker notion "at least one
success in k" (the Wilson lower bound is positive exactly then), which is what the prefix
search's ``i*`` uses; ``criterion="point"`` compares the point estimate ``s/k`` instead of
the lower bound. ``coverage()`` is the fraction of problems whose S_good is non-empty.

Rollout records (JSONL, one per line) accepted by :meth:`ReachSet.from_records` and
``pope-env reach --rollouts``; every field but ``problem_id`` is optional:

* one rollout:   ``{"problem_id": "p", "prefix_len": 2, "correct": true, "step": 40}``
  (``reward`` > 0.5 may stand for ``correct``; ``guided: false`` for ``prefix_len: 0``;
  ``start`` for a segment's first step; ``step`` is the training step for the transfer
  report);
* a count:       ``{"problem_id": "p", "prefix_len": 2, "successes": 3, "samples": 8}``;
* a guidance-file line (its ``evidence`` measurements are read as counts); headers
  (``"kind": ...``) are skipped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pope_env.errors import ConfigError, DataFormatError
from pope_env.io import PathLike, atomic_write_text

REACH_KIND = "pope-reach"
CRITERIA = ("lower", "point")
DEFAULT_THRESHOLD = 0.1
"""Default S_good rate: a state is in S_good when its success rate exceeds this (with
:data:`DEFAULT_CONFIDENCE` under the default ``"lower"`` criterion)."""
DEFAULT_CONFIDENCE = 0.95
"""Default confidence level of the Wilson interval of the S_good rule."""
DEFAULT_CRITERION = "lower"
"""Default S_good criterion: the lower Wilson bound (``"point"``: the point estimate)."""


def wilson_interval(successes: int, samples: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (``(0, 1)`` when ``samples == 0``)."""
    if samples < 0 or not 0 <= successes <= samples:
        raise ConfigError(f"need 0 <= successes <= samples, got {successes}/{samples}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}")
    if samples == 0:
        return 0.0, 1.0
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / samples
    denom = 1 + z * z / samples
    centre = (p + z * z / (2 * samples)) / denom
    half = z * math.sqrt(p * (1 - p) / samples + z * z / (4 * samples * samples)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    if successes == 0:
        lo = 0.0
    if successes == samples:
        hi = 1.0
    return lo, hi


def min_successes(samples: int, *, threshold: float = DEFAULT_THRESHOLD,
                  confidence: float = DEFAULT_CONFIDENCE, criterion: str = DEFAULT_CRITERION) -> int | None:
    """The fewest successes out of ``samples`` that put a state in S_good under the rule
    ``(threshold, confidence, criterion)``; ``None`` when even ``samples`` successes do not."""
    check_s_good_rule(threshold=threshold, confidence=confidence, criterion=criterion)
    for successes in range(samples + 1):
        if samples > 0 and s_good_value(successes, samples, confidence, criterion) > threshold:
            return successes
    return None


def check_s_good_rule(*, threshold: float, confidence: float, criterion: str) -> None:
    """Raise :class:`ConfigError` unless ``(threshold, confidence, criterion)`` is a valid
    S_good rule: threshold in ``[0, 1)``, confidence in ``(0, 1)``, criterion in :data:`CRITERIA`."""
    if criterion not in CRITERIA:
        raise ConfigError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    if not 0.0 <= threshold < 1.0:
        raise ConfigError(f"threshold must be in [0, 1), got {threshold!r}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}")


class SuccessCounts:
    """``successes`` out of ``samples`` rollouts from one state: the point estimate, the
    Wilson interval and the S_good rule, for every record that holds such counts
    (:class:`StateEstimate`, :class:`StateMonteCarlo`, :class:`pope_env.own_states.OwnState`).
    """

    successes: int
    samples: int

    @property
    def estimate(self) -> float:
        """Point estimate ``successes / samples`` (0 with no samples)."""
        return self.successes / self.samples if self.samples else 0.0

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """Wilson score interval of the success probability."""
        return wilson_interval(self.successes, self.samples, confidence)

    def in_s_good(self, *, threshold: float = DEFAULT_THRESHOLD, confidence: float = DEFAULT_CONFIDENCE,
                  criterion: str = DEFAULT_CRITERION) -> bool:
        """Whether the state passes the S_good rule: sampled, and its lower Wilson bound
        (``criterion="lower"``) or point estimate (``"point"``) exceeds ``threshold``."""
        return s_good_value(self.successes, self.samples, confidence, criterion) > threshold and self.samples > 0


def s_good_value(successes: int, samples: int, confidence: float, criterion: str) -> float:
    """The number the S_good rule compares with its threshold: the lower Wilson bound
    (``criterion="lower"``) or the point estimate."""
    if criterion == "lower":
        return wilson_interval(successes, samples, confidence)[0]
    return successes / max(samples, 1)


@dataclasses.dataclass(frozen=True)
class StateEstimate(SuccessCounts):
    """Success counts of one roll-in state and their estimate."""

    problem_id: str
    prefix_len: int
    successes: int
    samples: int
    start: int = 0

    @property
    def label(self) -> str:
        """``"3"`` for the prefix of 3 steps, ``"[2:4]"`` for a segment, ``"0"`` unguided."""
        return str(self.prefix_len) if self.start == 0 else f"[{self.start}:{self.start + self.prefix_len}]"


class ReachSet:
    """Per problem and roll-in state: success counts, Wilson intervals and S_good.

    Args:
        confidence: Confidence level of the Wilson intervals (default 0.95).
        threshold: A state is in S_good iff its statistic exceeds this (``[0, 1)``; default
            0.1, see the module docstring; 0 means "at least one success").
        criterion: ``"lower"`` (lower Wilson bound, default) or ``"point"`` (estimate).
    """

    def __init__(self, *, confidence: float = DEFAULT_CONFIDENCE, threshold: float = DEFAULT_THRESHOLD,
                 criterion: str = DEFAULT_CRITERION) -> None:
        check_s_good_rule(threshold=threshold, confidence=confidence, criterion=criterion)
        self.confidence, self.threshold, self.criterion = confidence, threshold, criterion
        self._counts: dict[str, dict[tuple[int, int], list[int]]] = defaultdict(dict)

    # ------------------------------------------------------------------ adding data
    def add(self, problem_id: str, prefix_len: int, successes: int, samples: int,
            *, start: int = 0) -> None:
        """Add ``successes`` out of ``samples`` rollouts from state ``(start, prefix_len)``."""
        if prefix_len < 0 or start < 0:
            raise ConfigError(f"prefix_len and start must be >= 0, got {prefix_len}, {start}")
        if samples < 0 or not 0 <= successes <= samples:
            raise ConfigError(f"need 0 <= successes <= samples, got {successes}/{samples}")
        counts = self._counts[str(problem_id)].setdefault((start, prefix_len), [0, 0])
        counts[0] += successes
        counts[1] += samples

    def add_rollout(self, problem_id: str, prefix_len: int, correct: bool, *, start: int = 0) -> None:
        """Add one rollout."""
        self.add(problem_id, prefix_len, int(bool(correct)), 1, start=start)

    def add_record(self, record: Mapping[str, Any]) -> None:
        """Add one record in any of the formats of the module docstring."""
        if "kind" in record:  # a file header
            return
        pid = record["problem_id"]
        if "evidence" in record:
            for i, successes, samples in record["evidence"]:
                self.add(pid, int(i), int(successes), int(samples))
            return
        prefix_len = _prefix_len_of(record)
        start = int(record.get("start", 0))
        if "successes" in record:
            self.add(pid, prefix_len, int(record["successes"]), int(record["samples"]), start=start)
        else:
            self.add_rollout(pid, prefix_len, _correct_of(record), start=start)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], **kwargs: Any) -> "ReachSet":
        reach = cls(**kwargs)
        for record in records:
            reach.add_record(record)
        return reach

    @classmethod
    def from_file(cls, path: PathLike, **kwargs: Any) -> "ReachSet":
        """From a rollouts file, a guidance file or a saved reach set (bad lines are named)."""
        reach = cls(**kwargs)
        for lineno, record in _numbered_records(path):
            try:
                reach.add_record(record)
            except (KeyError, TypeError, ValueError, ConfigError) as exc:
                raise DataFormatError(
                    f"{path}:{lineno}: not a rollout record ({type(exc).__name__}: {exc}); "
                    "see pope_env.reach for the accepted fields"
                ) from exc
        return reach

    # ------------------------------------------------------------------ queries
    @property
    def problem_ids(self) -> list[str]:
        return sorted(self._counts)

    def states(self, problem_id: str) -> list[StateEstimate]:
        """All recorded states of a problem, by (start, prefix length)."""
        return [
            StateEstimate(problem_id, i, s, n, start)
            for (start, i), (s, n) in sorted(self._counts.get(problem_id, {}).items())
        ]

    def in_s_good(self, state: StateEstimate) -> bool:
        return state.in_s_good(threshold=self.threshold, confidence=self.confidence, criterion=self.criterion)

    def s_good(self, problem_id: str) -> list[StateEstimate]:
        """The states of ``problem_id`` in S_good (empty for an unknown problem)."""
        return [s for s in self.states(problem_id) if self.in_s_good(s)]

    def coverage(self, problem_ids: Sequence[str] | None = None) -> float:
        """Fraction of problems (default: all recorded) whose S_good is non-empty."""
        ids = self.problem_ids if problem_ids is None else list(problem_ids)
        if not ids:
            return 0.0
        return sum(bool(self.s_good(pid)) for pid in ids) / len(ids)

    # ------------------------------------------------------------------ files and tables
    def save(self, path: PathLike) -> None:
        """Write counts as JSONL (a header, then one count record per state), atomically."""
        header = {"kind": REACH_KIND, "version": 1, "confidence": self.confidence,
                  "threshold": self.threshold, "criterion": self.criterion}
        rows = [header] + [
            {"problem_id": s.problem_id, "start": s.start, "prefix_len": s.prefix_len,
             "successes": s.successes, "samples": s.samples}
            for pid in self.problem_ids for s in self.states(pid)
        ]
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    @classmethod
    def load(cls, path: PathLike, **overrides: Any) -> "ReachSet":
        """Read a file written by :meth:`save` (its settings unless overridden)."""
        settings: dict[str, Any] = {}
        for _, record in _numbered_records(path):
            if record.get("kind") == REACH_KIND:
                settings = {k: record[k] for k in ("confidence", "threshold", "criterion")}
            break
        return cls.from_file(path, **{**settings, **overrides})

    def table(self, *, max_rows: int | None = None) -> str:
        """A printable table: one row per state, S_good marked, then the coverage."""
        head = ("problem", "state", "succ/n", "p", f"{self.confidence:.0%} interval", "S_good")
        rows = []
        for pid in self.problem_ids:
            for s in self.states(pid):
                lo, hi = s.interval(self.confidence)
                rows.append((pid, s.label, f"{s.successes}/{s.samples}", f"{s.estimate:.3f}",
                             f"[{lo:.3f}, {hi:.3f}]", "yes" if self.in_s_good(s) else ""))
        shown = rows if max_rows is None else rows[:max_rows]
        text = format_table(head, shown)
        if len(shown) < len(rows):
            text += f"\n... {len(rows) - len(shown)} more states"
        rule = "lower bound" if self.criterion == "lower" else "estimate"
        return (text + f"\ncoverage: {self.coverage():.3f} of {len(self.problem_ids)} problems have "
                f"a non-empty S_good ({rule} > {self.threshold})")


# ---------------------------------------------------------------------- transfer report


@dataclasses.dataclass(frozen=True)
class TransferRow:
    """Guided vs unguided success of one problem over one span of training steps."""

    problem_id: str
    step: int
    guided_successes: int
    guided_samples: int
    unguided_successes: int
    unguided_samples: int

    @property
    def guided_rate(self) -> float | None:
        return self.guided_successes / self.guided_samples if self.guided_samples else None

    @property
    def unguided_rate(self) -> float | None:
        return self.unguided_successes / self.unguided_samples if self.unguided_samples else None


def transfer_report(records: Iterable[Mapping[str, Any]], *, bucket: int = 1) -> list[TransferRow]:
    """Guided vs unguided success per problem over training.

    Rollouts are grouped by problem and by training step rounded down to a multiple of
    ``bucket`` (records without ``step`` count as step 0); a rollout is guided iff its
    roll-in state shows oracle steps (``prefix_len > 0``). Transfer shows as the unguided
    rate of a problem rising after its guided rate did.
    """
    if bucket < 1:
        raise ConfigError(f"bucket must be >= 1, got {bucket}")
    cells: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for record in records:
        if "kind" in record or "evidence" in record:
            continue
        step = int(record.get("step", 0)) // bucket * bucket
        cell = cells[(str(record["problem_id"]), step)]
        offset = 0 if _prefix_len_of(record) > 0 else 2
        if "successes" in record:
            cell[offset] += int(record["successes"])
            cell[offset + 1] += int(record["samples"])
        else:
            cell[offset] += int(_correct_of(record))
            cell[offset + 1] += 1
    return [TransferRow(pid, step, *cells[(pid, step)]) for pid, step in sorted(cells)]


def transfer_table(rows: Sequence[TransferRow]) -> str:
    """Printable form of :func:`transfer_report`."""

    def rate(s: int, n: int) -> str:
        return f"{s}/{n} ({s / n:.2f})" if n else "-"

    body = [(r.problem_id, str(r.step), rate(r.guided_successes, r.guided_samples),
             rate(r.unguided_successes, r.unguided_samples)) for r in rows]
    return format_table(("problem", "step", "guided", "unguided"), body)


# ---------------------------------------------------------------------- helpers


def format_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned plain-text table."""
    widths = [max(len(h), *(len(r[c]) for r in rows)) if rows else len(h) for c, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def _prefix_len_of(record: Mapping[str, Any]) -> int:
    if "prefix_len" in record and record["prefix_len"] is not None:
        return int(record["prefix_len"])
    if record.get("guided") is False:
        return 0
    if "guided" in record:
        raise ValueError("a guided rollout needs its prefix_len")
    return 0


def _correct_of(record: Mapping[str, Any]) -> bool:
    if "correct" in record:
        return bool(record["correct"])
    if "reward" in record:
        return float(record["reward"]) > 0.5
    raise KeyError("correct")


def _numbered_records(path: PathLike) -> Iterable[tuple[int, dict[str, Any]]]:
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"rollouts file {path} does not exist")
    lineno = 0
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise DataFormatError(f"{path}:{lineno}: malformed JSON ({exc}); fix or delete "
                                      "that line") from exc
            if not isinstance(obj, dict):
                raise DataFormatError(f"{path}:{lineno}: expected a JSON object")
            yield lineno, obj


# ---------------------------------------------------------------------- S_good from any state

MAX_STATE_CHARS = 100_000


@dataclasses.dataclass(frozen=True)
class StateQuery:
    """A roll-in state to estimate: problem ``problem_id`` after the partial solution ``steps``
    (any steps: oracle, the policy's own, or hand-written). ``label`` names it in reports."""

    problem_id: str
    steps: tuple[str, ...]
    label: str = ""


@dataclasses.dataclass(frozen=True)
class StateMonteCarlo(SuccessCounts):
    """Monte Carlo estimate of the success probability from one :class:`StateQuery`.

    Attributes:
        key: Hash of (problem, state, policy id, k, seed, sampling, prompt) used as cache key.
        cached: True when the counts came from the cache instead of new rollouts.
    """

    problem_id: str
    label: str
    n_steps: int
    successes: int
    samples: int
    key: str
    cached: bool = False


def state_key(problem: Any, steps: Sequence[str], *, policy_id: str, k: int, seed: int,
              sampling: Any, prompt_format: str, instruction: str) -> str:
    """Cache key of a Monte Carlo estimate: a sha256 over everything that changes it."""
    payload = json.dumps(
        [problem.id, problem.question, problem.answer, list(steps), policy_id, k, seed,
         [sampling.temperature, sampling.top_p, sampling.max_new_tokens, list(sampling.stop)],
         prompt_format, instruction],
        ensure_ascii=False,
    )
    import hashlib

    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def read_state_queries(path: PathLike, problems: Mapping[str, Any]) -> list[StateQuery]:
    """Read a states file: JSONL lines ``{"problem_id", "steps": [...]}``, or ``"state": text``
    (one step), or ``"prefix_len": i`` (the first i oracle steps); ``"label"`` optional.

    Raises:
        UnknownNameError: a line names a problem not in ``problems`` (the line is named).
        DataFormatError: a malformed line, an empty step, or a state over
            :data:`MAX_STATE_CHARS` characters.
        ConfigError: a prefix longer than the problem's oracle solution.
    """
    from pope_env.errors import UnknownNameError

    queries = []
    for lineno, record in _numbered_records(path):
        where = f"{path}:{lineno}"
        pid = record.get("problem_id")
        if pid not in problems:
            raise UnknownNameError(f"problem (states file {where})", str(pid), tuple(problems))
        problem = problems[pid]
        if "steps" in record:
            steps = record["steps"]
            if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
                raise DataFormatError(f"{where}: 'steps' must be a list of strings")
        elif "state" in record:
            if not isinstance(record["state"], str):
                raise DataFormatError(f"{where}: 'state' must be a string")
            steps = [record["state"]] if record["state"] else []
        elif "prefix_len" in record:
            i = record["prefix_len"]
            if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i <= len(problem.steps):
                raise ConfigError(f"{where}: prefix_len {i!r} is outside [0, {len(problem.steps)}], "
                                  f"the oracle solution of {pid!r} has {len(problem.steps)} steps")
            steps = list(problem.steps[:i])
        else:
            raise DataFormatError(f"{where}: give the state as 'steps', 'state' or 'prefix_len'")
        empty = [j for j, s in enumerate(steps) if not s.strip()]
        if empty:
            raise DataFormatError(f"{where}: step {empty[0]} of the state is empty; drop it")
        size = sum(len(s) for s in steps)
        if size > MAX_STATE_CHARS:
            raise DataFormatError(f"{where}: the state has {size} characters, more than the "
                                  f"{MAX_STATE_CHARS} a prompt may hold; shorten it")
        label = str(record.get("label") or (f"prefix {record['prefix_len']}" if "prefix_len" in record
                                            else f"{len(steps)} steps"))
        queries.append(StateQuery(str(pid), tuple(steps), label))
    return queries


def estimate_states(
    queries: Sequence[StateQuery],
    problems: Mapping[str, Any],
    policy: Any,
    *,
    k: int = 8,
    seed: int = 0,
    scorer: Any = None,
    sampling: Any = None,
    prompt_format: str = "chat",
    config: Any = None,
    cache: PathLike | None = "default",
    progress: bool = True,
) -> list[StateMonteCarlo]:
    """Monte Carlo success probability of ``policy`` from each state: ``k`` rollouts each.

    Each state is continued ``k`` times from the prompt of
    :func:`pope_env.guidance.state_messages` (or ``state_text``) with a sampling seed derived
    from ``(seed, key)``, and the completions are scored against the problem's answer.
    Results are appended to a JSONL cache keyed by :func:`state_key` (default
    ``cache_dir("reach")/states.jsonl``; ``None`` disables it), so repeated queries cost
    nothing and an interrupted run resumes.

    Args:
        queries: States to estimate (see :func:`read_state_queries`).
        problems: Problem id -> :class:`~pope_env.problem.Problem`.
        policy: Anything with the Policy ``generate``; ``policy.name`` is its id.
        k: Rollouts per state (``>= 1``).
        seed: Root seed.
        scorer: Verdicts per completion (default: the math reward).
        sampling: Sampling settings (default: the policy contract's defaults).
        prompt_format: ``"chat"`` or ``"text"``.
        config: Prompt wording (:class:`~pope_env.guidance.GuidanceConfig`).
        cache: Cache file, ``"default"`` or ``None``.
        progress: Show a progress bar.
    """
    import warnings

    from pope_env.guidance import DEFAULT_CONFIG, state_messages, state_text
    from pope_env.io import JsonlAppender, read_jsonl
    from pope_env.probe import PROMPT_FORMATS, default_scorer, derive_seed

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be an integer >= 1, got {k!r}")
    if prompt_format not in PROMPT_FORMATS:
        raise ConfigError(f"prompt_format must be one of {PROMPT_FORMATS}, got {prompt_format!r}")
    if sampling is None:
        from pope_env.agents.policy import SamplingParams

        sampling = SamplingParams()
    config = config or DEFAULT_CONFIG
    scorer = scorer or default_scorer()
    policy_id = str(getattr(policy, "name", type(policy).__name__))
    if cache == "default":
        from pope_env.paths import cache_dir

        cache = cache_dir("reach") / "states.jsonl"
    known: dict[str, tuple[int, int]] = {}
    if cache is not None and Path(cache).exists():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for r in read_jsonl(cache, strict=False):
                if {"key", "successes", "samples"} <= r.keys():
                    known[r["key"]] = (int(r["successes"]), int(r["samples"]))

    from tqdm.auto import tqdm

    sink = JsonlAppender(cache) if cache is not None else None
    out = []
    try:
        for query in tqdm(queries, desc="S_good from states", unit="state", disable=not progress):
            problem = problems[query.problem_id]
            key = state_key(problem, query.steps, policy_id=policy_id, k=k, seed=seed,
                            sampling=sampling, prompt_format=prompt_format,
                            instruction=config.instruction)
            if key in known:
                successes, samples = known[key]
                out.append(StateMonteCarlo(query.problem_id, query.label, len(query.steps),
                                           successes, samples, key, cached=True))
                continue
            render = state_messages if prompt_format == "chat" else state_text
            prompt = render(problem, query.steps, config)
            run_sampling = dataclasses.replace(sampling, seed=derive_seed(seed, key))
            (group,) = policy.generate([prompt], n=k, sampling=run_sampling)
            successes = sum(bool(v) for v in scorer([g.text for g in group], problem))
            known[key] = (successes, k)
            if sink is not None:
                sink.append({"key": key, "problem_id": query.problem_id, "policy": policy_id,
                             "successes": successes, "samples": k})
            out.append(StateMonteCarlo(query.problem_id, query.label, len(query.steps),
                                       successes, k, key))
    finally:
        if sink is not None:
            sink.close()
    return out


def states_table(estimates: Sequence[StateMonteCarlo], *, confidence: float = DEFAULT_CONFIDENCE,
                 threshold: float = DEFAULT_THRESHOLD, criterion: str = DEFAULT_CRITERION) -> str:
    """Printable report of :func:`estimate_states` with the S_good verdict per state."""
    rows = []
    for e in estimates:
        lo, hi = e.interval(confidence)
        rows.append((e.problem_id, e.label, str(e.n_steps), f"{e.successes}/{e.samples}",
                     f"{e.estimate:.3f}", f"[{lo:.3f}, {hi:.3f}]",
                     "yes" if e.in_s_good(threshold=threshold, confidence=confidence, criterion=criterion) else "",
                     "cache" if e.cached else ""))
    head = ("problem", "state", "steps", "succ/n", "p", f"{confidence:.0%} interval", "S_good", "")
    return format_table(head, rows)
