"""``pope-env list``: the registered envs and the named datasets."""

from __future__ import annotations

import argparse

NAME = "list"
HELP = "list env ids and datasets"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="?", choices=("envs", "datasets", "all"), default="all")


def run(args: argparse.Namespace) -> int:
    from pope_env.datasets import list_datasets
    from pope_env.registration import ENV_SPECS

    if args.what in ("envs", "all"):
        print("Environments (gym.make(ID) after `import pope_env`):")
        width = max(len(s.id) for s in ENV_SPECS)
        for spec in ENV_SPECS:
            print(f"  {spec.id:<{width}}  {spec.description}")
    if args.what in ("datasets", "all"):
        if args.what == "all":
            print()
        print("Datasets (pope_env.datasets.load_dataset(NAME); also file:PATH and hf:NAME):")
        names = list_datasets()
        width = max(len(n) for n in names)
        for name, description in names.items():
            print(f"  {name:<{width}}  {description}")
    return 0
