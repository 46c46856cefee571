"""The exact rational fast path agrees with math-verify wherever it gives a verdict."""

from __future__ import annotations

import logging
import random
from fractions import Fraction

import pytest

from pope_env.datasets import load_dataset
from pope_env.rewards.rational import parse_rational, rational_verdict

math_verify = pytest.importorskip("math_verify")
sympy = pytest.importorskip("sympy")
logging.getLogger("math_verify").setLevel(logging.ERROR)


def mv_parse(text: str) -> list:
    """What the worker gives math-verify: the answer in a box, no SIGALRM timeouts."""
    return math_verify.parse("\\boxed{" + text + "}", parsing_timeout=None)


def mv_verdict(gold: str, answer: str) -> bool:
    return bool(math_verify.verify(mv_parse(gold), mv_parse(answer), timeout_seconds=None))


@pytest.fixture(scope="module")
def rational_golds() -> list[str]:
    """The distinct MATH-500 gold answers that are plain rationals."""
    golds = sorted({p.answer for p in load_dataset("math500")})
    return [g for g in golds if parse_rational(g) is not None]


ACCEPTED = {
    "12": Fraction(12),
    "-3": Fraction(-3),
    "- 3": Fraction(-3),
    " 42 ": Fraction(42),
    "007": Fraction(7),
    "-0": Fraction(0),
    "1,000": Fraction(1000),
    "-1,000": Fraction(-1000),
    "1,234,567": Fraction(1234567),
    "1{,}000": Fraction(1000),
    "1,\\!000,\\!000": Fraction(1000000),
    "\\frac{7}{2}": Fraction(7, 2),
    "\\dfrac{6}{8}": Fraction(3, 4),
    "\\tfrac{6}{8}": Fraction(3, 4),
    "\\frac12": Fraction(1, 2),
    "\\frac1{2}": Fraction(1, 2),
    "\\frac{1}2": Fraction(1, 2),
    "\\frac {6} {8}": Fraction(3, 4),
    "\\frac{ 6 }{ 8 }": Fraction(3, 4),
    "\\frac{-3}{4}": Fraction(-3, 4),
    "\\frac{3}{-4}": Fraction(-3, 4),
    "-\\frac{3}{4}": Fraction(-3, 4),
    "- \\frac{3}{4}": Fraction(-3, 4),
    "-\\frac{-3}{4}": Fraction(3, 4),
    "\\frac{-3}{-4}": Fraction(3, 4),
    "\\frac{4}{2}": Fraction(2),
    "\\frac{0}{5}": Fraction(0),
    "\\frac{007}{2}": Fraction(7, 2),
    "3/4": Fraction(3, 4),
    "-3/4": Fraction(-3, 4),
    "10/5": Fraction(2),
}

REJECTED = [
    "",
    "0.5",  # decimals: math-verify compares floats with a tolerance
    "3.",
    ".5",
    "2\\frac12",  # implicit product / mixed number: 5/2 to math-verify
    "2\\frac{1}{2}",
    "1 000",  # math-verify: 1*0
    "1\\,000",
    "1~000",
    "1, 000",  # math-verify: the set {0, 1}
    "1,00",
    "1,0000",
    "0,111",  # math-verify: 0.111
    "01,000",
    "1,000,00",
    "1,{}000",
    "1,\\!000,000",  # mixed separators
    "\\frac{1,000}{3}",
    "\\frac{1}{0}",  # zoo
    "1/0",
    "3 / 4",
    "3/-4",
    "2/4/2",
    "\\frac{1}{2}/2",
    "--3",
    "+3",
    "{3}",  # a set
    "(3)",
    "\\left(3\\right)",
    "$3$",
    "3\\%",
    "\\$3",
    "3\\text{ cm}",
    "3^\\circ",
    "x",
    "3+1",
    "2\\left(3\\right)",
    "\\sqrt{4}",
    "10^{3}",
    "1e3",
    "\\frac{\\sqrt{2}}{2}",
    "\\frac{x}{2}",
    "\\frac 1 2",
    "\\frac123",
    "(1, 2)",
    "[1, 2)",
    "\\{1,2\\}",
    "1" * 301,
]


@pytest.mark.parametrize("text", sorted(ACCEPTED))
def test_accepted_forms(text):
    assert parse_rational(text) == ACCEPTED[text]


@pytest.mark.parametrize("text", REJECTED)
def test_rejected_forms(text):
    assert parse_rational(text) is None


def test_accepted_forms_are_read_by_math_verify_as_the_same_number(rational_golds):
    """For every accepted string, math-verify's parse gives exactly the same rational."""
    texts = sorted(ACCEPTED) + rational_golds
    assert len(rational_golds) > 150  # the fast path matters: many MATH-500 golds qualify
    wrong = []
    for text in texts:
        value = parse_rational(text)
        parsed = mv_parse(text)
        if not parsed or parsed[0] != sympy.Rational(value.numerator, value.denominator):
            wrong.append((text, value, parsed))
    assert wrong == []


def test_some_rejected_forms_differ_in_math_verify():
    """The reasons for rejecting are real: math-verify reads these otherwise."""
    assert mv_parse("1 000")[0] != 1000
    assert mv_parse("1, 000")[0] != 1000
    assert mv_parse("2\\frac12")[0] == sympy.Rational(5, 2)
    assert mv_parse("0,111")[0] != 111


def _rewrites(value: Fraction, rng: random.Random) -> list[str]:
    """Plain-rational spellings of ``value`` and of nearby wrong values."""
    n, d = value.numerator, value.denominator
    k = rng.randint(2, 9)
    forms = [f"\\frac{{{n * k}}}{{{d * k}}}", f"{n}/{d}", f"\\dfrac{{{-n}}}{{{-d}}}"]
    if d == 1:
        forms += [str(n), f"0{abs(n)}" if n >= 0 else f"-0{-n}", f"{n:,}", f"{n:,}".replace(",", "{,}")]
        forms += [str(n + 1), str(-n), str(n * 10)]
    else:
        forms += [f"-\\frac{{{-n}}}{{{d}}}", f"\\frac{{{n + d}}}{{{d}}}", f"\\frac{{{d}}}{{{n}}}" if n else "1"]
    return [f for f in forms if parse_rational(f) is not None]


@pytest.mark.slow
def test_verdicts_equal_math_verify_verdicts(rational_golds):
    """Gold answers of MATH-500 against rewrites, wrong values and other golds: wherever
    the fast path gives a verdict, math-verify gives the same one."""
    rng = random.Random(0)
    pairs = []
    for gold in rational_golds:
        pairs += [(gold, a) for a in _rewrites(parse_rational(gold), rng)]
        pairs += [(gold, rng.choice(rational_golds)) for _ in range(2)]
        pairs += [(gold, gold + "+1"), (gold, f"2\\left({gold}\\right)"), (gold, gold + "0")]
    checked, disagree = 0, []
    for gold, answer in pairs:
        fast = rational_verdict(gold, answer)
        if fast is None:
            continue
        checked += 1
        slow = mv_verdict(gold, answer)
        if fast != slow:
            disagree.append((gold, answer, fast, slow))
    assert disagree == []
    assert checked > 1500
    assert sum(rational_verdict(g, a) is True for g, a in pairs) > 500  # both verdicts occur
