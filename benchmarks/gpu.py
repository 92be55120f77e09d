"""The LiteRT GPU accelerator: whether it loads here, and latency on it.

GPU work runs in a child process (`python benchmarks/gpu.py FILE ...`): a GPU
driver that crashes or hangs takes the child down, not the benchmark run, and the
accelerator's own log (where the reason for a failure is written) is captured.
The accelerator is the one `CompiledModel` loads for `HardwareAccelerator.GPU`
(the pip wheel ships the WebGPU one); it is requested WITHOUT CPU fallback, so a
file that only partly runs on the GPU is reported as such instead of being timed
on the CPU under a GPU label.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_REASON_PATTERNS = (r"No adapters found", r"Failed to initialize", r"could not be (dynamically )?loaded", r"ERROR")


def _reason_from_log(log: str, fallback: str) -> str:
    """The most telling lines of the accelerator's log, for an `unavailable` row."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for pattern in _REASON_PATTERNS:
        hits = [line for line in lines if re.search(pattern, line) and "Source Location" not in line]
        hits = [re.sub(r"^[EWI]\d{4} [\d:.]+\s+\d+\s+", "", line) for line in hits]
        if hits:
            return "; ".join(dict.fromkeys(hits[:2]))[:400]
    return fallback[:400]


def run_on_gpu(tflite_path: str | Path, *, warmup: int = 3, runs: int = 10, timeout_s: float = 600) -> dict[str, Any]:
    """Loads `tflite_path` on the LiteRT GPU accelerator and times it, in a child process.

    Returns:
        {"available": True, "p50_ms", "p90_ms", "mean_ms", "min_ms", "runs", "peak_rss_mb"} when it ran, or
        {"available": False, "reason": "..."} when no GPU accelerator loaded (or the file is not fully
        accelerated), with the reason taken from LiteRT's log.
    """
    command = [sys.executable, str(Path(__file__).resolve()), str(tflite_path), "--warmup", str(warmup)]
    command += ["--runs", str(runs)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"available": False, "reason": f"GPU run did not finish within {timeout_s:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if lines:
        result = json.loads(lines[-1])
        if not result.get("available"):
            result["reason"] = _reason_from_log(done.stderr, result.get("reason", "unknown"))
        return result
    return {
        "available": False,
        "reason": _reason_from_log(done.stderr, f"GPU child process exited with status {done.returncode}"),
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
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from memory import peak_rss_kb  # run as a script: benchmarks/ is sys.path[0]; stdlib-only imports

    try:
        model = CompiledModel.from_file(str(args.tflite), hardware_accel=HardwareAccelerator.GPU)
    except Exception as error:  # LiteRT raises RuntimeError with a terse message; the log says more
        print(json.dumps({"available": False, "reason": f"{type(error).__name__}: {error}"}), flush=True)
        return 0
    if not model.is_fully_accelerated():
        print(json.dumps({"available": False, "reason": "not every op of the model runs on the GPU accelerator"}))
        return 0
    signature = list(model.get_signature_list())[0] if model.get_signature_list() else "serving_default"
    index = model.get_signature_index(signature)
    inputs = model.create_input_buffers(index)
    outputs = model.create_output_buffers(index)
    rng = np.random.default_rng(0)
    for buffer, (name, detail) in zip(inputs, model.get_input_tensor_details(signature).items()):
        shape = tuple(int(d) for d in detail.get("shape", [1]))
        dtype = np.dtype(str(detail.get("dtype", "float32")))
        value = rng.uniform(-1, 1, shape) if np.issubdtype(dtype, np.floating) else rng.integers(-128, 128, shape)
        buffer.write(value.astype(dtype))
    for _ in range(args.warmup):
        model.run_by_index(index, inputs, outputs)
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        model.run_by_index(index, inputs, outputs)
        outputs[0].read(1, np.float32)  # waits for the GPU to finish
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
