"""Solution steps: exact round trip, never a cut inside math, prefixes that hide the answer."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pope_env.datasets import load_dataset
from pope_env.problem import Problem
from pope_env.solution_steps import answer_step_index, max_prefix_len, protected_spans, split_solution


def cut_points(steps: tuple[str, ...]) -> list[int]:
    cuts, pos = [], 0
    for step in steps[:-1]:
        pos += len(step)
        cuts.append(pos)
    return cuts


def assert_no_cut_inside_math(text: str, steps: tuple[str, ...]) -> None:
    for start, end in protected_spans(text):
        inside = [c for c in cut_points(steps) if start < c < end]
        assert not inside, f"cut inside {text[start:end]!r}"


@pytest.fixture(scope="module")
def math500():
    return load_dataset("math500")


def test_round_trip_and_math_intact_on_every_math500_solution(math500):
    multi_step = 0
    for p in math500:
        steps = split_solution(p.solution)
        assert "".join(steps) == p.solution, p.id
        assert all(s.strip() for s in steps), p.id
        assert_no_cut_inside_math(p.solution, steps)
        multi_step += len(steps) > 1
    assert multi_step > 400  # it really splits: most solutions have several steps


def test_paragraphs_then_sentences_with_whitespace_attached():
    text = "First we note $x = 1.5$. Then $y=2$!\n\nSo the answer is $\\boxed{3}$.  "
    assert split_solution(text) == (
        "First we note $x = 1.5$. ",
        "Then $y=2$!\n\n",
        "So the answer is $\\boxed{3}$.  ",
    )


@pytest.mark.parametrize(
    "text",
    [
        "We get $a. B$ and more. Next.",  # inline math
        "We get $$a.\n\nB$$ and more. Next.",  # display $$ with a blank line inside
        "We get \\(a. B\\) and more. Next.",
        "We get \\[a. B\\] and more. Next.",
        "We get \\begin{align*}a. B \\\\\n\n C. D\\end{align*} and more. Next.",
        "Nested \\begin{a}\\begin{a}x. Y\\end{a}. Z\\end{a} and more. Next.",
        "The answer is \\boxed{\\text{Yes. No}} and more. Next.",
        "The answer is \\fbox{a. B} here. Next.",
        "[asy]\ndraw((0,0)--(1,1));\n\nlabel(\"A. B\");\n[/asy] Done. Next.",
    ],
)
def test_never_splits_inside_protected_regions(text):
    steps = split_solution(text)
    assert "".join(steps) == text
    assert_no_cut_inside_math(text, steps)
    assert steps[-1] == "Next."


def test_sentence_ending_inside_inline_math_and_after_display_math():
    assert split_solution("So $x = 2.$  Also $y = 3$.") == ("So $x = 2.$  ", "Also $y = 3$.")
    assert split_solution("Thus \\[x = 5.\\]Therefore $y$ is even.") == (
        "Thus \\[x = 5.\\]",
        "Therefore $y$ is even.",
    )


def test_abbreviations_decimals_and_list_markers_do_not_split():
    text = "Use e.g. the sum 3.5 here. Next we go.\n1. First item\n2. Second item"
    steps = split_solution(text)
    assert steps[0] == "Use e.g. the sum 3.5 here. "
    assert all(not s.strip().endswith(("1.", "2.")) for s in steps)


def test_escaped_dollar_and_unclosed_delimiters_are_plain_text():
    assert split_solution("It costs \\$5. Then \\$6.") == ("It costs \\$5. ", "Then \\$6.")
    text = "Open $ never closes. Next sentence."
    assert split_solution(text) == ("Open $ never closes. ", "Next sentence.")


def test_edge_cases():
    assert split_solution("") == ()
    assert split_solution("   ") == ("   ",)
    assert split_solution("  Leading space. Next.") == ("  Leading space. ", "Next.")
    with pytest.raises(TypeError):
        split_solution(None)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(list("ab .?!$\\{}()[]\n\tAZ1") + ["\\boxed{", "\\begin{x}", "\\end{x}", "$$", "\\[", "\\]"]),
        max_size=80,
    ).map("".join)
)
def test_round_trip_and_no_cut_inside_math_on_random_text(text):
    steps = split_solution(text)
    assert "".join(steps) == text
    assert_no_cut_inside_math(text, steps)


def test_adversarial_text_is_linear_time():
    for text in ["\\boxed{" * 50_000, "$" * 100_000, "\\(" * 50_000, "a. B" * 50_000, "{" * 200_000]:
        t0 = time.perf_counter()
        assert "".join(split_solution(text)) == text
        assert time.perf_counter() - t0 < 10


def test_answer_step_and_prefix_never_reveal_the_boxed_answer(math500):
    for p in math500:
        idx = answer_step_index(p.steps)
        assert idx is not None and "\\boxed" in p.steps[idx]
        k = max_prefix_len(p)
        assert 0 <= k <= idx < len(p.steps)
        assert "\\boxed" not in "".join(p.steps[:k]), p.id
        assert "\\boxed" in "".join(p.steps[: k + 1])  # the bound is tight


def _problem(steps: tuple[str, ...], answer: str = "7") -> Problem:
    return Problem(id="t", question="q", solution="".join(steps), steps=steps, answer=answer, source="t")


def test_max_prefix_len_cases():
    assert max_prefix_len(_problem(())) == 0
    assert max_prefix_len(_problem(("So $\\boxed{7}$.",))) == 0  # the only step holds the answer
    assert max_prefix_len(_problem(("A. ", "B \\boxed{7}. ", "Check: 7 works."))) == 1
    # Native steps without a box (CHAMP): cut at the last step that states the answer.
    assert max_prefix_len(_problem(("Let x be 3. ", "Then x+4 = 7. ", "Done."))) == 1
    assert max_prefix_len(_problem(("Let x be 3. ", "Hence the result."), answer="no match")) == 1
    assert answer_step_index(("a", "b")) is None


def test_champ_keeps_native_steps_and_prefixes_hide_the_answer():
    for p in load_dataset("champ"):
        k = max_prefix_len(p)
        assert k < len(p.steps)
        assert "".join(p.steps) == p.solution
