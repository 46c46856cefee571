"""One rule for invalid actions in every env (docs/architecture.md, "Invalid actions").

* An action of the wrong type raises :class:`InvalidActionError` and leaves the episode as it
  was (the same episode accepts a good action next).
* A well-typed action the env cannot take ends the episode: ``terminated=True``,
  ``truncated=False``, reward ``env.invalid_action_reward``, ``info["invalid_action"]`` says why.
"""

from __future__ import annotations

import shutil

import pytest

from pope_env.envs.math import MathEnv
from pope_env.envs.srl import SRLMathEnv, SRLMathStepEnv
from pope_env.envs.steps import MathStepsEnv
from pope_env.envs.token import InvalidTokenError, TokenEnv
from pope_env.envs.token_wrappers import TextActions
from pope_env.errors import InvalidActionError, PopeEnvError
from pope_env.problem import Problem
from swe_helpers import tiny_repo  # noqa: F401  (fixture)

PROBLEMS = [Problem("p1", "What is 1+1?", "1+1=2.\n\nSo \\boxed{2}.", ("1+1=2.\n\n", "So \\boxed{2}."), "2", "test"),
            Problem("p2", "What is 2+3?", "2+3=5.\n\nSo \\boxed{5}.", ("2+3=5.\n\n", "So \\boxed{5}."), "5", "test")]


def _text_envs():
    return [
        ("MathEnv", MathEnv(problems=PROBLEMS, max_action_chars=50), "So \\boxed{2}."),
        ("MathStepsEnv", MathStepsEnv(problems=PROBLEMS, max_step_chars=50), "1+1=2."),
        ("SRLMathEnv", SRLMathEnv(PROBLEMS), "<think>t</think>1+1=2."),
        ("SRLMathStepEnv", SRLMathStepEnv(PROBLEMS), "<think>t</think>1+1=2."),
        ("TextActions", TextActions(TokenEnv("easy"), max_action_chars=50), "1"),
    ]


@pytest.mark.parametrize("index", range(5))
@pytest.mark.parametrize("bad", [None, 12345, b"bytes", ["a list"]])
def test_a_non_str_action_raises_and_keeps_the_episode(index, bad):
    name, env, good = _text_envs()[index]
    env.reset(seed=0, options={"problem_id": "p1"} if "Token" not in type(env.unwrapped).__name__ else None)
    with pytest.raises(InvalidActionError, match="str") as caught:
        env.step(bad)
    assert isinstance(caught.value, (TypeError, PopeEnvError))
    _, _, _, _, info = env.step(good if name != "TextActions" else str(env.token_env.problem.steps[0]))
    assert "invalid_action" not in info, name


def test_too_long_text_ends_the_episode_with_the_invalid_action_reward():
    envs = _text_envs()
    envs[2] = ("SRLMathEnv", SRLMathEnv(PROBLEMS), None)
    envs[2][1].action_space.max_length = 50  # the default space allows 16M characters
    envs[3] = ("SRLMathStepEnv", SRLMathStepEnv(PROBLEMS), None)
    envs[3][1].action_space.max_length = 50
    for name, env, _ in envs:
        env.reset(seed=0, options={"problem_id": "p1"} if name != "TextActions" else None)
        _, reward, terminated, truncated, info = env.step("1" * 51)
        expected = env.token_env.invalid_action_reward if name == "TextActions" else env.invalid_action_reward
        assert (terminated, truncated, reward) == (True, False, expected), name
        assert "at most 50" in info["invalid_action"], name
    assert [e.invalid_action_reward for _, e, _ in envs[:4]] == [0.0, 0.0, -1.0, -1.0]


def test_token_env_masked_and_mistyped_actions():
    env = TokenEnv("easy")
    env.reset(seed=0)
    with pytest.raises(InvalidActionError):  # InvalidTokenError is one
        env.step(99)
    assert issubclass(InvalidTokenError, InvalidActionError) and issubclass(InvalidTokenError, ValueError)
    masked = int(next(t for t in range(16) if not env.action_masks()[t]))
    _, reward, terminated, truncated, info = env.step(masked)
    assert (terminated, truncated, reward) == (True, False, env.invalid_action_reward)
    assert "not allowed" in info["invalid_action"]


# --- SWE: the same rule, and the agent reads info instead of the observation ------------

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


@pytest.fixture
def bwrap_swe_env(tiny_repo):
    from pope_env.envs.swe import SWEEnv
    from swe_helpers import EXPERT, task_record

    made = []

    def make(**kwargs):
        made.append(SWEEnv([task_record(repo_dir=tiny_repo)], backend="bwrap", trajectories={"tiny__calc-1": EXPERT},
                           command_timeout_s=30, **kwargs))
        return made[-1]

    yield make
    for env in made:
        env.close()


@needs_bwrap
def test_swe_env_invalid_actions_follow_the_rule(bwrap_swe_env):
    env = bwrap_swe_env()
    obs, info = env.reset(seed=0)
    assert info["episode_start"] is True
    with pytest.raises(InvalidActionError):
        env.step(7)
    obs, reward, terminated, truncated, info = env.step("echo hi")  # the episode is still on
    assert info["episode_start"] is False and info["output"] == "$ echo hi\n[exit code 0]\nhi\n"
    assert info["output"] in obs
    obs, reward, terminated, truncated, info = env.step("echo a\x00b")
    assert (terminated, truncated, reward) == (True, False, 0.0) and "NUL" in info["invalid_action"]
    assert env.sandbox is None and "Invalid action" in obs and info["output"] in obs


@needs_bwrap
def test_swe_agent_sends_the_command_output_from_info(bwrap_swe_env):
    """Guided episode: the observation repeats the expert's steps every turn; the agent must
    send only the new command output (``info["output"]``), never the roll-in again."""
    from pope_env.agents.swe_agent import SWEAgent, run_episode
    from swe_helpers import EXPERT, ScriptedPolicy

    env = bwrap_swe_env(mode="guided")
    policy = ScriptedPolicy(["```bash\necho checking\n```", "```bash\nsubmit\n```"])
    agent = SWEAgent(policy)
    record = run_episode(env, agent, seed=0)
    users = [m["content"] for m in agent.messages if m["role"] == "user"]
    assert EXPERT[0] in users[0]  # the roll-in is shown once, at the start
    assert users[1] == "$ echo checking\n[exit code 0]\nchecking"
    assert record.steps[0]["action"] == "echo checking"
    run_episode(env, agent, seed=1)  # a second episode starts a fresh conversation
    assert [m["role"] for m in agent.messages][:2] == ["system", "user"] and len(agent.messages) == 3

