"""Step-similarity reward: bit-identity with difflib, format rules, batch/TRL APIs, bad input."""

from __future__ import annotations

import difflib
import importlib.util
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pope_env.errors import ConfigError, DataFormatError
from pope_env.rewards import similarity as sim
from pope_env.rewards.similarity import (
    FORMAT_FAILURE_REWARD,
    SRLFormatError,
    parse_srl_output,
    sequence_similarity_reward,
    similarity_backend,
    srl_reward,
    srl_reward_batch,
    srl_reward_func,
    step_similarity,
)

ROOT = Path(__file__).resolve().parents[1]
_c = pytest.importorskip("pope_env.rewards._seqmatch", reason="the C extension is not built")


def _difflib(a, b):
    m = difflib.SequenceMatcher(None, a, b)
    return m.ratio(), [tuple(x) for x in m.get_matching_blocks()]


def assert_identical(a, b):
    """Same ratio (float ==, i.e. the same bits for these finite values) and same blocks."""
    ratio, blocks = _difflib(a, b)
    got = step_similarity(a, b)
    assert got == ratio and type(got) is float, (a[:80], b[:80], got, ratio)
    assert _c.matching_blocks(a, b) == blocks
    assert _c.match_count(a, b) == sum(k for _, _, k in blocks)


def test_backend_is_compiled():
    assert similarity_backend() == "c"


# --- identity with difflib: property-based ------------------------------------------------
SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
COMBINING = st.sampled_from(["\u0301", "\u0308", "\u20d7", "\u0327", "e", "\u00e9"])
UNICODE = st.one_of(st.characters(), SURROGATES, COMBINING, st.sampled_from(list("∑√π∫≤≥αβ")))
SMALL = st.sampled_from(list("ab"))
MATHY = st.sampled_from(list("x=+-()0123456789 \\{}^_$.,abc"))

fast = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
slowish = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@fast
@given(st.text(), st.text())
def test_random_text(a, b):
    assert_identical(a, b)


@fast
@given(st.text(UNICODE, max_size=60), st.text(UNICODE, max_size=60))
def test_unicode_combining_and_surrogates(a, b):
    assert_identical(a, b)


@fast
@given(st.text(SMALL, max_size=400), st.text(SMALL, max_size=400))
def test_repetitive_two_letter_strings(a, b):
    assert_identical(a, b)


@slowish
@given(st.text(MATHY, min_size=200, max_size=1500), st.text(MATHY, min_size=200, max_size=1500))
def test_autojunk_long_strings(a, b):
    assert_identical(a, b)


@slowish
@given(st.text(MATHY, min_size=150, max_size=800), st.data())
def test_model_like_edits_of_long_steps(expert, data):
    """Generated steps that are edits of the expert step (the common case in SRL)."""
    chars = list(expert)
    for _ in range(data.draw(st.integers(0, 40))):
        pos = data.draw(st.integers(0, len(chars)))
        op = data.draw(st.sampled_from(["ins", "del", "sub"]))
        if op == "ins" or pos == len(chars):
            chars.insert(pos, data.draw(MATHY))
        elif op == "del":
            del chars[pos]
        else:
            chars[pos] = data.draw(MATHY)
    assert_identical("".join(chars), expert)
    assert_identical(expert, "".join(chars))


@slowish
@given(
    st.text(MATHY, min_size=1, max_size=30),
    st.integers(1, 60),
    st.text(MATHY, min_size=0, max_size=300),
)
def test_popular_elements_and_repeated_phrases(phrase, times, noise):
    """Looping outputs: the phrase's characters become 'popular' once len(b) >= 200."""
    looped = phrase * times
    assert_identical(looped, noise + looped)
    assert_identical(noise + looped, looped)
    assert_identical(looped + noise, phrase)


@pytest.mark.parametrize("n", [198, 199, 200, 201, 202, 250, 301])
def test_autojunk_threshold_exactly(n):
    """At len(b) >= 200 the popularity rule switches on; both sides of the edge match."""
    b = ("ab" * n)[:n]
    a = "x" + b[: n // 2] + "y" + b[n // 2 :]
    assert_identical(a, b)
    b2 = "a" * (n - 5) + "bcdef"
    assert_identical("bcdef" + "a" * 10, b2)


@fast
@given(st.lists(st.integers(0, 6), max_size=300), st.lists(st.integers(0, 6), max_size=300))
def test_token_ids(a, b):
    assert_identical(a, b)


@fast
@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=40), st.lists(st.integers(-(2**63), 2**63 - 1), max_size=40))
def test_token_ids_full_int64_range(a, b):
    assert_identical(tuple(a), tuple(b))


def test_edge_values():
    assert step_similarity("", "") == 1.0 == difflib.SequenceMatcher(None, "", "").ratio()
    assert step_similarity("abc", "") == 0.0
    assert step_similarity("", "abc") == 0.0
    assert step_similarity([], []) == 1.0
    for a, b in [("abcd", "bcde"), ("a" * 300, "a" * 299), ("x" * 500 + "y", "y" + "x" * 500)]:
        assert_identical(a, b)


def test_bench_set_exhaustively_identical():
    """Every pair of the benchmark's set (real MATH/CHAMP steps and variants) equals difflib."""
    spec = importlib.util.spec_from_file_location("bench_similarity", ROOT / "bench" / "similarity.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    import random

    rng = random.Random(0)
    pairs = bench.make_pairs(bench.expert_steps(300, rng), 600, rng)
    assert len(pairs) == 600
    for p in pairs:
        a, b = p["generated"], p["expert"]
        assert step_similarity(a, b) == difflib.SequenceMatcher(None, a, b).ratio(), p["kind"]


# --- 1 MB inputs ------------------------------------------------------------------------------
def test_megabyte_step_is_exact():
    expert = "Thus, we have x_1=y_1=z_1=1."
    filler = "q" * 1_000_000  # no 'q' in the expert step
    got = step_similarity(expert + filler, expert)
    assert got == 2.0 * len(expert) / (2 * len(expert) + len(filler))
    assert srl_reward("<think>ok</think>" + expert + filler, expert) == got


def test_long_input_matches_difflib_where_difflib_is_still_affordable():
    rng_text = "".join(chr(0x61 + (i * 7919) % 26) for i in range(20_000))
    expert = rng_text[5000:5300]
    assert_identical(rng_text, expert)


# --- format rules -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, think, step",
    [
        ("<think>plan</think>x = 2", "plan", "x = 2"),
        ("  \n<think>a\nb</think>\n  step one  \n", "a\nb", "step one"),
        ("<think></think>step", "", "step"),
        ("<think>∑ √π</think>é = e\u0301", "∑ √π", "é = e\u0301"),
    ],
)
def test_parse_good(text, think, step):
    out = parse_srl_output(text)
    assert (out.think, out.step) == (think, step)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("x = 2", "no <think>"),
        ("<think>never closed x = 2", "never closed"),
        ("</think>x", "no <think>"),
        ("<think>a</think>b<think>c</think>d", "appears 2 times"),
        ("<think>a</think></think>b", "</think> appears 2 times"),
        ("Sure! <think>a</think>b", "text before"),
        ("</think><think>a x", "text before"),
        ("<think>a</think>", "empty step"),
        ("<think>a</think>  \n\t ", "empty step"),
        ("<THINK>a</THINK>b", "no <think>"),
        (None, "not a str"),
        (42, "not a str"),
        (b"<think>a</think>b", "not a str"),
    ],
)
def test_parse_failures(text, reason):
    with pytest.raises(SRLFormatError, match=reason):
        parse_srl_output(text)
    assert srl_reward(text, "b") == FORMAT_FAILURE_REWARD == -1.0


def test_reward_scores_only_the_step():
    expert = "Then 2x + 3 = 7, so x = 2."
    assert srl_reward(f"<think>{expert * 3}</think>{expert}", expert) == 1.0
    assert srl_reward("<think>x</think> Then 2x+3=7 so x=2", f"  {expert}\n") == step_similarity("Then 2x+3=7 so x=2", expert)


def test_token_level_option():
    vocab: dict[str, int] = {}

    def tokenize(s: str) -> list[int]:
        return [vocab.setdefault(w, len(vocab)) for w in s.split()]

    expert = "so x equals two and y equals three"
    got = srl_reward("<think>t</think>so x equals 2 and y equals three", expert, tokenize=tokenize)
    assert got == difflib.SequenceMatcher(None, tokenize("so x equals 2 and y equals three"), tokenize(expert)).ratio()
    assert got != srl_reward("<think>t</think>so x equals 2 and y equals three", expert)


def test_bad_operands_raise_typed_errors():
    with pytest.raises(DataFormatError, match="str or a sequence"):
        step_similarity(3, "a")
    with pytest.raises(DataFormatError, match="str with a str"):
        step_similarity("abc", [1, 2])
    with pytest.raises(DataFormatError, match="must hold ints"):
        step_similarity([1, "x"], [1])
    with pytest.raises(DataFormatError, match="64 bits"):
        step_similarity([2**70], [1])
    with pytest.raises(DataFormatError, match="expert step must be a str"):
        srl_reward("<think>a</think>b", None)  # type: ignore[arg-type]


# --- batch and TRL ----------------------------------------------------------------------------
def test_batch_matches_single_calls_and_threads():
    completions = ["<think>a</think>x = 1", "bad", None, "<think>b</think>y = 22"] * 25
    experts = ["x = 1", "x", "y", "y = 2"] * 25
    expected = [srl_reward(c, e) for c, e in zip(completions, experts)]
    assert srl_reward_batch(completions, experts) == expected
    assert srl_reward_batch(completions, experts, workers=2, progress=True) == expected
    with pytest.raises(ConfigError, match="one expert step per completion"):
        srl_reward_batch(completions, experts[:-1])
    with pytest.raises(ConfigError, match="workers"):
        srl_reward_batch(completions, experts, workers=0)


def test_trl_reward_func_text_and_conversational():
    prompts = ["p1", "p2"]
    completions = ["<think>t</think>x = 1", "no tags"]
    assert srl_reward_func(prompts, completions, expert_step=["x = 1", "x"]) == [1.0, -1.0]
    conv = [[{"role": "assistant", "content": "<think>t</think>x = 1"}], [{"role": "assistant", "content": "oops"}]]
    assert srl_reward_func(prompts, conv, expert_step=["x = 1", "x"]) == [1.0, -1.0]
    with pytest.raises(ConfigError, match="expert_step"):
        srl_reward_func(prompts, completions, solution=["a", "b"])


# --- chat templates that pre-fill <think> -------------------------------------------------------
QWQ_PROMPT = "<|im_start|>user\nWhat next?<|im_end|>\n<|im_start|>assistant\n<think>\n"


def test_a_prefilled_think_tag_is_detected_and_accepted():
    from pope_env.rewards.similarity import prefills_think

    assert prefills_think(QWQ_PROMPT) and prefills_think("<｜Assistant｜><think>\n")
    assert not prefills_think("<|im_start|>assistant\n")
    assert not prefills_think("<|im_start|>assistant\n<think>\n\n</think>\n\n")  # closed: no monologue left
    completion = "I should add.\n</think>\n\nx = 1"  # the model continues inside the monologue
    assert srl_reward(completion, "x = 1") == -1.0  # the strict rule: no <think> at all
    assert srl_reward(completion, "x = 1", prefilled_think=True) == 1.0
    assert parse_srl_output(completion, prefilled_think=True).think == "I should add.\n"
    for bad in ["<think>again</think>x = 1", "no close x = 1", "t</think>   ", "a</think>b</think>c"]:
        assert srl_reward(bad, "x = 1", prefilled_think=True) == -1.0, bad
    assert srl_reward_batch([completion, completion], ["x = 1"] * 2, prefilled_think=[True, False]) == [1.0, -1.0]
    assert sequence_similarity_reward(completion, "x = 1", prefilled_think=True) == 1.0


def test_trl_reward_func_reads_prefilled_think_from_a_column_or_the_text_prompt():
    completion = "t</think>x = 1"
    assert srl_reward_func([QWQ_PROMPT], [completion], expert_step=["x = 1"]) == [1.0]
    assert srl_reward_func(["plain prompt"], [completion], expert_step=["x = 1"]) == [-1.0]
    conv = [[{"role": "user", "content": "What next?"}]]
    assert srl_reward_func(conv, [completion], expert_step=["x = 1"], prefilled_think=[True]) == [1.0]
    assert srl_reward_func(conv, [completion], expert_step=["x = 1"]) == [-1.0]


def test_whole_sequence_baseline():
    steps = ["Let x = 2.", "Then y = 3.", "So x + y = 5."]
    whole = " ".join(steps)
    assert sequence_similarity_reward(f"<think>t</think>{whole}", whole) == 1.0
    assert sequence_similarity_reward("no format", whole) == -1.0


# --- fallback and build -----------------------------------------------------------------------
def test_difflib_fallback_warns_once_and_agrees(monkeypatch):
    monkeypatch.setattr(sim, "_c", None)
    monkeypatch.setattr(sim, "_warned_fallback", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        v1 = step_similarity("abcd", "bcde")
        v2 = step_similarity("x" * 300, "x" * 250 + "y")
    assert similarity_backend() == "difflib"
    assert v1 == difflib.SequenceMatcher(None, "abcd", "bcde").ratio()
    assert v2 == difflib.SequenceMatcher(None, "x" * 300, "x" * 250 + "y").ratio()
    assert sum("falling back to difflib" in str(w.message) for w in caught) == 1


@pytest.mark.slow
def test_clean_tree_builds_the_extension(tmp_path):
    """A fresh copy of the tracked files builds ``_seqmatch`` through setup.py (what
    ``pip install .`` / ``pip install -e .`` run) and the built module is exact."""
    pytest.importorskip("setuptools", reason="setup.py needs setuptools in this interpreter")
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    if "pope_env/rewards/_seqmatch.c" not in files:
        pytest.skip("not a git checkout with the extension's source tracked")
    src = tmp_path / "src"
    for f in files:
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        (src / f).write_bytes((ROOT / f).read_bytes())
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=src, check=True, capture_output=True)
    built = list((src / "pope_env" / "rewards").glob("_seqmatch*.so"))
    assert built, "the extension was not built"
    check = (
        "import difflib, pope_env.rewards._seqmatch as c, pope_env.rewards.similarity as s;"
        "assert c.__file__.startswith(%r);" % str(src)
        + "assert s.similarity_backend() == 'c';"
        "a, b = 'x' * 300 + 'abc', 'abcx' * 60;"
        "assert c.ratio(a, b) == difflib.SequenceMatcher(None, a, b).ratio()"
    )
    subprocess.run([sys.executable, "-c", check], cwd=src, check=True, env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"})
