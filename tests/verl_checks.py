"""Runs inside the verl venv (``make verl-venv``): verl's own code on a ``pope-env export`` parquet.

Called by ``tests/test_verl_export.py`` as ``python tests/verl_checks.py PARQUET MODEL_DIR
CACHE_DIR OVERRIDES_FILE`` (the overrides of ``examples/verl_pope.sh``, one per line);
prints one JSON object with what verl saw:

1. ``verl.utils.dataset.rl_dataset.RLHFDataset`` loads the parquet with the model folder's
   tokenizer (its over-long-prompt filter applies the chat template to every prompt), and
   verl's ``collate_fn`` batches it in file order (``data.shuffle=False``).
2. The recipe's overrides compose with verl's hydra config (``ppo_trainer``), as
   ``python -m verl.trainer.main_ppo`` would compose them.
3. verl's reward path -- ``RewardLoopWorker`` (the class verl runs as a Ray actor, built here
   without Ray) on that config, whose ``reward.custom_reward_function`` points at
   ``pkg://pope_env.rewards.verl`` / ``compute_score``, loaded by ``load_reward_manager``
   into the ``naive`` reward manager -- scores a correct, a wrong and an unboxed response per
   prompt, tokenized and decoded the way verl does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(parquet: str, model_dir: str, cache_dir: str, overrides_file: str) -> None:
    import numpy as np
    import torch
    import verl
    from omegaconf import OmegaConf
    from torch.utils.data import DataLoader
    from transformers import AutoTokenizer
    from verl import DataProto
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker, migrate_legacy_reward_impl
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    torch.set_num_threads(1)
    out: dict = {"verl": verl.__version__}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data_config = OmegaConf.create({
        "prompt_key": "prompt", "max_prompt_length": 1024, "filter_overlong_prompts": True,
        "filter_overlong_prompts_workers": 1, "cache_dir": cache_dir, "truncation": "error",
        "shuffle": False,
    })
    dataset = RLHFDataset(parquet, tokenizer, data_config)
    out["rows"] = len(dataset)
    items = [dataset[i] for i in range(len(dataset))]
    out["items"] = [{
        "raw_prompt": [dict(m) for m in item["raw_prompt"]],
        "data_source": item["data_source"],
        "ability": item["ability"],
        "ground_truth": item["reward_model"]["ground_truth"],
        "extra_info": {k: (v.item() if hasattr(v, "item") else v) for k, v in item["extra_info"].items()},
        "index": int(item["index"]),
    } for item in items]
    # A prompt longer than max_prompt_length is dropped by verl's filter: proves it tokenized ours.
    short = OmegaConf.merge(data_config, {"max_prompt_length": 8})
    out["rows_with_max_prompt_length_8"] = len(RLHFDataset(parquet, tokenizer, short))
    loader = DataLoader(dataset, batch_size=4, shuffle=False, collate_fn=collate_fn)
    out["guided_share_per_batch"] = [
        float(np.mean([info["guided"] for info in batch["extra_info"]])) for batch in loader
    ]

    # The recipe's overrides (examples/verl_pope.sh) composed with verl's own hydra config,
    # as `python -m verl.trainer.main_ppo` does, with the local model and the exported set.
    from hydra import compose, initialize_config_dir

    overrides = [line for line in Path(overrides_file).read_text().splitlines() if line.strip()]
    overrides += [f"actor_rollout_ref.model.path={model_dir}", f"data.train_files={parquet}",
                  f"data.val_files={parquet}"]
    config_dir = Path(verl.__file__).parent / "trainer" / "config"
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        config = compose(config_name="ppo_trainer", overrides=overrides)
    config = migrate_legacy_reward_impl(config)
    out["recipe"] = {"adv_estimator": config.algorithm.adv_estimator, "shuffle": config.data.shuffle,
                     "rollout": config.actor_rollout_ref.rollout.name, "n": config.actor_rollout_ref.rollout.n}
    out["reward_config"] = OmegaConf.to_container(config.reward.custom_reward_function)
    # older configs name the reward function at the top level; verl migrates that key
    legacy = OmegaConf.load(config_dir / "_generated_ppo_trainer.yaml")
    legacy.custom_reward_function.path, legacy.custom_reward_function.name = "pkg://pope_env.rewards.verl", "compute_score"
    out["legacy_reward_config"] = OmegaConf.to_container(
        migrate_legacy_reward_impl(legacy).reward.custom_reward_function)
    worker = RewardLoopWorker(config)
    out["reward_manager"] = type(worker.reward_manager).__name__
    out["reward_kwargs_seen"] = dict(worker.reward_manager.compute_score.args[1])

    prompts, responses, non_tensor = [], [], {"data_source": [], "reward_model": [], "extra_info": []}
    kinds = []
    for item in items:
        gold = item["reward_model"]["ground_truth"]
        for kind, text in (("correct", f"Adding up step by step gives \\boxed{{{gold}}}."),
                           ("wrong", f"So the result is \\boxed{{{int(gold) + 1}}}."),
                           ("unboxed", "I could not finish this one.")):
            prompt_text = tokenizer.apply_chat_template(list(item["raw_prompt"]), tokenize=False,
                                                        add_generation_prompt=True)
            prompts.append(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
            responses.append(tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
            non_tensor["data_source"].append(item["data_source"])
            non_tensor["reward_model"].append(dict(item["reward_model"]))
            non_tensor["extra_info"].append(dict(item["extra_info"]))
            kinds.append(kind)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    p_len, r_len = max(map(len, prompts)), max(map(len, responses))
    prompt_ids = torch.tensor([[pad] * (p_len - len(p)) + p for p in prompts])  # left padded
    response_ids = torch.tensor([r + [pad] * (r_len - len(r)) for r in responses])  # right padded
    mask = torch.tensor([[0] * (p_len - len(p)) + [1] * len(p) + [1] * len(r) + [0] * (r_len - len(r))
                         for p, r in zip(prompts, responses)])
    batch = DataProto.from_dict(
        tensors={"prompts": prompt_ids, "responses": response_ids, "attention_mask": mask,
                 "input_ids": torch.cat([prompt_ids, response_ids], dim=1)},
        non_tensors={k: np.array(v, dtype=object) for k, v in non_tensor.items()},
    )
    results = worker.loop.run_until_complete(worker.compute_score_batch(batch))
    out["scores"] = [{"kind": kind, "reward": float(r["reward_score"]),
                      "extra": {k: float(v) for k, v in r["reward_extra_info"].items()}}
                     for kind, r in zip(kinds, results)]
    print("VERL_CHECKS " + json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:5])
