"""Benchmark: rollouts spent by the i* prefix-search strategies vs the linear scan.

Runs every strategy of :data:`pope_env.prefix_search.STRATEGIES` on the same fixed set of
easy MATH-500 problems (level 1 whose solution leaves room for a search: prefix cap >= 2,
first ``--problems`` by id) with a real LLM (default: SmolLM2-135M-Instruct, offline), in
the same process, and reports per strategy
the policy rollouts it spent and how often it finds the same i* as the linear scan (a
fallback counts as "same" when both fall back).

Measurements are seeded per (seed, problem, prefix length, chunk), so a state measured by two
strategies is the same random event; the policy is wrapped in a memo so such a chunk is
generated once and replayed for the other strategy. Rollouts are counted per strategy from
its own evidence (what it would cost alone); the wall time of the run is reported separately.

Writes ``bench/results/prefix_search.json``. Goal (issue 3): galloping uses at most 1/3 of the
linear scan's rollouts with the same i* on at least 95% of the problems.

    python bench/prefix_search.py [--problems 12] [--k 4] [--max-new-tokens 160]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "prefix_search.json"


class MemoPolicy:
    """Replays identical seeded ``generate`` calls; counts the completions really generated.

    Generations are also appended to a JSONL file (``--generations``), so an interrupted
    bench resumes without sampling again: the calls are seeded, so a replayed call returns
    exactly what the model would sample.
    """

    def __init__(self, policy, path: Path | None):
        from pope_env.io import JsonlAppender, read_jsonl

        self.policy, self.name = policy, policy.name
        self.memo: dict[str, list[list[str]]] = {}
        if path is not None and path.exists():
            for record in read_jsonl(path, strict=False):
                self.memo[record["key"]] = record["texts"]
        self.sink = JsonlAppender(path) if path is not None else None
        self.generated = 0
        self.replayed_from_disk = 0

    def generate(self, prompts, *, n=1, sampling=None):
        from pope_env.agents.policy import Generation

        key = hashlib.sha256(json.dumps(
            [self.name, prompts, n, dataclasses.asdict(sampling) if sampling else None],
            default=str).encode()).hexdigest()
        if key not in self.memo:
            groups = self.policy.generate(prompts, n=n, sampling=sampling)
            self.memo[key] = [[g.text for g in group] for group in groups]
            self.generated += n * len(prompts)
            if self.sink is not None:
                self.sink.append({"key": key, "texts": self.memo[key]})
        return [[Generation(text=t) for t in group] for group in self.memo[key]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--dataset", default="math500")
    parser.add_argument("--level", type=int, default=1, help="MATH level of the problems")
    parser.add_argument("--min-cap", type=int, default=2, help="smallest prefix cap kept")
    parser.add_argument("--problems", type=int, default=10)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--chunk-size", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--generations", default="default",
                        help="JSONL cache of sampled completions, so a re-run resumes "
                             "(default: in the pope-env cache; 'none' disables it)")
    args = parser.parse_args(argv)
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    import torch

    torch.set_num_threads(args.threads)
    from pope_env.agents.hf_policy import HFPolicy
    from pope_env.agents.policy import SamplingParams
    from pope_env.datasets import load_dataset
    from pope_env.errors import DataFormatError
    from pope_env.guidance import check_guidable
    from pope_env.io import atomic_write_json
    from pope_env.prefix_search import STRATEGIES, default_scorer, run_prefix_search

    def cap_of(p):
        try:
            return check_guidable(p)
        except DataFormatError:
            return 0

    problems = sorted((p for p in load_dataset(args.dataset)
                       if p.level == args.level and cap_of(p) >= args.min_cap),
                      key=lambda p: p.id)[: args.problems]
    from pope_env.paths import cache_dir

    generations = (None if args.generations == "none" else
                   cache_dir("bench") / "prefix_search_generations.jsonl"
                   if args.generations == "default" else Path(args.generations))
    policy = MemoPolicy(HFPolicy(args.model, name=args.model, progress=False), generations)
    sampling = SamplingParams(temperature=args.temperature, max_new_tokens=args.max_new_tokens)
    scorer = default_scorer()
    start = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ["linear", *sorted(set(STRATEGIES) - {"linear"})]:
            results[name] = run_prefix_search(
                problems, policy, dataset=args.dataset, out=os.path.join(tmp, f"{name}.jsonl"),
                k=args.k, strategy=name, seed=args.seed, scorer=scorer, sampling=sampling,
                chunk_size=args.chunk_size,
            ).records
    wall = time.perf_counter() - start

    linear = results["linear"]
    linear_rollouts = sum(r.rollouts for r in linear.values())
    per_problem = []
    for p in problems:
        row = {"problem_id": p.id, "n_steps": len(p.steps), "cap": linear[p.id].cap}
        for name, recs in results.items():
            row[name] = {"i_star": recs[p.id].i_star, "rollouts": recs[p.id].rollouts}
        per_problem.append(row)
    strategies = {}
    print(f"\n{len(problems)} problems ({args.dataset}, level {args.level}), model {args.model}, "
          f"k={args.k}, chunk={args.chunk_size}, max_new_tokens={args.max_new_tokens}")
    print(f"{'strategy':<10} {'rollouts':>8} {'ratio vs linear':>16} {'same i*':>8}")
    for name, recs in results.items():
        rollouts = sum(r.rollouts for r in recs.values())
        same = sum(recs[p.id].i_star == linear[p.id].i_star for p in problems) / len(problems)
        strategies[name] = {"rollouts": rollouts, "ratio_vs_linear": rollouts / linear_rollouts,
                            "same_i_star_fraction": same,
                            "fallbacks": sum(r.fallback for r in recs.values())}
        print(f"{name:<10} {rollouts:>8} {rollouts / linear_rollouts:>16.3f} {same:>8.2%}")
    print(f"generated {policy.generated} new completions in {wall:.0f} s "
          f"(the rest replayed from {generations})")
    report = {
        "bench": "prefix_search",
        "goal": "galloping rollouts <= 1/3 of linear with the same i* on >= 95% of problems",
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "problems": len(problems),
        "strategies": strategies,
        "met_goal": strategies["galloping"]["ratio_vs_linear"] <= 1 / 3
        and strategies["galloping"]["same_i_star_fraction"] >= 0.95,
        "completions_generated_this_run": policy.generated,
        "distinct_generate_calls": len(policy.memo),
        "wall_s": round(wall, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, torch threads {args.threads}",
        "per_problem": per_problem,
    }
    atomic_write_json(args.out, report)
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
