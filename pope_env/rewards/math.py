"""Verifiable math reward: extract the final answer, check it against the gold answer.

Reward (unitless): ``1.0`` if the completion's final answer is mathematically equal to the
gold answer according to math-verify, else ``0.0``. Every score is a :class:`MathScore`
that also says whether the answer was in the requested format and whether verification
ran out of time.

How a completion is scored (:meth:`MathVerifier.score_batch`):

1. **Guard** (in the calling process): a non-string, a string longer than ``max_chars``
   (default 2,000,000 characters) or one that is not valid unicode (lone surrogates) scores
   ``0`` with ``format_ok=False`` and is never sent to a worker.
2. **Extract** the answer with :func:`extract_answer` (linear-time scans). An answer
   longer than ``max_answer_chars`` (default 5,000) scores ``0`` unverified.
3. **Fast paths**: if the extracted answer equals the gold answer after a light
   normalisation (whitespace, ``\\left``/``\\right``, thin spaces, ``\\dfrac``), it is
   correct without calling math-verify; if both are plain rational numbers (integers,
   ``1,000``, ``\\frac{a}{b}``, ``a/b``: see :mod:`pope_env.rewards.rational`), their values
   are compared exactly, giving the verdict math-verify would give.
4. **Verify** otherwise in a worker process: ``verify(parse(\\boxed{gold}),
   parse(\\boxed{answer}))`` with math-verify's own SIGALRM timeouts disabled. The gold is
   parsed once per distinct gold answer (cached in each worker, and items go preferably
   to a worker that already parsed their gold). Items travel in small chunks; each item
   has its own wall-clock limit ``timeout_s``, counted from when the worker starts it. A
   worker that exceeds it is killed and replaced; that item scores ``timed_out=True``,
   reward ``0``, and the rest of its chunk goes to other workers. A worker that crashes
   is replaced the same way (its item scores ``0``, ``timed_out=False``). Verdicts are
   cached per ``(gold, answer)``, and duplicates within a batch are verified once, so a
   group of rollouts with the same answer costs one verification.

Workers are separate Python processes started with :mod:`subprocess` (not
:mod:`multiprocessing`), so the verifier works in scripts without a ``__main__`` guard, in
notebooks and inside daemonic processes such as Gymnasium's async vector-env workers.
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import json
import os
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pope_env.errors import ConfigError, DependencyError
from pope_env.problem import Problem
from pope_env.rewards.boxed import last_boxed
from pope_env.rewards.rational import rational_verdict

__all__ = [
    "MathScore",
    "MathVerifier",
    "extract_answer",
    "default_verifier",
    "score_completion",
    "math_reward",
]

DEFAULT_MAX_CHARS = 2_000_000
DEFAULT_MAX_ANSWER_CHARS = 5_000
_WORKER_SCRIPT = Path(__file__).with_name("_verify_worker.py")
# Run the worker file without putting its folder on sys.path: this folder holds ``math.py``
# (this module), which would shadow the standard library's ``math`` inside math-verify.
_WORKER_BOOTSTRAP = (
    "import sys; del sys.path[0]; import runpy; "
    f"runpy.run_path({str(_WORKER_SCRIPT)!r}, run_name='__main__')"
)
_WORKER_START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class MathScore:
    """The verdict on one completion.

    Attributes:
        reward: ``1.0`` if ``correct`` else ``0.0``.
        correct: The extracted answer equals the gold answer (exact match or math-verify).
        format_ok: The answer came from a ``\\boxed{}``/``\\fbox{}`` (the format pope-env's
            prompts ask for). ``False`` when a fallback found it, when no answer was found,
            or when the completion was rejected (not a string, too long, invalid unicode).
        timed_out: Verification exceeded the wall-clock limit (the worker was killed).
        extracted: The extracted answer text, or ``None``.
    """

    reward: float
    correct: bool
    format_ok: bool
    timed_out: bool
    extracted: str | None


# --------------------------------------------------------------------------- extraction
# (in pope_env.rewards.answers; the names stay importable from here)
from pope_env.rewards.answers import _is_valid_unicode, extract_answer, extract_with_format  # noqa: E402,F401
from pope_env.rewards.answers import normalise as _normalise  # noqa: E402,F401

# --------------------------------------------------------------------------- worker pool


_CHUNK_ITEMS = 8  # items sent to a worker at once (fewer wake-ups on a busy machine)
_CHUNK_BYTES = 48 * 1024  # below the 64 KiB pipe buffer: a write never blocks on a stuck worker


class _Worker:
    """One verification process, its line-buffered stdout and the items it holds.

    A worker gets a chunk of items and verifies them in order, reporting each verdict as
    it goes. The item in progress is the first of ``tasks``; it started when the previous
    verdict (or the chunk) arrived, so its wall-clock deadline is ``progress + timeout``.
    """

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-c", _WORKER_BOOTSTRAP],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
            # Own session: Ctrl-C in the terminal interrupts the parent only (which then
            # closes the pool) instead of killing workers mid-item. The worker exits by
            # itself when the parent dies (see _verify_worker.py).
            start_new_session=True,
        )
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.buffer = b""
        self.started = time.monotonic()
        self.ready = False
        self.tasks: collections.deque[int] = collections.deque()  # item indices, in order
        self.progress = 0.0  # when the item in progress started
        self.golds: set[str] = set()  # gold answers this worker has parsed (and cached)

    def fileno(self) -> int:
        return self.proc.stdout.fileno()

    def send(self, chunk: list[tuple[int, str, str]]) -> None:
        """Queue ``(index, gold, answer)`` items; call only when the worker is idle."""
        data = "".join(json.dumps({"id": i, "gold": g, "answer": a}) + "\n" for i, g, a in chunk)
        self.proc.stdin.write(data.encode("utf-8"))
        self.proc.stdin.flush()
        self.tasks.extend(i for i, _, _ in chunk)
        self.golds.update(g for _, g, _ in chunk)
        self.progress = time.monotonic()

    def read_messages(self) -> tuple[list[dict[str, Any]], bool]:
        """Complete messages available now, and whether the worker's stdout closed."""
        eof = False
        while True:
            try:
                chunk = os.read(self.fileno(), 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                eof = True
                break
            self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()], eof

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self.proc.wait()


class MathVerifier:
    """Scores completions against gold answers on all cores with a hard time limit.

    Args:
        timeout_s: Wall-clock limit in seconds for verifying one item (parse + verify).
            A worker that exceeds it is killed and replaced; the item scores
            ``timed_out=True`` and reward ``0``. Must be > 0.
        workers: Number of worker processes (default: the CPUs this process may use).
        max_chars: Longer completions score 0 with ``format_ok=False`` without work.
        max_answer_chars: A longer extracted answer is wrong without verification (no
            real answer is that long; parsing one could only waste the time limit).
        cache_size: Number of ``(gold, answer)`` verdicts remembered.

    Workers start on first use (about a second: importing sympy). Use as a context
    manager or call :meth:`close`; the shared :func:`default_verifier` is closed at exit.
    Safe to share between threads; after ``fork`` the child starts its own workers.
    """

    def __init__(
        self,
        timeout_s: float = 5.0,
        workers: int | None = None,
        *,
        max_chars: int = DEFAULT_MAX_CHARS,
        max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS,
        cache_size: int = 65536,
    ) -> None:
        if not timeout_s > 0:
            raise ConfigError(f"timeout_s must be > 0 seconds, got {timeout_s!r}")
        if workers is None:
            workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        self.timeout_s = float(timeout_s)
        self.n_workers = int(workers)
        self.max_chars = int(max_chars)
        self.max_answer_chars = int(max_answer_chars)
        self._cache: collections.OrderedDict[tuple[str, str], bool] = collections.OrderedDict()
        self._cache_size = cache_size
        self._workers: list[_Worker] = []
        self._pid = os.getpid()
        self._lock = threading.Lock()  # guards the worker pool
        self._cache_lock = threading.Lock()
        #: Counters since creation: items scored, exact-match hits, rational-match hits,
        #: cache hits, timeouts, worker crashes, workers started.
        self.stats = collections.Counter()

    # ---- public API ------------------------------------------------------------------

    def score(self, completion: Any, gold: str) -> MathScore:
        """Score one completion against the gold answer (see the module docstring)."""
        return self.score_batch([completion], [gold])[0]

    def score_batch(self, completions: Sequence[Any], golds: Sequence[str]) -> list[MathScore]:
        """Score ``completions[i]`` against ``golds[i]`` for all ``i``, in parallel.

        Never raises for a bad completion (it scores 0, ``format_ok=False``) and never
        hangs: each verification has a hard wall-clock limit of ``timeout_s``.

        Raises:
            ConfigError: the lengths differ or a gold answer is not a non-empty string.
        """
        if len(completions) != len(golds):
            raise ConfigError(
                f"score_batch got {len(completions)} completions but {len(golds)} gold answers"
            )
        for i, gold in enumerate(golds):
            if not isinstance(gold, str) or not gold.strip():
                raise ConfigError(f"gold answer {i} must be a non-empty string, got {gold!r}")
        results: list[MathScore | None] = [None] * len(completions)
        # (gold, answer) -> [(index, format_ok)]: each distinct pair is verified once.
        todo: dict[tuple[str, str], list[tuple[int, bool]]] = {}
        for i, (completion, gold) in enumerate(zip(completions, golds)):
            self.stats["items"] += 1
            if (
                not isinstance(completion, str)
                or len(completion) > self.max_chars
                or not _is_valid_unicode(completion)
            ):
                results[i] = MathScore(0.0, False, False, False, None)
                continue
            answer, format_ok = extract_with_format(completion)
            if answer is None:
                results[i] = MathScore(0.0, False, False, False, None)
                continue
            if len(answer) > self.max_answer_chars:
                self.stats["too_long"] += 1
                results[i] = MathScore(0.0, False, format_ok, False, answer)
                continue
            norm_answer, norm_gold = _normalise(answer), _normalise(gold)
            if norm_answer == norm_gold:
                self.stats["exact_match"] += 1
                results[i] = MathScore(1.0, True, format_ok, False, answer)
                continue
            verdict = rational_verdict(gold, answer)
            if verdict is not None:
                self.stats["rational_match"] += 1  # two plain rationals: compare values
                results[i] = MathScore(float(verdict), verdict, format_ok, False, answer)
                continue
            with self._cache_lock:
                cached = self._cache.get((gold, answer))
            if cached is not None:
                self.stats["cache_hits"] += 1
                results[i] = MathScore(float(cached), cached, format_ok, False, answer)
                continue
            if (gold, answer) in todo:
                self.stats["cache_hits"] += 1
            todo.setdefault((gold, answer), []).append((i, format_ok))
        if todo:
            keys = list(todo)
            verdicts = self._verify_all(dict(enumerate(keys)))
            for k, key in enumerate(keys):
                correct, timed_out = verdicts[k]
                if not timed_out:
                    self._remember(key, correct)
                for i, format_ok in todo[key]:
                    results[i] = MathScore(float(correct), correct, format_ok, timed_out, key[1])
        return results  # type: ignore[return-value]

    def warm_up(self) -> None:
        """Start the workers and wait until all are ready (otherwise the first
        :meth:`score_batch` starts them, about a second of sympy imports)."""
        with self._lock:
            self._ensure_workers()
            with selectors.DefaultSelector() as sel:
                batch = _Batch(sel, {})
                for w in self._workers:
                    sel.register(w, selectors.EVENT_READ)
                while not all(w.ready for w in self._workers):
                    for key, _ in sel.select(timeout=1.0):
                        self._on_readable(batch, key.fileobj)
                    for w in self._workers:
                        self._check_started(w)

    def close(self) -> None:
        """Stop the worker processes (a later call starts new ones)."""
        with self._lock:
            self._stop_workers()

    def __enter__(self) -> "MathVerifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # best effort; close() is the supported way
        try:
            self._stop_workers()
        except Exception:
            pass

    # ---- internals -------------------------------------------------------------------

    def _remember(self, key: tuple[str, str], correct: bool) -> None:
        with self._cache_lock:
            self._cache[key] = correct
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _stop_workers(self) -> None:
        if os.getpid() == self._pid:
            for w in self._workers:
                w.kill()
        self._workers = []

    def _start_worker(self) -> _Worker:
        self.stats["workers_started"] += 1
        return _Worker()

    def _ensure_workers(self) -> None:
        if os.getpid() != self._pid:  # forked: the parent's workers are not ours
            self._workers, self._pid = [], os.getpid()
        self._workers = [w for w in self._workers if w.proc.poll() is None]
        while len(self._workers) < self.n_workers:
            self._workers.append(self._start_worker())

    def _verify_all(self, items: Mapping[int, tuple[str, str]]) -> dict[int, tuple[bool, bool]]:
        """``{index: (correct, timed_out)}`` for every item, using the worker pool."""
        with self._lock:
            self._ensure_workers()
            with selectors.DefaultSelector() as sel:
                batch = _Batch(sel, items)
                for w in self._workers:
                    sel.register(w, selectors.EVENT_READ)
                while len(batch.done) < len(items):
                    for w in self._workers:
                        if w.ready and not w.tasks and batch.pending:
                            self._dispatch(batch, w)
                    now = time.monotonic()
                    deadlines = [w.progress + self.timeout_s for w in self._workers if w.tasks]
                    wait = max(0.0, min(deadlines) - now) if deadlines else 1.0
                    for key, _ in sel.select(timeout=wait):
                        self._on_readable(batch, key.fileobj)
                    now = time.monotonic()
                    for w in list(self._workers):
                        if w.tasks and now >= w.progress + self.timeout_s:
                            self.stats["timeouts"] += 1
                            batch.done[w.tasks.popleft()] = (False, True)
                            self._replace(batch, w, crashed=False)
                        else:
                            self._check_started(w)
            return batch.done

    def _check_started(self, w: _Worker) -> None:
        """Stop the pool with :class:`DependencyError` if ``w`` is still not ready after
        ``_WORKER_START_TIMEOUT_S``."""
        if not w.ready and time.monotonic() - w.started > _WORKER_START_TIMEOUT_S:
            self._stop_workers()
            raise DependencyError(f"math-verify worker did not start within {_WORKER_START_TIMEOUT_S:.0f} s")

    def _dispatch(self, batch: "_Batch", w: _Worker) -> None:
        """Send the idle worker ``w`` a chunk of pending items (its own golds first)."""
        pending, items = batch.pending, batch.items
        n_left = sum(len(q) for q in pending.values()) if len(pending) < 64 else _CHUNK_ITEMS * self.n_workers
        size = max(1, min(_CHUNK_ITEMS, n_left // self.n_workers))  # keep the tail balanced
        chunk: list[tuple[int, str, str]] = []
        n_bytes = 0
        while pending and len(chunk) < size:
            gold = next((g for g in pending if g in w.golds), next(iter(pending)))
            index = pending[gold][0]
            cost = len(gold) + len(items[index][1]) + 64
            if chunk and n_bytes + cost > _CHUNK_BYTES:
                break
            pending[gold].popleft()
            if not pending[gold]:
                del pending[gold]
            chunk.append((index, gold, items[index][1]))
            w.golds.add(gold)
            n_bytes += cost
        try:
            w.send(chunk)
        except (BrokenPipeError, OSError):
            w.tasks.clear()
            batch.requeue([i for i, _, _ in chunk])
            self._replace(batch, w, crashed=False)

    def _on_readable(self, batch: "_Batch", w: _Worker) -> None:
        messages, eof = w.read_messages()
        for msg in messages:
            if msg.get("ready"):
                w.ready = True
            elif "id" in msg:
                if w.tasks and msg["id"] == w.tasks[0]:
                    batch.done[w.tasks.popleft()] = (bool(msg["correct"]), False)
                    w.progress = time.monotonic()
            elif "error" in msg:
                self._stop_workers()
                raise DependencyError(f"math-verify worker failed to start: {msg['error']}")
        if eof:
            self._replace(batch, w, crashed=True)

    def _replace(self, batch: "_Batch", w: _Worker, *, crashed: bool) -> None:
        """Kill ``w`` and start a fresh worker in its place. A crash scores the item in
        progress 0; the items queued behind it go back to ``pending``."""
        if crashed:
            self.stats["crashes"] += 1
            if w.tasks:
                batch.done[w.tasks.popleft()] = (False, False)
            if not w.ready:
                self._stop_workers()
                raise DependencyError(
                    f"math-verify worker exited during start-up (run `{sys.executable} "
                    f"{_WORKER_SCRIPT}` to see why)"
                )
        batch.requeue(list(w.tasks))
        w.tasks.clear()
        batch.sel.unregister(w)
        w.kill()
        fresh = self._start_worker()
        self._workers[self._workers.index(w)] = fresh
        batch.sel.register(fresh, selectors.EVENT_READ)


@dataclasses.dataclass
class _Batch:
    """One :meth:`MathVerifier._verify_all` call's state: the workers' selector, the items
    (``index -> (gold, completion)``), the items not yet sent, grouped by gold answer (a free
    worker preferably takes items whose gold it has already parsed, so each gold is parsed
    by few workers), and the verdicts so far (``index -> (correct, timed_out)``)."""

    sel: selectors.BaseSelector
    items: Mapping[int, tuple[str, str]]
    pending: dict[str, collections.deque[int]] = dataclasses.field(default_factory=dict)
    done: dict[int, tuple[bool, bool]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for index, (gold, _) in self.items.items():
            self.pending.setdefault(gold, collections.deque()).append(index)

    def requeue(self, indices: list[int]) -> None:
        """Put items back at the front of their gold's queue, in their order."""
        for index in reversed(indices):
            self.pending.setdefault(self.items[index][0], collections.deque()).appendleft(index)


# --------------------------------------------------------------------------- shared API

_default: MathVerifier | None = None
_default_lock = threading.Lock()


def default_verifier() -> MathVerifier:
    """The process-wide shared :class:`MathVerifier` (5 s limit, all CPUs), created on
    first use and closed at interpreter exit."""
    global _default
    with _default_lock:
        if _default is None:
            _default = MathVerifier()
            atexit.register(_default.close)
        return _default


def score_completion(completion: Any, problem: Problem) -> MathScore:
    """Score a completion against ``problem.answer`` with :func:`default_verifier`."""
    return default_verifier().score(completion, problem.answer)


def _completion_text(completion: Any) -> Any:
    """TRL passes strings, or for conversational data a list of messages: take the text of
    the last assistant message. Anything else is returned as is (and scores 0)."""
    if isinstance(completion, list) and completion and all(isinstance(m, Mapping) for m in completion):
        for message in reversed(completion):
            if message.get("role", "assistant") == "assistant":
                content = message.get("content")
                if isinstance(content, list):  # multimodal content parts
                    content = "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
                return content
    return completion


def math_reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """TRL reward function: ``1.0`` per correct completion, else ``0.0``.

    Gold answers come from the dataset column ``answer`` (preferred) or ``solution`` (its
    last ``\\boxed{}``), which TRL passes as keyword arguments, one per completion.
    Completions may be strings or chat-message lists. Uses :func:`default_verifier`::

        trainer = GRPOTrainer(model=..., reward_funcs=math_reward, train_dataset=ds)

    Raises:
        ConfigError: neither ``answer`` nor ``solution`` was passed, or a solution has no
            ``\\boxed{}`` answer.
    """
    if kwargs.get("answer") is not None:
        golds = [str(a) for a in kwargs["answer"]]
    elif kwargs.get("solution") is not None:
        golds = []
        for i, solution in enumerate(kwargs["solution"]):
            boxed = last_boxed(solution) if isinstance(solution, str) else None
            if not boxed:
                raise ConfigError(f"solution {i} has no \\boxed{{}} answer; pass an `answer` column")
            golds.append(boxed)
    else:
        raise ConfigError(
            "math_reward needs gold answers: give the dataset an `answer` column "
            "(or a `solution` column with a \\boxed{} answer)"
        )
    texts = [_completion_text(c) for c in completions]
    return [s.reward for s in default_verifier().score_batch(texts, golds)]
