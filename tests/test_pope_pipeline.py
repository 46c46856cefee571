"""The POPE pipeline end to end: hard split -> prefix search -> POPE-Math-Hard-v0, with real
components (an HF model through the CLI, the math reward, the registered envs)."""

from __future__ import annotations

import logging
from collections import Counter

import gymnasium as gym
import pytest

import pope_env  # noqa: F401  (registers the env ids)
from arith_policy import ArithmeticSolverPolicy
from pope_env.datasets import load_dataset
from pope_env.guidance import guided_text
from pope_env.hard_split import load_split, run_hard_split
from pope_env.prefix_search import default_scorer, load_guidance, run_prefix_search

logging.getLogger("math_verify").setLevel(logging.ERROR)


@pytest.mark.slow
def test_split_and_guidance_files_drive_pope_math_hard(tmp_path):
    problems = load_dataset("arith-hard", limit=40)
    policy = ArithmeticSolverPolicy(0.3)
    split = run_hard_split(problems, policy, dataset="arith-hard", out=tmp_path / "split.jsonl",
                           k=4, scorer=default_scorer(), progress=False)
    hard = [p for p in problems if p.id in set(split.hard_ids)]
    assert len(hard) >= 4
    guidance = run_prefix_search(hard, policy, dataset="arith-hard", out=tmp_path / "g.jsonl", k=4,
                                 scorer=default_scorer(), progress=False)
    env = gym.make("POPE-Math-Hard-v0", dataset="arith-hard", limit=40,
                   split_file=str(tmp_path / "split.jsonl"), guidance_file=str(tmp_path / "g.jsonl"))
    by_id = {p.id: p for p in hard}
    guided = Counter()
    for episode in range(4 * len(hard)):
        obs, info = env.reset(seed=5 if episode == 0 else None)
        assert info["problem_id"] in by_id  # only hard problems
        guided[info["guided"]] += 1
        if info["guided"]:
            record = guidance[info["problem_id"]]
            assert (info["prefix_start"], info["prefix_len"]) == (record.start, record.prefix_len)
            assert obs == guided_text(by_id[info["problem_id"]], record.prefix_len, start=record.start)
        else:
            assert info["prefix_len"] == 0
        if episode % 2 == 1:
            assert guided[True] == guided[False]  # exact 1:1 after every pair of resets
    env.close()
    with pytest.raises(pope_env.PopeEnvError, match="made for dataset 'arith-hard', not 'arith-easy'"):
        gym.make("POPE-Math-Hard-v0", dataset="arith-easy", limit=40,
                 guidance_file=str(tmp_path / "g.jsonl"))


@pytest.mark.slow
def test_cli_hard_split_prefix_search_and_reach_with_an_hf_model(tmp_path, capsys):
    """The commands run a real (tiny, random-weight) transformers model end to end."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from pope_env.agents.models import load_tokenizer
    from pope_env.cli import main

    tokenizer = load_tokenizer("smollm2")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
        tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model_dir = tmp_path / "tiny"
    transformers.LlamaForCausalLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    common = ["--model", str(model_dir), "--k", "2", "--max-new-tokens", "6", "--no-progress"]
    split, guidance = tmp_path / "split.jsonl", tmp_path / "g.jsonl"

    assert main(["hard-split", "--dataset", "arith-easy", "--limit", "3", "--out", str(split), *common]) == 0
    assert "3 of 3 problems are hard" in capsys.readouterr().out  # random weights solve nothing
    assert main(["hard-split", "--dataset", "arith-easy", "--limit", "3", "--out", str(split), *common]) == 0
    assert len(load_split(split, dataset="arith-easy").records) == 3  # resumed, not duplicated
    capsys.readouterr()

    assert main(["prefix-search", "--split", str(split), "--out", str(guidance), *common]) == 0
    assert "i* found for 0 of 3 problems (3 fallback segments)" in capsys.readouterr().out
    records = load_guidance(guidance, dataset="arith-easy").records
    assert all(r.fallback and r.evidence[0].samples == 2 for r in records.values())

    assert main(["reach", "--rollouts", str(guidance)]) == 0
    assert "coverage: 0.000 of 3 problems" in capsys.readouterr().out

    # the model's own unguided (garbage) partial solutions: none of them reaches the answer
    assert main(["reach", "--own-states", "--dataset", "arith-easy", "--split", str(split), *common]) == 0
    out = capsys.readouterr().out
    assert "of 3 problems; in S_good: 0.000 of states" in out

    assert main(["prefix-search", "--dataset", "math500", "--limit", "2", "--out", str(guidance),
                 *common]) == 2
    assert "dataset: file has 'arith-easy', asked for 'math500'" in capsys.readouterr().err
