"""The CPU testbed: does POPE beat plain GRPO on problems the base model cannot solve?

Pipeline (seeded; every phase cached or resumable; progress bars):

1. **Base model.** A tiny char transformer pretrained by SFT on easy arithmetic chains
   (:mod:`pope_env.agents.pretrain`), cached by a hash of its config.
2. **Hard split, measured.** Train-split chains with more operations, kept iff the base has
   *pass@k = 0* on them (``screen_k`` samples at temperature 1). The held-out evaluation set
   comes from the *test* split of the same levels, screened the same way with other samples.
3. **i\\* per problem.** The smallest oracle-prefix length ``i`` in ``1..prefix_cap`` from which
   the base succeeds at least once in ``istar_samples`` samples (the definition of
   :mod:`pope_env.prefix_search`, measured here for all problems and prefixes in one batched
   pass because a char model is fast only in large batches). Problems without one are dropped.
4. **Training from the same base** with the shared trainer (:class:`pope_env.agents.train.Trainer`,
   methods from :mod:`pope_env.agents.methods`): ``grpo`` = unguided hard prompts only; ``pope`` =
   the same hard problems, guided (prefix ``i*``) and unguided 1:1. Same learning rate, group
   size, prompts per step and number of steps, one run per method and seed.
5. **Evaluation.** Unguided pass@1 / pass@k on the held-out hard set (the trainer's evaluation,
   every ``eval_every`` steps, fixed sampling seed so every run is judged on the same random
   draws), guided pass@1 at i* on the training hard set before and after, the solved set
   (training hard problems with an unguided success in some rollout), and at every evaluation
   the S_good overlap of the policy's *own* unguided states on ``reach_problems`` training
   hard problems (:class:`~pope_env.agents.reach_hook.OwnStateReachHook`: the fraction of
   partial solutions it writes itself from which it still reaches the answer).

Rewards: 1 if the final answer equals the gold integer, else 0 (:func:`arithmetic_reward`,
the math reward's answer extraction with an exact integer comparison).

Outputs in ``out`` (default ``runs/demo``): ``config.json``, ``hard_split.jsonl``,
``eval_split.jsonl``, ``istar.jsonl``, ``runs/<method>-seed<s>/`` (the trainer's logs,
checkpoints, report), ``results.jsonl`` (one record per finished run), ``summary.json``,
``demo.png``. Re-running with the same config reuses every finished phase and run and resumes
an interrupted one from its last checkpoint.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pope_env.agents.charlm import CharLMConfig, CharLMPolicy
from pope_env.agents.policy import SamplingParams
from pope_env.agents.pretrain import PretrainConfig, pretrain, render_guided_prompt, render_prompt
from pope_env.datasets import arithmetic
from pope_env.errors import ConfigError, GuidanceFileError, UnknownNameError
from pope_env.guidance import prefix_cap
from pope_env.io import JsonlAppender, atomic_write_json, atomic_write_jsonl, read_jsonl
from pope_env.problem import Problem
from pope_env.rewards.math import extract_answer

METHODS = ("grpo", "pope")


@dataclass(frozen=True)
class DemoConfig:
    """Everything that defines a demo run.

    Attributes:
        preset: Name shown in reports (``quick``, ``default``, ``full``).
        pretrain: How the base model is made.
        hard_levels: Inclusive range of operation counts of hard candidates.
        n_candidates: Train-split candidates screened for the hard training set.
        n_eval_candidates: Test-split candidates screened for the held-out hard set.
        screen_k: Samples per candidate; *hard* means none of them is correct.
        istar_samples: Samples per (problem, prefix) in the i* search.
        max_hard: Cap on the hard training set (after screening and i*).
        max_eval: Cap on the held-out hard set.
        eval_k: Samples per problem for pass@1 / pass@k (k = ``eval_k``).
        seeds: One GRPO run and one POPE run per seed, all from the same base.
        steps: Trainer steps (one optimizer update each) per run.
        prompts_per_step: Prompts (groups) per step.
        group_size: Rollouts per prompt (GRPO's G).
        lr: Learning rate of both methods.
        eval_every: Steps between held-out evaluations.
        max_new_tokens: Completion cap in characters.
        reach_problems: Training hard problems whose own unguided states are checked against
            S_good at each evaluation (0: off).
        reach_k: Continuations per own state.
        reach_states: Own states per problem.
    """

    preset: str = "default"
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    hard_levels: tuple[int, int] = (6, 7)
    n_candidates: int = 400
    n_eval_candidates: int = 400
    screen_k: int = 16
    istar_samples: int = 8
    max_hard: int = 256
    max_eval: int = 200
    eval_k: int = 8
    seeds: tuple[int, ...] = (0,)
    steps: int = 100
    prompts_per_step: int = 16
    group_size: int = 8
    lr: float = 1e-4
    eval_every: int = 20
    max_new_tokens: int = 160
    reach_problems: int = 32
    reach_k: int = 4
    reach_states: int = 2

    def __post_init__(self) -> None:
        if self.hard_levels[0] <= self.pretrain.levels[1]:
            raise ConfigError(
                f"hard_levels {self.hard_levels} must be longer than the pretraining levels "
                f"{self.pretrain.levels}"
            )
        if not self.seeds:
            raise ConfigError("seeds must name at least one seed")
        if self.screen_k < 1 or self.istar_samples < 1 or self.eval_k < 1:
            raise ConfigError("screen_k, istar_samples and eval_k must be >= 1")

    def digest(self, *fields_: str) -> str:
        """Hash of the named fields (all when none): names the cached phases."""
        d = asdict(self)
        d = {k: d[k] for k in fields_} if fields_ else d
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=list).encode()).hexdigest()[:16]


_BASE = PretrainConfig(
    model=CharLMConfig(d_model=64, n_layers=3, n_heads=4, max_len=192),
    levels=(1, 4), steps=1500, batch_size=64, lr=3e-3,
)

PRESETS: dict[str, DemoConfig] = {
    # CI: the whole pipeline end to end on a small budget; it shows the plumbing, not the effect.
    "quick": DemoConfig(
        preset="quick",
        pretrain=replace(_BASE, steps=200),
        hard_levels=(5, 6),
        n_candidates=48,
        n_eval_candidates=48,
        screen_k=4,
        istar_samples=4,
        max_eval=32,
        eval_k=4,
        steps=4,
        prompts_per_step=8,
        group_size=4,
        eval_every=2,
        max_new_tokens=120,
        reach_problems=8,
        reach_k=2,
    ),
    # `pope-env demo`: at most 15 minutes on 2 cores, pretraining included.
    "default": DemoConfig(preset="default", pretrain=_BASE),
    # `pope-env demo --full`: three seeds, longer training, more evaluation problems.
    "full": DemoConfig(
        preset="full",
        pretrain=replace(_BASE, steps=3000),
        n_candidates=800,
        n_eval_candidates=800,
        max_hard=512,
        max_eval=500,
        seeds=(0, 1, 2),
        steps=300,
        eval_every=50,
    ),
}


def get_preset(name: str) -> DemoConfig:
    """The preset called ``name`` (``quick``, ``default`` or ``full``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownNameError("demo preset", name, list(PRESETS)) from None


# --- reward -------------------------------------------------------------------------------
def arithmetic_reward(completion: str, problem: Problem) -> float:
    """1.0 if the completion's final answer is the gold integer, else 0.0.

    The answer is extracted exactly as :mod:`pope_env.rewards.math` does (last ``\\boxed{}``,
    then its fallbacks); both sides are integers here, so an integer comparison gives
    math-verify's verdict without its ~10 ms per call (evaluation scores thousands of
    samples a minute on two cores).
    """
    answer = extract_answer(completion)
    if answer is None:
        return 0.0
    try:
        return float(int(answer.strip()) == int(problem.answer))
    except ValueError:
        return 0.0


# --- measuring (batched over problems and prefixes) ---------------------------------------
def count_correct(
    policy: CharLMPolicy,
    problems: Sequence[Problem],
    prompts: Sequence[str],
    *,
    k: int,
    seed: int,
    max_new_tokens: int,
    desc: str | None = None,
    chunk: int = 32,
) -> list[int]:
    """Correct completions among ``k`` temperature-1 samples for each prompt (seeded per chunk)."""
    from tqdm.auto import tqdm

    counts: list[int] = []
    with tqdm(total=len(prompts), desc=desc, disable=desc is None, unit="prompt") as bar:
        for start in range(0, len(prompts), chunk):
            sp = SamplingParams(temperature=1.0, max_new_tokens=max_new_tokens, seed=seed * 1_000_003 + start)
            groups = policy.generate(list(prompts[start : start + chunk]), n=k, sampling=sp)
            for g, p in zip(groups, problems[start : start + chunk]):
                counts.append(int(sum(arithmetic_reward(x.text, p) for x in g)))
            bar.update(len(groups))
    return counts


def screen_hard(
    policy: CharLMPolicy, candidates: Sequence[Problem], *, k: int, seed: int, max_new_tokens: int, desc: str
) -> tuple[list[Problem], list[int]]:
    """The candidates with pass@k = 0 under ``policy``, and every candidate's success count."""
    counts = count_correct(policy, candidates, [render_prompt(p) for p in candidates], k=k, seed=seed,
                           max_new_tokens=max_new_tokens, desc=desc)
    return [p for p, c in zip(candidates, counts) if c == 0], counts


def find_istar(
    policy: CharLMPolicy, problems: Sequence[Problem], *, samples: int, seed: int, max_new_tokens: int
) -> dict[str, int]:
    """i* per problem: the smallest ``i`` in ``1..prefix_cap(problem)`` with a success among
    ``samples`` guided completions. Problems where no prefix works are left out."""
    pairs = [(p, i) for p in problems for i in range(1, prefix_cap(p) + 1)]
    counts = count_correct(policy, [p for p, _ in pairs], [render_guided_prompt(p, i) for p, i in pairs],
                           k=samples, seed=seed, max_new_tokens=max_new_tokens, desc="i* search")
    istar: dict[str, int] = {}
    for (p, i), c in zip(pairs, counts):
        if c > 0 and p.id not in istar:
            istar[p.id] = i
    return istar


# --- phases with caching ------------------------------------------------------------------
@dataclass
class Testbed:
    """The measured inputs shared by every run: base, hard set, i*, held-out hard set."""

    base: CharLMPolicy
    hard: list[Problem]
    istar: dict[str, int]
    eval_set: list[Problem]
    easy_accuracy: float
    stats: dict[str, Any]


def _cached_problems(path: Path, key: str, make: Callable[[], tuple[list[Problem], dict[str, Any]]]) -> tuple[list[Problem], dict[str, Any]]:
    """Problems stored at ``path`` under header ``key``; made (and stored atomically) if absent."""
    if path.exists():
        rows = read_jsonl(path)
        if rows and rows[0].get("key") == key:
            return [Problem.from_dict(r) for r in rows[1:]], rows[0].get("stats", {})
    problems, stats = make()
    atomic_write_jsonl(path, [{"key": key, "stats": stats}] + [p.to_dict() for p in problems])
    return problems, stats


def build_testbed(cfg: DemoConfig, out: Path, *, log: Callable[[str], None] = print) -> Testbed:
    """Phases 1-3: base model, measured hard split, i*, held-out hard set (cached in ``out``)."""
    t0 = time.perf_counter()
    base = pretrain(cfg.pretrain, log=log)
    log(f"base model: {base.model.num_parameters():,} parameters, pretrained on levels "
        f"{cfg.pretrain.levels[0]}-{cfg.pretrain.levels[1]} ({time.perf_counter() - t0:.0f} s)")
    mnt = cfg.max_new_tokens

    easy_key = cfg.digest("pretrain", "max_new_tokens")
    easy_path = out / "easy_check.json"
    easy = json.loads(easy_path.read_text()) if easy_path.exists() else {}
    if easy.get("key") != easy_key:
        lo, hi = cfg.pretrain.levels
        probs = [p for level in range(lo, hi + 1) for p in itertools.islice(
            arithmetic.iter_problems(level, split="test", seed=1, max_value=cfg.pretrain.max_value), 64)]
        c = count_correct(base, probs, [render_prompt(p) for p in probs], k=1, seed=7, max_new_tokens=mnt,
                          desc="easy check")
        easy = {"key": easy_key, "accuracy": sum(c) / len(c), "problems": len(c)}
        atomic_write_json(easy_path, easy)
    log(f"base pass@1 on held-out easy problems: {easy['accuracy']:.3f} ({easy['problems']} problems)")

    def make_hard() -> tuple[list[Problem], dict[str, Any]]:
        cands = arithmetic.generate(cfg.n_candidates, cfg.hard_levels, split="train", seed=0,
                                    max_value=cfg.pretrain.max_value)
        hard, counts = screen_hard(base, cands, k=cfg.screen_k, seed=1, max_new_tokens=mnt, desc="hard split")
        return hard, {"candidates": len(cands), "hard": len(hard),
                      "candidate_pass@1": sum(counts) / len(counts) / cfg.screen_k}

    key = cfg.digest("pretrain", "hard_levels", "n_candidates", "screen_k", "max_new_tokens")
    hard_all, hard_stats = _cached_problems(out / "hard_split.jsonl", key, make_hard)

    istar_path = out / "istar.jsonl"
    istar_key = cfg.digest("pretrain", "hard_levels", "n_candidates", "screen_k", "istar_samples", "max_new_tokens")
    rows = read_jsonl(istar_path) if istar_path.exists() else []
    if rows and rows[0].get("key") == istar_key:
        istar = {r["problem_id"]: r["i_star"] for r in rows[1:]}
    else:
        istar = find_istar(base, hard_all, samples=cfg.istar_samples, seed=2, max_new_tokens=mnt)
        atomic_write_jsonl(istar_path, [{"key": istar_key}] + [
            {"problem_id": p.id, "i_star": istar[p.id], "n_steps": len(p.steps)} for p in hard_all if p.id in istar
        ])
    hard = [p for p in hard_all if p.id in istar][: cfg.max_hard]

    def make_eval() -> tuple[list[Problem], dict[str, Any]]:
        cands = arithmetic.generate(cfg.n_eval_candidates, cfg.hard_levels, split="test", seed=0,
                                    max_value=cfg.pretrain.max_value)
        held, counts = screen_hard(base, cands, k=cfg.screen_k, seed=3, max_new_tokens=mnt, desc="held-out split")
        return held[: cfg.max_eval], {"candidates": len(cands), "hard": len(held)}

    key = cfg.digest("pretrain", "hard_levels", "n_eval_candidates", "screen_k", "max_eval", "max_new_tokens")
    eval_set, eval_stats = _cached_problems(out / "eval_split.jsonl", key, make_eval)
    if not hard or not eval_set:
        raise ConfigError(
            f"no usable hard problems (hard with i*: {len(hard)}, held-out hard: {len(eval_set)}); "
            "pretrain longer or use longer hard_levels"
        )
    stats = {
        "hard_candidates": hard_stats.get("candidates"),
        "hard_pass@k=0": len(hard_all),
        "hard_with_istar": len([p for p in hard_all if p.id in istar]),
        "hard_used": len(hard),
        "istar_mean": statistics.fmean(istar[p.id] for p in hard),
        "eval_candidates": eval_stats.get("candidates"),
        "eval_pass@k=0": eval_stats.get("hard"),
        "eval_used": len(eval_set),
        "candidate_pass@1": hard_stats.get("candidate_pass@1"),
    }
    log(f"hard split: {stats['hard_pass@k=0']}/{stats['hard_candidates']} train candidates have pass@"
        f"{cfg.screen_k} = 0, {stats['hard_with_istar']} of them have an i* (mean i* "
        f"{stats['istar_mean']:.2f}); held-out hard set: {len(eval_set)} problems")
    return Testbed(base, hard, istar, eval_set, easy["accuracy"], stats)


# --- training runs ------------------------------------------------------------------------
def run_method(cfg: DemoConfig, tb: Testbed, method: str, seed: int, out: Path) -> dict[str, Any]:
    """Train a copy of the base with ``method`` and the shared trainer; return its result record."""
    import copy

    from pope_env.agents.grpo import GRPOConfig
    from pope_env.agents.methods import build_source, get_method, make_items
    from pope_env.agents.rollout import problem_reward
    from pope_env.agents.train import TrainConfig, Trainer, evaluate_passk

    m = get_method(method)
    learner = copy.deepcopy(tb.base)
    reward_fn = problem_reward(arithmetic_reward)
    source = build_source(m, render_guided_prompt, hard=tb.hard, guidance=tb.istar, seed=seed)
    eval_items = make_items(tb.eval_set, render_guided_prompt, tags={"split": "eval"})
    sampling = SamplingParams(temperature=1.0, max_new_tokens=cfg.max_new_tokens)
    train_cfg = TrainConfig(
        method=method,
        steps=cfg.steps,
        prompts_per_step=cfg.prompts_per_step,
        group_size=cfg.group_size,
        sampling=sampling,
        grpo=m.grpo_config(GRPOConfig(lr=cfg.lr, micro_batch_size=cfg.prompts_per_step * cfg.group_size)),
        seed=seed,
        eval_every=cfg.eval_every,
        eval_k=cfg.eval_k,
        eval_sampling=replace(sampling, seed=12345),
        save_every=cfg.eval_every,
        tensorboard=False,
    )
    run_dir = out / "runs" / f"{method}-seed{seed}"
    hooks = [own_state_hook(cfg, tb, run_dir / "own_states.jsonl")] if cfg.reach_problems else []
    result = Trainer(learner, source, reward_fn, train_cfg, run_dir, eval_items=eval_items, eval_hooks=hooks).train()
    guided_items = make_items(tb.hard, render_guided_prompt, guided=True, guidance=tb.istar)
    guided = evaluate_passk(learner, guided_items, reward_fn, k=2, sampling=replace(sampling, seed=54321))
    k = cfg.eval_k
    evals = [{"step": e["step"], "pass@1": e["pass@1"], f"pass@{k}": e[f"pass@{k}"],
              **({"s_good_overlap": e["s_good_overlap"]} if "s_good_overlap" in e else {})} for e in result.evals]
    return {
        "method": method,
        "seed": seed,
        "evals": evals,
        "before": evals[0] if evals else None,
        "after": evals[-1] if evals else None,
        "guided_pass@1_after": guided["pass@1"],
        "solved_set": result.solved_set_size,
        "skipped_steps": result.skipped_steps,
        "wall_s": round(result.wall_s, 1),
    }


def own_state_hook(cfg: DemoConfig, tb: Testbed, details: Path) -> Any:
    """The S_good overlap of the policy's own unguided states on the first
    ``reach_problems`` training hard problems (same draws at every evaluation)."""
    from pope_env.agents.reach_hook import OwnStateReachHook
    from pope_env.own_states import split_lines

    return OwnStateReachHook(
        tb.hard[: cfg.reach_problems], k=cfg.reach_k, states_per_problem=cfg.reach_states, seed=777,
        sampling=SamplingParams(temperature=1.0, max_new_tokens=cfg.max_new_tokens),
        scorer=lambda texts, p: [arithmetic_reward(t, p) > 0.5 for t in texts],
        render_state=lambda p, steps: render_prompt(p) + "".join(steps), split_steps=split_lines,
        details=details,
    )


def base_guided_success(cfg: DemoConfig, tb: Testbed) -> float:
    """Guided pass@1 of the base at i* on the training hard set (same draws as after training)."""
    from pope_env.agents.methods import make_items
    from pope_env.agents.rollout import problem_reward
    from pope_env.agents.train import evaluate_passk

    items = make_items(tb.hard, render_guided_prompt, guided=True, guidance=tb.istar)
    sampling = SamplingParams(temperature=1.0, max_new_tokens=cfg.max_new_tokens, seed=54321)
    return evaluate_passk(tb.base, items, problem_reward(arithmetic_reward), k=2, sampling=sampling)["pass@1"]


# --- report -------------------------------------------------------------------------------
def summarize(
    cfg: DemoConfig, results: Sequence[dict[str, Any]], guided_before: float, n_eval: int
) -> dict[str, Any]:
    """Per-method means over seeds (and per-seed values) of the table's columns, and the
    POPE-minus-GRPO difference with its standard error."""
    k = cfg.eval_k
    rows = {}
    for method in METHODS:
        rs = [r for r in results if r["method"] == method]
        if not rs:
            continue
        mean = lambda xs: statistics.fmean(xs) if xs else float("nan")  # noqa: E731
        rows[method] = {
            "seeds": [r["seed"] for r in rs],
            "pass@1_before": mean([r["before"]["pass@1"] for r in rs]),
            "pass@1_after": mean([r["after"]["pass@1"] for r in rs]),
            f"pass@{k}_before": mean([r["before"][f"pass@{k}"] for r in rs]),
            f"pass@{k}_after": mean([r["after"][f"pass@{k}"] for r in rs]),
            f"pass@{k}_after_per_seed": [r["after"][f"pass@{k}"] for r in rs],
            "guided_pass@1_before": guided_before,
            "guided_pass@1_after": mean([r["guided_pass@1_after"] for r in rs]),
            "solved_set": mean([r["solved_set"] for r in rs]),
        }
        if all("s_good_overlap" in (r["before"] or {}) for r in rs):
            rows[method]["s_good_overlap_before"] = mean([r["before"]["s_good_overlap"] for r in rs])
            rows[method]["s_good_overlap_after"] = mean([r["after"]["s_good_overlap"] for r in rs])
    for method, row in rows.items():
        rs = [r for r in results if r["method"] == method]
        # Mean over every evaluation after step 0: less noisy than the last point alone.
        row[f"pass@{k}_mean_during_training"] = statistics.fmean(
            e[f"pass@{k}"] for r in rs for e in r["evals"] if e["step"] > 0
        ) if any(e["step"] > 0 for r in rs for e in r["evals"]) else float("nan")
    verdict = None
    if "grpo" in rows and "pope" in rows:
        diff = rows["pope"][f"pass@{k}_after"] - rows["grpo"][f"pass@{k}_after"]
        # Binomial standard error of a difference of two pass@k fractions over n_eval problems
        # each, averaged over seeds: differences under two of them are not evidence.
        n = max(1, n_eval) * len(rows["pope"]["seeds"])
        se = sum(rows[m][f"pass@{k}_after"] * (1 - rows[m][f"pass@{k}_after"]) / n for m in ("pope", "grpo")) ** 0.5
        verdict = {
            f"pope_minus_grpo_pass@{k}_after": diff,
            "standard_error": se,
            "significant": abs(diff) > 2 * se,
            f"pope_minus_grpo_pass@{k}_mean_during_training": (
                rows["pope"][f"pass@{k}_mean_during_training"] - rows["grpo"][f"pass@{k}_mean_during_training"]
            ),
        }
    return {"k": k, "methods": rows, "verdict": verdict}


def format_table(summary: dict[str, Any], n_eval: int) -> str:
    """The demo's table as fixed-width text."""
    k = summary["k"]
    reach = all("s_good_overlap_before" in r for r in summary["methods"].values())
    head = (f"{'method':<7} {'pass@1 before':>13} {'pass@1 after':>12} {f'pass@{k} before':>13} "
            f"{f'pass@{k} after':>12} {'guided before':>13} {'guided after':>12} {'solved set':>10}"
            + (f" {'own in S_good':>16}" if reach else ""))
    lines = [f"unguided = held-out hard problems ({n_eval}, base pass@k = 0 when screened); "
             "guided = pass@1 at i* on the training hard set"
             + ("; own in S_good = own unguided partial solutions in S_good, before -> after" if reach else ""),
             head, "-" * len(head)]
    for method, r in summary["methods"].items():
        lines.append(
            f"{method:<7} {r['pass@1_before']:>13.4f} {r['pass@1_after']:>12.4f} {r[f'pass@{k}_before']:>13.4f} "
            f"{r[f'pass@{k}_after']:>12.4f} {r['guided_pass@1_before']:>13.4f} {r['guided_pass@1_after']:>12.4f} "
            f"{r['solved_set']:>10.1f}"
            + (f" {r['s_good_overlap_before']:>7.3f} -> {r['s_good_overlap_after']:.3f}" if reach else "")
        )
    return "\n".join(lines)


def plot(cfg: DemoConfig, results: Sequence[dict[str, Any]], path: Path) -> Path:
    """PNG: unguided held-out pass@k and pass@1 over training steps, one line per run."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = cfg.eval_k
    colors = {"grpo": "tab:blue", "pope": "tab:red"}
    metrics = [f"pass@{k}", "pass@1"]
    if results and all("s_good_overlap" in e for r in results for e in r["evals"]):
        metrics.append("s_good_overlap")
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), dpi=120)
    for ax, metric in zip(axes, metrics):
        for r in results:
            xs = [e["step"] for e in r["evals"]]
            ys = [e[metric] for e in r["evals"]]
            label = r["method"].upper() + (f" (seed {r['seed']})" if len(cfg.seeds) > 1 else "")
            ax.plot(xs, ys, marker="o", markersize=3, color=colors.get(r["method"]), alpha=0.85,
                    linestyle="-" if r["seed"] == cfg.seeds[0] else "--", label=label)
        ax.set_xlabel("training step")
        ax.set_ylabel("own unguided states in S_good (train hard)" if metric == "s_good_overlap"
                      else f"unguided {metric} (held-out hard)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"POPE vs GRPO from the same char-LM base ({cfg.preset} preset)")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def run_demo(cfg: DemoConfig, out: str | Path = "runs/demo", *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole demo; returns the summary (also written to ``out/summary.json``)."""
    import torch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "config.json"
    if config_path.exists():
        old = json.loads(config_path.read_text())
        if old.get("digest") != cfg.digest():
            raise GuidanceFileError(
                f"{out} holds a demo run with another config ({old.get('preset')}, {old.get('digest')}); "
                "use another --out folder or delete it"
            )
    atomic_write_json(config_path, {"digest": cfg.digest(), "preset": cfg.preset, "config": asdict(cfg)})
    # One intra-op thread: this model's matmuls are too small to split, and on a busy machine
    # two spinning OpenMP threads made sampling 20-30x slower (measured).
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    tb = build_testbed(cfg, out, log=log)
    guided_before = base_guided_success(cfg, tb)
    results_path = out / "results.jsonl"
    done = {(r["method"], r["seed"]): r for r in (read_jsonl(results_path, strict=False) if results_path.exists() else [])}
    with JsonlAppender(results_path) as sink:
        for seed in cfg.seeds:
            for method in METHODS:
                if (method, seed) in done:
                    log(f"{method} seed {seed}: already done, reusing its result")
                    continue
                rec = run_method(cfg, tb, method, seed, out)
                sink.append(rec)
                done[(method, seed)] = rec
                a = rec["after"]
                log(f"{method} seed {seed}: unguided pass@{cfg.eval_k} {rec['before'][f'pass@{cfg.eval_k}']:.3f} -> "
                    f"{a[f'pass@{cfg.eval_k}']:.3f}, pass@1 {rec['before']['pass@1']:.4f} -> {a['pass@1']:.4f} "
                    f"({rec['wall_s']:.0f} s)")
    results = [done[(m, s)] for s in cfg.seeds for m in METHODS]
    summary = summarize(cfg, results, guided_before, len(tb.eval_set))
    summary.update(testbed=tb.stats, easy_accuracy=tb.easy_accuracy, preset=cfg.preset,
                   wall_s=round(time.perf_counter() - t0, 1))
    atomic_write_json(out / "summary.json", summary)
    plot(cfg, results, out / "demo.png")
    log("")
    log(format_table(summary, len(tb.eval_set)))
    v = summary["verdict"]
    if v is not None:
        k = cfg.eval_k
        d, se = v[f"pope_minus_grpo_pass@{k}_after"], v["standard_error"]
        if not v["significant"]:
            word = "no significant difference between POPE and GRPO"
        else:
            word = "POPE beats GRPO" if d > 0 else "GRPO beats POPE"
        log(f"\nHeld-out unguided pass@{k} after training: {word} (POPE - GRPO = {d:+.4f} +- {se:.4f} "
            f"s.e., {len(cfg.seeds)} seed(s); mean over the training curve: "
            f"{v[f'pope_minus_grpo_pass@{k}_mean_during_training']:+.4f}).")
    log(f"outputs: {out}/summary.json, {out}/demo.png, {out}/results.jsonl")
    return summary
