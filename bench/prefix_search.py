"""Benchmark: rollouts spent by the i* prefix-search strategies vs the linear scan.

Runs every strategy of :data:`pope_env.prefix_search.STRATEGIES` on the same fixed problems
with the same policy, in the same process, and reports per strategy the policy rollouts it
spent and how often it finds the same i* as the linear scan (a fallback counts as "same"
when both fall back). Goal (issue 3): a strategy using at most 1/3 of the linear scan's
rollouts with the same i* on at least 95% of the problems.

Settings (``--setting``):

* ``charlm`` (default): the CPU demo's base model, the tiny character-level transformer of
  ``agents/charlm.py`` pretrained by the demo's own code and config
  (:func:`pope_env.agents.pretrain.pretrain` with the demo preset ``--preset``: ``default``,
  or ``full`` with twice the pretraining; cached under the demo's cache folder by a hash of
  that config, so ``pope-env demo`` and this bench share it; about 6 / 10 minutes to make on
  2 cores if absent). Problems: a hard split made the way the demo makes it (chains of the
  preset's 6-7 operations, or ``--hard-levels MIN MAX``, with pass@16 = 0 for the base;
  cached by config and weights), problems ``--offset .. --offset + --problems`` of it.
  Prompts are the demo's plain roll-in text (a callable ``prompt_format``), reward the demo's
  exact-integer answer check, temperature 1 and 160 new characters as in the demo, ``k`` = 8
  as the demo's i* search. The README's headline run is
  ``--preset full --hard-levels 8 8 --problems 120``.
* ``smollm2``: SmolLM2-135M-Instruct (offline) on the first level-1 MATH-500 problems whose
  prefix cap is >= 2, chat prompts, math-verify.

Measurements are seeded per (seed, problem, prefix length, chunk), so a state measured by two
strategies is the same random event; the policy is wrapped in a memo so such a chunk is
generated once and replayed for the other strategy (and, through a JSONL cache of the
generations keyed by prompt, sampling and a hash of the weights, for a later run). Rollouts are counted per strategy from its own evidence (what
it would cost alone); the wall time of the run is reported separately. Besides the
registered strategies it runs ``scouting`` with more chunks per scout (``--scout-chunks``),
to show how its rollouts trade against agreement, and reports the *oracle floor*: what a
search told the linear scan's i* would still spend to verify it (``k`` samples at
``i* - 1``, one at ``i*``).

Writes ``bench/results/prefix_search.json`` (``--out``).

    python bench/prefix_search.py [--setting charlm] [--problems 60] [--k 8] [--chunk-size 1]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import hashlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "prefix_search.json"
GOAL_RATIO, GOAL_SAME = 1 / 3, 0.95


class MemoPolicy:
    """Replays identical seeded ``generate`` calls; counts the completions really generated.

    Generations are also appended to a JSONL file, so an interrupted bench resumes without
    sampling again: the calls are seeded, so a replayed call returns exactly what the model
    would sample.
    """

    def __init__(self, policy, path: Path | None, identity: str):
        from pope_env.io import JsonlAppender, read_jsonl

        # The key names the exact weights (``identity``), not just the policy's display name:
        # two bases of one architecture share a name but never their generations.
        self.policy, self.name = policy, identity
        self.memo: dict[str, list[list[str]]] = {}
        if path is not None and path.exists():
            for record in read_jsonl(path, strict=False):
                self.memo[record["key"]] = record["texts"]
        self.sink = JsonlAppender(path) if path is not None else None
        self.generated = 0
        self.used: set[str] = set()

    def generate(self, prompts, *, n=1, sampling=None):
        from pope_env.agents.policy import Generation

        key = hashlib.sha256(json.dumps(
            [self.name, prompts, n, dataclasses.asdict(sampling) if sampling else None],
            default=str).encode()).hexdigest()
        self.used.add(key)
        if key not in self.memo:
            groups = self.policy.generate(prompts, n=n, sampling=sampling)
            self.memo[key] = [[g.text for g in group] for group in groups]
            self.generated += n * len(prompts)
            if self.sink is not None:
                self.sink.append({"key": key, "texts": self.memo[key]})
        return [[Generation(text=t) for t in group] for group in self.memo[key]]


@dataclasses.dataclass
class Setting:
    """What one bench setting searches: policy, problems, scoring and prompt layout."""

    policy: Any
    problems: list
    dataset: str
    scorer: Any
    prompt_format: Any
    sampling: Any
    notes: dict[str, Any]


def charlm_setting(args: argparse.Namespace) -> Setting:
    """The CPU demo's base model on (part of) the demo's hard split."""
    from pope_env.agents.demo import arithmetic_reward, get_preset
    from pope_env.agents.demo_testbed import measure_hard_split
    from pope_env.agents.policy import SamplingParams
    from pope_env.agents.pretrain import base_dir, pretrain, render_guided_prompt
    from pope_env.datasets import arithmetic
    from pope_env.io import atomic_write_json
    from pope_env.paths import cache_dir
    from pope_env.problem import Problem

    cfg = get_preset(args.preset)
    if args.hard_levels:
        cfg = dataclasses.replace(cfg, hard_levels=tuple(args.hard_levels))
    cached = (base_dir(cfg.pretrain) / "model.pt").exists()
    t0 = time.perf_counter()
    base = pretrain(cfg.pretrain, progress=True)
    print(f"base model {'loaded from' if cached else 'pretrained into'} {base_dir(cfg.pretrain)} "
          f"({time.perf_counter() - t0:.0f} s)")
    mnt = cfg.max_new_tokens
    weights = hashlib.sha256((base_dir(cfg.pretrain) / "model.pt").read_bytes()).hexdigest()[:16]
    # The split depends on the weights, not only on the config that made them.
    key = cfg.digest("pretrain", "hard_levels", "n_candidates", "screen_k", "max_new_tokens") + "-" + weights
    path = cache_dir("bench") / f"prefix_search_charlm_hard-{key}.json"
    if path.exists():
        hard = [Problem.from_dict(d) for d in json.loads(path.read_text())["problems"]]
    else:  # the demo's hard split (agents/demo_testbed.py:build_testbed)
        cands = arithmetic.generate(cfg.n_candidates, cfg.hard_levels, split="train", seed=0,
                                    max_value=cfg.pretrain.max_value)
        split = measure_hard_split(base, cands, path.with_suffix(".split.jsonl"), dataset=f"bench-{key}",
                                   k=cfg.screen_k, chunk=cfg.screen_chunk, seed=1, max_new_tokens=mnt)
        hard = [p for p in cands if p.id in set(split.hard_ids)]
        atomic_write_json(path, {"key": key, "problems": [p.to_dict() for p in hard]})
    problems = hard[args.offset : args.offset + args.problems]

    def score(completions, problem):
        return [arithmetic_reward(c, problem) > 0 for c in completions]

    return Setting(
        policy=base, problems=problems, dataset="demo-hard-split", scorer=score,
        prompt_format=render_guided_prompt,
        sampling=SamplingParams(temperature=args.temperature or 1.0, max_new_tokens=mnt),
        notes={"model": f"charlm {base.model.num_parameters()} parameters (demo {args.preset} base "
                        f"{base_dir(cfg.pretrain).name})",
               "problems_from": f"demo hard split ({len(hard)} of {cfg.n_candidates} candidates, "
                                f"{cfg.hard_levels[0]}-{cfg.hard_levels[1]} operations, pass@"
                                f"{cfg.screen_k} = 0), [{args.offset}:{args.offset + args.problems}]",
               "weights_sha256": weights,
               "reward": "exact integer answer (demo arithmetic_reward)",
               "max_new_tokens": mnt},
    )


def smollm2_setting(args: argparse.Namespace) -> Setting:
    """SmolLM2-135M-Instruct on easy MATH-500 problems (the issue's first setting)."""
    from pope_env.agents.hf_policy import HFPolicy
    from pope_env.agents.policy import SamplingParams
    from pope_env.datasets import load_dataset
    from pope_env.errors import DataFormatError
    from pope_env.guidance import check_guidable
    from pope_env.probe import default_scorer

    def cap_of(p):
        try:
            return check_guidable(p)
        except DataFormatError:
            return 0

    problems = sorted((p for p in load_dataset("math500") if p.level == 1 and cap_of(p) >= 2),
                      key=lambda p: p.id)[args.offset : args.offset + args.problems]
    return Setting(
        policy=HFPolicy("smollm2", name="smollm2", progress=False), problems=problems,
        dataset="math500", scorer=default_scorer(), prompt_format="chat",
        sampling=SamplingParams(temperature=args.temperature or 0.7, max_new_tokens=48),
        notes={"model": "SmolLM2-135M-Instruct", "problems_from": "MATH-500 level 1, prefix cap >= 2",
               "reward": "math-verify", "max_new_tokens": 48},
    )


SETTINGS = {"charlm": charlm_setting, "smollm2": smollm2_setting}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="charlm")
    parser.add_argument("--preset", default="default", choices=("default", "full"),
                        help="charlm setting: whose base model and hard split (the demo preset's; "
                             "full pretrains twice as long)")
    parser.add_argument("--hard-levels", type=int, nargs=2, metavar=("MIN", "MAX"), default=None,
                        help="charlm setting: operation counts of the hard candidates (default: the "
                             "preset's, 6 7)")
    parser.add_argument("--problems", type=int, default=60)
    parser.add_argument("--offset", type=int, default=0,
                        help="skip this many problems of the setting's list (0: the bench set)")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--chunk-size", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=None,
                        help="default: the setting's (charlm 1.0, smollm2 0.7)")
    parser.add_argument("--scout-chunks", type=int, nargs="*", default=[2, 4, 6],
                        help="also run scouting with these many chunks per scout (its trade-off "
                             "of rollouts against agreement); the registered 'scouting' uses 1")
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
    from pope_env.io import atomic_write_json
    from pope_env.paths import cache_dir
    from pope_env.prefix_search import STRATEGIES, SearchStrategy, run_prefix_search, scouting_search

    setting = SETTINGS[args.setting](args)
    problems = setting.problems
    generations = (None if args.generations == "none" else
                   cache_dir("bench") / f"prefix_search_generations-{args.setting}.jsonl"
                   if args.generations == "default" else Path(args.generations))
    policy = MemoPolicy(setting.policy, generations, identity=f"{setting.notes['model']} {setting.notes.get('weights_sha256', '')}")
    start = time.perf_counter()
    searches = [STRATEGIES["linear"], *(STRATEGIES[n] for n in sorted(set(STRATEGIES) - {"linear"}))]
    searches += [SearchStrategy(f"scouting/{m}", functools.partial(scouting_search, scout_chunks=m),
                                f"scouting with {m} chunks per scout") for m in args.scout_chunks]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for search in searches:
            name = search.name
            results[name] = run_prefix_search(
                problems, policy, dataset=setting.dataset,
                out=os.path.join(tmp, f"{name.replace('/', '-')}.jsonl"),
                k=args.k, strategy=search, seed=args.seed, scorer=setting.scorer,
                sampling=setting.sampling, chunk_size=args.chunk_size,
                prompt_format=setting.prompt_format,
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
    # What an oracle that knows the linear scan's i* would spend to verify it: k samples for
    # the failing state i* - 1 (the cap for a fallback) plus one success at i*. No strategy
    # that returns a verified i* equal to the linear scan's can spend less on a problem.
    floor = sum(args.k * (r.i_star is None or r.i_star > 1) + (r.i_star is not None)
                for r in linear.values())
    strategies = {}
    print(f"\n{len(problems)} problems ({setting.notes['problems_from']}), model "
          f"{setting.notes['model']}, k={args.k}, chunk={args.chunk_size}")
    print(f"linear i* distribution: {dict(sorted(collections.Counter(str(r.i_star) for r in linear.values()).items()))}")
    print(f"oracle floor (verify i* - 1 with k samples, one success at i*): "
          f"{floor / linear_rollouts:.3f} of linear")
    print(f"{'strategy':<12} {'rollouts':>8} {'ratio vs linear':>16} {'same i*':>8}")
    for name, recs in results.items():
        rollouts = sum(r.rollouts for r in recs.values())
        same = sum(recs[p.id].i_star == linear[p.id].i_star for p in problems)
        ratio = rollouts / linear_rollouts
        strategies[name] = {"rollouts": rollouts, "ratio_vs_linear": round(ratio, 4),
                            "same_i_star": same, "same_i_star_fraction": round(same / len(problems), 4),
                            "fallbacks": sum(r.fallback for r in recs.values()),
                            "met_goal": ratio <= GOAL_RATIO and same / len(problems) >= GOAL_SAME}
        print(f"{name:<12} {rollouts:>8} {ratio:>16.3f} {same / len(problems):>8.2%}")
    print(f"generated {policy.generated} new completions in {wall:.0f} s "
          f"(the rest replayed from {generations})")
    report = {
        "bench": "prefix_search",
        "goal": "a strategy with rollouts <= 1/3 of linear's and the same i* on >= 95% of problems",
        "date": time.strftime("%Y-%m-%d"),
        "settings": {**{k: v for k, v in vars(args).items() if k != "out"},
                     **setting.notes, "sampling": dataclasses.asdict(setting.sampling)},
        "problems": len(problems),
        "linear_i_star_counts": dict(sorted(collections.Counter(
            str(r.i_star) for r in linear.values()).items())),
        "oracle_floor_ratio": round(floor / linear_rollouts, 4),
        "strategies": strategies,
        "met_goal": any(s["met_goal"] for n, s in strategies.items() if n != "linear"),
        "completions_generated_this_run": policy.generated,
        "distinct_generate_calls": len(policy.used),
        "wall_s": round(wall, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, torch threads {args.threads}",
        "per_problem": per_problem,
    }
    atomic_write_json(args.out, report)
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
