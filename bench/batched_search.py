"""Benchmark: cross-problem batching of the hard split and the i* search (``batch_size``).

Settings (``--setting``, the policies and problems of ``bench/prefix_search.py``):

* ``charlm`` (default): the CPU demo's base model (the tiny char transformer, fast only in
  large batches) and the demo's hard split. It runs, in the same process and with the same
  seeds, ``run_prefix_search`` (``linear``, the demo's settings: k = 8 in one chunk) over
  ``--problems`` hard problems with ``batch_size=1`` (the reference) and with
  ``batch_size = --problems`` (all problems in flight, :mod:`pope_env.lockstep`), and
  ``run_hard_split`` (k = 64 in chunks of 16, the demo's screening) over ``--candidates``
  candidate chains, the same two ways. Each pair of files must be byte-identical (the
  batching guarantee; the bench fails otherwise).
* ``smollm2``: SmolLM2-135M-Instruct through ``HFPolicy.generate_seeded`` on MATH-500
  level-1 problems (chat prompts, math-verify, temperature 0.7, 48 new tokens): the linear
  i* search (k = 8 in chunks of 4) over ``--problems`` problems and the hard split (k = 8 in
  chunks of 4) over ``--candidates`` of them, the same two ways. HF's batched, left-padded
  arithmetic may flip a token where a uniform falls within rounding error of a boundary, so
  the bench reports how many records differ instead of failing.

It prints the wall-time ratio reference / batched. Writes
``bench/results/batched_search.json`` (``batched_search_smollm2.json`` for ``smollm2``).

    python bench/batched_search.py [--setting charlm] [--problems 120] [--candidates 120]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))

RESULTS = {"charlm": Path(__file__).parent / "results" / "batched_search.json",
           "smollm2": Path(__file__).parent / "results" / "batched_search_smollm2.json"}


def _timed(run) -> tuple[float, str]:
    """Wall seconds of ``run(out)`` and the text of the file it wrote."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.jsonl"
        t0 = time.perf_counter()
        run(out)
        return time.perf_counter() - t0, out.read_text()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setting", choices=sorted(RESULTS), default="charlm")
    parser.add_argument("--problems", type=int, help="problems searched for i* (default: charlm 120, smollm2 12: all MATH-500 level-1 problems with a prefix cap >= 2)")
    parser.add_argument("--candidates", type=int, help="candidates screened (hard split; default: charlm 120, smollm2 12)")
    parser.add_argument("--out", help="results file (default: bench/results/batched_search[_smollm2].json)")
    args = parser.parse_args(argv)
    small = args.setting == "smollm2"
    args.problems = args.problems or (12 if small else 120)
    args.candidates = args.candidates or (12 if small else 120)
    args.out = args.out or str(RESULTS[args.setting])

    import torch

    from prefix_search import charlm_setting, smollm2_setting  # bench/prefix_search.py's settings

    from pope_env.agents.demo import get_preset
    from pope_env.agents.policy import SamplingParams
    from pope_env.datasets import arithmetic
    from pope_env.hard_split import run_hard_split
    from pope_env.io import atomic_write_json
    from pope_env.prefix_search import run_prefix_search

    torch.set_num_threads(1)
    if small:
        setting = smollm2_setting(argparse.Namespace(offset=0, problems=max(args.problems, args.candidates),
                                                     temperature=None))
        search = dict(dataset=setting.dataset, strategy="linear", k=8, chunk_size=4, seed=2,
                      scorer=setting.scorer, sampling=setting.sampling, prompt_format=setting.prompt_format,
                      progress=False)
        candidates = setting.problems[: args.candidates]
        screen = dict(dataset="bench-candidates", k=8, chunk_size=4, seed=1, scorer=setting.scorer,
                      sampling=setting.sampling, prompt_format=setting.prompt_format, progress=False)
        problems = setting.problems[: args.problems]
    else:
        setting = charlm_setting(argparse.Namespace(preset="default", hard_levels=None, offset=0,
                                                    problems=args.problems, temperature=None))
        cfg = get_preset("default")
        search = dict(dataset=setting.dataset, strategy="linear", k=cfg.istar_samples, chunk_size=cfg.istar_samples,
                      seed=2, scorer=setting.scorer, sampling=setting.sampling, prompt_format=setting.prompt_format,
                      progress=False)
        candidates = arithmetic.generate(args.candidates, cfg.hard_levels, split="test", seed=7,
                                         max_value=cfg.pretrain.max_value)
        screen = dict(dataset="bench-candidates", k=cfg.screen_k, chunk_size=cfg.screen_chunk, seed=1,
                      scorer=setting.scorer, sampling=SamplingParams(temperature=1.0, max_new_tokens=cfg.max_new_tokens),
                      prompt_format=setting.prompt_format, progress=False)
        problems = setting.problems
    rows = {}
    for name, items, run, kw in (("prefix search (linear)", problems, run_prefix_search, search),
                                 ("hard split", candidates, run_hard_split, screen)):
        one_s, one_file = _timed(lambda out: run(items, setting.policy, out=out, batch_size=1, **kw))
        all_s, all_file = _timed(lambda out: run(items, setting.policy, out=out, batch_size=len(items), **kw))
        differing = sum(a != b for a, b in zip(one_file.splitlines(), all_file.splitlines()))
        differing += abs(len(one_file.splitlines()) - len(all_file.splitlines()))
        if differing and not small:
            print(f"{name}: the batched file differs from the reference", file=sys.stderr)
            return 1
        rows[name] = {"problems": len(items), "batch_size_1_s": round(one_s, 2),
                      f"batch_size_{len(items)}_s": round(all_s, 2), "speedup": round(one_s / all_s, 2),
                      "files_identical": not differing, "differing_lines": differing}
        same = "files identical" if not differing else f"{differing} differing lines"
        print(f"{name}: {len(items)} problems, batch_size=1 {one_s:.1f} s, batch_size={len(items)} "
              f"{all_s:.1f} s -> {one_s / all_s:.2f}x ({same})")
    result = {"bench": "batched_search", "setting": args.setting, "date": time.strftime("%Y-%m-%d"), "machine": platform.platform(),
              "cpus": os.cpu_count(), "torch_threads": 1, "model": setting.notes["model"],
              "problems_from": setting.notes["problems_from"], "results": rows}
    atomic_write_json(args.out, result)
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
