"""The prefix cap also excludes steps that *state* the gold answer before it is boxed
(real math-verify verdicts, real MATH solutions)."""

from __future__ import annotations

import pytest

from pope_env import answer_leak
from pope_env.datasets import get_problem
from pope_env.errors import ConfigError
from pope_env.guidance import guided_text, precompute_caps, prefix_cap, shown_steps
from pope_env.problem import Problem
from pope_env.solution_steps import max_prefix_len


def make(steps, answer, question="Find the value.", pid="p"):
    return Problem(id=pid, question=question, solution="".join(steps), steps=tuple(steps),
                   answer=answer, source="test")


def test_the_issue_example_810_is_not_shown_before_the_box():
    p = get_problem("math-train", "math-train/geometry/3047")
    assert "x^2=810." in p.steps[2] and "\\boxed{810}" in p.steps[3]
    assert max_prefix_len(p) == 3  # the box alone would allow the step "... $x^2=810.$"
    assert prefix_cap(p) == 2
    assert "810" not in shown_steps(p, prefix_cap(p))
    with pytest.raises(ConfigError, match="step 2 \\(0-based\\) holds or states the answer"):
        guided_text(p, 3)


@pytest.mark.parametrize(
    "step,answer",
    [
        ("Solving, we get $x=9\\sqrt{10}$, and $x^2=810.$\n", "810"),  # a final "= A"
        ("So the area is $810$ square units.\n", "810"),  # a math span equal to A
        ("Natalia sold 48+24 = 72 clips altogether.\n", "72"),  # "= A" in plain text
        ("Hence $n \\equiv 3 \\pmod{7}$.\n", "3"),  # a congruence states the residue
        ("\\begin{align*} d &= \\sqrt{3^2+3^2}\\\\ &= \\sqrt{18}. \\end{align*}\n", "3\\sqrt{2}"),  # math-verify
        ("Thus the probability is $\\frac{6}{8}$.\n", "\\frac{3}{4}"),  # exact rational
        ("The two roots are $x = 5$ or $x = -2$.\n", "-2"),  # any clause of a span
        ("Hence $P \\ge 22 \\sqrt{11} - 57.$\n", "22\\sqrt{11}-57"),  # a bound states a minimum
    ],
)
def test_a_step_that_states_the_answer_is_excluded(step, answer):
    p = make(["We set up the equation.\n", step, "The answer is $\\boxed{%s}$." % answer], answer)
    assert max_prefix_len(p) == 2
    assert prefix_cap(p) == 1


@pytest.mark.parametrize(
    "step,answer",
    [
        ("We get $x^2 = 810$ and so $x = 9\\sqrt{10}$.\n", "9"),  # 9 is not 9\sqrt{10}
        ("There are $x < 72$ clips.\n", "72"),  # an inequality states no value
        ("Compute $2 \\cdot 3 \\cdot 5 \\cdot 27 = 810\\cdot 1 \\cdot 1 \\cdot 1$ first.\n", "810"),  # a long derivation line
        ("We compute $3+4$ by counting on.\n", "7"),  # restates the question's expression
        ("Let $A=(2,0)$ and $B=(0,2)$.\n", "2"),  # a point is not the number 2
        ("The matrix is $\\begin{pmatrix} 7 & 1 \\end{pmatrix}$.\n", "7"),  # a cell is no result
    ],
)
def test_steps_that_do_not_state_the_answer_keep_the_cap(step, answer):
    p = make(["We set up the equation.\n", step, "The answer is $\\boxed{%s}$." % answer], answer,
             question="What is $3+4$? Give the value.")
    assert prefix_cap(p) == max_prefix_len(p) == 2


def test_stated_results():
    assert answer_leak.stated_results("and $x^2=810.$ ") == ["810"]
    assert answer_leak.stated_results("$a = b = 5$, so $c < 4$ and $d\\approx 3$.") == ["5"]
    assert answer_leak.stated_results("so $c \\le 4$ and $d \\geq 2$") == ["4", "2"]
    assert answer_leak.stated_results("$x = 3, y = 1{,}000$") == ["3", "1{,}000"]
    assert answer_leak.stated_results("$5\\text{ cm}$ long") == ["5"]
    assert answer_leak.stated_results("no math here") == []


def test_caps_are_cached_and_precomputed_in_one_batch():
    from pope_env.rewards.math import default_verifier

    problems = [
        make(["Start.\n", f"So $d = \\sqrt{{{2 * k * k}}}$.\n", f"$\\boxed{{{k}\\sqrt{{2}}}}$"],
             f"{k}\\sqrt{{2}}", pid=f"q{k}")
        for k in range(11, 17)
    ]
    answer_leak.clear_cache()
    stats = default_verifier().stats
    before = stats["items"]
    assert precompute_caps(problems) == [1] * len(problems)  # math-verify: sqrt(2k^2) = k sqrt 2
    assert stats["items"] > before
    after = stats["items"]
    assert [prefix_cap(p) for p in problems] == [1] * len(problems)
    assert stats["items"] == after  # every later call is a cache hit: no verification


@pytest.mark.slow
def test_no_math500_prefix_states_the_answer_by_a_final_equals():
    from pope_env.datasets import load_dataset

    problems = [p for p in load_dataset("math500") if len(p.steps) > 1]
    caps = precompute_caps(problems)
    shrunk = 0
    for p, cap in zip(problems, caps):
        assert cap <= max_prefix_len(p)
        shrunk += cap < max_prefix_len(p)
        given = {r.replace(" ", "") for r in answer_leak.stated_results(p.question)}
        for step in p.steps[:cap]:
            for result in answer_leak.stated_results(step):
                # the answer is never stated, unless the question itself states it
                assert result.replace(" ", "") != p.answer.replace(" ", "") or result.replace(" ", "") in given
    assert shrunk > 10  # MATH solutions often state the answer before boxing it
