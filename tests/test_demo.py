"""The CPU testbed: char LM policy, cached pretraining, reward, and the demo in its quick mode."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from pope_env.agents.charlm import EOS, CharLMConfig, CharTokenizer, make_policy
from pope_env.agents.demo import PAPER_METHODS, DemoConfig, arithmetic_reward, get_preset
from pope_env.agents.demo_report import _verdict, bootstrap_diff, mean_se
from pope_env.agents.demo_runs import RunSpec
from pope_env.agents.grpo import TokenLogprobs
from pope_env.agents.policy import Policy, SamplingParams
from pope_env.agents.pretrain import (
    PretrainConfig,
    pretrain,
    render_guided_prompt,
    render_prompt,
    render_solution,
    sft_batch,
)
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
    default, full = get_preset("default"), get_preset("full")
    assert len(default.seeds) >= 2 and set(default.methods) == {"grpo", "pope"}
    assert default.screen_k == 64 and default.min_easy_pass1 == 0.95
    assert len(full.seeds) >= 3 and set(full.methods) == set(PAPER_METHODS)
    assert set(full.revisit_methods) == {"grpo", "pope"} and full.variants == ("plain", "revisit")
    assert default.pretrain.workers == 2 and default.workers == 2  # both cores
    with pytest.raises(UnknownNameError):
        get_preset("huge")
    with pytest.raises(ConfigError, match="longer than"):
        replace(default, hard_levels=(3, 4))
    with pytest.raises(UnknownNameError, match="method"):
        replace(default, methods=("grpo", "nonsense"))
    assert DemoConfig.from_dict(json.loads(json.dumps(__import__("dataclasses").asdict(full)))) == full


def test_revisit_traces_recheck_the_last_given_line():
    p = arithmetic.make_problem(7, [("*", 3), ("+", 7), ("-", 8)])
    assert render_solution(p, 0, revisit=True) == render_solution(p, 0) == p.solution  # unguided: unchanged
    assert render_solution(p, 2) == "\\boxed{20}"
    assert render_solution(p, 2, revisit=True) == "28-8\n\\boxed{20}"
    policy = make_policy(TINY, seed=0)
    plain = sft_batch(policy, [(p, 2)])
    revisit = sft_batch(policy, [(p, 2)], revisit=True)
    assert int(revisit[3].sum()) == int(plain[3].sum()) + len("28-8\n")  # the re-check is a training target
    assert PretrainConfig(revisit=True).digest() != PretrainConfig().digest()


def test_generate_seeded_gives_each_prompt_its_own_stream():
    policy = make_policy(TINY, seed=0)
    sp = SamplingParams(max_new_tokens=20)
    prompts = ["12+3\n", "4*5-6+7\n21+7\n", "9\n"]
    together = policy.generate_seeded(prompts, n=3, sampling=sp, seeds=[5, 6, 7])
    alone = [policy.generate_seeded([p], n=3, sampling=replace(sp, seed=99), seeds=[s])[0]
             for p, s in zip(prompts, [5, 6, 7])]
    assert [[g.text for g in grp] for grp in together] == [[g.text for g in grp] for grp in alone]
    assert [g.token_ids for g in together[1]] == [g.token_ids for g in alone[1]]
    assert together[0] != policy.generate_seeded(prompts[:1], n=3, sampling=sp, seeds=[8])[0]
    assert len({g.text for g in together[0]}) > 1  # the n samples of a prompt differ
    policy.batch_size = 4  # a prompt's rows split across decode batches: still the same draws
    split = policy.generate_seeded(prompts, n=3, sampling=sp, seeds=[5, 6, 7])
    assert [[g.token_ids for g in grp] for grp in split] == [[g.token_ids for g in grp] for grp in together]
    flat = [g for grp in together for g in grp]
    tl = policy.token_logprobs([g.prompt_ids for g in flat], [g.token_ids for g in flat])
    for row, g in enumerate(flat):
        assert torch.allclose(tl.logprobs[row, : len(g.token_ids)], torch.tensor(g.logprobs), atol=1e-4)
    with pytest.raises(ConfigError, match="one seed per prompt"):
        policy.generate_seeded(prompts, n=1, sampling=sp, seeds=[1])


def test_generate_seeded_gives_each_row_its_own_token_budget():
    policy = make_policy(TINY, seed=0)
    long = "1+" * 40 + "1\n"  # 82 characters + BOS: room for 13 of the 20 tokens asked for
    short, cut = policy.generate_seeded(["1\n", long], n=1, sampling=SamplingParams(max_new_tokens=20), seeds=[1, 2])
    assert len(cut[0].token_ids) <= TINY.max_len - len(long) - 1
    alone = policy.generate_seeded(["1\n"], n=1, sampling=SamplingParams(max_new_tokens=20), seeds=[1])[0]
    assert [g.token_ids for g in short] == [g.token_ids for g in alone]


@pytest.mark.usefixtures("one_torch_thread")
def test_the_testbed_measures_with_the_library_search(tmp_path):
    from char_policies import writes_a_seven

    from pope_env.agents.demo_testbed import guided_curve, measure_hard_split
    from pope_env.hard_split import load_split
    from pope_env.prefix_search import PrefixProbe, run_prefix_search

    policy = make_policy(TINY, seed=0)
    chains = arithmetic.generate(12, 5, seed=2, max_value=9)
    split = measure_hard_split(policy, chains, tmp_path / "split.jsonl", dataset="demo-test", k=8, chunk=4, seed=1,
                               max_new_tokens=12)
    assert load_split(tmp_path / "split.jsonl", dataset="demo-test").records == split.records
    assert split.header.prompt_format == "custom:pope_env.agents.pretrain.render_guided_prompt"
    assert render_guided_prompt(chains[0], 0) == render_prompt(chains[0])
    # another setting remakes the file instead of refusing it
    again = measure_hard_split(policy, chains, tmp_path / "split.jsonl", dataset="demo-test", k=4, chunk=4, seed=1,
                               max_new_tokens=12)
    assert again.header.k == 4 and len(again.records) == len(chains)

    sampling = SamplingParams(max_new_tokens=12)
    guidance = run_prefix_search(chains, policy, dataset="demo-test", out=tmp_path / "g.jsonl", k=4, chunk_size=4,
                                 seed=2, scorer=writes_a_seven, sampling=sampling, prompt_format=render_guided_prompt,
                                 progress=False, batch_size=12)
    curve = guided_curve(policy, chains, guidance, samples=4, seed=2, max_new_tokens=12, scorer=writes_a_seven)
    probe = PrefixProbe(policy, writes_a_seven, k=4, seed=2, chunk_size=4, sampling=sampling,
                        prompt_format=render_guided_prompt)
    for p in chains:
        full = [probe.measure(p, i, early_stop=False).successes for i in range(1, len(curve[p.id]) + 1)]
        assert curve[p.id] == full  # states reused from the search's evidence are the same random events
        first = next((i for i, c in enumerate(full, start=1) if c), None)
        assert guidance[p.id].i_star == first  # linear: the first prefix with a success
    assert any(curve.values())


def test_run_names_round_trip():
    for spec in (RunSpec("pope", "plain", 1), RunSpec("clip-higher", "revisit", 0), RunSpec("sft-oracle", "plain", 12)):
        assert RunSpec.parse(spec.name) == spec
    assert RunSpec("pope", "revisit", 0).name == "pope+revisit-seed0"
    with pytest.raises(ConfigError, match="run name"):
        RunSpec.parse("pope")


def _record(label, seed, counts, k=4):
    return {"label": label, "seed": seed, "evals": [{"step": 0, "pass@1": 0.0, f"pass@{k}": 0.0, "per_problem": [0] * len(counts)},
                                                      {"step": 1, "per_problem": counts,
                                                       "pass@1": sum(counts) / (k * len(counts)),
                                                       f"pass@{k}": sum(c > 0 for c in counts) / len(counts)}]}


def test_bootstrap_interval_separates_a_real_difference_from_noise():
    import random

    rng = random.Random(0)
    good = [_record("pope", s, [rng.choice([0, 1, 2]) for _ in range(200)]) for s in range(3)]
    bad = [_record("grpo", s, [rng.choice([0, 0, 0, 0, 1]) for _ in range(200)]) for s in range(3)]
    d = bootstrap_diff(good, bad, 4)
    assert d["lo"] > 0.3 and d["lo"] < d["diff"] < d["hi"]
    assert _verdict(d, "above") == "reproduced" and _verdict(d, "below") == "not reproduced"
    same = bootstrap_diff(bad, [_record("x", s, r["evals"][-1]["per_problem"][::-1]) for s, r in enumerate(bad)], 4)
    assert same["lo"] < 0 < same["hi"] and _verdict(same, "above").startswith("inconclusive")
    assert _verdict(same, "not above") == "reproduced"
    assert mean_se([1.0, 3.0]) == (2.0, 1.0) and mean_se([5.0]) == (5.0, 0.0)


@pytest.mark.slow
def test_data_parallel_pretraining_is_cached_deterministic_and_resumes(tmp_cache, tmp_path):
    cfg = PretrainConfig(model=TINY, levels=(1, 2), steps=40, batch_size=16, lr=3e-3, context_levels=(3, 4),
                         checkpoint_every=20, workers=2)
    a = pretrain(cfg, progress=False, log=lambda _: None)
    meta = json.loads((tmp_cache / "demo" / f"base-{cfg.digest()}" / "config.json").read_text())["meta"]
    assert meta["final_loss"] < 3.5
    b = pretrain(cfg, folder=tmp_path / "again", progress=False, log=lambda _: None)
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    # killed (-9, every process) after its first checkpoint, a re-run resumes to the same weights
    import os
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "killed"
    slow = replace(cfg, steps=400)  # long enough to be killed mid-run
    code = ("import json,sys; from pope_env.agents.pretrain import PretrainConfig, pretrain; from pathlib import Path;"
            "pretrain(PretrainConfig.from_dict(json.loads(sys.argv[1])), folder=Path(sys.argv[2]), progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(__import__("dataclasses").asdict(slow)), str(folder)],
                            start_new_session=True)
    deadline = time.time() + 240
    while not (folder / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (folder / "checkpoint.pt").exists() and not (folder / "model.pt").exists()
    resumed = pretrain(slow, folder=folder, progress=False, log=lambda _: None)
    straight = pretrain(slow, folder=tmp_path / "straight", progress=False, log=lambda _: None)
    assert all(torch.equal(x, y) for x, y in zip(resumed.model.state_dict().values(),
                                                 straight.model.state_dict().values()))


@pytest.mark.slow
def test_quick_demo_runs_end_to_end_reports_and_resumes(tmp_cache, tmp_path, capsys):
    from pope_env.agents.demo_runs import RunSpec, run_parallel
    from pope_env.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    cfg = get_preset("quick")
    # the regime is measured and printed before training; the quick base does not reach it
    assert "base easy pass@1" in printed and "i* distribution" in printed and "guided pass@1 by operations" in printed
    assert "THE REGIME WAS NOT REACHED" in printed
    assert "POPE expands the solvable set" in printed and "pass@4 after" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["labels"]) == {"grpo", "pope"} and summary["failed_runs"] == {}
    regime = summary["regimes"]["plain"]
    assert regime["reached"] is False and regime["failures"]
    assert regime["hard_used"] > 0 and regime["eval_used"] > 0 and sum(regime["istar_hist"].values()) > 0
    assert (out / "demo.png").stat().st_size > 20_000
    for method in cfg.methods:
        for seed in cfg.seeds:
            r = json.loads((out / "runs" / f"{method}-seed{seed}" / "result.json").read_text())
            assert [e["step"] for e in r["evals"]] == list(range(0, cfg.steps + 1, cfg.eval_every))
            assert all(len(e["per_problem"]) == regime["eval_used"] for e in r["evals"])
            assert len(r["entropy"]) == cfg.steps and all(v > 0 for _, v in r["entropy"])
            assert all(0.0 <= e["s_good_overlap"] <= 1.0 for e in r["evals"])
    row = summary["labels"]["pope"]
    assert len(row["seeds"]) == len(cfg.seeds) and len(row["pass@4_after"]) == 2  # mean, s.e.
    claim = next(c for c in summary["claims"] if c["claim"] == "POPE expands the solvable set")
    assert claim["detail"]["lo"] <= claim["detail"]["diff"] <= claim["detail"]["hi"]
    # The hard split is measured: the base never solved these in screen_k samples.
    from pope_env.guidance_file import load_guidance
    from pope_env.hard_split import load_split

    split = load_split(out / "testbed" / "plain" / "hard_split.jsonl")
    assert len(split.records) == cfg.n_candidates and len(split.hard_ids) == regime["hard_pass0"]
    assert all(r.samples == cfg.screen_k for r in split.records.values() if r.hard)
    guidance = load_guidance(out / "testbed" / "plain" / "guidance.jsonl")
    assert set(guidance.records) == set(split.hard_ids) and guidance.header.strategy == "linear"

    # A run whose process dies is reported by name; the others are kept.
    specs = [RunSpec("grpo", "plain", 0), RunSpec("pope", "nonexistent-variant", 0)]
    results, failures = run_parallel(cfg, out, specs, workers=2, log=print)
    assert set(results) == {"grpo-seed0"} and set(failures) == {"pope+nonexistent-variant-seed0"}
    assert "exit code 1" in failures["pope+nonexistent-variant-seed0"]

    # A second run reuses every finished phase and run and reports the same numbers.
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    again = capsys.readouterr().out
    assert "reusing 4 finished run(s)" in again
    assert json.loads((out / "summary.json").read_text())["labels"] == summary["labels"]


@pytest.mark.slow
def test_demo_killed_mid_training_resumes_to_complete_results(tmp_cache, tmp_path):
    """kill -9 of the whole demo (every process) while runs train; a re-run finishes them
    from their checkpoints, and each run's log holds every step exactly once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "pope_env", "demo", "--quick", "--out", str(out)]
    env = dict(os.environ, POPE_ENV_CACHE=str(tmp_cache))
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    ckpts = lambda: list((out / "runs").glob("*/checkpoints/*"))  # noqa: E731
    while not ckpts() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpts(), "no training checkpoint appeared before the deadline"
    assert not (out / "summary.json").exists()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed_runs"] == {} and set(summary["labels"]) == {"grpo", "pope"}
    cfg = get_preset("quick")
    for run in (out / "runs").iterdir():
        steps = [json.loads(line)["step"] for line in (run / "train_log.jsonl").read_text().splitlines()]
        assert steps == list(range(1, cfg.steps + 1)), run.name


def test_claim_commands_run_the_full_settings_with_only_the_methods_each_claim_needs(tmp_path):
    import argparse

    from pope_env.cli import cmd_demo, mount_command
    from pope_env.cli.cmd_demo import CLAIMS, config_from_args

    parser = argparse.ArgumentParser()
    mount_command(parser.add_subparsers(), cmd_demo)
    full, out = config_from_args(parser.parse_args(["demo", "--full"]))
    assert out.name == "demo-full"
    covered: set[str] = set()
    for claim, (methods, revisit) in CLAIMS.items():
        cfg, claim_out = config_from_args(parser.parse_args(["demo", "--claim", claim]))
        assert cfg.methods == methods and cfg.revisit_methods == revisit and claim_out == out
        assert cfg.shared_digest() == full.shared_digest()  # same testbed and runs as --full
        assert {"grpo", "pope"} <= set(methods) and set(methods) <= set(full.methods)
        covered |= set(methods)
    assert covered == set(full.methods)
    cfg, _ = config_from_args(parser.parse_args(["demo", "--seeds", "5", "--seed", "3", "--workers", "1"]))
    assert cfg.seeds == (3, 4, 5, 6, 7) and cfg.workers == 1
    two, _ = config_from_args(parser.parse_args(["demo", "--full", "--epochs", "2"]))
    assert two.epochs == 2 and two.shared_digest() != full.shared_digest()  # other runs: another folder
    for bad in (["demo", "--seeds", "0"], ["demo", "--workers", "0"], ["demo", "--epochs", "0"]):
        with pytest.raises(ConfigError):
            config_from_args(parser.parse_args(bad))
