"""``pope-env swe-validate``: prove SWE instances (bug caught by FAIL_TO_PASS, gold patch fixes it).

    pope-env swe-validate                       # the local set, Docker if available
    pope-env swe-validate --sandbox bwrap --trajectories --out runs/validate.jsonl

``add_arguments`` and ``run`` are public so a ``pope-env swe`` command group can mount the
same command as ``swe validate``.
"""

from __future__ import annotations

import argparse
import sys

NAME = "swe-validate"
HELP = "prove SWE instances: FAIL_TO_PASS fail with the bug, pass with the gold patch"
DESCRIPTION = """\
For each instance, in fresh sandboxes: FAIL_TO_PASS must fail at base_commit + test_patch, and
FAIL_TO_PASS and PASS_TO_PASS must pass once the gold patch is applied. Exit status 1 if any
instance fails.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options."""
    parser.add_argument("--instances", default="local",
                        help="'local' (built-in set), a .json/.jsonl/.parquet file, a "
                             "save_to_disk folder or a hub dataset name (default: local)")
    parser.add_argument("--ids", nargs="+", metavar="ID", help="only these instance ids")
    parser.add_argument("--sandbox", choices=["auto", "docker", "bwrap"], default="auto",
                        help="sandbox backend (default: Docker when an engine answers, else "
                             "bubblewrap); Docker images are built or reused first")
    parser.add_argument("--trajectories", action="store_true",
                        help="also replay each expert trajectory: its diff must equal the gold "
                             "patch and resolve the instance")
    parser.add_argument("--out", default=None,
                        help="JSONL file of per-instance verdicts; finished instances in it "
                             "are skipped (resume)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds allowed for one test run (default: 600)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")



def run(args: argparse.Namespace) -> int:
    from pope_env.errors import ConfigError
    from pope_env.swe.instances import load_instances
    from pope_env.swe.validate import validate_instances

    if args.timeout <= 0:
        raise ConfigError(f"--timeout must be positive, got {args.timeout}")
    instances = load_instances(args.instances, ids=args.ids)
    results = validate_instances(instances, backend=args.sandbox, out=args.out, timeout=args.timeout,
                                 check_trajectories=args.trajectories, progress=not args.no_progress)
    width = max((len(r.instance_id) for r in results), default=10)
    for r in results:
        status = "ok" if r.ok else "FAILED"
        print(f"{r.instance_id:<{width}}  {status:<6}  {r.duration_s:7.1f}s"
              + ("" if r.ok else "  " + "; ".join(r.problems)))
    failed = sum(not r.ok for r in results)
    print(f"{len(results) - failed}/{len(results)} instances valid", file=sys.stderr)
    return 1 if failed else 0
