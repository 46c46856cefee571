"""Cross-problem batching for the hard split and the i* search.

A policy is often fast only in large batches (a char model on a CPU, vLLM on a GPU), while
a search strategy measures one (problem, state) at a time. :func:`run_in_lockstep` runs the
per-problem work of up to ``batch_size`` problems at once, each in a worker thread that sees
the shared :class:`~pope_env.probe.PrefixProbe` through a :class:`ProbeView`: reads
go straight to the probe, and ``measure`` queues its request and blocks. The calling thread
waits until every worker in flight is blocked or finished, then draws one chunk of every
queued request with one :meth:`PrefixProbe.draw_round` (one ``generate_seeded`` call per
chunk size), answers the requests that are complete, and repeats; a finished problem's
place is taken by the next one in the list. Only the calling thread samples, and only
while no worker runs, so workers need no locks around the probe.

Because every chunk is seeded by (root seed, problem id, state, chunk index) only, each
problem's measurements, verdicts and logs are those of running it alone; results are handed
back in the order of the input list.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pope_env.errors import ConfigError
from pope_env.problem import Problem

if TYPE_CHECKING:
    from pope_env.guidance_file import Measurement
    from pope_env.probe import Installment, MeasureRequest, PrefixProbe

R = TypeVar("R")

_RUNNING, _WAITING, _DONE = "running", "waiting", "done"


class _Cancelled(BaseException):
    """Raised inside a worker whose run was abandoned (another worker or the caller failed)."""


class _Worker(Generic[R]):
    """One problem in flight: its thread, its queued request and its answer or result."""

    def __init__(self, index: int, problem: Problem) -> None:
        self.index, self.problem = index, problem
        self.status = _RUNNING
        self.request: MeasureRequest | None = None
        self.answer: Measurement | None = None
        self.cancelled = False
        self.result: R | None = None
        self.error: BaseException | None = None


class ProbeView:
    """A :class:`~pope_env.probe.PrefixProbe` as one in-flight problem's strategy sees
    it: ``measure`` waits for the next lockstep round; every other attribute is the probe's
    (``log`` and ``rollouts`` are this problem's)."""

    def __init__(self, probe: "PrefixProbe", worker: _Worker[Any], cond: threading.Condition) -> None:
        self._probe, self._worker, self._cond = probe, worker, cond

    def __getattr__(self, name: str) -> Any:
        return getattr(self._probe, name)

    @property
    def log(self) -> list["Measurement"]:
        return self._probe.log_of(self._worker.problem)

    @property
    def rollouts(self) -> int:
        return sum(m.samples for m in self.log)

    def measure(self, problem: Problem, prefix_len: int, *, early_stop: bool,
                max_chunks: int | None = None) -> "Measurement":
        """:meth:`PrefixProbe.measure`, drawn in the caller's next lockstep rounds."""
        from pope_env.probe import MeasureRequest

        if problem.id != self._worker.problem.id:
            raise ConfigError(f"a strategy searching {self._worker.problem.id!r} measured {problem.id!r}; "
                              "measure only the problem being searched")
        request = MeasureRequest(problem, prefix_len, early_stop, max_chunks)
        w = self._worker
        with self._cond:
            if w.cancelled:
                raise _Cancelled
            w.request, w.answer, w.status = request, None, _WAITING
            self._cond.notify_all()
            self._cond.wait_for(lambda: w.status != _WAITING)
            if w.cancelled:
                raise _Cancelled
            answer = w.answer
        assert answer is not None
        return answer


def check_batch_size(batch_size: object) -> int:
    """``batch_size`` as a positive int.

    Raises:
        ConfigError: not an integer >= 1.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1 (problems measured together), got {batch_size!r}")
    return batch_size


def run_in_lockstep(
    problems: Sequence[Problem],
    probe: "PrefixProbe",
    work: Callable[[Problem, Any], R],
    *,
    batch_size: int,
    on_result: Callable[[Problem, R], None],
) -> None:
    """Run ``work(problem, probe_view)`` for every problem, ``batch_size`` at a time, their
    measurements batched across problems; ``on_result`` gets each result in list order.

    Raises:
        ConfigError: a bad ``batch_size``, or two problems with the same id.
        Exception: whatever a worker raised (re-raised here; the other workers are stopped).
    """
    check_batch_size(batch_size)
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        dup = next(pid for pid in ids if ids.count(pid) > 1)
        raise ConfigError(f"problem id {dup!r} appears twice; batched measuring needs unique problem ids "
                          "(deduplicate the problems, or use batch_size=1)")
    cond = threading.Condition()
    in_flight: dict[int, _Worker[R]] = {}
    installments: dict[int, Installment] = {}
    finished: dict[int, R] = {}
    next_start = next_emit = 0

    def launch(index: int) -> None:
        w: _Worker[R] = _Worker(index, problems[index])
        view = ProbeView(probe, w, cond)

        def body() -> None:
            try:
                w.result = work(w.problem, view)
            except BaseException as exc:  # noqa: BLE001  (handed to the caller)
                w.error = exc
            finally:
                with cond:
                    w.status = _DONE
                    cond.notify_all()

        in_flight[index] = w
        threading.Thread(target=body, name=f"pope-lockstep-{w.problem.id}", daemon=True).start()

    try:
        while next_emit < len(problems):
            while next_start < len(problems) and len(in_flight) < batch_size:
                launch(next_start)
                next_start += 1
            with cond:
                cond.wait_for(lambda: all(w.status != _RUNNING for w in in_flight.values()))
            done = [w for w in in_flight.values() if w.status == _DONE]
            for w in done:
                del in_flight[w.index]
                if w.error is not None and not isinstance(w.error, _Cancelled):
                    raise w.error
                finished[w.index] = w.result  # type: ignore[assignment]
            while next_emit in finished:
                on_result(problems[next_emit], finished.pop(next_emit))
                next_emit += 1
            if done:
                continue  # refill the window before drawing, so the round is as large as it can be
            for index, w in in_flight.items():
                if index not in installments:
                    assert w.request is not None
                    installments[index] = probe.start(w.request)
            wanting = [x for x in installments.values() if probe.wants_chunk(x)]
            if wanting:
                probe.draw_round(wanting)
            with cond:
                for index in [i for i, x in installments.items() if not probe.wants_chunk(x)]:
                    w = in_flight[index]
                    w.answer = probe.finish(installments.pop(index))
                    w.request, w.status = None, _RUNNING
                cond.notify_all()
    finally:
        with cond:
            for w in in_flight.values():
                w.cancelled = True
                if w.status == _WAITING:
                    w.status = _RUNNING
            cond.notify_all()


__all__ = ["ProbeView", "check_batch_size", "run_in_lockstep"]
