"""A minimal real learner policy for tests and benches: a random-weight transformers Llama
(hidden 64, 2 layers) over a character vocabulary, sampling with its own seeded generator.

It implements the :class:`~pope_env.agents.policy.LearnerPolicy` contract the trainer needs
(``generate`` with token ids and temperature-1 log-probs, ``model``, ``token_logprobs`` at any
temperature, ``tokenize``) and nothing else. Prompts are plain text or chat messages (contents joined).
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import torch

from pope_env.agents.policy import TokenLogprobs
from pope_env.agents.policy import Generation, Prompt, SamplingParams

CHARS = string.digits + string.ascii_letters + " +-*/=,.:;!?()[]{}\\\n$^_'\"<>|"
BOS, EOS, PAD = 0, 1, 2
OFFSET = 3


class CharTokenizer:
    """Characters of :data:`CHARS`; unknown characters map to ``?``."""

    vocab_size = len(CHARS) + OFFSET
    eos_token_id = EOS

    def encode(self, text: str) -> list[int]:
        q = CHARS.index("?")
        return [OFFSET + (CHARS.index(c) if c in CHARS else q) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(CHARS[i - OFFSET] for i in ids if i >= OFFSET)


def tiny_llama(seed: int = 0, hidden: int = 64, layers: int = 2) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=CharTokenizer.vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
        max_position_embeddings=512, tie_word_embeddings=False, bos_token_id=BOS, eos_token_id=EOS,
        pad_token_id=PAD,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg)


class TinyLearner:
    """A learner policy over :func:`tiny_llama` (see module docstring)."""

    name = "tiny-llama"

    def __init__(self, seed: int = 0, model: torch.nn.Module | None = None) -> None:
        self.model = model if model is not None else tiny_llama(seed)
        self.tok = CharTokenizer()
        self.gen = torch.Generator().manual_seed(seed)

    # -- RNG state for exact resume -------------------------------------------------------
    def get_rng_state(self) -> list[int]:
        return self.gen.get_state().tolist()

    def set_rng_state(self, state: list[int]) -> None:
        self.gen.set_state(torch.tensor(state, dtype=torch.uint8))

    # -- tokenisation ---------------------------------------------------------------------
    def render(self, prompt: Prompt) -> list[int]:
        text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
        return [BOS] + self.tok.encode(text)

    def tokenize(self, prompts: Sequence[Prompt], completions: Sequence[str]) -> tuple[list[list[int]], list[list[int]]]:
        return [self.render(p) for p in prompts], [self.tok.encode(c) + [EOS] for c in completions]

    # -- Policy ---------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, prompts: Sequence[Prompt], *, n: int = 1, sampling: SamplingParams = SamplingParams()) -> list[list[Generation]]:
        rows = [self.render(p) for p in prompts for _ in range(n)]
        width = max(len(r) for r in rows)
        device = next(self.model.parameters()).device
        ids = torch.full((len(rows), width), PAD, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):  # left padding
            ids[i, width - len(r):] = torch.tensor(r)
            mask[i, width - len(r):] = 1
        ids, mask = ids.to(device), mask.to(device)
        done = torch.zeros(len(rows), dtype=torch.bool, device=device)
        step_tokens: list[torch.Tensor] = []
        step_logps: list[torch.Tensor] = []
        past = None
        step_ids = ids
        for _ in range(sampling.max_new_tokens):
            pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, -step_ids.shape[1]:]
            res = self.model(input_ids=step_ids, attention_mask=mask, position_ids=pos, past_key_values=past, use_cache=True)
            past = res.past_key_values
            logits = res.logits[:, -1].float()
            logp = torch.log_softmax(logits, dim=-1)
            if sampling.temperature == 0:
                nxt = logits.argmax(-1)
            else:
                probs = torch.softmax(logits / sampling.temperature, dim=-1)
                nxt = torch.multinomial(probs.cpu(), 1, generator=self.gen).squeeze(1).to(device)
            nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)  # finished rows only pad
            step_tokens.append(nxt)
            step_logps.append(logp.gather(1, nxt[:, None]).squeeze(1))
            done |= nxt == EOS
            if bool(done.all()):
                break
            step_ids = nxt.unsqueeze(1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        all_ids = torch.stack(step_tokens, 1).tolist()
        all_lp = torch.stack(step_logps, 1).tolist()
        out_ids: list[list[int]] = []
        out_lp: list[list[float]] = []
        for ids_row, lp_row in zip(all_ids, all_lp):
            n_tok = ids_row.index(EOS) + 1 if EOS in ids_row else len(ids_row)
            out_ids.append(ids_row[:n_tok])
            out_lp.append(lp_row[:n_tok])
        gens = []
        for i, r in enumerate(rows):
            finished = bool(out_ids[i]) and out_ids[i][-1] == EOS
            gens.append(Generation(
                text=self.tok.decode(out_ids[i]), prompt_ids=tuple(r), token_ids=tuple(out_ids[i]),
                logprobs=tuple(out_lp[i]), finish_reason="stop" if finished else "length",
            ))
        return [gens[i * n:(i + 1) * n] for i in range(len(prompts))]

    # -- Learner --------------------------------------------------------------------------
    def token_logprobs(self, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], *,
                       with_entropy: bool = False, temperature: float = 1.0,
                       model: torch.nn.Module | None = None) -> TokenLogprobs:
        """Log-probs (and entropies) of ``log_softmax(logits / temperature)``, through ``model``
        (default ``self.model``)."""
        net = model if model is not None else self.model
        device = next(getattr(net, "module", net).parameters()).device
        seqs = [list(p) + list(c) for p, c in zip(prompt_ids, completion_ids)]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), PAD, dtype=torch.long, device=device)
        attn = torch.zeros((len(seqs), width), dtype=torch.long, device=device)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s, device=device)
            attn[i, :len(s)] = 1
        logits = net(input_ids=ids, attention_mask=attn).logits.float() / temperature
        tmax = max(len(c) for c in completion_ids)
        lp = torch.zeros(len(seqs), tmax, device=device)
        ent = torch.zeros(len(seqs), tmax, device=device) if with_entropy else None
        cmask = torch.zeros(len(seqs), tmax, device=device)
        rows_lp, rows_ent = [], []
        for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
            start, L = len(p), len(c)
            logit_rows = logits[i, start - 1:start - 1 + L]
            logp_all = torch.log_softmax(logit_rows, dim=-1)
            tok = torch.tensor(list(c), device=device)
            rows_lp.append(torch.nn.functional.pad(logp_all.gather(1, tok[:, None]).squeeze(1), (0, tmax - L)))
            if with_entropy:
                rows_ent.append(torch.nn.functional.pad(-(logp_all.exp() * logp_all).sum(-1), (0, tmax - L)))
            cmask[i, :L] = 1
        lp = torch.stack(rows_lp)
        if with_entropy:
            ent = torch.stack(rows_ent)
        return TokenLogprobs(lp, cmask, ent)


def hf_char_tokenizer():
    """A transformers fast tokenizer with exactly :class:`CharTokenizer`'s ids (for HF code
    paths: HFPolicy, TRL) and no chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<s>": BOS, "</s>": EOS, "<pad>": PAD}
    vocab.update({c: OFFSET + i for i, c in enumerate(CHARS)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="?"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="?")
    fast.padding_side = "left"
    return fast


def boxed_int_reward(completions: Sequence[str], items: Sequence[Any]) -> list[float]:
    """1.0 if the completion contains the problem's answer, else 0.0 (cheap test reward)."""
    return [1.0 if it.problem is not None and it.problem.answer in c else 0.0 for c, it in zip(completions, items)]


class FollowerPolicy(TinyLearner):
    """A second, separate model that follows a learner's weights through
    ``load_weights_from`` (what a vLLM rollout engine does), for testing rollout policies
    without vLLM."""

    name = "tiny-llama-follower"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed, model=tiny_llama(seed + 1000))  # different weights until synced
        self.syncs = 0

    def load_weights_from(self, model: torch.nn.Module) -> None:
        self.model.load_state_dict(model.state_dict())
        self.syncs += 1
