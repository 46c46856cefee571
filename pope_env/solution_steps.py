"""Split a worked solution into steps: paragraphs, then sentences, never inside math.

A *step* is the unit of POPE's oracle prefix ``z[:i]`` (the first ``i`` steps). Splitting
follows two rules, applied to the text outside protected regions:

1. **Paragraphs**: a blank line ends a step.
2. **Sentences**: ``.``, ``?`` or ``!`` (optionally followed by closing quotes or brackets),
   then whitespace, then a character that can start a sentence (anything but a lowercase
   letter or ``, ; :``) ends a step. A sentence may also end inside inline math that
   closes with a period (``... is $x = 2.$  Also ...``), as MATH solutions often write.
   Common abbreviations (``e.g.``, ``i.e.``, ``etc.``, ``Fig.``, ...) and numbered-list
   markers (``1.`` at the start of a line) do not end a sentence.

Protected regions are never split: ``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]``,
``\\begin{env}...\\end{env}`` (nested environments included), ``\\boxed{...}`` /
``\\fbox{...}`` (brace-matched) and Asymptote blocks ``[asy]...[/asy]``. An opening
delimiter that never closes (or an inline ``$`` whose closing ``$`` lies beyond a blank
line, which TeX forbids) is treated as plain text.

Whitespace stays attached to the step before it, so ``"".join(split_solution(t)) == t``
holds exactly for every string ``t``.
"""

from __future__ import annotations

import re
from functools import lru_cache

from pope_env.problem import Problem

__all__ = ["split_solution", "answer_step_index", "max_prefix_len", "protected_spans"]

# Openers of protected regions, tried in this order at each position. ``\\.`` consumes any
# other escaped character (``\\$`` is a literal dollar, ``\\\\`` a line break).
_OPENER = re.compile(
    r"\\begin\{(?P<env>[^{}]*)\}"
    r"|\\(?:boxed|fbox)\s*(?=\{)"
    r"|\\\(|\\\[|\\."
    r"|\$\$|\$"
    r"|\[asy\]",
    re.DOTALL,
)
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")
_DOLLAR_OR_ESCAPE = re.compile(r"\\.|\$", re.DOTALL)
_SENTENCE_PUNCT = ".?!"
_BRACE_OR_ESCAPE = re.compile(r"\\.|[{}]", re.DOTALL)
_MASK = "\0"  # stands for protected text in the masked copy; never a letter, space or punctuation
_DISPLAY_END = "\1"  # last char of a display-math span whose content ends a sentence

# A split point: a blank-line whitespace run, or sentence punctuation + closers + whitespace
# followed by something that may start a sentence. The split goes after the whitespace.
_SPLIT = re.compile(
    r"(?P<para>\s*\n[ \t\r\f\v]*\n\s*)(?=\S)"
    r"|(?P<punct>[.?!])[\"')\]]*(?P<ws>\s+)(?=[^\sa-z,;:])"
    r"|\x01(?P<dws>\s*)(?=[A-Z\x00])"  # "\\[x = 5.\\]Then ..." ends a sentence too
)
_ABBREVIATIONS = frozenset(
    "e.g i.e etc vs cf approx resp eq eqs fig figs no nos mr mrs ms dr st prof ca al".split()
)
_WORD_BEFORE = re.compile(r"([A-Za-z.]+)$")
_END_ENV = re.compile(r"\\end\{[^{}]*\}$")
_LIST_MARKER = re.compile(r"[ \t]*\(?\d{1,3}")


def _brace_pairs(text: str) -> dict[int, int]:
    """``{index of "{": index just past its "}"}`` for every balanced brace (one pass)."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE_OR_ESCAPE.finditer(text):
        token = m.group()
        if token == "{":
            stack.append(m.start())
        elif token == "}" and stack:
            pairs[stack.pop()] = m.end()
    return pairs


def _match_environment(text: str, start: int, env: str) -> int:
    """Index just past the ``\\end{env}`` matching a ``\\begin{env}`` ending at ``start``."""
    begin, end = f"\\begin{{{env}}}", f"\\end{{{env}}}"
    depth = 1
    pos = start
    while depth:
        j = text.find(end, pos)
        if j < 0:
            return -1
        k = text.find(begin, pos, j)
        if k >= 0:
            depth += 1
            pos = k + len(begin)
        else:
            depth -= 1
            pos = j + len(end)
    return pos


def _match_inline_dollar(text: str, start: int) -> int:
    """Index just past the ``$`` closing inline math opened just before ``start``."""
    for m in _DOLLAR_OR_ESCAPE.finditer(text, start):
        if m.group() == "$":
            if _BLANK_LINE.search(text, start, m.start()):
                return -1
            return m.end()
    return -1


def _find_unescaped(text: str, needle: str, start: int) -> int:
    """Index just past the first ``needle`` at or after ``start`` not preceded by an odd
    number of backslashes (an escaped delimiter is literal), or -1."""
    pos = start
    while True:
        j = text.find(needle, pos)
        if j < 0:
            return -1
        k = j
        while k > start and text[k - 1] == "\\":
            k -= 1
        if (j - k) % 2 == 0:
            return j + len(needle)
        pos = j + 1


def protected_spans(text: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` character ranges of math and boxed regions that a step boundary
    may never fall inside (see the module docstring), in order and non-overlapping."""
    spans: list[tuple[int, int]] = []
    # ``closer -> position`` after which that closer never occurs: an unclosed opener
    # repeated many times then costs one scan, not one per opener.
    absent: dict[str, int] = {}

    def find(closer: str, start: int) -> int:
        if start >= absent.get(closer, len(text) + 1):
            return -1
        if closer.startswith("\\end{"):
            end = _match_environment(text, start, closer[5:-1]) if text.find(closer, start) >= 0 else -1
        elif closer == "[/asy]":
            j = text.find(closer, start)
            end = j + len(closer) if j >= 0 else -1
        else:
            end = _find_unescaped(text, closer, start)
        if end < 0 and text.find(closer, start) < 0:
            absent[closer] = start
        return end

    braces: dict[int, int] | None = None
    pos = 0
    while True:
        m = _OPENER.search(text, pos)
        if m is None:
            return spans
        token, start = m.group(), m.start()
        end = -1
        if m.group("env") is not None:
            end = find(f"\\end{{{m.group('env')}}}", m.end())
        elif token.startswith(("\\boxed", "\\fbox")):
            if braces is None:
                braces = _brace_pairs(text)
            end = braces.get(m.end(), -1)
        elif token == "\\(":
            end = find("\\)", m.end())
        elif token == "\\[":
            end = find("\\]", m.end())
        elif token == "$$":
            end = find("$$", m.end())
        elif token == "$":
            end = _match_inline_dollar(text, m.end())
        elif token == "[asy]":
            end = find("[/asy]", m.end())
        if end < 0:  # an escape, or an opener that never closes: plain text
            pos = m.end()
            continue
        spans.append((start, end))
        pos = end


def _masked(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with every protected span replaced by mask characters of equal length; a
    span whose content ends a sentence (``$x = 2.$``) keeps that period as its last char."""
    parts: list[str] = []
    prev = 0
    for start, end in spans:
        parts.append(text[prev:start])
        inner = _END_ENV.sub("", text[start:end]).rstrip("$])}\\ \t\n")
        if inner and inner[-1] in _SENTENCE_PUNCT:
            display = text.startswith(("\\[", "$$", "\\begin"), start)
            last = _DISPLAY_END if display else "."
        else:
            last = _MASK
        parts.append(_MASK * (end - start - 1) + last)
        prev = end
    parts.append(text[prev:])
    return "".join(parts)


def _is_abbreviation_or_list_marker(masked: str, punct_pos: int) -> bool:
    """Whether the period at ``punct_pos`` ends an abbreviation or a list marker (``1.``)."""
    if masked[punct_pos] != ".":
        return False
    before = masked[max(0, punct_pos - 16) : punct_pos]
    word = _WORD_BEFORE.search(before)
    if word and word.group(1).lower().strip(".") in _ABBREVIATIONS:
        return True
    window = max(0, punct_pos - 8)  # a list marker is a short line start ("  12.")
    newline = masked.rfind("\n", window, punct_pos)
    if newline < 0 and window > 0:
        return False
    return _LIST_MARKER.fullmatch(masked, newline + 1, punct_pos) is not None


_CACHED_MAX_CHARS = 20_000  # longer texts (rare, or adversarial) are not kept in the cache


def split_solution(text: str) -> tuple[str, ...]:
    """Split a worked solution into steps (paragraphs, then sentences; see the module
    docstring). ``"".join(split_solution(text)) == text``; the empty string gives ``()``.

    Results for texts up to 20,000 characters are cached per process, so splitting the
    same solution twice is free. Linear time in ``len(text)``.
    """
    if not isinstance(text, str):
        raise TypeError(f"split_solution expects a str, got {type(text).__name__}")
    if len(text) > _CACHED_MAX_CHARS:
        return _split(text)
    return _split_cached(text)


@lru_cache(maxsize=32768)
def _split_cached(text: str) -> tuple[str, ...]:
    return _split(text)


def _split(text: str) -> tuple[str, ...]:
    if not text:
        return ()
    masked = _masked(text, protected_spans(text))
    first_content = len(text) - len(text.lstrip())  # leading whitespace joins the first step
    cuts: list[int] = []
    for m in _SPLIT.finditer(masked):
        if m.group("para") is not None:
            cut = m.end("para")
        elif m.group("dws") is not None:
            cut = m.end("dws")
        else:
            if _is_abbreviation_or_list_marker(masked, m.start("punct")):
                continue
            cut = m.end("ws")
        if first_content < cut < len(text):
            cuts.append(cut)
    bounds = [0, *cuts, len(text)]
    return tuple(text[a:b] for a, b in zip(bounds, bounds[1:]) if b > a)


_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def answer_step_index(steps: tuple[str, ...] | list[str]) -> int | None:
    """Index of the step holding the final ``\\boxed{}`` (or ``\\fbox{}``) answer, or
    ``None`` if no step has one."""
    for i in range(len(steps) - 1, -1, -1):
        if _BOX_COMMAND.search(steps[i]):
            return i
    return None


def _normalise_for_search(s: str) -> str:
    return re.sub(r"\s+", "", s).strip("$.").lower()


def max_prefix_len(problem: Problem) -> int:
    """The largest ``i`` such that the prefix ``steps[:i]`` does not reveal the answer.

    The step holding the first boxed answer and every step after it are excluded (MATH
    solutions occasionally box more than once; any box counts as revealing). For steps
    without a box (CHAMP's native steps), the answer step is the last step containing the
    gold answer text verbatim (ignoring whitespace), else the final step. Always
    ``0 <= result < len(steps)`` for a non-empty solution; ``0`` for an empty one.
    """
    steps = problem.steps
    if not steps:
        return 0
    for i, step in enumerate(steps):
        if _BOX_COMMAND.search(step):
            return i
    answer = _normalise_for_search(problem.answer or "")
    if answer:
        for i in range(len(steps) - 1, -1, -1):
            if answer in _normalise_for_search(steps[i]):
                return i
    return len(steps) - 1
