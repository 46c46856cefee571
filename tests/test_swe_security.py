"""Bad input and hostile commands: each is contained, the host is untouched, the container removed.

Every test runs its hostile command in a real Docker sandbox of the tiny repository, checks
the effect stayed inside, that a second sandbox (another instance) is unaffected, and that
the container is gone after ``close``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pope_env.errors import DataFormatError
from pope_env.sandbox import SandboxLimits, make_sandbox
from pope_env.sandbox.reaper import OWNER_LABELS, SANDBOX_LABEL
from pope_env.swe.grading import grade_patch
from pope_env.swe.task import SWETask
from swe_helpers import EXPERT, docker_or_skip, task_record, tiny_image, tiny_repo, tiny_task  # noqa: F401

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def contained(tiny_image):
    """Yields a starter of locked-down sandboxes; afterwards asserts all were removed and a
    bystander sandbox (another instance) was untouched."""
    import docker

    client = docker_or_skip()
    bystander = make_sandbox(image=tiny_image, backend="docker")
    bystander.exec("echo 'untouched' > canary.txt")
    started = []

    def start(**limits):
        sb = make_sandbox(image=tiny_image, backend="docker", limits=SandboxLimits(**limits))
        started.append(sb)
        return sb

    yield start
    for sb in started:
        sb.close()
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(sb.container_id)
    assert bystander.exec("cat canary.txt; git status --porcelain").stdout == "untouched\n?? canary.txt\n"
    bystander.close()


def test_network_access_is_impossible(contained):
    sb = contained()
    res = sb.exec("python3 - <<'EOF'\n"
                  "import socket\n"
                  "for host in ('1.1.1.1', '172.17.0.1', 'deb.debian.org'):\n"
                  "    try:\n"
                  "        socket.create_connection((host, 80), timeout=3); print('CONNECTED', host)\n"
                  "    except OSError as e:\n"
                  "        print('blocked', host, e.errno)\n"
                  "EOF\n"
                  "cat /proc/net/dev | tail -n +3 | cut -d: -f1", timeout=30)
    assert "CONNECTED" not in res.stdout
    assert res.stdout.count("blocked") == 3
    assert res.stdout.split()[-1] == "lo"  # the only interface


def test_writes_outside_the_repository_and_to_host_paths_fail(contained, tmp_path):
    host_file = tmp_path / "host-canary.txt"
    host_file.write_text("host")
    sb = contained()
    res = sb.exec(f"touch /etc/evil /usr/bin/evil /evil; echo pwned > {host_file}; echo pwned > /work/evil; "
                  "ls /var/run/docker.sock; id -u", timeout=30)
    assert res.stdout.strip().endswith("1000")
    assert res.stderr.count("Permission denied") >= 3 and "No such file or directory" in res.stderr
    assert host_file.read_text() == "host" and not Path("/work/evil").exists()
    assert sb.exec("ls /etc/evil /usr/bin/evil /evil").exit_code != 0
    with pytest.raises(PermissionError):
        sb.write_file("/usr/bin/python3", "evil")


def test_fork_bomb_is_contained(contained):
    sb = contained(pids=64)
    t0 = time.perf_counter()
    res = sb.exec("bomb() { bomb | bomb & }; bomb; sleep 3", timeout=8)
    assert time.perf_counter() - t0 < 30
    assert "Resource temporarily unavailable" in res.output or res.timed_out
    assert sb.exec("echo still-alive", timeout=30).stdout == "still-alive\n"


def test_memory_bomb_is_killed(contained):
    sb = contained(memory_mb=256)
    res = sb.exec("python3 -c 'x = bytearray(2 << 30); print(len(x))'", timeout=60)
    assert res.exit_code == 137 and not res.timed_out
    assert sb.exec("echo still-alive").stdout == "still-alive\n"


def test_infinite_loop_times_out(contained):
    sb = contained()
    res = sb.exec("sleep 1000 & sleep 1000 & while true; do :; done", timeout=2)
    assert res.timed_out and res.duration_s < 10
    procs = sb.exec("for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done").stdout
    assert not [line for line in procs.splitlines() if line.startswith("sleep 1000")]  # background jobs gone too


def test_100_mb_of_output_is_cut_and_counted(contained):
    sb = contained(output_bytes=10_000)
    res = sb.exec("head -c 100000000 /dev/zero | tr '\\0' a", timeout=120)
    assert res.exit_code == 0
    assert len(res.stdout) == 10_000 and res.truncated_bytes == 100_000_000 - 10_000
    assert "99990000 more bytes not shown" in res.output


def test_malformed_instance_records_name_the_field():
    good = task_record(image="img")
    with pytest.raises(DataFormatError, match="missing field test_patch"):
        SWETask.from_record({k: v for k, v in good.items() if k != "test_patch"})
    with pytest.raises(DataFormatError, match="FAIL_TO_PASS is a string but not a JSON list"):
        SWETask.from_record({**good, "FAIL_TO_PASS": "[tests/x.py::t"})
    with pytest.raises(DataFormatError, match="PASS_TO_PASS must be a list"):
        SWETask.from_record({**good, "PASS_TO_PASS": 3})
    with pytest.raises(DataFormatError, match="instance_id"):
        SWETask.from_record({**good, "instance_id": ""})
    with pytest.raises(DataFormatError, match="FAIL_TO_PASS is empty"):
        SWETask.from_record({**good, "FAIL_TO_PASS": "[]"})


def test_malformed_instance_file_fails_the_cli_with_the_field(tmp_path):
    bad = {**task_record(image="img")}
    del bad["base_commit"]
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(bad) + "\n")
    out = subprocess.run([sys.executable, "-m", "pope_env", "swe-eval", "--agent", "oracle", "--instances",
                          str(path), "--trajectories", str(_trajectories(tmp_path)), "--output", str(tmp_path / "o")],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2 and "missing field base_commit" in out.stderr


def test_patch_that_does_not_apply_gets_reward_0_with_the_reason(tiny_task):
    bad = tiny_task.patch.replace("-    return a - b", "-    return a / b")
    grade = grade_patch(tiny_task, bad)
    assert grade.reward == 0.0 and not grade.resolved
    assert grade.status == "PATCH_APPLY_FAILED" and "does not apply" in grade.reason


def _trajectories(tmp_path: Path, first: list[str] | None = None) -> Path:
    path = tmp_path / "traj.json"
    path.write_text(json.dumps({"tiny__calc-1": EXPERT, "tiny__calc-2": first or EXPERT}))
    return path


def test_kill_9_mid_episode_then_reaper_and_resume(tiny_image, tmp_path):
    client = docker_or_skip()
    records = [task_record(image=tiny_image), task_record(image=tiny_image, instance_id="tiny__calc-2")]
    instances = tmp_path / "instances.jsonl"
    instances.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "pope_env", "swe-eval", "--agent", "oracle", "--instances", str(instances),
           "--workers", "1", "--output", str(out)]
    # the second instance's expert hangs, so the run is mid-episode when it is killed
    proc = subprocess.Popen(cmd + ["--trajectories", str(_trajectories(tmp_path, ["sleep 300", "submit"]))],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mine = {"label": [f"{SANDBOX_LABEL}=1", f"{OWNER_LABELS[0]}={proc.pid}"]}
    deadline = time.time() + 180
    while time.time() < deadline:
        done = (out / "results.jsonl").read_text().count("\n") if (out / "results.jsonl").exists() else 0
        if done == 1 and client.containers.list(all=True, filters=mine):
            break
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the evaluation never reached the second episode")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    orphans = client.containers.list(all=True, filters=mine)
    assert orphans, "the killed run's container should still exist until the reaper runs"
    reap = subprocess.run([sys.executable, "-m", "pope_env", "swe", "reap"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert reap.returncode == 0 and all(c.name in reap.stdout for c in orphans)
    assert client.containers.list(all=True, filters=mine) == []
    resumed = subprocess.run(cmd + ["--trajectories", str(_trajectories(tmp_path))], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming: 1 instance(s) already done" in resumed.stdout
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["instance_id"] for r in rows] == ["tiny__calc-1", "tiny__calc-2"]  # calc-1 not re-run
    assert all(r["resolved"] for r in rows)
