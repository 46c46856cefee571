"""The agent protocol: anything with ``act(observation, info) -> action`` is an agent.

Users plug in their own objects; nothing here needs subclassing. ``act_batch`` lets a
policy serve many envs at once (vector envs, GRPO groups); :func:`act_batch` falls back to
a loop over ``act`` for agents without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Agent(Protocol):
    """Maps one observation (and its ``info`` dict) to one action."""

    def act(self, observation: Any, info: Mapping[str, Any]) -> Any: ...


@runtime_checkable
class BatchAgent(Agent, Protocol):
    """An agent that can also act on a batch of observations in one call."""

    def act_batch(self, observations: Sequence[Any], infos: Sequence[Mapping[str, Any]]) -> list[Any]: ...


@runtime_checkable
class TrainableAgent(BatchAgent, Protocol):
    """An agent that learns: ``update`` takes a batch of experience, returns metrics."""

    def update(self, batch: Any) -> dict[str, float]: ...


def act_batch(agent: Agent, observations: Sequence[Any], infos: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Call ``agent.act_batch`` if it has one, else ``agent.act`` on each observation."""
    if len(observations) != len(infos):
        raise ValueError(f"{len(observations)} observations but {len(infos)} infos")
    batched = getattr(agent, "act_batch", None)
    if callable(batched):
        actions = list(batched(observations, infos))
        if len(actions) != len(observations):
            raise ValueError(
                f"{type(agent).__name__}.act_batch returned {len(actions)} actions for "
                f"{len(observations)} observations"
            )
        return actions
    return [agent.act(o, i) for o, i in zip(observations, infos)]
