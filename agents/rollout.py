"""Collecting groups of rollouts: prompts in, scored completions out, through any Policy.

* A :class:`PromptItem` is one prompt with where it came from (problem id, guided or not,
  prefix length, and the env ``reset`` options that reproduce it).
* A :class:`PromptSource` hands out items in a seeded, resumable order (its
  ``state_dict``/``load_state_dict`` make data order survive a restart exactly):
  :class:`ShuffledItems` over a fixed list, :class:`MixedSource` in exact proportions, or
  :class:`EnvSource` from a Gymnasium env's resets.
* A :data:`RewardFn` scores completions: ``reward_fn(completions, items) -> list[float]``.
  :func:`env_reward` uses a Gymnasium env (reset with the item's options, step with the
  completion); :func:`problem_reward` lifts a plain ``(completion, problem) -> float``.
* :func:`collect_groups` samples ``n`` completions per item and scores them;
  :class:`DynamicSampler` keeps only informative groups and refills the batch (DAPO, SRL),
  keeping the batch's mix of guided/unguided (and easy/hard) prompts: a dropped group is
  replaced by a prompt of the same :func:`item_stratum`.

Nothing here imports torch; the trainer and the rewards are pluggable, so SRL's step
rewards and SWE rewards run through the same code.
"""

from __future__ import annotations

import collections
import dataclasses
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pope_env.agents.policy import Generation, Policy, Prompt, SamplingParams
from pope_env.errors import ConfigError, PopeEnvError
from pope_env.problem import Problem


@dataclass(frozen=True)
class PromptItem:
    """One prompt to sample a group for.

    Attributes:
        prompt: Text or chat messages given to the policy.
        problem_id: Id of the underlying problem.
        guided: Whether the prompt carries an oracle-solution prefix (a POPE roll-in).
        prefix_len: Number of oracle steps in the prefix (0 when unguided).
        problem: The :class:`Problem` (privileged: for rewards, never shown to the policy).
        options: Env ``reset`` options reproducing this prompt (for :func:`env_reward`).
        tags: Free labels for logging (e.g. ``{"split": "hard"}``).
    """

    prompt: Prompt
    problem_id: str
    guided: bool = False
    prefix_len: int = 0
    problem: Problem | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rollout:
    """One scored completion.

    ``correct`` is ``reward >= success_threshold`` as decided by :func:`collect_groups`.
    """

    text: str
    reward: float
    correct: bool
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    finish_reason: str = "stop"


@dataclass(frozen=True)
class Group:
    """``n`` rollouts for one :class:`PromptItem`."""

    item: PromptItem
    rollouts: tuple[Rollout, ...]

    @property
    def rewards(self) -> list[float]:
        return [r.reward for r in self.rollouts]

    @property
    def reward_std(self) -> float:
        """Unbiased std of the group's rewards (0 for a single rollout)."""
        rs = self.rewards
        if len(rs) < 2:
            return 0.0
        mean = sum(rs) / len(rs)
        return (sum((r - mean) ** 2 for r in rs) / (len(rs) - 1)) ** 0.5


def item_stratum(item: PromptItem) -> tuple[bool, Any]:
    """The kind of prompt whose share dynamic sampling preserves: ``(guided, tags["split"])``
    (e.g. ``(True, "hard")`` for a POPE guided prompt, ``(False, "easy")`` in mix-easy)."""
    return bool(item.guided), item.tags.get("split")


def refill_items(source: "PromptSource", like: Sequence[PromptItem]) -> list[PromptItem]:
    """One new item for each of ``like``, of the same :func:`item_stratum` when the source
    can choose (it has ``next_items_like``, as :class:`MixedSource`), else the source's next
    ``len(like)`` items."""
    choose = getattr(source, "next_items_like", None)
    return list(choose(like)) if callable(choose) else source.next_items(len(like))


RewardFn = Callable[[Sequence[str], Sequence[PromptItem]], Sequence[float]]
"""Scores completions: ``reward_fn(completions, items)`` -> one float per completion."""


@runtime_checkable
class PromptSource(Protocol):
    """Hands out prompt items in a deterministic, resumable order."""

    def next_items(self, n: int) -> list[PromptItem]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class DynamicSamplingError(PopeEnvError, RuntimeError):
    """Dynamic sampling could not fill a batch with informative groups."""


# ----------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------
class ShuffledItems:
    """Cycles through a fixed list of items in a fresh seeded shuffle every epoch.

    The order depends only on ``(seed, epoch)``; the state is ``(epoch, cursor)``.
    """

    def __init__(self, items: Sequence[PromptItem], *, seed: int = 0, name: str = "items") -> None:
        if not items:
            raise ConfigError(f"{name}: no prompt items to train on (empty dataset or split?)")
        self.items = list(items)
        self.seed = seed
        self.name = name
        self.epoch = 0
        self.cursor = 0
        self._order = self._shuffle(0)

    def _shuffle(self, epoch: int) -> list[int]:
        order = list(range(len(self.items)))
        random.Random(f"{self.name}:{self.seed}:{epoch}").shuffle(order)
        return order

    def next_items(self, n: int) -> list[PromptItem]:
        out = []
        for _ in range(n):
            if self.cursor >= len(self._order):
                self.epoch += 1
                self.cursor = 0
                self._order = self._shuffle(self.epoch)
            out.append(self.items[self._order[self.cursor]])
            self.cursor += 1
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "cursor": self.cursor, "size": len(self.items)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("size", len(self.items)) != len(self.items):
            raise ConfigError(
                f"{self.name}: the saved data order is for {state['size']} items but this "
                f"source has {len(self.items)}; resume with the same data"
            )
        self.epoch = int(state["epoch"])
        self.cursor = int(state["cursor"])
        self._order = self._shuffle(self.epoch)


class MixedSource:
    """Draws from several sources in exact proportions within every batch.

    ``MixedSource({"guided": a, "unguided": b}, {"guided": 1, "unguided": 1})`` gives
    exactly half guided and half unguided items in each call to :meth:`next_items` with an
    even ``n`` (POPE's 1:1 mixture); remainders go to the sources in turn, continuing
    across calls, so the mixture is exact over any run of calls too.
    """

    def __init__(self, sources: Mapping[str, PromptSource], weights: Mapping[str, float]) -> None:
        if set(sources) != set(weights):
            raise ConfigError(f"sources {sorted(sources)} and weights {sorted(weights)} must name the same keys")
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ConfigError(f"mixture weights must be >= 0 and not all 0, got {dict(weights)}")
        self.sources = dict(sources)
        self.weights = {k: float(weights[k]) for k in sources if weights[k] > 0}
        self.drawn = dict.fromkeys(self.weights, 0)
        self._key_of: dict[tuple[bool, Any], str] = {}  # item_stratum -> the source it came from

    def next_items(self, n: int) -> list[PromptItem]:
        total_w = sum(self.weights.values())
        out: list[PromptItem] = []
        for _ in range(n):
            # Pick the source furthest behind its target share (deterministic, exact).
            total = sum(self.drawn.values()) + 1
            key = max(self.weights, key=lambda k: (self.weights[k] / total_w * total - self.drawn[k], -list(self.weights).index(k)))
            self.drawn[key] += 1
            out.extend(self._draw(key))
        return out

    def _draw(self, key: str) -> list[PromptItem]:
        items = self.sources[key].next_items(1)
        for it in items:
            self._key_of.setdefault(item_stratum(it), key)
        return items

    def next_items_like(self, like: Sequence[PromptItem]) -> list[PromptItem]:
        """For each item of ``like``, the next item of the source that gave items of its
        :func:`item_stratum` (a refill for dynamic sampling: a dropped guided prompt is
        replaced by a guided one). These draws do not count toward the batch proportions of
        :meth:`next_items`. An item of a stratum this source has not handed out yet is
        replaced by :meth:`next_items`."""
        out: list[PromptItem] = []
        for it in like:
            key = self._key_of.get(item_stratum(it))
            out.extend(self._draw(key) if key is not None else self.next_items(1))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"drawn": dict(self.drawn), "sources": {k: s.state_dict() for k, s in self.sources.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.drawn = {k: int(state["drawn"].get(k, 0)) for k in self.weights}
        for k, s in self.sources.items():
            s.load_state_dict(state["sources"][k])


class EnvSource:
    """Prompts drawn from a single-turn Gymnasium text env's resets.

    Each item is one ``env.reset()``: the prompt is ``info["messages"]`` (chat) when the env
    provides it and ``use_messages`` is true, else the observation text; ``problem_id``,
    ``guided`` and ``prefix_len`` come from ``info``. The env decides the mixture (e.g.
    ``POPE-Math-Hard-v0`` gives exactly 1:1 guided/unguided), and privileged data stays in
    the env: score completions with :func:`env_reward` on a second instance of the env.

    The order is fixed by ``seed``; the state is the number of resets, and loading it replays
    them, so a resumed run draws the same prompts.
    """

    def __init__(self, env: Any, *, seed: int = 0, use_messages: bool = True,
                 tags: Mapping[str, Any] | None = None) -> None:
        self.env = env
        self.seed = seed
        self.use_messages = use_messages
        self.tags = dict(tags or {"split": "hard"})
        self.draws = 0

    def _draw(self) -> PromptItem:
        obs, info = self.env.reset(seed=self.seed if self.draws == 0 else None)
        self.draws += 1
        messages = info.get("messages") if self.use_messages else None
        guided = bool(info.get("guided", False))
        prefix = int(info.get("prefix_len", 0))
        pid = str(info.get("problem_id", f"draw-{self.draws}"))
        return PromptItem(
            prompt=list(messages) if messages else str(obs), problem_id=pid, guided=guided, prefix_len=prefix,
            options={"problem_id": pid, "guided": guided, "prefix_len": prefix}, tags=self.tags,
        )

    def next_items(self, n: int) -> list[PromptItem]:
        return [self._draw() for _ in range(n)]

    def state_dict(self) -> dict[str, Any]:
        return {"draws": self.draws, "seed": self.seed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if int(state.get("seed", self.seed)) != self.seed:
            raise ConfigError(f"the saved env order used seed {state['seed']}, this source seed {self.seed}")
        self.draws = 0
        for _ in range(int(state["draws"])):
            self._draw()


# ----------------------------------------------------------------------------------------
# Rewards
# ----------------------------------------------------------------------------------------
class RankShard:
    """Each process takes its slice of every global batch, so the data order does not
    depend on the number of processes."""

    def __init__(self, source: PromptSource, rank: int, world: int) -> None:
        self.source, self.rank, self.world = source, rank, world

    def next_items(self, n: int) -> list[PromptItem]:
        items = self.source.next_items(n * self.world)
        return items[self.rank * n : (self.rank + 1) * n]

    def next_items_like(self, like: Sequence[PromptItem]) -> list[PromptItem]:
        """Dynamic sampling's refills: this process's own, of the same kinds as ``like``."""
        if callable(getattr(self.source, "next_items_like", None)):
            return self.source.next_items_like(like)
        return self.next_items(len(like))

    def state_dict(self) -> dict[str, Any]:
        return self.source.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.source.load_state_dict(state)


def problem_reward(fn: Callable[[str, Problem], float]) -> RewardFn:
    """Lift a per-completion ``fn(completion, problem) -> float`` to a :data:`RewardFn`."""

    def reward_fn(completions: Sequence[str], items: Sequence[PromptItem]) -> list[float]:
        out = []
        for c, it in zip(completions, items):
            if it.problem is None:
                raise ConfigError(f"item {it.problem_id!r} has no problem attached; the reward needs it")
            out.append(float(fn(c, it.problem)))
        return out

    return reward_fn


def math_reward(verifier: Any = None) -> RewardFn:
    """1.0 when the completion's final answer equals the problem's gold answer (math-verify,
    through :class:`pope_env.rewards.math.MathVerifier`, in parallel worker processes), else 0.0."""

    def reward_fn(completions: Sequence[str], items: Sequence[PromptItem]) -> list[float]:
        from pope_env.rewards.math import default_verifier

        golds = []
        for it in items:
            if it.problem is None:
                raise ConfigError(f"item {it.problem_id!r} has no problem attached; the math reward needs its answer")
            golds.append(it.problem.answer)
        scores = (verifier or default_verifier()).score_batch(list(completions), golds)
        return [s.reward for s in scores]

    return reward_fn


def env_reward(env: Any) -> RewardFn:
    """Score each completion by one step of a single-turn Gymnasium env.

    For each completion the env is reset with the item's ``options`` (which must select the
    same problem and roll-in, e.g. ``{"problem_id", "guided", "prefix_len"}``) and stepped
    with the completion text; the step's reward is the score.
    """

    def reward_fn(completions: Sequence[str], items: Sequence[PromptItem]) -> list[float]:
        out = []
        for c, it in zip(completions, items):
            env.reset(options=dict(it.options) or {"problem_id": it.problem_id})
            _obs, reward, _term, _trunc, _info = env.step(c)
            out.append(float(reward))
        return out

    return reward_fn


# ----------------------------------------------------------------------------------------
# Collection
# ----------------------------------------------------------------------------------------
def collect_groups(
    policy: Policy,
    items: Sequence[PromptItem],
    reward_fn: RewardFn,
    *,
    n: int,
    sampling: SamplingParams = SamplingParams(),
    success_threshold: float = 1.0,
) -> list[Group]:
    """Sample ``n`` completions per item in one batched ``generate`` call and score them.

    Args:
        policy: Any :class:`~pope_env.agents.policy.Policy`.
        items: The prompts.
        reward_fn: Scores completions (see :data:`RewardFn`).
        n: Completions per prompt (the GRPO group size).
        sampling: Sampling parameters.
        success_threshold: A rollout counts as ``correct`` when its reward is at least this.
    """
    if n < 1:
        raise ConfigError(f"group size n must be >= 1, got {n}")
    if not items:
        return []
    generations = policy.generate([it.prompt for it in items], n=n, sampling=sampling)
    if len(generations) != len(items) or any(len(g) != n for g in generations):
        raise ConfigError(
            f"{getattr(policy, 'name', type(policy).__name__)}.generate returned "
            f"{[len(g) for g in generations]} completions for {len(items)} prompts x n={n}"
        )
    flat_items = [it for it in items for _ in range(n)]
    flat_gens: list[Generation] = [g for group in generations for g in group]
    rewards = list(reward_fn([g.text for g in flat_gens], flat_items))
    if len(rewards) != len(flat_gens):
        raise ConfigError(f"reward_fn returned {len(rewards)} rewards for {len(flat_gens)} completions")
    groups = []
    for i, it in enumerate(items):
        rollouts = []
        for j in range(n):
            g, r = flat_gens[i * n + j], float(rewards[i * n + j])
            rollouts.append(
                Rollout(
                    text=g.text, reward=r, correct=r >= success_threshold,
                    prompt_ids=tuple(g.prompt_ids), completion_ids=tuple(g.token_ids),
                    logprobs=tuple(g.logprobs), finish_reason=g.finish_reason,
                )
            )
        groups.append(Group(item=it, rollouts=tuple(rollouts)))
    return groups


@dataclass
class SamplingReport:
    """What :meth:`DynamicSampler.sample` did: groups sampled, kept and dropped, rounds."""

    sampled: int = 0
    kept: int = 0
    dropped: int = 0
    rounds: int = 0
    all_groups: list[Group] = field(default_factory=list)
    #: informative groups left out because their stratum's share of the batch was full
    surplus: int = 0


@dataclass(eq=False)
class DynamicSampler:
    """Fill a batch of ``num_groups`` groups, optionally keeping only informative ones.

    Without filtering it samples ``num_groups`` items once. With ``min_std`` set (dynamic
    sampling), groups whose reward std is ``<= min_std`` are dropped and more items are
    sampled, in rounds, until the batch is full; after ``max_refill_rounds`` extra rounds
    without filling it, :class:`DynamicSamplingError` is raised (the policy solves all or
    none of what it is shown: change the data, the group size or the threshold).

    **The batch keeps the step's mix.** The first round's ``num_groups`` items fix how many
    groups of each :func:`item_stratum` (guided or not, easy or hard) the batch holds, e.g.
    POPE's exact 1:1 guided:unguided. A dropped group is refilled with an item of its own
    stratum (:func:`refill_items`: a dropped guided group with a guided prompt), and an
    informative group is kept only while its stratum's share is not full, so the kept batch
    has exactly the first round's proportions. (Refilling from the source's plain order
    instead would drift toward whichever kind is informative more often: on POPE's hard set
    the guided prompts.) A source without ``next_items_like`` is refilled in its own order
    and surplus informative groups of a full stratum are discarded
    (``SamplingReport.surplus``).

    ``sample`` returns exactly ``num_groups`` groups; extra informative groups from the
    last round are discarded (their items were consumed from the source).
    """

    policy: Policy
    source: PromptSource
    reward_fn: RewardFn
    _: dataclasses.KW_ONLY
    group_size: int
    sampling: SamplingParams = SamplingParams()
    min_std: float | None = None
    max_refill_rounds: int = 8
    success_threshold: float = 1.0

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ConfigError(
                f"group_size is {self.group_size}: GRPO's group-relative advantage needs at least 2 "
                "completions per prompt"
            )
        if self.max_refill_rounds < 0:
            raise ConfigError(f"max_refill_rounds must be >= 0, got {self.max_refill_rounds}")

    def sample(self, num_groups: int) -> tuple[list[Group], SamplingReport]:
        """``num_groups`` groups (informative ones if filtering) and a report of all sampled."""
        if num_groups < 1:
            raise ConfigError(f"num_groups must be >= 1, got {num_groups}")
        report = SamplingReport()
        kept: list[Group] = []
        items = self.source.next_items(num_groups)
        quota = collections.Counter(item_stratum(it) for it in items)  # the step's mix
        example = {item_stratum(it): it for it in items}
        have: collections.Counter = collections.Counter()
        while True:
            sampling = self.sampling
            if sampling.seed is not None and report.rounds:
                # a refill must not replay the first round's random draws
                sampling = dataclasses.replace(sampling, seed=(sampling.seed + 7919 * report.rounds) & 0x7FFFFFFF)
            groups = collect_groups(
                self.policy, items, self.reward_fn, n=self.group_size,
                sampling=sampling, success_threshold=self.success_threshold,
            )
            report.rounds += 1
            report.sampled += len(groups)
            report.all_groups.extend(groups)
            for g in groups:
                stratum = item_stratum(g.item)
                if self.min_std is not None and g.reward_std <= self.min_std:
                    report.dropped += 1
                elif have[stratum] < quota[stratum]:
                    kept.append(g)
                    have[stratum] += 1
                else:
                    report.surplus += 1
            if len(kept) >= num_groups:
                break
            if report.rounds > self.max_refill_rounds:
                short = {k: quota[k] - have[k] for k in quota if have[k] < quota[k]}
                kinds = ", ".join(f"{n} {'guided' if g else 'unguided'}{f' {s}' if s else ''}"
                                  for (g, s), n in short.items())
                raise DynamicSamplingError(
                    f"dynamic sampling kept {len(kept)}/{num_groups} groups after "
                    f"{report.rounds} rounds ({report.sampled} groups sampled, {report.dropped} "
                    f"had reward std <= {self.min_std}; still missing: {kinds}): the policy gets "
                    "every prompt of that kind all right or all wrong. Use harder/easier "
                    "problems, a larger group size, a lower threshold, or more max_refill_rounds"
                )
            items = refill_items(self.source, [example[k] for k in quota for _ in range(quota[k] - have[k])])
        report.kept = len(kept)
        return kept, report
