"""A small real training run used by the subprocess tests (kill -9 + resume, accelerate).

    python tests/train_script.py OUTPUT_DIR [--steps N] [--delay S] [--lr LR]

Trains the tiny Llama of :mod:`tiny_learner` with POPE's 1:1 guided/unguided mixture on
synthetic arithmetic, rewarded when the completion starts with the answer's first digit
(a dense enough reward for a random model), checkpointing every step. ``--delay`` sleeps
in the reward function so a test can kill the run between steps. At the end it prints one
JSON line with a checksum of the parameters.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("output_dir")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--prompts", type=int, default=4)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from tiny_learner import TinyLearner

    from pope_env.agents.grpo import GRPOConfig
    from pope_env.agents.methods import build_source, get_method, make_items
    from pope_env.agents.policy import SamplingParams
    from pope_env.agents.train import TrainConfig, Trainer
    from pope_env.datasets import arithmetic

    hard = arithmetic.generate(12, 4, seed=1)
    render = lambda p, i: p.question + "\n" + "".join(p.steps[:i])  # noqa: E731
    method = get_method("pope")
    source = build_source(method, render, hard=hard, guidance={p.id: 2 for p in hard}, seed=0)

    def reward(completions, items):
        if args.delay:
            time.sleep(args.delay)
        return [1.0 if c[:1] == it.problem.answer[:1] else 0.0 for c, it in zip(completions, items)]

    cfg = TrainConfig(
        method="pope", steps=args.steps, prompts_per_step=args.prompts, group_size=4,
        sampling=SamplingParams(max_new_tokens=6), grpo=method.grpo_config(GRPOConfig(lr=args.lr)),
        eval_every=2, eval_k=2, save_every=1, progress=False, tensorboard=False,
    )
    learner = TinyLearner(seed=0)
    trainer = Trainer(learner, source, reward, cfg, args.output_dir, eval_items=make_items(hard[:3], render))
    result = trainer.train()
    if trainer.accelerator.is_main_process:
        checksum = sum(float(p.detach().double().sum()) for p in learner.model.parameters())
        print(json.dumps({"steps": result.steps, "checksum": checksum}))


if __name__ == "__main__":
    main()
