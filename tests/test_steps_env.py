"""The step-level math env: MDP structure, roll-ins from any state, agreement with one-shot."""

from __future__ import annotations

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import pope_env  # noqa: F401
from pope_env.envs.math import MathEnv
from pope_env.envs.steps import MathStepsEnv
from pope_env.errors import ConfigError, EnvStateError, InvalidActionError, UnknownNameError
from pope_env.guidance import guided_text, prefix_cap

STEP_IDS = ["POPE-Math-Steps-v0", "POPE-Math-Steps-Hard-v0", "POPE-Math-Steps-Guided-v0"]


@pytest.mark.parametrize("env_id", STEP_IDS)
def test_env_checker(env_id):
    env = gym.make(env_id, limit=20)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_envs(mode):
    envs = gym.make_vec("POPE-Math-Steps-Hard-v0", num_envs=2, vectorization_mode=mode, limit=10)
    obs, _ = envs.reset(seed=0)
    assert all(isinstance(o, str) and "Problem" in o for o in obs)
    obs, rewards, terminated, truncated, infos = envs.step(["Let x = 2.", "So the answer is \\boxed{3}."])
    assert list(terminated) == [False, True]
    assert list(infos["agent_steps"]) == [1, 1]
    envs.close()


def test_step_by_step_reward_equals_one_shot_reward():
    problems = MathStepsEnv("math500", limit=40).problems
    steps_env, one_shot = MathStepsEnv(problems=problems), MathEnv(problems=problems)
    for problem in problems:
        # the oracle solution written one step per action, and in one action
        steps_env.reset(options={"problem_id": problem.id, "guided": False})
        actions = list(problem.steps)
        last = max(i for i, s in enumerate(actions) if "\\boxed" in s)
        for i, step in enumerate(actions[: last + 1]):
            _, reward, terminated, truncated, info = steps_env.step(step)
            assert terminated == (i == last) and not truncated
        one_shot.reset(options={"problem_id": problem.id})
        _, one_shot_reward, *_ = one_shot.step(steps_env.solution_so_far)
        assert reward == one_shot_reward == 1.0, problem.id
        # and a wrong final step scores 0 in both
        steps_env.reset(options={"problem_id": problem.id, "guided": False})
        _, reward, terminated, *_ = steps_env.step(f"So the answer is \\boxed{{{problem.answer}+1}}.")
        one_shot.reset(options={"problem_id": problem.id})
        _, one_shot_reward, *_ = one_shot.step(f"So the answer is \\boxed{{{problem.answer}+1}}.")
        assert terminated and reward == one_shot_reward == 0.0


def test_oracle_prefix_roll_in_matches_the_guided_prompt():
    env = MathStepsEnv("math-train-l5", limit=30)
    for problem in env.problems:
        for i in range(0, min(prefix_cap(problem), 3) + 1):
            obs, info = env.reset(options={"problem_id": problem.id, "prefix_len": i})
            assert obs == guided_text(problem, i)
            assert info["prefix_len"] == i and info["state_steps"] == i


def test_roll_in_from_any_state_and_append():
    env = MathStepsEnv("math500", limit=5)
    pid = env.problems[0].id
    obs, info = env.reset(options={"problem_id": pid, "state": ["First I guess 17.", "Then 18."]})
    assert "First I guess 17." in obs and info["state_steps"] == 2 and info["prefix_len"] == 0
    obs, reward, terminated, truncated, info = env.step("Next, 19.")
    assert "Next, 19." in obs and reward == 0.0 and not terminated and info["state_steps"] == 3


def test_truncation_and_bad_input():
    env = MathStepsEnv("math500", limit=5, max_steps=3, max_step_chars=1000)
    with pytest.raises(EnvStateError, match="before reset"):
        env.step("x")
    pid = env.problems[0].id
    env.reset(options={"problem_id": pid})
    for i in range(3):
        _, reward, terminated, truncated, info = env.step("" if i == 0 else "more thinking")
    assert truncated and not terminated and reward == 0.0  # step budget (an empty step counts)
    with pytest.raises(EnvStateError, match="ended"):
        env.step("x")
    env.reset(options={"problem_id": pid})
    _, reward, terminated, truncated, info = env.step("x" * (1 << 20))  # a 1 MB step: invalid, ends the episode
    assert terminated and not truncated and reward == 0.0 and "at most 1000" in info["invalid_action"]
    env.reset(options={"problem_id": pid})
    with pytest.raises(InvalidActionError, match="str"):  # a non-string action is a caller's bug
        env.step(None)
    with pytest.raises(UnknownNameError):
        env.reset(options={"problem_id": "nope", "state": ["a"]})
    with pytest.raises(ConfigError, match="out of range"):
        env.reset(options={"problem_id": pid, "prefix_len": 999})
    with pytest.raises(ConfigError, match="list of step strings"):
        env.reset(options={"problem_id": pid, "state": "not a list"})
    with pytest.raises(ConfigError, match="boxed"):
        env.reset(options={"problem_id": pid, "state": ["done: \\boxed{1}"]})
