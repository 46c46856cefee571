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
passk      grpo on pass@k-transformed rewards (k = 4): 1 for a correct rollout,
           rho(n-1, c, k-1) for a wrong one (the POPE paper's form), centred exactly as grpo
passk-chen grpo with Chen et al. 2025's std-normalised pass@k advantages (k = 4)
mix-easy   easy and hard problems mixed 1:1, unguided
sft-oracle SFT on the hard problems' oracle solutions first (50 steps at
           ``TrainConfig.sft_lr``, 1e-5 by default), then grpo
srl        SRL: one prompt per expert step (problem, k), step-similarity reward, dynamic
           sampling (groups with reward std <= 0.01 dropped, batch refilled)
srl-sequence SRL's whole-sequence baseline: one prompt per problem, similarity of the whole
           output to the whole expert solution, same dynamic sampling
srl-then-rlvr SRL's curriculum: srl, then grpo on the verifiable reward
           (:func:`pope_env.agents.srl.train_srl_then_rlvr`)
========== ============================================================================

For the SRL methods the "hard" problems are the SRL training problems (they need expert
steps) and the reward is :func:`method_reward` of ``method.reward``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from pope_env.agents.train_config import GRPOConfig, TrainConfig
from pope_env.agents.policy import Prompt
from pope_env.agents.rollout import MixedSource, PromptItem, PromptSource, RewardFn, ShuffledItems
from pope_env.errors import ConfigError, UnknownNameError
from pope_env.problem import Problem

Renderer = Callable[..., Prompt]
"""``render(problem, prefix_len)``: the prompt for a problem with the first ``prefix_len``
oracle steps as guidance (0: unguided). For a guidance segment that does not start at step 0
(prefix search's fallback), it is called as ``render(problem, prefix_len, start=start)``."""

Segment = Union[int, tuple[int, int]]
"""Guidance for one problem: a prefix length ``i*``, or ``(start, length)`` of oracle steps."""


def default_renderer(prompt_format: str = "chat") -> Renderer:
    """POPE's roll-in prompts from :mod:`pope_env.guidance`: chat messages
    (``guided_messages``) or plain text (``guided_text``) for models without a chat template."""
    from pope_env import guidance

    if prompt_format not in ("chat", "text"):
        raise ConfigError(f"prompt_format must be 'chat' or 'text', got {prompt_format!r}")
    fn = guidance.guided_messages if prompt_format == "chat" else guidance.guided_text

    def render(problem: Problem, prefix_len: int, *, start: int = 0) -> Prompt:
        return fn(problem, prefix_len, start=start)

    return render


def guidance_segments(guidance_file: Any) -> dict[str, tuple[int, int]]:
    """Problem id -> ``(start, length)`` from a loaded guidance file
    (:func:`pope_env.guidance_file.load_guidance`): ``(0, i*)`` or the fallback segment."""
    return {pid: (r.start, r.prefix_len) for pid, r in guidance_file.records.items()}


@dataclass(frozen=True)
class Method:
    """A named training recipe.

    Attributes:
        name: The method's name (``--method``).
        description: One line for ``--help`` and reports.
        grpo: Overrides applied to the user's :class:`GRPOConfig`.
        guided_share: Share of hard prompts that carry the oracle prefix i* (POPE: 0.5).
        easy_share: Share of prompts drawn from the easy set (mix-easy: 0.5).
        sft_steps: SFT steps on oracle solutions before RL (sft-oracle), at
            :attr:`~pope_env.agents.train_config.TrainConfig.sft_lr`.
        reward: What the method is rewarded by: ``"verifiable"`` (the task's reward, e.g.
            math-verify), ``"step-similarity"`` (SRL) or ``"sequence-similarity"`` (SRL's
            whole-sequence baseline); see :func:`method_reward`.
        then: The method of a second phase (a curriculum, e.g. ``srl-then-rlvr``), or None.
    """

    name: str
    description: str
    grpo: Mapping[str, Any] = field(default_factory=dict)
    guided_share: float = 0.0
    easy_share: float = 0.0
    sft_steps: int = 0
    reward: str = "verifiable"
    then: str | None = None

    def grpo_config(self, base: GRPOConfig = GRPOConfig()) -> GRPOConfig:
        """``base`` with this method's overrides."""
        return base.replace(**dict(self.grpo))

    @property
    def is_srl(self) -> bool:
        """Rewarded by SRL's similarity (not the task's verifiable reward)."""
        return self.reward != "verifiable"

    def train_config(
        self,
        base: TrainConfig,
        *,
        sft_steps: int | None = None,
        srl_sft_steps: int = 0,
        min_group_std: float | None = None,
    ) -> TrainConfig:
        """The :class:`~pope_env.agents.train_config.TrainConfig` this method trains with,
        from the user's ``base`` (whose ``grpo`` holds the user's GRPO settings):

        * ``method`` is this method's name; ``grpo`` gets this method's overrides
          (:meth:`grpo_config`), and ``min_group_std`` when given;
        * SFT steps: ``sft_steps`` when given, else this method's own (``sft-oracle``: 50);
          an SRL method instead does ``srl_sft_steps`` format warm-up steps, and a
          curriculum (``then``) none here: its phases are set up by
          :func:`pope_env.agents.srl.train_srl_then_rlvr`;
        * a curriculum's config is its second (RLVR) phase's: that method's GRPO overrides.
        """
        sft = self.sft_steps if sft_steps is None else sft_steps
        if self.is_srl:
            sft = srl_sft_steps if not self.then else 0
        grpo = self.grpo_config(base.grpo)
        if min_group_std is not None:
            grpo = grpo.replace(min_group_std=min_group_std)
        if self.then:
            grpo = get_method(self.then).grpo_config(base.grpo)
        return dataclasses.replace(base, method=self.name, sft_steps=sft, grpo=grpo)

    def train_problems(self, hard: Sequence[Problem], guidance: Mapping[str, Segment]) -> list[Problem]:
        """The hard problems this method trains on: those with guidance when it shows
        guided prompts (a problem without ``i*`` or fallback has no guided version), else all."""
        if self.guided_share > 0:
            return [p for p in hard if p.id in guidance]
        return list(hard)


_SRL_DYNAMIC_SAMPLING = {"dynamic_sampling": True, "min_group_std": 0.01}  # the public SRL reproduction's threshold

METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("grpo", "GRPO on the hard set only, unguided"),
        Method("pope", "POPE: hard set, guided (i* oracle steps) and unguided prompts 1:1", guided_share=0.5),
        Method("entropy", "GRPO on the hard set with an entropy bonus", grpo={"entropy_coef": 1e-3}),
        Method("clip-higher", "GRPO on the hard set with clip-higher (eps_high 0.28)", grpo={"eps_high": 0.28}),
        Method("passk", "GRPO on the hard set with pass@k-transformed rewards (k=4), centred as grpo",
               grpo={"advantage": "passk", "passk_k": 4}),
        Method("passk-chen", "GRPO on the hard set with Chen et al.'s std-normalised pass@k advantages (k=4)",
               grpo={"advantage": "passk-chen", "passk_k": 4}),
        Method("mix-easy", "GRPO on easy and hard problems mixed 1:1", easy_share=0.5),
        Method("sft-oracle", "SFT on the hard set's oracle solutions, then GRPO on the hard set", sft_steps=50),
        Method("srl", "SRL: a prompt per expert step, step-similarity reward, dynamic sampling (std <= 0.01 dropped)",
               grpo=_SRL_DYNAMIC_SAMPLING, reward="step-similarity"),
        Method("srl-sequence", "SRL's whole-sequence similarity baseline, dynamic sampling (std <= 0.01 dropped)",
               grpo=_SRL_DYNAMIC_SAMPLING, reward="sequence-similarity"),
        Method("srl-then-rlvr", "SRL first, then GRPO on the verifiable reward (SRL's curriculum)",
               grpo=_SRL_DYNAMIC_SAMPLING, reward="step-similarity", then="grpo"),
    ]
}


def register_method(method: Method, *, replace: bool = False) -> None:
    """Add a method (e.g. SRL's ``srl`` with ``grpo={"dynamic_sampling": True,
    "min_group_std": 0.01}``); refuses to overwrite a known name unless ``replace``."""
    if method.name in METHODS and not replace:
        raise ConfigError(f"method {method.name!r} already exists; pass replace=True to redefine it")
    METHODS[method.name] = method


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
    guidance: Mapping[str, Segment] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> list[PromptItem]:
    """Prompt items for ``problems``, unguided or guided with each problem's ``i*``.

    ``guidance`` maps problem id -> prefix length i* or ``(start, length)`` (see
    :func:`guidance_segments`). With ``guided=True`` every problem must have an entry; an
    item whose entry shows nothing (length 0) is labelled ``guided=False``.
    """
    items = []
    for p in problems:
        start, prefix = 0, 0
        if guided:
            if guidance is None or p.id not in guidance:
                raise ConfigError(
                    f"problem {p.id!r} has no prefix length i* in the guidance; run "
                    "`pope-env prefix-search` for this split or pass its guidance file"
                )
            seg = guidance[p.id]
            start, prefix = (0, int(seg)) if isinstance(seg, int) else (int(seg[0]), int(seg[1]))
        shown = prefix > 0  # an empty guidance (a fallback [0, 0]) shows the unguided prompt: say so
        options: dict[str, Any] = {"problem_id": p.id, "guided": shown, "prefix_len": prefix}
        prompt = render(p, prefix, start=start) if start else render(p, prefix)
        items.append(
            PromptItem(
                prompt=prompt, problem_id=p.id, guided=shown, prefix_len=prefix,
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
    guidance: Mapping[str, Segment] | None = None,
    seed: int = 0,
) -> PromptSource:
    """The prompt source ``method`` trains on.

    Args:
        method: The recipe.
        render: Builds a prompt from a problem and a prefix length.
        hard: The hard split (pass@k = 0 for the base policy).
        easy: Easy problems (needed by ``mix-easy``).
        guidance: Problem id -> i* or ``(start, length)`` (needed by ``pope``).
        seed: Seed of the data order.
    """
    if not hard:
        raise ConfigError("the hard set is empty; run `pope-env hard-split` or pass a split file")
    if method.reward != "verifiable":
        from pope_env.agents.srl import build_srl_source

        return build_srl_source(method.reward, hard, seed=seed)
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


def method_reward(method: Method, verifiable: RewardFn | None = None) -> RewardFn:
    """The reward ``method`` trains on: ``verifiable`` for GRPO-style methods, SRL's step
    similarity or the whole-sequence similarity for the SRL methods."""
    from pope_env.agents.srl import method_reward as _reward

    return _reward(method.reward, verifiable)


def sft_items(hard: Sequence[Problem], render: Renderer, *, seed: int = 0) -> ShuffledItems:
    """Unguided items of the hard set for the SFT phase (the oracle solution is the target)."""
    return ShuffledItems(make_items(hard, render, tags={"split": "hard"}), seed=seed, name="sft")
