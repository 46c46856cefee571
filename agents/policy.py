"""The LLM policy contract shared by the HF, vLLM, OpenAI-compatible and tiny test policies.

A *policy* turns prompts into sampled completions with their token ids and log-probs; an
agent adapter (:class:`PolicyAgent`) makes any policy an :class:`~pope_env.agents.base.Agent`.
A *learner policy* also exposes the differentiable model so the GRPO trainer can recompute
log-probs and update it (:class:`LearnerPolicy`, whose log-probs come back as
:class:`TokenLogprobs`). Nothing here imports torch: the tensor types are annotations only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, Union, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import torch

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
    """Samples ``n`` completions for each prompt; returns one list of ``n`` per prompt.

    Optional capability, used when present (:func:`has_seeded_generate`):
    ``generate_seeded(prompts, *, n, sampling, seeds) -> list[list[Generation]]`` samples
    prompt ``j``'s ``n`` completions from its own random stream seeded ``seeds[j]``
    (``sampling.seed`` is ignored), so that what prompt ``j`` gets does not depend on the
    other prompts of the call. The i* search and the hard split
    (:class:`pope_env.probe.PrefixProbe`) then batch many problems' measurements into
    one call and still draw each measurement as the same random event it is alone. A policy
    without it keeps working: each measurement is then its own ``generate`` call with
    ``sampling.seed`` set. :class:`~pope_env.agents.charlm.CharLMPolicy`,
    :class:`~pope_env.agents.hf_policy.HFPolicy` and
    :class:`~pope_env.agents.vllm_policy.VLLMPolicy` implement it.
    """

    name: str

    def generate(
        self, prompts: Sequence[Prompt], *, n: int = 1, sampling: SamplingParams = SamplingParams()
    ) -> list[list[Generation]]: ...


def has_seeded_generate(policy: Any) -> bool:
    """Whether ``policy`` offers the optional ``generate_seeded`` capability of :class:`Policy`."""
    return callable(getattr(policy, "generate_seeded", None))


class TokenLogprobs(NamedTuple):
    """Per-token log-probs of completions, right-padded to the longest completion.

    Attributes:
        logprobs: ``[B, T]`` float tensor, ``log pi_theta(token)`` at the requested
            temperature (``log_softmax(logits / temperature)``; with gradients when computed
            with grad enabled); 0 at padded positions.
        mask: ``[B, T]`` tensor, 1 (or True) for real completion tokens, 0 for padding;
            float or bool.
        entropy: ``[B, T]`` per-token entropy of ``pi_theta`` at the same temperature (nats)
            when asked for, else ``None``.
    """

    logprobs: torch.Tensor
    mask: torch.Tensor
    entropy: torch.Tensor | None = None


@runtime_checkable
class LearnerPolicy(Policy, Protocol):
    """A policy the GRPO trainer can update.

    Besides ``generate`` (the :class:`~pope_env.agents.policy.Policy` contract), it exposes:

    * ``model``: the ``torch.nn.Module`` whose parameters are trained.
    * ``token_logprobs(prompt_ids, completion_ids, *, with_entropy=False, temperature=1.0,
      model=None)``: the per-token log-probs of each completion given its prompt, as
      :class:`TokenLogprobs`, on the model's device, differentiable, with the logits divided
      by ``temperature`` before the log-softmax, computed through ``model`` when given (the
      trainer passes the ``accelerate``-wrapped module, e.g. DDP, whose forward pass
      synchronises gradients) and through ``self.model`` otherwise. The trainer passes its
      sampling temperature; a learner without the ``temperature`` keyword can only train at
      temperature 1, and one without the ``model`` keyword only where the wrapped module is
      ``self.model`` itself (one process; :func:`learner_logprobs` says so).

    Optional, used when present: ``tokenize(prompts, completions) -> (prompt_ids,
    completion_ids)`` to turn oracle solutions into token ids for the ``sft-oracle`` method
    (an HF policy with a ``tokenizer`` attribute works without it).
    """

    model: torch.nn.Module

    def token_logprobs(self, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], *,
                       with_entropy: bool = False, temperature: float = 1.0,
                       model: torch.nn.Module | None = None) -> TokenLogprobs: ...


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
