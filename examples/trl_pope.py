"""POPE with TRL's GRPOTrainer: the exported POPE set, pope-env's math reward, vLLM rollouts.

Recipe for one multi-GPU node (untested here: this machine has no GPU; the same trainer,
set and reward run on CPU in ``tests/test_trl_pope.py``, and ``--no-vllm`` runs this script
on CPU)::

    # 1. the POPE set: hard split, i* per problem, then the export (pope-env's own CLI)
    pope-env hard-split    --dataset math-train-l5 --model MODEL --k 8 --out split.jsonl
    pope-env prefix-search --split split.jsonl     --model MODEL --k 8 --out guidance.jsonl
    pope-env export --split split.jsonl --guidance guidance.jsonl --format trl --out pope-trl

    # 2. rollouts on GPU 0 (TRL's vLLM server), training on GPUs 1-7
    CUDA_VISIBLE_DEVICES=0 trl vllm-serve --model MODEL &
    CUDA_VISIBLE_DEVICES=1,2,3,4,5,6,7 accelerate launch --num_processes 7 \\
        examples/trl_pope.py --model MODEL --data pope-trl --vllm-server http://localhost:8000

The set holds every hard problem twice, unguided and guided at its i*, pairs next to each
other in a seeded random order; the trainer reads it in order (``shuffle_dataset=False``),
so each generation batch of an even number of prompts is exactly 1:1 guided:unguided (set
``--shuffle`` for 1:1 over the epoch only). The reward is
:func:`pope_env.rewards.math.math_reward` (math-verify against the ``answer`` column, with a
hard time limit per verification). Two zero-weight "rewards" log the accuracy on the
unguided and on the guided prompts separately (``rewards/unguided_accuracy/mean``,
``rewards/guided_accuracy/mean``): POPE's claim is that the first one rises.
"""

from __future__ import annotations

import argparse


def split_accuracy(guided_rows: bool):
    """A zero-weight TRL reward that reports math accuracy on guided (or unguided) rows only."""
    from pope_env.rewards.math import math_reward

    def accuracy(prompts, completions, guided, **kwargs):
        scores = math_reward(prompts, completions, **kwargs)  # verdicts are cached: no second verification
        return [s if bool(g) == guided_rows else None for s, g in zip(scores, guided)]

    accuracy.__name__ = "guided_accuracy" if guided_rows else "unguided_accuracy"
    return accuracy


def load_set(path: str):
    """The exported set: a ``datasets`` folder, or the JSONL variant of ``--format trl``."""
    import datasets

    if path.endswith(".jsonl"):
        return datasets.load_dataset("json", data_files=path)["train"]
    return datasets.load_from_disk(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="model name or folder (e.g. Qwen/Qwen3-1.7B)")
    ap.add_argument("--data", required=True, help="`pope-env export --format trl` output")
    ap.add_argument("--output-dir", default="runs/trl-pope")
    ap.add_argument("--vllm-server", default=None, help="TRL vLLM server URL (`trl vllm-serve`)")
    ap.add_argument("--no-vllm", action="store_true", help="generate with transformers (CPU smoke runs)")
    ap.add_argument("--shuffle", action="store_true", help="let TRL shuffle the rows (1:1 per epoch only)")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--group-size", type=int, default=8, help="completions per prompt (num_generations)")
    ap.add_argument("--prompts-per-device", type=int, default=2, help="prompts per device and step (even)")
    ap.add_argument("--max-new-tokens", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=1e-6)
    args = ap.parse_args()

    import torch
    from trl import GRPOConfig, GRPOTrainer

    from pope_env.rewards.math import math_reward

    gpu = torch.cuda.is_available()
    config = GRPOConfig(
        output_dir=args.output_dir,
        max_steps=args.steps,
        per_device_train_batch_size=args.prompts_per_device * args.group_size,
        num_generations=args.group_size,
        max_completion_length=args.max_new_tokens,
        temperature=1.0,
        learning_rate=args.lr,
        beta=0.0,                     # no KL term, as in POPE
        loss_type="dapo",
        scale_rewards="none",
        shuffle_dataset=args.shuffle,
        reward_weights=[1.0, 0.0, 0.0],
        use_vllm=not args.no_vllm,
        vllm_mode="server",
        vllm_server_base_url=args.vllm_server,
        bf16=gpu,
        use_cpu=not gpu,
        gradient_checkpointing=gpu,
        logging_steps=1,
        save_steps=100,
        report_to="none",
        seed=0,
    )
    trainer = GRPOTrainer(
        model=args.model,
        reward_funcs=[math_reward, split_accuracy(False), split_accuracy(True)],
        args=config,
        train_dataset=load_set(args.data),
    )
    trainer.train()
    trainer.save_model(args.output_dir)


if __name__ == "__main__":
    main()
