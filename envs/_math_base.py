"""What the text math envs share: the roll-in, the verifier pool, the common arguments.

:class:`MathEnvBase` is the base of :class:`~pope_env.envs.math.MathEnv` (one whole answer
per episode) and :class:`~pope_env.envs.steps.MathStepsEnv` (one step per action). It holds
the problems and their roll-in (:class:`~pope_env.rollin.RollInSampler`: unguided, guided
at ``i*``, or the POPE mix), the prompt text settings (:class:`~pope_env.guidance.GuidanceConfig`),
and the math verifier with its wall-clock limit, shared process-wide per limit
(:func:`verifier_for`). Subclasses set the action space and write ``reset`` / ``step``.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from pope_env.errors import ConfigError, check_keywords
from pope_env.guidance import GuidanceConfig
from pope_env.problem import Problem
from pope_env.rewards.math import MathVerifier, default_verifier
from pope_env.rollin import RollInOptions, RollInSampler
from pope_env.spaces import UnicodeText

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

_verifiers: dict[float, MathVerifier] = {}
_verifiers_lock = threading.Lock()


def check_verify_timeout(timeout_s: Any) -> float:
    """``timeout_s`` as a float, or :class:`ConfigError` unless it is a number > 0."""
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ConfigError(f"verify_timeout_s must be a number of seconds > 0, got {timeout_s!r}")
    return float(timeout_s)


def verifier_for(timeout_s: float) -> MathVerifier:
    """The process-wide :class:`MathVerifier` whose per-item wall-clock limit is ``timeout_s``.

    The shared :func:`~pope_env.rewards.math.default_verifier` when its limit matches (5 s),
    else one pool per distinct limit, created on first use and closed at interpreter exit
    (each pool starts its own worker processes, one per CPU, so use few distinct limits).
    """
    timeout_s = check_verify_timeout(timeout_s)
    default = default_verifier()
    if default.timeout_s == timeout_s:
        return default
    with _verifiers_lock:
        verifier = _verifiers.get(timeout_s)
        if verifier is None:
            verifier = _verifiers[timeout_s] = MathVerifier(timeout_s=timeout_s)
            atexit.register(verifier.close)
        return verifier


class MathEnvOptions(RollInOptions, total=False):
    """The keywords every text math env takes (each optional, see :class:`MathEnvBase`)."""

    problems: Sequence[Problem] | None
    guidance: GuidanceConfig | None
    limit: int | None
    verify_timeout_s: float
    render_mode: str | None


class MathEnvBase(gym.Env[str, str]):
    """The shared state of the text math envs (see the module docstring).

    Args:
        dataset: A dataset name of :func:`pope_env.datasets.load_dataset`, or ``None`` with
            ``problems``.
        problems: An explicit list of problems (overrides ``dataset``).
        guidance: Prompt text settings.
        limit: Use only the first ``limit`` problems of the dataset.
        verify_timeout_s: Wall-clock limit of one verification (seconds, > 0).
        render_mode: ``None`` or ``"ansi"``.
        **rollin: The roll-in (:class:`~pope_env.rollin.RollInOptions`, defaults as
            :class:`~pope_env.rollin.RollInSampler`'s): ``mode`` (``"unguided"``,
            ``"guided"`` or ``"pope"``), ``guided_ratio`` (guided share of resets in
            ``"pope"`` mode, in ``[0, 1]``), ``prefix_fraction`` (prefix length as a fraction
            of the cap for problems without ``i*``), ``guidance_file`` (``i*`` per problem,
            from ``pope-env prefix-search``) and ``split_file`` (only the hard problems of a
            ``pope-env hard-split`` file).
    """

    metadata = {"render_modes": ["ansi"]}
    invalid_action_reward = 0.0

    def __init__(
        self,
        dataset: str | None = "math500",
        *,
        problems: Sequence[Problem] | None = None,
        guidance: GuidanceConfig | None = None,
        limit: int | None = None,
        verify_timeout_s: float = 5.0,
        render_mode: str | None = None,
        **rollin: Unpack[RollInOptions],
    ) -> None:
        check_keywords(type(self).__name__, rollin, MathEnvOptions)
        check_verify_timeout(verify_timeout_s)
        if render_mode not in (None, "ansi"):
            raise ConfigError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.rollin = RollInSampler.from_dataset(dataset, problems=problems, limit=limit, **rollin)
        self.problems: list[Problem] = self.rollin.problems
        self.dataset = dataset
        self.mode = self.rollin.mode
        self.guidance = guidance or GuidanceConfig()
        self.verify_timeout_s = verify_timeout_s
        self.render_mode = render_mode
        self.observation_space = UnicodeText()
        self._verifier: MathVerifier | None = None
        self._problem: Problem | None = None
        self._info: dict[str, Any] = {}
        self._done = True

    def _start_reset(self, seed: int | None) -> None:
        """``gym.Env.reset``'s seeding, and a seed restarts the roll-in order too."""
        super().reset(seed=seed)
        if seed is not None:
            self.rollin.seed(seed)

    @property
    def verifier(self) -> MathVerifier:
        """The math verifier: the process-wide one with the limit ``verify_timeout_s``."""
        if self._verifier is None:
            self._verifier = verifier_for(self.verify_timeout_s)
        return self._verifier

    def close(self) -> None:
        self._verifier = None
        super().close()
