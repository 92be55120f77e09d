"""The LiteRT GPU accelerator for the benchmark: whether it loads here, on which adapter, and how many runs to time.

The work itself is `inference.gpu.gpu_report`: a child process (`python -m
inference.gpu`) that loads the file on the GPU accelerator WITHOUT CPU fallback
(a file that only partly runs on the GPU is reported as such instead of being
timed on the CPU under a GPU label), compares its arg-max with LiteRT CPU's, and
times it; a driver that crashes or hangs takes the child down, not the run.

A software adapter (Mesa's llvmpipe, SwiftShader, ...) is a CPU emulating a GPU:
it shows that a file runs on the GPU path and gives the same answer as the CPU,
but its latency says nothing about a GPU, so it gets only a few timed runs. Which
adapters are software is the adapter's own word: its type, "CPU / Software"
(Vulkan's VK_PHYSICAL_DEVICE_TYPE_CPU; `inference.gpu.adapter_from_log`), never its name.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from inference.gpu import gpu_report

# Warm-up and timed runs on a software adapter: enough to show it runs, not to time it.
SOFTWARE_WARMUP = 1
SOFTWARE_RUNS = 3


def probe_gpu() -> dict[str, Any]:
    """Whether the LiteRT GPU accelerator loads on this machine, tried on a one-convolution model.

    Returns:
        {"available": bool, "reason": str (when not available), "adapter": the adapter's name or None,
         "adapter_type": its own type ("Discrete GPU", "CPU / Software", ...) or None,
         "software": True when that type is a CPU (None when unknown)}.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "probe.tflite"
        path.write_bytes(_tiny_tflite())
        result = gpu_report(str(path), timeout_s=180)
    probe = {"available": bool(result.get("available")), "adapter": result.get("adapter"),
             "adapter_type": result.get("adapter_type"), "software": result.get("software")}  # fmt: skip
    if not probe["available"]:
        probe["reason"] = result.get("reason") or "unknown"
    return probe


def timed_runs(software: bool | None, warmup: int, runs: int) -> tuple[int, int]:
    """(warm-up, timed runs) for an adapter: the benchmark's own on hardware, a few on a software one."""
    if software:
        return min(warmup, SOFTWARE_WARMUP), min(runs, SOFTWARE_RUNS)
    return warmup, runs


def software_note(adapter: str | None, runs: int | None = None) -> str:
    """The `note` of a row measured on a software adapter (`runs`: its timed runs, None when not timed)."""
    name = (adapter or "software adapter").split(" (")[0]
    return f"software GPU ({name}): correctness only" + (f"; {runs} timed runs" if runs else "")


def _tiny_tflite() -> bytes:
    import numpy as np
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 8], tf.float32)])
    def conv(x):
        return tf.nn.relu(tf.nn.conv2d(x, tf.constant(np.ones((3, 3, 8, 8), np.float32)), 1, "SAME"))

    return tf.lite.TFLiteConverter.from_concrete_functions([conv.get_concrete_function()], conv).convert()
