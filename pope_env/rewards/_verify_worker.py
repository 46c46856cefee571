"""Worker process of :class:`pope_env.rewards.math.MathVerifier` (run as a script).

Protocol, one JSON object per line: the worker prints ``{"ready": true}`` once math-verify
is imported (or ``{"error": "..."}`` and exits); then for each request
``{"id": N, "gold": G, "answer": A}`` on stdin it prints ``{"id": N, "correct": bool}``
(plus ``"error"`` when math-verify raised). The parent enforces the wall-clock limit by
killing this process, which is why math-verify's own SIGALRM timeouts are disabled here.

This file imports only the standard library and math-verify (not pope_env), so it starts
the same way however pope-env was installed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from functools import lru_cache


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

    # The first verification builds math-verify's LaTeX parser (about a second): do it
    # before reporting ready, so no item's time limit pays for it.
    verify(parse(as_latex("\\frac{1}{2}"), parsing_timeout=None), parse(as_latex("x+1"), parsing_timeout=None), timeout_seconds=None)
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
