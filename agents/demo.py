"""The CPU testbed: does POPE beat plain GRPO on problems the base model cannot solve?

``pope-env demo`` (``make demo``) builds the POPE paper's regime on a CPU and measures each of
its claims there, with seeds and error bars. Seeded; every phase cached by a hash of its
settings and resumable after ``kill -9``; progress bars throughout.

1. **Testbed, measured before any training** (:mod:`pope_env.agents.demo_testbed`): a tiny
   char transformer pretrained on 1-4-operation arithmetic chains (data-parallel over
   ``pretrain.workers`` processes); its held-out easy pass@1 (must be >= 0.95); the hard
   split (longer chains with pass@64 = 0 for the base); guided pass@1 against prefix
   length; i* per problem. If the regime is not reached the demo says so and does not
   present its results as a test of POPE.
2. **Training runs** (:mod:`pope_env.agents.demo_runs`): each (method, seed) trains a copy of
   the base with the shared trainer and a method of :mod:`pope_env.agents.methods`, in its
   own process, ``workers`` at a time.
3. **Report** (:mod:`pope_env.agents.demo_report`): held-out unguided hard pass@1 and pass@k
   curves and token entropy with mean ± s.e. bands over seeds, solved-set sizes, own-state
   S_good overlap, POPE - GRPO with a 95% bootstrap interval, and the claims table.

Presets: ``default`` (GRPO and POPE, 2 seeds, <= 15 min on 2 cores from a fresh clone),
``full`` (every method of the paper with 3 seeds, plus POPE and GRPO on a base pretrained
with *revisiting* traces, the overlap knob; <= 60 min) and ``quick`` (the plumbing, for CI).

Outputs in ``out``: ``config.json``, ``testbed/<variant>/`` (``easy_check.json``,
``hard_split.jsonl`` and ``eval_split.jsonl`` (split files), ``guidance.jsonl`` (the i*
guidance file), ``guided_curve.json``, ``regime.json``), ``runs/<name>/`` (trainer logs, checkpoints, ``result.json``),
``summary.json``, ``demo.png``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, get_origin

from pope_env.agents.charlm import CharLMConfig
from pope_env.agents.demo_testbed import arithmetic_reward
from pope_env.agents.pretrain import PretrainConfig
from pope_env.errors import ConfigError, DataFormatError, GuidanceFileError, UnknownNameError
from pope_env.io import atomic_write_json, read_toml


PAPER_METHODS = ("grpo", "pope", "entropy", "clip-higher", "passk", "mix-easy", "sft-oracle")


@dataclass(frozen=True)
class DemoConfig:
    """Everything that defines a demo run (its hash names the cached phases).

    It has no defaults of its own: every setting's value is in the presets file
    ``demo_presets.toml`` (:data:`PRESETS`, :func:`load_presets`), whose ``[default]`` table
    is what ``pope-env demo`` runs. A variation is a preset with changes:
    ``dataclasses.replace(get_preset("default"), steps=120)``.

    Attributes:
        preset: Name shown in reports (``quick``, ``default``, ``full``).
        pretrain: How the base model is made (the ``plain`` variant; ``revisit`` is the same
            with ``revisit=True``).
        seeds: Training seeds; every method runs once per seed, all from the same base.
        methods: Methods trained on the plain base (names of :mod:`pope_env.agents.methods`).
        revisit_methods: Methods also trained on the base pretrained with revisiting traces.
        workers: Training runs at a time, one process each.
        hard_levels: Inclusive range of operation counts of hard candidates.
        n_candidates: Train-split candidates screened for the hard training set.
        n_eval_candidates: Test-split candidates screened for the held-out hard set.
        screen_k: Samples per candidate; *hard* means none of them is correct (paper: pass@k = 0).
        screen_chunk: Samples per screening round (a candidate leaves at its first success).
        istar_samples: Samples per (problem, prefix) in the linear i* search and the guided-success
            curve (one chunk each).
        max_hard: Cap on the hard training set (problems with an i*).
        max_eval: Cap on the held-out hard set.
        eval_k: Samples per held-out problem for pass@1 / pass@k (k = ``eval_k``).
        easy_per_level: Held-out easy problems per pretraining level in the easy check.
        easy_k: Samples per easy problem in the easy check.
        min_easy_pass1: The regime needs at least this easy pass@1.
        min_hard: The regime needs at least this many hard training problems with an i*.
        steps: RL steps (one optimizer update each) per run.
        prompts_per_step: Prompts (groups) per step.
        group_size: Rollouts per prompt (GRPO's G).
        lr: RL learning rate of every method.
        epochs: Optimizer updates per batch of rollouts. With 1 every update is on-policy (the
            importance ratio is 1 where the gradient is taken), so clipping never acts and
            ``clip-higher`` is exactly ``grpo``; 2 or more make the later updates off-policy,
            as in the paper's asynchronous Pipeline-RL set-up, and give clipping a role.
        sft_steps: SFT steps of ``sft-oracle`` before its RL steps.
        sft_lr: SFT learning rate of ``sft-oracle``.
        n_easy: Easy (pretraining-level) train problems that ``mix-easy`` mixes in.
        eval_every: Steps between held-out evaluations.
        max_new_tokens: Completion cap in characters.
        reach_problems: Training hard problems whose own unguided states are checked against
            S_good at each evaluation (0: off).
        reach_k: Continuations per own state.
        reach_states: Own states per problem.
    """

    preset: str
    pretrain: PretrainConfig
    # Which runs (not part of what a run does: ``_PER_INVOCATION``).
    seeds: tuple[int, ...]
    methods: tuple[str, ...]
    revisit_methods: tuple[str, ...]
    workers: int
    # The testbed: hard split, i*, regime check.
    hard_levels: tuple[int, int]
    n_candidates: int
    n_eval_candidates: int
    screen_k: int
    screen_chunk: int
    istar_samples: int
    max_hard: int
    max_eval: int
    eval_k: int
    easy_per_level: int
    easy_k: int
    min_easy_pass1: float
    min_hard: int
    # Each training run.
    steps: int
    prompts_per_step: int
    group_size: int
    lr: float
    epochs: int
    sft_steps: int
    sft_lr: float
    n_easy: int
    eval_every: int
    max_new_tokens: int
    # Own-state S_good overlap at each evaluation.
    reach_problems: int
    reach_k: int
    reach_states: int

    def __post_init__(self) -> None:
        from pope_env.agents.methods import get_method

        if self.hard_levels[0] <= self.pretrain.levels[1]:
            raise ConfigError(
                f"hard_levels {self.hard_levels} must be longer than the pretraining levels "
                f"{self.pretrain.levels}"
            )
        if not self.seeds:
            raise ConfigError("seeds must name at least one seed")
        if min(self.screen_k, self.screen_chunk, self.istar_samples, self.eval_k, self.easy_k) < 1:
            raise ConfigError("screen_k, screen_chunk, istar_samples, eval_k and easy_k must be >= 1")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if not self.methods:
            raise ConfigError("methods must name at least one method")
        for name in self.methods + self.revisit_methods:
            get_method(name)  # UnknownNameError lists the known methods

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DemoConfig":
        """The config ``asdict(config)`` (or its JSON) came from."""
        d = dict(d)
        d["pretrain"] = PretrainConfig.from_dict(d["pretrain"])
        for f in fields(cls):
            if f.name in d and isinstance(d[f.name], list):
                d[f.name] = tuple(d[f.name])
        return cls(**d)

    def digest(self, *fields_: str) -> str:
        """Hash of the named fields (all when none): names the cached phases."""
        d = asdict(self)
        if d.get("epochs") == 1:  # added later: configs from before it keep their hashes
            d.pop("epochs")
        d = {k: d[k] for k in fields_ if k in d} if fields_ else d
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=list).encode()).hexdigest()[:16]

    def shared_digest(self) -> str:
        """Hash of every setting a run's result depends on besides its own (method, variant,
        seed): configs with the same one share an output folder, its testbed and its runs."""
        return self.digest(*(f.name for f in fields(self) if f.name not in _PER_INVOCATION))

    @property
    def variants(self) -> tuple[str, ...]:
        return ("plain", "revisit") if self.revisit_methods else ("plain",)


_PER_INVOCATION = ("preset", "methods", "revisit_methods", "seeds", "workers")
"""Fields that choose which runs to do, not what a run does."""

PRESETS_FILE = Path(__file__).resolve().with_name("demo_presets.toml")


def load_presets(path: str | Path = PRESETS_FILE) -> dict[str, DemoConfig]:
    """The presets in a presets file (format: ``demo_presets.toml``'s header), by name.

    ``[default]`` must give every :class:`DemoConfig` setting but ``preset``; every other
    table gives only what it changes, merged into ``[default]`` key by key (its ``pretrain``
    and ``pretrain.model`` tables too). A preset's ``preset`` field is its table's name.

    Raises:
        DataFormatError: the file is not TOML, has no ``[default]``, or a preset names an
            unknown setting, leaves one out, gives one a value of the wrong kind, or fails
            :class:`DemoConfig`'s own checks (the message names the preset and the setting).
    """
    path = Path(path)
    tables = read_toml(path)
    if not isinstance(tables.get("default"), dict):
        raise DataFormatError(f"{path} has no [default] table: it must give every demo setting")
    presets = {}
    for name, table in sorted(tables.items(), key=lambda item: item[0] != "default"):  # [default] first
        where = f"{path}: preset [{name}]"
        if not isinstance(table, dict):
            raise DataFormatError(f"{where} is not a table")
        settings = table if name == "default" else _merged(tables["default"], table)
        _check_settings(settings, DemoConfig, where, exclude=("preset",), complete=True)
        _check_settings(settings["pretrain"], PretrainConfig, f"{where}.pretrain")
        _check_settings(settings["pretrain"].get("model", {}), CharLMConfig, f"{where}.pretrain.model")
        try:
            presets[name] = DemoConfig.from_dict({**settings, "preset": name})
        except (ConfigError, UnknownNameError) as exc:
            raise DataFormatError(f"{where}: {exc}") from exc
    return {name: presets[name] for name in tables}  # in file order


def _merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied, sub-tables merged key by key."""
    merged = dict(base)
    for key, value in changes.items():
        old = merged.get(key)
        merged[key] = _merged(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
    return merged


_KINDS = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}
"""TOML value types each simple annotation accepts (``tuple[...]`` fields take arrays)."""


def _kind_name(annotation: Any) -> str:
    """``"int"``, ``"tuple[int, int]"``, ...: an annotation as written (a string already under
    ``from __future__ import annotations``)."""
    if isinstance(annotation, str) or get_origin(annotation) is not None:
        return str(annotation)
    return getattr(annotation, "__name__", str(annotation))


def _check_settings(settings: Any, config: type, where: str, *, exclude: tuple[str, ...] = (),
                    complete: bool = False) -> None:
    """Refuse settings ``config`` does not have, of the wrong kind, or (``complete``) missing."""
    if not isinstance(settings, dict):
        raise DataFormatError(f"{where} must be a table, got {settings!r}")
    known = {f.name: _kind_name(f.type) for f in fields(config) if f.name not in exclude}
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise DataFormatError(f"{where}: unknown setting(s) {', '.join(unknown)}; "
                              f"{config.__name__} has {', '.join(known)}")
    missing = [k for k in known if k not in settings] if complete else []
    if missing:
        raise DataFormatError(f"{where} leaves out {', '.join(missing)}: [default] must give every setting")
    for key, value in settings.items():
        kind = known[key]
        ok = (isinstance(value, list) if kind.startswith("tuple[")
              else isinstance(value, dict) if kind in ("PretrainConfig", "CharLMConfig")
              else isinstance(value, _KINDS.get(kind, (object,))) and not (kind != "bool" and isinstance(value, bool)))
        if not ok:
            raise DataFormatError(f"{where}: {key} = {value!r} is not a {kind}")


PRESETS: dict[str, DemoConfig] = load_presets()
"""``quick`` (CI: the plumbing end to end, not the effect), ``default`` (``pope-env demo``:
GRPO and POPE, 2 seeds, <= 15 min on 2 cores) and ``full`` (``--full``: every method of the
paper with 3 seeds, and the overlap knob), from :data:`PRESETS_FILE`."""


def get_preset(name: str, presets_file: str | Path | None = None) -> DemoConfig:
    """The preset called ``name``: of :data:`PRESETS` (``quick``, ``default``, ``full``), or
    of the presets file ``presets_file`` (:func:`load_presets`; :class:`DataFormatError` if
    it is bad, :class:`~pope_env.errors.ConfigError` if it does not exist)."""
    if presets_file is None:
        presets = PRESETS
    elif not Path(presets_file).is_file():
        raise ConfigError(f"presets file {presets_file} does not exist; write one in the format of {PRESETS_FILE}")
    else:
        presets = load_presets(presets_file)
    try:
        return presets[name]
    except KeyError:
        raise UnknownNameError("demo preset", name, list(presets)) from None


def run_demo(cfg: DemoConfig, out: str | Path = "runs/demo", *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole demo; returns the summary (also written to ``out/summary.json``)."""
    import torch

    from pope_env.agents import demo_report
    from pope_env.agents.demo_runs import RunSpec, run_parallel
    from pope_env.agents.demo_testbed import build_testbed

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "config.json"
    if config_path.exists():
        old = json.loads(config_path.read_text())
        if old.get("digest") != cfg.shared_digest():
            raise GuidanceFileError(
                f"{out} holds a demo made with other settings ({old.get('preset')}, {old.get('digest')}); "
                "use another --out folder or delete it"
            )
    atomic_write_json(config_path, {"digest": cfg.shared_digest(), "preset": cfg.preset, "config": asdict(cfg)})
    # One intra-op thread: this model's matmuls are too small to split, and two spinning
    # OpenMP threads on a busy machine made sampling 20-30x slower (measured).
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    log(f"pope-env demo, preset {cfg.preset}: measuring the regime before any training")
    testbeds = {v: build_testbed(cfg, out, v, log=log) for v in cfg.variants}
    regime_s = time.perf_counter() - t0
    specs = [RunSpec(m, "plain", s) for s in cfg.seeds for m in cfg.methods]
    specs += [RunSpec(m, "revisit", s) for s in cfg.seeds for m in cfg.revisit_methods]
    trainable = [s for s in specs if testbeds[s.variant].hard and testbeds[s.variant].eval_set]
    for s in specs:
        if s not in trainable:
            log(f"run {s.name} skipped: its base variant has no hard training or held-out problems")
    results, failures = run_parallel(cfg, out, trainable, workers=cfg.workers, log=log)
    summary = demo_report.summarize(results, cfg.eval_k) if results else {"k": cfg.eval_k, "labels": {}, "claims": []}
    regimes = {v: {**asdict(tb.regime), "reached": tb.regime.reached} for v, tb in testbeds.items()}
    summary.update(preset=cfg.preset, regimes=regimes, failed_runs=failures,
                   regime_s=round(regime_s, 1), wall_s=round(time.perf_counter() - t0, 1))
    atomic_write_json(out / "summary.json", summary)
    if results:
        demo_report.plot(summary, results, regimes, out / "demo.png",
                         f"POPE paper's claims on a CPU char-LM testbed ({cfg.preset} preset, "
                         f"{len(cfg.seeds)} seeds, mean ± s.e.)")
    log("")
    for v, tb in testbeds.items():
        log(f"regime ({v} base):")
        for line in tb.regime.summary_lines():
            log(line)
    log("")
    log(demo_report.format_tables(summary, {v: len(tb.eval_set) for v, tb in testbeds.items()}))
    if not all(tb.regime.reached for tb in testbeds.values()):
        log("\nTHE REGIME WAS NOT REACHED (see above): these results are not a test of POPE.")
    if failures:
        log(f"\nfailed runs (re-run the same command to retry them): {', '.join(sorted(failures))}")
    log(f"\noutputs: {out}/summary.json, {out}/demo.png, {out}/runs/ ({summary['wall_s']:.0f} s)")
    return summary


__all__ = ["PAPER_METHODS", "PRESETS", "PRESETS_FILE", "DemoConfig", "arithmetic_reward", "get_preset", "load_presets",
           "run_demo"]
