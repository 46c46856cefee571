"""Guided roll-in prompts: content, the answer cap, plain-text form and bad input."""

from __future__ import annotations

import pytest

from pope_env.datasets import arithmetic
from pope_env.errors import ConfigError, DataFormatError
from pope_env.guidance import (
    GuidanceConfig,
    check_guidable,
    guided_messages,
    guided_text,
    prefix_cap,
    unguided_messages,
)
from pope_env.problem import Problem


def make(steps, answer="7", pid="p"):
    return Problem(id=pid, question="What is 3+4?", solution="".join(steps), steps=tuple(steps),
                   answer=answer, source="test")


MATHY = make(["We add the numbers.\n\n", "Count on from $3$ by $4$.\n\n", "So the answer is $\\boxed{7}$."])


def test_guided_messages_show_problem_prefix_and_instruction():
    config = GuidanceConfig(instruction="Continue the partial solution. Box the answer.")
    messages = guided_messages(MATHY, 2, config)
    assert messages[0] == {"role": "system", "content": config.instruction}
    user = messages[1]["content"]
    assert messages[1]["role"] == "user"
    assert "What is 3+4?" in user and "We add the numbers." in user and "by $4$." in user
    assert "boxed" not in user
    assert user.index("What is 3+4?") < user.index("Partial solution:") < user.index("by $4$")


def test_prefix_zero_is_the_unguided_problem():
    assert guided_messages(MATHY, 0) == unguided_messages(MATHY)
    assert "Partial solution" not in guided_text(MATHY, 0)


def test_plain_text_ends_with_the_partial_solution():
    text = guided_text(MATHY, 1)
    assert text.endswith("We add the numbers.\n")
    assert text.startswith(GuidanceConfig().instruction)


def test_instruction_can_go_into_the_user_message():
    messages = guided_messages(MATHY, 1, GuidanceConfig(system_role=False))
    assert [m["role"] for m in messages] == ["user"]
    assert messages[0]["content"].startswith(GuidanceConfig().instruction)


@pytest.mark.parametrize("n_ops", [2, 3, 5, 8])
def test_no_prefix_ever_reveals_the_boxed_answer(n_ops):
    for problem in arithmetic.generate(20, n_ops, seed=1):
        cap = prefix_cap(problem)
        assert cap == len(problem.steps) - 1
        for i in range(cap + 1):
            for render in (guided_messages, guided_text):
                out = render(problem, i)
                text = out if isinstance(out, str) else "".join(m["content"] for m in out)
                assert "boxed{" + problem.answer not in text
        with pytest.raises(ConfigError, match=f"at most {cap} steps"):
            guided_messages(problem, cap + 1)


def test_cap_stops_at_the_first_boxed_step_even_if_more_steps_follow():
    p = make(["Add.\n\n", "$\\boxed{7}$\n\n", "Check: 7-4=3.\n\n"])
    assert prefix_cap(p) == 1
    with pytest.raises(ConfigError, match="step 1 \\(0-based\\) holds or states the answer"):
        guided_text(p, 2)


def test_segment_rendering_shows_a_middle_segment():
    p = make(["A.\n", "B.\n", "C.\n", "D.\n", "\\boxed{7}"])
    assert "B.\nC." in guided_text(p, 2, start=1) and "A." not in guided_text(p, 2, start=1)
    with pytest.raises(ConfigError, match="end <= 4"):
        guided_text(p, 2, start=3)


def test_a_middle_segment_has_its_own_instruction_not_the_beginning_of_a_solution():
    p = make(["A.\n", "B.\n", "C.\n", "D.\n", "\\boxed{7}"])
    config = GuidanceConfig()
    assert "beginning of a worked solution" in config.instruction
    system, user = guided_messages(p, 2, start=1)
    assert system == {"role": "system", "content": config.segment_instruction}
    assert "middle" in config.segment_instruction and "beginning" not in config.segment_instruction
    assert "Excerpt from the solution:\nB.\nC." in user["content"]
    assert "Partial solution:" not in user["content"]
    text = guided_text(p, 2, start=1)
    assert text.startswith(config.segment_instruction) and text.endswith("B.\nC.\n")
    # a segment that starts at step 0 is a prefix and is shown as one
    assert guided_messages(p, 2, start=0)[0]["content"] == config.instruction
    custom = GuidanceConfig(segment_instruction="Hint below.", segment_label="Hint:", system_role=False)
    (only,) = guided_messages(p, 1, custom, start=2)
    assert only["content"].startswith("Hint below.\n\n") and "Hint:\nC." in only["content"]


@pytest.mark.parametrize(
    "steps,needle",
    [
        ([], "no oracle solution steps"),
        (["   "], "no oracle solution steps"),
        (["The answer is $\\boxed{7}$."], "one-step solution"),
        (["So $\\boxed{7}$.\n", "Done.\n"], "first step already holds or states the final answer"),
        (["So $x = 7$.\n", "Hence $\\boxed{7}$.\n"], "first step already holds or states the final answer"),
    ],
)
def test_unguidable_problems_are_refused(steps, needle):
    p = make(steps)
    with pytest.raises(DataFormatError, match=needle):
        check_guidable(p)
    with pytest.raises(DataFormatError, match=needle):
        guided_messages(p, 1)
    assert unguided_messages(p)[1]["content"].endswith("What is 3+4?")


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_bad_prefix_len_is_refused(bad):
    with pytest.raises(ConfigError, match="prefix_len"):
        guided_messages(MATHY, bad)


def test_no_prefix_of_any_math500_solution_reveals_the_boxed_answer():
    from pope_env.datasets import load_dataset
    from pope_env.guidance import shown_steps

    from pope_env.guidance import precompute_caps

    guidable = 0
    precompute_caps(load_dataset("math500"))  # one parallel batch instead of 500 small ones
    for problem in load_dataset("math500"):
        try:
            cap = check_guidable(problem)
        except DataFormatError:
            # one-step solutions, or the first step already boxes the answer
            assert len(problem.steps) <= 1 or "boxed" in problem.steps[0] or prefix_cap(problem) == 0
            continue
        guidable += 1
        longest = shown_steps(problem, cap)
        assert "\\boxed" not in longest and "\\fbox" not in longest
        assert "\\boxed" not in guided_messages(problem, cap)[1]["content"]  # user turn
        with pytest.raises(ConfigError, match=f"at most {cap} steps"):
            guided_text(problem, cap + 1)
    assert guidable > 400
