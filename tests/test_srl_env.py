"""SRL envs: episode structure (expert roll-in), rewards, options, bad input, vector envs."""

from __future__ import annotations

import json
from collections import Counter
from importlib import metadata

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import pope_env  # noqa: F401  (registers the ids)
from pope_env.envs.srl import SYSTEM_PROMPT, SRLMathEnv, SRLMathStepEnv, srl_prompts
from pope_env.errors import ConfigError, EnvStateError, InvalidActionError, UnknownNameError
from pope_env.problem import Problem
from pope_env.rewards.similarity import srl_reward_func, step_similarity


def _champ_raw(n: int) -> list[Problem]:
    """The first ``n`` CHAMP problems with their native steps, read from the package's file."""
    path = metadata.distribution("champ-dataset").locate_file("champ_dataset/dataset_files/v0.json")
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)["problems"]
    out = []
    for key in sorted(raw)[:n]:
        p = raw[key]
        steps = tuple(s["_text"] for s in p["solution"]["steps"])
        out.append(Problem(p["identifier"], p["_text"], " ".join(steps), steps, p.get("answer") or "", "champ"))
    return out


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    champ = _champ_raw(6)
    single = Problem("one-step", "What is 1+1?", "1+1=2.", ("1+1=2.",), "2", "test")
    uni = Problem(
        "unicode",
        "Évaluer ∑_{k=1}^{3} k — résultat?",
        "",
        ("On a ∑ = 1+2+3.", "Donc ∑ = 6 (e\u0301, \ud800 ok).", "Réponse : 6."),
        "6",
        "test",
    )
    empty = Problem("no-steps", "q", "", (), "", "test")
    return champ + [single, uni, empty]


def _section(obs: str) -> list[str]:
    """The expert steps shown in an observation (the 'Solution so far' block)."""
    block = obs.split("Solution so far:\n", 1)[1].split("\n\n", 1)[0]
    return [] if block == "(no steps yet)" else block.split("\n")


def test_env_checker(problems):
    check_env(SRLMathEnv(problems), skip_render_check=True)
    check_env(SRLMathStepEnv(problems), skip_render_check=True)
    check_env(gym.make("SRL-Math-v0", dataset=problems).unwrapped, skip_render_check=True)


def test_episode_walks_the_expert_solution(problems):
    env = SRLMathEnv(problems)
    p = problems[0]
    obs, info = env.reset(seed=0, options={"problem_id": p.id})
    assert info["messages"][0]["content"] == SYSTEM_PROMPT and info["messages"][1]["content"] == obs
    n = len(p.steps)
    assert n >= 2
    assert info["step"] == 2 and _section(obs) == [p.steps[0].strip()]  # step 1 is context, as in SRL
    for k in range(2, n + 1):
        assert info["step"] == k and info["n_steps"] == n
        # exactly the expert steps before k, in order, and not step k
        assert _section(obs) == [s.strip() for s in p.steps[: k - 1]]
        assert p.question.strip() in obs
        wrong = "<think>guess</think>something unrelated entirely"
        obs, reward, terminated, truncated, info = env.step(wrong)
        assert reward == step_similarity("something unrelated entirely", p.steps[k - 1].strip())
        assert info["scored_step"] == k and info["format_ok"] and info["similarity"] == reward
        assert not truncated and terminated == (k == n)
        # the next state appended the EXPERT step k, not the action
        assert "something unrelated" not in obs
        assert all(v != p.steps[k - 1] for v in info.values()), "the expert step must not leak into info"
    assert _section(obs) == [s.strip() for s in p.steps]
    with pytest.raises(EnvStateError, match="episode has ended"):
        env.step("<think>x</think>y")


def test_rewards_exact_copy_format_failures_and_non_strings_raise(problems):
    env = SRLMathEnv(problems)
    p = problems[1]
    env.reset(options={"problem_id": p.id})
    _, r, *_ = env.step(f"<think>copy</think>\n{p.steps[1]}\n")
    assert r == 1.0
    for bad in ["", "   ", "no tags at all", "<think>unclosed", "<think>a</think>", "pre <think>a</think>b"]:
        env.reset(options={"problem_id": p.id, "step": 2})
        _, r, terminated, _, info = env.step(bad)
        assert r == -1.0 and info["format_ok"] is False and info["format_error"] and info["similarity"] is None
        assert terminated is (len(p.steps) == 2) and "invalid_action" not in info
    for bad in [42, None, ["x"]]:  # not text: the caller's bug (docs/architecture.md, "Invalid actions")
        env.reset(options={"problem_id": p.id, "step": 2})
        with pytest.raises(InvalidActionError, match="str"):
            env.step(bad)


def test_reset_options(problems):
    env = SRLMathEnv(problems)
    p = problems[2]
    obs, info = env.reset(options={"problem_id": p.id, "step": len(p.steps)})
    assert info["step"] == len(p.steps) and _section(obs) == [s.strip() for s in p.steps[:-1]]
    _, _, terminated, _, _ = env.step("<think>a</think>b")
    assert terminated
    with pytest.raises(UnknownNameError, match="nope"):
        env.reset(options={"problem_id": "nope"})
    for step in (0, 1, len(p.steps) + 1, "2", 1.5, True):
        with pytest.raises(ConfigError, match="step must be an int"):
            env.reset(options={"problem_id": p.id, "step": step})
    with pytest.raises(ConfigError, match="needs 'problem_id'"):
        env.reset(options={"step": 2})
    with pytest.raises(ConfigError, match="unknown reset options"):
        env.reset(options={"problem": p.id})
    for pid in ("no-steps", "one-step"):  # problems with fewer than two steps are left out
        with pytest.raises(UnknownNameError):
            env.reset(options={"problem_id": pid})


def test_n_step_solutions_give_n_minus_1_prompts_each_with_expert_context(problems):
    """As in the SRL paper: steps k = 2..N, never a k = 1 prompt with no expert step shown."""
    prompts = srl_prompts(problems)
    per_problem = Counter(sp.problem_id for sp in prompts)
    assert per_problem == Counter({p.id: len(p.steps) - 1 for p in problems if len(p.steps) >= 2})
    assert all(sp.k >= 2 and sp.expert_step == next(p for p in problems if p.id == sp.problem_id).steps[sp.k - 1]
               for sp in prompts)
    assert all("(no steps yet)" not in sp.messages[1]["content"] for sp in prompts)
    two = Problem("two", "What is 1+1?", "", ("We add.", "1+1=2."), "2", "test")
    env = SRLMathEnv([two])
    obs, info = env.reset(seed=0)
    assert (info["step"], info["n_steps"]) == (2, 2) and _section(obs) == ["We add."]
    _, r, terminated, _, _ = env.step("<think>easy</think>1+1=2.")
    assert r == 1.0 and terminated  # a two-step solution is a one-action episode


def test_prefilled_think_templates_score_completions_that_start_inside_the_monologue(problems):
    p = problems[1]
    expert = p.steps[1].strip()
    completion = f"the monologue</think>{expert}"  # the template's prompt already ended with "<think>"
    strict, prefilled = SRLMathEnv(problems), SRLMathEnv(problems, prefilled_think=True)
    for env, want in ((strict, -1.0), (prefilled, 1.0)):
        env.reset(options={"problem_id": p.id, "step": 2})
        assert env.step(completion)[1] == want
    prefilled.reset(options={"problem_id": p.id, "step": 2})
    _, r, *_, info = prefilled.step(f"<think>again</think>{expert}")  # a second opening tag
    assert r == -1.0 and "pre-filled" in info["format_error"]
    step_env = SRLMathStepEnv(problems, prefilled_think=True)
    step_env.reset(options={"problem_id": p.id, "step": 2})
    assert step_env.step(completion)[1] == 1.0


def test_unicode_problem_and_actions(problems):
    env = SRLMathEnv(problems)
    obs, _ = env.reset(options={"problem_id": "unicode", "step": 2})
    assert _section(obs) == ["On a ∑ = 1+2+3."]
    _, r, *_ = env.step("<think>\u0301\udfff</think>Donc ∑ = 6 (e\u0301, \ud800 ok).")
    assert r == 1.0


def test_step_before_reset_and_bad_construction(problems):
    with pytest.raises(EnvStateError, match="reset"):
        SRLMathEnv(problems).step("<think>a</think>b")
    with pytest.raises(ConfigError, match="no problem has two or more expert steps"):
        SRLMathEnv([problems[-1]])
    with pytest.raises(ConfigError, match="sequence of Problem"):
        SRLMathEnv(["not a problem"])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="render_mode"):
        SRLMathEnv(problems, render_mode="human")
    env = SRLMathEnv(problems, max_problems=2, render_mode="ansi")
    assert len(env.problems) == 2
    obs, _ = env.reset(seed=1)
    assert env.render() == obs


def test_step_env_samples_every_problem_step_pair_uniformly(problems):
    env = SRLMathStepEnv(problems)
    pairs = [(p.id, k) for p in problems for k in range(2, len(p.steps) + 1)]
    counts: Counter = Counter()
    env.reset(seed=123)
    draws = 60 * len(pairs)
    for _ in range(draws):
        obs, info = env.reset()
        counts[(info["problem_id"], info["step"])] += 1
        p = next(q for q in problems if q.id == info["problem_id"])
        assert _section(obs) == [s.strip() for s in p.steps[: info["step"] - 1]]
    assert set(counts) == set(pairs)
    assert max(counts.values()) < 2.2 * draws / len(pairs) and min(counts.values()) > 0.3 * draws / len(pairs)
    obs, info = env.reset(options={"problem_id": "unicode"})
    assert info["problem_id"] == "unicode"
    _, r, terminated, _, _ = env.step("<think>t</think>" + problems[-2].steps[info["step"] - 1])
    assert r == 1.0 and terminated
    with pytest.raises(EnvStateError):
        env.step("<think>t</think>x")


def test_srl_prompts_and_trl_rows(problems):
    prompts = srl_prompts(problems)
    assert len(prompts) == sum(max(0, len(p.steps) - 1) for p in problems)
    env = SRLMathEnv(problems)
    for sp in prompts[:12]:
        obs, info = env.reset(options={"problem_id": sp.problem_id, "step": sp.k})
        assert list(sp.messages) == info["messages"] and sp.messages[1]["content"] == obs
    rows = [sp.to_dict() for sp in prompts]
    completions = [f"<think>t</think>{r['expert_step']}" for r in rows]
    rewards = srl_reward_func([r["prompt"] for r in rows], completions, expert_step=[r["expert_step"] for r in rows])
    assert rewards == [1.0] * len(rows)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("env_id", ["SRL-Math-v0", "SRL-Math-Step-v0"])
def test_vector_envs(problems, env_id, mode):
    # Text observations cannot live in shared memory: async needs shared_memory=False.
    vector_kwargs = {"shared_memory": False} if mode == "async" else None
    envs = gym.make_vec(env_id, num_envs=2, vectorization_mode=mode, vector_kwargs=vector_kwargs, dataset=problems)
    try:
        obs, info = envs.reset(seed=0)
        assert len(obs) == 2 and all(isinstance(o, str) and "Problem:" in o for o in obs)
        done = [False, False]
        for _ in range(4):
            obs, rewards, terminated, truncated, info = envs.step(["<think>t</think>x = 1", "bad"])
            # after an episode ends, the next step() is the autoreset (reward 0)
            assert rewards[1] == (0.0 if done[1] else -1.0)
            assert 0.0 <= rewards[0] <= 1.0
            done = [bool(t) for t in terminated]
            assert all(isinstance(o, str) for o in obs)
    finally:
        envs.close()


def test_named_dataset_champ():
    env = gym.make("SRL-CHAMP-v0").unwrapped
    assert len(env.problems) > 200 and all(len(p.steps) >= 2 for p in env.problems)
    obs, info = env.reset(seed=0)
    assert info["n_steps"] >= 2 and info["step"] == 2 and "Problem:" in obs
