"""`pope-env export`: the POPE set (hard problems, unguided + guided at i*, 1:1) for TRL/verl/JSONL."""

from __future__ import annotations

import json
import shutil

import pytest

from export_helpers import DATASET, make_pope_inputs
from pope_env.cli import main
from pope_env.datasets import load_dataset
from pope_env.errors import ConfigError, GuidanceFileError
from pope_env.export import export_pope, manifest_path
from pope_env.guidance import guided_messages, guided_text, unguided_messages
from pope_env.hard_split import load_split
from pope_env.prefix_search import load_guidance


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_pope_inputs(tmp_path_factory.mktemp("pope"))


def export(inputs, out, fmt="jsonl", **kw):
    split, guidance = inputs
    return export_pope(split_file=split, guidance_file=guidance, out=out, format=fmt, **kw)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_hard_problem_unguided_and_guided_at_i_star_paired(inputs, tmp_path):
    result = export(inputs, tmp_path / "pope.jsonl")
    rows = read_jsonl(tmp_path / "pope.jsonl")
    split, guidance = load_split(inputs[0]), load_guidance(inputs[1])
    by_id = {p.id: p for p in load_dataset(DATASET)}
    assert sorted({r["problem_id"] for r in rows}) == sorted(split.hard_ids)
    assert result.rows == len(rows) == 2 * len(split.hard_ids)
    fallbacks = [r for r in guidance.records.values() if r.fallback]
    assert 0 < len(fallbacks) < len(guidance.records), "the inputs should hold both kinds of guidance"
    assert result.fallback == len(fallbacks)
    for unguided, guided in zip(rows[::2], rows[1::2]):  # pairs sit next to each other
        pid = unguided["problem_id"]
        problem, record = by_id[pid], guidance[pid]
        assert guided["problem_id"] == pid
        assert (unguided["guided"], guided["guided"]) == (False, True)
        assert unguided["prompt"] == unguided_messages(problem) and unguided["prefix_len"] == 0
        assert guided["prompt"] == guided_messages(problem, record.prefix_len, start=record.start)
        assert (guided["prefix_len"], guided["prefix_start"]) == (record.prefix_len, record.start)
        assert guided["fallback"] == record.fallback and guided["i_star"] == record.i_star
        if not record.fallback:
            assert guided["prefix_len"] == record.i_star and guided["prefix_start"] == 0
        assert unguided["answer"] == guided["answer"] == problem.answer
    # exactly 1:1 in every batch of an even number of rows read in order
    for start in range(0, len(rows), 4):
        batch = rows[start:start + 4]
        assert sum(r["guided"] for r in batch) * 2 == len(batch)
    # the pair order is seeded: another seed, another order, same rows
    other = export(inputs, tmp_path / "seed1.jsonl", seed=1)
    rows1 = read_jsonl(tmp_path / "seed1.jsonl")
    assert other.rows == result.rows and rows1 != rows
    assert sorted(map(json.dumps, rows1)) == sorted(map(json.dumps, rows))


def test_prompts_are_the_env_and_trainer_prompts(inputs, tmp_path):
    from pope_env.agents.methods import default_renderer, guidance_segments, make_items
    from pope_env.envs.math import MathEnv

    export(inputs, tmp_path / "pope.jsonl")
    rows = read_jsonl(tmp_path / "pope.jsonl")
    split, guidance = inputs
    env = MathEnv(DATASET, mode="pope", split_file=str(split), guidance_file=str(guidance))
    by_id = {p.id: p for p in env.problems}
    segments = guidance_segments(load_guidance(guidance))
    for row in rows:
        _, info = env.reset(options={"problem_id": row["problem_id"], "guided": row["guided"]})
        assert info["messages"] == row["prompt"]
        assert (info["prefix_len"], info["prefix_start"]) == (row["prefix_len"], row["prefix_start"])
        [item] = make_items([by_id[row["problem_id"]]], default_renderer("chat"),
                            guided=row["guided"], guidance=segments)
        assert item.prompt == row["prompt"] and item.prefix_len == row["prefix_len"]


def test_trl_and_verl_formats(inputs, tmp_path):
    datasets = pytest.importorskip("datasets")
    pq = pytest.importorskip("pyarrow.parquet")
    export(inputs, tmp_path / "pope.jsonl")
    rows = read_jsonl(tmp_path / "pope.jsonl")

    export(inputs, tmp_path / "trl", "trl")
    folder = datasets.load_from_disk(str(tmp_path / "trl"))
    assert folder.column_names[:2] == ["prompt", "answer"]
    assert folder["prompt"] == [r["prompt"] for r in rows]
    assert folder["guided"] == [r["guided"] for r in rows]
    assert folder["prefix_len"] == [r["prefix_len"] for r in rows]

    export(inputs, tmp_path / "trl.jsonl", "trl")
    as_json = datasets.load_dataset("json", data_files=str(tmp_path / "trl.jsonl"))["train"]
    assert as_json["prompt"] == folder["prompt"] and as_json["answer"] == folder["answer"]

    export(inputs, tmp_path / "pope.parquet", "verl")
    table = pq.read_table(tmp_path / "pope.parquet").to_pylist()
    assert set(table[0]) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
    for index, (v, r) in enumerate(zip(table, rows)):
        assert v["data_source"] == f"pope-env/{DATASET}" and v["ability"] == "math"
        assert v["prompt"] == r["prompt"]
        assert v["reward_model"] == {"style": "rule", "ground_truth": r["answer"]}
        info = v["extra_info"]
        assert info["index"] == index and info["problem_id"] == r["problem_id"]
        assert (info["guided"], info["prefix_len"], info["fallback"]) == (r["guided"], r["prefix_len"], r["fallback"])
        assert info["i_star"] == (-1 if r["i_star"] is None else r["i_star"])


def test_text_prompts(inputs, tmp_path):
    export(inputs, tmp_path / "pope.jsonl", prompt_format="text")
    rows = read_jsonl(tmp_path / "pope.jsonl")
    by_id = {p.id: p for p in load_dataset(DATASET)}
    guided = rows[1]
    assert guided["prompt"] == guided_text(by_id[guided["problem_id"]], guided["prefix_len"],
                                          start=guided["prefix_start"])
    with pytest.raises(ConfigError, match="chat prompts"):
        export(inputs, tmp_path / "pope.parquet", "verl", prompt_format="text")


def test_rerun_is_a_no_op_and_a_changed_guidance_file_rewrites(inputs, tmp_path):
    split, guidance = inputs
    out = tmp_path / "pope.parquet"
    first = export(inputs, out, "verl")
    stamp = (out.stat().st_mtime_ns, out.read_bytes())
    again = export(inputs, out, "verl")
    assert again.up_to_date and not first.up_to_date and again.rows == first.rows
    assert (out.stat().st_mtime_ns, out.read_bytes()) == stamp

    # a guidance file that misses problems (a search still running): refused, or skipped
    partial = tmp_path / "partial.jsonl"
    lines = guidance.read_text().splitlines()
    partial.write_text("\n".join(lines[:4]) + "\n")  # header + 3 problems
    with pytest.raises(GuidanceFileError, match=r"have no record in guidance file.*--skip-missing"):
        export_pope(split_file=split, guidance_file=partial, out=out, format="verl")
    some = export_pope(split_file=split, guidance_file=partial, out=out, format="verl", skip_missing=True)
    assert some.problems == 3 and some.rows == 6 and len(some.skipped) == first.problems - 3
    assert not some.up_to_date and out.read_bytes() != stamp[1]
    # the search finished: the same command writes the whole set again
    shutil.copy(guidance, partial)
    full = export_pope(split_file=split, guidance_file=partial, out=out, format="verl", skip_missing=True)
    assert not full.up_to_date and full.rows == first.rows and out.read_bytes() == stamp[1]
    assert json.loads(manifest_path(out).read_text())["result"]["rows"] == first.rows


def test_files_made_on_another_dataset_are_refused(inputs, tmp_path):
    split, guidance = inputs
    lines = guidance.read_text().splitlines()
    header = json.loads(lines[0])
    header["dataset"] = "math-train-l5"
    other = tmp_path / "other.jsonl"
    other.write_text("\n".join([json.dumps(header)] + lines[1:]) + "\n")
    with pytest.raises(GuidanceFileError, match="made on dataset 'math-train-l5' but split file .* on 'arith-hard'"):
        export_pope(split_file=split, guidance_file=other, out=tmp_path / "o.jsonl", format="jsonl")
    with pytest.raises(GuidanceFileError, match="made on dataset 'arith-hard', not 'arith-easy'"):
        export(inputs, tmp_path / "o.jsonl", dataset="arith-easy")
    assert not (tmp_path / "o.jsonl").exists()
    # a record that no longer fits its problem (the dataset changed since the search)
    record = json.loads(lines[1])
    record["n_steps"] += 1
    changed = tmp_path / "changed.jsonl"
    changed.write_text("\n".join([lines[0], json.dumps(record)] + lines[2:]) + "\n")
    with pytest.raises(GuidanceFileError, match="the dataset changed since the search"):
        export_pope(split_file=split, guidance_file=changed, out=tmp_path / "o.jsonl", format="jsonl")


def test_a_file_not_written_by_export_is_not_overwritten(inputs, tmp_path):
    out = tmp_path / "mine.jsonl"
    out.write_text("precious\n")
    with pytest.raises(ConfigError, match="was not written by `pope-env export`.*--overwrite"):
        export(inputs, out)
    assert out.read_text() == "precious\n"
    assert export(inputs, out, overwrite=True).rows > 0
    # an export may replace its own folder by a file (another format at the same path)
    export(inputs, tmp_path / "set", "trl")
    assert (tmp_path / "set").is_dir()
    export(inputs, tmp_path / "set", "verl")
    assert (tmp_path / "set").is_file()


def test_cli(inputs, tmp_path, capsys):
    split, guidance = inputs
    out = tmp_path / "pope.jsonl"
    args = ["export", "--split", str(split), "--guidance", str(guidance), "--format", "jsonl", "--out", str(out)]
    assert main(args + ["--dataset", DATASET]) == 0
    printed = capsys.readouterr().out
    assert "rows" in printed and "written" in printed and out.is_file()
    assert main(args) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(args + ["--dataset", "math500"]) == 2
    assert "made on dataset 'arith-hard', not 'math500'" in capsys.readouterr().err


def test_a_guidance_file_searched_with_other_prompts_is_refused(inputs, tmp_path):
    from pope_env.guidance import GuidanceConfig

    other = GuidanceConfig(instruction="Continue the partial solution.")
    with pytest.raises(GuidanceFileError, match="searched with another guidance instruction"):
        export(inputs, tmp_path / "o.jsonl", config=other)
    split, guidance = inputs
    lines = guidance.read_text().splitlines()
    header = json.loads(lines[0])
    header["prompt_format"] = "custom:my.renderer"
    custom = tmp_path / "custom.jsonl"
    custom.write_text("\n".join([json.dumps(header)] + lines[1:]) + "\n")
    with pytest.raises(ConfigError, match="cannot rebuild.*--prompt-format chat"):
        export_pope(split_file=split, guidance_file=custom, out=tmp_path / "o.jsonl", format="jsonl")
    assert export_pope(split_file=split, guidance_file=custom, out=tmp_path / "o.jsonl", format="jsonl",
                       prompt_format="chat").rows > 0


def test_a_torn_guidance_line_fails_or_is_skipped(inputs, tmp_path):
    split, guidance = inputs
    torn = tmp_path / "torn.jsonl"
    torn.write_text(guidance.read_text() + '{"problem_id": "arith/1+2", "i_st')  # a search in flight
    with pytest.raises(GuidanceFileError, match=r"torn\.jsonl:\d+: corrupted guidance line"):
        export_pope(split_file=split, guidance_file=torn, out=tmp_path / "o.jsonl", format="jsonl")
    with pytest.warns(UserWarning, match="corrupted guidance line"):
        result = export_pope(split_file=split, guidance_file=torn, out=tmp_path / "o.jsonl", format="jsonl",
                             skip_missing=True)
    assert result.rows == 2 * len(load_split(split).hard_ids) and not result.skipped
