"""The math reward: real math-verify verdicts on MATH-500, hard time limits, bad input."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import pytest

from pope_env.datasets import load_dataset
from pope_env.errors import ConfigError
from pope_env.rewards.boxed import boxed_contents, last_boxed
from pope_env.rewards.math import (
    MathScore,
    MathVerifier,
    default_verifier,
    extract_answer,
    math_reward,
    score_completion,
)
from pope_env.rewards.math import extract_with_format

TOWER = r"The answer is $\boxed{9^{9^{9^{9}}}}$."  # sympy would compute this for hours


@pytest.fixture(scope="module")
def verifier():
    with MathVerifier(timeout_s=5.0, workers=2) as v:
        yield v


@pytest.fixture(scope="module")
def math500():
    return load_dataset("math500")


def wrong_version(solution: str, answer: str) -> str:
    """The solution with its last boxed answer changed to ``answer + 1``."""
    start = solution.rfind("\\boxed{")
    inner = last_boxed(solution[start:])
    return solution[:start] + "\\boxed{" + f"{answer}+1" + "}" + solution[start + len("\\boxed{") + len(inner) + 1 :]


# ----------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    ("text", "answer", "format_ok"),
    [
        (r"so $\boxed{\frac{1}{2}}$ and later \boxed{3}.", "3", True),
        (r"nested \boxed{\left\{1, 2\right\}}", r"\left\{1, 2\right\}", True),
        (r"escaped \boxed{a\}b}", r"a\}b", True),
        (r"old style \fbox{42}", "42", True),
        (r"bare $\boxed 5$", "5", True),
        (r"first \boxed{7} then a truncated \boxed{8", "7", True),
        ("Thus the final answer is $\\frac{3}{4}$. Done", r"\frac{3}{4}", False),
        ("The answer is: 12.", "12", False),
        ("work\n#### 1,234", "1,234", False),
        ("we get 3 apples then 41 pears", "41", False),
        ("no answer here", None, False),
        (r"empty \boxed{}", None, False),
    ],
)
def test_extract_answer(text, answer, format_ok):
    assert extract_answer(text) == answer
    assert extract_with_format(text) == (answer, format_ok if answer is not None else False)


def test_boxed_helpers():
    assert boxed_contents(r"\boxed{1} x \fbox{2} \boxed{3") == ["1", "2"]
    assert last_boxed("\\boxed{" * 100_000) is None  # unclosed boxes: fast, no answer
    assert last_boxed(r"\boxedx{1}") is None


# ----------------------------------------------------------------------- real verdicts


@pytest.mark.slow
def test_every_math500_gold_solution_scores_1_and_changed_answers_score_0(verifier, math500):
    scores = verifier.score_batch([p.solution for p in math500], [p.answer for p in math500])
    assert [p.id for p, s in zip(math500, scores) if s.reward != 1.0] == []
    assert all(s.correct and s.format_ok and not s.timed_out for s in scores)

    sample = math500[::5]  # 100 problems across all subjects, verified by math-verify
    wrong = verifier.score_batch([wrong_version(p.solution, p.answer) for p in sample], [p.answer for p in sample])
    assert [p.id for p, s in zip(sample, wrong) if s.reward != 0.0] == []
    assert all(s.format_ok and not s.timed_out for s in wrong)


def test_equivalent_forms_are_verified_by_math_verify(verifier):
    before = verifier.stats["exact_match"]
    completions = [r"\boxed{0.5}", r"\boxed{\dfrac{2}{4}}", r"\boxed{x^2+2x+1}", r"\boxed{2\sqrt{2}}", r"\boxed{0.6}"]
    golds = [r"\frac{1}{2}", r"\frac12", r"(x+1)^2", r"\sqrt{8}", r"\frac{1}{2}"]
    assert [s.correct for s in verifier.score_batch(completions, golds)] == [True, True, True, True, False]
    assert verifier.stats["exact_match"] == before  # none of these took the fast path


def test_plain_rationals_are_compared_by_value(verifier):
    before = verifier.stats["rational_match"]
    completions = [r"\boxed{007}", r"\boxed{-12}", r"\boxed{13}", r"\boxed{\dfrac{6}{8}}", r"\boxed{1{,}000}", r"\boxed{2/3}"]
    golds = ["7", "-12", "12", "3/4", "1000", r"\frac{3}{2}"]
    assert [s.correct for s in verifier.score_batch(completions, golds)] == [True, True, False, True, True, False]
    assert verifier.stats["rational_match"] == before + 5  # "-12" matched exactly


def test_mixed_numbers_go_to_math_verify(verifier):
    """``2\\frac12`` is not a plain rational (math-verify reads it as 5/2): no fast path."""
    before = verifier.stats["rational_match"]
    assert verifier.score(r"\boxed{2\frac12}", "5/2").correct is True
    assert verifier.stats["rational_match"] == before


def test_fallback_answers_score_but_are_flagged(verifier):
    score = verifier.score("After all that, the final answer is 42.", "42")
    assert score == MathScore(1.0, True, False, False, "42")


def test_repeated_answers_are_verified_once(verifier):
    before = verifier.stats["cache_hits"]
    scores = verifier.score_batch([r"\boxed{\sqrt{2}/2}"] * 8, [r"\frac{\sqrt{2}}{2}"] * 8)
    assert all(s.correct for s in scores)
    assert verifier.stats["cache_hits"] == before + 7  # one verification for the group


# --------------------------------------------------------------------- time limit, crashes


def test_a_stuck_verification_is_killed_and_the_pool_recovers():
    with MathVerifier(timeout_s=1.0, workers=1) as v:
        v.warm_up()
        t0 = time.perf_counter()
        stuck, fine = v.score_batch([TOWER, r"\boxed{4}"], ["3", "2+2"])
        assert time.perf_counter() - t0 < 60  # returns; the limit is enforced by a kill
        assert stuck == MathScore(0.0, False, True, True, "9^{9^{9^{9}}}")
        assert fine.correct and not fine.timed_out
        assert v.stats["timeouts"] == 1 and v.stats["workers_started"] >= 2
        assert v.score(r"\boxed{\frac{6}{4}}", "1.5").correct  # the replacement works


def test_a_crashed_worker_is_replaced_and_its_item_scores_0():
    with MathVerifier(timeout_s=60.0, workers=1) as v:
        v.warm_up()
        pid = v._workers[0].proc.pid
        killer = threading.Timer(1.0, os.kill, (pid, signal.SIGKILL))
        killer.start()
        try:
            (score,) = v.score_batch([TOWER], ["3"])
        finally:
            killer.cancel()
        assert score.reward == 0.0 and not score.timed_out
        assert v.stats["crashes"] == 1
        assert v.score(r"\boxed{2}", "2").correct


# ------------------------------------------------------------------------------ bad input


def test_bad_completions_score_0_with_format_not_ok(verifier):
    bad = [None, 123, b"\\boxed{3}", ["\\boxed{3}"], "x" * 10_000_000 + "\\boxed{3}", "\ud800 \\boxed{3}", ""]
    scores = verifier.score_batch(bad + [r"\boxed{3}"], ["3"] * (len(bad) + 1))
    assert all(s == MathScore(0.0, False, False, False, None) for s in scores[:-1])
    assert scores[-1].correct


def test_bad_arguments_raise_config_errors(verifier):
    with pytest.raises(ConfigError, match="2 completions but 1"):
        verifier.score_batch(["a", "b"], ["1"])
    with pytest.raises(ConfigError, match="gold answer 0"):
        verifier.score("\\boxed{1}", "")
    with pytest.raises(ConfigError):
        MathVerifier(timeout_s=0)
    with pytest.raises(ConfigError):
        MathVerifier(workers=0)


# ---------------------------------------------------------------------- shared API, TRL


def test_score_completion_and_default_verifier(math500):
    assert default_verifier() is default_verifier()
    p = math500[0]
    assert score_completion(p.solution, p).reward == 1.0
    assert score_completion(r"\boxed{-1}", p).reward == 0.0


def test_math_reward_is_a_trl_reward_function():
    prompts = ["q1", "q2", "q3"]
    completions = [r"so \boxed{4}", [{"role": "assistant", "content": r"\boxed{\frac{1}{2}}"}], "no idea"]
    assert math_reward(prompts, completions, answer=["4", "0.5", "7"]) == [1.0, 1.0, 0.0]
    solutions = [r"2+2=\boxed{4}", r"half is \boxed{1/2}", r"\boxed{7}"]
    assert math_reward(prompts, completions, solution=solutions) == [1.0, 1.0, 0.0]
    with pytest.raises(ConfigError, match="answer"):
        math_reward(prompts, completions)


def _score_in_child(queue) -> None:
    with MathVerifier(workers=1) as v:
        queue.put(v.score(r"\boxed{10}", "2\\cdot 5").reward)


def test_works_inside_a_daemonic_forked_process():
    default_verifier().score(r"\boxed{1}", "1")  # the parent has live workers when it forks
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_score_in_child, args=(queue,), daemon=True)
    child.start()
    try:
        assert queue.get(timeout=120) == 1.0
    finally:
        child.join(timeout=30)
    assert child.exitcode == 0
    assert default_verifier().score(r"\boxed{2}", "2").correct  # parent pool untouched
