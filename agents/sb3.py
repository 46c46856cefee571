"""sb3-contrib ``MaskablePPO`` on the token env, and a Policy adapter for the prefix search.

Train in a few lines::

    from pope_env.agents.sb3 import make_maskable_ppo, success_rate
    model = make_maskable_ppo("POPE-Token-v0", seed=0)
    model.learn(20_000)
    success_rate(model, "POPE-Token-v0", episodes=200)

:class:`MaskablePolicy` makes a trained (or untrained) model a
:class:`~pope_env.agents.policy.Policy`, so :func:`pope_env.prefix_search.run_prefix_search`
can find ``i*`` with the classic agent as the policy; ``POPE-Token-Hard-v0`` then reads the
guidance file. Needs the ``[sb3]`` extra (``pip install pope-env[sb3]``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from pope_env.agents.policy import Generation, Prompt, SamplingParams
from pope_env.errors import ConfigError, require
from pope_env.guidance import DEFAULT_CONFIG, GuidanceConfig
from pope_env.problem import Problem

require("sb3_contrib", "sb3")
from sb3_contrib import MaskablePPO  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402

__all__ = ["make_maskable_ppo", "success_rate", "SuccessCurve", "MaskablePolicy", "exact_scorer"]

#: Defaults that learn the easy level in about 10k steps on one core (episodes are short and
#: the reward is terminal, so no discounting).
PPO_DEFAULTS: dict[str, Any] = {
    "n_steps": 256,
    "batch_size": 128,
    "n_epochs": 4,
    "learning_rate": 1e-3,
    "gamma": 1.0,
    "gae_lambda": 0.95,
    "ent_coef": 0.0,
    "policy_kwargs": {"net_arch": [128, 128]},
}


def _as_env(env: gym.Env | str, env_kwargs: Mapping[str, Any] | None = None) -> gym.Env:
    if isinstance(env, str):
        import pope_env  # noqa: F401  (registers the ids)

        return gym.make(env, **dict(env_kwargs or {}))
    return env


def make_maskable_ppo(env: gym.Env | str, *, seed: int | None = 0,
                      env_kwargs: Mapping[str, Any] | None = None, verbose: int = 0,
                      torch_threads: int | None = 1, **ppo_kwargs: Any) -> Any:
    """A ``MaskablePPO`` (``MlpPolicy``) on ``env`` (an env or a registered id) with
    :data:`PPO_DEFAULTS` overridden by ``ppo_kwargs`` (e.g. ``ent_coef=0.1``).

    ``torch_threads`` sets torch's (process-wide) thread count: one thread is fastest for
    these small MLPs; ``None`` leaves it alone."""
    import torch

    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    kwargs = {**PPO_DEFAULTS, **ppo_kwargs}
    return MaskablePPO("MlpPolicy", _as_env(env, env_kwargs), seed=seed, verbose=verbose,
                       device="cpu", **kwargs)


def _token_env(env: gym.Env) -> Any:
    from pope_env.envs.token import TokenEnv

    base = env.unwrapped
    if not isinstance(base, TokenEnv):
        raise ConfigError(f"needs a TokenEnv (POPE-Token-*), got {type(base).__name__}")
    return base


def success_rate(model: Any, env: gym.Env | str, *, episodes: int = 200, seed: int = 12345,
                 options: Mapping[str, Any] | None = None, deterministic: bool = False,
                 env_kwargs: Mapping[str, Any] | None = None) -> float:
    """Fraction of ``episodes`` the model solves (reward 1) from resets with ``options``
    (default ``{"guided": False}``: unguided starts). Problems are drawn in seeded order, so
    two models are compared on the same problems. ``env`` is reseeded: give an evaluation
    env, not the one the model trains on."""
    base = _token_env(_as_env(env, env_kwargs))
    options = {"guided": False} if options is None else dict(options)
    solved = 0
    for episode in range(episodes):
        obs, _ = base.reset(seed=seed if episode == 0 else None, options=options)
        done = False
        while not done:
            action, _ = model.predict(obs, deterministic=deterministic, action_masks=base.action_masks())
            obs, reward, terminated, truncated, _ = base.step(int(action))
            done = terminated or truncated
        solved += reward == 1.0
    return solved / episodes


class SuccessCurve(BaseCallback):
    """An sb3 callback measuring unguided success every ``every`` env steps.

    ``points`` holds ``(timesteps, success_rate)`` pairs, the first at the start of training;
    each uses :func:`success_rate` on ``eval_env`` (seeded: the same problems each time).
    ``progress(timesteps, rate)`` is called after each measurement (e.g. to update a bar).
    """

    def __init__(self, eval_env: gym.Env, every: int = 2000, episodes: int = 200,
                 seed: int = 12345, progress: Callable[[int, float], None] | None = None) -> None:
        super().__init__()
        self.eval_env, self.every, self.episodes, self.seed = eval_env, every, episodes, seed
        self.progress = progress
        self.points: list[tuple[int, float]] = []
        self._next = 0

    def _measure(self) -> None:
        rate = success_rate(self.model, self.eval_env, episodes=self.episodes, seed=self.seed)
        self.points.append((self.num_timesteps, rate))
        if self.progress is not None:
            self.progress(self.num_timesteps, rate)

    def _on_training_start(self) -> None:
        self._next = self.num_timesteps
        self._measure()
        self._next += self.every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._measure()
            self._next += self.every
        return True


def exact_scorer(completions: Sequence[str], problem: Problem) -> list[bool]:
    """Prefix-search scorer for integer answers: the last ``\\boxed{n}`` equals the answer.
    Agrees with the math reward on the token env's integer answers (tested)."""
    out = []
    for text in completions:
        boxed = re.findall(r"\\boxed\{(\d+)\}", text)
        out.append(bool(boxed) and int(boxed[-1]) == int(problem.answer))
    return out


class MaskablePolicy:
    """A ``MaskablePPO`` model as a :class:`~pope_env.agents.policy.Policy` over the token env.

    ``generate`` reads the problem and the partial solution from a roll-in prompt of
    :mod:`pope_env.guidance` (text or chat messages), resets copies of ``env`` there (the
    partial solution must be an oracle prefix) and samples ``n`` completions token by token
    from the model's masked distribution, batched over the copies. ``temperature`` scales the
    logits (``0``: greedy); ``top_p`` keeps the smallest nucleus; sampling is seeded by
    ``sampling.seed``. ``Generation.text`` is the completion after the prompt's partial
    solution; ``logprobs`` are temperature-1 log-probs of the sampled tokens.

    Args:
        model: A ``MaskablePPO`` whose observation space is ``env``'s.
        env: The token env (or id) holding the problems searched.
        name: Recorded as the model in guidance files.
        config: The prompt wording used by the search (to find the partial solution).
    """

    def __init__(self, model: Any, env: gym.Env | str, *, name: str = "maskable-ppo",
                 config: GuidanceConfig = DEFAULT_CONFIG,
                 env_kwargs: Mapping[str, Any] | None = None) -> None:
        self.model = model
        self.env = _token_env(_as_env(env, env_kwargs))
        self.name = name
        self.config = config
        self._copies: list[Any] = []
        self._by_question = {tp.problem.question.strip(): tp for tp in self.env.problems}

    def _locate(self, prompt: Prompt) -> tuple[str, int]:
        text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
        head, _, partial = text.partition(f"\n{self.config.prefix_label}\n")
        question = head.split(f"{self.config.problem_label}\n", 1)[-1].strip()
        tp = self._by_question.get(question)
        if tp is None:
            raise ConfigError(f"no problem of the token env has the question {question[:80]!r}")
        from pope_env.envs.token import NEWLINE, tokenize

        ids = tokenize(partial.strip())
        if ids and len(ids) < len(tp.oracle) and tp.oracle[len(ids)] == NEWLINE:
            ids.append(NEWLINE)  # the prompt strips the last step's newline
        if ids != tp.oracle[: len(ids)].tolist() or len(ids) > tp.cap_tokens:
            raise ConfigError(f"the partial solution of {tp.problem.id!r} is not an oracle prefix")
        return tp.problem.id, len(ids)

    def generate(self, prompts: Sequence[Prompt], *, n: int = 1,
                 sampling: SamplingParams = SamplingParams()) -> list[list[Generation]]:
        import torch

        from pope_env.envs.token import detokenize

        if sampling.temperature < 0 or not 0 < sampling.top_p <= 1:
            raise ConfigError("temperature must be >= 0 and top_p in (0, 1]")
        rng = np.random.default_rng(sampling.seed)
        while len(self._copies) < n:
            self._copies.append(copy.deepcopy(self.env))
        out: list[list[Generation]] = []
        policy = self.model.policy
        for prompt in prompts:
            problem_id, prefix_len = self._locate(prompt)
            envs = self._copies[:n]
            obs = np.stack([e.reset(options={"problem_id": problem_id, "prefix_len": prefix_len})[0]
                            for e in envs])
            tokens: list[list[int]] = [[] for _ in envs]
            logps: list[list[float]] = [[] for _ in envs]
            finish = ["length"] * n
            live = list(range(n))
            budget = sampling.max_new_tokens
            while live and budget > 0:
                budget -= 1
                masks = np.stack([envs[j].action_masks() for j in live])
                with torch.no_grad():
                    obs_t, _ = policy.obs_to_tensor(obs[live])
                    dist = policy.get_distribution(obs_t, action_masks=masks)
                    logits = dist.distribution.logits.cpu().numpy()
                logp1 = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
                actions = [_sample(row, masks[r], sampling, rng) for r, row in enumerate(logp1)]
                still = []
                for r, j in enumerate(live):
                    a = actions[r]
                    obs[j], _, terminated, truncated, _ = envs[j].step(a)
                    tokens[j].append(a)
                    logps[j].append(float(logp1[r, a]))
                    if terminated:
                        finish[j] = "stop"
                    elif not truncated:
                        still.append(j)
                live = still
            out.append([Generation(text=detokenize(tokens[j]), token_ids=tuple(tokens[j]),
                                   logprobs=tuple(logps[j]), finish_reason=finish[j])
                        for j in range(n)])
        return out


def _sample(logp: np.ndarray, mask: np.ndarray, sampling: SamplingParams,
            rng: np.random.Generator) -> int:
    allowed = np.flatnonzero(mask)
    scores = logp[allowed]
    if sampling.temperature == 0:
        return int(allowed[int(np.argmax(scores))])
    p = np.exp((scores - scores.max()) / sampling.temperature)
    p /= p.sum()
    if sampling.top_p < 1:
        order = np.argsort(-p)
        keep = order[: int(np.searchsorted(np.cumsum(p[order]), sampling.top_p) + 1)]
        q = np.zeros_like(p)
        q[keep] = p[keep]
        p = q / q.sum()
    return int(allowed[rng.choice(len(allowed), p=p)])
