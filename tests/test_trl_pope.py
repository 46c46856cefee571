"""TRL's own GRPOTrainer trains on a `pope-env export --format trl` set with pope-env's math reward.

The reward function handed to TRL wraps :func:`pope_env.rewards.math.math_reward` and records
the ``guided`` / ``problem_id`` columns TRL passes it for every completion, so the test
measures the guided share of what TRL actually generated and scored in each step.
"""

from __future__ import annotations

import pytest

from export_helpers import make_pope_inputs
from pope_env.export import export_pope

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")


def test_grpo_trainer_trains_on_the_exported_pope_set(tmp_path):
    from pope_env.agents.models import load_tokenizer
    from pope_env.rewards.math import math_reward
    from tiny_models import tiny_llama

    split, guidance = make_pope_inputs(tmp_path)
    result = export_pope(split_file=split, guidance_file=guidance, out=tmp_path / "pope", format="trl")
    dataset = datasets.load_from_disk(str(tmp_path / "pope"))
    assert len(dataset) == result.rows >= 8

    calls: list[dict] = []

    def pope_math_reward(prompts, completions, **kwargs):
        rewards = math_reward(prompts, completions, **kwargs)
        calls.append({"guided": list(kwargs["guided"]), "problem_id": list(kwargs["problem_id"]),
                      "prefix_len": list(kwargs["prefix_len"]), "rewards": rewards})
        return rewards

    tokenizer = load_tokenizer("smollm2")
    model = tiny_llama(tokenizer)
    group, prompts_per_step = 2, 4
    config = trl.GRPOConfig(
        output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=prompts_per_step * group,
        num_generations=group, max_completion_length=8, learning_rate=1e-2, beta=0.0,
        shuffle_dataset=False,  # the export already shuffled the pairs: read in order, every batch is 1:1
        logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, seed=0,
        dataloader_num_workers=0,
    )
    trainer = trl.GRPOTrainer(model=model, reward_funcs=pope_math_reward, args=config,
                              train_dataset=dataset, processing_class=tokenizer)
    trainer.train()

    assert trainer.state.global_step == 2
    assert len(calls) == 2  # one generation batch per step
    for call in calls:
        assert len(call["guided"]) == prompts_per_step * group
        share = sum(call["guided"]) / len(call["guided"])
        assert share == 0.5, f"guided share {share} in a step"
        # both roll-ins of a problem are in the same step, guided with the prefix it was searched at
        for pid in set(call["problem_id"]):
            kinds = {g for g, p in zip(call["guided"], call["problem_id"]) if p == pid}
            assert kinds == {False, True}
        assert all((p > 0) == g for p, g in zip(call["prefix_len"], call["guided"]))
        assert all(r in (0.0, 1.0) for r in call["rewards"])
    logged = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logged) == 2


def test_trl_pope_example_runs_on_cpu(tmp_path):
    """examples/trl_pope.py (the multi-GPU recipe) with transformers generation instead of vLLM."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from pope_env.agents.models import load_tokenizer
    from tiny_models import tiny_llama

    split, guidance = make_pope_inputs(tmp_path)
    export_pope(split_file=split, guidance_file=guidance, out=tmp_path / "pope.jsonl", format="trl")
    tokenizer = load_tokenizer("smollm2")
    tokenizer.save_pretrained(tmp_path / "model")
    tiny_llama(tokenizer).save_pretrained(tmp_path / "model")
    script = Path(__file__).resolve().parents[1] / "examples" / "trl_pope.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--model", str(tmp_path / "model"), "--data", str(tmp_path / "pope.jsonl"),
         "--no-vllm", "--steps", "1", "--group-size", "2", "--prompts-per-device", "2",
         "--max-new-tokens", "8", "--output-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert (tmp_path / "run" / "model.safetensors").is_file()
    out = proc.stdout + proc.stderr
    assert "rewards/unguided_accuracy/mean" in out and "rewards/guided_accuracy/mean" in out
