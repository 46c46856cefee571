"""``pope-env export``: write the POPE training set (hard problems, unguided + guided at i*, 1:1)
for TRL, verl or as JSONL."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "write the POPE training set (hard split x guidance, 1:1) for TRL, verl or as JSONL"
DESCRIPTION = """\
Read a hard-split file (`pope-env hard-split`) and its guidance file (`pope-env prefix-search`)
and write every hard problem twice, unguided and guided at its i* (or the fallback segment,
flagged), with the gold answer and metadata (problem_id, guided, prefix_len, prefix_start,
fallback, i_star). trl: a `datasets` folder (or JSONL if --out ends in .jsonl) with `prompt` and
`answer` columns; verl: parquet in verl's RL dataset schema; jsonl: the rows. Written atomically
with a manifest <out>.pope-export.json; a re-run with the same inputs does nothing.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pope_env.export import FORMATS

    parser.add_argument("--split", required=True, help="hard-split file (from `pope-env hard-split`)")
    parser.add_argument("--guidance", required=True, help="guidance file (from `pope-env prefix-search`)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="output format")
    parser.add_argument("--out", required=True, help="output file or folder")
    parser.add_argument("--dataset", default=None,
                     help="dataset name (e.g. math-train-l5 or file:PATH); default the one the "
                          "files' headers record, and if given it must match them")
    parser.add_argument("--prompt-format", choices=("chat", "text"), default=None,
                     help="prompt layout; default the guidance file's (verl needs chat)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the order of the pairs")
    parser.add_argument("--skip-missing", action="store_true",
                     help="export only the hard problems the guidance file has a record of "
                          "(e.g. while the prefix search is still running)")
    parser.add_argument("--data-source", default=None,
                     help="verl's data_source column (default pope-env/<dataset>)")
    parser.add_argument("--overwrite", action="store_true",
                     help="replace an existing --out that was not written by pope-env export")


def run(args: argparse.Namespace) -> int:
    from pope_env.export import export_pope

    result = export_pope(
        split_file=args.split, guidance_file=args.guidance, out=args.out, format=args.format,
        dataset=args.dataset, prompt_format=args.prompt_format, seed=args.seed,
        skip_missing=args.skip_missing, data_source=args.data_source, overwrite=args.overwrite,
    )
    state = "up to date" if result.up_to_date else "written"
    skipped = f"; {len(result.skipped)} hard problems without guidance skipped" if result.skipped else ""
    print(f"{result.problems} hard problems x (unguided, guided) = {result.rows} rows "
          f"({result.fallback} guided with the fallback segment){skipped} -> {result.out} "
          f"[{result.format}, {state}]")
    return 0
