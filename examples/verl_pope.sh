#!/usr/bin/env bash
# POPE with verl: GRPO on the exported POPE set, vLLM rollouts, pope-env's math reward.
#
# Recipe for one node with 8 GPUs. UNTESTED HERE: this machine has no GPU, and verl's
# rollouts (vLLM/SGLang) and its FSDP update need one. What is tested on CPU
# (tests/test_verl_export.py, in the verl venv of `make verl-venv`): verl's hydra config
# accepts every override below, verl's RLHFDataset loads the exported parquet, and verl's
# reward path (RewardLoopWorker -> naive reward manager) calls pope_env.rewards.verl.
#
#   pip install "verl[vllm]" pope-env          # verl's GPU extra; pope-env for the reward
#   pope-env hard-split    --dataset math-train-l5 --model MODEL --k 8 --out split.jsonl
#   pope-env prefix-search --split split.jsonl     --model MODEL --k 8 --out guidance.jsonl
#   pope-env export --split split.jsonl --guidance guidance.jsonl --format verl --out pope.parquet
#   MODEL=Qwen/Qwen3-1.7B DATA=pope.parquet bash examples/verl_pope.sh [more overrides]
#
# The set holds every hard problem twice, unguided and guided at its i*, pairs next to each
# other in a seeded random order. data.shuffle=False keeps that order, so every batch of an
# even number of prompts is exactly 1:1 guided:unguided (data.shuffle=True: 1:1 per epoch).
# verl logs the reward's extra keys (acc, format_ok, timed_out); split them by
# extra_info.guided in your own metrics if you need unguided accuracy alone.
# `bash examples/verl_pope.sh --print-overrides` prints the overrides and exits.
set -euo pipefail

MODEL=${MODEL:-Qwen/Qwen3-1.7B}
DATA=${DATA:-pope.parquet}
VAL_DATA=${VAL_DATA:-$DATA}
GPUS=${GPUS:-8}

OVERRIDES=(
    algorithm.adv_estimator=grpo
    algorithm.use_kl_in_reward=False
    data.train_files="$DATA"
    data.val_files="$VAL_DATA"
    data.shuffle=False
    data.train_batch_size=128
    data.max_prompt_length=1024
    data.max_response_length=8192
    data.filter_overlong_prompts=True
    data.truncation=error
    actor_rollout_ref.model.path="$MODEL"
    actor_rollout_ref.model.enable_gradient_checkpointing=True
    actor_rollout_ref.actor.optim.lr=1e-6
    actor_rollout_ref.actor.ppo_mini_batch_size=64
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4
    actor_rollout_ref.actor.use_kl_loss=False
    actor_rollout_ref.actor.entropy_coeff=0
    actor_rollout_ref.actor.loss_agg_mode=token-mean
    actor_rollout_ref.rollout.name=vllm
    actor_rollout_ref.rollout.n=8
    actor_rollout_ref.rollout.temperature=1.0
    actor_rollout_ref.rollout.tensor_model_parallel_size=1
    actor_rollout_ref.rollout.gpu_memory_utilization=0.6
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8
    actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=8
    reward.custom_reward_function.path=pkg://pope_env.rewards.verl
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.timeout_s=5.0
    +reward.custom_reward_function.reward_kwargs.verify_workers=4
    trainer.n_gpus_per_node="$GPUS"
    trainer.nnodes=1
    trainer.total_epochs=10
    trainer.logger=[console]
    trainer.project_name=pope
    trainer.experiment_name=pope-verl
    trainer.save_freq=50
    trainer.test_freq=-1
    trainer.val_before_train=False
)

if [[ "${1:-}" == "--print-overrides" ]]; then
    printf '%s\n' "${OVERRIDES[@]}"
    exit 0
fi
exec "${PYTHON:-python3}" -m verl.trainer.main_ppo "${OVERRIDES[@]}" "$@"
