"""SRL through the GRPO trainer: methods, rewards, dynamic sampling, a real tiny run, the
SRL-then-RLVR curriculum."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from tiny_learner import TinyLearner  # noqa: E402

from pope_env.agents.grpo import GRPOConfig  # noqa: E402
from pope_env.agents.methods import build_source, get_method, make_items, method_reward  # noqa: E402
from pope_env.agents.policy import Generation, SamplingParams  # noqa: E402
from pope_env.agents.rollout import DynamicSampler, ShuffledItems  # noqa: E402
from pope_env.agents.srl import (  # noqa: E402
    expert_sequence,
    sequence_items,
    sequence_similarity_reward_fn,
    srl_items,
    srl_sft_items,
    step_similarity_reward,
    train_srl_then_rlvr,
)
from pope_env.agents.train import TrainConfig, Trainer  # noqa: E402
from pope_env.datasets import arithmetic  # noqa: E402
from pope_env.envs.srl import SRLMathEnv  # noqa: E402
from pope_env.errors import ConfigError  # noqa: E402
from pope_env.io import read_jsonl  # noqa: E402
from pope_env.problem import Problem  # noqa: E402

PROBLEMS = arithmetic.generate(6, 3, seed=1)  # 3 expert steps each, short prompts


def render(problem, prefix_len):
    return problem.question + "\n" + "".join(problem.steps[:prefix_len])


def test_srl_methods_use_dynamic_sampling_at_001_and_their_own_prompts_and_rewards():
    for name in ("srl", "srl-sequence", "srl-then-rlvr"):
        g = get_method(name).grpo_config(GRPOConfig(lr=1e-4))
        assert g.dynamic_sampling and g.min_group_std == 0.01 and g.lr == 1e-4
    assert get_method("srl-then-rlvr").then == "grpo"
    src = build_source(get_method("srl"), render, hard=PROBLEMS, seed=0)
    items = src.next_items(sum(len(p.steps) - 1 for p in PROBLEMS))
    assert sorted((it.problem_id, it.options["step"]) for it in items) == sorted(
        (p.id, k) for p in PROBLEMS for k in range(2, len(p.steps) + 1)  # N - 1 prompts, as in SRL
    )
    seq = build_source(get_method("srl-sequence"), render, hard=PROBLEMS, seed=0).next_items(len(PROBLEMS))
    assert sorted(it.problem_id for it in seq) == sorted(p.id for p in PROBLEMS)
    assert method_reward(get_method("srl")) is step_similarity_reward
    assert method_reward(get_method("srl-sequence")) is sequence_similarity_reward_fn
    with pytest.raises(ConfigError, match="verifiable reward"):
        method_reward(get_method("grpo"))
    with pytest.raises(ConfigError, match="no problem has 2 or more expert steps"):
        srl_items([Problem("x", "q", "", ("only step",), "", "t")])


def test_method_reward_scores_srl_items_by_similarity_and_others_by_the_verifiable_reward():
    def verifiable(completions, items):
        return [0.5 if c == it.problem.answer else 0.25 for c, it in zip(completions, items)]

    reward = method_reward(get_method("srl"), verifiable)
    srl = srl_items(PROBLEMS[:1])[0]
    task = make_items(PROBLEMS[:1], render)[0]
    expert = srl.problem.steps[srl.options["step"] - 1]
    got = reward([f"<think>t</think>{expert}", PROBLEMS[0].answer, "bad", "x"], [srl, task, srl, task])
    assert got == [1.0, 0.5, -1.0, 0.25]


def test_items_match_the_env_and_rewards_score_the_right_reference():
    env = SRLMathEnv(PROBLEMS)
    items = srl_items(PROBLEMS)
    for it in items:
        obs, info = env.reset(options=dict(it.options))
        assert it.prompt == info["messages"]
        expert = it.problem.steps[it.options["step"] - 1]
        completion = f"<think>t</think>{expert}"
        _, r_env, *_ = env.step(completion)
        assert step_similarity_reward([completion], [it]) == [r_env] == [1.0]
    assert step_similarity_reward(["no format"], [items[0]]) == [-1.0]
    seq = sequence_items(PROBLEMS)
    whole = [f"<think>t</think>{expert_sequence(it.problem)}" for it in seq]
    assert sequence_similarity_reward_fn(whole, seq) == [1.0] * len(seq)
    assert sequence_similarity_reward_fn([f"<think>t</think>{it.problem.steps[0]}" for it in seq], seq) != [1.0] * len(seq)
    with pytest.raises(ConfigError, match="not an SRL step prompt"):
        step_similarity_reward(["x"], make_items(PROBLEMS[:1], render))


class FirstStepsAllSame:
    """A scripted policy: identical completions for the first prompt of each problem (step 2,
    one expert step shown: zero reward variance, so dynamic sampling must drop them), varied
    ones for later steps."""

    name = "scripted"

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, prompts, *, n=1, sampling=SamplingParams()):
        self.calls += 1
        out = []
        for p in prompts:
            text = p[-1]["content"] if isinstance(p, list) else p
            shown = text.split("Solution so far:\n", 1)[1].split("\n\n", 1)[0].split("\n")
            if len(shown) == 1:
                out.append([Generation("<think>same</think>1+1") for _ in range(n)])
            else:
                out.append([Generation(f"<think>v</think>{'9' * j}-{j}") for j in range(n)])
        return out


def test_dynamic_sampling_drops_zero_variance_srl_groups_and_refills():
    items = srl_items(PROBLEMS)
    first = sum(it.options["step"] == 2 for it in items)
    policy = FirstStepsAllSame()
    sampler = DynamicSampler(policy, ShuffledItems(items, seed=3), step_similarity_reward, group_size=4, min_std=0.01)
    groups, report = sampler.sample(len(items) - first)
    assert len(groups) == len(items) - first
    assert all(g.item.options["step"] > 2 and g.reward_std > 0.01 for g in groups)
    assert report.dropped >= 1 and report.rounds >= 2 and policy.calls == report.rounds
    dropped = [g for g in report.all_groups if g.reward_std <= 0.01]
    assert len(dropped) == report.dropped and all(g.item.options["step"] == 2 for g in dropped)
    # without the filter nothing is dropped and one round suffices
    plain = DynamicSampler(FirstStepsAllSame(), ShuffledItems(items, seed=3), step_similarity_reward, group_size=4)
    groups, report = plain.sample(len(items))
    assert report.dropped == 0 and report.rounds == 1 and len(groups) == len(items)


def _config(**kw) -> TrainConfig:
    base = dict(
        steps=2, prompts_per_step=4, group_size=4, sampling=SamplingParams(max_new_tokens=16),
        grpo=GRPOConfig(lr=1e-3), eval_every=0, save_every=10, progress=False, tensorboard=False,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def warm_learner(tmp_path_factory) -> TinyLearner:
    """A tiny real transformer taught SRL's output format by the trainer's SFT phase on the
    expert steps written as ``<think></think>step`` (a random model never emits the tags,
    so every group would score -1 and carry no signal)."""
    learner = TinyLearner(0)
    cfg = _config(method="srl-sft-warmup", steps=0, sft_steps=40, sft_lr=1e-2)
    Trainer(learner, build_source(get_method("srl"), render, hard=PROBLEMS), step_similarity_reward, cfg,
            tmp_path_factory.mktemp("warmup"), sft_source=ShuffledItems(srl_sft_items(PROBLEMS), name="sft")).train()
    return learner


@pytest.mark.slow
def test_short_real_srl_training_run(warm_learner, tmp_path):
    method = get_method("srl")
    before = [p.detach().clone() for p in warm_learner.model.parameters()]
    cfg = _config(method="srl", grpo=method.grpo_config(GRPOConfig(lr=1e-3)), max_consecutive_nonfinite=1)
    trainer = Trainer(warm_learner, build_source(method, render, hard=PROBLEMS, seed=0),
                      method_reward(method), cfg, tmp_path)
    result = trainer.train()
    assert result.steps == 2
    log = read_jsonl(tmp_path / "train_log.jsonl")
    assert [r["step"] for r in log] == [1, 2]
    for r in log:
        assert -1.0 <= r["reward"] <= 1.0 and math.isfinite(r["loss"]) and not r.get("skipped")
        assert r["groups_sampled"] >= 4 and r["groups_sampled"] - r["groups_dropped"] >= 4
    assert any(not torch.equal(a, b) for a, b in zip(before, warm_learner.model.parameters()))


@pytest.mark.slow
def test_srl_then_rlvr_curriculum(warm_learner, tmp_path):
    def first_digit_reward(completions, items):
        return [1.0 if c[:1] == it.problem.answer[:1] else 0.0 for c, it in zip(completions, items)]

    rlvr = build_source(get_method("grpo"), render, hard=PROBLEMS, seed=0)
    srl_result, rlvr_result = train_srl_then_rlvr(
        warm_learner, srl_problems=PROBLEMS, rlvr_source=rlvr, rlvr_reward=first_digit_reward,
        config=_config(method="srl-then-rlvr", steps=1), srl_steps=1, output_dir=tmp_path,
        eval_items=make_items(PROBLEMS[:2], render),
    )
    assert (srl_result.steps, rlvr_result.steps) == (1, 1)
    srl_log = read_jsonl(tmp_path / "1-srl" / "train_log.jsonl")
    rlvr_log = read_jsonl(tmp_path / "2-rlvr" / "train_log.jsonl")
    assert len(srl_log) == len(rlvr_log) == 1
    assert rlvr_result.evals, "the RLVR phase evaluates pass@k on the verifiable reward"
    # re-running finds both phases finished and trains nothing more
    again = train_srl_then_rlvr(
        warm_learner, srl_problems=PROBLEMS, rlvr_source=build_source(get_method("grpo"), render, hard=PROBLEMS, seed=0),
        rlvr_reward=first_digit_reward, config=_config(method="srl-then-rlvr", steps=1), srl_steps=1,
        output_dir=tmp_path,
    )
    assert len(read_jsonl(tmp_path / "2-rlvr" / "train_log.jsonl")) == 1 and again[1].steps == 1


def test_prefilled_think_items_rewards_and_sft_targets():
    from pope_env.agents.srl import method_reward as srl_method_reward, template_prefills_think

    items = srl_items(PROBLEMS[:1], prefilled_think=True)
    it = items[0]
    expert = it.problem.steps[it.options["step"] - 1].strip()
    inside = f"monologue</think>{expert}"  # what a model writes after a template's "<think>\n"
    assert step_similarity_reward([inside], [it]) == [1.0]
    assert step_similarity_reward([inside], srl_items(PROBLEMS[:1])[:1]) == [-1.0]  # strict items
    assert srl_method_reward("step-similarity", prefilled_think=True)([inside], srl_items(PROBLEMS[:1])[:1]) == [1.0]
    target = srl_sft_items(PROBLEMS[:1], prefilled_think=True)[0].problem.solution
    assert target == f"</think>{expert}" and not target.startswith("<think>")
    assert step_similarity_reward([target], [it]) == [1.0]

    class Rendered:  # a policy whose chat template opens the monologue (QwQ / DeepSeek-R1 style)
        def __init__(self, tail):
            self.tail = tail

        def render(self, prompt):
            return "".join(f"<|{m['role']}|>{m['content']}" for m in prompt) + "<|assistant|>" + self.tail

    assert template_prefills_think(Rendered("<think>\n")) is True
    assert template_prefills_think(Rendered("")) is False
    assert template_prefills_think(TinyLearner(0)) is False


@pytest.mark.slow
def test_srl_then_rlvr_uses_dynamic_sampling_in_the_rlvr_phase_by_default(warm_learner, tmp_path):
    import zlib

    odd = {p.id for p in PROBLEMS[1::2]}

    def half_informative(completions, items):
        # problems in `odd` always score 0 (zero variance: dynamic sampling drops them)
        return [0.0 if it.problem_id in odd else float(zlib.crc32(c.encode()) % 2) for c, it in zip(completions, items)]

    rlvr = build_source(get_method("grpo"), render, hard=PROBLEMS, seed=0)
    config = _config(method="srl-then-rlvr", steps=2)
    assert not config.grpo.dynamic_sampling  # the user's config did not ask for it
    train_srl_then_rlvr(warm_learner, srl_problems=PROBLEMS, rlvr_source=rlvr, rlvr_reward=half_informative,
                        config=config, srl_steps=1, output_dir=tmp_path)
    rlvr_log = read_jsonl(tmp_path / "2-rlvr" / "train_log.jsonl")
    assert sum(r["groups_dropped"] for r in rlvr_log) >= 1
    assert all(r["groups_sampled"] - r["groups_dropped"] >= 4 for r in rlvr_log)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cli_trains_srl_then_rlvr_with_a_format_warm_start(tmp_path):
    args = ["--learner", "tiny_learner:TinyLearner", "--method", "srl-then-rlvr", "--dataset", "arith-hard",
            "--limit", "4", "--k", "2", "--steps", "1", "--srl-steps", "1", "--srl-sft-steps", "40",
            "--prompts-per-step", "4", "--group-size", "4", "--max-new-tokens", "16", "--prompt-format", "text",
            "--eval-every", "0", "--eval-k", "2", "--eval-problems", "2", "--lr", "1e-2",
            "--sft-lr", "1e-2", "--no-progress", "--no-tensorboard", "--out", str(tmp_path),
            "--no-rlvr-dynamic-sampling"]  # the tiny model never solves a hard problem: no group informative
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-m", "pope_env", "train", *args], capture_output=True, text=True,
                         timeout=580, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    srl_log = read_jsonl(tmp_path / "srl-then-rlvr" / "1-srl" / "train_log.jsonl")
    assert [r["phase"] for r in srl_log] == ["sft"] * 40 + ["rl"]
    assert srl_log[-1]["method"] == "srl-then-rlvr:srl" and srl_log[-1]["groups_sampled"] >= 4
    rlvr_log = read_jsonl(tmp_path / "srl-then-rlvr" / "2-rlvr" / "train_log.jsonl")
    assert [r["method"] for r in rlvr_log] == ["srl-then-rlvr:rlvr"]
    assert "srl-then-rlvr" in res.stdout and (tmp_path / "summary.json").exists()
