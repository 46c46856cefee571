"""Maintainer tool: regenerate the local set's data files from the drafts in ``drafts.toml``.

    python -m pope_env.swe.local.generate            # all drafts
    python -m pope_env.swe.local.generate ID [ID..]  # only these (others are kept)

For each draft it builds the upstream repository from the pinned sdist, applies the bug
edit and commits it, derives the bug patch, gold patch and test patch with git, runs the
test files at the bug state and the fixed state (test patch applied) to derive
FAIL_TO_PASS (failed before, passed after) and PASS_TO_PASS (passed in both), then replays
the expert commands from the bug state, records their exit codes and output excerpts, and
checks that the replay's diff equals the gold patch. Tests run in a ``BwrapSandbox`` on the
debootstrapped base tree (``pope-env swe build-images`` makes it), i.e. with the same Debian
Python and pytest as the Docker images: test outcomes depend on them (pytest 7 without the
subtests plugin fails a unittest test when one of its subTests fails; newer setups may
not). It writes ``instances.jsonl`` and
``trajectories.jsonl`` next to this file. Nothing of the projects' source is written
except the patches.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

from pope_env.io import atomic_write_jsonl, read_jsonl
from pope_env.sandbox.bwrap import BwrapSandbox
from pope_env.swe.build import commit_bug, git, make_upstream_repository
from pope_env.swe.images import built_base_rootfs
from pope_env.swe.instances import LocalBuild, SdistSource, SWEInstance, parse_instance
from pope_env.swe.local.drafts import Draft, load_drafts
from pope_env.swe.trajectories import SUBMIT, TrajectoryStep, normalize_diff

HERE = Path(__file__).resolve().parent
_SUMMARY = re.compile(r"\b\d+ (?:failed|passed)\b")


def _edit(repo: Path, path: str, old: str, new: str) -> None:
    target = repo / path
    text = target.read_text(encoding="utf-8")
    if text.count(old) != 1:
        raise SystemExit(f"{path}: the edit's old text occurs {text.count(old)} times, need 1")
    target.write_text(text.replace(old, new), encoding="utf-8")


def _statuses(instance: SWEInstance, repo: Path, test_patch: str) -> dict[str, str]:
    with BwrapSandbox(repo, rootfs=built_base_rootfs()) as box:
        if test_patch:
            box.write_file(".tp.patch", test_patch)
            assert box.exec("git apply .tp.patch && rm .tp.patch").exit_code == 0
        result = box.exec(instance.test_command(), timeout=600)
        return instance.parse_test_log(result.stdout + "\n" + result.stderr)


def _excerpt(command: str, stdout: str, stderr: str) -> str | None:
    if "pytest" in command:
        found = _SUMMARY.findall(stdout + stderr)
        return found[0] if found else None
    err = [line for line in stderr.splitlines() if line.strip()]
    if err:
        return err[-1].strip()
    out = [line for line in stdout.splitlines() if line.strip()]
    return out[0].rstrip()[:160] if out else None


def _plain_id(test_id: str) -> bool:
    # swebench's pytest log parser splits lines on whitespace, so an id with a space comes
    # back cut at it (its brackets unbalanced): such tests cannot be graded exactly.
    return test_id.isascii() and test_id.count("[") == test_id.count("]")


def generate_one(draft: Draft, work: Path) -> tuple[dict, dict]:
    source = SdistSource(*draft.source)
    repo = work / draft.instance_id
    upstream = make_upstream_repository(source, repo)
    # The test patch is written against the upstream (fixed) state.
    for path, old, new in draft.test_edits:
        _edit(repo, path, old, new)
    test_patch = git(repo, "diff")
    git(repo, "checkout", "--", ".")
    for path, old, new in draft.bug_edits:
        _edit(repo, path, old, new)
    bug_patch = git(repo, "diff")
    git(repo, "checkout", "--", ".")
    base = commit_bug(repo, draft.instance_id, bug_patch)
    gold = git(repo, "diff", base, upstream)
    local = LocalBuild(source=source, bug_patch=bug_patch, test_files=tuple(draft.test_files))
    probe = SWEInstance(draft.instance_id, draft.repo, base, draft.problem_statement, gold,
                        test_patch, ("x",), (), source.version, upstream, local=local)

    before = _statuses(probe, repo, test_patch)
    fixed = work / f"{draft.instance_id}-fixed"
    shutil.copytree(repo, fixed, symlinks=True)
    git(fixed, "checkout", "-q", "-B", "main", upstream)
    after = _statuses(probe, fixed, test_patch)
    f2p = sorted(t for t, s in after.items()
                 if s == "PASSED" and before.get(t) in (None, "FAILED", "ERROR") and _plain_id(t))
    p2p = sorted(t for t, s in after.items()
                 if s == "PASSED" and before.get(t) == "PASSED" and _plain_id(t))
    if not f2p:
        raise SystemExit(f"{draft.instance_id}: no test fails with the bug; add a test edit")

    record = {
        "instance_id": draft.instance_id, "repo": draft.repo, "base_commit": base,
        "problem_statement": draft.problem_statement.strip() + "\n", "patch": gold,
        "test_patch": test_patch, "FAIL_TO_PASS": json.dumps(f2p), "PASS_TO_PASS": json.dumps(p2p),
        "version": source.version, "environment_setup_commit": upstream,
        "hints_text": draft.hints_text, "created_at": draft.created_at,
        "local": {"source": {"name": source.name, "version": source.version,
                             "sha256": source.sha256},
                  "bug_patch": bug_patch, "python_deps": list(draft.python_deps),
                  "install_command": "", "test_command": local.test_command,
                  "test_files": list(draft.test_files)},
    }
    parse_instance(record, draft.instance_id)

    steps = []
    with BwrapSandbox(repo, base_commit=base, rootfs=built_base_rootfs()) as box:
        for thought, command in draft.trajectory:
            if command == SUBMIT:
                steps.append(TrajectoryStep(SUBMIT, 0, None, thought))
                break
            res = box.exec(command, timeout=300)
            steps.append(TrajectoryStep(command, res.exit_code,
                                        _excerpt(command, res.stdout, res.stderr), thought))
        diff = box.diff()
    if normalize_diff(diff) != normalize_diff(gold):
        raise SystemExit(f"{draft.instance_id}: the trajectory's diff differs from the gold "
                         f"patch:\n{diff}\n--- gold ---\n{gold}")
    if steps[-1].command != SUBMIT:
        raise SystemExit(f"{draft.instance_id}: the trajectory must end with {SUBMIT!r}")
    print(f"{draft.instance_id}: F2P {len(f2p)}, P2P {len(p2p)}, {len(steps)} steps", file=sys.stderr)
    return record, {"instance_id": draft.instance_id, "steps": [s.to_dict() for s in steps]}


def main(argv: list[str]) -> int:
    drafts = load_drafts()
    chosen = set(argv) or {d.instance_id for d in drafts}
    inst_path, traj_path = HERE / "instances.jsonl", HERE / "trajectories.jsonl"
    old_inst = {r["instance_id"]: r for r in read_jsonl(inst_path)} if inst_path.exists() else {}
    old_traj = {r["instance_id"]: r for r in read_jsonl(traj_path)} if traj_path.exists() else {}
    records, trajectories = [], []
    with tempfile.TemporaryDirectory(prefix="pope-env-generate-") as tmp:
        for draft in drafts:
            if draft.instance_id in chosen:
                record, trajectory = generate_one(draft, Path(tmp))
            else:
                record, trajectory = old_inst[draft.instance_id], old_traj[draft.instance_id]
            records.append(record)
            trajectories.append(trajectory)
    atomic_write_jsonl(inst_path, records)
    atomic_write_jsonl(traj_path, trajectories)
    for path in (inst_path, traj_path):
        path.chmod(0o644)  # package data: readable by all (temp files are created 0600)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
