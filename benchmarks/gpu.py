"""The LiteRT GPU accelerator: whether it loads here, and latency on it.

GPU work runs in a child process (`python -m benchmarks.gpu FILE ...`): a GPU
driver that crashes or hangs takes the child down, not the benchmark run, and the
accelerator's own log (where the reason for a failure is written) is captured.
The child loads the file with `inference.runtime.TFLiteModel(device="gpu")` (the
LiteRT GPU accelerator, WebGPU in the pip wheel), which imports no TensorFlow; it
is requested WITHOUT CPU fallback, so a file that only partly runs on the GPU is
reported as such instead of being timed on the CPU under a GPU label.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from inference.runtime import accelerator_reason

def run_on_gpu(tflite_path: str | Path, *, warmup: int = 3, runs: int = 10, timeout_s: float = 600) -> dict[str, Any]:
    """Loads `tflite_path` on the LiteRT GPU accelerator and times it, in a child process.

    Returns:
        {"available": True, "p50_ms", "p90_ms", "mean_ms", "min_ms", "runs", "peak_rss_mb"} when it ran, or
        {"available": False, "reason": "..."} when no GPU accelerator loaded (or the file is not fully
        accelerated), with the reason taken from LiteRT's log.
    """
    # `-m`: the child imports `inference.runtime` and `benchmarks.memory` through the editable install.
    command = [sys.executable, "-m", "benchmarks.gpu", str(tflite_path), "--warmup", str(warmup)]
    command += ["--runs", str(runs)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"available": False, "reason": f"GPU run did not finish within {timeout_s:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if lines:
        result = json.loads(lines[-1])
        if not result.get("available") and not result.get("reason"):
            # The child's reason already comes from the accelerator's log; this is a safety net.
            result["reason"] = accelerator_reason(done.stderr, "unknown")
        return result
    return {
        "available": False,
        "reason": accelerator_reason(done.stderr, f"GPU child process exited with status {done.returncode}"),
    }


def probe_gpu() -> dict[str, Any]:
    """Whether the LiteRT GPU accelerator loads on this machine, tried on a one-convolution model.

    Returns:
        {"available": bool, "reason": str (when not available)}.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "probe.tflite"
        path.write_bytes(_tiny_tflite())
        result = run_on_gpu(path, warmup=1, runs=1, timeout_s=180)
    return {key: result[key] for key in ("available", "reason") if key in result}


def _tiny_tflite() -> bytes:
    import numpy as np
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 8], tf.float32)])
    def conv(x):
        return tf.nn.relu(tf.nn.conv2d(x, tf.constant(np.ones((3, 3, 8, 8), np.float32)), 1, "SAME"))

    return tf.lite.TFLiteConverter.from_concrete_functions([conv.get_concrete_function()], conv).convert()


def _child(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time one .tflite file on the LiteRT GPU accelerator (child).")
    parser.add_argument("tflite", help="the .tflite file")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs")
    parser.add_argument("--runs", type=int, default=10, help="timed runs")
    args = parser.parse_args(argv)

    import numpy as np

    from benchmarks.memory import peak_rss_kb
    from inference.runtime import GpuUnavailable, TFLiteModel

    try:
        model = TFLiteModel(str(args.tflite), device="gpu")
    except GpuUnavailable as error:  # the parent turns this into an `unavailable` row
        print(json.dumps({"available": False, "reason": error.reason}), flush=True)
        return 0
    model.set_random_inputs(seed=0)
    for _ in range(args.warmup):
        model.invoke()
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        model.invoke()  # waits for the GPU to finish
        times.append(time.perf_counter() - start)
    ms = np.asarray(times) * 1000.0
    result = {
        "available": True,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "mean_ms": float(ms.mean()),
        "min_ms": float(ms.min()),
        "runs": len(times),
        "peak_rss_mb": peak_rss_kb() / 1024.0,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child())
