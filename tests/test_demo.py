"""The CPU testbed: char LM policy, cached pretraining, reward, and the demo in its quick mode."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from pope_env.agents.charlm import EOS, CharLMConfig, CharLMPolicy, CharTokenizer, make_policy
from pope_env.agents.demo import arithmetic_reward, get_preset
from pope_env.agents.grpo import TokenLogprobs
from pope_env.agents.policy import Policy, SamplingParams
from pope_env.agents.pretrain import PretrainConfig, pretrain, render_guided_prompt, render_prompt
from pope_env.datasets import arithmetic
from pope_env.errors import ConfigError, DataFormatError, UnknownNameError

TINY = CharLMConfig(d_model=32, n_layers=2, n_heads=2, max_len=96)


def test_tokenizer_round_trip_and_bad_character():
    tok = CharTokenizer()
    text = "7*3+7-8\n21+7-8\n\\boxed{20}"
    ids = tok.encode(text, bos=True, eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.decode(ids) == text
    with pytest.raises(DataFormatError, match="charset"):
        tok.encode("x = π")


def test_sampled_logprobs_match_learner_logprobs_and_are_seeded():
    policy = make_policy(TINY, seed=0)
    assert isinstance(policy, Policy)
    prompts = ["12+3\n", "4*5-6+7\n21+7\n"]  # different lengths: left padding in the cache
    sp = SamplingParams(max_new_tokens=24, seed=3)
    groups = policy.generate(prompts, n=3, sampling=sp)
    assert [len(g) for g in groups] == [3, 3]
    assert groups == policy.generate(prompts, n=3, sampling=sp)
    assert groups != policy.generate(prompts, n=3, sampling=replace(sp, seed=4))
    flat = [g for group in groups for g in group]
    tl = policy.token_logprobs([g.prompt_ids for g in flat], [g.token_ids for g in flat], with_entropy=True)
    assert isinstance(tl, TokenLogprobs)
    for row, g in enumerate(flat):
        n = len(g.token_ids)
        assert tl.mask[row].sum().item() == n
        assert torch.allclose(tl.logprobs[row, :n], torch.tensor(g.logprobs), atol=1e-4)
        assert g.finish_reason == ("stop" if g.token_ids[-1] == EOS else "length")
    assert (tl.entropy[tl.mask.bool()] > 0).all()
    tl.logprobs.sum().backward()
    assert policy.model.embed.weight.grad is not None


def test_generate_rejects_chat_prompts_and_overlong_prompts():
    policy = make_policy(TINY, seed=0)
    with pytest.raises(ConfigError, match="chat template"):
        policy.generate([[{"role": "user", "content": "1+1"}]])
    with pytest.raises(ConfigError, match="max_len"):
        policy.generate(["1+" * 60])


def test_greedy_stop_strings_are_cut():
    policy = make_policy(TINY, seed=0)
    g = policy.generate(["1+2\n"], sampling=SamplingParams(temperature=0, max_new_tokens=30, stop=("\n",)))[0][0]
    assert "\n" not in g.text


def test_reward_reads_the_final_boxed_integer():
    p = arithmetic.make_problem(7, [("*", 3), ("+", 7), ("-", 8)])
    assert arithmetic_reward(p.solution, p) == 1.0
    assert arithmetic_reward("21+7-8\n\\boxed{21}", p) == 0.0
    assert arithmetic_reward("\\boxed{19} then \\boxed{20}", p) == 1.0
    assert arithmetic_reward("no answer", p) == 0.0
    assert arithmetic_reward("\\boxed{2x}", p) == 0.0


@pytest.mark.slow
def test_reward_agrees_with_math_verify():
    from pope_env.rewards.math import MathVerifier

    p = arithmetic.make_problem(9, [("-", 2), ("*", 3)])
    completions = [p.solution, "7*3\n\\boxed{22}", "\\boxed{021}", "\\boxed{21.0}", "\\boxed{ 21 }", "21"]
    with MathVerifier(workers=1) as verifier:
        truth = [s.reward for s in verifier.score_batch(completions, [p.answer] * len(completions))]
    ours = [arithmetic_reward(c, p) for c in completions]
    # Ours may only be stricter on non-integer spellings (21.0); never more lenient.
    assert all(o <= t for o, t in zip(ours, truth))
    assert ours[:3] == truth[:3] and ours[4:] == truth[4:]


@pytest.mark.slow
def test_pretraining_learns_is_cached_and_deterministic(tmp_cache):
    cfg = PretrainConfig(model=TINY, levels=(1, 2), steps=80, batch_size=32, lr=3e-3,
                         context_levels=(3, 4), checkpoint_every=20)
    a = pretrain(cfg, progress=False, log=lambda _: None)
    meta = json.loads((tmp_cache / "demo" / f"base-{cfg.digest()}" / "config.json").read_text())["meta"]
    assert meta["final_loss"] < 2.5  # smoothed; starts at ~4.6 (uniform over 98 ids)
    b = pretrain(cfg, progress=False)  # cached: loaded, not retrained
    for (na, ta), (nb, tb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert na == nb and torch.equal(ta, tb)
    other = tmp_cache / "again"
    c = pretrain(cfg, folder=other, progress=False)  # same config, fresh run: same weights
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), c.model.state_dict().values()))


def test_guided_prompt_is_the_oracle_state():
    p = arithmetic.make_problem(7, [("*", 3), ("+", 7), ("-", 8)])
    assert render_prompt(p) == "7*3+7-8\n"
    assert render_guided_prompt(p, 2) == "7*3+7-8\n21+7-8\n28-8\n"
    with pytest.raises(ConfigError):
        render_guided_prompt(p, 3)


def test_presets():
    assert get_preset("default").seeds == (0,)
    assert len(get_preset("full").seeds) >= 3
    with pytest.raises(UnknownNameError):
        get_preset("huge")
    with pytest.raises(ConfigError, match="longer than"):
        replace(get_preset("default"), hard_levels=(3, 4))


@pytest.mark.slow
def test_quick_demo_runs_end_to_end_and_resumes(tmp_cache, tmp_path, capsys):
    from pope_env.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "pass@4 before" in printed and "grpo" in printed and "pope" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == {"grpo", "pope"}
    assert summary["testbed"]["hard_used"] > 0 and summary["testbed"]["eval_used"] > 0
    assert (out / "demo.png").stat().st_size > 10_000
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {(r["method"], r["seed"]) for r in records} == {("grpo", 0), ("pope", 0)}
    cfg = get_preset("quick")
    for r in records:
        assert [e["step"] for e in r["evals"]] == list(range(0, cfg.steps + 1, cfg.eval_every))
        assert r["before"] == records[0]["before"]  # same base, same evaluation draws
        assert all(0.0 <= e["s_good_overlap"] <= 1.0 for e in r["evals"])
        own = [json.loads(line) for line in (out / "runs" / f"{r['method']}-seed0" / "own_states.jsonl").open()]
        assert [d["step"] for d in own] == [e["step"] for e in r["evals"]]
        assert all(len(d["states"]) == d["metrics"]["own_states"] for d in own)
    assert "own in S_good" in printed
    assert all("s_good_overlap_after" in m for m in summary["methods"].values())
    # The hard split is measured: the base never solved these in screen_k samples.
    hard = [json.loads(line) for line in (out / "hard_split.jsonl").read_text().splitlines()[1:]]
    assert hard and all(h["level"] >= cfg.hard_levels[0] for h in hard)

    # A second run reuses every finished phase and run and reports the same numbers.
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    again = capsys.readouterr().out
    assert "already done" in again
    assert json.loads((out / "summary.json").read_text())["methods"] == summary["methods"]
