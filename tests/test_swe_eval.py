"""The SWE agent loop, the oracle, and ``pope-env swe-eval`` end to end (predictions, resume)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pope_env.agents.swe_agent import FormatError, OracleAgent, SWEAgent, parse_action, run_episode
from pope_env.envs.swe import SWEEnv
from pope_env.errors import ConfigError
from swe_helpers import (EXPERT, FIXING_REPLIES, ScriptedPolicy, docker_or_skip, task_record, tiny_image,  # noqa: F401
                         tiny_repo, tiny_task)

ROOT = Path(__file__).resolve().parents[1]


def test_parse_action_takes_exactly_one_bash_block():
    assert parse_action("Reasoning.\n```bash\nls -la\n```\nMore text.") == "ls -la"
    assert parse_action("```sh\ncat <<'EOF' > f.py\nx = 1\nEOF\n```") == "cat <<'EOF' > f.py\nx = 1\nEOF"
    for bad in ("no block at all", "```bash\nls\n```\n```bash\npwd\n```", "```bash\n\n```", "```python\nx\n```"):
        with pytest.raises(FormatError, match="exactly one"):
            parse_action(bad)


@pytest.mark.docker
def test_llm_agent_loop_recovers_from_format_errors_and_resolves(tiny_task):
    policy = ScriptedPolicy(FIXING_REPLIES)
    env = SWEEnv([tiny_task])
    try:
        record = run_episode(env, SWEAgent(policy), instance_id=tiny_task.instance_id)
    finally:
        env.close()
    assert record.resolved and record.reward == 1.0
    assert [s["action"] for s in record.steps] == ["grep -n 'def add' -A 3 calc/__init__.py",
                                                   "sed -i 's/a - b/a + b/' calc/__init__.py", "submit"]
    roles = [m["role"] for m in record.messages]
    assert roles[:2] == ["system", "user"] and roles.count("assistant") == 4
    assert any("exactly one ```bash block" in m["content"] for m in record.messages if m["role"] == "user")
    # later turns carry the command output, not the issue again
    assert "return a - b" in policy.prompts[1][-1]["content"]
    assert "<issue>" not in policy.prompts[1][-1]["content"]


def test_oracle_agent_follows_the_roll_in():
    oracle = OracleAgent({"i": ["a", "b", "c", "submit"]})
    assert oracle.act("obs", {"instance_id": "i", "prefix_len": 2, "episode_start": True}) == "c"
    assert oracle.act("obs", {"instance_id": "i", "step": 1, "episode_start": False}) == "submit"
    assert oracle.act("obs", {"instance_id": "i", "step": 2, "episode_start": False}) == "submit"
    with pytest.raises(ConfigError, match="episode_start"):  # not a SWE env's info: say so, don't guess
        oracle.act("obs", {"instance_id": "i"})


def _write_instances(tmp_path: Path, image: str) -> tuple[Path, Path]:
    records = [task_record(image=image), task_record(image=image, instance_id="tiny__calc-2")]
    instances = tmp_path / "instances.jsonl"
    instances.write_text("".join(json.dumps(r) + "\n" for r in records))
    traj = tmp_path / "traj.json"
    traj.write_text(json.dumps({"tiny__calc-1": EXPERT, "tiny__calc-2": ["echo 'I give up'", "submit"]}))
    return instances, traj


@pytest.mark.docker
def test_swe_eval_writes_swebench_predictions_report_and_resumes(tiny_image, tmp_path):
    from swebench.harness.utils import get_predictions_from_file

    instances, traj = _write_instances(tmp_path, tiny_image)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "pope_env", "swe-eval", "--agent", "oracle", "--instances", str(instances),
           "--trajectories", str(traj), "--workers", "2", "--output", str(out), "--model-name", "my-model"]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "resolved 1/2 (50.0%)" in first.stdout and "swe-eval" in first.stderr  # progress bar on stderr
    preds = get_predictions_from_file(str(out / "predictions.jsonl"), "local", "test")
    assert [sorted(p) for p in preds] == [["instance_id", "model_name_or_path", "model_patch"]] * 2
    by_id = {p["instance_id"]: p for p in preds}
    assert by_id["tiny__calc-2"]["model_patch"] == "" and by_id["tiny__calc-1"]["model_name_or_path"] == "my-model"
    assert "+    return a + b" in by_id["tiny__calc-1"]["model_patch"]
    report = json.loads((out / "report.json").read_text())
    assert report["resolved"] == 1 and report["resolved_rate"] == 0.5
    assert report["instances"]["tiny__calc-2"]["status"] == "EMPTY_PATCH"
    traj_1 = json.loads((out / "trajectories" / "tiny__calc-1.traj.json").read_text())
    assert [s["action"] for s in traj_1["steps"]] == EXPERT
    assert "PASSED tests/test_calc.py::test_add_positive" in (out / "logs" / "tiny__calc-1" / "test_output.txt").read_text()
    lines = (out / "results.jsonl").read_text()
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "resuming: 2 instance(s) already done" in again.stdout
    assert (out / "results.jsonl").read_text() == lines


@pytest.mark.docker
def test_swe_eval_runs_a_policy_given_as_module_factory(tiny_image, tmp_path):
    from pope_env.agents.swe_eval import EvalConfig, evaluate

    instances, _ = _write_instances(tmp_path, tiny_image)
    report = evaluate(EvalConfig(agent="swe_helpers:scripted_fixer", instances=str(instances), ids=["tiny__calc-1"],
                                 output=tmp_path / "run"), progress=False)
    assert report["resolved"] == 1 and report["total"] == 1
    pred = json.loads((tmp_path / "run" / "predictions.jsonl").read_text())
    assert pred["model_name_or_path"] == "scripted"


def test_swe_eval_rejects_unknown_agents_and_ids(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pope_env", "swe-eval", "--agent", "gpt-17", "--instances", "x"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "use oracle, hf:MODEL, vllm:MODEL, openai:MODEL@URL or MODULE:FACTORY" in out.stderr


@pytest.mark.docker
@pytest.mark.slow
def test_oracle_resolves_the_whole_local_set(tmp_path):
    """The whole pipeline: local instances -> offline images -> sandboxes -> expert -> grading."""
    pytest.importorskip("pope_env.swe.instances", reason="the local instance set is not merged yet")
    docker_or_skip()
    from pope_env.agents.swe_eval import EvalConfig, evaluate

    report = evaluate(EvalConfig(agent="oracle", instances="local", workers=2, output=tmp_path / "run"),
                      progress=False)
    assert report["total"] >= 12
    assert report["resolved"] == report["total"], report["unresolved_ids"]


@pytest.mark.docker
@pytest.mark.slow
def test_llm_agent_drives_the_env_with_a_real_tiny_transformer(tiny_task):
    """A random-weight Llama (SmolLM2's tokenizer, chat template) through SWEAgent: the loop
    renders real chat prompts, samples real tokens, and ends the episode cleanly however
    malformed the replies are."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from pope_env.agents.hf_policy import HFPolicy
    from pope_env.agents.models import load_tokenizer
    from pope_env.agents.policy import SamplingParams

    tokenizer = load_tokenizer("smollm2")
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)).eval()
    policy = HFPolicy(model, tokenizer=tokenizer, name="tiny-llama", progress=False)
    agent = SWEAgent(policy, SamplingParams(temperature=1.0, max_new_tokens=12, seed=0), max_format_errors=1)
    env = SWEEnv([tiny_task], max_steps=2)
    try:
        record = run_episode(env, agent, instance_id=tiny_task.instance_id)
    finally:
        env.close()
    assert record.steps and record.steps[-1]["action"] == "submit"  # random text never has a bash block
    assert record.reward == 0.0 and not record.resolved and record.grade["status"] == "EMPTY_PATCH"
    assert [m["role"] for m in record.messages][:3] == ["system", "user", "assistant"]
