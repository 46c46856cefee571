"""The demo's measured inputs: base model, regime check, hard split, i*, guided-success curve.

Everything here is *measured* on the base model before any training, as the POPE paper
defines it, and cached in ``<out>/testbed/<variant>/`` under a hash of the settings that made
it (a re-run reuses it; a killed run redoes at most the phase in progress):

1. **Base** (:func:`pope_env.agents.pretrain.pretrain`, cached by its config hash, resumable).
2. **Easy check**: pass@1 (temperature 1, ``easy_k`` samples per problem) on held-out
   test-split chains of the pretraining levels. The paper's regime needs a base that is
   near-perfect on easy problems: at least ``min_easy_pass1`` (0.95).
3. **Hard split**: train-split chains of ``hard_levels`` operations with *pass@k = 0* for the
   base (``k = screen_k`` = 64 samples at temperature 1, drawn in chunks of
   ``screen_chunk``; a candidate leaves at its first success), measured by
   :func:`pope_env.hard_split.run_hard_split` into the split file ``hard_split.jsonl``. The
   held-out evaluation set is screened the same way from the test split with another seed
   (``eval_split.jsonl``).
4. **i\\***: :func:`pope_env.prefix_search.run_prefix_search` with the ``linear`` strategy
   (the paper's definition: the smallest ``i`` with a success in ``istar_samples`` samples)
   into the guidance file ``guidance.jsonl``. Problems with no working prefix are dropped
   from training.
5. **Guided success against prefix length**: every hard problem at every oracle prefix
   ``i = 1..prefix_cap`` with ``istar_samples`` samples each (:func:`guided_curve`; the
   table and plot panel), with the search's seeds, so the states the search measured are
   taken from its evidence.

The split and guidance files are real library files (load them with the envs'
``split_file=`` / ``guidance_file=``; the prompt format is the char model's
:func:`~pope_env.agents.pretrain.render_guided_prompt`). Every phase runs all its problems
at once (``batch_size`` = the number of problems): the char model is fast only in large
batches, and :meth:`~pope_env.agents.charlm.CharLMPolicy.generate_seeded` lets one call per
round serve them all while each problem gets the draws it would get alone.

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
from pope_env.agents.pretrain import PretrainConfig, pretrain, render_guided_prompt
from pope_env.datasets import arithmetic
from pope_env.errors import ConfigError, GuidanceFileError
from pope_env.guidance import prefix_cap
from pope_env.guidance_file import GuidanceFile, Measurement, load_guidance
from pope_env.hard_split import HardSplit, load_split, run_hard_split
from pope_env.io import atomic_write_json
from pope_env.prefix_search import run_prefix_search
from pope_env.probe import MeasureRequest, PrefixProbe, ProbeSettings, Scorer
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


def arithmetic_scorer(completions: Sequence[str], problem: Problem) -> list[bool]:
    """:func:`arithmetic_reward` as the :data:`~pope_env.prefix_search.Scorer` of the hard
    split and the i* search: one verdict per completion."""
    return [arithmetic_reward(c, problem) > 0 for c in completions]


def _probe_settings(*, k: int, seed: int, chunk_size: int, max_new_tokens: int,
                    scorer: Scorer = arithmetic_scorer) -> ProbeSettings:
    """How every testbed measurement samples: temperature 1, the char model's own prompt
    layout (:func:`render_guided_prompt`, which is :func:`render_prompt` at ``i = 0``)."""
    return ProbeSettings(scorer=scorer, k=k, seed=seed, chunk_size=min(chunk_size, k),
                         sampling=SamplingParams(temperature=1.0, max_new_tokens=max_new_tokens),
                         prompt_format=render_guided_prompt)


def _remade_if_stale(path: Path, run: Callable[[], Any]) -> Any:
    """``run()``, which writes or resumes the headed file ``path``; a file made with other
    settings (the run refuses it) is deleted and made again."""
    try:
        return run()
    except GuidanceFileError:
        path.unlink(missing_ok=True)
        return run()


def measure_hard_split(policy: CharLMPolicy, candidates: Sequence[Problem], out: Path, *, dataset: str, k: int,
                       chunk: int, seed: int, max_new_tokens: int) -> HardSplit:
    """The split file ``out`` of ``candidates`` (pass@k = 0 by :func:`pope_env.hard_split.run_hard_split`,
    all candidates in flight together), resumed if it holds the same settings, else remade."""
    settings = _probe_settings(k=k, seed=seed, chunk_size=chunk, max_new_tokens=max_new_tokens)
    return _remade_if_stale(out, lambda: run_hard_split(
        candidates, policy, dataset=dataset, out=out, batch_size=max(1, len(candidates)), **settings))


def guided_curve(policy: CharLMPolicy, problems: Sequence[Problem], guidance: GuidanceFile, *, samples: int,
                 seed: int, max_new_tokens: int, scorer: Scorer = arithmetic_scorer) -> dict[str, list[int]]:
    """Problem id -> successes among ``samples`` guided completions at each prefix
    ``i = 1..prefix_cap(problem)`` (list index ``i - 1``), by ``scorer``'s verdicts.

    Measured with the i* search's sampler (same seeds, one chunk of ``samples`` per state), so
    the states the search already measured are taken from its evidence (the same random
    events) and only the states above i* are sampled, all in one batched
    :meth:`~pope_env.probe.PrefixProbe.measure_many`."""
    probe = PrefixProbe(policy, **_probe_settings(k=samples, seed=seed, chunk_size=samples,
                                                  max_new_tokens=max_new_tokens, scorer=scorer))
    known = {p.id: guidance[p.id].by_state() if p.id in guidance else {} for p in problems}
    requests = [MeasureRequest(p, i, early_stop=False) for p in problems for i in range(1, prefix_cap(p) + 1)
                if known[p.id].get(i, Measurement(i, 0, 0)).samples < samples]
    for r, m in zip(requests, probe.measure_many(requests)):
        known[r.problem.id][r.prefix_len] = m
    return {p.id: [known[p.id][i].successes for i in range(1, prefix_cap(p) + 1)] for p in problems}


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


def build_testbed(cfg: "DemoConfig", out: Path, variant: str = "plain", *,
                  log: Callable[[str], None] = print) -> Testbed:
    """Phases 1-5 for one base variant, cached in ``out/testbed/<variant>/``."""
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
        probe = PrefixProbe(base, **_probe_settings(k=cfg.easy_k, seed=7, chunk_size=cfg.easy_k, max_new_tokens=mnt))
        log(f"[{variant}] easy check: {len(probs)} problems x {cfg.easy_k} samples")
        got = probe.measure_many([MeasureRequest(p, 0, early_stop=False) for p in probs])
        return {"pass@1": sum(m.successes for m in got) / (len(got) * cfg.easy_k), "problems": len(got)}

    easy = _cached(folder / "easy_check.json", digest("easy_per_level", "easy_k", "max_new_tokens"), make_easy)
    log(f"[{variant}] base pass@1 on held-out easy problems: {easy['pass@1']:.3f} ({easy['problems']} problems)")

    cands = _candidates(cfg, pcfg, "train")
    log(f"[{variant}] hard split: {len(cands)} train candidates, pass@{cfg.screen_k}")
    split = measure_hard_split(base, cands, folder / "hard_split.jsonl", k=cfg.screen_k, chunk=cfg.screen_chunk,
                               seed=1, max_new_tokens=mnt,
                               dataset=f"demo-{variant}-train-{digest('hard_levels', 'n_candidates')}")
    hard_all = _hard_problems(cands, split)
    hard_stats = {"candidates": len(cands), "hard": len(hard_all),
                  "candidate_pass@1_first_round": _first_round_rate(split)}

    log(f"[{variant}] i* (linear search) of {len(hard_all)} hard problems, {cfg.istar_samples} samples per prefix")
    guidance = _remade_if_stale(folder / "guidance.jsonl", lambda: run_prefix_search(
        hard_all, base, dataset=f"demo-{variant}-hard-{digest('hard_levels', 'n_candidates', 'screen_k', 'screen_chunk')}",
        out=folder / "guidance.jsonl", strategy="linear",
        batch_size=max(1, len(hard_all)),
        **_probe_settings(k=cfg.istar_samples, seed=2, chunk_size=cfg.istar_samples, max_new_tokens=mnt)))
    istar = {pid: r.i_star for pid, r in guidance.records.items() if r.i_star is not None}
    hard = [p for p in hard_all if p.id in istar][: cfg.max_hard]

    curve_key = digest("hard_levels", "n_candidates", "screen_k", "screen_chunk", "istar_samples", "max_new_tokens")
    scan = _cached(folder / "guided_curve.json", curve_key, lambda: {"samples": cfg.istar_samples, "scan": guided_curve(
        base, hard_all, guidance, samples=cfg.istar_samples, seed=2, max_new_tokens=mnt)})["scan"]

    eval_cands = _candidates(cfg, pcfg, "test")
    log(f"[{variant}] held-out hard split: {len(eval_cands)} test candidates, pass@{cfg.screen_k}")
    eval_split = measure_hard_split(base, eval_cands, folder / "eval_split.jsonl", k=cfg.screen_k,
                                    chunk=cfg.screen_chunk, seed=3, max_new_tokens=mnt,
                                    dataset=f"demo-{variant}-test-{digest('hard_levels', 'n_eval_candidates')}")
    eval_hard = _hard_problems(eval_cands, eval_split)
    eval_set = eval_hard[: cfg.max_eval]
    eval_stats = {"candidates": len(eval_cands), "hard": len(eval_hard)}

    regime = _regime(cfg, easy, hard_stats, hard_all, hard, istar, scan, eval_stats, eval_set)
    atomic_write_json(folder / "regime.json", {"variant": variant, "reached": regime.reached, **asdict(regime)})
    for line in regime.summary_lines():
        log(f"[{variant}]{line}")
    return Testbed(variant, base, hard, istar, eval_set, regime)


def _candidates(cfg: "DemoConfig", pcfg: PretrainConfig, split: str) -> list[Problem]:
    """The hard candidates of ``split`` (train: the training set's, test: the held-out set's)."""
    n = cfg.n_candidates if split == "train" else cfg.n_eval_candidates
    return arithmetic.generate(n, cfg.hard_levels, split=split, seed=0, max_value=pcfg.max_value)


def _hard_problems(candidates: Sequence[Problem], split: HardSplit) -> list[Problem]:
    """The candidates the split file marks hard, in candidate order."""
    hard = set(split.hard_ids)
    return [p for p in candidates if p.id in hard]


def _first_round_rate(split: HardSplit) -> float:
    """Success rate of every candidate's first chunk (a candidate that left after it drew
    only that chunk; one that went on had none in it)."""
    n = split.header.chunk_size
    first = [r.successes if r.samples <= n else 0 for r in split.records.values()]
    return sum(first) / max(1, len(first) * n)


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
    pcfg = variant_pretrain(cfg, variant)
    hard_all = _hard_problems(_candidates(cfg, pcfg, "train"), load_split(folder / "hard_split.jsonl"))
    guidance = load_guidance(folder / "guidance.jsonl")
    istar = {pid: r.i_star for pid, r in guidance.records.items() if r.i_star is not None}
    hard = [p for p in hard_all if p.id in istar][: cfg.max_hard]
    eval_set = _hard_problems(_candidates(cfg, pcfg, "test"), load_split(folder / "eval_split.jsonl"))[: cfg.max_eval]
    return Testbed(variant, base, hard, istar, eval_set, regime)


__all__ = [
    "VARIANTS",
    "Regime",
    "Testbed",
    "arithmetic_reward",
    "build_testbed",
    "arithmetic_scorer",
    "guided_curve",
    "load_testbed",
    "measure_hard_split",
    "variant_pretrain",
]
