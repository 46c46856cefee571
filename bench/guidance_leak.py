"""Benchmark: how often the guided prefix ``z[:cap]`` gives the answer away, before and after
the cap excludes steps that state the answer.

*Before* is the cap that only excludes the step holding the first ``\\boxed{}``
(:func:`pope_env.solution_steps.max_prefix_len`); *after* is :func:`pope_env.guidance.prefix_cap`,
which also excludes the first earlier step that states the answer
(:mod:`pope_env.answer_leak`). For every problem of MATH train (``--levels``, default 5) it
reports, among the problems that can be guided (cap >= 1):

* ``verbatim``: the gold answer, 2 or more characters once whitespace is removed, occurs
  verbatim in ``z[:cap]`` (whitespace removed). Crude: ``12`` inside ``120`` counts, and so
  does an answer that is only an intermediate value; ``verbatim_last_step`` counts those where
  it occurs in the step just before the cap.
* ``stated``: some step before the cap *states* the answer (a final ``= A`` or a math span
  equal to A, by the math reward's rules and math-verify; :mod:`pope_env.answer_leak`).
  Zero after by construction, except for verifications that timed out (reported).

It also reports the caps (mean, how many shrank, how many problems became unguidable), the
wall time of the scan (math-verify workers of :func:`pope_env.rewards.math.default_verifier`)
and a few examples. Writes ``bench/results/guidance_leak.json`` (``--out``).

    python bench/guidance_leak.py [--levels 5] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

RESULTS = Path(__file__).parent / "results" / "guidance_leak.json"


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _verbatim(problem, cap: int) -> tuple[bool, bool]:
    gold = _squash(problem.answer or "")
    if len(gold) < 2 or cap == 0:
        return False, False
    return gold in _squash("".join(problem.steps[:cap])), gold in _squash(problem.steps[cap - 1])


def _summary(problems, caps, scans) -> dict:
    guidable = [(p, c, s) for p, c, s in zip(problems, caps, scans) if c >= 1]
    verbatim = [_verbatim(p, c) for p, c, _ in guidable]
    stated = sum(s.stating_step is not None and s.stating_step < c for _, c, s in guidable)
    return {
        "guidable": len(guidable),
        "verbatim": sum(v for v, _ in verbatim),
        "verbatim_last_step": sum(v and last for v, last in verbatim),
        "stated": stated,
        "mean_cap": round(sum(c for _, c, _ in guidable) / max(1, len(guidable)), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=int, nargs="+", default=[5], help="MATH levels (default: 5)")
    parser.add_argument("--limit", type=int, default=None, help="first N problems only")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from pope_env import answer_leak
    from pope_env.datasets import load_dataset
    from pope_env.rewards.math import default_verifier
    from pope_env.solution_steps import max_prefix_len

    problems = [p for p in load_dataset("math-train") if p.level in set(args.levels)][: args.limit]
    verifier = default_verifier()
    verifier.warm_up()
    items_before = verifier.stats["items"]
    t0 = time.perf_counter()
    scans = answer_leak.scan_problems(problems, progress=True)
    seconds = time.perf_counter() - t0
    before_caps = [max_prefix_len(p) for p in problems]
    after_caps = [s.cap for s in scans]
    before = _summary(problems, before_caps, scans)
    after = _summary(problems, after_caps, scans)
    shrunk = [(p, s) for p, b, s in zip(problems, before_caps, scans) if s.cap < b]
    lost = sum(b >= 1 and s.cap == 0 for b, s in zip(before_caps, scans))
    rng = random.Random(0)
    examples = [
        {"id": p.id, "answer": p.answer, "stated": s.stated, "step": p.steps[s.stating_step].strip()[:300],
         "cap_before": s.box_cap, "cap_after": s.cap}
        for p, s in rng.sample(shrunk, min(12, len(shrunk)))
    ]
    result = {
        "dataset": "math-train",
        "levels": args.levels,
        "problems": len(problems),
        "before": before,
        "after": after,
        "caps_shrunk": len(shrunk),
        "became_unguidable": lost,
        "timed_out_candidates": sum(s.timed_out for s in scans),
        "math_verify_items": verifier.stats["items"] - items_before,
        "scan_seconds": round(seconds, 1),
        "verifier_workers": verifier.n_workers,
        "verifier_timeout_s": verifier.timeout_s,
        "examples": examples,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "cpus": os.cpu_count()},
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from pope_env.io import atomic_write_text

    atomic_write_text(args.out, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("examples", "machine")}, indent=2))
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
