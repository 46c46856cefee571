"""Benchmark of the SWE env on Docker: step overhead vs raw ``docker exec``, reset, grading, 1 vs 4 envs.

Everything is measured in this run, on the tiny repository task of the tests:

* **step overhead**: mean wall time of ``env.step(cmd)`` against a raw docker-py
  ``exec_run`` of the same command in the same container (and the ``docker exec`` CLI),
  interleaved; goal: ratio <= 1.1.
* **reset latency**: ``env.reset()`` (new container, checkout of the base commit).
* **grading latency**: ``env.step("submit")`` (diff, fresh container, patch, tests, parse).
* **throughput**: env steps per second with 1 env vs 4 envs in ``gym.make_vec(async)``.

Writes ``bench/results/swe.json``. Run: ``python bench/swe.py [--reps 40]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tiny repository task shared with the tests

COMMAND = "cat calc/__init__.py"


def _mean_ms(samples: list[float]) -> float:
    return 1000 * statistics.fmean(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=40, help="timed repetitions per measurement")
    parser.add_argument("--throughput-steps", type=int, default=20, help="steps per env in the throughput runs")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "swe.json"))
    args = parser.parse_args()

    import gymnasium as gym

    import pope_env  # noqa: F401
    from pope_env.envs.swe import SWEEnv
    from pope_env.io import atomic_write_json
    from pope_env.swe.images import RepoImageSpec, docker_client, ensure_repo_image
    from pope_env.swe.task import SWETask
    from swe_helpers import make_repo, task_record

    client = docker_client()
    repo = make_repo(Path(tempfile.mkdtemp(prefix="pope-env-bench-")) / "repo")
    image = ensure_repo_image(RepoImageSpec("tiny-calc", repo), progress=lambda m: print(m, file=sys.stderr))
    task = SWETask.from_record(task_record(image=image))

    # --- step overhead vs raw docker exec in the same container ---------------------------
    env = SWEEnv([task], max_steps=10 * args.reps + 10)
    env.reset(seed=0)
    container = client.containers.get(env.sandbox.container_id)
    env_s, raw_s, cli_s = [], [], []
    for _ in range(3):  # warm-up
        env.step(COMMAND)
        container.exec_run(["bash", "-c", COMMAND], user="1000:1000", workdir="/testbed", demux=True)
    for _ in range(args.reps):
        t = time.perf_counter()
        obs, *_ = env.step(COMMAND)
        env_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        code, (out, err) = container.exec_run(["bash", "-c", COMMAND], user="1000:1000", workdir="/testbed", demux=True)
        raw_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        subprocess.run(["docker", "exec", "-u", "1000:1000", "-w", "/testbed", container.id, "bash", "-c", COMMAND],
                       capture_output=True, check=True)
        cli_s.append(time.perf_counter() - t)
        assert code == 0 and out.decode() in obs
    env.close()

    # --- reset and grading latency ---------------------------------------------------------
    env = SWEEnv([task])
    reset_s, grade_s = [], []
    for i in range(max(3, args.reps // 8)):
        t = time.perf_counter()
        env.reset(seed=i)
        reset_s.append(time.perf_counter() - t)
        env.step("sed -i 's/a - b/a + b/' calc/__init__.py")
        t = time.perf_counter()
        _, reward, *_ = env.step("submit")
        grade_s.append(time.perf_counter() - t)
        assert reward == 1.0
    env.close()

    # --- throughput: 1 env vs 4 envs (async vector env) --------------------------------------
    def steps_per_second(num_envs: int) -> float:
        envs = gym.make_vec("POPE-SWE-v0", num_envs=num_envs, vectorization_mode="async",
                            vector_kwargs={"shared_memory": False}, tasks=[task], max_steps=args.throughput_steps + 5)
        envs.reset(seed=list(range(num_envs)))
        envs.step(["true"] * num_envs)
        t = time.perf_counter()
        for _ in range(args.throughput_steps):
            envs.step([COMMAND] * num_envs)
        rate = num_envs * args.throughput_steps / (time.perf_counter() - t)
        envs.close()
        return rate

    tp1, tp4 = steps_per_second(1), steps_per_second(4)

    env_ms, raw_ms, cli_ms = _mean_ms(env_s), _mean_ms(raw_s), _mean_ms(cli_s)
    results = {
        "benchmark": "swe",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "docker": client.version().get("Version")},
        "command": COMMAND,
        "reps": args.reps,
        "env_step_ms": round(env_ms, 2),
        "raw_docker_py_exec_ms": round(raw_ms, 2),
        "raw_docker_cli_exec_ms": round(cli_ms, 2),
        "step_overhead_ratio_vs_docker_py": round(env_ms / raw_ms, 3),
        "step_overhead_ratio_vs_docker_cli": round(env_ms / cli_ms, 3),
        "step_overhead_goal": 1.1,
        "env_step_median_ms": round(1000 * statistics.median(env_s), 2),
        "raw_docker_py_exec_median_ms": round(1000 * statistics.median(raw_s), 2),
        "reset_ms": round(_mean_ms(reset_s), 1),
        "submit_and_grade_ms": round(_mean_ms(grade_s), 1),
        "throughput_steps_per_s_1_env": round(tp1, 2),
        "throughput_steps_per_s_4_envs": round(tp4, 2),
        "throughput_ratio_4_vs_1": round(tp4 / tp1, 2),
    }
    atomic_write_json(args.out, results)
    print(f"env step {env_ms:.1f} ms vs raw docker-py exec {raw_ms:.1f} ms: ratio {env_ms / raw_ms:.3f} "
          f"(goal <= 1.1); vs docker CLI exec {cli_ms:.1f} ms: ratio {env_ms / cli_ms:.3f}")
    print(f"reset {results['reset_ms']} ms; submit+grade {results['submit_and_grade_ms']} ms")
    print(f"throughput: 1 env {tp1:.1f} steps/s, 4 envs {tp4:.1f} steps/s (x{tp4 / tp1:.2f})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
