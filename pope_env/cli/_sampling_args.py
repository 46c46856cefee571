"""Arguments shared by the commands that sample a policy (hard-split, prefix-search)."""

from __future__ import annotations

import argparse
from typing import Any


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--k``, ``--seed``, sampling settings and prompt options."""
    parser.add_argument("--model", default="smollm2",
                        help="model name (smollm2), local folder or .gguf file (default: smollm2)")
    parser.add_argument("--k", type=int, default=8, help="samples per problem/state (default: 8)")
    parser.add_argument("--seed", type=int, default=0, help="root seed of all sampling (default: 0)")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="samples per generate call; measurements stop early after a chunk "
                             "with a success (default: max(1, k // 4))")
    parser.add_argument("--temperature", type=float, default=1.0, help="default: 1.0")
    parser.add_argument("--top-p", type=float, default=1.0, help="default: 1.0")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="default: 512")
    parser.add_argument("--prompt-format", choices=("chat", "text"), default="chat",
                        help="chat messages (templated by the model) or plain text (default: chat)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="sequences per forward batch of the HF policy (default: 32)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N problems")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def make_policy(args: argparse.Namespace) -> Any:
    """The HF policy for ``--model`` (imports torch/transformers)."""
    from pope_env.agents.factory import make_policy as make

    return make(args.model, backend="hf", batch_size=args.batch_size, name=args.model, progress=False)


def make_sampling(args: argparse.Namespace) -> Any:
    from pope_env.agents.policy import SamplingParams

    return SamplingParams(temperature=args.temperature, top_p=args.top_p,
                          max_new_tokens=args.max_new_tokens)


def add_batch_problems_argument(parser: argparse.ArgumentParser) -> None:
    """``--batch-problems``: problems measured together (``batch_size`` of ``run_hard_split`` and
    ``run_prefix_search``; the name ``--batch-size`` is the HF policy's forward batch)."""
    import inspect

    from pope_env.hard_split import run_hard_split

    default = inspect.signature(run_hard_split).parameters["batch_size"].default
    parser.add_argument("--batch-problems", type=int, default=default, metavar="N",
                        help="problems in flight at once, their chunks drawn in one batched call per round "
                             "when the policy has generate_seeded (the char model, HF, vLLM); the output file is "
                             f"the same for every N; not with --strategy anchored (default: {default})")
