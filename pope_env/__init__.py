"""pope-env: Gymnasium MDPs for LLM reasoning on hard problems.

``import pope_env`` registers every env id (``POPE-Math-v0``, ``POPE-Math-Hard-v0``, ...)
with Gymnasium and imports nothing heavy (no torch, no transformers)::

    import gymnasium as gym
    import pope_env

    env = gym.make("POPE-Math-Hard-v0")
    obs, info = env.reset(seed=0)
"""

from __future__ import annotations

from pope_env.errors import PopeEnvError
from pope_env.problem import Problem
from pope_env.registration import env_ids, register_all

__version__ = "0.1.0"
__all__ = ["PopeEnvError", "Problem", "env_ids", "__version__"]

register_all()
