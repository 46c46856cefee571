"""The verification worker's speed-ups never change a verdict.

The worker script (``pope_env/rewards/_verify_worker.py``) parses LaTeX with ANTLR's SLL
mode first, short-cuts plain integers and warms its caches up. These tests run the real
script through its line protocol and compare with math-verify in this process (where none
of the worker's hooks is installed), and check each hook against the library's own result.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from pope_env.datasets import load_dataset
from pope_env.rewards import _verify_worker as worker
from pope_env.rewards.math import _WORKER_BOOTSTRAP

math_verify = pytest.importorskip("math_verify")
sympy = pytest.importorskip("sympy")
latex2sympy2 = pytest.importorskip("latex2sympy2_extended.latex2sympy2")
mv_parser = pytest.importorskip("math_verify.parser")
logging.getLogger("math_verify").setLevel(logging.ERROR)

# Strings SLL prediction cannot parse but LL can (found by comparing both modes on every
# string math-verify fed the parser for MATH train/test gold answers and variations).
NEEDS_LL = ["2k^2", "-3R^2", "12\\pi^2", "-x^3+3x-6", "1+2i^2"]
SYNTAX_ERRORS = ["\\frac{1}{", "3++", "\\sqrt", "(1,2"]


def boxed(text: str) -> str:
    return "\\boxed{" + text + "}"


def plain_verdict(gold: str, answer: str) -> bool:
    """What the worker computes, with math-verify as shipped (no hooks in this process)."""
    try:
        return bool(
            math_verify.verify(
                math_verify.parse(boxed(gold), parsing_timeout=None),
                math_verify.parse(boxed(answer), parsing_timeout=None),
                timeout_seconds=None,
            )
        )
    except Exception:
        return False


def run_worker(pairs: list[tuple[str, str]], timeout_s: float = 300.0) -> list[dict]:
    """Start the real worker script, send ``pairs``, return its messages (ready first)."""
    requests = "".join(json.dumps({"id": i, "gold": g, "answer": a}) + "\n" for i, (g, a) in enumerate(pairs))
    done = subprocess.run(
        [sys.executable, "-c", _WORKER_BOOTSTRAP],
        input=requests,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture(scope="module")
def variations() -> list[tuple[str, str]]:
    """(gold, answer) pairs from MATH-500: the gold itself and changed answers."""
    pairs = []
    for p in load_dataset("math500")[::8]:
        g = p.answer
        pairs += [(g, g), (g, g + "+1"), (g, f"2\\left({g}\\right)"), (g, g + "0"), (g, f"-{g}")]
    return pairs


@pytest.fixture
def hooked(monkeypatch):
    """Install the worker's hooks in this process for one test, then restore the library."""
    monkeypatch.setattr(latex2sympy2._Latex2Sympy, "create_parser", latex2sympy2._Latex2Sympy.create_parser)
    monkeypatch.setattr(mv_parser, "parse_latex_cached", mv_parser.parse_latex_cached)
    monkeypatch.setattr(latex2sympy2._Latex2Sympy, "parse_number", latex2sympy2._Latex2Sympy.parse_number)
    worker.install_sll_first()
    worker.install_integer_shortcut()
    yield


def library_result(text: str) -> str:
    """``srepr`` of latex2sympy's result, or the exception's type and message."""
    try:
        return sympy.srepr(latex2sympy2.latex2sympy(text))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


# ------------------------------------------------------------------------ the real script


@pytest.mark.slow
def test_worker_script_verdicts_equal_plain_math_verify(variations):
    messages = run_worker(variations)
    assert messages[0] == {"ready": True}
    replies = {m["id"]: m for m in messages[1:]}
    assert sorted(replies) == list(range(len(variations)))
    got = [replies[i]["correct"] for i in range(len(variations))]
    want = [plain_verdict(g, a) for g, a in variations]
    assert [(variations[i], got[i]) for i in range(len(got)) if got[i] != want[i]] == []
    assert 0 < sum(got) < len(got)


def test_worker_script_reports_ready_then_answers_in_order():
    pairs = [("\\frac{1}{2}", "0.5"), ("2\\sqrt{2}", "\\sqrt{8}"), ("3", "4"), ("x", "\\frac{1}{")]
    messages = run_worker(pairs)
    assert messages[0] == {"ready": True}
    assert [m["id"] for m in messages[1:]] == [0, 1, 2, 3]
    assert [m["correct"] for m in messages[1:]] == [True, True, False, False]


# ---------------------------------------------------------------------------- the hooks


def test_hooks_give_the_librarys_results(hooked, variations, monkeypatch):
    """Same sympy objects (``srepr``) or the same exception, with and without the hooks,
    on MATH-500 answers and variations, inputs that need LL and syntax errors."""
    texts = sorted({t for pair in variations for t in pair}) + NEEDS_LL + SYNTAX_ERRORS
    monkeypatch.undo()  # the library as shipped first
    want = [library_result(t) for t in texts]
    worker.install_sll_first()
    worker.install_integer_shortcut()
    parser = latex2sympy2._Latex2Sympy().create_parser("1+1")
    from antlr4.atn.PredictionMode import PredictionMode

    assert parser._interp.predictionMode == PredictionMode.SLL
    got = [library_result(t) for t in texts]
    monkeypatch.undo()
    assert [(t, w, g) for t, w, g in zip(texts, want, got) if w != g] == []
    assert sum(r.startswith("Exception: ") for r in got) >= len(SYNTAX_ERRORS)  # errors still raised


def test_sll_first_falls_back_to_ll_on_a_syntax_error(hooked, monkeypatch):
    from antlr4.atn.PredictionMode import PredictionMode

    modes = []
    original = latex2sympy2.PSParser.math

    def recording_math(parser):
        modes.append(parser._interp.predictionMode)
        return original(parser)

    monkeypatch.setattr(latex2sympy2.PSParser, "math", recording_math)
    assert latex2sympy2.latex2sympy("\\frac{1}{2}+x") is not None
    assert modes == [PredictionMode.SLL]  # parsed by SLL alone
    modes.clear()
    assert latex2sympy2.latex2sympy(NEEDS_LL[0]) is not None
    assert modes == [PredictionMode.SLL, PredictionMode.LL]  # SLL failed, LL parsed it
    modes.clear()
    with pytest.raises(Exception, match="expected"):
        latex2sympy2.latex2sympy("\\frac{1}{")
    assert modes == [PredictionMode.SLL, PredictionMode.LL]  # LL had the last word


def test_hooks_install_once(hooked):
    hooks = (latex2sympy2._Latex2Sympy.create_parser, mv_parser.parse_latex_cached, latex2sympy2._Latex2Sympy.parse_number)
    worker.install_sll_first()
    worker.install_integer_shortcut()
    assert (latex2sympy2._Latex2Sympy.create_parser, mv_parser.parse_latex_cached, latex2sympy2._Latex2Sympy.parse_number) == hooks


@pytest.mark.parametrize("digits", ["0", "7", "007", "120", "12345678901234567890123", "9" * 300])
def test_integer_shortcut_returns_the_parsers_integer(hooked, digits, monkeypatch):
    got = mv_parser.parse_latex_cached(digits)
    monkeypatch.undo()
    want = mv_parser.parse_latex_cached(digits)
    assert type(got) is type(want) and sympy.srepr(got) == sympy.srepr(want)


@pytest.mark.parametrize("text", ["0", "000", "7", "007", "1,000", "120", "9" * 300, "9" * 301, "0.5", "1,5", "\u00b2"])
def test_integer_literals_equal_the_librarys(hooked, text, monkeypatch):
    def number(t: str) -> str:
        try:
            value = latex2sympy2._Latex2Sympy().parse_number(t)
        except Exception as exc:
            return type(exc).__name__
        return f"{type(value).__name__} {sympy.srepr(value)}"

    got = number(text)
    monkeypatch.undo()
    assert got == number(text)


def test_integer_shortcut_leaves_everything_else_to_the_parser(hooked):
    assert mv_parser.parse_latex_cached("-7") == -7
    assert mv_parser.parse_latex_cached("1,000") == 1000
    assert mv_parser.parse_latex_cached("7x") == sympy.Symbol("x", real=True) * 7


def test_warm_up_exercises_real_parses(hooked):
    """Every warm-up pair parses and verifies without error (so it warms the real paths),
    with the verdict math-verify gives without hooks."""
    assert len(worker.WARM_UP) >= 20
    for gold, answer in worker.WARM_UP:
        parsed = [math_verify.parse(boxed(t), parsing_timeout=None) for t in (gold, answer)]
        assert all(p and p[0] is not None for p in parsed), (gold, answer)
        math_verify.verify(*parsed, timeout_seconds=None)
