"""Dynamic sampling keeps the step's mix of prompt kinds (POPE's 1:1 guided:unguided)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from pope_env.agents.policy import Generation, SamplingParams
from pope_env.agents.rollout import (
    DynamicSampler,
    DynamicSamplingError,
    MixedSource,
    PromptItem,
    ShuffledItems,
)


class KindPolicy:
    """Answers each prompt from a script: ``answers[prompt]`` cycled over the group."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = 0

    def generate(self, prompts, *, n=1, sampling=SamplingParams()):
        self.calls += 1
        return [[Generation(text=self.answers[p][j % len(self.answers[p])], prompt_ids=(1,), token_ids=(2,),
                            logprobs=(-1.0,)) for j in range(n)] for p in prompts]


def exact_reward(completions, items):
    return [1.0 if c == it.problem_id else 0.0 for c, it in zip(completions, items)]


def pope_source(n_problems=12, seed=0):
    """POPE's source: the hard problems unguided and guided, mixed 1:1 (as methods.build_source)."""
    ids = [f"p{i}" for i in range(n_problems)]
    unguided = [PromptItem(f"u:{i}", i, tags={"split": "hard"}) for i in ids]
    guided = [PromptItem(f"g:{i}", i, guided=True, prefix_len=2, tags={"split": "hard"}) for i in ids]
    return MixedSource({"hard": ShuffledItems(unguided, seed=seed, name="hard"),
                        "guided": ShuffledItems(guided, seed=seed, name="guided")},
                       {"hard": 0.5, "guided": 0.5})


def hard_set_answers(n_problems=12):
    """Guided prompts are informative (half right); unguided ones only for every 4th problem."""
    answers = {}
    for i in range(n_problems):
        pid = f"p{i}"
        answers[f"g:{pid}"] = [pid, "?"]
        answers[f"u:{pid}"] = [pid, "?"] if i % 4 == 0 else ["?"]
    return answers


def test_refills_keep_the_guided_unguided_ratio_of_the_step():
    policy = KindPolicy(hard_set_answers())
    sampler = DynamicSampler(policy, pope_source(), exact_reward, group_size=4, min_std=0.0, max_refill_rounds=20)
    for _ in range(10):
        groups, report = sampler.sample(8)
        kinds = Counter(g.item.guided for g in groups)
        assert kinds == Counter({True: 4, False: 4})  # exactly the first round's 1:1
        assert all(g.reward_std > 0 for g in groups)
        assert report.dropped > 0  # unguided groups were dropped and refilled with unguided ones


def test_refills_through_the_trainers_process_shard_keep_the_ratio():
    pytest.importorskip("torch")
    from pope_env.agents.rollout import RankShard

    policy = KindPolicy(hard_set_answers())
    sampler = DynamicSampler(policy, RankShard(pope_source(), 0, 1), exact_reward, group_size=4,
                             min_std=0.0, max_refill_rounds=20)
    groups, _ = sampler.sample(6)
    assert Counter(g.item.guided for g in groups) == Counter({True: 3, False: 3})


def test_a_source_that_cannot_choose_still_gives_the_first_rounds_mix():
    from pope_env.agents.rollout import item_stratum

    items = [PromptItem(f"g:p{i}", f"p{i}", guided=True) for i in range(12)] + \
            [PromptItem(f"u:p{i}", f"p{i}") for i in range(12)]
    policy = KindPolicy(hard_set_answers())
    sampler = DynamicSampler(policy, ShuffledItems(items, seed=1), exact_reward, group_size=4,
                             min_std=0.0, max_refill_rounds=40)
    for _ in range(5):
        groups, report = sampler.sample(6)
        first_round = Counter(item_stratum(g.item) for g in report.all_groups[:6])
        assert Counter(item_stratum(g.item) for g in groups) == first_round
        assert all(g.reward_std > 0 for g in groups)


def test_a_kind_that_is_never_informative_fails_with_a_clear_error():
    answers = {f"g:p{i}": [f"p{i}", "?"] for i in range(4)} | {f"u:p{i}": ["?"] for i in range(4)}
    sampler = DynamicSampler(KindPolicy(answers), pope_source(4), exact_reward, group_size=4, min_std=0.0,
                             max_refill_rounds=3)
    with pytest.raises(DynamicSamplingError, match=r"kept 2/4 groups after 4 rounds .*missing: 2 unguided hard"):
        sampler.sample(4)


def test_kept_guided_share_over_many_steps_is_one_half():
    """The measurement of the fix: random informativeness, guided groups 4x more often."""
    rng = random.Random(0)
    answers = {}
    for i in range(40):
        answers[f"g:p{i}"] = [f"p{i}", "?"] if rng.random() < 0.6 else ["?"]
        answers[f"u:p{i}"] = [f"p{i}", "?"] if rng.random() < 0.15 else ["?"]
    sampler = DynamicSampler(KindPolicy(answers), pope_source(40), exact_reward, group_size=4, min_std=0.0,
                             max_refill_rounds=50)
    kept = Counter()
    for _ in range(30):
        groups, _ = sampler.sample(8)
        kept.update(g.item.guided for g in groups)
    assert kept[True] == kept[False] == 120
