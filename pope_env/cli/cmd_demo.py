"""``pope-env demo``: POPE vs GRPO on a CPU testbed (the main job; ``make demo`` runs it).

A tiny character-level transformer is pretrained on short arithmetic chains (cached after the
first run), the chains it cannot solve (pass@k = 0) are measured, i* is found per problem, and
GRPO and POPE are trained from the same base; both are evaluated unguided on held-out hard
problems. Prints a table and writes ``summary.json``, ``results.jsonl`` and ``demo.png``.

Presets::

    pope-env demo            # default: <= 15 min on 2 CPU cores, pretraining included
    pope-env demo --full     # three seeds, longer training, larger evaluation (about an hour)
    pope-env demo --quick    # a few minutes: the whole pipeline on a tiny budget (CI)

Re-running with the same preset and --out reuses the cached base and every finished phase,
and resumes an interrupted training run from its last checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="POPE vs GRPO on a tiny char-level model (CPU, <= 15 min)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="longer reproduction with three seeds")
    size.add_argument("--quick", action="store_true", help="a few minutes, for CI (shows the plumbing only)")
    p.add_argument("--out", type=Path, help="output folder (default: runs/demo, runs/demo-full, runs/demo-quick)")
    p.add_argument("--seed", type=int, default=0,
                   help="first training seed; runs use SEED, SEED+1, ... (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from pope_env.agents.demo import get_preset, run_demo

    preset = "full" if args.full else "quick" if args.quick else "default"
    cfg = get_preset(preset)
    cfg = replace(cfg, seeds=tuple(args.seed + i for i in range(len(cfg.seeds))))
    out = args.out or Path("runs/demo" if preset == "default" else f"runs/demo-{preset}")
    run_demo(cfg, out)
    return 0
