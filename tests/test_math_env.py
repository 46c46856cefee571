"""The single-turn POPE-Math envs: API conformance, real verdicts, roll-ins, bad input."""

from __future__ import annotations

import json
import time
import warnings
from collections import Counter

import gymnasium as gym
import pytest

from pope_env.guidance import prefix_cap
from gymnasium.utils.env_checker import check_env

import pope_env  # noqa: F401
from pope_env.agents.simple import OracleAgent
from pope_env.datasets import load_dataset
from pope_env.envs.math import MathEnv
from pope_env.envs.steps import MathStepsEnv
from pope_env.errors import ConfigError, EnvStateError, InvalidActionError, UnknownNameError
from pope_env.problem import Problem
from pope_env.rollin import NoGuidanceWarning
from pope_env.solution_steps import max_prefix_len

# An answer sympy would evaluate for hours: verification can only end by the time limit.
TOWER = r"The answer is $\boxed{9^{9^{9^{9}}}}$."

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
    infos = [env.reset(seed=1)[1]] + [env.reset()[1] for _ in range(99)]
    unguidable = {p.id for p in env.problems if prefix_cap(p) == 0}
    pairs = [infos[i : i + 2] for i in range(0, 100, 2)]
    clean = [pair for pair in pairs if not {info["problem_id"] for info in pair} & unguidable]
    assert len(clean) >= 40
    for pair in clean:
        assert sorted(info["guided"] for info in pair) == [False, True]
    for pair in pairs:  # a guided slot whose problem has nothing to show is shown unguided
        assert sum(info["guided"] for info in pair) <= 1


@pytest.mark.parametrize("make", [MathEnv, MathStepsEnv])
def test_pope_mode_pairs_each_problems_guided_and_unguided_versions_in_every_pass(make):
    with pytest.warns(NoGuidanceWarning):
        env = make("math-train-l5", mode="pope", limit=12)
    n = len(env.problems)
    infos = [env.reset(seed=5)[1]] + [env.reset()[1] for _ in range(3 * 2 * n - 1)]
    passes = [infos[i : i + 2 * n] for i in range(0, len(infos), 2 * n)]
    caps = {p.id: prefix_cap(p) for p in env.problems}
    assert any(c == 0 for c in caps.values())  # math-train-l5's first 12 hold one such problem
    for chunk in passes:
        shown = Counter((info["problem_id"], info["guided"]) for info in chunk)
        # every problem exactly once in a guided slot (at its prefix) and once unguided in the
        # pass; a problem whose first step already states the answer (prefix cap 0) has nothing
        # to show, so its guided slot is shown, and labelled, unguided
        assert shown == Counter({(p.id, g): 1 for p in env.problems for g in (True, False) if caps[p.id] > 0}
                                | {(p.id, False): 2 for p in env.problems if caps[p.id] == 0})
        assert all((info["prefix_len"] > 0) == info["guided"] for info in chunk)
        for i in range(0, 2 * n, 2):  # and one slot of each kind in every consecutive pair
            pair = chunk[i : i + 2]
            if all(caps[info["problem_id"]] > 0 for info in pair):
                assert sorted(info["guided"] for info in pair) == [False, True]
            else:
                assert sum(info["guided"] for info in pair) <= 1
    orders = [[info["problem_id"] for info in chunk] for chunk in passes]
    assert orders[0] != orders[1] != orders[2]  # reshuffled every pass
    again = make("math-train-l5", mode="pope", limit=12)
    replay = [again.reset(seed=5)[1]] + [again.reset()[1] for _ in range(2 * n - 1)]
    assert [(i["problem_id"], i["guided"]) for i in replay] == [(i["problem_id"], i["guided"]) for i in passes[0]]


def test_a_guided_option_takes_the_next_problem_of_that_kind_in_the_pass():
    env = MathEnv("math-train-l5", mode="pope", limit=6)
    env.reset(seed=0)
    seen = [env.reset(options={"guided": True})[1] for _ in range(5)]
    seen += [env.reset(options={"guided": False})[1] for _ in range(6)]
    guided = sorted(i["problem_id"] for i in seen if i["guided"])
    assert len(set(guided)) == len(guided)  # a guided reset never repeats a problem within a pass


def test_guided_modes_without_a_guidance_file_warn_once_naming_prefix_search():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = MathEnv("math-train-l5", mode="pope", limit=5)
        for _ in range(6):
            env.reset()
        MathEnv("math-train-l5", mode="unguided", limit=5).reset()
    ours = [w for w in caught if issubclass(w.category, NoGuidanceWarning)]
    assert len(ours) == 1 and "pope-env prefix-search" in str(ours[0].message)
    with pytest.warns(NoGuidanceWarning, match="prefix-search"):
        MathStepsEnv("math-train-l5", mode="guided", limit=5)


@pytest.mark.parametrize("make", [MathEnv, MathStepsEnv])
def test_verify_timeout_s_bounds_the_verification(make):
    problem = Problem("tower", "What is 1+2?", "We add.\n\nSo $\\boxed{3}$.", ("We add.\n\n", "So $\\boxed{3}$."), "3", "test")
    env = make(problems=[problem], verify_timeout_s=0.5)
    env.verifier.warm_up()  # worker start-up (sympy imports) is not part of the limit
    env.reset(seed=0)
    t0 = time.perf_counter()
    _obs, reward, terminated, _trunc, info = env.step(TOWER)
    elapsed = time.perf_counter() - t0
    assert terminated and reward == 0.0 and info["timed_out"] is True
    assert elapsed < 0.5 + 2.0, elapsed  # the default limit (5 s) would take 5 s or more
    env.reset(seed=0)
    assert env.step(r"So the sum is $\boxed{3}$.")[1] == 1.0  # the pool recovered
    with pytest.raises(ConfigError, match="verify_timeout_s"):
        make(problems=[problem], verify_timeout_s=0)


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


@pytest.mark.parametrize("env_id", ["POPE-Math-Hard-v0", "POPE-Math-Steps-Hard-v0", "POPE-Token-Hard-v0"])
@pytest.mark.parametrize("ratio", [-0.1, 1.5])
def test_every_env_refuses_a_guided_ratio_outside_0_1(env_id, ratio):
    kwargs = {} if "Token" in env_id else {"limit": 4}
    with pytest.raises(ConfigError, match=r"guided_ratio must be in \[0, 1\]"):
        gym.make(env_id, guided_ratio=ratio, **kwargs)
