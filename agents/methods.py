"""The training methods of the POPE paper, each a small recipe over the same GRPO trainer.

A :class:`Method` says which prompts a batch holds (hard only, hard guided:unguided 1:1,
easy + hard) and which GRPO options are on. :func:`build_source` turns a method plus the
problem sets into a :class:`~pope_env.agents.rollout.PromptSource`.

========== ============================================================================
name       recipe
========== ============================================================================
grpo       hard problems only, unguided; plain GRPO (no KL, no entropy term)
pope       hard problems, guided (oracle prefix of i* steps) and unguided exactly 1:1
entropy    grpo + entropy bonus (``entropy_coef``)
clip-higher grpo + DAPO's clip-higher (eps_high = 0.28)
passk      grpo with pass@k-objective advantages (k = 4)
mix-easy   easy and hard problems mixed 1:1, unguided
sft-oracle SFT on the hard problems' oracle solutions first, then grpo
========== ============================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pope_env.agents.grpo import GRPOConfig
from pope_env.agents.policy import Prompt
from pope_env.agents.rollout import MixedSource, PromptItem, PromptSource, ShuffledItems
from pope_env.errors import ConfigError, UnknownNameError
from pope_env.problem import Problem

Renderer = Callable[[Problem, int], Prompt]
"""``render(problem, prefix_len)``: the prompt for a problem with the first ``prefix_len``
oracle steps as guidance (0: unguided)."""


@dataclass(frozen=True)
class Method:
    """A named training recipe.

    Attributes:
        name: The method's name (``--method``).
        description: One line for ``--help`` and reports.
        grpo: Overrides applied to the user's :class:`GRPOConfig`.
        guided_share: Share of hard prompts that carry the oracle prefix i* (POPE: 0.5).
        easy_share: Share of prompts drawn from the easy set (mix-easy: 0.5).
        sft_steps: SFT steps on oracle solutions before RL (sft-oracle).
    """

    name: str
    description: str
    grpo: Mapping[str, Any] = field(default_factory=dict)
    guided_share: float = 0.0
    easy_share: float = 0.0
    sft_steps: int = 0

    def grpo_config(self, base: GRPOConfig = GRPOConfig()) -> GRPOConfig:
        """``base`` with this method's overrides."""
        return base.replace(**dict(self.grpo))


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("grpo", "GRPO on the hard set only, unguided"),
        Method("pope", "POPE: hard set, guided (i* oracle steps) and unguided prompts 1:1", guided_share=0.5),
        Method("entropy", "GRPO on the hard set with an entropy bonus", grpo={"entropy_coef": 1e-3}),
        Method("clip-higher", "GRPO on the hard set with clip-higher (eps_high 0.28)", grpo={"eps_high": 0.28}),
        Method("passk", "GRPO on the hard set with pass@k-objective advantages (k=4)",
               grpo={"advantage": "passk", "passk_k": 4}),
        Method("mix-easy", "GRPO on easy and hard problems mixed 1:1", easy_share=0.5),
        Method("sft-oracle", "SFT on the hard set's oracle solutions, then GRPO on the hard set", sft_steps=50),
    ]
}


def get_method(name: str) -> Method:
    """The method called ``name``; :class:`UnknownNameError` lists the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise UnknownNameError("method", name, list(METHODS)) from None


def make_items(
    problems: Sequence[Problem],
    render: Renderer,
    *,
    guided: bool = False,
    guidance: Mapping[str, int] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> list[PromptItem]:
    """Prompt items for ``problems``, unguided or guided with each problem's ``i*``.

    ``guidance`` maps problem id -> prefix length i* (from a guidance file). With
    ``guided=True`` every problem must have an entry.
    """
    items = []
    for p in problems:
        prefix = 0
        if guided:
            if guidance is None or p.id not in guidance:
                raise ConfigError(
                    f"problem {p.id!r} has no prefix length i* in the guidance; run "
                    "`pope-env prefix-search` for this split or pass its guidance file"
                )
            prefix = int(guidance[p.id])
        options = {"problem_id": p.id, "guided": guided, "prefix_len": prefix}
        items.append(
            PromptItem(
                prompt=render(p, prefix), problem_id=p.id, guided=guided, prefix_len=prefix,
                problem=p, options=options, tags=dict(tags or {}),
            )
        )
    return items


def build_source(
    method: Method,
    render: Renderer,
    *,
    hard: Sequence[Problem],
    easy: Sequence[Problem] = (),
    guidance: Mapping[str, int] | None = None,
    seed: int = 0,
) -> PromptSource:
    """The prompt source ``method`` trains on.

    Args:
        method: The recipe.
        render: Builds a prompt from a problem and a prefix length.
        hard: The hard split (pass@k = 0 for the base policy).
        easy: Easy problems (needed by ``mix-easy``).
        guidance: Problem id -> i* (needed by ``pope``).
        seed: Seed of the data order.
    """
    if not hard:
        raise ConfigError("the hard set is empty; run `pope-env hard-split` or pass a split file")
    parts: dict[str, PromptSource] = {}
    weights: dict[str, float] = {}
    hard_share = 1.0 - method.easy_share
    unguided_share = hard_share * (1.0 - method.guided_share)
    parts["hard"] = ShuffledItems(make_items(hard, render, tags={"split": "hard"}), seed=seed, name="hard")
    weights["hard"] = unguided_share
    if method.guided_share > 0:
        guided = make_items(hard, render, guided=True, guidance=guidance, tags={"split": "hard"})
        parts["guided"] = ShuffledItems(guided, seed=seed, name="guided")
        weights["guided"] = hard_share * method.guided_share
    if method.easy_share > 0:
        if not easy:
            raise ConfigError(f"method {method.name!r} mixes in easy problems; pass an easy set")
        parts["easy"] = ShuffledItems(make_items(easy, render, tags={"split": "easy"}), seed=seed, name="easy")
        weights["easy"] = method.easy_share
    if len(parts) == 1:
        return parts["hard"]
    return MixedSource(parts, weights)


def sft_items(hard: Sequence[Problem], render: Renderer, *, seed: int = 0) -> ShuffledItems:
    """Unguided items of the hard set for the SFT phase (the oracle solution is the target)."""
    return ShuffledItems(make_items(hard, render, tags={"split": "hard"}), seed=seed, name="sft")
