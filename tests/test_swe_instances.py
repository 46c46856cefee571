"""SWE instances: official-format loading, the local real-repository set, offline builds,
expert trajectories and validation through real sandboxes."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import pytest

from pope_env.errors import DataFormatError, PopeEnvError, UnknownNameError
from pope_env.swe.instances import load_instances, parse_instance, save_instances
from pope_env.swe.trajectories import SUBMIT, load_trajectories, load_trajectory, normalize_diff

LOCAL = load_instances("local")
BY_ID = {inst.instance_id: inst for inst in LOCAL}
# One instance per project for the quick build/validation checks.
ONE_PER_PROJECT = ["jpvanhal__inflection-underscore-digits", "pytoolz__toolz-get-in-index-error",
                   "more-itertools__more-itertools-divide-drops-items"]


# ----------------------------------------------------------------------------- the local set


def test_local_set_has_12_real_instances_across_3_projects():
    assert len(LOCAL) >= 12
    per_repo = Counter(inst.repo for inst in LOCAL)
    assert len(per_repo) >= 3 and min(per_repo.values()) >= 4, per_repo
    for inst in LOCAL:
        assert inst.is_local and inst.local.source.sha256 and inst.local.test_files
        assert inst.FAIL_TO_PASS and inst.PASS_TO_PASS, inst.instance_id
        assert not set(inst.FAIL_TO_PASS) & set(inst.PASS_TO_PASS)
        assert inst.base_commit != inst.environment_setup_commit
        assert inst.version == inst.local.source.version
        # SWE-smith style: the gold patch touches exactly the files the bug patch touches
        assert _touched(inst.patch) == _touched(inst.local.bug_patch)
        # the test patch (if any) only touches test files, never library code
        assert all("test" in f for f in _touched(inst.test_patch))
        assert len(inst.problem_statement.split()) >= 40, inst.instance_id


def _touched(patch: str) -> set[str]:
    return {line.split(" b/", 1)[1] for line in patch.splitlines() if line.startswith("diff --git ")}


def test_local_test_ids_are_gradable_by_swebench_parser():
    # swebench's pytest parser splits log lines on whitespace; an id with a space can't match.
    for inst in LOCAL:
        for test_id in inst.FAIL_TO_PASS + inst.PASS_TO_PASS:
            assert "::" in test_id and not any(c.isspace() for c in test_id), test_id
            assert test_id.split("::")[0] in inst.local.test_files


def test_records_round_trip_through_jsonl_json_parquet_and_datasets_folders(tmp_path):
    subset = LOCAL[:3]
    save_instances(subset, tmp_path / "i.jsonl")
    (tmp_path / "i.json").write_text(json.dumps([i.to_record() for i in subset]))
    import datasets

    ds = datasets.Dataset.from_list([_flat(i.to_record()) for i in subset])
    ds.to_parquet(str(tmp_path / "i.parquet"))
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "saved"))
    # a local copy of a hub dataset repository (the layout SWE-bench ships on the hub)
    (tmp_path / "hub" / "data").mkdir(parents=True)
    ds.to_parquet(str(tmp_path / "hub" / "data" / "test-00000-of-00001.parquet"))
    assert load_instances(tmp_path / "i.jsonl") == subset
    assert load_instances(str(tmp_path / "i.json")) == subset
    # parquet / datasets rows: the official columns only (as SWE-bench ships them)
    for source in (tmp_path / "i.parquet", tmp_path / "saved", tmp_path / "hub"):
        loaded = load_instances(source)
        assert [i.instance_id for i in loaded] == [i.instance_id for i in subset]
        assert [i.FAIL_TO_PASS for i in loaded] == [i.FAIL_TO_PASS for i in subset]
        assert [i.patch for i in loaded] == [i.patch for i in subset]
    picked = load_instances(tmp_path / "i.jsonl", ids=[subset[2].instance_id])
    assert picked == [subset[2]]


def _flat(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "local"}


def test_unknown_sources_and_ids_are_clear_errors(tmp_path):
    with pytest.raises(UnknownNameError, match="instance source"):
        load_instances("no such source")
    with pytest.raises(UnknownNameError, match="no such file"):
        load_instances(tmp_path / "data" / "missing.jsonl")
    with pytest.raises(UnknownNameError, match="pytoolz__toolz-nope"):
        load_instances("local", ids=["pytoolz__toolz-nope"])
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DataFormatError, match="unsupported instance file type '.csv'"):
        load_instances(tmp_path / "x.csv")
    dup = tmp_path / "dup.jsonl"
    save_instances([LOCAL[0], LOCAL[0]], dup)
    with pytest.raises(DataFormatError, match="occurs twice"):
        load_instances(dup)


def _broken(**changes) -> dict:
    record = LOCAL[0].to_record()
    for key, value in changes.items():
        if value is _DELETE:
            record.pop(key)
        else:
            record[key] = value
    return record


_DELETE = object()


@pytest.mark.parametrize(("changes", "field", "problem"), [
    ({"patch": _DELETE}, "patch", "is missing"),
    ({"base_commit": "main"}, "base_commit", "40-hex git sha"),
    ({"FAIL_TO_PASS": 3}, "FAIL_TO_PASS", "list of non-empty test-id strings"),
    ({"FAIL_TO_PASS": "[not json"}, "FAIL_TO_PASS", "not a JSON list"),
    ({"FAIL_TO_PASS": "[]"}, "FAIL_TO_PASS", "is empty"),
    ({"problem_statement": ["an issue"]}, "problem_statement", "must be a string"),
    ({"repo": "just-a-name"}, "repo", "OWNER/NAME"),
    ({"instance_id": "no-double-underscore"}, "instance_id", "OWNER__REPO-ID"),
    ({"local": {"source": {"name": "toolz", "version": "1.0.0", "sha256": "abc"}, "bug_patch": "x"}},
     "sha256", "64 hex digits"),
    ({"local": "yes"}, "local", "must be an object"),
])
def test_malformed_record_names_the_record_and_the_field(tmp_path, changes, field, problem):
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps(LOCAL[1].to_record()), json.dumps(_broken(**changes))]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError) as info:
        load_instances(path)
    message = str(info.value)
    assert f"{path}:2" in message and repr(field) in message and problem in message, message


def test_malformed_json_line_names_the_line(tmp_path):
    path = tmp_path / "torn.jsonl"
    path.write_text(json.dumps(LOCAL[0].to_record()) + "\n{\"instance_id\": \"a__b-1\", \n")
    with pytest.raises(DataFormatError, match=r"torn.jsonl:2: not valid JSON"):
        load_instances(path)


def test_official_record_gets_swebench_test_spec_and_log_parser():
    record = {
        "instance_id": "astropy__astropy-12907", "repo": "astropy/astropy",
        "base_commit": "d16bfe05a744909de4b27f5875fe0d4ed41ce607",
        "environment_setup_commit": "298ccb478e6bf092953bca67a3d29dc6c35f6752",
        "problem_statement": "Modeling's separability_matrix does not compute separability correctly.",
        "patch": "diff --git a/x b/x\n", "test_patch": "", "version": "4.3",
        "FAIL_TO_PASS": '["astropy/modeling/tests/test_separable.py::test_separable[compound_model6-result6]"]',
        "PASS_TO_PASS": "[]", "hints_text": "", "created_at": "2022-03-03T15:14:54Z",
        "image": "swebench/sweb.eval.x86_64.astropy_1776_astropy-12907:latest",
        "eval_script": "#!/bin/bash\nset -uxo pipefail\n: '>>>>> Start Test Output'\npytest -rA\n"
                       ": '>>>>> End Test Output'\n",
        "log_parser": "parse_log_pytest", "eval_type": "pass_and_fail",
    }
    inst = parse_instance(record)
    assert not inst.is_local and inst.FAIL_TO_PASS[0].endswith("[compound_model6-result6]")
    spec = inst.test_spec()
    assert spec.image == record["image"] and spec.FAIL_TO_PASS == list(inst.FAIL_TO_PASS)
    assert "pytest -rA" in spec.eval_script
    assert inst.to_record()["image"] == record["image"]  # extra fields round-trip
    log = "PASSED a.py::test_x\nFAILED a.py::test_y - AssertionError: boom\n"
    assert inst.parse_test_log(log) == {"a.py::test_x": "PASSED", "a.py::test_y": "FAILED"}
    with pytest.raises(DataFormatError, match="official SWE-bench instance"):
        inst.test_command()
    with pytest.raises(DataFormatError, match="no image, eval_script, log_parser, eval_type"):
        LOCAL[0].test_spec()


# ----------------------------------------------------------------------------- trajectories


def test_every_local_instance_has_an_expert_trajectory():
    trajectories = load_trajectories()
    assert set(trajectories) == set(BY_ID)
    for iid, steps in trajectories.items():
        commands = [s.command for s in steps]
        assert commands[-1] == SUBMIT and commands.count(SUBMIT) == 1
        assert any(c.startswith(("grep", "sed -n", "ls")) for c in commands), iid  # explore
        assert any(c.startswith(("sed -i", "python3 - <<", "git apply")) for c in commands), iid  # edit
        assert any("pytest" in c for c in commands), iid  # test
        assert all(s.thought for s in steps)
    assert load_trajectory(LOCAL[0].instance_id) == trajectories[LOCAL[0].instance_id]
    with pytest.raises(UnknownNameError):
        load_trajectory("pytoolz__toolz-nope")


def test_malformed_trajectory_file_names_the_field(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"instance_id": "a__b-1", "steps": [{"command": "ls"}, {"command": ""}]}) + "\n")
    with pytest.raises(DataFormatError, match=r"step 1: field 'command'"):
        load_trajectories(path)
    path.write_text(json.dumps({"instance_id": "a__b-1", "steps": [{"command": "ls"}]}) + "\n")
    with pytest.raises(DataFormatError, match="last step must be 'submit'"):
        load_trajectories(path)


# ----------------------------------------------------------------------------- offline builds


@pytest.mark.parametrize("instance_id", ONE_PER_PROJECT)
def test_build_reproduces_the_recorded_commits_and_the_gold_patch_is_the_reverse_bug(tmp_path, instance_id):
    from pope_env.swe.build import build_repository, git

    inst = BY_ID[instance_id]
    repo = build_repository(inst, tmp_path / "repo")  # checks both commit ids itself
    assert git(repo, "rev-parse", "HEAD").strip() == inst.base_commit
    assert git(repo, "status", "--porcelain") == ""
    assert normalize_diff(git(repo, "diff", inst.base_commit, inst.environment_setup_commit)) == \
        normalize_diff(inst.patch)
    assert normalize_diff(git(repo, "diff", inst.environment_setup_commit, inst.base_commit)) == \
        normalize_diff(inst.local.bug_patch)
    # the project's source comes from the sdist: its own test suite is there, untouched
    for test_file in inst.local.test_files:
        assert (repo / test_file).is_file()
    with pytest.raises(PopeEnvError, match="already exists"):
        build_repository(inst, repo)


def test_build_refuses_a_record_that_disagrees_with_its_sdist(tmp_path):
    from pope_env.swe.build import build_repository

    inst = BY_ID[ONE_PER_PROJECT[0]]
    wrong_commit = dataclasses.replace(inst, base_commit="0" * 40)
    with pytest.raises(DataFormatError, match="field 'base_commit'"):
        build_repository(wrong_commit, tmp_path / "a")
    bad_patch = dataclasses.replace(inst, local=dataclasses.replace(
        inst.local, bug_patch=inst.local.bug_patch.replace("([a-z\\d])", "([a-q\\d])")))
    with pytest.raises(DataFormatError, match="'local.bug_patch' does not apply"):
        build_repository(bad_patch, tmp_path / "b")


def test_sdist_with_a_different_hash_is_refused(tmp_cache):
    from pope_env.swe.build import fetch_sdist
    from pope_env.swe.instances import SdistSource

    inst = BY_ID[ONE_PER_PROJECT[0]]
    good = fetch_sdist(inst.local.source)
    assert good.parent == tmp_cache / "swe" / "sdists" and good.name == "inflection-0.5.1.tar.gz"
    assert fetch_sdist(inst.local.source) == good  # cached: no second download
    forged = SdistSource(inst.local.source.name, inst.local.source.version, "f" * 64)
    with pytest.raises(DataFormatError, match="differs from the pinned"):
        fetch_sdist(forged)


# ----------------------------------------------------------------------------- validation


def _backend() -> str:
    """Docker when an engine answers, else bubblewrap on the debootstrapped base tree."""
    import shutil

    from pope_env.swe.images import base_rootfs_dir, engine_answers

    if engine_answers():
        return "docker"
    if shutil.which("bwrap") and (base_rootfs_dir().parent / "rootfs.complete").exists():
        return "bwrap"
    pytest.skip("neither a Docker engine nor bubblewrap with the base tree is available")


@pytest.mark.slow
def test_validate_one_instance_per_project_with_trajectories_and_cli_resume(tmp_path):
    from pope_env.cli import main

    out = tmp_path / "validate.jsonl"
    argv = ["swe-validate", "--sandbox", _backend(), "--trajectories", "--no-progress", "--out", str(out),
            "--ids", *ONE_PER_PROJECT]
    assert main(argv) == 0
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["instance_id"] for r in results] == ONE_PER_PROJECT
    for r in results:
        assert r["ok"] and r["gold_status"] == "RESOLVED_FULL" and r["trajectory_status"] == "RESOLVED_FULL", r
        assert r["before"] and all(s in ("FAILED", "ERROR", "MISSING") for s in r["before"].values())
    before = out.read_text()
    assert main(argv) == 0  # resumed: nothing re-run, nothing appended
    assert out.read_text() == before


@pytest.mark.slow
def test_validation_catches_a_broken_instance(tmp_path):
    from pope_env.swe.validate import validate_instances

    inst = BY_ID["pytoolz__toolz-get-in-index-error"]
    # a test that passes with the bug listed as FAIL_TO_PASS, and a gold patch that fixes nothing
    fake_f2p = dataclasses.replace(inst, FAIL_TO_PASS=(inst.PASS_TO_PASS[0],))
    no_fix = dataclasses.replace(inst, patch=inst.test_patch.replace("def test_get_in_out_of_range",
                                                                     "def test_renamed_get_in_out_of_range"))
    [wrong_f2p] = validate_instances([fake_f2p], backend=_backend(), progress=False)
    assert not wrong_f2p.ok and "FAIL_TO_PASS pass at the bug state" in wrong_f2p.problems[0]
    [unfixed] = validate_instances([no_fix], backend=_backend(), progress=False)
    assert not unfixed.ok and any("gold patch does not resolve" in p for p in unfixed.problems), unfixed
    with pytest.raises(DataFormatError, match="occurs twice"):
        validate_instances([inst, no_fix], backend=_backend(), progress=False)


@pytest.mark.slow
def test_the_whole_local_set_validates():
    from pope_env.swe.validate import validate_instances

    results = validate_instances(LOCAL, backend=_backend(), progress=False)
    failed = {r.instance_id: r.problems for r in results if not r.ok}
    assert not failed, failed
    assert len(results) == len(LOCAL) >= 12


def test_validate_command_parses_its_options():
    from pope_env.cli import build_parser
    from pope_env.cli.cmd_swe_validate import run

    args = build_parser().parse_args(["swe-validate", "--sandbox", "bwrap", "--trajectories", "--ids", "a__b-1"])
    assert args.func is run and args.sandbox == "bwrap" and args.trajectories and args.ids == ["a__b-1"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["swe-validate", "--sandbox", "podman"])
