"""The token-level MDP (POPE-Token-*), its text views and the sb3 MaskablePPO integration."""

from __future__ import annotations

from collections import Counter

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

import pope_env  # noqa: F401  (registers the ids)
from pope_env.envs.token import (
    BOX, CLOSE, NEWLINE, PAD, V, InvalidTokenError, TokenEnv, detokenize, tokenize,
)
from pope_env.envs.token_wrappers import TextActions, TextObservation
from pope_env.errors import ConfigError, DataFormatError, EnvStateError, InvalidActionError, UnknownNameError

sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")


@pytest.fixture(scope="module")
def hard() -> TokenEnv:
    return TokenEnv("hard", n_problems=200)


def solution_slots(env: TokenEnv, obs: np.ndarray) -> np.ndarray:
    return obs[env.question_len : env.question_len + env.max_len]


# --------------------------------------------------------------------------- API checks


@pytest.mark.parametrize("env_id", ["POPE-Token-v0", "POPE-Token-Hard-v0", "POPE-Token-Hard-Eval-v0"])
def test_gymnasium_and_sb3_check_env(env_id):
    env = gym.make(env_id).unwrapped
    gym_check_env(env, skip_render_check=True)
    sb3_checker.check_env(env, warn=True)


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped")
def test_text_view_passes_check_env():
    gym_check_env(gym.make("POPE-Token-Text-v0").unwrapped, skip_render_check=True)
    gym_check_env(TextObservation(TokenEnv("easy")), skip_render_check=True)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_env_with_masks(mode):
    envs = gym.make_vec("POPE-Token-v0", num_envs=2, vectorization_mode=mode)
    obs, info = envs.reset(seed=0)
    assert obs.shape == (2,) + envs.single_observation_space.shape
    masks = envs.call("action_masks")
    assert all(m.shape == (V,) and m[BOX] for m in masks)  # 1-op problems start with \boxed{
    obs, reward, terminated, truncated, info = envs.step(np.array([BOX, BOX]))
    assert obs[:, -1].tolist() == [1, 1] and not terminated.any()
    envs.close()


def test_tokenizer_round_trip_and_bad_characters():
    text = "21+7-8\n28-8\n\\boxed{20}"
    assert detokenize(tokenize(text)) == text
    assert tokenize("\\boxed{7}") == [BOX, 7, CLOSE]
    with pytest.raises(DataFormatError, match="'x' at position 2"):
        tokenize("12x")


# --------------------------------------------------------------------------- masks


def test_oracle_tokens_are_always_allowed_and_score_1(hard):
    for tp in hard.problems[:50]:
        hard.reset(options={"problem_id": tp.problem.id, "guided": False})
        for token in tp.oracle:
            assert hard.action_masks()[token]
            _, reward, terminated, truncated, info = hard.step(int(token))
        assert (reward, terminated, truncated, info["correct"]) == (1.0, True, False, True)
        assert hard.solution_text() == tp.problem.solution


def test_masks_are_exactly_the_actions_without_penalty(hard):
    """From states along random masked walks, every unmasked token is accepted and every
    masked one ends the episode with the documented penalty."""
    rng = np.random.default_rng(0)
    probe = TokenEnv("hard", n_problems=200)
    _, info = hard.reset(seed=0, options={"guided": False})
    history: list[int] = []
    checked = 0
    for _ in range(200):
        mask = hard.action_masks()
        for token in range(V):
            probe.reset(options={"problem_id": info["problem_id"], "guided": False})
            for past in history:
                probe.step(past)
            _, reward, terminated, _, step_info = probe.step(token)
            if mask[token]:
                assert "invalid_action" not in step_info
            else:
                assert terminated and reward == -1.0 and "is not allowed" in step_info["invalid_action"]
                checked += 1
        action = int(rng.choice(np.flatnonzero(mask)))
        history.append(action)
        _, _, terminated, truncated, _ = hard.step(action)
        if terminated or truncated:
            assert not hard.action_masks().any()
            _, info = hard.reset(options={"guided": False})
            history = []
    assert checked > 1000


def test_grammar_shapes_the_lines(hard):
    """Line k of an n-op problem has n-1-k operators; the last line is \\boxed{...}."""
    hard = TokenEnv("hard", max_value=9, n_problems=10)
    tp = hard.problems[0]
    hard.reset(options={"problem_id": tp.problem.id, "guided": False})
    assert hard.action_masks()[:10].all() and not hard.action_masks()[10:].any()
    for token in (5, 10, 3):  # "5+3": one operator written, one more required
        hard.step(token)
    mask = hard.action_masks()
    assert not mask[NEWLINE] and mask[10:13].all() and not mask[:10].any()  # max 1 digit (values <= 9)
    for token in (10, 1, NEWLINE, 4, 10, 1):  # line 2: exactly one operator
        hard.step(token)
    assert hard.action_masks()[NEWLINE] and not hard.action_masks()[10:13].any()
    hard.step(NEWLINE)
    assert np.flatnonzero(hard.action_masks()).tolist() == [BOX]


def test_max_len_shorter_than_oracle_is_refused():
    with pytest.raises(ConfigError, match="max_len"):
        TokenEnv("hard", max_len=5)


def test_truncated_when_solution_reaches_max_len():
    """Writing the longest numbers the grammar allows overruns max_len = the longest oracle."""
    probe = TokenEnv("hard", n_problems=50)
    longest = max(len(tp.oracle) for tp in probe.problems)
    env = TokenEnv("hard", n_problems=50, max_len=longest)
    env.reset(seed=1, options={"guided": False})
    terminated = truncated = False
    steps = 0
    while not (terminated or truncated):
        allowed = np.flatnonzero(env.action_masks()).tolist()
        others = [t for t in allowed if t >= 10 and t != CLOSE] or [CLOSE]
        _, reward, terminated, truncated, info = env.step(9 if 9 in allowed else others[0])
        steps += 1
    assert truncated and not terminated and reward == 0.0 and info["correct"] is False
    assert steps == longest and not env.action_masks().any()


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("action", [-1, V, 99, 1.5, "3", None])
def test_out_of_range_token_ids_raise(action):
    env = TokenEnv("easy")
    env.reset(seed=0)
    with pytest.raises(InvalidTokenError, match=r"token id in \[0, 16\)"):
        env.step(action)


def test_numpy_integer_actions_are_accepted():
    env = TokenEnv("easy")
    env.reset(seed=0)
    env.step(np.int64(BOX))


def test_step_before_reset_and_after_end():
    env = TokenEnv("easy")
    with pytest.raises(EnvStateError, match="before reset"):
        env.step(0)
    env.reset(seed=0)
    env.step(0)  # masked at the start of a 1-op solution: penalty, episode over
    with pytest.raises(EnvStateError, match="has ended"):
        env.step(BOX)


def test_masked_action_penalty_is_configurable():
    env = TokenEnv("easy", invalid_action_reward=0.0)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(PAD)
    assert reward == 0.0 and terminated and info["correct"] is False


@pytest.mark.parametrize(
    "options, match",
    [
        ({"prefix_len": 99}, r"prefix_len=99 is out of range: 0 <= prefix_len <= \d+"),
        ({"prefix_len": -1}, "out of range"),
        ({"prefix_steps": 3}, r"prefix_steps=3 is out of range: 0 <= prefix_steps <= 2"),
        ({"prefix_len": 1.0}, "must be an int"),
        ({"prefix_len": True}, "must be an int"),
        ({"prefix_len": 1, "prefix_steps": 1}, "not both"),
        ({"guided": "yes"}, "must be a bool"),
        ({"guided": False, "prefix_len": 2}, "implied"),
        ({"temperature": 1}, "unknown reset option"),
    ],
)
def test_reset_options_out_of_range(hard, options, match):
    with pytest.raises(ConfigError, match=match):
        hard.reset(options={"problem_id": hard.problems[0].problem.id, **options})


def test_unknown_problem_id(hard):
    with pytest.raises(UnknownNameError):
        hard.reset(options={"problem_id": "arith/nope"})


def test_named_arithmetic_dataset():
    env = TokenEnv(dataset="arith-easy")
    assert env.dataset == "arith-easy" and {tp.n_ops for tp in env.problems} == {2, 3}
    for tp in env.problems[:30]:
        env.reset(options={"problem_id": tp.problem.id})
        for token in tp.oracle:
            assert env.action_masks()[token]
            _, reward, *_ = env.step(int(token))
        assert reward == 1.0


def test_bad_constructor_arguments():
    with pytest.raises(ConfigError, match="level"):
        TokenEnv("medium")
    with pytest.raises(ConfigError, match="mode"):
        TokenEnv(mode="mixed")
    from pope_env.problem import Problem

    with pytest.raises(DataFormatError, match="not a synthetic arithmetic problem"):
        TokenEnv(problems=[Problem(id="x", question="1+1?", solution="\\boxed{2}", answer="2",
                                       source="custom", steps=("\\boxed{2}",))])


# --------------------------------------------------------------------------- roll-in


def test_rollin_states_equal_the_oracle_prefix(hard):
    for tp in hard.problems[:20]:
        for i in range(tp.cap_tokens + 1):
            obs, info = hard.reset(options={"problem_id": tp.problem.id, "prefix_len": i})
            assert solution_slots(hard, obs)[:i].tolist() == (tp.oracle[:i] + 1).tolist()
            assert not solution_slots(hard, obs)[i:].any() and obs[-1] == i
            assert obs[: len(tp.question)].tolist() == (tp.question + 1).tolist()
            assert info["prefix_len"] == i and info["guided"] == (i > 0)
            # the rest of the oracle completes the episode with reward 1
            for token in tp.oracle[i:]:
                assert hard.action_masks()[token]
                _, reward, *_ = hard.step(int(token))
            assert reward == 1.0


def test_rollin_by_steps(hard):
    tp = hard.problems[0]
    for k in range(tp.cap_steps + 1):
        obs, info = hard.reset(options={"problem_id": tp.problem.id, "prefix_steps": k})
        assert hard.solution_text() == "".join(tp.problem.steps[:k])
        assert info["prefix_steps"] == k


def test_pope_mode_mixes_guided_and_unguided_1_to_1():
    env = gym.make("POPE-Token-Hard-v0").unwrapped
    env.reset(seed=3)
    guided = [env._info["guided"]] + [env.reset()[1]["guided"] for _ in range(99)]
    assert sum(guided) == 50
    assert all(a != b for a, b in zip(guided[0::2], guided[1::2]))
    # without a guidance file a guided start shows all steps before the answer (the cap)
    for _ in range(6):
        obs, info = env.reset()
        if info["guided"]:
            tp = env.problems[env.problem_index(info["problem_id"])]
            assert info["prefix_steps"] == tp.cap_steps


def test_pope_mode_pairs_each_problems_guided_and_unguided_versions_in_every_pass():
    """The token env draws its roll-ins from the math envs' sampler: each pass of 2N resets
    shows every problem once guided and once unguided, one of each per consecutive pair."""
    env = TokenEnv("hard", n_problems=10, mode="pope")
    n = len(env.problems)
    infos = [env.reset(seed=4)[1]] + [env.reset()[1] for _ in range(2 * 2 * n - 1)]
    for chunk in (infos[:2 * n], infos[2 * n:]):
        shown = Counter((info["problem_id"], info["guided"]) for info in chunk)
        assert shown == Counter({(tp.problem.id, g): 1 for tp in env.problems for g in (True, False)})
        for i in range(0, 2 * n, 2):
            assert sorted(info["guided"] for info in chunk[i : i + 2]) == [False, True]
    again = TokenEnv("hard", n_problems=10, mode="pope")
    replay = [again.reset(seed=4)[1]] + [again.reset()[1] for _ in range(2 * n - 1)]
    assert replay == infos[:2 * n]


# --------------------------------------------------------------------------- reward


def test_fast_reward_agrees_with_the_math_reward():
    from pope_env.rewards.math import score_completion

    env = TokenEnv("hard", n_problems=40)
    rng = np.random.default_rng(1)
    for tp in env.problems:
        for guess in {tp.answer, int(rng.integers(0, 100))}:
            env.reset(options={"problem_id": tp.problem.id, "prefix_len": tp.cap_tokens})
            for digit in str(guess):
                env.step(int(digit))
            _, reward, *_ = env.step(CLOSE)
            assert reward == score_completion(env.solution_text(), tp.problem).reward


# --------------------------------------------------------------------------- text views


def test_text_actions_share_the_dynamics():
    env = TextActions(TokenEnv("hard", n_problems=20))
    obs, info = env.reset(seed=0, options={"guided": False})
    problem = env.token_env.problem
    assert problem.question in obs and info["messages"][-1]["content"].endswith(problem.question)
    steps = problem.steps
    obs, reward, terminated, _, _ = env.step(steps[0])
    assert reward == 0.0 and not terminated and steps[0].strip() in obs
    obs, reward, terminated, _, info = env.step("".join(steps[1:]))
    assert (reward, terminated, info["correct"]) == (1.0, True, True)


def test_text_actions_bad_input_gets_the_penalty():
    env = TextActions(TokenEnv("easy"))
    for action in ["x", "", "\\boxed{1}}"]:
        env.reset(seed=0)
        _, reward, terminated, _, info = env.step(action)
        if action == "\\boxed{1}}":  # the first '}' ends the episode; the rest is ignored
            assert terminated and "invalid_action" not in info
        else:
            assert reward == -1.0 and terminated and info["invalid_action"]
    with pytest.raises(EnvStateError):
        env.step("1")
    env.reset(seed=0)
    with pytest.raises(InvalidActionError):  # not text at all: the caller's bug, not the policy's
        env.step(7)


def test_text_observation_keeps_masks():
    env = TextObservation(TokenEnv("easy"))
    obs, info = env.reset(seed=0)
    assert isinstance(obs, str) and "Compute left to right" in obs
    assert np.flatnonzero(env.action_masks()).tolist() == [BOX]
    obs, *_ = env.step(BOX)
    assert obs.rstrip().endswith("\\boxed{")


# --------------------------------------------------------------------------- sb3


@pytest.mark.slow
def test_maskable_ppo_learns_the_easy_level():
    from pope_env.agents.sb3 import make_maskable_ppo, success_rate

    eval_env = TokenEnv("easy")
    model = make_maskable_ppo(TokenEnv("easy"), seed=0)
    before = success_rate(model, eval_env, episodes=300, deterministic=True)
    model.learn(10_000)
    after = success_rate(model, eval_env, episodes=300, deterministic=True)
    # chance: 0.1 (uniform over the 10 answer digits, the only free choice in a 1-op
    # episode); over 300 episodes its standard error is 0.017, so 0.18 is > 4 SE above it
    assert before < 0.18
    assert after > 0.18, (before, after)


@pytest.mark.slow
def test_prefix_search_with_the_classic_agent(tmp_path):
    from pope_env.agents.policy import SamplingParams
    from pope_env.agents.sb3 import MaskablePolicy, exact_scorer, make_maskable_ppo
    from pope_env.prefix_search import run_prefix_search

    env = TokenEnv("hard", max_value=9, n_problems=30)
    model = make_maskable_ppo(env, seed=0)
    policy = MaskablePolicy(model, env)
    problems = [tp.problem for tp in env.problems[:6]]

    # generation: continues after the prompt's oracle prefix, seeded, greedy is deterministic
    from pope_env.guidance import guided_text

    prompt = guided_text(problems[0], 2)
    (group,) = policy.generate([prompt], n=4, sampling=SamplingParams(seed=1))
    (again,) = policy.generate([prompt], n=4, sampling=SamplingParams(seed=1))
    assert [g.text for g in group] == [g.text for g in again]
    assert all(g.text.startswith("\\boxed{") and g.finish_reason == "stop" for g in group)
    assert all(len(g.logprobs) == len(g.token_ids) == 3 for g in group)

    out = tmp_path / "guidance.jsonl"
    found = run_prefix_search(problems, policy, dataset=env.dataset, out=out, k=16,
                              scorer=exact_scorer, prompt_format="text", progress=False)
    assert len(found) == 6
    # the hard env reads the file: guided starts use i* (or the cap for fallbacks)
    pope = TokenEnv("hard", max_value=9, n_problems=30, mode="guided", guidance_file=str(out))
    for record in found.records.values():
        _, info = pope.reset(options={"problem_id": record.problem_id})
        assert info["prefix_steps"] == (record.i_star or record.cap)
    header = json.loads(out.read_text().splitlines()[0])
    assert header["model"] == "maskable-ppo" and header["dataset"] == env.dataset
