"""Command line of the zoo.

    python -m zoo list
    python -m zoo summary NAME [NAME ...] [--json [FILE]] [--output-stride N] [--rates 6,12,18]
                                          [--input-size N] [--num-classes N]
"""

from __future__ import annotations

import argparse
import sys

from common.cli import add_json_flag, check_json_path, json_to_stdout, write_json
from zoo.registry import DEFAULT_INPUT_SIZE, OUTPUT_STRIDES, build_model, list_models
from zoo.stats import count_macs, head_params


def parse_rates(text: str) -> tuple[int, ...]:
    """Parses "6,12,18" into (6, 12, 18); argparse reports a bad value with the flag's name."""
    try:
        rates = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"rates must be comma-separated integers, got {text!r}") from None
    if any(r < 1 for r in rates):
        raise argparse.ArgumentTypeError(f"rates must be positive, got {text!r}")
    return rates


def summarize(name: str, args: argparse.Namespace) -> dict:
    model = build_model(
        name,
        num_classes=args.num_classes,
        input_size=args.input_size,
        output_stride=args.output_stride,
        rates=args.rates,
    )
    return {
        "name": name,
        "params": int(model.count_params()),
        "head_params": head_params(model),
        "macs": count_macs(model),
        "input_size": args.input_size,
        "output_stride": args.output_stride,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo", description="KSAC edge model zoo.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the model names, one a line")
    summary = commands.add_parser(
        "summary", help="print parameters, head parameters and multiply-accumulates of models"
    )
    summary.add_argument("names", nargs="+", metavar="NAME", help="model names (see `python -m zoo list`)")
    add_json_flag(summary, "the rows (one JSON list)")
    summary.add_argument("--output-stride", type=int, default=16, choices=OUTPUT_STRIDES)
    summary.add_argument("--rates", type=parse_rates, default=None, help="atrous rates, e.g. 6,12,18")
    summary.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE, help=f"square input side (default {DEFAULT_INPUT_SIZE})")
    summary.add_argument("--num-classes", type=int, default=21, help="classes, background included (21)")
    args = parser.parse_args(argv)

    if args.command == "list":
        print("\n".join(list_models()))
        return 0
    if args.json in list_models():  # `summary --json NAME ...`: argparse took the first name for --json's FILE
        parser.error(f"--json {args.json}: that is a model name; put --json after the names, or write --json -")
    unknown = [n for n in args.names if n not in list_models()]
    if unknown:
        parser.error(f"unknown model {', '.join(unknown)}; valid models: {', '.join(list_models())}")
    try:
        check_json_path(args.json)
        rows = [summarize(name, args) for name in args.names]
    except ValueError as error:  # an option the model cannot take (input size, classes, rates), in build_model's words
        parser.error(str(error))
    if not json_to_stdout(args.json):
        width = max(len("model"), *(len(row["name"]) for row in rows))
        print(f"{'model':<{width}} {'params':>12} {'head params':>12} {'GMACs':>8}  (input {args.input_size}, OS {args.output_stride})")
        for row in rows:
            print(f"{row['name']:<{width}} {row['params']:>12,} {row['head_params']:>12,} {row['macs'] / 1e9:>8.2f}")
    write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
