"""The single-turn POPE-Math envs: API conformance, real verdicts, roll-ins, bad input."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import pope_env  # noqa: F401
from pope_env.agents.simple import OracleAgent
from pope_env.datasets import load_dataset
from pope_env.envs.math import MathEnv
from pope_env.errors import ConfigError, EnvStateError, InvalidActionError, UnknownNameError
from pope_env.steps import max_prefix_len

MATH_IDS = ["POPE-Math-v0", "POPE-Math-Hard-v0", "POPE-Math-Guided-v0", "POPE-Math-Eval-v0"]


@pytest.mark.parametrize("env_id", MATH_IDS)
def test_env_checker(env_id):
    env = gym.make(env_id, limit=20)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_envs(mode):
    envs = gym.make_vec("POPE-Math-Hard-v0", num_envs=2, vectorization_mode=mode, limit=10)
    obs, infos = envs.reset(seed=3)
    assert len(obs) == 2 and all(isinstance(o, str) and o for o in obs)
    obs, rewards, terminated, truncated, infos = envs.step(["\\boxed{0}", "no answer"])
    assert list(terminated) == [True, True]
    assert set(rewards.tolist()) <= {0.0, 1.0}
    envs.close()


def test_oracle_scores_one_on_every_eval_problem():
    env = gym.make("POPE-Math-Eval-v0")
    problems = env.unwrapped.problems
    oracle = OracleAgent(problems)
    assert len(problems) == 500
    for problem in problems:
        obs, info = env.reset(options={"problem_id": problem.id})
        _, reward, terminated, _, info = env.step(oracle.act(obs, info))
        assert reward == 1.0, problem.id
        assert terminated and info["correct"] and info["format_ok"]


def test_wrong_boxed_answer_scores_zero():
    env = MathEnv("math500", limit=30)
    for problem in env.problems:
        env.reset(options={"problem_id": problem.id})
        _, reward, _, _, info = env.step(f"The answer is \\boxed{{{problem.answer}+1}}.")
        assert reward == 0.0 and not info["correct"] and info["format_ok"], problem.id


def test_observations_and_info_never_hold_the_answer():
    env = MathEnv("math-train-l5", mode="guided", limit=50)
    for problem in env.problems:
        obs, info = env.reset(options={"problem_id": problem.id})
        blob = obs + json.dumps(info)
        boxed = [s for s in problem.steps if "\\boxed" in s]
        assert not any(step in blob for step in boxed), problem.id
        assert problem.solution not in blob or max_prefix_len(problem) == len(problem.steps)
        if info["prefix_len"]:
            assert problem.steps[0].strip() in obs


def test_pope_mode_is_exactly_one_to_one_over_each_pair():
    env = MathEnv("math-train-l5", mode="pope", limit=40)
    flags = [env.reset(seed=1)[1]["guided"]] + [env.reset()[1]["guided"] for _ in range(99)]
    for i in range(0, 100, 2):
        assert sorted(flags[i : i + 2]) == [False, True]


def test_reset_options_select_problem_and_roll_in():
    env = MathEnv("math-train-l5", limit=20)
    problem = next(p for p in env.problems if max_prefix_len(p) >= 2)
    obs, info = env.reset(options={"problem_id": problem.id, "prefix_len": 2})
    assert info == {**info, "problem_id": problem.id, "guided": True, "prefix_len": 2}
    assert problem.steps[1].strip() in obs
    obs0, info0 = env.reset(options={"problem_id": problem.id, "guided": False})
    assert info0["prefix_len"] == 0 and problem.steps[0].strip() not in obs0


def test_same_seed_same_episode():
    a, b = MathEnv("math500", mode="pope", limit=50), MathEnv("math500", mode="pope", limit=50)
    assert [a.reset(seed=7)[1]["problem_id"]] + [a.reset()[1]["problem_id"] for _ in range(5)] == \
        [b.reset(seed=7)[1]["problem_id"]] + [b.reset()[1]["problem_id"] for _ in range(5)]


def test_bad_input():
    env = MathEnv("math500", limit=5)
    with pytest.raises(EnvStateError, match="before reset"):
        env.step("x")
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="str"):  # a non-string action is a caller's bug
        env.step(12345)
    _, reward, terminated, _, info = env.step("x" * ((1 << 24) + 1))  # outside the action space
    assert reward == 0.0 and terminated and info["format_ok"] is False and "at most" in info["invalid_action"]
    with pytest.raises(EnvStateError, match="ended"):
        env.step("again")
    with pytest.raises(UnknownNameError, match="no-such-problem"):
        env.reset(options={"problem_id": "no-such-problem"})
    with pytest.raises(ConfigError, match="prefix_len"):
        env.reset(options={"problem_id": env.problems[0].id, "prefix_len": 10_000})
    with pytest.raises(ConfigError, match="unknown reset option"):
        env.reset(options={"problemid": "x"})
    env.reset()
    _, reward, *_, info = env.step("\\boxed{1}" + "9" * (10 * 1024 * 1024))  # 10 MB action
    assert reward == 0.0
    env.reset()
    _, reward, *_, info = env.step("broken \ud800 surrogate \\boxed{2}")
    assert reward in (0.0, 1.0)
    with pytest.raises(UnknownNameError, match="dataset"):
        MathEnv("no-such-dataset")
    with pytest.raises(ConfigError, match="mode"):
        MathEnv("math500", mode="sometimes")
