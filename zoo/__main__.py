"""Command line of the zoo.

    python -m zoo list
    python -m zoo summary NAME [NAME ...] [--json [FILE]] [--output-stride N] [--rates 6,12,18]
                                          [--input-size N] [--num-classes N]
    python -m zoo releases
    python -m zoo release RELEASE --weights CKPT --out FILE.keras [--input-size N]
"""

from __future__ import annotations

import argparse
import sys

from common.cli import UserError, add_json_flag, check_json_path, check_output_flag, fail, json_to_stdout, write_json
from zoo.registry import DEFAULT_INPUT_SIZE, OUTPUT_STRIDES, build_model, describe, list_models
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
        "output_stride": describe(model).output_stride,
    }


def build_release(name: str, weights: str, input_size: int | None = None):
    """DeepLab's release `name` (zoo.releases) built with its settings and its checkpoint `weights` loaded whole.

    Raises UserError when the file leaves any of the model's weights at initialisation (another release or
    model) and the import's own errors (a missing file, a backbone tensor of another shape) as they are.
    """
    from zoo.releases import release
    from zoo.tf1_checkpoint import load_tf1_checkpoint

    spec = release(name)
    model = build_model(spec.model, num_classes=len(spec.label_names), input_size=input_size or spec.input_size,
                        width=spec.width, decoder=spec.decoder, label_names=list(spec.label_names))  # fmt: skip
    report = load_tf1_checkpoint(model, weights)
    if report.left_at_init or report.skipped:
        left = report.left_at_init[:5] + report.skipped[:3]
        raise UserError(f"{weights} is not DeepLab's {name}: {len(report.left_at_init)} weights of the model "
                        f"would stay at initialisation (e.g. {', '.join(left)})")  # fmt: skip
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo", description="KSAC edge model zoo.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the model names, one a line")
    summary = commands.add_parser(
        "summary", help="print parameters, head parameters and multiply-accumulates of models"
    )
    summary.add_argument("names", nargs="+", metavar="NAME", help="model names (see `python -m zoo list`)")
    add_json_flag(summary, "the rows (one JSON list)")
    summary.add_argument("--output-stride", type=int, default=None, choices=OUTPUT_STRIDES,
                         help="default: each model's own (16; MobileNetV3's 32)")
    summary.add_argument("--rates", type=parse_rates, default=None, help="atrous rates, e.g. 6,12,18")
    summary.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE, help=f"square input side (default {DEFAULT_INPUT_SIZE})")
    summary.add_argument("--num-classes", type=int, default=21, help="classes, background included (21)")
    commands.add_parser("releases", help="print DeepLab's mobile releases that `release` builds, with their settings")
    one = commands.add_parser(
        "release", help="build one of DeepLab's released models from its checkpoint and save it as .keras",
        description="Builds DeepLab's release RELEASE (`python -m zoo releases` lists them) with the settings it was "
                    "trained with, loads its TF1 checkpoint whole (every weight from the file, its label names) and "
                    "saves the model: convert/to_tflite.py --model FILE.keras then exports it. Nothing is downloaded.")  # fmt: skip
    one.add_argument("release", metavar="RELEASE", help="e.g. mobilenetv2_coco_voc_trainaug")
    one.add_argument("--weights", required=True, metavar="CKPT",
                     help="the release's checkpoint: the model.ckpt prefix (or its .index, or its folder) of the unpacked tarball")  # fmt: skip
    one.add_argument("--out", required=True, metavar="FILE.keras", help="where to save the model")
    one.add_argument("--input-size", type=int, help="input side of the saved model (default: the release's, see `releases`)")
    args = parser.parse_args(argv)

    if args.command == "list":
        print("\n".join(list_models()))
        return 0
    if args.command == "releases":
        from zoo.releases import RELEASES

        for name, spec in RELEASES.items():
            print(f"{name}: {spec.model} width {spec.width}, {len(spec.label_names)} classes ({spec.dataset}), "
                  f"decoder {'yes' if spec.decoder else 'no'}, input {spec.input_size}; DeepLab: {spec.published}")  # fmt: skip
        return 0
    if args.command == "release":
        from zoo.saving import atomic_save_keras

        try:
            check_output_flag("--out", args.out)
            model = build_release(args.release, args.weights, args.input_size)
        except (ValueError, OSError) as error:  # an unknown release, a missing or other checkpoint, a bad size
            return fail(error)
        atomic_save_keras(model, args.out)
        print(f"saved {args.out}: DeepLab's {args.release} as {model.name} ({model.count_params():,} parameters)")
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
        print(f"{'model':<{width}} {'params':>12} {'head params':>12} {'GMACs':>8} {'OS':>3}  (input {args.input_size})")
        for row in rows:
            print(f"{row['name']:<{width}} {row['params']:>12,} {row['head_params']:>12,} {row['macs'] / 1e9:>8.2f} "
                  f"{row['output_stride']:>3}")
    write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
