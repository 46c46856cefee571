"""POPE-SWE-v0, POPE-SWE-Guided-v0 and SRL-SWE-v0 on a real repository in real sandboxes."""

from __future__ import annotations

import difflib
import shutil

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import pope_env  # noqa: F401  (registers the ids)
from pope_env.envs.swe import SWEEnv
from pope_env.errors import ConfigError, EnvStateError, UnknownNameError
from pope_env.sandbox import SandboxLimits
from swe_helpers import EXPERT, docker_or_skip, task_record, tiny_image, tiny_repo, tiny_task  # noqa: F401

TRAJ = {"tiny__calc-1": EXPERT}


@pytest.fixture
def make_env():
    """SWEEnv constructor whose envs are closed after the test, pass or fail."""
    made = []

    def make(*args, **kwargs) -> SWEEnv:
        made.append(SWEEnv(*args, **kwargs))
        return made[-1]

    yield make
    for env in made:
        env.close()


def test_ids_are_registered():
    for env_id in ("POPE-SWE-v0", "POPE-SWE-Guided-v0", "SRL-SWE-v0"):
        assert env_id in gym.registry and pope_env.registration.ENV_SPECS


def test_bad_arguments_are_clear_errors():
    record = task_record(image="img")
    with pytest.raises(UnknownNameError, match="mode"):
        SWEEnv([record], mode="teleport")
    with pytest.raises(ConfigError, match="expert trajectory"):
        SWEEnv([record], mode="guided", trajectories={})
    with pytest.raises(ConfigError, match="max_steps"):
        SWEEnv([record], max_steps=0)
    with pytest.raises(EnvStateError, match="reset"):
        SWEEnv([record]).step("ls")


@pytest.mark.docker
def test_env_checker_passes(tiny_task):
    env = gym.make("POPE-SWE-v0", tasks=[tiny_task], max_steps=3, command_timeout_s=10).unwrapped
    check_env(env, skip_render_check=True)
    env.close()


@pytest.mark.docker
def test_expert_commands_resolve_the_issue(make_env, tiny_task):
    env = make_env([tiny_task])
    obs, info = env.reset(seed=0)
    assert tiny_task.problem_statement in obs and info == {"instance_id": "tiny__calc-1", "guided": False,
                                                             "prefix_len": 0, "episode_start": True}
    assert "return a + b" not in obs and tiny_task.patch not in obs  # no privileged text
    rewards = []
    for action in EXPERT:
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        if action.startswith("python3 -c"):
            assert "[exit code 0]" in obs
    assert rewards == [0.0, 0.0, 0.0, 0.0, 1.0] and terminated and not truncated
    assert info["resolved"] and info["grade"]["status"] == "RESOLVED_FULL"
    assert "+    return a + b" in info["patch"]
    assert env.sandbox is None  # closed at the end of the episode
    env.close()


@pytest.mark.docker
def test_wrong_fix_gets_0_with_failing_tests_named(make_env, tiny_task):
    env = make_env([tiny_task])
    env.reset(seed=0)
    env.step("sed -i 's/return a - b/return a * b/' calc/__init__.py")
    obs, reward, terminated, _, info = env.step("submit")
    assert reward == 0.0 and terminated and not info["resolved"]
    assert "test_add_positive" in info["grade"]["reason"] and "RESOLVED_NO" in obs
    env.close()


@pytest.mark.docker
def test_step_limit_truncates_and_grades(make_env, tiny_task):
    env = make_env([tiny_task], max_steps=1)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step("sed -i 's/return a - b/return a + b/' calc/__init__.py")
    assert truncated and not terminated and reward == 1.0 and not info["submitted"]
    assert "Step limit reached" in obs
    env.close()


@pytest.mark.docker
def test_observation_states_how_much_output_was_cut(make_env, tiny_task):
    env = make_env([tiny_task], limits=SandboxLimits(output_bytes=500))
    env.reset(seed=0)
    obs, *_ = env.step("seq 1 10000")
    assert f"[output truncated: {len(chr(10).join(map(str, range(1, 10001)))) + 1 - 500} more bytes not shown]" in obs
    env.close()


@pytest.mark.docker
def test_guided_roll_in_replays_the_expert_prefix(make_env, tiny_task):
    env = make_env([tiny_task], mode="guided", trajectories=TRAJ)
    obs, info = env.reset(seed=0, options={"prefix_len": 3})
    assert info["guided"] and info["prefix_len"] == 3
    assert "<expert_steps>" in obs and EXPERT[2] in obs and obs.count(EXPERT[3]) == 1
    assert "return a + b" in env.sandbox.read_file("calc/__init__.py")  # the privileged state
    _, reward, terminated, _, _ = env.step("submit")
    assert reward == 1.0 and terminated
    _, info = env.reset(seed=0)
    assert info["prefix_len"] == 2  # default: half the expert's commands
    with pytest.raises(ConfigError, match="prefix_len"):
        env.reset(options={"prefix_len": 9})
    env.close()


@pytest.mark.docker
def test_srl_rewards_are_step_similarities_and_the_expert_is_executed(make_env, tiny_task):
    env = make_env([tiny_task], mode="srl", trajectories=TRAJ)
    obs, info = env.reset(seed=0)
    assert "<expert_steps>" not in obs
    actions = ["grep -n add calc/__init__.py", "ls", "sed -i 's/a - b/a + b/' calc/__init__.py", "pytest", "submit"]
    for k, action in enumerate(actions):
        obs, reward, terminated, truncated, info = env.step(action)
        assert reward == difflib.SequenceMatcher(None, action, EXPERT[k]).ratio()
        assert info["expert_step"] == k and EXPERT[k] in obs
    assert terminated and not truncated
    assert "\n5\n" in obs  # the expert's fix ran: add(2, 3) printed 5
    obs, info = env.reset(seed=0, options={"step": 2})
    assert EXPERT[1] in obs and EXPERT[2] not in obs
    env.close()


@pytest.mark.docker
def test_async_vector_env_runs_several_sandboxes(tiny_task):
    client = docker_or_skip()
    envs = gym.make_vec("POPE-SWE-v0", num_envs=2, vectorization_mode="async",
                        vector_kwargs={"shared_memory": False}, tasks=[tiny_task], max_steps=5)
    obs, infos = envs.reset(seed=[0, 1])
    assert all(tiny_task.problem_statement in o for o in obs)
    obs, rewards, terminated, truncated, infos = envs.step(["echo one", "sed -i 's/a - b/a + b/' calc/__init__.py"])
    assert "one" in obs[0] and list(rewards) == [0.0, 0.0]
    obs, rewards, terminated, truncated, infos = envs.step(["submit", "submit"])
    assert list(rewards) == [0.0, 1.0] and all(terminated)
    envs.close()
    owners = {c.labels.get("pope-env.owner-pid") for c in client.containers.list(filters={"label": "pope-env.sandbox=1"})}
    assert not owners & {str(p.pid) for p in getattr(envs, "processes", [])}


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_bwrap_backend_runs_a_whole_episode(make_env, tiny_repo):
    env = make_env([task_record(repo_dir=tiny_repo)], backend="bwrap")
    env.reset(seed=0)
    env.step("sed -i 's/return a - b/return a + b/' calc/__init__.py")
    _, reward, terminated, _, info = env.step("submit")
    assert reward == 1.0 and terminated, info["grade"]
    env.close()
