"""SRL training through the GRPO trainer: step prompts, similarity rewards, the curriculum.

SRL (Supervised Reinforcement Learning, 2025) trains with GRPO on one prompt per expert
step ``(problem, k)``, ``k = 2..N`` (``N - 1`` prompts for a solution of ``N`` steps, as in
the paper: every prompt shows at least expert step 1), rewarded by the similarity of the
generated step to the expert's step ``k``, with *dynamic sampling*: groups whose reward std
is at most 0.01 (the public SRL reproduction's threshold) carry no signal and are dropped,
and the batch is refilled. Its best recipe is a curriculum, SRL first and then RLVR (GRPO
on the verifiable reward), both phases with dynamic sampling.

Chat templates that pre-fill ``<think>`` (the completion starts inside the monologue, see
:mod:`pope_env.rewards.similarity`): build items with ``srl_items(..., prefilled_think=True)``
(the rewards read the item's tag), or pass ``prefilled_think`` to :func:`method_reward`;
:func:`template_prefills_think` tells it from a policy's rendered prompt, and
:func:`train_srl_then_rlvr` detects it by itself.

Pieces (all run through :class:`~pope_env.agents.train.Trainer` unchanged):

* :func:`srl_items` / :func:`sequence_items`: the prompts as :class:`PromptItem` s;
* :func:`step_similarity_reward` / :func:`sequence_similarity_reward_fn`: the rewards as
  :data:`~pope_env.agents.rollout.RewardFn` s;
* :func:`srl_sft_items`: the expert steps in SRL's output format, as SFT targets (a warm
  start that teaches the ``<think>`` format);
* :func:`train_srl_then_rlvr`: the two-phase curriculum on one learner.

The methods ``srl``, ``srl-sequence`` and ``srl-then-rlvr`` in
:mod:`pope_env.agents.methods` are built from these.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pope_env.agents.rollout import PromptItem, PromptSource, RewardFn, ShuffledItems
from pope_env.envs.srl import FIRST_STEP, srl_messages, srl_prompts
from pope_env.errors import ConfigError
from pope_env.problem import Problem
from pope_env.rewards.similarity import THINK_CLOSE, THINK_OPEN, prefills_think, srl_reward_batch

if TYPE_CHECKING:  # torch-free at import time
    from pope_env.agents.policy import LearnerPolicy, Policy
    from pope_env.agents.train import TrainResult
    from pope_env.agents.train_config import TrainConfig

__all__ = [
    "SRL_MIN_GROUP_STD",
    "SEQUENCE_SYSTEM_PROMPT",
    "srl_items",
    "sequence_items",
    "srl_sft_items",
    "step_similarity_reward",
    "sequence_similarity_reward_fn",
    "expert_sequence",
    "build_srl_source",
    "method_reward",
    "template_prefills_think",
    "train_srl_then_rlvr",
]

SRL_MIN_GROUP_STD = 0.01
"""Dynamic sampling threshold of SRL: groups with reward std <= this are dropped."""

SEQUENCE_SYSTEM_PROMPT = (
    "You solve a math problem. First think privately inside <think> and </think> (exactly "
    "one pair of tags, nothing before <think>). After </think>, write the whole solution."
)
"""System prompt of the whole-sequence baseline (one similarity for the whole solution)."""


def _with_steps(problems: Sequence[Problem], min_steps: int = 1) -> list[Problem]:
    kept = [p for p in problems if len(p.steps) >= min_steps]
    if not kept:
        need = "expert steps" if min_steps <= 1 else f"{min_steps} or more expert steps (SRL asks for steps 2..N)"
        raise ConfigError(f"no problem has {need}; SRL needs step-split solutions (e.g. 'champ', 'math-train')")
    return kept


def srl_items(problems: Sequence[Problem], *, prefilled_think: bool = False) -> list[PromptItem]:
    """One item per (problem, k), ``k = 2..N``: the SRL prompt for expert step ``k`` (1-based),
    ``N - 1`` items for a solution of ``N`` steps (problems with one step give none).

    ``options`` are the ``reset`` options of ``SRL-Math-v0`` that give the same prompt
    (``{"problem_id", "step"}``); the expert step is read from ``item.problem`` by the
    reward, never put in the prompt. ``prefilled_think=True`` tags every item so that the
    rewards read completions as starting inside ``<think>`` (the policy's chat template
    pre-fills it).
    """
    by_id = {p.id: p for p in _with_steps(problems, FIRST_STEP)}
    extra = {"prefilled_think": True} if prefilled_think else {}
    return [
        PromptItem(
            prompt=[dict(m) for m in sp.messages],
            problem_id=sp.problem_id,
            problem=by_id[sp.problem_id],
            options={"problem_id": sp.problem_id, "step": sp.k},
            tags={"split": "srl", "step": sp.k, **extra},
        )
        for sp in srl_prompts(list(by_id.values()))
    ]


def template_prefills_think(policy: Any) -> bool:
    """Whether ``policy``'s chat template ends an SRL prompt inside an opened ``<think>``.

    Renders one SRL prompt with ``policy.render`` (as :class:`~pope_env.agents.hf_policy.HFPolicy`
    and :class:`~pope_env.agents.vllm_policy.VLLMPolicy` have) and checks it with
    :func:`pope_env.rewards.similarity.prefills_think`; ``False`` for a policy without
    ``render`` (it sees the prompt as given).
    """
    render = getattr(policy, "render", None)
    if not callable(render):
        return False
    probe = Problem("probe", "What is 1 + 1?", "1 + 1 = 2.\n\nSo 2.", ("1 + 1 = 2.\n\n", "So 2."), "2", "probe")
    return prefills_think(render(srl_messages(probe, FIRST_STEP)))


def expert_sequence(problem: Problem) -> str:
    """The whole expert solution as the baseline compares it: the steps, one per line."""
    return "\n".join(s.strip() for s in problem.steps)


def sequence_items(problems: Sequence[Problem]) -> list[PromptItem]:
    """One item per problem for the whole-sequence similarity baseline."""
    return [
        PromptItem(
            prompt=[
                {"role": "system", "content": SEQUENCE_SYSTEM_PROMPT},
                {"role": "user", "content": f"Problem:\n{p.question.strip()}"},
            ],
            problem_id=p.id,
            problem=p,
            options={"problem_id": p.id},
            tags={"split": "srl-sequence"},
        )
        for p in _with_steps(problems)
    ]


def srl_sft_items(problems: Sequence[Problem], *, think: str = "", prefilled_think: bool = False) -> list[PromptItem]:
    """SRL prompts whose SFT target (``item.problem.solution``) is the expert step in format.

    The target is ``<think>{think}</think>`` followed by expert step ``k``: what the
    trainer's SFT phase (``TrainConfig.sft_steps``) fits, to teach a fresh model the output
    format before SRL's RL phase. With ``prefilled_think`` (the template already opened
    ``<think>``) the target starts inside the monologue: ``{think}</think>`` + step. The
    item's problem is a copy with only ``solution`` replaced, so the rewards still read the
    real steps.
    """
    out = []
    opening = "" if prefilled_think else THINK_OPEN
    for it in srl_items(problems, prefilled_think=prefilled_think):
        k = int(it.options["step"])
        target = f"{opening}{think}{THINK_CLOSE}{it.problem.steps[k - 1].strip()}"  # type: ignore[union-attr]
        out.append(dataclasses.replace(it, problem=dataclasses.replace(it.problem, solution=target)))
    return out


def _expert_step(item: PromptItem) -> str:
    if item.problem is None or "step" not in item.options:
        raise ConfigError(
            f"item {item.problem_id!r} is not an SRL step prompt (no problem or no 'step' option); "
            "build SRL items with pope_env.agents.srl.srl_items"
        )
    return item.problem.steps[int(item.options["step"]) - 1]


def _prefilled(items: Sequence[PromptItem], prefilled_think: bool | None) -> list[bool]:
    if prefilled_think is not None:
        return [bool(prefilled_think)] * len(items)
    return [bool(it.tags.get("prefilled_think", False)) for it in items]


def step_similarity_reward(completions: Sequence[str], items: Sequence[PromptItem], *,
                           prefilled_think: bool | None = None) -> list[float]:
    """SRL's reward for each completion: ``srl_reward(completion, expert step k)``, ``-1`` on
    a format failure (see :mod:`pope_env.rewards.similarity`). ``prefilled_think``: the
    prompts end with ``<think>`` (``None``: each item's ``prefilled_think`` tag, default no)."""
    return srl_reward_batch(list(completions), [_expert_step(it) for it in items],
                            prefilled_think=_prefilled(items, prefilled_think))


def sequence_similarity_reward_fn(completions: Sequence[str], items: Sequence[PromptItem], *,
                                  prefilled_think: bool | None = None) -> list[float]:
    """The whole-sequence baseline: similarity of everything after ``</think>`` to the whole
    expert solution (:func:`expert_sequence`), ``-1`` on a format failure;
    ``prefilled_think`` as in :func:`step_similarity_reward`."""
    experts = []
    for it in items:
        if it.problem is None:
            raise ConfigError(f"item {it.problem_id!r} carries no problem; build it with sequence_items")
        experts.append(expert_sequence(it.problem))
    return srl_reward_batch(list(completions), experts, prefilled_think=_prefilled(items, prefilled_think))


def build_srl_source(kind: str, problems: Sequence[Problem], *, seed: int = 0) -> PromptSource:
    """The shuffled, resumable prompt source of an SRL method.

    Args:
        kind: ``"step-similarity"`` (one prompt per (problem, k)) or
            ``"sequence-similarity"`` (one prompt per problem).
        problems: Problems with expert steps.
        seed: Seed of the data order.
    """
    if kind == "step-similarity":
        return ShuffledItems(srl_items(problems), seed=seed, name="srl")
    if kind == "sequence-similarity":
        return ShuffledItems(sequence_items(problems), seed=seed, name="srl-sequence")
    raise ConfigError(f"unknown SRL reward kind {kind!r}; use 'step-similarity' or 'sequence-similarity'")


def train_srl_then_rlvr(
    learner: LearnerPolicy,
    *,
    config: TrainConfig,
    output_dir: str | os.PathLike[str],
    rollout_policy: Policy | None = None,
    # the SRL phase
    srl_problems: Sequence[Problem],
    srl_steps: int,
    srl_min_group_std: float = SRL_MIN_GROUP_STD,
    srl_sft_steps: int = 0,
    prefilled_think: bool | None = None,
    seed: int = 0,
    # the RLVR phase
    rlvr_source: PromptSource,
    rlvr_reward: RewardFn,
    rlvr_dynamic_sampling: bool = True,
    eval_items: Sequence[PromptItem] = (),
    eval_hooks: Sequence[Any] = (),
) -> tuple[TrainResult, TrainResult]:
    """SRL's curriculum: ``srl_steps`` SRL steps, then ``config.steps`` RLVR (GRPO) steps.

    Both phases run :class:`~pope_env.agents.train.Trainer` on the same ``learner``, each in
    its own folder (``output_dir/1-srl``, ``output_dir/2-rlvr``) so each logs, checkpoints
    and resumes on its own: re-running after a crash finishes the SRL phase (or finds it
    finished, restoring its final weights) and then resumes the RLVR phase.

    Args:
        learner: The learner policy (see :class:`~pope_env.agents.policy.LearnerPolicy`).
        config: The RLVR phase's :class:`~pope_env.agents.train_config.TrainConfig` (its
            dynamic sampling is switched on by ``rlvr_dynamic_sampling``, its threshold
            ``config.grpo.min_group_std`` kept: 0 drops groups whose verifiable rewards are
            all equal); the SRL phase uses the same settings with ``steps=srl_steps``,
            dynamic sampling on with ``min_group_std=srl_min_group_std``, and
            ``sft_steps=srl_sft_steps``.
        output_dir: Parent folder of both phases.
        rollout_policy: A separate sampler that follows the learner (e.g. a vLLM engine),
            used by both phases; see :class:`~pope_env.agents.train.Trainer`.
        srl_problems: Problems with expert steps for the SRL phase.
        srl_steps: GRPO steps of the SRL phase (``>= 1``).
        srl_min_group_std: Dynamic sampling threshold of the SRL phase.
        srl_sft_steps: SFT steps on the expert steps in SRL's format (:func:`srl_sft_items`)
            before the SRL phase's RL steps: a warm start for models that do not yet write
            ``<think>...</think>`` (0: none).
        prefilled_think: Whether the chat template ends SRL prompts with ``<think>``
            (``None``: detected from the rollout policy, else the learner, by
            :func:`template_prefills_think`).
        seed: Seed of the SRL data order.
        rlvr_source: Prompts of the RLVR phase (e.g. the hard split).
        rlvr_reward: The verifiable reward of the RLVR phase.
        rlvr_dynamic_sampling: Dynamic sampling in the RLVR phase (default on, as SRL's
            curriculum trains both phases; ``False`` keeps ``config.grpo`` as given).
        eval_items: Evaluation prompts (verifiable reward) for the RLVR phase.
        eval_hooks: Extra evaluation metrics of the RLVR phase (see ``Trainer``).

    Returns:
        ``(srl_result, rlvr_result)``, the two :class:`~pope_env.agents.train.TrainResult` s.
    """
    from pope_env.agents.train import Trainer  # torch: imported only when training

    if srl_steps < 1:
        raise ConfigError(f"srl_steps must be >= 1, got {srl_steps}")
    out = Path(output_dir)
    srl_config = dataclasses.replace(
        config,
        method="srl-then-rlvr:srl",
        steps=srl_steps,
        sft_steps=srl_sft_steps,
        grpo=config.grpo.replace(dynamic_sampling=True, min_group_std=srl_min_group_std),
    )
    if prefilled_think is None:
        prefilled_think = template_prefills_think(rollout_policy if rollout_policy is not None else learner)
    sft_source = ShuffledItems(srl_sft_items(srl_problems, prefilled_think=prefilled_think), seed=seed,
                               name="srl-sft") if srl_sft_steps else None
    srl_source = ShuffledItems(srl_items(srl_problems, prefilled_think=prefilled_think), seed=seed, name="srl")
    srl_trainer = Trainer(learner, srl_source, step_similarity_reward, srl_config, out / "1-srl",
                          sft_source=sft_source, rollout_policy=rollout_policy)
    srl_result = srl_trainer.train()
    rlvr_grpo = config.grpo.replace(dynamic_sampling=True) if rlvr_dynamic_sampling else config.grpo
    rlvr_config = dataclasses.replace(config, method="srl-then-rlvr:rlvr", grpo=rlvr_grpo)
    rlvr_trainer = Trainer(learner, rlvr_source, rlvr_reward, rlvr_config, out / "2-rlvr", eval_items=eval_items,
                           rollout_policy=rollout_policy, eval_hooks=eval_hooks)
    return srl_result, rlvr_trainer.train()


def method_reward(kind: str, verifiable: RewardFn | None = None, *,
                  prefilled_think: bool | None = None) -> RewardFn:
    """The reward function a method trains on.

    Args:
        kind: ``"verifiable"``, ``"step-similarity"`` or ``"sequence-similarity"``.
        verifiable: The task's verifiable reward (e.g. math-verify). Required for
            ``"verifiable"``. With a similarity kind it scores every item that is *not* an
            SRL prompt (e.g. the trainer's unguided pass@k evaluation prompts), so one
            function serves SRL training and task evaluation; without it, only SRL items
            can be scored.
        prefilled_think: For the similarity kinds: the policy's chat template ends the
            prompts with ``<think>`` (``None``: each item's tag decides; see
            :func:`srl_items`).
    """
    if kind == "verifiable":
        if verifiable is None:
            raise ConfigError("this method trains on the verifiable reward; pass it (e.g. the math reward)")
        return verifiable
    if kind == "step-similarity":
        similarity, split = step_similarity_reward, "srl"
    elif kind == "sequence-similarity":
        similarity, split = sequence_similarity_reward_fn, "srl-sequence"
    else:
        raise ConfigError(f"unknown reward kind {kind!r}; use 'verifiable', 'step-similarity' or 'sequence-similarity'")
    if prefilled_think is not None:
        similarity = functools.partial(similarity, prefilled_think=prefilled_think)
    if verifiable is None:
        return similarity

    def reward(completions: Sequence[str], items: Sequence[PromptItem]) -> list[float]:
        ours = [i for i, it in enumerate(items) if it.tags.get("split") == split]
        others = [i for i, it in enumerate(items) if it.tags.get("split") != split]
        out = [0.0] * len(items)
        for idx, fn in ((ours, similarity), (others, verifiable)):
            if idx:
                for i, r in zip(idx, fn([completions[i] for i in idx], [items[i] for i in idx])):
                    out[i] = float(r)
        return out

    return reward
