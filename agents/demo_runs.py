"""The demo's training runs: one (method, base variant, seed) per process, several at a time.

A run trains a copy of its variant's base with one method of :mod:`pope_env.agents.methods`
through the shared trainer (:class:`pope_env.agents.train.Trainer`) and writes
``<out>/runs/<name>/result.json`` (atomically) next to the trainer's logs and checkpoints.

:func:`run_parallel` starts each pending run as its own Python process (``python -m
pope_env.agents.demo_runs OUT NAME``), at most ``workers`` at a time, each on one torch
thread: a char model's matmuls are too small to split, so two processes use two cores far
better than one process with two threads. A run whose process dies is reported by name (with
its exit code and the tail of its log), the others go on and keep their results, and a
re-run retries only the missing runs, each resuming from its last checkpoint.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pope_env.errors import ConfigError
from pope_env.io import atomic_write_json, read_jsonl

if TYPE_CHECKING:
    from pope_env.agents.demo import DemoConfig
    from pope_env.agents.demo_testbed import Testbed


@dataclass(frozen=True)
class RunSpec:
    """One training run: a method on a base variant with a seed."""

    method: str
    variant: str
    seed: int

    @property
    def label(self) -> str:
        """The method as reports show it (``pope``, ``pope+revisit``)."""
        return self.method if self.variant == "plain" else f"{self.method}+{self.variant}"

    @property
    def name(self) -> str:
        """The run's folder name (``pope-seed1``, ``pope+revisit-seed0``)."""
        return f"{self.label}-seed{self.seed}"

    @classmethod
    def parse(cls, name: str) -> "RunSpec":
        label, _, seed = name.rpartition("-seed")
        method, _, variant = label.partition("+")
        if not label or not seed.isdigit():
            raise ConfigError(f"bad run name {name!r}; expected METHOD[+VARIANT]-seedN")
        return cls(method, variant or "plain", int(seed))


def result_path(out: Path, spec: RunSpec) -> Path:
    return out / "runs" / spec.name / "result.json"


def train_one(cfg: "DemoConfig", tb: "Testbed", spec: RunSpec, out: Path) -> dict[str, Any]:
    """Train ``spec`` from ``tb``'s base and return its result record (also written to
    ``result.json``)."""
    import copy

    from pope_env.agents.demo_testbed import arithmetic_reward
    from pope_env.agents.grpo import GRPOConfig
    from pope_env.agents.methods import build_source, get_method, make_items, sft_items
    from pope_env.agents.policy import SamplingParams
    from pope_env.agents.pretrain import render_guided_prompt
    from pope_env.agents.rollout import problem_reward
    from pope_env.agents.train import TrainConfig, Trainer, evaluate_passk
    from pope_env.datasets import arithmetic

    m = get_method(spec.method)
    learner = copy.deepcopy(tb.base)
    reward_fn = problem_reward(arithmetic_reward)
    easy = arithmetic.generate(cfg.n_easy, cfg.pretrain.levels, split="train", seed=11,
                               max_value=cfg.pretrain.max_value) if m.easy_share else []
    source = build_source(m, render_guided_prompt, hard=tb.hard, easy=easy, guidance=tb.istar, seed=spec.seed)
    eval_items = make_items(tb.eval_set, render_guided_prompt, tags={"split": "eval"})
    sampling = SamplingParams(temperature=1.0, max_new_tokens=cfg.max_new_tokens)
    sft_steps = cfg.sft_steps if m.sft_steps else 0
    train_cfg = TrainConfig(
        method=spec.label,
        steps=cfg.steps,
        sft_steps=sft_steps,
        sft_lr=cfg.sft_lr,
        prompts_per_step=cfg.prompts_per_step,
        group_size=cfg.group_size,
        sampling=sampling,
        grpo=m.grpo_config(GRPOConfig(lr=cfg.lr, epochs=cfg.epochs,
                                         micro_batch_size=cfg.prompts_per_step * cfg.group_size)),
        seed=spec.seed,
        eval_every=cfg.eval_every,
        eval_k=cfg.eval_k,
        eval_sampling=replace(sampling, seed=12345),
        save_every=cfg.eval_every,
        tensorboard=False,
        progress=False,
    )
    run_dir = out / "runs" / spec.name
    hooks = [own_state_hook(cfg, tb, run_dir / "own_states.jsonl")] if cfg.reach_problems else []
    trainer = Trainer(learner, source, reward_fn, train_cfg, run_dir, eval_items=eval_items, eval_hooks=hooks,
                      sft_source=sft_items(tb.hard, render_guided_prompt, seed=spec.seed) if sft_steps else None)
    result = trainer.train()
    guided_items = make_items(tb.hard, render_guided_prompt, guided=True, guidance=tb.istar)
    guided = evaluate_passk(learner, guided_items, reward_fn, k=2, sampling=replace(sampling, seed=54321))
    log = read_jsonl(run_dir / "train_log.jsonl", strict=False)
    rl = [r for r in log if r.get("phase", "rl") != "sft"]
    sft = [r for r in log if r.get("phase") == "sft"]
    k = cfg.eval_k
    record = {
        "name": spec.name, "method": spec.method, "variant": spec.variant, "label": spec.label, "seed": spec.seed,
        "evals": [{key: e[key] for key in ("step", "pass@1", f"pass@{k}", "per_problem", "s_good_overlap",
                                           "s_good_problem_overlap") if key in e} for e in result.evals],
        "entropy": [[r["step"], r["entropy"]] for r in rl if r.get("entropy") is not None],
        "guided_hard_success": [[r["step"], r["guided_hard_success"]] for r in rl
                                if r.get("guided_hard_success") is not None],
        "sft_loss": [[r["step"], r["sft_loss"]] for r in sft],
        "guided_pass@1_after": guided["pass@1"],
        "solved_set": result.solved_set_size,
        "skipped_steps": result.skipped_steps,
        "wall_s": round(result.wall_s, 1),
    }
    atomic_write_json(result_path(out, spec), record)
    return record


def own_state_hook(cfg: "DemoConfig", tb: "Testbed", details: Path) -> Any:
    """The S_good overlap of the policy's own unguided states on the first
    ``reach_problems`` training hard problems (same draws at every evaluation)."""
    from pope_env.agents.demo_testbed import arithmetic_reward
    from pope_env.agents.policy import SamplingParams
    from pope_env.agents.pretrain import render_prompt
    from pope_env.agents.reach_hook import OwnStateReachHook
    from pope_env.own_states import split_lines

    return OwnStateReachHook(
        tb.hard[: cfg.reach_problems], k=cfg.reach_k, states_per_problem=cfg.reach_states, seed=777,
        sampling=SamplingParams(temperature=1.0, max_new_tokens=cfg.max_new_tokens),
        scorer=lambda texts, p: [arithmetic_reward(t, p) > 0.5 for t in texts],
        render_state=lambda p, steps: render_prompt(p) + "".join(steps), split_steps=split_lines,
        details=details,
    )


def run_parallel(
    cfg: "DemoConfig",
    out: Path,
    specs: Sequence[RunSpec],
    *,
    workers: int,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Run every spec without a result, ``workers`` processes at a time.

    Returns ``(results by run name, failures by run name -> reason)``; finished runs from an
    earlier call are reused.
    """
    from tqdm.auto import tqdm

    results: dict[str, dict[str, Any]] = {}
    pending: list[RunSpec] = []
    for spec in specs:
        path = result_path(out, spec)
        if path.exists():
            results[spec.name] = json.loads(path.read_text())
        else:
            pending.append(spec)
    if results:
        log(f"reusing {len(results)} finished run(s): {', '.join(sorted(results))}")
    failures: dict[str, str] = {}
    running: dict[str, tuple[subprocess.Popen[bytes], Path, float]] = {}
    bar = tqdm(total=len(pending), desc=f"training runs ({workers} at a time)", unit="run")
    try:
        while pending or running:
            while pending and len(running) < workers:
                spec = pending.pop(0)
                log_path = out / "runs" / spec.name / "process.log"
                log_path.parent.mkdir(parents=True, exist_ok=True)
                with log_path.open("ab") as fh:
                    proc = subprocess.Popen([sys.executable, "-m", "pope_env.agents.demo_runs", str(out), spec.name],
                                            stdout=fh, stderr=subprocess.STDOUT)
                running[spec.name] = (proc, log_path, time.perf_counter())
            time.sleep(0.5)
            for name, (proc, log_path, t0) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[name]
                bar.update(1)
                spec = RunSpec.parse(name)
                path = result_path(out, spec)
                if proc.returncode == 0 and path.exists():
                    results[name] = json.loads(path.read_text())
                    log(_one_line(cfg, results[name], time.perf_counter() - t0))
                else:
                    tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
                    failures[name] = f"exit code {proc.returncode}: " + " | ".join(tail)
                    log(f"run {name} FAILED ({failures[name]}); the other runs go on; see {log_path}")
    finally:
        for proc, _, _ in running.values():
            proc.kill()
        bar.close()
    return results, failures


def _one_line(cfg: "DemoConfig", r: dict[str, Any], seconds: float) -> str:
    k = cfg.eval_k
    a, b = r["evals"][0], r["evals"][-1]
    return (f"{r['name']}: unguided pass@{k} {a[f'pass@{k}']:.3f} -> {b[f'pass@{k}']:.3f}, pass@1 "
            f"{a['pass@1']:.4f} -> {b['pass@1']:.4f}, solved set {r['solved_set']} ({seconds:.0f} s)")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pope_env.agents.demo_runs OUT NAME``: one run, config and testbed from OUT."""
    import torch

    from pope_env.agents.demo import DemoConfig
    from pope_env.agents.demo_testbed import load_testbed

    out_s, name = (argv or sys.argv[1:])[:2]
    out = Path(out_s)
    torch.set_num_threads(1)
    cfg = DemoConfig.from_dict(json.loads((out / "config.json").read_text())["config"])
    spec = RunSpec.parse(name)
    train_one(cfg, load_testbed(cfg, out, spec.variant), spec, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
