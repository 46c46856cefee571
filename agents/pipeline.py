"""The POPE training pipeline as a library: hard split -> prefix search -> train -> report.

:func:`run_pipeline` is what ``pope-env train`` runs (the CLI only turns its arguments into
a :class:`PipelineConfig`, a :class:`~pope_env.agents.train_config.TrainConfig` and a
learner factory):

1. **Hard split**: reads ``config.split_file`` or measures unguided pass@k of every problem
   with the base model and keeps those with pass@k = 0 (``OUT/hard_split.jsonl``, resumable;
   :func:`pope_env.hard_split.run_hard_split`).
2. **Prefix search** (when a method shows guided prompts, e.g. ``pope``): reads
   ``config.guidance_file`` or finds i* per hard problem (``OUT/guidance.jsonl``, resumable;
   :func:`pope_env.prefix_search.run_prefix_search`).
3. **Training**: each method trains a fresh copy of the base model in ``OUT/METHOD/`` with
   the :class:`~pope_env.agents.train.Trainer` (or SRL's curriculum); each method owns its
   config rules (:meth:`pope_env.agents.methods.Method.train_config`) and its training
   problems (:meth:`~pope_env.agents.methods.Method.train_problems`). Re-running resumes.
4. **Report**: one row per method (unguided hard-set pass@k at the first and last
   evaluation), ``OUT/summary.json`` and ``OUT/passk.png`` (pass@k over steps, one line per
   method run in ``OUT``, earlier invocations included).

Every default lives in a config dataclass: :class:`PipelineConfig` here, ``TrainConfig``
and ``GRPOConfig`` in :mod:`pope_env.agents.train_config`; the CLI reads them from there.
This module imports no torch at import time (the CLI reads :class:`PipelineConfig`'s
defaults while building its parser); :func:`run_pipeline` imports the trainer.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pope_env.agents.methods import get_method
from pope_env.agents.train_config import TrainConfig
from pope_env.errors import ConfigError


@dataclass(frozen=True)
class PipelineConfig:
    """What the pipeline runs besides each trainer's settings (those are a ``TrainConfig``).

    Attributes:
        methods: Method names (:data:`pope_env.agents.methods.METHODS`), each trained from
            the base model.
        dataset: The training problems (:func:`pope_env.datasets.load_dataset`).
        limit: Only the first ``limit`` problems.
        split_file: A hard-split file to use instead of measuring one.
        guidance_file: A guidance file (i* per problem) to use instead of searching.
        strategy: Prefix-search strategy (``linear``: the paper's i*, the shortest prefix with a success).
        k: Samples per problem (hard split) and per state (prefix search).
        chunk_size: Samples per generate call in both (``None``: ``max(1, k // 4)``).
        batch_problems: Problems measured together in both (``batch_size`` of
            :func:`~pope_env.hard_split.run_hard_split` and
            :func:`~pope_env.prefix_search.run_prefix_search`): one batched call per round
            with a sampler that has ``generate_seeded`` (HF, vLLM); the files are the same for any value.
        prompt_format: ``"chat"`` messages or plain ``"text"`` prompts.
        eval_problems: Hard problems evaluated (unguided pass@k).
        sft_steps: SFT steps of ``sft-oracle`` (``None``: the method's own, 50).
        srl_steps: SRL-phase steps of ``srl-then-rlvr`` (``None``: ``TrainConfig.steps``).
        srl_sft_steps: SRL methods: SFT steps on the expert steps in SRL's format first.
        min_group_std: Dynamic-sampling threshold (``None``: the method's).
        rlvr_dynamic_sampling: ``srl-then-rlvr``'s RLVR phase with dynamic sampling.
        reach_problems: At each evaluation, the own-state S_good overlap on the first N hard
            problems (0: off; see :class:`pope_env.agents.reach_hook.OwnStateReachHook`).
        reach_k: Continuations per own state.
        reach_states: Own states per problem.
    """

    methods: tuple[str, ...] = ("pope",)
    dataset: str = "math-train-l5"
    limit: int | None = None
    split_file: str | None = None
    guidance_file: str | None = None
    strategy: str = "linear"
    k: int = 8
    chunk_size: int | None = None
    batch_problems: int = 1
    prompt_format: str = "chat"
    eval_problems: int = 64
    sft_steps: int | None = None
    srl_steps: int | None = None
    srl_sft_steps: int = 0
    min_group_std: float | None = None
    rlvr_dynamic_sampling: bool = True
    reach_problems: int = 0
    reach_k: int = 4
    reach_states: int = 2

    def __post_init__(self) -> None:
        if not self.methods:
            raise ConfigError("no method to train: name at least one (e.g. pope)")
        for name in self.methods:
            get_method(name)  # UnknownNameError lists the known ones
        if self.reach_problems < 0 or self.reach_k < 1 or self.reach_states < 1:
            raise ConfigError("reach_problems must be >= 0, reach_k and reach_states >= 1")
        from pope_env.search_strategies import get_strategy

        get_strategy(self.strategy).check_batch_size(self.batch_problems)  # early: before any work


@dataclass
class PipelineResult:
    """What :func:`run_pipeline` returns (also written to ``OUT/summary.json``)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    hard: int = 0
    plot: Path | None = None
    summary: Path | None = None


def run_pipeline(
    config: PipelineConfig,
    train: TrainConfig,
    out: str | os.PathLike[str],
    *,
    make_learner: Callable[[], Any],
    rollout_engine: Any = None,
    model_name: str = "",
    log: Callable[[str], None] = print,
) -> PipelineResult:
    """Run the pipeline (see the module docstring) in ``out``; re-running resumes.

    Args:
        config: The pipeline's settings.
        train: The trainer settings every method starts from (its ``grpo`` holds the user's
            GRPO settings; each method applies its own rules on top). Its ``seed`` and
            ``sampling`` also drive the hard split and the prefix search.
        out: The output folder.
        make_learner: Returns a fresh base-model learner policy; called once per method.
        rollout_engine: A separate sampler that follows the learner (e.g. a vLLM engine):
            it also samples the hard split and the prefix search (``None``: the learner).
        model_name: Recorded in ``summary.json``.
        log: Where progress lines go.
    """
    from pope_env.datasets import load_dataset
    from pope_env.io import atomic_write_json

    methods = [get_method(name) for name in config.methods]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    problems = load_dataset(config.dataset, limit=config.limit)
    policy = make_learner()
    sampler = rollout_engine or policy
    hard, easy = _hard_split(config, train, problems, sampler, out, log)
    segments = _guidance(config, train, hard, sampler, out, log) if any(m.guided_share > 0 for m in methods) else {}
    rows = [_train_method(config, train, method, policy if index == 0 else make_learner(), rollout_engine,
                          hard, easy, segments, out, log)
            for index, method in enumerate(methods)]
    plot = _plot_runs(out, train.eval_k)
    summary = out / "summary.json"
    atomic_write_json(summary, {"dataset": config.dataset, "model": model_name, "hard": len(hard), "runs": rows})
    return PipelineResult(rows=rows, hard=len(hard), plot=plot, summary=summary)


def _hard_split(config: PipelineConfig, train: TrainConfig, problems: Sequence[Any], sampler: Any, out: Path,
                log: Callable[[str], None]) -> tuple[list[Any], list[Any]]:
    """Stage 1: the hard and easy problems."""
    from pope_env.hard_split import load_split, run_hard_split

    by_id = {p.id: p for p in problems}
    if config.split_file:
        split = load_split(config.split_file, dataset=config.dataset)
    else:
        log(f"[1/3] hard split: pass@{config.k} of {len(problems)} problems -> {out / 'hard_split.jsonl'}")
        split = run_hard_split(problems, sampler, dataset=config.dataset, out=out / "hard_split.jsonl", k=config.k,
                               seed=train.seed, sampling=train.sampling, chunk_size=config.chunk_size,
                               prompt_format=config.prompt_format, progress=train.progress,
                               batch_size=config.batch_problems)
    hard = [by_id[pid] for pid in split.hard_ids if pid in by_id]
    easy = [by_id[pid] for pid, r in split.records.items() if not r.hard and pid in by_id]
    if not hard:
        raise ConfigError(
            f"no hard problems: the base model solved every one of the {len(split.records)} problems "
            f"at pass@{config.k}; use a harder dataset or a larger k"
        )
    log(f"hard set: {len(hard)} problems (pass@{config.k} = 0); easy: {len(easy)}")
    return hard, easy


def _guidance(config: PipelineConfig, train: TrainConfig, hard: Sequence[Any], sampler: Any, out: Path,
              log: Callable[[str], None]) -> dict[str, tuple[int, int]]:
    """Stage 2: problem id -> guidance segment ``(start, length)``."""
    from pope_env.agents.methods import guidance_segments
    from pope_env.guidance_file import load_guidance
    from pope_env.prefix_search import run_prefix_search

    if config.guidance_file:
        guidance = load_guidance(config.guidance_file, dataset=config.dataset)
    else:
        log(f"[2/3] prefix search on {len(hard)} hard problems -> {out / 'guidance.jsonl'}")
        guidance = run_prefix_search(list(hard), sampler, dataset=config.dataset, out=out / "guidance.jsonl",
                                     k=config.k, strategy=config.strategy, seed=train.seed, sampling=train.sampling,
                                     chunk_size=config.chunk_size, prompt_format=config.prompt_format,
                                     skip_unusable=True, progress=train.progress,
                                     batch_size=config.batch_problems)
    found = sum(1 for r in guidance.records.values() if not r.fallback)
    log(f"guidance: i* for {found} of {len(guidance.records)} problems (others: fallback segments)")
    return guidance_segments(guidance)


def _train_method(config: PipelineConfig, train: TrainConfig, method: Any, learner: Any, engine: Any,
                  hard: Sequence[Any], easy: Sequence[Any], segments: dict[str, tuple[int, int]], out: Path,
                  log: Callable[[str], None]) -> dict[str, Any]:
    """Stage 3 for one method: train it and return its report row."""
    from pope_env.agents.methods import build_source, default_renderer, make_items, method_reward, sft_items
    from pope_env.agents.rollout import ShuffledItems, math_reward
    from pope_env.agents.srl import method_reward as srl_method_reward
    from pope_env.agents.srl import srl_sft_items, template_prefills_think, train_srl_then_rlvr
    from pope_env.agents.train import Trainer

    render = default_renderer(config.prompt_format)
    reward = math_reward()
    eval_items = make_items(hard[: config.eval_problems], render)
    train_hard = method.train_problems(hard, segments)
    if not train_hard:
        raise ConfigError("no hard problem has guidance; check the guidance file")
    cfg = method.train_config(train, sft_steps=config.sft_steps, srl_sft_steps=config.srl_sft_steps,
                              min_group_std=config.min_group_std)
    folder = out / method.name
    log(f"[3/3] training {method.name}: {method.description} -> {folder}")
    hooks = _reach_hooks(config, train, hard, folder / "own_states.jsonl")
    seed = train.seed
    if method.then:
        then = get_method(method.then)
        _, result = train_srl_then_rlvr(
            learner, srl_problems=train_hard,
            rlvr_source=build_source(then, render, hard=train_hard, easy=easy, guidance=segments, seed=seed),
            rlvr_reward=reward, config=cfg, srl_steps=train.steps if config.srl_steps is None else config.srl_steps,
            output_dir=folder, eval_items=eval_items, rollout_policy=engine, eval_hooks=hooks,
            srl_min_group_std=cfg.grpo.min_group_std if config.min_group_std is None else config.min_group_std,
            srl_sft_steps=config.srl_sft_steps, seed=seed,
            rlvr_dynamic_sampling=config.rlvr_dynamic_sampling,  # prefilled <think>: detected
        )
    else:
        source = build_source(method, render, hard=train_hard, easy=easy, guidance=segments, seed=seed)
        train_reward = method_reward(method, reward)
        if method.is_srl:  # a chat template that pre-fills <think>: completions start inside the monologue
            prefilled = template_prefills_think(engine or learner)
            train_reward = srl_method_reward(method.reward, reward, prefilled_think=prefilled)
            sft_source = ShuffledItems(srl_sft_items(train_hard, prefilled_think=prefilled), seed=seed,
                                       name="srl-sft") if cfg.sft_steps else None
        else:
            sft_source = sft_items(train_hard, render, seed=seed) if cfg.sft_steps else None
        # SRL methods train on similarity; the evaluation prompts are still scored by math-verify
        result = Trainer(learner, source, train_reward, cfg, folder, eval_items=eval_items, eval_reward_fn=reward,
                         sft_source=sft_source, rollout_policy=engine, eval_hooks=hooks).train()
    first = result.evals[0] if result.evals else {}
    last = result.evals[-1] if result.evals else {}
    key = f"pass@{train.eval_k}"
    return {"method": method.name, "steps": result.steps, f"{key} start": first.get(key),
            f"{key} end": last.get(key), "solved_set_size": result.solved_set_size,
            **({"s_good_overlap start": first.get("s_good_overlap"),
                "s_good_overlap end": last.get("s_good_overlap")} if hooks else {}),
            "skipped_steps": result.skipped_steps, "output_dir": str(folder)}


def _reach_hooks(config: PipelineConfig, train: TrainConfig, hard: Sequence[Any], details: Path) -> list[Any]:
    """``reach_problems > 0``: the own-state S_good overlap hook on the first N hard problems."""
    if not config.reach_problems:
        return []
    from pope_env.agents.reach_hook import OwnStateReachHook
    from pope_env.guidance import state_messages, state_text

    render = state_messages if config.prompt_format == "chat" else state_text
    return [OwnStateReachHook(list(hard[: config.reach_problems]), k=config.reach_k,
                              states_per_problem=config.reach_states, seed=train.seed, sampling=train.sampling,
                              render_state=lambda p, steps: render(p, list(steps)), details=details)]


def _plot_runs(out: Path, k: int) -> Path:
    """Stage 4's plot: pass@k over steps of every method run in ``out`` (srl-then-rlvr: its
    RLVR phase)."""
    from pope_env.agents.evaluation import plot_passk
    from pope_env.io import read_jsonl

    runs = {}
    for log_file in sorted(out.glob("*/eval_log.jsonl")) + sorted(out.glob("*/2-rlvr/eval_log.jsonl")):
        points = [(r["step"], r[f"pass@{k}"]) for r in read_jsonl(log_file, strict=False) if f"pass@{k}" in r]
        runs[log_file.relative_to(out).parts[0]] = points
    return plot_passk(runs, out / "passk.png", k=k)
