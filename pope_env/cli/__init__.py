"""The ``pope-env`` command line.

Each subcommand lives in its own module ``pope_env/cli/cmd_<name>.py``, discovered
automatically, so adding a command touches no shared file. A module defines:

* ``NAME`` (the subcommand) and ``HELP`` (its one line in ``pope-env --help``);
* ``DESCRIPTION`` (optional): the ``-h`` text, re-wrapped by argparse unless
  ``RAW_DESCRIPTION`` is true; without it the module docstring is shown as written;
* ``add_arguments(parser)`` and ``run(args) -> int`` (the exit status).

A module that mounts several commands (``cmd_swe.py``) defines ``register(subparsers)``
instead. Command modules import heavy libraries only inside the function that runs the
command, so ``pope-env --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

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
            mount_command(sub, importlib.import_module(f"{__name__}.{info.name}"))
    return parser


def mount_command(subparsers: argparse._SubParsersAction, module: ModuleType) -> None:
    """Add the command that ``module`` defines (see the module docstring) to ``subparsers``."""
    if hasattr(module, "register"):
        module.register(subparsers)
        return
    description = getattr(module, "DESCRIPTION", None)
    raw = getattr(module, "RAW_DESCRIPTION", description is None)
    parser = subparsers.add_parser(
        module.NAME,
        help=module.HELP,
        description=module.__doc__ if description is None else description,
        formatter_class=argparse.RawDescriptionHelpFormatter if raw else argparse.HelpFormatter,
    )
    module.add_arguments(parser)
    parser.set_defaults(func=module.run)


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
