"""Your own model in the GRPO loop: a hand-written character GRU trained with pope-env's trainer.

The trainer needs a *learner policy*, not a transformers model: any object with

* ``generate(prompts, n=, sampling=) -> list[list[Generation]]`` (token ids + log-probs),
* ``model`` (the ``torch.nn.Module`` to train), and
* ``token_logprobs(prompt_ids, completion_ids, with_entropy=) -> TokenLogprobs``.

This script writes one in ~60 lines around a 1-layer GRU, trains it with GRPO on synthetic
one-operation arithmetic (``Compute left to right: 3+4`` -> ``\\boxed{7}``) using the real
math-verify reward, and then runs it as an agent (``act(observation, info)``) through
:class:`~pope_env.agents.policy.PolicyAgent`. On 2 CPU cores it takes about a minute::

    python examples/custom_agent.py --steps 30 --out runs/custom_agent
"""

from __future__ import annotations

import argparse
import string
from collections.abc import Sequence

import torch
from torch import nn

from pope_env.agents.grpo import GRPOConfig
from pope_env.agents.methods import build_source, get_method, make_items, sft_items
from pope_env.agents.policy import Generation, PolicyAgent, Prompt, SamplingParams, TokenLogprobs
from pope_env.agents.rollout import math_reward
from pope_env.agents.train import TrainConfig, Trainer
from pope_env.datasets import arithmetic

VOCAB = ["<eos>"] + list(string.digits + string.ascii_letters + " +-*:=\\{}\n")
EOS = 0


def encode(text: str) -> list[int]:
    return [VOCAB.index(c) for c in text if c in VOCAB]


class GRUPolicy:
    """A character-level GRU language model as a pope-env learner policy."""

    name = "char-gru"

    def __init__(self, hidden: int = 128, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.model = nn.ModuleDict({
            "embed": nn.Embedding(len(VOCAB), hidden),
            "gru": nn.GRU(hidden, hidden, batch_first=True),
            "head": nn.Linear(hidden, len(VOCAB)),
        })

    def _logits(self, ids: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        out, state = self.model["gru"](self.model["embed"](ids), state)
        return self.model["head"](out), state

    @staticmethod
    def _text(prompt: Prompt) -> str:
        return prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)

    @torch.no_grad()
    def generate(self, prompts: Sequence[Prompt], *, n: int = 1,
                 sampling: SamplingParams = SamplingParams()) -> list[list[Generation]]:
        out = []
        for prompt in prompts:
            prompt_ids = encode(self._text(prompt))[-200:] or [EOS]
            logits, state = self._logits(torch.tensor([prompt_ids] * n))
            last = logits[:, -1]
            ids, logps = [[] for _ in range(n)], [[] for _ in range(n)]
            alive = torch.ones(n, dtype=torch.bool)
            for _ in range(sampling.max_new_tokens):
                logp = torch.log_softmax(last, -1)
                probs = torch.softmax(last / max(sampling.temperature, 1e-6), -1)
                tok = torch.multinomial(probs, 1).squeeze(1)
                for i in range(n):
                    if alive[i]:
                        ids[i].append(int(tok[i]))
                        logps[i].append(float(logp[i, tok[i]]))
                alive &= tok != EOS
                if not alive.any():
                    break
                logits, state = self._logits(tok[:, None], state)
                last = logits[:, -1]
            out.append([Generation(text="".join(VOCAB[t] for t in row if t != EOS), prompt_ids=tuple(prompt_ids),
                                   token_ids=tuple(row), logprobs=tuple(lp),
                                   finish_reason="stop" if row and row[-1] == EOS else "length")
                        for row, lp in zip(ids, logps)])
        return out

    def token_logprobs(self, prompt_ids, completion_ids, *, with_entropy: bool = False) -> TokenLogprobs:
        width = max(len(c) for c in completion_ids)
        rows_lp, rows_ent, mask = [], [], torch.zeros(len(prompt_ids), width)
        for b, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
            seq = torch.tensor([list(p) + list(c)])
            logits, _ = self._logits(seq)
            logp = torch.log_softmax(logits[0, len(p) - 1 : len(p) - 1 + len(c)], -1)
            rows_lp.append(nn.functional.pad(logp.gather(1, torch.tensor(c)[:, None]).squeeze(1), (0, width - len(c))))
            rows_ent.append(nn.functional.pad(-(logp.exp() * logp).sum(-1), (0, width - len(c))))
            mask[b, : len(c)] = 1
        return TokenLogprobs(torch.stack(rows_lp), mask, torch.stack(rows_ent) if with_entropy else None)

    def tokenize(self, prompts, completions):
        return [encode(self._text(p)) for p in prompts], [encode(c) + [EOS] for c in completions]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--sft-steps", type=int, default=40, help="warm-up on oracle solutions first")
    ap.add_argument("--out", default="runs/custom_agent")
    args = ap.parse_args()
    torch.set_num_threads(1)

    problems = arithmetic.generate(64, 1, seed=0)
    render = lambda p, i: p.question + "\n" + "".join(p.steps[:i])  # noqa: E731
    method = get_method("sft-oracle")
    policy = GRUPolicy()
    config = TrainConfig(
        method="sft-oracle", steps=args.steps, sft_steps=args.sft_steps, prompts_per_step=8, group_size=4,
        sampling=SamplingParams(max_new_tokens=12), grpo=GRPOConfig(lr=3e-3), sft_lr=1e-2,
        eval_every=10, eval_k=4, save_every=10, tensorboard=False,
    )
    trainer = Trainer(policy, build_source(method, render, hard=problems), math_reward(), config, args.out,
                      eval_items=make_items(problems[:16], render), sft_source=sft_items(problems, render))
    result = trainer.train()
    print(f"pass@4 over training: {[round(e['pass@4'], 2) for e in result.evals]}")

    agent = PolicyAgent(policy, SamplingParams(temperature=0, max_new_tokens=12))
    for p in problems[:3]:
        print(f"{p.question!r} -> {agent.act(render(p, 0), {})!r} (gold {p.answer})")


if __name__ == "__main__":
    main()
