"""A real tiny policy for tests: a left-to-right arithmetic solver that makes mistakes.

This is not a mock of an LLM; it is a small program that genuinely solves the synthetic
chains of :mod:`pope_env.datasets.arithmetic` through the same
:class:`~pope_env.agents.policy.Policy` contract an LLM policy implements. It reads the
prompt the guidance builder made (chat messages or plain text), continues from the last
line of the partial solution when there is one (else from the question), and writes one
step per operation in the dataset's own format, ending with ``\\boxed{value}``. Each
operation is wrong with probability ``error_rate`` (the value is off by 1..3), so a longer
oracle prefix -- fewer operations left -- succeeds more often, in expectation only: exactly
the setting the prefix search is built for. Sampling is reproducible for a
``SamplingParams.seed``.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence

from pope_env.agents.policy import Generation, Prompt, SamplingParams
from pope_env.datasets.arithmetic import QUESTION_PREFIX, apply, render

_TERM = re.compile(r"([+\-*])(\d+)")


def _prompt_text(prompt: Prompt) -> str:
    return prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)


def _parse(expression: str) -> tuple[int, list[tuple[str, int]]]:
    head = re.match(r"\d+", expression)
    if head is None:
        raise ValueError(f"not an arithmetic chain: {expression!r}")
    return int(head.group()), [(op, int(x)) for op, x in _TERM.findall(expression[head.end():])]


class ArithmeticSolverPolicy:
    """Solves ``Compute left to right: ...`` prompts, wrong per operation w.p. ``error_rate``.

    With ``span`` set it is a solver with a short reach, like a base model that only learned
    short chains: the first ``span`` operations it writes are wrong w.p. ``error_rate``, every
    later one w.p. ``beyond_error_rate`` and always too high (so those slips never cancel). Its success then jumps at the prefix that leaves
    ``span`` operations, instead of rising slowly with every step given.

    Attributes:
        name: Recorded as the model name in guidance files.
        calls: ``generate`` calls so far; ``samples``: completions produced so far.
    """

    def __init__(self, error_rate: float = 0.3, prefix_label: str = "Partial solution:", *,
                 span: int | None = None, beyond_error_rate: float = 0.97) -> None:
        self.name = f"arith-solver-err{error_rate}" + (f"-span{span}-{beyond_error_rate}" if span is not None else "")
        self.error_rate = error_rate
        self.span, self.beyond_error_rate = span, beyond_error_rate
        self.prefix_label = prefix_label
        self.calls = 0
        self.samples = 0

    def _state(self, text: str) -> str:
        if self.prefix_label in text:
            partial = text.split(self.prefix_label, 1)[1]
            lines = [ln.strip() for ln in partial.strip().splitlines() if ln.strip()]
            if lines:
                return lines[-1]
        question = text.split(QUESTION_PREFIX, 1)[1]
        return question.strip().splitlines()[0].strip()

    def solve(self, expression: str, rng: random.Random) -> str:
        value, ops = _parse(expression)
        steps = []
        for index, (op, x) in enumerate(ops):
            value = apply(value, op, x)
            if self.span is not None and index >= self.span:
                if rng.random() < self.beyond_error_rate:
                    value += rng.choice((1, 2, 3))  # one-sided: slips beyond the span never cancel
            elif rng.random() < self.error_rate:
                value += rng.choice((-3, -2, -1, 1, 2, 3))
            rest = ops[index + 1:]
            steps.append(render(value, rest) if rest else f"\\boxed{{{value}}}")
        return "\n".join(steps) if steps else f"\\boxed{{{value}}}"

    def generate(
        self, prompts: Sequence[Prompt], *, n: int = 1, sampling: SamplingParams = SamplingParams()
    ) -> list[list[Generation]]:
        self.calls += 1
        out = []
        for prompt in prompts:
            text = _prompt_text(prompt)
            key = hashlib.sha256(text.encode()).hexdigest()[:16]
            rng = random.Random(f"{sampling.seed}:{key}") if sampling.seed is not None else random.Random()
            state = self._state(text)
            out.append([Generation(text=self.solve(state, rng)) for _ in range(n)])
            self.samples += n
        return out


def math_verify_scorer():
    """Real math-verify verdicts against ``problem.answer`` (what the math reward uses)."""
    from math_verify import parse, verify

    gold_cache: dict[str, object] = {}

    def score(completions, problem):
        gold = gold_cache.setdefault(problem.answer, parse(f"\\boxed{{{problem.answer}}}", parsing_timeout=None))
        return [bool(verify(gold, parse(c, parsing_timeout=None), timeout_seconds=None)) for c in completions]

    return score
