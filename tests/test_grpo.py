"""GRPO's pure functions against hand-computed values, dynamic sampling, and one real
optimisation step on a tiny transformer."""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from pope_env.agents.grpo import (  # noqa: E402
    Batch,
    GRPOConfig,
    aggregate,
    clipped_surrogate,
    flatten_groups,
    group_advantages,
    grpo_loss,
    grpo_update,
    informative_groups,
    kl_k3,
    compute_advantages,
    learner_logprobs,
    make_optimizer,
    passk_chen_group_advantages,
    passk_group_advantages,
)
from pope_env.agents.policy import Generation, SamplingParams  # noqa: E402
from pope_env.agents.rollout import (  # noqa: E402
    DynamicSampler,
    DynamicSamplingError,
    Group,
    MixedSource,
    PromptItem,
    Rollout,
    ShuffledItems,
    collect_groups,
)
from pope_env.errors import ConfigError  # noqa: E402


# --- advantages ---------------------------------------------------------------------------
def test_group_advantages_mean_centred_by_hand():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    a = group_advantages(r)
    assert torch.allclose(a, torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.25, 0.25, 0.25, -0.75]]))


def test_group_advantages_scaled_by_unbiased_std_by_hand():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    # mean 0.5, unbiased std sqrt((4 * 0.25) / 3) = 0.57735
    a = group_advantages(r, scale_by_std=True, eps=0.0)
    assert torch.allclose(a, torch.tensor([[0.866025, -0.866025, -0.866025, 0.866025]]), atol=1e-5)


def test_zero_variance_group_has_zero_advantage_even_scaled():
    a = group_advantages(torch.ones(1, 4), scale_by_std=True)
    assert torch.equal(a, torch.zeros(1, 4))


def test_group_size_one_is_refused():
    with pytest.raises(ConfigError, match="at least 2"):
        group_advantages(torch.tensor([[1.0], [0.0]]))


def _passk_reference(rewards: list[float], k: int) -> list[float]:
    """Pass@k-objective advantages by brute force: the group reward is the mean of
    max-reward over all k-subsets; each sample's advantage is its mean reward as a
    k-subset member minus that group reward (the analytic form's definition)."""
    n = len(rewards)
    subsets = list(itertools.combinations(range(n), k))
    group = sum(max(rewards[i] for i in s) for s in subsets) / len(subsets)
    adv = []
    for i in range(n):
        mine = [s for s in subsets if i in s]
        adv.append(sum(max(rewards[j] for j in s) for s in mine) / len(mine) - group)
    return adv


def test_passk_advantages_match_brute_force():
    for rewards in ([1.0, 0, 0, 0, 0, 0], [1.0, 1, 0, 0, 0, 0, 0, 0], [0.0, 0, 0, 0], [1.0, 1, 1, 0]):
        got = passk_group_advantages(torch.tensor([rewards], dtype=torch.float64), 3)[0].tolist()
        want = _passk_reference(rewards, 3)
        # The POPE paper's form with grpo's centring: exactly the brute force, no extra scale.
        assert got == pytest.approx(want, abs=1e-9)


def test_passk_advantages_are_on_grpos_scale():
    # One success out of 8, k = 4: the transformed rewards are [1, 3/7 x 7]; centred as grpo
    # centres them, A = (4/7) * A_grpo: +0.5 for the success (grpo: +0.875), -1/14 (-0.125).
    one = torch.tensor([[1.0, 0, 0, 0, 0, 0, 0, 0]], dtype=torch.float64)
    grpo = group_advantages(one)
    passk = passk_group_advantages(one, 4)
    assert passk[0].tolist() == pytest.approx([0.5] + [-1 / 14] * 7)
    assert passk == pytest.approx(grpo * 4 / 7)
    # Chen et al.'s std-normalised form, still reachable as passk-chen, is 1.14x grpo here
    chen = compute_advantages(one, GRPOConfig(advantage="passk-chen", passk_k=4))
    assert chen[0, 0].item() == pytest.approx(1.0) and chen[0, 1].item() == pytest.approx(-1 / 7)
    assert torch.equal(chen, passk_chen_group_advantages(one, 4))
    # The bound, over every group of 8 and every k: the same sign as grpo and never larger,
    # |A_passk| <= |A_grpo| (equal at k = 1), where Chen's form reaches 3x grpo.
    worst_chen = 0.0
    for c in range(9):
        rewards = torch.tensor([[1.0] * c + [0.0] * (8 - c)], dtype=torch.float64)
        g = group_advantages(rewards)
        for k in range(1, 9):
            a = compute_advantages(rewards, GRPOConfig(advantage="passk", passk_k=k))
            assert (a.abs() <= g.abs() + 1e-12).all() and (a * g >= 0).all()
            if k == 1:
                assert torch.allclose(a, g)
            ch = compute_advantages(rewards, GRPOConfig(advantage="passk-chen", passk_k=k))
            worst_chen = max(worst_chen, (ch.abs().max() / g.abs().max()).item() if c not in (0, 8) else 0.0)
    assert worst_chen == pytest.approx(3.02, abs=0.01)
    # std normalisation, when asked for, is grpo's too (for binary rewards it cancels pass@k's weight)
    two = torch.tensor([[1.0, 1, 0, 0, 0, 0, 0, 0]], dtype=torch.float64)
    assert compute_advantages(two, GRPOConfig(advantage="passk", scale_by_std=True)) == pytest.approx(
        group_advantages(two, scale_by_std=True), abs=1e-5)


def test_passk_methods_use_the_papers_form_and_keep_chens():
    from pope_env.agents.methods import get_method

    assert get_method("passk").grpo_config().advantage == "passk"
    assert get_method("passk-chen").grpo_config().advantage == "passk-chen"
    with pytest.raises(ConfigError, match="passk-chen"):
        GRPOConfig(advantage="pkpo")


def test_informative_groups_filter():
    r = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.51]])
    assert informative_groups(r).tolist() == [False, True, True]
    assert informative_groups(r, min_std=0.01).tolist() == [False, True, False]


# --- surrogate, KL, aggregation -------------------------------------------------------------
def test_clipped_surrogate_by_hand():
    old = torch.zeros(1, 4)
    # ratios e^0.5=1.6487, e^-0.5=0.6065, e^0.1=1.1052, e^-0.1=0.9048
    logp = torch.tensor([[0.5, -0.5, 0.1, -0.1]])
    pos, ratio, clipped = clipped_surrogate(logp, old, torch.tensor([2.0]), eps_low=0.2, eps_high=0.3)
    # A > 0: min(rho A, clip(rho, 0.8, 1.3) A) -> [1.3*2, 0.6065*2, 1.1052*2, 0.9048*2]
    want = -torch.tensor([[2.6, 2 * math.exp(-0.5), 2 * math.exp(0.1), 2 * math.exp(-0.1)]])
    assert torch.allclose(pos, want, atol=1e-5)
    assert clipped.tolist() == [[True, False, False, False]]
    neg, _, clipped = clipped_surrogate(logp, old, torch.tensor([-1.0]), eps_low=0.2, eps_high=0.3)
    # A < 0: min(-rho, -clip(rho)) = -max(rho, clip(rho)) -> [-1.6487, -0.8, -1.1052, -0.9048]
    want = torch.tensor([[math.exp(0.5), 0.8, math.exp(0.1), math.exp(-0.1)]])
    assert torch.allclose(neg, want, atol=1e-5)
    assert clipped.tolist() == [[False, True, False, False]]
    assert torch.allclose(ratio, logp.exp())


def test_clipped_gradient_is_zero_where_clipped():
    logp = torch.tensor([[0.5, 0.0]], requires_grad=True)
    loss, _, _ = clipped_surrogate(logp, torch.zeros(1, 2), torch.tensor([1.0]))
    loss.sum().backward()
    assert logp.grad.tolist() == [[0.0, -1.0]]  # d(-rho)/dlogp = -rho = -1 at logp 0


def test_kl_k3_by_hand():
    logp = torch.tensor([-1.0, -2.0, -0.5])
    ref = torch.tensor([-1.0, -1.0, -1.0])
    d = ref - logp  # [0, 1, -0.5]
    want = torch.exp(d) - d - 1
    assert torch.allclose(kl_k3(logp, ref), want)
    assert kl_k3(logp, ref)[0] == 0 and bool((kl_k3(logp, ref) >= 0).all())
    assert kl_k3(logp, ref)[1].item() == pytest.approx(math.e - 2)


def test_token_vs_sequence_aggregation_by_hand():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert aggregate(values, mask, how="token").item() == pytest.approx(10 / 4)
    assert aggregate(values, mask, how="sequence").item() == pytest.approx((2 + 4) / 2)
    # parts with the global normaliser add up to the whole
    a = aggregate(values[:1], mask[:1], how="token", normalizer=4)
    b = aggregate(values[1:], mask[1:], how="token", normalizer=4)
    assert (a + b).item() == pytest.approx(10 / 4)


def test_grpo_loss_with_kl_and_entropy_by_hand():
    logp = torch.tensor([[-1.0, -1.0], [-2.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = torch.tensor([1.0, -1.0])
    ref = torch.tensor([[-1.0, 0.0], [-2.0, 0.0]])
    ent = torch.tensor([[0.5, 0.5], [1.0, 9.0]])
    terms = grpo_loss(logp, logp.detach(), adv, mask, ref_logp=ref, kl_beta=0.1, entropy=ent, entropy_coef=0.01)
    # ratios are 1: policy loss = mean over 3 tokens of -A = (-1 - 1 + 1) / 3
    assert terms.policy_loss.item() == pytest.approx(-1 / 3)
    kl_tok1 = math.exp(1) - 1 - 1
    assert terms.kl.item() == pytest.approx(kl_tok1 / 3)
    assert terms.entropy.item() == pytest.approx(2.0 / 3)
    assert terms.loss.item() == pytest.approx(-1 / 3 + 0.1 * kl_tok1 / 3 - 0.01 * 2 / 3)
    assert terms.clip_fraction.item() == 0


def test_grpo_loss_needs_ref_for_kl():
    x = torch.zeros(1, 1)
    with pytest.raises(ConfigError, match="ref_logp"):
        grpo_loss(x, x, torch.zeros(1), torch.ones(1, 1), kl_beta=0.1)


def test_config_validation():
    with pytest.raises(ConfigError, match="eps_low"):
        GRPOConfig(eps_low=1.5)
    with pytest.raises(ConfigError, match="aggregation"):
        GRPOConfig(aggregation="mean")  # type: ignore[arg-type]


# --- rollouts and dynamic sampling ------------------------------------------------------------
class ScriptedPolicy:
    """A real (if trivial) policy: completion j of a prompt is ``answers[prompt][j]``."""

    name = "scripted"

    def __init__(self, answers):
        self.answers = answers
        self.calls = 0
        self.seeds = []

    def generate(self, prompts, *, n=1, sampling=SamplingParams()):
        self.calls += 1
        self.seeds.append(sampling.seed)
        return [[Generation(text=self.answers[p][j % len(self.answers[p])], prompt_ids=(1,), token_ids=(2, 3),
                            logprobs=(-1.0, -1.0)) for j in range(n)] for p in prompts]


def exact_reward(completions, items):
    return [1.0 if c == it.problem_id else 0.0 for c, it in zip(completions, items)]


def _items(names):
    return [PromptItem(prompt=n, problem_id=n) for n in names]


def test_collect_groups_scores_each_completion():
    pol = ScriptedPolicy({"a": ["a", "x"], "b": ["y"]})
    groups = collect_groups(pol, _items(["a", "b"]), exact_reward, n=4)
    assert [g.rewards for g in groups] == [[1, 0, 1, 0], [0, 0, 0, 0]]
    assert groups[0].rollouts[0].correct and not groups[0].rollouts[1].correct


def test_dynamic_sampling_drops_and_refills():
    # "easy*" always right, "hard*" never, "mixed*" half right: only mixed groups carry signal
    names = ["easy1", "mixed1", "hard1", "mixed2", "easy2", "mixed3", "hard2", "mixed4"]
    answers = {n: ([n] if n.startswith("easy") else ["?"] if n.startswith("hard") else [n, "?"]) for n in names}
    pol = ScriptedPolicy(answers)
    src = ShuffledItems(_items(names), seed=3)
    sampler = DynamicSampler(pol, src, exact_reward, group_size=4, min_std=0.0, max_refill_rounds=10)
    groups, rep = sampler.sample(3)
    assert len(groups) == 3 and all(g.item.problem_id.startswith("mixed") for g in groups)
    assert rep.dropped == rep.sampled - 3 and rep.dropped > 0 and rep.rounds >= 2
    assert rep.rounds == pol.calls


def test_dynamic_sampling_gives_up_with_a_clear_error():
    pol = ScriptedPolicy({"e": ["e"], "h": ["?"]})
    sampler = DynamicSampler(pol, ShuffledItems(_items(["e", "h"])), exact_reward, group_size=4,
                             min_std=0.0, max_refill_rounds=2)
    with pytest.raises(DynamicSamplingError, match=r"kept 0/2 groups after 3 rounds"):
        sampler.sample(2)
    assert pol.calls == 3


def test_refill_rounds_of_seeded_sampling_draw_new_samples():
    pol = ScriptedPolicy({"e": ["e"], "h": ["?"]})
    sampler = DynamicSampler(pol, ShuffledItems(_items(["e", "h"])), exact_reward, group_size=4,
                             sampling=SamplingParams(seed=5), min_std=0.0, max_refill_rounds=3)
    with pytest.raises(DynamicSamplingError):
        sampler.sample(2)
    assert pol.seeds[0] == 5 and len(set(pol.seeds)) == len(pol.seeds) == 4


def test_sampler_refuses_group_size_one():
    with pytest.raises(ConfigError, match="group_size is 1"):
        DynamicSampler(ScriptedPolicy({}), ShuffledItems(_items(["a"])), exact_reward, group_size=1)


def test_mixed_source_is_exactly_one_to_one_each_batch():
    g = ShuffledItems([PromptItem("g", f"g{i}", guided=True) for i in range(5)], name="g")
    u = ShuffledItems([PromptItem("u", f"u{i}") for i in range(7)], name="u")
    mix = MixedSource({"guided": g, "unguided": u}, {"guided": 1, "unguided": 1})
    for _ in range(6):
        batch = mix.next_items(8)
        assert sum(it.guided for it in batch) == 4
    state = mix.state_dict()
    after = [it.problem_id for it in mix.next_items(6)]
    mix.load_state_dict(state)
    assert [it.problem_id for it in mix.next_items(6)] == after


def test_shuffled_items_resume_exactly_and_refuse_other_data():
    src = ShuffledItems(_items([str(i) for i in range(5)]), seed=1)
    src.next_items(7)
    state = src.state_dict()
    want = [it.problem_id for it in src.next_items(9)]
    again = ShuffledItems(_items([str(i) for i in range(5)]), seed=1)
    again.load_state_dict(state)
    assert [it.problem_id for it in again.next_items(9)] == want
    with pytest.raises(ConfigError, match="same data"):
        ShuffledItems(_items(["x"]), seed=1).load_state_dict(state)


# --- one real optimisation step ------------------------------------------------------------
def test_one_update_on_a_tiny_transformer_decreases_the_batch_loss():
    from tiny_learner import TinyLearner

    torch.manual_seed(0)
    learner = TinyLearner(seed=0)
    prompts = ["3+4", "9*2-1"]
    gens = learner.generate(prompts, n=4, sampling=SamplingParams(max_new_tokens=6))
    groups = []
    for p, gs in zip(prompts, gens):
        rollouts = tuple(
            Rollout(text=g.text, reward=float(j % 2), correct=bool(j % 2), prompt_ids=g.prompt_ids,
                    completion_ids=g.token_ids, logprobs=g.logprobs)
            for j, g in enumerate(gs)
        )
        groups.append(Group(PromptItem(p, p), rollouts))
    cfg = GRPOConfig(lr=1e-2, micro_batch_size=3, max_grad_norm=None)
    batch = flatten_groups(groups, cfg)
    assert batch.advantages == [-0.5, 0.5, -0.5, 0.5, -0.5, 0.5, -0.5, 0.5]

    def batch_loss() -> float:
        with torch.no_grad():
            tl = learner.token_logprobs(batch.prompt_ids, batch.completion_ids)
            old = torch.zeros_like(tl.logprobs)
            for i, lp in enumerate(batch.old_logprobs):
                old[i, : len(lp)] = torch.tensor(lp)
            return grpo_loss(tl.logprobs, old, torch.tensor(batch.advantages), tl.mask).loss.item()

    before = batch_loss()
    opt = make_optimizer(learner.model, cfg)
    stats = grpo_update(learner, opt, batch, cfg)
    assert not stats.skipped
    assert stats.loss == pytest.approx(before, abs=1e-5)  # on-policy: the update's loss is the batch loss
    assert stats.ratio_mean == pytest.approx(1.0, abs=1e-4)
    after = batch_loss()
    assert after < before - 1e-3


def test_micro_batching_does_not_change_the_update():
    from tiny_learner import TinyLearner

    learner_a, learner_b = TinyLearner(seed=1), TinyLearner(seed=1)
    gens = learner_a.generate(["12+3"], n=5, sampling=SamplingParams(max_new_tokens=5))[0]
    batch = Batch([list(g.prompt_ids) for g in gens], [list(g.token_ids) for g in gens],
                  [list(g.logprobs) for g in gens], [1.0, -1.0, 0.5, -0.5, 0.0])
    # plain SGD: Adam's per-coordinate normalisation would blow up float rounding noise
    sa = grpo_update(learner_a, torch.optim.SGD(learner_a.model.parameters(), lr=1.0),
                     batch, GRPOConfig(micro_batch_size=1, max_grad_norm=None))
    sb = grpo_update(learner_b, torch.optim.SGD(learner_b.model.parameters(), lr=1.0),
                     batch, GRPOConfig(micro_batch_size=8, max_grad_norm=None))
    assert sa.loss == pytest.approx(sb.loss, abs=1e-6)
    for pa, pb in zip(learner_a.model.parameters(), learner_b.model.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)


def test_nonfinite_loss_skips_the_step_without_changing_parameters():
    from tiny_learner import TinyLearner

    learner = TinyLearner(seed=2)
    gens = learner.generate(["7-1"], n=2, sampling=SamplingParams(max_new_tokens=4))[0]
    batch = Batch([list(g.prompt_ids) for g in gens], [list(g.token_ids) for g in gens],
                  [[float("nan")] * len(g.token_ids) for g in gens], [1.0, -1.0])
    before = [p.detach().clone() for p in learner.model.parameters()]
    cfg = GRPOConfig(lr=1e-2)
    stats = grpo_update(learner, make_optimizer(learner.model, cfg), batch, cfg)
    assert stats.skipped and math.isnan(stats.loss)
    assert all(torch.equal(a, b) for a, b in zip(before, learner.model.parameters()))


# --- log-probs at the sampling temperature -------------------------------------------------
def _learner(kind: str):
    from tiny_learner import TinyLearner, hf_char_tokenizer, tiny_llama

    if kind == "tiny":
        return TinyLearner(seed=3)
    if kind == "hf":
        from pope_env.agents.hf_policy import HFPolicy

        return HFPolicy(tiny_llama(3), tokenizer=hf_char_tokenizer(), name="tiny-hf", progress=False)
    from pope_env.agents.charlm import CharLMConfig, CharLMPolicy, CharTransformer

    torch.manual_seed(3)
    return CharLMPolicy(CharTransformer(CharLMConfig(d_model=32, n_layers=2, n_heads=2, max_len=96)))


def _vocab(learner) -> int:
    cfg = getattr(learner.model, "config", None) or learner.model.cfg
    return int(cfg.vocab_size)


@pytest.mark.parametrize("kind", ["tiny", "hf", "charlm"])
def test_learner_logprobs_at_temperature_are_the_sampling_distributions(kind):
    """Samples drawn at temperature 0.7 come from softmax(logits / 0.7); the learner's
    log-probs at temperature 0.7 must be that distribution's, for every learner."""
    learner = _learner(kind)
    tau = 0.7
    gens = learner.generate(["12+3", "7*2-1"], n=2, sampling=SamplingParams(temperature=tau, max_new_tokens=5, seed=4))
    gens = [g for row in gens for g in row if g.token_ids]
    assert gens
    with torch.no_grad():
        # the policy contract: Generation.logprobs are temperature-1 log-probs
        tl1 = learner.token_logprobs([g.prompt_ids for g in gens], [g.token_ids for g in gens])
        for row, g in zip(tl1.logprobs, gens):
            assert row[: len(g.token_ids)].tolist() == pytest.approx(list(g.logprobs), abs=2e-4)
        tlt = learner.token_logprobs([g.prompt_ids for g in gens], [g.token_ids for g in gens], temperature=tau,
                                     with_entropy=True)
        # the sampling distribution at each sampled position, from the full temperature-1
        # distribution over the vocabulary: log_softmax(log_softmax(logits) / tau)
        vocab = _vocab(learner)
        for b, g in enumerate(gens):
            for t in range(len(g.token_ids)):
                stems = [list(g.token_ids[:t]) + [v] for v in range(vocab)]
                full = learner.token_logprobs([g.prompt_ids] * vocab, stems).logprobs[:, t]
                sampling = torch.log_softmax(full / tau, dim=0)
                assert tlt.logprobs[b, t].item() == pytest.approx(sampling[g.token_ids[t]].item(), abs=1e-4)
                entropy = -(sampling.exp() * sampling).sum().item()
                assert tlt.entropy[b, t].item() == pytest.approx(entropy, abs=1e-4)


def test_a_learner_without_the_temperature_keyword_is_refused_at_other_temperatures():
    from tiny_learner import TinyLearner

    class OldLearner(TinyLearner):
        def token_logprobs(self, prompt_ids, completion_ids, *, with_entropy=False):
            return super().token_logprobs(prompt_ids, completion_ids, with_entropy=with_entropy)

    old = OldLearner(seed=0)
    assert learner_logprobs(old, [[3, 4]], [[5, 6]]).logprobs.shape == (1, 2)  # temperature 1: fine
    with pytest.raises(ConfigError, match="no `temperature` keyword.*0.7"):
        learner_logprobs(old, [[3, 4]], [[5, 6]], temperature=0.7)
    with pytest.raises(ConfigError, match="temperature > 0"):
        learner_logprobs(TinyLearner(seed=0), [[3, 4]], [[5, 6]], temperature=0.0)


def test_update_at_a_sampling_temperature_follows_the_tempered_policy_gradient():
    """Rollouts report temperature-1 log-probs; at temperature 0.7 the update must use the
    tempered log-probs on both sides of the ratio (ratio 1 on-policy) and follow the
    gradient of the tempered log-likelihood, weighted by the advantages."""
    from tiny_learner import TinyLearner

    tau = 0.7
    learner, ref = TinyLearner(seed=5), TinyLearner(seed=5)
    gens = learner.generate(["12+3"], n=4, sampling=SamplingParams(temperature=tau, max_new_tokens=6, seed=1))[0]
    adv = [1.0, -1.0, 0.5, -0.5]
    batch = Batch([list(g.prompt_ids) for g in gens], [list(g.token_ids) for g in gens],
                  [list(g.logprobs) for g in gens], adv)
    cfg = GRPOConfig(micro_batch_size=3, max_grad_norm=None)
    stats = grpo_update(learner, torch.optim.SGD(learner.model.parameters(), lr=1.0), batch, cfg, temperature=tau)
    assert stats.ratio_mean == pytest.approx(1.0, abs=1e-6) and stats.clip_fraction == 0.0
    # the reference: plain policy gradient of the tempered log-probs, token-level mean
    tl = ref.token_logprobs(batch.prompt_ids, batch.completion_ids, temperature=tau)
    loss = -(torch.tensor(adv)[:, None] * tl.logprobs * tl.mask).sum() / tl.mask.sum()
    loss.backward()
    for p_new, p_ref in zip(learner.model.parameters(), ref.model.parameters()):
        want = p_ref.detach() - (p_ref.grad if p_ref.grad is not None else 0.0)
        assert torch.allclose(p_new, want, atol=1e-6)
    # several epochs recompute the old log-probs at the temperature once, before the first
    learner2 = TinyLearner(seed=5)
    batch2 = Batch(batch.prompt_ids, batch.completion_ids, [list(g.logprobs) for g in gens], adv)
    s2 = grpo_update(learner2, torch.optim.SGD(learner2.model.parameters(), lr=1e-3), batch2,
                     cfg.replace(epochs=2), temperature=tau)
    assert batch2.old_temperature == tau and not s2.skipped
    assert batch2.old_logprobs[0] == pytest.approx(tl.logprobs[0, : len(gens[0].token_ids)].tolist(), abs=1e-5)


class _Wrapper(torch.nn.Module):
    """Stands where accelerate's DDP wrapper stands: another module around the learner's."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module
        self.calls = 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.module(*args, **kwargs)


def test_update_computes_through_the_given_model_without_reassigning_learner_model():
    """The wrapped module is passed to token_logprobs (``model=``); ``learner.model`` is never
    swapped to it and back, and the result equals the update through the bare module."""
    from tiny_learner import TinyLearner

    class Watched(TinyLearner):
        sets = 0

        def __setattr__(self, name, value):
            if name == "model" and "model" in self.__dict__:
                type(self).sets += 1
            super().__setattr__(name, value)

    learner, plain = Watched(seed=3), TinyLearner(seed=3)
    gens = learner.generate(["7*6"], n=4, sampling=SamplingParams(max_new_tokens=5, seed=2))[0]
    batch = lambda: Batch([list(g.prompt_ids) for g in gens], [list(g.token_ids) for g in gens],  # noqa: E731
                          [list(g.logprobs) for g in gens], [1.0, -1.0, 0.5, -0.5])
    cfg = GRPOConfig(lr=1e-2, micro_batch_size=3)
    wrapper = _Wrapper(learner.model)
    stats = grpo_update(learner, make_optimizer(learner.model, cfg), batch(), cfg, model=wrapper)
    assert wrapper.calls == 2  # two micro-batches, both through the wrapper
    assert Watched.sets == 0 and learner.model is wrapper.module
    want = grpo_update(plain, make_optimizer(plain.model, cfg), batch(), cfg)
    assert stats.loss == pytest.approx(want.loss, abs=1e-6)
    for a, b in zip(learner.model.parameters(), plain.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_learner_without_the_model_keyword_is_refused_for_a_wrapped_module():
    from tiny_learner import TinyLearner

    class OldLearner(TinyLearner):
        def token_logprobs(self, prompt_ids, completion_ids, *, with_entropy=False, temperature=1.0):
            return super().token_logprobs(prompt_ids, completion_ids, with_entropy=with_entropy,
                                          temperature=temperature)

    old = OldLearner(seed=0)
    assert learner_logprobs(old, [[3, 4]], [[5, 6]], model=old.model).logprobs.shape == (1, 2)  # its own: fine
    with pytest.raises(ConfigError, match="no `model` keyword"):
        learner_logprobs(old, [[3, 4]], [[5, 6]], model=_Wrapper(old.model))


def test_the_learner_contract_lives_with_the_policy_protocol_and_grpo_re_exports_it():
    import subprocess

    from pope_env.agents import grpo, policy

    assert grpo.TokenLogprobs is policy.TokenLogprobs and grpo.LearnerPolicy is policy.LearnerPolicy
    # the protocol module stays torch-free
    code = "import sys, pope_env.agents.policy as p; p.TokenLogprobs, p.LearnerPolicy; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
