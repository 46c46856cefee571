"""SWE agents: an LLM loop in the style of mini-swe-agent, and the oracle that replays the expert.

:class:`SWEAgent` turns any :class:`~pope_env.agents.policy.Policy` (HF, vLLM,
OpenAI-compatible, ...) into an agent for ``POPE-SWE-v0``: each turn the model writes its
reasoning and exactly one fenced ```` ```bash ```` block; the block's command is the action.
A reply without exactly one block gets a format error message and another try (not an env
step). :func:`run_episode` is the whole loop: reset, act, step until the episode ends.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pope_env.agents.policy import Policy, SamplingParams
from pope_env.swe.trajectories import SUBMIT
SYSTEM_PROMPT = """You are a software engineer fixing an issue in the repository in your current \
directory. Each turn, think briefly, then give exactly ONE shell command in ONE fenced block:

```bash
grep -rn "def parse" src/
```

The command runs with bash in the repository root, without network, and you see its output. \
Edit files with sed, python3 or a heredoc (cat <<'EOF' > file). When the issue is fixed, \
reply with the command `submit` in the bash block; your changes (git diff) are graded by the \
project's tests."""
FORMAT_ERROR = ("Your reply must contain exactly one ```bash block with one command (found {n}). "
                "Reply again with your reasoning and exactly one ```bash block; use `submit` when done.")
_BLOCK = re.compile(r"```(?:bash|sh|shell)[ \t]*\n(.*?)```", re.S)


class FormatError(ValueError):
    """The model's reply does not hold exactly one bash block."""


def parse_action(text: str) -> str:
    """The command of the single ```bash block in ``text``; :class:`FormatError` otherwise."""
    blocks = _BLOCK.findall(text)
    if len(blocks) != 1 or not blocks[0].strip():
        raise FormatError(FORMAT_ERROR.format(n=len(blocks)))
    return blocks[0].strip()


def _episode_start(info: Mapping[str, Any]) -> bool:
    """``info["episode_start"]`` of a SWE env, or a :class:`ConfigError` naming the env contract."""
    if "episode_start" not in info:
        from pope_env.errors import ConfigError

        raise ConfigError("info has no 'episode_start'; SWE agents act in pope_env.envs.swe.SWEEnv, whose reset "
                          "and step infos carry it (and 'output' after a step)")
    return bool(info["episode_start"])


class SWEAgent:
    """An LLM agent for the SWE envs: one policy call per turn, one bash block per reply.

    The agent keeps the conversation of the current episode. It reads the env's ``info``
    (see :class:`~pope_env.envs.swe.SWEEnv`, "Info"): ``info["episode_start"]`` (true after
    ``reset``) starts a new conversation from the observation, and after a step it sends
    only ``info["output"]``, the command's exit code and output.

    Args:
        policy: Any policy (``generate(prompts, n, sampling)``) that accepts chat messages.
        sampling: How to sample (default: temperature 0, 1024 new tokens).
        system_prompt: The instructions.
        max_format_errors: Retries after a malformed reply; then the agent submits.
    """

    def __init__(self, policy: Policy, sampling: SamplingParams = SamplingParams(temperature=0.0, max_new_tokens=1024),
                 *, system_prompt: str = SYSTEM_PROMPT, max_format_errors: int = 3) -> None:
        self.policy = policy
        self.sampling = sampling
        self.system_prompt = system_prompt
        self.max_format_errors = max_format_errors
        self.messages: list[dict[str, str]] = []
        self.name = getattr(policy, "name", type(policy).__name__)

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        if _episode_start(info):
            self.messages = [{"role": "system", "content": self.system_prompt},
                             {"role": "user", "content": observation}]
        else:  # the issue was shown already; send only what is new
            self.messages.append({"role": "user", "content": str(info["output"]).strip()})
        for _ in range(self.max_format_errors + 1):
            reply = self.policy.generate([list(self.messages)], n=1, sampling=self.sampling)[0][0].text
            self.messages.append({"role": "assistant", "content": reply})
            try:
                return parse_action(reply)
            except FormatError as exc:
                self.messages.append({"role": "user", "content": str(exc)})
        return SUBMIT


class OracleAgent:
    """Replays the expert's commands for the current instance (``info["instance_id"]``).

    Args:
        trajectories: Instance id -> expert commands (or steps with ``command``), ending
            with ``submit``; default: the stored expert trajectories of the local set.
    """

    name = "oracle"

    def __init__(self, trajectories: Mapping[str, Sequence[Any]] | None = None) -> None:
        from pope_env.swe.task import expert_commands

        if trajectories is None:
            from pope_env.swe import load_expert_commands
            from pope_env.swe.trajectories import load_trajectories

            trajectories = load_expert_commands(list(load_trajectories()))
        self.trajectories = {k: expert_commands(v) for k, v in trajectories.items()}
        self._queue: list[str] = []

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        if _episode_start(info):
            iid = info.get("instance_id")
            if iid not in self.trajectories:
                from pope_env.errors import UnknownNameError

                raise UnknownNameError("expert trajectory", str(iid), list(self.trajectories))
            # a guided roll-in already ran the expert's first prefix_len commands
            self._queue = list(self.trajectories[iid][int(info.get("prefix_len", 0)):])
        return self._queue.pop(0) if self._queue else SUBMIT


@dataclass
class EpisodeRecord:
    """What happened in one episode: every action with its output, and the verdict."""

    instance_id: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    reward: float = 0.0
    resolved: bool = False
    patch: str = ""
    grade: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, str]] = field(default_factory=list)
    duration_s: float = 0.0


def run_episode(env: Any, agent: Any, *, instance_id: str | None = None, seed: int | None = None) -> EpisodeRecord:
    """Run one episode of ``agent`` in ``env`` (a SWE env) to the end; returns its record."""
    t0 = time.perf_counter()
    options = {"instance_id": instance_id} if instance_id is not None else None
    obs, info = env.reset(seed=seed, options=options)
    record = EpisodeRecord(instance_id=info["instance_id"])
    done = False
    while not done:
        action = agent.act(obs, info)
        obs, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        record.steps.append({"action": action, "observation": obs, "reward": reward,
                             **{k: info[k] for k in ("exit_code", "timed_out", "truncated_bytes") if k in info}})
        record.reward += float(reward)
    record.resolved = bool(info.get("resolved", False))
    record.patch = info.get("patch", "")
    record.grade = info.get("grade", {})
    record.messages = list(getattr(agent, "messages", []))
    record.duration_s = time.perf_counter() - t0
    return record
