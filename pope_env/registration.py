"""Registration of every pope-env environment id with Gymnasium.

Envs are registered by entry-point strings, so ``import pope_env`` imports no env module
(and no torch). Add new ids to :data:`ENV_SPECS`; keep the list grouped by family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym


@dataclass(frozen=True)
class EnvSpecEntry:
    """One env id: its entry point, default kwargs and a one-line description."""

    id: str
    entry_point: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    max_episode_steps: int | None = None


ENV_SPECS: list[EnvSpecEntry] = [
    # --- single-turn math (envs/math.py) -------------------------------------------------
    EnvSpecEntry(
        "POPE-Math-v0",
        "pope_env.envs.math:MathEnv",
        {"dataset": "math-train", "mode": "unguided"},
        "All MATH training problems, unguided; one answer per episode.",
    ),
    EnvSpecEntry(
        "POPE-Math-Hard-v0",
        "pope_env.envs.math:MathEnv",
        {"dataset": "math-train-l5", "mode": "pope"},
        "Hard split, guided (oracle prefix i*) and unguided prompts mixed 1:1.",
    ),
    EnvSpecEntry(
        "POPE-Math-Guided-v0",
        "pope_env.envs.math:MathEnv",
        {"dataset": "math-train-l5", "mode": "guided"},
        "Hard split, always guided by the oracle prefix i*.",
    ),
    EnvSpecEntry(
        "POPE-Math-Eval-v0",
        "pope_env.envs.math:MathEnv",
        {"dataset": "math500", "mode": "unguided"},
        "MATH-500, unguided (evaluation).",
    ),
    # --- step-level math (envs/steps.py) -------------------------------------------------
    EnvSpecEntry(
        "POPE-Math-Steps-v0",
        "pope_env.envs.steps:MathStepsEnv",
        {"dataset": "math-train", "mode": "unguided"},
        "Step-level MDP on MATH train: one reasoning step per action; roll in from any state.",
    ),
    EnvSpecEntry(
        "POPE-Math-Steps-Hard-v0",
        "pope_env.envs.steps:MathStepsEnv",
        {"dataset": "math-train-l5", "mode": "pope"},
        "Step-level MDP on the hard split, guided and unguided starts mixed 1:1.",
    ),
    EnvSpecEntry(
        "POPE-Math-Steps-Guided-v0",
        "pope_env.envs.steps:MathStepsEnv",
        {"dataset": "math-train-l5", "mode": "guided"},
        "Step-level MDP on the hard split, always starting after the oracle prefix i*.",
    ),
    # --- SRL: step-wise similarity rewards with expert roll-in (envs/srl.py) ---------------
    EnvSpecEntry(
        "SRL-Math-v0",
        "pope_env.envs.srl:SRLMathEnv",
        {"dataset": "math-train"},
        "SRL: walk one expert MATH solution step by step; reward = similarity to the expert step.",
    ),
    EnvSpecEntry(
        "SRL-Math-Step-v0",
        "pope_env.envs.srl:SRLMathStepEnv",
        {"dataset": "math-train"},
        "SRL: one (problem, step k) prompt per episode, drawn uniformly, for batched GRPO.",
    ),
    EnvSpecEntry(
        "SRL-CHAMP-v0",
        "pope_env.envs.srl:SRLMathEnv",
        {"dataset": "champ"},
        "SRL on CHAMP's native solution steps, one whole solution per episode.",
    ),
    # --- SWE tasks in a sandbox (envs/swe.py) ---------------------------------------------
    EnvSpecEntry(
        "POPE-SWE-v0",
        "pope_env.envs.swe:SWEEnv",
        {"mode": "unguided"},
        "Local SWE-bench-format instances; shell commands in a sandbox, reward 1 if resolved.",
    ),
    EnvSpecEntry(
        "POPE-SWE-Guided-v0",
        "pope_env.envs.swe:SWEEnv",
        {"mode": "guided"},
        "As POPE-SWE-v0, with the expert's first i commands replayed as the roll-in.",
    ),
    EnvSpecEntry(
        "SRL-SWE-v0",
        "pope_env.envs.swe:SWEEnv",
        {"mode": "srl"},
        "Predict the expert's next command; reward = SRL step similarity.",
    ),
    # --- token-level arithmetic MDP for classic RL agents (envs/token.py) ------------------
    EnvSpecEntry(
        "POPE-Token-v0",
        "pope_env.envs.token:TokenEnv",
        {"level": "easy"},
        "One token per action (Discrete(16) with masks), 1-operation chains; for MaskablePPO.",
    ),
    EnvSpecEntry(
        "POPE-Token-Hard-v0",
        "pope_env.envs.token:TokenEnv",
        {"level": "hard", "mode": "pope"},
        "Token MDP on 3-operation chains; oracle-prefix (i*) and unguided resets mixed 1:1.",
    ),
    EnvSpecEntry(
        "POPE-Token-Hard-Eval-v0",
        "pope_env.envs.token:TokenEnv",
        {"level": "hard", "mode": "unguided", "split": "test"},
        "Token MDP, held-out 3-operation chains, unguided (evaluation).",
    ),
    EnvSpecEntry(
        "POPE-Token-Text-v0",
        "pope_env.envs.token_wrappers:make_text_env",
        {"level": "easy"},
        "POPE-Token-v0 seen as text: prompt in, solution text out (for LLM agents).",
    ),
]


def register_all() -> None:
    """Register every id in :data:`ENV_SPECS` (idempotent)."""
    for spec in ENV_SPECS:
        if spec.id in gym.registry:
            continue
        gym.register(
            id=spec.id,
            entry_point=spec.entry_point,
            kwargs=dict(spec.kwargs),
            max_episode_steps=spec.max_episode_steps,
            disable_env_checker=True,
        )


def env_ids() -> list[str]:
    """All pope-env env ids."""
    return [s.id for s in ENV_SPECS]
