"""pope-env's math reward inside TRL's GRPOTrainer.

:func:`pope_env.rewards.math.math_reward` has TRL's reward-function signature
(``prompts, completions, **columns -> list[float]``) and reads the gold answer from the
dataset's ``answer`` column; it verifies answers with math-verify in worker processes with a
hard time limit, so a pathological completion cannot hang training. Prompts are POPE's
unguided problem prompts (chat messages); pass ``--guided`` to add each problem's guided
roll-in (the first half of its oracle steps) next to it, 1:1, as POPE trains.

    python examples/trl_reward.py --model smollm2 --dataset math-train-l1 --steps 5
    python examples/trl_reward.py --tiny --steps 2      # random 2-layer model: a quick smoke run

Needs ``pip install trl``.
"""

from __future__ import annotations

import argparse
import tempfile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2", help="model name, folder or .gguf (default: smollm2)")
    ap.add_argument("--tiny", action="store_true", help="a random-weight 2-layer Llama with SmolLM2's tokenizer")
    ap.add_argument("--dataset", default="math-train-l1")
    ap.add_argument("--limit", type=int, default=32)
    ap.add_argument("--guided", action="store_true", help="add guided roll-in prompts 1:1")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--prompts-per-step", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from pope_env.agents.models import load_model, load_tokenizer
    from pope_env.datasets import load_dataset
    from pope_env.guidance import guided_messages, prefix_cap, unguided_messages
    from pope_env.rewards.math import math_reward

    if args.tiny:
        from transformers import LlamaConfig, LlamaForCausalLM

        tokenizer = load_tokenizer("smollm2")
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ))
    else:
        model, tokenizer = load_model(args.model, dtype=torch.float32)

    rows = []
    for p in load_dataset(args.dataset, limit=args.limit):
        rows.append({"prompt": unguided_messages(p), "answer": p.answer})
        if args.guided and prefix_cap(p) > 0:
            rows.append({"prompt": guided_messages(p, max(1, prefix_cap(p) // 2)), "answer": p.answer})
    dataset = Dataset.from_list(rows)

    out = args.out or tempfile.mkdtemp(prefix="trl-reward-")
    config = GRPOConfig(
        output_dir=out, max_steps=args.steps, per_device_train_batch_size=args.prompts_per_step * args.group_size,
        num_generations=args.group_size, max_completion_length=args.max_new_tokens, learning_rate=1e-6,
        beta=0.0, loss_type="dapo", scale_rewards="none", logging_steps=1, save_strategy="no", report_to="none",
        use_cpu=not torch.cuda.is_available(), bf16=torch.cuda.is_available(), seed=0,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=math_reward, args=config, train_dataset=dataset,
                          processing_class=tokenizer)
    trainer.train()
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    print(f"mean reward per step (math_reward): {[round(r, 3) for r in rewards]}")


if __name__ == "__main__":
    main()
