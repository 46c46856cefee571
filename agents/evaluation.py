"""Evaluation of a policy on held-out problems: unguided pass@k, and its plot over training.

:func:`evaluate_passk` samples exactly ``k`` completions per problem (so the unbiased pass@k
estimator is the fraction of problems with a correct one); :func:`plot_passk` draws pass@k
over training steps, one line per run, to a PNG written atomically. The trainer calls both
(:mod:`pope_env.agents.train`); the demo and the CLI reuse them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pope_env.agents.policy import Policy, SamplingParams
from pope_env.agents.rollout import PromptItem, RewardFn, collect_groups


def evaluate_passk(
    policy: Policy,
    items: Sequence[PromptItem],
    reward_fn: RewardFn,
    *,
    k: int,
    sampling: SamplingParams,
    success_threshold: float = 1.0,
    batch_prompts: int = 16,
    progress: bool = False,
) -> dict[str, Any]:
    """pass@k and pass@1 of ``policy`` on ``items`` with exactly ``k`` samples per problem.

    With ``n = k`` samples the unbiased pass@k estimator is the fraction of problems with at
    least one correct sample; pass@1 is the mean correctness.
    """
    from tqdm.auto import tqdm

    solved = 0
    correct = 0
    per_problem: dict[str, int] = {}
    bar = tqdm(total=len(items), desc="eval", leave=False, disable=not progress)
    for start in range(0, len(items), batch_prompts):
        chunk = list(items[start : start + batch_prompts])
        for g in collect_groups(policy, chunk, reward_fn, n=k, sampling=sampling, success_threshold=success_threshold):
            c = sum(r.correct for r in g.rollouts)
            per_problem[g.item.problem_id] = c
            solved += c > 0
            correct += c
        bar.update(len(chunk))
    bar.close()
    n = max(len(items), 1)
    return {f"pass@{k}": solved / n, "pass@1": correct / (n * k), "problems": len(items), "solved": solved,
            "per_problem": per_problem}


def plot_passk(runs: Mapping[str, Sequence[tuple[int, float]]], path: str | os.PathLike[str], *, k: int,
               title: str = "Unguided hard-set pass@k") -> Path:
    """Write a PNG of pass@k over training steps, one line per method run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, points in sorted(runs.items()):
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", markersize=3, label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"pass@{k} (unguided, hard set)")
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if runs:
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path
