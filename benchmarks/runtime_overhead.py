"""What the runtime adds to the model: ms per image through `ksac_runtime.Segmenter` against LiteRT's bare
interpreter on the same file, per precision and thread count.

    python -m benchmarks.runtime_overhead [--models FILE ...] [--threads 1,2] [--image-size 480x640] [--runs 20] [--json [FILE]]

The bare interpreter (`ai_edge_litert.interpreter.Interpreter`) is timed on an input already prepared:
write the input tensor, invoke, read the output tensor. `Segmenter.segment` is timed on an RGB image of
`--image-size` (height x width; default 480x640, a camera frame): the letterbox and normalisation, the same
three LiteRT steps, the arg-max over the content region and the labels brought back to the image's size.
The difference is the runtime's own overhead; `Segmenter.last_timing` splits it by stage. Every (file,
threads) pair is loaded at once and timed round-robin, bare and runtime alternating, so that a burst of
load from elsewhere falls on all alike.

Without --models it builds mobilenetv2_ksac at the zoo's default input size (513; BatchNorm statistics
randomised as `benchmarks/run.py` does) and exports it in fp32 and int8 into --out. Name the CPU with every
figure (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Any, Sequence

import numpy as np

from common.cli import add_json_flag, check_json_path, check_output_flag, fail, stdout_kept_for_json, write_json


def build_files(folder: str, input_size: int, log: Any = print) -> dict[str, str]:
    """{precision: path} of mobilenetv2_ksac at `input_size` (random BatchNorm statistics) in fp32 and int8."""
    import zoo  # noqa: F401  first: TensorFlow without its start-up lines

    from benchmarks.realistic_weights import randomize_batchnorm
    from convert.export import export_tflite
    from zoo import build_model

    model = build_model("mobilenetv2_ksac", input_size=input_size)
    randomize_batchnorm(model, 0)
    os.makedirs(folder, exist_ok=True)
    files = {}
    for precision in ("fp32", "int8"):
        path = os.path.join(folder, f"mobilenetv2_ksac_{input_size}_{precision}.tflite")
        if not os.path.isfile(path):
            log(f"exporting mobilenetv2_ksac at {input_size} to {precision} ...")
            with open(path, "wb") as f:
                f.write(export_tflite(model, precision, calibration_steps=8, check_parity=False).tflite)
        files[precision] = path
    return files


class Bare:
    """LiteRT's interpreter alone on one file: the input prepared once, then write, invoke, read."""

    def __init__(self, path: str, threads: int, image: np.ndarray) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from ksac_runtime.description import read_description
        from ksac_runtime.preprocess import description_preprocessing, preprocess
        from ksac_runtime.native_log import native_stderr
        from ksac_runtime.runtime import _XNNPACK_CREATED, _info_from_detail, quantize

        with native_stderr(drop=_XNNPACK_CREATED, live=False):  # LiteRT's line on every load
            self.interpreter = Interpreter(model_path=path, num_threads=threads)
            self.interpreter.allocate_tensors()
        source, self.output = self.interpreter.get_input_details()[0], self.interpreter.get_output_details()[0]
        description = read_description(path)
        x, _ = preprocess(image, source["shape"][1:3], description.normalization, description_preprocessing(description))
        self.input = quantize(x, _info_from_detail(source))  # the same input the runtime writes
        self.index = source["index"]

    def run(self) -> float:
        started = time.perf_counter()
        self.interpreter.set_tensor(self.index, self.input)
        self.interpreter.invoke()
        self.interpreter.get_tensor(self.output["index"])
        return time.perf_counter() - started


def measure(files: dict[str, str], threads: Sequence[int], image: np.ndarray, runs: int, warmup: int) -> list[dict[str, Any]]:
    """One row per (precision, threads): p50 ms of the bare interpreter and of `Segmenter.segment`, the
    overhead, and the runtime's stages (p50 of each)."""
    from ksac_runtime import Segmenter

    pairs = [(precision, t) for precision in files for t in threads]
    bare = {pair: Bare(files[pair[0]], pair[1], image) for pair in pairs}
    runtime = {pair: Segmenter(files[pair[0]], threads=pair[1]) for pair in pairs}
    times: dict[tuple[str, int], dict[str, list[float]]] = {pair: {"bare": [], "runtime": [], "pre": [], "model": [], "post": []}
                                                            for pair in pairs}  # fmt: skip
    for round_ in range(warmup + runs):
        order = pairs[round_ % len(pairs):] + pairs[: round_ % len(pairs)]
        for pair in order:
            seconds = bare[pair].run()
            started = time.perf_counter()
            runtime[pair].segment(image)
            total = time.perf_counter() - started
            if round_ >= warmup:
                timing = runtime[pair].last_timing
                record = times[pair]
                record["bare"].append(1000 * seconds)
                record["runtime"].append(1000 * total)
                record["pre"].append(timing.preprocess_ms)
                record["model"].append(timing.inference_ms)
                record["post"].append(timing.postprocess_ms)
    rows = []
    for (precision, t), record in times.items():
        p50 = {key: float(np.percentile(values, 50)) for key, values in record.items()}
        rows.append({"precision": precision, "threads": t, "bare_ms": round(p50["bare"], 2), "runtime_ms": round(p50["runtime"], 2),
                     "overhead_ms": round(p50["runtime"] - p50["bare"], 2), "preprocess_ms": round(p50["pre"], 2),
                     "inference_ms": round(p50["model"], 2), "postprocess_ms": round(p50["post"], 2), "runs": runs,
                     "file": files[precision]})  # fmt: skip
    return rows


def test_image(height: int, width: int) -> np.ndarray:
    """A synthetic val image resized to height x width (bilinear): shapes and edges, as a photo has."""
    from data.datasets import open_dataset
    from ksac_runtime.preprocess import resize_bilinear

    image = open_dataset("synthetic", "val").load(0)[0]
    return np.clip(np.round(resize_bilinear(image, height, width)), 0, 255).astype(np.uint8)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from zoo.registry import DEFAULT_INPUT_SIZE

    p = argparse.ArgumentParser(prog="python -m benchmarks.runtime_overhead", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--models", nargs="+", metavar="FILE", help="the .tflite files (default: mobilenetv2_ksac fp32 and int8, exported into --out)")
    p.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE, help=f"input side of the files built without --models (default {DEFAULT_INPUT_SIZE})")
    p.add_argument("--out", default=os.path.join("runs", "runtime_overhead"), help="where the files built without --models go (kept: a second run reuses them)")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--image-size", default="480x640", help="HEIGHTxWIDTH of the image given to the runtime (default 480x640)")
    p.add_argument("--runs", type=int, default=20, help="timed runs of each (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs of each first (default 3)")
    add_json_flag(p, "the rows")
    args = p.parse_args(argv)
    try:
        args.threads = [int(t) for t in args.threads.split(",")]
        args.image_hw = tuple(int(v) for v in args.image_size.lower().split("x"))
    except ValueError:
        p.error(f"--threads takes integers (got {args.threads!r}); --image-size HEIGHTxWIDTH (got {args.image_size!r})")
    if len(args.image_hw) != 2 or min(args.image_hw) < 1 or min(args.threads) < 1 or args.runs < 1 or args.warmup < 0:
        p.error("--image-size HEIGHTxWIDTH, --threads, --runs at least 1, --warmup at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with stdout_kept_for_json(args.json) as stdout:
        try:
            check_json_path(args.json)
            if args.models:
                for path in args.models:
                    if not os.path.isfile(path):
                        raise FileNotFoundError(f"model file not found: {path}")
                from ksac_runtime.description import read_description

                files = {read_description(path).precision or os.path.basename(path): path for path in args.models}
            else:
                check_output_flag("--out", args.out, folder=True)
                files = build_files(args.out, args.input_size)
        except (ValueError, OSError) as error:
            return fail(error)
        image = test_image(*args.image_hw)
        rows = measure(files, args.threads, image, args.runs, args.warmup)
        cpu = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
        print(f"{cpu}, {os.cpu_count()} logical CPUs; image {args.image_hw[0]}x{args.image_hw[1]}; p50 of {args.runs} runs, round-robin")
        print(f"{'precision':<10}{'threads':>8}{'bare ms':>10}{'runtime ms':>12}{'overhead':>10}{'pre':>8}{'model':>8}{'post':>8}")
        for row in rows:
            print(f"{row['precision']:<10}{row['threads']:>8}{row['bare_ms']:>10.2f}{row['runtime_ms']:>12.2f}{row['overhead_ms']:>10.2f}"
                  f"{row['preprocess_ms']:>8.2f}{row['inference_ms']:>8.2f}{row['postprocess_ms']:>8.2f}")  # fmt: skip
        write_json(args.json, {"cpu": cpu, "image": list(args.image_hw), "rows": rows}, stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
