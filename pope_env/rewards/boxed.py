"""Find ``\\boxed{...}`` / ``\\fbox{...}`` answers in LaTeX text (brace-matched, linear time).

Shared by the dataset loaders (MATH's gold answer is the last box of the solution) and the
math reward (a completion's answer is its last box). Handles nested braces
(``\\boxed{\\frac{1}{2}}``), escaped braces (``\\{``), ``\\fbox{}`` and the brace-less form
``\\boxed 5``.
"""

from __future__ import annotations

import re

__all__ = ["match_braces", "boxed_contents", "last_boxed"]

_BRACE_OR_ESCAPE = re.compile(r"\\.|[{}]", re.DOTALL)
_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*")
# ``\boxed 5`` / ``\boxed -3.5``: one token up to whitespace, ``$`` or a closing delimiter.
_BARE_TOKEN = re.compile(r"[^\s${}]+")


def match_braces(text: str, open_pos: int, stop: int | None = None) -> int:
    """Index just past the ``}`` that closes the ``{`` at ``open_pos``; -1 if it does not
    close before ``stop`` (default: the end). Escaped braces (``\\{``, ``\\}``) do not count."""
    depth = 0
    for m in _BRACE_OR_ESCAPE.finditer(text, open_pos, len(text) if stop is None else stop):
        token = m.group()
        if token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
            if depth == 0:
                return m.end()
    return -1


def _box_at(text: str, m: re.Match[str], stop: int | None = None) -> str | None:
    after = m.end()
    if after < len(text) and text[after] == "{":
        end = match_braces(text, after, stop)
        return text[after + 1 : end - 1] if end > 0 else None
    if after > m.start() + len(m.group().rstrip()):  # ``\boxed 5`` needs the space
        token = _BARE_TOKEN.match(text, after)
        return token.group() if token else None
    return None


def boxed_contents(text: str) -> list[str]:
    """The contents of every well-formed box in ``text``, in order (unclosed boxes skipped)."""
    out = []
    for m in _BOX.finditer(text):
        content = _box_at(text, m)
        if content is not None:
            out.append(content)
    return out


def last_boxed(text: str) -> str | None:
    """The content of the last well-formed ``\\boxed{}``/``\\fbox{}``/``\\boxed X`` in
    ``text`` (stripped), or ``None``. An unclosed last box (a truncated generation) is
    skipped in favour of the box before it (at most the last 64 boxes are tried)."""
    # A box that does not close before an unclosed later box never closes (its brace
    # would enclose that box's open brace), so each scan stops there: linear time even
    # for adversarial input such as "\\boxed{" repeated a million times.
    # Only the last _MAX_TRIED boxes are tried: a completion ending in more unclosed boxes
    # than that is garbage, and the limit keeps a million "\\boxed{" cheap.
    stop = None
    for m in _last_boxes(text):
        content = _box_at(text, m, stop)
        if content is not None:
            return content.strip()
        stop = m.start()
    return None


_MAX_TRIED = 64


def _last_boxes(text: str) -> list[re.Match[str]]:
    """The last :data:`_MAX_TRIED` box commands of ``text``, last first."""
    found: list[re.Match[str]] = []
    end = len(text)
    while len(found) < _MAX_TRIED:
        start = max(text.rfind("\\boxed", 0, end), text.rfind("\\fbox", 0, end))
        if start < 0:
            break
        m = _BOX.match(text, start)
        if m is not None:
            found.append(m)
        end = start
    return found
