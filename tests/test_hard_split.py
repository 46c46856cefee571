"""Hard split: pass@k = 0 by measurement, resumable split files, then prefix search on it."""

from __future__ import annotations

import dataclasses

import logging

import pytest

from arith_policy import ArithmeticSolverPolicy, math_verify_scorer
from pope_env.datasets import arithmetic
from pope_env.errors import ConfigError, GuidanceFileError
from pope_env.hard_split import load_split, run_hard_split
from pope_env.prefix_search import PrefixProbe, run_prefix_search

logging.getLogger("math_verify").setLevel(logging.ERROR)
PROBLEMS = arithmetic.generate(30, (2, 9), seed=2)


def split(out, policy=None, **kw):
    return run_hard_split(PROBLEMS, policy or ArithmeticSolverPolicy(0.45), dataset="arith-test",
                          out=out, k=8, scorer=math_verify_scorer(), progress=False, **kw)


def test_hard_means_zero_successes_in_k_samples(tmp_path):
    result = split(tmp_path / "split.jsonl")
    assert 0 < len(result.hard_ids) < len(PROBLEMS)
    probe = PrefixProbe(ArithmeticSolverPolicy(0.45), math_verify_scorer(), k=8)
    for p in PROBLEMS:
        record = result.records[p.id]
        full = probe.measure(p, 0, early_stop=False)  # all k samples, same seeds
        assert record.hard == (full.successes == 0)
        assert record.samples == (8 if record.hard else record.samples)
    # long chains are harder than short ones for a solver that errs per operation
    hard_levels = [p.level for p in PROBLEMS if result.records[p.id].hard]
    easy_levels = [p.level for p in PROBLEMS if not result.records[p.id].hard]
    assert sum(hard_levels) / len(hard_levels) > sum(easy_levels) / len(easy_levels)


class Interrupted(ArithmeticSolverPolicy):
    def generate(self, prompts, **kw):
        if self.calls == 20:
            raise KeyboardInterrupt
        return super().generate(prompts, **kw)


def test_interrupted_split_resumes_to_the_same_file(tmp_path):
    reference = split(tmp_path / "ref.jsonl")
    out = tmp_path / "split.jsonl"
    with pytest.raises(KeyboardInterrupt):
        split(out, Interrupted(0.45))
    assert 0 < len(load_split(out).records) < len(PROBLEMS)
    resumed = split(out)
    assert resumed.records == reference.records
    assert list(resumed.records) == [p.id for p in PROBLEMS]


def test_split_file_checks(tmp_path):
    out = tmp_path / "split.jsonl"
    split(out)
    with pytest.raises(GuidanceFileError, match="made for dataset 'arith-test', not 'math500'"):
        load_split(out, dataset="math500")
    with pytest.raises(GuidanceFileError, match="seed: file has 0, asked for 1"):
        split(out, seed=1)
    lines = out.read_text().splitlines()
    lines[2] = lines[2][:10]
    out.write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match=r"split\.jsonl:3: corrupted split line"):
        assert load_split(out).bad_lines == [3]


def test_prefix_search_on_the_hard_split(tmp_path):
    hard = split(tmp_path / "split.jsonl")
    problems = [p for p in PROBLEMS if p.id in set(hard.hard_ids)]
    gf = run_prefix_search(problems, ArithmeticSolverPolicy(0.45), dataset="arith-test",
                           out=tmp_path / "g.jsonl", k=8, scorer=math_verify_scorer(),
                           progress=False)
    assert set(gf.records) == set(hard.hard_ids)
    found = [r for r in gf.records.values() if not r.fallback]
    assert found, "guidance should rescue some hard problems"


def test_split_and_guidance_headers_are_one_header_class_and_the_format_has_its_own_module():
    from pope_env import guidance_file, prefix_search
    from pope_env.hard_split import SplitHeader
    from pope_env.io import FileHeader

    split = SplitHeader(dataset="d", model="m", k=8, seed=0, chunk_size=2)
    guide = guidance_file.GuidanceHeader(dataset="d", model="m", k=8, seed=0, chunk_size=2, strategy="linear")
    assert isinstance(split, FileHeader) and isinstance(guide, FileHeader)
    assert SplitHeader.from_json(split.to_json()) == split
    assert guidance_file.GuidanceHeader.from_json(guide.to_json()) == guide
    with pytest.raises(ValueError, match="not a guidance header"):
        guidance_file.GuidanceHeader.from_json(split.to_json())
    with pytest.raises(ValueError, match="not a hard-split header"):
        SplitHeader.from_json(guide.to_json())
    assert guide.mismatches(dataclasses.replace(guide, k=4)) == \
        ["k: file has 8, asked for 4"]
    for name in ("GuidanceRecord", "GuidanceHeader", "GuidanceFile", "Measurement", "load_guidance"):
        assert getattr(prefix_search, name) is getattr(guidance_file, name)


def test_batched_split_writes_the_same_file_and_resumes(tmp_path):
    split(tmp_path / "ref.jsonl")
    batched = split(tmp_path / "batched.jsonl", batch_size=7)
    assert (tmp_path / "batched.jsonl").read_text() == (tmp_path / "ref.jsonl").read_text()
    assert list(batched.records) == [p.id for p in PROBLEMS]
    out = tmp_path / "interrupted.jsonl"
    with pytest.raises(KeyboardInterrupt):
        split(out, Interrupted(0.45), batch_size=7)
    assert 0 < len(load_split(out).records) < len(PROBLEMS)
    split(out, batch_size=7)
    assert out.read_text() == (tmp_path / "ref.jsonl").read_text()
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1"):
        split(tmp_path / "bad.jsonl", batch_size=0)


@pytest.mark.usefixtures("one_torch_thread")
def test_batched_split_with_a_char_model_samples_all_problems_together(tmp_path):
    from char_policies import counting_char_model, writes_a_seven

    from pope_env.agents.policy import SamplingParams
    from pope_env.agents.pretrain import render_guided_prompt

    chains = arithmetic.generate(16, (4, 6), seed=1, max_value=9)
    files = {}
    for batch_size in (1, 16):
        policy = counting_char_model()
        out = tmp_path / f"split-{batch_size}.jsonl"
        result = run_hard_split(chains, policy, dataset="chains", out=out, k=12, chunk_size=3, scorer=writes_a_seven,
                                sampling=SamplingParams(max_new_tokens=6), prompt_format=render_guided_prompt,
                                progress=False, batch_size=batch_size)
        files[batch_size] = (out.read_text(), policy.seeded_calls, result)
    assert files[1][0] == files[16][0]
    assert 0 < len(files[1][2].hard_ids) < len(chains)
    assert files[16][1] == 4  # one call per round: k / chunk_size rounds, all problems together
    assert files[1][1] > 16


def test_the_commands_take_the_batch_size_as_batch_problems():
    from pope_env.cli import build_parser

    parser = build_parser()
    for command in (["hard-split", "--dataset", "d"], ["prefix-search", "--split", "s.jsonl"]):
        args = parser.parse_args([*command, "--out", "o.jsonl", "--batch-problems", "16"])
        assert args.batch_problems == 16 and args.batch_size == 32  # --batch-size stays the HF forward batch
        assert parser.parse_args([*command, "--out", "o.jsonl"]).batch_problems == 1  # run_*'s default
