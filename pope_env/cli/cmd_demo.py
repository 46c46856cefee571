"""``pope-env demo``: the POPE paper's claims on a CPU testbed (the main job; ``make demo`` runs it).

A tiny character-level transformer is pretrained on short arithmetic chains (cached after the
first run, both cores). Before any training the regime is measured and printed: the base's
easy pass@1 (>= 0.95 needed), the hard split (pass@64 = 0 for the base), guided pass@1
against prefix length and the i* distribution. Then each method trains a copy of the base
with several seeds (runs in parallel processes) and is evaluated unguided on held-out hard
problems: curves with mean +- s.e. bands, POPE - GRPO with a 95% bootstrap interval, and a
claims table. Writes ``summary.json``, ``runs/`` and ``demo.png``.

Presets and claims::

    pope-env demo                 # default: GRPO and POPE, 2 seeds, <= 15 min on 2 CPU cores
    pope-env demo --full          # every method of the paper, 3 seeds, + the overlap knob (<= 60 min)
    pope-env demo --quick         # the plumbing on a tiny budget (CI; not the regime)
    pope-env demo --claim mixing  # one claim: the full preset's settings, only the methods it needs
    pope-env demo --presets my.toml --preset long   # a preset of your own presets file

Re-running reuses the cached base, every finished phase and run (runs are shared between
--full and --claim in the same --out), and resumes an interrupted run from its checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pope_env.agents.demo import DemoConfig

CLAIMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # claim: (methods on the plain base, methods on the revisit base)
    "token-exploration": (("grpo", "pope", "entropy", "clip-higher"), ()),
    "mixing": (("grpo", "pope", "mix-easy"), ()),
    "passk": (("grpo", "pope", "passk"), ()),
    "solvable-set": (("grpo", "pope"), ()),
    "overlap": (("grpo", "pope"), ("grpo", "pope")),
    "sft-entropy": (("grpo", "pope", "sft-oracle"), ()),
}
"""The POPE paper's claims, each as the runs that test it (see pope_env.agents.demo_report)."""


NAME = "demo"
HELP = "the POPE paper's claims on a tiny char-level model (CPU, <= 15 min)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="every method of the paper, 3 seeds, the overlap knob")
    size.add_argument("--quick", action="store_true", help="a few minutes, for CI (shows the plumbing only)")
    size.add_argument("--claim", choices=sorted(CLAIMS), help="only the runs that test one claim (full preset settings)")
    size.add_argument("--preset", metavar="NAME", help="run this preset of --presets (default: default)")
    parser.add_argument("--presets", type=Path, metavar="FILE", help="your presets file (format: docs/architecture.md)")
    parser.add_argument("--out", type=Path, help="output folder (default: runs/demo-PRESET, runs/demo for default)")
    parser.add_argument("--seed", type=int, default=0,
                   help="first training seed; runs use SEED, SEED+1, ... (default: %(default)s)")
    parser.add_argument("--seeds", type=int, help="number of seeds (default: the preset's)")
    parser.add_argument("--workers", type=int, help="training runs at a time, one process each (default: the preset's, 2)")
    parser.add_argument("--epochs", type=int,
                   help="optimizer updates per batch (default 1: fully on-policy, where clip-higher equals grpo)")


def config_from_args(args: argparse.Namespace) -> tuple["DemoConfig", Path]:
    """The demo config and output folder an invocation asks for."""
    from dataclasses import replace

    from pope_env.agents.demo import get_preset
    from pope_env.errors import ConfigError

    preset = "full" if (args.full or args.claim) else "quick" if args.quick else args.preset or "default"
    cfg = get_preset(preset, args.presets)
    n_seeds = len(cfg.seeds) if args.seeds is None else args.seeds
    if n_seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {n_seeds}")
    cfg = replace(cfg, seeds=tuple(args.seed + i for i in range(n_seeds)))
    if args.claim:
        methods, revisit = CLAIMS[args.claim]
        cfg = replace(cfg, methods=methods, revisit_methods=revisit, preset=f"full, claim {args.claim}")
    if args.workers is not None:
        if args.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {args.workers}")
        cfg = replace(cfg, workers=args.workers)
    if args.epochs is not None:
        if args.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {args.epochs}")
        cfg = replace(cfg, epochs=args.epochs)
    out = args.out or Path("runs/demo" if preset == "default" else f"runs/demo-{preset}")
    return cfg, out


def run(args: argparse.Namespace) -> int:
    from pope_env.agents.demo import run_demo

    cfg, out = config_from_args(args)
    run_demo(cfg, out)
    return 0
