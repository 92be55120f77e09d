"""`make demo`: the main job end to end on the built-in synthetic data.

1. Train MobileNetV2 + KSAC and MobileNetV2 + ASPP briefly (same seed, same budget).
2. Export each to fp32 and int8 TFLite with the KSAC-aware exporter.
3. Measure each file: bytes, kernel sharing, mIoU on the synthetic val split
   (LiteRT), and CPU latency (LiteRT/XNNPACK, interleaved in one run).
4. Print the table.

Every step runs the same command a user would, printed before it runs.
Environment knobs: DEMO_STEPS (training steps, default 300), DEMO_OUT (runs/demo).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.abspath(__file__))
STEPS = int(os.environ.get("DEMO_STEPS", "300"))
OUT = os.environ.get("DEMO_OUT", os.path.join("runs", "demo"))
HEADS = ("ksac", "aspp")
PRECISIONS = ("fp32", "int8")
EVAL_IMAGES = 100


def run(*args: str) -> None:
    command = [sys.executable, *args]
    print("\n$ python " + " ".join(args), flush=True)
    # Keep TensorFlow's C++ start-up chatter out of the demo's output.
    result = subprocess.run(command, cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    if result.returncode != 0:
        sys.exit(f"demo: step failed (exit {result.returncode}): python {' '.join(args)}")


def main() -> int:
    started = time.time()
    files = {}
    for head in HEADS:
        run_dir = os.path.join(OUT, head)
        run(
            "training/train.py", "--backbone", "mobilenetv2", "--head", head, "--steps", str(STEPS),
            "--batch-size", "8", "--crop-size", "129", "--optimizer", "adam", "--lr", "0.001",
            # A run of a few hundred steps: BatchNorm statistics must follow quickly (DeepLab's 0.9997 would lag).
            "--bn-momentum", "0.9",
            "--seed", "0", "--log-every", "25", "--checkpoint-every", "50", "--out", run_dir,
        )  # fmt: skip
        for precision in PRECISIONS:
            out = os.path.join(run_dir, f"model_{precision}.tflite")
            flags = ["--int8", "--calibration-steps", "32"] if precision == "int8" else []
            report = os.path.join(run_dir, f"export_{precision}.json")
            run("convert/to_tflite.py", "--model", os.path.join(run_dir, "model.keras"), "--out", out,
                "--json", report, *flags)  # fmt: skip
            files[head, precision] = (out, report)

    print(f"\nmeasuring accuracy ({EVAL_IMAGES} synthetic val images) and CPU latency of the .tflite files ...")
    from benchmarks.latency import measure_interleaved
    from training.evaluate import evaluate

    blobs = {key: open(path, "rb").read() for key, (path, _) in files.items()}
    latency = measure_interleaved(blobs, threads=2, warmup=3, runs=20)
    rows = []
    for key, (path, report_path) in files.items():
        with open(report_path) as f:
            report = json.load(f)
        miou = evaluate(path, None, "val", limit=EVAL_IMAGES)["miou"]
        rows.append((key, report, miou, latency[key].p50_ms))

    print(f"\nMobileNetV2 on synthetic data, {STEPS} training steps, input 129, CPU latency at 2 threads")
    header = f"{'head':<6}{'precision':<11}{'bytes':>12}{'kernel bufs':>13}{'S2B ops':>9}{'mIoU %':>9}{'p50 ms':>9}"
    print(header + "\n" + "-" * len(header))
    for (head, precision), report, miou, p50 in rows:
        shared = report.get("shared_kernel_buffers", "-")
        s2b = report["ops"].get("SPACE_TO_BATCH_ND", 0)
        print(f"{head:<6}{precision:<11}{report['bytes']:>12,}{shared!s:>13}{s2b:>9}{miou:>9.2f}{p50:>9.2f}")
    sizes = {key: report["bytes"] for key, report, _, _ in rows}
    for precision in PRECISIONS:
        ratio = sizes["ksac", precision] / sizes["aspp", precision]
        print(f"KSAC / ASPP file size, {precision}: {ratio:.3f}")
    print(f"\ndemo finished in {time.time() - started:.0f} s; runs in {OUT}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
