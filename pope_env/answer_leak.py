"""Find the oracle steps that already state the gold answer, so guidance never shows them.

POPE's guidance ``z[:i]`` must not reveal the answer. The step that boxes it is easy to
spot (:func:`pope_env.solution_steps.max_prefix_len`), but a worked solution often *states* the
answer a step or two earlier: ``"... and $x^2=810.$"`` comes just before ``"Area of the
square is $\\boxed{810}$."``. This module finds such steps.

A step *states the answer* when one of its **stated results** equals the gold answer.
The stated results of a step (:func:`stated_results`) are:

* in every math span (``$..$``, ``$$..$$``, ``\\(..\\)``, ``\\[..\\]``,
  ``\\begin{env}..\\end{env}``), split into clauses at top-level ``,``/``;``/``\\\\``/
  ``\\quad``/``\\text{..}`` (an ``&`` before a relation dropped; in tables and matrices a cell by
  itself states nothing): the right-hand side of each clause's last top-level
  relation when that relation is ``=``, ``\\equiv`` (``\\pmod{..}`` dropped) or a
  non-strict bound ``\\le``/``\\ge`` (``"so $P \\ge 16.$"`` states the minimum that a
  min/max problem asks for); a clause whose last relation is another one (``<``,
  ``\\approx``, ``\\ne``, ...) states nothing;
* a math span (clause) without any relation, taken whole: a math span that verifies equal to
  the answer (``"so the area is $2\\cdot 405$"``) states it;
* in the plain text around the spans: the token right after each ``=`` (GSM8K's
  ``"48+24 = 72 clips"``).

A stated result that is also a stated result of the *question* (``$3+4$`` in a solution of
"What is $3+4$?") reveals nothing and is skipped. A stated result more than twice as long
as the answer (plus two characters; units, ``\\%`` and degree signs not counted) is a step
of the derivation, not the answer stated, and is skipped too: in a problem that asks to
simplify an expression every line of the derivation equals the answer.

Equality (:func:`scan_problem`) is decided as the math reward decides it, cheapest
first: the reward's light normalisation, exact rational comparison
(:mod:`pope_env.rewards.rational`), then math-verify in the reward's worker processes
(:class:`pope_env.rewards.math.MathVerifier`, which disables math-verify's own SIGALRM
timeouts and enforces its wall-clock limit per item, so it is safe in threads). Cheap
rules decide "not equal" without math-verify where it could not say "equal" (or only by a
reading nobody means): a lone variable (``x``, ``a_n``, ``\\mathbf{v}``); a candidate with
unbalanced braces or digits separated by spaces (not one expression); a free variable (a
letter outside ``\\commands`` and ``\\text{}``, or a Greek letter but ``\\pi``) on one
side only, unless the gold answer is an equation or text; two numbers whose values differ
by more than a relative 1e-6 by a small floating-point evaluator (digits, ``+ - * / ^``,
``\\frac``, ``\\sqrt``, ``\\binom``, ``\\pi``, degrees); a tuple or list against a
number, or the reverse; a number against digit-free text. Everything else, equal values
included, goes to math-verify. A candidate whose verification runs past the reward's time
limit counts as *not* stating the answer (it is reported in :class:`LeakScan`).

Results are cached per ``(question, answer, steps)``, so
:func:`pope_env.guidance.prefix_cap` costs a dict look-up after the first call for a
problem; :func:`scan_problems` fills the cache for many problems with one batched
verification (call it once on a dataset before a loop that renders prompts).
"""

from __future__ import annotations

import dataclasses
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable

from pope_env.problem import Problem
from pope_env.rewards.rational import rational_verdict
from pope_env.solution_steps import max_prefix_len, protected_spans

__all__ = ["LeakScan", "stated_results", "scan_problem", "scan_problems", "clear_cache"]

_MAX_CANDIDATE_CHARS = 400  # a "result" longer than this is a derivation, not a stated value

# Relations that may end a clause; only the equality-like ones state a result.
_RELATION = re.compile(
    r"\\(?:equiv|approx|simeq|sim|cong|propto|neq|ne|leq|geq|leqslant|geqslant|le|ge|lt|gt|"
    r"ll|gg|subseteq|subset|supseteq|supset|in|notin|Rightarrow|Leftarrow|Leftrightarrow|"
    r"implies|iff|to|rightarrow|mapsto)(?![A-Za-z])"
    r"|<=|>=|!=|:=|=|<|>"
)
_EQUALITY = ("=", ":=", "\\equiv")
# A non-strict bound states the extremum a min/max problem asks for ("so $P \\ge 16.$").
_BOUND = ("\\le", "\\leq", "\\ge", "\\geq", "\\leqslant", "\\geqslant", "<=", ">=")
_MOD = re.compile(r"\\(?:pmod|bmod|mod)\b.*$|\(\s*\\?mod\b.*$", re.DOTALL)
# Clause separators at top level of a math span.
_SEPARATOR = re.compile(
    r"\\\\|;|&|,(?=\s|\\[,;: !]|\\quad|\\qquad|\\text)|\\qquad|\\quad"
    r"|\\(?:text|mbox|textrm|textnormal|mathrm)\s*\{[^{}]*[A-Za-z]{2}[^{}]*\}"
    r"|\\(?:text|mbox)\s*\{\s*(?:and|or|if|so|then)\s*\}"
)
_TRIM = re.compile(r"^(?:\s|\\[,;:! ]|&)+|(?:\s|\\[,;:! ]|[.,;:]|\\right\.|\\\\)+$")
_GREEK = re.compile(
    r"\\(?:alpha|beta|gamma|delta|epsilon|varepsilon|zeta|eta|theta|vartheta|iota|kappa|"
    r"lambda|mu|nu|xi|rho|sigma|tau|upsilon|phi|varphi|chi|psi|omega|Gamma|Delta|Theta|"
    r"Lambda|Xi|Sigma|Phi|Psi|Omega)(?![A-Za-z])"
)
_THOUSANDS = re.compile(r"\d,(?:\\!|\{\})?\d{3}(?!\d)")
_EQUATION_OR_TEXT = re.compile(r"=|\\(?:text|mbox|mathrm|textrm)\s*\{")
_UNITS = re.compile(
    r"\^\s*\{?\s*\\circ\s*\}?|\\%|%|\\\$|\\(?:text|mbox|mathrm|textrm)\s*\{\s*[A-Za-z ]*\}"
)
_BARE_SYMBOL = re.compile(
    r"(?:\\mathbf\s*\{\s*[A-Za-z]\s*\}|\\?[A-Za-z]+)(?:_\{?[A-Za-z0-9 +\-]*\}?)?(?:')*"
)
_SPACED_DIGITS = re.compile(r"\d\s+\d")
_COMMAND = re.compile(r"\\[A-Za-z]+")
_TEXT_ARG = re.compile(r"\\(?:text|mbox|textrm|mathrm|operatorname)\s*\{[^{}]*\}")
_TEXT_EQUALS = re.compile(r"=\s*(?P<tok>[^\s,;:!?()\[\]{}<>]+)")
_MATH_OPEN = re.compile(r"^(?:\$\$|\$|\\\(|\\\[|\\begin\{[^{}]*\})")
_MATH_CLOSE = re.compile(r"(?:\$\$|\$|\\\)|\\\]|\\end\{[^{}]*\})$")
# Inner environment markers (``\begin{aligned}``, ``\begin{array}{cc}``) end a clause;
# an alignment tab before a relation is dropped (``a &= b`` is one equation); any other
# ``&`` separates table or matrix cells, which state no result by themselves.
_ALIGN_TAB = re.compile(r"&(?=\s*(?:=|\\equiv|<|>|\\[lg]eq?(?![A-Za-z])|\\approx))")
_INNER_ENV = re.compile(r"\\begin\{[^{}]*\}(?:\{[^{}]*\})*|\\end\{[^{}]*\}")


def _split_top_level(text: str, pattern: re.Pattern[str]) -> list[tuple[str, str | None]]:
    """``text`` cut at matches of ``pattern`` that lie outside ``{}``/``()``/``[]``:
    ``[(piece, separator_after_it or None)]``."""
    depth_at: list[int] = []
    depth = 0
    for ch in text:
        if ch in "{([":
            depth += 1
        depth_at.append(depth)
        if ch in "})]":
            depth = max(0, depth - 1)
    out: list[tuple[str, str | None]] = []
    prev = 0
    for m in pattern.finditer(text):
        if depth_at[m.start()] - (text[m.start()] in "{([") > 0:
            continue
        out.append((text[prev : m.start()], m.group()))
        prev = m.end()
    out.append((text[prev:], None))
    return out


def _clean(candidate: str) -> str:
    candidate = _TRIM.sub("", candidate.strip())
    return _TRIM.sub("", candidate).strip()


def _math_body(span: str) -> str | None:
    """The content of a math span without its delimiters; ``None`` for non-math regions
    (``\\boxed{}``, Asymptote)."""
    if span.startswith(("\\boxed", "\\fbox", "[asy]")):
        return None
    opened = _MATH_OPEN.match(span)
    closed = _MATH_CLOSE.search(span)
    if not opened or not closed or closed.start() < opened.end():
        return None
    body = _INNER_ENV.sub(r" \\\\ ", span[opened.end() : closed.start()])
    return _ALIGN_TAB.sub(" ", body)


def _clause_results(clause: str, *, bare: bool) -> list[str]:
    parts = _split_top_level(clause, _RELATION)
    if len(parts) == 1:  # no relation: the clause itself is a stated value
        if not bare:
            return []
        value = _clean(clause)
        return [value] if value else []
    relation = parts[-2][1]
    if relation not in _EQUALITY and relation not in _BOUND:
        return []
    value = parts[-1][0]
    if relation == "\\equiv":
        value = _MOD.sub("", value)
    value = _clean(value)
    return [value] if value else []


def stated_results(step: str) -> list[str]:
    """The results a step states (see the module docstring), in order, without duplicates."""
    out: list[str] = []
    prev = 0
    for start, end in protected_spans(step):
        out += [_clean(m.group("tok")) for m in _TEXT_EQUALS.finditer(step, prev, start)]
        prev = end
        body = _math_body(step[start:end])
        if body is None:
            continue
        cells = "&" in body
        for clause, _ in _split_top_level(body, _SEPARATOR):
            out += _clause_results(clause, bare=not cells)
    out += [_clean(m.group("tok")) for m in _TEXT_EQUALS.finditer(step, prev)]
    seen: set[str] = set()
    return [c for c in out if len(c) <= _MAX_CANDIDATE_CHARS and re.search(r"[0-9A-Za-z]", c)
            and not (c in seen or seen.add(c))]


def _free_letters(text: str) -> bool:
    """Whether ``text`` has a variable: a letter outside ``\\commands`` and ``\\text{...}``,
    or a Greek letter other than ``\\pi``."""
    text = _TEXT_ARG.sub(" ", text)
    return _GREEK.search(text) is not None or re.search(r"[A-Za-z]", _COMMAND.sub(" ", text)) is not None


def _balanced(text: str) -> bool:
    """Braces balance, and so do round brackets (an interval like ``[1, 2)`` may mix ``[``
    with ``)``, so square ones are not checked)."""
    depth = parens = 0
    for m in re.finditer(r"\\.|[{}()]", text):
        token = m.group()
        depth += (token == "{") - (token == "}")
        parens += (token == "(") - (token == ")")
        if depth < 0:
            return False
    return depth == 0 and parens in (0, 1, -1) and (parens == 0 or re.search(r"[\[\]]", text) is not None)


_NUM_TOKEN = re.compile(
    r"\s+|\\left|\\right|\\[,;:! ]|(?P<num>\d+(?:\.\d+)?|\.\d+)"
    r"|(?P<cmd>\\[A-Za-z]+)|(?P<op>[-+*/^(){}\[\]!])"
)
_NUM_COMMANDS = frozenset(["\\frac", "\\dfrac", "\\tfrac", "\\sqrt", "\\pi", "\\cdot", "\\times",
                           "\\div", "\\binom", "\\dbinom", "\\tbinom", "\\circ"])


def _tokens(text: str) -> list[str] | None:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        m = _NUM_TOKEN.match(text, pos)
        if m is None:
            return None
        pos = m.end()
        if m.group("num") and m.group("num").startswith(".") and out and out[-1][0].isdigit():
            return None
        if m.group("num") or m.group("op"):
            out.append(m.group())
        elif m.group("cmd"):
            if m.group("cmd") not in _NUM_COMMANDS:
                return None
            out.append(m.group("cmd"))
    return out


class _Eval:
    """A tiny evaluator of numeric LaTeX (digits, ``+ - * / ^``, ``\\cdot``, ``\\times``,
    ``\\div``, ``\\frac``, ``\\sqrt[n]{}``, ``\\pi``, brackets, implicit products): the
    float value, or ``None`` for anything else. Only used to rule out equality cheaply."""

    def __init__(self, tokens: list[str]) -> None:
        self.t, self.i = tokens, 0

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise ValueError(tok)
        self.i += 1
        return tok

    def expr(self) -> float:
        value = self.term()
        while self.peek() in ("+", "-"):
            value = value + self.term() if self.take() == "+" else value - self.term()
        return value

    def term(self) -> float:
        value = self.unary()
        while True:
            tok = self.peek()
            if tok in ("*", "/", "\\cdot", "\\times", "\\div"):
                self.take()
                rhs = self.unary()
                value = value / rhs if tok in ("/", "\\div") else value * rhs
            elif tok is not None and (tok[0].isdigit() or tok in ("(", "{", "[", "\\frac", "\\dfrac",
                                                                 "\\tfrac", "\\sqrt", "\\pi", "\\binom",
                                                                 "\\dbinom", "\\tbinom")):
                value *= self.power()  # implicit product: 2\\sqrt{3}, 3\\pi
            else:
                return value

    def unary(self) -> float:
        if self.peek() in ("-", "+"):
            return -self.unary() if self.take() == "-" else self.unary()
        return self.power()

    def power(self) -> float:
        base = self.atom()
        while self.peek() == "!":
            self.take()
            if base != int(base) or not 0 <= base <= 170:
                raise ValueError("factorial")
            base = float(math.factorial(int(base)))
        if self.peek() == "^":
            self.take()
            if self.peek() == "\\circ" or self.t[self.i : self.i + 3] == ["{", "\\circ", "}"]:
                self.i += 1 if self.peek() == "\\circ" else 3
                return base  # degrees: math-verify reads 30^\\circ as 30
            exponent = self.unary() if self.peek() in ("-", "+") else self.power()
            if abs(exponent) > 1000:
                raise ValueError("huge")
            return float(base ** exponent)
        return base

    def group(self) -> float:
        tok = self.peek()
        if tok is not None and tok[0].isdigit() and tok.isdigit():  # \\frac12: one digit each
            self.take()
            if len(tok) > 1:
                self.t[self.i : self.i] = [tok[1:]]
            return float(tok[0])
        self.take("{")
        value = self.expr()
        self.take("}")
        return value

    def atom(self) -> float:
        tok = self.take()
        if tok[0].isdigit() or tok[0] == ".":
            return float(tok)
        if tok in ("(", "{", "["):
            value = self.expr()
            self.take({"(": ")", "{": "}", "[": "]"}[tok])
            return value
        if tok in ("\\frac", "\\dfrac", "\\tfrac"):
            num = self.group()
            return num / self.group()
        if tok == "\\sqrt":
            root = 2.0
            if self.peek() == "[":
                self.take()
                root = self.expr()
                self.take("]")
            value = self.group()
            if value < 0:
                raise ValueError("sqrt of a negative")
            return value ** (1.0 / root)
        if tok in ("\\binom", "\\dbinom", "\\tbinom"):
            n, k = self.group(), self.group()
            if n != int(n) or k != int(k) or not 0 <= n <= 10_000:
                raise ValueError("binom")
            return float(math.comb(int(n), int(k)))
        if tok == "\\pi":
            return math.pi
        raise ValueError(tok)


def _numeric_value(text: str) -> float | None:
    """The value of a purely numeric LaTeX expression, or ``None`` (see :class:`_Eval`)."""
    tokens = _tokens(text)
    if not tokens or len(tokens) > 200:
        return None
    parser = _Eval(tokens)
    try:
        value = parser.expr()
    except (ValueError, ZeroDivisionError, OverflowError, TypeError):
        return None
    if parser.peek() is not None or isinstance(value, complex) or not math.isfinite(value):
        return None
    return value


def _normalise(text: str) -> str:
    from pope_env.rewards.math import _normalise as reward_normalise

    return reward_normalise(text)


def _cheap_verdict(gold: str, candidate: str) -> bool | None:
    """``True``/``False`` when decided without math-verify, else ``None``."""
    norm_candidate, norm_gold = _normalise(candidate), _normalise(gold)
    if norm_candidate == norm_gold:
        return True
    if len(_UNITS.sub("", norm_candidate)) > 2 * len(_UNITS.sub("", norm_gold)) + 2:
        return False  # a longer expression is a step of the derivation, not the answer stated
    verdict = rational_verdict(gold, candidate)
    if verdict is not None:
        return verdict
    if not _balanced(candidate) or _SPACED_DIGITS.search(candidate):
        return False  # not one expression (a table row, a broken span)
    if _free_letters(candidate) != _free_letters(gold) and not _EQUATION_OR_TEXT.search(gold):
        return False  # a variable on one side only (a gold "n = 255" or text may still match)
    if _BARE_SYMBOL.fullmatch(candidate.strip()):
        return False  # a lone variable (``x``, ``a_n``, ``\\mathbf{v}``) is not a value
    a, b = _numeric_value(_UNITS.sub("", gold)), _numeric_value(_UNITS.sub("", candidate))
    if a is not None and "," in candidate and not _THOUSANDS.search(candidate):
        return False  # a tuple, set or list against a number
    if b is not None and "," in gold and not _THOUSANDS.search(gold):
        return False  # a number against a list, tuple or interval
    if a is not None and not re.search(r"\d", candidate):
        return False  # a number against digit-free text (``\\dots``, ``\\infty``)
    if a is not None and b is not None and not math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9):
        return False  # two numbers with different values (equal ones go to math-verify)
    return None


@dataclasses.dataclass(frozen=True)
class LeakScan:
    """Where a problem's solution first states its answer.

    Attributes:
        box_cap: :func:`pope_env.solution_steps.max_prefix_len`: steps before the first boxed answer.
        stating_step: Index of the first step before ``box_cap`` with a stated result equal
            to the answer, or ``None``.
        stated: That stated result (``None`` when ``stating_step`` is ``None``).
        timed_out: Candidates whose verification ran past the time limit (counted as not
            stating the answer).
    """

    box_cap: int
    stating_step: int | None
    stated: str | None = None
    timed_out: int = 0

    @property
    def cap(self) -> int:
        """The prefix cap: the first step that boxes or states the answer, and every step
        after it, are excluded."""
        return self.box_cap if self.stating_step is None else min(self.box_cap, self.stating_step)


_CACHE_SIZE = 200_000
_cache: OrderedDict[tuple[str, str, tuple[str, ...]], LeakScan] = OrderedDict()
_lock = threading.Lock()


def _key(problem: Problem) -> tuple[str, str, tuple[str, ...]]:
    return (problem.question or "", problem.answer or "", tuple(problem.steps))


def clear_cache() -> None:
    """Forget every cached scan (tests; a process that changed its verifier)."""
    with _lock:
        _cache.clear()


def scan_problems(problems: Iterable[Problem], *, progress: bool = False,
                  verifier: object | None = None) -> list[LeakScan]:
    """Scan many problems with one batched verification; results are cached.

    Args:
        problems: The problems (their ``steps`` and ``answer``).
        progress: Show a tqdm bar over the math-verify batches.
        verifier: A :class:`pope_env.rewards.math.MathVerifier`; default the shared
            :func:`pope_env.rewards.math.default_verifier` (the reward's time limit).
    """
    problems = list(problems)
    scans: list[LeakScan | None] = []
    # (problem index, step index, candidate) pairs that need math-verify
    pending: list[tuple[int, int, str]] = []
    first_cheap: dict[int, tuple[int, str]] = {}
    for n, problem in enumerate(problems):
        with _lock:
            cached = _cache.get(_key(problem))
        if cached is not None:
            scans.append(cached)
            continue
        scans.append(None)
        gold = (problem.answer or "").strip()
        box_cap = max_prefix_len(problem)
        if not gold:
            scans[n] = LeakScan(box_cap, None)
            continue
        given = {_normalise(c) for c in stated_results(problem.question or "")}
        for s in range(box_cap):
            hit = None
            for candidate in stated_results(problem.steps[s]):
                if _normalise(candidate) in given:
                    continue  # restates the question (``$3+4$`` for "What is $3+4$?")
                verdict = _cheap_verdict(gold, candidate)
                if verdict:
                    hit = candidate
                    break
                if verdict is None:
                    pending.append((n, s, candidate))
            if hit is not None:
                first_cheap[n] = (s, hit)
                break
    # Only candidates before a problem's first cheap hit can move its cap.
    pending = [(n, s, c) for n, s, c in pending if n not in first_cheap or s < first_cheap[n][0]]
    verdicts: dict[int, list[tuple[int, str, bool, bool]]] = {}
    if pending:
        if verifier is None:
            from pope_env.rewards.math import default_verifier

            verifier = default_verifier()
        from tqdm.auto import tqdm

        batch = 512
        for a in tqdm(range(0, len(pending), batch), desc="answer-leak scan", unit="batch",
                      disable=not progress):
            chunk = pending[a : a + batch]
            scores = verifier.score_batch(  # type: ignore[attr-defined]
                [f"\\boxed{{{c}}}" for _, _, c in chunk],
                [problems[n].answer.strip() for n, _, _ in chunk])
            for (n, s, c), score in zip(chunk, scores):
                verdicts.setdefault(n, []).append((s, c, bool(score.correct), bool(score.timed_out)))
    for n, problem in enumerate(problems):
        if scans[n] is not None:
            continue
        box_cap = max_prefix_len(problem)
        best = first_cheap.get(n)
        timed_out = 0
        for s, c, correct, late in verdicts.get(n, ()):
            timed_out += late
            if correct and (best is None or s < best[0]):
                best = (s, c)
        scan = LeakScan(box_cap, None if best is None else best[0], None if best is None else best[1],
                        timed_out)
        with _lock:
            _cache[_key(problem)] = scan
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
        scans[n] = scan
    return scans  # type: ignore[return-value]


def scan_problem(problem: Problem) -> LeakScan:
    """The :class:`LeakScan` of one problem (cached; see :func:`scan_problems`)."""
    with _lock:
        cached = _cache.get(_key(problem))
    if cached is not None:
        return cached
    return scan_problems([problem])[0]

