"""Export a trained model to TFLite: fp32, fp16 or int8, with the KSAC kernel stored once.

    python convert/to_tflite.py --int8            # converts runs/latest/model.keras

The file is written only after its parity check passes (fp32/fp16 must agree with
the Keras model on the arg-max of >= 99.9% of pixels of real preprocessed
images; int8 reports its agreement), unless --force.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder would come first on sys.path and convert/inspect.py
# would shadow the standard library's `inspect`; put the repository root there instead.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ chatter out of the report

import argparse  # noqa: E402

DEFAULT_MODEL = os.path.join("runs", "latest", "model.keras")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python convert/to_tflite.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f".keras model to export (default {DEFAULT_MODEL})")
    parser.add_argument(
        "--out", help="output .tflite (default: beside the model, model_<precision>[_labels].tflite)"
    )
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="fp16 weights, float32 compute and I/O")
    precision.add_argument(
        "--int8",
        action="store_true",
        help="full-integer int8 (per-channel weights, int8 activations); input and output stay "
        "float32 unless --int8-io",
    )
    parser.add_argument("--int8-io", action="store_true", help="with --int8: int8 input and output tensors too")
    parser.add_argument(
        "--calibration",
        metavar="DATA",
        help="int8 calibration and parity data, e.g. synthetic or voc:PATH (default: the data the model "
        "was trained on, as recorded with it; synthetic if none)",
    )
    parser.add_argument("--calibration-steps", type=int, default=100, metavar="N", help="calibration images (100)")
    parser.add_argument("--parity-images", type=int, default=8, metavar="N", help="images for the parity check (8)")
    parser.add_argument("--input-size", type=int, metavar="N", help="export at N x N instead of the model's size")
    parser.add_argument(
        "--output",
        choices=("logits", "labels"),
        default="logits",
        help="logits: float class scores at the input resolution (default); labels: uint8 arg-max map for apps",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    parser.add_argument(
        "--compare-naive",
        action="store_true",
        help="also convert with plain TFLiteConverter.from_keras_model and report both side by side",
    )
    parser.add_argument("--force", action="store_true", help="write the file even if fp32/fp16 parity fails")
    args = parser.parse_args(argv)
    if args.int8_io and not args.int8:
        parser.error("--int8-io needs --int8")
    for name in ("calibration_steps", "parity_images", "input_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    return args


def default_out(model_path: str, precision: str, output: str) -> str:
    suffix = "_labels" if output == "labels" else ""
    return os.path.join(os.path.dirname(os.path.abspath(model_path)), f"model_{precision}{suffix}.tflite")


def format_report(reports: list[dict]) -> str:
    """A side-by-side text table of export reports."""
    rows = [
        ("exporter", lambda r: r["exporter"]),
        ("precision", lambda r: r["precision"]),
        ("bytes", lambda r: f"{r['bytes']:,}"),
        ("params", lambda r: f"{r['params']:,}"),
        ("weight buffers", lambda r: r["weight_buffers"]),
        ("shared kernel buffers", lambda r: r.get("shared_kernel_buffers", "-")),
        ("negative-scale channels", lambda r: r.get("negative_scale_channels", "-")),
        ("SPACE_TO_BATCH_ND", lambda r: r["ops"].get("SPACE_TO_BATCH_ND", 0)),
        ("CONV_2D", lambda r: r["ops"].get("CONV_2D", 0)),
        ("ops", lambda r: sum(r["ops"].values())),
        ("argmax agreement", lambda r: "-" if r["argmax_agreement"] is None else f"{100 * r['argmax_agreement']:.3f}%"),
        ("max |logit diff|", lambda r: "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.3g}"),
        ("seconds", lambda r: r["seconds"]),
    ]
    lines = []
    for label, get in rows:
        lines.append(f"{label:<24}" + "".join(f"{str(get(r)):>16}" for r in reports))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    precision = "int8" if args.int8 else "fp16" if args.fp16 else "fp32"
    if not os.path.isfile(args.model):
        hint = " (train one first: python training/train.py)" if args.model == DEFAULT_MODEL else ""
        print(f"error: model file not found: {args.model}{hint}", file=sys.stderr)
        return 2

    import tf_keras as keras

    import zoo  # noqa: F401  (registers the zoo's layers for loading)
    from convert.export import ExportError, export_tflite
    from zoo.files import atomic_write_bytes, atomic_write_json

    try:
        model = keras.models.load_model(args.model)
        zoo.describe(model)
    except (OSError, ValueError) as error:
        print(f"error: cannot export {args.model}: {error}", file=sys.stderr)
        return 2
    out = args.out or default_out(args.model, precision, args.output)
    options = dict(
        calibration=args.calibration,
        calibration_steps=args.calibration_steps,
        parity_images=args.parity_images,
        log=lambda message: print(f"  {message}", file=sys.stderr, flush=True),
    )
    try:
        result = export_tflite(
            model, precision, input_size=args.input_size, output=args.output, int8_io=args.int8_io, **options
        )
        reports = [result.report]
        if args.compare_naive:
            reports.append(export_tflite(model, precision, naive=True, **options).report)
    except (ExportError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    print(format_report(reports))
    if not result.parity_ok and not args.force:
        print(
            f"error: {precision} arg-max agreement {100 * result.report['argmax_agreement']:.3f}% is below 99.9%; "
            f"{out} not written (use --force to write it anyway)",
            file=sys.stderr,
        )
        return 1
    atomic_write_bytes(out, result.tflite)
    print(f"wrote {out} ({len(result.tflite):,} bytes)")
    if args.json:
        report = dict(result.report, file=out)
        if args.compare_naive:
            report["naive"] = reports[1]
        atomic_write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
