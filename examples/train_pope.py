"""POPE end to end from Python: hard split -> prefix search (i*) -> GRPO on guided + unguided prompts.

The same pipeline as ``pope-env train --method pope``, spelled out with the library so you
can change any stage::

    python examples/train_pope.py --model smollm2 --dataset math-train-l5 --limit 16 --steps 20

1. ``run_hard_split`` keeps the problems the base model never solves in ``k`` samples;
2. ``run_prefix_search`` finds, per hard problem, the shortest oracle prefix ``i*`` from
   which the model succeeds at least once;
3. ``build_source(get_method("pope"), ...)`` mixes guided (``i*`` steps shown) and unguided
   prompts of the hard problems exactly 1:1 in every batch;
4. ``Trainer`` runs GRPO and evaluates unguided pass@k on the hard set, writing logs,
   checkpoints, ``report.json`` and ``passk.png`` to ``--out`` (re-run to resume); its eval
   hook ``OwnStateReachHook`` also logs how often the model's own unguided partial
   solutions fall into S_good (``s_good_overlap``), the overlap POPE credits for transfer.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--dataset", default="math-train-l5")
    ap.add_argument("--limit", type=int, default=16, help="problems considered for the hard split")
    ap.add_argument("--k", type=int, default=4, help="samples per problem/state in split and search")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--out", default="runs/train_pope")
    args = ap.parse_args()

    from pope_env.agents.grpo import GRPOConfig
    from pope_env.agents.hf_policy import HFPolicy
    from pope_env.agents.methods import build_source, default_renderer, get_method, guidance_segments, make_items
    from pope_env.agents.policy import SamplingParams
    from pope_env.agents.reach_hook import OwnStateReachHook
    from pope_env.agents.rollout import math_reward
    from pope_env.agents.train import TrainConfig, Trainer
    from pope_env.datasets import load_dataset
    from pope_env.hard_split import run_hard_split
    from pope_env.prefix_search import run_prefix_search

    out = Path(args.out)
    sampling = SamplingParams(temperature=1.0, max_new_tokens=args.max_new_tokens)
    policy = HFPolicy(args.model, dtype="float32", progress=False)
    problems = load_dataset(args.dataset, limit=args.limit)
    by_id = {p.id: p for p in problems}

    split = run_hard_split(problems, policy, dataset=args.dataset, out=out / "hard_split.jsonl", k=args.k,
                           sampling=sampling)
    hard = [by_id[pid] for pid in split.hard_ids]
    print(f"{len(hard)} of {len(problems)} problems are hard (pass@{args.k} = 0)")
    if not hard:
        return

    guidance = run_prefix_search(hard, policy, dataset=args.dataset, out=out / "guidance.jsonl", k=args.k,
                                 sampling=sampling, skip_unusable=True)
    segments = guidance_segments(guidance)
    hard = [p for p in hard if p.id in segments]

    method = get_method("pope")
    render = default_renderer("chat")
    config = TrainConfig(
        method="pope", steps=args.steps, prompts_per_step=4, group_size=4, sampling=sampling,
        grpo=method.grpo_config(GRPOConfig(lr=1e-6, micro_batch_size=4)), eval_every=5, eval_k=4, save_every=5,
    )
    overlap = OwnStateReachHook(hard[:8], k=2, sampling=sampling, details=out / "pope" / "own_states.jsonl")
    trainer = Trainer(policy, build_source(method, render, hard=hard, guidance=segments), math_reward(), config,
                      out / "pope", eval_items=make_items(hard, render), eval_hooks=[overlap])
    result = trainer.train()
    for e in result.evals:
        print(f"step {e['step']:4d}  unguided hard pass@4 {e['pass@4']:.3f}  "
              f"own states in S_good {e['s_good_overlap']:.3f}")
    print(f"solved set: {result.solved_set_size} problems; logs and plot in {out / 'pope'}")


if __name__ == "__main__":
    main()
