"""The lean Llama-family decode step against the library's forward, and HFPolicy's use of it."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pope_env.agents import fast_decode  # noqa: E402
from pope_env.agents.fast_decode import LlamaDecoder, unsupported_reason  # noqa: E402
from pope_env.agents.hf_policy import HFPolicy  # noqa: E402
from pope_env.agents.policy import SamplingParams  # noqa: E402

VOCAB, PAD = 97, 0


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(kind: str, seed: int = 0, **overrides):
    """A random 2-layer model of each supported family (GQA on, biases where the family has them)."""
    common = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  pad_token_id=PAD, bos_token_id=1, eos_token_id=2)
    common.update(overrides)
    torch.manual_seed(seed)
    if kind == "llama":
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(**common)).eval()
    if kind == "llama-rope-scaled":
        cfg = transformers.LlamaConfig(**common, rope_scaling={"rope_type": "linear", "factor": 2.0})
        return transformers.LlamaForCausalLM(cfg).eval()
    if kind == "qwen2":
        return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common)).eval()
    if kind == "mistral":
        return transformers.MistralForCausalLM(transformers.MistralConfig(**common, sliding_window=None)).eval()
    raise ValueError(kind)


def _prompts(batch: int, seed: int = 1):
    """Left-padded random prompts of different lengths: ids, 0/1 mask, positions."""
    gen = torch.Generator().manual_seed(seed)
    lengths = [5 + (7 * b) % 11 for b in range(batch)]
    width = max(lengths)
    ids = torch.full((batch, width), PAD, dtype=torch.long)
    mask = torch.zeros((batch, width), dtype=torch.long)
    for b, n in enumerate(lengths):
        ids[b, width - n :] = torch.randint(3, VOCAB, (n,), generator=gen)
        mask[b, width - n :] = 1
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def _library_decode(model, ids, mask, positions, tokens, live):
    """Logits of each decode step through the model's own forward with a DynamicCache."""
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    cache, logits = out.past_key_values, []
    for step_ids, step_live in zip(tokens, live):
        mask = torch.cat([mask, step_live.long()[:, None]], dim=1)
        positions = torch.cat([positions, positions[:, -1:] + 1], dim=1)
        out = model(input_ids=step_ids[:, None], attention_mask=mask, position_ids=positions[:, -1:],
                    past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        logits.append(out.logits[:, -1].float())
    return torch.stack(logits)


@pytest.mark.parametrize("kind,growth", [("llama", 256), ("llama", 4), ("llama-rope-scaled", 256),
                                         ("qwen2", 256), ("mistral", 3)])
def test_decode_steps_match_the_library_forward(kind, growth, monkeypatch):
    monkeypatch.setattr(LlamaDecoder, "GROWTH_TOKENS", growth)  # small: the KV buffer grows mid-run
    model = _model(kind)
    assert unsupported_reason(model) is None
    ids, mask, positions = _prompts(6)
    steps = 9
    gen = torch.Generator().manual_seed(2)
    tokens = [torch.randint(3, VOCAB, (6,), generator=gen) for _ in range(steps)]
    # Row 1 finishes after step 3 and row 4 after step 6: their later tokens are masked out.
    live = [torch.tensor([True, s < 3, True, True, s < 6, True]) for s in range(steps)]
    with torch.inference_mode():
        expected = _library_decode(model, ids, mask, positions, tokens, live)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        decoder = LlamaDecoder(model)
        decoder.start(out.past_key_values, mask, positions, max_new_tokens=steps)
        got = torch.stack([decoder.step(t, alive) for t, alive in zip(tokens, live)])
        with pytest.raises(RuntimeError, match="more decode steps than the max_new_tokens"):
            decoder.step(tokens[0])
    assert got.shape == (steps, 6, VOCAB)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_one_prefill_per_prompt_serves_every_row_of_its_group():
    model = _model("llama")
    ids, mask, positions = _prompts(3)
    rows = torch.tensor([0, 0, 1, 2, 2, 2])
    gen = torch.Generator().manual_seed(3)
    tokens = [torch.randint(3, VOCAB, (6,), generator=gen) for _ in range(5)]
    live = [torch.ones(6, dtype=torch.bool)] * 5
    with torch.inference_mode():
        expected = _library_decode(model, ids[rows], mask[rows], positions[rows], tokens, live)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        decoder = LlamaDecoder(model)
        decoder.start(out.past_key_values, mask, positions, max_new_tokens=5, rows=rows)
        got = torch.stack([decoder.step(t, alive) for t, alive in zip(tokens, live)])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_unsupported_models_and_misuse_are_named():
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=2))
    assert "gpt2" in unsupported_reason(gpt2)
    with pytest.raises(ValueError, match="cannot run this model.*gpt2"):
        LlamaDecoder(gpt2)
    decoder = LlamaDecoder(_model("llama"))
    with pytest.raises(RuntimeError, match="start"):
        decoder.step(torch.tensor([3]))
    windowed = LlamaDecoder(_model("mistral").__class__(transformers.MistralConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, sliding_window=16)))
    assert windowed.sliding_window == 16 and windowed.fits(16) and not windowed.fits(17)


def _policy(model, **kwargs):
    from tiny_learner import hf_char_tokenizer

    return HFPolicy(model, tokenizer=hf_char_tokenizer(), name="tiny", progress=False, **kwargs)


def _generations(policy, prompts=("12+7=", "3*4-1=", "9"), n=4, seed=5, stop=()):
    sampling = SamplingParams(temperature=1.0, max_new_tokens=24, seed=seed, stop=stop)
    return [(g.token_ids, g.logprobs, g.text, g.finish_reason) for grp in policy.generate(list(prompts), n=n, sampling=sampling)
            for g in grp]


def test_hf_policy_samples_the_same_with_and_without_the_fast_path():
    from tiny_learner import tiny_llama

    model = tiny_llama(seed=0)
    fast, library = _policy(model), _policy(model, fast_decode=False)
    for seed, stop in ((5, ()), (6, ("\n",))):
        assert _generations(fast, seed=seed, stop=stop) == _generations(library, seed=seed, stop=stop)
    assert fast.fast_decode and fast._fast_decode_checked and fast.fast_decode_unsupported is None
    assert fast._decoder._keys == [] and fast._decoder._mask is None  # the KV buffer is freed after a call


def test_hf_policy_keeps_the_library_forward_for_other_architectures():
    from tiny_learner import CharTokenizer

    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=CharTokenizer.vocab_size, n_embd=32, n_layer=1, n_head=2, bos_token_id=1, eos_token_id=2)).eval()
    policy = _policy(gpt2)
    groups = _generations(policy)
    assert len(groups) == 12 and all(len(t) == len(lp) for t, lp, _, _ in groups)
    assert "gpt2" in policy.fast_decode_unsupported


def test_a_fast_step_that_disagrees_is_caught_and_the_library_forward_takes_over(monkeypatch):
    from tiny_learner import tiny_llama

    model = tiny_llama(seed=0)
    reference = _generations(_policy(model, fast_decode=False))
    # A wrong rotary embedding: the fast step's logits no longer match the model's forward.
    monkeypatch.setattr(fast_decode, "_rotate", lambda x, cos, sin: x)
    policy = _policy(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = _generations(policy)
    assert any("disagrees with the model's forward" in str(w.message) for w in caught)
    assert got == reference and policy.fast_decode is False
