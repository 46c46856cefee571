"""The learner's chunked output layer: same log-probs, entropies and gradients as full logits,
far less memory kept for backward, and a GRPO update that frees each micro-batch's graph.

Memory is measured as the bytes autograd saves for backward (``saved_tensors_hooks``), on a
tiny random Llama/Qwen2 with SmolLM2's 49k-token vocabulary, where the ``[B, T, vocab]``
logits dominate exactly as they do on the real model.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pope_env.agents import hf_policy  # noqa: E402
from pope_env.agents.grpo import Batch, GRPOConfig, grpo_update, make_optimizer  # noqa: E402
from pope_env.agents.hf_policy import HFPolicy, chunked_token_logprobs  # noqa: E402
from pope_env.agents.models import load_tokenizer  # noqa: E402
from tiny_models import tiny_llama  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("smollm2")


def tiny_qwen2(tokenizer, seed: int = 0) -> transformers.Qwen2ForCausalLM:
    torch.manual_seed(seed)
    config = transformers.Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return transformers.Qwen2ForCausalLM(config).eval()


def _policy(tokenizer, kind: str) -> HFPolicy:
    model = tiny_llama(tokenizer) if kind == "llama" else tiny_qwen2(tokenizer)
    policy = HFPolicy(model, tokenizer=tokenizer, name=kind, progress=False)
    policy.model.train()
    return policy


def _ragged(vocab: int, prompt_lens, completion_lens, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(0, vocab, (n,), generator=g).tolist() for n in prompt_lens]
    completions = [torch.randint(0, vocab, (n,), generator=g).tolist() for n in completion_lens]
    return prompts, completions


def _grads(model) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


class SavedBytes:
    """Bytes autograd saves for backward, besides ``model``'s weights: the total packed, and
    the peak alive at once."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.total = self.live = self.peak = 0
        # Weights (and views of them, such as a transposed weight) cost no new memory.
        self._seen: set[int] = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def __enter__(self):
        meter = self

        class Held:
            def __init__(self, t: torch.Tensor) -> None:
                self.t, self.n = t, t.numel() * t.element_size()
                meter.live += self.n
                meter.peak = max(meter.peak, meter.live)

            def __del__(self) -> None:
                meter.live -= self.n

        def pack(t: torch.Tensor):
            if t.untyped_storage().data_ptr() in self._seen:
                return t  # a weight, or a tensor already counted
            self._seen.add(t.untyped_storage().data_ptr())
            self.total += t.numel() * t.element_size()
            return Held(t.detach())  # a detached alias: holding ``t`` itself would make a reference cycle

        def unpack(x):
            return x.t if isinstance(x, Held) else x

        self._ctx = torch.autograd.graph.saved_tensors_hooks(pack, unpack)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_path_equals_full_logits(tokenizer, kind, temperature, monkeypatch):
    policy = _policy(tokenizer, kind)
    # 3 positions per chunk, so the 13 completion tokens span several chunks.
    monkeypatch.setattr(hf_policy, "CHUNK_ELEMENTS", 3 * len(tokenizer))
    prompts, completions = _ragged(len(tokenizer), (3, 7, 5), (4, 0, 9))
    weights = torch.randn(3, 9, generator=torch.Generator().manual_seed(1))
    results = {}
    for chunked in (True, False):
        policy.chunked_logprobs = chunked
        tl = policy.token_logprobs(prompts, completions, with_entropy=True, temperature=temperature)
        policy.model.zero_grad()
        (tl.logprobs * weights).sum().backward(retain_graph=True)
        grad_lp = _grads(policy.model)
        policy.model.zero_grad()
        (tl.entropy * weights).sum().backward()
        results[chunked] = (tl, grad_lp, _grads(policy.model))
    (ch, ch_glp, ch_gent), (full, full_glp, full_gent) = results[True], results[False]
    assert ch.logprobs.shape == full.logprobs.shape == (3, 9)
    assert torch.equal(ch.mask, full.mask)
    assert torch.allclose(ch.logprobs, full.logprobs, atol=1e-5)
    assert torch.allclose(ch.entropy, full.entropy, atol=1e-4)
    assert (ch.logprobs[~ch.mask] == 0).all() and (ch.entropy[~ch.mask] == 0).all()
    for a, b in zip(ch_glp + ch_gent, full_glp + full_gent):
        assert (a - b).abs().max() <= 1e-4 * b.abs().max() + 1e-6  # float32 sums in another order


def test_temperature_changes_the_scored_distribution(tokenizer):
    policy = _policy(tokenizer, "llama")
    prompts, completions = _ragged(len(tokenizer), (4,), (6,))
    with torch.no_grad():
        t1 = policy.token_logprobs(prompts, completions, with_entropy=True)
        t2 = policy.token_logprobs(prompts, completions, with_entropy=True, temperature=2.0)
        ids = torch.tensor([prompts[0] + completions[0]])
        logits = policy.model(ids).logits[0, 3:-1].float() / 2.0
    expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(completions[0])[:, None])[:, 0]
    assert torch.allclose(t2.logprobs[0], expected, atol=1e-5)
    assert (t2.entropy > t1.entropy).all()  # a hotter distribution is flatter


def test_chunked_function_with_bias_matches_reference():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(11, 8, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 8, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(50, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 50, (11,), generator=g)
    g_lp, g_ent = torch.randn(11, generator=g), torch.randn(11, generator=g)
    lp, ent = chunked_token_logprobs(hidden, weight, bias, targets, temperature=0.5, with_entropy=True,
                                     chunk_elements=4 * 50)
    got = torch.autograd.grad((lp * g_lp).sum() + (ent * g_ent).sum(), (hidden, weight, bias))
    log_p = torch.log_softmax(((hidden @ weight.T + bias) / 0.5).float(), -1)
    ref_lp = log_p.gather(1, targets[:, None])[:, 0]
    ref_ent = -(log_p.exp() * log_p).sum(-1)
    want = torch.autograd.grad((ref_lp * g_lp).sum() + (ref_ent * g_ent).sum(), (hidden, weight, bias))
    assert torch.allclose(lp, ref_lp, atol=1e-5) and torch.allclose(ent, ref_ent, atol=1e-5)
    for a, b in zip(got, want):
        assert torch.allclose(a.double(), b.double(), atol=1e-4)


def test_chunked_path_saves_far_less_for_backward(tokenizer):
    """4 completions x 64 tokens over a 49k vocabulary: full float32 logits are 50 MB per copy."""
    policy = _policy(tokenizer, "llama")
    prompts, completions = _ragged(len(tokenizer), (5, 9, 3, 7), (64, 64, 50, 64))
    one_logits_copy = 4 * 64 * len(tokenizer) * 4
    saved = {}
    for chunked in (True, False):
        policy.chunked_logprobs = chunked
        with SavedBytes(policy.model) as meter:
            tl = policy.token_logprobs(prompts, completions, with_entropy=True)
        saved[chunked] = meter.total
        del tl
    assert saved[False] > 2 * one_logits_copy  # the old path keeps several [B, T, vocab] tensors
    assert saved[True] < one_logits_copy / 10
    assert saved[True] < saved[False] / 20


def test_default_policy_uses_the_chunked_path(tokenizer):
    policy = _policy(tokenizer, "llama")
    prompts, completions = _ragged(len(tokenizer), (5, 9), (64, 64))
    with SavedBytes(policy.model) as meter:
        policy.token_logprobs(prompts, completions, with_entropy=True)
    assert meter.total < 2 * 64 * len(tokenizer) * 4 / 10


def test_grpo_update_frees_each_micro_batch_graph(tokenizer):
    """With full logits, the logged entropy's graph must not live into the next micro-batch."""
    policy = _policy(tokenizer, "llama")
    policy.chunked_logprobs = False
    prompts, completions = _ragged(len(tokenizer), (4, 4, 4, 4), (32, 32, 32, 32))
    with torch.no_grad():
        old = policy.token_logprobs(prompts, completions).logprobs
    batch = Batch(prompt_ids=prompts, completion_ids=completions, advantages=[1.0, -1.0, 0.5, -0.5],
                  old_logprobs=[row[: len(c)].tolist() for row, c in zip(old, completions)])
    peaks = {}
    for micro in (2, 4):
        config = GRPOConfig(lr=1e-6, micro_batch_size=micro)
        with SavedBytes(policy.model) as meter:
            grpo_update(policy, make_optimizer(policy.model, config), batch, config)
        peaks[micro] = meter.peak
    # Two micro-batches of 2 hold at most one micro-batch's graph at a time: half the peak
    # of one micro-batch of 4 (plus a little), not the same peak.
    assert peaks[2] < 0.6 * peaks[4]


def test_micro_batches_group_similar_lengths(tokenizer):
    """Each micro-batch is padded to its longest completion: sorting by length pads less."""
    policy = _policy(tokenizer, "llama")
    prompts, completions = _ragged(len(tokenizer), (4, 4, 4, 4), (2, 30, 3, 31))
    with torch.no_grad():
        old = policy.token_logprobs(prompts, completions).logprobs
    batch = Batch(prompt_ids=prompts, completion_ids=completions, advantages=[1.0, -1.0, 0.5, -0.5],
                  old_logprobs=[row[: len(c)].tolist() for row, c in zip(old, completions)])
    widths: list[int] = []
    real = policy.token_logprobs

    def recording(prompt_ids, completion_ids, **kw):
        out = real(prompt_ids, completion_ids, **kw)
        widths.append(out.logprobs.shape[1])
        return out

    policy.token_logprobs = recording
    config = GRPOConfig(lr=1e-6, micro_batch_size=2)
    stats = grpo_update(policy, make_optimizer(policy.model, config), batch, config)
    assert sorted(widths) == [3, 31]  # in batch order it would be [30, 31]
    assert stats.tokens == 66 and not stats.skipped


def test_sample_categorical_matches_the_distribution():
    probs = torch.tensor([[0.0, 0.5, 0.2, 0.3, 0.0], [0.1, 0.0, 0.0, 0.0, 0.9]]).repeat(2000, 1)
    draws = hf_policy.sample_categorical(probs, torch.Generator().manual_seed(0))
    assert draws.shape == (4000,) and draws.dtype == torch.long
    first, second = draws[0::2], draws[1::2]
    assert set(first.tolist()) <= {1, 2, 3} and set(second.tolist()) <= {0, 4}  # never a 0-probability token
    freq = torch.bincount(first, minlength=5).double() / first.numel()
    assert torch.allclose(freq, probs[0].double(), atol=0.04)
    assert abs((second == 4).double().mean().item() - 0.9) < 0.03
    again = hf_policy.sample_categorical(probs, torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)  # reproducible for a seed
    unnormalised = hf_policy.sample_categorical(probs * 7.0, torch.Generator().manual_seed(0))
    assert torch.equal(draws, unnormalised)
