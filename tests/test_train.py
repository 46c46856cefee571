"""The training loop end to end on a tiny real transformer: logs and report, exact resume
after ``kill -9``, refusal of a foreign checkpoint, a full disk while checkpointing,
non-finite losses, dynamic sampling giving up, SFT, and the named methods."""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from tiny_learner import FollowerPolicy, TinyLearner  # noqa: E402

from pope_env.agents.grpo import GRPOConfig, TokenLogprobs  # noqa: E402
from pope_env.agents.methods import METHODS, build_source, get_method, make_items, sft_items  # noqa: E402
from pope_env.agents.policy import SamplingParams  # noqa: E402
from pope_env.agents.rollout import DynamicSamplingError, EnvSource, env_reward, math_reward  # noqa: E402
from pope_env.agents.train import CheckpointError, TrainConfig, Trainer, TrainingDivergedError  # noqa: E402
from pope_env.datasets import arithmetic  # noqa: E402
from pope_env.errors import ConfigError, UnknownNameError  # noqa: E402
from pope_env.io import read_jsonl  # noqa: E402

HARD = arithmetic.generate(8, 4, seed=1)
EASY = arithmetic.generate(8, 1, seed=1)
GUIDANCE = {p.id: 2 for p in HARD}


def render(problem, prefix_len):
    return problem.question + "\n" + "".join(problem.steps[:prefix_len])


def first_digit_reward(completions, items):
    return [1.0 if c[:1] == it.problem.answer[:1] else 0.0 for c, it in zip(completions, items)]


def config(**kw) -> TrainConfig:
    base = dict(steps=3, prompts_per_step=4, group_size=4, sampling=SamplingParams(max_new_tokens=6),
                grpo=GRPOConfig(lr=1e-3), eval_every=2, eval_k=2, save_every=1, progress=False, tensorboard=False)
    base.update(kw)
    return TrainConfig(**base)


def trainer(tmp_path, method="pope", learner=None, reward=first_digit_reward, **kw) -> Trainer:
    m = get_method(method)
    cfg = config(method=method, grpo=m.grpo_config(kw.pop("grpo", GRPOConfig(lr=1e-3))), **kw)
    src = build_source(m, render, hard=HARD, easy=EASY, guidance=GUIDANCE, seed=0)
    return Trainer(learner or TinyLearner(0), src, reward, cfg, tmp_path, eval_items=make_items(HARD[:3], render),
                   sft_source=sft_items(HARD, render) if m.sft_steps else None)


def test_training_run_writes_logs_report_plot_and_tensorboard(tmp_path):
    res = trainer(tmp_path, tensorboard=True, steps=4).train()
    assert res.steps == 4
    log = read_jsonl(tmp_path / "train_log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    for key in ("reward", "guided_hard_success", "unguided_hard_success", "solved_set_size", "entropy",
                "response_length", "clip_fraction", "loss", "grad_norm", "tokens_per_s"):
        assert key in log[0], key
    assert 0 < log[0]["entropy"] <= 5  # ~log(vocab) for a random model
    evals = read_jsonl(tmp_path / "eval_log.jsonl")
    assert [e["step"] for e in evals] == [0, 2, 4]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["steps"] == 4 and len(report["evals"]) == 3
    assert (tmp_path / "passk.png").read_bytes()[:4] == b"\x89PNG"
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step-0000004"


def _run_script(out: Path, *extra: str, **popen_kw) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.Popen([sys.executable, str(HERE / "train_script.py"), str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **popen_kw)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_resume_after_kill_9_loses_and_repeats_no_step(tmp_path):
    steps = "6"
    ref = _run_script(tmp_path / "ref", "--steps", steps)
    ref_out, ref_err = ref.communicate(timeout=240)
    assert ref.returncode == 0, ref_err[-2000:]

    victim = _run_script(tmp_path / "run", "--steps", steps, "--delay", "0.3")
    log = tmp_path / "run" / "train_log.jsonl"
    deadline = time.time() + 200
    while time.time() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= 3:
            break
        if victim.poll() is not None:
            pytest.fail("the run ended before it could be killed: " + victim.stderr.read()[-2000:])
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert len(read_jsonl(log, strict=False)) < 6

    resumed = _run_script(tmp_path / "run", "--steps", steps)
    out, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err[-2000:]
    want, got = json.loads(ref_out.strip().splitlines()[-1]), json.loads(out.strip().splitlines()[-1])
    assert got["steps"] == 6
    assert got["checksum"] == pytest.approx(want["checksum"], abs=0, rel=1e-12)
    a = read_jsonl(tmp_path / "ref" / "train_log.jsonl")
    b = read_jsonl(log)
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    for ra, rb in zip(a, b):
        for key in ("reward", "loss", "guided_hard_success", "response_length", "solved_set_size"):
            assert ra[key] == rb[key], (ra["step"], key)
    assert [e["step"] for e in read_jsonl(tmp_path / "run" / "eval_log.jsonl")] == [0, 2, 4, 6]


def test_checkpoint_from_another_config_is_refused_naming_the_difference(tmp_path):
    trainer(tmp_path, steps=1).train()
    with pytest.raises(ConfigError, match=r"grpo\.lr: 0\.001 \(checkpoint\) vs 0\.01 \(now\)"):
        trainer(tmp_path, steps=2, grpo=GRPOConfig(lr=1e-2)).train()
    bigger = TinyLearner(model=__import__("tiny_learner").tiny_llama(0, hidden=32))
    with pytest.raises(ConfigError, match=r"model\.parameters"):
        trainer(tmp_path, steps=2, learner=bigger).train()
    # more steps with the same settings is a resume, not a conflict
    assert trainer(tmp_path, steps=2).train().steps == 2


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    trainer(tmp_path, steps=1).train()
    good = tmp_path / "checkpoints" / "step-0000001"
    before = {p.name: p.read_bytes() for p in good.iterdir()}
    real_save = torch.save

    def full_disk(obj, f, *a, **kw):
        real_save(obj, f, *a, **kw)  # the bytes land, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match="step-0000001 is intact"):
        trainer(tmp_path, steps=2).train()
    monkeypatch.setattr(torch, "save", real_save)
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step-0000001"
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before
    assert not list((tmp_path / "checkpoints").glob(".*tmp"))
    assert trainer(tmp_path, steps=2).train().steps == 2  # and it resumes from it


class NaNLearner(TinyLearner):
    """Returns NaN log-probs from the first ``bad_calls`` differentiable forward passes."""

    def __init__(self, bad_calls: int) -> None:
        super().__init__(0)
        self.bad_calls = bad_calls

    def token_logprobs(self, prompt_ids, completion_ids, *, with_entropy=False):
        out = super().token_logprobs(prompt_ids, completion_ids, with_entropy=with_entropy)
        if torch.is_grad_enabled() and self.bad_calls > 0:
            self.bad_calls -= 1
            return TokenLogprobs(out.logprobs * float("nan"), out.mask, out.entropy)
        return out


def test_a_nan_step_is_skipped_and_logged_then_training_goes_on(tmp_path):
    learner = NaNLearner(bad_calls=1)
    res = trainer(tmp_path, learner=learner, steps=3, grpo=GRPOConfig(lr=1e-3, micro_batch_size=16)).train()
    log = read_jsonl(tmp_path / "train_log.jsonl")
    assert [r["skipped"] for r in log] == [True, False, False]
    assert log[0]["loss"] is None and log[0]["skip_reason"]
    assert res.skipped_steps == 1


def test_repeated_nan_steps_stop_training(tmp_path):
    learner = NaNLearner(bad_calls=10**6)
    with pytest.raises(TrainingDivergedError, match="3 consecutive steps"):
        trainer(tmp_path, learner=learner, steps=10).train()
    assert [r["skipped"] for r in read_jsonl(tmp_path / "train_log.jsonl")] == [True, True, True]


def test_all_groups_filtered_refills_then_gives_up(tmp_path):
    never = lambda completions, items: [0.0] * len(completions)  # noqa: E731
    with pytest.raises(DynamicSamplingError, match="after 3 rounds"):
        trainer(tmp_path, reward=never, grpo=GRPOConfig(dynamic_sampling=True, max_refill_rounds=2)).train()


def test_group_size_one_is_refused():
    with pytest.raises(ConfigError, match="group_size is 1"):
        config(group_size=1)


def test_sft_oracle_lowers_the_oracle_loss(tmp_path):
    cfg = config(method="sft-oracle", steps=1, sft_steps=6, sft_lr=3e-3)
    t = Trainer(TinyLearner(0), build_source(get_method("grpo"), render, hard=HARD), first_digit_reward, cfg,
                tmp_path / "sft", sft_source=sft_items(HARD, render))
    t.train()
    log = read_jsonl(tmp_path / "sft" / "train_log.jsonl")
    assert [r["phase"] for r in log] == ["sft"] * 6 + ["rl"]
    assert log[5]["sft_loss"] < log[0]["sft_loss"] - 0.1


def test_a_nan_sft_step_is_skipped_like_a_grpo_step_and_micro_batching_does_not_change_sft(tmp_path):
    """SFT and GRPO share one accumulate-and-step routine: a non-finite SFT loss skips the
    step (no parameter change, logged), and the SFT update does not depend on the
    micro-batch size."""
    def sft_run(out, learner, micro):
        cfg = config(method="sft-oracle", steps=0, sft_steps=2, sft_lr=3e-3, grpo=GRPOConfig(lr=1e-3, micro_batch_size=micro))
        Trainer(learner, build_source(get_method("grpo"), render, hard=HARD), first_digit_reward, cfg, out,
                sft_source=sft_items(HARD, render)).train()
        return read_jsonl(out / "train_log.jsonl"), learner

    log, bad = sft_run(tmp_path / "nan", NaNLearner(bad_calls=1), 16)
    assert [r["skipped"] for r in log] == [True, False] and log[0]["skip_reason"]
    _, one = sft_run(tmp_path / "one", TinyLearner(0), 16)
    _, many = sft_run(tmp_path / "many", TinyLearner(0), 1)
    for a, b in zip(one.model.parameters(), many.model.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


def test_hf_policy_learner_runs_sft_then_grpo_with_its_own_prompt_encoding(tmp_path):
    from tiny_learner import hf_char_tokenizer, tiny_llama

    from pope_env.agents.hf_policy import HFPolicy
    from pope_env.agents.train import tokenize_pairs

    policy = HFPolicy(tiny_llama(0), tokenizer=hf_char_tokenizer(), name="tiny-hf", progress=False)
    items = make_items(HARD[:2], render)
    prompt_ids, completion_ids = tokenize_pairs(policy, items)
    assert prompt_ids == policy.encode([it.prompt for it in items])  # the ids it samples from
    assert completion_ids[0][-1] == policy.tokenizer.eos_token_id
    assert policy.tokenizer.decode(completion_ids[0][:-1]).replace(" ", "") == HARD[0].solution.replace(" ", "")
    cfg = config(method="sft-oracle", steps=2, sft_steps=3, sft_lr=3e-3)
    Trainer(policy, build_source(get_method("grpo"), render, hard=HARD), first_digit_reward, cfg, tmp_path,
            sft_source=sft_items(HARD, render), eval_items=make_items(HARD[:2], render)).train()
    log = read_jsonl(tmp_path / "train_log.jsonl")
    assert [r["phase"] for r in log] == ["sft"] * 3 + ["rl"] * 2
    assert log[2]["sft_loss"] < log[0]["sft_loss"]
    assert all(r["trained_tokens"] > 0 and not r["skipped"] for r in log)


def test_methods_are_named_and_build_their_mixtures():
    assert set(METHODS) == {"grpo", "pope", "entropy", "clip-higher", "passk", "passk-chen", "mix-easy", "sft-oracle",
                            "srl", "srl-sequence", "srl-then-rlvr"}
    with pytest.raises(UnknownNameError, match="Known methods: clip-higher"):
        get_method("ppo")
    assert get_method("clip-higher").grpo_config().eps_high == 0.28
    assert get_method("entropy").grpo_config().entropy_coef > 0
    pope = build_source(get_method("pope"), render, hard=HARD, guidance=GUIDANCE)
    batch = pope.next_items(8)
    assert sum(it.guided for it in batch) == 4
    assert all(it.prefix_len == 2 for it in batch if it.guided)
    mix = build_source(get_method("mix-easy"), render, hard=HARD, easy=EASY).next_items(8)
    assert sum(it.tags["split"] == "easy" for it in mix) == 4
    assert all(not it.guided for it in build_source(get_method("grpo"), render, hard=HARD).next_items(8))
    with pytest.raises(ConfigError, match="prefix-search"):
        build_source(get_method("pope"), render, hard=HARD, guidance={})
    with pytest.raises(ConfigError, match="easy set"):
        build_source(get_method("mix-easy"), render, hard=HARD)


def test_env_source_and_env_reward_train_through_the_pope_math_env(tmp_path):
    from pope_env.envs.math import MathEnv

    problems = arithmetic.generate(6, 4, seed=3)
    src = EnvSource(MathEnv(None, problems=problems, mode="pope"), seed=0, use_messages=False)
    items = src.next_items(4)
    assert sum(it.guided for it in items) == 2 and all(it.problem is None for it in items)
    reward = env_reward(MathEnv(None, problems=problems, mode="pope"))
    gold = {p.id: p.answer for p in problems}
    assert reward([f"so \\boxed{{{gold[it.problem_id]}}}" for it in items], items) == [1.0] * 4
    assert reward(["\\boxed{-1}"] * 4, items) == [0.0] * 4
    state = src.state_dict()
    upcoming = [(it.problem_id, it.guided) for it in src.next_items(3)]
    again = EnvSource(MathEnv(None, problems=problems, mode="pope"), seed=0, use_messages=False)
    again.load_state_dict(state)
    assert [(it.problem_id, it.guided) for it in again.next_items(3)] == upcoming
    Trainer(TinyLearner(0), src, reward, config(steps=1, eval_every=0), tmp_path).train()
    rec = read_jsonl(tmp_path / "train_log.jsonl")[0]
    assert rec["guided_hard_success"] == 0.0 and rec["unguided_hard_success"] == 0.0


def test_math_reward_uses_real_math_verify_verdicts():
    p = arithmetic.generate(1, 2, seed=0)[0]
    item = make_items([p], render)[0]
    r = math_reward()([f"\\boxed{{{p.answer}}}", f"\\boxed{{{int(p.answer) + 1}}}", f"\\boxed{{{p.answer}.0}}"],
                      [item] * 3)
    assert r == [1.0, 0.0, 1.0]


# --- the CLI ---------------------------------------------------------------------------------
def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "pope_env", "train", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_cli_runs_hard_split_prefix_search_and_two_methods_then_resumes(tmp_path):
    args = ["--learner", "tiny_learner:TinyLearner", "--method", "pope,grpo", "--dataset", "arith-hard",
            "--limit", "4", "--k", "2", "--steps", "2", "--prompts-per-step", "2", "--group-size", "2",
            "--max-new-tokens", "6", "--prompt-format", "text", "--eval-every", "1", "--eval-k", "2",
            "--eval-problems", "2", "--save-every", "1", "--lr", "1e-3", "--no-progress", "--no-tensorboard",
            "--reach-problems", "2", "--reach-k", "2", "--batch-problems", "3", "--out", str(tmp_path)]
    first = _cli(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "hard set: 4 problems" in first.stdout and "pope " in first.stdout and "grpo " in first.stdout
    for name in ("hard_split.jsonl", "guidance.jsonl", "summary.json", "passk.png",
                 "pope/train_log.jsonl", "grpo/report.json"):
        assert (tmp_path / name).exists(), name
    pope_log = read_jsonl(tmp_path / "pope" / "train_log.jsonl")
    assert [r["step"] for r in pope_log] == [1, 2]
    assert all(r["guided_hard_success"] is not None for r in pope_log)  # guided prompts were trained on
    evals = read_jsonl(tmp_path / "pope" / "eval_log.jsonl")
    assert [e["step"] for e in evals] == [0, 1, 2]
    assert all(0.0 <= e["s_good_overlap"] <= 1.0 and e["own_states"] >= 0 for e in evals)
    assert "s_good_overlap end" in first.stdout
    again = _cli(*args)  # everything is finished: resumes, redoes nothing
    assert again.returncode == 0, again.stderr[-3000:]
    assert read_jsonl(tmp_path / "pope" / "train_log.jsonl") == pope_log


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cli_trains_the_default_smollm2_on_math(tmp_path):
    pytest.importorskip("pope_env.agents.hf_policy", reason="HFPolicy lands with the policies branch")
    out = tmp_path / "smol"
    res = _cli("--model", "smollm2", "--method", "grpo", "--dataset", "math-train-l5", "--limit", "2", "--k", "2",
               "--steps", "2", "--prompts-per-step", "2", "--group-size", "2", "--max-new-tokens", "24",
               "--eval-every", "0", "--eval-k", "2", "--eval-problems", "1", "--save-every", "2",
               "--no-progress", "--out", str(out), timeout=580)
    assert res.returncode == 0, res.stderr[-3000:]
    log = read_jsonl(out / "grpo" / "train_log.jsonl")
    assert [r["step"] for r in log] == [1, 2]
    assert all(r["trained_tokens"] > 0 and r["entropy"] > 0 for r in log)


def test_a_separate_rollout_policy_samples_and_follows_every_update(tmp_path):
    learner, follower = TinyLearner(0), FollowerPolicy(0)
    m = get_method("grpo")
    t = Trainer(learner, build_source(m, render, hard=HARD, seed=0), first_digit_reward,
                config(method="grpo", steps=3, eval_every=0), tmp_path, eval_items=make_items(HARD[:2], render),
                rollout_policy=follower)
    t.train()
    assert follower.syncs == 1 + 3  # at the start and after each of the 3 updates
    log = read_jsonl(tmp_path / "train_log.jsonl")
    assert all(r["sync_s"] >= 0 for r in log)
    for a, b in zip(learner.model.parameters(), follower.model.parameters()):
        assert torch.equal(a, b)
    assert not any(torch.equal(a, b) for a, b in zip(learner.model.parameters(), TinyLearner(0).model.parameters())
                   if a.dim() == 2), "the learner did not train"


def test_a_rollout_policy_that_cannot_follow_the_learner_is_refused(tmp_path):
    src = build_source(get_method("grpo"), render, hard=HARD, seed=0)
    with pytest.raises(ConfigError, match="load_weights_from"):
        Trainer(TinyLearner(0), src, first_digit_reward, config(), tmp_path, rollout_policy=TinyLearner(1))


def test_eval_hooks_add_their_metrics_to_every_evaluation_record(tmp_path):
    calls = []

    def hook(policy, step):
        calls.append(step)
        return {"probe": float(step), "probe_name": policy.name}

    t = Trainer(TinyLearner(0), build_source(get_method("grpo"), render, hard=HARD, seed=0), first_digit_reward,
                config(method="grpo", steps=2, eval_every=1), tmp_path, eval_items=make_items(HARD[:2], render),
                eval_hooks=[hook])
    res = t.train()
    assert calls == [0, 1, 2]
    assert [(e["step"], e["probe"], e["probe_name"]) for e in res.evals] == [(s, float(s), "tiny-llama") for s in (0, 1, 2)]
    assert [e["probe"] for e in read_jsonl(tmp_path / "eval_log.jsonl")] == [0.0, 1.0, 2.0]


# --- fidelity of the baselines: SFT's own learning rate, the sampling temperature -----------
def test_sft_oracle_at_default_settings_fits_the_oracle_and_reports_it(tmp_path):
    """SFT has its own learning rate (not the RL rate of 1e-6, which barely moves the
    weights), logs loss and entropy, reports the fit, and RL starts with a fresh optimiser."""
    assert TrainConfig().sft_lr == 1e-5 and TrainConfig().sft_lr >= 10 * GRPOConfig().lr
    learner = TinyLearner(0)
    before = [p.detach().clone() for p in learner.model.parameters()]
    cfg = config(method="sft-oracle", steps=1, sft_steps=3, grpo=GRPOConfig(lr=1e-6), eval_every=0)
    t = Trainer(learner, build_source(get_method("grpo"), render, hard=HARD), first_digit_reward, cfg,
                tmp_path, sft_source=sft_items(HARD, render))
    res = t.train()
    sft_moved = max((p.detach() - b).abs().max().item() for p, b in zip(learner.model.parameters(), before))
    # Adam moves each weight by about lr per step: 4 steps at 1e-6 could not reach 1e-5
    assert sft_moved > 1.5e-5
    log = read_jsonl(tmp_path / "train_log.jsonl")
    assert [r["phase"] for r in log] == ["sft"] * 3 + ["rl"]
    assert all(r["sft_lr"] == 1e-5 and 0 < r["sft_entropy"] <= math.log(128) for r in log[:3])
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["sft"] == res.sft
    assert res.sft == {"steps": 3, "lr": 1e-5, "sft_loss_first": log[0]["sft_loss"],
                       "sft_loss_last": log[2]["sft_loss"], "entropy_before": log[0]["sft_entropy"],
                       "entropy_after": log[2]["sft_entropy"]}
    # the RL phase's optimiser state holds one step, not SFT's three
    steps = {int(s["step"]) for s in t.optimizer.optimizer.state.values()}
    assert steps == {1}


class _TemperatureSpy(TinyLearner):
    """A tiny learner that records the temperature of every log-prob computation."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.temperatures: set[float] = set()

    def token_logprobs(self, prompt_ids, completion_ids, *, with_entropy=False, **kw):
        self.temperatures.add(kw.get("temperature", 1.0))
        return super().token_logprobs(prompt_ids, completion_ids, with_entropy=with_entropy, **kw)


def test_trainer_computes_learner_and_reference_logprobs_at_the_sampling_temperature(tmp_path):
    learner, reference = _TemperatureSpy(0), _TemperatureSpy(0)
    cfg = config(method="grpo", steps=2, eval_every=0, sampling=SamplingParams(temperature=0.7, max_new_tokens=6),
                 grpo=GRPOConfig(lr=1e-3, kl_beta=0.1))
    Trainer(learner, build_source(get_method("grpo"), render, hard=HARD), first_digit_reward, cfg, tmp_path,
            reference=reference).train()
    assert learner.temperatures == {0.7} and reference.temperatures == {0.7}
    log = read_jsonl(tmp_path / "train_log.jsonl")
    assert all(r["ratio_mean"] == pytest.approx(1.0, abs=1e-5) and r["clip_fraction"] == 0 for r in log)
    with pytest.raises(ConfigError, match="temperature > 0"):
        config(sampling=SamplingParams(temperature=0.0, max_new_tokens=6))


def test_cli_sft_lr_reaches_the_sft_phase(tmp_path):
    args = ["--learner", "tiny_learner:TinyLearner", "--method", "sft-oracle", "--dataset", "arith-hard",
            "--limit", "2", "--k", "2", "--steps", "0", "--sft-steps", "2", "--sft-lr", "3e-3",
            "--prompts-per-step", "2", "--group-size", "2", "--max-new-tokens", "4", "--prompt-format", "text",
            "--eval-k", "2", "--eval-problems", "1", "--no-progress", "--no-tensorboard", "--out", str(tmp_path)]
    res = _cli(*args)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((tmp_path / "sft-oracle" / "report.json").read_text())
    assert report["sft"]["lr"] == 3e-3 and report["config"]["sft_lr"] == 3e-3 and report["sft"]["steps"] == 2
    usage = subprocess.run([sys.executable, "-m", "pope_env", "train", "--help"], capture_output=True, text=True)
    assert f"TrainConfig.sft_lr, {TrainConfig().sft_lr}" in " ".join(usage.stdout.split())  # the default it names


def test_sft_oracle_works_for_the_char_model_too(tmp_path):
    """The SFT path is model-agnostic: a learner with encode_prompt and a plain tokenizer
    (the demo's char model) gets its oracle solutions tokenized as it samples."""
    from pope_env.agents.charlm import CharLMConfig, CharLMPolicy, CharTransformer
    from pope_env.agents.pretrain import render_guided_prompt

    torch.manual_seed(0)
    learner = CharLMPolicy(CharTransformer(CharLMConfig(d_model=32, n_layers=2, n_heads=2, max_len=96)))
    char_render = lambda p, k, start=0: render_guided_prompt(p, k)  # noqa: E731
    cfg = config(method="sft-oracle", steps=1, sft_steps=4, sft_lr=1e-3, eval_every=0,
                 sampling=SamplingParams(max_new_tokens=8))
    res = Trainer(learner, build_source(get_method("grpo"), char_render, hard=HARD), first_digit_reward, cfg,
                  tmp_path, sft_source=sft_items(HARD, char_render)).train()
    assert res.sft["steps"] == 4 and res.sft["sft_loss_last"] < res.sft["sft_loss_first"] - 0.1


def test_a_trainer_runs_after_another_trainer_left_accelerate_state_with_other_settings(tmp_path):
    """TRL's GRPOTrainer (or any Accelerator) run earlier in the same process leaves
    accelerate's process-wide state behind; a Trainer with another mixed precision resets it
    with a warning instead of failing with "AcceleratorState has already been initialized"."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    Accelerator(mixed_precision="bf16")  # what an earlier trainer leaves behind
    assert str(AcceleratorState().mixed_precision) == "bf16"
    with pytest.warns(UserWarning, match="resetting accelerate's process-wide state"):
        res = trainer(tmp_path, steps=1, mixed_precision="no").train()
    assert res.steps == 1 and str(AcceleratorState().mixed_precision) == "no"
