"""Export a trained model to TFLite: fp32, fp16 or int8, with the KSAC kernel stored once.

    python convert/to_tflite.py --int8            # converts runs/latest/model.keras

The file is written only after its parity check passes (fp32/fp16 must agree with
the Keras model on the arg-max of >= 99.9% of pixels of real preprocessed
images; int8 reports its agreement), unless --force.
"""

from __future__ import annotations

import os
import sys

import zoo  # noqa: E402,F401  first: imports TensorFlow without its C++ start-up lines (zoo/quiet_startup.py)

import argparse  # noqa: E402

from common.cli import (  # noqa: E402
    USER_ERROR, WORK_FAILED, UserError, add_json_flag, check_json_path, check_output_flag, fail, json_to_stdout,
    stdout_kept_for_json, write_json,
)
from configs import ExportConfig  # noqa: E402

DEFAULT_MODEL = os.path.join("runs", "latest", "model.keras")
# argparse dest -> the config field (the `export` section of an experiment config) the flag sets;
# a flag left out (None) takes its value from --config, else the defaults in configs/experiments.py.
FLAGS = {
    "precision": "export.precision",
    "int8_io": "export.int8_io",
    "output": "export.output",
    "input_size": "export.input_size",
    "calibration": "export.calibration",
    "calibration_steps": "export.calibration_steps",
    "parity_images": "export.parity_images",
    "check_gpu": "export.check_gpu",
    "check_arm": "export.check_arm",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = ExportConfig()
    parser = argparse.ArgumentParser(
        prog="python convert/to_tflite.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f".keras model to export (default {DEFAULT_MODEL})")
    parser.add_argument("--config", metavar="FILE", help="a YAML or JSON config whose `export` section sets the options below "
                        "(e.g. a run's config.yaml, or a recipe by name: paper/mobilenetv2_ksac); flags override it")
    parser.add_argument("--out", help="output .tflite (default: beside the model, model_<precision>[_labels].tflite)")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--fp16", dest="precision", action="store_const", const="fp16", help="fp16 weights, float32 compute and I/O")
    precision.add_argument(
        "--int8",
        dest="precision",
        action="store_const",
        const="int8",
        help="full-integer int8 (per-channel weights, int8 activations); input and output stay "
        "float32 unless --int8-io",
    )
    parser.add_argument("--int8-io", action="store_const", const=True, help="with --int8: int8 input and output tensors too")
    parser.add_argument(
        "--calibration",
        metavar="DATA",
        help="int8 calibration and parity data, e.g. synthetic or voc:PATH (default: the data the model "
        "was trained on, as recorded with it; synthetic if none)",
    )
    parser.add_argument("--calibration-steps", type=int, metavar="N", help=f"calibration images ({defaults.calibration_steps})")
    parser.add_argument("--parity-images", type=int, metavar="N", help=f"images for the parity check ({defaults.parity_images})")
    parser.add_argument("--input-size", type=int, metavar="N", help="export at N x N instead of the model's size")
    parser.add_argument(
        "--output",
        choices=("logits", "labels"),
        help="logits: float class scores at the input resolution (default); labels: uint8 arg-max map for apps",
    )
    add_json_flag(parser, "the report")
    parser.add_argument(
        "--compare-naive",
        action="store_true",
        help="also convert with the plain TFLiteConverter (what from_keras_model gives) and report both side by side",
    )
    parser.add_argument("--force", action="store_true", help="write the file even if fp32/fp16 parity fails")
    parser.add_argument(
        "--check-gpu",
        action="store_const",
        const=True,
        help="also run the file on LiteRT's GPU accelerator (in a child process, fp16 arithmetic as its default) and "
        "report gpu_fully_accelerated, gpu_argmax_agreement (percent of pixels equal to LiteRT CPU's arg-max on the "
        "parity images) and gpu_adapter; with no adapter, gpu_fully_accelerated is null and gpu_reason says why",
    )
    parser.add_argument(
        "--check-arm",
        action="store_const",
        const=True,
        help="also run the file in LiteRT's ARM64 build under qemu-user (`make arm-env`; inference/arm.py) on the "
        "cortex-a53, cortex-a76 and max CPU models, on the parity images, and report arm_argmax_agreement (percent "
        "of pixels equal to x86 LiteRT's arg-max, the minimum over the CPU models), arm_max_abs_diff and arm_cpus",
    )
    args = parser.parse_args(argv)
    for name in ("calibration_steps", "parity_images", "input_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    return args


def resolve_export_config(args: argparse.Namespace) -> ExportConfig:
    """The export options: defaults, then --config's `export` section, then the flags.

    ConfigError (a ValueError) naming a bad value or a clash (`ExportConfig.validate`, run by `resolve`).
    """
    from configs import find_config, flag_overrides, read_file, resolve

    # Any config file will do (a recipe, a run's config.yaml): only its `export` section is used.
    file_layer = read_file(find_config(args.config)) if args.config else {}
    where = f"{args.config}: export" if args.config else "export"
    return resolve(ExportConfig, file_layer.get("export") or {}, flag_overrides(args, FLAGS).get("export", {}), where=where)


def default_out(model_path: str, precision: str, output: str) -> str:
    suffix = "_labels" if output == "labels" else ""
    return os.path.join(os.path.dirname(os.path.abspath(model_path)), f"model_{precision}{suffix}.tflite")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from configs import ConfigError

    try:
        export = resolve_export_config(args)
    except (ConfigError, ValueError) as error:
        return fail(error)
    precision = export.precision
    if not os.path.isfile(args.model):
        hint = " (train one first: python training/train.py)" if args.model == DEFAULT_MODEL else ""
        return fail(f"model file not found: {args.model}{hint}", USER_ERROR)
    out = args.out or default_out(args.model, precision, export.output)

    import zoo
    from convert.export import ExportError, export_tflite
    from convert.export_report import format_report
    from common.files import atomic_write_bytes
    from zoo.saving import load_keras_model

    try:  # here, not after a conversion of minutes
        check_output_flag("--out", out)
        check_json_path(args.json)
    except UserError as error:
        return fail(error)
    if export.check_arm:  # before loading the model, as every other wrong environment
        from inference.arm import ArmEnvironment, ArmEnvironmentMissing

        try:
            ArmEnvironment.find()
        except ArmEnvironmentMissing as error:
            return fail(f"--check-arm: {error}", USER_ERROR)
    try:
        model = load_keras_model(args.model, compile=True)
        zoo.describe(model)
    except (OSError, ValueError) as error:
        return fail(f"cannot export {args.model}: {error}", USER_ERROR)
    options = dict(
        calibration=export.calibration,
        calibration_steps=export.calibration_steps,
        parity_images=export.parity_images,
        log=lambda message: print(f"  {message}", file=sys.stderr, flush=True),
    )
    try:
        result = export_tflite(
            model, precision, input_size=export.input_size, output=export.output, int8_io=export.int8_io,
            check_gpu=export.check_gpu, check_arm=export.check_arm, **options
        )
        reports = [result.report]
        if args.compare_naive:
            reports.append(export_tflite(model, precision, naive=True, **options).report)
    except (ExportError, ValueError, OSError) as error:  # ExportError: the conversion failed (1); others: bad input (2)
        return fail(error)

    with stdout_kept_for_json(args.json) as stdout:
        if not json_to_stdout(args.json):
            print(format_report(reports))
        if not result.report["standard_metadata"]:  # MediaPipe Tasks / the Task Library will refuse the file
            print(f"no standard TFLite metadata: {result.report['standard_metadata_reason']}")
        if result.report.get("gpu_reason"):
            print(f"GPU accelerator: {result.report['gpu_reason']}")
        if not result.parity_ok and not args.force:
            return fail(f"{precision} arg-max agreement {100 * result.report['argmax_agreement']:.3f}% is below 99.9%; "
                        f"{out} not written (use --force to write it anyway)", WORK_FAILED)  # fmt: skip
        atomic_write_bytes(out, result.tflite)
        print(f"wrote {out} ({len(result.tflite):,} bytes)")
        if args.json:
            report = dict(result.report, file=out)
            if args.compare_naive:
                report["naive"] = reports[1]
            write_json(args.json, report, stdout)
            if not json_to_stdout(args.json):
                print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
