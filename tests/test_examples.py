"""The examples run as users run them (small settings, a tiny random-weight model)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _run(script: str, *args: str, timeout: int = 400) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], capture_output=True, text=True,
                         timeout=timeout, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    from pope_env.agents.models import load_tokenizer
    from tiny_models import tiny_llama

    tokenizer = load_tokenizer("smollm2")
    folder = tmp_path_factory.mktemp("tiny")
    tiny_llama(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    assert transformers.AutoConfig.from_pretrained(folder).num_hidden_layers == 2
    return folder


def test_train_pope_example_runs_every_stage_and_logs_the_overlap(tmp_path, tiny_model_dir):
    res = _run("train_pope.py", "--model", str(tiny_model_dir), "--dataset", "arith-easy", "--limit", "2", "--k", "2",
               "--steps", "2", "--max-new-tokens", "8", "--out", str(tmp_path))
    assert "2 of 2 problems are hard" in res.stdout
    assert "own states in S_good" in res.stdout and (tmp_path / "pope" / "own_states.jsonl").exists()


def test_custom_agent_example_trains_its_gru(tmp_path):
    res = _run("custom_agent.py", "--steps", "2", "--sft-steps", "2", "--out", str(tmp_path))
    assert "pass@4 over training:" in res.stdout and "(gold " in res.stdout
    assert len((tmp_path / "train_log.jsonl").read_text().splitlines()) == 4  # 2 SFT + 2 GRPO steps


def test_trl_reward_example_trains_with_our_reward_inside_trl(tmp_path):
    pytest.importorskip("trl")
    res = _run("trl_reward.py", "--tiny", "--steps", "1", "--limit", "4", "--max-new-tokens", "8",
               "--out", str(tmp_path))
    assert "mean reward per step (math_reward): [" in res.stdout
