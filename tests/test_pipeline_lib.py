"""The training pipeline as a library (pope_env.agents.pipeline): each method owns its config
rules, the CLI's defaults are the config dataclasses', and run_pipeline runs every stage
without the CLI."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pope_env.agents.methods import get_method  # noqa: E402
from pope_env.agents.pipeline import PipelineConfig  # noqa: E402
from pope_env.agents.policy import SamplingParams  # noqa: E402
from pope_env.agents.train_config import GRPOConfig, TrainConfig  # noqa: E402
from pope_env.errors import ConfigError, UnknownNameError  # noqa: E402


def test_each_method_owns_its_config_rules():
    base = TrainConfig(grpo=GRPOConfig(lr=3e-6, kl_beta=0.1))
    sft = get_method("sft-oracle").train_config(base)
    assert (sft.method, sft.sft_steps, sft.grpo) == ("sft-oracle", 50, base.grpo)
    assert get_method("sft-oracle").train_config(base, sft_steps=7).sft_steps == 7
    clip = get_method("clip-higher").train_config(base)
    assert clip.grpo == base.grpo.replace(eps_high=0.28) and clip.sft_steps == 0
    srl = get_method("srl").train_config(base, sft_steps=9, srl_sft_steps=3)
    assert srl.sft_steps == 3 and srl.grpo.dynamic_sampling and srl.grpo.min_group_std == 0.01
    assert get_method("srl").train_config(base, min_group_std=0.2).grpo.min_group_std == 0.2
    curriculum = get_method("srl-then-rlvr").train_config(base, srl_sft_steps=3)
    assert curriculum.sft_steps == 0 and curriculum.grpo == get_method("grpo").grpo_config(base.grpo)
    assert (curriculum.grpo.lr, curriculum.grpo.kl_beta) == (3e-6, 0.1)  # the user's settings stay


def test_guided_methods_train_on_the_problems_with_guidance():
    from pope_env.datasets import arithmetic

    hard = arithmetic.generate(4, 3, seed=0)
    guidance = {hard[1].id: (0, 1)}
    assert get_method("pope").train_problems(hard, guidance) == [hard[1]]
    assert get_method("grpo").train_problems(hard, guidance) == hard


def test_cli_defaults_are_the_config_dataclasses_defaults():
    from pope_env.cli import cmd_train, mount_command

    parser = argparse.ArgumentParser()
    mount_command(parser.add_subparsers(), cmd_train)
    args = parser.parse_args(["train"])
    t, g, p = TrainConfig(), GRPOConfig(), PipelineConfig()
    assert (args.steps, args.prompts_per_step, args.group_size, args.sft_lr, args.seed, args.eval_every,
            args.eval_k, args.save_every, args.mixed_precision) == \
        (t.steps, t.prompts_per_step, t.group_size, t.sft_lr, t.seed, t.eval_every, t.eval_k, t.save_every,
         t.mixed_precision)
    assert SamplingParams(temperature=args.temperature, top_p=args.top_p,
                          max_new_tokens=args.max_new_tokens) == t.sampling
    assert (args.lr, args.micro_batch_size, args.max_grad_norm, args.kl_beta) == \
        (g.lr, g.micro_batch_size, g.max_grad_norm, g.kl_beta)
    assert (tuple(args.method.split(",")), args.dataset, args.strategy, args.k, args.prompt_format,
            args.eval_problems, args.sft_steps, args.srl_steps, args.srl_sft_steps, args.min_group_std,
            args.reach_problems, args.reach_k, args.reach_states, args.batch_problems) == \
        (p.methods, p.dataset, p.strategy, p.k, p.prompt_format, p.eval_problems, p.sft_steps, p.srl_steps,
         p.srl_sft_steps, p.min_group_std, p.reach_problems, p.reach_k, p.reach_states, p.batch_problems)


def test_pipeline_config_is_checked():
    with pytest.raises(UnknownNameError):
        PipelineConfig(methods=("pope", "nope"))
    with pytest.raises(ConfigError, match="no method"):
        PipelineConfig(methods=())
    with pytest.raises(ConfigError, match="reach_k"):
        PipelineConfig(reach_k=0)
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1"):
        PipelineConfig(batch_problems=0)
    with pytest.raises(ConfigError, match="'anchored' learns from the problems searched before.*batch_size=1"):
        PipelineConfig(strategy="anchored", batch_problems=4)


def test_the_config_modules_and_the_pipeline_import_no_torch():
    import subprocess

    code = ("import sys, pope_env.agents.pipeline, pope_env.agents.train_config, pope_env.cli.cmd_train; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_run_pipeline_without_the_cli(tmp_path):
    pytest.importorskip("torch")
    from tiny_learner import TinyLearner

    from pope_env.agents.pipeline import run_pipeline
    from pope_env.io import read_jsonl

    config = PipelineConfig(methods=("pope",), dataset="arith-hard", limit=3, k=2, prompt_format="text",
                            eval_problems=2)
    train = TrainConfig(steps=1, prompts_per_step=2, group_size=2, sampling=SamplingParams(max_new_tokens=5),
                        grpo=GRPOConfig(lr=1e-3), eval_every=1, eval_k=2, save_every=1, progress=False,
                        tensorboard=False)
    lines: list[str] = []
    result = run_pipeline(config, train, tmp_path, make_learner=lambda: TinyLearner(0), log=lines.append)
    assert result.hard == 3 and [r["method"] for r in result.rows] == ["pope"]
    assert result.summary.exists() and result.plot.exists()
    assert any(line.startswith("[3/3] training pope") for line in lines)
    assert [r["step"] for r in read_jsonl(tmp_path / "pope" / "train_log.jsonl")] == [1]
    assert dataclasses.asdict(config)["methods"] == ("pope",)
