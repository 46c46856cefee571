"""How well the ``sft-oracle`` baseline's SFT phase fits the oracle solutions, per learning rate.

For each learning rate, a fresh copy of a base model runs the trainer's SFT phase
(:class:`pope_env.agents.train.Trainer` with ``steps=0``) on hard problems' oracle solutions,
and the script reports:

* ``sft_loss_first`` / ``sft_loss_last``: the trainer's own report (mean NLL per oracle token
  on the first and the last SFT batch, each measured before that step's update);
* ``entropy_before`` / ``entropy_after``: the trainer's report, mean next-token entropy at the
  oracle tokens (teacher-forced, temperature 1) on the same batches;
* ``heldout_nll_before`` / ``_after``: NLL per token of oracle solutions of held-out hard
  problems (never trained on);
* ``own_entropy_before`` / ``_after``: mean token entropy of the model's *own* samples
  (temperature 1) on held-out hard prompts, the entropy that RL's exploration starts from.

Models: ``--model char`` (default) pretrains the demo's char model with a small
:class:`~pope_env.agents.pretrain.PretrainConfig` (cached) and uses arithmetic chains of 6
operations as the hard problems; ``--model smollm2`` uses SmolLM2-135M-Instruct on MATH
level 5 (slow on CPU: use few ``--steps``).

    python bench/sft_fit.py --model char --lrs 1e-6,1e-5,1e-3 --steps 50
    python bench/sft_fit.py --model smollm2 --lrs 1e-6,1e-5 --steps 10 --prompts 4
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from pope_env.agents.grpo import aggregate
from pope_env.agents.methods import default_renderer, get_method, make_items, sft_items
from pope_env.agents.policy import SamplingParams
from pope_env.agents.train import TrainConfig, Trainer, tokenize_pairs


@torch.no_grad()
def heldout_nll(learner: Any, items: list[Any]) -> float:
    """Mean NLL per oracle-solution token (nats) of ``items`` under ``learner``."""
    prompt_ids, completion_ids = tokenize_pairs(learner, items)
    total, tokens = 0.0, 0
    for s in range(0, len(items), 4):
        tl = learner.token_logprobs(prompt_ids[s:s + 4], completion_ids[s:s + 4])
        total += float(-(tl.logprobs * tl.mask).sum())
        tokens += int(tl.mask.sum())
    return total / max(tokens, 1)


@torch.no_grad()
def own_entropy(learner: Any, items: list[Any], *, n: int, max_new_tokens: int) -> float:
    """Mean token entropy (nats, temperature 1) of ``learner``'s own samples on ``items``."""
    groups = learner.generate([it.prompt for it in items], n=n,
                              sampling=SamplingParams(temperature=1.0, max_new_tokens=max_new_tokens, seed=7))
    gens = [g for row in groups for g in row if g.token_ids]
    total, tokens = 0.0, 0.0
    for s in range(0, len(gens), 8):
        part = gens[s:s + 8]
        tl = learner.token_logprobs([g.prompt_ids for g in part], [g.token_ids for g in part], with_entropy=True)
        total += float(aggregate(tl.entropy, tl.mask, normalizer=1.0))
        tokens += float(tl.mask.sum())
    return total / max(tokens, 1.0)


def setup(model: str, n_train: int, n_heldout: int) -> tuple[Any, Any, list[Any], list[Any], int]:
    """(base learner, renderer, training problems, held-out problems, max_new_tokens)."""
    if model == "char":
        from pope_env.agents.charlm import CharLMConfig
        from pope_env.agents.pretrain import PretrainConfig, pretrain, render_guided_prompt
        from pope_env.datasets import arithmetic

        cfg = PretrainConfig(model=CharLMConfig(d_model=64, n_layers=3, n_heads=4, max_len=192),
                             levels=(1, 4), steps=300, batch_size=64, lr=3e-3)
        base = pretrain(cfg, progress=False)
        problems = arithmetic.generate(n_train + n_heldout, 6, seed=11)
        return base, (lambda p, k, start=0: render_guided_prompt(p, k)), problems[:n_train], problems[n_train:], 120
    from pope_env.agents.hf_policy import HFPolicy
    from pope_env.datasets import load_dataset

    base = HFPolicy("smollm2", dtype="float32", name="smollm2", progress=False)
    problems = [p for p in load_dataset("math-train-l5", limit=4 * (n_train + n_heldout))
                if len(p.solution) < 600][: n_train + n_heldout]
    return base, default_renderer("chat"), problems[:n_train], problems[n_train:], 256


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("char", "smollm2"), default="char")
    ap.add_argument("--lrs", default="1e-6,1e-5,1e-3", help="SFT learning rates, comma-separated")
    ap.add_argument("--steps", type=int, default=get_method("sft-oracle").sft_steps, help="SFT steps")
    ap.add_argument("--prompts", type=int, default=8, help="oracle solutions per SFT step")
    ap.add_argument("--train", type=int, default=64, help="training problems")
    ap.add_argument("--heldout", type=int, default=16, help="held-out problems")
    ap.add_argument("--samples", type=int, default=2, help="own samples per held-out prompt")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base, render, train, heldout, max_new = setup(args.model, args.train, args.heldout)
    held_items = make_items(heldout, render)
    before = {"heldout_nll": heldout_nll(base, held_items),
              "own_entropy": own_entropy(base, held_items, n=args.samples, max_new_tokens=max_new)}
    rows = []
    for lr in (float(x) for x in args.lrs.split(",")):
        learner = copy.deepcopy(base)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(method="sft-oracle", steps=0, sft_steps=args.steps, sft_lr=lr,
                              prompts_per_step=args.prompts, group_size=2, eval_every=0, save_every=10**6,
                              sampling=SamplingParams(max_new_tokens=max_new), tensorboard=False, progress=False)
            res = Trainer(learner, sft_items(train, render), lambda c, it: [0.0] * len(c), cfg, Path(tmp),
                          sft_source=sft_items(train, render, seed=1)).train()
        row = {"model": args.model, "lr": lr, "steps": args.steps, "prompts_per_step": args.prompts,
               **{k: round(v, 4) if isinstance(v, float) else v for k, v in res.sft.items() if k not in ("lr", "steps")},
               "heldout_nll_before": round(before["heldout_nll"], 4),
               "heldout_nll_after": round(heldout_nll(learner, held_items), 4),
               "own_entropy_before": round(before["own_entropy"], 4),
               "own_entropy_after": round(own_entropy(learner, held_items, n=args.samples, max_new_tokens=max_new), 4),
               "wall_s": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
