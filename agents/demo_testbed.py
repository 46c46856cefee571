"""The demo's measured inputs: base model, regime check, hard split, guided-success curve, i*.

Everything here is *measured* on the base model before any training, as the POPE paper
defines it, and cached in ``<out>/testbed/<variant>/`` under a hash of the settings that made
it (a re-run reuses it; a killed run redoes at most the phase in progress):

1. **Base** (:func:`pope_env.agents.pretrain.pretrain`, cached by its config hash, resumable).
2. **Easy check**: pass@1 (temperature 1, ``easy_k`` samples per problem) on held-out
   test-split chains of the pretraining levels. The paper's regime needs a base that is
   near-perfect on easy problems: at least ``min_easy_pass1`` (0.95).
3. **Hard split**: train-split chains of ``hard_levels`` operations with *pass@k = 0* for the
   base (``k = screen_k`` = 64 samples at temperature 1, drawn in rounds of
   ``screen_chunk``; a candidate leaves at its first success). The held-out evaluation set is
   screened the same way from the test split with other draws.
4. **Guided success against prefix length and i\\***: every hard problem is rolled in from
   every oracle prefix ``i = 1..prefix_cap`` with ``istar_samples`` samples each. The guided
   pass@1 at each ``i`` is the table and plot panel; ``i*`` is the smallest ``i`` with a
   success (the paper's definition; the same as ``pope-env prefix-search --strategy linear``,
   here batched over all problems and prefixes at once because a char model is fast only in
   large batches). Problems with no working prefix are dropped from training.

The regime is *reached* when the easy check passes, the hard split is non-empty, and at
least ``min_hard`` training problems have an i*; :class:`Regime` says which condition
failed, and the demo prints that instead of presenting its results as a test of POPE.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pope_env.agents.charlm import CharLMPolicy
from pope_env.agents.policy import SamplingParams
from pope_env.agents.pretrain import PretrainConfig, pretrain, render_guided_prompt, render_prompt
from pope_env.datasets import arithmetic
from pope_env.errors import ConfigError
from pope_env.guidance import prefix_cap
from pope_env.io import atomic_write_json, atomic_write_jsonl, read_jsonl
from pope_env.problem import Problem
from pope_env.rewards.math import extract_answer

if TYPE_CHECKING:
    from pope_env.agents.demo import DemoConfig

VARIANTS = ("plain", "revisit")
"""Base-model variants: ``plain`` traces, and ``revisit`` traces that re-check the last given
line before continuing (:func:`pope_env.agents.pretrain.render_solution`)."""


def arithmetic_reward(completion: str, problem: Problem) -> float:
    """1.0 if the completion's final answer is the gold integer, else 0.0.

    The answer is extracted exactly as :mod:`pope_env.rewards.math` does (last ``\\boxed{}``,
    then its fallbacks); both sides are integers here, so an integer comparison gives
    math-verify's verdict without its ~10 ms per call (evaluation scores thousands of
    samples a minute on two cores).
    """
    answer = extract_answer(completion)
    if answer is None:
        return 0.0
    try:
        return float(int(answer.strip()) == int(problem.answer))
    except ValueError:
        return 0.0


def count_correct(
    policy: CharLMPolicy,
    problems: Sequence[Problem],
    prompts: Sequence[str],
    *,
    k: int,
    seed: int,
    max_new_tokens: int,
    desc: str | None = None,
    chunk: int = 64,
) -> list[int]:
    """Correct completions among ``k`` temperature-1 samples for each prompt (seeded per chunk)."""
    from tqdm.auto import tqdm

    counts: list[int] = []
    with tqdm(total=len(prompts), desc=desc, disable=desc is None, unit="prompt") as bar:
        for start in range(0, len(prompts), chunk):
            sp = SamplingParams(temperature=1.0, max_new_tokens=max_new_tokens, seed=seed * 1_000_003 + start)
            groups = policy.generate(list(prompts[start : start + chunk]), n=k, sampling=sp)
            for g, p in zip(groups, problems[start : start + chunk]):
                counts.append(int(sum(arithmetic_reward(x.text, p) for x in g)))
            bar.update(len(groups))
    return counts


def screen_hard(
    policy: CharLMPolicy,
    candidates: Sequence[Problem],
    *,
    k: int,
    seed: int,
    max_new_tokens: int,
    desc: str | None = None,
    chunk: int | None = None,
) -> tuple[list[Problem], list[int]]:
    """The candidates with pass@k = 0 under ``policy``, and every candidate's success count.

    Samples are drawn in rounds of ``chunk`` (default ``k``: one round); a candidate with a
    success leaves after its round, so its count is a lower bound (>= 1), while every
    returned hard problem had all ``k`` samples wrong.
    """
    chunk = min(chunk or k, k)
    counts = [0] * len(candidates)
    alive = list(range(len(candidates)))
    drawn = 0
    round_ = 0
    while alive and drawn < k:
        n = min(chunk, k - drawn)
        got = count_correct(policy, [candidates[i] for i in alive], [render_prompt(candidates[i]) for i in alive],
                            k=n, seed=seed * 1009 + round_, max_new_tokens=max_new_tokens,
                            desc=None if desc is None else f"{desc} ({drawn + n}/{k} samples)")
        for i, c in zip(alive, got):
            counts[i] += c
        alive = [i for i in alive if counts[i] == 0]
        drawn += n
        round_ += 1
    return [candidates[i] for i in alive], counts


def guided_scan(
    policy: CharLMPolicy, problems: Sequence[Problem], *, samples: int, seed: int, max_new_tokens: int
) -> dict[str, list[int]]:
    """Problem id -> successes among ``samples`` guided completions at each prefix
    ``i = 1..prefix_cap(problem)`` (list index ``i - 1``)."""
    pairs = [(p, i) for p in problems for i in range(1, prefix_cap(p) + 1)]
    counts = count_correct(policy, [p for p, _ in pairs], [render_guided_prompt(p, i) for p, i in pairs],
                           k=samples, seed=seed, max_new_tokens=max_new_tokens, desc="guided scan / i*")
    out: dict[str, list[int]] = {p.id: [] for p in problems}
    for (p, _), c in zip(pairs, counts):
        out[p.id].append(c)
    return out


def istar_from_scan(scan: dict[str, list[int]]) -> dict[str, int]:
    """i* per problem: the smallest prefix length with a success (problems without one left out)."""
    return {pid: row.index(next(c for c in row if c)) + 1 for pid, row in scan.items() if any(row)}


@dataclass
class Regime:
    """The measured regime check (printed and saved before any training)."""

    easy_pass1: float
    easy_problems: int
    easy_k: int
    screen_k: int
    hard_candidates: int
    hard_pass0: int
    hard_with_istar: int
    hard_used: int
    eval_candidates: int
    eval_pass0: int
    eval_used: int
    candidate_pass1: float
    istar_hist: dict[int, int]
    guided_pass1: dict[int, dict[int, float]]
    """level -> {operations remaining after the prefix: guided pass@1}."""
    min_easy_pass1: float
    min_hard: int
    failures: list[str] = field(default_factory=list)

    @property
    def reached(self) -> bool:
        return not self.failures

    def summary_lines(self) -> list[str]:
        """The regime table as text."""
        mark = lambda ok: "yes" if ok else "NO"  # noqa: E731
        lines = [
            f"  base easy pass@1 (held-out, {self.easy_problems} problems x {self.easy_k}): "
            f"{self.easy_pass1:.3f}  (needs >= {self.min_easy_pass1}: {mark(self.easy_pass1 >= self.min_easy_pass1)})",
            f"  hard split: {self.hard_pass0}/{self.hard_candidates} train candidates with pass@{self.screen_k} = 0 "
            f"(candidates' pass@1 {self.candidate_pass1:.4f}); {self.hard_with_istar} have an i*, {self.hard_used} used",
            f"  held-out hard set: {self.eval_pass0}/{self.eval_candidates} test candidates with pass@{self.screen_k} = 0, "
            f"{self.eval_used} used",
            "  i* distribution: " + ", ".join(f"i*={i}: {n}" for i, n in sorted(self.istar_hist.items())),
            "  guided pass@1 by operations left after the oracle prefix (0 left = the answer line):",
        ]
        for level, row in sorted(self.guided_pass1.items()):
            cells = "  ".join(f"{left} left: {v:.3f}" for left, v in sorted(row.items(), reverse=True))
            lines.append(f"    {level}-op chains, unguided (all {level} left): 0.000 by selection;  {cells}")
        lines.append("  regime reached: " + ("yes" if self.reached else "NO: " + "; ".join(self.failures)))
        return lines


@dataclass
class Testbed:
    """The measured inputs shared by every run on one base variant."""

    variant: str
    base: CharLMPolicy
    hard: list[Problem]
    istar: dict[str, int]
    eval_set: list[Problem]
    regime: Regime


def variant_pretrain(cfg: "DemoConfig", variant: str) -> PretrainConfig:
    """The pretraining config of a base variant."""
    from dataclasses import replace

    if variant not in VARIANTS:
        raise ConfigError(f"unknown base variant {variant!r}; use one of {VARIANTS}")
    return replace(cfg.pretrain, revisit=variant == "revisit")


def _cached(path: Path, key: str, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The JSON phase result at ``path`` made under ``key``; made and written atomically if absent."""
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            data = {}
        if data.get("key") == key:
            return data
    data = {"key": key, **make()}
    atomic_write_json(path, data)
    return data


def _cached_problems(path: Path, key: str, make: Callable[[], tuple[list[Problem], dict[str, Any]]]
                     ) -> tuple[list[Problem], dict[str, Any]]:
    """Problems stored at ``path`` under header ``key``; made (and stored atomically) if absent."""
    if path.exists():
        rows = read_jsonl(path, strict=False)
        if rows and rows[0].get("key") == key:
            return [Problem.from_dict(r) for r in rows[1:]], rows[0].get("stats", {})
    problems, stats = make()
    atomic_write_jsonl(path, [{"key": key, "stats": stats}] + [p.to_dict() for p in problems])
    return problems, stats


def build_testbed(cfg: "DemoConfig", out: Path, variant: str = "plain", *,
                  log: Callable[[str], None] = print) -> Testbed:
    """Phases 1-4 for one base variant, cached in ``out/testbed/<variant>/``."""
    pcfg = variant_pretrain(cfg, variant)
    folder = out / "testbed" / variant
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    base = pretrain(pcfg, log=log)
    base.batch_size = max(base.batch_size, 512)
    log(f"[{variant}] base: {base.model.num_parameters():,} parameters, levels {pcfg.levels[0]}-{pcfg.levels[1]}"
        f"{' + revisit traces' if pcfg.revisit else ''} ({time.perf_counter() - t0:.0f} s)")
    mnt = cfg.max_new_tokens
    digest = lambda *names: cfg.digest(*names) + pcfg.digest()  # noqa: E731

    def make_easy() -> dict[str, Any]:
        lo, hi = pcfg.levels
        probs = [p for level in range(lo, hi + 1) for p in itertools.islice(
            arithmetic.iter_problems(level, split="test", seed=1, max_value=pcfg.max_value), cfg.easy_per_level)]
        c = count_correct(base, probs, [render_prompt(p) for p in probs], k=cfg.easy_k, seed=7,
                          max_new_tokens=mnt, desc=f"[{variant}] easy check")
        return {"pass@1": sum(c) / (len(c) * cfg.easy_k), "problems": len(c)}

    easy = _cached(folder / "easy_check.json", digest("easy_per_level", "easy_k", "max_new_tokens"), make_easy)
    log(f"[{variant}] base pass@1 on held-out easy problems: {easy['pass@1']:.3f} ({easy['problems']} problems)")

    def make_hard() -> tuple[list[Problem], dict[str, Any]]:
        cands = arithmetic.generate(cfg.n_candidates, cfg.hard_levels, split="train", seed=0, max_value=pcfg.max_value)
        hard, counts = screen_hard(base, cands, k=cfg.screen_k, seed=1, max_new_tokens=mnt,
                                   desc=f"[{variant}] hard split", chunk=cfg.screen_chunk)
        return hard, {"candidates": len(cands), "hard": len(hard),
                      "candidate_pass@1_first_round": _first_round_rate(counts, cfg)}

    hard_key = digest("hard_levels", "n_candidates", "screen_k", "screen_chunk", "max_new_tokens")
    hard_all, hard_stats = _cached_problems(folder / "hard_split.jsonl", hard_key, make_hard)

    def make_scan() -> dict[str, Any]:
        scan = guided_scan(base, hard_all, samples=cfg.istar_samples, seed=2, max_new_tokens=mnt)
        return {"samples": cfg.istar_samples, "scan": scan}

    scan = _cached(folder / "guided_scan.json", hard_key + cfg.digest("istar_samples"), make_scan)["scan"]
    istar = istar_from_scan(scan)
    atomic_write_jsonl(folder / "istar.jsonl", [
        {"problem_id": p.id, "i_star": istar[p.id], "n_steps": len(p.steps), "level": p.level}
        for p in hard_all if p.id in istar
    ])
    hard = [p for p in hard_all if p.id in istar][: cfg.max_hard]

    def make_eval() -> tuple[list[Problem], dict[str, Any]]:
        cands = arithmetic.generate(cfg.n_eval_candidates, cfg.hard_levels, split="test", seed=0,
                                    max_value=pcfg.max_value)
        held, _ = screen_hard(base, cands, k=cfg.screen_k, seed=3, max_new_tokens=mnt,
                              desc=f"[{variant}] held-out split", chunk=cfg.screen_chunk)
        return held[: cfg.max_eval], {"candidates": len(cands), "hard": len(held)}

    eval_key = digest("hard_levels", "n_eval_candidates", "screen_k", "screen_chunk", "max_eval", "max_new_tokens")
    eval_set, eval_stats = _cached_problems(folder / "eval_split.jsonl", eval_key, make_eval)

    regime = _regime(cfg, easy, hard_stats, hard_all, hard, istar, scan, eval_stats, eval_set)
    atomic_write_json(folder / "regime.json", {"variant": variant, "reached": regime.reached, **asdict(regime)})
    for line in regime.summary_lines():
        log(f"[{variant}]{line}")
    return Testbed(variant, base, hard, istar, eval_set, regime)


def _first_round_rate(counts: Sequence[int], cfg: "DemoConfig") -> float:
    n = min(cfg.screen_chunk or cfg.screen_k, cfg.screen_k)
    return sum(min(c, n) for c in counts) / max(1, len(counts) * n)


def _regime(cfg: "DemoConfig", easy: dict[str, Any], hard_stats: dict[str, Any], hard_all: Sequence[Problem],
            hard: Sequence[Problem], istar: dict[str, int], scan: dict[str, list[int]],
            eval_stats: dict[str, Any], eval_set: Sequence[Problem]) -> Regime:
    by_level: dict[int, dict[int, list[float]]] = {}
    for p in hard_all:
        for i, c in enumerate(scan.get(p.id, []), start=1):
            by_level.setdefault(p.level or 0, {}).setdefault((p.level or 0) - i, []).append(c / cfg.istar_samples)
    guided = {lvl: {left: statistics.fmean(v) for left, v in row.items()} for lvl, row in by_level.items()}
    failures = []
    if easy["pass@1"] < cfg.min_easy_pass1:
        failures.append(f"base easy pass@1 {easy['pass@1']:.3f} < {cfg.min_easy_pass1} (pretrain longer)")
    if len(hard) < cfg.min_hard:
        failures.append(f"only {len(hard)} hard training problems with an i* (needs {cfg.min_hard})")
    if not eval_set:
        failures.append("no held-out hard problems")
    return Regime(
        easy_pass1=easy["pass@1"], easy_problems=easy["problems"], easy_k=cfg.easy_k, screen_k=cfg.screen_k,
        hard_candidates=int(hard_stats.get("candidates", 0)), hard_pass0=len(hard_all),
        hard_with_istar=len([p for p in hard_all if p.id in istar]), hard_used=len(hard),
        eval_candidates=int(eval_stats.get("candidates", 0)), eval_pass0=int(eval_stats.get("hard", 0)),
        eval_used=len(eval_set), candidate_pass1=float(hard_stats.get("candidate_pass@1_first_round", 0.0)),
        istar_hist=dict(sorted(Counter(istar[p.id] for p in hard_all if p.id in istar).items())),
        guided_pass1=guided, min_easy_pass1=cfg.min_easy_pass1, min_hard=cfg.min_hard, failures=failures,
    )


def load_testbed(cfg: "DemoConfig", out: Path, variant: str) -> Testbed:
    """The testbed :func:`build_testbed` cached (for worker processes); never trains or samples
    except to load the cached base."""
    folder = out / "testbed" / variant
    path = folder / "regime.json"
    if not path.exists():
        raise ConfigError(f"{path} is missing: build the testbed first (pope-env demo builds it)")
    data = json.loads(path.read_text())
    data.pop("variant"), data.pop("reached")
    regime = Regime(**{**data, "istar_hist": {int(k): v for k, v in data["istar_hist"].items()},
                       "guided_pass1": {int(k): {int(a): b for a, b in v.items()}
                                        for k, v in data["guided_pass1"].items()}})
    base = pretrain(variant_pretrain(cfg, variant), progress=False, log=lambda _: None)
    hard_all = [Problem.from_dict(r) for r in read_jsonl(folder / "hard_split.jsonl")[1:]]
    istar = {r["problem_id"]: r["i_star"] for r in read_jsonl(folder / "istar.jsonl")}
    hard = [p for p in hard_all if p.id in istar][: cfg.max_hard]
    eval_set = [Problem.from_dict(r) for r in read_jsonl(folder / "eval_split.jsonl")[1:]]
    return Testbed(variant, base, hard, istar, eval_set, regime)


__all__ = [
    "VARIANTS",
    "Regime",
    "Testbed",
    "arithmetic_reward",
    "build_testbed",
    "count_correct",
    "guided_scan",
    "istar_from_scan",
    "load_testbed",
    "screen_hard",
    "variant_pretrain",
]
