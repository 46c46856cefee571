"""The LLM policy contract shared by the HF, vLLM, OpenAI-compatible and tiny test policies.

A *policy* turns prompts into sampled completions with their token ids and log-probs; an
agent adapter (:class:`PolicyAgent`) makes any policy an :class:`~pope_env.agents.base.Agent`.
A *learner policy* also exposes the differentiable model so the GRPO trainer can recompute
log-probs and update it. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Union, runtime_checkable

ChatMessages = list[dict[str, str]]
Prompt = Union[str, ChatMessages]
"""A prompt is plain text (used as is) or chat messages (rendered with the chat template)."""


@dataclass(frozen=True)
class SamplingParams:
    """How to sample.

    Attributes:
        temperature: Softmax temperature (> 0); ``0`` means greedy.
        top_p: Nucleus mass in (0, 1].
        max_new_tokens: Cap on generated tokens per completion.
        stop: Strings that end a completion; the stop string itself is not returned.
        seed: Seed for reproducible sampling (``None``: not seeded).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Generation:
    """One sampled completion.

    Attributes:
        text: The completion text (without the prompt, without a matched stop string).
        prompt_ids: Token ids of the rendered prompt.
        token_ids: Token ids of the completion as sampled (including EOS if sampled).
        logprobs: Per completion token, ``log p(token)`` under the policy at temperature 1
            (raw logits, no top-p), i.e. what the learner recomputes for importance ratios.
        finish_reason: ``"stop"`` (EOS or stop string) or ``"length"`` (hit ``max_new_tokens``).
    """

    text: str
    prompt_ids: tuple[int, ...] = ()
    token_ids: tuple[int, ...] = ()
    logprobs: tuple[float, ...] = ()
    finish_reason: str = "stop"
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Policy(Protocol):
    """Samples ``n`` completions for each prompt; returns one list of ``n`` per prompt."""

    name: str

    def generate(
        self, prompts: Sequence[Prompt], *, n: int = 1, sampling: SamplingParams = SamplingParams()
    ) -> list[list[Generation]]: ...


class PolicyAgent:
    """Adapts a :class:`Policy` to the agent protocol.

    The prompt is ``info["messages"]`` when the env provides chat messages, else the
    observation text. Each call samples one completion per observation.
    """

    def __init__(self, policy: Policy, sampling: SamplingParams = SamplingParams()) -> None:
        self.policy = policy
        self.sampling = sampling

    @staticmethod
    def prompt_of(observation: Any, info: Mapping[str, Any]) -> Prompt:
        messages = info.get("messages") if isinstance(info, Mapping) else None
        return list(messages) if messages else str(observation)

    def act(self, observation: Any, info: Mapping[str, Any]) -> str:
        return self.act_batch([observation], [info])[0]

    def act_batch(self, observations: Sequence[Any], infos: Sequence[Mapping[str, Any]]) -> list[str]:
        prompts = [self.prompt_of(o, i) for o, i in zip(observations, infos)]
        return [group[0].text for group in self.policy.generate(prompts, n=1, sampling=self.sampling)]
