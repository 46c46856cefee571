"""Answer extraction for the math reward: which part of a completion is its final answer.

:func:`extract_answer` / :func:`extract_with_format` implement the rules the reward
(:mod:`pope_env.rewards.math`) scores by; :func:`normalise` is the light normal form of its
exact-match fast path. Pure functions, no math-verify.
"""

from __future__ import annotations

import re

from pope_env.rewards.boxed import last_boxed


_FINAL_ANSWER = re.compile(
    r"(?:final\s+answer|the\s+answer)\s*(?:is|:|=)\s*:?\s*(?P<ans>[^\n]{1,200})", re.IGNORECASE
)
_HASHES = re.compile(r"^[ \t]*####\s*(?P<ans>[^\n]{1,200})", re.MULTILINE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_TAIL_FOR_NUMBER = 2_000  # the last-number fallback looks at the end of the text only


def _last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    last = None
    for last in pattern.finditer(text):
        pass
    return last


def _clean_inline(ans: str) -> str:
    """``"$\\frac12$."`` -> ``"\\frac12"``: strip math delimiters and sentence punctuation."""
    ans = ans.strip()
    inline = re.match(r"^\$+(.+?)\$+", ans) or re.match(r"^\\\((.+?)\\\)", ans)
    if inline:
        return inline.group(1).strip()
    ans = re.split(r"(?<=[^\d])\.\s|\.$", ans, maxsplit=1)[0]
    return ans.strip().rstrip(".").strip("$ ").strip()


def extract_with_format(text: str) -> tuple[str | None, bool]:
    """``(answer, format_ok)``; see :func:`extract_answer` for the rules."""
    boxed = last_boxed(text)
    if boxed:
        return boxed, True
    m = _last_match(_FINAL_ANSWER, text)
    if m:
        ans = _clean_inline(m.group("ans"))
        if ans:
            return ans, False
    m = _last_match(_HASHES, text)
    if m:
        ans = m.group("ans").strip().rstrip(".")
        if ans:
            return ans, False
    numbers = _NUMBER.findall(text[-_TAIL_FOR_NUMBER:])
    if numbers:
        return numbers[-1].replace(",", ""), False
    return None, False


def extract_answer(text: str) -> str | None:
    """The final answer of a completion, or ``None``.

    In order of preference:

    1. the content of the last well-formed ``\\boxed{...}`` / ``\\fbox{...}`` /
       ``\\boxed X`` (the requested format: ``format_ok=True``);
    2. the text after the last "final answer is" / "the answer is" / "answer:" on its line
       (math delimiters and a trailing period removed);
    3. the text after the last ``#### `` line (GSM8K style);
    4. the last number in the last 2,000 characters (``-3``, ``1,000``, ``2.5``, ``3/4``).

    Answers found by rules 2-4 are still verified and can score 1, but their
    ``MathScore.format_ok`` is ``False``, so a trainer can penalise or filter them.
    """
    return extract_with_format(text)[0]


_NORMALISE_DROP = re.compile(r"\s+|\\left|\\right|\\[!,;: ]|\$|\\displaystyle")


def normalise(answer: str) -> str:
    """Light normalisation for the exact-match fast path; equal normal forms are equal
    answers (so this never turns a wrong answer right), not the other way round."""
    s = _NORMALISE_DROP.sub("", answer)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return s.rstrip(".")


def _is_valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


__all__ = ["extract_answer", "extract_with_format", "normalise"]
