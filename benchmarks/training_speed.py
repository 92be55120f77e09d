"""Where training time goes on this machine: images/s per model, crop, dilated-conv form, precision
policy, oneDNN on/off and XLA, against what the input pipeline can feed and what the CPU's own dense
convolutions reach.

    python benchmarks/training_speed.py                          # MobileNetV2 KSAC and ASPP, crop 129
    python benchmarks/training_speed.py --models all --crops 129,513 --precisions none,bfloat16 --jit
    python benchmarks/training_speed.py --model mobilenetv2_ksac --crop-size 257 --json speed.json

Each training row runs `training/train.py` in a fresh process (TF_ENABLE_ONEDNN_OPTS is read once,
when TensorFlow loads) with one of the paths:

- onednn/auto, plain/auto: oneDNN on / off, every dilated layer in the form `zoo.atrous` picks there
  (what users get);
- onednn/native, onednn/space_to_batch, plain/space_to_batch, plain/native: a form forced for every
  dilated layer (`KSAC_DILATED_CONV`); plain/native fails (no gradient without oneDNN) and is refused.

and `--mixed-precision` (none, bfloat16, float16) and `--jit-compile` as asked. Rows run round-robin
(`--rounds`), so load from other processes falls on all of them alike; images/s excludes the first
(tracing) step, as train.py reports it.

Also printed: the forms `zoo.atrous` picks per layer kind and dtype with oneDNN on and off; the
input pipeline alone (images/s it produces at each crop, one process, no model); and the machine's
dense-convolution throughput (a plain 3x3 Conv2D forward + both gradients at the shape of the
model's pyramid input, per oneDNN setting), against which each row's training GFLOP/s is shown as a
share. Training FLOPs are counted as 3 x 2 x the forward multiply-accumulates (`zoo.stats.count_macs`)
per image, the backward pass costing about twice the forward: nominal figures, since a rate past the
feature size runs as a 1x1 convolution (`zoo.atrous`), doing less work than counted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence, TextIO

from common.cli import (
    UserError, add_json_flag, check_json_path, check_output_flag, json_to_stdout, stdout_kept_for_json, write_json,
)

REPO = Path(__file__).resolve().parents[1]
PATHS = {
    "onednn/auto": {"TF_ENABLE_ONEDNN_OPTS": "1"},
    "plain/auto": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    "onednn/native": {"TF_ENABLE_ONEDNN_OPTS": "1", "KSAC_DILATED_CONV": "native"},
    "onednn/space_to_batch": {"TF_ENABLE_ONEDNN_OPTS": "1", "KSAC_DILATED_CONV": "space_to_batch"},
    "plain/space_to_batch": {"TF_ENABLE_ONEDNN_OPTS": "0", "KSAC_DILATED_CONV": "space_to_batch"},
    "plain/native": {"TF_ENABLE_ONEDNN_OPTS": "0", "KSAC_DILATED_CONV": "native"},
}
PAPER_MODELS = ("mobilenetv2_ksac", "mobilenetv2_aspp", "xception65_ksac", "xception65_aspp")
MIXED_PRECISIONS = ("none", "bfloat16", "float16")  # as configs.MIXED_PRECISIONS (kept TensorFlow-free here)
ONEDNN = {"onednn": "1", "plain": "0"}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and each flag's default."""


def _names(text: str, valid: Sequence[str], flag: str) -> list[str]:
    names = list(valid) if text == "all" else [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        raise UserError(f"{flag}: unknown {', '.join(unknown) or 'empty list'}; valid: {', '.join(valid)} or all")
    return names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python benchmarks/training_speed.py", description=__doc__, formatter_class=_HelpFormatter)
    p.add_argument("--models", default="mobilenetv2_ksac,mobilenetv2_aspp", help=f"comma-separated zoo models, or all ({', '.join(PAPER_MODELS)})")
    p.add_argument("--model", help="one model (the earlier flag; overrides --models)")
    p.add_argument("--crops", default="129", help="comma-separated training crop sides")
    p.add_argument("--crop-size", type=int, help="one crop side (the earlier flag; overrides --crops)")
    p.add_argument("--batch-size", type=int, default=8, help="global batch size")
    p.add_argument("--steps", type=int, default=4, help="steps per run (the first, tracing step is not timed)")
    p.add_argument("--rounds", type=int, default=2, help="round-robin rounds over the rows")
    p.add_argument("--paths", default="onednn/auto,plain/auto", help=f"comma-separated subset of {', '.join(PATHS)}, or all")
    p.add_argument("--precisions", default="none", help=f"comma-separated mixed-precision policies ({', '.join(MIXED_PRECISIONS)}), or all")
    p.add_argument("--jit", action="store_true", help="also run each row with --jit-compile (XLA)")
    p.add_argument("--no-extras", action="store_true", help="training rows only: skip the forms, the input pipeline and the dense-conv reference")
    p.add_argument("--train-py", default=str(REPO / "training" / "train.py"), help="train.py to run (e.g. an older checkout's, for a before/after comparison)")
    add_json_flag(p, "the training rows (a list)")
    p.add_argument("--details-json", help="also write everything (forms, rows, pipeline, dense conv) as one JSON object to this file")
    args = p.parse_args(argv)
    if args.steps < 2 or args.rounds < 1 or args.batch_size < 1:
        p.error("--steps must be >= 2, --rounds and --batch-size >= 1")
    try:
        args.models = [args.model] if args.model else _names(args.models, PAPER_MODELS, "--models") if args.models != "all" else list(PAPER_MODELS)
        try:
            crops = [args.crop_size] if args.crop_size else [int(c) for c in args.crops.split(",") if c.strip()]
        except ValueError:
            raise UserError(f"--crops must be comma-separated integers, got {args.crops!r}") from None
        if not crops or min(crops) < 33:
            raise UserError("--crops: sides of at least 33")
        args.crops = crops
        args.paths = _names(args.paths, list(PATHS), "--paths")
        args.precisions = _names(args.precisions, MIXED_PRECISIONS, "--precisions")
        check_json_path(args.json)
        check_output_flag("--details-json", args.details_json)
    except UserError as error:
        p.error(str(error))
    return args


def _child(code: str, env_overrides: dict[str, str]) -> Any:
    """Runs `code` (which prints one JSON line last) in a fresh Python with `env_overrides`; returns it."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **env_overrides)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=str(REPO))
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise RuntimeError(lines[-1] if lines else f"exit {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def chosen_forms(onednn: str) -> dict[str, dict[str, str]]:
    """{dtype: {layer kind: form}} that zoo.atrous picks in a process with TF_ENABLE_ONEDNN_OPTS=onednn."""
    code = ("import json, zoo; from zoo.atrous import chosen_forms; "
            "print(json.dumps({d: chosen_forms(d) for d in ('float32', 'bfloat16', 'float16', 'float64')}))")  # fmt: skip
    env = {"TF_ENABLE_ONEDNN_OPTS": onednn}
    return _child(code, env)


def dense_conv_gflops(height: int, width: int, in_channels: int, out_channels: int, batch: int, repeats: int = 5) -> float:
    """GFLOP/s of a plain 3x3 SAME Conv2D, forward and both gradients, at this shape (median of `repeats`)."""
    import tensorflow as tf

    x = tf.random.normal([batch, height, width, in_channels])
    k = tf.Variable(tf.random.normal([3, 3, in_channels, out_channels]) * 0.01)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.conv2d(x, k, strides=1, padding="SAME")
            loss = tf.reduce_sum(y)
        dx, dk = tape.gradient(loss, [x, k])
        return tf.reduce_sum(dx) + tf.reduce_sum(dk)

    step()  # trace
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        step().numpy()
        seconds.append(time.perf_counter() - started)
    flops = 3 * 2 * batch * height * width * in_channels * out_channels * 9
    return flops / statistics.median(seconds) / 1e9


def model_shape(model: str, crop: int) -> dict[str, int]:
    """Forward MACs of `model` at `crop` and the shape of its pyramid's input (the dense-conv reference)."""
    from zoo import build_model
    from zoo.stats import count_macs

    built = build_model(model, input_size=crop)
    head_input = built.get_layer("head_conv1x1").input_shape
    return {"macs": count_macs(built), "height": head_input[1], "width": head_input[2], "in_channels": head_input[3]}


def pipeline_images_per_s(crop: int, batch: int, batches: int = 6) -> float:
    """Images/s the training input pipeline produces at `crop` alone (synthetic data, no model)."""
    from data.datasets import open_dataset
    from training.pipeline import train_batches
    from zoo.registry import INPUT_NORMALIZATION

    dataset = open_dataset("synthetic", "train")
    stream, _ = train_batches(dataset, batch, crop, INPUT_NORMALIZATION, seed=0)
    iterator = iter(stream)
    next(iterator)  # warm-up: builds the pipeline
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch / (time.perf_counter() - started)


def run_once(args: argparse.Namespace, model: str, crop: int, path: str, precision: str, jit: bool) -> tuple[float | None, str]:
    """(images/s, "") for a finished run, or (None, the error line) for a failed one."""
    from zoo.registry import model_spec

    spec = model_spec(model)  # --backbone/--head: also what train.py of older checkouts (--train-py) takes
    with tempfile.TemporaryDirectory(prefix="ksac_speed_") as out:
        command = [
            sys.executable, args.train_py, "--backbone", spec.backbone, "--head", spec.head, "--steps", str(args.steps),
            "--batch-size", str(args.batch_size), "--crop-size", str(crop), "--out", out,
            "--log-every", str(args.steps), "--checkpoint-every", str(10**9), "--no-data-check",
        ]  # fmt: skip
        if precision != "none":
            command += ["--mixed-precision", precision]
        if jit:
            command += ["--jit-compile"]
        env = {key: value for key, value in os.environ.items() if key != "KSAC_DILATED_CONV"}
        env.update(TF_CPP_MIN_LOG_LEVEL="2", **PATHS[path])
        done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=str(Path(args.train_py).resolve().parents[1]))
        summary = Path(out) / "summary.json"
        if done.returncode != 0 or not summary.is_file():
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            reason = next((line.strip() for line in lines if "dilat" in line), lines[-1] if lines else f"exit {done.returncode}")
            return None, reason
        return json.loads(summary.read_text())["images_per_s"], ""


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for bad flags: common/cli.py)."""
    args = parse_args(argv)
    with stdout_kept_for_json(args.json) as stdout:  # `--json` alone: stdout holds the JSON rows only
        return measure_rows(args, stdout)


def measure_rows(args: argparse.Namespace, stdout: TextIO) -> int:
    """The measurements of `main` (its parsed `args`), printed; the rows go where `--json` says (`stdout` for -)."""
    import zoo  # noqa: F401  (TensorFlow without its start-up lines, for the shapes and the pipeline)

    details: dict[str, Any] = {"batch_size": args.batch_size, "steps": args.steps, "rounds": args.rounds}
    settings = sorted({path.split("/")[0] for path in args.paths})
    if not args.no_extras:
        details["forms"] = {setting: chosen_forms(ONEDNN[setting]) for setting in settings}
        print("\nforms zoo.atrous picks per layer kind and dtype (conv2d: regular and KSAC; depthwise):")
        print("| TensorFlow kernels | dtype | conv2d | depthwise |\n|---|---|---|---|")
        for setting, by_dtype in details["forms"].items():
            for dtype, forms in by_dtype.items():
                print(f"| {setting} | {dtype} | {forms['conv2d']} | {forms['depthwise']} |")
    shapes = {(model, crop): model_shape(model, crop) for model in args.models for crop in args.crops}
    if not args.no_extras:
        details["pipeline"] = {crop: round(pipeline_images_per_s(crop, args.batch_size), 1) for crop in args.crops}
        print("\ninput pipeline alone (synthetic data, augmentation, batching; no model):")
        print("| crop | images/s |\n|---|---|")
        for crop, speed in details["pipeline"].items():
            print(f"| {crop} | {speed} |")
        details["dense"] = {}
        print("\ndense 3x3 Conv2D forward + both gradients at each model's pyramid input (the CPU's reference):")
        print("| TensorFlow kernels | model | crop | shape (batch, h, w, in -> 256) | GFLOP/s |\n|---|---|---|---|---|")
        for setting, ((model, crop), shape) in itertools.product(settings, shapes.items()):
            code = (f"import json, zoo; from benchmarks.training_speed import dense_conv_gflops; "
                    f"print(json.dumps(dense_conv_gflops({shape['height']}, {shape['width']}, {shape['in_channels']}, 256, {args.batch_size})))")  # fmt: skip
            gflops = _child(code, {"TF_ENABLE_ONEDNN_OPTS": ONEDNN[setting]})
            details["dense"][f"{setting}/{model}/{crop}"] = round(gflops, 2)
            print(f"| {setting} | {model} | {crop} | {args.batch_size}x{shape['height']}x{shape['width']}x{shape['in_channels']} | {gflops:.1f} |")

    combos = [(model, crop, path, precision, jit) for model in args.models for crop in args.crops for path in args.paths
              for precision in args.precisions for jit in ((False, True) if args.jit else (False,))]  # fmt: skip
    speeds: dict[tuple, list[float]] = {combo: [] for combo in combos}
    errors: dict[tuple, str] = {}
    print()
    for round_index in range(args.rounds):
        for combo in combos:
            if combo in errors:
                continue
            speed, error = run_once(args, *combo)
            if speed is None:
                errors[combo] = error
            else:
                speeds[combo].append(speed)
            shown = f"{speed:.3f} images/s" if speed is not None else f"failed: {error}"
            model, crop, path, precision, jit = combo
            print(f"round {round_index + 1}/{args.rounds}  {model} crop {crop} {path} {precision}{' jit' if jit else ''}: {shown}", flush=True)

    rows = []
    for combo in combos:
        model, crop, path, precision, jit = combo
        speed = statistics.median(speeds[combo]) if speeds[combo] else None
        gflops = speed * 3 * 2 * shapes[(model, crop)]["macs"] / 1e9 if speed else None
        dense = details.get("dense", {}).get(f"{path.split('/')[0]}/{model}/{crop}")
        rows.append({
            "path": path, "model": model, "crop_size": crop, "batch_size": args.batch_size, "mixed_precision": precision,
            "jit_compile": jit, "images_per_s": speed, "runs": speeds[combo], "error": errors.get(combo),
            "training_gflops": round(gflops, 2) if gflops else None,
            "dense_conv_share": round(gflops / dense, 3) if gflops and dense else None,
        })  # fmt: skip
    details["rows"] = rows
    if not json_to_stdout(args.json):
        print(f"\nbatch {args.batch_size}, {args.steps - 1} timed steps a run, {args.rounds} round(s) round-robin, train.py: {args.train_py}")
        print("| model | crop | path | precision | XLA | images/s (median) | runs | training GFLOP/s | share of dense conv |")
        print("|---|---|---|---|---|---|---|---|---|")
        for row in rows:
            speed = f"{row['images_per_s']:.3f}" if row["images_per_s"] is not None else f"fails: {row['error']}"
            share = f"{row['dense_conv_share']:.0%}" if row["dense_conv_share"] is not None else "-"
            print(f"| {row['model']} | {row['crop_size']} | {row['path']} | {row['mixed_precision']} | {'on' if row['jit_compile'] else 'off'} "
                  f"| {speed} | {', '.join(f'{s:.3f}' for s in row['runs'])} | {row['training_gflops'] or '-'} | {share} |")  # fmt: skip
    from common.files import atomic_write_json

    write_json(args.json, rows, stdout)
    if args.details_json:
        atomic_write_json(args.details_json, details)
    return 0


if __name__ == "__main__":
    sys.exit(main())
