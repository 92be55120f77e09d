"""Accuracy retention of int8: fp32 vs int8 post-training vs int8 QAT, all measured on .tflite files.

    python quantize/compare.py                                  # runs/latest/model.keras, its qat/ folder
    python quantize/compare.py --model runs/demo/model.keras --qat /tmp/qat --json

The model is exported to fp32 and to int8 post-training (the KSAC-aware exporter
of convert/, into a temporary folder unless --keep), the QAT file is taken from
QAT_DIR/model_int8.tflite (written by quantize/qat.py; "not run" if absent), and
each file is evaluated with evaluation/evaluate.py's code on the same split. One
table: file size, mIoU, and the drop from fp32 in mIoU points.

QAT also trains the network for more steps, which can move its float accuracy
either way. When QAT_DIR/model_qat.keras exists, a fourth row ("QAT fp32") is its
fp32 export: the int8 QAT file minus that row is the loss due to int8 alone.
"""

from __future__ import annotations

import os
import sys

import zoo  # noqa: E402,F401  first: imports TensorFlow without its C++ start-up lines (zoo/quiet_startup.py)

import argparse  # noqa: E402
import tempfile  # noqa: E402
from typing import Any, Callable, Sequence  # noqa: E402

from common.cli import add_json_flag  # noqa: E402

DEFAULT_MODEL = os.path.join("runs", "latest", "model.keras")
ROWS = ("fp32", "int8 PTQ", "int8 QAT")
QAT_FLOAT_ROW = "QAT fp32"


def evaluate_file(path: str, data: str | None, split: str, limit: int | None) -> dict[str, Any]:
    """mIoU of one `.tflite` file with evaluation/evaluate.py's `evaluate`."""
    from evaluation.evaluate import evaluate

    return evaluate(path, data, split=split, limit=limit)


def compare(
    model_path: str,
    qat_dir: str | None = None,
    data: str | None = None,
    split: str = "val",
    limit: int | None = None,
    calibration_steps: int = 100,
    keep: str | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> list[dict[str, Any]]:
    """Exports, evaluates and compares; returns one row per version (see ROWS).

    Args:
        model_path: the trained float `.keras` model.
        qat_dir: folder written by quantize/qat.py (default: qat/ beside the model).
        data: evaluation (and int8 calibration) data spec; default the model's own data.
        split: "val" or "train".
        limit: evaluate only the first `limit` images.
        calibration_steps: calibration images of the post-training int8 export.
        keep: write the fp32 and int8 PTQ files to this folder instead of a temporary one.
        log: called with progress messages.

    Returns:
        Rows {"version", "file", "bytes", "miou", "drop", "status"}; `drop` is fp32 mIoU
        minus this version's (points); a QAT row without a file has status "not run".
        A "QAT fp32" row follows when `qat_dir` holds model_qat.keras.
    """
    import zoo
    from convert.export import export_tflite
    from quantize.finetune import load_float_model
    from common.files import atomic_write_bytes

    model = load_float_model(model_path)
    description = zoo.describe(model)
    data = data or description.data or "synthetic"
    qat_dir = qat_dir or os.path.join(os.path.dirname(os.path.abspath(model_path)), "qat")
    folder = keep or tempfile.mkdtemp(prefix="ksac_compare_")
    rows: list[dict[str, Any]] = []
    try:
        files = {}
        for version, precision in (("fp32", "fp32"), ("int8 PTQ", "int8")):
            log(f"exporting {version}")
            result = export_tflite(model, precision, calibration=data, calibration_steps=calibration_steps, check_parity=False)
            files[version] = os.path.join(folder, f"model_{precision}{'_ptq' if precision == 'int8' else ''}.tflite")
            atomic_write_bytes(files[version], result.tflite)
        qat_file = os.path.join(qat_dir, "model_int8.tflite")
        files["int8 QAT"] = qat_file if os.path.isfile(qat_file) else None
        versions = list(ROWS)
        qat_keras = os.path.join(qat_dir, "model_qat.keras")
        if os.path.isfile(qat_keras):
            log(f"exporting {QAT_FLOAT_ROW}")
            result = export_tflite(load_float_model(qat_keras), "fp32", check_parity=False)
            files[QAT_FLOAT_ROW] = os.path.join(folder, "model_qat_fp32.tflite")
            atomic_write_bytes(files[QAT_FLOAT_ROW], result.tflite)
            versions.append(QAT_FLOAT_ROW)
        for version in versions:
            path = files[version]
            if path is None:
                rows.append({"version": version, "file": qat_file, "bytes": None, "miou": None, "drop": None,
                             "status": "not run"})  # fmt: skip
                log(f"{version}: not run ({qat_file} not found; run python quantize/qat.py)")
                continue
            log(f"evaluating {version} on {data} {split}")
            result = evaluate_file(path, data, split, limit)
            rows.append({"version": version, "file": path if keep or version == "int8 QAT" else None,
                         "bytes": os.path.getsize(path), "miou": result["miou"], "drop": None,
                         "images": result["images"], "status": "ok"})  # fmt: skip
    finally:
        if keep is None:
            for name in os.listdir(folder):
                os.unlink(os.path.join(folder, name))
            os.rmdir(folder)
    reference = rows[0]["miou"]
    for row in rows:
        if row["miou"] is not None:
            row["drop"] = reference - row["miou"]
    return rows


def format_table(rows: list[dict[str, Any]], title: str = "") -> str:
    """A text table: version, bytes, mIoU, drop from fp32."""
    lines = [title] if title else []
    lines.append(f"{'version':<10} {'bytes':>12} {'mIoU':>8} {'drop':>8}")
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"{row['version']:<10} {'-':>12} {row['status']:>8} {'-':>8}")
            continue
        lines.append(f"{row['version']:<10} {row['bytes']:>12,} {row['miou']:>8.2f} {row['drop']:>+8.2f}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python quantize/compare.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"trained float .keras model (default {DEFAULT_MODEL})")
    p.add_argument("--data", help="evaluation and calibration data spec, e.g. synthetic or voc:PATH "
                   "(default: the data the model was trained on; synthetic if none)")
    p.add_argument("--qat", metavar="DIR", help="folder written by quantize/qat.py (default: qat/ beside the model)")
    p.add_argument("--split", choices=("val", "train"), default="val", help="split to evaluate (default val)")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N images")
    p.add_argument("--calibration-steps", type=int, default=100, metavar="N",
                   help="calibration images of the post-training int8 export (default 100)")
    p.add_argument("--keep", metavar="DIR", help="keep the fp32 and int8 PTQ files in DIR (default: a temporary folder, removed)")
    add_json_flag(p, "the rows")
    args = p.parse_args(argv)
    for name in ("limit", "calibration_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (common/cli.py: 2 for bad input, 1 for a failed export)."""
    args = parse_args(argv)
    from common.cli import check_json_path, check_output_flag, fail, json_to_stdout, write_json
    from convert.export import ExportError
    from data.datasets import DatasetError

    try:
        check_json_path(args.json)
        check_output_flag("--keep", args.keep, folder=True)
        rows = compare(args.model, args.qat, args.data, args.split, args.limit, args.calibration_steps, args.keep,
                       log=lambda message: print(message, file=sys.stderr, flush=True))  # fmt: skip
    except (ExportError, DatasetError, OSError, ValueError) as error:
        return fail(error)
    if not json_to_stdout(args.json):
        print(format_table(rows, f"{args.model} on {args.data or 'its own data'} ({args.split})"))
    write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
