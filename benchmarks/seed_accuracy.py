"""Accuracy of several models under the same training budget, over seeds: mean and spread of val mIoU.

    python benchmarks/seed_accuracy.py --models mobilenetv2_ksac,mobilenetv2_ksac_separable --seeds 0,1,2

Each (model, seed) trains with training/train.py in a child process, every model with the same flags
(the demo's recipe by default: the built-in synthetic data, crop 129, batch 8, Adam 1e-3, BatchNorm
momentum 0.9, `--steps` steps), then its `.keras` model is evaluated on the first `--eval-images`
val images (evaluation/evaluate.py). The synthetic task says whether a model learns, and how the
models compare on it; it says nothing of what VOC would give.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = ["--data", "synthetic:colours", "--batch-size", "8", "--crop-size", "129", "--optimizer", "adam",
          "--lr", "0.001", "--bn-momentum", "0.9"]  # fmt: skip  (demo.py's TRAIN_FLAGS, without the model and seed)


def train_and_evaluate(model: str, seed: int, steps: int, eval_images: int, folder: str) -> dict[str, Any]:
    """Trains `model` with `seed` for `steps` steps into `folder`, then evaluates it; the result row."""
    from evaluation.evaluate import evaluate

    out = os.path.join(folder, f"{model}_seed{seed}")
    started = time.perf_counter()
    command = [sys.executable, os.path.join(ROOT, "training", "train.py"), "--model", model, *RECIPE,
               "--seed", str(seed), "--steps", str(steps), "--log-every", str(steps), "--out", out]  # fmt: skip
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if finished.returncode != 0:
        raise RuntimeError(f"training {model} seed {seed} failed:\n{finished.stderr[-2000:]}")
    train_s = time.perf_counter() - started
    result = evaluate(os.path.join(out, "model.keras"), data_spec=None, split="val", limit=eval_images)
    return {"model": model, "seed": seed, "steps": steps, "miou": result["miou"], "train_seconds": round(train_s, 1)}


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model: the seeds' mIoU, mean, sample standard deviation and range."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        values = [r["miou"] for r in rows if r["model"] == model]
        out.append({"model": model, "miou": values, "mean": statistics.fmean(values),
                    "std": statistics.stdev(values) if len(values) > 1 else 0.0, "range": max(values) - min(values)})  # fmt: skip
    return out


def table(stats: list[dict[str, Any]]) -> str:
    lines = ["| model | val mIoU per seed (%) | mean (%) | std (pp) | range (pp) |", "|---|---|---|---|---|"]
    lines += [f"| {s['model']} | {', '.join(f'{v:.2f}' for v in s['miou'])} | {s['mean']:.2f} | {s['std']:.2f} | "
              f"{s['range']:.2f} |" for s in stats]  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    import zoo  # noqa: F401  (TensorFlow without its C++ start-up lines)
    from common.cli import add_json_flag, check_json_path, check_output_flag, json_to_stdout, stdout_kept_for_json, write_json
    from zoo.registry import list_models

    parser = argparse.ArgumentParser(prog="python benchmarks/seed_accuracy.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mobilenetv2_ksac_separable,mobilenetv2_ksac,mobilenetv2_aspp,mobilenetv2_aspp_separable",
                        help="comma-separated models, trained with the same recipe")  # fmt: skip
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--steps", type=int, default=300, help="training steps per run (default 300)")
    parser.add_argument("--eval-images", type=int, default=100, help="val images evaluated (default 100)")
    parser.add_argument("--out", metavar="DIR", help="keep the runs here (default: a temporary folder, removed)")
    add_json_flag(parser, "the rows and the summary")
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in list_models()]
    if unknown or not models:
        parser.error(f"unknown models: {', '.join(unknown)}; valid: {', '.join(list_models())}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if not seeds or args.steps < 1 or args.eval_images < 1:
        parser.error("--seeds must name a seed, --steps and --eval-images must be at least 1")
    try:
        check_json_path(args.json)
        check_output_flag("--out", args.out, folder=True)
    except ValueError as error:
        parser.error(str(error))
    rows = []
    with tempfile.TemporaryDirectory() as scratch, stdout_kept_for_json(args.json) as stdout:
        folder = args.out or scratch
        for seed in seeds:  # seed-major: a run cut short still has every model at the first seeds
            for model in models:
                print(f"training {model} seed {seed} ({args.steps} steps) ...", flush=True)
                rows.append(train_and_evaluate(model, seed, args.steps, args.eval_images, folder))
                print(f"    val mIoU {rows[-1]['miou']:.2f}% ({rows[-1]['train_seconds']:.0f} s training)", flush=True)
        stats = summary(rows)
        if not json_to_stdout(args.json):
            print(table(stats))
        write_json(args.json, {"rows": rows, "summary": stats}, stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
