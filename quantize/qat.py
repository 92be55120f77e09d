"""Quantization-aware fine-tuning (tfmot) of a trained model, then the KSAC-aware int8 export.

    python quantize/qat.py                                   # runs/latest/model.keras -> runs/latest/qat/
    python quantize/qat.py --model runs/demo/model.keras --steps 10 --out /tmp/qat

Every layer is fake-quantized as the int8 TFLite graph will run it: tfmot's default
8-bit scheme for Conv/DepthwiseConv/BatchNorm/ReLU/Add/Concatenate (no quantizer
between a conv and its BatchNorm, which the converter folds), and for the KSAC
pyramid ONE per-channel symmetric int8 quantizer on its shared kernel plus a
quantizer on each rate's ReLU output and each partial sum (quantize/quantize_configs.py).
After fine-tuning, the float weights are written into the plain zoo model, saved
as OUT/model_qat.keras (description gets qat: true) and exported with the same
exporter as `convert/to_tflite.py --int8` to OUT/model_int8.tflite (shared kernel
stored once, native dilated CONV_2D, metadata), with the activation ranges the QAT
quantizers ended with (calibration only fills in tensors no quantizer covers);
its report is printed and saved as OUT/export_report.json. OUT/checkpoints/, OUT/qat_log.csv,
OUT/tensorboard/ and OUT/config.yaml (the resolved config) make the run resumable with --resume.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import zoo  # noqa: E402,F401  first: imports TensorFlow without its C++ start-up lines (zoo/quiet_startup.py)

from common.cli import exit_process  # noqa: E402
from configs import QATExperimentConfig, add_loop_flags, document_defaults  # noqa: E402  (after the environment variable above)

# argparse dest -> the config field (configs.QATExperimentConfig) the flag sets; a flag
# left out (None) takes its value from --config, else from the trained model, else the defaults.
FLAGS = {
    "model": "qat.model",
    "batchnorm": "qat.batchnorm",
    "calibration_steps": "qat.calibration_steps",
    "data": "data.train",
    "batch_size": "data.batch_size",
    "crop_size": "data.crop_size",
    "data_check": "data.check",
    "lr": "optimizer.lr",
    "momentum": "optimizer.momentum",
    "weight_decay": "optimizer.weight_decay",
    "steps": "schedule.steps",
    "seed": "training.seed",
    "out": "training.out",
    "log_every": "training.log_every",
    "checkpoint_every": "training.checkpoint_every",
    "strategy": "training.strategy",
    "cpu_replicas": "training.cpu_replicas",
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python quantize/qat.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", metavar="FILE", help="a YAML or JSON config (sections qat, data, optimizer, schedule, training) or the name of a recipe (e.g. paper/mobilenetv2_ksac); flags override it")
    p.add_argument("--model", help="trained .keras model to fine-tune")
    p.add_argument("--data", help="training data spec as in training/train.py, e.g. synthetic or voc:PATH "
                   "(none: the data the model was trained on, as recorded with it)")
    p.add_argument("--steps", type=int, help="fine-tuning steps; the poly schedule decays to 0 at this step")
    p.add_argument("--batch-size", type=int, help="batch size (none: the model's training batch size)")
    p.add_argument("--lr", type=float, help="initial learning rate of the poly schedule (none: qat.lr_scale, a tenth, of the model's training lr)")
    p.add_argument("--out", help="output folder (none: qat/ beside the model)")
    p.add_argument("--crop-size", type=int, help="side of the square training crop (none: the model's training crop, else its input size)")
    p.add_argument("--seed", type=int, help="seed of data order, augmentation and dropout")
    p.add_argument("--momentum", type=float, help="SGD momentum")
    p.add_argument("--weight-decay", type=float, help="L2 weight decay on kernels (none: the model's)")
    p.add_argument("--batchnorm", choices=("frozen", "train"),
                   help="frozen: BatchNorms use their moving statistics, as the exported graph folds them "
                   "(scale/offset still train); train: batch statistics, as in training/train.py")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (none: qat/ beside --model) from its newest checkpoint at the same step and data position; "
                   "its settings come from OUT/config.yaml, as for training/train.py --resume: give only what changes (e.g. a larger --steps); "
                   "a model/data/optimiser flag that differs from the run's is refused")
    p.add_argument("--calibration-steps", type=int, metavar="N",
                   help="calibration images: they set the QAT quantizers' initial ranges (instead of tfmot's "
                   "[-6, 6]) and, in the int8 export, the ranges of tensors no QAT quantizer covers")
    add_loop_flags(p, "qat_log.csv")
    document_defaults(p, FLAGS, QATExperimentConfig())
    args = p.parse_args(argv)
    for name in ("steps", "batch_size", "crop_size", "calibration_steps", "log_every", "checkpoint_every"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.lr is not None and not args.lr > 0:
        p.error(f"--lr must be positive, got {args.lr}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (common/cli.py: 2 for bad input, 1 for a diverged
    fine-tuning or a failed export)."""
    args = parse_args(argv)
    from common.cli import fail
    from convert.export import ExportError
    from convert.export_report import format_report
    from quantize.finetune import QATError, resolve_qat_config, run_qat
    from configs import ConfigError, find_config, flag_overrides, read_file
    from data.datasets import DatasetError
    from training.trainer import NonFiniteLoss

    try:
        file_layer = read_file(find_config(args.config), QATExperimentConfig) if args.config else {}
        config, model = resolve_qat_config(file_layer, flag_overrides(args, FLAGS), resume=args.resume, flags=FLAGS)
        report = run_qat(config, model, resume=args.resume, log=lambda message: print(message, flush=True))
    except (ConfigError, QATError, DatasetError, ExportError, NonFiniteLoss, OSError) as error:
        return fail(error)
    if "int8_rules" not in report:  # qat.export false: stopped after model_qat.keras
        return 0
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
    exit_process(main)
