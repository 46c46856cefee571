"""SWE environments: fix a real repository's issue with shell commands in a sandbox.

``POPE-SWE-v0`` (unguided), ``POPE-SWE-Guided-v0`` (POPE roll-in: the expert's first i
actions already replayed) and ``SRL-SWE-v0`` (step-wise imitation of the expert with the SRL
similarity reward) are all :class:`SWEEnv` with a different ``mode``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym

from pope_env.errors import ConfigError, EnvStateError, UnknownNameError
from pope_env.rewards.similarity import step_similarity
from pope_env.sandbox.base import ExecResult, Sandbox, SandboxLimits
from pope_env.spaces import UnicodeText, check_text_action
from pope_env.swe.task import SWETask, expert_commands
from pope_env.swe.trajectories import SUBMIT

MODES = ("unguided", "guided", "srl")
"""The SWE env's roll-ins (not the math envs' :data:`pope_env.rollin.MODES`: SWE has an SRL
mode and no POPE mix)."""


def format_step(command: str, result: ExecResult) -> str:
    """One executed command and its (possibly truncated) output, as the agent reads it."""
    return f"$ {command}\n[exit code {result.exit_code}]\n{result.output}".rstrip() + "\n"


class SWEEnv(gym.Env[str, str]):
    """Fix an issue in a real repository by running shell commands in a sandbox.

    ## Description
    Each episode is one SWE-bench-format task: a repository at ``base_commit`` inside a
    fresh sandbox (Docker, or bubblewrap without an engine) and an issue report. The agent
    runs one shell command per step in the repository root (as a non-root user, without
    network) and ends by submitting; the work tree's ``git diff`` is the patch, graded the
    SWE-bench way (:func:`pope_env.swe.grading.grade_patch`).

    In ``mode="guided"`` (POPE) the roll-in replays the expert's first ``i`` commands in the
    sandbox before the agent acts, so the episode starts from a privileged state the expert
    reached. In ``mode="srl"`` (supervised RL) the agent predicts the expert's next command
    at every step: its command is scored against the expert's, and the *expert's* command is
    the one executed (teacher forcing).

    ## Action Space
    :class:`~pope_env.spaces.UnicodeText`: one shell command (``bash -c``; may span lines),
    or ``"submit"`` to hand in the work tree's diff.

    ## Invalid Actions
    The rule of every pope-env env (docs/architecture.md, "Invalid actions"): a non-``str``
    action raises :class:`~pope_env.errors.InvalidActionError` and changes nothing. A
    ``str`` that cannot be a command (longer than the action space allows, or holding a NUL
    character, which no program argument can carry) ends the episode (terminated) with
    reward ``invalid_action_reward`` (0.0), without running or grading anything, and
    ``info["invalid_action"]`` naming the reason. A command that merely fails is valid: its
    exit code and output are the observation.

    ## Observation Space
    :class:`~pope_env.spaces.UnicodeText`: the issue text, then (guided/srl) the expert's
    commands so far with their outputs, then the last command and its output with its exit
    code. Output past ``limits.output_bytes`` bytes is cut, and the observation says how many
    bytes were cut; a command killed at its time limit says so.

    ## Rewards
    * unguided / guided: ``0`` per step; on ``submit`` (or at the step limit) ``1.0`` if the
      patch resolves the task (every FAIL_TO_PASS and PASS_TO_PASS test passes in a fresh
      sandbox, SWE-bench's ``RESOLVED_FULL``), else ``0.0``. ``info["grade"]`` says why.
    * srl: at step ``k``, ``step_similarity(action, expert_command[k])`` in ``[0, 1]``
      (``difflib.SequenceMatcher`` ratio, the SRL reward).

    ## Starting State
    A new sandbox at the task's base commit. Tasks are drawn with ``self.np_random`` or
    chosen with ``reset(options={"instance_id": ...})``. Guided: the expert's first
    ``prefix_len`` commands have run (``options["prefix_len"]``; default half the expert's
    commands before ``submit``, at least 1). SRL: ``options["step"]`` expert commands have
    run (default 0).

    ## Episode End
    Terminated on ``submit`` (unguided/guided), after the expert's last command (srl), or
    on an invalid action. Truncated when ``max_steps`` agent commands have run;
    unguided/guided then grade the work tree as if submitted.

    ## Info
    ``reset``: ``instance_id``, ``guided``, ``prefix_len``, ``episode_start = True``.
    ``step``: ``instance_id``, ``step`` (agent commands so far), ``episode_start = False``
    and ``output``: what this step added to the observation, i.e. the command with its
    exit code and output (the expert's command in srl mode), or the verdict when the
    episode ends (graded or invalid). An
    agent that keeps its own conversation appends ``output`` instead of parsing the
    observation. Also ``exit_code``, ``timed_out``, ``truncated_bytes`` after a command;
    ``patch``, ``resolved``, ``grade``, ``submitted`` after grading; ``expert_step``,
    ``similarity`` in srl mode; ``invalid_action`` after an invalid action.

    ## Arguments
    * ``tasks``: SWE-bench-format records (dicts, ``SWEInstance``, :class:`SWETask`) or a
      source name for ``pope_env.swe.load_tasks`` (default ``"local"``).
    * ``mode``: ``"unguided"``, ``"guided"`` or ``"srl"``.
    * ``trajectories``: instance id -> expert steps (needed by guided/srl; default: the
      stored expert trajectories of the local set).
    * ``max_steps``: agent commands per episode (default 30).
    * ``command_timeout_s``: time limit of one command (default 60).
    * ``limits``: :class:`~pope_env.sandbox.base.SandboxLimits` (memory, cpus, pids, output bytes).
    * ``backend``: ``"auto"`` (Docker when an engine answers), ``"docker"`` or ``"bwrap"``.
    * ``grade_timeout_s``: time limit of the test run at grading (default 900).
    * ``sandbox_factory``: ``task -> Sandbox`` replacing the default start.

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": ["ansi"]}
    invalid_action_reward = 0.0

    def __init__(
        self,
        tasks: str | Sequence[Any] = "local",
        *,
        mode: str = "unguided",
        trajectories: Mapping[str, Sequence[Any]] | None = None,
        max_steps: int = 30,
        command_timeout_s: float = 60.0,
        limits: SandboxLimits = SandboxLimits(),
        backend: str = "auto",
        grade_timeout_s: float = 900.0,
        sandbox_factory: Callable[[SWETask], Sandbox] | None = None,
        render_mode: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise UnknownNameError("SWE env mode", mode, MODES)
        if max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {max_steps}")
        if isinstance(tasks, str):
            from pope_env.swe import load_tasks

            tasks = load_tasks(tasks)
        self.tasks = [SWETask.from_record(t) for t in tasks]
        if not self.tasks:
            raise ConfigError("SWEEnv needs at least one task")
        self._by_id = {t.instance_id: t for t in self.tasks}
        self.mode = mode
        if mode != "unguided" and trajectories is None:
            from pope_env.swe import load_expert_commands

            trajectories = load_expert_commands([t.instance_id for t in self.tasks])
        self.trajectories = {k: expert_commands(v) for k, v in (trajectories or {}).items()}
        if mode != "unguided":
            missing = [t.instance_id for t in self.tasks if not self.trajectories.get(t.instance_id)]
            if missing:
                raise ConfigError(f"mode {mode!r} needs an expert trajectory for every task; none for "
                                  f"{', '.join(missing[:5])}")
        self.max_steps = max_steps
        self.command_timeout_s = command_timeout_s
        self.limits = limits
        self.backend = backend
        self.grade_timeout_s = grade_timeout_s
        self._factory = sandbox_factory or (lambda t: t.start_sandbox(backend=self.backend, limits=self.limits))
        self.render_mode = render_mode
        self.observation_space = UnicodeText()
        self.action_space = UnicodeText()
        self.sandbox: Sandbox | None = None
        self.task: SWETask | None = None
        self._history: list[str] = []
        self._last = ""
        self._steps = 0
        self._k = 0
        self._done = True

    # --- gymnasium API ----------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        iid = options.get("instance_id")
        if iid is None:
            self.task = self.tasks[int(self.np_random.integers(len(self.tasks)))]
        elif iid in self._by_id:
            self.task = self._by_id[iid]
        else:
            raise UnknownNameError("instance id", iid, list(self._by_id))
        self._close_sandbox()
        self.sandbox = self._factory(self.task)
        self._history, self._last, self._steps, self._k, self._done = [], "", 0, 0, False
        info: dict[str, Any] = {"instance_id": self.task.instance_id, "guided": self.mode == "guided", "prefix_len": 0,
                                "episode_start": True}
        if self.mode != "unguided":
            expert = self._expert_actions()
            if self.mode == "guided":
                n = int(options.get("prefix_len", max(1, len(expert) // 2)))
            else:
                n = int(options.get("step", 0))
            upper = len(expert) - 1
            if not 0 <= n <= max(upper, 0):
                raise ConfigError(f"{'prefix_len' if self.mode == 'guided' else 'step'} must be in [0, {upper}] "
                                  f"for {self.task.instance_id} ({len(expert)} expert commands), got {n}")
            for command in expert[:n]:
                self._run_expert(command)
            self._k = n
            info["prefix_len"] = n
        return self._observation(), info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._done or self.sandbox is None or self.task is None:
            raise EnvStateError("step() called before reset() or after the episode ended; call reset()")
        invalid = check_text_action(action, self.action_space)
        if invalid is None and "\x00" in action:
            invalid = "the command holds a NUL character, which no program argument can carry"
        self._steps += 1
        info: dict[str, Any] = {"instance_id": self.task.instance_id, "step": self._steps, "episode_start": False}
        if invalid is not None:
            self._done = True
            self._close_sandbox()
            self._last = f"Invalid action: {invalid}. The episode ended without grading."
            info.update(invalid_action=invalid, output=self._last)
            return self._observation(), self.invalid_action_reward, True, False, info
        if self.mode == "srl":
            return self._srl_step(action, info)
        if action.strip() == SUBMIT:
            return self._finish(info, truncated=False)
        result = self.sandbox.exec(action, timeout=self.command_timeout_s)
        self._last = format_step(action, result)
        info.update(exit_code=result.exit_code, timed_out=result.timed_out, truncated_bytes=result.truncated_bytes,
                    output=self._last)
        if self._steps >= self.max_steps:
            obs, reward, _, _, info = self._finish(info, truncated=True)
            return obs, reward, False, True, info
        return self._observation(), 0.0, False, False, info

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self._observation()
        return None

    def close(self) -> None:
        self._close_sandbox()
        super().close()

    # --- internals --------------------------------------------------------------------

    def _expert_actions(self) -> list[str]:
        return [c for c in self.trajectories[self.task.instance_id]]

    def _run_expert(self, command: str) -> None:
        if command.strip() == SUBMIT:
            self._history.append(f"$ {SUBMIT}\n")
            return
        result = self.sandbox.exec(command, timeout=self.command_timeout_s)
        self._history.append(format_step(command, result))

    def _srl_step(self, action: str, info: dict[str, Any]):
        expert = self._expert_actions()
        target = expert[self._k]
        reward = float(step_similarity(action.strip(), target.strip()))
        self._run_expert(target)
        self._k += 1
        terminated = self._k >= len(expert)
        truncated = not terminated and self._steps >= self.max_steps
        self._done = terminated or truncated
        info.update(expert_step=self._k - 1, similarity=reward, output=self._history[-1])
        return self._observation(), reward, terminated, truncated, info

    def _finish(self, info: dict[str, Any], *, truncated: bool):
        from pope_env.swe.grading import grade_patch

        patch = self.sandbox.diff()
        grade = grade_patch(self.task, patch, sandbox_factory=self._factory, timeout_s=self.grade_timeout_s)
        self._done = True
        self._close_sandbox()
        info.update(patch=patch, resolved=grade.resolved, grade=grade.to_dict(with_log=True), submitted=not truncated)
        verdict = (f"Submitted. {grade.status}: {grade.reason}" if not truncated
                   else f"Step limit reached; the work tree was graded. {grade.status}: {grade.reason}")
        self._last = info["output"] = verdict
        return self._observation(), grade.reward, not truncated, truncated, info

    def _observation(self) -> str:
        parts = [f"<issue>\n{self.task.problem_statement.strip()}\n</issue>"]
        if self._history:
            parts.append("<expert_steps>\n" + "\n".join(self._history) + "</expert_steps>")
        if self._last:
            parts.append(f"<last_command>\n{self._last}</last_command>"
                         if not self._last.startswith(("Submitted", "Step limit", "Invalid action")) else self._last)
        return "\n\n".join(parts) + "\n"

    def _close_sandbox(self) -> None:
        if self.sandbox is not None:
            sandbox, self.sandbox = self.sandbox, None
            sandbox.close()

    def __del__(self) -> None:  # sandboxes have their own finalizers; this only speeds cleanup
        try:
            self._close_sandbox()
        except Exception:
            pass
