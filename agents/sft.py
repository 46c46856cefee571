"""Supervised fine-tuning data: (prompt, oracle solution) pairs as token ids.

The ``sft-oracle`` method's SFT steps (:meth:`pope_env.agents.train.Trainer`) maximise the
log-likelihood of each hard problem's oracle solution given its prompt; :func:`tokenize_pairs`
turns those pairs into the learner's token ids, the way the learner itself encodes prompts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pope_env.agents.rollout import PromptItem
from pope_env.errors import ConfigError


def tokenize_pairs(learner: Any, items: Sequence[PromptItem]) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of (prompt, oracle solution) pairs for SFT.

    Uses ``learner.tokenize(prompts, completions)`` when the learner has it; else a learner
    with ``encode_prompt(prompt) -> ids`` (as it samples) and a plain ``tokenizer.encode(text)``
    with an ``eos_id`` or ``eos_token_id`` (e.g. :class:`~pope_env.agents.charlm.CharLMPolicy`);
    else an HF ``learner.tokenizer`` for the solution (EOS appended) and the learner's own
    prompt encoding (``learner.encode(prompts)``, as it samples) or the chat template.
    """
    for it in items:
        if it.problem is None or not it.problem.solution:
            raise ConfigError(f"SFT needs oracle solutions; problem {it.problem_id!r} has none")
    prompts = [it.prompt for it in items]
    targets = [it.problem.solution for it in items]  # type: ignore[union-attr]
    tokenize = getattr(learner, "tokenize", None)
    if callable(tokenize):
        p, c = tokenize(prompts, targets)
        return [list(x) for x in p], [list(x) for x in c]
    tok = getattr(learner, "tokenizer", None)
    encode_prompt = getattr(learner, "encode_prompt", None)
    eos = getattr(tok, "eos_token_id", getattr(tok, "eos_id", None))
    if callable(encode_prompt) and tok is not None and not callable(tok) and callable(getattr(tok, "encode", None)) \
            and eos is not None:
        return ([list(encode_prompt(p)) for p in prompts],
                [list(tok.encode(t)) + [int(eos)] for t in targets])
    if tok is None:
        raise ConfigError(
            f"{type(learner).__name__} has neither tokenize() nor a tokenizer; the sft-oracle "
            "method needs one of them to turn oracle solutions into token ids"
        )
    encode = getattr(learner, "encode", None)
    encoded = [list(x) for x in encode(prompts)] if callable(encode) else None
    prompt_ids, completion_ids = [], []
    for i, (prompt, target) in enumerate(zip(prompts, targets)):
        if encoded is not None:
            ids = encoded[i]
        elif isinstance(prompt, str):
            ids = tok(prompt, add_special_tokens=False)["input_ids"]
        else:
            ids = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
            if isinstance(ids, Mapping):
                ids = ids["input_ids"]
        prompt_ids.append(list(ids))
        completion_ids.append(list(tok(target, add_special_tokens=False)["input_ids"]) + [tok.eos_token_id])
    return prompt_ids, completion_ids
