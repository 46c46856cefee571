"""The HF policy on a tiny random-weight Llama with SmolLM2's tokenizer, and once on the real SmolLM2."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pope_env.agents.hf_policy import ChatTemplateError, HFPolicy, TokenLogprobs, plain_text_chat, stop_text  # noqa: E402
from pope_env.agents.models import load_model, load_tokenizer, resolve_model  # noqa: E402
from pope_env.agents.policy import PolicyAgent, SamplingParams  # noqa: E402
from pope_env.errors import ConfigError, UnknownNameError  # noqa: E402

PROMPTS = ["Hello", [{"role": "user", "content": "What is $\\frac{1}{2} + 1$?"}], "A longer plain prompt with ∫ and π"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("smollm2")


from tiny_models import tiny_llama  # noqa: E402  (shared with the vLLM tests)


@pytest.fixture(scope="module")
def policy(tokenizer):
    return HFPolicy(tiny_llama(tokenizer), tokenizer=tokenizer, name="tiny", progress=False)


def _flat(groups):
    return [g for group in groups for g in group]


def test_sampled_logprobs_match_a_separate_forward_pass(policy):
    # temperature and top-p change what is sampled, not the temperature-1 log-probs reported.
    sampling = SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=12, seed=3)
    groups = policy.generate(PROMPTS, n=2, sampling=sampling)
    assert [len(g) for g in groups] == [2, 2, 2]
    for prompt, group in zip(PROMPTS, groups):
        for gen in group:
            assert list(gen.prompt_ids) == policy.encode([prompt])[0]
            assert len(gen.token_ids) == len(gen.logprobs) == 12 and gen.finish_reason == "length"
            with torch.no_grad():
                ids = torch.tensor([list(gen.prompt_ids) + list(gen.token_ids)])
                logits = policy.model(ids).logits[0, len(gen.prompt_ids) - 1 : -1].float()
            expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(gen.token_ids)[:, None])[:, 0]
            assert torch.allclose(torch.tensor(gen.logprobs), expected, atol=1e-4)
            assert gen.text == policy.tokenizer.decode(gen.token_ids, skip_special_tokens=True)


def test_token_logprobs_match_generation_and_carry_gradients(policy):
    gens = _flat(policy.generate(PROMPTS, n=2, sampling=SamplingParams(max_new_tokens=9, seed=5)))
    completions = [list(g.token_ids)[: 3 + i] for i, g in enumerate(gens)]  # ragged lengths
    out = policy.token_logprobs([g.prompt_ids for g in gens], completions, with_entropy=True)
    assert isinstance(out, TokenLogprobs)
    assert out.logprobs.shape == out.mask.shape == out.entropy.shape == (6, 8)
    assert out.mask.sum(1).tolist() == [len(c) for c in completions]
    for b, (g, c) in enumerate(zip(gens, completions)):
        assert torch.allclose(out.logprobs[b, : len(c)], torch.tensor(g.logprobs[: len(c)]), atol=1e-4)
        assert float(out.logprobs[b, len(c) :].detach().abs().sum()) == 0.0
    # Entropy against a direct computation for the first row.
    with torch.no_grad():
        ids = torch.tensor([list(gens[0].prompt_ids) + completions[0]])
        logp = torch.log_softmax(policy.model(ids).logits[0, len(gens[0].prompt_ids) - 1 : -1].float(), -1)
    assert torch.allclose(out.entropy[0, :3], -(logp.exp() * logp).sum(-1), atol=1e-4)
    loss = -(out.logprobs * out.mask).sum() / out.mask.sum()
    loss.backward()
    grads = [p.grad for p in policy.model.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    policy.model.zero_grad(set_to_none=True)


def test_token_logprobs_accepts_an_empty_completion(policy):
    out = policy.token_logprobs([[1, 2, 3], [4]], [[], [5, 6]])
    assert out.mask.tolist() == [[False, False], [True, True]] and out.entropy is None


def test_same_seed_same_samples_other_seed_other_samples(policy):
    a = policy.generate(PROMPTS, n=2, sampling=SamplingParams(max_new_tokens=10, seed=11))
    b = policy.generate(PROMPTS, n=2, sampling=SamplingParams(max_new_tokens=10, seed=11))
    c = policy.generate(PROMPTS, n=2, sampling=SamplingParams(max_new_tokens=10, seed=12))
    assert [g.token_ids for g in _flat(a)] == [g.token_ids for g in _flat(b)]
    assert [g.logprobs for g in _flat(a)] == [g.logprobs for g in _flat(b)]
    assert [g.token_ids for g in _flat(a)] != [g.token_ids for g in _flat(c)]


def test_generate_seeded_with_one_prompt_equals_the_seeded_generate_call_on_cpu(policy):
    for sampling in (SamplingParams(max_new_tokens=12), SamplingParams(max_new_tokens=12, top_p=0.8)):
        for prompt, seed in zip(PROMPTS, (5, 6, 2**40 + 3)):
            (seeded,) = policy.generate_seeded([prompt], n=3, sampling=sampling, seeds=[seed])
            (plain,) = policy.generate([prompt], n=3, sampling=SamplingParams(**{**sampling.__dict__, "seed": seed}))
            assert [g.token_ids for g in seeded] == [g.token_ids for g in plain]
            assert [g.text for g in seeded] == [g.text for g in plain]


def test_generate_seeded_gives_each_prompt_its_own_stream(tokenizer, policy):
    sampling = SamplingParams(max_new_tokens=10, stop=("\n",), seed=999)  # sampling.seed is ignored
    together = policy.generate_seeded(PROMPTS, n=2, sampling=sampling, seeds=[1, 2, 3])
    alone = [policy.generate_seeded([p], n=2, sampling=sampling, seeds=[s])[0] for p, s in zip(PROMPTS, [1, 2, 3])]
    reversed_ = policy.generate_seeded(PROMPTS[::-1], n=2, sampling=sampling, seeds=[3, 2, 1])[::-1]
    # batches of 3 rows split prompts' rows across forward batches
    split = HFPolicy(policy.model, tokenizer=tokenizer, batch_size=3, progress=False).generate_seeded(
        PROMPTS, n=2, sampling=sampling, seeds=[1, 2, 3])
    ids = [[g.token_ids for g in group] for group in together]
    assert ids == [[g.token_ids for g in group] for group in alone]
    assert ids == [[g.token_ids for g in group] for group in reversed_]
    assert ids == [[g.token_ids for g in group] for group in split]
    other = policy.generate_seeded(PROMPTS, n=2, sampling=sampling, seeds=[1, 2, 4])
    assert [g.token_ids for g in other[0]] == ids[0] and [g.token_ids for g in other[2]] != ids[2]
    for x, y in zip(_flat(together), _flat(alone)):
        assert max(abs(p - q) for p, q in zip(x.logprobs, y.logprobs)) < 1e-4


def test_generate_seeded_refuses_a_seed_count_that_does_not_match(policy):
    from pope_env.agents.policy import has_seeded_generate

    assert has_seeded_generate(policy)
    with pytest.raises(ConfigError, match="one seed per prompt.*2 prompt\\(s\\) and 1 seed"):
        policy.generate_seeded(PROMPTS[:2], seeds=[1])
    with pytest.raises(ConfigError, match="a single prompt"):
        policy.generate_seeded("Hello", seeds=[1])
    with pytest.raises(ConfigError, match="n must be"):
        policy.generate_seeded(PROMPTS[:1], n=0, seeds=[1])


def test_left_padding_does_not_change_greedy_outputs(tokenizer, policy):
    greedy = SamplingParams(temperature=0, max_new_tokens=8)
    batched = policy.generate(PROMPTS, sampling=greedy)
    one_by_one = HFPolicy(policy.model, tokenizer=tokenizer, batch_size=1, progress=False).generate(PROMPTS, sampling=greedy)
    assert [g.token_ids for g in _flat(batched)] == [g.token_ids for g in _flat(one_by_one)]
    for x, y in zip(_flat(batched), _flat(one_by_one)):
        assert max(abs(p - q) for p, q in zip(x.logprobs, y.logprobs)) < 1e-4


def test_stop_strings_end_the_completion_and_are_not_returned(policy):
    sampling = SamplingParams(max_new_tokens=24, seed=21)
    full = _flat(policy.generate(PROMPTS, sampling=sampling))
    # A stop string taken from the middle of the first completion's text.
    text = full[0].text
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    assert stop.strip(), "the random model produced blank text; pick another seed"
    stopped = _flat(policy.generate(PROMPTS, sampling=SamplingParams(max_new_tokens=24, seed=21, stop=(stop, "\u2603"))))
    g = stopped[0]
    assert g.finish_reason == "stop"
    assert g.text == text[: text.find(stop)] and stop not in g.text
    # Every token sampled up to the one completing the stop string is kept, and no more.
    assert full[0].token_ids[: len(g.token_ids)] == g.token_ids
    assert stop in policy.tokenizer.decode(g.token_ids) and stop not in policy.tokenizer.decode(g.token_ids[:-1])
    assert g.logprobs == full[0].logprobs[: len(g.token_ids)]


def test_eos_ends_a_completion_and_is_kept_in_token_ids(tokenizer, policy):
    greedy = SamplingParams(temperature=0, max_new_tokens=10)
    first = policy.generate(["Hello"], sampling=greedy)[0][0]
    model = copy.deepcopy(policy.model)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, first.token_ids[2]]
    g = HFPolicy(model, tokenizer=tokenizer, progress=False).generate(["Hello"], sampling=greedy)[0][0]
    assert g.finish_reason == "stop" and g.token_ids == first.token_ids[:3]
    assert g.text == tokenizer.decode(first.token_ids[:2], skip_special_tokens=True)


def test_chat_messages_use_the_template_and_a_model_without_one_falls_back(tokenizer, policy):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1+1?"}]
    rendered = policy.render(messages)
    assert rendered.startswith("<|im_start|>system\nBe brief.<|im_end|>") and rendered.endswith("<|im_start|>assistant\n")
    assert policy.render("plain") == "plain"
    bare = copy.deepcopy(tokenizer)
    bare.chat_template = None
    fallback = HFPolicy(policy.model, tokenizer=bare, progress=False)
    assert fallback.render(messages) == plain_text_chat(messages) == "System: Be brief.\n\nUser: 1+1?\n\nAssistant:"
    assert fallback.generate([messages], sampling=SamplingParams(max_new_tokens=2))[0][0].token_ids
    strict = HFPolicy(policy.model, tokenizer=bare, chat_fallback=False, progress=False)
    with pytest.raises(ChatTemplateError, match="no chat template"):
        strict.generate([messages], sampling=SamplingParams(max_new_tokens=2))


def test_policy_agent_acts_with_the_hf_policy(policy):
    agent = PolicyAgent(policy, SamplingParams(max_new_tokens=4, seed=0))
    actions = agent.act_batch(["x", "y"], [{"messages": [{"role": "user", "content": "hi"}]}, {}])
    assert len(actions) == 2 and all(isinstance(a, str) for a in actions)


@pytest.mark.parametrize(
    "kwargs, n, match",
    [
        ({"temperature": -1.0}, 1, "temperature"),
        ({"top_p": 0.0}, 1, "top_p"),
        ({"max_new_tokens": 0}, 1, "max_new_tokens"),
        ({"stop": "\n\n"}, 1, "tuple of strings"),
        ({"stop": ("",)}, 1, "non-empty"),
        ({}, 0, "positive int"),
    ],
)
def test_bad_sampling_arguments_raise_config_errors(policy, kwargs, n, match):
    with pytest.raises(ConfigError, match=match):
        policy.generate(["hi"], n=n, sampling=SamplingParams(**kwargs))


def test_bad_prompts_raise_config_errors(policy):
    with pytest.raises(ConfigError, match="sequence of prompts"):
        policy.generate("hi")
    with pytest.raises(ConfigError, match="no tokens"):
        policy.generate([""])
    with pytest.raises(ConfigError, match="str or a list"):
        policy.generate([42])
    with pytest.raises(ConfigError, match="tokenizer"):
        HFPolicy(policy.model)


def test_stop_text_helper():
    assert stop_text("a\n\nb\n\nc", ("\n\n",)) == ("a", True)
    assert stop_text("abc", ("x", "c", "b")) == ("a", True)
    assert stop_text("abc", ("z",)) == ("abc", False)


def test_resolve_model_local_folder_hub_id_and_unknown_names(tmp_path, tokenizer, policy):
    policy.model.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    assert resolve_model(tmp_path / "tiny") == tmp_path / "tiny"
    model, tok = load_model(str(tmp_path / "tiny"), device="cpu")
    assert tok.padding_side == "left" and model.config.hidden_size == 64
    for name, param in model.state_dict().items():
        assert torch.equal(param, policy.model.state_dict()[name])
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(UnknownNameError, match="no-such-model"):
        resolve_model("no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(OSError, match="config.json"):
        resolve_model(tmp_path / "empty")




# ---------------------------------------------------------------- step-wise generation (issue 8)
def test_a_partial_assistant_message_is_continued_not_closed(policy):
    from pope_env.agents.hf_policy import render_prompt

    question = [{"role": "user", "content": "Compute $2+3+4$."}]
    step = "First, $2+3=5$.\n\n"
    continued = policy.render(question + [{"role": "assistant", "content": step}])
    assert continued == policy.render(question) + step
    bare = copy.deepcopy(policy.tokenizer)
    bare.chat_template = None
    assert render_prompt(bare, question + [{"role": "assistant", "content": step}]) == plain_text_chat(question) + " " + step


def test_step_agent_stops_at_the_boundary_and_puts_it_back(policy):
    from pope_env.agents.step_agent import StepPolicyAgent

    greedy = SamplingParams(temperature=0, max_new_tokens=24)
    whole = policy.generate(["Hello"], sampling=greedy)[0][0]
    sep = whole.text[len(whole.text) // 3 : len(whole.text) // 3 + 2]
    assert sep.strip()
    agent = StepPolicyAgent(policy, greedy, separator=sep)
    step = agent.act("Hello", {})
    assert step == whole.text[: whole.text.find(sep) + len(sep)]
    (gen,) = agent.last_generations
    assert gen.extra["stop_reason"] == sep and whole.token_ids[: len(gen.token_ids)] == gen.token_ids
    # Without a boundary before the budget runs out the step is cut and returned as is.
    budget = StepPolicyAgent(policy, SamplingParams(temperature=0, max_new_tokens=3), separator="\u2603\u2603")
    assert budget.act("Hello", {}) == policy.generate(["Hello"], sampling=SamplingParams(temperature=0, max_new_tokens=3))[0][0].text
    assert budget.last_generations[0].finish_reason == "length"
    with pytest.raises(ConfigError, match="separator"):
        StepPolicyAgent(policy, separator="")


def test_steps_assembled_one_call_at_a_time_equal_the_one_shot_text(policy):
    """Steps concatenate to the one-shot text whenever re-encoding the prefix keeps its tokens."""
    from pope_env.agents.step_agent import StepPolicyAgent

    greedy = SamplingParams(temperature=0, max_new_tokens=40)
    messages = [{"role": "user", "content": "Go on."}]
    whole = policy.generate([messages], sampling=greedy)[0][0]
    sep = whole.text[len(whole.text) // 2 : len(whole.text) // 2 + 1]
    agent = StepPolicyAgent(policy, greedy, separator=sep)
    first = agent.act("", {"messages": messages})
    prefix_ids = policy.encode([messages + [{"role": "assistant", "content": first}]])[0]
    if prefix_ids != list(whole.prompt_ids) + list(agent.last_generations[0].token_ids):
        pytest.skip("the random model's tokens do not re-encode to themselves; nothing to compare")
    rest = policy.generate([messages + [{"role": "assistant", "content": first}]],
                           sampling=SamplingParams(temperature=0, max_new_tokens=40 - len(prefix_ids) + len(whole.prompt_ids)))
    assert first + rest[0][0].text == whole.text


def test_step_agent_drives_the_step_env_and_one_shot_scores_the_same(policy):
    from pope_env.agents.step_agent import StepPolicyAgent
    from pope_env.envs.math import MathEnv
    from pope_env.envs.steps import MathStepsEnv

    steps_env = MathStepsEnv(dataset="math500", limit=2, max_steps=3)
    one_shot = MathEnv(dataset="math500", limit=2)
    agent = StepPolicyAgent(policy, SamplingParams(temperature=0, max_new_tokens=6))
    obs, info = steps_env.reset(seed=0)
    actions, done = [], False
    while not done:
        actions.append(agent.act(obs, info))
        obs, reward, terminated, truncated, info = steps_env.step(actions[-1])
        done = terminated or truncated
    assert info["agent_steps"] == len(actions) and steps_env.solution_so_far.startswith(actions[0])
    one_shot.reset(options={"problem_id": info["problem_id"]})
    assert one_shot.step(steps_env.solution_so_far)[1] == reward


# ---------------------------------------------------------------- the real SmolLM2 (slow)
EASY_MATH500_ID = "math500/test/prealgebra/1747"  # 1^(2^235423523): SmolLM2-135M gets it greedily


@pytest.fixture(scope="module")
def smollm2():
    return HFPolicy("smollm2", progress=False)


@pytest.mark.slow
def test_real_smollm2_answers_a_math500_problem_through_the_env(smollm2):
    import gymnasium as gym

    import pope_env  # noqa: F401 - registers the env ids

    env = gym.make("POPE-Math-Eval-v0")
    obs, info = env.reset(options={"problem_id": EASY_MATH500_ID})
    agent = PolicyAgent(smollm2, SamplingParams(temperature=0, max_new_tokens=160))
    action = agent.act(obs, info)
    _, reward, terminated, _, info = env.step(action)
    assert terminated and reward == 1.0 and info["correct"], action


@pytest.mark.slow
def test_real_smollm2_step_by_step_scores_like_the_same_text_in_one_action(smollm2):
    from pope_env.agents.step_agent import StepPolicyAgent
    from pope_env.envs.math import MathEnv
    from pope_env.envs.steps import MathStepsEnv

    steps_env = MathStepsEnv(dataset="math500", max_steps=6)
    agent = StepPolicyAgent(smollm2, SamplingParams(temperature=0, max_new_tokens=80))
    obs, info = steps_env.reset(options={"problem_id": EASY_MATH500_ID})
    done = False
    while not done:
        action = agent.act(obs, info)
        (gen,) = agent.last_generations
        assert action.endswith("\n\n") or gen.finish_reason == "length" or gen.extra["stop_reason"] is None
        obs, reward, terminated, truncated, info = steps_env.step(action)
        done = terminated or truncated
    one_shot = MathEnv(dataset="math500")
    one_shot.reset(options={"problem_id": EASY_MATH500_ID})
    _, one_shot_reward, _, _, one_info = one_shot.step(steps_env.solution_so_far)
    if terminated:  # the policy wrote a \boxed answer: both envs must give the same verdict
        assert one_shot_reward == reward and one_info["correct"] == info["correct"]
    else:  # cut at the step budget before any \boxed: the step env's reward is 0 by definition
        assert truncated and reward == 0.0 and "\\boxed" not in steps_env.solution_so_far
