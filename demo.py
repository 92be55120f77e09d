"""`make demo`: the main job end to end on the built-in synthetic data, sized to this machine.

The data is `synthetic:colours` (the synthetic images, the colour family as the class: 5 classes),
which a from-scratch model learns in a few hundred steps; the 21-class set needs thousands
(docs/training.md), far more than a demo's minutes.

1. Measure how fast this machine trains MobileNetV2 + KSAC and + ASPP (a few steps each), then
   choose the number of training steps so that the whole demo takes about DEMO_MINUTES.
2. Train MobileNetV2 + KSAC and MobileNetV2 + ASPP (same seed, same steps).
3. Export each to fp32 and int8 TFLite with the KSAC-aware exporter.
4. Measure each file: bytes, kernel sharing, mIoU on the synthetic val split (LiteRT), and CPU
   latency (LiteRT/XNNPACK, interleaved in one run); print the table.
5. Segment one synthetic val image with each file: an overlay PNG per file and one strip of the
   image, its truth and each file's labels (`overlays.png`), named at the end.

Every step is the command a user would run, printed before it runs.
Environment knobs: DEMO_MINUTES (the time budget, default 7; more minutes train longer and score
higher), DEMO_STEPS (training steps, instead of the budget), DEMO_OUT (runs/demo).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.abspath(__file__))
MINUTES = float(os.environ.get("DEMO_MINUTES", "7"))
FIXED_STEPS = os.environ.get("DEMO_STEPS")
OUT = os.environ.get("DEMO_OUT", os.path.join("runs", "demo"))
HEADS = ("ksac", "aspp")
PRECISIONS = ("fp32", "int8")
EVAL_IMAGES = 100
BATCH, CROP = 8, 129
PROBE_STEPS = 6
MIN_STEPS, MAX_STEPS = 50, 1000
# What the demo spends besides training and the probes: four exports, four evaluations, latency,
# overlays and process start-ups (96 s measured on a 2-core AVX-512 Xeon with oneDNN off).
NOT_TRAINING_S = 100
# About what synthetic:colours needs before the overlays show objects (measured: 16% mIoU, the
# predict-background floor, after 60 steps of batch 8; 31% after 150; 56% after 300).
GOOD_STEPS, FEW_STEPS = 300, 150
TRAIN_FLAGS = [
    "--data", "synthetic:colours", "--backbone", "mobilenetv2", "--batch-size", str(BATCH), "--crop-size", str(CROP), "--optimizer", "adam",
    "--lr", "0.001",
    # A run of a few hundred steps: BatchNorm statistics must follow quickly (DeepLab's 0.9997 would lag).
    "--bn-momentum", "0.9", "--seed", "0",
]  # fmt: skip


class Progress:
    """Numbered stage lines with the time spent and, once the plan is known, an estimate of what is left."""

    def __init__(self, stages: int) -> None:
        self.started, self.stages, self.done, self.deadline = time.time(), stages, 0, None

    def stage(self, text: str) -> None:
        self.done += 1
        elapsed = time.time() - self.started
        left = f", about {max(0.0, self.deadline - time.time()) / 60:.1f} min left" if self.deadline else ""
        print(f"\n[{self.done}/{self.stages}] {text}  ({elapsed / 60:.1f} min in{left})", flush=True)


def run(*args: str) -> None:
    """Runs `python ARGS` in the project folder as a user would, printing the command first."""
    print("$ python " + " ".join(args), flush=True)
    result = subprocess.run([sys.executable, *args], cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"demo: step failed (exit {result.returncode}): python {' '.join(args)}")


def measure_training_speed(head: str) -> float:
    """Images/s of this machine training MobileNetV2 + `head` (a few steps; the tracing step excluded)."""
    with tempfile.TemporaryDirectory(prefix="ksac_demo_probe_") as probe:
        run("training/train.py", *TRAIN_FLAGS, "--head", head, "--steps", str(PROBE_STEPS),
            "--log-every", str(PROBE_STEPS), "--out", probe)  # fmt: skip
        with open(os.path.join(probe, "summary.json")) as f:
            return float(json.load(f)["images_per_s"])


def plan_steps(speeds: dict[str, float], spent_s: float) -> int:
    """Training steps per model so that the demo ends near its budget (DEMO_STEPS, if given, wins)."""
    if FIXED_STEPS:
        return int(FIXED_STEPS)
    seconds_per_step = sum(BATCH / speed for speed in speeds.values())  # one step of each model
    budget = MINUTES * 60 - spent_s - NOT_TRAINING_S
    return max(MIN_STEPS, min(MAX_STEPS, int(budget / seconds_per_step)))


def example_image(path: str):
    """Writes a synthetic:colours val image with objects of three colours or more to `path`; returns (image, mask)."""
    import cv2
    import numpy as np

    from data.datasets import open_dataset

    val = open_dataset(TRAIN_FLAGS[TRAIN_FLAGS.index("--data") + 1], "val")
    for index in range(len(val)):
        image, mask = val.load(index)
        if len(np.unique(mask[mask != 255])) >= 4:  # background and three colours
            break
    cv2.imwrite(path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return image, mask


def overlay_strip(panels: list[tuple[str, "np.ndarray"]], path: str, legend: "np.ndarray | None" = None) -> None:
    """The panels side by side, each captioned, and the `legend` panel under them, written as one PNG."""
    import cv2
    import numpy as np

    captioned = []
    for caption, image in panels:
        bar = np.full((22, image.shape[1], 3), 255, np.uint8)
        cv2.putText(bar, caption, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        captioned.append(np.vstack([bar, image]))
    gap = np.full((captioned[0].shape[0], 4, 3), 255, np.uint8)
    strip = np.hstack([part for panel in captioned for part in (panel, gap)][:-1])
    if legend is not None:
        width = max(strip.shape[1], legend.shape[1])
        pad = lambda image: np.pad(image, ((0, 0), (0, width - image.shape[1]), (0, 0)), constant_values=255)  # noqa: E731
        strip = np.vstack([pad(strip), pad(legend)])
    cv2.imwrite(path, cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))


def main() -> int:
    progress = Progress(stages=len(HEADS) + len(HEADS) + len(HEADS) * len(PRECISIONS) + 2)
    os.makedirs(OUT, exist_ok=True)

    speeds = {}
    for head in HEADS:
        progress.stage(f"measuring how fast this machine trains MobileNetV2 + {head.upper()} ({PROBE_STEPS} steps)")
        speeds[head] = measure_training_speed(head)
    probes_s = time.time() - progress.started
    steps = plan_steps(speeds, probes_s)
    train_s = sum(steps * BATCH / speed for speed in speeds.values())
    progress.deadline = time.time() + train_s + NOT_TRAINING_S
    print(
        f"\nthis machine trains at {speeds['ksac']:.1f} (KSAC) and {speeds['aspp']:.1f} (ASPP) images/s at crop {CROP}: "
        f"{steps} steps per model, about {train_s / 60:.1f} min of training"
        + ("" if FIXED_STEPS else f" to end within about {MINUTES:g} min (DEMO_MINUTES)"),
        flush=True,
    )

    files = {}
    for head in HEADS:
        run_dir = os.path.join(OUT, head)
        shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run, not a resumed one
        progress.stage(f"training MobileNetV2 + {head.upper()} for {steps} steps")
        run("training/train.py", *TRAIN_FLAGS, "--head", head, "--steps", str(steps),
            "--log-every", str(max(1, steps // 10)), "--checkpoint-every", str(max(50, steps // 4)), "--out", run_dir)  # fmt: skip
        for precision in PRECISIONS:
            progress.stage(f"exporting {head.upper()} to {precision} TFLite")
            out = os.path.join(run_dir, f"model_{precision}.tflite")
            flags = ["--int8", "--calibration-steps", "32"] if precision == "int8" else []
            report = os.path.join(run_dir, f"export_{precision}.json")
            run("convert/to_tflite.py", "--model", os.path.join(run_dir, "model.keras"), "--out", out,
                "--json", report, *flags)  # fmt: skip
            files[head, precision] = (out, report)

    progress.stage(f"measuring accuracy ({EVAL_IMAGES} synthetic val images) and CPU latency of the .tflite files")
    from benchmarks.latency import measure_interleaved
    from evaluation.evaluate import evaluate
    from evaluation.predict import main as predict

    blobs = {key: open(path, "rb").read() for key, (path, _) in files.items()}
    latency = measure_interleaved(blobs, threads=2, warmup=3, runs=20)
    rows = []
    for key, (path, report_path) in files.items():
        with open(report_path) as f:
            report = json.load(f)
        miou = evaluate(path, None, "val", limit=EVAL_IMAGES)["miou"]
        rows.append((key, report, miou, latency[key].p50_ms))

    progress.stage("segmenting one synthetic val image with each file")
    import numpy as np
    from PIL import Image

    from data.synthetic import COLOUR_LABEL_NAMES
    from evaluation.predict import labels_path
    from ksac_runtime.palette import class_colours, legend_panel

    # The colours and legend of every overlay (ksac_runtime.palette): the class "green" drawn green.
    palette = class_colours(COLOUR_LABEL_NAMES)

    example = os.path.join(OUT, "example.png")
    image, mask = example_image(example)
    truth = np.where(mask == 255, 0, mask)
    present = set(np.unique(truth).tolist())
    panels = [("image", image), ("truth", palette[truth])]
    overlays = []
    for (head, precision), (path, _) in files.items():
        out = os.path.join(OUT, f"overlay_{head}_{precision}.png")
        args = ["--model", path, "--image", example, "--out", out]
        print("$ python evaluation/predict.py " + " ".join(args), flush=True)
        if predict(args) != 0:
            sys.exit(f"demo: step failed: python evaluation/predict.py {' '.join(args)}")
        overlays.append(out)
        # The label map in flat palette colours: clearer side by side than the blended overlay.
        with Image.open(labels_path(out)) as labels:
            present |= set(np.unique(np.asarray(labels)).tolist())
            panels.append((f"{head} {precision}", np.asarray(labels.convert("RGB"))))
    strip = os.path.join(OUT, "overlays.png")
    width = sum(panel.shape[1] for _, panel in panels) + 4 * (len(panels) - 1)  # overlay_strip's 4-pixel gaps
    legend = legend_panel(sorted(present - {0}), COLOUR_LABEL_NAMES, palette, width)
    overlay_strip(panels, strip, legend)

    print(f"\nMobileNetV2 on synthetic:colours data, {steps} training steps, input {CROP}, CPU latency at 2 threads")
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
    print(f"\noverlays (one per file): {', '.join(overlays)}")
    print(f"the image, its truth and each file's labels side by side: {strip}")
    print(f"demo finished in {(time.time() - progress.started) / 60:.1f} min; runs in {OUT}/")
    if steps < FEW_STEPS:
        minutes = (probes_s + NOT_TRAINING_S + GOOD_STEPS * sum(BATCH / speed for speed in speeds.values())) / 60
        print(f"{steps} steps is little for this machine's speed: the models may still predict mostly background. "
              f"DEMO_MINUTES={minutes:.0f} make demo trains {GOOD_STEPS} steps (about 56% mIoU).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
