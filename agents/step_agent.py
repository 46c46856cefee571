"""An LLM agent that writes one reasoning step per action, for step-wise envs.

:class:`StepPolicyAgent` wraps any :class:`~pope_env.agents.policy.Policy` (HF, vLLM,
OpenAI-compatible) and stops each generation at a step boundary, a configurable stop string
(a blank line by default), so one policy call is one env action. The boundary the policy
stopped at is put back at the end of the returned step, so the concatenation of the steps is
the same text the policy would have written in one go; a step that ends with EOS or the
token budget is returned as is.

The prompt is ``info["messages"]`` when the env provides chat messages, else the observation
text. Step-wise envs pass the steps written so far as a final, partial assistant message;
the policies continue that message instead of opening a new turn (see
:func:`~pope_env.agents.hf_policy.render_prompt`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from pope_env.agents.policy import Generation, Policy, PolicyAgent, SamplingParams
from pope_env.errors import ConfigError

DEFAULT_STEP_SEPARATOR = "\n\n"


class StepPolicyAgent:
    """One reasoning step per action: sample until a step boundary.

    Args:
        policy: Any policy.
        sampling: Sampling settings; ``max_new_tokens`` is the budget of one step. Its own
            ``stop`` strings (e.g. an end-of-answer marker) are kept and end a step too, but
            are not put back.
        separator: The step boundary (stop string) put back at the end of each step.

    Attributes:
        last_generations: The :class:`Generation` behind each action of the last call (token
            ids and log-probs for training); ``finish_reason == "length"`` marks a step cut by
            the token budget.
    """

    def __init__(
        self,
        policy: Policy,
        sampling: SamplingParams = SamplingParams(max_new_tokens=256),
        *,
        separator: str = DEFAULT_STEP_SEPARATOR,
    ) -> None:
        if not isinstance(separator, str) or not separator:
            raise ConfigError(f"the step separator must be a non-empty string, got {separator!r}")
        self.policy = policy
        self.separator = separator
        self.sampling = replace(sampling, stop=(separator,) + tuple(s for s in sampling.stop if s != separator))
        self.last_generations: list[Generation] = []

    def act(self, observation: Any, info: Mapping[str, Any]) -> str:
        return self.act_batch([observation], [info])[0]

    def act_batch(self, observations: Sequence[Any], infos: Sequence[Mapping[str, Any]]) -> list[str]:
        prompts = [PolicyAgent.prompt_of(o, i) for o, i in zip(observations, infos)]
        generations = [group[0] for group in self.policy.generate(prompts, n=1, sampling=self.sampling)]
        self.last_generations = generations
        return [self.step_text(g) for g in generations]

    def step_text(self, generation: Generation) -> str:
        """The step as the env should append it: the text plus the separator it stopped at."""
        if generation.finish_reason == "stop" and self._stopped_at_separator(generation):
            return generation.text + self.separator
        return generation.text

    def _stopped_at_separator(self, generation: Generation) -> bool:
        # HF and vLLM policies (and vLLM servers) report the matched stop string as
        # extra["stop_reason"]; it is None when EOS ended the generation.
        extra = generation.extra or {}
        return extra.get("stop_reason") == self.separator
