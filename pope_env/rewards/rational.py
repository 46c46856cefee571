"""Exact rational fast path of the math reward: plain numbers compared without math-verify.

Most gold answers of MATH-style problems, and most final answers a policy writes, are
plain rational numbers (``12``, ``-3``, ``1,000``, ``\\frac{7}{2}``, ``3/4``). When both the
gold and the extracted answer are, comparing them as :class:`fractions.Fraction` gives
the verdict math-verify would give, in microseconds instead of a worker round trip.

What counts as a plain rational (the whole text, after stripping outer whitespace):

* an integer ``-?D`` (``D``: 1-300 digits, leading zeros allowed: math-verify reads
  ``007`` as 7);
* an integer with thousands separators: first group ``1-9`` then up to 2 digits, then
  groups of exactly 3 digits, all separated by the same one of ``,``  ``{,}``  ``,\\!``
  (``1,000``, ``-12{,}345``). A separator followed by a space is not accepted: math-verify
  reads ``1, 000`` as the set ``{0, 1}``;
* ``\\frac``/``\\dfrac``/``\\tfrac`` with an integer (optionally negative) in braces or a
  single digit as numerator and denominator, optionally negated: ``\\frac{-3}{4}``,
  ``-\\dfrac{6}{8}``, ``\\frac12``;
* ``-?D/D``.

A zero denominator is not plain (math-verify gives ``zoo``). Everything else returns
``None`` and is left to math-verify, in particular: decimals (math-verify compares a float
with a tolerance), implicit products (``2\\frac12`` is 5/2 to math-verify), spaced digits
(``1 000`` and ``1\\,000`` are ``1*0`` to math-verify), braces (``{3}`` is a set), units,
percent signs, text, sets, tuples and intervals. ``tests/test_reward_rational.py`` checks
every accepted form against math-verify's own reading.
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["parse_rational", "rational_verdict"]

_INTEGER = re.compile(r"(?P<neg>-\s*)?(?P<digits>\d{1,300})")
_GROUPED = re.compile(
    r"(?P<neg>-\s*)?(?P<digits>[1-9]\d{0,2}(?P<sep>,\\!|\{,\}|,)\d{3}(?:(?P=sep)\d{3}){0,99})"
)
_FRAC_PART = r"(?:\s*\{{\s*(?P<{0}neg>-\s*)?(?P<{0}>\d{{1,300}})\s*\}}|(?P<{0}digit>\d))"
_FRAC = re.compile(
    r"(?P<neg>-\s*)?\\[dt]?frac" + _FRAC_PART.format("num") + _FRAC_PART.format("den")
)
_SLASH = re.compile(r"(?P<neg>-)?(?P<num>\d{1,300})/(?P<den>\d{1,300})")


def parse_rational(text: str) -> Fraction | None:
    """The value of ``text`` if it is a plain rational number (see the module docstring),
    else ``None``."""
    text = text.strip()
    if not text or len(text) > 1_000:
        return None
    m = _INTEGER.fullmatch(text)
    if m:
        value = Fraction(int(m["digits"]))
        return -value if m["neg"] else value
    m = _GROUPED.fullmatch(text)
    if m:
        value = Fraction(int(re.sub(r"\D", "", m["digits"])))
        return -value if m["neg"] else value
    m = _FRAC.fullmatch(text)
    if m:
        num = int(m["num"] or m["numdigit"])
        den = int(m["den"] or m["dendigit"])
        if den == 0:
            return None
        negatives = sum(bool(m[g]) for g in ("neg", "numneg", "denneg"))
        value = Fraction(num, den)
        return -value if negatives % 2 else value
    m = _SLASH.fullmatch(text)
    if m:
        den = int(m["den"])
        if den == 0:
            return None
        value = Fraction(int(m["num"]), den)
        return -value if m["neg"] else value
    return None


def rational_verdict(gold: str, answer: str) -> bool | None:
    """``True``/``False`` if both ``gold`` and ``answer`` are plain rational numbers (equal
    values or not), else ``None`` (math-verify must decide)."""
    gold_value = parse_rational(gold)
    if gold_value is None:
        return None
    answer_value = parse_rational(answer)
    if answer_value is None:
        return None
    return gold_value == answer_value
