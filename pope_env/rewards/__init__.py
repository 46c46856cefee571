"""Reward functions: pure functions over (completion, problem), usable outside the envs and
as TRL ``reward_funcs``."""
