"""S_good reach set: Wilson intervals, S_good and coverage, files, tables, transfer report."""

from __future__ import annotations

import json
import logging
import random
import re

import pytest

from arith_policy import ArithmeticSolverPolicy, math_verify_scorer
from pope_env.datasets import arithmetic
from pope_env.errors import ConfigError, DataFormatError
from pope_env.prefix_search import run_prefix_search
from pope_env.reach import ReachSet, StateEstimate, transfer_report, transfer_table, wilson_interval

logging.getLogger("math_verify").setLevel(logging.ERROR)


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(1, 8)
    assert lo == pytest.approx(0.02235, abs=1e-4) and hi == pytest.approx(0.47087, abs=1e-4)
    assert wilson_interval(0, 8)[0] == 0.0 and wilson_interval(8, 8)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ConfigError):
        wilson_interval(3, 2)


@pytest.mark.parametrize("p,n", [(0.05, 40), (0.3, 20), (0.7, 60)])
def test_wilson_interval_covers_the_true_probability_about_95_percent(p, n):
    rng = random.Random(0)
    trials = 4000
    covered = 0
    for _ in range(trials):
        c = sum(rng.random() < p for _ in range(n))
        lo, hi = wilson_interval(c, n)
        covered += lo <= p <= hi
    assert 0.91 <= covered / trials <= 0.99


def test_s_good_and_coverage():
    reach = ReachSet(threshold=0.0)  # "at least one success in k"
    reach.add("a", 0, 0, 16)
    reach.add("a", 2, 1, 8)
    reach.add("a", 3, 6, 8)
    reach.add("b", 0, 0, 16)
    reach.add("b", 1, 0, 8)
    assert [s.prefix_len for s in reach.s_good("a")] == [2, 3]
    assert reach.s_good("b") == [] and reach.s_good("unknown") == []
    assert reach.coverage() == 0.5
    strict = ReachSet(threshold=0.3)
    strict.add("a", 2, 1, 8)
    strict.add("a", 3, 6, 8)
    assert [s.prefix_len for s in strict.s_good("a")] == [3]  # lower bound of 6/8 is 0.41
    point = ReachSet(threshold=0.1, criterion="point")
    point.add("a", 2, 1, 8)
    assert [s.prefix_len for s in point.s_good("a")] == [2]
    with pytest.raises(ConfigError, match="criterion"):
        ReachSet(criterion="upper")


def test_default_s_good_means_reward_reliably_attainable_not_one_lucky_success():
    from pope_env.reach import DEFAULT_CONFIDENCE, DEFAULT_THRESHOLD, min_successes

    assert (DEFAULT_THRESHOLD, DEFAULT_CONFIDENCE) == (0.1, 0.95)
    reach = ReachSet()
    reach.add("a", 1, 1, 8)     # one success in 8: p could well be 0.02
    reach.add("a", 2, 1, 64)    # one in 64
    reach.add("a", 3, 3, 8)     # lower 95% Wilson bound 0.137 > 0.1
    reach.add("b", 2, 2, 8)     # lower bound 0.071: not yet reliable
    assert [s.prefix_len for s in reach.s_good("a")] == [3]
    assert reach.s_good("b") == [] and reach.coverage() == 0.5
    assert [min_successes(k) for k in (4, 8, 16, 32, 64)] == [2, 3, 4, 7, 12]
    assert min_successes(8, threshold=0.0) == 1 and min_successes(4, threshold=0.9) is None
    assert "(lower bound > 0.1)" in reach.table()


def test_reach_cli_defaults_are_the_library_rule(tmp_path, capsys):
    from pope_env.cli import main

    rollouts = tmp_path / "r.jsonl"
    rollouts.write_text("".join(json.dumps({"problem_id": "p", "prefix_len": 1, "correct": j == 0}) + "\n"
                                for j in range(8)))
    assert main(["reach", "--rollouts", str(rollouts)]) == 0
    assert "coverage: 0.000 of 1 problems" in capsys.readouterr().out  # 1/8 is not reliable
    assert main(["reach", "--rollouts", str(rollouts), "--threshold", "0"]) == 0
    assert "coverage: 1.000 of 1 problems" in capsys.readouterr().out


def test_records_of_every_kind_aggregate(tmp_path):
    records = [
        {"kind": "pope-guidance", "dataset": "x"},
        {"problem_id": "p", "prefix_len": 2, "correct": True, "step": 0},
        {"problem_id": "p", "prefix_len": 2, "reward": 0.0, "step": 0},
        {"problem_id": "p", "guided": False, "correct": False, "step": 0},
        {"problem_id": "p", "prefix_len": 2, "successes": 3, "samples": 6},
        {"problem_id": "q", "i_star": 1, "evidence": [[3, 1, 2], [1, 1, 4]]},
        {"problem_id": "q", "start": 2, "prefix_len": 1, "correct": True},
    ]
    reach = ReachSet.from_records(records)
    assert reach.states("p") == [StateEstimate("p", 0, 0, 1), StateEstimate("p", 2, 4, 8)]
    assert [s.label for s in reach.states("q")] == ["1", "3", "[2:3]"]
    path = tmp_path / "reach.jsonl"
    reach.save(path)
    again = ReachSet.load(path)
    assert all(again.states(pid) == reach.states(pid) for pid in ("p", "q"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(records[1]) + "\n" + '{"problem_id": "p", "prefix_len": 1}\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2: not a rollout record"):
        ReachSet.from_file(bad)
    bad.write_text('{"problem_id": "p", "correct": tru\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:1: malformed JSON"):
        ReachSet.from_file(bad)


def test_reach_set_from_a_real_prefix_search(tmp_path):
    problems = arithmetic.generate(10, 6, seed=4)
    gf = run_prefix_search(problems, ArithmeticSolverPolicy(0.4), dataset="arith", k=8,
                           out=tmp_path / "g.jsonl", scorer=math_verify_scorer(), progress=False)
    reach = ReachSet.from_file(tmp_path / "g.jsonl", threshold=0.0)  # i*: the first prefix with a success
    for pid, record in gf.records.items():
        good = {s.prefix_len for s in reach.s_good(pid)}
        if not record.fallback:
            assert record.i_star in good and record.i_star - 1 not in good
    assert reach.coverage() == sum(not r.fallback for r in gf.records.values()) / len(problems)
    table = reach.table()
    assert "coverage:" in table and problems[0].id in table


def test_transfer_report_over_training():
    records = []
    for step, (g, u) in enumerate([(0.2, 0.0), (0.6, 0.1), (0.9, 0.5)]):
        for j in range(10):
            records.append({"problem_id": "p", "step": step * 10 + j % 3, "prefix_len": 3,
                            "correct": j < g * 10})
            records.append({"problem_id": "p", "step": step * 10 + j % 3, "guided": False,
                            "correct": j < u * 10})
    rows = transfer_report(records, bucket=10)
    assert [r.step for r in rows] == [0, 10, 20]
    assert [r.guided_rate for r in rows] == [0.2, 0.6, 0.9]
    assert [r.unguided_rate for r in rows] == [0.0, 0.1, 0.5]
    assert "2/10 (0.20)" in transfer_table(rows)


def test_reach_cli_prints_the_table_and_saves(tmp_path, capsys):
    from pope_env.cli import main

    rollouts = tmp_path / "rollouts.jsonl"
    rows = [{"problem_id": "p", "prefix_len": 2, "correct": j < 3, "step": j} for j in range(8)]
    rows += [{"problem_id": "p", "guided": False, "correct": False, "step": j} for j in range(8)]
    rollouts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["reach", "--rollouts", str(rollouts), "--save", str(tmp_path / "r.jsonl"),
                 "--transfer", "--bucket", "4"]) == 0
    out = capsys.readouterr().out
    assert "3/8" in out and "coverage: 1.000 of 1 problems" in out and "3/4 (0.75)" in out
    assert ReachSet.load(tmp_path / "r.jsonl").states("p")[1].successes == 3
    rollouts.write_text("not json\n")
    assert main(["reach", "--rollouts", str(rollouts)]) == 2
    assert "rollouts.jsonl:1: malformed JSON" in capsys.readouterr().err


# ----------------------------------------------------------------- S_good from any state


def _states_file(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_monte_carlo_from_any_state(tmp_path):
    from pope_env.reach import estimate_states, read_state_queries, states_table

    problem = arithmetic.generate(1, 6, seed=9)[0]
    problems = {problem.id: problem}
    wrong = list(problem.steps[:3])
    # a wrong intermediate result: the running value is off by 50, the rest of the chain kept
    wrong[2] = re.sub(r"^\d+", lambda m: str(int(m.group()) + 50), wrong[2])
    assert wrong[2] != problem.steps[2]
    states = _states_file(tmp_path / "states.jsonl", [
        {"problem_id": problem.id, "prefix_len": 3},
        {"problem_id": problem.id, "steps": wrong, "label": "wrong value"},
        {"problem_id": problem.id, "state": ""},
    ])
    queries = read_state_queries(states, problems)
    assert [q.label for q in queries] == ["prefix 3", "wrong value", "0 steps"]
    exact = ArithmeticSolverPolicy(error_rate=0.0)  # completes any state without mistakes
    cache = tmp_path / "cache.jsonl"
    got = estimate_states(queries, problems, exact, k=6, scorer=math_verify_scorer(), cache=cache,
                          progress=False)
    assert [(e.successes, e.samples) for e in got] == [(6, 6), (0, 6), (6, 6)]
    assert not any(e.cached for e in got)
    again = estimate_states(queries, problems, exact, k=6, scorer=math_verify_scorer(), cache=cache,
                            progress=False)
    assert [e.cached for e in again] == [True, True, True] and exact.calls == 3
    assert [(e.successes, e.samples) for e in again] == [(6, 6), (0, 6), (6, 6)]
    table = states_table(again)
    assert "wrong value" in table and "cache" in table
    noisy = estimate_states(queries[:1], problems, ArithmeticSolverPolicy(0.5), k=6,
                            scorer=math_verify_scorer(), cache=cache, progress=False)
    assert not noisy[0].cached  # another policy id is another cache key


def test_bad_state_lists_are_refused(tmp_path):
    from pope_env.errors import UnknownNameError
    from pope_env.reach import read_state_queries

    problem = arithmetic.generate(1, 4, seed=9)[0]
    problems = {problem.id: problem}
    cases = [
        ({"problem_id": "nope", "prefix_len": 1}, UnknownNameError, "states file .*:1"),
        ({"problem_id": problem.id, "steps": ["1+2\n", "  "]}, DataFormatError, "step 1 of the state is empty"),
        ({"problem_id": problem.id, "state": "x" * 1_000_001}, DataFormatError, "more than the 100000"),
        ({"problem_id": problem.id, "prefix_len": 9}, ConfigError, "has 4 steps"),
        ({"problem_id": problem.id}, DataFormatError, "as 'steps', 'state' or 'prefix_len'"),
    ]
    for row, error, needle in cases:
        with pytest.raises(error, match=needle):
            read_state_queries(_states_file(tmp_path / "s.jsonl", [row]), problems)


def test_every_success_count_record_uses_one_estimate_interval_and_s_good_rule():
    from pope_env.own_states import OwnState, OwnStateOverlap
    from pope_env.reach import ReachSet, StateMonteCarlo, SuccessCounts, min_successes

    for s, n in [(0, 0), (0, 8), (2, 8), (8, 8), (3, 40)]:
        records = [StateEstimate("p", 1, s, n), StateMonteCarlo("p", "1", 1, s, n, key="k"),
                   OwnState("p", ("a",), 1, s, n)]
        assert all(isinstance(r, SuccessCounts) for r in records)
        assert len({(r.estimate, r.interval(0.9)) for r in records}) == 1
        for criterion in ("lower", "point"):
            verdicts = {r.in_s_good(threshold=0.1, criterion=criterion) for r in records}
            reach = ReachSet(threshold=0.1, criterion=criterion)
            overlap = OwnStateOverlap(1, 0, (records[2],), threshold=0.1, criterion=criterion)
            assert verdicts == {reach.in_s_good(records[0])} == {overlap.in_s_good(records[2])}
            least = min_successes(n, threshold=0.1, criterion=criterion)
            assert verdicts == {least is not None and s >= least}
