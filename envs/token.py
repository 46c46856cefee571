"""Token-level arithmetic reasoning: one action = one token, for classic RL agents."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from pope_env.errors import ConfigError, DataFormatError, InvalidActionError, check_can_step
from pope_env.guidance import prefix_cap
from pope_env.problem import Problem
from pope_env.rollin import MODES, RollInSampler

# --------------------------------------------------------------------------- vocabulary

TOKENS: tuple[str, ...] = tuple("0123456789") + ("+", "-", "*", "\n", "\\boxed{", "}")
"""The action vocabulary: token id ``a`` writes ``TOKENS[a]``."""
V = len(TOKENS)
PLUS, MINUS, TIMES, NEWLINE, BOX, CLOSE = 10, 11, 12, 13, 14, 15
OPERATOR_TOKENS = (PLUS, MINUS, TIMES)
PAD = 0
"""Observation id of padding; token ``a`` is observed as ``a + 1``."""

_CHAR_TO_TOKEN = {t: i for i, t in enumerate(TOKENS) if len(t) == 1}

LEVELS: dict[str, dict[str, int]] = {
    "easy": {"n_ops": 1, "max_value": 9},
    "hard": {"n_ops": 3, "max_value": 99},
}
RESET_OPTIONS = ("problem_id", "prefix_len", "prefix_steps", "guided")
"""The token env's reset options: ``prefix_len`` counts oracle *tokens* here, ``prefix_steps``
is the roll-in sampler's ``prefix_len`` (oracle steps)."""


class InvalidTokenError(InvalidActionError, ValueError):
    """An action that is not a token id of the vocabulary (not an int in ``[0, V)``)."""


def tokenize(text: str) -> list[int]:
    """Token ids of ``text`` (``"\\\\boxed{"`` is one token).

    Raises:
        DataFormatError: a character outside the vocabulary, named with its position.
    """
    ids: list[int] = []
    i = 0
    while i < len(text):
        if text.startswith("\\boxed{", i):
            ids.append(BOX)
            i += len("\\boxed{")
            continue
        token = _CHAR_TO_TOKEN.get(text[i])
        if token is None:
            raise DataFormatError(
                f"character {text[i]!r} at position {i} of {text[:40]!r} is not in the token "
                f"vocabulary {list(TOKENS)}"
            )
        ids.append(token)
        i += 1
    return ids


def detokenize(ids: Sequence[int]) -> str:
    """The text of token ids (inverse of :func:`tokenize`)."""
    return "".join(TOKENS[int(i)] for i in ids)


# --------------------------------------------------------------------------- grammar

# Phases of the solution grammar (one line per operation; see TokenEnv's docstring).
LINE_START, NUMBER, AFTER_OP, BOX_START, BOX_NUMBER, DONE = range(6)


@dataclass
class Grammar:
    """The state of the solution grammar after some tokens (small ints only).

    A solution of an ``n_ops`` problem is ``n_ops`` lines: line ``k < n_ops - 1`` is an
    expression with exactly ``n_ops - 1 - k`` operators followed by ``"\\n"``; the last line
    is ``\\boxed{`` number ``}``. Numbers have 1..``max_digits`` digits, no leading zeros.
    """

    n_ops: int
    max_digits: int
    phase: int = LINE_START
    line: int = 0
    ops_left: int = 0
    digits: int = 0
    zero: bool = False
    value: int = 0

    def __post_init__(self) -> None:
        self.ops_left = self.n_ops - 1

    def key(self) -> tuple[int, int, bool, bool]:
        """What the mask depends on."""
        can_extend = self.digits < self.max_digits and not self.zero
        return (self.phase, self.ops_left, can_extend, self.line == self.n_ops - 1)

    def advance(self, token: int) -> None:
        """Apply a token already known to be allowed."""
        if token < 10:
            if self.phase in (LINE_START, AFTER_OP, BOX_START):
                self.digits, self.zero, self.value = 1, token == 0, token
                self.phase = BOX_NUMBER if self.phase == BOX_START else NUMBER
            else:
                self.digits += 1
                self.value = self.value * 10 + token
        elif token <= TIMES:
            self.ops_left -= 1
            self.phase = AFTER_OP
        elif token == NEWLINE:
            self.line += 1
            self.ops_left = self.n_ops - 1 - self.line
            self.phase = LINE_START
        elif token == BOX:
            self.phase = BOX_START
        else:
            self.phase = DONE


def mask_for(key: tuple[int, int, bool, bool]) -> np.ndarray:
    """The allowed tokens in grammar state ``key`` (see :meth:`Grammar.key`)."""
    phase, ops_left, can_extend, last_line = key
    mask = np.zeros(V, dtype=bool)
    if phase == LINE_START:
        if last_line:
            mask[BOX] = True
        else:
            mask[:10] = True
    elif phase in (AFTER_OP, BOX_START):
        mask[:10] = True
    elif phase == NUMBER:
        mask[:10] = can_extend
        if ops_left > 0:
            mask[list(OPERATOR_TOKENS)] = True
        else:
            mask[NEWLINE] = True
    elif phase == BOX_NUMBER:
        mask[:10] = can_extend
        mask[CLOSE] = True
    mask.flags.writeable = False
    return mask


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class TokenProblem:
    """A problem precomputed for the hot path."""

    problem: Problem
    question: np.ndarray  # token ids of the expression
    oracle: np.ndarray  # token ids of the oracle solution
    step_ends: tuple[int, ...]  # token offset after each oracle step
    answer: int
    n_ops: int
    cap_steps: int  # oracle steps that can be shown (excludes the boxed step)
    cap_tokens: int  # oracle tokens that can be shown (up to and including "\\boxed{")


def prepare(problem: Problem) -> TokenProblem:
    """Tokenize one synthetic arithmetic problem (:mod:`pope_env.datasets.arithmetic`)."""
    expression = (problem.meta or {}).get("expression")
    if problem.source != "arithmetic" or not expression or not problem.steps:
        raise DataFormatError(
            f"problem {problem.id!r} is not a synthetic arithmetic problem with steps; the token "
            "env needs problems from pope_env.datasets.arithmetic (or the arith-* datasets)"
        )
    question = tokenize(expression)
    oracle: list[int] = []
    ends: list[int] = []
    for step in problem.steps:
        oracle.extend(tokenize(step))
        ends.append(len(oracle))
    n_ops = sum(t in OPERATOR_TOKENS for t in question)
    if not problem.answer.isdigit() or oracle[-1] != CLOSE or len(problem.steps) != n_ops:
        raise DataFormatError(f"problem {problem.id!r}: oracle is not one line per operation "
                              "ending in \\boxed{non-negative integer}")
    return TokenProblem(
        problem=problem,
        question=np.asarray(question, dtype=np.int64),
        oracle=np.asarray(oracle, dtype=np.int64),
        step_ends=tuple(ends),
        answer=int(problem.answer),
        n_ops=n_ops,
        cap_steps=prefix_cap(problem),
        cap_tokens=oracle.index(BOX) + 1,
    )


def _longest_number(ids: np.ndarray) -> int:
    longest = run = 0
    for token in ids.tolist():
        run = run + 1 if token < 10 else 0
        longest = max(longest, run)
    return longest


def arithmetic_problems(
    n_ops: int, max_value: int, *, n_problems: int = 1000, split: str = "train", seed: int = 0
) -> list[Problem]:
    """Up to ``n_problems`` distinct chains (fewer when fewer exist, e.g. 1-op chains with
    values <= 9)."""
    from pope_env.datasets.arithmetic import iter_problems

    return list(itertools.islice(
        iter_problems(n_ops, split=split, seed=seed, max_value=max_value), n_problems))


def dataset_name(n_ops: int, max_value: int, split: str) -> str:
    """The name recorded in (and checked against) guidance files for a generated problem set."""
    return f"token-arith-{n_ops}ops-max{max_value}-{split}"


# --------------------------------------------------------------------------- the env


class TokenEnv(gym.Env[np.ndarray, int]):
    """Token-level reasoning MDP on synthetic arithmetic: one action writes one token.

    ## Description
    A problem is a chain ``a o b o c ...`` (operators ``+ - *``, operands 1..9) evaluated
    left to right. The agent writes the solution token by token in the oracle format: one
    line per operation, each line rewriting the remaining expression (``7*3+7`` ->
    ``21+7\\n`` -> ``\\boxed{28}``). The state is the problem tokens plus the solution
    tokens so far (an optional oracle roll-in prefix, then the agent's tokens). This is the
    POPE exploration problem at its smallest: the reward only comes at the end, and on long
    chains an undirected policy almost never reaches it -- unless rolled in near the end.

    ## Action Space
    ``Discrete(16)`` over :data:`TOKENS`: ids 0-9 the digits, 10 ``+``, 11 ``-``, 12 ``*``,
    13 newline, 14 ``\\boxed{``, 15 ``}`` (end of answer). :meth:`action_masks` gives the
    tokens the grammar allows (sb3-contrib ``MaskablePPO`` reads it): line ``k`` of an
    ``n``-operation problem is an expression with exactly ``n - 1 - k`` operators ended by a
    newline, the last line is ``\\boxed{`` number ``}``; numbers have at most
    ``len(str(max_value))`` digits and no leading zeros. The mask encodes only this format,
    never a value.

    ## Invalid Actions
    The rule of every pope-env env (docs/architecture.md, "Invalid actions"): an action that
    is not a token id at all (not an integer, or outside ``[0, 16)``) raises
    :class:`InvalidTokenError` (an :class:`~pope_env.errors.InvalidActionError`) and changes
    nothing. A **masked action** (a token id the grammar does not allow here) ends the
    episode (terminated) with reward ``invalid_action_reward`` (default -1, below a wrong
    answer's 0 so that agents without masks learn the grammar) and ``info["invalid_action"]``
    naming the token.

    ## Observation Space
    ``MultiDiscrete([17] * (Q + L) + [L + 1])`` (int64): ``Q`` slots of question tokens, then
    ``L = max_len`` slots of solution tokens, each id ``token + 1`` with ``0`` as padding,
    then the number of solution tokens written so far (the length feature). ``Q`` is the
    longest question of the problem set. The text form is in the wrappers of
    :mod:`pope_env.envs.token_wrappers`.

    ## Rewards
    0 on every step but the last. On ``}`` the reward is the verifiable math reward of the
    solution: 1.0 if the boxed integer equals the answer, else 0.0. The hot path compares
    integers; this is exactly the math reward (:func:`pope_env.rewards.math.score_completion`
    of the solution text against the problem) for these integer answers (the tests check
    that they agree). Truncation gives 0; a masked action gives ``invalid_action_reward``.

    ## Starting State
    Drawn by the roll-in sampler every math env uses (:class:`pope_env.rollin.RollInSampler`):
    a problem in seeded random order (a new permutation per pass). ``mode="unguided"`` starts
    with an empty solution; ``"guided"`` after the oracle prefix of ``i*`` steps; ``"pope"``
    pairs each problem's two versions within every pass, as the math envs do: with the
    default ``guided_ratio=0.5`` a pass is ``2N`` resets over the ``N`` problems, each
    appearing once guided and once unguided, one of each in every consecutive pair of
    resets (:class:`~pope_env.mixture.MixtureSampler`). ``i*`` comes from ``guidance_file``
    (``pope-env prefix-search`` output, e.g. run with an sb3 agent, see
    :class:`pope_env.agents.sb3.MaskablePolicy`); a problem without a found ``i*`` (a
    fallback record) or without a file uses the fallback ``max(1, round(prefix_fraction *
    cap))`` steps, ``cap`` = the steps before the boxed answer (default ``prefix_fraction=1``:
    all of them, the easiest guided state). ``reset(options=...)``: ``problem_id``;
    ``prefix_len`` (start after the first ``i`` oracle *tokens*, ``0 <= i <= `` the position
    just after ``\\boxed{``); ``prefix_steps`` (after the first ``i`` oracle steps,
    ``0 <= i <= cap``); ``guided`` (force a guided/unguided start in any mode). Out-of-range
    values raise :class:`~pope_env.errors.ConfigError` naming the range.

    ## Episode End
    Terminated on ``}`` or on a masked action. Truncated (reward 0) when the solution
    reaches ``max_len`` tokens without ``}``.

    ## Info
    ``problem_id``, ``guided``, ``prefix_len`` (tokens), ``prefix_steps`` (oracle steps of the
    roll-in, or ``None`` for a mid-step token prefix); at the end ``correct`` and, after a
    masked action, ``invalid_action``. Never the answer.

    ## Arguments
    ``level`` (``"easy"``: 1 operation, values <= 9, so a uniform guess of the answer
    succeeds 1 time in 10; ``"hard"``: 3 operations, values <= 99, so a guess succeeds about
    1 time in 100 and an undirected policy rarely sees a reward), or
    ``n_ops`` / ``max_value`` to override; ``dataset`` (a registered arithmetic dataset
    instead, e.g. ``"arith-easy"``: 2-3 operations, values <= 99; guidance files are
    checked against this name) or ``problems`` (a list of arithmetic problems, dataset name
    ``"custom"``); ``n_problems`` (default 1,000, fewer if fewer exist);
    ``split`` (``"train"``/``"test"``, disjoint); ``mode``; ``guided_ratio`` (POPE
    mixture, default 0.5); ``guidance_file``; ``prefix_fraction``; ``max_len`` (default
    longest oracle + 8); ``invalid_action_reward`` (default -1.0).

    ## Version History
    - v0: Initial version.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        level: str = "easy",
        *,
        n_ops: int | None = None,
        max_value: int | None = None,
        problems: Sequence[Problem] | None = None,
        dataset: str | None = None,
        n_problems: int = 1000,
        split: str = "train",
        problem_seed: int = 0,
        mode: str = "unguided",
        guided_ratio: float = 0.5,
        guidance_file: str | None = None,
        prefix_fraction: float = 1.0,
        max_len: int | None = None,
        invalid_action_reward: float = -1.0,
        render_mode: str | None = None,
    ) -> None:
        if level not in LEVELS:
            raise ConfigError(f"level must be one of {sorted(LEVELS)}, got {level!r}")
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        self.n_ops = LEVELS[level]["n_ops"] if n_ops is None else n_ops
        self.max_value = LEVELS[level]["max_value"] if max_value is None else max_value
        if self.n_ops < 1 or self.max_value < 1:
            raise ConfigError(f"n_ops and max_value must be >= 1, got {self.n_ops}, {self.max_value}")
        if problems is not None and dataset is not None:
            raise ConfigError("give problems or a dataset name, not both")
        if dataset is not None:
            from pope_env.datasets import load_dataset

            problems = load_dataset(dataset)
            self.dataset = dataset
        elif problems is None:
            problems = arithmetic_problems(self.n_ops, self.max_value, n_problems=n_problems,
                                           split=split, seed=problem_seed)
            self.dataset = dataset_name(self.n_ops, self.max_value, split)
        else:
            self.dataset = "custom"
        if not problems:
            raise ConfigError("no problems to draw from")
        self.problems = [prepare(p) for p in problems]
        self._by_id = {tp.problem.id: k for k, tp in enumerate(self.problems)}
        if len(self._by_id) != len(self.problems):
            raise ConfigError("problem ids must be unique")
        self.max_digits = max(len(str(self.max_value)),
                              max(_longest_number(tp.oracle) for tp in self.problems))
        self.question_len = max(len(tp.question) for tp in self.problems)
        longest = max(len(tp.oracle) for tp in self.problems)
        self.max_len = longest + 8 if max_len is None else max_len
        if self.max_len < longest:
            raise ConfigError(f"max_len={self.max_len} is shorter than the longest oracle "
                              f"solution ({longest} tokens); use max_len >= {longest}")
        self.mode = mode
        self.prefix_fraction = prefix_fraction
        self.invalid_action_reward = float(invalid_action_reward)
        self.render_mode = render_mode
        # Guided states are oracle-token prefixes, so a fallback segment z[start:stop] of a
        # guidance file cannot be shown: such problems get the prefix_fraction fallback.
        self.rollin = RollInSampler(
            [tp.problem for tp in self.problems], mode=mode, guided_ratio=guided_ratio,
            prefix_fraction=prefix_fraction, guidance_file=guidance_file, dataset=self.dataset,
            prefixes_only=True, warn_without_guidance=False,
        )
        self.guidance = self.rollin.guidance

        size = self.question_len + self.max_len
        self.action_space = spaces.Discrete(V)
        self.observation_space = spaces.MultiDiscrete(
            np.array([V + 1] * size + [self.max_len + 1], dtype=np.int64))
        self._obs = np.zeros(size + 1, dtype=np.int64)
        self._sol0 = self.question_len  # index of the first solution slot
        self._masks: dict[tuple[int, int, bool, bool], np.ndarray] = {}
        self._tp: TokenProblem | None = None
        self._grammar: Grammar | None = None
        self._mask = np.zeros(V, dtype=bool)
        self._len = 0
        self._done = True
        self._info: dict[str, Any] = {}

    # ------------------------------------------------------------------ roll-in

    def guided_steps(self, tp: TokenProblem) -> int:
        """Oracle steps of a guided start of ``tp`` without options (i* or the fallback)."""
        return self.rollin.segment_for(tp.problem)[1]

    def problem_index(self, problem_id: str) -> int:
        from pope_env.errors import UnknownNameError

        try:
            return self._by_id[problem_id]
        except (KeyError, TypeError):
            raise UnknownNameError("problem_id", str(problem_id), list(self._by_id)) from None

    @staticmethod
    def _int_option(name: str, value: Any, hi: int, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(f"{name} must be an int, got {value!r}")
        if not 0 <= int(value) <= hi:
            raise ConfigError(f"{name}={int(value)} is out of range: 0 <= {name} <= {hi} ({what})")
        return int(value)

    # ------------------------------------------------------------------ gym API

    def reset(
        self, *, seed: int | None = None, options: Mapping[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self.rollin.seed(seed)
        options = dict(options or {})
        unknown = set(options) - set(RESET_OPTIONS)
        if unknown:
            raise ConfigError(f"unknown reset option(s) {sorted(unknown)}; use {', '.join(RESET_OPTIONS)}")
        if "prefix_len" in options and "prefix_steps" in options:
            raise ConfigError("give prefix_len (tokens) or prefix_steps (oracle steps), not both")
        if "guided" in options and ("prefix_len" in options or "prefix_steps" in options):
            raise ConfigError("guided is implied by prefix_len/prefix_steps (> 0 is guided); give one")
        draw = {"problem_id": options["problem_id"]} if "problem_id" in options else {}
        prefix_steps: int | None
        if "prefix_len" in options or "prefix_steps" in options:
            name = "prefix_len" if "prefix_len" in options else "prefix_steps"
            value = options[name]
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"{name} must be an int, got {value!r}")
            tp = self.problems[self._by_id[self.rollin.draw(self.np_random, dict(draw, guided=value > 0)).problem.id]]
            if name == "prefix_len":
                prefix_len = self._int_option("prefix_len", value, tp.cap_tokens,
                                              "oracle tokens up to and including \\boxed{")
                prefix_steps = (tp.step_ends.index(prefix_len) + 1 if prefix_len in tp.step_ends
                                else 0 if prefix_len == 0 else None)
            else:
                prefix_steps = self._int_option("prefix_steps", value, tp.cap_steps,
                                                "oracle steps before the one with the answer")
                prefix_len = tp.step_ends[prefix_steps - 1] if prefix_steps else 0
        else:
            guided = options.get("guided")
            if guided is not None:
                if not isinstance(guided, (bool, np.bool_)):
                    raise ConfigError(f"guided must be a bool, got {guided!r}")
                draw["guided"] = bool(guided)
            rollin = self.rollin.draw(self.np_random, draw)
            tp = self.problems[self._by_id[rollin.problem.id]]
            prefix_steps = rollin.prefix_len  # steps: the sampler shows oracle prefixes only here
            prefix_len = tp.step_ends[prefix_steps - 1] if prefix_steps else 0

        self._tp = tp
        grammar = Grammar(tp.n_ops, self.max_digits)
        for token in tp.oracle[:prefix_len]:
            grammar.advance(int(token))
        self._grammar = grammar
        obs = self._obs
        obs[:] = PAD
        obs[: len(tp.question)] = tp.question + 1
        obs[self._sol0 : self._sol0 + prefix_len] = tp.oracle[:prefix_len] + 1
        obs[-1] = prefix_len
        self._len = prefix_len
        self._update_mask()
        self._done = False
        self._info = {"problem_id": tp.problem.id, "guided": prefix_len > 0,
                      "prefix_len": prefix_len, "prefix_steps": prefix_steps}
        return obs.copy(), dict(self._info)

    def _update_mask(self) -> None:
        key = self._grammar.key()  # type: ignore[union-attr]
        mask = self._masks.get(key)
        if mask is None:
            mask = self._masks[key] = mask_for(key)
        self._mask = mask

    def action_masks(self) -> np.ndarray:
        """Grammar-valid tokens now (a new bool array, shape ``(16,)``; all False after the
        episode ends)."""
        return self._mask.copy()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        check_can_step(self._tp is not None, self._done)
        try:
            token = int(action)
        except (TypeError, ValueError):
            raise InvalidTokenError(f"action must be a token id in [0, {V}), got {action!r}") from None
        if token != action or not 0 <= token < V:
            raise InvalidTokenError(f"action must be a token id in [0, {V}), got {action!r}")
        if not self._mask[token]:
            self._done = True
            self._mask = _NO_ACTIONS
            info = dict(self._info, correct=False,
                        invalid_action=f"token {TOKENS[token]!r} (id {token}) is not allowed here")
            return self._obs.copy(), self.invalid_action_reward, True, False, info
        grammar = self._grammar
        assert grammar is not None
        grammar.advance(token)
        obs = self._obs
        obs[self._sol0 + self._len] = token + 1
        self._len += 1
        obs[-1] = self._len
        if token == CLOSE:
            self._done = True
            self._mask = _NO_ACTIONS
            correct = grammar.value == self._tp.answer  # type: ignore[union-attr]
            return obs.copy(), float(correct), True, False, dict(self._info, correct=correct)
        if self._len >= self.max_len:
            self._done = True
            self._mask = _NO_ACTIONS
            return obs.copy(), 0.0, False, True, dict(self._info, correct=False)
        self._update_mask()
        return obs.copy(), 0.0, False, False, {}

    # ------------------------------------------------------------------ views

    @property
    def problem(self) -> Problem | None:
        """The current problem (None before the first reset)."""
        return None if self._tp is None else self._tp.problem

    def solution_ids(self) -> np.ndarray:
        """Token ids of the solution so far (roll-in prefix included)."""
        return self._obs[self._sol0 : self._sol0 + self._len] - 1

    def solution_text(self) -> str:
        return detokenize(self.solution_ids())

    def oracle_ids(self, problem_id: str) -> np.ndarray:
        """Token ids of a problem's oracle solution (privileged: for tests and analysis)."""
        return self.problems[self.problem_index(problem_id)].oracle.copy()

    def render(self) -> str | None:
        if self.render_mode == "ansi" and self._tp is not None:
            return f"{self._tp.problem.question}\n{self.solution_text()}"
        return None


_NO_ACTIONS = np.zeros(V, dtype=bool)
_NO_ACTIONS.flags.writeable = False
