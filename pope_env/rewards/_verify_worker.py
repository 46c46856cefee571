"""Worker process of :class:`pope_env.rewards.math.MathVerifier` (run as a script).

Protocol, one JSON object per line: the worker prints ``{"ready": true}`` once math-verify
is imported (or ``{"error": "..."}`` and exits); then for each request
``{"id": N, "gold": G, "answer": A}`` on stdin it prints ``{"id": N, "correct": bool}``
(plus ``"error"`` when math-verify raised). The parent enforces the wall-clock limit by
killing this process, which is why math-verify's own SIGALRM timeouts are disabled here.

Speed-ups, none of which changes a verdict (``tests/test_verify_worker.py``):

* **SLL-first parsing.** latex2sympy2_extended parses LaTeX with an ANTLR parser in full
  LL prediction mode, whose full-context predictions are not cached and dominate the
  parse time. :func:`install_sll_first` makes each parse try ANTLR's faster SLL mode first
  (bailing out at the first error) and re-parse in LL mode only when that fails: the
  standard two-stage ANTLR strategy, which yields the LL parse tree whenever SLL succeeds.
* **Plain integers** (``[0-9]{1,300}``), whole answers and literals inside expressions,
  become a sympy ``Integer`` directly instead of through the parser or ``sympy.Number``'s
  string parsing: :func:`install_integer_shortcut`.
* **Warm-up.** Before reporting ready, the worker verifies :data:`WARM_UP` (representative
  answers of every kind), which fills ANTLR's prediction caches and sympy's caches, then
  calls :func:`gc.freeze` so the garbage collector no longer scans the imported modules.

This file imports only the standard library and math-verify (not pope_env), so it starts
the same way however pope-env was installed.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import sys
import threading
import time
from functools import lru_cache
from typing import Any


def _exit_when_orphaned(interval_s: float = 1.0) -> None:
    """Exit if the parent dies, even while stuck in a long computation (stdin EOF alone
    would not be noticed until the current item finishes)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _keep_niceness() -> None:
    """The worker runs in its own session, which Linux may schedule as its own autogroup;
    give that group the niceness inherited from the parent, so ``nice pope-env ...`` stays
    nice."""
    niceness = os.nice(0)
    if niceness > 0:
        try:
            with open("/proc/self/autogroup", "w") as f:
                f.write(str(niceness))
        except OSError:
            pass  # no autogroups here: the process niceness alone applies


#: Representative answers verified before the worker reports ready (gold, answer).
WARM_UP: tuple[tuple[str, str], ...] = (
    ("\\frac{1}{2}", "x+1"),
    ("\\frac{5}{7}", "\\frac{5}{7}+1"),
    ("-8", "2\\left(-8\\right)"),
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("\\frac{\\sqrt{3}}{2}", "\\dfrac{\\sqrt3}{2}0"),
    ("3\\pi", "\\frac{9\\pi}{3}"),
    ("(x+1)^2", "x^2+2x+1"),
    ("x^2 - 7x + 12", "(x-3)(x-4)"),
    ("(3, -1)", "\\left(3,-1\\right)"),
    ("[-2, 5)", "[-2,5)\\cup\\{7\\}"),
    ("(-\\infty, 0] \\cup [4, \\infty)", "x \\le 0 \\text{ or } x \\ge 4"),
    ("\\{1, 2, 3\\}", "1, 2, 3"),
    ("x = 5", "5"),
    ("y = 2x - 3", "2x-3"),
    ("\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}", "\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}"),
    ("0.25", "\\frac{1}{4}"),
    ("12\\%", "0.12"),
    ("45^\\circ", "\\frac{\\pi}{4}"),
    ("\\$18.90", "18.9"),
    ("3 + 4i", "3+4i"),
    ("e^{2}", "\\exp(2)"),
    ("\\log_2 8", "3"),
    ("\\sin \\frac{\\pi}{6}", "\\cos(\\pi/3)"),
    ("\\binom{10}{3}", "120"),
    ("5!", "120"),
    ("\\text{(C)}", "C"),
    ("\\text{Evelyn}", "\\textbf{Evelyn}"),
    ("10^{100}", "1\\cdot 10^{100}"),
    ("2 \\times 3^{4}", "162"),
    ("\\frac{a+b}{c}", "\\frac{b+a}{c}"),
    ("1,\\! 234", "1234"),
)

_DIGITS = re.compile(r"[0-9]{1,300}")


def install_sll_first() -> None:
    """Make latex2sympy2_extended's parser try ANTLR's SLL prediction mode first.

    Its ``_Latex2Sympy.create_parser`` builds a ``PSParser`` whose ``math()`` rule is the
    entry point. The returned parser's ``math`` now parses in SLL mode with a
    bail-out error strategy; on any error it parses again with a fresh parser built by
    the original ``create_parser`` (full LL mode and the library's error listeners), so
    the result, parse tree or exception, is the library's own whenever SLL fails.
    """
    from antlr4.atn.PredictionMode import PredictionMode
    from antlr4.error.ErrorStrategy import BailErrorStrategy
    from latex2sympy2_extended.antlr_parser import PSParser
    from latex2sympy2_extended.latex2sympy2 import _Latex2Sympy

    original = _Latex2Sympy.create_parser
    if getattr(original, "sll_first", False):
        return

    def create_parser(self: Any, latex_str: str) -> Any:
        parser = original(self, latex_str)
        parser._interp.predictionMode = PredictionMode.SLL
        parser._errHandler = BailErrorStrategy()

        def math() -> Any:
            try:
                return PSParser.math(parser)
            except Exception:  # a syntax error in SLL mode: LL decides
                return PSParser.math(original(self, latex_str))

        parser.math = math
        return parser

    create_parser.sll_first = True  # type: ignore[attr-defined]
    _Latex2Sympy.create_parser = create_parser


def install_integer_shortcut() -> None:
    """Build plain integers as sympy ``Integer`` directly.

    Two places: math-verify's ``parse_latex_cached`` gets the ``Integer`` for a normalised
    answer made of digits only without running the LaTeX parser, and latex2sympy's
    ``parse_number`` builds the integer literals inside an expression with
    ``Integer(int(...))`` instead of ``sympy.Number(text)``, which parses its string with
    ``sympy.parse_expr`` (about a millisecond per literal). Both give the objects the
    library gives; anything else (decimals, more than 300 digits) takes the library's path.
    """
    import sympy
    from latex2sympy2_extended.latex2sympy2 import _Latex2Sympy
    from math_verify import parser as mv_parser

    original_parse = mv_parser.parse_latex_cached
    if not getattr(original_parse, "integer_shortcut", False):

        def parse_latex_cached(latex: str) -> Any:
            if _DIGITS.fullmatch(latex):
                return sympy.Integer(int(latex))
            return original_parse(latex)

        parse_latex_cached.integer_shortcut = True  # type: ignore[attr-defined]
        mv_parser.parse_latex_cached = parse_latex_cached

    original_number = _Latex2Sympy.parse_number
    if not getattr(original_number, "integer_shortcut", False):

        def parse_number(self: Any, text: str) -> Any:
            digits = text.replace(",", "")  # as the library does
            if _DIGITS.fullmatch(digits):
                return sympy.Integer(int(digits))
            return original_number(self, text)

        parse_number.integer_shortcut = True  # type: ignore[attr-defined]
        _Latex2Sympy.parse_number = parse_number


def main() -> int:
    _exit_when_orphaned()
    _keep_niceness()
    out = sys.stdout
    try:
        from math_verify import parse, verify
    except Exception as exc:  # reported to the parent, which raises DependencyError
        out.write(json.dumps({"error": f"cannot import math_verify: {exc!r}"}) + "\n")
        out.flush()
        return 1
    # math-verify warns on every call that its timeouts are off; the parent enforces them.
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    def as_latex(answer: str) -> str:
        return "\\boxed{" + answer + "}"

    @lru_cache(maxsize=8192)
    def parsed_gold(gold: str):  # once per distinct gold answer, not once per rollout
        return parse(as_latex(gold), parsing_timeout=None)

    for install in (install_sll_first, install_integer_shortcut):
        try:
            install()
        except Exception:  # another library version: verify without this speed-up
            pass
    # The first verifications build math-verify's LaTeX parser and fill ANTLR's and
    # sympy's caches (about a second): do it before reporting ready, so no item's time
    # limit pays for it. Then keep the garbage collector off the long-lived objects.
    for gold, answer in WARM_UP:
        try:
            verify(parse(as_latex(gold), parsing_timeout=None), parse(as_latex(answer), parsing_timeout=None), timeout_seconds=None)
        except Exception:
            pass
    gc.collect()
    gc.freeze()
    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        reply: dict[str, object] = {"id": request["id"], "correct": False}
        try:
            target = parse(as_latex(request["answer"]), parsing_timeout=None)
            reply["correct"] = bool(verify(parsed_gold(request["gold"]), target, timeout_seconds=None))
        except Exception as exc:  # math-verify can raise on odd input: that is a wrong answer
            reply["error"] = repr(exc)[:200]
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
