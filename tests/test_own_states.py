"""The S_good overlap of the policy's own unguided states (pope_env.own_states) and its
training hook (pope_env.agents.reach_hook)."""

from __future__ import annotations

import json

import pytest

from arith_policy import ArithmeticSolverPolicy, math_verify_scorer
from pope_env.agents.policy import SamplingParams
from pope_env.datasets import arithmetic
from pope_env.errors import ConfigError
from pope_env.solution_steps import split_solution
from pope_env.own_states import (
    own_partial_steps,
    own_state_overlap,
    spaced_prefix_lengths,
    split_lines,
)


class SloppyStarterPolicy:
    """Unguided, a solver that errs on half of its operations; from a partial solution, an
    exact one. So a state the sloppy solver wrote is in S_good iff it is still on track."""

    def __init__(self) -> None:
        self.name = "sloppy-start"
        self.sloppy, self.exact = ArithmeticSolverPolicy(0.5), ArithmeticSolverPolicy(0.0)

    def generate(self, prompts, *, n=1, sampling=SamplingParams()):
        out = []
        for prompt in prompts:
            text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
            solver = self.exact if "Partial solution:" in text else self.sloppy
            out.extend(solver.generate([prompt], n=n, sampling=sampling))
        return out


def test_spaced_prefix_lengths_keep_the_longest_state():
    assert spaced_prefix_lengths(5, 2) == [3, 5]
    assert spaced_prefix_lengths(4, 4) == [1, 2, 3, 4]
    assert spaced_prefix_lengths(1, 3) == [1]
    assert spaced_prefix_lengths(0, 2) == []


def test_own_partial_steps_stop_before_the_answer_step():
    text = "21+7-8\n28-8\n\\boxed{20}"
    assert split_lines(text) == ["21+7-8\n", "28-8\n", "\\boxed{20}"]
    assert own_partial_steps(text, split_lines) == ["21+7-8\n", "28-8\n"]
    assert own_partial_steps("1+1\n2+2\n", split_lines) == ["1+1\n", "2+2\n"]  # truncated: all steps
    prose = "First, $x = 2$.\n\nThen $y = x + 1 = 3$.\n\nSo the answer is $\\boxed{3}$."
    assert own_partial_steps(prose) == ["First, $x = 2$.\n\n", "Then $y = x + 1 = 3$.\n\n"]


def test_own_states_are_cut_at_the_first_box_like_the_oracle_prefix_cap():
    from pope_env.problem import Problem
    from pope_env.solution_steps import max_prefix_len

    text = "Let $x = 2$.\n\nSo $\\boxed{2}$ is a guess.\n\nCheck: $x + 1 = 3$.\n\nFinally $\\boxed{2}$."
    own = own_partial_steps(text)
    assert own == ["Let $x = 2$.\n\n"]  # not the three steps before the last box
    steps = tuple(s for s in split_solution(text) if s.strip())
    oracle = Problem("p", "q", text, steps, "2", "test")
    assert len(own) == max_prefix_len(oracle) == 1  # one rule for own states and oracle prefixes
    assert own_partial_steps("1\n\\fbox{3}\n2\n\\boxed{3}", split_lines) == ["1\n"]


def test_an_exact_policy_has_every_own_state_in_s_good():
    problems = arithmetic.generate(6, 5, seed=3)
    report = own_state_overlap(problems, ArithmeticSolverPolicy(0.0), k=3, states_per_problem=2,
                               scorer=math_verify_scorer(), split_steps=split_lines)
    assert report.unguided_correct == 6
    assert len(report.states) == 12 and {len(s.steps) for s in report.states} == {2, 4}
    assert report.overlap == 1.0 and report.problem_overlap == 1.0 and report.mean_success == 1.0
    assert report.metrics()["own_unguided_pass@1"] == 1.0


def test_own_states_are_in_s_good_exactly_when_they_are_on_track():
    problems = arithmetic.generate(20, 6, seed=11)
    by_id = {p.id: p for p in problems}
    report = own_state_overlap(problems, SloppyStarterPolicy(), k=4, states_per_problem=3, seed=5,
                               scorer=math_verify_scorer(), split_steps=split_lines)
    # the exact solver continues from the last line: a state is on track iff that line is
    # the oracle's (an earlier slip may have been cancelled by a later one)
    on_track = [s.steps[-1] == by_id[s.problem_id].steps[len(s.steps) - 1] for s in report.states]
    assert [report.in_s_good(s) for s in report.states] == on_track
    assert 0 < sum(on_track) < len(on_track)  # the check saw both kinds of state
    assert report.overlap == pytest.approx(sum(on_track) / len(on_track))
    again = own_state_overlap(problems, SloppyStarterPolicy(), k=4, states_per_problem=3, seed=5,
                              scorer=math_verify_scorer(), split_steps=split_lines)
    assert again == report  # seeded: the same draws
    table = report.table()
    assert "S_good" in table and f"{report.overlap:.3f}" in table


def test_threshold_and_point_criterion():
    problems = arithmetic.generate(4, 6, seed=2)
    noisy = ArithmeticSolverPolicy(0.3)
    strict = own_state_overlap(problems, noisy, k=4, threshold=0.9, scorer=math_verify_scorer(),
                               split_steps=split_lines)
    loose = own_state_overlap(problems, noisy, k=4, threshold=0.0, criterion="point",
                              scorer=math_verify_scorer(), split_steps=split_lines)
    # with 4 samples the lower Wilson bound never exceeds 0.9; the point estimate > 0 iff a success
    assert strict.overlap == 0.0
    assert [loose.in_s_good(s) for s in loose.states] == [s.successes > 0 for s in loose.states]


@pytest.mark.parametrize("kwargs, needle", [
    ({"k": 0}, "k must be an integer >= 1"),
    ({"states_per_problem": 0}, "states_per_problem"),
    ({"threshold": 1.0}, "threshold must be in"),
    ({"criterion": "mean"}, "criterion must be one of"),
    ({"confidence": 1.5}, "confidence must be in"),
])
def test_bad_settings_are_refused(kwargs, needle):
    problems = arithmetic.generate(1, 3, seed=0)
    with pytest.raises(ConfigError, match=needle):
        own_state_overlap(problems, ArithmeticSolverPolicy(0.0), scorer=math_verify_scorer(), **kwargs)
    with pytest.raises(ConfigError, match="at least one problem"):
        own_state_overlap([], ArithmeticSolverPolicy(0.0))


def test_hook_logs_overlap_at_each_evaluation_of_a_training_run(tmp_path):
    from tiny_learner import TinyLearner

    from pope_env.agents.grpo import GRPOConfig
    from pope_env.agents.methods import build_source, get_method, make_items
    from pope_env.agents.reach_hook import OwnStateReachHook
    from pope_env.agents.train import TrainConfig, Trainer

    problems = arithmetic.generate(3, 4, seed=1)

    def render(problem, prefix_len):
        return problem.question + "\n" + "".join(problem.steps[:prefix_len])

    hook = OwnStateReachHook(problems, k=2, states_per_problem=1, scorer=math_verify_scorer(),
                             render_state=lambda p, steps: p.question + "\n" + "".join(steps),
                             split_steps=split_lines, sampling=SamplingParams(max_new_tokens=8),
                             details=tmp_path / "own_states.jsonl")
    config = TrainConfig(steps=2, prompts_per_step=2, group_size=2, sampling=SamplingParams(max_new_tokens=4),
                         grpo=GRPOConfig(lr=1e-3), eval_every=1, eval_k=2, progress=False, tensorboard=False)
    reward = lambda completions, items: [float(len(c) > 2) for c in completions]  # noqa: E731
    Trainer(TinyLearner(0), build_source(get_method("grpo"), render, hard=problems, seed=0), reward,
            config, tmp_path / "run", eval_items=make_items(problems, render), eval_hooks=[hook]).train()
    evals = [json.loads(line) for line in (tmp_path / "run" / "eval_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [0, 1, 2]
    assert all({"s_good_overlap", "own_states", "own_unguided_pass@1"} <= e.keys() for e in evals)
    details = [json.loads(line) for line in (tmp_path / "own_states.jsonl").read_text().splitlines()]
    assert [d["step"] for d in details] == [0, 1, 2]
    assert all(d["metrics"]["own_states"] == len(d["states"]) for d in details)
