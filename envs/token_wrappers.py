"""Views of :class:`~pope_env.envs.token.TokenEnv`: the same dynamics and reward as text.

The token env is the one implementation of the MDP. Classic agents use it as is (token ids
in, token ids out, with action masks). These wrappers only translate:

* :class:`TextObservation`: observations become the prompt text (instruction, problem,
  solution so far); actions stay token ids and masks still work. For inspecting what a
  classic agent sees, or for scoring single-token choices with a language model.
* :class:`TextActions`: text in, text out, for LLM agents
  (:class:`~pope_env.agents.policy.PolicyAgent`): an action is a chunk of solution text,
  tokenized and fed to the token env token by token until the chunk ends or the episode
  does; the rewards of those tokens are summed (only the last can be non-zero).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from pope_env.envs.token import TokenEnv, tokenize
from pope_env.errors import ConfigError, DataFormatError, EnvStateError
from pope_env.guidance import DEFAULT_CONFIG, GuidanceConfig, state_messages, state_text
from pope_env.spaces import UnicodeText, check_text_action


def _token_env(env: gym.Env) -> TokenEnv:
    base = env.unwrapped
    if not isinstance(base, TokenEnv):
        raise ConfigError(f"this wrapper needs a TokenEnv (POPE-Token-*), got {type(base).__name__}")
    return base


def state_prompt(env: TokenEnv, config: GuidanceConfig = DEFAULT_CONFIG) -> tuple[str, list[dict[str, str]]]:
    """The text and chat-message prompt of the token env's current state."""
    problem, partial = env.problem, env.solution_text()
    assert problem is not None
    return state_text(problem, partial, config), state_messages(problem, partial, config)


class TextObservation(gym.ObservationWrapper):
    """Observation = the state as prompt text (``UnicodeText``); actions stay token ids.

    ``info["messages"]`` (on reset) holds the chat form. :meth:`action_masks` is the token
    env's, so ``MaskablePPO``-style agents keep working on the ids. Invalid actions follow
    the token env's rule unchanged (see :class:`~pope_env.envs.token.TokenEnv`).
    """

    def __init__(self, env: gym.Env, config: GuidanceConfig = DEFAULT_CONFIG) -> None:
        super().__init__(env)
        self.token_env = _token_env(env)
        self.config = config
        self.observation_space = UnicodeText()

    def observation(self, observation: np.ndarray) -> str:
        return state_prompt(self.token_env, self.config)[0]

    def reset(self, **kwargs: Any) -> tuple[str, dict[str, Any]]:
        obs, info = super().reset(**kwargs)
        info["messages"] = state_prompt(self.token_env, self.config)[1]
        return obs, info

    def action_masks(self) -> np.ndarray:
        return self.token_env.action_masks()


class TextActions(gym.Wrapper):
    """Text observations and text actions over the token env, for LLM agents.

    ## Action Space
    ``UnicodeText(max_action_chars)``: a chunk of solution text over the token vocabulary
    (digits, ``+ - *``, newline, ``\\boxed{``, ``}``). It is tokenized and stepped token by
    token. Tokens after the episode's end are ignored.

    ## Invalid Actions
    The rule of every pope-env env (docs/architecture.md, "Invalid actions"): a non-``str``
    action raises :class:`~pope_env.errors.InvalidActionError` and changes nothing. A
    well-typed invalid chunk ends the episode (terminated) with the token env's
    ``invalid_action_reward`` and ``info["invalid_action"]`` naming the reason: a
    grammar-invalid (masked) token inside the chunk, or, without touching the token env,
    an empty chunk, one longer than ``max_action_chars`` or one with a character outside
    the vocabulary.

    ## Observation Space
    ``UnicodeText``: the prompt (instruction, problem, solution so far) of
    :mod:`pope_env.guidance`; ``info["messages"]`` holds the chat form.

    ## Rewards
    The sum of the token env's rewards over the chunk's tokens: exactly the token env's
    episode reward.
    """

    def __init__(self, env: gym.Env, config: GuidanceConfig = DEFAULT_CONFIG,
                 max_action_chars: int = 4096) -> None:
        super().__init__(env)
        self.token_env = _token_env(env)
        self.config = config
        self.observation_space = UnicodeText()
        self.action_space = UnicodeText(max_action_chars)
        self._done = True

    def _observe(self, info: dict[str, Any]) -> str:
        text, messages = state_prompt(self.token_env, self.config)
        info["messages"] = messages
        return text

    def reset(self, *, seed: int | None = None,
              options: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        _, info = self.env.reset(seed=seed, options=options)
        self._done = False
        return self._observe(info), info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise EnvStateError("the episode has ended (or was never started); call env.reset()")
        reason = check_text_action(action, self.action_space)
        if reason is None and not action:
            reason = "empty action"
        elif reason is None:
            try:
                tokens = tokenize(action)
            except DataFormatError as exc:
                reason = str(exc)
        if reason is not None:
            self._done = True
            problem = self.token_env.problem
            info = {"problem_id": problem.id if problem else None, "correct": False,
                    "invalid_action": reason}
            return self._observe(info), self.token_env.invalid_action_reward, True, False, info
        total, terminated, truncated, info = 0.0, False, False, {}
        for token in tokens:
            _, reward, terminated, truncated, info = self.env.step(token)
            total += float(reward)
            if terminated or truncated:
                self._done = True
                break
        return self._observe(info), total, terminated, truncated, info


def make_text_env(**kwargs: Any) -> TextActions:
    """A text-in/text-out token env (entry point of ``POPE-Token-Text-v0``)."""
    return TextActions(TokenEnv(**kwargs))
