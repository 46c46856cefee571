"""SWE-bench agentic evaluation: run an agent on instances, write predictions, trajectories, a report.

Driven by ``pope-env swe-eval`` (see :mod:`pope_env.cli.cmd_swe` for the output layout).
Each instance is one ``POPE-SWE-v0`` episode in its own env (so its own sandboxes);
``workers`` episodes run at once in threads (the work is in the containers). The durable
record is ``results.jsonl`` (appended and fsynced per instance): a re-run skips the
instances it holds, and ``predictions.jsonl`` / ``report.json`` are rewritten atomically
from it after every instance.
"""

from __future__ import annotations

import importlib
import json
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pope_env.errors import ConfigError, DataFormatError
from pope_env.io import JsonlAppender, atomic_write_json, atomic_write_jsonl, atomic_write_text, read_jsonl


@dataclass
class EvalConfig:
    """Arguments of :func:`evaluate` (the ``swe-eval`` flags)."""

    agent: str
    instances: str = "local"
    ids: list[str] | None = None
    workers: int = 1
    output: Path | None = None
    model_name: str | None = None
    trajectories: Path | None = None
    max_steps: int = 30
    command_timeout_s: float = 60.0
    backend: str = "auto"
    temperature: float = 0.0
    max_new_tokens: int = 1024


def make_agent_factory(config: EvalConfig) -> tuple[Callable[[], Any], str]:
    """A factory of fresh agents (one per episode) and the agent's name, from ``--agent``."""
    spec = config.agent
    if spec == "oracle":
        from pope_env.agents.swe_agent import OracleAgent

        trajectories = None
        if config.trajectories is not None:
            try:
                trajectories = json.loads(Path(config.trajectories).read_text())
            except (OSError, ValueError) as exc:
                raise DataFormatError(f"--trajectories {config.trajectories}: not a readable JSON file ({exc})") from exc
            if not isinstance(trajectories, dict):
                raise DataFormatError(f"--trajectories {config.trajectories}: expected {{instance_id: [commands]}}")
        oracle = OracleAgent(trajectories)
        return (lambda: OracleAgent(oracle.trajectories)), "oracle"
    from pope_env.agents.policy import SamplingParams
    from pope_env.agents.swe_agent import SWEAgent

    sampling = SamplingParams(temperature=config.temperature, max_new_tokens=config.max_new_tokens)
    backend, _, model = spec.partition(":")
    if backend in ("hf", "vllm", "openai") and model:
        from pope_env.agents.factory import make_policy

        base_url = None
        if backend == "openai":
            model, _, base_url = model.partition("@")
        policy = make_policy(model, backend=backend, base_url=base_url or None)
    elif ":" in spec:
        module, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"--agent {spec}: cannot load {attr} from module {module} ({exc})") from exc
        policy = factory()
        if not hasattr(policy, "generate"):  # the factory made an agent
            return factory, getattr(policy, "name", attr)
    else:
        raise ConfigError(f"--agent {spec!r}: use oracle, hf:MODEL, vllm:MODEL, openai:MODEL@URL or MODULE:FACTORY")
    lock = threading.Lock()

    class _Serialized:  # one model shared by the workers: one generate call at a time
        name = policy.name

        def generate(self, *a, **k):
            with lock:
                return policy.generate(*a, **k)

    shared = _Serialized()
    return (lambda: SWEAgent(shared, sampling)), policy.name


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def evaluate(config: EvalConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run the evaluation described by ``config`` (resuming a previous run); returns the report."""
    from tqdm import tqdm

    from pope_env.agents.swe_agent import run_episode
    from pope_env.envs.swe import SWEEnv
    from pope_env.swe.task import SWETask

    if config.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {config.workers}")
    make_agent, agent_name = make_agent_factory(config)
    model_name = config.model_name or agent_name
    out = config.output or Path("runs") / "swe-eval" / _safe(model_name)
    out.mkdir(parents=True, exist_ok=True)
    tasks = _load(config)
    results_path = out / "results.jsonl"
    done = {r["instance_id"]: r for r in (read_jsonl(results_path, strict=False) if results_path.exists() else [])}
    todo = [t for t in tasks if t.instance_id not in done]
    if done and progress:
        print(f"resuming: {len([t for t in tasks if t.instance_id in done])} instance(s) already done in {results_path}")
    write_lock = threading.Lock()

    def one(task: SWETask) -> dict[str, Any]:
        env = SWEEnv([task], mode="unguided", max_steps=config.max_steps, command_timeout_s=config.command_timeout_s,
                     backend=config.backend)
        try:
            record = run_episode(env, make_agent(), instance_id=task.instance_id)
            error = None
        except Exception as exc:  # one broken instance must not end the run; it is reported
            record, error = None, f"{type(exc).__name__}: {exc}"
        finally:
            env.close()
        iid = task.instance_id
        if record is not None:
            log = record.grade.pop("test_log", "")
            atomic_write_text(out / "logs" / _safe(iid) / "test_output.txt", log)
            atomic_write_json(out / "trajectories" / f"{_safe(iid)}.traj.json", asdict(record))
        grade = record.grade if record is not None else {}
        return {"instance_id": iid, "model_name_or_path": model_name,
                "model_patch": record.patch if record is not None else "",
                "resolved": bool(record and record.resolved),
                "status": grade.get("status", "ERROR"), "reason": grade.get("reason", error or ""),
                "steps": len(record.steps) if record is not None else 0,
                "duration_s": round(record.duration_s, 3) if record is not None else 0.0}

    with JsonlAppender(results_path) as results:
        with ThreadPoolExecutor(max_workers=config.workers) as pool, \
                tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc="swe-eval", unit="instance",
                     disable=not progress) as bar:
            futures = [pool.submit(one, t) for t in todo]
            for fut in as_completed(futures):
                row = fut.result()
                with write_lock:
                    results.append(row)
                    done[row["instance_id"]] = row
                    _write_outputs(out, tasks, done)
                bar.set_postfix(resolved=sum(r["resolved"] for r in done.values()))
                bar.update(1)
    return _write_outputs(out, tasks, done)


def _load(config: EvalConfig):
    from pope_env.swe.runtime import load_tasks
    from pope_env.swe.task import SWETask

    source = config.instances
    path = Path(source)
    if path.suffix in (".json", ".jsonl") and path.exists() and _is_task_file(path):
        rows = read_jsonl(path) if path.suffix == ".jsonl" else json.loads(path.read_text())
        tasks = [SWETask.from_record(r) for r in rows]
    else:
        tasks = load_tasks(source, backend=config.backend)
    if config.ids:
        known = {t.instance_id for t in tasks}
        unknown = [i for i in config.ids if i not in known]
        if unknown:
            from pope_env.errors import UnknownNameError

            raise UnknownNameError("instance id", unknown[0], sorted(known))
        tasks = [t for t in tasks if t.instance_id in set(config.ids)]
    return tasks


def _is_task_file(path: Path) -> bool:
    """True if the records carry a runnable ``image``/``repo_dir`` (else the instance loader reads them)."""
    first = read_jsonl(path)[:1] if path.suffix == ".jsonl" else (json.loads(path.read_text()) or [])[:1]
    return bool(first) and isinstance(first[0], dict) and bool(first[0].get("image") or first[0].get("repo_dir"))


def _write_outputs(out: Path, tasks, done: dict[str, dict[str, Any]]) -> dict[str, Any]:
    order = [t.instance_id for t in tasks if t.instance_id in done]
    atomic_write_jsonl(out / "predictions.jsonl",
                       ({k: done[i][k] for k in ("instance_id", "model_name_or_path", "model_patch")} for i in order))
    resolved = sum(done[i]["resolved"] for i in order)
    report = {"total": len(tasks), "finished": len(order), "resolved": resolved,
              "resolved_rate": resolved / len(tasks) if tasks else 0.0,
              "resolved_ids": [i for i in order if done[i]["resolved"]],
              "unresolved_ids": [i for i in order if not done[i]["resolved"]],
              "instances": {i: {k: done[i][k] for k in ("resolved", "status", "reason", "steps", "duration_s")}
                            for i in order},
              "output": str(out)}
    atomic_write_json(out / "report.json", report)
    return report
