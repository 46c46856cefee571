"""SRL's step-similarity reward: ``R = 2M/T``, exactly as :mod:`difflib` computes it.

SRL (Supervised Reinforcement Learning, 2025) rewards each generated step by its
similarity to the expert's step, ``R(y'_step, y_step) = 2M / T``, where ``T`` is the total
number of elements of both sequences and ``M`` the number of elements in the matching
blocks Ratcliff/Obershelp finds. That is ``difflib.SequenceMatcher(None, y', y).ratio()``
(``autojunk`` on: in a second sequence of 200+ items, items occurring more than
``len//100 + 1`` times are not used to seed matches). This module returns the same float
to the last bit, from a C port of that algorithm (:mod:`pope_env.rewards._seqmatch`, built
with the package, 20x+ faster; see ``bench/similarity.py``), or from :mod:`difflib` itself
when the extension is not built (a one-time warning says so).

Elements are Unicode code points by default, as difflib compares ``str`` items (combining
characters count separately; lone surrogates are ordinary code points). Pass token ids
(sequences of ints) or a ``tokenize`` callable for the token-level variant.

Output format of an SRL completion (checked by :func:`parse_srl_output`), exactly:

1. the completion is a ``str``;
2. after optional leading whitespace it starts with ``<think>`` (any other text before
   ``<think>`` is a failure);
3. it holds exactly one ``<think>`` and exactly one ``</think>`` (lower case, no spaces
   inside the tags); a missing, repeated or unclosed tag anywhere is a failure;
4. the step is everything after ``</think>`` with surrounding whitespace stripped; it must
   not be empty. The monologue between the tags may be empty.

A completion that breaks a rule earns ``-1`` (:data:`FORMAT_FAILURE_REWARD`); otherwise its
step is scored against the expert step (also whitespace-stripped) with
:func:`step_similarity`, a value in ``[0, 1]``.

**Chat templates that pre-fill ``<think>``.** Some templates end the generation prompt with
an opened monologue (DeepSeek-R1's and QwQ's ``...assistant\n<think>\n``; Qwen3-style
templates can do the same): the model's completion then starts *inside* the monologue,
``monologue</think>step``, and the rule above would score every completion ``-1``. Pass
``prefilled_think=True`` (to :func:`parse_srl_output`, :func:`srl_reward`,
:func:`srl_reward_batch`, :func:`sequence_similarity_reward`, the SRL envs and
:mod:`pope_env.agents.srl`): the completion is then read as ``"<think>" + completion`` under
the same rules, so it must close the monologue once, must not open another one, and must
end with a non-empty step. :func:`prefills_think` tells from a rendered prompt whether its
template does this (the prompt ends inside an unclosed ``<think>``). A template that
pre-fills a *closed* empty monologue (Qwen3 with ``enable_thinking=False``) leaves the model
no monologue to write: render SRL prompts with thinking enabled.

Cost: exact, with no length cap (oversize steps are scored, not rejected). Building the
index is ``O(|a| + |b|)``; each of the at most ``min(|a|, |b|) + 1`` recursion levels
visits each equal pair ``(i, j)`` at most once, and autojunk caps the pairs of one element
of ``a`` at ``|b| // 100 + 1`` once ``|b| >= 200``: worst case
``O(|a| * min(|b|, |b|//100 + 1) * min(|a|, |b|))``, close to linear on real steps.
Measured here (``bench/similarity.py``): a 1 MB generated step against a 300- to
1,000-character expert step takes about 0.1 s; adversarial 1 MB inputs (digits only)
against a 5,000-character expert step took 1.5-4 s on the loaded 2-core test machine;
difflib needs minutes for either. The expert step is the second argument on purpose (as
in SRL): the cost scales with how often generated characters occur in it.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from pope_env.errors import ConfigError, DataFormatError, PopeEnvError

__all__ = [
    "FORMAT_FAILURE_REWARD",
    "THINK_OPEN",
    "THINK_CLOSE",
    "SRLOutput",
    "SRLFormatError",
    "parse_srl_output",
    "prefills_think",
    "step_similarity",
    "similarity_backend",
    "srl_reward",
    "srl_reward_batch",
    "srl_reward_func",
    "sequence_similarity_reward",
]

FORMAT_FAILURE_REWARD = -1.0
"""Reward of a completion that breaks the output format."""

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

Sequenceish = Union[str, Sequence[int]]
Tokenize = Callable[[str], Sequence[int]]

try:  # the compiled port; optional so a machine without a compiler still works
    from pope_env.rewards import _seqmatch as _c
except ImportError:  # pragma: no cover - exercised by monkeypatching in the tests
    _c = None

_warned_fallback = False


def similarity_backend() -> str:
    """``"c"`` when the compiled extension is in use, ``"difflib"`` otherwise."""
    return "c" if _c is not None else "difflib"


def _difflib_ratio(a: Sequenceish, b: Sequenceish) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def _warn_fallback_once() -> None:
    global _warned_fallback
    if not _warned_fallback:
        _warned_fallback = True
        warnings.warn(
            "pope_env.rewards._seqmatch (the compiled step-similarity extension) is not "
            "built; falling back to difflib: identical values, about 20-70x slower. "
            "Reinstall pope-env on a machine with a C compiler (gcc and Python headers) "
            "to build it.",
            RuntimeWarning,
            stacklevel=3,
        )


def _check_operand(x: Any, name: str) -> None:
    if isinstance(x, str):
        return
    if isinstance(x, (bytes, bytearray)) or not isinstance(x, Sequence):
        raise DataFormatError(
            f"step_similarity: {name} must be a str or a sequence of int token ids, "
            f"got {type(x).__name__}"
        )


def step_similarity(a: Sequenceish, b: Sequenceish) -> float:
    """``difflib.SequenceMatcher(None, a, b).ratio()``, bit for bit: ``2M / (|a| + |b|)``.

    Args:
        a: The generated step: a ``str`` (compared by code point) or a sequence of int
            token ids.
        b: The expert step, of the same kind as ``a``. The order matters (autojunk looks
            at ``b``), as in SRL: ``R(y'_step, y_step)``.

    Returns:
        A float in ``[0, 1]``; ``1.0`` when both are empty (difflib's convention).

    Raises:
        DataFormatError: an operand is neither a ``str`` nor a sequence of ints, or one is a
            ``str`` and the other a token sequence.
    """
    _check_operand(a, "a")
    _check_operand(b, "b")
    if isinstance(a, str) != isinstance(b, str):
        raise DataFormatError(
            "step_similarity: compare a str with a str, or token ids with token ids; got "
            f"{type(a).__name__} and {type(b).__name__}"
        )
    if _c is None:
        _warn_fallback_once()
        return _difflib_ratio(a, b)
    try:
        return _c.ratio(a, b)
    except (TypeError, OverflowError) as exc:
        raise DataFormatError(f"step_similarity: {exc}") from exc


@dataclass(frozen=True)
class SRLOutput:
    """A well-formed SRL completion: the monologue inside ``<think>`` and the step after it."""

    think: str
    step: str


class SRLFormatError(PopeEnvError, ValueError):
    """A completion breaks the SRL output format; ``reason`` says which rule."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"SRL format failure: {reason}")
        self.reason = reason


def prefills_think(rendered_prompt: str) -> bool:
    """Whether a rendered prompt (the text the model continues, chat template applied) ends
    inside an opened ``<think>`` monologue: its last ``<think>`` is not closed after it.

    ``True`` for a generation prompt ending ``"<|im_start|>assistant\n<think>\n"``; ``False``
    for one ending ``"assistant\n"`` or with a closed ``"<think>\n\n</think>\n\n"``.
    """
    if not isinstance(rendered_prompt, str):
        return False
    opened = rendered_prompt.rfind(THINK_OPEN)
    return opened >= 0 and rendered_prompt.find(THINK_CLOSE, opened) < 0


def parse_srl_output(text: Any, *, prefilled_think: bool = False) -> SRLOutput:
    """Split an SRL completion into its monologue and its step, or raise.

    The rule (see the module docstring): optional whitespace, ``<think>``, the monologue,
    ``</think>``, a non-empty step; exactly one of each tag; nothing but whitespace before
    ``<think>``. The step is returned with surrounding whitespace stripped; the monologue
    as written.

    Args:
        text: The completion.
        prefilled_think: The prompt already ended with ``<think>`` (the chat template
            pre-fills it), so ``text`` starts inside the monologue: it is parsed as
            ``"<think>" + text``, i.e. it must hold one ``</think>``, no ``<think>``, and a
            non-empty step after it.

    Raises:
        SRLFormatError: with ``reason`` naming the broken rule.
    """
    if not isinstance(text, str):
        raise SRLFormatError(f"the completion is a {type(text).__name__}, not a str")
    if prefilled_think:
        if THINK_OPEN in text:
            raise SRLFormatError(f"{THINK_OPEN} was pre-filled by the prompt; the completion opens another one")
        text = THINK_OPEN + text
    n_open = text.count(THINK_OPEN)
    n_close = text.count(THINK_CLOSE)
    if n_open == 0:
        raise SRLFormatError(f"no {THINK_OPEN} tag")
    if n_open > 1:
        raise SRLFormatError(f"{THINK_OPEN} appears {n_open} times; exactly one is allowed")
    if n_close == 0:
        raise SRLFormatError(f"{THINK_OPEN} is never closed by {THINK_CLOSE}")
    if n_close > 1:
        raise SRLFormatError(f"{THINK_CLOSE} appears {n_close} times; exactly one is allowed")
    start = text.index(THINK_OPEN)
    if text[:start].strip():
        raise SRLFormatError(f"text before {THINK_OPEN}")
    end = text.index(THINK_CLOSE)  # after start: a </think> before <think> is text before it
    step = text[end + len(THINK_CLOSE) :].strip()
    if not step:
        raise SRLFormatError(f"empty step after {THINK_CLOSE}")
    return SRLOutput(think=text[start + len(THINK_OPEN) : end], step=step)


def _score(generated: str, expert_step: str, tokenize: Tokenize | None) -> float:
    expert = expert_step.strip()
    if tokenize is None:
        return step_similarity(generated, expert)
    return step_similarity(list(tokenize(generated)), list(tokenize(expert)))


def _check_expert(expert_step: Any) -> str:
    if not isinstance(expert_step, str):
        raise DataFormatError(
            f"the expert step must be a str, got {type(expert_step).__name__}"
        )
    return expert_step


def srl_reward(completion: Any, expert_step: str, *, tokenize: Tokenize | None = None,
               prefilled_think: bool = False) -> float:
    """SRL's reward of one completion: similarity of its step to the expert step, or ``-1``.

    Args:
        completion: The model output, ``<think>...</think>`` followed by the step. Anything
            that breaks the format (including a non-``str``) earns ``-1``.
        expert_step: The expert's step ``k`` (compared whitespace-stripped).
        tokenize: Optional ``str -> list[int]`` (e.g. ``tokenizer.encode``) for the
            token-level variant; default: characters.
        prefilled_think: The prompt ended with ``<think>`` (see :func:`parse_srl_output`).

    Returns:
        ``-1.0`` on a format failure, else ``step_similarity(step, expert_step)`` in ``[0, 1]``.

    Raises:
        DataFormatError: ``expert_step`` is not a ``str`` (a bug in the caller's data, not
            a policy mistake, so it is not scored as ``-1``).
    """
    expert_step = _check_expert(expert_step)
    try:
        parsed = parse_srl_output(completion, prefilled_think=prefilled_think)
    except SRLFormatError:
        return FORMAT_FAILURE_REWARD
    return _score(parsed.step, expert_step, tokenize)


def srl_reward_batch(
    completions: Sequence[Any],
    expert_steps: Sequence[str],
    *,
    tokenize: Tokenize | None = None,
    workers: int = 1,
    progress: bool = False,
    prefilled_think: bool | Sequence[bool] = False,
) -> list[float]:
    """:func:`srl_reward` over aligned lists.

    Args:
        completions: Model outputs.
        expert_steps: The expert step of each completion (same length).
        tokenize: As in :func:`srl_reward`.
        prefilled_think: As in :func:`srl_reward`: one flag for all, or one per completion.
        workers: Threads to score with; the compiled matcher releases the GIL, so more
            than one helps on big batches of long steps.
        progress: Show a tqdm progress bar.

    Raises:
        ConfigError: the lists differ in length or ``workers < 1``.
    """
    if len(completions) != len(expert_steps):
        raise ConfigError(
            f"srl_reward_batch: {len(completions)} completions but {len(expert_steps)} "
            "expert steps; pass one expert step per completion"
        )
    if workers < 1:
        raise ConfigError(f"srl_reward_batch: workers must be >= 1, got {workers}")
    flags = [bool(prefilled_think)] * len(completions) if isinstance(prefilled_think, bool) else \
        [bool(f) for f in prefilled_think]
    if len(flags) != len(completions):
        raise ConfigError(f"srl_reward_batch: {len(flags)} prefilled_think flags for {len(completions)} completions")
    pairs = list(zip(completions, expert_steps, flags))

    def one(pair: tuple[Any, str, bool]) -> float:
        return srl_reward(pair[0], pair[1], tokenize=tokenize, prefilled_think=pair[2])

    if workers == 1 or len(pairs) < 2:
        it = map(one, pairs)
    else:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=workers)
        it = pool.map(one, pairs)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=len(pairs), desc="srl reward", unit="step")
    try:
        return list(it)
    finally:
        if workers > 1 and len(pairs) >= 2:
            pool.shutdown()


def _completion_text(completion: Any) -> Any:
    """TRL passes a completion as text, or (conversational) as a list of messages."""
    if isinstance(completion, list) and completion and all(isinstance(m, Mapping) for m in completion):
        return "".join(str(m.get("content", "")) for m in completion if m.get("role", "assistant") == "assistant")
    return completion


def srl_reward_func(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """SRL's reward in TRL's ``reward_funcs`` signature.

    The expert step of each completion comes from the dataset column ``expert_step``
    (TRL passes dataset columns as keyword lists aligned with ``completions``). Completions
    may be text or conversational (a list of messages; the assistant contents are joined).
    ``SRLPrompt.to_dict()`` rows from :func:`pope_env.envs.srl.srl_prompts` carry that column.

    A pre-filled ``<think>`` (see the module docstring) is taken from a dataset column
    ``prefilled_think`` (bools) when there is one, else detected per prompt for text prompts
    that end inside an opened ``<think>`` (:func:`prefills_think`); conversational prompts
    without the column are read with the strict rule.

    Raises:
        ConfigError: no ``expert_step`` column, or its length differs from ``completions``.
    """
    if "expert_step" not in kwargs:
        raise ConfigError(
            "srl_reward_func needs the expert step of each completion in a dataset column "
            f"named 'expert_step'; got columns: {sorted(kwargs) or 'none'}"
        )
    experts = kwargs["expert_step"]
    if isinstance(experts, str):
        experts = [experts] * len(completions)
    flags = kwargs.get("prefilled_think")
    if flags is None:
        flags = [prefills_think(p) for p in prompts] if len(prompts) == len(completions) else False
    elif isinstance(flags, bool):
        flags = [flags] * len(completions)
    return srl_reward_batch([_completion_text(c) for c in completions], list(experts), prefilled_think=flags)


def sequence_similarity_reward(completion: Any, expert_solution: str, *, prefilled_think: bool = False) -> float:
    """The whole-sequence baseline of SRL's ablation: one similarity for a whole solution.

    The completion is scored like a step (same format rule, ``-1`` on failure, the same
    ``prefilled_think``), but the reference is the whole expert solution (all steps)
    instead of the next step.
    """
    return srl_reward(completion, expert_solution, prefilled_think=prefilled_think)
