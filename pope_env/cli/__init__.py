"""The ``pope-env`` command line.

Each subcommand lives in its own module ``pope_env/cli/cmd_<name>.py`` that defines
``register(subparsers) -> None``; modules are discovered automatically, so adding a command
touches no shared file. Command modules import heavy libraries only inside the function
that runs the command, so ``pope-env --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from pope_env.errors import PopeEnvError


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every discovered subcommand."""
    parser = argparse.ArgumentParser(
        prog="pope-env",
        description="Gymnasium MDPs for LLM reasoning on hard problems (POPE, SRL, SWE).",
    )
    from pope_env import __version__

    parser.add_argument("--version", action="version", version=f"pope-env {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    package = importlib.import_module(__name__)
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            module = importlib.import_module(f"{__name__}.{info.name}")
            module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pope-env`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except PopeEnvError as exc:
        print(f"pope-env {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pope-env {args.command}: interrupted; finished work is saved, re-run to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
