"""One GRPO update on a fixed batch under ``accelerate`` (1 or N processes), then a short
Trainer run; prints one JSON line per check from the main process.

    python tests/accelerate_script.py OUT_DIR
    accelerate launch --cpu --num_processes 2 tests/accelerate_script.py OUT_DIR

Every process builds the same tiny model and the same batch of 8 completions; process ``r``
of ``N`` trains on its contiguous shard. The loss and the updated parameters must match the
single-process run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    import torch

    torch.set_num_threads(1)
    from accelerate import Accelerator
    from tiny_learner import TinyLearner

    from pope_env.agents.grpo import Batch, GRPOConfig, grpo_update, make_optimizer
    from pope_env.agents.policy import SamplingParams

    out_dir = Path(sys.argv[1])
    acc = Accelerator(cpu=True)
    learner = TinyLearner(seed=0)
    gens = learner.generate(["3+4*2", "9-1"], n=4, sampling=SamplingParams(max_new_tokens=7))
    flat = [g for group in gens for g in group]
    full = Batch([list(g.prompt_ids) for g in flat], [list(g.token_ids) for g in flat],
                 [list(g.logprobs) for g in flat], [1.5, -0.5, -0.5, 0.5, 0.25, 0.25, -0.75, 1.0])
    per = len(full) // acc.num_processes
    shard = full.select(list(range(acc.process_index * per, (acc.process_index + 1) * per)))
    cfg = GRPOConfig(lr=1e-2, micro_batch_size=2, max_grad_norm=0.5)
    model, opt = acc.prepare(learner.model, make_optimizer(learner.model, cfg))
    learner.model = acc.unwrap_model(model)
    stats = grpo_update(learner, opt, shard, cfg, accelerator=acc, model=model)
    checksum = sum(float(p.detach().double().sum()) for p in learner.model.parameters())
    if acc.is_main_process:
        print(json.dumps({"check": "update", "processes": acc.num_processes, "loss": stats.loss,
                          "grad_norm": stats.grad_norm, "tokens": stats.tokens, "checksum": checksum}), flush=True)

    # A short Trainer run under the same launcher (sharded rollouts, reduced metrics, checkpoint).
    from pope_env.agents.methods import build_source, get_method, make_items
    from pope_env.agents.train import TrainConfig, Trainer
    from pope_env.datasets import arithmetic

    hard = arithmetic.generate(8, 3, seed=2)
    render = lambda p, i: p.question + "\n" + "".join(p.steps[:i])  # noqa: E731
    reward = lambda cs, items: [1.0 if c[:1] == it.problem.answer[:1] else 0.0 for c, it in zip(cs, items)]  # noqa: E731
    tcfg = TrainConfig(method="pope", steps=2, prompts_per_step=4, group_size=2, sampling=SamplingParams(max_new_tokens=5),
                       grpo=GRPOConfig(lr=1e-3), eval_every=0, eval_k=2, save_every=1, progress=False, tensorboard=False)
    trainer = Trainer(TinyLearner(seed=1), build_source(get_method("pope"), render, hard=hard,
                      guidance={p.id: 1 for p in hard}), reward, tcfg, out_dir, eval_items=make_items(hard[:2], render),
                      accelerator=acc)
    res = trainer.train()
    if acc.is_main_process:
        print(json.dumps({"check": "trainer", "steps": res.steps, "evals": len(res.evals)}), flush=True)


if __name__ == "__main__":
    main()
