"""Quantization-aware fine-tuning (tfmot) of a trained model, then the KSAC-aware int8 export.

    python quantize/qat.py                                   # runs/latest/model.keras -> runs/latest/qat/
    python quantize/qat.py --model runs/demo/model.keras --steps 10 --out /tmp/qat

Every layer is fake-quantized as the int8 TFLite graph will run it: tfmot's default
8-bit scheme for Conv/DepthwiseConv/BatchNorm/ReLU/Add/Concatenate (no quantizer
between a conv and its BatchNorm, which the converter folds), and for the KSAC
pyramid ONE per-channel symmetric int8 quantizer on its shared kernel plus a
quantizer on each rate's ReLU output and each partial sum (quantize/ksac_config.py).
After fine-tuning, the float weights are written into the plain zoo model, saved
as OUT/model_qat.keras (description gets qat: true) and exported with the same
exporter as `convert/to_tflite.py --int8` to OUT/model_int8.tflite (shared kernel
stored once, native dilated CONV_2D, metadata), with the activation ranges the QAT
quantizers ended with (calibration only fills in tensors no quantizer covers);
its report is printed and saved as OUT/export_report.json. OUT/checkpoints/, OUT/qat_log.csv and
OUT/qat_config.json make the run resumable with --resume.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    # Run as a script, this folder would come first on sys.path; put the repository root there instead.
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
from typing import Sequence  # noqa: E402

DEFAULT_MODEL = os.path.join("runs", "latest", "model.keras")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python quantize/qat.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"trained .keras model to fine-tune (default {DEFAULT_MODEL})")
    p.add_argument("--data", help="training data spec as in training/train.py, e.g. synthetic or voc:PATH "
                   "(default: the data the model was trained on, as recorded with it; synthetic if none)")
    p.add_argument("--steps", type=int, default=1000, help="fine-tuning steps; the poly schedule decays to 0 at this step (default 1000)")
    p.add_argument("--batch-size", type=int, help="batch size (default: the model's training batch size, else 8)")
    p.add_argument("--lr", type=float, help="initial learning rate of the poly schedule (default: a tenth of the model's training lr, else 0.0007)")
    p.add_argument("--out", help="output folder (default: qat/ beside the model)")
    p.add_argument("--crop-size", type=int, help="side of the square training crop (default: the model's training crop, else its input size)")
    p.add_argument("--seed", type=int, default=0, help="seed of data order, augmentation and dropout (default 0)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--weight-decay", type=float, help="L2 weight decay on kernels (default: the model's, else 4e-5)")
    p.add_argument("--batchnorm", choices=("frozen", "train"), default="frozen",
                   help="frozen (default): BatchNorms use their moving statistics, as the exported graph folds them "
                   "(scale/offset still train); train: batch statistics, as in training/train.py")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint at the same step and data position; "
                   "the flags recorded in OUT/qat_config.json must not change (--steps may grow)")
    p.add_argument("--calibration-steps", type=int, default=100, metavar="N",
                   help="calibration images: they set the QAT quantizers' initial ranges (instead of tfmot's "
                   "[-6, 6]) and, in the int8 export, the ranges of tensors no QAT quantizer covers (default 100)")
    p.add_argument("--log-every", type=int, default=10, help="steps between progress lines / qat_log.csv rows (default 10)")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints; the last step is always saved (default 100)")
    p.add_argument("--no-data-check", action="store_true", help="skip decoding every training sample up front")
    args = p.parse_args(argv)
    for name in ("steps", "batch_size", "crop_size", "calibration_steps", "log_every", "checkpoint_every"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.lr is not None and not args.lr > 0:
        p.error(f"--lr must be positive, got {args.lr}")
    return args


def default_out(model_path: str) -> str:
    """`qat/` beside the model file."""
    return os.path.join(os.path.dirname(os.path.abspath(model_path)), "qat")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (1 with a message on bad input)."""
    args = parse_args(argv)
    from convert.export import ExportError
    from convert.to_tflite import format_report
    from quantize.finetune import QATError, QATSettings, run_qat
    from training.datasets import DatasetError

    settings = QATSettings(
        model=args.model,
        out=args.out or default_out(args.model),
        steps=args.steps,
        data=args.data,
        batch_size=args.batch_size,
        crop_size=args.crop_size,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        seed=args.seed,
        batchnorm=args.batchnorm,
        resume=args.resume,
        calibration_steps=args.calibration_steps,
        log_every=args.log_every,
        checkpoint_every=args.checkpoint_every,
        data_check=not args.no_data_check,
    )
    try:
        report = run_qat(settings, log=lambda message: print(message, flush=True))
    except (QATError, DatasetError, ExportError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(format_report([report]))
    rules = report["int8_rules"]
    print(
        f"int8 rules: {rules['conv_filters']} conv filters, {len(rules['non_int8_conv_filters'])} not int8; "
        f"{rules['quantize_ops']} QUANTIZE/DEQUANTIZE, {rules['inner_quantize_ops']} inside the graph; "
        f"pyramid kernel buffers {rules['pyramid_buffers'] if rules['pyramid_buffers'] is not None else '-'}: "
        f"{'ok' if rules['ok'] else 'VIOLATED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
