"""Prefix search with a real tiny policy: agreement with the linear scan, determinism,
crash-resume, the fallback segment and the guidance file's bad-input handling."""

from __future__ import annotations

import functools
import json
import logging
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from arith_policy import ArithmeticSolverPolicy, _parse, math_verify_scorer
from pope_env.datasets import arithmetic
from pope_env.errors import ConfigError, DataFormatError, GuidanceFileError, UnknownNameError
from pope_env.guidance import guided_text, prefix_cap
from pope_env.prefix_search import (
    GuidanceRecord,
    Measurement,
    PrefixProbe,
    SearchStrategy,
    anchored_search,
    fallback_segment,
    load_guidance,
    run_prefix_search,
    scouting_search,
)
from pope_env.problem import Problem

logging.getLogger("math_verify").setLevel(logging.ERROR)
TESTS = Path(__file__).parent
PROBLEMS = arithmetic.generate(24, (4, 7), seed=5)


def search(out, strategy="galloping", problems=PROBLEMS, error_rate=0.35, span=None, **kw):
    kw.setdefault("k", 8)
    return run_prefix_search(problems, ArithmeticSolverPolicy(error_rate, span=span), dataset="arith-test",
                             out=out, strategy=strategy, scorer=math_verify_scorer(),
                             progress=False, **kw)


def test_galloping_finds_the_linear_i_star_here(tmp_path):
    # (Its rollouts are not compared: here i* is mostly 1-2, where the linear scan, which
    # stops at its first success, is the cheaper of the two.)
    linear = search(tmp_path / "linear.jsonl", "linear")
    gallop = search(tmp_path / "gallop.jsonl", "galloping")
    assert set(linear.records) == set(gallop.records) == {p.id for p in PROBLEMS}
    same = [pid for pid in linear.records if linear[pid].i_star == gallop[pid].i_star]
    assert len(same) == len(PROBLEMS)
    for pid, r in gallop.records.items():
        measured = {m.prefix_len: m for m in r.evidence}
        assert measured[r.i_star].successes > 0
        # verification: i* - 1 was measured and failed (or i* = 1)
        assert r.i_star == 1 or measured[r.i_star - 1].successes == 0
        # the same state measured by both strategies gives the same verdict
        for m in linear[pid].evidence:
            if m.prefix_len in measured:
                assert (m.successes > 0) == (measured[m.prefix_len].successes > 0)


def test_scouting_finds_the_linear_i_star_here(tmp_path):
    # (Rollouts are compared on longer chains in the anchored test below: with i* mostly
    # 1-2 the linear scan, which stops at its first success, costs about as little.)
    linear = search(tmp_path / "linear.jsonl", "linear")
    scout = search(tmp_path / "scout.jsonl", "scouting")
    assert scout.header.chunk_size == 2
    assert set(scout.records) == {p.id for p in PROBLEMS}
    assert all(linear[pid].i_star == scout[pid].i_star for pid in linear.records)
    for pid, r in scout.records.items():
        measured = r.by_state()
        assert measured[r.i_star].successes > 0
        # verification: i* - 1 failed with all k samples (or i* = 1)
        assert r.i_star == 1 or measured[r.i_star - 1] == Measurement(r.i_star - 1, 0, 8)
        # every state below i* - 1 was scouted with one chunk of 2; none above i* failed
        assert all(measured[i] == Measurement(i, 0, 2) for i in range(1, r.i_star - 1))
        assert all(m.successes > 0 for i, m in measured.items() if i >= r.i_star)
        # a state measured by both strategies is the same random event
        for m in linear[pid].evidence:
            if measured.get(m.prefix_len, Measurement(0, 0, 0)).samples == 8:
                assert m == measured[m.prefix_len]


def test_anchored_starts_where_earlier_problems_point_and_returns_verified_i_stars(tmp_path):
    # A solver that carries out 3 operations well and no more: i* sits a steady distance below
    # the cap of chains of 6-8 operations (the cap itself varies).
    problems = arithmetic.generate(30, (6, 8), seed=11)
    run = functools.partial(search, problems=problems, error_rate=0.1, span=3)
    linear, scout, anchored = (run(tmp_path / f"{name}.jsonl", name) for name in ("linear", "scouting", "anchored"))
    assert anchored.header.strategy == "anchored"
    # The first problem has nothing to learn from: it is searched by scouting.
    first = problems[0].id
    assert anchored[first].evidence == scout[first].evidence
    records = [anchored[p.id] for p in problems]
    for j, r in enumerate(records[1:], start=1):
        distances = sorted(e.cap - e.i_star for e in records[:j] if e.i_star is not None)
        guess = min(r.cap, max(1, r.cap - distances[(len(distances) - 1) // 2]))
        assert r.evidence[0].prefix_len == guess
        measured = r.by_state()
        assert measured[r.i_star].successes > 0
        assert r.i_star == 1 or measured[r.i_star - 1] == Measurement(r.i_star - 1, 0, 8)
    same = sum(anchored[pid].i_star == linear[pid].i_star for pid in linear.records)
    assert same >= 0.8 * len(problems)  # 25 of 30; the others met a lucky success below i* - 1
    spent = {name: sum(r.rollouts for r in gf.records.values())
             for name, gf in (("linear", linear), ("scouting", scout), ("anchored", anchored))}
    assert spent["anchored"] < spent["scouting"] < spent["linear"]


def test_scouting_with_every_chunk_per_scout_is_the_linear_scan_with_early_stop(tmp_path):
    linear = search(tmp_path / "linear.jsonl", "linear", error_rate=0.6)
    full = SearchStrategy("scouting-full", functools.partial(scouting_search, scout_chunks=4),
                          "scouting, all 4 chunks per scout")
    scout = search(tmp_path / "full.jsonl", full, error_rate=0.6)
    assert scout.header.strategy == "scouting-full"
    for pid, r in linear.records.items():
        assert scout[pid].i_star == r.i_star
        # the same states, each until its first success: the very same measurements
        assert scout[pid].evidence == r.evidence
    with pytest.raises(ConfigError, match="scout_chunks must be an integer >= 1"):
        search(tmp_path / "bad.jsonl", SearchStrategy(
            "bad", functools.partial(scouting_search, scout_chunks=0), "bad"), problems=PROBLEMS[:1])


def test_scouting_falls_back_only_after_every_state_failed_all_k(tmp_path):
    def nothing_is_right(completions, problem):
        return [False] * len(completions)

    gf = run_prefix_search(PROBLEMS[:4], ArithmeticSolverPolicy(0.35), dataset="arith-test",
                           out=tmp_path / "f.jsonl", k=4, chunk_size=1, seed=3,
                           strategy="scouting", scorer=nothing_is_right, progress=False)
    for p in PROBLEMS[:4]:
        r = gf[p.id]
        assert r.fallback and r.segment == fallback_segment(p, 3)
        # every state scouted with one sample, then every state finished, lowest first
        assert r.evidence == (*(Measurement(i, 0, 1) for i in range(1, r.cap + 1)),
                              *(Measurement(i, 0, 3) for i in range(1, r.cap + 1)))


def test_linear_records_every_state_it_measured(tmp_path):
    gf = search(tmp_path / "g.jsonl", "linear")
    for r in gf.records.values():
        assert [m.prefix_len for m in r.evidence] == list(range(1, r.i_star + 1))
        # every state below i* failed all k samples; i* stopped at its first success
        assert all(m.samples == 8 and m.successes == 0 for m in r.evidence[:-1])
        assert r.evidence[-1].successes > 0 and r.evidence[-1].samples <= 8
        assert r.segment == (0, r.i_star) and not r.fallback


def test_search_is_deterministic_for_a_seed(tmp_path):
    a = search(tmp_path / "a.jsonl", seed=7)
    b = search(tmp_path / "b.jsonl", seed=7)
    c = search(tmp_path / "c.jsonl", seed=8)
    assert a.records == b.records
    assert any(a[p].evidence != c[p].evidence for p in a.records)


@pytest.mark.parametrize("strategy", ["linear", "galloping", "scouting", "anchored"])
def test_no_prefix_is_declared_only_after_every_state_failed_all_k(tmp_path, strategy):
    hopeless = ProfileSolver(solvable_remaining=())  # always off by one
    gf = run_prefix_search(PROBLEMS[:6], hopeless, dataset="arith-test", out=tmp_path / "f.jsonl",
                           k=4, seed=3, scorer=math_verify_scorer(), progress=False, strategy=strategy)
    for p in PROBLEMS[:6]:
        r = gf[p.id]
        assert r.fallback and r.i_star is None
        # the verdict is verified: every state 1..cap failed all k samples
        assert r.by_state() == {i: Measurement(i, 0, 4) for i in range(1, r.cap + 1)}
        start, stop = r.segment
        assert r.segment == fallback_segment(p, 3)
        assert stop <= r.cap and (stop - start < len(p.steps) / 4 or (start, stop) == (0, 0)
                                  or len("".join(p.steps[start:stop]).strip()) < len(p.solution.strip()) / 4)
        guided_text(p, stop - start, start=start)  # renders without revealing the answer


def test_galloping_no_longer_gives_up_after_the_cap(tmp_path):
    # 7 operations (cap 6): only state 2 (5 operations left) is solvable. The old galloping
    # measured the cap, saw it fail and declared "no prefix works".
    problems = arithmetic.generate(4, 7, seed=2)
    policy = ProfileSolver(solvable_remaining={5})
    gf = run_prefix_search(problems, policy, dataset="arith-test", out=tmp_path / "g.jsonl", k=4,
                           strategy="galloping", scorer=math_verify_scorer(), progress=False)
    for p in problems:
        r = gf[p.id]
        assert r.i_star == 2 and not r.fallback
        assert [m.prefix_len for m in r.evidence] == [6, 1, 2]


def test_fallback_segment_is_shorter_than_a_quarter_and_seeded():
    long = arithmetic.generate(5, 12, seed=0)
    for p in long:
        start, stop = fallback_segment(p, 0)
        assert stop - start == 2 < len(p.steps) / 4  # 12 steps -> 2 steps
        assert fallback_segment(p, 0) == (start, stop)
    assert len({fallback_segment(long[0], s) for s in range(20)}) > 1


@pytest.mark.parametrize("strategy", ["galloping", "scouting", "anchored"])
def test_crash_midway_then_resume_gives_the_same_file(tmp_path, strategy):
    full_policy = ArithmeticSolverPolicy(0.35)
    reference = run_prefix_search(PROBLEMS, full_policy, dataset="arith-test",
                                  out=tmp_path / "ref.jsonl", k=8, scorer=math_verify_scorer(),
                                  strategy=strategy, progress=False)
    out = tmp_path / "crashy.jsonl"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(TESTS)!r})
        from arith_policy import ArithmeticSolverPolicy, _parse, math_verify_scorer
        from pope_env.datasets import arithmetic
        from pope_env.prefix_search import run_prefix_search

        class DiesMidway(ArithmeticSolverPolicy):
            def generate(self, prompts, **kw):
                if self.calls == 30:
                    os.kill(os.getpid(), signal.SIGKILL)
                return super().generate(prompts, **kw)

        run_prefix_search(arithmetic.generate(24, (4, 7), seed=5), DiesMidway(0.35),
                          dataset="arith-test", out={str(out)!r}, k=8, strategy={strategy!r},
                          scorer=math_verify_scorer(), progress=False)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    partial = load_guidance(out)
    assert 0 < len(partial) < len(PROBLEMS)
    resumed_policy = ArithmeticSolverPolicy(0.35)
    resumed = run_prefix_search(PROBLEMS, resumed_policy, dataset="arith-test", out=out, k=8,
                                strategy=strategy, scorer=math_verify_scorer(), progress=False)
    assert resumed.records == reference.records
    # only the unfinished problems were searched again
    assert full_policy.calls - 30 <= resumed_policy.calls < full_policy.calls
    assert out.read_text().count("\n") == len(PROBLEMS) + 1


@pytest.mark.parametrize("strategy", ["galloping", "anchored"])
def test_corrupted_lines_are_named_skipped_and_redone(tmp_path, strategy):
    search = functools.partial(globals()["search"], strategy=strategy)
    out = tmp_path / "g.jsonl"
    reference = search(out)
    lines = out.read_text().splitlines()
    lines[3] = lines[3][: len(lines[3]) // 2]  # truncated record in the middle
    lines[5] = '{"problem_id": "x", "i_star": 2}'  # record missing fields
    out.write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match=r"g\.jsonl:4: corrupted guidance line"):
        gf = load_guidance(out)
    assert gf.bad_lines == [4, 6]
    assert len(gf) == len(PROBLEMS) - 2
    with pytest.raises(GuidanceFileError, match=r":4: corrupted"):
        load_guidance(out, strict=True)
    with pytest.warns(UserWarning, match="corrupted guidance line"):
        again = search(out)
    assert again.records == reference.records and again.bad_lines == []


def test_a_file_for_other_settings_is_refused_naming_the_mismatch(tmp_path):
    out = tmp_path / "g.jsonl"
    search(out, problems=PROBLEMS[:3])
    with pytest.raises(GuidanceFileError, match="made for dataset 'arith-test', not 'math500'"):
        load_guidance(out, dataset="math500")
    with pytest.raises(GuidanceFileError, match="k: file has 8, asked for 4"):
        search(out, problems=PROBLEMS[:3], k=4)
    with pytest.raises(GuidanceFileError, match="dataset: file has 'arith-test', asked for 'other'"):
        run_prefix_search(PROBLEMS[:3], ArithmeticSolverPolicy(0.35), dataset="other", out=out,
                          scorer=math_verify_scorer(), progress=False)
    (tmp_path / "notes.jsonl").write_text('{"hello": 1}\n')
    with pytest.raises(GuidanceFileError, match="notes.jsonl:1: bad guidance header"):
        load_guidance(tmp_path / "notes.jsonl")


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="k must be an integer >= 1"):
        search(tmp_path / "a.jsonl", k=0)
    with pytest.raises(ConfigError, match="chunk_size must be in"):
        search(tmp_path / "b.jsonl", k=4, chunk_size=5)
    with pytest.raises(UnknownNameError, match="unknown strategy 'magic'.*galloping, linear"):
        search(tmp_path / "c.jsonl", strategy="magic")
    gf = search(tmp_path / "d.jsonl", problems=PROBLEMS[:2])
    with pytest.raises(UnknownNameError, match="unknown problem"):
        gf["nope"]


def test_unguidable_problems_are_refused_or_skipped(tmp_path):
    one_step = Problem(id="one", question="Compute left to right: 2+3", solution="\\boxed{5}",
                       steps=("\\boxed{5}",), answer="5", source="arithmetic")
    empty = Problem(id="empty", question="?", solution="", steps=(), answer="1", source="x")
    problems = [*PROBLEMS[:2], one_step, empty]
    with pytest.raises(DataFormatError, match="2 of 4 problems cannot be guided.*one-step"):
        search(tmp_path / "a.jsonl", problems=problems)
    with pytest.warns(UserWarning, match="skipping problem 'one'"):
        gf = search(tmp_path / "b.jsonl", problems=problems, skip_unusable=True)
    assert set(gf.records) == {p.id for p in PROBLEMS[:2]}


def test_probe_seeds_do_not_depend_on_order():
    policy = ArithmeticSolverPolicy(0.4)
    probe = PrefixProbe(policy, math_verify_scorer(), k=8, seed=1, chunk_size=2)
    p, q = PROBLEMS[0], PROBLEMS[1]
    first = probe.measure(p, 2, early_stop=False)
    probe.reset()
    probe.measure(q, 1, early_stop=False)
    assert probe.measure(p, 2, early_stop=False) == first
    assert policy.calls == 12  # 3 measurements x 4 chunks of 2


def test_probe_measures_a_state_in_installments():
    policy = ArithmeticSolverPolicy(0.5)
    probe = PrefixProbe(policy, math_verify_scorer(), k=8, seed=4, chunk_size=3)
    whole = PrefixProbe(ArithmeticSolverPolicy(0.5), math_verify_scorer(), k=8, seed=4, chunk_size=3)
    p = PROBLEMS[2]
    assert probe.n_chunks == 3  # chunks of 3, 3 and 2 samples
    assert probe.known(p, 1) == Measurement(1, 0, 0) and probe.chunks_drawn(p, 1) == 0
    total = whole.measure(p, 1, early_stop=False)
    one = probe.measure(p, 1, early_stop=False, max_chunks=1)
    assert one.samples == 3 and probe.chunks_drawn(p, 1) == 1 and not probe.is_failure(p, 1)
    rest = probe.measure(p, 1, early_stop=False, max_chunks=5)
    # the installments draw exactly the chunks of one whole measurement, in order
    assert rest == total and probe.known(p, 1) == total and probe.chunks_drawn(p, 1) == 3
    assert [m.samples for m in probe.log] == [3, 5]
    assert sum(m.successes for m in probe.log) == total.successes
    assert probe.is_failure(p, 1) == (total.successes == 0)
    assert probe.is_success(p, 1) == (total.successes > 0)
    calls = policy.calls
    assert probe.measure(p, 1, early_stop=False) == total and policy.calls == calls  # nothing left
    probe.reset()
    assert probe.log == [] and probe.known(p, 1) == Measurement(1, 0, 0)
    with pytest.raises(ConfigError, match="max_chunks"):
        probe.measure(p, 1, early_stop=True, max_chunks=0)


def test_a_failure_needs_all_k_samples_and_one_success_proves_a_state():
    hopeless = PrefixProbe(ArithmeticSolverPolicy(1.0), math_verify_scorer(), k=4, chunk_size=1)
    p = PROBLEMS[0]
    for drawn in range(1, 5):
        hopeless.measure(p, 1, early_stop=True, max_chunks=1)
        assert hopeless.is_failure(p, 1) == (drawn == 4) and not hopeless.is_success(p, 1)
    perfect = PrefixProbe(ArithmeticSolverPolicy(0.0), math_verify_scorer(), k=4, chunk_size=1)
    assert perfect.measure(p, 1, early_stop=True).samples == 1  # stops at the first success
    assert perfect.is_success(p, 1) and not perfect.is_failure(p, 1)
    assert perfect.measure(p, 1, early_stop=True, max_chunks=2).samples == 1  # nothing more drawn


def test_guidance_record_round_trips():
    r = GuidanceRecord("p", 2, False, (0, 2), 4, 5, (Measurement(4, 1, 2), Measurement(1, 0, 8),
                                                     Measurement(2, 1, 2)))
    assert GuidanceRecord.from_json(json.loads(json.dumps(r.to_json()))) == r
    assert r.rollouts == 12 and r.prefix_len == 2


def test_plain_text_prompts_work_and_are_recorded_in_the_header(tmp_path):
    chat = search(tmp_path / "chat.jsonl", problems=PROBLEMS[:6])
    text = search(tmp_path / "text.jsonl", problems=PROBLEMS[:6], prompt_format="text")
    assert text.header.prompt_format == "text" and chat.header.prompt_format == "chat"
    # the solver reads both layouts; its samples are seeded by the prompt, so only the i*
    # found (not every count) is comparable here
    assert all(text[p.id].i_star is not None for p in PROBLEMS[:6])
    with pytest.raises(ConfigError, match="prompt_format"):
        search(tmp_path / "x.jsonl", prompt_format="html")


def terse_prompt(problem, prefix_len):
    """A custom prompt layout: the question and the shown steps, no instruction."""
    return f"{problem.question}\nPartial solution:\n" + "".join(problem.steps[:prefix_len])


def other_prompt(problem, prefix_len):
    return terse_prompt(problem, prefix_len) + "\n"


def test_a_callable_prompt_format_is_used_and_recorded_in_the_header(tmp_path):
    out = tmp_path / "custom.jsonl"
    gf = search(out, problems=PROBLEMS[:6], prompt_format=terse_prompt, strategy="scouting")
    assert gf.header.prompt_format == "custom:test_prefix_search.terse_prompt"
    assert all(gf[p.id].i_star is not None for p in PROBLEMS[:6])
    probe = PrefixProbe(ArithmeticSolverPolicy(0.0), math_verify_scorer(), k=2,
                        prompt_format=terse_prompt)
    assert probe.prompt(PROBLEMS[0], 2) == terse_prompt(PROBLEMS[0], 2)
    assert probe.prompt_format_name == gf.header.prompt_format
    with pytest.raises(ConfigError, match="start must be 0"):
        probe.prompt(PROBLEMS[0], 2, start=1)
    # a resume with another renderer is refused, naming both
    with pytest.raises(GuidanceFileError, match="prompt_format: file has 'custom:test_prefix_search.terse_prompt', "
                                                "asked for 'custom:test_prefix_search.other_prompt'"):
        search(out, problems=PROBLEMS[:6], prompt_format=other_prompt, strategy="scouting")
    with pytest.raises(ConfigError, match="or a callable"):
        search(tmp_path / "x.jsonl", prompt_format=42)


class ProfileSolver(ArithmeticSolverPolicy):
    """The arithmetic solver with a chosen success profile: from a state with ``r``
    operations left it answers exactly when ``r`` is in ``solvable_remaining`` and is off by
    one otherwise, so success need not rise with the prefix length."""

    def __init__(self, solvable_remaining):
        super().__init__(0.0)
        self.solvable = frozenset(solvable_remaining)
        self.name = f"profile-solver-{sorted(self.solvable)}"

    def solve(self, expression, rng):
        text = super().solve(expression, rng)  # error rate 0: exact
        if len(_parse(expression)[1]) in self.solvable:
            return text
        return re.sub(r"\\boxed\{(-?\d+)\}", lambda m: f"\\boxed{{{int(m.group(1)) + 1}}}", text)


def test_non_monotone_success_linear_finds_the_global_i_star_the_others_a_local_one(tmp_path):
    # 7 operations, cap 6; state i leaves 7 - i operations. Solvable: states 2 and 6 only
    # (5 and 1 operations left): a global minimum at 2 and a local one at 6 (state 5 fails).
    problems = arithmetic.generate(3, 7, seed=4)
    assert all(prefix_cap(p) == 6 for p in problems)

    def run(strategy):
        return run_prefix_search(problems, ProfileSolver({5, 1}), dataset="arith-test",
                                 out=tmp_path / f"{strategy}.jsonl", k=4, strategy=strategy,
                                 scorer=math_verify_scorer(), progress=False)

    linear, gallop = run("linear"), run("galloping")
    for p in problems:
        assert linear[p.id].i_star == 2  # the paper's i*: the smallest i with a success
        assert [m.prefix_len for m in linear[p.id].evidence] == [1, 2]
        # galloping: cap 6 succeeds, 1 fails, 5 fails -> the verified local minimum 6
        r = gallop[p.id]
        assert r.i_star == 6 and r.by_state()[5] == Measurement(5, 0, 4)
        assert 2 not in r.by_state()

    # anchored, told by earlier problems that i* sits one state below the cap: the guess
    # (state 5) fails, it goes up to 6 and never looks below its failed guess
    probe = PrefixProbe(ProfileSolver({5, 1}), math_verify_scorer(), k=4, seed=0)
    history = [GuidanceRecord("earlier", 3, False, (0, 3), 4, 5)]
    p = problems[0]
    probe.reset()
    assert anchored_search(probe, p, 6, history=history) == 6
    assert [m.prefix_len for m in probe.log] == [5, 6]
    # ... and after a right guess it stops at the first failure below it
    probe.reset()
    assert anchored_search(probe, p, 6, history=[GuidanceRecord("earlier", 4, False, (0, 4), 4, 5)]) == 6
    assert [m.prefix_len for m in probe.log] == [6, 5]


def test_the_cli_and_the_api_default_to_linear(tmp_path):
    from pope_env.cli import build_parser

    args = build_parser().parse_args(["prefix-search", "--dataset", "arith-easy", "--out", "g.jsonl"])
    assert args.strategy == "linear"
    args = build_parser().parse_args(["train", "--dataset", "arith-easy"])
    assert args.strategy == "linear"
    gf = run_prefix_search(PROBLEMS[:2], ArithmeticSolverPolicy(0.35), dataset="arith-test",
                           out=tmp_path / "d.jsonl", scorer=math_verify_scorer(), progress=False)
    assert gf.header.strategy == "linear"


def _short_problem(steps, pid="short"):
    return Problem(id=pid, question="What is the value?", solution="".join(steps), steps=tuple(steps),
                   answer="7", source="test")


@pytest.mark.parametrize("n_steps", [2, 3, 4])
def test_fallback_on_a_short_solution_is_under_a_quarter_of_its_characters(n_steps):
    # whole steps cannot be under a quarter of 2-4 steps: the quarter is measured in characters
    long = "We expand both sides of the equation and collect the like terms carefully. "
    steps = [long] * (n_steps - 1) + ["Adding four to both sides, the answer is $\\boxed{7}$."]
    steps[n_steps - 2] = "So $a = 3$. "  # the one short step within the cap
    p = _short_problem(steps)
    total = len(p.solution.strip())
    for seed in range(8):
        start, stop = fallback_segment(p, seed)
        assert (start, stop) == (n_steps - 2, n_steps - 1)
        assert len("".join(p.steps[start:stop]).strip()) < total / 4


def test_fallback_is_empty_when_no_step_is_short_enough():
    long = "We expand both sides of the equation and collect the like terms carefully. "
    p = _short_problem([long, long, "Then $\\boxed{7}$."])
    assert fallback_segment(p, 0) == (0, 0)  # no guidance: shown unguided
    record = GuidanceRecord(p.id, None, True, (0, 0), 2, 3, (Measurement(1, 0, 4),))
    assert GuidanceRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
    assert guided_text(p, 0, start=0) == guided_text(p, 0)  # the unguided prompt


def test_fallback_on_five_or_more_steps_is_fewer_than_a_quarter_of_the_steps():
    for n_ops in (5, 8, 9):
        for p in arithmetic.generate(4, n_ops, seed=1):
            start, stop = fallback_segment(p, 0)
            assert 1 <= stop - start < len(p.steps) / 4 and stop <= prefix_cap(p)


# --------------------------------------------------------------------------- batching across problems

def test_an_unknown_measurement_keyword_is_refused_naming_the_function(tmp_path):
    from pope_env.hard_split import run_hard_split

    with pytest.raises(TypeError, match=r"run_prefix_search\(\) got unexpected keyword argument\(s\) \['samples'\]"):
        run_prefix_search(PROBLEMS[:2], ArithmeticSolverPolicy(0.0), dataset="arith-test", out=tmp_path / "g.jsonl",
                          samples=4)
    with pytest.raises(TypeError, match=r"run_hard_split\(\).*\['kk'\]; it takes chunk_size, config, k,"):
        run_hard_split(PROBLEMS[:2], ArithmeticSolverPolicy(0.0), dataset="arith-test", out=tmp_path / "s.jsonl", kk=4)
    assert not (tmp_path / "g.jsonl").exists() and not (tmp_path / "s.jsonl").exists()
