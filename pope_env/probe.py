"""Measuring a roll-in state: does the policy solve problem ``x`` from state ``i`` in ``k`` samples?

The hard split (state ``i = 0``, :mod:`pope_env.hard_split`), the i* search
(:mod:`pope_env.prefix_search`) and the demo's guided-success curve all measure with one
:class:`PrefixProbe`.

Measurement. ``successes(x, i)`` is measured by :class:`PrefixProbe`: ``k`` samples of the
roll-in prompt at state ``i``, drawn in chunks of ``chunk_size`` whose sampling seed is
derived from ``(seed, problem id, i, chunk index)`` only, never from the order of work. So
a measurement is the same random event for every strategy, every run and every resume;
strategies differ only in *which* states they measure, in how many installments (a state's
chunks can be drawn a few at a time, continuing where the last installment stopped), and
whether they stop a measurement at its first success (early stopping), which changes the
rollouts spent but not the success verdict. A success in any chunk proves a state
solvable; a state is a failure only once all ``k`` samples failed.

Batching. A chunk is one ``generate_seeded(prompts, n, sampling, seeds)`` call per chunk
size when the policy has that optional capability (:class:`~pope_env.agents.policy.Policy`:
each prompt drawn from its own seeded stream, so a prompt's samples do not depend on the
other prompts of the call), else one ``generate([prompt], n)`` call with the chunk's seed.
:meth:`PrefixProbe.measure_many` draws the next chunk of many (problem, state) requests in
one round, and ``run_prefix_search(..., batch_size=N)`` / ``run_hard_split(...,
batch_size=N)`` keep ``N`` problems in flight, each problem's strategy in a worker thread
whose measurements wait for the next round (:mod:`pope_env.lockstep`). Because the seeds do
not depend on the order of work, the files, records and evidence are those of
``batch_size=1``; a policy fast only in large batches (a char model on a CPU, vLLM) gains
the batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from pope_env.errors import ConfigError, check_keywords
from pope_env.guidance import DEFAULT_CONFIG, GuidanceConfig, guided_messages, guided_text
from pope_env.guidance_file import Measurement
from pope_env.io import FileHeader, PathLike, open_for_resume
from pope_env.problem import Problem

if TYPE_CHECKING:  # typing only: the core never imports pope_env.agents at run time
    from pope_env.agents.policy import Policy, Prompt, SamplingParams

Scorer = Callable[[Sequence[str], Problem], list[bool]]
"""Scores the completions of one problem: one ``correct`` verdict per completion."""

PROMPT_FORMATS = ("chat", "text")


def default_scorer() -> Scorer:
    """The math reward (math-verify against ``problem.answer``) as a :data:`Scorer`."""
    from pope_env.rewards.math import default_verifier

    verifier = default_verifier()

    def score(completions: Sequence[str], problem: Problem) -> list[bool]:
        scores = verifier.score_batch(list(completions), [problem.answer] * len(completions))
        return [bool(s.correct) for s in scores]

    return score


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from ``parts`` (stable across runs, platforms and Python versions)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


# --------------------------------------------------------------------------- measuring


def prompt_format_name(prompt_format: "str | Callable[[Problem, int], Prompt]") -> str:
    """How a guidance or split header records ``prompt_format``.

    ``"chat"`` and ``"text"`` are recorded as themselves; a callable as
    ``"custom:<module>.<qualified name>"`` (so a resume with another renderer is refused).

    Raises:
        ConfigError: ``prompt_format`` is neither a known name nor a callable.
    """
    if callable(prompt_format):
        module = getattr(prompt_format, "__module__", None) or "?"
        name = getattr(prompt_format, "__qualname__", None) or type(prompt_format).__qualname__
        return f"custom:{module}.{name}"
    if prompt_format not in PROMPT_FORMATS:
        raise ConfigError(
            f"prompt_format must be one of {PROMPT_FORMATS} or a callable (problem, prefix_len) "
            f"-> prompt, got {prompt_format!r}"
        )
    return prompt_format


@dataclasses.dataclass(frozen=True)
class MeasureRequest:
    """One :meth:`PrefixProbe.measure` call, as :meth:`PrefixProbe.measure_many` takes it.

    Raises:
        ConfigError: ``max_chunks`` is not a positive integer or ``None``.
    """

    problem: Problem
    prefix_len: int
    early_stop: bool
    max_chunks: int | None = None

    def __post_init__(self) -> None:
        m = self.max_chunks
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise ConfigError(f"max_chunks must be an integer >= 1 or None, got {m!r}")


class ProbeSettings(TypedDict, total=False):
    """The measurement keywords of :class:`PrefixProbe` (``scorer``, ``k``, ``seed``,
    ``chunk_size``, ``sampling``, ``config``, ``prompt_format``; each optional, defaults and
    meaning there), which :func:`run_prefix_search` and
    :func:`~pope_env.hard_split.run_hard_split` pass on to the probe they measure with."""

    scorer: Scorer | None
    k: int
    seed: int
    chunk_size: int | None
    sampling: "SamplingParams | None"
    config: GuidanceConfig
    prompt_format: "str | Callable[[Problem, int], Prompt]"


class PrefixProbe:
    """Measures whether a policy solves a problem from roll-in state ``i`` in ``k`` samples.

    The k samples are drawn in ``n_chunks`` chunks of ``chunk_size`` (the last chunk may be
    smaller); chunk ``j`` of state ``i`` of problem ``x`` is sampled with seed
    ``derive_seed(seed, x.id, i, j)``, whatever the order of work. A state is measured in
    *installments*: :meth:`measure` continues the state from its next undrawn chunk, so a
    strategy can scout many states with one chunk each (``max_chunks=1``) and later finish
    the one it needs. A success in any chunk proves the state solvable (:meth:`is_success`);
    a state is a failure only once all ``k`` samples failed (:meth:`is_failure`).

    How a chunk is sampled: with a policy that has the optional ``generate_seeded``
    capability (:class:`~pope_env.agents.policy.Policy`), as ``generate_seeded([prompt],
    n=chunk, seeds=[chunk seed])``, and :meth:`measure_many` draws the next chunk of many
    (problem, state) requests in one such call per round, each still the same random event
    it is alone; otherwise as one ``generate([prompt], n=chunk)`` call with
    ``sampling.seed`` = the chunk seed. (The two are different draws for the same seed, so a
    policy's measurements change if it gains or loses the capability.)

    Progress is kept per problem, so several problems can be in flight at once: every
    installment is recorded in that problem's :meth:`log_of`; :attr:`log` joins the logs of
    the problems not forgotten. :meth:`forget` drops one problem's progress and log (the
    search does so when a problem is done), :meth:`reset` everything.

    Args:
        policy: Anything with the :class:`~pope_env.agents.policy.Policy` ``generate``.
        scorer: Verdicts for one problem's completions; ``None``: :func:`default_scorer`,
            created on the first measurement (so a run with nothing left to do starts no
            verifier workers).
        k: Samples per state (``>= 1``; default 8).
        seed: Root seed (a search also seeds its fallback segments with it).
        chunk_size: Samples per chunk (``1..k``); default ``max(1, k // 4)``.
        sampling: Temperature, top-p and token budget; its ``seed`` is replaced per chunk.
        config: Prompt wording (for the ``"chat"`` and ``"text"`` formats).
        prompt_format: ``"chat"`` (messages), ``"text"`` (plain text), or a callable
            ``(problem, prefix_len) -> prompt`` for a policy with its own prompt layout (a
            non-chat char-level model, say); headers record it by
            :func:`prompt_format_name`.
    """

    def __init__(
        self,
        policy: "Policy",
        scorer: Scorer | None = None,
        *,
        k: int = 8,
        seed: int = 0,
        chunk_size: int | None = None,
        sampling: "SamplingParams | None" = None,
        config: GuidanceConfig = DEFAULT_CONFIG,
        prompt_format: "str | Callable[[Problem, int], Prompt]" = "chat",
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be an integer >= 1, got {k!r}")
        chunk = max(1, k // 4) if chunk_size is None else chunk_size
        if not isinstance(chunk, int) or not 1 <= chunk <= k:
            raise ConfigError(f"chunk_size must be in [1, k={k}], got {chunk_size!r}")
        self.prompt_format_name = prompt_format_name(prompt_format)
        if sampling is None:
            from pope_env.agents.policy import SamplingParams

            sampling = SamplingParams()
        self.policy, self._scorer = policy, scorer
        self.k, self.seed, self.chunk_size = k, seed, chunk
        self.sampling, self.config, self.prompt_format = sampling, config, prompt_format
        self._problems: dict[str, _ProblemProgress] = {}

    def header_fields(self) -> dict[str, Any]:
        """The settings a file measured with this probe records in its header
        (:class:`~pope_env.guidance_file.SampledFileHeader`): model, k, seed, chunk size,
        prompt format and sampling."""
        return {"model": str(getattr(self.policy, "name", type(self.policy).__name__)), "k": self.k,
                "seed": self.seed, "chunk_size": self.chunk_size, "prompt_format": self.prompt_format_name,
                "sampling": {"temperature": self.sampling.temperature, "top_p": self.sampling.top_p,
                             "max_new_tokens": self.sampling.max_new_tokens}}

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            self._scorer = default_scorer()
        return self._scorer

    @property
    def n_chunks(self) -> int:
        """Chunks per state: ``ceil(k / chunk_size)``."""
        return math.ceil(self.k / self.chunk_size)

    @property
    def log(self) -> list[Measurement]:
        """Every installment of the problems not forgotten, problem by problem (in the order
        they were first measured), each problem's in order."""
        return [m for progress in list(self._problems.values()) for m in progress.log]

    @property
    def rollouts(self) -> int:
        """Samples in :attr:`log`."""
        return sum(m.samples for m in self.log)

    def reset(self) -> None:
        """Forget every problem's progress and log."""
        self._problems = {}

    def forget(self, problem: Problem) -> None:
        """Forget one problem's progress and its :meth:`log_of`."""
        self._problems.pop(problem.id, None)

    def log_of(self, problem: Problem) -> list[Measurement]:
        """The problem's installments since it was last forgotten, in order."""
        progress = self._problems.get(problem.id)
        return [] if progress is None else list(progress.log)

    def prompt(self, problem: Problem, prefix_len: int, start: int = 0) -> "Prompt":
        if callable(self.prompt_format):
            if start:
                raise ConfigError("a custom prompt_format renders prefixes only (start must be 0)")
            return self.prompt_format(problem, prefix_len)
        if self.prompt_format == "chat":
            return guided_messages(problem, prefix_len, self.config, start=start)
        return guided_text(problem, prefix_len, self.config, start=start)

    def _state(self, problem: Problem, prefix_len: int) -> "_StateProgress | None":
        progress = self._problems.get(problem.id)
        return None if progress is None else progress.states.get(prefix_len)

    def known(self, problem: Problem, prefix_len: int) -> Measurement:
        """The state's totals so far (``samples == 0`` if it was never measured)."""
        state = self._state(problem, prefix_len)
        if state is None:
            return Measurement(prefix_len, 0, 0)
        return Measurement(prefix_len, state.successes, state.samples)

    def chunks_drawn(self, problem: Problem, prefix_len: int) -> int:
        """Chunks of the state drawn so far (``0..n_chunks``)."""
        state = self._state(problem, prefix_len)
        return 0 if state is None else state.chunks

    def is_success(self, problem: Problem, prefix_len: int) -> bool:
        """True once some sample of the state succeeded (the state is proven solvable)."""
        return self.known(problem, prefix_len).successes > 0

    def is_failure(self, problem: Problem, prefix_len: int) -> bool:
        """True once all ``k`` samples of the state were drawn and none succeeded."""
        m = self.known(problem, prefix_len)
        return m.samples == self.k and m.successes == 0

    def measure(
        self, problem: Problem, prefix_len: int, *, early_stop: bool, max_chunks: int | None = None
    ) -> Measurement:
        """Sample state ``prefix_len`` (``0`` = unguided) further; the state's totals so far.

        Draws the state's next undrawn chunks, at most ``max_chunks`` of them (``None``: up to
        all ``k`` samples). With ``early_stop`` nothing more is drawn once the state holds a
        success. Each call that draws something appends one installment
        ``Measurement(prefix_len, successes, samples)`` to the problem's log.

        Raises:
            ConfigError: ``max_chunks`` is not a positive integer.
        """
        return self.measure_many([MeasureRequest(problem, prefix_len, early_stop, max_chunks)])[0]

    def measure_many(self, requests: Sequence[MeasureRequest]) -> list[Measurement]:
        """:meth:`measure` for each request, batched: the state's totals so far, per request.

        Works in rounds; each round draws the next chunk of every request that still wants
        one (one ``generate_seeded`` call per chunk size, or one ``generate`` call per request
        for a policy without it). Seeds, verdicts and logged installments are exactly those
        of calling :meth:`measure` on each request in turn.

        Raises:
            ConfigError: two requests name the same (problem id, state).
        """
        seen = {(r.problem.id, r.prefix_len) for r in requests}
        if len(seen) != len(requests):
            raise ConfigError("measure_many got the same (problem id, state) twice; measure it in one request")
        installments = [self.start(r) for r in requests]
        while True:
            wanting = [x for x in installments if self.wants_chunk(x)]
            if not wanting:
                break
            self.draw_round(wanting)
        return [self.finish(x) for x in installments]

    # The steps of measure_many, for schedulers that add requests between rounds
    # (pope_env.lockstep): start, then draw_round while wants_chunk, then finish.

    def start(self, request: MeasureRequest) -> "Installment":
        """Begin one installment of ``request``'s state (nothing drawn yet)."""
        progress = self._problems.setdefault(request.problem.id, _ProblemProgress())
        state = progress.states.setdefault(request.prefix_len, _StateProgress())
        budget = self.n_chunks if request.max_chunks is None else request.max_chunks
        return Installment(request, state, budget)

    def wants_chunk(self, x: "Installment") -> bool:
        """Whether the installment draws another chunk: budget left, chunks left, and no
        success yet when it stops early."""
        return bool(x.budget and x.state.chunks < self.n_chunks
                    and not (x.request.early_stop and x.state.successes))

    def draw_round(self, installments: Sequence["Installment"]) -> None:
        """Draw the next chunk of each installment (each must :meth:`want <wants_chunk>` one)."""
        from pope_env.agents.policy import has_seeded_generate

        chunks = [(x, min(self.chunk_size, self.k - x.state.samples),
                   derive_seed(self.seed, x.request.problem.id, x.request.prefix_len, x.state.chunks))
                  for x in installments]
        for x, _, _ in chunks:
            if x.prompt is None:
                x.prompt = self.prompt(x.request.problem, x.request.prefix_len)
        if has_seeded_generate(self.policy):
            by_size: dict[int, list[tuple[Installment, int]]] = {}
            for x, n, seed in chunks:
                by_size.setdefault(n, []).append((x, seed))
            for n, group in by_size.items():
                outputs = self.policy.generate_seeded(
                    [x.prompt for x, _ in group], n=n, sampling=self.sampling, seeds=[seed for _, seed in group])
                for (x, _), completions in zip(group, outputs):
                    self._record(x, n, completions)
        else:
            for x, n, seed in chunks:
                (completions,) = self.policy.generate(
                    [x.prompt], n=n, sampling=dataclasses.replace(self.sampling, seed=seed))
                self._record(x, n, completions)

    def _record(self, x: "Installment", n: int, completions: Sequence[Any]) -> None:
        hits = sum(bool(v) for v in self.scorer([g.text for g in completions], x.request.problem))
        x.state.chunks += 1
        x.state.samples += n
        x.state.successes += hits
        x.successes += hits
        x.samples += n
        x.budget -= 1

    def finish(self, x: "Installment") -> Measurement:
        """End the installment: log it if it drew anything; the state's totals so far."""
        request = x.request
        if x.samples:
            m = Measurement(request.prefix_len, x.successes, x.samples)
            self._problems.setdefault(request.problem.id, _ProblemProgress()).log.append(m)
        return self.known(request.problem, request.prefix_len)


@dataclasses.dataclass
class _StateProgress:
    """How far one state's measurement has got: chunks and samples drawn, successes seen."""

    chunks: int = 0
    samples: int = 0
    successes: int = 0


@dataclasses.dataclass
class _ProblemProgress:
    """One problem's states (prefix length -> progress) and its installments, in order."""

    states: dict[int, _StateProgress] = dataclasses.field(default_factory=dict)
    log: list[Measurement] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Installment:
    """One :class:`MeasureRequest` being drawn: its state's progress, the chunks it may still
    draw, and what it drew so far."""

    request: MeasureRequest
    state: _StateProgress
    budget: int
    successes: int = 0
    samples: int = 0
    prompt: Any = None


def open_measured_file(
    out: PathLike, policy: "Policy", make_header: Callable[[dict[str, Any]], FileHeader],
    load: Callable[[Path], Any], record_json: Callable[[Any], Any], settings: ProbeSettings, *, owner: str,
) -> tuple[PrefixProbe, dict[str, Any]]:
    """The probe a run measures with and the run's file ``out``, created or resumed.

    The probe is ``PrefixProbe(policy, **settings)`` (``settings`` checked first: an unknown
    keyword is a :class:`TypeError` naming ``owner``); the file's header is
    ``make_header(probe.header_fields())``. Returns the probe and the finished records of an
    existing file (see :func:`pope_env.io.open_for_resume`).
    """
    check_keywords(owner, settings, ProbeSettings)
    probe = PrefixProbe(policy, **settings)
    return probe, open_for_resume(Path(out), make_header(probe.header_fields()), load, record_json)
