"""Cross-problem batching (pope_env.lockstep) of the prefix search and the probe: the same
files, verdicts and evidence as one problem at a time, in fewer policy calls, with a real
tiny char model; bad batch sizes, a history strategy, a failing worker and resume."""

from __future__ import annotations

import logging

import pytest

from arith_policy import ArithmeticSolverPolicy, math_verify_scorer
from char_policies import counting_char_model, writes_a_seven
from pope_env.datasets import arithmetic
from pope_env.errors import ConfigError
from pope_env.prefix_search import PrefixProbe, SearchStrategy, load_guidance, run_prefix_search

logging.getLogger("math_verify").setLevel(logging.ERROR)
PROBLEMS = arithmetic.generate(24, (4, 7), seed=5)

CHAR_PROBLEMS = arithmetic.generate(12, (4, 6), seed=5, max_value=9)


def char_search(out, policy, strategy="linear", batch_size=1, problems=CHAR_PROBLEMS, **kw):
    from pope_env.agents.policy import SamplingParams
    from pope_env.agents.pretrain import render_guided_prompt

    return run_prefix_search(problems, policy, dataset="chains", out=out, k=4, chunk_size=2, strategy=strategy,
                             scorer=writes_a_seven, sampling=SamplingParams(max_new_tokens=8),
                             prompt_format=render_guided_prompt, progress=False, batch_size=batch_size, **kw)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("strategy", ["linear", "galloping"])
def test_batched_search_with_a_char_model_writes_the_same_file_in_fewer_calls(tmp_path, strategy):
    alone, together = counting_char_model(), counting_char_model()
    one = char_search(tmp_path / "one.jsonl", alone, strategy)
    many = char_search(tmp_path / "many.jsonl", together, strategy, batch_size=5)
    assert (tmp_path / "one.jsonl").read_text() == (tmp_path / "many.jsonl").read_text()
    assert one.records == many.records
    i_stars = [r.i_star for r in one.records.values()]
    assert None in i_stars and len(set(i_stars)) >= 3  # the comparison is not trivial
    assert together.seeded_calls < alone.seeded_calls / 2


def test_batched_search_without_generate_seeded_gives_the_same_file(tmp_path):
    for strategy in ("galloping", "scouting"):
        alone, together = ArithmeticSolverPolicy(0.35), ArithmeticSolverPolicy(0.35)
        one = run_prefix_search(PROBLEMS, alone, dataset="arith-test", out=tmp_path / f"{strategy}-1.jsonl",
                                k=8, strategy=strategy, scorer=math_verify_scorer(), progress=False)
        many = run_prefix_search(PROBLEMS, together, dataset="arith-test", out=tmp_path / f"{strategy}-6.jsonl",
                                 k=8, strategy=strategy, scorer=math_verify_scorer(), progress=False, batch_size=6)
        assert one.records == many.records
        assert alone.calls == together.calls  # one generate call per chunk either way


@pytest.mark.usefixtures("one_torch_thread")
def test_batch_size_is_checked_and_a_history_strategy_is_refused(tmp_path):
    policy = counting_char_model()
    for bad in (0, True, 2.5):
        with pytest.raises(ConfigError, match="batch_size must be an integer >= 1"):
            char_search(tmp_path / "a.jsonl", policy, batch_size=bad)
    with pytest.raises(ConfigError, match="'anchored' learns from the problems searched before.*batch_size=1"):
        char_search(tmp_path / "b.jsonl", policy, "anchored", batch_size=2)
    twice = [CHAR_PROBLEMS[0], CHAR_PROBLEMS[1], CHAR_PROBLEMS[0]]
    with pytest.raises(ConfigError, match="appears twice"):
        char_search(tmp_path / "c.jsonl", policy, problems=twice, batch_size=2)


@pytest.mark.usefixtures("one_torch_thread")
def test_a_failing_worker_is_reraised_and_the_batched_run_resumes(tmp_path):
    from pope_env.search_strategies import linear_search

    reference = char_search(tmp_path / "ref.jsonl", counting_char_model())
    broken_id = CHAR_PROBLEMS[6].id

    def breaks_on_one(probe, problem, cap):
        if problem.id == broken_id:
            probe.measure(problem, 1, early_stop=True)  # in flight with the others first
            raise ValueError("strategy bug")
        return linear_search(probe, problem, cap)

    out = tmp_path / "resumed.jsonl"
    with pytest.raises(ValueError, match="strategy bug"):
        char_search(out, counting_char_model(), SearchStrategy("linear", breaks_on_one, "linear, broken"), batch_size=4)
    written = list(load_guidance(out).records)
    assert written == [p.id for p in CHAR_PROBLEMS[: len(written)]] and broken_id not in written
    resumed = char_search(out, counting_char_model(), batch_size=4)
    assert resumed.records == reference.records
    assert out.read_text() == (tmp_path / "ref.jsonl").read_text()


@pytest.mark.usefixtures("one_torch_thread")
def test_measure_many_equals_measuring_one_at_a_time():
    from pope_env.prefix_search import MeasureRequest

    policy = counting_char_model()
    kw = dict(k=6, seed=3, chunk_size=4, prompt_format=lambda p, i: p.meta["expression"] + "\n" + "".join(p.steps[:i]))
    from pope_env.agents.policy import SamplingParams

    kw["sampling"] = SamplingParams(max_new_tokens=8)
    batched, single = PrefixProbe(policy, writes_a_seven, **kw), PrefixProbe(policy, writes_a_seven, **kw)
    requests = [MeasureRequest(p, i, early_stop=i % 2 == 0, max_chunks=None if i < 2 else 1)
                for p in CHAR_PROBLEMS[:5] for i in range(3)]
    calls = policy.seeded_calls
    got = batched.measure_many(requests)
    # chunks of 4 then 2 samples: one call per chunk size and round, not one per request
    assert policy.seeded_calls - calls <= 3
    expected = [single.measure(r.problem, r.prefix_len, early_stop=r.early_stop, max_chunks=r.max_chunks)
                for r in requests]
    assert got == expected
    assert all(batched.log_of(p) == single.log_of(p) for p in CHAR_PROBLEMS[:5])
    assert sum(m.successes for m in got) > 0 and any(m.samples == 6 for m in got)
    with pytest.raises(ConfigError, match="same \\(problem id, state\\) twice"):
        batched.measure_many([requests[0], requests[0]])
