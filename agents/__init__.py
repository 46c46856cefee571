"""Agents that act in pope-env envs: the protocol, simple agents, LLM policies, trainers.

Imported as ``pope_env.agents``. Heavy modules (torch, transformers, vllm) are imported
only by the submodules that need them.
"""

from pope_env.agents.base import Agent, BatchAgent, TrainableAgent

__all__ = ["Agent", "BatchAgent", "TrainableAgent"]
