"""``pope-env swe build-images | reap`` and ``pope-env swe-eval``: SWE-bench agentic evaluation.

``swe-eval`` runs an agent on SWE-bench-format instances, one sandboxed episode per
instance (``--workers`` at once), and writes into ``--output``:

* ``predictions.jsonl``: ``{"instance_id", "model_name_or_path", "model_patch"}`` per
  instance, SWE-bench's predictions format (the official harness takes it unchanged);
* ``results.jsonl``: the durable log, one record per finished instance (a re-run skips
  those, so a killed run resumes where it stopped);
* ``trajectories/<id>.traj.json`` (every action and observation, the chat) and
  ``logs/<id>/test_output.txt`` (the grading test run);
* ``report.json``: resolved rate and per-instance status.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    swe = subparsers.add_parser("swe", help="SWE task tooling: build images offline, reap orphan sandboxes")
    swe_sub = swe.add_subparsers(dest="swe_command", metavar="SWE_COMMAND")
    build = swe_sub.add_parser("build-images", help="build (or reuse) the base and per-repository images")
    build.add_argument("--instances", default="local", help="instance source (default: the local set)")
    build.add_argument("--base-only", action="store_true", help="build only the Debian base image")
    build.add_argument("--mirror", default=None, help="Debian mirror (default: the one apt uses)")
    build.set_defaults(func=run_build_images)
    reap = swe_sub.add_parser("reap", help="remove sandboxes whose owner process is gone")
    reap.add_argument("--dry-run", action="store_true", help="only list them")
    reap.set_defaults(func=run_reap)
    swe.set_defaults(func=lambda args: (swe.print_help(), 2)[1])

    ev = subparsers.add_parser("swe-eval", help="run an agent on SWE-bench-format instances and grade it",
                               description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("--agent", required=True,
                    help="oracle | hf:MODEL | vllm:MODEL | openai:MODEL@BASE_URL | MODULE:FACTORY "
                         "(returns a Policy or an Agent); LLM policies run in the SWEAgent loop")
    ev.add_argument("--instances", default="local",
                    help="local | FILE.json[l]/.parquet | HF dataset name (default: local)")
    ev.add_argument("--ids", default=None, help="comma-separated instance ids to run (default: all)")
    ev.add_argument("--workers", type=int, default=1, help="episodes run at once (default 1)")
    ev.add_argument("--output", default=None, help="output folder (default runs/swe-eval/<agent>)")
    ev.add_argument("--model-name", default=None, help="model_name_or_path in predictions (default: agent name)")
    ev.add_argument("--trajectories", default=None,
                    help="JSON file {instance_id: [commands]} for the oracle (default: stored expert trajectories)")
    ev.add_argument("--max-steps", type=int, default=30, help="agent commands per instance (default 30)")
    ev.add_argument("--command-timeout", type=float, default=60.0, help="seconds per command (default 60)")
    ev.add_argument("--backend", default="auto", choices=("auto", "docker", "bwrap"), help="sandbox backend")
    ev.add_argument("--temperature", type=float, default=0.0, help="sampling temperature of LLM agents")
    ev.add_argument("--max-new-tokens", type=int, default=1024, help="tokens per LLM reply")
    ev.set_defaults(func=run_eval)


def run_build_images(args) -> int:
    from tqdm import tqdm

    from pope_env.swe.images import ensure_base_image

    with tqdm(total=None, desc="images", unit="step", file=sys.stderr) as bar:
        def progress(msg: str) -> None:
            bar.set_postfix_str(msg[:70])
            bar.update(1)

        base = ensure_base_image(mirror=args.mirror, progress=progress)
        tags = {"base": base}
        if not args.base_only:
            from pope_env.swe.instances import load_instances
            from pope_env.swe.runtime import ensure_instance_images

            local = [i for i in load_instances(args.instances) if getattr(i, "local", None) is not None]
            tags.update(ensure_instance_images(local, progress=progress))
    for name, tag in tags.items():
        print(f"{name}\t{tag}")
    return 0


def run_reap(args) -> int:
    from pope_env.sandbox.reaper import reap_orphans

    reaped = reap_orphans(dry_run=args.dry_run)
    for r in reaped:
        print(f"{'would remove' if args.dry_run else 'removed'} {r.kind} {r.name}")
    print(f"{len(reaped)} orphan(s) {'would be removed' if args.dry_run else 'removed'}")
    return 0


def run_eval(args) -> int:
    from pope_env.agents.swe_eval import EvalConfig, evaluate

    config = EvalConfig(
        agent=args.agent, instances=args.instances,
        ids=[s for s in args.ids.split(",") if s] if args.ids else None,
        workers=args.workers, output=Path(args.output) if args.output else None,
        model_name=args.model_name, trajectories=Path(args.trajectories) if args.trajectories else None,
        max_steps=args.max_steps, command_timeout_s=args.command_timeout, backend=args.backend,
        temperature=args.temperature, max_new_tokens=args.max_new_tokens,
    )
    report = evaluate(config)
    print(f"resolved {report['resolved']}/{report['total']} ({report['resolved_rate']:.1%}); "
          f"output in {report['output']}")
    return 0
