"""``pope-env eval``: pass@1 / pass@k of a model or agent on a math env, per problem, resumable.

Example::

    pope-env eval --env POPE-Math-Eval-v0 --model smollm2 --n 8 --limit 50

Writes one JSONL line per problem (``--out``, default ``runs/eval/<env>.jsonl``) as each
problem finishes, so an interrupted run resumes where it stopped; a run with different
settings refuses to append to the same file. A summary JSON is written next to it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

NAME = "eval"
HELP = "evaluate a model or agent on a math env (pass@1, pass@k)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="POPE-Math-Eval-v0", help="env id (default: %(default)s)")
    parser.add_argument("--dataset", help="override the env's dataset (e.g. math500, file:PATH)")
    parser.add_argument("--model", default="smollm2", help="model name, local dir or hub id (default: %(default)s)")
    parser.add_argument("--backend", default="hf", choices=("hf", "vllm", "openai"), help="policy backend")
    parser.add_argument("--base-url", help="server URL for --backend openai")
    parser.add_argument("--agent", choices=("policy", "oracle"), default="policy",
                   help="'oracle' answers with the gold solution (a pipeline sanity check)")
    parser.add_argument("--n", type=int, default=8, help="samples per problem (default: %(default)s)")
    parser.add_argument("--k", default="1,8", help="comma-separated k values for pass@k (each <= n)")
    parser.add_argument("--limit", type=int, help="evaluate only the first LIMIT problems")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4, help="problems per generate call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="results JSONL (default: runs/eval/<env>.jsonl)")


def _parse_ks(text: str, n: int) -> list[int]:
    from pope_env.errors import ConfigError

    try:
        ks = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError as exc:
        raise ConfigError(f"--k must be comma-separated integers, got {text!r}") from exc
    if not ks or ks[0] < 1 or ks[-1] > n:
        raise ConfigError(f"every k must satisfy 1 <= k <= n={n}; got --k {text!r}")
    return ks


def run(args: argparse.Namespace) -> int:
    import gymnasium as gym
    from tqdm import tqdm

    import pope_env  # noqa: F401  (registers the env ids)
    from pope_env.errors import ConfigError, UnknownNameError
    from pope_env.io import JsonlAppender, atomic_write_json, read_jsonl
    from pope_env.metrics import pass_at_k

    if args.n < 1:
        raise ConfigError(f"--n must be >= 1, got {args.n}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    ks = _parse_ks(args.k, args.n)
    if args.env not in gym.registry:
        raise UnknownNameError("env id", args.env, list(pope_env.env_ids()))
    env_kwargs: dict[str, Any] = {"mode": "unguided"}
    if args.dataset:
        env_kwargs["dataset"] = args.dataset
    if args.limit is not None:
        env_kwargs["limit"] = args.limit
    env = gym.make(args.env, **env_kwargs)
    math_env = env.unwrapped
    problems = list(math_env.problems)

    agent_name = "oracle" if args.agent == "oracle" else f"{args.backend}:{args.model}"
    meta = {
        "env": args.env, "dataset": args.dataset or getattr(math_env, "dataset", None),
        "agent": agent_name, "n": args.n, "temperature": args.temperature, "top_p": args.top_p,
        "max_new_tokens": args.max_new_tokens, "seed": args.seed,
    }
    out = args.out or Path("runs/eval") / f"{args.env}.jsonl"
    done: dict[str, dict[str, Any]] = {}
    if out.exists():
        for rec in read_jsonl(out, strict=False):
            if "_meta" in rec:
                diff = {k: (rec["_meta"].get(k), v) for k, v in meta.items() if rec["_meta"].get(k) != v}
                if diff:
                    raise ConfigError(
                        f"{out} holds results of a run with other settings {diff} "
                        "(old, new); pass another --out or delete the file"
                    )
            elif "problem_id" in rec:
                done[rec["problem_id"]] = rec
    todo = [p for p in problems if p.id not in done]

    generate = _make_generator(args, math_env)
    verifier = math_env.verifier
    with JsonlAppender(out) as log:
        if not done and (not out.exists() or out.stat().st_size == 0):
            log.append({"_meta": meta})
        bar = tqdm(total=len(problems), initial=len(problems) - len(todo), desc=f"eval {args.env}",
                   unit="problem", dynamic_ncols=True)
        for start in range(0, len(todo), args.batch_size):
            batch = todo[start : start + args.batch_size]
            infos = [env.reset(options={"problem_id": p.id})[1] for p in batch]
            groups = generate(batch, infos)
            for problem, completions in zip(batch, groups):
                scores = verifier.score_batch(completions, [problem.answer] * len(completions))
                c = sum(s.correct for s in scores)
                rec = {
                    "problem_id": problem.id,
                    "level": problem.level,
                    "n": len(completions),
                    "correct": c,
                    **{f"pass@{k}": pass_at_k(len(completions), c, k) for k in ks},
                    "format_ok": sum(s.format_ok for s in scores),
                    "timed_out": sum(s.timed_out for s in scores),
                    "extracted": [s.extracted for s in scores],
                    "mean_chars": sum(len(t) for t in completions) / max(1, len(completions)),
                    "completions": completions,
                }
                log.append(rec)
                done[problem.id] = rec
                bar.update(1)
        bar.close()
    env.close()

    records = [done[p.id] for p in problems if p.id in done]
    summary = {
        **meta,
        "problems": len(records),
        **{f"pass@{k}": sum(r[f"pass@{k}"] for r in records) / max(1, len(records)) for k in ks},
        "format_ok_rate": sum(r["format_ok"] for r in records) / max(1, sum(r["n"] for r in records)),
        "results": str(out),
    }
    atomic_write_json(out.with_suffix(".summary.json"), summary)
    print(json.dumps({k: summary[k] for k in ["env", "agent", "problems"] + [f"pass@{k}" for k in ks]}))
    for k in ks:
        print(f"pass@{k}: {summary[f'pass@{k}']:.4f}  ({len(records)} problems, n={args.n})")
    print(f"per-problem results: {out}")
    return 0


def _make_generator(args: argparse.Namespace, math_env: Any):
    """A function (problems, infos) -> list of n completion texts per problem."""
    if args.agent == "oracle":
        from pope_env.agents.simple import OracleAgent

        oracle = OracleAgent(math_env.problems)

        def oracle_generate(batch, infos):
            return [[oracle.act("", info) for _ in range(args.n)] for info in infos]

        return oracle_generate

    from pope_env.agents.factory import make_policy
    from pope_env.agents.policy import SamplingParams

    policy = make_policy(args.model, backend=args.backend, base_url=args.base_url)
    sampling = SamplingParams(
        temperature=args.temperature, top_p=args.top_p,
        max_new_tokens=args.max_new_tokens, seed=args.seed,
    )

    def policy_generate(batch, infos):
        groups = policy.generate([info["messages"] for info in infos], n=args.n, sampling=sampling)
        return [[g.text for g in group] for group in groups]

    return policy_generate
