"""Training speed of the dilated-convolution forms, with and without oneDNN, on this machine.

    python benchmarks/training_speed.py
    python benchmarks/training_speed.py --crop-size 257 --steps 3 --rounds 1 --json speed.json

Each row runs `training/train.py` in a fresh process (TF_ENABLE_ONEDNN_OPTS is read
once, when TensorFlow loads) with one of:

- onednn/native: oneDNN on, the KSAC pyramid's native dilated Conv2D (what
  `zoo.atrous` picks wherever oneDNN is on);
- onednn/space_to_batch: oneDNN on, the space-to-batch form forced;
- plain/space_to_batch: TensorFlow's own CPU kernels (AVX2-only x86, macOS), where
  the native form has no gradient and `zoo.atrous` picks space-to-batch;
- plain/native: the native form forced without oneDNN; it fails at the first step
  (tensorflow/tensorflow#28264), shown as such.

Rows are run round-robin (`--rounds`), so load from other processes falls on all
of them alike; images/s excludes the first (tracing) step, as train.py reports it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
PATHS = {
    "onednn/native": {"TF_ENABLE_ONEDNN_OPTS": "1", "KSAC_DILATED_CONV": "native"},
    "onednn/space_to_batch": {"TF_ENABLE_ONEDNN_OPTS": "1", "KSAC_DILATED_CONV": "space_to_batch"},
    "plain/space_to_batch": {"TF_ENABLE_ONEDNN_OPTS": "0", "KSAC_DILATED_CONV": "space_to_batch"},
    "plain/native": {"TF_ENABLE_ONEDNN_OPTS": "0", "KSAC_DILATED_CONV": "native"},
}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and each flag's default."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks/training_speed.py", description=__doc__, formatter_class=_HelpFormatter)
    p.add_argument("--model", default="mobilenetv2_ksac", help="zoo model name (backbone_head)")
    p.add_argument("--crop-size", type=int, default=513, help="training crop side")
    p.add_argument("--batch-size", type=int, default=8, help="global batch size")
    p.add_argument("--steps", type=int, default=4, help="steps per run (the first, tracing step is not timed)")
    p.add_argument("--rounds", type=int, default=2, help="round-robin rounds over the paths")
    p.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated subset of {', '.join(PATHS)}")
    p.add_argument("--train-py", default=str(REPO / "training" / "train.py"), help="train.py to run (e.g. an older checkout's, for a before/after comparison)")
    p.add_argument("--json", help="also write the rows as JSON to this file")
    return p.parse_args(argv)


def run_once(args: argparse.Namespace, env_overrides: dict[str, str]) -> tuple[float | None, str]:
    """(images/s, "") for a finished run, or (None, the error line) for a failed one."""
    from zoo.registry import model_spec

    spec = model_spec(args.model)  # --backbone/--head: also what train.py of older checkouts (--train-py) takes
    backbone, head = spec.backbone, spec.head
    with tempfile.TemporaryDirectory(prefix="ksac_speed_") as out:
        command = [
            sys.executable, args.train_py, "--backbone", backbone, "--head", head, "--steps", str(args.steps),
            "--batch-size", str(args.batch_size), "--crop-size", str(args.crop_size), "--out", out,
            "--log-every", str(args.steps), "--checkpoint-every", str(10**9), "--no-data-check",
        ]  # fmt: skip
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **env_overrides)
        done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=str(Path(args.train_py).resolve().parents[1]))
        summary = Path(out) / "summary.json"
        if done.returncode != 0 or not summary.is_file():
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            reason = next((line.strip() for line in lines if "dilation" in line), lines[-1] if lines else f"exit {done.returncode}")
            return None, reason
        return json.loads(summary.read_text())["images_per_s"], ""


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names = [name.strip() for name in args.paths.split(",") if name.strip()]
    unknown = [name for name in names if name not in PATHS]
    if args.model.count("_") != 1:
        print(f"error: --model {args.model!r} is not a zoo name like mobilenetv2_ksac", file=sys.stderr)
        return 2
    if unknown or args.steps < 2 or args.rounds < 1:
        print(f"error: unknown paths {unknown}" if unknown else "error: --steps must be >= 2 and --rounds >= 1", file=sys.stderr)
        return 2
    speeds: dict[str, list[float]] = {name: [] for name in names}
    errors: dict[str, str] = {}
    for round_index in range(args.rounds):
        for name in names:
            if name in errors:
                continue
            speed, error = run_once(args, PATHS[name])
            if speed is None:
                errors[name] = error
            else:
                speeds[name].append(speed)
            shown = f"{speed:.3f} images/s" if speed is not None else f"failed: {error}"
            print(f"round {round_index + 1}/{args.rounds}  {name:<22} {shown}", flush=True)
    rows = [
        {"path": name, "model": args.model, "crop_size": args.crop_size, "batch_size": args.batch_size,
         "images_per_s": statistics.median(speeds[name]) if speeds[name] else None,
         "runs": speeds[name], "error": errors.get(name)}
        for name in names
    ]  # fmt: skip
    print(f"\n{args.model}, crop {args.crop_size}, batch {args.batch_size}, {args.steps - 1} timed steps a run, train.py: {args.train_py}")
    print("| path | images/s (median) | runs |\n|---|---|---|")
    for row in rows:
        speed = f"{row['images_per_s']:.3f}" if row["images_per_s"] is not None else f"fails: {row['error']}"
        print(f"| {row['path']} | {speed} | {', '.join(f'{s:.3f}' for s in row['runs'])} |")
    if args.json:
        from zoo.files import atomic_write_json

        atomic_write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
